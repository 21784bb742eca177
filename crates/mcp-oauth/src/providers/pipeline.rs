//! What a preset's verification builds: its verifier (JWKS, discovery, HMAC, a custom one,
//! or the unverified reading a preset may force), and its `userinfo` completion. Shared by the
//! one-issuer configuration and each trusted issuer.

use std::sync::Arc;

use crate::error::ConfigError;
use crate::fetch::HttpClient;
use crate::verify::{JwtVerifier, TokenVerifier};

/// What a preset's verification builds: its verifier, the `verify_jwt(false)` state (forced
/// or not) and its `userinfo` completion.
pub(crate) struct SpecPipeline {
    pub(crate) verifier: Arc<dyn TokenVerifier>,
    pub(crate) unverified: Option<bool>,
    pub(crate) userinfo: Option<Arc<crate::providers::userinfo::UserinfoClaims>>,
}

/// The verifier (and `userinfo` completion) a preset describes; `client` for its fetches.
pub(crate) fn spec_pipeline(
    spec: &crate::providers::ProviderSpec,
    client: Option<&HttpClient>,
) -> Result<SpecPipeline, ConfigError> {
    use crate::providers::Verification;
    let mut unverified = None;
    let verifier: Arc<dyn TokenVerifier> = match &spec.verification {
        Verification::Custom(verifier) => verifier.clone(),
        Verification::Unverified => {
            unverified = Some(spec.force_unverified);
            Arc::new(crate::verify::unverified::UnverifiedJwt {
                issuer: spec.issuer.clone(),
                typ: spec.require_at_jwt.then_some("at+jwt"),
            })
        }
        Verification::Jwt => {
            let mut jwt = JwtVerifier::builder()
                .issuer(spec.issuer.clone())
                .algorithms(spec.algorithms.iter());
            jwt = match &spec.jwks_url {
                Some(url) => jwt.jwks_url(url.clone()),
                None => jwt.discover_jwks(),
            };
            if let Some(secret) = &spec.hmac_secret {
                jwt = jwt.hmac_secret(secret.clone());
            }
            if spec.require_at_jwt {
                jwt = jwt.require_at_jwt_typ();
            }
            if let Some(client) = client {
                jwt = jwt.http_client(client.clone());
            }
            Arc::new(jwt.build()?)
        }
    };
    let userinfo = match &spec.userinfo_endpoint {
        None => None,
        Some(url) => Some(Arc::new(crate::providers::userinfo::UserinfoClaims {
            url: url::Url::parse(url)
                .map_err(|e| ConfigError::url("userinfo endpoint", url, e.to_string()))?,
            http: match client {
                Some(client) => client.clone(),
                None => HttpClient::new()?,
            },
        })),
    };
    Ok(SpecPipeline {
        verifier,
        unverified,
        userinfo,
    })
}
