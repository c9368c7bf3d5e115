//! The embedded authorization server's discovery and registration over real HTTP on 127.0.0.1:
//! metadata at every discovery path, the JWKS across a key rotation, CORS for browser clients,
//! dynamic registration's checks, and the configurations it refuses.
#![cfg(all(feature = "authorization-server", feature = "jwt"))]

mod support;

use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::json;
use support::auth_server::{pkce, Server, REDIRECT};
use support::{bind, get, query, send, serve_on};
use tower_mcp_oauth::authorization_server::{
    AuthorizationServer, AuthorizationServerConfig, ConsentPage,
};
use tower_mcp_oauth::server::{JwtVerifier, TokenVerifier};

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
    let (listener, origin) = bind().await;
    let issuer = format!("{origin}/tenant");
    let server = AuthorizationServer::new(
        AuthorizationServerConfig::new(&issuer)
            .unwrap()
            .resource(format!("{origin}/mcp")),
    )
    .unwrap();
    serve_on(listener, server.router());
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
