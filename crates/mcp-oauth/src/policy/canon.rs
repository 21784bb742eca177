//! Arguments made canonical before any rule sees them: paths joined to the root and
//! normalised (leaving the root is refused), URLs parsed to scheme and host.

/// How an argument is canonicalised and typed in Cedar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ArgKind {
    Text,
    Long,
    Bool,
    Path,
    Url,
}

impl ArgKind {
    /// The Cedar schema type of one value.
    pub(crate) fn cedar_type(self) -> &'static str {
        match self {
            Self::Text | Self::Path => "String",
            Self::Long => "Long",
            Self::Bool => "Bool",
            Self::Url => "Url",
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Text => "a string",
            Self::Long => "an integer",
            Self::Bool => "a boolean",
            Self::Path => "a path",
            Self::Url => "a URL",
        }
    }
}

/// Why an argument could not be made canonical (the call is then denied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

/// Joins `value` to `root` (unless absolute) and normalises it lexically. `..` that would
/// climb above the root, backslashes, a leading `~` and NUL bytes are refused, and so is an
/// absolute path outside the root.
pub(crate) fn path(root: &str, value: &str, arg: &str) -> Result<String, Refused> {
    if value.contains('\0') {
        return Err(Refused(format!("argument `{arg}` holds a NUL byte")));
    }
    if value.contains('\\') {
        return Err(Refused(format!(
            "argument `{arg}` holds a backslash, which some servers read as a separator"
        )));
    }
    if value.starts_with('~') {
        return Err(Refused(format!(
            "argument `{arg}` starts with `~`, which some servers expand to a home directory"
        )));
    }
    let joined = if value.starts_with('/') {
        value.to_owned()
    } else {
        format!("{}/{value}", root.trim_end_matches('/'))
    };
    let mut parts: Vec<&str> = Vec::new();
    let mut climbed_out = false;
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    climbed_out = true;
                }
            }
            other => parts.push(other),
        }
    }
    let normal = format!("/{}", parts.join("/"));
    if climbed_out || !is_under(&normal, root) {
        let why = if value.split('/').any(|p| p == "..") {
            "uses `..` to leave"
        } else {
            "is outside"
        };
        return Err(Refused(format!("argument `{arg}` {why} the root `{root}`")));
    }
    Ok(normal)
}

/// Whether the normal path `path` is `dir` or below it (component-wise).
pub(crate) fn is_under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() {
        return path.starts_with('/');
    }
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A URL's scheme and host, lower case, the host without a trailing dot.
pub(crate) fn url(value: &str, arg: &str) -> Result<(String, String), Refused> {
    let parsed = url::Url::parse(value)
        .map_err(|_| Refused(format!("argument `{arg}` is not an absolute URL")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| Refused(format!("argument `{arg}` is a URL without a host")))?;
    let host = host.trim_end_matches('.').to_lowercase();
    if host.is_empty() {
        return Err(Refused(format!("argument `{arg}` is a URL without a host")));
    }
    Ok((parsed.scheme().to_owned(), host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_join_the_root() {
        assert_eq!(path("/srv", "a/b.txt", "p").unwrap(), "/srv/a/b.txt");
        assert_eq!(path("/srv/", "./a//b/../c", "p").unwrap(), "/srv/a/c");
        assert_eq!(path("/srv", "/srv/x", "p").unwrap(), "/srv/x");
        assert_eq!(path("/", "/etc/passwd", "p").unwrap(), "/etc/passwd");
    }

    #[test]
    fn leaving_the_root_is_refused() {
        let err = path("/srv", "../etc/passwd", "path").unwrap_err();
        assert_eq!(err.0, "argument `path` uses `..` to leave the root `/srv`");
        let err = path("/srv", "/srv/../../etc", "path").unwrap_err();
        assert!(err.0.contains("`..`"), "{}", err.0);
        let err = path("/srv", "/etc/passwd", "path").unwrap_err();
        assert_eq!(err.0, "argument `path` is outside the root `/srv`");
        assert!(path("/srv", "/srvx/a", "p").is_err());
        assert!(path("/", "/../..", "p").is_err());
        assert!(path("/srv", "a\\..\\..\\x", "p").is_err());
        assert!(path("/srv", "~/x", "p").is_err());
        assert!(path("/srv", "a\0b", "p").is_err());
    }

    #[test]
    fn urls_become_scheme_and_host() {
        assert_eq!(
            url("HTTPS://Example.COM./x?y", "u").unwrap(),
            ("https".to_owned(), "example.com".to_owned())
        );
        assert!(url("not a url", "u").is_err());
        assert!(url("mailto:a@b.c", "u").is_err());
        assert_eq!(url("http://[::1]:8080/", "u").unwrap().1, "[::1]");
    }
}
