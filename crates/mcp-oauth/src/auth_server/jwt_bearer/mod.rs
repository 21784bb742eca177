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

mod checks;
pub(super) mod config;

use std::collections::HashMap;

use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use serde_json::Map;

pub use checks::ID_JAG_TYP;
pub(crate) use config::JwtBearer;
use config::Source;
pub use config::{TrustedIdp, WorkloadIssuer};

use super::assertion::spend_jti;
use super::clients::{load_client, resolve_resource};
use super::http::{TokenError, err, random_token};
use super::issue::{check_binding, dpop_proof, token_response};
use super::login::UserIdentity;
use super::mint::{Grant, mint_bound};
use super::protocol::{ClientAuthMethod, ErrorCode, GrantType};
use super::server::AuthServer;
use super::store::ClientRecord;
use crate::error::VerifyError;
use crate::scope::parse_scope_list;

/// The one description of a refused assertion.
const REFUSED: &str = "the assertion is not valid for this server";

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
            checks::id_jag(server, client, idp, unverified.typ.as_deref(), assertion).await?
        }
        Some(Source::Workload(workload)) => {
            checks::workload_token(server, client, workload, assertion).await?
        }
        None => return Err(refused("the assertion's issuer is not trusted")),
    };
    issue(server, client, accepted, scope, resource, headers).await
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
