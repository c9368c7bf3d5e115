//! A user's upstream tokens in the store: handed to the server's tools, refreshed when due.

use super::answer::UpstreamTokens;
use super::provider::Upstream;
use crate::authorization_server::keys::SigningKey;
use crate::authorization_server::store::AuthorizationStore;
use crate::clock::now_secs;
use crate::error::{Error, Result};
use crate::Secret;

/// The user's upstream access token, refreshed first when it is about to expire. `None`: no
/// tokens kept for this user, or they expired with no way to refresh.
pub(crate) async fn access_token(
    upstream: &Upstream,
    store: &dyn AuthorizationStore,
    signing_key: &SigningKey,
    subject: &str,
) -> Result<Option<Secret>> {
    let Some(key) = upstream.config.token_key.as_deref() else {
        return Ok(None);
    };
    let Some(sealed) = store.upstream_tokens(subject).await? else {
        return Ok(None);
    };
    let tokens = UpstreamTokens::open(&sealed, key, subject)?;
    if !tokens.due(now_secs()) {
        return Ok(Some(tokens.access_token));
    }
    let _one_refresh = upstream.refreshing.lock().await;
    // Another task may have refreshed while this one waited.
    if let Some(sealed) = store.upstream_tokens(subject).await? {
        let latest = UpstreamTokens::open(&sealed, key, subject)?;
        if !latest.due(now_secs()) {
            return Ok(Some(latest.access_token));
        }
    }
    let Some(refresh_token) = &tokens.refresh_token else {
        let expired = tokens.expires_at.is_some_and(|at| at <= now_secs());
        return Ok((!expired).then_some(tokens.access_token));
    };
    let mut fresh = upstream
        .refresh(refresh_token, signing_key)
        .await
        .map_err(|e| Error::new(e.kind(), e.to_string()))?;
    // A provider that does not rotate refresh tokens sends none back: keep the old one.
    if fresh.refresh_token.is_none() {
        fresh.refresh_token = tokens.refresh_token.clone();
    }
    // RFC 6749 §5.1: no `scope` in the answer means the same scopes as before.
    if fresh.scopes.is_empty() {
        fresh.scopes = tokens.scopes.clone();
    }
    store
        .save_upstream_tokens(subject, fresh.seal(key, subject)?)
        .await?;
    Ok(Some(fresh.access_token))
}
