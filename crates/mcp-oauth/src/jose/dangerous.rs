//! Reading a token without verifying it, for diagnostics (`mcp-oauth doctor`) only.
//!
//! Nothing here checks a signature. Never make an access decision on what it returns.

use super::jws::UnverifiedJws;
use super::{Algorithm, KeySet};
use crate::claims::Claims;
use crate::error::VerifyError;

/// A compact JWS taken apart, signature not checked.
#[derive(Debug, Clone)]
pub struct UnverifiedToken {
    /// The algorithm named in the header.
    pub alg: Algorithm,
    /// The `kid` header.
    pub kid: Option<String>,
    /// The `typ` header.
    pub typ: Option<String>,
    /// The claims (the payload, parsed strictly).
    pub claims: Claims,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

impl UnverifiedToken {
    /// Whether a key of `keys` matching the header verifies the signature.
    ///
    /// # Errors
    ///
    /// No key matches the `kid` and algorithm, or the signature does not verify.
    pub fn verify_with(&self, keys: &KeySet) -> Result<(), VerifyError> {
        let key = keys.find(self.kid.as_deref(), self.alg)?;
        if key.verify(self.alg, &self.signing_input, &self.signature) {
            Ok(())
        } else {
            Err(VerifyError::InvalidSignature)
        }
    }
}

/// Splits, decodes and parses `token` with the same strict rules as verification, without
/// checking the signature.
///
/// # Errors
///
/// The token is not a well-formed compact JWS with a known algorithm and JSON claims.
pub fn decode_unverified(token: &str) -> Result<UnverifiedToken, VerifyError> {
    let jws = UnverifiedJws::parse(token)?;
    let claims = jws.claims()?;
    Ok(UnverifiedToken {
        alg: jws.alg,
        kid: jws.header.kid.clone(),
        typ: jws.header.typ.clone(),
        claims,
        signing_input: jws.signing_input.to_vec(),
        signature: jws.signature,
    })
}
