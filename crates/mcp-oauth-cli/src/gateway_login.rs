//! The gateway's front door when it is the authorization server clients see: the embedded
//! server with local users (as `mcp-oauth dev`), or proxy mode with `--login PROVIDER` (as
//! `mcp-oauth proxy`): users sign in at the provider, the gateway issues its own tokens, and
//! the provider's tokens never reach a client or an upstream.
//!
//! Who may sign in is decided there, before any code is issued: `--allow-domain`,
//! `--allow-email`, `--allow-org` (GitHub organisations and teams, read at sign-in) and the
//! `[[policy.sign_in]]` / `[[policy.grant]]` rules of `--policy`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mcp_oauth::policy::{Catalog, Policy, PolicyConfig};
use mcp_oauth::verify::{BoxFuture, TokenVerifier};
use mcp_oauth::{AuditLog, Claims, VerifyError};

use crate::dev::{Early, Prepared, SignInPolicy};
use crate::gateway_args::GatewayArgs;

/// Refuses option combinations that cannot work, without asking anyone anything (also for
/// `gateway check`).
pub(crate) fn check_options(args: &GatewayArgs) -> Result<(), String> {
    let rules = args.allow.sign_in_rules(None).is_some();
    match args.login {
        Some(provider) => {
            let local = args.dev.local_sign_in_options();
            if !local.is_empty() {
                return Err(format!(
                    "{} are the embedded server's own users; with --login users sign in at {}: leave them out",
                    local.join(", "),
                    provider.display_name()
                ));
            }
            if provider != crate::proxy::Provider::Oidc && args.issuer.is_some() {
                return Err(
                    "--issuer (OIDC_ISSUER) is the provider of --login oidc; with another --login it has no use (to verify the tokens of another issuer instead, leave out --login)"
                        .to_owned(),
                );
            }
            if args.audience.is_some() || args.scopes.is_some() || args.public_key.is_some() {
                return Err(
                    "--audience, --scopes and --public-key are for the tokens of another issuer (--issuer without --login); with --login the gateway issues its own"
                        .to_owned(),
                );
            }
            args.login_options
                .check(provider, "--login", args.issuer.as_ref())
        }
        None => {
            if let Some(option) = args.login_options.needs_provider() {
                return Err(format!(
                    "{option} needs --login github (users signing in at GitHub)"
                ));
            }
            if args.issuer.is_some() && rules {
                return Err(
                    "--allow-domain and --allow-email decide who signs in at the gateway's own authorization server; with --issuer users sign in at that issuer: allow them there (or leave out --issuer)"
                        .to_owned(),
                );
            }
            Ok(())
        }
    }
}

/// Who may sign in, in words, for `gateway check`; `None` when the options and the policy
/// say nothing about it (or users sign in at another issuer).
pub(crate) fn describe_sign_in(args: &GatewayArgs) -> Option<String> {
    if args.login.is_none() && args.issuer.is_some() {
        return None;
    }
    let mut parts = Vec::new();
    let orgs = args.login_options.orgs();
    if !orgs.is_empty() {
        parts.push(format!("members of {} (GitHub)", orgs.join(", ")));
    }
    if args.allow.sign_in_rules(None).is_some() {
        parts.push("the --allow-domain / --allow-email addresses".to_owned());
    }
    if let Some(name) = args.access.name() {
        parts.push(format!("the sign-in and grant rules of {name}"));
    }
    (!parts.is_empty()).then(|| format!("decided by {}", parts.join("; ")))
}

/// The access policy of the gateway's own authorization server: the sign-in and grant rules
/// of the policy file (`file`, compiled against the upstreams' tools `catalog` as listed, like
/// its tool rules) with those of the options (`--allow-domain`, `--allow-email`,
/// `--allow-org`), and the audit log of its decisions; `None` when there are no rules.
pub(crate) fn sign_in_policy(
    args: &GatewayArgs,
    file: Option<PolicyConfig>,
    catalog: Option<&serde_json::Value>,
    audit: Option<&AuditLog>,
) -> Result<SignInPolicy, String> {
    let config = args.allow.sign_in_rules(file);
    let config = match args.login {
        Some(_) => args.login_options.sign_in_rules(config),
        None => config,
    };
    let Some(config) = config else {
        return Ok(None);
    };
    let catalog = match catalog {
        Some(listed) => {
            Catalog::from_json(listed).map_err(|e| format!("the upstreams' tool list: {e}"))?
        }
        None => Catalog::new(),
    };
    let policy = Policy::new(config, catalog).map_err(|e| match args.access.name() {
        Some(name) => format!("--policy {name} (sign-in rules):\n{e}"),
        None => format!("--allow-domain / --allow-email / --allow-org: {e}"),
    })?;
    Ok(Some((policy, audit.cloned())))
}

/// The MCP endpoint's resource-server configuration for the gateway's own authorization
/// server, as `dev` makes it, its tokens verified by `verifier` (filled once the server is
/// built).
pub(crate) fn resource(
    args: &GatewayArgs,
    early: Early,
    verifier: LateVerifier,
) -> Result<mcp_oauth::OAuth, Box<dyn std::error::Error>> {
    let oauth = mcp_oauth::OAuth::builder()
        .resource(early.mcp_url)
        .authorization_server(early.issuer)
        .scopes_supported(["mcp:read", "mcp:write"])
        .verifier(verifier)
        .mirror_authorization_server(false)
        .resource_name("mcp-oauth gateway");
    Ok(args.dev.dpop.resource(oauth, early.dpop).build()?)
}

/// The gateway's own authorization server, bound but not yet serving: local users (as
/// `dev`) or, with `--login`, the provider's (as `proxy`). `late` is called once the address
/// is known and before the server is built, and gives the server's access policy (see
/// [`sign_in_policy`]); its other result is handed back.
pub(crate) async fn prepare<T, F, Fut>(
    args: &GatewayArgs,
    other_paths: &[String],
    late: F,
) -> Result<(Prepared, T), Box<dyn std::error::Error>>
where
    F: FnOnce(Early) -> Fut,
    Fut: std::future::Future<Output = Result<(SignInPolicy, T), Box<dyn std::error::Error>>>,
{
    check_options(args)?;
    let upstream = match args.login {
        Some(provider) => {
            let upstream = args
                .login_options
                .upstream(provider, "--login", args.issuer.as_ref())
                .await?;
            let dir = crate::data_dir::resolve(args.dev.data_dir.clone());
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create the data folder {}: {e}", dir.display()))?;
            let key = args.login_options.encryption_key(&dir)?;
            Some((upstream, key))
        }
        None => None,
    };
    crate::dev::prepare_late(&args.dev, "mcp-oauth gateway", upstream, other_paths, late).await
}

/// A token verifier whose verifier is set later: the MCP endpoint is configured before the
/// authorization server whose keys verify its tokens is built. Until then every token is
/// refused (nothing is served before it is set).
#[derive(Clone, Default)]
pub(crate) struct LateVerifier(Arc<OnceLock<Box<dyn TokenVerifier>>>);

impl LateVerifier {
    /// Sets the verifier (once; a second call is ignored).
    pub(crate) fn set(&self, verifier: impl TokenVerifier) {
        let _ = self.0.set(Box::new(verifier));
    }
}

impl TokenVerifier for LateVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, VerifyError>> {
        match self.0.get() {
            Some(verifier) => verifier.verify(token),
            None => Box::pin(std::future::ready(Err(VerifyError::Malformed(
                "the authorization server is not ready",
            )))),
        }
    }

    fn requires_exp(&self) -> bool {
        self.0.get().is_none_or(|v| v.requires_exp())
    }

    fn max_cache_ttl(&self) -> Option<Duration> {
        match self.0.get() {
            Some(verifier) => verifier.max_cache_ttl(),
            None => Some(Duration::ZERO),
        }
    }

    fn rechecks(&self) -> bool {
        self.0.get().is_some_and(|v| v.rechecks())
    }

    fn recheck<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, Result<(), VerifyError>> {
        match self.0.get() {
            Some(verifier) => verifier.recheck(claims),
            None => Box::pin(std::future::ready(Err(VerifyError::Malformed(
                "the authorization server is not ready",
            )))),
        }
    }

    fn recheck_now(&self, claims: &Claims) -> Option<Result<(), VerifyError>> {
        self.0.get().and_then(|v| v.recheck_now(claims))
    }
}
