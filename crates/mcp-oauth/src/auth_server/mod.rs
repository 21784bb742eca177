//! An OAuth 2.1 authorization server, embeddable: the development server behind
//! `mcp-oauth dev`, and the core the OAuth proxy builds on.
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /.well-known/oauth-authorization-server`, `/.well-known/openid-configuration` | RFC 8414 metadata |
//! | `GET /jwks` | the public signing keys |
//! | `GET /authorize` | validates the request (PKCE S256 required, exact redirect URI with the RFC 8252 loopback rule, `resource`), then shows the login and consent page, or answers at once with auto-approve |
//! | `POST /authorize` | the page's form: CSRF-checked, then a code (single use, 60 s) back to the client, with `iss` (RFC 9207) |
//! | `POST /token` | `authorization_code` (client, redirect URI, PKCE and resource checked before the code is used; a second use revokes the grant), `refresh_token` (rotation; reuse revokes the family), `client_credentials` (only machine clients the operator made, with their own scopes); the client authenticates with the method it registered |
//! | `POST /token`, `urn:ietf:params:oauth:grant-type:jwt-bearer` | when configured: an Identity Assertion JWT Authorization Grant from a [`TrustedIdp`] (Enterprise-Managed Authorization) for an authenticated client, or a workload's token from a [`WorkloadIssuer`] for the client it maps to; see `jwt_bearer` |
//! | `POST /register` | RFC 7591 dynamic registration, per the [`Registration`] policy: `application/json` of at most 8 KiB, unknown members dropped, unused registrations lapse after 24 h |
//! | `POST /revoke` | RFC 7009 |
//!
//! # CORS
//!
//! Cross-origin browser access is allowed per endpoint, never with credentials (cookies are
//! not sent, and no response carries `Access-Control-Allow-Credentials`):
//!
//! | endpoint | CORS | why |
//! |---|---|---|
//! | metadata, `/jwks` | any origin, `GET` | public documents; browser-based MCP clients discover the server |
//! | `/token`, `/revoke` | any origin, `POST`, headers `Authorization`, `Content-Type` | browser-based MCP clients redeem codes, refresh and revoke; the client authenticates in the request itself (PKCE, secret), and a cross-origin page has neither |
//! | `/register` | as `/token` | browser-based MCP clients register; the body must be `application/json`, which a browser sends cross-origin only after a preflight, and open registration yields no client that gets tokens without a user |
//! | `/authorize`, the proxy callback | none | pages a browser navigates to; the consent form is CSRF-protected and only same-origin |
//!
//! # Resources
//!
//! Tokens name their resource (RFC 8707) in `aud`. With resources configured
//! ([`AuthServerBuilder::resource`]), a request's `resource` must be one of them, and the
//! first is the default. With none configured, a request naming a `resource` is refused
//! (`invalid_target`) and tokens carry no `aud`: the audience is never a URL the client chose.
//!
//! `client_id`s that are `https` URLs are Client ID Metadata Documents: fetched through an SSRF
//! guard, size- and time-limited, cached by their HTTP cache headers.
//!
//! Access tokens are JWTs (`typ: at+jwt`) with `iss`, `sub`, `aud` (the RFC 8707 resource),
//! `exp`, `iat`, `jti`, `scope`, `client_id` and `sid` (the grant, for revocation). Refresh
//! tokens and codes are random, and stored only as their SHA-256.
//!
//! # Rooms
//!
//! `server` holds the state ([`AuthServer`]: config, store, tokens, client policy, limits and
//! the sign-in back-end) and the `SignIn` contract; `builder` builds it; `router` mounts
//! the endpoints `authorize`, `token`, `register` and `revoke`. Beside them: `clients`
//! (finding and authenticating clients), `assertion` (`private_key_jwt`), `jwt_bearer` (the
//! JWT-bearer grant: [`TrustedIdp`], [`WorkloadIssuer`]), `registration` (client metadata
//! rules), `mint` (access tokens), `respond` (answers at the client's redirect URI),
//! `cookies`, `pages` and `consent_page`, `http` (JSON answers, errors, random tokens). The sign-in back-ends are
//! `password` (the login form, with a [`LoginBackend`]) and [`proxy`] (an upstream identity
//! provider, configured with [`Upstream`]).

#[cfg(feature = "policy")]
mod access;
mod assertion;
mod authorize;
mod builder;
mod cimd;
mod client_spec;
mod clients;
mod consent_page;
mod cookies;
mod http;
mod issue;
mod jwt_bearer;
mod keys;
mod login;
mod mint;
mod pages;
mod password;
mod protocol;
pub mod proxy;
mod rate;
mod register;
mod registration;
mod respond;
mod revoke;
mod router;
mod seal;
mod server;
pub mod store;
mod token;
mod upstream;

pub use builder::AuthServerBuilder;

/// The frame of the server's pages and the sealing of its cookies, for pages of programs
/// built on this server (the gateway's own pages), so that they look and seal alike. Not a
/// stable API.
#[doc(hidden)]
pub mod page_kit {
    pub use super::cookies::{append_cookie, cookie};
    pub use super::http::{hash_hex, random_token};
    pub use super::pages::{escape, page};
    pub use super::seal::Sealer;
}
pub use cimd::CimdOptions;
pub use client_spec::ClientSpec;
pub use jwt_bearer::{ID_JAG_TYP, TrustedIdp, WorkloadIssuer};
pub use keys::KeyRing;
pub use login::{DevUsers, LoginBackend, UserIdentity};
pub use mint::Grant;
pub use protocol::{ApplicationType, ClientAuthMethod, GrantType, UnknownName};
pub use rate::RateLimit;
pub use registration::Registration;
pub use seal::SealingKey;
pub use server::{AuthServer, Lifetimes};
pub use store::{MemoryStore, Store};
pub use upstream::{Identity, ProxyError, Upstream, UpstreamBuilder, UserMapping};
