//! Downstream authorization by token exchange, over real HTTP on 127.0.0.1: an MCP resource
//! server's handler calls another API as its caller, through the embedded authorization server
//! (JWTs checked by the API against the JWKS, Bearer and DPoP), and through an independent RFC
//! 8693 server and an Entra-shaped one that check every parameter
//! (`tests/support/exchange_harness.rs`).
#![cfg(all(
    feature = "downstream",
    feature = "authorization-server",
    feature = "jwt"
))]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use support::exchange_harness::{Harness, Shape, AUDIENCE, CLIENT_ID, CLIENT_SECRET};
use support::{send, Answer};
use tower::ServiceExt;
use tower_mcp_oauth::authorization_server::{
    AuthorizationServer, AuthorizationServerConfig, AutoApprove, DownstreamApi, TokenExchangePolicy,
};
use tower_mcp_oauth::client::{ClientRegistration, TokenEndpointAuthMethod};
use tower_mcp_oauth::downstream::{
    Caller, Downstream, ExchangeError, ExchangeProfile, TokenExchange,
};
use tower_mcp_oauth::dpop::{DpopAlgorithm, DpopKey};
use tower_mcp_oauth::http::HttpClient;
use tower_mcp_oauth::metadata::ClientMetadata;
use tower_mcp_oauth::server::{AuthData, AuthInfo, CallerToken, JwtVerifier, RequireBearerLayer};

const EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The embedded authorization server, an MCP resource whose `/mcp` handler calls the CRM as its
/// caller, and the CRM (an API checking the server's JWTs, DPoP taken).
struct Stack {
    base: String,
    crm_whoami: String,
    exchange: TokenExchange,
    exchanger: String,
    server: AuthorizationServer,
}

async fn stack(dpop: Option<DpopKey>) -> Stack {
    let (listener, base) = support::bind().await;
    let (crm_listener, crm) = support::bind().await;
    let crm_api = format!("{crm}/api");
    let resource = format!("{base}/mcp");
    let store = Arc::new(tower_mcp_oauth::authorization_server::MemoryAuthorizationStore::new());
    let config = || {
        AuthorizationServerConfig::new(&base)
            .unwrap()
            .resource(&resource)
            .scopes(["mcp:tools"])
            .approval_policy(AutoApprove::new("alice"))
            .store(store.clone())
    };
    let (exchanger, secret) = AuthorizationServer::new(config())
        .unwrap()
        .register_confidential_client(ClientMetadata {
            grant_types: vec![EXCHANGE_GRANT.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let server = AuthorizationServer::new(
        config().token_exchange(
            TokenExchangePolicy::new().downstream(
                DownstreamApi::new(&crm_api)
                    .scopes(["crm:read", "crm:write"])
                    .exchanged_by(&exchanger, &resource),
            ),
        ),
    )
    .unwrap();
    let mut exchange = TokenExchange::new(
        &base,
        ClientRegistration::confidential(
            &exchanger,
            secret.expose(),
            TokenEndpointAuthMethod::ClientSecretBasic,
        ),
    )
    .unwrap();
    if let Some(key) = dpop {
        exchange = exchange.dpop(key);
    }

    // The CRM: the authorization server's JWTs for its audience, DPoP-bound ones too.
    let verifier = JwtVerifier::builder(&base, &crm_api)
        .jwks_url(format!("{base}/jwks"))
        .build()
        .unwrap();
    let crm_app = Router::new()
        .route(
            "/api/whoami",
            get(|request: Request<axum::body::Body>| async move {
                let info = request.extensions().get::<AuthInfo>().cloned().unwrap();
                Json(json!({
                    "sub": info.subject,
                    "act": info.claims.get("act"),
                    "scopes": info.scopes,
                    "dpop": info.dpop_jkt().is_some(),
                }))
            }),
        )
        .layer(RequireBearerLayer::new(verifier).resource(&crm_api));
    support::serve_on(crm_listener, crm_app);

    // The MCP resource: its handler calls the CRM on its caller's behalf.
    let crm_whoami = format!("{crm_api}/whoami");
    let tool = {
        let exchange = exchange.clone();
        let crm_api = crm_api.clone();
        let crm_whoami = crm_whoami.clone();
        move |request: Request<axum::body::Body>| async move {
            let caller = match Caller::from_extensions(request.extensions()) {
                Ok(caller) => caller,
                Err(error) => return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
            };
            let crm = exchange.on_behalf_of(
                caller,
                Downstream::resource(&crm_api).scopes(["crm:read"]),
                HttpClient::new(),
            );
            let call = Request::get(&crm_whoami).body(Full::default()).unwrap();
            match crm.oneshot(call).await {
                Ok(response) => (
                    StatusCode::OK,
                    String::from_utf8_lossy(response.body()).into_owned(),
                ),
                Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()),
            }
        }
    };
    let mcp = server.protected_resource(&resource).unwrap();
    support::serve_on(
        listener,
        server
            .router()
            .merge(mcp.router(Router::new().route("/", post(tool)))),
    );
    Stack {
        base,
        crm_whoami,
        exchange,
        exchanger,
        server,
    }
}

impl Stack {
    async fn user_token(&self) -> String {
        let helper = support::auth_server::Server {
            base: self.base.clone(),
            resource: format!("{}/mcp", self.base),
            server: self.server.clone(),
        };
        let client = helper.public_client().await;
        helper.tokens(&client).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn call_tool(&self, token: &str) -> Answer {
        send(
            Request::post(format!("{}/mcp", self.base))
                .header("authorization", format!("Bearer {token}"))
                .body(Full::from("{}"))
                .unwrap(),
        )
        .await
    }
}

#[tokio::test]
async fn a_handler_calls_the_crm_as_its_caller_with_one_exchange() {
    let stack = stack(None).await;
    let token = stack.user_token().await;
    let answer = stack.call_tool(&token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let crm_saw: Value = serde_json::from_str(&answer.text()).unwrap();
    assert_eq!(crm_saw["sub"], "alice");
    assert_eq!(crm_saw["act"], json!({ "sub": stack.exchanger }));
    assert_eq!(crm_saw["scopes"], json!(["crm:read"]));
    assert_eq!(crm_saw["dpop"], false);
    assert_eq!(stack.exchange.exchanges_sent(), 1);
    for _ in 0..3 {
        assert_eq!(stack.call_tool(&token).await.status, StatusCode::OK);
    }
    assert_eq!(stack.exchange.exchanges_sent(), 1, "cached for the caller");
    // The caller's own token is no use at the CRM: not its audience.
    let passthrough = send(
        Request::get(&stack.crm_whoami)
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(passthrough.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn with_a_dpop_key_the_exchanged_token_is_bound_and_proven_at_the_crm() {
    let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let stack = stack(Some(key)).await;
    let token = stack.user_token().await;
    for _ in 0..2 {
        let answer = stack.call_tool(&token).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let crm_saw: Value = serde_json::from_str(&answer.text()).unwrap();
        assert_eq!(crm_saw["dpop"], true, "{crm_saw}");
    }
    assert_eq!(stack.exchange.exchanges_sent(), 1);
}

/// A caller of the harness's issuer.
fn caller(harness: &Harness, user: &str, token: &str) -> Caller {
    caller_of(&harness.base, user, token)
}

fn caller_of(issuer: &str, user: &str, token: &str) -> Caller {
    Caller::new(
        AuthInfo::from(AuthData {
            subject: Some(user.into()),
            issuer: Some(issuer.into()),
            client_id: Some("desktop-client".into()),
            scopes: vec!["mcp:tools".into()],
            ..Default::default()
        }),
        CallerToken::bearer(token).unwrap(),
    )
    .unwrap()
}

fn harness_exchange(harness: &Harness) -> TokenExchange {
    TokenExchange::with_token_endpoint(
        &harness.base,
        &format!("{}/token", harness.base),
        ClientRegistration::confidential(
            CLIENT_ID,
            CLIENT_SECRET,
            TokenEndpointAuthMethod::ClientSecretBasic,
        ),
    )
    .unwrap()
}

async fn whoami(
    service: impl tower::Service<
        Request<Full<Bytes>>,
        Response = http::Response<Bytes>,
        Error = tower::BoxError,
    >,
    url: &str,
) -> Result<Value, tower::BoxError> {
    let response = service
        .oneshot(Request::get(url).body(Full::default()).unwrap())
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    Ok(serde_json::from_slice(response.body()).unwrap())
}

#[tokio::test]
async fn a_thousand_concurrent_calls_for_one_user_make_one_exchange_and_users_never_share() {
    let harness = Harness::start(Shape::Rfc8693, Duration::from_millis(200)).await;
    harness.user("alice-token", "alice");
    harness.user("bob-token", "bob");
    let exchange = harness_exchange(&harness);
    let target = Downstream::audience(AUDIENCE).scopes(["crm:read"]);
    let alice = caller(&harness, "alice", "alice-token");
    let tokens =
        futures_util::future::join_all((0..1000).map(|_| exchange.token(&alice, &target))).await;
    assert_eq!(harness.exchanges(), 1, "one exchange for 1,000 calls");
    let first = tokens[0]
        .as_ref()
        .unwrap()
        .access_token()
        .expose()
        .to_owned();
    assert!(tokens
        .iter()
        .all(|t| t.as_ref().unwrap().access_token().expose() == first));

    let bob = caller(&harness, "bob", "bob-token");
    let bobs = exchange.token(&bob, &target).await.unwrap();
    assert_ne!(bobs.access_token().expose(), first);
    assert_eq!(harness.exchanges(), 2);
    // Through the API: each gets their own identity.
    let url = format!("{}/api/whoami", harness.base);
    let as_bob = exchange.on_behalf_of(bob.clone(), target.clone(), HttpClient::new());
    assert_eq!(whoami(as_bob, &url).await.unwrap()["user"], "bob");
    let as_alice = exchange.on_behalf_of(alice.clone(), target.clone(), HttpClient::new());
    assert_eq!(whoami(as_alice, &url).await.unwrap()["user"], "alice");
    // The same user through another client, or with other scopes, is another key.
    let mut other_client = AuthData::clone(alice.info());
    other_client.client_id = Some("another-client".into());
    let other = Caller::new(
        AuthInfo::from(other_client),
        CallerToken::bearer("alice-token").unwrap(),
    )
    .unwrap();
    exchange.token(&other, &target).await.unwrap();
    assert_eq!(harness.exchanges(), 3);
    assert_eq!(harness.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_downstream_401_leads_to_one_new_exchange_for_everyone_who_saw_it() {
    let harness = Harness::start(Shape::Rfc8693, Duration::from_millis(50)).await;
    harness.user("alice-token", "alice");
    let exchange = harness_exchange(&harness);
    let target = Downstream::audience(AUDIENCE).scopes(["crm:read"]);
    let alice = caller(&harness, "alice", "alice-token");
    let url = format!("{}/api/whoami", harness.base);
    let service = exchange.on_behalf_of(alice.clone(), target.clone(), HttpClient::new());
    let first = whoami(service.clone(), &url).await.unwrap();
    assert_eq!(harness.exchanges(), 1);
    // The API now refuses that token (revoked, say): once per request that carries it.
    let revoked = first["token"].as_str().unwrap().to_owned();
    harness
        .books
        .lock()
        .unwrap()
        .refuse_once
        .extend(std::iter::repeat_n(revoked.clone(), 20));
    let answers =
        futures_util::future::join_all((0..20).map(|_| whoami(service.clone(), &url))).await;
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer["user"], "alice");
        assert_ne!(answer["token"], revoked.as_str());
    }
    assert_eq!(harness.exchanges(), 2, "one new exchange");
    assert_eq!(harness.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_refusal_is_typed_not_cached_and_becomes_an_mcp_error() {
    let harness = Harness::start(Shape::Rfc8693, Duration::ZERO).await;
    harness.user("carol-token", "carol");
    harness
        .books
        .lock()
        .unwrap()
        .refused
        .insert("carol".into(), "consent_required".into());
    let exchange = harness_exchange(&harness);
    let target = Downstream::audience(AUDIENCE).scopes(["crm:read"]);
    let carol = caller(&harness, "carol", "carol-token");
    let error = exchange.token(&carol, &target).await.unwrap_err();
    let ExchangeError::Refused { code, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(code, "consent_required");
    assert!(!error.is_transient());
    let mcp = rmcp::ErrorData::from(error);
    assert_eq!(mcp.data.unwrap()["error"], "consent_required");
    assert!(mcp.message.contains("refused to act for this user"));
    // Not cached: once consent is given, the next call goes through.
    harness.books.lock().unwrap().refused.clear();
    exchange.token(&carol, &target).await.unwrap();
    assert_eq!(harness.exchanges(), 2);

    // An unknown subject token, a wrong client secret, an unreachable server.
    let unknown = exchange
        .token(&caller(&harness, "mallory", "made-up"), &target)
        .await
        .unwrap_err();
    assert!(matches!(&unknown, ExchangeError::Refused { code, .. } if code == "invalid_grant"));
    let wrong_secret = TokenExchange::with_token_endpoint(
        &harness.base,
        &format!("{}/token", harness.base),
        ClientRegistration::confidential(
            CLIENT_ID,
            "wrong",
            TokenEndpointAuthMethod::ClientSecretBasic,
        ),
    )
    .unwrap();
    let error = wrong_secret.token(&carol, &target).await.unwrap_err();
    assert!(
        matches!(error, ExchangeError::Misconfigured(_)),
        "{error:?}"
    );
    assert!(!error.to_string().contains("wrong"));
    let (_socket, closed) = support::refusing_port();
    let down = TokenExchange::with_token_endpoint(
        &closed,
        &format!("{closed}/token"),
        ClientRegistration::confidential(
            CLIENT_ID,
            CLIENT_SECRET,
            TokenEndpointAuthMethod::ClientSecretBasic,
        ),
    )
    .unwrap()
    .any_caller_issuer();
    let error = down.token(&carol, &target).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(!format!("{error} {error:?}").contains("carol-token"));
    // A caller from another issuer: its token is not sent here unless allowed.
    let foreign = caller_of("https://other-idp.test", "carol", "carol-token");
    let error = exchange.token(&foreign, &target).await.unwrap_err();
    assert!(
        matches!(error, ExchangeError::Misconfigured(_)),
        "{error:?}"
    );
    assert_eq!(harness.exchanges(), 3, "nothing sent");
    let lenient = harness_exchange(&harness).any_caller_issuer();
    lenient.token(&foreign, &target).await.unwrap();
    // No verified caller on the request.
    assert_eq!(
        Caller::from_extensions(&http::Extensions::new()).unwrap_err(),
        ExchangeError::NoCaller
    );
}

#[tokio::test]
async fn entras_on_behalf_of_request_has_its_shape() {
    let harness = Harness::start(Shape::EntraOnBehalfOf, Duration::ZERO).await;
    harness.user("alice-token", "alice");
    let exchange = harness_exchange(&harness).profile(ExchangeProfile::EntraOnBehalfOf);
    let target = Downstream::scoped(["api://crm/.default"]);
    let alice = caller(&harness, "alice", "alice-token");
    let url = format!("{}/api/whoami", harness.base);
    let service = exchange.on_behalf_of(alice, target, HttpClient::new());
    assert_eq!(whoami(service, &url).await.unwrap()["user"], "alice");
    assert_eq!(harness.exchanges(), 1);
    assert_eq!(harness.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn the_token_goes_only_to_the_downstream_resources_origin() {
    let harness = Harness::start(Shape::Rfc8693, Duration::ZERO).await;
    harness.user("alice-token", "alice");
    let exchange = harness_exchange(&harness);
    let (_socket, elsewhere) = support::refusing_port();
    let target = Downstream::audience(AUDIENCE).with_resource(format!("{}/api", harness.base));
    let service = exchange.on_behalf_of(
        caller(&harness, "alice", "alice-token"),
        target,
        HttpClient::new(),
    );
    let error = service
        .oneshot(
            Request::get(format!("{elsewhere}/steal"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("another origin"), "{error}");
    assert_eq!(harness.exchanges(), 0, "refused before any exchange");
}
