//! `mcp-oauth doctor`: checks an authorization server, an MCP endpoint and an access token
//! the way MCP clients and this library do, and explains every check in plain words.
//!
//! The order follows what a client meets: the MCP endpoint's 401 challenge and its
//! protected-resource metadata (RFC 9728), the authorization server's metadata in the MCP
//! discovery order (RFC 8414 / OpenID Connect Discovery), its key set, then the token, checked
//! claim by claim and finally through the library's own pipeline so that the explanation and
//! the verdict cannot disagree. See `docs/doctor.md`.

mod endpoint;
mod preset;
mod report;
mod server;
mod time;
mod token;

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args};
use mcp_oauth::fetch::HttpClient;

use self::report::{Check, Report};

const EXAMPLES: &str = "\
Examples:
  # The authorization server alone: discovery, PKCE, issuer, keys.
  mcp-oauth doctor --issuer https://tenant.eu.auth0.com/

  # An MCP endpoint: its 401 challenge and metadata, then the issuer it names.
  mcp-oauth doctor --mcp-url https://mcp.example.com/mcp

  # Why is this token refused? (the token is read from standard input)
  mcp-oauth doctor --mcp-url https://mcp.example.com/mcp --scope mcp:read --token-file - <<<\"$TOKEN\"

  # A Clerk token, checked as a server built with the Clerk preset checks it.
  MCP_USE_OAUTH_CLERK_FRONTEND_API_URL=https://verb-noun-42.clerk.accounts.dev \\
    mcp-oauth doctor --provider clerk --mcp-url https://mcp.example.com/mcp --token-file token.txt

  # For a script: one JSON document on standard output.
  mcp-oauth doctor --issuer https://auth.example.com --json | jq '.checks[] | select(.status == \"fail\")'

Exit status: 0 when no check failed (warnings allowed), 1 when one did, 2 for a usage error.";

/// Options of `mcp-oauth doctor`.
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
#[command(group(ArgGroup::new("target").required(true).multiple(true).args(["issuer", "mcp_url", "provider"])))]
pub(crate) struct DoctorArgs {
    /// Issuer URL of the authorization server, exactly as tokens carry it in `iss` (a
    /// trailing slash matters). May be left out with --mcp-url: the first of the MCP server's
    /// `authorization_servers` is then used.
    #[arg(
        long,
        env = "OIDC_ISSUER",
        value_name = "URL",
        value_parser = http_url
    )]
    issuer: Option<String>,
    /// Public URL of the MCP endpoint, as clients are configured with it
    /// (https://mcp.example.com/mcp). Its 401 challenge and protected-resource metadata are
    /// checked, and it is the audience tokens must carry.
    #[arg(long, env = "MCP_URL", value_name = "URL", value_parser = http_url)]
    mcp_url: Option<String>,
    /// Check as a server built with this provider preset does: its issuer, key location,
    /// algorithms, audience rule and extra checks (Clerk and WorkOS session tokens, Keycloak
    /// refresh tokens are refused). Its settings come from the same MCP_USE_OAUTH_* variables
    /// (and .env file) as the preset's `from_env`. Gives the issuer when --issuer is left out.
    #[arg(long, value_enum, value_name = "NAME")]
    provider: Option<preset::PresetName>,
    /// An access token to explain. It shows in the process list: prefer --token-file.
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// Read the access token from a file (`-`: standard input). A token endpoint's JSON
    /// response works too: its `access_token` is used.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Another audience the server accepts besides the MCP URL, compared exactly, as
    /// configured with `.audience(..)` (an Auth0 API identifier, a Keycloak client id).
    /// Repeatable.
    #[arg(long = "audience", value_name = "AUD", env = "OIDC_AUDIENCE")]
    audiences: Vec<String>,
    /// A scope the token must grant. Repeatable, or several separated by spaces.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// Print one JSON document on standard output instead of text:
    /// {"ok", "issuer", "mcp_url", "checks": [{"id", "status", "message", "hint"}]}.
    #[arg(long)]
    json: bool,
    /// Allow plain http to hosts other than loopback (a private network only: keys and
    /// metadata fetched over http can be replaced by anyone on the path).
    #[arg(long)]
    insecure_http: bool,
    /// Seconds to wait for each request.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    timeout: u64,
}

/// Where the issuer under test came from, for hints that say what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IssuerSource {
    /// `--issuer` (or `OIDC_ISSUER`).
    Flag,
    /// `authorization_servers[0]` of the MCP server's protected-resource metadata.
    ProtectedResource,
    /// The `--provider` preset (its `MCP_USE_OAUTH_*` variables).
    Preset(&'static str),
}

/// What every check needs: the HTTP clients and the options that change them.
struct Context {
    /// Metadata and keys: no redirects, size limits, https only (loopback excepted).
    client: HttpClient,
    /// The unauthenticated POST to the MCP endpoint, which must see non-200 statuses.
    web: reqwest::Client,
    insecure_http: bool,
}

pub(crate) async fn run(args: DoctorArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let token = match read_token(&args) {
        Ok(token) => token,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let timeout = Duration::from_secs(args.timeout);
    let connect_timeout = timeout.min(Duration::from_secs(5));
    let mut builder = HttpClient::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout);
    if args.insecure_http {
        builder = builder.insecure_allow_http();
    }
    let ctx = Context {
        client: builder.build()?,
        web: reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcp-oauth-doctor/", env!("CARGO_PKG_VERSION")))
            .build()?,
        insecure_http: args.insecure_http,
    };

    let preset = match args.provider {
        None => None,
        Some(name) => match name.spec(&mcp_oauth::providers::process_env) {
            Ok(spec) => Some(spec),
            Err(err) => {
                eprintln!(
                    "error: --provider {name}: {err} (a server built with this preset fails to start the same way)"
                );
                return Ok(ExitCode::from(2));
            }
        },
    };

    let mut report = Report::default();
    if let Some(spec) = &preset {
        preset::describe(&mut report, spec);
        if let Some(flag) = args.issuer.as_deref().filter(|i| *i != spec.issuer) {
            report.add(
                Check::fail("provider.issuer", format!("--issuer (or OIDC_ISSUER) is {flag}, but a server built with the {} preset uses the issuer {}: the preset is what the server runs, so it is checked.", spec.name, spec.issuer))
                    .hint("Leave out --issuer (and unset OIDC_ISSUER) with --provider, or fix the preset's MCP_USE_OAUTH_* variable if the issuer is wrong."),
            );
        }
    }
    // The issuer a server would be configured with: the preset's, else --issuer.
    let configured_issuer = preset
        .as_ref()
        .map(|spec| spec.issuer.as_str())
        .or(args.issuer.as_deref());

    let mut endpoint = endpoint::Findings::default();
    if let Some(mcp_url) = &args.mcp_url {
        report.set_mcp_url(mcp_url);
        endpoint = endpoint::check(&ctx, &mut report, mcp_url, configured_issuer).await;
    }

    let advertised = endpoint
        .metadata
        .as_ref()
        .and_then(|doc| doc.authorization_servers.first());
    let issuer = match (&args.issuer, advertised) {
        _ if preset.is_some() => preset
            .as_ref()
            .map(|spec| (spec.issuer.clone(), IssuerSource::Preset(spec.name))),
        (Some(issuer), _) => Some((issuer.clone(), IssuerSource::Flag)),
        (None, Some(issuer)) => Some((issuer.clone(), IssuerSource::ProtectedResource)),
        (None, None) => {
            let why = if endpoint.metadata.is_some() {
                "named none"
            } else {
                "could not be read (see above)"
            };
            report.add(
                Check::fail(
                    "as.metadata",
                    format!("No authorization server to check: --issuer was not given and the MCP server's protected-resource metadata {why}."),
                )
                .hint("Pass --issuer with the issuer URL of your authorization server (the `iss` of its tokens)."),
            );
            None
        }
    };

    let mut server = server::Findings::default();
    if let Some((issuer, source)) = &issuer {
        report.set_issuer(issuer);
        let preset_jwks = preset.as_ref().and_then(|spec| spec.jwks_url.as_deref());
        server = server::check(&ctx, &mut report, issuer, *source, preset_jwks).await;
    }

    if let Some(input) = token {
        for note in &input.notes {
            report.add(Check::info("token.input", note.clone()));
        }
        let inputs = token::Inputs {
            issuer: issuer.as_ref().map(|(issuer, _)| issuer.as_str()),
            resource: endpoint.resource.as_ref(),
            audiences: &args.audiences,
            scopes: &args.scopes,
            server: &server,
            preset: preset.as_ref(),
        };
        token::check(&ctx, &mut report, &input.token, inputs).await;
    }

    if args.json {
        println!("{}", report.to_json()?);
    } else {
        print!("{}", report.to_text(report::use_color()));
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Accepts an absolute `http(s)` URL with a host, keeping it exactly as written: issuers are
/// compared byte for byte, so nothing may be normalised here.
fn http_url(value: &str) -> Result<String, String> {
    if value.trim() != value {
        return Err("remove the spaces around the URL".into());
    }
    let url = url::Url::parse(value).map_err(|e| format!("not an absolute URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be https (or http), not {}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(value.to_owned())
}

/// The token to explain and what was done to the input to get it.
#[derive(Debug)]
struct TokenInput {
    token: String,
    notes: Vec<String>,
}

/// Reads `--token` or `--token-file`, trimming it and unwrapping the usual copy-paste forms.
fn read_token(args: &DoctorArgs) -> Result<Option<TokenInput>, String> {
    let raw = match (&args.token, &args.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read the token from standard input: {e}"))?;
            text
        }
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read --token-file {}: {e}; give a readable file, `-` for standard input, or --token",
                path.display()
            )
        })?,
        (None, None) => return Ok(None),
    };
    clean_token(&raw).map(Some)
}

fn clean_token(raw: &str) -> Result<TokenInput, String> {
    let mut notes = Vec::new();
    let mut token = raw.trim().to_owned();
    if token.starts_with('{')
        && let Ok(serde_json::Value::Object(doc)) = serde_json::from_str(&token)
    {
        let Some(access) = doc.get("access_token").and_then(|v| v.as_str()) else {
            return Err(
                "the token input is a JSON object without an access_token member; pass the access token itself".into(),
            );
        };
        notes.push("The input is a token response; its access_token is checked.".to_owned());
        token = access.trim().to_owned();
    }
    if let Some(rest) = strip_prefix_ignore_case(&token, "bearer ") {
        notes.push(
            "Removed the \"Bearer \" prefix: that belongs to the Authorization header, not to the token."
                .to_owned(),
        );
        token = rest.trim().to_owned();
    }
    if token.is_empty() {
        return Err("the token is empty; pass it with --token or --token-file".into());
    }
    Ok(TokenInput { token, notes })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

/// The innermost cause of an error, which is the one that says what happened
/// ("Connection refused"), without the URL the caller already shows.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// Whether two identifiers differ only by trailing slashes (`https://x/` and `https://x`).
fn differ_by_trailing_slash(a: &str, b: &str) -> bool {
    a != b && a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Why issuers must match byte for byte, for every hint about them.
const ISSUER_RULE: &str = "Issuer identifiers are compared as exact strings (RFC 8414 §3.3): MCP clients such as the Python SDK and the TypeScript SDK v2 refuse metadata whose issuer is not the one they looked up, even when only a trailing slash differs, and this library compares a token's iss with the configured issuer byte for byte.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_kept_exactly_as_written() {
        assert_eq!(
            http_url("https://tenant.auth0.com/").as_deref(),
            Ok("https://tenant.auth0.com/")
        );
        assert_eq!(
            http_url("HTTPS://Tenant.Auth0.com").as_deref(),
            Ok("HTTPS://Tenant.Auth0.com")
        );
        assert!(http_url("tenant.auth0.com").is_err());
        assert!(http_url(" https://tenant.auth0.com").is_err());
        assert!(http_url("ftp://tenant.auth0.com").is_err());
    }

    #[test]
    fn copy_paste_forms_of_a_token_are_unwrapped() {
        let plain = clean_token("  eyJ.a.b \n").expect("token");
        assert_eq!(plain.token, "eyJ.a.b");
        assert!(plain.notes.is_empty());

        let header = clean_token("Bearer eyJ.a.b").expect("token");
        assert_eq!(header.token, "eyJ.a.b");
        assert_eq!(header.notes.len(), 1);

        let response =
            clean_token(r#"{"access_token":"eyJ.a.b","token_type":"Bearer","expires_in":3600}"#)
                .expect("token");
        assert_eq!(response.token, "eyJ.a.b");

        assert!(clean_token(r#"{"id_token":"eyJ.a.b"}"#).is_err());
        assert!(clean_token("   ").is_err());
    }

    #[test]
    fn trailing_slash_differences_are_recognised() {
        assert!(differ_by_trailing_slash("https://x/", "https://x"));
        assert!(differ_by_trailing_slash("https://x", "https://x/"));
        assert!(!differ_by_trailing_slash("https://x", "https://x"));
        assert!(!differ_by_trailing_slash("https://x/a", "https://x"));
    }
}
