//! `mcp-oauth` as a child process: a clean environment, its JSON line, readiness polled with a
//! deadline, killed when dropped.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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

/// `mcp-oauth ARGS` with a clean environment (none of the caller's `MCP_*`, `OIDC_*` or
/// `REDIS_URL` settings, no HTTP proxy for loopback) plus `env`; standard input closed.
pub fn command<A: AsRef<OsStr>>(args: &[A], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("MCP_")
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

/// `(name, value)` pairs of an environment, as [`command`] and the starters take them.
pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Spawns `mcp-oauth ARGS` (see [`command`]) in `cwd` (or this one), stdout piped, stderr to
/// `<tmp>/<name>.log`.
fn spawn<A: AsRef<OsStr>>(
    tmp: &TempDir,
    name: &str,
    args: &[A],
    env: &[(String, String)],
    cwd: Option<&Path>,
) -> (Child, PathBuf) {
    let log = tmp.path().join(format!("{name}.log"));
    let mut cmd = command(args, env);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .expect("spawn mcp-oauth");
    (child, log)
}

/// A port free on 127.0.0.1 now, for a command that takes a URL rather than `--port 0`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// How a command run to its end ended.
#[derive(Debug)]
pub struct Run {
    /// The exit code (a command killed by a signal fails the test).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `mcp-oauth ARGS` in `cwd` (or this one) to its end; still running at the deadline, it
/// is killed and fails the test.
pub fn run<A: AsRef<OsStr> + std::fmt::Debug>(
    args: &[A],
    env: &[(String, String)],
    cwd: Option<&Path>,
) -> Run {
    let mut cmd = command(args, env);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd
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
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// [`run`] off the runtime's threads, so that servers of the test (a mock issuer) keep
/// answering meanwhile.
pub async fn run_async(args: &[&str], env: &[(String, String)], cwd: Option<&Path>) -> Run {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env = env.to_vec();
    let cwd = cwd.map(Path::to_owned);
    tokio::task::spawn_blocking(move || run(&args, &env, cwd.as_deref()))
        .await
        .expect("join")
}

/// `mcp-oauth dev --port 0 --store memory --data-dir <tmp>/data EXTRA`, which must refuse
/// its flags: its stderr.
pub fn dev_refused(tmp: &TempDir, extra: &[&str]) -> String {
    let data = tmp.data();
    let mut args = vec![
        "dev",
        "--port",
        "0",
        "--store",
        "memory",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    refused(&args)
}

/// Runs `mcp-oauth ARGS` to its end (killed at the deadline): (success, stdout, stderr).
pub fn run_to_end<A: AsRef<OsStr> + std::fmt::Debug>(
    args: &[A],
    env: &[(String, String)],
) -> (bool, String, String) {
    let Run {
        code,
        stdout,
        stderr,
    } = run(args, env, None);
    (code == 0, stdout, stderr)
}

/// Runs `mcp-oauth ARGS`, which must refuse them (exit with a failure before the deadline):
/// its stderr.
pub fn refused<A: AsRef<OsStr> + std::fmt::Debug>(args: &[A]) -> String {
    let (ok, _, stderr) = run_to_end(args, &[]);
    assert!(!ok, "{args:?} was accepted: {stderr}");
    stderr
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
        match Self::launch(tmp, name, args, env).await {
            Ok(mut served) => {
                served.ready().await;
                served
            }
            Err(why) => panic!("{why}"),
        }
    }

    /// Starts `mcp-oauth ARGS` in `cwd` (or this one) for a command that prints no JSON line
    /// (`serve`): `base` is where it listens (`issuer()`, where its metadata is polled until
    /// it answers), `mcp_url` its public MCP URL (`mcp_url()`).
    pub async fn start_quiet<A: AsRef<OsStr>>(
        tmp: &TempDir,
        name: &str,
        args: &[A],
        cwd: Option<&Path>,
        base: &str,
        mcp_url: &str,
    ) -> Self {
        let (child, log) = spawn(tmp, name, args, &[], cwd);
        let mut served = Self {
            child,
            info: serde_json::json!({"issuer": base, "mcp_url": mcp_url}),
            log,
        };
        served.ready().await;
        served
    }

    /// Starts `mcp-oauth ARGS` (which must include `--json`) with its log in
    /// `<tmp>/<name>.log` and reads its JSON line, for a command that prints that line once it
    /// listens (`gateway`): no metadata is polled.
    pub async fn started<A: AsRef<OsStr>>(
        tmp: &TempDir,
        name: &str,
        args: &[A],
        env: &[(String, String)],
    ) -> Self {
        Self::launch(tmp, name, args, env)
            .await
            .unwrap_or_else(|why| panic!("{why}"))
    }

    /// Stops the process: its log (stderr) up to then.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log_text()
    }

    /// Like [`Served::start`], but a process that prints no JSON line (it exited, e.g. because
    /// its port is still taken) is an `Err` with its log, for the caller to retry.
    async fn launch<A: AsRef<OsStr>>(
        tmp: &TempDir,
        name: &str,
        args: &[A],
        env: &[(String, String)],
    ) -> Result<Self, String> {
        let (mut child, log) = spawn(tmp, name, args, env, None);
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
                return Err(format!(
                    "no JSON line from mcp-oauth {name} ({other:?}); log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
        };
        let mut served = Self {
            child,
            info: Value::Null,
            log,
        };
        served.info = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}; log:\n{}", served.log_text()));
        Ok(served)
    }

    /// `GET <issuer><path>`, which must answer 2xx with JSON (a metadata document).
    pub async fn get_json(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.issuer());
        let res = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(res.status().is_success(), "GET {url}: {}", res.status());
        res.json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// Waits (up to the deadline) for the process to exit by itself: its exit status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                return exit;
            }
            assert!(
                Instant::now() < deadline,
                "mcp-oauth still running after {DEADLINE:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20)); // poll interval, bounded above
        }
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

    /// The bearer token of the JSON line (`gateway`, `dev`).
    pub fn token(&self) -> String {
        self.field("token")
    }

    /// How many lines of the log contain every one of `parts`.
    pub fn logged(&self, parts: &[&str]) -> usize {
        self.log_text()
            .lines()
            .filter(|line| parts.iter().all(|p| line.contains(p)))
            .count()
    }

    /// Polls the protected resource metadata at `<issuer>/.well-known/oauth-protected-resource/mcp`
    /// until it answers (up to the deadline); the process exiting meanwhile fails the test.
    pub async fn ready(&mut self) {
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

/// `mcp-oauth dev --port PORT --json --data-dir <tmp>/data`, ready: a restart on the port of
/// an earlier server (same issuer). The port may linger a moment after that server stopped:
/// the start is retried until the deadline.
pub async fn dev_on_port(tmp: &TempDir, name: &str, port: u16) -> Served {
    let data = tmp.data();
    let port = port.to_string();
    let args = [
        "dev",
        "--port",
        &port,
        "--json",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let deadline = Instant::now() + DEADLINE;
    loop {
        match Served::launch(tmp, name, &args, &[]).await {
            Ok(mut served) => {
                served.ready().await;
                return served;
            }
            Err(why) => assert!(
                Instant::now() < deadline,
                "port {port} did not come free: {why}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval, bounded above
    }
}

/// `mcp-oauth serve --mcp-url http://127.0.0.1:<free port>/mcp ARGS`, ready (see
/// [`Served::start_quiet`]). The port is free when picked; `serve` binds it a moment later.
pub async fn serve(tmp: &TempDir, name: &str, args: &[&str]) -> Served {
    let base = format!("http://127.0.0.1:{}", free_port());
    let mcp_url = format!("{base}/mcp");
    let mut all = vec!["serve", "--mcp-url", &mcp_url];
    all.extend_from_slice(args);
    Served::start_quiet(tmp, name, &all, None, &base, &mcp_url).await
}
