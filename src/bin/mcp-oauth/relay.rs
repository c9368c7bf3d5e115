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

use super::setup::{shown, CliError, McpStack};
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
    Setback(Setback),
}

/// What came back from a message sent in the background.
enum Setback {
    /// `message` met a session the server had forgotten (a restart, an idle timeout).
    Expired { message: Value, session: u64 },
    /// The bridge's own `initialize` could not be sent.
    ResumeFailed(tower_mcp_oauth::Error),
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
    request_id: Option<Value>,
    /// The message and the session it went in, when an expired session may send it again.
    retry: Option<(Value, u64)>,
}

impl Delivery {
    async fn run(self, output: mpsc::Sender<Value>, setbacks: mpsc::UnboundedSender<Setback>) {
        let Err(error) = self.sending.await else {
            return;
        };
        if error.kind() == ErrorKind::SessionExpired {
            if let Some((message, session)) = self.retry {
                let _ = setbacks.send(Setback::Expired { message, session });
                return;
            }
        }
        tracing::error!(%error, "a message could not be delivered to the server");
        if let Some(id) = self.request_id {
            let _ = output.send(undeliverable(id, &error)).await;
        }
    }
}

/// Starting a session again on the client's behalf when the server forgot it: a stdio client
/// initializes once per process, so without this the bridge would be of no use until the
/// client restarts.
#[derive(Default)]
struct Resumption {
    /// The client's `initialize`, replayed under the bridge's own id.
    initialize: Option<Value>,
    /// Counts sessions: a message refused by the current one goes again, once, in the next.
    session: u64,
    /// While the replayed `initialize` awaits its answer: its id, and the messages held back.
    pending: Option<(Value, Vec<Value>)>,
}

/// Both directions of the bridge, and what it needs to keep a session going.
struct Relay {
    remote: Remote,
    output: mpsc::Sender<Value>,
    setbacks: mpsc::UnboundedSender<Setback>,
    resumption: Resumption,
}

impl Relay {
    /// Sends `message` in the background; `retry`: it may go again in a new session.
    fn send(&self, message: Value, retry: bool) {
        let retry = (retry && self.resumption.initialize.is_some())
            .then(|| (message.clone(), self.resumption.session));
        let delivery = Delivery {
            request_id: request_id(&message),
            sending: self.remote.send(message),
            retry,
        };
        tokio::spawn(delivery.run(self.output.clone(), self.setbacks.clone()));
    }

    fn client_sent(&mut self, message: Value) {
        if message.get("method").and_then(Value::as_str) == Some("initialize") {
            self.resumption.initialize = Some(message.clone());
        }
        match &mut self.resumption.pending {
            Some((_, held)) => held.push(message),
            None => self.send(message, true),
        }
    }

    /// Forwards `message` to the client, unless it answers the bridge's own `initialize`.
    async fn server_sent(&mut self, message: Value) -> Result<(), ()> {
        let answers_resumption = matches!(
            &self.resumption.pending,
            Some((id, _)) if message.get("method").is_none() && message.get("id") == Some(id)
        );
        if !answers_resumption {
            return self.output.send(message).await.map_err(|_| ());
        }
        let Some((_, held)) = self.resumption.pending.take() else {
            return Ok(());
        };
        if message.get("result").is_none() {
            let error = tower_mcp_oauth::Error::new(
                ErrorKind::SessionExpired,
                "the server forgot the session and refused a new one",
            );
            fail_held(self.output.clone(), held, error).await;
            return Ok(());
        }
        self.resumption.session += 1;
        tracing::info!("the server had forgotten the session; a new one is started");
        let initialized = self.remote.send(json!({
            "jsonrpc": "2.0", "method": "notifications/initialized"
        }));
        let held: Vec<Delivery> = held
            .into_iter()
            .map(|message| Delivery {
                request_id: request_id(&message),
                sending: self.remote.send(message),
                retry: None,
            })
            .collect();
        let (output, setbacks) = (self.output.clone(), self.setbacks.clone());
        // The held messages go once the server has heard `initialized`.
        tokio::spawn(async move {
            if let Err(error) = initialized.await {
                tracing::warn!(%error, "the new session's initialized notice was not delivered");
            }
            for delivery in held {
                tokio::spawn(delivery.run(output.clone(), setbacks.clone()));
            }
        });
        Ok(())
    }

    fn on_setback(&mut self, setback: Setback) {
        match setback {
            Setback::Expired { message, session } if session < self.resumption.session => {
                // A new session started meanwhile.
                self.send(message, false);
            }
            Setback::Expired { message, .. } => self.resume(Some(message)),
            Setback::ResumeFailed(error) => {
                if let Some((_, held)) = self.resumption.pending.take() {
                    tokio::spawn(fail_held(self.output.clone(), held, error));
                }
            }
        }
    }

    /// Starts a new session with the client's `initialize`, holding `message` (and what comes
    /// next) until the server has answered.
    fn resume(&mut self, message: Option<Value>) {
        if let Some((_, held)) = &mut self.resumption.pending {
            held.extend(message);
            return;
        }
        // Without the client's `initialize` there is nothing to replay; no message comes here
        // then, since only those sent after it may go again.
        let Some(mut initialize) = self.resumption.initialize.clone() else {
            return;
        };
        let id = json!(format!("mcp-oauth/session-{}", self.resumption.session + 1));
        initialize["id"] = id.clone();
        tracing::info!("the server no longer knows the session; initializing again");
        self.resumption.pending = Some((id, message.into_iter().collect()));
        let sending = self.remote.send(initialize);
        let setbacks = self.setbacks.clone();
        tokio::spawn(async move {
            if let Err(error) = sending.await {
                let _ = setbacks.send(Setback::ResumeFailed(error));
            }
        });
    }
}

/// Answers the requests held for a session that could not be started.
async fn fail_held(output: mpsc::Sender<Value>, held: Vec<Value>, error: tower_mcp_oauth::Error) {
    tracing::error!(%error, "a new session could not be started");
    for id in held.iter().filter_map(request_id) {
        let _ = output.send(undeliverable(id, &error)).await;
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

/// `fd` as something the runtime polls: a pipe (made by `pipe`) or a Unix socket (by
/// `socket`); `None` for anything else (a terminal, a file), left to the blocking reader and
/// writer.
#[cfg(unix)]
fn polled<T>(
    fd: std::os::fd::BorrowedFd<'_>,
    pipe: impl FnOnce(std::os::fd::OwnedFd) -> std::io::Result<T>,
    socket: impl FnOnce(tokio::net::UnixStream) -> T,
) -> Option<T> {
    use std::os::unix::fs::FileTypeExt;
    let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
    let kind = file.metadata().ok()?.file_type();
    if kind.is_fifo() {
        return pipe(file.into()).ok();
    }
    if kind.is_socket() {
        let stream = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(file));
        stream.set_nonblocking(true).ok()?;
        return tokio::net::UnixStream::from_std(stream).ok().map(socket);
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
    let (setbacks, mut setbacks_back) = mpsc::unbounded_channel();
    let mut relay = Relay {
        remote,
        output,
        setbacks,
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
                Some(setback) = setbacks_back.recv() => Event::Setback(setback),
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
            Event::Setback(setback) => relay.on_setback(setback),
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
