//! The step-up policy's JSON-RPC peek: any body, no panic; and when it reads calls, they are
//! exactly the calls a plain JSON reading of the body finds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth::jsonrpc::{RpcCall, peek_jsonrpc};
use serde_json::Value;

/// The calls of one message object, read with `serde_json::Value`.
fn reference_call(message: &serde_json::Map<String, Value>) -> Option<RpcCall<'_>> {
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

fuzz_target!(|data: &[u8]| {
    let Ok(calls) = peek_jsonrpc(data) else {
        return;
    };
    let value: Value = serde_json::from_slice(data).expect("a body the peek read is JSON");
    let expected: Vec<RpcCall<'_>> = match &value {
        Value::Object(message) => reference_call(message).into_iter().collect(),
        // A batch is read only when every element is an object (docs/security.md, the fixed
        // finding): `[null, {"method":"tools/call",...}]` must never be read at all.
        Value::Array(messages) if !messages.iter().all(Value::is_object) => {
            panic!("the peek read an array with a non-object element")
        }
        Value::Array(messages) => messages
            .iter()
            .filter_map(Value::as_object)
            .filter_map(reference_call)
            .collect(),
        _ => panic!("the peek read calls from a body that is neither an object nor an array"),
    };
    assert_eq!(calls, expected, "body: {}", String::from_utf8_lossy(data));
    for call in &calls {
        assert_eq!(call.tool.is_some(), call.method == "tools/call");
    }
});
