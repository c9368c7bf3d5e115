//! The grants without a user over real HTTP: a purpose-built authorization server, enterprise
//! IdP and MCP resource on loopback, which record every token request they get.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use tower_mcp_oauth::client::{
    AuthorizedHttpClient, ClientKey, ClientRegistration, EnterpriseGrant, Grant, OAuthConfig,
    OAuthState, TokenEndpointAuthMethod, TokenSource, ID_JAG_TOKEN_TYPE,
};
use tower_mcp_oauth::ErrorKind;
use url::Url;

/// What the token endpoint answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Issue,
    RevokedClient,
    InvalidScope,
}

/// A token request as received: its form and its Authorization header.
type TokenRequest = (HashMap<String, String>, Option<String>);

struct Shared {
    base: String,
    mode: Mutex<Mode>,
    expires_in: Mutex<u64>,
    /// Every token request: its form and its Authorization header.
    token_requests: Mutex<Vec<TokenRequest>>,
    exchanges: Mutex<Vec<HashMap<String, String>>>,
    issued: AtomicU64,
    valid: Mutex<Vec<String>>,
}

type App = Arc<Shared>;

async fn resource_metadata(State(app): State<App>) -> Json<Value> {
    Json(json!({"resource": format!("{}/mcp", app.base), "authorization_servers": [app.base]}))
}

async fn server_metadata(State(app): State<App>) -> Json<Value> {
    Json(json!({
        "issuer": app.base,
        "authorization_endpoint": format!("{}/authorize", app.base),
        "token_endpoint": format!("{}/token", app.base),
        "grant_types_supported": ["client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
    }))
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": "refused by the test"})),
    )
        .into_response()
}

async fn token(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    app.token_requests
        .lock()
        .unwrap()
        .push((form.clone(), authorization));
    match *app.mode.lock().unwrap() {
        Mode::RevokedClient => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client"),
        Mode::InvalidScope => return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope"),
        Mode::Issue => {}
    }
    let n = app.issued.fetch_add(1, Ordering::SeqCst);
    let token = format!("at-{n}");
    app.valid.lock().unwrap().push(token.clone());
    let expires_in = *app.expires_in.lock().unwrap();
    Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in}))
        .into_response()
}

/// The enterprise IdP's token exchange: an ID-JAG for the subject token it knows.
async fn idp_token(State(app): State<App>, Form(form): Form<HashMap<String, String>>) -> Response {
    app.exchanges.lock().unwrap().push(form.clone());
    if form.get("subject_token").map(String::as_str) != Some("user-id-token") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    Json(json!({
        "access_token": "the-id-jag",
        "issued_token_type": ID_JAG_TOKEN_TYPE,
        "token_type": "N_A",
        "expires_in": 300,
    }))
    .into_response()
}

async fn mcp(State(app): State<App>, headers: HeaderMap) -> Response {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    if presented.is_some_and(|t| app.valid.lock().unwrap().contains(&t)) {
        return Json(json!({"jsonrpc": "2.0", "id": 1, "result": {}})).into_response();
    }
    let challenge = format!(
        "Bearer error=\"invalid_token\", resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        app.base
    );
    (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response()
}

async fn start() -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Arc::new(Shared {
        base,
        mode: Mutex::new(Mode::Issue),
        expires_in: Mutex::new(3600),
        token_requests: Mutex::default(),
        exchanges: Mutex::default(),
        issued: AtomicU64::new(0),
        valid: Mutex::default(),
    });
    let router = Router::new()
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(resource_metadata),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(server_metadata),
        )
        .route("/token", post(token))
        .route("/idp/token", post(idp_token))
        .route("/mcp", post(mcp))
        .with_state(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    app
}

fn mcp_request(app: &App) -> http::Request<tower_mcp_oauth::http::RequestBody> {
    http::Request::post(format!("{}/mcp", app.base))
        .header("content-type", "application/json")
        .body(tower_mcp_oauth::http::RequestBody::from(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_vec(),
        ))
        .unwrap()
}

async fn state(app: &App, config: OAuthConfig) -> OAuthState {
    OAuthState::new(format!("{}/mcp", app.base), Some(config))
        .await
        .unwrap()
}

async fn authorized(app: &App, config: OAuthConfig) -> AuthorizedHttpClient {
    state(app, config)
        .await
        .to_authorized_http_client()
        .await
        .unwrap()
}

fn requests(app: &App) -> Vec<TokenRequest> {
    app.token_requests.lock().unwrap().clone()
}

fn basic_client() -> ClientRegistration {
    ClientRegistration::confidential("svc", "s3cret", TokenEndpointAuthMethod::ClientSecretBasic)
}

#[tokio::test]
async fn client_credentials_with_basic_auth_reaches_the_resource() {
    let app = start().await;
    let config = OAuthConfig::new()
        .client(basic_client())
        .grant(Grant::ClientCredentials);
    let client = authorized(&app, config).await;
    let response = client.send(mcp_request(&app)).await.unwrap();
    assert_eq!(response.status(), 200);
    let sent = requests(&app);
    assert_eq!(sent.len(), 1);
    let (form, authorization) = &sent[0];
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["resource"], format!("{}/mcp", app.base));
    assert!(!form.contains_key("client_secret"));
    assert_eq!(
        authorization.as_deref(),
        Some(format!("Basic {}", STANDARD.encode("svc:s3cret")).as_str())
    );
}

#[tokio::test]
async fn client_secret_post_sends_the_secret_in_the_body_only() {
    let app = start().await;
    let client = ClientRegistration::confidential(
        "svc",
        "s3cret",
        TokenEndpointAuthMethod::ClientSecretPost,
    );
    let config = OAuthConfig::new()
        .client(client)
        .grant(Grant::ClientCredentials)
        .scopes(["mcp:tools"])
        .token_param("audience", "https://api.example.com");
    let oauth = state(&app, config).await;
    let tokens = oauth.authorize().await.unwrap();
    assert_eq!(tokens.scopes, ["mcp:tools"]);
    let (form, authorization) = &requests(&app)[0];
    assert_eq!(authorization, &None);
    assert_eq!(form["client_id"], "svc");
    assert_eq!(form["client_secret"], "s3cret");
    assert_eq!(form["scope"], "mcp:tools");
    assert_eq!(form["audience"], "https://api.example.com");
}

#[tokio::test]
async fn private_key_jwt_assertions_are_signed_for_the_issuer_and_never_reused() {
    let app = start().await;
    let key = ClientKey::generate_es256().unwrap().with_kid("k1");
    let jwk = key.public_jwk();
    let config = OAuthConfig::new()
        .client(ClientRegistration::private_key_jwt("svc", key).for_issuer(app.base.clone()))
        .grant(Grant::ClientCredentials)
        .resource_indicator(false);
    let oauth = state(&app, config).await;
    oauth.authorize().await.unwrap();
    oauth.authorize().await.unwrap();
    let sent = requests(&app);
    assert_eq!(sent.len(), 2);
    let decoding =
        jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[app.base.as_str()]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let mut ids = Vec::new();
    for (form, authorization) in &sent {
        assert_eq!(authorization, &None);
        assert!(!form.contains_key("resource"), "resource switched off");
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        let assertion = &form["client_assertion"];
        let header = jsonwebtoken::decode_header(assertion).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let claims = jsonwebtoken::decode::<Value>(assertion, &decoding, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims["iss"], "svc");
        assert_eq!(claims["sub"], "svc");
        assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 60);
        ids.push(claims["jti"].as_str().unwrap().to_owned());
    }
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn a_client_bound_to_another_issuer_sends_nothing() {
    let app = start().await;
    let config = OAuthConfig::new()
        .client(basic_client().for_issuer("https://auth.example.com"))
        .grant(Grant::ClientCredentials);
    let error = state(&app, config).await.authorize().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::IssuerMismatch);
    assert!(requests(&app).is_empty());
}

#[tokio::test]
async fn a_revoked_client_is_a_typed_error_without_a_retry_storm() {
    let app = start().await;
    *app.mode.lock().unwrap() = Mode::RevokedClient;
    let config = OAuthConfig::new()
        .client(basic_client())
        .grant(Grant::ClientCredentials);
    let client = authorized(&app, config).await;
    let mut kinds = Vec::new();
    for _ in 0..20 {
        kinds.push(client.send(mcp_request(&app)).await.unwrap_err().kind());
    }
    assert_eq!(kinds[0], ErrorKind::InvalidClient);
    // One token request per failed attempt at most, and the brake stops them soon.
    let attempts = requests(&app).len();
    assert!(attempts <= 6, "{attempts} token requests for 20 calls");
    assert!(kinds.contains(&ErrorKind::TooManyAttempts));
    // Nothing but the one grant was tried.
    assert!(requests(&app)
        .iter()
        .all(|(form, _)| form["grant_type"] == "client_credentials"));
}

#[tokio::test]
async fn invalid_scope_is_its_own_error_kind() {
    let app = start().await;
    *app.mode.lock().unwrap() = Mode::InvalidScope;
    let config = OAuthConfig::new()
        .client(basic_client())
        .grant(Grant::ClientCredentials);
    let error = state(&app, config).await.authorize().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidScope);
    assert_eq!(requests(&app).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_with_an_expired_token_make_one_token_request() {
    let app = start().await;
    // A token that is due at once: every request after the first wants a new one.
    *app.expires_in.lock().unwrap() = 0;
    let config = OAuthConfig::new()
        .client(basic_client())
        .grant(Grant::ClientCredentials);
    let client = authorized(&app, config).await;
    assert_eq!(client.send(mcp_request(&app)).await.unwrap().status(), 200);
    *app.expires_in.lock().unwrap() = 3600;
    let before = requests(&app).len();
    let calls = (0..1000).map(|_| {
        let (client, request) = (client.clone(), mcp_request(&app));
        tokio::spawn(async move { client.send(request).await.map(|r| r.status()) })
    });
    for call in futures_util::future::join_all(calls).await {
        assert_eq!(call.unwrap().unwrap(), 200);
    }
    assert_eq!(requests(&app).len() - before, 1);
}

#[tokio::test]
async fn a_rotated_workload_token_file_is_read_at_the_next_acquisition() {
    let app = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "workload-token-1\n").unwrap();
    let config = OAuthConfig::new()
        .client(ClientRegistration::public("workload"))
        .grant(Grant::JwtBearer {
            assertion: TokenSource::file(&path),
        });
    let oauth = state(&app, config).await;
    oauth.authorize().await.unwrap();
    std::fs::write(&path, "workload-token-2").unwrap();
    oauth.authorize().await.unwrap();
    let sent = requests(&app);
    let assertions: Vec<_> = sent.iter().map(|(f, _)| f["assertion"].clone()).collect();
    assert_eq!(assertions, ["workload-token-1", "workload-token-2"]);
    for (form, _) in &sent {
        assert_eq!(
            form["grant_type"],
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
        assert_eq!(form["client_id"], "workload");
    }
    // A missing file is a configuration error, and no request goes out.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        oauth.authorize().await.unwrap_err().kind(),
        ErrorKind::Config
    );
    assert_eq!(requests(&app).len(), 2);
}

#[tokio::test]
async fn enterprise_managed_authorization_exchanges_the_id_token_for_an_id_jag() {
    let app = start().await;
    let idp_issuer = format!("{}/idp", app.base);
    let enterprise = EnterpriseGrant::with_token_endpoint(
        idp_issuer.clone(),
        Url::parse(&format!("{idp_issuer}/token")).unwrap(),
        ClientRegistration::public("idp-client"),
        TokenSource::fixed("user-id-token"),
    );
    let config = OAuthConfig::new()
        .client(basic_client())
        .grant(Grant::EnterpriseManaged(enterprise));
    let client = authorized(&app, config).await;
    assert_eq!(client.send(mcp_request(&app)).await.unwrap().status(), 200);
    let exchanges = app.exchanges.lock().unwrap().clone();
    assert_eq!(exchanges.len(), 1);
    let exchange = &exchanges[0];
    assert_eq!(
        exchange["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(exchange["requested_token_type"], ID_JAG_TOKEN_TYPE);
    assert_eq!(
        exchange["subject_token_type"],
        "urn:ietf:params:oauth:token-type:id_token"
    );
    assert_eq!(exchange["audience"], app.base);
    assert_eq!(exchange["resource"], format!("{}/mcp", app.base));
    assert_eq!(exchange["client_id"], "idp-client");
    let (form, authorization) = &requests(&app)[0];
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    assert_eq!(form["assertion"], "the-id-jag");
    assert!(authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Basic ")));
}

#[tokio::test]
async fn the_client_key_and_workload_tokens_stay_out_of_debug_output() {
    let key = ClientKey::generate_es256().unwrap().with_kid("k1");
    let jwk = key.public_jwk();
    let debug = format!("{key:?} {:?}", TokenSource::fixed("workload-secret-token"));
    assert!(debug.contains("ES256") && debug.contains("k1"));
    assert!(!debug.contains("workload-secret-token"));
    assert!(jwk.get("d").is_none());
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    assert_eq!(x.len(), 32);
    let pem_error =
        ClientKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
    assert_eq!(pem_error.kind(), ErrorKind::Config);
    assert!(!pem_error.to_string().contains("AAAA"));
}
