//! What upstream sign-in keeps: authorizations waiting for the user to come back from the
//! identity provider, browser sessions, remembered consents and the users' upstream tokens
//! (sealed). Every record is keyed so that any replica can finish what another began.

use serde::{Deserialize, Serialize};

use super::{PendingConsent, TokenHash};
use crate::Secret;

/// Who the upstream identity provider says the user is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamIdentity {
    /// The identity provider (its OpenID issuer, or the profile's fixed issuer for plain OAuth).
    pub issuer: String,
    /// The user's stable identifier at that provider (`sub`, or GitHub's numeric `id`).
    pub subject: String,
    /// A name to show: the user's name, login or email, as the provider gives it.
    pub display_name: Option<String>,
    /// The email address, if the provider gave one.
    pub email: Option<String>,
    /// Whether the provider says it verified `email` (`None`: it did not say).
    pub email_verified: Option<bool>,
    /// Every claim the provider gave (ID token claims, or the user API's fields).
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl UpstreamIdentity {
    /// The subject of the tokens this server issues for the user: qualified by the provider
    /// (`{issuer}#{subject}`), so two providers' users never share one.
    pub fn qualified_subject(&self) -> String {
        format!("{}#{}", self.issuer, self.subject)
    }

    /// Whether `subject` is a [`qualified_subject`](Self::qualified_subject) of a user of the
    /// provider `issuer`.
    #[cfg(feature = "downstream")]
    pub(crate) fn qualifies(issuer: &str, subject: &str) -> bool {
        subject
            .strip_prefix(issuer)
            .and_then(|rest| rest.strip_prefix('#'))
            .is_some_and(|id| !id.is_empty())
    }

    /// What the consent page shows.
    pub fn shown_name(&self) -> &str {
        self.display_name
            .as_deref()
            .or(self.email.as_deref())
            .unwrap_or(&self.subject)
    }
}

/// An approved authorization waiting for the user to sign in upstream. Kept under the hash of
/// the `state` sent upstream, and taken once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingSignIn {
    /// The MCP client's request the user approved. Its `subject` is empty (nobody is signed in
    /// yet) and its `csrf_hash` is the hash of the browser's state cookie.
    pub consent: PendingConsent,
    /// The OpenID Connect `nonce` sent upstream.
    pub nonce: Secret,
    /// The PKCE verifier of the upstream authorization.
    pub code_verifier: Secret,
}

/// A browser signed in through the upstream provider. Kept under the hash of the session
/// cookie's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignInSession {
    /// The subject of the tokens issued in this session ([`UpstreamIdentity::qualified_subject`]).
    pub subject: String,
    /// Who signed in.
    pub identity: UpstreamIdentity,
    /// When the session ends.
    pub expires_at: u64,
}

/// A user's consent to a client, remembered so the next authorization with no more scopes
/// needs no page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RememberedConsent {
    /// The user.
    pub subject: String,
    /// The client.
    pub client_id: String,
    /// The scopes consented to.
    pub scopes: Vec<String>,
    /// The resource consented to.
    pub resource: String,
    /// When the consent is forgotten.
    pub expires_at: u64,
}

impl RememberedConsent {
    /// Whether this consent covers `scopes` for `resource` at `now`.
    pub fn covers(&self, scopes: &[String], resource: &str, now: u64) -> bool {
        self.expires_at > now
            && self.resource == resource
            && scopes.iter().all(|s| self.scopes.contains(s))
    }
}

/// The record of a user's upstream tokens, sealed (AES-256-GCM) by the server before it
/// reaches the store: the store never sees a token.
#[derive(Clone, Serialize, Deserialize)]
pub struct SealedUpstreamTokens(pub Vec<u8>);

impl std::fmt::Debug for SealedUpstreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedUpstreamTokens({} bytes)", self.0.len())
    }
}

impl Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        serializer.serialize_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let text = String::deserialize(deserializer)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        let hash: [u8; 32] = bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a token hash has 32 bytes"))?;
        Ok(Self(hash))
    }
}

#[cfg(all(test, feature = "downstream"))]
mod tests {
    use super::UpstreamIdentity;

    #[test]
    fn a_subject_qualifies_only_under_its_own_issuer_and_with_an_id() {
        let github = "https://github.com";
        assert!(UpstreamIdentity::qualifies(
            github,
            "https://github.com#583231"
        ));
        for other in [
            "https://github.com#",
            "https://github.com",
            "https://github.com.evil#1",
            "https://github.co#1",
            "583231",
        ] {
            assert!(!UpstreamIdentity::qualifies(github, other), "{other}");
        }
    }
}
