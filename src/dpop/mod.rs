//! DPoP (RFC 9449): sender-constrained tokens. A client holds a [`DpopKey`] and signs a fresh
//! proof for every request ([`DpopKey::proof`]); the authorization server binds the tokens it
//! issues to the key's thumbprint (`cnf.jkt`), and a resource server checks each proof
//! ([`verify_proof`]) before it trusts the token beside it.
//!
//! The shared parts live here, for the client, the resource server and the authorization
//! server alike: keys and their RFC 7638 thumbprints, proof creation and verification, a bounded
//! replay cache ([`ReplayCache`], [`MemoryReplayCache`]) and stateless server nonces
//! ([`DpopNonces`]). The cryptography is `ring`'s (assembly P-256, no system library).
//!
//! ```
//! use tower_mcp_oauth::dpop::{access_token_hash, verify_proof, DpopAlgorithm, DpopKey, ProofCheck};
//!
//! let key = DpopKey::generate(DpopAlgorithm::ES256)?;
//! let ath = access_token_hash("the-access-token");
//! let proof = key.proof("GET", "https://mcp.example.com/mcp", Some(&ath), None)?;
//!
//! let verified = verify_proof(&proof, &ProofCheck::new("GET", "https://mcp.example.com/mcp")
//!     .access_token("the-access-token"))?;
//! assert_eq!(verified.jkt, key.thumbprint());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::now_secs;
use crate::error::{Error, ErrorKind, Result};
use crate::jose::{JwsAlgorithm, PublicJwk};

mod nonces;
mod replay;

pub use nonces::DpopNonces;
pub use replay::{MemoryReplayCache, ReplayCache, DEFAULT_REPLAY_CAPACITY};

/// The `DPoP` request header: the proof.
pub const DPOP: http::HeaderName = http::HeaderName::from_static("dpop");
/// The `DPoP-Nonce` response header: the nonce the server wants in the next proof.
pub const DPOP_NONCE: http::HeaderName = http::HeaderName::from_static("dpop-nonce");

/// The longest proof accepted. Real proofs are under 1 KiB (an RSA key makes them longer).
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// The `typ` of a DPoP proof.
const PROOF_TYP: &str = "dpop+jwt";

/// A JWS algorithm for DPoP proofs. Only asymmetric algorithms: a proof must be checkable with
/// the public key it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DpopAlgorithm {
    /// ECDSA on P-256 with SHA-256: the default, and the one every DPoP peer supports.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (keys of 2048 bits or more).
    RS256,
    /// RSASSA-PSS with SHA-256 (keys of 2048 bits or more).
    PS256,
}

impl DpopAlgorithm {
    /// Every algorithm a verifier here accepts.
    pub const ALL: [Self; 5] = [
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
        Self::RS256,
        Self::PS256,
    ];

    /// The JOSE name (`ES256`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
            Self::RS256 => "RS256",
            Self::PS256 => "PS256",
        }
    }

    /// The algorithm of a JOSE name, if it is one of [`Self::ALL`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Whether a client here can sign with it ([`DpopKey::generate`]).
    pub fn can_sign(self) -> bool {
        matches!(self, Self::ES256 | Self::ES384)
    }

    fn jws(self) -> JwsAlgorithm {
        match self {
            Self::ES256 => JwsAlgorithm::Es256,
            Self::ES384 => JwsAlgorithm::Es384,
            Self::EdDSA => JwsAlgorithm::EdDsa,
            Self::RS256 => JwsAlgorithm::Rs256,
            Self::PS256 => JwsAlgorithm::Ps256,
        }
    }

    fn ecdsa_signing(self) -> Option<&'static sig::EcdsaSigningAlgorithm> {
        match self {
            Self::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
            Self::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
            _ => None,
        }
    }
}

impl fmt::Display for DpopAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A client's DPoP key pair. The private key never leaves it: `Debug` shows the algorithm and
/// the thumbprint only, and it is serialized (for credential stores, which keep it like a
/// refresh token) as its PKCS#8 document.
#[derive(Clone)]
pub struct DpopKey(Arc<KeyInner>);

struct KeyInner {
    algorithm: DpopAlgorithm,
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    thumbprint: String,
    /// The proof header, encoded once: `typ`, `alg` and the public `jwk` never change.
    encoded_header: String,
    rng: SystemRandom,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("algorithm", &self.0.algorithm)
            .field("thumbprint", &self.0.thumbprint)
            .finish_non_exhaustive()
    }
}

impl PartialEq for DpopKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.thumbprint == other.0.thumbprint
    }
}

impl DpopKey {
    /// A new random key for `algorithm` (ES256 or ES384).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for an algorithm a client cannot sign with here.
    pub fn generate(algorithm: DpopAlgorithm) -> Result<Self> {
        let signing = signing_algorithm(algorithm)?;
        let rng = SystemRandom::new();
        let document = EcdsaKeyPair::generate_pkcs8(signing, &rng)
            .map_err(|_| Error::new(ErrorKind::Config, "could not generate a DPoP key"))?;
        Self::from_pkcs8(algorithm, document.as_ref())
    }

    /// A key from its PKCS#8 document (as [`Self::generate`] makes and stores serialize).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the document is not a key of `algorithm`.
    pub fn from_pkcs8(algorithm: DpopAlgorithm, pkcs8: &[u8]) -> Result<Self> {
        let signing = signing_algorithm(algorithm)?;
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8, &rng).map_err(|_| {
            Error::new(
                ErrorKind::Config,
                format!("the DPoP key is not a PKCS#8 {algorithm} key"),
            )
        })?;
        let point = pair.public_key().as_ref();
        let coordinate = (point.len() - 1) / 2;
        let crv = if algorithm == DpopAlgorithm::ES256 {
            "P-256"
        } else {
            "P-384"
        };
        let x = URL_SAFE_NO_PAD.encode(&point[1..1 + coordinate]);
        let y = URL_SAFE_NO_PAD.encode(&point[1 + coordinate..]);
        // RFC 7638: the required members, in lexical order, no whitespace.
        let canonical = format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let header = format!(r#"{{"typ":"{PROOF_TYP}","alg":"{algorithm}","jwk":{canonical}}}"#);
        Ok(Self(Arc::new(KeyInner {
            algorithm,
            pair,
            pkcs8: pkcs8.to_vec(),
            thumbprint,
            encoded_header: URL_SAFE_NO_PAD.encode(header),
            rng,
        })))
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> DpopAlgorithm {
        self.0.algorithm
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key: the `jkt` tokens are bound to.
    pub fn thumbprint(&self) -> &str {
        &self.0.thumbprint
    }

    /// A proof for one request: `htm` (the method), `htu` (the target URI; any query and
    /// fragment are dropped), a fresh `jti` and `iat`, and when given `ath` (see
    /// [`access_token_hash`]) and the server's `nonce`.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `htu` is not an absolute URI; a signing failure (which the
    /// system's random source alone can cause) is [`ErrorKind::Config`] too.
    pub fn proof(
        &self,
        htm: &str,
        htu: &str,
        ath: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String> {
        let htu = strip_query_and_fragment(htu);
        if !htu.contains("://") {
            return Err(Error::new(
                ErrorKind::Config,
                "a DPoP proof needs the absolute target URI",
            ));
        }
        let mut jti = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut jti);
        let jti = URL_SAFE_NO_PAD.encode(jti);
        let claims = ProofClaims {
            jti: &jti,
            htm,
            htu,
            iat: now_secs(),
            ath,
            nonce,
        };
        let claims = serde_json::to_vec(&claims)
            .map_err(|_| Error::new(ErrorKind::Config, "could not encode a DPoP proof"))?;
        self.sign(&claims)
    }

    /// Signs `claims` as a proof with this key's header, as they are: for claims a server asks
    /// for beyond RFC 9449's, and for testing verifiers. [`Self::proof`] is the usual way.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `claims` is not a JSON object or cannot be signed.
    pub fn sign_claims(&self, claims: &Value) -> Result<String> {
        if !claims.is_object() {
            return Err(Error::new(
                ErrorKind::Config,
                "DPoP proof claims are a JSON object",
            ));
        }
        let claims = serde_json::to_vec(claims)
            .map_err(|_| Error::new(ErrorKind::Config, "could not encode a DPoP proof"))?;
        self.sign(&claims)
    }

    fn sign(&self, claims: &[u8]) -> Result<String> {
        crate::jose::sign_compact(&self.0.encoded_header, claims, &self.0.pair, &self.0.rng)
            .map_err(|_| Error::new(ErrorKind::Config, "could not sign a DPoP proof"))
    }
}

fn signing_algorithm(algorithm: DpopAlgorithm) -> Result<&'static sig::EcdsaSigningAlgorithm> {
    algorithm.ecdsa_signing().ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!("DPoP keys here are ES256 or ES384, not {algorithm}"),
        )
    })
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    alg: String,
    pkcs8: String,
}

impl Serialize for DpopKey {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        StoredKey {
            alg: self.0.algorithm.as_str().to_owned(),
            pkcs8: URL_SAFE_NO_PAD.encode(&self.0.pkcs8),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DpopKey {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let stored = StoredKey::deserialize(deserializer)?;
        let algorithm = DpopAlgorithm::from_name(&stored.alg)
            .ok_or_else(|| D::Error::custom("unknown DPoP key algorithm"))?;
        let pkcs8 = URL_SAFE_NO_PAD
            .decode(stored.pkcs8.as_bytes())
            .map_err(|_| D::Error::custom("the DPoP key is not base64url"))?;
        // The error says what is wrong, never the key.
        Self::from_pkcs8(algorithm, &pkcs8)
            .map_err(|_| D::Error::custom("the stored DPoP key is unusable"))
    }
}

#[derive(Serialize)]
struct ProofClaims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

/// `ath`: the base64url SHA-256 of an access token, which a proof sent with it must carry.
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

fn strip_query_and_fragment(uri: &str) -> &str {
    uri.split(['?', '#']).next().unwrap_or(uri)
}

/// The form two `htu` values are compared in (RFC 9449 §4.3 with RFC 3986 §6.2.2–6.2.3):
/// scheme and host lowercase, the default port dropped, an empty path as `/`, no query or
/// fragment. `None` when it is not an absolute http(s) URI.
pub fn normalize_htu(uri: &str) -> Option<String> {
    let mut url = url::Url::parse(strip_query_and_fragment(uri)).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    Some(url.into())
}

/// Why a proof was refused. The reason is safe to log and to send as `error_description`: it
/// never quotes the proof, a key or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofError(&'static str);

impl ProofError {
    /// What was wrong.
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid DPoP proof: {}", self.0)
    }
}

impl std::error::Error for ProofError {}

/// What a proof must match: the request it came with, and the rules of the verifier.
#[derive(Debug, Clone)]
pub struct ProofCheck<'a> {
    method: &'a str,
    htu: &'a str,
    access_token: Option<&'a str>,
    algorithms: &'a [DpopAlgorithm],
    max_age: u64,
    max_skew: u64,
    now: Option<u64>,
}

/// How old a proof may be by default (RFC 9449 leaves it to the server; proofs are made just
/// before each request).
pub const DEFAULT_PROOF_MAX_AGE: Duration = Duration::from_secs(300);
/// How far in the future a proof's `iat` may be by default (clock skew).
pub const DEFAULT_PROOF_MAX_SKEW: Duration = Duration::from_secs(60);

impl<'a> ProofCheck<'a> {
    /// A check for a request with `method` to `htu` (absolute; it is normalized before the
    /// comparison), accepting every algorithm of [`DpopAlgorithm::ALL`].
    pub fn new(method: &'a str, htu: &'a str) -> Self {
        Self {
            method,
            htu,
            access_token: None,
            algorithms: &DpopAlgorithm::ALL,
            max_age: DEFAULT_PROOF_MAX_AGE.as_secs(),
            max_skew: DEFAULT_PROOF_MAX_SKEW.as_secs(),
            now: None,
        }
    }

    /// The access token sent with the proof: its hash must be the proof's `ath`.
    pub fn access_token(mut self, token: &'a str) -> Self {
        self.access_token = Some(token);
        self
    }

    /// The algorithms accepted.
    pub fn algorithms(mut self, algorithms: &'a [DpopAlgorithm]) -> Self {
        self.algorithms = algorithms;
        self
    }

    /// How old (`max_age`) and how far ahead (`max_skew`) `iat` may be.
    pub fn window(mut self, max_age: Duration, max_skew: Duration) -> Self {
        self.max_age = max_age.as_secs();
        self.max_skew = max_skew.as_secs();
        self
    }

    /// The time to check `iat` against, seconds since the epoch (default: now).
    pub fn at(mut self, now: u64) -> Self {
        self.now = Some(now);
        self
    }
}

/// A proof that passed [`verify_proof`]. Whether its `jti` was seen before is the
/// [`ReplayCache`]'s question, and whether its `nonce` is current is [`DpopNonces`]'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The RFC 7638 thumbprint of the proof's key: a bound token's `cnf.jkt` must equal it.
    pub jkt: String,
    /// `jti`.
    pub jti: String,
    /// `iat`, seconds since the epoch.
    pub iat: u64,
    /// `nonce`, when the proof carries one.
    pub nonce: Option<String>,
    /// When the proof stops being acceptable (`iat` plus the maximum age): how long its `jti`
    /// must be remembered.
    pub expires_at: u64,
}

impl VerifiedProof {
    /// The replay-cache key of the proof: a digest of its key and `jti`, so two clients'
    /// `jti` values never collide.
    pub fn replay_id(&self) -> [u8; 16] {
        let mut hasher = Sha256::new();
        hasher.update(self.jkt.as_bytes());
        hasher.update([0]);
        hasher.update(self.jti.as_bytes());
        let digest = hasher.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        id
    }
}

#[derive(Deserialize)]
struct ProofHeader {
    typ: Option<String>,
    alg: Option<String>,
    jwk: Option<Map<String, Value>>,
    crit: Option<Value>,
}

#[derive(Deserialize)]
struct ReceivedClaims {
    jti: Option<Value>,
    htm: Option<Value>,
    htu: Option<Value>,
    iat: Option<Value>,
    ath: Option<Value>,
    nonce: Option<Value>,
}

fn invalid(reason: &'static str) -> ProofError {
    ProofError(reason)
}

fn decode_part(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part.as_bytes()).ok()
}

/// Checks a DPoP proof (RFC 9449 §4.3): a `dpop+jwt` with an allowed asymmetric `alg`, a public
/// `jwk` that verifies its signature, `htm` and `htu` equal to the request's, `iat` inside the
/// window, and `ath` equal to the access token's hash when one is sent.
///
/// # Errors
/// [`ProofError`] saying what failed; never a panic, whatever the input.
pub fn verify_proof(
    proof: &str,
    check: &ProofCheck<'_>,
) -> std::result::Result<VerifiedProof, ProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(invalid("the proof is too large"));
    }
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("the proof is not a compact JWS"));
    };
    let header: ProofHeader = decode_part(header_b64)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(invalid("the proof header is not base64url JSON"))?;
    if !header
        .typ
        .is_some_and(|typ| typ.eq_ignore_ascii_case(PROOF_TYP))
    {
        return Err(invalid("the proof's typ is not dpop+jwt"));
    }
    if header.crit.is_some() {
        return Err(invalid("the proof has critical header parameters"));
    }
    let algorithm = header
        .alg
        .as_deref()
        .and_then(DpopAlgorithm::from_name)
        .filter(|alg| check.algorithms.contains(alg))
        .ok_or(invalid("the proof's alg is not accepted"))?;
    let jwk = header.jwk.ok_or(invalid("the proof has no jwk"))?;
    let key = PublicJwk::parse(&jwk, algorithm.jws()).map_err(invalid)?;
    let signature =
        decode_part(signature_b64).ok_or(invalid("the proof signature is not base64url"))?;
    let signed = &proof[..header_b64.len() + 1 + claims_b64.len()];
    key.verify(signed.as_bytes(), &signature).map_err(invalid)?;

    let claims: ReceivedClaims = decode_part(claims_b64)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(invalid("the proof claims are not base64url JSON"))?;
    let string = |value: Option<Value>, missing: &'static str| match value {
        Some(Value::String(s)) => Ok(s),
        _ => Err(invalid(missing)),
    };
    let jti = string(claims.jti, "the proof has no jti")?;
    if jti.is_empty() || jti.len() > 256 {
        return Err(invalid("the proof's jti is empty or too long"));
    }
    if string(claims.htm, "the proof has no htm")? != check.method {
        return Err(invalid("the proof is for another HTTP method (htm)"));
    }
    let htu = string(claims.htu, "the proof has no htu")?;
    match (normalize_htu(&htu), normalize_htu(check.htu)) {
        (Some(presented), Some(expected)) if presented == expected => {}
        _ => return Err(invalid("the proof is for another URL (htu)")),
    }
    let iat = claims
        .iat
        .as_ref()
        .and_then(|v| {
            v.as_u64().or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
        })
        .ok_or(invalid("the proof has no valid iat"))?;
    let now = check.now.unwrap_or_else(now_secs);
    if iat > now.saturating_add(check.max_skew) {
        return Err(invalid("the proof's iat is in the future"));
    }
    if iat.saturating_add(check.max_age) < now {
        return Err(invalid("the proof has expired (iat)"));
    }
    if let Some(token) = check.access_token {
        let ath = string(claims.ath, "the proof has no ath for the access token")?;
        let expected = access_token_hash(token);
        if !bool::from(ath.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(invalid("the proof is for another access token (ath)"));
        }
    }
    let nonce = match claims.nonce {
        None => None,
        Some(Value::String(nonce)) => Some(nonce),
        Some(_) => return Err(invalid("the proof's nonce is not a string")),
    };
    Ok(VerifiedProof {
        jkt: key.thumbprint,
        jti,
        iat,
        nonce,
        expires_at: iat.saturating_add(check.max_age),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const URL: &str = "https://mcp.example.com/mcp";

    fn sign_with(key: &DpopKey, header: Value, claims: Value) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = key.0.pair.sign(&key.0.rng, signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    fn header_of(key: &DpopKey) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&key.0.encoded_header).unwrap()).unwrap()
    }

    #[test]
    fn a_proof_verifies_and_names_its_key() {
        for algorithm in [DpopAlgorithm::ES256, DpopAlgorithm::ES384] {
            let key = DpopKey::generate(algorithm).unwrap();
            let proof = key
                .proof(
                    "POST",
                    "https://MCP.example.com:443/mcp?x=1#f",
                    Some(&access_token_hash("t")),
                    Some("n1"),
                )
                .unwrap();
            let verified =
                verify_proof(&proof, &ProofCheck::new("POST", URL).access_token("t")).unwrap();
            assert_eq!(verified.jkt, key.thumbprint());
            assert_eq!(verified.nonce.as_deref(), Some("n1"));
            assert_eq!(verified.jti.len(), 22);
        }
    }

    #[test]
    fn the_thumbprint_follows_rfc_7638() {
        // RFC 7638 §3.1 gives an RSA example; for EC, recompute from the published jwk.
        let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
        let jwk = &header_of(&key)["jwk"];
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        assert_eq!(
            key.thumbprint(),
            URL_SAFE_NO_PAD.encode(Sha256::digest(canonical))
        );
        let rfc_jwk = serde_json::json!({
            "kty": "RSA", "e": "AQAB", "alg": "RS256",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        });
        let parsed = PublicJwk::parse(rfc_jwk.as_object().unwrap(), JwsAlgorithm::Rs256).unwrap();
        assert_eq!(
            parsed.thumbprint,
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn a_stored_key_comes_back_the_same_and_debug_hides_it() {
        let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
        let json = serde_json::to_string(&key).unwrap();
        let back: DpopKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back.thumbprint(), key.thumbprint());
        let debug = format!("{key:?}");
        assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(&key.0.pkcs8)));
        assert!(serde_json::from_str::<DpopKey>(r#"{"alg":"ES256","pkcs8":"AAAA"}"#).is_err());
        assert!(serde_json::from_str::<DpopKey>(r#"{"alg":"HS256","pkcs8":"AAAA"}"#).is_err());
        assert!(DpopKey::generate(DpopAlgorithm::RS256).is_err());
    }

    #[test]
    fn each_rule_of_rfc_9449_section_4_3_refuses() {
        let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
        let other = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
        let now = now_secs();
        let good = serde_json::json!({"jti": "j1", "htm": "GET", "htu": URL, "iat": now, "ath": access_token_hash("t")});
        // The clock pinned: a second ticking over mid-test must not move `iat` into range.
        let check = ProofCheck::new("GET", URL).access_token("t").at(now);
        assert!(verify_proof(&sign_with(&key, header_of(&key), good.clone()), &check).is_ok());

        let with = |field: &str, value: Value| {
            let mut claims = good.clone();
            claims[field] = value;
            sign_with(&key, header_of(&key), claims)
        };
        let cases = [
            (with("htm", "POST".into()), "htm"),
            (with("htu", "https://mcp.example.com/other".into()), "htu"),
            (with("htu", "https://evil.example.com/mcp".into()), "htu"),
            (with("iat", (now - 301).into()), "expired"),
            (with("iat", (now + 61).into()), "future"),
            (with("ath", access_token_hash("u").into()), "ath"),
            (with("jti", "".into()), "jti"),
            (with("jti", 7.into()), "jti"),
        ];
        for (proof, reason) in cases {
            let error = verify_proof(&proof, &check).unwrap_err();
            assert!(error.reason().contains(reason), "{reason}: {error}");
        }
        let mut no_ath = good.clone();
        no_ath.as_object_mut().unwrap().remove("ath");
        assert!(verify_proof(&sign_with(&key, header_of(&key), no_ath), &check).is_err());

        // Signed by another key than the one in the header.
        let mut forged_header = header_of(&key);
        forged_header["jwk"] = header_of(&other)["jwk"].clone();
        let forged = sign_with(&key, forged_header, good.clone());
        assert!(verify_proof(&forged, &check)
            .unwrap_err()
            .reason()
            .contains("signature"));

        let header_cases = [
            ("typ", Value::from("jwt"), "typ"),
            ("alg", Value::from("HS256"), "alg"),
            ("alg", Value::from("none"), "alg"),
            ("alg", Value::from("ES384"), "alg"),
            ("crit", serde_json::json!(["x"]), "critical"),
        ];
        for (field, value, reason) in header_cases {
            let mut header = header_of(&key);
            header[field] = value;
            let error = verify_proof(&sign_with(&key, header, good.clone()), &check).unwrap_err();
            assert!(error.reason().contains(reason), "{field}: {error}");
        }
        let mut private = header_of(&key);
        private["jwk"]["d"] = "AAAA".into();
        assert!(
            verify_proof(&sign_with(&key, private, good.clone()), &check)
                .unwrap_err()
                .reason()
                .contains("private")
        );

        let only_es384 = [DpopAlgorithm::ES384];
        assert!(verify_proof(
            &sign_with(&key, header_of(&key), good),
            &check.clone().algorithms(&only_es384)
        )
        .is_err());
    }

    proptest! {
        #[test]
        fn any_string_is_refused_without_panicking(proof in any::<String>()) {
            prop_assert!(verify_proof(&proof, &ProofCheck::new("GET", URL)).is_err());
        }

        #[test]
        fn any_header_and_claims_json_is_refused_or_checked(
            header in proptest::collection::btree_map("[a-z]{1,4}", prop_oneof![
                Just(Value::from("dpop+jwt")), Just(Value::from("ES256")), Just(Value::from("EC")),
                any::<i64>().prop_map(Value::from), Just(serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})),
            ], 0..6),
            claims in proptest::collection::btree_map("[a-z]{1,5}", prop_oneof![
                Just(Value::from(URL)), Just(Value::from("GET")), any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from), ".{0,12}".prop_map(Value::from),
            ], 0..7),
            signature in "[A-Za-z0-9_-]{0,100}",
        ) {
            let proof = format!(
                "{}.{}.{signature}",
                URL_SAFE_NO_PAD.encode(serde_json::to_string(&header).unwrap()),
                URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims).unwrap()),
            );
            // No signature from a key nobody holds verifies.
            prop_assert!(verify_proof(&proof, &ProofCheck::new("GET", URL)).is_err());
        }

        #[test]
        fn a_genuine_proof_passes_exactly_when_method_and_url_match(
            method in prop_oneof![Just("GET"), Just("POST"), Just("DELETE")],
            path in prop_oneof![Just("/mcp"), Just("/mcp/"), Just("/other")],
            host in prop_oneof![Just("mcp.example.com"), Just("MCP.EXAMPLE.COM"), Just("evil.example.com")],
            query in prop_oneof![Just(""), Just("?a=b"), Just("#frag")],
        ) {
            let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
            let proof = key.proof(method, &format!("https://{host}{path}{query}"), None, None).unwrap();
            let verified = verify_proof(&proof, &ProofCheck::new("POST", URL));
            let matches = method == "POST" && path == "/mcp" && host.eq_ignore_ascii_case("mcp.example.com");
            prop_assert_eq!(verified.is_ok(), matches);
        }
    }
}
