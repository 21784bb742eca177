//! The JOSE pieces this crate needs: algorithms, compact JWS parsing, JWKs and signing keys.
//!
//! Signatures are checked with [`aws-lc-rs`](aws_lc_rs) directly, with public keys parsed
//! once when a key set is loaded, so verifying a token costs the signature check and two
//! small JSON parses.

mod alg;
mod crypto;
pub mod dangerous;
mod jwk;
pub(crate) mod jws;
mod sign;

pub use alg::{Algorithm, Algorithms, KeyFamily, UnknownAlgorithm};
pub use jwk::{Jwk, JwkSet, KeyError, KeySet, VerifyingKey};
pub use sign::SigningKey;
