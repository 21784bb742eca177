//! The options of `mcp-oauth gateway` (the command line, and the keys of its configuration
//! file, which are read from them).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;

use crate::dev::DevArgs;
use crate::options::{AllowArgs, PolicyArgs, SecretArg};
use crate::proxy::{LoginArgs, Provider};

/// Options of `mcp-oauth gateway`.
#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    #[command(subcommand)]
    pub(crate) action: Option<GatewayAction>,
    /// Read the options and the upstreams from this TOML file (see docs/gateway.md); options
    /// on the command line override the file's.
    #[arg(long, value_name = "FILE", env = "MCP_OAUTH_GATEWAY_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Print the configuration file equivalent to the options (and --config) and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
    /// The MCP server to protect, a Streamable HTTP endpoint (instead of `-- CMD ARGS…`); or,
    /// repeatable, NAME=URL: one of several upstreams, its tools exposed as NAME__tool.
    #[arg(long, value_name = "[NAME=]URL", env = "MCP_OAUTH_UPSTREAM")]
    pub(crate) upstream: Vec<String>,
    /// One of several upstreams, a stdio command: 'NAME=CMD ARGS…' (repeatable; the command is
    /// split as a shell would split it, and run without a shell).
    #[arg(long, value_name = "'NAME=CMD ARGS…'")]
    pub(crate) stdio: Vec<String>,
    /// A header sent with every request to the --upstream, as 'NAME: VALUE' (repeatable); the
    /// value may be ${ENV_VAR} or file:PATH, and is never logged. The client's Authorization
    /// header is never forwarded.
    #[arg(
        long = "upstream-header",
        value_name = "'NAME: VALUE'",
        requires = "upstream"
    )]
    pub(crate) upstream_headers: Vec<SecretArg>,
    /// How to speak to the --upstream: Streamable HTTP falling back to the legacy HTTP+SSE
    /// transport when the upstream refuses it (auto), Streamable HTTP only, or SSE only (the
    /// URL is then the upstream's SSE stream).
    #[arg(
        long = "upstream-transport",
        value_enum,
        value_name = "MODE",
        default_value = "auto",
        requires = "upstream"
    )]
    pub(crate) upstream_transport: TransportArg,
    /// Also serve the MCP servers of this desktop client configuration file (`.mcp.json`,
    /// Claude Desktop's, Cursor's or VS Code's `mcp.json`: `{"mcpServers": {NAME: …}}`), each
    /// as an upstream named after it; with the file's `[[upstream]]` tables, all of them.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["upstream", "stdio", "command"]
    )]
    pub(crate) upstreams_from: Option<PathBuf>,
    /// A variable for the stdio command's environment, as NAME=VALUE (repeatable); VALUE may
    /// be ${ENV_VAR} or file:PATH. The command's environment is otherwise cleared, except
    /// PATH, HOME, USER, LANG, LC_*, TERM, TZ, TMPDIR (and the Windows essentials).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub(crate) env: Vec<SecretArg>,
    /// Pass this variable of the gateway's environment to the stdio command (repeatable).
    #[arg(long = "pass-env", value_name = "NAME")]
    pub(crate) pass_env: Vec<String>,
    /// Whether the users share the stdio command's one process (shared), or each gets a
    /// process of their own, started at their first request and stopped after
    /// --per-user-idle without one (per-user), or each MCP session does, started by its
    /// initialize and stopped when it ends or expires (per-session).
    #[arg(long, value_enum, value_name = "MODE", default_value = "shared")]
    pub(crate) isolation: IsolationArg,
    /// With isolation per-user: a user's process stops after this many seconds without a
    /// request (their sessions end with it).
    #[arg(long, value_name = "SECS", default_value_t = 900, value_parser = idle_seconds)]
    pub(crate) per_user_idle: u64,
    /// With isolation per-user: most processes at once per upstream; past it the least
    /// recently active user's process stops.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = most_processes)]
    pub(crate) per_user_max: u64,
    /// With --isolation per-session: a session's process stops after this many seconds
    /// without a request.
    #[arg(long, value_name = "SECS", default_value_t = 900, value_parser = idle_seconds)]
    pub(crate) per_session_idle: u64,
    /// With --isolation per-session: most processes at once; past it new sessions are
    /// refused (503) and running ones keep theirs.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = most_processes)]
    pub(crate) per_session_max: u64,
    /// Working directory of the stdio command [default: the current one].
    #[arg(long, value_name = "DIR")]
    pub(crate) cwd: Option<PathBuf>,
    /// Verify tokens of this issuer (as `mcp-oauth serve` does) instead of running the
    /// embedded authorization server.
    #[arg(long, env = "OIDC_ISSUER")]
    pub(crate) issuer: Option<String>,
    /// With --issuer: another accepted token audience (an API identifier, a client id).
    #[arg(long, env = "OIDC_AUDIENCE", requires = "issuer")]
    pub(crate) audience: Option<String>,
    /// With --issuer: the scopes advertised in the metadata and the 401 challenge,
    /// space-separated [default: the resource scopes of the issuer's metadata].
    #[arg(long, env = "OIDC_SCOPES", requires = "issuer")]
    pub(crate) scopes: Option<String>,
    /// With --issuer: verify tokens with this public key (PEM, JWK or JWKS file) instead of
    /// the issuer's key set.
    #[arg(long, value_name = "FILE", requires = "issuer")]
    pub(crate) public_key: Option<PathBuf>,
    /// Serve /healthz, /readyz (with each upstream's state) and /metrics (Prometheus) on this
    /// address, without authentication: keep it on loopback or a private network. The public
    /// listener serves /healthz and /readyz without details, and never /metrics.
    #[arg(long, value_name = "ADDR")]
    pub(crate) admin_listen: Option<std::net::SocketAddr>,
    /// Send HTTP upstreams the caller's identity in this header (e.g. X-MCP-Identity): a JWT
    /// the gateway signs (sub, scope, client_id; audience the upstream's URL; 60 s), verifiable
    /// with the key set at /.well-known/mcp-gateway-jwks.json. Never the client's token.
    #[arg(long, value_name = "NAME")]
    pub(crate) identity_header: Option<String>,
    /// Send stdio commands the caller's identity too: the same signed JWT (audience
    /// stdio:NAME) in each request's params._meta["mcp-oauth/identity"].
    #[arg(long)]
    pub(crate) identity_meta: bool,
    /// Where the identity tokens' signing key is kept: file:PATH (a PEM file, made when
    /// absent; further keys in it are published only, for a rotation) or store (in --store,
    /// shared by every instance on it) [default: a new key at each start].
    #[arg(long, value_name = "SOURCE")]
    pub(crate) identity_key: Option<String>,
    /// `--policy FILE` decides every call and filters every list (its rules checked against
    /// the upstreams' real tools before the gateway serves), and who may sign in at the
    /// gateway's own authorization server; `--audit FILE` appends one event per request that
    /// reaches a decision (`-`: standard output).
    #[command(flatten)]
    pub(crate) access: PolicyArgs,
    /// What audit events record of a call's arguments: none, hash (SHA-256 of the canonical
    /// JSON), redacted or full.
    #[arg(long, value_name = "MODE", default_value = "hash", requires = "audit")]
    pub(crate) audit_arguments: AuditArguments,
    /// Users sign in at this identity provider, as with `mcp-oauth proxy --provider`: the
    /// gateway is the authorization server clients see and issues its own tokens (the
    /// provider's never reach a client or an upstream). With `oidc`, --issuer is the provider.
    #[arg(long, value_enum, value_name = "PROVIDER", env = "MCP_OAUTH_PROVIDER")]
    pub(crate) login: Option<Provider>,
    /// With --login: our application at the provider, the user mapping, --allow-org.
    #[command(flatten)]
    pub(crate) login_options: LoginArgs,
    /// Who may sign in at the gateway's own authorization server (not with --issuer).
    #[command(flatten)]
    pub(crate) allow: AllowArgs,
    /// Where to listen, the public URL, and (without --issuer) the embedded authorization
    /// server's options.
    #[command(flatten)]
    pub(crate) dev: DevArgs,
    /// The MCP server to protect, a command speaking MCP on stdin/stdout: `-- CMD ARGS…`.
    #[arg(last = true, value_name = "CMD")]
    pub(crate) command: Vec<OsString>,
}

/// The longest idle time of a per-user or per-session process, in seconds: a year.
const MAX_IDLE_SECONDS: u64 = 365 * 24 * 3600;

/// `--per-user-idle`, `--per-session-idle`: whole seconds, from 1 to a year.
fn idle_seconds(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(secs @ 1..=MAX_IDLE_SECONDS) => Ok(secs),
        _ => Err(format!(
            "write a whole number of seconds from 1 to {MAX_IDLE_SECONDS} (a year), e.g. 900 for 15 minutes"
        )),
    }
}

/// `--per-user-max`, `--per-session-max`: at least one process.
fn most_processes(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(n @ 1..) => Ok(n),
        _ => Err("write a whole number of processes, 1 or more (e.g. 100)".to_owned()),
    }
}

/// What `mcp-oauth gateway` does besides serving.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum GatewayAction {
    /// Validate a configuration file without serving: print the resolved plan, or every
    /// problem with its line (exit status 2).
    Check {
        /// The TOML file to check.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// With --identity-key store: add a new signing key to the stored record and keep the
    /// one signing until now published for --grace seconds (running gateways on the store
    /// follow within 30 s). Reads the same options as the gateway (--config, --store).
    RotateIdentityKey {
        /// How long the old key stays in the key set, in seconds (at least 120).
        #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = grace_seconds)]
        grace: u64,
    },
}

/// The shortest grace time of a rotation: an identity token lives 60 s, and instances follow
/// the stored record within 30 s (`gateway_identity_key::FOLLOW_EVERY`).
pub(crate) const MIN_GRACE_SECS: u64 = 120;

/// `rotate-identity-key --grace`: from 120 s (an identity token's 60 s and the instances'
/// 30 s to follow) to a year.
fn grace_seconds(value: &str) -> Result<u64, String> {
    let min = MIN_GRACE_SECS;
    match value.trim().parse::<u64>() {
        Ok(secs) if (min..=MAX_IDLE_SECONDS).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "write a whole number of seconds from {min} to {MAX_IDLE_SECONDS}, e.g. 3600 (an hour; longer than the upstreams cache the key set)"
        )),
    }
}

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum IsolationArg {
    /// One process for every user.
    Shared,
    /// One process per user.
    PerUser,
    /// One process per MCP session.
    PerSession,
}

/// `--upstream-transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TransportArg {
    /// Streamable HTTP, falling back to legacy SSE.
    Auto,
    /// Streamable HTTP only.
    StreamableHttp,
    /// Legacy HTTP+SSE only.
    Sse,
}

impl From<TransportArg> for mcp_oauth_gateway::HttpTransport {
    fn from(arg: TransportArg) -> Self {
        match arg {
            TransportArg::Auto => Self::Auto,
            TransportArg::StreamableHttp => Self::StreamableHttp,
            TransportArg::Sse => Self::Sse,
        }
    }
}

/// `--audit-arguments`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AuditArguments {
    /// Arguments are not recorded.
    None,
    /// The SHA-256 of the canonical JSON.
    Hash,
    /// Values replaced by their type.
    Redacted,
    /// Everything (may hold secrets).
    Full,
}
