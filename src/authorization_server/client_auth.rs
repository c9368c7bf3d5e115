//! Client authentication at the token, revocation and introspection endpoints (RFC 6749
//! §2.3.1, RFC 7523 §2.2): `none`, `client_secret_post`, `client_secret_basic` or
//! `private_key_jwt`, exactly one per request.

use base64::Engine;
use http::header::AUTHORIZATION;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::assertion::CLIENT_ASSERTION_TYPE;
use super::grant::hash;
use super::store::{ClientAuthMethod, RegisteredClient};
use super::wire::{OAuthError, Params};
use super::AuthorizationServer;

/// The client a request comes from, authenticated by the method it registered.
pub(super) async fn authenticate(
    server: &AuthorizationServer,
    headers: &HeaderMap,
    params: &Params,
) -> Result<RegisteredClient, OAuthError> {
    if params.get("client_assertion").is_some() || params.get("client_assertion_type").is_some() {
        return authenticate_by_assertion(server, headers, params).await;
    }
    let basic = basic_credentials(headers)?;
    let (client_id, secret, method) = match basic {
        Some((id, secret)) => {
            if params.get("client_secret").is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not two",
                ));
            }
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the authenticated client",
                ));
            }
            (id, Some(secret), ClientAuthMethod::ClientSecretBasic)
        }
        None => {
            let id = params
                .get("client_id")
                .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
            match params.get("client_secret") {
                Some(secret) => (
                    id.to_owned(),
                    Some(secret.to_owned()),
                    ClientAuthMethod::ClientSecretPost,
                ),
                None => (id.to_owned(), None, ClientAuthMethod::None),
            }
        }
    };
    let client = load_client(server, &client_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
    // Every combination but these two fails, including a stored client whose method and
    // secret disagree.
    let authenticated = match (client.auth_method, &client.secret_hash, &secret) {
        (ClientAuthMethod::None, None, None) => method == ClientAuthMethod::None,
        (registered, Some(expected), Some(secret)) if registered == method => {
            bool::from(hash(secret).0.ct_eq(&expected.0))
        }
        _ => false,
    };
    if !authenticated {
        return Err(OAuthError::invalid_client("client authentication failed"));
    }
    Ok(client)
}

/// `private_key_jwt`: the client is the assertion's subject, and the assertion must verify
/// with a key it registered.
async fn authenticate_by_assertion(
    server: &AuthorizationServer,
    headers: &HeaderMap,
    params: &Params,
) -> Result<RegisteredClient, OAuthError> {
    if headers.contains_key(AUTHORIZATION) || params.get("client_secret").is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method, not two",
        ));
    }
    if params.get("client_assertion_type") != Some(CLIENT_ASSERTION_TYPE) {
        return Err(OAuthError::invalid_client(
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
    }
    let assertion = params.require("client_assertion")?;
    let jwt = crate::jwks::UnverifiedJwt::parse(assertion)
        .map_err(|why| OAuthError::invalid_client(format!("client assertion: {why}")))?;
    let client_id = match (params.get("client_id"), jwt.claim("sub")) {
        (Some(id), sub) if sub.is_none_or(|sub| sub == id) => id,
        (None, Some(sub)) => sub,
        _ => {
            return Err(OAuthError::invalid_client(
                "client_id differs from the client assertion's sub",
            ))
        }
    };
    let client = load_client(server, client_id)
        .await?
        .filter(|client| client.auth_method == ClientAuthMethod::PrivateKeyJwt)
        .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
    server.check_client_assertion(&client, &jwt).await?;
    Ok(client)
}

/// A registered client, or the client a Client ID Metadata Document URL describes.
pub(super) async fn load_client(
    server: &AuthorizationServer,
    client_id: &str,
) -> Result<Option<RegisteredClient>, OAuthError> {
    if let Some(client) = server.inner.config.store.client(client_id).await? {
        return Ok(Some(client));
    }
    if !server.inner.cimd.is_metadata_url(client_id) {
        return Ok(None);
    }
    match server.inner.cimd.fetch(client_id).await {
        Ok(client) => Ok(Some(client)),
        Err(error) => {
            tracing::info!(%error, "client metadata document rejected");
            Ok(None)
        }
    }
}

/// `Authorization: Basic` credentials, form-urldecoded (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || OAuthError::invalid_client("malformed Basic credentials");
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client("client authentication failed"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let decode = |s: &str| -> String {
        // A raw `&` is not a separator here, so it must not split the value.
        url::form_urlencoded::parse(format!("v={}", s.replace('&', "%26")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let id = decode(id);
    if id.is_empty() {
        return Err(malformed());
    }
    Ok(Some((id, decode(secret))))
}
