//! `mcp-oauth dev`: an authorization server and the demo MCP server it protects, on one
//! loopback port, ready for any MCP client.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use mcp_oauth::OAuth;
use mcp_oauth::auth_server::{
    AuthServer, ClientSpec, DevUsers, Grant, KeyRing, MemoryStore, Store,
};
use mcp_oauth::jose::Algorithm;
use serde_json::json;

use crate::data_dir::{self, DevState};

/// Which store keeps clients and refresh tokens.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum StoreKind {
    /// In memory: registrations and refresh tokens end with the process.
    Memory,
    /// SQLite in the data folder: they survive a restart.
    Sqlite,
}

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

/// Options of `mcp-oauth dev`.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080, env = "MCP_OAUTH_PORT")]
    port: u16,
    /// Folder for signing keys and state [default: $MCP_OAUTH_DATA_DIR, else
    /// $XDG_DATA_HOME/mcp-oauth, else ~/.local/share/mcp-oauth].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A user who may sign in, as NAME:PASSWORD (repeatable) [default: dev:dev].
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    users: Vec<String>,
    /// A confidential client for client_credentials, as ID:SECRET (repeatable).
    #[arg(long = "client", value_name = "ID:SECRET")]
    clients: Vec<String>,
    /// Approve every authorization request at once as the first user, without the login
    /// page. For automated tests only.
    #[arg(long)]
    auto_approve: bool,
    /// Where clients and refresh tokens are kept.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// Signing algorithm of access tokens.
    #[arg(long, value_enum, default_value_t = Alg::Es256)]
    alg: Alg,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl: u64,
    /// Print one JSON line (mcp_url, issuer, token, data_dir, users) instead of the banner.
    #[arg(long)]
    json: bool,
}

fn split_pair<'a>(value: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    value
        .split_once(':')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| format!("--{what} takes NAME:SECRET, got {value:?}"))
}

#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_store(
    dir: &std::path::Path,
) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    Ok(Arc::new(mcp_oauth::auth_server::store::SqliteStore::open(
        dir.join("state.sqlite3"),
    )?))
}

#[cfg(not(feature = "sqlite"))]
pub(crate) fn sqlite_store(
    _dir: &std::path::Path,
) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    Err("this build has no SQLite support; use --store memory".into())
}

/// Binds 127.0.0.1:`port` (0: any free port).
pub(crate) async fn bind_loopback(port: u16) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on 127.0.0.1:{port}: {e} (choose another with --port, or --port 0)"
            )
        })
}

/// Serves `app` (with the client address, for rate limits) until Ctrl-C or SIGTERM, then says
/// that `mcp-oauth <command>` stopped.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    command: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(mcp_oauth::server::shutdown_signal())
    .await?;
    eprintln!("mcp-oauth {command} stopped");
    Ok(())
}

pub(crate) async fn run(args: DevArgs) -> Result<(), Box<dyn std::error::Error>> {
    let dir = data_dir::resolve(args.data_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the data folder {}: {e}", dir.display()))?;
    let listener = bind_loopback(args.port).await?;
    let addr = listener.local_addr()?;
    let issuer = format!("http://{addr}");
    let mcp_url = format!("{issuer}/mcp");

    let mut users = DevUsers::new();
    let mut names = Vec::new();
    for user in &args.users {
        let (name, password) = split_pair(user, "user")?;
        users = users.user(name, password);
        names.push(name.to_owned());
    }
    if names.is_empty() {
        users = DevUsers::default();
        names.push("dev".to_owned());
    }
    let keys = Arc::new(KeyRing::open(&dir, args.alg.algorithm())?);
    let store: Arc<dyn Store> = match args.store {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Sqlite => sqlite_store(&dir)?,
    };
    let mut lifetimes = mcp_oauth::auth_server::Lifetimes::default();
    lifetimes.access_token = std::time::Duration::from_secs(args.token_ttl);
    let mut builder = AuthServer::builder(issuer.clone())
        .keys(keys)
        .store(store)
        .login(Arc::new(users))
        .scopes(["mcp:read", "mcp:write", "admin"])
        .default_scopes(["mcp:read", "mcp:write"])
        .resource(mcp_url.clone())
        .lifetimes(lifetimes)
        .auto_approve(args.auto_approve);
    for client in &args.clients {
        let (id, secret) = split_pair(client, "client")?;
        builder = builder.client(ClientSpec::service(id, secret));
    }
    let server = builder.build().await?;
    let oauth = OAuth::builder()
        .resource(mcp_url.clone())
        .authorization_server(issuer.clone())
        .scopes_supported(["mcp:read", "mcp:write"])
        .verifier(server.verifier()?)
        .mirror_authorization_server(false)
        .resource_name("mcp-oauth demo")
        .build()?;
    let app = crate::demo::server()
        .oauth(oauth)
        .app()?
        .merge(server.router());

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
    if args.json {
        println!(
            "{}",
            json!({ "mcp_url": mcp_url, "issuer": issuer, "token": token, "data_dir": dir, "users": names })
        );
    } else {
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
    println!(
        "mcp-oauth dev: an authorization server and a demo MCP server protected by it\n\n\
  MCP endpoint  {mcp_url}\n\
  issuer        {issuer}\n\
  users         {login}\n\
  data          {}\n\n\
A bearer token (sub {}, scopes mcp:read mcp:write, valid {} s):\n\n{token}\n\n\
Try it:\n\n\
curl -s {mcp_url} -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2025-11-25' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"whoami\",\"arguments\":{{}}}}}}'\n\n\
Or point any MCP client at {mcp_url}: it discovers this server, registers, and you sign in.\n\
Tools: whoami, echo, admin_action (needs the admin scope: HTTP 403 step-up). Ctrl-C stops.",
        dir.display(),
        users.first().map(String::as_str).unwrap_or("dev"),
        ttl,
    );
}
