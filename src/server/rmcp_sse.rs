//! [`LegacySseServer`]: a legacy HTTP+SSE (2024-11-05) server for rmcp servers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use rmcp::model::{ClientJsonRpcMessage, GetExtensions, ServerJsonRpcMessage};
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use tokio::sync::mpsc;
use tower::Service;

use crate::error::{BoxError, Error, ErrorKind};
use crate::http::{read_limited, ReadError};
use crate::sync::LockExt;

/// The largest POSTed message.
pub const LEGACY_SSE_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Messages that may wait for a client to read its stream; past it, the session ends.
pub const LEGACY_SSE_OUTBOUND_QUEUE: usize = 64;

/// A session: where its messages go, and who opened it (only they may post into it).
struct Session {
    to_server: mpsc::Sender<ClientJsonRpcMessage>,
    owner: Option<Owner>,
}

/// Who a token speaks for: its issuer, client and subject, each as the token says (a token
/// without `sub` is still bound to its client, and another client's token without `sub` is
/// someone else). `None` when the server runs without authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    issuer: Option<String>,
    client_id: Option<String>,
    subject: Option<String>,
}

impl Owner {
    fn of<B>(request: &Request<B>) -> Option<Self> {
        let info = request.extensions().get::<crate::server::AuthInfo>()?;
        Some(Self {
            issuer: info.issuer.clone(),
            client_id: info.client_id.clone(),
            subject: info.subject.clone(),
        })
    }
}

type Sessions = Arc<Mutex<HashMap<String, Session>>>;

/// Ends a session when its event stream goes away (the client disconnected): the map entry and
/// the server task do not outlive it.
struct SessionGuard {
    sessions: Sessions,
    id: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.locked().remove(&self.id);
        self.task.abort();
    }
}

/// The response body: an event stream, or a short fixed answer.
pub type LegacySseBody = UnsyncBoxBody<Bytes, Infallible>;

/// A legacy HTTP+SSE (2024-11-05) server for rmcp servers (feature `rmcp-server`): rmcp serves
/// Streamable HTTP only, so this lets one process serve old clients too, behind
/// [`RequireBearerLayer`](super::RequireBearerLayer) like any tower service.
///
/// GET on the stream path opens a session: the first event is `endpoint`, naming
/// `{message_path}?sessionId=…`; the server's messages follow as `message` events. POSTs to the
/// message path carry the client's messages (answered 202), with the HTTP request parts attached
/// so tool handlers can read `AuthInfo` as over Streamable HTTP.
///
/// Bounds, so no client can grow the server without limit: requests for another `Host` (or from
/// a page of another `Origin`) are refused, as rmcp's Streamable HTTP service does against DNS
/// rebinding (loopback names by default: [`LegacySseServer::allowed_hosts`]); sessions are
/// capped in all and per token owner; and a session whose client stops reading its stream is
/// ended once [`LEGACY_SSE_OUTBOUND_QUEUE`] messages wait for it.
///
/// ```no_run
/// # fn example<H: rmcp::ServerHandler + Clone>(handler: H) {
/// use tower_mcp_oauth::server::LegacySseServer;
///
/// let sse = LegacySseServer::new(move || handler.clone(), "/sse", "/message");
/// let app: axum::Router = axum::Router::new()
///     .route_service("/sse", sse.clone())
///     .route_service("/message", sse);
/// # let _ = app;
/// # }
/// ```
///
/// The legacy HTTP+SSE server.
pub struct LegacySseServer<F> {
    factory: Arc<F>,
    sessions: Sessions,
    stream_path: Arc<str>,
    message_path: Arc<str>,
    /// Host names (any port) requests may name; empty: any.
    allowed_hosts: Arc<[String]>,
    max_sessions: usize,
    max_sessions_per_owner: usize,
}

impl<F> Clone for LegacySseServer<F> {
    fn clone(&self) -> Self {
        Self {
            factory: self.factory.clone(),
            sessions: self.sessions.clone(),
            stream_path: self.stream_path.clone(),
            message_path: self.message_path.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            max_sessions: self.max_sessions,
            max_sessions_per_owner: self.max_sessions_per_owner,
        }
    }
}

impl<F> std::fmt::Debug for LegacySseServer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacySseServer")
            .field("stream_path", &self.stream_path)
            .field("message_path", &self.message_path)
            .finish_non_exhaustive()
    }
}

/// One session's end of the channels, as rmcp's server transport.
struct SessionTransport {
    to_client: mpsc::Sender<ServerJsonRpcMessage>,
    from_client: mpsc::Receiver<ClientJsonRpcMessage>,
}

impl rmcp::transport::Transport<RoleServer> for SessionTransport {
    type Error = Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let sent = match self.to_client.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                // The client stopped reading its stream: end the session instead of holding
                // its answers (and the tasks producing them) without bound.
                tracing::warn!("ending a legacy SSE session whose client does not read its stream");
                self.from_client.close();
                Err(Error::new(
                    ErrorKind::Http,
                    "the SSE client does not read its stream",
                ))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(Error::new(ErrorKind::Http, "the SSE client has gone"))
            }
        };
        std::future::ready(sent)
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        self.from_client.recv().await
    }

    async fn close(&mut self) -> Result<(), Error> {
        self.from_client.close();
        Ok(())
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<LegacySseBody> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}

fn event(name: &str, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + name.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    // JSON from serde has no raw newlines; each line still gets its own data field.
    for line in data.split('\n') {
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

impl<F, H> LegacySseServer<F>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: ServerHandler,
{
    /// Serves a fresh handler from `factory` per session: the stream at `stream_path`, messages
    /// at `message_path`.
    pub fn new(factory: F, stream_path: &str, message_path: &str) -> Self {
        Self {
            factory: Arc::new(factory),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            stream_path: stream_path.into(),
            message_path: message_path.into(),
            allowed_hosts: ["localhost", "127.0.0.1", "::1"].map(String::from).into(),
            max_sessions: 1_000,
            max_sessions_per_owner: 16,
        }
    }

    /// The host names (without port) requests may name in `Host`, and browser pages in
    /// `Origin`; the default is the loopback names, `localhost`, `127.0.0.1` and `::1`. Give
    /// the server's public names when it serves beyond loopback.
    pub fn allowed_hosts<I, T>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.allowed_hosts = hosts
            .into_iter()
            .map(|host| host.into().to_ascii_lowercase())
            .collect();
        self
    }

    /// Accepts any `Host` and `Origin` (behind a proxy that checks them itself).
    pub fn allow_any_host(mut self) -> Self {
        self.allowed_hosts = Arc::from([]);
        self
    }

    /// The most sessions open at once (default 1,000); past it, 503.
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max;
        self
    }

    /// The most sessions one token owner (issuer, client and subject) may hold (default 16);
    /// past it, 429. Without authentication in front, only the total applies.
    pub fn max_sessions_per_owner(mut self, max: usize) -> Self {
        self.max_sessions_per_owner = max;
        self
    }

    /// Whether the request names an allowed host, and comes from no page or one of an
    /// allowed host.
    fn host_allowed<B>(&self, request: &Request<B>) -> bool {
        if self.allowed_hosts.is_empty() {
            return true;
        }
        let allowed = |host: &str| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            self.allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host))
        };
        let named = request
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<http::uri::Authority>().ok())
            .map(|authority| authority.host().to_owned())
            .or_else(|| request.uri().host().map(str::to_owned));
        let origin_ok = match request.headers().get(http::header::ORIGIN) {
            None => true,
            Some(origin) => origin
                .to_str()
                .ok()
                .and_then(|o| o.parse::<http::Uri>().ok())
                .and_then(|uri| uri.host().map(allowed))
                .unwrap_or(false),
        };
        named.as_deref().is_some_and(allowed) && origin_ok
    }

    fn open_session(&self, owner: Option<Owner>) -> Response<LegacySseBody> {
        let id = format!("{:032x}", rand::random::<u128>());
        let (to_server, from_client) = mpsc::channel(64);
        let (to_client, for_client) =
            mpsc::channel::<ServerJsonRpcMessage>(LEGACY_SSE_OUTBOUND_QUEUE);
        {
            let mut sessions = self.sessions.locked();
            if sessions.len() >= self.max_sessions {
                return plain(StatusCode::SERVICE_UNAVAILABLE, "too many sessions");
            }
            if owner.is_some()
                && sessions.values().filter(|s| s.owner == owner).count()
                    >= self.max_sessions_per_owner
            {
                return plain(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many sessions for this token",
                );
            }
            sessions.insert(id.clone(), Session { to_server, owner });
        }
        let handler = (self.factory)();
        let sessions = self.sessions.clone();
        let session_id = id.clone();
        let task = tokio::spawn(async move {
            let transport = SessionTransport {
                to_client,
                from_client,
            };
            match handler.serve(transport).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(error) => {
                    tracing::debug!(%error, "legacy SSE session ended before initialization")
                }
            }
            sessions.locked().remove(&session_id);
        });
        let endpoint = event("endpoint", &format!("{}?sessionId={id}", self.message_path));
        let first = futures_util::stream::once(std::future::ready(Ok::<_, Infallible>(
            Frame::data(endpoint),
        )));
        let guard = SessionGuard {
            sessions: self.sessions.clone(),
            id: id.clone(),
            task,
        };
        let messages = futures_util::stream::unfold(
            (for_client, guard),
            |(mut for_client, guard)| async move {
                let message = for_client.recv().await?;
                let json = serde_json::to_string(&message).ok()?;
                Some((
                    Ok(Frame::data(event("message", &json))),
                    (for_client, guard),
                ))
            },
        );
        let stream = futures_util::StreamExt::chain(first, messages);
        let mut response = Response::new(StreamBody::new(Box::pin(stream)).boxed_unsync());
        response.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        response
            .headers_mut()
            .insert(CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
        response
    }
}

async fn deliver<B>(sessions: Sessions, request: Request<B>) -> Response<LegacySseBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let session = request
        .uri()
        .query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "sessionId"))
        .map(|(_, v)| v.into_owned());
    let found = session.and_then(|id| {
        let sessions = sessions.locked();
        sessions
            .get(&id)
            .map(|s| (s.to_server.clone(), s.owner.clone()))
    });
    let Some((to_server, owner)) = found else {
        return plain(StatusCode::NOT_FOUND, "unknown session");
    };
    // A session id seen in a log must not let someone else speak in it.
    if owner != Owner::of(&request) {
        return plain(StatusCode::FORBIDDEN, "the session belongs to someone else");
    }
    let (parts, body) = request.into_parts();
    let bytes = match read_limited(body, LEGACY_SSE_MAX_MESSAGE_BYTES).await {
        Ok(bytes) => bytes,
        Err(ReadError::TooLarge) => {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "message too large")
        }
        Err(ReadError::Body(_)) => return plain(StatusCode::BAD_REQUEST, "unreadable body"),
    };
    let Ok(mut message) = serde_json::from_slice::<ClientJsonRpcMessage>(&bytes) else {
        return plain(StatusCode::BAD_REQUEST, "not a JSON-RPC message");
    };
    // As over Streamable HTTP: handlers find the HTTP request (and AuthInfo) in the extensions.
    match &mut message {
        ClientJsonRpcMessage::Request(request) => {
            request.request.extensions_mut().insert(parts);
        }
        ClientJsonRpcMessage::Notification(notification) => {
            notification.notification.extensions_mut().insert(parts);
        }
        _ => {}
    }
    match to_server.send(message).await {
        Ok(()) => plain(StatusCode::ACCEPTED, ""),
        Err(_) => plain(StatusCode::NOT_FOUND, "session closed"),
    }
}

impl<F, H, B> Service<Request<B>> for LegacySseServer<F>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: ServerHandler,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<LegacySseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<LegacySseBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !self.host_allowed(&request) {
            let refused = plain(StatusCode::FORBIDDEN, "this host or origin is not allowed");
            return Box::pin(async move { Ok(refused) });
        }
        let path = request.uri().path();
        if path == &*self.stream_path && request.method() == Method::GET {
            let response = self.open_session(Owner::of(&request));
            return Box::pin(async move { Ok(response) });
        }
        if path == &*self.message_path && request.method() == Method::POST {
            let sessions = self.sessions.clone();
            return Box::pin(async move { Ok(deliver(sessions, request).await) });
        }
        let known = path == &*self.stream_path || path == &*self.message_path;
        let response = if known {
            plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        } else {
            plain(StatusCode::NOT_FOUND, "not found")
        };
        Box::pin(async move { Ok(response) })
    }
}
