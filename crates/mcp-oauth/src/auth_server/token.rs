//! The token endpoint (OAuth 2.1 §3.2): the three grants, and DPoP (RFC 9449 §5) when on:
//! a request with a valid `DPoP` proof gets an access token bound to the proof's key
//! (`cnf.jkt`, `token_type: DPoP`); a public client's refresh token is bound to that key,
//! and a bound code (`dpop_jkt`) or refresh token is honoured only with a proof by its key.
//! The JWT-bearer grant (RFC 7523) is in [`jwt_bearer`](super::jwt_bearer).

use std::time::Duration;

use aws_lc_rs::digest;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use serde_json::Map;
use subtle::ConstantTimeEq as _;

use super::clients::{authenticate_client, form_params, resolve_resource};
use super::http::{TokenError, err, hash_hex, random_token};
use super::issue::{check_binding, dpop_proof, token_response};
use super::jwt_bearer;
use super::mint::{Grant, mint_bound};
use super::protocol::{ErrorCode, GrantType, TokenRequest};
use super::server::AuthServer;
use super::store::{ClientRecord, CodeRecord, Redeemed, RefreshRecord, StoreError};
use crate::claims::now_unix;
use crate::dpop::DpopProof;
use crate::jose::jws::b64;
use crate::scope::parse_scope_list;

/// RFC 7636 §4.6: `BASE64URL(SHA256(verifier)) == challenge`, in constant time. The verifier
/// must be 43 to 128 unreserved characters.
pub(crate) fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let valid = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let computed = b64(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref());
    valid && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// A store failure: the one answer ([`StoreError::http`]), never `invalid_grant`.
impl From<StoreError> for TokenError {
    fn from(failure: StoreError) -> Self {
        let (status, error) = failure.logged();
        Self {
            status,
            error: ErrorCode::of_store(error),
            description: "try again later".into(),
            basic_challenge: false,
            dpop_nonce: None,
        }
    }
}

/// `POST /token`.
pub(crate) async fn token(
    State(server): State<AuthServer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&server, &headers, &body).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(target: "mcp_oauth::auth_server", error = error.error.as_str(), description = %error.description, "token request refused");
            error.into_response()
        }
    }
}

async fn handle(
    server: &AuthServer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, TokenError> {
    let form = form_params(headers, body)?;
    // A workload token may name its client by itself (SEP-1933); otherwise the client
    // authenticates as it registered.
    let client = match jwt_bearer::workload_client(server, headers, &form).await? {
        Some(client) => client,
        None => authenticate_client(server, headers, &form).await?,
    };
    let grant_type = form
        .get("grant_type")
        .map(String::as_str)
        .unwrap_or_default();
    let grant = GrantType::parse(grant_type)
        .filter(|g| *g != GrantType::JwtBearer || server.inner.jwt_bearer.is_some());
    let Some(grant) = grant else {
        return Err(if grant_type.is_empty() {
            err(ErrorCode::InvalidRequest, "grant_type is missing")
        } else {
            err(
                ErrorCode::UnsupportedGrantType,
                "use authorization_code, refresh_token or client_credentials",
            )
        });
    };
    if !client.allows_grant(grant) {
        return Err(err(
            ErrorCode::UnauthorizedClient,
            format!("this client is not registered for the {grant_type} grant"),
        ));
    }
    let request = TokenRequest::parse(grant, &form)
        .map_err(|missing| err(ErrorCode::InvalidRequest, missing))?;
    // The proof is checked once the grant is known to be worth it (after the cheap checks of
    // the code or refresh token), so that requests with junk grants never reach the replay
    // cache.
    match request {
        TokenRequest::AuthorizationCode {
            code,
            code_verifier,
            redirect_uri,
            resource,
        } => {
            let presented = Presented {
                code,
                verifier: code_verifier,
                redirect_uri,
                resource,
            };
            authorization_code(server, &client, presented, headers).await
        }
        TokenRequest::RefreshToken {
            refresh_token: presented,
            scope,
            resource,
        } => refresh_token(server, &client, presented, scope, resource, headers).await,
        TokenRequest::ClientCredentials { scope, resource } => {
            let proof = dpop_proof(server, headers).await?;
            client_credentials(server, &client, scope, resource, proof.as_ref())
        }
        TokenRequest::JwtBearer {
            assertion,
            scope,
            resource,
        } => jwt_bearer::grant(server, &client, assertion, scope, resource, headers).await,
    }
}

/// What an authorization-code request presents.
struct Presented<'a> {
    code: &'a str,
    verifier: &'a str,
    redirect_uri: Option<&'a str>,
    resource: Option<&'a str>,
}

fn resource_matches(granted: Option<&str>, asked: Option<&str>) -> bool {
    match (granted, asked) {
        (_, None) => true,
        (Some(granted), Some(asked)) => granted == asked,
        (None, Some(_)) => false,
    }
}

fn lifetime_secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
}

async fn issue_refresh(server: &AuthServer, record: RefreshRecord) -> Result<String, TokenError> {
    let token = random_token();
    server
        .inner
        .store
        .put_refresh(&hash_hex(&token), record)
        .await?;
    Ok(token)
}

/// A code was presented again by its owner, with its verifier: RFC 6749 §4.1.2 / OAuth 2.1
/// §4.1.3, revoke what it issued. The family has tokens only if the first redemption issued
/// them, so the answer says only that the code was used.
async fn code_replayed(server: &AuthServer, record: &CodeRecord) -> TokenError {
    let until = now_unix() + lifetime_secs(server.inner.config.lifetimes.refresh_token);
    let _ = server.revoke_family(&record.family, until).await;
    tracing::warn!(target: "mcp_oauth::auth_server", client_id = %record.client_id, "authorization code replayed: its grant is revoked");
    err(ErrorCode::InvalidGrant, "the code was already used")
}

/// A refresh token was presented again by its owner: reuse revokes the grant.
async fn refresh_reused(server: &AuthServer, record: &RefreshRecord) -> TokenError {
    let until = now_unix() + lifetime_secs(server.inner.config.lifetimes.refresh_token);
    let _ = server.revoke_family(&record.family, until).await;
    tracing::warn!(target: "mcp_oauth::auth_server", client_id = %record.client_id, "refresh token reused: the grant is revoked");
    err(
        ErrorCode::InvalidGrant,
        "the refresh token was already used; the grant is revoked",
    )
}

/// The client completed an authorization: an unused registration no longer lapses.
async fn keep_client(server: &AuthServer, client: &ClientRecord) {
    if client.is_established() || client.from_metadata_document {
        return;
    }
    let mut kept = client.clone();
    kept.expires_at = None;
    if let Err(err) = server.inner.store.put_client(kept).await {
        tracing::warn!(target: "mcp_oauth::auth_server", client_id = %client.client_id, error = %err, "cannot keep a client that completed an authorization");
    }
}

async fn authorization_code(
    server: &AuthServer,
    client: &ClientRecord,
    presented: Presented<'_>,
    headers: &HeaderMap,
) -> Result<Response, TokenError> {
    let Presented {
        code,
        verifier,
        redirect_uri,
        resource,
    } = presented;
    let hash = hash_hex(code);
    // Look first, check, and only then use the code: a request that fails a check (another
    // client, a wrong verifier) leaves the code to its owner.
    let (record, used) = match server.inner.store.peek_code(&hash).await {
        Ok(Redeemed::Fresh(record)) => (record, false),
        Ok(Redeemed::Replayed(record)) => (record, true),
        Ok(Redeemed::Missing) => {
            return Err(err(
                ErrorCode::InvalidGrant,
                "the code is unknown or expired",
            ));
        }
        Err(failure) => return Err(failure.into()),
    };
    if record.client_id != client.client_id {
        return Err(err(
            ErrorCode::InvalidGrant,
            "the code was issued to another client",
        ));
    }
    if redirect_uri.is_some_and(|r| r != record.redirect_uri) {
        return Err(err(
            ErrorCode::InvalidGrant,
            "redirect_uri differs from the authorization request",
        ));
    }
    if !pkce_matches(verifier, &record.code_challenge) {
        return Err(err(
            ErrorCode::InvalidGrant,
            "code_verifier does not match the code_challenge",
        ));
    }
    if !resource_matches(record.resource.as_deref(), resource) {
        return Err(err(
            ErrorCode::InvalidTarget,
            "resource differs from the authorization request",
        ));
    }
    let proof = dpop_proof(server, headers).await?;
    let proof = proof.as_ref();
    check_binding(record.dpop_jkt.as_deref(), proof, "code")?;
    if used {
        return Err(code_replayed(server, &record).await);
    }
    // Atomic in every store: of two redemptions that passed the checks, one is fresh.
    match server.inner.store.redeem_code(&hash).await {
        Ok(Redeemed::Fresh(_)) => {}
        Ok(Redeemed::Replayed(_)) => return Err(code_replayed(server, &record).await),
        Ok(Redeemed::Missing) => {
            return Err(err(
                ErrorCode::InvalidGrant,
                "the code is unknown or expired",
            ));
        }
        Err(failure) => return Err(failure.into()),
    }
    keep_client(server, client).await;
    let grant = Grant {
        subject: &record.subject,
        client_id: &client.client_id,
        scope: &record.scope,
        resource: record.resource.as_deref(),
        user_claims: &record.user_claims,
        family: &record.family,
        ttl: None,
    };
    let jkt = proof.map(DpopProof::jkt);
    let access = mint_bound(server, &grant, jkt);
    let refresh = if client.allows_grant(GrantType::RefreshToken) {
        Some(
            issue_refresh(
                server,
                // The code's grant, carried on (its client is this client, checked above);
                // a public client's refresh token is bound to its DPoP key (RFC 9449 §5).
                RefreshRecord {
                    expires_at: now_unix()
                        + lifetime_secs(server.inner.config.lifetimes.refresh_token),
                    dpop_jkt: jkt.filter(|_| !client.is_confidential()).map(str::to_owned),
                    ..record.grant.clone()
                },
            )
            .await?,
        )
    } else {
        None
    };
    Ok(token_response(
        access,
        &record.scope,
        record.resource.as_deref(),
        refresh,
        server.inner.config.lifetimes.access_token,
        jkt.is_some(),
    ))
}

async fn refresh_token(
    server: &AuthServer,
    client: &ClientRecord,
    presented: &str,
    scope: Option<&str>,
    resource: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, TokenError> {
    let hash = hash_hex(presented);
    // As for codes: look, check, then rotate; another client's attempt changes nothing.
    let (record, used) = match server.inner.store.peek_refresh(&hash).await {
        Ok(Redeemed::Fresh(record)) => (record, false),
        Ok(Redeemed::Replayed(record)) => (record, true),
        Ok(Redeemed::Missing) => {
            return Err(err(
                ErrorCode::InvalidGrant,
                "the refresh token is unknown or expired",
            ));
        }
        Err(failure) => return Err(failure.into()),
    };
    if record.client_id != client.client_id {
        return Err(err(
            ErrorCode::InvalidGrant,
            "the refresh token was issued to another client",
        ));
    }
    // Before the reuse check: a thief without the key learns nothing and spends nothing.
    let proof = dpop_proof(server, headers).await?;
    let proof = proof.as_ref();
    check_binding(record.dpop_jkt.as_deref(), proof, "refresh token")?;
    if used {
        return Err(refresh_reused(server, &record).await);
    }
    if server.inner.store.is_family_revoked(&record.family).await? {
        return Err(err(ErrorCode::InvalidGrant, "the grant was revoked"));
    }
    if !resource_matches(record.resource.as_deref(), resource) {
        return Err(err(
            ErrorCode::InvalidTarget,
            "resource differs from the original grant",
        ));
    }
    let scope = match scope.map(parse_scope_list) {
        Some(asked) if !asked.is_empty() => {
            if let Some(extra) = asked.iter().find(|s| !record.scope.contains(s)) {
                return Err(err(
                    ErrorCode::InvalidScope,
                    format!("the scope {extra} was not granted"),
                ));
            }
            asked
        }
        _ => record.scope.clone(),
    };
    match server.inner.store.redeem_refresh(&hash).await {
        Ok(Redeemed::Fresh(_)) => {}
        Ok(Redeemed::Replayed(_)) => return Err(refresh_reused(server, &record).await),
        Ok(Redeemed::Missing) => {
            return Err(err(
                ErrorCode::InvalidGrant,
                "the refresh token is unknown or expired",
            ));
        }
        Err(failure) => return Err(failure.into()),
    }
    let grant = Grant {
        subject: &record.subject,
        client_id: &client.client_id,
        scope: &scope,
        resource: record.resource.as_deref(),
        user_claims: &record.user_claims,
        family: &record.family,
        ttl: None,
    };
    let jkt = proof.map(DpopProof::jkt);
    let access = mint_bound(server, &grant, jkt);
    let resource = record.resource.clone();
    // A bound refresh token stays bound; an unbound one of a public client is bound from
    // its first use with a proof.
    let dpop_jkt = record
        .dpop_jkt
        .clone()
        .or_else(|| jkt.filter(|_| !client.is_confidential()).map(str::to_owned));
    let refresh = issue_refresh(
        server,
        RefreshRecord {
            scope: record.scope.clone(),
            expires_at: now_unix() + lifetime_secs(server.inner.config.lifetimes.refresh_token),
            dpop_jkt,
            ..record
        },
    )
    .await?;
    Ok(token_response(
        access,
        &scope,
        resource.as_deref(),
        Some(refresh),
        server.inner.config.lifetimes.access_token,
        jkt.is_some(),
    ))
}

fn client_credentials(
    server: &AuthServer,
    client: &ClientRecord,
    scope: Option<&str>,
    resource: Option<&str>,
    proof: Option<&DpopProof>,
) -> Result<Response, TokenError> {
    // Only the operator makes machine clients (a configured client, or a registration with
    // the initial access token), and gives each its scopes.
    let allowed = match &client.machine_scopes {
        Some(allowed) if client.is_confidential() && !client.from_metadata_document => allowed,
        _ => {
            return Err(err(
                ErrorCode::UnauthorizedClient,
                "this client may not use client_credentials: machine clients are configured by the operator",
            ));
        }
    };
    let scope = match scope.map(parse_scope_list) {
        Some(scopes) if !scopes.is_empty() => scopes,
        _ => allowed.clone(),
    };
    if let Some(bad) = scope
        .iter()
        .find(|s| !server.inner.config.scopes_supported.contains(s) || !allowed.contains(s))
    {
        return Err(err(
            ErrorCode::InvalidScope,
            format!("the scope {bad} is not allowed for this client"),
        ));
    }
    let resource =
        resolve_resource(server, resource).map_err(|e| err(ErrorCode::InvalidTarget, e))?;
    let family = random_token();
    let claims = Map::new();
    let grant = Grant {
        subject: &client.client_id,
        client_id: &client.client_id,
        scope: &scope,
        resource: resource.as_deref(),
        user_claims: &claims,
        family: &family,
        ttl: None,
    };
    let jkt = proof.map(DpopProof::jkt);
    Ok(token_response(
        mint_bound(server, &grant, jkt),
        &scope,
        resource.as_deref(),
        None,
        server.inner.config.lifetimes.access_token,
        jkt.is_some(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        // RFC 7636 Appendix B.
        assert!(pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        // A "plain" downgrade: the challenge itself as the verifier.
        assert!(!pkce_matches(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }
}
