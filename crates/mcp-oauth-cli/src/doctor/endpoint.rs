//! The MCP endpoint as a client first meets it: the 401 challenge of a request without a
//! token (RFC 6750 §3, RFC 9728 §5.1), then the protected-resource metadata (RFC 9728), looked
//! for where the MCP specification says: the challenge's `resource_metadata`, else the
//! path-suffixed well-known URL, else the root one.

use mcp_oauth::ResourceUrl;
use mcp_oauth::challenge::parse_www_authenticate;
use mcp_oauth::metadata::ProtectedResourceMetadata;
use reqwest::header;
use url::Url;

use super::report::{Check, Report};
use super::{Context, ISSUER_RULE, differ_by_trailing_slash, root_cause};

/// What the endpoint checks found, for the checks that follow.
#[derive(Debug, Default)]
pub(super) struct Findings {
    /// The MCP URL as a resource identifier: the audience tokens must carry.
    pub(super) resource: Option<ResourceUrl>,
    /// The protected-resource metadata, when found.
    pub(super) metadata: Option<ProtectedResourceMetadata>,
}

pub(super) async fn check(
    ctx: &Context,
    report: &mut Report,
    mcp_url: &str,
    issuer: Option<&str>,
) -> Findings {
    let parsed = if ctx.insecure_http {
        ResourceUrl::parse_insecure(mcp_url)
    } else {
        ResourceUrl::parse(mcp_url)
    };
    let resource = match parsed {
        Ok(resource) => resource,
        Err(err) => {
            report.add(
                Check::fail("mcp.url", format!("The MCP URL cannot be a resource identifier: {err}."))
                    .hint("Give the endpoint's public URL: https (plain http only to 127.0.0.1 or localhost, or anywhere with --insecure-http on a private network), with no query or fragment."),
            );
            return Findings::default();
        }
    };
    let (advertised, challenge_scope) = challenge(ctx, report, &resource).await;
    let metadata = find_metadata(ctx, report, &resource, advertised).await;
    if let Some(doc) = &metadata {
        check_metadata(report, &resource, doc, issuer);
        check_scopes(report, doc, challenge_scope.as_deref());
    }
    Findings {
        resource: Some(resource),
        metadata,
    }
}

/// POSTs an `initialize` without a token and expects 401 with a Bearer challenge; returns the
/// challenge's `resource_metadata` and `scope`.
async fn challenge(
    ctx: &Context,
    report: &mut Report,
    resource: &ResourceUrl,
) -> (Option<String>, Option<String>) {
    const ID: &str = "mcp.challenge";
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "mcp-oauth-doctor", "version": env!("CARGO_PKG_VERSION")}
        }
    });
    let sent = ctx
        .web
        .post(resource.url().clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(body.to_string())
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(err) => {
            let reason = if err.is_timeout() {
                "timed out".to_owned()
            } else {
                root_cause(&err)
            };
            report.add(
                Check::fail(ID, format!("A POST to {resource} without a token failed: {reason}."))
                    .hint("Check that the server is running and that --mcp-url is the URL clients use (scheme, host, port and path)."),
            );
            return (None, None);
        }
    };
    let status = response.status().as_u16();
    if status != 401 {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("another URL");
        let (message, hint) = match status {
            200..=299 => (
                format!("A POST to {resource} without a token got {status}: the endpoint is not protected, or something in front of it answers for it."),
                "Put the bearer layer in front of the MCP route (mcp-oauth: McpServer::oauth(..), or oauth.layer() around your service), and check that no proxy answers for it.".to_owned(),
            ),
            300..=399 => (
                format!("A POST to {resource} without a token got {status}, a redirect to {location}."),
                "Configure clients (and --mcp-url) with the final URL: clients do not carry the Authorization header across redirects, and the redirect hides the 401 they need.".to_owned(),
            ),
            403 => (
                format!("A POST to {resource} without a token got 403: MCP clients start authorization only on 401."),
                "Answer 401 with WWW-Authenticate: Bearer resource_metadata=\"…\" when no token came (RFC 6750 §3.1); 403 is for a valid token that lacks a scope.".to_owned(),
            ),
            404 => (
                format!("A POST to {resource} got 404: there is no MCP endpoint at this path."),
                "Check the path (often /mcp): --mcp-url is the full endpoint URL, as clients are configured with it.".to_owned(),
            ),
            405 => (
                format!("A POST to {resource} got 405: this is not a Streamable HTTP MCP endpoint (an old SSE endpoint, or the wrong path)."),
                "Point --mcp-url at the Streamable HTTP endpoint, which takes POST.".to_owned(),
            ),
            _ => (
                format!("A POST to {resource} without a token got {status}, not 401."),
                "A protected MCP endpoint answers 401 with WWW-Authenticate: Bearer resource_metadata=\"…\" when no token came (RFC 6750 §3.1, RFC 9728 §5.1).".to_owned(),
            ),
        };
        report.add(Check::fail(ID, message).hint(hint));
        return (None, None);
    }
    let values: Vec<&str> = response
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let challenges: Vec<_> = values
        .iter()
        .flat_map(|v| parse_www_authenticate(v))
        .collect();
    let Some(bearer) = challenges
        .iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
    else {
        let found = if values.is_empty() {
            "no WWW-Authenticate header".to_owned()
        } else {
            format!("WWW-Authenticate: {}", values.join(", "))
        };
        report.add(
            Check::fail(ID, format!("A POST without a token got 401, but with {found}: MCP clients need a Bearer challenge."))
                .hint(format!("Answer 401 with WWW-Authenticate: Bearer resource_metadata=\"{}\" (RFC 6750 §3, RFC 9728 §5.1).", resource.metadata_url())),
        );
        return (None, None);
    };
    let advertised = bearer.param("resource_metadata").map(str::to_owned);
    let scope = bearer
        .param("scope")
        .map(|s| format!(" and scope=\"{s}\""))
        .unwrap_or_default();
    match &advertised {
        Some(url) => report.add(Check::pass(
            ID,
            format!("A POST without a token gets 401 with a Bearer challenge naming resource_metadata=\"{url}\"{scope}."),
        )),
        None => report.add(
            Check::warn(ID, "A POST without a token gets 401 with a Bearer challenge, but without resource_metadata: clients must then guess the metadata's well-known URL.")
                .hint(format!("Add resource_metadata=\"{}\" to the challenge (RFC 9728 §5.1); the MCP specification expects it.", resource.metadata_url())),
        ),
    }
    if let Some(error) = bearer.param("error") {
        report.add(
            Check::warn("mcp.challenge_error", format!("The challenge carries error=\"{error}\" although no token was sent."))
                .hint("RFC 6750 §3.1: when the request had no token, the challenge should carry no error code; some clients then treat the 401 as a failed token instead of starting authorization."),
        );
    }
    let scope = bearer.param("scope").map(str::to_owned);
    (advertised, scope)
}

/// Looks for the protected-resource metadata in the MCP specification's order.
async fn find_metadata(
    ctx: &Context,
    report: &mut Report,
    resource: &ResourceUrl,
    advertised: Option<String>,
) -> Option<ProtectedResourceMetadata> {
    const ID: &str = "mcp.resource_metadata";
    let mut candidates: Vec<(Url, &str)> = Vec::new();
    let mut advertised_bad = None;
    if let Some(text) = &advertised {
        match Url::parse(text) {
            Ok(url) => candidates.push((url, "the challenge's resource_metadata")),
            Err(err) => advertised_bad = Some(format!("{text} is not a URL ({err})")),
        }
    }
    let suffixed = resource.metadata_url();
    let root = format!("{}/.well-known/oauth-protected-resource", resource.origin());
    for (text, label) in [
        (suffixed.as_str(), "the path-suffixed well-known URL"),
        (root.as_str(), "the root well-known URL"),
    ] {
        if let Ok(url) = Url::parse(text)
            && !candidates.iter().any(|(have, _)| have == &url)
        {
            candidates.push((url, label));
        }
    }

    let mut failures = Vec::new();
    let mut found = None;
    for (index, (url, label)) in candidates.iter().enumerate() {
        match ctx.client.fetch(url).await {
            Ok((_, body)) => match serde_json::from_slice::<ProtectedResourceMetadata>(&body) {
                Ok(doc) => {
                    found = Some((index, url, *label, doc));
                    break;
                }
                Err(err) => failures.push(format!(
                    "{url}: not a protected-resource metadata document ({err})"
                )),
            },
            Err(err) => failures.push(format!("{url}: {}", err.kind)),
        }
    }
    let tried = failures.join("; ");
    let from_challenge = advertised.is_some() && advertised_bad.is_none();
    match found {
        Some((0, url, label, doc)) => {
            report.add(Check::pass(
                ID,
                format!("Protected-resource metadata found at {url} ({label})."),
            ));
            Some(doc)
        }
        Some((_, url, _, doc)) if from_challenge => {
            report.add(
                Check::fail(ID, format!("The challenge's resource_metadata does not serve the metadata ({tried}); it is at {url}."))
                    .hint(format!("Make resource_metadata name {url}: clients follow the challenge and do not try other URLs.")),
            );
            Some(doc)
        }
        Some((_, url, label, doc)) => {
            report.add(match &advertised_bad {
                Some(bad) => Check::fail(
                    ID,
                    format!("The challenge's resource_metadata is unusable: {bad}. The metadata is at {url} ({label})."),
                )
                .hint(format!("Make resource_metadata in the challenge name {url}.")),
                None => Check::pass(
                    ID,
                    format!("Protected-resource metadata found at {url} ({label}), after {tried}."),
                ),
            });
            Some(doc)
        }
        None => {
            let mut tried = tried;
            if let Some(bad) = advertised_bad {
                tried = format!("the challenge's resource_metadata: {bad}; {tried}");
            }
            report.add(
                Check::fail(ID, format!("No protected-resource metadata (RFC 9728) found. Tried, in the MCP specification's order: {tried}."))
                    .hint(format!("Serve the metadata at {suffixed} (mcp-oauth: oauth.metadata_router()). Behind a reverse proxy, pass /.well-known/* through to the MCP server.")),
            );
            None
        }
    }
}

fn check_metadata(
    report: &mut Report,
    resource: &ResourceUrl,
    doc: &ProtectedResourceMetadata,
    issuer: Option<&str>,
) {
    let advertised = doc.resource.as_str();
    if advertised == resource.as_str() {
        report.add(Check::pass(
            "mcp.resource",
            format!("The metadata's resource is {advertised}, the MCP URL."),
        ));
    } else if resource.matches(advertised) {
        report.add(Check::pass(
            "mcp.resource",
            format!("The metadata's resource is {advertised}: the MCP URL {resource} up to a trailing slash or the case of the host. Clients accept that, and tokens for either form are accepted by this library."),
        ));
    } else if resource.is_covered_by(advertised) {
        report.add(
            Check::warn("mcp.resource", format!("The metadata's resource {advertised} is a path prefix of the MCP URL {resource}. Clients accept that (the TypeScript SDK checks for a prefix) and then ask for tokens with aud={advertised}, which this library accepts only with audience_prefix()."))
                .hint(format!("Publish resource = {resource} exactly, or configure the server with .audience_prefix() (or .audience(\"{advertised}\"))."))
        );
    } else {
        report.add(
            Check::fail("mcp.resource", format!("The metadata's resource is {advertised}, not the MCP URL {resource}: MCP clients refuse metadata for another resource (RFC 9728 §3.3)."))
                .hint("Configure the server's resource with the public URL clients use. Behind a proxy that is the external https URL, not the internal address."),
        );
    }

    match (doc.authorization_servers.first(), issuer) {
        (None, _) => report.add(
            Check::fail("mcp.authorization_servers", "The metadata names no authorization_servers: clients cannot find where to get a token.")
                .hint("List the issuer URL of your authorization server in authorization_servers (mcp-oauth: OAuthBuilder::authorization_server)."),
        ),
        (Some(first), None) => report.add(Check::pass(
            "mcp.authorization_servers",
            format!("authorization_servers[0] is {first}; that issuer is checked below."),
        )),
        (Some(first), Some(issuer)) if first == issuer => report.add(Check::pass(
            "mcp.authorization_servers",
            format!("authorization_servers[0] is {first}, the issuer, byte for byte."),
        )),
        (Some(first), Some(issuer)) if differ_by_trailing_slash(first, issuer) => report.add(
            Check::fail("mcp.authorization_servers", format!("authorization_servers[0] is \"{first}\" but the issuer is \"{issuer}\": they differ only by a trailing slash. {ISSUER_RULE}"))
                .hint("Use one spelling everywhere, the one in the authorization server's metadata `issuer` and in its tokens' iss: in the server's authorization_servers, in its verifier's issuer, and in --issuer."),
        ),
        (Some(first), Some(issuer)) if doc.authorization_servers.iter().any(|a| a == issuer) => report.add(
            Check::warn("mcp.authorization_servers", format!("The issuer {issuer} is listed in authorization_servers, but not first ({first} is): most clients use the first."))
                .hint("Put the issuer first, or check the one clients will pick."),
        ),
        (Some(first), Some(issuer)) => report.add(
            Check::fail("mcp.authorization_servers", format!("The MCP server sends clients to {first}, not to the issuer {issuer}."))
                .hint("Either --issuer is not the server this MCP server uses (leave it out to check the advertised one), or the server's authorization_servers is wrong."),
        ),
    }
}

/// What the server tells clients to ask for. With neither `scopes_supported` nor a `scope` in
/// the challenge, the TypeScript SDK clients and the MCP Inspector request no scope, which
/// issuers such as oidc-provider refuse (`access_denied`, or a rejected registration).
fn check_scopes(
    report: &mut Report,
    doc: &ProtectedResourceMetadata,
    challenge_scope: Option<&str>,
) {
    let challenge_scope = challenge_scope.filter(|s| !s.trim().is_empty());
    if doc.scopes_supported.iter().any(|s| s == "offline_access") {
        report.add(
            Check::warn("mcp.scopes", format!("scopes_supported lists offline_access ({}).", doc.scopes_supported.join(" ")))
                .hint("MCP servers should not list offline_access: clients that request every advertised scope then ask users to consent to refresh tokens the server has no use for. Refresh is between the client and the authorization server."),
        );
    } else if doc.scopes_supported.is_empty() && challenge_scope.is_none() {
        report.add(
            Check::warn("mcp.scopes", "No scope advertised: the metadata has no scopes_supported and the 401 challenge no scope. The TypeScript SDK clients (v1 and v2) and the MCP Inspector then ask for no scope, and issuers such as oidc-provider answer access_denied or refuse their registration.")
                .hint("Advertise the scopes clients should request: OAuthBuilder::scopes_supported([..]) in code, OIDC_SCOPES for the examples, --scopes for mcp-oauth serve. List resource scopes the authorization server knows, never openid or offline_access."),
        );
    } else if doc.scopes_supported.is_empty() {
        report.add(Check::info(
            "mcp.scopes",
            format!("No scopes_supported; the 401 challenge asks for scope \"{}\", which clients request.", challenge_scope.unwrap_or_default()),
        ));
    } else {
        report.add(Check::info(
            "mcp.scopes",
            format!("scopes_supported: {}.", doc.scopes_supported.join(" ")),
        ));
    }
}
