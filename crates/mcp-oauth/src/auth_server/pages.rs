//! The server-rendered pages: their frame, and errors that cannot be redirected (the login
//! and consent page is `consent_page`). They work without JavaScript, cannot be framed, and
//! are never cached.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f6f7f9;color:#1d2330;margin:0}\
main{max-width:30rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:.75rem;box-shadow:0 1px 4px #0002}\
h1{font-size:1.35rem;margin-top:0}code{background:#eef0f4;padding:0 .25rem;border-radius:.25rem;word-break:break-all}\
label{display:block;margin:.75rem 0}input{display:block;width:100%;box-sizing:border-box;padding:.5rem;margin-top:.25rem}\
.buttons{display:flex;gap:.75rem;margin-top:1rem}button{padding:.6rem 1rem;border-radius:.4rem;border:1px solid #889;cursor:pointer}\
button[value=approve]{background:#2456d6;color:#fff;border-color:#2456d6}.warn{background:#fff6db;padding:.5rem .75rem;border-radius:.4rem}\
.error{background:#fde2e2;padding:.5rem .75rem;border-radius:.4rem}";

/// A page in the common frame: `body` (HTML, already escaped) under `title`, with headers
/// that forbid framing, caching and sniffing, a CSP whose `form-action` is `form_action`
/// (`'self'`, `'none'`), and `cookie` as its `Set-Cookie`, if any.
pub fn page(
    status: StatusCode,
    title: &str,
    body: &str,
    form_action: &str,
    cookie: Option<String>,
) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, value);
    }
    response
}

/// A page for errors that must not be sent to the client's redirect URI (unknown client,
/// redirect URI not registered, …): showing them beats an open redirect.
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>This sign-in cannot continue</h1><p class=\"error\">{}</p>\
<p>Nothing was shared. Close this page and check the application's configuration.</p>",
        escape(message)
    );
    page(status, "Sign-in error", &body, "'none'", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>"x"&'y'</script>"#),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(escape("a\u{0}b\nc"), "abc");
    }
}
