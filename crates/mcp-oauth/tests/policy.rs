//! The policy engine against a filesystem-like tool set (`path`, `paths[]`,
//! `source`/`destination`) and a fetch-like `url` tool.

#![cfg(feature = "policy")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use mcp_oauth::policy::{
    ArgRule, Catalog, ClaimKind, Effect, Fixtures, GroupSource, Policy, PolicyConfig, Rule,
    Subject, Target, Who,
};
use serde_json::{Value, json};

const TOOLS: &str = r#"{"tools": [
  {"name": "read_file", "inputSchema": {"type": "object",
     "properties": {"path": {"type": "string"}, "head": {"type": "integer"}}, "required": ["path"]},
   "annotations": {"readOnlyHint": true}},
  {"name": "read_multiple_files", "inputSchema": {"type": "object",
     "properties": {"paths": {"type": "array", "items": {"type": "string"}}}, "required": ["paths"]},
   "annotations": {"readOnlyHint": true}},
  {"name": "write_file", "inputSchema": {"type": "object",
     "properties": {"path": {"type": "string"}, "content": {"type": "string"}}},
   "annotations": {"readOnlyHint": false, "destructiveHint": true}},
  {"name": "move_file", "inputSchema": {"type": "object",
     "properties": {"source": {"type": "string"}, "destination": {"type": "string"}}},
   "annotations": {"destructiveHint": true}},
  {"name": "list_directory", "inputSchema": {"type": "object",
     "properties": {"path": {"type": "string"}}},
   "annotations": {"readOnlyHint": true}},
  {"name": "fetch", "inputSchema": {"type": "object",
     "properties": {"url": {"type": "string", "format": "uri"}, "raw": {"type": "boolean"}}},
   "annotations": {"readOnlyHint": true, "openWorldHint": true}}
]}"#;

const POLICY: &str = r#"
[policy]
server = "fs"
group_claims = ["groups", "realm_access.roles"]
claims = { department = "string" }

[policy.arguments]
root = "/srv"
paths = ["path", "paths", "source", "destination"]
urls = ["url"]

[policy.groups.admins]
emails = ["root@example.com"]

[[policy.sign_in]]
id = "staff"
who = { email_domains = ["example.com"] }

[[policy.sign_in]]
id = "contractor"
who = { emails = ["contractor@partner.io"] }

[[policy.grant]]
id = "everyone-reads"
scopes = ["files:read"]

[[policy.grant]]
id = "eng-writes"
who = { groups = ["eng"] }
scopes = ["files:write"]

[[policy.rule]]
id = "staff-read"
who = { email_domains = ["example.com"] }
tools = ["read_*", "list_directory"]

[[policy.rule]]
id = "eng-write-team"
who = { groups = ["eng"] }
tools = ["write_file"]
args.path = { under = "/srv/team" }
step_up_scopes = ["files:write"]

[[policy.rule]]
id = "eng-move-team"
who = { groups = ["eng"] }
tools = ["move_file"]
args.source = { under = "team" }
args.destination = { under = "team" }

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
id = "fetch-docs"
who = { email_domains = ["example.com"] }
tools = ["fetch"]
args.url = { schemes = ["https"], hosts = ["docs.rs", "*.example.com"] }

[[policy.rule]]
id = "admins-everything"
who = { groups = ["admins"] }
tools = ["*"]
"#;

fn catalog() -> Catalog {
    Catalog::from_json_str(TOOLS).unwrap()
}

fn policy() -> Policy {
    Policy::new(
        PolicyConfig::from_toml(POLICY, "policy.toml").unwrap(),
        catalog(),
    )
    .unwrap()
}

fn alice() -> Subject {
    Subject::new("alice").email("alice@example.com")
}

fn carol(scopes: &[&str]) -> Subject {
    // In `eng` by her token's `groups` claim.
    Subject::new("carol")
        .email("carol@example.com")
        .scopes(scopes.iter().copied())
        .claims(json!({"groups": ["eng"]}).as_object().cloned().unwrap())
}

fn root() -> Subject {
    Subject::new("root").email("root@example.com")
}

fn bob() -> Subject {
    Subject::new("bob").email("bob@gmail.com")
}

fn call(policy: &Policy, who: &Subject, tool: &str, args: Value) -> mcp_oauth::policy::Decision {
    policy.decide(who, Target::Tool(tool), Some(&args))
}

#[test]
fn a_permit_allows_and_names_its_rule() {
    let d = call(
        &policy(),
        &alice(),
        "read_file",
        json!({"path": "team/a.md"}),
    );
    assert_eq!(d.effect(), Effect::Allow, "{d}");
    assert_eq!(d.rule_ids(), ["staff-read"]);
}

#[test]
fn without_a_permit_the_call_is_denied() {
    let d = call(&policy(), &bob(), "read_file", json!({"path": "team/a.md"}));
    assert_eq!(d.effect(), Effect::Deny);
    assert!(d.rule_ids().is_empty());
    assert_eq!(d.reason(), "no rule permits this");
    // Alice reads but does not write.
    let d = call(
        &policy(),
        &alice(),
        "write_file",
        json!({"path": "team/a.md"}),
    );
    assert_eq!(d.effect(), Effect::Deny);
}

#[test]
fn an_unknown_tool_is_denied() {
    let d = call(&policy(), &root(), "drop_database", json!({}));
    assert_eq!(d.effect(), Effect::Deny);
    assert!(d.reason().contains("not in the server's catalog"), "{d}");
}

#[test]
fn forbid_beats_permit() {
    let p = policy();
    // `admins-everything` and `staff-read` permit; `no-secrets` forbids.
    let d = call(
        &p,
        &root(),
        "read_file",
        json!({"path": "/srv/team/secrets/key"}),
    );
    assert_eq!(d.effect(), Effect::Deny);
    assert_eq!(d.rule_ids(), ["no-secrets"]);
    assert_eq!(d.reason(), "forbidden by no-secrets");
    // The same admin elsewhere.
    let d = call(&p, &root(), "read_file", json!({"path": "/srv/team/notes"}));
    assert_eq!(d.effect(), Effect::Allow);
    assert_eq!(d.rule_ids(), ["admins-everything", "staff-read"]);
}

#[test]
fn every_element_of_an_array_argument_is_checked() {
    let p = policy();
    let d = call(
        &p,
        &alice(),
        "read_multiple_files",
        json!({"paths": ["team/a", "team/b"]}),
    );
    assert_eq!(d.effect(), Effect::Allow, "{d}");
    let d = call(
        &p,
        &alice(),
        "read_multiple_files",
        json!({"paths": ["team/a", "team/secrets/b", "team/c"]}),
    );
    assert_eq!(d.effect(), Effect::Deny);
    assert_eq!(d.rule_ids(), ["no-secrets-many"]);
    // One escaping element denies the whole call.
    let d = call(
        &p,
        &alice(),
        "read_multiple_files",
        json!({"paths": ["team/a", "../etc/passwd"]}),
    );
    assert_eq!(d.effect(), Effect::Deny);
    assert!(d.reason().contains("`paths`"), "{d}");
}

#[test]
fn paths_are_normalised_and_dot_dot_out_of_the_root_is_refused() {
    let p = policy();
    for escape in [
        "../etc/passwd",
        "team/../../etc/passwd",
        "/srv/../etc/shadow",
    ] {
        let d = call(&p, &root(), "read_file", json!({"path": escape}));
        assert_eq!(d.effect(), Effect::Deny, "{escape}");
        assert_eq!(
            d.reason(),
            "argument `path` uses `..` to leave the root `/srv`",
            "{escape}"
        );
    }
    let d = call(&p, &root(), "read_file", json!({"path": "/etc/passwd"}));
    assert_eq!(d.reason(), "argument `path` is outside the root `/srv`");
    // `..` that stays inside the root is fine, and is judged where it lands.
    let d = call(
        &p,
        &root(),
        "read_file",
        json!({"path": "team/x/../secrets/key"}),
    );
    assert_eq!(d.effect(), Effect::Deny);
    assert_eq!(d.rule_ids(), ["no-secrets"]);
    let w = carol(&["files:write"]);
    assert_eq!(
        call(&p, &w, "write_file", json!({"path": "team/x/../y"})).effect(),
        Effect::Allow
    );
    assert_eq!(
        call(&p, &w, "write_file", json!({"path": "team/../other/y"})).effect(),
        Effect::Deny
    );
    // Both paths of a move are checked.
    let d = call(
        &p,
        &w,
        "move_file",
        json!({"source": "team/a", "destination": "team/b"}),
    );
    assert_eq!(d.effect(), Effect::Allow, "{d}");
    let d = call(
        &p,
        &w,
        "move_file",
        json!({"source": "team/a", "destination": "public/a"}),
    );
    assert_eq!(d.effect(), Effect::Deny);
    let d = call(
        &p,
        &w,
        "move_file",
        json!({"source": "team/a", "destination": "team/../../a"}),
    );
    assert_eq!(d.effect(), Effect::Deny);
    assert!(d.reason().contains("`destination`"), "{d}");
}

#[test]
fn url_rules_see_the_scheme_and_host() {
    let p = policy();
    let fetch = |url: &str| call(&p, &alice(), "fetch", json!({"url": url}));
    assert_eq!(fetch("https://docs.rs/serde").effect(), Effect::Allow);
    assert_eq!(fetch("HTTPS://API.Example.COM./v1").effect(), Effect::Allow);
    for refused in [
        "http://docs.rs/serde",
        "https://evil.test/",
        "https://docs.rs.evil.test/",
        "https://example.com/",
        "https://evilexample.com/",
        "file:///etc/passwd",
    ] {
        assert_eq!(fetch(refused).effect(), Effect::Deny, "{refused}");
    }
    let d = fetch("not a url");
    assert_eq!(d.effect(), Effect::Deny);
    assert_eq!(d.reason(), "argument `url` is not an absolute URL");
}

#[test]
fn a_permit_with_step_up_scopes_reports_the_missing_ones() {
    let p = policy();
    let d = call(
        &p,
        &carol(&["files:read"]),
        "write_file",
        json!({"path": "team/a"}),
    );
    assert_eq!(d.effect(), Effect::StepUp);
    assert_eq!(d.missing_scopes(), ["files:write"]);
    assert_eq!(d.rule_ids(), ["eng-write-team"]);
    let d = call(
        &p,
        &carol(&["files:write"]),
        "write_file",
        json!({"path": "team/a"}),
    );
    assert_eq!(d.effect(), Effect::Allow);
    assert!(d.missing_scopes().is_empty());
    // A forbid still wins over a step-up.
    let d = call(
        &p,
        &carol(&[]),
        "write_file",
        json!({"path": "team/secrets/a"}),
    );
    assert_eq!(d.effect(), Effect::Deny);
}

#[test]
fn a_list_shows_exactly_what_some_arguments_could_make_callable() {
    let p = policy();
    let users = [alice(), bob(), root(), carol(&[]), carol(&["files:write"])];
    let paths = ["team/a", "team/secrets/k", "other/a", "/srv/team", "../x"];
    let urls = [
        "https://docs.rs/",
        "http://docs.rs/",
        "https://a.example.com/",
        "https://evil.test/",
    ];
    let mut candidates: Vec<(&str, Value)> = Vec::new();
    for path in paths {
        for tool in ["read_file", "write_file", "list_directory"] {
            candidates.push((tool, json!({"path": path})));
        }
        candidates.push(("read_multiple_files", json!({"paths": [path]})));
        for dest in paths {
            candidates.push(("move_file", json!({"source": path, "destination": dest})));
        }
    }
    for url in urls {
        candidates.push(("fetch", json!({"url": url})));
    }
    let mut shown = 0;
    for user in &users {
        for tool in catalog().tools() {
            let name = tool.name();
            let callable = candidates
                .iter()
                .filter(|(t, _)| *t == name)
                .any(|(_, args)| call(&p, user, name, args.clone()).effect() != Effect::Deny);
            assert_eq!(
                p.visible(user, Target::Tool(name)),
                callable,
                "{} / {name}: {}",
                user.sub(),
                p.list_decision(user, Target::Tool(name))
            );
            shown += usize::from(callable);
        }
    }
    // The property is not vacuous: some are shown, some hidden.
    assert!(shown > 0 && shown < users.len() * catalog().tools().count());
    assert!(!p.visible(&bob(), Target::Tool("read_file")));
    assert!(
        p.visible(&carol(&[]), Target::Tool("write_file")),
        "a step-up tool stays listed"
    );
    assert!(!p.visible(&root(), Target::Tool("no_such_tool")));
}

#[test]
fn sign_in_is_refused_outside_the_allowed_domain() {
    let p = policy();
    let d = p.sign_in(&bob());
    assert_eq!(d.effect(), Effect::Deny);
    assert!(d.rule_ids().is_empty());
    let d = p.sign_in(&alice());
    assert_eq!(
        (d.effect(), d.rule_ids()),
        (Effect::Allow, &["staff".to_owned()][..])
    );
    let d = p.sign_in(&Subject::new("c").email("Contractor@Partner.io"));
    assert_eq!(d.rule_ids(), ["contractor"]);
    // Without an email (or with an unverified one) no domain rule matches.
    assert_eq!(p.sign_in(&Subject::new("x")).effect(), Effect::Deny);
}

#[test]
fn requested_scopes_are_cut_to_what_the_policy_grants() {
    let p = policy();
    let grant = p.grant_scopes(&alice(), &["files:read", "files:write", "admin"]);
    assert_eq!(grant.granted, ["files:read"]);
    assert_eq!(grant.refused, ["files:write", "admin"]);
    assert_eq!(grant.rule_ids, ["everyone-reads"]);
    let grant = p.grant_scopes(&carol(&[]), &["files:write", "files:read"]);
    assert_eq!(grant.granted, ["files:write", "files:read"]);
    assert_eq!(grant.rule_ids, ["eng-writes", "everyone-reads"]);
}

#[test]
fn without_sign_in_or_grant_rules_those_are_not_governed() {
    let config = PolicyConfig::new().rule(Rule::permit("all").tools(["*"]));
    let p = Policy::new(config, catalog()).unwrap();
    assert_eq!(p.sign_in(&bob()).effect(), Effect::Allow);
    assert_eq!(p.grant_scopes(&bob(), &["admin"]).granted, ["admin"]);
}

fn error_of(policy: &str) -> String {
    let config = PolicyConfig::from_toml(policy, "policy.toml").unwrap();
    Policy::new(config, catalog()).unwrap_err().to_string()
}

#[test]
fn a_misspelled_argument_is_an_error_naming_the_rule_and_line() {
    let err = error_of(
        r#"[policy]
[policy.arguments]
paths = ["path"]

[[policy.rule]]
id = "typo"
tools = ["write_file"]
args.pth = { under = "/srv" }
"#,
    );
    assert_eq!(
        err,
        "policy.toml:5: rule `typo`: argument `pth` is not an argument of tool `write_file` (its arguments: content, path)"
    );
}

#[test]
fn an_argument_one_matched_tool_lacks_is_an_error() {
    // `read_*` also matches read_multiple_files, whose argument is `paths`.
    let err = error_of(
        "[policy.arguments]\npaths = [\"path\"]\n[[policy.rule]]\nid = \"reads\"\ntools = [\"read_*\"]\nargs.path = { under = \"/x\" }\n",
    );
    assert!(
        err.contains("policy.toml:3: rule `reads`: argument `path` is not an argument of tool `read_multiple_files`"),
        "{err}"
    );
}

#[test]
fn an_unknown_tool_is_an_error_naming_the_rule_and_line() {
    let err =
        error_of("[policy]\n\n[[policy.rule]]\nid = \"old\"\ntools = [\"delete_everything\"]\n");
    assert_eq!(
        err,
        "policy.toml:3: rule `old`: unknown tool `delete_everything` (the server does not list it)"
    );
    let err = error_of("[policy]\n[[policy.rule]]\nid = \"g\"\ntools = [\"rm_*\"]\n");
    assert!(err.contains("`rm_*` matches no tool"), "{err}");
}

#[test]
fn a_claim_that_is_never_present_is_an_error() {
    let err = error_of(
        "[policy]\nclaims = { department = \"string\" }\n[[policy.rule]]\nid = \"dept\"\nwho = { claims = { dept = [\"eng\"] } }\ntools = [\"read_file\"]\n",
    );
    assert_eq!(
        err,
        "policy.toml:3: rule `dept`: claim `dept` is not declared under [policy.claims], so it is never present"
    );
    let err = error_of(
        "[policy]\n[[policy.rule]]\nid = \"g\"\nwho = { groups = [\"eng\"] }\ntools = [\"read_file\"]\n",
    );
    assert!(err.contains("group `eng` is never assigned"), "{err}");
    let err = error_of(
        "[policy]\n[[policy.rule]]\nid = \"e\"\nwho = { emails = [] }\ntools = [\"read_file\"]\n",
    );
    assert!(err.contains("`who.emails` is empty"), "{err}");
}

#[test]
fn constraint_kinds_must_fit_the_argument() {
    let err = error_of(
        "[policy.arguments]\nurls = [\"url\"]\n[[policy.rule]]\nid = \"u\"\ntools = [\"read_file\"]\nargs.path = { under = \"/srv\" }\n",
    );
    assert!(
        err.contains("`under` needs a path argument: list `path` under [policy.arguments] paths"),
        "{err}"
    );
    let err = error_of(
        "[[policy.rule]]\nid = \"h\"\ntools = [\"read_file\"]\nargs.head = { one_of = [\"x\"] }\n",
    );
    assert!(
        err.contains("`one_of` value \"x\" is not an integer"),
        "{err}"
    );
    let err = error_of(
        "[[policy.rule]]\nid = \"h\"\ntools = [\"fetch\"]\nargs.url = { hosts = [\"docs.rs\"] }\n",
    );
    assert!(
        err.contains("list `url` under [policy.arguments] urls"),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = error_of(
        "[[policy.rule]]\nid = \"a\"\ntools = [\"nope\"]\n[[policy.rule]]\nid = \"b\"\ntools = [\"gone\"]\n",
    );
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.contains("rule `a`") && err.contains("rule `b`"),
        "{err}"
    );
}

#[test]
fn toml_mistakes_name_the_line() {
    let err = PolicyConfig::from_toml(
        "[policy]\n[[policy.rule]]\nid = \"x\"\nefect = \"forbid\"\n",
        "p.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("p.toml:4: unknown field `efect`"), "{err}");
    let err = PolicyConfig::from_toml("[polcy]\n", "p.toml")
        .unwrap_err()
        .to_string();
    assert_eq!(err, "p.toml: there is no [policy] table");
}

const ESCAPE_HATCH: &str = r#"// Contractors never run destructive tools.
@id("contractors-no-destructive")
forbid (principal, action == Action::"call_tool", resource)
when { principal has email_domain && principal.email_domain == "partner.io" && resource.destructiveHint };

@id("contractors-read")
permit (principal, action == Action::"call_tool", resource in Server::"fs")
when { principal has email_domain && principal.email_domain == "partner.io" };
"#;

#[test]
fn raw_cedar_is_the_escape_hatch() {
    let config = PolicyConfig::from_toml(POLICY, "policy.toml")
        .unwrap()
        .cedar("extra.cedar", ESCAPE_HATCH);
    let p = Policy::new(config, catalog()).unwrap();
    let contractor = Subject::new("c").email("contractor@partner.io");
    let d = call(&p, &contractor, "read_file", json!({"path": "a"}));
    assert_eq!(
        (d.effect(), d.rule_ids()),
        (Effect::Allow, &["contractors-read".to_owned()][..])
    );
    let d = call(&p, &contractor, "write_file", json!({"path": "a"}));
    assert_eq!(d.rule_ids(), ["contractors-no-destructive"]);
    assert_eq!(d.effect(), Effect::Deny);
    assert!(!p.visible(&contractor, Target::Tool("move_file")));
    assert!(p.cedar_policies().contains("@id(\"eng-write-team\")"));
    assert!(p.cedar_schema().contains("action call_tool"));
}

#[test]
fn raw_cedar_is_validated_against_the_tools() {
    let check = |cedar: &str| {
        let config = PolicyConfig::new().cedar("extra.cedar", cedar);
        Policy::new(config, catalog()).unwrap_err().to_string()
    };
    let err = check(
        "@id(\"ok\")\npermit (principal, action, resource);\n\n@id(\"typo\")\npermit (principal, action == Action::\"call_tool\", resource)\nwhen { context.args has pth && context.args.pth == \"x\" };\n",
    );
    // `has pth` on a record without `pth` is always false: the rule could never apply.
    assert!(
        err.starts_with("extra.cedar:4: rule `typo`: this rule can never apply"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Without the `has` guard the validator names the attribute and its line.
    let err = check(
        "@id(\"typo\")\npermit (principal, action == Action::\"call_tool\", resource)\nwhen { context.args.pth == \"x\" };\n",
    );
    assert!(err.starts_with("extra.cedar:3: rule `typo`: "), "{err}");
    assert!(err.contains("pth"), "{err}");
    let err = check("@id(\"gone\")\npermit (principal, action, resource == Tool::\"nope\");\n");
    assert_eq!(
        err,
        "extra.cedar:2: rule `gone`: unknown tool `nope` (the server does not list it)"
    );
    let err = check(
        "@id(\"claim\")\npermit (principal, action, resource)\nwhen { principal.claims.team == \"x\" };\n",
    );
    assert!(err.starts_with("extra.cedar:3: rule `claim`: "), "{err}");
    let err = check("permit (principal, action, resource) when { principal.nope };\n");
    assert!(
        err.starts_with("extra.cedar:1: rule `extra.cedar#1`: "),
        "{err}"
    );
    let err = check("permit (principal, action resource);\n");
    assert!(err.starts_with("extra.cedar:1: "), "{err}");
}

#[test]
fn a_changed_tool_set_is_checked_again() {
    let p = policy();
    let fewer = Catalog::from_json(&json!({"tools": [
        {"name": "read_file", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}}
    ]}))
    .unwrap();
    let err = p.with_catalog(fewer).unwrap_err().to_string();
    assert!(
        err.contains("rule `eng-write-team`: unknown tool `write_file`"),
        "{err}"
    );
    let same = p.with_catalog(catalog()).unwrap();
    assert_eq!(
        call(&same, &alice(), "read_file", json!({"path": "a"})).effect(),
        Effect::Allow
    );
}

#[test]
fn the_rust_builder_matches_the_toml() {
    let config = PolicyConfig::new()
        .root("/srv")
        .path_arguments(["path", "paths", "source", "destination"])
        .group_claim("groups")
        .claim("department", ClaimKind::String)
        .rule(
            Rule::permit("staff-read")
                .who(Who::new().email_domains(["example.com"]))
                .tools(["read_*"]),
        )
        .rule(
            Rule::permit("eng-write-team")
                .who(Who::new().groups(["eng"]).claim("department", ["platform"]))
                .tools(["write_file"])
                .arg("path", ArgRule::new().under("/srv/team"))
                .step_up(["files:write"]),
        )
        .rule(
            Rule::forbid("no-secrets")
                .tools(["read_file"])
                .arg("path", ArgRule::new().under("team/secrets")),
        );
    let p = Policy::new(config, catalog()).unwrap();
    assert_eq!(
        call(&p, &alice(), "read_file", json!({"path": "team/a"})).effect(),
        Effect::Allow
    );
    assert_eq!(
        call(&p, &alice(), "read_file", json!({"path": "team/secrets/a"})).effect(),
        Effect::Deny
    );
    let d = call(&p, &carol(&[]), "write_file", json!({"path": "team/a"}));
    assert_eq!(d.missing_scopes(), ["files:write"]);
    // The department claim is an alternative to the group.
    let platform = Subject::new("p").scopes(["files:write"]).claims(
        json!({"department": "platform"})
            .as_object()
            .cloned()
            .unwrap(),
    );
    assert_eq!(
        call(&p, &platform, "write_file", json!({"path": "team/a"})).effect(),
        Effect::Allow
    );
}

#[test]
fn explain_says_what_decided_and_where_groups_came_from() {
    let p = policy();
    let user = Subject::new("kc")
        .email("root@example.com")
        .claims(
            json!({"realm_access": {"roles": ["eng"]}})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .group("octo/team", "github teams");
    let explanation = p.explain(
        &user,
        Target::Tool("write_file"),
        Some(&json!({"path": "team/./a"})),
    );
    // An admin (by the policy's list) needs no step-up: `admins-everything` has none.
    assert_eq!(explanation.decision.effect(), Effect::Allow);
    assert_eq!(explanation.arguments, json!({"path": "/srv/team/a"}));
    let sources: Vec<(&str, &GroupSource)> = explanation
        .groups
        .iter()
        .map(|m| (m.group.as_str(), &m.source))
        .collect();
    assert!(
        sources.contains(&("eng", &GroupSource::Claim("realm_access.roles".into()))),
        "{sources:?}"
    );
    assert!(
        sources.contains(&("admins", &GroupSource::Policy)),
        "{sources:?}"
    );
    assert!(
        sources.contains(&("octo/team", &GroupSource::Given("github teams".into()))),
        "{sources:?}"
    );
    let text = explanation.to_string();
    assert!(text.contains("decision: allow\n"), "{text}");
    assert!(
        text.contains("rules: admins-everything, eng-write-team\n"),
        "{text}"
    );
    assert!(
        text.contains("group: eng (from claim `realm_access.roles`)"),
        "{text}"
    );
    assert!(
        text.contains("arguments: {\"path\":\"/srv/team/a\"}"),
        "{text}"
    );
}

#[test]
fn fixtures_run_and_report_failures_with_their_line() {
    let fixtures = Fixtures::from_toml(
        r#"
[[case]]
name = "alice reads"
as = { email = "alice@example.com" }
tool = "read_file"
args = { path = "team/a.md" }
expect = "allow"
rules = ["staff-read"]

[[case]]
name = "bob cannot sign in"
as = { email = "bob@gmail.com" }
sign_in = true
expect = "deny"

[[case]]
name = "carol steps up"
as = { email = "carol@example.com", groups = ["eng"] }
tool = "write_file"
args = { path = "team/a" }
expect = "step-up"

[[case]]
name = "alice gets read only"
as = { email = "alice@example.com" }
scopes = ["files:read", "files:write"]
granted = ["files:read"]

[[case]]
name = "wrong on purpose"
as = { email = "bob@gmail.com" }
list_tool = "read_file"
expect = "allow"
"#,
        "cases.toml",
    )
    .unwrap();
    assert_eq!(fixtures.len(), 5);
    let report = fixtures.run(&policy());
    assert_eq!(report.passed, 4, "{:?}", report.failures);
    assert_eq!(report.failures.len(), 1);
    let failure = report.failures[0].to_string();
    assert!(
        failure.starts_with("cases.toml:29: case `wrong on purpose`: expected allow, got deny"),
        "{failure}"
    );
    let err = Fixtures::from_toml(
        "[[case]]\nname = \"x\"\nas = {}\nexpect = \"allow\"\n",
        "c.toml",
    )
    .unwrap_err();
    assert!(err.to_string().contains("asks exactly one of"), "{err}");
}

#[test]
fn hostile_arguments_are_denied_without_panicking() {
    let p = policy();
    let w = carol(&["files:write"]);
    let many: Vec<String> = (0..20).map(|i| format!("team/{i}")).collect();
    // Refused whatever the tool: not an object, wrong types, paths some server would
    // read differently.
    let malformed = [
        json!("a string"),
        json!([1, 2]),
        json!({"path": 5}),
        json!({"path": ["team/a"]}),
        json!({"paths": "team/a"}),
        json!({"paths": [1]}),
        json!({"path": "team/a\u{0}b"}),
        json!({"path": "team\\..\\..\\windows"}),
        json!({"path": "~/.ssh/id_rsa"}),
        json!({"url": 3}),
        json!({"source": "team/a", "destination": false}),
    ];
    for args in &malformed {
        for tool in [
            "read_file",
            "write_file",
            "read_multiple_files",
            "fetch",
            "move_file",
        ] {
            let d = p.decide(&w, Target::Tool(tool), Some(args));
            let irrelevant = match tool {
                "read_file" | "write_file" => args.get("path").is_none(),
                "read_multiple_files" => args.get("paths").is_none(),
                "fetch" => args.get("url").is_none(),
                _ => args.get("destination").is_none(),
            };
            if !irrelevant || !args.is_object() {
                assert_eq!(d.effect(), Effect::Deny, "{tool} {args}: {d}");
            }
        }
    }
    // Tools whose permits need arguments deny a call without them.
    for args in [json!(null), json!({}), json!({"path": null})] {
        for tool in ["write_file", "fetch", "move_file"] {
            assert_eq!(
                p.decide(&w, Target::Tool(tool), Some(&args)).effect(),
                Effect::Deny,
                "{tool} {args}"
            );
        }
    }
    let long = call(
        &p,
        &w,
        "write_file",
        json!({"path": format!("team/{}", "x".repeat(100_000))}),
    );
    assert_eq!(long.effect(), Effect::Allow);
    // Two arrays of 20 would be 400 combinations: refused with a reason.
    let two_arrays = Catalog::from_json(
        &json!([{"name": "sync", "inputSchema": {"type": "object", "properties": {
        "from": {"type": "array", "items": {"type": "string"}},
        "to": {"type": "array", "items": {"type": "string"}}}}}]),
    )
    .unwrap();
    let p2 = Policy::new(
        PolicyConfig::new().rule(Rule::permit("all").tools(["sync"])),
        two_arrays,
    )
    .unwrap();
    let d = p2.decide(
        &alice(),
        Target::Tool("sync"),
        Some(&json!({"from": many, "to": many})),
    );
    assert_eq!(d.effect(), Effect::Deny);
    assert!(d.reason().contains("400 combinations"), "{d}");
    let d = p2.decide(
        &alice(),
        Target::Tool("sync"),
        Some(&json!({"from": ["a"], "to": ["b", "c"]})),
    );
    assert_eq!(d.effect(), Effect::Allow);
}

#[test]
fn target_from_a_json_rpc_request() {
    let params = json!({"name": "read_file", "arguments": {"path": "a"}});
    let (target, args) = Target::from_request("tools/call", &params).unwrap();
    assert_eq!(target, Target::Tool("read_file"));
    assert_eq!(args, Some(&json!({"path": "a"})));
    let params = json!({"uri": "file:///a"});
    assert_eq!(
        Target::from_request("resources/read", &params),
        Some((Target::Resource("file:///a"), None))
    );
    assert_eq!(Target::from_request("tools/list", &json!({})), None);
}

#[test]
fn prompts_and_resources_follow_their_rules() {
    let catalog = catalog()
        .prompt("summarise")
        .resource("file:///srv/readme.md")
        .resource("file:///srv/secret");
    let config = PolicyConfig::new()
        .rule(
            Rule::permit("prompts")
                .who(Who::new().email_domains(["example.com"]))
                .prompts(["*"]),
        )
        .rule(Rule::permit("readme").resources(["file:///srv/readme*"]));
    let p = Policy::new(config, catalog).unwrap();
    assert!(
        p.decide(&alice(), Target::Prompt("summarise"), None)
            .is_allowed()
    );
    assert!(
        !p.decide(&bob(), Target::Prompt("summarise"), None)
            .is_allowed()
    );
    assert!(
        p.decide(&bob(), Target::Resource("file:///srv/readme.md"), None)
            .is_allowed()
    );
    assert!(!p.visible(&bob(), Target::Resource("file:///srv/secret")));
    assert!(
        !p.decide(&alice(), Target::Resource("file:///srv/other"), None)
            .is_allowed()
    );
}

#[test]
fn a_policy_file_reads_its_cedar_files_next_to_it() {
    let dir = std::env::temp_dir().join(format!("mcp-oauth-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.toml");
    // `cedar_files` lands on line 3 (POLICY opens with an empty line, then `[policy]`).
    let text = POLICY.replacen(
        "[policy]\n",
        "[policy]\ncedar_files = [\"extra.cedar\"]\n",
        1,
    );
    std::fs::write(&file, &text).unwrap();

    let missing = PolicyConfig::from_file(&file).unwrap_err().to_string();
    assert!(missing.contains(":3: cannot read cedar file"), "{missing}");

    std::fs::write(dir.join("extra.cedar"), ESCAPE_HATCH).unwrap();
    let p = Policy::new(PolicyConfig::from_file(&file).unwrap(), catalog()).unwrap();
    let contractor = Subject::new("c").email("contractor@partner.io");
    assert_eq!(
        call(&p, &contractor, "write_file", json!({"path": "a"})).rule_ids(),
        ["contractors-no-destructive"]
    );

    let from_text =
        PolicyConfig::from_toml(&std::fs::read_to_string(&file).unwrap(), "policy.toml")
            .unwrap_err();
    assert!(
        from_text.to_string().contains("PolicyConfig::from_file"),
        "{from_text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_cedar_policy_for_several_actions_applies_to_each() {
    let catalog = catalog().prompt("summarise");
    let config = PolicyConfig::new().cedar(
        "extra.cedar",
        "@id(\"staff\")\npermit (principal, action in [Action::\"call_tool\", Action::\"get_prompt\"], resource)\nwhen { principal has email_domain && principal.email_domain == \"example.com\" };\n",
    );
    let p = Policy::new(config, catalog).unwrap();
    assert!(call(&p, &alice(), "fetch", json!({"url": "https://x.test/"})).is_allowed());
    assert!(
        p.decide(&alice(), Target::Prompt("summarise"), None)
            .is_allowed()
    );
    assert!(
        !p.decide(&bob(), Target::Prompt("summarise"), None)
            .is_allowed()
    );
    // Sign-in is not named, so it stays ungoverned.
    assert_eq!(p.sign_in(&bob()).effect(), Effect::Allow);
}

#[test]
fn a_rule_names_one_kind_of_target() {
    let err =
        error_of("[[policy.rule]]\nid = \"both\"\ntools = [\"read_file\"]\nprompts = [\"p\"]\n");
    assert!(
        err.contains("rule `both`: a rule names only one of"),
        "{err}"
    );
    let err = error_of("[[policy.rule]]\nid = \"none\"\n");
    assert!(
        err.contains("rule `none`: a rule names `tools`, `prompts` or `resources`"),
        "{err}"
    );
    let err = error_of("[[policy.sign_in]]\nid = \"s\"\ntools = [\"read_file\"]\n");
    assert!(err.contains("a sign-in rule has only"), "{err}");
    let err = error_of(
        "[[policy.rule]]\nid = \"f\"\neffect = \"forbid\"\ntools = [\"read_file\"]\nstep_up_scopes = [\"x\"]\n",
    );
    assert!(
        err.contains("a forbid rule cannot have step_up_scopes"),
        "{err}"
    );
    let err = error_of(
        "[[policy.rule]]\nid = \"d\"\ntools = [\"read_file\"]\n[[policy.rule]]\nid = \"d\"\ntools = [\"fetch\"]\n",
    );
    assert!(
        err.contains("policy.toml:4: rule `d`: two rules have this id"),
        "{err}"
    );
}

#[test]
fn odd_names_are_quoted_not_injected() {
    let catalog = Catalog::from_json(&json!({"tools": [
        {"name": "t\"); permit(principal, action, resource); //", "inputSchema": {"type": "object",
            "properties": {"mode\" || true || \"": {"type": "string"}, "n": {"type": 5}, "x": {}}}},
        {"name": "plain", "inputSchema": {"properties": "not an object"}}
    ]}))
    .unwrap();
    let odd_tool = "t\"); permit(principal, action, resource); //";
    let odd_arg = "mode\" || true || \"";
    let config = PolicyConfig::new().rule(
        Rule::permit("odd\"id")
            .who(Who::new().emails(["a\"@b.c"]))
            .tools([odd_tool])
            .arg(odd_arg, ArgRule::new().one_of(["safe"])),
    );
    let p = Policy::new(config, catalog).unwrap();
    let user = Subject::new("u").email("a\"@b.c");
    let ok = p.decide(
        &user,
        Target::Tool(odd_tool),
        Some(&json!({odd_arg: "safe"})),
    );
    assert_eq!(ok.rule_ids(), ["odd\"id"]);
    assert!(ok.is_allowed());
    assert!(
        !p.decide(
            &user,
            Target::Tool(odd_tool),
            Some(&json!({odd_arg: "other"}))
        )
        .is_allowed()
    );
    assert!(!p.decide(&user, Target::Tool("plain"), None).is_allowed());
    assert!(
        !p.decide(
            &bob(),
            Target::Tool(odd_tool),
            Some(&json!({odd_arg: "safe"}))
        )
        .is_allowed()
    );
}
