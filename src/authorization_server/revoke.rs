//! RFC 7009 revocation and RFC 7662 introspection.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::client_auth::authenticate;
use super::store::ClientAuthMethod;
use super::{form_params, hash, json_response, now_secs, AuthorizationServer, OAuthError};

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
    // A client may revoke only its own tokens; others' are silently left alone.
    if let Some((family, _)) = store.family_of_refresh(token).await? {
        if family.client_id == client.client_id {
            store.revoke_family(&family.id).await?;
            tracing::info!(client_id = %client.client_id, "refresh token revoked with its grant");
        }
        return Ok(());
    }
    if let Some(record) = store.access(token).await? {
        if record.client_id == client.client_id {
            store.revoke_access(token).await?;
            tracing::info!(client_id = %client.client_id, "access token revoked");
        }
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
    // RFC 7662 §2.1: only authorized callers learn about tokens.
    if caller.auth_method == ClientAuthMethod::None {
        return Err(OAuthError::invalid_client(
            "introspection needs a confidential client",
        ));
    }
    let token = hash(params.require("token")?);
    let store = &server.inner.config.store;
    let now = now_secs();
    let inactive = json!({ "active": false });
    if params.get("token_type_hint") != Some("refresh_token") {
        if let Some(record) = store.access(token).await? {
            if record.expires_at <= now {
                return Ok(inactive);
            }
            if let Some(family_id) = &record.family_id {
                let family = store.family(family_id).await?;
                if family.is_none_or(|f| f.revoked) {
                    return Ok(inactive);
                }
            }
            return Ok(json!({
                "active": true,
                "token_type": "Bearer",
                "scope": record.scopes.join(" "),
                "client_id": record.client_id,
                "sub": record.subject,
                "aud": record.resource,
                "iss": server.issuer(),
                "iat": record.issued_at,
                "exp": record.expires_at,
            }));
        }
    }
    match store.family_of_refresh(token).await? {
        // Only the current token of a family is active; a spent one is not.
        Some((family, true)) if !family.revoked && family.expires_at > now => Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": family.scopes.join(" "),
            "client_id": family.client_id,
            "sub": family.subject,
            "aud": family.resource,
            "iss": server.issuer(),
            "exp": family.expires_at,
        })),
        _ => Ok(inactive),
    }
}
