//! Each upstream of a gateway of several at a path of its own, `/NAME/mcp` beside the merged
//! `/mcp`: a resource of its own (RFC 9728 metadata at
//! `/.well-known/oauth-protected-resource/NAME/mcp`, tokens whose audience is that URL), the
//! upstream alone under its own names. The handling is the aggregate's, over that one member
//! (`Aggregate::unprefixed`), with a session table of its own: a session opened at one path is
//! unknown at every other.

use std::sync::Arc;

use axum::Router;
use tower_layer::Layer as _;

use crate::aggregate::{self, Aggregate};
use crate::error::GatewayError;

/// One upstream's own endpoint.
#[derive(Clone)]
pub(crate) struct Own {
    pub(crate) path: String,
    /// The resource configuration of this path (`None` without authentication).
    pub(crate) oauth: Option<mcp_oauth::OAuth>,
}

/// `/NAME/mcp` for the merged endpoint `/mcp`: the name inserted before the last segment
/// (`/api/mcp` gives `/api/NAME/mcp`).
pub(crate) fn own_path(base: &str, name: &str) -> String {
    match base.rsplit_once('/') {
        Some((parent, last)) => format!("{parent}/{name}/{last}"),
        None => format!("/{name}/{base}"),
    }
}

impl Own {
    pub(crate) fn new(
        name: &str,
        base: &str,
        oauth: Option<&mcp_oauth::OAuth>,
    ) -> Result<Self, GatewayError> {
        let path = own_path(base, name);
        let oauth = match oauth {
            Some(oauth) => {
                let mut url = oauth.resource().url().clone();
                url.set_path(&path);
                // The merged endpoint's URL was accepted; only its path changes.
                let resource =
                    mcp_oauth::ResourceUrl::parse_insecure(url.as_str()).map_err(|e| {
                        GatewayError::Config {
                            what: "upstream path",
                            reason: format!("{name}: {e}"),
                        }
                    })?;
                Some(oauth.with_resource(resource))
            }
            None => None,
        };
        Ok(Self { path, oauth })
    }

    /// `router` with this path's endpoint, behind this path's bearer layer; inside it, the
    /// operation histogram (as at the merged endpoint).
    pub(crate) fn route(&self, router: Router, view: Arc<Aggregate>) -> Router {
        let operations = view.metrics.registry().layer().max_body(view.max_body);
        let endpoint = operations.layer(axum::routing::any(aggregate::handle).with_state(view));
        match &self.oauth {
            Some(oauth) => router.route_service(&self.path, oauth.layer().layer(endpoint)),
            None => router.route_service(&self.path, endpoint),
        }
    }

    /// This path's protected-resource metadata (RFC 9728 §3.1: the well-known path with the
    /// resource's path appended); empty without authentication.
    pub(crate) fn metadata_router(&self) -> Router {
        self.oauth
            .as_ref()
            .map_or_else(Router::new, mcp_oauth::OAuth::resource_metadata_router)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_goes_before_the_last_segment() {
        assert_eq!(own_path("/mcp", "fs"), "/fs/mcp");
        assert_eq!(own_path("/api/mcp", "fs"), "/api/fs/mcp");
    }
}
