//! The server-rendered pages: login and consent, and errors that cannot be redirected.
//! They work without JavaScript, cannot be framed, and are never cached.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use url::Url;

use super::store::{AuthRequestRecord, ClientRecord};

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
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

fn page(
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

/// Where the form posts and where its redirect may lead, for the CSP `form-action`.
fn form_sources(redirect_uri: &str) -> String {
    match Url::parse(redirect_uri) {
        Ok(url) if url.scheme() == "http" || url.scheme() == "https" => {
            format!(
                "'self' {}://{}:*",
                url.scheme(),
                url.host_str()
                    .map(|h| if h.contains(':') {
                        format!("[{h}]")
                    } else {
                        h.to_owned()
                    })
                    .unwrap_or_default()
            )
        }
        Ok(url) => format!("'self' {}:", url.scheme()),
        Err(_) => "'self'".to_owned(),
    }
}

/// The login and consent page. It names the client, where the answer goes and what is
/// asked, and carries the CSRF token (also set as a cookie).
pub(crate) struct Consent<'a> {
    pub(crate) action: &'a str,
    pub(crate) request_id: &'a str,
    pub(crate) request: &'a AuthRequestRecord,
    pub(crate) client: &'a ClientRecord,
    pub(crate) cookie: String,
    pub(crate) error: Option<&'a str>,
    /// Proxy mode: the provider the user signs in at next (name, origin); no password here.
    pub(crate) upstream: Option<(&'a str, String)>,
    /// Proxy mode, after the callback: the account the user signed in with at the provider
    /// (the consent asked of a user who never allowed this client).
    pub(crate) signed_in_as: Option<&'a str>,
}

impl Consent<'_> {
    pub(crate) fn render(&self) -> Response {
        let name = self
            .client
            .client_name
            .clone()
            .unwrap_or_else(|| "An unnamed application".into());
        let redirect = Url::parse(&self.request.redirect_uri).ok();
        let host = redirect
            .as_ref()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| self.request.redirect_uri.clone());
        let loopback = redirect
            .as_ref()
            .is_some_and(|u| matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost")));
        let mut body = format!("<h1>Authorize {}</h1>", escape(&name));
        body.push_str(&format!(
            "<p><strong>{}</strong> (client id <code>{}</code>) asks to act on your behalf{}.</p>",
            escape(&name),
            escape(&self.client.client_id),
            self.request
                .resource
                .as_deref()
                .map(|r| format!(" at <code>{}</code>", escape(r)))
                .unwrap_or_default()
        ));
        body.push_str(&format!(
            "<p>Your answer goes to <strong>{}</strong>.</p>",
            escape(&host)
        ));
        if loopback {
            body.push_str("<p class=\"warn\">That is an address on your own computer. Continue only if you started this sign-in from an application on this computer.</p>");
        }
        if self.client.from_metadata_document {
            body.push_str(&format!(
                "<p>The application is identified by the document at <code>{}</code>.</p>",
                escape(&self.client.client_id)
            ));
        }
        body.push_str("<p>It asks for:</p><ul>");
        if self.request.scope.is_empty() {
            body.push_str("<li>basic access</li>");
        }
        for scope in &self.request.scope {
            body.push_str(&format!("<li><code>{}</code></li>", escape(scope)));
        }
        body.push_str("</ul>");
        if let Some(error) = self.error {
            body.push_str(&format!(
                "<p class=\"error\" role=\"alert\">{}</p>",
                escape(error)
            ));
        }
        let provider = self.upstream.as_ref().map(|(name, _)| *name);
        if let (Some(provider), Some(account)) = (provider, self.signed_in_as) {
            body.push_str(&format!(
                "<p>You signed in with <strong>{}</strong> as <strong>{}</strong>. This account has not allowed {} yet.</p>",
                escape(provider),
                escape(account),
                escape(&name)
            ));
        }
        let after_sign_in = self.signed_in_as.is_some();
        let fields = match provider {
            Some(_) => String::new(),
            None => "<label>User name<input name=\"username\" autocomplete=\"username\" required></label>\
<label>Password<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>"
                .to_owned(),
        };
        let approve = match provider {
            Some(_) if after_sign_in => "Allow".to_owned(),
            Some(provider) => format!("Allow and sign in with {}", escape(provider)),
            None => "Sign in and allow".to_owned(),
        };
        if let Some(provider) = provider.filter(|_| !after_sign_in) {
            body.push_str(&format!(
                "<p>Next, you sign in with <strong>{}</strong>.</p>",
                escape(provider)
            ));
        }
        body.push_str(&format!(
            "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"request_id\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{fields}\
<div class=\"buttons\"><button type=\"submit\" name=\"decision\" value=\"approve\">{approve}</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\" formnovalidate>Deny</button></div></form>",
            escape(self.action),
            escape(self.request_id),
            escape(&self.request.csrf)
        ));
        let status = if self.error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        page(
            status,
            &format!("Authorize {name}"),
            &body,
            &match &self.upstream {
                // The approved form redirects to the provider: the CSP must allow that hop.
                Some((_, origin)) if !after_sign_in => {
                    format!("{} {origin}", form_sources(&self.request.redirect_uri))
                }
                _ => form_sources(&self.request.redirect_uri),
            },
            Some(self.cookie.clone()),
        )
    }
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

    #[test]
    fn form_action_allows_the_redirect_origin_only() {
        assert_eq!(
            form_sources("http://127.0.0.1:33418/callback"),
            "'self' http://127.0.0.1:*"
        );
        assert_eq!(
            form_sources("https://claude.ai/api/mcp/auth_callback"),
            "'self' https://claude.ai:*"
        );
        assert_eq!(
            form_sources("cursor://anysphere.cursor-retrieval/oauth"),
            "'self' cursor:"
        );
    }
}
