//! Every upstream `mcp-oauth gateway` serves: those of the command line and the configuration
//! file, then a desktop client's `.mcp.json`, and the library's configuration of each, references
//! resolved (read again by a reload).

use mcp_oauth::exchange::{ExchangeGrant, TokenExchange};
use mcp_oauth::protocol::{ClientAuthMethod, ClientCredentials};
use mcp_oauth_gateway::{HttpConfig, StdioConfig, UpstreamConfig, UpstreamCredentials};

use crate::gateway_config::{self, Exchange, Target, UpstreamSpec, UserOAuthSpec, UserSecretSpec};

/// The credential vault of this process's gateway, and the gateway's public URL (for the
/// links to its pages): the vault is opened once the gateway's authorization server (its
/// store) is up; reloads build their upstreams on the same vault.
static VAULT: std::sync::OnceLock<(mcp_oauth_gateway::vault::Vault, String)> =
    std::sync::OnceLock::new();

/// Sets the gateway's public URL (before the upstreams are built) and returns the vault
/// their user secrets use.
pub(crate) fn vault(base_url: &str) -> mcp_oauth_gateway::vault::Vault {
    VAULT
        .get_or_init(|| {
            (
                mcp_oauth_gateway::vault::Vault::late(),
                base_url.trim_end_matches('/').to_owned(),
            )
        })
        .0
        .clone()
}

/// Every upstream's user secret (for the gateway's pages).
pub(crate) fn user_secrets(
    specs: &[UpstreamSpec],
) -> Result<Vec<mcp_oauth_gateway::UserSecret>, String> {
    specs
        .iter()
        .filter_map(|spec| {
            let secret = spec.user_secret.as_ref()?;
            Some(user_secret(spec, secret))
        })
        .collect()
}

/// The gateway's public URL for the `user-oauth` links and redirect URIs: set once the
/// listener is bound (its port may be chosen then); reloads build on the same one.
pub(crate) fn public_url() -> mcp_oauth_gateway::user_oauth::PublicUrl {
    static PUBLIC: std::sync::OnceLock<mcp_oauth_gateway::user_oauth::PublicUrl> =
        std::sync::OnceLock::new();
    PUBLIC.get_or_init(Default::default).clone()
}

/// Every upstream's `user-oauth` credentials (for the connect pages).
pub(crate) fn user_oauths(
    specs: &[UpstreamSpec],
) -> Result<Vec<mcp_oauth_gateway::user_oauth::UserOAuth>, String> {
    specs
        .iter()
        .filter_map(|spec| {
            let oauth = spec.user_oauth.as_ref()?;
            Some(user_oauth(spec, oauth))
        })
        .collect()
}

/// The credentials of `credentials = { kind = "user-oauth", … }`, in the vault (its store
/// holds the locks and states too), the client secret resolved; errors name the upstream
/// and the field, never a value.
fn user_oauth(
    spec: &UpstreamSpec,
    oauth: &UserOAuthSpec,
) -> Result<mcp_oauth_gateway::user_oauth::UserOAuth, String> {
    use mcp_oauth_gateway::user_oauth::{ClientAuth, UserOAuth};
    let Some(name) = &spec.name else {
        return Err(
            "credentials user-oauth: give the upstream a name (its connect link is /gateway/connect/NAME)"
                .to_owned(),
        );
    };
    let Target::Url { url, .. } = &spec.target else {
        return Err(format!(
            "upstream {name}: credentials user-oauth are for a url"
        ));
    };
    let at = format!("upstream {name}: credentials");
    let (vault, _) = VAULT.get_or_init(|| {
        (
            mcp_oauth_gateway::vault::Vault::late(),
            "http://127.0.0.1".to_owned(),
        )
    });
    let mut builder = UserOAuth::builder(name.as_str(), url.as_str())
        .public_url_late(public_url())
        .vault(vault.clone())
        .scopes(oauth.scopes.iter().cloned());
    if let Some(client_id) = &oauth.client_id {
        let client = match &oauth.client_secret {
            Some(raw) => {
                let secret = gateway_config::resolve_value(raw)
                    .map_err(|e| format!("{at} client_secret: {e}"))?;
                if oauth.secret_in_body {
                    ClientAuth::post(client_id.clone(), secret)
                } else {
                    ClientAuth::basic(client_id.clone(), secret)
                }
            }
            None => ClientAuth::public(client_id.clone()),
        };
        builder = builder.client(client);
    }
    if let Some(issuer) = &oauth.authorization_server {
        builder = builder.authorization_server(issuer.clone());
    }
    if let (Some(authorize), Some(token)) = (&oauth.authorization_endpoint, &oauth.token_endpoint) {
        builder = builder.endpoints(authorize.clone(), token.clone());
    }
    builder.build().map_err(|e| format!("{at}: {e}"))
}

/// The user secret of `credentials = { kind = "user-secret", … }`.
fn user_secret(
    spec: &UpstreamSpec,
    secret: &UserSecretSpec,
) -> Result<mcp_oauth_gateway::UserSecret, String> {
    let Some(name) = &spec.name else {
        return Err(
            "credentials user-secret: give the upstream a name (its page is /gateway/secrets/NAME)"
                .to_owned(),
        );
    };
    let at = format!("upstream {name}: credentials");
    let (vault, base) = VAULT.get_or_init(|| {
        (
            mcp_oauth_gateway::vault::Vault::late(),
            "http://127.0.0.1".to_owned(),
        )
    });
    let page = format!(
        "{base}{}/{name}",
        mcp_oauth_gateway::credential_pages::SECRETS_PATH
    );
    let mut built = mcp_oauth_gateway::UserSecret::new(vault.clone(), name.as_str(), page);
    if let Some(pattern) = &secret.pattern {
        built = built.pattern(pattern).map_err(|e| format!("{at}: {e}"))?;
    }
    if let Some(env) = &secret.env {
        built = built.env(env).map_err(|e| format!("{at}: {e}"))?;
    } else if secret.header.is_some() || secret.format.is_some() {
        built = built
            .header(
                secret.header.as_deref().unwrap_or("Authorization"),
                secret.format.as_deref().unwrap_or("Bearer {secret}"),
            )
            .map_err(|e| format!("{at}: {e}"))?;
    }
    Ok(built)
}

/// [`gateway_config::upstreams`] and those of `--upstreams-from FILE` after them: every upstream the gateway
/// serves. A name used twice is an error.
pub(crate) fn all_upstreams(
    args: &crate::gateway_args::GatewayArgs,
    config: Option<&gateway_config::ConfigFile>,
) -> Result<Vec<UpstreamSpec>, Vec<String>> {
    let mut specs = gateway_config::upstreams(args, config);
    let Some(path) = &args.upstreams_from else {
        return Ok(specs);
    };
    let imported = crate::mcp_json::load(path)?;
    let mut errors = Vec::new();
    for spec in imported {
        if specs.iter().any(|s| s.name == spec.name) {
            errors.push(format!(
                "{}: server {:?} has the name of an [[upstream]] of the configuration file; rename one",
                path.display(),
                spec.name.as_deref().unwrap_or_default()
            ));
        } else {
            specs.push(spec);
        }
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(errors)
    }
}

/// The token exchange of `credentials = { kind = "token-exchange", … }`, its secret resolved;
/// errors name the upstream and the field, never a value.
fn token_exchange(spec: &Exchange, at: &str) -> Result<UpstreamCredentials, String> {
    let secret = gateway_config::resolve_value(&spec.client_secret)
        .map_err(|e| format!("{at}credentials client_secret: {e}"))?;
    let mut client = ClientCredentials::new(spec.client_id.clone(), secret);
    if spec.secret_in_body {
        client = client.with_method(ClientAuthMethod::ClientSecretPost);
    }
    let mut builder = TokenExchange::builder(spec.token_endpoint.clone())
        .client(client)
        .scopes(spec.scopes.iter().cloned());
    if spec.on_behalf_of {
        builder = builder.grant(ExchangeGrant::OnBehalfOf);
    }
    if let Some(audience) = &spec.audience {
        builder = builder.audience(audience.clone());
    }
    if let Some(resource) = &spec.resource {
        builder = builder.resource(resource.clone());
    }
    let exchange = builder
        .build()
        .map_err(|e| format!("{at}credentials: {e}"))?;
    Ok(UpstreamCredentials::token_exchange(exchange))
}

/// The library's configuration of one upstream, references resolved; errors name the
/// upstream and the field, never a value.
fn upstream_config(spec: &UpstreamSpec) -> Result<UpstreamConfig, String> {
    let at = match (&spec.name, spec.line) {
        (Some(name), _) => format!("upstream {name}: "),
        (None, 0) => String::new(),
        (None, line) => format!("the upstream at line {line}: "),
    };
    match &spec.target {
        Target::Url {
            url,
            headers,
            credentials,
            transport,
        } => {
            let mut config = HttpConfig::new(url)
                .map_err(|e| format!("{at}url: {e}"))?
                .transport(*transport);
            for (name, raw) in headers {
                if name.is_empty() {
                    return Err(format!("{at}a header takes NAME:VALUE (quote it)"));
                }
                let value = gateway_config::resolve_value(raw)
                    .map_err(|e| format!("{at}header {name}: {e}"))?;
                config = config
                    .header(name, &value)
                    .map_err(|e| format!("{at}header {name}: {e}"))?;
            }
            if let Some(exchange) = credentials {
                config = config.credentials(token_exchange(exchange, &at)?);
            }
            if let Some(secret) = &spec.user_secret {
                config = config
                    .credentials(UpstreamCredentials::user_secret(user_secret(spec, secret)?));
            }
            if let Some(oauth) = &spec.user_oauth {
                config =
                    config.credentials(UpstreamCredentials::user_oauth(user_oauth(spec, oauth)?));
            }
            Ok(config.into())
        }
        Target::Command {
            argv,
            env,
            pass_env,
            cwd,
            per_user,
            per_session,
        } => {
            let Some((program, rest)) = argv.split_first() else {
                return Err(format!("{at}the command is empty"));
            };
            let mut config = StdioConfig::new(program.clone(), rest.iter().cloned());
            for (name, raw) in env {
                if name.is_empty() {
                    return Err(format!("{at}env takes NAME=VALUE"));
                }
                let value = gateway_config::resolve_value(raw)
                    .map_err(|e| format!("{at}env {name}: {e}"))?;
                config = config.env(name, value);
            }
            for name in pass_env {
                config = config.pass_env(name);
            }
            if let Some(dir) = cwd {
                config = config.current_dir(dir);
            }
            if *per_user {
                config = config.isolation(mcp_oauth_gateway::Isolation::PerUser);
            }
            if *per_session {
                config = config.isolation(mcp_oauth_gateway::Isolation::PerSession);
            }
            if let Some(secret) = &spec.user_secret {
                config = config
                    .user_secret(user_secret(spec, secret)?)
                    .map_err(|e| format!("{at}credentials: {e}"))?;
            }
            Ok(config.into())
        }
    }
}

/// Every upstream's configuration, with its name (`None` for the one of the command line).
pub(crate) fn upstream_configs(
    specs: &[UpstreamSpec],
) -> Result<Vec<(Option<String>, UpstreamConfig)>, String> {
    if specs.is_empty() {
        return Err(
            "no MCP server to protect: give --upstream http://HOST:PORT/mcp, or a command after --, e.g. mcp-oauth gateway -- npx -y @modelcontextprotocol/server-everything, or [[upstream]] tables in a --config file"
                .to_owned(),
        );
    }
    specs
        .iter()
        .map(|spec| Ok((spec.name.clone(), upstream_config(spec)?)))
        .collect()
}
