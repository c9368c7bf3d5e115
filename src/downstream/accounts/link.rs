//! The link's pages: the ticket, the user's confirmation at the MCP server's authorization
//! server, the page naming who links what, and the third party's callback.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::header::{LOCATION, ORIGIN, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AccountKey, LinkedAccounts};
use crate::authorization_server::{
    escape, html_response, random_token, s256_challenge, PAGE_STYLE,
};
use crate::clock::now_secs;

pub(super) const LINK_PATH: &str = "/accounts/link";
pub(super) const CONFIRMED_PATH: &str = "/accounts/confirmed";
pub(super) const CONTINUE_PATH: &str = "/accounts/continue";
pub(super) const CALLBACK_PATH: &str = "/accounts/callback";
const COOKIE: &str = "mcp_link";
/// On https: a `__Host-` cookie, which no sibling subdomain can set or shadow.
const HOST_COOKIE: &str = "__Host-mcp_link";
/// Longest query or form read: more is not from these pages.
const MAX_INPUT_BYTES: usize = 8 * 1024;
/// Time the browser has for each step after the ticket is opened.
const STEP_TTL_SECS: u64 = 600;
const NOTHING_LINKED: &str = "Nothing was linked.";

/// What the link carries: whose account, asked by which MCP client.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Ticket {
    pub(super) account: AccountKey,
    pub(super) client_id: Option<String>,
    pub(super) elicitation_id: String,
}

/// A link in progress, sealed in the vault under the hash of a one-time handle.
#[derive(Serialize, Deserialize)]
pub(super) enum Pending {
    /// Made for the user; opened at most once.
    Ticket(Ticket),
    /// Opened, and bound to the browser that opened it (the hash of its cookie).
    Step {
        ticket: Ticket,
        binding: [u8; 32],
        stage: Stage,
    },
}

/// Where an opened link stands.
#[derive(Serialize, Deserialize)]
pub(super) enum Stage {
    /// The browser is signing in at the MCP server's authorization server.
    ConfirmingUser { code_verifier: String },
    /// The page naming who links what is shown; continuing goes to the third party.
    Confirmed,
    /// At the third party.
    Linking { code_verifier: String },
}

impl LinkedAccounts {
    /// The link's pages, at `/accounts/…` under the public URL's path: merge this into the
    /// MCP server's router, outside `RequireBearer` (browsers carry no token).
    pub fn router(&self) -> axum::Router {
        let prefix = self.inner.base.path().trim_end_matches('/').to_owned();
        axum::Router::new()
            .route(&format!("{prefix}{LINK_PATH}"), get(open_link))
            .route(&format!("{prefix}{CONFIRMED_PATH}"), get(user_confirmed))
            .route(
                &format!("{prefix}{CONTINUE_PATH}"),
                post(continue_to_provider),
            )
            .route(&format!("{prefix}{CALLBACK_PATH}"), get(provider_callback))
            .with_state(self.clone())
    }

    fn cookie_header(&self, value: &str, max_age: u64) -> Option<HeaderValue> {
        let path = format!("{}/accounts", self.inner.base.path().trim_end_matches('/'));
        let secure = if self.inner.is_https() {
            "; Secure"
        } else {
            ""
        };
        // Lax: the returns from the authorization servers are top-level GET navigations.
        HeaderValue::from_str(&format!(
            "{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
        ))
        .ok()
    }
}

fn params(query: Option<&str>) -> Option<Vec<(String, String)>> {
    let query = query.unwrap_or("");
    (query.len() <= MAX_INPUT_BYTES).then(|| {
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    })
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut found = params.iter().filter(|(n, _)| n == name);
    let first = found.next()?;
    // A repeated parameter is ambiguous: refused.
    found.next().is_none().then_some(first.1.as_str())
}

/// The hash of the browser's binding cookie. Two of them (one planted beside ours) bind
/// nothing.
fn binding_of(headers: &HeaderMap) -> Option<[u8; 32]> {
    let mut values = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE || *name == HOST_COOKIE)
        .map(|(_, value)| value);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    Some(Sha256::digest(value.as_bytes()).into())
}

fn same_browser(headers: &HeaderMap, binding: &[u8; 32]) -> bool {
    binding_of(headers).is_some_and(|b| bool::from(b.ct_eq(binding)))
}

fn page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{PAGE_STYLE}</style></head><body><h1>{title}</h1>{body_html}</body></html>",
        title = escape(title)
    );
    let mut response = html_response(status, html);
    response.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

fn failure(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Account not linked",
        &format!(
            "<p id=\"error\">{}</p><p>{NOTHING_LINKED}</p>",
            escape(message)
        ),
    )
}

fn unavailable() -> Response {
    failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "The server cannot link accounts right now. Try again from your MCP client later.",
    )
}

fn see_other(location: &str, cookie: Option<HeaderValue>) -> Response {
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    if let Some(cookie) = cookie {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// Keeps the next step of a link under `handle`, for the browser `binding` names.
async fn keep_step(
    accounts: &LinkedAccounts,
    handle: &str,
    ticket: Ticket,
    binding: [u8; 32],
    stage: Stage,
) -> Result<(), Response> {
    let record = Pending::Step {
        ticket,
        binding,
        stage,
    };
    accounts
        .inner
        .put_pending(handle, &record, now_secs() + STEP_TTL_SECS)
        .await
        .map_err(|_| unavailable())
}

/// The step kept under `handle`, taken once, when this browser is the one it is bound to;
/// otherwise the page that says why not. `what` names it on that page.
async fn take_step(
    accounts: &LinkedAccounts,
    handle: &str,
    headers: &HeaderMap,
    what: &str,
) -> Result<(Ticket, [u8; 32], Stage), Response> {
    let (ticket, binding, stage) = match accounts.inner.take_pending(handle).await {
        Ok(Some(Pending::Step {
            ticket,
            binding,
            stage,
        })) => (ticket, binding, stage),
        Ok(_) => return Err(unknown_step(what)),
        Err(_) => return Err(unavailable()),
    };
    if !same_browser(headers, &binding) {
        return Err(failure(
            StatusCode::FORBIDDEN,
            "This link was opened in another browser.",
        ));
    }
    Ok((ticket, binding, stage))
}

fn unknown_step(what: &str) -> Response {
    failure(
        StatusCode::BAD_REQUEST,
        &format!("{what} is unknown, used or expired."),
    )
}

/// `GET /accounts/link?ticket=…`: takes the ticket and binds the flow to this browser.
async fn open_link(State(accounts): State<LinkedAccounts>, RawQuery(query): RawQuery) -> Response {
    let Some(params) = params(query.as_deref()) else {
        return failure(StatusCode::BAD_REQUEST, "The link is malformed.");
    };
    let Some(handle) = param(&params, "ticket") else {
        return failure(StatusCode::BAD_REQUEST, "The link is malformed.");
    };
    let ticket = match accounts.inner.take_pending(handle).await {
        Ok(Some(Pending::Ticket(ticket))) => ticket,
        Ok(_) => {
            return failure(
                StatusCode::GONE,
                "This link was used already or has expired. Ask again from your MCP client.",
            )
        }
        Err(_) => return unavailable(),
    };
    let browser = random_token();
    let binding: [u8; 32] = Sha256::digest(browser.as_bytes()).into();
    let cookie = accounts.cookie_header(&browser, STEP_TTL_SECS);
    let Some((confirm, resource, _)) = &accounts.inner.confirm else {
        return confirmation_page(&accounts, ticket, binding, false, cookie).await;
    };
    let state = random_token();
    let code_verifier = random_token();
    let stage = Stage::ConfirmingUser {
        code_verifier: code_verifier.clone(),
    };
    if let Err(page) = keep_step(&accounts, &state, ticket, binding, stage).await {
        return page;
    }
    match confirm
        .authorization_url_with(
            &accounts.confirm_redirect_uri(),
            &state,
            &random_token(),
            &s256_challenge(&code_verifier),
            &[("resource", resource)],
        )
        .await
    {
        Ok(url) => see_other(url.as_str(), cookie),
        Err(error) => {
            tracing::warn!(%error, "the authorization server for confirming users is unavailable");
            unavailable()
        }
    }
}

/// `GET /accounts/confirmed`: the MCP server's authorization server says who this browser is.
async fn user_confirmed(
    State(accounts): State<LinkedAccounts>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some((confirm, resource, verifier)) = &accounts.inner.confirm else {
        return failure(StatusCode::NOT_FOUND, "Unknown page.");
    };
    let Some(params) = params(query.as_deref()) else {
        return failure(StatusCode::BAD_REQUEST, "The answer is malformed.");
    };
    let Some(state) = param(&params, "state") else {
        return failure(StatusCode::BAD_REQUEST, "The answer names no state.");
    };
    let (ticket, binding, code_verifier) =
        match take_step(&accounts, state, &headers, "This sign-in").await {
            Ok((ticket, binding, Stage::ConfirmingUser { code_verifier })) => {
                (ticket, binding, code_verifier)
            }
            Ok(_) => return unknown_step("This sign-in"),
            Err(page) => return page,
        };
    if let Err(error) = confirm.check_callback_issuer(param(&params, "iss")).await {
        tracing::warn!(%error, "confirming a user");
        return failure(
            StatusCode::BAD_REQUEST,
            "The sign-in answer came from another server.",
        );
    }
    let Some(code) = param(&params, "code") else {
        return failure(StatusCode::FORBIDDEN, "You did not sign in.");
    };
    let tokens = match confirm
        .redeem(
            code,
            &code_verifier,
            &accounts.confirm_redirect_uri(),
            &accounts.inner.signing_key,
            &[("resource", resource)],
        )
        .await
    {
        Ok(tokens) => tokens,
        Err(error) => {
            tracing::warn!(%error, "confirming a user: the code was not redeemed");
            return failure(StatusCode::FORBIDDEN, "The sign-in could not be completed.");
        }
    };
    let who = match verifier.verify(tokens.access_token.expose()).await {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(%error, "confirming a user: the token was not accepted");
            return failure(StatusCode::FORBIDDEN, "The sign-in could not be verified.");
        }
    };
    let for_resource = crate::server::is_for_resource(verifier.as_ref(), &who, resource);
    let same_user = who.subject.as_deref() == Some(ticket.account.subject.as_str())
        && who.issuer.clone().unwrap_or_default() == ticket.account.issuer;
    if !for_resource || !same_user {
        tracing::warn!(provider = %ticket.account.provider, "a link was opened by another user than the one it was made for");
        return failure(
            StatusCode::FORBIDDEN,
            "You are signed in as someone else than the user this link was made for. \
             Links work only for the user who asked for them.",
        );
    }
    confirmation_page(&accounts, ticket, binding, true, None).await
}

/// The page naming the third party, the MCP user and the MCP client that asked.
async fn confirmation_page(
    accounts: &LinkedAccounts,
    ticket: Ticket,
    binding: [u8; 32],
    confirmed: bool,
    cookie: Option<HeaderValue>,
) -> Response {
    let Some(provider) = accounts.inner.providers.get(&ticket.account.provider) else {
        return unavailable();
    };
    let provider_name = provider.display_name();
    let provider_origin = provider.authorization_origin().await.unwrap_or_default();
    let handle = random_token();
    let user = ticket.account.subject.clone();
    let client = ticket.client_id.clone();
    if let Err(page) = keep_step(accounts, &handle, ticket, binding, Stage::Confirmed).await {
        return page;
    }
    let who = if confirmed {
        format!(
            "You are signed in as <strong id=\"user\">{}</strong>.",
            escape(&user)
        )
    } else {
        format!(
            "This link was made for <strong id=\"user\">{}</strong>; this server did not check who you are.",
            escape(&user)
        )
    };
    let client = client
        .map(|c| {
            format!(
                " The MCP client <code id=\"client\">{}</code> asked for it.",
                escape(&c)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<p>{who}</p><p>The MCP server at <code>{server}</code> asks to use your \
         <strong id=\"provider\">{provider}</strong> account on your behalf.{client}</p>\
         <p>You will sign in at <code>{origin}</code>. If you did not ask for this in your MCP \
         client, close this page: {NOTHING_LINKED}</p>\
         <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"handle\" value=\"{handle}\">\
         <button type=\"submit\">Continue to {provider}</button></form>",
        server = escape(&accounts.inner.base.origin().ascii_serialization()),
        provider = escape(&provider_name),
        origin = escape(&provider_origin),
        action = escape(&format!(
            "{}{CONTINUE_PATH}",
            accounts.inner.base.path().trim_end_matches('/')
        )),
    );
    let mut response = page(
        StatusCode::OK,
        &format!("Link your {provider_name} account"),
        &body,
    );
    if let Some(cookie) = cookie {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// `POST /accounts/continue`: on to the third party.
async fn continue_to_provider(
    State(accounts): State<LinkedAccounts>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let server_origin = accounts.inner.base.origin().ascii_serialization();
    if headers
        .get(ORIGIN)
        .is_some_and(|origin| origin.as_bytes() != server_origin.as_bytes())
    {
        return failure(
            StatusCode::FORBIDDEN,
            "The form was sent from another site.",
        );
    }
    if body.len() > MAX_INPUT_BYTES {
        return failure(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let Some(handle) = param(&form, "handle") else {
        return failure(StatusCode::BAD_REQUEST, "The form is malformed.");
    };
    let (ticket, binding) = match take_step(&accounts, handle, &headers, "This page").await {
        Ok((ticket, binding, Stage::Confirmed)) => (ticket, binding),
        Ok(_) => return unknown_step("This page"),
        Err(page) => return page,
    };
    let Some(provider) = accounts.inner.providers.get(&ticket.account.provider) else {
        return unavailable();
    };
    let state = random_token();
    let code_verifier = random_token();
    // The third party's ID token, if any, is not read here: its nonce is not kept.
    let url = match provider
        .authorization_url(
            &accounts.redirect_uri(),
            &state,
            &random_token(),
            &s256_challenge(&code_verifier),
        )
        .await
    {
        Ok(url) => url,
        Err(error) => {
            tracing::warn!(%error, "a third party is unavailable");
            return unavailable();
        }
    };
    let stage = Stage::Linking { code_verifier };
    if let Err(page) = keep_step(&accounts, &state, ticket, binding, stage).await {
        return page;
    }
    see_other(url.as_str(), None)
}

/// `GET /accounts/callback`: the third party's answer; the tokens go into the vault.
async fn provider_callback(
    State(accounts): State<LinkedAccounts>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(params) = params(query.as_deref()) else {
        return failure(StatusCode::BAD_REQUEST, "The answer is malformed.");
    };
    let Some(state) = param(&params, "state") else {
        return failure(StatusCode::BAD_REQUEST, "The answer names no state.");
    };
    let (ticket, code_verifier) = match take_step(&accounts, state, &headers, "This answer").await {
        Ok((ticket, _, Stage::Linking { code_verifier })) => (ticket, code_verifier),
        Ok(_) => return unknown_step("This answer"),
        Err(page) => return page,
    };
    let Some(provider) = accounts.inner.providers.get(&ticket.account.provider) else {
        return unavailable();
    };
    let name = provider.display_name();
    if let Some(error) = param(&params, "error") {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(64)
            .collect();
        return failure(StatusCode::FORBIDDEN, &format!("{name} answered: {error}."));
    }
    if let Err(error) = provider.check_callback_issuer(param(&params, "iss")).await {
        tracing::warn!(%error, "a third party's callback");
        return failure(
            StatusCode::BAD_REQUEST,
            "The answer came from another server.",
        );
    }
    let Some(code) = param(&params, "code") else {
        return failure(StatusCode::BAD_REQUEST, "The answer has no code.");
    };
    let tokens = match provider
        .redeem(
            code,
            &code_verifier,
            &accounts.redirect_uri(),
            &accounts.inner.signing_key,
            &[],
        )
        .await
    {
        Ok(tokens) => tokens,
        Err(error) => {
            tracing::warn!(%error, provider = %ticket.account.provider, "a third party's code was not redeemed");
            return failure(
                StatusCode::BAD_GATEWAY,
                &format!("{name} did not complete the sign-in."),
            );
        }
    };
    if accounts
        .inner
        .store(&ticket.account, &tokens)
        .await
        .is_err()
    {
        return unavailable();
    }
    accounts.inner.linked.notify_waiters();
    let mut response = page(
        StatusCode::OK,
        &format!("{name} account linked"),
        &format!(
            "<p id=\"linked\">Your {} account is linked to <strong>{}</strong>. You can close this \
             page: your MCP client goes on by itself.</p>",
            escape(&name),
            escape(&ticket.account.subject)
        ),
    );
    if let Some(clear) = accounts.cookie_header("", 0) {
        response.headers_mut().insert(SET_COOKIE, clear);
    }
    response
}
