//! Signing in with a password at the login form: the [`LoginBackend`] says who the user is,
//! and password guessing backs off per account and per request (F5).

use std::sync::Arc;

use axum::response::Response;
use http::{HeaderMap, StatusCode};

use super::consent_page::{Consent, Decision};
use super::cookies::set_csrf_cookie;
use super::login::{LoginBackend, Throttle};
use super::pages::error_page;
use super::protocol::ErrorCode;
use super::respond::approve;
use super::server::{AuthServer, Begin, SignIn};
use super::store::{AuthRequestRecord, ClientRecord};
use crate::verify::BoxFuture;

/// The login form as a sign-in back-end.
pub(crate) struct PasswordSignIn {
    login: Arc<dyn LoginBackend>,
    throttle: Throttle,
}

impl PasswordSignIn {
    pub(crate) fn new(login: Arc<dyn LoginBackend>) -> Self {
        Self {
            login,
            throttle: Throttle::new(),
        }
    }
}

impl SignIn for PasswordSignIn {
    fn provider(&self) -> Option<(&str, String)> {
        None
    }

    /// With auto-approve, the back-end's automatic user, without the page.
    fn begin<'a>(
        &'a self,
        server: &'a AuthServer,
        _headers: &'a HeaderMap,
        request: &'a AuthRequestRecord,
    ) -> BoxFuture<'a, Begin> {
        Box::pin(async move {
            if !server.inner.config.auto_approve {
                return Begin::Page;
            }
            match self.login.auto_login() {
                Some(user) => Begin::Answer(approve(server, request, user, None).await),
                None => Begin::Refuse(ErrorCode::AccessDenied, "no user to sign in automatically"),
            }
        })
    }

    /// The user name and password of the form.
    fn finish<'a>(
        &'a self,
        server: &'a AuthServer,
        _headers: &'a HeaderMap,
        form: &'a Decision,
        request: AuthRequestRecord,
        client: &'a ClientRecord,
    ) -> BoxFuture<'a, Response> {
        Box::pin(async move {
            // The page again, with a message. The same words whether the user exists or not.
            let again = |error: &str| {
                let action = server.endpoint("/authorize");
                Consent {
                    action: &action,
                    request_id: &form.request_id,
                    request: &request,
                    client,
                    cookie: set_csrf_cookie(server, &request.csrf),
                    error: Some(error),
                    upstream: None,
                    signed_in_as: None,
                }
                .render()
            };
            // Password guessing backs off per account and per request, then locks the request (F5).
            let throttle = &self.throttle;
            let wait = throttle.wait(&form.username, &form.request_id);
            if !wait.is_zero() {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return again(&format!("Too many failed sign-ins. Try again in {secs} s."));
            }
            let Some(user) = self
                .login
                .authenticate(&form.username, &form.password)
                .await
            else {
                if throttle.fail(&form.username, &form.request_id) {
                    let _ = server.inner.store.take_request(&form.request_id).await;
                    tracing::warn!(target: "mcp_oauth::auth_server", client_id = %request.client_id, "sign-in request closed after too many failed passwords");
                    return error_page(
                        StatusCode::BAD_REQUEST,
                        "Too many failed sign-ins: this sign-in request is closed. Start again from the application.",
                    );
                }
                return again(
                    "Wrong user name or password. Each failed try makes the next one wait longer.",
                );
            };
            throttle.succeed(&form.username);
            match server.inner.store.take_request(&form.request_id).await {
                Ok(Some(request)) => {
                    tracing::info!(target: "mcp_oauth::auth_server", client_id = %request.client_id, subject = %user.subject, "authorization approved");
                    approve(server, &request, user, None).await
                }
                Err(err) => err.into_page(),
                Ok(None) => error_page(
                    StatusCode::BAD_REQUEST,
                    "This sign-in request was already used. Start again from the application.",
                ),
            }
        })
    }
}
