//! One decision, as the caller describes it, and the line it becomes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

/// Who made the request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Actor {
    /// The token's subject.
    pub sub: String,
    /// E-mail address, when known.
    pub email: Option<String>,
    /// Groups the policy saw for this user.
    pub groups: Vec<String>,
    /// The OAuth client the token was issued to.
    pub client_id: Option<String>,
}

impl Actor {
    /// An actor with this subject and nothing else.
    pub fn new(sub: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            ..Self::default()
        }
    }

    /// Sets the e-mail address.
    #[must_use]
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Sets the groups.
    #[must_use]
    pub fn groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the client id.
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }
}

/// What the policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Effect {
    /// The request may proceed.
    Allow,
    /// The request is refused.
    Deny,
    /// A rule allows it, with scopes the token lacks: HTTP 403 `insufficient_scope`.
    StepUp,
}

/// The decision: its effect, the rules that made it, and the scopes a step-up asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Decision {
    /// Allow, deny or step up.
    pub effect: Effect,
    /// Ids of the rules that decided (empty for the default deny).
    pub rule_ids: Vec<String>,
    /// Scopes the token lacks, for [`Effect::StepUp`].
    pub step_up_scopes: Vec<String>,
}

impl Decision {
    /// A decision with this effect, no rule ids and no step-up scopes.
    pub fn new(effect: Effect) -> Self {
        Self {
            effect,
            rule_ids: Vec::new(),
            step_up_scopes: Vec::new(),
        }
    }

    /// An allow.
    pub fn allow() -> Self {
        Self::new(Effect::Allow)
    }

    /// A deny.
    pub fn deny() -> Self {
        Self::new(Effect::Deny)
    }

    /// A step-up asking for these scopes.
    pub fn step_up<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            step_up_scopes: scopes.into_iter().map(Into::into).collect(),
            ..Self::new(Effect::StepUp)
        }
    }

    /// Sets the ids of the rules that decided.
    #[must_use]
    pub fn rule_ids<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rule_ids = ids.into_iter().map(Into::into).collect();
        self
    }
}

/// How the request reached its upstream (for a gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CredentialKind {
    /// No credential.
    None,
    /// A configured static header, variable or argument.
    Static,
    /// RFC 8693 token exchange.
    TokenExchange,
    /// The user's own OAuth grant at the upstream.
    UserOauth,
    /// A secret the user stored for the upstream.
    UserSecret,
}

/// What the client got back, in its three layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Outcome {
    /// The HTTP status.
    pub http: u16,
    /// The JSON-RPC error code, when the response was a JSON-RPC error.
    pub jsonrpc_error: Option<i64>,
    /// A tool result's `isError`, when the response was a tool result.
    pub is_error: Option<bool>,
}

impl Outcome {
    /// An outcome with this HTTP status and nothing else.
    pub fn http(status: u16) -> Self {
        Self {
            http: status,
            jsonrpc_error: None,
            is_error: None,
        }
    }

    /// Sets the JSON-RPC error code.
    #[must_use]
    pub fn jsonrpc_error(mut self, code: i64) -> Self {
        self.jsonrpc_error = Some(code);
        self
    }

    /// Sets the tool result's `isError`.
    #[must_use]
    pub fn is_error(mut self, is_error: bool) -> Self {
        self.is_error = Some(is_error);
        self
    }
}

/// What the request was about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Target {
    /// A tool, by name.
    Tool(String),
    /// A prompt, by name.
    Prompt(String),
    /// A resource, by URI.
    Resource(String),
}

/// One decision to record. Build it with [`AuditEvent::new`] and the setters; the time and
/// the event id are added by [`AuditLog::record`](super::AuditLog::record).
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub(crate) time: SystemTime,
    pub(crate) actor: Actor,
    pub(crate) session: Option<String>,
    pub(crate) upstream: Option<String>,
    pub(crate) method: String,
    pub(crate) target: Option<Target>,
    pub(crate) arguments: Option<Value>,
    pub(crate) decision: Decision,
    pub(crate) credential: Option<CredentialKind>,
    pub(crate) approved_by: Option<String>,
    pub(crate) outcome: Option<Outcome>,
    pub(crate) duration: Option<Duration>,
}

impl AuditEvent {
    /// A decision on `method` (`tools/call`, `prompts/get`, …) for `actor`, timed now.
    pub fn new(method: impl Into<String>, actor: Actor, decision: Decision) -> Self {
        Self {
            time: SystemTime::now(),
            actor,
            session: None,
            upstream: None,
            method: method.into(),
            target: None,
            arguments: None,
            decision,
            credential: None,
            approved_by: None,
            outcome: None,
            duration: None,
        }
    }

    /// The tool called.
    #[must_use]
    pub fn tool(mut self, name: impl Into<String>) -> Self {
        self.target = Some(Target::Tool(name.into()));
        self
    }

    /// The prompt asked for.
    #[must_use]
    pub fn prompt(mut self, name: impl Into<String>) -> Self {
        self.target = Some(Target::Prompt(name.into()));
        self
    }

    /// The resource read.
    #[must_use]
    pub fn resource(mut self, uri: impl Into<String>) -> Self {
        self.target = Some(Target::Resource(uri.into()));
        self
    }

    /// The request's arguments; what is written depends on the log's
    /// [`ArgumentMode`](super::ArgumentMode).
    #[must_use]
    pub fn arguments(mut self, arguments: Value) -> Self {
        self.arguments = Some(arguments);
        self
    }

    /// The MCP session id.
    #[must_use]
    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// The upstream the request went to (for a gateway).
    #[must_use]
    pub fn upstream(mut self, upstream: impl Into<String>) -> Self {
        self.upstream = Some(upstream.into());
        self
    }

    /// Who approved the call (their subject), when it needed a human's approval.
    #[must_use]
    pub fn approved_by(mut self, approver: impl Into<String>) -> Self {
        self.approved_by = Some(approver.into());
        self
    }

    /// The kind of credential used towards the upstream.
    #[must_use]
    pub fn credential(mut self, kind: CredentialKind) -> Self {
        self.credential = Some(kind);
        self
    }

    /// What the client got back.
    #[must_use]
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// How long the request took, from arrival to response.
    #[must_use]
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Overrides when the decision was made (default: when the event was created).
    #[must_use]
    pub fn time(mut self, time: SystemTime) -> Self {
        self.time = time;
        self
    }
}

/// The `arguments` member of a line.
#[derive(Debug, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub(crate) enum ArgumentsField {
    None,
    Sha256 { sha256: String },
    Redacted { value: Value },
    Full { value: Value },
}

#[derive(Serialize)]
struct CredentialField {
    kind: CredentialKind,
}

/// A line, in the order its members are written.
#[derive(Serialize)]
pub(crate) struct Line<'a> {
    time: String,
    event_id: &'a str,
    actor: &'a Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a str>,
    arguments: &'a ArgumentsField,
    decision: &'a Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    approved_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential: Option<CredentialField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_hash: Option<&'a str>,
}

impl<'a> Line<'a> {
    pub(crate) fn new(
        event: &'a AuditEvent,
        event_id: &'a str,
        arguments: &'a ArgumentsField,
    ) -> Self {
        let (tool, prompt, resource) = match &event.target {
            Some(Target::Tool(name)) => (Some(name.as_str()), None, None),
            Some(Target::Prompt(name)) => (None, Some(name.as_str()), None),
            Some(Target::Resource(uri)) => (None, None, Some(uri.as_str())),
            None => (None, None, None),
        };
        Self {
            time: rfc3339(event.time),
            event_id,
            actor: &event.actor,
            session: event.session.as_deref(),
            upstream: event.upstream.as_deref(),
            method: &event.method,
            tool,
            prompt,
            resource,
            arguments,
            decision: &event.decision,
            approved_by: event.approved_by.as_deref(),
            credential: event.credential.map(|kind| CredentialField { kind }),
            outcome: event.outcome,
            // Milliseconds with microsecond precision.
            duration_ms: event.duration.map(|d| (d.as_micros() as f64) / 1000.0),
            prev_hash: None,
        }
    }

    pub(crate) fn chained(mut self, prev_hash: &'a str) -> Self {
        self.prev_hash = Some(prev_hash);
        self
    }
}

/// `time` as RFC 3339 UTC with milliseconds: `2026-12-07T07:40:12.345Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    // A clock before 1970 is written as the epoch rather than refused.
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let at = |secs: u64, millis: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29, a leap day in a year divisible by 400.
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        // `date -u -d @1796629212` says Mon Dec  7 07:40:12 UTC 2026.
        assert_eq!(at(1_796_629_212, 345), "2026-12-07T07:40:12.345Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }
}
