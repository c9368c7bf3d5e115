//! A JWT issuer on loopback for tests and benchmarks: RFC 8414 metadata and a JWKS with an RSA
//! key (`rsa-1`) and an EC P-256 key (`ec-1`), from the test-only keys in `tests/fixtures`.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/rsa_private.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/rsa_public.pem");
pub const EC_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/ec_private.pem");

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An authorization server that publishes metadata and a JWKS (RSA `rsa-1`, EC `ec-1`).
pub struct Issuer {
    pub base: String,
    pub jwks_fetches: Arc<AtomicUsize>,
    pub jwks_down: Arc<Mutex<bool>>,
}

fn public_jwk(pem: &[u8], alg: Algorithm, kid: &str) -> Jwk {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem).unwrap(),
    };
    let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

impl Issuer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        Self::start_on(listener).await
    }

    /// Serves on `listener`: for an issuer that comes up at a known address later.
    pub async fn start_on(listener: tokio::net::TcpListener) -> Self {
        let fetches = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(Mutex::new(false));
        let base = format!("http://{}", listener.local_addr().unwrap());
        let jwks = JwkSet {
            keys: vec![
                public_jwk(RSA_PRIVATE, Algorithm::RS256, "rsa-1"),
                public_jwk(EC_PRIVATE, Algorithm::ES256, "ec-1"),
            ],
        };
        let metadata = json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "jwks_uri": format!("{base}/jwks"),
            "code_challenge_methods_supported": ["S256"],
        });
        let state = (fetches.clone(), down.clone());
        let app =
            Router::new()
                .route(
                    "/.well-known/oauth-authorization-server",
                    get(move || async move { Json(metadata) }),
                )
                .route(
                    "/jwks",
                    get(
                        move |State((fetches, down)): State<(
                            Arc<AtomicUsize>,
                            Arc<Mutex<bool>>,
                        )>| async move {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            if *down.lock().unwrap() {
                                return Err(StatusCode::INTERNAL_SERVER_ERROR);
                            }
                            Ok(Json(serde_json::to_value(&jwks).unwrap()))
                        },
                    ),
                )
                .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base,
            jwks_fetches: fetches,
            jwks_down: down,
        }
    }

    pub fn claims(&self, resource: &str) -> Value {
        json!({
            "iss": self.base,
            "aud": resource,
            "sub": "user-1",
            "client_id": "client-1",
            "scope": "mcp",
            "exp": now() + 600,
        })
    }
}

/// Signs `claims` with the fixture key for `alg` (HS256 uses the RSA public key as its secret:
/// the key-confusion attack).
pub fn sign(claims: &Value, alg: Algorithm, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        Algorithm::HS256 => EncodingKey::from_secret(RSA_PUBLIC),
        _ => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    };
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}
