//! Helpers shared by the integration tests: serving an app or an `McpServer` on 127.0.0.1
//! until stopped, the RFC 7636 PKCE example, carrying cookies from one response to the next request, and polling until a condition
//! holds.
//!
//! Each test file is a crate of its own and uses only a part of this module, hence the
//! `dead_code` allowance.

#![allow(dead_code)]
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests panic on failure

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
#[cfg(feature = "rmcp")]
use mcp_oauth::server::{McpServer, NoArgs, Tool, ToolContext, ToolError};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Liveness bound for anything the tests wait for.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// The code verifier of RFC 7636 appendix B.
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// The S256 challenge of [`VERIFIER`] (RFC 7636 appendix B).
pub(crate) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The S256 code challenge of `verifier`: `BASE64URL(SHA256(verifier))`.
pub(crate) fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}

/// A server on its own task, serving a bound listener until [`Served::stop`].
///
/// Dropping it without `stop` starts the same graceful shutdown (the signal's sender goes
/// away, which ends the server's wait for it) but does not wait for it to finish.
pub(crate) struct Served {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Served {
    /// Serves `app`, with `ConnectInfo<SocketAddr>` as `McpServer::serve` does (an extension
    /// that routes which do not read it never see).
    pub(crate) fn app(listener: TcpListener, app: axum::Router) -> Self {
        Self::spawn(|stopped| async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
        })
    }

    /// Serves `server` through its own `serve`; an error from it panics the task, which
    /// [`Served::stop`] passes on.
    #[cfg(feature = "rmcp")]
    pub(crate) fn mcp(listener: TcpListener, server: McpServer) -> Self {
        Self::spawn(|stopped| async move {
            server
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        })
    }

    fn spawn<F>(serve: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Self {
            stop,
            task: tokio::spawn(serve(stopped)),
        }
    }

    /// Shuts the server down gracefully and waits for it; panics if its task panicked.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("server task");
    }
}

/// A `whoami` tool: the caller's subject as `{"sub": ..}`; an error without one.
#[cfg(feature = "rmcp")]
pub(crate) fn whoami() -> Tool {
    Tool::new(
        "whoami",
        "Who is calling",
        |_: NoArgs, ctx: ToolContext| async move {
            let auth = ctx.require_auth()?;
            Ok::<_, ToolError>(serde_json::json!({ "sub": auth.subject() }))
        },
    )
}

/// Keeps every cookie `res` sets in `jar`, as a browser would.
pub(crate) fn keep_cookies(res: &reqwest::Response, jar: &mut HashMap<String, String>) {
    for value in res.headers().get_all("set-cookie") {
        let pair = value.to_str().unwrap().split(';').next().unwrap();
        let (k, v) = pair.split_once('=').unwrap();
        jar.insert(k.to_owned(), v.to_owned());
    }
}

/// The `Cookie` header that sends every cookie of `jar`.
pub(crate) fn cookie_header(jar: &HashMap<String, String>) -> String {
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Polls `check` until it holds; fails after [`DEADLINE`].
pub(crate) async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}
