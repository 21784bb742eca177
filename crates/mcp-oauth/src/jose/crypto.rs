//! The aws-lc-rs parameters for each algorithm, in one place for signing and verifying.

use aws_lc_rs::{hmac, signature};

use super::Algorithm;

pub(crate) fn rsa_params(alg: Algorithm) -> Option<&'static signature::RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

pub(crate) fn rsa_padding(alg: Algorithm) -> Option<&'static dyn signature::RsaEncoding> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_SHA512,
        _ => return None,
    })
}

pub(crate) fn ec_signing_alg(alg: Algorithm) -> Option<&'static signature::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

pub(crate) fn hmac_alg(alg: Algorithm) -> Option<hmac::Algorithm> {
    Some(match alg {
        Algorithm::HS256 => hmac::HMAC_SHA256,
        Algorithm::HS384 => hmac::HMAC_SHA384,
        Algorithm::HS512 => hmac::HMAC_SHA512,
        _ => return None,
    })
}
