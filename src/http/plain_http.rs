//! Where plain `http://` may be used: loopback by default; private networks and hosts the user
//! named when they opt in (mcp-remote's `--allow-http`).

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use super::{is_loopback_host, redact_url};
use crate::error::{Error, ErrorKind, Result};

/// Domain suffixes that are not delegated on the public internet, so a name under one of them
/// resolves only inside some private network: `.internal` (reserved by ICANN for private
/// use), `.home.arpa` (RFC 8375), `.local` (mDNS, RFC 6762), and the names hosts files,
/// routers and clusters use unofficially.
const PRIVATE_SUFFIXES: &[&str] = &[
    "internal",
    "home.arpa",
    "local",
    "localdomain",
    "lan",
    "intranet",
    "corp",
    "private",
    "svc",
];

/// The plain-http policy of an [`HttpClient`](super::HttpClient): which hosts the OAuth flow
/// may reach without TLS. Anyone on the path of a plain-http request can read and change it,
/// tokens included, so the default is loopback only.
///
/// ```
/// use tower_mcp_oauth::http::{HttpClient, PlainHttp};
///
/// // An MCP server and its authorization server inside a VPC, without TLS.
/// let http = HttpClient::new().plain_http(
///     PlainHttp::private_networks().and_host("mcp.vpc"),
/// );
/// # let _ = http;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlainHttp {
    private_networks: bool,
    named_hosts: Vec<String>,
}

impl PlainHttp {
    /// http only to `localhost`, 127.0.0.0/8 and `::1` (the default).
    pub fn loopback_only() -> Self {
        Self::default()
    }

    /// Also to private networks: addresses in 10/8, 172.16/12, 192.168/16, 100.64/10
    /// (carrier-grade NAT, Tailscale), 169.254/16, fc00::/7 and fe80::/10; single-label names
    /// (`mcp-server`); names under suffixes the public DNS does not delegate (`.internal`,
    /// `.home.arpa`, `.local`, `.lan`, `.corp`, …). A public name that resolves to a private
    /// address is not covered: name it with [`and_host`](Self::and_host).
    pub fn private_networks() -> Self {
        Self {
            private_networks: true,
            named_hosts: Vec::new(),
        }
    }

    /// Also to `host` (a name or an address, as written in the URL), whatever its network:
    /// the user said so.
    pub fn and_host(mut self, host: impl Into<String>) -> Self {
        let host = host.into().to_ascii_lowercase();
        if !self.named_hosts.contains(&host) {
            self.named_hosts.push(host);
        }
        self
    }

    /// Whether plain http to `url`'s host is allowed.
    pub fn allows(&self, url: &Url) -> bool {
        if is_loopback_host(url) {
            return true;
        }
        let Some(host) = url.host() else {
            return false;
        };
        let written = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if self.named_hosts.contains(&written) {
            return true;
        }
        self.private_networks && is_private_host(&host)
    }

    /// Requires https, or http where this policy allows it.
    ///
    /// # Errors
    /// [`ErrorKind::InsecureUrl`] naming `what` the URL is for.
    pub fn check(&self, url: &Url, what: &str) -> Result<()> {
        match url.scheme() {
            "https" if url.host().is_some() => Ok(()),
            "http" if self.allows(url) => Ok(()),
            _ => Err(Error::new(
                ErrorKind::InsecureUrl,
                format!(
                    "{what} {} must use https ({})",
                    redact_url(url),
                    self.describe()
                ),
            )),
        }
    }

    fn describe(&self) -> &'static str {
        match (self.private_networks, self.named_hosts.is_empty()) {
            (false, true) => "plain http is allowed only on loopback hosts",
            (false, false) => "plain http is allowed only on loopback and the hosts named",
            (true, _) => {
                "plain http is allowed only on loopback, private networks and the hosts named"
            }
        }
    }
}

fn is_private_host(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => is_private_ipv4(*ip),
        Host::Ipv6(ip) => is_private_ipv6(*ip),
        Host::Domain(name) => {
            // `ai.` is a top-level domain; `mcp-server` goes through the search domains first.
            let single_label = !name.contains('.');
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            !name.is_empty()
                && (single_label
                    || PRIVATE_SUFFIXES
                        .iter()
                        .any(|suffix| name.ends_with(&format!(".{suffix}"))))
        }
    }
}

fn is_private_ipv4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        // 100.64.0.0/10: carrier-grade NAT, and the addresses Tailscale hands out.
        || (a == 100 && (64..128).contains(&b))
}

fn is_private_ipv6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_private_ipv4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        // fc00::/7, unique local addresses.
        || (first & 0xfe00) == 0xfc00
        // fe80::/10, link-local.
        || (first & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn loopback_only_by_default() {
        let policy = PlainHttp::default();
        assert!(policy.check(&url("http://127.0.0.1:9/x"), "u").is_ok());
        assert!(policy.check(&url("https://auth.example/"), "u").is_ok());
        for refused in [
            "http://10.0.0.1/",
            "http://mcp-server/",
            "http://a.internal/",
        ] {
            assert_eq!(
                policy.check(&url(refused), "u").unwrap_err().kind(),
                ErrorKind::InsecureUrl
            );
        }
    }

    #[test]
    fn private_networks_take_private_addresses_and_names_only() {
        let policy = PlainHttp::private_networks();
        for ok in [
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.10:8080/mcp",
            "http://100.64.0.1/",
            "http://100.127.1.1/",
            "http://169.254.169.254/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://mcp-server:3000/mcp",
            "http://auth.corp/",
            "http://mcp.internal/",
            "http://printer.local./",
            "http://nas.home.arpa/",
            "http://api.default.svc/",
        ] {
            assert!(policy.check(&url(ok), "u").is_ok(), "{ok}");
        }
        for refused in [
            "http://8.8.8.8/",
            "http://ai./",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[2001:db8::1]/",
            "http://[::ffff:8.8.8.8]/",
            "http://mcp.example.com/",
            "http://internal.example.com/",
            "http://evil.com/.internal",
            "ftp://10.0.0.1/",
        ] {
            assert!(policy.check(&url(refused), "u").is_err(), "{refused}");
        }
    }

    #[test]
    fn a_named_host_is_taken_whatever_its_network() {
        let policy = PlainHttp::loopback_only().and_host("Internal-Service.VPC");
        assert!(policy
            .check(&url("http://internal-service.vpc/sse"), "u")
            .is_ok());
        assert!(policy.check(&url("http://other.vpc/"), "u").is_err());
        let error = policy
            .check(&url("http://other.vpc/?key=secret"), "token endpoint")
            .unwrap_err();
        assert!(error.to_string().contains("token endpoint"));
        assert!(!error.to_string().contains("secret"));
    }

    proptest! {
        #[test]
        fn https_always_and_http_only_where_allowed(
            v4 in any::<u32>(),
            v6 in any::<u128>(),
            label in "[a-z][a-z0-9-]{0,10}",
            suffix in prop_oneof![Just(""), Just(".com"), Just(".internal"), Just(".example.org")],
            private in any::<bool>(),
        ) {
            let policy = if private { PlainHttp::private_networks() } else { PlainHttp::default() };
            let hosts = [
                Ipv4Addr::from(v4).to_string(),
                format!("[{}]", Ipv6Addr::from(v6)),
                format!("{label}{suffix}"),
            ];
            for host in hosts {
                let Ok(https) = Url::parse(&format!("https://{host}/")) else { continue };
                prop_assert!(policy.check(&https, "u").is_ok());
                let http = Url::parse(&format!("http://{host}/")).unwrap();
                let expected = is_loopback_host(&http)
                    || (private && http.host().is_some_and(|h| is_private_host(&h)));
                prop_assert_eq!(policy.check(&http, "u").is_ok(), expected);
                // A public address is never private.
                if let Some(Host::Ipv4(ip)) = http.host() {
                    let [a, b, ..] = ip.octets();
                    let private = ip.is_private()
                        || ip.is_loopback()
                        || ip.is_link_local()
                        || (a == 100 && (64..128).contains(&b));
                    prop_assert_eq!(is_private_host(&Host::Ipv4(ip)), private);
                }
            }
        }
    }
}
