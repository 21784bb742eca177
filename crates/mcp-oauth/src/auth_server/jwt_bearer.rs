//! The JWT-bearer grant (RFC 7523 §2.1) at `/token`: a JWT signed by an issuer the operator
//! trusts is the grant. Two kinds of issuer:
//!
//! - a **trusted enterprise identity provider** ([`TrustedIdp`]): the JWT is an Identity
//!   Assertion JWT Authorization Grant (ID-JAG, draft-ietf-oauth-identity-assertion-authz-grant;
//!   MCP's Enterprise-Managed Authorization, SEP-990) naming a user, the client it was issued
//!   to and the resource. The client authenticates as it registered (a secret or
//!   `private_key_jwt`); the token is for the user, mapped to a local subject and run through
//!   the sign-in policy.
//! - a **workload identity issuer** ([`WorkloadIssuer`], SEP-1933): the JWT is a workload's
//!   identity token (Kubernetes, GitHub Actions, a cloud's metadata service); its `sub` maps to
//!   a registered service client, and the token is for that client, with no user.
//!
//! The issuer is chosen by the assertion's `iss` (read before anything is verified), and the
//! signature is checked against that issuer's keys only. Every refusal of an assertion is
//! `invalid_grant` with one description; the reason is logged.

use std::collections::HashMap;

use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value};

use super::assertion::spend_jti;
use super::clients::{load_client, resolve_resource};
use super::http::{TokenError, err, random_token};
use super::login::UserIdentity;
use super::mint::{Grant, mint_bound};
use super::protocol::{ClientAuthMethod, ErrorCode, GrantType};
use super::server::AuthServer;
use super::store::ClientRecord;
use super::token::{check_binding, dpop_proof, token_response};
use crate::claims::{Claims, DEFAULT_LEEWAY, check_times, now_unix};
use crate::error::{ConfigError, VerifyError};
use crate::jose::Algorithms;
use crate::scope::parse_scope_list;
use crate::verify::{JwtVerifier, TokenVerifier};

/// The JOSE `typ` of an ID-JAG.
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";

/// The longest `jti` kept for replay detection, in bytes.
const MAX_JTI: usize = 256;

/// The one description of a refused assertion.
const REFUSED: &str = "the assertion is not valid for this server";

/// Where an issuer's public keys come from.
#[derive(Clone, Debug, Default)]
enum KeysFrom {
    #[default]
    Missing,
    Url(String),
    Json(String),
}

/// An enterprise identity provider whose Identity Assertion JWT Authorization Grants
/// (ID-JAGs) this server accepts at `/token` with the JWT-bearer grant
/// ([`AuthServerBuilder::trusted_idp`](super::AuthServerBuilder::trusted_idp)).
///
/// An ID-JAG is accepted when: its header `typ` is `oauth-id-jag+jwt`; it is signed by one
/// of this provider's keys (asymmetric algorithms only); `iss` is this provider; `aud` names
/// this server's issuer; `exp`, `iat`, `jti` and `sub` are present, `exp` not past; the `jti`
/// was not used before (it is recorded in the store until `exp`); `client_id` is the client
/// that authenticated; `resource`, when present, is a resource of this server.
///
/// The user of the token is `<name>:<sub>` (the provider's name, then its subject), so that
/// two providers' subjects never meet; [`plain_subjects`](Self::plain_subjects) keeps `sub`
/// as it is. `email`, `email_verified`, `name` and `preferred_username` are carried into the
/// access token.
///
/// ```
/// use mcp_oauth::auth_server::TrustedIdp;
///
/// let idp = TrustedIdp::new("acme", "https://idp.acme.example")
///     .jwks_url("https://idp.acme.example/.well-known/jwks.json");
/// assert_eq!(idp.issuer(), "https://idp.acme.example");
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct TrustedIdp {
    name: String,
    issuer: String,
    keys: KeysFrom,
    plain_subjects: bool,
}

impl TrustedIdp {
    /// The provider called `name` (the prefix of its users' subjects), whose assertions carry
    /// `issuer` in `iss`. Give it its keys with [`jwks_url`](Self::jwks_url) or
    /// [`jwks_json`](Self::jwks_json).
    pub fn new(name: impl Into<String>, issuer: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            issuer: issuer.into(),
            keys: KeysFrom::Missing,
            plain_subjects: false,
        }
    }

    /// The provider's JWKS URL (`https`, or `http` to a loopback host), fetched and cached.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.keys = KeysFrom::Url(url.into());
        self
    }

    /// The provider's public keys, a JWK Set as JSON text.
    pub fn jwks_json(mut self, json: impl Into<String>) -> Self {
        self.keys = KeysFrom::Json(json.into());
        self
    }

    /// The user is the assertion's `sub` as it is, not `<name>:<sub>`. Only for a single
    /// provider whose subjects are the local user names.
    pub fn plain_subjects(mut self) -> Self {
        self.plain_subjects = true;
        self
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A workload identity issuer (SEP-1933) whose tokens this server accepts at `/token` with
/// the JWT-bearer grant, each for the registered client its `sub` is mapped to
/// ([`AuthServerBuilder::workload_issuer`](super::AuthServerBuilder::workload_issuer)).
///
/// A workload token is accepted when: it is signed by one of this issuer's keys; `iss` is
/// this issuer; `aud` names this server's issuer or one of the configured
/// [`audience`](Self::audience)s; `exp` is present and not past; `sub` is mapped to a client
/// with [`client`](Self::client), and the request is that client's; `jti` is present (unless
/// [`require_jti`](Self::require_jti) is off) and not used before. The client either
/// authenticates as it registered, or, registered with the method `none`, is named by the
/// token alone: the workload token is its credential.
///
/// The access token's subject is the client id, as for `client_credentials`, and its scopes
/// are the client's scopes ([`ClientSpec::scopes`](super::ClientSpec::scopes)).
///
/// ```
/// use mcp_oauth::auth_server::WorkloadIssuer;
///
/// let github = WorkloadIssuer::new("https://token.actions.githubusercontent.com")
///     .jwks_url("https://token.actions.githubusercontent.com/.well-known/jwks")
///     .client("repo:acme/deploy:ref:refs/heads/main", "deploy-bot");
/// assert_eq!(github.issuer(), "https://token.actions.githubusercontent.com");
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct WorkloadIssuer {
    issuer: String,
    keys: KeysFrom,
    audiences: Vec<String>,
    require_jti: bool,
    clients: Vec<(String, String)>,
}

impl WorkloadIssuer {
    /// The issuer whose tokens carry `issuer` in `iss`. Give it its keys with
    /// [`jwks_url`](Self::jwks_url) or [`jwks_json`](Self::jwks_json), and its workloads
    /// with [`client`](Self::client).
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            keys: KeysFrom::Missing,
            audiences: Vec::new(),
            require_jti: true,
            clients: Vec::new(),
        }
    }

    /// The issuer's JWKS URL (`https`, or `http` to a loopback host), fetched and cached.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.keys = KeysFrom::Url(url.into());
        self
    }

    /// The issuer's public keys, a JWK Set as JSON text.
    pub fn jwks_json(mut self, json: impl Into<String>) -> Self {
        self.keys = KeysFrom::Json(json.into());
        self
    }

    /// Another audience the tokens may name instead of this server's issuer (a workload
    /// platform often lets the workload choose any string, such as `mcp-prod`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Whether tokens must carry a `jti`, each used once. Default: on. Turn it off only for
    /// an issuer whose tokens have none; a token without one may then be used again until it
    /// expires.
    pub fn require_jti(mut self, on: bool) -> Self {
        self.require_jti = on;
        self
    }

    /// The workload whose tokens carry `subject` in `sub` is the client `client_id` (a
    /// client registered with the `urn:ietf:params:oauth:grant-type:jwt-bearer` grant).
    pub fn client(mut self, subject: impl Into<String>, client_id: impl Into<String>) -> Self {
        self.clients.push((subject.into(), client_id.into()));
        self
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// The issuers of the JWT-bearer grant, their verifiers built.
pub(crate) struct JwtBearer {
    idps: Vec<Idp>,
    workloads: Vec<Workload>,
}

struct Idp {
    name: String,
    verifier: JwtVerifier,
    plain_subjects: bool,
}

struct Workload {
    verifier: JwtVerifier,
    audiences: Vec<String>,
    require_jti: bool,
    clients: HashMap<String, String>,
}

enum Source<'a> {
    Idp(&'a Idp),
    Workload(&'a Workload),
}

fn verifier(issuer: &str, keys: &KeysFrom, what: &'static str) -> Result<JwtVerifier, ConfigError> {
    let builder = JwtVerifier::builder()
        .issuer(issuer)
        .algorithms(Algorithms::asymmetric().iter());
    let builder = match keys {
        KeysFrom::Url(url) => builder.jwks_url(url.clone()),
        KeysFrom::Json(json) => builder.jwks_json(json),
        KeysFrom::Missing => {
            return Err(ConfigError::missing(
                what,
                format!(
                    "give {issuer}'s public keys: a JWKS URL (jwks_url) or a JWK Set (jwks_json)"
                ),
            ));
        }
    };
    builder.build()
}

impl JwtBearer {
    /// The grant's configuration, `None` when no issuer is configured (the grant is then
    /// not offered).
    /// `own` is this server's issuer, which no trusted issuer may be.
    pub(crate) fn new(
        own: &str,
        idps: Vec<TrustedIdp>,
        workloads: Vec<WorkloadIssuer>,
    ) -> Result<Option<Self>, ConfigError> {
        if idps.is_empty() && workloads.is_empty() {
            return Ok(None);
        }
        let mut issuers: Vec<&str> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for issuer in idps
            .iter()
            .map(TrustedIdp::issuer)
            .chain(workloads.iter().map(WorkloadIssuer::issuer))
        {
            if issuer == own {
                return Err(ConfigError::invalid(
                    "trusted issuer",
                    format!(
                        "{issuer} is this server's own issuer: trust the identity provider or workload platform that signs the assertions"
                    ),
                ));
            }
            if issuers.contains(&issuer) {
                return Err(ConfigError::invalid(
                    "trusted issuer",
                    format!(
                        "{issuer} is configured twice: each issuer is either one trusted identity provider or one workload issuer"
                    ),
                ));
            }
            issuers.push(issuer);
        }
        for idp in &idps {
            let valid = !idp.name.is_empty()
                && idp
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !valid {
                return Err(ConfigError::invalid(
                    "trusted identity provider",
                    format!(
                        "the name {:?} of {} must be letters, digits, '-', '_' or '.' (it prefixes the subjects of its users)",
                        idp.name, idp.issuer
                    ),
                ));
            }
            if names.contains(&idp.name.as_str()) {
                return Err(ConfigError::invalid(
                    "trusted identity provider",
                    format!("the name {:?} is used twice", idp.name),
                ));
            }
            names.push(&idp.name);
        }
        let built_idps = idps
            .iter()
            .map(|idp| {
                Ok(Idp {
                    name: idp.name.clone(),
                    verifier: verifier(&idp.issuer, &idp.keys, "trusted identity provider keys")?,
                    plain_subjects: idp.plain_subjects,
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let built_workloads = workloads
            .iter()
            .map(|w| {
                if w.clients.is_empty() {
                    return Err(ConfigError::missing(
                        "workload clients",
                        format!("map the subjects of {}'s tokens to clients with WorkloadIssuer::client", w.issuer),
                    ));
                }
                Ok(Workload {
                    verifier: verifier(&w.issuer, &w.keys, "workload issuer keys")?,
                    audiences: w.audiences.clone(),
                    require_jti: w.require_jti,
                    clients: w.clients.iter().cloned().collect(),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Some(Self {
            idps: built_idps,
            workloads: built_workloads,
        }))
    }

    fn source(&self, iss: &str) -> Option<Source<'_>> {
        if let Some(idp) = self.idps.iter().find(|i| i.verifier.issuer() == iss) {
            return Some(Source::Idp(idp));
        }
        self.workloads
            .iter()
            .find(|w| w.verifier.issuer() == iss)
            .map(Source::Workload)
    }
}

/// A refused assertion: `invalid_grant` with the one description; `why` is logged.
fn refused(why: &str) -> TokenError {
    tracing::info!(target: "mcp_oauth::auth_server", reason = why, "JWT-bearer assertion refused");
    err(ErrorCode::InvalidGrant, REFUSED)
}

/// A verifier's refusal: the issuer's keys could not be fetched (503), or the assertion is
/// refused.
fn not_verified(error: &VerifyError) -> TokenError {
    if let VerifyError::Unavailable(reason) = error {
        tracing::warn!(target: "mcp_oauth::auth_server", %reason, "a trusted issuer's keys are unavailable");
        return TokenError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            ..err(ErrorCode::TemporarilyUnavailable, "try again later")
        };
    }
    refused(&format!("the assertion does not verify: {error}"))
}

/// The client a workload token names, for a JWT-bearer request that carries no client
/// authentication and no `client_id`: the assertion's issuer is a workload issuer, its `sub`
/// is mapped to a client, and that client is registered with the method `none`. Read before
/// anything is verified: it only says whose request this is; [`grant`] verifies the token
/// and the mapping. `None` for every other request (the client authenticates as usual).
pub(crate) async fn workload_client(
    server: &AuthServer,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Option<ClientRecord>, TokenError> {
    let Some(config) = &server.inner.jwt_bearer else {
        return Ok(None);
    };
    let credentials = [
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
    ];
    if form.get("grant_type").map(String::as_str) != Some(GrantType::JwtBearer.as_str())
        || headers.contains_key(header::AUTHORIZATION)
        || credentials.iter().any(|name| form.contains_key(*name))
    {
        return Ok(None);
    }
    let Some(token) = form
        .get("assertion")
        .and_then(|a| crate::jose::dangerous::decode_unverified(a).ok())
    else {
        return Ok(None);
    };
    let Some(Source::Workload(workload)) = token.claims.iss().and_then(|iss| config.source(iss))
    else {
        return Ok(None);
    };
    let Some(client_id) = token.claims.sub().and_then(|sub| workload.clients.get(sub)) else {
        return Err(refused("the workload's subject is mapped to no client"));
    };
    let client = load_client(server, client_id)
        .await?
        .map_err(|_| refused("the workload's client is not registered"))?;
    if client.token_endpoint_auth_method != ClientAuthMethod::None {
        return Err(TokenError {
            status: StatusCode::UNAUTHORIZED,
            ..err(
                ErrorCode::InvalidClient,
                "client authentication failed: this workload's client authenticates with its own credentials",
            )
        });
    }
    Ok(Some(client))
}

/// What a verified assertion grants.
struct Accepted {
    /// The token's subject: the mapped user, or the client.
    subject: String,
    /// The user, for the sign-in policy (ID-JAG only).
    user: Option<UserIdentity>,
    /// The scopes the issuer granted (`scope`), to cut the request to.
    scope: Option<Vec<String>>,
    /// The resource the issuer named.
    resource: Option<String>,
    /// `cnf.jkt`: the DPoP key the token must be bound to.
    jkt: Option<String>,
    /// The store key of the `jti`, and the assertion's `exp`.
    replay: Option<(String, i64)>,
    /// Whether requested scopes beyond the allowed ones are cut (ID-JAG) or refused.
    cut_scopes: bool,
}

/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` for an authenticated (or
/// workload-named) client.
pub(crate) async fn grant(
    server: &AuthServer,
    client: &ClientRecord,
    assertion: &str,
    scope: Option<&str>,
    resource: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, TokenError> {
    let Some(config) = &server.inner.jwt_bearer else {
        return Err(err(
            ErrorCode::UnsupportedGrantType,
            "this server trusts no assertion issuer: the jwt-bearer grant is off",
        ));
    };
    let Ok(unverified) = crate::jose::dangerous::decode_unverified(assertion) else {
        return Err(refused("the assertion is not a well-formed JWT"));
    };
    let Some(iss) = unverified.claims.iss() else {
        return Err(refused("the assertion has no iss"));
    };
    let accepted = match config.source(iss) {
        Some(Source::Idp(idp)) => {
            id_jag(server, client, idp, unverified.typ.as_deref(), assertion).await?
        }
        Some(Source::Workload(workload)) => {
            workload_token(server, client, workload, assertion).await?
        }
        None => return Err(refused("the assertion's issuer is not trusted")),
    };
    issue(server, client, accepted, scope, resource, headers).await
}

/// The JOSE `typ` names `expected`, as a media type: without regard to case, with or
/// without `application/` (RFC 7515 §4.1.9).
fn is_type(typ: Option<&str>, expected: &str) -> bool {
    let typ = typ.unwrap_or_default();
    let typ = match (typ.get(..12), typ.get(12..)) {
        (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case("application/") => rest,
        _ => typ,
    };
    typ.eq_ignore_ascii_case(expected)
}

/// `aud` (a string or an array) names one of `ours`; a trailing `/` makes no difference.
fn names_audience(claims: &Claims, ours: &[&str]) -> bool {
    let trim = |s: &str| s.trim_end_matches('/').to_owned();
    let ours: Vec<String> = ours.iter().map(|o| trim(o)).collect();
    claims
        .audiences()
        .is_ok_and(|auds| auds.iter().any(|a| ours.contains(&trim(a))))
}

/// `cnf`: absent, or exactly `{"jkt": "<thumbprint>"}` (RFC 9449 §6.1). Any other
/// confirmation method cannot be honoured here, so it is refused.
fn confirmation(claims: &Claims) -> Result<Option<String>, TokenError> {
    let Some(cnf) = claims.as_map().get("cnf") else {
        return Ok(None);
    };
    match cnf.as_object() {
        Some(members) if members.len() == 1 => match members.get("jkt").and_then(Value::as_str) {
            Some(jkt) if !jkt.is_empty() && jkt.len() <= 128 => Ok(Some(jkt.to_owned())),
            _ => Err(refused("cnf is not a DPoP key thumbprint (jkt)")),
        },
        _ => Err(refused("cnf is not a single DPoP key thumbprint (jkt)")),
    }
}

/// `exp` (required, not past) and the other times, then the replay key of the `jti`.
fn times_and_jti(
    claims: &Claims,
    namespace: &str,
    iss: &str,
    require_jti: bool,
) -> Result<Option<(String, i64)>, TokenError> {
    let now = now_unix();
    check_times(claims, now, DEFAULT_LEEWAY, true)
        .map_err(|e| refused(&format!("the assertion's times: {e}")))?;
    let exp = claims
        .numeric_date("exp")
        .ok()
        .flatten()
        .ok_or_else(|| refused("exp is missing"))?;
    match claims.as_map().get("jti") {
        None if !require_jti => Ok(None),
        Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_JTI => {
            Ok(Some((format!("\u{0}{namespace}\u{0}{iss}\u{0}{jti}"), exp)))
        }
        _ => Err(refused("jti is missing, empty or longer than 256 bytes")),
    }
}

/// An Identity Assertion JWT Authorization Grant from a trusted provider.
async fn id_jag(
    server: &AuthServer,
    client: &ClientRecord,
    idp: &Idp,
    typ: Option<&str>,
    assertion: &str,
) -> Result<Accepted, TokenError> {
    if !client.is_confidential() {
        return Err(TokenError {
            status: StatusCode::UNAUTHORIZED,
            ..err(
                ErrorCode::InvalidClient,
                "client authentication failed: an identity assertion is accepted only from a client that authenticates (client_secret_basic, client_secret_post or private_key_jwt)",
            )
        });
    }
    if !is_type(typ, ID_JAG_TYP) {
        return Err(refused("the header typ is not oauth-id-jag+jwt"));
    }
    let claims = idp
        .verifier
        .verify(assertion)
        .await
        .map_err(|e| not_verified(&e))?;
    if !names_audience(&claims, &[server.issuer()]) {
        return Err(refused("aud does not name this server's issuer"));
    }
    let replay = times_and_jti(&claims, "id-jag", idp.verifier.issuer(), true)?;
    if claims.numeric_date("iat").ok().flatten().is_none() {
        return Err(refused("iat is missing"));
    }
    let Some(sub) = claims.sub().filter(|s| !s.is_empty()) else {
        return Err(refused("sub is missing"));
    };
    if claims.str("client_id") != Some(client.client_id.as_str()) {
        return Err(refused(
            "client_id is not the client that authenticated the request",
        ));
    }
    let resource = match claims.as_map().get("resource") {
        None => None,
        Some(Value::String(resource)) => Some(resource.clone()),
        Some(_) => return Err(refused("resource is not a string")),
    };
    let scope = match claims.as_map().get("scope") {
        None => None,
        Some(Value::String(scope)) => Some(parse_scope_list(scope)),
        Some(_) => return Err(refused("scope is not a string")),
    };
    let jkt = confirmation(&claims)?;
    let subject = if idp.plain_subjects {
        sub.to_owned()
    } else {
        format!("{}:{sub}", idp.name)
    };
    let mut user_claims = Map::new();
    for name in ["email", "email_verified", "name", "preferred_username"] {
        if let Some(value) = claims
            .as_map()
            .get(name)
            .filter(|v| v.is_string() || v.is_boolean())
        {
            user_claims.insert(name.to_owned(), value.clone());
        }
    }
    Ok(Accepted {
        user: Some(UserIdentity {
            subject: subject.clone(),
            claims: user_claims,
        }),
        subject,
        scope,
        resource,
        jkt,
        replay,
        cut_scopes: true,
    })
}

/// A workload's identity token.
async fn workload_token(
    server: &AuthServer,
    client: &ClientRecord,
    workload: &Workload,
    assertion: &str,
) -> Result<Accepted, TokenError> {
    let claims = workload
        .verifier
        .verify(assertion)
        .await
        .map_err(|e| not_verified(&e))?;
    let mut ours = vec![server.issuer()];
    ours.extend(workload.audiences.iter().map(String::as_str));
    if !names_audience(&claims, &ours) {
        return Err(refused(
            "aud names neither this server's issuer nor a configured audience",
        ));
    }
    let replay = times_and_jti(
        &claims,
        "workload",
        workload.verifier.issuer(),
        workload.require_jti,
    )?;
    let mapped = claims.sub().and_then(|sub| workload.clients.get(sub));
    if mapped != Some(&client.client_id) {
        return Err(refused(
            "the workload's subject is not mapped to this client",
        ));
    }
    Ok(Accepted {
        subject: client.client_id.clone(),
        user: None,
        scope: None,
        resource: None,
        jkt: confirmation(&claims)?,
        replay,
        cut_scopes: false,
    })
}

/// The scopes to grant: those asked for (else the issuer's, else the defaults), cut to the
/// issuer's grant, the server's scopes and the client's (its configured or registered
/// scopes, when it has any). A machine's request beyond them is refused rather than cut.
fn scopes(
    server: &AuthServer,
    client: &ClientRecord,
    accepted: &Accepted,
    asked: Option<&str>,
) -> Result<Vec<String>, TokenError> {
    let config = &server.inner.config;
    let registered = client
        .scope
        .as_deref()
        .map(parse_scope_list)
        .filter(|s| !s.is_empty());
    let allowed: Vec<String> = client
        .machine_scopes
        .clone()
        .or(registered)
        .unwrap_or_else(|| config.scopes_supported.clone());
    let requested = match asked.map(parse_scope_list) {
        Some(asked) if !asked.is_empty() => asked,
        _ => accepted.scope.clone().unwrap_or_else(|| {
            if accepted.user.is_some() {
                config.default_scopes.clone()
            } else {
                allowed.clone()
            }
        }),
    };
    let grantable = |s: &String| {
        config.scopes_supported.contains(s)
            && allowed.contains(s)
            && accepted
                .scope
                .as_ref()
                .is_none_or(|granted| granted.contains(s))
    };
    if !accepted.cut_scopes
        && let Some(bad) = requested.iter().find(|s| !grantable(s))
    {
        return Err(err(
            ErrorCode::InvalidScope,
            format!("the scope {bad} is not allowed for this client"),
        ));
    }
    let granted: Vec<String> = requested.iter().filter(|s| grantable(s)).cloned().collect();
    if granted.is_empty() && !requested.is_empty() {
        return Err(err(
            ErrorCode::InvalidScope,
            "none of the requested scopes may be granted to this client",
        ));
    }
    Ok(granted)
}

/// Checks what the request adds (resource, scopes, DPoP proof, the sign-in policy), spends
/// the `jti`, and issues the access token (no refresh token: a new grant comes from the
/// issuer).
async fn issue(
    server: &AuthServer,
    client: &ClientRecord,
    accepted: Accepted,
    asked_scope: Option<&str>,
    asked_resource: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, TokenError> {
    let resource = match (accepted.resource.as_deref(), asked_resource) {
        (Some(granted), Some(asked)) if granted != asked => {
            return Err(err(
                ErrorCode::InvalidTarget,
                "resource differs from the assertion's resource",
            ));
        }
        (Some(granted), _) => resolve_resource(server, Some(granted))
            .map_err(|_| refused("the assertion's resource is not a resource of this server"))?,
        (None, asked) => {
            resolve_resource(server, asked).map_err(|e| err(ErrorCode::InvalidTarget, e))?
        }
    };
    #[cfg_attr(not(feature = "policy"), allow(unused_mut))]
    let mut scope = scopes(server, client, &accepted, asked_scope)?;
    // The proof before the jti is spent: a thief without the key spends nothing.
    if accepted.jkt.is_some() && server.inner.tokens.dpop.is_none() {
        return Err(refused(
            "the assertion is bound to a DPoP key (cnf.jkt) and DPoP is off at this server",
        ));
    }
    let proof = dpop_proof(server, headers).await?;
    check_binding(accepted.jkt.as_deref(), proof.as_ref(), "assertion")?;
    #[cfg(feature = "policy")]
    if let (Some(user), Some(access)) = (&accepted.user, &server.inner.access) {
        scope = access
            .decide_for(
                &client.client_id,
                &scope,
                user,
                Some(super::access::At::Token),
            )
            .map_err(|refusal| match refusal {
                super::access::Refusal::SignIn => {
                    err(ErrorCode::InvalidGrant, refusal.description())
                }
                super::access::Refusal::NoScope => {
                    err(ErrorCode::InvalidScope, refusal.description())
                }
            })?;
    }
    if let Some((key, exp)) = &accepted.replay
        && !spend_jti(server, key, *exp).await?
    {
        return Err(refused("the assertion was already used (jti replayed)"));
    }
    let family = random_token();
    let no_claims = Map::new();
    let user_claims = accepted.user.as_ref().map_or(&no_claims, |u| &u.claims);
    let grant = Grant {
        subject: &accepted.subject,
        client_id: &client.client_id,
        scope: &scope,
        resource: resource.as_deref(),
        user_claims,
        family: &family,
        ttl: None,
    };
    let jkt = proof.as_ref().map(crate::dpop::DpopProof::jkt);
    tracing::info!(target: "mcp_oauth::auth_server", client_id = %client.client_id, subject = %accepted.subject, bound = jkt.is_some(), "token issued for a JWT-bearer grant");
    Ok(token_response(
        mint_bound(server, &grant, jkt),
        &scope,
        resource.as_deref(),
        None,
        server.inner.config.lifetimes.access_token,
        jkt.is_some(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_is_a_media_type() {
        assert!(is_type(Some("oauth-id-jag+jwt"), ID_JAG_TYP));
        assert!(is_type(Some("OAuth-ID-JAG+JWT"), ID_JAG_TYP));
        assert!(is_type(Some("application/oauth-id-jag+jwt"), ID_JAG_TYP));
        assert!(is_type(Some("Application/oauth-id-jag+jwt"), ID_JAG_TYP));
        assert!(!is_type(Some("JWT"), ID_JAG_TYP));
        assert!(!is_type(Some("at+jwt"), ID_JAG_TYP));
        assert!(!is_type(Some("application/"), ID_JAG_TYP));
        assert!(!is_type(Some("é"), ID_JAG_TYP));
        assert!(!is_type(Some("ééééééé/oauth-id-jag+jwt"), ID_JAG_TYP));
        assert!(!is_type(None, ID_JAG_TYP));
    }

    #[test]
    fn cnf_is_a_single_jkt() {
        let claims = |cnf: Value| {
            Claims::new(
                serde_json::json!({ "cnf": cnf })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )
        };
        assert_eq!(
            confirmation(&claims(serde_json::json!({"jkt": "abc"}))).ok(),
            Some(Some("abc".to_owned()))
        );
        assert!(confirmation(&claims(serde_json::json!({"x5t#S256": "abc"}))).is_err());
        assert!(confirmation(&claims(serde_json::json!({"jkt": "abc", "jwk": {}}))).is_err());
        assert!(confirmation(&claims(serde_json::json!("abc"))).is_err());
        assert!(confirmation(&claims(serde_json::json!({"jkt": 1}))).is_err());
        assert_eq!(confirmation(&Claims::new(Map::new())).ok(), Some(None));
    }

    const OWN: &str = "https://as.example";

    #[test]
    fn configuration_is_checked() {
        let keys = r#"{"keys":[]}"#;
        assert!(JwtBearer::new(OWN, Vec::new(), Vec::new()).is_ok_and(|c| c.is_none()));
        let twice = JwtBearer::new(
            OWN,
            vec![TrustedIdp::new("a", "https://idp.example").jwks_json(keys)],
            vec![
                WorkloadIssuer::new("https://idp.example")
                    .jwks_json(keys)
                    .client("s", "c"),
            ],
        );
        assert!(twice.is_err());
        let no_keys = JwtBearer::new(
            OWN,
            vec![TrustedIdp::new("a", "https://idp.example")],
            Vec::new(),
        );
        assert!(no_keys.is_err());
        let bad_name = JwtBearer::new(
            OWN,
            vec![TrustedIdp::new("a b", "https://idp.example").jwks_json(keys)],
            Vec::new(),
        );
        assert!(bad_name.is_err());
        let no_clients = JwtBearer::new(
            OWN,
            Vec::new(),
            vec![WorkloadIssuer::new("https://wl.example").jwks_json(keys)],
        );
        assert!(no_clients.is_err());
        let ourselves = JwtBearer::new(
            OWN,
            vec![TrustedIdp::new("a", OWN).jwks_json(keys)],
            Vec::new(),
        );
        assert!(ourselves.is_err());
    }
}
