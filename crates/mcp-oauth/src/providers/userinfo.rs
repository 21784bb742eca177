//! Claims from the provider's `userinfo` endpoint (OpenID Connect Core §5.3) for access tokens
//! that lack them: many providers put only `sub`, `scope` and the times in access tokens and
//! keep `email` and `name` for `userinfo`.

use url::Url;

use crate::claims::Claims;
use crate::fetch::{HttpClient, RequestAuth};

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

/// Claims completed from `userinfo`: the pipeline ([`Authenticator`]) calls
/// [`UserinfoClaims::complete`] for a token not in its cache, after the verifier, the audience
/// and time checks and the claim checks accepted it, and before the claim mapping. Only when one
/// of [`PROFILE_CLAIMS`] is missing is `userinfo` called, once, with the token as bearer. A claim
/// the token has is never replaced, and the answer is used only when its `sub` equals the
/// token's (OpenID Connect Core §5.3.2). A failed call leaves the claims as they were (logged):
/// the token was verified, the profile is a convenience.
///
/// The verified-token cache keeps the completed claims, so `userinfo` is called once per
/// token; and since the call comes after every check, a stranger holding a token of the same
/// issuer that is expired or meant for another service cannot make this server call the
/// provider with it.
///
/// [`Authenticator`]: crate::authenticator::Authenticator
pub(crate) struct UserinfoClaims {
    pub(crate) url: Url,
    pub(crate) http: HttpClient,
}

impl UserinfoClaims {
    pub(crate) async fn complete(&self, token: &str, claims: Claims) -> Claims {
        let missing = PROFILE_CLAIMS
            .iter()
            .any(|name| !claims.as_map().contains_key(*name));
        if !missing {
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
