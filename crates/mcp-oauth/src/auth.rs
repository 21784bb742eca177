//! What a verified request carries: the user, the scopes, the claims and the token.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::claims::Claims;
use crate::scope::ScopeHierarchy;
use crate::secret::AccessToken;

/// The user a token stands for, mapped from its claims by a [`ClaimMapper`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct UserInfo {
    /// Stable user id (`sub` by default).
    pub id: String,
    /// E-mail address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// User name (`preferred_username` on OIDC providers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Nickname.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    /// Picture URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// Permissions.
    pub permissions: Vec<String>,
    /// Provider-specific extras (organization id, email_verified, …).
    pub extra: Map<String, Value>,
}

impl UserInfo {
    /// A user with this id and nothing else.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }
}

/// Maps a verified claim set to a [`UserInfo`]. Providers are, among other things, a mapper.
pub trait ClaimMapper: Send + Sync + 'static {
    /// Builds the user from the claims.
    fn map_user(&self, claims: &Claims) -> UserInfo;
}

impl<F> ClaimMapper for F
where
    F: Fn(&Claims) -> UserInfo + Send + Sync + 'static,
{
    fn map_user(&self, claims: &Claims) -> UserInfo {
        self(claims)
    }
}

/// Maps a verified claim set to a [`UserInfo`] when that must wait: a lookup in your user
/// database, a call to the identity provider's user API (Better Auth's `getUserInfo`).
///
/// It runs once per token, after every check of the token has passed (signature, issuer,
/// audience, times, the preset's claim checks, `userinfo`), and its result is cached with
/// the token: the next requests with the same token do not wait for it. Set it with
/// [`OAuthBuilder::async_claim_mapper`](crate::OAuthBuilder::async_claim_mapper); it takes
/// the place of the preset's [`ClaimMapper`].
///
/// A closure taking the claims by value and returning a future is one:
///
/// ```
/// use mcp_oauth::{ClaimMapper, Claims, DefaultClaimMapper, MapUserError, UserInfo};
///
/// # async fn roles_of(_id: &str) -> Result<Vec<String>, std::io::Error> { Ok(vec![]) }
/// let mapper = |claims: Claims| async move {
///     let mut user = DefaultClaimMapper.map_user(&claims);
///     user.roles = roles_of(&user.id)
///         .await
///         .map_err(|e| MapUserError::Unavailable(e.to_string()))?;
///     Ok::<UserInfo, MapUserError>(user)
/// };
/// # fn _is_mapper(_: impl mcp_oauth::AsyncClaimMapper) {}
/// # _is_mapper(mapper);
/// ```
pub trait AsyncClaimMapper: Send + Sync + 'static {
    /// Builds the user from the claims, or says why there is none.
    fn resolve_user<'a>(
        &'a self,
        claims: &'a Claims,
    ) -> crate::verify::BoxFuture<'a, Result<UserInfo, MapUserError>>;
}

impl<F, Fut> AsyncClaimMapper for F
where
    F: Fn(Claims) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<UserInfo, MapUserError>> + Send + 'static,
{
    fn resolve_user<'a>(
        &'a self,
        claims: &'a Claims,
    ) -> crate::verify::BoxFuture<'a, Result<UserInfo, MapUserError>> {
        Box::pin(self(claims.clone()))
    }
}

/// Why an [`AsyncClaimMapper`] gives no user for a token that is otherwise valid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapUserError {
    /// This user may not use the server (unknown, disabled): the request is answered
    /// `401 invalid_token` and the text is logged, not sent.
    Refused(String),
    /// What the mapping needs could not be reached: the request is answered `503` and the
    /// token is not cached, so the next request tries again.
    Unavailable(String),
}

impl std::fmt::Display for MapUserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(why) => write!(f, "the claim mapper refused the user: {why}"),
            Self::Unavailable(why) => write!(f, "the claim mapper could not map the user: {why}"),
        }
    }
}

impl std::error::Error for MapUserError {}

/// The claim mapping a pipeline uses: one that answers at once, or one that may wait.
#[derive(Clone)]
pub(crate) enum Mapping {
    Now(Arc<dyn ClaimMapper>),
    Later(Arc<dyn AsyncClaimMapper>),
}

impl Mapping {
    /// The user of a verified token.
    pub(crate) async fn user(
        &self,
        claims: &Claims,
    ) -> Result<UserInfo, crate::error::VerifyError> {
        match self {
            Self::Now(mapper) => Ok(mapper.map_user(claims)),
            Self::Later(mapper) => mapper.resolve_user(claims).await.map_err(|e| match e {
                MapUserError::Refused(why) => crate::error::VerifyError::Refused(why),
                MapUserError::Unavailable(why) => crate::error::VerifyError::Unavailable(why),
            }),
        }
    }
}

/// The mapping for generic OAuth/OIDC tokens:
/// `id` = `sub` (else `user_id`, else `id`), `email`, `name`,
/// `username` = `username` or `preferred_username`, `nickname`,
/// `picture` = `picture` or `avatar_url`, `roles`, `permissions`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClaimMapper;

impl ClaimMapper for DefaultClaimMapper {
    fn map_user(&self, claims: &Claims) -> UserInfo {
        let text = |name: &str| claims.str(name).map(str::to_owned);
        UserInfo {
            id: text("sub")
                .or_else(|| text("user_id"))
                .or_else(|| text("id"))
                .unwrap_or_default(),
            email: text("email"),
            name: text("name"),
            username: text("username").or_else(|| text("preferred_username")),
            nickname: text("nickname"),
            picture: text("picture").or_else(|| text("avatar_url")),
            roles: claims.string_list("roles"),
            permissions: claims.string_list("permissions"),
            extra: Map::new(),
        }
    }
}

/// Everything known about a verified request.
///
/// Reach it through [`Auth`], which the bearer layer puts into the request's extensions.
#[derive(Clone)]
#[non_exhaustive]
pub struct AuthInfo {
    /// The user.
    pub user: UserInfo,
    /// Granted scopes, from `scope` and `scp`.
    pub scopes: Vec<String>,
    /// Permissions, as the provider maps them (the same list as `user.permissions`).
    pub permissions: Vec<String>,
    /// The whole claim set (JWT payload or introspection response).
    pub claims: Claims,
    /// The bearer token of this request.
    pub access_token: AccessToken,
    /// The client the token was issued to (`client_id`, else `azp`).
    pub client_id: Option<String>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: Option<i64>,
    /// `iss`.
    pub issuer: Option<String>,
    pub(crate) hierarchy: Arc<ScopeHierarchy>,
    /// The caller as the access policy sees it, built at its first decision and kept with
    /// the token (the verified-token cache hands out this same `AuthInfo`).
    #[cfg(feature = "policy")]
    pub(crate) principal: crate::policy::PrincipalCache,
}

impl fmt::Debug for AuthInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthInfo")
            .field("user", &self.user)
            .field("scopes", &self.scopes)
            .field("permissions", &self.permissions)
            .field("client_id", &self.client_id)
            .field("expires_at", &self.expires_at)
            .field("issuer", &self.issuer)
            .field("access_token", &self.access_token)
            .finish_non_exhaustive()
    }
}

impl AuthInfo {
    /// Builds the auth info of a verified token.
    pub fn from_claims(
        claims: Claims,
        access_token: AccessToken,
        mapper: &dyn ClaimMapper,
        hierarchy: Arc<ScopeHierarchy>,
    ) -> Self {
        let user = mapper.map_user(&claims);
        Self::from_user(claims, access_token, user, hierarchy)
    }

    /// Builds the auth info of a verified token whose user is already mapped.
    pub fn from_user(
        claims: Claims,
        access_token: AccessToken,
        user: UserInfo,
        hierarchy: Arc<ScopeHierarchy>,
    ) -> Self {
        Self {
            scopes: claims.scopes(),
            permissions: user.permissions.clone(),
            client_id: claims.client_id().map(str::to_owned),
            expires_at: claims.numeric_date("exp").ok().flatten(),
            issuer: claims.iss().map(str::to_owned),
            user,
            claims,
            access_token,
            hierarchy,
            #[cfg(feature = "policy")]
            principal: crate::policy::PrincipalCache::default(),
        }
    }

    /// The subject (the user id).
    pub fn subject(&self) -> &str {
        &self.user.id
    }

    /// Whether the token grants `scope`: a granted scope, or one implied by the configured
    /// hierarchy, or a permission of that name (as mcp-use's `hasScope` does).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.hierarchy.satisfies(&self.scopes, scope) || self.permissions.iter().any(|p| p == scope)
    }

    /// Whether the token grants every one of `scopes`.
    pub fn has_scopes<'a>(&self, scopes: impl IntoIterator<Item = &'a str>) -> bool {
        scopes.into_iter().all(|s| self.has_scope(s))
    }

    /// Succeeds when every one of `needed` is granted.
    ///
    /// # Errors
    ///
    /// [`InsufficientScope`] naming the missing scopes.
    pub fn require_scope<'a>(
        &self,
        needed: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), InsufficientScope> {
        let needed: Vec<String> = needed.into_iter().map(str::to_owned).collect();
        let missing: Vec<String> = needed
            .iter()
            .filter(|s| !self.has_scope(s))
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(InsufficientScope {
                required: needed,
                missing,
                any: false,
            })
        }
    }

    /// Succeeds when at least one of `any` is granted.
    ///
    /// # Errors
    ///
    /// [`InsufficientScope`] listing all of `any`.
    pub fn require_any_scope<'a>(
        &self,
        any: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), InsufficientScope> {
        let any: Vec<String> = any.into_iter().map(str::to_owned).collect();
        if any.iter().any(|s| self.has_scope(s)) {
            Ok(())
        } else {
            Err(InsufficientScope {
                missing: any.clone(),
                required: any,
                any: true,
            })
        }
    }
}

/// A scope check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientScope {
    /// The scopes asked for.
    pub required: Vec<String>,
    /// Those not granted.
    pub missing: Vec<String>,
    any: bool,
}

impl fmt::Display for InsufficientScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.any {
            write!(
                f,
                "missing at least one required scope from: {}",
                self.required.join(", ")
            )
        } else {
            write!(f, "missing required scope(s): {}", self.missing.join(", "))
        }
    }
}

impl std::error::Error for InsufficientScope {}

/// A verified request's [`AuthInfo`], cheap to clone.
///
/// The bearer layer inserts it into the request extensions. Read it with the axum
/// extractor (`auth: Auth` or `auth: Option<Auth>` in a handler), in an rmcp `#[tool]`
/// function (`Auth` implements rmcp's `FromContextPart`), or with
/// `request.extensions().get::<Auth>()`.
#[derive(Clone, Debug)]
pub struct Auth(pub Arc<AuthInfo>);

impl Deref for Auth {
    type Target = AuthInfo;

    fn deref(&self) -> &AuthInfo {
        &self.0
    }
}

impl From<AuthInfo> for Auth {
    fn from(info: AuthInfo) -> Self {
        Self(Arc::new(info))
    }
}

#[cfg(feature = "axum")]
mod axum_impl {
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use http::StatusCode;
    use http::request::Parts;

    use super::Auth;

    /// The request reached a handler that wants [`Auth`] without passing the bearer layer.
    #[derive(Debug, Clone, Copy)]
    pub struct MissingAuth;

    impl axum::response::IntoResponse for MissingAuth {
        fn into_response(self) -> axum::response::Response {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Auth was not found in the request: is BearerAuthLayer applied to this route?",
            )
                .into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Auth {
        type Rejection = MissingAuth;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<Auth>().cloned().ok_or(MissingAuth)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for Auth {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<Auth>().cloned())
        }
    }
}

#[cfg(feature = "axum")]
pub use axum_impl::MissingAuth;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(claims: Value, hierarchy: ScopeHierarchy) -> AuthInfo {
        let Value::Object(map) = claims else {
            unreachable!("test claims are objects")
        };
        AuthInfo::from_claims(
            Claims::new(map),
            AccessToken::new("t"),
            &DefaultClaimMapper,
            Arc::new(hierarchy),
        )
    }

    #[test]
    fn default_mapping_reads_common_claims() {
        let a = info(
            json!({"sub": "u1", "email": "a@b.c", "preferred_username": "al", "avatar_url": "p",
                   "roles": ["r"], "permissions": "read:x", "scope": "a b", "azp": "cli", "exp": 5, "iss": "i"}),
            ScopeHierarchy::new(),
        );
        assert_eq!(a.user.id, "u1");
        assert_eq!(a.user.username.as_deref(), Some("al"));
        assert_eq!(a.user.picture.as_deref(), Some("p"));
        assert_eq!(a.permissions, vec!["read:x"]);
        assert_eq!(a.client_id.as_deref(), Some("cli"));
        assert_eq!(a.expires_at, Some(5));
        assert_eq!(a.scopes, vec!["a", "b"]);
        let fallback = info(json!({"user_id": "u2"}), ScopeHierarchy::new());
        assert_eq!(fallback.subject(), "u2");
    }

    #[test]
    fn scope_helpers_follow_hierarchy_and_permissions() {
        let a = info(
            json!({"scope": "admin", "permissions": ["p:1"]}),
            ScopeHierarchy::new().implies("admin", ["write"]),
        );
        assert!(a.has_scope("write"));
        assert!(a.has_scope("p:1"));
        assert!(a.require_scope(["admin", "write"]).is_ok());
        let err = a
            .require_scope(["write", "delete", "x"])
            .expect_err("missing");
        assert_eq!(err.missing, vec!["delete", "x"]);
        assert_eq!(err.to_string(), "missing required scope(s): delete, x");
        assert!(a.require_any_scope(["delete", "write"]).is_ok());
        let err = a.require_any_scope(["delete", "x"]).expect_err("none");
        assert_eq!(
            err.to_string(),
            "missing at least one required scope from: delete, x"
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        let a = info(json!({"sub": "u"}), ScopeHierarchy::new());
        assert!(format!("{a:?}").contains("AccessToken([redacted])"));
    }
}
