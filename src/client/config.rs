//! [`OAuthConfig`]: how an [`OAuthState`](super::OAuthState) talks to servers, remembers
//! credentials and asks the user.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::client::device::DevicePrompt;
use crate::client::discovery::DEFAULT_PROTOCOL_VERSION;
use crate::client::dpop::DpopMode;
use crate::client::grant::Grant;
use crate::client::handler::AuthorizationHandler;
use crate::client::registration::{ClientRegistration, ClientSettings};
use crate::client::request_options::{is_protocol_param, RequestOptions};
use crate::client::store::{CredentialStore, MemoryStore};
use crate::http::HttpClient;

/// How an [`OAuthState`](super::OAuthState) talks to servers, remembers credentials and asks the user.
#[derive(Clone)]
pub struct OAuthConfig {
    pub(crate) http: HttpClient,
    pub(crate) store: Arc<dyn CredentialStore>,
    pub(crate) client: ClientSettings,
    pub(crate) handler: Option<Arc<dyn AuthorizationHandler>>,
    pub(crate) device_prompt: Option<Arc<dyn DevicePrompt>>,
    pub(crate) protocol_version: String,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) refresh_margin: Duration,
    pub(crate) dpop: DpopMode,
    pub(crate) grant: Grant,
    pub(crate) requests: RequestOptions,
    /// The key credentials are kept under instead of the server URL.
    pub(crate) credentials_key: Option<String>,
    /// Send the ID token instead of the access token.
    pub(crate) present_id_token: bool,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("http", &self.http)
            .field("client", &self.client)
            .field("has_handler", &self.handler.is_some())
            .field("device_authorization", &self.device_prompt.is_some())
            .field("protocol_version", &self.protocol_version)
            .field("scopes", &self.scopes)
            .field("refresh_margin", &self.refresh_margin)
            .field("dpop", &self.dpop)
            .field("grant", &self.grant)
            .field("requests", &self.requests)
            .field("credentials_key", &self.credentials_key)
            .finish_non_exhaustive()
    }
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            http: HttpClient::new(),
            store: Arc::new(MemoryStore::new()),
            client: ClientSettings::default(),
            handler: None,
            device_prompt: None,
            protocol_version: DEFAULT_PROTOCOL_VERSION.into(),
            scopes: None,
            refresh_margin: Duration::from_secs(60),
            dpop: DpopMode::Auto,
            grant: Grant::default(),
            requests: RequestOptions::default(),
            credentials_key: None,
            present_id_token: false,
        }
    }
}

impl OAuthConfig {
    /// The defaults: hyper client, memory store, dynamic registration, no interactive handler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `http` for every OAuth and MCP request.
    pub fn http(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    /// Keeps credentials in `store`.
    pub fn store(mut self, store: impl CredentialStore) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// Keeps credentials in a shared `store`.
    pub fn shared_store(mut self, store: Arc<dyn CredentialStore>) -> Self {
        self.store = store;
        self
    }

    /// Uses a client registered out of band.
    pub fn client(mut self, client: ClientRegistration) -> Self {
        self.client.pre_registered = Some(client);
        self
    }

    /// Uses the Client ID Metadata Document at `url` where the server supports it.
    pub fn client_metadata_url(mut self, url: Url) -> Self {
        self.client.metadata_document_url = Some(url);
        self
    }

    /// The client name sent at dynamic registration.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client.client_name = name.into();
        self
    }

    /// Whether dynamic registration may be used (default: yes).
    pub fn dynamic_registration(mut self, enabled: bool) -> Self {
        self.client.dynamic_registration = enabled;
        self
    }

    /// The interactive step used when a 401 needs a new authorization.
    pub fn handler(mut self, handler: impl AuthorizationHandler) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// Signs the user in with the device authorization grant (RFC 8628) where the
    /// authorization server offers it (a `device_authorization_endpoint`): `prompt` shows the
    /// user a page to open on any device and a code to type there, while the layer polls for
    /// the tokens. For machines without a browser. Where the server offers no device grant,
    /// the [`handler`](Self::handler) signs in as usual.
    ///
    /// ```
    /// use tower_mcp_oauth::client::{DeviceAuthorization, OAuthConfig};
    ///
    /// let config = OAuthConfig::new().device_authorization(|device: &DeviceAuthorization| {
    ///     eprintln!("Open {} and type {}", device.verification_uri, device.user_code);
    /// });
    /// # let _ = config;
    /// ```
    pub fn device_authorization(mut self, prompt: impl DevicePrompt) -> Self {
        self.device_prompt = Some(Arc::new(prompt));
        self
    }

    /// The `MCP-Protocol-Version` sent on discovery requests.
    pub fn protocol_version(mut self, version: impl Into<String>) -> Self {
        self.protocol_version = version.into();
        self
    }

    /// Scopes to ask for instead of the ones the server suggests.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// How long before expiry a token is refreshed (default 60 s).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// When tokens are bound to a DPoP key (RFC 9449; default [`DpopMode::Auto`]: whenever the
    /// authorization server offers it). The key is made per client and authorization server
    /// and kept in the store with the tokens.
    pub fn dpop(mut self, mode: DpopMode) -> Self {
        self.dpop = mode;
        self
    }

    /// How tokens are obtained (default [`Grant::AuthorizationCode`], through the
    /// [`handler`](Self::handler)). The other grants need no user: the layer obtains tokens on
    /// first use and again before they expire or when the server refuses them.
    pub fn grant(mut self, grant: Grant) -> Self {
        self.grant = grant;
        self
    }

    /// Adds a parameter to authorization requests, for providers that want one (Auth0's
    /// `audience`, `prompt=consent`, …). The protocol's own parameters cannot be replaced.
    pub fn authorization_param(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        let name = name.into();
        if is_protocol_param(&name) {
            tracing::warn!(%name, "ignoring an extra parameter that the protocol sets itself");
        } else {
            self.requests
                .authorization_params
                .push((name, value.into()));
        }
        self
    }

    /// Whether asking an OpenID provider (one listing the `openid` scope) for `offline_access`
    /// also asks `prompt=consent` (default: yes). OpenID Connect Core §11 lets a provider drop
    /// `offline_access` otherwise, leaving the client without a refresh token; turn it off for
    /// a provider that issues refresh tokens without it and shows a consent screen every time
    /// with it (or where users may not consent themselves). A `prompt` set with
    /// [`Self::authorization_param`] always wins.
    pub fn consent_prompt_for_offline_access(mut self, ask: bool) -> Self {
        self.requests.consent_prompt_for_offline_access = ask;
        self
    }

    /// Sends the OpenID Connect ID token (as `Bearer`) instead of the access token, for servers
    /// that check who the caller is against the provider's keys rather than an access token
    /// (AWS Cognito in front of Bedrock AgentCore). Renewal follows the ID token's own `exp`. An
    /// ID token comes only with `openid` among the scopes; without one the access token is sent.
    pub fn present_id_token(mut self, present: bool) -> Self {
        self.present_id_token = present;
        self
    }

    /// Adds a parameter to every token request at the MCP server's authorization server
    /// (Auth0's `audience`, for one). The protocol's own parameters cannot be replaced.
    pub fn token_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        if is_protocol_param(&name) {
            tracing::warn!(%name, "ignoring an extra parameter that the protocol sets itself");
        } else {
            self.requests.token_params.push((name, value.into()));
        }
        self
    }

    /// Whether the RFC 8707 `resource` indicator is sent (default: yes, as MCP requires).
    /// Switch it off only for a provider that refuses it, such as Entra ID's v2 endpoints
    /// with scopes that already name the API.
    pub fn resource_indicator(mut self, send: bool) -> Self {
        self.requests.send_resource = send;
        self
    }

    /// The RFC 8707 `resource` to ask tokens for, instead of the one the server's metadata
    /// names: one tenant of a multi-tenant server, say. Tokens for different resources are
    /// kept apart only with different [`credentials_key`](Self::credentials_key)s.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.requests.resource = Some(resource.into());
        self
    }

    /// The key credentials are kept under in the store (default: the server URL). Two
    /// configurations for one server that must not share tokens (other resources, other
    /// headers) take two keys.
    pub fn credentials_key(mut self, key: impl Into<String>) -> Self {
        self.credentials_key = Some(key.into());
        self
    }
}
