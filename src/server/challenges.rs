//! How [`RequireBearer`](super::RequireBearer) and the layers within it answer a request they
//! turn away: the [`Rejection`], its status, and the RFC 6750 / RFC 9449 challenges.

use std::sync::Arc;

use http::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::challenge::BearerChallenge;
use crate::dpop::{DpopNonces, DPOP_NONCE};

/// Why a request was turned away; found in the response extensions, for logging.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No `Authorization` header.
    MissingCredentials,
    /// An `Authorization` header with another scheme than Bearer.
    UnsupportedScheme,
    /// The header or request is malformed.
    InvalidRequest(&'static str),
    /// The token was refused by the verifier or by the layer's own checks.
    InvalidToken(String),
    /// The token lacks scopes; every scope the request needs is listed.
    InsufficientScope(Vec<String>),
    /// The verifier could not decide.
    Unavailable(String),
    /// The body was too large to decide its scopes.
    BodyTooLarge,
    /// The body is compressed, so its scopes cannot be decided.
    UnsupportedEncoding,
    /// The DPoP proof is missing, malformed, or does not match the request or the token: 401
    /// `invalid_dpop_proof`.
    InvalidDpopProof(String),
    /// The DPoP proof lacks a current server nonce: 401 `use_dpop_nonce` with a new one.
    UseDpopNonce,
}

/// How rejections are answered: what every challenge says of the resource. Handed on in the
/// request extensions, so a layer further in (such as
/// [`RequireMcpScopes`](crate::server::RequireMcpScopes)) answers in the same words.
#[derive(Debug, Clone, Default)]
pub(crate) struct Challenges {
    pub(super) realm: Option<String>,
    pub(super) resource_metadata: Option<String>,
    pub(crate) required_scopes: Vec<String>,
    pub(super) dpop: Option<DpopChallenge>,
    /// The request came with a DPoP token.
    pub(super) used_dpop: bool,
    /// Whether a request in a scheme not taken was logged at info yet: once per layer, then at
    /// debug (anyone can send such requests).
    pub(super) scheme_logged: Arc<std::sync::atomic::AtomicBool>,
}

/// What the DPoP challenge says, and where new nonces come from.
#[derive(Debug, Clone)]
pub(super) struct DpopChallenge {
    pub(super) algs: String,
    pub(super) required: bool,
    pub(super) nonces: Option<Arc<DpopNonces>>,
}

impl Challenges {
    /// The schemes this resource takes, for the log.
    fn accepted_schemes(&self) -> &'static str {
        match &self.dpop {
            None => "Bearer",
            Some(dpop) if dpop.required => "DPoP",
            Some(_) => "Bearer, DPoP",
        }
    }

    fn challenge(&self) -> BearerChallenge {
        BearerChallenge {
            realm: self.realm.clone(),
            resource_metadata: self.resource_metadata.clone(),
            ..Default::default()
        }
    }

    /// The answer to `rejection`, with the rejection in its extensions for logging.
    pub(crate) fn reject<B: Default>(&self, rejection: Rejection) -> Response<B> {
        let mut response = self.rejection_response(&rejection);
        response.extensions_mut().insert(rejection);
        response
    }

    fn rejection_response<B: Default>(&self, rejection: &Rejection) -> Response<B> {
        let mut challenge = self.challenge();
        let status = match rejection {
            Rejection::InvalidDpopProof(reason) => {
                challenge.error = Some("invalid_dpop_proof".into());
                challenge.error_description = Some(error_description(reason));
                StatusCode::UNAUTHORIZED
            }
            Rejection::UseDpopNonce => {
                challenge.error = Some("use_dpop_nonce".into());
                challenge.error_description =
                    Some("the DPoP proof needs the nonce this server gave".into());
                StatusCode::UNAUTHORIZED
            }
            Rejection::MissingCredentials | Rejection::UnsupportedScheme => {
                if !self.required_scopes.is_empty() {
                    challenge.scope = Some(self.required_scopes.join(" "));
                }
                StatusCode::UNAUTHORIZED
            }
            Rejection::InvalidRequest(reason) => {
                challenge.error = Some("invalid_request".into());
                challenge.error_description = Some(error_description(reason));
                StatusCode::BAD_REQUEST
            }
            Rejection::InvalidToken(reason) => {
                challenge.error = Some("invalid_token".into());
                challenge.error_description = Some(error_description(reason));
                StatusCode::UNAUTHORIZED
            }
            Rejection::InsufficientScope(required) => {
                challenge.error = Some("insufficient_scope".into());
                challenge.scope = Some(required.join(" "));
                challenge.error_description = Some("the token lacks a required scope".into());
                StatusCode::FORBIDDEN
            }
            Rejection::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        };
        if *rejection == Rejection::UnsupportedScheme {
            // Info the first time: a client and a resource that disagree on the scheme is a
            // misconfiguration an operator needs to see; debug after, as anyone can send one.
            let first = !self
                .scheme_logged
                .swap(true, std::sync::atomic::Ordering::Relaxed);
            let accepted = self.accepted_schemes();
            let message = "a request came in an authorization scheme this resource does not \
                           take; answered with a challenge for the schemes it takes";
            if first {
                tracing::info!(accepted, "{message}");
            } else {
                tracing::debug!(accepted, "{message}");
            }
        }
        tracing::debug!(?rejection, %status, "bearer token rejected");
        let mut response = Response::new(B::default());
        *response.status_mut() = status;
        if matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST
        ) {
            self.write_challenges(response.headers_mut(), challenge, rejection);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl Challenges {
    /// `WWW-Authenticate`: the Bearer challenge, the DPoP one, or both (RFC 9449 §7.1), with
    /// the error in the challenge of the scheme the request used.
    fn write_challenges(
        &self,
        headers: &mut HeaderMap,
        challenge: BearerChallenge,
        rejection: &Rejection,
    ) {
        let Some(dpop) = &self.dpop else {
            append_challenge(headers, challenge, "Bearer", &[]);
            return;
        };
        let dpop_error = self.used_dpop
            || dpop.required
            || matches!(
                rejection,
                Rejection::InvalidDpopProof(_) | Rejection::UseDpopNonce
            );
        let quiet = BearerChallenge {
            error: None,
            error_description: None,
            error_uri: None,
            scope: challenge
                .scope
                .clone()
                .filter(|_| challenge.error.is_none()),
            ..challenge.clone()
        };
        let (bearer, for_dpop) = if dpop_error {
            (quiet, challenge)
        } else {
            (challenge, quiet)
        };
        if !dpop.required {
            append_challenge(headers, bearer, "Bearer", &[]);
        }
        append_challenge(headers, for_dpop, "DPoP", &[("algs", &dpop.algs)]);
        if let (Rejection::UseDpopNonce, Some(nonces)) = (rejection, &dpop.nonces) {
            if let Ok(nonce) = HeaderValue::from_str(&nonces.current()) {
                headers.insert(DPOP_NONCE, nonce);
            }
        }
    }
}

/// Appends one challenge. The description is already limited to RFC 6750's characters; should
/// the rest ever not fit a header, the challenge still goes out without it.
fn append_challenge(
    headers: &mut HeaderMap,
    mut challenge: BearerChallenge,
    scheme: &str,
    extra: &[(&str, &str)],
) {
    let value = HeaderValue::from_str(&challenge.render(scheme, extra)).or_else(|_| {
        challenge.error_description = None;
        HeaderValue::from_str(&challenge.render(scheme, extra))
    });
    if let Ok(value) = value {
        headers.append(WWW_AUTHENTICATE, value);
    }
}

/// RFC 6750 §3: `error_description` is limited to `%x20-21 / %x23-5B / %x5D-7E`; anything else
/// (a verifier's reason may hold quotes, backslashes or non-ASCII) becomes a space.
fn error_description(reason: &str) -> String {
    reason
        .chars()
        .map(|c| match c {
            '\x20'..='\x7e' if c != '"' && c != '\\' => c,
            _ => ' ',
        })
        .collect()
}
