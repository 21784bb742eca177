//! Newtypes for secrets: they never print and have no `PartialEq`.

use std::fmt;
use std::sync::Arc;

/// A bearer access token as received from a client.
///
/// `Debug` prints `AccessToken([redacted])`. There is no `Display` and no `PartialEq`:
/// compare with [`AccessToken::secret`] and a constant-time comparison if you must.
#[derive(Clone)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    /// Wraps a token.
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self(token.into())
    }

    /// The token itself.
    ///
    /// # Security Warning
    ///
    /// Leaking this value lets anyone act as the user until it expires. Never log it, and
    /// never pass it to another service: the MCP specification forbids token passthrough.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// A secret string (client secret, shared HMAC secret, upstream token).
///
/// `Debug` prints `Secret([redacted])`; there is no `Display` and no `PartialEq`.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self(Arc::from(secret.as_ref()))
    }

    /// The secret bytes.
    ///
    /// # Security Warning
    ///
    /// Leaking this value compromises whatever it protects.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value.as_bytes())
    }
}

impl From<&[u8]> for Secret {
    fn from(value: &[u8]) -> Self {
        Self::new(value)
    }
}

impl From<Vec<u8>> for Secret {
    fn from(value: Vec<u8>) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(
            "AccessToken([redacted])",
            format!("{:?}", AccessToken::new("eyJ.secret.sig"))
        );
        assert_eq!(
            "Secret([redacted])",
            format!("{:?}", Secret::from("hunter2"))
        );
    }
}
