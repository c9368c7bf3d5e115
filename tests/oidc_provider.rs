//! The parts together, in their default settings, with an identity provider nobody here wrote:
//! oidc-provider from the npm registry (`tests/oidc_provider/`), in its default configuration
//! (DPoP offered, no dynamic registration, RS256 keys) with one pre-registered native client.
//! The `oauth-client` example and `mcp-oauth call` sign in through it (a scripted browser follows
//! the redirects) and call a tool of the `protected_server` example, run as a user runs them.
//!
//! `.ci/run` installs oidc-provider and sets `REQUIRE_OIDC_PROVIDER_TESTS=1`; without it (or
//! without the examples and the bridge built, as `cargo test --workspace --all-features` builds
//! them) these tests say what they skipped and pass.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc_provider");
const CLIENT_ID: &str = "mcp-client";
/// Each program gets this long to print what the test waits for, or to finish.
const STEP: Duration = Duration::from_secs(60);

/// Where cargo put this build's programs (`target/debug`): this test binary lives in its
/// `deps`. The examples are this package's; `mcp-oauth` is the bridge package's, built by
/// the same `cargo test --workspace` (a test of this package alone runs whatever bridge was
/// built last).
fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary lives in a directory");
    deps.parent().expect("deps has a parent").join(name)
}

fn example(name: &str) -> PathBuf {
    built("examples").join(name)
}

fn bridge() -> PathBuf {
    built(if cfg!(windows) {
        "mcp-oauth.exe"
    } else {
        "mcp-oauth"
    })
}

/// Whether everything these tests run is here (with `mcp-oauth` when `needs_bridge`); when not,
/// says what is missing (and fails when CI requires them).
fn ready(needs_bridge: bool) -> bool {
    let mut missing = Vec::new();
    if !Path::new(DIR)
        .join("node_modules/oidc-provider/package.json")
        .exists()
    {
        missing.push("oidc-provider (npm ci in tests/oidc_provider)".to_owned());
    }
    for name in ["protected_server", "oauth-client"] {
        if !example(name).exists() {
            missing.push(format!(
                "the {name} example (built by cargo test --all-features)"
            ));
        }
    }
    if needs_bridge && !bridge().exists() {
        missing.push("the mcp-oauth binary (built by cargo test --workspace)".to_owned());
    }
    if missing.is_empty() {
        return true;
    }
    support::skipped_for_want_of(&missing.join(", "), "REQUIRE_OIDC_PROVIDER_TESTS");
    false
}

/// A child process whose standard output the test reads line by line.
struct Running {
    _child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    /// Held open: oidc-provider exits when it closes.
    _stdin: Option<ChildStdin>,
}

impl Running {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the program starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            _stdin: child.stdin.take(),
            _child: child,
            lines,
        }
    }

    /// The rest of the first line that starts with `prefix`.
    async fn value_after(&mut self, prefix: &str) -> String {
        let wait = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return rest.trim().to_owned();
                }
            }
            panic!("the program ended before printing {prefix:?}");
        };
        tokio::time::timeout(STEP, wait)
            .await
            .unwrap_or_else(|_| panic!("no {prefix:?} line within {STEP:?}"))
    }
}

async fn identity_provider() -> (Running, String) {
    identity_provider_with(&[]).await
}

/// oidc-provider with `env` (its optional clients).
async fn identity_provider_with(env: &[(&str, &str)]) -> (Running, String) {
    let mut command = Command::new("node");
    command.arg("provider.mjs").current_dir(DIR);
    command.envs(env.iter().copied());
    // Its notices are not what a failing test needs to show.
    command.stderr(Stdio::null());
    let mut provider = Running::start(command);
    let issuer = provider.value_after("ISSUER ").await;
    (provider, issuer)
}

/// `protected_server --issuer <oidc-provider>` with `flags`; its MCP URL.
async fn protected_server(issuer: &str, flags: &[&str]) -> (Running, String) {
    let mut command = Command::new(example("protected_server"));
    command
        .args(["--issuer", issuer, "--port", "0"])
        .args(flags);
    let mut server = Running::start(command);
    let url = server.value_after("MCP server:").await;
    (server, url)
}

/// A `BROWSER` for the clients: the scripted user of `browser.mjs`, started in the background
/// as a browser is, writing what it ended on to `browser.log`.
fn browser(dir: &Path) -> PathBuf {
    let log = dir.join("browser.log");
    support::browser_script(
        dir,
        &format!(
            "node '{DIR}/browser.mjs' \"$1\" >> '{}' 2>&1",
            log.display()
        ),
    )
}

/// Runs a client to the end; its standard output, or a panic with everything it printed.
async fn run_client(mut command: Command, dir: &Path) -> String {
    command
        .env("BROWSER", browser(dir))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(STEP, command.output())
        .await
        .expect("the client finishes")
        .expect("the client starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let browser = std::fs::read_to_string(dir.join("browser.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "the client failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- browser\n{browser}",
        output.status
    );
    stdout
}

/// What `whoami` answered: the `AuthInfo` the resource server handed the tool.
fn whoami(stdout: &str) -> Value {
    // `oauth-client` prints the tools, then `whoami -> <content>`.
    let (_, printed) = stdout
        .split_once("whoami -> ")
        .expect("the tool's content is printed");
    // Log lines may follow (the example logs to standard output).
    let content: Value = serde_json::Deserializer::from_str(printed)
        .into_iter()
        .next()
        .expect("content follows")
        .expect("content is JSON");
    let text = content[0]["text"].as_str().expect("a text answer");
    serde_json::from_str(text).expect("whoami answers JSON")
}

/// The tokens a plain credentials file holds for the one server it knows.
fn stored_tokens(path: &Path) -> Value {
    let file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    file["records"][0][1]["tokens"].clone()
}

/// The `oauth-client` example against `protected_server` with `flags`: signs in at
/// oidc-provider, calls `whoami`; what the tool saw, and the tokens kept.
async fn oauth_client_against(flags: &[&str]) -> Option<(Value, Value)> {
    if !ready(false) {
        return None;
    }
    let (_provider, issuer) = identity_provider().await;
    let (_server, mcp_url) = protected_server(&issuer, flags).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("credentials.json");
    let mut client = Command::new(example("oauth-client"));
    client
        .arg(&mcp_url)
        .args(["--client-id", CLIENT_ID, "--tool", "whoami", "--store"])
        .arg(&store);
    let stdout = run_client(client, dir.path()).await;
    let seen = whoami(&stdout);
    assert_eq!(seen["subject"], "alice");
    assert_eq!(seen["issuer"], issuer.as_str());
    assert_eq!(seen["audience"], serde_json::json!([mcp_url]));
    Some((seen, stored_tokens(&store)))
}

#[tokio::test]
async fn by_default_the_token_is_dpop_bound_and_refreshable() {
    let Some((seen, tokens)) = oauth_client_against(&[]).await else {
        return;
    };
    // Both servers take DPoP, so the client binds: the resource checked the thumbprint.
    assert!(seen["dpop_jkt"].is_string(), "{seen}");
    assert_eq!(tokens["token_type"], "DPoP");
    // offline_access asked of an OpenID provider with prompt=consent: it issued a refresh
    // token instead of dropping the scope (or denying a request left with no scope).
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
}

#[tokio::test]
async fn a_resource_that_requires_dpop_gets_bound_tokens() {
    let Some((seen, tokens)) = oauth_client_against(&["--dpop", "required"]).await else {
        return;
    };
    assert!(seen["dpop_jkt"].is_string(), "{seen}");
    assert_eq!(tokens["token_type"], "DPoP");
}

#[tokio::test]
async fn a_resource_without_dpop_gets_bearer_tokens_though_the_provider_offers_dpop() {
    let Some((seen, tokens)) = oauth_client_against(&["--dpop", "off"]).await else {
        return;
    };
    assert!(seen["dpop_jkt"].is_null(), "{seen}");
    assert_eq!(tokens["token_type"], "Bearer");
}

#[tokio::test]
async fn mcp_oauth_call_signs_in_and_calls_a_tool() {
    if !ready(true) {
        return;
    }
    let (_provider, issuer) = identity_provider().await;
    let (_server, mcp_url) = protected_server(&issuer, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("credentials.json");
    let mut bridge = Command::new(bridge());
    bridge
        .args(["call", &mcp_url, "whoami", "--client-id", CLIENT_ID])
        .args(["--store", "file", "--store-file"])
        .arg(&store);
    let stdout = run_client(bridge, dir.path()).await;
    assert!(stdout.contains("alice"), "{stdout}");
    assert!(stdout.contains("dpop_jkt"), "{stdout}");
    let tokens = stored_tokens(&store);
    assert_eq!(tokens["token_type"], "DPoP");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
}

/// `mcp_oauth_server --upstream-issuer <oidc-provider>`, as its README recipe runs it: the
/// browser approves our consent page, signs in at oidc-provider, and the MCP client (registered
/// dynamically) gets our token for oidc-provider's user. A second client needs our consent
/// again, while oidc-provider remembers its own and shows no sign-in page.
#[cfg(all(feature = "authorization-server", feature = "jwt"))]
#[tokio::test]
async fn mcp_oauth_server_signs_users_in_at_oidc_provider() {
    use support::upstream_idp::Browser;
    if !ready(false) {
        return;
    }
    const SECRET: &str = "the-servers-secret-at-oidc-provider";
    let port = support::free_port();
    let redirect = format!("http://127.0.0.1:{port}/authorize/callback");
    let (_provider, issuer) = identity_provider_with(&[
        ("UPSTREAM_REDIRECT_URI", &redirect),
        ("UPSTREAM_CLIENT_SECRET", SECRET),
    ])
    .await;
    let mut command = Command::new(example("mcp_oauth_server"));
    command
        .args(["--port", &port.to_string(), "--upstream-issuer", &issuer])
        .args(["--upstream-client-id", "mcp-oauth-server"])
        .env("MCP_OAUTH_UPSTREAM_CLIENT_SECRET", SECRET)
        .env("RUST_LOG", "warn");
    let mut server = Running::start(command);
    let mcp_url = server.value_after("MCP server (Streamable HTTP):").await;
    server
        .value_after("register this redirect URI at the identity provider:")
        .await;
    let printed = server.lines.next_line().await.unwrap().unwrap();
    assert_eq!(printed, redirect, "the redirect URI, on a line of its own");
    let base = format!("http://127.0.0.1:{port}");

    let interactions = || async {
        support::get(&format!("{issuer}/test/interactions"))
            .await
            .text()
    };
    let mut browser = Browser::default();
    let first = support::upstream_idp::register_public_client(&base).await;
    let tokens =
        support::upstream_idp::authorize_through_upstream(&base, &base, &first, &mut browser).await;
    assert!(
        tokens.get("id_token").is_none(),
        "nothing of the provider's: {tokens}"
    );
    let access = tokens["access_token"].as_str().unwrap();
    let claims = support::upstream_idp::jwt_payload(access);
    assert_eq!(
        claims["iss"],
        base.as_str(),
        "our token, not the provider's"
    );
    assert_eq!(claims["sub"], format!("{issuer}#alice"));
    assert_eq!(interactions().await, "1");

    // The resource server takes it.
    let initialize = support::send(
        http::Request::post(&mcp_url)
            .header("authorization", format!("Bearer {access}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(http_body_util::Full::from(
                r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(
        initialize.status,
        http::StatusCode::OK,
        "{}",
        initialize.text()
    );

    // A second client after our session ended: our consent page again, then oidc-provider,
    // which remembers its consent for our one client and shows no page.
    browser.forget_cookies("mcp_session");
    let second = support::upstream_idp::register_public_client(&base).await;
    let tokens =
        support::upstream_idp::authorize_through_upstream(&base, &base, &second, &mut browser)
            .await;
    let claims = support::upstream_idp::jwt_payload(tokens["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], format!("{issuer}#alice"));
    assert_eq!(
        interactions().await,
        "1",
        "the provider remembered its consent"
    );
}
