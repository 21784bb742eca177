//! The login and consent page: it names the client, where the answer goes and what is asked,
//! and carries the CSRF token.

use axum::response::Response;
use http::StatusCode;
use url::Url;

use super::pages::{escape, page};
use super::store::{AuthRequestRecord, ClientRecord};

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

/// The form of the login and consent page. `Debug` shows the user name and the decision
/// only: never the password, the CSRF token or the request id.
#[derive(serde::Deserialize)]
pub(crate) struct Decision {
    pub(crate) request_id: String,
    pub(crate) csrf: String,
    #[serde(default)]
    pub(crate) username: String,
    #[serde(default)]
    pub(crate) password: String,
    pub(crate) decision: String,
}

impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decision")
            .field("username", &self.username)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Security review 2, F12: `{:?}` of a submitted form holds no secret.
    #[test]
    fn debug_prints_no_password_csrf_or_request_id() {
        let form: Decision = serde_json::from_value(serde_json::json!({
            "request_id": "request-id-5b7", "csrf": "csrf-token-2e4",
            "username": "alice", "password": "password-9d1", "decision": "approve"
        }))
        .expect("form");
        let printed = format!("{form:?}");
        for secret in ["request-id-5b7", "csrf-token-2e4", "password-9d1"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("alice"), "{printed}");
    }
}
