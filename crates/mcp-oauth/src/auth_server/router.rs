//! The routes of the authorization server, each with its rate limit and CORS policy.

use axum::Router;
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};
use serde_json::Value;

use super::http::{BODY_LIMIT, json_response, too_large};
use super::rate::{self, RateLimit};
use super::server::AuthServer;
use super::{authorize, proxy, register, revoke, token};

impl AuthServer {
    /// The routes: metadata (at the well-known paths, path-inserted when the issuer has a
    /// path), JWKS, authorize, token, register, revoke, each with the CORS policy the
    /// [module docs](crate::auth_server) list.
    pub fn router(&self) -> Router {
        let base = self
            .inner
            .config
            .issuer_url
            .path()
            .trim_end_matches('/')
            .to_owned();
        let limited = |router: axum::routing::MethodRouter<AuthServer>,
                       limit: Option<RateLimit>| match limit {
            Some(limit) => router.layer(axum::middleware::from_fn_with_state(
                rate::Limiter::new(limit, &self.inner.limits.trusted_proxies),
                rate::limit,
            )),
            None => router,
        };
        let endpoints = Router::new()
            .route(
                "/authorize",
                limited(
                    get(authorize::show).post(authorize::submit),
                    self.inner.limits.authorize,
                ),
            )
            .route(
                "/token",
                limited(post(token::token), self.inner.limits.token)
                    .layer(crate::routes::token_endpoint_cors()),
            )
            .route(
                "/register",
                limited(post(register::register), self.inner.limits.register)
                    .layer(crate::routes::token_endpoint_cors()),
            )
            .route(
                "/revoke",
                limited(post(revoke::revoke), self.inner.limits.token)
                    .layer(crate::routes::token_endpoint_cors()),
            )
            .route("/jwks", get(jwks).layer(crate::routes::metadata_cors()))
            .route(
                proxy::CALLBACK_PATH,
                limited(get(authorize::callback), self.inner.limits.authorize),
            );
        let endpoints = if base.is_empty() {
            endpoints
        } else {
            Router::new().nest(&base, endpoints)
        };
        let mut router = endpoints;
        for well_known in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ] {
            router = router.route(
                &format!("{well_known}{base}"),
                get(metadata).layer(crate::routes::metadata_cors()),
            );
        }
        if !base.is_empty() {
            router = router.route(
                &format!("{base}/.well-known/openid-configuration"),
                get(metadata).layer(crate::routes::metadata_cors()),
            );
        }
        // CORS is per route (see the module docs): none on the pages a browser navigates to.
        router
            .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
            .layer(axum::middleware::map_response(too_large))
            .with_state(self.clone())
    }
}

async fn metadata(axum::extract::State(server): axum::extract::State<AuthServer>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::to_value(server.metadata()).unwrap_or(Value::Null),
    )
}

async fn jwks(axum::extract::State(server): axum::extract::State<AuthServer>) -> Response {
    let mut response = json_response(
        StatusCode::OK,
        &serde_json::to_value(server.inner.tokens.keys.jwks()).unwrap_or(Value::Null),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
