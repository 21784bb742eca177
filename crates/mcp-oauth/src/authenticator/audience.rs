//! [`Audience`]: which audiences a token may carry (RFC 8707), the rule every verified token
//! is checked against for the request's resource.

use crate::claims::Claims;
use crate::error::VerifyError;
use crate::resource::ResourceUrl;

/// Which audiences a token may carry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Audience {
    /// `aud` must name the resource (trailing slash and the case of scheme and host do not
    /// matter) or one of `extra`, compared exactly. With `prefix`, an `aud` that is a
    /// path-boundary prefix of the resource also counts.
    Resource {
        /// Other accepted audiences (an Auth0 API identifier, a Keycloak client id, …).
        extra: Vec<String>,
        /// Accept path-boundary prefixes of the resource.
        prefix: bool,
    },
    /// No audience check. Only for providers that cannot put the resource in tokens; a token
    /// issued for any other service of the same issuer is then accepted here.
    Disabled,
}

impl Default for Audience {
    fn default() -> Self {
        Self::Resource {
            extra: Vec::new(),
            prefix: false,
        }
    }
}

impl Audience {
    /// Bound to the resource, or one of `extra` (compared exactly): an API identifier, a
    /// client id, Supabase's `authenticated`. With no `extra`, the default.
    pub fn resource_or<I: IntoIterator<Item = S>, S: Into<String>>(extra: I) -> Self {
        Self::Resource {
            extra: extra.into_iter().map(Into::into).collect(),
            prefix: false,
        }
    }

    /// Accepts `audience` too, compared exactly (nothing changes when the check is off).
    pub(crate) fn add_extra(&mut self, audience: String) {
        if let Self::Resource { extra, .. } = self {
            extra.push(audience);
        }
    }

    /// Accepts path-boundary prefixes of the resource too (nothing changes when the check is
    /// off).
    pub(crate) fn allow_prefix(&mut self) {
        if let Self::Resource { prefix, .. } = self {
            *prefix = true;
        }
    }

    /// Whether one `aud` value is accepted for `resource` (always, when the check is off).
    pub fn accepts(&self, aud: &str, resource: &ResourceUrl) -> bool {
        let Self::Resource { extra, prefix } = self else {
            return true;
        };
        resource.matches(aud)
            || extra.iter().any(|e| e == aud)
            || (*prefix && resource.is_covered_by(aud))
    }

    /// The audience rule applied to a token's claims: some `aud` is accepted.
    ///
    /// # Errors
    ///
    /// [`VerifyError::InvalidAudience`] when none is, [`VerifyError::InvalidClaim`] when
    /// `aud` is neither a string nor an array of strings.
    pub fn check(&self, claims: &Claims, resource: &ResourceUrl) -> Result<(), VerifyError> {
        if matches!(self, Self::Disabled) {
            return Ok(());
        }
        let audiences = claims.audiences()?;
        if audiences.iter().any(|aud| self.accepts(aud, resource)) {
            Ok(())
        } else {
            Err(VerifyError::InvalidAudience)
        }
    }
}
