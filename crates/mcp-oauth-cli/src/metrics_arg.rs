//! `--metrics ADDR` of `dev`, `serve` and `proxy`: Prometheus metrics on a listener of their
//! own, never on the public one.

use clap::Args;
use mcp_oauth::metrics::Metrics;

use crate::listen::is_loopback;

/// The metrics listener option.
#[derive(Debug, Clone, Args)]
pub(crate) struct MetricsArgs {
    /// Serve Prometheus metrics (GET /metrics) on this address, a listener of its own,
    /// without authentication: keep it on loopback (127.0.0.1:9464) or a network only the
    /// scraper reaches. The MCP listener never serves /metrics.
    #[arg(long = "metrics", value_name = "ADDR", env = "MCP_OAUTH_METRICS")]
    pub(crate) addr: Option<String>,
}

impl MetricsArgs {
    /// Binds the metrics listener and serves it in the background; returns the registry and
    /// the URL of `/metrics`, `None` without `--metrics`.
    pub(crate) async fn start(
        &self,
    ) -> Result<Option<(Metrics, String)>, Box<dyn std::error::Error>> {
        let Some(addr) = self
            .addr
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
        else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--metrics {addr}: cannot listen there: {e}"))?;
        let local = listener.local_addr()?;
        if !is_loopback(addr) {
            eprintln!(
                "warning: --metrics {addr} is reachable from the network and has no authentication; prefer 127.0.0.1:PORT"
            );
        }
        let metrics = Metrics::new();
        let router = metrics.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
        Ok(Some((metrics, format!("http://{local}/metrics"))))
    }
}
