//! How the bridge reaches the server: plain http where allowed, connection and response
//! timeouts, IPv4 only, cookies kept for load balancers, keep-alive pings. mcp-remote's flags of
//! the same names mean the same.

use std::time::Duration;

use clap::Args;
use tower_mcp_oauth::http::{HyperClientBuilder, PlainHttp, ResponseTimeoutsLayer};
use url::Url;

use super::cli_error::CliError;

/// mcp-remote's default: an unreachable server fails in seconds, not after the OS gives up.
pub(crate) const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;
/// mcp-remote's default keep-alive period.
const DEFAULT_PING_SECS: u64 = 30;

#[derive(Args, Clone, Debug, Default)]
pub(crate) struct Network {
    /// Allow plain http (no TLS) to the server's and --issuer's hosts when given as http://,
    /// and to private networks (10/8, 172.16/12, 192.168/16, 100.64/10, 169.254/16, fc00::/7,
    /// fe80::/10, single-label names, *.internal, *.local, *.localdomain, *.lan, *.intranet,
    /// *.corp, *.private, *.svc, *.home.arpa). Anyone on the way (an HTTP_PROXY too) can read
    /// and change such traffic, tokens included: only for networks you trust.
    #[arg(long)]
    pub(crate) allow_http: bool,
    /// Seconds to open a TCP connection (all of a name's addresses together; not DNS or TLS);
    /// 0 leaves it to the OS [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub(crate) connect_timeout: Option<u64>,
    /// Seconds to wait for a response's headers; 0 or unset: no bound.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) headers_timeout: Option<u64>,
    /// Seconds a response body (an SSE stream) may stay silent; 0 or unset: no bound.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) body_timeout: Option<u64>,
    /// Connect over IPv4 only (for networks whose IPv6 routes drop packets).
    #[arg(long)]
    pub(crate) ipv4: bool,
    /// Send the server a ping every 30 s (or --ping-interval), so it and the load balancers
    /// before it keep a quiet session.
    #[arg(long)]
    pub(crate) keep_alive: bool,
    /// Seconds between keep-alive pings; implies --keep-alive.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) ping_interval: Option<u64>,
    /// Do not keep the cookies the server sets (by default they are kept in memory and sent
    /// back to the origin that set them, for load balancers' session stickiness).
    #[arg(long)]
    pub(crate) disable_cookies: bool,
}

fn seconds(value: Option<u64>) -> Option<Duration> {
    value.filter(|s| *s > 0).map(Duration::from_secs)
}

impl Network {
    /// Where plain http may go: loopback, and with `--allow-http` the hosts the user named
    /// (the server's, `--issuer`'s) and private networks. A discovered authorization server
    /// on a public host still needs TLS.
    pub(crate) fn plain_http(&self, url: &str, issuer: Option<&str>) -> PlainHttp {
        if !self.allow_http {
            return PlainHttp::loopback_only();
        }
        let mut policy = PlainHttp::private_networks();
        // A host named with http: the user said so. One named with https asked for TLS.
        for named in std::iter::once(url).chain(issuer) {
            let named = Url::parse(named).ok().filter(|u| u.scheme() == "http");
            if let Some(host) = named.as_ref().and_then(Url::host_str) {
                policy = policy.and_host(host);
            }
        }
        policy
    }

    /// Says loudly what `--allow-http` lets through.
    pub(crate) fn warn_plain_http(&self, url: &str) {
        if self.allow_http && url.starts_with("http://") {
            tracing::warn!(
                "--allow-http: plain http to the server; anyone on the network between can read \
                 the access tokens and change what the server says"
            );
        }
    }

    pub(crate) fn connecting(&self, builder: HyperClientBuilder) -> HyperClientBuilder {
        let builder = match self.connect_timeout {
            Some(0) => builder,
            value => builder.connect_timeout(Duration::from_secs(
                value.unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS),
            )),
        };
        if self.ipv4 {
            builder.ipv4_only()
        } else {
            builder
        }
    }

    pub(crate) fn response_timeouts(&self) -> ResponseTimeoutsLayer {
        let mut layer = ResponseTimeoutsLayer::new();
        if let Some(after) = seconds(self.headers_timeout) {
            layer = layer.headers(after);
        }
        if let Some(after) = seconds(self.body_timeout) {
            layer = layer.body_idle(after);
        }
        layer
    }

    /// The keep-alive period, if pings are on.
    pub(crate) fn ping_every(&self) -> Result<Option<Duration>, CliError> {
        match (self.keep_alive, self.ping_interval) {
            (_, Some(0)) => Err(CliError::new("--ping-interval must be at least 1 second")),
            (_, Some(secs)) => Ok(Some(Duration::from_secs(secs))),
            (true, None) => Ok(Some(Duration::from_secs(DEFAULT_PING_SECS))),
            (false, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_http_takes_the_named_hosts_and_private_networks_only() {
        let network = Network {
            allow_http: true,
            ..Network::default()
        };
        let policy = network.plain_http("http://mcp.vpc/sse", Some("http://auth.example.com"));
        let ok = |url: &str| policy.allows(&Url::parse(url).unwrap());
        assert!(ok("http://mcp.vpc/token"));
        assert!(ok("http://auth.example.com/token"));
        assert!(ok("http://10.0.0.7/token"));
        assert!(!ok("http://attacker.example.net/token"));
        // A server named with https asked for TLS: its host is not opened to plain http.
        let https = network.plain_http("https://mcp.example.com/mcp", None);
        assert!(!https.allows(&Url::parse("http://mcp.example.com/token").unwrap()));
        let off = Network::default().plain_http("http://mcp.vpc/sse", None);
        assert!(!off.allows(&Url::parse("http://mcp.vpc/sse").unwrap()));
    }

    #[test]
    fn pings_follow_mcp_remote() {
        let with = |keep_alive, ping_interval| Network {
            keep_alive,
            ping_interval,
            ..Network::default()
        };
        assert_eq!(with(false, None).ping_every().unwrap(), None);
        assert_eq!(
            with(true, None).ping_every().unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            with(false, Some(60)).ping_every().unwrap(),
            Some(Duration::from_secs(60))
        );
        assert!(with(true, Some(0)).ping_every().is_err());
    }
}
