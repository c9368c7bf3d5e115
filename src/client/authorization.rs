//! The authorization request (PKCE S256, `state`, RFC 8707 `resource`) and the checks on the
//! redirect that answers it (`state`, RFC 9207 `iss`, error responses).

use oauth2::{CsrfToken, PkceCodeChallenge};
use url::Url;

use crate::client::discovery::Discovery;
use crate::client::dpop::DpopSigner;
use crate::client::registration::ClientRegistration;
use crate::client::request_options::RequestOptions;
use crate::client::tokens::{self, oauth2_client, scopes};
use crate::error::{Error, ErrorKind, Result};
use crate::http::HttpClient;
use crate::http::{ensure_secure_url, redact_url};
use crate::metadata::AuthorizationServerMetadata;
use crate::secret::Secret;

/// An authorization request that waits for its redirect. `Debug` shows no state or verifier.
#[derive(Clone)]
pub struct PendingAuthorization {
    /// The URL to send the user to.
    pub url: Url,
    /// The redirect URI the code will come back to.
    pub redirect_uri: Url,
    /// The scopes requested.
    pub scopes: Vec<String>,
    pub(crate) state: Secret,
    pub(crate) verifier: Secret,
    pub(crate) issuer: String,
    pub(crate) iss_advertised: bool,
    /// The server and client the code is bound to: the code goes to this token endpoint only,
    /// whatever discovery finds meanwhile (no mix-up, RFC 9207 §1).
    pub(crate) discovery: Discovery,
    pub(crate) client: ClientRegistration,
}

impl std::fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("url", &redact_url(&self.url))
            .field("redirect_uri", &self.redirect_uri.as_str())
            .field("scopes", &self.scopes)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// What the redirect carried, checked.
#[derive(Debug)]
pub(crate) struct AuthorizationCallback {
    pub(crate) code: Secret,
}

/// Checks that a redirect URI is https, or http on a loopback address (RFC 8252 §7.3).
pub(crate) fn validate_redirect_uri(redirect_uri: &Url) -> Result<()> {
    match redirect_uri.scheme() {
        "https" | "http" => ensure_secure_url(redirect_uri, "redirect URI").map_err(|_| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "redirect URI {} must be https or http on a loopback address",
                    redact_url(redirect_uri)
                ),
            )
        }),
        _ => Err(Error::new(
            ErrorKind::Config,
            format!(
                "redirect URI {} must be https or http on a loopback address",
                redact_url(redirect_uri)
            ),
        )),
    }
}

/// Refuses to go on without PKCE S256 (MCP authorization: clients MUST verify support).
pub(crate) fn require_pkce(metadata: &AuthorizationServerMetadata) -> Result<()> {
    if metadata.supports_s256() {
        return Ok(());
    }
    let reason = if metadata.code_challenge_methods_supported.is_none() {
        "does not advertise code_challenge_methods_supported"
    } else {
        "does not list S256 in code_challenge_methods_supported"
    };
    Err(Error::new(
        ErrorKind::PkceNotSupported,
        format!(
            "authorization server {} {reason}; MCP requires PKCE with S256, so authorization stops here",
            metadata.issuer
        ),
    ))
}

/// Builds the authorization URL.
pub(crate) fn start(
    discovery: &Discovery,
    client: &ClientRegistration,
    requested_scopes: Vec<String>,
    redirect_uri: &Url,
    options: &RequestOptions,
) -> Result<PendingAuthorization> {
    validate_redirect_uri(redirect_uri)?;
    require_pkce(&discovery.authorization_server)?;
    let oauth = oauth2_client(discovery, client, Some(redirect_uri))?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = oauth
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_scopes(scopes(&requested_scopes));
    if let Some(resource) = options.resource(discovery) {
        request = request.add_extra_param("resource", resource.to_owned());
    }
    for (name, value) in &options.authorization_params {
        request = request.add_extra_param(name.clone(), value.clone());
    }
    if needs_consent_prompt(&discovery.authorization_server, &requested_scopes, options) {
        request = request.add_extra_param("prompt", "consent");
    }
    let (url, state) = request.url();
    Ok(PendingAuthorization {
        url,
        redirect_uri: redirect_uri.clone(),
        scopes: requested_scopes,
        state: Secret::new(state.secret().clone()),
        verifier: Secret::new(verifier.secret().clone()),
        issuer: discovery.authorization_server.issuer.clone(),
        iss_advertised: discovery
            .authorization_server
            .authorization_response_iss_parameter_supported,
        discovery: discovery.clone(),
        client: client.clone(),
    })
}

/// Exchanges the code of `pending` (with its PKCE verifier) for tokens, bound to the key of
/// `dpop` when given.
pub(crate) async fn exchange_code(
    http: &HttpClient,
    pending: &PendingAuthorization,
    code: &Secret,
    dpop: Option<DpopSigner>,
    options: &RequestOptions,
) -> Result<tokens::TokenSet> {
    let (discovery, client) = (&pending.discovery, &pending.client);
    let endpoint = tokens::TokenEndpoint::discovered(discovery, client, &options.token_params)?;
    let mut params = vec![
        ("code", code.expose()),
        ("redirect_uri", pending.redirect_uri.as_str()),
        ("code_verifier", pending.verifier.expose()),
    ];
    if let Some(resource) = options.resource(discovery) {
        params.push(("resource", resource));
    }
    let tokens = tokens::obtain(
        http,
        &endpoint,
        "authorization_code",
        &params,
        &pending.scopes,
        dpop.as_ref(),
    )
    .await?;
    tracing::info!("authorization code exchanged for tokens");
    Ok(tokens)
}

/// OpenID Connect Core §11: an OpenID provider ignores `offline_access` (no refresh token, and
/// with no other scope, no grant at all) unless the user is asked for consent. So the request
/// says `prompt=consent` when it asks an OpenID provider (one listing the `openid` scope) for
/// `offline_access`, unless the caller set a `prompt` of its own. Other authorization servers
/// get no `prompt`: the parameter is OpenID's, and forcing a consent screen costs users a click.
fn needs_consent_prompt(
    server: &crate::metadata::AuthorizationServerMetadata,
    scopes: &[String],
    options: &RequestOptions,
) -> bool {
    options.consent_prompt_for_offline_access
        && scopes.iter().any(|s| s == "offline_access")
        && server.supports_scope("openid")
        && !options
            .authorization_params
            .iter()
            .any(|(name, _)| name == "prompt")
}

impl PendingAuthorization {
    /// Checks the parameters of the redirect: an error response, `state`, `iss`, `code`.
    pub(crate) fn verify(
        &self,
        code: Option<&str>,
        state: Option<&str>,
        iss: Option<&str>,
        error: Option<(&str, Option<&str>)>,
        iss_checkable: bool,
    ) -> Result<AuthorizationCallback> {
        // An error response with a wrong state may be forged: state first, for errors too.
        if !state.is_some_and(|s| Secret::new(s) == self.state) {
            return Err(state_mismatch());
        }
        // RFC 9207 §2.4: simple string comparison, on error responses too.
        match iss {
            Some(iss) if iss != self.issuer => {
                return Err(Error::new(
                    ErrorKind::IssuerMismatch,
                    format!(
                        "the authorization response came from issuer {iss:?}, expected {:?} (RFC 9207): possible mix-up attack",
                        self.issuer
                    ),
                ))
            }
            None if self.iss_advertised && iss_checkable => {
                return Err(Error::new(
                    ErrorKind::IssuerMismatch,
                    "the authorization server advertises RFC 9207 but its response has no iss parameter",
                ))
            }
            _ => {}
        }
        if let Some((error, description)) = error {
            let description = description
                .map(|d| format!(": {}", crate::error::peer_text(d, 200)))
                .unwrap_or_default();
            let error = crate::error::peer_text(error, 64);
            return Err(Error::new(
                ErrorKind::AuthorizationDenied,
                format!("the authorization server answered `{error}`{description}"),
            ));
        }
        let code = code.filter(|c| !c.is_empty()).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidResponse,
                "the authorization response has no code",
            )
        })?;
        Ok(AuthorizationCallback {
            code: Secret::new(code),
        })
    }

    /// Checks a whole redirect URL: it must be for our redirect URI, then as [`Self::verify`].
    pub(crate) fn verify_redirect(&self, redirect: &Url) -> Result<AuthorizationCallback> {
        let expected = &self.redirect_uri;
        if redirect.origin() != expected.origin() || redirect.path() != expected.path() {
            return Err(Error::new(
                ErrorKind::UnexpectedRedirect,
                format!(
                    "the authorization server redirected to {}, not to the redirect URI {}",
                    redact_url(redirect),
                    redact_url(expected)
                ),
            ));
        }
        let mut code = None;
        let mut state = None;
        let mut iss = None;
        let mut error = None;
        let mut error_description = None;
        for (name, value) in redirect.query_pairs() {
            let slot = match name.as_ref() {
                "code" => &mut code,
                "state" => &mut state,
                "iss" => &mut iss,
                "error" => &mut error,
                "error_description" => &mut error_description,
                _ => continue,
            };
            if slot.is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidResponse,
                    format!("the authorization response repeats the `{name}` parameter"),
                ));
            }
            *slot = Some(value.into_owned());
        }
        self.verify(
            code.as_deref(),
            state.as_deref(),
            iss.as_deref(),
            error.as_deref().map(|e| (e, error_description.as_deref())),
            true,
        )
    }
}

fn state_mismatch() -> Error {
    Error::new(
        ErrorKind::StateMismatch,
        "the state in the authorization response does not match the request: possible CSRF, not continuing",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::AuthorizationServerMetadata;

    fn server(scopes: &[&str]) -> AuthorizationServerMetadata {
        AuthorizationServerMetadata {
            issuer: "https://idp.example.com".into(),
            scopes_supported: Some(scopes.iter().map(|s| (*s).to_owned()).collect()),
            ..Default::default()
        }
    }

    fn asking(scopes: &[&str]) -> Vec<String> {
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn offline_access_at_an_openid_provider_asks_for_consent() {
        let openid = server(&["openid", "offline_access"]);
        let options = RequestOptions::default();
        assert!(needs_consent_prompt(
            &openid,
            &asking(&["offline_access"]),
            &options
        ));
        assert!(needs_consent_prompt(
            &openid,
            &asking(&["mcp", "offline_access"]),
            &options
        ));
        // Nothing to keep: no prompt.
        assert!(!needs_consent_prompt(&openid, &asking(&["mcp"]), &options));
        // A plain OAuth server (the MCP suites' and ours) is not sent OpenID's parameter.
        let plain = server(&["mcp", "offline_access"]);
        assert!(!needs_consent_prompt(
            &plain,
            &asking(&["offline_access"]),
            &options
        ));
        // A prompt the caller chose stays theirs.
        let chosen = RequestOptions {
            authorization_params: vec![("prompt".into(), "login".into())],
            ..Default::default()
        };
        assert!(!needs_consent_prompt(
            &openid,
            &asking(&["offline_access"]),
            &chosen
        ));
        let off = RequestOptions {
            consent_prompt_for_offline_access: false,
            ..Default::default()
        };
        assert!(!needs_consent_prompt(
            &openid,
            &asking(&["offline_access"]),
            &off
        ));
    }
}
