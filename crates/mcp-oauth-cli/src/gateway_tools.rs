//! `[upstream.tools.TOOL]` and `[upstream.prompts.PROMPT]` of the gateway's configuration
//! file: an upstream's tool (prompt) shown to clients under a new name, with a new
//! description, or both (with one upstream, without its prefix):
//!
//! ```toml
//! [[upstream]]
//! name = "fs"
//! command = ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv"]
//!
//! [upstream.tools.read_text_file]
//! name = "read"
//! description = "Reads a UTF-8 file under /srv"
//!
//! [upstream.prompts.review]
//! name = "critique"
//! ```
//!
//! File-only: there is no flag for it. Policy rules keep using the upstream's own name
//! (`fs__read_text_file`).

use std::fmt::Write as _;

use toml::de::DeValue;

/// The fields of a `[upstream.tools.TOOL]` table.
const FIELDS: &[&str] = &["name", "description"];

/// One `[upstream.tools.TOOL]` (or `[upstream.prompts.PROMPT]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolSpec {
    /// A prompt's table, not a tool's.
    pub(crate) prompt: bool,
    /// The upstream's own name of the tool (prompt).
    pub(crate) tool: String,
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
}

/// The `tools` value of an `[[upstream]]` (`prompts` when `prompt`); errors as (offset,
/// message).
pub(crate) fn parse(
    value: &toml::Spanned<DeValue<'_>>,
    errors: &mut Vec<(usize, String)>,
    prompt: bool,
) -> Vec<ToolSpec> {
    let (kind, item) = if prompt {
        ("prompts", "PROMPT")
    } else {
        ("tools", "TOOL")
    };
    let DeValue::Table(table) = value.get_ref() else {
        errors.push((
            value.span().start,
            format!("[[upstream]] {kind}: expected tables, [upstream.{kind}.{item}] with name = \"NEW\" and/or description = \"…\""),
        ));
        return Vec::new();
    };
    let mut tools = Vec::new();
    for (tool, fields) in table.iter() {
        let tool = tool.get_ref().to_string();
        let DeValue::Table(fields) = fields.get_ref() else {
            errors.push((
                value.span().start,
                format!("[upstream.{kind}.{tool}]: expected a table with name = \"NEW\" and/or description = \"…\""),
            ));
            continue;
        };
        let mut spec = ToolSpec {
            prompt,
            tool: tool.clone(),
            name: None,
            description: None,
        };
        for (key, v) in fields.iter() {
            let DeValue::String(text) = v.get_ref() else {
                errors.push((
                    v.span().start,
                    format!(
                        "[upstream.{kind}.{tool}] {}: expected a string",
                        key.get_ref()
                    ),
                ));
                continue;
            };
            match key.get_ref().as_ref() {
                "name" => spec.name = Some(text.to_string()),
                "description" => spec.description = Some(text.to_string()),
                other => errors.push((
                    key.span().start,
                    format!(
                        "unknown field `{other}` in [upstream.{kind}.{tool}]; the fields are {}",
                        FIELDS.join(", ")
                    ),
                )),
            }
        }
        if spec.name.is_none() && spec.description.is_none() {
            errors.push((
                value.span().start,
                format!(
                    "[upstream.{kind}.{tool}]: give name = \"NEW\", description = \"…\", or both"
                ),
            ));
        }
        tools.push(spec);
    }
    tools
}

/// `[upstream.tools.TOOL]` and `[upstream.prompts.PROMPT]` tables as the file writes them.
pub(crate) fn print(out: &mut String, tools: &[ToolSpec], quote: impl Fn(&str) -> String) {
    for t in tools {
        let kind = if t.prompt { "prompts" } else { "tools" };
        let _ = writeln!(out, "\n[upstream.{kind}.{}]", quote(&t.tool));
        if let Some(name) = &t.name {
            let _ = writeln!(out, "name = {}", quote(name));
        }
        if let Some(description) = &t.description {
            let _ = writeln!(out, "description = {}", quote(description));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway_config::{UpstreamSpec, check_tools as check, parse, print, tool_names};
    use mcp_oauth_gateway::ToolNames;

    const FILE: &str = r#"
[[upstream]]
name = "fs"
command = ["server"]

[upstream.tools.read_text_file]
name = "read"
description = "Reads a file"

[upstream.tools.stat]
description = "File facts"

[[upstream]]
name = "web"
url = "http://127.0.0.1:1/mcp"
tools = { fetch = { name = "get" } }
"#;

    #[test]
    fn tables_are_read_checked_and_printed_back() {
        let config = parse(FILE, "g.toml").expect("valid");
        let fs = &config.upstreams[0];
        assert_eq!(
            fs.tools,
            [
                ToolSpec {
                    prompt: false,
                    tool: "read_text_file".into(),
                    name: Some("read".into()),
                    description: Some("Reads a file".into()),
                },
                ToolSpec {
                    prompt: false,
                    tool: "stat".into(),
                    name: None,
                    description: Some("File facts".into()),
                },
            ]
        );
        let names = tool_names(&config.upstreams);
        assert_eq!(names.len(), 2);
        assert_eq!(names[0].0, "fs");
        assert_eq!(
            names[1],
            ("web".to_owned(), ToolNames::new().rename("fetch", "get"))
        );
        assert!(check(&config.upstreams).is_empty());
        let printed = print(Some(&config), &[]).expect("print");
        assert!(
            printed.contains("[upstream.tools.\"read_text_file\"]\nname = \"read\""),
            "{printed}"
        );
        let again = parse(&printed, "printed.toml").expect("printed file parses");
        let tables = |specs: &[UpstreamSpec]| -> Vec<Vec<ToolSpec>> {
            specs.iter().map(|s| s.tools.clone()).collect()
        };
        assert_eq!(tables(&again.upstreams), tables(&config.upstreams));
    }

    #[test]
    fn bad_tables_are_explained() {
        let all = parse(
            "[[upstream]]\nname = \"fs\"\ncommand = [\"x\"]\n[upstream.tools.a]\nnmae = \"b\"\n[upstream.tools.c]\nname = 1\n",
            "g.toml",
        )
        .unwrap_err()
        .join("\n");
        assert!(
            all.contains("g.toml:5: unknown field `nmae` in [upstream.tools.a]"),
            "{all}"
        );
        assert!(
            all.contains("[upstream.tools.c] name: expected a string"),
            "{all}"
        );
        let collision = "[[upstream]]\nname = \"fs\"\ncommand = [\"x\"]\ntools = { a = { name = \"x\" }, b = { name = \"x\" } }\n[[upstream]]\nname = \"w\"\ncommand = [\"y\"]\n";
        let config = parse(collision, "g.toml").expect("parses");
        let problems = check(&config.upstreams).join("\n");
        assert!(
            problems.contains("line 1:") && problems.contains("a and b are both renamed to x"),
            "{problems}"
        );
        // One upstream: no prefix, so a new name may have 64 characters, not 65.
        let alone = |name: String| {
            parse(
                &format!(
                    "[[upstream]]\ncommand = [\"x\"]\n[upstream.tools.a]\nname = \"{name}\"\n"
                ),
                "g.toml",
            )
            .expect("parses")
        };
        assert!(check(&alone("x".repeat(64)).upstreams).is_empty());
        let problems = check(&alone("x".repeat(65)).upstreams).join("\n");
        assert!(
            problems.contains("the upstream: a renamed to") && problems.contains("use 1 to 64"),
            "{problems}"
        );
    }

    #[test]
    fn prompt_tables_are_read_checked_and_printed_back() {
        let file = "[[upstream]]\nname = \"fs\"\ncommand = [\"x\"]\n\n[upstream.tools.read]\nname = \"get\"\n\n[upstream.prompts.review]\nname = \"critique\"\ndescription = \"Critiques\"\n\n[[upstream]]\nname = \"w\"\ncommand = [\"y\"]\n";
        let config = parse(file, "g.toml").expect("valid");
        assert_eq!(
            config.upstreams[0].tools[1],
            ToolSpec {
                prompt: true,
                tool: "review".into(),
                name: Some("critique".into()),
                description: Some("Critiques".into()),
            }
        );
        assert_eq!(
            tool_names(&config.upstreams),
            [(
                "fs".to_owned(),
                ToolNames::new()
                    .rename("read", "get")
                    .rename_prompt("review", "critique")
                    .describe_prompt("review", "Critiques")
            )]
        );
        assert!(check(&config.upstreams).is_empty());
        let printed = print(Some(&config), &[]).expect("print");
        assert!(
            printed.contains("[upstream.prompts.\"review\"]\nname = \"critique\""),
            "{printed}"
        );
        let again = parse(&printed, "printed.toml").expect("printed file parses");
        assert_eq!(again.upstreams[0].tools, config.upstreams[0].tools);

        let bad = parse(
            "[[upstream]]\nname = \"fs\"\ncommand = [\"x\"]\n[upstream.prompts.a]\nnmae = \"b\"\n",
            "g.toml",
        )
        .unwrap_err()
        .join("\n");
        assert!(
            bad.contains("g.toml:5: unknown field `nmae` in [upstream.prompts.a]"),
            "{bad}"
        );
        let collision = "[[upstream]]\nname = \"fs\"\ncommand = [\"x\"]\nprompts = { a = { name = \"x\" }, b = { name = \"x\" }, c = { name = \"no.dots\" } }\n[[upstream]]\nname = \"w\"\ncommand = [\"y\"]\n";
        let config = parse(collision, "g.toml").expect("parses");
        let problems = check(&config.upstreams).join("\n");
        assert!(
            problems.contains("line 1:") && problems.contains("prompt names"),
            "{problems}"
        );
        let alone = parse(
            "[[upstream]]\ncommand = [\"x\"]\n[upstream.prompts.a]\nname = \"b\"\n[upstream.prompts.c]\nname = \"b\"\n",
            "g.toml",
        )
        .expect("parses");
        let problems = check(&alone.upstreams).join("\n");
        assert!(
            problems.contains("the upstream: prompt a and c are both renamed to b"),
            "{problems}"
        );
    }
}
