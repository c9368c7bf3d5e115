//! Who the client is to the authorization server, in the MCP spec's order of preference:
//! a pre-registered client, a Client ID Metadata Document URL, or RFC 7591 dynamic registration.

use serde::{Deserialize, Serialize};
use tracing::Instrument;
use url::Url;

use crate::client::assertion::ClientKey;
use crate::clock::now_secs;
use crate::error::{Error, ErrorKind, Result};
use crate::http::{parse_json, parse_url, redact_url, HttpClient};
use crate::metadata::{
    AuthorizationServerMetadata, ClientInformationResponse, ClientMetadata, OAuthErrorResponse,
};
use crate::secret::Secret;

/// How the client authenticates at the token endpoint (RFC 7591 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// A public client: `client_id` in the body, no secret.
    #[default]
    None,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// HTTP Basic with the form-urlencoded id and secret.
    ClientSecretBasic,
    /// A JWT signed with the client's own key (RFC 7523 §2.2): no shared secret.
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    /// The registered name of the method.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::None),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            _ => None,
        }
    }
}

/// How a [`ClientRegistration`] came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationSource {
    /// Given by the application.
    PreRegistered,
    /// The client id is the URL of a Client ID Metadata Document.
    MetadataDocument,
    /// Issued by RFC 7591 dynamic registration.
    Dynamic,
}

/// A client identity at one authorization server. `Debug` redacts the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRegistration {
    /// The client identifier.
    pub client_id: String,
    /// The client secret, for confidential clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// How to authenticate at the token endpoint.
    pub auth_method: TokenEndpointAuthMethod,
    /// Redirect URIs the registration allows (empty when unknown).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// When the secret expires, seconds since the epoch; `None` or 0 for never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<u64>,
    /// Where the identity came from.
    pub source: RegistrationSource,
    /// The issuer this identity belongs to. When set, it is used with no other authorization
    /// server, so a secret never goes to one that an MCP server's metadata merely names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The key that signs client assertions, for [`TokenEndpointAuthMethod::PrivateKeyJwt`].
    /// Never stored: it comes from the configuration each time.
    #[serde(skip)]
    pub key: Option<ClientKey>,
}

impl ClientRegistration {
    /// A pre-registered public client.
    pub fn public(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: None,
            auth_method: TokenEndpointAuthMethod::None,
            redirect_uris: Vec::new(),
            client_secret_expires_at: None,
            source: RegistrationSource::PreRegistered,
            issuer: None,
            key: None,
        }
    }

    /// A pre-registered confidential client using `auth_method` at the token endpoint. Bind it
    /// with [`for_issuer`](Self::for_issuer): otherwise its secret goes to whichever
    /// authorization server the MCP server's metadata names.
    pub fn confidential(
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        auth_method: TokenEndpointAuthMethod,
    ) -> Self {
        Self {
            client_secret: Some(client_secret.into()),
            auth_method,
            ..Self::public(client_id)
        }
    }

    /// A pre-registered client that authenticates with a JWT signed by `key` (RFC 7523
    /// `private_key_jwt`); the authorization server knows the public half. Bind it with
    /// [`for_issuer`](Self::for_issuer), since the assertion's audience is that issuer.
    pub fn private_key_jwt(client_id: impl Into<String>, key: ClientKey) -> Self {
        Self {
            auth_method: TokenEndpointAuthMethod::PrivateKeyJwt,
            key: Some(key),
            ..Self::public(client_id)
        }
    }

    /// Whether this registration can be used with `redirect_uri`: an exact match, since not every
    /// server follows RFC 8252 §7.3 on loopback ports. Unknown redirect URIs (pre-registered
    /// clients, metadata documents) always match.
    pub(crate) fn allows_redirect(&self, redirect_uri: &Url) -> bool {
        self.redirect_uris.is_empty()
            || self
                .redirect_uris
                .iter()
                .any(|registered| registered == redirect_uri.as_str())
    }

    /// Binds the identity to the authorization server `issuer` (its metadata's `issuer`).
    pub fn for_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Refuses an authorization server other than the one this identity is bound to.
    pub(crate) fn check_issuer(&self, issuer: &str) -> Result<()> {
        match &self.issuer {
            Some(bound) if !crate::client::discovery::same_issuer(bound, issuer) => {
                Err(Error::new(
                    ErrorKind::IssuerMismatch,
                    format!(
                    "the configured client belongs to the authorization server {bound}, but the \
                     MCP server names {issuer}; its credentials are not sent there"
                ),
                ))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn secret_expired(&self, now: u64) -> bool {
        matches!(self.client_secret_expires_at, Some(at) if at != 0 && at <= now)
    }
}

/// What the application says about its client identity and how to register.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// A client registered out of band; used first when present.
    pub pre_registered: Option<ClientRegistration>,
    /// An https URL serving this client's Client ID Metadata Document; used when the
    /// authorization server advertises `client_id_metadata_document_supported`.
    pub metadata_document_url: Option<Url>,
    /// The name shown on consent pages when registering dynamically.
    pub client_name: String,
    /// The client's home page, sent at registration.
    pub client_uri: Option<String>,
    /// Whether to register dynamically when nothing else applies (default: yes).
    pub dynamic_registration: bool,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            pre_registered: None,
            metadata_document_url: None,
            client_name: "tower-mcp-oauth client".into(),
            client_uri: None,
            dynamic_registration: true,
        }
    }
}

/// Picks the client identity for an authorization server: the pre-registered one, else the Client
/// ID Metadata Document URL when the server supports it, else a dynamic registration.
///
/// # Errors
/// [`ErrorKind::Registration`] when nothing applies or registration is refused;
/// [`ErrorKind::InsecureUrl`] for an http registration endpoint or metadata URL off loopback.
/// `redirect_uri` is `None` for a client that only signs in on another device, and
/// `device_grant` asks dynamic registration for the device authorization grant too.
pub(crate) async fn obtain_client(
    http: &HttpClient,
    metadata: &AuthorizationServerMetadata,
    settings: &ClientSettings,
    redirect_uri: Option<&Url>,
    device_grant: bool,
) -> Result<ClientRegistration> {
    if let Some(pre) = &settings.pre_registered {
        return Ok(pre.clone());
    }
    if let Some(url) = &settings.metadata_document_url {
        if metadata.client_id_metadata_document_supported {
            if url.scheme() != "https" || url.path() == "/" {
                return Err(Error::new(
                    ErrorKind::Config,
                    "a client ID metadata document URL must be https and have a path",
                ));
            }
            tracing::debug!(client_id = %url, "using a client ID metadata document");
            return Ok(ClientRegistration {
                client_id: url.to_string(),
                client_secret: None,
                auth_method: TokenEndpointAuthMethod::None,
                redirect_uris: Vec::new(),
                client_secret_expires_at: None,
                source: RegistrationSource::MetadataDocument,
                issuer: Some(metadata.issuer.clone()),
                key: None,
            });
        }
    }
    let Some(endpoint) = metadata.registration_endpoint.as_deref() else {
        return Err(Error::new(
            ErrorKind::Registration,
            "the authorization server offers no way to register this client: configure a \
             pre-registered client id (or a client ID metadata document URL)",
        ));
    };
    if !settings.dynamic_registration {
        return Err(Error::new(
            ErrorKind::Registration,
            "dynamic client registration is disabled and no other registration method applies",
        ));
    }
    let endpoint = parse_url(endpoint, "registration_endpoint")?;
    http.check_url(&endpoint, "registration endpoint")?;
    register_dynamically(
        http,
        &endpoint,
        metadata,
        settings,
        redirect_uri,
        device_grant,
    )
    .await
}

fn preferred_auth_method(metadata: &AuthorizationServerMetadata) -> TokenEndpointAuthMethod {
    let Some(supported) = &metadata.token_endpoint_auth_methods_supported else {
        // RFC 8414 §2: the default is client_secret_basic, but a native client has no secret to
        // keep; ask to be public and accept what the server answers.
        return TokenEndpointAuthMethod::None;
    };
    [
        TokenEndpointAuthMethod::None,
        TokenEndpointAuthMethod::ClientSecretBasic,
        TokenEndpointAuthMethod::ClientSecretPost,
    ]
    .into_iter()
    .find(|m| supported.iter().any(|s| s == m.as_str()))
    .unwrap_or(TokenEndpointAuthMethod::None)
}

async fn register_dynamically(
    http: &HttpClient,
    endpoint: &Url,
    metadata: &AuthorizationServerMetadata,
    settings: &ClientSettings,
    redirect_uri: Option<&Url>,
    device_grant: bool,
) -> Result<ClientRegistration> {
    let requested_method = preferred_auth_method(metadata);
    let application_type = match redirect_uri {
        Some(uri) if !crate::http::is_loopback_host(uri) && uri.scheme() == "https" => "web",
        _ => "native",
    };
    let mut grant_types = Vec::new();
    if redirect_uri.is_some() {
        grant_types.push("authorization_code".to_owned());
    }
    grant_types.push("refresh_token".to_owned());
    if device_grant {
        grant_types.push(crate::client::wire::DEVICE_CODE_GRANT.to_owned());
    }
    let request = ClientMetadata {
        redirect_uris: redirect_uri.iter().map(|uri| uri.to_string()).collect(),
        token_endpoint_auth_method: Some(requested_method.as_str().into()),
        grant_types,
        response_types: if redirect_uri.is_some() {
            vec!["code".into()]
        } else {
            Vec::new()
        },
        client_name: Some(settings.client_name.clone()),
        client_uri: settings.client_uri.clone(),
        application_type: Some(application_type.into()),
        ..Default::default()
    };
    let response = http
        .post_json(endpoint, &request)
        .instrument(tracing::info_span!("register", endpoint = %redact_url(endpoint)))
        .await?;
    if response.status().is_client_error() {
        let detail = serde_json::from_slice::<OAuthErrorResponse>(response.body())
            .map(|e| {
                let error = crate::error::peer_text(&e.error, 64);
                match e.error_description {
                    Some(description) => {
                        format!(": {error} ({})", crate::error::peer_text(&description, 200))
                    }
                    None => format!(": {error}"),
                }
            })
            .unwrap_or_default();
        return Err(Error::new(
            ErrorKind::Registration,
            format!(
                "dynamic client registration was refused ({}){detail}",
                response.status()
            ),
        ));
    }
    let info: ClientInformationResponse = parse_json(&response, "client registration response")?;
    if info.client_id.is_empty() {
        return Err(Error::new(
            ErrorKind::Registration,
            "the registration response has an empty client_id",
        ));
    }
    let auth_method = match info.metadata.token_endpoint_auth_method.as_deref() {
        Some(method) => TokenEndpointAuthMethod::parse(method).ok_or_else(|| {
            Error::new(
                ErrorKind::Registration,
                format!("the server registered the client with an unsupported token endpoint auth method `{method}`"),
            )
        })?,
        // No method in the answer: the one we asked for, or basic when a secret came back.
        None if info.client_secret.is_some() && requested_method == TokenEndpointAuthMethod::None => {
            TokenEndpointAuthMethod::ClientSecretBasic
        }
        None => requested_method,
    };
    if auth_method != TokenEndpointAuthMethod::None && info.client_secret.is_none() {
        return Err(Error::new(
            ErrorKind::Registration,
            format!(
                "the server registered a {} client but issued no client_secret",
                auth_method.as_str()
            ),
        ));
    }
    let redirect_uris = if info.metadata.redirect_uris.is_empty() {
        redirect_uri.iter().map(|uri| uri.to_string()).collect()
    } else {
        info.metadata.redirect_uris.clone()
    };
    let registration = ClientRegistration {
        client_id: info.client_id,
        client_secret: info.client_secret.map(Secret::new),
        auth_method,
        redirect_uris,
        client_secret_expires_at: info.client_secret_expires_at,
        source: RegistrationSource::Dynamic,
        issuer: Some(metadata.issuer.clone()),
        key: None,
    };
    // Kept, such a registration would be refused at the next sign-in and replaced by another,
    // on every sign-in: say what is wrong once instead.
    if let Some(redirect_uri) = redirect_uri.filter(|uri| !registration.allows_redirect(uri)) {
        return Err(Error::new(
            ErrorKind::Registration,
            format!(
                "the server registered other redirect URIs than the one asked for ({}); register the client out of band with the redirect URI the server allows",
                redact_url(redirect_uri)
            ),
        ));
    }
    if registration.secret_expired(now_secs()) {
        return Err(Error::new(
            ErrorKind::Registration,
            "the server issued a client secret that has already expired",
        ));
    }
    tracing::info!(client_id = %registration.client_id, auth_method = auth_method.as_str(), "registered client");
    Ok(registration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidential_debug_hides_the_secret() {
        let c = ClientRegistration::confidential(
            "id",
            "s3cret-value",
            TokenEndpointAuthMethod::ClientSecretBasic,
        );
        assert!(!format!("{c:?}").contains("s3cret-value"));
    }

    #[test]
    fn a_bound_client_matches_its_issuer_as_discovery_does() {
        let client = ClientRegistration::public("app").for_issuer("https://auth.example.com");
        assert!(client.check_issuer("https://auth.example.com").is_ok());
        assert!(client.check_issuer("https://auth.example.com/").is_ok());
        let err = client.check_issuer("https://evil.example.com").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IssuerMismatch);
        assert!(ClientRegistration::public("app")
            .check_issuer("https://any.example")
            .is_ok());
    }
}
