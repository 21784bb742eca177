//! Metadata and key-set documents from the network: RFC 8414 / OIDC discovery, RFC 9728
//! protected-resource metadata and JWKS parse (or fail) without panicking, and whatever
//! parses serializes and parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth::jose::{Algorithms, KeySet};
use mcp_oauth::metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = serde_json::from_slice::<AuthorizationServerMetadata>(data) {
        let _ = doc.supports_pkce_s256();
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
            let _ = skipped;
        }
    }
});
