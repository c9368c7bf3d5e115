//! `mcp-oauth` as desktop MCP clients run it, over real processes: rmcp's child-process
//! transport on one side, the `mcp_oauth_server` example (on 127.0.0.1) on the other. The
//! "browser" is a script the bridge opens through `BROWSER`: it follows the authorization URL,
//! which the server approves at once, and notes each sign-in in a file.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::model::ClientConfig;
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use support::mcp::{call, text};
use support::oauth_server_app;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-oauth");

/// A temporary home for one test: the credentials file and the browser script.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    /// `mcp-oauth call URL add --arg a=A --arg b=B`.
    fn add(&self, url: &str, a: i64, b: i64) -> Command {
        let (a, b) = (format!("a={a}"), format!("b={b}"));
        self.command(&["call", url, "add", "--arg", &a, "--arg", &b])
    }

    fn new() -> Self {
        let home = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        support::following_browser(home.dir.path());
        home
    }

    fn browser(&self) -> PathBuf {
        self.dir.path().join("browser.sh")
    }

    fn sign_ins(&self) -> usize {
        support::sign_ins(self.dir.path())
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("credentials.json")
    }

    /// `mcp-oauth ARGS --store-file …` with the test browser.
    fn command(&self, args: &[&str]) -> Command {
        self.configure(Command::new(BIN), args)
    }

    /// The same in a session of its own, without a controlling terminal, as a desktop app
    /// starts it (`setsid`, from util-linux).
    fn without_terminal(&self, args: &[&str]) -> Command {
        let mut command = Command::new("setsid");
        command.args(["--wait", BIN]);
        self.configure(command, args)
    }

    fn configure(&self, mut command: Command, args: &[&str]) -> Command {
        command
            .args(args)
            .arg("--store-file")
            .arg(self.store())
            .env("BROWSER", self.browser())
            .env("RUST_LOG", "info")
            // No OS credential store unless a test starts one: the plain file.
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .kill_on_drop(true);
        command
    }
}

/// A Secret Service of its own (gnome-keyring on a private D-Bus session, its login keyring
/// unlocked in a temporary home), as a desktop session has. `None` (the test says it is
/// skipped) where the two daemons are not installed, unless `REQUIRE_KEYRING_TESTS=1`.
struct SecretService {
    home: tempfile::TempDir,
    bus: String,
    dbus_pid: u32,
}

impl SecretService {
    fn start() -> Option<Self> {
        let installed = |name: &str| {
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !installed("dbus-daemon") || !installed("gnome-keyring-daemon") {
            assert!(
                std::env::var("REQUIRE_KEYRING_TESTS").as_deref() != Ok("1"),
                "REQUIRE_KEYRING_TESTS=1 but dbus-daemon or gnome-keyring-daemon is missing"
            );
            eprintln!("skipped: dbus-daemon and gnome-keyring-daemon are not installed (OS credential store tests)");
            return None;
        }
        let home = tempfile::tempdir().unwrap();
        let started = std::process::Command::new("dbus-daemon")
            .args(["--session", "--fork", "--print-address=1", "--print-pid=1"])
            .env("HOME", home.path())
            .output()
            .unwrap();
        assert!(started.status.success(), "dbus-daemon did not start");
        let printed = String::from_utf8(started.stdout).unwrap();
        let mut lines = printed.lines();
        let bus = lines.next().unwrap().to_owned();
        let dbus_pid = lines.next().unwrap().trim().parse().unwrap();
        let service = Self {
            home,
            bus,
            dbus_pid,
        };
        let mut unlock = std::process::Command::new("gnome-keyring-daemon")
            .args(["--unlock", "--components=secrets"])
            .envs(service.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = unlock.stdin.take().unwrap();
            stdin.write_all(b"test keyring password").unwrap();
        }
        assert!(
            unlock.wait().unwrap().success(),
            "the keyring did not unlock"
        );
        Some(service)
    }

    fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        vec![
            ("DBUS_SESSION_BUS_ADDRESS", self.bus.clone().into()),
            ("HOME", self.home.path().into()),
            ("XDG_RUNTIME_DIR", self.home.path().into()),
        ]
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        // The keyring daemon leaves with its bus.
        let _ = std::process::Command::new("kill")
            .arg(self.dbus_pid.to_string())
            .status();
    }
}

async fn server() -> oauth_server_app::Running {
    support::approving_server(Default::default()).await
}

async fn server_without_device_grant() -> oauth_server_app::Running {
    support::approving_server(oauth_server_app::Options {
        device_grant: false,
        ..Default::default()
    })
    .await
}

/// Starts `command` with its three standard streams piped.
fn spawn_piped(mut command: Command) -> std::io::Result<tokio::process::Child> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

async fn run(mut command: Command) -> (bool, String, String) {
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("mcp-oauth finished")
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmcp_client_on_stdio_calls_tools_through_the_bridge_and_a_restart_needs_no_browser() {
    let running = server().await;
    let home = Home::new();
    for round in 0..2 {
        let command = home.command(&["proxy", &running.mcp_url]);
        let (transport, _) = TokioChildProcess::builder(command)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let client = ClientConfig::default().serve(transport).await.unwrap();
        let tools = client.list_tools(Default::default()).await.unwrap();
        assert!(tools.tools.iter().any(|t| t.name == "add"));
        let sum = client
            .call_tool(call("add", json!({"a": 40, "b": 2})))
            .await
            .unwrap();
        assert_eq!(text(&sum.content), "42");
        let whoami = client.call_tool(call("whoami", json!({}))).await.unwrap();
        let whoami: Value = serde_json::from_str(&text(&whoami.content)).unwrap();
        assert_eq!(whoami["subject"], "demo-user");
        client.cancel().await.unwrap();
        // The first run signed in once; the restart found the stored tokens.
        assert_eq!(home.sign_ins(), 1, "round {round}");
    }
    // `status` shows what is kept, never a token.
    let (ok, stdout, _) = run(home.command(&["status"])).await;
    assert!(ok);
    assert!(stdout.contains(&running.mcp_url), "{stdout}");
    assert!(stdout.contains("mcp:tools"), "{stdout}");
    let stored = std::fs::read_to_string(home.store()).unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    let token = stored["records"][0][1]["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!stdout.contains(&token));
    // `logout` forgets them: the next call signs in again.
    assert!(run(home.command(&["logout", &running.mcp_url])).await.0);
    let (ok, stdout, stderr) = run(home.add(&running.mcp_url, 1, 2)).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"3\""), "{stdout}");
    assert_eq!(home.sign_ins(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bridges_started_together_sign_in_once() {
    let running = server().await;
    let home = Home::new();
    let calls = (0..3).map(|_| {
        let command = home.add(&running.mcp_url, 2, 3);
        tokio::spawn(run(command))
    });
    for call in calls {
        let (ok, stdout, stderr) = call.await.unwrap();
        assert!(ok, "{stderr}");
        assert!(stdout.contains("\"5\""), "{stdout}");
    }
    assert_eq!(home.sign_ins(), 1, "one browser tab for three bridges");
}

/// A proxy with stored tokens, its standard streams piped; `flags` for the proxy command.
async fn signed_in_proxy(home: &Home, url: &str, flags: &[&str]) -> tokio::process::Child {
    let (ok, _, stderr) = run(home.command(&["login", url])).await;
    assert!(ok, "{stderr}");
    spawn_piped(home.command(&[&["proxy", url], flags].concat())).unwrap()
}

/// A bridge's standard streams, spoken to as an MCP client would.
struct Piped {
    stdin: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
    stdout: tokio::io::Lines<BufReader<Box<dyn tokio::io::AsyncRead + Unpin + Send>>>,
}

impl Piped {
    fn of(child: &mut tokio::process::Child) -> Self {
        Self::over(child.stdin.take().unwrap(), child.stdout.take().unwrap())
    }

    fn over(
        stdin: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
        stdout: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    ) -> Self {
        Self {
            stdin: Box::new(stdin),
            stdout: BufReader::new(Box::new(stdout) as Box<_>).lines(),
        }
    }

    async fn tell(&mut self, message: Value) {
        let line = format!("{message}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
    }

    /// Sends request `message` and returns its answer; nothing else the bridge prints may
    /// be one of its own messages.
    async fn ask(&mut self, message: Value) -> Value {
        let id = message["id"].clone();
        self.tell(message).await;
        loop {
            let answer = self.next().await;
            if answer["id"] == id && answer.get("method").is_none() {
                return answer;
            }
        }
    }

    /// The next message the bridge prints.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
            .await
            .expect("an answer, not a hang")
            .unwrap()
            .expect("the bridge is running");
        // The transport's own ids are "tower-mcp-oauth/…" strings (a scope hint's key only
        // ends in that name).
        assert!(
            !line.contains("\"tower-mcp-oauth/"),
            "the bridge's own: {line}"
        );
        serde_json::from_str(&line).unwrap()
    }

    async fn start_session(&mut self) {
        let answer = self
            .ask(
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}),
            )
            .await;
        assert!(answer["result"]["serverInfo"].is_object(), "{answer}");
        self.tell(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
    }

    /// `a + b` by the server's `add` tool.
    async fn add(&mut self, id: u64, a: i64, b: i64) -> String {
        let answer = self
            .ask(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": a, "b": b}}}))
            .await;
        answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"))
            .to_owned()
    }

    /// Closes standard input and returns what the bridge wrote on standard error.
    async fn finish(self, child: tokio::process::Child) -> String {
        drop(self.stdin);
        let output = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output())
            .await
            .expect("the bridge exits")
            .unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_forgot_the_session_gets_a_new_one_and_the_calls_go_on() {
    use rmcp::transport::streamable_http_server::session::SessionManager;
    let running = server().await;
    let home = Home::new();
    // Its callback port taken by another bridge's sign-in: signed in, this one never needs it.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let mut child = signed_in_proxy(&home, &running.mcp_url, &["--callback-port", &port]).await;
    let mut bridge = Piped::of(&mut child);
    bridge.start_session().await;
    // A line that is not even UTF-8 is answered as not JSON, and the bridge carries on.
    bridge
        .stdin
        .write_all(b"{\"id\": \"\xff\xfe\"}\n")
        .await
        .unwrap();
    let answer = bridge.next().await;
    assert_eq!(answer["error"]["code"], -32700, "{answer}");
    assert_eq!(bridge.add(2, 40, 2).await, "42");
    // The server forgets every session, as after a restart or an idle timeout.
    let session_ids = || async {
        let sessions = running.sessions.sessions.read().await;
        sessions.keys().cloned().collect::<Vec<_>>()
    };
    let forgotten = session_ids().await;
    assert_eq!(forgotten.len(), 1);
    running.sessions.close_session(&forgotten[0]).await.unwrap();
    // Three calls at once: the first to fail starts the new session, the others are held or
    // sent again, and each gets its own answer.
    for id in 3..6 {
        bridge
            .tell(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": id, "b": 100}}}))
            .await;
    }
    let mut answered = std::collections::BTreeMap::new();
    while answered.len() < 3 {
        let answer = bridge.next().await;
        if let Some(id) = answer["id"].as_i64().filter(|id| (3..6).contains(id)) {
            let sum = answer["result"]["content"][0]["text"].clone();
            assert!(
                answered.insert(id, sum).is_none(),
                "one answer each: {answer}"
            );
        }
    }
    for (id, sum) in answered {
        assert_eq!(sum, (id + 100).to_string());
    }
    assert_eq!(bridge.add(6, 1, 2).await, "3", "the new session goes on");
    let sessions = session_ids().await;
    assert_eq!(sessions.len(), 1, "one new session");
    assert_ne!(sessions[0], forgotten[0]);
    let stderr = bridge.finish(child).await;
    assert!(stderr.contains("initializing again"), "{stderr}");
    assert!(!stderr.contains("callback port"), "{stderr}");
    drop(held);
    assert_eq!(home.sign_ins(), 1, "the tokens were still good");
}

/// Node and Electron start child processes on socket pairs, not pipes.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_on_socket_pairs_as_node_starts_it_relays_both_ways() {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    let running = server().await;
    let home = Home::new();
    let (ok, _, stderr) = run(home.command(&["login", &running.mcp_url])).await;
    assert!(ok, "{stderr}");
    let (to_bridge, bridge_stdin) = UnixStream::pair().unwrap();
    let (from_bridge, bridge_stdout) = UnixStream::pair().unwrap();
    let mut command = home.command(&["proxy", &running.mcp_url]);
    command
        .stdin(Stdio::from(OwnedFd::from(bridge_stdin)))
        .stdout(Stdio::from(OwnedFd::from(bridge_stdout)))
        .stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    // Only the child holds its ends now, so closing ours is an end of input to it.
    drop(command);
    let tokio_stream = |stream: UnixStream| {
        stream.set_nonblocking(true).unwrap();
        tokio::net::UnixStream::from_std(stream).unwrap()
    };
    let mut bridge = Piped::over(tokio_stream(to_bridge), tokio_stream(from_bridge));
    bridge.start_session().await;
    assert_eq!(bridge.add(2, 40, 2).await, "42");
    bridge.finish(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refreshed_by_a_running_bridge_without_a_browser() {
    let running = support::approving_server(oauth_server_app::Options {
        access_token_ttl: Duration::from_secs(4),
        ..Default::default()
    })
    .await;
    let home = Home::new();
    let log = home.dir.path().join("bridge.log");
    let log_flag = ["--log-file", log.to_str().unwrap()];
    let mut child = signed_in_proxy(&home, &running.mcp_url, &log_flag).await;
    let mut bridge = Piped::of(&mut child);
    bridge.start_session().await;
    assert_eq!(bridge.add(2, 40, 2).await, "42");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(bridge.add(3, 1, 2).await, "3");
    let stderr = bridge.finish(child).await;
    // With --log-file, the log goes there, not to standard error.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("access token refreshed"), "{logged}");
    assert!(!stderr.contains("access token refreshed"), "{stderr}");
    assert_eq!(home.sign_ins(), 1, "a refresh, not a new sign-in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_standard_input_ends_the_bridge_with_status_0_within_a_second() {
    let running = server().await;
    let home = Home::new();
    let mut child = signed_in_proxy(&home, &running.mcp_url, &[]).await;
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    stdin
        .write_all(format!("{initialize}\n").as_bytes())
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&stdout.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(answer["id"], 1);
    assert!(answer["result"]["serverInfo"].is_object(), "{answer}");
    drop(stdin);
    let closed = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("the bridge exits")
        .unwrap();
    assert!(status.success());
    assert!(
        closed.elapsed() < Duration::from_secs(1),
        "{:?}",
        closed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_json_rpc_error_and_a_message_on_stderr() {
    let home = Home::new();
    let (_refusing, base) = support::refusing_port();
    let url = format!("{base}/mcp");
    let mut child = spawn_piped(home.command(&["proxy", &url])).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let request = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"});
    stdin
        .write_all(format!("{request}\n").as_bytes())
        .await
        .unwrap();
    let line = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
        .await
        .expect("an answer, not a hang")
        .unwrap()
        .unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["id"], 7);
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("could not be reached"));
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output())
        .await
        .expect("the bridge exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not be delivered"), "{stderr}");
    assert_eq!(home.sign_ins(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_browser_the_user_enters_a_code_on_another_device() {
    // The consent page asks, as it would a person.
    let running = oauth_server_app::start(oauth_server_app::Options {
        port: 0,
        device_poll_interval: Duration::from_secs(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let home = Home::new();
    let mut command = home.command(&["login", &running.mcp_url, "--no-browser"]);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let (page, code) = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), stderr.next_line())
            .await
            .expect("the device code")
            .unwrap()
            .expect("more output");
        if let Some(rest) = line.split_once("open ").map(|(_, rest)| rest) {
            if let Some((page, code)) = rest.split_once(" on any device and enter the code ") {
                let code = code.split_whitespace().next().unwrap().to_owned();
                break (page.to_owned(), code);
            }
        }
    };
    assert_eq!(page, format!("{}/device", running.base));
    let (_, answer) =
        support::auth_server::answer_device_page(&running.base, &code, "approve").await;
    assert!(answer.text().contains("Approved"));
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("login ends once the user approved")
        .unwrap();
    assert!(status.success());
    assert_eq!(home.sign_ins(), 0, "no browser was opened");
    let (ok, stdout, _) = run(home.command(&["status"])).await;
    assert!(ok && stdout.contains(&running.mcp_url), "{stdout}");
    // The tokens work: a tool call with them needs no sign-in.
    let (ok, stdout, stderr) = run(home.command(&[
        "call",
        &running.mcp_url,
        "add",
        "--arg",
        "a=2",
        "--arg",
        "b=3",
        "--no-browser",
    ]))
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"5\""), "{stdout}");
    assert!(!stderr.contains("enter the code"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_with_neither_browser_nor_terminal_answers_that_signing_in_needs_login() {
    let running = server_without_device_grant().await;
    let home = Home::new();
    let command = home.without_terminal(&["proxy", &running.mcp_url, "--no-browser"]);
    let Ok(mut child) = spawn_piped(command) else {
        eprintln!("skipped: no setsid to start the bridge without a terminal");
        return;
    };
    let mut bridge = Piped::of(&mut child);
    let answer = bridge
        .ask(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("signing in failed"), "{answer}");
    assert!(message.contains("mcp-oauth login URL"), "{answer}");
    let stderr = bridge.finish(child).await;
    assert!(stderr.contains("no terminal"), "{stderr}");
    assert!(
        !stderr.contains("Open this URL"),
        "no prompt nobody can answer: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_browser_or_a_device_grant_the_redirect_is_pasted_back() {
    let running = server_without_device_grant().await;
    let home = Home::new();
    let command = home.command(&["login", &running.mcp_url, "--no-browser"]);
    let mut child = spawn_piped(command).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    // The URL, printed on standard error.
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), stderr.next_line())
            .await
            .expect("the sign-in URL")
            .unwrap()
            .expect("more output");
        if let Some(url) = line
            .trim()
            .strip_prefix("http")
            .map(|rest| format!("http{rest}"))
        {
            if url.contains("/authorize?") {
                break url;
            }
        }
    };
    // The "browser" on another machine: the server approves and redirects to the callback,
    // which nothing serves; the user copies the address.
    let answer = support::get(&url).await;
    let redirect = answer.headers["location"].to_str().unwrap().to_owned();
    assert!(redirect.contains("code="));
    stdin
        .write_all(format!("{redirect}\n").as_bytes())
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("login ends")
        .unwrap();
    assert!(status.success());
    assert_eq!(home.sign_ins(), 0, "no browser was opened");
    let (ok, stdout, _) = run(home.command(&["status"])).await;
    assert!(ok && stdout.contains(&running.mcp_url), "{stdout}");
}

#[tokio::test]
async fn help_lists_every_command_and_the_flags_users_look_for() {
    let mut help = Command::new(BIN);
    help.arg("--help");
    let (ok, stdout, _) = run(help).await;
    assert!(ok);
    for command in ["proxy", "login", "logout", "status", "call"] {
        assert!(stdout.contains(command), "{command}: {stdout}");
    }
    let mut help = Command::new(BIN);
    help.args(["proxy", "--help"]);
    let (ok, stdout, _) = run(help).await;
    assert!(ok);
    for flag in [
        "--header",
        "--client-id",
        "--client-secret",
        "--scope",
        "--authorize-param",
        "--no-resource",
        "--callback-port",
        "--no-browser",
        "--ca-file",
        "--transport",
        "--log-file",
    ] {
        assert!(stdout.contains(flag), "{flag}: {stdout}");
    }
}

/// A server (no authorization) with a tool that asks the client for its roots: a request from
/// the server to the client, which must cross the bridge both ways. (Roots are deprecated from
/// 2026-07-28 on, SEP-2577, but 2025 servers still ask for them.)
#[allow(deprecated)]
mod asking {
    use rmcp::handler::server::router::tool::ToolRouter;
    use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
    use rmcp::service::RequestContext;
    use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};

    #[derive(Clone)]
    pub(crate) struct Asking {
        tool_router: ToolRouter<Self>,
        waits: std::sync::Arc<Waits>,
    }

    /// What `wait` calls tell: that one started, that one was cancelled.
    #[derive(Default)]
    pub(crate) struct Waits {
        pub(crate) started: tokio::sync::Notify,
        pub(crate) cancelled: tokio::sync::Notify,
    }

    #[tool_router]
    impl Asking {
        pub(crate) fn new() -> Self {
            Self::telling(Default::default())
        }

        pub(crate) fn telling(waits: std::sync::Arc<Waits>) -> Self {
            Self {
                tool_router: Self::tool_router(),
                waits,
            }
        }

        #[tool(description = "Reports progress three times, then answers")]
        async fn count(
            &self,
            context: RequestContext<RoleServer>,
        ) -> Result<CallToolResult, ErrorData> {
            if let Some(token) = context.meta.get_progress_token() {
                for step in 1..=3 {
                    let progress =
                        rmcp::model::ProgressNotificationParam::new(token.clone(), f64::from(step))
                            .with_total(3.0);
                    let _ = context.peer.notify_progress(progress).await;
                }
            }
            Ok(CallToolResult::success(vec![ContentBlock::text("counted")]))
        }

        #[tool(description = "Waits until the call is cancelled")]
        async fn wait(
            &self,
            context: RequestContext<RoleServer>,
        ) -> Result<CallToolResult, ErrorData> {
            self.waits.started.notify_one();
            context.ct.cancelled().await;
            self.waits.cancelled.notify_one();
            Ok(CallToolResult::success(vec![ContentBlock::text(
                "cancelled",
            )]))
        }

        #[tool(description = "Asks the client for its roots")]
        async fn roots(
            &self,
            context: RequestContext<RoleServer>,
        ) -> Result<CallToolResult, ErrorData> {
            let roots = context
                .peer
                .list_roots()
                .await
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            let uris: Vec<String> = roots.roots.into_iter().map(|r| r.uri).collect();
            Ok(CallToolResult::success(vec![ContentBlock::text(
                uris.join(","),
            )]))
        }
    }

    #[tool_handler(router = self.tool_router)]
    impl ServerHandler for Asking {
        fn get_info(&self) -> ServerConfig {
            ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_the_client_and_a_cancellation_reaches_the_server_through_the_bridge() {
    let waits = std::sync::Arc::new(asking::Waits::default());
    let service = {
        let waits = waits.clone();
        rmcp::transport::StreamableHttpService::new(
            move || Ok(asking::Asking::telling(waits.clone())),
            std::sync::Arc::new(
                rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default(),
            ),
            Default::default(),
        )
    };
    let base = support::serve(axum::Router::new().nest_service("/mcp", service)).await;
    let home = Home::new();
    let mut child = spawn_piped(home.command(&["proxy", &format!("{base}/mcp")])).unwrap();
    let mut bridge = Piped::of(&mut child);
    bridge.start_session().await;
    bridge
        .tell(
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "count", "arguments": {}, "_meta": {"progressToken": "p-1"}}}),
        )
        .await;
    let mut progress = Vec::new();
    let answer = loop {
        let message = bridge.next().await;
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "p-1", "{message}");
            progress.push(message["params"]["progress"].as_f64().unwrap());
        } else if message["id"] == 2 {
            break message;
        }
    };
    assert_eq!(
        progress,
        [1.0, 2.0, 3.0],
        "every step, in order, before the answer"
    );
    assert_eq!(answer["result"]["content"][0]["text"], "counted");
    // A call the client gives up on: the server hears the cancellation.
    bridge
        .tell(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "wait", "arguments": {}}}))
        .await;
    // Sent once the call runs: HTTP orders nothing between two POSTs.
    tokio::time::timeout(Duration::from_secs(10), waits.started.notified())
        .await
        .expect("the call reached the server");
    bridge
        .tell(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 3, "reason": "the user gave up"}}),
        )
        .await;
    tokio::time::timeout(Duration::from_secs(10), waits.cancelled.notified())
        .await
        .expect("the server's tool was cancelled");
    bridge.finish(child).await;
    assert_eq!(home.sign_ins(), 0);
}

/// The client side: answers `roots/list`.
struct RootsClient;

#[allow(deprecated)]
impl rmcp::ClientHandler for RootsClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            rmcp::model::ClientCapabilities::builder()
                .enable_roots()
                .build(),
            rmcp::model::Implementation::new("roots-client", "1"),
        )
    }

    async fn list_roots(
        &self,
        _: rmcp::service::RequestContext<rmcp::RoleClient>,
    ) -> Result<rmcp::model::ListRootsResult, rmcp::ErrorData> {
        Ok(rmcp::model::ListRootsResult::new(vec![
            rmcp::model::Root::new("file:///home/user/project"),
            rmcp::model::Root::new("file:///tmp"),
        ]))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_from_the_server_is_answered_by_the_client_through_the_bridge() {
    let service = rmcp::transport::StreamableHttpService::new(
        || Ok(asking::Asking::new()),
        std::sync::Arc::new(
            rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default(),
        ),
        Default::default(),
    );
    let base = support::serve(axum::Router::new().nest_service("/mcp", service)).await;
    let home = Home::new();
    let command = home.command(&["proxy", &format!("{base}/mcp")]);
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = RootsClient.serve(transport).await.unwrap();
    let answer = client.call_tool(call("roots", json!({}))).await.unwrap();
    assert_eq!(
        text(&answer.content),
        "file:///home/user/project,file:///tmp"
    );
    client.cancel().await.unwrap();
    assert_eq!(home.sign_ins(), 0, "no authorization asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_calls_tools_with_client_credentials_and_no_browser() {
    let running = server().await;
    let (id, secret) = running
        .authorization_server
        .register_confidential_client(tower_mcp_oauth::metadata::ClientMetadata {
            grant_types: vec!["client_credentials".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let issuer = running.authorization_server.issuer().to_owned();
    let home = Home::new();
    let whoami = |home: &Home, flags: &[&str]| {
        let call = [
            "call",
            &running.mcp_url,
            "whoami",
            "--grant",
            "client-credentials",
            "--client-id",
            &id,
        ];
        home.command(&[&call[..], flags].concat())
    };
    let (ok, stdout, stderr) = run(whoami(
        &home,
        &["--client-secret", secret.expose(), "--issuer", &issuer],
    ))
    .await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&id),
        "the token speaks for the client: {stdout}"
    );
    assert_eq!(home.sign_ins(), 0, "no browser for a machine");
    assert!(!stderr.contains(secret.expose()));
    // Without the secret, the grant is refused before any request.
    let (ok, _, stderr) = run(whoami(&home, &[])).await;
    assert!(!ok);
    assert!(stderr.contains("--client-secret"), "{stderr}");
    // The secret may come from the environment instead, kept off the command line.
    let mut command = whoami(&Home::new(), &["--issuer", &issuer]);
    command.env("MCP_OAUTH_CLIENT_SECRET", secret.expose());
    let (ok, stdout, stderr) = run(command).await;
    assert!(ok && stdout.contains(&id), "{stderr}");
    // Set for one server's bridge, the variable disturbs no bridge without --client-id.
    let other = Home::new();
    let mut command = other.add(&running.mcp_url, 1, 1);
    command.env("MCP_OAUTH_CLIENT_SECRET", secret.expose());
    let (ok, stdout, stderr) = run(command).await;
    assert!(ok && stdout.contains("\"2\""), "{stderr}");
    assert_eq!(other.sign_ins(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_os_credential_store_the_file_is_sealed_and_an_upgrade_keeps_the_sign_in() {
    let Some(secrets) = SecretService::start() else {
        return;
    };
    let running = server().await;
    let home = Home::new();
    let with_keyring = |args: &[&str]| {
        let mut command = home.command(args);
        command.envs(secrets.env());
        command
    };
    // Signed in by a release that kept a plain file.
    let (ok, _, stderr) = run(home.command(&["login", &running.mcp_url, "--store", "file"])).await;
    assert!(ok, "{stderr}");
    let plain = std::fs::read_to_string(home.store()).unwrap();
    assert!(plain.contains("access_token"));
    // Listing or removing credentials makes no key in the OS store.
    for args in [&["status"][..], &["logout", "http://127.0.0.1:1/mcp"]] {
        let (ok, _, stderr) = run(with_keyring(args)).await;
        assert!(ok, "{stderr}");
        assert!(!stderr.contains("made a key"), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(home.store()).unwrap(), plain);
    // The upgrade finds the OS store: the sign-in is kept, and the file sealed.
    let (ok, stdout, stderr) = run(with_keyring(&[
        "call",
        &running.mcp_url,
        "add",
        "--arg",
        "a=20",
        "--arg",
        "b=22",
    ]))
    .await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("made a key"), "{stderr}");
    assert!(stdout.contains("\"42\""), "{stdout}");
    assert_eq!(home.sign_ins(), 1, "no new sign-in");
    // Refreshing or not, the next write seals the file.
    let (ok, _, stderr) = run(with_keyring(&[
        "login",
        &running.mcp_url,
        "--store",
        "keyring",
    ]))
    .await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(with_keyring(&["logout", &running.mcp_url])).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(with_keyring(&["login", &running.mcp_url])).await;
    assert!(ok, "{stderr}");
    let sealed = std::fs::read_to_string(home.store()).unwrap();
    let sealed: Value = serde_json::from_str(&sealed).unwrap();
    assert_eq!(sealed["version"], 2);
    assert!(sealed["sealed"].is_string());
    assert!(!sealed.to_string().contains("access_token"));
    assert!(!sealed.to_string().contains(&running.mcp_url));
    let (ok, stdout, _) = run(with_keyring(&["status"])).await;
    assert!(ok && stdout.contains(&running.mcp_url), "{stdout}");
    // Without the OS store the file stays shut, and says why.
    let (ok, _, stderr) = run(home.command(&["status"])).await;
    assert!(!ok);
    assert!(stderr.contains("sealed"), "{stderr}");
    let (ok, _, stderr) = run(home.command(&["status", "--store", "keyring"])).await;
    assert!(!ok);
    assert!(stderr.contains("OS credential store"), "{stderr}");
    // Another keyring (the key lost): no new key that could not open the file either.
    drop(secrets);
    let Some(other) = SecretService::start() else {
        return;
    };
    let mut command = home.command(&["status", "--store", "keyring"]);
    command.envs(other.env());
    let (ok, _, stderr) = run(command).await;
    assert!(!ok);
    assert!(stderr.contains("delete that file"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_calls_tools_with_its_identity_token() {
    use support::jwt_issuer::{self, Issuer};
    const SUBJECT: &str = "system:serviceaccount:ci:deployer";
    let cluster = Issuer::start().await;
    let running = support::approving_server(oauth_server_app::Options {
        workload_issuers: vec![tower_mcp_oauth::authorization_server::WorkloadIssuer::new(
            &cluster.base,
        )
        .audience("mcp-auth")
        .subject(SUBJECT, ["mcp:tools"])],
        ..Default::default()
    })
    .await;
    let client_id = running
        .authorization_server
        .register_client(tower_mcp_oauth::metadata::ClientMetadata {
            grant_types: vec!["urn:ietf:params:oauth:grant-type:jwt-bearer".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let home = Home::new();
    let token_file = home.dir.path().join("token");
    let now = jwt_issuer::now();
    let claims = json!({"iss": cluster.base, "sub": SUBJECT, "aud": "mcp-auth", "iat": now, "exp": now + 600});
    let token = jwt_issuer::sign(&claims, jsonwebtoken::Algorithm::ES256, Some("ec-1"));
    std::fs::write(&token_file, &token).unwrap();
    let issuer = running.authorization_server.issuer().to_owned();
    let whoami = |home: &Home| {
        home.command(&[
            "call",
            &running.mcp_url,
            "whoami",
            "--grant",
            "jwt-bearer",
            "--assertion-file",
            token_file.to_str().unwrap(),
            "--client-id",
            &client_id,
            "--issuer",
            &issuer,
        ])
    };
    let (ok, stdout, stderr) = run(whoami(&home)).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(SUBJECT),
        "the token speaks for the workload: {stdout}"
    );
    assert_eq!(home.sign_ins(), 0, "no browser for a workload");
    assert!(!stderr.contains(&token) && !stdout.contains(&token));
    // A token for another audience is refused, and the refusal says so.
    let claims = json!({"iss": cluster.base, "sub": SUBJECT, "aud": "elsewhere", "iat": now, "exp": now + 600});
    std::fs::write(
        &token_file,
        jwt_issuer::sign(&claims, jsonwebtoken::Algorithm::ES256, Some("ec-1")),
    )
    .unwrap();
    let fresh = Home::new();
    let (ok, _, stderr) = run(whoami(&fresh)).await;
    assert!(!ok);
    assert!(stderr.contains("invalid_grant"), "{stderr}");
}

/// Sends `signal` (`TERM`, `INT`) to the process `child`.
#[cfg(unix)]
fn send_signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_during_refreshes_exit_0_and_never_sign_anyone_out() {
    use rand::Rng;
    // One-second tokens: nearly every call refreshes first.
    let running = support::approving_server(oauth_server_app::Options {
        access_token_ttl: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let home = Home::new();
    let (ok, _, stderr) = run(home.command(&["login", &running.mcp_url])).await;
    assert!(ok, "{stderr}");
    for round in 0..40 {
        let signal = if round % 2 == 0 { "TERM" } else { "INT" };
        let mut child = spawn_piped(home.command(&["proxy", &running.mcp_url])).unwrap();
        let mut bridge = Piped::of(&mut child);
        let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        bridge.tell(initialize).await;
        bridge
            .tell(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": 1, "b": round}}}))
            .await;
        // Somewhere in the start-up, the refresh or the call (from 5 ms: a signal before the
        // runtime has started ends any process at once, with nothing of the bridge's in flight).
        let delay = rand::thread_rng().gen_range(5..400);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        send_signal(&child, signal);
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the bridge stops")
            .unwrap();
        assert!(
            status.success(),
            "round {round} ({signal}, {delay} ms): {status}"
        );
    }
    assert_eq!(home.sign_ins(), 1, "no signal cost a sign-in");
    let entries = tower_mcp_oauth::client::FileStore::new(home.store())
        .entries()
        .await
        .expect("the store is whole");
    assert_eq!(entries.len(), 1);
    // And the next start still needs no browser.
    let mut child = spawn_piped(home.command(&["proxy", &running.mcp_url])).unwrap();
    let mut bridge = Piped::of(&mut child);
    bridge.start_session().await;
    assert_eq!(bridge.add(3, 40, 2).await, "42");
    bridge.finish(child).await;
    assert_eq!(home.sign_ins(), 1);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_still_ends_a_login_waiting_for_the_browser() {
    use std::os::unix::process::ExitStatusExt;
    let running = server().await;
    let home = Home::new();
    // A browser that never comes back.
    support::browser_script(home.dir.path(), "sleep 30");
    let mut child = spawn_piped(home.command(&["login", &running.mcp_url])).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_signal(&child, "INT");
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("the login ends")
        .unwrap();
    assert_eq!(status.signal(), Some(2), "{status}");
}

impl Home {
    /// `mcp-oauth ARGS` as copied from an mcp-remote configuration: no subcommand, and the
    /// store found through `MCP_OAUTH_DIR` (mcp-remote has no `--store-file`).
    fn mcp_remote_style(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("MCP_OAUTH_DIR", self.dir.path())
            .env("BROWSER", self.browser())
            .env_remove("RUST_LOG")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .kill_on_drop(true);
        command
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_remote_command_line_starts_and_its_flags_do_what_they_say() {
    let running = server().await;
    let home = Home::new();
    let port = support::free_port().to_string();
    // As an mcp-remote configuration has it: the URL, a callback port, flags of its own.
    let mut child = spawn_piped(home.mcp_remote_style(&[
        &running.mcp_url,
        &port,
        "--transport",
        "http-first",
        "--ignore-tool",
        "ECHO",
        "--allow-http",
        "--keep-alive",
        "--silent",
    ]))
    .unwrap();
    let mut bridge = Piped::of(&mut child);
    bridge.start_session().await;
    let listed = bridge
        .ask(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await;
    let names = support::mcp::tool_names(&listed);
    assert!(
        names.contains(&"add") && !names.contains(&"echo"),
        "{names:?}"
    );
    // The server's scope hints come through untouched.
    let stats = listed["result"]["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["name"] == "server_stats"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        stats["_meta"][tower_mcp_oauth::metadata::SCOPES_META_KEY],
        json!(["mcp:admin"]),
        "{listed}"
    );
    let refused = bridge
        .ask(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "x"}}}))
        .await;
    assert_eq!(refused["error"]["code"], -32603, "{refused}");
    assert_eq!(bridge.add(4, 40, 2).await, "42");
    let stderr = bridge.finish(child).await;
    assert!(!stderr.contains("usage"), "{stderr}");
    assert_eq!(home.sign_ins(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_registered_for_mcp_remote_signs_in_through_mcp_oauth() {
    let running = server().await;
    let home = Home::new();
    let port = support::free_port();
    // Registered ahead of time with mcp-remote's redirect.
    let redirect = format!("http://localhost:{port}/oauth/callback");
    let registered = support::send(support::json_request(
        &format!("{}/register", running.base),
        &json!({"redirect_uris": [redirect], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "client_name": "pre"}),
    ))
    .await;
    assert_eq!(registered.status, 201, "{}", registered.text());
    let client_id = registered.json()["client_id"].as_str().unwrap().to_owned();
    let info = json!({ "client_id": client_id }).to_string();
    let port = port.to_string();
    let mut child = spawn_piped(home.mcp_remote_style(&[
        &running.mcp_url,
        &port,
        "--static-oauth-client-info",
        &info,
    ]))
    .unwrap();
    let mut bridge = Piped::of(&mut child);
    bridge.start_session().await;
    assert_eq!(bridge.add(2, 1, 2).await, "3");
    bridge.finish(child).await;
    assert_eq!(home.sign_ins(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_configurations_for_one_server_keep_their_own_credentials() {
    let running = server().await;
    let home = Home::new();
    let session = |tenant: &'static str| {
        let header = format!("X-Tenant: {tenant}");
        let mut child =
            spawn_piped(home.mcp_remote_style(&[&running.mcp_url, "--header", &header])).unwrap();
        async move {
            let mut bridge = Piped::of(&mut child);
            bridge.start_session().await;
            assert_eq!(bridge.add(2, 2, 2).await, "4");
            bridge.finish(child).await;
        }
    };
    session("a").await;
    session("a").await;
    assert_eq!(home.sign_ins(), 1, "the same configuration signs in once");
    session("b").await;
    assert_eq!(
        home.sign_ins(),
        2,
        "another tenant's header, its own sign-in"
    );
}
