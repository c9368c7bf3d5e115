//! [`McpScopes`]: scopes per MCP method and per tool, and reading the calls from a body.

use std::collections::BTreeSet;
use std::collections::HashMap;

use serde_json::Value;

/// The default cap on a JSON-RPC body read to decide scopes.
pub const DEFAULT_MAX_MCP_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Scopes per MCP method and per tool: `tools/call` of `delete_file` can need `files:write`
/// while `tools/list` needs nothing more than the route's scopes.
///
/// The method and tool come from the JSON-RPC body, read within a size limit and handed on
/// intact. The 2026-07-28 `Mcp-Method` / `Mcp-Name` headers, when present, must agree with the
/// body: a header that says `tools/list` over a body that calls `delete_file` is refused, so a
/// client cannot talk its way past a scope.
///
/// Scopes required per MCP method, and per tool for `tools/call`.
///
/// ```
/// use tower_mcp_oauth::server::McpScopes;
///
/// let scopes = McpScopes::new()
///     .method("tools/list", ["files:read"])
///     .tool("delete_file", ["files:write"]);
/// # let _ = scopes;
/// ```
#[derive(Debug, Clone)]
pub struct McpScopes {
    methods: HashMap<String, Vec<String>>,
    tools: HashMap<String, Vec<String>>,
    pub(crate) max_body_bytes: usize,
}

impl Default for McpScopes {
    fn default() -> Self {
        Self {
            methods: HashMap::new(),
            tools: HashMap::new(),
            max_body_bytes: DEFAULT_MAX_MCP_BODY_BYTES,
        }
    }
}

/// One JSON-RPC call found in a body: its method and, for tools, prompts and resources, the
/// name it targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct McpCall {
    pub(crate) method: String,
    pub(crate) name: Option<String>,
}

impl McpScopes {
    /// No per-method scopes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `scopes` for every call of `method` (`tools/list`, `resources/read`, …).
    pub fn method<I, S>(mut self, method: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.methods
            .entry(method.to_owned())
            .or_default()
            .extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Requires `scopes` for `tools/call` of the tool `name`.
    pub fn tool<I, S>(mut self, name: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tools
            .entry(name.to_owned())
            .or_default()
            .extend(scopes.into_iter().map(Into::into));
        self
    }

    /// The largest body read to decide (default 4 MiB); a larger one is refused with 413.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    pub(crate) fn required_for(&self, calls: &[McpCall], into: &mut BTreeSet<String>) {
        for call in calls {
            if let Some(scopes) = self.methods.get(&call.method) {
                into.extend(scopes.iter().cloned());
            }
            if call.method == "tools/call" {
                if let Some(scopes) = call.name.as_ref().and_then(|n| self.tools.get(n)) {
                    into.extend(scopes.iter().cloned());
                }
            }
        }
    }
}

/// What a call targets, for the methods that target something: the tool or prompt name, the
/// resource URI, or the task id (as rmcp puts them in `Mcp-Name`).
fn target_of(method: &str, params: Option<&Value>) -> Option<String> {
    let field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" | "tasks/result" => "taskId",
        _ => return None,
    };
    params?.get(field)?.as_str().map(str::to_owned)
}

/// One JSON-RPC message: a request or notification gives a call, a response none.
fn call_of(message: &Value) -> Result<Option<McpCall>, &'static str> {
    let Value::Object(object) = message else {
        return Err("a JSON-RPC message must be an object");
    };
    match object.get("method") {
        Some(Value::String(method)) => Ok(Some(McpCall {
            method: method.clone(),
            name: target_of(method, object.get("params")),
        })),
        Some(_) => Err("a JSON-RPC method must be a string"),
        None if object.contains_key("result") || object.contains_key("error") => Ok(None),
        None => Err("the body is not a JSON-RPC message"),
    }
}

/// The calls in a JSON-RPC body: one message or a non-empty batch. Anything else is refused:
/// what the layer cannot read, it cannot judge, and it never lets that through.
pub(crate) fn calls_in(body: &[u8]) -> Result<Vec<McpCall>, &'static str> {
    let UniqueKeys(value) =
        serde_json::from_slice(body).map_err(|_| "the body is not JSON, or repeats a key")?;
    let messages = match &value {
        Value::Array(batch) if batch.is_empty() => return Err("an empty JSON-RPC batch"),
        Value::Array(batch) => batch.iter().collect(),
        _ => vec![&value],
    };
    let mut calls = Vec::with_capacity(messages.len());
    for message in messages {
        calls.extend(call_of(message)?);
    }
    Ok(calls)
}

/// A JSON value in which no object repeats a key. Parsers disagree on which of two equal keys
/// wins (serde_json keeps the last, others the first), so a body with `"method"` twice could
/// be judged as one call here and run as another behind the layer: such bodies are refused.
struct UniqueKeys(Value);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value without repeated keys")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let UniqueKeys(value) = map.next_value()?;
            if object.insert(key, value).is_some() {
                return Err(serde::de::Error::custom("a key is repeated"));
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_per_method_and_tool_over_batches() {
        let policy = McpScopes::new()
            .method("tools/call", ["mcp"])
            .tool("delete_file", ["files:write"]);
        let body =
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file"}},
                       {"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#;
        let calls = calls_in(body).unwrap();
        assert_eq!(calls.len(), 2);
        let mut required = BTreeSet::new();
        policy.required_for(&calls, &mut required);
        assert_eq!(
            required.into_iter().collect::<Vec<_>>(),
            vec!["files:write", "mcp"]
        );
        assert_eq!(
            calls_in(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap(),
            vec![]
        );
        for bad in [
            &b"not json"[..],
            b"[]",
            b"42",
            br#"{"jsonrpc":"2.0"}"#,
            br#"{"method":7}"#,
            br#"[{"method":"a"},3]"#,
        ] {
            assert!(calls_in(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let read =
            calls_in(br#"{"method":"resources/read","params":{"uri":"file:///x"}}"#).unwrap();
        assert_eq!(read[0].name.as_deref(), Some("file:///x"));
    }

    #[test]
    fn bodies_repeating_a_key_are_refused_at_any_depth() {
        for body in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_file"}}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","name":"delete_file"}}"#,
            br#"[{"method":"a"},{"method":"b","params":{"arguments":{"x":1,"x":2}}}]"#,
        ] {
            assert!(calls_in(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        // The same keys in different objects are fine.
        let calls =
            calls_in(br#"{"method":"tools/call","params":{"name":"a","arguments":{"name":"b"}}}"#)
                .unwrap();
        assert_eq!(calls[0].name.as_deref(), Some("a"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_body_is_judged_or_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = calls_in(&bytes);
            }

            #[test]
            fn the_method_and_target_are_read_from_any_message(
                method in prop_oneof![Just("tools/call"), Just("prompts/get"), Just("tools/list"), Just("x/y")],
                name in "[ -~]{0,24}",
                id in any::<i64>(),
                duplicate_at_top in any::<bool>(),
            ) {
                let message = serde_json::json!({
                    "jsonrpc": "2.0", "id": id, "method": method, "params": {"name": name},
                });
                let text = message.to_string();
                let calls = calls_in(text.as_bytes()).unwrap();
                let expected_name = matches!(method, "tools/call" | "prompts/get").then(|| name.clone());
                prop_assert_eq!(calls, vec![McpCall { method: method.to_owned(), name: expected_name }]);
                // The same message with one key repeated is refused, whichever copy would win.
                let repeated = if duplicate_at_top {
                    text.replacen("{", r#"{"method":"tools/list","#, 1)
                } else {
                    text.replacen(r#""params":{"#, r#""params":{"name":"other","#, 1)
                };
                prop_assert!(calls_in(repeated.as_bytes()).is_err());
            }
        }
    }
}
