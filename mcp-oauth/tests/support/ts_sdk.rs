//! The MCP TypeScript SDK from the npm registry (`mcp-oauth/tests/ts_sdk`, installed by
//! `npm ci` there): its server, and the directory of its scripts. Without it (or Node.js) the
//! tests that need it say what they skipped and pass, unless `REQUIRE_TS_SDK_TESTS=1`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ts_sdk");

/// Whether the SDK and Node.js are here; when not, says so (and fails when CI requires them).
pub fn ready() -> bool {
    let installed = Path::new(DIR)
        .join("node_modules/@modelcontextprotocol/sdk/package.json")
        .exists();
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if installed && node {
        return true;
    }
    let what = if node {
        "the TypeScript SDK (npm ci in mcp-oauth/tests/ts_sdk)"
    } else {
        "Node.js"
    };
    super::skipped_for_want_of(what, "REQUIRE_TS_SDK_TESTS");
    false
}

/// The SDK's server (`server.mjs`) on 127.0.0.1, running while the returned child lives; its
/// base URL (`/mcp` Streamable HTTP, `/sse` legacy HTTP+SSE).
pub async fn server() -> (Child, String) {
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(base) = line.strip_prefix("BASE ") {
                return base.to_owned();
            }
        }
        panic!("server.mjs ended before listening");
    })
    .await
    .expect("server.mjs listens within 30 s");
    (child, base)
}
