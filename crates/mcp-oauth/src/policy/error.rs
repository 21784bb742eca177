//! What is wrong with a policy, said so that it can be fixed: the file, the line and the rule.

use std::fmt;

/// Where a rule came from: a file and a line, when known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// The file name (a TOML or `.cedar` file), if the rule came from one.
    pub file: Option<String>,
    /// The 1-based line, if known.
    pub line: Option<usize>,
}

impl Origin {
    pub(crate) fn new(file: &str, line: Option<usize>) -> Self {
        Self {
            file: Some(file.to_owned()),
            line,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}"),
            (Some(file), None) => write!(f, "{file}"),
            (None, Some(line)) => write!(f, "line {line}"),
            (None, None) => Ok(()),
        }
    }
}

/// One thing wrong with a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The id of the rule at fault, if one is.
    pub rule: Option<String>,
    /// Where it is.
    pub origin: Origin,
    /// What is wrong and, where it can, what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = self.origin.to_string();
        if !origin.is_empty() {
            write!(f, "{origin}: ")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, "rule `{rule}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A policy that cannot be used, with every problem found (not only the first).
///
/// Its `Display` puts one problem per line, each as `file:line: rule `id`: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    problems: Vec<Problem>,
}

impl PolicyError {
    pub(crate) fn new(problems: Vec<Problem>) -> Self {
        Self { problems }
    }

    pub(crate) fn one(rule: Option<&str>, origin: Origin, message: impl Into<String>) -> Self {
        Self::new(vec![Problem {
            rule: rule.map(str::to_owned),
            origin,
            message: message.into(),
        }])
    }

    /// Every problem found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, problem) in self.problems.iter().enumerate() {
            if n > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

/// Collects problems while a policy is read or compiled.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, rule: Option<&str>, origin: &Origin, message: impl Into<String>) {
        self.0.push(Problem {
            rule: rule.map(str::to_owned),
            origin: origin.clone(),
            message: message.into(),
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn into_result(self) -> Result<(), PolicyError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::new(self.0))
        }
    }
}

/// The 1-based line of a byte offset in a text.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()
        .iter()
        .take(end)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}
