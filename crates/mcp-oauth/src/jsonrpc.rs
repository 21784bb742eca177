//! The JSON-RPC peek: reads the method and, for `tools/call`, the tool name of each request in
//! a body, as strictly as the MCP service reads it, so that the scope policy decides on what
//! the service will run.
//!
//! [`RpcCall`] is public (it is what [`ScopePolicy::required_for`](crate::ScopePolicy::required_for)
//! takes). [`peek_jsonrpc`] is not part of the public API: it is `pub` only so that the fuzz
//! targets (`fuzz/fuzz_targets/jsonrpc_peek.rs`, `bearer_layer.rs`) can call it, and hidden
//! from the docs (`#[doc(hidden)]`): a hidden item costs no feature flag and no second build
//! of the crate, and its signature may change in any release.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::MapAccess;

/// One JSON-RPC request as the policy sees it. The method and the tool name borrow from the
/// body when it spells them without escapes (the usual case), so reading them allocates
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcCall<'a> {
    /// The method.
    pub method: Cow<'a, str>,
    /// For `tools/call`: the tool name.
    pub tool: Option<Cow<'a, str>>,
}

/// One message: `method`, and `params.name` for `tools/call`. Read from a JSON object only
/// (serde's derive would also read a struct from an array, by position); a repeated `method`
/// or `params` is refused; every other member is checked and skipped ([`Skip`]).
struct Message<'a> {
    method: Option<Str<'a>>,
    params: Option<Params<'a>>,
}

impl<'a> Message<'a> {
    /// The call this message makes: none without a method; a `tools/call` must name its tool
    /// with a string.
    fn into_call(self) -> Result<Option<RpcCall<'a>>, UnreadableBody> {
        let Some(Str(method)) = self.method else {
            return Ok(None);
        };
        let tool = if method == "tools/call" {
            match self.params.and_then(|p| p.name) {
                Some(Name::Str(name)) => Some(name),
                _ => return Err(UnreadableBody),
            }
        } else {
            None
        };
        Ok(Some(RpcCall { method, tool }))
    }
}

/// `params`: only `name` is kept (a repeated `name` is refused), the rest is skipped.
struct Params<'a> {
    name: Option<Name<'a>>,
}

/// A JSON string, borrowed from the body when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;

        impl<'de> serde::de::Visitor<'de> for StrVisitor {
            type Value = Str<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(StrVisitor)
    }
}

/// `params.name`: a string, or any other JSON value (read as strictly as the rest, [`Skip`]),
/// which only a `tools/call` refuses.
enum Name<'a> {
    Str(Cow<'a, str>),
    NotAString,
}

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl<'de> serde::de::Visitor<'de> for NameVisitor {
            type Value = Name<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name::Str(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name::Str(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name::Str(Cow::Owned(v)))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Name<'de>, E> {
                Ok(Name::NotAString)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Name<'de>, E> {
                Ok(Name::NotAString)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Name<'de>, E> {
                Ok(Name::NotAString)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Name<'de>, E> {
                Ok(Name::NotAString)
            }

            fn visit_unit<E>(self) -> Result<Name<'de>, E> {
                Ok(Name::NotAString)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Name<'de>, A::Error> {
                SkipVisitor.visit_seq(seq).map(|Skip| Name::NotAString)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Name<'de>, A::Error> {
                SkipVisitor.visit_map(map).map(|Skip| Name::NotAString)
            }
        }

        deserializer.deserialize_any(NameVisitor)
    }
}

impl<'de> Deserialize<'de> for Message<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MessageVisitor;

        impl<'de> serde::de::Visitor<'de> for MessageVisitor {
            type Value = Message<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON-RPC message (a JSON object)")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message<'de>, A::Error> {
                let (mut method, mut params) = (None, None);
                while let Some(member) = map.next_key::<Member>()? {
                    match member {
                        Member::Method => once(&mut method, "method", map.next_value()?)?,
                        Member::Params => once(&mut params, "params", map.next_value()?)?,
                        Member::Name | Member::Other => map.next_value::<Skip>().map(drop)?,
                    }
                }
                Ok(Message {
                    method: method.flatten(),
                    params: params.flatten(),
                })
            }
        }

        deserializer.deserialize_map(MessageVisitor)
    }
}

impl<'de> Deserialize<'de> for Params<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ParamsVisitor;

        impl<'de> serde::de::Visitor<'de> for ParamsVisitor {
            type Value = Params<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON-RPC params (a JSON object)")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params<'de>, A::Error> {
                let mut name = None;
                while let Some(member) = map.next_key::<Member>()? {
                    match member {
                        Member::Name => once(&mut name, "name", map.next_value()?)?,
                        _ => map.next_value::<Skip>().map(drop)?,
                    }
                }
                Ok(Params { name })
            }
        }

        deserializer.deserialize_map(ParamsVisitor)
    }
}

/// Stores a member's value, refusing a second one: two parsers may keep different copies.
fn once<T, E: serde::de::Error>(
    slot: &mut Option<T>,
    name: &'static str,
    value: T,
) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

/// The member names the peek reads; the name is decoded (escapes, UTF-8) before comparing.
enum Member {
    Method,
    Params,
    Name,
    Other,
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MemberVisitor;

        impl serde::de::Visitor<'_> for MemberVisitor {
            type Value = Member;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Member, E> {
                refuse_serde_json_token(name)?;
                Ok(match name {
                    "method" => Member::Method,
                    "params" => Member::Params,
                    "name" => Member::Name,
                    _ => Member::Other,
                })
            }
        }

        deserializer.deserialize_identifier(MemberVisitor)
    }
}

/// A value the peek does not need, read as strictly as a full JSON parser reads it (string
/// escapes and UTF-8, number range, nesting) and dropped. serde's `IgnoredAny` skips strings
/// and numbers without checking them, so a body the MCP service refuses (`"\uDDDD"`, a lone
/// surrogate) would be read here (found by fuzzing).
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> serde::de::Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<SkipKey, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// Member names serde_json gives a meaning of its own (`raw_value`, `arbitrary_precision`):
/// a service that reads the body into `serde_json::Value` refuses or reshapes an object with
/// such a member, so a body that has one is refused here too rather than read differently
/// (found by fuzzing: fuzz/regressions/jsonrpc_peek/serde-json-raw-value-token.json).
fn refuse_serde_json_token<E: serde::de::Error>(name: &str) -> Result<(), E> {
    if name.starts_with("$serde_json::private::") {
        return Err(E::custom("a member name serde_json reserves"));
    }
    Ok(())
}

/// The name of a member the peek does not need, checked by [`refuse_serde_json_token`].
struct SkipKey;

impl<'de> Deserialize<'de> for SkipKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = SkipKey;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<SkipKey, E> {
                refuse_serde_json_token(name)?;
                Ok(SkipKey)
            }
        }

        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A message is a JSON object, a batch an array of them. Serde's derive would also read a
/// struct from an array, by position (`["tools/call", {…}]` as `method` and `params`), which
/// is not what the MCP service reads: such bodies are refused. Read in one pass, without
/// buffering the body as an untagged enum would, straight into the calls.
struct Calls<'a>(Vec<RpcCall<'a>>);

impl<'de> Deserialize<'de> for Calls<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CallsVisitor;

        fn call<'de, E: serde::de::Error>(
            message: Message<'de>,
        ) -> Result<Option<RpcCall<'de>>, E> {
            message
                .into_call()
                .map_err(|UnreadableBody| E::custom("a tools/call without a string name"))
        }

        impl<'de> serde::de::Visitor<'de> for CallsVisitor {
            type Value = Vec<RpcCall<'de>>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON-RPC message or a batch of them")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let message =
                    Message::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(call(message)?.into_iter().collect())
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut calls = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(message) = seq.next_element::<Message<'de>>()? {
                    calls.extend(call(message)?);
                }
                Ok(calls)
            }
        }

        deserializer.deserialize_any(CallsVisitor).map(Calls)
    }
}

/// The body could not be read as JSON-RPC, so the policy cannot tell what it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnreadableBody;

/// Reads the JSON-RPC requests in a body (one message or a batch). Responses and
/// notifications without a method are skipped.
///
/// # Errors
///
/// The body is not JSON-RPC shaped, or a `tools/call` has no string `name`, or a member
/// appears twice: the caller must fail closed, since the MCP service might read such a
/// body differently.
#[doc(hidden)]
pub fn peek_jsonrpc(body: &[u8]) -> Result<Vec<RpcCall<'_>>, UnreadableBody> {
    // One pass, as strict as a full parse: members the peek does not need are still decoded
    // ([`Skip`]), and a repeated `method`, `params` or `name` is refused, so the MCP service
    // cannot read this body differently.
    let Calls(calls) = serde_json::from_slice(body).map_err(|_| UnreadableBody)?;
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &'static str, tool: Option<&'static str>) -> RpcCall<'static> {
        RpcCall {
            method: method.into(),
            tool: tool.map(Into::into),
        }
    }

    #[test]
    fn skipped_members_are_read_as_strictly_as_a_full_parse() {
        // Found by fuzzing (fuzz/regressions/jsonrpc_peek/invalid-utf8-in-a-skipped-member.json,
        // lone-surrogate-in-a-skipped-member.json): these were read as calls, or as no call,
        // while any JSON parser, and so the MCP service, refuses them.
        let body = b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"resources/read\",\"params\":{\"uri\":\"file:/\xaf/etc/hosts\"}}";
        assert!(serde_json::from_slice::<serde_json::Value>(body).is_err());
        assert_eq!(peek_jsonrpc(body), Err(UnreadableBody));
        let valid = br#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"file:/\u00af/etc/hosts"}}"#;
        assert_eq!(peek_jsonrpc(valid), Ok(vec![call("resources/read", None)]));
        for refused in [
            r#"{"j":"\uDDDDs"}"#,
            r#"{"method":"ping","id":"\uD800"}"#,
            r#"{"method":"ping","params":{"x":"\uDC00"}}"#,
            r#"{"method":"ping","\uD800":1}"#,
            r#"{"method":"ping","id":1e400}"#,
            r#"{"method":"ping","params":{"cursor":[1,-1e999]}}"#,
            r#"[{"method":"ping","id":"\x"}]"#,
        ] {
            assert!(
                serde_json::from_str::<serde_json::Value>(refused).is_err(),
                "{refused}"
            );
            assert_eq!(
                peek_jsonrpc(refused.as_bytes()),
                Err(UnreadableBody),
                "{refused}"
            );
        }
        let escaped = r#"{"\u006dethod":"tools/call","params":{"n\u0061me":"admin_action","arguments":{"s":"\uD83D\uDE00"}}}"#;
        assert_eq!(
            peek_jsonrpc(escaped.as_bytes()),
            Ok(vec![call("tools/call", Some("admin_action"))])
        );
    }

    #[test]
    fn messages_are_objects_never_arrays_read_by_position() {
        // Found by fuzzing (fuzz/regressions/jsonrpc_peek): serde reads a struct from an
        // array by position, so these were once read as no call, or as a call that is not
        // there. Every one must fail closed.
        for body in [
            &br#"[null,{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_action","arguments":{}}}]"#[..],
            br#"["tools/call",{"name":"admin"}]"#,
            br#"[""]"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["admin_action"]}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},["tools/call",{"name":"admin"}]]"#,
        ] {
            assert_eq!(
                peek_jsonrpc(body),
                Err(UnreadableBody),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Object params of any method are read as before.
        assert_eq!(
            peek_jsonrpc(br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{}}"#),
            Ok(vec![call("ping", None)])
        );
    }

    #[test]
    fn reads_single_and_batched_calls() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin_action","arguments":{}}}"#;
        assert_eq!(
            peek_jsonrpc(body),
            Ok(vec![call("tools/call", Some("admin_action"))])
        );
        let batch = br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"result":{}},
                        {"jsonrpc":"2.0","id":3,"method":"tools/list"}]"#;
        assert_eq!(
            peek_jsonrpc(batch),
            Ok(vec![
                call("notifications/initialized", None),
                call("tools/list", None)
            ])
        );
    }

    #[test]
    fn ambiguous_bodies_fail_closed() {
        for bad in [
            &br#"{"method":"tools/list","method":"tools/call","params":{"name":"admin"}}"#[..],
            br#"{"method":"tools/call","params":{"name":"echo","name":"admin"}}"#,
            br#"{"method":"tools/call","params":{}}"#,
            br#"{"method":"tools/call"}"#,
            br#"{"method":"tools/call","params":{"name":5}}"#,
            br#"{"method":7}"#,
            b"not json",
            b"",
            b"42",
        ] {
            assert_eq!(
                peek_jsonrpc(bad),
                Err(UnreadableBody),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
    /// The fuzz target's property (fuzz/fuzz_targets/jsonrpc_peek.rs) on its committed
    /// regression inputs and seeds: when the peek reads calls, they are exactly the calls a
    /// plain JSON reading finds, and only objects are read as messages.
    #[test]
    fn fuzz_regressions_and_seeds_read_as_a_plain_json_reading_does() {
        use serde_json::Value;

        fn reference(message: &serde_json::Map<String, Value>) -> Option<RpcCall<'_>> {
            let method = message.get("method")?.as_str()?;
            let tool = (method == "tools/call").then(|| {
                message
                    .get("params")
                    .and_then(|p| p.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .into()
            });
            Some(RpcCall {
                method: method.into(),
                tool,
            })
        }

        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut inputs = 0;
        for folder in ["regressions/jsonrpc_peek", "seeds/jsonrpc_peek"] {
            let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("entry").path();
                let data = std::fs::read(&path).expect("input");
                inputs += 1;
                let Ok(calls) = peek_jsonrpc(&data) else {
                    continue;
                };
                let value: Value = serde_json::from_slice(&data).expect("read bodies are JSON");
                let expected: Vec<RpcCall<'_>> = match &value {
                    Value::Object(message) => reference(message).into_iter().collect(),
                    Value::Array(messages) => {
                        assert!(messages.iter().all(Value::is_object), "{path:?}");
                        messages
                            .iter()
                            .filter_map(Value::as_object)
                            .filter_map(reference)
                            .collect()
                    }
                    _ => panic!("{path:?}: calls read from neither an object nor an array"),
                };
                assert_eq!(calls, expected, "{path:?}");
            }
        }
        assert!(inputs >= 5, "the regression inputs are there ({inputs})");
    }
    #[test]
    fn serde_json_reserved_member_names_are_refused_at_any_depth() {
        for body in [
            br#"{"$serde_json::private::RawValue":"","method":"tools/call","params":{"name":"x"}}"#.as_slice(),
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping","params":{"$serde_json::private::Number":"1"}}]"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":{"$serde_json::private::RawValue":1}}}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"\u0024serde_json::private::RawValue":1}}}"#,
        ] {
            assert!(peek_jsonrpc(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        let plain = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"$serde_json":1}}}"#;
        assert_eq!(
            peek_jsonrpc(plain).expect("read"),
            [call("tools/call", Some("x"))]
        );
    }

    #[test]
    fn method_and_tool_borrow_from_the_body_unless_escaped() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
        let calls = peek_jsonrpc(body).expect("a call");
        let [RpcCall { method, tool }] = calls.as_slice() else {
            panic!("one call: {calls:?}");
        };
        assert!(matches!(method, Cow::Borrowed("tools/call")));
        assert!(matches!(tool, Some(Cow::Borrowed("echo"))));
        let escaped = br#"{"method":"tools\/call","params":{"name":"ech\u006f"}}"#;
        let calls = peek_jsonrpc(escaped).expect("a call");
        assert_eq!(calls, vec![call("tools/call", Some("echo"))]);
        assert!(matches!(calls[0].method, Cow::Owned(_)));
    }
}
