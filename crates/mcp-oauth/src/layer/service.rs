use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Either, Full, Limited};

use super::guard::Guard;
use crate::auth::Auth;
use crate::challenge::{Rejection, json_error};
use crate::error::VerifyError;
use crate::jsonrpc::peek_jsonrpc;
use crate::verify::BoxFuture;

/// The response body of [`BearerAuth`]: the inner service's, or a rejection's JSON.
pub type ResponseBody<B> = Either<B, Full<Bytes>>;

/// Applies [`BearerAuth`] to a service. Made by [`OAuth::layer`](crate::OAuth::layer); it
/// holds only what a request is checked against (the resource rule, the token pipeline, the
/// scope policy), shared with the configuration: cheap to clone.
#[derive(Debug, Clone)]
pub struct BearerAuthLayer {
    guard: Arc<Guard>,
}

impl BearerAuthLayer {
    pub(crate) fn new(guard: Arc<Guard>) -> Self {
        Self { guard }
    }
}

impl<S> tower_layer::Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// Authenticates requests before `S` sees them; see the [module docs](crate::layer).
#[derive(Debug, Clone)]
pub struct BearerAuth<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S> BearerAuth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, owned.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for BearerAuth<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Take the service that was driven to readiness and leave a clone in its place
        // (https://docs.rs/tower/latest/tower/trait.Service.html#be-careful-when-cloning-inner-services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            match authorize(&guard, req).await {
                Ok(req) => inner.call(req).await.map(|res| res.map(Either::Left)),
                Err(response) => Ok(response.map(Either::Right)),
            }
        })
    }
}

fn is_preflight<B>(req: &Request<B>) -> bool {
    req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Finds the bearer token: exactly one `Authorization` header with scheme `Bearer` (any case).
fn bearer_token(headers: &HeaderMap) -> Result<&str, Rejection> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(if headers.contains_key(header::AUTHORIZATION) {
            Rejection::InvalidRequest("send one Authorization header, not several")
        } else {
            Rejection::MissingToken
        });
    };
    let value = value.to_str().map_err(|_| {
        Rejection::InvalidToken(VerifyError::Malformed("Authorization header is not ASCII"))
    })?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::MissingToken);
    }
    let token = rest.trim_matches(' ');
    // RFC 6750 §2.1 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
    {
        return Err(Rejection::InvalidToken(VerifyError::Malformed(
            "the bearer token is not a b64token",
        )));
    }
    Ok(token)
}

fn query_has_token(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(name, _)| name == "access_token")
    })
}

fn too_large() -> Response<Full<Bytes>> {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        br#"{"error":"invalid_request","error_description":"the request body is too large"}"#,
    )
}

/// Runs the checks; on success returns the request (body restored if it was read) with
/// [`Auth`] in its extensions.
async fn authorize<B>(guard: &Guard, req: Request<B>) -> Result<Request<B>, Response<Full<Bytes>>>
where
    B: Body + From<Bytes>,
    B::Error: Into<BoxError>,
{
    if is_preflight(&req) {
        return Ok(req);
    }
    // Borrowed unless trusted-proxy mode builds it from the request: no copy per request.
    let resource = guard.resource_for(req.headers(), crate::forwarded::peer_addr(req.extensions()));
    let reject = |rejection: Rejection, path: &str| {
        log_rejection(&rejection, path);
        rejection.into_response(&resource.metadata_url(), guard.challenge_scopes())
    };
    if query_has_token(req.uri().query()) {
        return Err(reject(
            Rejection::InvalidRequest(
                "access tokens are not accepted in the query string; send them in the Authorization header",
            ),
            req.uri().path(),
        ));
    }
    let token = match bearer_token(req.headers()) {
        Ok(token) => token,
        Err(rejection) => return Err(reject(rejection, req.uri().path())),
    };
    let auth = match guard.authenticator().authenticate(token, &resource).await {
        Ok(auth) => auth,
        Err(err) => return Err(reject(Rejection::from_verify_error(err), req.uri().path())),
    };
    let policy = guard.policy();
    let insufficient = |required: Vec<String>| Rejection::InsufficientScope { required };
    if !auth.has_scopes(policy.baseline().iter().map(String::as_str)) {
        return Err(reject(
            insufficient(policy.baseline().to_vec()),
            req.uri().path(),
        ));
    }
    let req = if policy.needs_body() && req.method() == Method::POST {
        let (parts, body) = req.into_parts();
        let bytes = match Limited::new(body, guard.max_body_bytes()).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Err(too_large()),
        };
        let calls = match peek_jsonrpc(&bytes) {
            Ok(calls) => calls,
            Err(_) => {
                return Err(reject(
                    Rejection::InvalidRequest("the body is not a JSON-RPC message"),
                    parts.uri.path(),
                ));
            }
        };
        let required = policy.required_for(&calls);
        if !auth.has_scopes(required.iter().map(String::as_str)) {
            return Err(reject(insufficient(required), parts.uri.path()));
        }
        Request::from_parts(parts, B::from(bytes))
    } else {
        req
    };
    let mut req = req;
    req.extensions_mut().insert::<Auth>(auth);
    Ok(req)
}

fn log_rejection(rejection: &Rejection, path: &str) {
    match rejection {
        Rejection::InvalidToken(err) | Rejection::Unavailable(err) => {
            tracing::debug!(target: "mcp_oauth::auth", status = rejection.status().as_u16(), kind = ?err.kind(), reason = %err, path, "request rejected");
        }
        _ => {
            tracing::debug!(target: "mcp_oauth::auth", status = rejection.status().as_u16(), path, "request rejected")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                header::AUTHORIZATION,
                http::HeaderValue::from_str(v).expect("ascii"),
            );
        }
        h
    }

    #[test]
    fn scheme_is_case_insensitive_and_token_is_b64token() {
        for ok in ["Bearer abc", "bearer abc.def-_~+/==", "BEARER  abc "] {
            assert!(bearer_token(&headers(&[ok])).is_ok(), "{ok}");
        }
        assert!(matches!(
            bearer_token(&headers(&[])),
            Err(Rejection::MissingToken)
        ));
        assert!(matches!(
            bearer_token(&headers(&["Basic YTpi"])),
            Err(Rejection::MissingToken)
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearerabc"])),
            Err(Rejection::MissingToken)
        ));
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a\"b",
            "Bearer ===",
            "Bearer a,b",
        ] {
            assert!(
                matches!(
                    bearer_token(&headers(&[bad])),
                    Err(Rejection::InvalidToken(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(Rejection::InvalidRequest(_))
        ));
    }

    #[test]
    fn query_tokens_are_detected() {
        assert!(query_has_token(Some("access_token=abc")));
        assert!(query_has_token(Some("x=1&access_token=")));
        assert!(query_has_token(Some("access%5Ftoken=abc")));
        assert!(!query_has_token(Some("token=abc")));
        assert!(!query_has_token(None));
    }
}
