//! [`OAuthState`]: the seed's step-by-step API, and [`OAuthConfig`], how it talks to servers,
//! remembers credentials and asks the user.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::client::authorization::{self, PendingAuthorization};
use crate::client::discovery::Discovery;
use crate::client::handler::AuthorizationHandler;
use crate::client::layer::AuthorizedHttpClient;
use crate::client::registration::{ClientRegistration, ClientSettings};
use crate::client::session::{FlightOp, Session};
use crate::client::store::{CredentialStore, MemoryStore};
use crate::client::tokens::TokenSet;
use crate::error::{Error, ErrorKind, Result};
use crate::http::{redact_url, HttpClient};

/// The MCP protocol version sent on discovery requests unless configured otherwise.
pub const DEFAULT_PROTOCOL_VERSION: &str = "2025-11-25";

/// How an [`OAuthState`] talks to servers, remembers credentials and asks the user.
#[derive(Clone)]
pub struct OAuthConfig {
    pub(crate) http: HttpClient,
    pub(crate) store: Arc<dyn CredentialStore>,
    pub(crate) client: ClientSettings,
    pub(crate) handler: Option<Arc<dyn AuthorizationHandler>>,
    pub(crate) protocol_version: String,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) refresh_margin: Duration,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("http", &self.http)
            .field("client", &self.client)
            .field("has_handler", &self.handler.is_some())
            .field("protocol_version", &self.protocol_version)
            .field("scopes", &self.scopes)
            .field("refresh_margin", &self.refresh_margin)
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
            protocol_version: DEFAULT_PROTOCOL_VERSION.into(),
            scopes: None,
            refresh_margin: Duration::from_secs(60),
        }
    }
}

impl OAuthConfig {
    /// The defaults: hyper client, memory store, dynamic registration, no interactive handler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `http` for every OAuth and MCP request.
    pub fn with_http(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    /// Keeps credentials in `store`.
    pub fn with_store(mut self, store: impl CredentialStore) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// Keeps credentials in a shared `store`.
    pub fn with_shared_store(mut self, store: Arc<dyn CredentialStore>) -> Self {
        self.store = store;
        self
    }

    /// Uses a client registered out of band.
    pub fn with_client(mut self, client: ClientRegistration) -> Self {
        self.client.pre_registered = Some(client);
        self
    }

    /// Uses the Client ID Metadata Document at `url` where the server supports it.
    pub fn with_client_metadata_url(mut self, url: Url) -> Self {
        self.client.metadata_document_url = Some(url);
        self
    }

    /// The client name sent at dynamic registration.
    pub fn with_client_name(mut self, name: impl Into<String>) -> Self {
        self.client.client_name = name.into();
        self
    }

    /// Whether dynamic registration may be used (default: yes).
    pub fn with_dynamic_registration(mut self, enabled: bool) -> Self {
        self.client.dynamic_registration = enabled;
        self
    }

    /// The interactive step used when a 401 needs a new authorization.
    pub fn with_handler(mut self, handler: impl AuthorizationHandler) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// The `MCP-Protocol-Version` sent on discovery requests.
    pub fn with_protocol_version(mut self, version: impl Into<String>) -> Self {
        self.protocol_version = version.into();
        self
    }

    /// Scopes to ask for instead of the ones the server suggests.
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// How long before expiry a token is refreshed (default 60 s).
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }
}

/// The seed's OAuth state machine: discovery, registration, authorization URL, callback.
///
/// ```no_run
/// # async fn example() -> Result<(), tower_mcp_oauth::Error> {
/// use tower_mcp_oauth::client::OAuthState;
///
/// let mut oauth_state = OAuthState::new("http://127.0.0.1:8000/mcp", None).await?;
/// oauth_state
///     .start_authorization(&["mcp", "profile", "email"], "http://127.0.0.1:8080/callback")
///     .await?;
/// let auth_url = oauth_state.get_authorization_url().await?;
/// println!("Open {auth_url}");
/// // …the user approves; the redirect brings a code and the state back…
/// # let (code, state) = ("", "");
/// let credentials = oauth_state.handle_callback(code, state).await?;
/// let client = oauth_state.to_authorized_http_client().await?;
/// # let _ = (credentials, client);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OAuthState {
    pub(crate) session: Arc<Session>,
}

impl std::fmt::Debug for OAuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthState")
            .field("server_url", &redact_url(&self.session.server_url))
            .field("authorized", &self.session.snapshot().is_some())
            .finish_non_exhaustive()
    }
}

impl OAuthState {
    /// State for the MCP server at `server_url`, restoring stored credentials when the
    /// configured store has some. `None` uses [`OAuthConfig::default`].
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a URL that is not absolute http(s), [`ErrorKind::InsecureUrl`]
    /// for plain http off loopback, [`ErrorKind::Storage`] when the store cannot be read.
    pub async fn new(server_url: impl AsRef<str>, config: Option<OAuthConfig>) -> Result<Self> {
        let server_url = Url::parse(server_url.as_ref()).map_err(|e| {
            Error::new(ErrorKind::Config, "the MCP server URL is not a valid URL").with_source(e)
        })?;
        crate::http::ensure_secure_url(&server_url, "MCP server URL")?;
        let session = Arc::new(Session::new(server_url, config.unwrap_or_default()));
        session.restore().await?;
        Ok(Self { session })
    }

    /// The MCP server this state is for.
    pub fn server_url(&self) -> &Url {
        &self.session.server_url
    }

    /// Discovers the authorization server, registers the client if needed and prepares the
    /// authorization URL for `scopes` (empty: the scopes the resource suggests) and
    /// `redirect_uri` (https, or http on a loopback host).
    ///
    /// # Errors
    /// Discovery and registration errors; [`ErrorKind::PkceNotSupported`]; [`ErrorKind::Config`]
    /// for a bad redirect URI.
    pub async fn start_authorization(&mut self, scopes: &[&str], redirect_uri: &str) -> Result<()> {
        let redirect_uri = Url::parse(redirect_uri).map_err(|e| {
            Error::new(ErrorKind::Config, "the redirect URI is not a valid URL").with_source(e)
        })?;
        authorization::validate_redirect_uri(&redirect_uri)?;
        let scopes = (!scopes.is_empty()).then(|| scopes.iter().map(|s| (*s).to_owned()).collect());
        self.session.begin_manual(scopes, &redirect_uri).await?;
        Ok(())
    }

    /// The URL to send the user to.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when [`Self::start_authorization`] has not run.
    pub async fn get_authorization_url(&self) -> Result<String> {
        self.pending().map(|p| p.url.to_string())
    }

    fn pending(&self) -> Result<PendingAuthorization> {
        self.session.with(|s| s.pending.clone()).ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "no authorization in progress: call start_authorization first",
            )
        })
    }

    /// Completes authorization with the `code` and `state` from the redirect and returns the
    /// tokens. The RFC 9207 `iss` check needs the whole redirect: prefer
    /// [`Self::handle_redirect`] where you have it.
    ///
    /// # Errors
    /// [`ErrorKind::StateMismatch`], token endpoint errors.
    pub async fn handle_callback(&mut self, code: &str, state: &str) -> Result<TokenSet> {
        let pending = self.pending()?;
        let callback = pending.verify(Some(code), Some(state), None, None, false)?;
        self.session.finish_manual(&pending, &callback.code).await
    }

    /// Completes authorization from the whole redirect URL the browser was sent to, checking
    /// `state`, `iss` and error responses.
    ///
    /// # Errors
    /// [`ErrorKind::StateMismatch`], [`ErrorKind::IssuerMismatch`],
    /// [`ErrorKind::AuthorizationDenied`], token endpoint errors.
    pub async fn handle_redirect(&mut self, redirect_url: &str) -> Result<TokenSet> {
        let pending = self.pending()?;
        let redirect = Url::parse(redirect_url).map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse,
                "the redirect URL is not a valid URL",
            )
            .with_source(e)
        })?;
        let callback = pending.verify_redirect(&redirect)?;
        self.session.finish_manual(&pending, &callback.code).await
    }

    /// What discovery found, once it has run (or was restored from the store).
    pub async fn discovery(&self) -> Option<Discovery> {
        self.session.with(|s| s.discovery.clone())
    }

    /// The client identity in use, once there is one.
    pub async fn client_registration(&self) -> Option<ClientRegistration> {
        self.session
            .config
            .client
            .pre_registered
            .clone()
            .or_else(|| self.session.with(|s| s.client.clone()))
    }

    /// The current tokens, if any.
    pub async fn credentials(&self) -> Option<TokenSet> {
        self.session.tokens()
    }

    /// Runs the whole flow through the configured [`AuthorizationHandler`] now, instead of
    /// waiting for a 401.
    ///
    /// # Errors
    /// As the individual steps; [`ErrorKind::NotAuthorized`] without a handler.
    pub async fn authorize(&self) -> Result<TokenSet> {
        self.session.run_now(FlightOp::Authorize).await?;
        self.tokens_or_error()
    }

    /// Refreshes the access token now.
    ///
    /// # Errors
    /// Token endpoint errors; [`ErrorKind::InvalidGrant`] without a usable refresh token.
    pub async fn refresh(&self) -> Result<TokenSet> {
        self.session.run_now(FlightOp::RefreshOnly).await?;
        self.tokens_or_error()
    }

    fn tokens_or_error(&self) -> Result<TokenSet> {
        self.session
            .tokens()
            .ok_or_else(|| Error::new(ErrorKind::NotAuthorized, "there are no tokens"))
    }

    /// An HTTP client for the MCP server that attaches the token, refreshes it, and on a 401
    /// authorizes again (through the configured handler) and replays the request once.
    ///
    /// # Errors
    /// None yet; the signature leaves room for checks.
    pub async fn to_authorized_http_client(&self) -> Result<AuthorizedHttpClient> {
        Ok(AuthorizedHttpClient::new(self.session.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::BearerChallenge;
    use crate::client::session::select_scopes;
    use crate::client::TokenEndpointAuthMethod;
    use crate::metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};

    fn discovery(prm_scopes: Option<Vec<&str>>, as_scopes: Option<Vec<&str>>) -> Discovery {
        let strings = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
        Discovery {
            resource: Some("https://mcp.example.com/mcp".into()),
            resource_metadata: Some(ProtectedResourceMetadata {
                resource: "https://mcp.example.com/mcp".into(),
                authorization_servers: vec!["https://auth.example.com".into()],
                scopes_supported: prm_scopes.map(strings),
                bearer_methods_supported: None,
                resource_name: None,
                jwks_uri: None,
                extra: Default::default(),
            }),
            authorization_server: AuthorizationServerMetadata {
                issuer: "https://auth.example.com".into(),
                scopes_supported: as_scopes.map(strings),
                ..Default::default()
            },
            default_endpoints: false,
        }
    }

    #[test]
    fn scope_selection_prefers_the_challenge_then_the_resource() {
        let d = discovery(Some(vec!["a", "b"]), None);
        let challenge = BearerChallenge {
            scope: Some("x y".into()),
            ..Default::default()
        };
        assert_eq!(select_scopes(Some(&challenge), &d), vec!["x", "y"]);
        assert_eq!(select_scopes(None, &d), vec!["a", "b"]);
        assert!(select_scopes(None, &discovery(None, None)).is_empty());
    }

    #[test]
    fn offline_access_only_when_the_server_lists_it() {
        let d = discovery(Some(vec!["a"]), Some(vec!["a", "offline_access"]));
        assert_eq!(select_scopes(None, &d), vec!["a", "offline_access"]);
        let d = discovery(Some(vec!["a"]), Some(vec!["a"]));
        assert_eq!(select_scopes(None, &d), vec!["a"]);
    }

    #[test]
    fn confidential_debug_hides_the_secret() {
        let c = ClientRegistration::confidential(
            "id",
            "s3cret-value",
            TokenEndpointAuthMethod::ClientSecretBasic,
        );
        assert!(!format!("{c:?}").contains("s3cret-value"));
    }
}

#[cfg(test)]
mod send_tests {
    fn assert_send<T: Send>(_: T) {}

    #[allow(dead_code)]
    fn futures_are_send(client: super::AuthorizedHttpClient, state: super::OAuthState) {
        assert_send(async move {
            let _ = client.send(http::Request::new(Default::default())).await;
            let _ = state.authorize().await;
            let _ = state.refresh().await;
        });
    }
}
