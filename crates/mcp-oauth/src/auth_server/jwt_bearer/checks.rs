//! The checks of each kind of assertion, after its issuer was chosen by `iss`: an ID-JAG
//! ([`id_jag`]) or a workload's token ([`workload_token`]). Each ends in what the assertion
//! grants ([`Accepted`]) or a refusal.

use http::StatusCode;
use serde_json::{Map, Value};

use super::config::{Idp, Workload};
use super::{Accepted, not_verified, refused};
use crate::auth_server::http::{TokenError, err};
use crate::auth_server::login::UserIdentity;
use crate::auth_server::protocol::ErrorCode;
use crate::auth_server::server::AuthServer;
use crate::auth_server::store::ClientRecord;
use crate::claims::{Claims, DEFAULT_LEEWAY, check_times, now_unix};
use crate::scope::parse_scope_list;
use crate::verify::TokenVerifier;

/// The JOSE `typ` of an ID-JAG.
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";

/// The longest `jti` kept for replay detection, in bytes.
const MAX_JTI: usize = 256;

/// The JOSE `typ` names `expected`, as a media type: without regard to case, with or
/// without `application/` (RFC 7515 §4.1.9).
fn is_type(typ: Option<&str>, expected: &str) -> bool {
    let typ = typ.unwrap_or_default();
    let typ = match (typ.get(..12), typ.get(12..)) {
        (Some(prefix), Some(rest)) if prefix.eq_ignore_ascii_case("application/") => rest,
        _ => typ,
    };
    typ.eq_ignore_ascii_case(expected)
}

/// `aud` (a string or an array) names one of `ours`; a trailing `/` makes no difference.
fn names_audience(claims: &Claims, ours: &[&str]) -> bool {
    let trim = |s: &str| s.trim_end_matches('/').to_owned();
    let ours: Vec<String> = ours.iter().map(|o| trim(o)).collect();
    claims
        .audiences()
        .is_ok_and(|auds| auds.iter().any(|a| ours.contains(&trim(a))))
}

/// `cnf`: absent, or exactly `{"jkt": "<thumbprint>"}` (RFC 9449 §6.1). Any other
/// confirmation method cannot be honoured here, so it is refused.
fn confirmation(claims: &Claims) -> Result<Option<String>, TokenError> {
    let Some(cnf) = claims.as_map().get("cnf") else {
        return Ok(None);
    };
    match cnf.as_object() {
        Some(members) if members.len() == 1 => match members.get("jkt").and_then(Value::as_str) {
            Some(jkt) if !jkt.is_empty() && jkt.len() <= 128 => Ok(Some(jkt.to_owned())),
            _ => Err(refused("cnf is not a DPoP key thumbprint (jkt)")),
        },
        _ => Err(refused("cnf is not a single DPoP key thumbprint (jkt)")),
    }
}

/// `exp` (required, not past) and the other times, then the replay key of the `jti`.
fn times_and_jti(
    claims: &Claims,
    namespace: &str,
    iss: &str,
    require_jti: bool,
) -> Result<Option<(String, i64)>, TokenError> {
    let now = now_unix();
    check_times(claims, now, DEFAULT_LEEWAY, true)
        .map_err(|e| refused(&format!("the assertion's times: {e}")))?;
    let exp = claims
        .numeric_date("exp")
        .ok()
        .flatten()
        .ok_or_else(|| refused("exp is missing"))?;
    match claims.as_map().get("jti") {
        None if !require_jti => Ok(None),
        Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_JTI => {
            Ok(Some((format!("\u{0}{namespace}\u{0}{iss}\u{0}{jti}"), exp)))
        }
        _ => Err(refused("jti is missing, empty or longer than 256 bytes")),
    }
}

/// An Identity Assertion JWT Authorization Grant from a trusted provider.
pub(super) async fn id_jag(
    server: &AuthServer,
    client: &ClientRecord,
    idp: &Idp,
    typ: Option<&str>,
    assertion: &str,
) -> Result<Accepted, TokenError> {
    if !client.is_confidential() {
        return Err(TokenError {
            status: StatusCode::UNAUTHORIZED,
            ..err(
                ErrorCode::InvalidClient,
                "client authentication failed: an identity assertion is accepted only from a client that authenticates (client_secret_basic, client_secret_post or private_key_jwt)",
            )
        });
    }
    if !is_type(typ, ID_JAG_TYP) {
        return Err(refused("the header typ is not oauth-id-jag+jwt"));
    }
    let claims = idp
        .verifier
        .verify(assertion)
        .await
        .map_err(|e| not_verified(&e))?;
    if !names_audience(&claims, &[server.issuer()]) {
        return Err(refused("aud does not name this server's issuer"));
    }
    let replay = times_and_jti(&claims, "id-jag", idp.verifier.issuer(), true)?;
    if claims.numeric_date("iat").ok().flatten().is_none() {
        return Err(refused("iat is missing"));
    }
    let Some(sub) = claims.sub().filter(|s| !s.is_empty()) else {
        return Err(refused("sub is missing"));
    };
    if claims.str("client_id") != Some(client.client_id.as_str()) {
        return Err(refused(
            "client_id is not the client that authenticated the request",
        ));
    }
    let resource = match claims.as_map().get("resource") {
        None => None,
        Some(Value::String(resource)) => Some(resource.clone()),
        Some(_) => return Err(refused("resource is not a string")),
    };
    let scope = match claims.as_map().get("scope") {
        None => None,
        Some(Value::String(scope)) => Some(parse_scope_list(scope)),
        Some(_) => return Err(refused("scope is not a string")),
    };
    let jkt = confirmation(&claims)?;
    let subject = if idp.plain_subjects {
        sub.to_owned()
    } else {
        format!("{}:{sub}", idp.name)
    };
    let mut user_claims = Map::new();
    for name in ["email", "email_verified", "name", "preferred_username"] {
        if let Some(value) = claims
            .as_map()
            .get(name)
            .filter(|v| v.is_string() || v.is_boolean())
        {
            user_claims.insert(name.to_owned(), value.clone());
        }
    }
    Ok(Accepted {
        user: Some(UserIdentity {
            subject: subject.clone(),
            claims: user_claims,
        }),
        subject,
        scope,
        resource,
        jkt,
        replay,
        cut_scopes: true,
    })
}

/// A workload's identity token.
pub(super) async fn workload_token(
    server: &AuthServer,
    client: &ClientRecord,
    workload: &Workload,
    assertion: &str,
) -> Result<Accepted, TokenError> {
    let claims = workload
        .verifier
        .verify(assertion)
        .await
        .map_err(|e| not_verified(&e))?;
    let mut ours = vec![server.issuer()];
    ours.extend(workload.audiences.iter().map(String::as_str));
    if !names_audience(&claims, &ours) {
        return Err(refused(
            "aud names neither this server's issuer nor a configured audience",
        ));
    }
    let replay = times_and_jti(
        &claims,
        "workload",
        workload.verifier.issuer(),
        workload.require_jti,
    )?;
    let mapped = claims.sub().and_then(|sub| workload.clients.get(sub));
    if mapped != Some(&client.client_id) {
        return Err(refused(
            "the workload's subject is not mapped to this client",
        ));
    }
    Ok(Accepted {
        subject: client.client_id.clone(),
        user: None,
        scope: None,
        resource: None,
        jkt: confirmation(&claims)?,
        replay,
        cut_scopes: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_is_a_media_type() {
        assert!(is_type(Some("oauth-id-jag+jwt"), ID_JAG_TYP));
        assert!(is_type(Some("OAuth-ID-JAG+JWT"), ID_JAG_TYP));
        assert!(is_type(Some("application/oauth-id-jag+jwt"), ID_JAG_TYP));
        assert!(is_type(Some("Application/oauth-id-jag+jwt"), ID_JAG_TYP));
        assert!(!is_type(Some("JWT"), ID_JAG_TYP));
        assert!(!is_type(Some("at+jwt"), ID_JAG_TYP));
        assert!(!is_type(Some("application/"), ID_JAG_TYP));
        assert!(!is_type(Some("é"), ID_JAG_TYP));
        assert!(!is_type(Some("ééééééé/oauth-id-jag+jwt"), ID_JAG_TYP));
        assert!(!is_type(None, ID_JAG_TYP));
    }

    #[test]
    fn cnf_is_a_single_jkt() {
        let claims = |cnf: Value| {
            Claims::new(
                serde_json::json!({ "cnf": cnf })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )
        };
        assert_eq!(
            confirmation(&claims(serde_json::json!({"jkt": "abc"}))).ok(),
            Some(Some("abc".to_owned()))
        );
        assert!(confirmation(&claims(serde_json::json!({"x5t#S256": "abc"}))).is_err());
        assert!(confirmation(&claims(serde_json::json!({"jkt": "abc", "jwk": {}}))).is_err());
        assert!(confirmation(&claims(serde_json::json!("abc"))).is_err());
        assert!(confirmation(&claims(serde_json::json!({"jkt": 1}))).is_err());
        assert_eq!(confirmation(&Claims::new(Map::new())).ok(), Some(None));
    }
}
