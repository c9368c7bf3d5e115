//! Tokens: the code exchange and the refresh grant, run through the `oauth2` crate on our own
//! [`HttpClient`], with absolute expiry and refresh-token rotation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, EndpointNotSet, EndpointSet,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use url::Url;

use crate::client::authorization::PendingAuthorization;
use crate::client::discovery::Discovery;
use crate::client::dpop::{DpopHttp, DpopSigner, NonceCell};
use crate::client::registration::{ClientRegistration, TokenEndpointAuthMethod};
use crate::clock::now_secs;
use crate::dpop::DpopKey;
use crate::error::{Error, ErrorKind, Result};
use crate::http::HttpClient;
use crate::secret::Secret;

/// Tokens from the authorization server. `Debug` redacts them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenSet {
    /// The access token, sent as `Authorization: Bearer …` (or `DPoP …` when it is bound to
    /// [`Self::dpop_key`]).
    pub access_token: Secret,
    /// The token type: `Bearer` or `DPoP`.
    pub token_type: String,
    /// The refresh token, when one was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    /// When the access token expires, seconds since the epoch (absolute, so a stored token stays
    /// meaningful after a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// The scopes granted (as the server said, or as requested when it said nothing).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When the tokens were issued, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<u64>,
    /// The key DPoP-bound tokens are bound to (RFC 9449): every request with them carries a
    /// proof signed by it, and a refresh token bound to it is only good with it. Stored with
    /// the tokens, so a restarted client keeps using them; `Debug` shows its thumbprint only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<DpopKey>,
}

impl TokenSet {
    /// Whether the access token is due for refresh: it expires within `margin_secs`, or within
    /// half its lifetime when that is shorter (so short-lived tokens are not refreshed on every
    /// use).
    pub fn expires_within(&self, margin_secs: u64) -> bool {
        let Some(expires_at) = self.expires_at else {
            return false;
        };
        let margin = match self.issued_at {
            Some(issued_at) => margin_secs.min(expires_at.saturating_sub(issued_at) / 2),
            None => margin_secs,
        };
        expires_at <= now_secs().saturating_add(margin)
    }
}

pub(crate) type ConfiguredClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// An `oauth2` client for one authorization server and client registration.
pub(crate) fn oauth2_client(
    discovery: &Discovery,
    client: &ClientRegistration,
    redirect_uri: Option<&Url>,
) -> Result<ConfiguredClient> {
    // Every authorization URL and token request is built here: the one place to make sure a
    // client identity only ever goes to its own authorization server.
    client.check_issuer(discovery.issuer())?;
    let metadata = &discovery.authorization_server;
    let auth_url = AuthUrl::new(metadata.authorization_endpoint.clone().unwrap_or_default())
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse,
                "authorization_endpoint is not a valid URL",
            )
            .with_source(e)
        })?;
    let token_url =
        TokenUrl::new(metadata.token_endpoint.clone().unwrap_or_default()).map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse,
                "token_endpoint is not a valid URL",
            )
            .with_source(e)
        })?;
    let mut oauth = BasicClient::new(ClientId::new(client.client_id.clone()))
        .set_auth_uri(auth_url)
        .set_token_uri(token_url);
    match (client.auth_method, &client.client_secret) {
        (TokenEndpointAuthMethod::None, _) => {
            oauth = oauth.set_auth_type(AuthType::RequestBody);
        }
        (TokenEndpointAuthMethod::ClientSecretPost, Some(secret)) => {
            oauth = oauth
                .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
                .set_auth_type(AuthType::RequestBody);
        }
        (TokenEndpointAuthMethod::ClientSecretBasic, Some(secret)) => {
            oauth = oauth
                .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
                .set_auth_type(AuthType::BasicAuth);
        }
        (method, None) => {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "client auth method {} needs a client secret",
                    method.as_str()
                ),
            ))
        }
    }
    if let Some(redirect_uri) = redirect_uri {
        oauth = oauth.set_redirect_uri(RedirectUrl::from_url(redirect_uri.clone()));
    }
    Ok(oauth)
}

fn token_set(
    response: &oauth2::basic::BasicTokenResponse,
    requested_scopes: &[String],
    dpop_key: Option<&DpopKey>,
) -> Result<TokenSet> {
    // OAuth 2.1 §7.1: never use a token of a type we do not understand, and RFC 9449 §5: a
    // token of another type than was asked for is refused too.
    let token_type = response.token_type().as_ref();
    let token_type = match (dpop_key, token_type) {
        (Some(_), t) if t.eq_ignore_ascii_case("dpop") => "DPoP",
        (None, t) if t.eq_ignore_ascii_case("bearer") => "Bearer",
        (Some(_), other) => {
            return Err(Error::new(
                ErrorKind::InvalidResponse,
                format!("the token endpoint answered a request with a DPoP proof with a {other:?} token; only a DPoP-bound token was asked for"),
            ))
        }
        (None, t) if t.eq_ignore_ascii_case("dpop") => {
            return Err(Error::new(
                ErrorKind::InvalidResponse,
                "the token endpoint issued a DPoP-bound token to a request without a DPoP proof; there is no key to use it with",
            ))
        }
        (None, other) => {
            return Err(Error::new(
                ErrorKind::InvalidResponse,
                format!("the token endpoint issued a {other:?} token; only Bearer and DPoP tokens are supported"),
            ))
        }
    };
    let access_token = response.access_token().secret();
    if !is_attachable(access_token) {
        return Err(Error::new(
            ErrorKind::InvalidResponse,
            "the token endpoint issued an access token that cannot be sent in an Authorization header (empty, or with spaces or control characters)",
        ));
    }
    let issued_at = now_secs();
    Ok(TokenSet {
        access_token: Secret::new(response.access_token().secret().clone()),
        token_type: token_type.into(),
        refresh_token: response
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone())),
        expires_at: response
            .expires_in()
            .map(|d| issued_at.saturating_add(d.as_secs())),
        scopes: match response.scopes() {
            Some(scopes) => scopes.iter().map(|s| s.to_string()).collect(),
            None => requested_scopes.to_vec(),
        },
        issued_at: Some(issued_at),
        dpop_key: dpop_key.cloned(),
    })
}

/// Whether `token` can go in `Authorization: Bearer <token>`: one run of visible ASCII
/// (RFC 6750's `b64token` and the opaque tokens servers issue in practice).
pub(crate) fn is_attachable(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

fn token_error(
    grant: &str,
    error: RequestTokenError<Error, oauth2::basic::BasicErrorResponse>,
) -> Error {
    match error {
        RequestTokenError::ServerResponse(response) => {
            let description = response
                .error_description()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let (kind, advice) = match response.error() {
                BasicErrorResponseType::InvalidGrant => (ErrorKind::InvalidGrant, "; authorize again"),
                BasicErrorResponseType::InvalidClient => (ErrorKind::InvalidClient, "; register the client again"),
                _ => (ErrorKind::TokenEndpoint, ""),
            };
            Error::new(
                kind,
                format!(
                    "the token endpoint refused the {grant} grant: {}{description}{advice}",
                    response.error().as_ref()
                ),
            )
        }
        // Keep the transport's kind: a timeout stays a timeout.
        RequestTokenError::Request(e) => Error::new(
            e.kind(),
            format!("the {grant} request to the token endpoint failed"),
        )
        .with_source(e),
        // The parse error carries the raw body, which may hold tokens: keep only its location.
        RequestTokenError::Parse(e, _) => Error::new(
            ErrorKind::InvalidResponse,
            format!(
                "the token endpoint's answer to the {grant} grant is not a valid token response (at {})",
                e.path()
            ),
        ),
        RequestTokenError::Other(message) => Error::new(
            ErrorKind::InvalidResponse,
            format!("the token endpoint's answer to the {grant} grant is unusable: {message}"),
        ),
    }
}

/// Exchanges the code of `pending` (with its PKCE verifier) for tokens, bound to the key of
/// `dpop` when given.
pub(crate) async fn exchange_code(
    http: &HttpClient,
    pending: &PendingAuthorization,
    code: &Secret,
    dpop: Option<DpopSigner>,
) -> Result<TokenSet> {
    let (discovery, client) = (&pending.discovery, &pending.client);
    let (verifier, requested_scopes) = (&pending.verifier, &pending.scopes);
    let oauth = oauth2_client(discovery, client, Some(&pending.redirect_uri))?;
    let mut request = oauth
        .exchange_code(AuthorizationCode::new(code.expose().to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose().to_owned()));
    if let Some(resource) = &discovery.resource {
        request = request.add_extra_param("resource", resource.clone());
    }
    let span =
        tracing::info_span!("token_exchange", client_id = %client.client_id, dpop = dpop.is_some());
    let key = dpop.as_ref().map(|signer| signer.key.clone());
    let response = match dpop {
        Some(signer) => {
            let http = DpopHttp {
                http: http.clone(),
                signer,
            };
            request.request_async(&http).instrument(span).await
        }
        None => request.request_async(http).instrument(span).await,
    }
    .map_err(|e| token_error("authorization_code", e))?;
    tracing::info!("authorization code exchanged for tokens");
    token_set(&response, requested_scopes, key.as_ref())
}

/// Redeems a refresh token. When the server rotates nothing, the old refresh token is kept.
/// Tokens bound to a DPoP key are refreshed with a proof by that key (`nonce` is where the
/// server's nonce is kept).
pub(crate) async fn refresh(
    http: &HttpClient,
    discovery: &Discovery,
    client: &ClientRegistration,
    current: &TokenSet,
    nonce: &Arc<NonceCell>,
) -> Result<TokenSet> {
    let Some(refresh_token) = &current.refresh_token else {
        return Err(Error::new(
            ErrorKind::InvalidGrant,
            "there is no refresh token; authorize again",
        ));
    };
    let oauth = oauth2_client(discovery, client, None)?;
    let refresh_token = RefreshToken::new(refresh_token.expose().to_owned());
    let mut request = oauth.exchange_refresh_token(&refresh_token);
    if let Some(resource) = &discovery.resource {
        request = request.add_extra_param("resource", resource.clone());
    }
    let span = tracing::info_span!("refresh", client_id = %client.client_id);
    let response = match &current.dpop_key {
        Some(key) => {
            let signer = DpopSigner {
                key: key.clone(),
                nonce: nonce.clone(),
            };
            let http = DpopHttp {
                http: http.clone(),
                signer,
            };
            request.request_async(&http).instrument(span).await
        }
        None => request.request_async(http).instrument(span).await,
    }
    .map_err(|e| token_error("refresh_token", e))?;
    let mut tokens = token_set(&response, &current.scopes, current.dpop_key.as_ref())?;
    if tokens.refresh_token.is_none() {
        tokens.refresh_token = current.refresh_token.clone();
    }
    tracing::info!(
        rotated = response.refresh_token().is_some(),
        "access token refreshed"
    );
    Ok(tokens)
}

/// The `oauth2` crate's requests run on our [`HttpClient`]: same timeout, body limit, and no
/// redirects.
impl<'c> oauth2::AsyncHttpClient<'c> for HttpClient {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self
                .send(request.map(crate::http::RequestBody::from))
                .await?;
            if response.status().is_redirection() {
                return Err(Error::new(
                    ErrorKind::UnexpectedRedirect,
                    "the token endpoint answered with a redirect, which OAuth calls never follow",
                ));
            }
            Ok(response.map(|body| body.to_vec()))
        })
    }
}

/// Scope values as the `oauth2` crate wants them.
pub(crate) fn scopes(values: &[String]) -> impl Iterator<Item = Scope> + '_ {
    values.iter().map(|s| Scope::new(s.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    proptest! {
        #[test]
        fn any_token_response_gives_usable_tokens_or_a_typed_error(
            access_token in prop_oneof![
                "[A-Za-z0-9._~+/=-]{1,40}",
                any::<String>(),
                Just(String::new()),
                Just("two words".to_owned()),
                Just("tab\tinside".to_owned()),
            ],
            token_type in prop_oneof![
                Just(json!("Bearer")), Just(json!("bearer")), Just(json!("DPoP")),
                Just(json!("mac")), Just(json!(3)),
            ],
            expires_in in proptest::option::of(prop_oneof![
                any::<u64>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                Just(json!("3600")),
                Just(json!(1.5)),
            ]),
            scope in proptest::option::of(prop_oneof![
                "[a-z: ]{0,20}".prop_map(Value::from),
                Just(json!(["a", "b"])),
            ]),
        ) {
            let mut body = json!({"access_token": access_token, "token_type": token_type});
            if let Some(expires_in) = expires_in {
                body["expires_in"] = expires_in;
            }
            if let Some(scope) = scope {
                body["scope"] = scope;
            }
            let Ok(response) = serde_json::from_value::<oauth2::basic::BasicTokenResponse>(body) else {
                // The oauth2 crate refuses it: that is a typed RequestTokenError::Parse upstream.
                return Ok(());
            };
            match token_set(&response, &["mcp".to_owned()], None) {
                Ok(tokens) => {
                    prop_assert!(is_attachable(tokens.access_token.expose()));
                    let header = format!("Bearer {}", tokens.access_token.expose());
                    prop_assert!(http::HeaderValue::from_str(&header).is_ok());
                    prop_assert!(tokens.expires_at.is_none_or(|at| at >= tokens.issued_at.unwrap()));
                    let debug = format!("{tokens:?}");
                    prop_assert!(access_token.len() < 12 || !debug.contains(&access_token));
                }
                Err(error) => prop_assert_eq!(error.kind(), ErrorKind::InvalidResponse),
            }
        }
    }
}
