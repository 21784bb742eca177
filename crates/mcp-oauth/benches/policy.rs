//! What a policy decision costs: a filesystem-like tool set, eight rules (groups, an email
//! domain, a path argument, a forbid, a step-up).
//!
//! - `call/allow`: `Policy::decide` on `read_file` with a path (canonicalised, one Cedar run);
//! - `call/forbid`: the same call under a forbidden folder;
//! - `call/array4`: `read_multiple_files` with four paths (four Cedar runs);
//! - `list/visible`: `Policy::visible` (partial evaluation, arguments unknown).
//!
//! ```sh
//! cargo bench -p mcp-oauth --features policy --bench policy
//! cargo bench -p mcp-oauth --features policy --bench policy -- --quick      # a smoke run
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_oauth::policy::{Catalog, Policy, PolicyConfig, Subject, Target};
use serde_json::json;

const TOOLS: &str = r#"{"tools": [
  {"name": "read_file", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}},
  {"name": "read_multiple_files", "inputSchema": {"type": "object",
     "properties": {"paths": {"type": "array", "items": {"type": "string"}}}}},
  {"name": "write_file", "inputSchema": {"type": "object",
     "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}},
  {"name": "list_directory", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}}
]}"#;

const POLICY: &str = r#"
[policy]
group_claims = ["groups"]
[policy.arguments]
root = "/srv"
paths = ["path", "paths"]
[policy.groups.admins]
emails = ["root@example.com"]
[[policy.rule]]
id = "staff-read"
who = { email_domains = ["example.com"] }
tools = ["read_*", "list_directory"]
[[policy.rule]]
id = "eng-write"
who = { groups = ["eng"] }
tools = ["write_file"]
args.path = { under = "/srv/team" }
step_up_scopes = ["files:write"]
[[policy.rule]]
id = "no-secrets"
effect = "forbid"
tools = ["read_file", "write_file", "list_directory"]
args.path = { under = "/srv/team/secrets" }
[[policy.rule]]
id = "no-secrets-many"
effect = "forbid"
tools = ["read_multiple_files"]
args.paths = { under = "/srv/team/secrets" }
[[policy.rule]]
id = "admins"
who = { groups = ["admins"] }
tools = ["*"]
"#;

fn bench(c: &mut Criterion) {
    let catalog = Catalog::from_json_str(TOOLS).unwrap();
    let policy = Policy::new(
        PolicyConfig::from_toml(POLICY, "bench.toml").unwrap(),
        catalog,
    )
    .unwrap();
    let alice = Subject::new("alice")
        .email("alice@example.com")
        .scopes(["files:read"])
        .claims(
            json!({"groups": ["eng", "staff"]})
                .as_object()
                .cloned()
                .unwrap(),
        );
    let ok = json!({"path": "team/notes/a.md"});
    let secret = json!({"path": "team/secrets/key"});
    let four = json!({"paths": ["team/a", "team/b", "docs/c", "docs/d"]});
    assert!(
        policy
            .decide(&alice, Target::Tool("read_file"), Some(&ok))
            .is_allowed()
    );

    let mut group = c.benchmark_group("policy");
    group.bench_function("call/allow", |b| {
        b.iter(|| {
            policy.decide(
                black_box(&alice),
                Target::Tool("read_file"),
                Some(black_box(&ok)),
            )
        })
    });
    group.bench_function("call/forbid", |b| {
        b.iter(|| {
            policy.decide(
                black_box(&alice),
                Target::Tool("read_file"),
                Some(black_box(&secret)),
            )
        })
    });
    group.bench_function("call/array4", |b| {
        b.iter(|| {
            policy.decide(
                black_box(&alice),
                Target::Tool("read_multiple_files"),
                Some(black_box(&four)),
            )
        })
    });
    group.bench_function("list/visible", |b| {
        b.iter(|| policy.visible(black_box(&alice), Target::Tool("write_file")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
