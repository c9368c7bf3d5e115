//! Signed JWTs checked against an issuer's keys: a JWKS given inline, fetched from a URL, or
//! found through the issuer's metadata. One cache for the resource server's [`JwtVerifier`]
//! and for the authorization server's client assertions and JWT-bearer grants.
//!
//! [`JwtVerifier`]: crate::server::JwtVerifier

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use url::Url;

use crate::clock::numeric_date;
use crate::error::{Error, ErrorKind, Result};
use crate::http::{ensure_secure_url, parse_json, parse_url, HttpClient};
use crate::jose::{self, JwsAlgorithm, PublicJwk};
use crate::metadata::{authorization_server_candidates, AuthorizationServerMetadata};
use crate::sync::RwLockExt;

/// The asymmetric algorithms a JWT may be signed with: never `none`, never an HMAC.
pub(crate) const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A failed fetch is retried after this long, not on every request.
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(2);

/// A compact JWS split and decoded, its signature not checked yet: what picks the issuer and
/// the key. Nothing in it is to be trusted before [`KeyCache::verify`].
pub(crate) struct UnverifiedJwt<'a> {
    token: &'a str,
    pub(crate) header: jsonwebtoken::Header,
    pub(crate) claims: Map<String, Value>,
}

impl<'a> UnverifiedJwt<'a> {
    /// Three base64url parts, a JOSE header naming an asymmetric `alg` and no `crit`, and a
    /// JSON object as payload. The error says which, never quoting the token.
    pub(crate) fn parse(token: &'a str) -> std::result::Result<Self, &'static str> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a well-formed JWT");
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
            .ok_or("not a well-formed JWT")?;
        if header_json.contains_key("crit") {
            // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
            return Err("critical header parameters (crit) are not supported");
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "not a well-formed JWT")?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err("the algorithm is not accepted (asymmetric ones only)");
        }
        let claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
            .ok_or("the claims are not a JSON object")?;
        Ok(Self {
            token,
            header,
            claims,
        })
    }

    /// A string claim.
    pub(crate) fn claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// Why a key could not be had.
#[derive(Debug)]
pub(crate) enum KeyError {
    /// The keys cannot be fetched (yet): the caller answers 503, never a pass.
    Unavailable(String),
    /// No key of the issuer fits the token's `kid` and `alg`, or the signature is wrong.
    Invalid(&'static str),
}

/// Where an issuer's keys come from.
#[derive(Clone)]
pub(crate) enum KeySource {
    /// Given by the operator: never fetched.
    Inline(JwkSet),
    /// A JWKS URL.
    Url(Url),
    /// `jwks_uri` in the issuer's metadata, found on first use.
    Discover { issuer: String },
}

/// Where an operator said a trusted issuer's keys are: found through its metadata, at a URL,
/// or given inline. What [`KeySource`] is made from, once the issuer is known.
#[derive(Debug, Clone)]
pub(crate) enum KeySpec {
    Discover,
    Url(String),
    Inline(Value),
}

impl KeySpec {
    /// The source of `issuer`'s keys.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a malformed URL or JWKS document.
    pub(crate) fn source(&self, issuer: &str) -> Result<KeySource> {
        Ok(match self {
            Self::Discover => KeySource::Discover {
                issuer: issuer.to_owned(),
            },
            Self::Url(url) => KeySource::Url(parse_url(url, "JWKS URL")?),
            Self::Inline(jwks) => KeySource::Inline(parse_public_jwks(jwks)?),
        })
    }
}

struct Keys {
    set: JwkSet,
    fetched_at: Option<Instant>,
    /// The last fetch caused by an unknown key id, which the refetch interval limits.
    refetched_at: Option<Instant>,
    failed_at: Option<Instant>,
}

/// How often a [`KeyCache`] fetches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchPolicy {
    /// Unknown `kid`s trigger at most one fetch per this interval.
    pub(crate) min_refetch_interval: Duration,
    /// Keys older than this are fetched again.
    pub(crate) max_key_age: Duration,
    /// How long past `max_key_age` keys are still trusted while fetching them again fails;
    /// then every token is refused as unverifiable (503) until a fetch succeeds, so a key the
    /// issuer withdrew is not trusted for ever behind an outage.
    pub(crate) max_stale: Duration,
}

/// One issuer's public keys, fetched once and shared by every request; fetched again for an
/// unknown `kid` (at most once per interval) and when old.
pub(crate) struct KeyCache {
    source: KeySource,
    jwks_url: OnceLock<Url>,
    http: HttpClient,
    policy: FetchPolicy,
    keys: RwLock<Arc<Keys>>,
    refetch: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            KeySource::Inline(set) => format!("{} inline keys", set.keys.len()),
            KeySource::Url(url) => url.to_string(),
            KeySource::Discover { issuer } => format!("discovered from {issuer}"),
        };
        f.debug_struct("KeyCache")
            .field("source", &source)
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    /// A cache over `source`. URLs must be https or loopback http.
    pub(crate) fn new(source: KeySource, http: HttpClient, policy: FetchPolicy) -> Result<Self> {
        let (set, fetched_at, jwks_url) = match &source {
            KeySource::Inline(set) => (set.clone(), Some(Instant::now()), OnceLock::new()),
            KeySource::Url(url) => {
                ensure_secure_url(url, "JWKS URL")?;
                (
                    JwkSet { keys: Vec::new() },
                    None,
                    OnceLock::from(url.clone()),
                )
            }
            KeySource::Discover { issuer } => {
                ensure_secure_url(&parse_url(issuer, "issuer")?, "issuer")?;
                (JwkSet { keys: Vec::new() }, None, OnceLock::new())
            }
        };
        Ok(Self {
            source,
            jwks_url,
            http,
            policy,
            keys: RwLock::new(Arc::new(Keys {
                set,
                fetched_at,
                refetched_at: None,
                failed_at: None,
            })),
            refetch: tokio::sync::Mutex::new(()),
        })
    }

    /// Finds the JWKS URL now (eager discovery), so a misconfigured issuer fails at start.
    pub(crate) async fn resolve(&self) -> Result<()> {
        if let KeySource::Discover { issuer } = &self.source {
            if self.jwks_url.get().is_none() {
                let url = find_jwks_url(&self.http, issuer).await?;
                let _ = self.jwks_url.set(url);
            }
        }
        Ok(())
    }

    /// Checks the signature of `jwt` with the issuer's key its `kid` and `alg` name.
    pub(crate) async fn verify(
        &self,
        jwt: &UnverifiedJwt<'_>,
    ) -> std::result::Result<(), KeyError> {
        let key = self
            .key_for(jwt.header.kid.as_deref(), jwt.header.alg)
            .await?;
        jose::verify_compact(jwt.token, &key)
            .map_err(|_| KeyError::Invalid("the signature does not verify"))
    }

    fn current(&self) -> Arc<Keys> {
        self.keys.read_locked().clone()
    }

    async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> std::result::Result<PublicJwk, KeyError> {
        let mut keys = self.current();
        let fetched = !matches!(self.source, KeySource::Inline(_));
        let stale = keys
            .fetched_at
            .is_some_and(|at| at.elapsed() > self.policy.max_key_age);
        if fetched
            && (stale || pick(&keys.set, kid, alg).is_none())
            && self.refresh(keys.fetched_at).await?
        {
            keys = self.current();
        }
        if keys.set.keys.is_empty() {
            return Err(KeyError::Unavailable(
                "the issuer's keys could not be fetched yet".into(),
            ));
        }
        let too_old = self
            .policy
            .max_key_age
            .saturating_add(self.policy.max_stale);
        if fetched && keys.fetched_at.is_some_and(|at| at.elapsed() > too_old) {
            return Err(KeyError::Unavailable(
                "the issuer's keys are too old to trust and cannot be fetched again".into(),
            ));
        }
        let jwk = pick(&keys.set, kid, alg).ok_or(KeyError::Invalid(
            "no key of the issuer matches the token's kid and alg",
        ))?;
        let unusable = KeyError::Invalid("the issuer's key is unusable");
        let Ok(Value::Object(members)) = serde_json::to_value(jwk) else {
            return Err(unusable);
        };
        let Some(algorithm) = jws_algorithm(alg) else {
            return Err(unusable);
        };
        PublicJwk::parse(&members, algorithm).map_err(|_| unusable)
    }

    /// Fetches the JWKS, unless another request did since `observed` (then its keys are used)
    /// or the last fetch is more recent than the refetch interval. Returns whether the set may
    /// have changed.
    async fn refresh(&self, observed: Option<Instant>) -> std::result::Result<bool, KeyError> {
        let _one_at_a_time = self.refetch.lock().await;
        let Keys {
            fetched_at,
            refetched_at,
            failed_at,
            ..
        } = *self.current();
        if fetched_at != observed {
            return Ok(true);
        }
        if refetched_at.is_some_and(|at| at.elapsed() < self.policy.min_refetch_interval)
            || failed_at.is_some_and(|at| at.elapsed() < FAILED_FETCH_BACKOFF)
        {
            return Ok(false);
        }
        // The first load is not a refetch; every later fetch is.
        let refetch = fetched_at.is_some();
        let fetched = async {
            self.resolve().await?;
            let url = self.jwks_url.get().ok_or_else(|| {
                Error::new(ErrorKind::DiscoveryFailed, "no JWKS URL for the issuer")
            })?;
            let response = self.http.get(url, &[]).await?;
            parse_json::<JwkSet>(&response, "JWKS")
        }
        .await;
        let mut keys = self.keys.write_locked();
        match fetched {
            Ok(set) => {
                tracing::debug!(keys = set.keys.len(), "fetched JWKS");
                let now = Instant::now();
                *keys = Arc::new(Keys {
                    set,
                    fetched_at: Some(now),
                    refetched_at: if refetch { Some(now) } else { refetched_at },
                    failed_at: None,
                });
                Ok(true)
            }
            Err(error) => {
                // Keep whatever keys we have, and do not ask again for a while.
                tracing::warn!(%error, "JWKS fetch failed");
                *keys = Arc::new(Keys {
                    set: keys.set.clone(),
                    fetched_at,
                    refetched_at,
                    failed_at: Some(Instant::now()),
                });
                if keys.set.keys.is_empty() {
                    return Err(KeyError::Unavailable(format!(
                        "cannot fetch the JWKS: {error}"
                    )));
                }
                Ok(false)
            }
        }
    }
}

/// Reads a JWKS given by an operator: a JSON object with `keys`, public keys only.
///
/// # Errors
/// [`ErrorKind::Config`] for anything else.
pub(crate) fn parse_public_jwks(jwks: &Value) -> Result<JwkSet> {
    let invalid = |why: &str| Error::new(ErrorKind::Config, format!("invalid JWKS: {why}"));
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("no keys array"))?;
    if keys.is_empty() {
        return Err(invalid("no keys"));
    }
    for key in keys {
        let Some(members) = key.as_object() else {
            return Err(invalid("a key is not an object"));
        };
        if jose::has_private_members(members) {
            return Err(invalid("a key holds private or symmetric key material"));
        }
    }
    serde_json::from_value(jwks.clone()).map_err(|_| invalid("a key is not a JWK this crate reads"))
}

/// Finds `jwks_uri` in the issuer's metadata (RFC 8414 probe order, then OpenID Connect).
pub(crate) async fn find_jwks_url(http: &HttpClient, issuer: &str) -> Result<Url> {
    let metadata = fetch_issuer_metadata(http, issuer).await?;
    let jwks = metadata.jwks_uri.ok_or_else(|| {
        Error::new(
            ErrorKind::DiscoveryFailed,
            "the authorization server metadata has no jwks_uri",
        )
    })?;
    let url = parse_url(&jwks, "jwks_uri")?;
    ensure_secure_url(&url, "JWKS URL")?;
    Ok(url)
}

/// The issuer's metadata (RFC 8414 probe order, then OpenID Connect), naming exactly `issuer`.
pub(crate) async fn fetch_issuer_metadata(
    http: &HttpClient,
    issuer: &str,
) -> Result<AuthorizationServerMetadata> {
    let issuer_url = parse_url(issuer, "issuer")?;
    ensure_secure_url(&issuer_url, "issuer")?;
    for candidate in authorization_server_candidates(&issuer_url) {
        let response = http.get(&candidate, &[]).await?;
        if response.status().is_client_error() {
            continue;
        }
        let metadata: AuthorizationServerMetadata =
            parse_json(&response, "authorization server metadata")?;
        if metadata.issuer != issuer {
            return Err(Error::new(
                ErrorKind::MetadataMismatch,
                format!(
                    "the metadata at {candidate} names issuer {:?}, expected {issuer:?}",
                    metadata.issuer
                ),
            ));
        }
        return Ok(metadata);
    }
    Err(Error::new(
        ErrorKind::DiscoveryFailed,
        format!("no authorization server metadata found for issuer {issuer}"),
    ))
}

fn family_matches(jwk: &Jwk, alg: Algorithm) -> bool {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    use jsonwebtoken::AlgorithmFamily as F;
    matches!(
        (&jwk.algorithm, alg.family()),
        (P::RSA(_), F::Rsa) | (P::EllipticCurve(_), F::Ec) | (P::OctetKeyPair(_), F::Ed)
    )
}

fn usable(jwk: &Jwk, alg: Algorithm) -> bool {
    let declared_ok = jwk.common.key_algorithm.is_none_or(|declared| {
        declared
            .to_string()
            .parse::<Algorithm>()
            .is_ok_and(|a| a == alg)
    });
    let use_ok = !matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
    );
    declared_ok && use_ok && family_matches(jwk, alg)
}

fn pick<'k>(keys: &'k JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<&'k Jwk> {
    match kid {
        Some(kid) => keys.find(kid).filter(|k| usable(k, alg)),
        None => {
            let mut candidates = keys.keys.iter().filter(|k| usable(k, alg));
            let only = candidates.next()?;
            // Without a kid, only an unambiguous key will do.
            candidates.next().is_none().then_some(only)
        }
    }
}

/// The `ring` algorithm of a JWT `alg`.
fn jws_algorithm(alg: Algorithm) -> Option<JwsAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => JwsAlgorithm::Rs256,
        Algorithm::RS384 => JwsAlgorithm::Rs384,
        Algorithm::RS512 => JwsAlgorithm::Rs512,
        Algorithm::PS256 => JwsAlgorithm::Ps256,
        Algorithm::PS384 => JwsAlgorithm::Ps384,
        Algorithm::PS512 => JwsAlgorithm::Ps512,
        Algorithm::ES256 => JwsAlgorithm::Es256,
        Algorithm::ES384 => JwsAlgorithm::Es384,
        Algorithm::EdDSA => JwsAlgorithm::EdDsa,
        _ => return None,
    })
}

/// RFC 7519 §4.1.4–5: `exp` present and not past, `nbf` (if any) passed, both with `leeway`
/// seconds of clock skew. Returns `exp`.
pub(crate) fn check_lifetime(
    claims: &Map<String, Value>,
    now: u64,
    leeway: u64,
) -> std::result::Result<u64, &'static str> {
    let exp = match claims.get("exp") {
        None => return Err("the token has no exp claim"),
        Some(value) => numeric_date(value).ok_or("the token's exp is not a date")?,
    };
    if exp.saturating_add(leeway) <= now {
        return Err("the token has expired");
    }
    match claims.get("nbf").map(numeric_date) {
        Some(None) => Err("the token's nbf is not a date"),
        Some(Some(nbf)) if nbf > now.saturating_add(leeway) => {
            Err("the token is not valid yet (nbf)")
        }
        _ => Ok(exp),
    }
}

/// Whether a JWT's `aud` (a string or an array of strings) names one of `ours`.
pub(crate) fn audience_matches(aud: &Value, ours: &[String]) -> bool {
    let one = |value: &Value| value.as_str().is_some_and(|a| ours.iter().any(|o| o == a));
    match aud {
        Value::Array(items) => items.iter().any(one),
        single => one(single),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_string_parses_or_is_refused_without_panicking(token in any::<String>()) {
            let _ = UnverifiedJwt::parse(&token);
        }

        #[test]
        fn any_header_and_payload_parse_only_with_an_asymmetric_alg(
            header in proptest::collection::btree_map("[a-z]{1,5}", any::<String>().prop_map(Value::from), 0..4),
            alg in prop_oneof![Just("ES256"), Just("HS256"), Just("none"), Just("RS512"), Just("XX")],
            payload in proptest::collection::vec(any::<u8>(), 0..48),
        ) {
            let mut header: Map<String, Value> = header.into_iter().collect();
            header.insert("alg".into(), alg.into());
            let token = format!(
                "{}.{}.sig",
                URL_SAFE_NO_PAD.encode(Value::Object(header.clone()).to_string()),
                URL_SAFE_NO_PAD.encode(&payload)
            );
            let parsed = UnverifiedJwt::parse(&token);
            if parsed.is_ok() {
                prop_assert!(matches!(alg, "ES256" | "RS512"));
                prop_assert!(!header.contains_key("crit"));
            }
        }
    }

    #[test]
    fn crit_and_symmetric_algorithms_are_refused() {
        let b64 = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let claims = b64(r#"{"iss":"x"}"#);
        let crit = format!("{}.{claims}.c2ln", b64(r#"{"alg":"ES256","crit":["exp"]}"#));
        let hmac = format!("{}.{claims}.c2ln", b64(r#"{"alg":"HS256"}"#));
        let fine = format!("{}.{claims}.c2ln", b64(r#"{"alg":"ES256"}"#));
        assert!(UnverifiedJwt::parse(&crit).is_err());
        assert!(UnverifiedJwt::parse(&hmac).is_err());
        assert_eq!(UnverifiedJwt::parse(&fine).unwrap().claim("iss"), Some("x"));
    }

    #[test]
    fn operator_jwks_with_private_members_are_refused() {
        let private = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}]});
        let symmetric = serde_json::json!({"keys": [{"kty": "oct", "k": "AA"}]});
        assert!(parse_public_jwks(&private).is_err());
        assert!(parse_public_jwks(&symmetric).is_err());
        assert!(parse_public_jwks(&serde_json::json!({"keys": []})).is_err());
    }

    #[test]
    fn audiences_match_as_a_string_or_in_an_array() {
        let ours = vec!["https://a".to_owned()];
        assert!(audience_matches(&Value::from("https://a"), &ours));
        assert!(audience_matches(
            &serde_json::json!(["x", "https://a"]),
            &ours
        ));
        assert!(!audience_matches(&serde_json::json!(["x"]), &ours));
        assert!(!audience_matches(&serde_json::json!(7), &ours));
    }
}
