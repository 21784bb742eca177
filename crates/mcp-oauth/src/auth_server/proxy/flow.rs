//! The browser leg of proxy mode: to the provider with a fresh state, back at the callback,
//! the code exchanged and the user identified, then our code (or first the consent page).

use std::collections::HashMap;
use std::time::Duration;

use aws_lc_rs::digest;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::consent::{ask_consent, has_consent};
use super::state::ProxySignIn;
use super::tokens::{UpstreamTokens, seal_tokens, store_tokens, tokens_from};
use crate::auth_server::cookies::{STATE_BINDING, append_cookie, binding_cookie, is_bound};
use crate::auth_server::http::{hash_hex, random_token};
use crate::auth_server::login::UserIdentity;
use crate::auth_server::pages::error_page;
use crate::auth_server::protocol::ErrorCode;
use crate::auth_server::respond::{approve, found, redirect_error};
use crate::auth_server::server::AuthServer;
use crate::auth_server::store::{AuthRequestRecord, EntryKind};
use crate::auth_server::upstream::{CALLBACK_PATH, ProxyError, Upstream, Verifier, token_request};
use crate::claims::{Claims, check_times, now_unix};
use crate::fetch::RequestAuth;
use crate::jose::jws::b64;
use crate::verify::TokenVerifier;

/// A pending upstream authorization, kept server-side under the hash of its `state`.
#[derive(Debug, Serialize, Deserialize)]
struct Transaction {
    request: AuthRequestRecord,
    verifier: String,
}

fn pkce_challenge(verifier: &str) -> String {
    b64(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
}

/// Sends the browser to the provider, remembering the request under a fresh state, and
/// binds that state to this browser with a cookie.
pub(crate) async fn start(
    server: &AuthServer,
    proxy: &ProxySignIn,
    request: AuthRequestRecord,
) -> Response {
    let upstream = &proxy.upstream;
    let state = random_token();
    let verifier = random_token();
    let record = Transaction {
        request,
        verifier: verifier.clone(),
    };
    let expires =
        now_unix() + i64::try_from(server.inner.config.lifetimes.request.as_secs()).unwrap_or(600);
    if let Err(err) = server
        .inner
        .store
        .put_entry(EntryKind::Transaction, &hash_hex(&state), &record, expires)
        .await
    {
        return err.into_page();
    }
    let mut url = upstream.authorization_endpoint.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code");
        q.append_pair("client_id", upstream.client.client_id());
        q.append_pair("redirect_uri", &server.endpoint(CALLBACK_PATH));
        q.append_pair("state", &state);
        if !upstream.scopes.is_empty() {
            q.append_pair("scope", &upstream.scopes.join(" "));
        }
        if upstream.pkce {
            q.append_pair("code_challenge", &pkce_challenge(&verifier));
            q.append_pair("code_challenge_method", "S256");
        }
        for (k, v) in &upstream.extra {
            q.append_pair(k, v);
        }
    }
    let mut response = found(url.as_str());
    append_cookie(
        &mut response,
        &binding_cookie(server, &proxy.sealer, STATE_BINDING, &state, true),
    );
    response
}

/// `GET /oauth/callback`: the provider's answer.
pub(crate) async fn callback(
    server: &AuthServer,
    proxy: &ProxySignIn,
    headers: &HeaderMap,
    query: Option<String>,
) -> Response {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let Some(state) = params.get("state") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The provider's answer has no state.",
        );
    };
    let taken = server
        .inner
        .store
        .take_entry::<Transaction>(EntryKind::Transaction, &hash_hex(state))
        .await;
    let taken = match taken {
        Ok(taken) => taken,
        Err(err) => return err.into_page(),
    };
    let Some(tx) = taken else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in expired or was already completed. Start again from the application.",
        );
    };
    // The state is consumed whatever follows: an answer that arrives in another browser
    // (the upstream code of whoever signed in there) can never be completed later.
    let mut response = if is_bound(server, &proxy.sealer, headers, STATE_BINDING, state) {
        complete(server, proxy, tx, &params).await
    } else {
        tracing::warn!(target: "mcp_oauth::proxy", client_id = %tx.request.client_id, "upstream callback refused: the sign-in was started in another browser");
        error_page(
            StatusCode::FORBIDDEN,
            "This sign-in was started in another browser, or this browser did not keep its \
             cookie. Nothing was shared. Start again from the application, in this browser.",
        )
    };
    append_cookie(
        &mut response,
        &binding_cookie(server, &proxy.sealer, STATE_BINDING, state, false),
    );
    response
}

/// The callback of a transaction started in this browser: the code exchanged upstream, the
/// user identified, then our code, or first the consent page when this user never allowed
/// this client.
async fn complete(
    server: &AuthServer,
    proxy: &ProxySignIn,
    tx: Transaction,
    params: &HashMap<String, String>,
) -> Response {
    let request = tx.request;
    let fail = |error: ErrorCode, description: &str| {
        redirect_error(
            server,
            &request.redirect_uri,
            request.state.as_deref(),
            error,
            description,
        )
    };
    if let Some(error) = params.get("error") {
        tracing::info!(target: "mcp_oauth::proxy", %error, "the provider refused the sign-in");
        let code = if error == "access_denied" {
            ErrorCode::AccessDenied
        } else {
            ErrorCode::ServerError
        };
        return fail(code, "the identity provider did not sign the user in");
    }
    let Some(code) = params.get("code") else {
        return fail(
            ErrorCode::ServerError,
            "the identity provider's answer has no code",
        );
    };
    let (tokens, user) = match exchange(server, &proxy.upstream, code, &tx.verifier).await {
        Ok(result) => result,
        Err(err) => {
            tracing::warn!(target: "mcp_oauth::proxy", error = %err, "upstream sign-in failed");
            return fail(
                ErrorCode::ServerError,
                "the sign-in at the identity provider failed",
            );
        }
    };
    let family = random_token();
    let sealed = match seal_tokens(proxy, &family, &tokens) {
        Ok(sealed) => sealed,
        Err(err) => {
            tracing::error!(target: "mcp_oauth::proxy", error = %err, "cannot seal upstream tokens");
            return fail(ErrorCode::TemporarilyUnavailable, "try again later");
        }
    };
    tracing::info!(target: "mcp_oauth::proxy", client_id = %request.client_id, subject = %user.subject, "upstream sign-in completed");
    if !server.inner.config.auto_approve && !has_consent(server, &user.subject, &request).await {
        return ask_consent(server, proxy, request, user, family, sealed).await;
    }
    if let Err(err) = store_tokens(server, &family, sealed).await {
        tracing::error!(target: "mcp_oauth::proxy", error = %err, "cannot store upstream tokens");
        return fail(ErrorCode::TemporarilyUnavailable, "try again later");
    }
    approve(server, &request, user, Some(family)).await
}

async fn exchange(
    server: &AuthServer,
    upstream: &Upstream,
    code: &str,
    verifier: &str,
) -> Result<(UpstreamTokens, UserIdentity), ProxyError> {
    let redirect_uri = server.endpoint(CALLBACK_PATH);
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
    ];
    if upstream.pkce {
        form.push(("code_verifier", verifier));
    }
    let answer = token_request(upstream, &form).await?;
    let tokens = tokens_from(&answer, None)?;
    let user = identify(upstream, &answer, &tokens.access_token).await?;
    Ok((tokens, user))
}

async fn identify(
    upstream: &Upstream,
    answer: &Map<String, Value>,
    access_token: &str,
) -> Result<UserIdentity, ProxyError> {
    match &upstream.verifier {
        Verifier::IdToken(verifier) => {
            let id_token = answer
                .get("id_token")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ProxyError::Identity(
                        "no id_token in the answer (is the openid scope asked?)".into(),
                    )
                })?;
            let claims = verifier
                .verify(id_token)
                .await
                .map_err(|e| ProxyError::Identity(e.to_string()))?;
            let for_us = claims
                .audiences()
                .map_err(|e| ProxyError::Identity(e.to_string()))?
                .contains(&upstream.client.client_id());
            if !for_us {
                return Err(ProxyError::Identity(
                    "the id_token was issued to another client".into(),
                ));
            }
            check_times(&claims, now_unix(), Duration::from_secs(60), true)
                .map_err(|e| ProxyError::Identity(e.to_string()))?;
            upstream
                .mapping
                .user(claims.as_map(), &["sub"], "the id_token")
        }
        Verifier::UserInfo(url) => {
            let fetched = upstream
                .http
                .get_json_with(url, RequestAuth::Bearer(access_token))
                .await
                .map_err(|e| ProxyError::Identity(format!("user API: {}", e.kind)))?;
            let Ok(Value::Object(user)) = serde_json::from_slice::<Value>(&fetched.body) else {
                return Err(ProxyError::Identity(
                    "the user API answer is not a JSON object".into(),
                ));
            };
            let mut identity =
                upstream
                    .mapping
                    .user(&user, &["id", "sub"], "the user API answer")?;
            if let Some(api) = &upstream.github_groups {
                super::github_groups::add(upstream, api, access_token, &mut identity).await?;
            }
            Ok(identity)
        }
        Verifier::AccessToken(verifier) => {
            let claims: Claims = verifier
                .verify(access_token)
                .await
                .map_err(|e| ProxyError::Identity(e.to_string()))?;
            upstream
                .mapping
                .user(claims.as_map(), &["sub"], "the access token")
        }
    }
}
