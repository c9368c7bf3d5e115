//! What providers want added to, or left out of, the requests of every flow: a leaf the flows
//! import, so none of them imports the configuration that holds it.

use crate::client::discovery::Discovery;

/// What providers want added to, or left out of, authorization and token requests.
#[derive(Debug, Clone)]
pub(crate) struct RequestOptions {
    pub(crate) authorization_params: Vec<(String, String)>,
    pub(crate) token_params: Vec<(String, String)>,
    pub(crate) send_resource: bool,
    /// The `resource` to send instead of the one the server's metadata names.
    pub(crate) resource: Option<String>,
    pub(crate) consent_prompt_for_offline_access: bool,
}

impl Default for RequestOptions {
    fn default() -> Self {
        Self {
            authorization_params: Vec::new(),
            token_params: Vec::new(),
            send_resource: true,
            resource: None,
            consent_prompt_for_offline_access: true,
        }
    }
}

/// Parameters the flows set themselves: an extra one of these names would contradict them.
pub(crate) fn is_protocol_param(name: &str) -> bool {
    const PROTOCOL: &[&str] = &[
        "response_type",
        "client_id",
        "client_secret",
        "redirect_uri",
        "state",
        "scope",
        "resource",
        "code",
        "code_challenge",
        "code_challenge_method",
        "code_verifier",
        "grant_type",
        "refresh_token",
        "assertion",
        "client_assertion",
        "client_assertion_type",
        "subject_token",
        "subject_token_type",
        "requested_token_type",
    ];
    PROTOCOL.contains(&name)
}

impl RequestOptions {
    /// The RFC 8707 `resource` to send (the configured one, else the discovered one), unless
    /// switched off for a provider that refuses it.
    pub(crate) fn resource<'a>(&'a self, discovery: &'a Discovery) -> Option<&'a str> {
        self.resource
            .as_deref()
            .or(discovery.resource.as_deref())
            .filter(|_| self.send_resource)
    }
}
