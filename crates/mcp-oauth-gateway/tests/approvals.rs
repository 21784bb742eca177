//! Human approval through the gateway (`mcp_oauth_gateway::approve`): a call that needs it is
//! answered with a signed link (a URL-mode elicitation in a -32042 error); the approver signs
//! in on the gateway's page and approves or refuses; the identical call then passes once, and
//! only it. Refused, expired, replayed, changed-argument and other-user cases are refused.
//! What the waiting call gets follows what the client declared: the error and, once
//! answered, `notifications/elicitation/complete` for a client with URL-mode elicitation; a
//! tool error result naming the link for any other.

#![allow(clippy::expect_used, clippy::indexing_slicing)] // test helpers outside #[test] functions

mod browser;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use browser::{Browser, ORIGIN};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use mcp_oauth::Auth;
use mcp_oauth::audit::{AuditLog, MemorySink};
use mcp_oauth::auth_server::AuthServer;
use mcp_oauth::policy::{ApprovalCall, Approvals, Approvers};
use mcp_oauth_gateway::approve::{
    APPROVAL_REFUSED, APPROVAL_REQUIRED, ApprovalDesk, ApprovalPolicy,
};
use mcp_oauth_gateway::gate::{Admission, Call, Decision, Gatekeeper};
use mcp_oauth_gateway::web::Visitor;
use serde_json::{Value, json};
use support::{Harness, messages, post, raw_session, stdio_upstream};

/// The capabilities of a client with URL-mode elicitation (MCP 2025-11-25).
const URL_ELICITATION: &str = r#"{"elicitation":{"form":{},"url":{}}}"#;

const VERSION: &str = "v1";

/// The policy side: `echo` needs approval by `approvers`; carol is in the group ops.
struct TestPolicy(Vec<Approvers>);

impl ApprovalPolicy for TestPolicy {
    fn approvers(&self, call: &ApprovalCall) -> Option<Vec<Approvers>> {
        (call.policy_version == VERSION && call.tool == "echo").then(|| self.0.clone())
    }
    fn groups(&self, visitor: &Visitor) -> Vec<String> {
        if visitor.subject() == "carol" {
            vec!["ops".to_owned()]
        } else {
            Vec::new()
        }
    }
}

/// A gatekeeper that sends every `echo` call to the desk.
struct Gate(ApprovalDesk);

impl Gatekeeper for Gate {
    fn decide(&self, _: Option<&Auth>, _: &Call<'_>) -> Decision {
        Decision::Allow
    }
    fn admit<'a>(
        &'a self,
        caller: Option<&'a Auth>,
        call: Admission<'a>,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            // `echo`, or a member's `echo` through several upstreams (`alpha__echo`).
            let echo = call
                .name
                .is_some_and(|n| n == "echo" || n.ends_with("__echo"));
            if call.method != "tools/call" || !echo {
                return Decision::Allow;
            }
            let arguments: Value = call
                .params
                .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
                .and_then(|p| p.get("arguments").cloned())
                .unwrap_or(Value::Null);
            let user = caller.map_or("anonymous", |a| a.subject());
            let bound = ApprovalCall::new(
                user,
                call.upstream.unwrap_or_default(),
                "echo",
                &arguments,
                VERSION,
            );
            self.0.admit(&bound, &arguments, "echo").await
        })
    }
}

struct World {
    gateway: Harness,
    pages_app: Router,
    now: Arc<AtomicI64>,
    sink: MemorySink,
    audit: AuditLog,
}

async fn world(approvers: Vec<Approvers>) -> World {
    world_of(approvers, false).await
}

/// [`world`], in front of one upstream or (`several`) of one named `alpha` among several.
async fn world_of(approvers: Vec<Approvers>, several: bool) -> World {
    let server: AuthServer = browser::server().await;
    let now = Arc::new(AtomicI64::new(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("time")
                .as_secs(),
        )
        .expect("time")
            + 60,
    ));
    let read = now.clone();
    let approvals = Approvals::new(&[5; 32], server.store().clone(), Duration::from_secs(600))
        .clock(move || read.load(Ordering::SeqCst));
    let pages = browser::pages(&server).await;
    let desk = ApprovalDesk::new(
        approvals,
        server.store().clone(),
        pages.clone(),
        TestPolicy(approvers),
    );
    let pages_app = desk.router().merge(pages.router()).merge(server.router());
    let sink = MemorySink::new();
    let audit = AuditLog::builder().memory(&sink).build().expect("audit");
    let gate = Gate(desk);
    let log = audit.clone();
    let gateway = if several {
        Harness::several(
            vec![
                ("alpha", stdio_upstream().into()),
                ("beta", stdio_upstream().into()),
            ],
            |b| b.gatekeeper(gate).audit(log),
        )
        .await
    } else {
        Harness::start_with(stdio_upstream(), |b| b.gatekeeper(gate).audit(log)).await
    };
    World {
        gateway,
        pages_app,
        now,
        sink,
        audit,
    }
}

/// A raw MCP caller.
struct Caller {
    token: String,
    session: String,
}

impl World {
    /// A caller whose client declared URL-mode elicitation.
    async fn caller(&self, sub: &str) -> Caller {
        self.caller_with(sub, URL_ELICITATION).await
    }

    /// A caller whose client declared `capabilities` at `initialize`.
    async fn caller_with(&self, sub: &str, capabilities: &str) -> Caller {
        let token = self.gateway.token(sub);
        let initialize = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{capabilities},"clientInfo":{{"name":"raw","version":"1"}}}}}}"#
        );
        let response = post(&self.gateway.url, Some(&token), None, initialize).await;
        assert_eq!(response.status(), 200);
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .expect("session id")
            .to_owned();
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let ack = post(&self.gateway.url, Some(&token), Some(&session), initialized).await;
        assert_eq!(ack.status(), 202);
        Caller { token, session }
    }

    /// A caller whose client declared nothing (`raw_session`'s empty capabilities).
    async fn plain_caller(&self, sub: &str) -> Caller {
        let token = self.gateway.token(sub);
        let session = raw_session(&self.gateway.url, &token).await;
        Caller { token, session }
    }

    /// Opens the caller's GET stream (server-initiated messages).
    async fn stream(&self, caller: &Caller) -> Stream {
        let response = reqwest::Client::new()
            .get(&self.gateway.url)
            .bearer_auth(&caller.token)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &caller.session)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 200);
        Stream {
            body: response.bytes_stream().boxed(),
            text: String::new(),
        }
    }

    async fn echo(&self, caller: &Caller, text: &str) -> Value {
        self.call(caller, "echo", text).await
    }

    /// Calls the tool `name` with `{"text": text}`.
    async fn call(&self, caller: &Caller, name: &str, text: &str) -> Value {
        let body = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":name,"arguments":{"text":text}}});
        let response = post(
            &self.gateway.url,
            Some(&caller.token),
            Some(&caller.session),
            body.to_string(),
        )
        .await;
        assert_eq!(response.status(), 200);
        messages(response).await.remove(0)
    }

    /// Calls echo expecting the approval link; returns its path on the gateway.
    async fn link(&self, caller: &Caller, text: &str) -> String {
        let answer = self.echo(caller, text).await;
        let error = &answer["error"];
        assert_eq!(error["code"], APPROVAL_REQUIRED, "{answer}");
        let elicitation = &error["data"]["elicitations"][0];
        assert_eq!(elicitation["mode"], "url");
        let url = elicitation["url"].as_str().expect("url").to_owned();
        assert_eq!(error["data"]["approval"]["url"], url.as_str());
        assert!(
            error["message"].as_str().expect("message").contains(&url),
            "the link is in the message too"
        );
        url.strip_prefix(ORIGIN).expect("on the gateway").to_owned()
    }
}

/// A session's GET stream, read message by message.
struct Stream {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    text: String,
}

impl Stream {
    /// The next JSON-RPC message on the stream (keep-alive comments skipped); `None` when the
    /// stream ends or nothing comes for a long while (a test that waits for one then fails).
    async fn next(&mut self) -> Option<Value> {
        let read = async {
            loop {
                if let Some(end) = self.text.find("\n\n") {
                    let event: String = self.text.drain(..end + 2).collect();
                    let data: String = event
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if let Ok(message) = serde_json::from_str::<Value>(&data) {
                        return Some(message);
                    }
                    continue;
                }
                let chunk = self.body.next().await?.ok()?;
                self.text.push_str(&String::from_utf8_lossy(&chunk));
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .ok()
            .flatten()
    }
}

/// The elicitation id of a -32042 answer.
fn elicitation_id(answer: &Value) -> String {
    answer["error"]["data"]["elicitations"][0]["elicitationId"]
        .as_str()
        .expect("elicitationId")
        .to_owned()
}

/// Signs `user` in on the approval page at `link` and returns the browser and the page.
async fn open(world: &World, link: &str, user: &str) -> (Browser, browser::Reply) {
    let mut browser = Browser::default();
    let back = browser.sign_in(&world.pages_app, link, user).await;
    assert_eq!(back.status, 303, "{back:?}");
    assert_eq!(back.local_location(), link);
    let page = browser.get(&world.pages_app, link).await;
    (browser, page)
}

/// Answers the page's form (`approve` or `refuse`).
async fn answer(
    world: &World,
    browser: &mut Browser,
    page: &browser::Reply,
    decision: &str,
) -> browser::Reply {
    let mut form = mcp_oauth::testing::hidden_form_fields(&page.body);
    form.push(("decision".to_owned(), decision.to_owned()));
    browser
        .post(&world.pages_app, "/gateway/approve", &form, Some(ORIGIN))
        .await
}

fn text(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn an_approved_call_passes_once_and_only_with_the_same_arguments() {
    let world = world(vec![Approvers::Caller]).await;
    let alice = world.caller("alice").await;
    let link = world.link(&alice, "rm -rf /srv/a").await;
    let (mut browser, page) = open(&world, &link, "alice").await;
    assert_eq!(page.status, 200, "{page:?}");
    for shown in [
        "<code>alice</code>",
        "<code id=\"tool\">echo</code>",
        "{&quot;text&quot;:&quot;rm -rf /srv/a&quot;}",
        "min (Unix time ",
    ] {
        assert!(page.body.contains(shown), "{shown} in {}", page.body);
    }
    let done = answer(&world, &mut browser, &page, "approve").await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(done.body.contains("Approved"));

    // Other arguments: not approved (a new link), and the approval is still there.
    let other = world.link(&alice, "rm -rf /srv/b").await;
    assert_ne!(other, link);
    // The identical call passes, once.
    let passed = world.echo(&alice, "rm -rf /srv/a").await;
    assert_eq!(text(&passed), "rm -rf /srv/a", "{passed}");
    let again = world.echo(&alice, "rm -rf /srv/a").await;
    assert_eq!(
        again["error"]["code"], APPROVAL_REQUIRED,
        "used once: {again}"
    );

    // Replaying the answered form, or answering the same link again, changes nothing.
    let replay = answer(&world, &mut browser, &page, "approve").await;
    assert_eq!(replay.status, 409, "{replay:?}");
    let still = world.echo(&alice, "rm -rf /srv/a").await;
    assert_eq!(still["error"]["code"], APPROVAL_REQUIRED, "{still}");

    // Another user making the identical call is another binding.
    let bob = world.caller("bob").await;
    let _ = world.link(&bob, "rm -rf /srv/a").await;

    world.audit.flush().await.expect("flush");
    let lines: Vec<Value> = world
        .sink
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|l: &Value| l["method"] == "tools/call")
        .collect();
    let approved: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("approved_by").is_some())
        .collect();
    assert_eq!(approved.len(), 1, "{lines:?}");
    assert_eq!(approved[0]["approved_by"], "alice");
    assert_eq!(approved[0]["decision"]["effect"], "allow");
    let waiting = lines
        .iter()
        .filter(|l| l["decision"]["rule_ids"] == json!(["approve:echo"]))
        .count();
    assert_eq!(
        waiting,
        lines.len() - 1,
        "every other call waited: {lines:?}"
    );
}

#[tokio::test]
async fn a_refused_call_is_told_so_and_a_new_call_asks_again() {
    let world = world(vec![Approvers::Caller]).await;
    let alice = world.caller("alice").await;
    let link = world.link(&alice, "drop table").await;
    let (mut browser, page) = open(&world, &link, "alice").await;
    let done = answer(&world, &mut browser, &page, "refuse").await;
    assert_eq!(done.status, 200);
    assert!(done.body.contains("Refused"));
    let refused = world.echo(&alice, "drop table").await;
    assert_eq!(refused["error"]["code"], APPROVAL_REFUSED, "{refused}");
    assert_eq!(refused["error"]["data"]["refusedBy"], "alice");
    // The refusal is used up too: the next call asks again, with a new link.
    assert_ne!(world.link(&alice, "drop table").await, link);
    // A form without a choice is no answer.
    let mut form = mcp_oauth::testing::hidden_form_fields(&page.body);
    form.push(("decision".to_owned(), "maybe".to_owned()));
    let maybe = browser
        .post(&world.pages_app, "/gateway/approve", &form, Some(ORIGIN))
        .await;
    assert_eq!(maybe.status, 400);
}

#[tokio::test]
async fn only_an_approver_may_approve() {
    // Default approvers: the caller. Bob opening alice's link is refused, and so is his post.
    let world = world(vec![Approvers::Caller]).await;
    let alice = world.caller("alice").await;
    let link = world.link(&alice, "format disk").await;
    let (mut bob, page) = open(&world, &link, "bob").await;
    assert_eq!(page.status, 403, "{page:?}");
    assert!(page.body.contains("the user who made the call"));
    // Bob posts the form of alice's page with his own session token.
    let (_, alice_page) = open(&world, &link, "alice").await;
    let ticket: Vec<(String, String)> = mcp_oauth::testing::hidden_form_fields(&alice_page.body)
        .into_iter()
        .filter(|(n, _)| n == "ticket")
        .collect();
    let whoami = bob.get(&world.pages_app, "/gateway").await;
    let mut form = mcp_oauth::testing::hidden_form_fields(&whoami.body);
    form.extend(ticket.clone());
    form.push(("decision".to_owned(), "approve".to_owned()));
    let posted = bob
        .post(&world.pages_app, "/gateway/approve", &form, Some(ORIGIN))
        .await;
    assert_eq!(posted.status, 403, "{posted:?}");
    assert_eq!(
        world.echo(&alice, "format disk").await["error"]["code"],
        APPROVAL_REQUIRED
    );

    // With approvers = group:ops, carol (in ops) approves alice's call; alice herself may not.
    let world = self::world(vec![Approvers::Group("ops".into())]).await;
    let alice = world.caller("alice").await;
    let link = world.link(&alice, "format disk").await;
    let (_, own) = open(&world, &link, "alice").await;
    assert_eq!(own.status, 403, "{own:?}");
    assert!(own.body.contains("members of the group ops"));
    let (mut carol, page) = open(&world, &link, "carol").await;
    assert_eq!(page.status, 200);
    // Without the form token, or from another origin: refused.
    let mut no_token = mcp_oauth::testing::hidden_form_fields(&page.body);
    no_token.retain(|(n, _)| n != "csrf");
    no_token.push(("decision".to_owned(), "approve".to_owned()));
    let refused = carol
        .post(
            &world.pages_app,
            "/gateway/approve",
            &no_token,
            Some(ORIGIN),
        )
        .await;
    assert_eq!(refused.status, 403);
    let mut full = mcp_oauth::testing::hidden_form_fields(&page.body);
    full.push(("decision".to_owned(), "approve".to_owned()));
    let cross = carol
        .post(
            &world.pages_app,
            "/gateway/approve",
            &full,
            Some("http://127.0.0.1:9"),
        )
        .await;
    assert_eq!(cross.status, 403);
    let done = carol
        .post(&world.pages_app, "/gateway/approve", &full, Some(ORIGIN))
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    let passed = world.echo(&alice, "format disk").await;
    assert_eq!(text(&passed), "format disk", "{passed}");
    world.audit.flush().await.expect("flush");
    assert!(
        world
            .sink
            .lines()
            .iter()
            .any(|l| l.contains("\"approved_by\":\"carol\""))
    );
}

#[tokio::test]
async fn expired_and_forged_links_are_refused() {
    let world = world(vec![Approvers::Caller]).await;
    let alice = world.caller("alice").await;
    let link = world.link(&alice, "reboot").await;
    let (mut browser, page) = open(&world, &link, "alice").await;
    assert_eq!(page.status, 200);
    // Ten minutes later the link has expired: the page says so, and the answer is refused.
    world.now.fetch_add(600, Ordering::SeqCst);
    let late = browser.get(&world.pages_app, &link).await;
    assert_eq!(late.status, 400, "{late:?}");
    assert!(late.body.contains("expired"));
    let posted = answer(&world, &mut browser, &page, "approve").await;
    assert_eq!(posted.status, 400, "{posted:?}");
    assert_eq!(
        world.echo(&alice, "reboot").await["error"]["code"],
        APPROVAL_REQUIRED
    );

    // A ticket altered or made up.
    for forged in [
        format!("{link}x"),
        "/gateway/approve?ticket=eyJjYWxsIjp7fX0.AAAA".to_owned(),
        "/gateway/approve".to_owned(),
    ] {
        let reply = browser.get(&world.pages_app, &forged).await;
        assert_eq!(reply.status, 400, "{forged}: {reply:?}");
        assert!(reply.body.contains("not valid"), "{}", reply.body);
    }
}

/// Two instances sharing the store and the key: an approval given on one instance's page lets
/// the identical call through on the other, once.
#[tokio::test]
async fn instances_sharing_the_store_agree() {
    let server: AuthServer = browser::server().await;
    let desk = |pages: mcp_oauth_gateway::web::Pages| {
        let approvals = Approvals::new(&[5; 32], server.store().clone(), Duration::from_secs(600));
        ApprovalDesk::new(
            approvals,
            server.store().clone(),
            pages,
            TestPolicy(vec![Approvers::Caller]),
        )
    };
    let pages_a = browser::pages(&server).await;
    let pages_b = browser::pages(&server).await;
    let (a, b) = (desk(pages_a.clone()), desk(pages_b));
    let app_a = a.router().merge(pages_a.router()).merge(server.router());
    let arguments = json!({"text": "shared"});
    let call = ApprovalCall::new("alice", "", "echo", &arguments, VERSION);
    let Decision::Refuse(waiting) = b.admit(&call, &arguments, "echo").await else {
        panic!("waits for approval");
    };
    let link = waiting.data.expect("data")["approval"]["url"]
        .as_str()
        .expect("url")
        .strip_prefix(ORIGIN)
        .expect("on the gateway")
        .to_owned();
    // Made on B, answered on A's page (its arguments kept in the shared store).
    let mut browser = Browser::default();
    let back = browser.sign_in(&app_a, &link, "alice").await;
    assert_eq!(back.status, 303);
    let page = browser.get(&app_a, &link).await;
    assert!(
        page.body.contains("{&quot;text&quot;:&quot;shared&quot;}"),
        "{}",
        page.body
    );
    let mut form = mcp_oauth::testing::hidden_form_fields(&page.body);
    form.push(("decision".to_owned(), "approve".to_owned()));
    let done = browser
        .post(&app_a, "/gateway/approve", &form, Some(ORIGIN))
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(
        b.admit(&call, &arguments, "echo").await,
        Decision::Approved("alice".into())
    );
    assert!(
        matches!(
            a.admit(&call, &arguments, "echo").await,
            Decision::Refuse(_)
        ),
        "once, across instances"
    );
}

#[tokio::test]
async fn a_client_without_url_elicitation_gets_a_tool_error_naming_the_link() {
    let world = world(vec![Approvers::Caller]).await;
    // Nothing declared, or elicitation in form mode only (an empty object means that).
    for capabilities in [
        "{}",
        r#"{"elicitation":{}}"#,
        r#"{"elicitation":{"form":{}}}"#,
    ] {
        let alice = world.caller_with("alice", capabilities).await;
        let waiting = world.echo(&alice, "deploy").await;
        assert!(waiting.get("error").is_none(), "{capabilities}: {waiting}");
        assert_eq!(waiting["result"]["isError"], true, "{waiting}");
        let said = text(&waiting);
        assert!(
            said.contains("needs approval: open http")
                && said.contains("/gateway/approve?ticket=")
                && said.contains("make the same call again"),
            "{said}"
        );
    }
    // The link in the text works like the elicitation's: approved, the same call passes once.
    let alice = world.plain_caller("alice").await;
    let waiting = world.echo(&alice, "deploy").await;
    let said = text(&waiting);
    let link = said
        .split_whitespace()
        .find_map(|w| w.strip_prefix(ORIGIN))
        .map(|l| l.trim_end_matches(','))
        .expect("a link on the gateway")
        .to_owned();
    let (mut browser, page) = open(&world, &link, "alice").await;
    assert_eq!(page.status, 200, "{page:?}");
    let done = answer(&world, &mut browser, &page, "approve").await;
    assert_eq!(done.status, 200, "{done:?}");
    let passed = world.echo(&alice, "deploy").await;
    assert_eq!(text(&passed), "deploy", "{passed}");
    assert!(
        passed["result"].get("isError").is_none_or(|e| e == false),
        "{passed}"
    );
}

#[tokio::test]
async fn the_session_that_waited_alone_hears_that_the_approver_answered() {
    let world = world(vec![Approvers::Caller]).await;
    let alice = world.caller("alice").await;
    let alice_other = world.caller("alice").await;
    let bob = world.caller("bob").await;
    let mut alice_stream = world.stream(&alice).await;
    let other_stream = world.stream(&alice_other).await;
    let bob_stream = world.stream(&bob).await;

    // Alice's call waits; bob (another user) and alice's other session make the identical call.
    let waiting = world.echo(&alice, "migrate").await;
    assert_eq!(waiting["error"]["code"], APPROVAL_REQUIRED, "{waiting}");
    let id = elicitation_id(&waiting);
    let bob_waiting = world.echo(&bob, "migrate").await;
    let bob_id = elicitation_id(&bob_waiting);
    let other_waiting = world.echo(&alice_other, "migrate").await;
    let other_id = elicitation_id(&other_waiting);
    assert!(id != bob_id && id != other_id && bob_id != other_id);

    // Bob, as an attacker, opens alice's link: not an approver, and nobody hears anything.
    let link = waiting["error"]["data"]["approval"]["url"]
        .as_str()
        .and_then(|u| u.strip_prefix(ORIGIN))
        .expect("link")
        .to_owned();
    let (mut intruder, page) = open(&world, &link, "bob").await;
    assert_eq!(page.status, 403);
    let mut form = mcp_oauth::testing::hidden_form_fields(
        &intruder.get(&world.pages_app, "/gateway").await.body,
    );
    form.push((
        "ticket".to_owned(),
        link.rsplit_once("ticket=").expect("ticket").1.to_owned(),
    ));
    form.push(("decision".to_owned(), "approve".to_owned()));
    let posted = intruder
        .post(&world.pages_app, "/gateway/approve", &form, Some(ORIGIN))
        .await;
    assert_eq!(posted.status, 403);

    // Alice approves her link: her waiting session hears it, with the elicitation's id.
    let (mut browser, page) = open(&world, &link, "alice").await;
    let done = answer(&world, &mut browser, &page, "approve").await;
    assert_eq!(done.status, 200, "{done:?}");
    let heard = alice_stream
        .next()
        .await
        .expect("the completion notification");
    assert_eq!(
        heard,
        json!({"jsonrpc": "2.0", "method": "notifications/elicitation/complete", "params": {"elicitationId": id}})
    );
    let passed = world.echo(&alice, "migrate").await;
    assert_eq!(text(&passed), "migrate", "{passed}");

    // Then each other session's own link is answered (refused): the first message each one
    // hears is its own completion, so alice's never reached them.
    for (caller, mut stream, waited) in [
        (&bob, bob_stream, &bob_waiting),
        (&alice_other, other_stream, &other_waiting),
    ] {
        let link = waited["error"]["data"]["approval"]["url"]
            .as_str()
            .and_then(|u| u.strip_prefix(ORIGIN))
            .expect("link")
            .to_owned();
        let who = if caller.session == bob.session {
            "bob"
        } else {
            "alice"
        };
        let (mut browser, page) = open(&world, &link, who).await;
        let done = answer(&world, &mut browser, &page, "refuse").await;
        assert_eq!(done.status, 200, "{done:?}");
        let heard = stream.next().await.expect("its own completion");
        assert_eq!(
            heard["params"]["elicitationId"],
            elicitation_id(waited),
            "{who}: {heard}"
        );
    }
}

#[tokio::test]
async fn through_several_upstreams_the_answer_follows_the_client_too() {
    let world = world_of(vec![Approvers::Caller], true).await;
    let alice = world.caller("alice").await;
    let bob = world.caller("bob").await;
    let plain = world.plain_caller("alice").await;
    let mut alice_stream = world.stream(&alice).await;
    let mut bob_stream = world.stream(&bob).await;
    // The client without URL elicitation: a tool error naming the link.
    let told = world.call(&plain, "alpha__echo", "wipe").await;
    assert_eq!(told["result"]["isError"], true, "{told}");
    assert!(text(&told).contains("/gateway/approve?ticket="), "{told}");
    // With it: -32042, then the completion on the merged GET stream, to alice alone.
    let waiting = world.call(&alice, "alpha__echo", "wipe").await;
    assert_eq!(waiting["error"]["code"], APPROVAL_REQUIRED, "{waiting}");
    let bob_waiting = world.call(&bob, "alpha__echo", "wipe").await;
    for (who, waited) in [("alice", &waiting), ("bob", &bob_waiting)] {
        let link = waited["error"]["data"]["approval"]["url"]
            .as_str()
            .and_then(|u| u.strip_prefix(ORIGIN))
            .expect("link")
            .to_owned();
        let (mut browser, page) = open(&world, &link, who).await;
        let done = answer(&world, &mut browser, &page, "approve").await;
        assert_eq!(done.status, 200, "{done:?}");
    }
    let heard = alice_stream.next().await.expect("alice's completion");
    assert_eq!(heard["method"], "notifications/elicitation/complete");
    assert_eq!(heard["params"]["elicitationId"], elicitation_id(&waiting));
    let heard = bob_stream.next().await.expect("bob's completion");
    assert_eq!(
        heard["params"]["elicitationId"],
        elicitation_id(&bob_waiting),
        "bob's first message is his own: alice's never reached him"
    );
    let passed = world.call(&alice, "alpha__echo", "wipe").await;
    assert_eq!(text(&passed), "wipe", "{passed}");
}
