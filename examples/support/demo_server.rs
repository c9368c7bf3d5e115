//! A small OAuth 2.1 authorization server and a bearer-protected MCP endpoint on loopback, for
//! the quickstart example and the integration tests. It auto-approves every authorization and
//! keeps everything in memory. Knobs in [`Behaviour`] make it misbehave the ways tests need.
//!
//! It is a test peer, not the crate's embedded authorization server.
#![allow(dead_code, unreachable_pub)]

#[path = "idle_close.rs"]
pub mod idle_close;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

/// How the demo server behaves; the defaults are a well-behaved MCP 2025-11-25 deployment.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub access_token_lifetime: Duration,
    pub rotate_refresh_tokens: bool,
    pub token_auth_methods: Vec<&'static str>,
    pub advertise_iss: bool,
    /// The `iss` put in the redirect: `Some(None)` omits it, `None` uses the real issuer.
    pub redirect_iss: Option<Option<String>>,
    pub code_challenge_methods: Option<Vec<&'static str>>,
    pub prm_resource: Option<String>,
    pub metadata_issuer: Option<String>,
    pub metadata_content_type: &'static str,
    pub metadata_padding: usize,
    pub scopes_supported: Vec<&'static str>,
    pub required_scope: Option<&'static str>,
    pub cimd_supported: bool,
    pub registration: bool,
    pub pre_registered: Option<(&'static str, &'static str)>,
    pub redirect_to: Option<String>,
    pub state_override: Option<String>,
    pub publish_prm: bool,
    pub publish_as_metadata: bool,
    pub token_endpoint: Option<String>,
    pub authorize_location: Option<String>,
    pub metadata_body: Option<&'static str>,
    pub token_delay: Duration,
    /// The token endpoint answers this status with a non-JSON body.
    pub token_failure: Option<u16>,
    /// The MCP endpoint rejects every token, valid or not.
    pub reject_all_tokens: bool,
    /// Appended to every access token issued (a control character makes it unattachable).
    pub access_token_suffix: &'static str,
    /// Closes kept-alive connections idle this long, as Node.js and uvicorn do (read at start).
    pub idle_timeout: Option<Duration>,
    /// How the MCP endpoint answers a valid token (hostile servers for the tests).
    pub mcp_answer: McpAnswer,
    /// Registers clients with these redirect URIs, whatever they asked for.
    pub registered_redirect_uris: Option<Vec<String>>,
    /// The `client_secret_expires_at` of registrations with a secret.
    pub client_secret_expires_at: Option<u64>,
}

/// How the MCP endpoint answers a request with a valid token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum McpAnswer {
    /// As an MCP server would.
    #[default]
    Normal,
    /// 403 `insufficient_scope` for `mcp`, whatever the token holds.
    ForbidEverything,
    /// An event stream of keep-alive comments that never carries the answer.
    StreamForever,
    /// A 200 with a 16 MiB header.
    HugeHeader,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            access_token_lifetime: Duration::from_secs(3600),
            rotate_refresh_tokens: true,
            token_auth_methods: vec!["none"],
            advertise_iss: true,
            redirect_iss: None,
            code_challenge_methods: Some(vec!["S256"]),
            prm_resource: None,
            metadata_issuer: None,
            metadata_content_type: "application/json",
            metadata_padding: 0,
            scopes_supported: vec!["mcp", "offline_access"],
            required_scope: None,
            cimd_supported: false,
            registration: true,
            pre_registered: None,
            redirect_to: None,
            state_override: None,
            publish_prm: true,
            publish_as_metadata: true,
            token_endpoint: None,
            authorize_location: None,
            metadata_body: None,
            token_delay: Duration::ZERO,
            token_failure: None,
            reject_all_tokens: false,
            access_token_suffix: "",
            idle_timeout: None,
            mcp_answer: McpAnswer::Normal,
            registered_redirect_uris: None,
            client_secret_expires_at: None,
        }
    }
}

#[derive(Default, Debug, Clone)]
pub struct Counters {
    pub registrations: usize,
    pub authorizations: usize,
    pub code_exchanges: usize,
    pub refreshes: usize,
    pub mcp_requests: usize,
    pub prm_requests: usize,
    pub protocol_version_headers: Vec<String>,
    pub token_resources: Vec<Option<String>>,
    pub authorize_params: Vec<HashMap<String, String>>,
    pub registration_bodies: Vec<Value>,
    pub token_client_auth: Vec<String>,
    pub token_forms: Vec<HashMap<String, String>>,
}

struct Client {
    secret: Option<String>,
    auth_method: String,
    redirect_uris: Vec<String>,
}

struct PendingCode {
    client_id: String,
    challenge: String,
    redirect_uri: String,
    scope: String,
    resource: Option<String>,
}

struct Grant {
    scope: String,
    expires_at: u64,
    client_id: String,
    resource: Option<String>,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<String, Client>,
    codes: HashMap<String, PendingCode>,
    access_tokens: HashMap<String, Grant>,
    refresh_tokens: HashMap<String, (String, String, Option<String>)>,
    counters: Counters,
    next: u64,
}

/// A running demo server.
#[derive(Clone)]
pub struct DemoServer {
    pub base: String,
    pub behaviour: Arc<Mutex<Behaviour>>,
    inner: Arc<Mutex<Inner>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl DemoServer {
    /// Starts the server on 127.0.0.1 with a free port.
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut inner = Inner::default();
        if let Some((id, secret)) = behaviour.pre_registered {
            inner.clients.insert(
                id.into(),
                Client {
                    secret: Some(secret.into()),
                    auth_method: "client_secret_basic".into(),
                    redirect_uris: Vec::new(),
                },
            );
        }
        let server = Self {
            base,
            behaviour: Arc::new(Mutex::new(behaviour)),
            inner: Arc::new(Mutex::new(inner)),
        };
        let app = Router::new()
            .route("/.well-known/oauth-protected-resource/mcp", get(prm))
            .route("/.well-known/oauth-authorization-server", get(as_metadata))
            .route("/register", post(register))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/mcp", post(mcp))
            .route("/whoami", get(whoami).post(whoami))
            .route("/ping", get(|| async { "pong" }))
            .route("/introspect", post(introspect))
            .with_state(server.clone());
        let idle_timeout = server.behaviour().idle_timeout;
        tokio::spawn(async move {
            match idle_timeout {
                Some(idle) => idle_close::serve_closing_idle(listener, app, idle).await,
                None => axum::serve(listener, app).await.unwrap(),
            }
        });
        server
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn counters(&self) -> Counters {
        self.inner.lock().unwrap().counters.clone()
    }

    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.behaviour.lock().unwrap());
    }

    fn behaviour(&self) -> Behaviour {
        self.behaviour.lock().unwrap().clone()
    }

    /// Makes every access token issued so far invalid, as a revocation would.
    pub fn revoke_access_tokens(&self) {
        self.inner.lock().unwrap().access_tokens.clear();
    }

    /// Makes every refresh token issued so far invalid.
    pub fn revoke_refresh_tokens(&self) {
        self.inner.lock().unwrap().refresh_tokens.clear();
    }

    /// Forgets every registered client, as a server that lost its registrations would.
    pub fn forget_clients(&self) {
        self.inner.lock().unwrap().clients.clear();
    }

    fn issue(
        &self,
        inner: &mut Inner,
        client_id: &str,
        scope: &str,
        resource: Option<String>,
    ) -> Value {
        inner.next += 1;
        let n = inner.next;
        let access = format!(
            "at-{n}-{:016x}{}",
            rand::random::<u64>(),
            self.behaviour().access_token_suffix
        );
        let refresh = format!("rt-{n}-{:016x}", rand::random::<u64>());
        let lifetime = self.behaviour().access_token_lifetime.as_secs();
        inner.access_tokens.insert(
            access.clone(),
            Grant {
                scope: scope.into(),
                expires_at: now() + lifetime,
                client_id: client_id.into(),
                resource: resource.clone(),
            },
        );
        inner
            .refresh_tokens
            .insert(refresh.clone(), (client_id.into(), scope.into(), resource));
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "refresh_token": refresh,
            "scope": scope,
        })
    }
}

async fn prm(State(s): State<DemoServer>, headers: HeaderMap) -> Response {
    let b = s.behaviour();
    {
        let mut inner = s.inner.lock().unwrap();
        inner.counters.prm_requests += 1;
        if !b.publish_prm {
            return StatusCode::NOT_FOUND.into_response();
        }
        if let Some(v) = headers.get("mcp-protocol-version") {
            inner
                .counters
                .protocol_version_headers
                .push(v.to_str().unwrap_or("").into());
        }
    }
    Json(json!({
        "resource": b.prm_resource.clone().unwrap_or_else(|| s.mcp_url()),
        "authorization_servers": [s.base],
        "scopes_supported": ["mcp"],
    }))
    .into_response()
}

async fn as_metadata(State(s): State<DemoServer>) -> Response {
    let b = s.behaviour();
    if !b.publish_as_metadata {
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Some(location) = &b.redirect_to {
        return (StatusCode::FOUND, [(header::LOCATION, location.clone())]).into_response();
    }
    let mut doc = json!({
        "issuer": b.metadata_issuer.clone().unwrap_or_else(|| s.base.clone()),
        "authorization_endpoint": format!("{}/authorize", s.base),
        "token_endpoint": b.token_endpoint.clone().unwrap_or_else(|| format!("{}/token", s.base)),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": b.token_auth_methods,
        "scopes_supported": b.scopes_supported,
        "authorization_response_iss_parameter_supported": b.advertise_iss,
        "client_id_metadata_document_supported": b.cimd_supported,
    });
    if b.registration {
        doc["registration_endpoint"] = json!(format!("{}/register", s.base));
    }
    if let Some(methods) = &b.code_challenge_methods {
        doc["code_challenge_methods_supported"] = json!(methods);
    }
    if b.metadata_padding > 0 {
        doc["padding"] = json!("x".repeat(b.metadata_padding));
    }
    let body = b
        .metadata_body
        .map(String::from)
        .unwrap_or_else(|| doc.to_string());
    ([(header::CONTENT_TYPE, b.metadata_content_type)], body).into_response()
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"error": error}))).into_response()
}

async fn register(State(s): State<DemoServer>, Json(body): Json<Value>) -> Response {
    let b = s.behaviour();
    let mut inner = s.inner.lock().unwrap();
    inner.counters.registrations += 1;
    inner.counters.registration_bodies.push(body.clone());
    inner.next += 1;
    let client_id = format!("client-{}", inner.next);
    let method = body["token_endpoint_auth_method"]
        .as_str()
        .unwrap_or("client_secret_basic")
        .to_owned();
    let secret = (method != "none").then(|| format!("secret-{:016x}", rand::random::<u64>()));
    let redirect_uris: Vec<String> = body["redirect_uris"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let redirect_uris = b.registered_redirect_uris.unwrap_or(redirect_uris);
    inner.clients.insert(
        client_id.clone(),
        Client {
            secret: secret.clone(),
            auth_method: method.clone(),
            redirect_uris: redirect_uris.clone(),
        },
    );
    let mut response = json!({
        "client_id": client_id,
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": method,
        "grant_types": ["authorization_code", "refresh_token"],
    });
    if let Some(secret) = secret {
        response["client_secret"] = json!(secret);
        if let Some(at) = b.client_secret_expires_at {
            response["client_secret_expires_at"] = json!(at);
        }
    }
    (StatusCode::CREATED, Json(response)).into_response()
}

async fn authorize(
    State(s): State<DemoServer>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let b = s.behaviour();
    let mut inner = s.inner.lock().unwrap();
    inner.counters.authorizations += 1;
    inner.counters.authorize_params.push(q.clone());
    let client_id = q.get("client_id").cloned().unwrap_or_default();
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    let known = client_id.starts_with("https://")
        || inner
            .clients
            .get(&client_id)
            .is_some_and(|c| c.redirect_uris.is_empty() || c.redirect_uris.contains(&redirect_uri));
    if !known || q.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    inner.next += 1;
    let code = format!("code-{}-{:016x}", inner.next, rand::random::<u64>());
    inner.codes.insert(
        code.clone(),
        PendingCode {
            client_id,
            challenge: q.get("code_challenge").cloned().unwrap_or_default(),
            redirect_uri: redirect_uri.clone(),
            scope: q.get("scope").cloned().unwrap_or_default(),
            resource: q.get("resource").cloned(),
        },
    );
    let mut location = url::Url::parse(&redirect_uri).unwrap();
    {
        let mut pairs = location.query_pairs_mut();
        pairs.append_pair("code", &code);
        let state = b
            .state_override
            .clone()
            .unwrap_or_else(|| q.get("state").cloned().unwrap_or_default());
        pairs.append_pair("state", &state);
        match &b.redirect_iss {
            None => {
                pairs.append_pair("iss", &s.base);
            }
            Some(Some(iss)) => {
                pairs.append_pair("iss", iss);
            }
            Some(None) => {}
        }
    }
    let location = b
        .authorize_location
        .clone()
        .unwrap_or_else(|| location.to_string());
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// Client authentication at the token endpoint: returns the client id, or the error response.
#[allow(clippy::result_large_err)]
fn authenticate(
    inner: &mut Inner,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<String, Response> {
    let invalid_client = || {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"demo\"")],
            Json(json!({"error": "invalid_client"})),
        )
            .into_response()
    };
    let (client_id, secret, method) = if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic)
            .map_err(|_| invalid_client())?;
        let decoded = String::from_utf8(decoded).map_err(|_| invalid_client())?;
        let (id, secret) = decoded.split_once(':').ok_or_else(invalid_client)?;
        let decode = |v: &str| {
            url::form_urlencoded::parse(format!("v={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        (decode(id), Some(decode(secret)), "client_secret_basic")
    } else if let Some(secret) = form.get("client_secret") {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            Some(secret.clone()),
            "client_secret_post",
        )
    } else {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            None,
            "none",
        )
    };
    inner.counters.token_client_auth.push(method.into());
    if client_id.starts_with("https://") && method == "none" {
        return Ok(client_id);
    }
    let client = inner.clients.get(&client_id).ok_or_else(invalid_client)?;
    if client.auth_method != method || client.secret != secret {
        return Err(invalid_client());
    }
    Ok(client_id)
}

async fn token(
    State(s): State<DemoServer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let b = s.behaviour();
    tokio::time::sleep(b.token_delay).await;
    let mut inner = s.inner.lock().unwrap();
    inner.counters.token_forms.push(form.clone());
    if let Some(status) = b.token_failure {
        if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
            inner.counters.refreshes += 1;
        }
        let status = StatusCode::from_u16(status).unwrap();
        return (
            status,
            [(header::CONTENT_TYPE, "text/html")],
            "<h1>oops</h1>",
        )
            .into_response();
    }
    let client_id = match authenticate(&mut inner, &headers, &form) {
        Ok(id) => id,
        Err(response) => return response,
    };
    inner
        .counters
        .token_resources
        .push(form.get("resource").cloned());
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            inner.counters.code_exchanges += 1;
            let Some(pending) = inner
                .codes
                .remove(form.get("code").map(String::as_str).unwrap_or(""))
            else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()));
            if pending.client_id != client_id
                || pending.challenge != challenge
                || form.get("redirect_uri") != Some(&pending.redirect_uri)
                || form.get("resource") != pending.resource.as_ref()
            {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let body = s.issue(
                &mut inner,
                &client_id,
                &pending.scope,
                pending.resource.clone(),
            );
            Json(body).into_response()
        }
        Some("refresh_token") => {
            inner.counters.refreshes += 1;
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            let Some((owner, scope, resource)) = inner.refresh_tokens.get(&presented).cloned()
            else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            if owner != client_id {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let mut body = s.issue(&mut inner, &client_id, &scope, resource);
            if b.rotate_refresh_tokens {
                inner.refresh_tokens.remove(&presented);
            } else {
                let issued = body["refresh_token"].as_str().unwrap().to_owned();
                inner.refresh_tokens.remove(&issued);
                body.as_object_mut().unwrap().remove("refresh_token");
            }
            Json(body).into_response()
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

/// RFC 7662 for the tokens this server issued (client authentication is not checked here).
async fn introspect(
    State(s): State<DemoServer>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let inner = s.inner.lock().unwrap();
    let grant = form
        .get("token")
        .and_then(|t| inner.access_tokens.get(t))
        .filter(|g| g.expires_at > now());
    let answer = match grant {
        Some(grant) => json!({
            "active": true,
            "scope": grant.scope,
            "client_id": grant.client_id,
            "sub": "demo-user",
            "aud": grant.resource,
            "exp": grant.expires_at,
            "iss": s.base,
        }),
        None => json!({"active": false}),
    };
    Json(answer).into_response()
}

/// Echoes the `Authorization` header it received, or `none`.
async fn whoami(headers: HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned()
}

/// A 403 asking for `scope`.
fn insufficient_scope(scope: &str, metadata_url: &str) -> Response {
    let challenge = format!(
        "Bearer error=\"insufficient_scope\", scope=\"{scope}\", resource_metadata=\"{metadata_url}\""
    );
    (
        StatusCode::FORBIDDEN,
        [(header::WWW_AUTHENTICATE, challenge)],
    )
        .into_response()
}

async fn mcp(
    State(s): State<DemoServer>,
    headers: HeaderMap,
    Json(message): Json<Value>,
) -> Response {
    let b = s.behaviour();
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp", s.base);
    let mut inner = s.inner.lock().unwrap();
    inner.counters.mcp_requests += 1;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let grant = token
        .and_then(|t| inner.access_tokens.get(t))
        .filter(|g| g.expires_at > now() && !b.reject_all_tokens);
    let Some(grant) = grant else {
        let challenge = match token {
            None => format!("Bearer resource_metadata=\"{metadata_url}\""),
            Some(_) => {
                format!("Bearer error=\"invalid_token\", resource_metadata=\"{metadata_url}\"")
            }
        };
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
        )
            .into_response();
    };
    match b.mcp_answer {
        McpAnswer::Normal => {}
        McpAnswer::ForbidEverything => return insufficient_scope("mcp", &metadata_url),
        McpAnswer::StreamForever => {
            let comments = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok::<_, std::convert::Infallible>(": still here\n\n"), ()))
            });
            return (
                [(header::CONTENT_TYPE, "text/event-stream")],
                axum::body::Body::from_stream(comments),
            )
                .into_response();
        }
        McpAnswer::HugeHeader => {
            return (
                [("x-padding", "p".repeat(16 << 20))],
                Json(json!({"jsonrpc": "2.0", "id": message.get("id"), "result": {}})),
            )
                .into_response();
        }
    }
    if let Some(required) = b.required_scope {
        if !grant.scope.split(' ').any(|s| s == required) {
            return insufficient_scope(required, &metadata_url);
        }
    }
    let id = message.get("id").cloned();
    let result = match message["method"].as_str() {
        Some("initialize") => json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "demo", "version": "1"},
        }),
        Some("tools/list") => {
            json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]})
        }
        Some("tools/call") => json!({
            "content": [{"type": "text", "text": message["params"]["arguments"]["text"].as_str().unwrap_or("")}],
        }),
        _ => return StatusCode::ACCEPTED.into_response(),
    };
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}
