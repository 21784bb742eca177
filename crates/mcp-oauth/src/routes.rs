//! The public discovery routes, as an axum [`Router`]:
//!
//! - `GET /.well-known/oauth-protected-resource` and the path-suffixed
//!   `GET /.well-known/oauth-protected-resource/<mcp path>` (RFC 9728 §3.1): the
//!   protected-resource metadata, `resource` = the configured public URL;
//! - when the authorization servers' metadata is mirrored: `GET
//!   /.well-known/oauth-authorization-server` (plus the path-inserted variant when the issuer
//!   has a path) and `GET /.well-known/openid-configuration` (likewise): the upstream document
//!   byte for byte, cached, served stale while the upstream is down, and a 502 JSON error when
//!   it is down and nothing is cached. The root paths serve the first (preferred) server;
//!   every other server is served at its path-inserted paths when its issuer has a path no
//!   earlier server has.
//!
//! Every route answers CORS requests from any origin (the documents are public).
//!
//! # Deployment
//!
//! A reverse proxy in front must pass `/.well-known/*` through to this server, and must not
//! add credentials-bearing CORS headers to it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, header};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

use crate::oauth::OAuth;

/// The CORS policy of the metadata routes: any origin, `GET`, any request header.
pub fn metadata_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::OPTIONS])
        .allow_headers(AllowHeaders::any())
        .max_age(std::time::Duration::from_secs(86_400))
}

/// The CORS policy of the authorization server's token, registration and revocation
/// endpoints: any origin, `POST`, the `Authorization`, `Content-Type` and
/// `MCP-Protocol-Version` request headers, and no credentials (cookies are neither sent nor accepted). Browser-based MCP clients need
/// these endpoints; a cross-origin page gains nothing from them that it could not do without
/// a browser, because each request authenticates itself (PKCE verifier, client secret,
/// refresh token) and `/register` takes only `application/json`, which a browser preflights.
pub fn token_endpoint_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            http::HeaderName::from_static("mcp-protocol-version"),
            http::HeaderName::from_static("dpop"),
        ])
        .expose_headers(ExposeHeaders::list([http::HeaderName::from_static(
            "dpop-nonce",
        )]))
        .max_age(std::time::Duration::from_secs(86_400))
}

/// The CORS policy of the MCP endpoint: any origin (tokens travel in a header, never in
/// cookies), the MCP request headers and `DPoP` allowed, `WWW-Authenticate`,
/// `Mcp-Session-Id` and `DPoP-Nonce` exposed so browser clients can read challenges, sessions
/// and nonces.
pub fn mcp_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            http::HeaderName::from_static("mcp-protocol-version"),
            http::HeaderName::from_static("mcp-session-id"),
            http::HeaderName::from_static("last-event-id"),
            http::HeaderName::from_static("mcp-method"),
            http::HeaderName::from_static("mcp-name"),
            http::HeaderName::from_static("dpop"),
        ])
        .expose_headers(ExposeHeaders::list([
            header::WWW_AUTHENTICATE,
            http::HeaderName::from_static("mcp-session-id"),
            http::HeaderName::from_static("dpop-nonce"),
        ]))
        .max_age(std::time::Duration::from_secs(86_400))
}

impl OAuth {
    /// Only this resource's protected-resource metadata (RFC 9728 §3.1: the well-known path
    /// with the resource's path appended), as [`metadata_router`](Self::metadata_router)
    /// serves it: for another endpoint of a server that already serves the root paths (a
    /// gateway's upstream at `/NAME/mcp`, configured with [`OAuth::with_resource`]).
    pub fn resource_metadata_router(&self) -> Router {
        Router::new()
            .route(&self.resource().metadata_path(), get(protected_resource))
            .layer(metadata_cors())
            .with_state(Arc::new(self.clone()))
    }

    /// The discovery routes for this configuration (see the [module docs](crate::routes)).
    pub fn metadata_router(&self) -> Router {
        let mut router = Router::new().route(
            "/.well-known/oauth-protected-resource",
            get(protected_resource),
        );
        let suffixed = self.resource().metadata_path();
        if suffixed != "/.well-known/oauth-protected-resource" {
            router = router.route(&suffixed, get(protected_resource));
        }
        #[cfg(feature = "remote")]
        {
            // The first server at the root paths; each at its path-inserted ones (RFC 8414
            // §3.1), the first one configured winning when two issuers share a path.
            let mut taken = std::collections::HashSet::new();
            for (index, mirror) in self.metadata_mirrors().iter().enumerate() {
                let path = mirror.issuer().path().trim_end_matches('/').to_owned();
                for base in [
                    "/.well-known/oauth-authorization-server",
                    "/.well-known/openid-configuration",
                ] {
                    let route = format!("{base}{path}");
                    let routes = if index == 0 && !path.is_empty() {
                        vec![base.to_owned(), route]
                    } else {
                        vec![route]
                    };
                    for route in routes {
                        if taken.insert(route.clone()) {
                            router = router.route(&route, get(move |state| mirrored(state, index)));
                        }
                    }
                }
            }
        }
        router
            .layer(metadata_cors())
            .with_state(Arc::new(self.clone()))
    }
}

async fn protected_resource(
    State(oauth): State<Arc<OAuth>>,
    request: axum::extract::Request,
) -> Response {
    let peer = crate::forwarded::peer_addr(request.extensions());
    let resource = oauth.resource_for(request.headers(), peer);
    let doc = oauth.metadata_for(&resource);
    let mut response = axum::Json(doc).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

#[cfg(feature = "remote")]
async fn mirrored(State(oauth): State<Arc<OAuth>>, index: usize) -> Response {
    use http::StatusCode;

    let Some(mirror) = oauth.metadata_mirrors().get(index) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match mirror.get().await {
        Ok(doc) => {
            let mut response = (StatusCode::OK, doc.raw.clone()).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            response
        }
        Err(err) => {
            tracing::warn!(target: "mcp_oauth::metadata", error = %err, "authorization server metadata unavailable");
            let body = serde_json::json!({
                "error": "upstream_unavailable",
                "error_description": format!(
                    "the metadata of the authorization server {} cannot be fetched right now ({}); try again later",
                    mirror.issuer(), err.kind
                ),
            });
            (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
        }
    }
}
