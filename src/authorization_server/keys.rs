//! The ES256 key access tokens are signed with, and its public JWK.

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};

/// An ES256 (P-256) signing key. `Debug` shows only its key id.
#[derive(Clone)]
pub struct SigningKey {
    encoding: EncodingKey,
    jwk: Jwk,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] if the key cannot be encoded.
    pub fn generate() -> Result<Self> {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let der = secret
            .to_pkcs8_der()
            .map_err(|_| Error::new(ErrorKind::Config, "could not encode a new P-256 key"))?;
        Self::from_pkcs8_der(der.as_bytes())
    }

    /// A P-256 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), so tokens stay valid
    /// across restarts.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for anything but a P-256 PKCS#8 key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        let secret = p256::SecretKey::from_pkcs8_pem(pem).map_err(|_| {
            Error::new(
                ErrorKind::Config,
                "the signing key is not a P-256 PKCS#8 PEM key",
            )
        })?;
        let der = secret
            .to_pkcs8_der()
            .map_err(|_| Error::new(ErrorKind::Config, "could not encode the P-256 key"))?;
        Self::from_pkcs8_der(der.as_bytes())
    }

    /// A P-256 private key in PKCS#8 DER.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for anything but a P-256 PKCS#8 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        p256::SecretKey::from_pkcs8_der(der).map_err(|_| {
            Error::new(
                ErrorKind::Config,
                "the signing key is not a P-256 PKCS#8 key",
            )
        })?;
        let encoding = EncodingKey::from_ec_der(der);
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|_| Error::new(ErrorKind::Config, "could not derive the public key"))?;
        let kid = thumbprint(&jwk)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
        Ok(Self { encoding, jwk, kid })
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (`kid`, `use: sig`, `alg: ES256`).
    pub fn public_jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs `claims` as an RFC 9068 access token (`typ: at+jwt`).
    pub(crate) fn sign<T: Serialize>(&self, claims: &T) -> Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|_| Error::new(ErrorKind::Config, "could not sign an access token"))
    }
}

/// RFC 7638 thumbprint of an EC JWK: the SHA-256 of its required members in lexical order.
fn thumbprint(jwk: &Jwk) -> Result<String> {
    let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm else {
        return Err(Error::new(
            ErrorKind::Config,
            "the signing key is not an EC key",
        ));
    };
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        ec.x, ec.y
    );
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(canonical)))
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
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        let decoding = jsonwebtoken::DecodingKey::from_jwk(key.public_jwk()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.validate_aud = false;
        let claims =
            jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
        assert_eq!(claims.claims["sub"], "alice");
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
