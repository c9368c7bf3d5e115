//! The conformance client's MCP side, over the crate's Streamable HTTP transport and
//! `OAuthLayer` (which add the standard headers, mirror `x-mcp-header` arguments and drop tools
//! whose annotations are invalid). At 2026-07-28 there is no `initialize` and every request
//! carries its own `_meta`; before, a session is initialized first. Either way, requests the
//! server sends meanwhile (elicitation, ping, roots) are answered.

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Map, Value};
use tower::Layer;
use tower_mcp_oauth::client::{OAuth, OAuthLayer, OAuthState};
use tower_mcp_oauth::http::{hyper_client, HyperClient};
use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

use crate::conformance_common::{context_tool_calls, sample_arguments, sample_object};

/// The versions this client speaks without a handshake.
const STATELESS_VERSIONS: &[&str] = &["2026-07-28"];
/// Rounds of `input_required` answered for one call before giving up.
const MAX_INPUT_ROUNDS: usize = 4;

pub(crate) struct McpClient {
    transport: StreamableHttpTransport<OAuth<HyperClient>>,
    version: String,
    /// Whether requests carry `_meta` (2026-07-28) instead of relying on a session.
    stateless: bool,
    next_id: u64,
}

impl McpClient {
    pub(crate) fn new(state: OAuthState, url: &str, version: &str) -> Self {
        let stack = OAuthLayer::new(state).layer(hyper_client());
        let stateless = version >= "2026-07-28";
        // A session's server may send its requests (elicitation) on the listening stream.
        let config = StreamableHttpConfig::new(url).listen(!stateless);
        Self {
            transport: StreamableHttpTransport::new(stack, config),
            version: version.to_owned(),
            stateless,
            next_id: 0,
        }
    }

    /// Initializes a session (before 2026-07-28), declaring the elicitation capability.
    pub(crate) async fn initialize(&mut self) -> anyhow::Result<()> {
        let result = self
            .request(
                "initialize",
                json!({
                    "protocolVersion": self.version,
                    "capabilities": {"elicitation": {}},
                    "clientInfo": {"name": "tower-mcp-oauth-conformance", "version": env!("CARGO_PKG_VERSION")},
                }),
            )
            .await?;
        if let Some(version) = result.get("protocolVersion").and_then(Value::as_str) {
            self.version = version.to_owned();
        }
        self.transport
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
            .context("notifications/initialized")?;
        Ok(())
    }

    fn meta(&self) -> Value {
        json!({
            "io.modelcontextprotocol/protocolVersion": self.version,
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
            "io.modelcontextprotocol/clientInfo": {
                "name": "tower-mcp-oauth-conformance",
                "version": env!("CARGO_PKG_VERSION"),
            },
        })
    }

    /// Sends `method` and returns its answer (a result or a JSON-RPC error). A refusal naming
    /// the versions the server speaks is retried once with one of them.
    async fn answer(&mut self, method: &str, params: &Value) -> anyhow::Result<Value> {
        let mut retried = false;
        loop {
            self.next_id += 1;
            let id = self.next_id;
            let mut params = params.clone();
            if self.stateless {
                params["_meta"] = self.meta();
            }
            let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            self.transport
                .send(message)
                .await
                .with_context(|| format!("{method}: sending"))?;
            let answer = self.receive(id).await?;
            let unsupported = answer.pointer("/error/code").and_then(Value::as_i64) == Some(-32022);
            if unsupported && !retried {
                let supported = answer
                    .pointer("/error/data/supported")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .find(|v| STATELESS_VERSIONS.contains(v));
                if let Some(version) = supported {
                    tracing::info!(%version, "the server asked for another protocol version");
                    self.version = version.to_owned();
                    retried = true;
                    continue;
                }
            }
            return Ok(answer);
        }
    }

    async fn receive(&mut self, id: u64) -> anyhow::Result<Value> {
        loop {
            let message =
                tokio::time::timeout(std::time::Duration::from_secs(30), self.transport.receive())
                    .await
                    .map_err(|_| anyhow!("no answer to request {id} in 30 s"))?
                    .ok_or_else(|| anyhow!("the transport closed"))??;
            if message.get("id").and_then(Value::as_u64) == Some(id)
                && message.get("method").is_none()
            {
                return Ok(message);
            }
            if let (Some(method), Some(request_id)) = (
                message.get("method").and_then(Value::as_str),
                message.get("id"),
            ) {
                let reply = reply_to(method, message.get("params"));
                tracing::info!(%method, "answering a request from the server");
                self.transport
                    .send(json!({"jsonrpc": "2.0", "id": request_id, "result": reply}))
                    .await
                    .with_context(|| format!("answering {method}"))?;
                continue;
            }
            tracing::info!(%message, "a message that is not the answer");
        }
    }

    /// The result of `method`; a JSON-RPC error is an error.
    pub(crate) async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let answer = self.answer(method, &params).await?;
        if let Some(error) = answer.get("error") {
            bail!("{method}: JSON-RPC error {error}");
        }
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| anyhow!("{method}: the answer has no result"))
    }

    /// Calls a tool, answering `input_required` rounds (SEP-2322): every retry is a new request
    /// carrying the responses and, byte for byte, the server's `requestState`.
    pub(crate) async fn call_tool(
        &mut self,
        name: &str,
        arguments: Value,
    ) -> anyhow::Result<Value> {
        let mut params = json!({"name": name, "arguments": arguments});
        for _ in 0..MAX_INPUT_ROUNDS {
            let result = self.request("tools/call", params.clone()).await?;
            // An absent resultType means complete.
            if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
                return Ok(result);
            }
            let mut retry = json!({"name": name, "arguments": arguments});
            retry["inputResponses"] = input_responses(result.get("inputRequests"));
            if let Some(state) = result.get("requestState") {
                retry["requestState"] = state.clone();
            }
            params = retry;
        }
        bail!("{name}: still asking for input after {MAX_INPUT_ROUNDS} rounds")
    }

    /// The tools the server lists (those with invalid header annotations already dropped).
    pub(crate) async fn tools(&mut self) -> anyhow::Result<Vec<Value>> {
        let listed = self.request("tools/list", json!({})).await?;
        Ok(listed
            .get("tools")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }
}

/// The result for a request the server sends: an elicitation accepted with its defaults (or a
/// value of the asked type), no roots, and an empty result for anything else (`ping`).
fn reply_to(method: &str, params: Option<&Value>) -> Value {
    match method {
        "elicitation/create" => {
            let schema = params.and_then(|p| p.get("requestedSchema"));
            json!({"action": "accept", "content": sample_object(schema)})
        }
        "roots/list" => json!({"roots": []}),
        _ => json!({}),
    }
}

/// Answers to a round of input requests: elicitations accepted with their defaults (or a value
/// of the asked type), anything else declined.
fn input_responses(requests: Option<&Value>) -> Value {
    let mut responses = Map::new();
    for (key, request) in requests.and_then(Value::as_object).into_iter().flatten() {
        let response = match request.get("method").and_then(Value::as_str) {
            Some(method @ "elicitation/create") => reply_to(method, request.get("params")),
            _ => json!({"action": "decline"}),
        };
        responses.insert(key.clone(), response);
    }
    Value::Object(responses)
}

/// Acts out `scenario` at `version`: before 2026-07-28, in an initialized session.
pub(crate) async fn run(
    state: OAuthState,
    url: &str,
    version: &str,
    scenario: &str,
    context: Option<&Value>,
) -> anyhow::Result<()> {
    let mut client = McpClient::new(state, url, version);
    if !client.stateless {
        client.initialize().await?;
    }
    match scenario {
        "request-metadata" => {
            client.request("server/discover", json!({})).await?;
            client.tools().await?;
        }
        // Looking is the test: the schema's network $ref must never be fetched.
        "json-schema-ref-no-deref" => {
            client.tools().await?;
        }
        "http-custom-headers" => {
            client.tools().await?;
            for (name, arguments) in context_tool_calls(context) {
                client.call_tool(&name, arguments).await?;
            }
        }
        // Hand the focal tool's input schema back, verbatim, to the echo tool.
        "json-schema-2020-12-preservation" => {
            let tools = client.tools().await?;
            let schema = tools
                .iter()
                .find(|tool| tool["name"] == "json_schema_2020_12_tool")
                .and_then(|tool| tool.get("inputSchema"))
                .ok_or_else(|| anyhow!("the server lists no json_schema_2020_12_tool"))?;
            client
                .call_tool("json_schema_echo", json!({"schema": schema}))
                .await?;
        }
        "http-standard-headers" => {
            let tools = client.tools().await?;
            if let Some(tool) = tools.first() {
                let name = tool["name"].as_str().unwrap_or_default().to_owned();
                client.call_tool(&name, sample_arguments(tool)).await?;
            }
            let resources = client.request("resources/list", json!({})).await?;
            if let Some(uri) = resources
                .pointer("/resources/0/uri")
                .and_then(Value::as_str)
            {
                client
                    .request("resources/read", json!({"uri": uri}))
                    .await?;
            }
            let prompts = client.request("prompts/list", json!({})).await?;
            if let Some(name) = prompts.pointer("/prompts/0/name").and_then(Value::as_str) {
                client
                    .request("prompts/get", json!({"name": name, "arguments": {}}))
                    .await?;
            }
        }
        // The auth scenarios, tools_call, the invalid tool headers and request state: list the
        // tools and call each one the server kept.
        _ => {
            let tools = client.tools().await?;
            for tool in &tools {
                let name = tool["name"].as_str().unwrap_or_default().to_owned();
                let result = client.call_tool(&name, sample_arguments(tool)).await?;
                tracing::info!(tool = %name, %result, "called");
            }
        }
    }
    Ok(())
}
