//! The ES256 key access tokens are signed with, and its public JWK. Signed on ring, the one
//! crypto backend of the crate (TLS, DPoP and JWT checks use it too).

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, KeyAlgorithm, PublicKeyUse,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};

/// An ES256 (P-256) signing key. `Debug` shows only its key id.
#[derive(Clone)]
pub struct SigningKey(Arc<KeyInner>);

struct KeyInner {
    pair: EcdsaKeyPair,
    jwk: Jwk,
    kid: String,
    /// `{"alg":"ES256","typ":"at+jwt","kid":…}`, encoded once.
    encoded_header: String,
    /// The header of the JWTs that are not access tokens (client assertions).
    plain_header: String,
    rng: SystemRandom,
    /// Derives each refresh token's successor from it (see [`SigningKey::refresh_successor`]).
    successor_key: ring::hmac::Key,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.0.kid)
            .finish_non_exhaustive()
    }
}

fn not_a_key() -> Error {
    Error::new(
        ErrorKind::Config,
        "the signing key is not a P-256 PKCS#8 key (with its public key)",
    )
}

impl SigningKey {
    /// The refresh token that replaces `presented`: derived from it under a key of this
    /// signing key's, so a repeated refresh asks for the same successor (the rotation grace
    /// period) and replicas sharing the signing key agree on it, while nobody without the key
    /// can tell it from the presented token.
    pub(crate) fn refresh_successor(&self, presented: &str) -> String {
        let tag = ring::hmac::sign(&self.0.successor_key, presented.as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// A new random key.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] if the system's random source fails.
    pub fn generate() -> Result<Self> {
        let document =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| Error::new(ErrorKind::Config, "could not make a P-256 key"))?;
        Self::from_pkcs8_der(document.as_ref())
    }

    /// A P-256 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), so tokens stay valid
    /// across restarts. The document must hold the public key too, as OpenSSL writes it; a key
    /// without it (some Java tools) is converted with `openssl pkey -in old.pem -out new.pem`.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for anything but a P-256 PKCS#8 key with its public key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| not_a_key())?;
        Self::from_pkcs8_der(der.secret_pkcs8_der())
    }

    /// A P-256 private key in PKCS#8 DER, with its public key (see [`Self::from_pkcs8_pem`]).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for anything but a P-256 PKCS#8 key with its public key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|_| not_a_key())?;
        // The public point: 0x04, then x and y, 32 bytes each.
        let point = pair.public_key().as_ref();
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        // RFC 7638: the required members, in lexical order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::ES256),
                key_id: Some(kid.clone()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                key_type: EllipticCurveKeyType::EC,
                curve: EllipticCurve::P256,
                x,
                y,
            }),
        };
        let header = serde_json::json!({ "alg": "ES256", "typ": "at+jwt", "kid": kid });
        let plain_header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": kid });
        Ok(Self(Arc::new(KeyInner {
            pair,
            jwk,
            encoded_header: URL_SAFE_NO_PAD.encode(header.to_string()),
            plain_header: URL_SAFE_NO_PAD.encode(plain_header.to_string()),
            kid,
            rng,
            successor_key: successor_key(der),
        })))
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.0.kid
    }

    /// The public JWK (`kid`, `use: sig`, `alg: ES256`).
    pub fn public_jwk(&self) -> &Jwk {
        &self.0.jwk
    }

    /// Signs `claims` as an RFC 9068 access token (`typ: at+jwt`).
    pub(crate) fn sign<T: Serialize>(&self, claims: &T) -> Result<String> {
        let claims = serde_json::to_vec(claims)
            .map_err(|_| Error::new(ErrorKind::Config, "could not encode an access token"))?;
        crate::jose::sign_compact(&self.0.encoded_header, &claims, &self.0.pair, &self.0.rng)
            .map_err(|_| Error::new(ErrorKind::Config, "could not sign an access token"))
    }
}

impl SigningKey {
    /// Signs `claims` as a plain JWT (`typ: JWT`): the server's own client assertion
    /// (`private_key_jwt`) at an upstream identity provider.
    pub(crate) fn sign_jwt<T: Serialize>(&self, claims: &T) -> Result<String> {
        let claims = serde_json::to_vec(claims)
            .map_err(|_| Error::new(ErrorKind::Config, "could not encode a JWT"))?;
        crate::jose::sign_compact(&self.0.plain_header, &claims, &self.0.pair, &self.0.rng)
            .map_err(|_| Error::new(ErrorKind::Config, "could not sign a JWT"))
    }
}

/// The successor key: HMAC-SHA256 keyed by a hash of the private key, under its own label, so
/// it says nothing about the signing key.
fn successor_key(pkcs8_der: &[u8]) -> ring::hmac::Key {
    let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, pkcs8_der);
    let derived = ring::hmac::sign(&secret, b"tower-mcp-oauth refresh token successor v1");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_with_the_published_key() {
        let key = SigningKey::generate().unwrap();
        let token = key
            .sign(&serde_json::json!({"sub": "alice", "exp": 4_000_000_000u64}))
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        // Checked with the published key, as a resource server checks it.
        let published = serde_json::to_value(key.public_jwk()).unwrap();
        let public = crate::jose::PublicJwk::parse(
            published.as_object().unwrap(),
            crate::jose::JwsAlgorithm::Es256,
        )
        .unwrap();
        crate::jose::verify_compact(&token, &public).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert!(
            !serde_json::to_string(key.public_jwk())
                .unwrap()
                .contains("\"d\""),
            "no private part published"
        );
    }

    #[test]
    fn a_key_loaded_twice_keeps_its_id_and_bad_keys_are_refused() {
        let pem = include_str!("../../tests/fixtures/ec_private.pem");
        let first = SigningKey::from_pkcs8_pem(pem).unwrap();
        let second = SigningKey::from_pkcs8_pem(pem).unwrap();
        assert_eq!(first.kid(), second.kid());
        assert_ne!(first.kid(), SigningKey::generate().unwrap().kid());
        let error = SigningKey::from_pkcs8_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(!format!("{first:?}").contains("BEGIN"));
    }
}
