//! How a client gets tokens: a user's approval (the authorization code flow), or one of the
//! grants that need no user: client credentials (SEP-1046), a workload's identity token
//! (RFC 7523 JWT bearer, SEP-1933), or the enterprise IdP's identity assertion (SEP-990: an
//! RFC 8693 token exchange for an ID-JAG, then the JWT-bearer grant with it).

use url::Url;

use crate::client::assertion::TokenSource;
use crate::client::discovery::{fetch_authorization_server_metadata, Discovery};
use crate::client::registration::ClientRegistration;
use crate::client::tokens::{self, TokenEndpoint};
use crate::error::{Error, ErrorKind, Result};
use crate::http::HttpClient;
use crate::secret::Secret;

/// `grant_type` of RFC 8693 token exchange.
pub(crate) const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of an Identity Assertion JWT Authorization Grant (ID-JAG).
pub const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";
/// The RFC 8693 token type of an OpenID Connect ID token.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The RFC 8693 token type of a SAML 2.0 assertion.
pub const SAML2_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:saml2";

/// How an [`OAuthConfig`](super::OAuthConfig) obtains tokens.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Grant {
    /// A user approves in the browser: the PKCE authorization code flow, driven by the
    /// configured [`AuthorizationHandler`](super::AuthorizationHandler).
    #[default]
    AuthorizationCode,
    /// The client acts on its own behalf (OAuth 2.1 §4.2, MCP SEP-1046), authenticated by the
    /// configured [`ClientRegistration`]: a secret (`client_secret_basic`,
    /// `client_secret_post`) or its key (`private_key_jwt`).
    ClientCredentials,
    /// Workload identity federation (SEP-1933): the RFC 7523 JWT-bearer grant with a token
    /// the platform gives the workload (a Kubernetes service-account token, a SPIFFE JWT-SVID,
    /// a CI job's OIDC token), read from `assertion` at every acquisition.
    JwtBearer {
        /// Where the workload's token is read from.
        assertion: TokenSource,
    },
    /// Enterprise-managed authorization (SEP-990): the user's token from the enterprise IdP is
    /// exchanged there for an ID-JAG naming the MCP server's authorization server and
    /// resource, which that authorization server then takes in the JWT-bearer grant.
    EnterpriseManaged(EnterpriseGrant),
}

impl Grant {
    /// Whether tokens come without a user, so a due token can always be replaced.
    pub(crate) fn needs_no_user(&self) -> bool {
        !matches!(self, Self::AuthorizationCode)
    }

    /// The grant's name in messages and logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::ClientCredentials => "client_credentials",
            Self::JwtBearer { .. } => "jwt_bearer",
            Self::EnterpriseManaged(_) => "enterprise_managed",
        }
    }
}

/// Where the enterprise IdP's token endpoint is.
#[derive(Debug, Clone)]
enum IdpEndpoint {
    /// Discovered from the IdP's metadata (RFC 8414, or OpenID Connect discovery).
    Issuer(Url),
    /// Given: the issuer (the audience of client assertions) and the endpoint.
    TokenEndpoint { issuer: String, url: Url },
}

/// The enterprise IdP side of [`Grant::EnterpriseManaged`]: where the IdP is, who the client
/// is there, and the user's token it exchanges.
#[derive(Debug, Clone)]
pub struct EnterpriseGrant {
    // Boxed: a Grant stays small next to its other variants.
    idp: Box<IdpEndpoint>,
    idp_client: Box<ClientRegistration>,
    subject_token: TokenSource,
    subject_token_type: String,
}

impl EnterpriseGrant {
    /// The IdP at `issuer` (its token endpoint found in its metadata), with the client
    /// registered there and the user's ID token from `id_token`.
    pub fn new(issuer: Url, idp_client: ClientRegistration, id_token: TokenSource) -> Self {
        Self {
            idp: Box::new(IdpEndpoint::Issuer(issuer)),
            idp_client: Box::new(idp_client),
            subject_token: id_token,
            subject_token_type: ID_TOKEN_TYPE.into(),
        }
    }

    /// The IdP's token endpoint given outright, for an IdP without metadata; `issuer` is its
    /// issuer identifier (the audience of `private_key_jwt` assertions there).
    pub fn with_token_endpoint(
        issuer: impl Into<String>,
        token_endpoint: Url,
        idp_client: ClientRegistration,
        id_token: TokenSource,
    ) -> Self {
        Self {
            idp: Box::new(IdpEndpoint::TokenEndpoint {
                issuer: issuer.into(),
                url: token_endpoint,
            }),
            idp_client: Box::new(idp_client),
            subject_token: id_token,
            subject_token_type: ID_TOKEN_TYPE.into(),
        }
    }

    /// Another type of subject token than an ID token ([`SAML2_TOKEN_TYPE`], say).
    pub fn subject_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.subject_token_type = token_type.into();
        self
    }

    /// RFC 8693 token exchange at the IdP: the subject token for an ID-JAG whose audience is
    /// the MCP server's authorization server and whose resource is the MCP server.
    pub(crate) async fn exchange(
        &self,
        http: &HttpClient,
        discovery: &Discovery,
        resource: Option<&str>,
        scope: &str,
        extra_params: &[(String, String)],
    ) -> Result<Secret> {
        let (issuer, url) = match &*self.idp {
            IdpEndpoint::TokenEndpoint { issuer, url } => (issuer.clone(), url.to_string()),
            IdpEndpoint::Issuer(issuer) => {
                let metadata = fetch_authorization_server_metadata(http, issuer).await?;
                let url = metadata.token_endpoint.clone().ok_or_else(|| {
                    Error::new(
                        ErrorKind::DiscoveryFailed,
                        format!(
                            "the enterprise IdP {} publishes no token_endpoint",
                            metadata.issuer
                        ),
                    )
                })?;
                (metadata.issuer, url)
            }
        };
        self.idp_client.check_issuer(&issuer)?;
        let endpoint = TokenEndpoint {
            url: &url,
            issuer: &issuer,
            client: &self.idp_client,
            extra_params,
        };
        let subject_token = self.subject_token.read().await?;
        let mut params = vec![
            ("requested_token_type", ID_JAG_TOKEN_TYPE),
            ("audience", discovery.issuer()),
            ("subject_token", subject_token.expose()),
            ("subject_token_type", self.subject_token_type.as_str()),
        ];
        if let Some(resource) = resource {
            params.push(("resource", resource));
        }
        if !scope.is_empty() {
            params.push(("scope", scope));
        }
        let response =
            tokens::request(http, &endpoint, TOKEN_EXCHANGE_GRANT, &params, None).await?;
        if response.issued_token_type.as_deref() != Some(ID_JAG_TOKEN_TYPE) {
            return Err(Error::new(
                ErrorKind::InvalidResponse,
                format!(
                    "the enterprise IdP answered the token exchange with a {:?} instead of an ID-JAG",
                    response.issued_token_type.as_deref().unwrap_or("token of no stated type")
                ),
            ));
        }
        if !crate::client::wire::is_attachable(response.access_token.expose()) {
            return Err(Error::new(
                ErrorKind::InvalidResponse,
                "the enterprise IdP issued an ID-JAG that is not one token",
            ));
        }
        tracing::info!("identity assertion (ID-JAG) obtained from the enterprise IdP");
        Ok(response.access_token)
    }
}
