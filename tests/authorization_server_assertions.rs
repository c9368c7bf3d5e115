//! The embedded authorization server taking JWTs that others sign, over real HTTP on 127.0.0.1:
//! `private_key_jwt` client authentication (inline keys and `jwks_uri`), the JWT-bearer grant
//! with workload identity tokens, and ID-JAGs from an enterprise IdP — each with our own
//! client's grant against it, and the hostile variants sent by hand.
#![cfg(all(feature = "authorization-server", feature = "jwt", feature = "client"))]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Form, Json, Router};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::auth_server::Server;
use support::jwt_issuer::{self, Issuer, EC_PRIVATE};
use support::{now_secs, send, serve, Answer};
use tower_mcp_oauth::authorization_server::{EnterpriseIdp, WorkloadIssuer};
use tower_mcp_oauth::client::{
    ClientKey, ClientRegistration, EnterpriseGrant, Grant, OAuthConfig, OAuthState,
    TokenEndpointAuthMethod, TokenSource,
};
use tower_mcp_oauth::metadata::ClientMetadata;
use tower_mcp_oauth::server::AuthInfo;
use tower_mcp_oauth::ErrorKind;
use url::Url;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The embedded server with a protected `/mcp` that answers with what the token says.
async fn start(
    configure: impl FnOnce(
        tower_mcp_oauth::authorization_server::AuthorizationServerConfig,
    ) -> tower_mcp_oauth::authorization_server::AuthorizationServerConfig,
) -> Server {
    Server::start_with(configure, |server, resource| {
        let whoami = |request: Request<axum::body::Body>| async move {
            let info = request.extensions().get::<AuthInfo>().cloned().unwrap();
            Json(json!({
                "sub": info.subject,
                "client_id": info.client_id,
                "scopes": info.scopes,
                "dpop_bound": info.dpop_jkt().is_some(),
            }))
        };
        // One call: the layer (DPoP accepted, local verifier) and the metadata that says so.
        let mcp = server.protected_resource(resource).unwrap();
        server
            .router()
            .merge(mcp.router(axum::Router::new().route("/", post(whoami))))
    })
    .await
}

fn mcp_request(s: &Server) -> Request<tower_mcp_oauth::http::RequestBody> {
    Request::post(&s.resource)
        .header("content-type", "application/json")
        .body(tower_mcp_oauth::http::RequestBody::from(b"{}".to_vec()))
        .unwrap()
}

/// What `/mcp` says about the token our client got with `config`.
async fn whoami(s: &Server, config: OAuthConfig) -> Value {
    let state = OAuthState::new(&s.resource, Some(config)).await.unwrap();
    state.authorize().await.unwrap();
    let client = state.to_authorized_http_client().await.unwrap();
    let response = client.send(mcp_request(s)).await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.headers());
    serde_json::from_slice(response.body()).unwrap()
}

async fn post_token(s: &Server, form: &[(&str, &str)]) -> Answer {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let request = Request::post(format!("{}/token", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    send(request).await
}

fn ec_jwks(kid: &str) -> Value {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.into());
    json!({ "keys": [jwk] })
}

fn sign_with(claims: &Value, header: Header) -> String {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn es256(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    header
}

fn jti() -> String {
    format!("jti-{}", rand::random::<u64>())
}

fn description(answer: &Answer) -> String {
    answer.json()["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

// ---- private_key_jwt ----

async fn key_client(s: &Server, keys: Value) -> String {
    s.server
        .register_private_key_jwt_client(ClientMetadata {
            grant_types: vec!["client_credentials".into()],
            scope: Some("mcp:tools".into()),
            jwks: Some(keys),
            ..Default::default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn our_private_key_jwt_client_gets_client_credentials_tokens() {
    let s = start(|c| c).await;
    let key = ClientKey::generate_es256().unwrap().with_kid("k1");
    let id = key_client(&s, json!({ "keys": [key.public_jwk()] })).await;
    let config = OAuthConfig::new()
        .client(ClientRegistration::private_key_jwt(&id, key).for_issuer(s.base.clone()))
        .grant(Grant::ClientCredentials)
        .scopes(["mcp:tools"]);
    let seen = whoami(&s, config).await;
    assert_eq!(seen["sub"], id.as_str());
    assert_eq!(seen["client_id"], id.as_str());
    assert_eq!(seen["scopes"], json!(["mcp:tools"]));
    // The server offers DPoP, so the client's tokens are bound to its DPoP key.
    assert_eq!(seen["dpop_bound"], true);

    // Another key claiming to be the client gets nothing.
    let impostor = ClientKey::generate_es256().unwrap().with_kid("k1");
    let config = OAuthConfig::new()
        .client(ClientRegistration::private_key_jwt(&id, impostor).for_issuer(s.base.clone()))
        .grant(Grant::ClientCredentials);
    let state = OAuthState::new(&s.resource, Some(config)).await.unwrap();
    assert_eq!(
        state.authorize().await.unwrap_err().kind(),
        ErrorKind::InvalidClient
    );
}

#[tokio::test]
async fn client_assertions_are_refused_when_replayed_misdirected_or_malformed() {
    let s = start(|c| c).await;
    let id = key_client(&s, ec_jwks("ec-1")).await;
    let now = now_secs();
    let claims = |changes: Value| {
        let mut claims = json!({
            "iss": id, "sub": id, "aud": s.base, "iat": now, "exp": now + 60, "jti": jti(),
        });
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    };
    let server = &s;
    let request = |assertion: String| async move {
        post_token(
            server,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ],
        )
        .await
    };

    let good = sign_with(&claims(json!({})), es256("ec-1"));
    let first = request(good.clone()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let again = request(good).await;
    assert_eq!(
        (again.status.as_u16(), again.error()),
        (401, "invalid_client".into())
    );
    assert!(description(&again).contains("used before"));

    // draft-ietf-oauth-rfc7523bis: the issuer alone, as one string; the token endpoint (which a
    // malicious server could name as its own) or an array is refused.
    let token_endpoint = format!("{}/token", s.base);
    for aud in [json!(token_endpoint), json!([s.base])] {
        let answer = request(sign_with(&claims(json!({ "aud": aud })), es256("ec-1"))).await;
        assert_eq!(answer.error(), "invalid_client", "{aud}");
    }

    let cases = [
        (
            "aud elsewhere",
            claims(json!({"aud": "https://other.example"})),
            "aud",
        ),
        ("expired", claims(json!({"exp": now - 120})), "expired"),
        (
            "too long-lived",
            claims(json!({"exp": now + 7200})),
            "an hour",
        ),
        ("no jti", claims(json!({"jti": null})), "jti"),
        (
            "iss is not the client",
            claims(json!({"iss": "someone"})),
            "iss and sub",
        ),
        ("no exp", claims(json!({"exp": null})), "exp"),
    ];
    for (case, claims, reason) in cases {
        let answer = request(sign_with(&claims, es256("ec-1"))).await;
        assert_eq!(answer.error(), "invalid_client", "{case}");
        assert!(
            description(&answer).contains(reason),
            "{case}: {}",
            description(&answer)
        );
    }
    // Signed with a key the client never registered (RSA, under the same kid).
    let forged = jwt_issuer::sign(&claims(json!({})), Algorithm::RS256, Some("ec-1"));
    assert_eq!(request(forged).await.error(), "invalid_client");
    // Unsigned and symmetric "signatures" are no assertion at all.
    let hmac = jwt_issuer::sign(&claims(json!({})), Algorithm::HS256, Some("ec-1"));
    assert_eq!(request(hmac).await.error(), "invalid_client");

    // A client_id that differs from the assertion's subject; two methods at once.
    let fresh = sign_with(&claims(json!({})), es256("ec-1"));
    let answer = post_token(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "someone-else"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &fresh),
        ],
    )
    .await;
    assert_eq!(answer.error(), "invalid_client");
    let answer = post_token(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", "guess"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &fresh),
        ],
    )
    .await;
    assert_eq!(answer.error(), "invalid_request");
    // The key client cannot fall back to no authentication at all.
    let answer = post_token(
        &s,
        &[("grant_type", "client_credentials"), ("client_id", &id)],
    )
    .await;
    assert_eq!(answer.error(), "invalid_client");
    // A secret client cannot authenticate with an assertion it has no keys for.
    let (secret_client, _) = s.confidential_client("client_secret_basic").await;
    let theirs = sign_with(
        &json!({"iss": secret_client, "sub": secret_client, "aud": s.base, "exp": now + 60, "jti": jti()}),
        es256("ec-1"),
    );
    assert_eq!(request(theirs).await.error(), "invalid_client");
}

#[tokio::test]
async fn client_keys_can_come_from_a_jwks_uri_fetched_once() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let keys = ec_jwks("ec-1");
    let jwks_base = serve(Router::new().route(
        "/jwks",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let keys = keys.clone();
            async move { Json(keys) }
        }),
    ))
    .await;
    let s = start(|c| c).await;
    let id = s
        .server
        .register_private_key_jwt_client(ClientMetadata {
            grant_types: vec!["client_credentials".into()],
            jwks_uri: Some(format!("{jwks_base}/jwks")),
            ..Default::default()
        })
        .await
        .unwrap();
    for _ in 0..3 {
        let now = now_secs();
        let assertion = sign_with(
            &json!({"iss": id, "sub": id, "aud": s.base, "exp": now + 60, "jti": jti()}),
            es256("ec-1"),
        );
        let answer = post_token(
            &s,
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ],
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn key_clients_are_for_the_operator_and_need_public_keys() {
    let s = start(|c| c).await;
    let missing = s
        .server
        .register_private_key_jwt_client(ClientMetadata {
            grant_types: vec!["client_credentials".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Registration);
    let private = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}]});
    let leaked = s
        .server
        .register_private_key_jwt_client(ClientMetadata {
            grant_types: vec!["client_credentials".into()],
            jwks: Some(private),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(leaked.kind(), ErrorKind::Registration);
    let dynamic = s
        .register(json!({
            "redirect_uris": [support::auth_server::REDIRECT],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": ec_jwks("ec-1"),
        }))
        .await;
    assert_eq!(dynamic.error(), "invalid_client_metadata");
    let bearer_grant = s
        .register(json!({"grant_types": [JWT_BEARER], "token_endpoint_auth_method": "none"}))
        .await;
    assert_eq!(bearer_grant.error(), "invalid_client_metadata");
    let metadata = support::get(&format!(
        "{}/.well-known/oauth-authorization-server",
        s.base
    ))
    .await
    .json();
    assert!(metadata["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("private_key_jwt")));
    assert!(metadata["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("ES256")));
    // No trusted issuer configured: the JWT-bearer grant is not offered.
    assert!(!metadata["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(JWT_BEARER)));
}

// ---- workload identity ----

const DEPLOYER: &str = "system:serviceaccount:ci:deployer";

/// A public client the operator registered for the JWT-bearer grant.
async fn jwt_bearer_client(s: &Server) -> String {
    s.server
        .register_client(ClientMetadata {
            grant_types: vec![JWT_BEARER.into()],
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn workload_server(cluster: &Issuer) -> (Server, String) {
    let issuer = WorkloadIssuer::new(&cluster.base)
        .audience("mcp-auth")
        .subject(DEPLOYER, ["mcp:tools"])
        .subject("system:serviceaccount:agents:*", ["mcp:tools", "mcp:admin"]);
    let s = start(|c| c.trust_workload_issuer(issuer)).await;
    let client = jwt_bearer_client(&s).await;
    (s, client)
}

fn workload_token(cluster: &Issuer, subject: &str, aud: &str) -> String {
    let now = now_secs();
    let claims = json!({
        "iss": cluster.base, "sub": subject, "aud": [aud], "iat": now, "exp": now + 600,
        "kubernetes.io": {"namespace": "ci"},
    });
    jwt_issuer::sign(&claims, Algorithm::ES256, Some("ec-1"))
}

#[tokio::test]
async fn workload_tokens_get_the_scopes_their_subject_is_allowed() {
    let cluster = Issuer::start().await;
    let (s, client) = workload_server(&cluster).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, workload_token(&cluster, DEPLOYER, "mcp-auth")).unwrap();
    let config = || {
        OAuthConfig::new()
            .client(ClientRegistration::public(&client))
            .grant(Grant::JwtBearer {
                assertion: TokenSource::file(&path),
            })
    };
    let seen = whoami(&s, config()).await;
    // Qualified by its issuer: a workload never names an interactive user.
    assert_eq!(seen["sub"], format!("{}#{DEPLOYER}", cluster.base));
    assert_eq!(seen["client_id"], client.as_str());
    assert_eq!(seen["scopes"], json!(["mcp:tools"]));

    let state = OAuthState::new(&s.resource, Some(config())).await.unwrap();
    // The projected token rotates to an agent's: read again, and that rule's scopes apply.
    std::fs::write(
        &path,
        workload_token(&cluster, "system:serviceaccount:agents:a1", &s.base),
    )
    .unwrap();
    assert_eq!(
        state.authorize().await.unwrap().scopes,
        ["mcp:tools", "mcp:admin"]
    );

    let refused = |token: String| {
        std::fs::write(&path, token).unwrap();
        let config = config();
        let resource = s.resource.clone();
        async move {
            let state = OAuthState::new(&resource, Some(config)).await.unwrap();
            state.authorize().await.unwrap_err().kind()
        }
    };
    assert_eq!(
        refused(workload_token(
            &cluster,
            "system:serviceaccount:other:x",
            "mcp-auth"
        ))
        .await,
        ErrorKind::UnauthorizedClient
    );
    assert_eq!(
        refused(workload_token(
            &cluster,
            DEPLOYER,
            "https://elsewhere.example"
        ))
        .await,
        ErrorKind::InvalidGrant
    );
    let expired = jwt_issuer::sign(
        &json!({"iss": cluster.base, "sub": DEPLOYER, "aud": "mcp-auth", "exp": now_secs() - 600}),
        Algorithm::ES256,
        Some("ec-1"),
    );
    assert_eq!(refused(expired).await, ErrorKind::InvalidGrant);
    let forged = jwt_issuer::sign(
        &json!({"iss": "https://untrusted.example", "sub": DEPLOYER, "aud": "mcp-auth", "exp": now_secs() + 600}),
        Algorithm::ES256,
        Some("ec-1"),
    );
    assert_eq!(refused(forged).await, ErrorKind::InvalidGrant);

    // More scopes than the subject's rule allows.
    std::fs::write(&path, workload_token(&cluster, DEPLOYER, "mcp-auth")).unwrap();
    let state = OAuthState::new(&s.resource, Some(config().scopes(["mcp:admin"])))
        .await
        .unwrap();
    assert_eq!(
        state.authorize().await.unwrap_err().kind(),
        ErrorKind::InvalidScope
    );
}

#[tokio::test]
async fn the_grant_is_refused_to_unregistered_clients_and_tampered_tokens() {
    let cluster = Issuer::start().await;
    let (s, client) = workload_server(&cluster).await;
    let token = workload_token(&cluster, DEPLOYER, "mcp-auth");
    let grant = |client_id: String, assertion: String| {
        let s = &s;
        async move {
            post_token(
                s,
                &[
                    ("grant_type", JWT_BEARER),
                    ("client_id", &client_id),
                    ("assertion", &assertion),
                ],
            )
            .await
        }
    };
    let answer = grant(client.clone(), token.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    // A workload token is a credential presented until it rotates: not single-use.
    assert_eq!(grant(client.clone(), token.clone()).await.status, 200);
    assert_eq!(answer.json()["token_type"], "Bearer");
    assert!(answer.json().get("refresh_token").is_none());

    let public = s.public_client().await;
    assert_eq!(
        grant(public, token.clone()).await.error(),
        "unauthorized_client"
    );
    let cut = token.rfind('.').unwrap() + 1;
    let mut tampered = token.clone();
    let flipped = if tampered.as_bytes()[cut] == b'A' {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(cut..cut + 1, flipped);
    assert_eq!(
        grant(client.clone(), tampered).await.error(),
        "invalid_grant"
    );
    assert_eq!(
        grant(client.clone(), "not.a.jwt".into()).await.error(),
        "invalid_grant"
    );
    let metadata = support::get(&format!(
        "{}/.well-known/oauth-authorization-server",
        s.base
    ))
    .await
    .json();
    assert!(metadata["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(JWT_BEARER)));
}

// ---- enterprise-managed authorization (ID-JAG) ----

/// An enterprise IdP: its keys and metadata from `Issuer`, and a token-exchange endpoint that
/// turns the user's ID token into an ID-JAG for the MCP client `mcp_client`.
async fn enterprise_idp(idp: &Issuer, mcp_client: &str) -> Url {
    let issuer = idp.base.clone();
    let mcp_client = mcp_client.to_owned();
    let exchange = move |Form(form): Form<HashMap<String, String>>| {
        let issuer = issuer.clone();
        let mcp_client = mcp_client.clone();
        async move {
            if form.get("subject_token").map(String::as_str) != Some("alice-id-token") {
                return Json(json!({"error": "invalid_grant"}));
            }
            let now = now_secs();
            let claims = json!({
                "iss": issuer, "sub": "alice@corp.example", "aud": form["audience"],
                "client_id": mcp_client, "resource": form["resource"],
                "scope": form.get("scope").cloned().unwrap_or_else(|| "mcp:tools".into()),
                "iat": now, "exp": now + 300, "jti": jti(),
            });
            let mut header = es256("ec-1");
            header.typ = Some("oauth-id-jag+jwt".into());
            Json(json!({
                "access_token": sign_with(&claims, header),
                "issued_token_type": "urn:ietf:params:oauth:token-type:id-jag",
                "token_type": "N_A",
                "expires_in": 300,
            }))
        }
    };
    let base = serve(Router::new().route("/token", post(exchange))).await;
    Url::parse(&format!("{base}/token")).unwrap()
}

async fn id_jag_server(idp: &Issuer) -> (Server, String, String) {
    let s = start(|c| c.trust_enterprise_idp(EnterpriseIdp::new(&idp.base))).await;
    let (id, secret) = s
        .server
        .register_confidential_client(ClientMetadata {
            grant_types: vec![JWT_BEARER.into()],
            token_endpoint_auth_method: Some("client_secret_post".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    (s, id, secret.expose().to_owned())
}

#[tokio::test]
async fn a_public_client_cannot_redeem_an_id_jag() {
    let idp = Issuer::start().await;
    let s = start(|c| c.trust_enterprise_idp(EnterpriseIdp::new(&idp.base))).await;
    let public = jwt_bearer_client(&s).await;
    let now = now_secs();
    let mut header = es256("ec-1");
    header.typ = Some("oauth-id-jag+jwt".into());
    let id_jag = sign_with(
        &json!({"iss": idp.base, "sub": "alice", "aud": s.base, "client_id": public,
            "iat": now, "exp": now + 300, "jti": jti()}),
        header,
    );
    let answer = post_token(
        &s,
        &[
            ("grant_type", JWT_BEARER),
            ("client_id", &public),
            ("assertion", &id_jag),
        ],
    )
    .await;
    assert_eq!(answer.error(), "unauthorized_client");
}

#[tokio::test]
async fn our_enterprise_client_trades_an_id_jag_for_tokens_of_the_user() {
    let idp = Issuer::start().await;
    let (s, id, secret) = id_jag_server(&idp).await;
    let exchange = enterprise_idp(&idp, &id).await;
    let grant = EnterpriseGrant::with_token_endpoint(
        idp.base.clone(),
        exchange,
        ClientRegistration::public("idp-client"),
        TokenSource::fixed("alice-id-token"),
    );
    let config = OAuthConfig::new()
        .client(
            ClientRegistration::confidential(
                &id,
                secret,
                TokenEndpointAuthMethod::ClientSecretPost,
            )
            .for_issuer(s.base.clone()),
        )
        .grant(Grant::EnterpriseManaged(grant));
    let seen = whoami(&s, config).await;
    assert_eq!(seen["sub"], "alice@corp.example");
    assert_eq!(seen["client_id"], id.as_str());
    assert_eq!(seen["scopes"], json!(["mcp:tools"]));
}

#[tokio::test]
async fn id_jags_are_single_use_and_bound_to_client_server_and_resource() {
    let idp = Issuer::start().await;
    let (s, id, secret) = id_jag_server(&idp).await;
    let now = now_secs();
    let id_jag = |changes: Value| {
        let mut claims = json!({
            "iss": idp.base, "sub": "alice@corp.example", "aud": s.base, "client_id": id,
            "resource": s.resource, "scope": "mcp:tools", "iat": now, "exp": now + 300, "jti": jti(),
        });
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        let mut header = es256("ec-1");
        header.typ = Some("oauth-id-jag+jwt".into());
        sign_with(&claims, header)
    };
    let grant = |assertion: String, scope: Option<&'static str>| {
        let (s, id, secret) = (&s, id.clone(), secret.clone());
        async move {
            let mut form = vec![
                ("grant_type", JWT_BEARER.to_owned()),
                ("client_id", id),
                ("client_secret", secret),
                ("assertion", assertion),
            ];
            if let Some(scope) = scope {
                form.push(("scope", scope.to_owned()));
            }
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_token(s, &form).await
        }
    };
    let good = id_jag(json!({}));
    let first = grant(good.clone(), None).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["scope"], "mcp:tools");
    let again = grant(good, None).await;
    assert_eq!(again.error(), "invalid_grant");
    assert!(description(&again).contains("used before"));

    let cases = [
        (
            "another client",
            json!({"client_id": "other"}),
            "another client",
        ),
        (
            "another server",
            json!({"aud": "https://as.example"}),
            "aud",
        ),
        (
            "another resource",
            json!({"resource": "https://other.example/mcp"}),
            "resource",
        ),
        ("expired", json!({"exp": now - 120}), "expired"),
        ("no iat", json!({"iat": null}), "iat"),
        ("no jti", json!({"jti": null}), "jti"),
        ("no sub", json!({"sub": null}), "sub"),
    ];
    for (case, changes, reason) in cases {
        let answer = grant(id_jag(changes), None).await;
        assert_eq!(answer.error(), "invalid_grant", "{case}");
        assert!(
            description(&answer).contains(reason),
            "{case}: {}",
            description(&answer)
        );
    }
    // More scopes than the IdP granted.
    assert_eq!(
        grant(id_jag(json!({})), Some("mcp:admin")).await.error(),
        "invalid_scope"
    );
    // RFC 7515's long form of the type is the same type.
    let mut long_form = es256("ec-1");
    long_form.typ = Some("application/oauth-id-jag+jwt".into());
    let claims_long = json!({"iss": idp.base, "sub": "alice@corp.example", "aud": s.base,
        "client_id": id, "resource": s.resource, "iat": now, "exp": now + 300, "jti": jti()});
    assert_eq!(
        grant(sign_with(&claims_long, long_form), None).await.status,
        200
    );
    // Without the ID-JAG typ it is no ID-JAG, and no workload issuer is trusted here.
    let untyped = sign_with(
        &json!({"iss": idp.base, "sub": "alice", "aud": s.base, "client_id": id, "exp": now + 300, "iat": now, "jti": jti()}),
        es256("ec-1"),
    );
    let answer = grant(untyped, None).await;
    assert_eq!(answer.error(), "invalid_grant");
    assert!(description(&answer).contains("not trusted"));
}

#[tokio::test]
async fn two_trusted_issuers_never_name_one_user() {
    let (prod, ci) = (Issuer::start().await, Issuer::start().await);
    let trusted = |cluster: &Issuer| {
        WorkloadIssuer::new(&cluster.base)
            .audience("mcp-auth")
            .subject(DEPLOYER, ["mcp:tools"])
    };
    // Without prefixes, the same `sub` from either would be one user: refused up front.
    let config =
        tower_mcp_oauth::authorization_server::AuthorizationServerConfig::new("http://127.0.0.1:9")
            .unwrap()
            .resource("http://127.0.0.1:9/mcp")
            .trust_workload_issuer(trusted(&prod).subject_prefix(""))
            .trust_workload_issuer(trusted(&ci).subject_prefix(""));
    let error =
        tower_mcp_oauth::authorization_server::AuthorizationServer::new(config).unwrap_err();
    assert_eq!(error.kind(), tower_mcp_oauth::ErrorKind::Config);
    assert!(error.to_string().contains("subject_prefix"), "{error}");

    let s = start(|c| {
        c.trust_workload_issuer(trusted(&prod).subject_prefix("prod:"))
            .trust_workload_issuer(trusted(&ci).subject_prefix("ci:"))
    })
    .await;
    let client = jwt_bearer_client(&s).await;
    let dir = tempfile::tempdir().unwrap();
    for (cluster, prefix) in [(&prod, "prod:"), (&ci, "ci:")] {
        let path = dir.path().join(prefix);
        std::fs::write(&path, workload_token(cluster, DEPLOYER, "mcp-auth")).unwrap();
        let config = OAuthConfig::new()
            .client(ClientRegistration::public(&client))
            .grant(Grant::JwtBearer {
                assertion: TokenSource::file(&path),
            });
        let seen = whoami(&s, config).await;
        assert_eq!(seen["sub"], format!("{prefix}{DEPLOYER}"));
    }
}

#[tokio::test]
async fn a_client_flooding_assertions_locks_out_no_other_client() {
    use tower_mcp_oauth::dpop::MemoryReplayCache;
    let s = start(|c| c.assertion_replay_cache(MemoryReplayCache::new(20))).await;
    let flooder = key_client(&s, ec_jwks("ec-1")).await;
    let honest = key_client(&s, ec_jwks("ec-1")).await;
    let now = now_secs();
    let assertion = |client: &str, exp: u64| {
        let claims = json!({"iss": client, "sub": client, "aud": s.base, "iat": now,
            "exp": exp, "jti": jti()});
        sign_with(&claims, es256("ec-1"))
    };
    let grant = |assertion: String| {
        let server = &s;
        async move {
            post_token(
                server,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", &assertion),
                ],
            )
            .await
        }
    };
    // Four times the cache, each assertion living as long as allowed (an hour).
    // Past the cache the flooder's own window closes behind what it lost (401).
    for _ in 0..80 {
        let status = grant(assertion(&flooder, now + 3_590)).await.status;
        assert!(status == 200 || status == 401, "{status}");
    }
    let answer = grant(assertion(&honest, now + 60)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
}
