//! Test helpers (feature `test-util`): signing keys, a token builder, and a mock identity
//! provider on 127.0.0.1 whose behaviour tests can change while it runs.
//!
//! Why one file of this size: it is one public test kit (keys, tokens, a mock identity
//! provider and its switches) that users import as one module; nothing in it runs in a
//! server.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use mcp_oauth::testing::{MockIdp, TestKey};
//!
//! let idp = MockIdp::start(TestKey::rs256()).await?;
//! let token = idp.token().aud("http://127.0.0.1:8080/mcp").scope("mcp:read").sign();
//! assert_eq!(token.split('.').count(), 3);
//! idp.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Key generation only fails if the operating system's random source does; these helpers
//! then panic, which is what a test wants.
#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::claims::now_unix;
use base64::Engine as _;

use crate::jose::{Algorithm, Jwk, JwkSet, KeyFamily, SigningKey};

/// The `name` and `value` of every hidden `<input>` of an HTML page, in document order, with
/// the attribute values unescaped: what a test that drives the embedded authorization
/// server's login and consent page without a browser posts back (request id, CSRF token).
///
/// ```
/// use mcp_oauth::testing::hidden_form_fields;
///
/// let page = r#"<form><input type="hidden" name="request_id" value="r1">
///     <input name="user"><input type="hidden" name="csrf" value="a&amp;b"></form>"#;
/// assert_eq!(
///     hidden_form_fields(page),
///     [("request_id".to_owned(), "r1".to_owned()), ("csrf".to_owned(), "a&b".to_owned())]
/// );
/// ```
pub fn hidden_form_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter_map(|rest| {
            // Values are escaped, so the tag ends at the first `>`.
            let tag = rest.split('>').next().unwrap_or(rest);
            let attr = |name: &str| {
                tag.split_once(&format!(" {name}=\""))
                    .and_then(|(_, after)| after.split_once('"'))
                    .map(|(value, _)| unescape_html(value))
            };
            attr("type")
                .is_some_and(|t| t.eq_ignore_ascii_case("hidden"))
                .then(|| Some((attr("name")?, attr("value")?)))
                .flatten()
        })
        .collect()
}

fn unescape_html(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A signing key for tests.
#[derive(Debug, Clone)]
pub struct TestKey(Arc<SigningKey>);

impl TestKey {
    /// A new key for `alg`.
    pub fn generate(alg: Algorithm) -> Self {
        Self(Arc::new(
            SigningKey::generate(alg).expect("the system random source works"),
        ))
    }

    /// A new RSA 2048 key for RS256.
    pub fn rs256() -> Self {
        Self::generate(Algorithm::RS256)
    }

    /// A new P-256 key for ES256.
    pub fn es256() -> Self {
        Self::generate(Algorithm::ES256)
    }

    /// A new Ed25519 key for EdDSA.
    pub fn ed25519() -> Self {
        Self::generate(Algorithm::EdDSA)
    }

    /// An HS256 key from a shared secret of at least 32 bytes.
    pub fn hs256(secret: &[u8]) -> Self {
        Self(Arc::new(
            SigningKey::hmac(secret, Algorithm::HS256).expect("a secret of at least 32 bytes"),
        ))
    }

    /// Wraps a signing key.
    pub fn from_key(key: SigningKey) -> Self {
        Self(Arc::new(key))
    }

    /// The key.
    pub fn key(&self) -> &SigningKey {
        &self.0
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        self.0.kid()
    }

    /// The public JWK with `kid`, `alg` and `use: sig` (`None` for HMAC keys): what a JWKS
    /// publishes, or a static key for [`JwtVerifierBuilder::jwk`](crate::verify::JwtVerifierBuilder::jwk).
    ///
    /// ```
    /// use mcp_oauth::testing::TestKey;
    ///
    /// let key = TestKey::es256();
    /// let jwk = key.public_jwk().expect("an asymmetric key");
    /// assert_eq!((jwk.kty.as_str(), jwk.kid.as_deref()), ("EC", Some(key.kid())));
    /// let json = serde_json::to_string(&jwk).expect("JSON");
    /// assert!(!json.contains(r#""d""#), "no private part: {json}");
    /// assert!(TestKey::hs256(&[7; 32]).public_jwk().is_none());
    /// ```
    pub fn public_jwk(&self) -> Option<Jwk> {
        self.0.public_jwk()
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo), `None`
    /// for HMAC keys: for [`JwtVerifierBuilder::public_key_pem`](crate::verify::JwtVerifierBuilder::public_key_pem),
    /// `mcp-oauth serve --public-key FILE`, or any tool that reads PEM.
    ///
    /// ```
    /// use mcp_oauth::jose::{Algorithm, VerifyingKey};
    /// use mcp_oauth::testing::TestKey;
    ///
    /// for (key, alg) in [
    ///     (TestKey::rs256(), Algorithm::RS256),
    ///     (TestKey::es256(), Algorithm::ES256),
    ///     (TestKey::ed25519(), Algorithm::EdDSA),
    /// ] {
    ///     let pem = key.public_key_pem().expect("an asymmetric key");
    ///     assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    ///     assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
    ///
    ///     // The PEM verifies what the key signs, and nothing else.
    ///     let public = VerifyingKey::from_pem(&pem, alg, None)?;
    ///     let signature = key.key().sign(b"message");
    ///     assert!(public.verify(alg, b"message", &signature));
    ///     assert!(!public.verify(alg, b"another message", &signature));
    /// }
    /// assert!(TestKey::hs256(&[7; 32]).public_key_pem().is_none());
    /// # Ok::<(), mcp_oauth::jose::KeyError>(())
    /// ```
    pub fn public_key_pem(&self) -> Option<String> {
        let der = public_key_der(&self.0)?;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        Some(pem)
    }

    /// A JWKS document with the public keys of `keys`.
    pub fn jwks(keys: &[&TestKey]) -> JwkSet {
        JwkSet {
            keys: keys.iter().filter_map(|k| k.public_jwk()).collect(),
        }
    }

    /// A token builder with no claims at all.
    pub fn token(&self) -> TokenBuilder {
        TokenBuilder {
            key: self.clone(),
            claims: Map::new(),
            typ: Some("at+jwt".into()),
        }
    }
}

/// The SubjectPublicKeyInfo DER of an asymmetric key, read back from its PKCS#8 form.
fn public_key_der(key: &SigningKey) -> Option<Vec<u8>> {
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    use aws_lc_rs::signature::{self, KeyPair as _};

    let pem = key.to_pkcs8_pem()?;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let pkcs8 = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let der: PublicKeyX509Der<'static> = match key.alg().family() {
        KeyFamily::Rsa => signature::RsaKeyPair::from_pkcs8(&pkcs8)
            .ok()?
            .public_key()
            .as_der()
            .ok()?,
        KeyFamily::Ec => {
            let alg = match key.alg() {
                Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                _ => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            };
            signature::EcdsaKeyPair::from_pkcs8(alg, &pkcs8)
                .ok()?
                .public_key()
                .as_der()
                .ok()?
        }
        KeyFamily::Okp => signature::Ed25519KeyPair::from_pkcs8(&pkcs8)
            .ok()?
            .public_key()
            .as_der()
            .ok()?,
        _ => return None,
    };
    Some(der.as_ref().to_vec())
}

/// Builds a signed JWT.
#[derive(Debug, Clone)]
#[must_use]
pub struct TokenBuilder {
    key: TestKey,
    claims: Map<String, Value>,
    typ: Option<String>,
}

impl TokenBuilder {
    /// Sets a claim.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.to_owned(), value.into());
        self
    }

    /// Removes a claim.
    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// `iss`.
    pub fn iss(self, iss: &str) -> Self {
        self.claim("iss", iss)
    }

    /// `sub`.
    #[allow(clippy::should_implement_trait)] // named after the JWT claim, not subtraction
    pub fn sub(self, sub: &str) -> Self {
        self.claim("sub", sub)
    }

    /// `aud` (a string).
    pub fn aud(self, aud: &str) -> Self {
        self.claim("aud", aud)
    }

    /// `scope` (space-separated).
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", scope)
    }

    /// `exp` = now + `secs` (negative for the past).
    pub fn exp_in(self, secs: i64) -> Self {
        self.claim("exp", now_unix() + secs)
    }

    /// The `typ` header (`None` to leave it out). Default `at+jwt`.
    pub fn typ(mut self, typ: Option<&str>) -> Self {
        self.typ = typ.map(str::to_owned);
        self
    }

    /// `iat` = now and `exp` = now + 1 h, unless set.
    fn with_times(mut self) -> Self {
        let now = now_unix();
        self.claims.entry("iat").or_insert_with(|| now.into());
        self.claims
            .entry("exp")
            .or_insert_with(|| (now + 3600).into());
        self
    }

    /// Signs, adding `iat` = now and `exp` = now + 1 h unless set. Use
    /// [`Self::sign_exact`] to add nothing.
    pub fn sign(self) -> String {
        self.with_times().sign_exact()
    }

    /// Signs exactly the claims set so far.
    pub fn sign_exact(self) -> String {
        self.key
            .0
            .sign_jwt(self.typ.as_deref(), &Value::Object(self.claims))
    }

    /// The claims that [`Self::sign`] would sign.
    pub fn claims(&self) -> Value {
        Value::Object(self.clone().with_times().claims)
    }
}

/// A provider's URL layout, for [`MockIdp::start_layout`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Layout {
    /// The issuer's path (`/realms/test`, `/auth/v1`); empty for the origin.
    pub issuer_path: String,
    /// Whether the issuer ends with `/` (Auth0).
    pub trailing_slash: bool,
    /// Where the JWKS is served (default `/jwks`).
    pub jwks_path: String,
}

impl Layout {
    /// The layout of an issuer at `issuer_path` with keys at `jwks_path`.
    pub fn new(issuer_path: &str, jwks_path: &str) -> Self {
        Self {
            issuer_path: issuer_path.to_owned(),
            trailing_slash: false,
            jwks_path: jwks_path.to_owned(),
        }
    }

    /// With a trailing slash on the issuer.
    #[must_use]
    pub fn trailing_slash(mut self) -> Self {
        self.trailing_slash = true;
        self
    }
}

/// How the mock IdP answers on its JWKS URL.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JwksMode {
    /// The current keys.
    Normal,
    /// This status and an empty body.
    Status(u16),
    /// A 200 that is not JSON.
    Garbage,
    /// A 200 of this many bytes.
    Huge(usize),
    /// The keys, after this delay.
    Slow(Duration),
}

struct IdpState {
    issuer: String,
    jwks_path: String,
    keys: Vec<TestKey>,
    mode: JwksMode,
    cache_control: Option<String>,
    metadata_status: Option<u16>,
    metadata_issuer: Option<String>,
    introspection: Map<String, Value>,
}

/// A mock identity provider on 127.0.0.1: RFC 8414 and OIDC discovery, a JWKS whose
/// behaviour can be changed, RFC 7662 introspection of registered tokens, and counters.
pub struct MockIdp {
    addr: SocketAddr,
    jwks_path: String,
    issuer: String,
    default_key: TestKey,
    state: Arc<Mutex<IdpState>>,
    jwks_hits: Arc<AtomicU64>,
    metadata_hits: Arc<AtomicU64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for MockIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockIdp")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<IdpState>>,
    jwks_hits: Arc<AtomicU64>,
    metadata_hits: Arc<AtomicU64>,
}

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut IdpState) -> T) -> T {
        let mut guard = match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

impl MockIdp {
    /// Starts an IdP whose issuer is `http://127.0.0.1:<port>`, signing with `key`.
    ///
    /// # Errors
    ///
    /// The port cannot be bound.
    pub async fn start(key: TestKey) -> std::io::Result<Self> {
        Self::start_with_path(key, "").await
    }

    /// Starts an IdP whose issuer has a path (`http://127.0.0.1:<port>/realms/test`).
    ///
    /// # Errors
    ///
    /// The port cannot be bound.
    pub async fn start_with_path(key: TestKey, path: &str) -> std::io::Result<Self> {
        Self::start_layout(
            key,
            Layout {
                issuer_path: path.to_owned(),
                ..Layout::default()
            },
        )
        .await
    }

    /// Starts an IdP with a provider's URL layout (issuer path, trailing slash, JWKS path).
    ///
    /// # Errors
    ///
    /// The port cannot be bound.
    pub async fn start_layout(key: TestKey, layout: Layout) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let path = layout.issuer_path.trim_end_matches('/').to_owned();
        let jwks_path = if layout.jwks_path.is_empty() {
            "/jwks".to_owned()
        } else {
            layout.jwks_path.clone()
        };
        let issuer = format!(
            "http://{addr}{path}{}",
            if layout.trailing_slash { "/" } else { "" }
        );
        let state = Arc::new(Mutex::new(IdpState {
            issuer: issuer.clone(),
            keys: vec![key.clone()],
            mode: JwksMode::Normal,
            cache_control: None,
            metadata_status: None,
            metadata_issuer: None,
            introspection: Map::new(),
            jwks_path: jwks_path.clone(),
        }));
        let shared = Shared {
            state: state.clone(),
            jwks_hits: Arc::default(),
            metadata_hits: Arc::default(),
        };
        let mut router = Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/.well-known/openid-configuration", get(metadata))
            .route(&jwks_path, get(jwks))
            .route("/introspect", post(introspect));
        if !path.is_empty() {
            router = router
                .route(
                    &format!("/.well-known/oauth-authorization-server{path}"),
                    get(metadata),
                )
                .route(
                    &format!("/.well-known/openid-configuration{path}"),
                    get(metadata),
                )
                .route(
                    &format!("{path}/.well-known/openid-configuration"),
                    get(metadata),
                );
        }
        let router = router.with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            jwks_path,
            issuer,
            default_key: key,
            state,
            jwks_hits: shared.jwks_hits,
            metadata_hits: shared.metadata_hits,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    fn shared(&self) -> Shared {
        Shared {
            state: self.state.clone(),
            jwks_hits: self.jwks_hits.clone(),
            metadata_hits: self.metadata_hits.clone(),
        }
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("http://{}{}", self.addr, self.jwks_path)
    }

    /// `http://127.0.0.1:<port>`, the base URL to give a provider preset.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The introspection URL.
    pub fn introspection_url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A token signed by the first key, with `iss` = this issuer and `sub` = `user-1`.
    pub fn token(&self) -> TokenBuilder {
        self.default_key.token().iss(&self.issuer).sub("user-1")
    }

    /// The key the IdP was started with.
    pub fn key(&self) -> &TestKey {
        &self.default_key
    }

    /// Replaces the published keys.
    pub fn set_keys(&self, keys: &[&TestKey]) {
        let keys = keys.iter().map(|k| (*k).clone()).collect();
        self.shared().with(|s| s.keys = keys);
    }

    /// Changes how the JWKS URL answers.
    pub fn set_jwks_mode(&self, mode: JwksMode) {
        self.shared().with(|s| s.mode = mode);
    }

    /// The `Cache-Control` of JWKS answers (`None`: no header).
    pub fn set_cache_control(&self, value: Option<&str>) {
        let value = value.map(str::to_owned);
        self.shared().with(|s| s.cache_control = value);
    }

    /// Makes the metadata URLs answer with this status (`None`: normal).
    pub fn set_metadata_status(&self, status: Option<u16>) {
        self.shared().with(|s| s.metadata_status = status);
    }

    /// Makes the metadata document claim another issuer (`None`: the real one).
    pub fn set_metadata_issuer(&self, issuer: Option<&str>) {
        let issuer = issuer.map(str::to_owned);
        self.shared().with(|s| s.metadata_issuer = issuer);
    }

    /// Registers the introspection answer for `token`; unregistered tokens are inactive.
    pub fn set_introspection(&self, token: &str, answer: Value) {
        self.shared()
            .with(|s| s.introspection.insert(token.to_owned(), answer));
    }

    /// JWKS requests served so far.
    pub fn jwks_hits(&self) -> u64 {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    /// Metadata requests served so far.
    pub fn metadata_hits(&self) -> u64 {
        self.metadata_hits.load(Ordering::SeqCst)
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockIdp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn metadata(State(shared): State<Shared>) -> Response {
    shared.metadata_hits.fetch_add(1, Ordering::SeqCst);
    let (issuer, advertised, status, jwks_path) = shared.with(|s| {
        (
            s.issuer.clone(),
            s.metadata_issuer.clone(),
            s.metadata_status,
            s.jwks_path.clone(),
        )
    });
    if let Some(status) = status {
        return StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    }
    let origin = issuer.split('/').take(3).collect::<Vec<_>>().join("/");
    let base = issuer.trim_end_matches('/');
    axum::Json(json!({
        "issuer": advertised.unwrap_or_else(|| issuer.clone()),
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{origin}{jwks_path}"),
        "introspection_endpoint": format!("{origin}/introspect"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
        "scopes_supported": ["openid", "mcp:read", "mcp:write"],
        "x_vendor_extension": {"kept": true},
    }))
    .into_response()
}

async fn jwks(State(shared): State<Shared>) -> Response {
    shared.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let (mode, keys, cache_control) =
        shared.with(|s| (s.mode.clone(), s.keys.clone(), s.cache_control.clone()));
    let body = || {
        let refs: Vec<&TestKey> = keys.iter().collect();
        serde_json::to_string(&TestKey::jwks(&refs)).unwrap_or_default()
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(value) = cache_control.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    match mode {
        JwksMode::Normal => (headers, body()).into_response(),
        JwksMode::Status(status) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        JwksMode::Garbage => (headers, "<html>not json</html>").into_response(),
        JwksMode::Huge(len) => (headers, "x".repeat(len)).into_response(),
        JwksMode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            (headers, body()).into_response()
        }
    }
}

async fn introspect(
    State(shared): State<Shared>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let token = form
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let answer = shared
        .with(|s| s.introspection.get(&token).cloned())
        .unwrap_or_else(|| json!({"active": false}));
    axum::Json(answer).into_response()
}
