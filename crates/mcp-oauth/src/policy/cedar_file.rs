//! Raw Cedar files, the escape hatch: read into the policy set with their ids and lines, and
//! the names they use checked against the catalog.

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{Policy as CedarPolicy, PolicyId, PolicySet};
use miette::Diagnostic;
use serde_json::Value;

use super::compile;
use super::error::{Origin, Problems, line_of};

/// Where a validator finding is: for a Cedar file, the line it points at; for a compiled
/// rule, the rule's line.
pub(super) fn locate(
    finding: &dyn Diagnostic,
    origin: Option<&(Origin, Option<String>)>,
) -> Origin {
    let Some((origin, file_text)) = origin else {
        return Origin::default();
    };
    let line = file_text.as_ref().and_then(|text| {
        finding
            .labels()
            .and_then(|mut labels| labels.next())
            .map(|label| line_of(text, label.offset()))
    });
    Origin {
        line: line.or(origin.line),
        ..origin.clone()
    }
}

/// Reads a Cedar file into the set: ids from `@id`, else `file#n`; names of tools, prompts,
/// resources and groups checked against the catalog.
pub(super) fn add_cedar_file(
    ctx: &compile::Context<'_>,
    file: &str,
    text: &str,
    set: &mut PolicySet,
    origins: &mut HashMap<String, (Origin, Option<String>)>,
    problems: &mut Problems,
) {
    let parsed = match PolicySet::from_str(text) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for error in errors.iter() {
                let line = error
                    .labels()
                    .and_then(|mut labels| labels.next())
                    .map(|label| line_of(text, label.offset()));
                problems.push(None, &Origin::new(file, line), error.to_string());
            }
            return;
        }
    };
    let mut policies: Vec<&CedarPolicy> = parsed.policies().collect();
    // `policy0`, `policy1`, … in the file's order.
    policies.sort_by_key(|p| {
        p.id()
            .to_string()
            .trim_start_matches("policy")
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    for (n, policy) in policies.into_iter().enumerate() {
        let id = policy
            .annotation("id")
            .map_or_else(|| format!("{file}#{}", n + 1), str::to_owned);
        let line = policy
            .annotation("id")
            .and_then(|id| text.find(&format!("@id({})", compile::quote(id))))
            .map(|offset| line_of(text, offset));
        let origin = Origin::new(file, line);
        if origins.contains_key(&id) {
            problems.push(Some(&id), &origin, "two rules have this id");
            continue;
        }
        if let Ok(json) = policy.to_json() {
            let mut literals = Vec::new();
            entity_literals(&json, &mut literals);
            for (ty, name) in literals {
                let (known, what) = match ty.as_str() {
                    "Tool" => (ctx.catalog.get_tool(&name).is_some(), "tool"),
                    "Prompt" => (ctx.catalog.has_prompt(&name), "prompt"),
                    "Resource" => (ctx.catalog.has_resource(&name), "resource"),
                    "Group" => (ctx.group_known(&name), "group"),
                    _ => continue,
                };
                if !known {
                    let at = text
                        .find(&format!("{ty}::{}", compile::quote(&name)))
                        .map(|offset| line_of(text, offset));
                    let message = if what == "group" {
                        format!(
                            "group `{name}` is never assigned: define it under [policy.groups], or name the claim that carries it in group_claims"
                        )
                    } else {
                        format!("unknown {what} `{name}` (the server does not list it)")
                    };
                    problems.push(Some(&id), &Origin::new(file, at.or(line)), message);
                }
            }
        }
        origins.insert(id.clone(), (origin.clone(), Some(text.to_owned())));
        if set.add(policy.new_id(PolicyId::new(&id))).is_err() {
            problems.push(Some(&id), &origin, "two rules have this id");
        }
    }
}

/// Every `{"type": T, "id": I}` object in a policy's JSON form.
fn entity_literals(value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(ty)), Some(Value::String(id))) =
                (map.get("type"), map.get("id"))
            {
                out.push((ty.clone(), id.clone()));
            }
            for v in map.values() {
                entity_literals(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| entity_literals(v, out)),
        _ => {}
    }
}
