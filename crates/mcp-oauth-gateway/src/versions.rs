//! The protocol versions the gateway speaks with clients, and which one a client gets.

use serde_json::value::RawValue;

use crate::jsonrpc;

/// Protocol versions the gateway speaks with clients, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-03-26", "2025-06-18", "2025-11-25"];
/// The version offered when the client asks for one the gateway does not speak.
pub(crate) const LATEST: &str = "2025-11-25";

/// The version the client asks for (`params.protocolVersion`) if the gateway speaks it, else
/// the latest the gateway speaks.
pub(crate) fn negotiate(params: Option<&RawValue>) -> &'static str {
    params
        .and_then(|p| jsonrpc::member(p, "protocolVersion"))
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
        .and_then(|v| SUPPORTED_VERSIONS.iter().find(|s| **s == v).copied())
        .unwrap_or(LATEST)
}
