//! `mcp-oauth policy check | explain | test`: the policy engine (`mcp_oauth::policy`) from the
//! command line, for writing a policy, asking why a call is allowed or denied, and CI.
//!
//! Exit status: 0 when the policy is clean, the call is allowed or every fixture holds; 1 for
//! problems in the policy, failed fixtures or unreadable input; 2 for a usage error; and for
//! `explain`, 3 when the call is denied and 4 when it needs a step-up. See `docs/policy.md`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand};
use mcp_oauth::policy::{
    Catalog, Effect, Explanation, Fixtures, Policy, PolicyConfig, PolicyError, Subject, Target,
};
use serde_json::{Map, Value, json};

const EXAMPLES: &str = "\
Examples:
  # Is the policy right for these tools? Every problem names the file, line and rule.
  mcp-oauth policy check examples/policy/demo.toml --tools examples/policy/demo-tools.json

  # The same against the tools of a running server (a token if it needs one).
  mcp-oauth policy check examples/policy/demo.toml --server http://127.0.0.1:8080/mcp \\
    --token \"$(mcp-oauth token)\"

  # Why may alice (not) call echo with these arguments?
  mcp-oauth policy explain examples/policy/demo.toml --tools examples/policy/demo-tools.json \\
    --as alice@example.com --scope 'mcp:read' --call echo '{\"text\": \"hi\"}'

  # Allow/deny fixtures, for CI.
  mcp-oauth policy test examples/policy/demo.toml examples/policy/demo-fixtures.toml \\
    --tools examples/policy/demo-tools.json

Exit status: 0 clean / allowed / all fixtures pass; 1 problems, failed fixtures or unreadable
input; 2 usage error; explain only: 3 denied, 4 step-up (the token lacks scopes).";

/// Options of `mcp-oauth policy`.
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub(crate) struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check a policy file against a server's tools: every unknown tool, misspelled argument,
    /// undeclared claim or never-assigned group, with its file, line and rule id.
    Check(CheckArgs),
    /// Decide one call for one user and say why: the effect, the rules that decided it, the
    /// user's groups and where each came from, the canonical arguments.
    #[command(
        after_help = "Exit status: 0 allow, 3 deny, 4 step-up; 1 when the policy, the tools or the arguments cannot be used; 2 for a usage error."
    )]
    #[command(group(ArgGroup::new("who").required(true).multiple(true).args(["email", "sub"])))]
    #[command(group(ArgGroup::new("target").required(true).args(["call", "prompt", "resource"])))]
    Explain(ExplainArgs),
    /// Run allow/deny fixtures against a policy; exit status 1 when any fails (for CI).
    Test(TestArgs),
}

#[derive(Debug, Args)]
struct ToolsArg {
    /// The server's tools: the JSON result of `tools/list` (`{"tools": [...]}`, which may
    /// also hold `prompts` and `resources`) or a bare array of tools. Without it the policy
    /// is checked against no tools at all, so only sign-in and grant rules can pass.
    #[arg(long, value_name = "TOOLS.json")]
    tools: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The policy file (TOML with a [policy] table).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    tools: ToolsArg,
    /// Fetch the tools from this running MCP server (its Streamable HTTP endpoint, e.g.
    /// http://127.0.0.1:8080/mcp) instead of a file: initialize, then tools/list (and
    /// prompts/list, resources/list when it has them).
    #[arg(long, value_name = "URL", conflicts_with = "tools")]
    server: Option<String>,
    /// With --server: the access token to send (Authorization: Bearer).
    #[arg(long, value_name = "TOKEN", requires = "server")]
    token: Option<String>,
    /// With --server: a header to send, 'Name: value'; may be repeated.
    #[arg(long, value_name = "NAME: VALUE", requires = "server", value_parser = crate::policy_server::header)]
    header: Vec<(String, String)>,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// The policy file (TOML with a [policy] table).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The fixtures file (TOML with [[case]] tables).
    #[arg(value_name = "FIXTURES")]
    fixtures: PathBuf,
    #[command(flatten)]
    tools: ToolsArg,
}

#[derive(Debug, Args)]
struct ExplainArgs {
    /// The policy file (TOML with a [policy] table).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The server's tools (the JSON result of `tools/list`, or a bare array of tools).
    #[arg(long, value_name = "TOOLS.json")]
    tools: PathBuf,
    /// The user's (verified) email address.
    #[arg(long = "as", value_name = "EMAIL")]
    email: Option<String>,
    /// The user's subject identifier (`sub`). Default: the email address.
    #[arg(long, value_name = "SUB")]
    sub: Option<String>,
    /// The token's scopes, separated by spaces; may be repeated.
    #[arg(long, value_name = "SCOPES")]
    scope: Vec<String>,
    /// A group the user is in (shown as coming from `--group`); may be repeated.
    #[arg(long, value_name = "GROUP")]
    group: Vec<String>,
    /// A claim of the token, `name=value`; the value is read as JSON when it parses
    /// (`teams=["a","b"]`, `level=3`), else as a string. Repeating a name makes a list.
    #[arg(long, value_name = "NAME=VALUE", value_parser = claim)]
    claim: Vec<(String, Value)>,
    /// The OAuth client the token was issued to.
    #[arg(long, value_name = "CLIENT_ID")]
    client_id: Option<String>,
    /// A `tools/call` of this tool, with its arguments as one JSON object (default `{}`).
    #[arg(long, num_args = 1..=2, value_names = ["TOOL", "JSON-ARGS"])]
    call: Option<Vec<String>>,
    /// A `prompts/get` of this prompt, with its arguments as one JSON object (default none).
    #[arg(long, num_args = 1..=2, value_names = ["PROMPT", "JSON-ARGS"])]
    prompt: Option<Vec<String>>,
    /// A `resources/read` of this URI.
    #[arg(long, value_name = "URI")]
    resource: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// `--claim name=value`.
fn claim(text: &str) -> Result<(String, Value), String> {
    let Some((name, value)) = text.split_once('=') else {
        return Err("write a claim as name=value, e.g. --claim department=eng".to_owned());
    };
    if name.is_empty() {
        return Err("the claim has no name: write it as name=value".to_owned());
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

/// Exit status of `explain` for a denied call.
const DENY: u8 = 3;
/// Exit status of `explain` for a call that needs a step-up.
const STEP_UP: u8 = 4;

/// Runs `mcp-oauth policy …`; errors are printed here, each saying what to fix.
pub(crate) async fn run(args: PolicyArgs) -> ExitCode {
    let result = match args.command {
        PolicyCommand::Check(args) => check(&args).await,
        PolicyCommand::Explain(args) => explain(&args),
        PolicyCommand::Test(args) => test(&args),
    };
    match result {
        Ok(code) => code,
        Err(lines) => {
            for line in lines {
                eprintln!("{line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// What went wrong, one line each.
type Failure = Vec<String>;

async fn check(args: &CheckArgs) -> Result<ExitCode, Failure> {
    let policy = match &args.server {
        Some(url) => {
            let tools =
                crate::policy_server::fetch_catalog(url, args.token.as_deref(), &args.header)
                    .await?;
            load_with(&args.file, Some((url, tools)))?
        }
        None => load(&args.file, args.tools.tools.as_deref())?,
    };
    let counts = count_rules(&args.file);
    let catalog = policy.catalog();
    println!(
        "{}: ok: {counts}; checked against {} tools, {} prompts, {} resources{}",
        args.file.display(),
        catalog.tools().count(),
        catalog.prompts().count(),
        catalog.resources().count(),
        if args.tools.tools.is_none() && args.server.is_none() {
            " (no --tools given)"
        } else {
            ""
        },
    );
    Ok(ExitCode::SUCCESS)
}

fn test(args: &TestArgs) -> Result<ExitCode, Failure> {
    let policy = load(&args.file, args.tools.tools.as_deref())?;
    let name = args.fixtures.display().to_string();
    let text = read(&args.fixtures, "fixtures")?;
    let fixtures = Fixtures::from_toml(&text, &name).map_err(|e| problems(&e, &name))?;
    if fixtures.is_empty() {
        return Err(vec![format!(
            "{name}: no [[case]] in the fixtures: add at least one (see docs/policy.md, Fixtures)"
        )]);
    }
    let report = fixtures.run(&policy);
    for failure in &report.failures {
        println!("{failure}");
    }
    println!("{} passed, {} failed", report.passed, report.failures.len());
    Ok(if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn explain(args: &ExplainArgs) -> Result<ExitCode, Failure> {
    let policy = load(&args.file, Some(&args.tools))?;
    let subject = subject(args);
    let (target, arguments) = if let Some(call) = &args.call {
        let (name, arguments) = name_and_arguments(call, "--call")?;
        (
            Target::Tool(name),
            Some(arguments.unwrap_or_else(|| json!({}))),
        )
    } else if let Some(prompt) = &args.prompt {
        let (name, arguments) = name_and_arguments(prompt, "--prompt")?;
        (Target::Prompt(name), arguments)
    } else if let Some(uri) = &args.resource {
        (Target::Resource(uri), None)
    } else {
        // clap's ArgGroup `target` requires one of them.
        return Err(vec![
            "say what to decide: --call TOOL 'JSON', --prompt NAME or --resource URI".to_owned(),
        ]);
    };
    let explanation = policy.explain(&subject, target, arguments.as_ref());
    if args.json {
        println!("{}", explanation_json(&explanation));
    } else {
        print!("{explanation}");
    }
    Ok(match explanation.decision.effect() {
        Effect::Allow => ExitCode::SUCCESS,
        Effect::StepUp => ExitCode::from(STEP_UP),
        _ => ExitCode::from(DENY),
    })
}

/// The user the options describe.
fn subject(args: &ExplainArgs) -> Subject {
    let sub = args
        .sub
        .clone()
        .or_else(|| args.email.clone())
        .unwrap_or_default();
    let mut subject = Subject::new(sub).scopes(
        args.scope
            .iter()
            .flat_map(|s| s.split_whitespace())
            .map(str::to_owned),
    );
    if let Some(email) = &args.email {
        subject = subject.email(email);
    }
    if let Some(client) = &args.client_id {
        subject = subject.client_id(client);
    }
    let mut claims = Map::new();
    for (name, value) in &args.claim {
        match claims.get_mut(name) {
            Some(Value::Array(list)) => list.push(value.clone()),
            Some(first) => *first = Value::Array(vec![first.take(), value.clone()]),
            None => {
                claims.insert(name.clone(), value.clone());
            }
        }
    }
    subject = subject.claims(claims);
    for group in &args.group {
        subject = subject.group(group, "--group");
    }
    subject
}

/// `NAME ['JSON']` of `--call` or `--prompt`.
fn name_and_arguments<'a>(
    values: &'a [String],
    option: &str,
) -> Result<(&'a str, Option<Value>), Failure> {
    let Some(name) = values.first() else {
        return Err(vec![format!("{option} needs a name")]);
    };
    let Some(text) = values.get(1) else {
        return Ok((name, None));
    };
    let arguments: Value = serde_json::from_str(text).map_err(|e| {
        vec![format!(
            "the arguments of {option} {name} are not JSON ({e}): give one JSON object in single quotes, e.g. '{{\"text\": \"hi\"}}'"
        )]
    })?;
    if !arguments.is_object() {
        return Err(vec![format!(
            "the arguments of {option} {name} must be a JSON object (`{{...}}`), not {arguments}"
        )]);
    }
    Ok((name, Some(arguments)))
}

fn explanation_json(explanation: &Explanation) -> Value {
    let decision = &explanation.decision;
    json!({
        "decision": decision.effect().to_string(),
        "rules": decision.rule_ids(),
        "missing_scopes": decision.missing_scopes(),
        "reason": decision.reason(),
        "groups": explanation.groups.iter().map(|m| json!({
            "group": m.group,
            "source": m.source.to_string(),
        })).collect::<Vec<_>>(),
        "arguments": explanation.arguments,
    })
}

/// The policy file checked against the tool list (none: an empty one).
fn load(file: &Path, tools: Option<&Path>) -> Result<Policy, Failure> {
    let tools = match tools {
        Some(path) => Some((path.display().to_string(), read(path, "tool list")?)),
        None => None,
    };
    load_with(file, tools.as_ref().map(|(n, t)| (n, t.clone())))
}

/// The policy file checked against a tool list (its name for errors, and its JSON text).
fn load_with(file: &Path, tools: Option<(&String, String)>) -> Result<Policy, Failure> {
    let name = file.display().to_string();
    if !file.exists() {
        return Err(vec![format!(
            "{name}: no such policy file (give the path of a TOML file with a [policy] table)"
        )]);
    }
    if !file.is_file() {
        return Err(vec![format!(
            "{name}: is not a file (give the path of a TOML file with a [policy] table)"
        )]);
    }
    let config = PolicyConfig::from_file(file).map_err(|e| problems(&e, &name))?;
    let given = tools.is_some();
    let catalog = match tools {
        Some((tools_name, text)) => {
            Catalog::from_json_str(&text).map_err(|e| problems(&e, tools_name))?
        }
        None => Catalog::new(),
    };
    Policy::new(config, catalog).map_err(|e| {
        let mut lines = problems(&e, &name);
        if !given {
            lines.push(
                "(no --tools given: the policy was checked against an empty tool list; give the server's tools/list result with --tools tools.json)"
                    .to_owned(),
            );
        }
        lines
    })
}

/// Every problem as `file:line: rule `id`: message`; a problem with no place is put in `file`.
fn problems(error: &PolicyError, file: &str) -> Failure {
    let mut lines: Failure = error
        .problems()
        .iter()
        .map(|p| {
            if p.origin.file.is_none() && p.origin.line.is_none() {
                format!("{file}: {p}")
            } else {
                p.to_string()
            }
        })
        .collect();
    let n = lines.len();
    lines.push(format!(
        "{n} problem{} found",
        if n == 1 { "" } else { "s" }
    ));
    lines
}

fn read(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read the {what}: {e}", path.display())])
}

/// "3 rules, 1 sign-in rule, 2 grant rules, 1 cedar file", from the TOML (already parsed once
/// by the policy, so this cannot fail on a file that loaded).
fn count_rules(file: &Path) -> String {
    let table = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|mut t| t.remove("policy"));
    let count = |key: &str| {
        table
            .as_ref()
            .and_then(|t| t.get(key))
            .and_then(toml::Value::as_array)
            .map_or(0, Vec::len)
    };
    let plural = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let mut parts = vec![
        plural(count("rule"), "rule"),
        plural(count("sign_in"), "sign-in rule"),
        plural(count("grant"), "grant rule"),
    ];
    let cedar = count("cedar_files");
    if cedar > 0 {
        parts.push(plural(cedar, "cedar file"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_json_when_it_parses_else_a_string() {
        assert_eq!(claim("level=3").ok(), Some(("level".to_owned(), json!(3))));
        assert_eq!(
            claim("dept=eng").ok(),
            Some(("dept".to_owned(), json!("eng")))
        );
        assert_eq!(
            claim("url=a=b").ok(),
            Some(("url".to_owned(), json!("a=b")))
        );
        assert!(claim("nope").is_err());
        assert!(claim("=x").is_err());
    }
}
