//! Client authentication by assertion: `private_key_jwt` (RFC 7523 §2.2 and §3, OpenID
//! Connect Core §9), at the token and revocation endpoints.
//!
//! The client signs a short-lived JWT with its private key; the server checks it against the
//! public keys the client registered (`jwks`):
//!
//! - the signature, by one of those keys, with an asymmetric algorithm (never `none`, never
//!   HMAC: a public key is no shared secret);
//! - `iss` and `sub` are the client id;
//! - `aud` names this server: its issuer, or the URL of its token or revocation endpoint;
//! - `exp` is present and not past, and at most [`MAX_LIFETIME`] ahead (a long-lived
//!   assertion is a password by another name); `nbf` / `iat` not in the future (60 s
//!   leeway);
//! - `jti` is present, and used once: kept in the store until the assertion expires, so a
//!   replay on any instance that shares the store is refused.

use std::time::Duration;

use super::server::AuthServer;
use super::store::{ClientRecord, Kind, StoreError};
use crate::claims::{DEFAULT_LEEWAY, check_times, now_unix};
use crate::jose::Algorithms;
use crate::verify::{JwtVerifier, TokenVerifier};

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub(crate) const JWT_BEARER_ASSERTION: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest an assertion may be valid ahead of now: 5 minutes.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(300);

/// Why an assertion is refused. The text is logged; the client gets `invalid_client`.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The assertion is not valid for this client and server.
    Invalid(String),
    /// The store failed while recording the `jti`.
    Store(StoreError),
}

/// The client id an assertion claims to be from (`sub`, else `iss`), read before anything is
/// verified: it only says whose keys to verify with.
pub(crate) fn claimed_client(assertion: &str) -> Option<String> {
    let claims = crate::jose::dangerous::decode_unverified(assertion)
        .ok()?
        .claims;
    claims
        .str("sub")
        .or_else(|| claims.str("iss"))
        .map(str::to_owned)
}

/// Records an assertion's `jti` (as `key`, which names whose assertion it is) until the
/// assertion expires at `exp`, in the store, so that every instance sharing it sees the use:
/// `false` when it was recorded before (a replay).
pub(crate) async fn spend_jti(
    server: &AuthServer,
    key: &str,
    exp: i64,
) -> Result<bool, StoreError> {
    let now = now_unix();
    server
        .inner
        .store
        .put_if_absent(
            Kind::ClientAssertion,
            key,
            Vec::new(),
            Some(exp.max(now + 1)),
        )
        .await
}

/// Verifies `assertion` as `client`'s.
pub(crate) async fn verify(
    server: &AuthServer,
    client: &ClientRecord,
    assertion: &str,
) -> Result<(), Refused> {
    let invalid = |why: &str| Refused::Invalid(why.to_owned());
    let jwks = client
        .jwks
        .as_ref()
        .ok_or_else(|| invalid("the client has no registered keys"))?;
    let jwks = serde_json::to_string(jwks).map_err(|e| invalid(&e.to_string()))?;
    let verifier = JwtVerifier::builder()
        .issuer(&client.client_id)
        .algorithms(Algorithms::asymmetric().iter())
        .jwks_json(&jwks)
        .build()
        .map_err(|e| invalid(&format!("the client's keys: {e}")))?;
    let claims = verifier
        .verify(assertion)
        .await
        .map_err(|e| invalid(&format!("the assertion does not verify: {e}")))?;
    if claims.str("sub") != Some(client.client_id.as_str()) {
        return Err(invalid("sub is not the client id"));
    }
    let ours = [
        server.inner.config.issuer.clone(),
        server.endpoint("/token"),
        server.endpoint("/revoke"),
    ];
    let audiences = claims
        .audiences()
        .map_err(|e| invalid(&format!("aud: {e}")))?;
    if !audiences.iter().any(|a| ours.iter().any(|o| o == a)) {
        return Err(invalid(
            "aud names neither this server's issuer nor its token or revocation endpoint",
        ));
    }
    let now = now_unix();
    check_times(&claims, now, DEFAULT_LEEWAY, true)
        .map_err(|e| invalid(&format!("the assertion's times: {e}")))?;
    let exp = claims
        .numeric_date("exp")
        .ok()
        .flatten()
        .ok_or_else(|| invalid("exp is missing"))?;
    let longest = i64::try_from((MAX_LIFETIME + DEFAULT_LEEWAY).as_secs()).unwrap_or(i64::MAX);
    if exp > now.saturating_add(longest) {
        return Err(invalid("the assertion is valid for more than 5 minutes"));
    }
    let jti = claims
        .str("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| invalid("jti is missing (or longer than 256 bytes)"))?;
    let key = format!("{}\u{0}{jti}", client.client_id);
    let fresh = spend_jti(server, &key, exp).await.map_err(Refused::Store)?;
    if !fresh {
        return Err(invalid("the assertion was already used (jti replayed)"));
    }
    Ok(())
}
