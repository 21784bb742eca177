//! `mcp-oauth dev`: an authorization server and the demo MCP server it protects, on one
//! loopback port, ready for any MCP client.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use mcp_oauth::auth_server::{AuthServer, ClientSpec, DevUsers, Grant, KeyRing};
use mcp_oauth::jose::Algorithm;
use serde_json::json;

use mcp_oauth::policy::Policy;
use mcp_oauth::{AuditLog, OAuth};

use crate::data_dir::{self, DevState};
use crate::options::{
    AllowArgs, DpopArgs, ListenArgs, PolicyArgs, RegistrationArgs, SecretArg, read_entries,
};
use crate::store_arg::StoreArg;

/// Scopes of a `--client` that names none.
const DEFAULT_CLIENT_SCOPES: [&str; 2] = ["mcp:read", "mcp:write"];

/// The signing algorithm of access tokens.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Alg {
    /// ECDSA P-256.
    Es256,
    /// RSA 2048.
    Rs256,
}

impl Alg {
    fn algorithm(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
        }
    }
}

/// `mcp-oauth dev`: the options `gateway` shares ([`DevArgs`]) and the access policy.
#[derive(Debug, Args)]
pub(crate) struct DevCommand {
    #[command(flatten)]
    pub(crate) dev: DevArgs,
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    #[command(flatten)]
    pub(crate) allow: AllowArgs,
    #[command(flatten)]
    pub(crate) metrics: crate::metrics_arg::MetricsArgs,
}

/// Options of `mcp-oauth dev`. Secrets are [`SecretArg`]s: `{:?}` never prints them.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    #[command(flatten)]
    pub(crate) listen: ListenArgs,
    /// Public base URL of this server, when clients reach it through a reverse proxy (the
    /// issuer; the MCP endpoint is <URL>/mcp) [default: http://<listen address>].
    #[arg(long, env = "MCP_OAUTH_PUBLIC_URL")]
    pub(crate) public_url: Option<String>,
    /// Folder for signing keys and state [default: $MCP_OAUTH_DATA_DIR, else
    /// $XDG_DATA_HOME/mcp-oauth, else ~/.local/share/mcp-oauth].
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// A user who may sign in, as NAME:PASSWORD (repeatable) [default: dev:dev]. The
    /// command line is visible to other local users: prefer --users-file.
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    users: Vec<SecretArg>,
    /// A file of users, one NAME:PASSWORD per line (blank lines and # comments skipped).
    #[arg(long, value_name = "PATH", env = "MCP_OAUTH_USERS_FILE")]
    users_file: Option<PathBuf>,
    /// A confidential client for client_credentials, as ID:SECRET[:SCOPES], SCOPES
    /// comma-separated (repeatable) [default scopes: mcp:read,mcp:write]. The command line
    /// is visible to other local users: prefer --clients-file.
    #[arg(long = "client", value_name = "ID:SECRET[:SCOPES]")]
    clients: Vec<SecretArg>,
    /// A file of clients, one ID:SECRET[:SCOPES] per line (blank lines and # comments
    /// skipped).
    #[arg(long, value_name = "PATH", env = "MCP_OAUTH_CLIENTS_FILE")]
    clients_file: Option<PathBuf>,
    #[command(flatten)]
    registration: RegistrationArgs,
    #[command(flatten)]
    pub(crate) dpop: DpopArgs,
    // Boxed: it keeps `Command::Dev` near the size of the other subcommands.
    #[command(flatten)]
    trust: Box<crate::trust_args::TrustArgs>,
    /// Approve every authorization request at once as the first user, without the login
    /// page. For automated tests only.
    #[arg(long)]
    auto_approve: bool,
    #[arg(long, default_value = "sqlite", help = crate::store_arg::HELP, env = "MCP_OAUTH_STORE", hide_env_values = true)]
    pub(crate) store: StoreArg,
    /// Signing algorithm of access tokens.
    #[arg(long, value_enum, default_value_t = Alg::Es256)]
    alg: Alg,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl: u64,
    /// Print one JSON line (mcp_url, issuer, token, data_dir, users) instead of the banner.
    #[arg(long)]
    pub(crate) json: bool,
}

impl DevArgs {
    /// The options of the local sign-in (`--user`, `--users-file`, `--auto-approve`) that
    /// are given, for refusing them where users sign in elsewhere.
    pub(crate) fn local_sign_in_options(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        if !self.users.is_empty() {
            given.push("--user");
        }
        if self.users_file.is_some() {
            given.push("--users-file");
        }
        if self.auto_approve {
            given.push("--auto-approve");
        }
        given
    }
}

/// `NAME:PASSWORD`. The error never quotes the value: it may hold the secret.
fn split_user(value: &SecretArg) -> Result<(&str, &str), String> {
    value
        .expose()
        .split_once(':')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| "--user takes NAME:PASSWORD (both non-empty)".to_owned())
}

/// `ID:SECRET[:SCOPES]`, SCOPES comma-separated (a scope may hold `:`, a secret may not).
fn parse_client(value: &SecretArg) -> Result<ClientSpec, String> {
    let mut parts = value.expose().splitn(3, ':');
    let (Some(id), Some(secret)) = (parts.next(), parts.next()) else {
        return Err("--client takes ID:SECRET[:SCOPES]".to_owned());
    };
    if id.is_empty() || secret.is_empty() {
        return Err("--client takes ID:SECRET[:SCOPES] (ID and SECRET non-empty)".to_owned());
    }
    let scopes: Vec<&str> = match parts.next() {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect(),
        None => DEFAULT_CLIENT_SCOPES.to_vec(),
    };
    if scopes.is_empty() {
        return Err(format!(
            "--client {id}: the scopes after the second ':' are empty; name them (mcp:read,mcp:write) or leave out the ':'"
        ));
    }
    Ok(ClientSpec::service(id, secret).scopes(scopes))
}

/// Serves `app` (with the client address, for rate limits; TCP_NODELAY on) until Ctrl-C or
/// SIGTERM, then says that `mcp-oauth <command>` stopped.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    command: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    use axum::serve::ListenerExt as _;
    // Answers written in pieces (SSE) would otherwise wait for the client's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(mcp_oauth::server::shutdown_signal())
    .await?;
    eprintln!("mcp-oauth {command} stopped");
    Ok(())
}

/// The embedded authorization server as `dev` assembles it, with the resource-server
/// configuration of its MCP endpoint (`<issuer>/mcp`), bound but not yet serving. `gateway`
/// builds on it too.
pub(crate) struct Prepared {
    pub(crate) listener: tokio::net::TcpListener,
    pub(crate) issuer: String,
    pub(crate) mcp_url: String,
    pub(crate) server: AuthServer,
    pub(crate) oauth: OAuth,
    /// A token for the first user (the banner's).
    pub(crate) token: String,
    pub(crate) dir: PathBuf,
    pub(crate) users: Vec<String>,
}

/// Checks the options, binds, opens the keys and the store, builds the authorization server
/// (with an access policy deciding who may sign in and which scopes they get) and the
/// resource-server configuration named `resource_name`, and mints the banner token.
pub(crate) async fn prepare_with(
    args: &DevArgs,
    resource_name: &str,
    access: Option<(Policy, Option<AuditLog>)>,
) -> Result<Prepared, Box<dyn std::error::Error>> {
    let (prepared, ()) = prepare_late(args, resource_name, None, &[], |_| async move {
        Ok((access, ()))
    })
    .await?;
    Ok(prepared)
}

/// What is known of the authorization server once its address is: for a caller that must
/// do something before its access policy can be given ([`prepare_late`]).
pub(crate) struct Early {
    pub(crate) issuer: String,
    pub(crate) mcp_url: String,
    /// The DPoP proof verifier the server and its MCP endpoint share.
    pub(crate) dpop: Option<mcp_oauth::dpop::DpopVerifier>,
    /// The server's store.
    pub(crate) store: Arc<dyn mcp_oauth::auth_server::store::Store>,
}

/// The access policy of an authorization server, with the audit log of its decisions.
pub(crate) type SignInPolicy = Option<(Policy, Option<AuditLog>)>;

/// [`prepare_with`], users signing in at `upstream` (proxy mode, its tokens sealed with the
/// key) instead of with the local users when given, and the access policy given by `late`
/// once the address and the DPoP verifier are known, before the server is built (`gateway`
/// starts its upstreams then, to check the policy against their tools). `late`'s other
/// result is handed back. The server also issues tokens for `other_paths` of the server
/// (`/NAME/mcp`: a gateway's upstreams at their own paths).
pub(crate) async fn prepare_late<T, F, Fut>(
    args: &DevArgs,
    resource_name: &str,
    upstream: Option<(mcp_oauth::auth_server::Upstream, mcp_oauth::Secret)>,
    other_paths: &[String],
    late: F,
) -> Result<(Prepared, T), Box<dyn std::error::Error>>
where
    F: FnOnce(Early) -> Fut,
    Fut: std::future::Future<Output = Result<(SignInPolicy, T), Box<dyn std::error::Error>>>,
{
    // Everything that can be refused is checked before anything is written or bound.
    args.listen.check_public(args.public_url.as_deref())?;
    let registration = args.registration.policy()?;
    let mut user_entries = args.users.clone();
    if let Some(path) = &args.users_file {
        user_entries.extend(read_entries(path, "--users-file")?);
    }
    let mut client_entries = args.clients.clone();
    if let Some(path) = &args.clients_file {
        client_entries.extend(read_entries(path, "--clients-file")?);
    }
    let mut clients = client_entries
        .iter()
        .map(parse_client)
        .collect::<Result<Vec<_>, _>>()?;
    if args.trust.trusts_idps() {
        clients = clients
            .into_iter()
            .map(crate::trust_args::with_jwt_bearer)
            .collect();
    }
    let client_ids: Vec<String> = clients.iter().map(|c| c.client_id.clone()).collect();
    let mut users = DevUsers::new();
    let mut names = Vec::new();
    for user in &user_entries {
        let (name, password) = split_user(user)?;
        users = users.user(name, password);
        names.push(name.to_owned());
    }
    let dir = data_dir::resolve(args.data_dir.clone());
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the data folder {}: {e}", dir.display()))?;
    let listener = args.listen.bind().await?;
    let addr = listener.local_addr()?;
    let issuer = args
        .public_url
        .as_deref()
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("http://{addr}"));
    let mcp_url = format!("{issuer}/mcp");

    if names.is_empty() {
        users = DevUsers::default();
        names.push("dev".to_owned());
    }
    let keys = Arc::new(KeyRing::open(&dir, args.alg.algorithm())?);
    let store = args.store.open(&dir, None, "mcp-oauth:").await?;
    // Proofs at /token and at the MCP endpoint: one verifier, the store's replay cache.
    let dpop = args.dpop.verifier(Some(store.clone()))?;
    let mut lifetimes = mcp_oauth::auth_server::Lifetimes::default();
    lifetimes.access_token = std::time::Duration::from_secs(args.token_ttl);
    let mut builder = AuthServer::builder(issuer.clone())
        .keys(keys)
        .store(store.clone())
        .login(Arc::new(users))
        .scopes(["mcp:read", "mcp:write", "admin"])
        .default_scopes(["mcp:read", "mcp:write"])
        .resource(mcp_url.clone())
        .lifetimes(lifetimes)
        .auto_approve(args.auto_approve)
        .registration(registration)
        .trusted_proxies(args.listen.trusted_proxies());
    for path in other_paths {
        builder = builder.resource(format!("{issuer}{path}"));
    }
    if let Some(verifier) = &dpop {
        builder = builder.dpop_verifier(verifier.clone());
    }
    for client in clients {
        builder = builder.client(client);
    }
    builder = args.trust.apply(builder, &client_ids)?;
    let (access, handed) = late(Early {
        issuer: issuer.clone(),
        mcp_url: mcp_url.clone(),
        dpop: dpop.clone(),
        store: store.clone(),
    })
    .await?;
    if let Some((policy, audit)) = access {
        builder = builder.policy(policy, audit);
    }
    if let Some((upstream, key)) = upstream {
        builder = builder.upstream(upstream).encryption_key(key);
    }
    let server = builder.build().await?;
    let oauth = OAuth::builder()
        .resource(mcp_url.clone())
        .authorization_server(issuer.clone())
        .scopes_supported(["mcp:read", "mcp:write"])
        .verifier(server.verifier()?)
        .mirror_authorization_server(false)
        .resource_name(resource_name);
    let oauth = args.dpop.resource(oauth, dpop).build()?;

    DevState {
        issuer: issuer.clone(),
        mcp_url: mcp_url.clone(),
        alg: server.keys().active().alg().to_string(),
    }
    .save(&dir)
    .map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
    let scope = vec!["mcp:read".to_owned(), "mcp:write".to_owned()];
    let claims = serde_json::Map::new();
    let token = server.mint_access_token(&Grant {
        subject: names.first().map(String::as_str).unwrap_or("dev"),
        client_id: "mcp-oauth-dev",
        scope: &scope,
        resource: Some(&mcp_url),
        user_claims: &claims,
        family: "mcp-oauth-dev-banner",
        ttl: None,
    });
    let prepared = Prepared {
        listener,
        issuer,
        mcp_url,
        server,
        oauth,
        token,
        dir,
        users: names,
    };
    Ok((prepared, handed))
}

pub(crate) async fn run(command: DevCommand) -> Result<(), Box<dyn std::error::Error>> {
    let DevCommand {
        dev: args,
        policy,
        allow,
        metrics,
    } = command;
    let access = policy.load(Some(&allow))?;
    let demo = crate::demo::server();
    // Sign-in and grant rules are checked against the tools too (the file may hold both).
    let sign_in = match access.sign_in {
        Some(config) => demo.clone().policy(config).check_policy()?,
        None => None,
    };
    let Prepared {
        listener,
        issuer,
        mcp_url,
        server,
        oauth,
        token,
        dir,
        users: names,
    } = prepare_with(
        &args,
        "mcp-oauth demo",
        sign_in.map(|p| (p, access.audit.clone())),
    )
    .await?;
    let mut demo = demo.oauth(oauth);
    let metrics_url = match metrics.start().await? {
        Some((metrics, url)) => {
            demo = demo.metrics(metrics);
            Some(url)
        }
        None => None,
    };
    if let Some(config) = access.tools {
        demo = demo.policy(config);
    }
    if let Some(audit) = access.audit {
        demo = demo.audit(audit);
    }
    let app = demo.app()?.merge(server.router());
    if args.json {
        println!(
            "{}",
            json!({ "mcp_url": mcp_url, "issuer": issuer, "token": token, "data_dir": dir, "users": names, "metrics_url": metrics_url })
        );
    } else {
        if let Some(url) = &metrics_url {
            println!("metrics: {url}");
        }
        banner(
            &mcp_url,
            &issuer,
            &token,
            &dir,
            &names,
            args.auto_approve,
            args.token_ttl,
        );
    }
    serve(listener, app, "dev").await
}

fn banner(
    mcp_url: &str,
    issuer: &str,
    token: &str,
    dir: &std::path::Path,
    users: &[String],
    auto: bool,
    ttl: u64,
) {
    let login = if auto {
        format!(
            "auto-approve: every request signs in as {}",
            users.first().map(String::as_str).unwrap_or("dev")
        )
    } else if users == ["dev"] {
        "sign in as dev / dev on the login page".to_owned()
    } else {
        format!("sign in as one of: {}", users.join(", "))
    };
    let table = aligned(&[
        ("MCP endpoint", mcp_url.to_owned()),
        ("issuer", issuer.to_owned()),
        ("users", login),
        ("data", dir.display().to_string()),
    ]);
    println!(
        "mcp-oauth dev: an authorization server and a demo MCP server protected by it\n\n\
{table}\n\n\
A bearer token (sub {}, scopes mcp:read mcp:write, valid {} s):\n\n{token}\n\n\
Try it:\n\n\
curl -s {mcp_url} -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2025-11-25' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"whoami\",\"arguments\":{{}}}}}}'\n\n\
Or point any MCP client at {mcp_url}: it discovers this server, registers, and you sign in.\n\
Tools: whoami, echo, admin_action (needs the admin scope: HTTP 403 step-up). Ctrl-C stops.",
        users.first().map(String::as_str).unwrap_or("dev"),
        ttl,
    );
}

/// The banner's table: each name indented by two spaces and padded to one column. (Written
/// as one literal with `\` line continuations, the leading spaces would be dropped.)
pub(crate) fn aligned(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(name, value)| format!("  {name:<width$}  {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn the_banner_table_is_indented_and_aligned() {
        let table = super::aligned(&[
            ("MCP endpoint", "http://127.0.0.1:8080/mcp".to_owned()),
            ("issuer", "http://127.0.0.1:8080".to_owned()),
        ]);
        assert_eq!(
            table,
            "  MCP endpoint  http://127.0.0.1:8080/mcp\n  issuer        http://127.0.0.1:8080"
        );
    }

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        dev: DevArgs,
    }

    /// Security review 2, F12: `{:?}` of the parsed arguments holds no secret.
    #[test]
    fn debug_of_the_arguments_prints_no_secret() {
        let cli = Cli::try_parse_from([
            "dev",
            "--user",
            "alice:user-password-7f3",
            "--client",
            "svc:client-secret-9c1:mcp:read",
        ])
        .expect("parse");
        let printed = format!("{cli:?}");
        for secret in ["user-password-7f3", "client-secret-9c1"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("redacted"), "{printed}");
    }

    #[test]
    fn clients_take_their_scopes_after_the_secret() {
        let arg = |s: &str| s.parse::<SecretArg>().expect("infallible");
        let spec = parse_client(&arg("svc:s3cret:mcp:read,admin")).expect("client");
        assert_eq!(spec.client_id, "svc");
        assert_eq!(spec.scopes, ["mcp:read", "admin"]);
        let spec = parse_client(&arg("svc:s3cret")).expect("client");
        assert_eq!(spec.scopes, DEFAULT_CLIENT_SCOPES);
        for bad in ["svc", "svc:", ":s3cret", "svc:s3cret:"] {
            let err = parse_client(&arg(bad)).expect_err(bad);
            assert!(!err.contains("s3cret"), "{bad}: {err}");
        }
        let err = split_user(&arg("alice:")).expect_err("no password");
        assert!(err.contains("NAME:PASSWORD"), "{err}");
    }
}
