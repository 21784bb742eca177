//! Proxy mode: the authorization server signs users in at an upstream identity provider that
//! has no dynamic client registration (Google, GitHub, Okta, Entra ID, any OIDC issuer).
//!
//! MCP clients register with this server, each with its own client id. The browser leg is:
//!
//! ```text
//! client ─▶ /authorize (checked like any request) ─▶ consent page (once per browser and client)
//!        ─▶ upstream /authorize (our client id, PKCE, a random single-use state kept here,
//!           and a cookie binding that state to this browser)
//!        ─▶ /oauth/callback (refused without the binding cookie) ─▶ code exchanged upstream,
//!           user identified ─▶ consent page again if THIS user never allowed this client
//!        ─▶ upstream tokens sealed ─▶ client redirect URI with OUR code, state and iss
//! ```
//!
//! Two defences keep a sign-in from being completed in someone else's browser (a login CSRF
//! that would hand the victim's account to whoever approved the client):
//!
//! - `start` sets a cookie (`__Host-` prefixed on `https` issuers; `HttpOnly; SameSite=Lax`)
//!   carrying an HMAC of the upstream `state`; the callback consumes the state first, then
//!   refuses it unless the cookie matches. A browser that was sent the provider's URL by
//!   someone else has no such cookie, and the state is gone for everyone.
//! - Consent is recorded on the server per user and client (with the scopes allowed). After
//!   the callback, a user without a recorded consent for the client sees the consent page,
//!   naming the account they signed in with, before any code is issued.
//!
//! The client then gets **our** tokens (audience = the MCP resource); upstream tokens never
//! leave this server. They are stored sealed with AES-256-GCM under a configured key, and
//! tool code asks for them with [`AuthServer::upstream_token`](super::AuthServer::upstream_token).
//!
//! Here the provider is a sign-in back-end (`ProxySignIn`, its state in `state`); the flow
//! is in `flow` (start, callback, exchange, identify), the consent asked after the callback
//! in `consent`, the sealed upstream tokens in `tokens`; the provider's configuration is
//! [`Upstream`].

mod consent;
mod flow;
mod github_groups;
mod state;
mod tokens;

use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

pub(crate) use state::ProxySignIn;

pub use super::upstream::{
    CALLBACK_PATH, Identity, ProxyError, Upstream, UpstreamBuilder, UserMapping,
};
use crate::auth_server::consent_page::Decision;
use crate::auth_server::cookies::{approved_clients, consent_cookie, consent_cookie_name, cookie};
use crate::auth_server::pages::error_page;
use crate::auth_server::server::{AuthServer, Begin, SignIn};
use crate::auth_server::store::{AuthRequestRecord, ClientRecord};
use crate::secret::Secret;
use crate::verify::BoxFuture;

impl ProxySignIn {
    /// Client ids this browser allowed (the signed consent cookie).
    fn approved(&self, server: &AuthServer, headers: &HeaderMap) -> Vec<(String, i64)> {
        approved_clients(
            &self.sealer,
            cookie(headers, consent_cookie_name(server)).as_deref(),
        )
    }
}

impl SignIn for ProxySignIn {
    fn provider(&self) -> Option<(&str, String)> {
        Some((self.upstream.name.as_str(), self.upstream.origin()))
    }

    /// Straight to the provider with auto-approve, or when this browser allowed the client
    /// before; the consent page otherwise.
    fn begin<'a>(
        &'a self,
        server: &'a AuthServer,
        headers: &'a HeaderMap,
        request: &'a AuthRequestRecord,
    ) -> BoxFuture<'a, Begin> {
        Box::pin(async move {
            let approved = self.approved(server, headers);
            if server.inner.config.auto_approve
                || approved.iter().any(|(id, _)| *id == request.client_id)
            {
                Begin::Answer(flow::start(server, self, request.clone()).await)
            } else {
                Begin::Page
            }
        })
    }

    /// The consent is given: remember it for this browser, then sign in upstream.
    fn finish<'a>(
        &'a self,
        server: &'a AuthServer,
        headers: &'a HeaderMap,
        form: &'a Decision,
        _request: AuthRequestRecord,
        _client: &'a ClientRecord,
    ) -> BoxFuture<'a, Response> {
        Box::pin(async move {
            let request = match server.inner.store.take_request(&form.request_id).await {
                Ok(request) => request,
                Err(err) => return err.into_page(),
            };
            let Some(request) = request else {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "This sign-in request was already used. Start again from the application.",
                );
            };
            let approved = self.approved(server, headers);
            let remember = consent_cookie(
                server,
                &self.sealer,
                self.consent_ttl,
                approved,
                &request.client_id,
            );
            let mut response = flow::start(server, self, request).await;
            if let Some(value) = remember
                .filter(|_| !self.consent_ttl.is_zero())
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        })
    }

    /// The consent page shown after the provider's answer.
    fn resume<'a>(
        &'a self,
        server: &'a AuthServer,
        headers: &'a HeaderMap,
        form: &'a Decision,
    ) -> BoxFuture<'a, Option<Response>> {
        Box::pin(consent::confirm(
            server,
            self,
            headers,
            &form.request_id,
            &form.csrf,
            form.decision == "approve",
        ))
    }

    fn callback<'a>(
        &'a self,
        server: &'a AuthServer,
        headers: &'a HeaderMap,
        query: Option<String>,
    ) -> BoxFuture<'a, Response> {
        Box::pin(flow::callback(server, self, headers, query))
    }

    fn upstream_token<'a>(
        &'a self,
        server: &'a AuthServer,
        family: &'a str,
    ) -> BoxFuture<'a, Result<Secret, ProxyError>> {
        Box::pin(tokens::refreshed_token(server, self, family))
    }

    fn revoked<'a>(&'a self, server: &'a AuthServer, family: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(tokens::revoke_upstream(server, self, family))
    }
}
