//! Metadata and key-set documents from the network: RFC 8414 / OIDC discovery, RFC 9728
//! protected-resource metadata and JWKS parse (or fail) without panicking, and whatever
//! parses serializes and parses back to the same value. `supports_pkce_s256` is exactly
//! "`code_challenge_methods_supported` holds `S256`"; a key set keeps or counts as skipped
//! every key of the document, never more than `max_keys`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth::Claims;
use mcp_oauth::jose::{Algorithms, KeySet};
use mcp_oauth::metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = serde_json::from_slice::<AuthorizationServerMetadata>(data) {
        // Differential: the document read as a plain JSON object (duplicate members refused,
        // so that both readings see one value) says the same.
        if let Ok(plain) = Claims::from_json_slice(data) {
            let advertised = plain
                .as_map()
                .get("code_challenge_methods_supported")
                .and_then(|m| m.as_array())
                .is_some_and(|m| m.iter().any(|m| m.as_str() == Some("S256")));
            assert_eq!(doc.supports_pkce_s256(), advertised);
        }
        let json = serde_json::to_vec(&doc).expect("metadata serializes");
        let again: AuthorizationServerMetadata =
            serde_json::from_slice(&json).expect("serialized metadata parses");
        assert_eq!(
            serde_json::to_value(&again).ok(),
            serde_json::to_value(&doc).ok()
        );
    }
    if let Ok(doc) = serde_json::from_slice::<ProtectedResourceMetadata>(data) {
        let json = serde_json::to_vec(&doc).expect("metadata serializes");
        let again: ProtectedResourceMetadata =
            serde_json::from_slice(&json).expect("serialized metadata parses");
        assert_eq!(
            serde_json::to_value(&again).ok(),
            serde_json::to_value(&doc).ok()
        );
    }
    for (allowed, max_keys) in [
        (Algorithms::default(), usize::MAX),
        (Algorithms::asymmetric(), 2),
        (Algorithms::hmac(), usize::MAX),
    ] {
        if let Ok((set, skipped)) = KeySet::from_jwks_json(data, allowed, max_keys) {
            assert!(set.len() <= max_keys);
            // HMAC keys never come from a key set.
            assert!(
                !set.algorithms()
                    .iter()
                    .any(|a| Algorithms::hmac().contains(a))
            );
            assert!(set.algorithms().iter().all(|a| allowed.contains(a)));
            // Every key of the document is either kept or counted as skipped.
            let in_document = serde_json::from_slice::<serde_json::Value>(data)
                .ok()
                .and_then(|v| v.get("keys").and_then(|k| k.as_array()).map(Vec::len))
                .expect("a parsed key set has a keys array");
            assert_eq!(set.len() + skipped, in_document);
        }
    }
});
