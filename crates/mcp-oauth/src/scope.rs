//! Scope hierarchies: a broader scope implies narrower ones (MCP 2026-07-28, "Servers MUST
//! account for scope hierarchies … when deciding whether a token is sufficient").

use std::collections::{HashMap, HashSet};

/// Which scopes imply which.
///
/// Two kinds of rule, both off by default:
/// - explicit: `implies("admin", ["files:write"])`, applied transitively;
/// - by prefix: with `prefix_separator(':')`, a scope implies every scope that extends it
///   after the separator (`files` implies `files:read` and `files:read:meta`).
///
/// ```
/// use mcp_oauth::scope::ScopeHierarchy;
///
/// let h = ScopeHierarchy::new()
///     .implies("admin", ["mcp:write"])
///     .implies("mcp:write", ["mcp:read"]);
/// let granted = vec!["admin".to_string()];
/// assert!(h.satisfies(&granted, "mcp:read"));
/// assert!(!h.satisfies(&["mcp:read".to_string()], "admin"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ScopeHierarchy {
    implies: HashMap<String, Vec<String>>,
    separator: Option<char>,
}

impl ScopeHierarchy {
    /// No implications: a scope satisfies only itself.
    pub fn new() -> Self {
        Self::default()
    }

    /// `broader` implies each of `narrower` (and, transitively, what they imply).
    #[must_use]
    pub fn implies<I, S>(mut self, broader: impl Into<String>, narrower: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.implies
            .entry(broader.into())
            .or_default()
            .extend(narrower.into_iter().map(Into::into));
        self
    }

    /// A scope implies every scope that extends it after `separator`.
    #[must_use]
    pub fn prefix_separator(mut self, separator: char) -> Self {
        self.separator = Some(separator);
        self
    }

    /// Whether this hierarchy adds anything beyond exact matches.
    pub fn is_flat(&self) -> bool {
        self.implies.is_empty() && self.separator.is_none()
    }

    /// Whether the granted scopes satisfy `needed`.
    pub fn satisfies(&self, granted: &[String], needed: &str) -> bool {
        if granted.iter().any(|g| g == needed) {
            return true;
        }
        if self.is_flat() {
            return false;
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut stack: Vec<&str> = granted.iter().map(String::as_str).collect();
        while let Some(scope) = stack.pop() {
            if !seen.insert(scope) {
                continue;
            }
            if scope == needed || self.extends(needed, scope) {
                return true;
            }
            if let Some(narrower) = self.implies.get(scope) {
                stack.extend(narrower.iter().map(String::as_str));
            }
        }
        false
    }

    fn extends(&self, needed: &str, broader: &str) -> bool {
        let Some(sep) = self.separator else {
            return false;
        };
        needed
            .strip_prefix(broader)
            .is_some_and(|rest| rest.starts_with(sep))
    }
}

/// The scopes to advertise: `offline_access` dropped (MCP 2026-07-28: protected resources
/// SHOULD NOT list it in metadata or challenges).
pub(crate) fn advertised<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Vec<String> {
    scopes
        .into_iter()
        .map(Into::into)
        .filter(|s| s != "offline_access")
        .collect()
}

/// Splits a space-separated scope string (RFC 6749 §3.3) into scopes, dropping empties
/// and duplicates.
pub fn parse_scope_list(list: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for scope in list.split_ascii_whitespace() {
        if !out.iter().any(|s| s == scope) {
            out.push(scope.to_owned());
        }
    }
    out
}

/// Scopes an issuer lists for OpenID Connect (the ID token and userinfo), not for a resource:
/// never advertised by default. The `profile`/`email`/`address`/`phone` claim names are here
/// too because some issuers (Auth0) list them as scopes.
pub const IDENTITY_SCOPES: &[&str] = &[
    "openid",
    "offline_access",
    "profile",
    "email",
    "address",
    "phone",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "picture",
    "website",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "updated_at",
    "email_verified",
    "phone_number",
    "phone_number_verified",
];

/// The scopes an MCP server advertises when the operator names none: the resource scopes the
/// issuer lists in its metadata (its order, without [`IDENTITY_SCOPES`] and anything that is
/// not a scope token), or, when it lists none, the scopes the server's tools require. Returns
/// them with the tool scopes left out because the issuer does publish a list without them:
/// issuers such as oidc-provider refuse a client registration that names a scope they do not
/// support, so advertising those would break every client.
///
/// An empty advertisement makes the TypeScript SDK clients and the MCP Inspector ask for no
/// scope, which such issuers refuse: a caller that gets none should ask the operator to name
/// the scopes.
///
/// ```
/// use mcp_oauth::scope::default_advertisement;
///
/// let issuer = ["openid", "offline_access", "mcp:read", "mcp:write"].map(String::from);
/// let (scopes, left_out) = default_advertisement(Some(&issuer), &["admin"]);
/// assert_eq!(scopes, ["mcp:read", "mcp:write"]);
/// assert_eq!(left_out, ["admin"]);
/// let (scopes, _) = default_advertisement(None, &["admin"]);
/// assert_eq!(scopes, ["admin"]);
/// ```
pub fn default_advertisement(
    offered: Option<&[String]>,
    tool_scopes: &[&str],
) -> (Vec<String>, Vec<String>) {
    let mut scopes: Vec<String> = Vec::new();
    for scope in offered.unwrap_or_default() {
        if is_valid_scope(scope)
            && !IDENTITY_SCOPES.contains(&scope.as_str())
            && !scopes.contains(scope)
        {
            scopes.push(scope.clone());
        }
    }
    let lists_resource_scopes = !scopes.is_empty();
    let mut left_out = Vec::new();
    for scope in tool_scopes {
        if scopes.iter().any(|s| s == scope) {
            continue;
        }
        if lists_resource_scopes {
            left_out.push((*scope).to_owned());
        } else {
            scopes.push((*scope).to_owned());
        }
    }
    (scopes, left_out)
}

/// Whether `scope` is a valid scope token (RFC 6749 §3.3: `%x21 / %x23-5B / %x5D-7E`), which
/// also makes it safe inside a quoted challenge parameter.
pub fn is_valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flat_hierarchy_matches_exactly() {
        let h = ScopeHierarchy::new();
        assert!(h.satisfies(&g(&["a", "b"]), "b"));
        assert!(!h.satisfies(&g(&["a"]), "a:read"));
    }

    #[test]
    fn explicit_implications_are_transitive_and_cycle_safe() {
        let h = ScopeHierarchy::new()
            .implies("a", ["b"])
            .implies("b", ["c"])
            .implies("c", ["a"]);
        assert!(h.satisfies(&g(&["a"]), "c"));
        assert!(!h.satisfies(&g(&["a"]), "d"));
    }

    #[test]
    fn prefix_rule_needs_the_separator() {
        let h = ScopeHierarchy::new().prefix_separator(':');
        assert!(h.satisfies(&g(&["files"]), "files:read"));
        assert!(h.satisfies(&g(&["files"]), "files:read:meta"));
        assert!(!h.satisfies(&g(&["files"]), "filesystem"));
        assert!(!h.satisfies(&g(&["files:read"]), "files"));
    }

    #[test]
    fn scope_tokens_are_validated() {
        assert!(is_valid_scope("mcp:read"));
        assert!(is_valid_scope("https://graph.microsoft.com/.default"));
        assert!(!is_valid_scope("a b"));
        assert!(!is_valid_scope("a\"b"));
        assert!(!is_valid_scope("a\\b"));
        assert!(!is_valid_scope(""));
        assert_eq!(parse_scope_list(" a  b a "), vec!["a", "b"]);
    }
}
