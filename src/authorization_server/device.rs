//! The device authorization grant (RFC 8628): the device endpoint that hands out a device code
//! and a user code, and the verification page where the user types the code and answers.
//! The token endpoint's side (polling) is in `token.rs`.
//!
//! The page asks the [`ApprovalPolicy`](super::ApprovalPolicy) who the user is, as the
//! authorization endpoint does, with an empty `redirect_uri`: nothing is redirected anywhere.
//! Whatever the policy says, the user confirms on the page (with the code shown again) before
//! the device gets anything, and only that form post changes the grant: a GET never does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue, StatusCode};
use rand::Rng;
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::approval::{AuthorizationDecision, ConsentRequest};
use super::client_auth::authenticate;
use super::grant::{hash, random_token, split_scopes};
use super::page::{csrf_cookie, error_page, escape, html_response, scope_items, PAGE_STYLE};
use super::store::{DeviceGrant, DeviceSave, DeviceStatus};
use super::wire::{form_params, json_response, OAuthError, Params, DEVICE_CODE_GRANT};
use super::AuthorizationServer;
use crate::clock::now_secs;
use crate::sync::LockExt;

/// RFC 8628 §6.1: consonants only (no vowels, so no words), none easily confused.
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// 20^8 codes, about 34.6 bits: enough for a code that lives minutes and is typed once.
const USER_CODE_LENGTH: usize = 8;
/// Draws of a new user code when one collides with a live grant.
const USER_CODE_DRAWS: usize = 8;
const DEVICE_COOKIE_PREFIX: &str = "mcp_device_";
/// Longest client name shown.
const MAX_CLIENT_NAME_CHARS: usize = 100;

/// How device authorizations behave.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeviceSettings {
    /// Whether the grant is offered.
    pub(crate) enabled: bool,
    /// Wrong user codes taken per minute, in all, before the page stops looking codes up
    /// for the rest of the minute (RFC 8628 §5.1).
    pub(crate) wrong_codes_per_minute: u32,
    /// How long the user has to answer.
    pub(crate) ttl: Duration,
    /// The least time between two polls.
    pub(crate) interval: Duration,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            wrong_codes_per_minute: 60,
            ttl: Duration::from_secs(600),
            interval: Duration::from_secs(5),
        }
    }
}

#[derive(Serialize)]
struct DeviceAuthorizationResponse {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    expires_in: u64,
    interval: u64,
}

/// `POST /device_authorization` (RFC 8628 §3.1–3.2).
pub(super) async fn handle_authorization(
    State(server): State<AuthorizationServer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match authorize_device(&server, &headers, &body).await {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err(error) => {
            tracing::info!(code = error.code, description = %error.description, "device authorization refused");
            error.into_response()
        }
    }
}

async fn authorize_device(
    server: &AuthorizationServer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DeviceAuthorizationResponse, OAuthError> {
    let params = form_params(headers, body)?;
    let client = authenticate(server, headers, &params).await?;
    if !client.allows_grant(DEVICE_CODE_GRANT) {
        return Err(OAuthError::new(
            "unauthorized_client",
            "the client did not register the device_code grant",
        ));
    }
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
        .check_scopes(&client, &scopes)
        .map_err(|d| OAuthError::new("invalid_scope", d))?;
    let resource = server
        .resolve_resource(params.get("resource"))
        .map_err(|d| OAuthError::new("invalid_target", d))?;
    let settings = server.inner.config.device;
    // At least 1 s: `device_poll_interval` says so.
    let interval = settings.interval.as_secs();
    let device_code = random_token();
    let store = &server.inner.config.store;
    for _ in 0..USER_CODE_DRAWS {
        let user_code = new_user_code();
        let grant = DeviceGrant {
            client_id: client.client_id.clone(),
            client_name: client
                .metadata
                .client_name
                .as_ref()
                .map(|name| name.chars().take(MAX_CLIENT_NAME_CHARS).collect()),
            user_code: hash(&user_code),
            scopes: scopes.clone(),
            resource: resource.clone(),
            expires_at: now_secs() + settings.ttl.as_secs(),
            interval,
            last_poll: 0,
            status: DeviceStatus::Pending,
            family_id: random_token(),
        };
        let saved = store.save_device(hash(&device_code), grant).await?;
        if saved == DeviceSave::Full {
            return Err(OAuthError::new(
                "temporarily_unavailable",
                "too many device authorizations are waiting; try again in a few minutes",
            ));
        }
        if saved == DeviceSave::Saved {
            tracing::info!(client_id = %client.client_id, "device authorization started");
            let shown = display_user_code(&user_code);
            let verification_uri = server.verification_uri();
            let complete = url::form_urlencoded::Serializer::new(format!("{verification_uri}?"))
                .append_pair("user_code", &shown)
                .finish();
            return Ok(DeviceAuthorizationResponse {
                device_code,
                user_code: shown,
                verification_uri,
                verification_uri_complete: complete,
                expires_in: settings.ttl.as_secs(),
                interval,
            });
        }
    }
    Err(OAuthError::new(
        "temporarily_unavailable",
        "no free user code could be drawn; try again",
    ))
}

fn new_user_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..USER_CODE_LENGTH)
        .map(|_| USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())] as char)
        .collect()
}

/// A user code as people read it: `BCDF-GHJK`.
fn display_user_code(code: &str) -> String {
    let (first, second) = code.split_at(code.len() / 2);
    format!("{first}-{second}")
}

/// A typed user code as issued: case, dashes and spaces ignored (RFC 8628 §6.1). `None` for
/// anything that cannot be one.
pub(crate) fn normalize_user_code(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let well_formed =
        code.len() == USER_CODE_LENGTH && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    well_formed.then_some(code)
}

/// `GET /device`: the code entry form, or with `user_code` the question itself.
pub(super) async fn handle_page(
    State(server): State<AuthorizationServer>,
    headers: HeaderMap,
    extensions: http::Extensions,
    RawQuery(query): RawQuery,
) -> Response {
    let address = client_address(&server, &headers, &extensions);
    let query = query.unwrap_or_default();
    let Ok(params) = Params::parse(query.as_bytes()) else {
        return entry_page(&server, Some("The request repeats a parameter."));
    };
    match params.get("user_code") {
        Some(typed) => ask(&server, &headers, address, typed).await,
        None => entry_page(&server, None),
    }
}

/// `POST /device`: a typed code (then the question), or the answer to the question.
pub(super) async fn handle_post(
    State(server): State<AuthorizationServer>,
    headers: HeaderMap,
    extensions: http::Extensions,
    body: Bytes,
) -> Response {
    let address = client_address(&server, &headers, &extensions);
    let Ok(params) = form_params(&headers, &body) else {
        return error_page(StatusCode::BAD_REQUEST, "The form was not understood.");
    };
    if !super::authorize::same_origin(&server, &headers) {
        return error_page(StatusCode::FORBIDDEN, "The form came from another site.");
    }
    let typed = params.get("user_code").unwrap_or("");
    match params.get("decision") {
        None => ask(&server, &headers, address, typed).await,
        Some(decision) => {
            let approve = decision == "approve";
            answer(&server, &headers, address, &params, typed, approve).await
        }
    }
}

/// The device grant a typed code names, while it waits for an answer.
async fn pending_grant(
    server: &AuthorizationServer,
    address: Option<IpAddr>,
    typed: &str,
) -> Result<(String, DeviceGrant), Response> {
    if !server.inner.wrong_codes.allows(address) {
        return Err(too_many_wrong_codes());
    }
    let Some(code) = normalize_user_code(typed) else {
        server.inner.wrong_codes.count(address);
        return Err(entry_page(
            server,
            Some("That is not a code from a device. Check it and type it again."),
        ));
    };
    let found = match server
        .inner
        .config
        .store
        .device_by_user_code(hash(&code))
        .await
    {
        Ok(found) => found,
        Err(error) => {
            tracing::error!(%error, "device store failed");
            return Err(super::authorize::unavailable_page());
        }
    };
    match found {
        Some(grant) if grant.expires_at > now_secs() && grant.status == DeviceStatus::Pending => {
            Ok((code, grant))
        }
        _ => {
            server.inner.wrong_codes.count(address);
            Err(entry_page(
                server,
                Some("This code is unknown, has expired, or was already used. Start again on the device."),
            ))
        }
    }
}

/// Counts wrong user codes per minute, per client network and for the whole server (RFC 8628
/// §5.1): past either limit, codes are not looked up until the minute is over. Per network
/// (an IPv4 /24, an IPv6 /48: what one party gets cheaply), so one guesser holds only its
/// network off; in all, ten networks' worth, so that guessers everywhere at once need, among
/// the 20^8 codes, about 15 days per hit with 2,000 codes waiting (the memory store's most)
/// and years at a usual load.
#[derive(Debug)]
pub(crate) struct WrongCodes {
    per_address: u32,
    overall: u32,
    window: std::sync::Mutex<WrongCodeWindow>,
}

/// Addresses counted in one minute at most; past it, new addresses count only overall.
const MAX_COUNTED_ADDRESSES: usize = 10_000;

#[derive(Debug, Default)]
struct WrongCodeWindow {
    minute: u64,
    overall: u32,
    /// `None` stands for the requests whose address is unknown: they share one count.
    by_address: HashMap<Option<u128>, u32>,
}

impl WrongCodeWindow {
    fn for_minute(&mut self, minute: u64) -> &mut Self {
        if self.minute != minute {
            *self = Self {
                minute,
                ..Self::default()
            };
        }
        self
    }
}

/// The network an address belongs to, as one party gets them cheaply: an IPv4 /24, an IPv6
/// /48.
fn address_key(address: Option<IpAddr>) -> Option<u128> {
    let v4 = |v4: std::net::Ipv4Addr| u128::from(u32::from(v4) >> 8);
    match address? {
        IpAddr::V4(address) => Some(v4(address)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(address) => Some(v4(address)),
            None => Some(u128::from(v6) >> 80 | 1 << 127),
        },
    }
}

impl WrongCodes {
    pub(crate) fn new(per_address: u32) -> Self {
        Self {
            per_address,
            overall: per_address.saturating_mul(10),
            window: std::sync::Mutex::new(WrongCodeWindow::default()),
        }
    }

    fn allows(&self, address: Option<IpAddr>) -> bool {
        let mut window = self.window.locked();
        let window = window.for_minute(now_secs() / 60);
        let from_address = window.by_address.get(&address_key(address)).copied();
        window.overall < self.overall && from_address.unwrap_or(0) < self.per_address
    }

    fn count(&self, address: Option<IpAddr>) {
        let mut window = self.window.locked();
        let window = window.for_minute(now_secs() / 60);
        window.overall = window.overall.saturating_add(1);
        let key = address_key(address);
        if window.by_address.len() < MAX_COUNTED_ADDRESSES || window.by_address.contains_key(&key) {
            let count = window.by_address.entry(key).or_default();
            *count = count.saturating_add(1);
        }
    }
}

/// The last address of a forwarding header's value (`198.51.100.9, 203.0.113.7`).
fn last_forwarded_address(value: &str) -> Option<IpAddr> {
    value.rsplit(',').next()?.trim().parse().ok()
}

/// The address the request came from: the trusted proxy's header when one is configured
/// (its last entry, the one that proxy added), else the connection's peer when the server
/// was started with `into_make_service_with_connect_info`.
pub(super) fn client_address(
    server: &AuthorizationServer,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Option<IpAddr> {
    if let Some(name) = &server.inner.config.client_address_header {
        let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
        let address = last_forwarded_address(value);
        if address.is_none() {
            tracing::warn!(
                header = %name,
                "the client address header holds no plain IP address at its end; such \
                 requests share one count of wrong device codes"
            );
        }
        return address;
    }
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

fn too_many_wrong_codes() -> Response {
    tracing::warn!("too many wrong device codes this minute; lookups paused");
    let mut response = error_page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many wrong codes were typed in the last minute. Wait a minute and try again.",
    );
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("60"));
    response
}

fn consent_request(grant: &DeviceGrant) -> ConsentRequest {
    ConsentRequest {
        client_id: grant.client_id.clone(),
        client_name: grant.client_name.clone(),
        redirect_uri: String::new(),
        scopes: grant.scopes.clone(),
        resource: grant.resource.clone(),
    }
}

async fn ask(
    server: &AuthorizationServer,
    headers: &HeaderMap,
    address: Option<IpAddr>,
    typed: &str,
) -> Response {
    let (code, grant) = match pending_grant(server, address, typed).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let decision = server
        .inner
        .approval
        .decide(&consent_request(&grant), headers)
        .await;
    match decision {
        // Always asked, even where the policy would approve at once: the code may be someone
        // else's, typed in on their say-so (RFC 8628 §5.4), and a link with the code in it may
        // be opened by a preview bot. Only the answer posted from the page changes anything.
        AuthorizationDecision::Approve { subject } | AuthorizationDecision::AskUser { subject } => {
            // Only the operator vouches for a name; anyone can register one.
            let vouched = matches!(
                server.inner.config.store.client(&grant.client_id).await,
                Ok(Some(client)) if client.pre_registered
            );
            question_page(server, &code, &grant, &subject, vouched)
        }
        AuthorizationDecision::Deny => error_page(
            StatusCode::FORBIDDEN,
            "You may not approve this device. Sign in as the right user and open the page again.",
        ),
    }
}

async fn answer(
    server: &AuthorizationServer,
    headers: &HeaderMap,
    address: Option<IpAddr>,
    params: &Params,
    typed: &str,
    approve: bool,
) -> Response {
    let (code, grant) = match pending_grant(server, address, typed).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    // The page's token, in the form and in the cookie only that page set: a form posted from
    // elsewhere cannot carry both.
    let form_csrf = params.get("csrf").unwrap_or("");
    let cookie_csrf = super::authorize::cookie(headers, &format!("{DEVICE_COOKIE_PREFIX}{code}"))
        .unwrap_or_default();
    let csrf_ok =
        !form_csrf.is_empty() && bool::from(hash(form_csrf).0.ct_eq(&hash(&cookie_csrf).0));
    if !csrf_ok {
        return error_page(StatusCode::FORBIDDEN, "The form could not be verified.");
    }
    if !approve {
        return record(server, &code, DeviceStatus::Denied).await;
    }
    // The policy is asked again: who approves is whoever it says is here now.
    match server
        .inner
        .approval
        .decide(&consent_request(&grant), headers)
        .await
    {
        AuthorizationDecision::Approve { subject } | AuthorizationDecision::AskUser { subject } => {
            record(server, &code, DeviceStatus::Approved { subject }).await
        }
        AuthorizationDecision::Deny => record(server, &code, DeviceStatus::Denied).await,
    }
}

async fn record(server: &AuthorizationServer, code: &str, answer: DeviceStatus) -> Response {
    let approved = matches!(answer, DeviceStatus::Approved { .. });
    match server
        .inner
        .config
        .store
        .answer_device(hash(code), answer, now_secs())
        .await
    {
        Ok(true) if approved => {
            tracing::info!("device authorization approved");
            done_page("Approved. You can return to your device; it continues on its own.")
        }
        Ok(true) => {
            tracing::info!("device authorization denied");
            done_page("Denied. The device gets no access.")
        }
        Ok(false) => entry_page(
            server,
            Some("This code has expired or was already used. Start again on the device."),
        ),
        Err(error) => {
            tracing::error!(%error, "device store failed");
            super::authorize::unavailable_page()
        }
    }
}

fn page_path(server: &AuthorizationServer) -> String {
    format!(
        "{}/device",
        server.inner.config.issuer.path().trim_end_matches('/')
    )
}

/// The code field: large, spaced, in capitals.
const INPUT_STYLE: &str = "input{font-size:1.25rem;letter-spacing:.1em;text-transform:uppercase}";

fn with_csp(mut response: Response) -> Response {
    response.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

fn entry_page(server: &AuthorizationServer, problem: Option<&str>) -> Response {
    let problem = problem
        .map(|p| format!(r#"<p id="error">{}</p>"#, escape(p)))
        .unwrap_or_default();
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Connect a device</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{PAGE_STYLE}{INPUT_STYLE}</style>
</head><body>
<h1>Connect a device</h1>
{problem}
<form method="post" action="{action}">
<label for="user_code">Type the code your device shows:</label><br>
<input id="user_code" name="user_code" autocomplete="off" autocapitalize="characters" spellcheck="false" required>
<button type="submit" id="continue">Continue</button>
</form>
</body></html>"#,
        action = escape(&page_path(server)),
    );
    let status = if problem.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    with_csp(html_response(status, html))
}

fn question_page(
    server: &AuthorizationServer,
    code: &str,
    grant: &DeviceGrant,
    subject: &str,
    vouched: bool,
) -> Response {
    let csrf = random_token();
    let unverified = if vouched {
        String::new()
    } else {
        format!(
            r#"<p id="unverified">The application named itself: this server has not checked that it is what its name says (its id is <code>{}</code>).</p>"#,
            escape(&grant.client_id)
        )
    };
    let name = grant
        .client_name
        .clone()
        .unwrap_or_else(|| grant.client_id.clone());
    let scopes = scope_items(&grant.scopes);
    let shown = display_user_code(code);
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize {name}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{PAGE_STYLE}{INPUT_STYLE}</style>
</head><body>
<h1>Authorize <span id="client-name">{name}</span> on a device?</h1>
{unverified}
<p>Approve only if your device shows the code <strong id="user-code">{shown}</strong> and you started this yourself.</p>
<p>It will be able to act as <strong>{subject}</strong> on <code id="resource">{resource}</code> with these scopes:</p>
<ul id="scopes">{scopes}</ul>
<form method="post" action="{action}">
<input type="hidden" name="user_code" value="{shown}">
<input type="hidden" name="csrf" value="{csrf}">
<button type="submit" name="decision" value="approve" id="approve">Approve</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>
</body></html>"#,
        name = escape(&name),
        subject = escape(subject),
        resource = escape(&grant.resource),
        action = escape(&page_path(server)),
        csrf = escape(&csrf),
    );
    let cookie = csrf_cookie(
        &format!("{DEVICE_COOKIE_PREFIX}{code}"),
        &csrf,
        &page_path(server),
        grant.expires_at.saturating_sub(now_secs()),
        server.inner.config.issuer.scheme() == "https",
    );
    let mut response = with_csp(html_response(StatusCode::OK, html));
    if let Some(cookie) = cookie {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

fn done_page(message: &str) -> Response {
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Device authorization</title><style>{PAGE_STYLE}{INPUT_STYLE}</style></head>
<body><h1>Device authorization</h1><p id="result">{}</p></body></html>"#,
        escape(message)
    );
    with_csp(html_response(StatusCode::OK, html))
}

impl AuthorizationServer {
    /// Where users go to type a device's code.
    pub(crate) fn verification_uri(&self) -> String {
        format!("{}/device", self.issuer())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    #[test]
    fn addresses_count_by_ipv4_24_and_ipv6_48() {
        let key = |text: &str| address_key(Some(text.parse().unwrap()));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:ffff::9"));
        assert_ne!(key("2001:db8:1::1"), key("2001:db8:2::1"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_eq!(key("192.0.2.1"), key("192.0.2.200"));
        assert_ne!(key("192.0.2.1"), key("192.0.3.1"));
        // An IPv6 network never counts as an IPv4 one.
        assert_ne!(
            address_key(Some(IpAddr::V6(Ipv6Addr::from(1u128 << 80)))),
            key("0.0.1.0")
        );
        assert_eq!(address_key(None), None);
        assert_eq!(
            last_forwarded_address("198.51.100.9, 203.0.113.7 "),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(last_forwarded_address("203.0.113.7, unknown"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_forwarding_header_reads_or_gives_none(value in ".{0,80}") {
            if let Some(address) = last_forwarded_address(&value) {
                let last = value.rsplit(',').next().unwrap().trim();
                proptest::prop_assert_eq!(address.to_string().parse::<IpAddr>().ok(), last.parse().ok());
            }
        }
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn user_codes_are_normalized() {
        assert_eq!(
            normalize_user_code("bcdf-ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalize_user_code(" BCDF GHJK ").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(normalize_user_code("BCDFGHJ"), None);
        assert_eq!(
            normalize_user_code("ABCDEFGH"),
            None,
            "vowels are never issued"
        );
        assert_eq!(normalize_user_code("BCDF-GHJK-L"), None);
    }

    #[test]
    fn new_user_codes_are_well_formed() {
        for _ in 0..100 {
            let code = new_user_code();
            assert_eq!(normalize_user_code(&code).as_deref(), Some(code.as_str()));
        }
    }

    proptest! {
        #[test]
        fn normalizing_never_panics_and_yields_issuable_codes(typed in ".{0,80}") {
            if let Some(code) = normalize_user_code(&typed) {
                prop_assert_eq!(code.len(), USER_CODE_LENGTH);
                prop_assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
            }
        }
    }
}
