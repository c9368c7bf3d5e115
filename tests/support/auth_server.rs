//! The embedded authorization server on loopback, and a client of its endpoints over real HTTP.

use base64::Engine;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower_mcp_oauth::authorization_server::{
    AuthorizationServer, AuthorizationServerConfig, AutoApprove,
};
use tower_mcp_oauth::metadata::ClientMetadata;
use url::Url;

use super::{bind, get, json_request, query, send, serve_on, Answer};

/// The redirect URI clients register; nothing listens there, the tests read the redirect.
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// A running authorization server: issuer `base`, one resource `{base}/mcp`.
pub struct Server {
    pub base: String,
    pub resource: String,
    pub server: AuthorizationServer,
}

impl Server {
    /// Scopes `mcp:tools` and `mcp:admin`, auto-approved for `alice`, then what `configure`
    /// changes.
    pub async fn start(
        configure: impl FnOnce(AuthorizationServerConfig) -> AuthorizationServerConfig,
    ) -> Self {
        Self::start_with(configure, |server, _| server.router()).await
    }

    /// As [`Server::start`], serving the router `app` makes from the server and the resource
    /// (the server's own routes and a protected resource beside them, say).
    pub async fn start_with(
        configure: impl FnOnce(AuthorizationServerConfig) -> AuthorizationServerConfig,
        app: impl FnOnce(&AuthorizationServer, &str) -> axum::Router,
    ) -> Self {
        let (listener, base) = bind().await;
        let resource = format!("{base}/mcp");
        let config = AuthorizationServerConfig::new(&base)
            .unwrap()
            .resource(&resource)
            .scopes(["mcp:tools", "mcp:admin"])
            .approval_policy(AutoApprove::new("alice"));
        let server = AuthorizationServer::new(configure(config)).unwrap();
        serve_on(listener, app(&server, &resource));
        Self {
            base,
            resource,
            server,
        }
    }

    /// A form POST to `path`, with HTTP Basic client authentication when `basic` is given.
    pub fn form_request(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Request<Full<Bytes>> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let mut request = Request::post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some((id, secret)) = basic {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            request = request.header("authorization", format!("Basic {encoded}"));
        }
        request.body(Full::from(body)).unwrap()
    }

    pub async fn post_form(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Answer {
        send(self.form_request(path, pairs, basic)).await
    }

    /// A dynamic client registration request for `metadata`.
    pub fn register_request(&self, metadata: &Value) -> Request<Full<Bytes>> {
        json_request(&format!("{}/register", self.base), metadata)
    }

    pub async fn register(&self, metadata: Value) -> Answer {
        send(self.register_request(&metadata)).await
    }

    pub async fn public_client(&self) -> String {
        let answer = self
            .register(json!({
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "client_name": "test client",
            }))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
        answer.json()["client_id"].as_str().unwrap().to_owned()
    }

    pub async fn confidential_client(&self, method: &str) -> (String, String) {
        let answer = self
            .register(json!({
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": method,
                "grant_types": ["authorization_code", "refresh_token"],
            }))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
        let json = answer.json();
        (
            json["client_id"].as_str().unwrap().to_owned(),
            json["client_secret"].as_str().unwrap().to_owned(),
        )
    }

    /// An authorization request to `redirect_uri` with `state`, then the `extra` parameters.
    pub fn authorize_url_to(
        &self,
        client_id: &str,
        redirect_uri: &str,
        state: &str,
        challenge: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let mut url = Url::parse(&format!("{}/authorize", self.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &self.resource);
        for (name, value) in extra {
            url.query_pairs_mut().append_pair(name, value);
        }
        url.to_string()
    }

    /// An authorization request to [`REDIRECT`] with state `st4te`.
    pub fn authorize_url(
        &self,
        client_id: &str,
        challenge: &str,
        extra: &[(&str, &str)],
    ) -> String {
        self.authorize_url_to(client_id, REDIRECT, "st4te", challenge, extra)
    }

    /// Authorizes `client_id` and returns the code and its verifier.
    pub async fn code(&self, client_id: &str, scope: &str) -> (String, String) {
        let (verifier, challenge) = pkce();
        let answer = get(&self.authorize_url(client_id, &challenge, &[("scope", scope)])).await;
        assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.text());
        let location = answer.location().unwrap();
        assert_eq!(query(&location, "state").as_deref(), Some("st4te"));
        assert_eq!(query(&location, "iss").as_deref(), Some(self.base.as_str()));
        (query(&location, "code").expect("a code"), verifier)
    }

    pub async fn exchange(&self, client_id: &str, code: &str, verifier: &str) -> Answer {
        let rest = [
            ("redirect_uri", REDIRECT),
            ("client_id", client_id),
            ("resource", &self.resource),
        ];
        self.post_form("/token", &code_grant(code, verifier, &rest), None)
            .await
    }

    pub async fn tokens(&self, client_id: &str) -> Value {
        let (code, verifier) = self.code(client_id, "mcp:tools").await;
        let answer = self.exchange(client_id, &code, &verifier).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(answer.headers["cache-control"], "no-store");
        answer.json()
    }

    pub async fn refresh(&self, client_id: &str, refresh_token: &str) -> Answer {
        self.refresh_with(client_id, refresh_token, &[]).await
    }

    /// A refresh request with `extra` parameters (`scope`, `resource`).
    pub async fn refresh_with(
        &self,
        client_id: &str,
        refresh_token: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut pairs = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ];
        pairs.extend_from_slice(extra);
        self.post_form("/token", &pairs, None).await
    }

    /// The answer "approve" to a consent page (its cookie, request id and CSRF token), posted
    /// from the server's own origin as its form would be.
    pub fn approve_request(
        &self,
        (cookie, request, csrf): (String, String, String),
    ) -> Request<Full<Bytes>> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("request", &request)
            .append_pair("csrf", &csrf)
            .append_pair("decision", "approve")
            .finish();
        Request::post(format!("{}/authorize", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie)
            .header("origin", self.base.as_str())
            .body(Full::from(body))
            .unwrap()
    }

    pub async fn approve(&self, form: (String, String, String)) -> Answer {
        send(self.approve_request(form)).await
    }

    /// A confidential client registered by the operator, as a resource server would be.
    pub async fn operator_client(&self) -> (String, String) {
        let (id, secret) = self
            .server
            .register_confidential_client(ClientMetadata {
                grant_types: vec!["client_credentials".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        (id, secret.expose().to_owned())
    }

    #[cfg(feature = "server")]
    pub async fn introspector(&self) -> tower_mcp_oauth::server::IntrospectionVerifier {
        let (id, secret) = self.operator_client().await;
        tower_mcp_oauth::server::IntrospectionVerifier::new(
            &format!("{}/introspect", self.base),
            id,
            secret,
            &self.resource,
        )
        .unwrap()
    }
}

/// The form redeeming `code` with its PKCE `verifier`, then the `rest` of the parameters.
pub fn code_grant<'a>(
    code: &'a str,
    verifier: &'a str,
    rest: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", verifier),
    ];
    pairs.extend_from_slice(rest);
    pairs
}

/// A fresh PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = format!("{}{}", "v".repeat(20), rand_suffix());
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&verifier));
    (verifier, challenge)
}

/// 32 digits, unique in this process and unlikely in another.
fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:032}",
        N.fetch_add(1, Ordering::Relaxed) + std::process::id() as u64 * 1_000_000
    )
}

/// The consent page's cookie, request id and CSRF token.
pub fn consent_form(page: &Answer) -> (String, String, String) {
    (
        page_cookie(page),
        hidden_field(page, "request"),
        hidden_field(page, "csrf"),
    )
}

/// The `name=value` of the cookie a page set.
fn page_cookie(page: &Answer) -> String {
    page.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The value of a page's hidden form field `name`.
pub fn hidden_field(page: &Answer, name: &str) -> String {
    hidden_field_in(&page.text(), name)
}

/// The value of the hidden form field `name` in `html`.
pub fn hidden_field_in(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap() + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// The device grant's `grant_type`.
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

impl Server {
    /// A public client registered for the device grant (no redirect URI).
    pub async fn device_client(&self) -> String {
        let answer = self
            .register(json!({
                "token_endpoint_auth_method": "none",
                "grant_types": [DEVICE_GRANT, "refresh_token"],
                "client_name": "a device",
            }))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
        answer.json()["client_id"].as_str().unwrap().to_owned()
    }

    /// Starts a device authorization for `client_id`.
    pub async fn start_device(&self, client_id: &str, scope: &str) -> Answer {
        self.post_form(
            "/device_authorization",
            &[("client_id", client_id), ("scope", scope)],
            None,
        )
        .await
    }

    /// One poll of the token endpoint with `device_code`.
    pub async fn poll_device(&self, client_id: &str, device_code: &str) -> Answer {
        self.post_form(
            "/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("device_code", device_code),
                ("client_id", client_id),
            ],
            None,
        )
        .await
    }
}

/// What a person does on the verification page `base/device`: types `user_code`, then
/// answers the question (`approve` or `deny`) with the page's cookie and CSRF token, from the
/// page's own origin. Returns the question page and the answer's page.
pub async fn answer_device_page(base: &str, user_code: &str, decision: &str) -> (Answer, Answer) {
    answer_device_page_at(base, base, user_code, decision).await
}

/// As [`answer_device_page`], at the replica `base` behind the public `origin`.
pub async fn answer_device_page_at(
    base: &str,
    origin: &str,
    user_code: &str,
    decision: &str,
) -> (Answer, Answer) {
    // The page's own form posts, from its origin.
    let post = |pairs: &[(&str, &str)], cookie: Option<String>| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let mut request = Request::post(format!("{base}/device"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", origin);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        send(request.body(Full::from(body)).unwrap())
    };
    let question = post(&[("user_code", user_code)], None).await;
    assert_eq!(question.status, StatusCode::OK, "{}", question.text());
    let answer = post(
        &[
            ("user_code", &hidden_field(&question, "user_code")),
            ("csrf", &hidden_field(&question, "csrf")),
            ("decision", decision),
        ],
        Some(page_cookie(&question)),
    )
    .await;
    (question, answer)
}
