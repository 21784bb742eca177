//! Renaming and describing an upstream's tools and prompts: the client sees the new name
//! (after the upstream's prefix with several upstreams, `fs__read`; alone with one, `read`)
//! and the new description; calls (`tools/call`, `prompts/get`, a prompt's
//! `completion/complete`) are mapped back to the upstream's own name.
//!
//! The policy and the audit see the upstream's **real** name (`fs__read_file`), never the new
//! one: a rule written for the real tool keeps holding whatever the tool is called, and a
//! rename cannot slip a call past it. The real name of a renamed tool is not callable under
//! its old name: the client has one name for each tool.

use std::collections::{BTreeMap, HashMap};

use crate::SEPARATOR;
use crate::error::GatewayError;

/// How one upstream's tools and prompts are shown to clients: per tool or prompt (by the
/// upstream's own name), a new name, a new description, or both. For
/// [`GatewayBuilder::tools`](crate::GatewayBuilder::tools).
///
/// ```
/// use mcp_oauth_gateway::ToolNames;
///
/// let names = ToolNames::new()
///     .rename("read_file", "read")
///     .describe("read_file", "Reads a file under /srv")
///     .rename_prompt("review", "critique");
/// assert!(!names.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct ToolNames {
    tools: BTreeMap<String, Shown>,
    prompts: BTreeMap<String, Shown>,
}

/// What the client sees of one tool instead of what the upstream says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Shown {
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
}

impl ToolNames {
    /// No tool renamed or described.
    pub fn new() -> Self {
        Self::default()
    }

    /// The upstream's tool `tool` is shown as `name` (1 to 64 letters, digits, `_` or `-`,
    /// prefix included: `NAME__name` must fit in 64).
    pub fn rename(mut self, tool: impl Into<String>, name: impl Into<String>) -> Self {
        self.tools.entry(tool.into()).or_default().name = Some(name.into());
        self
    }

    /// The upstream's tool `tool` is shown with `description` instead of its own.
    pub fn describe(mut self, tool: impl Into<String>, description: impl Into<String>) -> Self {
        self.tools.entry(tool.into()).or_default().description = Some(description.into());
        self
    }

    /// The upstream's prompt `prompt` is shown as `name` (the same rules as a tool's new
    /// name), and `prompts/get` of the new name gets the upstream's `prompt`.
    pub fn rename_prompt(mut self, prompt: impl Into<String>, name: impl Into<String>) -> Self {
        self.prompts.entry(prompt.into()).or_default().name = Some(name.into());
        self
    }

    /// The upstream's prompt `prompt` is shown with `description` instead of its own.
    pub fn describe_prompt(
        mut self,
        prompt: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        self.prompts.entry(prompt.into()).or_default().description = Some(description.into());
        self
    }

    /// Checks the table for upstream `upstream` as [`GatewayBuilder::build`](crate::GatewayBuilder::build)
    /// does, without building (for a configuration check).
    ///
    /// # Errors
    ///
    /// A new name that does not fit `^[a-zA-Z0-9_-]{1,64}$` with the prefix `upstream__`, or
    /// two tools that end up with the same name.
    pub fn check(&self, upstream: &str) -> Result<(), GatewayError> {
        Renames::new(upstream, self).map(|_| ())
    }

    /// Checks the table of the only upstream of a gateway of one, `upstream` (its name in
    /// messages; may be empty), without building: as [`check`](Self::check), without a
    /// prefix (a new name may have 64 characters).
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check).
    pub fn check_alone(&self, upstream: &str) -> Result<(), GatewayError> {
        Renames::alone(upstream, self).map(|_| ())
    }

    /// Whether no tool or prompt is renamed or described.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty() && self.prompts.is_empty()
    }
}

/// What a name the client sends stands for in one upstream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen<'a> {
    /// A new name: the upstream's tool is this one.
    Renamed(&'a str),
    /// The upstream's own name of a renamed tool: not a name the client was shown.
    Hidden,
    /// A name the table does not change.
    Same,
}

/// One upstream's tables, checked and indexed both ways: its tools' and its prompts'.
#[derive(Debug, Default)]
pub(crate) struct Renames {
    tools: Table,
    prompts: Table,
}

/// One upstream's new names and descriptions of one kind (tools or prompts).
#[derive(Debug, Default)]
pub(crate) struct Table {
    shown: HashMap<String, Shown>,
    /// New name → the upstream's own name.
    real: HashMap<String, String>,
}

impl Renames {
    /// Checks `names` for upstream `upstream` (its prefix, with several upstreams): each new
    /// name fits `^[a-zA-Z0-9_-]{1,64}$` with the prefix, and no two tools (or two prompts)
    /// end up with the same name.
    pub(crate) fn new(upstream: &str, names: &ToolNames) -> Result<Self, GatewayError> {
        let room = 64usize.saturating_sub(upstream.len() + SEPARATOR.len());
        let seen = format!("clients see {upstream}{SEPARATOR}NAME, at most 64 characters");
        Ok(Self {
            tools: Table::new(upstream, &names.tools, Kind::Tools, room, &seen)?,
            prompts: Table::new(upstream, &names.prompts, Kind::Prompts, room, &seen)?,
        })
    }

    /// Checks `names` for the only upstream of a gateway of one (named `upstream` in
    /// messages, if it has a name): no prefix, so a new name may have 64 characters.
    pub(crate) fn alone(upstream: &str, names: &ToolNames) -> Result<Self, GatewayError> {
        let label = if upstream.is_empty() {
            "the upstream"
        } else {
            upstream
        };
        let seen = "clients see NAME alone: one upstream, no prefix";
        Ok(Self {
            tools: Table::new(label, &names.tools, Kind::Tools, 64, seen)?,
            prompts: Table::new(label, &names.prompts, Kind::Prompts, 64, seen)?,
        })
    }

    /// The tools' table.
    pub(crate) fn tools(&self) -> &Table {
        &self.tools
    }

    /// The prompts' table.
    pub(crate) fn prompts(&self) -> &Table {
        &self.prompts
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tools.is_empty() && self.prompts.is_empty()
    }
}

/// Which table, for messages.
#[derive(Clone, Copy)]
enum Kind {
    Tools,
    Prompts,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Self::Tools => "tool names",
            Self::Prompts => "prompt names",
        }
    }

    /// Before an item's name in a message: nothing for a tool (as the messages always
    /// said), `prompt ` for a prompt.
    fn noun(self) -> &'static str {
        match self {
            Self::Tools => "",
            Self::Prompts => "prompt ",
        }
    }
}

impl Table {
    fn new(
        upstream: &str,
        names: &BTreeMap<String, Shown>,
        kind: Kind,
        room: usize,
        seen: &str,
    ) -> Result<Self, GatewayError> {
        let error = |reason: String| GatewayError::Config {
            what: kind.what(),
            reason,
        };
        let noun = kind.noun();
        let mut real = HashMap::new();
        for (item, shown) in names {
            let Some(name) = &shown.name else { continue };
            let valid = (1..=room).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(error(format!(
                    "{upstream}: {noun}{item} renamed to {name:?}: use 1 to {room} letters, digits, '_' or '-' ({seen})"
                )));
            }
            if let Some(other) = real.insert(name.clone(), item.clone()) {
                return Err(error(format!(
                    "{upstream}: {noun}{other} and {item} are both renamed to {name}; give each its own name"
                )));
            }
        }
        for (item, shown) in names {
            let keeps_its_name = shown.name.is_none();
            if keeps_its_name && let Some(other) = real.get(item) {
                return Err(error(format!(
                    "{upstream}: {noun}{other} is renamed to {item}, which {item} itself is still called; rename {item} too, or pick another name"
                )));
            }
        }
        Ok(Self {
            shown: names.clone().into_iter().collect(),
            real,
        })
    }

    /// What the client sees of the upstream's item `item`, if the table changes it.
    pub(crate) fn shown(&self, item: &str) -> Option<&Shown> {
        self.shown.get(item)
    }

    /// What `name`, as the client sends it (without the prefix), stands for.
    pub(crate) fn seen<'a>(&'a self, name: &str) -> Seen<'a> {
        if let Some(real) = self.real.get(name) {
            return Seen::Renamed(real);
        }
        match self.shown.get(name) {
            Some(Shown { name: Some(_), .. }) => Seen::Hidden,
            _ => Seen::Same,
        }
    }

    /// Whether the upstream's own item `item` is hidden by another item renamed to its name
    /// (a collision that only the upstream's list shows).
    pub(crate) fn shadows(&self, item: &str) -> Option<&str> {
        let keeps_its_name = self.shown.get(item).is_none_or(|s| s.name.is_none());
        keeps_its_name
            .then(|| self.real.get(item).map(String::as_str))
            .flatten()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways_and_the_old_name_is_hidden() {
        let names = ToolNames::new()
            .rename("read_file", "read")
            .describe("read_file", "Reads")
            .describe("stat", "Stats");
        let r = Renames::new("fs", &names).expect("valid");
        assert_eq!(r.tools().seen("read"), Seen::Renamed("read_file"));
        assert_eq!(r.tools().seen("read_file"), Seen::Hidden);
        assert_eq!(r.tools().seen("stat"), Seen::Same);
        assert_eq!(r.tools().seen("other"), Seen::Same);
        assert_eq!(
            r.tools()
                .shown("read_file")
                .and_then(|s| s.description.as_deref()),
            Some("Reads")
        );
        assert_eq!(r.tools().shadows("read"), Some("read_file"));
        assert_eq!(r.tools().shadows("read_file"), None);
        // Two tools may swap names.
        let swap = ToolNames::new().rename("a", "b").rename("b", "a");
        let r = Renames::new("fs", &swap).expect("a swap is fine");
        assert_eq!(r.tools().seen("a"), Seen::Renamed("b"));
        assert_eq!(r.tools().shadows("a"), None);
    }

    #[test]
    fn collisions_and_bad_names_are_refused_with_what_to_fix() {
        let twice = ToolNames::new().rename("a", "x").rename("b", "x");
        let err = Renames::new("fs", &twice)
            .expect_err("collision")
            .to_string();
        assert!(err.contains("a and b are both renamed to x"), "{err}");
        let onto = ToolNames::new().rename("a", "b").describe("b", "B");
        let err = Renames::new("fs", &onto)
            .expect_err("collision")
            .to_string();
        assert!(err.contains("which b itself is still called"), "{err}");
        for bad in ["", "a.b", "a b", &"x".repeat(61)] {
            let names = ToolNames::new().rename("a", bad);
            let err = Renames::new("fs", &names).expect_err(bad).to_string();
            assert!(err.contains("1 to 60"), "{err}");
        }
        assert!(Renames::new("fs", &ToolNames::new().rename("a", "x".repeat(60))).is_ok());
    }

    #[test]
    fn prompts_have_a_table_of_their_own() {
        let names = ToolNames::new()
            .rename("read", "r")
            .rename_prompt("review", "read")
            .describe_prompt("review", "Reviews a file");
        let r = Renames::new("fs", &names).expect("a tool and a prompt may share a name");
        assert_eq!(r.prompts().seen("read"), Seen::Renamed("review"));
        assert_eq!(r.prompts().seen("review"), Seen::Hidden);
        assert_eq!(r.tools().seen("read"), Seen::Hidden);
        assert_eq!(
            r.prompts()
                .shown("review")
                .and_then(|s| s.description.as_deref()),
            Some("Reviews a file")
        );
        let twice = ToolNames::new()
            .rename_prompt("a", "x")
            .rename_prompt("b", "x");
        let err = Renames::new("fs", &twice).expect_err("collision");
        assert!(
            err.to_string()
                .contains("fs: prompt a and b are both renamed to x"),
            "{err}"
        );
        assert!(err.to_string().contains("prompt names"), "{err}");
        let err = Renames::new("fs", &ToolNames::new().rename_prompt("a", "a.b"))
            .expect_err("bad name")
            .to_string();
        assert!(
            err.contains("prompt a renamed to \"a.b\": use 1 to 60"),
            "{err}"
        );
    }
}
