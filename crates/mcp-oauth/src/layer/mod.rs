//! The bearer-token layer: a tower [`Layer`](tower_layer::Layer) that authenticates every
//! request before the inner service (and before its method routing) sees it.
//!
//! For each request, in this order:
//!
//! 1. CORS preflights (`OPTIONS` with `Access-Control-Request-Method`) pass untouched;
//! 2. an `access_token` in the query string is refused (400 `invalid_request`), as are two
//!    `Authorization` headers;
//! 3. no `Authorization: Bearer` (nor `DPoP`, when DPoP is on) → 401 with a challenge and no
//!    error code; a `Bearer` token where DPoP is required → 401 `invalid_token`;
//! 4. the token goes through the [`Authenticator`](crate::authenticator::Authenticator): invalid, expired or
//!    misdirected → 401 `invalid_token`; keys unreachable → 503;
//! 5. DPoP binding (RFC 9449 §7): a token bound to a key (`cnf.jkt`) presented as `Bearer` →
//!    401 `invalid_token`, whether DPoP is on or not; a `DPoP`-scheme token needs `cnf.jkt`
//!    and a valid proof in one `DPoP` header ([`dpop`](crate::dpop)) → else 401
//!    `invalid_dpop_proof`, or `use_dpop_nonce` with a `DPoP-Nonce` header;
//! 6. the baseline scopes, then, when the policy has per-method or per-tool scopes, the
//!    scopes of the JSON-RPC calls in the body → 403 `insufficient_scope` naming all of them;
//! 7. [`Auth`](crate::Auth) goes into the request extensions and the inner service is called.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use http::{Request, StatusCode, header};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use mcp_oauth::{OAuth, verify::JwtVerifier};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! let oauth = OAuth::builder()
//!     .resource("https://mcp.example.com/mcp")
//!     .authorization_server("https://auth.example.com")
//!     .scopes_supported(["mcp:read"])
//!     .verifier(JwtVerifier::builder().issuer("https://auth.example.com").hmac_secret([7u8; 32].as_slice()).build()?)
//!     .mirror_authorization_server(false)
//!     .build()?;
//! let service = ServiceBuilder::new()
//!     .layer(oauth.layer())
//!     .service(service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("hello"))))
//!     }));
//!
//! let response = service.oneshot(Request::new(Full::new(Bytes::new()))).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     response.headers()[header::WWW_AUTHENTICATE],
//!     r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp:read""#
//! );
//! # Ok(()) }
//! ```

mod dpop;
mod guard;
mod lists;
mod service;

pub(crate) use dpop::ResourceDpop;
pub(crate) use guard::Guard;
pub use service::{BearerAuth, BearerAuthLayer, ResponseBody, ResponseFuture};

/// Default largest JSON-RPC body read for the per-tool scope policy: 4 MiB (rmcp's limit).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
