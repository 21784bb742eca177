//! The network edge, from an attacker's side (security review 2): who a request comes from
//! behind reverse proxies (F4: rate limits; F11: the audience in trusted-proxy mode), and
//! what Client ID Metadata Document errors tell about the internal network (F10).
//!
//! Requests go through the routers with `oneshot`, with the TCP peer set the way
//! `into_make_service_with_connect_info` sets it (a `ConnectInfo<SocketAddr>` extension), so
//! each test chooses its peer. Rate limits run on tokio's paused clock: no bucket refills
//! while a test runs, however slow the machine.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::CHALLENGE;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use mcp_oauth::OAuth;
use mcp_oauth::auth_server::{AuthServer, AuthServerBuilder, CimdOptions, ClientSpec, RateLimit};
use mcp_oauth::forwarded::{ForwardedHeader, TrustedProxies};
use mcp_oauth::testing::TestKey;
use mcp_oauth::verify::JwtVerifier;
use tower::ServiceExt as _;

const ISSUER: &str = "http://127.0.0.1:9";

/// An authorization server with only the limits a test sets.
async fn auth_server(
    configure: impl FnOnce(AuthServerBuilder) -> AuthServerBuilder,
) -> axum::Router {
    let builder = AuthServer::builder(ISSUER)
        .rate_limits(None, None, None)
        .client_rate_limit(None)
        .client(ClientSpec::service("svc", "svc-secret").scopes(["mcp:read"]))
        .client(ClientSpec::service("svc2", "svc2-secret").scopes(["mcp:read"]));
    configure(builder).build().await.expect("server").router()
}

/// `req` as received from `peer`.
fn from(peer: &str, mut req: Request<Body>) -> Request<Body> {
    let ip: std::net::IpAddr = peer.parse().expect("peer");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
    req
}

/// A token request (no client at all: refused by the handler, but only after the limit).
fn token_request(headers: &[(&str, &str)]) -> Request<Body> {
    let mut req =
        Request::post("/token").header("content-type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::from("grant_type=client_credentials"))
        .expect("request")
}

async fn status(router: &axum::Router, req: Request<Body>) -> StatusCode {
    router
        .clone()
        .oneshot(req)
        .await
        .expect("infallible")
        .status()
}

/// Whether `router` limits a token request from `peer` carrying `headers`.
async fn limited(router: &axum::Router, peer: &str, headers: &[(&str, &str)]) -> bool {
    status(router, from(peer, token_request(headers))).await == StatusCode::TOO_MANY_REQUESTS
}

fn two_per_bucket() -> Option<RateLimit> {
    // Refills one token a minute; the clock is paused, so nothing refills during a test.
    Some(RateLimit::new(1, 2))
}

#[tokio::test(start_paused = true)]
async fn spoofed_forwarded_for_from_an_untrusted_peer_does_not_change_the_bucket() {
    let router = auth_server(|b| {
        b.rate_limits(two_per_bucket(), None, None)
            .trusted_proxies(TrustedProxies::parse(["10.0.0.0/8"]).expect("cidr"))
    })
    .await;
    let peer = "198.51.100.1";
    assert!(!limited(&router, peer, &[("x-forwarded-for", "203.0.113.1")]).await);
    assert!(!limited(&router, peer, &[("x-forwarded-for", "203.0.113.2")]).await);
    // Another made-up address, and an RFC 7239 header: still the peer's bucket.
    assert!(limited(&router, peer, &[("x-forwarded-for", "203.0.113.3")]).await);
    assert!(limited(&router, peer, &[("forwarded", "for=203.0.113.4")]).await);
    // The same holds with no proxy configured at all (the default).
    let router = auth_server(|b| b.rate_limits(two_per_bucket(), None, None)).await;
    assert!(!limited(&router, "10.0.0.2", &[("x-forwarded-for", "203.0.113.1")]).await);
    assert!(!limited(&router, "10.0.0.2", &[("x-forwarded-for", "203.0.113.2")]).await);
    assert!(limited(&router, "10.0.0.2", &[("x-forwarded-for", "203.0.113.3")]).await);
}

#[tokio::test(start_paused = true)]
async fn behind_a_trusted_proxy_each_client_has_its_own_bucket() {
    let router = auth_server(|b| {
        b.rate_limits(two_per_bucket(), None, None)
            .trusted_proxies(TrustedProxies::parse(["10.0.0.0/8"]).expect("cidr"))
    })
    .await;
    let proxy = "10.0.0.2";
    let alice = [("x-forwarded-for", "203.0.113.1")];
    assert!(!limited(&router, proxy, &alice).await);
    assert!(!limited(&router, proxy, &alice).await);
    assert!(
        limited(&router, proxy, &alice).await,
        "alice's bucket is empty"
    );
    // Another client behind the same proxy is not held up by alice (review 2, F4).
    assert!(!limited(&router, proxy, &[("x-forwarded-for", "203.0.113.2")]).await);
    // Alice cannot get a fresh bucket by prepending an address of her choice: the proxy
    // appends the address it saw, and the rightmost untrusted hop counts.
    for chain in [
        "192.0.2.99, 203.0.113.1",
        "192.0.2.98, 192.0.2.97, 203.0.113.1",
        // A second trusted proxy in the chain is skipped.
        "192.0.2.96, 203.0.113.1, 10.9.9.9",
    ] {
        assert!(
            limited(&router, proxy, &[("x-forwarded-for", chain)]).await,
            "{chain}"
        );
    }
    // Nor through the other header family, which this proxy does not write.
    assert!(
        limited(
            &router,
            proxy,
            &[
                ("forwarded", "for=192.0.2.95"),
                ("x-forwarded-for", "203.0.113.1")
            ]
        )
        .await
    );
}

#[tokio::test(start_paused = true)]
async fn ipv6_clients_share_a_bucket_per_64() {
    let router = auth_server(|b| {
        b.rate_limits(two_per_bucket(), None, None)
            .trusted_proxies(TrustedProxies::parse(["fd00::/8"]).expect("cidr"))
    })
    .await;
    let proxy = "fd00::2";
    assert!(!limited(&router, proxy, &[("x-forwarded-for", "2001:db8:1:2::1")]).await);
    assert!(!limited(&router, proxy, &[("x-forwarded-for", "2001:db8:1:2::2")]).await);
    assert!(
        limited(
            &router,
            proxy,
            &[("x-forwarded-for", "2001:db8:1:2:ffff::3")]
        )
        .await,
        "another address of the same /64 is the same client"
    );
    assert!(!limited(&router, proxy, &[("x-forwarded-for", "2001:db8:1:3::1")]).await);
    // Directly connected IPv6 peers too.
    let router = auth_server(|b| b.rate_limits(two_per_bucket(), None, None)).await;
    assert!(!limited(&router, "2001:db8:5:5::1", &[]).await);
    assert!(!limited(&router, "2001:db8:5:5::2", &[]).await);
    assert!(limited(&router, "2001:db8:5:5::3", &[]).await);
}

#[tokio::test(start_paused = true)]
async fn an_rfc_7239_proxy_is_read_from_forwarded() {
    let router = auth_server(|b| {
        b.rate_limits(two_per_bucket(), None, None).trusted_proxies(
            TrustedProxies::parse(["10.0.0.0/8"])
                .expect("cidr")
                .header(ForwardedHeader::Forwarded),
        )
    })
    .await;
    let proxy = "10.0.0.2";
    let bob = [("forwarded", r#"for="[2001:db8::7]:4711";proto=https"#)];
    assert!(!limited(&router, proxy, &bob).await);
    assert!(!limited(&router, proxy, &bob).await);
    assert!(limited(&router, proxy, &bob).await);
    // A client's own element, left of the proxy's, changes nothing.
    assert!(
        limited(
            &router,
            proxy,
            &[("forwarded", "for=192.0.2.1, for=\"[2001:db8::7]\"")]
        )
        .await
    );
    // X-Forwarded-For is not what this proxy writes: a client's value there is ignored.
    assert!(limited(&router, proxy, &[("x-forwarded-for", "192.0.2.2"), bob[0]]).await);
    assert!(!limited(&router, proxy, &[("forwarded", "for=192.0.2.3")]).await);
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

#[tokio::test(start_paused = true)]
async fn guessing_a_client_secret_from_many_addresses_is_bounded_per_client() {
    let router = auth_server(|b| b.client_rate_limit(two_per_bucket())).await;
    let guess = |peer: &str, id: &str| {
        from(
            peer,
            token_request(&[("authorization", &basic(id, "guess"))]),
        )
    };
    assert_eq!(status(&router, guess("203.0.113.1", "svc")).await, 401);
    assert_eq!(status(&router, guess("203.0.113.2", "svc")).await, 401);
    assert_eq!(
        status(&router, guess("203.0.113.3", "svc")).await,
        StatusCode::TOO_MANY_REQUESTS,
        "a third guess for svc, from a third address"
    );
    // Checked before the secret: the right secret waits too.
    let right = from(
        "203.0.113.4",
        token_request(&[("authorization", &basic("svc", "svc-secret"))]),
    );
    assert_eq!(status(&router, right).await, StatusCode::TOO_MANY_REQUESTS);
    // Another client is not affected.
    assert_eq!(status(&router, guess("203.0.113.5", "svc2")).await, 401);
    // Requests without a secret (public clients, whose ids anyone can send) never count.
    for _ in 0..3 {
        let public = from(
            "203.0.113.6",
            Request::post("/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(
                    "grant_type=authorization_code&client_id=svc2&code=x&code_verifier=y",
                ))
                .expect("request"),
        );
        assert_ne!(status(&router, public).await, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(status(&router, guess("203.0.113.7", "svc2")).await, 401);
}

// --- F11: the audience in trusted-proxy mode ---------------------------------------------

const RESOURCE: &str = "https://mcp.example.com/mcp";
const TOKEN_ISSUER: &str = "https://issuer.example";

struct Protected {
    key: TestKey,
    router: axum::Router,
}

fn protected(proxies: TrustedProxies) -> Protected {
    let key = TestKey::es256();
    let verifier = JwtVerifier::builder()
        .issuer(TOKEN_ISSUER)
        .jwk(&key.public_jwk().expect("jwk"))
        .build()
        .expect("verifier");
    let oauth = OAuth::builder()
        .resource(RESOURCE)
        .authorization_server(TOKEN_ISSUER)
        .mirror_authorization_server(false)
        .verifier(verifier)
        .trusted_proxies(proxies)
        .build()
        .expect("oauth");
    let mcp = axum::Router::new()
        .route(
            "/mcp",
            axum::routing::post(|| async { Ok::<_, Infallible>("ok") }),
        )
        .layer(oauth.layer());
    Protected {
        key,
        router: mcp.merge(oauth.metadata_router()),
    }
}

impl Protected {
    fn token(&self, aud: &str) -> String {
        self.key
            .token()
            .iss(TOKEN_ISSUER)
            .sub("alice")
            .aud(aud)
            .exp_in(300)
            .sign()
    }

    /// The status of an MCP request with a token for `aud`, from `peer`, with `headers`.
    async fn call(&self, peer: &str, aud: &str, headers: &[(&str, &str)]) -> StatusCode {
        let mut req = Request::post("/mcp")
            .header("authorization", format!("Bearer {}", self.token(aud)))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = from(peer, req.body(Body::from("{}")).expect("request"));
        status(&self.router, req).await
    }

    /// The `resource` of the protected-resource metadata, as `peer` sees it.
    async fn metadata_resource(&self, peer: &str, headers: &[(&str, &str)]) -> String {
        let mut req = Request::get("/.well-known/oauth-protected-resource/mcp");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = from(peer, req.body(Body::empty()).expect("request"));
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let body = res.into_body().collect().await.expect("body").to_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&body).expect("json");
        doc["resource"].as_str().expect("resource").to_owned()
    }
}

const OTHER: &str = "https://other.example/mcp";

#[tokio::test]
async fn a_forwarded_host_from_an_untrusted_peer_is_ignored() {
    let p = protected(TrustedProxies::parse(["10.0.0.0/8"]).expect("cidr"));
    let spoof = [
        ("x-forwarded-host", "other.example"),
        ("x-forwarded-proto", "https"),
    ];
    // A token for another resource of the same issuer, replayed here (review 2, F11).
    assert_eq!(p.call("198.51.100.1", OTHER, &spoof).await, 401);
    assert_eq!(p.call("198.51.100.1", RESOURCE, &spoof).await, 200);
    assert_eq!(p.metadata_resource("198.51.100.1", &spoof).await, RESOURCE);
    // The loopback shorthand trusts only loopback peers.
    let local = protected(TrustedProxies::loopback());
    assert_eq!(local.call("198.51.100.1", OTHER, &spoof).await, 401);
    assert_eq!(local.call("127.0.0.1", OTHER, &spoof).await, 200);
}

#[tokio::test]
async fn a_client_value_before_the_proxys_is_ignored() {
    let p = protected(TrustedProxies::parse(["10.0.0.0/8"]).expect("cidr"));
    // The client sent X-Forwarded-Host: other.example; the proxy appended the host it serves.
    let appended = [
        ("x-forwarded-host", "other.example, mcp.public.example"),
        ("x-forwarded-proto", "http, https"),
    ];
    assert_eq!(p.call("10.0.0.2", OTHER, &appended).await, 401);
    assert_eq!(
        p.call("10.0.0.2", "https://mcp.public.example/mcp", &appended)
            .await,
        200
    );
    assert_eq!(
        p.metadata_resource("10.0.0.2", &appended).await,
        "https://mcp.public.example/mcp"
    );
    // Two header lines are one list.
    let lines = [
        ("x-forwarded-host", "other.example"),
        ("x-forwarded-host", "mcp.public.example"),
    ];
    assert_eq!(p.call("10.0.0.2", OTHER, &lines).await, 401);
}

#[tokio::test]
async fn without_a_forwarded_host_the_configured_origin_stands_never_host() {
    let p = protected(TrustedProxies::parse(["10.0.0.0/8"]).expect("cidr"));
    // A proxy that does not set X-Forwarded-Host passes the client's Host.
    let host = [("host", "other.example"), ("x-forwarded-proto", "https")];
    assert_eq!(p.call("10.0.0.2", OTHER, &host).await, 401);
    assert_eq!(p.call("10.0.0.2", RESOURCE, &host).await, 200);
    assert_eq!(p.metadata_resource("10.0.0.2", &host).await, RESOURCE);
}

#[tokio::test]
async fn an_rfc_7239_proxy_names_the_origin_of_the_rightmost_untrusted_hop() {
    let p = protected(
        TrustedProxies::parse(["10.0.0.0/8"])
            .expect("cidr")
            .header(ForwardedHeader::Forwarded),
    );
    let chain = [(
        "forwarded",
        "for=192.0.2.1;host=other.example;proto=https, for=203.0.113.9;host=mcp.public.example;proto=https, for=10.1.1.1;host=internal.lan;proto=http",
    )];
    assert_eq!(p.call("10.0.0.2", OTHER, &chain).await, 401);
    assert_eq!(
        p.call("10.0.0.2", "https://mcp.public.example/mcp", &chain)
            .await,
        200
    );
    // X-Forwarded-Host is not read in this mode.
    let xfh = [("x-forwarded-host", "other.example")];
    assert_eq!(p.call("10.0.0.2", OTHER, &xfh).await, 401);
}

// --- F10: CIMD errors are no oracle ------------------------------------------------------

/// The error page for a Client ID Metadata Document at `client_id`.
async fn cimd_error(router: &axum::Router, client_id: &str) -> (StatusCode, String) {
    let mut url = url::Url::parse("http://127.0.0.1:9/authorize").expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", "http://127.0.0.1/callback")
        .append_pair("state", "s")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    let path = format!("{}?{}", url.path(), url.query().expect("query"));
    let req = from(
        "203.0.113.1",
        Request::get(path).body(Body::empty()).expect("request"),
    );
    let res = router.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_cimd_error_does_not_say_what_a_name_resolves_to() {
    let router = auth_server(|b| b).await;
    for client_id in [
        "https://localhost/client.json",
        "https://app.localhost:8443/client.json",
        "https://127.0.0.1:9/client.json",
        "https://[::1]/client.json",
        // Review 2, "checked and holding": the usual IPv4 and mapped forms stay refused.
        "https://[::ffff:127.0.0.1]/client.json",
        "https://0x7f000001/client.json",
        "https://2130706433/client.json",
        // F9: IPv6 forms that carry a private IPv4 address.
        "https://[::7f00:1]/client.json",
        "https://[::ffff:0:a9fe:a9fe]/latest",
        "https://[64:ff9b:1::a9fe:a9fe]/latest",
        "https://[2002:a9fe:a9fe::1]/latest",
    ] {
        let (status, html) = cimd_error(&router, client_id).await;
        assert_eq!(status, 400, "{client_id}: {html}");
        assert!(html.contains("cannot be fetched"), "{client_id}: {html}");
        for leak in ["resolves", "non-public"] {
            assert!(!html.contains(leak), "{client_id}: {html}");
        }
        if client_id.contains("localhost") {
            // The page may repeat the client id, but never the address behind the name.
            assert!(
                !html.contains("127.0.0.1") && !html.contains("::1"),
                "{client_id}: {html}"
            );
        }
    }
}

#[tokio::test]
async fn a_cimd_timeout_and_a_closed_port_look_alike() {
    // A port that accepts connections (the kernel completes them) and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    // A port nobody listens on.
    let closed_addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("addr")
    };
    let router = auth_server(|b| {
        let mut options = CimdOptions::default()
            .allow_host(silent_addr.to_string())
            .allow_host(closed_addr.to_string());
        options.timeout = Duration::from_millis(200);
        b.client_metadata_documents(Some(options))
    })
    .await;
    let (s1, timed_out) = cimd_error(&router, &format!("http://{silent_addr}/client.json")).await;
    let (s2, refused) = cimd_error(&router, &format!("http://{closed_addr}/client.json")).await;
    assert_eq!((s1, s2), (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST));
    let reason = |html: &str| {
        html.split("Unknown client: ")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .map(str::to_owned)
            .expect("reason")
    };
    assert_eq!(reason(&timed_out), reason(&refused));
    assert!(!timed_out.contains("timed out"), "{timed_out}");
    drop(silent);
}
