//! The upstream leg at run time: the provider's endpoints (discovered once), the authorization
//! URL, the code redeemed with the server's own client credentials, and who the user is.

use std::time::Duration;

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Request};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use url::Url;

use super::answer::{bounded, SignInError, UpstreamTokens};
use super::id_token::{self, Expected, IdTokenError};
use super::{ClientAuth, ProviderKind, UpstreamSignIn};
use crate::authorization_server::keys::SigningKey;
use crate::authorization_server::store::UpstreamIdentity;
use crate::clock::now_secs;
use crate::error::Result;
use crate::http::{basic_authorization, ensure_secure_url, parse_url, RequestBody};
use crate::jwks::{fetch_issuer_metadata, FetchPolicy, KeyCache, KeySource};
use crate::Secret;

const KEY_POLICY: FetchPolicy = FetchPolicy {
    min_refetch_interval: Duration::from_secs(30),
    max_key_age: Duration::from_secs(3600),
    max_stale: Duration::from_secs(3600),
};
/// Sent to every provider: GitHub refuses requests without one.
const AGENT: &str = concat!("tower-mcp-oauth/", env!("CARGO_PKG_VERSION"));
/// RFC 5321's longest address: a longer `email` claim is not one.
const MAX_EMAIL_LEN: usize = 254;
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Lifetime of the server's client assertion.
const ASSERTION_TTL_SECS: u64 = 60;

/// The provider's endpoints, as discovered or given.
#[derive(Debug)]
struct Endpoints {
    issuer: String,
    authorization: Url,
    token: Url,
    /// OpenID Connect: the keys ID tokens are checked with.
    keys: Option<KeyCache>,
    /// RFC 9207: the provider says it sends `iss` with the authorization response.
    sends_iss: bool,
}

/// Upstream sign-in, ready to run.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) config: UpstreamSignIn,
    endpoints: OnceCell<Endpoints>,
    /// One refresh of a user's upstream tokens at a time in this process.
    pub(super) refreshing: tokio::sync::Mutex<()>,
}

impl Upstream {
    pub(crate) fn new(config: UpstreamSignIn) -> Result<Self> {
        match &config.provider {
            ProviderKind::OpenId { issuer } => {
                ensure_secure_url(&parse_url(issuer, "upstream issuer")?, "upstream issuer")?
            }
            ProviderKind::OAuth2(profile) => {
                for (url, what) in [
                    (
                        &profile.authorization_endpoint,
                        "upstream authorization endpoint",
                    ),
                    (&profile.token_endpoint, "upstream token endpoint"),
                    (&profile.user_endpoint, "upstream user API"),
                ] {
                    ensure_secure_url(url, what)?;
                }
            }
        }
        if let ClientAuth::Basic(secret) | ClientAuth::Post(secret) = &config.auth {
            if secret.expose().is_empty() {
                return Err(crate::Error::new(
                    crate::ErrorKind::Config,
                    "the upstream client secret is empty",
                ));
            }
        }
        Ok(Self {
            config,
            endpoints: OnceCell::new(),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// The provider's name on the consent page.
    pub(crate) fn display_name(&self) -> String {
        if let Some(name) = &self.config.display_name {
            return name.clone();
        }
        match &self.config.provider {
            ProviderKind::OAuth2(profile) => profile.name.clone(),
            ProviderKind::OpenId { issuer } => Url::parse(issuer)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| issuer.clone()),
        }
    }

    pub(crate) fn is_openid(&self) -> bool {
        matches!(self.config.provider, ProviderKind::OpenId { .. })
    }

    pub(crate) fn session_ttl(&self) -> Duration {
        self.config.session_ttl
    }

    /// The key upstream tokens are sealed with, when they are kept.
    pub(crate) fn token_key(&self) -> Option<&crate::seal::SealingKey> {
        self.config.token_key.as_deref()
    }

    pub(crate) fn consent_ttl(&self) -> Duration {
        self.config.consent_ttl
    }

    async fn endpoints(&self) -> std::result::Result<&Endpoints, SignInError> {
        self.endpoints
            .get_or_try_init(|| async {
                match &self.config.provider {
                    ProviderKind::OAuth2(profile) => Ok(Endpoints {
                        issuer: profile.issuer.clone(),
                        authorization: profile.authorization_endpoint.clone(),
                        token: profile.token_endpoint.clone(),
                        keys: None,
                        sends_iss: false,
                    }),
                    ProviderKind::OpenId { issuer } => self.discover(issuer).await,
                }
            })
            .await
    }

    async fn discover(&self, issuer: &str) -> std::result::Result<Endpoints, SignInError> {
        let unavailable = |e: crate::Error| SignInError::Unavailable(e.to_string());
        let metadata = fetch_issuer_metadata(&self.config.http, issuer)
            .await
            .map_err(unavailable)?;
        let url = |value: Option<String>, what: &str| -> Result<Url> {
            let value = value.ok_or_else(|| {
                crate::Error::new(
                    crate::ErrorKind::DiscoveryFailed,
                    format!("the provider's metadata has no {what}"),
                )
            })?;
            let url = parse_url(&value, what)?;
            self.config.http.check_url(&url, what)?;
            Ok(url)
        };
        let authorization =
            url(metadata.authorization_endpoint, "authorization_endpoint").map_err(unavailable)?;
        let token = url(metadata.token_endpoint, "token_endpoint").map_err(unavailable)?;
        // An RFC 8414 server without keys still serves linked accounts; sign-in then refuses
        // (no ID token can be checked).
        let keys = match metadata.jwks_uri {
            Some(jwks) => {
                let jwks = url(Some(jwks), "jwks_uri").map_err(unavailable)?;
                Some(
                    KeyCache::new(KeySource::Url(jwks), self.config.http.clone(), KEY_POLICY)
                        .map_err(unavailable)?,
                )
            }
            None => None,
        };
        Ok(Endpoints {
            issuer: metadata.issuer,
            authorization,
            token,
            keys,
            sends_iss: metadata.authorization_response_iss_parameter_supported,
        })
    }

    /// The provider's origin, for the consent page's `form-action` (the approve answer
    /// redirects there).
    pub(crate) async fn authorization_origin(&self) -> std::result::Result<String, SignInError> {
        Ok(self
            .endpoints()
            .await?
            .authorization
            .origin()
            .ascii_serialization())
    }

    /// The URL that starts the sign-in upstream.
    pub(crate) async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> std::result::Result<Url, SignInError> {
        self.authorization_url_with(redirect_uri, state, nonce, code_challenge, &[])
            .await
    }

    /// [`authorization_url`](Self::authorization_url) with `extra` parameters (`resource`).
    pub(crate) async fn authorization_url_with(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
        extra: &[(&str, &str)],
    ) -> std::result::Result<Url, SignInError> {
        let endpoints = self.endpoints().await?;
        let mut url = endpoints.authorization.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.config.client_id)
                .append_pair("redirect_uri", redirect_uri);
            let scopes = self.scopes();
            if !scopes.is_empty() {
                query.append_pair("scope", &scopes.join(" "));
            }
            query.extend_pairs(extra);
            query
                .append_pair("state", state)
                .append_pair("code_challenge", code_challenge)
                .append_pair("code_challenge_method", "S256");
            if self.is_openid() {
                query.append_pair("nonce", nonce);
            }
        }
        Ok(url)
    }

    fn scopes(&self) -> Vec<String> {
        if let Some(scopes) = &self.config.scopes {
            return scopes.clone();
        }
        match &self.config.provider {
            ProviderKind::OpenId { .. } => vec!["openid".into(), "email".into(), "profile".into()],
            ProviderKind::OAuth2(profile) => profile.scopes.clone(),
        }
    }

    /// RFC 9207 at the callback: a provider that says it sends `iss` must send its own; any
    /// `iss` sent must be its own.
    pub(crate) async fn check_callback_issuer(
        &self,
        iss: Option<&str>,
    ) -> std::result::Result<(), SignInError> {
        let endpoints = self.endpoints().await?;
        match iss {
            Some(iss) if iss != endpoints.issuer => Err(SignInError::Invalid(
                "the answer came from another identity provider (iss)",
            )),
            None if endpoints.sends_iss => Err(SignInError::Invalid(
                "the identity provider's answer names no issuer (iss)",
            )),
            _ => Ok(()),
        }
    }

    /// Redeems `code` and finds out who signed in.
    pub(crate) async fn sign_in(
        &self,
        code: &str,
        code_verifier: &str,
        nonce: &str,
        redirect_uri: &str,
        key: &SigningKey,
    ) -> std::result::Result<(UpstreamIdentity, UpstreamTokens), SignInError> {
        let endpoints = self.endpoints().await?;
        let tokens = self
            .token_request(
                endpoints,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect_uri),
                    ("code_verifier", code_verifier),
                ],
                key,
            )
            .await?;
        let identity = match (&self.config.provider, &endpoints.keys) {
            (ProviderKind::OpenId { .. }, Some(keys)) => {
                let id_token = tokens.id_token.as_ref().ok_or(SignInError::Invalid(
                    "the identity provider sent no ID token (is `openid` among the scopes?)",
                ))?;
                let expected = Expected {
                    issuer: &endpoints.issuer,
                    client_id: &self.config.client_id,
                    nonce,
                    now: now_secs(),
                };
                let claims = id_token::check(id_token.expose(), keys, &expected)
                    .await
                    .map_err(|e| match e {
                        IdTokenError::Unavailable => {
                            SignInError::Unavailable(e.reason().to_owned())
                        }
                        IdTokenError::Invalid(reason) => SignInError::Invalid(reason),
                    })?;
                identity_from_claims(&endpoints.issuer, "sub", "name", claims)?
            }
            (ProviderKind::OAuth2(profile), _) => {
                let claims = self
                    .user_api(&profile.user_endpoint, &tokens.access_token)
                    .await?;
                identity_from_claims(
                    &profile.issuer,
                    &profile.subject_field,
                    &profile.name_field,
                    claims,
                )?
            }
            (ProviderKind::OpenId { .. }, None) => {
                return Err(SignInError::Unavailable(
                    "the provider's keys are unknown".into(),
                ))
            }
        };
        Ok((identity, tokens))
    }

    #[cfg_attr(not(feature = "downstream"), allow(dead_code))]
    /// Redeems `code` for the provider's tokens, without finding out who signed in (a linked
    /// account, where the user is known already), with `extra` parameters (`resource`).
    pub(crate) async fn redeem(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        key: &SigningKey,
        extra: &[(&str, &str)],
    ) -> std::result::Result<UpstreamTokens, SignInError> {
        let endpoints = self.endpoints().await?;
        let mut grant = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        grant.extend_from_slice(extra);
        self.token_request(endpoints, &grant, key).await
    }

    /// Refreshes the upstream tokens with `refresh_token`.
    pub(crate) async fn refresh(
        &self,
        refresh_token: &Secret,
        key: &SigningKey,
    ) -> std::result::Result<UpstreamTokens, SignInError> {
        let endpoints = self.endpoints().await?;
        self.token_request(
            endpoints,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose()),
            ],
            key,
        )
        .await
    }

    /// The token request, with the server's client authentication.
    fn build_token_request(
        &self,
        endpoints: &Endpoints,
        grant: &[(&str, &str)],
        key: &SigningKey,
    ) -> std::result::Result<Request<RequestBody>, SignInError> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(grant);
        let mut request = Request::post(endpoints.token.as_str())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, AGENT);
        let client_id = &self.config.client_id;
        match &self.config.auth {
            ClientAuth::None => {
                form.append_pair("client_id", client_id);
            }
            ClientAuth::Post(secret) => {
                form.append_pair("client_id", client_id)
                    .append_pair("client_secret", secret.expose());
            }
            ClientAuth::Basic(secret) => {
                let value = basic_authorization(client_id, secret.expose()).ok_or_else(|| {
                    SignInError::Unavailable("the client secret does not fit".into())
                })?;
                request = request.header(AUTHORIZATION, value);
            }
            ClientAuth::PrivateKeyJwt => {
                let now = now_secs();
                let assertion = key
                    .sign_jwt(&serde_json::json!({
                        "iss": client_id,
                        "sub": client_id,
                        // The token endpoint, which every provider takes (some refuse the issuer).
                        "aud": endpoints.token.as_str(),
                        "iat": now,
                        "exp": now + ASSERTION_TTL_SECS,
                        "jti": super::super::grant::random_token(),
                    }))
                    .map_err(|e| SignInError::Unavailable(e.to_string()))?;
                form.append_pair("client_id", client_id)
                    .append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE)
                    .append_pair("client_assertion", &assertion);
            }
        }
        request
            .body(RequestBody::from(form.finish()))
            .map_err(|_| SignInError::Unavailable("the token request cannot be built".into()))
    }

    async fn token_request(
        &self,
        endpoints: &Endpoints,
        grant: &[(&str, &str)],
        key: &SigningKey,
    ) -> std::result::Result<UpstreamTokens, SignInError> {
        let request = self.build_token_request(endpoints, grant, key)?;
        let response = self.send(request).await?;
        UpstreamTokens::from_response(response.status(), response.body(), now_secs())
    }

    /// A call to the provider: a failure to reach it is its unavailability.
    async fn send(
        &self,
        request: Request<RequestBody>,
    ) -> std::result::Result<http::Response<bytes::Bytes>, SignInError> {
        self.config
            .http
            .send(request)
            .await
            .map_err(|e| SignInError::Unavailable(e.to_string()))
    }

    async fn user_api(
        &self,
        url: &Url,
        access_token: &Secret,
    ) -> std::result::Result<Map<String, Value>, SignInError> {
        let mut bearer = HeaderValue::try_from(format!("Bearer {}", access_token.expose()))
            .map_err(|_| SignInError::Invalid("the provider's access token is not a token"))?;
        bearer.set_sensitive(true);
        let request = Request::get(url.as_str())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, AGENT)
            .header(AUTHORIZATION, bearer)
            .body(RequestBody::default())
            .map_err(|_| SignInError::Unavailable("the user API request cannot be built".into()))?;
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(SignInError::Unavailable(format!(
                "the user API answered {}",
                response.status()
            )));
        }
        serde_json::from_slice(response.body())
            .map_err(|_| SignInError::Invalid("the user API did not answer with a JSON object"))
    }

    /// Applies the sign-in rules: email domains, required claims, then the application's
    /// check.
    pub(crate) async fn admit(
        &self,
        identity: &UpstreamIdentity,
        access_token: &Secret,
    ) -> std::result::Result<(), SignInError> {
        admit_by_rules(&self.config, identity)?;
        if let Some(check) = &self.config.check {
            check
                .check(identity, access_token)
                .await
                .map_err(|why| SignInError::NotAllowed(bounded(&why)))?;
        }
        Ok(())
    }

    /// The scopes `identity` gets of `requested`: the mapping's answer, narrowed to the request.
    pub(crate) fn scopes_for(
        &self,
        identity: &UpstreamIdentity,
        requested: &[String],
    ) -> Vec<String> {
        match &self.config.map_scopes {
            None => requested.to_vec(),
            Some(map) => {
                let allowed = map(identity, requested);
                requested
                    .iter()
                    .filter(|s| allowed.contains(s))
                    .cloned()
                    .collect()
            }
        }
    }
}

fn admit_by_rules(
    config: &UpstreamSignIn,
    identity: &UpstreamIdentity,
) -> std::result::Result<(), SignInError> {
    if !config.email_domains.is_empty() {
        let email = identity.email.as_deref().ok_or_else(|| {
            SignInError::NotAllowed("the identity provider gave no email address".into())
        })?;
        if identity.email_verified != Some(true) {
            return Err(SignInError::NotAllowed(
                "the identity provider does not say the email address is verified".into(),
            ));
        }
        let domain = email
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        if !config.email_domains.contains(&domain) {
            return Err(SignInError::NotAllowed(format!(
                "accounts at {} may not sign in",
                bounded(&domain)
            )));
        }
    }
    for (name, value) in &config.required_claims {
        let holds = match identity.claims.get(name) {
            Some(Value::Array(items)) => items.contains(value),
            Some(claim) => claim == value,
            None => false,
        };
        if !holds {
            return Err(SignInError::NotAllowed(format!(
                "the account's {} does not allow it",
                bounded(name)
            )));
        }
    }
    Ok(())
}

/// Who signed in, from ID token claims or a user API's fields.
fn identity_from_claims(
    issuer: &str,
    subject_field: &str,
    name_field: &str,
    claims: Map<String, Value>,
) -> std::result::Result<UpstreamIdentity, SignInError> {
    let subject = match claims.get(subject_field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(SignInError::Invalid(
                "the identity provider named no user id",
            ))
        }
    };
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(bounded)
    };
    let display_name = text(name_field)
        .or_else(|| text("preferred_username"))
        .or_else(|| text("login"));
    // Checked by the sign-in rules as given: never cut, nothing removed.
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty() && e.len() <= MAX_EMAIL_LEN && !e.chars().any(char::is_control))
        .map(str::to_owned);
    let email_verified = claims.get("email_verified").and_then(Value::as_bool);
    Ok(UpstreamIdentity {
        issuer: issuer.to_owned(),
        subject,
        display_name,
        email,
        email_verified,
        claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(claims: Value) -> UpstreamIdentity {
        identity_from_claims(
            "https://idp.example",
            "sub",
            "name",
            claims.as_object().unwrap().clone(),
        )
        .unwrap()
    }

    #[test]
    fn email_domains_admit_only_verified_addresses_in_them() {
        let config = UpstreamSignIn::openid("https://idp.example", "as")
            .allow_email_domains(["@Example.com"]);
        let admitted = |claims| admit_by_rules(&config, &identity(claims)).is_ok();
        assert!(
            !admitted(json!({"sub": "a", "email": "a@example.com"})),
            "verified or refused"
        );
        assert!(admitted(
            json!({"sub": "a", "email": "a@EXAMPLE.com", "email_verified": true})
        ));
        assert!(admitted(
            json!({"sub": "a", "email": "a@example.com", "email_verified": true})
        ));
        assert!(!admitted(
            json!({"sub": "a", "email": "a@example.com", "email_verified": false})
        ));
        assert!(!admitted(
            json!({"sub": "a", "email": "a@example.com.evil"})
        ));
        assert!(!admitted(json!({"sub": "a", "email": "a@evil.com"})));
        assert!(!admitted(json!({"sub": "a"})));
    }

    #[test]
    fn required_claims_match_a_value_or_a_member_of_an_array() {
        let config = UpstreamSignIn::openid("https://idp.example", "as")
            .require_claim("groups", "mcp-users");
        let admitted = |claims| admit_by_rules(&config, &identity(claims)).is_ok();
        assert!(admitted(json!({"sub": "a", "groups": ["x", "mcp-users"]})));
        assert!(admitted(json!({"sub": "a", "groups": "mcp-users"})));
        assert!(!admitted(json!({"sub": "a", "groups": ["x"]})));
        assert!(!admitted(json!({"sub": "a"})));
    }

    #[test]
    fn subjects_are_strings_or_numbers_and_qualified_by_the_issuer() {
        let github = identity_from_claims(
            "https://github.com",
            "id",
            "login",
            json!({"id": 583231, "login": "octocat", "email": null})
                .as_object()
                .unwrap()
                .clone(),
        )
        .unwrap();
        assert_eq!(github.qualified_subject(), "https://github.com#583231");
        assert_eq!(github.shown_name(), "octocat");
        assert_eq!(github.email, None);
        for bad in [
            json!({}),
            json!({"id": ""}),
            json!({"id": true}),
            json!({"id": null}),
        ] {
            assert!(identity_from_claims(
                "https://github.com",
                "id",
                "login",
                bad.as_object().unwrap().clone()
            )
            .is_err());
        }
    }
}
