//! JSON-RPC 2.0 messages as the gateway reads them: the envelope only (`id`, `method`, and the
//! raw `params` / `result` / `error`), so that a message is forwarded without decoding its
//! payload, and re-encoded with another `id` when ids are rewritten.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `method` and `id`.
    Request,
    /// `method`, no `id`.
    Notification,
    /// `id` and `result` or `error`, no `method`.
    Response,
}

/// Members are `Some` when present, even when `null` (an `"id": null` request is refused, not
/// taken for a notification).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// One parsed message, borrowing from the bytes it was read from.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    pub(crate) kind: Kind,
    /// The id's JSON text (a string or an integer), for requests and responses.
    pub(crate) id: Option<&'a RawValue>,
    pub(crate) method: Option<Cow<'a, str>>,
    pub(crate) params: Option<&'a RawValue>,
    pub(crate) result: Option<&'a RawValue>,
    pub(crate) error: Option<&'a RawValue>,
}

/// Records the message's id as `jsonrpc.request.id` in the current span (the operation span
/// of [`mcp_oauth::metrics::OperationLayer`], when it is on).
pub(crate) fn trace_id(message: &Message<'_>) {
    if let Some(id) = message.id {
        tracing::Span::current().record("jsonrpc.request.id", id.get().trim_matches('"'));
    }
}

/// Why bytes are not one JSON-RPC message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ParseError {
    #[error("the body is not JSON")]
    NotJson,
    #[error(
        "JSON-RPC batches (arrays) are not accepted: protocol 2025-06-18 and later send one message per request"
    )]
    Batch,
    #[error("the body is not a JSON-RPC 2.0 message: {0}")]
    Invalid(&'static str),
}

impl ParseError {
    /// The JSON-RPC error code: -32700 for unparseable JSON, -32600 otherwise.
    pub(crate) fn code(&self) -> i64 {
        match self {
            Self::NotJson => PARSE_ERROR,
            _ => INVALID_REQUEST,
        }
    }
}

/// JSON-RPC's "Parse error".
pub(crate) const PARSE_ERROR: i64 = -32700;
/// JSON-RPC's "Invalid Request".
pub(crate) const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC's "Invalid params".
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC's "Internal error".
pub(crate) const INTERNAL_ERROR: i64 = -32603;

fn valid_id(id: &RawValue) -> bool {
    let text = id.get();
    match text.as_bytes().first() {
        Some(b'"') => true,
        // An integer: fractions and exponents are refused (MCP ids are strings or integers).
        Some(b'-' | b'0'..=b'9') => text.bytes().skip(1).all(|b| b.is_ascii_digit()),
        _ => false,
    }
}

/// Parses one message. Only a JSON object is read (serde would read a struct from an array by
/// position), a repeated member is refused (serde's derive does), and the shape must be a
/// request, a notification or a response.
pub(crate) fn parse(bytes: &[u8]) -> Result<Message<'_>, ParseError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[') => return Err(ParseError::Batch),
        _ => return Err(ParseError::NotJson),
    }
    let envelope: Envelope<'_> = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ParseError::NotJson
        } else {
            ParseError::Invalid("a member has the wrong type or appears twice")
        }
    })?;
    if envelope.jsonrpc.as_deref() != Some("2.0") {
        return Err(ParseError::Invalid("\"jsonrpc\" must be \"2.0\""));
    }
    if envelope.id.is_some_and(|id| !valid_id(id)) {
        return Err(ParseError::Invalid("\"id\" must be a string or an integer"));
    }
    if envelope.params.is_some_and(|p| !p.get().starts_with('{')) {
        return Err(ParseError::Invalid("\"params\" must be an object"));
    }
    let kind = match (
        &envelope.method,
        envelope.id,
        envelope.result,
        envelope.error,
    ) {
        (Some(_), Some(_), None, None) => Kind::Request,
        (Some(_), None, None, None) => Kind::Notification,
        (None, Some(_), Some(_), None) | (None, Some(_), None, Some(_)) => Kind::Response,
        _ => {
            return Err(ParseError::Invalid(
                "a message is a request (method, id), a notification (method) or a response (id, result or error)",
            ));
        }
    };
    Ok(Message {
        kind,
        id: envelope.id,
        method: envelope.method,
        params: envelope.params,
        result: envelope.result,
        error: envelope.error,
    })
}

/// Appends `value` as a JSON string.
fn push_str(out: &mut Vec<u8>, value: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// A request or notification: `{"jsonrpc":"2.0","id":…,"method":…,"params":…}`.
pub(crate) fn encode_request(id: Option<&str>, method: &str, params: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(64 + method.len() + params.map_or(0, str::len));
    out.extend_from_slice(br#"{"jsonrpc":"2.0","#);
    if let Some(id) = id {
        out.extend_from_slice(br#""id":"#);
        out.extend_from_slice(id.as_bytes());
        out.push(b',');
    }
    out.extend_from_slice(br#""method":"#);
    push_str(&mut out, method);
    if let Some(params) = params {
        out.extend_from_slice(br#","params":"#);
        out.extend_from_slice(params.as_bytes());
    }
    out.push(b'}');
    Bytes::from(out)
}

/// A response: `{"jsonrpc":"2.0","id":…,"result":…}` or with `"error"`.
pub(crate) fn encode_response(id: &str, result: Option<&str>, error: Option<&str>) -> Bytes {
    let (name, body): (&[u8], &str) = match (result, error) {
        (Some(result), _) => (br#","result":"#, result),
        (None, Some(error)) => (br#","error":"#, error),
        (None, None) => (br#","result":"#, "{}"),
    };
    let mut out = Vec::with_capacity(40 + id.len() + body.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(body.as_bytes());
    out.push(b'}');
    Bytes::from(out)
}

/// An error response; `id` is the request's id text, or `null` when it could not be read.
pub(crate) fn error_response(id: Option<&str>, code: i64, message: &str) -> Bytes {
    let error = serde_json::json!({ "code": code, "message": message }).to_string();
    encode_response(id.unwrap_or("null"), None, Some(&error))
}

/// `params` with `_meta.progressToken` replaced by `token`; `None` when the params carry no
/// progress token. Returns the new params and the original token's JSON text.
pub(crate) fn replace_progress_token(params: &RawValue, token: &str) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Token<'a> {
        #[serde(borrow, rename = "progressToken")]
        token: Option<&'a RawValue>,
    }
    let meta: Meta<'_> = serde_json::from_str(params.get()).ok()?;
    let found: Token<'_> = serde_json::from_str(meta.meta?.get()).ok()?;
    let original = found.token?.get().to_owned();
    let mut value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(params.get()).ok()?;
    let token_value: serde_json::Value = serde_json::from_str(token).ok()?;
    value
        .get_mut("_meta")?
        .as_object_mut()?
        .insert("progressToken".into(), token_value);
    Some((serde_json::Value::Object(value).to_string(), original))
}

/// `params` (JSON text; `None`: the request has none) with `_meta[key]` set to the string
/// `value`, or removed when `value` is `None`. The result is written anew, so a member the
/// client wrote twice is there once. `None` when the params or their `_meta` are not objects.
pub(crate) fn with_meta(params: Option<&str>, key: &str, value: Option<&str>) -> Option<String> {
    use serde_json::{Map, Value};
    let mut map: Map<String, Value> = match params {
        Some(text) => serde_json::from_str(text).ok()?,
        None => Map::new(),
    };
    let meta = map
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()?;
    match value {
        Some(value) => {
            meta.insert(key.to_owned(), Value::String(value.to_owned()));
        }
        None => {
            meta.remove(key);
        }
    }
    if meta.is_empty() {
        map.remove("_meta");
    }
    Some(Value::Object(map).to_string())
}

/// Reads one member of an object given as JSON text, as raw JSON text (the last one, when
/// the object repeats it). The other members are skipped, not kept.
pub(crate) fn member<'a>(object: &'a RawValue, name: &str) -> Option<&'a RawValue> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

    struct Find<'n>(&'n str);

    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<&'de RawValue>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key == self.0 {
                    found = Some(map.next_value::<&'de RawValue>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }

    impl<'de> DeserializeSeed<'de> for Find<'_> {
        type Value = Option<&'de RawValue>;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    let mut de = serde_json::Deserializer::from_str(object.get());
    let found = Find(name).deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

/// `params.name` of a request, when it is a string (`tools/call`, `prompts/get`).
pub(crate) fn params_name(params: Option<&RawValue>) -> Option<String> {
    #[derive(Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        name: Option<Cow<'a, str>>,
        #[serde(borrow)]
        uri: Option<Cow<'a, str>>,
    }
    let named: Named<'_> = serde_json::from_str(params?.get()).ok()?;
    named.name.or(named.uri).map(Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_notifications_and_responses_are_told_apart() {
        let m = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).expect("request");
        assert_eq!(m.kind, Kind::Request);
        assert_eq!(m.id.map(RawValue::get), Some("1"));
        let m = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).expect("n");
        assert_eq!(m.kind, Kind::Notification);
        let m = parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).expect("response");
        assert_eq!(m.kind, Kind::Response);
        let m = parse(br#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x"}}"#)
            .expect("error response");
        assert_eq!(m.kind, Kind::Response);
    }

    #[test]
    fn what_is_not_one_json_rpc_message_is_refused() {
        assert_eq!(parse(b"hello").unwrap_err(), ParseError::NotJson);
        assert_eq!(parse(b"{").unwrap_err(), ParseError::NotJson);
        assert_eq!(parse(b"").unwrap_err(), ParseError::NotJson);
        assert_eq!(
            parse(br#"[{"jsonrpc":"2.0","method":"x"}]"#).unwrap_err(),
            ParseError::Batch
        );
        for bad in [
            r#"{"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","method":"x","method":"y"}"#,
            r#"{"jsonrpc":"2.0","method":"x","params":[1]}"#,
            r#"{"jsonrpc":"2.0","method":7}"#,
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","method":"x","params":null}"#,
        ] {
            assert!(
                matches!(parse(bad.as_bytes()), Err(ParseError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn messages_are_re_encoded_with_another_id() {
        let m = parse(
            br#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"echo"}}"#,
        )
        .expect("request");
        let out = encode_request(
            Some("42"),
            m.method.as_deref().unwrap_or(""),
            m.params.map(RawValue::get),
        );
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo"}})
        );
        let out = encode_response("\"c-1\"", Some(r#"{"ok":true}"#), None);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"jsonrpc":"2.0","id":"c-1","result":{"ok":true}})
        );
    }

    #[test]
    fn one_member_is_read_raw() {
        let raw = |text: &str| RawValue::from_string(text.to_owned()).expect("raw");
        let object = raw(r#"{"a":[1,{"b":2}],"name":"echo","arguments":{"text":"hi"}}"#);
        assert_eq!(
            member(&object, "arguments").map(RawValue::get),
            Some(r#"{"text":"hi"}"#)
        );
        assert_eq!(
            member(&object, "a").map(RawValue::get),
            Some(r#"[1,{"b":2}]"#)
        );
        assert!(member(&object, "b").is_none());
        // An escaped name is the name; a repeated member is its last value.
        let object = raw(r#"{"n\u0061me":1,"name":2}"#);
        assert_eq!(member(&object, "name").map(RawValue::get), Some("2"));
        for not_an_object in [r#"[1]"#, r#""x""#, r#"{"a":1"#, r#"{"a":1} x"#] {
            assert!(
                member(&raw_or_null(not_an_object), "a").is_none(),
                "{not_an_object}"
            );
        }
    }

    /// `text` as raw JSON, or `null` when it is not JSON.
    fn raw_or_null(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned())
            .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("raw"))
    }

    #[test]
    fn progress_tokens_are_replaced_and_the_original_kept() {
        let params =
            RawValue::from_string(r#"{"name":"slow","_meta":{"progressToken":"t-1"}}"#.into())
                .expect("raw");
        let (params, original) = replace_progress_token(&params, "17").expect("token");
        assert_eq!(original, "\"t-1\"");
        let v: serde_json::Value = serde_json::from_str(&params).expect("json");
        assert_eq!(v["_meta"]["progressToken"], 17);
        assert_eq!(v["name"], "slow");
        let none = RawValue::from_string(r#"{"name":"slow"}"#.into()).expect("raw");
        assert!(replace_progress_token(&none, "17").is_none());
    }
}
