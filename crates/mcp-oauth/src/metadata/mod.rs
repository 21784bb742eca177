//! Discovery documents: protected-resource metadata (RFC 9728) and authorization-server
//! metadata (RFC 8414 / OpenID Connect Discovery), fetched and mirrored.

mod authorization_server;
mod protected_resource;

pub use authorization_server::AuthorizationServerMetadata;
#[cfg(feature = "remote")]
pub use authorization_server::{DiscoveredMetadata, MetadataMirror, discover};
pub use protected_resource::ProtectedResourceMetadata;
