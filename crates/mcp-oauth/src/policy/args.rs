//! A call's arguments made ready for Cedar: canonical values (see [`canon`](super::canon)),
//! typed as the tool's schema says, one record per combination of array elements.

use cedar_policy::RestrictedExpression;
use serde_json::{Map, Value};

use super::canon::{self, ArgKind};
use super::compile::{ArgEntry, Shapes};

/// How many combinations of array elements one call may need checked.
pub(super) const MAX_COMBINATIONS: usize = 256;

/// The arguments as Cedar records, one per combination of array elements, and the
/// canonical arguments as JSON.
#[allow(clippy::type_complexity)]
pub(super) fn canonical_args(
    shapes: &Shapes,
    root: &str,
    tool: &str,
    arguments: Option<&Value>,
) -> Result<(Vec<Vec<(String, RestrictedExpression)>>, Value), String> {
    let empty = Map::new();
    let map = match arguments {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(map)) => map,
        Some(_) => return Err("the arguments are not a JSON object".to_owned()),
    };
    let specs = shapes.tools.get(tool);
    let mut fixed = Vec::new();
    let mut arrays: Vec<(String, Vec<RestrictedExpression>)> = Vec::new();
    let mut canonical = Map::new();
    for (name, value) in map {
        let Some(ArgEntry::Spec { kind, array }) = specs.and_then(|s| s.get(name)).copied() else {
            continue;
        };
        if !shapes.union.contains_key(name) || value.is_null() {
            continue;
        }
        if array {
            let Value::Array(items) = value else {
                return Err(format!("argument `{name}` should be an array"));
            };
            let mut exprs = Vec::with_capacity(items.len());
            let mut json = Vec::with_capacity(items.len());
            for item in items {
                let (expr, canon) = canonical_value(root, name, kind, item)?;
                exprs.push(expr);
                json.push(canon);
            }
            canonical.insert(name.clone(), Value::Array(json));
            if !exprs.is_empty() {
                arrays.push((name.clone(), exprs));
            }
        } else {
            let (expr, canon) = canonical_value(root, name, kind, value)?;
            canonical.insert(name.clone(), canon);
            fixed.push((name.clone(), expr));
        }
    }
    let mut count: usize = 1;
    for (_, items) in &arrays {
        count = count.saturating_mul(items.len());
    }
    if count > MAX_COMBINATIONS {
        return Err(format!(
            "the array arguments make {count} combinations to check (at most {MAX_COMBINATIONS})"
        ));
    }
    let mut combinations = vec![fixed];
    for (name, items) in arrays {
        let mut next = Vec::with_capacity(combinations.len() * items.len());
        for base in &combinations {
            for item in &items {
                let mut pairs = base.clone();
                pairs.push((name.clone(), item.clone()));
                next.push(pairs);
            }
        }
        combinations = next;
    }
    Ok((combinations, Value::Object(canonical)))
}

fn canonical_value(
    root: &str,
    name: &str,
    kind: ArgKind,
    value: &Value,
) -> Result<(RestrictedExpression, Value), String> {
    let wrong = || format!("argument `{name}` should be {}", kind.describe());
    Ok(match kind {
        ArgKind::Text => {
            let s = value.as_str().ok_or_else(wrong)?;
            (
                RestrictedExpression::new_string(s.to_owned()),
                value.clone(),
            )
        }
        ArgKind::Long => {
            let i = value.as_i64().ok_or_else(wrong)?;
            (RestrictedExpression::new_long(i), value.clone())
        }
        ArgKind::Bool => {
            let b = value.as_bool().ok_or_else(wrong)?;
            (RestrictedExpression::new_bool(b), value.clone())
        }
        ArgKind::Path => {
            let s = value.as_str().ok_or_else(wrong)?;
            let p = canon::path(root, s, name).map_err(|r| r.0)?;
            (
                RestrictedExpression::new_string(p.clone()),
                Value::String(p),
            )
        }
        ArgKind::Url => {
            let s = value.as_str().ok_or_else(wrong)?;
            let (scheme, host) = canon::url(s, name).map_err(|r| r.0)?;
            let record = RestrictedExpression::new_record([
                (
                    "scheme".to_owned(),
                    RestrictedExpression::new_string(scheme.clone()),
                ),
                (
                    "host".to_owned(),
                    RestrictedExpression::new_string(host.clone()),
                ),
            ])
            .map_err(|e| e.to_string())?;
            (record, serde_json::json!({"scheme": scheme, "host": host}))
        }
    })
}
