//! The audit log: one JSON line per decision, written off the request path.
//!
//! Each [`AuditLog::record`] becomes one line: when, who ([`Actor`]), what (`method`, the
//! tool, prompt or resource, the arguments by [`ArgumentMode`]), what the policy decided
//! ([`Decision`]), what the client got back ([`Outcome`]) and how long it took. The format,
//! member by member, is in `docs/audit.md`.
//!
//! - **Arguments** are written as nothing, the SHA-256 of their canonical JSON (RFC 8785),
//!   redacted by [`RedactPattern`]s, or in full. Whatever the mode, the values of members
//!   with a secret name ([`DEFAULT_SECRET_NAMES`], plus
//!   [`AuditLogBuilder::secret_name`]) are replaced by `"[redacted]"` first, so neither
//!   they nor a hash of them is ever written.
//! - **Hash chain** ([`AuditLogBuilder::hash_chain`]): each line carries `prev_hash`, the
//!   SHA-256 of the line before; [`verify_chain`] names the first line where it breaks.
//!   Appending to an existing file continues its chain.
//! - **Sinks**: stdout, a file (appended, created `0600` on Unix), or a [`MemorySink`].
//!
//! # Slow or failing sinks
//!
//! [`AuditLog::record`] hands the event to a bounded queue
//! ([`AuditLogBuilder::capacity`], 1024 by default) read by one writer thread, which
//! shapes, serialises, chains and writes the lines. Only that thread touches the disk, so
//! lines never interleave and the async runtime never waits on I/O. When the queue is full
//! (the sink is slower than the requests), `record` waits for room: this is back-pressure,
//! not loss, and a stuck disk eventually slows the requests that record events. A write
//! that fails is logged at `error` under the target `mcp_oauth::audit` and its lines are
//! counted in [`AuditStats::failed`]; nothing is dropped without being counted. On a
//! chained log, lost lines show as a break at the next line written. Call
//! [`AuditLog::flush`] before the process exits: lines still queued then are lost with it.
//!
//! # Example
//!
//! ```
//! use mcp_oauth::audit::{Actor, ArgumentMode, AuditEvent, AuditLog, Decision, MemorySink, Outcome};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sink = MemorySink::new();
//! let audit = AuditLog::builder()
//!     .memory(&sink) // or .stdout(), or .file("/var/log/mcp-oauth/audit.jsonl")
//!     .arguments(ArgumentMode::Redacted)
//!     .redact("files[*].content")
//!     .hash_chain(true)
//!     .build()?;
//!
//! let actor = Actor::new("user-1").email("alice@example.com").groups(["eng"]);
//! let event = AuditEvent::new("tools/call", actor, Decision::allow().rule_ids(["eng-write"]))
//!     .tool("write_files")
//!     .arguments(serde_json::json!({
//!         "files": [{"path": "/srv/a.txt", "content": "hello"}],
//!         "token": "s3cr3t",
//!     }))
//!     .outcome(Outcome::http(200).is_error(false));
//! audit.record(event).await?;
//! audit.flush().await?;
//!
//! let line: serde_json::Value = serde_json::from_str(&sink.lines()[0])?;
//! assert_eq!(line["tool"], "write_files");
//! assert_eq!(line["arguments"]["value"]["files"][0]["content"], "[redacted]");
//! assert_eq!(line["arguments"]["value"]["token"], "[redacted]");
//! assert_eq!(line["prev_hash"], mcp_oauth::audit::GENESIS_HASH);
//! # Ok(()) }
//! ```

mod canonical;
mod chain;
mod event;
mod redact;
mod sink;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use tokio::sync::{mpsc, oneshot};

pub use chain::{
    BreakReason, ChainError, ChainSummary, GENESIS_HASH, line_hash, verify_chain,
    verify_chain_after, verify_chain_file,
};
pub use event::{Actor, AuditEvent, CredentialKind, Decision, Effect, Outcome};
pub use redact::{DEFAULT_SECRET_NAMES, REDACTED, RedactPattern};
pub use sink::MemorySink;

use sink::{Counters, Message, Shaping, SinkSpec};

/// The examples of `docs/audit.md`, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../../docs/audit.md")]
pub struct AuditDocDoctests;

/// The SHA-256 (lowercase hex) of the RFC 8785 canonical JSON of `value`, as
/// [`ArgumentMode::Sha256`] writes it (after secret-named values are replaced).
///
/// The canonical form: no whitespace, object members sorted by the UTF-16 code units of
/// their keys, strings with only `"`, `\` and control characters escaped (`\b \t \n \f \r`
/// by name, others as `\u00xx`), numbers as ECMAScript prints them (integers as digits,
/// `1e+21`, `1e-7`).
pub fn canonical_sha256(value: &serde_json::Value) -> String {
    canonical::sha256_hex(canonical::canonical_json(value).as_bytes())
}

/// The RFC 8785 canonical JSON text of `value` (see [`canonical_sha256`]).
pub fn canonical_json(value: &serde_json::Value) -> String {
    canonical::canonical_json(value)
}

/// How an event's arguments are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgumentMode {
    /// Not written: `"arguments": {"mode": "none"}`.
    None,
    /// The SHA-256 of their canonical JSON: `{"mode": "sha256", "sha256": "…"}`. The
    /// default: lines can be correlated with a known call without holding its content.
    #[default]
    Sha256,
    /// Written with the values named by the [`RedactPattern`]s replaced:
    /// `{"mode": "redacted", "value": {…}}`.
    Redacted,
    /// Written whole (secret-named values still replaced): `{"mode": "full", "value": {…}}`.
    Full,
}

/// Why an audit log could not be built or an event not recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The log file could not be opened.
    #[error("cannot open audit log {}: {reason}: {hint}", path.display())]
    OpenFile {
        /// The path as given.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
        /// What to do about it.
        hint: String,
    },
    /// A redaction pattern is malformed.
    #[error("invalid audit redaction pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No sink was chosen.
    #[error("audit log has no sink: call stdout(), file(path) or memory(&sink) on the builder")]
    NoSink,
    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The writer thread has stopped (it panicked); the event was not recorded.
    #[error("the audit writer has stopped; the event was not recorded")]
    Closed,
}

/// Counts since the log was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditStats {
    /// Events handed to [`AuditLog::record`].
    pub recorded: u64,
    /// Lines written to the sink.
    pub written: u64,
    /// Lines that could not be written (sink errors); each failure is also logged.
    pub failed: u64,
}

/// A handle on an audit log. Clones share one writer; the writer stops once every handle is
/// dropped and the queue is drained.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Message>,
    counters: Arc<Counters>,
}

impl AuditLog {
    /// Starts a builder. A sink must be chosen.
    pub fn builder() -> AuditLogBuilder {
        AuditLogBuilder::default()
    }

    /// Queues `event` for writing, stamped with a fresh `event_id`. Waits only when the
    /// queue is full (back-pressure from a slow sink), never on the disk itself.
    ///
    /// # Errors
    ///
    /// [`AuditError::Closed`] if the writer thread has stopped.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let message = Message::Event(Box::new((event, event_id())));
        self.tx
            .send(message)
            .await
            .map_err(|_| AuditError::Closed)?;
        self.counters.recorded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until every event recorded before this call has been written (or counted as
    /// failed) and handed to the operating system.
    ///
    /// # Errors
    ///
    /// [`AuditError::Closed`] if the writer thread has stopped.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Message::Flush(done))
            .await
            .map_err(|_| AuditError::Closed)?;
        wait.await.map_err(|_| AuditError::Closed)
    }

    /// Counts of recorded, written and failed lines.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            recorded: self.counters.recorded.load(Ordering::Relaxed),
            written: self.counters.written.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }
}

/// Builds an [`AuditLog`]: a sink, an argument mode, redaction patterns, extra secret
/// names and the hash chain.
#[derive(Debug, Default)]
#[must_use]
pub struct AuditLogBuilder {
    sink: Option<SinkSpec>,
    mode: ArgumentMode,
    patterns: Vec<String>,
    secret_names: Vec<String>,
    chain: bool,
    capacity: Option<usize>,
}

impl AuditLogBuilder {
    /// Lines go to standard output.
    pub fn stdout(mut self) -> Self {
        self.sink = Some(SinkSpec::Stdout);
        self
    }

    /// Lines are appended to this file, created with mode `0600` on Unix when it does not
    /// exist (an existing file keeps its mode; a warning is logged if others can read it).
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.sink = Some(SinkSpec::File(path.as_ref().to_owned()));
        self
    }

    /// Lines go to `sink` (for tests).
    pub fn memory(mut self, sink: &MemorySink) -> Self {
        self.sink = Some(SinkSpec::Memory(sink.clone()));
        self
    }

    /// How arguments are written. Default: [`ArgumentMode::Sha256`].
    pub fn arguments(mut self, mode: ArgumentMode) -> Self {
        self.mode = mode;
        self
    }

    /// Adds a [`RedactPattern`] (used by [`ArgumentMode::Redacted`]), such as `*.password`
    /// or `files[*].content`. Checked by [`build`](Self::build).
    pub fn redact(mut self, pattern: impl Into<String>) -> Self {
        self.patterns.push(pattern.into());
        self
    }

    /// Adds a member name whose value is never written, in every mode, on top of
    /// [`DEFAULT_SECRET_NAMES`].
    pub fn secret_name(mut self, name: impl Into<String>) -> Self {
        self.secret_names.push(name.into());
        self
    }

    /// Chains lines with `prev_hash`. Default: off.
    pub fn hash_chain(mut self, on: bool) -> Self {
        self.chain = on;
        self
    }

    /// How many events may wait for the writer before [`AuditLog::record`] waits.
    /// Default: 1024.
    pub fn capacity(mut self, events: usize) -> Self {
        self.capacity = Some(events);
        self
    }

    /// Opens the sink and starts the writer thread. Needs no async runtime.
    ///
    /// # Errors
    ///
    /// [`AuditError::NoSink`], [`AuditError::InvalidPattern`], [`AuditError::OpenFile`]
    /// (with what to fix) or [`AuditError::Spawn`].
    pub fn build(self) -> Result<AuditLog, AuditError> {
        let sink = self.sink.ok_or(AuditError::NoSink)?;
        let patterns = self
            .patterns
            .iter()
            .map(|p| p.parse())
            .collect::<Result<Vec<RedactPattern>, _>>()?;
        let mut secrets = redact::SecretNames::default();
        for name in &self.secret_names {
            secrets.add(name);
        }
        let shaping = Shaping {
            mode: self.mode,
            patterns,
            secrets,
        };
        let counters = Arc::new(Counters::default());
        let tx = sink::start(
            sink,
            shaping,
            self.chain,
            self.capacity.unwrap_or(1024),
            Arc::clone(&counters),
        )?;
        Ok(AuditLog { tx, counters })
    }
}

/// A random (version 4) UUID.
fn event_id() -> String {
    let mut bytes = [0_u8; 16];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        // The system generator does not fail on supported platforms; should it, ids stay
        // unique within the process.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (nanos ^ (u128::from(n) << 64)).to_be_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = canonical::hex(&bytes);
    let part = |from: usize, to: usize| hex.get(from..to).unwrap_or_default();
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}
