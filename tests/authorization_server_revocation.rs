//! Revocation and introspection at the embedded authorization server over real HTTP on
//! 127.0.0.1, and its in-process verifier, which sees a revocation at once.
#![cfg(all(feature = "authorization-server", feature = "jwt"))]

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use support::auth_server::{Server, REDIRECT};
use tower_mcp_oauth::authorization_server::TokenFormat;
use tower_mcp_oauth::server::TokenVerifier;

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
