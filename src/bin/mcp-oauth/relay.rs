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

use super::setup::{CliError, McpStack};
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
                    .map_err(|e| CliError::new(format!("cannot reach {url}: {e}")))?,
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
    FromClient(std::io::Result<Option<String>>),
    FromServer(Option<tower_mcp_oauth::Result<Value>>),
}

/// The JSON-RPC error answering request `id` that could not be delivered.
fn undeliverable(id: Value, error: &tower_mcp_oauth::Error) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": -32000, "message": format!("mcp-oauth: the server could not be reached: {error}")},
    })
}

/// Standard input, read as the runtime's other sockets are when it is a pipe (as MCP clients
/// start the bridge): tokio's own `stdin` reads on a blocking thread, a hand-off per read that
/// costs a message tens of microseconds.
fn standard_input() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let pipe = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .and_then(tokio::net::unix::pipe::Receiver::from_owned_fd);
        if let Ok(pipe) = pipe {
            return Box::new(pipe);
        }
    }
    Box::new(tokio::io::stdin())
}

/// Relays until standard input closes (exit 0) or the server connection ends for good.
pub(crate) async fn run(url: &str, stack: McpStack, transport: Transport) -> Result<(), CliError> {
    let mut remote = Remote::open(url, stack, transport).await?;
    let (output, mut outgoing) = mpsc::channel::<Value>(OUTPUT_QUEUE);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(message) = outgoing.recv().await {
            let mut line = message.to_string();
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(standard_input()).lines();
    tracing::info!(%url, "relaying MCP between standard input and the server");
    let outcome = loop {
        // The receive future borrows the transport; it is dropped (safely: it is a channel
        // read) before anything is sent.
        let event = {
            let receive = remote.receive();
            tokio::pin!(receive);
            tokio::select! {
                line = lines.next_line() => Event::FromClient(line),
                message = &mut receive => Event::FromServer(message),
            }
        };
        match event {
            Event::FromClient(Ok(Some(line))) => {
                if line.trim().is_empty() {
                    continue;
                }
                let message: Value = match serde_json::from_str(&line) {
                    Ok(message) => message,
                    Err(_) => {
                        tracing::warn!("standard input sent a line that is not JSON");
                        let parse_error = json!({"jsonrpc": "2.0", "id": null,
                            "error": {"code": -32700, "message": "mcp-oauth: not JSON"}});
                        let _ = output.send(parse_error).await;
                        continue;
                    }
                };
                // A request gets an answer whatever happens to its POST.
                let request_id = message
                    .get("method")
                    .and(message.get("id"))
                    .filter(|id| !id.is_null())
                    .cloned();
                let sending = remote.send(message);
                let output = output.clone();
                tokio::spawn(async move {
                    if let Err(error) = sending.await {
                        tracing::error!(%error, "a message could not be delivered to the server");
                        if let Some(id) = request_id {
                            let _ = output.send(undeliverable(id, &error)).await;
                        }
                    }
                });
            }
            Event::FromClient(Ok(None)) => {
                tracing::info!("standard input closed; closing the server connection");
                remote.close().await;
                break Ok(());
            }
            Event::FromClient(Err(error)) => {
                tracing::info!(%error, "standard input failed; closing the server connection");
                remote.close().await;
                break Ok(());
            }
            Event::FromServer(Some(Ok(message))) => {
                if output.send(message).await.is_err() {
                    break Ok(());
                }
            }
            Event::FromServer(Some(Err(error))) => {
                tracing::warn!(%error, "the server connection reported an error");
            }
            Event::FromServer(None) => {
                break Err(CliError::new(format!("the connection to {url} ended")));
            }
        }
    };
    drop(output);
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
    .map_err(|e| CliError::new(format!("cannot start an MCP session with {url}: {e}")))?;
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
