//! The access token, claim by claim (format, algorithm, `kid`, signature, `iss`, `aud`,
//! `exp` / `nbf` / `iat`, scopes), then through the library's own pipeline.
//!
//! Why one file of this size: each claim has its own check with the message and the hint for
//! each way it can fail (most of the lines are those texts), and the checks share one reading
//! of the token and one set of inputs; the tests at the end pin the messages. A new claim
//! check goes here; a check of something else (the server, the keys) gets a module beside it.
//!
//! The token itself is never printed.

use mcp_oauth::authenticator::{Audience, DEFAULT_MAX_TOKEN_BYTES, TimeRules};
use mcp_oauth::jose::Algorithms;
use mcp_oauth::jose::dangerous::{UnverifiedToken, decode_unverified};
use mcp_oauth::providers::ProviderSpec;
use mcp_oauth::{JwtVerifier, OAuth, ResourceUrl, VerifyError, VerifyErrorKind};

use super::report::{Check, Report};
use super::time::{human_duration, now_unix, rfc3339};
use super::{Context, differ_by_trailing_slash};

/// The library's time rules (its default leeway), asked by the explanation and set on the
/// pipeline run below, so that both always use the same.
fn time_rules() -> TimeRules {
    TimeRules::default()
}

/// Stands in for the resource when no MCP URL was given: it matches no `aud`, so only the
/// `--audience` values can match.
const NO_RESOURCE: &str = "https://mcp-oauth-doctor.invalid";

/// What the earlier checks established.
#[derive(Debug)]
pub(super) struct Inputs<'a> {
    pub(super) issuer: Option<&'a str>,
    pub(super) resource: Option<&'a ResourceUrl>,
    pub(super) audiences: &'a [String],
    pub(super) scopes: &'a [String],
    pub(super) server: &'a super::server::Findings,
    /// The `--provider` preset, whose rules the explanation and the verdict follow.
    pub(super) preset: Option<&'a ProviderSpec>,
}

pub(super) async fn check(ctx: &Context, report: &mut Report, token: &str, inputs: Inputs<'_>) {
    let signature_left = explain(report, token, &inputs);
    // Scopes are the scope policy's business, after authentication: leave them out.
    let explained = Explained {
        ok: !report.failed_where(|id| id.starts_with("token.") && id != "token.scopes"),
        signature_left,
    };
    verdict(ctx, report, token, &inputs, explained).await;
}

/// What the explanation established, to compare with the verdict.
#[derive(Debug, Clone, Copy)]
struct Explained {
    /// No `token.*` check failed (scopes aside).
    ok: bool,
    /// The signature could not be checked here (an HMAC with the preset's secret): the
    /// pipeline's verdict on it is not a disagreement.
    signature_left: bool,
}

/// Every check the pipeline makes, one by one, in words. Returns whether the signature was
/// left to the pipeline.
fn explain(report: &mut Report, token: &str, inputs: &Inputs<'_>) -> bool {
    if token.len() > DEFAULT_MAX_TOKEN_BYTES {
        report.add(
            Check::fail("token.size", format!("The token is {} bytes, more than the {DEFAULT_MAX_TOKEN_BYTES} the library reads.", token.len()))
                .hint("Tokens that large usually carry every group or role of the user: ask the provider for a smaller access token (fewer claims), or raise the limit with OAuthBuilder::max_token_bytes."),
        );
    }
    let Some(parsed) = format(report, token, inputs) else {
        return false;
    };
    looks_like_id_token(report, &parsed);
    algorithm(report, &parsed, inputs);
    key(report, &parsed, inputs);
    typ(report, &parsed, inputs);
    claim_checks(report, &parsed, inputs);
    issuer(report, &parsed, inputs);
    audience(report, &parsed, inputs);
    times(report, &parsed);
    scopes(report, &parsed, inputs);
    preset_hmac(&parsed, inputs)
}

fn format(report: &mut Report, token: &str, inputs: &Inputs<'_>) -> Option<UnverifiedToken> {
    const ID: &str = "token.format";
    if token.chars().any(char::is_whitespace) {
        report.add(
            Check::fail(ID, "The token contains spaces or line breaks: it was cut or wrapped when it was copied.")
                .hint("Copy the token again, on one line."),
        );
        return None;
    }
    let segments = token.split('.').count();
    if segments == 5 {
        report.add(
            Check::fail(ID, "This is an encrypted token (JWE, five segments), not a signed JWT: a resource server cannot read it.")
                .hint("Ask the provider for signed (JWS) access tokens (Auth0 encrypts them only when the API has token encryption on), or verify the tokens by introspection (RFC 7662, IntrospectionVerifier)."),
        );
        return None;
    }
    if segments != 3 {
        let parts = match segments {
            1 => "a single segment with no dots".to_owned(),
            n => format!("{n} dot-separated segments"),
        };
        let resource = inputs
            .resource
            .map_or_else(|| "<MCP URL>".to_owned(), ToString::to_string);
        let introspection = match &inputs.server.introspection_endpoint {
            Some(endpoint) => {
                format!("; this authorization server's introspection endpoint is {endpoint}")
            }
            None => String::new(),
        };
        report.add(
            Check::fail(ID, format!("This is an opaque token, not a JWT: it has {parts}, where a JWT has three segments separated by dots (header.payload.signature). Only the authorization server knows what it means, so it cannot be checked against a key set."))
                .hint(format!("Many providers, Auth0 included, issue a JWT access token only when the authorization request names an audience: MCP clients send resource={resource} (RFC 8707); Auth0 needs an API whose identifier is that URL (or a default audience in the tenant settings), otherwise its token is only good for /userinfo. Either get a JWT that way, or verify opaque tokens by introspection (RFC 7662, IntrospectionVerifier{introspection}).")),
        );
        return None;
    }
    match decode_unverified(token) {
        Ok(parsed) => {
            let kid = parsed
                .kid
                .as_deref()
                .map(|k| format!(", kid \"{k}\""))
                .unwrap_or_default();
            let subject = parsed
                .claims
                .sub()
                .map(|s| format!(" for subject \"{s}\""))
                .unwrap_or_default();
            let client = parsed
                .claims
                .client_id()
                .map(|c| format!(", client \"{c}\""))
                .unwrap_or_default();
            report.add(Check::pass(
                ID,
                format!("A JWT signed with {}{kid}{subject}{client}.", parsed.alg),
            ));
            Some(parsed)
        }
        Err(err) => {
            let hint = match &err {
                VerifyError::UnsupportedAlgorithm { alg } if alg == "none" => {
                    "alg none means an unsigned token: anyone could have written it, and it is never accepted. Get a signed access token from the authorization server."
                }
                VerifyError::UnsupportedAlgorithm { .. } => {
                    "The library verifies RS256/384/512, PS256/384/512, ES256/384 and EdDSA (HS256 with a configured secret). Configure the provider to sign access tokens with one of them."
                }
                _ => {
                    "The library refuses it the same way (401 invalid_token). Check that the whole token was copied, and that it is an access token."
                }
            };
            report.add(
                Check::fail(
                    ID,
                    format!("The token has three segments but is not a valid JWT: {err}."),
                )
                .hint(hint),
            );
            None
        }
    }
}

/// ID tokens sent as access tokens fail the audience check; say so before that check does.
fn looks_like_id_token(report: &mut Report, parsed: &UnverifiedToken) {
    let marker = ["nonce", "at_hash", "c_hash"]
        .into_iter()
        .find(|claim| parsed.claims.contains_key(*claim));
    if let Some(claim) = marker {
        report.add(
            Check::warn("token.kind", format!("This looks like an OpenID Connect ID token (it has {claim}), not an access token."))
                .hint("Send the access_token of the token response, not the id_token: an ID token is for the client, its aud is the client id, and a resource server must not accept it."),
        );
    }
}

/// Whether the preset verifies this HMAC-signed token with its shared secret.
fn preset_hmac(parsed: &UnverifiedToken, inputs: &Inputs<'_>) -> bool {
    Algorithms::hmac().contains(parsed.alg)
        && inputs.preset.is_some_and(|spec| spec.hmac_secret.is_some())
}

fn algorithm(report: &mut Report, parsed: &UnverifiedToken, inputs: &Inputs<'_>) {
    const ID: &str = "token.alg";
    let alg = parsed.alg;
    if preset_hmac(parsed, inputs) {
        report.add(Check::pass(
            ID,
            format!("{alg}: a shared-secret signature, which the preset checks with its configured JWT secret."),
        ));
        return;
    }
    if let Some(spec) = inputs.preset
        && !Algorithms::hmac().contains(alg)
    {
        let accepted: Vec<String> = spec.algorithms.iter().map(|a| a.to_string()).collect();
        if spec.algorithms.contains(alg) {
            report.add(Check::pass(
                ID,
                format!("{alg} is an algorithm the {} preset accepts.", spec.name),
            ));
        } else {
            report.add(
                Check::fail(ID, format!("{alg} is not an algorithm the {} preset accepts ({}).", spec.name, accepted.join(", ")))
                    .hint("The token was not issued the way this provider issues access tokens: check that it comes from this provider, and that --provider names the right one."),
            );
        }
        return;
    }
    if Algorithms::default().contains(alg) {
        report.add(Check::pass(ID, format!("{alg} is an accepted algorithm.")));
    } else {
        report.add(
            Check::fail(ID, format!("{alg} is an HMAC algorithm: the token is signed with a shared secret, which no public key set can verify."))
                .hint("If the provider signs access tokens with a secret (Supabase's legacy JWT secret, some self-hosted servers), configure the verifier with JwtVerifier::builder().hmac_secret(..); this command cannot check such a signature. Prefer asymmetric keys published in a JWKS."),
        );
    }
}

fn key(report: &mut Report, parsed: &UnverifiedToken, inputs: &Inputs<'_>) {
    if preset_hmac(parsed, inputs) {
        let why = "Not checked here: the signature is an HMAC with the preset's JWT secret, which only the pipeline below holds.";
        report.add(Check::info("token.kid", why));
        report.add(Check::info("token.signature", why));
        return;
    }
    let Some(keys) = &inputs.server.keys else {
        let why = "Not checked: no key set was fetched (see above).";
        report.add(Check::info("token.kid", why));
        report.add(Check::info("token.signature", why));
        return;
    };
    let alg = parsed.alg;
    let kid = parsed.kid.as_deref();
    let found = keys.find(kid, alg);
    match (&found, kid) {
        (Ok(_), Some(kid)) if keys.contains_kid(kid) => report.add(Check::pass(
            "token.kid",
            format!("kid \"{kid}\" is in the key set."),
        )),
        (Ok(_), Some(kid)) => report.add(Check::pass(
            "token.kid",
            format!("kid \"{kid}\" is not in the key set, but its only key for {alg} has no kid and is used."),
        )),
        (Ok(_), None) => report.add(Check::pass(
            "token.kid",
            format!("No kid in the header; the key set has exactly one key for {alg}, which is used."),
        )),
        (Err(err), Some(kid)) if err.kind() == VerifyErrorKind::UnsupportedAlgorithm => report.add(
            Check::fail("token.kid", format!("kid \"{kid}\" names a key that cannot verify {alg}: a key is only used with algorithms of its own type (this refuses algorithm-confusion attacks)."))
                .hint("The token header and the key disagree; the token was not made with this key. Check which issuer signed it."),
        ),
        (Err(_), Some(kid)) => {
            let known = if inputs.server.kids.is_empty() {
                "no key has a kid".to_owned()
            } else {
                format!("it has {}", inputs.server.kids.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", "))
            };
            report.add(
                Check::fail("token.kid", format!("kid \"{kid}\" is not in the key set ({known})."))
                    .hint("The token was signed with a key this issuer does not publish: a token from another tenant, environment or issuer (compare iss below), or from a key rotated out. A key that was just added is picked up: the library refetches the key set for an unknown kid (at most once every 30 s)."),
            );
        }
        (Err(_), None) if keys.algorithms().contains(alg) => report.add(
            Check::fail("token.kid", format!("No kid in the header, and the key set has several keys for {alg}: the library does not guess which one."))
                .hint("Configure the provider to put kid in the token header, or publish a single signing key."),
        ),
        (Err(_), None) => report.add(
            Check::fail("token.kid", format!("The key set has no key for {alg}."))
                .hint("The token was signed with a key of another type than the issuer publishes: check that it comes from this issuer."),
        ),
    }
    match found {
        Err(_) => report.add(Check::info(
            "token.signature",
            "Not checked: no key to check it with (see kid above).",
        )),
        Ok(_) => match parsed.verify_with(keys) {
            Ok(()) => report.add(Check::pass(
                "token.signature",
                "The signature verifies with that key.",
            )),
            Err(err) => report.add(
                Check::fail("token.signature", format!("The signature does not verify ({err}): the token was changed or cut, or signed by another key that has the same kid."))
                    .hint("Copy the whole token again; check that it was issued by this issuer."),
            ),
        },
    }
}

fn typ(report: &mut Report, parsed: &UnverifiedToken, inputs: &Inputs<'_>) {
    if let Some(spec) = inputs.preset.filter(|spec| spec.require_at_jwt) {
        let typ = parsed.typ.as_deref().unwrap_or_default();
        let bare = typ.strip_prefix("application/").unwrap_or(typ);
        if bare.eq_ignore_ascii_case("at+jwt") {
            report.add(Check::pass(
                "token.typ",
                format!(
                    "typ is {typ}: an RFC 9068 access token, as the {} preset requires.",
                    spec.name
                ),
            ));
        } else {
            let shown = if typ.is_empty() {
                "missing".to_owned()
            } else {
                format!("\"{typ}\"")
            };
            let session = if parsed.claims.contains_key("sid") {
                " It carries sid: this looks like a session token of the provider's own sign-in, signed with the same key as its OAuth access tokens."
            } else {
                ""
            };
            report.add(
                Check::fail("token.typ", format!("typ is {shown}, and the {} preset requires at+jwt (RFC 9068), so that session tokens signed with the same key do not pass for access tokens.{session}", spec.name))
                    .hint(format!("Send an OAuth access token: the one an MCP client gets from the {} OAuth flow (its authorize and token endpoints), not a session token from the provider's front-end SDK.", spec.name)),
            );
        }
        return;
    }
    let message = match parsed.typ.as_deref() {
        Some(t)
            if t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt") =>
        {
            format!("typ is {t}: an RFC 9068 access token.")
        }
        Some(t) => format!(
            "typ is {t}: accepted; the library requires at+jwt only with require_at_jwt_typ()."
        ),
        None => {
            "No typ header: accepted; the library requires at+jwt only with require_at_jwt_typ()."
                .to_owned()
        }
    };
    report.add(Check::info("token.typ", message));
}

/// The preset's claims that must have one value when present (Keycloak's `typ: Bearer`).
fn claim_checks(report: &mut Report, parsed: &UnverifiedToken, inputs: &Inputs<'_>) {
    const ID: &str = "token.claims";
    let Some(spec) = inputs.preset.filter(|spec| !spec.claim_checks.is_empty()) else {
        return;
    };
    let mut wrong = Vec::new();
    for check in &spec.claim_checks {
        match parsed.claims.get(check.name) {
            Some(value) if value.as_str() != Some(check.value) => {
                wrong.push(format!(
                    "{} is {value}, where the {} preset accepts only \"{}\"",
                    check.name, spec.name, check.value
                ));
            }
            _ => {}
        }
    }
    if wrong.is_empty() {
        let names: Vec<String> = spec
            .claim_checks
            .iter()
            .map(|c| format!("{} (\"{}\" when present)", c.name, c.value))
            .collect();
        report.add(Check::pass(
            ID,
            format!(
                "The {} preset's claim checks pass: {}.",
                spec.name,
                names.join(", ")
            ),
        ));
    } else {
        report.add(
            Check::fail(
                ID,
                format!(
                    "{}: this is not an access token (a refresh or ID token, for instance).",
                    wrong.join("; ")
                ),
            )
            .hint("Send the access_token of the token response."),
        );
    }
}

fn issuer(report: &mut Report, parsed: &UnverifiedToken, inputs: &Inputs<'_>) {
    const ID: &str = "token.iss";
    match (inputs.issuer, parsed.claims.iss()) {
        (_, None) => report.add(
            Check::fail(ID, "The token has no iss (issuer) claim; the library requires it.")
                .hint("Get an access token from the authorization server itself (JWT access tokens carry iss, RFC 9068 §2.2)."),
        ),
        (None, Some(iss)) => report.add(Check::info(
            ID,
            format!("iss is {iss}; there is no issuer to compare it with."),
        )),
        (Some(expected), Some(iss)) if iss == expected => report.add(Check::pass(
            ID,
            format!("iss is {iss}, the issuer, byte for byte."),
        )),
        (Some(expected), Some(iss)) if differ_by_trailing_slash(iss, expected) => report.add(
            Check::fail(ID, format!("iss is \"{iss}\" but the issuer is \"{expected}\": they differ only by a trailing slash, and the library compares issuers byte for byte."))
                .hint(format!("Configure the issuer exactly as the tokens carry it, \"{iss}\" (Auth0 issuers end with a slash), and rerun with --issuer {iss}.")),
        ),
        (Some(expected), Some(iss)) => report.add(
            Check::fail(ID, format!("iss is {iss}, not the issuer {expected}: the token comes from another authorization server (another tenant, realm or environment)."))
                .hint(format!("Get a token from {expected}, or, if {iss} is the right authorization server, configure the MCP server (and --issuer) with it.")),
        ),
    }
}

fn audience(report: &mut Report, parsed: &UnverifiedToken, inputs: &Inputs<'_>) {
    const ID: &str = "token.aud";
    let audiences = match parsed.claims.audiences() {
        Ok(audiences) => audiences,
        Err(_) => {
            report.add(
                Check::fail(ID, "aud is neither a string nor an array of strings.")
                    .hint("The authorization server issues malformed tokens; aud must be a string or an array of strings (RFC 7519 §4.1.3)."),
            );
            return;
        }
    };
    let listed = audiences
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(spec) = inputs
        .preset
        .filter(|spec| !matches!(spec.audience, Audience::Resource { .. }))
    {
        report.add(Check::warn(
            ID,
            format!("aud is {}; not checked: the {} preset turns the audience check off, so tokens any service of this issuer received are accepted.", if listed.is_empty() { "missing".to_owned() } else { listed.clone() }, spec.name),
        ));
        return;
    }
    let extra = accepted_extras(inputs);
    let extra_words = extras_words(inputs);
    if audiences.is_empty() {
        let target = inputs
            .resource
            .map_or_else(|| "<MCP URL>".to_owned(), ToString::to_string);
        report.add(
            Check::fail(ID, "The token has no aud (audience) claim: it does not say which service it is for, and the library requires one (RFC 8707 audience binding).")
                .hint(format!("Clients send resource={target} in the authorization and token requests; the authorization server must put it in aud. Auth0 needs an API whose identifier is that URL.")),
        );
        return;
    }
    let Some((resource, rule, _)) = audience_rule(inputs) else {
        report.add(
            Check::fail(
                ID,
                "internal error: the placeholder resource does not parse",
            )
            .hint("This is a bug in mcp-oauth doctor; please report it."),
        );
        return;
    };
    // Whether the token passes is the library's rule; the words say which part of it.
    let accepted = audiences.iter().find(|a| rule.accepts(a, &resource));
    let Some(resource) = inputs.resource else {
        // Nothing to compare with: the rule is "no check", which accepts any aud; say so
        // instead of reporting a match.
        if extra.is_empty() {
            report.add(Check::info(
                ID,
                format!("aud is {listed}; not compared: give --mcp-url (the resource the token is for) or --audience."),
            ));
            return;
        }
        match accepted {
            Some(aud) => report.add(Check::pass(
                ID,
                format!("aud \"{aud}\" is one of {extra_words}."),
            )),
            None => report.add(
                Check::fail(ID, format!("Audience mismatch: aud is {listed}, none of {extra_words} ({}).", extra.join(", ")))
                    .hint("Get a token for this service (the resource or audience parameter of the authorization request), or accept its aud as an extra audience."),
            ),
        }
        return;
    };
    if let Some(aud) = accepted {
        if audiences.contains(&resource.as_str()) {
            report.add(Check::pass(
                ID,
                format!("aud names the MCP URL {resource}."),
            ));
        } else if resource.matches(aud) {
            let how = if differ_by_trailing_slash(aud, resource.as_str()) {
                "it differs only by a trailing slash"
            } else {
                "it differs only in the case of the scheme or host, or in spelling the default port"
            };
            report.add(Check::pass(
                ID,
                format!("aud \"{aud}\" names the MCP URL {resource}: {how}, which the library tolerates (clients differ in how they write resource)."),
            ));
        } else {
            let server = if inputs.audiences.iter().any(|a| a == aud) {
                format!(
                    "; the server must accept it too (.audience(\"{aud}\"), or --audience / OIDC_AUDIENCE for mcp-oauth serve)"
                )
            } else {
                String::new()
            };
            report.add(Check::pass(
                ID,
                format!("aud \"{aud}\" is one of {extra_words}{server}."),
            ));
        }
    } else if let Some(aud) = audiences
        .iter()
        .find(|a| resource.is_covered_by(a))
        .filter(|_| !matches!(rule, Audience::Resource { prefix: true, .. }))
    {
        report.add(
            Check::fail(ID, format!("aud \"{aud}\" is a path prefix of the MCP URL {resource}; the library accepts that only with audience_prefix()."))
                .hint(format!("Configure the server with .audience_prefix() (or .audience(\"{aud}\") and rerun with --audience {aud}), or have clients send resource={resource}.")),
        );
    } else {
        let first = audiences.first().copied().unwrap_or_default();
        report.add(
            Check::fail(ID, format!("Audience mismatch: the token is for {listed}, not for this MCP server ({resource})."))
                .hint(format!("MCP clients send resource={resource} (RFC 8707) in the authorization and token requests, and the authorization server must put it in aud. If the provider puts something else there (Auth0 an API identifier, Keycloak a client id, Entra ID an application ID URI), accept that value as an extra audience: configure the server with .audience(\"{first}\") (mcp-oauth serve: --audience or OIDC_AUDIENCE) and rerun with --audience {first}. With Auth0, the simplest is an API whose identifier is exactly {resource}.")),
        );
    }
}

/// The audiences accepted besides the resource: the `--provider` preset's, then `--audience`.
fn accepted_extras(inputs: &Inputs<'_>) -> Vec<String> {
    let mut extra = match inputs.preset.map(|spec| &spec.audience) {
        Some(Audience::Resource { extra, .. }) => extra.clone(),
        _ => Vec::new(),
    };
    extra.extend(inputs.audiences.iter().cloned());
    extra
}

/// Where the extra audiences come from, in words.
fn extras_words(inputs: &Inputs<'_>) -> String {
    match inputs.preset {
        Some(spec) => format!(
            "the audiences the {} preset and --audience accept",
            spec.name
        ),
        None => "the --audience values".to_owned(),
    }
}

/// The audience rule a server configured like the inputs applies: the `--provider` preset's
/// rule (bound to the MCP URL, its extra audiences, or off), plus the `--audience` values;
/// without an MCP URL, the extra audiences only (a placeholder resource that matches no
/// `aud`), or no check when there are none. Also says which, in words. `None` only if the
/// placeholder does not parse (a bug).
fn audience_rule(inputs: &Inputs<'_>) -> Option<(ResourceUrl, Audience, String)> {
    let extra = accepted_extras(inputs);
    let (prefix, off) = match inputs.preset.map(|spec| &spec.audience) {
        Some(Audience::Resource { prefix, .. }) => (*prefix, false),
        Some(_) => (false, true),
        None => (false, false),
    };
    let placeholder = || ResourceUrl::parse(NO_RESOURCE).ok();
    if off {
        let resource = inputs.resource.cloned().or_else(placeholder)?;
        return Some((
            resource,
            Audience::Disabled,
            "audience not checked (the preset turns it off)".to_owned(),
        ));
    }
    Some(match inputs.resource {
        Some(resource) => {
            let words = if extra.is_empty() {
                format!("audience bound to {resource}")
            } else {
                format!(
                    "audience bound to {resource} or {}",
                    super::preset::quoted(&extra)
                )
            };
            (
                resource.clone(),
                Audience::Resource { extra, prefix },
                words,
            )
        }
        None => {
            let placeholder = placeholder()?;
            if extra.is_empty() {
                (
                    placeholder,
                    Audience::Disabled,
                    "audience not checked (no --mcp-url)".to_owned(),
                )
            } else {
                let words = format!("audience: {}", super::preset::quoted(&extra));
                (
                    placeholder,
                    Audience::Resource {
                        extra,
                        prefix: false,
                    },
                    words,
                )
            }
        }
    })
}

fn times(report: &mut Report, parsed: &UnverifiedToken) {
    let now = now_unix();
    let claims = &parsed.claims;
    let rules = time_rules();
    let leeway = rules.leeway().as_secs();
    let clock_hint = format!(
        "If a fresh token is refused, compare this machine's clock with the authorization server's; the library allows {leeway} s of skew."
    );
    match claims.numeric_date("exp") {
        Err(_) => report.add(
            Check::fail("token.exp", "exp is not a number of seconds.")
                .hint("The authorization server issues malformed tokens (RFC 7519 §4.1.4)."),
        ),
        Ok(None) => report.add(
            Check::fail("token.exp", "The token has no exp: the library refuses tokens that never expire.")
                .hint("Configure the authorization server to issue access tokens with a lifetime."),
        ),
        Ok(Some(exp)) if rules.is_expired(exp, now) => report.add(
            Check::fail("token.exp", format!("The token expired {} ago ({}).", ago(now, exp), rfc3339(exp)))
                .hint(format!("Get a new token (clients use their refresh token, or sign in again). {clock_hint}")),
        ),
        Ok(Some(exp)) if now >= exp => report.add(Check::warn(
            "token.exp",
            format!("The token expired {} ago ({}), within the {leeway} s allowed for clock skew: it is accepted for a few more seconds.", ago(now, exp), rfc3339(exp)),
        )),
        Ok(Some(exp)) => report.add(Check::pass(
            "token.exp",
            format!("The token expires in {} ({}).", ago(exp, now), rfc3339(exp)),
        )),
    }
    for (name, id) in [("nbf", "token.nbf"), ("iat", "token.iat")] {
        match claims.numeric_date(name) {
            Err(_) => report.add(
                Check::fail(id, format!("{name} is not a number of seconds."))
                    .hint("The authorization server issues malformed tokens (RFC 7519 §4.1)."),
            ),
            Ok(None) => {}
            Ok(Some(at)) if rules.is_in_future(at, now) => report.add(
                Check::fail(
                    id,
                    format!(
                        "{name} is {} in the future ({}): the token is not valid yet.",
                        ago(at, now),
                        rfc3339(at)
                    ),
                )
                .hint(clock_hint.clone()),
            ),
            Ok(Some(at)) if name == "nbf" => report.add(Check::pass(
                id,
                format!("Valid since {} ({}).", rfc3339(at), ago_words(now, at)),
            )),
            Ok(Some(at)) => report.add(Check::pass(
                id,
                format!("Issued at {} ({}).", rfc3339(at), ago_words(now, at)),
            )),
        }
    }
}

/// `later - earlier` in words.
fn ago(later: i64, earlier: i64) -> String {
    human_duration(later.saturating_sub(earlier).unsigned_abs())
}

fn ago_words(now: i64, at: i64) -> String {
    if at > now {
        format!("{} from now, within the skew allowance", ago(at, now))
    } else {
        format!("{} ago", ago(now, at))
    }
}

fn scopes(report: &mut Report, parsed: &UnverifiedToken, inputs: &Inputs<'_>) {
    const ID: &str = "token.scopes";
    let granted = parsed.claims.scopes();
    let permissions = parsed.claims.string_list("permissions");
    let listed = if granted.is_empty() {
        "no scope (neither scope nor scp)".to_owned()
    } else {
        granted.join(" ")
    };
    let needed: Vec<&str> = inputs
        .scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .collect();
    if needed.is_empty() {
        report.add(Check::info(ID, format!("The token grants {listed}.")));
        return;
    }
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|n| !granted.iter().any(|g| g == n) && !permissions.iter().any(|p| p == n))
        .collect();
    if missing.is_empty() {
        report.add(Check::pass(
            ID,
            format!(
                "The token grants every needed scope ({}); it grants {listed}.",
                needed.join(" ")
            ),
        ));
    } else {
        report.add(
            Check::fail(ID, format!("Missing scope: {}. The token grants {listed}.", missing.join(" ")))
                .hint(format!("The server answers 403 insufficient_scope with scope=\"{}\", and MCP clients then ask the user to consent to it (step-up). Check that the client may request it at the authorization server (Auth0: the API's permissions; Entra ID: the exposed API scopes).", needed.join(" "))),
        );
    }
}

/// The pipeline a server built with the `--provider` preset runs, as
/// `OAuthBuilder::provider` builds it, plus the `--audience` values; and what it is, in words.
fn preset_pipeline(ctx: &Context, spec: &ProviderSpec) -> (mcp_oauth::OAuthBuilder, String) {
    let builder = OAuth::builder()
        .provider(spec.clone())
        .http_client(ctx.client.clone());
    let keys = spec
        .jwks_url
        .as_deref()
        .unwrap_or("the keys the issuer's metadata names");
    (
        builder,
        format!("the {} preset: keys from {keys}", spec.name),
    )
}

/// Runs the token through the library's pipeline: the `--provider` preset's, or a
/// `JwtVerifier` on the issuer's `jwks_uri`; audience bound to the MCP URL (plus the preset's
/// and `--audience` values), times with the same leeway.
async fn verdict(
    ctx: &Context,
    report: &mut Report,
    token: &str,
    inputs: &Inputs<'_>,
    explained: Explained,
) {
    const ID: &str = "token.verdict";
    let Some((resource, rule, bound)) = audience_rule(inputs) else {
        report.add(
            Check::fail(
                ID,
                "internal error: the placeholder resource does not parse",
            )
            .hint("This is a bug in mcp-oauth doctor; please report it."),
        );
        return;
    };
    let (mut builder, what) = match inputs.preset {
        Some(spec) => preset_pipeline(ctx, spec),
        None => match generic_pipeline(ctx, report, inputs) {
            Some(pipeline) => pipeline,
            None => return,
        },
    };
    // The pipeline as a server configured with this rule builds it (a preset's own rule is
    // folded in by the builder; only --audience is added here).
    builder = builder.leeway(time_rules().leeway()).token_cache(None);
    builder = match rule {
        Audience::Resource { .. } => inputs
            .audiences
            .iter()
            .fold(builder, |builder, aud| builder.audience(aud)),
        _ => builder.insecure_disable_audience_check(),
    };
    let authenticator = match builder.build_authenticator() {
        Ok(authenticator) => authenticator,
        Err(err) => {
            report.add(
                Check::fail(ID, format!("The library's pipeline cannot be configured: {err}."))
                    .hint("A server configured the same way fails to start the same way; fix the value named."),
            );
            return;
        }
    };
    run_pipeline(
        report,
        &authenticator,
        token,
        &resource,
        &format!("{what}, {bound}"),
        explained,
    )
    .await;
}

/// The generic pipeline: a `JwtVerifier` for the issuer and its `jwks_uri`.
fn generic_pipeline(
    ctx: &Context,
    report: &mut Report,
    inputs: &Inputs<'_>,
) -> Option<(mcp_oauth::OAuthBuilder, String)> {
    const ID: &str = "token.verdict";
    let (Some(issuer), Some(jwks_uri)) = (inputs.issuer, &inputs.server.jwks_uri) else {
        report.add(Check::info(
            ID,
            "The library's pipeline was not run: it needs the issuer and its jwks_uri.",
        ));
        return None;
    };
    let verifier = JwtVerifier::builder()
        .issuer(issuer)
        .jwks_url(jwks_uri.as_str())
        .http_client(ctx.client.clone())
        .build();
    let verifier = match verifier {
        Ok(verifier) => verifier,
        Err(err) => {
            report.add(
                Check::fail(
                    ID,
                    format!("The library's verifier cannot be configured for this issuer: {err}."),
                )
                .hint("A server configured with this issuer and jwks_uri fails to start the same way; fix the value named."),
            );
            return None;
        }
    };
    Some((
        OAuth::builder().verifier(verifier),
        "JwtVerifier with the issuer's jwks_uri".to_owned(),
    ))
}

/// Authenticates the token and reports the verdict, and any disagreement with the
/// explanation.
async fn run_pipeline(
    report: &mut Report,
    authenticator: &mcp_oauth::authenticator::Authenticator,
    token: &str,
    resource: &ResourceUrl,
    what: &str,
    explained: Explained,
) {
    const ID: &str = "token.verdict";
    match authenticator.authenticate(token, resource).await {
        Ok(auth) => {
            report.add(Check::pass(
                ID,
                format!(
                    "The library accepts this token ({what}): subject \"{}\".",
                    auth.subject()
                ),
            ));
            if !explained.ok {
                report.add(
                    Check::warn("token.consistency", "The library accepts the token although a check above failed.")
                        .hint("This is a bug in mcp-oauth doctor; please report it with the output of --json (it contains no token)."),
                );
            }
        }
        Err(err) => {
            let (status, hint) = if err.kind() == VerifyErrorKind::Unavailable {
                (
                    "503",
                    "The keys could not be fetched when the library tried (see the key set checks): the token may be fine, and clients keep it and retry.",
                )
            } else {
                ("401", "The checks above say why in words, and what to do.")
            };
            report.add(
                Check::fail(
                    ID,
                    format!("The library refuses this token: {err}. A client gets {status} with error_description \"{}\".", err.public_description()),
                )
                .hint(hint),
            );
            if explained.signature_left && err.kind() == VerifyErrorKind::InvalidSignature {
                report.add(
                    Check::fail("token.signature", "The HMAC signature does not verify with the preset's JWT secret: the token was signed with another secret, or changed.")
                        .hint("Check that the JWT secret is the project's current one (Supabase: Project Settings → API → JWT Settings), and that the token comes from this project."),
                );
            } else if explained.ok {
                report.add(
                    Check::fail("token.consistency", "The library refuses the token although every check above passed.")
                        .hint("This is a bug in mcp-oauth doctor; please report it with the output of --json (it contains no token)."),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_oauth::jose::KeySet;
    use mcp_oauth::testing::TestKey;

    fn findings() -> super::super::server::Findings {
        super::super::server::Findings::default()
    }

    fn statuses(report: &Report) -> serde_json::Value {
        let mut report_json =
            serde_json::from_str::<serde_json::Value>(&report.to_json().expect("json"))
                .expect("json");
        report_json["checks"].take()
    }

    fn status_of(checks: &serde_json::Value, id: &str) -> Option<String> {
        checks
            .as_array()
            .expect("array")
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["status"].as_str().expect("status").to_owned())
    }

    #[test]
    fn an_opaque_token_is_named_and_explained() {
        let server = findings();
        let inputs = Inputs {
            issuer: Some("https://auth.example.com"),
            resource: None,
            audiences: &[],
            scopes: &[],
            server: &server,
            preset: None,
        };
        let mut report = Report::default();
        explain(&mut report, "abc123", &inputs);
        let checks = statuses(&report);
        assert_eq!(status_of(&checks, "token.format").as_deref(), Some("fail"));
        let message = checks[0]["message"].as_str().expect("message");
        assert!(message.contains("opaque token"), "{message}");
        let hint = checks[0]["hint"].as_str().expect("hint");
        assert!(
            hint.contains("audience") && hint.contains("introspection"),
            "{hint}"
        );
    }

    /// Without --mcp-url and --audience there is nothing to compare aud with: shown as
    /// information, never as a match.
    #[test]
    fn without_a_resource_or_audience_aud_is_shown_not_checked() {
        let token = TestKey::es256()
            .token()
            .iss("https://auth.example.com")
            .aud("http://127.0.0.1:8080/mcp")
            .sign();
        let server = findings();
        let inputs = Inputs {
            issuer: Some("https://auth.example.com"),
            resource: None,
            audiences: &[],
            scopes: &[],
            server: &server,
            preset: None,
        };
        let mut report = Report::default();
        explain(&mut report, &token, &inputs);
        let checks = statuses(&report);
        assert_eq!(
            status_of(&checks, "token.aud").as_deref(),
            Some("info"),
            "{checks:#}"
        );
        let text = report.to_text(false);
        assert!(text.contains("not compared"), "{text}");
        assert!(!text.contains("is one of"), "{text}");
    }

    #[test]
    fn claims_are_explained_without_keys() {
        let key = TestKey::es256();
        let token = key
            .token()
            .iss("https://auth.example.com/")
            .aud("https://mcp.example.com/mcp/")
            .scope("mcp:read")
            .claim("nonce", "n")
            .exp_in(-600)
            .sign();
        let server = findings();
        let resource = ResourceUrl::parse("https://mcp.example.com/mcp").expect("resource");
        let scopes = ["mcp:read mcp:write".to_owned()];
        let inputs = Inputs {
            issuer: Some("https://auth.example.com"),
            resource: Some(&resource),
            audiences: &[],
            scopes: &scopes,
            server: &server,
            preset: None,
        };
        let mut report = Report::default();
        explain(&mut report, &token, &inputs);
        let checks = statuses(&report);
        let expect = [
            ("token.format", "pass"),
            ("token.kind", "warn"),
            ("token.alg", "pass"),
            ("token.kid", "info"),
            ("token.signature", "info"),
            ("token.iss", "fail"),
            ("token.aud", "pass"),
            ("token.exp", "fail"),
            ("token.scopes", "fail"),
        ];
        for (id, status) in expect {
            assert_eq!(
                status_of(&checks, id).as_deref(),
                Some(status),
                "{id}: {checks:#}"
            );
        }
        let text = report.to_text(false);
        assert!(text.contains("trailing slash"), "{text}");
        assert!(text.contains("expired 10 min ago"), "{text}");
        assert!(text.contains("Missing scope: mcp:write"), "{text}");
        assert!(!report.ok());
    }

    #[test]
    fn hmac_tokens_are_explained() {
        let key = TestKey::hs256(&[7u8; 32]);
        let token = key.token().iss("https://a.example").sign();
        let keys = KeySet::default();
        let server = super::super::server::Findings {
            keys: Some(keys),
            ..findings()
        };
        let inputs = Inputs {
            issuer: Some("https://a.example"),
            resource: None,
            audiences: &[],
            scopes: &[],
            server: &server,
            preset: None,
        };
        let mut report = Report::default();
        explain(&mut report, &token, &inputs);
        let checks = statuses(&report);
        assert_eq!(status_of(&checks, "token.alg").as_deref(), Some("fail"));
        assert_eq!(status_of(&checks, "token.kid").as_deref(), Some("fail"));
        assert_eq!(
            status_of(&checks, "token.signature").as_deref(),
            Some("info")
        );
    }
}
