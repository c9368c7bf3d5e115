//! The HTTP side every endpoint shares: OAuth error answers, uncached JSON, form parameters,
//! and the grant URNs more than one endpoint names.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use http::{HeaderValue, StatusCode};

use crate::error::Error;

/// The device authorization grant (RFC 8628 §3.4).
pub(crate) const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// An OAuth error answer (RFC 6749 §5.2): JSON, never cached.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) description: String,
    /// A `DPoP-Nonce` to hand out with the error (RFC 9449 §8).
    pub(crate) dpop_nonce: Option<String>,
}

impl OAuthError {
    pub(crate) fn new(code: &'static str, description: impl Into<String>) -> Self {
        let status = match code {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            status,
            code,
            description: description.into(),
            dpop_nonce: None,
        }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }

    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new("invalid_client", description)
    }

    /// A storage failure: logged, and answered without its details; a store that cannot be
    /// reached (a database down) is a 503 with `Retry-After`, for the client to try again.
    pub(crate) fn server(error: &Error) -> Self {
        tracing::error!(%error, "authorization server storage failed");
        if error.kind() == crate::error::ErrorKind::Storage {
            return Self::new(
                "temporarily_unavailable",
                "the server cannot complete the request now; try again shortly",
            );
        }
        Self::new("server_error", "the server could not complete the request")
    }
}

impl From<Error> for OAuthError {
    fn from(error: Error) -> Self {
        Self::server(&error)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = crate::metadata::OAuthErrorResponse {
            error: self.code.to_owned(),
            error_description: Some(self.description),
            error_uri: None,
        };
        let mut response = json_response(self.status, &body);
        if let Some(nonce) = self.dpop_nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
            response
                .headers_mut()
                .insert(crate::dpop::DPOP_NONCE, nonce);
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2: a 401 names the scheme the client should authenticate with.
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oauth\""),
            );
        }
        response
    }
}

/// A JSON response that no cache keeps (RFC 6749 §5.1).
pub(crate) fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Form or query parameters, each at most once (RFC 6749 §3.1: repeated parameters are an
/// error).
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(input: &[u8]) -> std::result::Result<Self, OAuthError> {
        let mut params: Vec<(String, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, value) in url::form_urlencoded::parse(input) {
            if !seen.insert(name.clone()) {
                return Err(OAuthError::invalid_request(format!(
                    "the parameter {name} is repeated"
                )));
            }
            params.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self(params))
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 §3.1).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn require(&self, name: &str) -> std::result::Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("the parameter {name} is missing")))
    }
}

/// Reads a form body, checking its media type.
pub(crate) fn form_params(
    headers: &http::HeaderMap,
    body: &[u8],
) -> std::result::Result<Params, OAuthError> {
    if !crate::http::has_media_type_in(headers, "application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    Params::parse(body)
}
