//! Wire types shared by the client, the resource server and the authorization server: each JSON
//! field is defined once, here.
//!
//! Unknown fields are kept in `extra` so nothing a server sends is lost when a document is stored
//! and served again.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

/// The `_meta` key under which a tool, prompt or resource lists the scopes it needs, as a JSON
/// array of strings: the declaration `McpScopes::from_rmcp_tools` reads, and the hint
/// `FilterMcpListsLayer` puts on every listed item that
/// needs scopes. An extension key (the reverse-DNS prefix of the 2025-11-25 `_meta` rules),
/// so clients that do not know it ignore it. Our client's
/// `StepUpFromHints` asks for them before calling the tool.
pub const SCOPES_META_KEY: &str = "io.crates.tower-mcp-oauth/scopes";

/// OAuth 2.0 Protected Resource Metadata (RFC 9728 §2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    /// The resource identifier: the canonical URL of the MCP server.
    pub resource: String,
    /// Issuer identifiers of the authorization servers that protect it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    /// Scopes the resource uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// How bearer tokens may be sent (`header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_methods_supported: Option<Vec<String>>,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// The resource's JWK Set URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// DPoP proof algorithms the resource accepts (RFC 9449 §5.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    /// The resource accepts DPoP-bound tokens only (RFC 9449 §5.2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens_required: bool,
    /// Every other member, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// OAuth 2.0 Authorization Server Metadata (RFC 8414 §2), which OpenID Connect discovery extends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthorizationServerMetadata {
    /// The issuer identifier; must equal the URL the metadata was looked up for.
    pub issuer: String,
    /// Authorization endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// Token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    /// Dynamic client registration endpoint (RFC 7591).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    /// JWK Set URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Scopes the server knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes_supported: Option<Vec<String>>,
    /// Response types (`code`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_types_supported: Option<Vec<String>>,
    /// Grant types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types_supported: Option<Vec<String>>,
    /// Client authentication methods at the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// PKCE methods (RFC 7636); MCP requires `S256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// Revocation endpoint (RFC 7009).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    /// Introspection endpoint (RFC 7662).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// Device authorization endpoint (RFC 8628 §4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// RFC 9207: the server puts `iss` in authorization responses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authorization_response_iss_parameter_supported: bool,
    /// The server accepts Client ID Metadata Document URLs as `client_id`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_id_metadata_document_supported: bool,
    /// DPoP proof algorithms the server accepts; present when it issues DPoP-bound tokens
    /// (RFC 9449 §5.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
    /// Every other member, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AuthorizationServerMetadata {
    /// Whether PKCE with S256 is advertised.
    pub fn supports_s256(&self) -> bool {
        self.code_challenge_methods_supported
            .as_ref()
            .is_some_and(|methods| methods.iter().any(|m| m == "S256"))
    }

    /// Whether `scope` is among `scopes_supported`.
    pub fn supports_scope(&self, scope: &str) -> bool {
        self.scopes_supported
            .as_ref()
            .is_some_and(|scopes| scopes.iter().any(|s| s == scope))
    }
}

/// Client metadata (RFC 7591 §2): the body of a registration request, and the document a Client
/// ID Metadata Document URL serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientMetadata {
    /// The client's own URL when it is a Client ID Metadata Document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// How the client authenticates at the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    /// Grant types the client uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_types: Vec<String>,
    /// Response types the client uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_types: Vec<String>,
    /// Human-readable name shown on consent pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// Home page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// Space-separated scopes the client may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `native` or `web` (OpenID Connect registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    /// Software identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    /// Software version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// The client always uses DPoP-bound tokens (RFC 9449 §5.2): the server refuses its token
    /// requests without a proof.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    /// Where the client's public keys are (`private_key_jwt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The client's public keys, a JWKS document (`private_key_jwt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// Every other member, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A successful registration response (RFC 7591 §3.2.1). The secret is handled by the caller's
/// redacting types; this struct is only the wire shape.
#[derive(Clone, Deserialize)]
pub struct ClientInformationResponse {
    /// The issued client identifier.
    pub client_id: String,
    /// The issued secret, for confidential clients.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// When the secret expires (seconds since the epoch, 0 = never).
    #[serde(default)]
    pub client_secret_expires_at: Option<u64>,
    /// The registered metadata, as the server accepted it.
    #[serde(flatten)]
    pub metadata: ClientMetadata,
}

impl std::fmt::Debug for ClientInformationResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInformationResponse")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("redirect_uris", &self.metadata.redirect_uris)
            .field(
                "token_endpoint_auth_method",
                &self.metadata.token_endpoint_auth_method,
            )
            // `extra` may hold a registration_access_token (RFC 7592): never printed.
            .finish_non_exhaustive()
    }
}

/// An OAuth error response (RFC 6749 §5.2, RFC 7591 §3.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthErrorResponse {
    /// The error code.
    pub error: String,
    /// Human-readable text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// A page about the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
}

/// Whether two resource identifiers (RFC 8707) name the same resource, a trailing slash aside:
/// how the resource server checks `aud` and the authorization server matches what it was asked
/// for against what it serves.
#[cfg(any(feature = "server", feature = "authorization-server"))]
pub(crate) fn same_resource(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The well-known URL for `suffix`, inserted between the origin and the path of `base`
/// (RFC 8414 §3.1, RFC 9728 §3.1). `None` when `base` has no path.
pub fn path_inserted(base: &Url, suffix: &str) -> Option<Url> {
    let path = base.path().trim_end_matches('/');
    if path.is_empty() {
        return None;
    }
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.set_path(&format!("/.well-known/{suffix}{path}"));
    Some(url)
}

/// The well-known URL for `suffix` at the root of `base`'s origin.
pub fn at_root(base: &Url, suffix: &str) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.set_path(&format!("/.well-known/{suffix}"));
    url
}

/// The authorization server metadata URLs to try for `issuer`, in the MCP spec's order.
pub fn authorization_server_candidates(issuer: &Url) -> Vec<Url> {
    match path_inserted(issuer, "oauth-authorization-server") {
        Some(oauth) => {
            let mut oidc_appended = issuer.clone();
            oidc_appended.set_query(None);
            oidc_appended.set_fragment(None);
            oidc_appended.set_path(&format!(
                "{}/.well-known/openid-configuration",
                issuer.path().trim_end_matches('/')
            ));
            vec![
                oauth,
                path_inserted(issuer, "openid-configuration").expect("issuer has a path"),
                oidc_appended,
            ]
        }
        None => vec![
            at_root(issuer, "oauth-authorization-server"),
            at_root(issuer, "openid-configuration"),
        ],
    }
}
