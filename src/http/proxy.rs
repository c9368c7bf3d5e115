//! Outbound HTTP proxies, as curl reads them from the environment (`HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY`, `NO_PROXY`): https destinations through a CONNECT tunnel (TLS stays end to
//! end), http ones forwarded to the proxy. Loopback destinations never go through a proxy,
//! which could not reach this machine's loopback anyway.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

use super::marked::{Mark, Marked};
use crate::error::BoxError;

/// Which destinations go through which proxy. `Debug` names no proxy and no credential.
#[derive(Clone)]
pub(crate) struct Proxies(Arc<Matcher>);

impl std::fmt::Debug for Proxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Proxies(..)")
    }
}

impl Proxies {
    /// The proxies the environment names, or `None` when it names none.
    pub(crate) fn from_env() -> Option<Self> {
        let named = [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        named.then(|| Self(Arc::new(Matcher::from_env())))
    }

    /// `proxy` (an `http://` URL, with `user:password@` for `Proxy-Authorization`) for every
    /// destination but those `no_proxy` names (the `NO_PROXY` syntax).
    pub(crate) fn new(proxy: &str, no_proxy: &str) -> Result<Self, crate::Error> {
        let invalid = || {
            // Never quote the URL: it may hold a password.
            crate::Error::new(
                crate::ErrorKind::Config,
                "the proxy is not an http:// URL (https:// and socks proxies are not supported)",
            )
        };
        let uri: Uri = proxy.parse().map_err(|_| invalid())?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(invalid());
        }
        Ok(Self(Arc::new(
            Matcher::builder().all(proxy).no(no_proxy).build(),
        )))
    }

    /// The `Proxy-Authorization` a request to `dst` carries itself: an http destination's
    /// requests go to the proxy in absolute form, each needing the credentials (an https
    /// destination's go through a tunnel, whose CONNECT carries them).
    pub(crate) fn forwarding_auth(&self, dst: &Uri) -> Option<http::HeaderValue> {
        if dst.scheme_str() != Some("http") {
            return None;
        }
        let intercept = self.for_destination(dst)?;
        let mut auth = intercept.basic_auth()?.clone();
        auth.set_sensitive(true);
        Some(auth)
    }

    /// The proxy for `dst`, if any: never for loopback.
    fn for_destination(&self, dst: &Uri) -> Option<hyper_util::client::proxy::matcher::Intercept> {
        if is_loopback(dst.host()?) {
            return None;
        }
        self.0.intercept(dst)
    }
}

/// `localhost` (with or without its final dot) or a loopback address, IPv4-mapped ones too.
/// Wider than [`is_loopback_host`](crate::http::is_loopback_host) on purpose: going around a
/// proxy is safe for every spelling of this machine, allowing plain http is not.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.trim_end_matches('.').eq_ignore_ascii_case("localhost") {
        return true;
    }
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// A connector that goes through [`Proxies`] where they apply, directly elsewhere.
#[derive(Clone, Debug)]
pub(crate) struct ProxyConnector {
    direct: HttpConnector,
    proxies: Option<Proxies>,
}

impl ProxyConnector {
    pub(crate) fn new(direct: HttpConnector, proxies: Option<Proxies>) -> Self {
        Self { direct, proxies }
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.direct.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let intercept = self
            .proxies
            .as_ref()
            .and_then(|proxies| proxies.for_destination(&dst));
        let mut direct = self.direct.clone();
        Box::pin(async move {
            let Some(intercept) = intercept else {
                let io = direct.call(dst).await?;
                return Ok(ProxyStream {
                    io,
                    mark: Forwarding(false),
                });
            };
            if intercept.uri().scheme_str() != Some("http") {
                return Err(
                    "only http:// proxies are supported (not https:// or socks); check HTTPS_PROXY"
                        .into(),
                );
            }
            if dst.scheme_str() == Some("https") {
                let mut tunnel = Tunnel::new(intercept.uri().clone(), direct);
                if let Some(auth) = intercept.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let io = tunnel.call(dst).await.map_err(|error| {
                    // The tunnel's error names what failed, never the credentials.
                    BoxError::from(format!("the proxy's CONNECT tunnel failed: {error}"))
                })?;
                Ok(ProxyStream {
                    io,
                    mark: Forwarding(false),
                })
            } else {
                let io = direct.call(intercept.uri().clone()).await?;
                Ok(ProxyStream {
                    io,
                    mark: Forwarding(true),
                })
            }
        })
    }
}

/// Whether a connection goes to a proxy that forwards requests (which then go in absolute
/// form) rather than to the destination or through a tunnel.
pub(crate) struct Forwarding(bool);

impl Mark for Forwarding {
    fn mark(&self, connected: Connected) -> Connected {
        connected.proxy(self.0)
    }
}

/// A connection, direct, tunneled, or to a forwarding proxy.
pub(crate) type ProxyStream = Marked<TokioIo<TcpStream>, Forwarding>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forwarded_requests_carry_the_proxy_credentials() {
        let proxies = Proxies::new("http://u:p@proxy.example:3128", "direct.test").unwrap();
        let auth = |url: &str| proxies.forwarding_auth(&url.parse().unwrap());
        let forwarded = auth("http://mcp.test/mcp").expect("forwarded");
        assert_eq!(forwarded, "Basic dTpw");
        assert!(forwarded.is_sensitive());
        assert!(!format!("{forwarded:?}").contains("dTpw"));
        for url in [
            "https://mcp.test/mcp",
            "http://127.0.0.1:8080/mcp",
            "http://localhost/mcp",
            "http://direct.test/mcp",
        ] {
            assert!(auth(url).is_none(), "{url}");
        }
        let without = Proxies::new("http://proxy.example:3128", "").unwrap();
        assert!(without
            .forwarding_auth(&"http://mcp.test/mcp".parse().unwrap())
            .is_none());
    }

    #[test]
    fn loopback_is_told_apart_in_every_spelling() {
        for host in [
            "localhost",
            "LOCALHOST.",
            "127.0.0.1",
            "127.8.9.10",
            "[::1]",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "localhost.example",
            "10.0.0.1",
            "[::ffff:10.0.0.1]",
            "mcp.test",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
