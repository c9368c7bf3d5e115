//! [`AuthorizedHttpClient`]: the layer over the crate's own HTTP client, for callers who want
//! whole bodies in and out rather than a tower stack.

use bytes::Bytes;
use http::{Request, Response};
use tower::ServiceExt;

use crate::client::layer::OAuth;
use crate::client::state::OAuthState;
use crate::error::{Error, Result};
use crate::http::{HttpClient, RequestBody};

/// An authorized HTTP client: [`OAuth`] over the crate's [`HttpClient`] (timeout, body
/// limit, no redirects), with whole bodies in and out.
#[derive(Clone)]
pub struct AuthorizedHttpClient {
    service: OAuth<HttpClient>,
}

impl std::fmt::Debug for AuthorizedHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizedHttpClient")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl AuthorizedHttpClient {
    fn new(state: &OAuthState) -> Self {
        let http = state.session.config.http.clone();
        Self {
            service: OAuth::new(http, state.clone()),
        }
    }

    /// Sends `request` through the layer and reads the whole response.
    ///
    /// # Errors
    /// Transport errors, and errors of the authorization flow, as [`crate::Error`].
    pub async fn send(&self, request: Request<RequestBody>) -> Result<Response<Bytes>> {
        self.service
            .clone()
            .oneshot(request)
            .await
            .map_err(Error::from_boxed)
    }

    /// The tower service, to stack further layers on.
    pub fn into_service(self) -> OAuth<HttpClient> {
        self.service
    }
}

// Here rather than in `state.rs`, so that the state does not depend on the layer that depends on
// the state.
impl OAuthState {
    /// An HTTP client for the MCP server that attaches the token, refreshes it, and on a 401
    /// authorizes again (through the configured handler) and replays the request once.
    ///
    /// # Errors
    /// None yet; the signature leaves room for checks.
    pub async fn to_authorized_http_client(&self) -> Result<AuthorizedHttpClient> {
        Ok(AuthorizedHttpClient::new(self))
    }
}
