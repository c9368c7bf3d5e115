//! Who approves an authorization request: the [`ApprovalPolicy`] and the two the crate ships.

use http::HeaderMap;

use super::store::BoxFuture;

/// An authorization request as the approval policy sees it: already validated.
#[derive(Debug, Clone)]
pub struct ConsentRequest {
    /// The client identifier.
    pub client_id: String,
    /// The client's name, if it gave one.
    pub client_name: Option<String>,
    /// Where the answer goes.
    pub redirect_uri: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// The resource the token is for.
    pub resource: String,
}

/// What an [`ApprovalPolicy`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationDecision {
    /// Issue a code at once, for the user `subject`.
    Approve {
        /// The user the tokens are for.
        subject: String,
    },
    /// Show the consent page; if the user approves, the tokens are for `subject`.
    AskUser {
        /// The user the tokens are for.
        subject: String,
    },
    /// Refuse (`access_denied`).
    Deny,
}

/// Decides authorization requests. The application's own policy can authenticate the user from
/// the request headers (a session cookie, say, looked up in its own store) before approving or
/// asking; it answers with a future so that lookup may do I/O.
///
/// ```
/// use http::HeaderMap;
/// use tower_mcp_oauth::authorization_server::{
///     ApprovalPolicy, AuthorizationDecision, BoxFuture, ConsentRequest,
/// };
///
/// /// Asks the user signed in by the application's login layer; refuses everyone else.
/// struct SignedInUser;
///
/// impl ApprovalPolicy for SignedInUser {
///     fn decide<'a>(
///         &'a self,
///         _request: &'a ConsentRequest,
///         headers: &'a HeaderMap,
///     ) -> BoxFuture<'a, AuthorizationDecision> {
///         Box::pin(async move {
///             // A real policy looks the session cookie up in its session store.
///             match headers.get("x-authenticated-user").and_then(|v| v.to_str().ok()) {
///                 Some(user) => AuthorizationDecision::AskUser { subject: user.to_owned() },
///                 None => AuthorizationDecision::Deny,
///             }
///         })
///     }
/// }
/// ```
pub trait ApprovalPolicy: Send + Sync + 'static {
    /// The decision for a validated request.
    fn decide<'a>(
        &'a self,
        request: &'a ConsentRequest,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, AuthorizationDecision>;
}

/// Approves every valid request without asking: for development and tests only.
#[derive(Debug, Clone)]
pub struct AutoApprove {
    subject: String,
}

impl AutoApprove {
    /// Approves as the user `subject`.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
        }
    }
}

impl ApprovalPolicy for AutoApprove {
    fn decide<'a>(
        &'a self,
        _: &'a ConsentRequest,
        _: &'a HeaderMap,
    ) -> BoxFuture<'a, AuthorizationDecision> {
        Box::pin(std::future::ready(AuthorizationDecision::Approve {
            subject: self.subject.clone(),
        }))
    }
}

/// Shows the consent page for every request; the user who approves is `subject`.
#[derive(Debug, Clone)]
pub struct ConsentPage {
    subject: String,
}

impl ConsentPage {
    /// Asks, for the user `subject`.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
        }
    }
}

impl ApprovalPolicy for ConsentPage {
    fn decide<'a>(
        &'a self,
        _: &'a ConsentRequest,
        _: &'a HeaderMap,
    ) -> BoxFuture<'a, AuthorizationDecision> {
        Box::pin(std::future::ready(AuthorizationDecision::AskUser {
            subject: self.subject.clone(),
        }))
    }
}

/// Refuses everything: where no policy may decide (upstream sign-in decides instead).
pub(super) struct RefuseAll;

impl ApprovalPolicy for RefuseAll {
    fn decide<'a>(
        &'a self,
        _: &'a ConsentRequest,
        _: &'a HeaderMap,
    ) -> BoxFuture<'a, AuthorizationDecision> {
        Box::pin(std::future::ready(AuthorizationDecision::Deny))
    }
}
