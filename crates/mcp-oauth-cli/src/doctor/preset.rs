//! `--provider NAME`: the preset a server would be built with, read from the same
//! `MCP_USE_OAUTH_*` variables, so that the token goes through the same pipeline: the preset's
//! issuer, key location, algorithms, audience rule, `typ` requirement and claim checks.

use std::fmt;

use clap::ValueEnum;
use mcp_oauth::ConfigError;
use mcp_oauth::authenticator::Audience;
use mcp_oauth::providers::{
    Auth0, BetterAuth, Clerk, Keycloak, Provider, ProviderSpec, Supabase, Vars, Verification,
    WorkOs,
};

use super::report::{Check, Report};

/// The presets that read their settings from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PresetName {
    /// Auth0: MCP_USE_OAUTH_AUTH0_DOMAIN, MCP_USE_OAUTH_AUTH0_AUDIENCE.
    Auth0,
    /// WorkOS AuthKit: MCP_USE_OAUTH_WORKOS_SUBDOMAIN.
    Workos,
    /// Supabase: MCP_USE_OAUTH_SUPABASE_PROJECT_ID or _URL, optional _JWT_SECRET.
    Supabase,
    /// Keycloak: MCP_USE_OAUTH_KEYCLOAK_SERVER_URL, _REALM, optional _AUDIENCE.
    Keycloak,
    /// Clerk: MCP_USE_OAUTH_CLERK_FRONTEND_API_URL.
    Clerk,
    /// Better Auth: MCP_USE_OAUTH_BETTER_AUTH_URL.
    BetterAuth,
}

impl fmt::Display for PresetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_possible_value() {
            Some(value) => f.write_str(value.get_name()),
            None => write!(f, "{self:?}"),
        }
    }
}

impl PresetName {
    /// The preset's data, exactly as `OAuthBuilder::provider(<Preset>::new())` reads it.
    pub(super) fn spec(self, vars: Vars<'_>) -> Result<ProviderSpec, ConfigError> {
        match self {
            Self::Auth0 => Auth0::new().spec_with(vars),
            Self::Workos => WorkOs::new().spec_with(vars),
            Self::Supabase => Supabase::new().spec_with(vars),
            Self::Keycloak => Keycloak::new().spec_with(vars),
            Self::Clerk => Clerk::new().spec_with(vars),
            Self::BetterAuth => BetterAuth::new().spec_with(vars),
        }
    }
}

/// One line saying what the preset checks, so that the verdict can be read against it.
pub(super) fn describe(report: &mut Report, spec: &ProviderSpec) {
    let keys = spec.jwks_url.as_deref().map_or_else(
        || "found through the issuer's metadata".to_owned(),
        |url| format!("at {url}"),
    );
    let algorithms: Vec<String> = spec.algorithms.iter().map(|a| a.to_string()).collect();
    let hmac = if spec.hmac_secret.is_some() {
        " (and HS256 with the configured JWT secret)"
    } else {
        ""
    };
    let audience = match &spec.audience {
        Audience::Resource { extra, .. } if extra.is_empty() => "the MCP URL".to_owned(),
        Audience::Resource { extra, .. } => format!("the MCP URL or {}", quoted(extra)),
        _ => "not checked (insecure_disable_audience_check)".to_owned(),
    };
    let mut rules = vec![
        format!("issuer {}", spec.issuer),
        format!("keys {keys}"),
        format!("algorithms {}{hmac}", algorithms.join(", ")),
        format!("audience {audience}"),
    ];
    if spec.require_at_jwt {
        rules.push("typ at+jwt required".to_owned());
    }
    for check in &spec.claim_checks {
        rules.push(format!(
            "{} must be {:?} when present",
            check.name, check.value
        ));
    }
    if matches!(spec.verification, Verification::Unverified) {
        rules.push("signatures NOT checked (verify_jwt(false))".to_owned());
    }
    report.add(Check::info(
        "provider.preset",
        format!(
            "The {} preset, as a server built with it checks tokens: {}.",
            spec.name,
            rules.join("; ")
        ),
    ));
}

pub(super) fn quoted(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn presets_read_the_mcp_use_variables_and_name_the_missing_one() {
        let clerk = PresetName::Clerk
            .spec(&vars(&[(
                "MCP_USE_OAUTH_CLERK_FRONTEND_API_URL",
                "verb-noun-42.clerk.accounts.dev",
            )]))
            .expect("spec");
        assert_eq!(clerk.issuer, "https://verb-noun-42.clerk.accounts.dev");
        assert!(clerk.require_at_jwt);

        let err = PresetName::Auth0
            .spec(&vars(&[("MCP_USE_OAUTH_AUTH0_DOMAIN", "t.eu.auth0.com")]))
            .expect_err("audience missing");
        assert!(
            err.to_string().contains("MCP_USE_OAUTH_AUTH0_AUDIENCE"),
            "{err}"
        );
        assert_eq!(PresetName::BetterAuth.to_string(), "better-auth");
    }
}
