//! The configurations of `mcp-remote` 0.15.1's README, with `mcp-oauth` in its place: each
//! argument list as a desktop app passes it, against the `mcp_oauth_server` example (which signs
//! the user in) and against the MCP TypeScript SDK's own server (npm registry; no sign-in). Each
//! starts, lists the tools and calls one; the flags that change what reaches the server are
//! checked there.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::stdio::{bridge_command, StdioPeer};

/// The arguments after `mcp-remote` in each configuration of its README (`npx -y` and
/// `@latest` are npx's own). `SSE` and `MCP` stand for the server's legacy and Streamable HTTP
/// URLs, `PORT` for a free port, `HEADERS` for a header file, `TENANT1`/`TENANT2` for resources.
const README: &[&[&str]] = &[
    &["SSE"],
    &["SSE", "--header", "Authorization: Bearer ${AUTH_TOKEN}"],
    &["SSE", "--header", "Authorization:${AUTH_HEADER}"],
    &["SSE", "--header-file", "HEADERS"],
    &["SSE", "--resource", "TENANT1"],
    &["SSE", "--resource", "TENANT2"],
    &[
        "MCP",
        "--authorize-param",
        "access_type=offline",
        "--authorize-param",
        "prompt=consent",
    ],
    &["MCP", "--disable-resource-parameter"],
    &["SSE", "PORT"],
    &["SSE", "--host", "127.0.0.1"],
    &["SSE", "--callback-path", "/custom/callback"],
    &[
        "SSE",
        "--auth-success-url",
        "https://app.example.com/cli-connected",
    ],
    &["SSE", "--allow-http"],
    &["SSE", "--debug"],
    &["SSE", "--silent"],
    &["SSE", "--enable-proxy"],
    &[
        "SSE",
        "--ignore-tool",
        "delete*",
        "--ignore-tool",
        "remove*",
    ],
    &["SSE", "--auth-timeout", "60"],
    &["SSE", "--connect-timeout", "30", "--body-timeout", "0"],
    &["SSE", "--keep-alive", "--ping-interval", "60"],
    &["SSE", "--ipv4"],
];

const AUTH_TOKEN: &str = "token-1";
const AUTH_HEADER: &str = "Bearer token 2";

/// The configurations that set a static `Authorization` header or name another tenant's
/// resource: they are for servers that take such a token or serve such tenants, which the
/// example server (one resource, its own tokens) is not.
fn for_static_tokens_or_tenants(config: &[&str]) -> bool {
    config
        .iter()
        .any(|arg| arg.starts_with("Authorization") || arg.starts_with("TENANT"))
}

/// What one configuration did: the tools listed, `add`'s answer, and the bridge's stderr.
struct Run {
    tools: Vec<String>,
    sum: String,
    peer: StdioPeer,
}

impl Run {
    async fn call(&mut self, id: u64, tool: &str, arguments: Value) -> Value {
        let (answer, _) = self
            .peer
            .ask(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}}))
            .await;
        answer
    }

    /// Ends the bridge as a desktop app does (standard input closed); its stderr, which shows
    /// no secret: neither the static tokens nor one the bridge got (JWTs start `eyJ`).
    async fn finish(self) -> String {
        let (stderr, status) = self.peer.finish().await;
        assert!(status.success(), "{status}: {stderr}");
        for secret in [AUTH_TOKEN, "token 2", "eyJ"] {
            assert!(!stderr.contains(secret), "{secret:?} printed: {stderr}");
        }
        stderr
    }
}

/// Starts `mcp-oauth` with `config` (placeholders filled in) as a desktop app would, with
/// `home` for its credentials and `browser` as `BROWSER`; initializes, lists, adds 2 and 3.
async fn start(config: &[&str], sse: &str, mcp: &str, home: &Path, browser: &Path) -> Run {
    let port = support::free_port().to_string();
    let headers = home.join("headers.txt");
    std::fs::write(&headers, "X-Tenant: acme\n").unwrap();
    let headers = headers.to_str().unwrap().to_owned();
    let args: Vec<&str> = config
        .iter()
        .map(|arg| match *arg {
            "SSE" => sse,
            "MCP" => mcp,
            "PORT" => &port,
            "HEADERS" => &headers,
            "TENANT1" => "https://tenant1.example/",
            "TENANT2" => "https://tenant2.example/",
            other => other,
        })
        .collect();
    let mut command = bridge_command(&args, home);
    command
        .env("BROWSER", browser)
        .env("AUTH_TOKEN", AUTH_TOKEN)
        .env("AUTH_HEADER", AUTH_HEADER);
    let mut peer = StdioPeer::spawn(command);
    let started = peer.start_session().await;
    assert!(started["serverInfo"].is_object(), "{config:?}: {started}");
    let (listed, _) = peer
        .ask(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    assert!(listed["result"]["tools"].is_array(), "{config:?}: {listed}");
    let tools = support::mcp::tool_names(&listed)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut run = Run {
        tools,
        sum: String::new(),
        peer,
    };
    let added = run.call(3, "add", json!({"a": 2, "b": 3})).await;
    run.sum = added["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{config:?}: {added}"))
        .to_owned();
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_readme_configuration_signs_in_to_the_example_server_and_calls_a_tool() {
    let running = support::approving_server(Default::default()).await;
    for config in README
        .iter()
        .filter(|config| !for_static_tokens_or_tenants(config))
    {
        // A home of its own: each configuration signs in through its own redirect.
        let home = tempfile::tempdir().unwrap();
        let browser = support::following_browser(home.path());
        let run = start(
            config,
            &running.sse_url,
            &running.mcp_url,
            home.path(),
            &browser,
        )
        .await;
        assert_eq!(run.sum, "5", "{config:?}");
        assert!(run.tools.iter().any(|t| t == "add"), "{config:?}");
        let stderr = run.finish().await;
        assert_eq!(support::sign_ins(home.path()), 1, "{config:?}: {stderr}");
        assert!(!stderr.contains("error:"), "{config:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_readme_configuration_reaches_the_typescript_sdks_server_and_calls_a_tool() {
    if !support::ts_sdk::ready() {
        return;
    }
    let (_server, base) = support::ts_sdk::server().await;
    let (sse, mcp) = (format!("{base}/sse"), format!("{base}/mcp"));
    for config in README {
        let home = tempfile::tempdir().unwrap();
        // Nothing here asks for a sign-in: a browser opened would be a failure.
        let mut run = start(config, &sse, &mcp, home.path(), Path::new("false")).await;
        assert_eq!(run.sum, "5", "{config:?}");
        let ignoring = config.contains(&"--ignore-tool");
        let mut expected = vec!["add", "headers"];
        if !ignoring {
            expected.insert(1, "delete_note");
        }
        let mut tools = run.tools.clone();
        tools.sort();
        assert_eq!(tools, expected, "{config:?}");
        if ignoring {
            let refused = run.call(4, "delete_note", json!({})).await;
            assert!(refused["error"].is_object(), "{config:?}: {refused}");
        }
        let answer = run.call(5, "headers", json!({})).await;
        let text = answer["result"]["content"][0]["text"].as_str().unwrap();
        let headers: Value = serde_json::from_str(text).unwrap();
        let authorization = match config.get(2).copied() {
            Some("Authorization: Bearer ${AUTH_TOKEN}") => json!(format!("Bearer {AUTH_TOKEN}")),
            Some("Authorization:${AUTH_HEADER}") => json!(AUTH_HEADER),
            _ => Value::Null,
        };
        assert_eq!(headers["authorization"], authorization, "{config:?}");
        let tenant = if config.contains(&"--header-file") {
            json!("acme")
        } else {
            Value::Null
        };
        assert_eq!(headers["x-tenant"], tenant, "{config:?}");
        let stderr = run.finish().await;
        assert!(!stderr.contains("error:"), "{config:?}: {stderr}");
    }
}
