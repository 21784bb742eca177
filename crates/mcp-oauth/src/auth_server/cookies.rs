//! Every cookie of the authorization server, and the origin check of form posts:
//!
//! - the CSRF cookie of the login and consent page (`SameSite=Strict`, bound to the pending
//!   request's token);
//! - the consent cookie of proxy mode (signed, the clients this browser allowed);
//! - the binding cookies of proxy mode, one per sign-in step, that bind the step to the
//!   browser that started it (`SameSite=Lax`: the provider's redirect must carry them).
//!
//! On `https` issuers their names have the `__Host-` prefix and they are `Secure`.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, header};
use std::time::Duration;

use super::http::hash_hex;
use super::seal::Sealer;
use super::server::AuthServer;
use crate::claims::now_unix;

fn csrf_cookie_name(server: &AuthServer) -> &'static str {
    if server.inner.config.secure_cookies {
        "__Host-mcp_oauth_csrf"
    } else {
        "mcp_oauth_csrf"
    }
}

/// A cookie's value.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The CSRF cookie, if well formed.
pub(crate) fn csrf_cookie(server: &AuthServer, headers: &HeaderMap) -> Option<String> {
    cookie(headers, csrf_cookie_name(server)).filter(|v| {
        v.len() == 43
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

pub(crate) fn set_csrf_cookie(server: &AuthServer, value: &str) -> String {
    let secure = if server.inner.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        csrf_cookie_name(server),
        server.inner.config.lifetimes.request.as_secs()
    )
}

/// The `Origin` of a form post, when sent, must be ours. `null` is refused: a sandboxed
/// frame on a page of another loopback port (same site on `http` issuers, whose cookies are
/// not port-isolated) would send it. Our pages set `Referrer-Policy: same-origin`, so a
/// browser posting our own form names our origin.
pub(crate) fn origin_ok(server: &AuthServer, headers: &HeaderMap) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_none_or(|origin| {
            origin
                == server
                    .inner
                    .config
                    .issuer_url
                    .origin()
                    .ascii_serialization()
        })
}

/// The consent cookie's name.
pub(crate) fn consent_cookie_name(server: &AuthServer) -> &'static str {
    if server.inner.config.secure_cookies {
        "__Host-mcp_oauth_consent"
    } else {
        "mcp_oauth_consent"
    }
}

/// Client ids this browser approved (still valid), from the signed consent cookie.
pub(crate) fn approved_clients(sealer: &Sealer, cookie: Option<&str>) -> Vec<(String, i64)> {
    let Some(cookie) = cookie else {
        return Vec::new();
    };
    let now = now_unix();
    sealer
        .verify_cookie(cookie)
        .and_then(|payload| serde_json::from_slice::<Vec<(String, i64)>>(&payload).ok())
        .map(|list| list.into_iter().filter(|(_, until)| *until > now).collect())
        .unwrap_or_default()
}

/// The `Set-Cookie` value remembering consent for `client_id` in this browser.
pub(crate) fn consent_cookie(
    server: &AuthServer,
    sealer: &Sealer,
    consent_ttl: Duration,
    mut approved: Vec<(String, i64)>,
    client_id: &str,
) -> Option<String> {
    let ttl = i64::try_from(consent_ttl.as_secs()).unwrap_or(0);
    approved.retain(|(id, _)| id != client_id);
    approved.push((client_id.to_owned(), now_unix() + ttl));
    // Keep the cookie small: the 20 most recent approvals.
    let skip = approved.len().saturating_sub(20);
    let approved: Vec<(String, i64)> = approved.into_iter().skip(skip).collect();
    let payload = serde_json::to_vec(&approved).ok()?;
    let secure = if server.inner.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    Some(format!(
        "{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={ttl}{secure}",
        consent_cookie_name(server),
        sealer.sign_cookie(&payload)
    ))
}

/// What a sign-in cookie binds: the upstream `state` of a transaction.
pub(crate) const STATE_BINDING: &str = "upstream state";
/// What a sign-in cookie binds: a signed-in user's consent step, by its id.
pub(crate) const CONSENT_BINDING: &str = "consent after sign-in";

/// The cookie binding one sign-in step to the browser. Its name is per sign-in, so that
/// several sign-ins can run in one browser at once.
fn binding_cookie_name(server: &AuthServer, purpose: &str, id: &str) -> String {
    let prefix = if server.inner.config.secure_cookies {
        "__Host-mcp_oauth_login_"
    } else {
        "mcp_oauth_login_"
    };
    let hash = hash_hex(&format!("{purpose}\u{0}{id}"));
    format!("{prefix}{}", hash.get(..16).unwrap_or(&hash))
}

/// Whether the request carries the binding cookie of this sign-in step.
pub(crate) fn is_bound(
    server: &AuthServer,
    sealer: &Sealer,
    headers: &HeaderMap,
    purpose: &str,
    id: &str,
) -> bool {
    let Some(value) = cookie(headers, &binding_cookie_name(server, purpose, id)) else {
        return false;
    };
    sealer.verify_mac(purpose, id, &value)
}

/// `Set-Cookie` for the binding cookie (`max_age` 0 removes it). `Lax`: the provider's
/// redirect to the callback is a cross-site top-level navigation, which must carry it.
/// Its value is an HMAC of the id under the cookie key.
pub(crate) fn binding_cookie(
    server: &AuthServer,
    sealer: &Sealer,
    purpose: &str,
    id: &str,
    set: bool,
) -> String {
    let secure = if server.inner.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let (value, max_age) = if set {
        (
            sealer.mac(purpose, id),
            server.inner.config.lifetimes.request.as_secs(),
        )
    } else {
        (String::new(), 0)
    };
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        binding_cookie_name(server, purpose, id)
    )
}

/// Adds a `Set-Cookie` header (a value that is not a valid header is left out).
pub fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server(issuer: &str) -> AuthServer {
        AuthServer::builder(issuer)
            .encryption_key([7u8; 32].as_slice())
            .build()
            .await
            .expect("server")
    }

    fn sent(cookie: &str) -> HeaderMap {
        let pair = cookie.split(';').next().unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(pair).expect("ascii"));
        headers
    }

    #[tokio::test]
    async fn https_issuers_bind_with_a_host_prefixed_secure_cookie() {
        let server = server("https://as.example").await;
        let sealer = Sealer::new(&[7u8; 32]).expect("key");
        let set = binding_cookie(&server, &sealer, STATE_BINDING, "state-1", true);
        assert!(set.starts_with("__Host-mcp_oauth_login_"), "{set}");
        for attribute in [
            "; Path=/",
            "; HttpOnly",
            "; SameSite=Lax",
            "; Secure",
            "; Max-Age=600",
        ] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(
            !set.contains("state-1"),
            "the state itself is not in the cookie"
        );
        assert!(is_bound(
            &server,
            &sealer,
            &sent(&set),
            STATE_BINDING,
            "state-1"
        ));
        assert!(!is_bound(
            &server,
            &sealer,
            &sent(&set),
            STATE_BINDING,
            "state-2"
        ));
        assert!(!is_bound(
            &server,
            &sealer,
            &sent(&set),
            CONSENT_BINDING,
            "state-1"
        ));
        assert!(!is_bound(
            &server,
            &sealer,
            &HeaderMap::new(),
            STATE_BINDING,
            "state-1"
        ));
        let clear = binding_cookie(&server, &sealer, STATE_BINDING, "state-1", false);
        assert!(clear.contains("=; ") && clear.contains("Max-Age=0") && clear.contains("; Secure"));
        // Another key (another server) does not accept this server's cookie.
        let other = AuthServer::builder("https://as.example")
            .encryption_key([8u8; 32].as_slice())
            .build()
            .await
            .expect("server");
        let other_sealer = Sealer::new(&[8u8; 32]).expect("key");
        assert!(!is_bound(
            &other,
            &other_sealer,
            &sent(&set),
            STATE_BINDING,
            "state-1"
        ));
    }

    #[tokio::test]
    async fn loopback_http_issuers_bind_without_the_prefix_or_secure() {
        let server = server("http://127.0.0.1:8080").await;
        let sealer = Sealer::new(&[7u8; 32]).expect("key");
        let set = binding_cookie(&server, &sealer, STATE_BINDING, "state-1", true);
        assert!(set.starts_with("mcp_oauth_login_"), "{set}");
        assert!(set.contains("; HttpOnly") && set.contains("; SameSite=Lax"));
        assert!(!set.contains("Secure"));
        assert!(is_bound(
            &server,
            &sealer,
            &sent(&set),
            STATE_BINDING,
            "state-1"
        ));
    }
}
