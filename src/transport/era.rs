//! [`EraBridge`]: a client of the session era (2025-11-25 and before: `initialize`, one
//! session) carried to a server that speaks only MCP 2026-07-28 (no handshake, each request
//! self-contained, server requests only inside a call's `input_required` rounds).
//!
//! It works on JSON-RPC messages and does no I/O: feed it what the client sends and what the
//! server answers, and send each [`Route`] it gives back where it says. `mcp-oauth --protocol
//! auto` puts it between standard input and the server's transport.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

/// The revision the bridge speaks to the server.
pub const MODERN_VERSION: &str = "2026-07-28";

const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// The most `input_required` rounds one request may take (as the SDKs bound them).
pub const DEFAULT_MAX_ROUNDS: usize = 10;

/// How many times the listening stream is opened again after the server ends it.
const MAX_LISTEN_REOPENS: usize = 5;

/// Messages held while the server's revision is found out.
const MAX_HELD: usize = 256;

/// Session-era revisions a client may ask for; another is answered with the newest.
const SESSION_ERA: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The log levels `logging/setLevel` takes (RFC 5424's, as MCP names them).
const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Where a message goes. Routes are to be sent in the order given.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Route {
    /// To the server, through its transport.
    ToServer(Value),
    /// To the client.
    ToClient(Value),
}

#[derive(Debug)]
enum Mode {
    /// Nothing from the client yet.
    Undecided,
    /// The client's `initialize` waits for the server's `server/discover` answer; what the
    /// client sends meanwhile waits too.
    Probing { initialize: Value, held: Vec<Value> },
    /// The server speaks the client's revision: messages go through unchanged.
    PassThrough,
    /// The server speaks only 2026-07-28: the bridge translates.
    Bridging,
}

/// A question the bridge put to the client for one round of a request.
#[derive(Debug)]
struct Asked {
    original: String,
    input: String,
    round: u64,
}

/// A request of the client's that may come back `input_required`.
#[derive(Debug)]
struct Pending {
    id: Value,
    /// Which round the open questions belong to (unique across requests).
    round: u64,
    params: Value,
    method: String,
    rounds: usize,
    /// The answers still awaited from the client, by input key, and those received.
    awaiting: usize,
    responses: Map<String, Value>,
    request_state: Option<Value>,
    refused: Option<Value>,
}

/// Carries a session-era client to a 2026-07-28-only server; see the module docs.
///
/// - The client's `initialize` is held while `server/discover` asks the server what it speaks.
///   A server that speaks the client's revision (or does not know `server/discover`) gets the
///   `initialize` and everything after it unchanged.
/// - Otherwise the bridge answers `initialize` itself from the discovery (the server's
///   capabilities, its name), answers `ping` and `logging/setLevel` itself, and sends every
///   other request with the 2026-07-28 `_meta` (version, the client's capabilities and name,
///   the log level asked for).
/// - An `input_required` answer to `tools/call`, `prompts/get` or `resources/read` becomes the
///   server requests the client knows (`elicitation/create`, `sampling/createMessage`,
///   `roots/list`); with their answers the original request is sent again, at most
///   `max_rounds` times.
/// - After `notifications/initialized`, `subscriptions/listen` is opened for the list changes
///   the server offers, so `notifications/*/list_changed` reach the client as before.
#[derive(Debug)]
pub struct EraBridge {
    mode: Mode,
    /// The revision the client asked for in `initialize`.
    client_version: String,
    client_capabilities: Value,
    client_info: Value,
    log_level: Option<Value>,
    server_capabilities: Value,
    /// Ids of the bridge's own requests start with this.
    prefix: String,
    next_id: u64,
    discover_id: Option<String>,
    /// Requests of the client's that may need input, by their id's text.
    pending: HashMap<String, Pending>,
    /// The bridge's requests to the client, by their id's key: the original request's key,
    /// the input key, and the round they belong to.
    asked: HashMap<String, Asked>,
    /// The `initialize` answer given, for a client that asks again.
    initialize_result: Value,
    /// `subscriptions/listen` was opened.
    listening: bool,
    /// How many times it was opened again after the server ended it.
    listen_reopens: usize,
    max_rounds: usize,
}

impl Default for EraBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl EraBridge {
    /// A bridge that has seen nothing yet.
    pub fn new() -> Self {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self {
            mode: Mode::Undecided,
            client_version: String::new(),
            client_capabilities: json!({}),
            client_info: Value::Null,
            log_level: None,
            server_capabilities: json!({}),
            prefix: format!("era-bridge-{nonce:x}-"),
            next_id: 0,
            discover_id: None,
            pending: HashMap::new(),
            asked: HashMap::new(),
            initialize_result: Value::Null,
            listening: false,
            listen_reopens: 0,
            max_rounds: DEFAULT_MAX_ROUNDS,
        }
    }

    /// Bounds the `input_required` rounds of one request (default [`DEFAULT_MAX_ROUNDS`]).
    pub fn max_rounds(mut self, rounds: usize) -> Self {
        self.max_rounds = rounds;
        self
    }

    /// Whether the bridge translates (the server speaks only 2026-07-28).
    pub fn is_bridging(&self) -> bool {
        matches!(self.mode, Mode::Bridging)
    }

    /// Whether the server turned out to speak the client's revision.
    pub fn is_passing_through(&self) -> bool {
        matches!(self.mode, Mode::PassThrough)
    }

    /// A message from the client; where it, and whatever it causes, goes.
    #[must_use]
    pub fn from_client(&mut self, message: Value) -> Vec<Route> {
        if let Value::Array(batch) = message {
            return batch
                .into_iter()
                .flat_map(|m| self.from_client(m))
                .collect();
        }
        match &mut self.mode {
            Mode::PassThrough => vec![Route::ToServer(message)],
            Mode::Probing { held, .. } if held.len() < MAX_HELD => {
                held.push(message);
                Vec::new()
            }
            // A client that will not wait for its handshake: what it sends meanwhile beyond
            // the bound is answered as refused.
            Mode::Probing { .. } => match message.get("id").filter(|id| !id.is_null()) {
                Some(id) if method_of(&message).is_some() => vec![Route::ToClient(error_answer(
                    id.clone(),
                    "the server's revision is still being found out".into(),
                ))],
                _ => Vec::new(),
            },
            Mode::Undecided if method_of(&message) == Some("initialize") => self.probe(message),
            Mode::Undecided => {
                self.mode = Mode::PassThrough;
                vec![Route::ToServer(message)]
            }
            Mode::Bridging => self.translate_from_client(message),
        }
    }

    /// A message from the server; where it, and whatever it causes, goes.
    #[must_use]
    pub fn from_server(&mut self, message: Value) -> Vec<Route> {
        if let Value::Array(batch) = message {
            return batch
                .into_iter()
                .flat_map(|m| self.from_server(m))
                .collect();
        }
        let answered = answer_id(&message);
        let key = answered.clone().map(id_key);
        if key.is_some() && key == self.discover_id {
            self.discover_id = None;
            return self.discovered(message);
        }
        match self.mode {
            Mode::Bridging => {}
            // Nothing of the client's has reached the server yet: no answer can be its.
            Mode::Probing { .. } | Mode::Undecided => return Vec::new(),
            Mode::PassThrough => return vec![Route::ToClient(message)],
        }
        // The subscription's own notices (its acknowledgment) have no session-era meaning.
        if method_of(&message).is_some_and(|m| m.starts_with("notifications/subscriptions/")) {
            return Vec::new();
        }
        // A 2026-07-28 server asks only inside `input_required`; a request of its own would
        // go past the client's declared capabilities (or reuse the bridge's ids).
        if let (Some(_), Some(id)) = (method_of(&message), message.get("id")) {
            return vec![Route::ToServer(
                json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": -32601,
                "message": "a 2026-07-28 server asks the client only inside input_required"}}),
            )];
        }
        match (answered, key) {
            // The answer to the bridge's own request: the listening stream ended (the server
            // restarted, a proxy cut it). Opened again, a few times at most, so list changes
            // keep coming.
            (Some(id), _) if self.is_own_id(&id) => {
                self.listening = false;
                if self.listen_reopens >= MAX_LISTEN_REOPENS {
                    return Vec::new();
                }
                self.listen_reopens += 1;
                self.listen()
            }
            (_, Some(key)) if self.pending.contains_key(&key) => self.answered(&key, message),
            // A further input round for a request already ended stays here.
            (Some(_), _) if message["result"]["resultType"] == json!("input_required") => {
                Vec::new()
            }
            _ => vec![Route::ToClient(without_complete_marker(message))],
        }
    }

    /// Says a message the bridge routed to the server could not be delivered (the transport
    /// failed: not signed in, unreachable). The routes that follow from it: for the
    /// `server/discover` probe, the client's own handshake goes out unchanged (and fails, or
    /// not, on its own terms); a request of the client's is forgotten (its caller answers it).
    #[must_use]
    pub fn undelivered(&mut self, id: &Value) -> Vec<Route> {
        let key = id_key(id.clone());
        if self.discover_id.as_ref() == Some(&key) {
            self.discover_id = None;
            // No answer says no more than a session-era server's refusal does.
            return self.discovered(Value::Null);
        }
        if self.is_own_id(id) {
            self.listening = false;
            return Vec::new();
        }
        self.forget(&key);
        Vec::new()
    }

    /// Drops request `key` and the questions still open for it.
    fn forget(&mut self, key: &str) {
        self.pending.remove(key);
        self.asked.retain(|_, asked| asked.original != key);
    }

    fn own_id(&mut self, what: &str) -> String {
        self.next_id += 1;
        format!("{}{what}-{}", self.prefix, self.next_id)
    }

    fn probe(&mut self, initialize: Value) -> Vec<Route> {
        let params = &initialize["params"];
        self.client_version = params["protocolVersion"].as_str().unwrap_or("").to_owned();
        self.client_capabilities = match &params["capabilities"] {
            Value::Object(c) => Value::Object(c.clone()),
            _ => json!({}),
        };
        self.client_info = params["clientInfo"].clone();
        let id = self.own_id("discover");
        self.discover_id = Some(id_key(json!(id)));
        let discover = json!({"jsonrpc": "2.0", "id": id, "method": "server/discover",
            "params": {"_meta": self.meta()}});
        self.mode = Mode::Probing {
            initialize,
            held: Vec::new(),
        };
        vec![Route::ToServer(discover)]
    }

    /// The `server/discover` answer (`Null` when none came) decides the mode.
    fn discovered(&mut self, answer: Value) -> Vec<Route> {
        let Mode::Probing { initialize, held } =
            std::mem::replace(&mut self.mode, Mode::PassThrough)
        else {
            return Vec::new();
        };
        let result = &answer["result"];
        let versions: Vec<&str> = result["supportedVersions"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        // The server can answer the client's `initialize` only at a revision that has one: a
        // client asking for 2026-07-28 through `initialize` is of the session era all the same.
        let client_version = self.client_version.as_str();
        let answers_handshake =
            SESSION_ERA.contains(&client_version) && versions.contains(&client_version);
        let modern_only = versions.contains(&MODERN_VERSION) && !answers_handshake;
        if !modern_only {
            // A session-era server (an error for `server/discover`), or one that speaks the
            // client's revision: the client's own handshake, then the rest, unchanged.
            let mut routes = vec![Route::ToServer(initialize)];
            routes.extend(held.into_iter().map(Route::ToServer));
            return routes;
        }
        self.mode = Mode::Bridging;
        self.server_capabilities = match &result["capabilities"] {
            Value::Object(c) => Value::Object(c.clone()),
            _ => json!({}),
        };
        let server_info = match &result["_meta"][META_SERVER_INFO] {
            Value::Object(info) => Value::Object(info.clone()),
            _ => json!({"name": "mcp-server", "version": "unknown"}),
        };
        // A revision the client asked for that is not of its era gets the newest of it.
        let version = if SESSION_ERA.contains(&self.client_version.as_str()) {
            self.client_version.clone()
        } else {
            "2025-11-25".to_owned()
        };
        // `resources/subscribe` is gone from 2026-07-28 and not carried over: not offered.
        let mut capabilities = self.server_capabilities.clone();
        if let Some(resources) = capabilities
            .get_mut("resources")
            .and_then(Value::as_object_mut)
        {
            resources.remove("subscribe");
        }
        let mut initialized = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": server_info,
        });
        if let Some(instructions) = result["instructions"].as_str() {
            initialized["instructions"] = json!(instructions);
        }
        self.initialize_result = initialized.clone();
        let mut routes = vec![Route::ToClient(json!({"jsonrpc": "2.0",
            "id": initialize["id"], "result": initialized}))];
        for message in held {
            routes.extend(self.translate_from_client(message));
        }
        routes
    }

    /// The 2026-07-28 `_meta` every request carries.
    fn meta(&self) -> Map<String, Value> {
        let mut meta = Map::new();
        meta.insert(META_PROTOCOL_VERSION.into(), json!(MODERN_VERSION));
        meta.insert(
            META_CLIENT_CAPABILITIES.into(),
            self.client_capabilities.clone(),
        );
        if self.client_info.is_object() {
            meta.insert(META_CLIENT_INFO.into(), self.client_info.clone());
        }
        if let Some(level) = &self.log_level {
            meta.insert(META_LOG_LEVEL.into(), level.clone());
        }
        meta
    }

    /// `message`'s params with the bridge's `_meta` keys added (the client's own kept).
    fn with_meta(&self, mut message: Value) -> Value {
        let Value::Object(object) = &mut message else {
            return message;
        };
        let params = object.entry("params").or_insert_with(|| json!({}));
        if let Value::Object(params) = params {
            let meta = params.entry("_meta").or_insert_with(|| json!({}));
            if let Value::Object(meta) = meta {
                for (key, value) in self.meta() {
                    meta.entry(key).or_insert(value);
                }
            }
        }
        message
    }

    fn translate_from_client(&mut self, message: Value) -> Vec<Route> {
        let id = message.get("id").cloned().filter(|id| !id.is_null());
        let Some(method) = method_of(&message).map(str::to_owned) else {
            // An answer: to the bridge's question, or to a server request of old.
            return match id.map(id_key).and_then(|key| self.asked.remove(&key)) {
                Some(asked) => self.client_answered(asked, message),
                // A 2026-07-28 server asked nothing outside the rounds: nothing to carry.
                None => Vec::new(),
            };
        };
        let Some(id) = id else {
            return match method.as_str() {
                "notifications/initialized" => self.listen(),
                "notifications/cancelled" => {
                    self.forget(&id_key(message["params"]["requestId"].clone()));
                    vec![Route::ToServer(message)]
                }
                _ => vec![Route::ToServer(message)],
            };
        };
        let local = |result: Value| {
            vec![Route::ToClient(
                json!({"jsonrpc": "2.0", "id": id, "result": result}),
            )]
        };
        match method.as_str() {
            // 2026-07-28 has no ping and no session to keep: the bridge is the peer here.
            "ping" => local(json!({})),
            "logging/setLevel" => match message["params"]["level"].as_str() {
                Some(level) if LOG_LEVELS.contains(&level) => {
                    self.log_level = Some(json!(level));
                    local(json!({}))
                }
                _ => vec![Route::ToClient(
                    json!({"jsonrpc": "2.0", "id": id, "error": {
                    "code": -32602, "message": "unknown log level"}}),
                )],
            },
            "initialize" => local(self.initialize_result.clone()),
            _ => {
                if matches!(
                    method.as_str(),
                    "tools/call" | "prompts/get" | "resources/read"
                ) {
                    self.pending.insert(
                        id_key(id.clone()),
                        Pending {
                            id: id.clone(),
                            round: 0,
                            params: message.get("params").cloned().unwrap_or(json!({})),
                            method: method.clone(),
                            rounds: 0,
                            awaiting: 0,
                            responses: Map::new(),
                            request_state: None,
                            refused: None,
                        },
                    );
                }
                vec![Route::ToServer(self.with_meta(message))]
            }
        }
    }

    /// `subscriptions/listen` for the list changes the server offers, if any.
    fn listen(&mut self) -> Vec<Route> {
        if self.listening {
            return Vec::new();
        }
        let mut filter = Map::new();
        for (capability, key) in [
            ("tools", "toolsListChanged"),
            ("prompts", "promptsListChanged"),
            ("resources", "resourcesListChanged"),
        ] {
            if self.server_capabilities[capability]["listChanged"] == json!(true) {
                filter.insert(key.into(), json!(true));
            }
        }
        if filter.is_empty() {
            return Vec::new();
        }
        let id = self.own_id("listen");
        self.listening = true;
        let mut params = Map::new();
        params.insert("_meta".into(), Value::Object(self.meta()));
        params.insert("notifications".into(), Value::Object(filter));
        vec![Route::ToServer(json!({"jsonrpc": "2.0", "id": id,
            "method": "subscriptions/listen", "params": params}))]
    }

    /// The server answered a request that may need input.
    fn answered(&mut self, key: &str, answer: Value) -> Vec<Route> {
        let input_required = answer["result"]["resultType"] == json!("input_required");
        if !input_required {
            self.forget(key);
            return vec![Route::ToClient(without_complete_marker(answer))];
        }
        // Questions of the round before that are still open no longer count.
        self.asked.retain(|_, asked| asked.original != key);
        self.next_id += 1;
        let round = self.next_id;
        let Some(pending) = self.pending.get_mut(key) else {
            return Vec::new();
        };
        pending.rounds += 1;
        pending.round = round;
        let result = &answer["result"];
        let no_requests = !result["inputRequests"].is_object();
        if pending.rounds > self.max_rounds || (no_requests && result.get("requestState").is_none())
        {
            let id = pending.id.clone();
            let too_many = pending.rounds > self.max_rounds;
            self.forget(key);
            if !too_many {
                return vec![Route::ToClient(error_answer(
                    id,
                    "the server asked for input without saying what".into(),
                ))];
            }
            return vec![Route::ToClient(error_answer(
                id,
                format!(
                    "the server asked for input more than {} times",
                    self.max_rounds
                ),
            ))];
        }
        pending.request_state = result.get("requestState").cloned();
        pending.responses = Map::new();
        pending.refused = None;
        let requests: BTreeMap<String, Value> = match &result["inputRequests"] {
            Value::Object(requests) => requests.clone().into_iter().collect(),
            _ => BTreeMap::new(),
        };
        pending.awaiting = requests.len();
        if requests.is_empty() {
            return self.send_again(key);
        }
        // Only what the client said it takes can be put to it; anything else ends the call
        // with an error rather than be dropped.
        if let Some(unaskable) = requests
            .values()
            .find(|request| !self.client_can_answer(request))
        {
            let what = unaskable["method"]
                .as_str()
                .unwrap_or("an unknown request")
                .to_owned();
            let id = self.pending.get(key).map_or(Value::Null, |p| p.id.clone());
            self.forget(key);
            return vec![Route::ToClient(error_answer(
                id,
                format!("the server asked for {what}, which this client does not take"),
            ))];
        }
        let mut routes = Vec::new();
        for (input, request) in requests {
            let id = self.own_id("input");
            let asked = Asked {
                original: key.to_owned(),
                input,
                round,
            };
            self.asked.insert(id_key(json!(id)), asked);
            let mut asked = json!({"jsonrpc": "2.0", "id": id, "method": request["method"]});
            if let Some(params) = request.get("params") {
                asked["params"] = params.clone();
            }
            routes.push(Route::ToClient(asked));
        }
        routes
    }

    /// Whether the client declared the capability `request` needs.
    fn client_can_answer(&self, request: &Value) -> bool {
        let declared = |capability: &str| self.client_capabilities.get(capability).is_some();
        match request["method"].as_str() {
            Some("sampling/createMessage") => declared("sampling"),
            Some("roots/list") => declared("roots"),
            Some("elicitation/create") => {
                let elicitation = &self.client_capabilities["elicitation"];
                match request["params"]["mode"].as_str() {
                    Some("url") => elicitation.get("url").is_some(),
                    _ => declared("elicitation"),
                }
            }
            _ => false,
        }
    }

    /// Whether `id` is one of the bridge's own requests: a failure to deliver one goes to
    /// [`undelivered`](Self::undelivered), never to the client.
    pub fn is_own_id(&self, id: &Value) -> bool {
        id.as_str().is_some_and(|id| id.starts_with(&self.prefix))
    }

    /// The client answered one of the bridge's questions for request `original`.
    fn client_answered(&mut self, asked: Asked, answer: Value) -> Vec<Route> {
        let original = asked.original.as_str();
        let Some(pending) = self.pending.get_mut(original) else {
            return Vec::new();
        };
        // An answer to a round already over (or to a request since replaced) counts for none.
        if pending.round != asked.round {
            return Vec::new();
        }
        match (answer.get("result"), answer.get("error")) {
            (Some(result), _) => {
                pending.responses.insert(asked.input, result.clone());
            }
            (None, error) => {
                pending.refused = Some(error.cloned().unwrap_or(json!({
                    "code": -32603, "message": "the client gave no answer"})));
            }
        }
        pending.awaiting = pending.awaiting.saturating_sub(1);
        if pending.awaiting > 0 {
            return Vec::new();
        }
        if let Some(error) = pending.refused.take() {
            let id = pending.id.clone();
            self.forget(original);
            return vec![Route::ToClient(
                json!({"jsonrpc": "2.0", "id": id, "error": error}),
            )];
        }
        self.send_again(original)
    }

    /// The original request again, with the client's answers and the server's state.
    fn send_again(&mut self, key: &str) -> Vec<Route> {
        let Some(pending) = self.pending.get(key) else {
            return Vec::new();
        };
        let mut params = match &pending.params {
            Value::Object(params) => params.clone(),
            _ => Map::new(),
        };
        // A round that carried only state answers none (rmcp leaves the map out too).
        if pending.responses.is_empty() {
            params.remove("inputResponses");
        } else {
            params.insert(
                "inputResponses".into(),
                Value::Object(pending.responses.clone()),
            );
        }
        match &pending.request_state {
            Some(state) => params.insert("requestState".into(), state.clone()),
            None => params.remove("requestState"),
        };
        let request = json!({"jsonrpc": "2.0", "id": pending.id, "method": pending.method,
            "params": params});
        vec![Route::ToServer(self.with_meta(request))]
    }
}

fn method_of(message: &Value) -> Option<&str> {
    message.get("method").and_then(Value::as_str)
}

/// The id a response answers (a message with an id and no method).
fn answer_id(message: &Value) -> Option<Value> {
    if message.get("method").is_some() {
        return None;
    }
    message.get("id").filter(|id| !id.is_null()).cloned()
}

/// An id as a map key, its JSON type kept: the string `"1"` and the number `1` are two
/// requests.
fn id_key(id: Value) -> String {
    match id {
        Value::String(s) => format!("s{s}"),
        other => format!("n{other}"),
    }
}

fn error_answer(id: Value, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": message}})
}

/// A 2026-07-28 result says `resultType: "complete"`; session-era clients never saw it.
fn without_complete_marker(mut message: Value) -> Value {
    if let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) {
        if result.get("resultType") == Some(&json!("complete")) {
            result.remove("resultType");
        }
    }
    message
}

#[cfg(test)]
mod tests;
