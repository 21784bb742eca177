//! The configuration file of `mcp-oauth gateway` (`--config gateway.toml`).
//!
//! Why one file of this size: reading the file, refusing what it must not hold (with line and
//! suggestion), resolving `${ENV}` and merging with the command line are one pass over one
//! table whose errors must all name the same positions; a quarter of it is the tests of
//! those messages. Printing the plan (`check`, `--print-config`) is the part that would move
//! out first.
//!
//! Every option of the command is a key: `--public-url X` is `public_url = "X"`, a repeatable
//! option takes an array (`user = ["alice:${ALICE_PASSWORD}"]`), a switch takes `true`. A table
//! `[audit]` groups the options that start with `--audit-` (`arguments` is
//! `--audit-arguments`, `file` is `--audit` itself), and so on for `[policy]` and `[admin]`.
//! The MCP servers are `[[upstream]]` tables. The keys come from the command's own option list,
//! so a new option is a new key; anything else is refused with its line and the closest key.
//!
//! Precedence: the command line, then the file, then environment variables, then defaults.
//! `${NAME}` in a value is the environment variable NAME (for the secrets of `[[upstream]]`,
//! `file:PATH` too); a variable that is not set stops the command with its name.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory as _};
use mcp_oauth_gateway::ToolNames;
use toml::de::{DeTable, DeValue};

/// Options that are not keys: the file itself, the printing switch, and the upstream options,
/// which are `[[upstream]]` fields.
const NOT_KEYS: &[&str] = &[
    "config",
    "print-config",
    "upstream",
    "stdio",
    "upstream-header",
    "upstream-transport",
    "env",
    "pass-env",
    "cwd",
    "isolation",
    "help",
];

/// Options that replace another: `--port` on the command line also sets aside the file's
/// `listen` (which would otherwise win over any port), and the other way round.
const REPLACES: &[(&str, &str)] = &[("port", "listen"), ("listen", "port")];

/// Whether the command line's options (`given`) set aside the file's option `long`.
fn overridden(long: &str, given: &[String]) -> bool {
    given
        .iter()
        .any(|g| g == long || REPLACES.iter().any(|(cli, file)| g == cli && *file == long))
}

/// Tables that group options: `[audit]` holds `--audit-*` (and `file` = `--audit`).
const SECTIONS: &[&str] = &["audit", "policy", "admin"];

/// The fields of an `[[upstream]]` table.
const UPSTREAM_FIELDS: &[&str] = &[
    "name",
    "url",
    "command",
    "headers",
    "credentials",
    "env",
    "pass_env",
    "cwd",
    "isolation",
    "transport",
    "tools",
    "prompts",
];

/// A value of an option, as written in the file (references not yet resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OptionValue {
    /// A switch: `true` turns it on.
    Switch(bool),
    /// One or more values (several only for repeatable options).
    Values(Vec<String>),
}

/// One option set by the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileOption {
    /// The long option name, without dashes (`public-url`).
    pub(crate) long: String,
    pub(crate) value: OptionValue,
    pub(crate) line: usize,
}

/// Where an upstream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A Streamable HTTP endpoint, with headers (`NAME`, unresolved `VALUE`) and the caller's
    /// credentials there.
    Url {
        url: String,
        headers: Vec<(String, String)>,
        credentials: Option<Exchange>,
        /// `transport = "auto" | "streamable-http" | "sse"`.
        transport: mcp_oauth_gateway::HttpTransport,
    },
    /// A stdio command, with its configured environment.
    Command {
        argv: Vec<String>,
        env: Vec<(String, String)>,
        pass_env: Vec<String>,
        cwd: Option<PathBuf>,
        /// `per-user`: a child per user; `None` or `shared`: one for all.
        per_user: bool,
        /// `per-session`: a child per MCP session.
        per_session: bool,
    },
}

/// `credentials = { kind = "token-exchange", … }` of an `[[upstream]]`: each caller's verified
/// token exchanged for one meant for the upstream (secrets unresolved).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Exchange {
    pub(crate) token_endpoint: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    /// `client_secret_post` instead of HTTP Basic.
    pub(crate) secret_in_body: bool,
    /// Entra's on-behalf-of shape instead of RFC 8693.
    pub(crate) on_behalf_of: bool,
    pub(crate) audience: Option<String>,
    pub(crate) resource: Option<String>,
    pub(crate) scopes: Vec<String>,
}

/// The fields of `credentials = { … }`.
const CREDENTIAL_FIELDS: &[&str] = &[
    "kind",
    "authorization_server",
    "authorization_endpoint",
    "pattern",
    "header",
    "format",
    "env",
    "token_endpoint",
    "client_id",
    "client_secret",
    "client_auth",
    "grant",
    "audience",
    "resource",
    "scopes",
];

/// One `[[upstream]]` (or the upstream of the command line, which has no name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamSpec {
    pub(crate) name: Option<String>,
    pub(crate) target: Target,
    /// `[upstream.tools.TOOL]` and `[upstream.prompts.PROMPT]`: tools and prompts renamed or
    /// described (file-only).
    pub(crate) tools: Vec<crate::gateway_tools::ToolSpec>,
    pub(crate) line: usize,
    /// `credentials = { kind = "user-secret", … }`: each user's own pasted token.
    pub(crate) user_secret: Option<UserSecretSpec>,
    /// `credentials = { kind = "user-oauth", … }`: each user's own account there.
    pub(crate) user_oauth: Option<UserOAuthSpec>,
}

/// `credentials = { kind = "user-secret", pattern, header, format | env }` of an
/// `[[upstream]]`: each user's own token, pasted on the gateway's page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct UserSecretSpec {
    /// The pattern a pasted token must match, whole.
    pub(crate) pattern: Option<String>,
    /// The header of an HTTP upstream (default `Authorization`) and its value's format
    /// (default `Bearer {secret}`).
    pub(crate) header: Option<String>,
    pub(crate) format: Option<String>,
    /// The environment variable of a per-user stdio child.
    pub(crate) env: Option<String>,
}

/// `credentials = { kind = "user-oauth", … }` of an `[[upstream]]`: each user's own account
/// at the upstream's authorization server (secrets unresolved).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct UserOAuthSpec {
    /// The gateway's client there; none: its Client ID Metadata Document, or registered.
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<String>,
    /// `client_secret_post` instead of HTTP Basic.
    pub(crate) secret_in_body: bool,
    pub(crate) scopes: Vec<String>,
    /// The server's issuer, instead of the one the upstream's metadata names.
    pub(crate) authorization_server: Option<String>,
    /// Static endpoints, instead of discovery.
    pub(crate) authorization_endpoint: Option<String>,
    pub(crate) token_endpoint: Option<String>,
}

/// What `credentials = { … }` says.
enum Credentials {
    Exchange(Exchange),
    UserSecret(UserSecretSpec),
    UserOAuth(UserOAuthSpec),
}

/// A parsed configuration file.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigFile {
    pub(crate) path: PathBuf,
    pub(crate) options: Vec<FileOption>,
    pub(crate) upstreams: Vec<UpstreamSpec>,
}

/// The wrapper that parses the gateway's options alone (the file's and the command line's).
#[derive(Debug, clap::Parser)]
#[command(name = "mcp-oauth gateway", no_binary_name = true)]
pub(crate) struct GatewayCli {
    #[command(flatten)]
    pub(crate) args: crate::gateway_args::GatewayArgs,
}

/// What an option accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Switch,
    One,
    Many,
}

/// The options that are keys, long name → shape.
fn known_options() -> Vec<(String, Shape)> {
    let command = GatewayCli::command();
    command
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            if NOT_KEYS.contains(&long) {
                return None;
            }
            let shape = match arg.get_action() {
                ArgAction::SetTrue | ArgAction::SetFalse => Shape::Switch,
                ArgAction::Append => Shape::Many,
                _ => Shape::One,
            };
            Some((long.to_owned(), shape))
        })
        .collect()
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // `row[j]`: the distance between the part of `a` read so far and `b[..j]`.
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut next = Vec::with_capacity(row.len());
        next.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let replace = row
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(usize::from(ca != *cb));
            let delete = row
                .get(j + 1)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let insert = next.last().copied().unwrap_or(usize::MAX).saturating_add(1);
            next.push(replace.min(delete).min(insert));
        }
        row = next;
    }
    row.last().copied().unwrap_or_default()
}

/// " (did you mean `x`?)" when a candidate is close enough.
fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let best = candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, c)) if d <= 2.max(word.len() / 3) => format!(" (did you mean `{c}`?)"),
        _ => String::new(),
    }
}

/// Collects errors with their line.
struct Errors<'t> {
    text: &'t str,
    file: String,
    list: Vec<String>,
}

impl Errors<'_> {
    fn at(&mut self, offset: usize, message: impl std::fmt::Display) {
        let line = line_of(self.text, offset);
        self.list.push(format!("{}:{line}: {message}", self.file));
    }
}

/// A scalar value as text (strings, integers, floats, booleans).
fn scalar(value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => Some(i.as_str().replace('_', "")),
        DeValue::Float(f) => Some(f.as_str().to_owned()),
        DeValue::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(value: &toml::Spanned<DeValue<'_>>, errors: &mut Errors<'_>, what: &str) -> Vec<String> {
    match value.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|item| {
                let text = scalar(item.get_ref());
                if text.is_none() {
                    errors.at(item.span().start, format!("{what}: each item is a string"));
                }
                text
            })
            .collect(),
        other => match scalar(other) {
            Some(text) => vec![text],
            None => {
                errors.at(
                    value.span().start,
                    format!("{what}: expected a string or an array of strings"),
                );
                Vec::new()
            }
        },
    }
}

fn pairs(
    value: &toml::Spanned<DeValue<'_>>,
    errors: &mut Errors<'_>,
    what: &str,
) -> Vec<(String, String)> {
    let DeValue::Table(table) = value.get_ref() else {
        errors.at(
            value.span().start,
            format!("{what}: expected a table of NAME = \"VALUE\""),
        );
        return Vec::new();
    };
    table
        .iter()
        .filter_map(|(k, v)| match scalar(v.get_ref()) {
            Some(text) => Some((k.get_ref().to_string(), text)),
            None => {
                errors.at(
                    v.span().start,
                    format!("{what}.{}: expected a string", k.get_ref()),
                );
                None
            }
        })
        .collect()
}

/// `credentials = { kind = "token-exchange", token_endpoint = …, client_id = …,
/// client_secret = "${SECRET}", audience | resource | scopes, client_auth = "basic" | "post",
/// grant = "token-exchange" | "on-behalf-of" }`.
fn credentials(value: &toml::Spanned<DeValue<'_>>, errors: &mut Errors<'_>) -> Option<Credentials> {
    let at = value.span().start;
    let DeValue::Table(table) = value.get_ref() else {
        errors.at(
            at,
            "[[upstream]] credentials: expected a table, credentials = { kind = \"token-exchange\", … }",
        );
        return None;
    };
    let before = errors.list.len();
    for (key, _) in table.iter() {
        if !CREDENTIAL_FIELDS.contains(&key.get_ref().as_ref()) {
            errors.at(
                key.span().start,
                format!(
                    "unknown field `{}` in credentials{}; the fields are {}",
                    key.get_ref(),
                    suggest(key.get_ref(), CREDENTIAL_FIELDS.iter().copied()),
                    CREDENTIAL_FIELDS.join(", ")
                ),
            );
        }
    }
    let text = |name: &str, errors: &mut Errors<'_>| {
        table.get(name).and_then(|v| {
            let text = scalar(v.get_ref());
            if text.is_none() {
                errors.at(
                    v.span().start,
                    format!("credentials {name}: expected a string"),
                );
            }
            text
        })
    };
    match text("kind", errors).as_deref() {
        Some("token-exchange") => {}
        Some("user-secret") => {
            let spec = UserSecretSpec {
                pattern: text("pattern", errors),
                header: text("header", errors),
                format: text("format", errors),
                env: text("env", errors),
            };
            if spec.env.is_some() && (spec.header.is_some() || spec.format.is_some()) {
                errors.at(
                    at,
                    "credentials: a user-secret goes in a header (header, format) or in env, not both",
                );
            }
            for field in EXCHANGE_ONLY {
                if table.get(field).is_some() {
                    errors.at(
                        at,
                        format!("credentials {field} is for kind = \"token-exchange\""),
                    );
                }
            }
            if errors.list.len() > before {
                return None;
            }
            return Some(Credentials::UserSecret(spec));
        }
        Some("user-oauth") => {
            for field in [
                "grant", "audience", "resource", "pattern", "header", "format", "env",
            ] {
                if table.get(field).is_some() {
                    errors.at(
                        at,
                        format!("credentials {field} is not a field of kind = \"user-oauth\""),
                    );
                }
            }
            let secret_in_body = match text("client_auth", errors).as_deref() {
                None | Some("basic") => false,
                Some("post") => true,
                Some(other) => {
                    errors.at(
                        at,
                        format!("credentials client_auth {other:?}: write \"basic\" (HTTP Basic, the default) or \"post\" (in the body)"),
                    );
                    false
                }
            };
            let spec = UserOAuthSpec {
                client_id: text("client_id", errors),
                client_secret: text("client_secret", errors),
                secret_in_body,
                scopes: table
                    .get("scopes")
                    .map(|v| strings(v, errors, "credentials scopes"))
                    .unwrap_or_default(),
                authorization_server: text("authorization_server", errors),
                authorization_endpoint: text("authorization_endpoint", errors),
                token_endpoint: text("token_endpoint", errors),
            };
            if spec.authorization_endpoint.is_some() != spec.token_endpoint.is_some() {
                errors.at(
                    at,
                    "credentials: give both authorization_endpoint and token_endpoint (static endpoints), or neither (discovered)",
                );
            }
            if spec.client_id.is_none()
                && (spec.client_secret.is_some() || spec.token_endpoint.is_some())
            {
                errors.at(
                    at,
                    "credentials: a client_secret or static endpoints need the gateway's client_id there",
                );
            }
            if errors.list.len() > before {
                return None;
            }
            return Some(Credentials::UserOAuth(spec));
        }
        Some(other) => {
            errors.at(
                at,
                format!("credentials kind {other:?}: write \"token-exchange\", \"user-secret\" or \"user-oauth\""),
            );
            return None;
        }
        None => {
            errors.at(
                at,
                "credentials: give kind = \"token-exchange\", \"user-secret\" or \"user-oauth\"",
            );
            return None;
        }
    }
    for field in ["pattern", "header", "format", "env"] {
        if table.get(field).is_some() {
            errors.at(
                at,
                format!("credentials {field} is for kind = \"user-secret\""),
            );
        }
    }
    let required = |name: &str, errors: &mut Errors<'_>| {
        let value = text(name, errors);
        if value.is_none() && table.get(name).is_none() {
            errors.at(at, format!("credentials: give {name} = \"…\""));
        }
        value.unwrap_or_default()
    };
    let token_endpoint = required("token_endpoint", errors);
    let client_id = required("client_id", errors);
    let client_secret = required("client_secret", errors);
    let secret_in_body = match text("client_auth", errors).as_deref() {
        None | Some("basic") => false,
        Some("post") => true,
        Some(other) => {
            errors.at(
                at,
                format!("credentials client_auth {other:?}: write \"basic\" (HTTP Basic, the default) or \"post\" (in the body)"),
            );
            false
        }
    };
    let on_behalf_of = match text("grant", errors).as_deref() {
        None | Some("token-exchange") => false,
        Some("on-behalf-of") => true,
        Some(other) => {
            errors.at(
                at,
                format!("credentials grant {other:?}: write \"token-exchange\" (RFC 8693, the default) or \"on-behalf-of\" (Microsoft Entra)"),
            );
            false
        }
    };
    let audience = text("audience", errors);
    let resource = text("resource", errors);
    let scopes = table
        .get("scopes")
        .map(|v| strings(v, errors, "credentials scopes"))
        .unwrap_or_default();
    if audience.is_none() && resource.is_none() && scopes.is_empty() {
        errors.at(
            at,
            "credentials: name what the exchanged token is for: audience, resource or scopes",
        );
    }
    if errors.list.len() > before {
        return None;
    }
    Some(Credentials::Exchange(Exchange {
        token_endpoint,
        client_id,
        client_secret,
        secret_in_body,
        on_behalf_of,
        audience,
        resource,
        scopes,
    }))
}

/// The fields of a token exchange only.
const EXCHANGE_ONLY: [&str; 8] = [
    "token_endpoint",
    "client_id",
    "client_secret",
    "client_auth",
    "grant",
    "audience",
    "resource",
    "scopes",
];

fn upstream(table: &DeTable<'_>, offset: usize, errors: &mut Errors<'_>) -> Option<UpstreamSpec> {
    let before = errors.list.len();
    for (key, _) in table.iter() {
        if !UPSTREAM_FIELDS.contains(&key.get_ref().as_ref()) {
            errors.at(
                key.span().start,
                format!(
                    "unknown field `{}` in [[upstream]]{}; the fields are {}",
                    key.get_ref(),
                    suggest(key.get_ref(), UPSTREAM_FIELDS.iter().copied()),
                    UPSTREAM_FIELDS.join(", ")
                ),
            );
        }
    }
    let get = |name: &str| table.get(name);
    let text = |name: &str, errors: &mut Errors<'_>| {
        get(name).and_then(|v| {
            let text = scalar(v.get_ref());
            if text.is_none() {
                errors.at(
                    v.span().start,
                    format!("[[upstream]] {name}: expected a string"),
                );
            }
            text
        })
    };
    let name = text("name", errors);
    if let Some(name) = &name
        && !mcp_oauth_gateway::valid_upstream_name(name)
    {
        errors.at(
            offset,
            format!("[[upstream]] name {name:?}: use 1 to 32 letters, digits or '-' (it prefixes tool names as NAME__tool)"),
        );
    }
    let mut tool_errors = Vec::new();
    let mut tools = get("tools")
        .map(|v| crate::gateway_tools::parse(v, &mut tool_errors, false))
        .unwrap_or_default();
    if let Some(prompts) = get("prompts") {
        tools.extend(crate::gateway_tools::parse(prompts, &mut tool_errors, true));
    }
    for (at, message) in tool_errors {
        errors.at(at, message);
    }
    let url = text("url", errors);
    let command =
        get("command").map(|v| (v.span().start, strings(v, errors, "[[upstream]] command")));
    let mut user_secret = None;
    let mut user_oauth = None;
    let target = match (url, command) {
        (Some(_), Some(_)) => {
            errors.at(offset, "[[upstream]]: give url or command, not both");
            None
        }
        (None, None) => {
            errors.at(
                offset,
                "[[upstream]]: give url = \"http://HOST:PORT/mcp\" or command = [\"CMD\", \"ARG\"]",
            );
            None
        }
        (Some(url), None) => {
            for field in ["env", "pass_env", "cwd", "isolation"] {
                if let Some(v) = get(field) {
                    errors.at(
                        v.span().start,
                        format!("[[upstream]] {field} is for a command, not for a url"),
                    );
                }
            }
            let headers = get("headers")
                .map(|v| pairs(v, errors, "headers"))
                .unwrap_or_default();
            let credentials = match get("credentials").and_then(|v| credentials(v, errors)) {
                Some(Credentials::Exchange(exchange)) => Some(exchange),
                Some(Credentials::UserSecret(spec)) => {
                    if spec.env.is_some() {
                        errors.at(
                            offset,
                            "[[upstream]] credentials env is for a command (per-user); a url takes header and format",
                        );
                    }
                    user_secret = Some(spec);
                    None
                }
                Some(Credentials::UserOAuth(spec)) => {
                    user_oauth = Some(spec);
                    None
                }
                None => None,
            };
            let transport = match text("transport", errors).as_deref() {
                None | Some("auto") => mcp_oauth_gateway::HttpTransport::Auto,
                Some("streamable-http") => mcp_oauth_gateway::HttpTransport::StreamableHttp,
                Some("sse") => mcp_oauth_gateway::HttpTransport::Sse,
                Some(other) => {
                    errors.at(
                        get("transport").map_or(offset, |v| v.span().start),
                        format!("[[upstream]] transport {other:?}: write \"auto\" (Streamable HTTP, falling back to legacy SSE), \"streamable-http\" or \"sse\""),
                    );
                    mcp_oauth_gateway::HttpTransport::Auto
                }
            };
            Some(Target::Url {
                url,
                headers,
                credentials,
                transport,
            })
        }
        (None, Some((at, argv))) => {
            if argv.is_empty() {
                errors.at(
                    at,
                    "[[upstream]] command is empty; write command = [\"CMD\", \"ARG\"]",
                );
            }
            if let Some(v) = get("headers") {
                errors.at(
                    v.span().start,
                    "[[upstream]] headers are for a url, not for a command",
                );
            }
            if let Some(v) = get("credentials") {
                match credentials(v, errors) {
                    Some(Credentials::UserSecret(spec)) if spec.env.is_some() => {
                        user_secret = Some(spec);
                    }
                    Some(Credentials::UserSecret(_)) => errors.at(
                        v.span().start,
                        "[[upstream]] credentials of a command: give env = \"NAME\" (the variable the user's token goes in)",
                    ),
                    Some(Credentials::Exchange(_) | Credentials::UserOAuth(_)) => errors.at(
                        v.span().start,
                        "[[upstream]] credentials are for a url, not for a command",
                    ),
                    None => {}
                }
            }
            if let Some(v) = get("transport") {
                errors.at(
                    v.span().start,
                    "[[upstream]] transport is for a url, not for a command",
                );
            }
            let env = get("env")
                .map(|v| pairs(v, errors, "env"))
                .unwrap_or_default();
            let pass_env = get("pass_env")
                .map(|v| strings(v, errors, "pass_env"))
                .unwrap_or_default();
            let cwd = text("cwd", errors).map(PathBuf::from);
            let (per_user, per_session) = match text("isolation", errors).as_deref() {
                None | Some("shared") => (false, false),
                Some("per-user") => (true, false),
                Some("per-session") => (false, true),
                Some(other) => {
                    errors.at(
                        get("isolation").map_or(offset, |v| v.span().start),
                        format!("[[upstream]] isolation {other:?}: write \"shared\" (one child for every user), \"per-user\" or \"per-session\""),
                    );
                    (false, false)
                }
            };
            Some(Target::Command {
                argv,
                env,
                pass_env,
                cwd,
                per_user,
                per_session,
            })
        }
    };
    if errors.list.len() > before {
        return None;
    }
    if let (
        Some(_),
        Some(Target::Command {
            per_user: false, ..
        }),
    ) = (&user_secret, &target)
    {
        errors.at(
            offset,
            "[[upstream]] credentials user-secret of a command needs isolation = \"per-user\" (each user's child gets their own token)",
        );
        return None;
    }
    Some(UpstreamSpec {
        name,
        target: target?,
        tools,
        line: line_of(errors.text, offset),
        user_secret,
        user_oauth,
    })
}

/// `credentials = { kind = "user-secret", … }` as written.
fn user_secret_toml(spec: &UserSecretSpec) -> String {
    let mut items = vec!["kind = \"user-secret\"".to_owned()];
    for (name, value) in [
        ("pattern", &spec.pattern),
        ("header", &spec.header),
        ("format", &spec.format),
        ("env", &spec.env),
    ] {
        if let Some(value) = value {
            items.push(format!("{name} = {}", toml_string(value)));
        }
    }
    format!("{{ {} }}", items.join(", "))
}

/// `credentials = { kind = "user-oauth", … }` as written (the secret as its reference).
fn user_oauth_toml(spec: &UserOAuthSpec) -> String {
    let mut items = vec!["kind = \"user-oauth\"".to_owned()];
    for (name, value) in [
        ("client_id", &spec.client_id),
        ("client_secret", &spec.client_secret),
        ("authorization_server", &spec.authorization_server),
        ("authorization_endpoint", &spec.authorization_endpoint),
        ("token_endpoint", &spec.token_endpoint),
    ] {
        if let Some(value) = value {
            items.push(format!("{name} = {}", toml_string(value)));
        }
    }
    if spec.secret_in_body {
        items.push("client_auth = \"post\"".to_owned());
    }
    if !spec.scopes.is_empty() {
        let scopes: Vec<String> = spec.scopes.iter().map(|s| toml_string(s)).collect();
        items.push(format!("scopes = [{}]", scopes.join(", ")));
    }
    format!("{{ {} }}", items.join(", "))
}

/// `credentials = { … }` as written (the secret as its reference, never its value).
fn exchange_toml(c: &Exchange) -> String {
    let mut items = vec![
        "kind = \"token-exchange\"".to_owned(),
        format!("token_endpoint = {}", toml_string(&c.token_endpoint)),
        format!("client_id = {}", toml_string(&c.client_id)),
        format!("client_secret = {}", toml_string(&c.client_secret)),
    ];
    if c.secret_in_body {
        items.push("client_auth = \"post\"".to_owned());
    }
    if c.on_behalf_of {
        items.push("grant = \"on-behalf-of\"".to_owned());
    }
    if let Some(a) = &c.audience {
        items.push(format!("audience = {}", toml_string(a)));
    }
    if let Some(r) = &c.resource {
        items.push(format!("resource = {}", toml_string(r)));
    }
    if !c.scopes.is_empty() {
        let scopes: Vec<String> = c.scopes.iter().map(|s| toml_string(s)).collect();
        items.push(format!("scopes = [{}]", scopes.join(", ")));
    }
    format!("{{ {} }}", items.join(", "))
}

/// Parses the text of a configuration file; `file` names it in messages. Every problem is
/// reported, one line each, with its line number.
pub(crate) fn parse(text: &str, file: &str) -> Result<ConfigFile, Vec<String>> {
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(err) => {
            let line = err.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            return Err(vec![format!("{file}:{line}: {}", err.message())]);
        }
    };
    let mut errors = Errors {
        text,
        file: file.to_owned(),
        list: Vec::new(),
    };
    let known = known_options();
    let shape_of = |long: &str| known.iter().find(|(k, _)| k == long).map(|(_, s)| *s);
    let mut options: Vec<FileOption> = Vec::new();
    let mut specs: Vec<UpstreamSpec> = Vec::new();
    let mut option = |long: String, value: &toml::Spanned<DeValue<'_>>, errors: &mut Errors<'_>| {
        let line = line_of(errors.text, value.span().start);
        let key = long.replace('-', "_");
        let Some(shape) = shape_of(&long) else {
            return false;
        };
        let value = match (shape, value.get_ref()) {
            (Shape::Switch, DeValue::Boolean(b)) => OptionValue::Switch(*b),
            (Shape::Switch, _) => {
                errors.at(
                    value.span().start,
                    format!("{key} is a switch: write {key} = true"),
                );
                return true;
            }
            (Shape::One, v) => match scalar(v) {
                Some(text) => OptionValue::Values(vec![text]),
                None => {
                    errors.at(
                        value.span().start,
                        format!("{key} takes one value (a string or a number)"),
                    );
                    return true;
                }
            },
            (Shape::Many, _) => OptionValue::Values(strings(value, errors, &key)),
        };
        options.push(FileOption { long, value, line });
        true
    };
    let keys: Vec<String> = known
        .iter()
        .map(|(k, _)| k.replace('-', "_"))
        .chain(SECTIONS.iter().map(|s| format!("[{s}]")))
        .chain(std::iter::once("[[upstream]]".to_owned()))
        .collect();
    for (key, value) in root.get_ref().iter() {
        let name: &str = key.get_ref();
        match (name, value.get_ref()) {
            ("upstream", DeValue::Array(items)) => {
                for item in items {
                    match item.get_ref() {
                        DeValue::Table(table) => {
                            if let Some(spec) = upstream(table, item.span().start, &mut errors) {
                                specs.push(spec);
                            }
                        }
                        _ => errors.at(
                            item.span().start,
                            "upstream: each item is a table ([[upstream]])",
                        ),
                    }
                }
            }
            ("upstream", DeValue::Table(table)) => {
                if let Some(spec) = upstream(table, value.span().start, &mut errors) {
                    specs.push(spec);
                }
            }
            (section, DeValue::Table(table)) if SECTIONS.contains(&section) => {
                for (k, v) in table.iter() {
                    let field: &str = k.get_ref();
                    let long = if field == "file" {
                        section.to_owned()
                    } else {
                        format!("{section}-{}", field.replace('_', "-"))
                    };
                    if !option(long, v, &mut errors) {
                        let fields: Vec<String> = known
                            .iter()
                            .filter_map(|(k, _)| {
                                if k == section {
                                    Some("file".to_owned())
                                } else {
                                    k.strip_prefix(&format!("{section}-"))
                                        .map(|f| f.replace('-', "_"))
                                }
                            })
                            .collect();
                        errors.at(
                            k.span().start,
                            format!(
                                "unknown key `{field}` in [{section}]{}; the keys are {}",
                                suggest(field, fields.iter().map(String::as_str)),
                                fields.join(", ")
                            ),
                        );
                    }
                }
            }
            (name, DeValue::Table(_)) => errors.at(
                key.span().start,
                format!(
                    "unknown table [{name}]{}",
                    suggest(&format!("[{name}]"), keys.iter().map(String::as_str))
                ),
            ),
            (name, _) => {
                let long = name.replace('_', "-");
                if NOT_KEYS.contains(&long.as_str()) {
                    errors.at(
                        key.span().start,
                        format!("`{name}` belongs in an [[upstream]] table (url, command, headers, env, pass_env, cwd)"),
                    );
                } else if !option(long, value, &mut errors) {
                    errors.at(
                        key.span().start,
                        format!(
                            "unknown key `{name}`{}; every option of `mcp-oauth gateway --help` is a key (--public-url is public_url)",
                            suggest(name, keys.iter().map(String::as_str))
                        ),
                    );
                }
            }
        }
    }
    if specs.len() > 1 {
        let mut seen: Vec<&str> = Vec::new();
        for spec in &specs {
            match spec.name.as_deref() {
                None => errors.list.push(format!(
                    "{file}:{}: with several [[upstream]] tables, each needs a name (it prefixes its tools: NAME__tool)",
                    spec.line
                )),
                Some(name) if seen.contains(&name) => errors
                    .list
                    .push(format!("{file}:{}: a second upstream named {name:?}", spec.line)),
                Some(name) => seen.push(name),
            }
        }
    }
    if errors.list.is_empty() {
        Ok(ConfigFile {
            path: PathBuf::from(file),
            options,
            upstreams: specs,
        })
    } else {
        Err(errors.list)
    }
}

/// Reads and parses the file at `path`.
pub(crate) fn load(path: &Path) -> Result<ConfigFile, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![format!(
            "cannot read the configuration file {}: {e}",
            path.display()
        )]
    })?;
    let mut config = parse(&text, &path.display().to_string())?;
    config.path = path.to_owned();
    Ok(config)
}

/// `${NAME}` replaced by the variable's value.
fn expand(value: &str, key: &str, line: usize, file: &Path) -> Result<String, String> {
    if !value.contains("${") {
        return Ok(value.to_owned());
    }
    expand_references(value).map_err(|e| format!("{}:{line}: {key}: {e}", file.display()))
}

/// Every `${NAME}` in `value` replaced by the environment variable NAME, and every
/// `${file:PATH}` by the content of that file (surrounding whitespace trimmed), in one pass
/// (what a file holds is not read for references). Errors name the variable or the file,
/// never a value.
pub(crate) fn expand_references(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start + 2..).unwrap_or_default();
        let Some(end) = after.find('}') else {
            return Err("an unclosed ${ (write ${NAME} or ${file:PATH})".to_owned());
        };
        let reference = after.get(..end).unwrap_or_default();
        match reference.strip_prefix("file:") {
            Some(path) => {
                let content = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {path}: {e}"))?;
                out.push_str(content.trim());
            }
            None => {
                let value = std::env::var(reference)
                    .map_err(|_| format!("the environment variable {reference} is not set"))?;
                out.push_str(&value);
            }
        }
        rest = after.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

/// A secret value of an upstream (a header, a variable, a client secret): `file:PATH` as the
/// whole value is the file's content; otherwise [`expand_references`].
pub(crate) fn resolve_value(value: &str) -> Result<String, String> {
    if value.starts_with("file:") {
        return mcp_oauth_gateway::resolve_secret(value).map_err(|e| e.to_string());
    }
    expand_references(value)
}

/// The options given on the command line (long names), from `argv` (the arguments after
/// `gateway`).
fn given_on_command_line(argv: &[OsString]) -> Result<Vec<String>, String> {
    let command = GatewayCli::command();
    let matches = command
        .clone()
        .try_get_matches_from(argv)
        .map_err(|e| e.to_string())?;
    Ok(command
        .get_arguments()
        .filter(|arg| matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine))
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect())
}

/// The file's options as arguments (`${NAME}` resolved when `resolve`), except those the
/// command line gives.
fn file_arguments(
    config: &ConfigFile,
    given: &[String],
    resolve: bool,
) -> Result<Vec<OsString>, String> {
    let mut argv = Vec::new();
    for option in &config.options {
        if overridden(&option.long, given) {
            continue;
        }
        match &option.value {
            OptionValue::Switch(true) => argv.push(OsString::from(format!("--{}", option.long))),
            OptionValue::Switch(false) => {}
            OptionValue::Values(values) => {
                for value in values {
                    let value = if resolve {
                        expand(
                            value,
                            &option.long.replace('-', "_"),
                            option.line,
                            &config.path,
                        )?
                    } else {
                        value.clone()
                    };
                    argv.push(OsString::from(format!("--{}={value}", option.long)));
                }
            }
        }
    }
    Ok(argv)
}

/// The gateway's options from the file and the command line (`argv`: the arguments after
/// `gateway`), the command line winning option by option.
pub(crate) fn merge(
    config: &ConfigFile,
    argv: &[OsString],
) -> Result<crate::gateway_args::GatewayArgs, String> {
    let given = given_on_command_line(argv)?;
    let mut all = file_arguments(config, &given, true)?;
    all.extend(argv.iter().cloned());
    <GatewayCli as clap::Parser>::try_parse_from(all)
        .map(|cli| cli.args)
        .map_err(|e| {
            if let Some(place) = refused_key(config, &e, &given) {
                return place;
            }
            format!(
                "{} (options from {} and the command line)",
                e.to_string().trim_end(),
                config.path.display()
            )
        })
}

/// When `error` refuses a value the file gave (not one of the command line's): the file,
/// line, key and what to write instead (`g.toml:3: per_user_max = "0": write …`).
fn refused_key(config: &ConfigFile, error: &clap::Error, given: &[String]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use std::error::Error as _;
    if error.kind() != ErrorKind::ValueValidation {
        return None;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    if overridden(long, given) {
        return None;
    }
    let option = config.options.iter().find(|o| o.long == long)?;
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => format!(" = {}", toml_string(value)),
        _ => String::new(),
    };
    let why = match error.source() {
        Some(why) => why.to_string(),
        None => "not a valid value".to_owned(),
    };
    Some(format!(
        "{}:{}: {}{value}: {why}",
        config.path.display(),
        option.line,
        long.replace('-', "_"),
    ))
}

/// The upstreams the command line gives (`--upstream`, `--stdio`, `-- CMD`), else the file's.
pub(crate) fn upstreams(
    args: &crate::gateway_args::GatewayArgs,
    config: Option<&ConfigFile>,
) -> Vec<UpstreamSpec> {
    let specs = args.command_line_upstreams();
    if !specs.is_empty() {
        return specs;
    }
    config.map(|c| c.upstreams.clone()).unwrap_or_default()
}

fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

fn toml_value(value: &str) -> String {
    if !value.is_empty() && value.len() < 10 && value.bytes().all(|b| b.is_ascii_digit()) {
        value.to_owned()
    } else {
        toml_string(value)
    }
}

/// The configuration file equivalent to the file (if any) plus the command line, with
/// references left as written.
pub(crate) fn print(config: Option<&ConfigFile>, argv: &[OsString]) -> Result<String, String> {
    let command = GatewayCli::command();
    let matches = command
        .clone()
        .try_get_matches_from(argv)
        .map_err(|e| e.to_string())?;
    let known = known_options();
    let mut options: Vec<(String, OptionValue)> = Vec::new();
    if let Some(config) = config {
        for option in &config.options {
            options.push((option.long.clone(), option.value.clone()));
        }
    }
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if NOT_KEYS.contains(&long)
            || matches.value_source(arg.get_id().as_str()) != Some(ValueSource::CommandLine)
        {
            continue;
        }
        let shape = known.iter().find(|(k, _)| k == long).map(|(_, s)| *s);
        let value = match shape {
            Some(Shape::Switch) => OptionValue::Switch(matches.get_flag(arg.get_id().as_str())),
            Some(_) => OptionValue::Values(
                matches
                    .get_raw(arg.get_id().as_str())
                    .into_iter()
                    .flatten()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect(),
            ),
            None => continue,
        };
        options.retain(|(l, _)| !overridden(l, &[long.to_owned()]));
        options.push((long.to_owned(), value));
    }
    let mut out = String::from("# mcp-oauth gateway --config FILE\n");
    let mut sections: Vec<(&str, Vec<String>)> =
        SECTIONS.iter().map(|s| (*s, Vec::new())).collect();
    for (long, value) in &options {
        let shape = known.iter().find(|(k, _)| k == long).map(|(_, s)| *s);
        let rendered = match value {
            OptionValue::Switch(b) => b.to_string(),
            OptionValue::Values(values) if shape == Some(Shape::Many) => format!(
                "[{}]",
                values
                    .iter()
                    .map(|v| toml_string(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            OptionValue::Values(values) => toml_value(values.first().map_or("", String::as_str)),
        };
        let section = sections
            .iter_mut()
            .find(|(s, _)| long == s || long.starts_with(&format!("{s}-")));
        match section {
            Some((s, lines)) => {
                let field = if long == s {
                    "file".to_owned()
                } else {
                    long[s.len() + 1..].replace('-', "_")
                };
                lines.push(format!("{field} = {rendered}"));
            }
            None => {
                let _ = writeln!(out, "{} = {rendered}", long.replace('-', "_"));
            }
        }
    }
    for (section, lines) in &sections {
        if !lines.is_empty() {
            let _ = writeln!(out, "\n[{section}]");
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    let parsed = GatewayCli::try_parse_from_matches(&matches)?;
    parsed.check_upstream_names()?;
    for spec in upstreams(&parsed, config) {
        let _ = writeln!(out, "\n[[upstream]]");
        if let Some(name) = &spec.name {
            let _ = writeln!(out, "name = {}", toml_string(name));
        }
        match &spec.target {
            Target::Url {
                url,
                headers,
                credentials,
                transport,
            } => {
                let _ = writeln!(out, "url = {}", toml_string(url));
                match transport {
                    mcp_oauth_gateway::HttpTransport::Sse => {
                        let _ = writeln!(out, "transport = \"sse\"");
                    }
                    mcp_oauth_gateway::HttpTransport::StreamableHttp => {
                        let _ = writeln!(out, "transport = \"streamable-http\"");
                    }
                    _ => {}
                }
                if !headers.is_empty() {
                    let items: Vec<String> = headers
                        .iter()
                        .map(|(k, v)| format!("{} = {}", toml_string(k), toml_string(v)))
                        .collect();
                    let _ = writeln!(out, "headers = {{ {} }}", items.join(", "));
                }
                if let Some(c) = credentials {
                    let _ = writeln!(out, "credentials = {}", exchange_toml(c));
                }
                if let Some(spec) = &spec.user_secret {
                    let _ = writeln!(out, "credentials = {}", user_secret_toml(spec));
                }
                if let Some(spec) = &spec.user_oauth {
                    let _ = writeln!(out, "credentials = {}", user_oauth_toml(spec));
                }
            }
            Target::Command {
                argv,
                env,
                pass_env,
                cwd,
                per_user,
                per_session,
            } => {
                let items: Vec<String> = argv.iter().map(|a| toml_string(a)).collect();
                let _ = writeln!(out, "command = [{}]", items.join(", "));
                if !env.is_empty() {
                    let items: Vec<String> = env
                        .iter()
                        .map(|(k, v)| format!("{} = {}", toml_string(k), toml_string(v)))
                        .collect();
                    let _ = writeln!(out, "env = {{ {} }}", items.join(", "));
                }
                if !pass_env.is_empty() {
                    let items: Vec<String> = pass_env.iter().map(|a| toml_string(a)).collect();
                    let _ = writeln!(out, "pass_env = [{}]", items.join(", "));
                }
                if let Some(cwd) = cwd {
                    let _ = writeln!(out, "cwd = {}", toml_string(&cwd.display().to_string()));
                }
                if *per_user {
                    let _ = writeln!(out, "isolation = \"per-user\"");
                }
                if *per_session {
                    let _ = writeln!(out, "isolation = \"per-session\"");
                }
                if let Some(spec) = &spec.user_secret {
                    let _ = writeln!(out, "credentials = {}", user_secret_toml(spec));
                }
            }
        }
        crate::gateway_tools::print(&mut out, &spec.tools, toml_string);
    }
    Ok(out)
}

impl GatewayCli {
    fn try_parse_from_matches(
        matches: &clap::ArgMatches,
    ) -> Result<crate::gateway_args::GatewayArgs, String> {
        <Self as clap::FromArgMatches>::from_arg_matches(matches)
            .map(|cli| cli.args)
            .map_err(|e| e.to_string())
    }
}

/// The library's tables of the upstreams that have one, by upstream name.
pub(crate) fn tool_names(specs: &[UpstreamSpec]) -> Vec<(String, ToolNames)> {
    specs
        .iter()
        .filter(|spec| !spec.tools.is_empty())
        .map(|spec| {
            let names = spec.tools.iter().fold(ToolNames::new(), |names, t| {
                let names = match (&t.name, t.prompt) {
                    (Some(name), false) => names.rename(&t.tool, name),
                    (Some(name), true) => names.rename_prompt(&t.tool, name),
                    (None, _) => names,
                };
                match (&t.description, t.prompt) {
                    (Some(description), false) => names.describe(&t.tool, description),
                    (Some(description), true) => names.describe_prompt(&t.tool, description),
                    (None, _) => names,
                }
            });
            (spec.name.clone().unwrap_or_default(), names)
        })
        .collect()
}

/// Every table refused (a bad or colliding name), with its line.
pub(crate) fn check_tools(specs: &[UpstreamSpec]) -> Vec<String> {
    let several = specs.len() > 1;
    let mut problems = Vec::new();
    for (spec, (upstream, names)) in specs
        .iter()
        .filter(|spec| !spec.tools.is_empty())
        .zip(tool_names(specs))
    {
        let problem = if several {
            names.check(&upstream).err().map(|e| e.to_string())
        } else {
            names.check_alone(&upstream).err().map(|e| e.to_string())
        };
        if let Some(problem) = problem {
            problems.push(format!("line {}: {problem}", spec.line));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn distances_count_edits() {
        assert_eq!(distance("fiel", "file"), 2);
        assert_eq!(distance("public_urll", "public_url"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("abc", "abc"), 0);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn every_option_is_a_key_and_sections_group_them() {
        let config = parse(
            r#"
public_url = "https://mcp.example.com"
port = 9000
user = ["alice:a", "bob:b"]
auto_approve = true
[audit]
file = "audit.jsonl"
arguments = "full"
[admin]
listen = "127.0.0.1:9464"
[[upstream]]
url = "http://127.0.0.1:3000/mcp"
headers = { "X-Api-Key" = "${KEY}" }
"#,
            "g.toml",
        )
        .expect("valid");
        let longs: Vec<&str> = config.options.iter().map(|o| o.long.as_str()).collect();
        for long in [
            "public-url",
            "port",
            "user",
            "auto-approve",
            "audit",
            "audit-arguments",
            "admin-listen",
        ] {
            assert!(longs.contains(&long), "{long} in {longs:?}");
        }
        let user = config
            .options
            .iter()
            .find(|o| o.long == "user")
            .expect("user");
        assert_eq!(
            user.value,
            OptionValue::Values(vec!["alice:a".into(), "bob:b".into()])
        );
        assert_eq!(user.line, 4);
        assert_eq!(
            config.upstreams,
            [UpstreamSpec {
                name: None,
                target: Target::Url {
                    url: "http://127.0.0.1:3000/mcp".into(),
                    headers: vec![("X-Api-Key".into(), "${KEY}".into())],
                    credentials: None,
                    transport: mcp_oauth_gateway::HttpTransport::Auto,
                },
                tools: Vec::new(),
                line: 11,
                user_secret: None,
                user_oauth: None,
            }]
        );
        let merged = merge(&config, &[]).expect("merge");
        assert_eq!(merged.access.audit_path(), Some(Path::new("audit.jsonl")));
        assert_eq!(
            merged.admin_listen,
            Some("127.0.0.1:9464".parse().expect("addr"))
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line_and_the_closest_key() {
        let errors = parse(
            "public_urll = \"https://x\"\n[audit]\nfiel = \"a\"\n[polcy]\nx = 1\n[[upstream]]\nurl = \"http://127.0.0.1:1/mcp\"\nheader = {}\n",
            "g.toml",
        )
        .unwrap_err();
        let all = errors.join("\n");
        assert!(
            all.contains("g.toml:1: unknown key `public_urll` (did you mean `public_url`?)"),
            "{all}"
        );
        assert!(
            all.contains("g.toml:3: unknown key `fiel` in [audit] (did you mean `file`?)"),
            "{all}"
        );
        assert!(all.contains("g.toml:4: unknown table [polcy]"), "{all}");
        assert!(
            all.contains(
                "g.toml:8: unknown field `header` in [[upstream]] (did you mean `headers`?)"
            ),
            "{all}"
        );
        assert_eq!(errors.len(), 4, "{all}");
    }

    #[test]
    fn wrong_shapes_and_upstreams_are_explained() {
        let all = parse(
            "auto_approve = \"yes\"\nport = [1]\nupstream = \"x\"\n",
            "g.toml",
        )
        .unwrap_err()
        .join("\n");
        assert!(all.contains("g.toml:1: auto_approve is a switch"), "{all}");
        assert!(all.contains("g.toml:2: port takes one value"), "{all}");
        let all = parse(
            "[[upstream]]\nname = \"a_b\"\nurl = \"http://h/mcp\"\ncommand = [\"x\"]\n[[upstream]]\ncommand = [\"y\"]\n",
            "g.toml",
        )
        .unwrap_err()
        .join("\n");
        assert!(all.contains("not both") && all.contains("\"a_b\""), "{all}");
        let all = parse(
            "[[upstream]]\ncommand = [\"x\"]\n[[upstream]]\ncommand = [\"y\"]\n",
            "g.toml",
        )
        .unwrap_err()
        .join("\n");
        assert!(all.contains("each needs a name"), "{all}");
        let all = parse("port = \n", "g.toml").unwrap_err().join("\n");
        assert!(all.starts_with("g.toml:1: "), "{all}");
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let config = parse(
            "listen = \"127.0.0.1:7000\"\nuser = [\"file:x\"]\nstore = \"memory\"\n[[upstream]]\ncommand = [\"server\"]\n",
            "g.toml",
        )
        .expect("valid");
        let merged = merge(&config, &args(&["--port", "0", "--user", "cli:y"])).expect("merge");
        assert_eq!(
            merged.dev.listen.addr().port(),
            0,
            "--port sets aside listen"
        );
        let printed = print(Some(&config), &args(&["--user", "cli:y"])).expect("print");
        assert!(printed.contains("user = [\"cli:y\"]"), "{printed}");
        assert!(!printed.contains("file:x"), "{printed}");
        assert!(printed.contains("command = [\"server\"]"), "{printed}");
        let cli = print(
            Some(&config),
            &args(&["--upstream", "http://127.0.0.1:1/mcp"]),
        )
        .expect("print");
        assert!(
            !cli.contains("command =") && cli.contains("url = "),
            "{cli}"
        );
    }

    #[test]
    fn printed_configuration_reads_back_the_same() {
        let argv = args(&[
            "--port",
            "0",
            "--public-url",
            "https://mcp.example.com",
            "--user",
            "alice:${ALICE_PASSWORD}",
            "--audit",
            "a.jsonl",
            "--upstream",
            "http://127.0.0.1:3000/mcp",
            "--upstream-header",
            "X-Api-Key: ${KEY}",
        ]);
        let printed = print(None, &argv).expect("print");
        let config = parse(&printed, "printed.toml").expect("the printed file is valid");
        let back = print(Some(&config), &[]).expect("print again");
        assert_eq!(printed, back);
        assert!(
            printed.contains("${ALICE_PASSWORD}"),
            "references stay as written"
        );
    }

    #[test]
    fn per_user_idle_and_cap_are_keys_and_nonsense_is_refused() {
        let text = "per_user_idle = 60\nper_user_max = 3\n[[upstream]]\ncommand = [\"x\"]\nisolation = \"per-user\"\n";
        let config = parse(text, "g.toml").expect("valid");
        let merged = merge(&config, &[]).expect("merge");
        assert_eq!((merged.per_user_idle, merged.per_user_max), (60, 3));
        let defaults = merge(&parse("", "g.toml").expect("valid"), &[]).expect("merge");
        assert_eq!((defaults.per_user_idle, defaults.per_user_max), (900, 100));
        // --print-config writes them back, and the printed file reads back the same.
        let printed = print(Some(&config), &[]).expect("print");
        assert!(printed.contains("per_user_idle = 60"), "{printed}");
        assert!(printed.contains("per_user_max = 3"), "{printed}");
        let back = parse(&printed, "printed.toml").expect("the printed file is valid");
        assert_eq!(print(Some(&back), &[]).expect("print again"), printed);
        let merged = merge(&back, &[]).expect("merge");
        assert_eq!((merged.per_user_idle, merged.per_user_max), (60, 3));
        // The command line's flags are the same keys, and win over the file.
        let cli = print(
            Some(&config),
            &args(&["--per-user-max", "7", "--per-user-idle", "120"]),
        )
        .expect("print");
        assert!(cli.contains("per_user_max = 7"), "{cli}");
        assert!(cli.contains("per_user_idle = 120"), "{cli}");
        let merged = merge(&config, &args(&["--per-user-max", "7"])).expect("merge");
        assert_eq!((merged.per_user_idle, merged.per_user_max), (60, 7));
        // A cap of 0, an idle time of 0 or of centuries: the line, the key, what to write.
        for (text, key, fix) in [
            ("per_user_max = 0\n", "per_user_max = \"0\"", "1 or more"),
            (
                "per_session_max = 0\n",
                "per_session_max = \"0\"",
                "1 or more",
            ),
            ("per_user_max = -2\n", "per_user_max = \"-2\"", "1 or more"),
            (
                "per_user_idle = 0\n",
                "per_user_idle = \"0\"",
                "from 1 to 31536000",
            ),
            (
                "\nper_session_idle = 99999999999\n",
                "per_session_idle = \"99999999999\"",
                "from 1 to 31536000",
            ),
            (
                "per_user_idle = \"soon\"\n",
                "per_user_idle = \"soon\"",
                "whole number of seconds",
            ),
        ] {
            let config = parse(text, "g.toml").expect("parses");
            let err = merge(&config, &[]).unwrap_err();
            let line = 1 + text.trim_end().matches('\n').count();
            assert!(err.starts_with(&format!("g.toml:{line}: {key}: ")), "{err}");
            assert!(err.contains(fix), "{err}");
        }
        // The command line's own nonsense is clap's usual message, naming the flag.
        let err = merge(&config, &args(&["--per-user-max", "0"])).unwrap_err();
        assert!(
            err.contains("--per-user-max") && err.contains("1 or more"),
            "{err}"
        );
    }

    #[test]
    fn transport_is_a_field_of_url_upstreams() {
        let config = parse(
            "[[upstream]]\nurl = \"http://h/sse\"\ntransport = \"sse\"\n",
            "g.toml",
        )
        .expect("valid");
        assert!(matches!(
            &config.upstreams[0].target,
            Target::Url {
                transport: mcp_oauth_gateway::HttpTransport::Sse,
                ..
            }
        ));
        let printed = print(Some(&config), &[]).expect("print");
        assert!(printed.contains("transport = \"sse\""), "{printed}");
        let all = parse(
            "[[upstream]]\nurl = \"http://h/mcp\"\ntransport = \"websocket\"\n[[upstream]]\nname = \"b\"\ncommand = [\"x\"]\ntransport = \"sse\"\n",
            "g.toml",
        )
        .unwrap_err()
        .join("\n");
        assert!(
            all.contains("g.toml:3: [[upstream]] transport \"websocket\""),
            "{all}"
        );
        assert!(all.contains("transport is for a url"), "{all}");
        let cli = print(
            None,
            &args(&["--upstream", "http://h/sse", "--upstream-transport", "sse"]),
        )
        .expect("print");
        assert!(cli.contains("transport = \"sse\""), "{cli}");
    }

    #[test]
    fn isolation_is_a_field_of_command_upstreams() {
        let config = parse(
            "[[upstream]]\ncommand = [\"x\"]\nisolation = \"per-user\"\n",
            "g.toml",
        )
        .expect("valid");
        assert!(matches!(
            &config.upstreams[0].target,
            Target::Command { per_user: true, .. }
        ));
        let printed = print(Some(&config), &[]).expect("print");
        assert!(printed.contains("isolation = \"per-user\""), "{printed}");
        let all = parse(
            "[[upstream]]\ncommand = [\"x\"]\nisolation = \"per-process\"\n[[upstream]]\nname = \"b\"\nurl = \"http://h/mcp\"\nisolation = \"per-user\"\n",
            "g.toml",
        )
        .unwrap_err()
        .join("\n");
        assert!(
            all.contains("g.toml:3: [[upstream]] isolation \"per-process\""),
            "{all}"
        );
        assert!(
            all.contains("g.toml:7: [[upstream]] isolation is for a command"),
            "{all}"
        );
        let cli = print(None, &args(&["--isolation", "per-user", "--", "server"])).expect("print");
        assert!(cli.contains("isolation = \"per-user\""), "{cli}");
        let config = parse(
            "[[upstream]]\ncommand = [\"x\"]\nisolation = \"per-session\"\n",
            "g.toml",
        )
        .expect("valid");
        assert!(matches!(
            &config.upstreams[0].target,
            Target::Command {
                per_session: true,
                per_user: false,
                ..
            }
        ));
        let printed = print(Some(&config), &[]).expect("print");
        assert!(printed.contains("isolation = \"per-session\""), "{printed}");
        let cli = print(
            None,
            &args(&[
                "--isolation",
                "per-session",
                "--per-session-max",
                "5",
                "--",
                "server",
            ]),
        )
        .expect("print");
        assert!(cli.contains("isolation = \"per-session\""), "{cli}");
        assert!(cli.contains("per_session_max = 5"), "{cli}");
    }

    #[test]
    fn token_exchange_credentials_are_read_checked_and_printed_back() {
        let text = "[[upstream]]\nname = \"files\"\nurl = \"https://files.example/mcp\"\ncredentials = { kind = \"token-exchange\", token_endpoint = \"https://as.example/token\", client_id = \"gw\", client_secret = \"${GW_SECRET}\", resource = \"https://files.example/mcp\", scopes = [\"files:read\"], client_auth = \"post\" }\n";
        let config = parse(text, "g.toml").expect("valid");
        let Target::Url {
            credentials: Some(exchange),
            ..
        } = &config.upstreams[0].target
        else {
            panic!("{:?}", config.upstreams[0].target);
        };
        assert_eq!(exchange.client_secret, "${GW_SECRET}");
        assert!(exchange.secret_in_body && !exchange.on_behalf_of);
        assert_eq!(exchange.scopes, ["files:read"]);
        let printed = print(Some(&config), &[]).expect("print");
        assert!(
            printed.contains("client_secret = \"${GW_SECRET}\""),
            "{printed}"
        );
        let back = parse(&printed, "printed.toml").expect("reads back");
        assert_eq!(back.upstreams[0].target, config.upstreams[0].target);

        let all = parse(
            "[[upstream]]\nurl = \"http://h/mcp\"\ncredentials = { kind = \"user-oauth\", grant = \"x\", token_endpoint = \"https://as/token\" }\n[[upstream]]\nname = \"b\"\nurl = \"http://h/mcp\"\ncredentials = { kind = \"token-exchange\", token_endpoint = \"https://as/token\", client_id = \"gw\", client_secret = \"s\", grant = \"obo\", scope = \"x\" }\n[[upstream]]\nname = \"c\"\ncommand = [\"x\"]\ncredentials = {}\n",
            "g.toml",
        )
        .unwrap_err()
        .join("\n");
        assert!(
            all.contains("g.toml:3: credentials grant is not a field of kind = \"user-oauth\""),
            "{all}"
        );
        assert!(
            all.contains(
                "g.toml:3: credentials: give both authorization_endpoint and token_endpoint"
            ),
            "{all}"
        );
        assert!(
            all.contains("g.toml:3: credentials: a client_secret or static endpoints need the gateway's client_id"),
            "{all}"
        );
        assert!(
            all.contains("g.toml:7: unknown field `scope` in credentials (did you mean `scopes`?)"),
            "{all}"
        );
        assert!(all.contains("g.toml:7: credentials grant \"obo\""), "{all}");
        assert!(
            all.contains("g.toml:7: credentials: name what the exchanged token is for"),
            "{all}"
        );
        assert!(
            all.contains(
                "g.toml:11: credentials: give kind = \"token-exchange\", \"user-secret\" or \"user-oauth\""
            ),
            "{all}"
        );
    }

    #[test]
    fn user_secret_credentials_are_read_checked_and_printed_back() {
        let text = "[[upstream]]\nname = \"github\"\nurl = \"https://api.example/mcp\"\ncredentials = { kind = \"user-secret\", pattern = \"ghp_[A-Za-z0-9]{36}\", header = \"X-Api-Key\", format = \"token {secret}\" }\n[[upstream]]\nname = \"gh\"\ncommand = [\"server\"]\nisolation = \"per-user\"\ncredentials = { kind = \"user-secret\", env = \"GITHUB_TOKEN\" }\n";
        let config = parse(text, "g.toml").expect("valid");
        let http = config.upstreams[0]
            .user_secret
            .clone()
            .expect("user secret");
        assert_eq!(http.pattern.as_deref(), Some("ghp_[A-Za-z0-9]{36}"));
        assert_eq!(http.header.as_deref(), Some("X-Api-Key"));
        assert_eq!(http.format.as_deref(), Some("token {secret}"));
        assert!(matches!(
            config.upstreams[0].target,
            Target::Url {
                credentials: None,
                ..
            }
        ));
        let stdio = config.upstreams[1]
            .user_secret
            .clone()
            .expect("user secret");
        assert_eq!(stdio.env.as_deref(), Some("GITHUB_TOKEN"));
        let printed = print(Some(&config), &[]).expect("print");
        let back = parse(&printed, "printed.toml").expect("reads back");
        assert_eq!(
            back.upstreams,
            config
                .upstreams
                .iter()
                .map(|u| UpstreamSpec {
                    line: 0,
                    ..u.clone()
                })
                .map(|u| UpstreamSpec {
                    line: back
                        .upstreams
                        .iter()
                        .find(|b| b.name == u.name)
                        .map_or(0, |b| b.line),
                    ..u
                })
                .collect::<Vec<_>>()
        );

        let all = parse(
            "[[upstream]]\nname = \"a\"\nurl = \"http://h/mcp\"\ncredentials = { kind = \"user-secret\", env = \"T\" }\n[[upstream]]\nname = \"b\"\ncommand = [\"x\"]\ncredentials = { kind = \"user-secret\", env = \"T\" }\n[[upstream]]\nname = \"c\"\ncommand = [\"x\"]\nisolation = \"per-user\"\ncredentials = { kind = \"user-secret\", header = \"X\", env = \"T\", client_id = \"x\" }\n",
            "g.toml",
        )
        .unwrap_err()
        .join("\n");
        assert!(
            all.contains("g.toml:1: [[upstream]] credentials env is for a command"),
            "{all}"
        );
        assert!(all.contains("g.toml:5: [[upstream]] credentials user-secret of a command needs isolation = \"per-user\""), "{all}");
        assert!(all.contains("g.toml:13: credentials: a user-secret goes in a header (header, format) or in env, not both"), "{all}");
        assert!(
            all.contains("g.toml:13: credentials client_id is for kind = \"token-exchange\""),
            "{all}"
        );
    }

    #[test]
    fn unset_variables_are_named() {
        let config = parse(
            "issuer = \"${MCP_OAUTH_GW_TEST_UNSET_41}\"\n[[upstream]]\ncommand = [\"x\"]\n",
            "g.toml",
        )
        .expect("valid");
        let err = merge(&config, &[]).unwrap_err();
        assert!(
            err.contains("g.toml:1: issuer") && err.contains("MCP_OAUTH_GW_TEST_UNSET_41"),
            "{err}"
        );
    }

    #[test]
    fn file_references_work_inside_any_value() {
        let path = std::env::temp_dir().join(format!("gw-ref-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").expect("write");
        let file = path.display().to_string();
        assert_eq!(
            expand_references(&format!("alice:${{file:{file}}}")).expect("expand"),
            "alice:s3cret"
        );
        assert_eq!(
            resolve_value(&format!("file:{file}")).expect("whole"),
            "s3cret"
        );
        assert_eq!(
            resolve_value(&format!("Bearer ${{file:{file}}}")).expect("inside"),
            "Bearer s3cret"
        );
        std::fs::write(&path, "${MCP_OAUTH_GW_TEST_UNSET_52}").expect("write");
        assert_eq!(
            expand_references(&format!("${{file:{file}}}")).expect("not read again"),
            "${MCP_OAUTH_GW_TEST_UNSET_52}"
        );
        let err = expand_references("${file:/nonexistent/pw}").unwrap_err();
        assert!(err.contains("/nonexistent/pw"), "{err}");
        assert!(expand_references("${file:x").is_err());
        let config = parse(
            &format!("user = [\"alice:${{file:{file}}}\"]\npublic_url = \"${{file:{file}}}\"\n[[upstream]]\ncommand = [\"x\"]\n"),
            "g.toml",
        )
        .expect("valid");
        std::fs::write(&path, "https://from-file.example\n").expect("write");
        let merged = merge(&config, &[]).expect("merge");
        assert_eq!(
            merged.dev.public_url.as_deref(),
            Some("https://from-file.example")
        );
        assert!(!format!("{config:?}").contains("from-file.example"));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_example_file_is_valid() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway/gateway.toml");
        let config = load(&path).expect("examples/gateway/gateway.toml parses");
        assert_eq!(config.upstreams.len(), 2);
    }

    #[test]
    fn user_oauth_credentials_read_and_print_back() {
        let config = parse(
            "[[upstream]]\nname = \"notes\"\nurl = \"https://notes.example.com/mcp\"\ncredentials = { kind = \"user-oauth\", client_id = \"gw\", client_secret = \"${NOTES_SECRET}\", client_auth = \"post\", scopes = [\"notes:read\"], authorization_server = \"https://auth.notes.example.com\" }\n[[upstream]]\nname = \"docs\"\nurl = \"https://docs.example.com/mcp\"\ncredentials = { kind = \"user-oauth\" }\n",
            "u.toml",
        )
        .expect("parses");
        let notes = config.upstreams[0].user_oauth.clone().expect("user-oauth");
        assert_eq!(notes.client_id.as_deref(), Some("gw"));
        assert_eq!(notes.client_secret.as_deref(), Some("${NOTES_SECRET}"));
        assert!(notes.secret_in_body);
        assert_eq!(notes.scopes, ["notes:read"]);
        assert_eq!(
            notes.authorization_server.as_deref(),
            Some("https://auth.notes.example.com")
        );
        let docs = config.upstreams[1].user_oauth.clone().expect("user-oauth");
        assert_eq!(docs, UserOAuthSpec::default(), "everything discovered");
        let printed = print(Some(&config), &[]).expect("print");
        assert!(
            printed.contains("client_secret = \"${NOTES_SECRET}\""),
            "the reference, never the value: {printed}"
        );
        let back = parse(&printed, "printed.toml").expect("reads back");
        assert_eq!(back.upstreams[0].user_oauth, config.upstreams[0].user_oauth);
        assert_eq!(back.upstreams[1].user_oauth, config.upstreams[1].user_oauth);
        let command = parse(
            "[[upstream]]\nname = \"c\"\ncommand = [\"x\"]\ncredentials = { kind = \"user-oauth\" }\n",
            "c.toml",
        )
        .unwrap_err()
        .join("\n");
        assert!(
            command.contains("credentials are for a url, not for a command"),
            "{command}"
        );
    }
}
