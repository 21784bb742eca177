//! The upstreams the command line of `mcp-oauth gateway` names.
//!
//! One upstream, as before: `--upstream URL` (with `--upstream-header`) or `-- CMD ARGS…`
//! (with `--env`, `--pass-env`, `--cwd`, `--isolation`). Several: `--upstream NAME=URL` and
//! `--stdio 'NAME=CMD ARGS…'`, each repeatable, each named (the name prefixes its tools,
//! `NAME__tool`). What a named upstream needs beyond its URL or command (headers, variables,
//! credentials) goes in a configuration file, which `--print-config` starts.

use crate::gateway_args::{GatewayArgs, IsolationArg};
use crate::gateway_config::{Target, UpstreamSpec};
use crate::options::SecretArg;

/// `NAME=VALUE` (`--env`) and `NAME: VALUE` (`--upstream-header`), the value resolved. Errors
/// name the option and the name, never the value.
fn split_resolved<'a>(
    value: &'a SecretArg,
    separator: char,
    option: &str,
) -> Result<(&'a str, String), String> {
    let (name, raw) = value
        .expose()
        .split_once(separator)
        .map(|(n, v)| (n.trim(), v.trim()))
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| {
            format!(
                "{option} takes NAME{separator}VALUE{}",
                if separator == ':' { " (quote it)" } else { "" }
            )
        })?;
    let resolved =
        crate::gateway_config::resolve_value(raw).map_err(|e| format!("{option} {name}: {e}"))?;
    Ok((name, resolved))
}

/// `NAME=REST` when the text before the first `=` is an upstream name (a URL's scheme has a
/// `:`, so `http://h/mcp?a=b` is no name).
fn named(value: &str) -> Option<(&str, &str)> {
    value
        .split_once('=')
        .filter(|(name, _)| mcp_oauth_gateway::valid_upstream_name(name))
}

impl GatewayArgs {
    /// Whether the command line names several upstreams (or one with a name).
    fn named_upstreams(&self) -> bool {
        !self.stdio.is_empty() || self.upstream.iter().any(|u| named(u).is_some())
    }

    /// The upstreams the command line names (`--upstream [NAME=]URL`, `--stdio 'NAME=CMD…'`,
    /// `-- CMD ARGS…`), references unresolved; empty when it names none (the configuration
    /// file's are used). Call [`check_upstream_options`](Self::check_upstream_options) first:
    /// what it refuses is skipped here.
    pub(crate) fn command_line_upstreams(&self) -> Vec<UpstreamSpec> {
        if self.named_upstreams() {
            let urls = self
                .upstream
                .iter()
                .filter_map(|u| named(u))
                .map(|(n, url)| {
                    (
                        n,
                        Target::Url {
                            url: url.to_owned(),
                            headers: Vec::new(),
                            credentials: None,
                            transport: mcp_oauth_gateway::HttpTransport::Auto,
                        },
                    )
                });
            let commands = self.stdio.iter().filter_map(|s| {
                let (n, command) = named(s)?;
                Some((
                    n,
                    Target::Command {
                        argv: shlex::split(command)?,
                        env: Vec::new(),
                        pass_env: Vec::new(),
                        cwd: None,
                        per_user: false,
                        per_session: false,
                    },
                ))
            });
            return urls
                .chain(commands)
                .map(|(name, target)| UpstreamSpec {
                    name: Some(name.to_owned()),
                    target,
                    tools: Vec::new(),
                    line: 0,
                    user_secret: None,
                    user_oauth: None,
                })
                .collect();
        }
        let target = match (self.upstream.first(), self.command.is_empty()) {
            (Some(url), _) => Target::Url {
                url: url.clone(),
                headers: self
                    .upstream_headers
                    .iter()
                    .map(|h| match h.expose().split_once(':') {
                        Some((n, v)) => (n.trim().to_owned(), v.trim().to_owned()),
                        None => (h.expose().to_owned(), String::new()),
                    })
                    .collect(),
                credentials: None,
                transport: self.upstream_transport.into(),
            },
            (None, false) => Target::Command {
                argv: self
                    .command
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
                env: self
                    .env
                    .iter()
                    .map(|e| match e.expose().split_once('=') {
                        Some((n, v)) => (n.trim().to_owned(), v.trim().to_owned()),
                        None => (e.expose().to_owned(), String::new()),
                    })
                    .collect(),
                pass_env: self.pass_env.clone(),
                cwd: self.cwd.clone(),
                per_user: self.isolation == IsolationArg::PerUser,
                per_session: self.isolation == IsolationArg::PerSession,
            },
            (None, true) => return Vec::new(),
        };
        vec![UpstreamSpec {
            name: None,
            target,
            tools: Vec::new(),
            line: 0,
            user_secret: None,
            user_oauth: None,
        }]
    }

    /// The named upstreams' part of [`check_upstream_options`](Self::check_upstream_options),
    /// which resolves no reference (for `--print-config`).
    pub(crate) fn check_upstream_names(&self) -> Result<(), String> {
        if self.named_upstreams() {
            self.check_named()
        } else {
            Ok(())
        }
    }

    /// Checks the command line's upstream options before anything else.
    pub(crate) fn check_upstream_options(&self) -> Result<(), String> {
        if self.named_upstreams() {
            return self.check_named();
        }
        if self.upstream.len() > 1 {
            return Err(
                "several --upstream options: name each one, --upstream NAME=URL (the name prefixes its tools, NAME__tool)"
                    .to_owned(),
            );
        }
        if !self.upstream.is_empty() && !self.command.is_empty() {
            return Err(
                "give either --upstream URL or -- CMD ARGS…, not both (for several upstreams, name each: --upstream NAME=URL, --stdio 'NAME=CMD ARGS…')"
                    .to_owned(),
            );
        }
        if !self.upstream.is_empty()
            && (!self.env.is_empty()
                || !self.pass_env.is_empty()
                || self.isolation != IsolationArg::Shared)
        {
            return Err(
                "--env, --pass-env and --isolation are for a stdio command (-- CMD ARGS…), not for --upstream"
                    .to_owned(),
            );
        }
        for entry in &self.env {
            split_resolved(entry, '=', "--env")?;
        }
        for header in &self.upstream_headers {
            split_resolved(header, ':', "--upstream-header")?;
        }
        Ok(())
    }

    /// Named upstreams: every one named, each name once, each command one a shell could
    /// split; the single upstream's options refused (they would not say which upstream).
    fn check_named(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !self.command.is_empty() {
            problems.push(
                "-- CMD ARGS… is the single upstream; beside named upstreams give it a name too: --stdio 'NAME=CMD ARGS…'"
                    .to_owned(),
            );
        }
        let mut seen: Vec<&str> = Vec::new();
        for url in &self.upstream {
            match named(url) {
                Some((name, _)) => seen.push(name),
                None => problems.push(format!(
                    "--upstream {url}: with several upstreams each is named, --upstream NAME=URL (NAME: 1 to 32 letters, digits or '-')"
                )),
            }
        }
        for stdio in &self.stdio {
            match named(stdio) {
                Some((name, command)) => {
                    match shlex::split(command) {
                        Some(argv) if !argv.is_empty() => {}
                        Some(_) => problems.push(format!("--stdio {name}=: the command is empty")),
                        None => problems.push(format!(
                            "--stdio {name}=…: the command has an unclosed quote or a trailing backslash"
                        )),
                    }
                    seen.push(name);
                }
                None => problems.push(
                    "--stdio takes 'NAME=CMD ARGS…' (NAME: 1 to 32 letters, digits or '-')"
                        .to_owned(),
                ),
            }
        }
        for (i, name) in seen.iter().enumerate() {
            if seen.get(..i).is_some_and(|before| before.contains(name)) {
                problems.push(format!("two upstreams are named {name:?}; rename one"));
            }
        }
        let single = [
            (!self.upstream_headers.is_empty(), "--upstream-header"),
            (!self.env.is_empty(), "--env"),
            (!self.pass_env.is_empty(), "--pass-env"),
            (self.cwd.is_some(), "--cwd"),
            (self.isolation == IsolationArg::PerUser, "--isolation"),
        ];
        for (given, option) in single {
            if given {
                problems.push(format!(
                    "{option} is for a single unnamed upstream; for named ones put it in their [[upstream]] table of a --config file (--print-config writes one)"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        gateway: GatewayArgs,
    }

    fn parse(args: &[&str]) -> GatewayArgs {
        let mut all = vec!["gateway"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parse").gateway
    }

    #[test]
    fn named_upstreams_come_from_upstream_and_stdio() {
        let args = parse(&[
            "--upstream",
            "search=http://127.0.0.1:3001/mcp?a=b",
            "--stdio",
            "fs=npx -y '@modelcontextprotocol/server-filesystem' '/srv/my files'",
        ]);
        args.check_upstream_options().expect("valid");
        let specs = args.command_line_upstreams();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].name.as_deref(), Some("search"));
        assert!(
            matches!(&specs[0].target, Target::Url { url, .. } if url == "http://127.0.0.1:3001/mcp?a=b")
        );
        assert_eq!(specs[1].name.as_deref(), Some("fs"));
        assert!(matches!(
            &specs[1].target,
            Target::Command { argv, .. }
                if argv == &["npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv/my files"]
        ));
    }

    #[test]
    fn the_single_upstream_forms_are_unchanged() {
        let url = parse(&["--upstream", "http://127.0.0.1:1/mcp?x=y"]);
        url.check_upstream_options().expect("valid");
        let specs = url.command_line_upstreams();
        assert!(specs.len() == 1 && specs[0].name.is_none());
        let command = parse(&["--", "server", "--flag"]);
        let specs = command.command_line_upstreams();
        assert!(specs.len() == 1 && specs[0].name.is_none());
        assert!(parse(&[]).command_line_upstreams().is_empty());
    }

    #[test]
    fn mixed_or_ambiguous_upstream_options_are_refused() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--upstream", "http://a/mcp", "--upstream", "http://b/mcp"],
                "name each one",
            ),
            (
                &["--upstream", "a=http://a/mcp", "--upstream", "http://b/mcp"],
                "each is named",
            ),
            (
                &["--upstream", "a=http://a/mcp", "--stdio", "a=server"],
                "two upstreams are named \"a\"",
            ),
            (&["--stdio", "a=server 'open"], "unclosed quote"),
            (&["--stdio", "a="], "the command is empty"),
            (&["--stdio", "no name"], "--stdio takes"),
            (&["--stdio", "a_b=server"], "--stdio takes"),
            (
                &["--stdio", "a=server", "--", "other"],
                "give it a name too",
            ),
            (
                &[
                    "--upstream",
                    "a=http://a/mcp",
                    "--upstream-header",
                    "X-Key: v",
                ],
                "--upstream-header is for a single unnamed upstream",
            ),
            (
                &["--stdio", "a=server", "--env", "A=b"],
                "--env is for a single unnamed upstream",
            ),
        ];
        for (argv, expected) in cases {
            let err = parse(argv).check_upstream_options().unwrap_err();
            assert!(err.contains(expected), "{argv:?}: {err}");
        }
    }
}
