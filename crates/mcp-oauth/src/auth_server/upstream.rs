//! An upstream identity provider (proxy mode): how it is configured ([`UpstreamBuilder`], the
//! presets for Google, GitHub, Okta, Entra ID and any OIDC issuer), how the proxy learns who
//! signed in ([`Identity`]) and authenticates to it ([`ClientCredentials`](crate::protocol::ClientCredentials)), and its token
//! endpoint.
//!
//! Why one file of this size: most of it is the presets (Google, GitHub, Okta, Entra ID,
//! OIDC), each a few lines of data on one builder, and the user mapping they share; the flow
//! that uses them lives in `proxy/`.

use std::sync::Arc;

use serde_json::{Map, Value};
use url::Url;

use crate::error::ConfigError;
use crate::fetch::HttpClient;
use crate::protocol::{ClientAuthMethod, ClientCredentials};
use crate::secret::Secret;
use crate::verify::{JwtVerifier, TokenVerifier};

/// Where the provider sends the browser back, under the issuer: the redirect URI to register
/// at the provider. The same path as mcp-use's proxy, so an existing registration keeps working.
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// How the proxy learns who signed in upstream.
#[derive(Clone)]
#[non_exhaustive]
pub enum Identity {
    /// The `id_token` of the token response (OpenID Connect), verified: signature against the
    /// provider's JWKS, `iss`, `aud` = our upstream client id, `exp`.
    IdToken {
        /// The issuer of the ID tokens.
        issuer: String,
        /// The provider's JWKS URL.
        jwks_url: String,
    },
    /// A user-info endpoint called with the upstream access token (GitHub's `/user`, an OIDC
    /// `userinfo`). The JSON answer's `id` or `sub` is the subject.
    UserInfo {
        /// The URL.
        url: String,
    },
    /// Your verifier applied to the upstream access token (a JWT the provider issued for your
    /// API), returning the claims.
    AccessToken(Arc<dyn TokenVerifier>),
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::IdToken { issuer, jwks_url } => f
                .debug_struct("IdToken")
                .field("issuer", issuer)
                .field("jwks_url", jwks_url)
                .finish(),
            Self::UserInfo { url } => f.debug_struct("UserInfo").field("url", url).finish(),
            Self::AccessToken(_) => f.write_str("AccessToken"),
        }
    }
}

pub(crate) enum Verifier {
    IdToken(JwtVerifier),
    UserInfo(Url),
    AccessToken(Arc<dyn TokenVerifier>),
}

/// An upstream identity provider, ready to use.
pub struct Upstream {
    pub(crate) name: String,
    pub(crate) authorization_endpoint: Url,
    pub(crate) token_endpoint: Url,
    /// This server as the provider's client: id, secret, and how it authenticates.
    pub(crate) client: ClientCredentials,
    pub(crate) scopes: Vec<String>,
    pub(crate) extra: Vec<(String, String)>,
    pub(crate) pkce: bool,
    pub(crate) verifier: Verifier,
    pub(crate) http: HttpClient,
    pub(crate) revocation_endpoint: Option<Url>,
    pub(crate) mapping: UserMapping,
    /// GitHub's API base, when the user's organisations and teams become groups
    /// ([`UpstreamBuilder::github_groups`]).
    pub(crate) github_groups: Option<Url>,
}

impl Upstream {
    /// The origin of the provider's authorization endpoint.
    pub(crate) fn origin(&self) -> String {
        self.authorization_endpoint.origin().ascii_serialization()
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field(
                "authorization_endpoint",
                &self.authorization_endpoint.as_str(),
            )
            .field("client_id", &self.client.client_id())
            .finish_non_exhaustive()
    }
}

/// Configures an [`Upstream`]. Built like mcp-use's `oauthProxy` (endpoints, client id and
/// secret, scopes, extra authorize parameters, how to verify), or from a preset.
#[derive(Clone)]
#[must_use]
pub struct UpstreamBuilder {
    name: String,
    authorization_endpoint: String,
    token_endpoint: String,
    client_id: String,
    client_secret: Option<Secret>,
    scopes: Vec<String>,
    extra: Vec<(String, String)>,
    auth: ClientAuthMethod,
    pkce: bool,
    identity: Option<Identity>,
    http: Option<HttpClient>,
    revocation_endpoint: Option<String>,
    mapping: UserMapping,
    /// The GitHub preset's API base.
    github_api: Option<String>,
    github_groups: bool,
}

impl std::fmt::Debug for UpstreamBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBuilder")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl Upstream {
    /// Any provider: its display name, endpoints and our client id at it. Scopes default to
    /// `openid email profile`.
    pub fn builder(
        name: impl Into<String>,
        authorization_endpoint: impl Into<String>,
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
    ) -> UpstreamBuilder {
        UpstreamBuilder {
            name: name.into(),
            authorization_endpoint: authorization_endpoint.into(),
            token_endpoint: token_endpoint.into(),
            client_id: client_id.into(),
            client_secret: None,
            scopes: strings(&["openid", "email", "profile"]),
            extra: Vec::new(),
            auth: ClientAuthMethod::ClientSecretPost,
            pkce: true,
            identity: None,
            http: None,
            revocation_endpoint: None,
            mapping: UserMapping::default(),
            github_api: None,
            github_groups: false,
        }
    }

    /// Google: OpenID Connect, the user from the verified `id_token`; asks for offline access
    /// so that upstream tokens can be refreshed.
    pub fn google(
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> UpstreamBuilder {
        Self::builder(
            "Google",
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://oauth2.googleapis.com/token",
            client_id,
        )
        .client_secret(client_secret)
        .revocation_endpoint("https://oauth2.googleapis.com/revoke")
        .extra_authorize_param("access_type", "offline")
        .extra_authorize_param("prompt", "consent")
        .identity(Identity::IdToken {
            issuer: "https://accounts.google.com".into(),
            jwks_url: "https://www.googleapis.com/oauth2/v3/certs".into(),
        })
    }

    /// GitHub (OAuth apps): opaque tokens, the user from the `/user` API.
    pub fn github(
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> UpstreamBuilder {
        Self::github_at(
            "https://github.com",
            "https://api.github.com",
            client_id,
            client_secret,
        )
    }

    /// GitHub at other base URLs (GitHub Enterprise Server, or a local stand-in in tests).
    pub fn github_at(
        web: &str,
        api: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> UpstreamBuilder {
        let web = web.trim_end_matches('/');
        let api = api.trim_end_matches('/');
        let mut builder = Self::builder(
            "GitHub",
            format!("{web}/login/oauth/authorize"),
            format!("{web}/login/oauth/access_token"),
            client_id,
        )
        .client_secret(client_secret)
        .scopes(["read:user", "user:email"])
        .identity(Identity::UserInfo {
            url: format!("{api}/user"),
        });
        builder.github_api = Some(api.to_owned());
        builder
    }

    /// Okta, with a custom authorization server (`default` for the built-in one).
    pub fn okta(
        domain: &str,
        authorization_server: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> UpstreamBuilder {
        let base = if domain.starts_with("http://") || domain.starts_with("https://") {
            domain.trim_end_matches('/').to_owned()
        } else {
            format!("https://{}", domain.trim_end_matches('/'))
        };
        let issuer = format!("{base}/oauth2/{authorization_server}");
        Self::builder(
            "Okta",
            format!("{issuer}/v1/authorize"),
            format!("{issuer}/v1/token"),
            client_id,
        )
        .client_secret(client_secret)
        .revocation_endpoint(format!("{issuer}/v1/revoke"))
        .identity(Identity::IdToken {
            jwks_url: format!("{issuer}/v1/keys"),
            issuer,
        })
    }

    /// Microsoft Entra ID (v2.0 endpoints) of one tenant (its id, not `common`: the ID token's
    /// issuer names the tenant).
    pub fn entra(
        tenant_id: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> UpstreamBuilder {
        let base = format!("https://login.microsoftonline.com/{tenant_id}");
        Self::builder(
            "Microsoft",
            format!("{base}/oauth2/v2.0/authorize"),
            format!("{base}/oauth2/v2.0/token"),
            client_id,
        )
        .client_secret(client_secret)
        .scopes(["openid", "email", "profile", "offline_access"])
        .identity(Identity::IdToken {
            issuer: format!("{base}/v2.0"),
            jwks_url: format!("{base}/discovery/v2.0/keys"),
        })
    }

    /// Any OpenID Connect issuer: endpoints and keys from its discovery document (fetched
    /// now), the user from the `id_token`.
    ///
    /// # Errors
    ///
    /// The discovery document cannot be fetched or lacks an endpoint.
    pub async fn oidc(
        issuer: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        http: &HttpClient,
    ) -> Result<UpstreamBuilder, ConfigError> {
        let url = Url::parse(issuer)
            .map_err(|e| ConfigError::url("upstream issuer", issuer, e.to_string()))?;
        let doc = crate::metadata::discover(http, &url)
            .await
            .map_err(|e| ConfigError::invalid("upstream issuer", e.to_string()))?;
        let m = doc.metadata;
        let need = |value: Option<String>, name: &'static str| {
            value.ok_or_else(|| {
                ConfigError::invalid("upstream issuer", format!("its metadata has no {name}"))
            })
        };
        let authorize = need(m.authorization_endpoint, "authorization_endpoint")?;
        let token = need(m.token_endpoint, "token_endpoint")?;
        let jwks = need(m.jwks_uri, "jwks_uri")?;
        let mut builder = Self::builder(
            url.host_str().unwrap_or("OpenID provider").to_owned(),
            authorize,
            token,
            client_id,
        );
        if let Some(revocation) = m.revocation_endpoint {
            builder = builder.revocation_endpoint(revocation);
        }
        Ok(builder
            .client_secret(client_secret)
            .identity(Identity::IdToken {
                issuer: m.issuer,
                jwks_url: jwks,
            })
            .http_client(http.clone()))
    }
}

impl UpstreamBuilder {
    /// Our client secret at the provider. An empty secret means none: a public client at the provider, PKCE only.
    pub fn client_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.client_secret = Some(secret.into()).filter(|s| !s.expose().is_empty());
        self
    }

    /// The scopes asked of the provider.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// An extra authorize parameter (`access_type=offline`, Auth0's `audience`, …).
    pub fn extra_authorize_param(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// How the user is identified.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The upstream authorization and token endpoints (for a local stand-in in tests).
    pub fn endpoints(
        mut self,
        authorization_endpoint: impl Into<String>,
        token_endpoint: impl Into<String>,
    ) -> Self {
        self.authorization_endpoint = authorization_endpoint.into();
        self.token_endpoint = token_endpoint.into();
        self
    }

    /// Client authentication at the provider's token and revocation endpoints: default
    /// `client_secret_post` (what mcp-use's proxy does), or `client_secret_basic`. Without a
    /// client secret the client is public and sends its `client_id` alone, whatever this says.
    pub fn token_auth(mut self, auth: ClientAuthMethod) -> Self {
        self.auth = auth;
        self
    }

    /// PKCE on the upstream leg (default on; every provider here supports it).
    pub fn pkce(mut self, on: bool) -> Self {
        self.pkce = on;
        self
    }

    /// The provider's token revocation endpoint (RFC 7009). When a grant is revoked here (by
    /// its client at `/revoke`, or because a used refresh token was replayed), the upstream
    /// tokens of that grant are revoked there too: the refresh token, then the access token,
    /// authenticated as our client. This runs after the local revocation and never delays or
    /// undoes it; a failure is logged. The sealed upstream tokens are deleted either way.
    /// Default: none (Google, Okta and OIDC issuers that publish one set it).
    pub fn revocation_endpoint(mut self, url: impl Into<String>) -> Self {
        self.revocation_endpoint = Some(url.into());
        self
    }

    /// Which of the provider's claims become the user's `sub`, `email`, `name`, groups and
    /// other claims in our tokens (see [`UserMapping`]; the default keeps the standard ones).
    pub fn user_mapping(mut self, mapping: UserMapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// GitHub preset: at sign-in, the user's organisations (`GET /user/orgs`) and teams
    /// (`GET /user/teams`) are fetched with their upstream token and become the `groups`
    /// claim: `org` for each organisation, `org/team` for each team (the team's slug), added
    /// to any groups the [mapping](Self::user_mapping) found. The sign-in log lists each group
    /// and the endpoint it came from. Adds the `read:org` scope (GitHub needs it to list
    /// teams and private memberships). A sign-in whose groups cannot be fetched fails, so a
    /// `forbid` on a team cannot be dodged by an API error. Up to 1,000 of each are read.
    /// For an access policy, name the claim: `group_claims = ["groups"]`. Default: off.
    pub fn github_groups(mut self) -> Self {
        self.github_groups = true;
        if !self.scopes.iter().any(|s| s == "read:org") {
            self.scopes.push("read:org".to_owned());
        }
        self
    }

    /// The HTTP client for the token exchange, keys and user API.
    pub fn http_client(mut self, http: HttpClient) -> Self {
        self.http = Some(http);
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// An endpoint is not an acceptable URL, or no identity source is set.
    pub fn build(self) -> Result<Upstream, ConfigError> {
        let http = match self.http {
            Some(http) => http,
            None => HttpClient::new()?,
        };
        let parse = |field: &'static str, value: &str| -> Result<Url, ConfigError> {
            let url =
                Url::parse(value).map_err(|e| ConfigError::url(field, value, e.to_string()))?;
            http.check_config_url(field, &url)?;
            Ok(url)
        };
        let authorization_endpoint = parse(
            "upstream authorization endpoint",
            &self.authorization_endpoint,
        )?;
        let token_endpoint = parse("upstream token endpoint", &self.token_endpoint)?;
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::missing(
                "upstream client id",
                "register an application at the provider and pass its client id",
            ));
        }
        let verifier = match self.identity {
            Some(Identity::IdToken { issuer, jwks_url }) => Verifier::IdToken(
                JwtVerifier::builder()
                    .issuer(issuer)
                    .jwks_url(jwks_url)
                    .http_client(http.clone())
                    .build()?,
            ),
            Some(Identity::UserInfo { url }) => {
                Verifier::UserInfo(parse("upstream user-info URL", &url)?)
            }
            Some(Identity::AccessToken(verifier)) => Verifier::AccessToken(verifier),
            None => {
                return Err(ConfigError::missing(
                    "upstream identity",
                    "say how the user is identified: Identity::IdToken (OIDC), Identity::UserInfo or Identity::AccessToken",
                ));
            }
        };
        let revocation_endpoint = self
            .revocation_endpoint
            .as_deref()
            .map(|url| parse("upstream revocation endpoint", url))
            .transpose()?;
        self.mapping.check()?;
        let github_groups = match (self.github_groups, &self.github_api) {
            (false, _) => None,
            (true, Some(api)) => Some(parse("GitHub API base", &format!("{api}/"))?),
            (true, None) => {
                return Err(ConfigError::invalid(
                    "github_groups",
                    "GitHub groups need the GitHub preset (Upstream::github or github_at)",
                ));
            }
        };
        Ok(Upstream {
            github_groups,
            revocation_endpoint,
            mapping: self.mapping,
            name: self.name,
            authorization_endpoint,
            token_endpoint,
            client: match self.client_secret {
                Some(secret) => {
                    ClientCredentials::new(self.client_id, secret).with_method(self.auth)
                }
                None => ClientCredentials::public(self.client_id),
            },
            scopes: self.scopes,
            extra: self.extra,
            pkce: self.pkce,
            verifier,
            http,
        })
    }
}

/// Which of the provider's claims become the user in our tokens: the `sub`, `email`, `name`,
/// `preferred_username`, `picture`, groups and roles, and any other claim you name. The
/// claims come from the verified `id_token`, the user API's answer, or the verified upstream
/// access token (see [`Identity`]).
///
/// The default is the standard mapping: `sub` from `sub` (the user API: `id`, then `sub`),
/// `email` from `email`, `name` from `name`, `preferred_username` from `preferred_username`
/// or `login`, `picture` from `picture` or `avatar_url`, `email_verified` when it is a
/// boolean; no groups or roles. Each setter replaces the source of one claim.
///
/// ```
/// use mcp_oauth::auth_server::UserMapping;
///
/// // Entra ID: the stable object id as subject, the UPN as e-mail, the group ids as groups.
/// let mapping = UserMapping::new().subject("oid").email("upn").groups("groups");
/// # let _ = mapping;
/// ```
///
/// Only string values are kept (numbers too for the subject: GitHub's user id); groups and
/// roles are a list of strings (a single string counts as one). Claims our tokens set
/// themselves (`iss`, `sub`, `aud`, `exp`, `scope`, `client_id`, …) cannot be a target of
/// [`claim`](Self::claim).
#[derive(Debug, Clone)]
#[must_use]
pub struct UserMapping {
    subject: Option<String>,
    email: Vec<String>,
    name: Vec<String>,
    username: Vec<String>,
    picture: Vec<String>,
    groups: Option<String>,
    roles: Option<String>,
    extra: Vec<(String, String)>,
}

impl Default for UserMapping {
    fn default() -> Self {
        Self {
            subject: None,
            email: strings(&["email"]),
            name: strings(&["name"]),
            username: strings(&["preferred_username", "login"]),
            picture: strings(&["picture", "avatar_url"]),
            groups: None,
            roles: None,
            extra: Vec::new(),
        }
    }
}

/// Claims our tokens set themselves: never taken from the provider.
const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "sid",
    "azp",
    "cnf",
    "act",
    "may_act",
    "typ",
    "auth_time",
    "acr",
    "amr",
];

impl UserMapping {
    /// The default mapping (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// The claim that is the user's stable subject (`sub` in our tokens), e.g. Entra's `oid`.
    pub fn subject(mut self, claim: impl Into<String>) -> Self {
        self.subject = Some(claim.into());
        self
    }

    /// The claim that becomes `email`, e.g. Entra's `upn`.
    pub fn email(mut self, claim: impl Into<String>) -> Self {
        self.email = vec![claim.into()];
        self
    }

    /// The claim that becomes `name`.
    pub fn name(mut self, claim: impl Into<String>) -> Self {
        self.name = vec![claim.into()];
        self
    }

    /// The claim that becomes `preferred_username`.
    pub fn username(mut self, claim: impl Into<String>) -> Self {
        self.username = vec![claim.into()];
        self
    }

    /// The claim that becomes `picture`.
    pub fn picture(mut self, claim: impl Into<String>) -> Self {
        self.picture = vec![claim.into()];
        self
    }

    /// The claim whose list becomes `groups` (default: none).
    pub fn groups(mut self, claim: impl Into<String>) -> Self {
        self.groups = Some(claim.into());
        self
    }

    /// The claim whose list becomes `roles`, which the bearer layer reads as
    /// `auth.user.roles` (default: none).
    pub fn roles(mut self, claim: impl Into<String>) -> Self {
        self.roles = Some(claim.into());
        self
    }

    /// Copies the provider's string claim `from` into our tokens as `to`.
    pub fn claim(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.extra.push((from.into(), to.into()));
        self
    }

    /// Refuses a target our tokens set themselves, and empty names.
    fn check(&self) -> Result<(), ConfigError> {
        let sources = self
            .subject
            .iter()
            .chain(&self.email)
            .chain(&self.name)
            .chain(&self.username)
            .chain(&self.picture)
            .chain(&self.groups)
            .chain(&self.roles)
            .chain(self.extra.iter().flat_map(|(from, to)| [from, to]));
        if sources.into_iter().any(|name| name.trim().is_empty()) {
            return Err(ConfigError::invalid(
                "user mapping",
                "a claim name is empty",
            ));
        }
        if let Some((_, to)) = self
            .extra
            .iter()
            .find(|(_, to)| RESERVED_CLAIMS.contains(&to.as_str()))
        {
            return Err(ConfigError::invalid(
                "user mapping",
                format!(
                    "{to:?} is set by this server in its tokens and cannot come from the provider; pick another name"
                ),
            ));
        }
        Ok(())
    }

    /// The user described by the provider's `claims` (from `source`, for errors); the subject
    /// from the configured claim, else the first of `default_subject` present.
    pub(crate) fn user(
        &self,
        claims: &Map<String, Value>,
        default_subject: &[&str],
        source: &str,
    ) -> Result<crate::auth_server::UserIdentity, ProxyError> {
        let names: Vec<&str> = match &self.subject {
            Some(name) => vec![name.as_str()],
            None => default_subject.to_vec(),
        };
        let subject = names
            .iter()
            .find_map(|name| match claims.get(*name) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| {
                ProxyError::Identity(format!("{source} has no {}", names.join(" or ")))
            })?;
        let text = |name: &String| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .map(|s| Value::String(s.to_owned()))
        };
        let mut out = Map::new();
        for (sources, to) in [
            (&self.email, "email"),
            (&self.name, "name"),
            (&self.username, "preferred_username"),
            (&self.picture, "picture"),
        ] {
            if let Some(value) = sources.iter().find_map(text) {
                out.insert(to.to_owned(), value);
            }
        }
        if let Some(verified) = claims.get("email_verified").filter(|v| v.is_boolean()) {
            out.insert("email_verified".into(), verified.clone());
        }
        for (from, to) in [(&self.groups, "groups"), (&self.roles, "roles")] {
            let list: Option<Vec<Value>> = match from.as_ref().and_then(|f| claims.get(f)) {
                Some(Value::Array(items)) => {
                    Some(items.iter().filter(|v| v.is_string()).cloned().collect())
                }
                Some(Value::String(s)) => Some(vec![Value::String(s.clone())]),
                _ => None,
            };
            if let Some(list) = list {
                out.insert(to.to_owned(), Value::Array(list));
            }
        }
        for (from, to) in &self.extra {
            if let Some(value) = text(from) {
                out.insert(to.clone(), value);
            }
        }
        Ok(crate::auth_server::UserIdentity {
            subject,
            claims: out,
        })
    }
}

/// Why the upstream leg failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The provider refused or could not be reached.
    #[error("the identity provider: {0}")]
    Upstream(String),
    /// The provider's answer did not identify a user.
    #[error("the user could not be identified: {0}")]
    Identity(String),
    /// No upstream tokens for this grant (not a proxy grant, revoked, or expired).
    #[error("no upstream tokens for this grant")]
    NoTokens,
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

fn form_or_json(body: &[u8]) -> Map<String, Value> {
    if let Ok(Value::Object(map)) = serde_json::from_slice(body) {
        return map;
    }
    // GitHub answers form-encoded unless asked for JSON.
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

/// A form POST to one of the provider's endpoints, authenticated as the upstream client
/// (a public client sends its `client_id` alone).
async fn client_post(
    upstream: &Upstream,
    url: &Url,
    form: &[(&str, &str)],
) -> Result<crate::fetch::Fetched, ProxyError> {
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    let auth = upstream.client.authenticate(&mut fields);
    upstream
        .http
        .post_form(url, &fields, auth)
        .await
        .map_err(|e| ProxyError::Upstream(e.kind.to_string()))
}

/// Revokes `token` at the provider's revocation endpoint (RFC 7009 §2.1). `Ok(false)` when the
/// provider has none.
pub(crate) async fn revoke_request(
    upstream: &Upstream,
    token: &str,
    hint: &str,
) -> Result<bool, ProxyError> {
    let Some(url) = &upstream.revocation_endpoint else {
        return Ok(false);
    };
    client_post(
        upstream,
        url,
        &[("token", token), ("token_type_hint", hint)],
    )
    .await?;
    Ok(true)
}

/// A request to the provider's token endpoint, authenticated as the upstream client.
pub(crate) async fn token_request(
    upstream: &Upstream,
    form: &[(&str, &str)],
) -> Result<Map<String, Value>, ProxyError> {
    let fetched = client_post(upstream, &upstream.token_endpoint, form).await?;
    let answer = form_or_json(&fetched.body);
    if let Some(error) = answer.get("error").and_then(Value::as_str) {
        return Err(ProxyError::Upstream(format!(
            "token endpoint error {error}"
        )));
    }
    Ok(answer)
}
