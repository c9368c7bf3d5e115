//! [`ExchangeError`]: why a downstream token could not be had, typed for the answer a tool
//! gives its user.

use std::fmt;

/// Why no token for the downstream API could be had on the caller's behalf. `Display` says
/// what happened and never holds a token or secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The request has no verified caller: the handler is not behind
    /// [`RequireBearer`](crate::server::RequireBearer), or the token has no subject.
    NoCaller,
    /// The authorization server refused, for this caller: the user never consented, the policy
    /// says no, the caller's token is no longer valid. Retrying repeats the refusal; the user
    /// or the operator must act.
    Refused {
        /// The OAuth error code (`invalid_grant`, `access_denied`, `invalid_scope`,
        /// `invalid_target`, `unauthorized_client`, `consent_required`, …).
        code: String,
        /// The server's description, when it gave one.
        description: Option<String>,
    },
    /// The authorization server could not be reached or failed (a timeout, a 5xx,
    /// `temporarily_unavailable`): the same call may succeed later.
    Unavailable(String),
    /// The exchange is set up wrong (the client's credentials, an unsupported grant, an
    /// answer that is not a usable token): nothing works until the configuration changes.
    Misconfigured(String),
}

impl ExchangeError {
    /// Whether a later try may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// From the authorization server's OAuth error answer.
    pub(crate) fn from_oauth(code: &str, description: Option<&str>) -> Self {
        // Bounded and printable: the text goes into logs and in front of users.
        let code: String = code
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        let description = description.map(|d| {
            d.chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect::<String>()
        });
        match code.as_str() {
            "temporarily_unavailable" | "server_error" => Self::Unavailable(format!(
                "the authorization server answered {code}{}",
                description.map(|d| format!(": {d}")).unwrap_or_default()
            )),
            "invalid_client" | "unsupported_grant_type" | "invalid_request" => {
                Self::Misconfigured(format!(
                    "the authorization server answered {code}{}",
                    description.map(|d| format!(": {d}")).unwrap_or_default()
                ))
            }
            _ => Self::Refused { code, description },
        }
    }
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCaller => f.write_str(
                "no verified caller on this request: put the handler behind RequireBearer",
            ),
            Self::Refused { code, description } => {
                write!(
                    f,
                    "the authorization server refused to act for this user ({code})"
                )?;
                if let Some(description) = description {
                    write!(f, ": {description}")?;
                }
                Ok(())
            }
            Self::Unavailable(reason) => write!(f, "token exchange unavailable: {reason}"),
            Self::Misconfigured(reason) => write!(f, "token exchange misconfigured: {reason}"),
        }
    }
}

impl std::error::Error for ExchangeError {}

/// The answer a tool call gets: a refusal is the client's to show (`invalid_request`, with the
/// OAuth code in `data.error`); anything else is logged here and answered as an internal error
/// that names no detail of the server's setup.
#[cfg(feature = "rmcp-server")]
impl From<ExchangeError> for rmcp::ErrorData {
    fn from(error: ExchangeError) -> Self {
        match &error {
            ExchangeError::Refused { code, .. } => rmcp::ErrorData::invalid_request(
                error.to_string(),
                Some(serde_json::json!({ "error": code })),
            ),
            ExchangeError::NoCaller => rmcp::ErrorData::internal_error(error.to_string(), None),
            ExchangeError::Unavailable(_) => {
                tracing::warn!(%error, "a downstream token could not be had");
                rmcp::ErrorData::internal_error(
                    "the service this tool calls cannot be reached now; try again shortly",
                    None,
                )
            }
            ExchangeError::Misconfigured(_) => {
                tracing::error!(%error, "a downstream token could not be had");
                rmcp::ErrorData::internal_error(
                    "this tool's access to the service it calls is misconfigured",
                    None,
                )
            }
        }
    }
}

/// The answer a tool gives when a call through [`OnBehalfOf`](super::OnBehalfOf) failed: an
/// [`ExchangeError`] as its own conversion says, any other failure (the API unreachable) an
/// internal error.
#[cfg(feature = "rmcp-server")]
pub fn tool_error(error: tower::BoxError) -> rmcp::ErrorData {
    match error.downcast::<ExchangeError>() {
        Ok(exchange) => (*exchange).into(),
        Err(other) => rmcp::ErrorData::internal_error(
            format!("the downstream API could not be called: {other}"),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_errors_sort_into_what_a_caller_can_do() {
        assert!(ExchangeError::from_oauth("temporarily_unavailable", None).is_transient());
        assert!(matches!(
            ExchangeError::from_oauth("invalid_client", Some("bad secret")),
            ExchangeError::Misconfigured(_)
        ));
        let refused = ExchangeError::from_oauth("consent_required", Some("ask\nthe user"));
        assert_eq!(
            refused.to_string(),
            "the authorization server refused to act for this user (consent_required): askthe user"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_error_answer_is_typed_bounded_and_printable(code in ".{0,200}", description in proptest::option::of(".{0,2000}")) {
            let error = ExchangeError::from_oauth(&code, description.as_deref());
            let shown = error.to_string();
            proptest::prop_assert!(!shown.chars().any(|c| c.is_control()));
            proptest::prop_assert!(shown.len() < 2 * 1024);
        }
    }
}
