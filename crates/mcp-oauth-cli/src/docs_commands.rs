//! Every `mcp-oauth …` command written in the README and under `docs/` parses with today's
//! options: a renamed or removed flag, a subcommand that is gone or a value the option does
//! not take fails this test with the file and line of the command.
//!
//! Commands are taken from fenced code blocks: in shell blocks (` ```sh `, `bash`, `shell`,
//! `console` or no language) lines that start with `mcp-oauth ` or
//! `cargo run -p mcp-oauth-cli -- …`, in any block lines that start with `$ ` and then one of
//! those (a transcript: the output around it is not read), and in running text code spans
//! that start with `mcp-oauth ` and a word; `\` continuations are joined and
//! the shell around them (pipes, redirections, here-strings, `&&`, comments) cut off. A
//! synopsis line (`mcp-oauth doctor (--issuer URL | --mcp-url URL | both)`) is not a command
//! and is skipped. A command that leaves a required option to an environment variable still
//! counts as parsed; everything else clap refuses is a failure.

use std::path::{Path, PathBuf};

use clap::Parser;
use clap::error::{ContextKind, ErrorKind};

use super::Cli;

/// The documents whose commands are checked: the README and every page under docs/.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

/// The command lines of a Markdown text, with the line each starts on.
fn commands(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    // Outside a fence: `None`; inside: whether it is a shell block.
    let mut fence: Option<bool> = None;
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(matches!(
                    info.trim(),
                    "" | "sh" | "bash" | "shell" | "console"
                )),
            };
            pending = None;
            continue;
        }
        let Some(shell) = fence else {
            found.extend(
                line.split('`')
                    .skip(1)
                    .step_by(2)
                    .filter(|span| {
                        span.strip_prefix("mcp-oauth ").is_some_and(|rest| {
                            rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '-')
                        })
                    })
                    .map(|span| (index + 1, span.to_owned())),
            );
            continue;
        };
        if let Some((start, mut joined)) = pending.take() {
            joined.push(' ');
            joined.push_str(trimmed.trim_end_matches('\\').trim());
            if trimmed.ends_with('\\') {
                pending = Some((start, joined));
            } else {
                found.push((start, joined));
            }
            continue;
        }
        if !shell && !trimmed.starts_with("$ ") {
            continue;
        }
        let Some(command) = command_start(trimmed) else {
            continue;
        };
        if trimmed.ends_with('\\') {
            pending = Some((index + 1, command.trim_end_matches('\\').trim().to_owned()));
        } else {
            found.push((index + 1, command.to_owned()));
        }
    }
    found
}

/// The `mcp-oauth …` part of a line that runs the command, if it does.
fn command_start(line: &str) -> Option<&str> {
    let line = line.strip_prefix("$ ").unwrap_or(line);
    if line.starts_with("mcp-oauth ") {
        return Some(line);
    }
    let rest = line.strip_prefix("cargo run ")?;
    if !rest.contains("-p mcp-oauth-cli") {
        return None;
    }
    rest.split_once(" -- ").map(|(_, args)| args)
}

/// The command's words, the shell around it cut off; `None` for a synopsis line.
fn words(command: &str) -> Option<Vec<String>> {
    let mut cut = command;
    for stop in [
        " | ", " <<<", " < ", " > ", " 2>", " && ", " ; ", " # ", " &",
    ] {
        if let Some(at) = cut.find(stop) {
            cut = &cut[..at];
        }
    }
    // `<MCP URL>` is one placeholder, however many words it has.
    let mut joined = String::new();
    let mut rest = cut;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        joined.push_str(&rest[..open]);
        joined.push_str(&rest[open..open + close + 1].replace(' ', "_"));
        rest = &rest[open + close + 1..];
    }
    joined.push_str(rest);
    let mut words = shlex::split(&joined)?;
    if words
        .iter()
        .any(|w| w.starts_with('(') || w.starts_with('['))
    {
        return None;
    }
    if words.first().is_none_or(|w| w != "mcp-oauth") {
        words.insert(0, "mcp-oauth".to_owned());
    }
    Some(words)
}

/// `<issuer>`, `…`, `$SECRET`: a value the reader supplies.
fn is_placeholder(value: &str) -> bool {
    value.starts_with('<') || value.contains('…') || value.starts_with('$')
}

#[test]
fn every_command_in_the_docs_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("a document is readable");
        let name = file
            .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
            .unwrap_or(&file)
            .display()
            .to_string();
        for (line, command) in commands(&text) {
            let Some(words) = words(&command) else {
                continue;
            };
            checked += 1;
            match Cli::try_parse_from(&words) {
                Ok(_) => {}
                Err(err)
                    if matches!(
                        err.kind(),
                        ErrorKind::DisplayHelp
                            | ErrorKind::DisplayVersion
                            | ErrorKind::MissingRequiredArgument
                            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                    ) => {}
                // `--issuer <issuer>`, `--provider …`: a placeholder the reader fills in.
                Err(err)
                    if matches!(
                        err.kind(),
                        ErrorKind::InvalidValue | ErrorKind::ValueValidation
                    ) && err
                        .get(ContextKind::InvalidValue)
                        .is_some_and(|v| is_placeholder(&v.to_string())) => {}
                Err(err) => failures.push(format!(
                    "{name}:{line}: {command}\n    {}",
                    err.render().to_string().lines().next().unwrap_or_default()
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "commands in the docs that today's mcp-oauth refuses:\n{}",
        failures.join("\n")
    );
    // The README alone shows more than a dozen; finding few means the reader broke.
    assert!(checked >= 15, "only {checked} commands found in the docs");
}

#[test]
fn the_reader_finds_joins_and_cuts_commands() {
    let text = "text `mcp-oauth dev --port 1` and `mcp-oauth = {}` outside a fence\n```sh\nmcp-oauth doctor --issuer https://a \\\n  --json | jq .\n$ mcp-oauth token --scope 'a b' > t.txt\ncargo run -p mcp-oauth-cli --release -- dev --listen 127.0.0.1:0 # demo\ncargo run -p other -- x\nmcp-oauth doctor (--issuer URL | --mcp-url URL)\n```\n```text\nmcp-oauth dev: printed, not run\n$ mcp-oauth dev\n```\n```toml\nmcp-oauth = { path = \"x\" }\n```\n";
    let found = commands(text);
    let lines: Vec<usize> = found.iter().map(|(line, _)| *line).collect();
    assert_eq!(lines, [1, 3, 5, 6, 8, 12]);
    let found = &found[1..];
    assert_eq!(
        words(&found[0].1).unwrap(),
        ["mcp-oauth", "doctor", "--issuer", "https://a", "--json"]
    );
    assert_eq!(
        words(&found[1].1).unwrap(),
        ["mcp-oauth", "token", "--scope", "a b"]
    );
    assert_eq!(
        words(&found[2].1).unwrap(),
        ["mcp-oauth", "dev", "--listen", "127.0.0.1:0"]
    );
    assert_eq!(words(&found[3].1), None);
    assert_eq!(
        words("mcp-oauth doctor --issuer <the issuer> --json").unwrap(),
        ["mcp-oauth", "doctor", "--issuer", "<the_issuer>", "--json"]
    );
    // A flag that does not exist is refused, so the test above can fail.
    assert!(Cli::try_parse_from(["mcp-oauth", "dev", "--no-such-flag"]).is_err());
}
