//! `mcp-oauth` as a child process: a clean environment, its JSON line, readiness polled with a
//! deadline, killed when dropped.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a process may take to start, or a command to finish.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A folder removed when dropped (declare it before the processes using it).
pub struct TempDir(PathBuf);

impl TempDir {
    /// `<temp>/mcp-oauth-cli-<test>-<name>-<pid>`, empty.
    pub fn new(test: &str, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "mcp-oauth-cli-{test}-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The data folder the processes are given.
    pub fn data(&self) -> PathBuf {
        self.0.join("data")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `mcp-oauth ARGS` with a clean environment (none of the caller's `MCP_OAUTH_*`, `OIDC_*` or
/// `REDIS_URL` settings, no HTTP proxy for loopback) plus `env`; standard input closed.
pub fn command<A: AsRef<OsStr>>(args: &[A], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("MCP_OAUTH_")
            || name.starts_with("OIDC_")
            || name == "REDIS_URL"
            || name.to_ascii_lowercase().ends_with("_proxy")
        {
            cmd.env_remove(name);
        }
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost")
        .env("MCP_OAUTH_LOG", "info,mcp_oauth=debug")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// Runs `mcp-oauth ARGS` to its end (killed at the deadline): (success, stdout, stderr).
pub fn run_to_end<A: AsRef<OsStr> + std::fmt::Debug>(
    args: &[A],
    env: &[(String, String)],
) -> (bool, String, String) {
    let mut child = command(args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mcp-oauth");
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{args:?} still running after {DEADLINE:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval, bounded above
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A serving `mcp-oauth` (`dev`, `proxy`, `gateway` … with `--json`): the JSON line it printed
/// and its log; killed when dropped.
pub struct Served {
    child: Child,
    /// The JSON line.
    pub info: Value,
    log: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts `mcp-oauth ARGS` (which must include `--json`) with its log in
    /// `<tmp>/<name>.log`, reads its JSON line and polls its protected resource metadata
    /// until it answers.
    pub async fn start<A: AsRef<OsStr>>(
        tmp: &TempDir,
        name: &str,
        args: &[A],
        env: &[(String, String)],
    ) -> Self {
        let log = tmp.path().join(format!("{name}.log"));
        let mut child = command(args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawn mcp-oauth");
        let stdout = child.stdout.take().expect("stdout");
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = match tokio::time::timeout(DEADLINE, read).await {
            Ok(Ok(Ok(line))) if !line.is_empty() => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "no JSON line from mcp-oauth {name} ({other:?}); log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let mut served = Self {
            child,
            info: Value::Null,
            log,
        };
        served.info = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}; log:\n{}", served.log_text()));
        served.ready().await;
        served
    }

    /// The process (its pid, a signal, its exit).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A string field of the JSON line.
    pub fn field(&self, name: &str) -> String {
        self.info[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} in {}", self.info))
            .to_owned()
    }

    pub fn issuer(&self) -> String {
        self.field("issuer")
    }

    pub fn mcp_url(&self) -> String {
        self.field("mcp_url")
    }

    async fn ready(&mut self) {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let prm = format!("{}/.well-known/oauth-protected-resource/mcp", self.issuer());
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!("mcp-oauth exited ({exit}); log:\n{}", self.log_text());
            }
            if http
                .get(&prm)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mcp-oauth not ready; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await; // poll interval, bounded above
        }
    }
}

/// `mcp-oauth dev --port 0 --json --data-dir <tmp>/data EXTRA`, ready; its log in
/// `<tmp>/<name>.log`.
pub async fn dev(tmp: &TempDir, name: &str, extra: &[&str]) -> Served {
    let data = tmp.data();
    let mut args = vec![
        "dev",
        "--port",
        "0",
        "--json",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Served::start(tmp, name, &args, &[]).await
}
