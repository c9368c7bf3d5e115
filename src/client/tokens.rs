//! Tokens: the code exchange and the refresh grant, run through the `oauth2` crate on our own
//! [`HttpClient`], with absolute expiry and refresh-token rotation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use oauth2::basic::BasicClient;
use oauth2::{AuthUrl, ClientId, EndpointNotSet, EndpointSet, RedirectUrl, Scope, TokenUrl};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use url::Url;

use crate::client::discovery::Discovery;
use crate::client::dpop::{DpopHttp, DpopSigner, NonceCell};
use crate::client::registration::{ClientRegistration, TokenEndpointAuthMethod};
use crate::client::request_options::RequestOptions;
use crate::client::wire::{is_attachable, JWT_BEARER_ASSERTION_TYPE};
use crate::clock::now_secs;
use crate::dpop::DpopKey;
use crate::error::{Error, ErrorKind, Result};
use crate::http::HttpClient;
use crate::metadata::OAuthErrorResponse;
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
    /// The OpenID Connect ID token, when the authorization server issued one (`openid` among
    /// the scopes). Sent instead of the access token to servers that check who the caller is
    /// rather than what it may do: [`OAuthConfig::present_id_token`](super::OAuthConfig::present_id_token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<Secret>,
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

/// An `oauth2` client for one authorization server and client registration, for the
/// authorization URL.
pub(crate) fn oauth2_client(
    discovery: &Discovery,
    client: &ClientRegistration,
    redirect_uri: Option<&Url>,
) -> Result<ConfiguredClient> {
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
    let token_url = TokenUrl::new(token_endpoint_of(discovery)?.to_owned()).map_err(|e| {
        Error::new(
            ErrorKind::InvalidResponse,
            "token_endpoint is not a valid URL",
        )
        .with_source(e)
    })?;
    let mut oauth = BasicClient::new(ClientId::new(client.client_id.clone()))
        .set_auth_uri(auth_url)
        .set_token_uri(token_url);
    if let Some(redirect_uri) = redirect_uri {
        oauth = oauth.set_redirect_uri(RedirectUrl::from_url(redirect_uri.clone()));
    }
    Ok(oauth)
}

fn token_endpoint_of(discovery: &Discovery) -> Result<&str> {
    discovery
        .authorization_server
        .token_endpoint
        .as_deref()
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidResponse,
                format!(
                    "the authorization server {} publishes no token_endpoint",
                    discovery.issuer()
                ),
            )
        })
}

/// A token endpoint, and who the client is there.
pub(crate) struct TokenEndpoint<'a> {
    pub(crate) url: &'a str,
    /// The authorization server's issuer identifier: the audience of client assertions.
    pub(crate) issuer: &'a str,
    pub(crate) client: &'a ClientRegistration,
    /// Parameters some providers want on every token request (`audience`, …).
    pub(crate) extra_params: &'a [(String, String)],
}

impl<'a> TokenEndpoint<'a> {
    /// The discovered authorization server's endpoint, for a client bound to it (or to none).
    pub(crate) fn discovered(
        discovery: &'a Discovery,
        client: &'a ClientRegistration,
        extra_params: &'a [(String, String)],
    ) -> Result<Self> {
        // Every token request starts here: the one place to make sure a client identity only
        // ever goes to its own authorization server.
        client.check_issuer(discovery.issuer())?;
        Ok(Self {
            url: token_endpoint_of(discovery)?,
            issuer: discovery.issuer(),
            client,
            extra_params,
        })
    }
}

/// A token endpoint's answer (RFC 6749 §5.1; RFC 8693 §2.2.1 for `issued_token_type`).
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: Secret,
    pub(crate) token_type: String,
    #[serde(default, deserialize_with = "lenient_seconds")]
    pub(crate) expires_in: Option<u64>,
    #[serde(default)]
    pub(crate) refresh_token: Option<Secret>,
    #[serde(default)]
    pub(crate) scope: Option<String>,
    #[serde(default)]
    pub(crate) issued_token_type: Option<String>,
    /// OpenID Connect's ID token, when `openid` was asked for.
    #[serde(default)]
    pub(crate) id_token: Option<Secret>,
}

/// `expires_in` as a number or, as Entra ID's v1 endpoints send it, a string of digits.
pub(crate) fn lenient_seconds<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| D::Error::custom("expires_in is not a whole number of seconds")),
        Some(serde_json::Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom("expires_in is not a whole number of seconds")),
        Some(_) => Err(D::Error::custom("expires_in is not a number")),
    }
}

/// Sends one grant to a token endpoint: the grant's parameters, the client's authentication
/// (RFC 6749 §2.3, RFC 7523 §2.2), the provider's extra parameters, and a DPoP proof when
/// `dpop` is given (with its one nonce retry).
pub(crate) async fn request(
    http: &HttpClient,
    endpoint: &TokenEndpoint<'_>,
    grant_type: &str,
    params: &[(&str, &str)],
    dpop: Option<&DpopSigner>,
) -> Result<TokenResponse> {
    request_outcome(http, endpoint, grant_type, params, dpop)
        .await?
        .map_err(|error| grant_error(grant_type, &error))
}

/// As [`request`], with the server's OAuth error kept as it came, for the grants whose errors
/// are steps (the device grant's `authorization_pending`).
pub(crate) async fn request_outcome(
    http: &HttpClient,
    endpoint: &TokenEndpoint<'_>,
    grant_type: &str,
    params: &[(&str, &str)],
    dpop: Option<&DpopSigner>,
) -> Result<std::result::Result<TokenResponse, OAuthErrorResponse>> {
    let request = build_request(endpoint, Some(grant_type), params)?;
    let response = send(http, request, grant_type, endpoint.client, dpop).await?;
    parse_token_response(&response, grant_type)
}

/// Posts an authenticated client's form to one of the authorization server's endpoints that
/// is not the token endpoint (the device authorization endpoint): `endpoint.url` is it.
pub(crate) async fn post_client_form(
    http: &HttpClient,
    endpoint: &TokenEndpoint<'_>,
    what: &str,
    params: &[(&str, &str)],
) -> Result<oauth2::HttpResponse> {
    let request = build_request(endpoint, None, params)?;
    send(http, request, what, endpoint.client, None).await
}

async fn send(
    http: &HttpClient,
    request: oauth2::HttpRequest,
    what: &str,
    client: &ClientRegistration,
    dpop: Option<&DpopSigner>,
) -> Result<oauth2::HttpResponse> {
    let span = tracing::info_span!("token_request", grant_type = what, client_id = %client.client_id, dpop = dpop.is_some());
    match dpop {
        Some(signer) => {
            let http = DpopHttp {
                http: http.clone(),
                signer: signer.clone(),
            };
            oauth2::AsyncHttpClient::call(&http, request)
                .instrument(span)
                .await
        }
        None => {
            oauth2::AsyncHttpClient::call(http, request)
                .instrument(span)
                .await
        }
    }
    .map_err(|e| {
        // Keep the transport's kind: a timeout stays a timeout.
        Error::new(
            e.kind(),
            format!("the {what} request to the authorization server failed"),
        )
        .with_source(e)
    })
}

/// The form, headers and client authentication of a token request.
fn build_request(
    endpoint: &TokenEndpoint<'_>,
    grant_type: Option<&str>,
    params: &[(&str, &str)],
) -> Result<oauth2::HttpRequest> {
    let client = endpoint.client;
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    if let Some(grant_type) = grant_type {
        form.append_pair("grant_type", grant_type);
    }
    for (name, value) in params {
        form.append_pair(name, value);
    }
    for (name, value) in endpoint.extra_params {
        form.append_pair(name, value);
    }
    let mut builder = http::Request::post(endpoint.url)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json");
    let secret = || {
        client.client_secret.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "client auth method {} needs a client secret",
                    client.auth_method.as_str()
                ),
            )
        })
    };
    match client.auth_method {
        TokenEndpointAuthMethod::None => {
            form.append_pair("client_id", &client.client_id);
        }
        TokenEndpointAuthMethod::ClientSecretPost => {
            form.append_pair("client_id", &client.client_id);
            form.append_pair("client_secret", secret()?.expose());
        }
        TokenEndpointAuthMethod::ClientSecretBasic => {
            let value = crate::http::basic_authorization(&client.client_id, secret()?.expose())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Config,
                        "the client credentials do not fit in a header",
                    )
                })?;
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        TokenEndpointAuthMethod::PrivateKeyJwt => {
            let key = client.key.as_ref().ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    "client auth method private_key_jwt needs the client's key (ClientRegistration::private_key_jwt)",
                )
            })?;
            let assertion = key.client_assertion(&client.client_id, endpoint.issuer)?;
            form.append_pair("client_id", &client.client_id);
            form.append_pair("client_assertion_type", JWT_BEARER_ASSERTION_TYPE);
            form.append_pair("client_assertion", assertion.expose());
        }
    }
    builder
        .body(form.finish().into_bytes())
        .map_err(|e| Error::new(ErrorKind::Config, "cannot build the token request").with_source(e))
}

fn parse_token_response(
    response: &oauth2::HttpResponse,
    grant_type: &str,
) -> Result<std::result::Result<TokenResponse, OAuthErrorResponse>> {
    let status = response.status();
    if !status.is_success() {
        let Ok(error) = serde_json::from_slice::<OAuthErrorResponse>(response.body()) else {
            let error = Error::new(
                ErrorKind::InvalidResponse,
                format!("the token endpoint answered the {grant_type} grant with {status} and no OAuth error"),
            );
            return Err(if crate::http::passing_trouble(status) {
                error.transient()
            } else {
                error
            });
        };
        return Ok(Err(error));
    }
    serde_json::from_slice(response.body()).map(Ok).map_err(|e| {
        // serde_json's message can quote the body, which holds tokens: keep only the position.
        Error::new(
            ErrorKind::InvalidResponse,
            format!(
                "the token endpoint's answer to the {grant_type} grant is not a valid token response (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// A typed error for an OAuth error response: the code decides the kind, and the server's
/// description is kept, shortened and printable (see [`crate::error::peer_text`]).
pub(crate) fn grant_error(grant_type: &str, error: &OAuthErrorResponse) -> Error {
    let kind = match error.error.as_str() {
        "invalid_grant" => ErrorKind::InvalidGrant,
        "invalid_client" => ErrorKind::InvalidClient,
        "invalid_scope" => ErrorKind::InvalidScope,
        "unauthorized_client" => ErrorKind::UnauthorizedClient,
        _ => ErrorKind::TokenEndpoint,
    };
    let printable = crate::error::peer_text;
    let description = error
        .error_description
        .as_deref()
        .map(|d| format!(" ({})", printable(d, 200)))
        .unwrap_or_default();
    let refused = Error::new(
        kind,
        format!(
            "the token endpoint refused the {grant_type} grant: {}{description}",
            printable(&error.error, 64)
        ),
    );
    match error.error.as_str() {
        "server_error" | "temporarily_unavailable" => refused.transient(),
        _ => refused,
    }
}

pub(crate) fn token_set(
    response: &TokenResponse,
    requested_scopes: &[String],
    dpop_key: Option<&DpopKey>,
) -> Result<TokenSet> {
    // OAuth 2.1 §7.1: never use a token of a type we do not understand, and RFC 9449 §5: a
    // token of another type than was asked for is refused too.
    let token_type = response.token_type.as_str();
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
    if !is_attachable(response.access_token.expose()) {
        return Err(Error::new(
            ErrorKind::InvalidResponse,
            "the token endpoint issued an access token that cannot be sent in an Authorization header (empty, or with spaces or control characters)",
        ));
    }
    let issued_at = now_secs();
    Ok(TokenSet {
        access_token: response.access_token.clone(),
        token_type: token_type.into(),
        refresh_token: response.refresh_token.clone(),
        expires_at: response
            .expires_in
            .map(|seconds| issued_at.saturating_add(seconds)),
        scopes: match &response.scope {
            Some(scope) => scope.split_ascii_whitespace().map(str::to_owned).collect(),
            None => requested_scopes.to_vec(),
        },
        issued_at: Some(issued_at),
        dpop_key: dpop_key.cloned(),
        // One that could not go in a header is as good as none.
        id_token: response
            .id_token
            .clone()
            .filter(|token| is_attachable(token.expose())),
    })
}

/// Sends a grant for access tokens to `endpoint` and turns the answer into a [`TokenSet`]
/// (bound to the key of `dpop` when given).
pub(crate) async fn obtain(
    http: &HttpClient,
    endpoint: &TokenEndpoint<'_>,
    grant_type: &str,
    params: &[(&str, &str)],
    requested_scopes: &[String],
    dpop: Option<&DpopSigner>,
) -> Result<TokenSet> {
    let response = request(http, endpoint, grant_type, params, dpop).await?;
    token_set(&response, requested_scopes, dpop.map(|signer| &signer.key))
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
    options: &RequestOptions,
) -> Result<TokenSet> {
    let Some(refresh_token) = &current.refresh_token else {
        return Err(Error::new(
            ErrorKind::InvalidGrant,
            "there is no refresh token; authorize again",
        ));
    };
    let endpoint = TokenEndpoint::discovered(discovery, client, &options.token_params)?;
    let mut params = vec![("refresh_token", refresh_token.expose())];
    if let Some(resource) = options.resource(discovery) {
        params.push(("resource", resource));
    }
    let signer = current.dpop_key.as_ref().map(|key| DpopSigner {
        key: key.clone(),
        nonce: nonce.clone(),
    });
    let mut tokens = obtain(
        http,
        &endpoint,
        "refresh_token",
        &params,
        &current.scopes,
        signer.as_ref(),
    )
    .await?;
    let rotated = tokens.refresh_token.is_some();
    if !rotated {
        tokens.refresh_token = current.refresh_token.clone();
    }
    // A refresh answer without an ID token leaves the one kept: it still names the user,
    // until its own expiry.
    if tokens.id_token.is_none() {
        tokens.id_token = current.id_token.clone();
    }
    tracing::info!(rotated, "access token refreshed");
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
            let Ok(response) = serde_json::from_value::<TokenResponse>(body) else {
                // Refused by the parser: a typed InvalidResponse in parse_token_response.
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

        /// Whatever a token endpoint answers: a token response, or a typed error whose message
        /// quotes no part of the body beyond a short, printable OAuth error.
        #[test]
        fn any_answer_parses_or_fails_typed_without_echoing_the_body(
            status in prop_oneof![Just(200u16), Just(400), Just(401), Just(500)],
            body in prop_oneof![
                any::<Vec<u8>>(),
                "[ -~]{0,60}".prop_map(String::into_bytes),
                Just(br#"{"access_token":"SECRETTOKEN","token_type":"Bearer","expires_in":"3599"}"#.to_vec()),
                Just(br#"{"access_token":"SECRETTOKEN","token_type":"Bearer","expires_in":-1}"#.to_vec()),
                Just(br#"{"error":"invalid_scope","error_description":"no\nway"}"#.to_vec()),
                Just(br#"{"error":"unauthorized_client"}"#.to_vec()),
            ],
        ) {
            let response = http::Response::builder().status(status).body(body.clone()).unwrap();
            let parsed = parse_token_response(&response, "client_credentials")
                .and_then(|outcome| outcome.map_err(|e| grant_error("client_credentials", &e)));
            match parsed {
                Ok(parsed) => {
                    prop_assert_eq!(status, 200);
                    prop_assert!(parsed.expires_in.is_none_or(|s| s == 3599));
                }
                Err(error) => {
                    let message = error.to_string();
                    prop_assert!(!message.contains("SECRETTOKEN"));
                    prop_assert!(!message.contains('\n'));
                    if status == 200 {
                        prop_assert_eq!(error.kind(), ErrorKind::InvalidResponse);
                    } else if body.starts_with(br#"{"error":"invalid_scope""#) {
                        prop_assert_eq!(error.kind(), ErrorKind::InvalidScope);
                    } else if body.starts_with(br#"{"error":"unauthorized_client""#) {
                        prop_assert_eq!(error.kind(), ErrorKind::UnauthorizedClient);
                    }
                }
            }
        }
    }

    #[test]
    fn the_token_type_must_be_the_one_asked_for() {
        let key = DpopKey::generate(crate::dpop::DpopAlgorithm::ES256).unwrap();
        let response = |token_type: &str| -> TokenResponse {
            serde_json::from_value(json!({"access_token": "at", "token_type": token_type})).unwrap()
        };
        let scopes = ["mcp".to_owned()];
        // Asked with a proof: only a DPoP-bound token will do (RFC 9449 §5).
        assert_eq!(
            token_set(&response("DPoP"), &scopes, Some(&key))
                .unwrap()
                .token_type,
            "DPoP"
        );
        let bearer = token_set(&response("Bearer"), &scopes, Some(&key)).unwrap_err();
        assert_eq!(bearer.kind(), ErrorKind::InvalidResponse);
        // Asked without one: a DPoP-bound token has no key to be used with.
        let unusable = token_set(&response("dpop"), &scopes, None).unwrap_err();
        assert_eq!(unusable.kind(), ErrorKind::InvalidResponse);
        assert_eq!(
            token_set(&response("bearer"), &scopes, None)
                .unwrap()
                .token_type,
            "Bearer"
        );
    }
}
