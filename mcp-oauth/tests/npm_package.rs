//! The npm packages of `mcp-oauth` (`npm/build.sh` packs them into `target/npm/`), installed
//! offline from their tarballs and run as a desktop configuration runs them, `npx -y
//! @tower-mcp-oauth/mcp-oauth URL`, on a `PATH` without cargo: it signs in, calls a tool, and a
//! SIGTERM to npx ends the bridge in order. Needs `MCP_OAUTH_NPM_PACKAGES` (the tarballs'
//! directory) and Node.js; without them it says it skipped, unless `REQUIRE_NPM_PACKAGE_TESTS=1`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use support::stdio::StdioPeer;
use tokio::process::Command;

fn required() -> bool {
    std::env::var("REQUIRE_NPM_PACKAGE_TESTS").as_deref() == Ok("1")
}

/// The directory holding `npm` and `node`, if any.
fn node_dir() -> Option<PathBuf> {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v npx"])
        .output()
        .ok()?;
    let path = String::from_utf8(found.stdout).ok()?;
    Path::new(path.trim()).parent().map(Path::to_path_buf)
}

fn tarballs() -> Option<(PathBuf, PathBuf)> {
    let dir = PathBuf::from(std::env::var_os("MCP_OAUTH_NPM_PACKAGES")?);
    let mut launcher = None;
    let mut binary = None;
    for entry in std::fs::read_dir(&dir).ok()? {
        let path = entry.ok()?.path();
        let name = path.file_name()?.to_string_lossy().into_owned();
        if name.starts_with("tower-mcp-oauth-mcp-oauth-") {
            launcher = Some(path);
        } else if name.starts_with("tower-mcp-oauth-") {
            binary = Some(path);
        }
    }
    Some((launcher?, binary?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npx_runs_the_bridge_from_the_packages_without_cargo() {
    let (Some((launcher, binary)), Some(node)) = (tarballs(), node_dir()) else {
        assert!(
            !required(),
            "REQUIRE_NPM_PACKAGE_TESTS=1 but MCP_OAUTH_NPM_PACKAGES or npx is missing"
        );
        eprintln!("skipped: no npm packages (run npm/build.sh, set MCP_OAUTH_NPM_PACKAGES)");
        return;
    };
    assert!(
        !node.join("cargo").exists(),
        "node and cargo share {node:?}: the test could not tell"
    );
    let home = tempfile::tempdir().unwrap();
    let path = format!("{}:/usr/bin:/bin", node.display());
    let installed = std::process::Command::new("npm")
        .args([
            "install",
            "--offline",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .arg(&binary)
        .arg(&launcher)
        .current_dir(home.path())
        .env_clear()
        .env("PATH", &path)
        .env("HOME", home.path())
        .status()
        .unwrap();
    assert!(installed.success(), "npm install from the tarballs failed");

    let running = support::approving_server(Default::default()).await;
    support::following_browser(home.path());
    let mut command = Command::new("npx");
    command
        .args([
            "--offline",
            "-y",
            "@tower-mcp-oauth/mcp-oauth",
            &running.mcp_url,
        ])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", &path)
        .env("HOME", home.path())
        .env("MCP_OAUTH_DIR", home.path())
        .env("XDG_RUNTIME_DIR", home.path())
        .env("BROWSER", home.path().join("browser.sh"));
    let mut bridge = StdioPeer::spawn(command);
    let server = bridge.start_session().await;
    assert!(server["serverInfo"].is_object(), "{server}");
    let (answer, _) = bridge
        .ask(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 40, "b": 2}}}))
        .await;
    assert_eq!(answer["result"]["content"][0]["text"], "42", "{answer}");
    assert_eq!(support::sign_ins(home.path()), 1);

    // As a desktop app stops its server: a signal to the process it started.
    let pid = bridge.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let (stderr, status) =
        tokio::time::timeout(Duration::from_secs(10), bridge.stderr_when_ended())
            .await
            .expect("the bridge ends after SIGTERM");
    // npm passes the signal on and then ends by it; the bridge below stops in order.
    assert!(stderr.contains("SIGTERM: stopping"), "{status:?}\n{stderr}");
}
