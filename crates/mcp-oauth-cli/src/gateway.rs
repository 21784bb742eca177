//! `mcp-oauth gateway`: OAuth in front of any MCP server, a local stdio command or a remote
//! Streamable HTTP endpoint.
//!
//! ```text
//! mcp-oauth gateway -- npx -y @modelcontextprotocol/server-everything
//! mcp-oauth gateway --issuer https://auth.example.com --scopes mcp:read --upstream http://127.0.0.1:3000/mcp
//! ```
//!
//! Without `--issuer` the embedded authorization server runs as `mcp-oauth dev` runs it (the
//! same options: users, clients, store, keys in the data folder); with `--issuer`, tokens of
//! that issuer are verified as `mcp-oauth serve` verifies them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use mcp_oauth_gateway::{Gateway, HttpConfig, StdioConfig, UpstreamConfig, resolve_secret};

use crate::dev::DevArgs;
use crate::options::SecretArg;

/// How long a stdio command has to start and answer `initialize` before the gateway gives up.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Options of `mcp-oauth gateway`.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// The MCP server to protect, a Streamable HTTP endpoint (instead of `-- CMD ARGS…`).
    #[arg(long, value_name = "URL", env = "MCP_OAUTH_UPSTREAM")]
    upstream: Option<String>,
    /// A header sent with every request to the --upstream, as 'NAME: VALUE' (repeatable); the
    /// value may be ${ENV_VAR} or file:PATH, and is never logged. The client's Authorization
    /// header is never forwarded.
    #[arg(
        long = "upstream-header",
        value_name = "'NAME: VALUE'",
        requires = "upstream"
    )]
    upstream_headers: Vec<SecretArg>,
    /// A variable for the stdio command's environment, as NAME=VALUE (repeatable); VALUE may
    /// be ${ENV_VAR} or file:PATH. The command's environment is otherwise cleared, except
    /// PATH, HOME, USER, LANG, LC_*, TERM, TZ, TMPDIR (and the Windows essentials).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<SecretArg>,
    /// Pass this variable of the gateway's environment to the stdio command (repeatable).
    #[arg(long = "pass-env", value_name = "NAME")]
    pass_env: Vec<String>,
    /// Working directory of the stdio command [default: the current one].
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Verify tokens of this issuer (as `mcp-oauth serve` does) instead of running the
    /// embedded authorization server.
    #[arg(long, env = "OIDC_ISSUER")]
    issuer: Option<String>,
    /// With --issuer: another accepted token audience (an API identifier, a client id).
    #[arg(long, env = "OIDC_AUDIENCE", requires = "issuer")]
    audience: Option<String>,
    /// With --issuer: the scopes advertised in the metadata and the 401 challenge,
    /// space-separated [default: the resource scopes of the issuer's metadata].
    #[arg(long, env = "OIDC_SCOPES", requires = "issuer")]
    scopes: Option<String>,
    /// With --issuer: verify tokens with this public key (PEM, JWK or JWKS file) instead of
    /// the issuer's key set.
    #[arg(long, value_name = "FILE", requires = "issuer")]
    public_key: Option<PathBuf>,
    /// Where to listen, the public URL, and (without --issuer) the embedded authorization
    /// server's options.
    #[command(flatten)]
    dev: DevArgs,
    /// The MCP server to protect, a command speaking MCP on stdin/stdout: `-- CMD ARGS…`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// `NAME=VALUE` (`--env`) and `NAME: VALUE` (`--upstream-header`), the value resolved. Errors
/// name the option and the name, never the value.
fn split_resolved<'a>(
    value: &'a SecretArg,
    separator: char,
    option: &str,
) -> Result<(&'a str, String), String> {
    let (name, raw) = value
        .expose()
        .split_once(separator)
        .map(|(n, v)| (n.trim(), v.trim()))
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| {
            format!(
                "{option} takes NAME{separator}VALUE{}",
                if separator == ':' { " (quote it)" } else { "" }
            )
        })?;
    let resolved = resolve_secret(raw).map_err(|e| format!("{option} {name}: {e}"))?;
    Ok((name, resolved))
}

fn upstream_config(args: &GatewayArgs) -> Result<UpstreamConfig, String> {
    match (&args.upstream, args.command.split_first()) {
        (Some(_), Some(_)) => Err(
            "give either --upstream URL or -- CMD ARGS…, not both (the gateway fronts one MCP server)"
                .to_owned(),
        ),
        (None, None) => Err(
            "no MCP server to protect: give --upstream http://HOST:PORT/mcp, or a command after --, e.g. mcp-oauth gateway -- npx -y @modelcontextprotocol/server-everything"
                .to_owned(),
        ),
        (Some(url), None) => {
            let mut config = HttpConfig::new(url).map_err(|e| format!("--upstream: {e}"))?;
            for header in &args.upstream_headers {
                let (name, value) = split_resolved(header, ':', "--upstream-header")?;
                config = config
                    .header(name, &value)
                    .map_err(|e| format!("--upstream-header {name}: {e}"))?;
            }
            if !args.env.is_empty() || !args.pass_env.is_empty() {
                return Err("--env and --pass-env are for a stdio command (-- CMD ARGS…), not for --upstream".to_owned());
            }
            Ok(config.into())
        }
        (None, Some((program, rest))) => {
            let mut config = StdioConfig::new(program.clone(), rest.iter().cloned());
            for entry in &args.env {
                let (name, value) = split_resolved(entry, '=', "--env")?;
                config = config.env(name, value);
            }
            for name in &args.pass_env {
                config = config.pass_env(name);
            }
            if let Some(dir) = &args.cwd {
                config = config.current_dir(dir);
            }
            Ok(config.into())
        }
    }
}

pub(crate) async fn run(args: GatewayArgs) -> Result<(), Box<dyn std::error::Error>> {
    let upstream = upstream_config(&args)?;
    let described = match &upstream {
        UpstreamConfig::Http(_) => args.upstream.clone().unwrap_or_default(),
        _ => args
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let (listener, oauth, auth_server, token) = match &args.issuer {
        Some(issuer) => {
            args.dev
                .listen
                .check_public(args.dev.public_url.as_deref())?;
            let listener = args.dev.listen.bind().await?;
            let base = match &args.dev.public_url {
                Some(url) => url.trim().trim_end_matches('/').to_owned(),
                None => format!("http://{}", listener.local_addr()?),
            };
            let oauth = crate::serve::issuer_oauth(
                issuer,
                args.public_key.as_deref(),
                args.scopes.clone().filter(|s| !s.trim().is_empty()),
                args.audience.clone().filter(|s| !s.trim().is_empty()),
                format!("{base}/mcp"),
                &[],
            )
            .await?;
            (listener, oauth, None, None)
        }
        None => {
            let prepared = crate::dev::prepare(&args.dev, "mcp-oauth gateway").await?;
            (
                prepared.listener,
                prepared.oauth,
                Some(prepared.server),
                Some(prepared.token),
            )
        }
    };
    let mcp_url = oauth.resource().to_string();
    let issuer = oauth
        .authorization_servers()
        .first()
        .cloned()
        .unwrap_or_default();
    let gateway = Gateway::builder(upstream).oauth(oauth).build()?;
    if args.upstream.is_none() {
        eprintln!("starting the upstream: {described}");
        gateway.ready(START_TIMEOUT).await.map_err(|_| {
            format!(
                "the upstream command did not start and answer initialize within {} s; its errors are logged above",
                START_TIMEOUT.as_secs()
            )
        })?;
    }
    let mut app = gateway.router();
    if let Some(server) = &auth_server {
        app = app.merge(server.router());
    }
    if args.dev.json {
        println!(
            "{}",
            serde_json::json!({ "mcp_url": mcp_url, "issuer": issuer, "token": token, "upstream": described })
        );
    } else {
        println!("mcp-oauth gateway: OAuth in front of {described}\n");
        println!("  MCP endpoint  {mcp_url}");
        println!("  issuer        {issuer}");
        if let Some(token) = &token {
            println!("\nA bearer token for the first user (scopes mcp:read mcp:write):\n\n{token}");
        }
        println!("\nPoint any MCP client at {mcp_url}. Ctrl-C stops.");
    }
    crate::dev::serve(listener, app, "gateway").await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        gateway: GatewayArgs,
    }

    fn parse(args: &[&str]) -> Result<GatewayArgs, String> {
        let mut all = vec!["gateway"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .map(|c| c.gateway)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn one_upstream_is_required() {
        let both = parse(&["--upstream", "http://127.0.0.1:1/mcp", "--", "server"]).expect("parse");
        assert!(upstream_config(&both).unwrap_err().contains("not both"));
        let none = parse(&[]).expect("parse");
        assert!(upstream_config(&none).unwrap_err().contains("--upstream"));
        let stdio = parse(&["--", "server", "--flag", "x"]).expect("parse");
        assert!(matches!(
            upstream_config(&stdio),
            Ok(UpstreamConfig::Stdio(_))
        ));
        let env_on_http =
            parse(&["--upstream", "http://127.0.0.1:1/mcp", "--env", "A=b"]).expect("parse");
        assert!(upstream_config(&env_on_http).unwrap_err().contains("--env"));
    }

    #[test]
    fn secrets_in_options_never_print() {
        let args = parse(&[
            "--upstream",
            "http://127.0.0.1:1/mcp",
            "--upstream-header",
            "X-Api-Key: key-value-4d1",
        ])
        .expect("parse");
        assert!(!format!("{args:?}").contains("key-value-4d1"));
        let config = upstream_config(&args).expect("config");
        assert!(!format!("{config:?}").contains("key-value-4d1"));
        let args = parse(&["--env", "TOKEN=env-value-8e2", "--", "server"]).expect("parse");
        assert!(!format!("{args:?}").contains("env-value-8e2"));
        let config = upstream_config(&args).expect("config");
        assert!(!format!("{config:?}").contains("env-value-8e2"));
    }

    #[test]
    fn references_that_cannot_be_resolved_name_the_variable() {
        let args =
            parse(&["--env", "TOKEN=${MCP_OAUTH_GW_UNSET_77}", "--", "server"]).expect("parse");
        let err = upstream_config(&args).unwrap_err();
        assert!(
            err.contains("--env TOKEN") && err.contains("MCP_OAUTH_GW_UNSET_77"),
            "{err}"
        );
        let args = parse(&[
            "--upstream",
            "http://127.0.0.1:1/mcp",
            "--upstream-header",
            "novalue",
        ])
        .expect("parse");
        assert!(upstream_config(&args).unwrap_err().contains("NAME:VALUE"));
    }
}
