//! The embedded authorization server over real HTTP on 127.0.0.1: every endpoint's happy path
//! and error cases, PKCE, code and refresh-token reuse, client authentication, CIMD with its
//! SSRF guard, the consent form's CSRF protection, and tokens checked by the crate's verifiers.
#![cfg(all(feature = "authorization-server", feature = "jwt"))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower_mcp_oauth::authorization_server::{
    AuthorizationServer, AuthorizationServerConfig, AutoApprove, ConsentPage, TokenFormat,
};
use tower_mcp_oauth::metadata::ClientMetadata;
use tower_mcp_oauth::server::{IntrospectionVerifier, JwtVerifier, TokenVerifier};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    fn location(&self) -> Option<Url> {
        self.headers
            .get("location")
            .map(|l| Url::parse(l.to_str().unwrap()).unwrap())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

async fn send(request: Request<Full<Bytes>>) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn get(url: &str) -> Answer {
    send(Request::get(url).body(Full::default()).unwrap()).await
}

struct Server {
    base: String,
    resource: String,
    server: AuthorizationServer,
}

impl Server {
    async fn start(
        configure: impl FnOnce(AuthorizationServerConfig) -> AuthorizationServerConfig,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let resource = format!("{base}/mcp");
        let config = AuthorizationServerConfig::new(&base)
            .unwrap()
            .resource(&resource)
            .scopes(["mcp:tools", "mcp:admin"])
            .approval_policy(AutoApprove::new("alice"));
        let server = AuthorizationServer::new(configure(config)).unwrap();
        let app = server.router();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base,
            resource,
            server,
        }
    }

    async fn post_form(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Answer {
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
        send(request.body(Full::from(body)).unwrap()).await
    }

    async fn register(&self, metadata: Value) -> Answer {
        send(
            Request::post(format!("{}/register", self.base))
                .header("content-type", "application/json")
                .body(Full::from(metadata.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn public_client(&self) -> String {
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

    async fn confidential_client(&self, method: &str) -> (String, String) {
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

    fn authorize_url(&self, client_id: &str, challenge: &str, extra: &[(&str, &str)]) -> String {
        let mut url = Url::parse(&format!("{}/authorize", self.base)).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("state", "st4te")
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &self.resource);
        for (name, value) in extra {
            url.query_pairs_mut().append_pair(name, value);
        }
        url.to_string()
    }

    /// Authorizes `client_id` and returns the code and its verifier.
    async fn code(&self, client_id: &str, scope: &str) -> (String, String) {
        let (verifier, challenge) = pkce();
        let answer = get(&self.authorize_url(client_id, &challenge, &[("scope", scope)])).await;
        assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.text());
        let location = answer.location().unwrap();
        assert_eq!(query(&location, "state").as_deref(), Some("st4te"));
        assert_eq!(query(&location, "iss").as_deref(), Some(self.base.as_str()));
        (query(&location, "code").expect("a code"), verifier)
    }

    async fn exchange(&self, client_id: &str, code: &str, verifier: &str) -> Answer {
        self.post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("redirect_uri", REDIRECT),
                ("client_id", client_id),
                ("resource", &self.resource),
            ],
            None,
        )
        .await
    }

    async fn tokens(&self, client_id: &str) -> Value {
        let (code, verifier) = self.code(client_id, "mcp:tools").await;
        let answer = self.exchange(client_id, &code, &verifier).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(answer.headers["cache-control"], "no-store");
        answer.json()
    }

    async fn refresh(&self, client_id: &str, refresh_token: &str) -> Answer {
        self.refresh_with(client_id, refresh_token, &[]).await
    }

    /// A refresh request with `extra` parameters (`scope`, `resource`).
    async fn refresh_with(
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

    /// Answers a consent page (its cookie, request id and CSRF token) with "approve".
    async fn approve(&self, (cookie, request, csrf): (String, String, String)) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("request", &request)
            .append_pair("csrf", &csrf)
            .append_pair("decision", "approve")
            .finish();
        send(
            Request::post(format!("{}/authorize", self.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", cookie)
                .header("origin", self.base.as_str())
                .body(Full::from(body))
                .unwrap(),
        )
        .await
    }

    /// A confidential client registered by the operator, as a resource server would be.
    async fn operator_client(&self) -> (String, String) {
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

    async fn introspector(&self) -> IntrospectionVerifier {
        let (id, secret) = self.operator_client().await;
        IntrospectionVerifier::new(
            &format!("{}/introspect", self.base),
            id,
            secret,
            &self.resource,
        )
        .unwrap()
    }
}

fn pkce() -> (String, String) {
    let verifier = format!("{}{}", "v".repeat(20), rand_suffix());
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&verifier));
    (verifier, challenge)
}

fn rand_suffix() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:032}",
        N.fetch_add(1, Ordering::Relaxed) + std::process::id() as u64 * 1_000_000
    )
}

#[tokio::test]
async fn metadata_is_served_at_both_discovery_paths() {
    let s = Server::start(|c| c).await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let answer = get(&format!("{}{path}", s.base)).await;
        assert_eq!(answer.status, StatusCode::OK);
        let metadata = answer.json();
        assert_eq!(metadata["issuer"], s.base.as_str());
        assert_eq!(
            metadata["code_challenge_methods_supported"],
            json!(["S256"])
        );
        assert_eq!(
            metadata["authorization_response_iss_parameter_supported"],
            true
        );
        assert_eq!(metadata["client_id_metadata_document_supported"], true);
        assert_eq!(metadata["token_endpoint"], format!("{}/token", s.base));
    }
    let jwks = get(&format!("{}/jwks", s.base)).await.json();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    assert!(jwks["keys"][0].get("d").is_none(), "no private part");
}

#[tokio::test]
async fn an_issuer_with_a_path_serves_under_it() {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let issuer = format!("{origin}/tenant");
    let server = AuthorizationServer::new(
        AuthorizationServerConfig::new(&issuer)
            .unwrap()
            .resource(format!("{origin}/mcp")),
    )
    .unwrap();
    let app = server.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    for path in [
        "/.well-known/oauth-authorization-server/tenant",
        "/.well-known/openid-configuration/tenant",
        "/tenant/.well-known/openid-configuration",
    ] {
        let answer = get(&format!("{origin}{path}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(answer.json()["issuer"], issuer.as_str());
        assert_eq!(answer.json()["token_endpoint"], format!("{issuer}/token"));
    }
}

#[tokio::test]
async fn registration_checks_redirect_uris_and_methods() {
    let s = Server::start(|c| c).await;
    let answer = s.register(json!({"redirect_uris": ["http://app.example/cb"], "token_endpoint_auth_method": "none"})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error(), "invalid_redirect_uri");
    let answer = s
        .register(
            json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt"}),
        )
        .await;
    assert_eq!(answer.error(), "invalid_client_metadata");
    let answer = s
        .register(json!({"token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(answer.error(), "invalid_client_metadata", "no redirect URI");
    let answer = send(
        Request::post(format!("{}/register", s.base))
            .header("content-type", "text/plain")
            .body(Full::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    // Default method: client_secret_basic, with a secret.
    let answer = s
        .register(json!({"redirect_uris": ["https://app.example/cb"]}))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(
        answer.json()["token_endpoint_auth_method"],
        "client_secret_basic"
    );
    assert!(answer.json()["client_secret"]
        .as_str()
        .is_some_and(|s| s.len() >= 43));
    assert_eq!(answer.json()["grant_types"], json!(["authorization_code"]));
}

#[tokio::test]
async fn authorization_code_flow_gives_a_jwt_the_verifier_accepts() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let tokens = s.tokens(&client).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "mcp:tools");
    assert!(tokens["refresh_token"].is_string());
    let verifier = JwtVerifier::builder(&s.base, &s.resource)
        .jwks_url(format!("{}/jwks", s.base))
        .require_at_jwt_typ(true)
        .build()
        .unwrap();
    let info = verifier
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(info.subject.as_deref(), Some("alice"));
    assert_eq!(info.client_id.as_deref(), Some(client.as_str()));
    assert_eq!(info.scopes, vec!["mcp:tools".to_owned()]);
    // Bound to its resource: another audience refuses it.
    let elsewhere = JwtVerifier::builder(&s.base, "http://127.0.0.1:1/other")
        .jwks_url(format!("{}/jwks", s.base))
        .build()
        .unwrap();
    assert!(elsewhere
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .is_err());
}

#[tokio::test]
async fn loopback_redirect_uris_match_on_any_port() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let (_, challenge) = pkce();
    let url = s
        .authorize_url(&client, &challenge, &[])
        .replace("127.0.0.1%3A9%2F", "127.0.0.1%3A4321%2F");
    assert!(url.contains("4321"));
    let answer = get(&url).await;
    assert_eq!(answer.status, StatusCode::FOUND);
    assert_eq!(answer.location().unwrap().port(), Some(4321));
}

#[tokio::test]
async fn authorization_errors_before_the_redirect_is_trusted_are_pages() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let (_, challenge) = pkce();
    let unknown = get(&s.authorize_url("nobody", &challenge, &[])).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.location().is_none());
    assert!(unknown.text().contains("unknown"));
    let mismatch = get(&s
        .authorize_url(&client, &challenge, &[])
        .replace("callback", "elsewhere"))
    .await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    assert!(
        mismatch.location().is_none(),
        "never redirected to an unregistered URI"
    );
}

#[tokio::test]
async fn authorization_errors_go_back_with_state_and_iss() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let (_, challenge) = pkce();
    let cases: Vec<(String, &str)> = vec![
        (
            s.authorize_url(&client, &challenge, &[])
                .replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            s.authorize_url(&client, &challenge, &[])
                .replace(&format!("code_challenge={challenge}&"), ""),
            "invalid_request",
        ),
        (
            s.authorize_url(&client, &challenge, &[("scope", "mcp:tools root")]),
            "invalid_scope",
        ),
        (
            s.authorize_url(&client, &challenge, &[])
                .replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            s.authorize_url(&client, &challenge, &[])
                .replace("%2Fmcp", "%2Fother"),
            "invalid_target",
        ),
    ];
    for (url, expected) in cases {
        let answer = get(&url).await;
        assert_eq!(answer.status, StatusCode::FOUND, "{url}");
        let location = answer.location().unwrap();
        assert!(location.as_str().starts_with(REDIRECT));
        assert_eq!(
            query(&location, "error").as_deref(),
            Some(expected),
            "{url}"
        );
        assert_eq!(query(&location, "state").as_deref(), Some("st4te"));
        assert_eq!(query(&location, "iss").as_deref(), Some(s.base.as_str()));
        assert!(query(&location, "code").is_none());
    }
    // A repeated parameter is not guessed at.
    let repeated = get(&format!(
        "{}&state=again",
        s.authorize_url(&client, &challenge, &[])
    ))
    .await;
    assert_eq!(repeated.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn wrong_verifier_reused_code_and_mismatches_are_invalid_grant() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;

    let (code, _) = s.code(&client, "mcp:tools").await;
    let (other_verifier, _) = pkce();
    let answer = s.exchange(&client, &code, &other_verifier).await;
    assert_eq!(answer.error(), "invalid_grant");
    assert!(answer.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("code_verifier"));

    let (code, verifier) = s.code(&client, "mcp:tools").await;
    let answer = s
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", "http://127.0.0.1:9/other"),
                ("client_id", &client),
            ],
            None,
        )
        .await;
    assert_eq!(answer.error(), "invalid_grant", "redirect_uri mismatch");

    let (code, verifier) = s.code(&client, "mcp:tools").await;
    let answer = s
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", &client),
            ],
            None,
        )
        .await;
    assert_eq!(
        answer.error(),
        "invalid_grant",
        "redirect_uri named at /authorize, omitted here"
    );

    let (code, verifier) = s.code(&client, "mcp:tools").await;
    let answer = s
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", REDIRECT),
                ("client_id", &client),
                ("resource", "http://127.0.0.1:1/other"),
            ],
            None,
        )
        .await;
    assert_eq!(answer.error(), "invalid_target", "wrong resource");

    // Reuse: the second redemption fails, and what the first one issued is revoked.
    let (code, verifier) = s.code(&client, "mcp:tools").await;
    let first = s.exchange(&client, &code, &verifier).await;
    assert_eq!(first.status, StatusCode::OK);
    let second = s.exchange(&client, &code, &verifier).await;
    assert_eq!(second.error(), "invalid_grant");
    let refresh = s
        .refresh(&client, first.json()["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        refresh.error(),
        "invalid_grant",
        "the family of a reused code is revoked"
    );
    let introspector = s.introspector().await;
    assert!(introspector
        .verify(first.json()["access_token"].as_str().unwrap())
        .await
        .is_err());

    let unknown = s.exchange(&client, "no-such-code", &verifier).await;
    assert_eq!(unknown.error(), "invalid_grant");
}

#[tokio::test]
async fn codes_expire() {
    let s = Server::start(|c| c.code_ttl(Duration::from_secs(1))).await;
    let client = s.public_client().await;
    let (code, verifier) = s.code(&client, "mcp:tools").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let answer = s.exchange(&client, &code, &verifier).await;
    assert_eq!(answer.error(), "invalid_grant");
    assert!(answer.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let s = Server::start(|c| c.token_format(TokenFormat::Opaque)).await;
    let client = s.public_client().await;
    let tokens = s.tokens(&client).await;
    let first_refresh = tokens["refresh_token"].as_str().unwrap();
    let rotated = s.refresh(&client, first_refresh).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    let second_refresh = rotated.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh);
    let access = rotated.json()["access_token"].as_str().unwrap().to_owned();
    let introspector = s.introspector().await;
    let info = introspector.verify(&access).await.unwrap();
    assert_eq!(info.subject.as_deref(), Some("alice"));
    assert_eq!(info.audience, vec![s.resource.clone()]);

    // Narrowing is allowed, widening is not.
    let wider = s
        .refresh_with(&client, &second_refresh, &[("scope", "mcp:admin")])
        .await;
    assert_eq!(wider.error(), "invalid_scope");
    let elsewhere = s
        .refresh_with(
            &client,
            &second_refresh,
            &[("resource", "http://127.0.0.1:9/other")],
        )
        .await;
    assert_eq!(elsewhere.error(), "invalid_target");
    // Refused requests spent nothing: the plain retry rotates the same token.
    let retried = s.refresh(&client, &second_refresh).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text());
    let third_refresh = retried.json()["refresh_token"].as_str().unwrap().to_owned();
    assert!(introspector.verify(&access).await.is_ok());

    // A spent token again: refused, and the whole family goes.
    let reused = s.refresh(&client, first_refresh).await;
    assert_eq!(reused.error(), "invalid_grant");
    let after = s.refresh(&client, &third_refresh).await;
    assert_eq!(
        after.error(),
        "invalid_grant",
        "the current token died with its family"
    );
    assert!(
        introspector.verify(&access).await.is_err(),
        "and so did its access token"
    );
}

#[tokio::test]
async fn another_clients_refresh_token_is_refused_without_harm() {
    let s = Server::start(|c| c).await;
    let owner = s.public_client().await;
    let thief = s.public_client().await;
    let tokens = s.tokens(&owner).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(
        s.refresh(&thief, refresh_token).await.error(),
        "invalid_grant"
    );
    assert_eq!(
        s.refresh(&owner, refresh_token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn client_authentication_methods_and_failures() {
    let s = Server::start(|c| c).await;
    // Basic, with and without client_id in the body.
    let (id, secret) = s.confidential_client("client_secret_basic").await;
    for with_id in [false, true] {
        let (code, verifier) = s.code(&id, "mcp:tools").await;
        let mut pairs = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("code_verifier", verifier.as_str()),
            ("redirect_uri", REDIRECT),
        ];
        if with_id {
            pairs.push(("client_id", id.as_str()));
        }
        let answer = s.post_form("/token", &pairs, Some((&id, &secret))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
    // A wrong secret, an unknown client, a method other than the registered one.
    let (code, verifier) = s.code(&id, "mcp:tools").await;
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    for basic in [(id.as_str(), "wrong"), ("nobody", secret.as_str())] {
        let answer = s.post_form("/token", &pairs, Some(basic)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.error(), "invalid_client");
        assert!(answer.headers.contains_key("www-authenticate"));
        assert!(!answer.text().contains(&secret));
    }
    let post = s
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", REDIRECT),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
            None,
        )
        .await;
    assert_eq!(
        post.error(),
        "invalid_client",
        "registered for basic, not post"
    );
    let public = s
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", REDIRECT),
                ("client_id", &id),
            ],
            None,
        )
        .await;
    assert_eq!(
        public.error(),
        "invalid_client",
        "a confidential client must authenticate"
    );

    // client_secret_post.
    let (post_id, post_secret) = s.confidential_client("client_secret_post").await;
    let (code, verifier) = s.code(&post_id, "mcp:tools").await;
    let answer = s
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", REDIRECT),
                ("client_id", &post_id),
                ("client_secret", &post_secret),
            ],
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());

    let unsupported = s
        .post_form(
            "/token",
            &[
                ("grant_type", "password"),
                ("client_id", &post_id),
                ("client_secret", &post_secret),
            ],
            None,
        )
        .await;
    assert_eq!(unsupported.error(), "unsupported_grant_type");
    let not_form = send(
        Request::post(format!("{}/token", s.base))
            .header("content-type", "application/json")
            .body(Full::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(not_form.error(), "invalid_request");
}

#[tokio::test]
async fn client_credentials_is_for_confidential_clients_the_operator_registered() {
    let s = Server::start(|c| c).await;
    // Open registration cannot ask for tokens without a user.
    let answer = s
        .register(json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"}))
        .await;
    assert_eq!(answer.error(), "invalid_client_metadata");
    let (dcr_id, dcr_secret) = s.confidential_client("client_secret_basic").await;
    let answer = s
        .post_form(
            "/token",
            &[("grant_type", "client_credentials")],
            Some((&dcr_id, &dcr_secret)),
        )
        .await;
    assert_eq!(answer.error(), "unauthorized_client");

    let (id, secret) = s.operator_client().await;
    let answer = s
        .post_form(
            "/token",
            &[("grant_type", "client_credentials"), ("scope", "mcp:admin")],
            Some((&id, &secret)),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert!(answer.json().get("refresh_token").is_none());
    assert_eq!(answer.json()["scope"], "mcp:admin");
    let public = s.public_client().await;
    let answer = s
        .post_form(
            "/token",
            &[("grant_type", "client_credentials"), ("client_id", &public)],
            None,
        )
        .await;
    assert_eq!(answer.error(), "unauthorized_client");
}

#[tokio::test]
async fn revocation_and_introspection() {
    let s = Server::start(|c| c.token_format(TokenFormat::Opaque)).await;
    let client = s.public_client().await;
    let introspector = s.introspector().await;
    let tokens = s.tokens(&client).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert!(introspector.verify(access).await.is_ok());

    // Public clients cannot introspect.
    let answer = s
        .post_form(
            "/introspect",
            &[("token", access), ("client_id", &client)],
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // A self-registered confidential client cannot either.
    let (dcr_id, dcr_secret) = s.confidential_client("client_secret_basic").await;
    let answer = s
        .post_form(
            "/introspect",
            &[("token", access)],
            Some((&dcr_id, &dcr_secret)),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // The hint orders the lookups but does not limit them.
    let (rs_id, rs_secret) = s.operator_client().await;
    let answer = s
        .post_form(
            "/introspect",
            &[("token", access), ("token_type_hint", "refresh_token")],
            Some((&rs_id, &rs_secret)),
        )
        .await;
    assert_eq!(answer.json()["active"], true);
    assert_eq!(answer.json()["aud"], s.resource.as_str());

    // Unknown tokens revoke with 200; another client's tokens are refused (RFC 7009 §2.1).
    let other = s.public_client().await;
    let unknown = s
        .post_form(
            "/revoke",
            &[("token", "nothing"), ("client_id", &client)],
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::OK);
    let foreign = s
        .post_form("/revoke", &[("token", access), ("client_id", &other)], None)
        .await;
    assert_eq!(foreign.error(), "unauthorized_client");
    assert!(introspector.verify(access).await.is_ok());

    assert_eq!(
        s.post_form(
            "/revoke",
            &[("token", access), ("client_id", &client)],
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    assert!(
        introspector.verify(access).await.is_err(),
        "revoked at once"
    );

    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(
        s.post_form(
            "/revoke",
            &[
                ("token", refresh_token),
                ("token_type_hint", "refresh_token"),
                ("client_id", &client)
            ],
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        s.refresh(&client, refresh_token).await.error(),
        "invalid_grant"
    );
}

/// A loopback server for client metadata documents, counting the connections it accepts.
async fn document_server(
    document: impl Fn(&str) -> Value + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let url = format!("{base}/client.json");
    let body = document(&url).to_string();
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            let app = app.clone();
            tokio::spawn(async move {
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, connections)
}

#[tokio::test]
async fn client_metadata_documents_in_development_mode() {
    let s = Server::start(|c| c.allow_private_client_metadata_hosts(true)).await;
    let (url, fetches) = document_server(|url| {
        json!({"client_id": url, "client_name": "CIMD client", "redirect_uris": [REDIRECT],
               "grant_types": ["authorization_code", "refresh_token"], "token_endpoint_auth_method": "none"})
    })
    .await;
    let tokens = s.tokens(&url).await;
    assert!(tokens["refresh_token"].is_string());
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "fetched once, then cached"
    );
}

#[tokio::test]
async fn a_client_metadata_document_must_name_itself() {
    let s = Server::start(|c| c.allow_private_client_metadata_hosts(true)).await;
    let (url, _) = document_server(
        |_| json!({"client_id": "https://evil.example/client.json", "redirect_uris": [REDIRECT]}),
    )
    .await;
    let (_, challenge) = pkce();
    let answer = get(&s.authorize_url(&url, &challenge, &[])).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.location().is_none());
}

#[tokio::test]
async fn client_metadata_urls_at_private_addresses_are_never_fetched() {
    let s = Server::start(|c| c).await;
    let (url, connections) =
        document_server(|url| json!({"client_id": url, "redirect_uris": [REDIRECT]})).await;
    let port = Url::parse(&url).unwrap().port().unwrap();
    let (_, challenge) = pkce();
    for target in [
        format!("https://127.0.0.1:{port}/client.json"),
        format!("https://localhost:{port}/client.json"),
        "https://10.0.0.1/client.json".to_owned(),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        // http is refused outright without the development switch.
        url.clone(),
    ] {
        let answer = get(&s.authorize_url(&target, &challenge, &[])).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{target}");
        assert!(answer.location().is_none());
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection reached the private address"
    );
}

#[tokio::test]
async fn the_consent_form_needs_its_cookie_and_token() {
    let s = Server::start(|c| c.approval_policy(ConsentPage::new("bob"))).await;
    let client = s.public_client().await;
    let (verifier, challenge) = pkce();
    let page = get(&s.authorize_url(&client, &challenge, &[("scope", "mcp:tools")])).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(
        html.contains("test client") && html.contains("mcp:tools") && html.contains("127.0.0.1")
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");
    let cookie = page.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let field = |name: &str| {
        let start = html.find(&format!("name=\"{name}\" value=\"")).unwrap() + name.len() + 15;
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    };
    let (request, csrf) = (field("request"), field("csrf"));
    let post = |cookie: Option<String>, csrf: String, origin: Option<&str>| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("request", &request)
            .append_pair("csrf", &csrf)
            .append_pair("decision", "approve")
            .finish();
        let mut builder = Request::post(format!("{}/authorize", s.base))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(cookie) = cookie {
            builder = builder.header("cookie", cookie);
        }
        if let Some(origin) = origin {
            builder = builder.header("origin", origin);
        }
        builder.body(Full::from(body)).unwrap()
    };
    // Another site's form: refused before the request is spent.
    let cross = send(post(
        Some(cookie.clone()),
        csrf.clone(),
        Some("http://evil.example"),
    ))
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    // Without the cookie: refused, and the pending request is spent.
    let without = send(post(None, csrf.clone(), None)).await;
    assert_eq!(without.status, StatusCode::FORBIDDEN);
    let replay = send(post(Some(cookie.clone()), csrf.clone(), None)).await;
    assert_eq!(
        replay.status,
        StatusCode::BAD_REQUEST,
        "a consent request is answered once"
    );

    // A fresh page, answered properly.
    let page = get(&s.authorize_url(&client, &challenge, &[("scope", "mcp:tools")])).await;
    let approved = s.approve(consent_form(&page)).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER);
    let location = approved.location().unwrap();
    let code = query(&location, "code").unwrap();
    let tokens = s.exchange(&client, &code, &verifier).await;
    assert_eq!(tokens.status, StatusCode::OK);
}

#[tokio::test]
async fn opaque_tokens_of_clients_without_refresh_tokens_introspect_as_active() {
    let s = Server::start(|c| c.token_format(TokenFormat::Opaque)).await;
    let answer = s
        .register(json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .await;
    let client = answer.json()["client_id"].as_str().unwrap().to_owned();
    let tokens = s.tokens(&client).await;
    assert!(
        tokens.get("refresh_token").is_none(),
        "the client did not register refresh_token"
    );
    let introspector = s.introspector().await;
    assert!(introspector
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .is_ok());
}

#[tokio::test]
async fn an_issuer_off_loopback_needs_an_approval_policy() {
    let config = AuthorizationServerConfig::new("https://auth.example.com")
        .unwrap()
        .resource("https://mcp.example.com/mcp");
    let error = AuthorizationServer::new(config.clone()).unwrap_err();
    assert_eq!(error.kind(), tower_mcp_oauth::ErrorKind::Config);
    assert!(AuthorizationServer::new(config.approval_policy(ConsentPage::new("x"))).is_ok());
    assert!(
        AuthorizationServerConfig::new("http://auth.example.com").is_err(),
        "http off loopback"
    );
}

#[tokio::test]
async fn browser_clients_get_cors_on_token_endpoints_but_not_on_authorize() {
    let s = Server::start(|c| c).await;
    let preflight = send(
        Request::options(format!("{}/token", s.base))
            .header("origin", "http://inspector.example")
            .header("access-control-request-method", "POST")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    assert_eq!(preflight.headers["access-control-allow-origin"], "*");
    let metadata = get(&format!(
        "{}/.well-known/oauth-authorization-server",
        s.base
    ))
    .await;
    assert_eq!(metadata.headers["access-control-allow-origin"], "*");
    let (_, challenge) = pkce();
    let client = s.public_client().await;
    let authorize = get(&s.authorize_url(&client, &challenge, &[])).await;
    assert!(!authorize
        .headers
        .contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let (_, challenge) = pkce();
    let long_state = "s".repeat(10_000);
    let answer = get(&s.authorize_url(&client, &challenge, &[("state", &long_state)])).await;
    assert_eq!(answer.status, StatusCode::URI_TOO_LONG);
    let answer = s
        .register(json!({"redirect_uris": [REDIRECT], "client_name": "n".repeat(20_000)}))
        .await;
    assert_eq!(answer.error(), "invalid_client_metadata");
}

/// A policy of the application's own: the user comes from a header set by its login layer.
struct HeaderUser;

impl tower_mcp_oauth::authorization_server::ApprovalPolicy for HeaderUser {
    fn decide<'a>(
        &'a self,
        request: &'a tower_mcp_oauth::authorization_server::ConsentRequest,
        headers: &'a HeaderMap,
    ) -> tower_mcp_oauth::authorization_server::BoxFuture<
        'a,
        tower_mcp_oauth::authorization_server::AuthorizationDecision,
    > {
        use tower_mcp_oauth::authorization_server::AuthorizationDecision;
        let user = headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let admin_asked = request.scopes.iter().any(|s| s == "mcp:admin");
        Box::pin(async move {
            match user {
                Some(user) if !admin_asked => AuthorizationDecision::Approve { subject: user },
                _ => AuthorizationDecision::Deny,
            }
        })
    }
}

#[tokio::test]
async fn an_application_policy_decides_from_the_request() {
    let s = Server::start(|c| c.approval_policy(HeaderUser)).await;
    let client = s.public_client().await;
    let (verifier, challenge) = pkce();
    let url = s.authorize_url(&client, &challenge, &[("scope", "mcp:tools")]);
    let anonymous = get(&url).await;
    assert_eq!(
        query(&anonymous.location().unwrap(), "error").as_deref(),
        Some("access_denied")
    );
    let admin = send(
        Request::get(s.authorize_url(&client, &challenge, &[("scope", "mcp:admin")]))
            .header("x-user", "dave")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(
        query(&admin.location().unwrap(), "error").as_deref(),
        Some("access_denied")
    );
    let dave = send(
        Request::get(&url)
            .header("x-user", "dave")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let code = query(&dave.location().unwrap(), "code").unwrap();
    let tokens = s.exchange(&client, &code, &verifier).await.json();
    let (id, secret) = s.operator_client().await;
    let introspection = s
        .post_form(
            "/introspect",
            &[("token", tokens["access_token"].as_str().unwrap())],
            Some((&id, &secret)),
        )
        .await;
    assert_eq!(introspection.json()["sub"], "dave");
}

#[tokio::test]
async fn client_metadata_documents_must_list_the_redirect_uri() {
    let s = Server::start(|c| c.allow_private_client_metadata_hosts(true)).await;
    let (url, _) = document_server(
        |url| json!({"client_id": url, "redirect_uris": ["http://127.0.0.1:9/elsewhere"]}),
    )
    .await;
    let (_, challenge) = pkce();
    let answer = get(&s.authorize_url(&url, &challenge, &[])).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.location().is_none());
}

#[tokio::test]
async fn client_metadata_fetches_are_bounded_in_size_and_time() {
    let s = Server::start(|c| {
        c.allow_private_client_metadata_hosts(true)
            .client_metadata_timeout(Duration::from_millis(500))
    })
    .await;
    let (_, challenge) = pkce();
    // Too large.
    let (large, _) = document_server(|url| {
        json!({"client_id": url, "redirect_uris": [REDIRECT], "client_name": "x".repeat(20_000)})
    })
    .await;
    let answer = get(&s.authorize_url(&large, &challenge, &[])).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    // Never answers: the authorization request still gets its answer.
    let silent = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let silent_url = format!("http://{}/client.json", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = silent.accept().await.unwrap();
            held.push(stream);
        }
    });
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        get(&s.authorize_url(&silent_url, &challenge, &[])),
    )
    .await
    .expect("no hang on a silent metadata host");
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn malformed_requests_get_client_errors_not_server_errors() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let token_bodies: [&[u8]; 7] = [
        b"",
        b"grant_type",
        b"grant_type=authorization_code&code=%FF%FE&code_verifier=%00",
        b"grant_type=refresh_token&refresh_token=&client_id=",
        b"grant_type=authorization_code&grant_type=refresh_token",
        b"\xff\xfe\xfd=\x00",
        b"client_id=%E2%82&grant_type=client_credentials",
    ];
    for body in token_bodies {
        for path in ["/token", "/revoke", "/introspect"] {
            let answer = send(
                Request::post(format!("{}{path}", s.base))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::from(body.to_vec()))
                    .unwrap(),
            )
            .await;
            assert!(
                answer.status.is_client_error(),
                "{path} {body:?}: {}",
                answer.status
            );
            assert!(!answer.error().is_empty(), "{path}: an OAuth error body");
        }
    }
    for basic in [
        "Basic",
        "Basic !!!",
        "Basic Og==",
        "Bearer x",
        "Basic w4M6w4M=",
    ] {
        let answer = send(
            Request::post(format!("{}/token", s.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", basic)
                .body(Full::from("grant_type=client_credentials"))
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{basic}");
    }
    for body in [
        "",
        "null",
        "[]",
        "{\"redirect_uris\": 5}",
        "{\"redirect_uris\": [\"\\u0000\"]}",
    ] {
        let answer = s
            .register(serde_json::from_str(body).unwrap_or(Value::Null))
            .await;
        assert!(answer.status.is_client_error(), "{body}");
    }
    let (_, challenge) = pkce();
    for query in [
        "".to_owned(),
        "client_id=%FF".to_owned(),
        format!("client_id={client}&redirect_uri=%00"),
        format!("client_id={client}&redirect_uri=javascript:alert(1)"),
        format!("client_id={client}&redirect_uri={REDIRECT}&response_type=code&code_challenge={challenge}&code_challenge_method=S256&resource=%20"),
    ] {
        let answer = get(&format!("{}/authorize?{query}", s.base)).await;
        assert!(!answer.status.is_server_error(), "{query}: {}", answer.status);
        if let Some(location) = answer.location() {
            assert!(location.as_str().starts_with(REDIRECT), "only to the registered URI");
        }
    }
}

#[tokio::test]
async fn tokens_signed_before_a_key_rotation_stay_valid_until_they_expire() {
    use tower_mcp_oauth::authorization_server::SigningKey;
    let old = SigningKey::generate().unwrap();
    let before = Server::start(|c| c.signing_key(old.clone())).await;
    let client = before.public_client().await;
    let token = before.tokens(&client).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The same issuer would run the rotated server; a second one on its own port stands in.
    let rotated = Server::start(|c| {
        c.signing_key(SigningKey::generate().unwrap())
            .retired_signing_key(old.clone())
    })
    .await;
    let jwks = get(&format!("{}/jwks", rotated.base)).await.json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(jwks["keys"][1]["kid"], old.kid());
    let verifier = JwtVerifier::builder(&before.base, &before.resource)
        .jwks_url(format!("{}/jwks", rotated.base))
        .build()
        .unwrap();
    assert!(
        verifier.verify(&token).await.is_ok(),
        "the retired key still verifies"
    );
    let unrotated = Server::start(|c| c.signing_key(SigningKey::generate().unwrap())).await;
    let verifier = JwtVerifier::builder(&before.base, &before.resource)
        .jwks_url(format!("{}/jwks", unrotated.base))
        .build()
        .unwrap();
    assert!(
        verifier.verify(&token).await.is_err(),
        "without it, the token fails"
    );
}

#[tokio::test]
async fn private_use_redirect_schemes_are_opt_in() {
    let native = json!({"redirect_uris": ["com.example.app:/oauth/callback"], "token_endpoint_auth_method": "none"});
    let strict = Server::start(|c| c).await;
    assert_eq!(
        strict.register(native.clone()).await.error(),
        "invalid_redirect_uri"
    );
    let s = Server::start(|c| c.allow_private_use_redirect_schemes(true)).await;
    let answer = s.register(native).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    let client = answer.json()["client_id"].as_str().unwrap().to_owned();
    let (_, challenge) = pkce();
    let url = s.authorize_url(&client, &challenge, &[]).replace(
        &url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
        "com.example.app%3A%2Foauth%2Fcallback",
    );
    let answer = get(&url).await;
    assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.text());
    let location = answer.location().unwrap();
    assert_eq!(location.scheme(), "com.example.app");
    assert!(query(&location, "code").is_some());
    let dangerous = s
        .register(
            json!({"redirect_uris": ["javascript:alert(1)"], "token_endpoint_auth_method": "none"}),
        )
        .await;
    assert_eq!(dangerous.error(), "invalid_redirect_uri");
}

#[tokio::test]
async fn the_local_verifier_checks_tokens_in_process_and_sees_revocations_at_once() {
    use tower::ServiceExt;
    use tower_mcp_oauth::server::{AuthInfo, RequireBearerLayer};

    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let tokens = s.tokens(&client).await;
    let jwt = tokens["access_token"].as_str().unwrap().to_owned();

    let verifier = s.server.local_verifier(&s.resource);
    let info = verifier.verify(&jwt).await.unwrap();
    assert_eq!(info.subject.as_deref(), Some("alice"));
    assert_eq!(info.scopes, vec!["mcp:tools".to_owned()]);
    assert!(s
        .server
        .local_verifier("http://127.0.0.1:1/other")
        .verify(&jwt)
        .await
        .is_err());
    assert!(verifier.verify("not-a-token").await.is_err());

    // Behind RequireBearer, as an MCP route would be.
    let protected = tower::ServiceBuilder::new()
        .layer(
            RequireBearerLayer::new(verifier.clone())
                .resource(&s.resource)
                .without_cache(),
        )
        .service(tower::service_fn(
            |request: Request<Full<Bytes>>| async move {
                let subject = request
                    .extensions()
                    .get::<AuthInfo>()
                    .and_then(|i| i.subject.clone());
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::from(
                    subject.unwrap_or_default(),
                )))
            },
        ));
    let call = |token: String| {
        let protected = protected.clone();
        async move {
            let request = Request::get("http://127.0.0.1/mcp")
                .header("authorization", format!("Bearer {token}"))
                .body(Full::default())
                .unwrap();
            protected.oneshot(request).await.unwrap()
        }
    };
    let response = call(jwt.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "alice"
    );

    // A JWT revoked through its refresh token: JwtVerifier would accept it until `exp`; the
    // local verifier refuses it at once.
    let revoked = s
        .post_form(
            "/revoke",
            &[
                ("token", tokens["refresh_token"].as_str().unwrap()),
                ("client_id", &client),
            ],
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(call(jwt).await.status(), StatusCode::UNAUTHORIZED);
}

/// The consent page's cookie, request id and CSRF token.
fn consent_form(page: &Answer) -> (String, String, String) {
    let html = page.text();
    let cookie = page.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).unwrap() + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    };
    (cookie, field("request"), field("csrf"))
}

#[tokio::test]
async fn a_flood_of_consent_pages_does_not_push_out_another_clients_user() {
    let s = Server::start(|c| c.approval_policy(ConsentPage::new("bob"))).await;
    let user_client = s.public_client().await;
    let flooder = s.public_client().await;
    let (verifier, challenge) = pkce();
    let page = get(&s.authorize_url(&user_client, &challenge, &[("scope", "mcp:tools")])).await;
    assert_eq!(page.status, StatusCode::OK);
    let (cookie, request, csrf) = consent_form(&page);

    let flood = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for _ in 0..2_000 {
        let url = s.authorize_url(&flooder, &challenge, &[("scope", "mcp:tools")]);
        let flood = flood.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = flood.acquire().await.unwrap();
            get(&url).await.status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }

    let approved = s.approve((cookie, request, csrf)).await;
    assert_eq!(
        approved.status,
        StatusCode::SEE_OTHER,
        "{}",
        approved.text()
    );
    let code = query(&approved.location().unwrap(), "code").unwrap();
    assert_eq!(
        s.exchange(&user_client, &code, &verifier).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn without_configured_scopes_no_scope_is_granted() {
    let s = Server::start(|c| c.scopes(Vec::<String>::new())).await;
    let client = s.public_client().await;
    let (_, challenge) = pkce();
    let answer = get(&s.authorize_url(&client, &challenge, &[("scope", "admin:everything")])).await;
    let location = answer.location().expect("an error redirect");
    assert_eq!(query(&location, "error").as_deref(), Some("invalid_scope"));
    // Asking for no scope still works.
    let answer = get(&s.authorize_url(&client, &challenge, &[])).await;
    assert!(query(&answer.location().unwrap(), "code").is_some());
}

/// A store whose `save_family` takes a while, as a database's would: the window in which a
/// second redemption of the code arrives.
struct SlowFamilyStore(tower_mcp_oauth::authorization_server::MemoryAuthorizationStore);

mod slow_store {
    use super::SlowFamilyStore;
    use tower_mcp_oauth::authorization_server::*;
    use tower_mcp_oauth::Result;

    impl AuthorizationStore for SlowFamilyStore {
        fn save_client(&self, client: RegisteredClient) -> BoxFuture<'_, Result<()>> {
            self.0.save_client(client)
        }
        fn client<'a>(
            &'a self,
            client_id: &'a str,
        ) -> BoxFuture<'a, Result<Option<RegisteredClient>>> {
            self.0.client(client_id)
        }
        fn save_code(&self, code: TokenHash, grant: CodeGrant) -> BoxFuture<'_, Result<()>> {
            self.0.save_code(code, grant)
        }
        fn redeem_code(&self, code: TokenHash) -> BoxFuture<'_, Result<CodeRedemption>> {
            self.0.redeem_code(code)
        }
        fn save_family(
            &self,
            family: TokenFamily,
            refresh: TokenHash,
        ) -> BoxFuture<'_, Result<FamilyStart>> {
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                self.0.save_family(family, refresh).await
            })
        }
        fn rotate_refresh(
            &self,
            old: TokenHash,
            new: TokenHash,
            now: u64,
        ) -> BoxFuture<'_, Result<RefreshRotation>> {
            self.0.rotate_refresh(old, new, now)
        }
        fn family_of_refresh(
            &self,
            refresh: TokenHash,
        ) -> BoxFuture<'_, Result<Option<(TokenFamily, bool)>>> {
            self.0.family_of_refresh(refresh)
        }
        fn family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<Option<TokenFamily>>> {
            self.0.family(family_id)
        }
        fn revoke_family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<()>> {
            self.0.revoke_family(family_id)
        }
        fn save_access(&self, token: TokenHash, record: AccessRecord) -> BoxFuture<'_, Result<()>> {
            self.0.save_access(token, record)
        }
        fn access(&self, token: TokenHash) -> BoxFuture<'_, Result<Option<AccessRecord>>> {
            self.0.access(token)
        }
        fn revoke_access(&self, token: TokenHash) -> BoxFuture<'_, Result<()>> {
            self.0.revoke_access(token)
        }
    }
}

#[tokio::test]
async fn a_code_reused_while_its_first_redemption_is_in_flight_gives_nothing() {
    let s = Server::start(|c| {
        c.store(SlowFamilyStore(Default::default()))
            .token_format(TokenFormat::Opaque)
    })
    .await;
    let client = s.public_client().await;
    let (code, verifier) = s.code(&client, "mcp:tools").await;
    let (first, second) = tokio::join!(s.exchange(&client, &code, &verifier), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.exchange(&client, &code, &verifier).await
    });
    assert_eq!(second.error(), "invalid_grant");
    assert_eq!(first.error(), "invalid_grant", "{}", first.text());
    assert!(first.json()["access_token"].is_null());
}
