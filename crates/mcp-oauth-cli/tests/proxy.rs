//! `mcp-oauth proxy` as a user runs it: the demo MCP server behind our authorization server in
//! proxy mode, users signing in at a local GitHub stand-in. The whole browser leg is followed by
//! hand (redirects, cookies, the consent form); the client gets our tokens, never GitHub's.
//! Also: configuration errors explain themselves, and the generated encryption key is private
//! and reused after a restart.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod support;

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use support::browser::{Browser, CHALLENGE, REDIRECT, Reply, VERIFIER};
use support::github::{
    self, CLIENT_ID as GH_CLIENT, CLIENT_SECRET as GH_SECRET, USER_ID as GH_USER_ID,
};
use support::process::{Served, TempDir};

// --------------------------------------------------------------------------- the proxy process

type Proxy = Served;

/// `mcp-oauth proxy --port 0 --json --data-dir <tmp>/data <args>`, ready.
async fn start_proxy(tmp: &TempDir, name: &str, args: &[String]) -> Proxy {
    let mut all: Vec<String> = ["proxy", "--port", "0", "--json", "--data-dir"]
        .map(str::to_owned)
        .to_vec();
    all.push(tmp.data().to_string_lossy().into_owned());
    all.extend_from_slice(args);
    Served::start(tmp, name, &all, &[]).await
}

fn run_to_end(args: &[String]) -> (bool, String, String) {
    support::process::run_to_end(args, &[])
}

/// A `tools/call` of `whoami` with `token`.
async fn whoami(client: &mut Browser, proxy: &Proxy, token: &str) -> Reply {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let request = client
        .http
        .post(proxy.mcp_url())
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string());
    client.send(request).await
}

fn authorize_url(proxy: &Proxy, client_id: &str, state: &str) -> String {
    let mut url = url::Url::parse(&format!("{}/authorize", proxy.issuer())).unwrap();
    url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("state", state),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("resource", &proxy.mcp_url()),
        ("scope", "mcp:read mcp:write"),
    ]);
    url.to_string()
}

fn hidden_fields(html: &str) -> HashMap<String, String> {
    mcp_oauth::testing::hidden_form_fields(html)
        .into_iter()
        .collect()
}

fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// The decoded header and payload of a JWT.
fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = || {
        let part = parts.next().expect("JWT part");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    (decode(), decode())
}

/// The consent form approved, as the page gives it.
fn approval(html: &str) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = hidden_fields(html).into_iter().collect();
    form.push(("decision".into(), "approve".into()));
    form
}

fn pairs(form: &[(String, String)]) -> Vec<(&str, &str)> {
    form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

// --------------------------------------------------------------------------- tests

#[tokio::test]
async fn a_client_signs_in_with_github_through_the_proxy_and_gets_only_our_tokens() {
    let tmp = TempDir::new("proxy", "flow");
    let (gh, _gh_stop) = github::start(&[]).await;
    let mut args = gh.args();
    args.extend(["--store", "memory"].map(str::to_owned));
    let proxy = start_proxy(&tmp, "proxy", &args).await;
    let issuer = proxy.issuer().to_owned();
    let mcp_url = proxy.mcp_url().to_owned();
    let callback_url = proxy.field("callback_url").to_owned();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    assert_eq!(mcp_url, format!("{issuer}/mcp"));
    assert_eq!(callback_url, format!("{issuer}/oauth/callback"));
    assert_eq!(
        Path::new(&proxy.field("data_dir")),
        tmp.data().as_path(),
        "JSON line: data_dir"
    );
    // The callback is what one registers at GitHub for the OAuth app.
    gh.seen.lock().unwrap().callback = Some(callback_url.clone());

    let mut client = Browser::new();
    // Discovery: the protected resource names us; we offer registration and PKCE.
    let prm = client
        .get(&format!(
            "{issuer}/.well-known/oauth-protected-resource/mcp"
        ))
        .await
        .json();
    assert_eq!(prm["resource"], mcp_url);
    assert_eq!(prm["authorization_servers"], json!([issuer]));
    let meta = client
        .get(&format!("{issuer}/.well-known/oauth-authorization-server"))
        .await
        .json();
    assert_eq!(meta["issuer"], issuer);
    assert_eq!(meta["registration_endpoint"], format!("{issuer}/register"));
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));

    let client_id = client
        .register(&proxy.issuer(), "CLI proxy test client")
        .await;

    // Our consent page first: the client's name, where the answer goes, the scopes, the
    // provider, the CSRF token (also a cookie); no password field.
    let page = client
        .get(&authorize_url(&proxy, &client_id, "client-state-7f3"))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    for text in [
        "CLI proxy test client",
        "<strong>127.0.0.1</strong>",
        "<code>mcp:read</code>",
        "<code>mcp:write</code>",
        "you sign in with <strong>GitHub</strong>",
        "Allow and sign in with GitHub",
    ] {
        assert!(
            page.body.contains(text),
            "consent page lacks {text:?}: {}",
            page.body
        );
    }
    assert!(!page.body.contains("name=\"password\""), "no password here");
    let fields = hidden_fields(&page.body);
    assert!(fields.contains_key("request_id"), "{fields:?}");
    assert_eq!(
        client.jar.get("mcp_oauth_csrf"),
        fields.get("csrf"),
        "the CSRF cookie carries the form's token"
    );
    assert!(
        gh.seen.lock().unwrap().authorize.is_empty(),
        "nothing upstream before consent"
    );

    // Approved: to GitHub with OUR client id, our callback, a fresh state and PKCE S256.
    let form = approval(&page.body);
    let approved = client
        .post_form(&format!("{issuer}/authorize"), &pairs(&form))
        .await;
    assert_eq!(approved.status, 302, "{}", approved.body);
    assert!(
        client.jar.contains_key("mcp_oauth_consent"),
        "consent remembered in a cookie"
    );
    let to_github = approved.location().expect("redirect to GitHub");
    assert_eq!(
        to_github.as_str().split('?').next().unwrap(),
        format!("{}/login/oauth/authorize", gh.origin)
    );
    let upstream = query(&to_github);
    assert_eq!(upstream["client_id"], GH_CLIENT);
    assert_eq!(upstream["redirect_uri"], callback_url);
    assert_eq!(upstream["response_type"], "code");
    assert_eq!(upstream["scope"], "read:user user:email");
    assert_eq!(upstream["code_challenge_method"], "S256");
    assert_ne!(
        upstream["code_challenge"], CHALLENGE,
        "our own PKCE upstream"
    );
    assert_ne!(
        upstream["state"], "client-state-7f3",
        "our own state upstream"
    );

    // The approval bound GitHub's state to this browser with a cookie.
    let binding = approved
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("mcp_oauth_login_"))
        .expect("a cookie binding the sign-in to this browser");
    assert!(
        binding.contains("HttpOnly") && binding.contains("SameSite=Lax"),
        "{binding}"
    );

    // GitHub signs the user in and sends the browser to our callback. This GitHub user never
    // allowed this client: our consent page again, naming the account. Approved, the browser
    // goes on to the client with OUR code, the client's state and our issuer.
    let at_github = client.get(to_github.as_str()).await;
    assert_eq!(at_github.status, 302, "{}", at_github.body);
    let to_callback = at_github.location().unwrap();
    assert!(
        to_callback.as_str().starts_with(&callback_url),
        "{to_callback}"
    );
    let asked = client.get(to_callback.as_str()).await;
    assert_eq!(asked.status, 200, "{}\n{}", asked.body, proxy.log_text());
    assert!(
        asked.body.contains("as <strong>octocat</strong>"),
        "{}",
        asked.body
    );
    let form = approval(&asked.body);
    let back = client
        .post_form(&format!("{issuer}/authorize"), &pairs(&form))
        .await;
    assert_eq!(back.status, 302, "{}\n{}", back.body, proxy.log_text());
    let to_client = back.location().unwrap();
    assert!(to_client.as_str().starts_with(REDIRECT), "{to_client}");
    let answer = query(&to_client);
    assert_eq!(answer["state"], "client-state-7f3");
    assert_eq!(answer["iss"], issuer);
    assert!(!answer.contains_key("error"), "{answer:?}");
    let code = answer["code"].clone();
    assert_ne!(code, query(&to_callback)["code"], "our code, not GitHub's");

    // The upstream leg as GitHub saw it: one token request with our secret and the verifier,
    // one /user call with the GitHub token and a User-Agent (GitHub refuses requests without).
    {
        let seen = gh.seen.lock().unwrap();
        assert_eq!(seen.token_requests.len(), 1);
        let form = &seen.token_requests[0];
        assert_eq!(form["client_id"], GH_CLIENT);
        assert_eq!(form["redirect_uri"], callback_url);
        assert_eq!(
            github::s256(&form["code_verifier"]),
            upstream["code_challenge"]
        );
        assert_eq!(seen.access_tokens.len(), 1, "GitHub issued a token");
        assert_eq!(seen.user_calls.len(), 1);
        let (auth, agent) = &seen.user_calls[0];
        assert_eq!(auth, &format!("Bearer {}", seen.access_tokens[0]));
        assert!(agent.starts_with("mcp-oauth/"), "{agent}");
    }

    // GitHub's answer is single-use: replaying our callback is a 400 page, never a redirect.
    let replay = client.get(to_callback.as_str()).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(replay.location().is_none());
    assert_eq!(
        gh.seen.lock().unwrap().token_requests.len(),
        1,
        "no second exchange"
    );

    // Our tokens for the MCP resource.
    let tokens = client
        .post_form(
            &format!("{issuer}/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &client_id),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                ("resource", &mcp_url),
            ],
        )
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let tokens = tokens.json();
    assert!(
        tokens["token_type"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("bearer")
    );
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    let (header, claims) = jwt_parts(&access);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["aud"], mcp_url);
    assert_eq!(claims["sub"], GH_USER_ID.to_string());
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["scope"], "mcp:read mcp:write");

    // whoami: the GitHub user (id -> id, login -> username, avatar_url -> picture).
    let who = whoami(&mut client, &proxy, &access).await;
    assert_eq!(who.status, 200, "{}", who.body);
    let who = &who.json()["result"]["structuredContent"];
    assert_eq!(
        who["user"],
        json!({
            "id": GH_USER_ID.to_string(),
            "email": "octocat@github.example",
            "name": "The Octocat",
            "username": "octocat",
            "picture": "https://avatars.github.example/u/583231",
            "roles": [],
            "permissions": [],
            "extra": {},
        })
    );
    assert_eq!(who["client_id"], client_id);
    assert_eq!(who["issuer"], issuer);
    assert_eq!(who["scopes"], json!(["mcp:read", "mcp:write"]));

    // Refresh: new tokens of ours (rotated), the same user, and GitHub is not involved.
    let renewed = client
        .post_form(
            &format!("{issuer}/token"),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", &client_id),
                ("resource", &mcp_url),
            ],
        )
        .await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let renewed = renewed.json();
    let access2 = renewed["access_token"].as_str().unwrap().to_owned();
    assert_ne!(access2, access);
    assert_ne!(
        renewed["refresh_token"].as_str().unwrap(),
        refresh,
        "rotated"
    );
    assert_eq!(jwt_parts(&access2).1["sub"], GH_USER_ID.to_string());
    let who = whoami(&mut client, &proxy, &access2).await;
    assert_eq!(who.status, 200, "{}", who.body);
    assert_eq!(
        who.json()["result"]["structuredContent"]["user"]["username"],
        "octocat"
    );
    assert_eq!(gh.seen.lock().unwrap().token_requests.len(), 1);

    // Nothing the client or its browser received holds a GitHub token, not even inside our
    // JWTs.
    let mut everything = client.transcript.clone();
    for token in [&access, &access2] {
        let (header, claims) = jwt_parts(token);
        everything.push_str(&format!("{header}{claims}"));
    }
    assert!(everything.contains(&access), "the transcript is complete");
    let issued = gh.seen.lock().unwrap().issued.clone();
    assert_eq!(issued.len(), 2, "an access and a refresh token");
    for token in &issued {
        assert!(
            !everything.contains(token.as_str()),
            "a GitHub token reached the client"
        );
    }
    assert!(
        proxy.log_text().contains("upstream sign-in completed"),
        "{}",
        proxy.log_text()
    );
}

/// Security review 2, F2, replayed against `mcp-oauth proxy --provider github`: the attacker
/// registers a client, approves it in their own browser and hands the provider URL (with our
/// state) to the victim, whose browser GitHub sends straight back to our callback. The
/// victim's browser has no binding cookie: an error page, no code for the attacker, GitHub's
/// code never exchanged, and the state gone for the attacker too.
#[tokio::test]
async fn the_reviews_login_csrf_gets_the_attacker_nothing() {
    let tmp = TempDir::new("proxy", "csrf");
    let (gh, _gh_stop) = github::start(&[]).await;
    let mut args = gh.args();
    args.extend(["--store", "memory"].map(str::to_owned));
    let proxy = start_proxy(&tmp, "proxy", &args).await;
    let issuer = proxy.issuer().to_owned();
    gh.seen.lock().unwrap().callback = Some(proxy.field("callback_url").to_owned());

    let mut attacker = Browser::new();
    let client_id = attacker.register(&proxy.issuer(), "Attacker app").await;
    let page = attacker
        .get(&authorize_url(&proxy, &client_id, "atk"))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let approved = attacker
        .post_form(
            &format!("{issuer}/authorize"),
            &pairs(&approval(&page.body)),
        )
        .await;
    let to_github = approved.location().expect("to GitHub");

    let mut victim = Browser::new();
    let to_callback = victim.get(to_github.as_str()).await.location().unwrap();
    let done = victim.get(to_callback.as_str()).await;
    assert!(
        done.location().is_none(),
        "the attacker's redirect URI gets nothing"
    );
    assert_eq!(done.status, 403, "{}", done.body);
    assert!(done.body.contains("another browser"), "{}", done.body);
    let replay = attacker.get(to_callback.as_str()).await;
    assert!(replay.location().is_none());
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(
        gh.seen.lock().unwrap().token_requests.is_empty(),
        "GitHub's code for the victim was never exchanged"
    );
    assert!(
        proxy
            .log_text()
            .contains("the sign-in was started in another browser"),
        "{}",
        proxy.log_text()
    );
}

#[test]
fn configuration_errors_explain_themselves_and_exit_non_zero() {
    let tmp = TempDir::new("proxy", "config");
    let data = tmp.data().to_string_lossy().into_owned();
    let short_key = STANDARD.encode([7u8; 16]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--provider", "github", "--client-id", "x"],
            "--provider github needs the client secret: --client-secret or MCP_OAUTH_UPSTREAM_CLIENT_SECRET",
        ),
        (
            vec![
                "--provider",
                "okta",
                "--client-id",
                "x",
                "--client-secret",
                "s3cr3t-value",
            ],
            "--provider okta needs --okta-domain",
        ),
        (
            vec![
                "--provider",
                "entra",
                "--client-id",
                "x",
                "--client-secret",
                "s3cr3t-value",
            ],
            "--provider entra needs --tenant",
        ),
        (
            vec!["--provider", "oidc", "--client-id", "x"],
            "--provider oidc needs --issuer",
        ),
        (
            vec![
                "--provider",
                "github",
                "--client-id",
                "x",
                "--client-secret",
                "s3cr3t-value",
                "--encryption-key",
                &short_key,
            ],
            "the encryption key must be 32 bytes",
        ),
        (
            vec![
                "--provider",
                "github",
                "--client-id",
                "x",
                "--client-secret",
                "s3cr3t-value",
                "--encryption-key",
                "not a key at all",
            ],
            "the encryption key must be 32 bytes",
        ),
        (
            vec![
                "--provider",
                "github",
                "--client-id",
                "x",
                "--client-secret",
                "s3cr3t-value",
                "--store",
                "redis",
            ],
            "--store redis needs --redis-url (or REDIS_URL)",
        ),
        (
            vec![
                "--provider",
                "github",
                "--client-id",
                "x",
                "--client-secret",
                "s3cr3t-value",
                "--authorize-param",
                "prompt",
            ],
            "--authorize-param takes NAME=VALUE",
        ),
        (
            vec![
                "--provider",
                "github",
                "--client-id",
                "x",
                "--client-secret",
                "s3cr3t-value",
                "--map-claim",
                "department",
            ],
            "--map-claim takes FROM=TO",
        ),
        (
            vec![
                "--provider",
                "github",
                "--client-id",
                "x",
                "--client-secret",
                "s3cr3t-value",
                "--map-claim",
                "login=sub",
            ],
            "invalid user mapping: \"sub\" is set by this server in its tokens and cannot come from the provider",
        ),
        (
            vec![
                "--provider",
                "github",
                "--client-id",
                "x",
                "--client-secret",
                "s3cr3t-value",
                "--revocation-endpoint",
                "http://idp.example.com/revoke",
            ],
            "invalid upstream revocation endpoint \"http://idp.example.com/revoke\": refused: only https",
        ),
        (
            vec![
                "--provider",
                "github",
                "--client-id",
                "x",
                "--client-secret",
                "s3cr3t-value",
                "--dpop-nonce",
            ],
            "--dpop-nonce needs DPoP on: add --dpop allowed (or --dpop required)",
        ),
    ];
    for (extra, expected) in cases {
        let mut args: Vec<String> = ["proxy", "--port", "0", "--json", "--data-dir", &data]
            .map(str::to_owned)
            .to_vec();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let (ok, stdout, stderr) = run_to_end(&args);
        assert!(!ok, "{extra:?} succeeded");
        assert!(
            stdout.is_empty(),
            "{extra:?}: nothing served, no JSON line: {stdout}"
        );
        assert!(
            stderr.contains(&format!("error: {expected}")),
            "{extra:?}: expected {expected:?} in\n{stderr}"
        );
        for secret in ["s3cr3t-value", short_key.as_str(), "not a key at all"] {
            assert!(
                !stderr.contains(secret),
                "{extra:?}: the error repeats a secret: {stderr}"
            );
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_generated_encryption_key_is_private_and_reused_after_a_restart() {
    use std::os::unix::fs::PermissionsExt as _;

    let tmp = TempDir::new("proxy", "key");
    // GitHub is never contacted here: the test stops at the redirect to it.
    let github = "http://127.0.0.1:9".to_owned();
    let mut args: Vec<String> = [
        "--provider",
        "github",
        "--client-id",
        GH_CLIENT,
        "--client-secret",
        GH_SECRET,
        "--github-url",
        &github,
        "--github-api-url",
        &github,
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(["--store", "sqlite"].map(str::to_owned));

    let first = start_proxy(&tmp, "first", &args).await;
    let key_file = tmp.data().join("encryption.key");
    let mode = std::fs::metadata(&key_file)
        .expect("the key file is created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let key = std::fs::read(&key_file).unwrap();
    let decoded = STANDARD
        .decode(String::from_utf8(key.clone()).unwrap().trim())
        .expect("base64");
    assert_eq!(decoded.len(), 32);
    assert!(
        first.log_text().contains("generated the encryption key"),
        "{}",
        first.log_text()
    );

    // Approve a client once: the browser gets a consent cookie signed with the key.
    let mut client = Browser::new();
    let client_id = client.register(&first.issuer(), "Key test client").await;
    let page = client.get(&authorize_url(&first, &client_id, "s1")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let form = approval(&page.body);
    let approved = client
        .post_form(&format!("{}/authorize", first.issuer()), &pairs(&form))
        .await;
    assert_eq!(approved.status, 302, "{}", approved.body);
    assert!(client.jar.contains_key("mcp_oauth_consent"));
    drop(first);

    // Same folder: the key file is read, not replaced, so the signed consent still counts and
    // the browser goes straight to GitHub (the client is in the SQLite store).
    let second = start_proxy(&tmp, "second", &args).await;
    assert_eq!(
        std::fs::read(&key_file).unwrap(),
        key,
        "the key file is unchanged"
    );
    assert!(!second.log_text().contains("generated the encryption key"));
    let straight = client.get(&authorize_url(&second, &client_id, "s2")).await;
    assert_eq!(
        straight.status, 302,
        "consent remembered: {}",
        straight.body
    );
    let to = straight.location().unwrap();
    assert!(
        to.as_str()
            .starts_with(&format!("{github}/login/oauth/authorize?")),
        "{to}"
    );
    drop(second);

    // Control: under another key the same cookie does not verify, so consent is asked again;
    // an explicit key leaves the file alone.
    let mut other = args.clone();
    other.extend(["--encryption-key".to_owned(), STANDARD.encode([42u8; 32])]);
    let third = start_proxy(&tmp, "third", &other).await;
    let asked = client.get(&authorize_url(&third, &client_id, "s3")).await;
    assert_eq!(asked.status, 200, "consent asked again under another key");
    assert!(asked.body.contains("Key test client"));
    assert_eq!(std::fs::read(&key_file).unwrap(), key);
}
