//! A call that waits for the user to open a link (an approval, see [`crate::approve`]), as
//! the client declared it can hear it at `initialize` (MCP 2025-11-25, URL-mode elicitation):
//!
//! - a client that declared `capabilities.elicitation.url` gets the JSON-RPC error -32042
//!   (`URLElicitationRequiredError`) carrying the URL-mode elicitation; the session that got
//!   it is remembered by the elicitation's id, and when the approver has answered it alone gets
//!   `notifications/elicitation/complete` with that id on its GET stream, if one is open;
//! - any other client gets an ordinary tool result with `isError` for a `tools/call` (the
//!   text names the link and what to do), which every client shows to the user and the model;
//!   for another method it keeps the error, whose message names the link too.

use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::gate::Refusal;
use crate::sessions::Session;
use crate::upstream::ACTION_REQUIRED;

/// The JSON-RPC method of the completion notification.
pub(crate) const COMPLETE: &str = "notifications/elicitation/complete";

/// How long a waiting session is remembered: as long as an approval link is valid.
const REMEMBERED: Duration = Duration::from_secs(600);

/// Most waiting elicitations remembered at once (the oldest go first).
const MOST_WAITING: u64 = 100_000;

/// The sessions waiting for each elicitation (by id), in this process. Weak: a session that
/// ended is not kept alive for a notification nobody would read.
static WAITING: LazyLock<moka::sync::Cache<Arc<str>, Weak<Session>>> = LazyLock::new(|| {
    moka::sync::Cache::builder()
        .time_to_live(REMEMBERED)
        .max_capacity(MOST_WAITING)
        .build()
});

/// Whether `initialize` params declare URL-mode elicitation (`capabilities.elicitation.url`;
/// an empty `elicitation` object means form mode only).
pub(crate) fn declares_url_elicitation(params: Option<&RawValue>) -> bool {
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(default)]
        capabilities: Capabilities,
    }
    #[derive(serde::Deserialize, Default)]
    struct Capabilities {
        #[serde(default)]
        elicitation: Option<Elicitation>,
    }
    #[derive(serde::Deserialize)]
    struct Elicitation {
        #[serde(default)]
        url: Option<Value>,
    }
    params
        .and_then(|p| serde_json::from_str::<Params>(p.get()).ok())
        .and_then(|p| p.capabilities.elicitation)
        .and_then(|e| e.url)
        .is_some_and(|url| url.is_object())
}

/// The elicitation ids a -32042 refusal carries.
fn elicitation_ids(refusal: &Refusal) -> Vec<Arc<str>> {
    refusal
        .data
        .as_ref()
        .and_then(|d| d.get("elicitations"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("elicitationId").and_then(Value::as_str))
        .map(Arc::from)
        .collect()
}

/// The answer (JSON text) to the request `id` of `method` that `refusal` refused, for the
/// client of `session`.
pub(crate) fn refused(
    refusal: &Refusal,
    id: Option<&str>,
    method: &str,
    session: &Arc<Session>,
) -> Bytes {
    if refusal.code != ACTION_REQUIRED {
        return refusal.response(id);
    }
    if session.url_elicitation() {
        for elicitation in elicitation_ids(refusal) {
            WAITING.insert(elicitation, Arc::downgrade(session));
        }
        return refusal.response(id);
    }
    if method != "tools/call" {
        return refusal.response(id);
    }
    let result = serde_json::json!({
        "content": [{ "type": "text", "text": refusal.message }],
        "isError": true,
    });
    crate::jsonrpc::encode_response(id.unwrap_or("null"), Some(&result.to_string()), None)
}

/// Tells the session that waited for `elicitation_id` (in this process) that it is complete:
/// `notifications/elicitation/complete` on its GET stream. Whether it was sent; once only.
pub(crate) fn complete(elicitation_id: &str) -> bool {
    let Some(session) = WAITING.remove(elicitation_id) else {
        return false;
    };
    let Some(session) = session.upgrade() else {
        return false;
    };
    let params = serde_json::json!({ "elicitationId": elicitation_id }).to_string();
    session.push(crate::jsonrpc::encode_request(
        None,
        COMPLETE,
        Some(&params),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declares(params: &str) -> bool {
        let raw = serde_json::from_str::<Box<RawValue>>(params).ok();
        declares_url_elicitation(raw.as_deref())
    }

    fn waiting(id: &str) -> Refusal {
        Refusal {
            code: ACTION_REQUIRED,
            message: "open the link".to_owned(),
            data: Some(crate::upstream::user_secret::action_data(
                "open the link",
                &format!("https://gw.example/gateway/approve?ticket={id}"),
            )),
            reason: "approve:x".to_owned(),
        }
    }

    #[tokio::test]
    async fn only_a_declaring_session_is_remembered_and_told_once() {
        let sessions = crate::sessions::Sessions::new(Duration::from_secs(60), 10);
        let url = r#"{"capabilities":{"elicitation":{"url":{}}}}"#;
        let url = serde_json::from_str::<Box<RawValue>>(url).ok();
        let declaring = sessions
            .create(Arc::from("alice"), "2025-11-25", None)
            .expect("session");
        declaring.declared(declares_url_elicitation(url.as_deref()));
        let plain = sessions
            .create(Arc::from("alice"), "2025-11-25", None)
            .expect("session");
        plain.declared(declares_url_elicitation(None));
        let mut declaring_stream = declaring.open_stream().expect("stream");
        let mut plain_stream = plain.open_stream().expect("stream");

        let to_plain = waiting("plain-ticket");
        let answer = refused(&to_plain, Some("4"), "tools/call", &plain);
        let answer: Value = serde_json::from_slice(&answer).expect("json");
        assert_eq!(answer["result"]["isError"], true, "{answer}");
        assert_eq!(answer["result"]["content"][0]["text"], "open the link");
        let listed = refused(&to_plain, Some("5"), "resources/read", &plain);
        let listed: Value = serde_json::from_slice(&listed).expect("json");
        assert_eq!(listed["error"]["code"], ACTION_REQUIRED, "{listed}");
        for id in elicitation_ids(&to_plain) {
            assert!(
                !complete(&id),
                "nobody is told of what they did not declare"
            );
        }
        assert!(plain_stream.try_recv().is_err());

        let to_declaring = waiting("declaring-ticket");
        let answer = refused(&to_declaring, Some("6"), "tools/call", &declaring);
        let answer: Value = serde_json::from_slice(&answer).expect("json");
        assert_eq!(answer["error"]["code"], ACTION_REQUIRED, "{answer}");
        let ids = elicitation_ids(&to_declaring);
        let [id] = ids.as_slice() else {
            panic!("one elicitation: {ids:?}");
        };
        assert!(complete(id));
        let heard: Value =
            serde_json::from_slice(&declaring_stream.try_recv().expect("notified")).expect("json");
        assert_eq!(heard["method"], COMPLETE);
        assert_eq!(heard["params"]["elicitationId"], id.as_ref());
        assert!(!complete(id), "once");
        assert!(plain_stream.try_recv().is_err());
        // Other refusals pass through as they are.
        let other = Refusal {
            code: -32001,
            ..waiting("x")
        };
        assert_eq!(
            refused(&other, Some("7"), "tools/call", &plain),
            other.response(Some("7"))
        );
    }

    #[test]
    fn only_an_explicit_url_mode_counts() {
        assert!(declares(
            r#"{"capabilities":{"elicitation":{"url":{}}},"protocolVersion":"2025-11-25"}"#
        ));
        assert!(declares(
            r#"{"capabilities":{"elicitation":{"form":{},"url":{"x":1}}}}"#
        ));
        for not in [
            r#"{"capabilities":{"elicitation":{}}}"#,
            r#"{"capabilities":{"elicitation":{"form":{}}}}"#,
            r#"{"capabilities":{"elicitation":{"url":true}}}"#,
            r#"{"capabilities":{"elicitation":{"url":null}}}"#,
            r#"{"capabilities":{"elicitation":"url"}}"#,
            r#"{"capabilities":{}}"#,
            r#"{"capabilities":null}"#,
            r#"{}"#,
            r#"[]"#,
            r#"null"#,
        ] {
            assert!(!declares(not), "{not}");
        }
        assert!(!declares_url_elicitation(None));
    }
}
