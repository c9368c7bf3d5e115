//! [`CallerToken`]: the verified token a request came with, for the one thing a resource server
//! may do with it: exchange it at its authorization server (RFC 8693). Never passed through.

use http::HeaderValue;

/// The access token a request was admitted with, as [`RequireBearer`](super::RequireBearer)
/// verified it, in the request extensions beside [`AuthInfo`](super::AuthInfo).
///
/// It exists for token exchange (`downstream::TokenExchange`): MCP forbids passing it
/// to another API (token passthrough). `Debug` shows only its scheme. Cloning it copies a
/// pointer to the request's header, not the token.
#[derive(Clone)]
pub struct CallerToken {
    header: HeaderValue,
    start: usize,
    dpop: bool,
}

impl std::fmt::Debug for CallerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerToken")
            .field("dpop", &self.dpop)
            .finish_non_exhaustive()
    }
}

impl CallerToken {
    /// The token of an `Authorization` header `RequireBearer` admitted, which is ASCII and has
    /// the token after the scheme and its spaces.
    pub(crate) fn from_admitted(header: &HeaderValue, dpop: bool) -> Option<Self> {
        let bytes = header.as_bytes();
        let after_scheme = bytes.iter().position(|b| *b == b' ')?;
        let start = after_scheme + bytes[after_scheme..].iter().position(|b| *b != b' ')?;
        Some(Self {
            header: header.clone(),
            start,
            dpop,
        })
    }

    /// A token a test or a custom layer admitted itself (`Bearer` scheme).
    pub fn bearer(token: &str) -> Option<Self> {
        let header = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        Self::from_admitted(&header, false)
    }

    /// The token itself. Take care where it goes: only to the authorization server.
    pub fn expose(&self) -> &str {
        // Admitted headers are ASCII, checked before the token was verified.
        std::str::from_utf8(&self.header.as_bytes()[self.start..]).unwrap_or_default()
    }

    /// Whether it came with the DPoP scheme (a DPoP-bound token, RFC 9449).
    pub fn is_dpop(&self) -> bool {
        self.dpop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_follows_the_scheme_and_never_shows_in_debug() {
        let header = HeaderValue::from_static("DPoP   abc.def");
        let token = CallerToken::from_admitted(&header, true).unwrap();
        assert_eq!(token.expose(), "abc.def");
        assert!(token.is_dpop());
        assert!(!format!("{token:?}").contains("abc"));
        assert_eq!(CallerToken::bearer("xyz").unwrap().expose(), "xyz");
        assert!(CallerToken::from_admitted(&HeaderValue::from_static("Bearer"), false).is_none());
    }
}
