//! The legacy HTTP+SSE server's bounds: a client that never reads its stream loses its session
//! instead of growing the server; `Host` and `Origin` are checked against DNS rebinding; sessions
//! are capped in all and per token owner.

mod support;

use std::time::Duration;

use http::StatusCode;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use support::mcp::{legacy_routes, legacy_server, protected_legacy_routes, LegacyTools};
use support::{alive_tasks, bind, hyper_client, serve_on, HyperClient};
use tower_mcp_oauth::server::{AuthData, RequireBearerLayer, StaticVerifier};

async fn serve(legacy: LegacyTools, bearer: bool) -> String {
    let (listener, base) = bind().await;
    let app = if bearer {
        let user = |name: &str| AuthData {
            subject: Some(name.into()),
            client_id: Some("c".into()),
            audience: vec![base.clone()],
            ..Default::default()
        };
        let verifier = StaticVerifier::new()
            .token("alice", user("alice"))
            .token("bob", user("bob"));
        let layer = RequireBearerLayer::new(verifier).resource(base.clone());
        protected_legacy_routes(legacy, layer)
    } else {
        legacy_routes(legacy)
    };
    serve_on(listener, app);
    base
}

/// Opens a stream; returns its status and, when it opened, the body (unread past the endpoint)
/// and the message URL.
async fn open(
    client: &HyperClient,
    base: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<(hyper::body::Incoming, String)>) {
    let mut request = http::Request::get(format!("{base}/sse"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    if status != StatusCode::OK {
        return (status, None);
    }
    let mut body = response.into_body();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let frame = body.frame().await.unwrap().unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    let path = text
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .unwrap()
        .to_owned();
    (status, Some((body, format!("{base}{path}"))))
}

async fn post(client: &HyperClient, url: &str, message: serde_json::Value) -> StatusCode {
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::from(message.to_string()))
        .unwrap();
    client.request(request).await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_stream_loses_the_session_not_the_server_its_memory() {
    let base = serve(legacy_server(), false).await;
    let client = hyper_client();
    let (_, opened) = open(&client, &base, &[]).await;
    let (_unread_stream, url) = opened.unwrap();
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    assert_eq!(post(&client, &url, initialize).await, StatusCode::ACCEPTED);
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post(&client, &url, initialized).await, StatusCode::ACCEPTED);
    let tasks_before = alive_tasks();
    let text = "x".repeat(64 * 1024);
    let mut ended_after = None;
    for n in 0..1_500 {
        let call = json!({"jsonrpc": "2.0", "id": n + 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": text}}});
        let status = tokio::time::timeout(Duration::from_secs(5), post(&client, &url, call))
            .await
            .expect("a POST is answered, never held");
        if status == StatusCode::NOT_FOUND {
            ended_after = Some(n);
            break;
        }
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let ended_after = ended_after.expect("the session ended");
    let tasks_after = alive_tasks();
    assert!(
        tasks_after <= tasks_before + 8,
        "{tasks_before} tasks before, {tasks_after} after {ended_after} unread answers"
    );
}

#[tokio::test]
async fn another_host_or_origin_is_refused_against_dns_rebinding() {
    let base = serve(legacy_server(), false).await;
    let client = hyper_client();
    let port = base.rsplit(':').next().unwrap();
    let evil_host = format!("evil.example:{port}");
    assert_eq!(
        open(&client, &base, &[("host", &evil_host)]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        open(&client, &base, &[("origin", "http://evil.example")])
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let local_page = format!("http://localhost:{port}");
    assert_eq!(
        open(&client, &base, &[("origin", &local_page)]).await.0,
        StatusCode::OK
    );
    // Configured for a public name, that name is served.
    let public = serve(legacy_server().allowed_hosts(["mcp.example.com"]), false).await;
    assert_eq!(
        open(&client, &public, &[("host", "mcp.example.com")])
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(open(&client, &public, &[]).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sessions_are_capped_in_all_and_per_token_owner() {
    let client = hyper_client();
    let base = serve(legacy_server().max_sessions(3), false).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let (status, opened) = open(&client, &base, &[]).await;
        assert_eq!(status, StatusCode::OK);
        streams.push(opened);
    }
    assert_eq!(
        open(&client, &base, &[]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // A closed stream frees its place, once the server has seen it close.
    streams.pop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while open(&client, &base, &[]).await.0 != StatusCode::OK {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place stays taken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let base = serve(legacy_server().max_sessions_per_owner(2), true).await;
    let alice = [("authorization", "Bearer alice")];
    let mut kept = Vec::new();
    for _ in 0..2 {
        let (status, opened) = open(&client, &base, &alice).await;
        assert_eq!(status, StatusCode::OK);
        kept.push(opened);
    }
    assert_eq!(
        open(&client, &base, &alice).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        open(&client, &base, &[("authorization", "Bearer bob")])
            .await
            .0,
        StatusCode::OK,
        "another user is not held back"
    );
}
