//! The gateway's front door when it is the authorization server clients see: the embedded
//! server with local users (as `mcp-oauth dev`), or proxy mode with `--login PROVIDER` (as
//! `mcp-oauth proxy`): users sign in at the provider, the gateway issues its own tokens, and
//! the provider's tokens never reach a client or an upstream.
//!
//! Who may sign in is decided there, before any code is issued: `--allow-domain`,
//! `--allow-email`, `--allow-org` (GitHub organisations and teams, read at sign-in) and the
//! `[[policy.sign_in]]` / `[[policy.grant]]` rules of `--policy`.

use mcp_oauth::AuditLog;
use mcp_oauth::policy::{Catalog, Policy, PolicyConfig};

use crate::dev::Prepared;
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

/// The sign-in rules of the options (`--allow-domain`, `--allow-email`, `--allow-org`),
/// compiled, with the audit log their decisions go to; `None` when there are none.
fn option_rules(
    args: &GatewayArgs,
    audit: Option<&AuditLog>,
) -> Result<Option<(Policy, Option<AuditLog>)>, String> {
    let config: Option<PolicyConfig> = args.allow.sign_in_rules(None);
    let config = match args.login {
        Some(_) => args.login_options.sign_in_rules(config),
        None => config,
    };
    let Some(config) = config else {
        return Ok(None);
    };
    let policy = Policy::new(config, Catalog::new())
        .map_err(|e| format!("--allow-domain / --allow-email / --allow-org: {e}"))?;
    Ok(Some((policy, audit.cloned())))
}

/// The gateway's own authorization server, bound but not yet serving: local users (as
/// `dev`) or, with `--login`, the provider's (as `proxy`), with the options' sign-in rules.
pub(crate) async fn prepare(
    args: &GatewayArgs,
    audit: Option<&AuditLog>,
) -> Result<Prepared, Box<dyn std::error::Error>> {
    check_options(args)?;
    let access = option_rules(args, audit)?;
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
    crate::dev::prepare_at(&args.dev, "mcp-oauth gateway", access, upstream).await
}
