//! The gateway's errors.

/// Why the gateway cannot be built or an upstream cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A configuration value is refused.
    #[error("{what}: {reason}")]
    Config {
        /// What is configured.
        what: &'static str,
        /// Why it is refused and what to do.
        reason: String,
    },
    /// The upstream is not reachable or not ready.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// The upstream answered something that is not MCP.
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    /// The caller's credentials for the upstream were refused (a token exchange the
    /// authorization server declined): this caller may not use the upstream.
    #[error("no credentials for the upstream: {0}")]
    CredentialsRefused(String),
    /// The caller must act in a browser before the upstream can be used (paste their token
    /// for it, connect their account): answered with a JSON-RPC error carrying `url`.
    #[error("{message}")]
    ActionRequired {
        /// What is missing and where to fix it (names `url`).
        message: String,
        /// The gateway page where the caller fixes it.
        url: String,
    },
    /// The upstream session ended and could not be started again.
    #[error("the upstream session is gone")]
    SessionGone,
}
