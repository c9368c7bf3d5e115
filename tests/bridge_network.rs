//! How `mcp-oauth` reaches a server, with mcp-remote's flags: cookies kept for load balancers,
//! keep-alive pings, plain http on private networks. The server is a small MCP server on
//! 127.0.0.1 with no authorization, which notes what each request carried.
#![cfg(feature = "cli")]

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use support::forward_proxy::proxy;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-oauth");

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

struct Bridge {
    child: Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    _dir: tempfile::TempDir,
}

impl Bridge {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args(args)
            .env("MCP_OAUTH_DIR", dir.path())
            .env("BROWSER", "false")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env("XDG_RUNTIME_DIR", dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
            _dir: dir,
        }
    }

    async fn tell(&mut self, message: Value) {
        let line = format!("{message}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
    }

    /// The answer to request `message`; every line printed on the way is returned too.
    async fn ask(&mut self, message: Value) -> (Value, Vec<Value>) {
        let id = message["id"].clone();
        self.tell(message).await;
        let mut printed = Vec::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
                .await
                .expect("an answer, not a hang")
                .unwrap()
                .expect("the bridge is running");
            let message: Value = serde_json::from_str(&line).unwrap();
            if message["id"] == id {
                return (message, printed);
            }
            printed.push(message);
        }
    }

    async fn start_session(&mut self) {
        let (answer, _) = self
            .ask(
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}),
            )
            .await;
        assert_eq!(answer["result"]["serverInfo"]["name"], "lb", "{answer}");
        self.tell(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
    }

    /// Closes standard input and returns standard error.
    async fn finish(mut self) -> String {
        drop(self.stdin);
        let mut stderr = String::new();
        tokio::io::AsyncReadExt::read_to_string(
            &mut self.child.stderr.take().unwrap(),
            &mut stderr,
        )
        .await
        .unwrap();
        let _ = self.child.wait().await;
        stderr
    }
}

fn methods(seen: &Seen) -> Vec<(String, Option<String>)> {
    seen.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_balancers_cookie_goes_back_and_pings_keep_the_session_alive() {
    let (url, _, seen) = server().await;
    let mut bridge = Bridge::start(&[&url, "--keep-alive", "--ping-interval", "1"], &[]);
    bridge.start_session().await;
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let (listed, printed) = bridge
        .ask(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    // The pings' answers stay in the bridge.
    assert!(printed.is_empty(), "{printed:?}");
    let stderr = bridge.finish().await;
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
    let mut bridge = Bridge::start(&[&url, "--disable-cookies"], &[]);
    bridge.start_session().await;
    bridge
        .ask(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    bridge.finish().await;
    assert!(methods(&seen).iter().all(|(_, cookie)| cookie.is_none()));

    let (url, _, seen) = server().await;
    let mut bridge = Bridge::start(&[&url, "--header", "Cookie: mine=1"], &[]);
    bridge.start_session().await;
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

    let stderr = Bridge::start(&[&url], &env).finish().await;
    assert!(stderr.contains("must use https"), "{stderr}");
    assert!(methods(&seen).is_empty());

    let mut allowed = Bridge::start(&[&url, "--allow-http"], &env);
    if tokio::time::timeout(Duration::from_secs(5), allowed.start_session())
        .await
        .is_err()
    {
        let _ = allowed.child.start_kill();
        panic!("{}", allowed.finish().await);
    }
    let (listed, _) = allowed
        .ask(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    let stderr = allowed.finish().await;
    assert!(stderr.contains("plain http"), "the warning: {stderr}");
    assert!(through_proxy
        .all()
        .iter()
        .any(|(line, _)| line.contains("http://mcp.internal:")));
}
