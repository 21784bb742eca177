//! The authorization server: its metadata, fetched in the MCP discovery order (RFC 8414
//! path-inserted, OIDC path-inserted, OIDC path-appended; RFC 8414 then OIDC for a root
//! issuer), what MCP clients need from it, and its key set.

use mcp_oauth::FetchError;
use mcp_oauth::error::FetchErrorKind;
use mcp_oauth::jose::{Algorithms, Jwk, KeySet, VerifyingKey};
use mcp_oauth::metadata::{AuthorizationServerMetadata, discover};
use mcp_oauth::resource::authorization_server_metadata_urls;
use url::Url;

use super::report::{Check, Report};
use super::{Context, ISSUER_RULE, IssuerSource, differ_by_trailing_slash};

/// Most keys kept from one key set, as the library's JWKS cache does.
const MAX_KEYS: usize = 64;

/// What the server checks found, for the token checks.
#[derive(Debug, Default)]
pub(super) struct Findings {
    /// The metadata's `jwks_uri`, when usable.
    pub(super) jwks_uri: Option<Url>,
    /// The usable keys, parsed exactly as the library parses them.
    pub(super) keys: Option<KeySet>,
    /// The `kid`s of the usable keys, for messages.
    pub(super) kids: Vec<String>,
    /// The metadata's introspection endpoint, for the opaque-token hint.
    pub(super) introspection_endpoint: Option<String>,
}

/// `preset_jwks`: where a `--provider` preset takes its keys from; it wins over the
/// metadata's `jwks_uri`, as it does in a server built with the preset.
pub(super) async fn check(
    ctx: &Context,
    report: &mut Report,
    issuer: &str,
    source: IssuerSource,
    preset_jwks: Option<&str>,
) -> Findings {
    let mut findings = Findings::default();
    let Some(url) = issuer_url(ctx, report, issuer) else {
        return findings;
    };
    let metadata = fetch_metadata(ctx, report, issuer, &url).await;
    if let Some(metadata) = &metadata {
        check_metadata(report, issuer, source, metadata);
        findings.introspection_endpoint = metadata.introspection_endpoint.clone();
    }
    if let (Some(preset), IssuerSource::Preset(name)) = (preset_jwks, source) {
        let advertised = metadata.as_ref().and_then(|m| m.jwks_uri.as_deref());
        return preset_keys(ctx, report, findings, name, preset, advertised).await;
    }
    let Some(metadata) = metadata else {
        return findings;
    };
    let Some(jwks_uri) = metadata.jwks_uri.as_deref() else {
        report.add(
            Check::fail("as.jwks_uri", "The metadata has no jwks_uri: JWT access tokens cannot be verified against the issuer's keys.")
                .hint("If the provider issues opaque tokens, verify them by introspection (RFC 7662, IntrospectionVerifier); if it signs with a shared secret, configure JwtVerifier::hmac_secret; otherwise give the verifier the key location with jwks_url(..)."),
        );
        return findings;
    };
    let jwks_url = match Url::parse(jwks_uri) {
        Ok(url) => url,
        Err(err) => {
            report.add(
                Check::fail(
                    "as.jwks_uri",
                    format!("The metadata's jwks_uri {jwks_uri:?} is not a URL ({err})."),
                )
                .hint("Fix jwks_uri in the authorization server's metadata."),
            );
            return findings;
        }
    };
    report.add(Check::pass(
        "as.jwks_uri",
        format!("jwks_uri is {jwks_url}."),
    ));
    if let Some((keys, kids)) = check_jwks(ctx, report, &jwks_url).await {
        findings.keys = Some(keys);
        findings.kids = kids;
    }
    findings.jwks_uri = Some(jwks_url);
    findings
}

/// The key set at the preset's fixed location, which a server built with the preset uses
/// whatever the metadata says.
async fn preset_keys(
    ctx: &Context,
    report: &mut Report,
    mut findings: Findings,
    name: &str,
    preset: &str,
    advertised: Option<&str>,
) -> Findings {
    let url = match Url::parse(preset) {
        Ok(url) => url,
        Err(err) => {
            report.add(
                Check::fail("as.jwks_uri", format!("The {name} preset's key location {preset:?} is not a URL ({err})."))
                    .hint("Fix the preset's MCP_USE_OAUTH_* variable: it must name the provider's address."),
            );
            return findings;
        }
    };
    let message = match advertised {
        Some(uri) if uri == preset => {
            format!("The {name} preset takes its keys from {url}, the metadata's jwks_uri too.")
        }
        Some(uri) => format!(
            "The {name} preset takes its keys from {url}; the metadata's jwks_uri {uri} is not used."
        ),
        None => format!("The {name} preset takes its keys from {url}."),
    };
    report.add(Check::pass("as.jwks_uri", message));
    if let Some((keys, kids)) = check_jwks(ctx, report, &url).await {
        findings.keys = Some(keys);
        findings.kids = kids;
    }
    findings.jwks_uri = Some(url);
    findings
}

fn issuer_url(ctx: &Context, report: &mut Report, issuer: &str) -> Option<Url> {
    const ID: &str = "as.issuer_url";
    let url = match Url::parse(issuer) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url,
        Ok(url) => {
            report.add(
                Check::fail(
                    ID,
                    format!(
                        "The issuer {issuer} is not an https URL (scheme {}).",
                        url.scheme()
                    ),
                )
                .hint("An issuer is an https URL (RFC 8414 §2)."),
            );
            return None;
        }
        Err(err) => {
            report.add(
                Check::fail(ID, format!("The issuer {issuer:?} is not a URL ({err}).")).hint(
                    "An issuer is an https URL (RFC 8414 §2), the exact `iss` of the tokens.",
                ),
            );
            return None;
        }
    };
    if let Err(err) = ctx.client.check_url(&url) {
        report.add(
            Check::fail(
                ID,
                format!("The issuer {issuer} cannot be fetched: {}.", err.kind),
            )
            .hint(
                "Use https. On a private network, --insecure-http allows plain http to any host.",
            ),
        );
        return None;
    }
    if url.path().contains("/.well-known/") {
        report.add(
            Check::fail(ID, format!("The issuer {issuer} is a discovery document's URL, not an issuer."))
                .hint("Pass the `issuer` value found inside that document (for https://auth.example.com/.well-known/openid-configuration it is usually https://auth.example.com)."),
        );
        return None;
    }
    if url.query().is_some() || url.fragment().is_some() {
        report.add(
            Check::fail(ID, format!("The issuer {issuer} has a query or a fragment, which issuers never have (RFC 8414 §2)."))
                .hint("Pass the issuer exactly as the tokens carry it in iss."),
        );
    }
    Some(url)
}

async fn fetch_metadata(
    ctx: &Context,
    report: &mut Report,
    issuer: &str,
    url: &Url,
) -> Option<AuthorizationServerMetadata> {
    const ID: &str = "as.metadata";
    let candidates = authorization_server_metadata_urls(url);
    let order = candidates
        .iter()
        .map(Url::as_str)
        .collect::<Vec<_>>()
        .join(", then ");
    match discover(&ctx.client, url).await {
        Ok(doc) => {
            let position = candidates.iter().position(|c| c == &doc.url).unwrap_or(0);
            let message = match (position, candidates.len()) {
                (0, 1) => format!("Metadata found at {}.", doc.url),
                (0, n) => format!(
                    "Metadata found at {}, the first of the {n} URLs MCP clients try.",
                    doc.url
                ),
                (i, n) => {
                    let skipped = candidates
                        .iter()
                        .take(i)
                        .map(Url::as_str)
                        .collect::<Vec<_>>()
                        .join(" and ");
                    format!(
                        "Metadata found at {}, URL {} of the {n} MCP clients try ({skipped} answered 4xx).",
                        doc.url,
                        i + 1
                    )
                }
            };
            report.add(Check::pass(ID, message));
            Some(doc.metadata)
        }
        Err(err) => {
            report.add(discovery_failure(issuer, &order, &err));
            None
        }
    }
}

fn discovery_failure(issuer: &str, order: &str, err: &FetchError) -> Check {
    const ID: &str = "as.metadata";
    let url = &err.url;
    match &err.kind {
        FetchErrorKind::Status(status @ 400..=499) => Check::fail(
            ID,
            format!("No authorization-server metadata for {issuer}: MCP clients try {order}, and every one answered 4xx (the last {status})."),
        )
        .hint("Check the issuer: it is the exact iss of the tokens (Auth0: https://TENANT.auth0.com/ with the slash; Keycloak: https://HOST/realms/REALM; Entra ID: https://login.microsoftonline.com/TENANT/v2.0; Okta: https://DOMAIN/oauth2/default). The authorization server must publish its metadata at one of these URLs."),
        FetchErrorKind::Status(status) => Check::fail(
            ID,
            format!("Fetching the metadata at {url} got {status}. MCP clients try {order}, moving on only after a 4xx, so they stop here."),
        )
        .hint("The authorization server has a problem at that URL; check its status and logs."),
        FetchErrorKind::Parse(reason) => Check::fail(
            ID,
            format!("The document at {url} is not authorization-server metadata: {reason}."),
        )
        .hint("It must be a JSON object with at least an issuer member (RFC 8414 §2). Check that the URL is not answered by something else (a login page, a proxy's error page)."),
        FetchErrorKind::Refused(reason) => Check::fail(
            ID,
            format!("The metadata at {url} cannot be fetched: {reason}."),
        )
        .hint("Use https. On a private network, --insecure-http allows plain http to any host."),
        FetchErrorKind::TooLarge { limit } => Check::fail(
            ID,
            format!("The document at {url} is larger than {limit} bytes: that is not a metadata document."),
        )
        .hint("Check that the URL is not answered by something else."),
        kind => Check::fail(
            ID,
            format!("Could not reach the authorization server at {url}: {kind}."),
        )
        .hint("Check the host name, the port, and that the issuer can be reached from this machine (proxy, firewall, VPN)."),
    }
}

fn check_metadata(
    report: &mut Report,
    issuer: &str,
    source: IssuerSource,
    metadata: &AuthorizationServerMetadata,
) {
    let advertised = metadata.issuer.as_str();
    let where_from = match source {
        IssuerSource::Flag => "--issuer".to_owned(),
        IssuerSource::ProtectedResource => "the MCP server's authorization_servers[0]".to_owned(),
        IssuerSource::Preset(name) => format!("the {name} preset's issuer"),
    };
    if advertised == issuer {
        report.add(Check::pass(
            "as.issuer",
            format!("The metadata's issuer is {advertised}, byte for byte the issuer looked up."),
        ));
    } else if differ_by_trailing_slash(advertised, issuer) {
        let fix = match source {
            IssuerSource::Flag => format!(
                "Use exactly \"{advertised}\" everywhere: as --issuer, as the server's issuer (its verifier and authorization_servers). If tokens carry \"{issuer}\" in iss instead, the authorization server's metadata is wrong and must be fixed there."
            ),
            IssuerSource::ProtectedResource => format!(
                "Make the MCP server's authorization_servers[0] exactly \"{advertised}\", the spelling the authorization server uses (and check that its verifier's issuer is the same)."
            ),
            IssuerSource::Preset(name) => format!(
                "The {name} preset builds its issuer from its MCP_USE_OAUTH_* variable; give that variable the address the provider itself uses, so that the issuer is \"{advertised}\"."
            ),
        };
        report.add(
            Check::fail("as.issuer", format!("Issuer mismatch: the metadata says \"{advertised}\" but {where_from} is \"{issuer}\"; they differ only by a trailing slash. {ISSUER_RULE}"))
                .hint(fix),
        );
    } else {
        report.add(
            Check::fail("as.issuer", format!("Issuer mismatch: the metadata says \"{advertised}\" but {where_from} is \"{issuer}\". {ISSUER_RULE}"))
                .hint(format!("Check that {issuer} is the right issuer: the metadata belongs to {advertised}, maybe another tenant, realm or a proxy's address. Use the issuer exactly as the metadata and the tokens spell it.")),
        );
    }

    match &metadata.code_challenge_methods_supported {
        Some(methods) if methods.iter().any(|m| m == "S256") => report.add(Check::pass(
            "as.pkce",
            "PKCE with S256 is advertised (code_challenge_methods_supported).",
        )),
        Some(methods) => report.add(
            Check::fail("as.pkce", format!("code_challenge_methods_supported is [{}], without S256: MCP clients must refuse to use this authorization server.", methods.join(", ")))
                .hint("Enable PKCE with S256 at the authorization server and make it advertise it."),
        ),
        None => report.add(
            Check::fail("as.pkce", "The metadata has no code_challenge_methods_supported: MCP clients must refuse an authorization server that does not advertise PKCE S256, even if it supports it.")
                .hint("Make the authorization server advertise code_challenge_methods_supported: [\"S256\"] (some providers need PKCE enabled for the application or a newer discovery endpoint). There is no client-side workaround in a compliant client."),
        ),
    }

    match &metadata.response_types_supported {
        Some(types) if types.iter().any(|t| t == "code") => report.add(Check::pass(
            "as.response_types",
            "The authorization code flow is advertised (response_types_supported has code).",
        )),
        Some(types) => report.add(
            Check::fail("as.response_types", format!("response_types_supported is [{}], without code: MCP clients use the authorization code flow.", types.join(", ")))
                .hint("Enable the authorization code flow at the authorization server."),
        ),
        None => report.add(
            Check::fail("as.response_types", "The metadata has no response_types_supported, which RFC 8414 §2 requires.")
                .hint("Make the authorization server publish response_types_supported with code."),
        ),
    }

    if let Some(grants) = &metadata.grant_types_supported
        && !grants.iter().any(|g| g == "authorization_code")
    {
        report.add(
            Check::fail("as.grant_types", format!("grant_types_supported is [{}], without authorization_code: MCP clients use that grant.", grants.join(", ")))
                .hint("Enable the authorization code grant at the authorization server."),
        );
    }

    match (&metadata.authorization_endpoint, &metadata.token_endpoint) {
        (Some(authorize), Some(token)) => report.add(Check::pass(
            "as.endpoints",
            format!("authorization_endpoint {authorize}, token_endpoint {token}."),
        )),
        (authorize, token) => {
            let missing: Vec<&str> = [
                authorize.is_none().then_some("authorization_endpoint"),
                token.is_none().then_some("token_endpoint"),
            ]
            .into_iter()
            .flatten()
            .collect();
            report.add(
                Check::fail("as.endpoints", format!("The metadata has no {}: clients cannot run the authorization code flow.", missing.join(" and ")))
                    .hint("Check that this is the metadata of an OAuth authorization server, not of a resource."),
            );
        }
    }

    let dcr = metadata.registration_endpoint.as_deref();
    let cimd = metadata.client_id_metadata_document_supported == Some(true);
    match (dcr, cimd) {
        (Some(endpoint), true) => report.add(Check::info(
            "as.registration",
            format!("Clients can register dynamically (registration_endpoint {endpoint}) or use a client ID metadata document."),
        )),
        (Some(endpoint), false) => report.add(Check::info(
            "as.registration",
            format!("Clients can register dynamically (RFC 7591) at {endpoint}."),
        )),
        (None, true) => report.add(Check::info(
            "as.registration",
            "Clients can use a client ID metadata document (client_id_metadata_document_supported).",
        )),
        (None, false) => report.add(
            Check::warn("as.registration", "Neither dynamic client registration (registration_endpoint) nor client ID metadata documents are advertised: only clients with a pre-registered client_id can sign in.")
                .hint("That is fine when every client is configured with a client id. Otherwise enable dynamic client registration (RFC 7591) or client ID metadata documents at the authorization server: most MCP clients rely on one of them."),
        ),
    }
}

/// Fetches and reads the key set exactly as the library does, and describes each key.
async fn check_jwks(
    ctx: &Context,
    report: &mut Report,
    url: &Url,
) -> Option<(KeySet, Vec<String>)> {
    let (headers, body) = match ctx.client.fetch(url).await {
        Ok(fetched) => fetched,
        Err(err) => {
            let hint = match &err.kind {
                FetchErrorKind::Refused(_) => "Use https. On a private network, --insecure-http allows plain http to any host.".to_owned(),
                FetchErrorKind::Status(status) => format!("The key set URL answers {status}. While no key can be fetched nothing can be verified: the library answers 503 with Retry-After (not 401), so clients keep their tokens. Check the authorization server, and that jwks_uri is right."),
                _ => "While no key can be fetched nothing can be verified: the library answers 503 with Retry-After (not 401). Check that the key set URL can be reached from the MCP server.".to_owned(),
            };
            report.add(
                Check::fail(
                    "jwks.fetch",
                    format!("Could not fetch the key set at {url}: {}.", err.kind),
                )
                .hint(hint),
            );
            return None;
        }
    };
    let keys = match KeySet::from_jwks_json(&body, Algorithms::default(), MAX_KEYS) {
        Ok((keys, _)) => keys,
        Err(err) => {
            report.add(
                Check::fail("jwks.fetch", format!("The document at {url} is {err}."))
                    .hint("jwks_uri must serve a JWK Set (RFC 7517 §5): {\"keys\": [...]}. Check that the URL is not answered by something else."),
            );
            return None;
        }
    };
    let cache = headers
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" (Cache-Control: {v})"))
        .unwrap_or_default();
    report.add(Check::pass(
        "jwks.fetch",
        format!("Fetched the key set from {url}{cache}."),
    ));

    let described = describe_keys(&body);
    if keys.is_empty() {
        let skipped = if described.skipped.is_empty() {
            "the key set is empty".to_owned()
        } else {
            format!("skipped {}", described.skipped.join("; "))
        };
        report.add(
            Check::fail("jwks.keys", format!("No usable signing key: {skipped}."))
                .hint("The library verifies RS256/384/512, PS256/384/512, ES256/384 and EdDSA signatures with public keys from the key set. Tokens signed with a shared secret (HS256) need JwtVerifier::hmac_secret instead."),
        );
        return None;
    }
    let count = match keys.len() {
        1 => "1 usable key".to_owned(),
        n => format!("{n} usable keys"),
    };
    report.add(Check::pass(
        "jwks.keys",
        format!("{count}: {}.", described.usable.join(", ")),
    ));
    if !described.skipped.is_empty() {
        report.add(Check::info(
            "jwks.skipped",
            format!("Skipped: {}.", described.skipped.join("; ")),
        ));
    }
    Some((keys, described.kids))
}

#[derive(Debug, Default)]
struct Described {
    usable: Vec<String>,
    skipped: Vec<String>,
    kids: Vec<String>,
}

/// Each key of a JWKS in words, with the reason a key is not used.
fn describe_keys(body: &[u8]) -> Described {
    let mut described = Described::default();
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return described;
    };
    let Some(entries) = doc.get("keys").and_then(|k| k.as_array()) else {
        return described;
    };
    for (index, entry) in entries.iter().enumerate() {
        let kid = entry.get("kid").and_then(|v| v.as_str());
        let kty = entry.get("kty").and_then(|v| v.as_str()).unwrap_or("?");
        let name = match kid {
            Some(kid) => format!("kid \"{kid}\""),
            None => format!("key {} (no kid)", index + 1),
        };
        if described.usable.len() >= MAX_KEYS {
            described
                .skipped
                .push(format!("{name}: more than {MAX_KEYS} keys"));
            continue;
        }
        if kty == "oct" {
            described.skipped.push(format!("{name} (oct): a shared secret, never taken from a key set (HS* tokens need a configured secret)"));
            continue;
        }
        let key = serde_json::from_value::<Jwk>(entry.clone())
            .map_err(|_| "not a valid JWK".to_owned())
            .and_then(|jwk| {
                VerifyingKey::from_jwk(&jwk, Algorithms::default()).map_err(|e| e.to_string())
            });
        match key {
            Ok(key) => {
                let algs = key
                    .algorithms()
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join("/");
                described.usable.push(format!("{name} ({kty}, {algs})"));
                if let Some(kid) = kid {
                    described.kids.push(kid.to_owned());
                }
            }
            Err(reason) => described.skipped.push(format!("{name} ({kty}): {reason}")),
        }
    }
    described
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_oauth::testing::TestKey;

    #[test]
    fn keys_are_described_and_unusable_ones_explained() {
        let rsa = TestKey::rs256();
        let mut doc = serde_json::to_value(TestKey::jwks(&[&rsa])).expect("jwks");
        let keys = doc["keys"].as_array_mut().expect("keys");
        keys.push(serde_json::json!({"kty": "oct", "kid": "secret", "k": "c2VjcmV0"}));
        keys.push(
            serde_json::json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"}),
        );
        let body = serde_json::to_vec(&doc).expect("json");

        let described = describe_keys(&body);
        assert_eq!(described.kids, [rsa.kid()]);
        assert_eq!(described.usable.len(), 1);
        assert!(
            described.usable[0].contains("RS256"),
            "{:?}",
            described.usable
        );
        assert_eq!(described.skipped.len(), 2);
        assert!(
            described.skipped[0].contains("shared secret"),
            "{:?}",
            described.skipped
        );
        assert!(
            described.skipped[1].contains("kid \"enc\""),
            "{:?}",
            described.skipped
        );

        // The count agrees with the library's own reading of the document.
        let (set, skipped) =
            KeySet::from_jwks_json(&body, Algorithms::default(), MAX_KEYS).expect("set");
        assert_eq!(set.len(), described.usable.len());
        assert_eq!(skipped, described.skipped.len());
    }
}
