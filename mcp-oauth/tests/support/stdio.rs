//! A process speaking MCP on its standard input and output (the bridge, however started),
//! driven one JSON-RPC line at a time.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub struct StdioPeer {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl StdioPeer {
    /// Starts `command` with its three standard streams piped.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
        }
    }

    pub async fn tell(&mut self, message: Value) {
        let line = format!("{message}\n");
        let stdin = self.stdin.as_mut().expect("standard input is open");
        stdin.write_all(line.as_bytes()).await.unwrap();
    }

    /// The answer to request `message`, and every other line printed before it.
    pub async fn ask(&mut self, message: Value) -> (Value, Vec<Value>) {
        let id = message["id"].clone();
        self.tell(message).await;
        let mut printed = Vec::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
                .await
                .expect("an answer, not a hang")
                .unwrap()
                .expect("the peer is running");
            let message: Value = serde_json::from_str(&line).unwrap();
            if message["id"] == id && message.get("method").is_none() {
                return (message, printed);
            }
            printed.push(message);
        }
    }

    /// `initialize` then `notifications/initialized`; the server's `initialize` result.
    pub async fn start_session(&mut self) -> Value {
        let (answer, _) = self
            .ask(
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}),
            )
            .await;
        self.tell(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        answer["result"].clone()
    }

    /// Closes standard input; standard error once the process has ended, and its status.
    pub async fn finish(mut self) -> (String, std::process::ExitStatus) {
        self.stdin.take();
        self.collect().await
    }

    /// Standard error once every process writing it has ended (standard input stays open
    /// until then, so nothing ends for want of input), and the started process's status.
    pub async fn stderr_when_ended(self) -> (String, std::process::ExitStatus) {
        self.collect().await
    }

    async fn collect(mut self) -> (String, std::process::ExitStatus) {
        let mut stderr = String::new();
        let mut pipe = self.child.stderr.take().unwrap();
        tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut stderr)
            .await
            .unwrap();
        let status = self.child.wait().await.unwrap();
        (stderr, status)
    }
}

/// `mcp-oauth ARGS` as a desktop app starts it, its credentials in `dir`: no browser, no OS
/// credential store, no proxy from the environment.
pub fn bridge_command(args: &[&str], dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-oauth"));
    command
        .args(args)
        .env("MCP_OAUTH_DIR", dir)
        .env("XDG_RUNTIME_DIR", dir)
        .env("BROWSER", "false")
        .env_remove("DBUS_SESSION_BUS_ADDRESS");
    for proxy in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        command.env_remove(proxy);
    }
    command
}
