//! Who is asking: the signed-in user as the policy sees it, and where each of their groups
//! came from.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use crate::claims::Claims;

/// The user a decision is about.
///
/// Build it from a verified token's claims ([`Subject::from_claims`]) or by hand. Emails and
/// email domains are compared in lower case. Groups come from the policy's `group_claims`,
/// from its `[policy.groups]` lists, and from [`group`](Self::group) (for example GitHub teams
/// fetched at sign-in); [`Policy::groups`](super::Policy::groups) says which came from where.
///
/// ```
/// use mcp_oauth::policy::Subject;
///
/// let alice = Subject::new("u-1")
///     .email("Alice@Example.com")
///     .scopes(["files:read"]);
/// assert_eq!(alice.email_domain(), Some("example.com"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subject {
    sub: String,
    email: Option<String>,
    scopes: BTreeSet<String>,
    client_id: Option<String>,
    claims: Map<String, Value>,
    groups: Vec<(String, String)>,
}

impl Subject {
    /// A user known by its subject identifier (`sub`), with no email, scopes or claims.
    pub fn new(sub: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            ..Self::default()
        }
    }

    /// The user a verified token's claims describe: `sub`, `email` (left out when
    /// `email_verified` is `false`), the scopes (`scope` or `scp`), the client (`client_id` or
    /// `azp`), and every claim (for `group_claims` and `[policy.claims]`).
    pub fn from_claims(claims: &Claims) -> Self {
        let verified = claims
            .as_map()
            .get("email_verified")
            .and_then(Value::as_bool)
            != Some(false);
        let mut subject = Self::new(claims.sub().unwrap_or_default())
            .scopes(claims.scopes())
            .claims(claims.as_map().clone());
        if let Some(email) = claims.str("email").filter(|_| verified) {
            subject = subject.email(email);
        }
        if let Some(client) = claims.client_id() {
            subject = subject.client_id(client);
        }
        subject
    }

    /// The caller the bearer layer verified: [`from_claims`](Self::from_claims) of its
    /// token, with the scopes and the client the layer mapped from it. This is the subject
    /// the layer decides calls for; use it to filter a list the same way (for an rmcp server
    /// of your own: `policy.visible(&Subject::from_auth(&auth), Target::Tool(&tool.name))`).
    ///
    /// When the token has no `email` claim, the email the provider's claim mapping found
    /// (`auth.user.email`, e.g. a namespaced Auth0 claim) is used, unless the token says
    /// `email_verified: false`.
    pub fn from_auth(auth: &crate::auth::Auth) -> Self {
        let mut subject = Self::from_claims(&auth.claims).scopes(auth.scopes.iter().cloned());
        if let (None, Some(client)) = (&subject.client_id, &auth.client_id) {
            subject.client_id = Some(client.clone());
        }
        let unverified = auth
            .claims
            .as_map()
            .get("email_verified")
            .and_then(Value::as_bool)
            == Some(false);
        if let (None, Some(email), false) = (&subject.email, &auth.user.email, unverified) {
            subject.email = Some(email.to_lowercase());
        }
        subject
    }

    /// Sets the (verified) email address.
    #[must_use]
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into().to_lowercase());
        self
    }

    /// Adds the token's scopes.
    #[must_use]
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Sets the OAuth client the token was issued to.
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Sets the claims (`group_claims` and `[policy.claims]` are read from them).
    #[must_use]
    pub fn claims(mut self, claims: Map<String, Value>) -> Self {
        self.claims = claims;
        self
    }

    /// Adds a group found elsewhere, saying where (for example `"github teams"`).
    #[must_use]
    pub fn group(mut self, group: impl Into<String>, source: impl Into<String>) -> Self {
        self.groups.push((group.into(), source.into()));
        self
    }

    /// The subject identifier.
    pub fn sub(&self) -> &str {
        &self.sub
    }

    /// The email address, in lower case.
    pub fn email_address(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// The part of the email address after the last `@`.
    pub fn email_domain(&self) -> Option<&str> {
        self.email
            .as_deref()
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, domain)| domain)
            .filter(|d| !d.is_empty())
    }

    /// The token's scopes.
    pub fn scope_set(&self) -> &BTreeSet<String> {
        &self.scopes
    }

    /// The OAuth client.
    pub fn client(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The claims.
    pub fn claim_map(&self) -> &Map<String, Value> {
        &self.claims
    }

    pub(crate) fn given_groups(&self) -> &[(String, String)] {
        &self.groups
    }

    /// A claim by name, or by a dotted path into nested objects (`realm_access.roles`). A
    /// claim whose name itself holds dots (`https://example.com/groups`) is found first.
    pub(crate) fn claim(&self, path: &str) -> Option<&Value> {
        if let Some(value) = self.claims.get(path) {
            return Some(value);
        }
        let mut parts = path.split('.');
        let mut value = self.claims.get(parts.next()?)?;
        for part in parts {
            value = value.get(part)?;
        }
        Some(value)
    }

    /// A claim as a list of strings: one string, or the strings of an array.
    pub(crate) fn claim_strings(&self, path: &str) -> Vec<String> {
        match self.claim(path) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Where a group membership came from, for logs and `explain`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum GroupSource {
    /// A claim named in `group_claims` (the claim's name or dotted path).
    Claim(String),
    /// A list under `[policy.groups]`.
    Policy,
    /// Given with [`Subject::group`] (the source it was given with).
    Given(String),
}

impl fmt::Display for GroupSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Claim(claim) => write!(f, "claim `{claim}`"),
            Self::Policy => f.write_str("[policy.groups]"),
            Self::Given(source) => f.write_str(source),
        }
    }
}

/// One group the user is in, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Membership {
    /// The group's name (`Group::"name"` in Cedar).
    pub group: String,
    /// Where the membership came from.
    pub source: GroupSource,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_unverified_email_is_left_out() {
        let claims = Claims::new(
            json!({"sub": "u", "email": "a@b.c", "email_verified": false})
                .as_object()
                .cloned()
                .unwrap(),
        );
        assert_eq!(Subject::from_claims(&claims).email_address(), None);
    }

    fn auth(claims: serde_json::Value) -> crate::Auth {
        let mapper = |_: &Claims| crate::UserInfo {
            email: Some("Mapped@Example.com".into()),
            ..crate::UserInfo::default()
        };
        crate::AuthInfo::from_claims(
            Claims::new(claims.as_object().cloned().unwrap()),
            crate::AccessToken::new("t"),
            &mapper,
            std::sync::Arc::new(crate::scope::ScopeHierarchy::new()),
        )
        .into()
    }

    #[test]
    fn the_verified_caller_is_the_tokens_subject_with_the_mapped_email() {
        let subject = Subject::from_auth(&auth(
            json!({"sub": "u-1", "scope": "a b", "azp": "cli", "email": "Tok@Example.com"}),
        ));
        assert_eq!(subject.sub(), "u-1");
        assert_eq!(subject.email_address(), Some("tok@example.com"));
        assert_eq!(subject.client(), Some("cli"));
        assert!(subject.scope_set().contains("b"));
        // No email claim: the claim mapping's email, unless the token says it is unverified.
        let mapped = Subject::from_auth(&auth(json!({"sub": "u-2"})));
        assert_eq!(mapped.email_address(), Some("mapped@example.com"));
        let unverified = Subject::from_auth(&auth(json!({"sub": "u-3", "email_verified": false})));
        assert_eq!(unverified.email_address(), None);
    }

    #[test]
    fn a_verified_caller_is_decided_as_from_auth_describes_it() {
        use crate::policy::{Catalog, Policy, PolicyConfig, Rule, Target, ToolInfo, Who};
        let catalog = Catalog::new().tool(ToolInfo::new("echo", json!({"type": "object"})));
        let config = PolicyConfig::new().rule(
            Rule::permit("mapped")
                .who(Who::new().emails(["mapped@example.com"]))
                .tools(["echo"]),
        );
        let policy = Policy::new(config, catalog).unwrap();
        // No email claim: the claim mapping's email is the one the rule names.
        let mapped = auth(json!({"sub": "u-2"}));
        let echo = Target::Tool("echo");
        assert!(policy.decide_for(&mapped, echo, None).is_allowed());
        assert!(policy.visible_for(&mapped, echo));
        // Again, from the caller kept with the token: the same answer.
        assert!(policy.decide_for(&mapped, echo, None).is_allowed());
        let unverified = auth(json!({"sub": "u-3", "email_verified": false}));
        assert!(!policy.decide_for(&unverified, echo, None).is_allowed());
        assert!(!policy.visible_for(&unverified, echo));
        assert_eq!(
            policy.decide_for(&unverified, echo, None),
            policy.decide(&Subject::from_auth(&unverified), echo, None)
        );
    }

    #[test]
    fn dotted_claims_reach_into_objects() {
        let subject = Subject::new("u").claims(
            json!({"realm_access": {"roles": ["admin", 3]}, "https://x/groups": "eng"})
                .as_object()
                .cloned()
                .unwrap(),
        );
        assert_eq!(subject.claim_strings("realm_access.roles"), vec!["admin"]);
        assert_eq!(subject.claim_strings("https://x/groups"), vec!["eng"]);
        assert!(subject.claim_strings("realm_access.nope").is_empty());
    }
}
