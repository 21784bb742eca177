//! The outbound HTTP client for keys, metadata and introspection.
//!
//! Every request has a timeout, follows no redirects, caps the body size and refuses plain
//! `http` except to loopback hosts (unless [`HttpClientBuilder::insecure_allow_http`]).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use url::Url;

use crate::error::{ConfigError, FetchError, FetchErrorKind};
use crate::resource::is_loopback_url;

/// Default limit on a response body: 256 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024;

/// The HTTP client used for every outbound request. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    allow_http: bool,
    body_limit: usize,
}

/// Builds an [`HttpClient`].
#[derive(Debug)]
#[must_use]
pub struct HttpClientBuilder {
    timeout: Duration,
    connect_timeout: Duration,
    allow_http: bool,
    body_limit: usize,
}

impl Default for HttpClientBuilder {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            allow_http: false,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

impl HttpClientBuilder {
    /// Total time for a request, connection included. Default is 5 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time to establish a connection. Default is 3 seconds.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Largest response body accepted. Default is 256 KiB.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Allows plain `http` to any host. By default only loopback hosts may use `http`:
    /// keys fetched over an unauthenticated channel can be replaced by anyone on the path.
    pub fn insecure_allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// The TLS backend cannot be initialised.
    pub fn build(self) -> Result<HttpClient, ConfigError> {
        let inner = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcp-oauth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::invalid("http client", e.to_string()))?;
        Ok(HttpClient {
            inner,
            allow_http: self.allow_http,
            body_limit: self.body_limit,
        })
    }
}

/// Credentials for an outbound request.
#[derive(Clone, Copy)]
pub(crate) enum RequestAuth<'a> {
    None,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

/// A fetched response: status 200 and a bounded body.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl HttpClient {
    /// A client with the defaults: 5 s timeout, no redirects, 256 KiB bodies, https only
    /// (loopback excepted).
    ///
    /// # Errors
    ///
    /// The TLS backend cannot be initialised.
    pub fn new() -> Result<Self, ConfigError> {
        Self::builder().build()
    }

    /// A builder with the defaults.
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::default()
    }

    /// Checks that `url` may be fetched by this client.
    ///
    /// # Errors
    ///
    /// The scheme is not `https` (or `http` to loopback, or any `http` when allowed).
    pub fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.allow_http || is_loopback_url(url) => Ok(()),
            _ => Err(FetchError {
                url: url.to_string(),
                kind: FetchErrorKind::Refused("only https (or http to loopback) is allowed".into()),
            }),
        }
    }

    /// Checks a configured URL where it enters, as a configuration error.
    pub(crate) fn check_config_url(
        &self,
        field: &'static str,
        url: &Url,
    ) -> Result<(), ConfigError> {
        self.check_url(url).map_err(|e| {
            ConfigError::url(
                field,
                url.as_str(),
                format!(
                    "{}; build the HttpClient with insecure_allow_http() to allow it",
                    e.kind
                ),
            )
        })
    }

    /// GET `url` expecting 200, with the limits of this client; returns the headers and the
    /// body.
    ///
    /// # Errors
    ///
    /// The URL is refused, the request fails, the status is not 200, or the body is too large.
    pub async fn fetch(&self, url: &Url) -> Result<(HeaderMap, Bytes), FetchError> {
        let fetched = self.get_json(url).await?;
        Ok((fetched.headers, fetched.body))
    }

    /// GET `url` with credentials, expecting 200 with a JSON body.
    pub(crate) async fn get_json_with(
        &self,
        url: &Url,
        auth: RequestAuth<'_>,
    ) -> Result<Fetched, FetchError> {
        self.check_url(url)?;
        let mut request = self
            .inner
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json");
        match auth {
            RequestAuth::None => {}
            RequestAuth::Basic(user, password) => {
                request = request.basic_auth(form_urlencode(user), Some(form_urlencode(password)))
            }
            RequestAuth::Bearer(token) => request = request.bearer_auth(token),
        }
        self.send(url, request).await
    }

    /// GET `url` expecting 200 with a JSON body.
    pub(crate) async fn get_json(&self, url: &Url) -> Result<Fetched, FetchError> {
        self.check_url(url)?;
        let request = self
            .inner
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json");
        self.send(url, request).await
    }

    /// POST a form to `url` expecting 200 with a JSON body.
    pub(crate) async fn post_form(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        auth: RequestAuth<'_>,
    ) -> Result<Fetched, FetchError> {
        self.check_url(url)?;
        self.send(url, self.form_request(url, form, auth)).await
    }

    /// [`HttpClient::post_form`], with the answer's status and bounded body whatever the
    /// status: an OAuth endpoint's error answer (RFC 6749 §5.2) is read, not dropped.
    pub(crate) async fn post_form_answer(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        auth: RequestAuth<'_>,
    ) -> Result<(u16, Fetched), FetchError> {
        self.check_url(url)?;
        self.send_any(url, self.form_request(url, form, auth)).await
    }

    /// A form POST asking for JSON, with the client's credentials.
    fn form_request(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        auth: RequestAuth<'_>,
    ) -> reqwest::RequestBuilder {
        let request = self
            .inner
            .post(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .form(form);
        match auth {
            RequestAuth::None => request,
            RequestAuth::Basic(user, password) => {
                request.basic_auth(form_urlencode(user), Some(form_urlencode(password)))
            }
            RequestAuth::Bearer(token) => request.bearer_auth(token),
        }
    }

    async fn send(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Fetched, FetchError> {
        let response = request.send().await.map_err(|e| FetchError {
            url: url.to_string(),
            kind: classify(&e),
        })?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(FetchError {
                url: url.to_string(),
                kind: FetchErrorKind::Status(status.as_u16()),
            });
        }
        self.read(url, response).await
    }

    /// Sends, and reads the answer whatever its status.
    async fn send_any(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Fetched), FetchError> {
        let response = request.send().await.map_err(|e| FetchError {
            url: url.to_string(),
            kind: classify(&e),
        })?;
        let status = response.status().as_u16();
        Ok((status, self.read(url, response).await?))
    }

    /// The answer's headers and body, within the size limit.
    async fn read(
        &self,
        url: &Url,
        mut response: reqwest::Response,
    ) -> Result<Fetched, FetchError> {
        let error = |kind| FetchError {
            url: url.to_string(),
            kind,
        };
        if response
            .content_length()
            .is_some_and(|len| len > self.body_limit as u64)
        {
            return Err(error(FetchErrorKind::TooLarge {
                limit: self.body_limit,
            }));
        }
        let headers = response.headers().clone();
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| error(classify(&e)))? {
            if body.len() + chunk.len() > self.body_limit {
                return Err(error(FetchErrorKind::TooLarge {
                    limit: self.body_limit,
                }));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            headers,
            body: body.freeze(),
        })
    }
}

fn classify(err: &reqwest::Error) -> FetchErrorKind {
    if err.is_timeout() {
        FetchErrorKind::Timeout
    } else {
        // reqwest's Display includes the URL, which the FetchError already carries.
        FetchErrorKind::Network(err.without_url_ref())
    }
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut text = String::new();
        let mut source = std::error::Error::source(self);
        while let Some(inner) = source {
            text = inner.to_string();
            source = inner.source();
        }
        if text.is_empty() {
            if self.is_connect() {
                "connection failed".into()
            } else {
                "request failed".into()
            }
        } else {
            text
        }
    }
}

/// RFC 6749 §2.3.1: client credentials in HTTP Basic are form-urlencoded first.
fn form_urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// How long a response may be cached, from `Cache-Control`, clamped to `[min, max]`;
/// `default` when the header says nothing usable. `no-store`/`no-cache` mean `min`.
pub(crate) fn cache_ttl(
    headers: &HeaderMap,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Duration {
    let mut ttl = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                ttl = Some(Duration::ZERO);
            } else if let Some(secs) = lower.strip_prefix("max-age=")
                && let Ok(secs) = secs.trim_matches('"').parse::<u64>()
                && ttl.is_none()
            {
                ttl = Some(Duration::from_secs(secs));
            }
        }
    }
    ttl.unwrap_or(default).clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_str(value).expect("ascii"),
        );
        h
    }

    const MIN: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(86_400);
    const DEF: Duration = Duration::from_secs(600);

    #[test]
    fn cache_control_is_honoured_within_bounds() {
        assert_eq!(
            cache_ttl(&headers("public, max-age=3600"), DEF, MIN, MAX),
            Duration::from_secs(3600)
        );
        assert_eq!(cache_ttl(&headers("max-age=5"), DEF, MIN, MAX), MIN);
        assert_eq!(cache_ttl(&headers("max-age=99999999"), DEF, MIN, MAX), MAX);
        assert_eq!(cache_ttl(&headers("no-store"), DEF, MIN, MAX), MIN);
        assert_eq!(cache_ttl(&headers("max-age=abc"), DEF, MIN, MAX), DEF);
        assert_eq!(cache_ttl(&HeaderMap::new(), DEF, MIN, MAX), DEF);
    }

    #[test]
    fn http_is_refused_except_to_loopback() {
        let client = HttpClient::new().expect("client");
        let ok = [
            "https://idp.example.com/jwks",
            "http://127.0.0.1:9/jwks",
            "http://localhost/jwks",
            "http://[::1]/x",
        ];
        for url in ok {
            assert!(
                client.check_url(&Url::parse(url).expect("url")).is_ok(),
                "{url}"
            );
        }
        for url in [
            "http://idp.example.com/jwks",
            "ftp://idp.example.com/x",
            "file:///etc/passwd",
        ] {
            assert!(
                client.check_url(&Url::parse(url).expect("url")).is_err(),
                "{url}"
            );
        }
        let open = HttpClient::builder()
            .insecure_allow_http()
            .build()
            .expect("client");
        assert!(
            open.check_url(&Url::parse("http://idp.example.com/jwks").expect("url"))
                .is_ok()
        );
    }
}
