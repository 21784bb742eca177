//! JWS algorithms (RFC 7518 §3, RFC 8037) and allow-lists of them.

use std::fmt;
use std::str::FromStr;

/// A JWS signature algorithm this crate can verify and sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

/// The key family an algorithm needs. A key is only ever used with algorithms of its own
/// family, which is what rules out algorithm-confusion attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    /// A shared secret (`kty: oct`).
    Hmac,
    /// An RSA key (`kty: RSA`).
    Rsa,
    /// An elliptic-curve key (`kty: EC`).
    Ec,
    /// An octet key pair (`kty: OKP`, Ed25519).
    Okp,
}

impl Algorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [Algorithm; 12] = [
        Self::HS256,
        Self::HS384,
        Self::HS512,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// The registered name (`"RS256"`, `"EdDSA"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The key family this algorithm needs.
    pub fn family(self) -> KeyFamily {
        match self {
            Self::HS256 | Self::HS384 | Self::HS512 => KeyFamily::Hmac,
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                KeyFamily::Rsa
            }
            Self::ES256 | Self::ES384 => KeyFamily::Ec,
            Self::EdDSA => KeyFamily::Okp,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Parses a registered name exactly (case-sensitive, as RFC 7515 requires).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str() == name)
            .ok_or(UnknownAlgorithm)
    }
}

/// The name is not an algorithm this crate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown algorithm")]
pub struct UnknownAlgorithm;

/// An allow-list of algorithms.
///
/// The default is the asymmetric families: RS256/384/512, PS256/384/512, ES256/384 and EdDSA.
/// `none` is not an algorithm here and can never be allowed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Algorithms(u16);

impl Algorithms {
    /// No algorithm at all.
    pub const NONE: Self = Self(0);

    /// The asymmetric families (RS*, PS*, ES*, EdDSA): the default for key-based verifiers.
    pub fn asymmetric() -> Self {
        Algorithm::ALL
            .into_iter()
            .filter(|alg| alg.family() != KeyFamily::Hmac)
            .collect()
    }

    /// The HMAC family (HS256/384/512).
    pub fn hmac() -> Self {
        [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
            .into_iter()
            .collect()
    }

    /// Whether `alg` is allowed.
    pub fn contains(self, alg: Algorithm) -> bool {
        self.0 & alg.bit() != 0
    }

    /// This set without the HMAC family.
    pub fn without_hmac(self) -> Self {
        Self(self.0 & !Self::hmac().0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The allowed algorithms, in a stable order.
    pub fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL
            .into_iter()
            .filter(move |alg| self.contains(*alg))
    }
}

impl Default for Algorithms {
    fn default() -> Self {
        Self::asymmetric()
    }
}

impl FromIterator<Algorithm> for Algorithms {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, alg| bits | alg.bit()))
    }
}

impl fmt::Debug for Algorithms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>(), Ok(alg));
        }
        assert!("rs256".parse::<Algorithm>().is_err());
        assert!("none".parse::<Algorithm>().is_err());
        assert!("".parse::<Algorithm>().is_err());
    }

    #[test]
    fn default_allow_list_is_asymmetric_only() {
        let set = Algorithms::default();
        assert!(set.contains(Algorithm::RS256));
        assert!(set.contains(Algorithm::EdDSA));
        assert!(!set.contains(Algorithm::HS256));
        assert_eq!(set.iter().count(), 9);
        assert!(Algorithms::hmac().without_hmac().is_empty());
    }
}
