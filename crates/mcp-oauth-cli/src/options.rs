//! Options `dev` and `proxy` share: where to listen and which reverse proxies to believe,
//! the registration policy, the access policy (with `serve` too), `--dpop` (with `serve`
//! too), and secrets that never print.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use mcp_oauth::OAuthBuilder;
use mcp_oauth::Secret;
use mcp_oauth::audit::AuditLog;
use mcp_oauth::auth_server::Registration;
use mcp_oauth::auth_server::store::{Store, StoreReplayCache};
use mcp_oauth::dpop::{DpopNonces, DpopVerifier};
use mcp_oauth::forwarded::{Cidr, ForwardedHeader, TrustedProxies};
use mcp_oauth::policy::{PolicyConfig, Rule, Who};

/// A secret given on the command line, in the environment or in a file: `Debug` prints
/// `[redacted]`, so the argument structs can derive it.
#[derive(Clone)]
pub(crate) struct SecretArg(String);

impl SecretArg {
    /// The value. Never log or print it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Where the server listens, and the proxies in front of it.
#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Port on 127.0.0.1 (0 picks a free one); see --listen for another address.
    #[arg(long, default_value_t = 8080, env = "MCP_OAUTH_PORT")]
    port: u16,
    /// Address to listen on, as IP:PORT (e.g. 0.0.0.0:8080, [::]:8080); replaces --port
    /// [default: 127.0.0.1:<--port>]. An address other than loopback needs --public-url
    /// with https (the URL clients use, served by a TLS-terminating proxy).
    #[arg(long, value_name = "ADDR", env = "MCP_OAUTH_LISTEN", value_parser = parse_listen)]
    listen: Option<SocketAddr>,
    /// A reverse proxy whose forwarded headers name the client address for rate limits and
    /// logs, as a network (10.0.0.0/8, fd00::/8) or one address (repeatable) [default: none:
    /// every request counts for the TCP peer].
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = parse_cidr)]
    trusted_proxies: Vec<Cidr>,
    /// Which header the trusted proxies write: x-forwarded-for, or forwarded (RFC 7239).
    #[arg(long, value_enum, default_value_t = ForwardedFamily::XForwardedFor, value_name = "HEADER")]
    forwarded_header: ForwardedFamily,
}

/// `--forwarded-header`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ForwardedFamily {
    /// X-Forwarded-For (nginx, HAProxy, Caddy, most load balancers).
    XForwardedFor,
    /// Forwarded: for=… (RFC 7239).
    Forwarded,
}

fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    value.trim().parse().map_err(|_| {
        format!("{value:?} is not IP:PORT; write e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::]:8080")
    })
}

fn parse_cidr(value: &str) -> Result<Cidr, String> {
    value.parse::<Cidr>().map_err(|e| e.to_string())
}

impl ListenArgs {
    /// The address to bind.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.listen
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port))
    }

    /// Refuses an address other than loopback unless clients reach the server through an
    /// `https` public URL (`--public-url`).
    pub(crate) fn check_public(&self, public_url: Option<&str>) -> Result<(), String> {
        let addr = self.addr();
        if addr.ip().is_loopback() {
            return Ok(());
        }
        let https = public_url
            .and_then(|u| url::Url::parse(u.trim()).ok())
            .is_some_and(|u| u.scheme() == "https" && u.host_str().is_some());
        if https {
            return Ok(());
        }
        Err(format!(
            "--listen {addr} is not a loopback address, so clients would reach this server over the network: add --public-url https://<host> (the URL clients use, with TLS terminated by a reverse proxy in front of {addr}), or listen on 127.0.0.1"
        ))
    }

    /// The trusted proxies.
    pub(crate) fn trusted_proxies(&self) -> TrustedProxies {
        TrustedProxies::new(self.trusted_proxies.iter().copied()).header(
            match self.forwarded_header {
                ForwardedFamily::XForwardedFor => ForwardedHeader::XForwardedFor,
                ForwardedFamily::Forwarded => ForwardedHeader::Forwarded,
            },
        )
    }

    /// Binds the address.
    pub(crate) async fn bind(&self) -> Result<tokio::net::TcpListener, String> {
        let addr = self.addr();
        tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            let hint = if self.listen.is_some() {
                "choose another with --listen"
            } else {
                "choose another with --port, or --port 0"
            };
            format!("cannot listen on {addr}: {e} ({hint})")
        })
    }
}

/// `--dpop`: DPoP-bound access tokens (RFC 9449), and server nonces.
#[derive(Debug, Args)]
pub(crate) struct DpopArgs {
    /// DPoP-bound access tokens (RFC 9449): off (bearer tokens only), allowed (the DPoP
    /// scheme with a proof, beside Bearer; the embedded authorization server binds the tokens
    /// of clients that send a proof) or required (bound tokens only). A token bound to a key
    /// is never accepted as a bearer token, whatever the mode.
    #[arg(long, value_enum, default_value_t = DpopMode::Off, value_name = "MODE", env = "MCP_OAUTH_DPOP")]
    dpop: DpopMode,
    /// With --dpop allowed or required: DPoP proofs must carry a nonce this server issued
    /// (RFC 9449 §8, §9). A proof without one (or with an expired one) is answered
    /// `use_dpop_nonce` with a fresh nonce in the `DPoP-Nonce` header, and the client retries
    /// with it; nonces rotate every 5 minutes.
    #[arg(long, env = "MCP_OAUTH_DPOP_NONCE")]
    dpop_nonce: bool,
    /// With --dpop-nonce: a file holding the nonce secret (at least 32 bytes, e.g. made with
    /// `openssl rand -base64 48`), so that several instances accept each other's nonces
    /// [default: a random secret of this process].
    #[arg(long, value_name = "PATH", env = "MCP_OAUTH_DPOP_NONCE_SECRET_FILE")]
    dpop_nonce_secret_file: Option<PathBuf>,
}

/// How often DPoP server nonces rotate (`--dpop-nonce`): a nonce lives one to two periods.
const DPOP_NONCE_ROTATION: Duration = Duration::from_secs(300);

/// `--dpop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DpopMode {
    /// Bearer tokens only; the DPoP scheme is refused.
    Off,
    /// DPoP-bound tokens with their proofs, and bearer tokens.
    Allowed,
    /// DPoP-bound tokens only.
    Required,
}

impl DpopArgs {
    /// Whether DPoP is on (allowed or required).
    pub(crate) fn on(&self) -> bool {
        self.dpop != DpopMode::Off
    }

    /// The proof verifier, `None` with `--dpop off`: used proofs are remembered in `store`
    /// when there is one (shared with the authorization server and every instance on the
    /// same store), else in memory; with `--dpop-nonce`, proofs need a server nonce. The
    /// embedded authorization server and the MCP endpoint share it.
    ///
    /// # Errors
    ///
    /// `--dpop-nonce` (or its secret file) without DPoP on, or a secret file that cannot be
    /// read or is too short.
    pub(crate) fn verifier(
        &self,
        store: Option<Arc<dyn Store>>,
    ) -> Result<Option<DpopVerifier>, String> {
        if !self.on() {
            if self.dpop_nonce || self.dpop_nonce_secret_file.is_some() {
                return Err(
                    "--dpop-nonce needs DPoP on: add --dpop allowed (or --dpop required)".into(),
                );
            }
            return Ok(None);
        }
        let mut verifier = DpopVerifier::builder();
        if let Some(store) = store {
            verifier = verifier.replay_cache(Arc::new(StoreReplayCache::new(store)));
        }
        match (&self.dpop_nonce_secret_file, self.dpop_nonce) {
            (Some(path), true) => {
                verifier = verifier.nonces(nonce_secret(path)?);
            }
            (Some(_), false) => {
                return Err(
                    "--dpop-nonce-secret-file is the secret of --dpop-nonce: add --dpop-nonce"
                        .into(),
                );
            }
            (None, true) => {
                let nonces =
                    DpopNonces::generate(DPOP_NONCE_ROTATION).map_err(|e| e.to_string())?;
                verifier = verifier.nonces(nonces);
            }
            (None, false) => {}
        }
        verifier.build().map(Some).map_err(|e| e.to_string())
    }

    /// The DPoP settings in words, for a printed plan; `None` with `--dpop off`.
    pub(crate) fn describe(&self) -> Option<String> {
        let mode = match self.dpop {
            DpopMode::Off => return None,
            DpopMode::Allowed => "allowed (DPoP-bound tokens with their proofs, and bearer tokens)",
            DpopMode::Required => "required (DPoP-bound tokens only)",
        };
        Some(match (self.dpop_nonce, &self.dpop_nonce_secret_file) {
            (false, _) => mode.to_owned(),
            (true, None) => format!("{mode}, server nonces (a secret of this process)"),
            (true, Some(path)) => {
                format!("{mode}, server nonces (the secret in {})", path.display())
            }
        })
    }

    /// The resource server's DPoP settings on `builder`, with `verifier` (from
    /// [`Self::verifier`]; `None` leaves DPoP off).
    pub(crate) fn resource(
        &self,
        builder: OAuthBuilder,
        verifier: Option<DpopVerifier>,
    ) -> OAuthBuilder {
        let Some(verifier) = verifier else {
            return builder;
        };
        let builder = builder.dpop(verifier);
        match self.dpop {
            DpopMode::Required => builder.require_dpop(),
            _ => builder,
        }
    }
}

/// The `--dpop-nonce-secret-file` secret: the file's bytes, surrounding whitespace trimmed.
fn nonce_secret(path: &Path) -> Result<DpopNonces, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "--dpop-nonce-secret-file {}: cannot read it: {e}",
            path.display()
        )
    })?;
    let secret = bytes.trim_ascii();
    if secret.len() < 32 {
        return Err(format!(
            "--dpop-nonce-secret-file {}: the secret has {} bytes, it needs at least 32 (make one with: openssl rand -base64 48 > {})",
            path.display(),
            secret.len(),
            path.display()
        ));
    }
    DpopNonces::from_secret(secret, DPOP_NONCE_ROTATION).map_err(|e| e.to_string())
}

/// Who may register clients.
#[derive(Debug, Args)]
pub(crate) struct RegistrationArgs {
    /// Dynamic client registration: open (anyone registers clients that act for a user),
    /// token (each registration needs the initial access token from
    /// --registration-token-file or MCP_OAUTH_REGISTRATION_TOKEN), or off.
    #[arg(long, value_enum, default_value_t = RegistrationMode::Open, value_name = "MODE")]
    registration: RegistrationMode,
    /// File holding the initial access token for --registration token (never on the
    /// command line).
    #[arg(long, value_name = "PATH")]
    registration_token_file: Option<PathBuf>,
}

/// The environment variable holding the initial access token for `--registration token`.
const REGISTRATION_TOKEN_ENV: &str = "MCP_OAUTH_REGISTRATION_TOKEN";

/// `--registration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RegistrationMode {
    /// Anyone may register a client that acts for a user.
    Open,
    /// Registration needs an initial access token (RFC 7591 §3).
    Token,
    /// No registration endpoint.
    Off,
}

impl RegistrationArgs {
    /// The policy, the token read from the file or from `MCP_OAUTH_REGISTRATION_TOKEN`.
    pub(crate) fn policy(&self) -> Result<Registration, String> {
        self.policy_with(std::env::var(REGISTRATION_TOKEN_ENV).ok())
    }

    fn policy_with(&self, env: Option<String>) -> Result<Registration, String> {
        let token = match (&self.registration_token_file, env) {
            (Some(path), _) => Some(read_secret_file(path, "--registration-token-file")?),
            (None, Some(env)) => Some(env.trim().to_owned()),
            (None, None) => None,
        };
        match (self.registration, token) {
            (RegistrationMode::Token, Some(token)) if !token.is_empty() => {
                Ok(Registration::InitialAccessToken(Secret::from(token)))
            }
            (RegistrationMode::Token, _) => Err(
                "--registration token needs the initial access token: --registration-token-file PATH, or MCP_OAUTH_REGISTRATION_TOKEN in the environment".to_owned(),
            ),
            (mode, Some(_)) if self.registration_token_file.is_some() => Err(format!(
                "--registration-token-file is used only with --registration token, not {}",
                mode_name(mode)
            )),
            (RegistrationMode::Open, _) => Ok(Registration::Open),
            (RegistrationMode::Off, _) => Ok(Registration::Off),
        }
    }
}

fn mode_name(mode: RegistrationMode) -> String {
    mode.to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// The whole of a file holding one secret, trimmed.
fn read_secret_file(path: &Path, flag: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{flag}: cannot read {}: {e}", path.display()))?;
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(format!("{flag}: {} is empty", path.display()));
    }
    Ok(text)
}

/// The demo policy (`--policy demo`): the rules of `examples/policy/demo.toml`.
pub(crate) const DEMO_POLICY: &str = include_str!("../../../examples/policy/demo.toml");

/// The access policy and its audit log (`dev`, `serve`, `proxy`).
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// Access policy (TOML, see docs/policy.md): who may sign in, which scopes each user is
    /// granted, which tools each user may call and with which arguments; `demo` for the demo
    /// policy (examples/policy/demo.toml, built in). Its rules are checked against the
    /// server's tools at start-up [default: none: every signed-in user may call every tool].
    #[arg(long, value_name = "FILE", env = "MCP_OAUTH_POLICY")]
    policy: Option<String>,
    /// Write one JSON line per policy decision to this file (appended; `-` for standard
    /// output), arguments as their SHA-256 (see docs/audit.md) [default: no audit log].
    #[arg(long, value_name = "FILE", env = "MCP_OAUTH_AUDIT")]
    audit: Option<PathBuf>,
}

/// Sign-in shortcuts (`dev`, `proxy`): rules built without a policy file.
#[derive(Debug, Args)]
pub(crate) struct AllowArgs {
    /// Only users whose verified email is at this domain may sign in (repeatable; together
    /// with --allow-email, a user matching any of them may) [default: anyone the identity
    /// provider signs in].
    #[arg(long = "allow-domain", value_name = "DOMAIN")]
    domains: Vec<String>,
    /// Only this user (by verified email) may sign in (repeatable).
    #[arg(long = "allow-email", value_name = "EMAIL")]
    emails: Vec<String>,
}

/// What the access-policy options ask for.
pub(crate) struct Access {
    /// The rules for tool calls and lists (the policy file), checked against the tools.
    pub(crate) tools: Option<PolicyConfig>,
    /// The rules for sign-in and grants: the policy file plus the `--allow-*` rules.
    pub(crate) sign_in: Option<PolicyConfig>,
    /// The audit log of the decisions.
    pub(crate) audit: Option<AuditLog>,
}

impl PolicyArgs {
    /// Reads the policy file and opens the audit log. `allow` adds sign-in rules (`dev`,
    /// `proxy`); without a policy file they decide sign-in only, not tool calls.
    pub(crate) fn load(&self, allow: Option<&AllowArgs>) -> Result<Access, String> {
        self.load_with(allow, |sign_in| sign_in)
    }

    /// [`Self::load`], `more` adding sign-in rules of its own (`proxy --allow-org`).
    pub(crate) fn load_with(
        &self,
        allow: Option<&AllowArgs>,
        more: impl FnOnce(Option<PolicyConfig>) -> Option<PolicyConfig>,
    ) -> Result<Access, String> {
        let file = self.config()?;
        let rules = allow.map(AllowArgs::rules).unwrap_or_default();
        let sign_in = match (&file, rules.is_empty()) {
            (_, true) => file.clone(),
            (Some(config), false) => Some(
                rules
                    .into_iter()
                    .fold(config.clone(), PolicyConfig::sign_in),
            ),
            (None, false) => Some(
                rules
                    .into_iter()
                    .fold(PolicyConfig::new(), PolicyConfig::sign_in),
            ),
        };
        let sign_in = more(sign_in);
        let audit = match &self.audit {
            None => None,
            Some(path) if path.as_os_str() == "-" => Some(AuditLog::builder().stdout().build()),
            Some(path) => Some(AuditLog::builder().file(path).build()),
        }
        .transpose()
        .map_err(|e| format!("--audit: {e}"))?;
        if audit.is_some() && sign_in.is_none() {
            return Err("--audit records the decisions of an access policy: give --policy (or --allow-domain / --allow-email / --allow-org) too".to_owned());
        }
        if file.is_some() || sign_in.is_some() {
            let what = match (&file, &self.policy) {
                (Some(_), Some(name)) => format!("--policy {}", name.trim()),
                _ => "--allow-* (sign-in only)".to_owned(),
            };
            let audit_to = match &self.audit {
                Some(path) => format!(", audit log {}", path.display()),
                None => String::new(),
            };
            eprintln!("access policy: {what}{audit_to}");
        }
        Ok(Access {
            tools: file,
            sign_in,
            audit,
        })
    }
}

impl PolicyArgs {
    /// `--policy` as given (a path, or `demo`); `None` without it.
    pub(crate) fn name(&self) -> Option<&str> {
        self.policy
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }

    /// The policy file, when `--policy` names one (not the built-in `demo`).
    pub(crate) fn file(&self) -> Option<PathBuf> {
        self.name()
            .filter(|name| *name != "demo")
            .map(PathBuf::from)
    }

    /// `--audit` as given (`-` is standard output).
    pub(crate) fn audit_path(&self) -> Option<&Path> {
        self.audit.as_deref()
    }

    /// The policy file read (`demo`: the built-in demo policy), not yet checked against
    /// tools; `None` without `--policy`.
    pub(crate) fn config(&self) -> Result<Option<PolicyConfig>, String> {
        Ok(match self.name() {
            None => None,
            Some("demo") => Some(
                PolicyConfig::from_toml(DEMO_POLICY, "examples/policy/demo.toml")
                    .map_err(|e| format!("--policy demo: {e}"))?,
            ),
            Some(path) => Some(
                PolicyConfig::from_file(Path::new(path))
                    .map_err(|e| format!("--policy {path}: {e}"))?,
            ),
        })
    }
}

impl AllowArgs {
    /// `config` (the sign-in rules of a policy file, if any) with one sign-in rule per
    /// option kind; `None` when there are no rules at all.
    pub(crate) fn sign_in_rules(&self, config: Option<PolicyConfig>) -> Option<PolicyConfig> {
        let rules = self.rules();
        if rules.is_empty() {
            return config;
        }
        Some(
            rules
                .into_iter()
                .fold(config.unwrap_or_default(), PolicyConfig::sign_in),
        )
    }

    /// One sign-in rule per option kind.
    fn rules(&self) -> Vec<Rule> {
        let clean = |values: &[String]| -> Vec<String> {
            values
                .iter()
                .map(|v| v.trim().to_lowercase())
                .filter(|v| !v.is_empty())
                .collect()
        };
        let (domains, emails) = (clean(&self.domains), clean(&self.emails));
        let mut rules = Vec::new();
        if !domains.is_empty() {
            rules.push(Rule::permit("allow-domain").who(Who::new().email_domains(domains)));
        }
        if !emails.is_empty() {
            rules.push(Rule::permit("allow-email").who(Who::new().emails(emails)));
        }
        rules
    }
}

/// The lines of a file of `NAME:SECRET…` entries (blank lines and `#` comments skipped).
pub(crate) fn read_entries(path: &Path, flag: &str) -> Result<Vec<SecretArg>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{flag}: cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| SecretArg(l.to_owned()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        registration: RegistrationArgs,
    }

    #[test]
    fn a_non_loopback_listen_address_needs_an_https_public_url() {
        let cli = Cli::try_parse_from(["x", "--listen", "0.0.0.0:8080"]).expect("parse");
        let err = cli.listen.check_public(None).expect_err("refused");
        assert!(err.contains("--public-url https://"), "{err}");
        assert!(
            cli.listen
                .check_public(Some("http://mcp.example.com"))
                .is_err()
        );
        assert!(
            cli.listen
                .check_public(Some("https://mcp.example.com"))
                .is_ok()
        );
        let local = Cli::try_parse_from(["x", "--port", "0"]).expect("parse");
        assert_eq!(local.listen.addr(), "127.0.0.1:0".parse().expect("addr"));
        assert!(local.listen.check_public(None).is_ok());
    }

    #[test]
    fn bad_listen_addresses_and_cidrs_are_refused_with_what_to_write() {
        let err = Cli::try_parse_from(["x", "--listen", "localhost"])
            .expect_err("bad")
            .to_string();
        assert!(err.contains("IP:PORT"), "{err}");
        let err = Cli::try_parse_from(["x", "--trusted-proxy", "10.0.0.0/33"])
            .expect_err("bad")
            .to_string();
        assert!(err.contains("0 to 32"), "{err}");
        let ok = Cli::try_parse_from([
            "x",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy",
            "::1",
        ])
        .expect("parse");
        let proxies = ok.listen.trusted_proxies();
        assert!(proxies.contains("10.1.2.3".parse().expect("ip")));
        assert!(proxies.contains("::1".parse().expect("ip")));
        assert!(!proxies.contains("192.0.2.1".parse().expect("ip")));
    }

    #[test]
    fn token_registration_needs_a_token_from_a_file_or_the_environment() {
        let cli = Cli::try_parse_from(["x", "--registration", "token"]).expect("parse");
        let err = cli.registration.policy_with(None).expect_err("no token");
        assert!(err.contains("--registration-token-file"), "{err}");
        assert!(cli.registration.policy_with(Some("  ".into())).is_err());
        assert!(matches!(
            cli.registration.policy_with(Some("from-env".into())),
            Ok(Registration::InitialAccessToken(_))
        ));
        let dir = std::env::temp_dir().join(format!("mcp-oauth-cli-opt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("iat");
        std::fs::write(&file, "s3cret-iat\n").expect("write");
        let cli = Cli::try_parse_from([
            "x",
            "--registration",
            "token",
            "--registration-token-file",
            file.to_str().expect("path"),
        ])
        .expect("parse");
        match cli.registration.policy_with(None).expect("policy") {
            Registration::InitialAccessToken(token) => {
                assert_eq!(token.expose(), b"s3cret-iat");
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
