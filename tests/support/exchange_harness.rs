//! A second, independent token exchange server for the tests (written from RFC 8693 §2 and
//! Microsoft's on-behalf-of documentation, not from the crate), which checks every parameter a
//! request sends and counts what it issues; and a downstream API that knows its tokens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

pub const CLIENT_ID: &str = "mcp-server";
pub const CLIENT_SECRET: &str = "mcp-server-secret";
pub const AUDIENCE: &str = "https://crm.test/api";

/// Which request shape the server expects.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Rfc8693,
    EntraOnBehalfOf,
}

#[derive(Default)]
pub struct Books {
    /// Subject tokens the server knows: token → user.
    pub users: HashMap<String, String>,
    /// Issued downstream tokens: token → user.
    pub issued: HashMap<String, String>,
    /// Downstream tokens the API refuses once (as if revoked).
    pub refuse_once: Vec<String>,
    /// Every problem found in a request; the tests assert it stays empty.
    pub violations: Vec<String>,
    /// Users the server refuses, with the OAuth error code.
    pub refused: HashMap<String, String>,
}

#[derive(Clone)]
pub struct Harness {
    pub base: String,
    pub shape: Shape,
    pub exchanges: Arc<AtomicUsize>,
    pub api_calls: Arc<AtomicUsize>,
    pub books: Arc<Mutex<Books>>,
    /// How long each exchange takes: lets concurrent callers pile up.
    pub delay: Duration,
    pub expires_in: u64,
}

impl Harness {
    /// Serves the token endpoint at `{base}/token` and the API at `{base}/api/...`.
    pub async fn start(shape: Shape, delay: Duration) -> Self {
        let (listener, base) = super::bind().await;
        let harness = Self {
            base,
            shape,
            exchanges: Arc::default(),
            api_calls: Arc::default(),
            books: Arc::default(),
            delay,
            expires_in: 600,
        };
        let app = Router::new()
            .route("/token", post(token))
            .route("/api/whoami", get(whoami))
            .with_state(harness.clone());
        super::serve_on(listener, app);
        harness
    }

    pub fn user(&self, token: &str, user: &str) {
        self.books
            .lock()
            .unwrap()
            .users
            .insert(token.into(), user.into());
    }

    pub fn violations(&self) -> Vec<String> {
        self.books.lock().unwrap().violations.clone()
    }

    pub fn exchanges(&self) -> usize {
        self.exchanges.load(Ordering::SeqCst)
    }
}

fn form(body: &str) -> Result<HashMap<String, String>, String> {
    let mut fields = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(body.as_bytes()) {
        if fields.insert(name.to_string(), value.to_string()).is_some() {
            return Err(format!("{name} repeated"));
        }
    }
    Ok(fields)
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(json!({ "error": code, "error_description": format!("harness: {code}") })),
    )
        .into_response()
}

/// RFC 6749 §2.3.1: Basic with the form-encoded id and secret.
fn basic_client(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

async fn token(State(harness): State<Harness>, headers: HeaderMap, body: String) -> Response {
    let mut problems = Vec::new();
    let fields = match form(&body) {
        Ok(fields) => fields,
        Err(problem) => {
            harness.books.lock().unwrap().violations.push(problem);
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        }
    };
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        problems.push("content-type is not a form".to_owned());
    }
    if basic_client(&headers) != Some((CLIENT_ID.into(), CLIENT_SECRET.into())) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if fields.contains_key("client_secret") {
        problems.push("the secret was sent twice".into());
    }
    let field = |name: &str| fields.get(name).map(String::as_str);
    let subject_token = match harness.shape {
        Shape::Rfc8693 => {
            if field("grant_type") != Some("urn:ietf:params:oauth:grant-type:token-exchange") {
                problems.push(format!("grant_type {:?}", field("grant_type")));
            }
            if field("subject_token_type") != Some("urn:ietf:params:oauth:token-type:access_token")
            {
                problems.push(format!(
                    "subject_token_type {:?}",
                    field("subject_token_type")
                ));
            }
            if let Some(requested) = field("requested_token_type") {
                if requested != "urn:ietf:params:oauth:token-type:access_token" {
                    problems.push(format!("requested_token_type {requested}"));
                }
            }
            if field("audience") != Some(AUDIENCE) {
                problems.push(format!("audience {:?}", field("audience")));
            }
            for forbidden in ["actor_token", "actor_token_type", "assertion"] {
                if fields.contains_key(forbidden) {
                    problems.push(format!("{forbidden} sent"));
                }
            }
            field("subject_token")
        }
        Shape::EntraOnBehalfOf => {
            if field("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
                problems.push(format!("grant_type {:?}", field("grant_type")));
            }
            if field("requested_token_use") != Some("on_behalf_of") {
                problems.push("requested_token_use is not on_behalf_of".into());
            }
            for forbidden in ["subject_token", "audience", "resource"] {
                if fields.contains_key(forbidden) {
                    problems.push(format!("{forbidden} sent to Entra"));
                }
            }
            field("assertion")
        }
    };
    let scope = field("scope").unwrap_or_default().to_owned();
    if scope.is_empty() {
        problems.push("no scope".into());
    }
    let expected: &[&str] = &[
        "grant_type",
        "subject_token",
        "subject_token_type",
        "requested_token_type",
        "audience",
        "resource",
        "scope",
        "assertion",
        "requested_token_use",
    ];
    for name in fields.keys() {
        if !expected.contains(&name.as_str()) {
            problems.push(format!("unexpected parameter {name}"));
        }
    }
    let number = harness.exchanges.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(harness.delay).await;
    let mut books = harness.books.lock().unwrap();
    books.violations.extend(problems);
    let Some(user) = subject_token.and_then(|t| books.users.get(t)).cloned() else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if let Some(code) = books.refused.get(&user) {
        let code = code.clone();
        drop(books);
        return oauth_error(StatusCode::BAD_REQUEST, &code);
    }
    let issued = format!("dt-{user}-{number}");
    books.issued.insert(issued.clone(), user);
    let mut answer = json!({
        "access_token": issued,
        "token_type": "Bearer",
        "expires_in": harness.expires_in,
        "scope": scope,
    });
    if harness.shape == Shape::Rfc8693 {
        answer["issued_token_type"] = json!("urn:ietf:params:oauth:token-type:access_token");
    }
    let mut response = Json(answer).into_response();
    response
        .headers_mut()
        .insert("cache-control", "no-store".parse().unwrap());
    response
}

async fn whoami(State(harness): State<Harness>, headers: HeaderMap) -> Response {
    harness.api_calls.fetch_add(1, Ordering::SeqCst);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let mut books = harness.books.lock().unwrap();
    if let Some(at) = books.refuse_once.iter().position(|t| *t == token) {
        books.refuse_once.remove(at);
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer error=\"invalid_token\"")],
        )
            .into_response();
    }
    match books.issued.get(&token) {
        Some(user) => Json(json!({ "user": user, "token": token })).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}
