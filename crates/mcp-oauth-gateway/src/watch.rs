//! The gateway listening to its own upstreams: a session of its own, without a caller, whose
//! GET stream carries what the upstreams announce (`notifications/*/list_changed`).

use std::time::Duration;

use ::http::Method;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use crate::Gateway;
use crate::gate::ListKind;

/// How long to wait before opening the watch again after it ended or failed.
const AGAIN: Duration = Duration::from_secs(1);

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcp-oauth-gateway-watch","version":"1"}}}"#;

/// The list a `notifications/…/list_changed` method names.
fn changed_list(method: &str) -> Option<ListKind> {
    Some(match method {
        "notifications/tools/list_changed" => ListKind::Tools,
        "notifications/prompts/list_changed" => ListKind::Prompts,
        "notifications/resources/list_changed" => ListKind::Resources,
        _ => return None,
    })
}

/// Sends each list change to `tx` until it is dropped.
pub(crate) async fn list_changes(gateway: Gateway, tx: mpsc::Sender<ListKind>) {
    while !tx.is_closed() {
        if let Some(session) = open(&gateway).await {
            follow(&gateway, &session, &tx).await;
            let _ = gateway
                .internal(Method::DELETE, Some(&session), String::new())
                .await;
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(AGAIN) => {}
        }
    }
}

/// A session of the gateway's own.
async fn open(gateway: &Gateway) -> Option<String> {
    let response = gateway
        .internal(Method::POST, None, INITIALIZE.to_owned())
        .await
        .ok()?;
    let session = response
        .headers()
        .get("mcp-session-id")?
        .to_str()
        .ok()?
        .to_owned();
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let _ = gateway
        .internal(Method::POST, Some(&session), initialized.to_owned())
        .await;
    Some(session)
}

/// Reads the session's GET stream until it ends or `tx` is dropped.
async fn follow(gateway: &Gateway, session: &str, tx: &mpsc::Sender<ListKind>) {
    let Ok(response) = gateway
        .internal(Method::GET, Some(session), String::new())
        .await
    else {
        return;
    };
    if !response.status().is_success() {
        tracing::debug!(target: "mcp_oauth_gateway::watch", status = %response.status(), "no GET stream to watch");
        return;
    }
    let mut events = std::pin::pin!(crate::sse::sse_events(response.into_body()));
    loop {
        let event = tokio::select! {
            () = tx.closed() => return,
            event = events.next() => event,
        };
        let Some(Ok(event)) = event else {
            return;
        };
        for data in crate::sse::event_data(&String::from_utf8_lossy(&event)) {
            let method = serde_json::from_str::<serde_json::Value>(&data)
                .ok()
                .and_then(|m| m.get("method")?.as_str().map(str::to_owned));
            if let Some(kind) = method.as_deref().and_then(changed_list)
                && tx.send(kind).await.is_err()
            {
                return;
            }
        }
    }
}
