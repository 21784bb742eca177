//! The stdio upstream: one child process shared by every client session.
//!
//! Why one file of this size: the child's lifecycle, the id rewriting both ways and the
//! routing of the child's own requests share one table of requests in flight; keeping them
//! together keeps that table's invariants in one place. Process start-up and shutdown are the
//! part that would move out first.
//!
//! Ids are rewritten: each request sent to the child gets a number of the gateway's own, and
//! the response is mapped back to the client session and id it came from; progress tokens
//! become that number too, and `notifications/cancelled` is translated both ways. Requests
//! the child sends (sampling, elicitation, roots) get a gateway id and go to the client
//! session that has requests in flight, on the stream of its latest request.

use std::collections::HashMap;
use std::process::Stdio as Pipe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};

use super::StdioConfig;
use crate::error::GatewayError;
use crate::jsonrpc::{self, Kind, Message};
use crate::sessions::Sessions;

/// The protocol version the gateway asks the child for.
const CHILD_PROTOCOL_VERSION: &str = "2025-11-25";
/// Largest line (one message) read from the child.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Longest stderr line logged; the rest of the line is cut.
const STDERR_LINE: usize = 2048;
/// Stderr bytes logged per child process; more is read and dropped.
const STDERR_BUDGET: usize = 1024 * 1024;
/// Messages buffered per request before progress notifications are dropped.
const FRAMES: usize = 32;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long was healthy: the next restart starts from the shortest backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// Requests from the child waiting for a client's answer; more are refused (a child, or a
/// client that never answers, cannot grow the table without bound).
const MAX_SERVER_REQUESTS: usize = 1024;
/// The session name of the gateway's own requests (`initialize`).
const INTERNAL: &str = "";

/// One message for a client request's answer stream.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) bytes: Bytes,
    /// The final response: the stream ends after it.
    pub(crate) last: bool,
}

struct Pending {
    session: Arc<str>,
    client_id: Box<str>,
    /// The client's progress token (JSON text), when the request carried one.
    progress: Option<Box<str>>,
    tx: mpsc::Sender<Frame>,
}

struct ServerRequest {
    session: Arc<str>,
    /// The child's id for the request (JSON text).
    upstream_id: Box<str>,
}

#[derive(Default)]
struct Routes {
    pending: HashMap<u64, Pending>,
    by_client: HashMap<(Arc<str>, Box<str>), u64>,
    server_requests: HashMap<u64, ServerRequest>,
}

/// A running child, ready for requests.
pub(crate) struct Running {
    stdin: mpsc::Sender<Bytes>,
    /// The child's `initialize` result (an object).
    pub(crate) init: serde_json::Map<String, serde_json::Value>,
    pub(crate) pid: Option<u32>,
}

struct Shared {
    config: StdioConfig,
    sessions: Sessions,
    state: watch::Sender<Option<Arc<Running>>>,
    routes: Mutex<Routes>,
    next: AtomicU64,
    starts: AtomicU64,
}

impl Shared {
    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// The stdio upstream; dropping it stops the child (its whole process group).
pub(crate) struct Stdio {
    shared: Arc<Shared>,
    supervisor: tokio::task::JoinHandle<()>,
}

impl Drop for Stdio {
    fn drop(&mut self) {
        // Dropping the supervisor's future drops the child's group guard, which kills it.
        self.supervisor.abort();
    }
}

impl Stdio {
    /// Starts the supervisor (inside a Tokio runtime); the child starts at once.
    /// `probe`: the metrics and this upstream's number in them, where its children are counted.
    pub(crate) fn start(
        config: StdioConfig,
        sessions: Sessions,
        probe: (Arc<crate::metrics::Metrics>, usize),
    ) -> Self {
        let (state, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            config,
            sessions,
            state,
            routes: Mutex::new(Routes::default()),
            next: AtomicU64::new(1),
            starts: AtomicU64::new(0),
        });
        let supervisor = tokio::spawn(supervise(shared.clone(), probe));
        Self { shared, supervisor }
    }

    /// Waits until a child is initialized.
    pub(crate) async fn ready(&self, timeout: Duration) -> Result<Arc<Running>, GatewayError> {
        // The usual case, without a subscription: the child is running.
        if let Some(running) = self.shared.state.borrow().as_ref() {
            return Ok(running.clone());
        }
        let mut rx = self.shared.state.subscribe();
        let wait = rx.wait_for(Option::is_some);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(state)) => state.clone().ok_or_else(not_ready),
            _ => Err(not_ready()),
        }
    }

    /// The child's process id, when one runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.shared.state.borrow().as_ref().and_then(|r| r.pid)
    }

    /// How many times a child was started.
    pub(crate) fn starts(&self) -> u64 {
        self.shared.starts.load(Ordering::Relaxed)
    }

    /// Sends a client request; the answer (notifications and server requests for it, then the
    /// response, ids mapped back) arrives on the receiver. `identity` (identity forwarding on):
    /// the caller's token for `params._meta`, where any value the client put is removed.
    pub(crate) async fn request(
        &self,
        session: &Arc<str>,
        message: &Message<'_>,
        timeout: Duration,
        identity: Option<&Option<String>>,
    ) -> Result<mpsc::Receiver<Frame>, GatewayError> {
        let running = self.ready(timeout).await?;
        let (Some(id), Some(method)) = (message.id, message.method.as_deref()) else {
            return Err(GatewayError::Protocol("not a request".into()));
        };
        let n = self.shared.next_id();
        let number = n.to_string();
        let mut progress = None;
        let replaced;
        let mut params = message.params.map(RawValue::get);
        // A cheap look before parsing: most requests carry no progress token.
        if let Some(raw) = message.params.filter(|p| p.get().contains("progressToken"))
            && let Some((new_params, original)) = jsonrpc::replace_progress_token(raw, &number)
        {
            replaced = new_params;
            params = Some(&replaced);
            progress = Some(original.into_boxed_str());
        }
        // The caller's identity token, or (identity forwarding off) no value the client made
        // up: a cheap look first, most requests carry no such member.
        let with_identity;
        let token = match identity {
            Some(token) => Some(token.as_deref()),
            None if params.is_some_and(|p| p.contains(crate::identity::META_KEY)) => Some(None),
            None => None,
        };
        if let Some(token) = token {
            with_identity = jsonrpc::with_meta(params, crate::identity::META_KEY, token)
                .ok_or_else(|| {
                    GatewayError::Protocol("the request's params or _meta are not an object".into())
                })?;
            params = Some(&with_identity);
        }
        let bytes = jsonrpc::encode_request(Some(&number), method, params);
        let (tx, rx) = mpsc::channel(FRAMES);
        let client_id: Box<str> = id.get().into();
        {
            let mut routes = self.shared.routes();
            routes
                .by_client
                .insert((session.clone(), client_id.clone()), n);
            routes.pending.insert(
                n,
                Pending {
                    session: session.clone(),
                    client_id,
                    progress,
                    tx,
                },
            );
        }
        if running.stdin.send(bytes).await.is_err() {
            self.forget_request(n);
            return Err(not_ready());
        }
        Ok(rx)
    }

    fn forget_request(&self, n: u64) {
        let mut routes = self.shared.routes();
        if let Some(p) = routes.pending.remove(&n) {
            routes.by_client.remove(&(p.session, p.client_id));
        }
    }

    /// A client notification: `initialized` is the gateway's own business (the child was
    /// initialized once), `cancelled` is translated to the child's id, the rest is forwarded.
    pub(crate) async fn notify(
        &self,
        session: &Arc<str>,
        message: &Message<'_>,
    ) -> Result<(), GatewayError> {
        let method = message.method.as_deref().unwrap_or_default();
        let bytes = match method {
            "notifications/initialized" => return Ok(()),
            "notifications/cancelled" => {
                let Some(params) = message.params else {
                    return Ok(());
                };
                let Some(request_id) = jsonrpc::member(params, "requestId") else {
                    return Ok(());
                };
                let n = {
                    let mut routes = self.shared.routes();
                    let key = (session.clone(), Box::<str>::from(request_id.get()));
                    let Some(n) = routes.by_client.remove(&key) else {
                        return Ok(());
                    };
                    // The client gave up on it: the child's late answer is dropped.
                    routes.pending.remove(&n);
                    n
                };
                let mut map: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(params.get()).unwrap_or_default();
                map.insert("requestId".into(), n.into());
                let params = serde_json::Value::Object(map).to_string();
                jsonrpc::encode_request(None, method, Some(&params))
            }
            _ => jsonrpc::encode_request(None, method, message.params.map(RawValue::get)),
        };
        self.send(bytes).await
    }

    /// A client's response to a request the child sent: mapped back to the child's id. A
    /// response for a request that was not sent to this session is dropped.
    pub(crate) async fn respond(
        &self,
        session: &Arc<str>,
        message: &Message<'_>,
    ) -> Result<(), GatewayError> {
        let Some(k) = message.id.and_then(|id| id.get().parse::<u64>().ok()) else {
            return Ok(());
        };
        let upstream_id = {
            let mut routes = self.shared.routes();
            match routes.server_requests.get(&k) {
                Some(r) if r.session == *session => {
                    routes.server_requests.remove(&k).map(|r| r.upstream_id)
                }
                _ => None,
            }
        };
        let Some(upstream_id) = upstream_id else {
            tracing::debug!(target: "mcp_oauth_gateway::upstream", "a response to no request of this session was dropped");
            return Ok(());
        };
        let bytes = jsonrpc::encode_response(
            &upstream_id,
            message.result.map(RawValue::get),
            message.error.map(RawValue::get),
        );
        self.send(bytes).await
    }

    async fn send(&self, bytes: Bytes) -> Result<(), GatewayError> {
        let running = self.ready(Duration::from_secs(5)).await?;
        running.stdin.send(bytes).await.map_err(|_| not_ready())
    }

    /// Forgets a closed session's requests.
    pub(crate) fn close_session(&self, session: &str) {
        let mut routes = self.shared.routes();
        routes.pending.retain(|_, p| &*p.session != session);
        routes.by_client.retain(|(s, _), _| &**s != session);
        routes.server_requests.retain(|_, r| &*r.session != session);
    }
}

fn not_ready() -> GatewayError {
    GatewayError::Unavailable("the upstream process is not running (starting or restarting)".into())
}

/// Starts the child, again and again.
async fn supervise(shared: Arc<Shared>, (metrics, index): (Arc<crate::metrics::Metrics>, usize)) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let again = shared.starts.fetch_add(1, Ordering::Relaxed) > 0;
        // Counted while it runs; dropped with the supervisor's future when the upstream stops.
        let process = metrics.process_started(index, again);
        let ended = run_child(&shared).await;
        drop(process);
        match ended {
            Ok(status) => {
                tracing::warn!(target: "mcp_oauth_gateway::upstream", %status, "the upstream process exited; restarting it")
            }
            Err(err) => {
                tracing::error!(target: "mcp_oauth_gateway::upstream", error = %err, "the upstream process failed; restarting it")
            }
        }
        shared.state.send_replace(None);
        fail_all(&shared);
        if started.elapsed() >= HEALTHY_RUN {
            backoff = BACKOFF_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Every request in flight gets an error: the child that had it is gone.
fn fail_all(shared: &Shared) {
    let pending: Vec<Pending> = {
        let mut routes = shared.routes();
        routes.by_client.clear();
        routes.server_requests.clear();
        routes.pending.drain().map(|(_, p)| p).collect()
    };
    for p in pending {
        let bytes = jsonrpc::error_response(
            Some(&p.client_id),
            jsonrpc::INTERNAL_ERROR,
            "the upstream process exited before answering; it is being restarted",
        );
        let _ = p.tx.try_send(Frame { bytes, last: true });
    }
}

/// Kills the child's process group when dropped.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok())
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            // The child leads its group (process_group(0)): this ends it and what it spawned.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

fn spawn(config: &StdioConfig) -> std::io::Result<Child> {
    let mut command = Command::new(&config.program);
    command
        .args(&config.args)
        .env_clear()
        .envs(config.child_env(std::env::vars_os()))
        .stdin(Pipe::piped())
        .stdout(Pipe::piped())
        .stderr(Pipe::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    if let Some(dir) = &config.cwd {
        command.current_dir(dir);
    }
    command.spawn()
}

/// Runs one child until it exits: starts it, initializes it, routes its messages.
async fn run_child(shared: &Arc<Shared>) -> Result<std::process::ExitStatus, GatewayError> {
    let config = &shared.config;
    let mut child = spawn(config).map_err(|e| {
        GatewayError::Unavailable(format!(
            "cannot start {}: {e}",
            config.program.to_string_lossy()
        ))
    })?;
    let _group = GroupGuard(child.id());
    let pid = child.id();
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(GatewayError::Unavailable("the child has no pipes".into()));
    };
    tracing::info!(target: "mcp_oauth_gateway::upstream", pid, program = %config.program.to_string_lossy(), "upstream process started");
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(256);
    let mut stdout = BufReader::with_capacity(64 * 1024, stdout);
    let result = tokio::select! {
        r = write_loop(stdin, stdin_rx) => r.map(|()| None),
        () = log_stderr(stderr) => Ok(None),
        r = read_loop(shared, &mut stdout, &stdin_tx) => r.map(|()| None),
        r = initialize(shared, &stdin_tx, pid) => r.map(|()| None),
        status = child.wait() => status.map(Some).map_err(|e| GatewayError::Unavailable(e.to_string())),
    };
    match result {
        Ok(Some(status)) => Ok(status),
        Ok(None) => {
            // stdout or stdin closed: the child is ending; make sure it does.
            drop(stdin_tx);
            let _ = child.start_kill();
            child
                .wait()
                .await
                .map_err(|e| GatewayError::Unavailable(e.to_string()))
        }
        Err(err) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(err)
        }
    }
}

async fn write_loop(
    mut stdin: ChildStdin,
    mut rx: mpsc::Receiver<Bytes>,
) -> Result<(), GatewayError> {
    while let Some(bytes) = rx.recv().await {
        let write = async {
            stdin.write_all(&bytes).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        };
        if let Err(e) = write.await {
            return Err(GatewayError::Unavailable(format!(
                "writing to the child: {e}"
            )));
        }
    }
    Ok(())
}

/// Logs the child's stderr, cut per line and per process; never stops reading (a full pipe
/// would block the child).
async fn log_stderr(stderr: tokio::process::ChildStderr) {
    let mut reader = BufReader::new(stderr);
    let mut logged = 0usize;
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_capped(&mut reader, &mut line, STDERR_LINE).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if logged >= STDERR_BUDGET {
            continue;
        }
        logged += line.len();
        let text = String::from_utf8_lossy(&line);
        tracing::info!(target: "mcp_oauth_gateway::upstream", stderr = %text.trim_end());
        if logged >= STDERR_BUDGET {
            tracing::warn!(target: "mcp_oauth_gateway::upstream", "the upstream process wrote more than 1 MiB to stderr; the rest of its output is not logged");
        }
    }
}

/// Reads one line (without the newline) into `out`, keeping at most `cap` bytes of it;
/// returns the bytes consumed (0 at end of input).
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    out: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(consumed);
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (available.get(..i).unwrap_or_default(), Some(i + 1)),
            None => (available, None),
        };
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        consumed += used;
        if done.is_some() {
            return Ok(consumed);
        }
    }
}

/// Reads the child's messages and routes them, until its stdout closes.
async fn read_loop<R: AsyncBufRead + Unpin>(
    shared: &Arc<Shared>,
    stdout: &mut R,
    stdin: &mpsc::Sender<Bytes>,
) -> Result<(), GatewayError> {
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let n = read_line_capped(stdout, &mut line, MAX_LINE + 1)
            .await
            .map_err(|e| GatewayError::Unavailable(format!("reading from the child: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            return Err(GatewayError::Protocol(
                "the child wrote a message larger than 16 MiB".into(),
            ));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match jsonrpc::parse(&line) {
            Ok(message) => route(shared, &message, stdin).await,
            Err(err) => {
                tracing::warn!(target: "mcp_oauth_gateway::upstream", error = %err, "the child wrote a line that is not a JSON-RPC message; ignored")
            }
        }
    }
}

/// Routes one message from the child.
async fn route(shared: &Arc<Shared>, message: &Message<'_>, stdin: &mpsc::Sender<Bytes>) {
    match message.kind {
        Kind::Response => {
            let Some(n) = message.id.and_then(|id| id.get().parse::<u64>().ok()) else {
                return;
            };
            let pending = {
                let mut routes = shared.routes();
                let pending = routes.pending.remove(&n);
                if let Some(p) = &pending {
                    routes
                        .by_client
                        .remove(&(p.session.clone(), p.client_id.clone()));
                }
                pending
            };
            let Some(p) = pending else {
                return;
            };
            let bytes = jsonrpc::encode_response(
                &p.client_id,
                message.result.map(RawValue::get),
                message.error.map(RawValue::get),
            );
            let _ = p.tx.send(Frame { bytes, last: true }).await;
        }
        Kind::Notification => notification(shared, message),
        Kind::Request => server_request(shared, message, stdin).await,
    }
}

fn notification(shared: &Arc<Shared>, message: &Message<'_>) {
    let method = message.method.as_deref().unwrap_or_default();
    let params = message.params;
    match method {
        "notifications/progress" => {
            let Some(n) = params
                .and_then(|p| jsonrpc::member(p, "progressToken"))
                .and_then(|t| t.get().parse::<u64>().ok())
            else {
                return;
            };
            let routes = shared.routes();
            let Some(p) = routes.pending.get(&n) else {
                return;
            };
            let Some(original) = &p.progress else {
                return;
            };
            let Some(params) = params.and_then(|p| with_member(p, "progressToken", original))
            else {
                return;
            };
            // Progress is lossy: a full stream drops it rather than stall the child.
            let _ = p.tx.try_send(Frame {
                bytes: jsonrpc::encode_request(None, method, Some(&params)),
                last: false,
            });
        }
        "notifications/cancelled" => {
            let Some(id) = params.and_then(|p| jsonrpc::member(p, "requestId")) else {
                return;
            };
            let target = {
                let mut routes = shared.routes();
                let k = routes
                    .server_requests
                    .iter()
                    .find(|(_, r)| *r.upstream_id == *id.get())
                    .map(|(k, _)| *k);
                k.and_then(|k| routes.server_requests.remove(&k).map(|r| (k, r.session)))
            };
            let Some((k, session)) = target else {
                return;
            };
            let Some(params) = params.and_then(|p| with_member(p, "requestId", &k.to_string()))
            else {
                return;
            };
            deliver(
                shared,
                &session,
                jsonrpc::encode_request(None, method, Some(&params)),
            );
        }
        m if m.ends_with("/list_changed") => {
            let bytes = jsonrpc::encode_request(None, method, params.map(RawValue::get));
            for session in shared.sessions.all() {
                session.push(bytes.clone());
            }
        }
        _ => {
            // Logging and resource updates of a shared child: delivered only when one client
            // session is active, never guessed between users.
            match active_session(shared) {
                Some(session) => {
                    deliver(
                        shared,
                        &session,
                        jsonrpc::encode_request(None, method, params.map(RawValue::get)),
                    );
                }
                None => {
                    tracing::debug!(target: "mcp_oauth_gateway::upstream", method, "a notification of the shared child has no single client session to go to; dropped")
                }
            }
        }
    }
}

/// The one client session with requests in flight; else the one session there is.
fn active_session(shared: &Shared) -> Option<Arc<str>> {
    let routes = shared.routes();
    let mut sessions = routes
        .pending
        .values()
        .map(|p| &p.session)
        .filter(|s| &***s != INTERNAL);
    match sessions.next() {
        Some(first) => sessions.all(|s| s == first).then(|| first.clone()),
        None => {
            drop(routes);
            shared.sessions.only().map(|s| s.id.clone())
        }
    }
}

/// Sends `bytes` to a session: on the stream of its latest request in flight, else on its GET
/// stream. False when it has neither.
fn deliver(shared: &Shared, session: &Arc<str>, bytes: Bytes) -> bool {
    let latest = {
        let routes = shared.routes();
        routes
            .pending
            .iter()
            .filter(|(_, p)| p.session == *session)
            .max_by_key(|(n, _)| **n)
            .map(|(_, p)| p.tx.clone())
    };
    if let Some(tx) = latest
        && tx
            .try_send(Frame {
                bytes: bytes.clone(),
                last: false,
            })
            .is_ok()
    {
        return true;
    }
    shared.sessions.find(session).is_some_and(|s| s.push(bytes))
}

async fn server_request(shared: &Arc<Shared>, message: &Message<'_>, stdin: &mpsc::Sender<Bytes>) {
    let (Some(id), Some(method)) = (message.id, message.method.as_deref()) else {
        return;
    };
    if method == "ping" {
        let _ = stdin
            .send(jsonrpc::encode_response(id.get(), Some("{}"), None))
            .await;
        return;
    }
    let refuse = |why: &str| jsonrpc::error_response(Some(id.get()), jsonrpc::INTERNAL_ERROR, why);
    let Some(session) = active_session(shared) else {
        let _ = stdin
            .send(refuse(
                "the gateway cannot tell which client this request is for: several clients share this server",
            ))
            .await;
        return;
    };
    let k = shared.next_id();
    let full = {
        let mut routes = shared.routes();
        let full = routes.server_requests.len() >= MAX_SERVER_REQUESTS;
        if !full {
            routes.server_requests.insert(
                k,
                ServerRequest {
                    session: session.clone(),
                    upstream_id: id.get().into(),
                },
            );
        }
        full
    };
    if full {
        let _ = stdin
            .send(refuse(
                "too many requests to clients are waiting for an answer",
            ))
            .await;
        return;
    }
    let bytes = jsonrpc::encode_request(
        Some(&k.to_string()),
        method,
        message.params.map(RawValue::get),
    );
    if !deliver(shared, &session, bytes) {
        shared.routes().server_requests.remove(&k);
        let _ = stdin
            .send(refuse(
                "the client session has no open stream for this request",
            ))
            .await;
    }
}

/// `object` (JSON text) with `name` set to `value` (JSON text).
fn with_member(object: &RawValue, name: &str, value: &str) -> Option<String> {
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(object.get()).ok()?;
    map.insert(name.to_owned(), serde_json::from_str(value).ok()?);
    Some(serde_json::Value::Object(map).to_string())
}

/// Sends `initialize` and `notifications/initialized`, then publishes the running child.
async fn initialize(
    shared: &Arc<Shared>,
    stdin: &mpsc::Sender<Bytes>,
    pid: Option<u32>,
) -> Result<(), GatewayError> {
    let n = shared.next_id();
    let (tx, mut rx) = mpsc::channel(FRAMES);
    shared.routes().pending.insert(
        n,
        Pending {
            session: Arc::from(INTERNAL),
            client_id: n.to_string().into(),
            progress: None,
            tx,
        },
    );
    let params = serde_json::json!({
        "protocolVersion": CHILD_PROTOCOL_VERSION,
        "capabilities": { "roots": { "listChanged": true }, "sampling": {}, "elicitation": {} },
        "clientInfo": { "name": "mcp-oauth-gateway", "version": env!("CARGO_PKG_VERSION") },
    })
    .to_string();
    stdin
        .send(jsonrpc::encode_request(
            Some(&n.to_string()),
            "initialize",
            Some(&params),
        ))
        .await
        .map_err(|_| not_ready())?;
    let answer = async {
        loop {
            match rx.recv().await {
                Some(frame) if frame.last => return Some(frame.bytes),
                Some(_) => continue,
                None => return None,
            }
        }
    };
    let bytes = tokio::time::timeout(shared.config.init_timeout, answer)
        .await
        .map_err(|_| {
            GatewayError::Unavailable("the child did not answer initialize in time".into())
        })?
        .ok_or_else(not_ready)?;
    let message = jsonrpc::parse(&bytes).map_err(|e| GatewayError::Protocol(e.to_string()))?;
    let init: serde_json::Map<String, serde_json::Value> = message
        .result
        .and_then(|r| serde_json::from_str(r.get()).ok())
        .ok_or_else(|| {
            GatewayError::Protocol(format!(
                "the child refused initialize: {}",
                message.error.map(RawValue::get).unwrap_or("no result")
            ))
        })?;
    stdin
        .send(jsonrpc::encode_request(
            None,
            "notifications/initialized",
            None,
        ))
        .await
        .map_err(|_| not_ready())?;
    tracing::info!(target: "mcp_oauth_gateway::upstream", pid, version = ?init.get("protocolVersion"), "upstream process initialized");
    shared.state.send_replace(Some(Arc::new(Running {
        stdin: stdin.clone(),
        init,
        pid,
    })));
    std::future::pending::<()>().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_cut_at_the_cap_and_read_to_their_end() {
        let input: &[u8] = b"0123456789\nab\n\nlast";
        let mut reader = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        assert_eq!(
            read_line_capped(&mut reader, &mut out, 4)
                .await
                .expect("read"),
            11
        );
        assert_eq!(out, b"0123");
        out.clear();
        assert_eq!(
            read_line_capped(&mut reader, &mut out, 4)
                .await
                .expect("read"),
            3
        );
        assert_eq!(out, b"ab");
        out.clear();
        assert_eq!(
            read_line_capped(&mut reader, &mut out, 4)
                .await
                .expect("read"),
            1
        );
        assert!(out.is_empty());
        out.clear();
        assert_eq!(
            read_line_capped(&mut reader, &mut out, 4)
                .await
                .expect("read"),
            4
        );
        assert_eq!(out, b"last");
        out.clear();
        assert_eq!(
            read_line_capped(&mut reader, &mut out, 4)
                .await
                .expect("read"),
            0
        );
    }
}
