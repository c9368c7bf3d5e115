//! What a verifier answers: [`AuthInfo`] for a good token, [`VerifyError`] otherwise; the
//! [`TokenVerifier`] trait; a [`StaticVerifier`] for development; and the cache of verified
//! tokens that lets a repeated token skip the cryptography.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::sync::RwLockExt;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::BoxFuture;

/// Who a verified token speaks for. Handlers find it in the request extensions.
///
/// A shared handle: cloning it (once per request) copies a pointer, not the claims. Read the
/// fields through it (`info.subject`, `info.scopes`); build one from [`AuthData`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthInfo(Arc<AuthData>);

impl std::ops::Deref for AuthInfo {
    type Target = AuthData;

    fn deref(&self) -> &AuthData {
        &self.0
    }
}

impl From<AuthData> for AuthInfo {
    fn from(data: AuthData) -> Self {
        Self(Arc::new(data))
    }
}

/// The fields of an [`AuthInfo`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthData {
    /// `sub`: the user (or client, for client-credentials tokens).
    pub subject: Option<String>,
    /// `client_id` (or `azp`): the client the token was issued to.
    pub client_id: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `aud`: the resources the token is for (RFC 8707).
    pub audience: Vec<String>,
    /// `iss`: who issued it.
    pub issuer: Option<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: Option<u64>,
    /// Every claim as the issuer sent it (never the token itself); shared, so handing
    /// `AuthInfo` to each request costs no copy of it.
    pub claims: Arc<Map<String, Value>>,
}

impl AuthData {
    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The thumbprint of the DPoP key the token is bound to (`cnf.jkt`, RFC 9449 §6), from a
    /// JWT or an introspection response alike.
    pub fn dpop_jkt(&self) -> Option<&str> {
        self.claims.get("cnf")?.get("jkt")?.as_str()
    }

    /// Fills the typed fields from a claims object (JWT claims, or an RFC 7662 response).
    pub fn from_claims(claims: Map<String, Value>) -> AuthInfo {
        let string = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let scopes = match claims.get("scope").or_else(|| claims.get("scp")) {
            Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let audience = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        AuthInfo::from(Self {
            subject: string("sub"),
            client_id: string("client_id").or_else(|| string("azp")),
            scopes,
            audience,
            issuer: string("iss"),
            expires_at: claims.get("exp").and_then(numeric_date),
            claims: Arc::new(claims),
        })
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is malformed, forged, expired, for another resource or revoked: 401
    /// `invalid_token`. The reason is for logs and `error_description`; it never holds the token.
    Invalid(String),
    /// The verifier could not decide (JWKS or introspection endpoint down): 503. Never treated
    /// as success.
    Unavailable(String),
}

impl VerifyError {
    /// An invalid token, for `reason`.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid(reason.into())
    }

    /// The verifier cannot decide now, because of `reason`.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable(reason.into())
    }
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(reason) => write!(f, "invalid token: {reason}"),
            Self::Unavailable(reason) => write!(f, "token verification unavailable: {reason}"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Checks a bearer token. Implementations must never accept a token they could not check.
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies `token` and says who it speaks for.
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<AuthInfo, VerifyError>>;

    /// Whether `verify` decides each token's audience itself, by rules of its own (several
    /// accepted audiences, an issuer without `aud`). `RequireBearer` then leaves the audience
    /// to it; otherwise (the default) it also checks that `aud` names its resource.
    fn checks_audience(&self) -> bool {
        false
    }
}

impl<V: TokenVerifier + ?Sized> TokenVerifier for Arc<V> {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<AuthInfo, VerifyError>> {
        (**self).verify(token)
    }

    fn checks_audience(&self) -> bool {
        (**self).checks_audience()
    }
}

pub(crate) use crate::clock::{now_secs, numeric_date};

/// Whether `info`, from `verifier`, is for `resource`: a verifier that decides audiences by
/// rules of its own has; otherwise `aud` must name the resource.
pub(crate) fn is_for_resource<V: TokenVerifier + ?Sized>(
    verifier: &V,
    info: &AuthInfo,
    resource: &str,
) -> bool {
    verifier.checks_audience()
        || info
            .audience
            .iter()
            .any(|aud| crate::metadata::same_resource(aud, resource))
}

/// Tokens known in advance, for development and tests. Tokens are compared by their SHA-256, so
/// the verifier holds no token in memory.
#[derive(Debug, Default, Clone)]
pub struct StaticVerifier {
    tokens: HashMap<[u8; 32], AuthInfo>,
}

impl StaticVerifier {
    /// A verifier that knows no token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` as `info`.
    pub fn token(mut self, token: &str, info: impl Into<AuthInfo>) -> Self {
        self.tokens.insert(digest(token), info.into());
        self
    }
}

impl TokenVerifier for StaticVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<AuthInfo, VerifyError>> {
        let result = match self.tokens.get(&digest(token)) {
            Some(info) if info.expires_at.is_some_and(|at| at <= now_secs()) => {
                Err(VerifyError::invalid("the token has expired"))
            }
            Some(info) => Ok(info.clone()),
            None => Err(VerifyError::invalid("unknown token")),
        };
        Box::pin(std::future::ready(result))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Verified tokens, each kept until the earlier of its expiry and the cache's TTL. Keyed by the
/// token itself: a lookup hashes it once (foldhash, randomly seeded per process) and compares it
/// in full, so no collision can pass one token for another. `Debug` shows only the size.
pub(crate) struct TokenCache {
    entries: RwLock<HashMap<Box<str>, (AuthInfo, Instant), foldhash::fast::RandomState>>,
    ttl: Duration,
    capacity: usize,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.entries.read().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("TokenCache")
            .field("entries", &len)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl TokenCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::default()),
            ttl,
            capacity,
        }
    }

    pub(crate) fn get(&self, token: &str) -> Option<AuthInfo> {
        let entries = self.entries.read_locked();
        let (info, until) = entries.get(token)?;
        (Instant::now() < *until).then(|| info.clone())
    }

    pub(crate) fn insert(&self, token: &str, info: AuthInfo) {
        let mut ttl = self.ttl;
        if let Some(expires_at) = info.expires_at {
            ttl = ttl.min(Duration::from_secs(expires_at.saturating_sub(now_secs())));
        }
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.write_locked();
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                // Still full of live entries: start over rather than grow without bound.
                entries.clear();
            }
        }
        entries.insert(token.into(), (info, now + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_fill_the_typed_fields() {
        let claims = json!({"sub": "u1", "azp": "c1", "scp": ["a", "b"], "aud": "https://r", "iss": "https://i", "exp": 10});
        let info = AuthData::from_claims(claims.as_object().unwrap().clone());
        assert_eq!(info.subject.as_deref(), Some("u1"));
        assert_eq!(info.client_id.as_deref(), Some("c1"));
        assert_eq!(info.scopes, vec!["a", "b"]);
        assert_eq!(info.audience, vec!["https://r"]);
        assert_eq!(info.expires_at, Some(10));
        let info = AuthData::from_claims(
            json!({"scope": "x y", "aud": ["p", "q"]})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert!(info.has_scope("y"));
        assert_eq!(info.audience, vec!["p", "q"]);
    }

    #[test]
    fn the_cache_honours_expiry_and_capacity() {
        let cache = TokenCache::new(Duration::from_secs(60), 2);
        let expired = AuthInfo::from(AuthData {
            expires_at: Some(1),
            ..Default::default()
        });
        cache.insert("t1", expired);
        assert!(cache.get("t1").is_none(), "never caches an expired token");
        let live = AuthInfo::from(AuthData {
            expires_at: Some(now_secs() + 100),
            ..Default::default()
        });
        for i in 2..10 {
            cache.insert(&format!("t{i}"), live.clone());
        }
        assert!(cache.get("t9").is_some());
        assert!(cache.entries.read().unwrap().len() <= 2);
        assert!(!format!("{cache:?}").contains("t9"), "Debug shows no token");
    }
}
