//! The bridge: JSON-RPC lines on standard input and output, relayed as they are to the server
//! over Streamable HTTP or HTTP+SSE (so any protocol revision the two ends speak goes through),
//! and the `call` command.

use std::time::Duration;

use rmcp::model::CallToolRequestParams;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tower_mcp_oauth::client::BoxFuture;
use tower_mcp_oauth::elicitation::UrlElicitationClient;
use tower_mcp_oauth::transport::{
    AutoTransport, EraBridge, LegacySseConfig, LegacySseTransport, Route, StreamableHttpConfig,
    StreamableHttpTransport,
};
use tower_mcp_oauth::ErrorKind;

use super::cli_error::CliError;
use super::ignore::IgnoredTools;
use super::setup::{shown, McpStack};
use super::stop::{StopSignals, STOP_WAIT};
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
    /// Time for a keep-alive ping.
    Ping,
    /// A message the era bridge routed did not reach the server (its id).
    Undelivered(Value),
    /// SIGINT or SIGTERM.
    Stop,
}

/// How the relay runs, besides its two ends.
pub(crate) struct Settings<'a> {
    pub(crate) transport: Transport,
    /// `--protocol auto`.
    pub(crate) bridge_eras: bool,
    /// `--ignore-tool`.
    pub(crate) ignore_tools: &'a [String],
    /// `--keep-alive`, `--ping-interval`.
    pub(crate) ping_every: Option<Duration>,
}

/// Keep-alive pings of the bridge's own: sent once the client has initialized, their answers
/// kept from the client. The ids carry a per-process prefix, so no client id is mistaken for
/// one.
struct Pings {
    every: Option<tokio::time::Interval>,
    prefix: String,
    sent: u64,
    /// The client has sent `notifications/initialized`: a ping before would break the
    /// handshake.
    session_ready: bool,
    /// The last ping on its way: a server that does not answer gets no second one.
    in_flight: Option<tokio::task::JoinHandle<()>>,
}

impl Pings {
    fn new(every: Option<Duration>) -> Self {
        let every = every.map(|period| {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self {
            every,
            prefix: format!("mcp-oauth-keepalive-{}-{nonce:x}-", std::process::id()),
            sent: 0,
            session_ready: false,
            in_flight: None,
        }
    }

    async fn due(&mut self) {
        match &mut self.every {
            Some(interval) => {
                interval.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    fn next(&mut self) -> Option<Value> {
        if !self.session_ready {
            return None;
        }
        self.sent += 1;
        Some(
            json!({"jsonrpc": "2.0", "id": format!("{}{}", self.prefix, self.sent), "method": "ping"}),
        )
    }

    fn is_answer_to_ours(&self, message: &Value) -> bool {
        message.get("method").is_none()
            && message
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.starts_with(&self.prefix))
    }

    fn client_sent(&mut self, message: &Value) {
        let initialized = |m: &Value| {
            m.get("method").and_then(Value::as_str) == Some("notifications/initialized")
        };
        let batch = message.as_array().map(Vec::as_slice).unwrap_or_default();
        if initialized(message) || batch.iter().any(initialized) {
            self.session_ready = true;
        }
    }
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

/// A message on its way to the server, and what to do when it does not arrive.
struct Delivery {
    sending: BoxFuture<'static, tower_mcp_oauth::Result<()>>,
    /// The client's request to answer when this fails.
    request_id: Option<Value>,
    /// With `--protocol auto`: the message's id, told to the era bridge when this fails.
    report: Option<(Value, mpsc::UnboundedSender<Value>)>,
}

impl Delivery {
    async fn run(self, output: mpsc::Sender<Value>) {
        let Err(error) = self.sending.await else {
            return;
        };
        tracing::error!(%error, "a message could not be delivered to the server");
        if let Some((id, report)) = self.report {
            let _ = report.send(id);
        }
        if let Some(id) = self.request_id {
            let _ = output.send(undeliverable(id, &error)).await;
        }
    }
}

/// Both directions of the bridge. A session the server forgot is started again by the
/// transport itself (the client's `initialize` replayed), so a stdio client that initializes
/// once per process keeps working.
struct Relay {
    remote: Remote,
    output: mpsc::Sender<Value>,
    /// Messages on their way, each perhaps refreshing and storing a token.
    deliveries: tokio::task::JoinSet<()>,
    /// `--ignore-tool`.
    ignored: IgnoredTools,
    /// `--protocol auto`: the client's revision carried to a 2026-07-28-only server, and
    /// where failed deliveries are told to it.
    eras: Option<EraBridge>,
    undelivered: mpsc::UnboundedSender<Value>,
}

impl Relay {
    /// Sends `message` in the background; a request that cannot be delivered is answered.
    async fn client_sent(&mut self, message: Value) {
        let (message, refusals) = self.ignored.on_client_message(message);
        for refusal in refusals {
            let _ = self.output.send(refusal).await;
        }
        let Some(message) = message else {
            return;
        };
        let routes = match &mut self.eras {
            Some(eras) => eras.from_client(message),
            None => vec![Route::ToServer(message)],
        };
        self.follow(routes).await;
    }

    /// A message from the server, to the client (translated, filtered); false once the
    /// client's side is gone.
    async fn server_sent(&mut self, message: Value) -> bool {
        let routes = match &mut self.eras {
            Some(eras) => eras.from_server(message),
            None => vec![Route::ToClient(message)],
        };
        self.follow(routes).await
    }

    async fn follow(&mut self, routes: Vec<Route>) -> bool {
        for route in routes {
            match route {
                Route::ToServer(message) => self.send_to_server(message),
                Route::ToClient(mut message) => {
                    self.ignored.on_server_message(&mut message);
                    if self.output.send(message).await.is_err() {
                        return false;
                    }
                }
                _ => tracing::warn!("a route this bridge does not know was dropped"),
            }
        }
        true
    }

    fn send_to_server(&mut self, message: Value) {
        // The bridge's own requests are not the client's to hear about.
        let own = self
            .eras
            .as_ref()
            .is_some_and(|eras| message.get("id").is_some_and(|id| eras.is_own_id(id)));
        let report = self
            .eras
            .as_ref()
            .and(message.get("id").filter(|id| !id.is_null()))
            .map(|id| (id.clone(), self.undelivered.clone()));
        let delivery = Delivery {
            request_id: request_id(&message).filter(|_| !own),
            report,
            sending: self.remote.send(message),
        };
        while self.deliveries.try_join_next().is_some() {}
        self.deliveries.spawn(delivery.run(self.output.clone()));
    }

    /// Lets the messages on their way arrive, for [`STOP_WAIT`] at most: a token being
    /// refreshed is then stored, not lost with the process.
    async fn finish_deliveries(&mut self) {
        let all = async { while self.deliveries.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            tracing::warn!("stopping with messages still on their way");
        }
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
pub(crate) async fn run(
    url: &str,
    stack: McpStack,
    settings: Settings<'_>,
    mut signals: StopSignals,
) -> Result<(), CliError> {
    let remote = Remote::open(url, stack, settings.transport).await?;
    let mut pings = Pings::new(settings.ping_every);
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
    let (undelivered, mut failed_deliveries) = mpsc::unbounded_channel::<Value>();
    let mut relay = Relay {
        remote,
        output,
        deliveries: tokio::task::JoinSet::new(),
        ignored: IgnoredTools::new(settings.ignore_tools),
        eras: settings.bridge_eras.then(EraBridge::new),
        undelivered,
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
                () = pings.due() => Event::Ping,
                Some(id) = failed_deliveries.recv() => Event::Undelivered(id),
                () = signals.received() => Event::Stop,
            }
        };
        match event {
            Event::FromClient(Ok(Some(line))) => {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                match serde_json::from_slice(&line) {
                    Ok(message) => {
                        pings.client_sent(&message);
                        relay.client_sent(message).await;
                    }
                    Err(_) => {
                        tracing::warn!("standard input sent a line that is not JSON");
                        let parse_error = json!({"jsonrpc": "2.0", "id": null,
                            "error": {"code": -32700, "message": "mcp-oauth: not JSON"}});
                        let _ = relay.output.send(parse_error).await;
                    }
                }
            }
            Event::Stop => {
                relay.finish_deliveries().await;
                relay.remote.close().await;
                break Ok(());
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
            Event::Undelivered(id) => {
                let routes = match &mut relay.eras {
                    Some(eras) => eras.undelivered(&id),
                    None => Vec::new(),
                };
                if !relay.follow(routes).await {
                    break Ok(());
                }
            }
            // A 2026-07-28 server has no ping: the bridge's requests keep it busy enough.
            Event::Ping if relay.eras.as_ref().is_some_and(EraBridge::is_bridging) => {}
            Event::Ping => {
                let waiting = pings.in_flight.as_ref().is_some_and(|t| !t.is_finished());
                if waiting {
                    tracing::debug!("the last keep-alive ping is still on its way; none sent");
                } else if let Some(ping) = pings.next() {
                    let sending = relay.remote.send(ping);
                    // An undelivered ping is only logged: the next request says more.
                    pings.in_flight = Some(tokio::spawn(async move {
                        if let Err(error) = sending.await {
                            tracing::debug!(%error, "a keep-alive ping was not delivered");
                        }
                    }));
                }
            }
            Event::FromServer(Some(Ok(message))) if pings.is_answer_to_ours(&message) => {
                tracing::debug!("keep-alive ping answered");
            }
            Event::FromServer(Some(Ok(message))) => {
                if !relay.server_sent(message).await {
                    break Ok(());
                }
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
    // A page the server asks the user to open (a third-party account to link) is shown and
    // opened only when the user agrees; the call is then retried.
    let handler = UrlElicitationClient::new(crate::links::ask_on_terminal(
        crate::setup::browser_available(),
    ));
    let client = match Remote::open(url, stack, transport).await? {
        Remote::Auto(t) => handler.clone().serve(t).await,
        Remote::Streamable(t) => handler.clone().serve(t).await,
        Remote::Sse(t) => handler.clone().serve(t).await,
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
    let result = handler
        .call_tool(&client, request)
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
