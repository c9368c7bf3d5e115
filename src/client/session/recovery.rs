//! What a flight does: discovery and issuer switching, client choice and registration, refresh
//! under the store's lease, and the interactive flow.

use tracing::Instrument;
use url::Url;

use super::flight::FlightOp;
use super::Session;
use crate::challenge::BearerChallenge;
use crate::client::authorization::{self, PendingAuthorization};
use crate::client::device::DeviceRequest;
use crate::client::discovery::{discover, Discovery};
use crate::client::dpop::{self, DpopSigner, ResourceDpop};
use crate::client::grant::Grant;
use crate::client::registration::{obtain_client, ClientRegistration, RegistrationSource};
use crate::client::store::CredentialKey;
use crate::client::tokens::{self, TokenEndpoint, TokenSet};
use crate::client::wire::JWT_BEARER_GRANT;
use crate::clock::now_secs;
use crate::dpop::DpopKey;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// Scopes for an automatic authorization: the challenge's, else everything the resource lists,
/// else none; `offline_access` added when the authorization server offers it.
pub(crate) fn select_scopes(
    challenge: Option<&BearerChallenge>,
    discovery: &Discovery,
) -> Vec<String> {
    let mut scopes: Vec<String> = match challenge.and_then(|c| c.scope.as_deref()) {
        Some(scope) => scope.split_ascii_whitespace().map(str::to_owned).collect(),
        None => discovery
            .resource_metadata
            .as_ref()
            .and_then(|m| m.scopes_supported.clone())
            .unwrap_or_default(),
    };
    if discovery
        .authorization_server
        .supports_scope("offline_access")
        && !scopes.iter().any(|s| s == "offline_access")
    {
        scopes.push("offline_access".into());
    }
    scopes
}

impl Session {
    async fn discover(&self, challenge: Option<&BearerChallenge>) -> Result<Discovery> {
        let discovery = discover(
            &self.config.http,
            &self.server_url,
            challenge,
            &self.config.protocol_version,
        )
        .await?;
        // A new issuer means the old client and tokens belong to someone else.
        let stored_client = self
            .config
            .store
            .load(&CredentialKey::new(self.resource_key(), discovery.issuer()))
            .await?;
        self.with(|s| {
            let same_issuer = s
                .discovery
                .as_ref()
                .is_some_and(|d| d.issuer() == discovery.issuer());
            if !same_issuer {
                s.client = stored_client.as_ref().and_then(|r| r.client.clone());
                self.replace_tokens(s, stored_client.and_then(|r| r.tokens));
            }
            s.discovery = Some(discovery.clone());
        });
        Ok(discovery)
    }

    /// The client for the discovered server, registering when there is none usable.
    /// `redirect_uri` is `None` for a sign-in on another device.
    async fn client_for(
        &self,
        discovery: &Discovery,
        redirect_uri: Option<&Url>,
    ) -> Result<ClientRegistration> {
        if let Some(pre) = &self.config.client.pre_registered {
            return Ok(pre.clone());
        }
        let existing = self.with(|s| s.client.clone());
        if let Some(client) = existing {
            let stale = client.secret_expired(now_secs())
                || (client.source == RegistrationSource::Dynamic
                    && redirect_uri.is_some_and(|uri| !client.allows_redirect(uri)));
            let switched_to_cimd = client.source == RegistrationSource::Dynamic
                && self.config.client.metadata_document_url.is_some()
                && discovery
                    .authorization_server
                    .client_id_metadata_document_supported;
            if !stale && !switched_to_cimd {
                return Ok(client);
            }
        }
        // A client that may sign in on another device registers for both ways, so the one
        // registration serves whichever the server offers.
        let handler_redirect = self.config.handler.as_ref().map(|h| h.redirect_uri());
        let client = obtain_client(
            &self.config.http,
            &discovery.authorization_server,
            &self.config.client,
            redirect_uri.or(handler_redirect.as_ref()),
            self.signs_in_on_device(discovery),
        )
        .await?;
        self.with(|s| s.client = Some(client.clone()));
        Ok(client)
    }

    fn forget_client(&self) {
        self.with(|s| s.client = None);
    }

    async fn begin(
        &self,
        discovery: &Discovery,
        scopes: Vec<String>,
        redirect_uri: &Url,
    ) -> Result<PendingAuthorization> {
        authorization::validate_redirect_uri(redirect_uri)?;
        authorization::require_pkce(&discovery.authorization_server)?;
        let client = self.client_for(discovery, Some(redirect_uri)).await?;
        let pending = authorization::start(
            discovery,
            &client,
            scopes,
            redirect_uri,
            &self.config.requests,
        )?;
        self.with(|s| s.pending = Some(pending.clone()));
        Ok(pending)
    }

    /// The key to bind new tokens to, `None` for Bearer: the current tokens' key when it fits
    /// (one key per client and authorization server), else a new one.
    fn dpop_key_for(&self, discovery: &Discovery) -> Result<Option<DpopKey>> {
        let Some(algorithm) = dpop::algorithm_for(
            self.config.dpop,
            &discovery.authorization_server,
            discovery.resource_metadata.as_ref(),
            self.with(|s| s.resource_dpop),
        ) else {
            return Ok(None);
        };
        let current = self.with(|s| {
            let same_issuer = s
                .discovery
                .as_ref()
                .is_some_and(|d| d.issuer() == discovery.issuer());
            s.tokens
                .as_ref()
                .and_then(|t| t.dpop_key.clone())
                .filter(|key| same_issuer && key.algorithm() == algorithm)
        });
        match current {
            Some(key) => Ok(Some(key)),
            None => DpopKey::generate(algorithm).map(Some),
        }
    }

    async fn finish(&self, pending: &PendingAuthorization, code: &Secret) -> Result<TokenSet> {
        let (discovery, client) = (&pending.discovery, &pending.client);
        let dpop_key = self.dpop_key_for(discovery)?;
        let tokens = authorization::exchange_code(
            &self.config.http,
            pending,
            code,
            dpop_key.map(|key| DpopSigner {
                key,
                nonce: self.authorization_server_nonce.clone(),
            }),
            &self.config.requests,
        )
        .await;
        if let Err(e) = &tokens {
            if e.kind() == ErrorKind::InvalidClient {
                self.forget_client();
            }
        }
        let tokens = tokens?;
        self.with(|s| s.pending = None);
        // The tokens belong to the server the authorization was started with.
        Ok(self.keep_new_tokens(discovery, client, tokens).await)
    }

    /// Tokens just issued by `discovery`'s server to `client`: held, with the server and the
    /// client they belong to, and stored.
    async fn keep_new_tokens(
        &self,
        discovery: &Discovery,
        client: &ClientRegistration,
        tokens: TokenSet,
    ) -> TokenSet {
        self.with(|s| {
            s.discovery = Some(discovery.clone());
            s.client = Some(client.clone());
        });
        self.set_tokens(Some(tokens.clone()));
        self.persist_logged().await;
        tokens
    }

    /// New tokens by the configured grant: the user's approval, or a grant without a user.
    async fn obtain(
        &self,
        challenge: Option<&BearerChallenge>,
        scopes: Option<Vec<String>>,
    ) -> Result<TokenSet> {
        if self.config.grant.needs_no_user() {
            self.obtain_without_user(challenge, scopes).await
        } else {
            self.authorize_interactively(challenge, scopes).await
        }
    }

    /// Client credentials, a workload's token or an enterprise ID-JAG at the discovered
    /// authorization server. A refusal is returned as it is: retrying the same credentials,
    /// or falling back to another grant, cannot help.
    async fn obtain_without_user(
        &self,
        challenge: Option<&BearerChallenge>,
        scopes: Option<Vec<String>>,
    ) -> Result<TokenSet> {
        let grant = &self.config.grant;
        let client = self.config.client.pre_registered.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "the {} grant needs a pre-registered client (OAuthConfig::client)",
                    grant.name()
                ),
            )
        })?;
        // A due token is replaced at the server already discovered; a 401's challenge may name
        // another, so it is followed.
        let known = self.with(|s| s.discovery.clone());
        let discovery = match known {
            Some(discovery) if challenge.is_none() => discovery,
            _ => self.discover(challenge).await?,
        };
        // No offline_access: a grant without a user gets a new token instead of a refresh.
        let scopes = scopes
            .or_else(|| self.config.scopes.clone())
            .unwrap_or_else(|| {
                let mut scopes = select_scopes(challenge, &discovery);
                scopes.retain(|s| s != "offline_access");
                scopes
            });
        let scope = scopes.join(" ");
        let resource = self.config.requests.resource(&discovery);
        let endpoint =
            TokenEndpoint::discovered(&discovery, &client, &self.config.requests.token_params)?;
        let signer = self.dpop_key_for(&discovery)?.map(|key| DpopSigner {
            key,
            nonce: self.authorization_server_nonce.clone(),
        });
        let mut params: Vec<(&str, &str)> = Vec::new();
        if !scope.is_empty() {
            params.push(("scope", &scope));
        }
        if let Some(resource) = resource {
            params.push(("resource", resource));
        }
        let assertion;
        let grant_type = match grant {
            Grant::ClientCredentials => "client_credentials",
            Grant::JwtBearer { assertion: source } => {
                assertion = source.read().await?;
                params.push(("assertion", assertion.expose()));
                JWT_BEARER_GRANT
            }
            Grant::EnterpriseManaged(enterprise) => {
                assertion = enterprise
                    .exchange(
                        &self.config.http,
                        &discovery,
                        resource,
                        &scope,
                        // The extra token parameters are the MCP server's provider's, not
                        // the IdP's (whose `audience` is the protocol's own here).
                        &[],
                    )
                    .await?;
                params.push(("assertion", assertion.expose()));
                JWT_BEARER_GRANT
            }
            Grant::AuthorizationCode => unreachable!("obtain sends the user's grant elsewhere"),
        };
        let tokens = tokens::obtain(
            &self.config.http,
            &endpoint,
            grant_type,
            &params,
            &scopes,
            signer.as_ref(),
        )
        .await?;
        tracing::info!(grant = grant.name(), "tokens obtained without a user");
        Ok(self.keep_new_tokens(&discovery, &client, tokens).await)
    }

    /// Discovery, registration, the interactive step and the code exchange, in one go.
    async fn authorize_interactively(
        &self,
        challenge: Option<&BearerChallenge>,
        scopes: Option<Vec<String>>,
    ) -> Result<TokenSet> {
        // Whatever ends a sign-in that reached the user is not for a retry to repeat.
        let asked_user = std::sync::atomic::AtomicBool::new(false);
        self.authorize_interactively_once(challenge, scopes, &asked_user)
            .await
            .map_err(|e| {
                if asked_user.load(std::sync::atomic::Ordering::Relaxed) {
                    e.in_sign_in()
                } else {
                    e
                }
            })
    }

    async fn authorize_interactively_once(
        &self,
        challenge: Option<&BearerChallenge>,
        scopes: Option<Vec<String>>,
        asked_user: &std::sync::atomic::AtomicBool,
    ) -> Result<TokenSet> {
        if self.config.handler.is_none() && self.config.device_prompt.is_none() {
            return Err(Error::new(
                ErrorKind::NotAuthorized,
                "the server needs authorization and no authorization handler is configured",
            ));
        }
        let discovery = self.discover(challenge).await?;
        // Processes sharing the store sign in once: the others wait for the lease, then take
        // what the first one stored (never tokens this session already let go of).
        let key = CredentialKey::new(self.resource_key(), discovery.issuer());
        // Waiting longer than the store's lease timeout (someone is slow to sign in) degrades
        // to signing in here too, never to a failed request.
        let _lease = match self.config.store.lease(&key).await {
            Ok(lease) => lease,
            Err(error) => {
                tracing::warn!(%error, "could not wait for another sign-in; signing in here");
                None
            }
        };
        // A step-up asks for more than any stored tokens have: it always signs in.
        let adoptable = if scopes.is_none() {
            self.signed_in_elsewhere(&key).await?
        } else {
            None
        };
        if let Some(tokens) = adoptable {
            tracing::info!("another process signed in meanwhile; using its tokens");
            return Ok(tokens);
        }
        let scopes = scopes
            .or_else(|| self.config.scopes.clone())
            .unwrap_or_else(|| select_scopes(challenge, &discovery));
        if self.signs_in_on_device(&discovery) {
            asked_user.store(true, std::sync::atomic::Ordering::Relaxed);
            return self.authorize_on_device(&discovery, &scopes).await;
        }
        let handler = self.config.handler.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::NotAuthorized,
                "the authorization server offers no device authorization, and no authorization \
                 handler is configured",
            )
        })?;
        let redirect_uri = handler.redirect_uri();
        // A rejected client is registered again once.
        for attempt in 0..2 {
            let pending = self
                .begin(&discovery, scopes.clone(), &redirect_uri)
                .await?;
            asked_user.store(true, std::sync::atomic::Ordering::Relaxed);
            let redirect = handler.authorize(&pending.url).await?;
            let callback = pending.verify_redirect(&redirect)?;
            match self.finish(&pending, &callback.code).await {
                Err(e)
                    if e.kind() == ErrorKind::InvalidClient
                        && attempt == 0
                        && self.config.client.pre_registered.is_none() =>
                {
                    tracing::warn!(
                        "the authorization server rejected the client; registering again"
                    );
                }
                result => return result,
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Whether sign-in goes through the device authorization grant: asked for, and offered.
    fn signs_in_on_device(&self, discovery: &Discovery) -> bool {
        self.config.device_prompt.is_some()
            && discovery
                .authorization_server
                .device_authorization_endpoint
                .is_some()
    }

    /// RFC 8628: the user approves on any device while this client polls.
    async fn authorize_on_device(
        &self,
        discovery: &Discovery,
        scopes: &[String],
    ) -> Result<TokenSet> {
        let Some(prompt) = self.config.device_prompt.clone() else {
            return Err(Error::new(
                ErrorKind::Config,
                "no device prompt is configured",
            ));
        };
        // A client registered before, without the device grant, is registered again once.
        for attempt in 0..2 {
            let client = self.client_for(discovery, None).await?;
            let request = DeviceRequest {
                discovery,
                client: &client,
                scopes,
                resource: self.config.requests.resource(discovery),
                token_params: &self.config.requests.token_params,
            };
            let started = match request.start(&self.config.http).await {
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::InvalidClient | ErrorKind::UnauthorizedClient
                    ) && attempt == 0
                        && client.source == RegistrationSource::Dynamic =>
                {
                    tracing::warn!(error = %e, "the client cannot use the device grant; registering again");
                    self.forget_client();
                    continue;
                }
                started => started?,
            };
            tracing::info!("waiting for the user to approve on another device");
            prompt.show(&started.shown);
            let signer = self.dpop_key_for(discovery)?.map(|key| DpopSigner {
                key,
                nonce: self.authorization_server_nonce.clone(),
            });
            let tokens = request
                .poll(&self.config.http, started, signer.as_ref())
                .await?;
            return Ok(self.keep_new_tokens(discovery, &client, tokens).await);
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// The tokens (and client) stored for `key`, when they are still good and not ones this
    /// session let go of (refused, or replaced): another process's sign-in (or one this session
    /// already holds, which a request sent before it arrived asked for again).
    async fn signed_in_elsewhere(&self, key: &CredentialKey) -> Result<Option<TokenSet>> {
        let Some(record) = self.config.store.load(key).await? else {
            return Ok(None);
        };
        let (dropped, refuses_dpop) =
            self.with(|s| (s.dropped_access, s.resource_dpop == ResourceDpop::Refused));
        let pre_registered = self.config.client.pre_registered.as_ref();
        let same_client = match (pre_registered, &record.client) {
            (Some(ours), Some(theirs)) => ours.client_id == theirs.client_id,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let Some(tokens) = record.tokens.filter(|t| {
            // Usable here and now: good for a while, attachable, with its DPoP key if bound,
            // issued to this client, for at least the scopes configured.
            !t.expires_within(self.config.refresh_margin.as_secs())
                && crate::client::wire::is_attachable(t.access_token.expose())
                && (!t.token_type.eq_ignore_ascii_case("dpop")
                    || (t.dpop_key.is_some() && !refuses_dpop))
                && same_client
                && self
                    .config
                    .scopes
                    .as_ref()
                    .is_none_or(|wanted| wanted.iter().all(|s| t.scopes.contains(s)))
                && Some(super::token_cache::access_digest(t)) != dropped
        }) else {
            return Ok(None);
        };
        self.with(|s| {
            if self.config.client.pre_registered.is_none() {
                s.client = record.client.clone();
            }
        });
        self.set_tokens(Some(tokens.clone()));
        Ok(Some(tokens))
    }

    /// Tokens another process stored for `key` that are newer than `current` and still good.
    async fn newer_stored_tokens(
        &self,
        key: &CredentialKey,
        current: &TokenSet,
    ) -> Result<Option<TokenSet>> {
        let stored = self
            .config
            .store
            .load(key)
            .await?
            .and_then(|record| record.tokens);
        Ok(stored.filter(|stored| {
            stored.access_token != current.access_token
                && !stored.expires_within(self.config.refresh_margin.as_secs())
        }))
    }

    /// Refreshes under the store's lease, adopting what another process stored meanwhile.
    /// `Ok(false)` when the refresh grant is gone (or there is none) and authorization is needed.
    async fn refresh_tokens(&self) -> Result<bool> {
        let (discovery, client, current) =
            self.with(|s| (s.discovery.clone(), s.client.clone(), s.tokens.clone()));
        let client = self.config.client.pre_registered.clone().or(client);
        let (Some(discovery), Some(client), Some(current)) = (discovery, client, current) else {
            return Ok(false);
        };
        if current.refresh_token.is_none() {
            return Ok(false);
        }
        if current.dpop_key.is_some() && self.with(|s| s.resource_dpop) == ResourceDpop::Refused {
            // A bound refresh token gives bound tokens, which the resource refused.
            return Ok(false);
        }
        if client.secret_expired(now_secs()) {
            // The server said when the secret stops working: register again before sending it.
            tracing::info!("the client secret has expired; registering again");
            self.forget_client();
            return Ok(false);
        }
        let key = CredentialKey::new(self.resource_key(), discovery.issuer());
        // Other processes sharing the store wait here, so no two redeem the same refresh token.
        let _lease = self.config.store.lease(&key).await?;
        if let Some(newer) = self.newer_stored_tokens(&key, &current).await? {
            tracing::info!("another process already refreshed; using its tokens");
            self.set_tokens(Some(newer));
            return Ok(true);
        }
        match tokens::refresh(
            &self.config.http,
            &discovery,
            &client,
            &current,
            &self.authorization_server_nonce,
            &self.config.requests,
        )
        .await
        {
            Ok(tokens) => {
                self.set_tokens(Some(tokens));
                self.persist_logged().await;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::InvalidGrant => {
                tracing::info!("refresh token rejected; authorization needed");
                Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::InvalidClient => {
                tracing::info!("client rejected at refresh; registering again");
                self.forget_client();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Refreshes the tokens, or authorizes again when the refresh grant is gone.
    async fn refresh_or_authorize(&self, challenge: Option<&BearerChallenge>) -> Result<()> {
        if self.refresh_tokens().await? {
            return Ok(());
        }
        self.set_tokens(None);
        self.obtain(challenge, None).await.map(|_| ())
    }

    async fn ensure_discovery(&self) -> Result<()> {
        if self.with(|s| s.discovery.is_none()) {
            self.discover(None).await?;
        }
        Ok(())
    }

    pub(crate) async fn begin_manual(
        &self,
        scopes: Option<Vec<String>>,
        redirect_uri: &Url,
    ) -> Result<PendingAuthorization> {
        let discovery = self.discover(None).await?;
        let scopes = scopes.unwrap_or_else(|| select_scopes(None, &discovery));
        self.begin(&discovery, scopes, redirect_uri).await
    }

    pub(crate) async fn finish_manual(
        &self,
        pending: &PendingAuthorization,
        code: &Secret,
    ) -> Result<TokenSet> {
        self.finish(pending, code).await
    }

    pub(super) async fn execute(&self, op: FlightOp) -> Result<()> {
        let span = tracing::info_span!("oauth_flight", op = op.name());
        self.execute_op(op).instrument(span).await
    }

    async fn execute_op(&self, op: FlightOp) -> Result<()> {
        match op {
            FlightOp::Refresh => {
                self.ensure_discovery().await?;
                self.refresh_or_authorize(None).await
            }
            FlightOp::RefreshOnly => {
                self.ensure_discovery().await?;
                if self.refresh_tokens().await? {
                    Ok(())
                } else {
                    Err(Error::new(
                        ErrorKind::InvalidGrant,
                        "the refresh token was refused or there is none; authorize again",
                    ))
                }
            }
            FlightOp::Recover {
                had_token: false,
                challenge,
            } => self.obtain(challenge.as_ref(), None).await.map(|_| ()),
            FlightOp::Recover {
                had_token: true,
                challenge,
            } => {
                // The server said the token is bad: rediscover (it may have moved), then refresh.
                self.discover(challenge.as_ref()).await?;
                self.refresh_or_authorize(challenge.as_ref()).await
            }
            FlightOp::StepUp { challenge, scopes } => self
                .obtain(challenge.as_ref(), Some(scopes))
                .await
                .map(|_| ()),
            FlightOp::Authorize => {
                // Asked to authorize now: the tokens held (and stored) are not to be reused.
                self.with(|s| {
                    if let Some(tokens) = &s.tokens {
                        s.dropped_access = Some(super::token_cache::access_digest(tokens));
                    }
                });
                self.obtain(None, None).await.map(|_| ())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};

    fn discovery(prm_scopes: Option<Vec<&str>>, as_scopes: Option<Vec<&str>>) -> Discovery {
        let strings = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
        Discovery {
            resource: Some("https://mcp.example.com/mcp".into()),
            resource_metadata: Some(ProtectedResourceMetadata {
                resource: "https://mcp.example.com/mcp".into(),
                authorization_servers: vec!["https://auth.example.com".into()],
                scopes_supported: prm_scopes.map(strings),
                bearer_methods_supported: None,
                resource_name: None,
                jwks_uri: None,
                ..Default::default()
            }),
            authorization_server: AuthorizationServerMetadata {
                issuer: "https://auth.example.com".into(),
                scopes_supported: as_scopes.map(strings),
                ..Default::default()
            },
            default_endpoints: false,
        }
    }

    #[test]
    fn scope_selection_prefers_the_challenge_then_the_resource() {
        let d = discovery(Some(vec!["a", "b"]), None);
        let challenge = BearerChallenge {
            scope: Some("x y".into()),
            ..Default::default()
        };
        assert_eq!(select_scopes(Some(&challenge), &d), vec!["x", "y"]);
        assert_eq!(select_scopes(None, &d), vec!["a", "b"]);
        assert!(select_scopes(None, &discovery(None, None)).is_empty());
    }

    #[test]
    fn offline_access_only_when_the_server_lists_it() {
        let d = discovery(Some(vec!["a"]), Some(vec!["a", "offline_access"]));
        assert_eq!(select_scopes(None, &d), vec!["a", "offline_access"]);
        let d = discovery(Some(vec!["a"]), Some(vec!["a"]));
        assert_eq!(select_scopes(None, &d), vec!["a"]);
    }
}
