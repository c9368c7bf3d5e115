//! Client ID Metadata Documents: a `client_id` that is an https URL names a JSON document the
//! server fetches. The fetch is an SSRF risk, so addresses are checked where the connection is
//! made (a resolver that refuses private, loopback and link-local addresses, so a DNS answer
//! cannot swap in an internal address after the check), bodies are capped, calls time out and
//! answers are cached.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::ACCEPT;
use http::{Request, StatusCode};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use url::Url;

use super::register::{check_redirect_uri, RedirectRules};
use super::store::{ClientAuthMethod, RegisteredClient};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{HttpClient, RequestBody};
use crate::metadata::ClientMetadata;
use crate::sync::LockExt;

/// Largest document accepted.
const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// Most documents cached at once.
const MAX_CACHED: usize = 1024;
/// How long a failed fetch is remembered, so a flood of one bad URL costs one fetch.
const FAILURE_TTL: Duration = Duration::from_secs(30);
/// Most fetches in flight at once.
const MAX_CONCURRENT_FETCHES: usize = 8;

#[derive(Debug, Clone)]
pub(super) struct CimdConfig {
    pub(super) allow_private: bool,
    pub(super) cache_ttl: Duration,
    pub(super) timeout: Duration,
    pub(super) redirect_rules: RedirectRules,
    /// Trusted for fetches on top of the webpki roots.
    pub(super) extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Default for CimdConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            cache_ttl: Duration::from_secs(300),
            timeout: Duration::from_secs(5),
            redirect_rules: RedirectRules::default(),
            extra_roots: Vec::new(),
        }
    }
}

pub(super) struct CimdFetcher {
    config: CimdConfig,
    http: HttpClient,
    /// By URL: the client, or the reason it was refused, until the instant.
    cache: Mutex<HashMap<String, (Cached, Instant)>>,
    in_flight: tokio::sync::Semaphore,
}

#[derive(Clone)]
enum Cached {
    Client(Box<RegisteredClient>),
    Refused(Error),
}

impl CimdFetcher {
    pub(super) fn new(config: CimdConfig) -> Self {
        let mut connector = HttpConnector::new_with_resolver(GuardedResolver {
            allow_private: config.allow_private,
        });
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(config.timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::http::tls_config(&config.extra_roots))
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(connector);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, RequestBody>(connector);
        let http = HttpClient::from_service(client)
            .timeout(config.timeout)
            .max_body_bytes(MAX_DOCUMENT_BYTES);
        Self {
            config,
            http,
            cache: Mutex::new(HashMap::new()),
            in_flight: tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES),
        }
    }

    /// Whether `client_id` is meant as a metadata document URL rather than a registered id.
    pub(super) fn is_metadata_url(&self, client_id: &str) -> bool {
        client_id.starts_with("https://")
            || (self.config.allow_private && client_id.starts_with("http://"))
    }

    /// The client `url` describes, from the cache or fetched.
    pub(super) async fn fetch(&self, url: &str) -> Result<RegisteredClient> {
        if let Some(cached) = self.cached(url) {
            return match cached {
                Cached::Client(client) => Ok(*client),
                Cached::Refused(error) => Err(error),
            };
        }
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Err(Error::new(
                ErrorKind::Http,
                "too many client metadata documents are being fetched; try again",
            ));
        };
        let outcome = self.fetch_uncached(url).await;
        let (entry, ttl) = match &outcome {
            Ok(client) => (
                Cached::Client(Box::new(client.clone())),
                self.config.cache_ttl,
            ),
            Err(error) => (Cached::Refused(error.clone()), FAILURE_TTL),
        };
        self.remember(url, entry, ttl);
        outcome
    }

    async fn fetch_uncached(&self, url: &str) -> Result<RegisteredClient> {
        let parsed = self.check_url(url)?;
        let request = Request::get(parsed.as_str())
            .header(ACCEPT, "application/json")
            .body(RequestBody::default())
            .map_err(|_| invalid("the client metadata URL is not a valid request target"))?;
        let response = self.http.send(request).await?;
        if response.status() != StatusCode::OK {
            return Err(invalid(format!(
                "the client metadata document answered {}",
                response.status()
            )));
        }
        let metadata: ClientMetadata = serde_json::from_slice(response.body())
            .map_err(|_| invalid("the client metadata document is not client metadata JSON"))?;
        client_from_document(url, metadata, self.config.redirect_rules)
    }

    fn remember(&self, url: &str, entry: Cached, ttl: Duration) {
        let mut cache = self.cache.locked();
        make_room(&mut cache, MAX_CACHED, |(_, until)| *until);
        cache.insert(url.to_owned(), (entry, Instant::now() + ttl));
    }

    fn cached(&self, url: &str) -> Option<Cached> {
        let cache = self.cache.locked();
        cache
            .get(url)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(entry, _)| entry.clone())
    }

    fn check_url(&self, url: &str) -> Result<Url> {
        let parsed = Url::parse(url).map_err(|_| invalid("the client_id is not a URL"))?;
        let scheme_ok = match parsed.scheme() {
            "https" => true,
            "http" => self.config.allow_private && crate::http::is_loopback_host(&parsed),
            _ => false,
        };
        if !scheme_ok {
            return Err(invalid("a client metadata URL must be https"));
        }
        if parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
            || parsed.path() == "/"
            || parsed.path().split('/').any(|s| s == "." || s == "..")
        {
            return Err(invalid(
                "a client metadata URL needs a path, and no fragment, credentials or dot segments",
            ));
        }
        // IP literals skip the resolver, so they are checked here.
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            if !self.config.allow_private && !is_public(ip) {
                return Err(Error::new(
                    ErrorKind::InsecureUrl,
                    "the client metadata URL points at a private, loopback or link-local address",
                ));
            }
        }
        Ok(parsed)
    }
}

fn invalid(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Registration, message)
}

/// Checks a fetched document: it must name itself, list its redirect URIs, and be a public
/// client (a document cannot hold a secret).
fn client_from_document(
    url: &str,
    mut metadata: ClientMetadata,
    rules: RedirectRules,
) -> Result<RegisteredClient> {
    if metadata.client_id.as_deref() != Some(url) {
        return Err(invalid(
            "the client metadata document's client_id differs from its URL",
        ));
    }
    match metadata.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(_) => {
            return Err(invalid(
                "a client metadata document client must use token_endpoint_auth_method none",
            ))
        }
    }
    if metadata.redirect_uris.is_empty() {
        return Err(invalid(
            "the client metadata document lists no redirect_uris",
        ));
    }
    for uri in &metadata.redirect_uris {
        check_redirect_uri(uri, rules)?;
    }
    metadata.token_endpoint_auth_method = Some("none".into());
    if metadata.grant_types.is_empty() {
        metadata.grant_types = vec!["authorization_code".into()];
    }
    metadata
        .grant_types
        .retain(|g| g == "authorization_code" || g == "refresh_token");
    Ok(RegisteredClient {
        client_id: url.to_owned(),
        secret_hash: None,
        auth_method: ClientAuthMethod::None,
        metadata,
        issued_at: crate::clock::now_secs(),
        pre_registered: false,
    })
}

/// Whether an address is globally routable: not loopback, private, link-local, shared, or
/// otherwise special.
pub(super) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && v4.octets()[2] == 0))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            // Only global unicast (2000::/3); everything else (IPv4-compatible and -translated
            // forms, NAT64, unique-local, link- and site-local, multicast) is refused.
            if segments[0] & 0xe000 != 0x2000 {
                return false;
            }
            match segments[0] {
                // 6to4 carries an IPv4 address: it must be public itself.
                0x2002 => {
                    let [a, b] = segments[1].to_be_bytes();
                    let [c, d] = segments[2].to_be_bytes();
                    is_public(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)))
                }
                // Teredo, benchmarking, ORCHID and documentation prefixes.
                0x2001 => {
                    !(segments[1] == 0
                        || segments[1] == 0x0002
                        || (segments[1] & 0xfff0) == 0x0010
                        || (segments[1] & 0xfff0) == 0x0020
                        || segments[1] == 0x0db8)
                }
                _ => true,
            }
        }
    }
}

/// Resolves names and refuses any answer with a non-public address.
#[derive(Clone)]
struct GuardedResolver {
    allow_private: bool,
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Self::Response>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if !allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the host resolves to a private, loopback or link-local address",
                ));
            }
            Ok(addrs.into_iter())
        })
    }
}

/// Makes room for one more entry in `map`, capped at `max`: expired entries go first, then,
/// under a flood, the one closest to expiring.
pub(crate) fn make_room<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut std::collections::HashMap<K, V>,
    max: usize,
    expiry: impl Fn(&V) -> std::time::Instant,
) {
    if map.len() < max {
        return;
    }
    let now = std::time::Instant::now();
    map.retain(|_, value| expiry(value) > now);
    if map.len() >= max {
        if let Some(oldest) = map
            .iter()
            .min_by_key(|(_, value)| expiry(value))
            .map(|(key, _)| key.clone())
        {
            map.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "::",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "2606:4700::1111",
            "8.8.8.8",
            "2002:5db8:d822::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn documents_must_name_themselves_and_be_public_clients() {
        let url = "https://app.example/client.json";
        let doc = |client_id: &str, method: Option<&str>| ClientMetadata {
            client_id: Some(client_id.into()),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            token_endpoint_auth_method: method.map(Into::into),
            ..Default::default()
        };
        assert!(client_from_document(url, doc(url, None), RedirectRules::default()).is_ok());
        assert!(client_from_document(
            url,
            doc("https://evil.example/c.json", None),
            RedirectRules::default()
        )
        .is_err());
        assert!(client_from_document(
            url,
            doc(url, Some("client_secret_basic")),
            RedirectRules::default()
        )
        .is_err());
    }

    #[test]
    fn make_room_drops_expired_entries_then_the_closest_to_expiring() {
        let now = std::time::Instant::now();
        let mut map: std::collections::HashMap<&str, Instant> = std::collections::HashMap::new();
        map.insert("expired", now - std::time::Duration::from_secs(1));
        map.insert("soon", now + std::time::Duration::from_secs(10));
        map.insert("later", now + std::time::Duration::from_secs(20));
        make_room(&mut map, 3, |at| *at);
        assert_eq!(map.len(), 2);
        assert!(!map.contains_key("expired"));
        make_room(&mut map, 2, |at| *at);
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), ["later"]);
        make_room(&mut map, 5, |at| *at);
        assert_eq!(map.len(), 1, "room already: nothing dropped");
    }
}
