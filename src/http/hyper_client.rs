//! [`HyperClient`]: the crate's streaming hyper client.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{capture_connection, Connected, HttpConnector};
use tower::Service;

use super::marked::{Mark, Marked};
use super::proxy::{Proxies, ProxyConnector};
use super::RequestBody;
use crate::error::{BoxError, Result};

/// Connections idle longer than this are not reused: below the 5 s idle timeout of Node.js,
/// uvicorn and Apache, so a request never races the server closing the connection.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// How many times one request is sent at most: each retry follows a reused connection that the
/// server had closed, and an idle pool can hold a few of those.
const MAX_ATTEMPTS: usize = 4;

type Inner = hyper_util::client::legacy::Client<
    CountUses<hyper_rustls::HttpsConnector<ProxyConnector>>,
    RequestBody,
>;

/// The crate's streaming hyper client, made safe against servers that close idle connections.
///
/// A streaming hyper-util client (bodies are not buffered): HTTP/1.1 and HTTP/2, rustls on ring
/// with the webpki roots for https, and `TCP_NODELAY` (without which small request writes wait
/// out the peer's delayed ACK, ~40 ms a round trip on Linux). Cheap to clone: clones share one
/// connection pool.
///
/// A server closes a kept-alive connection after some idle time (Node.js after 5 s plus a
/// second of grace, uvicorn and Apache after 5 s). A request sent on that connection at the
/// moment it closes is lost: the bytes reach a socket that is going away, and the client gets
/// "connection closed before message completed" or a reset. hyper-util resends only requests it
/// had not started writing; this one it had. So this client does two things:
///
/// - it drops connections idle for [`POOL_IDLE_TIMEOUT`] (4 s, as Node's own fetch does), below
///   the common servers' timeouts, so the race is rare to begin with;
/// - when a request fails on a reused connection before any byte of an answer came back, it
///   sends the request again (the pool then hands out another connection or opens one), a few
///   times at most. A server that closed a connection without answering almost always did so
///   because it was idle; the rare server that died mid-request on a reused connection may see
///   the request twice, the price every HTTP client that retries pays (RFC 9110 §9.2.2).
#[derive(Clone, Debug)]
pub struct HyperClient {
    inner: Inner,
    proxies: Option<Proxies>,
}

impl HyperClient {
    /// A client with more trust roots, or going through proxies.
    pub fn builder() -> HyperClientBuilder {
        HyperClientBuilder::default()
    }

    pub(crate) fn over(tls: rustls::ClientConfig) -> Self {
        Self::over_proxies(tls, None, Connecting::default())
    }

    fn over_proxies(
        tls: rustls::ClientConfig,
        proxies: Option<Proxies>,
        connecting: Connecting,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(connecting.timeout);
        if connecting.ipv4_only {
            // Bound to an IPv4 address only, hyper-util tries only a name's IPv4 addresses.
            http.set_local_address(Some(std::net::Ipv4Addr::UNSPECIFIED.into()));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(ProxyConnector::new(http, proxies.clone()));
        let inner =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .build(CountUses(connector));
        Self { inner, proxies }
    }

    /// `request`, with the proxy's credentials where it goes to a forwarding proxy (the
    /// connector cannot add a header: it sees only the destination).
    fn through_proxy(&self, mut request: Request<RequestBody>) -> Request<RequestBody> {
        let auth = self
            .proxies
            .as_ref()
            .and_then(|proxies| proxies.forwarding_auth(request.uri()));
        if let Some(auth) = auth {
            request
                .headers_mut()
                .entry(http::header::PROXY_AUTHORIZATION)
                .or_insert(auth);
        }
        request
    }

    /// Sends `request`; the response body streams.
    ///
    /// # Errors
    /// hyper-util's error when no answer came (after the retries the module docs describe).
    pub async fn request(
        &self,
        request: Request<RequestBody>,
    ) -> std::result::Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        send_with_retries(self.inner.clone(), self.through_proxy(request)).await
    }
}

impl Service<Request<RequestBody>> for HyperClient {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        // hyper-util's client is always ready: connections are checked out per request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        Box::pin(send_with_retries(
            self.inner.clone(),
            self.through_proxy(request),
        ))
    }
}

async fn send_with_retries(
    client: Inner,
    mut request: Request<RequestBody>,
) -> std::result::Result<Response<Incoming>, hyper_util::client::legacy::Error> {
    let mut attempt = 1;
    loop {
        let replay = (attempt < MAX_ATTEMPTS).then(|| copy_of(&request));
        let captured = capture_connection(&mut request);
        let result = client.request(request).await;
        let reused = captured
            .connection_metadata()
            .as_ref()
            .is_some_and(was_used_before);
        match (result, replay) {
            (Err(error), Some(replay)) if reused && closed_before_answering(&error) => {
                tracing::debug!(
                    attempt,
                    "the server closed a kept-alive connection before answering; sending again"
                );
                request = replay;
                attempt += 1;
            }
            (result, _) => return result,
        }
    }
}

fn copy_of(request: &Request<RequestBody>) -> Request<RequestBody> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    *copy.extensions_mut() = request.extensions().clone();
    copy
}

/// Counts this use of the connection; whether it had served a request before.
fn was_used_before(connected: &Connected) -> bool {
    let mut extensions = http::Extensions::new();
    connected.get_extras(&mut extensions);
    extensions
        .get::<Uses>()
        .is_some_and(|uses| uses.0.fetch_add(1, Ordering::Relaxed) > 0)
}

/// Whether the request failed with the connection closing before a response head arrived.
fn closed_before_answering(error: &hyper_util::client::legacy::Error) -> bool {
    if error.is_connect() {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(hyper_error) = current.downcast_ref::<hyper::Error>() {
            if hyper_error.is_incomplete_message() {
                return true;
            }
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = current.source();
    }
    false
}

/// The number of requests a connection has carried, shared by every request on it.
#[derive(Clone, Default)]
struct Uses(Arc<AtomicU64>);

/// A connector whose connections count their uses, so a failure can tell a reused connection
/// (which the server may have closed while idle) from a new one.
#[derive(Clone, Debug)]
struct CountUses<C>(C);

impl<C> Service<Uri> for CountUses<C>
where
    C: Service<Uri>,
    C::Response: Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = Counted<C::Response>;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let io = connecting.await.map_err(Into::into)?;
            Ok(Counted {
                io,
                mark: Uses::default(),
            })
        })
    }
}

impl Mark for Uses {
    fn mark(&self, connected: Connected) -> Connected {
        connected.extra(self.clone())
    }
}

/// A connection with its use count.
type Counted<T> = Marked<T, Uses>;

/// How a [`HyperClient`] is made: the trust roots besides the webpki ones, and the proxies.
///
/// ```no_run
/// # fn example() -> tower_mcp_oauth::Result<()> {
/// use tower_mcp_oauth::http::HyperClient;
///
/// let client = HyperClient::builder()
///     .root_certificates(&std::fs::read("corporate-ca.pem").unwrap())?
///     .proxies_from_env()
///     .build();
/// # let _ = client; Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct HyperClientBuilder {
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    proxies: Option<Proxies>,
    connecting: Connecting,
}

/// How connections are opened.
#[derive(Clone, Copy, Debug, Default)]
struct Connecting {
    timeout: Option<Duration>,
    ipv4_only: bool,
}

impl HyperClientBuilder {
    /// Also trusts the PEM certificates in `roots_pem` (a private CA, or a test one).
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when `roots_pem` holds no valid
    /// certificate.
    pub fn root_certificates(mut self, roots_pem: &[u8]) -> Result<Self> {
        self.roots.extend(super::parse_certificates(roots_pem)?);
        Ok(self)
    }

    /// Goes through the proxies the environment names, as curl reads them: `HTTPS_PROXY`
    /// for https destinations (a CONNECT tunnel, so TLS stays end to end), `HTTP_PROXY` for
    /// http ones (forwarded), `ALL_PROXY` for both, lower-case names too, and `NO_PROXY`
    /// (host names, domain suffixes, IP addresses and networks, `*`) for the destinations
    /// that go directly. A proxy's `user:password@` is sent as `Proxy-Authorization` on the
    /// CONNECT, or with each forwarded request. Loopback destinations always go directly.
    /// Only `http://` proxies are supported.
    pub fn proxies_from_env(mut self) -> Self {
        self.proxies = Proxies::from_env();
        self
    }

    /// Goes through the `http://` proxy at `proxy_url` (with `user:password@` for
    /// `Proxy-Authorization`) for every destination but loopback ones and those `no_proxy`
    /// names (`NO_PROXY`'s syntax: `example.com, .internal, 10.0.0.0/8`).
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when `proxy_url` is not an `http://`
    /// URL.
    pub fn proxy(mut self, proxy_url: &str, no_proxy: &str) -> Result<Self> {
        self.proxies = Some(Proxies::new(proxy_url, no_proxy)?);
        Ok(self)
    }

    /// Bounds opening a TCP connection (each address of a name in turn) [default: the
    /// operating system's, often over a minute].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connecting.timeout = Some(timeout);
        self
    }

    /// Connects over IPv4 only: for networks whose IPv6 routes drop packets instead of
    /// refusing, where each connection would wait out a timeout first.
    pub fn ipv4_only(mut self) -> Self {
        self.connecting.ipv4_only = true;
        self
    }

    /// Builds the client. Must be used within a Tokio runtime.
    pub fn build(self) -> HyperClient {
        HyperClient::over_proxies(
            super::tls_config(&self.roots),
            self.proxies,
            self.connecting,
        )
    }
}

/// Builds a [`HyperClient`] trusting the webpki roots. Must be used within a Tokio runtime.
pub fn hyper_client() -> HyperClient {
    HyperClient::over(super::tls_config(&[]))
}

/// A [`HyperClient`] that trusts the PEM certificates in `roots_pem` as well as the webpki
/// roots: for a private CA, or a test one.
///
/// # Errors
/// [`ErrorKind::Config`](crate::ErrorKind::Config) when `roots_pem` holds no valid certificate.
pub fn hyper_client_with_roots(roots_pem: &[u8]) -> Result<HyperClient> {
    Ok(HyperClient::over(super::tls_config(
        &super::parse_certificates(roots_pem)?,
    )))
}
