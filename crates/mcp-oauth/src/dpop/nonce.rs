//! Server-provided nonces (RFC 9449 §8, §9): issued by the server, required in proofs,
//! rotated on a fixed period.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq as _;

use super::NonceProblem;
use crate::error::ConfigError;

/// Length of the authentication tag in a nonce: 128 bits.
const TAG_LEN: usize = 16;
/// Length of a nonce once decoded: the period number and the tag.
const NONCE_LEN: usize = 8 + TAG_LEN;
/// Longest nonce text worth decoding (an issued one is 32 characters).
const MAX_NONCE_TEXT: usize = 64;
/// Binds the tag to this use of the secret.
const CONTEXT: &[u8] = b"mcp-oauth dpop nonce v1\0";

/// Issues and checks server nonces for DPoP proofs.
///
/// A nonce names a rotation period (`now / rotation`) and carries an HMAC-SHA-256 tag over
/// it, so nothing is stored: the nonce of the current period is issued, and a nonce of the
/// current, previous or next period is accepted (so each lives between one and two periods;
/// the next period covers instances whose clocks run a little ahead). Instances behind one
/// load balancer share nonces when they share the secret ([`DpopNonces::from_secret`]).
///
/// ```
/// use std::time::Duration;
/// use mcp_oauth::dpop::{DpopNonces, NonceProblem};
///
/// let nonces = DpopNonces::generate(Duration::from_secs(300))?;
/// let nonce = nonces.issue(1_000_000);
/// assert_eq!(nonces.check(&nonce, 1_000_000 + 299), Ok(()));
/// assert_eq!(nonces.check(&nonce, 1_000_000 + 900), Err(NonceProblem::Stale));
/// assert_eq!(nonces.check("forged", 1_000_000), Err(NonceProblem::Unknown));
/// # Ok::<(), mcp_oauth::ConfigError>(())
/// ```
pub struct DpopNonces {
    key: hmac::Key,
    rotation: i64,
}

impl fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopNonces")
            .field("rotation_secs", &self.rotation)
            .finish_non_exhaustive()
    }
}

impl DpopNonces {
    /// Nonces under a random secret of this process, rotated every `rotation`. Several
    /// instances need [`DpopNonces::from_secret`] instead.
    ///
    /// # Errors
    ///
    /// `rotation` is not between 1 second and 1 day, or the system random source fails.
    pub fn generate(rotation: Duration) -> Result<Self, ConfigError> {
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| ConfigError::invalid("DPoP nonce secret", "the random source failed"))?;
        Self::from_secret(&secret, rotation)
    }

    /// Nonces under a shared secret of at least 32 bytes, rotated every `rotation`: every
    /// instance configured with the same secret and period accepts the others' nonces.
    ///
    /// # Errors
    ///
    /// The secret is shorter than 32 bytes, or `rotation` is not between 1 second and 1 day.
    pub fn from_secret(secret: &[u8], rotation: Duration) -> Result<Self, ConfigError> {
        if secret.len() < 32 {
            return Err(ConfigError::invalid(
                "DPoP nonce secret",
                "it needs at least 32 bytes",
            ));
        }
        let rotation = i64::try_from(rotation.as_secs()).unwrap_or(i64::MAX);
        if !(1..=86_400).contains(&rotation) {
            return Err(ConfigError::invalid(
                "DPoP nonce rotation",
                "it must be between 1 second and 1 day",
            ));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            rotation,
        })
    }

    /// The rotation period.
    pub fn rotation(&self) -> Duration {
        Duration::from_secs(self.rotation.unsigned_abs())
    }

    fn period(&self, now: i64) -> i64 {
        now.div_euclid(self.rotation)
    }

    fn tag(&self, period: i64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(CONTEXT);
        ctx.update(&period.to_be_bytes());
        ctx.sign()
    }

    /// The nonce to hand out at `now` (Unix seconds), for a `DPoP-Nonce` header.
    pub fn issue(&self, now: i64) -> String {
        let period = self.period(now);
        let mut bytes = Vec::with_capacity(NONCE_LEN);
        bytes.extend_from_slice(&period.to_be_bytes());
        bytes.extend_from_slice(self.tag(period).as_ref().get(..TAG_LEN).unwrap_or_default());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Checks a proof's nonce at `now`.
    ///
    /// # Errors
    ///
    /// [`NonceProblem::Unknown`] for anything this server did not issue (checked in constant
    /// time), [`NonceProblem::Stale`] for a nonce of a period before the previous one.
    pub fn check(&self, nonce: &str, now: i64) -> Result<(), NonceProblem> {
        if nonce.len() > MAX_NONCE_TEXT {
            return Err(NonceProblem::Unknown);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| NonceProblem::Unknown)?;
        let (Some(period), Some(tag)) = (bytes.get(..8), bytes.get(8..)) else {
            return Err(NonceProblem::Unknown);
        };
        let period = <[u8; 8]>::try_from(period)
            .map(i64::from_be_bytes)
            .map_err(|_| NonceProblem::Unknown)?;
        let expected = self.tag(period);
        let expected = expected.as_ref().get(..TAG_LEN).unwrap_or_default();
        if tag.len() != TAG_LEN || !bool::from(tag.ct_eq(expected)) {
            return Err(NonceProblem::Unknown);
        }
        let current = self.period(now);
        if period > current.saturating_add(1) {
            // Authentic but from further ahead than clock differences explain.
            return Err(NonceProblem::Unknown);
        }
        if period < current.saturating_sub(1) {
            return Err(NonceProblem::Stale);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [9; 32];

    #[test]
    fn nonces_live_for_one_to_two_periods() {
        let nonces = DpopNonces::from_secret(&SECRET, Duration::from_secs(100)).expect("valid");
        let nonce = nonces.issue(1_050);
        assert_eq!(nonce.len(), 32);
        assert_eq!(nonces.issue(1_099), nonce, "same period, same nonce");
        assert_ne!(nonces.issue(1_100), nonce, "rotated");
        // Its own period, the next one, and the previous one (a clock running behind).
        for now in [1_000, 1_050, 1_199, 950, 900] {
            assert_eq!(nonces.check(&nonce, now), Ok(()), "{now}");
        }
        assert_eq!(nonces.check(&nonce, 1_200), Err(NonceProblem::Stale));
        assert_eq!(nonces.check(&nonce, 899), Err(NonceProblem::Unknown));
    }

    #[test]
    fn other_secrets_and_tampering_are_unknown() {
        let nonces = DpopNonces::from_secret(&SECRET, Duration::from_secs(100)).expect("valid");
        let other = DpopNonces::from_secret(&[8; 32], Duration::from_secs(100)).expect("valid");
        let nonce = other.issue(5_000);
        assert_eq!(nonces.check(&nonce, 5_000), Err(NonceProblem::Unknown));
        let mine = nonces.issue(5_000);
        let mut bytes = URL_SAFE_NO_PAD.decode(&mine).expect("base64url");
        bytes[7] ^= 1;
        let shifted = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(nonces.check(&shifted, 5_000), Err(NonceProblem::Unknown));
        for junk in [
            "",
            "a",
            "!!!!",
            &"A".repeat(65),
            &mine[..31],
            &format!("{mine}AA"),
        ] {
            assert_eq!(
                nonces.check(junk, 5_000),
                Err(NonceProblem::Unknown),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn configuration_is_checked() {
        assert!(DpopNonces::from_secret(&[1; 31], Duration::from_secs(60)).is_err());
        assert!(DpopNonces::from_secret(&SECRET, Duration::ZERO).is_err());
        assert!(DpopNonces::from_secret(&SECRET, Duration::from_secs(86_401)).is_err());
        let nonces = DpopNonces::generate(Duration::from_secs(60)).expect("valid");
        assert_eq!(nonces.rotation(), Duration::from_secs(60));
        assert!(!format!("{nonces:?}").contains("key"));
        // Negative clocks do not panic.
        let nonce = nonces.issue(i64::MIN);
        assert_eq!(nonces.check(&nonce, i64::MIN), Ok(()));
        assert!(nonces.check(&nonce, i64::MAX).is_err());
    }
}
