//! RFC 7591 dynamic client registration.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use url::Url;

use super::grant::{hash, random_token};
use super::store::{ClientAuthMethod, RegisteredClient};
use super::wire::{json_response, OAuthError};
use super::AuthorizationServer;
use crate::clock::now_secs;
use crate::error::{Error, ErrorKind, Result};
use crate::metadata::ClientMetadata;

/// Largest registration request: clients are kept, so their metadata is bounded.
const MAX_REGISTRATION_BYTES: usize = 16 * 1024;
const MAX_REDIRECT_URIS: usize = 16;

const GRANT_TYPES: [&str; 6] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    super::assertion::JWT_BEARER_GRANT,
    super::wire::DEVICE_CODE_GRANT,
    super::exchange::TOKEN_EXCHANGE_GRANT,
];

pub(super) async fn handle(
    State(server): State<AuthorizationServer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !crate::http::has_media_type_in(&headers, "application/json") {
        return registration_error(
            "invalid_client_metadata",
            "the body must be application/json",
        );
    }
    if body.len() > MAX_REGISTRATION_BYTES {
        return registration_error(
            "invalid_client_metadata",
            "the client metadata is too large",
        );
    }
    let Ok(mut metadata) = serde_json::from_slice::<ClientMetadata>(&body) else {
        return registration_error("invalid_client_metadata", "the body is not client metadata");
    };
    // A registered client never carries a metadata-document id.
    metadata.client_id = None;
    let offered = server.grant_types();
    if let Some(unknown) = metadata.grant_types.iter().find(|g| !offered.contains(g)) {
        return registration_error(
            "invalid_client_metadata",
            &format!("the grant type {unknown} is not supported"),
        );
    }
    let confidential = metadata
        .token_endpoint_auth_method
        .as_deref()
        .unwrap_or("client_secret_basic")
        != "none";
    let secret = confidential.then(random_token);
    let rules = server.inner.config.redirect_rules;
    let client = match validate(metadata, secret.as_deref().map(hash), false, rules) {
        Ok(client) => client,
        Err(invalid) => return registration_error(invalid.code, &invalid.message),
    };
    if let Err(error) = server.inner.config.store.save_client(client.clone()).await {
        return OAuthError::server(&error).into_response();
    }
    tracing::info!(client_id = %client.client_id, method = client.auth_method.as_str(), "client registered");
    let mut body = serde_json::to_value(&client.metadata).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.insert("client_id".into(), client.client_id.clone().into());
        map.insert("client_id_issued_at".into(), client.issued_at.into());
        if let Some(secret) = secret {
            map.insert("client_secret".into(), secret.into());
            map.insert("client_secret_expires_at".into(), 0.into());
        }
    }
    json_response(StatusCode::CREATED, &body)
}

fn registration_error(code: &'static str, description: &str) -> Response {
    OAuthError::new(code, description).into_response()
}

/// Metadata refused, with its RFC 7591 §3.2.2 error code.
pub(super) struct InvalidMetadata {
    code: &'static str,
    message: String,
}

/// A client the operator registers (see [`RegisteredClient::pre_registered`]).
pub(super) fn operator_client(
    metadata: ClientMetadata,
    secret_hash: Option<super::TokenHash>,
    rules: RedirectRules,
) -> Result<RegisteredClient> {
    validate(metadata, secret_hash, true, rules)
        .map_err(|e| Error::new(ErrorKind::Registration, e.message))
}

/// Validates metadata and fills in RFC 7591's defaults.
fn validate(
    mut metadata: ClientMetadata,
    secret_hash: Option<super::TokenHash>,
    pre_registered: bool,
    rules: RedirectRules,
) -> std::result::Result<RegisteredClient, InvalidMetadata> {
    let invalid = |message: &str| InvalidMetadata {
        code: "invalid_client_metadata",
        message: message.to_owned(),
    };
    let auth_method =
        match (metadata.token_endpoint_auth_method.as_deref(), &secret_hash) {
            (None, None) | (Some("none"), None) => ClientAuthMethod::None,
            (None, Some(_)) | (Some("client_secret_basic"), Some(_)) => {
                ClientAuthMethod::ClientSecretBasic
            }
            (Some("client_secret_post"), Some(_)) => ClientAuthMethod::ClientSecretPost,
            (Some("private_key_jwt"), None) if pre_registered => {
                check_client_keys(&metadata).map_err(|e| invalid(e.message()))?;
                ClientAuthMethod::PrivateKeyJwt
            }
            (Some("private_key_jwt"), None) => {
                return Err(invalid(
                    "private_key_jwt is only for clients registered by the operator",
                ))
            }
            (Some("none" | "private_key_jwt"), Some(_)) => {
                return Err(invalid("this client authentication method takes no secret"))
            }
            (Some("client_secret_basic" | "client_secret_post"), None) => {
                return Err(invalid("a confidential client needs a secret"))
            }
            (Some(_), _) => return Err(invalid(
                "token_endpoint_auth_method must be none, client_secret_post, client_secret_basic \
             or private_key_jwt",
            )),
        };
    metadata.token_endpoint_auth_method = Some(auth_method.as_str().to_owned());
    if metadata.grant_types.is_empty() {
        metadata.grant_types = vec!["authorization_code".into()];
    }
    if let Some(unknown) = metadata
        .grant_types
        .iter()
        .find(|g| !GRANT_TYPES.contains(&g.as_str()))
    {
        return Err(invalid(&format!(
            "the grant type {unknown} is not supported"
        )));
    }
    let uses_code = metadata
        .grant_types
        .iter()
        .any(|g| g == "authorization_code");
    if metadata
        .grant_types
        .iter()
        .any(|g| g == "client_credentials")
    {
        // Tokens without a user: only for clients the operator vouches for.
        if !pre_registered {
            return Err(invalid(
                "client_credentials is only for clients registered by the operator",
            ));
        }
        if auth_method == ClientAuthMethod::None {
            return Err(invalid("client_credentials needs a confidential client"));
        }
    }
    if metadata
        .grant_types
        .iter()
        .any(|g| g == super::assertion::JWT_BEARER_GRANT)
        && !pre_registered
    {
        // Tokens on another issuer's word: only for clients the operator vouches for.
        return Err(invalid(
            "the JWT bearer grant is only for clients registered by the operator",
        ));
    }
    if metadata
        .grant_types
        .iter()
        .any(|g| g == super::exchange::TOKEN_EXCHANGE_GRANT)
        && (!pre_registered || auth_method == ClientAuthMethod::None)
    {
        // Acting for users: only resource servers the operator registered and named.
        return Err(invalid(
            "token exchange is only for confidential clients registered by the operator",
        ));
    }
    if metadata.response_types.is_empty() && uses_code {
        metadata.response_types = vec!["code".into()];
    }
    if metadata.response_types.iter().any(|r| r != "code") {
        return Err(invalid("only the response type code is supported"));
    }
    if metadata.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid("too many redirect_uris"));
    }
    if uses_code && metadata.redirect_uris.is_empty() {
        return Err(invalid(
            "redirect_uris are required for the authorization code grant",
        ));
    }
    for uri in &metadata.redirect_uris {
        check_redirect_uri(uri, rules).map_err(|e| InvalidMetadata {
            code: "invalid_redirect_uri",
            message: e.message().to_owned(),
        })?;
    }
    Ok(RegisteredClient {
        client_id: random_token(),
        secret_hash,
        auth_method,
        metadata,
        issued_at: now_secs(),
        pre_registered,
    })
}

/// A `private_key_jwt` client names its public keys one way: a JWKS document or a URL.
fn check_client_keys(metadata: &ClientMetadata) -> Result<()> {
    let invalid = |message: &str| Error::new(ErrorKind::Registration, message.to_owned());
    match (&metadata.jwks, &metadata.jwks_uri) {
        (Some(jwks), None) => crate::jwks::parse_public_jwks(jwks)
            .map(drop)
            .map_err(|e| invalid(e.message())),
        (None, Some(uri)) => {
            let url = Url::parse(uri).map_err(|_| invalid("jwks_uri is not a URL"))?;
            crate::http::ensure_secure_url(&url, "jwks_uri").map_err(|e| invalid(e.message()))
        }
        _ => Err(invalid(
            "a private_key_jwt client needs its public keys: jwks or jwks_uri, not both",
        )),
    }
}

/// Which redirect URIs clients may register.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RedirectRules {
    /// Also reverse-domain private-use schemes (`com.example.app:/cb`, RFC 8252 §7.1).
    pub(super) private_use_schemes: bool,
}

/// Schemes a browser would run or read locally rather than hand to an application.
const DANGEROUS_SCHEMES: [&str; 6] = ["javascript", "data", "file", "vbscript", "about", "blob"];

/// A redirect URI must be absolute, without a fragment, and https or http on loopback; with
/// `rules.private_use_schemes`, a reverse-domain private-use scheme too.
pub(super) fn check_redirect_uri(uri: &str, rules: RedirectRules) -> Result<Url> {
    let invalid = |message: &str| Error::new(ErrorKind::Registration, message.to_owned());
    let url = Url::parse(uri).map_err(|_| invalid("a redirect URI is not an absolute URL"))?;
    if url.fragment().is_some() {
        return Err(invalid("a redirect URI must not have a fragment"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback_redirect(&url) => Ok(url),
        scheme
            if rules.private_use_schemes
                && scheme.contains('.')
                && !DANGEROUS_SCHEMES.contains(&scheme) =>
        {
            Ok(url)
        }
        _ if rules.private_use_schemes => Err(invalid(
            "a redirect URI must be https, http on loopback, or a reverse-domain private-use scheme",
        )),
        _ => Err(invalid("a redirect URI must be https, or http on loopback")),
    }
}

pub(super) fn is_loopback_redirect(url: &Url) -> bool {
    url.scheme() == "http"
        && match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        }
}

/// Whether `requested` matches the registered `registered`: exactly, or for loopback redirect
/// URIs with any port (RFC 8252 §7.3).
pub(super) fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(registered), Ok(requested)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    is_loopback_redirect(&registered)
        && is_loopback_redirect(&requested)
        && registered.host() == requested.host()
        && registered.path() == requested.path()
        && registered.query() == requested.query()
        && requested.fragment().is_none()
        && requested.username().is_empty()
        && requested.password().is_none()
}

impl super::AuthorizationServer {
    /// Registers a public client ahead of time (`token_endpoint_auth_method` none) and returns
    /// its `client_id`.
    ///
    /// # Errors
    /// [`ErrorKind::Registration`] for invalid metadata; the store's errors.
    pub async fn register_client(
        &self,
        metadata: crate::metadata::ClientMetadata,
    ) -> Result<String> {
        let client = operator_client(metadata, None, self.inner.config.redirect_rules)?;
        let id = client.client_id.clone();
        self.inner.config.store.save_client(client).await?;
        Ok(id)
    }

    /// Registers a confidential client ahead of time (`client_secret_basic` unless the metadata
    /// asks for `client_secret_post`), for example the resource server that calls
    /// `/introspect`. Returns its `client_id` and its new secret, which is not kept.
    ///
    /// # Errors
    /// [`ErrorKind::Registration`] for invalid metadata; the store's errors.
    pub async fn register_confidential_client(
        &self,
        metadata: crate::metadata::ClientMetadata,
    ) -> Result<(String, crate::Secret)> {
        let secret = random_token();
        let client = operator_client(
            metadata,
            Some(hash(&secret)),
            self.inner.config.redirect_rules,
        )?;
        let id = client.client_id.clone();
        self.inner.config.store.save_client(client).await?;
        Ok((id, crate::Secret::new(secret)))
    }

    /// Registers a confidential client ahead of time that authenticates with a JWT signed by
    /// its private key (`private_key_jwt`, RFC 7523 §2.2): `metadata` names its public keys,
    /// `jwks` (a JWKS document) or `jwks_uri`. Each assertion's `jti` is accepted once.
    ///
    /// # Errors
    /// [`ErrorKind::Registration`] for invalid metadata or keys; the store's errors.
    pub async fn register_private_key_jwt_client(
        &self,
        mut metadata: crate::metadata::ClientMetadata,
    ) -> Result<String> {
        metadata.token_endpoint_auth_method = Some("private_key_jwt".into());
        let client = operator_client(metadata, None, self.inner.config.redirect_rules)?;
        let id = client.client_id.clone();
        self.inner.config.store.save_client(client).await?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_on_any_port_only() {
        assert!(redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/cb"
        ));
        assert!(redirect_matches(
            "http://127.0.0.1:80/cb",
            "http://127.0.0.1:5555/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/other"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://localhost:5555/cb"
        ));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example:8443/cb"
        ));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example/cb?x=1"
        ));
    }

    #[test]
    fn redirect_uris_must_be_https_or_loopback() {
        let strict = RedirectRules::default();
        assert!(check_redirect_uri("https://app.example/cb", strict).is_ok());
        assert!(check_redirect_uri("http://[::1]:9/cb", strict).is_ok());
        assert!(check_redirect_uri("http://app.example/cb", strict).is_err());
        assert!(check_redirect_uri("https://app.example/cb#x", strict).is_err());
        assert!(check_redirect_uri("/cb", strict).is_err());
        assert!(check_redirect_uri("com.example.app:/cb", strict).is_err());
        let native = RedirectRules {
            private_use_schemes: true,
        };
        assert!(check_redirect_uri("com.example.app:/cb", native).is_ok());
        assert!(
            check_redirect_uri("cursor://anysphere/cb", native).is_err(),
            "not reverse-domain"
        );
        assert!(check_redirect_uri("javascript:alert(1)", native).is_err());
        assert!(check_redirect_uri("http://app.example/cb", native).is_err());
    }
}
