//! One error type for the crate: an [`ErrorKind`] to match on, a message that says what went
//! wrong, and an optional source.
//!
//! Messages are written by this crate and never contain a token, secret, authorization code or
//! PKCE verifier; sources are only ever errors whose text carries no credentials.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A boxed error, the error type of the tower services this crate wraps.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The HTTP exchange itself failed: connection refused, reset, TLS, protocol error.
    Http,
    /// An outbound call did not finish within its timeout.
    Timeout,
    /// A response body was larger than the configured limit.
    BodyTooLarge,
    /// A response was not what the protocol asks for: bad JSON, wrong content type, bad status,
    /// missing fields.
    InvalidResponse,
    /// A server answered with a redirect where none is allowed (OAuth calls never follow one).
    UnexpectedRedirect,
    /// A URL is not https and not on a loopback host, or is otherwise unusable.
    InsecureUrl,
    /// Discovered metadata does not belong to what we asked about (`resource` or `issuer`
    /// mismatch).
    MetadataMismatch,
    /// No protected-resource or authorization-server metadata could be found.
    DiscoveryFailed,
    /// The authorization server does not support PKCE with S256.
    PkceNotSupported,
    /// Client registration failed or no registration method is available.
    Registration,
    /// The `state` returned to the redirect URI is not the one we sent.
    StateMismatch,
    /// The `iss` returned to the redirect URI does not name the authorization server (RFC 9207).
    IssuerMismatch,
    /// The authorization server answered the authorization request with an error (the user
    /// denied access, for example).
    AuthorizationDenied,
    /// The authorization server rejected a grant (code or refresh token): authorize again.
    InvalidGrant,
    /// The authorization server rejected the client credentials: register again.
    InvalidClient,
    /// The authorization server refused the scopes asked for (`invalid_scope`).
    InvalidScope,
    /// The client may not use this grant (`unauthorized_client`): a configuration matter at
    /// the authorization server, not something a retry fixes.
    UnauthorizedClient,
    /// The token endpoint answered with another OAuth error.
    TokenEndpoint,
    /// There is no usable access token and none can be obtained without the user.
    NotAuthorized,
    /// The credential store could not be read or written.
    Storage,
    /// The caller's configuration is unusable (a bad redirect URI, a missing step).
    Config,
    /// The interactive authorization step failed or timed out.
    Handler,
    /// Refresh or sign-in was attempted too often in a short time: stopped to break a loop.
    TooManyAttempts,
    /// The MCP server no longer knows the session: initialize again.
    SessionExpired,
    /// The resource takes Bearer tokens only, and the client was told to use DPoP-bound
    /// tokens only (`DpopMode::Required`): one of the two settings must change.
    DpopNotAccepted,
}

/// The crate's error: a kind, a message and an optional source. Cheap to clone, so one failed
/// refresh can be reported to every request that waited for it.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
    /// The class when the kind alone does not tell it (a 5xx, a sign-in that asked the user).
    class: Option<ErrorClass>,
}

/// What a caller can do about an [`Error`]: [`Error::class`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The network or a server failed for now (a refused connection, a timeout, a 5xx):
    /// the same request may succeed later. Safe to retry.
    Transient,
    /// Authorization failed or was refused (a denied or abandoned sign-in, a rejected grant
    /// or client), or the MCP session is gone: retrying the same request repeats the refusal,
    /// or asks the user again.
    Authorization,
    /// Something is set up wrong on one side (an insecure URL, metadata that does not match,
    /// a missing setting): nothing works until the configuration changes.
    Configuration,
}

impl Error {
    /// A new error of `kind` with a message that must not contain secrets.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
            class: None,
        }
    }

    /// Marks the error as the end of a sign-in that involved the user: whatever its kind, it
    /// is then of [`ErrorClass::Authorization`], so no retry asks the user again.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn in_sign_in(mut self) -> Self {
        self.class = Some(ErrorClass::Authorization);
        self
    }

    /// Marks the error as the server's passing trouble (a 5xx, `temporarily_unavailable`),
    /// unless it already ended a sign-in.
    pub(crate) fn transient(mut self) -> Self {
        self.class.get_or_insert(ErrorClass::Transient);
        self
    }

    /// What a caller can do about it: retry ([`ErrorClass::Transient`]), or not. An error
    /// that ended a sign-in involving the user is never transient.
    pub fn class(&self) -> ErrorClass {
        use ErrorKind::*;
        if let Some(class) = self.class {
            return class;
        }
        match self.kind {
            Http | Timeout => ErrorClass::Transient,
            StateMismatch | IssuerMismatch | AuthorizationDenied | InvalidGrant | InvalidClient
            | InvalidScope | UnauthorizedClient | NotAuthorized | Handler | TooManyAttempts
            | DpopNotAccepted | SessionExpired => ErrorClass::Authorization,
            BodyTooLarge | InvalidResponse | UnexpectedRedirect | InsecureUrl
            | MetadataMismatch | DiscoveryFailed | PkceNotSupported | Registration
            | TokenEndpoint | Storage | Config => ErrorClass::Configuration,
        }
    }

    /// Whether the same request may succeed later: [`ErrorClass::Transient`].
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// Attaches an already boxed cause (non-generic, which keeps futures `Send`-provable).
    pub(crate) fn with_boxed_source(mut self, source: BoxError) -> Self {
        self.source = Some(Arc::from(source));
        self
    }

    /// The crate error inside a boxed error from a tower stack, if that is what it is; any other
    /// error becomes an [`ErrorKind::Http`] error with it as the source.
    pub fn from_boxed(error: BoxError) -> Self {
        match error.downcast::<Self>() {
            Ok(error) => *error,
            Err(other) => {
                Self::new(ErrorKind::Http, "the HTTP service failed").with_boxed_source(other)
            }
        }
    }

    /// An error from a tower service beneath us, kept as is when it is already ours.
    #[cfg_attr(not(feature = "transport"), allow(dead_code))]
    pub(crate) fn from_service(error: impl Into<BoxError>) -> Self {
        Self::from_boxed(error.into())
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What went wrong, without the kind or the source.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Text a peer sent (an OAuth `error`, `error_description`), fit to quote in an error message
/// or a log line: printable ASCII only (every other character becomes `?`, so no control,
/// bidi or zero-width character can reorder or hide what a person reads), `max` characters
/// at most.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) fn peer_text(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::peer_text;

    #[test]
    fn peer_text_is_printable_ascii_and_bounded() {
        assert_eq!(peer_text("plain words", 100), "plain words");
        assert_eq!(peer_text("a\u{202e}b\u{200b}c\nd", 100), "a?b?c?d");
        assert_eq!(peer_text("abcdef", 3), "abc");
    }

    proptest::proptest! {
        #[test]
        fn peer_text_never_passes_anything_unprintable(text in ".{0,300}", max in 0usize..300) {
            let shown = peer_text(&text, max);
            proptest::prop_assert!(shown.chars().count() <= max);
            proptest::prop_assert!(shown.bytes().all(|b| (b' '..=b'~').contains(&b)));
        }
    }
}
