//! The authorization endpoint with upstream sign-in: our consent first, then the provider, then
//! the MCP client's code (see `upstream/mod.rs` for the whole flow and why in that order).

use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue, StatusCode};
use subtle::ConstantTimeEq;

use super::consent::{consent_page, Who};
use super::{
    approve, cookie, redirect, redirect_with_error, unavailable_page, Validated, CALLBACK_PATH,
    CONSENT_TTL, MAX_QUERY_BYTES,
};
use crate::authorization_server::grant::{hash, random_token, s256_challenge};
use crate::authorization_server::page::error_page;
use crate::authorization_server::store::{
    PendingSignIn, RememberedConsent, SignInSession, UpstreamIdentity,
};
use crate::authorization_server::upstream::{SignInError, Upstream};
use crate::authorization_server::wire::Params;
use crate::authorization_server::AuthorizationServer;
use crate::clock::now_secs;
use crate::Secret;

const STATE_COOKIE_PREFIX: &str = "mcp_upstream_";
/// Characters of the `state` in its cookie's name: enough to keep two tabs' sign-ins apart.
const STATE_COOKIE_NAME_CHARS: usize = 16;

/// `GET /authorize`, validated, with upstream sign-in: a signed-in user with a remembered
/// consent that covers the request gets the code at once; anyone else gets the consent page.
pub(super) async fn decide(
    server: &AuthorizationServer,
    upstream: &Upstream,
    mut request: Validated,
    headers: &HeaderMap,
) -> Response {
    let session = match session_of(server, headers).await {
        Ok(session) => session,
        Err(()) => return unavailable_page(),
    };
    let Some(session) = session else {
        return match upstream.authorization_origin().await {
            Ok(origin) => {
                let provider = upstream.display_name();
                consent_page(
                    server,
                    request,
                    Who::SignInAt {
                        provider: &provider,
                        origin: &origin,
                    },
                )
                .await
            }
            Err(error) => sign_in_failed(&error),
        };
    };
    request.scopes = upstream.scopes_for(&session.identity, &request.scopes);
    let remembered = server
        .inner
        .config
        .store
        .remembered_consent(&session.subject, &request.client_id)
        .await;
    match remembered {
        Ok(Some(consent)) if consent.covers(&request.scopes, &request.resource, now_secs()) => {
            approve(server, request, session.subject, StatusCode::FOUND).await
        }
        Ok(_) => {
            consent_page(
                server,
                request,
                Who::SignedIn {
                    subject: &session.subject,
                    identity: &session.identity,
                },
            )
            .await
        }
        Err(error) => {
            tracing::error!(%error, "could not read a remembered consent");
            unavailable_page()
        }
    }
}

/// The consent form approved by a signed-in user: remember it, then issue the code.
pub(super) async fn approve_remembering(
    server: &AuthorizationServer,
    upstream: &Upstream,
    request: Validated,
    subject: String,
) -> Response {
    // A consent that cannot be remembered is asked again next time; this one stands.
    remember(server, upstream, &request, &subject).await;
    approve(server, request, subject, StatusCode::SEE_OTHER).await
}

/// The consent form approved before anyone signed in: keep the request under a fresh `state`,
/// bind it to this browser with a cookie, and send the browser to the provider.
pub(super) async fn start(
    server: &AuthorizationServer,
    upstream: &Upstream,
    request: Validated,
) -> Response {
    let state = random_token();
    let nonce = random_token();
    let verifier = random_token();
    let challenge = s256_challenge(&verifier);
    let redirect_uri = callback_uri(server);
    let url = match upstream
        .authorization_url(&redirect_uri, &state, &nonce, &challenge)
        .await
    {
        Ok(url) => url,
        Err(error) => return sign_in_failed(&error),
    };
    let pending = PendingSignIn {
        // The state cookie's value is the state itself: its hash is what the callback checks.
        consent: request.pending(String::new(), &state),
        nonce: Secret::new(nonce),
        code_verifier: Secret::new(verifier),
    };
    if let Err(error) = server
        .inner
        .config
        .store
        .save_sign_in(hash(&state), pending)
        .await
    {
        tracing::error!(%error, "could not keep a sign-in");
        return unavailable_page();
    }
    let mut response = redirect(url.as_str(), StatusCode::SEE_OTHER);
    let cookie = format!(
        "{}={state}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{}",
        state_cookie_name(server, &state),
        state_cookie_path(server),
        CONSENT_TTL.as_secs(),
        secure_suffix(server),
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// `GET /authorize/callback`: the provider's answer. Nothing is issued unless the `state` is
/// one this browser started, the answer comes from the provider, and who signed in holds up.
pub(in crate::authorization_server) async fn callback(
    State(server): State<AuthorizationServer>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(upstream) = &server.inner.upstream else {
        return error_page(StatusCode::NOT_FOUND, "Upstream sign-in is not configured.");
    };
    let query = query.unwrap_or_default();
    if query.len() > MAX_QUERY_BYTES {
        return error_page(StatusCode::URI_TOO_LONG, "The answer is too long.");
    }
    let Ok(params) = Params::parse(query.as_bytes()) else {
        return error_page(StatusCode::BAD_REQUEST, "The answer repeats a parameter.");
    };
    let Some(state) = params.get("state") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The identity provider's answer has no state. Start again from the application.",
        );
    };
    let pending = match server.inner.config.store.take_sign_in(hash(state)).await {
        Ok(Some(pending)) if pending.consent.expires_at > now_secs() => pending,
        Ok(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in has expired, was already finished, or was not started here. \
                 Start again from the application.",
            )
        }
        Err(error) => {
            tracing::error!(%error, "could not take a sign-in");
            return unavailable_page();
        }
    };
    let mut response = finish(&server, upstream, &headers, &params, state, pending).await;
    // The state cookie has served its purpose, whatever the outcome.
    let expired = format!(
        "{}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax{}",
        state_cookie_name(&server, state),
        state_cookie_path(&server),
        secure_suffix(&server),
    );
    if let Ok(value) = HeaderValue::from_str(&expired) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

async fn finish(
    server: &AuthorizationServer,
    upstream: &Upstream,
    headers: &HeaderMap,
    params: &Params,
    state: &str,
    pending: PendingSignIn,
) -> Response {
    let cookie_state = cookie(headers, &state_cookie_name(server, state)).unwrap_or_default();
    let same_browser = bool::from(hash(&cookie_state).0.ct_eq(&pending.consent.csrf_hash.0))
        && bool::from(cookie_state.as_bytes().ct_eq(state.as_bytes()));
    if !same_browser {
        tracing::warn!("an upstream answer reached a browser that did not start the sign-in");
        return error_page(
            StatusCode::FORBIDDEN,
            "This sign-in was started in another browser. Start again from the application.",
        );
    }
    if let Err(error) = upstream.check_callback_issuer(params.get("iss")).await {
        return sign_in_failed(&error);
    }
    let (mut request, _, _) = Validated::from_pending(pending.consent);
    if params.get("error").is_some() {
        tracing::info!(client_id = %request.client_id, "the user did not sign in upstream");
        return redirect_with_error(
            server,
            &request.redirect_uri,
            request.state.as_deref(),
            "access_denied",
            "the user did not sign in at the identity provider",
            StatusCode::FOUND,
        );
    }
    let Some(code) = params.get("code") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The identity provider's answer has no code.",
        );
    };
    let signed_in = upstream
        .sign_in(
            code,
            pending.code_verifier.expose(),
            pending.nonce.expose(),
            &callback_uri(server),
            &server.inner.key,
        )
        .await;
    let (identity, tokens) = match signed_in {
        Ok(found) => found,
        Err(error) => return sign_in_failed(&error),
    };
    if let Err(error) = upstream.admit(&identity, &tokens.access_token).await {
        return sign_in_failed(&error);
    }
    let subject = identity.qualified_subject();
    request.scopes = upstream.scopes_for(&identity, &request.scopes);
    let session_id = random_token();
    let kept = keep_sign_in(server, upstream, &request, &subject, identity, &session_id).await;
    if kept.is_err() {
        return unavailable_page();
    }
    if let Some(key) = upstream.token_key() {
        let saved = match tokens.seal(key, &subject) {
            Ok(sealed) => {
                server
                    .inner
                    .config
                    .store
                    .save_upstream_tokens(&subject, sealed)
                    .await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = saved {
            // The sign-in stands; the server's tools will ask for a new one.
            tracing::error!(%error, "could not keep the upstream tokens");
        }
    }
    tracing::info!(client_id = %request.client_id, issuer = %upstream_issuer(&subject), "signed in upstream");
    let mut response = approve(server, request, subject, StatusCode::FOUND).await;
    let session_cookie = format!(
        "{}={session_id}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{}",
        session_cookie_name(server),
        session_cookie_path(server),
        upstream.session_ttl().as_secs(),
        secure_suffix(server),
    );
    if let Ok(value) = HeaderValue::from_str(&session_cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// The session and the consent, before the code goes out.
async fn keep_sign_in(
    server: &AuthorizationServer,
    upstream: &Upstream,
    request: &Validated,
    subject: &str,
    identity: UpstreamIdentity,
    session_id: &str,
) -> Result<(), ()> {
    let session = SignInSession {
        subject: subject.to_owned(),
        identity,
        expires_at: now_secs() + upstream.session_ttl().as_secs(),
    };
    if let Err(error) = server
        .inner
        .config
        .store
        .save_session(hash(session_id), session)
        .await
    {
        tracing::error!(%error, "could not save a session");
        return Err(());
    }
    remember(server, upstream, request, subject).await;
    Ok(())
}

/// Remembers the user's consent to the client, adding to what they consented to before for
/// the same resource. A failure is logged: the user is asked again next time.
async fn remember(
    server: &AuthorizationServer,
    upstream: &Upstream,
    request: &Validated,
    subject: &str,
) {
    let store = &server.inner.config.store;
    let mut scopes = request.scopes.clone();
    match store.remembered_consent(subject, &request.client_id).await {
        Ok(Some(before)) if before.resource == request.resource => {
            for scope in before.scopes {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
        }
        Ok(_) => {}
        Err(error) => {
            tracing::error!(%error, "could not read a remembered consent");
            return;
        }
    }
    let consent = RememberedConsent {
        subject: subject.to_owned(),
        client_id: request.client_id.clone(),
        scopes,
        resource: request.resource.clone(),
        expires_at: now_secs() + upstream.consent_ttl().as_secs(),
    };
    if let Err(error) = store.remember_consent(consent).await {
        tracing::error!(%error, "could not remember a consent");
    }
}

/// The browser's session, if it has a live one.
async fn session_of(
    server: &AuthorizationServer,
    headers: &HeaderMap,
) -> Result<Option<SignInSession>, ()> {
    let Some(id) = cookie(headers, session_cookie_name(server)) else {
        return Ok(None);
    };
    server
        .inner
        .config
        .store
        .session(hash(&id))
        .await
        .map_err(|error| tracing::error!(%error, "could not load a session"))
}

fn sign_in_failed(error: &SignInError) -> Response {
    tracing::warn!(%error, "upstream sign-in failed");
    let status = match error {
        SignInError::Unavailable(_) => StatusCode::BAD_GATEWAY,
        SignInError::Refused(_) | SignInError::Invalid(_) => StatusCode::BAD_REQUEST,
        SignInError::NotAllowed(_) => StatusCode::FORBIDDEN,
    };
    let mut message = error.to_string();
    if let Some(first) = message.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    error_page(
        status,
        &format!("{message}. Nothing was issued; start again from the application."),
    )
}

/// The provider part of a qualified subject, for logs (the user's id stays out of them).
fn upstream_issuer(subject: &str) -> &str {
    subject.split_once('#').map_or("", |(issuer, _)| issuer)
}

fn base_path(server: &AuthorizationServer) -> &str {
    server.inner.config.issuer.path().trim_end_matches('/')
}

fn callback_uri(server: &AuthorizationServer) -> String {
    format!("{}{CALLBACK_PATH}", server.issuer())
}

fn is_https(server: &AuthorizationServer) -> bool {
    server.inner.config.issuer.scheme() == "https"
}

fn secure_suffix(server: &AuthorizationServer) -> &'static str {
    if is_https(server) {
        "; Secure"
    } else {
        ""
    }
}

/// On https the cookies are `__Host-` (https only, `Path=/`, no `Domain`), so no sibling
/// host can plant one; on a loopback http issuer, plain names scoped to the endpoint.
fn host_prefix(server: &AuthorizationServer) -> &'static str {
    if is_https(server) {
        "__Host-"
    } else {
        ""
    }
}

fn state_cookie_name(server: &AuthorizationServer, state: &str) -> String {
    let short: String = state.chars().take(STATE_COOKIE_NAME_CHARS).collect();
    format!("{}{STATE_COOKIE_PREFIX}{short}", host_prefix(server))
}

fn state_cookie_path(server: &AuthorizationServer) -> String {
    if is_https(server) {
        "/".to_owned()
    } else {
        format!("{}{CALLBACK_PATH}", base_path(server))
    }
}

fn session_cookie_name(server: &AuthorizationServer) -> &'static str {
    if is_https(server) {
        "__Host-mcp_session"
    } else {
        "mcp_session"
    }
}

fn session_cookie_path(server: &AuthorizationServer) -> String {
    match base_path(server) {
        _ if is_https(server) => "/".to_owned(),
        "" => "/".to_owned(),
        base => format!("{base}/authorize"),
    }
}
