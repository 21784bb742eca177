//! The credential pages (`/gateway/secrets/NAME`, `/gateway/connections`), from a user's side
//! and an attacker's: a token is pasted once, checked against the pattern, never shown again;
//! a user can only see, replace or delete their own entries, never without the session's form
//! token and this origin.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod browser;

use axum::Router;
use browser::{Browser, ORIGIN};
use mcp_oauth::auth_server::AuthServer;
use mcp_oauth_gateway::UserSecret;
use mcp_oauth_gateway::credential_pages::CredentialPages;
use mcp_oauth_gateway::vault::{EntryKind, Vault};

const TOKEN: &str = "ghp_abcdefgh";

struct Setup {
    app: Router,
    vault: Vault,
    issuer: String,
}

async fn setup() -> Setup {
    let server: AuthServer = browser::server().await;
    let pages = browser::pages(&server).await;
    let vault = Vault::new(server.store().clone(), &[5; 32]).unwrap();
    let secret = UserSecret::new(
        vault.clone(),
        "github",
        format!("{ORIGIN}/gateway/secrets/github"),
    )
    .pattern("ghp_[a-z]{8}")
    .unwrap();
    let credential = CredentialPages::new(pages.clone(), vault.clone(), server.issuer(), [secret]);
    let app = credential
        .router()
        .merge(pages.router())
        .merge(server.router());
    Setup {
        app,
        vault,
        issuer: server.issuer().to_owned(),
    }
}

impl Setup {
    fn user(&self, sub: &str) -> String {
        format!("{}\u{0}{sub}", self.issuer)
    }

    async fn stored(&self, sub: &str) -> Option<String> {
        self.vault
            .get(&self.user(sub), "github", EntryKind::UserSecret)
            .await
            .unwrap()
            .map(|e| String::from_utf8(e.secret.expose().to_vec()).unwrap())
    }
}

async fn signed_in(app: &Router, path: &str, user: &str) -> Browser {
    let mut browser = Browser::default();
    let back = browser.sign_in(app, path, user).await;
    assert_eq!(back.status, 303, "{back:?}");
    browser
}

/// The form token on a page.
fn csrf(body: &str) -> String {
    mcp_oauth::testing::hidden_form_fields(body)
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v)
        .expect("a form token")
}

fn form(csrf: &str, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut form = vec![("csrf".to_owned(), csrf.to_owned())];
    form.extend(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    form
}

#[tokio::test]
async fn a_user_pastes_a_token_once_and_it_is_never_shown_again() {
    let s = setup().await;
    let path = "/gateway/secrets/github";
    let mut alice = signed_in(&s.app, path, "alice").await;
    let page = alice.get(&s.app, path).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("Not set"), "{}", page.body);
    let token = csrf(&page.body);

    // A value that does not match the pattern is refused and not stored.
    let bad = "not-a-github-token-xyz";
    let refused = alice
        .post(
            &s.app,
            path,
            &form(&token, &[("action", "set"), ("secret", bad)]),
            Some(ORIGIN),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(!refused.body.contains(bad), "never echoed");
    assert_eq!(s.stored("alice").await, None);

    let saved = alice
        .post(
            &s.app,
            path,
            &form(&token, &[("action", "set"), ("secret", TOKEN)]),
            Some(ORIGIN),
        )
        .await;
    assert_eq!(saved.status, 200, "{saved:?}");
    assert!(saved.body.contains("Set on"), "{}", saved.body);
    assert!(!saved.body.contains(TOKEN), "never echoed");
    assert_eq!(s.stored("alice").await.as_deref(), Some(TOKEN));
    let again = alice.get(&s.app, path).await;
    assert!(again.body.contains("Set on") && !again.body.contains(TOKEN));

    // Replaced, then deleted.
    alice
        .post(
            &s.app,
            path,
            &form(&token, &[("action", "set"), ("secret", "ghp_zzzzzzzz")]),
            Some(ORIGIN),
        )
        .await;
    assert_eq!(s.stored("alice").await.as_deref(), Some("ghp_zzzzzzzz"));
    let deleted = alice
        .post(
            &s.app,
            path,
            &form(&token, &[("action", "delete")]),
            Some(ORIGIN),
        )
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(s.stored("alice").await, None);

    // An upstream without a user secret has no page.
    let other = alice.get(&s.app, "/gateway/secrets/linear").await;
    assert_eq!(other.status, 404);
}

#[tokio::test]
async fn no_form_without_the_sessions_token_and_this_origin_and_only_ones_own_entry() {
    let s = setup().await;
    let path = "/gateway/secrets/github";
    let mut alice = signed_in(&s.app, path, "alice").await;
    let alice_csrf = csrf(&alice.get(&s.app, path).await.body);
    alice
        .post(
            &s.app,
            path,
            &form(&alice_csrf, &[("action", "set"), ("secret", TOKEN)]),
            Some(ORIGIN),
        )
        .await;
    let mut bob = signed_in(&s.app, path, "bob").await;
    let bob_csrf = csrf(&bob.get(&s.app, path).await.body);
    assert!(
        bob.get(&s.app, path).await.body.contains("Not set"),
        "bob does not see alice's"
    );

    // Bob's form acts on bob's entry only, whatever the form says.
    let set = bob
        .post(
            &s.app,
            path,
            &form(
                &bob_csrf,
                &[
                    ("action", "set"),
                    ("secret", "ghp_bbbbbbbb"),
                    ("user", "alice"),
                    ("sub", "alice"),
                ],
            ),
            Some(ORIGIN),
        )
        .await;
    assert_eq!(set.status, 200);
    assert_eq!(s.stored("alice").await.as_deref(), Some(TOKEN));
    assert_eq!(s.stored("bob").await.as_deref(), Some("ghp_bbbbbbbb"));

    // Alice's session without a form token, with bob's, or from another origin: refused.
    for (token, origin) in [
        ("", Some(ORIGIN)),
        (bob_csrf.as_str(), Some(ORIGIN)),
        (alice_csrf.as_str(), Some("https://evil.example")),
    ] {
        let refused = alice
            .post(&s.app, path, &form(token, &[("action", "delete")]), origin)
            .await;
        assert_eq!(refused.status, 403, "{token:?} {origin:?}");
    }
    assert_eq!(s.stored("alice").await.as_deref(), Some(TOKEN));

    // No session at all: refused, not redirected.
    let mut stranger = Browser::default();
    let refused = stranger
        .post(
            &s.app,
            path,
            &form(&alice_csrf, &[("action", "delete")]),
            Some(ORIGIN),
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(s.stored("alice").await.as_deref(), Some(TOKEN));
}

#[tokio::test]
async fn the_connections_page_lists_every_kind_and_revokes_only_ones_own() {
    let s = setup().await;
    // Alice holds a pasted token and an OAuth connection; bob a pasted token.
    s.vault
        .put(
            &s.user("alice"),
            "github",
            EntryKind::UserSecret,
            TOKEN.as_bytes(),
            None,
        )
        .await
        .unwrap();
    s.vault
        .put(
            &s.user("alice"),
            "linear",
            EntryKind::UserOauth,
            b"{\"grant\":\"x\"}",
            Some(4_102_444_800),
        )
        .await
        .unwrap();
    s.vault
        .put(
            &s.user("bob"),
            "github",
            EntryKind::UserSecret,
            b"ghp_bbbbbbbb",
            None,
        )
        .await
        .unwrap();
    let path = "/gateway/connections";
    let mut alice = signed_in(&s.app, path, "alice").await;
    let page = alice.get(&s.app, path).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("personal token") && page.body.contains("OAuth connection"));
    assert!(page.body.contains("linear") && page.body.contains("2100-01-01"));
    assert!(!page.body.contains(TOKEN) && !page.body.contains("grant"));
    let alice_csrf = csrf(&page.body);

    let mut bob = signed_in(&s.app, path, "bob").await;
    let bob_page = bob.get(&s.app, path).await;
    assert!(!bob_page.body.contains("linear"), "bob sees his own only");
    let bob_csrf = csrf(&bob_page.body);
    // Bob revoking "linear" finds nothing of his; alice's stays.
    let nothing = bob
        .post(
            &s.app,
            "/gateway/connections/revoke",
            &form(&bob_csrf, &[("upstream", "linear"), ("kind", "user-oauth")]),
            Some(ORIGIN),
        )
        .await;
    assert_eq!(nothing.status, 404);
    // Without the token: refused.
    let refused = alice
        .post(
            &s.app,
            "/gateway/connections/revoke",
            &form("", &[("upstream", "linear"), ("kind", "user-oauth")]),
            Some(ORIGIN),
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(s.vault.list(&s.user("alice")).await.unwrap().len(), 2);

    let revoked = alice
        .post(
            &s.app,
            "/gateway/connections/revoke",
            &form(
                &alice_csrf,
                &[("upstream", "linear"), ("kind", "user-oauth")],
            ),
            Some(ORIGIN),
        )
        .await;
    assert_eq!(revoked.status, 303, "{revoked:?}");
    let left = s.vault.list(&s.user("alice")).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].upstream, "github");
    assert_eq!(s.vault.list(&s.user("bob")).await.unwrap().len(), 1);
    let unknown = alice
        .post(
            &s.app,
            "/gateway/connections/revoke",
            &form(&alice_csrf, &[("upstream", "github"), ("kind", "password")]),
            Some(ORIGIN),
        )
        .await;
    assert_eq!(unknown.status, 400);
}
