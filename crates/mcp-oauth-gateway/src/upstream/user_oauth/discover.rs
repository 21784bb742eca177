//! Where the upstream's authorization server is and how the gateway is its client: the
//! upstream's protected-resource metadata (RFC 9728: the `resource_metadata` of its 401
//! challenge, else the well-known URL), then the server's metadata (RFC 8414, or OpenID
//! Connect discovery), or endpoints configured statically; the gateway's client id is the
//! configured one, the URL of its Client ID Metadata Document when the server supports
//! those, or one registered dynamically (RFC 7591) and kept in the store for every instance.
//!
//! Every URL learnt from a document (not configured) must pass the [`NetGuard`] (a public
//! address) unless it is on the upstream's or the configured server's host, so an upstream
//! cannot point the gateway at an internal service; the request then goes to the address the
//! guard checked ([`super::pinned`]), never to a second DNS answer.

use std::sync::Arc;
use std::time::Duration;

use mcp_oauth::auth_server::store::{Kind, Store};
use mcp_oauth::challenge::parse_www_authenticate;
use mcp_oauth::metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};
use mcp_oauth::net_guard::NetGuard;
use serde::{Deserialize, Serialize};
use url::Url;

use super::token::ClientAuth;
use super::{digest, hex, is_https_or_loopback};
use crate::vault::Vault;

/// What the gateway knows of the upstream's authorization server, once discovered.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The issuer (for RFC 9207's `iss` check), when known.
    pub(crate) issuer: Option<String>,
    pub(crate) authorization_endpoint: Url,
    pub(crate) token_endpoint: Url,
    pub(crate) client: ClientAuth,
    /// The scopes to ask for when none are configured: the resource's `scopes_supported`.
    pub(crate) scopes: Vec<String>,
    /// Whether the server sends `iss` in authorization responses (RFC 9207).
    pub(crate) iss_parameter: bool,
    /// The guard the token endpoint passed, when it was learnt from a document (its
    /// requests are pinned to the address the guard gives); `None` when configured.
    pub(crate) guard: Option<NetGuard>,
}

/// How the upstream's authorization server is found.
#[derive(Debug, Clone)]
pub(crate) struct Discovery {
    pub(crate) authorization_server: Option<Url>,
    pub(crate) authorization_endpoint: Option<Url>,
    pub(crate) token_endpoint: Option<Url>,
    pub(crate) client: Option<ClientAuth>,
    /// The gateway's public URL (its Client ID Metadata Document and the redirect URI are
    /// under it).
    pub(crate) public: super::PublicUrl,
    /// The upstream's name (in the redirect URI).
    pub(crate) upstream: String,
    pub(crate) client_name: String,
}

/// A dynamic registration, as the server answered it.
#[derive(Deserialize)]
struct Registration {
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
}

/// A dynamic registration as kept in the store: a secret sealed with the vault's key, bound
/// to the record's key (it opens there only).
#[derive(Serialize, Deserialize)]
struct Kept {
    client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_secret: Option<String>,
    /// A secret in the clear, as earlier versions kept it: read (and sealed again), never
    /// written.
    #[serde(default, skip_serializing)]
    client_secret: Option<String>,
}

/// What a kept registration gives.
enum Found {
    /// The client, and whether its record must be written again (sealed).
    Client(ClientAuth, bool),
    /// A record that does not open (another key) or decode: registered again, and replaced.
    Stale,
}

fn refused(why: impl Into<String>) -> crate::GatewayError {
    crate::GatewayError::Unavailable(format!(
        "the upstream's authorization server: {}",
        why.into()
    ))
}

impl Discovery {
    /// The redirect URI of the connect flow.
    pub(crate) fn redirect_uri(&self) -> String {
        format!(
            "{}{}",
            self.public.get(),
            super::callback_path(&self.upstream)
        )
    }

    /// The gateway's Client ID Metadata Document URL, when its public URL is known.
    fn client_metadata_url(&self) -> Option<String> {
        let public = self.public.get();
        (!public.is_empty()).then(|| format!("{public}{}", super::CLIENT_METADATA_PATH))
    }

    /// Finds the endpoints and the client id for the upstream `resource`.
    pub(crate) async fn resolve(
        &self,
        upstream: &str,
        resource: &Url,
        store: &Arc<dyn Store>,
        vault: &Vault,
    ) -> Result<Resolved, crate::GatewayError> {
        let mut guard = NetGuard::new();
        for url in std::iter::once(resource).chain(self.authorization_server.as_ref()) {
            if let Some(host) = url.host_str() {
                guard = guard.allow_host(format!(
                    "{host}:{}",
                    url.port_or_known_default().unwrap_or(443)
                ));
            }
        }
        if let (Some(authorization_endpoint), Some(token_endpoint)) =
            (&self.authorization_endpoint, &self.token_endpoint)
        {
            let client = self
                .client
                .clone()
                .ok_or_else(|| refused("static endpoints need a configured client_id"))?;
            return Ok(Resolved {
                issuer: self.authorization_server.as_ref().map(|u| u.to_string()),
                authorization_endpoint: authorization_endpoint.clone(),
                token_endpoint: token_endpoint.clone(),
                client,
                scopes: Vec::new(),
                iss_parameter: false,
                guard: None,
            });
        }
        let (issuer, scopes) = match &self.authorization_server {
            Some(issuer) => (issuer.clone(), Vec::new()),
            None => {
                let prm = protected_resource(&guard, resource).await?;
                let issuer = prm.authorization_servers.first().ok_or_else(|| {
                    refused(
                        "the upstream's protected-resource metadata names no authorization server",
                    )
                })?;
                let issuer =
                    Url::parse(issuer).map_err(|_| refused(format!("{issuer:?} is not a URL")))?;
                (issuer, prm.scopes_supported)
            }
        };
        let metadata = authorization_server(&guard, &issuer).await?;
        let endpoint = |found: Option<&String>, configured: &Option<Url>, name: &str| {
            if let Some(url) = configured {
                return Ok(url.clone());
            }
            let found = found.ok_or_else(|| refused(format!("its metadata has no {name}")))?;
            let url = Url::parse(found).map_err(|_| refused(format!("its {name} is not a URL")))?;
            if !is_https_or_loopback(&url) {
                return Err(refused(format!(
                    "its {name} {url} is not https (plain http only to a loopback host)"
                )));
            }
            Ok(url)
        };
        let authorization_endpoint = endpoint(
            metadata.authorization_endpoint.as_ref(),
            &self.authorization_endpoint,
            "authorization_endpoint",
        )?;
        let token_endpoint = endpoint(
            metadata.token_endpoint.as_ref(),
            &self.token_endpoint,
            "token_endpoint",
        )?;
        guarded(&guard, &token_endpoint).await?;
        if !metadata.supports_pkce_s256() {
            return Err(refused(
                "it does not advertise PKCE with S256 (code_challenge_methods_supported)",
            ));
        }
        let client = match (&self.client, &self.client_metadata_url()) {
            (Some(client), _) => client.clone(),
            (None, Some(url)) if metadata.client_id_metadata_document_supported == Some(true) => {
                ClientAuth::public(url.clone())
            }
            (None, _) => {
                self.register(&guard, &metadata, upstream, store, vault)
                    .await?
            }
        };
        Ok(Resolved {
            issuer: Some(metadata.issuer.clone()),
            authorization_endpoint,
            token_endpoint,
            client,
            scopes,
            iss_parameter: metadata.authorization_response_iss_parameter_supported == Some(true),
            guard: Some(guard),
        })
    }

    /// The gateway's registration at the server: the one kept in the store, else a new one
    /// (RFC 7591), kept there for every instance (the first one stored wins). A client secret
    /// the server insists on is sealed with the vault's key in the store.
    async fn register(
        &self,
        guard: &NetGuard,
        metadata: &AuthorizationServerMetadata,
        upstream: &str,
        store: &Arc<dyn Store>,
        vault: &Vault,
    ) -> Result<ClientAuth, crate::GatewayError> {
        let key = format!(
            "user-oauth-client:{upstream}:{}",
            hex(&digest(&format!(
                "{}\u{0}{}",
                metadata.issuer,
                self.redirect_uri()
            )))
        );
        let stored = store
            .get(Kind::UpstreamTokens, &key)
            .await
            .map_err(|e| refused(e.to_string()))?;
        let mut stale = false;
        if let Some(stored) = stored {
            match kept(&stored.data, &key, vault) {
                Found::Client(client, false) => return Ok(client),
                Found::Client(client, true) => {
                    // An earlier version's record, with the secret in the clear: sealed now.
                    let data = seal(
                        &client.client_id,
                        client.secret_text().as_deref(),
                        &key,
                        vault,
                    )?;
                    store
                        .put(Kind::UpstreamTokens, &key, data, None)
                        .await
                        .map_err(|e| refused(e.to_string()))?;
                    return Ok(client);
                }
                Found::Stale => stale = true,
            }
        }
        let endpoint = metadata.registration_endpoint.as_deref().ok_or_else(|| {
            refused("no client_id is configured, it supports no Client ID Metadata Documents (or the gateway has no public URL), and it has no registration_endpoint")
        })?;
        let endpoint =
            Url::parse(endpoint).map_err(|_| refused("its registration_endpoint is not a URL"))?;
        let addr = pinned(guard, &endpoint).await?;
        let request = serde_json::json!({
            "client_name": self.client_name,
            "redirect_uris": [self.redirect_uri()],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        let response = mcp_oauth::net_guard::pinned_client(&endpoint, addr)
            .timeout(super::pinned::FETCH_TIMEOUT)
            .build()
            .map_err(|e| refused(e.to_string()))?
            .post(endpoint.clone())
            .json(&request)
            .send()
            .await
            .map_err(|e| refused(format!("registration failed: {}", e.without_url())))?;
        let status = response.status();
        let body = crate::upstream::body::read_at_most(response, 64 * 1024)
            .await
            .map_err(|e| refused(format!("registration failed: {e}")))?;
        if !status.is_success() {
            return Err(refused(format!(
                "its registration endpoint answered {status}"
            )));
        }
        let registration: Registration = serde_json::from_slice(&body)
            .map_err(|_| refused("its registration answer has no client_id"))?;
        let data = seal(
            &registration.client_id,
            registration.client_secret.as_deref(),
            &key,
            vault,
        )?;
        let won = if stale {
            // The kept one does not open here (another key): this one replaces it.
            store
                .put(Kind::UpstreamTokens, &key, data, None)
                .await
                .map_err(|e| refused(e.to_string()))?;
            true
        } else {
            store
                .put_if_absent(Kind::UpstreamTokens, &key, data, None)
                .await
                .map_err(|e| refused(e.to_string()))?
        };
        if !won
            && let Some(stored) = store
                .get(Kind::UpstreamTokens, &key)
                .await
                .map_err(|e| refused(e.to_string()))?
            && let Found::Client(client, _) = kept(&stored.data, &key, vault)
        {
            return Ok(client);
        }
        tracing::info!(target: "mcp_oauth_gateway::upstream", upstream, client_id = %registration.client_id, "registered the gateway at the upstream's authorization server");
        Ok(match registration.client_secret {
            Some(secret) => ClientAuth::basic(registration.client_id, secret),
            None => ClientAuth::public(registration.client_id),
        })
    }
}

/// A registration as kept under `key`: the client id, and the secret sealed for `key`.
fn seal(
    client_id: &str,
    secret: Option<&str>,
    key: &str,
    vault: &Vault,
) -> Result<Vec<u8>, crate::GatewayError> {
    let sealed_secret = secret
        .map(|s| vault.seal_own(s.as_bytes(), key))
        .transpose()
        .map_err(|e| refused(e.to_string()))?;
    serde_json::to_vec(&Kept {
        client_id: client_id.to_owned(),
        sealed_secret,
        client_secret: None,
    })
    .map_err(|e| refused(e.to_string()))
}

/// The client of a registration kept under `key`.
fn kept(bytes: &[u8], key: &str, vault: &Vault) -> Found {
    let Ok(kept) = serde_json::from_slice::<Kept>(bytes) else {
        return Found::Stale;
    };
    match (kept.sealed_secret, kept.client_secret) {
        (Some(sealed), _) => match vault.open_own(&sealed, key) {
            Ok(secret) => match String::from_utf8(secret.expose().to_vec()) {
                Ok(secret) => Found::Client(ClientAuth::basic(kept.client_id, secret), false),
                Err(_) => Found::Stale,
            },
            Err(_) => Found::Stale,
        },
        (None, Some(clear)) => Found::Client(ClientAuth::basic(kept.client_id, clear), true),
        (None, None) => Found::Client(ClientAuth::public(kept.client_id), false),
    }
}

async fn guarded(guard: &NetGuard, url: &Url) -> Result<(), crate::GatewayError> {
    pinned(guard, url).await.map(|_| ())
}

/// The address `url` may be reached at, checked by the guard: a request made there (a
/// client pinned to it) cannot be sent elsewhere by a second DNS answer.
async fn pinned(guard: &NetGuard, url: &Url) -> Result<std::net::SocketAddr, crate::GatewayError> {
    super::pinned::check(guard, url).await.map_err(refused)
}

/// The upstream's protected-resource metadata: at the `resource_metadata` of its 401
/// challenge, else at the well-known URL. Its `resource` must be the upstream.
async fn protected_resource(
    guard: &NetGuard,
    resource: &Url,
) -> Result<ProtectedResourceMetadata, crate::GatewayError> {
    let mut candidates = Vec::new();
    if let Some(url) = challenge_metadata_url(resource).await {
        candidates.push(url);
    }
    if let Ok(parsed) = mcp_oauth::ResourceUrl::parse_insecure(resource.as_str())
        && let Ok(url) = Url::parse(&parsed.metadata_url())
        && !candidates.contains(&url)
    {
        candidates.push(url);
    }
    let mut last = refused("the upstream publishes no protected-resource metadata");
    for url in candidates {
        match super::pinned::get_json(guard, &url).await {
            Ok(body) => {
                let prm: ProtectedResourceMetadata = serde_json::from_slice(&body)
                    .map_err(|_| refused(format!("{url} is not protected-resource metadata")))?;
                if !same_resource(&prm.resource, resource) {
                    return Err(refused(format!(
                        "{url} describes {:?}, not the upstream {resource}",
                        prm.resource
                    )));
                }
                return Ok(prm);
            }
            Err(err) => last = refused(format!("{url}: {err}")),
        }
    }
    Err(last)
}

fn same_resource(a: &str, b: &Url) -> bool {
    Url::parse(a).is_ok_and(|a| {
        a.scheme() == b.scheme()
            && a.host_str() == b.host_str()
            && a.port_or_known_default() == b.port_or_known_default()
            && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
    })
}

/// The `resource_metadata` of the upstream's answer to an unauthenticated request.
async fn challenge_metadata_url(resource: &Url) -> Option<Url> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()?;
    let response = client
        .post(resource.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":0,"method":"ping"}"#)
        .send()
        .await
        .ok()?;
    if response.status() != http::StatusCode::UNAUTHORIZED {
        return None;
    }
    response
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_www_authenticate)
        .find_map(|c| c.param("resource_metadata").map(str::to_owned))
        .and_then(|u| Url::parse(&u).ok())
}

/// The server's metadata, at the first of its discovery URLs that does not answer 4xx (RFC
/// 8414 then OpenID Connect, as [`mcp_oauth::metadata::discover`] orders them); its `issuer`
/// must be the one asked for (RFC 8414 §3.3).
async fn authorization_server(
    guard: &NetGuard,
    issuer: &Url,
) -> Result<AuthorizationServerMetadata, crate::GatewayError> {
    let mut last = refused(format!("{issuer} publishes no metadata"));
    let mut found = None;
    for url in mcp_oauth::resource::authorization_server_metadata_urls(issuer) {
        match super::pinned::get_json(guard, &url).await {
            Ok(body) => {
                let metadata: AuthorizationServerMetadata = serde_json::from_slice(&body)
                    .map_err(|e| refused(format!("{url} is not server metadata: {e}")))?;
                found = Some(metadata);
                break;
            }
            Err(err @ super::pinned::Failure::Status(400..=499)) => {
                last = refused(format!("{url}: {err}"));
            }
            Err(err) => return Err(refused(format!("{url}: {err}"))),
        }
    }
    let metadata = found.ok_or(last)?;
    let same = Url::parse(&metadata.issuer)
        .is_ok_and(|i| i.as_str().trim_end_matches('/') == issuer.as_str().trim_end_matches('/'));
    if !same {
        return Err(refused(format!(
            "its metadata names the issuer {:?}, not {issuer}",
            metadata.issuer
        )));
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use mcp_oauth::auth_server::MemoryStore;

    use super::*;

    #[test]
    fn a_kept_secret_is_sealed_for_its_record_and_a_clear_one_is_sealed_again() {
        let vault = Vault::new(Arc::new(MemoryStore::new()), &[3; 32]).expect("vault");
        let data = seal("c1", Some("s3cret"), "record-a", &vault).expect("sealed");
        assert!(!String::from_utf8_lossy(&data).contains("s3cret"));
        match kept(&data, "record-a", &vault) {
            Found::Client(client, false) => {
                assert_eq!(client.client_id(), "c1");
                assert_eq!(client.secret_text().as_deref(), Some("s3cret"));
            }
            _ => panic!("opens where it was kept"),
        }
        // Moved to another record, or under another key: it does not open.
        assert!(matches!(kept(&data, "record-b", &vault), Found::Stale));
        let other = Vault::new(Arc::new(MemoryStore::new()), &[4; 32]).expect("vault");
        assert!(matches!(kept(&data, "record-a", &other), Found::Stale));
        // An earlier version's record in the clear: used, and to be sealed again.
        let clear = br#"{"client_id":"c1","client_secret":"s3cret"}"#;
        assert!(matches!(
            kept(clear, "record-a", &vault),
            Found::Client(_, true)
        ));
        let public = br#"{"client_id":"c2"}"#;
        match kept(public, "record-a", &vault) {
            Found::Client(client, false) => assert_eq!(client.secret_text(), None),
            _ => panic!("a public client"),
        }
        assert!(matches!(
            kept(b"not json", "record-a", &vault),
            Found::Stale
        ));
    }
}
