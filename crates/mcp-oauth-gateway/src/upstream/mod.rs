//! The MCP server behind the gateway: a child process spoken to over stdio, or a Streamable
//! HTTP endpoint. [`UpstreamConfig`] says which and how; the running sides are in
//! `stdio.rs` and `http.rs`.

pub(crate) mod body;
mod credentials;
pub(crate) mod http;
mod legacy;
pub(crate) mod stdio;
pub mod user_oauth;
pub(crate) mod user_secret;

pub use credentials::UpstreamCredentials;
pub use user_secret::{ACTION_REQUIRED, UserSecret};

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use ::http::{HeaderName, HeaderValue};

use crate::error::GatewayError;

/// Environment variables a stdio child keeps from the gateway's environment, when set.
/// Everything else is cleared; add more with [`StdioConfig::pass_env`] or set values with
/// [`StdioConfig::env`].
pub const ENV_ALLOW_LIST: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TERM",
    "TZ",
    "TMPDIR",
    // Windows: what processes need to start at all.
    "SYSTEMROOT",
    "SYSTEMDRIVE",
    "WINDIR",
    "COMSPEC",
    "PATHEXT",
    "TEMP",
    "TMP",
    "USERPROFILE",
    "APPDATA",
    "LOCALAPPDATA",
    "PROGRAMDATA",
    "PROGRAMFILES",
];

/// Which upstream, and how to reach it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum UpstreamConfig {
    /// A child process speaking MCP over stdin/stdout.
    Stdio(StdioConfig),
    /// A Streamable HTTP endpoint.
    Http(HttpConfig),
}

impl From<StdioConfig> for UpstreamConfig {
    fn from(config: StdioConfig) -> Self {
        Self::Stdio(config)
    }
}

impl From<HttpConfig> for UpstreamConfig {
    fn from(config: HttpConfig) -> Self {
        Self::Http(config)
    }
}

/// A stdio upstream: one child process shared by every client session.
///
/// The child runs with its environment cleared except [`ENV_ALLOW_LIST`], the variables named
/// with [`pass_env`](Self::pass_env) and those set with [`env`](Self::env); in a process group
/// of its own, which is killed when the gateway stops or is dropped; its stderr goes to the
/// log (target `mcp_oauth_gateway::upstream`), each line cut at 2 KiB and at most 1 MiB per
/// process. When it exits it is started again, after 100 ms doubling to 30 s while it keeps
/// failing.
#[derive(Clone)]
#[must_use]
pub struct StdioConfig {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) pass_env: Vec<OsString>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) init_timeout: Duration,
    pub(crate) isolation: Isolation,
    /// Each user's own token in their child's environment (`per-user` isolation).
    pub(crate) user_secret: Option<UserSecret>,
}

impl std::fmt::Debug for StdioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values set with `env` may be credentials: only their names are printed.
        f.debug_struct("StdioConfig")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("pass_env", &self.pass_env)
            .field("cwd", &self.cwd)
            .finish()
    }
}

impl StdioConfig {
    /// Runs `program` (found on `PATH`) with `args`.
    pub fn new<I, S>(program: impl Into<OsString>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            pass_env: Vec::new(),
            cwd: None,
            init_timeout: Duration::from_secs(60),
            isolation: Isolation::Shared,
            user_secret: None,
        }
    }

    /// Sets a variable in the child's environment. Never logged.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Passes the gateway's own value of `name` (if set) to the child.
    pub fn pass_env(mut self, name: impl Into<OsString>) -> Self {
        self.pass_env.push(name.into());
        self
    }

    /// The child's working directory. Default: the gateway's.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Whether users share one child ([`Isolation::Shared`](crate::Isolation::Shared), the
    /// default), each user gets their own ([`Isolation::PerUser`](crate::Isolation::PerUser))
    /// or each MCP session does ([`Isolation::PerSession`](crate::Isolation::PerSession)).
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Puts each user's own token (pasted on the gateway's page) in the environment variable
    /// [`UserSecret::env`] names, in that user's own child: the upstream must run with
    /// [`Isolation::PerUser`](crate::Isolation::PerUser). A user without a token gets the link
    /// to the page and no child; a changed token restarts the user's child, a revoked one
    /// stops it (at the user's next request).
    ///
    /// # Errors
    ///
    /// `secret` names no environment variable ([`UserSecret::env`]).
    pub fn user_secret(mut self, secret: UserSecret) -> Result<Self, GatewayError> {
        if secret.env_name().is_none() {
            return Err(GatewayError::Config {
                what: "user-secret",
                reason: "a stdio upstream takes the token in an environment variable: give env = \"NAME\"".to_owned(),
            });
        }
        self.user_secret = Some(secret);
        Ok(self)
    }

    /// How long the child has to answer `initialize` before it is restarted. Default: 60 s.
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// The environment the child gets, from the gateway's `parent` environment.
    pub(crate) fn child_env(
        &self,
        parent: impl Iterator<Item = (OsString, OsString)>,
    ) -> Vec<(OsString, OsString)> {
        let mut out: Vec<(OsString, OsString)> = parent
            .filter(|(name, _)| {
                ENV_ALLOW_LIST.iter().any(|allowed| name == allowed)
                    || self.pass_env.iter().any(|passed| passed == name)
            })
            .collect();
        for (name, value) in &self.env {
            out.retain(|(n, _)| n != name);
            out.push((name.clone(), value.clone()));
        }
        out
    }
}

/// A header value that is never printed.
#[derive(Clone)]
pub struct SecretHeader {
    pub(crate) name: HeaderName,
    pub(crate) value: HeaderValue,
}

impl std::fmt::Debug for SecretHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: [redacted]", self.name)
    }
}

/// How the gateway speaks to an HTTP upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpTransport {
    /// Streamable HTTP, falling back to the legacy HTTP+SSE transport (MCP 2024-11-05) when
    /// the upstream answers the `initialize` POST with 400, 404 or 405 (the default). Once
    /// the fallback worked, later sessions go straight to SSE.
    #[default]
    Auto,
    /// Streamable HTTP only.
    StreamableHttp,
    /// The legacy HTTP+SSE transport only: the URL is the upstream's SSE stream (`GET`),
    /// whose `endpoint` event says where messages are POSTed (on the same origin, else
    /// refused).
    Sse,
}

/// A Streamable HTTP (or legacy HTTP+SSE) upstream: each client session gets its own
/// upstream session.
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpConfig {
    pub(crate) url: url::Url,
    pub(crate) headers: Vec<SecretHeader>,
    pub(crate) credentials: Option<UpstreamCredentials>,
    pub(crate) timeout: Duration,
    pub(crate) transport: HttpTransport,
}

impl HttpConfig {
    /// The upstream's MCP endpoint.
    ///
    /// # Errors
    ///
    /// `url` is not an absolute `http` or `https` URL.
    pub fn new(url: &str) -> Result<Self, GatewayError> {
        let parsed = url::Url::parse(url).map_err(|e| GatewayError::Config {
            what: "upstream URL",
            reason: format!("{url:?}: {e}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(GatewayError::Config {
                what: "upstream URL",
                reason: format!("{url:?} is not an http or https URL"),
            });
        }
        Ok(Self {
            url: parsed,
            headers: Vec::new(),
            credentials: None,
            timeout: Duration::from_secs(10),
            transport: HttpTransport::Auto,
        })
    }

    /// Streamable HTTP, legacy SSE, or the first falling back to the second. Default:
    /// [`HttpTransport::Auto`].
    pub fn transport(mut self, transport: HttpTransport) -> Self {
        self.transport = transport;
        self
    }

    /// A header sent with every upstream request (the upstream's own credential, e.g.
    /// `Authorization: Bearer …` or `X-Api-Key: …`). Never logged. The client's
    /// `Authorization` is never forwarded, whatever is configured here.
    ///
    /// # Errors
    ///
    /// The name or value is not a valid header.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, GatewayError> {
        let name = HeaderName::try_from(name).map_err(|_| GatewayError::Config {
            what: "upstream header",
            reason: format!("{name:?} is not a header name"),
        })?;
        let mut value = HeaderValue::try_from(value).map_err(|_| GatewayError::Config {
            what: "upstream header",
            reason: format!("the value of {name} is not a valid header value"),
        })?;
        value.set_sensitive(true);
        self.headers.push(SecretHeader { name, value });
        Ok(self)
    }

    /// The caller's own credentials for the upstream, made for each caller (an exchanged
    /// token, [`UpstreamCredentials::token_exchange`]) and sent as `Authorization`; a
    /// configured `Authorization` [`header`](Self::header) is then replaced. The caller's
    /// token to the gateway is never sent.
    pub fn credentials(mut self, credentials: UpstreamCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Connect timeout of upstream requests. Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Resolves a secret reference: `${NAME}` is the value of the environment variable NAME,
/// `file:PATH` the content of the file (surrounding whitespace trimmed); anything else is
/// taken as it is. `${NAME}` may also appear inside a longer value (`Bearer ${TOKEN}`).
///
/// # Errors
///
/// A variable is not set or a file cannot be read; the error names it, never its value.
pub fn resolve_secret(reference: &str) -> Result<String, GatewayError> {
    if let Some(path) = reference.strip_prefix("file:") {
        return std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| GatewayError::Config {
                what: "secret reference",
                reason: format!("cannot read {path}: {e}"),
            });
    }
    let mut out = String::with_capacity(reference.len());
    let mut rest = reference;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(GatewayError::Config {
                what: "secret reference",
                reason: "an unclosed ${ (write ${NAME})".to_owned(),
            });
        };
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| GatewayError::Config {
            what: "secret reference",
            reason: format!("the environment variable {name} is not set"),
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// How a stdio upstream's child processes are shared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isolation {
    /// One child for every user (the default): `initialize` done once, state shared.
    #[default]
    Shared,
    /// One child per user (issuer and subject), started at the user's first request.
    PerUser,
    /// One child per MCP session, started by the session's `initialize` and stopped when it
    /// ends (`DELETE`), expires or the gateway stops.
    PerSession,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn the_child_environment_is_the_allow_list_plus_what_is_configured() {
        let parent = os(&[
            ("PATH", "/bin"),
            ("HOME", "/home/a"),
            ("AWS_SECRET_ACCESS_KEY", "s3cret"),
            ("GITHUB_TOKEN", "ghp"),
            ("KEEP_ME", "yes"),
        ]);
        let config = StdioConfig::new("server", ["--stdio"])
            .pass_env("KEEP_ME")
            .env("API_KEY", "k1")
            .env("HOME", "/srv");
        let env = config.child_env(parent.into_iter());
        assert_eq!(
            env,
            os(&[
                ("PATH", "/bin"),
                ("KEEP_ME", "yes"),
                ("API_KEY", "k1"),
                ("HOME", "/srv")
            ])
        );
        assert!(!format!("{config:?}").contains("k1"));
    }

    #[test]
    fn secret_references_name_what_is_missing_never_a_value() {
        // SAFETY of the test: the variable name is unique to this test.
        let value = resolve_secret("Bearer ${MCP_OAUTH_GATEWAY_TEST_UNSET_9F2}");
        let err = value.expect_err("unset").to_string();
        assert!(err.contains("MCP_OAUTH_GATEWAY_TEST_UNSET_9F2"), "{err}");
        assert_eq!(resolve_secret("plain").expect("plain"), "plain");
        assert!(resolve_secret("${OPEN").is_err());
        let err = resolve_secret("file:/nonexistent/secret").expect_err("no file");
        assert!(err.to_string().contains("/nonexistent/secret"));
        let path = std::env::temp_dir().join(format!("gw-secret-{}", std::process::id()));
        std::fs::write(&path, "tok-123\n").expect("write");
        assert_eq!(
            resolve_secret(&format!("file:{}", path.display())).expect("file"),
            "tok-123"
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn header_values_are_redacted_and_http_urls_required() {
        let config = HttpConfig::new("http://127.0.0.1:1/mcp")
            .expect("url")
            .header("X-Api-Key", "v-secret")
            .expect("header");
        assert!(!format!("{config:?}").contains("v-secret"));
        assert!(HttpConfig::new("file:///etc/passwd").is_err());
        assert!(HttpConfig::new("not a url").is_err());
        assert!(
            HttpConfig::new("http://h/x")
                .expect("url")
                .header("bad name", "v")
                .is_err()
        );
    }
}
