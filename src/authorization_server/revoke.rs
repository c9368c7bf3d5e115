//! RFC 7009 revocation and RFC 7662 introspection.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::client_auth::authenticate;
use super::grant::{hash, AccessStatus};
use super::store::{ClientAuthMethod, TokenHash};
use super::wire::{form_params, json_response, OAuthError};
use super::AuthorizationServer;
use crate::clock::now_secs;

pub(super) async fn handle_revoke(
    State(server): State<AuthorizationServer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match revoke(&server, &headers, &body).await {
        // RFC 7009 §2.2: 200 whether or not the token was known.
        Ok(()) => {
            let mut response = Response::new(Body::empty());
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn revoke(
    server: &AuthorizationServer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), OAuthError> {
    let params = form_params(headers, body)?;
    let client = authenticate(server, headers, &params).await?;
    let token = hash(params.require("token")?);
    let store = &server.inner.config.store;
    // RFC 7009 §2.1: a client may revoke only its own tokens; another's is refused.
    let not_yours = || {
        OAuthError::new(
            "unauthorized_client",
            "the token was not issued to this client",
        )
    };
    if let Some((family, _)) = store.family_of_refresh(token).await? {
        if family.client_id != client.client_id {
            return Err(not_yours());
        }
        store.revoke_family(&family.id).await?;
        tracing::info!(client_id = %client.client_id, "refresh token revoked with its grant");
        return Ok(());
    }
    if let Some(record) = store.access(token).await? {
        if record.client_id != client.client_id {
            return Err(not_yours());
        }
        store.revoke_access(token).await?;
        tracing::info!(client_id = %client.client_id, "access token revoked");
    }
    Ok(())
}

pub(super) async fn handle_introspect(
    State(server): State<AuthorizationServer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match introspect(&server, &headers, &body).await {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(error) => error.into_response(),
    }
}

async fn introspect(
    server: &AuthorizationServer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, OAuthError> {
    let params = form_params(headers, body)?;
    let caller = authenticate(server, headers, &params).await?;
    // RFC 7662 §2.1: only authorized callers learn about tokens: confidential clients the
    // operator registered, never a client that registered itself.
    if caller.auth_method == ClientAuthMethod::None || !caller.pre_registered {
        return Err(OAuthError::invalid_client(
            "introspection is for confidential clients registered by the operator",
        ));
    }
    let token = hash(params.require("token")?);
    let now = now_secs();
    // The hint only orders the lookups (RFC 7662 §2.1): both kinds are always tried.
    let answer = if params.get("token_type_hint") == Some("refresh_token") {
        match introspect_refresh(server, token, now).await? {
            Some(answer) => Some(answer),
            None => introspect_access(server, token, now).await?,
        }
    } else {
        match introspect_access(server, token, now).await? {
            Some(answer) => Some(answer),
            None => introspect_refresh(server, token, now).await?,
        }
    };
    Ok(answer.unwrap_or_else(|| json!({ "active": false })))
}

/// The answer for an access token, or `None` when `token` is not one.
async fn introspect_access(
    server: &AuthorizationServer,
    token: TokenHash,
    now: u64,
) -> Result<Option<serde_json::Value>, OAuthError> {
    let record = match server.access_status(token, now).await? {
        AccessStatus::Active(record) => record,
        AccessStatus::Unknown => return Ok(None),
        AccessStatus::Expired | AccessStatus::Revoked => {
            return Ok(Some(json!({ "active": false })))
        }
    };
    let mut answer = json!({
        "active": true,
        "token_type": if record.dpop_jkt.is_some() { "DPoP" } else { "Bearer" },
        "scope": record.scopes.join(" "),
        "client_id": record.client_id,
        "sub": record.subject,
        "aud": record.resource,
        "iss": server.issuer(),
        "iat": record.issued_at,
        "exp": record.expires_at,
    });
    if let Some(jkt) = &record.dpop_jkt {
        // RFC 9449 §6.2: the resource server checks the proof's key against it.
        answer["cnf"] = json!({ "jkt": jkt });
    }
    if let Some(act) = record
        .act
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
    {
        // RFC 8693 §4.1: who acts for the subject of an exchanged token.
        answer["act"] = act;
    }
    Ok(Some(answer))
}

/// The answer for a refresh token, or `None` when `token` is not one.
async fn introspect_refresh(
    server: &AuthorizationServer,
    token: TokenHash,
    now: u64,
) -> Result<Option<serde_json::Value>, OAuthError> {
    let Some((family, current)) = server.inner.config.store.family_of_refresh(token).await? else {
        return Ok(None);
    };
    // Only the current token of a live family is active; a spent one is not.
    if !current || family.revoked || family.expires_at <= now {
        return Ok(Some(json!({ "active": false })));
    }
    Ok(Some(json!({
        "active": true,
        "token_type": "refresh_token",
        "scope": family.scopes.join(" "),
        "client_id": family.client_id,
        "sub": family.subject,
        "aud": family.resource,
        "iss": server.issuer(),
        "exp": family.expires_at,
    })))
}
