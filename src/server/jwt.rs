//! [`JwtVerifier`]: JWT access tokens checked against the authorization server's JWKS.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use url::Url;

use crate::error::{Error, ErrorKind, Result};
use crate::http::{ensure_secure_url, parse_json, parse_url, HttpClient};
use crate::jose::{self, JwsAlgorithm, PublicJwk};
use crate::metadata::{authorization_server_candidates, AuthorizationServerMetadata};
use crate::server::verify::{
    now_secs, numeric_date, AuthData, AuthInfo, TokenVerifier, VerifyError,
};
use crate::sync::RwLockExt;
use crate::BoxFuture;

/// Unknown `kid`s trigger at most one JWKS fetch per this interval.
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Default clock skew allowed on `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Keys older than this are fetched again, so a key the issuer withdrew stops being trusted.
pub const DEFAULT_MAX_KEY_AGE: Duration = Duration::from_secs(3600);
/// JWKS and discovery calls give up after this long (a request waits for them).
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

const ASYMMETRIC: [Algorithm; 9] = [
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

struct Keys {
    set: JwkSet,
    fetched_at: Option<Instant>,
    /// The last fetch caused by an unknown key id, which the refetch interval limits.
    refetched_at: Option<Instant>,
    /// The last failed fetch: retried after [`FAILED_FETCH_BACKOFF`], not on every request.
    failed_at: Option<Instant>,
}

const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(2);

struct Inner {
    issuer: String,
    audiences: Vec<String>,
    /// Known at build, or found through the issuer's metadata on first use.
    jwks_url: std::sync::OnceLock<Url>,
    http: HttpClient,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    require_at_jwt: bool,
    min_refetch_interval: Duration,
    max_key_age: Duration,
    keys: RwLock<Arc<Keys>>,
    refetch: tokio::sync::Mutex<()>,
}

/// [`JwtVerifier`]: JWT access tokens checked against the authorization server's JWKS.
///
/// - Keys come from the configured JWKS URL, or from `jwks_uri` in the authorization server's
///   metadata (RFC 8414 / OpenID Connect discovery). They are cached, and fetched again when a
///   token names an unknown `kid`, at most once per [`DEFAULT_MIN_REFETCH_INTERVAL`].
/// - Only asymmetric algorithms are accepted (RS*, PS*, ES256, ES384, EdDSA): never `none`, never
///   an HMAC algorithm, so a token "signed" with the public key as an HMAC secret goes nowhere.
///   The key's type and declared `alg` must match the token's.
/// - `iss` must be the issuer, `aud` must name the resource (RFC 8707), `exp` is required, and
///   `exp` and `nbf` are checked with a small leeway. Optionally `typ` must be `at+jwt`
///   (RFC 9068).
/// - A JWKS that cannot be fetched makes the verifier unavailable (503), never permissive.
///
/// Verifies JWT access tokens. Cheap to clone.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.inner.issuer)
            .field("audiences", &self.inner.audiences)
            .field("jwks_url", &self.inner.jwks_url.get().map(Url::as_str))
            .field("algorithms", &self.inner.algorithms)
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwtVerifier`].
#[derive(Debug, Clone)]
pub struct JwtVerifierBuilder {
    issuer: String,
    audience: String,
    jwks_url: Option<String>,
    http: HttpClient,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    require_at_jwt: bool,
    min_refetch_interval: Duration,
    max_key_age: Duration,
}

impl JwtVerifier {
    /// Tokens from `issuer` for the resource `audience` (the MCP server's canonical URL).
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> JwtVerifierBuilder {
        JwtVerifierBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: None,
            http: HttpClient::new().timeout(DEFAULT_FETCH_TIMEOUT),
            algorithms: ASYMMETRIC.to_vec(),
            leeway: DEFAULT_LEEWAY_SECS,
            require_at_jwt: false,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            max_key_age: DEFAULT_MAX_KEY_AGE,
        }
    }
}

impl JwtVerifierBuilder {
    /// Where the keys are, when not discovered.
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// The HTTP client for discovery and JWKS fetches.
    pub fn http(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    /// Restricts the accepted algorithms; HMAC algorithms are dropped whatever is asked.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms
            .into_iter()
            .filter(|a| ASYMMETRIC.contains(a))
            .collect();
        self
    }

    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub fn leeway(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// Requires the header `typ` to be `at+jwt` (RFC 9068 access tokens).
    pub fn require_at_jwt_typ(mut self, required: bool) -> Self {
        self.require_at_jwt = required;
        self
    }

    /// The least time between two JWKS fetches caused by unknown key ids.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// How long fetched keys are trusted before the JWKS is fetched again (default one hour).
    pub fn max_key_age(mut self, age: Duration) -> Self {
        self.max_key_age = age;
        self
    }

    /// Builds with the configured JWKS URL; keys are fetched on first use.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] without a JWKS URL or algorithms; [`ErrorKind::InsecureUrl`] for an
    /// http URL off loopback.
    pub fn build(self) -> Result<JwtVerifier> {
        let url = self.jwks_url.clone().ok_or_else(|| {
            Error::new(ErrorKind::Config, "no JWKS URL: set one, or use discover()")
        })?;
        let url = parse_url(&url, "JWKS URL")?;
        self.finish(Some(url))
    }

    /// Finds `jwks_uri` in the issuer's authorization server metadata (RFC 8414 probe order,
    /// then OpenID Connect discovery), unless a JWKS URL was set.
    ///
    /// # Errors
    /// Discovery errors: unreachable or malformed metadata, an issuer mismatch, no `jwks_uri`.
    pub async fn discover(self) -> Result<JwtVerifier> {
        if self.jwks_url.is_some() {
            return self.build();
        }
        let url = find_jwks_url(&self.http, &self.issuer).await?;
        self.finish(Some(url))
    }

    /// Like [`discover`](Self::discover), but returns at once: the issuer's metadata and keys
    /// are fetched on first use. Until they can be, tokens get 503 with `Retry-After` (never a
    /// pass), and the verifier keeps trying, at most every few seconds, so a resource server
    /// can start before its identity provider and recover by itself when it comes up.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] without algorithms; [`ErrorKind::InsecureUrl`] for an http issuer
    /// or JWKS URL off loopback.
    pub fn discover_lazily(self) -> Result<JwtVerifier> {
        if self.jwks_url.is_some() {
            return self.build();
        }
        ensure_secure_url(&parse_url(&self.issuer, "issuer")?, "issuer")?;
        self.finish(None)
    }

    fn finish(self, jwks_url: Option<Url>) -> Result<JwtVerifier> {
        if let Some(url) = &jwks_url {
            ensure_secure_url(url, "JWKS URL")?;
        }
        if self.algorithms.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "no asymmetric algorithm allowed",
            ));
        }
        let trimmed = self.audience.trim_end_matches('/').to_owned();
        let audiences = vec![trimmed.clone(), format!("{trimmed}/")];
        Ok(JwtVerifier {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                audiences,
                jwks_url: jwks_url.map(std::sync::OnceLock::from).unwrap_or_default(),
                http: self.http,
                algorithms: self.algorithms,
                leeway: self.leeway,
                require_at_jwt: self.require_at_jwt,
                min_refetch_interval: self.min_refetch_interval,
                max_key_age: self.max_key_age,
                keys: RwLock::new(Arc::new(Keys {
                    set: JwkSet { keys: Vec::new() },
                    fetched_at: None,
                    refetched_at: None,
                    failed_at: None,
                })),
                refetch: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

/// Finds `jwks_uri` in the issuer's metadata (RFC 8414 probe order, then OpenID Connect).
async fn find_jwks_url(http: &HttpClient, issuer: &str) -> Result<Url> {
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
        let jwks = metadata.jwks_uri.ok_or_else(|| {
            Error::new(
                ErrorKind::DiscoveryFailed,
                "the authorization server metadata has no jwks_uri",
            )
        })?;
        let url = parse_url(&jwks, "jwks_uri")?;
        ensure_secure_url(&url, "JWKS URL")?;
        return Ok(url);
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

impl Inner {
    fn current(&self) -> Arc<Keys> {
        self.keys.read_locked().clone()
    }

    /// Fetches the JWKS, unless another request did since `observed` (then its keys are used)
    /// or the last fetch is more recent than the refetch interval. Returns whether the set may
    /// have changed.
    async fn refresh_keys(
        &self,
        observed: Option<Instant>,
    ) -> std::result::Result<bool, VerifyError> {
        let _one_at_a_time = self.refetch.lock().await;
        let fetched_at = self.current().fetched_at;
        if fetched_at != observed {
            return Ok(true);
        }
        let Keys {
            refetched_at,
            failed_at,
            ..
        } = *self.current();
        if refetched_at.is_some_and(|at| at.elapsed() < self.min_refetch_interval)
            || failed_at.is_some_and(|at| at.elapsed() < FAILED_FETCH_BACKOFF)
        {
            return Ok(false);
        }
        // The first load is not a refetch; every later fetch is.
        let refetch = fetched_at.is_some();
        let fetched = async {
            let jwks_url = match self.jwks_url.get() {
                Some(url) => url,
                None => {
                    let url = find_jwks_url(&self.http, &self.issuer).await?;
                    self.jwks_url.get_or_init(|| url)
                }
            };
            let response = self.http.get(jwks_url, &[]).await?;
            parse_json::<JwkSet>(&response, "JWKS")
        }
        .await;
        match fetched {
            Ok(set) => {
                tracing::debug!(keys = set.keys.len(), "fetched JWKS");
                let now = Instant::now();
                *self.keys.write_locked() = Arc::new(Keys {
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
                let mut keys = self.keys.write_locked();
                *keys = Arc::new(Keys {
                    set: keys.set.clone(),
                    fetched_at: keys.fetched_at,
                    refetched_at: keys.refetched_at,
                    failed_at: Some(Instant::now()),
                });
                if keys.set.keys.is_empty() {
                    return Err(VerifyError::unavailable(format!(
                        "cannot fetch the JWKS: {error}"
                    )));
                }
                Ok(false)
            }
        }
    }

    async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> std::result::Result<PublicJwk, VerifyError> {
        let mut keys = self.current();
        let stale = keys
            .fetched_at
            .is_some_and(|at| at.elapsed() > self.max_key_age);
        if (stale || pick(&keys.set, kid, alg).is_none())
            && self.refresh_keys(keys.fetched_at).await?
        {
            keys = self.current();
        }
        if keys.set.keys.is_empty() {
            return Err(VerifyError::unavailable(
                "the issuer's keys could not be fetched yet",
            ));
        }
        let jwk = pick(&keys.set, kid, alg).ok_or_else(|| {
            VerifyError::invalid("no key of the issuer matches the token's kid and alg")
        })?;
        let unusable = || VerifyError::invalid("the issuer's key is unusable");
        let members = match serde_json::to_value(jwk) {
            Ok(Value::Object(members)) => members,
            _ => return Err(unusable()),
        };
        let algorithm = jws_algorithm(alg).ok_or_else(unusable)?;
        PublicJwk::parse(&members, algorithm).map_err(|_| unusable())
    }

    async fn verify(&self, token: &str) -> std::result::Result<AuthInfo, VerifyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| VerifyError::invalid("the token is not a well-formed JWT"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(VerifyError::invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        if self.require_at_jwt {
            let typ = header.typ.as_deref().unwrap_or("").to_ascii_lowercase();
            if typ != "at+jwt" && typ != "application/at+jwt" {
                return Err(VerifyError::invalid("the token's typ is not at+jwt"));
            }
        }
        if has_critical_parameters(token) {
            // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
            return Err(VerifyError::invalid(
                "the token has critical header parameters (crit)",
            ));
        }
        let mut parts = token.split('.');
        let (Some(_), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::invalid("the token is not a well-formed JWT"));
        };
        let key = self.key_for(header.kid.as_deref(), header.alg).await?;
        // The signature first: nothing in an unsigned payload is worth reading.
        jose::verify_compact(token, &key)
            .map_err(|_| VerifyError::invalid("the signature does not verify"))?;
        let claims = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            payload.as_bytes(),
        )
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .ok_or_else(|| VerifyError::invalid("the token's claims are not a JSON object"))?;
        self.validate_claims(&claims, now_secs())?;
        Ok(AuthData::from_claims(claims))
    }

    /// RFC 7519 / RFC 9068: `exp`, `iss` and `aud` present; not expired and not before `nbf`
    /// (both with the leeway); from the issuer; for one of the audiences.
    fn validate_claims(
        &self,
        claims: &Map<String, Value>,
        now: u64,
    ) -> std::result::Result<(), VerifyError> {
        let date = |name: &str| -> std::result::Result<Option<u64>, VerifyError> {
            match claims.get(name) {
                None => Ok(None),
                Some(value) => numeric_date(value).map(Some).ok_or_else(|| {
                    VerifyError::invalid(format!("the token's {name} is not a date"))
                }),
            }
        };
        let exp = date("exp")?.ok_or_else(|| VerifyError::invalid("the token has no exp claim"))?;
        let issuer = claims
            .get("iss")
            .ok_or_else(|| VerifyError::invalid("the token has no iss claim"))?;
        let audience = claims
            .get("aud")
            .ok_or_else(|| VerifyError::invalid("the token has no aud claim"))?;
        if exp.saturating_add(self.leeway) <= now {
            return Err(VerifyError::invalid("the token has expired"));
        }
        if date("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(VerifyError::invalid("the token is not valid yet (nbf)"));
        }
        if issuer.as_str() != Some(self.issuer.as_str()) {
            return Err(VerifyError::invalid("the token is from another issuer"));
        }
        let for_us = |aud: &Value| {
            aud.as_str()
                .is_some_and(|a| self.audiences.iter().any(|ours| ours == a))
        };
        let matches = match audience {
            Value::Array(items) => items.iter().any(for_us),
            single => for_us(single),
        };
        if !matches {
            return Err(VerifyError::invalid(
                "the token is not for this resource (aud)",
            ));
        }
        Ok(())
    }
}

/// The `ring` algorithm of a JWT `alg` the verifier accepts.
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

/// Whether the JOSE header names `crit` extensions (none of which this verifier implements).
fn has_critical_parameters(token: &str) -> bool {
    use base64::Engine;
    let Some(encoded) = token.split('.').next() else {
        return true;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .is_none_or(|header| header.contains_key("crit"))
}

impl TokenVerifier for JwtVerifier {
    fn verify<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, std::result::Result<AuthInfo, VerifyError>> {
        Box::pin(self.inner.verify(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use proptest::prelude::*;
    use serde_json::json;

    const EC_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/ec_private.pem");
    const ISSUER: &str = "https://issuer.example";
    const AUDIENCE: &str = "https://mcp.example/mcp";

    /// A verifier holding the fixture's EC key as if just fetched: no request ever leaves.
    fn verifier() -> JwtVerifier {
        let verifier = JwtVerifier::builder(ISSUER, AUDIENCE)
            .jwks_url("http://127.0.0.1:9/jwks")
            .build()
            .unwrap();
        let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("ec-1".into());
        let now = Instant::now();
        *verifier.inner.keys.write().unwrap() = Arc::new(Keys {
            set: JwkSet { keys: vec![jwk] },
            fetched_at: Some(now),
            refetched_at: Some(now),
            failed_at: None,
        });
        verifier
    }

    fn verify(verifier: &JwtVerifier, token: &str) -> std::result::Result<AuthInfo, VerifyError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(verifier.inner.verify(token))
    }

    fn now() -> i64 {
        crate::clock::now_secs() as i64
    }

    /// A claim that is right, wrong, of the wrong type, or missing.
    fn claim(right: Value, wrong: Value) -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(Some(right)),
            Just(Some(wrong)),
            Just(Some(json!(42))),
            Just(Some(json!(null))),
            Just(Some(json!(["x", {"y": 1}]))),
            Just(None),
        ]
    }

    proptest! {
        #[test]
        fn signed_tokens_pass_exactly_when_iss_aud_and_exp_are_right(
            iss in claim(json!(ISSUER), json!("https://other.example")),
            aud in claim(json!([AUDIENCE, "https://x.example"]), json!("https://mcp.example/other")),
            exp in claim(json!(now() + 600), json!(now() - 600)),
            sub in proptest::option::of(prop_oneof![any::<String>().prop_map(Value::from), Just(json!(7))]),
            scope in proptest::option::of(prop_oneof![
                "[a-z: ]{0,20}".prop_map(Value::from), Just(json!(["a", 1])), Just(json!({}))
            ]),
            kid in prop_oneof![Just(Some("ec-1".to_owned())), Just(Some("other".to_owned())), Just(None)],
            tamper in any::<bool>(),
        ) {
            let mut claims = Map::new();
            for (name, value) in [("iss", &iss), ("aud", &aud), ("exp", &exp), ("sub", &sub), ("scope", &scope)] {
                if let Some(value) = value {
                    claims.insert(name.into(), value.clone());
                }
            }
            let mut header = Header::new(Algorithm::ES256);
            header.kid = kid.clone();
            let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
            let mut token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
            if tamper {
                // Another signature of the right length: valid base64url, wrong bytes.
                let cut = token.rfind('.').unwrap() + 1;
                let flipped = if token.as_bytes()[cut] == b'A' { "B" } else { "A" };
                token.replace_range(cut..cut + 1, flipped);
            }
            let expected = iss == Some(json!(ISSUER))
                && aud == Some(json!([AUDIENCE, "https://x.example"]))
                && exp.as_ref().and_then(Value::as_i64).is_some_and(|at| at > now())
                && kid.as_deref() != Some("other")
                && !tamper;
            let result = verify(&verifier(), &token);
            prop_assert_eq!(result.is_ok(), expected, "{:?}", result.as_ref().err());
            match result {
                Ok(info) => prop_assert_eq!(info.subject.clone(), sub.as_ref().and_then(|s| s.as_str().map(str::to_owned))),
                Err(error) => prop_assert!(matches!(error, VerifyError::Invalid(_)), "{error}"),
            }
        }

        #[test]
        fn any_string_is_refused_as_invalid_without_panicking(token in any::<String>()) {
            let result = verify(&verifier(), &token);
            prop_assert!(matches!(result, Err(VerifyError::Invalid(_))));
        }

        #[test]
        fn any_header_over_any_claims_is_refused_or_checked(
            header in proptest::collection::btree_map("[a-z]{1,4}", any::<String>().prop_map(Value::from), 0..5),
            alg in prop_oneof![
                Just("ES256".to_owned()), Just("HS256".to_owned()), Just("none".to_owned()),
                Just("RS256".to_owned()), "[A-Z0-9]{0,6}",
            ],
            claims in proptest::collection::vec(any::<u8>(), 0..64),
            signature in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            use base64::Engine;
            let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            let mut header: Map<String, Value> = header.into_iter().collect();
            header.insert("alg".into(), alg.into());
            let token = format!(
                "{}.{}.{}",
                b64(Value::Object(header).to_string().as_bytes()),
                b64(&claims),
                b64(&signature)
            );
            let result = verify(&verifier(), &token);
            prop_assert!(matches!(result, Err(VerifyError::Invalid(_))));
        }
    }
}
