//! CORS for what browser-based MCP clients call without credentials: the discovery documents
//! (protected resource and authorization server metadata, JWKS) and the OAuth endpoints
//! (registration, token, revocation). Any origin, never credentials, and `WWW-Authenticate`
//! readable so a browser client can follow a challenge. The consent page and introspection get
//! no CORS at all.

use http::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
};

/// One policy per purpose: they differ only in the methods they allow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PublicCors {
    methods: &'static str,
}

/// Read-only documents.
#[cfg(feature = "server")]
pub(crate) const DOCUMENTS: PublicCors = PublicCors {
    methods: "GET, HEAD, OPTIONS",
};

/// OAuth endpoints a browser client posts to (and the documents served beside them).
#[cfg(feature = "authorization-server")]
pub(crate) const OAUTH_ENDPOINTS: PublicCors = PublicCors {
    methods: "GET, POST, OPTIONS",
};

impl PublicCors {
    /// The headers of an actual response.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("WWW-Authenticate"),
        );
    }

    /// The headers of an answer to a preflight `OPTIONS`.
    pub(crate) fn preflight(&self, headers: &mut HeaderMap) {
        self.apply(headers);
        headers.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(self.methods),
        );
        headers.insert(
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type, MCP-Protocol-Version"),
        );
        headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    }
}
