//! The pages where a signed-in user manages their own upstream credentials (on the
//! [`web`](mod@crate::web) sign-in):
//!
//! | page | what |
//! |---|---|
//! | `GET /gateway/secrets/NAME` | the user's token for the upstream NAME (`kind = "user-secret"`): "set on DATE" or "not set", a form to paste one (checked against the upstream's pattern, never shown again), and a button to delete it |
//! | `POST /gateway/secrets/NAME` | `action=set` with `secret`, or `action=delete`; the form token of the session and this origin required |
//! | `GET /gateway/connections` | every entry of the user's in the [`Vault`], whatever its kind (pasted tokens, OAuth connections), with a button to revoke each |
//! | `POST /gateway/connections/revoke` | `upstream`, `kind`; the form token and this origin required |
//!
//! The user is always the session's (their subject at the gateway's own authorization
//! server), never a form field: no request can read, replace or delete another user's entry.
//! A token is never echoed, logged or put in a page.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse as _, Redirect, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::upstream::UserSecret;
use crate::vault::{EntryHeader, EntryKind, Vault};
use crate::web::{self, Pages, SignedIn, Visitor};

/// Where a user manages their token for the upstream NAME: this, then `/NAME`.
pub const SECRETS_PATH: &str = "/gateway/secrets";
/// The user's connections page.
pub const CONNECTIONS_PATH: &str = "/gateway/connections";

/// The credential pages of a gateway (see the [module](self) docs); cheap to clone.
#[derive(Clone)]
pub struct CredentialPages(Arc<Inner>);

struct Inner {
    pages: Pages,
    vault: Vault,
    issuer: String,
    secrets: Vec<UserSecret>,
}

impl std::fmt::Debug for CredentialPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialPages")
            .field("issuer", &self.0.issuer)
            .field(
                "secrets",
                &self
                    .0
                    .secrets
                    .iter()
                    .map(UserSecret::upstream)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl axum::extract::FromRef<CredentialPages> for Pages {
    fn from_ref(state: &CredentialPages) -> Self {
        state.0.pages.clone()
    }
}

impl CredentialPages {
    /// The pages of `vault`'s entries for users signing in through `pages` at the gateway's
    /// own authorization server, whose issuer is `issuer` (users are its issuer and subject,
    /// as in the tokens of their MCP calls), with a page for each of `secrets`.
    pub fn new(
        pages: Pages,
        vault: Vault,
        issuer: impl Into<String>,
        secrets: impl IntoIterator<Item = UserSecret>,
    ) -> Self {
        Self(Arc::new(Inner {
            pages,
            vault,
            issuer: issuer.into(),
            secrets: secrets.into_iter().collect(),
        }))
    }

    /// The routes of the pages (mount beside [`Pages::router`]).
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                &format!("{SECRETS_PATH}/{{name}}"),
                get(secret_page).post(secret_form),
            )
            .route(CONNECTIONS_PATH, get(connections_page))
            .route(&format!("{CONNECTIONS_PATH}/revoke"), post(revoke_form))
            .with_state(self.clone())
    }

    fn user(&self, visitor: &Visitor) -> String {
        crate::vault::Vault::user_key(&self.0.issuer, visitor.subject())
    }

    fn secret(&self, name: &str) -> Option<&UserSecret> {
        self.0.secrets.iter().find(|s| s.upstream() == name)
    }

    fn unavailable(&self, err: &crate::vault::VaultError) -> Response {
        tracing::error!(target: "mcp_oauth_gateway::vault", error = %err, "credential pages");
        self.0.pages.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "Your credentials cannot be read or changed right now. Try again later.",
        )
    }
}

/// `YYYY-MM-DD HH:MM UTC` of Unix seconds.
fn date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

async fn secret_page(
    State(state): State<CredentialPages>,
    SignedIn(visitor): SignedIn,
    Path(name): Path<String>,
) -> Response {
    render_secret(&state, &visitor, &name, StatusCode::OK, None).await
}

async fn render_secret(
    state: &CredentialPages,
    visitor: &Visitor,
    name: &str,
    status: StatusCode,
    notice: Option<&str>,
) -> Response {
    let pages = &state.0.pages;
    let Some(secret) = state.secret(name) else {
        return pages.error_page(
            StatusCode::NOT_FOUND,
            "No such upstream",
            "This gateway has no upstream of that name taking a personal token.",
        );
    };
    let user = state.user(visitor);
    let current = match state.0.vault.list(&user).await {
        Ok(list) => list
            .into_iter()
            .find(|h| h.upstream == name && h.kind == EntryKind::UserSecret),
        Err(err) => return state.unavailable(&err),
    };
    let name_html = web::escape(secret.upstream());
    let action = web::escape(&format!("{SECRETS_PATH}/{}", secret.upstream()));
    let csrf = visitor.csrf_field(pages);
    let mut body = format!("<h1>Your token for {name_html}</h1>");
    if let Some(notice) = notice {
        body.push_str(&format!(
            "<p class=\"notice\" id=\"notice\">{}</p>",
            web::escape(notice)
        ));
    }
    match &current {
        Some(header) => body.push_str(&format!(
            "<p id=\"status\">Set on {}{}.</p>",
            date(header.created_at),
            if header.updated_at != header.created_at {
                format!(", replaced on {}", date(header.updated_at))
            } else {
                String::new()
            }
        )),
        None => body.push_str(
            "<p id=\"status\">Not set: calls to this upstream are refused until you set it.</p>",
        ),
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"{action}\">{csrf}<input type=\"hidden\" name=\"action\" value=\"set\">\
         <label>{} <input type=\"password\" name=\"secret\" autocomplete=\"off\" required></label> \
         <button type=\"submit\" id=\"set\">Save</button></form>",
        if current.is_some() { "Replace it:" } else { "Paste your token:" }
    ));
    if current.is_some() {
        body.push_str(&format!(
            "<form method=\"post\" action=\"{action}\">{csrf}<input type=\"hidden\" name=\"action\" value=\"delete\">\
             <button type=\"submit\" id=\"delete\">Delete it</button></form>"
        ));
    }
    body.push_str(&format!(
        "<p><a href=\"{CONNECTIONS_PATH}\">All your connections</a></p>"
    ));
    pages.page(status, &format!("Token for {}", secret.upstream()), &body)
}

#[derive(Deserialize)]
struct SecretForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    secret: String,
}

impl std::fmt::Debug for SecretForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretForm")
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

async fn secret_form(
    State(state): State<CredentialPages>,
    SignedIn(visitor): SignedIn,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<SecretForm>,
) -> Response {
    let pages = &state.0.pages;
    if let Err(refused) = pages.check_form(&visitor, &headers, &form.csrf) {
        return refused.into_response();
    }
    let Some(secret) = state.secret(&name) else {
        return render_secret(&state, &visitor, &name, StatusCode::NOT_FOUND, None).await;
    };
    let user = state.user(&visitor);
    let vault = &state.0.vault;
    match form.action.as_str() {
        "set" => {
            let value = form.secret.trim();
            if !secret.accepts(value) {
                return render_secret(
                    &state,
                    &visitor,
                    &name,
                    StatusCode::BAD_REQUEST,
                    Some("That is not a token of the expected form; nothing was saved."),
                )
                .await;
            }
            if let Err(err) = vault
                .put(&user, &name, EntryKind::UserSecret, value.as_bytes(), None)
                .await
            {
                return state.unavailable(&err);
            }
            render_secret(&state, &visitor, &name, StatusCode::OK, Some("Saved.")).await
        }
        "delete" => {
            if let Err(err) = vault.revoke(&user, &name, EntryKind::UserSecret).await {
                return state.unavailable(&err);
            }
            render_secret(&state, &visitor, &name, StatusCode::OK, Some("Deleted.")).await
        }
        _ => pages.error_page(
            StatusCode::BAD_REQUEST,
            "Unknown action",
            "Send the form from its page.",
        ),
    }
}

fn kind_label(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::UserSecret => "personal token",
        EntryKind::UserOauth => "OAuth connection",
    }
}

async fn connections_page(
    State(state): State<CredentialPages>,
    SignedIn(visitor): SignedIn,
) -> Response {
    render_connections(&state, &visitor, StatusCode::OK, None).await
}

async fn render_connections(
    state: &CredentialPages,
    visitor: &Visitor,
    status: StatusCode,
    notice: Option<&str>,
) -> Response {
    let pages = &state.0.pages;
    let list: Vec<EntryHeader> = match state.0.vault.list(&state.user(visitor)).await {
        Ok(list) => list,
        Err(err) => return state.unavailable(&err),
    };
    let csrf = visitor.csrf_field(pages);
    let mut body = String::from("<h1>Your upstream connections</h1>");
    if let Some(notice) = notice {
        body.push_str(&format!(
            "<p class=\"notice\" id=\"notice\">{}</p>",
            web::escape(notice)
        ));
    }
    if list.is_empty() {
        body.push_str("<p id=\"none\">You have no connections.</p>");
    } else {
        body.push_str("<table id=\"connections\"><tr><th>Upstream</th><th>What</th><th>Since</th><th>Expires</th><th></th></tr>");
        for entry in &list {
            let upstream = web::escape(&entry.upstream);
            body.push_str(&format!(
                "<tr><td>{upstream}</td><td>{}</td><td>{}</td><td>{}</td><td>\
                 <form method=\"post\" action=\"{CONNECTIONS_PATH}/revoke\">{csrf}\
                 <input type=\"hidden\" name=\"upstream\" value=\"{upstream}\">\
                 <input type=\"hidden\" name=\"kind\" value=\"{}\">\
                 <button type=\"submit\">Revoke</button></form></td></tr>",
                kind_label(entry.kind),
                date(entry.created_at),
                entry.expires_at.map_or_else(|| "never".to_owned(), date),
                entry.kind.as_str(),
            ));
        }
        body.push_str("</table>");
    }
    for secret in &state.0.secrets {
        if !list
            .iter()
            .any(|e| e.upstream == secret.upstream() && e.kind == EntryKind::UserSecret)
        {
            let name = web::escape(secret.upstream());
            body.push_str(&format!(
                "<p><a href=\"{SECRETS_PATH}/{name}\">Set your token for {name}</a></p>"
            ));
        }
    }
    pages.page(status, "Connections", &body)
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    upstream: String,
    #[serde(default)]
    kind: String,
}

async fn revoke_form(
    State(state): State<CredentialPages>,
    SignedIn(visitor): SignedIn,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Response {
    let pages = &state.0.pages;
    if let Err(refused) = pages.check_form(&visitor, &headers, &form.csrf) {
        return refused.into_response();
    }
    let Ok(kind) = serde_json::from_value::<EntryKind>(serde_json::Value::String(form.kind)) else {
        return pages.error_page(
            StatusCode::BAD_REQUEST,
            "Unknown connection",
            "Send the form from its page.",
        );
    };
    match state
        .0
        .vault
        .revoke(&state.user(&visitor), &form.upstream, kind)
        .await
    {
        Ok(true) => Redirect::to(CONNECTIONS_PATH).into_response(),
        Ok(false) => {
            render_connections(
                &state,
                &visitor,
                StatusCode::NOT_FOUND,
                Some("There was no such connection."),
            )
            .await
        }
        Err(err) => state.unavailable(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(date(1_796_670_300), "2026-12-07 19:05 UTC");
    }
}
