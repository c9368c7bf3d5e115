//! What a client presents instead of a user's approval: RFC 7523 client assertions signed with
//! its own key (`private_key_jwt`), and the tokens other grants exchange (a workload's token,
//! a user's ID token), read from where the platform puts them.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde_json::{json, Value};

use crate::clock::now_secs;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// How long a client assertion is good for: long enough for one token request.
const ASSERTION_LIFETIME_SECS: u64 = 60;

/// The longest token read from a [`TokenSource`]; a workload token or ID token is a few KiB.
const MAX_SOURCE_TOKEN_BYTES: usize = 64 * 1024;

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

struct KeyPairInner {
    signer: Signer,
    public: Vec<u8>,
}

/// A client's private key for `private_key_jwt` (RFC 7523 §2.2): ES256 (P-256) or RS256.
/// `Debug` shows the algorithm and `kid`, never the key; clones share it.
#[derive(Clone)]
pub struct ClientKey {
    pair: Arc<KeyPairInner>,
    kid: Option<Arc<str>>,
}

impl ClientKey {
    /// A key from a PEM document: PKCS#8 (`BEGIN PRIVATE KEY`, P-256 or RSA) or PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for anything else; the message never quotes the key.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            Error::new(
                ErrorKind::Config,
                "the client key is not a PEM private key (PKCS#8, or PKCS#1 for RSA)",
            )
        })?;
        match der {
            PrivateKeyDer::Pkcs8(der) => Self::from_pkcs8_der(der.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
                .map(|pair| Self::new(Signer::Rsa(pair)))
                .map_err(|_| Error::new(ErrorKind::Config, "the PKCS#1 client key is not a usable RSA key")),
            _ => Err(Error::new(
                ErrorKind::Config,
                "the client key is a SEC1 EC key; convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)",
            )),
        }
    }

    /// A key from a PKCS#8 DER document: P-256 (ES256) or RSA (RS256).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for another key type; the message never quotes the key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let rng = SystemRandom::new();
        if let Ok(pair) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
        {
            return Ok(Self::new(Signer::Ecdsa(pair)));
        }
        RsaKeyPair::from_pkcs8(der)
            .map(|pair| Self::new(Signer::Rsa(pair)))
            .map_err(|_| {
                Error::new(
                    ErrorKind::Config,
                    "the client key is neither a P-256 nor an RSA PKCS#8 key",
                )
            })
    }

    /// A new random P-256 key (ES256), for tests and for clients that register their key.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the system's random source fails.
    pub fn generate_es256() -> Result<Self> {
        let rng = SystemRandom::new();
        let document =
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| Error::new(ErrorKind::Config, "could not generate a P-256 key"))?;
        Self::from_pkcs8_der(document.as_ref())
    }

    fn new(signer: Signer) -> Self {
        let public = match &signer {
            Signer::Ecdsa(pair) => pair.public_key().as_ref().to_vec(),
            Signer::Rsa(pair) => pair.public_key().as_ref().to_vec(),
        };
        Self {
            pair: Arc::new(KeyPairInner { signer, public }),
            kid: None,
        }
    }

    /// Names the key (`kid` in every JWT header), as the authorization server's copy of the
    /// client's JWKS names it.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into().into());
        self
    }

    /// The JWS algorithm the key signs with: `ES256` or `RS256`.
    pub fn algorithm(&self) -> &'static str {
        match self.pair.signer {
            Signer::Ecdsa(_) => "ES256",
            Signer::Rsa(_) => "RS256",
        }
    }

    /// The key's `kid`, when it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The public half as a JWK (with `kid`, `alg` and `use`), for the authorization server's
    /// registration of the client.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &self.pair.signer {
            Signer::Ecdsa(_) => {
                // Uncompressed point: 0x04 || x || y.
                let (x, y) = self.pair.public[1..].split_at(32);
                json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
            }
            Signer::Rsa(pair) => {
                let components =
                    signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&components.n), "e": URL_SAFE_NO_PAD.encode(&components.e)})
            }
        };
        jwk["alg"] = json!(self.algorithm());
        jwk["use"] = json!("sig");
        if let Some(kid) = self.kid() {
            jwk["kid"] = json!(kid);
        }
        jwk
    }

    /// A compact JWS of `claims` with header `typ` (when given), `alg` and `kid`.
    pub(crate) fn sign(&self, typ: Option<&str>, claims: &Value) -> Result<String> {
        let mut header = json!({"alg": self.algorithm()});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        if let Some(kid) = self.kid() {
            header["kid"] = json!(kid);
        }
        let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let signing_input = format!("{}.{}", encode(&header), encode(claims));
        let rng = SystemRandom::new();
        let failed = || Error::new(ErrorKind::Config, "could not sign the client assertion");
        let signature = match &self.pair.signer {
            Signer::Ecdsa(pair) => pair
                .sign(&rng, signing_input.as_bytes())
                .map_err(|_| failed())?
                .as_ref()
                .to_vec(),
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    signing_input.as_bytes(),
                    &mut signature,
                )
                .map_err(|_| failed())?;
                signature
            }
        };
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// An RFC 7523 client assertion for `client_id` at the authorization server `audience`
    /// (its issuer identifier): short-lived, with a unique `jti`.
    pub(crate) fn client_assertion(&self, client_id: &str, audience: &str) -> Result<Secret> {
        let now = now_secs();
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
            "jti": random_id()?,
        });
        self.sign(None, &claims).map(Secret::new)
    }
}

/// 128 random bits, base64url: a `jti`.
pub(crate) fn random_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::new(ErrorKind::Config, "the system's random source failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

impl PartialEq for ClientKey {
    fn eq(&self, other: &Self) -> bool {
        self.pair.public == other.pair.public && self.kid == other.kid
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("alg", &self.algorithm())
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

type TokenFuture = Pin<Box<dyn Future<Output = Result<Secret>> + Send>>;

enum Source {
    File(PathBuf),
    Env(String),
    Fixed(Secret),
    Fn(Arc<dyn Fn() -> TokenFuture + Send + Sync>),
}

/// Where a grant finds the token it presents: a workload identity token (Kubernetes projected
/// service-account token, SPIFFE JWT-SVID, a CI job's OIDC token) or a user's ID token. Read
/// again at every acquisition, since such tokens rotate.
#[derive(Clone)]
pub struct TokenSource(Arc<Source>);

impl TokenSource {
    /// A file read at each use (surrounding whitespace trimmed): where Kubernetes and SPIFFE
    /// agents put tokens they rotate.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self(Arc::new(Source::File(path.into())))
    }

    /// An environment variable read at each use.
    pub fn env(name: impl Into<String>) -> Self {
        Self(Arc::new(Source::Env(name.into())))
    }

    /// A token that does not change.
    pub fn fixed(token: impl Into<Secret>) -> Self {
        Self(Arc::new(Source::Fixed(token.into())))
    }

    /// A closure that produces the token (from a metadata service, a vault, a helper
    /// process…).
    pub fn from_fn<F, Fut>(produce: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Secret>> + Send + 'static,
    {
        Self(Arc::new(Source::Fn(Arc::new(move || Box::pin(produce())))))
    }

    /// The current token.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the file or variable is missing, empty or not one token; the
    /// closure's error as it is.
    pub async fn read(&self) -> Result<Secret> {
        let token = match &*self.0 {
            Source::File(path) => {
                let shown = path.display().to_string();
                let bytes = read_bounded(path).await.map_err(|e| {
                    Error::new(
                        ErrorKind::Config,
                        format!("cannot read the token file {shown}"),
                    )
                    .with_source(e)
                })?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    Error::new(
                        ErrorKind::Config,
                        format!("the token file {shown} is not UTF-8"),
                    )
                })?;
                Secret::new(text.trim())
            }
            Source::Env(name) => {
                let value = std::env::var(name).map_err(|_| {
                    Error::new(
                        ErrorKind::Config,
                        format!("the environment variable {name} is not set"),
                    )
                })?;
                Secret::new(value.trim())
            }
            Source::Fixed(token) => token.clone(),
            Source::Fn(produce) => produce().await?,
        };
        if !crate::client::wire::is_attachable(token.expose())
            || token.expose().len() > MAX_SOURCE_TOKEN_BYTES
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "the token from {} is empty, too long or not one token",
                    self.describe()
                ),
            ));
        }
        Ok(token)
    }

    fn describe(&self) -> String {
        match &*self.0 {
            Source::File(path) => format!("the file {}", path.display()),
            Source::Env(name) => format!("the environment variable {name}"),
            Source::Fixed(_) => "the configuration".into(),
            Source::Fn(_) => "the token closure".into(),
        }
    }
}

async fn read_bounded(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_TOKEN_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await?;
    Ok(bytes)
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TokenSource")
            .field(&self.describe())
            .finish()
    }
}
