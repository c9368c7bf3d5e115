//! The client's wire vocabulary: the URNs grants and assertions are named by, and what a token
//! must look like to be sent. A leaf every flow imports.

/// The device authorization grant (RFC 8628 §3.4).
pub(crate) const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The JWT-bearer grant (RFC 7523 §2.1).
pub(crate) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// `client_assertion_type` for a JWT client assertion (RFC 7523 §2.2).
pub(crate) const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Whether `token` can go in `Authorization: Bearer <token>`: one run of visible ASCII
/// (RFC 6750's `b64token` and the opaque tokens servers issue in practice).
pub(crate) fn is_attachable(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}
