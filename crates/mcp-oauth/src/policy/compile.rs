//! The rule layer compiled to Cedar: the schema generated from the catalog, and one Cedar
//! policy per rule, each checked against the tools it names before Cedar's own validator runs.
//!
//! Why one file of this size: the schema and the policies are generated together from the
//! same catalog, and each rule is checked against the tools it names with the messages that
//! say what to fix.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;

use super::canon::{self, ArgKind};
use super::catalog::{ArgType, Catalog, Prim};
use super::config::{ArgRule, ClaimKind, PolicyConfig, Rule, RuleEffect, RuleKind, Who};
use super::error::{Origin, Problems};
use super::glob::glob;

/// One argument of one tool, as rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgEntry {
    /// A value of this kind; `array` when the argument is an array checked element by element.
    Spec { kind: ArgKind, array: bool },
    /// Something rules cannot constrain, with the reason.
    Unsupported(&'static str),
}

/// Every tool's arguments, and the one record type they share in the Cedar context.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shapes {
    pub(crate) tools: BTreeMap<String, BTreeMap<String, ArgEntry>>,
    /// Argument name to kind, for names that have one kind in every tool.
    pub(crate) union: BTreeMap<String, ArgKind>,
    /// Argument names with different kinds in different tools.
    pub(crate) conflicts: BTreeMap<String, BTreeSet<ArgKind>>,
}

impl Shapes {
    pub(crate) fn new(config: &PolicyConfig, catalog: &Catalog) -> Self {
        let mut shapes = Self::default();
        let mut kinds: BTreeMap<String, BTreeSet<ArgKind>> = BTreeMap::new();
        for tool in catalog.tools() {
            let mut args = BTreeMap::new();
            for (name, ty) in tool.arguments() {
                let entry = match ty {
                    ArgType::Scalar(prim) => ArgEntry::Spec {
                        kind: kind_of(config, &name, prim),
                        array: false,
                    },
                    ArgType::Array(prim) => ArgEntry::Spec {
                        kind: kind_of(config, &name, prim),
                        array: true,
                    },
                    ArgType::Unsupported(why) => ArgEntry::Unsupported(why),
                };
                if let ArgEntry::Spec { kind, .. } = entry {
                    kinds.entry(name.clone()).or_default().insert(kind);
                }
                args.insert(name, entry);
            }
            shapes.tools.insert(tool.name().to_owned(), args);
        }
        for (name, set) in kinds {
            let mut iter = set.iter();
            match (iter.next(), iter.next()) {
                (Some(kind), None) => {
                    shapes.union.insert(name, *kind);
                }
                _ => {
                    shapes.conflicts.insert(name, set);
                }
            }
        }
        shapes
    }
}

fn kind_of(config: &PolicyConfig, name: &str, prim: Prim) -> ArgKind {
    match prim {
        Prim::String if config.path_args.iter().any(|a| a == name) => ArgKind::Path,
        Prim::String if config.url_args.iter().any(|a| a == name) => ArgKind::Url,
        Prim::String => ArgKind::Text,
        Prim::Integer => ArgKind::Long,
        Prim::Boolean => ArgKind::Bool,
    }
}

/// A Cedar string literal (also a quoted record attribute name in a schema).
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `like` pattern that matches `prefix` followed by anything (`*` in the prefix is literal).
fn like_prefix(prefix: &str) -> String {
    let escaped = quote(prefix);
    let inner = escaped
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_default()
        .replace('*', "\\*");
    format!("\"{inner}*\"")
}

fn set_literal<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(quote).collect();
    format!("[{}]", items.join(", "))
}

/// The Cedar schema for a catalog under a configuration.
pub(crate) fn schema_text(config: &PolicyConfig, shapes: &Shapes) -> String {
    let mut claims = Vec::new();
    for (name, kind) in &config.claims {
        claims.push(match kind {
            ClaimKind::String => format!("{}?: String", quote(name)),
            ClaimKind::Set => format!("{}: Set<String>", quote(name)),
        });
    }
    let mut args = Vec::new();
    for (name, kind) in &shapes.union {
        args.push(format!("{}?: {}", quote(name), kind.cedar_type()));
    }
    format!(
        "type Url = {{ scheme: String, host: String }};\n\
         entity Server;\n\
         entity Group;\n\
         entity Scope;\n\
         entity User in [Group] {{ sub: String, email?: String, email_domain?: String, \
         scopes: Set<String>, client_id?: String, claims: {{ {claims} }} }};\n\
         entity Tool in [Server] {{ name: String, readOnlyHint: Bool, destructiveHint: Bool, \
         idempotentHint: Bool, openWorldHint: Bool }};\n\
         entity Prompt in [Server] {{ name: String }};\n\
         entity Resource in [Server] {{ uri: String }};\n\
         action call_tool appliesTo {{ principal: [User], resource: [Tool], context: {{ args: {{ {args} }} }} }};\n\
         action get_prompt appliesTo {{ principal: [User], resource: [Prompt], context: {{}} }};\n\
         action read_resource appliesTo {{ principal: [User], resource: [Resource], context: {{}} }};\n\
         action sign_in appliesTo {{ principal: [User], resource: [Server], context: {{}} }};\n\
         action grant_scope appliesTo {{ principal: [User], resource: [Scope], context: {{}} }};\n",
        claims = claims.join(", "),
        args = args.join(", "),
    )
}

/// One rule compiled to Cedar.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub(crate) id: String,
    pub(crate) text: String,
    pub(crate) step_up: Vec<String>,
    /// The Cedar action the rule is for.
    pub(crate) action: &'static str,
    /// The tools, prompts or resources it names (`None`: not about one).
    pub(crate) targets: Option<Vec<String>>,
}

/// What a rule needs that does not change per rule.
pub(crate) struct Context<'a> {
    pub(crate) config: &'a PolicyConfig,
    pub(crate) catalog: &'a Catalog,
    pub(crate) shapes: &'a Shapes,
}

impl Context<'_> {
    /// Whether a group can ever be assigned: defined by the policy, or possibly in a claim.
    pub(crate) fn group_known(&self, group: &str) -> bool {
        !self.config.group_claims.is_empty()
            || self.config.groups.iter().any(|(g, _, _)| g == group)
    }

    pub(crate) fn compile(
        &self,
        kind: RuleKind,
        rule: &Rule,
        origin: &Origin,
        problems: &mut Problems,
    ) -> Option<Compiled> {
        let before = problems_len(problems);
        let mut report = |message: String| problems.push(Some(&rule.id), origin, message);
        let mut conds = Vec::new();
        let mut targets = None;
        let action = match kind {
            RuleKind::SignIn => {
                if has_targets(rule) || !rule.step_up_scopes.is_empty() || !rule.scopes.is_empty() {
                    report("a sign-in rule has only `id`, `effect` and `who`".to_owned());
                }
                "sign_in"
            }
            RuleKind::Grant => {
                if has_targets(rule) || !rule.step_up_scopes.is_empty() {
                    report("a scope grant has only `id`, `effect`, `who` and `scopes`".to_owned());
                }
                if rule.scopes.is_empty() {
                    report("a scope grant needs `scopes`".to_owned());
                } else {
                    let scopes: Vec<String> = rule
                        .scopes
                        .iter()
                        .map(|s| format!("Scope::{}", quote(s)))
                        .collect();
                    conds.push(format!("[{}].contains(resource)", scopes.join(", ")));
                }
                "grant_scope"
            }
            RuleKind::Call => {
                if !rule.scopes.is_empty() {
                    report(
                        "`scopes` belongs to [[policy.grant]]; a scope this call needs is a `step_up_scopes`"
                            .to_owned(),
                    );
                }
                if rule.effect == RuleEffect::Forbid && !rule.step_up_scopes.is_empty() {
                    report("a forbid rule cannot have step_up_scopes (it never allows)".to_owned());
                }
                let named = [
                    !rule.tools.is_empty(),
                    !rule.prompts.is_empty(),
                    !rule.resources.is_empty(),
                ]
                .iter()
                .filter(|b| **b)
                .count();
                if named != 1 {
                    report(if named == 0 {
                        "a rule names `tools`, `prompts` or `resources`".to_owned()
                    } else {
                        "a rule names only one of `tools`, `prompts` and `resources`; split it"
                            .to_owned()
                    });
                    return None;
                }
                if !rule.args.is_empty() && rule.tools.is_empty() {
                    report("argument constraints (`args`) apply to tools only".to_owned());
                }
                let (action, entity, names) = if !rule.tools.is_empty() {
                    let names: Vec<String> =
                        self.catalog.tools().map(|t| t.name().to_owned()).collect();
                    (
                        "call_tool",
                        "Tool",
                        self.expand(&rule.tools, &names, "tool", &mut report),
                    )
                } else if !rule.prompts.is_empty() {
                    let names: Vec<String> = self.catalog.prompts().map(str::to_owned).collect();
                    (
                        "get_prompt",
                        "Prompt",
                        self.expand(&rule.prompts, &names, "prompt", &mut report),
                    )
                } else {
                    let names: Vec<String> = self.catalog.resources().map(str::to_owned).collect();
                    (
                        "read_resource",
                        "Resource",
                        self.expand(&rule.resources, &names, "resource", &mut report),
                    )
                };
                targets = Some(names.clone());
                if !names.is_empty() {
                    let uids: Vec<String> = names
                        .iter()
                        .map(|n| format!("{entity}::{}", quote(n)))
                        .collect();
                    conds.push(format!("resource in [{}]", uids.join(", ")));
                }
                // Who before the arguments: a list decision (arguments unknown) then sees a
                // user the rule is not about as `false`, not as "depends on the arguments".
                if let Some(cond) = self.who_cond(&rule.who, &mut report) {
                    conds.push(cond);
                }
                for (arg, arg_rule) in &rule.args {
                    if let Some(cond) = self.arg_cond(arg, arg_rule, &names, &mut report) {
                        conds.push(cond);
                    }
                }
                action
            }
        };
        if kind != RuleKind::Call
            && let Some(cond) = self.who_cond(&rule.who, &mut report)
        {
            conds.push(cond);
        }
        if problems_len(problems) > before {
            return None;
        }
        let effect = match rule.effect {
            RuleEffect::Permit => "permit",
            RuleEffect::Forbid => "forbid",
        };
        let when = if conds.is_empty() {
            "true".to_owned()
        } else {
            conds.join("\n    && ")
        };
        Some(Compiled {
            id: rule.id.clone(),
            text: format!(
                "@id({})\n{effect} (principal, action == Action::{}, resource)\nwhen {{\n    {when}\n}};\n",
                quote(&rule.id),
                quote(action),
            ),
            step_up: rule.step_up_scopes.clone(),
            action,
            targets,
        })
    }

    fn expand(
        &self,
        patterns: &[String],
        names: &[String],
        what: &str,
        report: &mut impl FnMut(String),
    ) -> Vec<String> {
        let mut out = BTreeSet::new();
        for pattern in patterns {
            let matched: Vec<&String> = names.iter().filter(|n| glob(pattern, n)).collect();
            if matched.is_empty() {
                report(if pattern.contains(['*', '?']) {
                    format!("`{pattern}` matches no {what} the server lists")
                } else {
                    format!("unknown {what} `{pattern}` (the server does not list it)")
                });
            }
            out.extend(matched.into_iter().cloned());
        }
        out.into_iter().collect()
    }

    fn arg_cond(
        &self,
        arg: &str,
        rule: &ArgRule,
        tools: &[String],
        report: &mut impl FnMut(String),
    ) -> Option<String> {
        for tool in tools {
            let args = self.shapes.tools.get(tool);
            match args.and_then(|a| a.get(arg)) {
                None => {
                    let known: Vec<&str> = args
                        .map(|a| a.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    report(format!(
                        "argument `{arg}` is not an argument of tool `{tool}` (its arguments: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ));
                    return None;
                }
                Some(ArgEntry::Unsupported(why)) => {
                    report(format!(
                        "argument `{arg}` of tool `{tool}` is {why}; rules cannot constrain it"
                    ));
                    return None;
                }
                Some(ArgEntry::Spec { .. }) => {}
            }
        }
        if let Some(kinds) = self.shapes.conflicts.get(arg) {
            let kinds: Vec<&str> = kinds.iter().map(|k| k.describe()).collect();
            report(format!(
                "argument `{arg}` is {} in different tools; rules can only constrain an argument with one type",
                kinds.join(" and ")
            ));
            return None;
        }
        let kind = *self.shapes.union.get(arg)?;
        let access = format!("context.args[{}]", quote(arg));
        let mut parts = Vec::new();
        if rule.under.is_none()
            && rule.one_of.is_none()
            && rule.hosts.is_none()
            && rule.schemes.is_none()
        {
            report(format!(
                "argument `{arg}` has no constraint (give `under`, `one_of`, `hosts` or `schemes`)"
            ));
            return None;
        }
        if let Some(dir) = &rule.under {
            if kind != ArgKind::Path {
                report(format!(
                    "`under` needs a path argument: list `{arg}` under [policy.arguments] paths"
                ));
            } else {
                match canon::path(&self.config.root, dir, arg) {
                    Ok(dir) => {
                        let pattern = if dir == "/" {
                            "/".to_owned()
                        } else {
                            format!("{dir}/")
                        };
                        parts.push(format!(
                            "({access} == {} || {access} like {})",
                            quote(&dir),
                            like_prefix(&pattern)
                        ));
                    }
                    Err(_) => report(format!(
                        "`under` directory `{dir}` is outside the root `{}`",
                        self.config.root
                    )),
                }
            }
        }
        if let Some(values) = &rule.one_of {
            if values.is_empty() {
                report(format!("`one_of` of argument `{arg}` is empty"));
            }
            let mut literals = Vec::new();
            for value in values {
                let literal = match (kind, value) {
                    (ArgKind::Text, Value::String(s)) => Some(quote(s)),
                    (ArgKind::Path, Value::String(s)) => {
                        match canon::path(&self.config.root, s, arg) {
                            Ok(p) => Some(quote(&p)),
                            Err(refused) => {
                                report(format!("`one_of`: {}", refused.0));
                                None
                            }
                        }
                    }
                    (ArgKind::Long, Value::Number(n)) => n.as_i64().map(|n| n.to_string()),
                    (ArgKind::Bool, Value::Bool(b)) => Some(b.to_string()),
                    _ => None,
                };
                match literal {
                    Some(l) => literals.push(l),
                    None if kind == ArgKind::Url => {
                        report(format!(
                            "argument `{arg}` is a URL: constrain it with `hosts` and `schemes`"
                        ));
                        break;
                    }
                    None => {
                        report(format!("`one_of` value {value} is not {}", kind.describe()));
                    }
                }
            }
            if !literals.is_empty() {
                parts.push(format!("[{}].contains({access})", literals.join(", ")));
            }
        }
        if rule.hosts.is_some() || rule.schemes.is_some() {
            if kind != ArgKind::Url {
                report(format!(
                    "`hosts` and `schemes` need a URL argument: list `{arg}` under [policy.arguments] urls"
                ));
                return None;
            }
            if let Some(hosts) = &rule.hosts {
                let mut alternatives = Vec::new();
                for host in hosts {
                    let host = host.trim_end_matches('.').to_lowercase();
                    match host.strip_prefix("*.") {
                        Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                            alternatives.push(format!("{access}.host like {}", like_suffix(suffix)))
                        }
                        None if !host.is_empty() && !host.contains('*') => {
                            alternatives.push(format!("{access}.host == {}", quote(&host)));
                        }
                        _ => report(format!(
                            "host `{host}` is neither a host name nor `*.` followed by one"
                        )),
                    }
                }
                if hosts.is_empty() {
                    report(format!("`hosts` of argument `{arg}` is empty"));
                } else if !alternatives.is_empty() {
                    parts.push(format!("({})", alternatives.join(" || ")));
                }
            }
            if let Some(schemes) = &rule.schemes {
                if schemes.is_empty() {
                    report(format!("`schemes` of argument `{arg}` is empty"));
                } else {
                    let lower: Vec<String> = schemes.iter().map(|s| s.to_lowercase()).collect();
                    parts.push(format!(
                        "{}.contains({access}.scheme)",
                        set_literal(lower.iter().map(String::as_str))
                    ));
                }
            }
        }
        if parts.is_empty() {
            return None;
        }
        Some(format!(
            "(context.args has {} && {})",
            quote(arg),
            parts.join(" && ")
        ))
    }

    pub(crate) fn who_cond(&self, who: &Who, report: &mut impl FnMut(String)) -> Option<String> {
        for name in who.empty_lists() {
            report(format!(
                "`who.{name}` is empty, which would match nobody; leave it out or list someone"
            ));
        }
        let mut alternatives = Vec::new();
        let emails = who.emails_lower();
        if !emails.is_empty() {
            alternatives.push(format!(
                "(principal has email && {}.contains(principal.email))",
                set_literal(emails.iter().map(String::as_str))
            ));
        }
        let domains = who.domains_lower();
        if !domains.is_empty() {
            alternatives.push(format!(
                "(principal has email_domain && {}.contains(principal.email_domain))",
                set_literal(domains.iter().map(String::as_str))
            ));
        }
        if !who.group_names().is_empty() {
            for group in who.group_names() {
                if !self.group_known(group) {
                    report(format!(
                        "group `{group}` is never assigned: define it under [policy.groups], or name the claim that carries it in group_claims"
                    ));
                }
            }
            let uids: Vec<String> = who
                .group_names()
                .iter()
                .map(|g| format!("Group::{}", quote(g)))
                .collect();
            alternatives.push(format!("principal in [{}]", uids.join(", ")));
        }
        if !who.subject_ids().is_empty() {
            alternatives.push(format!(
                "{}.contains(principal.sub)",
                set_literal(who.subject_ids().iter().map(String::as_str))
            ));
        }
        if !who.client_ids().is_empty() {
            alternatives.push(format!(
                "(principal has client_id && {}.contains(principal.client_id))",
                set_literal(who.client_ids().iter().map(String::as_str))
            ));
        }
        for (claim, values) in who.claim_values() {
            if values.is_empty() {
                continue;
            }
            let set = set_literal(values.iter().map(String::as_str));
            match self.config.claims.get(claim) {
                None => report(format!(
                    "claim `{claim}` is not declared under [policy.claims], so it is never present"
                )),
                Some(ClaimKind::String) => alternatives.push(format!(
                    "(principal.claims has {c} && {set}.contains(principal.claims[{c}]))",
                    c = quote(claim)
                )),
                Some(ClaimKind::Set) => alternatives.push(format!(
                    "principal.claims[{}].containsAny({set})",
                    quote(claim)
                )),
            }
        }
        match alternatives.len() {
            0 => None,
            1 => alternatives.pop(),
            _ => Some(format!("({})", alternatives.join(" || "))),
        }
    }
}

fn like_suffix(suffix: &str) -> String {
    let escaped = quote(&format!(".{suffix}"));
    let inner = escaped
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_default()
        .replace('*', "\\*");
    format!("\"*{inner}\"")
}

fn has_targets(rule: &Rule) -> bool {
    !rule.tools.is_empty()
        || !rule.prompts.is_empty()
        || !rule.resources.is_empty()
        || !rule.args.is_empty()
}

fn problems_len(problems: &Problems) -> usize {
    problems.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_what_cedar_needs() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u{a}\"");
        assert_eq!(like_prefix("/srv/a*b/"), "\"/srv/a\\*b/*\"");
        assert_eq!(like_suffix("example.com"), "\"*.example.com\"");
    }
}
