//! The results of the checks and how they are shown: text for people, one JSON document for
//! scripts.

use std::io::IsTerminal as _;

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Status {
    /// As MCP clients and the library need it.
    Pass,
    /// Something a client or the library refuses: the command exits with 1.
    Fail,
    /// Works, but a client may trip on it.
    Warn,
    /// Context, no verdict.
    Info,
}

/// One check: a stable id, its outcome, what was found in plain words, and what to do.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Check {
    pub(super) id: &'static str,
    pub(super) status: Status,
    pub(super) message: String,
    pub(super) hint: Option<String>,
}

impl Check {
    fn new(id: &'static str, status: Status, message: impl Into<String>) -> Self {
        Self {
            id,
            status,
            message: message.into(),
            hint: None,
        }
    }

    pub(super) fn pass(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(id, Status::Pass, message)
    }

    pub(super) fn fail(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(id, Status::Fail, message)
    }

    pub(super) fn warn(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(id, Status::Warn, message)
    }

    pub(super) fn info(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(id, Status::Info, message)
    }

    /// What to do about it.
    #[must_use]
    pub(super) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Every check of a run, in the order they ran.
#[derive(Debug, Default)]
pub(super) struct Report {
    issuer: Option<String>,
    mcp_url: Option<String>,
    checks: Vec<Check>,
}

impl Report {
    pub(super) fn add(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub(super) fn set_issuer(&mut self, issuer: &str) {
        self.issuer = Some(issuer.to_owned());
    }

    pub(super) fn set_mcp_url(&mut self, url: &str) {
        self.mcp_url = Some(url.to_owned());
    }

    /// Whether no check failed.
    pub(super) fn ok(&self) -> bool {
        !self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// Whether a check whose id satisfies `select` failed.
    pub(super) fn failed_where(&self, select: impl Fn(&str) -> bool) -> bool {
        self.checks
            .iter()
            .any(|c| c.status == Status::Fail && select(c.id))
    }

    fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// The JSON document: `{"ok", "issuer", "mcp_url", "checks": [{"id", "status", "message",
    /// "hint"}]}`.
    pub(super) fn to_json(&self) -> Result<String, serde_json::Error> {
        #[derive(Serialize)]
        struct Document<'a> {
            ok: bool,
            issuer: Option<&'a str>,
            mcp_url: Option<&'a str>,
            checks: &'a [Check],
        }
        serde_json::to_string_pretty(&Document {
            ok: self.ok(),
            issuer: self.issuer.as_deref(),
            mcp_url: self.mcp_url.as_deref(),
            checks: &self.checks,
        })
    }

    /// The text report, grouped by section, wrapped at 100 columns.
    pub(super) fn to_text(&self, color: bool) -> String {
        const WIDTH: usize = 100;
        let paint = |code: &str, text: &str| {
            if color {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_owned()
            }
        };
        let mut out = String::new();
        out.push_str(&paint("1", "mcp-oauth doctor"));
        out.push('\n');
        if let Some(url) = &self.mcp_url {
            out.push_str(&format!("  MCP endpoint: {url}\n"));
        }
        if let Some(issuer) = &self.issuer {
            out.push_str(&format!("  issuer:       {issuer}\n"));
        }
        let mut section = "";
        for check in &self.checks {
            let this = section_of(check.id);
            if this != section {
                section = this;
                out.push('\n');
                out.push_str(&paint("1", section));
                out.push('\n');
            }
            let (symbol, code) = match check.status {
                Status::Pass => ("✓", "32"),
                Status::Fail => ("✗", "31"),
                Status::Warn => ("!", "33"),
                Status::Info => ("i", "36"),
            };
            let mut lines = wrap(&check.message, WIDTH - 4).into_iter();
            if let Some(first) = lines.next() {
                out.push_str(&format!("  {} {first}\n", paint(code, symbol)));
            }
            for line in lines {
                out.push_str(&format!("    {line}\n"));
            }
            if let Some(hint) = &check.hint {
                let mut lines = wrap(hint, WIDTH - 6).into_iter();
                if let Some(first) = lines.next() {
                    out.push_str(&format!("    {} {first}\n", paint("2", "→")));
                }
                for line in lines {
                    out.push_str(&format!("      {line}\n"));
                }
            }
        }
        out.push('\n');
        let (fails, warns) = (self.count(Status::Fail), self.count(Status::Warn));
        let warnings = match warns {
            0 => String::new(),
            1 => ", 1 warning".to_owned(),
            n => format!(", {n} warnings"),
        };
        let summary = match fails {
            0 => paint("32", &format!("✓ No check failed{warnings}.")),
            1 => paint("31", &format!("✗ 1 check failed{warnings}.")),
            n => paint("31", &format!("✗ {n} checks failed{warnings}.")),
        };
        out.push_str(&summary);
        out.push('\n');
        out
    }
}

/// Colour when standard output is a terminal and `NO_COLOR` is not set.
pub(super) fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn section_of(id: &str) -> &'static str {
    match id.split('.').next() {
        Some("mcp") => "MCP endpoint",
        Some("as") => "Authorization server",
        Some("jwks") => "Signing keys (JWKS)",
        Some("token") => "Access token",
        Some("provider") => "Provider preset",
        _ => "Other",
    }
}

/// Splits `text` into lines of at most `width` characters at spaces (longer words, URLs
/// mostly, stay whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut len = 0;
    for word in text.split_whitespace() {
        let word_len = word.chars().count();
        if len > 0 && len + 1 + word_len > width {
            lines.push(std::mem::take(&mut line));
            len = 0;
        }
        if len > 0 {
            line.push(' ');
            len += 1;
        }
        line.push_str(word);
        len += word_len;
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_words_and_width() {
        let lines = wrap("one two three four five six", 9);
        assert_eq!(lines, ["one two", "three", "four five", "six"]);
        let long = wrap(
            "see https://auth.example.com/.well-known/openid-configuration now",
            20,
        );
        assert_eq!(
            long,
            [
                "see",
                "https://auth.example.com/.well-known/openid-configuration",
                "now"
            ]
        );
        assert!(wrap("", 10).is_empty());
    }

    #[test]
    fn a_failure_makes_the_report_not_ok() {
        let mut report = Report::default();
        report.add(Check::pass("as.pkce", "S256"));
        report.add(Check::warn("as.registration", "none"));
        assert!(report.ok());
        report.add(Check::fail("token.aud", "mismatch").hint("use --audience"));
        assert!(!report.ok());
        assert!(report.failed_where(|id| id.starts_with("token.")));
        assert!(!report.failed_where(|id| id.starts_with("as.")));

        let json: serde_json::Value =
            serde_json::from_str(&report.to_json().expect("json")).expect("valid json");
        assert_eq!(json["ok"], false);
        assert_eq!(json["checks"][2]["status"], "fail");
        assert_eq!(json["checks"][2]["hint"], "use --audience");
        assert_eq!(json["checks"][0]["hint"], serde_json::Value::Null);

        let text = report.to_text(false);
        assert!(
            text.contains("Authorization server\n  ✓ S256\n  ! none\n"),
            "{text}"
        );
        assert!(
            text.contains("Access token\n  ✗ mismatch\n    → use --audience\n"),
            "{text}"
        );
        assert!(text.ends_with("✗ 1 check failed, 1 warning.\n"), "{text}");
    }
}
