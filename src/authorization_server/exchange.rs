//! RFC 8693 token exchange at the token endpoint: a resource server (an MCP server) trades its
//! caller's access token for one to a downstream API, on the caller's behalf.
//!
//! Who may exchange what is the operator's [`TokenExchangePolicy`]: each [`DownstreamApi`] names
//! its audience, the most it may be granted (scopes), the clients that may ask (the MCP
//! servers' own confidential clients) and the resources whose tokens they may present. A token
//! issued this way names the exchanging client in `act` (RFC 8693 §4.1), never outlives the
//! subject token, carries no refresh token, and belongs to the subject token's grant (its
//! refresh-token family): revoking the grant (RFC 7009 on the refresh token, or a refresh token
//! reused) revokes it too wherever the store is asked (introspection,
//! [`LocalVerifier`](super::LocalVerifier)). Revoking the subject access token alone does not;
//! a subject token without a grant (no refresh token issued, or from a trusted issuer) leaves
//! the exchanged token to its expiry, as does a downstream API that checks JWTs against the
//! JWKS alone. Exchanged tokens cannot be exchanged again.

use std::sync::Arc;

use serde_json::Value;

use super::grant::{hash, split_scopes, AccessStatus};
use super::store::{ClientAuthMethod, RegisteredClient};
use super::wire::{OAuthError, Params};
use super::AuthorizationServer;
use crate::clock::now_secs;
use crate::metadata::same_resource;

/// `grant_type` of RFC 8693 token exchange.
pub(crate) const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3: an OAuth 2.0 access token.
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// RFC 8693 §3: a JWT.
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// What the token-exchange grant may issue: the downstream APIs resource servers may call on
/// their callers' behalf. Set with
/// [`AuthorizationServerConfig::token_exchange`](super::AuthorizationServerConfig::token_exchange).
///
/// ```
/// use tower_mcp_oauth::authorization_server::{DownstreamApi, TokenExchangePolicy};
///
/// let policy = TokenExchangePolicy::new().downstream(
///     DownstreamApi::new("https://crm.example.com/api")
///         .scopes(["crm:read"])
///         // The MCP server's own confidential client, presenting its callers' tokens.
///         .exchanged_by("mcp-server", "https://mcp.example.com/mcp"),
/// );
/// ```
#[derive(Clone, Default)]
pub struct TokenExchangePolicy {
    downstream: Vec<DownstreamApi>,
    #[cfg(feature = "server")]
    trusted: Option<Arc<dyn crate::server::TokenVerifier>>,
}

impl std::fmt::Debug for TokenExchangePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchangePolicy")
            .field("downstream", &self.downstream)
            .finish_non_exhaustive()
    }
}

impl TokenExchangePolicy {
    /// A policy that allows nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows exchanges for `api`.
    pub fn downstream(mut self, api: DownstreamApi) -> Self {
        self.downstream.push(api);
        self
    }

    /// Also takes subject tokens from another issuer, checked by `verifier` (a
    /// [`JwtVerifier`](crate::server::JwtVerifier) for the company IdP, say): its `sub` becomes
    /// the exchanged token's subject, prefixed with its issuer as `{iss}#{sub}` so it can never
    /// pass for one of this server's users. Its audience must be a resource an exchanging
    /// client was allowed ([`DownstreamApi::exchanged_by`]).
    #[cfg(feature = "server")]
    pub fn trust_subject_tokens(mut self, verifier: impl crate::server::TokenVerifier) -> Self {
        self.trusted = Some(Arc::new(verifier));
        self
    }
}

/// A downstream API tokens may be exchanged for: its audience, its scopes, and who may ask.
#[derive(Debug, Clone)]
pub struct DownstreamApi {
    audience: String,
    scopes: Vec<String>,
    /// `(client_id, resource)`: the client may present tokens issued for the resource.
    exchangers: Vec<(String, String)>,
    /// Scopes the subject token must carry (what the user consented to for the MCP server).
    required_subject_scopes: Vec<String>,
}

impl DownstreamApi {
    /// The API known by `audience` (its resource URI, or the identifier it checks in `aud`).
    pub fn new(audience: impl Into<String>) -> Self {
        Self {
            audience: audience.into(),
            scopes: Vec::new(),
            exchangers: Vec::new(),
            required_subject_scopes: Vec::new(),
        }
    }

    /// The scopes an exchanged token may carry: a request names some of them, or gets all.
    /// Unless [`Self::requires_subject_scopes`] says otherwise, any token the exchanging client
    /// may present gets them, whatever the user consented to at the MCP server.
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Lets the operator-registered confidential client `client_id` exchange tokens that were
    /// issued for `resource` (the MCP server that client belongs to): RFC 8693's `may_act`, as
    /// policy. Call once per client and resource.
    pub fn exchanged_by(
        mut self,
        client_id: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        self.exchangers.push((client_id.into(), resource.into()));
        self
    }

    /// Exchanges only subject tokens that carry every one of `scopes`: the user consented to
    /// them (`mcp:crm`, say), so the downstream access follows that consent.
    pub fn requires_subject_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.required_subject_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    fn allows(&self, client_id: &str, subject_audience: &[String]) -> bool {
        self.exchangers.iter().any(|(client, resource)| {
            client == client_id
                && subject_audience
                    .iter()
                    .any(|aud| same_resource(aud, resource))
        })
    }
}

/// What an exchange issues, once every check passed.
pub(super) struct Exchanged {
    pub(super) subject: String,
    pub(super) audience: String,
    pub(super) scopes: Vec<String>,
    /// The subject token's grant: revoking it revokes this token.
    pub(super) family_id: Option<String>,
    /// The subject token's expiry, which the new token never passes.
    pub(super) not_after: u64,
    /// RFC 8693 §4.1: the exchanging client, and whoever acted before it.
    pub(super) act: Value,
}

/// The subject token, verified.
struct Subject {
    subject: String,
    audience: Vec<String>,
    scopes: Vec<String>,
    family_id: Option<String>,
    expires_at: u64,
    prior_act: Option<Value>,
}

/// Checks a token-exchange request from `client` against the policy (RFC 8693 §2.1).
pub(super) async fn check(
    server: &AuthorizationServer,
    client: &RegisteredClient,
    params: &Params,
) -> Result<Exchanged, OAuthError> {
    let Some(policy) = &server.inner.config.exchange else {
        return Err(OAuthError::new(
            "unsupported_grant_type",
            "the grant type is not supported",
        ));
    };
    if client.auth_method == ClientAuthMethod::None || !client.pre_registered {
        return Err(OAuthError::new(
            "unauthorized_client",
            "token exchange is for confidential clients registered by the operator",
        ));
    }
    if params.get("actor_token").is_some() || params.get("actor_token_type").is_some() {
        return Err(OAuthError::invalid_request(
            "actor tokens are not taken: the authenticated client is the actor",
        ));
    }
    if let Some(requested) = params.get("requested_token_type") {
        let jwt_issued = server.inner.config.token_format == super::TokenFormat::Jwt;
        if requested != ACCESS_TOKEN_TYPE && !(requested == JWT_TOKEN_TYPE && jwt_issued) {
            return Err(OAuthError::invalid_request(
                "only access tokens are issued by exchange",
            ));
        }
    }
    let audience = target(params)?;
    let api = policy
        .downstream
        .iter()
        .find(|api| same_resource(&api.audience, audience))
        .ok_or_else(|| {
            OAuthError::new(
                "invalid_target",
                "tokens for this audience are not exchanged here",
            )
        })?;
    let subject = verify_subject(server, policy, params).await?;
    if !api.allows(&client.client_id, &subject.audience) {
        return Err(OAuthError::new(
            "unauthorized_client",
            "this client may not exchange these tokens for this audience",
        ));
    }
    if let Some(missing) = api
        .required_subject_scopes
        .iter()
        .find(|scope| !subject.scopes.contains(scope))
    {
        return Err(OAuthError::new(
            "invalid_scope",
            format!("the subject token lacks the scope {missing} this audience requires"),
        ));
    }
    let requested = split_scopes(params.get("scope"));
    let scopes = if requested.is_empty() {
        api.scopes.clone()
    } else if requested.iter().any(|s| !api.scopes.contains(s)) {
        return Err(OAuthError::new(
            "invalid_scope",
            "a requested scope is not granted for this audience",
        ));
    } else {
        requested
    };
    let mut act = serde_json::Map::new();
    act.insert("sub".into(), Value::from(client.client_id.clone()));
    if let Some(prior) = subject.prior_act {
        act.insert("act".into(), prior);
    }
    tracing::info!(client_id = %client.client_id, audience = %api.audience, "token exchanged");
    Ok(Exchanged {
        subject: subject.subject,
        audience: api.audience.clone(),
        scopes,
        family_id: subject.family_id,
        not_after: subject.expires_at,
        act: Value::Object(act),
    })
}

/// The one downstream target, named by `audience` or `resource` (or both, the same).
fn target(params: &Params) -> Result<&str, OAuthError> {
    match (params.get("audience"), params.get("resource")) {
        (Some(a), Some(r)) if !same_resource(a, r) => Err(OAuthError::new(
            "invalid_target",
            "audience and resource name different targets; ask for one per exchange",
        )),
        (Some(target), _) | (None, Some(target)) => Ok(target),
        (None, None) => Err(OAuthError::new(
            "invalid_target",
            "name the downstream API in audience or resource",
        )),
    }
}

async fn verify_subject(
    server: &AuthorizationServer,
    policy: &TokenExchangePolicy,
    params: &Params,
) -> Result<Subject, OAuthError> {
    let token = params.require("subject_token")?;
    let token_type = params.require("subject_token_type")?;
    if token_type != ACCESS_TOKEN_TYPE && token_type != JWT_TOKEN_TYPE {
        return Err(OAuthError::invalid_request(
            "subject_token_type must be an access token or a JWT",
        ));
    }
    let now = now_secs();
    match server.access_status(hash(token), now).await? {
        AccessStatus::Active(record) => {
            // Only tokens for the MCP servers: an exchanged token (for a downstream API) would
            // lose its actor chain if exchanged again.
            if server.resolve_resource(Some(&record.resource)).is_err() {
                return Err(OAuthError::invalid_grant(
                    "the subject token is not for a resource of this server",
                ));
            }
            return Ok(Subject {
                subject: record.subject,
                audience: vec![record.resource],
                scopes: record.scopes,
                family_id: record.family_id,
                expires_at: record.expires_at,
                prior_act: None,
            });
        }
        AccessStatus::Expired => {
            return Err(OAuthError::invalid_grant("the subject token has expired"))
        }
        AccessStatus::Revoked => {
            return Err(OAuthError::invalid_grant(
                "the subject token's grant was revoked",
            ))
        }
        AccessStatus::Unknown => {}
    }
    #[cfg(feature = "server")]
    if let Some(verifier) = &policy.trusted {
        return trusted_subject(server, verifier.as_ref(), token, now).await;
    }
    let _ = policy;
    Err(OAuthError::invalid_grant(
        "the subject token is unknown, expired or revoked",
    ))
}

#[cfg(feature = "server")]
async fn trusted_subject(
    server: &AuthorizationServer,
    verifier: &dyn crate::server::TokenVerifier,
    token: &str,
    now: u64,
) -> Result<Subject, OAuthError> {
    use crate::server::VerifyError;
    let info = match verifier.verify(token).await {
        Ok(info) => info,
        Err(VerifyError::Unavailable(reason)) => {
            tracing::warn!(%reason, "the subject token's issuer cannot be checked now");
            return Err(OAuthError::new(
                "temporarily_unavailable",
                "the subject token's issuer cannot be checked now; try again shortly",
            ));
        }
        Err(_) => return Err(OAuthError::invalid_grant("the subject token is not valid")),
    };
    let (Some(issuer), Some(subject), Some(expires_at)) =
        (&info.issuer, &info.subject, info.expires_at)
    else {
        return Err(OAuthError::invalid_grant(
            "the subject token lacks iss, sub or exp",
        ));
    };
    if expires_at <= now {
        return Err(OAuthError::invalid_grant("the subject token has expired"));
    }
    // This server's own tokens are judged by its store alone: one it no longer knows was
    // revoked, whatever a JWKS check says.
    if issuer.trim_end_matches('/') == server.issuer() {
        return Err(OAuthError::invalid_grant(
            "the subject token is unknown, expired or revoked",
        ));
    }
    Ok(Subject {
        subject: format!("{issuer}#{subject}"),
        audience: info.audience.clone(),
        scopes: info.scopes.clone(),
        family_id: None,
        expires_at,
        prior_act: info.claims.get("act").cloned(),
    })
}
