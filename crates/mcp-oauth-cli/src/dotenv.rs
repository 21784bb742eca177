//! `.env` in the current directory, read before the options as mcp-use users expect: each
//! `NAME=value` line sets `NAME` unless the environment already has it (the environment wins).
//! A missing file is fine; a line that is not `NAME=value` stops the command with its line
//! number and variable name, never its value (a `.env` holds secrets).

use std::path::{Path, PathBuf};

/// Reads `path` into the environment when it exists. Returns the path when it was read.
///
/// # Errors
///
/// The file exists but cannot be read, or a line is malformed.
pub(crate) fn load(path: &Path) -> Result<Option<PathBuf>, String> {
    match dotenvy::from_path(path) {
        Ok(()) => Ok(Some(path.to_owned())),
        Err(dotenvy::Error::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(dotenvy::Error::LineParse(line, _)) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            Err(malformed(path, &text, &line))
        }
        Err(err) => Err(format!("cannot read {}: {err}", path.display())),
    }
}

/// The message for a malformed logical line `line` of `text`: its line number in the file and
/// the variable it sets, without the value.
fn malformed(path: &Path, text: &str, line: &str) -> String {
    // dotenvy reports the logical line, or only the value when the value is malformed.
    let first = line.lines().next().unwrap_or_default().trim();
    let found = text
        .lines()
        .enumerate()
        .find(|(_, l)| !first.is_empty() && l.contains(first));
    let number = found
        .map(|(i, _)| format!("line {}", i + 1))
        .unwrap_or_else(|| "a line".to_owned());
    let name = found
        .and_then(|(_, l)| l.trim().trim_start_matches("export ").split_once('='))
        .map(|(name, _)| name.trim())
        .filter(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .map(|name| format!(" (setting {name})"))
        .unwrap_or_default();
    format!(
        "{}: {number}{name} is not NAME=value: quote a value with spaces or # (NAME=\"a b\"), or remove the line",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_line_is_named_by_number_and_variable_never_by_value() {
        let text = "# comment\nOIDC_ISSUER=https://auth.example.com\nSECRET=two words\n";
        let message = malformed(Path::new(".env"), text, "two words");
        assert_eq!(
            message,
            ".env: line 3 (setting SECRET) is not NAME=value: quote a value with spaces or # (NAME=\"a b\"), or remove the line"
        );
        assert!(!message.contains("words"), "{message}");
    }

    #[test]
    fn a_missing_file_is_fine_and_a_malformed_one_an_error() {
        let dir = std::env::temp_dir().join(format!("mcp-oauth-dotenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        assert_eq!(load(&dir.join("absent.env")), Ok(None));

        let bad = dir.join("bad.env");
        std::fs::write(&bad, "MCP_OAUTH_DOTENV_TEST_OK=1\nNOT A LINE\n").expect("write");
        let err = load(&bad).expect_err("malformed");
        assert!(err.contains("line 2"), "{err}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
