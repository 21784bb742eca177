//! The verifier behind `verify_jwt(false)`: decodes without checking any signature.

use super::{BoxFuture, TokenVerifier};
use crate::claims::{Claims, check_issuer};
use crate::error::VerifyError;

/// Accepts any well-formed JWT whose `iss` matches, signature unchecked. Development only:
/// [`OAuth`](crate::OAuth) refuses to serve with it off loopback unless forced.
pub(crate) struct UnverifiedJwt {
    pub(crate) issuer: String,
    /// The header `typ` required as in signed mode (`at+jwt` for Clerk and Better Auth), so
    /// switching verification off does not also let session tokens in.
    pub(crate) typ: Option<&'static str>,
}

impl TokenVerifier for UnverifiedJwt {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, VerifyError>> {
        Box::pin(async move {
            let token = crate::jose::dangerous::decode_unverified(token)?;
            if let Some(expected) = self.typ {
                super::jwt::check_typ(token.typ.as_deref(), expected)?;
            }
            check_issuer(&token.claims, &self.issuer)?;
            Ok(token.claims)
        })
    }
}
