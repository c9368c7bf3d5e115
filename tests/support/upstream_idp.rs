//! An upstream identity provider double on loopback, for the embedded authorization server's
//! upstream sign-in: an OpenID Connect provider (discovery, `/authorize` that signs the user in
//! at once, `/token` checking client secret, PKCE and redirect URI, RS256 ID tokens, `/jwks`)
//! and a GitHub-shaped OAuth provider (`/login/oauth/*`, `/user`). A [`Twist`] makes it
//! hostile; a [`Browser`] walks the redirects with a cookie jar.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use url::Url;

use super::jwt_issuer::{now, sign, EC_PRIVATE, RSA_PRIVATE};
use super::{bind, send, serve_on, Answer};

pub const CLIENT_ID: &str = "mcp-authorization-server";
pub const CLIENT_SECRET: &str = "upstream-client-secret";
/// The upstream tokens: a test checks they never reach an MCP client.
pub const UPSTREAM_ACCESS_TOKEN: &str = "upstream-access-token-7f3a";
pub const UPSTREAM_REFRESH_TOKEN: &str = "upstream-refresh-token-9c1e";

/// How the provider misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twist {
    None,
    WrongNonce,
    WrongIssuer,
    WrongAudience,
    Expired,
    Unsigned,
    /// Signed with a key the JWKS does not hold.
    UnknownKey,
    /// The authorization response names another issuer (RFC 9207 mix-up).
    CallbackIssuer,
    /// The authorization response carries `error=access_denied`.
    UserRefuses,
    /// The access token expires within the refresh margin.
    ShortLived,
}

#[derive(Debug, Clone)]
struct Pending {
    redirect_uri: String,
    nonce: Option<String>,
    challenge: String,
}

struct Inner {
    base: String,
    twist: Mutex<Twist>,
    /// The user who signs in next: `sub`, `email`.
    user: Mutex<(String, String)>,
    codes: Mutex<HashMap<String, Pending>>,
    /// Each `/authorize` request's parameters, as received.
    pub authorize_requests: Mutex<Vec<HashMap<String, String>>>,
    /// Each `/token` request's form, as received (secrets included: tests only).
    pub token_requests: Mutex<Vec<HashMap<String, String>>>,
    refreshes: Mutex<usize>,
}

/// The provider double.
#[derive(Clone)]
pub struct Idp(Arc<Inner>);

impl Idp {
    pub async fn start() -> Self {
        let (listener, base) = bind().await;
        let idp = Self(Arc::new(Inner {
            base: base.clone(),
            twist: Mutex::new(Twist::None),
            user: Mutex::new(("alice".into(), "alice@example.com".into())),
            codes: Mutex::default(),
            authorize_requests: Mutex::default(),
            token_requests: Mutex::default(),
            refreshes: Mutex::new(0),
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(github_token))
            .route("/user", get(github_user))
            .with_state(idp.clone());
        serve_on(listener, app);
        idp
    }

    pub fn issuer(&self) -> &str {
        &self.0.base
    }

    pub fn twist(&self, twist: Twist) {
        *self.0.twist.lock().unwrap() = twist;
    }

    pub fn next_user(&self, sub: &str, email: &str) {
        *self.0.user.lock().unwrap() = (sub.into(), email.into());
    }

    pub fn authorize_requests(&self) -> Vec<HashMap<String, String>> {
        self.0.authorize_requests.lock().unwrap().clone()
    }

    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.0.token_requests.lock().unwrap().clone()
    }

    pub fn refreshes(&self) -> usize {
        *self.0.refreshes.lock().unwrap()
    }

    fn id_token(&self, nonce: Option<&str>) -> String {
        let twist = *self.0.twist.lock().unwrap();
        let (sub, email) = self.0.user.lock().unwrap().clone();
        let mut claims = json!({
            "iss": self.0.base, "aud": CLIENT_ID, "sub": sub, "email": email,
            "email_verified": true, "name": "Alice Example",
            "nonce": nonce, "iat": now(), "exp": now() + 300,
        });
        match twist {
            Twist::WrongNonce => claims["nonce"] = json!("another-sign-in"),
            Twist::WrongIssuer => claims["iss"] = json!("https://evil.example"),
            Twist::WrongAudience => claims["aud"] = json!("someone-else"),
            Twist::Expired => {
                claims["iat"] = json!(now() - 4000);
                claims["exp"] = json!(now() - 3600);
            }
            _ => {}
        }
        match twist {
            Twist::Unsigned => {
                let encode = |v: &Value| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
                };
                format!("{}.{}.", encode(&json!({"alg": "none"})), encode(&claims))
            }
            // The EC fixture key is not in this provider's JWKS.
            Twist::UnknownKey => sign(&claims, Algorithm::ES256, Some("rsa-1")),
            _ => sign(&claims, Algorithm::RS256, Some("rsa-1")),
        }
    }
}

async fn discovery(State(idp): State<Idp>) -> Json<Value> {
    let base = &idp.0.base;
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }))
}

async fn jwks() -> Json<Value> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("rsa-1".into());
    let _ = EC_PRIVATE;
    Json(json!({ "keys": [jwk] }))
}

/// Signs the configured user in at once and sends the browser back.
async fn authorize(
    State(idp): State<Idp>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    idp.0
        .authorize_requests
        .lock()
        .unwrap()
        .push(params.clone());
    if params.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return (StatusCode::BAD_REQUEST, "unknown client").into_response();
    }
    let redirect_uri = params["redirect_uri"].clone();
    let mut back = Url::parse(&redirect_uri).unwrap();
    let twist = *idp.0.twist.lock().unwrap();
    if twist == Twist::UserRefuses {
        back.query_pairs_mut().append_pair("error", "access_denied");
    } else {
        let code = format!("code-{}", idp.0.codes.lock().unwrap().len());
        idp.0.codes.lock().unwrap().insert(
            code.clone(),
            Pending {
                redirect_uri,
                nonce: params.get("nonce").cloned(),
                challenge: params.get("code_challenge").cloned().unwrap_or_default(),
            },
        );
        back.query_pairs_mut().append_pair("code", &code);
    }
    if let Some(state) = params.get("state") {
        back.query_pairs_mut().append_pair("state", state);
    }
    let iss = if twist == Twist::CallbackIssuer {
        "https://evil.example".to_owned()
    } else {
        idp.0.base.clone()
    };
    if !params.contains_key("nonce") {
        // The GitHub-shaped endpoints send no `iss`.
    } else {
        back.query_pairs_mut().append_pair("iss", &iss);
    }
    Redirect::to(back.as_str()).into_response()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.strip_prefix("Basic ")?)
        .ok()?;
    let (id, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((decode(id), decode(secret)))
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

/// Takes a code once, checking the redirect URI and the PKCE verifier.
fn redeem(idp: &Idp, form: &HashMap<String, String>) -> Result<Pending, &'static str> {
    let code = form.get("code").ok_or("invalid_request")?;
    let pending = idp
        .0
        .codes
        .lock()
        .unwrap()
        .remove(code)
        .ok_or("invalid_grant")?;
    if form.get("redirect_uri") != Some(&pending.redirect_uri) {
        return Err("invalid_grant");
    }
    let verifier = form.get("code_verifier").ok_or("invalid_grant")?;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    if challenge != pending.challenge {
        return Err("invalid_grant");
    }
    Ok(pending)
}

async fn token(
    State(idp): State<Idp>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    idp.0.token_requests.lock().unwrap().push(form.clone());
    if basic_credentials(&headers) != Some((CLIENT_ID.into(), CLIENT_SECRET.into())) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => match redeem(&idp, &form) {
            Ok(pending) => Json(json!({
                "access_token": UPSTREAM_ACCESS_TOKEN,
                "token_type": "Bearer",
                "expires_in": if *idp.0.twist.lock().unwrap() == Twist::ShortLived { 30 } else { 3600 },
                "refresh_token": UPSTREAM_REFRESH_TOKEN,
                "id_token": idp.id_token(pending.nonce.as_deref()),
            }))
            .into_response(),
            Err(error) => oauth_error(StatusCode::BAD_REQUEST, error),
        },
        Some("refresh_token") if form.get("refresh_token").map(String::as_str) == Some(UPSTREAM_REFRESH_TOKEN) => {
            *idp.0.refreshes.lock().unwrap() += 1;
            Json(json!({
                "access_token": format!("{UPSTREAM_ACCESS_TOKEN}-refreshed"),
                "token_type": "Bearer",
                "expires_in": 3600,
            }))
            .into_response()
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
    }
}

/// GitHub's token endpoint: credentials in the form, errors with status 200.
async fn github_token(
    State(idp): State<Idp>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    idp.0.token_requests.lock().unwrap().push(form.clone());
    let wants_json = headers
        .get("accept")
        .is_some_and(|a| a.to_str().unwrap_or("").contains("json"));
    let body = if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        json!({"error": "incorrect_client_credentials"})
    } else {
        match redeem(&idp, &form) {
            Ok(_) => json!({
                "access_token": UPSTREAM_ACCESS_TOKEN,
                "token_type": "bearer",
                "scope": "read:user,user:email",
            }),
            Err(_) => json!({
                "error": "bad_verification_code",
                "error_description": "The code passed is incorrect or expired.",
            }),
        }
    };
    if !wants_json {
        return (StatusCode::OK, "access_token=unreadable&token_type=bearer").into_response();
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// GitHub's user API: a Bearer token and a User-Agent, or 403.
async fn github_user(State(idp): State<Idp>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if headers.get("user-agent").is_none() {
        return (
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules.",
        )
            .into_response();
    }
    if bearer.as_deref() != Some(&format!("Bearer {UPSTREAM_ACCESS_TOKEN}")) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    let (sub, _) = idp.0.user.lock().unwrap().clone();
    let id: u64 = sub.bytes().map(u64::from).sum();
    Json(json!({"id": id, "login": sub, "name": null, "email": null})).into_response()
}

/// A browser: follows nothing on its own, keeps cookies per host and port (paths ignored,
/// `Max-Age=0` honoured), and sends them back.
#[derive(Default)]
pub struct Browser {
    cookies: HashMap<(String, String), String>,
}

impl Browser {
    fn origin(url: &Url) -> String {
        format!(
            "{}:{}",
            url.host_str().unwrap(),
            url.port_or_known_default().unwrap()
        )
    }

    fn cookie_header(&self, url: &Url) -> String {
        let origin = Self::origin(url);
        self.cookies
            .iter()
            .filter(|((o, _), _)| *o == origin)
            .map(|((_, name), value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, url: &Url, answer: &Answer) {
        let origin = Self::origin(url);
        for set in answer.headers.get_all("set-cookie") {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let lower = attributes.to_ascii_lowercase();
            if lower.contains("max-age=0") || lower.contains("expires=thu, 01 jan 1970") {
                self.cookies.remove(&(origin.clone(), name.to_owned()));
            } else {
                self.cookies
                    .insert((origin.clone(), name.to_owned()), value.to_owned());
            }
        }
    }

    /// Drops the cookies whose names start with `prefix` (a session that ended).
    pub fn forget_cookies(&mut self, prefix: &str) {
        self.cookies
            .retain(|(_, name), _| !name.starts_with(prefix));
    }

    pub fn has_cookie(&self, prefix: &str) -> bool {
        self.cookies
            .keys()
            .any(|(_, name)| name.starts_with(prefix))
    }

    pub fn cookie_names(&self) -> Vec<String> {
        self.cookies.keys().map(|(_, n)| n.clone()).collect()
    }

    /// Sets a cookie for `url`'s host and port, as a sign-in there would have.
    pub fn set_cookie(&mut self, url: &str, name: &str, value: &str) {
        let origin = Self::origin(&Url::parse(url).unwrap());
        self.cookies
            .insert((origin, name.to_owned()), value.to_owned());
    }

    /// Posts `fields` as a form to `url`, from `url`'s own origin.
    pub async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> Answer {
        let parsed = Url::parse(url).unwrap();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", parsed.origin().ascii_serialization())
            .header("cookie", self.cookie_header(&parsed))
            .body(Full::from(body))
            .unwrap();
        let answer = send(request).await;
        self.keep(&parsed, &answer);
        answer
    }

    pub async fn get(&mut self, url: &str) -> Answer {
        let parsed = Url::parse(url).unwrap();
        let request = Request::get(url)
            .header("cookie", self.cookie_header(&parsed))
            .body(Full::<Bytes>::default())
            .unwrap();
        let answer = send(request).await;
        self.keep(&parsed, &answer);
        answer
    }

    /// Posts the consent page's form with `decision`, from the page's origin.
    pub async fn answer_consent(
        &mut self,
        page_url: &str,
        page: &Answer,
        decision: &str,
    ) -> Answer {
        let url = Url::parse(page_url).unwrap();
        let field = |name: &str| super::auth_server::hidden_field(page, name);
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("request", &field("request"))
            .append_pair("csrf", &field("csrf"))
            .append_pair("decision", decision)
            .finish();
        let action = format!("{}{}", url.origin().ascii_serialization(), url.path());
        let request = Request::post(&action)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", url.origin().ascii_serialization())
            .header("cookie", self.cookie_header(&url))
            .body(Full::from(body))
            .unwrap();
        let answer = send(request).await;
        self.keep(&url, &answer);
        answer
    }

    /// Follows redirects (GET) from `answer` while they stay off `stop_at`'s origin; returns
    /// the last answer and the URL it came from.
    pub async fn follow(&mut self, mut answer: Answer, stop_at: &str) -> (Answer, String) {
        let stop = Url::parse(stop_at).unwrap();
        let mut url = String::new();
        for _ in 0..10 {
            let Some(location) = answer.headers.get("location") else {
                return (answer, url);
            };
            // Relative locations (oidc-provider sends them) resolve against the last URL.
            let location = location.to_str().unwrap();
            let next = Url::parse(location)
                .or_else(|_| Url::parse(&url).unwrap().join(location))
                .unwrap();
            if next.origin() == stop.origin() {
                return (answer, url);
            }
            url = next.to_string();
            answer = self.get(&url).await;
        }
        panic!("too many redirects");
    }
}

/// One authorization of `client` at `base` for `resource` in `browser`: our consent page
/// (which says the user signs in upstream next), approved, then the provider and back. The
/// last answer (the redirect to the MCP client, or an error page) and the PKCE verifier.
pub async fn answer_through_upstream(
    base: &str,
    resource: &str,
    client: &str,
    browser: &mut Browser,
) -> (Answer, String) {
    let (verifier, challenge) = super::auth_server::pkce();
    let mut url = url::Url::parse(&format!("{base}/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", super::auth_server::REDIRECT)
        .append_pair("state", "st4te")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", resource);
    let page = browser.get(url.as_str()).await;
    assert_eq!(page.status, http::StatusCode::OK, "{}", page.text());
    assert!(
        page.text().contains("You will sign in with"),
        "{}",
        page.text()
    );
    let approved = browser.answer_consent(url.as_str(), &page, "approve").await;
    let (answer, _) = browser.follow(approved, super::auth_server::REDIRECT).await;
    (answer, verifier)
}

/// [`answer_through_upstream`] to the end: the MCP client's token response.
pub async fn authorize_through_upstream(
    base: &str,
    resource: &str,
    client: &str,
    browser: &mut Browser,
) -> Value {
    let (answer, verifier) = answer_through_upstream(base, resource, client, browser).await;
    let location = answer
        .location()
        .unwrap_or_else(|| panic!("{} {}", answer.status, answer.text()));
    let code = super::query(&location, "code").expect("a code");
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("code_verifier", &verifier)
        .append_pair("redirect_uri", super::auth_server::REDIRECT)
        .append_pair("client_id", client)
        .append_pair("resource", resource)
        .finish();
    let tokens = super::send(
        http::Request::post(format!("{base}/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::from(body))
            .unwrap(),
    )
    .await;
    assert_eq!(tokens.status, http::StatusCode::OK, "{}", tokens.text());
    tokens.json()
}

/// A public client registered dynamically at `base`, as a desktop app registers.
pub async fn register_public_client(base: &str) -> String {
    let answer = send(super::json_request(
        &format!("{base}/register"),
        &json!({
            "client_name": "A desktop app",
            "redirect_uris": [super::auth_server::REDIRECT],
            "token_endpoint_auth_method": "none",
        }),
    ))
    .await;
    answer.json()["client_id"].as_str().unwrap().to_owned()
}

/// The claims of a JWT, unchecked.
pub fn jwt_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}
