//! JWS signatures with public JWKs (RFC 7515, 7517, 7518, 8037) on `ring`: what DPoP proofs and
//! JWT access tokens are checked with, and RFC 7638 thumbprints of the keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature as sig;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The asymmetric JWS algorithms checked here. Never `none` and never an HMAC: a verifier that
/// holds only public keys cannot be tricked into using one as a shared secret.
// DPoP proofs use five of them; the JWT verifier (feature `jwt`) uses all.
#[cfg_attr(not(feature = "jwt"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwsAlgorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl JwsAlgorithm {
    fn rsa(self) -> Option<&'static sig::RsaParameters> {
        Some(match self {
            Self::Rs256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Self::Rs384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Self::Rs512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Self::Ps256 => &sig::RSA_PSS_2048_8192_SHA256,
            Self::Ps384 => &sig::RSA_PSS_2048_8192_SHA384,
            Self::Ps512 => &sig::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }
}

/// A public key read from a JWK, for one algorithm, with its thumbprint.
pub(crate) struct PublicJwk {
    material: KeyMaterial,
    algorithm: JwsAlgorithm,
    pub(crate) thumbprint: String,
}

enum KeyMaterial {
    /// An uncompressed SEC1 point, or an Ed25519 public key.
    Raw(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

/// Members that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Whether a JWK holds private or symmetric key material.
pub(crate) fn has_private_members(jwk: &Map<String, Value>) -> bool {
    PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m))
}

fn decode(value: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(value.as_bytes()).ok()
}

/// A numeric claim of a compact JWS, read without checking its signature: only for timing a
/// token this client got from its own authorization server (when to renew it), never to trust
/// what it says.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) fn unverified_claim_u64(token: &str, claim: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let claims: Map<String, Value> = serde_json::from_slice(&decode(payload)?).ok()?;
    claims.get(claim)?.as_u64()
}

impl PublicJwk {
    /// Reads `jwk` as a key for `algorithm`: the key type and curve must fit it, and no private
    /// member may be present. The error says what is wrong, never quoting the key.
    pub(crate) fn parse(
        jwk: &Map<String, Value>,
        algorithm: JwsAlgorithm,
    ) -> Result<Self, &'static str> {
        if has_private_members(jwk) {
            return Err("the jwk holds private key material");
        }
        let member = |name: &str| jwk.get(name).and_then(Value::as_str);
        let bytes = |name: &str| member(name).and_then(decode);
        let kty = member("kty").ok_or("the jwk has no kty")?;
        let (material, canonical) = match (algorithm, kty) {
            (JwsAlgorithm::Es256 | JwsAlgorithm::Es384, "EC") => {
                let (crv, size) = if algorithm == JwsAlgorithm::Es256 {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                if member("crv") != Some(crv) {
                    return Err("the jwk curve does not fit the alg");
                }
                let (Some(x), Some(y)) = (bytes("x"), bytes("y")) else {
                    return Err("the jwk lacks x or y");
                };
                if x.len() != size || y.len() != size {
                    return Err("the jwk coordinates have the wrong size");
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                // RFC 7638 §3.2: the required members, in lexical order, no whitespace.
                let canonical = format!(
                    r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                    URL_SAFE_NO_PAD.encode(&x),
                    URL_SAFE_NO_PAD.encode(&y)
                );
                (KeyMaterial::Raw(point), canonical)
            }
            (JwsAlgorithm::EdDsa, "OKP") => {
                if member("crv") != Some("Ed25519") {
                    return Err("the jwk curve is not Ed25519");
                }
                let x = bytes("x")
                    .filter(|x| x.len() == 32)
                    .ok_or("the jwk x is not an Ed25519 key")?;
                let canonical = format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                    URL_SAFE_NO_PAD.encode(&x)
                );
                (KeyMaterial::Raw(x), canonical)
            }
            (alg, "RSA") if alg.rsa().is_some() => {
                let (Some(n), Some(e)) = (bytes("n"), bytes("e")) else {
                    return Err("the jwk lacks n or e");
                };
                let canonical = format!(
                    r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                    URL_SAFE_NO_PAD.encode(&e),
                    URL_SAFE_NO_PAD.encode(&n)
                );
                // ring wants the integers without leading zeros.
                let trim = |v: Vec<u8>| match v.iter().position(|b| *b != 0) {
                    Some(start) => v[start..].to_vec(),
                    None => Vec::new(),
                };
                (
                    KeyMaterial::Rsa {
                        n: trim(n),
                        e: trim(e),
                    },
                    canonical,
                )
            }
            _ => return Err("the jwk type does not fit the alg"),
        };
        Ok(Self {
            material,
            algorithm,
            thumbprint: URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())),
        })
    }

    /// Checks `signature` (the JWS form: `r||s` for ECDSA) over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), &'static str> {
        let verified = match (&self.material, self.algorithm) {
            (KeyMaterial::Raw(point), JwsAlgorithm::Es256) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
            }
            (KeyMaterial::Raw(point), JwsAlgorithm::Es384) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature)
            }
            (KeyMaterial::Raw(key), JwsAlgorithm::EdDsa) => {
                sig::UnparsedPublicKey::new(&sig::ED25519, key).verify(message, signature)
            }
            (KeyMaterial::Rsa { n, e }, alg) => match alg.rsa() {
                Some(parameters) => {
                    sig::RsaPublicKeyComponents { n, e }.verify(parameters, message, signature)
                }
                None => return Err("the jwk type does not fit the alg"),
            },
            _ => return Err("the jwk type does not fit the alg"),
        };
        verified.map_err(|_| "the signature does not verify")
    }
}

/// Checks the signature of a compact JWS (`header.payload.signature`) with `key`.
#[cfg_attr(not(feature = "jwt"), allow(dead_code))]
pub(crate) fn verify_compact(token: &str, key: &PublicJwk) -> Result<(), &'static str> {
    let (signed, signature) = token.rsplit_once('.').ok_or("not a compact JWS")?;
    let signature = decode(signature).ok_or("the signature is not base64url")?;
    key.verify(signed.as_bytes(), &signature)
}

/// A compact JWS (RFC 7515 §7.1): `encoded_header` (already base64url), the claims, and the
/// ECDSA signature `pair` makes over both. What DPoP proofs and the authorization server's
/// access tokens are signed with.
pub(crate) fn sign_compact(
    encoded_header: &str,
    claims: &[u8],
    pair: &sig::EcdsaKeyPair,
    rng: &ring::rand::SystemRandom,
) -> Result<String, ring::error::Unspecified> {
    let mut jws = String::with_capacity(encoded_header.len() + claims.len() * 4 / 3 + 100);
    jws.push_str(encoded_header);
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut jws);
    let signature = pair.sign(rng, jws.as_bytes())?;
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut jws);
    Ok(jws)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn token(claims: &str) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn a_numeric_claim_is_read_and_anything_else_is_none() {
        assert_eq!(
            unverified_claim_u64(&token(r#"{"exp":1700000000}"#), "exp"),
            Some(1_700_000_000)
        );
        assert_eq!(
            unverified_claim_u64(&token(r#"{"exp":"soon"}"#), "exp"),
            None
        );
        assert_eq!(unverified_claim_u64(&token(r#"{"exp":-1}"#), "exp"), None);
        assert_eq!(unverified_claim_u64(&token(r#"{"iat":1}"#), "exp"), None);
        assert_eq!(unverified_claim_u64("a.b", "exp"), None);
        assert_eq!(
            unverified_claim_u64(&format!("{}.x", token(r#"{"exp":1}"#)), "exp"),
            None
        );
    }

    proptest! {
        #[test]
        fn any_text_reads_as_a_claim_or_none(text in ".{0,200}", payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = unverified_claim_u64(&text, "exp");
            let encoded = format!("h.{}.s", URL_SAFE_NO_PAD.encode(&payload));
            let read = unverified_claim_u64(&encoded, "exp");
            let parsed = serde_json::from_slice::<Map<String, Value>>(&payload).ok();
            prop_assert_eq!(read, parsed.and_then(|c| c.get("exp").and_then(Value::as_u64)));
        }
    }
}
