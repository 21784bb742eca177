//! Where lines go, and the writer thread that puts them there.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::canonical::{canonical_json, sha256_hex};
use super::chain::{GENESIS_HASH, line_hash, read_tail};
use super::event::{ArgumentsField, AuditEvent, Line};
use super::redact::{RedactPattern, SecretNames};
use super::{ArgumentMode, AuditError};

/// The lines of a log built with [`AuditLogBuilder::memory`](super::AuditLogBuilder::memory),
/// for tests. Clones share the lines.
#[derive(Debug, Clone, Default)]
pub struct MemorySink(Arc<Mutex<Vec<String>>>);

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lines written so far, without their `\n`. Call
    /// [`AuditLog::flush`](super::AuditLog::flush) first to see every recorded event.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Where a log's lines go.
#[derive(Debug, Clone)]
pub(crate) enum SinkSpec {
    Stdout,
    File(PathBuf),
    Memory(MemorySink),
}

/// How each event's arguments are written.
#[derive(Debug)]
pub(crate) struct Shaping {
    pub(crate) mode: ArgumentMode,
    pub(crate) patterns: Vec<RedactPattern>,
    pub(crate) secrets: SecretNames,
}

impl Shaping {
    pub(crate) fn arguments(&self, arguments: Option<Value>) -> ArgumentsField {
        let (mode, Some(mut value)) = (self.mode, arguments) else {
            return ArgumentsField::None;
        };
        if mode == ArgumentMode::None {
            return ArgumentsField::None;
        }
        self.secrets.scrub(&mut value);
        match mode {
            ArgumentMode::Sha256 => ArgumentsField::Sha256 {
                sha256: sha256_hex(canonical_json(&value).as_bytes()),
            },
            ArgumentMode::Redacted => {
                for pattern in &self.patterns {
                    pattern.apply(&mut value);
                }
                limit_depth(&mut value, MAX_ARGUMENT_DEPTH);
                ArgumentsField::Redacted { value }
            }
            ArgumentMode::Full | ArgumentMode::None => {
                limit_depth(&mut value, MAX_ARGUMENT_DEPTH);
                ArgumentsField::Full { value }
            }
        }
    }
}

/// How deep written arguments may nest. Deeper values are replaced by [`TOO_DEEP`], so that a
/// line stays readable by JSON parsers with a nesting limit (serde_json's is 128).
pub(crate) const MAX_ARGUMENT_DEPTH: usize = 100;

/// What a value nested deeper than [`MAX_ARGUMENT_DEPTH`] is written as.
pub(crate) const TOO_DEEP: &str = "[too deep]";

fn limit_depth(value: &mut Value, levels: usize) {
    match value {
        Value::Object(_) | Value::Array(_) if levels == 0 => {
            *value = Value::String(TOO_DEEP.to_owned());
        }
        Value::Object(members) => members
            .values_mut()
            .for_each(|v| limit_depth(v, levels - 1)),
        Value::Array(items) => items.iter_mut().for_each(|v| limit_depth(v, levels - 1)),
        _ => {}
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) recorded: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) failed: AtomicU64,
}

pub(crate) enum Message {
    Event(Box<(AuditEvent, String)>),
    Flush(oneshot::Sender<()>),
}

enum Output {
    Stdout,
    File(File, PathBuf),
    Memory(MemorySink),
}

impl Output {
    fn write(&mut self, batch: &[u8]) -> io::Result<()> {
        match self {
            Self::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(batch)?;
                out.flush()
            }
            Self::File(file, _) => file.write_all(batch),
            Self::Memory(sink) => {
                let text = String::from_utf8_lossy(batch);
                let mut lines = sink.0.lock().unwrap_or_else(PoisonError::into_inner);
                lines.extend(text.lines().map(str::to_owned));
                Ok(())
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Stdout => "stdout".to_owned(),
            Self::File(_, path) => path.display().to_string(),
            Self::Memory(_) => "memory".to_owned(),
        }
    }
}

/// Opens the sink (so that a bad path fails at start-up) and starts the writer thread.
pub(crate) fn start(
    spec: SinkSpec,
    shaping: Shaping,
    chain: bool,
    capacity: usize,
    counters: Arc<Counters>,
) -> Result<mpsc::Sender<Message>, AuditError> {
    let mut head = chain.then(|| GENESIS_HASH.to_owned());
    let mut output = match spec {
        SinkSpec::Stdout => Output::Stdout,
        SinkSpec::Memory(sink) => Output::Memory(sink),
        SinkSpec::File(path) => {
            let mut file = open(&path)?;
            let tail = read_tail(&mut file).map_err(|err| open_error(&path, &err))?;
            if tail.needs_newline {
                // A line cut short (a crash mid-write) stays on its own line, where the
                // chain verifier reports it, instead of merging with the next one.
                file.write_all(b"\n")
                    .map_err(|err| open_error(&path, &err))?;
            }
            if let (Some(head), Some(last)) = (head.as_mut(), tail.last_line_hash) {
                *head = last;
            }
            Output::File(file, path)
        }
    };
    let (tx, mut rx) = mpsc::channel::<Message>(capacity.max(1));
    std::thread::Builder::new()
        .name("mcp-oauth-audit".to_owned())
        .spawn(move || {
            // Ends when every `AuditLog` handle is dropped and the queue is drained.
            while let Some(first) = rx.blocking_recv() {
                let mut batch = Batch::default();
                batch.add(first, &shaping, &mut head);
                while batch.bytes.len() < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(message) => batch.add(message, &shaping, &mut head),
                        Err(_) => break,
                    }
                }
                batch.write(&mut output, &counters);
            }
        })
        .map_err(AuditError::Spawn)?;
    Ok(tx)
}

/// Lines gathered into one write, up to about this many bytes.
const MAX_BATCH_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
    failed: u64,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn add(&mut self, message: Message, shaping: &Shaping, head: &mut Option<String>) {
        let (mut event, event_id) = match message {
            Message::Flush(done) => return self.flushes.push(done),
            Message::Event(boxed) => *boxed,
        };
        let arguments = shaping.arguments(event.arguments.take());
        let line = Line::new(&event, &event_id, &arguments);
        let line = match head.as_deref() {
            Some(prev) => serde_json::to_vec(&line.chained(prev)),
            None => serde_json::to_vec(&line),
        };
        match line {
            Ok(line) => {
                if let Some(head) = head.as_mut() {
                    *head = line_hash(&line);
                }
                self.bytes.extend_from_slice(&line);
                self.bytes.push(b'\n');
                self.lines += 1;
            }
            Err(err) => {
                self.failed += 1;
                tracing::error!(target: "mcp_oauth::audit", %event_id, error = %err, "audit event not serialisable; not written");
            }
        }
    }

    fn write(self, output: &mut Output, counters: &Counters) {
        if self.lines > 0 {
            match output.write(&self.bytes) {
                Ok(()) => {
                    counters.written.fetch_add(self.lines, Ordering::Relaxed);
                }
                Err(err) => {
                    counters.failed.fetch_add(self.lines, Ordering::Relaxed);
                    tracing::error!(
                        target: "mcp_oauth::audit",
                        sink = %output.describe(),
                        lines = self.lines,
                        error = %err,
                        "audit lines not written"
                    );
                }
            }
        }
        counters.failed.fetch_add(self.failed, Ordering::Relaxed);
        for done in self.flushes {
            let _ = done.send(());
        }
    }
}

fn open(path: &Path) -> Result<File, AuditError> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(|err| open_error(path, &err))?;
    #[cfg(unix)]
    if let Ok(meta) = file.metadata() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_file() && mode & 0o077 != 0 {
            tracing::warn!(
                target: "mcp_oauth::audit",
                path = %path.display(),
                mode = format_args!("{mode:o}"),
                "the audit log can be read by other users; run chmod 600 on it"
            );
        }
    }
    Ok(file)
}

fn open_error(path: &Path, err: &io::Error) -> AuditError {
    let hint = match err.kind() {
        io::ErrorKind::NotFound => match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => {
                format!("create the folder {} first", dir.display())
            }
            _ => "check the path".to_owned(),
        },
        io::ErrorKind::PermissionDenied => {
            "make the file and its folder writable by this user, or choose another path".to_owned()
        }
        io::ErrorKind::IsADirectory => "the path is a folder: name a file in it".to_owned(),
        _ => "choose a path to a regular file this user can write".to_owned(),
    };
    AuditError::OpenFile {
        path: path.to_owned(),
        reason: err.to_string(),
        hint,
    }
}
