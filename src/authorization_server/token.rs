//! The token endpoint: `authorization_code` with PKCE, `refresh_token` with rotation and reuse
//! detection, `client_credentials`, the JWT-bearer grant, and the device grant's polls (RFC
//! 8628). Errors follow RFC 6749 §5.2.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::assertion::JWT_BEARER_GRANT;
use super::client_auth::authenticate;
use super::exchange::{ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT};
use super::grant::{hash, random_token, s256_challenge, split_scopes};
use super::store::{
    AccessRecord, ClientAuthMethod, CodeRedemption, DevicePoll, DeviceStatus, FamilyStart,
    RefreshRotation, RegisteredClient, TokenFamily,
};
use super::wire::DEVICE_CODE_GRANT;
use super::wire::{form_params, json_response, OAuthError, Params};
use super::{AuthorizationServer, TokenFormat};
use crate::clock::now_secs;
use crate::dpop::{verify_proof, ProofCheck, VerifiedProof, DPOP};

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    scope: String,
    /// RFC 8693 §2.2.1, on exchanges only.
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
}

#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Confirmation<'a>>,
    /// RFC 8693 §4.1: who acts for the subject, on exchanged tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<&'a serde_json::Value>,
}

/// RFC 9449 §6.1: the key a token is bound to.
#[derive(Serialize)]
struct Confirmation<'a> {
    jkt: &'a str,
}

/// What an access token is issued for.
struct Issue<'a> {
    client_id: &'a str,
    subject: &'a str,
    scopes: &'a [String],
    resource: &'a str,
    family_id: Option<&'a str>,
    /// The DPoP key's thumbprint, for a bound token.
    dpop_jkt: Option<&'a str>,
    /// The latest the token may expire (an exchanged token's subject token's expiry).
    not_after: Option<u64>,
    act: Option<&'a serde_json::Value>,
}

pub(super) async fn handle(
    State(server): State<AuthorizationServer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match token(&server, &headers, &body).await {
        Ok(response) => json_response(StatusCode::OK, &response),
        Err(error) => {
            tracing::info!(code = error.code, description = %error.description, "token request refused");
            error.into_response()
        }
    }
}

async fn token(
    server: &AuthorizationServer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, OAuthError> {
    let params = form_params(headers, body)?;
    let grant_type = params.require("grant_type")?.to_owned();
    let client = authenticate(server, headers, &params).await?;
    let proof = dpop_proof(server, headers).await?;
    if proof.is_none() && client.metadata.dpop_bound_access_tokens {
        return Err(OAuthError::new(
            "invalid_dpop_proof",
            "the client registered for DPoP-bound tokens; send a DPoP proof",
        ));
    }
    let jkt = proof.as_ref().map(|p| p.jkt.as_str());
    let response = match grant_type.as_str() {
        "authorization_code" => authorization_code(server, &client, &params, jkt).await,
        "refresh_token" => refresh(server, &client, &params, proof.as_ref()).await,
        "client_credentials" => client_credentials(server, &client, &params, jkt).await,
        JWT_BEARER_GRANT => jwt_bearer(server, &client, &params, jkt).await,
        TOKEN_EXCHANGE_GRANT => token_exchange(server, &client, &params, jkt).await,
        DEVICE_CODE_GRANT if server.inner.config.device.enabled => {
            device_code(server, &client, &params, jkt).await
        }
        _ => Err(OAuthError::new(
            "unsupported_grant_type",
            "the grant type is not supported",
        )),
    }?;
    // Tokens issued for a replayed proof are never handed out; unused, they expire. A code,
    // a device grant or a client's credentials were proven first (only real grants reach the
    // cache) and are single-use or unchanged; a refresh checks before it rotates.
    if let Some(proof) = proof.as_ref().filter(|_| grant_type != "refresh_token") {
        first_use_of(server, &client, proof).await?;
    }
    Ok(response)
}

/// The token request's DPoP proof (RFC 9449 §4.3, §8), checked, with its nonce (its first use
/// is [`first_use_of`]'s); `None` without one, or when this server does not do DPoP.
async fn dpop_proof(
    server: &AuthorizationServer,
    headers: &HeaderMap,
) -> Result<Option<VerifiedProof>, OAuthError> {
    let Some(settings) = &server.inner.config.dpop else {
        return Ok(None);
    };
    let mut values = headers.get_all(DPOP).iter();
    let proof = match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(value), None) => value
            .to_str()
            .map_err(|_| OAuthError::new("invalid_dpop_proof", "the DPoP header is not ASCII"))?,
        (Some(_), Some(_)) => {
            return Err(OAuthError::new(
                "invalid_dpop_proof",
                "send exactly one DPoP header",
            ))
        }
    };
    let token_endpoint = format!("{}/token", server.issuer());
    let verified = verify_proof(proof, &ProofCheck::new("POST", &token_endpoint))
        .map_err(|e| OAuthError::new("invalid_dpop_proof", e.reason()))?;
    if let Some(nonces) = &settings.nonces {
        if !verified.nonce.as_deref().is_some_and(|n| nonces.accepts(n)) {
            let mut error = OAuthError::new(
                "use_dpop_nonce",
                "the authorization server requires a DPoP nonce",
            );
            error.dpop_nonce = Some(nonces.current());
            return Err(error);
        }
    }
    Ok(Some(verified))
}

/// RFC 9449 §11.1: the proof was never used before. Asked only once the grant is proven, so a
/// flood of requests with made-up grants never reaches the replay cache, and with the client
/// as the owner, so one client's proofs never push out another's.
async fn first_use_of(
    server: &AuthorizationServer,
    client: &RegisteredClient,
    proof: &VerifiedProof,
) -> Result<(), OAuthError> {
    let Some(settings) = &server.inner.config.dpop else {
        return Ok(());
    };
    let fresh = settings
        .replay
        .first_use(
            &client.client_id,
            proof.replay_id(),
            proof.expires_at,
            now_secs(),
        )
        .await?;
    if fresh {
        Ok(())
    } else {
        Err(OAuthError::new(
            "invalid_dpop_proof",
            "the DPoP proof was used before",
        ))
    }
}

fn require_grant(client: &RegisteredClient, grant_type: &str) -> Result<(), OAuthError> {
    if client.allows_grant(grant_type) {
        Ok(())
    } else {
        Err(OAuthError::new(
            "unauthorized_client",
            format!("the client did not register the {grant_type} grant"),
        ))
    }
}

/// A token request may name a resource (RFC 8707), but only the one the grant is for.
fn require_granted_resource(
    server: &AuthorizationServer,
    params: &Params,
    granted: &str,
) -> Result<(), OAuthError> {
    let Some(resource) = params.get("resource") else {
        return Ok(());
    };
    let resolved = server
        .resolve_resource(Some(resource))
        .map_err(|d| OAuthError::new("invalid_target", d))?;
    if resolved != granted {
        return Err(OAuthError::new(
            "invalid_target",
            "resource differs from the one granted",
        ));
    }
    Ok(())
}

async fn authorization_code(
    server: &AuthorizationServer,
    client: &RegisteredClient,
    params: &Params,
    jkt: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    require_grant(client, "authorization_code")?;
    let code = params.require("code")?;
    let verifier = params.require("code_verifier")?;
    let store = &server.inner.config.store;
    let grant = match store.redeem_code(hash(code)).await? {
        CodeRedemption::Redeemed(grant) => grant,
        CodeRedemption::Reused { family_id } => {
            // RFC 6749 §4.1.2: a code used twice revokes what the first use issued.
            tracing::warn!("an authorization code was used twice; revoking its tokens");
            store.revoke_family(&family_id).await?;
            return Err(OAuthError::invalid_grant("the code was already used"));
        }
        CodeRedemption::Unknown => {
            return Err(OAuthError::invalid_grant("the code is invalid"));
        }
    };
    // The code is spent from here on, whatever the outcome: a wrong verifier cannot be retried.
    if grant.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if grant.expires_at <= now_secs() {
        return Err(OAuthError::invalid_grant("the code has expired"));
    }
    // OAuth 2.1 §4.1.3: named in the authorization request, it must be repeated identically.
    match params.get("redirect_uri") {
        Some(uri) if uri != grant.redirect_uri => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request",
            ))
        }
        None if grant.redirect_uri_in_request => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri is missing; the authorization request named one",
            ))
        }
        _ => {}
    }
    if !pkce_matches(verifier, &grant.code_challenge) {
        return Err(OAuthError::invalid_grant(
            "the code_verifier does not match",
        ));
    }
    require_granted_resource(server, params, &grant.resource)?;
    let approval = Approval {
        subject: &grant.subject,
        scopes: &grant.scopes,
        resource: &grant.resource,
        family_id: &grant.family_id,
    };
    let response = issue_for_user(server, client, &approval, jkt).await?;
    tracing::info!(client_id = %client.client_id, "tokens issued for an authorization code");
    Ok(response)
}

/// What a user approved, by either grant that asks one.
struct Approval<'a> {
    subject: &'a str,
    scopes: &'a [String],
    resource: &'a str,
    family_id: &'a str,
}

/// An access token for what the user approved, and a refresh token starting its family when
/// the client registered the refresh grant.
async fn issue_for_user(
    server: &AuthorizationServer,
    client: &RegisteredClient,
    approval: &Approval<'_>,
    jkt: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let store = &server.inner.config.store;
    let refresh_token = if client.allows_grant("refresh_token") {
        let refresh_token = random_token();
        let family = TokenFamily {
            id: approval.family_id.to_owned(),
            client_id: client.client_id.clone(),
            subject: approval.subject.to_owned(),
            scopes: approval.scopes.to_vec(),
            resource: approval.resource.to_owned(),
            expires_at: now_secs() + server.inner.config.refresh_token_ttl.as_secs(),
            revoked: false,
            // A public client has no other proof that a refresh token is its own.
            dpop_jkt: jkt
                .filter(|_| client.auth_method == ClientAuthMethod::None)
                .map(str::to_owned),
        };
        if store.save_family(family, hash(&refresh_token)).await? == FamilyStart::Revoked {
            // A second redemption of the code revoked the family while this one was in flight.
            return Err(OAuthError::invalid_grant("the code was already used"));
        }
        Some(refresh_token)
    } else {
        None
    };
    let issue = Issue {
        client_id: &client.client_id,
        subject: approval.subject,
        scopes: approval.scopes,
        resource: approval.resource,
        // Without a refresh token there is no family to belong to (or to be revoked with).
        family_id: refresh_token.is_some().then_some(approval.family_id),
        dpop_jkt: jkt,
        not_after: None,
        act: None,
    };
    let mut response = issue_access(server, &issue).await?;
    response.refresh_token = refresh_token;
    Ok(response)
}

/// RFC 8628 §3.4–3.5: a device's poll. The grant is handed out once, on the poll after the
/// user approved.
async fn device_code(
    server: &AuthorizationServer,
    client: &RegisteredClient,
    params: &Params,
    jkt: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    require_grant(client, DEVICE_CODE_GRANT)?;
    let device_code = hash(params.require("device_code")?);
    let store = &server.inner.config.store;
    let grant = match store
        .poll_device(device_code, &client.client_id, now_secs())
        .await?
    {
        DevicePoll::Approved(grant) => grant,
        DevicePoll::Pending => {
            return Err(OAuthError::new(
                "authorization_pending",
                "the user has not answered yet",
            ))
        }
        DevicePoll::SlowDown => {
            return Err(OAuthError::new(
                "slow_down",
                "polled too soon; wait 5 seconds longer between polls",
            ))
        }
        DevicePoll::Denied => {
            return Err(OAuthError::new(
                "access_denied",
                "the user denied the request",
            ))
        }
        DevicePoll::Expired => {
            return Err(OAuthError::new(
                "expired_token",
                "the device code expired before the user answered",
            ))
        }
        DevicePoll::Unknown => return Err(OAuthError::invalid_grant("the device code is invalid")),
    };
    let DeviceStatus::Approved { subject } = &grant.status else {
        return Err(OAuthError::invalid_grant("the device code is invalid"));
    };
    require_granted_resource(server, params, &grant.resource)?;
    let approval = Approval {
        subject,
        scopes: &grant.scopes,
        resource: &grant.resource,
        family_id: &grant.family_id,
    };
    let response = issue_for_user(server, client, &approval, jkt).await?;
    tracing::info!(client_id = %client.client_id, "tokens issued for a device authorization");
    Ok(response)
}

async fn refresh(
    server: &AuthorizationServer,
    client: &RegisteredClient,
    params: &Params,
    proof: Option<&VerifiedProof>,
) -> Result<TokenResponse, OAuthError> {
    let jkt = proof.map(|p| p.jkt.as_str());
    require_grant(client, "refresh_token")?;
    let presented_token = params.require("refresh_token")?;
    let presented = hash(presented_token);
    let store = &server.inner.config.store;
    // Everything is checked before the token is rotated: a refused request must leave it
    // current, or the client's plain retry would look like reuse and revoke the grant.
    let owner = match store.family_of_refresh(presented).await? {
        Some((family, _)) if family.client_id == client.client_id => family,
        // Another client's token is refused before it can be rotated (or its family revoked).
        _ => return Err(OAuthError::invalid_grant("the refresh token is invalid")),
    };
    if let Some(bound) = &owner.dpop_jkt {
        // RFC 9449 §5: a bound refresh token is good only with a proof by its key.
        if jkt != Some(bound.as_str()) {
            return Err(OAuthError::invalid_grant(
                "the refresh token is bound to another DPoP key",
            ));
        }
    }
    let requested = split_scopes(params.get("scope"));
    let scopes = if requested.is_empty() {
        owner.scopes.clone()
    } else if let Some(extra) = requested.iter().find(|s| !owner.scopes.contains(s)) {
        return Err(OAuthError::new(
            "invalid_scope",
            format!("the scope {extra} was not granted"),
        ));
    } else {
        requested
    };
    require_granted_resource(server, params, &owner.resource)?;
    // The proof is new, asked before the rotation: a refused refresh leaves the token current.
    if let Some(proof) = proof {
        first_use_of(server, client, proof).await?;
    }
    // Sender-constrained or confidential: only then may a token rotated moments ago come
    // again. A public client's Bearer refresh token, stolen, would otherwise follow the
    // victim's rotations unseen.
    let grace = if owner.dpop_jkt.is_some() || client.auth_method != ClientAuthMethod::None {
        server.inner.config.refresh_rotation_grace.as_secs()
    } else {
        0
    };
    // Derived from the presented token: a repeat within the grace period gets the same one.
    let next = server.inner.key.refresh_successor(presented_token);
    let family = match store
        .rotate_refresh(presented, hash(&next), now_secs(), grace)
        .await?
    {
        RefreshRotation::Rotated(family) => family,
        RefreshRotation::Repeated(family) => {
            tracing::info!(client_id = %family.client_id, "a refresh token was presented again within the grace period; the same successor is given");
            family
        }
        RefreshRotation::Reused(family) => {
            tracing::warn!(client_id = %family.client_id, "a spent refresh token was presented; its grant is revoked");
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; the grant is revoked",
            ));
        }
        RefreshRotation::Invalid => {
            return Err(OAuthError::invalid_grant(
                "the refresh token is invalid, expired or revoked",
            ));
        }
    };
    let issue = Issue {
        client_id: &client.client_id,
        subject: &family.subject,
        scopes: &scopes,
        resource: &family.resource,
        family_id: Some(&family.id),
        dpop_jkt: jkt,
        not_after: None,
        act: None,
    };
    let mut response = issue_access(server, &issue).await?;
    response.refresh_token = Some(next);
    tracing::info!(client_id = %client.client_id, "tokens refreshed");
    Ok(response)
}

async fn client_credentials(
    server: &AuthorizationServer,
    client: &RegisteredClient,
    params: &Params,
    jkt: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    if client.auth_method == ClientAuthMethod::None || !client.pre_registered {
        return Err(OAuthError::new(
            "unauthorized_client",
            "client_credentials is for confidential clients registered by the operator",
        ));
    }
    require_grant(client, "client_credentials")?;
    let requested = split_scopes(params.get("scope"));
    let scopes = if requested.is_empty() {
        server
            .inner
            .config
            .default_scopes
            .clone()
            .unwrap_or_default()
    } else {
        requested
    };
    server
        .check_scopes(client, &scopes)
        .map_err(|d| OAuthError::new("invalid_scope", d))?;
    let resource = server
        .resolve_resource(params.get("resource"))
        .map_err(|d| OAuthError::new("invalid_target", d))?;
    let issue = Issue {
        client_id: &client.client_id,
        subject: &client.client_id,
        scopes: &scopes,
        resource: &resource,
        family_id: None,
        dpop_jkt: jkt,
        not_after: None,
        act: None,
    };
    issue_access(server, &issue).await
}

/// RFC 7523 §2.1: tokens on a trusted issuer's word, for an operator-registered client;
/// no refresh token, since the client can present a new assertion.
async fn jwt_bearer(
    server: &AuthorizationServer,
    client: &RegisteredClient,
    params: &Params,
    jkt: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    if !client.pre_registered {
        return Err(OAuthError::new(
            "unauthorized_client",
            "the JWT bearer grant is for clients registered by the operator",
        ));
    }
    require_grant(client, JWT_BEARER_GRANT)?;
    let grant = server.check_grant_assertion(client, params).await?;
    let issue = Issue {
        client_id: &client.client_id,
        subject: &grant.subject,
        scopes: &grant.scopes,
        resource: &grant.resource,
        family_id: None,
        dpop_jkt: jkt,
        not_after: None,
        act: None,
    };
    let response = issue_access(server, &issue).await?;
    tracing::info!(client_id = %client.client_id, "tokens issued for a JWT bearer assertion");
    Ok(response)
}

/// RFC 8693: a token for a downstream API, on the subject token's behalf; no refresh token,
/// since the resource server can exchange again.
async fn token_exchange(
    server: &AuthorizationServer,
    client: &RegisteredClient,
    params: &Params,
    jkt: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let exchanged = super::exchange::check(server, client, params).await?;
    let issue = Issue {
        client_id: &client.client_id,
        subject: &exchanged.subject,
        scopes: &exchanged.scopes,
        resource: &exchanged.audience,
        family_id: exchanged.family_id.as_deref(),
        dpop_jkt: jkt,
        not_after: Some(exchanged.not_after),
        act: Some(&exchanged.act),
    };
    let mut response = issue_access(server, &issue).await?;
    response.issued_token_type = Some(ACCESS_TOKEN_TYPE);
    Ok(response)
}

async fn issue_access(
    server: &AuthorizationServer,
    issue: &Issue<'_>,
) -> Result<TokenResponse, OAuthError> {
    let config = &server.inner.config;
    let now = now_secs();
    let mut ttl = config.access_token_ttl.as_secs().max(1);
    if let Some(not_after) = issue.not_after {
        ttl = ttl.min(not_after.saturating_sub(now)).max(1);
    }
    let scope = issue.scopes.join(" ");
    let access_token = match config.token_format {
        TokenFormat::Jwt => server.inner.key.sign(&AccessClaims {
            iss: server.issuer(),
            sub: issue.subject,
            aud: issue.resource,
            client_id: issue.client_id,
            scope: &scope,
            iat: now,
            exp: now + ttl,
            jti: random_token(),
            cnf: issue.dpop_jkt.map(|jkt| Confirmation { jkt }),
            act: issue.act,
        })?,
        TokenFormat::Opaque => random_token(),
    };
    // Kept for introspection and revocation, in either format.
    let record = AccessRecord {
        client_id: issue.client_id.to_owned(),
        subject: issue.subject.to_owned(),
        scopes: issue.scopes.to_vec(),
        resource: issue.resource.to_owned(),
        issued_at: now,
        expires_at: now + ttl,
        family_id: issue.family_id.map(str::to_owned),
        dpop_jkt: issue.dpop_jkt.map(str::to_owned),
        act: issue.act.map(|act| act.to_string()),
    };
    config
        .store
        .save_access(hash(&access_token), record)
        .await?;
    Ok(TokenResponse {
        access_token,
        token_type: if issue.dpop_jkt.is_some() {
            "DPoP"
        } else {
            "Bearer"
        },
        expires_in: ttl,
        refresh_token: None,
        scope,
        issued_token_type: None,
    })
}

/// RFC 7636 §4.6: `BASE64URL(SHA256(verifier)) == challenge`, with a well-formed verifier.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = s256_challenge(verifier);
    well_formed && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        assert!(!pkce_matches("short", challenge));
    }
}
