//! [`CookieJarLayer`]: cookies a server sets, kept in memory and sent back to the origin that
//! set them. Load balancers pin a client to one node with such a cookie (AWS ALB, Azure); a
//! session held on that node is lost without it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::{BoxFuture, FutureExt};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response, Uri};
use tower::{Layer, Service};

use crate::sync::LockExt;

/// Most cookies kept per origin; a server setting more replaces its oldest.
const MAX_COOKIES_PER_ORIGIN: usize = 50;
/// Most origins kept; a new one replaces the one used longest ago.
const MAX_ORIGINS: usize = 16;
/// Largest cookie kept, name and value together (RFC 6265 §6.1's minimum a client supports).
const MAX_COOKIE_BYTES: usize = 4096;

/// Keeps the cookies responses set and sends them with later requests to the same origin
/// (scheme, host and port: `Domain` and `Path` are ignored, so nothing travels to another
/// host). In memory only, for the life of the layer; a `Cookie` header already on a request
/// wins. Clones share one jar.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_mcp_oauth::http::{hyper_client, CookieJarLayer};
///
/// # async fn run() {
/// let http = ServiceBuilder::new().layer(CookieJarLayer::new()).service(hyper_client());
/// # let _ = http; }
/// ```
#[derive(Clone, Debug, Default)]
pub struct CookieJarLayer {
    jar: Arc<Mutex<Jar>>,
}

impl CookieJarLayer {
    /// An empty jar.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for CookieJarLayer {
    type Service = CookieJar<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CookieJar {
            inner,
            jar: self.jar.clone(),
        }
    }
}

/// The service [`CookieJarLayer`] makes.
#[derive(Clone, Debug)]
pub struct CookieJar<S> {
    inner: S,
    jar: Arc<Mutex<Jar>>,
}

impl<S, B, R> Service<Request<B>> for CookieJar<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let origin = origin_of(request.uri());
        if let Some(origin) = &origin {
            if !request.headers().contains_key(COOKIE) {
                let header = self.jar.locked().header_for(origin, Instant::now());
                if let Some(header) = header {
                    request.headers_mut().insert(COOKIE, header);
                }
            }
        }
        let jar = self.jar.clone();
        self.inner
            .call(request)
            .map(move |result| {
                if let (Ok(response), Some(origin)) = (&result, origin) {
                    let set = response.headers().get_all(SET_COOKIE);
                    if set.iter().next().is_some() {
                        let now = (Instant::now(), SystemTime::now());
                        let mut jar = jar.locked();
                        for value in set {
                            if let Some(cookie) = parse_set_cookie(value.as_bytes(), now) {
                                jar.store(&origin, cookie);
                            }
                        }
                    }
                }
                result
            })
            .boxed()
    }
}

fn origin_of(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    let port = authority.port_u16().or(match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    Some(format!(
        "{scheme}://{}:{port}",
        authority.host().to_ascii_lowercase()
    ))
}

#[derive(Debug, Default)]
struct Jar {
    origins: HashMap<String, OriginCookies>,
    uses: u64,
}

#[derive(Debug, Default)]
struct OriginCookies {
    cookies: Vec<Cookie>,
    last_use: u64,
}

/// One cookie as a `Set-Cookie` header gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cookie {
    name: String,
    value: String,
    /// `None`: kept for the session.
    expires: Option<Instant>,
}

impl Jar {
    fn header_for(&mut self, origin: &str, now: Instant) -> Option<HeaderValue> {
        self.uses += 1;
        let uses = self.uses;
        let entry = self.origins.get_mut(origin)?;
        entry.last_use = uses;
        entry
            .cookies
            .retain(|cookie| cookie.expires.is_none_or(|at| at > now));
        if entry.cookies.is_empty() {
            return None;
        }
        let line = entry
            .cookies
            .iter()
            .map(|cookie| format!("{}={}", cookie.name, cookie.value))
            .collect::<Vec<_>>()
            .join("; ");
        HeaderValue::from_str(&line).ok()
    }

    fn store(&mut self, origin: &str, cookie: Cookie) {
        self.uses += 1;
        let uses = self.uses;
        if !self.origins.contains_key(origin) && self.origins.len() >= MAX_ORIGINS {
            let oldest = self
                .origins
                .iter()
                .min_by_key(|(_, entry)| entry.last_use)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.origins.remove(&oldest);
            }
        }
        let entry = self.origins.entry(origin.to_owned()).or_default();
        entry.last_use = uses;
        entry.cookies.retain(|kept| kept.name != cookie.name);
        // Set with a past expiry: a deletion.
        if cookie.expires.is_some_and(|at| at <= Instant::now()) {
            return;
        }
        if entry.cookies.len() >= MAX_COOKIES_PER_ORIGIN {
            entry.cookies.remove(0);
        }
        entry.cookies.push(cookie);
    }
}

/// Reads a `Set-Cookie` value (RFC 6265 §5.2): `name=value` then attributes, of which only
/// `Max-Age` (preferred) and `Expires` count. `None` for what no browser would keep either.
fn parse_set_cookie(header: &[u8], (now, wall): (Instant, SystemTime)) -> Option<Cookie> {
    let text = std::str::from_utf8(header).ok()?;
    let mut parts = text.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let (name, value) = (name.trim(), value.trim());
    let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
    let octet = |c: char| c.is_ascii_graphic() && !",;\\".contains(c);
    if name.is_empty()
        || !name.chars().all(token)
        || !value.chars().all(octet)
        || name.len() + value.len() > MAX_COOKIE_BYTES
    {
        return None;
    }
    let mut max_age = None;
    let mut expires = None;
    for attribute in parts {
        let (key, argument) = attribute.split_once('=').unwrap_or((attribute, ""));
        let (key, argument) = (key.trim(), argument.trim());
        if key.eq_ignore_ascii_case("max-age") {
            // A malformed Max-Age is ignored (§5.2.2); zero or less expires at once.
            if let Ok(seconds) = argument.parse::<i64>() {
                max_age = Some(seconds);
            }
        } else if key.eq_ignore_ascii_case("expires") {
            if let Ok(at) = httpdate::parse_http_date(argument) {
                expires = Some(at);
            }
        }
    }
    let expires = match (max_age, expires) {
        (Some(seconds), _) if seconds <= 0 => Some(now),
        (Some(seconds), _) => now.checked_add(Duration::from_secs(seconds.unsigned_abs())),
        (None, Some(at)) => Some(match at.duration_since(wall) {
            Ok(ahead) => now.checked_add(ahead).unwrap_or(now),
            Err(_) => now,
        }),
        (None, None) => None,
    };
    Some(Cookie {
        name: name.to_owned(),
        value: value.to_owned(),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at_now() -> (Instant, SystemTime) {
        (Instant::now(), SystemTime::now())
    }

    #[test]
    fn reads_name_value_and_lifetime() {
        let now = at_now();
        let cookie = parse_set_cookie(b"AWSALB=abc123; Path=/; Max-Age=60; Secure", now).unwrap();
        assert_eq!(
            (cookie.name.as_str(), cookie.value.as_str()),
            ("AWSALB", "abc123")
        );
        assert!(cookie.expires.unwrap() > now.0 + Duration::from_secs(59));
        let session = parse_set_cookie(b"s=\"quoted\"; HttpOnly", now).unwrap();
        assert_eq!(
            (session.value.as_str(), session.expires),
            ("\"quoted\"", None)
        );
        let past = parse_set_cookie(b"s=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT", now).unwrap();
        assert_eq!(past.expires, Some(now.0));
        // Max-Age wins over Expires.
        let both = parse_set_cookie(
            b"s=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=5",
            now,
        )
        .unwrap();
        assert!(both.expires.unwrap() > now.0);
        for refused in [
            &b"novalue"[..],
            b"=v",
            b"a b=c",
            b"n=v v",
            b"n=\xff",
            b"n=a,b",
        ] {
            assert_eq!(parse_set_cookie(refused, now), None);
        }
    }

    #[test]
    fn the_jar_replaces_deletes_and_stays_per_origin() {
        let mut jar = Jar::default();
        let now = at_now();
        let a = "https://mcp.example:443";
        jar.store(a, parse_set_cookie(b"x=1", now).unwrap());
        jar.store(a, parse_set_cookie(b"y=2", now).unwrap());
        jar.store(a, parse_set_cookie(b"x=3", now).unwrap());
        assert_eq!(jar.header_for(a, Instant::now()).unwrap(), "y=2; x=3");
        assert_eq!(
            jar.header_for("https://other.example:443", Instant::now()),
            None
        );
        jar.store(a, parse_set_cookie(b"y=; Max-Age=0", now).unwrap());
        assert_eq!(jar.header_for(a, Instant::now()).unwrap(), "x=3");
        let short = Cookie {
            expires: Some(Instant::now() + Duration::from_millis(1)),
            ..parse_set_cookie(b"x=4", now).unwrap()
        };
        jar.store(a, short);
        assert_eq!(
            jar.header_for(a, Instant::now() + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn origins_are_scheme_host_and_port() {
        let origin = |uri: &str| origin_of(&uri.parse().unwrap());
        assert_eq!(
            origin("https://MCP.example/mcp").unwrap(),
            "https://mcp.example:443"
        );
        assert_eq!(
            origin("http://mcp.example:8080/sse?x").unwrap(),
            "http://mcp.example:8080"
        );
        assert_ne!(
            origin("http://mcp.example/"),
            origin("https://mcp.example/")
        );
        assert_eq!(origin("/relative"), None);
    }

    proptest! {
        #[test]
        fn any_header_is_kept_whole_or_refused(header in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(cookie) = parse_set_cookie(&header, at_now()) {
                let line = format!("{}={}", cookie.name, cookie.value);
                prop_assert!(HeaderValue::from_str(&line).is_ok());
                prop_assert!(!cookie.name.is_empty());
                prop_assert!(!line.contains(';'));
            }
        }

        #[test]
        fn the_jar_stays_bounded(names in proptest::collection::vec("[a-z]{1,3}", 0..200), origins in 1usize..40) {
            let mut jar = Jar::default();
            let now = at_now();
            for (i, name) in names.iter().enumerate() {
                let origin = format!("https://h{}.example:443", i % origins);
                jar.store(&origin, parse_set_cookie(format!("{name}=v").as_bytes(), now).unwrap());
            }
            prop_assert!(jar.origins.len() <= MAX_ORIGINS);
            for entry in jar.origins.values() {
                prop_assert!(entry.cookies.len() <= MAX_COOKIES_PER_ORIGIN);
                let mut seen: Vec<_> = entry.cookies.iter().map(|c| &c.name).collect();
                seen.sort();
                seen.dedup();
                prop_assert_eq!(seen.len(), entry.cookies.len());
            }
        }
    }
}
