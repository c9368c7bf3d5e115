//! The helpers every test binary may use, whatever its features: loopback servers, a hyper
//! client, the stand-in browsers. The bridge's tests (`mcp-oauth/tests`) load this file too.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use url::Url;

/// A listener on 127.0.0.1 with a free port, and its `http://` base URL.
pub async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

/// A loopback port that refuses connections, held (bound, not listening) so that nothing
/// else takes it while the test counts on it being closed; `listen` opens it later.
pub fn refusing_port() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let base = format!("http://{}", socket.local_addr().unwrap());
    (socket, base)
}

/// Serves `app` on `listener` in the background, for a test whose app needs its own URL.
pub fn serve_on(listener: tokio::net::TcpListener, app: axum::Router) {
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

/// Serves `app` on 127.0.0.1 with a free port; its base URL.
pub async fn serve(app: axum::Router) -> String {
    let (listener, base) = bind().await;
    serve_on(listener, app);
    base
}

/// A plain hyper client, beneath the layers and transports under test.
pub type HyperClient = Client<HttpConnector, Full<Bytes>>;

pub fn hyper_client() -> HyperClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An answer read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON, `Null` when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The OAuth `error` code, empty when there is none.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    pub fn location(&self) -> Option<Url> {
        self.headers
            .get("location")
            .map(|l| Url::parse(l.to_str().unwrap()).unwrap())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` on `client` and reads the whole answer.
pub async fn send_with(client: &HyperClient, request: Request<Full<Bytes>>) -> Answer {
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Sends `request` on a fresh client (a fresh connection) and reads the whole answer.
pub async fn send(request: Request<Full<Bytes>>) -> Answer {
    send_with(&hyper_client(), request).await
}

pub async fn get(url: &str) -> Answer {
    send(Request::get(url).body(Full::default()).unwrap()).await
}

/// A POST of `value` as JSON.
pub fn json_request(url: &str, value: &Value) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .body(Full::from(value.to_string()))
        .unwrap()
}

/// The first value of `name` in a URL-encoded query.
pub fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// The first value of `name` in `url`'s query.
pub fn query(url: &Url, name: &str) -> Option<String> {
    param(url.query().unwrap_or_default(), name)
}

/// Seconds since the Unix epoch, as tokens count them (the JWT issuer's clock).
pub fn now_secs() -> u64 {
    super::jwt_issuer::now()
}

/// The process's resident memory in KiB (Linux only).
pub fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Tasks alive on the current runtime: what a leak leaves behind.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Writes `dir/browser.sh`, a `BROWSER` that runs `command` with the URL as `$1` in the
/// background (detached, as a browser is); its path.
pub fn browser_script(dir: &std::path::Path, command: &str) -> std::path::PathBuf {
    let script = dir.join("browser.sh");
    std::fs::write(&script, format!("#!/bin/sh\n{command} &\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    script
}

/// A `BROWSER` that follows the sign-in URL (the server approves and redirects to the
/// client's callback) and adds a line to `dir/sign-ins` per sign-in; see [`sign_ins`].
pub fn following_browser(dir: &std::path::Path) -> std::path::PathBuf {
    browser_script(
        dir,
        &format!(
            "echo signed-in >> '{}'\npython3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1]).read()' \"$1\" >/dev/null 2>&1",
            dir.join("sign-ins").display()
        ),
    )
}

/// How many sign-ins the [`following_browser`] of `dir` has followed.
pub fn sign_ins(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("sign-ins"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// A free loopback port (free now; nothing keeps it so).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Says that a test is skipped for want of `missing` (programs or packages from outside), or
/// fails it when CI sets `variable` to 1, so there nothing is skipped unseen.
pub fn skipped_for_want_of(missing: &str, variable: &str) {
    if std::env::var_os(variable).is_some_and(|v| v == "1") {
        panic!("{variable}=1 but missing: {missing}");
    }
    eprintln!("skipped: missing {missing}");
}
