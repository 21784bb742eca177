//! Provider presets against local stand-ins of each identity provider: the provider's real URL
//! layout (issuer, discovery, JWKS path) on 127.0.0.1, tokens shaped like the provider's real
//! tokens (claims as its documentation shows them), every claim mapping, the audience, issuer
//! and expiry rules, the environment contract, and `verify_jwt(false)`.
//!
//! Claim sets follow `provider-shapes.md`: Auth0's access-token profile, WorkOS Connect tokens,
//! Supabase OAuth-server tokens, a real Keycloak 26 token, Clerk OAuth access tokens, Better
//! Auth `@better-auth/oauth-provider` tokens.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

mod common;

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use common::Served;
use mcp_oauth::authenticator::Audience;
use mcp_oauth::jose::{Algorithm, JwkSet, SigningKey};
use mcp_oauth::providers::{
    Auth0, BetterAuth, Clerk, Custom, Keycloak, Oidc, Provider, ProviderSpec, Supabase, WorkOs,
};
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};
use mcp_oauth::testing::{Layout, MockIdp, TestKey, TokenBuilder};
use mcp_oauth::{
    AccessToken, Auth, Claims, ConfigError, MapUserError, OAuth, UserInfo, VerifyError,
    VerifyErrorKind,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";
const AUTH0_API: &str = "https://api.example.com";
const SUPABASE_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn no_vars(_: &str) -> Option<String> {
    None
}

/// A variable source made of pairs, standing for the environment.
fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

/// The pipeline for `preset`, variables from nowhere (everything is set in code).
fn oauth(preset: impl Provider) -> OAuth {
    OAuth::builder()
        .resource(RESOURCE)
        .provider_with(preset, &no_vars)
        .mirror_authorization_server(false)
        .build()
        .expect("oauth")
}

fn spec(preset: impl Provider, vars: &dyn Fn(&str) -> Option<String>) -> ProviderSpec {
    preset.spec_with(vars).expect("spec")
}

fn config_error(preset: impl Provider, vars: &dyn Fn(&str) -> Option<String>) -> ConfigError {
    preset.spec_with(vars).expect_err("a configuration error")
}

async fn accepted(oauth: &OAuth, token: &str) -> Auth {
    oauth
        .authenticator()
        .authenticate(token, oauth.resource())
        .await
        .unwrap_or_else(|e| panic!("token refused: {e}"))
}

async fn refused(oauth: &OAuth, token: &str) -> VerifyError {
    match oauth
        .authenticator()
        .authenticate(token, oauth.resource())
        .await
    {
        Ok(auth) => panic!("token accepted: {auth:?}"),
        Err(err) => err,
    }
}

async fn kind(oauth: &OAuth, token: &str) -> VerifyErrorKind {
    refused(oauth, token).await.kind()
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    i64::try_from(secs).expect("seconds")
}

/// Issued two hours ago, expired an hour ago (well beyond the 60 s leeway).
fn expired(token: TokenBuilder) -> TokenBuilder {
    token.claim("iat", now() - 7200).claim("exp", now() - 3600)
}

fn extra(user: &UserInfo) -> Value {
    Value::Object(user.extra.clone())
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

fn claims(value: Value) -> Claims {
    Claims::new(value.as_object().cloned().expect("an object"))
}

/// Signs `claims` with `key` under exactly this header (odd spacing, extra members, no `kid`).
fn sign_with_header(key: &TestKey, header: &str, claims: &TokenBuilder) -> String {
    key.key()
        .sign_compact(header.as_bytes(), claims.claims().to_string().as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Auth0
// ---------------------------------------------------------------------------------------------

async fn auth0() -> (MockIdp, OAuth) {
    let idp = MockIdp::start_layout(
        TestKey::rs256(),
        Layout::new("", "/.well-known/jwks.json").trailing_slash(),
    )
    .await
    .expect("idp");
    let oauth = oauth(Auth0::new().domain(idp.origin()).audience(AUTH0_API));
    (idp, oauth)
}

/// Auth0's access-token profile (`typ: JWT`): `aud` is an array that adds the tenant's
/// `/userinfo` when `openid` is asked for, RBAC `permissions`, a namespaced roles claim set by
/// an Action, Organizations' `org_id` / `org_name`. The profile claims are those an Action adds.
fn auth0_token(idp: &MockIdp) -> TokenBuilder {
    idp.token()
        .typ(Some("JWT"))
        .sub("auth0|123456")
        .claim(
            "aud",
            json!([AUTH0_API, format!("{}userinfo", idp.issuer())]),
        )
        .claim("azp", "my_client_id")
        .scope("openid profile read:patients read:admin")
        .claim("permissions", json!(["read:patients", "read:admin"]))
        .claim("https://example.com/roles", json!(["doctor"]))
        .claim("org_id", "org_9ybsU1dN2dKfDkBi")
        .claim("org_name", "acme")
        .claim("email", "jane@example.com")
        .claim("email_verified", true)
        .claim("name", "Jane Doe")
        .claim("nickname", "jane")
        .claim("username", "jdoe")
        .claim("picture", "https://s.gravatar.com/avatar/jane.png")
        .claim("updated_at", "2026-01-02T03:04:05.000Z")
}

#[tokio::test]
async fn auth0_accepts_its_access_token_and_maps_every_claim() {
    let (idp, oauth) = auth0().await;
    assert_eq!(oauth.authorization_servers(), [idp.issuer()]);
    assert!(
        idp.issuer().ends_with('/'),
        "Auth0 issuers end with a slash"
    );
    assert_eq!(oauth.scopes_supported(), ["openid", "profile", "email"]);

    let auth = accepted(&oauth, &auth0_token(&idp).sign()).await;
    let user = &auth.user;
    assert_eq!(user.id, "auth0|123456");
    assert_eq!(user.email.as_deref(), Some("jane@example.com"));
    assert_eq!(user.name.as_deref(), Some("Jane Doe"));
    assert_eq!(user.username.as_deref(), Some("jdoe"));
    assert_eq!(user.nickname.as_deref(), Some("jane"));
    assert_eq!(
        user.picture.as_deref(),
        Some("https://s.gravatar.com/avatar/jane.png")
    );
    assert_eq!(user.roles, ["doctor"], "the namespaced roles claim");
    assert_eq!(user.permissions, ["read:patients", "read:admin"]);
    assert_eq!(
        auth.permissions, user.permissions,
        "one list of permissions"
    );
    assert_eq!(
        extra(user),
        json!({
            "email_verified": true,
            "updated_at": "2026-01-02T03:04:05.000Z",
            "org_id": "org_9ybsU1dN2dKfDkBi",
            "org_name": "acme",
        })
    );
    assert_eq!(
        auth.scopes,
        ["openid", "profile", "read:patients", "read:admin"]
    );
    assert_eq!(auth.client_id.as_deref(), Some("my_client_id"));
    assert_eq!(auth.issuer.as_deref(), Some(idp.issuer()));
    assert!(auth.has_scope("read:admin"));
    idp.shutdown().await;
}

#[tokio::test]
async fn auth0_roles_claim_wins_over_a_namespaced_one() {
    let (idp, oauth) = auth0().await;
    let token = auth0_token(&idp).claim("roles", json!(["admin"])).sign();
    assert_eq!(accepted(&oauth, &token).await.user.roles, ["admin"]);
    let token = auth0_token(&idp)
        .without("https://example.com/roles")
        .claim("https://tenant.example.org/claims/roles", json!(["nurse"]))
        .sign();
    assert_eq!(accepted(&oauth, &token).await.user.roles, ["nurse"]);
    idp.shutdown().await;
}

#[tokio::test]
async fn auth0_machine_to_machine_and_rfc9068_tokens_are_accepted() {
    let (idp, oauth) = auth0().await;
    // A client-credentials token: `aud` is a string, `sub` is `<client>@clients`, `gty`.
    let m2m = idp
        .token()
        .typ(Some("JWT"))
        .sub("3JJeI4tmMC6v8mCVCSDnAGVf2vrnJ0BT@clients")
        .aud(AUTH0_API)
        .claim("azp", "3JJeI4tmMC6v8mCVCSDnAGVf2vrnJ0BT")
        .scope("read:patients")
        .claim("gty", "client-credentials")
        .sign();
    let auth = accepted(&oauth, &m2m).await;
    assert_eq!(auth.subject(), "3JJeI4tmMC6v8mCVCSDnAGVf2vrnJ0BT@clients");
    assert_eq!(extra(&auth.user), json!({"gty": "client-credentials"}));
    assert!(auth.user.roles.is_empty() && auth.user.permissions.is_empty());

    // The RFC 9068 profile with the Resource Parameter Compatibility Profile: `aud` is the
    // MCP resource, `typ: at+jwt`, `client_id`.
    let rfc9068 = idp
        .token()
        .sub("auth0|123456")
        .aud(RESOURCE)
        .claim("client_id", "my_client_id")
        .claim("jti", "f9b2c3d4")
        .scope("openid read:patients")
        .sign();
    let auth = accepted(&oauth, &rfc9068).await;
    assert_eq!(auth.client_id.as_deref(), Some("my_client_id"));
    idp.shutdown().await;
}

#[tokio::test]
async fn auth0_refuses_wrong_audience_issuer_and_expired_tokens() {
    let (idp, oauth) = auth0().await;
    let other_api = auth0_token(&idp)
        .claim(
            "aud",
            json!([
                "https://other-api.example.com",
                format!("{}userinfo", idp.issuer())
            ]),
        )
        .sign();
    assert_eq!(
        kind(&oauth, &other_api).await,
        VerifyErrorKind::InvalidAudience
    );
    let userinfo_only = auth0_token(&idp)
        .aud(&format!("{}userinfo", idp.issuer()))
        .sign();
    assert_eq!(
        kind(&oauth, &userinfo_only).await,
        VerifyErrorKind::InvalidAudience
    );
    let no_slash = auth0_token(&idp)
        .iss(idp.issuer().trim_end_matches('/'))
        .sign();
    assert_eq!(
        kind(&oauth, &no_slash).await,
        VerifyErrorKind::InvalidIssuer
    );
    let other_tenant = auth0_token(&idp)
        .iss("https://other-tenant.us.auth0.com/")
        .sign();
    assert_eq!(
        kind(&oauth, &other_tenant).await,
        VerifyErrorKind::InvalidIssuer
    );
    let old = expired(auth0_token(&idp)).sign();
    assert_eq!(kind(&oauth, &old).await, VerifyErrorKind::Expired);
    // Without an API audience Auth0 issues an opaque token (a five-segment JWE for /userinfo).
    let opaque = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..q2FzZm9vYmFy.c2VjcmV0.dGFn";
    assert_eq!(kind(&oauth, opaque).await, VerifyErrorKind::Malformed);
    idp.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// WorkOS AuthKit
// ---------------------------------------------------------------------------------------------

const WORKOS_CLIENT: &str = "client_01JP8BD0CZ401TDF9X54NT5ZEK";

async fn workos(preset: impl FnOnce(WorkOs) -> WorkOs) -> (MockIdp, OAuth) {
    let idp = MockIdp::start_layout(TestKey::rs256(), Layout::new("", "/oauth2/jwks"))
        .await
        .expect("idp");
    let oauth = oauth(preset(WorkOs::new().subdomain(idp.origin())));
    (idp, oauth)
}

/// A Connect (MCP) access token: no `typ` header, `aud` = the resource, `client_id`,
/// `org_id`, `sid` (the consent id), `jti`.
fn workos_token(idp: &MockIdp) -> TokenBuilder {
    idp.token()
        .typ(None)
        .sub("user_01JQ0E27VT3MH79RY0FVA4QBP9")
        .aud(RESOURCE)
        .claim("client_id", WORKOS_CLIENT)
        .claim("org_id", "org_01HRDMC6CM357W30QMHMQ96Q0S")
        .claim("sid", "app_consent_01JQ0E27WE4K1RCMH7Q094M1GJ")
        .scope("openid profile email")
        .claim("jti", "01JQ0E27ZXE4XNHVP870S6PWYN")
}

#[tokio::test]
async fn workos_accepts_a_connect_token_and_maps_every_claim() {
    let (idp, oauth) = workos(|p| p).await;
    assert_eq!(oauth.authorization_servers(), [idp.issuer()]);
    assert_eq!(oauth.scopes_supported(), ["email", "openid", "profile"]);

    let auth = accepted(&oauth, &workos_token(&idp).sign()).await;
    assert_eq!(auth.subject(), "user_01JQ0E27VT3MH79RY0FVA4QBP9");
    assert_eq!(auth.scopes, ["openid", "profile", "email"]);
    assert_eq!(auth.client_id.as_deref(), Some(WORKOS_CLIENT));
    assert_eq!(
        extra(&auth.user),
        json!({
            "organization_id": "org_01HRDMC6CM357W30QMHMQ96Q0S",
            "sid": "app_consent_01JQ0E27WE4K1RCMH7Q094M1GJ",
        })
    );
    assert!(auth.user.roles.is_empty() && auth.user.permissions.is_empty());

    // What AuthKit adds for a user acting in an organization, and the OIDC profile claims.
    let rich = workos_token(&idp)
        .claim("role", "admin")
        .claim("roles", json!(["admin", "member"]))
        .claim("permissions", json!(["posts:read", "posts:write"]))
        .claim("email", "ada@example.com")
        .claim("email_verified", true)
        .claim("name", "Ada Lovelace")
        .claim("preferred_username", "ada")
        .claim("picture", "https://workoscdn.com/images/ada.png")
        .sign();
    let auth = accepted(&oauth, &rich).await;
    let user = &auth.user;
    assert_eq!(user.email.as_deref(), Some("ada@example.com"));
    assert_eq!(user.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(user.username.as_deref(), Some("ada"));
    assert_eq!(user.nickname, None);
    assert_eq!(
        user.picture.as_deref(),
        Some("https://workoscdn.com/images/ada.png")
    );
    assert_eq!(user.roles, ["admin", "member"]);
    assert_eq!(user.permissions, ["posts:read", "posts:write"]);
    assert_eq!(auth.permissions, user.permissions);
    assert_eq!(
        extra(user),
        json!({
            "organization_id": "org_01HRDMC6CM357W30QMHMQ96Q0S",
            "sid": "app_consent_01JQ0E27WE4K1RCMH7Q094M1GJ",
            "role": "admin",
            "email_verified": true,
        })
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn workos_binds_the_audience_and_accepts_the_client_id_only_when_configured() {
    let (idp, oauth) = workos(|p| p).await;
    // Without a resource, AuthKit puts the environment's client id in `aud`.
    let client_aud = workos_token(&idp).aud(WORKOS_CLIENT).sign();
    assert_eq!(
        kind(&oauth, &client_aud).await,
        VerifyErrorKind::InvalidAudience
    );
    let other = workos_token(&idp)
        .aud("https://other.example.com/mcp")
        .sign();
    assert_eq!(kind(&oauth, &other).await, VerifyErrorKind::InvalidAudience);
    idp.shutdown().await;

    let (idp, oauth) = workos(|p| p.audience(WORKOS_CLIENT)).await;
    let client_aud = workos_token(&idp).aud(WORKOS_CLIENT).sign();
    assert_eq!(
        accepted(&oauth, &client_aud).await.subject(),
        "user_01JQ0E27VT3MH79RY0FVA4QBP9"
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn workos_refuses_session_tokens_foreign_issuers_and_expired_tokens() {
    let (idp, oauth) = workos(|p| p).await;
    // An AuthKit session token: another issuer (and no `aud`).
    let session = idp
        .token()
        .iss("https://api.workos.com")
        .sub("user_01HBEQKA6K4QJAS93VPE39W1JT")
        .claim("sid", "session_01HQSXZGF8FHF7A9ZZFCW4387R")
        .claim("role", "member")
        .sign();
    assert_eq!(kind(&oauth, &session).await, VerifyErrorKind::InvalidIssuer);
    let trailing = workos_token(&idp).iss(&format!("{}/", idp.issuer())).sign();
    assert_eq!(
        kind(&oauth, &trailing).await,
        VerifyErrorKind::InvalidIssuer
    );
    let old = expired(workos_token(&idp)).sign();
    assert_eq!(kind(&oauth, &old).await, VerifyErrorKind::Expired);
    idp.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Supabase
// ---------------------------------------------------------------------------------------------

struct SupabaseStandIn {
    idp: MockIdp,
    es: TestKey,
    rs: TestKey,
}

/// A Supabase project publishing an ES256 and an RS256 key, like a project that rotated
/// from RSA to P-256.
async fn supabase() -> SupabaseStandIn {
    let es = TestKey::es256();
    let rs = TestKey::rs256();
    let idp = MockIdp::start_layout(
        es.clone(),
        Layout::new("/auth/v1", "/auth/v1/.well-known/jwks.json"),
    )
    .await
    .expect("idp");
    idp.set_keys(&[&es, &rs]);
    SupabaseStandIn { idp, es, rs }
}

/// An OAuth-server access token (`client_id`, `scope`) of a signed-in user.
fn supabase_token(key: &TestKey, issuer: &str) -> TokenBuilder {
    key.token()
        .typ(Some("JWT"))
        .iss(issuer)
        .aud("authenticated")
        .sub("123e4567-e89b-12d3-a456-426614174000")
        .claim("email", "user@example.com")
        .claim("phone", "")
        .claim("role", "authenticated")
        .claim("aal", "aal1")
        .claim(
            "amr",
            json!([{"method": "password", "timestamp": 1_640_991_600}]),
        )
        .claim("session_id", "5f1d3c8e-8b7a-4c9e-9d3f-2a1b0c9d8e7f")
        .claim("is_anonymous", false)
        .claim(
            "app_metadata",
            json!({"provider": "email", "providers": ["email"]}),
        )
        .claim(
            "user_metadata",
            json!({"name": "John Doe", "username": "jdoe", "avatar_url": "https://example.com/jdoe.png"}),
        )
        .claim("client_id", "9a8b7c6d-5e4f-3a2b-1c0d-9e8f7a6b5c4d")
        .scope("openid email profile")
}

#[tokio::test]
async fn supabase_accepts_es256_and_rs256_tokens_and_maps_every_claim() {
    let s = supabase().await;
    let oauth = oauth(Supabase::new().url(s.idp.origin()));
    assert_eq!(oauth.authorization_servers(), [s.idp.issuer()]);
    assert!(oauth.scopes_supported().is_empty());

    for key in [&s.es, &s.rs] {
        let auth = accepted(&oauth, &supabase_token(key, s.idp.issuer()).sign()).await;
        let user = &auth.user;
        assert_eq!(user.id, "123e4567-e89b-12d3-a456-426614174000");
        assert_eq!(user.email.as_deref(), Some("user@example.com"));
        assert_eq!(user.name.as_deref(), Some("John Doe"));
        assert_eq!(user.username.as_deref(), Some("jdoe"));
        assert_eq!(user.nickname, None);
        assert_eq!(
            user.picture.as_deref(),
            Some("https://example.com/jdoe.png")
        );
        assert_eq!(user.roles, ["authenticated"]);
        assert_eq!(user.permissions, ["aal:aal1"]);
        assert_eq!(auth.permissions, user.permissions);
        assert_eq!(
            extra(user),
            json!({
                "aal": "aal1",
                "amr": [{"method": "password", "timestamp": 1_640_991_600}],
                "session_id": "5f1d3c8e-8b7a-4c9e-9d3f-2a1b0c9d8e7f",
                "is_anonymous": false,
                "app_metadata": {"provider": "email", "providers": ["email"]},
                "phone": "",
            })
        );
        assert_eq!(auth.scopes, ["openid", "email", "profile"]);
        assert_eq!(
            auth.client_id.as_deref(),
            Some("9a8b7c6d-5e4f-3a2b-1c0d-9e8f7a6b5c4d")
        );
    }
    s.idp.shutdown().await;
}

#[tokio::test]
async fn supabase_anonymous_users_and_full_name_map() {
    let s = supabase().await;
    let oauth = oauth(Supabase::new().url(s.idp.origin()));
    let token = supabase_token(&s.es, s.idp.issuer())
        .claim("email", "")
        .claim("is_anonymous", true)
        .claim("user_metadata", json!({"full_name": "Anon Ymous"}))
        .claim("aal", "aal2")
        .sign();
    let auth = accepted(&oauth, &token).await;
    assert_eq!(auth.user.email, None, "Supabase sends \"\" for no e-mail");
    assert_eq!(auth.user.name.as_deref(), Some("Anon Ymous"));
    assert_eq!(auth.user.permissions, ["aal:aal2"]);
    assert_eq!(auth.user.extra["is_anonymous"], json!(true));
    s.idp.shutdown().await;
}

#[tokio::test]
async fn supabase_legacy_hs256_needs_the_secret_and_only_the_secret() {
    let s = supabase().await;
    let legacy = TestKey::hs256(SUPABASE_SECRET.as_bytes());
    // Legacy tokens carry no `kid`.
    let token = sign_with_header(
        &legacy,
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &supabase_token(&legacy, s.idp.issuer()),
    );

    let with_secret = oauth(
        Supabase::new()
            .url(s.idp.origin())
            .jwt_secret(SUPABASE_SECRET),
    );
    let auth = accepted(&with_secret, &token).await;
    assert_eq!(auth.user.roles, ["authenticated"]);
    // ES256 keeps working next to the secret.
    accepted(&with_secret, &supabase_token(&s.es, s.idp.issuer()).sign()).await;

    let forged = TestKey::hs256(b"another-secret-of-at-least-32-bytes!!");
    let forged = sign_with_header(
        &forged,
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &supabase_token(&forged, s.idp.issuer()),
    );
    assert_eq!(
        kind(&with_secret, &forged).await,
        VerifyErrorKind::InvalidSignature
    );

    let without_secret = oauth(Supabase::new().url(s.idp.origin()));
    assert_eq!(
        kind(&without_secret, &token).await,
        VerifyErrorKind::UnsupportedAlgorithm
    );

    // The project's anon API key is an HS256 JWT too, issued by "supabase": not a user token.
    let anon = sign_with_header(
        &legacy,
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &legacy
            .token()
            .iss("supabase")
            .claim("ref", "abcdefghijklmnopqrst")
            .claim("role", "anon"),
    );
    assert_eq!(
        kind(&with_secret, &anon).await,
        VerifyErrorKind::InvalidIssuer
    );
    s.idp.shutdown().await;
}

#[tokio::test]
async fn supabase_accepts_authenticated_or_the_resource_and_refuses_the_rest() {
    let s = supabase().await;
    let oauth = oauth(Supabase::new().url(s.idp.origin()));
    let bound = supabase_token(&s.es, s.idp.issuer()).aud(RESOURCE).sign();
    accepted(&oauth, &bound).await;
    // A browser-session token (no `client_id`, no `scope`) has the same issuer, keys and
    // `aud: authenticated`: nothing tells it from an OAuth-server token, so it passes too.
    let session = supabase_token(&s.es, s.idp.issuer())
        .without("client_id")
        .without("scope")
        .sign();
    let auth = accepted(&oauth, &session).await;
    assert!(auth.client_id.is_none() && auth.scopes.is_empty());
    let other = supabase_token(&s.es, s.idp.issuer()).aud("anon").sign();
    assert_eq!(kind(&oauth, &other).await, VerifyErrorKind::InvalidAudience);
    let other_project =
        supabase_token(&s.es, "https://zyxwvutsrqponmlkjihg.supabase.co/auth/v1").sign();
    assert_eq!(
        kind(&oauth, &other_project).await,
        VerifyErrorKind::InvalidIssuer
    );
    let old = expired(supabase_token(&s.rs, s.idp.issuer())).sign();
    assert_eq!(kind(&oauth, &old).await, VerifyErrorKind::Expired);
    s.idp.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Keycloak
// ---------------------------------------------------------------------------------------------

async fn keycloak(preset: impl FnOnce(Keycloak) -> Keycloak) -> (MockIdp, OAuth) {
    let idp = MockIdp::start_layout(
        TestKey::rs256(),
        Layout::new("/realms/demo", "/realms/demo/protocol/openid-connect/certs"),
    )
    .await
    .expect("idp");
    let oauth = oauth(preset(
        Keycloak::new().server_url(idp.origin()).realm("demo"),
    ));
    (idp, oauth)
}

/// A Keycloak 26 access token (the real token of provider-shapes §4) with an Audience mapper
/// (`aud` adds `mcp-server`; Audience Resolve adds `account`).
fn keycloak_claims(key: &TestKey, issuer: &str) -> TokenBuilder {
    key.token()
        .iss(issuer)
        .sub("8befeac4-8963-49da-a9ac-f310e8d922d8")
        .claim("auth_time", now() - 60)
        .claim("jti", "179a04e8-6a41-41bb-ab20-14d55a8518af")
        .claim("aud", json!(["mcp-server", "account"]))
        .claim("typ", "Bearer")
        .claim("azp", "mcp-client")
        .claim("sid", "54db1502-a5dc-4a27-af62-eeef0694a628")
        .claim("acr", "1")
        .claim("allowed-origins", json!(["http://localhost:6274"]))
        .claim(
            "realm_access",
            json!({"roles": ["offline_access", "uma_authorization", "teacher"]}),
        )
        .claim(
            "resource_access",
            json!({"mcp-server": {"roles": ["tools:write"]}, "account": {"roles": ["view-profile", "manage-account"]}}),
        )
        .scope("openid email profile roles")
        .claim("email_verified", true)
        .claim("name", "Pat Teacher")
        .claim("preferred_username", "teacher@example.org")
        .claim("given_name", "Pat")
        .claim("family_name", "Teacher")
        .claim("email", "teacher@example.org")
}

/// Signed by the realm key, with Keycloak's header spacing (`"typ" : "JWT"`).
fn keycloak_sign(idp: &MockIdp, claims: &TokenBuilder) -> String {
    let header = format!(
        r#"{{"alg":"RS256","typ" : "JWT","kid" : "{}"}}"#,
        idp.key().kid()
    );
    sign_with_header(idp.key(), &header, claims)
}

#[tokio::test]
async fn keycloak_accepts_its_access_token_and_maps_every_claim() {
    let (idp, oauth) = keycloak(|p| p.audience("mcp-server")).await;
    assert_eq!(oauth.authorization_servers(), [idp.issuer()]);
    assert!(idp.issuer().ends_with("/realms/demo"));
    assert_eq!(
        oauth.scopes_supported(),
        ["openid", "profile", "email", "roles"]
    );

    let auth = accepted(
        &oauth,
        &keycloak_sign(&idp, &keycloak_claims(idp.key(), idp.issuer())),
    )
    .await;
    let user = &auth.user;
    assert_eq!(user.id, "8befeac4-8963-49da-a9ac-f310e8d922d8");
    assert_eq!(user.email.as_deref(), Some("teacher@example.org"));
    assert_eq!(user.name.as_deref(), Some("Pat Teacher"));
    assert_eq!(user.username.as_deref(), Some("teacher@example.org"));
    assert_eq!(user.nickname.as_deref(), Some("teacher@example.org"));
    assert_eq!(user.picture, None);
    assert_eq!(
        user.roles,
        ["offline_access", "uma_authorization", "teacher"]
    );
    assert_eq!(
        sorted(user.permissions.clone()),
        [
            "account:manage-account",
            "account:view-profile",
            "mcp-server:tools:write"
        ]
    );
    assert_eq!(
        auth.permissions, user.permissions,
        "one list of permissions"
    );
    assert!(
        auth.has_scope("mcp-server:tools:write"),
        "client roles count as scopes"
    );
    assert_eq!(
        extra(user),
        json!({
            "email_verified": true,
            "given_name": "Pat",
            "family_name": "Teacher",
            "realm_access": {"roles": ["offline_access", "uma_authorization", "teacher"]},
            "resource_access": {"mcp-server": {"roles": ["tools:write"]}, "account": {"roles": ["view-profile", "manage-account"]}},
            "azp": "mcp-client",
        })
    );
    assert_eq!(auth.scopes, ["openid", "email", "profile", "roles"]);
    assert_eq!(auth.client_id.as_deref(), Some("mcp-client"));

    // Keycloak's opt-in RFC 9068 header is fine too.
    let at_jwt = keycloak_claims(idp.key(), idp.issuer()).sign();
    accepted(&oauth, &at_jwt).await;
    idp.shutdown().await;
}

#[tokio::test]
async fn keycloak_needs_an_audience_mapper_unless_the_check_is_off() {
    let (idp, oauth) = keycloak(|p| p).await;
    // Without any mapper Keycloak puts no `aud` at all.
    let bare = keycloak_claims(idp.key(), idp.issuer()).without("aud");
    assert_eq!(
        kind(&oauth, &keycloak_sign(&idp, &bare)).await,
        VerifyErrorKind::InvalidAudience
    );
    // The client id is not accepted unless configured…
    let client = keycloak_claims(idp.key(), idp.issuer());
    assert_eq!(
        kind(&oauth, &keycloak_sign(&idp, &client)).await,
        VerifyErrorKind::InvalidAudience
    );
    // …the MCP resource is (an Audience mapper with the MCP URL).
    let bound = keycloak_claims(idp.key(), idp.issuer()).claim("aud", json!([RESOURCE, "account"]));
    accepted(&oauth, &keycloak_sign(&idp, &bound)).await;
    idp.shutdown().await;

    let (idp, oauth) = keycloak(|p| p.insecure_disable_audience_check()).await;
    let bare = keycloak_claims(idp.key(), idp.issuer()).without("aud");
    accepted(&oauth, &keycloak_sign(&idp, &bare)).await;
    idp.shutdown().await;
}

#[tokio::test]
async fn keycloak_refuses_refresh_and_id_tokens_by_their_typ_claim() {
    let (idp, oauth) = keycloak(|p| p.audience("mcp-server")).await;
    for typ in ["Refresh", "ID", "Offline"] {
        let token = keycloak_claims(idp.key(), idp.issuer()).claim("typ", typ);
        let err = refused(&oauth, &keycloak_sign(&idp, &token)).await;
        assert!(
            matches!(err, VerifyError::InvalidClaim("typ")),
            "{typ}: {err}"
        );
        assert_eq!(err.kind(), VerifyErrorKind::InvalidClaims);
    }
    idp.shutdown().await;
}

#[tokio::test]
async fn keycloak_refuses_other_realms_and_expired_tokens() {
    let (idp, oauth) = keycloak(|p| p.audience("mcp-server")).await;
    let other_realm = keycloak_claims(idp.key(), &format!("{}/realms/master", idp.origin()));
    assert_eq!(
        kind(&oauth, &keycloak_sign(&idp, &other_realm)).await,
        VerifyErrorKind::InvalidIssuer
    );
    // The WildFly-era `/auth` prefix is another issuer.
    let legacy = keycloak_claims(idp.key(), &format!("{}/auth/realms/demo", idp.origin()));
    assert_eq!(
        kind(&oauth, &keycloak_sign(&idp, &legacy)).await,
        VerifyErrorKind::InvalidIssuer
    );
    let old = expired(keycloak_claims(idp.key(), idp.issuer()));
    assert_eq!(
        kind(&oauth, &keycloak_sign(&idp, &old)).await,
        VerifyErrorKind::Expired
    );
    idp.shutdown().await;
}

/// A stand-in answering one path with a fixed JSON document.
struct JsonStandIn {
    origin: String,
    served: Served,
}

impl JsonStandIn {
    async fn start(path: &str, body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route(
            path,
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        );
        Self {
            origin,
            served: Served::app(listener, app),
        }
    }

    async fn stop(self) {
        self.served.stop().await;
    }
}

#[tokio::test]
async fn keycloak_skips_the_encryption_keys_in_its_jwks() {
    let sig = TestKey::rs256();
    let enc_key = |kid: &str| {
        TestKey::from_key(
            SigningKey::generate(Algorithm::RS256)
                .expect("key")
                .with_kid(kid),
        )
    };
    // Keycloak publishes an RSA-OAEP encryption key next to the signing key (first here); a
    // second encryption key declares no `alg`, so only its `use` tells it apart.
    let oaep = enc_key("kf46eDlB9jtz2PpktQ6NQSfRwoU_tT3NqxlI8C4MGvQ");
    let bare = enc_key("Ag6dT0kb3x2c0uBYqPp1Hvqzvq0cQz2gq9YmXhXJd0E");
    let mut oaep_jwk = oaep.public_jwk().expect("jwk");
    oaep_jwk.use_ = Some("enc".into());
    oaep_jwk.alg = Some("RSA-OAEP".into());
    let mut bare_jwk = bare.public_jwk().expect("jwk");
    bare_jwk.use_ = Some("enc".into());
    bare_jwk.alg = None;
    let jwks = JwkSet {
        keys: vec![oaep_jwk, sig.public_jwk().expect("jwk"), bare_jwk],
    };
    let standin = JsonStandIn::start(
        "/realms/demo/protocol/openid-connect/certs",
        serde_json::to_string(&jwks).expect("json"),
    )
    .await;
    let oauth = oauth(
        Keycloak::new()
            .server_url(&standin.origin)
            .realm("demo")
            .audience("mcp-server"),
    );
    let issuer = format!("{}/realms/demo", standin.origin);
    let good = keycloak_claims(&sig, &issuer).typ(Some("JWT")).sign();
    assert_eq!(
        accepted(&oauth, &good).await.subject(),
        "8befeac4-8963-49da-a9ac-f310e8d922d8"
    );
    // Tokens signed with an encryption key's private half are never checked against it.
    for enc in [&oaep, &bare] {
        let token = keycloak_claims(enc, &issuer).typ(Some("JWT")).sign();
        assert_eq!(
            kind(&oauth, &token).await,
            VerifyErrorKind::UnknownKey,
            "{}",
            enc.kid()
        );
    }
    standin.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Clerk
// ---------------------------------------------------------------------------------------------

async fn clerk(preset: impl FnOnce(Clerk) -> Clerk) -> (MockIdp, OAuth) {
    let idp = MockIdp::start_layout(TestKey::rs256(), Layout::new("", "/.well-known/jwks.json"))
        .await
        .expect("idp");
    let oauth = oauth(preset(Clerk::new().frontend_api_url(idp.origin())));
    (idp, oauth)
}

/// A Clerk OAuth access token (`typ: at+jwt`, `client_id`, `jti` = `oat_…`, `nbf`) for the
/// MCP resource, with the organization claims (Clerk's flat names) and profile claims the
/// mapping reads.
fn clerk_token(idp: &MockIdp) -> TokenBuilder {
    idp.token()
        .sub("user_2vYVtestTESTtestTESTtestTESTtest")
        .aud(RESOURCE)
        .claim("client_id", "client_2VTWUzvGC5UhdJCNx6xG1D98edc")
        .scope("profile email read:foo")
        .claim("jti", "oat_2xKa9Bgv7NxMRDFyQw8LpZ3cTmU1vHjE")
        .claim("nbf", now() - 10)
        .claim("org_id", "org_123")
        .claim("org_role", "org:admin")
        .claim("org_slug", "acme")
        .claim(
            "org_permissions",
            json!(["org:sys_memberships:read", "org:invoices:manage"]),
        )
        .claim("email", "grace@example.com")
        .claim("email_verified", true)
        .claim("name", "Grace Hopper")
        .claim("username", "grace")
        .claim("picture", "https://img.clerk.com/grace.png")
}

#[tokio::test]
async fn clerk_accepts_an_oauth_access_token_and_maps_every_claim() {
    let (idp, oauth) = clerk(|p| p).await;
    assert_eq!(oauth.authorization_servers(), [idp.issuer()]);
    assert_eq!(oauth.scopes_supported(), ["profile", "email"]);

    let auth = accepted(&oauth, &clerk_token(&idp).sign()).await;
    let user = &auth.user;
    assert_eq!(user.id, "user_2vYVtestTESTtestTESTtestTESTtest");
    assert_eq!(user.email.as_deref(), Some("grace@example.com"));
    assert_eq!(user.name.as_deref(), Some("Grace Hopper"));
    assert_eq!(user.username.as_deref(), Some("grace"));
    assert_eq!(user.nickname, None);
    assert_eq!(
        user.picture.as_deref(),
        Some("https://img.clerk.com/grace.png")
    );
    assert_eq!(user.roles, ["org:admin"]);
    assert_eq!(
        user.permissions,
        ["org:sys_memberships:read", "org:invoices:manage"]
    );
    assert_eq!(
        auth.permissions, user.permissions,
        "one list of permissions"
    );
    assert_eq!(
        extra(user),
        json!({
            "email_verified": true,
            "org_id": "org_123",
            "org_role": "org:admin",
            "org_slug": "acme",
        })
    );
    assert_eq!(auth.scopes, ["profile", "email", "read:foo"]);
    assert_eq!(
        auth.client_id.as_deref(),
        Some("client_2VTWUzvGC5UhdJCNx6xG1D98edc")
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn clerk_scopes_come_from_scp_as_well_as_scope() {
    let (idp, oauth) = clerk(|p| p).await;
    let token = clerk_token(&idp)
        .without("scope")
        .claim("scp", json!(["read:foo", "write:bar"]))
        .sign();
    assert_eq!(
        accepted(&oauth, &token).await.scopes,
        ["read:foo", "write:bar"]
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn clerk_refuses_session_tokens_and_accepts_application_at_jwt() {
    let (idp, oauth) = clerk(|p| p).await;
    let typ = clerk_token(&idp).typ(Some("application/at+jwt")).sign();
    accepted(&oauth, &typ).await;

    // A session token (v2): same issuer and key, `typ: JWT` and Clerk's extra header members.
    let session = idp
        .token()
        .sub("user_123")
        .claim("azp", "https://example.com")
        .claim("sid", "sess_123")
        .claim("v", 2)
        .claim("fva", json!([7, -1]))
        .claim(
            "o",
            json!({"id": "org_123", "slg": "org-slug", "rol": "admin", "per": "read,manage", "fpm": "3,2"}),
        );
    let header = format!(
        r#"{{"alg":"RS256","cat":"cl_B7d4PD111AAA","kid":"{}","oiat":1778699272,"typ":"JWT"}}"#,
        idp.key().kid()
    );
    let err = refused(&oauth, &sign_with_header(idp.key(), &header, &session)).await;
    assert!(
        matches!(err, VerifyError::InvalidType { expected: "at+jwt" }),
        "{err}"
    );
    // Even one that names the MCP resource.
    let bound = session.aud(RESOURCE);
    let err = refused(&oauth, &sign_with_header(idp.key(), &header, &bound)).await;
    assert!(matches!(err, VerifyError::InvalidType { .. }), "{err}");
    // An opaque OAuth token (an application set to opaque tokens) is not a JWT.
    assert_eq!(
        kind(&oauth, "oat_2xKa9Bgv7NxMRDFyQw8LpZ3cTmU1vHjE").await,
        VerifyErrorKind::Malformed
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn clerk_without_signature_checks_still_refuses_session_tokens() {
    let (idp, oauth) = clerk(|p| p.verify_jwt(false)).await;
    // Signed by a stranger: signatures are not checked in this mode.
    let stranger = TestKey::rs256();
    let forged = stranger
        .token()
        .typ(Some("at+jwt"))
        .iss(idp.issuer())
        .sub("user_123")
        .aud(RESOURCE)
        .sign();
    accepted(&oauth, &forged).await;
    // The header type is still required: a session token stays out.
    let session = stranger
        .token()
        .typ(Some("JWT"))
        .iss(idp.issuer())
        .sub("user_123")
        .aud(RESOURCE)
        .sign();
    let err = refused(&oauth, &session).await;
    assert!(
        matches!(err, VerifyError::InvalidType { expected: "at+jwt" }),
        "{err}"
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn clerk_tokens_without_aud_need_the_check_turned_off() {
    let (idp, oauth) = clerk(|p| p).await;
    let token = clerk_token(&idp).without("aud").sign();
    assert_eq!(kind(&oauth, &token).await, VerifyErrorKind::InvalidAudience);
    let other = clerk_token(&idp)
        .aud("https://other.example.com/mcp")
        .sign();
    assert_eq!(kind(&oauth, &other).await, VerifyErrorKind::InvalidAudience);
    idp.shutdown().await;

    let (idp, oauth) = clerk(|p| p.insecure_disable_audience_check()).await;
    let token = clerk_token(&idp).without("aud").sign();
    accepted(&oauth, &token).await;
    idp.shutdown().await;

    let (idp, oauth) = clerk(|p| p.audience("https://api.example.com")).await;
    let token = clerk_token(&idp).aud("https://api.example.com").sign();
    accepted(&oauth, &token).await;
    idp.shutdown().await;
}

#[tokio::test]
async fn clerk_refuses_foreign_issuers_and_expired_tokens() {
    let (idp, oauth) = clerk(|p| p).await;
    let foreign = clerk_token(&idp)
        .iss("https://verb-noun-42.clerk.accounts.dev")
        .sign();
    assert_eq!(kind(&oauth, &foreign).await, VerifyErrorKind::InvalidIssuer);
    let old = expired(clerk_token(&idp)).claim("nbf", now() - 7200).sign();
    assert_eq!(kind(&oauth, &old).await, VerifyErrorKind::Expired);
    idp.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Better Auth
// ---------------------------------------------------------------------------------------------

async fn better_auth(preset: impl FnOnce(BetterAuth) -> BetterAuth) -> (MockIdp, OAuth) {
    let idp = MockIdp::start_layout(
        TestKey::ed25519(),
        Layout::new("/api/auth", "/api/auth/jwks"),
    )
    .await
    .expect("idp");
    let oauth = oauth(preset(
        BetterAuth::new().auth_url(format!("{}/api/auth", idp.origin())),
    ));
    (idp, oauth)
}

/// An `@better-auth/oauth-provider` access token (EdDSA, `typ: at+jwt`, `aud` = the
/// resource, `client_id` = `azp`, `sid`, `jti`) with `customAccessTokenClaims` adding the
/// profile, as mcp-use's Better Auth example does.
fn better_auth_token(idp: &MockIdp) -> TokenBuilder {
    idp.token()
        .sub("usr_4f9a2c")
        .aud(RESOURCE)
        .claim("client_id", "cl_8d1e7b")
        .claim("azp", "cl_8d1e7b")
        .scope("openid read:post")
        .claim("sid", "ses_77aa01")
        .claim("jti", "Yq3vN8kLp2WmX6tRb9ZsD4hFj7Gc1Ae5")
        .claim("email", "lin@example.com")
        .claim("email_verified", true)
        .claim("name", "Lin Chen")
        .claim("picture", "https://avatars.githubusercontent.com/u/1")
        .claim("role", "editor")
        .claim("plan", "pro")
}

#[tokio::test]
async fn better_auth_accepts_an_eddsa_access_token_and_maps_every_claim() {
    let (idp, oauth) = better_auth(|p| p).await;
    assert_eq!(oauth.authorization_servers(), [idp.issuer()]);
    assert!(idp.issuer().ends_with("/api/auth"));
    assert_eq!(oauth.scopes_supported(), ["openid", "profile", "email"]);

    let auth = accepted(&oauth, &better_auth_token(&idp).sign()).await;
    let user = &auth.user;
    assert_eq!(user.id, "usr_4f9a2c");
    assert_eq!(user.email.as_deref(), Some("lin@example.com"));
    assert_eq!(user.name.as_deref(), Some("Lin Chen"));
    assert_eq!(user.username, None);
    assert_eq!(user.nickname, None);
    assert_eq!(
        user.picture.as_deref(),
        Some("https://avatars.githubusercontent.com/u/1")
    );
    assert!(user.roles.is_empty() && user.permissions.is_empty());
    assert_eq!(
        extra(user),
        json!({"azp": "cl_8d1e7b", "sid": "ses_77aa01", "email_verified": true})
    );
    assert_eq!(auth.scopes, ["openid", "read:post"]);
    assert_eq!(auth.client_id.as_deref(), Some("cl_8d1e7b"));
    idp.shutdown().await;
}

#[tokio::test]
async fn better_auth_user_mapper_replaces_the_mapping() {
    let mapper = |claims: &Claims| {
        let mut user = UserInfo::new(claims.sub().unwrap_or_default());
        user.email = claims.str("email").map(str::to_owned);
        user.roles = claims.string_list("role");
        if let Some(plan) = claims.get("plan") {
            user.extra.insert("plan".into(), plan.clone());
        }
        user
    };
    let (idp, oauth) = better_auth(|p| p.claim_mapper(mapper)).await;
    let auth = accepted(&oauth, &better_auth_token(&idp).sign()).await;
    assert_eq!(auth.user.id, "usr_4f9a2c");
    assert_eq!(auth.user.email.as_deref(), Some("lin@example.com"));
    assert_eq!(
        auth.user.name, None,
        "the default mapping is replaced, not extended"
    );
    assert_eq!(auth.user.roles, ["editor"]);
    assert_eq!(extra(&auth.user), json!({"plan": "pro"}));
    assert_eq!(
        auth.scopes,
        ["openid", "read:post"],
        "scopes stay the pipeline's"
    );
    idp.shutdown().await;
}

/// Better Auth's `getUserInfo` is async: a mapper that waits (here on a user directory
/// behind a lock) runs once per token, after the token's checks, and its user is cached with
/// the token; a refusal is `invalid_token`, an outage is 503 and is not cached.
#[tokio::test]
async fn better_auth_async_user_mapper_runs_once_per_token_after_the_checks() {
    #[derive(Default)]
    struct Directory {
        calls: Vec<String>,
        down: bool,
    }
    let directory: Arc<tokio::sync::Mutex<Directory>> = Arc::default();
    let (idp, _) = better_auth(|p| p).await;
    let oauth = OAuth::builder()
        .resource(RESOURCE)
        .provider_with(
            BetterAuth::new().auth_url(format!("{}/api/auth", idp.origin())),
            &no_vars,
        )
        .mirror_authorization_server(false)
        .async_claim_mapper({
            let directory = directory.clone();
            move |claims: Claims| {
                let directory = directory.clone();
                async move {
                    let mut directory = directory.lock().await;
                    let id = claims.sub().unwrap_or_default().to_owned();
                    directory.calls.push(id.clone());
                    if directory.down {
                        return Err(MapUserError::Unavailable("directory down".into()));
                    }
                    if id == "usr_disabled" {
                        return Err(MapUserError::Refused("account disabled".into()));
                    }
                    let mut user = UserInfo::new(id);
                    user.roles = vec!["editor".to_owned()];
                    Ok(user)
                }
            }
        })
        .build()
        .expect("oauth");

    let token = better_auth_token(&idp).sign();
    let auth = accepted(&oauth, &token).await;
    assert_eq!(auth.user.id, "usr_4f9a2c");
    assert_eq!(auth.user.roles, ["editor"]);
    assert_eq!(auth.user.email, None, "the preset's mapping is replaced");
    assert_eq!(auth.scopes, ["openid", "read:post"]);
    accepted(&oauth, &token).await;
    assert_eq!(
        directory.lock().await.calls,
        ["usr_4f9a2c"],
        "the second request is answered from the cache"
    );

    // Tokens the pipeline refuses never reach the mapper.
    let expired = better_auth_token(&idp)
        .sub("usr_expired")
        .exp_in(-3600)
        .sign();
    assert_eq!(kind(&oauth, &expired).await, VerifyErrorKind::Expired);
    let other_audience = better_auth_token(&idp)
        .sub("usr_elsewhere")
        .aud("https://other.example.com")
        .sign();
    assert_eq!(
        kind(&oauth, &other_audience).await,
        VerifyErrorKind::InvalidAudience
    );
    assert_eq!(directory.lock().await.calls, ["usr_4f9a2c"]);

    let disabled = better_auth_token(&idp).sub("usr_disabled").sign();
    let err = refused(&oauth, &disabled).await;
    assert!(
        matches!(err, VerifyError::Refused(ref why) if why == "account disabled"),
        "{err}"
    );
    assert_eq!(err.kind(), VerifyErrorKind::Inactive);

    // An outage is the server's fault (503), and is not remembered: once the directory is
    // back, the same token is accepted.
    let later = better_auth_token(&idp).sub("usr_later").sign();
    directory.lock().await.down = true;
    assert_eq!(kind(&oauth, &later).await, VerifyErrorKind::Unavailable);
    directory.lock().await.down = false;
    assert_eq!(accepted(&oauth, &later).await.user.id, "usr_later");
    assert_eq!(
        directory.lock().await.calls,
        ["usr_4f9a2c", "usr_disabled", "usr_later", "usr_later"]
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn better_auth_refuses_session_jwts_wrong_audience_issuer_and_expired_tokens() {
    let (idp, oauth) = better_auth(|p| p).await;
    // The JWT plugin's session token: same key, `typ: JWT`.
    let session = idp
        .token()
        .typ(Some("JWT"))
        .sub("usr_4f9a2c")
        .aud(RESOURCE)
        .claim("email", "lin@example.com")
        .sign();
    let err = refused(&oauth, &session).await;
    assert!(matches!(err, VerifyError::InvalidType { .. }), "{err}");
    let other = better_auth_token(&idp)
        .aud("https://api.example.com")
        .sign();
    assert_eq!(kind(&oauth, &other).await, VerifyErrorKind::InvalidAudience);
    // The legacy `mcp` plugin's issuer was the bare origin.
    let legacy = better_auth_token(&idp).iss(&idp.origin()).sign();
    assert_eq!(kind(&oauth, &legacy).await, VerifyErrorKind::InvalidIssuer);
    let old = expired(better_auth_token(&idp)).sign();
    assert_eq!(kind(&oauth, &old).await, VerifyErrorKind::Expired);
    // Without a `resource` Better Auth issues an opaque token.
    assert_eq!(
        kind(&oauth, "kQfFwXbNqLzTrVyPaHcJdMgSeUiOlEnB").await,
        VerifyErrorKind::Malformed
    );
    idp.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Custom provider
// ---------------------------------------------------------------------------------------------

const CUSTOM_ISSUER: &str = "https://auth.example.com";

fn custom_claims(aud: &str, exp: i64) -> Claims {
    claims(json!({
        "iss": CUSTOM_ISSUER, "sub": "svc-42", "aud": aud, "exp": exp,
        "scope": "files:read files:write", "tenant": "acme", "email": "svc@example.com",
    }))
}

fn tenant_mapper(claims: &Claims) -> UserInfo {
    let mut user = UserInfo::new(claims.sub().unwrap_or_default());
    user.email = claims.str("email").map(str::to_owned);
    user.permissions = vec!["files:admin".to_owned()];
    if let Some(tenant) = claims.get("tenant") {
        user.extra.insert("tenant".into(), tenant.clone());
    }
    user
}

#[tokio::test]
async fn custom_verify_fn_is_called_and_the_shared_rules_still_apply() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let provider = Custom::new(
        CUSTOM_ISSUER,
        format!("{CUSTOM_ISSUER}/authorize"),
        format!("{CUSTOM_ISSUER}/token"),
    )
    .verify_fn(move |token: AccessToken| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(token.secret().to_owned());
            match token.secret() {
                "good" => Ok(custom_claims(RESOURCE, now() + 600)),
                "other-audience" => Ok(custom_claims("https://other.example.com", now() + 600)),
                "expired" => Ok(custom_claims(RESOURCE, now() - 3600)),
                _ => Err(VerifyError::Refused("unknown token".into())),
            }
        }
    })
    .claim_mapper(tenant_mapper)
    .scopes_supported(["files:read", "files:write", "offline_access"]);
    let oauth = oauth(provider);
    assert_eq!(oauth.authorization_servers(), [CUSTOM_ISSUER]);
    assert_eq!(oauth.scopes_supported(), ["files:read", "files:write"]);

    let auth = accepted(&oauth, "good").await;
    assert_eq!(auth.subject(), "svc-42");
    assert_eq!(auth.user.email.as_deref(), Some("svc@example.com"));
    assert_eq!(extra(&auth.user), json!({"tenant": "acme"}));
    assert_eq!(auth.scopes, ["files:read", "files:write"]);
    assert_eq!(auth.permissions, ["files:admin"]);
    assert_eq!(
        kind(&oauth, "other-audience").await,
        VerifyErrorKind::InvalidAudience
    );
    assert_eq!(kind(&oauth, "expired").await, VerifyErrorKind::Expired);
    assert_eq!(kind(&oauth, "forged").await, VerifyErrorKind::Inactive);
    assert_eq!(
        *seen.lock().unwrap(),
        ["good", "other-audience", "expired", "forged"]
    );
}

#[tokio::test]
async fn custom_jwks_url_is_actually_fetched_and_used() {
    let idp = MockIdp::start_layout(TestKey::es256(), Layout::new("/oauth", "/oauth/keys.json"))
        .await
        .expect("idp");
    let oauth = oauth(
        Custom::new(
            idp.issuer(),
            format!("{}/authorize", idp.issuer()),
            format!("{}/token", idp.issuer()),
        )
        .jwks_url(idp.jwks_url())
        .claim_mapper(tenant_mapper),
    );
    assert_eq!(idp.jwks_hits(), 0, "keys are fetched on first use");
    let token = idp
        .token()
        .sub("svc-42")
        .aud(RESOURCE)
        .claim("tenant", "acme")
        .scope("files:read")
        .sign();
    let auth = accepted(&oauth, &token).await;
    assert_eq!(extra(&auth.user), json!({"tenant": "acme"}));
    assert!(idp.jwks_hits() >= 1, "the JWKS URL was fetched");
    assert_eq!(
        idp.metadata_hits(),
        0,
        "no discovery when the JWKS URL is given"
    );

    let unpublished = TestKey::es256()
        .token()
        .iss(idp.issuer())
        .sub("svc-42")
        .aud(RESOURCE)
        .sign();
    assert_eq!(
        kind(&oauth, &unpublished).await,
        VerifyErrorKind::UnknownKey
    );
    let wrong_iss = idp
        .token()
        .iss("https://auth.example.com")
        .aud(RESOURCE)
        .sign();
    assert_eq!(
        kind(&oauth, &wrong_iss).await,
        VerifyErrorKind::InvalidIssuer
    );
    let wrong_aud = idp.token().aud("https://other.example.com/mcp").sign();
    assert_eq!(
        kind(&oauth, &wrong_aud).await,
        VerifyErrorKind::InvalidAudience
    );
    let old = expired(idp.token().aud(RESOURCE)).sign();
    assert_eq!(kind(&oauth, &old).await, VerifyErrorKind::Expired);
    idp.shutdown().await;
}

#[test]
fn custom_needs_exactly_one_way_to_verify() {
    let base = || {
        Custom::new(
            CUSTOM_ISSUER,
            "https://auth.example.com/authorize",
            "https://auth.example.com/token",
        )
    };
    let neither = config_error(base(), &no_vars);
    assert!(matches!(neither, ConfigError::Missing { .. }), "{neither}");
    assert!(
        neither.to_string().contains("Custom::jwks_url"),
        "{neither}"
    );
    let both = config_error(
        base()
            .jwks_url("https://auth.example.com/keys")
            .verify_fn(|_: AccessToken| async { Err(VerifyError::Refused("no".into())) }),
        &no_vars,
    );
    assert!(matches!(both, ConfigError::Invalid { .. }), "{both}");
    let bad = config_error(
        Custom::new("not a url", "https://a/authorize", "https://a/token").jwks_url("https://a/k"),
        &no_vars,
    );
    assert!(matches!(bad, ConfigError::InvalidUrl { .. }), "{bad}");
}

// ---------------------------------------------------------------------------------------------
// Generic OIDC
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn oidc_finds_its_keys_through_discovery() {
    // A JWKS path no convention would guess: only the metadata's `jwks_uri` names it.
    let idp = MockIdp::start_layout(
        TestKey::rs256(),
        Layout::new("/tenant-a", "/keys/2026/set.json"),
    )
    .await
    .expect("idp");
    let oauth = oauth(Oidc::new(idp.issuer()));
    assert_eq!(oauth.authorization_servers(), [idp.issuer()]);
    assert!(oauth.scopes_supported().is_empty());
    let token = idp.token().aud(RESOURCE).scope("openid mcp:read").sign();
    let auth = accepted(&oauth, &token).await;
    assert_eq!(auth.scopes, ["openid", "mcp:read"]);
    assert!(idp.metadata_hits() >= 1, "the metadata was fetched");
    assert!(idp.jwks_hits() >= 1, "the JWKS it names was fetched");

    let wrong_aud = idp.token().aud("https://other.example.com").sign();
    assert_eq!(
        kind(&oauth, &wrong_aud).await,
        VerifyErrorKind::InvalidAudience
    );
    let wrong_iss = idp.token().iss(&idp.origin()).aud(RESOURCE).sign();
    assert_eq!(
        kind(&oauth, &wrong_iss).await,
        VerifyErrorKind::InvalidIssuer
    );
    let old = expired(idp.token().aud(RESOURCE)).sign();
    assert_eq!(kind(&oauth, &old).await, VerifyErrorKind::Expired);
    idp.shutdown().await;
}

#[tokio::test]
async fn oidc_can_require_at_jwt() {
    let idp = MockIdp::start(TestKey::rs256()).await.expect("idp");
    let oauth = oauth(
        Oidc::new(idp.issuer())
            .require_at_jwt()
            .audience("api://mcp"),
    );
    accepted(&oauth, &idp.token().aud("api://mcp").sign()).await;
    let jwt = idp.token().typ(Some("JWT")).aud("api://mcp").sign();
    let err = refused(&oauth, &jwt).await;
    assert!(matches!(err, VerifyError::InvalidType { .. }), "{err}");
    idp.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

#[test]
fn every_missing_variable_is_named() {
    let cases: Vec<(ConfigError, &str)> = vec![
        (
            config_error(
                Auth0::new(),
                &vars(&[("MCP_USE_OAUTH_AUTH0_AUDIENCE", "a")]),
            ),
            "Auth0 domain is required: set the MCP_USE_OAUTH_AUTH0_DOMAIN environment variable or pass it with Auth0::domain",
        ),
        (
            config_error(
                Auth0::new(),
                &vars(&[("MCP_USE_OAUTH_AUTH0_DOMAIN", "t.auth0.com")]),
            ),
            "Auth0 audience is required: set the MCP_USE_OAUTH_AUTH0_AUDIENCE environment variable or pass it with Auth0::audience",
        ),
        (
            config_error(WorkOs::new(), &no_vars),
            "WorkOS subdomain is required: set the MCP_USE_OAUTH_WORKOS_SUBDOMAIN environment variable or pass it with WorkOs::subdomain",
        ),
        (
            config_error(
                Supabase::new(),
                &vars(&[("MCP_USE_OAUTH_SUPABASE_JWT_SECRET", SUPABASE_SECRET)]),
            ),
            "Supabase project id or URL is required: set MCP_USE_OAUTH_SUPABASE_PROJECT_ID (hosted) or MCP_USE_OAUTH_SUPABASE_URL (self-hosted/local), or pass Supabase::project_id / Supabase::url",
        ),
        (
            config_error(
                Keycloak::new(),
                &vars(&[("MCP_USE_OAUTH_KEYCLOAK_REALM", "demo")]),
            ),
            "Keycloak server URL is required: set the MCP_USE_OAUTH_KEYCLOAK_SERVER_URL environment variable or pass it with Keycloak::server_url",
        ),
        (
            config_error(
                Keycloak::new(),
                &vars(&[(
                    "MCP_USE_OAUTH_KEYCLOAK_SERVER_URL",
                    "https://kc.example.com",
                )]),
            ),
            "Keycloak realm is required: set the MCP_USE_OAUTH_KEYCLOAK_REALM environment variable or pass it with Keycloak::realm",
        ),
        (
            config_error(Clerk::new(), &no_vars),
            "Clerk frontendApiUrl is required: set the MCP_USE_OAUTH_CLERK_FRONTEND_API_URL environment variable or pass it with Clerk::frontend_api_url",
        ),
        (
            config_error(BetterAuth::new(), &no_vars),
            "Better Auth authURL is required: set the MCP_USE_OAUTH_BETTER_AUTH_URL environment variable or pass it with BetterAuth::auth_url",
        ),
    ];
    for (err, message) in cases {
        assert!(matches!(err, ConfigError::Missing { .. }), "{err}");
        assert_eq!(err.to_string(), message);
    }
    // The error surfaces from the builder too.
    let err = OAuth::builder()
        .resource(RESOURCE)
        .provider_with(Clerk::new(), &no_vars)
        .build()
        .expect_err("no Clerk URL");
    assert!(
        err.to_string()
            .contains("MCP_USE_OAUTH_CLERK_FRONTEND_API_URL"),
        "{err}"
    );
}

#[test]
fn presets_read_their_variables() {
    let auth0 = spec(
        Auth0::new(),
        &vars(&[
            ("MCP_USE_OAUTH_AUTH0_DOMAIN", "tenant.eu.auth0.com"),
            ("MCP_USE_OAUTH_AUTH0_AUDIENCE", AUTH0_API),
        ]),
    );
    assert_eq!(auth0.name, "auth0");
    assert_eq!(auth0.issuer, "https://tenant.eu.auth0.com/");
    assert_eq!(
        auth0.jwks_url.as_deref(),
        Some("https://tenant.eu.auth0.com/.well-known/jwks.json")
    );
    assert_eq!(
        auth0.authorization_endpoint.as_deref(),
        Some("https://tenant.eu.auth0.com/authorize")
    );
    assert_eq!(
        auth0.token_endpoint.as_deref(),
        Some("https://tenant.eu.auth0.com/oauth/token")
    );
    assert_eq!(
        auth0.scopes_supported,
        ["openid", "profile", "email", "offline_access"]
    );
    assert!(
        matches!(&auth0.audience, Audience::Resource { extra: v, prefix: false } if v == &[AUTH0_API])
    );
    assert!(!auth0.require_at_jwt);

    let workos = spec(
        WorkOs::new(),
        &vars(&[("MCP_USE_OAUTH_WORKOS_SUBDOMAIN", "acme.authkit.app")]),
    );
    assert_eq!(workos.issuer, "https://acme.authkit.app");
    assert_eq!(
        workos.jwks_url.as_deref(),
        Some("https://acme.authkit.app/oauth2/jwks")
    );
    assert_eq!(
        workos.authorization_endpoint.as_deref(),
        Some("https://acme.authkit.app/oauth2/authorize")
    );
    assert_eq!(
        workos.token_endpoint.as_deref(),
        Some("https://acme.authkit.app/oauth2/token")
    );
    assert!(
        matches!(&workos.audience, Audience::Resource { extra, prefix: false } if extra.is_empty())
    );

    let supabase = spec(
        Supabase::new(),
        &vars(&[
            ("MCP_USE_OAUTH_SUPABASE_PROJECT_ID", "abcdefghijklmnopqrst"),
            ("MCP_USE_OAUTH_SUPABASE_JWT_SECRET", SUPABASE_SECRET),
        ]),
    );
    assert_eq!(
        supabase.issuer,
        "https://abcdefghijklmnopqrst.supabase.co/auth/v1"
    );
    assert_eq!(
        supabase.jwks_url.as_deref(),
        Some("https://abcdefghijklmnopqrst.supabase.co/auth/v1/.well-known/jwks.json")
    );
    assert_eq!(
        supabase.authorization_endpoint.as_deref(),
        Some("https://abcdefghijklmnopqrst.supabase.co/auth/v1/oauth/authorize")
    );
    assert_eq!(
        supabase.token_endpoint.as_deref(),
        Some("https://abcdefghijklmnopqrst.supabase.co/auth/v1/oauth/token")
    );
    assert!(
        supabase.hmac_secret.is_some(),
        "the secret comes from its variable"
    );
    assert!(supabase.scopes_supported.is_empty());
    assert!(
        supabase.algorithms.contains(Algorithm::ES256)
            && supabase.algorithms.contains(Algorithm::RS256)
    );
    assert!(
        matches!(&supabase.audience, Audience::Resource { extra: v, prefix: false } if v == &["authenticated"])
    );

    let keycloak = spec(
        Keycloak::new(),
        &vars(&[
            (
                "MCP_USE_OAUTH_KEYCLOAK_SERVER_URL",
                "https://kc.example.com/",
            ),
            ("MCP_USE_OAUTH_KEYCLOAK_REALM", "demo"),
            ("MCP_USE_OAUTH_KEYCLOAK_AUDIENCE", "mcp-server"),
        ]),
    );
    assert_eq!(keycloak.issuer, "https://kc.example.com/realms/demo");
    assert_eq!(
        keycloak.jwks_url.as_deref(),
        Some("https://kc.example.com/realms/demo/protocol/openid-connect/certs")
    );
    assert_eq!(
        keycloak.authorization_endpoint.as_deref(),
        Some("https://kc.example.com/realms/demo/protocol/openid-connect/auth")
    );
    assert_eq!(
        keycloak.token_endpoint.as_deref(),
        Some("https://kc.example.com/realms/demo/protocol/openid-connect/token")
    );
    assert!(
        matches!(&keycloak.audience, Audience::Resource { extra: v, prefix: false } if v == &["mcp-server"])
    );
    assert_eq!(
        keycloak.scopes_supported,
        ["openid", "profile", "email", "offline_access", "roles"]
    );

    let clerk = spec(
        Clerk::new(),
        &vars(&[(
            "MCP_USE_OAUTH_CLERK_FRONTEND_API_URL",
            "https://verb-noun-42.clerk.accounts.dev/",
        )]),
    );
    assert_eq!(clerk.issuer, "https://verb-noun-42.clerk.accounts.dev");
    assert_eq!(
        clerk.jwks_url.as_deref(),
        Some("https://verb-noun-42.clerk.accounts.dev/.well-known/jwks.json")
    );
    assert_eq!(
        clerk.authorization_endpoint.as_deref(),
        Some("https://verb-noun-42.clerk.accounts.dev/oauth/authorize")
    );
    assert_eq!(
        clerk.token_endpoint.as_deref(),
        Some("https://verb-noun-42.clerk.accounts.dev/oauth/token")
    );
    assert!(clerk.require_at_jwt);

    let better = spec(
        BetterAuth::new(),
        &vars(&[(
            "MCP_USE_OAUTH_BETTER_AUTH_URL",
            "https://app.example.com/api/auth/",
        )]),
    );
    assert_eq!(better.issuer, "https://app.example.com/api/auth");
    assert_eq!(
        better.jwks_url.as_deref(),
        Some("https://app.example.com/api/auth/jwks")
    );
    assert_eq!(
        better.authorization_endpoint.as_deref(),
        Some("https://app.example.com/api/auth/oauth2/authorize")
    );
    assert_eq!(
        better.token_endpoint.as_deref(),
        Some("https://app.example.com/api/auth/oauth2/token")
    );
    assert!(better.require_at_jwt);
    assert!(better.algorithms.contains(Algorithm::EdDSA));
}

#[test]
fn values_in_code_win_over_variables() {
    let env = vars(&[
        ("MCP_USE_OAUTH_AUTH0_DOMAIN", "env.auth0.com"),
        ("MCP_USE_OAUTH_AUTH0_AUDIENCE", "https://env-api"),
        ("MCP_USE_OAUTH_WORKOS_SUBDOMAIN", "env.authkit.app"),
        ("MCP_USE_OAUTH_SUPABASE_PROJECT_ID", "envproject"),
        ("MCP_USE_OAUTH_SUPABASE_URL", "https://env.supabase.example"),
        (
            "MCP_USE_OAUTH_KEYCLOAK_SERVER_URL",
            "https://env-kc.example.com",
        ),
        ("MCP_USE_OAUTH_KEYCLOAK_REALM", "env-realm"),
        ("MCP_USE_OAUTH_KEYCLOAK_AUDIENCE", "env-client"),
        (
            "MCP_USE_OAUTH_CLERK_FRONTEND_API_URL",
            "https://env.clerk.example",
        ),
        (
            "MCP_USE_OAUTH_BETTER_AUTH_URL",
            "https://env.example.com/api/auth",
        ),
    ]);
    let auth0 = spec(Auth0::new().domain("code.auth0.com"), &env);
    assert_eq!(auth0.issuer, "https://code.auth0.com/");
    assert!(
        matches!(&auth0.audience, Audience::Resource { extra: v, prefix: false } if v == &["https://env-api"]),
        "an unset value still comes from its variable"
    );
    let auth0 = spec(Auth0::new().audience("https://code-api"), &env);
    assert!(
        matches!(&auth0.audience, Audience::Resource { extra: v, prefix: false } if v == &["https://code-api"])
    );
    assert_eq!(
        spec(WorkOs::new().subdomain("code.authkit.app"), &env).issuer,
        "https://code.authkit.app"
    );
    assert_eq!(
        spec(Supabase::new().project_id("codeproject"), &env).issuer,
        "https://env.supabase.example/auth/v1",
        "the URL wins over a project id, wherever each comes from"
    );
    assert_eq!(
        spec(Supabase::new().url("https://code.supabase.example"), &env).issuer,
        "https://code.supabase.example/auth/v1"
    );
    let only_project = vars(&[("MCP_USE_OAUTH_SUPABASE_PROJECT_ID", "envproject")]);
    assert_eq!(
        spec(Supabase::new().project_id("codeproject"), &only_project).issuer,
        "https://codeproject.supabase.co/auth/v1"
    );
    let keycloak = spec(
        Keycloak::new().realm("code-realm").audience("code-client"),
        &env,
    );
    assert_eq!(
        keycloak.issuer,
        "https://env-kc.example.com/realms/code-realm"
    );
    assert!(
        matches!(&keycloak.audience, Audience::Resource { extra: v, prefix: false } if v == &["code-client"])
    );
    assert_eq!(
        spec(
            Clerk::new().frontend_api_url("https://code.clerk.example"),
            &env
        )
        .issuer,
        "https://code.clerk.example"
    );
    assert_eq!(
        spec(
            BetterAuth::new().auth_url("https://code.example.com/auth"),
            &env
        )
        .issuer,
        "https://code.example.com/auth"
    );
}

#[test]
fn scheme_prefixes_never_double_and_plain_http_is_loopback_only() {
    for (given, issuer) in [
        ("tenant.auth0.com", "https://tenant.auth0.com/"),
        ("https://tenant.auth0.com", "https://tenant.auth0.com/"),
        ("https://tenant.auth0.com/", "https://tenant.auth0.com/"),
        ("http://127.0.0.1:4000", "http://127.0.0.1:4000/"),
    ] {
        assert_eq!(
            spec(Auth0::new().domain(given).audience("a"), &no_vars).issuer,
            issuer
        );
    }
    assert_eq!(
        spec(
            WorkOs::new().subdomain("https://acme.authkit.app"),
            &no_vars
        )
        .issuer,
        "https://acme.authkit.app"
    );
    assert_eq!(
        spec(
            Keycloak::new()
                .server_url("https://kc.example.com")
                .realm("r"),
            &no_vars
        )
        .issuer,
        "https://kc.example.com/realms/r"
    );
    assert_eq!(
        spec(
            Keycloak::new().server_url("kc.example.com").realm("r"),
            &no_vars
        )
        .issuer,
        "https://kc.example.com/realms/r"
    );
    assert_eq!(
        spec(Clerk::new().frontend_api_url("clerk.example.com"), &no_vars).issuer,
        "https://clerk.example.com"
    );
    assert_eq!(
        spec(
            BetterAuth::new().auth_url("app.example.com/api/auth"),
            &no_vars
        )
        .issuer,
        "https://app.example.com/api/auth"
    );
    // Supabase locally (`supabase start`).
    assert_eq!(
        spec(Supabase::new().url("http://localhost:54321/"), &no_vars).issuer,
        "http://localhost:54321/auth/v1"
    );
    for err in [
        config_error(
            Auth0::new().domain("http://tenant.auth0.com").audience("a"),
            &no_vars,
        ),
        config_error(
            Supabase::new().url("http://supabase.internal:8000"),
            &no_vars,
        ),
        config_error(
            Keycloak::new()
                .server_url("http://kc.example.com")
                .realm("r"),
            &no_vars,
        ),
    ] {
        assert!(matches!(err, ConfigError::InvalidUrl { .. }), "{err}");
        assert!(err.to_string().contains("loopback"), "{err}");
    }
    let err = config_error(Auth0::new().domain("https://").audience("a"), &no_vars);
    assert!(matches!(err, ConfigError::InvalidUrl { .. }), "{err}");
}

#[test]
fn keycloak_realm_names_are_percent_encoded() {
    let spec = spec(
        Keycloak::new()
            .server_url("https://kc.example.com")
            .realm("my realm"),
        &no_vars,
    );
    assert_eq!(spec.issuer, "https://kc.example.com/realms/my%20realm");
}

#[test]
fn supabase_secret_must_be_long_enough() {
    let err = config_error(
        Supabase::new().project_id("abc").jwt_secret("too-short"),
        &no_vars,
    );
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("at least 32 bytes"), "{err}");
}

/// An empty value is no value, whatever the variable source: the process environment drops
/// empty variables (`process_env`), and mcp-use treats `""` as missing. A configuration file
/// or test map given to `provider_with` must behave the same.
#[test]
fn empty_variables_count_as_missing_from_any_source() {
    let empty_audience = vars(&[
        ("MCP_USE_OAUTH_AUTH0_DOMAIN", "tenant.auth0.com"),
        ("MCP_USE_OAUTH_AUTH0_AUDIENCE", ""),
    ]);
    let result = Auth0::new().spec_with(&empty_audience);
    assert!(
        matches!(&result, Err(ConfigError::Missing { .. })),
        "an empty MCP_USE_OAUTH_AUTH0_AUDIENCE was taken as the audience \"\": {:?}",
        result.map(|s| s.audience)
    );
    let blank_realm = vars(&[
        (
            "MCP_USE_OAUTH_KEYCLOAK_SERVER_URL",
            "https://kc.example.com",
        ),
        ("MCP_USE_OAUTH_KEYCLOAK_REALM", "  "),
    ]);
    let result = Keycloak::new().spec_with(&blank_realm);
    assert!(
        matches!(&result, Err(ConfigError::Missing { .. })),
        "a blank MCP_USE_OAUTH_KEYCLOAK_REALM was taken as a realm: {:?}",
        result.map(|s| s.issuer)
    );
}

const PROBE: &str = "MCP_OAUTH_PROVIDERS_PROBE";

/// Runs only as the child process of `from_env_reads_the_process_environment`, whose
/// environment it reads (a test must not change its own: `set_var` is unsafe).
#[tokio::test]
async fn process_environment_probe() {
    use tower::ServiceExt as _;

    if std::env::var_os(PROBE).is_none() {
        return;
    }
    let from_env = match Auth0::from_env() {
        Ok(_) => "ok".to_owned(),
        Err(err) => err.to_string(),
    };
    let servers = OAuth::builder()
        .resource(RESOURCE)
        .provider(Auth0::new())
        .mirror_authorization_server(false)
        .build()
        .map(|o| o.authorization_servers().to_vec());
    let prm = match McpServer::new("probe", "1")
        .provider(Auth0::new())
        .map_err(mcp_oauth::server::ServerError::from)
        .and_then(|server| server.app())
    {
        Ok(app) => {
            let res = app
                .oneshot(
                    http::Request::get("/.well-known/oauth-protected-resource/mcp")
                        .body(axum::body::Body::empty())
                        .expect("request"),
                )
                .await
                .expect("response");
            let body = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .expect("body");
            serde_json::from_slice::<Value>(&body).expect("json")
        }
        Err(err) => Value::String(err.to_string()),
    };
    let out = json!({
        "from_env": from_env,
        "authorization_servers": servers.map_err(|e| e.to_string()).ok(),
        "prm": prm,
    });
    let mut stdout = std::io::stdout();
    writeln!(stdout, "PROBE {out}").expect("stdout");
}

fn probe(env: &[(&str, &str)]) -> Value {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "process_environment_probe",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (name, _) in std::env::vars() {
        if name.starts_with("MCP_USE_OAUTH_") || name == "MCP_URL" {
            cmd.env_remove(name);
        }
    }
    cmd.env(PROBE, "1");
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().expect("run the probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("PROBE ").map(|(_, json)| json))
        .unwrap_or_else(|| panic!("no probe output in {stdout}"));
    serde_json::from_str(line).expect("probe json")
}

#[test]
fn from_env_reads_the_process_environment() {
    let set = probe(&[
        ("MCP_USE_OAUTH_AUTH0_DOMAIN", "https://tenant.eu.auth0.com"),
        ("MCP_USE_OAUTH_AUTH0_AUDIENCE", AUTH0_API),
        ("MCP_URL", "https://mcp.example.com/mcp"),
    ]);
    assert_eq!(set["from_env"], "ok");
    assert_eq!(
        set["authorization_servers"],
        json!(["https://tenant.eu.auth0.com/"])
    );
    assert_eq!(
        set["prm"]["resource"], "https://mcp.example.com/mcp",
        "MCP_URL"
    );
    assert_eq!(
        set["prm"]["authorization_servers"],
        json!(["https://tenant.eu.auth0.com/"])
    );
    assert_eq!(
        set["prm"]["scopes_supported"],
        json!(["openid", "profile", "email"])
    );

    // An empty variable is a missing one.
    let empty = probe(&[
        ("MCP_USE_OAUTH_AUTH0_DOMAIN", "tenant.eu.auth0.com"),
        ("MCP_USE_OAUTH_AUTH0_AUDIENCE", ""),
    ]);
    let message = empty["from_env"].as_str().expect("error");
    assert!(
        message.contains("MCP_USE_OAUTH_AUTH0_AUDIENCE"),
        "{message}"
    );
    assert!(empty["authorization_servers"].is_null());

    let none = probe(&[]);
    let message = none["from_env"].as_str().expect("error");
    assert!(message.contains("MCP_USE_OAUTH_AUTH0_DOMAIN"), "{message}");
    let message = none["prm"].as_str().expect("server error");
    assert!(message.contains("MCP_USE_OAUTH_AUTH0_DOMAIN"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// End to end through McpServer, and verify_jwt(false)
// ---------------------------------------------------------------------------------------------

/// An `McpServer` on 127.0.0.1.
struct Running {
    url: String,
    origin: String,
    http: reqwest::Client,
    served: Served,
}

impl Running {
    async fn start(server: McpServer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        Self {
            url: format!("{origin}/mcp"),
            origin,
            http: reqwest::Client::new(),
            served: Served::mcp(listener, server),
        }
    }

    /// Calls a tool; the HTTP status and the JSON body.
    async fn call(&self, token: &str, tool: &str) -> (u16, Value) {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": {}}});
        let res = self
            .http
            .post(&self.url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.origin))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }

    /// Stops the server; panics if serving failed.
    async fn stop(self) {
        self.served.stop().await;
    }
}

/// The `whoami` tool of the examples: the mapped user and the token's facts.
fn whoami() -> Tool {
    Tool::new(
        "whoami",
        "The authenticated user",
        |_: NoArgs, ctx: ToolContext| async move {
            let auth = ctx.require_auth()?;
            Ok::<_, ToolError>(json!({
                "user": auth.user,
                "scopes": auth.scopes,
                "permissions": auth.permissions,
                "client_id": auth.client_id,
                "issuer": auth.issuer,
            }))
        },
    )
}

#[tokio::test]
async fn auth0_end_to_end_whoami_and_a_permission_gated_tool() {
    let idp = MockIdp::start_layout(
        TestKey::rs256(),
        Layout::new("", "/.well-known/jwks.json").trailing_slash(),
    )
    .await
    .expect("idp");
    // The preset alone: the resource URL comes from the loopback listener.
    let server = McpServer::new("auth0-e2e", "1.0.0")
        .provider(Auth0::new().domain(idp.origin()).audience(AUTH0_API))
        .expect("a valid preset")
        .tool(whoami())
        .tool(
            Tool::new(
                "read_patients",
                "Needs read:patients",
                |_: NoArgs, _: ToolContext| async { "patients" },
            )
            .require_scopes(["read:patients"]),
        );
    let s = Running::start(server).await;
    let prm = s.get("/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(prm["resource"], s.url.as_str());
    assert_eq!(prm["authorization_servers"], json!([idp.issuer()]));
    assert_eq!(
        prm["scopes_supported"],
        json!(["openid", "profile", "email"])
    );

    // RBAC on: the permission is in `permissions`, not in `scope`.
    let token = auth0_token(&idp).scope("openid profile").sign();
    let (status, body) = s.call(&token, "whoami").await;
    assert_eq!(status, 200, "{body}");
    let who = &body["result"]["structuredContent"];
    assert_eq!(who["user"]["id"], "auth0|123456");
    assert_eq!(who["user"]["roles"], json!(["doctor"]));
    assert_eq!(who["user"]["extra"]["org_id"], "org_9ybsU1dN2dKfDkBi");
    assert_eq!(who["permissions"], json!(["read:patients", "read:admin"]));
    assert_eq!(who["user"]["permissions"], who["permissions"]);
    assert_eq!(who["scopes"], json!(["openid", "profile"]));
    assert_eq!(who["client_id"], "my_client_id");
    assert_eq!(who["issuer"], idp.issuer());

    let (status, body) = s.call(&token, "read_patients").await;
    assert_eq!(
        status, 200,
        "a permission satisfies the tool's scope: {body}"
    );
    let without = auth0_token(&idp)
        .scope("openid")
        .claim("permissions", json!([]))
        .sign();
    let (status, _) = s.call(&without, "read_patients").await;
    assert_eq!(status, 403);
    let (status, _) = s
        .call(
            &auth0_token(&idp).iss(idp.origin().as_str()).sign(),
            "whoami",
        )
        .await;
    assert_eq!(status, 401, "the issuer without its slash");
    s.stop().await;
    idp.shutdown().await;
}

/// Log lines written while a subscriber is the thread's default.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn unverified_mode_serves_on_loopback_checks_iss_aud_exp_and_warns_once() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let idp = MockIdp::start_layout(
        TestKey::rs256(),
        Layout::new("", "/.well-known/jwks.json").trailing_slash(),
    )
    .await
    .expect("idp");
    let server = McpServer::new("dev", "0.0.1")
        .provider(
            Auth0::new()
                .domain(idp.origin())
                .audience(AUTH0_API)
                .verify_jwt(false),
        )
        .expect("a valid preset")
        .tool(whoami());
    let s = Running::start(server).await;

    // Signed by a key the tenant never published: accepted, signatures are not checked.
    let stranger = TestKey::rs256();
    let forged = stranger
        .token()
        .typ(Some("JWT"))
        .iss(idp.issuer())
        .sub("auth0|forged")
        .aud(AUTH0_API)
        .scope("read:patients")
        .sign();
    let (status, body) = s.call(&forged, "whoami").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["structuredContent"]["user"]["id"],
        "auth0|forged"
    );
    // Garbage in place of the signature: accepted too.
    let mut parts: Vec<&str> = forged.split('.').collect();
    parts[2] = "bm90LWEtc2lnbmF0dXJl";
    let garbage = parts.join(".");
    let (status, _) = s.call(&garbage, "whoami").await;
    assert_eq!(status, 200);
    // An `alg: none` token is not a well-formed JWS for this crate, even here.
    let none = format!(
        "{}.{}.",
        "eyJhbGciOiJub25lIn0",
        forged.split('.').nth(1).expect("payload")
    );
    let (status, _) = s.call(&none, "whoami").await;
    assert_eq!(status, 401);

    // Issuer, audience and expiry are still checked.
    let wrong_iss = stranger
        .token()
        .iss(idp.issuer().trim_end_matches('/'))
        .sub("x")
        .aud(AUTH0_API)
        .sign();
    assert_eq!(s.call(&wrong_iss, "whoami").await.0, 401);
    let wrong_aud = stranger
        .token()
        .iss(idp.issuer())
        .sub("x")
        .aud("https://other-api.example.com")
        .sign();
    assert_eq!(s.call(&wrong_aud, "whoami").await.0, 401);
    let old = expired(stranger.token().iss(idp.issuer()).sub("x").aud(AUTH0_API)).sign();
    assert_eq!(s.call(&old, "whoami").await.0, 401);
    assert_eq!(idp.jwks_hits(), 0, "no key is ever fetched");

    s.stop().await;
    idp.shutdown().await;
    let text = logs.text();
    let warnings = text
        .lines()
        .filter(|l| l.contains("token signatures are NOT checked"))
        .count();
    assert_eq!(
        warnings, 1,
        "one warning at start, none per request:\n{text}"
    );
    assert!(text.contains("WARN"), "{text}");
}

#[test]
fn unverified_mode_is_refused_off_loopback_unless_forced() {
    let dev = |preset: Auth0| {
        OAuth::builder()
            .resource(RESOURCE)
            .provider_with(preset, &no_vars)
            .mirror_authorization_server(false)
            .build()
            .expect("oauth")
    };
    let base = || Auth0::new().domain("tenant.auth0.com").audience(AUTH0_API);
    let unverified = dev(base().verify_jwt(false));
    let err = unverified
        .check_listen_address("0.0.0.0:8080".parse().expect("addr"))
        .expect_err("refused off loopback");
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                field: "verify_jwt",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("insecure_force_unverified"),
        "{err}"
    );
    assert!(
        unverified
            .check_listen_address("192.168.1.10:8080".parse().expect("addr"))
            .is_err()
    );
    for loopback in ["127.0.0.1:8080", "[::1]:8080"] {
        assert!(
            unverified
                .check_listen_address(loopback.parse().expect("addr"))
                .is_ok(),
            "{loopback}"
        );
    }
    let forced = dev(base().verify_jwt(false).insecure_force_unverified());
    assert!(
        forced
            .check_listen_address("0.0.0.0:8080".parse().expect("addr"))
            .is_ok()
    );
    let verified = dev(base());
    assert!(
        verified
            .check_listen_address("0.0.0.0:8080".parse().expect("addr"))
            .is_ok()
    );
}
