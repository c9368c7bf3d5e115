//! The embedded authorization server's token endpoint over real HTTP on 127.0.0.1: the code
//! grant with PKCE and its JWT, code and refresh-token reuse, refresh rotation, client
//! authentication, and client credentials.
#![cfg(all(feature = "authorization-server", feature = "jwt"))]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::json;
use support::auth_server::{code_grant, pkce, Server, REDIRECT};
use support::send;
use tower_mcp_oauth::authorization_server::TokenFormat;
use tower_mcp_oauth::server::{JwtVerifier, TokenVerifier};

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
            &code_grant(
                &code,
                &verifier,
                &[
                    ("redirect_uri", "http://127.0.0.1:9/other"),
                    ("client_id", &client),
                ],
            ),
            None,
        )
        .await;
    assert_eq!(answer.error(), "invalid_grant", "redirect_uri mismatch");

    let (code, verifier) = s.code(&client, "mcp:tools").await;
    let answer = s
        .post_form(
            "/token",
            &code_grant(&code, &verifier, &[("client_id", &client)]),
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
            &code_grant(
                &code,
                &verifier,
                &[
                    ("redirect_uri", REDIRECT),
                    ("client_id", &client),
                    ("resource", "http://127.0.0.1:1/other"),
                ],
            ),
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
        let mut pairs = code_grant(&code, &verifier, &[("redirect_uri", REDIRECT)]);
        if with_id {
            pairs.push(("client_id", id.as_str()));
        }
        let answer = s.post_form("/token", &pairs, Some((&id, &secret))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    }
    // A wrong secret, an unknown client, a method other than the registered one.
    let (code, verifier) = s.code(&id, "mcp:tools").await;
    let pairs = code_grant(&code, &verifier, &[("redirect_uri", REDIRECT)]);
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
            &code_grant(
                &code,
                &verifier,
                &[
                    ("redirect_uri", REDIRECT),
                    ("client_id", &id),
                    ("client_secret", &secret),
                ],
            ),
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
            &code_grant(
                &code,
                &verifier,
                &[("redirect_uri", REDIRECT), ("client_id", &id)],
            ),
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
            &code_grant(
                &code,
                &verifier,
                &[
                    ("redirect_uri", REDIRECT),
                    ("client_id", &post_id),
                    ("client_secret", &post_secret),
                ],
            ),
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

/// A token request carrying a DPoP proof dated `iat_ahead` seconds from now.
fn with_proof(
    server: &Server,
    key: &tower_mcp_oauth::dpop::DpopKey,
    jti: &str,
    iat_ahead: u64,
    pairs: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let claims = json!({"jti": jti, "htm": "POST", "htu": format!("{}/token", server.base),
        "iat": support::now_secs() + iat_ahead});
    let mut request = server.form_request("/token", pairs, None);
    request
        .headers_mut()
        .insert("dpop", key.sign_claims(&claims).unwrap().parse().unwrap());
    request
}

#[tokio::test]
async fn a_client_flooding_dpop_proofs_locks_out_no_other_client() {
    use tower_mcp_oauth::dpop::{DpopAlgorithm, DpopKey, MemoryReplayCache};
    let server = Server::start(|config| config.dpop_replay_cache(MemoryReplayCache::new(40))).await;
    let flooder = server.public_client().await;
    let honest = server.public_client().await;
    let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let (code, verifier) = server.code(&honest, "mcp:tools").await;

    // Made-up codes, four times the cache, each proof dated as far ahead as allowed.
    let made_up_verifier = "v".repeat(43);
    for n in 0..160 {
        let rest = [("redirect_uri", REDIRECT), ("client_id", flooder.as_str())];
        let pairs = code_grant("made-up", &made_up_verifier, &rest);
        let answer = send(with_proof(&server, &key, &format!("bogus-{n}"), 59, &pairs)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    }
    // Real grants from a client of the operator's, four times the cache, dated ahead too.
    let (machine, secret) = server.operator_client().await;
    for n in 0..160 {
        let pairs = [
            ("grant_type", "client_credentials"),
            ("client_id", machine.as_str()),
            ("client_secret", secret.as_str()),
            ("scope", "mcp:tools"),
        ];
        send(with_proof(
            &server,
            &key,
            &format!("machine-{n}"),
            59,
            &pairs,
        ))
        .await;
    }

    let rest = [
        ("redirect_uri", REDIRECT),
        ("client_id", honest.as_str()),
        ("resource", server.resource.as_str()),
    ];
    let pairs = code_grant(&code, &verifier, &rest);
    let answer = send(with_proof(&server, &key, "honest", 0, &pairs)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["token_type"], "DPoP");
}

/// A confidential client signed in: its id, secret and first tokens.
async fn confidential_tokens(s: &Server) -> (String, String, serde_json::Value) {
    let (client, secret) = s.confidential_client("client_secret_post").await;
    let (code, verifier) = s.code(&client, "mcp:tools").await;
    let rest = [
        ("redirect_uri", REDIRECT),
        ("client_id", client.as_str()),
        ("client_secret", secret.as_str()),
        ("resource", s.resource.as_str()),
    ];
    let tokens = s
        .post_form("/token", &code_grant(&code, &verifier, &rest), None)
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    (client, secret, tokens.json())
}

#[tokio::test]
async fn a_refresh_repeated_within_the_grace_period_gets_the_same_successor() {
    let s = Server::start(|c| c).await;
    let (client, secret, tokens) = confidential_tokens(&s).await;
    let refresh = |token: String| {
        let (s, client, secret) = (&s, client.clone(), secret.clone());
        async move {
            s.refresh_with(&client, &token, &[("client_secret", secret.as_str())])
                .await
        }
    };
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let rotated = refresh(first.clone()).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    let second = rotated.json()["refresh_token"].as_str().unwrap().to_owned();
    // The client died before keeping `second`, and presents `first` again.
    let repeated = refresh(first.clone()).await;
    assert_eq!(repeated.status, StatusCode::OK, "{}", repeated.text());
    assert_eq!(repeated.json()["refresh_token"], second.as_str());
    assert_ne!(
        repeated.json()["access_token"],
        rotated.json()["access_token"]
    );
    // The family goes on from the successor...
    let third = refresh(second).await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.text());
    let third = third.json()["refresh_token"].as_str().unwrap().to_owned();
    // ...and a token two rotations old is reuse: the family is revoked.
    assert_eq!(refresh(first).await.error(), "invalid_grant");
    assert_eq!(refresh(third).await.error(), "invalid_grant");
}

#[tokio::test]
async fn a_public_clients_bearer_refresh_token_gets_no_grace() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let tokens = s.tokens(&client).await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let rotated = s.refresh(&client, &first).await;
    let second = rotated.json()["refresh_token"].as_str().unwrap().to_owned();
    // Nothing ties the token to its holder: presented again, it is theft, at once.
    assert_eq!(s.refresh(&client, &first).await.error(), "invalid_grant");
    assert_eq!(s.refresh(&client, &second).await.error(), "invalid_grant");
}

#[tokio::test]
async fn without_a_grace_period_a_repeated_refresh_revokes_the_family() {
    let s = Server::start(|c| c.refresh_rotation_grace(Duration::ZERO)).await;
    let (client, secret, tokens) = confidential_tokens(&s).await;
    let auth = [("client_secret", secret.as_str())];
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let rotated = s.refresh_with(&client, &first, &auth).await;
    let second = rotated.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.refresh_with(&client, &first, &auth).await.error(),
        "invalid_grant"
    );
    assert_eq!(
        s.refresh_with(&client, &second, &auth).await.error(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn a_refresh_refused_for_a_replayed_proof_leaves_the_token_current() {
    use tower_mcp_oauth::dpop::{DpopAlgorithm, DpopKey};
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let (code, verifier) = s.code(&client, "mcp:tools").await;
    let rest = [
        ("redirect_uri", REDIRECT),
        ("client_id", client.as_str()),
        ("resource", s.resource.as_str()),
    ];
    let pairs = code_grant(&code, &verifier, &rest);
    let tokens = send(with_proof(&s, &key, "code", 0, &pairs)).await;
    assert_eq!(tokens.json()["token_type"], "DPoP", "{}", tokens.text());
    let refresh_pairs = |token: &str| {
        vec![
            ("grant_type".to_owned(), "refresh_token".to_owned()),
            ("refresh_token".to_owned(), token.to_owned()),
            ("client_id".to_owned(), client.clone()),
        ]
    };
    let refresh = |token: &str, jti: &str| {
        let pairs = refresh_pairs(token);
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        send(with_proof(&s, &key, jti, 0, &pairs))
    };
    let first = tokens.json()["refresh_token"].as_str().unwrap().to_owned();
    let rotated = refresh(&first, "r1").await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    let second = rotated.json()["refresh_token"].as_str().unwrap().to_owned();
    // The same proof again, with the new token: refused before anything is rotated...
    let replayed = refresh(&second, "r1").await;
    assert_eq!(replayed.error(), "invalid_dpop_proof");
    // ...so the token is still current.
    let next = refresh(&second, "r2").await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text());
}
