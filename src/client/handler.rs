//! The interactive step of authorization: [`AuthorizationHandler`], loopback or headless.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex};
use url::Url;

use crate::error::{Error, ErrorKind, Result};
use crate::http::{redact_url, HttpClient};
use crate::BoxFuture;

/// The interactive step of authorization: sending the user to the authorization URL and catching
/// the redirect.
///
/// [`LoopbackHandler`] runs a one-shot callback server on 127.0.0.1 and opens the system browser
/// (printing the URL when it cannot). [`HeadlessHandler`] GETs the authorization URL itself and
/// reads the code from the `Location` of the redirect, for tests and machine flows where the
/// authorization server approves without a user.
///
/// Carries the user through the authorization URL and returns the full redirect URL the
/// authorization server sent them to.
pub trait AuthorizationHandler: Send + Sync + 'static {
    /// The redirect URI to register and send in the authorization request.
    fn redirect_uri(&self) -> Url;

    /// Sends the user to `authorization_url` and waits for the redirect back.
    fn authorize<'a>(&'a self, authorization_url: &'a Url) -> BoxFuture<'a, Result<Url>>;
}

/// How long a sign-in waits for its callback port while another process holds it.
pub const PORT_WAIT: Duration = Duration::from_secs(60);

/// The pause between attempts to bind a busy callback port.
const PORT_RETRY_DELAY: Duration = Duration::from_millis(250);

/// The pause before accepting again after an accept error.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Default time a user has to finish authorizing in the browser.
pub const DEFAULT_LOOPBACK_TIMEOUT: Duration = Duration::from_secs(300);

/// How long one connection to the callback server may take, headers to answer.
pub const DEFAULT_CALLBACK_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A loopback callback server (RFC 8252 §7.3) that opens the system browser.
///
/// With `bind`, the port is held from then until the first sign-in ends, then released; a
/// later sign-in (a step-up, a new authorization) binds the same port again, so the
/// registered redirect URI stays valid. With `on_port`, it is bound only during sign-ins. It keeps accepting through transient errors (too many open files), and a
/// connection that sends nothing useful is dropped after
/// [`DEFAULT_CALLBACK_CONNECTION_TIMEOUT`].
#[derive(Debug)]
pub struct LoopbackHandler {
    listener: Mutex<Option<TcpListener>>,
    address: SocketAddr,
    redirect_uri: Url,
    timeout: Duration,
    connection_timeout: Duration,
    open_browser: bool,
}

impl LoopbackHandler {
    /// Binds a callback server on 127.0.0.1 with a port the system picks; the redirect URI is
    /// `http://127.0.0.1:{port}/callback`.
    ///
    /// # Errors
    /// [`ErrorKind::Handler`] when the port cannot be bound.
    pub async fn bind() -> Result<Self> {
        Self::bind_to(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Binds the callback server to `addr`, which must be a loopback address.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a non-loopback address, [`ErrorKind::Handler`] when it cannot
    /// be bound.
    pub async fn bind_to(addr: SocketAddr) -> Result<Self> {
        if !addr.ip().is_loopback() {
            return Err(Error::new(
                ErrorKind::Config,
                "the callback server must listen on a loopback address",
            ));
        }
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::new(
                ErrorKind::Handler,
                format!("cannot listen on {addr} for the OAuth callback"),
            )
            .with_source(e)
        })?;
        let local = listener.local_addr().map_err(|e| {
            Error::new(
                ErrorKind::Handler,
                "cannot read the callback server's address",
            )
            .with_source(e)
        })?;
        let redirect_uri = Url::parse(&format!("http://{local}/callback")).map_err(|e| {
            Error::new(ErrorKind::Handler, "cannot form the redirect URI").with_source(e)
        })?;
        Ok(Self {
            listener: Mutex::new(Some(listener)),
            address: local,
            redirect_uri,
            timeout: DEFAULT_LOOPBACK_TIMEOUT,
            connection_timeout: DEFAULT_CALLBACK_CONNECTION_TIMEOUT,
            open_browser: true,
        })
    }

    /// A callback server on `127.0.0.1:{port}` that listens only while a sign-in waits for
    /// its redirect; the redirect URI is `http://127.0.0.1:{port}/callback` from the start.
    ///
    /// For a fixed port shared by several processes (a redirect URI registered ahead of
    /// time): none holds it longer than its own sign-in, and one that finds it taken waits
    /// for it (up to [`PORT_WAIT`]) instead of moving to a port the registration does not
    /// name.
    pub fn on_port(port: std::num::NonZeroU16) -> Self {
        let address = SocketAddr::from(([127, 0, 0, 1], port.get()));
        Self {
            listener: Mutex::new(None),
            address,
            redirect_uri: Url::parse(&format!("http://{address}/callback"))
                .expect("a loopback address forms a URL"),
            timeout: DEFAULT_LOOPBACK_TIMEOUT,
            connection_timeout: DEFAULT_CALLBACK_CONNECTION_TIMEOUT,
            open_browser: true,
        }
    }

    /// Names the callback `http://{host}:{port}{path}` in the redirect URI instead of
    /// `http://127.0.0.1:{port}/callback`, for a client registered that way (mcp-remote's
    /// `http://localhost:{port}/oauth/callback`, say). The host must name this machine
    /// (`localhost` or `127.0.0.1`: the server listens on 127.0.0.1).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for another host, or a path that does not start with `/` or
    /// holds a query or fragment.
    pub fn redirect_as(mut self, host: &str, path: &str) -> Result<Self> {
        let refuse = |why: &str| Error::new(ErrorKind::Config, format!("callback redirect: {why}"));
        if !matches!(host, "localhost" | "127.0.0.1") {
            return Err(refuse("the host must be localhost or 127.0.0.1"));
        }
        if !path.starts_with('/') || path.contains(['?', '#']) {
            return Err(refuse(
                "the path must start with / and hold no query or fragment",
            ));
        }
        let port = self.address.port();
        self.redirect_uri =
            Url::parse(&format!("http://{host}:{port}{path}")).map_err(|_| refuse("not a URL"))?;
        if self.redirect_uri.path() != path {
            return Err(refuse("the path is not in its normal form"));
        }
        Ok(self)
    }

    /// The port for this sign-in: the one held since `bind`, or the same port bound again,
    /// waiting while another process's sign-in holds it.
    async fn listen(&self) -> Result<TcpListener> {
        if let Some(listener) = self.listener.lock().await.take() {
            return Ok(listener);
        }
        let deadline = tokio::time::Instant::now() + PORT_WAIT;
        let mut said = false;
        loop {
            match TcpListener::bind(self.address).await {
                Ok(listener) => return Ok(listener),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
                {
                    if !said {
                        tracing::info!(address = %self.address, "the callback port is in use (another sign-in?); waiting for it");
                        said = true;
                    }
                    tokio::time::sleep(PORT_RETRY_DELAY).await;
                }
                Err(e) => {
                    return Err(Error::new(
                        ErrorKind::Handler,
                        format!(
                            "cannot listen on {} for the OAuth callback (the redirect URI names this port)",
                            self.address
                        ),
                    )
                    .with_source(e))
                }
            }
        }
    }

    /// How long one connection to the callback server may take (default 10 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long to wait for the user.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether to open the system browser (default) or only print the URL.
    pub fn open_browser(mut self, open_browser: bool) -> Self {
        self.open_browser = open_browser;
        self
    }

    /// With a `localhost` redirect, the same port on `[::1]` too: browsers often try it first,
    /// and whatever else listened there would get the redirect. `None` where this machine has
    /// no IPv6 loopback.
    async fn listen_ipv6(&self) -> Result<Option<TcpListener>> {
        if self.redirect_uri.host_str() != Some("localhost") {
            return Ok(None);
        }
        let address = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, self.address.port()));
        match TcpListener::bind(address).await {
            Ok(listener) => Ok(Some(listener)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(Error::new(
                ErrorKind::Handler,
                format!(
                    "another program listens on {address}, where a browser may send the redirect to localhost; \
                     free the port or use a redirect to 127.0.0.1"
                ),
            )
            .with_source(e)),
            Err(_) => Ok(None),
        }
    }

    async fn wait_for_callback(
        &self,
        listener: &TcpListener,
        ipv6: Option<&TcpListener>,
        expected_state: Option<String>,
    ) -> Result<Url> {
        let accept_ipv6 = async move |listener: Option<&TcpListener>| match listener {
            Some(listener) => listener.accept().await,
            None => std::future::pending().await,
        };
        let (sender, mut receiver) = mpsc::channel::<Url>(1);
        let expected_path = self.redirect_uri.path().to_owned();
        let base = self.redirect_uri.clone();
        let mut connections = tokio::task::JoinSet::new();
        let connection_timeout = self.connection_timeout;
        loop {
            tokio::select! {
                Some(url) = receiver.recv() => return Ok(url),
                accepted = async {
                    tokio::select! {
                        accepted = listener.accept() => accepted,
                        accepted = accept_ipv6(ipv6) => accepted,
                    }
                } => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(error) => {
                            // Too many open files, a connection reset before it was accepted:
                            // the next accept may well work, and the user is still coming.
                            tracing::warn!(%error, "the callback server could not accept a connection; retrying");
                            tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                            continue;
                        }
                    };
                    let sender = sender.clone();
                    let expected_path = expected_path.clone();
                    let expected_state = expected_state.clone();
                    let base = base.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                            let sender = sender.clone();
                            let expected = Expected { path: expected_path.clone(), state: expected_state.clone() };
                            let base = base.clone();
                            async move {
                                Ok::<_, Infallible>(callback_response(request, &expected, &base, &sender).await)
                            }
                        });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let serving = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(connection_timeout)
                            .keep_alive(false)
                            // A client may shut its side once the request is written.
                            .half_close(true)
                            .serve_connection(io, service);
                        let _ = tokio::time::timeout(connection_timeout, serving).await;
                    });
                }
            }
        }
    }
}

struct Expected {
    path: String,
    state: Option<String>,
}

async fn callback_response(
    request: Request<hyper::body::Incoming>,
    expected: &Expected,
    base: &Url,
    sender: &mpsc::Sender<Url>,
) -> Response<Full<Bytes>> {
    let page = |status: StatusCode, text: &'static str| {
        Response::builder()
            .status(status)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(format!(
                "<!doctype html><meta charset=utf-8><title>Authorization</title><p>{text}</p>"
            ))))
            .unwrap_or_default()
    };
    if request.method() != http::Method::GET || request.uri().path() != expected.path {
        return page(StatusCode::NOT_FOUND, "Not found.");
    }
    let mut url = base.clone();
    url.set_query(request.uri().query());
    // Another page or process hitting the callback must not end the wait.
    if let Some(state) = &expected.state {
        let matches = url.query_pairs().any(|(k, v)| {
            k == "state"
                && crate::secret::Secret::new(v.into_owned())
                    == crate::secret::Secret::new(state.as_str())
        });
        if !matches {
            return page(
                StatusCode::BAD_REQUEST,
                "This response does not belong to the sign-in in progress.",
            );
        }
    }
    let denied = url.query_pairs().any(|(k, _)| k == "error");
    let _ = sender.try_send(url);
    if denied {
        page(
            StatusCode::OK,
            "Authorization was not granted. You can close this window.",
        )
    } else {
        page(
            StatusCode::OK,
            "Authorization complete. You can close this window and return to the application.",
        )
    }
}

impl AuthorizationHandler for LoopbackHandler {
    fn redirect_uri(&self) -> Url {
        self.redirect_uri.clone()
    }

    fn authorize<'a>(&'a self, authorization_url: &'a Url) -> BoxFuture<'a, Result<Url>> {
        Box::pin(async move {
            let listener = self.listen().await?;
            let ipv6 = self.listen_ipv6().await?;
            let opened = self.open_browser && webbrowser::open(authorization_url.as_str()).is_ok();
            if !opened {
                // The URL carries only public values (client id, PKCE challenge, state).
                // Standard error: standard output may be a protocol channel (an MCP stdio bridge).
                eprintln!("Open this URL in your browser to authorize:\n\n  {authorization_url}\n");
            }
            tracing::info!(browser = opened, "waiting for the authorization redirect");
            let expected_state = authorization_url
                .query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned());
            // The listener is dropped when this returns, whatever the outcome: the port is
            // released until the next sign-in.
            tokio::time::timeout(
                self.timeout,
                self.wait_for_callback(&listener, ipv6.as_ref(), expected_state),
            )
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "no authorization redirect arrived within {:?}",
                        self.timeout
                    ),
                )
            })?
        })
    }
}

/// Follows the authorization URL without a browser: GETs it, expects a redirect to the redirect
/// URI, and returns that `Location`. For authorization servers that approve without a user
/// (tests, machine flows).
#[derive(Debug, Clone)]
pub struct HeadlessHandler {
    http: HttpClient,
    redirect_uri: Url,
}

impl HeadlessHandler {
    /// A handler whose redirect URI is `redirect_uri`; nothing listens there.
    pub fn new(redirect_uri: Url) -> Self {
        Self::with_http(HttpClient::new(), redirect_uri)
    }

    /// The same, over a given HTTP client.
    pub fn with_http(http: HttpClient, redirect_uri: Url) -> Self {
        Self { http, redirect_uri }
    }
}

impl AuthorizationHandler for HeadlessHandler {
    fn redirect_uri(&self) -> Url {
        self.redirect_uri.clone()
    }

    fn authorize<'a>(&'a self, authorization_url: &'a Url) -> BoxFuture<'a, Result<Url>> {
        Box::pin(async move {
            let response = self.http.get(authorization_url, &[]).await?;
            let status = response.status();
            if !status.is_redirection() {
                return Err(Error::new(
                    ErrorKind::Handler,
                    format!(
                        "the authorization endpoint {} answered {status} instead of redirecting; it needs a user (use the loopback handler)",
                        redact_url(authorization_url)
                    ),
                ));
            }
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidResponse,
                        "the authorization redirect has no Location",
                    )
                })?;
            let target = authorization_url.join(location).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidResponse,
                    "the authorization redirect's Location is not a URL",
                )
                .with_source(e)
            })?;
            if target.origin() != self.redirect_uri.origin()
                || target.path() != self.redirect_uri.path()
            {
                return Err(Error::new(
                    ErrorKind::UnexpectedRedirect,
                    format!(
                        "the authorization endpoint redirected to {}, not to the redirect URI {}",
                        redact_url(&target),
                        redact_url(&self.redirect_uri)
                    ),
                ));
            }
            Ok(target)
        })
    }
}
