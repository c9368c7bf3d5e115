//! The HTTP plumbing every OAuth request of this crate goes through.
//!
//! [`HttpClient`] is a cloneable handle around any tower HTTP service (by default a hyper-util
//! client with rustls). It bounds every exchange by a timeout, caps response bodies, and never
//! follows a redirect: a 3xx comes back to the caller, which decides (OAuth endpoints treat one as
//! an error, the headless authorization handler reads its `Location`).
//!
//! ```
//! use std::time::Duration;
//! use tower_mcp_oauth::http::HttpClient;
//!
//! let client = HttpClient::new()
//!     .timeout(Duration::from_secs(10))
//!     .max_body_bytes(256 * 1024);
//! # let _ = client;
//! ```

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use http::{Request, Response};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};
use url::Url;

use crate::error::{BoxError, Error, ErrorKind, Result};

#[cfg(feature = "client")]
mod cookies;
#[cfg(any(feature = "server", feature = "authorization-server"))]
pub(crate) mod cors;
mod hyper_client;
mod limited;
mod marked;
mod plain_http;
mod proxy;
#[cfg(feature = "client")]
mod timeouts;

pub(crate) use limited::{read_limited, ReadError};

#[cfg(feature = "client")]
pub use cookies::{CookieJar, CookieJarLayer};
pub use plain_http::PlainHttp;
#[cfg(feature = "client")]
pub use timeouts::{IdleTimeoutBody, ResponseTimedOut, ResponseTimeouts, ResponseTimeoutsLayer};

pub use hyper_client::{
    hyper_client, hyper_client_with_roots, HyperClient, HyperClientBuilder, POOL_IDLE_TIMEOUT,
};

/// The request body every OAuth call sends.
pub type RequestBody = Full<Bytes>;

type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;
type Transport = BoxCloneSyncService<Request<RequestBody>, Response<ResponseBody>, BoxError>;

/// Default time an OAuth exchange may take, body included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on a response body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// A cloneable HTTP client for OAuth calls: timeout, body limit, no redirects.
#[derive(Clone)]
pub struct HttpClient {
    transport: Transport,
    timeout: Duration,
    max_body_bytes: usize,
    plain_http: std::sync::Arc<PlainHttp>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("plain_http", &self.plain_http)
            .finish_non_exhaustive()
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A [`HyperClient`] speaking HTTP/1.1 and HTTP/2, with rustls (ring) and the webpki root
    /// certificates for https. Must be called within a Tokio runtime when used.
    pub fn new() -> Self {
        Self::from_service(hyper_client())
    }

    /// Like [`new`](Self::new), also trusting the PEM certificates in `roots_pem` (a private or
    /// test CA).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `roots_pem` holds no valid certificate.
    pub fn with_roots(roots_pem: &[u8]) -> Result<Self> {
        Ok(Self::from_service(hyper_client_with_roots(roots_pem)?))
    }

    /// Wraps any tower HTTP service, so callers can stack their own layers (proxies, tracing,
    /// test doubles) beneath the OAuth machinery.
    pub fn from_service<S, B>(service: S) -> Self
    where
        S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let transport = service
            .map_response(|response: Response<B>| {
                response.map(|body| body.map_err(Into::into).boxed_unsync())
            })
            .map_err(Into::into);
        Self {
            transport: BoxCloneSyncService::new(transport),
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            plain_http: std::sync::Arc::default(),
        }
    }

    /// Where the OAuth flow may use plain http (the server's URL, discovery, registration, the
    /// token endpoint): loopback only unless set.
    pub fn plain_http(mut self, policy: PlainHttp) -> Self {
        self.plain_http = std::sync::Arc::new(policy);
        self
    }

    /// Requires https for `url`, or http where [`plain_http`](Self::plain_http) allows it.
    ///
    /// # Errors
    /// [`ErrorKind::InsecureUrl`] naming `what` the URL is for.
    pub fn check_url(&self, url: &Url, what: &str) -> Result<()> {
        self.plain_http.check(url, what)
    }

    /// Sets the time one exchange may take, from sending the request to the end of the body.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the largest response body accepted.
    pub fn max_body_bytes(mut self, max_body_bytes: usize) -> Self {
        self.max_body_bytes = max_body_bytes;
        self
    }

    /// Sends a request and reads the whole body. Redirects are returned, not followed.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`], [`ErrorKind::BodyTooLarge`] or [`ErrorKind::Http`].
    pub async fn send(&self, request: Request<RequestBody>) -> Result<Response<Bytes>> {
        let target = describe_target(request.uri());
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("request to {target} timed out after {:?}", self.timeout),
            )),
        }
    }

    async fn exchange(&self, request: Request<RequestBody>) -> Result<Response<Bytes>> {
        let target = describe_target(request.uri());
        let response = self
            .transport
            .clone()
            .oneshot(request)
            .await
            .map_err(|e: BoxError| {
                Error::new(ErrorKind::Http, format!("request to {target} failed"))
                    .with_boxed_source(e)
            })?;
        let (parts, body) = response.into_parts();
        let collected = read_limited(body, self.max_body_bytes)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => Error::new(
                    ErrorKind::BodyTooLarge,
                    format!(
                        "response from {target} is larger than {} bytes",
                        self.max_body_bytes
                    ),
                ),
                ReadError::Body(e) => Error::new(
                    ErrorKind::Http,
                    format!("reading the response from {target} failed"),
                )
                .with_boxed_source(e),
            })?;
        Ok(Response::from_parts(parts, collected))
    }

    /// GETs `url` asking for JSON, with extra headers. The response is returned whatever its
    /// status; see [`parse_json`].
    pub(crate) async fn get(
        &self,
        url: &Url,
        headers: &[(&'static str, HeaderValue)],
    ) -> Result<Response<Bytes>> {
        let mut builder = Request::get(url.as_str()).header(ACCEPT, "application/json");
        for (name, value) in headers {
            builder = builder.header(*name, value.clone());
        }
        self.send(finish_request(builder, RequestBody::default(), url)?)
            .await
    }

    /// POSTs a JSON document to `url`.
    pub(crate) async fn post_json(
        &self,
        url: &Url,
        body: &impl serde::Serialize,
    ) -> Result<Response<Bytes>> {
        let body = serde_json::to_vec(body).map_err(|e| {
            Error::new(ErrorKind::Config, "cannot serialize a JSON request").with_source(e)
        })?;
        let builder = Request::post(url.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json");
        self.send(finish_request(builder, RequestBody::from(body), url)?)
            .await
    }
}

fn finish_request(
    builder: http::request::Builder,
    body: RequestBody,
    url: &Url,
) -> Result<Request<RequestBody>> {
    builder.body(body).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot build a request to {}", redact_url(url)),
        )
        .with_source(e)
    })
}

/// The client as a tower service, so layers (such as `OAuthLayer`) stack on it.
impl Service<Request<RequestBody>> for HttpClient {
    type Response = Response<Bytes>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Bytes>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        // Each call drives its own clone of the transport to readiness.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let client = self.clone();
        Box::pin(async move { client.send(request).await })
    }
}

/// TLS on ring, trusting the webpki roots and `extra_roots`.
pub(crate) fn tls_config(
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // Certificates were parsed already; one that rustls cannot use is skipped, as with any store.
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth()
}

/// The certificates of a PEM document.
///
/// # Errors
/// [`ErrorKind::Config`] when it holds none, or a malformed one.
pub(crate) fn parse_certificates(
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certificates = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::new(ErrorKind::Config, "the root certificates are not valid PEM"))?;
    if certificates.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            "no certificate in the root certificates PEM",
        ));
    }
    Ok(certificates)
}

/// `scheme://authority/path` of a request target, without the query (which may hold secrets).
fn describe_target(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        uri.path()
    )
}

/// The media type of a response (`type/subtype`, lowercased, without parameters).
pub(crate) fn media_type<B>(response: &Response<B>) -> Option<String> {
    media_type_in(response.headers())
}

/// The media type a message's headers declare (`type/subtype`, lowercased, no parameters).
pub(crate) fn media_type_in(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

/// Whether the response's media type is exactly `mime`.
#[cfg_attr(not(feature = "transport"), allow(dead_code))]
pub(crate) fn has_media_type<B>(response: &Response<B>, mime: &str) -> bool {
    has_media_type_in(response.headers(), mime)
}

/// Whether `headers` declare exactly the media type `mime`.
pub(crate) fn has_media_type_in(headers: &http::HeaderMap, mime: &str) -> bool {
    media_type_in(headers).is_some_and(|essence| essence.eq_ignore_ascii_case(mime))
}

/// Whether the response's content type is JSON (`application/json` or `*/*+json`).
pub(crate) fn is_json(response: &Response<Bytes>) -> bool {
    media_type(response)
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"))
}

/// Whether `status` says the server may answer later (5xx, 429 Too Many Requests).
pub(crate) fn passing_trouble(status: http::StatusCode) -> bool {
    status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS
}

/// Parses a successful JSON response as `T`, saying what `what` is when it is not one.
///
/// # Errors
/// [`ErrorKind::UnexpectedRedirect`] for a 3xx, [`ErrorKind::InvalidResponse`] for any other
/// non-2xx status, a non-JSON content type, or JSON that does not fit `T`.
pub(crate) fn parse_json<T: DeserializeOwned>(response: &Response<Bytes>, what: &str) -> Result<T> {
    let status = response.status();
    if status.is_redirection() {
        return Err(Error::new(
            ErrorKind::UnexpectedRedirect,
            format!("{what}: the server answered with a redirect ({status}), which OAuth calls never follow"),
        ));
    }
    if !status.is_success() {
        let error = Error::new(
            ErrorKind::InvalidResponse,
            format!("{what}: the server answered {status}"),
        );
        return Err(if passing_trouble(status) {
            error.transient()
        } else {
            error
        });
    }
    if !is_json(response) {
        return Err(Error::new(
            ErrorKind::InvalidResponse,
            format!("{what}: the response is not application/json"),
        ));
    }
    serde_json::from_slice(response.body()).map_err(|e| {
        Error::new(
            ErrorKind::InvalidResponse,
            format!("{what}: the response is not valid JSON of the expected shape"),
        )
        .with_source(JsonShapeError(e.classify(), e.line(), e.column()))
    })
}

/// A serde_json error without its message, which can quote parts of the input (and so a secret).
#[derive(Debug)]
struct JsonShapeError(serde_json::error::Category, usize, usize);

impl std::fmt::Display for JsonShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.0 {
            serde_json::error::Category::Io => "i/o error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "missing or mistyped field",
            serde_json::error::Category::Eof => "unexpected end of input",
        };
        write!(f, "{kind} at line {} column {}", self.1, self.2)
    }
}

impl std::error::Error for JsonShapeError {}

/// Whether `host` names this machine: `localhost`, 127.0.0.0/8 or `::1`.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        // Only `localhost` itself: a `*.localhost` name is loopback by convention, not by
        // every resolver, and a proxy or a hosts file can send it elsewhere.
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Requires https, or http on a loopback host.
///
/// # Errors
/// [`ErrorKind::InsecureUrl`] naming `what` the URL is for.
pub fn ensure_secure_url(url: &Url, what: &str) -> Result<()> {
    PlainHttp::loopback_only().check(url, what)
}

/// RFC 6749 §2.3.1 client authentication: `Basic` over the form-urlencoded id and secret,
/// marked sensitive. `None` when it does not fit in a header.
#[cfg(any(feature = "client", feature = "authorization-server"))]
pub(crate) fn basic_authorization(client_id: &str, secret: &str) -> Option<HeaderValue> {
    use base64::Engine;
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encode(client_id), encode(secret));
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// A URL with its query, fragment and password removed, safe to put in a message or a log
/// line (a query may carry an API key).
pub fn redact_url(url: &Url) -> String {
    let mut clean = url.clone();
    clean.set_query(None);
    clean.set_fragment(None);
    let _ = clean.set_password(None);
    clean.to_string()
}

/// Parses a URL from a string given by a server, saying what it is for when it does not parse.
pub(crate) fn parse_url(value: &str, what: &str) -> Result<Url> {
    Url::parse(value).map_err(|e| {
        Error::new(
            ErrorKind::InvalidResponse,
            format!("{what} is not a valid URL"),
        )
        .with_source(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn only_localhost_and_loopback_addresses_may_use_http() {
        for ok in [
            "https://auth.example.com/",
            "http://localhost:8080/x",
            "http://LOCALHOST/",
            "http://127.0.0.1/",
            "http://127.255.0.9:1/",
            "http://[::1]:9/",
        ] {
            assert!(ensure_secure_url(&url(ok), "url").is_ok(), "{ok}");
        }
        for refused in [
            "http://auth.example.com/",
            "http://evil.localhost/",
            "http://localhost.evil.com/",
            "http://128.0.0.1/",
            "http://[::2]/",
            "ftp://127.0.0.1/",
            "file:///etc/passwd",
        ] {
            let error = ensure_secure_url(&url(refused), "url").unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InsecureUrl, "{refused}");
        }
    }

    proptest! {
        #[test]
        fn the_url_rule_holds_for_any_host(
            scheme in prop_oneof![Just("http"), Just("https"), Just("ws"), Just("ftp")],
            host in prop_oneof![
                Just("localhost".to_owned()),
                "[a-z]{1,8}\\.localhost",
                "[a-z]{1,8}\\.[a-z]{2,4}",
                (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>())
                    .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
                any::<u128>().prop_map(|v| format!("[{}]", std::net::Ipv6Addr::from(v))),
            ],
            port in proptest::option::of(any::<u16>()),
            query in "[a-z=&]{0,12}",
        ) {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let Ok(parsed) = Url::parse(&format!("{scheme}://{host}{port}/p?{query}")) else {
                return Ok(());
            };
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.octets()[0] == 127,
                Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
                None => false,
            };
            let allowed = scheme == "https" || (scheme == "http" && loopback);
            prop_assert_eq!(ensure_secure_url(&parsed, "url").is_ok(), allowed);
            if let Err(error) = ensure_secure_url(&parsed, "url") {
                let leaked = !query.is_empty() && error.to_string().contains(&format!("?{query}"));
                prop_assert!(!leaked);
            }
        }

        #[test]
        fn a_redacted_url_keeps_no_query_fragment_or_password(
            secret in "[a-z0-9]{6,16}",
        ) {
            let parsed = url(&format!("https://user:{secret}@h.example/p?code={secret}#{secret}"));
            prop_assert!(!redact_url(&parsed).contains(&secret));
        }
    }
}
