//! The client against hostile and broken peers, each case under a hard timeout: a token endpoint
//! that hangs, trickles, floods, answers HTML, redirects, fails forever or cuts its answer; an
//! MCP endpoint that refuses forever, streams forever or sends a 16 MiB header; metadata that
//! names someone else. The outcome is always a typed error in bounded time, credentials stored
//! unchanged, and no token sent where it must not go.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::json;
use support::client::{headless_config, headless_state};
use support::demo_server::{Behaviour, DemoServer, McpAnswer};
use tower_mcp_oauth::client::{FileStore, OAuthState};
use tower_mcp_oauth::http::HttpClient;
use tower_mcp_oauth::ErrorKind;

/// The timeout every OAuth call of these clients runs under, the honest ones too: room for
/// a loaded machine.
const CALL_TIMEOUT: Duration = Duration::from_millis(1500);
/// Hard bound on one case: the call timeout and a generous margin.
const CASE_BOUND: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq)]
enum TokenEndpoint {
    /// Forwards to the real token endpoint.
    Honest,
    Hang,
    /// One byte a second.
    Trickle,
    /// A 10 MiB JSON body.
    Flood,
    Html,
    Redirect,
    ServerError,
    /// Announces a body and closes halfway.
    CutMidBody,
}

#[derive(Clone)]
struct TokenProxy {
    mode: Arc<Mutex<TokenEndpoint>>,
    upstream: String,
    requests: Arc<Mutex<usize>>,
}

async fn token(State(proxy): State<TokenProxy>, headers: HeaderMap, body: Bytes) -> Response {
    *proxy.requests.lock().unwrap() += 1;
    let mode = *proxy.mode.lock().unwrap();
    match mode {
        TokenEndpoint::Honest => {
            let mut request = http::Request::post(&proxy.upstream);
            for name in ["content-type", "authorization", "accept"] {
                if let Some(value) = headers.get(name) {
                    request = request.header(name, value);
                }
            }
            let answer = HttpClient::new()
                .send(request.body(body.into()).unwrap())
                .await
                .unwrap();
            let (parts, body) = answer.into_parts();
            Response::from_parts(parts, Body::from(body))
        }
        TokenEndpoint::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        }
        TokenEndpoint::Trickle => {
            let bytes = futures_util::stream::unfold(0u8, |n| async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Some((
                    Ok::<_, std::io::Error>(Bytes::from(vec![b' '])),
                    n.wrapping_add(1),
                ))
            });
            (
                [("content-type", "application/json")],
                Body::from_stream(bytes),
            )
                .into_response()
        }
        TokenEndpoint::Flood => {
            let padding = " ".repeat(10 << 20);
            (
                [("content-type", "application/json")],
                format!("{{\"access_token\":\"a\",{padding}\"token_type\":\"Bearer\"}}"),
            )
                .into_response()
        }
        TokenEndpoint::Html => (
            [("content-type", "text/html")],
            "<html><body>Sign in to continue</body></html>",
        )
            .into_response(),
        TokenEndpoint::Redirect => (
            StatusCode::FOUND,
            [("location", "http://127.0.0.1:9/elsewhere")],
        )
            .into_response(),
        TokenEndpoint::ServerError => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/plain")],
            "down",
        )
            .into_response(),
        TokenEndpoint::CutMidBody => {
            let half = futures_util::stream::iter([
                Ok(Bytes::from_static(b"{\"access_token\":\"abc")),
                Err(std::io::Error::other("cut")),
            ]);
            (
                [
                    ("content-type", "application/json"),
                    ("content-length", "200"),
                ],
                Body::from_stream(half),
            )
                .into_response()
        }
    }
}

struct Peers {
    server: DemoServer,
    proxy: TokenProxy,
    store_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Peers {
    async fn start(mode: TokenEndpoint) -> Self {
        let (listener, proxy_base) = support::bind().await;
        let proxy_url = format!("{proxy_base}/token");
        let server = DemoServer::start(Behaviour {
            token_endpoint: Some(proxy_url),
            ..Default::default()
        })
        .await;
        let proxy = TokenProxy {
            mode: Arc::new(Mutex::new(mode)),
            upstream: format!("{}/token", server.base),
            requests: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/token", post(token))
            .with_state(proxy.clone());
        support::serve_on(listener, app);
        let dir = tempfile::tempdir().unwrap();
        Self {
            server,
            proxy,
            store_path: dir.path().join("credentials.json"),
            _dir: dir,
        }
    }

    /// Peers with an honest token endpoint, and a client signed in to them.
    async fn signed_in() -> (Self, OAuthState) {
        let peers = Self::start(TokenEndpoint::Honest).await;
        let state = peers.state().await;
        state.authorize().await.unwrap();
        (peers, state)
    }

    fn set(&self, mode: TokenEndpoint) {
        *self.proxy.mode.lock().unwrap() = mode;
    }

    async fn state(&self) -> OAuthState {
        let config = headless_config()
            .store(FileStore::new(&self.store_path))
            .http(HttpClient::new().timeout(CALL_TIMEOUT));
        OAuthState::new(self.server.mcp_url(), Some(config))
            .await
            .unwrap()
    }

    fn stored(&self) -> String {
        std::fs::read_to_string(&self.store_path).unwrap_or_default()
    }
}

/// The kinds of error each broken token endpoint may give.
fn expected_kinds(mode: TokenEndpoint) -> &'static [ErrorKind] {
    match mode {
        TokenEndpoint::Honest => &[],
        TokenEndpoint::Hang | TokenEndpoint::Trickle => &[ErrorKind::Timeout],
        TokenEndpoint::Flood => &[ErrorKind::BodyTooLarge],
        TokenEndpoint::Html | TokenEndpoint::ServerError => {
            &[ErrorKind::InvalidResponse, ErrorKind::TokenEndpoint]
        }
        TokenEndpoint::Redirect => &[
            ErrorKind::UnexpectedRedirect,
            ErrorKind::InvalidResponse,
            ErrorKind::TokenEndpoint,
        ],
        TokenEndpoint::CutMidBody => &[ErrorKind::Http],
    }
}

const BROKEN: [TokenEndpoint; 7] = [
    TokenEndpoint::Hang,
    TokenEndpoint::Trickle,
    TokenEndpoint::Flood,
    TokenEndpoint::Html,
    TokenEndpoint::Redirect,
    TokenEndpoint::ServerError,
    TokenEndpoint::CutMidBody,
];

#[tokio::test]
async fn a_broken_token_endpoint_during_the_code_exchange_gives_a_typed_error_and_stores_nothing() {
    for mode in BROKEN {
        let peers = Peers::start(mode).await;
        let state = peers.state().await;
        let started = Instant::now();
        let error = tokio::time::timeout(CASE_BOUND, state.authorize())
            .await
            .unwrap_or_else(|_| panic!("{mode:?}: no answer within {CASE_BOUND:?}"))
            .unwrap_err();
        assert!(
            expected_kinds(mode).contains(&error.kind()),
            "{mode:?}: {:?} {error}",
            error.kind()
        );
        assert!(started.elapsed() < CALL_TIMEOUT * 3, "{mode:?}");
        assert!(state.credentials().is_none(), "{mode:?}");
        assert!(!peers.stored().contains("access_token"), "{mode:?}");
        assert_eq!(
            *peers.proxy.requests.lock().unwrap(),
            1,
            "{mode:?}: no retry loop"
        );
    }
}

#[tokio::test]
async fn a_broken_token_endpoint_during_a_refresh_changes_nothing_stored() {
    for mode in BROKEN {
        let (peers, state) = Peers::signed_in().await;
        let before = peers.stored();
        let tokens = state.credentials().unwrap();
        peers.set(mode);
        let error = tokio::time::timeout(CASE_BOUND, state.refresh())
            .await
            .unwrap_or_else(|_| panic!("{mode:?}: no answer within {CASE_BOUND:?}"))
            .unwrap_err();
        assert!(
            expected_kinds(mode).contains(&error.kind()) || error.kind() == ErrorKind::InvalidGrant,
            "{mode:?}: {:?} {error}",
            error.kind()
        );
        assert_eq!(peers.stored(), before, "{mode:?}: the store is untouched");
        assert_eq!(state.credentials(), Some(tokens), "{mode:?}");
        // The current access token still works.
        let response = call_mcp(&peers, &state).await.unwrap();
        assert_eq!(response.status(), 200, "{mode:?}");
    }
}

async fn call_mcp(
    peers: &Peers,
    state: &OAuthState,
) -> tower_mcp_oauth::Result<http::Response<Bytes>> {
    let client = state.to_authorized_http_client().await.unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let request = http::Request::post(peers.server.mcp_url())
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&call).unwrap().into())
        .unwrap();
    tokio::time::timeout(CASE_BOUND, client.send(request))
        .await
        .expect("an answer in bounded time")
}

#[tokio::test]
async fn an_mcp_server_that_refuses_every_token_is_not_fed_tokens_forever() {
    let (peers, state) = Peers::signed_in().await;
    peers.server.set(|b| b.reject_all_tokens = true);
    for _ in 0..5 {
        let _ = call_mcp(&peers, &state).await;
    }
    let counters = peers.server.counters();
    assert!(
        counters.authorizations + counters.refreshes <= 7,
        "the brake stops new tokens: {} authorizations, {} refreshes",
        counters.authorizations,
        counters.refreshes
    );
}

#[tokio::test]
async fn an_mcp_server_that_forbids_everything_gets_one_step_up_per_request_at_most() {
    let (peers, state) = Peers::signed_in().await;
    peers
        .server
        .set(|b| b.mcp_answer = McpAnswer::ForbidEverything);
    let response = call_mcp(&peers, &state).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The token already holds `mcp`: asking again for it cannot help, so no new authorization.
    assert_eq!(peers.server.counters().authorizations, 1);
}

#[tokio::test]
async fn an_mcp_answer_that_streams_forever_times_out() {
    let (peers, state) = Peers::signed_in().await;
    peers
        .server
        .set(|b| b.mcp_answer = McpAnswer::StreamForever);
    let started = Instant::now();
    let error = call_mcp(&peers, &state).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(started.elapsed() < CALL_TIMEOUT * 3);
}

#[tokio::test]
async fn a_16_mib_header_is_an_http_error_not_a_16_mib_buffer() {
    let (peers, state) = Peers::signed_in().await;
    peers.server.set(|b| b.mcp_answer = McpAnswer::HugeHeader);
    let error = call_mcp(&peers, &state).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Http, "{error}");
}

#[tokio::test]
async fn metadata_naming_another_issuer_or_resource_is_refused_before_any_token() {
    for behaviour in [
        Behaviour {
            metadata_issuer: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        },
        Behaviour {
            prm_resource: Some("http://127.0.0.1:9/mcp".into()),
            ..Default::default()
        },
    ] {
        let server = DemoServer::start(behaviour).await;
        let state = headless_state(&server.mcp_url()).await;
        let error = tokio::time::timeout(CASE_BOUND, state.authorize())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MetadataMismatch, "{error}");
        let counters = server.counters();
        assert_eq!(counters.registrations + counters.code_exchanges, 0);
    }
}
