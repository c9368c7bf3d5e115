//! The bridge: JSON-RPC lines on standard input and output, relayed as they are to the server
//! over Streamable HTTP or HTTP+SSE (so any protocol revision the two ends speak goes through),
//! and the `call` command.

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::ServiceExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tower_mcp_oauth::client::BoxFuture;
use tower_mcp_oauth::transport::{
    AutoTransport, LegacySseConfig, LegacySseTransport, StreamableHttpConfig,
    StreamableHttpTransport,
};
use tower_mcp_oauth::ErrorKind;

use super::cli_error::CliError;
use super::setup::{shown, McpStack};
use super::Transport;

/// How long closing the server side may take once the client has gone. With
/// [`FLUSH_TIMEOUT`] and the runtime's shutdown, the bridge is gone within a second.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(400);
/// How long the last messages may take to reach standard output.
const FLUSH_TIMEOUT: Duration = Duration::from_millis(300);
/// Messages waiting for standard output before the relay stops reading the server.
const OUTPUT_QUEUE: usize = 256;

enum Remote {
    Auto(AutoTransport<McpStack>),
    Streamable(StreamableHttpTransport<McpStack>),
    Sse(LegacySseTransport<McpStack>),
}

impl Remote {
    async fn open(url: &str, stack: McpStack, transport: Transport) -> Result<Self, CliError> {
        Ok(match transport {
            Transport::Auto => Self::Auto(AutoTransport::new(
                stack,
                StreamableHttpConfig::new(url),
                LegacySseConfig::new(url),
            )),
            Transport::Streamable => Self::Streamable(StreamableHttpTransport::new(
                stack,
                StreamableHttpConfig::new(url),
            )),
            Transport::Sse => Self::Sse(
                LegacySseTransport::connect(stack, LegacySseConfig::new(url))
                    .await
                    .map_err(|e| CliError::new(format!("cannot reach {}: {e}", shown(url))))?,
            ),
        })
    }

    fn send(&self, message: Value) -> BoxFuture<'static, tower_mcp_oauth::Result<()>> {
        match self {
            Self::Auto(t) => Box::pin(t.send(message)),
            Self::Streamable(t) => Box::pin(t.send(message)),
            Self::Sse(t) => Box::pin(t.send(message)),
        }
    }

    async fn receive(&mut self) -> Option<tower_mcp_oauth::Result<Value>> {
        match self {
            Self::Auto(t) => t.receive().await,
            Self::Streamable(t) => t.receive().await,
            Self::Sse(t) => t.receive().await,
        }
    }

    async fn close(&mut self) {
        let closing = async {
            let _ = match self {
                Self::Auto(t) => t.close().await,
                Self::Streamable(t) => t.close().await,
                Self::Sse(t) => t.close().await,
            };
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
    }
}

enum Event {
    FromClient(std::io::Result<Option<Vec<u8>>>),
    FromServer(Option<tower_mcp_oauth::Result<Value>>),
    Report(Report),
}

/// What work done in the background reports to the relay's loop.
enum Report {
    /// `message` met a session the server had forgotten (a restart, an idle timeout).
    Expired { message: Value, generation: u64 },
    /// The bridge's own `initialize` could not be sent.
    ResumeFailed(tower_mcp_oauth::Error),
    /// The bridge's own `initialize` (this id) had no answer in time.
    ResumeTimedOut(Value),
    /// The new session heard `notifications/initialized`: the held messages may go.
    Resumed,
}

/// The JSON-RPC error answering request `id` that could not be delivered, saying which part
/// failed: the way to the server, or signing in.
fn undeliverable(id: Value, error: &tower_mcp_oauth::Error) -> Value {
    let what = match error.kind() {
        ErrorKind::Http | ErrorKind::Timeout => "the server could not be reached",
        ErrorKind::AuthorizationDenied
        | ErrorKind::Handler
        | ErrorKind::NotAuthorized
        | ErrorKind::StateMismatch
        | ErrorKind::IssuerMismatch
        | ErrorKind::TooManyAttempts
        | ErrorKind::DiscoveryFailed
        | ErrorKind::MetadataMismatch
        | ErrorKind::PkceNotSupported
        | ErrorKind::Registration
        | ErrorKind::InvalidClient
        | ErrorKind::InvalidGrant
        | ErrorKind::InvalidScope
        | ErrorKind::UnauthorizedClient
        | ErrorKind::TokenEndpoint => {
            "signing in failed (`mcp-oauth login URL` in a terminal shows each step)"
        }
        _ => "the request failed",
    };
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": -32000, "message": format!("mcp-oauth: {what}: {error}")},
    })
}

/// The id of `message` if it is a request (which is answered whatever happens to its POST).
fn request_id(message: &Value) -> Option<Value> {
    message
        .get("method")
        .and(message.get("id"))
        .filter(|id| !id.is_null())
        .cloned()
}

/// Ids of the bridge's own requests begin so; their answers never reach the client.
const OWN_ID_PREFIX: &str = "mcp-oauth/";

/// A message on its way to the server, and what to do when it does not arrive.
struct Delivery {
    sending: BoxFuture<'static, tower_mcp_oauth::Result<()>>,
    request_id: Option<Value>,
    /// The message and the session generation it went in, when an expired session may send
    /// it again.
    retry: Option<(Value, u64)>,
}

impl Delivery {
    async fn run(self, output: mpsc::Sender<Value>, reports: mpsc::UnboundedSender<Report>) {
        let Err(error) = self.sending.await else {
            return;
        };
        if error.kind() == ErrorKind::SessionExpired {
            if let Some((message, generation)) = self.retry {
                let _ = reports.send(Report::Expired {
                    message,
                    generation,
                });
                return;
            }
        }
        tracing::error!(%error, "a message could not be delivered to the server");
        if let Some(id) = self.request_id {
            let _ = output.send(undeliverable(id, &error)).await;
        }
    }
}

/// How long the server may take to answer the bridge's own `initialize` once it is sent.
const RESUME_TIMEOUT: Duration = Duration::from_secs(30);
/// The least time between two new sessions the listening stream asks for, so that a server
/// whose stream always answers 404 does not get a new session in a loop.
const LISTENING_RESUME_INTERVAL: Duration = Duration::from_secs(10);

/// Starting a session again on the client's behalf when the server forgot it: a stdio client
/// initializes once per process, so without this the bridge would be of no use until the
/// client restarts.
#[derive(Default)]
struct Resumption {
    /// The client's `initialize`, replayed under the bridge's own id.
    initialize: Option<Value>,
    /// Counts sessions: a message refused by the current one goes again, once, in the next.
    generation: u64,
    phase: Phase,
    /// When the last new session was started.
    last_started: Option<tokio::time::Instant>,
}

/// Where a new session stands; messages are held from its start until `initialized` is sent.
#[derive(Default)]
enum Phase {
    #[default]
    Live,
    /// The bridge's `initialize` (this id) awaits its answer.
    Initializing { id: Value, held: Vec<Value> },
    /// Answered; `notifications/initialized` is on its way.
    Confirming { held: Vec<Value> },
}

impl Phase {
    /// Holds `message` while a new session starts; gives it back when the session is live.
    fn hold(&mut self, message: Value) -> Option<Value> {
        match self {
            Self::Live => Some(message),
            Self::Initializing { held, .. } | Self::Confirming { held } => {
                held.push(message);
                None
            }
        }
    }
}

/// Both directions of the bridge, and what it needs to keep a session going.
struct Relay {
    remote: Remote,
    output: mpsc::Sender<Value>,
    reports: mpsc::UnboundedSender<Report>,
    resumption: Resumption,
}

impl Relay {
    /// Sends `message` in the background; `retry`: it may go again in a new session.
    fn send(&self, message: Value, retry: bool) {
        let retry = (retry && self.resumption.initialize.is_some())
            .then(|| (message.clone(), self.resumption.generation));
        let delivery = Delivery {
            request_id: request_id(&message),
            sending: self.remote.send(message),
            retry,
        };
        tokio::spawn(delivery.run(self.output.clone(), self.reports.clone()));
    }

    fn client_sent(&mut self, message: Value) {
        if message.get("method").and_then(Value::as_str) == Some("initialize") {
            self.resumption.initialize = Some(message.clone());
        }
        if let Some(message) = self.resumption.phase.hold(message) {
            self.send(message, true);
        }
    }

    /// Forwards `message` to the client, unless it answers the bridge's own `initialize`.
    async fn server_sent(&mut self, message: Value) -> Result<(), ()> {
        let id = message
            .get("id")
            .filter(|_| message.get("method").is_none());
        let own = id
            .and_then(Value::as_str)
            .is_some_and(|id| id.starts_with(OWN_ID_PREFIX));
        if !own {
            return self.output.send(message).await.map_err(|_| ());
        }
        let answers_pending = matches!(
            &self.resumption.phase,
            Phase::Initializing { id: pending, .. } if Some(pending) == id
        );
        if !answers_pending {
            // A late answer to an attempt given up on.
            return Ok(());
        }
        let Phase::Initializing { held, .. } = std::mem::take(&mut self.resumption.phase) else {
            return Ok(());
        };
        if message.get("result").is_none() {
            let refusal = message.get("error").cloned().unwrap_or_default();
            let error = tower_mcp_oauth::Error::new(
                ErrorKind::SessionExpired,
                format!("the server forgot the session and refused a new one: {refusal}"),
            );
            self.fail_held(held, error);
            return Ok(());
        }
        self.resumption.generation += 1;
        self.resumption.phase = Phase::Confirming { held };
        tracing::info!("the server had forgotten the session; a new one is started");
        let initialized = self.remote.send(json!({
            "jsonrpc": "2.0", "method": "notifications/initialized"
        }));
        let reports = self.reports.clone();
        tokio::spawn(async move {
            if let Err(error) = initialized.await {
                tracing::warn!(%error, "the new session's initialized notice was not delivered");
            }
            let _ = reports.send(Report::Resumed);
        });
        Ok(())
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Expired {
                message,
                generation,
            } if generation < self.resumption.generation => {
                // A new session started meanwhile: the message goes there (once).
                if let Some(message) = self.resumption.phase.hold(message) {
                    self.send(message, false);
                }
            }
            Report::Expired { message, .. } => self.resume(Some(message)),
            Report::ResumeFailed(error) => {
                if let Phase::Initializing { held, .. } = std::mem::take(&mut self.resumption.phase)
                {
                    self.fail_held(held, error);
                }
            }
            Report::ResumeTimedOut(id) => {
                if matches!(&self.resumption.phase, Phase::Initializing { id: pending, .. } if *pending == id)
                {
                    let error = tower_mcp_oauth::Error::new(
                        ErrorKind::Timeout,
                        "the server did not answer a new initialize in time",
                    );
                    self.on_report(Report::ResumeFailed(error));
                }
            }
            Report::Resumed => {
                if let Phase::Confirming { held } = std::mem::take(&mut self.resumption.phase) {
                    for message in held {
                        self.send(message, false);
                    }
                }
            }
        }
    }

    /// Starts a new session with the client's `initialize`, holding `message` (and what comes
    /// next) until the new session has heard `initialized`. `None`: the listening stream
    /// found the session gone before any message did.
    fn resume(&mut self, message: Option<Value>) {
        if let Some(message) = message {
            let Some(message) = self.resumption.phase.hold(message) else {
                return;
            };
            self.start_session(vec![message]);
        } else if matches!(self.resumption.phase, Phase::Live) {
            let recently = self
                .resumption
                .last_started
                .is_some_and(|at| at.elapsed() < LISTENING_RESUME_INTERVAL);
            if !recently {
                self.start_session(Vec::new());
            }
        }
    }

    fn start_session(&mut self, held: Vec<Value>) {
        // Without the client's `initialize` there is nothing to replay; no message comes here
        // then, since only those sent after it may go again.
        let Some(mut initialize) = self.resumption.initialize.clone() else {
            return;
        };
        let id = json!(format!(
            "{OWN_ID_PREFIX}session-{}",
            self.resumption.generation + 1
        ));
        initialize["id"] = id.clone();
        tracing::info!("the server no longer knows the session; initializing again");
        self.resumption.phase = Phase::Initializing {
            id: id.clone(),
            held,
        };
        self.resumption.last_started = Some(tokio::time::Instant::now());
        let sending = self.remote.send(initialize);
        let reports = self.reports.clone();
        tokio::spawn(async move {
            // Not bounded itself: sending may wait for a sign-in (the server's restart may
            // have cost the token), which takes a person's time.
            let report = match sending.await {
                Ok(()) => {
                    // Sent; the answer comes from the server. Give up if it never does.
                    tokio::time::sleep(RESUME_TIMEOUT).await;
                    Report::ResumeTimedOut(id)
                }
                Err(error) => Report::ResumeFailed(error),
            };
            let _ = reports.send(report);
        });
    }

    /// Answers the requests held for a session that could not be started.
    fn fail_held(&self, held: Vec<Value>, error: tower_mcp_oauth::Error) {
        tracing::error!(%error, "a new session could not be started");
        let output = self.output.clone();
        tokio::spawn(async move {
            for id in held.iter().filter_map(request_id) {
                let _ = output.send(undeliverable(id, &error)).await;
            }
        });
    }
}

/// Standard input, read as the runtime's other sockets are when it is a pipe or a socket (as
/// MCP clients start the bridge; Node's and Electron's child processes get socket pairs):
/// tokio's own `stdin` reads on a blocking thread, a hand-off per read that costs a message
/// tens of microseconds.
fn standard_input() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let polled = polled(
            std::io::stdin().as_fd(),
            |fd| Ok(Box::new(tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?) as Box<_>),
            |socket| Box::new(socket) as Box<_>,
        );
        if let Some(polled) = polled {
            return polled;
        }
    }
    Box::new(tokio::io::stdin())
}

/// Standard output, written as [`standard_input`] is read.
fn standard_output() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let polled = polled(
            std::io::stdout().as_fd(),
            |fd| Ok(Box::new(tokio::net::unix::pipe::Sender::from_owned_fd(fd)?) as Box<_>),
            |socket| Box::new(socket) as Box<_>,
        );
        if let Some(polled) = polled {
            return polled;
        }
    }
    Box::new(tokio::io::stdout())
}

/// `fd` as something the runtime polls: a pipe (made by `pipe`) or a socket (by `socket`);
/// `None` for anything else (a terminal, a file), left to the blocking reader and writer.
///
/// Polling makes the pipe or socket non-blocking for every process and descriptor sharing it,
/// so one that standard error shares too (`2>&1`) is left alone: a prompt or log line written
/// to it would fail with `EAGAIN`.
#[cfg(unix)]
fn polled<T>(
    fd: std::os::fd::BorrowedFd<'_>,
    pipe: impl FnOnce(std::os::fd::OwnedFd) -> std::io::Result<T>,
    socket: impl FnOnce(tokio::net::UnixStream) -> T,
) -> Option<T> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
    let metadata = file.metadata().ok()?;
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|stderr| std::fs::File::from(stderr).metadata().ok());
    if stderr.is_some_and(|stderr| (stderr.dev(), stderr.ino()) == (metadata.dev(), metadata.ino()))
    {
        return None;
    }
    let kind = metadata.file_type();
    if kind.is_fifo() {
        return pipe(file.into()).ok();
    }
    if kind.is_socket() {
        let stream = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(file));
        let restore = stream.try_clone().ok()?;
        stream.set_nonblocking(true).ok()?;
        return match tokio::net::UnixStream::from_std(stream) {
            Ok(stream) => Some(socket(stream)),
            Err(_) => {
                // The blocking fallback must find the socket as it was.
                let _ = restore.set_nonblocking(false);
                None
            }
        };
    }
    None
}

/// Relays until standard input closes (exit 0) or the server connection ends for good.
pub(crate) async fn run(url: &str, stack: McpStack, transport: Transport) -> Result<(), CliError> {
    let remote = Remote::open(url, stack, transport).await?;
    let (output, mut outgoing) = mpsc::channel::<Value>(OUTPUT_QUEUE);
    let writer = tokio::spawn(async move {
        let mut stdout = standard_output();
        while let Some(message) = outgoing.recv().await {
            let mut line = message.to_string();
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let (reports, mut reported) = mpsc::unbounded_channel();
    let mut relay = Relay {
        remote,
        output,
        reports,
        resumption: Resumption::default(),
    };
    // Split on bytes: a line that is not UTF-8 is answered as not JSON, like any other.
    let mut lines = BufReader::new(standard_input()).split(b'\n');
    tracing::info!(url = %shown(url), "relaying MCP between standard input and the server");
    let outcome = loop {
        // The receive future borrows the transport; it is dropped (safely: it is a channel
        // read) before anything is sent.
        let event = {
            let receive = relay.remote.receive();
            tokio::pin!(receive);
            tokio::select! {
                line = lines.next_segment() => Event::FromClient(line),
                message = &mut receive => Event::FromServer(message),
                Some(report) = reported.recv() => Event::Report(report),
            }
        };
        match event {
            Event::FromClient(Ok(Some(line))) => {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                match serde_json::from_slice(&line) {
                    Ok(message) => relay.client_sent(message),
                    Err(_) => {
                        tracing::warn!("standard input sent a line that is not JSON");
                        let parse_error = json!({"jsonrpc": "2.0", "id": null,
                            "error": {"code": -32700, "message": "mcp-oauth: not JSON"}});
                        let _ = relay.output.send(parse_error).await;
                    }
                }
            }
            Event::FromClient(Ok(None)) => {
                tracing::info!("standard input closed; closing the server connection");
                relay.remote.close().await;
                break Ok(());
            }
            Event::FromClient(Err(error)) => {
                tracing::info!(%error, "standard input failed; closing the server connection");
                relay.remote.close().await;
                break Ok(());
            }
            Event::FromServer(Some(Ok(message))) => {
                if relay.server_sent(message).await.is_err() {
                    break Ok(());
                }
            }
            Event::FromServer(Some(Err(error))) if error.kind() == ErrorKind::SessionExpired => {
                // The listening stream found the session gone before any request did.
                relay.resume(None);
            }
            Event::FromServer(Some(Err(error))) => {
                tracing::warn!(%error, "the server connection reported an error");
            }
            Event::FromServer(None) => {
                break Err(CliError::new(format!(
                    "the connection to {} ended",
                    shown(url)
                )));
            }
            Event::Report(report) => relay.on_report(report),
        }
    };
    drop(relay);
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, writer).await;
    outcome
}

/// One tool call, its result printed as JSON on standard output.
pub(crate) async fn call(
    url: &str,
    stack: McpStack,
    transport: Transport,
    tool: &str,
    arguments: Vec<(String, Value)>,
) -> Result<(), CliError> {
    let client = match Remote::open(url, stack, transport).await? {
        Remote::Auto(t) => ClientConfig::default().serve(t).await,
        Remote::Streamable(t) => ClientConfig::default().serve(t).await,
        Remote::Sse(t) => ClientConfig::default().serve(t).await,
    }
    .map_err(|e| {
        CliError::new(format!(
            "cannot start an MCP session with {}: {e}",
            shown(url)
        ))
    })?;
    let mut request = CallToolRequestParams::new(tool.to_owned());
    if !arguments.is_empty() {
        request = request.with_arguments(arguments.into_iter().collect());
    }
    let result = client
        .call_tool(request)
        .await
        .map_err(|e| CliError::new(format!("the call to {tool} failed: {e}")));
    let _ = client.cancel().await;
    let result = result?;
    let printed = serde_json::to_string_pretty(&result)
        .map_err(|_| CliError::new("cannot print the result"))?;
    println!("{printed}");
    if result.is_error == Some(true) {
        return Err(CliError::new(format!("{tool} answered with an error")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[tokio::test]
    async fn pipes_and_sockets_are_polled_and_files_are_not() {
        use std::os::fd::AsFd;
        let kind = |fd: std::os::fd::BorrowedFd<'_>| {
            polled(fd, |_| Ok("pipe"), |_| "socket").unwrap_or("blocking")
        };
        let (reader, _writer) = std::io::pipe().unwrap();
        assert_eq!(kind(reader.as_fd()), "pipe");
        let (socket, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(kind(socket.as_fd()), "socket");
        let file = tempfile::tempfile().unwrap();
        assert_eq!(kind(file.as_fd()), "blocking");
    }

    #[test]
    fn an_undelivered_request_says_which_part_failed() {
        let message = |kind| {
            let error = tower_mcp_oauth::Error::new(kind, "details");
            let answer = undeliverable(json!(7), &error);
            assert_eq!(answer["id"], 7);
            answer["error"]["message"].as_str().unwrap().to_owned()
        };
        assert!(message(ErrorKind::Http).contains("could not be reached: details"));
        assert!(message(ErrorKind::AuthorizationDenied).contains("mcp-oauth login URL"));
        assert!(message(ErrorKind::InvalidGrant).contains("signing in failed"));
        assert!(message(ErrorKind::InvalidResponse).contains("the request failed"));
    }
}
