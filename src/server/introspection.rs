//! [`IntrospectionVerifier`]: opaque tokens checked by RFC 7662 introspection.

use base64::Engine;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::Request;
use serde_json::{Map, Value};
use url::Url;

use crate::error::{Error, ErrorKind, Result};
use crate::http::{ensure_secure_url, is_json, parse_url, HttpClient, RequestBody};
use crate::secret::Secret;
use crate::server::verify::{
    now_secs, numeric_date, AuthData, AuthInfo, TokenVerifier, VerifyError,
};
use crate::BoxFuture;

/// Clock skew allowed on `nbf`.
const NBF_LEEWAY_SECS: u64 = 30;

/// How the verifier authenticates to the introspection endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrospectionAuth {
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// [`IntrospectionVerifier`]: opaque tokens checked at the authorization server's RFC 7662
/// introspection endpoint, with client authentication.
///
/// The token must be `active`, unexpired, valid already (`nbf`), and name the resource in `aud`. An endpoint that is down, slow, or answers anything but a well-formed 200
/// makes the verifier unavailable (503), never permissive. Pair it with the layer's cache
/// ([`RequireBearerLayer::cache`](super::RequireBearerLayer::cache)) to bound how long a revoked
/// token stays usable; cached entries never outlive the token's `exp`.
///
/// Verifies opaque tokens by introspection.
#[derive(Clone)]
pub struct IntrospectionVerifier {
    endpoint: Url,
    client_id: String,
    client_secret: Secret,
    auth: IntrospectionAuth,
    audience: String,
    http: HttpClient,
}

impl std::fmt::Debug for IntrospectionVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionVerifier")
            .field("endpoint", &self.endpoint.as_str())
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl IntrospectionVerifier {
    /// Introspects at `endpoint` as the client `client_id` / `client_secret` (HTTP Basic), and
    /// accepts only tokens whose `aud` names `resource` (RFC 8707): a token issued for another
    /// resource must not pass here.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidResponse`] for a malformed URL, [`ErrorKind::InsecureUrl`] for http
    /// off loopback.
    pub fn new(
        endpoint: &str,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
        resource: impl Into<String>,
    ) -> Result<Self> {
        let endpoint = parse_url(endpoint, "introspection endpoint")?;
        ensure_secure_url(&endpoint, "introspection endpoint")?;
        Ok(Self {
            endpoint,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            auth: IntrospectionAuth::ClientSecretBasic,
            audience: resource.into(),
            http: HttpClient::new().timeout(std::time::Duration::from_secs(5)),
        })
    }

    /// How to authenticate (default: HTTP Basic).
    pub fn auth(mut self, auth: IntrospectionAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The HTTP client (timeout, body limit) for introspection calls.
    pub fn http(mut self, http: HttpClient) -> Self {
        self.http = http;
        self
    }

    fn request(&self, token: &str) -> Result<Request<RequestBody>> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token)
            .append_pair("token_type_hint", "access_token");
        let mut builder = Request::post(self.endpoint.as_str())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        match self.auth {
            IntrospectionAuth::ClientSecretBasic => {
                let encode = |v: &str| {
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                };
                let credentials = format!(
                    "{}:{}",
                    encode(&self.client_id),
                    encode(self.client_secret.expose())
                );
                let mut value = http::HeaderValue::from_str(&format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(credentials)
                ))
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Config,
                        "the client credentials are not a valid header",
                    )
                })?;
                value.set_sensitive(true);
                builder = builder.header(AUTHORIZATION, value);
            }
            IntrospectionAuth::ClientSecretPost => {
                form.append_pair("client_id", &self.client_id)
                    .append_pair("client_secret", self.client_secret.expose());
            }
        }
        builder.body(RequestBody::from(form.finish())).map_err(|e| {
            Error::new(ErrorKind::Config, "cannot build the introspection request").with_source(e)
        })
    }

    async fn introspect(&self, token: &str) -> std::result::Result<AuthInfo, VerifyError> {
        let request = self
            .request(token)
            .map_err(|e| VerifyError::unavailable(e.to_string()))?;
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| VerifyError::unavailable(format!("introspection failed: {e}")))?;
        if !response.status().is_success() || !is_json(&response) {
            return Err(VerifyError::unavailable(format!(
                "the introspection endpoint answered {}",
                response.status()
            )));
        }
        let claims: Map<String, Value> = serde_json::from_slice(response.body()).map_err(|_| {
            VerifyError::unavailable("the introspection response is not a JSON object")
        })?;
        if claims.get("active") != Some(&Value::Bool(true)) {
            return Err(VerifyError::invalid("the token is not active"));
        }
        let malformed_date =
            |name: &str| claims.get(name).is_some_and(|v| numeric_date(v).is_none());
        if malformed_date("exp") || malformed_date("nbf") {
            return Err(VerifyError::invalid("the token's exp or nbf is not a date"));
        }
        let not_before = claims.get("nbf").and_then(numeric_date);
        let info = AuthData::from_claims(claims);
        let now = now_secs();
        if info.expires_at.is_some_and(|at| at <= now) {
            return Err(VerifyError::invalid("the token has expired"));
        }
        if not_before.is_some_and(|at| at > now + NBF_LEEWAY_SECS) {
            return Err(VerifyError::invalid("the token is not valid yet (nbf)"));
        }
        if !info
            .audience
            .iter()
            .any(|a| crate::metadata::same_resource(a, &self.audience))
        {
            return Err(VerifyError::invalid(
                "the token is not for this resource (aud)",
            ));
        }
        Ok(info)
    }
}

impl TokenVerifier for IntrospectionVerifier {
    fn verify<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, std::result::Result<AuthInfo, VerifyError>> {
        Box::pin(self.introspect(token))
    }
}
