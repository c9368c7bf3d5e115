//! What the provider answers: its tokens for one user (read from a token response, sealed for
//! the store with AES-256-GCM, bound to the user) and why a sign-in failed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::authorization_server::store::SealedUpstreamTokens;
use crate::error::{Error, ErrorKind, Result};
use crate::seal::SealingKey;
use crate::Secret;

/// An access token this close to expiry is refreshed before it is handed out.
const REFRESH_MARGIN_SECS: u64 = 60;
/// Binds sealed records to their purpose; the user's subject follows.
const SEAL_CONTEXT: &[u8] = b"tower-mcp-oauth upstream tokens v1\0";

/// The provider's tokens for one user.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct UpstreamTokens {
    pub(crate) access_token: Secret,
    pub(crate) refresh_token: Option<Secret>,
    pub(crate) expires_at: Option<u64>,
    pub(crate) scopes: Vec<String>,
    /// Checked at sign-in, never kept.
    #[serde(skip)]
    pub(crate) id_token: Option<Secret>,
}

impl std::fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTokens")
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<Secret>,
    refresh_token: Option<Secret>,
    expires_in: Option<Value>,
    scope: Option<String>,
    id_token: Option<Secret>,
    error: Option<String>,
    error_description: Option<String>,
}

impl UpstreamTokens {
    /// Reads a token response. GitHub answers errors with 200 and an `error` member, and
    /// separates scopes by commas; both are understood.
    pub(crate) fn from_response(
        status: http::StatusCode,
        body: &[u8],
        now: u64,
    ) -> std::result::Result<Self, SignInError> {
        let parsed: Option<TokenResponse> = serde_json::from_slice(body).ok();
        let Some(response) = parsed else {
            return Err(if status.is_server_error() {
                SignInError::Unavailable(format!("the token endpoint answered {status}"))
            } else {
                SignInError::Invalid("the token endpoint did not answer with JSON")
            });
        };
        if let Some(error) = &response.error {
            let description = response
                .error_description
                .as_deref()
                .map(|d| format!(" ({})", bounded(d)))
                .unwrap_or_default();
            return Err(SignInError::Refused(format!(
                "{}{description}",
                bounded(error)
            )));
        }
        if !status.is_success() {
            return Err(SignInError::Unavailable(format!(
                "the token endpoint answered {status}"
            )));
        }
        let access_token = response
            .access_token
            .filter(|t| !t.expose().is_empty())
            .ok_or(SignInError::Invalid(
                "the token response has no access token",
            ))?;
        let expires_in = match response.expires_in {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        let scopes = response
            .scope
            .unwrap_or_default()
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self {
            access_token,
            refresh_token: response.refresh_token.filter(|t| !t.expose().is_empty()),
            expires_at: expires_in.map(|secs| now.saturating_add(secs)),
            scopes,
            id_token: response.id_token,
        })
    }

    pub(crate) fn due(&self, now: u64) -> bool {
        self.expires_at
            .is_some_and(|at| at <= now.saturating_add(REFRESH_MARGIN_SECS))
    }

    pub(crate) fn seal(&self, key: &SealingKey, subject: &str) -> Result<SealedUpstreamTokens> {
        self.seal_for(key, &context(subject))
            .map(SealedUpstreamTokens)
    }

    pub(super) fn open(
        sealed: &SealedUpstreamTokens,
        key: &SealingKey,
        subject: &str,
    ) -> Result<Self> {
        Self::open_for(&sealed.0, key, &context(subject))
    }

    /// Sealed for `context`, which must be given again to open them.
    pub(crate) fn seal_for(&self, key: &SealingKey, context: &[u8]) -> Result<Vec<u8>> {
        let plain = serde_json::to_vec(self)
            .map_err(|_| Error::new(ErrorKind::Storage, "upstream tokens cannot be encoded"))?;
        Ok(key.seal(&plain, context))
    }

    pub(crate) fn open_for(sealed: &[u8], key: &SealingKey, context: &[u8]) -> Result<Self> {
        let plain = key.open(sealed, context).ok_or_else(|| {
            Error::new(
                ErrorKind::Storage,
                "the kept upstream tokens cannot be opened (another sealing key?)",
            )
        })?;
        serde_json::from_slice(&plain).map_err(|_| {
            Error::new(
                ErrorKind::Storage,
                "the kept upstream tokens are unreadable",
            )
        })
    }
}

fn context(subject: &str) -> Vec<u8> {
    let mut context = SEAL_CONTEXT.to_vec();
    context.extend_from_slice(subject.as_bytes());
    context
}

/// Longest provider error text shown or logged.
const MAX_PROVIDER_TEXT: usize = 200;

/// Why a sign-in failed. Each says what the user sees; none holds a token.
#[derive(Debug)]
pub(crate) enum SignInError {
    /// The provider cannot be reached or its keys fetched: try again.
    Unavailable(String),
    /// The provider refused to redeem the code.
    Refused(String),
    /// The provider's answer does not hold up (a wrong `nonce`, `iss`, `aud`, signature…).
    Invalid(&'static str),
    /// The user is not admitted here.
    NotAllowed(String),
}

impl SignInError {
    /// The crate's error kind for this failure, when it reaches a caller as an `Error`.
    pub(crate) fn kind(&self) -> crate::ErrorKind {
        match self {
            Self::Unavailable(_) => crate::ErrorKind::Http,
            // A refused refresh: the user must sign in again.
            Self::Refused(_) => crate::ErrorKind::InvalidGrant,
            Self::Invalid(_) => crate::ErrorKind::InvalidResponse,
            Self::NotAllowed(_) => crate::ErrorKind::NotAuthorized,
        }
    }
}

impl std::fmt::Display for SignInError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "the identity provider is unavailable: {why}"),
            Self::Refused(why) => write!(f, "the identity provider refused the sign-in: {why}"),
            Self::Invalid(why) => write!(f, "the identity provider's answer was refused: {why}"),
            Self::NotAllowed(why) => write!(f, "this account may not sign in here: {why}"),
        }
    }
}

/// Provider-controlled text, cut to a length fit for a page or a log line.
pub(crate) fn bounded(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_PROVIDER_TEXT)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use proptest::prelude::*;

    #[test]
    fn reads_json_github_style_and_error_answers() {
        let ok = UpstreamTokens::from_response(
            StatusCode::OK,
            br#"{"access_token":"gho_x","token_type":"bearer","scope":"read:user,user:email","expires_in":"28800","refresh_token":"ghr_y"}"#,
            100,
        )
        .unwrap();
        assert_eq!(ok.scopes, ["read:user", "user:email"]);
        assert_eq!(ok.expires_at, Some(28_900));
        assert_eq!(ok.refresh_token.unwrap().expose(), "ghr_y");
        let refused = UpstreamTokens::from_response(
            StatusCode::OK,
            br#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}"#,
            0,
        )
        .unwrap_err();
        assert!(
            matches!(&refused, SignInError::Refused(t) if t.starts_with("bad_verification_code"))
        );
        assert!(matches!(
            UpstreamTokens::from_response(StatusCode::OK, b"access_token=x", 0),
            Err(SignInError::Invalid(_))
        ));
        assert!(matches!(
            UpstreamTokens::from_response(StatusCode::BAD_GATEWAY, b"<html>", 0),
            Err(SignInError::Unavailable(_))
        ));
        assert!(matches!(
            UpstreamTokens::from_response(StatusCode::OK, br#"{"token_type":"bearer"}"#, 0),
            Err(SignInError::Invalid(_))
        ));
    }

    #[test]
    fn sealed_tokens_open_only_for_their_user_and_hide_in_debug() {
        let key = SealingKey::new(&[9; 32]);
        let tokens = UpstreamTokens::from_response(
            StatusCode::OK,
            br#"{"access_token":"upstream-secret","id_token":"x.y.z"}"#,
            0,
        )
        .unwrap();
        assert!(!format!("{tokens:?}").contains("upstream-secret"));
        let sealed = tokens.seal(&key, "alice").unwrap();
        assert!(!sealed
            .0
            .windows(b"upstream-secret".len())
            .any(|w| w == b"upstream-secret"));
        let opened = UpstreamTokens::open(&sealed, &key, "alice").unwrap();
        assert_eq!(opened.access_token.expose(), "upstream-secret");
        assert!(opened.id_token.is_none(), "the ID token is not kept");
        assert!(UpstreamTokens::open(&sealed, &key, "mallory").is_err());
    }

    proptest! {
        /// Any body, any status: an answer or a typed error, never a panic, and an error never
        /// repeats an access token it was sent.
        #[test]
        fn any_token_response_is_read_or_refused(
            status in prop::sample::select(vec![200u16, 400, 401, 500, 503]),
            body in prop_oneof![
                any::<Vec<u8>>(),
                (any::<Option<String>>(), any::<Option<String>>(), any::<Option<u32>>()).prop_map(
                    |(token, error, expires)| serde_json::json!({
                        "access_token": token, "error": error, "expires_in": expires,
                    }).to_string().into_bytes()
                ),
            ],
        ) {
            let status = StatusCode::from_u16(status).unwrap();
            match UpstreamTokens::from_response(status, &body, 0) {
                Ok(tokens) => prop_assert!(!tokens.access_token.expose().is_empty()),
                Err(error) => {
                    let shown = error.to_string();
                    prop_assert!(shown.len() < 600);
                }
            }
        }
    }
}
