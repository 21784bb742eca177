//! [`Guard`]: the part of an [`OAuth`](crate::OAuth) configuration the bearer layer needs per
//! request, and nothing else: the resource rule (configured URL, trusted proxies), the token
//! pipeline, the scope policy, the scopes a 401 names, and the body limit. Built once by
//! [`OAuthBuilder::build`](crate::OAuthBuilder::build) and shared by `Arc`; the metadata side
//! (authorization servers, mirror, start-up check) stays in `OAuth`.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use super::dpop::ResourceDpop;
use crate::authenticator::Authenticator;
use crate::forwarded::TrustedProxies;
use crate::policy::ScopePolicy;
use crate::resource::ResourceUrl;

/// What the bearer layer checks a request against.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    resource: ResourceUrl,
    trusted_proxies: TrustedProxies,
    authenticator: Arc<Authenticator>,
    policy: ScopePolicy,
    challenge_scopes: Vec<String>,
    max_body_bytes: usize,
    dpop: Option<Arc<ResourceDpop>>,
    /// The access policy deciding calls, with its audit log.
    #[cfg(feature = "policy")]
    enforcer: Option<Arc<crate::policy::Enforcer>>,
    /// Where results are counted, if anywhere.
    metrics: Option<crate::metrics::Metrics>,
}

impl Guard {
    /// `scopes_supported` is what a 401 names when the policy has no baseline.
    pub(crate) fn new(
        resource: ResourceUrl,
        trusted_proxies: TrustedProxies,
        authenticator: Arc<Authenticator>,
        policy: ScopePolicy,
        scopes_supported: &[String],
        max_body_bytes: usize,
    ) -> Self {
        let challenge_scopes = challenge_scopes(&policy, scopes_supported);
        Self {
            resource,
            trusted_proxies,
            authenticator,
            policy,
            challenge_scopes,
            max_body_bytes,
            dpop: None,
            #[cfg(feature = "policy")]
            enforcer: None,
            metrics: None,
        }
    }

    /// A copy that counts its results in `metrics`.
    pub(crate) fn with_metrics(&self, metrics: Option<crate::metrics::Metrics>) -> Self {
        Self {
            metrics,
            ..self.clone()
        }
    }

    /// The registry results are counted in.
    pub(crate) fn metrics(&self) -> Option<&crate::metrics::Metrics> {
        self.metrics.as_ref()
    }

    /// Counts one result (one branch without a registry).
    #[inline]
    pub(crate) fn count(&self, result: crate::metrics::AuthResult) {
        if let Some(metrics) = &self.metrics {
            metrics.auth_result(result);
        }
    }

    /// A copy that decides calls with this access policy (`None`: no access policy).
    #[cfg(feature = "policy")]
    pub(crate) fn with_enforcer(&self, enforcer: Option<crate::policy::Enforcer>) -> Self {
        Self {
            enforcer: enforcer.map(Arc::new),
            ..self.clone()
        }
    }

    /// The access policy, if any.
    #[cfg(feature = "policy")]
    pub(crate) fn enforcer(&self) -> Option<&crate::policy::Enforcer> {
        self.enforcer.as_deref()
    }

    /// Whether a POST body must be read: for the scope policy's per-method or per-tool
    /// scopes, or for the access policy.
    pub(crate) fn needs_body(&self) -> bool {
        #[cfg(feature = "policy")]
        if self.enforcer.is_some() {
            return true;
        }
        self.policy.needs_body()
    }

    /// With DPoP accepted (or required) at this resource.
    pub(crate) fn with_dpop(mut self, dpop: Option<ResourceDpop>) -> Self {
        self.dpop = dpop.map(Arc::new);
        self
    }

    /// The DPoP settings; `None` when the `DPoP` scheme is not accepted.
    pub(crate) fn dpop(&self) -> Option<&ResourceDpop> {
        self.dpop.as_deref()
    }

    /// A copy with another scope policy (and the challenge scopes that follow from it).
    pub(crate) fn with_policy(&self, policy: ScopePolicy, scopes_supported: &[String]) -> Self {
        Self {
            challenge_scopes: challenge_scopes(&policy, scopes_supported),
            policy,
            ..self.clone()
        }
    }

    /// A copy guarding another resource URL (another endpoint of the same server).
    pub(crate) fn with_resource(&self, resource: ResourceUrl) -> Self {
        Self {
            resource,
            ..self.clone()
        }
    }

    /// The configured resource URL.
    pub(crate) fn resource(&self) -> &ResourceUrl {
        &self.resource
    }

    /// The trusted proxies (empty: trusted-proxy mode is off).
    pub(crate) fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }

    /// See [`OAuth::resource_for`](crate::OAuth::resource_for).
    pub(crate) fn resource_for(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Cow<'_, ResourceUrl> {
        let Some(origin) = self.trusted_proxies.forwarded_origin(peer, headers) else {
            return Cow::Borrowed(&self.resource);
        };
        let scheme = origin
            .scheme
            .as_deref()
            .unwrap_or(self.resource.url().scheme());
        match scheme {
            "http" | "https"
                if origin
                    .host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) =>
            {
                self.resource
                    .with_origin(scheme, &origin.host)
                    .map_or(Cow::Borrowed(&self.resource), Cow::Owned)
            }
            _ => Cow::Borrowed(&self.resource),
        }
    }

    /// The token pipeline.
    pub(crate) fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// The scope policy.
    pub(crate) fn policy(&self) -> &ScopePolicy {
        &self.policy
    }

    /// The scopes named in a 401 challenge.
    pub(crate) fn challenge_scopes(&self) -> &[String] {
        &self.challenge_scopes
    }

    /// Largest body read for the scope policy.
    pub(crate) fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }
}

/// The baseline of the policy, else the scopes supported.
fn challenge_scopes(policy: &ScopePolicy, scopes_supported: &[String]) -> Vec<String> {
    if policy.baseline().is_empty() {
        scopes_supported.to_vec()
    } else {
        policy.baseline().to_vec()
    }
}
