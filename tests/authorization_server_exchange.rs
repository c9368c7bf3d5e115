//! The embedded authorization server's token-exchange grant (RFC 8693), over real HTTP on
//! 127.0.0.1: what it issues (audience, narrowed scopes, `act`, no refresh token, a lifetime
//! within the subject token's, DPoP binding), what revoking the subject's grant does, and every
//! refusal a hostile or mistaken resource server meets.
#![cfg(all(feature = "authorization-server", feature = "jwt"))]

mod support;

use base64::Engine;
use http::StatusCode;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use support::auth_server::Server;
use support::jwt_issuer::{self, Issuer};
use support::{now_secs, send, Answer};
use tower_mcp_oauth::authorization_server::{
    AuthorizationServer, AuthorizationServerConfig, AutoApprove, DownstreamApi,
    MemoryAuthorizationStore, TokenExchangePolicy,
};
use tower_mcp_oauth::dpop::{DpopAlgorithm, DpopKey};
use tower_mcp_oauth::metadata::ClientMetadata;
use tower_mcp_oauth::server::JwtVerifier;

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const CRM: &str = "https://crm.test/api";

/// The server, its MCP server's confidential client (id, secret), and a user's token set.
struct Setup {
    server: Server,
    exchanger: (String, String),
    user: Value,
}

async fn confidential(server: &Server) -> (String, String) {
    register_confidential(&server.server).await
}

async fn register_confidential(server: &AuthorizationServer) -> (String, String) {
    let (id, secret) = server
        .register_confidential_client(ClientMetadata {
            grant_types: vec![EXCHANGE.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    (id, secret.expose().to_owned())
}

/// A server whose policy `policy` makes from its MCP server's confidential client id and its
/// resource, the client registered first (its id is random), and a user's token set.
async fn setup_with(policy: impl FnOnce(String, String) -> TokenExchangePolicy) -> Setup {
    setup_in(std::sync::Arc::new(MemoryAuthorizationStore::new()), policy).await
}

/// [`setup_with`] on `store`.
async fn setup_in(
    store: std::sync::Arc<dyn tower_mcp_oauth::authorization_server::AuthorizationStore>,
    policy: impl FnOnce(String, String) -> TokenExchangePolicy,
) -> Setup {
    let (listener, base) = support::bind().await;
    let resource = format!("{base}/mcp");
    let config = || {
        AuthorizationServerConfig::new(&base)
            .unwrap()
            .resource(&resource)
            .scopes(["mcp:tools", "mcp:admin"])
            .approval_policy(AutoApprove::new("alice"))
            .store(store.clone())
    };
    let exchanger = register_confidential(&AuthorizationServer::new(config()).unwrap()).await;
    let server = AuthorizationServer::new(
        config().token_exchange(policy(exchanger.0.clone(), resource.clone())),
    )
    .unwrap();
    support::serve_on(listener, server.router());
    let server = Server {
        base,
        resource,
        server,
    };
    let client = server.public_client().await;
    let user = server.tokens(&client).await;
    Setup {
        server,
        exchanger,
        user,
    }
}

/// The CRM for the MCP server's client, and what `extra` adds.
async fn setup(extra: impl FnOnce(TokenExchangePolicy) -> TokenExchangePolicy) -> Setup {
    setup_with(|id, resource| {
        extra(
            TokenExchangePolicy::new().downstream(
                DownstreamApi::new(CRM)
                    .scopes(["crm:read", "crm:write"])
                    .exchanged_by(id, resource),
            ),
        )
    })
    .await
}

impl Setup {
    /// What `/introspect` says of `token`, asked by the resource server `introspector`.
    async fn introspect(&self, token: &str, (id, secret): &(String, String)) -> Value {
        self.server
            .post_form("/introspect", &[("token", token)], Some((id, secret)))
            .await
            .json()
    }

    /// Revokes the user's grant: RFC 7009 on their refresh token, as their client.
    async fn revoke_users_grant(&self) -> Answer {
        let client_id = claims(self.user_token())["client_id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.server
            .post_form(
                "/revoke",
                &[
                    ("token", self.user["refresh_token"].as_str().unwrap()),
                    ("client_id", &client_id),
                ],
                None,
            )
            .await
    }

    fn user_token(&self) -> &str {
        self.user["access_token"].as_str().unwrap()
    }

    async fn exchange(&self, extra: &[(&str, &str)]) -> Answer {
        self.exchange_as(&self.exchanger, self.user_token(), extra)
            .await
    }

    async fn exchange_as(
        &self,
        (id, secret): &(String, String),
        subject_token: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut pairs = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", subject_token),
            ("subject_token_type", ACCESS_TOKEN),
        ];
        pairs.extend_from_slice(extra);
        self.server
            .post_form("/token", &pairs, Some((id, secret)))
            .await
    }
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn error_of(answer: &Answer) -> String {
    answer.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_exchanged_token_is_for_the_downstream_api_acts_for_the_user_and_names_the_actor() {
    let setup = setup(|p| p).await;
    let answer = setup.exchange(&[("audience", CRM)]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let body = answer.json();
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "crm:read crm:write");
    assert!(body.get("refresh_token").is_none(), "no refresh token");
    let token = body["access_token"].as_str().unwrap();
    let exchanged = claims(token);
    let subject = claims(setup.user_token());
    assert_eq!(exchanged["sub"], "alice");
    assert_eq!(exchanged["aud"], CRM);
    assert_eq!(exchanged["iss"], setup.server.base);
    assert_eq!(exchanged["client_id"], setup.exchanger.0.as_str());
    assert_eq!(exchanged["act"], json!({ "sub": setup.exchanger.0 }));
    assert!(exchanged["exp"].as_u64() <= subject["exp"].as_u64());

    // Narrowed on request; `resource` names the same target as `audience`.
    let narrowed = setup
        .exchange(&[("resource", CRM), ("audience", CRM), ("scope", "crm:read")])
        .await;
    assert_eq!(narrowed.status, StatusCode::OK, "{}", narrowed.text());
    assert_eq!(narrowed.json()["scope"], "crm:read");

    // The metadata says so.
    let metadata = support::get(&format!(
        "{}/.well-known/oauth-authorization-server",
        setup.server.base
    ))
    .await
    .json();
    assert!(metadata["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(EXCHANGE)));

    // Introspection reports it active, with its actor, until the user's grant is revoked;
    // then the exchanged token goes with it, and the subject token cannot be exchanged again.
    let introspector = setup.server.operator_client().await;
    let introspected = setup.introspect(token, &introspector).await;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["act"], json!({ "sub": setup.exchanger.0 }));
    let revoked = setup.revoke_users_grant().await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    assert_eq!(
        setup.introspect(token, &introspector).await["active"],
        false,
        "revoked with the user's grant"
    );
    let again = setup.exchange(&[("audience", CRM)]).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&again), "invalid_grant");
}

/// A user's token is exchanged again and again (one per downstream call whose cache lapsed):
/// it stays live, and so do the recent exchanged tokens. The memory store had kept exchanged
/// tokens in the family's queue of four, so the fourth exchange retired the user's own token.
#[tokio::test]
async fn exchanging_a_users_token_again_and_again_never_retires_it() {
    let setup = setup(|p| p).await;
    let mut exchanged = Vec::new();
    for _ in 0..12 {
        let answer = setup.exchange(&[("audience", CRM)]).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        exchanged.push(answer.json()["access_token"].as_str().unwrap().to_owned());
    }
    let user = setup.introspect(setup.user_token(), &setup.exchanger).await;
    assert_eq!(user["active"], true, "the user's token: {user}");
    let first = setup.introspect(&exchanged[0], &setup.exchanger).await;
    assert_eq!(first["active"], true, "the first exchanged token: {first}");
}

#[tokio::test]
async fn a_dpop_proof_binds_the_exchanged_token_to_the_resource_servers_key() {
    let setup = setup(|p| p).await;
    let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let proof = key
        .proof("POST", &format!("{}/token", setup.server.base), None, None)
        .unwrap();
    let mut request = setup.server.form_request(
        "/token",
        &[
            ("grant_type", EXCHANGE),
            ("subject_token", setup.user_token()),
            ("subject_token_type", ACCESS_TOKEN),
            ("audience", CRM),
        ],
        Some((&setup.exchanger.0, &setup.exchanger.1)),
    );
    request.headers_mut().insert("dpop", proof.parse().unwrap());
    let answer = send(request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["token_type"], "DPoP");
    let token = claims(answer.json()["access_token"].as_str().unwrap());
    assert_eq!(token["cnf"]["jkt"], key.thumbprint());
}

#[tokio::test]
async fn every_exchange_outside_the_policy_is_refused_with_its_reason() {
    let setup = setup(|p| p).await;
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("audience", "https://other.test/")], "invalid_target"),
        (&[], "invalid_target"),
        (
            &[("audience", CRM), ("resource", "https://other.test/")],
            "invalid_target",
        ),
        (
            &[("audience", CRM), ("scope", "crm:read crm:delete")],
            "invalid_scope",
        ),
        (
            &[
                ("audience", CRM),
                ("actor_token", "x"),
                ("actor_token_type", ACCESS_TOKEN),
            ],
            "invalid_request",
        ),
    ];
    for (extra, expected) in cases {
        let answer = setup.exchange(extra).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{extra:?}");
        assert_eq!(error_of(&answer), expected, "{extra:?}: {}", answer.text());
    }
    let id_token = setup
        .server
        .post_form(
            "/token",
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", setup.user_token()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:id_token",
                ),
                ("audience", CRM),
            ],
            Some((&setup.exchanger.0, &setup.exchanger.1)),
        )
        .await;
    assert_eq!(error_of(&id_token), "invalid_request");

    // A made-up or foreign subject token.
    let forged = setup
        .exchange_as(
            &setup.exchanger,
            "not-a-token-we-issued",
            &[("audience", CRM)],
        )
        .await;
    assert_eq!(error_of(&forged), "invalid_grant");

    // Another confidential client, not named by the policy.
    let stranger = confidential(&setup.server).await;
    let answer = setup
        .exchange_as(&stranger, setup.user_token(), &[("audience", CRM)])
        .await;
    assert_eq!(
        error_of(&answer),
        "unauthorized_client",
        "{}",
        answer.text()
    );

    // A public client (the MCP client itself) cannot exchange its own token.
    let public = setup.server.public_client().await;
    let answer = setup
        .server
        .post_form(
            "/token",
            &[
                ("grant_type", EXCHANGE),
                ("client_id", &public),
                ("subject_token", setup.user_token()),
                ("subject_token_type", ACCESS_TOKEN),
                ("audience", CRM),
            ],
            None,
        )
        .await;
    assert_eq!(
        error_of(&answer),
        "unauthorized_client",
        "{}",
        answer.text()
    );

    // A wrong secret.
    let answer = setup
        .exchange_as(
            &(setup.exchanger.0.clone(), "wrong".into()),
            setup.user_token(),
            &[("audience", CRM)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // An exchanged token is for the CRM, not the MCP server: it cannot be exchanged onwards.
    let exchanged = setup.exchange(&[("audience", CRM)]).await.json();
    let onwards = setup
        .exchange_as(
            &setup.exchanger,
            exchanged["access_token"].as_str().unwrap(),
            &[("audience", CRM)],
        )
        .await;
    assert_eq!(error_of(&onwards), "invalid_grant", "{}", onwards.text());

    // Dynamic registration cannot make an exchanger.
    let registered = setup
        .server
        .register(json!({
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": [EXCHANGE],
        }))
        .await;
    assert_eq!(
        registered.status,
        StatusCode::BAD_REQUEST,
        "{}",
        registered.text()
    );
}

#[tokio::test]
async fn without_a_policy_the_grant_is_not_offered() {
    let server = Server::start(|config| config).await;
    let (id, secret) = confidential(&server).await;
    let client = server.public_client().await;
    let user = server.tokens(&client).await;
    let answer = server
        .post_form(
            "/token",
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", user["access_token"].as_str().unwrap()),
                ("subject_token_type", ACCESS_TOKEN),
                ("audience", CRM),
            ],
            Some((&id, &secret)),
        )
        .await;
    assert_eq!(error_of(&answer), "unsupported_grant_type");
    let metadata = support::get(&format!(
        "{}/.well-known/oauth-authorization-server",
        server.base
    ))
    .await
    .json();
    assert!(!metadata["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(EXCHANGE)));
}

#[tokio::test]
async fn a_trusted_issuers_token_is_exchanged_for_its_issuer_qualified_subject() {
    let idp = Issuer::start().await;
    let mcp = "https://mcp.test/mcp";
    let verifier = JwtVerifier::builder(&idp.base, mcp)
        .jwks_url(format!("{}/jwks", idp.base))
        .build()
        .unwrap();
    let setup = setup(|policy| policy.trust_subject_tokens(verifier)).await;
    let token = |aud: &str, act: Option<Value>| {
        let mut claims = json!({
            "iss": idp.base, "aud": aud, "sub": "bob", "exp": now_secs() + 300,
        });
        if let Some(act) = act {
            claims["act"] = act;
        }
        jwt_issuer::sign(&claims, Algorithm::ES256, Some("ec-1"))
    };
    // The policy names the MCP server at this server's resource, not mcp.test: refused.
    let answer = setup
        .exchange_as(&setup.exchanger, &token(mcp, None), &[("audience", CRM)])
        .await;
    assert_eq!(
        error_of(&answer),
        "unauthorized_client",
        "{}",
        answer.text()
    );

    // Allowed for the IdP's audience: the subject is qualified, an earlier actor kept.
    let verifier = JwtVerifier::builder(&idp.base, mcp)
        .jwks_url(format!("{}/jwks", idp.base))
        .build()
        .unwrap();
    let setup = setup_with(|id, _| {
        TokenExchangePolicy::new()
            .downstream(
                DownstreamApi::new(CRM)
                    .scopes(["crm:read"])
                    .exchanged_by(id, mcp),
            )
            .trust_subject_tokens(verifier)
    })
    .await;
    let answer = setup
        .exchange_as(
            &setup.exchanger,
            &token(mcp, Some(json!({"sub": "gateway"}))),
            &[("audience", CRM)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let exchanged = claims(answer.json()["access_token"].as_str().unwrap());
    assert_eq!(exchanged["sub"], format!("{}#bob", idp.base));
    assert_eq!(
        exchanged["act"],
        json!({"sub": setup.exchanger.0, "act": {"sub": "gateway"}})
    );
    // A token of the IdP for another audience fails its verifier.
    let answer = setup
        .exchange_as(
            &setup.exchanger,
            &token("https://else.test", None),
            &[("audience", CRM)],
        )
        .await;
    assert_eq!(error_of(&answer), "invalid_grant");
}

#[tokio::test]
async fn a_policy_can_make_the_downstream_access_follow_the_users_consent() {
    let setup = setup_with(|id, resource| {
        TokenExchangePolicy::new().downstream(
            DownstreamApi::new(CRM)
                .scopes(["crm:read"])
                .requires_subject_scopes(["mcp:admin"])
                .exchanged_by(id, resource),
        )
    })
    .await;
    // The user consented to mcp:tools only.
    let refused = setup.exchange(&[("audience", CRM)]).await;
    assert_eq!(error_of(&refused), "invalid_scope", "{}", refused.text());
    let client = setup.server.public_client().await;
    let (code, verifier) = setup.server.code(&client, "mcp:tools mcp:admin").await;
    let admin = setup
        .server
        .exchange(&client, &code, &verifier)
        .await
        .json();
    let allowed = setup
        .exchange_as(
            &setup.exchanger,
            admin["access_token"].as_str().unwrap(),
            &[("audience", CRM)],
        )
        .await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.text());
}

/// On PostgreSQL: the actor and the grant are kept with the exchanged token, so introspection
/// names the actor and revoking the user's grant takes the token with it.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn on_postgresql_the_actor_and_the_grant_are_kept_with_the_exchanged_token() {
    use tower_mcp_oauth::authorization_server::PostgresAuthorizationStore;
    let Some(url) = support::postgres::database_url() else {
        return;
    };
    let url = support::postgres::fresh_schema(&url).await;
    let pool = tower_mcp_oauth::postgres::PostgresPool::connect(&url)
        .await
        .unwrap();
    let store = PostgresAuthorizationStore::new(pool).await.unwrap();
    let setup = setup_in(std::sync::Arc::new(store), |id, resource| {
        TokenExchangePolicy::new().downstream(
            DownstreamApi::new(CRM)
                .scopes(["crm:read"])
                .exchanged_by(id, resource),
        )
    })
    .await;
    let answer = setup.exchange(&[("audience", CRM)]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let token = answer.json()["access_token"].as_str().unwrap().to_owned();
    let introspector = setup.server.operator_client().await;
    let active = setup.introspect(&token, &introspector).await;
    assert_eq!(
        active["act"],
        json!({ "sub": setup.exchanger.0 }),
        "{active}"
    );
    let revoked = setup.revoke_users_grant().await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(
        setup.introspect(&token, &introspector).await["active"],
        false
    );
}
