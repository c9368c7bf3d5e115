//! The authorization endpoint: request validation, the consent page, and the redirect back with
//! `code`, `state` and `iss` (RFC 9207). Who approves is the `ApprovalPolicy`'s business
//! (`approval.rs`); how a page is served, `page.rs`'s.
//!
//! Until the client and its redirect URI are known good, errors are shown as a page and never
//! redirected (RFC 6749 §4.1.2.1); after that they go back to the client with `state`.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::header::{CACHE_CONTROL, COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use subtle::ConstantTimeEq;
use url::Url;

use super::approval::{AuthorizationDecision, ConsentRequest};
use super::client_auth::load_client;
use super::grant::{hash, random_token, split_scopes};
use super::page::error_page;
use super::register::redirect_matches;
use super::store::{CodeGrant, PendingConsent, RegisteredClient};
use super::wire::{form_params, Params};
use super::AuthorizationServer;
use crate::clock::now_secs;

mod consent;
mod upstream_leg;

use consent::{consent_page, Who};
pub(super) use upstream_leg::callback as upstream_callback;

/// Where the upstream identity provider sends the user back (under the issuer's path).
pub(super) const CALLBACK_PATH: &str = "/authorize/callback";

/// How long a consent page stays valid.
const CONSENT_TTL: Duration = Duration::from_secs(600);
/// Longest authorization request query read.
const MAX_QUERY_BYTES: usize = 8 * 1024;
/// Longest client name shown.
const MAX_CLIENT_NAME_CHARS: usize = 100;
const CONSENT_COOKIE_PREFIX: &str = "mcp_consent_";

#[derive(Clone)]
struct Validated {
    client_id: String,
    client_name: Option<String>,
    redirect_uri: String,
    redirect_uri_in_request: bool,
    state: Option<String>,
    scopes: Vec<String>,
    resource: String,
    code_challenge: String,
}

impl Validated {
    /// What the store keeps while the page is open (any replica may get the answer).
    fn pending(self, subject: String, csrf: &str) -> PendingConsent {
        PendingConsent {
            client_id: self.client_id,
            client_name: self.client_name,
            redirect_uri: self.redirect_uri,
            redirect_uri_in_request: self.redirect_uri_in_request,
            state: self.state,
            scopes: self.scopes,
            resource: self.resource,
            code_challenge: self.code_challenge,
            subject,
            csrf_hash: hash(csrf),
            expires_at: now_secs() + CONSENT_TTL.as_secs(),
        }
    }

    fn from_pending(pending: PendingConsent) -> (Self, String, super::store::TokenHash) {
        let request = Self {
            client_id: pending.client_id,
            client_name: pending.client_name,
            redirect_uri: pending.redirect_uri,
            redirect_uri_in_request: pending.redirect_uri_in_request,
            state: pending.state,
            scopes: pending.scopes,
            resource: pending.resource,
            code_challenge: pending.code_challenge,
        };
        (request, pending.subject, pending.csrf_hash)
    }

    fn consent_request(&self) -> ConsentRequest {
        ConsentRequest {
            client_id: self.client_id.clone(),
            client_name: self.client_name.clone(),
            redirect_uri: self.redirect_uri.clone(),
            scopes: self.scopes.clone(),
            resource: self.resource.clone(),
        }
    }
}

/// An error that must not be redirected: shown to the user.
struct PageError(&'static str);

/// An error that goes back to the client.
struct RedirectError {
    code: &'static str,
    description: String,
}

fn redirect_error(code: &'static str, description: impl Into<String>) -> RedirectError {
    RedirectError {
        code,
        description: description.into(),
    }
}

pub(super) async fn handle_get(
    State(server): State<AuthorizationServer>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if query.len() > MAX_QUERY_BYTES {
        return error_page(StatusCode::URI_TOO_LONG, "The request is too long.");
    }
    let Ok(params) = Params::parse(query.as_bytes()) else {
        return error_page(StatusCode::BAD_REQUEST, "The request repeats a parameter.");
    };
    let (client, redirect_uri) = match client_and_redirect(&server, &params).await {
        Ok(found) => found,
        Err(PageError(message)) => return error_page(StatusCode::BAD_REQUEST, message),
    };
    let state = params.get("state").map(str::to_owned);
    let request = match validate(
        &server,
        &params,
        client,
        redirect_uri.clone(),
        state.clone(),
    ) {
        Ok(request) => request,
        Err(error) => {
            tracing::info!(code = error.code, description = %error.description, "authorization request refused");
            return redirect_with_error(
                &server,
                &redirect_uri,
                state.as_deref(),
                error.code,
                &error.description,
                StatusCode::FOUND,
            );
        }
    };
    if let Some(upstream) = &server.inner.upstream {
        return upstream_leg::decide(&server, upstream, request, &headers).await;
    }
    let consent_request = request.consent_request();
    let decision = server
        .inner
        .approval
        .decide(&consent_request, &headers)
        .await;
    match decision {
        AuthorizationDecision::Approve { subject } => {
            approve(&server, request, subject, StatusCode::FOUND).await
        }
        AuthorizationDecision::Deny => deny(&server, &request, StatusCode::FOUND),
        AuthorizationDecision::AskUser { subject } => {
            consent_page(&server, request, Who::Subject(&subject)).await
        }
    }
}

pub(super) async fn handle_post(
    State(server): State<AuthorizationServer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(params) = form_params(&headers, &body) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The consent form was not understood.",
        );
    };
    if !same_origin(&server, &headers) {
        return error_page(
            StatusCode::FORBIDDEN,
            "The consent form came from another site.",
        );
    }
    let Some(id) = params.get("request") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The consent form was not understood.",
        );
    };
    let pending = match server.inner.config.store.take_consent(hash(id)).await {
        Ok(Some(pending)) if pending.expires_at > now_secs() => pending,
        Ok(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "This consent page has expired or was already answered. Start again from the application.",
            )
        }
        Err(error) => {
            tracing::error!(%error, "consent store failed");
            return unavailable_page();
        }
    };
    let (request, subject, csrf_hash) = Validated::from_pending(pending);
    let form_csrf = params.get("csrf").unwrap_or("");
    let cookie_csrf = cookie(&headers, &format!("{CONSENT_COOKIE_PREFIX}{id}")).unwrap_or_default();
    let csrf_ok = bool::from(hash(form_csrf).0.ct_eq(&csrf_hash.0))
        && bool::from(hash(&cookie_csrf).0.ct_eq(&csrf_hash.0));
    if !csrf_ok {
        return error_page(
            StatusCode::FORBIDDEN,
            "The consent form could not be verified.",
        );
    }
    let mut response = match (params.get("decision"), &server.inner.upstream) {
        (Some("approve"), Some(upstream)) if subject.is_empty() => {
            upstream_leg::start(&server, upstream, request).await
        }
        (Some("approve"), Some(upstream)) => {
            upstream_leg::approve_remembering(&server, upstream, request, subject).await
        }
        (Some("approve"), None) => approve(&server, request, subject, StatusCode::SEE_OTHER).await,
        _ => deny(&server, &request, StatusCode::SEE_OTHER),
    };
    // The cookie has served its purpose.
    if let Ok(expired) = HeaderValue::from_str(&format!(
        "{CONSENT_COOKIE_PREFIX}{id}=; Path={}; Max-Age=0; HttpOnly; SameSite=Strict",
        authorize_path(&server)
    )) {
        response.headers_mut().append(SET_COOKIE, expired);
    }
    response
}

/// The client and the redirect URI, or a page: nothing is redirected before both are known.
async fn client_and_redirect(
    server: &AuthorizationServer,
    params: &Params,
) -> Result<(RegisteredClient, String), PageError> {
    let client_id = params
        .get("client_id")
        .ok_or(PageError("The request names no client."))?;
    let client = load_client(server, client_id)
        .await
        .map_err(|_| PageError("The server could not look up the client. Try again later."))?
        .ok_or(PageError("The client is unknown to this server."))?;
    let registered = &client.metadata.redirect_uris;
    let redirect_uri = match params.get("redirect_uri") {
        Some(requested) => {
            if !registered.iter().any(|r| redirect_matches(r, requested)) {
                return Err(PageError(
                    "The redirect URI is not registered for this client.",
                ));
            }
            requested.to_owned()
        }
        None if registered.len() == 1 => registered[0].clone(),
        None => return Err(PageError("The request names no redirect URI.")),
    };
    Ok((client, redirect_uri))
}

fn validate(
    server: &AuthorizationServer,
    params: &Params,
    client: RegisteredClient,
    redirect_uri: String,
    state: Option<String>,
) -> Result<Validated, RedirectError> {
    let config = &server.inner.config;
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(redirect_error(
                "unsupported_response_type",
                "only response_type=code is supported",
            ))
        }
        None => {
            return Err(redirect_error(
                "invalid_request",
                "response_type is missing",
            ))
        }
    }
    if !client.allows_grant("authorization_code") {
        return Err(redirect_error(
            "unauthorized_client",
            "the client did not register the authorization_code grant",
        ));
    }
    let code_challenge = params.get("code_challenge").ok_or_else(|| {
        redirect_error(
            "invalid_request",
            "PKCE is required: code_challenge is missing",
        )
    })?;
    if params.get("code_challenge_method") != Some("S256") {
        return Err(redirect_error(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    let well_formed = code_challenge.len() == 43
        && code_challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(redirect_error(
            "invalid_request",
            "code_challenge is not a base64url SHA-256",
        ));
    }
    let requested = split_scopes(params.get("scope"));
    let scopes = if requested.is_empty() {
        config.default_scopes.clone().unwrap_or_default()
    } else {
        requested
    };
    server
        .check_scopes(&client, &scopes)
        .map_err(|d| redirect_error("invalid_scope", d))?;
    let resource = server
        .resolve_resource(params.get("resource"))
        .map_err(|d| redirect_error("invalid_target", d))?;
    Ok(Validated {
        client_id: client.client_id,
        // Bounded: it waits in memory while the consent page is open.
        client_name: client
            .metadata
            .client_name
            .map(|name| name.chars().take(MAX_CLIENT_NAME_CHARS).collect()),
        redirect_uri,
        redirect_uri_in_request: params.get("redirect_uri").is_some(),
        state,
        scopes,
        resource,
        code_challenge: code_challenge.to_owned(),
    })
}

async fn approve(
    server: &AuthorizationServer,
    request: Validated,
    subject: String,
    status: StatusCode,
) -> Response {
    let code = random_token();
    let grant = CodeGrant {
        client_id: request.client_id.clone(),
        subject,
        scopes: request.scopes.clone(),
        resource: request.resource.clone(),
        redirect_uri: request.redirect_uri.clone(),
        redirect_uri_in_request: request.redirect_uri_in_request,
        code_challenge: request.code_challenge.clone(),
        expires_at: now_secs() + server.inner.config.code_ttl.as_secs(),
        family_id: random_token(),
    };
    if let Err(error) = server
        .inner
        .config
        .store
        .save_code(hash(&code), grant)
        .await
    {
        tracing::error!(%error, "could not save an authorization code");
        return redirect_with_error(
            server,
            &request.redirect_uri,
            request.state.as_deref(),
            "temporarily_unavailable",
            "the server could not complete the request",
            status,
        );
    }
    tracing::info!(client_id = %request.client_id, scopes = %request.scopes.join(" "), "authorization approved");
    redirect_to_client(
        server,
        &request.redirect_uri,
        &[("code", &code)],
        request.state.as_deref(),
        status,
    )
}

fn deny(server: &AuthorizationServer, request: &Validated, status: StatusCode) -> Response {
    tracing::info!(client_id = %request.client_id, "authorization denied");
    redirect_with_error(
        server,
        &request.redirect_uri,
        request.state.as_deref(),
        "access_denied",
        "the user denied the request",
        status,
    )
}

fn redirect_with_error(
    server: &AuthorizationServer,
    redirect_uri: &str,
    state: Option<&str>,
    code: &str,
    description: &str,
    status: StatusCode,
) -> Response {
    redirect_to_client(
        server,
        redirect_uri,
        &[("error", code), ("error_description", description)],
        state,
        status,
    )
}

/// The authorization response: `pairs`, then `state` and `iss` (RFC 9207), on the redirect URI.
fn redirect_to_client(
    server: &AuthorizationServer,
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    state: Option<&str>,
    status: StatusCode,
) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "The redirect URI is invalid.");
    };
    {
        let mut query = url.query_pairs_mut();
        query.extend_pairs(pairs);
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", server.issuer());
    }
    redirect(url.as_str(), status)
}

fn redirect(location: &str, status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn authorize_path(server: &AuthorizationServer) -> String {
    format!(
        "{}/authorize",
        server.inner.config.issuer.path().trim_end_matches('/')
    )
}

/// A page for a store that cannot answer: try again shortly.
pub(super) fn unavailable_page() -> Response {
    let mut response = error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The server cannot take this request right now. Try again in a moment.",
    );
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// A form post must come from the server's own pages: when the browser names an origin, it
/// must be the issuer's.
pub(super) fn same_origin(server: &AuthorizationServer, headers: &HeaderMap) -> bool {
    match headers.get(http::header::ORIGIN).map(HeaderValue::to_str) {
        None => true,
        Some(Ok(origin)) => origin == server.inner.config.issuer.origin().ascii_serialization(),
        Some(Err(_)) => false,
    }
}

pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}
