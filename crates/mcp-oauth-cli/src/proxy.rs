//! `mcp-oauth proxy`: the demo MCP server behind an OAuth proxy to an identity provider without
//! dynamic client registration (Google, GitHub, Okta, Entra ID, any OpenID Connect issuer).
//! MCP clients register with us; users sign in at the provider; clients get our tokens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use clap::{Args, ValueEnum};
use mcp_oauth::Secret;
use mcp_oauth::auth_server::{AuthServer, KeyRing, Store, Upstream, UpstreamBuilder, UserMapping};
use mcp_oauth::fetch::HttpClient;
use mcp_oauth::jose::Algorithm;
use mcp_oauth::protocol::ClientAuthMethod;
use serde_json::json;

use crate::data_dir;
use crate::options::{AllowArgs, DpopArgs, ListenArgs, PolicyArgs, RegistrationArgs, SecretArg};
use crate::store_arg::StoreArg;
use mcp_oauth::policy::{PolicyConfig, Rule, Who};

/// The identity provider users sign in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Provider {
    /// Google (OpenID Connect; refreshable with offline access).
    Google,
    /// GitHub OAuth apps (opaque tokens; the user from the /user API).
    Github,
    /// Okta (--okta-domain, --okta-server).
    Okta,
    /// Microsoft Entra ID (--tenant).
    Entra,
    /// Any OpenID Connect issuer (--issuer; endpoints from its discovery document).
    Oidc,
}

impl Provider {
    /// The provider's name as people write it.
    pub(crate) fn display_name(self) -> &'static str {
        match self {
            Self::Google => "Google",
            Self::Github => "GitHub",
            Self::Okta => "Okta",
            Self::Entra => "Microsoft Entra ID",
            Self::Oidc => "an OpenID Connect issuer",
        }
    }
}

/// `--upstream-auth`: how the client secret is presented to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum UpstreamAuthArg {
    /// `client_secret_post`: the secret in the form body.
    Post,
    /// `client_secret_basic`: HTTP Basic.
    Basic,
}

/// Options of `mcp-oauth proxy`. Secrets are [`SecretArg`]s: `{:?}` never prints them.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// The identity provider.
    #[arg(long, value_enum, env = "MCP_OAUTH_PROVIDER")]
    provider: Provider,
    /// OpenID Connect issuer (with --provider oidc).
    #[arg(long, env = "MCP_OAUTH_UPSTREAM_ISSUER")]
    issuer: Option<String>,
    /// Our application at the provider and what is asked of it.
    #[command(flatten)]
    login: LoginArgs,
    /// Public base URL of this server (the issuer; the MCP endpoint is <URL>/mcp)
    /// [default: http://<listen address>].
    #[arg(long, env = "MCP_OAUTH_PUBLIC_URL")]
    public_url: Option<String>,
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    registration: RegistrationArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    allow: AllowArgs,
    #[command(flatten)]
    dpop: DpopArgs,
    #[command(flatten)]
    metrics: crate::metrics_arg::MetricsArgs,
    /// The JWT-bearer grant's issuers (ID-JAG identity providers, workload issuers).
    #[command(flatten)]
    trust: crate::trust_args::TrustArgs,
    /// Folder for signing keys, the encryption key and SQLite state [default: as for dev].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value = "sqlite", help = crate::store_arg::HELP, env = "MCP_OAUTH_STORE", hide_env_values = true)]
    store: StoreArg,
    /// Redis URL (with --store redis; or give it to --store), e.g. redis://127.0.0.1:6379/0.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<SecretArg>,
    /// Key prefix in Redis (--store redis…), to share one database between deployments.
    #[arg(long, default_value = "mcp-oauth:")]
    redis_prefix: String,
    /// Print one JSON line (mcp_url, issuer, callback_url, data_dir) instead of the banner.
    #[arg(long)]
    json: bool,
}

/// The provider options `mcp-oauth proxy` and `mcp-oauth gateway --login` share: our
/// application at the provider, what is asked of it, how its users map to ours, who of them
/// may sign in (GitHub organisations), and the key sealing their tokens. Secrets are
/// [`SecretArg`]s: `{:?}` never prints them.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// Our client id at the provider (an application registered there).
    #[arg(long, env = "MCP_OAUTH_UPSTREAM_CLIENT_ID")]
    client_id: Option<String>,
    /// Our client secret at the provider.
    #[arg(long, env = "MCP_OAUTH_UPSTREAM_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<SecretArg>,
    /// Okta domain, e.g. dev-123456.okta.com (with the provider okta).
    #[arg(long, env = "MCP_OAUTH_OKTA_DOMAIN")]
    okta_domain: Option<String>,
    /// Okta authorization server id.
    #[arg(long, env = "MCP_OAUTH_OKTA_SERVER", default_value = "default")]
    okta_server: String,
    /// Entra ID tenant id (with the provider entra).
    #[arg(long, env = "MCP_OAUTH_ENTRA_TENANT")]
    tenant: Option<String>,
    /// GitHub's web base URL (GitHub Enterprise Server) [default: https://github.com].
    #[arg(long, env = "MCP_OAUTH_GITHUB_URL")]
    github_url: Option<String>,
    /// GitHub's API base URL [default: https://api.github.com].
    #[arg(long, env = "MCP_OAUTH_GITHUB_API_URL")]
    github_api_url: Option<String>,
    /// With the provider github: at sign-in, the user's organisations and teams become groups
    /// (`org`, `org/team`) in the `groups` claim, for a policy with `group_claims = ["groups"]`;
    /// asks GitHub for `read:org` too.
    #[arg(long)]
    github_groups: bool,
    /// With the provider github: only members of this GitHub organisation may sign in
    /// (repeatable: a member of any of them may; `org/team` for a team). Turns on
    /// --github-groups; a user whose memberships cannot be read is refused.
    #[arg(long = "allow-org", value_name = "ORG")]
    allow_orgs: Vec<String>,
    /// Scopes asked of the provider, space-separated [default: the provider's].
    #[arg(long, env = "MCP_OAUTH_UPSTREAM_SCOPES")]
    upstream_scopes: Option<String>,
    /// An extra authorize parameter for the provider, as NAME=VALUE (repeatable).
    #[arg(long = "authorize-param", value_name = "NAME=VALUE")]
    authorize_params: Vec<String>,
    /// The provider's token revocation endpoint (RFC 7009): a grant revoked here is revoked
    /// there too [default: the provider's, when it has one (Google, Okta, an OIDC issuer that
    /// publishes one)].
    #[arg(long, env = "MCP_OAUTH_UPSTREAM_REVOCATION_ENDPOINT")]
    revocation_endpoint: Option<String>,
    /// How this server authenticates at the provider's token and revocation endpoints: the
    /// client secret in the form (post) or HTTP Basic (basic), as the client is registered
    /// there [default: post].
    #[arg(
        long,
        value_enum,
        env = "MCP_OAUTH_UPSTREAM_AUTH",
        default_value = "post"
    )]
    upstream_auth: UpstreamAuthArg,
    /// The provider's claim that becomes the user's sub [default: sub; GitHub: id].
    #[arg(long, value_name = "CLAIM", env = "MCP_OAUTH_MAP_SUBJECT")]
    map_subject: Option<String>,
    /// The provider's claim that becomes email [default: email].
    #[arg(long, value_name = "CLAIM", env = "MCP_OAUTH_MAP_EMAIL")]
    map_email: Option<String>,
    /// The provider's claim that becomes name [default: name].
    #[arg(long, value_name = "CLAIM", env = "MCP_OAUTH_MAP_NAME")]
    map_name: Option<String>,
    /// The provider's claim whose list becomes groups [default: none].
    #[arg(long, value_name = "CLAIM", env = "MCP_OAUTH_MAP_GROUPS")]
    map_groups: Option<String>,
    /// The provider's claim whose list becomes roles (auth.user.roles) [default: none].
    #[arg(long, value_name = "CLAIM", env = "MCP_OAUTH_MAP_ROLES")]
    map_roles: Option<String>,
    /// Another claim copied from the provider into our tokens, as FROM=TO (repeatable).
    #[arg(long = "map-claim", value_name = "FROM=TO")]
    map_claims: Vec<String>,
    /// 32-byte key sealing upstream tokens at rest and signing consent cookies: base64
    /// (`openssl rand -base64 32`) or 64 hex digits. Every instance sharing a store needs the
    /// same key [default: generated once into the data folder].
    #[arg(long, env = "MCP_OAUTH_ENCRYPTION_KEY", hide_env_values = true)]
    pub(crate) encryption_key: Option<SecretArg>,
}

/// `value` required by `option` (e.g. `--provider okta`, `--store redis`).
fn needed<'a>(value: &'a Option<String>, flag: &str, option: &str) -> Result<&'a str, String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{option} needs {flag}"))
}

/// The provider's name as its option takes it (`github`).
fn provider_name(provider: Provider) -> String {
    provider
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

impl LoginArgs {
    /// The upstream identity provider `provider` (chosen with `flag`: `--provider` or
    /// `--login`), `issuer` being the OpenID Connect issuer of `oidc`.
    pub(crate) async fn upstream(
        &self,
        provider: Provider,
        flag: &str,
        issuer: Option<&String>,
    ) -> Result<Upstream, Box<dyn std::error::Error>> {
        let args = self;
        self.check(provider, flag, issuer)?;
        let named = format!("{flag} {}", provider_name(provider));
        let id = args
            .client_id
            .as_deref()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let secret = Secret::from(
            args.client_secret
                .as_ref()
                .map(|s| s.expose().to_owned())
                .unwrap_or_default(),
        );
        let mut builder: UpstreamBuilder = match provider {
            Provider::Google => Upstream::google(id, secret),
            Provider::Github => Upstream::github_at(
                args.github_url.as_deref().unwrap_or("https://github.com"),
                args.github_api_url
                    .as_deref()
                    .unwrap_or("https://api.github.com"),
                id,
                secret,
            ),
            Provider::Okta => Upstream::okta(
                needed(&args.okta_domain, "--okta-domain", &named)?,
                &args.okta_server,
                id,
                secret,
            ),
            Provider::Entra => {
                Upstream::entra(needed(&args.tenant, "--tenant", &named)?, id, secret)
            }
            Provider::Oidc => {
                let issuer = issuer.cloned();
                let issuer = needed(&issuer, "--issuer", &named)?;
                // An empty secret: a public client at the provider, PKCE only.
                Upstream::oidc(issuer, id, secret, &HttpClient::new()?).await?
            }
        };
        if let Some(scopes) = &args.upstream_scopes {
            builder = builder.scopes(scopes.split_whitespace());
        }
        for param in &args.authorize_params {
            let (name, value) = param
                .split_once('=')
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| format!("--authorize-param takes NAME=VALUE, got {param:?}"))?;
            builder = builder.extra_authorize_param(name, value);
        }
        if let Some(url) = &args.revocation_endpoint {
            builder = builder.revocation_endpoint(url.trim());
        }
        if args.github_groups || !args.orgs().is_empty() {
            builder = builder.github_groups();
        }
        builder = builder.user_mapping(user_mapping(args)?);
        builder = builder.token_auth(match args.upstream_auth {
            UpstreamAuthArg::Post => ClientAuthMethod::ClientSecretPost,
            UpstreamAuthArg::Basic => ClientAuthMethod::ClientSecretBasic,
        });
        Ok(builder.build()?)
    }

    /// What [`Self::upstream`] refuses without asking the provider anything: a missing
    /// client id or secret, a provider option of another provider.
    pub(crate) fn check(
        &self,
        provider: Provider,
        flag: &str,
        issuer: Option<&String>,
    ) -> Result<(), String> {
        let named = format!("{flag} {}", provider_name(provider));
        if self
            .client_id
            .as_deref()
            .is_none_or(|id| id.trim().is_empty())
        {
            return Err(format!(
                "{named} needs our client id at the provider: --client-id or MCP_OAUTH_UPSTREAM_CLIENT_ID"
            ));
        }
        let no_secret = self
            .client_secret
            .as_ref()
            .is_none_or(|s| s.expose().is_empty());
        if provider != Provider::Oidc && no_secret {
            return Err(format!(
                "{named} needs the client secret: --client-secret or MCP_OAUTH_UPSTREAM_CLIENT_SECRET"
            ));
        }
        match provider {
            Provider::Okta => {
                needed(&self.okta_domain, "--okta-domain", &named)?;
            }
            Provider::Entra => {
                needed(&self.tenant, "--tenant", &named)?;
            }
            Provider::Oidc => {
                needed(&issuer.cloned(), "--issuer", &named)?;
            }
            Provider::Google | Provider::Github => {}
        }
        if provider != Provider::Github
            && let Some(option) = self.needs_provider()
        {
            return Err(format!("{option} needs {flag} github"));
        }
        if let Some(key) = &self.encryption_key {
            decode_key(key.expose())?;
        }
        Ok(())
    }

    /// The `--allow-org` organisations (and `org/team` teams), trimmed.
    pub(crate) fn orgs(&self) -> Vec<String> {
        self.allow_orgs
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    }

    /// `sign_in` (the sign-in rules of the policy file and of `--allow-domain` /
    /// `--allow-email`) with the rule of `--allow-org`: members of the organisations, read
    /// from the `groups` claim that `github_groups` fills at sign-in. `None` when there are
    /// no rules at all.
    pub(crate) fn sign_in_rules(&self, sign_in: Option<PolicyConfig>) -> Option<PolicyConfig> {
        let orgs = self.orgs();
        if orgs.is_empty() {
            return sign_in;
        }
        let rule = Rule::permit("allow-org").who(Who::new().groups(orgs));
        Some(
            sign_in
                .unwrap_or_default()
                .group_claim("groups")
                .sign_in(rule),
        )
    }

    /// The key sealing upstream tokens: `--encryption-key`, else the data folder's.
    pub(crate) fn encryption_key(&self, dir: &Path) -> Result<Secret, String> {
        match &self.encryption_key {
            Some(value) => decode_key(value.expose()),
            None => stored_key(dir),
        }
    }

    /// The option that needs a provider, when one is given without (`--allow-org`,
    /// `--github-groups`).
    pub(crate) fn needs_provider(&self) -> Option<&'static str> {
        if !self.allow_orgs.is_empty() {
            Some("--allow-org")
        } else if self.github_groups {
            Some("--github-groups")
        } else {
            None
        }
    }
}

/// The user mapping the `--map-*` options describe (the default for the others).
fn user_mapping(args: &LoginArgs) -> Result<UserMapping, String> {
    let mut mapping = UserMapping::new();
    let given = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    if let Some(claim) = given(&args.map_subject) {
        mapping = mapping.subject(claim);
    }
    if let Some(claim) = given(&args.map_email) {
        mapping = mapping.email(claim);
    }
    if let Some(claim) = given(&args.map_name) {
        mapping = mapping.name(claim);
    }
    if let Some(claim) = given(&args.map_groups) {
        mapping = mapping.groups(claim);
    }
    if let Some(claim) = given(&args.map_roles) {
        mapping = mapping.roles(claim);
    }
    for pair in &args.map_claims {
        let (from, to) = pair
            .split_once('=')
            .filter(|(f, t)| !f.trim().is_empty() && !t.trim().is_empty())
            .ok_or_else(|| format!("--map-claim takes FROM=TO, got {pair:?}"))?;
        mapping = mapping.claim(from.trim(), to.trim());
    }
    Ok(mapping)
}

/// Decodes a configured key: base64 (standard or URL-safe, padded or not) or hex, 32 bytes.
fn decode_key(value: &str) -> Result<Secret, String> {
    let value = value.trim();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let hex = || -> Option<Vec<u8>> {
        (value.len() == 64)
            .then(|| {
                (0..32)
                    .map(|i| u8::from_str_radix(value.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect()
            })
            .flatten()
    };
    hex()
        .or_else(|| engines.iter().find_map(|e| e.decode(value).ok()))
        .filter(|bytes| bytes.len() == 32)
        .map(Secret::from)
        .ok_or_else(|| {
            "the encryption key must be 32 bytes, written as base64 (openssl rand -base64 32) or 64 hex digits".to_owned()
        })
}

/// The key from the data folder, created (32 random bytes, mode 0600) on first use.
fn stored_key(dir: &Path) -> Result<Secret, String> {
    let path = dir.join("encryption.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => decode_key(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no randomness available".to_owned())?;
            let text = base64::engine::general_purpose::STANDARD.encode(bytes);
            write_private(&path, text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), "generated the encryption key");
            Ok(Secret::from(bytes.to_vec()))
        }
        Err(err) => Err(format!("cannot read {}: {err}", path.display())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

async fn store(args: &ProxyArgs, dir: &Path) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    let redis_url = args.redis_url.as_ref().map(SecretArg::expose);
    args.store.open(dir, redis_url, &args.redis_prefix).await
}

pub(crate) async fn run(args: ProxyArgs) -> Result<(), Box<dyn std::error::Error>> {
    // Everything that can be refused is checked before anything is written or bound.
    args.listen.check_public(args.public_url.as_deref())?;
    let registration = args.registration.policy()?;
    let access = args
        .policy
        .load_with(Some(&args.allow), |rules| args.login.sign_in_rules(rules))?;
    let demo = crate::demo::server();
    let sign_in = match access.sign_in {
        Some(config) => demo.clone().policy(config).check_policy()?,
        None => None,
    };
    let dir = data_dir::resolve(args.data_dir.clone());
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the data folder {}: {e}", dir.display()))?;
    let upstream = args
        .login
        .upstream(args.provider, "--provider", args.issuer.as_ref())
        .await?;
    let store = store(&args, &dir).await?;
    // Proofs at /token and at the MCP endpoint: one verifier, the store's replay cache.
    let dpop = args.dpop.verifier(Some(store.clone()))?;
    let key = args.login.encryption_key(&dir)?;
    let listener = args.listen.bind().await?;
    let addr = listener.local_addr()?;
    let issuer = args
        .public_url
        .as_deref()
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("http://{addr}"));
    let mcp_url = format!("{issuer}/mcp");
    let mut builder = AuthServer::builder(issuer.clone())
        .keys(Arc::new(KeyRing::open(&dir, Algorithm::ES256)?))
        .store(store.clone())
        .upstream(upstream)
        .encryption_key(key)
        .scopes(["mcp:read", "mcp:write", "admin"])
        .default_scopes(["mcp:read", "mcp:write"])
        .resource(mcp_url.clone())
        .registration(registration)
        .trusted_proxies(args.listen.trusted_proxies());
    // Clients register themselves here; the jwt-bearer grant is for the workload clients
    // configured below and for clients registered with the initial access token.
    builder = args.trust.apply(builder, &[])?;
    if let Some(policy) = sign_in {
        builder = builder.policy(policy, access.audit.clone());
    }
    if let Some(verifier) = &dpop {
        builder = builder.dpop_verifier(verifier.clone());
    }
    let server = builder.build().await?;
    let callback = server.upstream_callback_url();
    let demo = if dpop.is_some() {
        // The MCP endpoint's configuration as the embedded server makes it, with DPoP.
        let oauth = mcp_oauth::OAuth::builder()
            .resource(mcp_url.clone())
            .authorization_server(issuer.clone())
            .scopes_supported(server.scopes_supported().iter().cloned())
            .verifier(server.verifier()?)
            .mirror_authorization_server(false);
        demo.oauth(args.dpop.resource(oauth, dpop).build()?)
    } else {
        demo
    };
    let mut demo = demo.auth_server(server);
    let metrics_url = match args.metrics.start().await? {
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
    let app = demo.app()?;
    if args.json {
        println!(
            "{}",
            json!({ "mcp_url": mcp_url, "issuer": issuer, "callback_url": callback, "data_dir": dir, "metrics_url": metrics_url })
        );
    } else {
        let table = crate::dev::aligned(&[
            ("MCP endpoint", mcp_url.clone()),
            ("issuer", issuer.clone()),
            (
                "redirect URI",
                format!("{callback}   (register it at the provider)"),
            ),
            ("data", dir.display().to_string()),
            (
                "metrics",
                metrics_url
                    .clone()
                    .unwrap_or_else(|| "off (--metrics ADDR)".into()),
            ),
        ]);
        println!(
            "mcp-oauth proxy: the demo MCP server, users signing in with {}\n\n\
{table}\n\n\
Point any MCP client at {mcp_url}: it registers here, the user approves the client, then\n\
signs in at the provider. Clients get this server's tokens, never the provider's. Ctrl-C stops.",
            args.provider.display_name(),
        );
    }
    crate::dev::serve(listener, app, "proxy").await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{ProxyArgs, decode_key};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        proxy: ProxyArgs,
    }

    /// Security review 2, F12: `{:?}` of the parsed arguments holds no secret.
    #[test]
    fn debug_of_the_arguments_prints_no_secret() {
        let cli = Cli::try_parse_from([
            "proxy",
            "--provider",
            "github",
            "--client-id",
            "ghapp",
            "--client-secret",
            "upstream-secret-4d2",
            "--encryption-key",
            "encryption-key-8e5",
            "--redis-url",
            "redis://:redis-password-1a9@cache.internal:6379/0",
        ])
        .expect("parse");
        let printed = format!("{cli:?}");
        for secret in [
            "upstream-secret-4d2",
            "encryption-key-8e5",
            "redis-password-1a9",
        ] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("ghapp"), "{printed}");
    }

    /// `--allow-org` lets in the members of the organisations (or teams) only, read from
    /// the `groups` claim GitHub's memberships fill at sign-in; nobody without it.
    #[test]
    fn allow_org_is_a_sign_in_rule_on_the_github_groups() {
        use mcp_oauth::policy::{Catalog, Effect, Policy, Subject};

        let cli = Cli::try_parse_from([
            "proxy",
            "--provider",
            "github",
            "--client-id",
            "ghapp",
            "--allow-org",
            "acme",
            "--allow-org",
            "corp/platform",
        ])
        .expect("parse");
        assert!(cli.proxy.login.sign_in_rules(None).is_some());
        let config = cli.proxy.login.sign_in_rules(None).expect("a rule");
        let policy = Policy::new(config, Catalog::new()).expect("compiles");
        let user = |groups: serde_json::Value| {
            let claims = serde_json::json!({ "groups": groups });
            let serde_json::Value::Object(claims) = claims else {
                unreachable!("an object")
            };
            Subject::new("583231").claims(claims)
        };
        let decide = |groups| policy.sign_in(&user(groups)).effect();
        assert_eq!(decide(serde_json::json!(["acme"])), Effect::Allow);
        assert_eq!(decide(serde_json::json!(["corp/platform"])), Effect::Allow);
        assert_ne!(
            decide(serde_json::json!(["corp", "acme-evil"])),
            Effect::Allow
        );
        assert_ne!(decide(serde_json::json!([])), Effect::Allow);
        let none = Cli::try_parse_from(["proxy", "--provider", "github", "--client-id", "x"])
            .expect("parse");
        assert!(none.proxy.login.sign_in_rules(None).is_none());
    }

    #[test]
    fn keys_are_read_as_base64_or_hex_and_must_be_32_bytes() {
        let raw: Vec<u8> = (0u8..32).collect();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw);
        let url = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &raw);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        for text in [
            b64.as_str(),
            url.as_str(),
            hex.as_str(),
            &format!("  {b64}\n"),
        ] {
            assert_eq!(
                decode_key(text).expect(text).expose(),
                raw.as_slice(),
                "{text}"
            );
        }
        let short = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [1u8; 16]);
        for bad in ["", "not a key", short.as_str(), &"zz".repeat(32)] {
            let err = decode_key(bad).expect_err(bad);
            assert!(err.contains("32 bytes"), "{err}");
        }
    }
}
