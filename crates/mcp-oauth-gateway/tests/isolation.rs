//! `per-user` isolation: each user gets a stdio child of their own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::time::Duration;

use mcp_oauth_gateway::Isolation;
use serde_json::json;
use support::*;

/// Whether process `pid` has ended (gone, or a zombie waiting to be reaped).
#[cfg(target_os = "linux")]
fn ended(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn each_user_gets_a_child_of_their_own() {
    let h = Harness::start(stdio_upstream().isolation(Isolation::PerUser)).await;
    assert_eq!(h.gateway.upstream_pid(), None, "no shared child");
    assert_eq!(h.gateway.per_user_children(), 0, "children start on demand");
    let alice = h.client("alice").await;
    let bob = h.client("bob").await;
    let alice_pid = call(&alice, "pid", json!({})).await.unwrap();
    let bob_pid = call(&bob, "pid", json!({})).await.unwrap();
    assert_ne!(alice_pid, bob_pid);
    assert_eq!(call(&alice, "pid", json!({})).await.unwrap(), alice_pid);
    let again = h.client("alice").await;
    assert_eq!(
        call(&again, "pid", json!({})).await.unwrap(),
        alice_pid,
        "a second session of the same user uses the same child"
    );
    assert_eq!(h.gateway.per_user_children(), 2);
    // Sampling from a user's child reaches that user.
    assert_eq!(
        call(&bob, "ask_llm", json!({"question": "q"}))
            .await
            .unwrap(),
        "sampled by bob"
    );
    // Another user's session id is unknown in the caller's child.
    let session = raw_session(&h.url, &h.token("alice")).await;
    let stolen = post(
        &h.url,
        Some(&h.token("bob")),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(stolen.status(), 404);
    for client in [alice, bob, again] {
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn an_idle_users_child_is_stopped() {
    let h = Harness::start_with(stdio_upstream().isolation(Isolation::PerUser), |b| {
        b.per_user_idle(Duration::from_secs(1))
    })
    .await;
    let alice = h.client("alice").await;
    let pid = call(&alice, "pid", json!({})).await.unwrap();
    alice.cancel().await.unwrap();
    // Nobody asks the gateway anything meanwhile: the idle child is stopped on its own.
    #[cfg(target_os = "linux")]
    poll("the idle child's process to end", || async {
        ended(&pid).then_some(())
    })
    .await;
    poll("the idle child to be dropped", || async {
        (h.gateway.per_user_children() == 0).then_some(())
    })
    .await;
    let alice = h.client("alice").await;
    let next = call(&alice, "pid", json!({})).await.unwrap();
    assert_ne!(next, pid, "a new child for the returning user");
    alice.cancel().await.unwrap();
}

#[tokio::test]
async fn the_cap_stops_the_least_recently_active_users_child() {
    let h = Harness::start_with(stdio_upstream().isolation(Isolation::PerUser), |b| {
        b.per_user_max(2)
    })
    .await;
    let alice = h.client("alice").await;
    let bob = h.client("bob").await;
    let alice_pid = call(&alice, "pid", json!({})).await.unwrap();
    let bob_pid = call(&bob, "pid", json!({})).await.unwrap();
    assert_eq!(h.gateway.per_user_children(), 2);
    // Alice is now the least recently active of the two: a third user's child replaces hers.
    let carol = h.client("carol").await;
    let carol_pid = call(&carol, "pid", json!({})).await.unwrap();
    poll("the cap to be applied", || async {
        (h.gateway.per_user_children() == 2).then_some(())
    })
    .await;
    #[cfg(target_os = "linux")]
    poll("alice's child's process to end", || async {
        ended(&alice_pid).then_some(())
    })
    .await;
    // Bob's and carol's children kept running.
    assert_eq!(call(&bob, "pid", json!({})).await.unwrap(), bob_pid);
    assert_eq!(call(&carol, "pid", json!({})).await.unwrap(), carol_pid);
    assert_eq!(h.gateway.per_user_children(), 2);
    // Alice's session ended with her child; she starts again with a new one.
    let again = h.client("alice").await;
    let next = call(&again, "pid", json!({})).await.unwrap();
    assert_ne!(next, alice_pid, "a new child for the returning user");
    poll("the cap after alice's return", || async {
        (h.gateway.per_user_children() == 2).then_some(())
    })
    .await;
    for client in [bob, carol, again] {
        client.cancel().await.unwrap();
    }
    drop(alice);
}
