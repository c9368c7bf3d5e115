//! What the endpoints decide alike: credentials and their hashes, scopes, resources, and where an
//! access token stands.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use url::Url;

use super::store::{AccessRecord, RegisteredClient, TokenHash};
use super::AuthorizationServer;
use crate::error::Result;

/// A random, URL-safe credential of 256 bits.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of a credential: what the store keeps instead of the credential.
pub(crate) fn hash(value: &str) -> TokenHash {
    TokenHash(Sha256::digest(value.as_bytes()).into())
}

/// RFC 7636 S256: `BASE64URL(SHA256(verifier))`.
pub(crate) fn s256_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Space-separated scopes, deduplicated, in order.
pub(crate) fn split_scopes(scope: Option<&str>) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in scope.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

/// Where an access token stands, for introspection and in-process verification alike.
pub(crate) enum AccessStatus {
    Active(AccessRecord),
    Unknown,
    Expired,
    /// Its grant (token family) was revoked.
    Revoked,
}

impl AuthorizationServer {
    /// Every scope must be known to the server (configured with `scopes`) and allowed to the client.
    pub(super) fn check_scopes(
        &self,
        client: &RegisteredClient,
        scopes: &[String],
    ) -> Result<(), String> {
        let known = &self.inner.config.scopes;
        let allowed = split_scopes(client.metadata.scope.as_deref());
        for scope in scopes {
            if !known.contains(scope) {
                return Err(format!("the scope {scope} is unknown"));
            }
            if client.metadata.scope.is_some() && !allowed.contains(scope) {
                return Err(format!("the client did not register the scope {scope}"));
            }
        }
        Ok(())
    }

    /// The configured resource `requested` names (RFC 8707), or the first one when none is named.
    pub(super) fn resolve_resource(&self, requested: Option<&str>) -> Result<String, String> {
        let resources = &self.inner.config.resources;
        let Some(requested) = requested else {
            return Ok(resources[0].clone());
        };
        let url =
            Url::parse(requested).map_err(|_| "resource is not an absolute URI".to_owned())?;
        if url.fragment().is_some() {
            return Err("resource must not have a fragment".into());
        }
        resources
            .iter()
            .find(|r| crate::metadata::same_resource(r, requested))
            .cloned()
            .ok_or_else(|| "tokens for this resource are not issued here".to_owned())
    }

    pub(crate) async fn access_status(&self, token: TokenHash, now: u64) -> Result<AccessStatus> {
        let store = &self.inner.config.store;
        let Some(record) = store.access(token).await? else {
            return Ok(AccessStatus::Unknown);
        };
        if record.expires_at <= now {
            return Ok(AccessStatus::Expired);
        }
        if let Some(family_id) = &record.family_id {
            if store.family(family_id).await?.is_none_or(|f| f.revoked) {
                return Ok(AccessStatus::Revoked);
            }
        }
        Ok(AccessStatus::Active(record))
    }
}
