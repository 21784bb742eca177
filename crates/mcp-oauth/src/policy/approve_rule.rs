//! `[[policy.approve]]`: which tool calls wait for a human's approval, and who may give it.
//!
//! ```toml
//! [[policy.approve]]
//! id = "destructive"
//! when = { annotation = "destructiveHint" }   # every tool the server marks destructive
//! approvers = ["group:ops"]                   # default: the caller themself
//!
//! [[policy.approve]]
//! tools = ["fs__delete_*"]
//! ```
//!
//! A rule names `tools` (names or globs), `when` (an annotation the tool has: `readOnlyHint`,
//! `destructiveHint`, `idempotentHint` or `openWorldHint`), or both (the named tools that
//! have it). The first rule that matches a tool is its rule. Approval comes after the
//! allow: a call the rules deny is denied without asking anyone.

use serde::Deserialize;

use super::error::{Origin, PolicyError};

/// Who may approve a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Approvers {
    /// The user who made the call.
    Caller,
    /// Members of this group.
    Group(String),
}

impl Approvers {
    /// Whether `approver` (in `groups`) may approve a call `caller` made.
    pub fn admits(&self, caller: &str, approver: &str, groups: &[String]) -> bool {
        match self {
            Self::Caller => !approver.is_empty() && approver == caller,
            Self::Group(group) => !approver.is_empty() && groups.iter().any(|g| g == group),
        }
    }

    /// `caller`, or `group:NAME`.
    fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "caller" => Some(Self::Caller),
            other => other
                .strip_prefix("group:")
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(|g| Self::Group(g.to_owned())),
        }
    }
}

impl std::fmt::Display for Approvers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Caller => f.write_str("caller"),
            Self::Group(group) => write!(f, "group:{group}"),
        }
    }
}

/// The annotations a `when` may name.
const ANNOTATIONS: [&str; 4] = [
    "readOnlyHint",
    "destructiveHint",
    "idempotentHint",
    "openWorldHint",
];

/// One `[[policy.approve]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproveRule {
    id: String,
    tools: Vec<String>,
    annotation: Option<String>,
    approvers: Vec<Approvers>,
}

impl ApproveRule {
    /// A rule `id` for the tools matching `tools` (globs), approved by the caller.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(
        id: impl Into<String>,
        tools: I,
    ) -> Self {
        Self {
            id: id.into(),
            tools: tools.into_iter().map(Into::into).collect(),
            annotation: None,
            approvers: vec![Approvers::Caller],
        }
    }

    /// Only tools with this annotation true (`destructiveHint`, …).
    #[must_use]
    pub fn when_annotation(mut self, annotation: impl Into<String>) -> Self {
        self.annotation = Some(annotation.into());
        self
    }

    /// Who may approve (any of them), instead of the caller.
    #[must_use]
    pub fn approvers<I: IntoIterator<Item = Approvers>>(mut self, approvers: I) -> Self {
        self.approvers = approvers.into_iter().collect();
        self
    }

    /// The rule's id (`approve_N` when the file gives none).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tool globs (`["*"]` when the rule names only an annotation).
    pub fn tools(&self) -> &[String] {
        &self.tools
    }

    /// The annotation the tool must have, if any.
    pub fn annotation(&self) -> Option<&str> {
        self.annotation.as_deref()
    }

    /// Who may approve: any one of them.
    pub fn approver_list(&self) -> &[Approvers] {
        &self.approvers
    }

    /// Whether `approver` (with `groups`) may approve a call `caller` made.
    pub fn may_approve(
        &self,
        caller: &str,
        approver: &str,
        groups: &[String],
    ) -> Option<&Approvers> {
        self.approvers
            .iter()
            .find(|a| a.admits(caller, approver, groups))
    }
}

/// `[[policy.approve]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveToml {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    when: Option<WhenToml>,
    #[serde(default)]
    approvers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenToml {
    annotation: String,
}

impl ApproveToml {
    /// The rule, checked; `index` (from 0) names it when it has no id.
    pub(crate) fn build(self, index: usize, at: &Origin) -> Result<ApproveRule, PolicyError> {
        let id = self.id.unwrap_or_else(|| format!("approve_{}", index + 1));
        let fail = |message: String| PolicyError::one(Some(&id), at.clone(), message);
        if self.tools.is_empty() && self.when.is_none() {
            return Err(fail(
                "an approve rule needs `tools` (names or globs) or `when = { annotation = \"destructiveHint\" }`, or both".to_owned(),
            ));
        }
        let annotation = match self.when {
            Some(when) if ANNOTATIONS.contains(&when.annotation.as_str()) => Some(when.annotation),
            Some(when) => {
                return Err(fail(format!(
                    "when = {{ annotation = \"{}\" }}: the annotations are {}",
                    when.annotation,
                    ANNOTATIONS.join(", ")
                )));
            }
            None => None,
        };
        let mut approvers = Vec::new();
        for text in &self.approvers {
            match Approvers::parse(text) {
                Some(a) => approvers.push(a),
                None => {
                    return Err(fail(format!(
                        "approvers: \"{text}\" is neither \"caller\" nor \"group:NAME\""
                    )));
                }
            }
        }
        if approvers.is_empty() {
            approvers.push(Approvers::Caller);
        }
        let tools = if self.tools.is_empty() {
            vec!["*".to_owned()]
        } else {
            self.tools
        };
        Ok(ApproveRule {
            id,
            tools,
            annotation,
            approvers,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::{Catalog, Policy, PolicyConfig, ToolInfo};

    fn catalog() -> Catalog {
        let schema = json!({"type": "object", "properties": {"path": {"type": "string"}}});
        Catalog::new()
            .tool(ToolInfo::new("read_file", schema.clone()).read_only(true))
            .tool(ToolInfo::new("delete_file", schema.clone()))
            .tool(ToolInfo::new("write_file", schema).destructive(false))
    }

    fn policy(rules: &str) -> Result<Policy, PolicyError> {
        let text = format!(
            "[[policy.rule]]\nid = \"all\"\nwho = {{ subjects = [\"alice\"] }}\ntools = [\"*\"]\n\n{rules}"
        );
        Policy::new(PolicyConfig::from_toml(&text, "policy.toml")?, catalog())
    }

    #[test]
    fn a_rule_matches_by_annotation_by_name_or_both() {
        let policy = policy(
            "[[policy.approve]]\nwhen = { annotation = \"destructiveHint\" }\napprovers = [\"group:ops\", \"caller\"]\n\n\
             [[policy.approve]]\nid = \"writes\"\ntools = [\"write_*\"]\n",
        )
        .expect("policy");
        let destructive = policy.approval("delete_file").expect("destructive");
        assert_eq!(destructive.id(), "approve_1");
        assert_eq!(
            destructive.approver_list(),
            [Approvers::Group("ops".into()), Approvers::Caller]
        );
        assert!(
            policy.approval("read_file").is_none(),
            "read-only is not destructive"
        );
        let writes = policy.approval("write_file").expect("by name");
        assert_eq!(writes.id(), "writes");
        assert_eq!(writes.approver_list(), [Approvers::Caller], "the default");
        assert!(policy.approval("unknown").is_none());

        // Who may approve: the group's members, or the caller themself.
        assert_eq!(
            destructive.may_approve("alice", "bob", &["ops".into()]),
            Some(&Approvers::Group("ops".into()))
        );
        assert_eq!(
            destructive.may_approve("alice", "alice", &[]),
            Some(&Approvers::Caller)
        );
        assert_eq!(
            destructive.may_approve("alice", "bob", &["eng".into()]),
            None
        );
        assert_eq!(writes.may_approve("alice", "bob", &["ops".into()]), None);
        assert_eq!(writes.may_approve("", "", &[]), None);
    }

    #[test]
    fn bad_rules_are_errors_naming_the_rule_and_line() {
        for (rules, expected) in [
            (
                "[[policy.approve]]\napprovers = [\"caller\"]\n",
                "needs `tools`",
            ),
            (
                "[[policy.approve]]\nwhen = { annotation = \"dangerous\" }\n",
                "the annotations are",
            ),
            (
                "[[policy.approve]]\ntools = [\"delete_file\"]\napprovers = [\"ops\"]\n",
                "neither \"caller\" nor \"group:NAME\"",
            ),
            (
                "[[policy.approve]]\ntools = [\"drop_*\"]\n",
                "`drop_*` matches no tool",
            ),
            (
                "[[policy.approve]]\nid = \"x\"\ntools = [\"delete_file\"]\n[[policy.approve]]\nid = \"x\"\ntools = [\"write_file\"]\n",
                "two approve rules",
            ),
            (
                "[[policy.approve]]\ntools = [\"delete_file\"]\nexpires = \"5m\"\n",
                "unknown field",
            ),
        ] {
            let err = policy(rules).expect_err(rules).to_string();
            assert!(err.contains(expected), "{rules}: {err}");
            assert!(
                err.contains("policy.toml") || err.contains("rule `approve_1`"),
                "names where: {err}"
            );
        }
    }
}
