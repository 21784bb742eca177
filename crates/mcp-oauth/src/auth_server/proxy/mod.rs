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
//! The flow is in `flow` (start, callback, exchange, identify), the consent asked after the
//! callback in `consent`, the sealed upstream tokens in `tokens`; the provider's
//! configuration is [`Upstream`].

mod consent;
mod flow;
mod tokens;

pub(crate) use consent::confirm;
pub(crate) use flow::{callback, start};

pub use super::upstream::{
    CALLBACK_PATH, Identity, ProxyError, Upstream, UpstreamAuth, UpstreamBuilder,
};
