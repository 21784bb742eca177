//! `mcp-oauth serve`: the demo MCP server in front of an existing issuer.
//!
//! Scopes: `--scopes` (`OIDC_SCOPES`) when given; otherwise the resource scopes the issuer's
//! metadata lists (never `openid`, `offline_access` or the other OpenID Connect identity
//! scopes), or, when it lists none, the scopes the demo tools require. An issuer whose
//! metadata cannot be read, or a result with no scope at all, stops the command with an error
//! that says to set `OIDC_SCOPES`: an empty advertisement makes the TypeScript SDK clients and
//! the MCP Inspector ask for no scope, which issuers such as oidc-provider refuse.
//!
//! Several issuers: repeat `--issuer`. Each token is verified by the issuer its `iss` names,
//! with that issuer's keys (from its discovery document); all are advertised in
//! `authorization_servers`, the first one first (the one clients should prefer); without
//! `--scopes`, the scopes of every issuer's metadata are advertised. `--public-key` gives the
//! keys of one issuer and is refused with several.

use std::path::{Path, PathBuf};

use clap::Args;
use mcp_oauth::OAuth;
use mcp_oauth::authenticator::Issuer;
use mcp_oauth::fetch::HttpClient;
use mcp_oauth::jose::{Algorithms, Jwk, VerifyingKey};
use mcp_oauth::metadata::discover;
use mcp_oauth::scope::default_advertisement;

use crate::listen::is_loopback;
use crate::options::PolicyArgs;
use mcp_oauth::verify::{JwtVerifier, JwtVerifierBuilder};

/// The public URL of the MCP endpoint when `--mcp-url` is not given.
const DEFAULT_MCP_URL: &str = "http://127.0.0.1:8080/mcp";

/// The scopes the demo tools require (`admin_action` needs `admin`; see `demo.rs`).
const DEMO_TOOL_SCOPES: &[&str] = &["admin"];

/// Options of `mcp-oauth serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Issuer URL of the authorization server (its keys are found through its discovery
    /// document, unless --public-key gives them). Repeat to trust several issuers: each token
    /// is verified by the issuer its `iss` names; the first is advertised first.
    #[arg(
        long = "issuer",
        env = "OIDC_ISSUER",
        value_name = "URL",
        required = true
    )]
    issuers: Vec<String>,
    /// Public URL of the MCP endpoint, the one clients use (behind a reverse proxy: the
    /// external https URL) [default: http://127.0.0.1:8080/mcp; required when --listen is not
    /// a loopback address].
    #[arg(long, env = "MCP_URL", value_name = "URL")]
    mcp_url: Option<String>,
    /// Another accepted token audience (an API identifier, a client id).
    #[arg(long, env = "OIDC_AUDIENCE")]
    audience: Option<String>,
    /// Scopes advertised in the metadata and the 401 challenge, space-separated [default:
    /// the resource scopes of the issuer's metadata, else the demo tools' scopes].
    #[arg(long, env = "OIDC_SCOPES")]
    scopes: Option<String>,
    /// Address to listen on, as HOST:PORT (e.g. 0.0.0.0:8080 behind a reverse proxy)
    /// [default: the host and port of --mcp-url].
    #[arg(long, env = "MCP_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Verify tokens with this public key instead of the issuer's key set: a PEM file
    /// (PUBLIC KEY or RSA PUBLIC KEY), a JWK or a JWKS (JSON).
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    dpop: crate::options::DpopArgs,
    #[command(flatten)]
    metrics: crate::metrics_arg::MetricsArgs,
}

fn non_blank(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

pub(crate) async fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let access = args.policy.load(None)?;
    // One process, no store: used proofs are remembered in memory.
    let dpop = args.dpop.verifier(None)?;
    let public_url = non_blank(args.mcp_url);
    let mcp_url = public_url
        .clone()
        .unwrap_or_else(|| DEFAULT_MCP_URL.to_owned());
    let listen = match non_blank(args.listen) {
        Some(listen) => listen.trim().to_owned(),
        None => listen_addr(&mcp_url)?,
    };
    if public_url.is_none() && !is_loopback(&listen) {
        return Err(format!(
            "no public URL: --listen {listen} is not a loopback address, so clients reach this server through another URL; set --mcp-url (MCP_URL) to it, e.g. https://mcp.example.com/mcp"
        )
        .into());
    }

    let oauth = match args.issuers.as_slice() {
        [issuer] => {
            issuer_oauth_builder(
                issuer,
                args.public_key.as_deref(),
                non_blank(args.scopes),
                non_blank(args.audience),
                mcp_url,
                DEMO_TOOL_SCOPES,
            )
            .await?
        }
        issuers => {
            if args.public_key.is_some() {
                return Err("--public-key gives the keys of one issuer; with several --issuer, each issuer's keys come from its discovery document".into());
            }
            issuers_oauth_builder(
                issuers,
                non_blank(args.scopes),
                non_blank(args.audience),
                mcp_url,
                DEMO_TOOL_SCOPES,
            )
            .await?
        }
    };
    let oauth = args.dpop.resource(oauth, dpop).build()?;
    println!("MCP endpoint:  {}", oauth.resource());
    for issuer in oauth.authorization_servers() {
        println!("issuer:        {issuer}");
    }
    println!("metadata:      {}", oauth.resource().metadata_url());
    println!("listening on:  {listen}");
    let mut server = crate::demo::server().oauth(oauth);
    if let Some((metrics, url)) = args.metrics.start().await? {
        println!("metrics:       {url}");
        server = server.metrics(metrics);
    }
    // The issuer decides who signs in: only the tool rules of the policy apply here.
    if let Some(config) = access.tools {
        println!("policy:        tool calls decided by --policy");
        server = server.policy(config);
    }
    if let Some(audit) = access.audit {
        server = server.audit(audit);
    }
    server.listen(listen).await?;
    Ok(())
}

/// The resource-server configuration for tokens of an existing issuer, at `mcp_url`, not yet
/// built: keys from the issuer's discovery document or from `public_key`; scopes as given,
/// else from the issuer's metadata (see the module docs), with `tool_scopes` the tools
/// require. `gateway` verifies tokens this way too.
pub(crate) async fn issuer_oauth_builder(
    issuer: &str,
    public_key: Option<&Path>,
    scopes: Option<String>,
    audience: Option<String>,
    mcp_url: String,
    tool_scopes: &[&str],
) -> Result<mcp_oauth::OAuthBuilder, Box<dyn std::error::Error>> {
    let mut verifier = JwtVerifier::builder().issuer(issuer.to_owned());
    verifier = match public_key {
        Some(path) => static_keys(verifier, path)?,
        None => verifier.discover_jwks(),
    };
    let scopes = match scopes {
        Some(scopes) => scopes.split_whitespace().map(str::to_owned).collect(),
        None => {
            let scopes = scopes_from_issuer(issuer, tool_scopes).await?;
            println!(
                "scopes:        {} (the issuer's resource scopes and the tools'; set OIDC_SCOPES to choose)",
                scopes.join(" ")
            );
            scopes
        }
    };
    let mut oauth = OAuth::builder()
        .resource(mcp_url)
        .authorization_server(issuer.to_owned())
        .verifier(verifier.build()?)
        .scopes_supported(scopes);
    if let Some(audience) = audience {
        oauth = oauth.audience(audience);
    }
    Ok(oauth)
}

/// The resource-server configuration trusting several issuers, each token verified by the
/// issuer its `iss` names with keys from that issuer's discovery document; `audience` is
/// accepted from each. Scopes as given, else every issuer's (see the module docs).
async fn issuers_oauth_builder(
    issuers: &[String],
    scopes: Option<String>,
    audience: Option<String>,
    mcp_url: String,
    tool_scopes: &[&str],
) -> Result<mcp_oauth::OAuthBuilder, Box<dyn std::error::Error>> {
    let scopes = match scopes {
        Some(scopes) => scopes.split_whitespace().map(str::to_owned).collect(),
        None => {
            let mut all: Vec<String> = Vec::new();
            for issuer in issuers {
                for scope in scopes_from_issuer(issuer, tool_scopes).await? {
                    if !all.contains(&scope) {
                        all.push(scope);
                    }
                }
            }
            println!(
                "scopes:        {} (the issuers' resource scopes and the tools'; set OIDC_SCOPES to choose)",
                all.join(" ")
            );
            all
        }
    };
    let mut oauth = OAuth::builder().resource(mcp_url).scopes_supported(scopes);
    for issuer in issuers {
        let mut trusted = Issuer::discover(issuer.clone());
        if let Some(audience) = &audience {
            trusted = trusted.audience(audience.clone());
        }
        oauth = oauth.issuer(trusted);
    }
    Ok(oauth)
}

/// The `host:port` of a public URL (the scheme's port when it has none).
fn listen_addr(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("--mcp-url {url:?}: {e}"))?;
    Ok(format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port_or_known_default().unwrap_or(80)
    ))
}

/// Static verification keys from `path`: a JWKS or a JWK (JSON), or a PEM public key, which is
/// accepted for every algorithm of its key type (an RSA key for RS* and PS*).
fn static_keys(builder: JwtVerifierBuilder, path: &Path) -> Result<JwtVerifierBuilder, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --public-key {}: {e}", path.display()))?;
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        let doc: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| {
            format!(
                "--public-key {}: not JSON ({e}); give a PEM public key, a JWK or a JWKS",
                path.display()
            )
        })?;
        if doc.get("keys").is_some() {
            return Ok(builder.jwks_json(trimmed));
        }
        let jwk: Jwk = serde_json::from_value(doc)
            .map_err(|e| format!("--public-key {}: not a JWK ({e})", path.display()))?;
        return Ok(builder.jwk(&jwk));
    }
    if !trimmed.starts_with("-----BEGIN") {
        return Err(format!(
            "--public-key {}: give a PEM public key (-----BEGIN PUBLIC KEY-----), a JWK or a JWKS",
            path.display()
        ));
    }
    let algorithms: Vec<_> = Algorithms::default()
        .iter()
        .filter(|alg| VerifyingKey::from_pem(trimmed, *alg, None).is_ok())
        .collect();
    if algorithms.is_empty() {
        return Err(format!(
            "--public-key {}: not an RSA, EC (P-256, P-384) or Ed25519 public key in PEM (PUBLIC KEY or RSA PUBLIC KEY); a private key does not belong here",
            path.display()
        ));
    }
    Ok(algorithms
        .into_iter()
        .fold(builder, |b, alg| b.public_key_pem(trimmed, alg, None)))
}

/// The scopes to advertise when none are configured, from the issuer's metadata.
///
/// # Errors
///
/// The metadata cannot be read, or no scope results: both say to set `OIDC_SCOPES`.
async fn scopes_from_issuer(issuer: &str, tool_scopes: &[&str]) -> Result<Vec<String>, String> {
    const SET: &str = "set OIDC_SCOPES (--scopes) to the scopes clients should ask for, e.g. \"mcp:read mcp:write\"";
    let url = url::Url::parse(issuer).map_err(|e| format!("--issuer {issuer:?}: {e}"))?;
    let client = HttpClient::new().map_err(|e| e.to_string())?;
    let metadata = discover(&client, &url)
        .await
        .map_err(|e| {
            format!(
                "cannot read the issuer's metadata to choose the scopes to advertise ({e}): {SET}"
            )
        })?
        .metadata;
    let (scopes, dropped) =
        default_advertisement(metadata.scopes_supported.as_deref(), tool_scopes);
    for scope in dropped {
        eprintln!(
            "warning: a tool requires the scope {scope:?}, which the issuer's scopes_supported does not list: it is not advertised (clients registering with an unknown scope are refused by some issuers); set OIDC_SCOPES if the issuer grants it"
        );
    }
    if scopes.is_empty() {
        return Err(format!(
            "the issuer's metadata offers no resource scope and the tools require none, so clients would ask for no scope (the TypeScript SDK clients and the MCP Inspector then fail against issuers such as oidc-provider): {SET}"
        ));
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_issuers_resource_scopes_are_advertised_without_identity_scopes() {
        let offered = strings(&[
            "openid",
            "offline_access",
            "profile",
            "mcp:read",
            "mcp:write",
            "admin",
        ]);
        let (scopes, dropped) = default_advertisement(Some(&offered), &["admin"]);
        assert_eq!(scopes, ["mcp:read", "mcp:write", "admin"]);
        assert!(dropped.is_empty());
    }

    #[test]
    fn tool_scopes_the_issuer_does_not_list_are_set_apart() {
        let offered = strings(&["openid", "mcp:read", "mcp:write"]);
        let (scopes, dropped) = default_advertisement(Some(&offered), &["admin"]);
        assert_eq!(scopes, ["mcp:read", "mcp:write"]);
        assert_eq!(dropped, ["admin"]);
    }

    #[test]
    fn without_resource_scopes_from_the_issuer_the_tools_scopes_are_advertised() {
        let (scopes, dropped) = default_advertisement(None, &["admin"]);
        assert_eq!(scopes, ["admin"]);
        assert!(dropped.is_empty());

        // Auth0 lists only OpenID Connect scopes and claim names.
        let offered = strings(&[
            "openid",
            "profile",
            "offline_access",
            "name",
            "email",
            "email_verified",
        ]);
        assert_eq!(
            default_advertisement(Some(&offered), &["admin"]).0,
            ["admin"]
        );
        assert!(default_advertisement(Some(&offered), &[]).0.is_empty());
    }

    #[test]
    fn a_public_url_listens_on_its_host_and_port() {
        // Whether a listen address is public: `listen::tests`.
        assert_eq!(
            listen_addr("https://mcp.example.com/mcp").as_deref(),
            Ok("mcp.example.com:443")
        );
    }
}
