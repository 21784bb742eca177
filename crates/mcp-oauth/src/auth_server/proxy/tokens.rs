//! The upstream tokens of a proxy grant: sealed (AES-256-GCM, bound to the grant) in the
//! store, opened and refreshed at the provider when tool code asks for them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::state::ProxySignIn;
use crate::auth_server::server::AuthServer;
use crate::auth_server::store::EntryKind;
use crate::auth_server::upstream::{ProxyError, revoke_request, token_request};
use crate::claims::now_unix;
use crate::secret::Secret;

/// How a grant's upstream tokens are stored: sealed (AES-GCM, bound to the grant family).
#[derive(Serialize, Deserialize)]
pub(crate) struct SealedTokens {
    sealed: String,
}

/// What the proxy keeps of the upstream tokens, sealed.
#[derive(Serialize, Deserialize)]
pub(crate) struct UpstreamTokens {
    pub(crate) access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

pub(crate) fn tokens_from(
    answer: &Map<String, Value>,
    previous_refresh: Option<String>,
) -> Result<UpstreamTokens, ProxyError> {
    let access_token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| ProxyError::Upstream("no access_token in the answer".into()))?
        .to_owned();
    let expires_at = answer
        .get("expires_in")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .map(|secs| now_unix() + secs);
    let refresh_token = answer
        .get("refresh_token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or(previous_refresh);
    Ok(UpstreamTokens {
        access_token,
        refresh_token,
        expires_at,
    })
}

/// The upstream tokens sealed for their grant family.
pub(crate) fn seal_tokens(
    proxy: &ProxySignIn,
    family: &str,
    tokens: &UpstreamTokens,
) -> Result<String, ProxyError> {
    let plain = serde_json::to_vec(tokens).map_err(|e| ProxyError::Store(e.to_string()))?;
    proxy
        .sealer
        .seal(&plain, family)
        .ok_or_else(|| ProxyError::Store("sealing failed".into()))
}

async fn save_tokens(
    server: &AuthServer,
    proxy: &ProxySignIn,
    family: &str,
    tokens: &UpstreamTokens,
) -> Result<(), ProxyError> {
    let sealed = seal_tokens(proxy, family, tokens)?;
    store_tokens(server, family, sealed).await
}

pub(crate) async fn store_tokens(
    server: &AuthServer,
    family: &str,
    sealed: String,
) -> Result<(), ProxyError> {
    let until = now_unix()
        + i64::try_from(server.inner.config.lifetimes.refresh_token.as_secs())
            .unwrap_or(i64::MAX / 2);
    server
        .inner
        .store
        .put_entry(
            EntryKind::UpstreamTokens,
            family,
            &SealedTokens { sealed },
            until,
        )
        .await
        .map_err(|e| ProxyError::Store(e.to_string()))
}

/// The upstream access token of a grant, refreshed at the provider first when it expired
/// (and a refresh token was issued). Concurrent calls for one grant in this process refresh
/// once: the others wait and read the renewed tokens.
pub(crate) async fn refreshed_token(
    server: &AuthServer,
    proxy: &ProxySignIn,
    family: &str,
) -> Result<Secret, ProxyError> {
    let tokens = load_tokens(server, proxy, family).await?;
    if is_fresh(&tokens) {
        return Ok(Secret::from(tokens.access_token));
    }
    let lock = proxy
        .refreshes
        .get_with(family.to_owned(), || Arc::new(tokio::sync::Mutex::new(())));
    let _guard = lock.lock().await;
    // Another call may have refreshed while this one waited.
    let tokens = load_tokens(server, proxy, family).await?;
    if is_fresh(&tokens) {
        return Ok(Secret::from(tokens.access_token));
    }
    let Some(refresh) = tokens.refresh_token.clone() else {
        return Err(ProxyError::Upstream(
            "the upstream token expired and the provider issued no refresh token: the user signs in again".into(),
        ));
    };
    let answer = token_request(
        &proxy.upstream,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await?;
    let renewed = tokens_from(&answer, Some(refresh))?;
    save_tokens(server, proxy, family, &renewed).await?;
    Ok(Secret::from(renewed.access_token))
}

/// Valid for at least 30 more seconds, or without a stated expiry (GitHub OAuth app tokens).
fn is_fresh(tokens: &UpstreamTokens) -> bool {
    tokens.expires_at.is_none_or(|exp| exp > now_unix() + 30)
}

/// A revoked grant: its sealed upstream tokens are taken out of the store (single use: of two
/// concurrent revocations, one gets them) and revoked at the provider's revocation endpoint,
/// when it has one (RFC 7009): the refresh token first (which ends the whole upstream grant
/// at most providers), then the access token. Failures are logged; nothing is retried.
pub(crate) async fn revoke_upstream(server: &AuthServer, proxy: &ProxySignIn, family: &str) {
    let taken = match server
        .inner
        .store
        .take_entry::<SealedTokens>(EntryKind::UpstreamTokens, family)
        .await
    {
        Ok(Some(entry)) => entry,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(target: "mcp_oauth::proxy", error = %err, "cannot take the upstream tokens of a revoked grant");
            return;
        }
    };
    let tokens = match open_tokens(proxy, family, &taken) {
        Ok(tokens) => tokens,
        Err(err) => {
            tracing::warn!(target: "mcp_oauth::proxy", error = %err, "cannot open the upstream tokens of a revoked grant");
            return;
        }
    };
    let mut pending = Vec::new();
    if let Some(refresh) = &tokens.refresh_token {
        pending.push((refresh.as_str(), "refresh_token"));
    }
    pending.push((tokens.access_token.as_str(), "access_token"));
    for (token, hint) in pending {
        match revoke_request(&proxy.upstream, token, hint).await {
            Ok(true) => {
                tracing::info!(target: "mcp_oauth::proxy", provider = %proxy.upstream.name, hint, "upstream token revoked");
            }
            Ok(false) => {
                tracing::debug!(target: "mcp_oauth::proxy", provider = %proxy.upstream.name, "the provider has no revocation endpoint; upstream tokens deleted here only");
                return;
            }
            Err(err) => {
                tracing::warn!(target: "mcp_oauth::proxy", provider = %proxy.upstream.name, hint, error = %err, "upstream revocation failed; the grant is revoked here");
            }
        }
    }
}

/// The sealed upstream tokens of a live grant, opened.
async fn load_tokens(
    server: &AuthServer,
    proxy: &ProxySignIn,
    family: &str,
) -> Result<UpstreamTokens, ProxyError> {
    if server
        .inner
        .store
        .is_family_revoked(family)
        .await
        .map_err(|e| ProxyError::Store(e.to_string()))?
    {
        return Err(ProxyError::NoTokens);
    }
    let entry = server
        .inner
        .store
        .entry::<SealedTokens>(EntryKind::UpstreamTokens, family)
        .await
        .map_err(|e| ProxyError::Store(e.to_string()))?
        .ok_or(ProxyError::NoTokens)?;
    open_tokens(proxy, family, &entry)
}

/// A stored entry of upstream tokens, opened (bound to its grant family).
fn open_tokens(
    proxy: &ProxySignIn,
    family: &str,
    entry: &SealedTokens,
) -> Result<UpstreamTokens, ProxyError> {
    let plain = proxy.sealer.open(&entry.sealed, family).ok_or_else(|| {
        ProxyError::Store("the sealed tokens do not open (another encryption key?)".into())
    })?;
    serde_json::from_slice(&plain).map_err(|e| ProxyError::Store(e.to_string()))
}
