//! A tool that needs the user's account at a third party (URL-mode elicitation) through
//! `mcp-oauth`: `call` shows the page's address, opens it when the user says yes on standard
//! input, and retries; `proxy` passes the request through untouched to a client that handles it.
//! The server is the `mcp_oauth_server` example (`demo_github_login`, with a second
//! authorization server on loopback standing in for GitHub). The "browser" is a script the
//! bridge opens through `BROWSER`: it follows redirects with cookies and, on the page that names
//! who links what, continues; each page it opens is noted in a file.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rmcp::transport::TokioChildProcess;
use rmcp::ClientServiceExt;
use serde_json::json;
use support::mcp::{call, text};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tower_mcp_oauth::elicitation::{UrlElicitation, UrlElicitationClient};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-oauth");

/// The browser: cookies kept, redirects followed, the link's confirmation page continued.
const BROWSER: &str = r#"
import re, sys, urllib.parse, urllib.request, http.cookiejar
url = sys.argv[1]
with open(sys.argv[2], 'a') as log:
    log.write(url + '\n')
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
page = opener.open(url)
html = page.read().decode()
handle = re.search(r'name="handle" value="([^"]+)"', html)
if handle:
    origin = urllib.parse.urlsplit(page.geturl())
    form = urllib.parse.urlencode({'handle': handle.group(1)}).encode()
    opener.open(f'{origin.scheme}://{origin.netloc}/accounts/continue', data=form).read()
"#;

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("browser.py"), BROWSER).unwrap();
        support::browser_script(
            dir.path(),
            &format!(
                "python3 '{}' \"$1\" '{}' >/dev/null 2>&1",
                dir.path().join("browser.py").display(),
                dir.path().join("opened").display()
            ),
        );
        Self { dir }
    }

    fn browser(&self) -> PathBuf {
        self.dir.path().join("browser.sh")
    }

    /// Every page the browser opened.
    fn opened(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("opened"))
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The pages opened that are links to an account, not sign-ins.
    fn links(&self) -> usize {
        self.opened()
            .iter()
            .filter(|url| url.contains("/accounts/link?"))
            .count()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--store-file")
            .arg(self.dir.path().join("credentials.json"))
            .env("BROWSER", self.browser())
            .env("RUST_LOG", "warn")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .kill_on_drop(true);
        command
    }
}

/// `mcp-oauth call URL demo_github_login`, `answer` written to its standard input (closed
/// after): success, standard output, standard error.
async fn call_linked(home: &Home, url: &str, answer: &str) -> (bool, String, String) {
    let mut command = home.command(&["call", url, "demo_github_login"]);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(answer.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("mcp-oauth call finished")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_shows_the_page_opens_it_when_the_user_agrees_and_retries() {
    let running = support::approving_server(Default::default()).await;
    let origin = running.base.clone();

    // Declined (nothing on standard input): nothing is opened, and the error names the page.
    let home = Home::new();
    let (ok, _, stderr) = call_linked(&home, &running.mcp_url, "").await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!("the server asks you to open a page at {origin}\n")),
        "{stderr}"
    );
    assert!(stderr.contains("/accounts/link?ticket="), "{stderr}");
    assert!(stderr.contains("the page was not opened"), "{stderr}");
    assert_eq!(home.links(), 0, "{:?}", home.opened());

    // Agreed: the browser links the account, the call is retried and succeeds.
    let (ok, stdout, stderr) = call_linked(&home, &running.mcp_url, "y\n").await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("octocat"), "{stdout}");
    assert!(
        stderr.contains(&format!("Open {origin} in your browser? [y/N]")),
        "{stderr}"
    );
    assert_eq!(home.links(), 1, "{:?}", home.opened());
    for url in home.opened() {
        assert!(
            url.starts_with(&origin),
            "only the server's own pages: {url}"
        );
    }

    // The account stays linked: no question, no browser.
    let (ok, stdout, stderr) = call_linked(&home, &running.mcp_url, "").await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("octocat"), "{stdout}");
    assert!(!stderr.contains("asks you to open"), "{stderr}");
    assert_eq!(home.links(), 1);
}

/// `proxy` passes the request through: a client that declares URL-mode elicitation gets it (at
/// 2025-11-25 the `-32042` error and the completion notice, at 2026-07-28 the input request) and
/// opens the page itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_passes_the_request_through_to_a_client_that_handles_it() {
    use rmcp::model::ProtocolVersion;
    for version in [None, Some(ProtocolVersion::V_2026_07_28)] {
        let running = support::approving_server(Default::default()).await;
        let home = Home::new();
        let browser = home.browser();
        let opener = move |request: UrlElicitation| -> tower_mcp_oauth::BoxFuture<'static, bool> {
            let browser = browser.clone();
            Box::pin(async move { open_with(&browser, request.url.as_str()).await })
        };
        let handler = UrlElicitationClient::new(opener);
        let (transport, _) = TokioChildProcess::builder(home.command(&["proxy", &running.mcp_url]))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let client = handler
            .clone()
            .serve_with_lifecycle(transport, support::mcp::lifecycle_at(version.clone()))
            .await
            .unwrap();
        for _ in 0..2 {
            let answer = handler
                .call_tool(&client, call("demo_github_login", json!({})))
                .await
                .unwrap();
            assert!(text(&answer.content).contains("octocat"), "{version:?}");
        }
        assert_eq!(home.links(), 1, "{version:?}: {:?}", home.opened());
        client.cancel().await.unwrap();
    }
}

async fn open_with(browser: &Path, url: &str) -> bool {
    Command::new(browser)
        .arg(url)
        .status()
        .await
        .is_ok_and(|s| s.success())
}
