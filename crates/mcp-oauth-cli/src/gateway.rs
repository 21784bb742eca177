//! `mcp-oauth gateway`: OAuth in front of any MCP server, a local stdio command or a remote
//! Streamable HTTP endpoint.
//!
//! ```text
//! mcp-oauth gateway -- npx -y @modelcontextprotocol/server-everything
//! mcp-oauth gateway --issuer https://auth.example.com --scopes mcp:read --upstream http://127.0.0.1:3000/mcp
//! mcp-oauth gateway --config gateway.toml
//! mcp-oauth gateway check --config gateway.toml
//! ```
//!
//! Without `--issuer` the embedded authorization server runs as `mcp-oauth dev` runs it (the
//! same options: users, clients, store, keys in the data folder); with `--issuer`, tokens of
//! that issuer are verified as `mcp-oauth serve` verifies them.

use std::ffi::OsString;
use std::time::Duration;

use std::process::ExitCode;

use mcp_oauth::audit::ArgumentMode;
use mcp_oauth_gateway::{Gateway, UpstreamConfig};

pub(crate) use crate::gateway_args::{AuditArguments, GatewayAction, GatewayArgs};
use crate::gateway_config::{self, Target, UpstreamSpec};
use crate::gateway_policy;
use crate::gateway_upstreams::{all_upstreams, upstream_configs};

/// How long a stdio command has to start and answer `initialize` before the gateway gives up.
const START_TIMEOUT: Duration = Duration::from_secs(120);

fn describe(spec: &UpstreamSpec) -> String {
    match &spec.target {
        Target::Url { url, .. } => url.clone(),
        Target::Command { argv, .. } => argv.join(" "),
    }
}

/// The arguments after `gateway` on this process's command line.
fn command_line() -> Vec<OsString> {
    std::env::args_os()
        .skip(1)
        .skip_while(|a| a != "gateway")
        .skip(1)
        .collect()
}

/// The audit log the options ask for.
fn audit_log(args: &GatewayArgs) -> Result<Option<mcp_oauth::AuditLog>, String> {
    let Some(path) = args.access.audit_path() else {
        return Ok(None);
    };
    let mode = match args.audit_arguments {
        AuditArguments::None => ArgumentMode::None,
        AuditArguments::Hash => ArgumentMode::Sha256,
        AuditArguments::Redacted => ArgumentMode::Redacted,
        AuditArguments::Full => ArgumentMode::Full,
    };
    let builder = if path.as_os_str() == "-" {
        mcp_oauth::AuditLog::builder().stdout()
    } else {
        mcp_oauth::AuditLog::builder().file(path)
    };
    builder
        .arguments(mode)
        .build()
        .map(Some)
        .map_err(|e| format!("--audit {}: {e}", path.display()))
}

/// `mcp-oauth gateway check --config FILE`: everything `run` would refuse, without binding,
/// starting or writing anything; the plan on success.
fn check(path: &std::path::Path) -> ExitCode {
    let fail = |problems: &[String]| {
        eprintln!("{} is not valid:", path.display());
        for problem in problems {
            eprintln!("  {problem}");
        }
        ExitCode::from(2)
    };
    let config = match gateway_config::load(path) {
        Ok(config) => config,
        Err(problems) => return fail(&problems),
    };
    let args = match gateway_config::merge(&config, &[]) {
        Ok(args) => args,
        Err(problem) => return fail(&[problem]),
    };
    let mut problems = Vec::new();
    if let Err(e) = args.check_upstream_options() {
        problems.push(e);
    }
    let specs = match all_upstreams(&args, Some(&config)) {
        Ok(specs) => {
            if let Err(e) = upstream_configs(&specs) {
                problems.push(e);
            }
            problems.extend(crate::gateway_config::check_tools(&specs));
            specs
        }
        Err(mut errors) => {
            problems.append(&mut errors);
            Vec::new()
        }
    };
    if let Err(e) = args.dev.listen.check_public(args.dev.public_url.as_deref()) {
        problems.push(e);
    }
    if let Some(header) = &args.identity_header
        && let Err(e) = mcp_oauth_gateway::identity::header_name(header)
    {
        problems.push(format!("identity_header: {e}"));
    }
    if let Some(Err(e)) = args
        .identity_key
        .as_deref()
        .map(crate::gateway_identity_key::parse)
    {
        problems.push(e);
    }
    if let Err(e) = args.dev.dpop.verifier(None) {
        problems.push(e);
    }
    if let Err(e) = args.access.config() {
        problems.push(e);
    }
    if let Err(e) = crate::gateway_login::check_options(&args) {
        problems.push(e);
    }
    if let Some(audit) = args.access.audit_path().filter(|a| a.as_os_str() != "-") {
        let dir = audit.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            problems.push(format!(
                "audit file {}: its folder does not exist",
                audit.display()
            ));
        }
    }
    if !problems.is_empty() {
        return fail(&problems);
    }
    println!("{}: valid\n", path.display());
    let listen = args.dev.listen.addr();
    println!("  listen        {listen}");
    match &args.dev.public_url {
        Some(url) => println!("  MCP endpoint  {}/mcp", url.trim().trim_end_matches('/')),
        None => println!("  MCP endpoint  http://{listen}/mcp"),
    }
    match (&args.login, &args.issuer) {
        (Some(provider), _) => println!(
            "  tokens        the gateway's own; users sign in at {} (as mcp-oauth proxy)",
            provider.display_name()
        ),
        (None, Some(issuer)) => println!("  tokens        verified for the issuer {issuer}"),
        (None, None) => {
            println!("  tokens        from the embedded authorization server (as mcp-oauth dev)")
        }
    }
    if let Some(rules) = crate::gateway_login::describe_sign_in(&args) {
        println!("  sign-in       {rules}");
    }
    if let Some(dpop) = args.dev.dpop.describe() {
        println!("  dpop          {dpop}");
    }
    for spec in &specs {
        let kind = match &spec.target {
            Target::Url {
                headers,
                credentials,
                transport,
                ..
            } => {
                let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
                let mut kind = match transport {
                    mcp_oauth_gateway::HttpTransport::Sse => "legacy HTTP+SSE",
                    mcp_oauth_gateway::HttpTransport::StreamableHttp => "Streamable HTTP",
                    _ => "Streamable HTTP (legacy SSE fallback)",
                }
                .to_owned();
                if !names.is_empty() {
                    kind.push_str(&format!(", headers {}", names.join(", ")));
                }
                if let Some(c) = credentials {
                    kind.push_str(&format!(
                        ", each caller's token exchanged at {}",
                        c.token_endpoint
                    ));
                }
                kind
            }
            Target::Command {
                env,
                per_user,
                per_session,
                ..
            } => {
                let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
                let kind = if *per_user {
                    "stdio, a process per user"
                } else if *per_session {
                    "stdio, a process per session"
                } else {
                    "stdio"
                };
                if names.is_empty() {
                    kind.to_owned()
                } else {
                    format!("{kind}, env {}", names.join(", "))
                }
            }
        };
        match (&spec.name, specs.len()) {
            (Some(name), 2..) => println!(
                "  upstream      {name}: {} ({kind}; tools exposed as {name}{}TOOL; alone at /{name}/mcp)",
                describe(spec),
                mcp_oauth_gateway::SEPARATOR
            ),
            _ => println!("  upstream      {} ({kind})", describe(spec)),
        }
    }
    if let Some(header) = &args.identity_header {
        println!(
            "  identity      {header}: a signed JWT per request to HTTP upstreams (keys at {})",
            mcp_oauth_gateway::identity::JWKS_PATH
        );
    }
    if let Some(source) = &args.identity_key {
        println!("  identity key  {source}");
    }
    if let Some(policy) = args.access.name() {
        println!(
            "  policy        {policy} (its rules are checked against the upstreams' tools at start-up)"
        );
    }
    if let Some(audit) = args.access.audit_path() {
        println!(
            "  audit         {} (arguments: {})",
            audit.display(),
            clap::ValueEnum::to_possible_value(&args.audit_arguments)
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default()
        );
    }
    match args.admin_listen {
        Some(addr) => println!("  admin         http://{addr} (/healthz, /readyz, /metrics)"),
        None => println!(
            "  admin         none (/metrics is off; /healthz and /readyz on the MCP listener)"
        ),
    }
    ExitCode::SUCCESS
}

/// What starting the gateway needs once its resource-server configuration is known.
struct Start<'a> {
    args: &'a GatewayArgs,
    upstreams: Vec<(Option<String>, UpstreamConfig)>,
    /// `[upstream.tools.TOOL]`, by upstream name.
    tools: Vec<(String, mcp_oauth_gateway::ToolNames)>,
    described: &'a str,
    audit: Option<mcp_oauth::AuditLog>,
    /// The policy file's name and its rules.
    policy: Option<(String, mcp_oauth::policy::PolicyConfig)>,
    gate: &'a gateway_policy::PolicyGate,
}

impl Start<'_> {
    /// Builds the gateway, waits for its stdio upstreams, and puts the policy in place,
    /// checked against the upstreams' tools (returned as listed, when there is a policy).
    async fn start(
        self,
        oauth: mcp_oauth::OAuth,
        store: Option<std::sync::Arc<dyn mcp_oauth::auth_server::store::Store>>,
    ) -> Result<(Gateway, Option<serde_json::Value>), Box<dyn std::error::Error>> {
        let Start {
            args,
            upstreams,
            tools,
            described,
            audit,
            policy,
            gate,
        } = self;
        let stdio = upstreams
            .iter()
            .any(|(_, u)| matches!(u, UpstreamConfig::Stdio(_)));
        let mut builder = match <[_; 1]>::try_from(upstreams) {
            Ok([(_, upstream)]) => Gateway::builder(upstream),
            Err(several) => Gateway::aggregate(
                several
                    .into_iter()
                    .map(|(name, upstream)| (name.unwrap_or_default(), upstream)),
            ),
        }
        .oauth(oauth)
        .per_user_idle(Duration::from_secs(args.per_user_idle))
        .per_user_max(args.per_user_max)
        .per_session_idle(Duration::from_secs(args.per_session_idle))
        .per_session_max(args.per_session_max)
        .metrics(gate.metrics().clone());
        if let Some(audit) = audit {
            builder = builder.audit(audit);
        }
        for (upstream, names) in tools {
            builder = builder.tools(upstream, names);
        }
        if policy.is_some() {
            builder = builder.gatekeeper(gate.clone());
        }
        if let Some(header) = &args.identity_header {
            builder = builder.identity_header(header);
        }
        if args.identity_meta {
            builder = builder.identity_meta();
        }
        if let Some(source) = &args.identity_key {
            let source = crate::gateway_identity_key::parse(source)?;
            let seal = crate::gateway_identity_key::seal_of(args, &source, store.is_some())?;
            let key = crate::gateway_identity_key::load(&source, store.as_ref(), seal).await?;
            builder = builder.identity_key(key);
        }
        if policy.is_some() {
            let gate = gate.clone();
            builder = builder.identity_groups(move |caller| gate.groups(caller));
        }
        let gateway = builder.build()?;
        if stdio {
            eprintln!("starting the upstream: {described}");
            gateway.ready(START_TIMEOUT).await.map_err(|e| {
                format!(
                    "{e}: the upstream did not start and answer initialize within {} s; its errors are logged above",
                    START_TIMEOUT.as_secs()
                )
            })?;
        }
        let Some((path, config)) = policy else {
            return Ok((gateway, None));
        };
        let catalog = gateway.catalog().await.map_err(|e| {
            format!("--policy: cannot list the upstreams' tools to check the policy against: {e}")
        })?;
        gate.install(config, &catalog, std::path::Path::new(&path))?;
        Ok((gateway, Some(catalog)))
    }
}

pub(crate) async fn run(args: GatewayArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if let Some(GatewayAction::Check { config }) = &args.action {
        return Ok(check(config));
    }
    let argv = command_line();
    let config = match &args.config {
        Some(path) => Some(gateway_config::load(path).map_err(|p| p.join("\n"))?),
        None => None,
    };
    if args.print_config {
        print!("{}", gateway_config::print(config.as_ref(), &argv)?);
        return Ok(ExitCode::SUCCESS);
    }
    let args = match &config {
        Some(config) => gateway_config::merge(config, &argv)?,
        None => args,
    };
    if let Some(GatewayAction::RotateIdentityKey { grace }) = &args.action {
        return crate::gateway_identity_key::rotate_command(&args, *grace).await;
    }
    args.check_upstream_options()?;
    let specs = all_upstreams(&args, config.as_ref()).map_err(|p| p.join("\n"))?;
    // The vault of the upstreams' user secrets (opened with the authorization server's store
    // below), and the base of the links to their pages.
    let vault = crate::gateway_upstreams::vault(&match &args.dev.public_url {
        Some(url) => url.trim().to_owned(),
        None => format!("http://{}", args.dev.listen.addr()),
    });
    let user_secrets = crate::gateway_upstreams::user_secrets(&specs)?;
    if !user_secrets.is_empty() && args.issuer.is_some() {
        return Err("credentials user-secret needs the gateway's own sign-in (its pages and store): remove --issuer, or use another kind of credentials".into());
    }
    if !user_secrets.is_empty()
        && args.dev.public_url.is_none()
        && args.dev.listen.addr().port() == 0
    {
        return Err("credentials user-secret sends users a link to the gateway's page: give --public-url, or a fixed --port".into());
    }
    let user_oauths = crate::gateway_upstreams::user_oauths(&specs)?;
    if !user_oauths.is_empty() && args.issuer.is_some() {
        return Err("credentials user-oauth needs the gateway's own sign-in (its pages and store): remove --issuer, or use another kind of credentials".into());
    }
    let upstreams = upstream_configs(&specs)?;
    let audit = audit_log(&args)?;
    crate::gateway_login::check_options(&args)?;
    let policy = match (args.access.name(), args.access.config()?) {
        (Some(name), Some(config)) => Some((name.to_owned(), config)),
        _ => None,
    };
    let gate = gateway_policy::PolicyGate::default();
    let described = specs.iter().map(describe).collect::<Vec<_>>().join(", ");
    let admin = match args.admin_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--admin-listen {addr}: {e}"))?,
        ),
        None => None,
    };
    // With several upstreams, each at /NAME/mcp is a resource tokens are issued for.
    let own_paths: Vec<String> = match specs.as_slice() {
        [_, _, ..] => specs
            .iter()
            .filter_map(|s| s.name.as_ref().map(|n| format!("/{n}/mcp")))
            .collect(),
        _ => Vec::new(),
    };
    // The policy file watched for changes (not the built-in `demo`).
    let policy_file = args.access.file();
    let (listener, mcp_url, issuer, gateway, auth_server, token) = match (&args.login, &args.issuer)
    {
        (None, Some(issuer)) => {
            args.dev
                .listen
                .check_public(args.dev.public_url.as_deref())?;
            let listener = args.dev.listen.bind().await?;
            let base = match &args.dev.public_url {
                Some(url) => url.trim().trim_end_matches('/').to_owned(),
                None => format!("http://{}", listener.local_addr()?),
            };
            // No store with --issuer: used proofs are remembered in memory (one instance).
            let dpop = args.dev.dpop.verifier(None)?;
            let oauth = crate::serve::issuer_oauth_builder(
                issuer,
                args.public_key.as_deref(),
                args.scopes.clone().filter(|s| !s.trim().is_empty()),
                args.audience.clone().filter(|s| !s.trim().is_empty()),
                format!("{base}/mcp"),
                &[],
            )
            .await?;
            let oauth = args.dev.dpop.resource(oauth, dpop).build()?;
            let mcp_url = oauth.resource().to_string();
            let issuer = oauth
                .authorization_servers()
                .first()
                .cloned()
                .unwrap_or_default();
            let started = Start {
                args: &args,
                upstreams,
                tools: crate::gateway_config::tool_names(&specs),
                described: &described,
                audit,
                policy,
                gate: &gate,
            };
            let (gateway, _) = started.start(oauth, None).await?;
            (listener, mcp_url, issuer, gateway, None, None)
        }
        _ => {
            // The gateway's own authorization server: its sign-in rules (those of the
            // policy file too) are compiled once the upstreams' tools are known, so the
            // upstreams start first, behind a verifier that takes the server's keys
            // once it is built (nothing is served before).
            let late = crate::gateway_login::LateVerifier::default();
            let file = policy.as_ref().map(|(_, config)| config.clone());
            let audit_log = audit.clone();
            let started = Start {
                args: &args,
                upstreams,
                tools: crate::gateway_config::tool_names(&specs),
                described: &described,
                audit,
                policy,
                gate: &gate,
            };
            let resource = late.clone();
            let args_ref = &args;
            let (prepared, gateway) =
                crate::gateway_login::prepare(args_ref, &own_paths, |early| async move {
                    let store = early.store.clone();
                    let oauth = crate::gateway_login::resource(args_ref, early, resource)?;
                    let (gateway, catalog) = started.start(oauth, Some(store)).await?;
                    let sign_in = crate::gateway_login::sign_in_policy(
                        args_ref,
                        file,
                        catalog.as_ref(),
                        audit_log.as_ref(),
                    )?;
                    Ok((sign_in, gateway))
                })
                .await?;
            late.set(prepared.server.verifier()?);
            // With --login the users are the provider's: no token for a local one.
            let token = args.login.is_none().then_some(prepared.token);
            (
                prepared.listener,
                prepared.mcp_url,
                prepared.issuer,
                gateway,
                Some(prepared.server),
                token,
            )
        }
    };
    // The base of the user-oauth links and redirect URIs, now that the port is known.
    crate::gateway_upstreams::public_url().set(match &args.dev.public_url {
        Some(url) => url.trim().to_owned(),
        None => url::Url::parse(&mcp_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default(),
    });
    // Rate-limit buckets in the authorization server's store (shared by the instances that
    // share it); with --issuer, in memory.
    if let Some(server) = &auth_server {
        gate.count_limits_in(server.store().clone());
    }
    // The gateway's own pages (approvals) and the approval desk, at the MCP URL's origin.
    let (pages, desk) =
        crate::gateway_pages::pages(&args, auth_server.as_ref(), &mcp_url, &issuer, &gate).await?;
    let callback_url = match (&args.login, &auth_server) {
        (Some(_), Some(server)) => Some(server.upstream_callback_url()),
        _ => None,
    };
    if args.config.is_some() || policy_file.is_some() {
        crate::gateway_reload::spawn(crate::gateway_reload::Reloader {
            gateway: gateway.clone(),
            gate: policy_file.is_some().then(|| gate.clone()),
            config: args.config.clone(),
            argv: argv.clone(),
            policy: policy_file,
            upstreams: specs.clone(),
            options: config
                .as_ref()
                .map(|c| c.options.clone())
                .unwrap_or_default(),
        });
    }
    let admin_url = match admin {
        Some(admin) => {
            let url = format!("http://{}", admin.local_addr()?);
            let app = gateway.admin_router();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(admin, app).await {
                    tracing::error!(target: "mcp_oauth_cli", "the admin listener stopped: {e}");
                }
            });
            Some(url)
        }
        None => None,
    };
    let mut app = gateway.router().merge(pages.router());
    if let Some(desk) = &desk {
        app = app.merge(desk.router());
    }
    if let Some(server) = &auth_server {
        app = app.merge(server.router());
        if !user_secrets.is_empty() || !user_oauths.is_empty() {
            app = app.merge(credential_pages(
                &args,
                server,
                &pages,
                &vault,
                user_secrets,
                user_oauths,
            )?);
        }
    }
    if args.dev.json {
        println!(
            "{}",
            serde_json::json!({ "mcp_url": mcp_url, "upstream_urls": gateway.upstream_resources(), "issuer": issuer, "token": token, "upstream": described, "admin_url": admin_url, "callback_url": callback_url })
        );
    } else {
        println!("mcp-oauth gateway: OAuth in front of {described}\n");
        println!("  MCP endpoint  {mcp_url}");
        for url in gateway.upstream_resources() {
            println!("  one upstream  {url}");
        }
        println!("  issuer        {issuer}");
        if let (Some(provider), Some(url)) = (args.login, &callback_url) {
            println!(
                "  sign-in       at {} (register the redirect URI {url} there)",
                provider.display_name()
            );
        }
        if let Some(url) = &admin_url {
            println!("  admin         {url} (/healthz, /readyz, /metrics)");
        }
        if let Some(token) = &token {
            println!("\nA bearer token for the first user (scopes mcp:read mcp:write):\n\n{token}");
        }
        println!("\nPoint any MCP client at {mcp_url}. Ctrl-C stops.");
    }
    crate::dev::serve(listener, app, "gateway").await?;
    Ok(ExitCode::SUCCESS)
}

/// The pages where users paste their upstream tokens and see their connections, on the
/// gateway's own sign-in; opens the vault in the authorization server's store, sealed with the
/// encryption key (`--encryption-key`, else the data folder's; instances sharing a store
/// share it). `pages` is the gateway's page sign-in (its routes are mounted with it).
fn credential_pages(
    args: &GatewayArgs,
    server: &mcp_oauth::auth_server::AuthServer,
    pages: &mcp_oauth_gateway::web::Pages,
    vault: &mcp_oauth_gateway::vault::Vault,
    secrets: Vec<mcp_oauth_gateway::UserSecret>,
    user_oauths: Vec<mcp_oauth_gateway::user_oauth::UserOAuth>,
) -> Result<axum::Router, Box<dyn std::error::Error>> {
    let dir = crate::data_dir::resolve(args.dev.data_dir.clone());
    let key = args.login_options.encryption_key(&dir)?;
    vault.open(server.store().clone(), key.expose())?;
    let credential = mcp_oauth_gateway::credential_pages::CredentialPages::new(
        pages.clone(),
        vault.clone(),
        server.issuer(),
        secrets,
    );
    let mut router = credential.router();
    if !user_oauths.is_empty() {
        // Each user's own account at the upstreams: the connect links and the gateway's
        // Client ID Metadata Document, on the same sign-in.
        let base = crate::gateway_upstreams::public_url().get().to_owned();
        router = router.merge(mcp_oauth_gateway::user_oauth::connect_router(
            user_oauths,
            Some(&base),
            mcp_oauth_gateway::user_oauth::web_session(pages.clone(), server.issuer()),
        ));
    }
    Ok(router)
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

    fn configs(args: &GatewayArgs) -> Result<Vec<(Option<String>, UpstreamConfig)>, String> {
        args.check_upstream_options()?;
        upstream_configs(&gateway_config::upstreams(args, None))
    }

    #[test]
    fn one_upstream_is_required() {
        let both = parse(&["--upstream", "http://127.0.0.1:1/mcp", "--", "server"]).expect("parse");
        assert!(configs(&both).unwrap_err().contains("not both"));
        let none = parse(&[]).expect("parse");
        assert!(configs(&none).unwrap_err().contains("--upstream"));
        let stdio = parse(&["--", "server", "--flag", "x"]).expect("parse");
        assert!(matches!(
            configs(&stdio).as_deref(),
            Ok([(None, UpstreamConfig::Stdio(_))])
        ));
        let env_on_http =
            parse(&["--upstream", "http://127.0.0.1:1/mcp", "--env", "A=b"]).expect("parse");
        assert!(configs(&env_on_http).unwrap_err().contains("--env"));
        let per_user_on_http = parse(&[
            "--upstream",
            "http://127.0.0.1:1/mcp",
            "--isolation",
            "per-user",
        ])
        .expect("parse");
        assert!(
            configs(&per_user_on_http)
                .unwrap_err()
                .contains("--isolation")
        );
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
        let config = configs(&args).expect("config");
        assert!(!format!("{config:?}").contains("key-value-4d1"));
        let args = parse(&["--env", "TOKEN=env-value-8e2", "--", "server"]).expect("parse");
        assert!(!format!("{args:?}").contains("env-value-8e2"));
        let config = configs(&args).expect("config");
        assert!(!format!("{config:?}").contains("env-value-8e2"));
    }

    #[test]
    fn references_that_cannot_be_resolved_name_the_variable() {
        let args =
            parse(&["--env", "TOKEN=${MCP_OAUTH_GW_UNSET_77}", "--", "server"]).expect("parse");
        let err = configs(&args).unwrap_err();
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
        assert!(configs(&args).unwrap_err().contains("NAME:VALUE"));
    }

    #[test]
    fn check_is_a_subcommand_with_its_file() {
        let args = parse(&["check", "--config", "g.toml"]).expect("parse");
        assert!(matches!(
            &args.action,
            Some(GatewayAction::Check { config }) if config == std::path::Path::new("g.toml")
        ));
        assert!(parse(&["check"]).is_err(), "check needs --config");
    }
}
