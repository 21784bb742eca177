//! Allow/deny expectations in TOML, run against a policy (for `mcp-oauth policy test`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use super::decision::{Effect, Target};
use super::engine::Policy;
use super::error::{Origin, PolicyError, line_of};
use super::subject::Subject;

/// A set of expectations, read from TOML:
///
/// ```toml
/// [[case]]
/// name = "alice reads the team folder"
/// as = { email = "alice@example.com", groups = ["eng"], scopes = ["files:read"] }
/// tool = "read_file"
/// args = { path = "/srv/team/a.md" }
/// expect = "allow"              # allow | deny | step-up
/// rules = ["eng-read"]          # optional: the rule ids that must decide
///
/// [[case]]
/// name = "bob cannot sign in"
/// as = { email = "bob@gmail.com" }
/// sign_in = true
/// expect = "deny"
/// ```
///
/// A case asks one of: `tool` (with `args`), `prompt`, `resource`, `list_tool` (is the tool
/// listed), `sign_in = true`, or `scopes` (requested; `expect` is then ignored and `granted`
/// lists the scopes that must be granted).
#[derive(Debug, Clone)]
pub struct Fixtures {
    cases: Vec<(Case, usize)>,
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    case: Vec<toml::Spanned<Case>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(rename = "as")]
    user: As,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    list_tool: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    sign_in: bool,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    granted: Option<Vec<String>>,
    #[serde(default)]
    args: Option<toml::Value>,
    #[serde(default)]
    expect: Option<String>,
    #[serde(default)]
    rules: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct As {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    claims: BTreeMap<String, toml::Value>,
}

impl As {
    fn subject(&self) -> Subject {
        let sub = self
            .sub
            .clone()
            .or_else(|| self.email.clone())
            .unwrap_or_else(|| "fixture-user".to_owned());
        let mut subject = Subject::new(sub).scopes(self.scopes.iter().cloned());
        if let Some(email) = &self.email {
            subject = subject.email(email);
        }
        if let Some(client) = &self.client_id {
            subject = subject.client_id(client);
        }
        let claims = self
            .claims
            .iter()
            .map(|(k, v)| (k.clone(), to_json(v)))
            .collect();
        subject = subject.claims(claims);
        for group in &self.groups {
            subject = subject.group(group, "fixture");
        }
        subject
    }
}

fn to_json(value: &toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureFailure {
    /// The case's name.
    pub name: String,
    /// Where it is.
    pub origin: Origin,
    /// What was expected and what happened.
    pub message: String,
}

impl fmt::Display for FixtureFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: case `{}`: {}", self.origin, self.name, self.message)
    }
}

/// What running fixtures found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixtureReport {
    /// How many cases held.
    pub passed: usize,
    /// The cases that did not.
    pub failures: Vec<FixtureFailure>,
}

impl FixtureReport {
    /// Whether every case held.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty()
    }
}

impl Fixtures {
    /// Reads fixtures from TOML; `name` is used in messages.
    ///
    /// # Errors
    ///
    /// The TOML is malformed, or a case does not ask exactly one thing, or has an unknown
    /// `expect`.
    pub fn from_toml(text: &str, name: &str) -> Result<Self, PolicyError> {
        let file: FileToml = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of(text, span.start));
            PolicyError::one(None, Origin::new(name, line), e.message().to_owned())
        })?;
        let mut cases = Vec::new();
        for case in file.case {
            let line = line_of(text, case.span().start);
            let case = case.into_inner();
            let asks = [
                case.tool.is_some(),
                case.list_tool.is_some(),
                case.prompt.is_some(),
                case.resource.is_some(),
                case.sign_in,
                case.scopes.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            let origin = Origin::new(name, Some(line));
            if asks != 1 {
                return Err(PolicyError::one(
                    Some(&case.name),
                    origin,
                    "a case asks exactly one of tool, list_tool, prompt, resource, sign_in, scopes",
                ));
            }
            if case.scopes.is_some() {
                if case.granted.is_none() {
                    return Err(PolicyError::one(
                        Some(&case.name),
                        origin,
                        "a `scopes` case needs `granted`",
                    ));
                }
            } else if !matches!(case.expect.as_deref(), Some("allow" | "deny" | "step-up")) {
                return Err(PolicyError::one(
                    Some(&case.name),
                    origin,
                    "`expect` is one of allow, deny, step-up",
                ));
            }
            cases.push((case, line));
        }
        Ok(Self {
            cases,
            name: name.to_owned(),
        })
    }

    /// How many cases there are.
    pub fn len(&self) -> usize {
        self.cases.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// Runs every case against the policy.
    pub fn run(&self, policy: &Policy) -> FixtureReport {
        let mut report = FixtureReport::default();
        for (case, line) in &self.cases {
            let subject = case.user.subject();
            let fail = |message: String| FixtureFailure {
                name: case.name.clone(),
                origin: Origin::new(&self.name, Some(*line)),
                message,
            };
            if let (Some(requested), Some(expected)) = (&case.scopes, &case.granted) {
                let grant = policy.grant_scopes(&subject, requested);
                if &grant.granted == expected {
                    report.passed += 1;
                } else {
                    report.failures.push(fail(format!(
                        "expected granted {expected:?}, got {:?}",
                        grant.granted
                    )));
                }
                continue;
            }
            let args = case.args.as_ref().map(to_json);
            let decision = if let Some(tool) = &case.tool {
                policy.decide(&subject, Target::Tool(tool), args.as_ref())
            } else if let Some(tool) = &case.list_tool {
                policy.list_decision(&subject, Target::Tool(tool))
            } else if let Some(prompt) = &case.prompt {
                policy.decide(&subject, Target::Prompt(prompt), args.as_ref())
            } else if let Some(uri) = &case.resource {
                policy.decide(&subject, Target::Resource(uri), None)
            } else {
                policy.sign_in(&subject)
            };
            let got = match decision.effect() {
                Effect::Allow => "allow",
                Effect::Deny => "deny",
                Effect::StepUp => "step-up",
            };
            let expected = case.expect.as_deref().unwrap_or_default();
            if got != expected {
                report
                    .failures
                    .push(fail(format!("expected {expected}, got {decision}")));
                continue;
            }
            if let Some(rules) = &case.rules {
                let mut rules = rules.clone();
                rules.sort();
                if rules != decision.rule_ids() {
                    report.failures.push(fail(format!(
                        "expected rules {rules:?}, got {:?}",
                        decision.rule_ids()
                    )));
                    continue;
                }
            }
            report.passed += 1;
        }
        report
    }
}
