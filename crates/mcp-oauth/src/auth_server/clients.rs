//! Finding and authenticating clients: a registered client or a Client ID Metadata Document,
//! the resource a token is for (RFC 8707), the form of a token or revocation request, and
//! client authentication at those endpoints (RFC 6749 §2.3).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq as _;
use url::Url;

use super::assertion;
use super::cimd::is_document_url;
use super::http::{TokenError, err, hash_hex};
use super::protocol::{ClientAuthMethod, ErrorCode};
use super::server::AuthServer;
use super::store::{ClientRecord, StoreError};

/// Finds a client: registered, or described by its metadata document. The inner error says
/// why the client is unknown; the outer one is a store failure (answered as such, never as
/// an unknown client).
pub(crate) async fn load_client(
    server: &AuthServer,
    client_id: &str,
) -> Result<Result<ClientRecord, String>, StoreError> {
    if let Some(client) = server.inner.store.client(client_id).await? {
        return Ok(Ok(client));
    }
    Ok(match &server.inner.clients.cimd {
        Some(resolver) if is_document_url(client_id) => resolver.resolve(client_id).await,
        _ => Err("the client is not registered with this server".into()),
    })
}

/// The resource a token will be for: the one asked for (one at most, an absolute URL, one
/// of the configured ones), else the default (the first configured one). With none
/// configured, no resource: a request naming one is refused, so that the audience of a
/// token is never a URL the client chose.
pub(crate) fn resolve_resource(
    server: &AuthServer,
    asked: Option<&str>,
) -> Result<Option<String>, String> {
    let Some(asked) = asked else {
        return Ok(server.inner.config.resources.first().cloned());
    };
    let url = Url::parse(asked).map_err(|_| "resource must be an absolute URL".to_owned())?;
    if url.fragment().is_some() {
        return Err("resource must not have a fragment".into());
    }
    if server.inner.config.resources.is_empty() {
        return Err(format!(
            "this server issues no tokens for {asked}: it has no configured resources"
        ));
    }
    let known = server
        .inner
        .config
        .resources
        .iter()
        .any(|r| Url::parse(r).is_ok_and(|r| crate::resource::same_resource(&r, &url)));
    if known {
        Ok(Some(asked.to_owned()))
    } else {
        Err(format!("this server issues no tokens for {asked}"))
    }
}

/// Authenticates the client: HTTP Basic, form credentials, or a public client's id, whichever
/// the client registered as its `token_endpoint_auth_method` (and only one of them, RFC 6749
/// §2.3). Unknown clients, bad secrets and another method are 401 `invalid_client`, so that
/// MCP clients re-register.
pub(crate) async fn authenticate_client(
    server: &AuthServer,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<ClientRecord, TokenError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
            let (id, secret) = decoded.split_once(':')?;
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        });
    if form.contains_key("client_assertion") || form.contains_key("client_assertion_type") {
        return authenticate_by_assertion(server, basic.is_some(), form).await;
    }
    let invalid = |basic_used: bool| TokenError {
        status: StatusCode::UNAUTHORIZED,
        error: ErrorCode::InvalidClient,
        description:
            "client authentication failed: unknown client or wrong credentials; register again"
                .into(),
        basic_challenge: basic_used,
        dpop_nonce: None,
    };
    let (client_id, secret, basic_used) = match (
        &basic,
        form.get("client_id"),
        form.get("client_secret"),
    ) {
        (Some(_), _, Some(_)) => {
            return Err(err(
                ErrorCode::InvalidRequest,
                "use one client authentication method: HTTP Basic or client_secret in the form, not both",
            ));
        }
        (Some((id, secret)), form_id, None) => {
            if form_id.is_some_and(|f| f != id) {
                return Err(err(
                    ErrorCode::InvalidRequest,
                    "client_id in the form differs from the one in the Authorization header",
                ));
            }
            (id.clone(), Some(secret.clone()), true)
        }
        (None, Some(id), secret) => (id.clone(), secret.cloned(), false),
        (None, None, _) => return Err(invalid(false)),
    };
    take_for_client(server, &client_id, secret.is_some())?;
    let client = load_client(server, &client_id)
        .await?
        .map_err(|_| invalid(basic_used))?;
    let authenticated = match (&client.secret_hash, &secret) {
        (Some(hash), Some(secret)) => {
            bool::from(hash_hex(secret).as_bytes().ct_eq(hash.as_bytes()))
        }
        (None, None) => true,
        _ => false,
    };
    if !authenticated {
        return Err(invalid(basic_used));
    }
    let used = match (basic_used, secret.is_some()) {
        (true, _) => ClientAuthMethod::ClientSecretBasic,
        (false, true) => ClientAuthMethod::ClientSecretPost,
        (false, false) => ClientAuthMethod::None,
    };
    if client.token_endpoint_auth_method != used {
        return Err(TokenError {
            description: format!(
                "client authentication failed: this client is registered for {}, not {used}",
                client.token_endpoint_auth_method,
            ),
            ..invalid(basic_used)
        });
    }
    Ok(client)
}

/// `private_key_jwt` (RFC 7523 §2.2): the client is the assertion's `sub`, and must be
/// registered for this method; the assertion is checked in [`assertion::verify`]. Every
/// refusal is 401 `invalid_client` with one description (the reason is logged), so that the
/// answer tells an attacker nothing about which check failed.
async fn authenticate_by_assertion(
    server: &AuthServer,
    basic_used: bool,
    form: &HashMap<String, String>,
) -> Result<ClientRecord, TokenError> {
    if basic_used || form.contains_key("client_secret") {
        return Err(err(
            ErrorCode::InvalidRequest,
            "use one client authentication method: a client assertion, HTTP Basic or client_secret, not several",
        ));
    }
    match form.get("client_assertion_type").map(String::as_str) {
        Some(assertion::JWT_BEARER_ASSERTION) => {}
        Some(_) => {
            return Err(err(
                ErrorCode::InvalidRequest,
                format!(
                    "client_assertion_type must be {}",
                    assertion::JWT_BEARER_ASSERTION
                ),
            ));
        }
        None => {
            return Err(err(
                ErrorCode::InvalidRequest,
                "a client_assertion needs its client_assertion_type",
            ));
        }
    }
    let Some(token) = form.get("client_assertion") else {
        return Err(err(
            ErrorCode::InvalidRequest,
            "client_assertion_type without a client_assertion",
        ));
    };
    let invalid = |why: &str| {
        tracing::info!(target: "mcp_oauth::auth_server", reason = why, "client assertion refused");
        TokenError {
            status: StatusCode::UNAUTHORIZED,
            error: ErrorCode::InvalidClient,
            description: "client authentication failed: the client assertion is not valid for a client of this server".into(),
            basic_challenge: false,
            dpop_nonce: None,
        }
    };
    let Some(client_id) = assertion::claimed_client(token) else {
        return Err(invalid("the assertion has no sub"));
    };
    if form.get("client_id").is_some_and(|id| *id != client_id) {
        return Err(err(
            ErrorCode::InvalidRequest,
            "client_id differs from the client assertion's sub",
        ));
    }
    take_for_client(server, &client_id, true)?;
    let client = load_client(server, &client_id)
        .await?
        .map_err(|_| invalid("unknown client"))?;
    if client.token_endpoint_auth_method != ClientAuthMethod::PrivateKeyJwt {
        return Err(invalid("the client is not registered for private_key_jwt"));
    }
    match assertion::verify(server, &client, token).await {
        Ok(()) => Ok(client),
        Err(assertion::Refused::Invalid(why)) => Err(invalid(&why)),
        Err(assertion::Refused::Store(e)) => Err(e.into()),
    }
}

/// The parameters of a token or revocation request: the body must be
/// `application/x-www-form-urlencoded` (RFC 6749 §3.2, RFC 7009 §2.1) and name each
/// parameter at most once (RFC 6749 §3.1).
pub(crate) fn form_params(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<HashMap<String, String>, TokenError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(err(
            ErrorCode::InvalidRequest,
            "the request must be application/x-www-form-urlencoded",
        ));
    }
    single_params(body)
}

fn single_params(body: &[u8]) -> Result<HashMap<String, String>, TokenError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(err(
                ErrorCode::InvalidRequest,
                format!("the parameter {k} appears more than once"),
            ));
        }
    }
    Ok(out)
}

/// The per-client-id bucket at `/token` and `/revoke`, taken where the client id is known
/// and before the client authenticates; only requests that present a client secret count
/// (they are the ones that could guess it), so public clients, whose ids anyone may send, are
/// never held up by someone else's requests. 429 `temporarily_unavailable` when the bucket
/// is empty.
fn take_for_client(
    server: &AuthServer,
    client_id: &str,
    presents_secret: bool,
) -> Result<(), TokenError> {
    let taken: Result<(), Duration> = match &server.inner.limits.per_client {
        Some(limiter) if presents_secret => limiter.take(client_id.to_owned()).inspect_err(|_| {
            tracing::warn!(target: "mcp_oauth::auth_server", %client_id, "rate limit per client reached");
        }),
        _ => Ok(()),
    };
    taken.map_err(|wait| TokenError {
        status: StatusCode::TOO_MANY_REQUESTS,
        ..err(
            ErrorCode::TemporarilyUnavailable,
            format!(
                "too many requests for this client; retry in {} s",
                wait.as_secs()
            ),
        )
    })
}
