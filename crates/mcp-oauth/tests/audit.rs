//! The audit log: argument modes, secrets, redaction globs, canonical hashes, the hash chain
//! and its verifier, sinks (memory, file, failing), concurrency and file permissions.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)] // tests panic on failure

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use mcp_oauth::audit::{
    Actor, ArgumentMode, AuditError, AuditEvent, AuditLog, BreakReason, ChainError, CredentialKind,
    Decision, GENESIS_HASH, MemorySink, Outcome, REDACTED, canonical_json, canonical_sha256,
    line_hash, verify_chain, verify_chain_after, verify_chain_file,
};
use serde_json::{Value, json};

fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mcp-oauth-audit-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn actor() -> Actor {
    Actor::new("user-1")
        .email("alice@example.com")
        .groups(["eng", "ops"])
        .client_id("client-9")
}

fn call(arguments: Value) -> AuditEvent {
    AuditEvent::new("tools/call", actor(), Decision::allow().rule_ids(["r1"]))
        .tool("fs_write")
        .arguments(arguments)
}

/// Arguments with secrets at the top, nested in an object and inside an array.
fn secret_arguments() -> Value {
    json!({
        "path": "/srv/a.txt",
        "token": "SECRET-1",
        "auth": {"Authorization": "Bearer SECRET-2", "user": "bob"},
        "items": [{"client_secret": "SECRET-3", "id": 1}, {"refresh-token": "SECRET-4"}],
        "accessToken": {"nested": "SECRET-5"},
        "password": ["SECRET-6"],
        "code_verifier": "SECRET-7",
        "my_pin": "SECRET-8",
    })
}

async fn one_line(mode: ArgumentMode, arguments: Value) -> Value {
    let sink = MemorySink::new();
    let log = AuditLog::builder()
        .memory(&sink)
        .arguments(mode)
        .secret_name("my_pin")
        .redact("items[*].id")
        .build()
        .unwrap();
    log.record(call(arguments)).await.unwrap();
    log.flush().await.unwrap();
    let lines = sink.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    for secret in 1..=8 {
        assert!(
            !lines[0].contains(&format!("SECRET-{secret}")),
            "{mode:?} wrote SECRET-{secret}: {}",
            lines[0]
        );
    }
    serde_json::from_str(&lines[0]).unwrap()
}

#[tokio::test]
async fn mode_none_writes_no_arguments() {
    let line = one_line(ArgumentMode::None, secret_arguments()).await;
    assert_eq!(line["arguments"], json!({"mode": "none"}));
}

#[tokio::test]
async fn mode_full_writes_arguments_with_secrets_replaced() {
    let line = one_line(ArgumentMode::Full, secret_arguments()).await;
    assert_eq!(
        line["arguments"],
        json!({"mode": "full", "value": {
            "path": "/srv/a.txt",
            "token": REDACTED,
            "auth": {"Authorization": REDACTED, "user": "bob"},
            "items": [{"client_secret": REDACTED, "id": 1}, {"refresh-token": REDACTED}],
            "accessToken": REDACTED,
            "password": REDACTED,
            "code_verifier": REDACTED,
            "my_pin": REDACTED,
        }})
    );
}

#[tokio::test]
async fn mode_redacted_applies_globs_and_secret_names() {
    let line = one_line(ArgumentMode::Redacted, secret_arguments()).await;
    assert_eq!(
        line["arguments"],
        json!({"mode": "redacted", "value": {
            "path": "/srv/a.txt",
            "token": REDACTED,
            "auth": {"Authorization": REDACTED, "user": "bob"},
            "items": [{"client_secret": REDACTED, "id": REDACTED}, {"refresh-token": REDACTED}],
            "accessToken": REDACTED,
            "password": REDACTED,
            "code_verifier": REDACTED,
            "my_pin": REDACTED,
        }})
    );
}

#[tokio::test]
async fn mode_sha256_hashes_the_canonical_json_after_secrets_are_replaced() {
    let arguments = json!({
        "z": [3, 1.5, true, null],
        "path": "/srv/é\n",
        "a": {"c": 2, "b": "x"},
        "Password": "hunter2",
        "n": 1e21,
    });
    // Written by hand from RFC 8785; its hash computed outside Rust (Python's hashlib).
    let canonical = r#"{"Password":"[redacted]","a":{"b":"x","c":2},"n":1e+21,"path":"/srv/é\n","z":[3,1.5,true,null]}"#;
    let expected = "6b00536ee0d6242cf9963fbe96adba3e0fd8f2feabc8772a5535ab69c73ab49d";

    let mut scrubbed = arguments.clone();
    scrubbed["Password"] = json!(REDACTED);
    assert_eq!(canonical_json(&scrubbed), canonical);
    assert_eq!(canonical_sha256(&scrubbed), expected);

    let line = one_line(ArgumentMode::Sha256, arguments).await;
    assert_eq!(
        line["arguments"],
        json!({"mode": "sha256", "sha256": expected})
    );

    // The secrets of the shared fixture are replaced before hashing too.
    let line = one_line(ArgumentMode::Sha256, secret_arguments()).await;
    assert_eq!(line["arguments"]["mode"], "sha256");
}

#[tokio::test]
async fn sha256_is_the_default_mode_and_ignores_key_order_and_whitespace() {
    let sink = MemorySink::new();
    let log = AuditLog::builder().memory(&sink).build().unwrap();
    let a: Value = serde_json::from_str(r#"{"b": [1, {"y": 2, "x": 1}], "a": "t"}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"a":"t","b":[1,{"x":1,"y":2}]}"#).unwrap();
    log.record(call(a)).await.unwrap();
    log.record(call(b)).await.unwrap();
    log.flush().await.unwrap();
    let lines: Vec<Value> = sink
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["arguments"]["mode"], "sha256");
    assert_eq!(lines[0]["arguments"], lines[1]["arguments"]);
}

#[tokio::test]
async fn redaction_globs_on_nested_objects_and_arrays() {
    let arguments = json!({
        "password": "top",
        "user": {"password": "one-down", "name": "a", "deep": {"password": "two-down"}},
        "files": [
            {"path": "/a", "content": "AAA"},
            {"path": "/b", "content": {"lines": ["BBB"]}},
        ],
        "matrix": [[1, 2], [3, 4]],
        "notes": {"x": {"body": "n1"}, "y": {"body": "n2"}},
    });
    let files = |first: Value, second: Value| json!([first, second]);
    let cases: [(&str, &str, Value); 7] = [
        (
            "files[*].content",
            "files",
            files(
                json!({"path": "/a", "content": REDACTED}),
                json!({"path": "/b", "content": REDACTED}),
            ),
        ),
        (
            "files[1].content.lines[0]",
            "files",
            files(
                json!({"path": "/a", "content": "AAA"}),
                json!({"path": "/b", "content": {"lines": [REDACTED]}}),
            ),
        ),
        ("files[9].content", "files", arguments["files"].clone()),
        (
            "**.path",
            "files",
            files(
                json!({"path": REDACTED, "content": "AAA"}),
                json!({"path": REDACTED, "content": {"lines": ["BBB"]}}),
            ),
        ),
        ("files", "files", json!(REDACTED)),
        (
            "matrix[*][0]",
            "matrix",
            json!([[REDACTED, 2], [REDACTED, 4]]),
        ),
        (
            "notes.*.body",
            "notes",
            json!({"x": {"body": REDACTED}, "y": {"body": REDACTED}}),
        ),
    ];
    for (pattern, member, expected) in cases {
        let sink = MemorySink::new();
        let log = AuditLog::builder()
            .memory(&sink)
            .arguments(ArgumentMode::Redacted)
            .redact(pattern)
            .build()
            .unwrap();
        log.record(call(arguments.clone())).await.unwrap();
        log.flush().await.unwrap();
        let line: Value = serde_json::from_str(&sink.lines()[0]).unwrap();
        let value = &line["arguments"]["value"];
        assert_eq!(value[member], expected, "pattern {pattern}");
        // The other members are untouched, and secret names apply whatever the patterns.
        assert_eq!(value["user"]["name"], "a", "pattern {pattern}");
        assert_eq!(value["password"], REDACTED, "pattern {pattern}");
        assert_eq!(value["user"]["password"], REDACTED, "pattern {pattern}");
        assert_eq!(
            value["user"]["deep"]["password"], REDACTED,
            "pattern {pattern}"
        );
    }
}

#[tokio::test]
async fn star_matches_one_level_and_double_star_any_depth() {
    let arguments = json!({"ssn": 1, "a": {"ssn": 2, "b": {"ssn": 3}}, "list": [{"ssn": 4}]});
    let redacted = |pattern: &'static str| {
        let arguments = arguments.clone();
        async move {
            let sink = MemorySink::new();
            let log = AuditLog::builder()
                .memory(&sink)
                .arguments(ArgumentMode::Redacted)
                .redact(pattern)
                .build()
                .unwrap();
            log.record(call(arguments)).await.unwrap();
            log.flush().await.unwrap();
            let line: Value = serde_json::from_str(&sink.lines()[0]).unwrap();
            line["arguments"]["value"].clone()
        }
    };
    assert_eq!(
        redacted("*.ssn").await,
        json!({"ssn": 1, "a": {"ssn": REDACTED, "b": {"ssn": 3}}, "list": [{"ssn": 4}]})
    );
    assert_eq!(
        redacted("**.ssn").await,
        json!({"ssn": REDACTED, "a": {"ssn": REDACTED, "b": {"ssn": REDACTED}}, "list": [{"ssn": REDACTED}]})
    );
    assert_eq!(
        redacted("ssn").await,
        json!({"ssn": REDACTED, "a": {"ssn": 2, "b": {"ssn": 3}}, "list": [{"ssn": 4}]})
    );
}

#[test]
fn a_malformed_pattern_fails_the_build_and_names_it() {
    let err = AuditLog::builder()
        .memory(&MemorySink::new())
        .redact("files[*.content")
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, AuditError::InvalidPattern { pattern, .. } if pattern == "files[*.content"),
        "{err:?}"
    );
    assert!(err.to_string().contains("files[*.content"), "{err}");
}

#[test]
fn a_builder_without_a_sink_says_how_to_choose_one() {
    let err = AuditLog::builder().build().unwrap_err();
    assert!(matches!(err, AuditError::NoSink), "{err:?}");
    assert!(err.to_string().contains("file(path)"), "{err}");
}

#[tokio::test]
async fn a_line_carries_every_member_in_order() {
    let sink = MemorySink::new();
    let log = AuditLog::builder()
        .memory(&sink)
        .arguments(ArgumentMode::Full)
        .build()
        .unwrap();
    let time = UNIX_EPOCH + Duration::from_millis(1_796_629_212_345);
    let event = AuditEvent::new(
        "tools/call",
        actor(),
        Decision::step_up(["files:write"]).rule_ids(["write-needs-scope"]),
    )
    .tool("fs_write")
    .arguments(json!({"path": "/srv/x"}))
    .session("sess-1")
    .upstream("files")
    .credential(CredentialKind::TokenExchange)
    .outcome(Outcome::http(403))
    .duration(Duration::from_micros(1_250))
    .time(time);
    log.record(event).await.unwrap();
    log.record(
        AuditEvent::new("resources/read", Actor::new("user-2"), Decision::deny())
            .resource("file:///etc/passwd")
            .outcome(Outcome::http(200).jsonrpc_error(-32002)),
    )
    .await
    .unwrap();
    log.record(
        AuditEvent::new("prompts/get", Actor::new("user-3"), Decision::allow())
            .prompt("summary")
            .outcome(Outcome::http(200).is_error(true)),
    )
    .await
    .unwrap();
    log.flush().await.unwrap();
    let lines = sink.lines();
    assert_eq!(lines.len(), 3);

    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    let event_id = first["event_id"].as_str().unwrap().to_owned();
    let expected = format!(
        concat!(
            r#"{{"time":"2026-12-07T07:40:12.345Z","event_id":"{}","#,
            r#""actor":{{"sub":"user-1","email":"alice@example.com","groups":["eng","ops"],"client_id":"client-9"}},"#,
            r#""session":"sess-1","upstream":"files","method":"tools/call","tool":"fs_write","#,
            r#""arguments":{{"mode":"full","value":{{"path":"/srv/x"}}}},"#,
            r#""decision":{{"effect":"step_up","rule_ids":["write-needs-scope"],"step_up_scopes":["files:write"]}},"#,
            r#""credential":{{"kind":"token-exchange"}},"#,
            r#""outcome":{{"http":403,"jsonrpc_error":null,"is_error":null}},"duration_ms":1.25}}"#
        ),
        event_id
    );
    assert_eq!(lines[0], expected);
    // A version 4 UUID.
    let parts: Vec<&str> = event_id.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(
        parts[2].starts_with('4') && "89ab".contains(&parts[3][..1]),
        "{event_id}"
    );

    let second: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_ne!(second["event_id"], first["event_id"]);
    assert_eq!(second["resource"], "file:///etc/passwd");
    assert_eq!(second["decision"]["effect"], "deny");
    assert_eq!(second["decision"]["rule_ids"], json!([]));
    assert_eq!(
        second["outcome"],
        json!({"http": 200, "jsonrpc_error": -32002, "is_error": null})
    );
    assert_eq!(
        second["actor"],
        json!({"sub": "user-2", "email": null, "groups": [], "client_id": null})
    );
    for absent in [
        "tool",
        "prompt",
        "session",
        "upstream",
        "credential",
        "duration_ms",
        "prev_hash",
    ] {
        assert!(second.get(absent).is_none(), "{absent} in {second}");
    }
    let third: Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(third["prompt"], "summary");
    assert_eq!(third["outcome"]["is_error"], true);
    assert_eq!(
        third["arguments"],
        json!({"mode": "none"}),
        "no arguments given"
    );

    let time = third["time"].as_str().unwrap();
    assert_eq!(time.len(), "2026-12-07T07:40:12.345Z".len(), "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
}

async fn chained_file(dir: &std::path::Path, lines: usize) -> PathBuf {
    let path = dir.join("audit.jsonl");
    let log = AuditLog::builder()
        .file(&path)
        .hash_chain(true)
        .build()
        .unwrap();
    for i in 0..lines {
        log.record(call(json!({"i": i}))).await.unwrap();
    }
    log.flush().await.unwrap();
    path
}

fn read_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn broken_at(text: &str) -> (usize, BreakReason) {
    match verify_chain(text.as_bytes()) {
        Err(ChainError::Broken { line, reason }) => (line, reason),
        other => panic!("expected a break, got {other:?}"),
    }
}

#[tokio::test]
async fn the_chain_verifies_and_links_each_line_to_the_one_before() {
    let dir = temp_dir("chain");
    let path = chained_file(&dir, 5).await;
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 5);
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["prev_hash"], GENESIS_HASH);
    for pair in lines.windows(2) {
        let next: Value = serde_json::from_str(&pair[1]).unwrap();
        assert_eq!(next["prev_hash"], line_hash(pair[0].as_bytes()).as_str());
    }
    let summary = verify_chain_file(&path).unwrap();
    assert_eq!(summary.lines, 5);
    assert_eq!(summary.head, line_hash(lines[4].as_bytes()));
    assert!(verify_chain(&b""[..]).unwrap().head == GENESIS_HASH);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_verifier_names_the_first_broken_line() {
    let dir = temp_dir("tamper");
    let path = chained_file(&dir, 6).await;
    let lines = read_lines(&path);
    let join = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();

    // An edit to line 3 shows on line 4, whose prev_hash no longer matches.
    let mut edited = lines.clone();
    edited[2] = edited[2].replace(r#""sub":"user-1""#, r#""sub":"user-2""#);
    assert_ne!(edited[2], lines[2]);
    let (line, reason) = broken_at(&join(&edited));
    assert_eq!(line, 4);
    assert_eq!(
        reason,
        BreakReason::Mismatch {
            expected: line_hash(edited[2].as_bytes()),
            found: line_hash(lines[2].as_bytes()),
        }
    );

    // Removing line 3: the old line 4, now line 3, points at a line that is gone.
    let mut removed = lines.clone();
    removed.remove(2);
    assert_eq!(broken_at(&join(&removed)).0, 3);

    // Removing the first line: the new first line does not start the chain.
    assert_eq!(broken_at(&join(&lines[1..])).0, 1);

    // Swapping lines 2 and 3 breaks at line 2.
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    assert_eq!(broken_at(&join(&swapped)).0, 2);

    // Rewriting line 5's own prev_hash breaks at line 5.
    let mut relinked = lines.clone();
    let value: Value = serde_json::from_str(&relinked[4]).unwrap();
    let old = value["prev_hash"].as_str().unwrap();
    relinked[4] = relinked[4].replace(old, GENESIS_HASH);
    assert_eq!(broken_at(&join(&relinked)).0, 5);

    // A line that is not JSON, or has no prev_hash.
    let mut garbage = lines.clone();
    garbage.insert(3, "{\"cut".to_owned());
    assert_eq!(broken_at(&join(&garbage)), (4, BreakReason::NotJson));
    let mut unchained = lines.clone();
    unchained[1] = r#"{"time":"x"}"#.to_owned();
    assert_eq!(
        broken_at(&join(&unchained)),
        (2, BreakReason::MissingPrevHash)
    );

    // The untouched file, and a rotated tail verified from the hash of the line before.
    assert_eq!(verify_chain(join(&lines).as_bytes()).unwrap().lines, 6);
    let start = line_hash(lines[2].as_bytes());
    assert_eq!(
        verify_chain_after(join(&lines[3..]).as_bytes(), &start)
            .unwrap()
            .lines,
        3
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn appending_to_a_file_continues_its_chain() {
    let dir = temp_dir("append");
    let path = chained_file(&dir, 3).await;
    // A second log on the same file (a restart) picks up the last line's hash.
    let again = chained_file(&dir, 2).await;
    assert_eq!(path, again);
    assert_eq!(verify_chain_file(&path).unwrap().lines, 5);

    // A line cut short by a crash stays on its own line, where the verifier reports it.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"time\":\"cut");
    std::fs::write(&path, &text).unwrap();
    chained_file(&dir, 1).await;
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[5], "{\"time\":\"cut");
    assert!(serde_json::from_str::<Value>(&lines[6]).is_ok());
    match verify_chain_file(&path) {
        Err(ChainError::Broken {
            line: 6,
            reason: BreakReason::NotJson,
        }) => {}
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_produce_whole_lines() {
    let dir = temp_dir("concurrent");
    let path = dir.join("audit.jsonl");
    let log = AuditLog::builder()
        .file(&path)
        .arguments(ArgumentMode::Full)
        .hash_chain(true)
        .capacity(4)
        .build()
        .unwrap();
    let big = "x".repeat(20_000);
    let mut tasks = Vec::new();
    for task in 0..8 {
        let log = log.clone();
        let big = big.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                log.record(call(json!({"task": task, "i": i, "blob": big})))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    log.flush().await.unwrap();
    let stats = log.stats();
    assert_eq!((stats.recorded, stats.written, stats.failed), (800, 800, 0));

    let lines = read_lines(&path);
    assert_eq!(lines.len(), 800);
    let mut seen = std::collections::HashSet::new();
    for line in &lines {
        let value: Value = serde_json::from_str(line).unwrap();
        let args = &value["arguments"]["value"];
        assert_eq!(args["blob"].as_str().unwrap().len(), 20_000);
        assert!(seen.insert((args["task"].as_u64().unwrap(), args["i"].as_u64().unwrap())));
    }
    assert_eq!(verify_chain_file(&path).unwrap().lines, 800);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_file_is_created_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir("mode");
    let path = chained_file(&dir, 1).await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn opening_errors_say_what_to_fix() {
    let dir = temp_dir("open");
    let missing = dir.join("no-such-folder").join("audit.jsonl");
    let err = AuditLog::builder().file(&missing).build().unwrap_err();
    assert!(matches!(err, AuditError::OpenFile { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("create the folder") && text.contains("no-such-folder"),
        "{text}"
    );

    let err = AuditLog::builder().file(&dir).build().unwrap_err();
    assert!(err.to_string().contains("name a file"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn write_failures_are_counted_not_lost_silently() {
    // Every write to /dev/full fails with ENOSPC.
    let log = AuditLog::builder().file("/dev/full").build().unwrap();
    for i in 0..3 {
        log.record(call(json!({"i": i}))).await.unwrap();
    }
    log.flush().await.unwrap();
    let stats = log.stats();
    assert_eq!((stats.recorded, stats.written, stats.failed), (3, 0, 3));
}

#[tokio::test]
async fn the_writer_stops_when_the_last_handle_is_dropped_after_writing_everything() {
    let dir = temp_dir("drop");
    let path = dir.join("audit.jsonl");
    let log = AuditLog::builder().file(&path).build().unwrap();
    for i in 0..10 {
        log.record(call(json!({"i": i}))).await.unwrap();
    }
    let clone = log.clone();
    drop(log);
    clone.flush().await.unwrap();
    assert_eq!(read_lines(&path).len(), 10);
    drop(clone);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn attacker_controlled_names_and_arguments_cannot_break_or_forge_lines() {
    // A tool name and arguments holding newlines and a forged line, nested as deep as the
    // JSON parser allows.
    let forged =
        "x\n{\"time\":\"2000-01-01T00:00:00.000Z\",\"decision\":{\"effect\":\"allow\"}}\r\n";
    let mut deep = String::new();
    for _ in 0..127 {
        deep.push_str("{\"a\":");
    }
    deep.push_str(&serde_json::to_string(forged).unwrap());
    deep.push_str(&"}".repeat(127));
    let deep: Value = serde_json::from_str(&deep).unwrap();

    for mode in [
        ArgumentMode::None,
        ArgumentMode::Sha256,
        ArgumentMode::Redacted,
        ArgumentMode::Full,
    ] {
        let sink = MemorySink::new();
        let log = AuditLog::builder()
            .memory(&sink)
            .arguments(mode)
            .redact("**.password")
            .hash_chain(true)
            .build()
            .unwrap();
        let event = AuditEvent::new("tools/call", Actor::new(forged), Decision::deny())
            .tool(forged)
            .session(forged)
            .arguments(json!({"deep": deep, forged: forged}));
        log.record(event).await.unwrap();
        log.flush().await.unwrap();
        let lines = sink.lines();
        assert_eq!(lines.len(), 1, "{mode:?}: {lines:?}");
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["tool"], forged, "{mode:?}");
        if matches!(mode, ArgumentMode::Redacted | ArgumentMode::Full) {
            // Nesting past 100 levels is cut, so that the line stays parseable.
            let mut inner = &line["arguments"]["value"]["deep"];
            let mut depth = 1;
            while let Some(next) = inner.get("a") {
                inner = next;
                depth += 1;
            }
            assert_eq!(
                (depth, inner.as_str()),
                (100, Some("[too deep]")),
                "{mode:?}"
            );
        }
        assert_eq!(line["decision"]["effect"], "deny", "{mode:?}");
        let joined: String = lines.iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(verify_chain(joined.as_bytes()).unwrap().lines, 1);
    }
}
