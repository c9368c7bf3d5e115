//! How `mcp-oauth` reaches a server, with mcp-remote's flags: cookies kept for load balancers,
//! keep-alive pings, plain http on private networks. The server is a small MCP server on
//! 127.0.0.1 with no authorization, which notes what each request carried.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use support::forward_proxy::proxy;
use support::stdio::StdioPeer;

/// A request the server got: its method and `Cookie` header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// An MCP server (Streamable HTTP, JSON answers) that sets a load balancer's cookie on the
/// `initialize` answer.
async fn server() -> (String, std::net::SocketAddr, Seen) {
    let seen = Seen::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/mcp",
        post(move |headers: HeaderMap, body: String| {
            let log = log.clone();
            async move {
                let message: Value = serde_json::from_str(&body).unwrap_or_default();
                let method = message["method"].as_str().unwrap_or("").to_owned();
                let cookie = headers
                    .get("cookie")
                    .map(|v| v.to_str().unwrap_or("?").to_owned());
                log.lock().unwrap().push((method.clone(), cookie));
                let answer = |result: Value| json!({"jsonrpc": "2.0", "id": message["id"], "result": result});
                let reply: Response = match method.as_str() {
                    "initialize" => (
                        [
                            ("mcp-session-id", "s1"),
                            ("set-cookie", "AWSALB=node-7; Path=/; Max-Age=600; HttpOnly"),
                            ("content-type", "application/json"),
                        ],
                        answer(json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                            "serverInfo": {"name": "lb", "version": "1"}}))
                        .to_string(),
                    )
                        .into_response(),
                    m if m.starts_with("notifications/") => StatusCode::ACCEPTED.into_response(),
                    "ping" => axum::Json(answer(json!({}))).into_response(),
                    "tools/list" => axum::Json(answer(json!({"tools": []}))).into_response(),
                    _ => StatusCode::BAD_REQUEST.into_response(),
                };
                reply
            }
        })
        .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
        .delete(|| async { StatusCode::OK }),
    );
    let (listener, base) = support::bind().await;
    let address = listener.local_addr().unwrap();
    support::serve_on(listener, app);
    (format!("{base}/mcp"), address, seen)
}

/// `mcp-oauth ARGS` with `env`, credentials in a temporary directory.
fn start_bridge(args: &[&str], env: &[(&str, &str)]) -> (StdioPeer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = support::stdio::bridge_command(args, dir.path());
    command.envs(env.iter().copied());
    (StdioPeer::spawn(command), dir)
}

async fn start_session(bridge: &mut StdioPeer) {
    let result = bridge.start_session().await;
    assert_eq!(result["serverInfo"]["name"], "lb", "{result}");
}

fn methods(seen: &Seen) -> Vec<(String, Option<String>)> {
    seen.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_balancers_cookie_goes_back_and_pings_keep_the_session_alive() {
    let (url, _, seen) = server().await;
    let (mut bridge, _dir) = start_bridge(&[&url, "--keep-alive", "--ping-interval", "1"], &[]);
    start_session(&mut bridge).await;
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let (listed, printed) = bridge
        .ask(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    // The pings' answers stay in the bridge.
    assert!(printed.is_empty(), "{printed:?}");
    let (stderr, _) = bridge.finish().await;
    let requests = methods(&seen);
    let pings = requests.iter().filter(|(m, _)| m == "ping").count();
    assert!(pings >= 2, "{requests:?}\n{stderr}");
    // No ping before the client finished its handshake.
    let first_ping = requests.iter().position(|(m, _)| m == "ping").unwrap();
    let initialized = requests
        .iter()
        .position(|(m, _)| m == "notifications/initialized")
        .unwrap();
    assert!(first_ping > initialized, "{requests:?}");
    // Every request after the initialize answer carries the cookie.
    assert_eq!(requests[0].1, None);
    for (method, cookie) in &requests[1..] {
        assert_eq!(cookie.as_deref(), Some("AWSALB=node-7"), "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_cookies_keeps_none_and_a_cookie_header_given_wins() {
    let (url, _, seen) = server().await;
    let (mut bridge, _dir) = start_bridge(&[&url, "--disable-cookies"], &[]);
    start_session(&mut bridge).await;
    bridge
        .ask(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    bridge.finish().await;
    assert!(methods(&seen).iter().all(|(_, cookie)| cookie.is_none()));

    let (url, _, seen) = server().await;
    let (mut bridge, _dir) = start_bridge(&[&url, "--header", "Cookie: mine=1"], &[]);
    start_session(&mut bridge).await;
    bridge
        .ask(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    bridge.finish().await;
    assert!(methods(&seen)
        .iter()
        .all(|(_, cookie)| cookie.as_deref() == Some("mine=1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_off_loopback_needs_allow_http() {
    let (_, address, seen) = server().await;
    let (proxy_url, through_proxy) = proxy(address).await;
    // `mcp.internal` resolves only through the proxy, as a name inside a VPC would.
    let url = format!("http://mcp.internal:{}/mcp", address.port());
    let env = [("HTTP_PROXY", proxy_url.as_str())];

    let (stderr, _) = start_bridge(&[&url], &env).0.finish().await;
    assert!(stderr.contains("must use https"), "{stderr}");
    assert!(methods(&seen).is_empty());

    let (mut allowed, _dir) = start_bridge(&[&url, "--allow-http"], &env);
    start_session(&mut allowed).await;
    let (listed, _) = allowed
        .ask(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    let (stderr, _) = allowed.finish().await;
    assert!(stderr.contains("plain http"), "the warning: {stderr}");
    assert!(through_proxy
        .all()
        .iter()
        .any(|(line, _)| line.contains("http://mcp.internal:")));
}

#[tokio::test]
async fn the_bridge_reads_https_proxy_and_never_prints_its_password() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    // Nothing answers behind the proxy: the connection just closes.
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let (proxy_url, seen) = proxy(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-oauth"))
        .args([
            "call",
            "https://mcp.test/mcp",
            "add",
            "--no-browser",
            "--store",
            "file",
        ])
        .arg("--store-file")
        .arg(dir.path().join("credentials.json"))
        .env(
            "HTTPS_PROXY",
            proxy_url.replace("http://", "http://bob:hunter2@"),
        )
        .env("NO_PROXY", "")
        .env_remove("BROWSER")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("no hang")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("hunter2"),
        "nothing but JSON-RPC on stdout"
    );
    let seen = seen.all();
    assert_eq!(seen[0].0, "CONNECT mcp.test:443 HTTP/1.1");
    // bob:hunter2
    assert_eq!(seen[0].1.as_deref(), Some("Basic Ym9iOmh1bnRlcjI="));
}
