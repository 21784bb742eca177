//! The issuers of the JWT-bearer grant as the operator configures them ([`TrustedIdp`],
//! [`WorkloadIssuer`]), checked and built once ([`JwtBearer`]): each with its own verifier.

use std::collections::HashMap;

use crate::error::ConfigError;
use crate::jose::Algorithms;
use crate::verify::JwtVerifier;

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
/// ([`AuthServerBuilder::trusted_idp`](crate::auth_server::AuthServerBuilder::trusted_idp)).
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
/// ([`AuthServerBuilder::workload_issuer`](crate::auth_server::AuthServerBuilder::workload_issuer)).
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
/// are the client's scopes ([`ClientSpec::scopes`](crate::auth_server::ClientSpec::scopes)).
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

pub(super) struct Idp {
    pub(super) name: String,
    pub(super) verifier: JwtVerifier,
    pub(super) plain_subjects: bool,
}

pub(super) struct Workload {
    pub(super) verifier: JwtVerifier,
    pub(super) audiences: Vec<String>,
    pub(super) require_jti: bool,
    pub(super) clients: HashMap<String, String>,
}

/// Whose assertion it is, by its `iss`.
pub(super) enum Source<'a> {
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

    /// The issuer named `iss`, if trusted.
    pub(super) fn source(&self, iss: &str) -> Option<Source<'_>> {
        if let Some(idp) = self.idps.iter().find(|i| i.verifier.issuer() == iss) {
            return Some(Source::Idp(idp));
        }
        self.workloads
            .iter()
            .find(|w| w.verifier.issuer() == iss)
            .map(Source::Workload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
