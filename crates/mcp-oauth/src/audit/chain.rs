//! The hash chain: each line's `prev_hash` is the SHA-256 of the previous line, and the
//! verifier that walks a log and names the first line where the chain breaks.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::canonical::sha256_hex;

/// The `prev_hash` of the first line of a chain: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The `prev_hash` the line after `line` carries: lowercase hex SHA-256 of the line's bytes,
/// without its terminating `\n`.
pub fn line_hash(line: &[u8]) -> String {
    sha256_hex(line)
}

/// A chain that verified: how many lines it has and the hash of its last line.
///
/// An edit to the last line cannot be seen from inside the file (no line comes after it).
/// Keep [`ChainSummary::head`] somewhere else (a ticket, another system's log) and compare
/// it later to cover the end of the file too.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainSummary {
    /// Number of lines read.
    pub lines: usize,
    /// Hash of the last line ([`GENESIS_HASH`] for an empty file): the `prev_hash` the
    /// next line will carry.
    pub head: String,
}

/// Why a line breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakReason {
    /// The line is not a JSON object (an edit, or a line cut short by a crash).
    NotJson,
    /// The line has no string `prev_hash`.
    MissingPrevHash,
    /// `prev_hash` is not the hash of the line before: a line before it was edited, removed
    /// or moved, or this line was moved.
    Mismatch {
        /// The hash of the previous line (or the starting hash, on the first line).
        expected: String,
        /// The line's `prev_hash`.
        found: String,
    },
}

impl fmt::Display for BreakReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson => f.write_str("not a JSON object"),
            Self::MissingPrevHash => f.write_str("no prev_hash member"),
            Self::Mismatch { expected, found } => write!(
                f,
                "prev_hash {found} is not the hash of the line before ({expected}): a line was \
                 edited, removed or moved"
            ),
        }
    }
}

/// A chain that did not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The chain breaks at this line.
    #[error("audit chain broken at line {line}: {reason}")]
    Broken {
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: BreakReason,
    },
    /// The log could not be read.
    #[error("cannot read the audit log: {0}")]
    Io(#[from] io::Error),
}

/// Walks a log and checks every line's `prev_hash`, starting from [`GENESIS_HASH`].
///
/// # Errors
///
/// [`ChainError::Broken`] with the 1-based number of the first line whose `prev_hash` is
/// not the hash of the line before it, or which is not a JSON object with a `prev_hash`.
/// An edited line shows up on the line after it; a removed line on the line that followed
/// it; two swapped lines on the first of them.
pub fn verify_chain(reader: impl BufRead) -> Result<ChainSummary, ChainError> {
    verify_chain_after(reader, GENESIS_HASH)
}

/// [`verify_chain`] for a log whose first line continues an earlier chain, such as a
/// rotated file: `start` is the hash of the last line of the file before.
///
/// # Errors
///
/// As [`verify_chain`].
pub fn verify_chain_after(
    mut reader: impl BufRead,
    start: &str,
) -> Result<ChainSummary, ChainError> {
    let mut expected = start.to_owned();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(ChainSummary {
                lines: line,
                head: expected,
            });
        }
        line += 1;
        let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let broken = |reason| ChainError::Broken { line, reason };
        let Ok(serde_json::Value::Object(members)) = serde_json::from_slice(bytes) else {
            return Err(broken(BreakReason::NotJson));
        };
        let Some(found) = members.get("prev_hash").and_then(|v| v.as_str()) else {
            return Err(broken(BreakReason::MissingPrevHash));
        };
        if found != expected {
            return Err(broken(BreakReason::Mismatch {
                expected,
                found: found.to_owned(),
            }));
        }
        expected = line_hash(bytes);
    }
}

/// [`verify_chain`] on a file.
///
/// # Errors
///
/// As [`verify_chain`]; [`ChainError::Io`] when the file cannot be opened.
pub fn verify_chain_file(path: impl AsRef<Path>) -> Result<ChainSummary, ChainError> {
    verify_chain(BufReader::new(File::open(path)?))
}

/// How an existing file ends, so that appending keeps lines whole and the chain going.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Tail {
    /// The hash of the last whole line, if any.
    pub(crate) last_line_hash: Option<String>,
    /// The file is not empty and does not end with `\n` (a line cut short).
    pub(crate) needs_newline: bool,
}

/// Reads backwards from the end of `file` until the last line is found.
pub(crate) fn read_tail(file: &mut File) -> io::Result<Tail> {
    const CHUNK: u64 = 8 * 1024;
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(Tail {
            last_line_hash: None,
            needs_newline: false,
        });
    }
    let mut last = [0_u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    let needs_newline = last != *b"\n";
    // The last line ends before the final `\n` (or at the end of a cut line).
    let end = if needs_newline { len } else { len - 1 };
    let mut line: Vec<u8> = Vec::new();
    let mut chunk_end = end;
    while chunk_end > 0 {
        let from = chunk_end.saturating_sub(CHUNK);
        let mut chunk = vec![0_u8; usize::try_from(chunk_end - from).unwrap_or(0)];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        if let Some(at) = chunk.iter().rposition(|b| *b == b'\n') {
            line.splice(
                0..0,
                chunk.get(at + 1..).unwrap_or_default().iter().copied(),
            );
            break;
        }
        line.splice(0..0, chunk);
        chunk_end = from;
    }
    Ok(Tail {
        last_line_hash: Some(line_hash(&line)),
        needs_newline,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn tail_of_files_of_every_shape() {
        let dir = std::env::temp_dir().join(format!("mcp-oauth-tail-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let long = "x".repeat(20_000);
        let cases: [(&str, Option<&str>, bool); 5] = [
            ("", None, false),
            ("{\"a\":1}\n", Some("{\"a\":1}"), false),
            ("one\ntwo\n", Some("two"), false),
            ("one\ntw", Some("tw"), true),
            (&format!("one\n{long}\n"), Some(long.as_str()), false),
        ];
        for (i, (content, last, needs_newline)) in cases.into_iter().enumerate() {
            let path = dir.join(format!("{i}.jsonl"));
            let mut file = File::create(&path).unwrap_or_else(|e| panic!("{e}"));
            file.write_all(content.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
            let mut file = File::open(&path).unwrap_or_else(|e| panic!("{e}"));
            let tail = read_tail(&mut file).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                tail,
                Tail {
                    last_line_hash: last.map(|l| line_hash(l.as_bytes())),
                    needs_newline
                },
                "case {i}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
