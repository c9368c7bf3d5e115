//! [`DpopPolicy`]: how [`RequireBearerLayer`](super::RequireBearerLayer) takes DPoP-bound tokens
//! (RFC 9449 §7): which proofs it accepts, how it remembers them, and whether it asks for nonces.

use std::sync::Arc;
use std::time::Duration;

use crate::dpop::{
    DpopAlgorithm, DpopNonces, MemoryReplayCache, ReplayCache, DEFAULT_PROOF_MAX_AGE,
    DEFAULT_PROOF_MAX_SKEW,
};

/// How a resource takes DPoP tokens. With a policy, `Authorization: DPoP <token>` is accepted
/// with a valid proof in the `DPoP` header: signed by the key the token is bound to
/// (`cnf.jkt`), for this request's method and URL, for this token (`ath`), recent, and never
/// seen before. A DPoP-bound token sent as `Bearer` is refused (RFC 9449 §7.2), with a policy
/// or without.
///
/// ```
/// use std::time::Duration;
/// use tower_mcp_oauth::dpop::DpopNonces;
/// use tower_mcp_oauth::server::{DpopPolicy, RequireBearerLayer, StaticVerifier};
///
/// let layer = RequireBearerLayer::new(StaticVerifier::new())
///     .resource("https://mcp.example.com/mcp")
///     .dpop(DpopPolicy::required().nonces(DpopNonces::new(Duration::from_secs(60))));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct DpopPolicy {
    pub(crate) required: bool,
    pub(crate) algorithms: Vec<DpopAlgorithm>,
    pub(crate) max_age: Duration,
    pub(crate) max_skew: Duration,
    pub(crate) replay: Arc<dyn ReplayCache>,
    pub(crate) nonces: Option<Arc<DpopNonces>>,
}

impl std::fmt::Debug for DpopPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopPolicy")
            .field("required", &self.required)
            .field("algorithms", &self.algorithms)
            .field("max_age", &self.max_age)
            .field("max_skew", &self.max_skew)
            .field("nonces", &self.nonces.is_some())
            .finish_non_exhaustive()
    }
}

impl DpopPolicy {
    /// DPoP tokens accepted beside Bearer tokens (which must then not be DPoP-bound).
    pub fn accepted() -> Self {
        Self {
            required: false,
            algorithms: DpopAlgorithm::ALL.to_vec(),
            max_age: DEFAULT_PROOF_MAX_AGE,
            max_skew: DEFAULT_PROOF_MAX_SKEW,
            replay: Arc::new(MemoryReplayCache::default()),
            nonces: None,
        }
    }

    /// DPoP tokens only: a Bearer token is refused, and the challenges offer DPoP alone.
    pub fn required() -> Self {
        Self {
            required: true,
            ..Self::accepted()
        }
    }

    /// The proof algorithms accepted (default: every one of [`DpopAlgorithm::ALL`]).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = DpopAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// How old a proof may be, and how far in the future its `iat` may lie (defaults: 300 s and
    /// 60 s). Proofs are remembered for `max_age`, so it also sizes the replay cache's work.
    pub fn window(mut self, max_age: Duration, max_skew: Duration) -> Self {
        self.max_age = max_age;
        self.max_skew = max_skew;
        self
    }

    /// Where accepted proofs are remembered (default: a [`MemoryReplayCache`] of 100,000).
    /// Replicas behind one load balancer need a shared one.
    pub fn replay_cache(mut self, cache: impl ReplayCache) -> Self {
        self.replay = Arc::new(cache);
        self
    }

    /// Asks for server nonces (RFC 9449 §9): a proof without a current nonce is answered with
    /// `use_dpop_nonce` and a `DPoP-Nonce` header.
    pub fn nonces(mut self, nonces: DpopNonces) -> Self {
        self.nonces = Some(Arc::new(nonces));
        self
    }

    /// The `algs` of the DPoP challenge.
    pub(crate) fn algs(&self) -> String {
        let names: Vec<&str> = self.algorithms.iter().map(|a| a.as_str()).collect();
        names.join(" ")
    }
}
