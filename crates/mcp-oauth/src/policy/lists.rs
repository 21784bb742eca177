//! Lists filtered in the bearer layer, for any MCP server behind it: the answer to a POST that
//! holds a `tools/list`, `prompts/list`, `resources/list` or `resources/templates/list` is
//! read (JSON, or an SSE stream of JSON-RPC messages in `data:` lines), and each item the
//! caller may not use is taken out, by [`Policy::visible`] (the decision of the call path with
//! the arguments unknown), before the answer goes on.
//!
//! Fail closed: an answer that cannot be read (not JSON, a `data:` line that is not JSON, a
//! list result without its array, an item without a name, a repeated member name, a
//! compressed or over-long body) is withheld: the caller gets [`ListError`]'s JSON-RPC error
//! in its place, never the unfiltered list.
//!
//! Every list-shaped result in the answer is filtered, whatever its id, so a server that spells
//! an id differently from the request (`1.0` for `1`) cannot slip a list past the filter.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};

use super::decision::Target;
use super::engine::Policy;
use super::principal::Principal;
use super::strict::Strict;

/// The list methods whose answers are filtered.
pub(crate) const LIST_METHODS: [&str; 4] = [
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
];

/// The JSON-RPC error code of a list answer withheld because it could not be checked
/// (JSON-RPC 2.0 §5.1 internal error).
const WITHHELD: i64 = -32603;

/// Why a list answer was withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListError {
    /// Not JSON-RPC as expected (the reason, for the log).
    Unreadable(&'static str),
    /// Longer than the limit.
    TooLarge,
}

impl ListError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Unreadable(reason) => reason,
            Self::TooLarge => "the answer is longer than the list limit",
        }
    }
}

/// A request id as a key: strings and numbers kept apart, numbers by value (`1` = `1.0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum IdKey {
    Str(String),
    Num(u64),
}

impl IdKey {
    fn of(id: &Value) -> Option<Self> {
        match id {
            Value::String(s) => Some(Self::Str(s.clone())),
            Value::Number(n) => n.as_f64().map(|f| Self::Num(f.to_bits())),
            _ => None,
        }
    }
}

/// What the layer keeps of a POST with a list request, to filter its answer.
#[derive(Debug)]
pub(crate) struct ListFilter {
    policy: Policy,
    principal: Arc<Principal>,
    /// The ids of the list requests: their answers must be lists.
    lists: HashSet<IdKey>,
    /// The ids of list requests, as sent, for the error that replaces a withheld answer.
    list_ids: Vec<Value>,
    /// The ids of every request in the body not yet answered: an SSE answer is read until
    /// this is empty (or the stream ends).
    awaited: HashSet<IdKey>,
    batch: bool,
    /// The decisions made for this answer, by list key and name: a batch of many lists of
    /// the same items costs one decision per distinct item.
    seen: HashMap<(&'static str, String), bool>,
}

impl ListFilter {
    /// The filter for this body, when it holds a list request with an id (`None` otherwise:
    /// a notification has no answer to filter).
    pub(crate) fn for_body(
        policy: &Policy,
        principal: Arc<Principal>,
        body: &Value,
    ) -> Option<Self> {
        let (messages, batch) = match body {
            Value::Array(items) => (items.iter().collect::<Vec<_>>(), true),
            other => (vec![other], false),
        };
        let mut lists = HashSet::new();
        let mut list_ids = Vec::new();
        let mut awaited = HashSet::new();
        for message in messages {
            let (Some(method), Some(id)) = (
                message.get("method").and_then(Value::as_str),
                message.get("id").and_then(IdKey::of),
            ) else {
                continue;
            };
            if LIST_METHODS.contains(&method) {
                lists.insert(id.clone());
                if let Some(raw) = message.get("id") {
                    list_ids.push(raw.clone());
                }
            }
            awaited.insert(id);
        }
        if lists.is_empty() {
            return None;
        }
        Some(Self {
            policy: policy.clone(),
            principal,
            lists,
            list_ids,
            awaited,
            batch,
            seen: HashMap::new(),
        })
    }

    /// Whether every request in the body has been answered.
    pub(crate) fn answered(&self) -> bool {
        self.awaited.is_empty()
    }

    /// A JSON answer: one message or a batch, filtered.
    pub(crate) fn filter_json(&mut self, body: &[u8]) -> Result<Bytes, ListError> {
        let Ok(Strict(mut value)) = serde_json::from_slice::<Strict>(body) else {
            return Err(ListError::Unreadable("the answer is not JSON"));
        };
        self.filter_value(&mut value)?;
        serde_json::to_vec(&value)
            .map(Bytes::from)
            .map_err(|_| ListError::Unreadable("the filtered answer cannot be written"))
    }

    /// One JSON-RPC message or a batch of them: every response with a list-shaped result
    /// filtered; a response to a list request must be one.
    fn filter_value(&mut self, value: &mut Value) -> Result<(), ListError> {
        match value {
            Value::Array(items) => items.iter_mut().try_for_each(|m| self.filter_message(m)),
            message => self.filter_message(message),
        }
    }

    fn filter_message(&mut self, message: &mut Value) -> Result<(), ListError> {
        let Value::Object(message) = message else {
            return Err(ListError::Unreadable("a message is not a JSON object"));
        };
        let id = message.get("id").and_then(IdKey::of);
        if let Some(id) = &id
            && (message.contains_key("result") || message.contains_key("error"))
        {
            self.awaited.remove(id);
        }
        let to_list = id.as_ref().is_some_and(|id| self.lists.contains(id));
        match message.get_mut("result") {
            Some(Value::Object(result)) => {
                let filtered = self.filter_result(result)?;
                if to_list && !filtered {
                    return Err(ListError::Unreadable(
                        "the answer to a list request has no list",
                    ));
                }
            }
            Some(_) if to_list => {
                return Err(ListError::Unreadable(
                    "the answer to a list request is not an object",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Filters each list array of a result; `Ok(false)` when it has none.
    fn filter_result(&mut self, result: &mut Map<String, Value>) -> Result<bool, ListError> {
        let mut found = false;
        for (key, name_key) in [
            ("tools", "name"),
            ("prompts", "name"),
            ("resources", "uri"),
            ("resourceTemplates", "uriTemplate"),
        ] {
            let Some(list) = result.get_mut(key) else {
                continue;
            };
            let Value::Array(items) = list else {
                return Err(ListError::Unreadable("a list is not an array"));
            };
            found = true;
            let mut kept = Vec::with_capacity(items.len());
            for item in std::mem::take(items) {
                let Some(name) = item.get(name_key).and_then(Value::as_str) else {
                    return Err(ListError::Unreadable("a list item has no name"));
                };
                let target = match key {
                    "tools" => Target::Tool(name),
                    "prompts" => Target::Prompt(name),
                    _ => Target::Resource(name),
                };
                let visible = match self.seen.get(&(key, name.to_owned())) {
                    Some(visible) => *visible,
                    None => {
                        let visible = self.policy.visible_as(&self.principal, target);
                        self.seen.insert((key, name.to_owned()), visible);
                        visible
                    }
                };
                if visible {
                    kept.push(item);
                }
            }
            *items = kept;
        }
        Ok(found)
    }

    /// The JSON-RPC error that replaces a withheld answer: one per list request.
    pub(crate) fn withheld(&self) -> Bytes {
        let errors: Vec<Value> = self
            .list_ids
            .iter()
            .map(|id| {
                json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": {
                        "code": WITHHELD,
                        "message": "the server's answer could not be checked against the access policy, so it was withheld",
                    },
                })
            })
            .collect();
        let body = match (self.batch, errors.as_slice()) {
            (false, [one]) => one.clone(),
            _ => Value::Array(errors),
        };
        Bytes::from(body.to_string())
    }
}

/// An SSE answer read event by event (an event ends at a blank line, WHATWG HTML §9.2.6):
/// each event's `data` is a JSON-RPC message, filtered and written back as one `data:` line;
/// other fields (`id`, `event`, `retry`) and comments are kept as they came.
#[derive(Debug, Default)]
pub(crate) struct SseFilter {
    pending: BytesMut,
    out: BytesMut,
}

impl SseFilter {
    /// Takes the next bytes of the stream and filters every event they complete.
    pub(crate) fn push(&mut self, filter: &mut ListFilter, data: &[u8]) -> Result<(), ListError> {
        self.pending.extend_from_slice(data);
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end.0 + end.1);
            self.event(filter, event.get(..end.0).unwrap_or_default())?;
        }
        Ok(())
    }

    /// The filtered stream so far. An unfinished event at the end is dropped (a client
    /// dispatches an event only at its blank line).
    pub(crate) fn finish(self) -> Bytes {
        self.out.freeze()
    }

    fn event(&mut self, filter: &mut ListFilter, event: &[u8]) -> Result<(), ListError> {
        let Ok(text) = std::str::from_utf8(event) else {
            return Err(ListError::Unreadable("an SSE event is not UTF-8"));
        };
        let mut data: Option<String> = None;
        let mut other = String::new();
        for line in text.split(['\n', '\r']).filter(|l| !l.is_empty()) {
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            if field == "data" {
                let data = data.get_or_insert_with(String::new);
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            } else {
                other.push_str(line);
                other.push('\n');
            }
        }
        self.out.extend_from_slice(other.as_bytes());
        match data {
            Some(data) if !data.trim().is_empty() => {
                let Ok(Strict(mut value)) = serde_json::from_str::<Strict>(&data) else {
                    return Err(ListError::Unreadable("an SSE event's data is not JSON"));
                };
                filter.filter_value(&mut value)?;
                self.out.extend_from_slice(b"data: ");
                self.out.extend_from_slice(value.to_string().as_bytes());
                self.out.extend_from_slice(b"\n");
            }
            Some(_) => self.out.extend_from_slice(b"data:\n"),
            None => {}
        }
        self.out.extend_from_slice(b"\n");
        Ok(())
    }
}

/// Where the first event in `buf` ends: its length and the length of the blank line after it
/// (`\n\n`, `\r\r`, `\r\n\r\n`, or mixed).
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        let first = line_break(buf.get(i..)?)?;
        if first > 0 {
            if let Some(second) = buf.get(i + first..).and_then(line_break)
                && second > 0
            {
                return Some((i, first + second));
            }
            i += first;
        } else {
            i += 1;
        }
    }
    None
}

/// The length of the line break at the start of `buf` (0 when none; `None` when `buf` ends
/// with a lone `\r` that a `\n` may follow).
fn line_break(buf: &[u8]) -> Option<usize> {
    match buf {
        [b'\r', b'\n', ..] => Some(2),
        [b'\r'] => None,
        [b'\r', ..] | [b'\n', ..] => Some(1),
        _ => Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Catalog, PolicyConfig, ToolInfo};

    fn filter(body: Value) -> ListFilter {
        let config = PolicyConfig::from_toml(
            r#"
[[policy.rule]]
id    = "search"
who   = { email_domains = ["example.com"] }
tools = ["search"]
"#,
            "policy.toml",
        )
        .expect("toml");
        let catalog = Catalog::new()
            .tool(ToolInfo::new("search", json!({"type": "object"})))
            .tool(ToolInfo::new("drop_table", json!({"type": "object"})));
        let policy = Policy::new(config, catalog).expect("policy");
        let alice = crate::policy::Subject::new("u-1").email("alice@example.com");
        ListFilter::for_body(&policy, Arc::new(policy.principal(alice)), &body)
            .expect("a list request")
    }

    const TOOLS: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search"},{"name":"drop_table"},{"name":"ghost"}]}}"#;

    #[test]
    fn a_json_list_keeps_what_the_caller_may_call() {
        let mut f = filter(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
        let out = f.filter_json(TOOLS.as_bytes()).expect("filtered");
        let v: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["result"]["tools"], json!([{"name": "search"}]));
        assert!(f.answered());
        // The caller's entities for each known tool are kept for the next decision.
        let kept = f.principal.targets.lock().map(|t| t.len()).unwrap_or(0);
        assert_eq!(kept, 2);
        let again = f.filter_json(TOOLS.as_bytes()).expect("filtered");
        assert_eq!(again, out);
    }

    #[test]
    fn sse_events_split_anywhere_are_filtered_and_the_rest_kept() {
        let stream = format!(
            ": comment\nid: 7\nevent: message\r\ndata: {TOOLS}\r\n\r\nretry: 10\n\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}}\n\n"
        );
        for split in 1..stream.len() {
            let mut f = filter(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
            let mut sse = SseFilter::default();
            let (a, b) = stream.as_bytes().split_at(split);
            sse.push(&mut f, a).expect("first part");
            sse.push(&mut f, b).expect("second part");
            let out = String::from_utf8(sse.finish().to_vec()).expect("utf-8");
            assert!(!out.contains("drop_table"), "{split}: {out}");
            assert!(out.contains(r#""name":"search""#), "{split}: {out}");
            assert!(out.contains("notifications/x"), "{split}: {out}");
            assert!(
                out.starts_with(": comment\nid: 7\nevent: message\ndata: "),
                "{out}"
            );
            assert!(f.answered());
        }
    }

    #[test]
    fn answers_that_cannot_be_read_are_withheld() {
        let list = || filter(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
        for bad in [
            "not json",
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search"}],"tools":[{"name":"drop_table"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"drop_table"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"title":"drop_table"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"items":[{"name":"drop_table"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1.0,"result":"drop_table"}"#,
            r#"["drop_table"]"#,
        ] {
            assert!(list().filter_json(bad.as_bytes()).is_err(), "{bad}");
        }
        let mut sse = SseFilter::default();
        assert!(
            sse.push(&mut list(), b"data: {\"tools\":[{\"name\"\n\n")
                .is_err()
        );
        // An id spelled differently is still filtered.
        let mut f = list();
        let out = f
            .filter_json(
                br#"{"jsonrpc":"2.0","id":1.0,"result":{"tools":[{"name":"drop_table"}]}}"#,
            )
            .expect("read");
        assert!(!String::from_utf8_lossy(&out).contains("drop_table"));
        let withheld: Value = serde_json::from_slice(&f.withheld()).expect("json");
        assert_eq!(withheld["id"], 1);
        assert_eq!(withheld["error"]["code"], WITHHELD);
    }

    #[test]
    fn event_ends_are_found_for_every_line_break() {
        assert_eq!(event_end(b"data: x\n\n"), Some((7, 2)));
        assert_eq!(event_end(b"data: x\r\n\r\nmore"), Some((7, 4)));
        assert_eq!(event_end(b"data: x\r\rnext"), Some((7, 2)));
        // A `\r` at the end may be the start of `\r\n`: wait for the next byte.
        assert_eq!(event_end(b"data: x\r\r"), None);
        assert_eq!(event_end(b"data: x\r\n"), None);
        assert_eq!(event_end(b"data: x\r"), None);
        assert_eq!(event_end(b"\n\n"), Some((0, 2)));
    }
}
