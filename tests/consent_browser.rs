//! The consent page in a real browser: Debian's headless Chromium, driven through ChromeDriver's
//! WebDriver HTTP API, approves one authorization request and denies another.
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the test says
//! so and passes, unless `REQUIRE_BROWSER_TESTS=1` (set by `.ci/run`) makes their absence a
//! failure.
#![cfg(feature = "authorization-server")]

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use support::auth_server::{code_grant, pkce, Server};
use support::{bind, hyper_client, param, send_with, serve_on, HyperClient};
use tower_mcp_oauth::authorization_server::ConsentPage;
#[cfg(all(feature = "rmcp", feature = "rmcp-server", feature = "jwt"))]
use url::Url;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver call: its status and its JSON answer.
async fn request(
    client: &HyperClient,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut builder = Request::builder().method(method).uri(url);
    let body = match body {
        Some(body) => {
            builder = builder.header("content-type", "application/json");
            Full::from(body.to_string())
        }
        None => Full::default(),
    };
    let answer = send_with(client, builder.body(body).unwrap()).await;
    (answer.status, answer.json())
}

/// A ChromeDriver process on loopback with one headless Chromium session.
struct Browser {
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
    session: String,
    http: HyperClient,
}

impl Browser {
    /// ChromeDriver on a free loopback port, in a process group of its own so that dropping the
    /// browser (even after a failed assertion) takes Chromium down with it.
    async fn start_driver(http: &HyperClient) -> (tokio::process::Child, String) {
        for _ in 0..3 {
            let port = {
                let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                probe.local_addr().unwrap().port()
            };
            let mut driver = tokio::process::Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .expect("chromedriver starts");
            let base = format!("http://127.0.0.1:{port}");
            for _ in 0..100 {
                if driver.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile: try another
                }
                let probe = http
                    .request(
                        Request::get(format!("{base}/status"))
                            .body(Full::default())
                            .unwrap(),
                    )
                    .await;
                if probe.is_ok_and(|r| r.status().is_success()) {
                    return (driver, base);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            kill_group(&driver);
        }
        panic!("chromedriver did not come up");
    }

    async fn start() -> Self {
        let http = hyper_client();
        let (driver, base) = Self::start_driver(&http).await;
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }}}});
        let (status, answer) = request(
            &http,
            "POST",
            &format!("{base}/session"),
            Some(capabilities),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "new session: {answer}");
        let session = answer["value"]["sessionId"].as_str().unwrap().to_owned();
        Self {
            driver,
            _profile: profile,
            session: format!("{base}/session/{session}"),
            http,
        }
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) =
            request(&self.http, method, &format!("{}{path}", self.session), body).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.command("GET", &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .command(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT_KEY].as_str().unwrap().to_owned()
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn close(self) {
        self.command("DELETE", "", None).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&self.driver);
    }
}

/// Kills ChromeDriver's process group: the driver and the Chromium it started.
fn kill_group(driver: &tokio::process::Child) {
    if let Some(pid) = driver.id() {
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
    }
}

/// The client's redirect endpoint: records the query of each callback.
async fn callback_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let (listener, base) = bind().await;
    let url = format!("{base}/callback");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(
            move |axum::extract::RawQuery(query): axum::extract::RawQuery| {
                record.lock().unwrap().push(query.unwrap_or_default());
                async { "You may close this window." }
            },
        ),
    );
    serve_on(listener, app);
    (url, seen)
}

/// The query of the `count`th callback, once the browser has reached it (10 s at most).
async fn nth_callback(callbacks: &Mutex<Vec<String>>, count: usize) -> String {
    for _ in 0..100 {
        if let Some(query) = callbacks.lock().unwrap().get(count - 1).cloned() {
            return query;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the browser never reached the redirect URI");
}

fn browser_available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var("REQUIRE_BROWSER_TESTS").as_deref() != Ok("1"),
            "REQUIRE_BROWSER_TESTS=1 but {CHROMIUM} or {CHROMEDRIVER} is missing \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipping the browser test: install chromium and chromium-driver to run it");
    }
    present
}

#[tokio::test]
async fn a_user_approves_and_denies_on_the_consent_page_in_chromium() {
    if !browser_available() {
        return;
    }
    let s = Server::start(|c| {
        c.scopes(["mcp:tools"])
            .approval_policy(ConsentPage::new("carol"))
    })
    .await;
    let (redirect_uri, callbacks) = callback_server().await;
    let client_id = s
        .server
        .register_client(tower_mcp_oauth::metadata::ClientMetadata {
            client_name: Some("Browser <Test> Client".into()),
            redirect_uris: vec![redirect_uri.clone()],
            grant_types: vec!["authorization_code".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let (verifier, challenge) = pkce();
    let authorize_url = |state: &str| {
        s.authorize_url_to(
            &client_id,
            &redirect_uri,
            state,
            &challenge,
            &[("scope", "mcp:tools")],
        )
    };
    let wait_for_callback = |count: usize| nth_callback(&callbacks, count);

    let browser = Browser::start().await;

    // Approve.
    browser.open(&authorize_url("approve-state")).await;
    assert_eq!(
        browser.text("#client-name").await,
        "Browser <Test> Client",
        "escaped, shown as text"
    );
    assert_eq!(browser.text("#scopes").await, "mcp:tools");
    assert_eq!(browser.text("#redirect-host").await, "127.0.0.1");
    browser.click("#approve").await;
    let query = wait_for_callback(1).await;
    assert_eq!(param(&query, "state").as_deref(), Some("approve-state"));
    assert_eq!(param(&query, "iss").as_deref(), Some(s.base.as_str()));
    let code = param(&query, "code").expect("a code after approval");
    let token = s
        .post_form(
            "/token",
            &code_grant(
                &code,
                &verifier,
                &[("redirect_uri", &redirect_uri), ("client_id", &client_id)],
            ),
            None,
        )
        .await;
    assert_eq!(
        token.status,
        StatusCode::OK,
        "the code from the browser redeems"
    );

    // Deny.
    browser.open(&authorize_url("deny-state")).await;
    browser.click("#deny").await;
    let query = wait_for_callback(2).await;
    assert_eq!(param(&query, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&query, "state").as_deref(), Some("deny-state"));
    assert!(param(&query, "code").is_none());

    browser.close().await;
}

/// A user at the browser: the crate's `LoopbackHandler` waits for the redirect while Chromium
/// opens the authorization URL and clicks `decision` on the consent page.
#[cfg(all(feature = "rmcp", feature = "rmcp-server", feature = "jwt"))]
struct ChromiumUser {
    loopback: tower_mcp_oauth::client::LoopbackHandler,
    browser: Arc<Browser>,
    decision: &'static str,
}

#[cfg(all(feature = "rmcp", feature = "rmcp-server", feature = "jwt"))]
impl tower_mcp_oauth::client::AuthorizationHandler for ChromiumUser {
    fn redirect_uri(&self) -> Url {
        self.loopback.redirect_uri()
    }

    fn authorize<'a>(
        &'a self,
        authorization_url: &'a Url,
    ) -> tower_mcp_oauth::client::BoxFuture<'a, tower_mcp_oauth::Result<Url>> {
        Box::pin(async move {
            let (browser, url, decision) = (
                self.browser.clone(),
                authorization_url.to_string(),
                self.decision,
            );
            let user = tokio::spawn(async move {
                browser.open(&url).await;
                browser.click(&format!("#{decision}")).await;
            });
            let redirect = self.loopback.authorize(authorization_url).await;
            user.await.expect("the browser session");
            redirect
        })
    }
}

#[cfg(all(feature = "rmcp", feature = "rmcp-server", feature = "jwt"))]
#[tokio::test]
async fn the_crate_client_signs_in_through_the_consent_page_in_chromium() {
    use rmcp::ServiceExt;
    use support::mcp::{call, text};
    use support::oauth_server_app;
    use tower_mcp_oauth::client::{LoopbackHandler, OAuthConfig, OAuthLayer, OAuthState};
    use tower_mcp_oauth::transport::{StreamableHttpConfig, StreamableHttpTransport};

    if !browser_available() {
        return;
    }
    // The example server as a user runs it: consent page, no auto-approve.
    let running = oauth_server_app::start(oauth_server_app::Options {
        port: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let browser = Arc::new(Browser::start().await);
    let user = |decision| {
        let browser = browser.clone();
        async move {
            ChromiumUser {
                loopback: LoopbackHandler::bind().await.unwrap().open_browser(false),
                browser,
                decision,
            }
        }
    };

    // Approve: the client's first request gets its 401, the user approves, the call goes on.
    let state = OAuthState::new(
        &running.mcp_url,
        Some(OAuthConfig::new().handler(user("approve").await)),
    )
    .await
    .unwrap();
    let stack = tower::ServiceBuilder::new()
        .layer(OAuthLayer::new(state.clone()))
        .service(tower_mcp_oauth::http::hyper_client());
    let transport =
        StreamableHttpTransport::new(stack, StreamableHttpConfig::new(&running.mcp_url));
    let client = rmcp::model::ClientConfig::default()
        .serve(transport)
        .await
        .unwrap();
    let whoami = client.call_tool(call("whoami", json!({}))).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&text(&whoami.content)).unwrap()["subject"],
        "demo-user"
    );
    client.cancel().await.unwrap();

    // Deny: the flow ends with a typed error, and no token.
    let state = OAuthState::new(
        &running.mcp_url,
        Some(OAuthConfig::new().handler(user("deny").await)),
    )
    .await
    .unwrap();
    let error = state.authorize().await.unwrap_err();
    assert_eq!(
        error.kind(),
        tower_mcp_oauth::ErrorKind::AuthorizationDenied
    );
    assert!(state.credentials().is_none());
}

/// Upstream sign-in in Chromium, across sites as in the field: the authorization server at
/// `localhost`, the identity provider at `127.0.0.1`. Our consent page, then the provider, and
/// back with the `SameSite=Lax` state cookie; then the session cookie makes the next
/// authorization of the same client go straight through, and another client's page name the
/// signed-in user.
#[cfg(feature = "jwt")]
#[tokio::test]
async fn a_user_signs_in_upstream_through_our_consent_page_in_chromium() {
    use support::upstream_idp::{Idp, CLIENT_ID, CLIENT_SECRET};
    use tower_mcp_oauth::authorization_server::{
        AuthorizationServer, AuthorizationServerConfig, UpstreamSignIn,
    };
    if !browser_available() {
        return;
    }
    let idp = Idp::start().await;
    let (listener, loopback) = bind().await;
    let base = loopback.replace("127.0.0.1", "localhost");
    let resource = format!("{base}/mcp");
    let server = AuthorizationServer::new(
        AuthorizationServerConfig::new(&base)
            .unwrap()
            .resource(&resource)
            .scopes(["mcp:tools"])
            .upstream_sign_in(
                UpstreamSignIn::openid(idp.issuer(), CLIENT_ID).client_secret(CLIENT_SECRET),
            ),
    )
    .unwrap();
    serve_on(listener, server.router());
    let s = Server {
        base: loopback.clone(),
        resource: resource.clone(),
        server,
    };
    let (redirect_uri, callbacks) = callback_server().await;
    let register = |name: &str| {
        let metadata = tower_mcp_oauth::metadata::ClientMetadata {
            client_name: Some(name.into()),
            redirect_uris: vec![redirect_uri.clone()],
            grant_types: vec!["authorization_code".into()],
            ..Default::default()
        };
        let server = s.server.clone();
        async move { server.register_client(metadata).await.unwrap() }
    };
    let first = register("First App").await;
    let (verifier, challenge) = pkce();
    let authorize_url = |client: &str, state: &str| {
        s.authorize_url_to(
            client,
            &redirect_uri,
            state,
            &challenge,
            &[("scope", "mcp:tools")],
        )
        .replace(&loopback, &base)
    };
    let wait_for_callback = |count: usize| nth_callback(&callbacks, count);

    let browser = Browser::start().await;
    browser.open(&authorize_url(&first, "one")).await;
    assert_eq!(browser.text("#provider").await, "127.0.0.1");
    assert_eq!(browser.text("#redirect-uri").await, redirect_uri);
    assert!(
        idp.authorize_requests().is_empty(),
        "nothing upstream before approval"
    );
    browser.click("#approve").await;
    let query = wait_for_callback(1).await;
    assert_eq!(param(&query, "state").as_deref(), Some("one"));
    assert_eq!(param(&query, "iss").as_deref(), Some(base.as_str()));
    let code = param(&query, "code").unwrap_or_else(|| panic!("a code: {query}"));
    let token = s
        .post_form(
            "/token",
            &code_grant(
                &code,
                &verifier,
                &[
                    ("redirect_uri", &redirect_uri),
                    ("client_id", &first),
                    ("resource", &resource),
                ],
            ),
            None,
        )
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text());
    let access = token.json()["access_token"].as_str().unwrap().to_owned();
    let claims = support::upstream_idp::jwt_payload(&access);
    assert_eq!(claims["sub"], format!("{}#alice", idp.issuer()));

    // The browser's session and the remembered consent: straight through, nothing upstream.
    browser.open(&authorize_url(&first, "two")).await;
    let query = wait_for_callback(2).await;
    assert_eq!(param(&query, "state").as_deref(), Some("two"));
    assert!(param(&query, "code").is_some(), "{query}");
    assert_eq!(idp.authorize_requests().len(), 1);

    // Another client: our page again, naming who is signed in.
    let second = register("Second App").await;
    browser.open(&authorize_url(&second, "three")).await;
    assert_eq!(browser.text("#user").await, "Alice Example");
    browser.click("#approve").await;
    let query = wait_for_callback(3).await;
    assert!(param(&query, "code").is_some(), "{query}");
    assert_eq!(idp.authorize_requests().len(), 1, "signed in upstream once");
    browser.close().await;
}
