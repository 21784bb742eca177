//! What a decision says: the effect, the rules that decided it, the scopes a step-up needs,
//! and a reason a person can read.

use std::fmt;

use serde_json::Value;

use super::subject::Membership;

/// What is being asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target<'a> {
    /// `tools/call` of this tool (listed by `tools/list`).
    Tool(&'a str),
    /// `prompts/get` of this prompt (listed by `prompts/list`).
    Prompt(&'a str),
    /// `resources/read` of this URI (listed by `resources/list`).
    Resource(&'a str),
}

impl<'a> Target<'a> {
    /// The target and arguments of a JSON-RPC request: `tools/call` (`name`, `arguments`),
    /// `prompts/get` (`name`, `arguments`) or `resources/read` (`uri`). `None` for any other
    /// method or a request without the name.
    pub fn from_request(method: &str, params: &'a Value) -> Option<(Self, Option<&'a Value>)> {
        let name = |key: &str| params.get(key).and_then(Value::as_str);
        Some(match method {
            "tools/call" => (Self::Tool(name("name")?), params.get("arguments")),
            "prompts/get" => (Self::Prompt(name("name")?), params.get("arguments")),
            "resources/read" => (Self::Resource(name("uri")?), None),
            _ => return None,
        })
    }

    pub(crate) fn name(&self) -> &'a str {
        match self {
            Self::Tool(n) | Self::Prompt(n) | Self::Resource(n) => n,
        }
    }
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tool(n) => write!(f, "tool `{n}`"),
            Self::Prompt(n) => write!(f, "prompt `{n}`"),
            Self::Resource(n) => write!(f, "resource `{n}`"),
        }
    }
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// Go ahead.
    Allow,
    /// Refused. Answer without saying whether the tool exists.
    Deny,
    /// A permit applies but the token lacks its step-up scopes: answer HTTP 403
    /// `insufficient_scope` naming [`Decision::missing_scopes`].
    StepUp,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::StepUp => "step-up",
        })
    }
}

/// A decision: its effect, the ids of the rules that decided it, the step-up scopes the token
/// lacks, and a reason for logs and `explain` (never shown to the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub(crate) effect: Effect,
    pub(crate) rule_ids: Vec<String>,
    pub(crate) missing_scopes: Vec<String>,
    pub(crate) reason: String,
}

impl Decision {
    pub(crate) fn deny(reason: impl Into<String>) -> Self {
        Self {
            effect: Effect::Deny,
            rule_ids: Vec::new(),
            missing_scopes: Vec::new(),
            reason: reason.into(),
        }
    }

    /// Allow, deny or step-up.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Whether the request may go ahead.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// The ids of the rules that decided (the permits that allowed, or the forbids that
    /// denied; none when nothing permitted), sorted.
    pub fn rule_ids(&self) -> &[String] {
        &self.rule_ids
    }

    /// For [`Effect::StepUp`]: the scopes to ask for.
    pub fn missing_scopes(&self) -> &[String] {
        &self.missing_scopes
    }

    /// Why, in words.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.effect)?;
        if !self.rule_ids.is_empty() {
            write!(f, " by {}", self.rule_ids.join(", "))?;
        }
        if !self.missing_scopes.is_empty() {
            write!(f, " (missing scopes: {})", self.missing_scopes.join(" "))?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The scopes granted out of those requested.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeGrant {
    /// The requested scopes the policy allows, in the order asked.
    pub granted: Vec<String>,
    /// The requested scopes it does not.
    pub refused: Vec<String>,
    /// The rules that granted, sorted.
    pub rule_ids: Vec<String>,
}

/// A decision with what went into it, for `explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The decision.
    pub decision: Decision,
    /// The user's groups and where each came from.
    pub groups: Vec<Membership>,
    /// The arguments after canonicalisation (paths normalised, URLs as scheme and host).
    pub arguments: Value,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "decision: {}", self.decision.effect)?;
        let rules = if self.decision.rule_ids.is_empty() {
            "(none)".to_owned()
        } else {
            self.decision.rule_ids.join(", ")
        };
        writeln!(f, "rules: {rules}")?;
        if !self.decision.missing_scopes.is_empty() {
            writeln!(
                f,
                "missing scopes: {}",
                self.decision.missing_scopes.join(" ")
            )?;
        }
        writeln!(f, "reason: {}", self.decision.reason)?;
        if self.groups.is_empty() {
            writeln!(f, "groups: (none)")?;
        }
        for m in &self.groups {
            writeln!(f, "group: {} (from {})", m.group, m.source)?;
        }
        if !self.arguments.is_null() {
            writeln!(f, "arguments: {}", self.arguments)?;
        }
        Ok(())
    }
}
