//! [`OAuthState`]: the step-by-step API (discover, register, authorization URL, callback) over
//! the same session the layer uses.

use std::sync::Arc;

use url::Url;

use crate::client::authorization::{self, PendingAuthorization};
use crate::client::config::OAuthConfig;
use crate::client::discovery::Discovery;
use crate::client::registration::ClientRegistration;
use crate::client::session::{FlightOp, Session};
use crate::client::tokens::TokenSet;
use crate::error::{Error, ErrorKind, Result};
use crate::http::redact_url;

/// The OAuth state machine, step by step: discovery, registration, authorization URL, callback.
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
/// // …the user approves; the browser is sent to the redirect URI with ?code=…&state=…&iss=…
/// # let redirect_url = "";
/// let credentials = oauth_state.handle_callback(redirect_url).await?;
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
        let config = config.unwrap_or_default();
        config.http.check_url(&server_url, "MCP server URL")?;
        let session = Arc::new(Session::new(server_url, config));
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

    /// Completes authorization with what the browser was sent back with, and returns the
    /// tokens. `redirect` is the whole redirect URL, its path and query (a web handler's
    /// `request.uri()`), or its query string (`code=…&state=…&iss=…`, with or without the `?`). `state` is checked, RFC 9207 `iss`
    /// too (required when the server advertises it), and an error response becomes an error.
    ///
    /// # Errors
    /// [`ErrorKind::StateMismatch`], [`ErrorKind::IssuerMismatch`],
    /// [`ErrorKind::AuthorizationDenied`], [`ErrorKind::UnexpectedRedirect`] for a URL that is
    /// not the redirect URI, token endpoint errors.
    pub async fn handle_callback(&mut self, redirect: &str) -> Result<TokenSet> {
        let pending = self.pending()?;
        let redirect = match Url::parse(redirect) {
            Ok(url) => url,
            // A web handler's `request.uri()`: the path and query, on the redirect URI's origin
            // (verify_redirect still insists on the redirect URI's path).
            Err(url::ParseError::RelativeUrlWithoutBase) if redirect.starts_with('/') => {
                pending.redirect_uri.join(redirect).map_err(|e| {
                    Error::new(ErrorKind::Config, "the redirect path is not a valid URL")
                        .with_source(e)
                })?
            }
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                let mut url = pending.redirect_uri.clone();
                url.set_query(Some(redirect.trim_start_matches('?')));
                url
            }
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::InvalidResponse,
                    "the redirect URL is not a valid URL",
                )
                .with_source(e))
            }
        };
        let callback = pending.verify_redirect(&redirect)?;
        self.session.finish_manual(&pending, &callback.code).await
    }

    /// The same as [`Self::handle_callback`], under its former name.
    ///
    /// # Errors
    /// As [`Self::handle_callback`].
    #[deprecated(note = "use handle_callback, which takes the same redirect URL")]
    pub async fn handle_redirect(&mut self, redirect_url: &str) -> Result<TokenSet> {
        self.handle_callback(redirect_url).await
    }

    /// What discovery found, once it has run (or was restored from the store).
    pub fn discovery(&self) -> Option<Discovery> {
        self.session.with(|s| s.discovery.clone())
    }

    /// The client identity in use, once there is one.
    pub fn client_registration(&self) -> Option<ClientRegistration> {
        self.session
            .config
            .client
            .pre_registered
            .clone()
            .or_else(|| self.session.with(|s| s.client.clone()))
    }

    /// The current tokens, if any.
    pub fn credentials(&self) -> Option<TokenSet> {
        self.session.tokens()
    }

    /// Runs the whole flow through the configured [`AuthorizationHandler`](super::AuthorizationHandler) now, instead of
    /// waiting for a 401.
    ///
    /// # Errors
    /// As the individual steps; [`ErrorKind::NotAuthorized`] without a handler.
    pub async fn authorize(&self) -> Result<TokenSet> {
        self.session.run_now(FlightOp::Authorize).await?;
        self.tokens_or_error()
    }

    /// Makes sure the token carries `scopes` before a request that needs them: when one is
    /// missing, authorizes again (through the configured
    /// [`AuthorizationHandler`](super::AuthorizationHandler)) for the scopes granted plus
    /// these, as a 403 `insufficient_scope` would. Returns whether it authorized. Before the
    /// first token there is nothing granted to keep, so it asks for `scopes` alone: let the
    /// first request (or [`Self::authorize`]) get the server's usual scopes first.
    ///
    /// # Errors
    /// As [`Self::authorize`].
    pub async fn step_up(&self, scopes: &[&str]) -> Result<bool> {
        self.session.step_up_before(scopes.iter().copied()).await
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
}

#[cfg(test)]
mod send_tests {
    fn assert_send<T: Send>(_: T) {}

    #[allow(dead_code)]
    fn futures_are_send(client: crate::client::AuthorizedHttpClient, state: super::OAuthState) {
        assert_send(async move {
            let _ = client.send(http::Request::new(Default::default())).await;
            let _ = state.authorize().await;
            let _ = state.refresh().await;
        });
    }
}
