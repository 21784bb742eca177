//! What never reaches an audit line: secret-named values and the paths a pattern names.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::AuditError;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// The member names whose values are never written, in any argument mode.
///
/// Names are compared after lowercasing and removing `_` and `-`, so `access_token`,
/// `accessToken` and `Access-Token` are one name. Add more with
/// [`AuditLogBuilder::secret_name`](super::AuditLogBuilder::secret_name).
pub const DEFAULT_SECRET_NAMES: &[&str] = &[
    "authorization",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "password",
    "code_verifier",
    "api_key",
    "secret",
    "cookie",
    "private_key",
];

/// Member names whose values are replaced wherever they appear in the arguments.
#[derive(Debug, Clone)]
pub(crate) struct SecretNames(HashSet<String>);

impl Default for SecretNames {
    fn default() -> Self {
        Self(DEFAULT_SECRET_NAMES.iter().map(|n| normalise(n)).collect())
    }
}

impl SecretNames {
    pub(crate) fn add(&mut self, name: &str) {
        self.0.insert(normalise(name));
    }

    fn contains(&self, name: &str) -> bool {
        self.0.contains(&normalise(name))
    }

    /// Replaces the value of every member with a secret name, at any depth.
    pub(crate) fn scrub(&self, value: &mut Value) {
        match value {
            Value::Object(members) => {
                for (name, item) in members.iter_mut() {
                    if self.contains(name) {
                        *item = Value::String(REDACTED.to_owned());
                    } else {
                        self.scrub(item);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.scrub(item)),
            _ => {}
        }
    }
}

fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// A path glob naming values to redact in [`ArgumentMode::Redacted`](super::ArgumentMode).
///
/// The path starts at the arguments object. Segments are separated by `.`:
///
/// | segment | matches |
/// |---|---|
/// | `name` | the member `name` of an object |
/// | `*` | any one member of an object |
/// | `**` | any number of levels (zero or more), through objects and arrays |
/// | `[3]` | the element at index 3 of an array |
/// | `[*]` | any one element of an array |
///
/// Brackets follow a name or another bracket: `files[*].content`, `matrix[*][0]`.
/// Examples: `password` (the top-level member), `*.password` (one level down),
/// `**.password` (anywhere), `files[*].content` (the `content` of every element of
/// `files`). A member whose name holds `.`, `[`, `]` or `*` can only be reached with `*`
/// or `**`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactPattern {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    AnyKey,
    Index(usize),
    AnyIndex,
    AnyDepth,
}

impl fmt::Debug for RedactPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedactPattern").field(&self.text).finish()
    }
}

impl fmt::Display for RedactPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for RedactPattern {
    type Err = AuditError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| AuditError::InvalidPattern {
            pattern: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(invalid("the pattern is empty"));
        }
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (name, mut brackets) = match part.find('[') {
                Some(at) => part.split_at(at),
                None => (part, ""),
            };
            match name {
                "" if brackets.is_empty() => {
                    return Err(invalid(
                        "empty segment: two dots in a row, or a dot at an end",
                    ));
                }
                "" if !segments.is_empty() => {
                    return Err(invalid(
                        "a bracket must follow a name, not a dot: write a[0]",
                    ));
                }
                "" => {}
                "**" => {
                    if segments.last() != Some(&Segment::AnyDepth) {
                        segments.push(Segment::AnyDepth);
                    }
                }
                "*" => segments.push(Segment::AnyKey),
                name if name.contains('*') => {
                    return Err(invalid("`*` must be a whole segment (`*` or `**`)"));
                }
                name if name.contains(']') => return Err(invalid("`]` without `[`")),
                name => segments.push(Segment::Key(name.to_owned())),
            }
            while !brackets.is_empty() {
                let Some(rest) = brackets.strip_prefix('[') else {
                    return Err(invalid("text after `]`: write a new segment after a dot"));
                };
                let Some((inside, rest)) = rest.split_once(']') else {
                    return Err(invalid("`[` without `]`"));
                };
                segments.push(match inside {
                    "*" => Segment::AnyIndex,
                    index => Segment::Index(index.parse().map_err(|_| {
                        invalid("inside brackets write `*` or an array index such as 0")
                    })?),
                });
                brackets = rest;
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }
}

impl RedactPattern {
    /// Replaces every value this pattern names.
    pub(crate) fn apply(&self, value: &mut Value) {
        redact(value, &self.segments);
    }
}

fn redact(value: &mut Value, segments: &[Segment]) {
    let Some((first, rest)) = segments.split_first() else {
        *value = Value::String(REDACTED.to_owned());
        return;
    };
    match (first, value) {
        (Segment::AnyDepth, value) => {
            // Zero levels, then one more level with `**` still in front.
            redact(value, rest);
            match value {
                Value::Object(members) => members.values_mut().for_each(|v| redact(v, segments)),
                Value::Array(items) => items.iter_mut().for_each(|v| redact(v, segments)),
                _ => {}
            }
        }
        (Segment::Key(name), Value::Object(members)) => {
            if let Some(item) = members.get_mut(name) {
                redact(item, rest);
            }
        }
        (Segment::AnyKey, Value::Object(members)) => {
            members.values_mut().for_each(|v| redact(v, rest));
        }
        (Segment::Index(index), Value::Array(items)) => {
            if let Some(item) = items.get_mut(*index) {
                redact(item, rest);
            }
        }
        (Segment::AnyIndex, Value::Array(items)) => {
            items.iter_mut().for_each(|v| redact(v, rest));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pattern(text: &str) -> RedactPattern {
        match text.parse() {
            Ok(pattern) => pattern,
            Err(err) => panic!("{text}: {err}"),
        }
    }

    #[test]
    fn parses_names_brackets_and_wildcards() {
        assert_eq!(
            pattern("files[*].content").segments,
            [
                Segment::Key("files".into()),
                Segment::AnyIndex,
                Segment::Key("content".into())
            ]
        );
        assert_eq!(
            pattern("**.**.m[2][*]").segments,
            [
                Segment::AnyDepth,
                Segment::Key("m".into()),
                Segment::Index(2),
                Segment::AnyIndex
            ]
        );
        assert_eq!(pattern("[0]").segments, [Segment::Index(0)]);
    }

    #[test]
    fn refuses_malformed_patterns_with_a_reason() {
        for bad in [
            "", "a..b", "a.", ".a", "a.[0]", "pass*", "a[", "a[x]", "a[0]b", "a]",
        ] {
            let err = bad.parse::<RedactPattern>().err();
            assert!(
                matches!(err, Some(AuditError::InvalidPattern { ref pattern, .. }) if pattern == bad),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn secret_names_match_across_spellings() {
        let names = SecretNames::default();
        let mut value = json!({"accessToken": "a", "Access-Token": "b", "nested": [{"PASSWORD": 1}], "path": "/x"});
        names.scrub(&mut value);
        assert_eq!(
            value,
            json!({"accessToken": REDACTED, "Access-Token": REDACTED, "nested": [{"PASSWORD": REDACTED}], "path": "/x"})
        );
    }
}
