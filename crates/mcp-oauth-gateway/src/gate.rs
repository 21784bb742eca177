//! The decision hook: what the gateway asks before a client's request goes upstream, and
//! which items of a list the client may see.
//!
//! The gateway calls [`Gatekeeper::decide`] for every request a client sends (except
//! `initialize` and `ping`, which the gateway answers or handles itself), with the verified
//! caller and the parsed call, before anything reaches the upstream:
//!
//! - [`Decision::Allow`]: the request is forwarded;
//! - [`Decision::Deny`]: the client gets a JSON-RPC error (code -32602) whose message is the
//!   same whether or not the tool, prompt or resource exists; the upstream is not called;
//! - [`Decision::StepUp`]: HTTP 403 with `WWW-Authenticate: Bearer error="insufficient_scope",
//!   scope="…"` naming the scopes, so that the client asks the user for them (RFC 6750 §3.1).
//!
//! When [`Gatekeeper::filters_lists`] is true, the answers to `tools/list`, `prompts/list`,
//! `resources/list` and `resources/templates/list` are read and each item is kept only when
//! [`Gatekeeper::keep`] says so. The default keeps the lists as they stream, unread.
//!
//! A call the gatekeeper allowed is then passed to [`Gatekeeper::admit`], which may wait on
//! shared state (a rate-limit bucket in the store, an approval): it answers
//! [`Decision::Allow`] (or [`Decision::Approved`], naming who approved it) or
//! [`Decision::Refuse`], a JSON-RPC error carrying data (a retry-after hint, an approval
//! link). Lists are never passed to it. The default admits every call.
//!
//! A closure `Fn(Option<&Auth>, &Call<'_>) -> Decision` is a gatekeeper that filters nothing.
//!
//! ```
//! use mcp_oauth_gateway::gate::{Call, Decision};
//! use mcp_oauth::Auth;
//!
//! let no_deletes = |_caller: Option<&Auth>, call: &Call<'_>| match call.name() {
//!     Some(name) if call.method() == "tools/call" && name.starts_with("delete_") => {
//!         Decision::Deny
//!     }
//!     _ => Decision::Allow,
//! };
//! # let _: &dyn mcp_oauth_gateway::gate::Gatekeeper = &no_deletes;
//! ```

use futures_util::future::BoxFuture;
use mcp_oauth::Auth;
use serde_json::value::RawValue;

/// One client request as the gatekeeper sees it. What it names is read from `params` the
/// first time [`name`](Self::name) is asked, not before (a gatekeeper that does not ask costs
/// no parsing).
#[derive(Debug, Clone)]
pub struct Call<'a> {
    method: &'a str,
    params: Option<&'a RawValue>,
    name: std::cell::OnceCell<Option<String>>,
    rule_ids: std::cell::RefCell<Vec<String>>,
}

impl<'a> Call<'a> {
    /// A call of `method` with these `params` (a JSON object).
    pub fn new(method: &'a str, params: Option<&'a RawValue>) -> Self {
        Self {
            method,
            params,
            name: std::cell::OnceCell::new(),
            rule_ids: std::cell::RefCell::default(),
        }
    }

    /// Says which rules made the decision on this call (from [`Gatekeeper::decide`]): the
    /// audit line's `rule_ids` names them.
    pub fn decided_by<I, S>(&self, rule_ids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rule_ids
            .borrow_mut()
            .extend(rule_ids.into_iter().map(Into::into));
    }

    /// The rules [`decided_by`](Self::decided_by) named.
    pub(crate) fn take_rule_ids(&self) -> Vec<String> {
        std::mem::take(&mut *self.rule_ids.borrow_mut())
    }

    /// The JSON-RPC method (`tools/call`, `resources/read`, …).
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// What the call names: `params.name` (the tool of `tools/call`, the prompt of
    /// `prompts/get`), else `params.uri` (the resource of `resources/read`).
    pub fn name(&self) -> Option<&str> {
        self.name
            .get_or_init(|| crate::jsonrpc::params_name(self.params))
            .as_deref()
    }

    /// The raw `params` object, unparsed (the arguments are `params.arguments`).
    pub fn params(&self) -> Option<&'a RawValue> {
        self.params
    }
}

/// What to do with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Forward it.
    Allow,
    /// Refuse it with a JSON-RPC error that does not say whether the target exists.
    Deny,
    /// Refuse it with HTTP 403 `insufficient_scope` naming these scopes (every scope the call
    /// needs, not only the missing ones).
    StepUp(Vec<String>),
    /// Refuse it with this JSON-RPC error (from [`Gatekeeper::admit`]).
    Refuse(Refusal),
    /// Forward it: a human approved this exact call (from [`Gatekeeper::admit`]); the
    /// approver's subject goes into the audit line (`approved_by`). See [`crate::approve`].
    Approved(String),
}

/// A JSON-RPC error for a call [`Gatekeeper::admit`] refused; the audit line names `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The JSON-RPC error code.
    pub code: i64,
    /// The error message.
    pub message: String,
    /// The error's `data`, if any (a retry-after hint, a link).
    pub data: Option<serde_json::Value>,
    /// What refused it, for the audit line's `rule_ids` (`rate_limit:writes`).
    pub reason: String,
}

impl Refusal {
    /// The JSON-RPC error response to the request with id `id` (its JSON text).
    pub(crate) fn response(&self, id: Option<&str>) -> bytes::Bytes {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.clone().into());
        if let Some(data) = &self.data {
            error.insert("data".into(), data.clone());
        }
        let error = serde_json::Value::Object(error);
        crate::jsonrpc::encode_response(id.unwrap_or("null"), None, Some(&error.to_string()))
    }
}

/// An allowed call, as [`Gatekeeper::admit`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Admission<'a> {
    /// The JSON-RPC method.
    pub method: &'a str,
    /// What the call names (see [`Call::name`]), as the client named it.
    pub name: Option<&'a str>,
    /// The raw `params`.
    pub params: Option<&'a RawValue>,
    /// The upstream's name, when the gateway has several (or was given one).
    pub upstream: Option<&'a str>,
}

/// Which list an item comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListKind {
    /// `tools/list`: items are tools (`name`, `inputSchema`, …).
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list`.
    Resources,
    /// `resources/templates/list`.
    ResourceTemplates,
}

impl ListKind {
    /// The list method's kind, if `method` is one.
    pub fn of_method(method: &str) -> Option<Self> {
        Some(match method {
            "tools/list" => Self::Tools,
            "prompts/list" => Self::Prompts,
            "resources/list" => Self::Resources,
            "resources/templates/list" => Self::ResourceTemplates,
            _ => return None,
        })
    }

    /// The member of the result that holds the items.
    pub fn member(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
            Self::ResourceTemplates => "resourceTemplates",
        }
    }
}

/// Decides on each call and filters lists; see the [module docs](self).
///
/// `caller` is the verified user ([`Auth`], from the bearer layer), `None` only when the
/// gateway runs without authentication.
pub trait Gatekeeper: Send + Sync + 'static {
    /// Whether `call` may go upstream.
    fn decide(&self, caller: Option<&Auth>, call: &Call<'_>) -> Decision;

    /// Whether a call [`decide`](Self::decide) allowed may go upstream now; see the
    /// [module docs](self). Default: [`Decision::Allow`].
    fn admit<'a>(
        &'a self,
        caller: Option<&'a Auth>,
        call: Admission<'a>,
    ) -> BoxFuture<'a, Decision> {
        let _ = (caller, call);
        Box::pin(std::future::ready(Decision::Allow))
    }

    /// Whether list answers are read and filtered with [`keep`](Self::keep). Default: false
    /// (lists are forwarded as they stream).
    fn filters_lists(&self) -> bool {
        false
    }

    /// Whether the caller sees `item` (a tool, prompt, resource or template object) in a list.
    /// Default: true.
    fn keep(&self, caller: Option<&Auth>, list: ListKind, item: &serde_json::Value) -> bool {
        let _ = (caller, list, item);
        true
    }

    /// [`keep`](Self::keep), naming the rules that hid the item: `None` when it is kept,
    /// else the rules (none: no rule shows it). The gateway asks this one; the audit line of
    /// a filtered list names the rules that hid something. Default: `keep`'s answer, naming
    /// no rule.
    fn hidden_by(
        &self,
        caller: Option<&Auth>,
        list: ListKind,
        item: &serde_json::Value,
    ) -> Option<Vec<String>> {
        (!self.keep(caller, list, item)).then(Vec::new)
    }
}

impl<F> Gatekeeper for F
where
    F: Fn(Option<&Auth>, &Call<'_>) -> Decision + Send + Sync + 'static,
{
    fn decide(&self, caller: Option<&Auth>, call: &Call<'_>) -> Decision {
        self(caller, call)
    }
}

/// Allows every call and filters nothing: the gateway's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Gatekeeper for AllowAll {
    fn decide(&self, _caller: Option<&Auth>, _call: &Call<'_>) -> Decision {
        Decision::Allow
    }
}

/// `decision`, or when it allows a call that is not a list, what [`Gatekeeper::admit`] says.
pub(crate) async fn admitted(
    gatekeeper: &dyn Gatekeeper,
    caller: Option<&Auth>,
    method: &str,
    params: Option<&RawValue>,
    upstream: Option<&str>,
    decision: Decision,
) -> Decision {
    if !admits(&decision, method) {
        return decision;
    }
    let name = crate::jsonrpc::params_name(params);
    let call = Admission {
        method,
        name: name.as_deref(),
        params,
        upstream,
    };
    gatekeeper.admit(caller, call).await
}

/// Whether [`admitted`] asks [`Gatekeeper::admit`] about a call so decided.
pub(crate) fn admits(decision: &Decision, method: &str) -> bool {
    *decision == Decision::Allow && ListKind::of_method(method).is_none()
}

/// [`admitted`] for a call whose name (see [`Call::name`]) was already read.
pub(crate) async fn admitted_as(
    gatekeeper: &dyn Gatekeeper,
    caller: Option<&Auth>,
    call: Admission<'_>,
    decision: Decision,
) -> Decision {
    if !admits(&decision, call.method) {
        return decision;
    }
    gatekeeper.admit(caller, call).await
}

/// Filters the items of a list result (`result` is the JSON text of a list method's
/// `result`); `None` when it has no array of items where the list kind says. The rules that
/// hid items are added to `hidden`.
pub(crate) fn filter_list(
    gatekeeper: &dyn Gatekeeper,
    caller: Option<&Auth>,
    list: ListKind,
    result: &str,
    hidden: &HiddenBy,
) -> Option<String> {
    let mut value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(result).ok()?;
    let items = value.get_mut(list.member())?.as_array_mut()?;
    items.retain(|item| hidden.keeps(gatekeeper, caller, list, item));
    Some(serde_json::Value::Object(value).to_string())
}

/// The rules that hid items of one list answer, for its audit line.
#[derive(Debug, Default)]
pub(crate) struct HiddenBy(std::sync::Mutex<Vec<String>>);

impl HiddenBy {
    /// Whether `item` is kept; when it is not, its rules are noted.
    pub(crate) fn keeps(
        &self,
        gatekeeper: &dyn Gatekeeper,
        caller: Option<&Auth>,
        list: ListKind,
        item: &serde_json::Value,
    ) -> bool {
        let Some(rules) = gatekeeper.hidden_by(caller, list, item) else {
            return true;
        };
        let mut noted = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for rule in rules {
            if !noted.contains(&rule) {
                noted.push(rule);
            }
        }
        false
    }

    /// The rules noted, in the order first met.
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OnlyEcho;

    impl Gatekeeper for OnlyEcho {
        fn decide(&self, _: Option<&Auth>, call: &Call<'_>) -> Decision {
            match call.name() {
                Some("echo") | None => Decision::Allow,
                Some(_) => Decision::Deny,
            }
        }
        fn filters_lists(&self) -> bool {
            true
        }
        fn keep(&self, _: Option<&Auth>, _: ListKind, item: &serde_json::Value) -> bool {
            item["name"] == "echo"
        }
    }

    #[test]
    fn lists_keep_only_what_the_gatekeeper_keeps() {
        let result = r#"{"tools":[{"name":"echo"},{"name":"get_env"}],"nextCursor":"2"}"#;
        let hidden = HiddenBy::default();
        let filtered =
            filter_list(&OnlyEcho, None, ListKind::Tools, result, &hidden).expect("list");
        let v: serde_json::Value = serde_json::from_str(&filtered).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"tools":[{"name":"echo"}],"nextCursor":"2"})
        );
        assert!(filter_list(&OnlyEcho, None, ListKind::Prompts, result, &hidden).is_none());
        // `keep` names no rule.
        assert!(hidden.take().is_empty());
    }

    #[test]
    fn closures_are_gatekeepers() {
        let deny_all = |_: Option<&Auth>, _: &Call<'_>| Decision::Deny;
        let params =
            RawValue::from_string(r#"{"name":"echo","arguments":{}}"#.into()).expect("raw");
        let call = Call::new("tools/call", Some(&params));
        assert_eq!(call.name(), Some("echo"));
        assert_eq!(deny_all.decide(None, &call), Decision::Deny);
        assert!(!deny_all.filters_lists());
        assert_eq!(OnlyEcho.decide(None, &call), Decision::Allow);
        let rm = RawValue::from_string(r#"{"name":"rm"}"#.into()).expect("raw");
        let uri = RawValue::from_string(r#"{"uri":"file:///etc/passwd"}"#.into()).expect("raw");
        assert_eq!(
            Call::new("resources/read", Some(&uri)).name(),
            Some("file:///etc/passwd")
        );
        assert_eq!(Call::new("tools/list", None).name(), None);
        assert_eq!(
            OnlyEcho.decide(None, &Call::new("tools/call", Some(&rm))),
            Decision::Deny
        );
    }

    /// Refuses every `tools/call` of `slow` with data; counts what it was asked.
    struct Bucket(std::sync::atomic::AtomicUsize);

    impl Gatekeeper for Bucket {
        fn decide(&self, _: Option<&Auth>, _: &Call<'_>) -> Decision {
            Decision::Allow
        }
        fn admit<'a>(
            &'a self,
            _: Option<&'a Auth>,
            call: Admission<'a>,
        ) -> BoxFuture<'a, Decision> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let refused = call.name == Some("slow") && call.upstream == Some("fs");
            Box::pin(std::future::ready(if refused {
                Decision::Refuse(Refusal {
                    code: -32029,
                    message: "wait".into(),
                    data: Some(serde_json::json!({"retryAfter": 3})),
                    reason: "rate_limit:slow".into(),
                })
            } else {
                Decision::Allow
            }))
        }
    }

    #[tokio::test]
    async fn allowed_calls_are_admitted_and_lists_are_not_asked() {
        let bucket = Bucket(std::sync::atomic::AtomicUsize::new(0));
        let slow = RawValue::from_string(r#"{"name":"slow","arguments":{}}"#.into()).expect("raw");
        let decision = admitted(
            &bucket,
            None,
            "tools/call",
            Some(&slow),
            Some("fs"),
            Decision::Allow,
        )
        .await;
        let Decision::Refuse(refusal) = &decision else {
            panic!("{decision:?}");
        };
        let answer: serde_json::Value =
            serde_json::from_slice(&refusal.response(Some("7"))).expect("json");
        assert_eq!(
            answer,
            serde_json::json!({"jsonrpc":"2.0","id":7,"error":{"code":-32029,"message":"wait","data":{"retryAfter":3}}})
        );
        // Another upstream, a list, a call already denied: admitted, or not asked.
        assert_eq!(
            admitted(
                &bucket,
                None,
                "tools/call",
                Some(&slow),
                None,
                Decision::Allow
            )
            .await,
            Decision::Allow
        );
        assert_eq!(
            admitted(
                &bucket,
                None,
                "tools/list",
                None,
                Some("fs"),
                Decision::Allow
            )
            .await,
            Decision::Allow
        );
        assert_eq!(
            admitted(
                &bucket,
                None,
                "tools/call",
                Some(&slow),
                Some("fs"),
                Decision::Deny
            )
            .await,
            Decision::Deny
        );
        assert_eq!(bucket.0.load(std::sync::atomic::Ordering::SeqCst), 2);
        // With the name already read: the same answers, and lists and denied calls not asked.
        for (method, upstream, decision) in [
            ("tools/call", Some("fs"), Decision::Allow),
            ("tools/call", None, Decision::Allow),
            ("tools/list", Some("fs"), Decision::Allow),
            ("tools/call", Some("fs"), Decision::Deny),
        ] {
            let asked = bucket.0.load(std::sync::atomic::Ordering::SeqCst);
            let by_params = admitted(
                &bucket,
                None,
                method,
                Some(&slow),
                upstream,
                decision.clone(),
            )
            .await;
            let slow_asked = bucket.0.load(std::sync::atomic::Ordering::SeqCst) - asked;
            let name = Call::new(method, Some(&slow)).name().map(str::to_owned);
            let call = Admission {
                method,
                name: name.as_deref(),
                params: Some(&slow),
                upstream,
            };
            let by_name = admitted_as(&bucket, None, call, decision).await;
            let fast_asked =
                bucket.0.load(std::sync::atomic::Ordering::SeqCst) - asked - slow_asked;
            assert_eq!(by_name, by_params, "{method} {upstream:?}");
            assert_eq!(fast_asked, slow_asked, "{method} {upstream:?}");
        }
        // The default admits everything.
        assert_eq!(
            admitted(
                &AllowAll,
                None,
                "tools/call",
                Some(&slow),
                Some("fs"),
                Decision::Allow
            )
            .await,
            Decision::Allow
        );
    }
}
