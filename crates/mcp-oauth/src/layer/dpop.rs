//! DPoP at the resource server (RFC 9449 §7): what the bearer layer checks for a request that
//! presents its token with the `DPoP` scheme, and the rule that a bound token is never
//! accepted as a bearer token.

use http::{HeaderMap, Method, header};
use url::Url;

use crate::auth::Auth;
use crate::challenge::{DpopChallenge, Rejection};
use crate::dpop::{self, DpopRequest, DpopVerifier};
use crate::resource::ResourceUrl;

/// The `DPoP` request header.
const DPOP: header::HeaderName = header::HeaderName::from_static("dpop");

/// The resource server's DPoP settings: the proof verifier, whether bearer tokens are still
/// accepted, and the `algs` of the challenges.
#[derive(Debug, Clone)]
pub(crate) struct ResourceDpop {
    verifier: DpopVerifier,
    required: bool,
    algs: String,
}

impl ResourceDpop {
    pub(crate) fn new(verifier: DpopVerifier, required: bool) -> Self {
        let algs = verifier
            .algorithms()
            .iter()
            .map(|alg| alg.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            verifier,
            required,
            algs,
        }
    }

    /// Whether every token must be DPoP-bound (`dpop_bound_access_tokens_required`).
    pub(crate) fn required(&self) -> bool {
        self.required
    }

    /// The proof verifier.
    pub(crate) fn verifier(&self) -> &DpopVerifier {
        &self.verifier
    }

    /// What the challenges of a request with these headers say about DPoP.
    pub(crate) fn challenge(&self, headers: &HeaderMap) -> DpopChallenge<'_> {
        DpopChallenge {
            algs: &self.algs,
            presented: presents_dpop(headers),
        }
    }

    /// Checks the proof of a request whose `DPoP`-scheme token verified as `auth`: the token
    /// must be bound (`cnf.jkt`), and the request's one `DPoP` header a fresh proof by that
    /// key for this method, this public URL and this token.
    pub(crate) async fn check(
        &self,
        parts: &RequestView<'_>,
        resource: &ResourceUrl,
        token: &str,
        auth: &Auth,
        now: i64,
    ) -> Result<(), Rejection> {
        let jkt = match dpop::confirmation_jkt(&auth.claims) {
            Ok(Some(jkt)) => jkt,
            Ok(None) => {
                return Err(Rejection::WrongScheme(
                    "the access token is not bound to a key (no cnf.jkt): present it with the Bearer scheme",
                ));
            }
            Err(err) => return Err(Rejection::InvalidToken(err)),
        };
        let url = request_url(resource, parts.path);
        let request = DpopRequest::new(parts.method, &url).access_token(token, jkt);
        self.verifier
            .verify(parts.headers.get_all(DPOP), &request, now)
            .await
            .map(|_| ())
            .map_err(Rejection::InvalidProof)
    }
}

/// The part of a request a proof is checked against.
pub(crate) struct RequestView<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    /// The method, the path the client addressed (axum's `OriginalUri` when the service is
    /// nested under a prefix) and the headers.
    pub(crate) fn of<B>(req: &'a http::Request<B>) -> Self {
        #[cfg(feature = "axum")]
        let path = req
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .map_or(req.uri().path(), |original| original.0.path());
        #[cfg(not(feature = "axum"))]
        let path = req.uri().path();
        Self {
            method: req.method(),
            path,
            headers: req.headers(),
        }
    }
}

/// The URL the client addressed: the public origin of the resource (the configured one, or a
/// trusted proxy's), never the `Host` header, with the request's path. Query and fragment
/// play no part in `htu`.
fn request_url(resource: &ResourceUrl, path: &str) -> Url {
    let mut url = resource.url().clone();
    url.set_query(None);
    url.set_fragment(None);
    url.set_path(path);
    url
}

/// Whether the request's `Authorization` header uses the `DPoP` scheme (any case).
pub(crate) fn presents_dpop(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().split_at_checked(5))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case(b"dpop "))
}

/// A bound token is never a bearer token (RFC 9449 §7.2): the `Bearer` scheme with a token
/// that has `cnf.jkt` is refused, whether or not this server accepts DPoP.
pub(crate) fn refuse_bound_bearer(auth: &Auth) -> Result<(), Rejection> {
    match dpop::confirmation_jkt(&auth.claims) {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(Rejection::WrongScheme(
            "the access token is bound to a key (cnf.jkt): present it with the DPoP scheme and a DPoP proof",
        )),
        Err(err) => Err(Rejection::InvalidToken(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_url_takes_the_public_origin_and_the_request_path() {
        let resource = ResourceUrl::parse("https://mcp.example.com/mcp").expect("url");
        assert_eq!(
            request_url(&resource, "/mcp").as_str(),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            request_url(&resource, "/mcp/sub").as_str(),
            "https://mcp.example.com/mcp/sub"
        );
    }

    #[test]
    fn the_dpop_scheme_is_recognised_in_any_case() {
        let mut headers = HeaderMap::new();
        for (value, dpop) in [
            ("DPoP abc", true),
            ("dpop abc", true),
            ("DPOP abc", true),
            ("Bearer abc", false),
            ("DPoPabc", false),
            ("DPo", false),
        ] {
            headers.insert(header::AUTHORIZATION, value.parse().expect("ascii"));
            assert_eq!(presents_dpop(&headers), dpop, "{value}");
        }
    }
}
