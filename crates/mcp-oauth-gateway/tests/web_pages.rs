//! The gateway's page sign-in (`mcp_oauth_gateway::web`), from a browser's side and an
//! attacker's: no session is a redirect to sign in, a forged, foreign or expired session is
//! no session, a `state` is used once and only in the browser that started it, forms need
//! the session's token and this origin, and the way back never leaves the gateway.

#![allow(clippy::expect_used, clippy::indexing_slicing)]

mod browser;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::routing::get;
use browser::{Browser, ORIGIN, app, cookie_headers, signed_in, who, whoami};
use mcp_oauth_gateway::web::{self, Pages};

#[tokio::test]
async fn a_browser_without_a_session_signs_in_and_comes_back_to_the_page() {
    let server = browser::server().await;
    let pages = browser::pages(&server).await;
    let app = app(&server, &pages);
    let mut browser = Browser::default();
    let back = browser.sign_in(&app, "/gateway/whoami?x=1", "alice").await;
    assert_eq!(back.status, 303, "{back:?}");
    assert_eq!(back.local_location(), "/gateway/whoami?x=1");
    let session = back
        .set_cookies
        .iter()
        .find(|c| c.starts_with("mcp_gateway_session="))
        .expect("a session cookie");
    for attribute in ["; HttpOnly", "; SameSite=Lax", "; Path=/", "; Max-Age=1800"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "plain http: {session}");
    assert!(
        !session.contains("alice"),
        "sealed, not readable: {session}"
    );
    let page = browser.get(&app, "/gateway/whoami").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(who(&page).starts_with("alice|mcp-oauth-gateway-pages|"));
    assert_eq!(
        page.set_cookies.len(),
        0,
        "the binding cookie was cleared at the callback"
    );
    assert!(
        !browser
            .cookies
            .keys()
            .any(|k| k.starts_with("mcp_gateway_signin_")),
        "{:?}",
        browser.cookies
    );
    // The index page says who it is, and a POST without a session is refused, not redirected.
    assert!(
        browser
            .get(&app, "/gateway")
            .await
            .body
            .contains("<code>alice</code>")
    );
    let mut stranger = Browser::default();
    let post = stranger
        .post(&app, "/gateway/whoami", &[], Some(ORIGIN))
        .await;
    assert_eq!(post.status, 403, "a POST without a session: {post:?}");
    assert!(post.location.is_none());
}

#[tokio::test]
async fn forged_foreign_and_expired_sessions_are_no_session() {
    let server = browser::server().await;
    let now = Arc::new(AtomicI64::new(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_secs(),
        )
        .expect("time"),
    ));
    let read = now.clone();
    let pages = browser::pages(&server)
        .await
        .clock(move || read.load(Ordering::SeqCst));
    let app = app(&server, &pages);
    let alice = signed_in(&app, "alice").await;
    let bob = signed_in(&app, "bob").await;
    let sent = |browser: &Browser| browser.cookies["mcp_gateway_session"].clone();

    // Each browser is its own user.
    assert!(who(&alice.clone().get(&app, "/gateway/whoami").await).starts_with("alice|"));
    assert!(who(&bob.clone().get(&app, "/gateway/whoami").await).starts_with("bob|"));

    // Altered: one character of the sealed value changed.
    let mut forged = alice.clone();
    let mut value = sent(&alice).into_bytes();
    let at = value.len() / 2;
    value[at] = if value[at] == b'A' { b'B' } else { b'A' };
    forged.cookies.insert(
        "mcp_gateway_session".into(),
        String::from_utf8(value).expect("ascii"),
    );
    let reply = forged.get(&app, "/gateway/whoami").await;
    assert_eq!(reply.status, 303, "an altered session is no session");

    // Made up, or half of bob's glued to half of alice's.
    for made_up in [
        "eyJzdWIiOiJhbGljZSJ9".to_owned(),
        format!(
            "{}{}",
            &sent(&bob)[..sent(&bob).len() / 2],
            &sent(&alice)[sent(&alice).len() / 2..]
        ),
    ] {
        let mut browser = Browser::default();
        browser
            .cookies
            .insert("mcp_gateway_session".into(), made_up);
        assert_eq!(browser.get(&app, "/gateway/whoami").await.status, 303);
    }

    // Sealed by another gateway (another key): refused here.
    let other_server = browser::server().await;
    let other_pages = Pages::embedded(other_server.clone(), ORIGIN, &[9; 32])
        .await
        .expect("pages");
    let other_app = self::app(&other_server, &other_pages);
    let foreign = signed_in(&other_app, "alice").await;
    let mut carried = Browser::default();
    carried
        .cookies
        .insert("mcp_gateway_session".into(), sent(&foreign));
    assert_eq!(carried.get(&app, "/gateway/whoami").await.status, 303);

    // Expired: 30 minutes later the same cookie is no session.
    now.fetch_add(30 * 60, Ordering::SeqCst);
    let late = alice.clone().get(&app, "/gateway/whoami").await;
    assert_eq!(late.status, 303, "{late:?}");
    assert!(
        late.location
            .as_deref()
            .is_some_and(|l| l.starts_with(&format!("{ORIGIN}/authorize?")))
    );
}

#[tokio::test]
async fn a_state_is_used_once_and_only_in_the_browser_that_started_it() {
    let server = browser::server().await;
    let pages = browser::pages(&server).await;
    let app = app(&server, &pages);

    // The victim starts a sign-in; the attacker gets the callback URL (a code and a state)
    // and opens it in their own browser: refused, and the victim's sign-in still works.
    let mut victim = Browser::default();
    let first = victim.get(&app, "/gateway/whoami").await;
    let login = victim
        .get(&app, first.location.as_deref().expect("authorize"))
        .await;
    let mut form = mcp_oauth::testing::hidden_form_fields(&login.body);
    form.extend([
        ("username".to_owned(), "alice".to_owned()),
        ("password".to_owned(), browser::PASSWORD.to_owned()),
        ("decision".to_owned(), "approve".to_owned()),
    ]);
    let answer = victim.post(&app, "/authorize", &form, Some(ORIGIN)).await;
    let callback = answer.location.expect("callback");

    let mut attacker = Browser::default();
    // The attacker's own pending sign-in gives them a binding cookie, for another state.
    let _ = attacker.get(&app, "/gateway/whoami").await;
    let stolen = attacker.get(&app, &callback).await;
    assert_eq!(stolen.status, 400, "{stolen:?}");
    assert!(stolen.body.contains("not started in this browser"));
    assert!(
        !stolen
            .set_cookies
            .iter()
            .any(|c| c.contains("mcp_gateway_session")),
        "no session for the attacker"
    );

    let done = victim.get(&app, &callback).await;
    assert_eq!(done.status, 303, "{done:?}");
    assert!(victim.cookies.contains_key("mcp_gateway_session"));

    // Replayed in the same browser (binding cookie put back): the state is used up.
    let mut replay = victim.clone();
    for (name, value) in &first_binding(&first) {
        replay.cookies.insert(name.clone(), value.clone());
    }
    let again = replay.get(&app, &callback).await;
    assert_eq!(again.status, 400, "{again:?}");
    assert!(again.body.contains("already completed"), "{}", again.body);

    // A made-up state, and none at all.
    let made_up = replay
        .get(&app, "/gateway/signed-in?code=x&state=made-up")
        .await;
    assert_eq!(made_up.status, 400);
    assert_eq!(
        replay.get(&app, "/gateway/signed-in?code=x").await.status,
        400
    );
}

/// The binding cookie the start of a sign-in set.
fn first_binding(reply: &browser::Reply) -> Vec<(String, String)> {
    reply
        .set_cookies
        .iter()
        .filter(|c| c.starts_with("mcp_gateway_signin_"))
        .filter_map(|c| c.split(';').next()?.split_once('='))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test]
async fn forms_need_the_sessions_token_and_this_origin() {
    let server = browser::server().await;
    let pages = browser::pages(&server).await;
    let app = app(&server, &pages);
    let mut alice = signed_in(&app, "alice").await;
    let bob = signed_in(&app, "bob").await;
    let token = |page: &browser::Reply| who(page).rsplit('|').next().expect("token").to_owned();
    let alice_token = token(&alice.get(&app, "/gateway/whoami").await);
    let bob_token = token(&bob.clone().get(&app, "/gateway/whoami").await);
    assert_ne!(alice_token, bob_token);
    let form = |t: &str| vec![("csrf".to_owned(), t.to_owned())];

    for (what, form, origin) in [
        ("no token", vec![], Some(ORIGIN)),
        ("bob's token", form(&bob_token), Some(ORIGIN)),
        ("a made-up token", form("AAAA"), Some(ORIGIN)),
        (
            "another origin",
            form(&alice_token),
            Some("http://127.0.0.1:9999"),
        ),
        ("origin null", form(&alice_token), Some("null")),
    ] {
        let reply = alice
            .clone()
            .post(&app, web::SIGN_OUT_PATH, &form, origin)
            .await;
        assert_eq!(reply.status, 403, "{what}: {reply:?}");
        assert!(reply.set_cookies.is_empty(), "{what}: still signed in");
    }
    let out = alice
        .post(&app, web::SIGN_OUT_PATH, &form(&alice_token), Some(ORIGIN))
        .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert!(!alice.cookies.contains_key("mcp_gateway_session"));
    assert_eq!(alice.get(&app, "/gateway/whoami").await.status, 303);
}

#[tokio::test]
async fn the_way_back_never_leaves_the_gateway() {
    let server = browser::server().await;
    let pages = browser::pages(&server).await;
    let app = app(&server, &pages);
    for (asked, back) in [
        ("/gateway/whoami?y=2", "/gateway/whoami?y=2"),
        ("//evil.example/x", "/gateway"),
        ("https://evil.example/", "/gateway"),
        ("/\\evil.example", "/gateway"),
        ("", "/gateway"),
    ] {
        let mut browser = Browser::default();
        let link = format!(
            "{}?{}",
            web::SIGN_IN_PATH,
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return", asked)
                .finish()
        );
        let done = browser.sign_in(&app, &link, "carol").await;
        assert_eq!(done.status, 303, "{asked}: {done:?}");
        assert_eq!(
            done.location.as_deref(),
            Some(format!("{ORIGIN}{back}").as_str()),
            "{asked}"
        );
    }
}

#[tokio::test]
async fn https_gateways_use_host_prefixed_secure_cookies() {
    let server = mcp_oauth::auth_server::AuthServer::builder("https://gw.example")
        .login(Arc::new(
            mcp_oauth::auth_server::DevUsers::new().user("alice", browser::PASSWORD),
        ))
        .build()
        .await
        .expect("server");
    let pages = Pages::embedded(server.clone(), "https://gw.example/mcp", &browser::KEY)
        .await
        .expect("pages");
    assert_eq!(pages.origin(), "https://gw.example");
    let app = app(&server, &pages);
    let reply = browser::send(
        &app,
        http::Request::get("/gateway/whoami")
            .body(axum::body::Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 303);
    let binding = &reply.set_cookies[0];
    assert!(
        binding.starts_with("__Host-mcp_gateway_signin_"),
        "{binding}"
    );
    assert!(binding.contains("; Secure") && binding.contains("; Path=/"));
}

#[tokio::test]
async fn without_an_authorization_server_of_its_own_the_pages_say_so() {
    let pages = Pages::unavailable("this gateway verifies tokens of https://idp.example");
    let app = Router::new()
        .route("/gateway/whoami", get(whoami))
        .with_state(pages.clone())
        .merge(pages.router());
    for path in [
        "/gateway/whoami",
        "/gateway",
        "/gateway/signed-in?state=x",
        "/gateway/approve?ticket=x",
    ] {
        let reply = Browser::default().get(&app, path).await;
        assert_eq!(reply.status, 503, "{path}: {reply:?}");
        assert!(reply.body.contains("https://idp.example"), "{}", reply.body);
    }
}

/// A visit of `path` without a session from the TCP peer `peer`, with `X-Forwarded-For`
/// when given.
async fn visit(app: &Router, path: &str, peer: &str, forwarded: Option<&str>) -> browser::Reply {
    let mut request = http::Request::get(path);
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    let mut request = request.body(axum::body::Body::empty()).expect("request");
    let peer: std::net::IpAddr = peer.parse().expect("address");
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
            peer, 40000,
        )));
    browser::send(app, request).await
}

/// A time ahead of the real one, on a minute boundary (the store lets a bucket's slots lapse
/// by its own clock, which must not run ahead of the pages').
fn minute_ahead() -> Arc<AtomicI64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    Arc::new(AtomicI64::new(
        i64::try_from(now.div_ceil(60) * 60 + 60).expect("time"),
    ))
}

#[tokio::test]
async fn a_stranger_cannot_start_sign_ins_without_limit() {
    let server = mcp_oauth::auth_server::AuthServer::builder(ORIGIN)
        .resource(format!("{ORIGIN}/mcp"))
        .login(Arc::new(
            mcp_oauth::auth_server::DevUsers::new().user("alice", browser::PASSWORD),
        ))
        .rate_limits(None, None, None)
        .trusted_proxies(mcp_oauth::forwarded::TrustedProxies::parse(["10.0.0.0/8"]).expect("cidr"))
        .build()
        .await
        .expect("server");
    let now = minute_ahead();
    let instance = || {
        let read = now.clone();
        let server = server.clone();
        async move {
            Pages::embedded(server.clone(), ORIGIN, &browser::KEY)
                .await
                .expect("pages")
                .clock(move || read.load(Ordering::SeqCst))
                .sign_in_limit(Some(mcp_oauth::auth_server::RateLimit::new(1, 3)))
        }
    };
    let pages = instance().await;
    let app = app(&server, &pages);
    let started = |reply: &browser::Reply| {
        reply.status == 303
            && reply
                .location
                .as_deref()
                .is_some_and(|l| l.starts_with(&format!("{ORIGIN}/authorize?")))
    };
    let refused = |reply: &browser::Reply, seconds: &str| {
        assert_eq!(reply.status, 429, "{reply:?}");
        assert!(
            reply
                .body
                .contains(&format!("Try again in {seconds} seconds")),
            "{}",
            reply.body
        );
        assert!(reply.set_cookies.is_empty(), "no binding cookie: {reply:?}");
        assert!(reply.location.is_none());
    };

    // A burst of 3 from one address, then refused, by the page link as by any page.
    let stranger = "203.0.113.7";
    for _ in 0..3 {
        assert!(started(
            &visit(&app, "/gateway/whoami", stranger, None).await
        ));
    }
    let over = visit(&app, "/gateway/whoami", stranger, None).await;
    refused(&over, "60");
    refused(
        &visit(&app, "/gateway/sign-in?return=/gateway", stranger, None).await,
        "60",
    );
    // A header the stranger writes, without being a trusted proxy, changes nothing.
    for forged in ["198.51.100.1", "10.0.0.1", "198.51.100.2, 10.0.0.3"] {
        refused(
            &visit(&app, "/gateway/whoami", stranger, Some(forged)).await,
            "60",
        );
    }
    // An IPv6 client is counted by its /64: new addresses in it do not help.
    for i in 1..=3 {
        let peer = format!("2001:db8:0:7::{i}");
        assert!(started(&visit(&app, "/gateway/whoami", &peer, None).await));
    }
    refused(
        &visit(&app, "/gateway/whoami", "2001:db8:0:7:ffff::1", None).await,
        "60",
    );
    assert!(started(
        &visit(&app, "/gateway/whoami", "2001:db8:0:8::1", None).await
    ));
    // Another address has its own bucket.
    assert!(started(
        &visit(&app, "/gateway/whoami", "198.51.100.1", None).await
    ));

    // Behind the trusted proxy, each forwarded client has its own bucket, and a chain the
    // client began itself counts as the address the proxy saw.
    let proxy = "10.0.0.5";
    refused(
        &visit(&app, "/gateway/whoami", proxy, Some(stranger)).await,
        "60",
    );
    refused(
        &visit(
            &app,
            "/gateway/whoami",
            proxy,
            Some(&format!("192.0.2.77, {stranger}")),
        )
        .await,
        "60",
    );
    for _ in 0..3 {
        assert!(started(
            &visit(&app, "/gateway/whoami", proxy, Some("192.0.2.50")).await
        ));
    }
    refused(
        &visit(&app, "/gateway/whoami", proxy, Some("192.0.2.50")).await,
        "60",
    );

    // Another instance on the same store shares the buckets.
    let other = instance().await;
    let other_app = self::app(&server, &other);
    refused(
        &visit(&other_app, "/gateway/whoami", stranger, None).await,
        "60",
    );

    // A minute later, one more start (1 per minute), and no more.
    now.fetch_add(60, Ordering::SeqCst);
    assert!(started(
        &visit(&app, "/gateway/whoami", stranger, None).await
    ));
    refused(&visit(&app, "/gateway/whoami", stranger, None).await, "60");
}

#[tokio::test]
async fn a_signed_in_browser_is_not_held_back_by_its_address_limit() {
    let server = browser::server().await;
    let now = minute_ahead();
    let read = now.clone();
    let pages = browser::pages(&server)
        .await
        .clock(move || read.load(Ordering::SeqCst))
        .sign_in_limit(Some(mcp_oauth::auth_server::RateLimit::new(1, 2)));
    let app = app(&server, &pages);
    // Served without connection info, every visitor here is one address.
    let mut alice = signed_in(&app, "alice").await;
    assert_eq!(Browser::default().get(&app, "/gateway").await.status, 303);
    assert_eq!(Browser::default().get(&app, "/gateway").await.status, 429);
    let page = alice.get(&app, "/gateway/whoami").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(who(&page).starts_with("alice|"));
}

#[tokio::test]
async fn a_copy_of_the_cookie_taken_before_sign_out_stops_working() {
    let server = browser::server().await;
    let pages = browser::pages(&server).await;
    let app = app(&server, &pages);
    let mut alice = signed_in(&app, "alice").await;
    let page = alice.get(&app, "/gateway/whoami").await;
    let token = who(&page).rsplit('|').next().expect("token").to_owned();
    // Another session of the same user (another browser) is not touched by this sign-out.
    let mut elsewhere = signed_in(&app, "alice").await;

    // The attacker copied the session cookie (malware, a shared machine, a leaked log).
    let mut copy = Browser::default();
    copy.cookies.insert(
        "mcp_gateway_session".into(),
        alice.cookies["mcp_gateway_session"].clone(),
    );
    assert_eq!(copy.get(&app, "/gateway/whoami").await.status, 200);

    let out = alice
        .post(
            &app,
            web::SIGN_OUT_PATH,
            &[("csrf".to_owned(), token.clone())],
            Some(ORIGIN),
        )
        .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert!(!alice.cookies.contains_key("mcp_gateway_session"));

    // The copy is no session now: a page sends it to sign in, a form post is refused, and
    // the sign-in index does not name the user.
    let page = copy.get(&app, "/gateway/whoami").await;
    assert_eq!(page.status, 303, "{page:?}");
    assert!(!page.body.contains("alice"));
    let post = copy
        .clone()
        .post(&app, "/gateway/whoami", &[], Some(ORIGIN))
        .await;
    assert_eq!(post.status, 403, "{post:?}");
    assert_eq!(copy.get(&app, "/gateway").await.status, 303);
    // Signing it out again changes nothing and says nothing of the session.
    let again = copy
        .clone()
        .post(
            &app,
            web::SIGN_OUT_PATH,
            &[("csrf".to_owned(), token)],
            Some(ORIGIN),
        )
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        pages
            .visitor(&cookie_headers(&copy))
            .await
            .map(|v| v.subject().to_owned()),
        None
    );

    assert_eq!(elsewhere.get(&app, "/gateway/whoami").await.status, 200);
}

#[tokio::test]
async fn sign_out_holds_across_instances_on_one_memory_store() {
    let store: Arc<dyn mcp_oauth::auth_server::Store> =
        Arc::new(mcp_oauth::auth_server::MemoryStore::new());
    browser::sign_out_reaches_every_instance(store.clone(), store).await;
}

#[tokio::test]
async fn sign_out_holds_across_instances_on_one_sqlite_file() {
    let dir = std::env::temp_dir().join(format!(
        "mcp-oauth-web-pages-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("store.db");
    let open = || -> Arc<dyn mcp_oauth::auth_server::Store> {
        Arc::new(mcp_oauth::auth_server::store::SqliteStore::open(&path).expect("sqlite"))
    };
    browser::sign_out_reaches_every_instance(open(), open()).await;
    let _ = std::fs::remove_dir_all(&dir);
}
