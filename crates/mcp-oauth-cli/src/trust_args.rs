//! `--trust-idp`, `--workload-issuer` and `--workload-client`: the issuers whose JWTs the
//! embedded authorization server accepts with the JWT-bearer grant (RFC 7523), for
//! Enterprise-Managed Authorization (ID-JAG) and workload identity federation.

use std::path::Path;

use clap::Args;
use mcp_oauth::auth_server::{
    AuthServerBuilder, ClientSpec, GrantType, TrustedIdp, WorkloadIssuer,
};

/// The JWT-bearer grant's issuers.
#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    /// An enterprise identity provider whose ID-JAGs (Enterprise-Managed Authorization) are
    /// accepted at /token, as ISSUER=JWKS, JWKS a URL or a file holding a JWK Set
    /// (repeatable). Its users are <issuer host>:<sub>. The --client clients may then use the
    /// jwt-bearer grant too.
    #[arg(long = "trust-idp", value_name = "ISSUER=JWKS")]
    idps: Vec<String>,
    /// A workload identity issuer (a CI system, a cluster) whose tokens are accepted at
    /// /token, as ISSUER=JWKS, JWKS a URL or a file holding a JWK Set (repeatable). Map its
    /// workloads to clients with --workload-client.
    #[arg(long = "workload-issuer", value_name = "ISSUER=JWKS")]
    workload_issuers: Vec<String>,
    /// The workload whose token from ISSUER (a --workload-issuer) has the subject SUBJECT is
    /// the client CLIENT_ID, registered with no secret (the token is its credential) and the
    /// scopes mcp:read and mcp:write (repeatable).
    #[arg(long = "workload-client", value_name = "ISSUER#SUBJECT=CLIENT_ID")]
    workload_clients: Vec<String>,
}

/// `ISSUER=JWKS`: the issuer, and its keys (a URL, else the contents of a file).
fn issuer_and_keys(flag: &str, value: &str) -> Result<(String, Keys), String> {
    let Some((issuer, jwks)) = value
        .split_once('=')
        .filter(|(i, j)| !i.is_empty() && !j.is_empty())
    else {
        return Err(format!(
            "{flag} takes ISSUER=JWKS (JWKS a URL or a file holding a JWK Set), not {value:?}"
        ));
    };
    let keys = if jwks.starts_with("https://") || jwks.starts_with("http://") {
        Keys::Url(jwks.to_owned())
    } else {
        let text = std::fs::read_to_string(Path::new(jwks))
            .map_err(|e| format!("{flag} {issuer}: cannot read the JWK Set file {jwks}: {e}"))?;
        Keys::Json(text)
    };
    Ok((issuer.to_owned(), keys))
}

#[derive(Debug)]
enum Keys {
    Url(String),
    Json(String),
}

/// The name of a provider's users' namespace: its issuer's host.
fn idp_name(issuer: &str) -> Result<String, String> {
    url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .ok_or_else(|| format!("--trust-idp {issuer}: the issuer is not a URL with a host"))
}

impl TrustArgs {
    /// Whether an enterprise identity provider is trusted (the `--client` clients then get
    /// the jwt-bearer grant).
    pub(crate) fn trusts_idps(&self) -> bool {
        !self.idps.is_empty()
    }

    /// The issuers and workload clients on `builder`; `taken` are the client ids already
    /// configured (a workload client may not reuse one).
    pub(crate) fn apply(
        &self,
        mut builder: AuthServerBuilder,
        taken: &[String],
    ) -> Result<AuthServerBuilder, String> {
        for value in &self.idps {
            let (issuer, keys) = issuer_and_keys("--trust-idp", value)?;
            let idp = TrustedIdp::new(idp_name(&issuer)?, issuer);
            builder = builder.trusted_idp(match keys {
                Keys::Url(url) => idp.jwks_url(url),
                Keys::Json(json) => idp.jwks_json(json),
            });
        }
        let mut issuers = Vec::new();
        for value in &self.workload_issuers {
            let (issuer, keys) = issuer_and_keys("--workload-issuer", value)?;
            let workload = WorkloadIssuer::new(issuer.clone());
            issuers.push(match keys {
                Keys::Url(url) => workload.jwks_url(url),
                Keys::Json(json) => workload.jwks_json(json),
            });
        }
        let mut clients: Vec<String> = Vec::new();
        for value in &self.workload_clients {
            let parsed = value
                .split_once('#')
                .and_then(|(issuer, rest)| {
                    let (subject, client) = rest.rsplit_once('=')?;
                    Some((issuer, subject, client))
                })
                .filter(|(i, s, c)| !i.is_empty() && !s.is_empty() && !c.is_empty());
            let Some((issuer, subject, client)) = parsed else {
                return Err(format!(
                    "--workload-client takes ISSUER#SUBJECT=CLIENT_ID, not {value:?}"
                ));
            };
            let Some(index) = issuers.iter().position(|w| w.issuer() == issuer) else {
                return Err(format!(
                    "--workload-client {value}: {issuer} is no --workload-issuer"
                ));
            };
            if taken.iter().any(|t| t == client) {
                return Err(format!(
                    "--workload-client {value}: {client} is already a --client; give the workload another client id"
                ));
            }
            let mapped = issuers.remove(index).client(subject, client);
            issuers.insert(index, mapped);
            if !clients.iter().any(|c| c == client) {
                clients.push(client.to_owned());
            }
        }
        for issuer in issuers {
            builder = builder.workload_issuer(issuer);
        }
        for client in clients {
            builder =
                builder.client(ClientSpec::workload(client).scopes(["mcp:read", "mcp:write"]));
        }
        Ok(builder)
    }
}

/// A `--client` that may also use the jwt-bearer grant (with `--trust-idp`).
pub(crate) fn with_jwt_bearer(client: ClientSpec) -> ClientSpec {
    let mut grants = client.grant_types.clone();
    grants.push(GrantType::JwtBearer);
    client.grant_types(grants)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_split_where_they_should_be() {
        assert!(issuer_and_keys("--trust-idp", "https://idp.example").is_err());
        assert!(issuer_and_keys("--trust-idp", "=https://idp.example/jwks").is_err());
        let (issuer, keys) = issuer_and_keys(
            "--trust-idp",
            "https://idp.example=https://idp.example/jwks",
        )
        .unwrap();
        assert_eq!(issuer, "https://idp.example");
        assert!(matches!(keys, Keys::Url(url) if url == "https://idp.example/jwks"));
        let missing = issuer_and_keys("--trust-idp", "https://idp.example=/nonexistent/jwks.json");
        assert!(missing.unwrap_err().contains("cannot read"));
        assert_eq!(
            idp_name("https://login.acme.example/tenant").unwrap(),
            "login.acme.example"
        );
        assert!(idp_name("acme").is_err());
    }
}
