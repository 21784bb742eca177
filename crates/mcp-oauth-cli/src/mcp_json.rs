//! `mcp-oauth gateway --upstreams-from .mcp.json`: the MCP servers of a desktop client's
//! configuration file as the gateway's upstreams.
//!
//! The shape is the one Claude Desktop, Claude Code, Cursor and Windsurf write
//! (`{"mcpServers": {NAME: {…}}}`) and the one VS Code writes (`{"servers": {NAME: {…}}}`):
//!
//! - a stdio server: `command`, `args`, `env`, `cwd`;
//! - a remote server: `url` with `headers`; `type` may say `http` or `streamable-http`
//!   (Streamable HTTP only) or `sse` (the legacy HTTP+SSE transport only); without it,
//!   Streamable HTTP falling back to SSE;
//! - `disabled: true` leaves a server out; the other keys clients keep for themselves
//!   (`autoApprove`, `alwaysAllow`, `timeout`, `description`, …) are ignored.
//!
//! `${NAME}` and VS Code's `${env:NAME}` in `env`, `headers`, `args` and `url` are environment
//! variables, resolved when the gateway starts (as in the gateway's own file); nothing is
//! resolved here. A server's name becomes its upstream name, the prefix of its tools
//! (`NAME__tool`): characters other than letters, digits and `-` become `-`.

use std::path::Path;

use serde_json::{Map, Value};

use crate::gateway_config::{Target, UpstreamSpec};

/// The keys clients keep for themselves, ignored.
const CLIENT_KEYS: &[&str] = &[
    "disabled",
    "autoApprove",
    "alwaysAllow",
    "timeout",
    "description",
    "transportType",
    "envFile",
    "type",
    "gallery",
    "version",
];

/// Reads the servers of `path`; every problem is reported, prefixed with the file's name.
pub(crate) fn load(path: &Path) -> Result<Vec<UpstreamSpec>, Vec<String>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{file}: {e}")])?;
    parse(&text, &file)
}

/// Parses the text of a client's configuration file; `file` names it in messages.
pub(crate) fn parse(text: &str, file: &str) -> Result<Vec<UpstreamSpec>, Vec<String>> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| vec![format!("{file}:{}: not JSON: {e}", e.line())])?;
    let servers = match (root.get("mcpServers"), root.get("servers")) {
        (Some(Value::Object(servers)), _) | (None, Some(Value::Object(servers))) => servers,
        _ => {
            return Err(vec![format!(
                "{file}: no MCP servers: expected {{\"mcpServers\": {{\"NAME\": {{\"command\": …}}}}}} (or VS Code's \"servers\")"
            )]);
        }
    };
    let mut errors = Vec::new();
    let mut specs: Vec<UpstreamSpec> = Vec::new();
    for (name, server) in servers {
        let at = format!("{file}: server {name:?}");
        let Value::Object(server) = server else {
            errors.push(format!("{at}: expected an object"));
            continue;
        };
        if server.get("disabled") == Some(&Value::Bool(true)) {
            continue;
        }
        let upstream = upstream_name(name);
        if upstream.is_empty() {
            errors.push(format!(
                "{at}: the name has no letter or digit to name the upstream with"
            ));
            continue;
        }
        if specs.iter().any(|s| s.name.as_deref() == Some(&upstream)) {
            errors.push(format!(
                "{at}: its upstream name {upstream:?} is taken by another server whose name differs only in characters other than letters, digits and '-'; rename one"
            ));
            continue;
        }
        match target(server, &at) {
            Ok(target) => specs.push(UpstreamSpec {
                name: Some(upstream),
                target,
                tools: Vec::new(),
                line: 0,
                user_secret: None,
                user_oauth: None,
            }),
            Err(mut problems) => errors.append(&mut problems),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if specs.is_empty() {
        return Err(vec![format!(
            "{file}: every MCP server in it is disabled, or it lists none"
        )]);
    }
    Ok(specs)
}

/// A server's name as an upstream name: 1 to 32 letters, digits or `-`.
fn upstream_name(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    trimmed
        .chars()
        .take(32)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

fn target(server: &Map<String, Value>, at: &str) -> Result<Target, Vec<String>> {
    let mut errors = Vec::new();
    for key in server.keys() {
        if !CLIENT_KEYS.contains(&key.as_str())
            && !["command", "args", "env", "cwd", "url", "headers"].contains(&key.as_str())
        {
            errors.push(format!("{at}: unknown key {key:?}"));
        }
    }
    let text = |key: &str, errors: &mut Vec<String>| match server.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vscode_references(s)),
        Some(_) => {
            errors.push(format!("{at}: {key} must be a string"));
            None
        }
    };
    let pairs = |key: &str, errors: &mut Vec<String>| match server.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k.clone(), vscode_references(s))),
                Value::Number(n) => Some((k.clone(), n.to_string())),
                Value::Bool(b) => Some((k.clone(), b.to_string())),
                _ => {
                    errors.push(format!("{at}: {key}.{k} must be a string"));
                    None
                }
            })
            .collect(),
        Some(_) => {
            errors.push(format!("{at}: {key} must be an object of NAME: \"VALUE\""));
            Vec::new()
        }
    };
    let kind = text("type", &mut errors);
    let url = text("url", &mut errors);
    let command = text("command", &mut errors);
    let target = match (url, command) {
        (Some(_), Some(_)) => {
            errors.push(format!("{at}: give url or command, not both"));
            None
        }
        (None, None) => {
            errors.push(format!(
                "{at}: give \"command\" (a stdio server) or \"url\""
            ));
            None
        }
        (Some(url), None) => {
            let transport = match kind.as_deref() {
                None => mcp_oauth_gateway::HttpTransport::Auto,
                Some("http" | "streamable-http" | "streamableHttp") => {
                    mcp_oauth_gateway::HttpTransport::StreamableHttp
                }
                Some("sse") => mcp_oauth_gateway::HttpTransport::Sse,
                Some(other) => {
                    errors.push(format!(
                        "{at}: type {other:?} with a url: write \"http\" or \"sse\""
                    ));
                    mcp_oauth_gateway::HttpTransport::Auto
                }
            };
            for key in ["args", "env", "cwd"] {
                if server.contains_key(key) {
                    errors.push(format!("{at}: {key} is for a command, not for a url"));
                }
            }
            Some(Target::Url {
                headers: pairs("headers", &mut errors),
                url,
                credentials: None,
                transport,
            })
        }
        (None, Some(command)) => {
            if let Some(other) = kind.as_deref().filter(|k| *k != "stdio") {
                errors.push(format!(
                    "{at}: type {other:?} with a command: write \"stdio\""
                ));
            }
            if server.contains_key("headers") {
                errors.push(format!("{at}: headers are for a url, not for a command"));
            }
            let mut argv = vec![command];
            match server.get("args") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        match item {
                            Value::String(s) => argv.push(vscode_references(s)),
                            Value::Number(n) => argv.push(n.to_string()),
                            _ => errors.push(format!("{at}: each of args must be a string")),
                        }
                    }
                }
                Some(_) => errors.push(format!("{at}: args must be an array of strings")),
            }
            Some(Target::Command {
                argv,
                env: pairs("env", &mut errors),
                pass_env: Vec::new(),
                cwd: text("cwd", &mut errors).map(Into::into),
                per_user: false,
                per_session: false,
            })
        }
    };
    match target {
        Some(target) if errors.is_empty() => Ok(target),
        _ => Err(errors),
    }
}

/// VS Code's `${env:NAME}` as the gateway's `${NAME}`.
fn vscode_references(value: &str) -> String {
    value.replace("${env:", "${")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desktop_and_vscode_shapes_become_upstreams() {
        let specs = parse(
            r#"{"mcpServers": {
                "filesystem": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv"], "env": {"DEBUG": "1", "TOKEN": "${env:FS_TOKEN}"}, "autoApprove": []},
                "brave_search.v2": {"type": "http", "url": "https://search.example/mcp", "headers": {"Authorization": "Bearer ${SEARCH_TOKEN}"}},
                "old": {"command": "x", "disabled": true}
            }}"#,
            ".mcp.json",
        )
        .expect("valid");
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name.as_deref(), Some("filesystem"));
        assert_eq!(
            specs[0].target,
            Target::Command {
                argv: vec![
                    "npx".into(),
                    "-y".into(),
                    "@modelcontextprotocol/server-filesystem".into(),
                    "/srv".into()
                ],
                env: vec![
                    ("DEBUG".into(), "1".into()),
                    ("TOKEN".into(), "${FS_TOKEN}".into())
                ],
                pass_env: Vec::new(),
                cwd: None,
                per_user: false,
                per_session: false,
            }
        );
        assert_eq!(specs[1].name.as_deref(), Some("brave-search-v2"));
        assert_eq!(
            specs[1].target,
            Target::Url {
                url: "https://search.example/mcp".into(),
                headers: vec![("Authorization".into(), "Bearer ${SEARCH_TOKEN}".into())],
                credentials: None,
                transport: mcp_oauth_gateway::HttpTransport::StreamableHttp,
            }
        );
        let sse = parse(
            r#"{"mcpServers": {"old": {"type": "sse", "url": "http://h/sse"}}}"#,
            "m.json",
        )
        .expect("valid");
        assert!(matches!(
            &sse[0].target,
            Target::Url {
                transport: mcp_oauth_gateway::HttpTransport::Sse,
                ..
            }
        ));
        let vscode = parse(r#"{"servers": {"t": {"type": "stdio", "command": "uvx", "args": ["mcp-server-time"]}}}"#, "mcp.json")
            .expect("valid");
        assert_eq!(vscode[0].name.as_deref(), Some("t"));
    }

    #[test]
    fn every_problem_is_named_with_its_server() {
        let all = parse(
            r#"{"mcpServers": {
                "a": {"type": "websocket", "url": "http://h/ws"},
                "b": {"command": "x", "url": "http://h/mcp"},
                "c": {"command": "x", "args": "--flag", "headers": {}},
                "d": {"comand": "x"},
                "e_1": {"command": "x"},
                "e.1": {"command": "x"},
                "__": {"command": "x"},
                "f": []
            }}"#,
            "m.json",
        )
        .unwrap_err()
        .join("\n");
        for expected in [
            r#"m.json: server "a": type "websocket" with a url"#,
            r#"m.json: server "b": give url or command, not both"#,
            r#"m.json: server "c": args must be an array of strings"#,
            r#"m.json: server "c": headers are for a url, not for a command"#,
            r#"m.json: server "d": unknown key "comand""#,
            r#"its upstream name "e-1" is taken by another server"#,
            r#"m.json: server "__": the name has no letter or digit"#,
            r#"m.json: server "f": expected an object"#,
        ] {
            assert!(all.contains(expected), "{expected}\n---\n{all}");
        }
        assert!(parse("[]", "m.json").unwrap_err()[0].contains("no MCP servers"));
        assert!(parse("{", "m.json").unwrap_err()[0].starts_with("m.json:1: not JSON"));
        assert!(
            parse(
                r#"{"mcpServers": {"x": {"command": "y", "disabled": true}}}"#,
                "m.json"
            )
            .unwrap_err()[0]
                .contains("every MCP server in it is disabled")
        );
    }

    #[test]
    fn long_names_are_cut_to_32_characters() {
        assert_eq!(upstream_name("a".repeat(40).as_str()).len(), 32);
        assert_eq!(upstream_name("-x-"), "x");
        assert_eq!(upstream_name("github.com/acme"), "github-com-acme");
    }
}
