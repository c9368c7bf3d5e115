//! [`McpScopes`]: scopes per MCP method, tool, prompt and resource, and reading the calls from a
//! body.

use std::collections::BTreeSet;
use std::collections::HashMap;

use serde_json::Value;

/// The default cap on a JSON-RPC body read to decide scopes.
pub const DEFAULT_MAX_MCP_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Scopes per MCP method and per tool: `tools/call` of `delete_file` can need `files:write`
/// while `tools/list` needs nothing more than the route's scopes.
///
/// The method and tool come from the JSON-RPC body, read within a size limit and handed on
/// intact. When the 2026-07-28 `Mcp-Method` / `Mcp-Name` headers name another call than the
/// body, the token must hold the scopes of both, so a client cannot talk its way past a scope
/// whichever one the service goes by; the service then refuses the mismatch (-32020).
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
///
/// The same declaration serves [`FilterMcpListsLayer`](crate::server::FilterMcpListsLayer)
/// (lists show a caller what its token allows, with each item's scopes as a hint) and
/// [`ProtectedResource::mcp_scopes`](crate::server::ProtectedResource::mcp_scopes) (the
/// metadata's `scopes_supported`).
#[derive(Debug, Clone)]
pub struct McpScopes {
    methods: HashMap<String, Vec<String>>,
    tools: HashMap<String, Vec<String>>,
    prompts: HashMap<String, Vec<String>>,
    resources: HashMap<String, Vec<String>>,
    pub(crate) max_body_bytes: usize,
    pub(crate) filter_lists: bool,
}

impl Default for McpScopes {
    fn default() -> Self {
        Self {
            methods: HashMap::new(),
            tools: HashMap::new(),
            prompts: HashMap::new(),
            resources: HashMap::new(),
            max_body_bytes: DEFAULT_MAX_MCP_BODY_BYTES,
            filter_lists: false,
        }
    }
}

/// One JSON-RPC call found in a body: its id (for a request), its method and, for tools,
/// prompts and resources, the name it targets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct McpCall {
    pub(crate) id: Option<Value>,
    pub(crate) method: String,
    pub(crate) name: Option<String>,
}

/// What a list method lists, and what names each item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    Tools,
    Prompts,
    Resources,
}

impl ListKind {
    pub(crate) fn of(method: &str) -> Option<Self> {
        match method {
            "tools/list" => Some(Self::Tools),
            "prompts/list" => Some(Self::Prompts),
            "resources/list" => Some(Self::Resources),
            _ => None,
        }
    }

    /// The result's field that holds the items.
    pub(crate) fn field(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
        }
    }

    /// The item's field that names it.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Tools | Self::Prompts => "name",
            Self::Resources => "uri",
        }
    }

    /// The method that uses an item.
    fn use_method(self) -> &'static str {
        match self {
            Self::Tools => "tools/call",
            Self::Prompts => "prompts/get",
            Self::Resources => "resources/read",
        }
    }
}

pub use crate::metadata::SCOPES_META_KEY;

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
        add(&mut self.methods, method, scopes);
        self
    }

    /// Requires `scopes` for `tools/call` of the tool `name`.
    pub fn tool<I, S>(mut self, name: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        add(&mut self.tools, name, scopes);
        self
    }

    /// Requires `scopes` for `prompts/get` of the prompt `name`.
    pub fn prompt<I, S>(mut self, name: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        add(&mut self.prompts, name, scopes);
        self
    }

    /// Requires `scopes` for `resources/read` (and subscribing) of the resource at `uri`,
    /// matched exactly as the client writes it: where the server takes other spellings of a
    /// URI, require a scope for the method (`resources/read`) instead.
    pub fn resource<I, S>(mut self, uri: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        add(&mut self.resources, uri, scopes);
        self
    }

    /// Scope-filtered discovery (off by default): [`FilterMcpListsLayer`](crate::server::FilterMcpListsLayer)
    /// answers `tools/list`, `prompts/list` and `resources/list` with only the items the
    /// caller's token can use. Off, it only adds the scope hints. Either way a call to an item
    /// the token cannot use gets the 403 that names its scopes.
    pub fn filter_lists(mut self, filter: bool) -> Self {
        self.filter_lists = filter;
        self
    }

    /// The largest body read to decide (default 4 MiB); a larger one is refused with 413. It
    /// also bounds the list answers [`FilterMcpListsLayer`](crate::server::FilterMcpListsLayer) reads.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// Every scope declared, for any method, tool, prompt or resource, each once and sorted.
    pub fn declared_scopes(&self) -> Vec<String> {
        let all: BTreeSet<&String> = [&self.methods, &self.tools, &self.prompts, &self.resources]
            .into_iter()
            .flat_map(HashMap::values)
            .flatten()
            .collect();
        all.into_iter().cloned().collect()
    }

    pub(crate) fn required_for(&self, calls: &[McpCall], into: &mut BTreeSet<String>) {
        for call in calls {
            if let Some(scopes) = self.methods.get(&call.method) {
                into.extend(scopes.iter().cloned());
            }
            let per_item = match call.method.as_str() {
                "tools/call" => &self.tools,
                "prompts/get" => &self.prompts,
                "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                    &self.resources
                }
                _ => continue,
            };
            if let Some(scopes) = call.name.as_ref().and_then(|n| per_item.get(n)) {
                into.extend(scopes.iter().cloned());
            }
        }
    }

    /// What using the listed item `name` needs: its method's scopes and its own, sorted, each
    /// once (empty when nothing beyond the route's scopes).
    pub(crate) fn item_scopes(&self, kind: ListKind, name: &str) -> Vec<&str> {
        let per_item = match kind {
            ListKind::Tools => &self.tools,
            ListKind::Prompts => &self.prompts,
            ListKind::Resources => &self.resources,
        };
        let all: BTreeSet<&str> = self
            .methods
            .get(kind.use_method())
            .into_iter()
            .chain(per_item.get(name))
            .flatten()
            .map(String::as_str)
            .collect();
        all.into_iter().collect()
    }
}

/// Adds `scopes` to what `key` requires in `map`.
fn add<I, S>(map: &mut HashMap<String, Vec<String>>, key: &str, scopes: I)
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    map.entry(key.to_owned())
        .or_default()
        .extend(scopes.into_iter().map(Into::into));
}

#[cfg(feature = "rmcp-server")]
impl McpScopes {
    /// Reads each tool's scopes from its `_meta` [`SCOPES_META_KEY`], as [`scopes_meta`] puts
    /// them there: the tool router is the one place a tool's scopes are written.
    ///
    /// ```
    /// use rmcp::model::{JsonObject, Tool};
    /// use tower_mcp_oauth::server::{scopes_meta, McpScopes};
    ///
    /// // What `#[tool(meta = scopes_meta(["files:write"]))]` declares, and
    /// // `Self::tool_router().list_all()` returns.
    /// let tools = vec![
    ///     Tool::new("delete_file", "Deletes a file", JsonObject::new())
    ///         .with_meta(scopes_meta(["files:write"])),
    ///     Tool::new("read_file", "Reads a file", JsonObject::new()),
    /// ];
    /// let scopes = McpScopes::new().from_rmcp_tools(&tools);
    /// assert_eq!(scopes.declared_scopes(), ["files:write"]);
    /// ```
    pub fn from_rmcp_tools<'t>(
        mut self,
        tools: impl IntoIterator<Item = &'t rmcp::model::Tool>,
    ) -> Self {
        for tool in tools {
            let declared = declared_in(tool.meta.as_ref());
            if !declared.is_empty() {
                self = self.tool(&tool.name, declared);
            }
        }
        self
    }

    /// Reads each prompt's scopes from its `_meta` [`SCOPES_META_KEY`], as for tools.
    pub fn from_rmcp_prompts<'p>(
        mut self,
        prompts: impl IntoIterator<Item = &'p rmcp::model::Prompt>,
    ) -> Self {
        for prompt in prompts {
            let declared = declared_in(prompt.meta.as_ref());
            if !declared.is_empty() {
                self = self.prompt(&prompt.name, declared);
            }
        }
        self
    }
}

/// The `_meta` that declares `scopes`, for rmcp's `#[tool(meta = …)]` and `#[prompt(meta = …)]`:
/// read back by [`McpScopes::from_rmcp_tools`], and shown to clients as the item's scope hint.
/// It only declares: the scopes are required where that `McpScopes` goes to
/// [`RequireMcpScopesLayer`](crate::server::RequireMcpScopesLayer) (or
/// [`ProtectedResource::mcp_scopes`](crate::server::ProtectedResource::mcp_scopes)). A
/// declaration that is not a list of strings declares nothing.
///
/// ```text
/// #[tool(description = "Deletes a file", meta = scopes_meta(["files:write"]))]
/// async fn delete_file(&self, Parameters(args): Parameters<DeleteArgs>) -> Result<CallToolResult, ErrorData>
/// ```
#[cfg(feature = "rmcp-server")]
pub fn scopes_meta<I, S>(scopes: I) -> rmcp::model::MetaObject
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let list: Vec<Value> = scopes
        .into_iter()
        .map(|s| Value::String(s.into()))
        .collect();
    let mut meta = rmcp::model::MetaObject::new();
    meta.0
        .insert(SCOPES_META_KEY.to_owned(), Value::Array(list));
    meta
}

/// The scopes a `_meta` declares; nothing when the key is absent or not a list of strings.
#[cfg(feature = "rmcp-server")]
fn declared_in(meta: Option<&rmcp::model::MetaObject>) -> Vec<String> {
    let Some(Value::Array(list)) = meta.and_then(|m| m.0.get(SCOPES_META_KEY)) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
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
            id: object.get("id").cloned(),
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
                prop_assert_eq!(calls, vec![McpCall { id: Some(id.into()), method: method.to_owned(), name: expected_name }]);
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
