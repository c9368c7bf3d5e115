//! [`LocalVerifier`]: the server's own access tokens checked in process, for an MCP server that
//! embeds its authorization server. No JWKS fetch or introspection call, and revocation (of a
//! JWT too) takes effect at once, since the store is asked every time.

use serde_json::{Map, Value};

use super::grant::{hash, AccessStatus};
use super::AuthorizationServer;
use crate::clock::now_secs;
use crate::server::{AuthData, AuthInfo, ProtectedResource, TokenVerifier, VerifyError};

/// Verifies the authorization server's own access tokens (JWT or opaque) against its store, in
/// process: no JWKS fetch, no introspection call, and a revocation takes effect at once, JWTs
/// included. Made by [`AuthorizationServer::local_verifier`].
#[derive(Clone)]
pub struct LocalVerifier {
    server: AuthorizationServer,
    audience: String,
}

impl std::fmt::Debug for LocalVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalVerifier")
            .field("issuer", &self.server.issuer())
            .field("audience", &self.audience)
            .finish()
    }
}

impl AuthorizationServer {
    /// A verifier for this server's access tokens (JWT or opaque) issued for `resource`,
    /// checked in process against the store.
    pub fn local_verifier(&self, resource: impl Into<String>) -> LocalVerifier {
        LocalVerifier {
            server: self.clone(),
            audience: resource.into(),
        }
    }

    /// A resource this server issues tokens for, served by the same application: its tokens
    /// checked in process ([`Self::local_verifier`]), this server named in its metadata, DPoP
    /// accepted. Add its scopes, then mount [`ProtectedResource::router`] (or its layer and
    /// metadata service) beside [`Self::router`].
    ///
    /// # Errors
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) when this server was not configured to issue tokens for
    /// `resource` ([`AuthorizationServerConfig::resource`](super::AuthorizationServerConfig::resource)),
    /// or it is not an http(s) URL.
    pub fn protected_resource(
        &self,
        resource: impl Into<String>,
    ) -> crate::Result<ProtectedResource<LocalVerifier>> {
        let resource = resource.into();
        let issued = self.resolve_resource(Some(&resource)).map_err(|_| {
            crate::Error::new(
                crate::ErrorKind::Config,
                format!(
                    "the authorization server does not issue tokens for {resource}: add it with \
                     AuthorizationServerConfig::resource"
                ),
            )
        })?;
        Ok(
            ProtectedResource::new(issued.clone(), self.local_verifier(issued))?
                .authorization_server(self.issuer()),
        )
    }
}

impl TokenVerifier for LocalVerifier {
    fn verify<'a>(
        &'a self,
        token: &'a str,
    ) -> super::store::BoxFuture<'a, Result<AuthInfo, VerifyError>> {
        Box::pin(async move {
            let status = self
                .server
                .access_status(hash(token), now_secs())
                .await
                .map_err(|e| VerifyError::unavailable(e.to_string()))?;
            let record = match status {
                AccessStatus::Active(record) => record,
                AccessStatus::Unknown => {
                    return Err(VerifyError::invalid("unknown or revoked token"))
                }
                AccessStatus::Expired => return Err(VerifyError::invalid("the token has expired")),
                AccessStatus::Revoked => {
                    return Err(VerifyError::invalid("the token's grant was revoked"))
                }
            };
            if record.resource != self.audience {
                return Err(VerifyError::invalid("the token is for another resource"));
            }
            let issuer = self.server.issuer().to_owned();
            let mut claims = Map::new();
            claims.insert("iss".into(), Value::from(issuer.clone()));
            claims.insert("sub".into(), Value::from(record.subject.clone()));
            claims.insert("aud".into(), Value::from(record.resource.clone()));
            claims.insert("client_id".into(), Value::from(record.client_id.clone()));
            claims.insert("scope".into(), Value::from(record.scopes.join(" ")));
            claims.insert("iat".into(), Value::from(record.issued_at));
            claims.insert("exp".into(), Value::from(record.expires_at));
            if let Some(jkt) = &record.dpop_jkt {
                claims.insert("cnf".into(), serde_json::json!({ "jkt": jkt }));
            }
            if let Some(act) = record
                .act
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok())
            {
                claims.insert("act".into(), act);
            }
            Ok(AuthInfo::from(AuthData {
                subject: Some(record.subject),
                client_id: Some(record.client_id),
                scopes: record.scopes,
                audience: vec![record.resource],
                issuer: Some(issuer),
                expires_at: Some(record.expires_at),
                claims: std::sync::Arc::new(claims),
            }))
        })
    }
}
