//! Variables from older mcp-use docs are never silently ignored: each is read as the variable
//! that means the same today (with a warning naming it), refused with an error that says what
//! to do instead, or reported as unused; a bare WorkOS subdomain means its AuthKit host.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use mcp_oauth::ConfigError;
use mcp_oauth::authenticator::Audience;
use mcp_oauth::providers::{Keycloak, Provider, ProviderSpec, WorkOs};

/// A variable source made of pairs, standing for the environment.
fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs `f` with the warnings it logs captured; returns its result and the log text.
fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

fn spec_of(preset: impl Provider, pairs: &[(&str, &str)]) -> (ProviderSpec, String) {
    let (spec, logs) = with_logs(|| preset.spec_with(&vars(pairs)));
    (spec.expect("spec"), logs)
}

fn extra_audiences(spec: &ProviderSpec) -> Vec<String> {
    match &spec.audience {
        Audience::Resource { extra, .. } => extra.clone(),
        other => panic!("unexpected audience rule {other:?}"),
    }
}

const KEYCLOAK: [(&str, &str); 2] = [
    (
        "MCP_USE_OAUTH_KEYCLOAK_SERVER_URL",
        "https://keycloak.example.com",
    ),
    ("MCP_USE_OAUTH_KEYCLOAK_REALM", "my-realm"),
];

#[test]
fn keycloak_client_id_is_read_as_the_audience_with_a_warning_naming_the_current_variable() {
    let mut env = KEYCLOAK.to_vec();
    env.push(("MCP_USE_OAUTH_KEYCLOAK_CLIENT_ID", "my-mcp-server"));
    let (spec, logs) = spec_of(Keycloak::new(), &env);
    assert_eq!(extra_audiences(&spec), ["my-mcp-server"]);
    assert!(logs.contains("WARN"), "{logs}");
    assert!(
        logs.contains("MCP_USE_OAUTH_KEYCLOAK_CLIENT_ID is deprecated")
            && logs.contains("rename it to MCP_USE_OAUTH_KEYCLOAK_AUDIENCE"),
        "{logs}"
    );

    // Without the old variable: no audience added, nothing logged.
    let (spec, logs) = spec_of(Keycloak::new(), &KEYCLOAK);
    assert!(extra_audiences(&spec).is_empty());
    assert!(logs.is_empty(), "{logs}");
}

#[test]
fn the_current_keycloak_audience_wins_over_the_old_client_id() {
    let mut env = KEYCLOAK.to_vec();
    env.push(("MCP_USE_OAUTH_KEYCLOAK_CLIENT_ID", "old-client"));
    env.push(("MCP_USE_OAUTH_KEYCLOAK_AUDIENCE", "new-audience"));
    let (spec, logs) = spec_of(Keycloak::new(), &env);
    assert_eq!(extra_audiences(&spec), ["new-audience"]);
    assert!(
        logs.contains("ignored because MCP_USE_OAUTH_KEYCLOAK_AUDIENCE is set"),
        "{logs}"
    );

    // A value set in code wins over both, and the old variable is then not read at all.
    let (spec, _) = spec_of(Keycloak::new().audience("from-code"), &env);
    assert_eq!(extra_audiences(&spec), ["from-code"]);
}

#[test]
fn the_old_workos_client_id_is_refused_with_what_to_do_instead() {
    let env = [
        ("MCP_USE_OAUTH_WORKOS_SUBDOMAIN", "acme.authkit.app"),
        (
            "MCP_USE_OAUTH_WORKOS_CLIENT_ID",
            "client_01KB5DRXBDDY1VGCBKY108SKJW",
        ),
    ];
    let (result, _) = with_logs(|| WorkOs::new().spec_with(&vars(&env)));
    let err = result.expect_err("refused");
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
    let text = err.to_string();
    for needed in [
        "MCP_USE_OAUTH_WORKOS_CLIENT_ID",
        "Dynamic Client Registration",
        "MCP_USE_OAUTH_WORKOS_SUBDOMAIN",
        "WorkOs::audience",
        "proxy mode",
    ] {
        assert!(text.contains(needed), "{needed:?} missing from: {text}");
    }
}

#[test]
fn the_old_workos_api_key_is_reported_unused_and_never_logged() {
    let key = "sk_test_a1b2c3d4e5f6g7h8i9j0";
    let env = [
        ("MCP_USE_OAUTH_WORKOS_SUBDOMAIN", "acme.authkit.app"),
        ("MCP_USE_OAUTH_WORKOS_API_KEY", key),
    ];
    let (spec, logs) = spec_of(WorkOs::new(), &env);
    assert_eq!(spec.issuer, "https://acme.authkit.app");
    assert!(
        logs.contains("MCP_USE_OAUTH_WORKOS_API_KEY is not read")
            && logs.contains("MCP_USE_OAUTH_WORKOS_SUBDOMAIN is the only WorkOS variable"),
        "{logs}"
    );
    assert!(
        !logs.contains(key),
        "the key itself is never logged: {logs}"
    );
}

#[test]
fn a_bare_workos_subdomain_means_its_authkit_host_never_https_label() {
    let (spec, logs) = spec_of(
        WorkOs::new(),
        &[("MCP_USE_OAUTH_WORKOS_SUBDOMAIN", "your-company")],
    );
    assert_eq!(spec.issuer, "https://your-company.authkit.app");
    assert_eq!(
        spec.jwks_url.as_deref(),
        Some("https://your-company.authkit.app/oauth2/jwks")
    );
    assert_eq!(
        spec.authorization_endpoint.as_deref(),
        Some("https://your-company.authkit.app/oauth2/authorize")
    );
    assert!(
        logs.contains("taken as your-company.authkit.app"),
        "a warning says how the value was read: {logs}"
    );

    // The same through code.
    let (spec, _) = spec_of(WorkOs::new().subdomain("Acme"), &[]);
    assert_eq!(spec.issuer, "https://acme.authkit.app");

    // Full hosts, custom domains and URLs are kept as given, without a warning.
    for (given, issuer) in [
        ("acme.authkit.app", "https://acme.authkit.app"),
        ("auth.acme.com", "https://auth.acme.com"),
        ("https://acme.authkit.app/", "https://acme.authkit.app"),
        ("http://127.0.0.1:4000", "http://127.0.0.1:4000"),
    ] {
        let (spec, logs) = spec_of(WorkOs::new().subdomain(given), &[]);
        assert_eq!(spec.issuer, issuer, "{given}");
        assert!(logs.is_empty(), "{given}: {logs}");
    }

    // Something that is no host label at all is an error naming the fix.
    for bad in ["your_company", "-acme", "acme co"] {
        let (result, _) = with_logs(|| WorkOs::new().subdomain(bad).spec_with(&vars(&[])));
        let err = result.expect_err(bad).to_string();
        assert!(err.contains("your-company.authkit.app"), "{bad}: {err}");
    }
}
