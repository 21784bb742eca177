//! Claims from the provider's `userinfo` endpoint (OpenID Connect Core §5.3) for access tokens
//! that lack them: many providers put only `sub`, `scope` and the times in access tokens and
//! keep `email` and `name` for `userinfo`.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::authenticator::Audience;
use crate::claims::{Claims, DEFAULT_LEEWAY, check_times, now_unix};
use crate::error::VerifyError;
use crate::fetch::{HttpClient, RequestAuth};
use crate::resource::ResourceUrl;
use crate::verify::{BoxFuture, TokenVerifier};

/// The profile claims filled from `userinfo` when the token lacks them. Nothing else is ever
/// taken from it: issuer, audience, times, scopes and roles come from the verified token only.
pub(crate) const PROFILE_CLAIMS: &[&str] = &[
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "nickname",
    "picture",
];

/// A verifier whose verified claims are completed from `userinfo`: after `inner` accepted the
/// token, and only when one of [`PROFILE_CLAIMS`] is missing, `userinfo` is called once with
/// the token as bearer. A claim the token has is never replaced, and the answer is used only
/// when its `sub` equals the token's (OpenID Connect Core §5.3.2). A failed call leaves the
/// claims as they were (logged): the token was verified, the profile is a convenience.
///
/// The verified-token cache in front of every verifier keeps the completed claims, so
/// `userinfo` is called once per token, on a cache miss.
///
/// Before the call, the token must be one the pipeline will accept: within its times and,
/// when the resource is known here, for this resource. A stranger holding a token of the same
/// issuer that is expired or meant for another service cannot make this server call the
/// provider with it.
pub(crate) struct UserinfoClaims {
    pub(crate) inner: Arc<dyn TokenVerifier>,
    pub(crate) url: Url,
    pub(crate) http: HttpClient,
    /// The audience rule and the configured resource, when known.
    pub(crate) audience: Option<(Audience, ResourceUrl)>,
}

impl UserinfoClaims {
    async fn complete(&self, token: &str, claims: Claims) -> Claims {
        let missing = PROFILE_CLAIMS
            .iter()
            .any(|name| !claims.as_map().contains_key(*name));
        let for_us = check_times(
            &claims,
            now_unix(),
            DEFAULT_LEEWAY,
            self.inner.requires_exp(),
        )
        .is_ok()
            && self
                .audience
                .as_ref()
                .is_none_or(|(rule, resource)| rule.check(&claims, resource).is_ok());
        if !missing || !for_us {
            return claims;
        }
        let Some(subject) = claims.sub().map(str::to_owned) else {
            return claims;
        };
        let fetched = match self
            .http
            .get_json_with(&self.url, RequestAuth::Bearer(token))
            .await
        {
            Ok(fetched) => fetched,
            Err(err) => {
                tracing::warn!(target: "mcp_oauth::userinfo", url = %self.url, error = %err.kind, "userinfo failed; the token's own claims are used");
                return claims;
            }
        };
        let Ok(answer) = Claims::from_json_slice(&fetched.body) else {
            tracing::warn!(target: "mcp_oauth::userinfo", url = %self.url, "the userinfo answer is not a JSON object; ignored");
            return claims;
        };
        if answer.sub() != Some(subject.as_str()) {
            tracing::warn!(target: "mcp_oauth::userinfo", url = %self.url, "the userinfo answer is about another subject than the token; ignored");
            return claims;
        }
        let mut map = claims.into_map();
        for name in PROFILE_CLAIMS {
            if let Some(value) = answer.as_map().get(*name).filter(|v| !v.is_null()) {
                map.entry((*name).to_owned())
                    .or_insert_with(|| value.clone());
            }
        }
        Claims::new(map)
    }
}

impl TokenVerifier for UserinfoClaims {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Claims, VerifyError>> {
        Box::pin(async move {
            let claims = self.inner.verify(token).await?;
            Ok(self.complete(token, claims).await)
        })
    }

    fn requires_exp(&self) -> bool {
        self.inner.requires_exp()
    }

    fn max_cache_ttl(&self) -> Option<Duration> {
        self.inner.max_cache_ttl()
    }

    fn rechecks(&self) -> bool {
        self.inner.rechecks()
    }

    fn recheck<'a>(&'a self, claims: &'a Claims) -> BoxFuture<'a, Result<(), VerifyError>> {
        self.inner.recheck(claims)
    }
}
