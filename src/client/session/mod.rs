//! The engine behind [`OAuthState`](super::OAuthState) and [`OAuth`](super::OAuth): one
//! [`Session`] per MCP server, shared by every clone. Its jobs, a file each:
//!
//! - [`token_cache`]: what requests attach, readable without I/O and, on the hot path, without
//!   touching shared memory;
//! - [`flight`]: refresh and authorization run once for everyone who needs them, and a brake on
//!   loops;
//! - [`recovery`]: what a flight does: discovery and issuer switching, client choice and
//!   registration, refresh under the store's lease, the interactive flow.
//!
//! This file holds the session itself, its persistence and the origin check. No lock is held
//! while anything waits on the network, and a caller that gives up (a timeout above us) does not
//! cancel the refresh under way, so a rotated refresh token is never lost.

mod flight;
mod recovery;
mod token_cache;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use url::Url;

use crate::client::authorization::PendingAuthorization;
use crate::client::config::OAuthConfig;
use crate::client::discovery::Discovery;
use crate::client::dpop::{NonceCell, ResourceDpop};
use crate::client::registration::ClientRegistration;
use crate::client::store::{CredentialKey, StoredCredentials};
use crate::client::tokens::TokenSet;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::LockExt;

use flight::Flight;
pub(crate) use flight::FlightOp;
pub(crate) use token_cache::Attach;
use token_cache::TokenSnapshot;

#[derive(Default)]
pub(crate) struct SessionState {
    pub(crate) discovery: Option<Discovery>,
    pub(crate) client: Option<ClientRegistration>,
    pub(crate) tokens: Option<TokenSet>,
    /// Bumped whenever the tokens change, so a waiter can tell that someone else recovered.
    generation: u64,
    /// The SHA-256 of the last access token this session let go of: never taken back from
    /// the store as if another process had just signed in.
    pub(crate) dropped_access: Option<[u8; 32]>,
    pub(crate) pending: Option<PendingAuthorization>,
    /// What the resource's challenges said of DPoP.
    pub(crate) resource_dpop: ResourceDpop,
}

/// Sessions get process-unique ids (not addresses, which a later session could reuse).
static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

/// Shared state for one MCP server: discovery, registration, tokens.
pub(crate) struct Session {
    id: u64,
    /// The generation of the published snapshot, 0 when there is none: read (never written) on
    /// the hot path.
    published: AtomicU64,
    pub(crate) server_url: Url,
    origin: (String, String, u16),
    pub(crate) config: OAuthConfig,
    state: Mutex<SessionState>,
    snapshot: RwLock<Option<Arc<TokenSnapshot>>>,
    flight: Mutex<Option<Flight>>,
    recent_flights: Mutex<VecDeque<Instant>>,
    /// The DPoP nonces the authorization server and the MCP server asked for.
    pub(crate) authorization_server_nonce: Arc<NonceCell>,
    pub(crate) resource_nonce: NonceCell,
}

impl Session {
    pub(crate) fn new(server_url: Url, config: OAuthConfig) -> Self {
        let origin = (
            server_url.scheme().to_owned(),
            server_url
                .host_str()
                .unwrap_or_default()
                .to_ascii_lowercase(),
            server_url.port_or_known_default().unwrap_or(0),
        );
        Self {
            id: NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed),
            published: AtomicU64::new(0),
            server_url,
            origin,
            config,
            state: Mutex::new(SessionState::default()),
            snapshot: RwLock::new(None),
            flight: Mutex::new(None),
            recent_flights: Mutex::new(VecDeque::new()),
            authorization_server_nonce: Arc::default(),
            resource_nonce: NonceCell::default(),
        }
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut SessionState) -> T) -> T {
        let mut guard = self.state.locked();
        f(&mut guard)
    }

    /// Whether `uri` is on the MCP server's origin: the only place a token may go.
    pub(crate) fn is_for_resource(&self, uri: &http::Uri) -> bool {
        let (scheme, host, port) = &self.origin;
        let Some(uri_scheme) = uri.scheme_str() else {
            return false;
        };
        let default_port = match uri_scheme {
            "https" => 443,
            "http" => 80,
            _ => return false,
        };
        uri_scheme == scheme
            && uri.host().is_some_and(|h| h.eq_ignore_ascii_case(host))
            && uri.port_u16().unwrap_or(default_port) == *port
    }

    /// Takes in what a 401's challenges say of DPoP; `Ok(true)` when they just cast doubt on the
    /// resource taking DPoP-bound tokens (a renewed bound token can then help) or showed that
    /// it refuses them (a sign-in for a Bearer token can). `Err`
    /// when a bound token was refused by a resource that offers Bearer alone while only DPoP is
    /// allowed.
    pub(crate) fn note_challenges(
        &self,
        headers: &http::HeaderMap,
        sent_dpop: bool,
    ) -> Result<bool> {
        let Some(seen) = ResourceDpop::from_challenges(headers, sent_dpop) else {
            return Ok(false);
        };
        if seen == ResourceDpop::Refused && self.config.dpop == crate::client::DpopMode::Required {
            return Err(Error::new(
                ErrorKind::DpopNotAccepted,
                "the MCP server refused the DPoP-bound token and offers Bearer tokens only, \
                 but the client is set to DpopMode::Required: allow Bearer (DpopMode::Auto) \
                 or make the server take DPoP",
            ));
        }
        let (before, advertised, now) = self.with(|s| {
            let before = s.resource_dpop;
            let advertised = s
                .discovery
                .as_ref()
                .and_then(|d| d.resource_metadata.as_ref())
                .is_some_and(|m| {
                    m.dpop_signing_alg_values_supported
                        .as_ref()
                        .is_some_and(|algs| !algs.is_empty())
                });
            // A refusal stands for the session: a server that alternates cannot make the
            // client sign in again and again. One that said it takes DPoP is doubted first:
            // a Bearer-only challenge may only mean the token was bad.
            let now = match (before, seen) {
                (ResourceDpop::Refused, _) => ResourceDpop::Refused,
                (ResourceDpop::Offered | ResourceDpop::Unknown, ResourceDpop::Refused)
                    if advertised || before == ResourceDpop::Offered =>
                {
                    ResourceDpop::Doubted
                }
                (ResourceDpop::Doubted, ResourceDpop::Offered) => ResourceDpop::Doubted,
                (_, seen) => seen,
            };
            s.resource_dpop = now;
            (before, advertised, now)
        });
        if now == ResourceDpop::Doubted && before != ResourceDpop::Doubted {
            tracing::info!(
                "the MCP server takes DPoP by its own account, yet refused a DPoP-bound token \
                 with a Bearer-only challenge; renewing the token, still bound"
            );
            return Ok(true);
        }
        if now != ResourceDpop::Refused || before == ResourceDpop::Refused {
            return Ok(false);
        }
        if advertised {
            tracing::warn!(
                "the MCP server's metadata says it takes DPoP, but it refused a new DPoP-bound \
                 token with a Bearer-only challenge; signing in again for a Bearer token"
            );
        } else {
            tracing::info!(
                "the MCP server refused the DPoP-bound token and offers Bearer tokens only; \
                 signing in again for a Bearer token"
            );
        }
        Ok(true)
    }

    /// The store's resource key: the configured credentials key, else the MCP server URL.
    pub(crate) fn resource_key(&self) -> &str {
        self.config
            .credentials_key
            .as_deref()
            .unwrap_or(self.server_url.as_str())
    }

    pub(crate) async fn restore(&self) -> Result<()> {
        let Some((_, record)) = self.config.store.latest(self.resource_key()).await? else {
            return Ok(());
        };
        // Endpoints kept by a run that allowed plain http to them (`PlainHttp`) are found again
        // by discovery, and checked, rather than trusted from the store.
        let metadata = record.authorization_server.clone().filter(|metadata| {
            let usable =
                crate::client::discovery::validate_endpoints(&self.config.http, metadata).is_ok();
            if !usable {
                tracing::warn!(
                    "stored authorization server endpoints are not allowed now; discovering again"
                );
            }
            usable
        });
        self.with(|s| {
            if let Some(metadata) = metadata {
                s.discovery = Some(Discovery {
                    resource: record
                        .resource_metadata
                        .as_ref()
                        .map(|m| m.resource.clone()),
                    resource_metadata: record.resource_metadata.clone(),
                    authorization_server: metadata,
                    default_endpoints: false,
                });
            }
            s.client = record.client.clone();
            self.replace_tokens(s, record.tokens.clone());
        });
        tracing::debug!("restored stored credentials");
        Ok(())
    }

    async fn persist(&self) -> Result<()> {
        let (key, record) = self
            .with(|s| {
                let discovery = s.discovery.as_ref()?;
                Some((
                    CredentialKey::new(self.resource_key(), discovery.issuer()),
                    StoredCredentials {
                        client: s.client.clone(),
                        tokens: s.tokens.clone(),
                        resource_metadata: discovery.resource_metadata.clone(),
                        authorization_server: Some(discovery.authorization_server.clone()),
                        updated_at: 0,
                    },
                ))
            })
            .ok_or_else(|| Error::new(ErrorKind::Config, "nothing to store before discovery"))?;
        self.config.store.save(&key, &record).await
    }

    /// Persists, logging instead of failing: the tokens are good even when the disk is not.
    async fn persist_logged(&self) {
        if let Err(error) = self.persist().await {
            tracing::warn!(%error, "could not store the new credentials");
        }
    }

    pub(crate) fn tokens(&self) -> Option<TokenSet> {
        self.with(|s| s.tokens.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("mcp.example.com".to_owned()),
            Just("MCP.example.com".to_owned()),
            Just("evil.example.com".to_owned()),
            Just("mcp.example.com.evil.net".to_owned()),
            Just("127.0.0.1".to_owned()),
            Just("[::1]".to_owned()),
        ]
    }

    proptest! {
        /// Tokens go only to the resource's origin: same scheme, host (any case) and port,
        /// default ports included.
        #[test]
        fn a_request_is_for_the_resource_exactly_when_its_origin_matches(
            server in (prop_oneof![Just("https"), Just("http")], host(), proptest::option::of(prop_oneof![Just(443u16), Just(80), Just(8443)])),
            request in (prop_oneof![Just("https"), Just("http"), Just("ws")], host(), proptest::option::of(prop_oneof![Just(443u16), Just(80), Just(8443)])),
            path in "/[a-z]{0,6}",
        ) {
            let url = |(scheme, host, port): &(&str, String, Option<u16>)| match port {
                Some(port) => format!("{scheme}://{host}:{port}"),
                None => format!("{scheme}://{host}"),
            };
            let session = Session::new(Url::parse(&format!("{}/mcp", url(&server))).unwrap(), OAuthConfig::new());
            let uri: http::Uri = format!("{}{path}", url(&request)).parse().unwrap();
            let effective_port = |(scheme, _, port): &(&str, String, Option<u16>)| {
                port.unwrap_or(if *scheme == "https" { 443 } else { 80 })
            };
            let same_origin = server.0 == request.0
                && server.1.eq_ignore_ascii_case(&request.1)
                && effective_port(&server) == effective_port(&request);
            prop_assert_eq!(session.is_for_resource(&uri), same_origin);
        }
    }
}
