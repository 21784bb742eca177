//! RFC 6750 §3 `WWW-Authenticate` challenges, built in one place, and a parser for them.
//!
//! The rules (MCP authorization, RFC 6750 §3.1, RFC 9728 §5.1):
//!
//! | case | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no bearer credentials | 401 | `Bearer resource_metadata="…", scope="…"` (no `error`) |
//! | malformed request (two `Authorization` headers, token in the query) | 400 | `Bearer error="invalid_request", error_description="…", resource_metadata="…", scope="…"` |
//! | invalid, expired or misdirected token | 401 | `Bearer error="invalid_token", error_description="…", resource_metadata="…", scope="…"` |
//! | valid token, too few scopes | 403 | `Bearer error="insufficient_scope", error_description="…", resource_metadata="…", scope="<every scope this operation needs>"` |
//!
//! `scope` is omitted when no scope is known. Values never contain `"` or `\`, so the
//! simple parsers real clients use read them correctly.
//!
//! With DPoP on (RFC 9449 §7.1), every challenge is followed by a `DPoP` one, Bearer first so
//! that clients reading only the first challenge still find `resource_metadata`:
//!
//! | case | status | `WWW-Authenticate` |
//! |---|---|---|
//! | no credentials, or an error of a `Bearer` request | 401/400/403 | the `Bearer` challenge above, then `DPoP algs="ES256 …"` |
//! | an error of a `DPoP` request (invalid token, too few scopes) | 401/403 | `Bearer resource_metadata="…", scope="…"`, then `DPoP error="…", error_description="…", algs="…"` |
//! | a refused proof | 401 | `Bearer resource_metadata="…", scope="…"`, then `DPoP error="invalid_dpop_proof", error_description="…", algs="…"` |
//! | a proof without a live server nonce | 401 | as above with `error="use_dpop_nonce"`, and a `DPoP-Nonce` header |

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::dpop::DpopError;
use crate::error::VerifyError;

/// An RFC 6750 §3.1 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// 400: the request is malformed.
    InvalidRequest,
    /// 401: the token is expired, revoked, malformed or otherwise invalid.
    InvalidToken,
    /// 403: the token lacks scopes this request needs.
    InsufficientScope,
}

impl BearerError {
    /// The registered code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
        }
    }

    /// The status that goes with it.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
        }
    }
}

/// A `Bearer` challenge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    /// The error, absent when the request carried no credentials.
    pub error: Option<BearerError>,
    /// Human-readable text (never a token or internal detail).
    pub error_description: Option<String>,
    /// The protected-resource metadata URL (RFC 9728 §5.1).
    pub resource_metadata: Option<String>,
    /// The scopes needed.
    pub scope: Vec<String>,
}

/// Drops what may not appear in a quoted-string parameter value, and anything outside
/// printable ASCII, so clients with simple regex parsers read the value intact.
fn clean(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .collect()
}

impl Challenge {
    /// The header value: `Bearer` then `error`, `error_description`, `resource_metadata`,
    /// `scope`, each present only when set.
    pub fn to_header_string(&self) -> String {
        let mut params: Vec<String> = Vec::with_capacity(4);
        if let Some(error) = self.error {
            params.push(format!("error=\"{}\"", error.as_str()));
        }
        if let Some(description) = &self.error_description {
            params.push(format!("error_description=\"{}\"", clean(description)));
        }
        if let Some(url) = &self.resource_metadata {
            params.push(format!("resource_metadata=\"{}\"", clean(url)));
        }
        let scope: Vec<String> = self
            .scope
            .iter()
            .map(|s| clean(s))
            .filter(|s| !s.is_empty() && !s.contains(' '))
            .collect();
        if !scope.is_empty() {
            params.push(format!("scope=\"{}\"", scope.join(" ")));
        }
        if params.is_empty() {
            "Bearer".to_owned()
        } else {
            format!("Bearer {}", params.join(", "))
        }
    }

    /// As a header value.
    pub fn to_header_value(&self) -> HeaderValue {
        // `clean` leaves printable ASCII only, which is always a valid header value.
        HeaderValue::from_str(&self.to_header_string())
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

/// Why a request was refused before reaching the service.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Rejection {
    /// No bearer token: 401 without an error code.
    MissingToken,
    /// The request is malformed: 400 `invalid_request`.
    InvalidRequest(&'static str),
    /// The token is not accepted: 401 `invalid_token`.
    InvalidToken(VerifyError),
    /// The token lacks scopes: 403 `insufficient_scope` naming all of `required`.
    InsufficientScope {
        /// Every scope the operation needs.
        required: Vec<String>,
    },
    /// The token could not be checked (keys or introspection unreachable): 503.
    Unavailable(VerifyError),
    /// The token and the authorization scheme disagree (RFC 9449 §7.1, §7.2): a DPoP-bound
    /// token (`cnf.jkt`) presented as `Bearer`, a `DPoP`-scheme token that is not bound, a
    /// `Bearer` token where DPoP is required, or the `DPoP` scheme where DPoP is off. 401
    /// `invalid_token` with this text.
    WrongScheme(&'static str),
    /// The DPoP proof is not accepted: 401 `invalid_dpop_proof`, or `use_dpop_nonce` with a
    /// `DPoP-Nonce` header; 503 when the replay cache could not answer.
    InvalidProof(DpopError),
}

/// What a rejection's challenges say about DPoP when the resource server accepts it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DpopChallenge<'a> {
    /// The accepted proof algorithms, space-separated (the `algs` parameter).
    pub(crate) algs: &'a str,
    /// The request used the `DPoP` scheme: its error goes in the `DPoP` challenge.
    pub(crate) presented: bool,
}

impl Rejection {
    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken(_) | Self::WrongScheme(_) => {
                StatusCode::UNAUTHORIZED
            }
            Self::InvalidProof(DpopError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidProof(_) => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Classifies a verification failure: 503 for [`VerifyError::Unavailable`], else 401.
    pub fn from_verify_error(err: VerifyError) -> Self {
        if matches!(err, VerifyError::Unavailable(_)) {
            Self::Unavailable(err)
        } else {
            Self::InvalidToken(err)
        }
    }

    /// The challenge for this rejection; `baseline` is the scope list of a 401/400.
    pub fn challenge(&self, resource_metadata: &str, baseline: &[String]) -> Option<Challenge> {
        let resource_metadata = Some(resource_metadata.to_owned());
        Some(match self {
            Self::MissingToken => Challenge {
                resource_metadata,
                scope: baseline.to_vec(),
                ..Challenge::default()
            },
            Self::InvalidRequest(description) => Challenge {
                error: Some(BearerError::InvalidRequest),
                error_description: Some((*description).to_owned()),
                resource_metadata,
                scope: baseline.to_vec(),
            },
            Self::InvalidToken(err) => Challenge {
                error: Some(BearerError::InvalidToken),
                error_description: Some(err.public_description().to_owned()),
                resource_metadata,
                scope: baseline.to_vec(),
            },
            Self::WrongScheme(description) => Challenge {
                error: Some(BearerError::InvalidToken),
                error_description: Some((*description).to_owned()),
                resource_metadata,
                scope: baseline.to_vec(),
            },
            // The proof's error belongs to the DPoP challenge; Bearer keeps the discovery.
            Self::InvalidProof(DpopError::Unavailable(_)) => return None,
            Self::InvalidProof(_) => Challenge {
                resource_metadata,
                scope: baseline.to_vec(),
                ..Challenge::default()
            },
            Self::InsufficientScope { required } => Challenge {
                error: Some(BearerError::InsufficientScope),
                error_description: Some(
                    "the access token lacks a scope this request needs".to_owned(),
                ),
                resource_metadata,
                scope: required.clone(),
            },
            Self::Unavailable(_) => return None,
        })
    }

    fn body(&self) -> serde_json::Value {
        let (error, description) = match self {
            Self::MissingToken => (
                "unauthorized",
                "authentication required: send an access token in the Authorization header",
            ),
            Self::InvalidRequest(description) => ("invalid_request", *description),
            Self::InvalidToken(err) => ("invalid_token", err.public_description()),
            Self::InsufficientScope { .. } => (
                "insufficient_scope",
                "the access token lacks a scope this request needs",
            ),
            Self::Unavailable(err) => ("temporarily_unavailable", err.public_description()),
            Self::WrongScheme(description) => ("invalid_token", *description),
            Self::InvalidProof(err) => (
                err.error_code().unwrap_or("temporarily_unavailable"),
                err.public_description(),
            ),
        };
        let mut body = serde_json::json!({ "error": error, "error_description": description });
        if let (Self::InsufficientScope { required }, Some(map)) = (self, body.as_object_mut()) {
            map.insert("scope".into(), required.join(" ").into());
        }
        body
    }

    /// The complete response: status, `WWW-Authenticate` (except for 503, which gets
    /// `Retry-After`), a JSON body with `error` and `error_description`, `Cache-Control:
    /// no-store`, and the [`VerifyError`] (or [`DpopError`]) in the response extensions when
    /// there is one.
    pub fn into_response(
        self,
        resource_metadata: &str,
        baseline: &[String],
    ) -> Response<Full<Bytes>> {
        self.into_response_with(resource_metadata, baseline, None)
    }

    /// [`Rejection::into_response`], with a `DPoP` challenge after the `Bearer` one when the
    /// resource server accepts DPoP, and the `DPoP-Nonce` header of a `use_dpop_nonce`.
    pub(crate) fn into_response_with(
        self,
        resource_metadata: &str,
        baseline: &[String],
        dpop: Option<DpopChallenge<'_>>,
    ) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body().to_string())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let dpop_error = dpop.is_some_and(|d| d.presented) || matches!(self, Self::InvalidProof(_));
        let bearer = if dpop_error && dpop.is_some() {
            // The error goes in the DPoP challenge: Bearer keeps the discovery parameters.
            self.challenge(resource_metadata, baseline)
                .map(|challenge| Challenge {
                    error: None,
                    error_description: None,
                    ..challenge
                })
        } else {
            self.challenge(resource_metadata, baseline)
        };
        match bearer {
            Some(challenge) => {
                let mut value = challenge.to_header_string();
                if let Some(dpop) = dpop {
                    value.push_str(", ");
                    value.push_str(&self.dpop_challenge(dpop, dpop_error));
                }
                let value =
                    HeaderValue::from_str(&value).unwrap_or_else(|_| challenge.to_header_value());
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
            None => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
        }
        if let Self::InvalidProof(DpopError::UseNonce { nonce, .. }) = &self
            && let Ok(value) = HeaderValue::from_str(nonce)
        {
            headers.insert(DPOP_NONCE, value);
        }
        match self {
            Self::InvalidToken(err) | Self::Unavailable(err) => {
                response.extensions_mut().insert(err);
            }
            Self::InvalidProof(err) => {
                response.extensions_mut().insert(err);
            }
            _ => {}
        }
        response
    }

    /// The `DPoP` challenge (RFC 9449 §7.1): `algs`, and this rejection's error when it
    /// belongs there (`with_error`).
    fn dpop_challenge(&self, dpop: DpopChallenge<'_>, with_error: bool) -> String {
        let mut params: Vec<String> = Vec::with_capacity(4);
        if with_error {
            let (error, description, scope): (&str, &str, &[String]) = match self {
                Self::InvalidProof(err) => (
                    err.error_code().unwrap_or("invalid_dpop_proof"),
                    err.public_description(),
                    &[],
                ),
                Self::InvalidToken(err) => ("invalid_token", err.public_description(), &[]),
                Self::WrongScheme(description) => ("invalid_token", *description, &[]),
                Self::InsufficientScope { required } => (
                    "insufficient_scope",
                    "the access token lacks a scope this request needs",
                    required,
                ),
                Self::InvalidRequest(description) => ("invalid_request", *description, &[]),
                Self::MissingToken | Self::Unavailable(_) => ("", "", &[]),
            };
            if !error.is_empty() {
                params.push(format!("error=\"{error}\""));
                params.push(format!("error_description=\"{}\"", clean(description)));
            }
            let scope: Vec<String> = scope
                .iter()
                .map(|s| clean(s))
                .filter(|s| !s.is_empty() && !s.contains(' '))
                .collect();
            if !scope.is_empty() {
                params.push(format!("scope=\"{}\"", scope.join(" ")));
            }
        }
        params.push(format!("algs=\"{}\"", clean(dpop.algs)));
        format!("DPoP {}", params.join(", "))
    }
}

/// The `DPoP-Nonce` response header (RFC 9449 §8.1).
pub const DPOP_NONCE: header::HeaderName = header::HeaderName::from_static("dpop-nonce");

/// A JSON error response that carries no challenge: `status`, `Content-Type:
/// application/json` and `body` (an `error` / `error_description` object) as given. The bearer
/// layer's 413 and the session binding's 404 are built here, beside [`Rejection::into_response`],
/// so that every error body of the request path comes from this module.
pub(crate) fn json_error(status: StatusCode, body: &'static [u8]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A challenge as parsed from a `WWW-Authenticate` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedChallenge {
    /// The scheme, as written.
    pub scheme: String,
    /// Parameters in order, names lowercased.
    pub params: Vec<(String, String)>,
}

impl ParsedChallenge {
    /// The value of a parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a `WWW-Authenticate` value into its challenges (RFC 9110 §11.6.1): schemes,
/// `name=token` and `name="quoted \" string"` parameters. Token68 credentials are skipped.
/// Never panics; malformed input yields what could be read.
pub fn parse_www_authenticate(value: &str) -> Vec<ParsedChallenge> {
    let bytes = value.as_bytes();
    let mut out: Vec<ParsedChallenge> = Vec::new();
    let mut i = 0;
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let skip_ws = |i: &mut usize| {
        while bytes
            .get(*i)
            .is_some_and(|b| *b == b' ' || *b == b'\t' || *b == b',')
        {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        let start = i;
        while bytes.get(i).copied().is_some_and(is_tchar) {
            i += 1;
        }
        if i == start {
            // Not a token: skip one byte and go on.
            if i >= bytes.len() {
                break;
            }
            i += 1;
            continue;
        }
        let word = value.get(start..i).unwrap_or_default().to_owned();
        // After optional spaces: '=' means a parameter of the current challenge.
        let mut j = i;
        while bytes.get(j).is_some_and(|b| *b == b' ' || *b == b'\t') {
            j += 1;
        }
        if bytes.get(j) == Some(&b'=') && !out.is_empty() {
            j += 1;
            while bytes.get(j).is_some_and(|b| *b == b' ' || *b == b'\t') {
                j += 1;
            }
            let mut val = String::new();
            if bytes.get(j) == Some(&b'"') {
                j += 1;
                while let Some(&b) = bytes.get(j) {
                    j += 1;
                    match b {
                        b'\\' => {
                            if let Some(&escaped) = bytes.get(j) {
                                val.push(char::from(escaped));
                                j += 1;
                            }
                        }
                        b'"' => break,
                        _ => val.push(char::from(b)),
                    }
                }
            } else {
                let vstart = j;
                while bytes
                    .get(j)
                    .copied()
                    .is_some_and(|b| is_tchar(b) || b == b'/' || b == b'=')
                {
                    j += 1;
                }
                val = value.get(vstart..j).unwrap_or_default().to_owned();
            }
            if let Some(current) = out.last_mut() {
                current.params.push((word.to_ascii_lowercase(), val));
            }
            i = j;
        } else {
            out.push(ParsedChallenge {
                scheme: word,
                params: Vec::new(),
            });
            // Skip a token68 credential if one follows.
            let mut k = j;
            while bytes
                .get(k)
                .copied()
                .is_some_and(|b| is_tchar(b) || b == b'/' || b == b'=')
            {
                k += 1;
            }
            if bytes.get(k).is_none_or(|b| *b == b',')
                && bytes.get(k.saturating_sub(1)) == Some(&b'=')
            {
                i = k;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRM: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

    fn header(rejection: Rejection, baseline: &[&str]) -> String {
        let baseline: Vec<String> = baseline.iter().map(|s| (*s).to_owned()).collect();
        let response = rejection.into_response(PRM, &baseline);
        response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn missing_credentials_have_no_error_code() {
        assert_eq!(
            header(Rejection::MissingToken, &["mcp:read"]),
            r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp:read""#
        );
        assert_eq!(
            header(Rejection::MissingToken, &[]),
            r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#
        );
    }

    #[test]
    fn invalid_and_insufficient_challenges() {
        assert_eq!(
            header(Rejection::InvalidToken(VerifyError::Expired), &["a", "b"]),
            r#"Bearer error="invalid_token", error_description="the access token expired", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="a b""#
        );
        assert_eq!(
            header(
                Rejection::InsufficientScope {
                    required: vec!["a".into(), "admin".into()]
                },
                &["a"]
            ),
            r#"Bearer error="insufficient_scope", error_description="the access token lacks a scope this request needs", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="a admin""#
        );
    }

    #[test]
    fn unavailable_is_503_without_challenge() {
        let response =
            Rejection::Unavailable(VerifyError::Unavailable("x".into())).into_response(PRM, &[]);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("5")
        );
    }

    #[test]
    fn values_are_cleaned_of_quotes_backslashes_and_controls() {
        let c = Challenge {
            error: Some(BearerError::InvalidToken),
            error_description: Some("a\"b\\c\nd é".into()),
            resource_metadata: None,
            scope: vec!["ok".into(), "bad scope".into()],
        };
        assert_eq!(
            c.to_header_string(),
            r#"Bearer error="invalid_token", error_description="abcd ", scope="ok""#
        );
    }

    #[test]
    fn rfc6750_examples_parse() {
        // RFC 6750 §3 examples.
        let parsed = parse_www_authenticate(r#"Bearer realm="example""#);
        assert_eq!(parsed[0].scheme, "Bearer");
        assert_eq!(parsed[0].param("realm"), Some("example"));
        let parsed = parse_www_authenticate(
            r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
        );
        assert_eq!(parsed[0].param("error"), Some("invalid_token"));
        assert_eq!(
            parsed[0].param("error_description"),
            Some("The access token expired")
        );
        let parsed = parse_www_authenticate(
            r#"Basic realm="x", Bearer scope="a b", error=invalid_token, DPoP algs="ES256""#,
        );
        let schemes: Vec<&str> = parsed.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "DPoP"]);
        assert_eq!(parsed[1].param("scope"), Some("a b"));
        assert_eq!(parsed[1].param("error"), Some("invalid_token"));
        let parsed = parse_www_authenticate(r#"Bearer x="a\"b""#);
        assert_eq!(parsed[0].param("x"), Some("a\"b"));
    }

    /// What any input parses to: schemes and parameter names are non-empty tokens (RFC 9110
    /// `tchar`s), names are lowercase, and parsing is deterministic.
    fn assert_well_formed(input: &str) {
        let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        let parsed = parse_www_authenticate(input);
        for challenge in &parsed {
            assert!(
                !challenge.scheme.is_empty() && challenge.scheme.chars().all(is_tchar),
                "{input:?}: scheme {:?}",
                challenge.scheme
            );
            for (name, _) in &challenge.params {
                assert!(
                    !name.is_empty()
                        && name.chars().all(is_tchar)
                        && *name == name.to_ascii_lowercase(),
                    "{input:?}: parameter {name:?}"
                );
            }
        }
        assert_eq!(parse_www_authenticate(input), parsed, "{input:?}");
    }

    #[test]
    fn parser_survives_garbage() {
        for junk in [
            "",
            "=",
            "\"",
            "Bearer =",
            "Bearer a=\"",
            "Bearer a=\"\\",
            ",,,",
            "Negotiate abc==, Bearer",
            "\u{0}\u{ff}",
        ] {
            assert_well_formed(junk);
        }
        // Every string of up to five characters over an alphabet of the grammar's delimiters.
        let alphabet = ['B', 'a', ' ', '=', '"', '\\', ',', '\u{e9}'];
        let mut inputs = vec![String::new()];
        let mut frontier = inputs.clone();
        for _ in 0..5 {
            frontier = frontier
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            inputs.extend(frontier.iter().cloned());
        }
        assert_eq!(inputs.len(), (0..=5).map(|n| 8usize.pow(n)).sum::<usize>());
        for input in &inputs {
            assert_well_formed(input);
        }
        // A token68 credential is skipped, not taken for a scheme or a parameter.
        let parsed = parse_www_authenticate("Negotiate abc==, Bearer");
        let schemes: Vec<&str> = parsed.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Negotiate", "Bearer"]);
        assert!(parsed.iter().all(|c| c.params.is_empty()), "{parsed:?}");
        // Quoted strings keep their escaped quotes and commas; names are lowercased.
        let parsed =
            parse_www_authenticate(r#"Basic realm="a, \"b\"", BEARER Error=invalid_token , x=y"#);
        assert_eq!(
            parsed,
            [
                ParsedChallenge {
                    scheme: "Basic".into(),
                    params: vec![("realm".into(), r#"a, "b""#.into())],
                },
                ParsedChallenge {
                    scheme: "BEARER".into(),
                    params: vec![
                        ("error".into(), "invalid_token".into()),
                        ("x".into(), "y".into())
                    ],
                },
            ]
        );
        let ours = Rejection::MissingToken
            .challenge(PRM, &["s".into()])
            .map(|c| c.to_header_string())
            .unwrap_or_default();
        let parsed = parse_www_authenticate(&ours);
        assert_eq!(parsed[0].param("resource_metadata"), Some(PRM));
        assert_eq!(parsed[0].param("scope"), Some("s"));
        assert_eq!(parsed[0].param("error"), None);
    }
}
