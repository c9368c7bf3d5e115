//! `JwtVerifier` against local issuers shaped like real identity providers (Microsoft Entra ID
//! v2, Keycloak, Auth0): each one an axum app on 127.0.0.1 serving the provider's discovery and
//! JWKS paths, its tokens signed with the fixture keys and shaped as the provider issues them
//! (issuer format, audience, `azp`, `scp`/`scope`, quirks), as their public documentation
//! describes. No real provider is ever contacted.

mod support;

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http_body_util::Full;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::jwt_issuer::{now, EC_PRIVATE, RSA_PRIVATE};
use support::{bind, send, serve, serve_on};
use tower_mcp_oauth::error::ErrorKind;
use tower_mcp_oauth::server::{
    AuthInfo, JwtVerifier, RequireBearerLayer, TokenVerifier, TrustedIssuer, VerifyError,
};

/// The MCP server's canonical URL: the resource every token is meant for.
const RESOURCE: &str = "https://mcp.example.test/mcp";

// ---------------------------------------------------------------------------------------------
// What every provider shares: a request log, the fixture keys as JWKs, signing.

/// The paths a local provider was asked for, in order (404s included).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn paths(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, path: &str) -> usize {
        self.paths().iter().filter(|p| *p == path).count()
    }

    /// `app` with every request logged, and a 404 for every path it does not serve.
    fn around(&self, app: Router) -> Router {
        let log = self.clone();
        app.fallback(|| async { StatusCode::NOT_FOUND })
            .layer(tower::util::MapRequestLayer::new(
                move |request: Request| {
                    log.0.lock().unwrap().push(request.uri().path().to_owned());
                    request
                },
            ))
    }
}

/// The public half of a fixture key (`ES256`: the EC key, anything else: the RSA key) as a JWK
/// with `kid`, then `members` set (a `null` member removed).
fn public_jwk(alg: Algorithm, kid: &str, members: Value) -> Value {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        _ => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    };
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    for (name, value) in members.as_object().unwrap() {
        if value.is_null() {
            jwk.as_object_mut().unwrap().remove(name);
        } else {
            jwk[name] = value.clone();
        }
    }
    jwk
}

/// `claims` signed with the fixture key for `alg`, under a header with `typ` and `kid`.
fn sign(claims: &Value, alg: Algorithm, kid: Option<&str>, typ: &str) -> String {
    let mut header = Header::new(alg);
    header.typ = Some(typ.to_owned());
    header.kid = kid.map(str::to_owned);
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        _ => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    };
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// The reason `token` is refused, failing the test if it is accepted or if the verifier
/// could not decide (a refusal must be `invalid_token`, never a 503).
async fn refused(verifier: &JwtVerifier, token: &str) -> String {
    match verifier.verify(token).await {
        Ok(info) => panic!("accepted: {:?}", info.claims),
        Err(VerifyError::Invalid(why)) => why,
        Err(other) => panic!("not a refusal: {other}"),
    }
}

async fn accepted(verifier: &JwtVerifier, token: &str) -> AuthInfo {
    verifier
        .verify(token)
        .await
        .unwrap_or_else(|error| panic!("refused: {error}"))
}

// ---------------------------------------------------------------------------------------------
// Microsoft Entra ID v2 (multi-tenant).
//
// Issuer `https://login.microsoftonline.com/{tenant id}/v2.0`; OpenID metadata at
// `{issuer}/.well-known/openid-configuration`, whose `issuer` is the tenant's, also when the
// tenant is named by a domain; the `common` metadata names `{tenantid}` literally. Every tenant's
// tokens are signed by the same keys (`/common/discovery/v2.0/keys`, and the same set at
// `/{tenant}/discovery/v2.0/keys`), whose JWKs carry no `alg`, an x5t-like `kid` and an `issuer`
// member. Access tokens: RS256, `aud` the API's App ID URI (or client id), `tid`, `azp`, `scp`
// (space-separated delegated scopes), `ver` "2.0".

const TENANT_A: &str = "6b0c3e5a-1f2d-4c8e-9a7b-2d4f6e8a0c1b";
const TENANT_B: &str = "c1d2e3f4-a5b6-4789-8abc-def012345678";
/// A tenant nobody allowed, whose tokens are signed with the very same keys.
const TENANT_C: &str = "0f9e8d7c-6b5a-4493-8281-706f5e4d3c2b";
/// Tenant A's verified domain: its metadata names tenant A's id as issuer.
const TENANT_A_DOMAIN: &str = "contoso.onmicrosoft.com";
const ENTRA_KID: &str = "JYhAcTPMZ_LX6DBlOWQ7Hn0NeXE";
const APP_ID_URI: &str = "api://mcp-server";
const ENTRA_CLIENT: &str = "8d3c2a10-4e5f-4a6b-9c7d-0e1f2a3b4c5d";

struct Entra {
    base: String,
    log: Log,
}

impl Entra {
    async fn start() -> Self {
        let (listener, base) = bind().await;
        let log = Log::default();
        let metadata = |State(base): State<String>, Path(tenant): Path<String>| async move {
            let issuer_tenant = match tenant.as_str() {
                TENANT_A | TENANT_B | TENANT_C => tenant.clone(),
                TENANT_A_DOMAIN => TENANT_A.to_owned(),
                "common" | "organizations" | "consumers" => "{tenantid}".to_owned(),
                _ => {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        Json(json!({
                            "error": "invalid_tenant",
                            "error_description": format!("AADSTS90002: Tenant '{tenant}' not found."),
                        })),
                    ))
                }
            };
            Ok(Json(json!({
                "issuer": format!("{base}/{issuer_tenant}/v2.0"),
                "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
                "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
                "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
            })))
        };
        let keys = |State(base): State<String>| async move {
            Json(json!({"keys": [public_jwk(
                Algorithm::RS256,
                ENTRA_KID,
                json!({
                    "alg": null,
                    "use": "sig",
                    "x5t": ENTRA_KID,
                    "issuer": format!("{base}/{{tenantid}}/v2.0"),
                    "cloud_instance_name": "microsoftonline.com",
                }),
            )]}))
        };
        let app = Router::new()
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(metadata),
            )
            .route("/{tenant}/discovery/v2.0/keys", get(keys))
            .with_state(base.clone());
        serve_on(listener, log.around(app));
        Self { base, log }
    }

    fn template(&self) -> String {
        format!("{}/{{tenant}}/v2.0", self.base)
    }

    fn issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}/v2.0", self.base)
    }

    fn common_jwks(&self) -> String {
        format!("{}/common/discovery/v2.0/keys", self.base)
    }

    /// A delegated v2 access token of `tenant` for `aud`.
    fn claims(&self, tenant: &str, aud: &str) -> Value {
        let now = now();
        json!({
            "aud": aud,
            "iss": self.issuer(tenant),
            "iat": now,
            "nbf": now,
            "exp": now + 3900,
            "aio": "AXQAi/8TAAAA",
            "azp": ENTRA_CLIENT,
            "azpacr": "0",
            "name": "Adele Vance",
            "oid": "2b7c3f1e-0d9a-4c5b-8e6f-7a1b2c3d4e5f",
            "preferred_username": "adele@contoso.onmicrosoft.com",
            "rh": "0.AXQA",
            "scp": "tools.read tools.call",
            "sub": "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA",
            "tid": tenant,
            "uti": "fqiBqXLPj0eQa82S-IYFAA",
            "ver": "2.0",
        })
    }

    fn token(&self, tenant: &str, aud: &str) -> String {
        sign(
            &self.claims(tenant, aud),
            Algorithm::RS256,
            Some(ENTRA_KID),
            "JWT",
        )
    }
}

/// Every tenant the verifiers below must refuse though its token is validly signed.
fn entra_foreign_issuers(entra: &Entra) -> Vec<String> {
    vec![
        entra.issuer(TENANT_C),
        entra.issuer("common"),
        entra.issuer("organizations"),
        entra.issuer("{tenantid}"),
    ]
}

#[tokio::test]
async fn entra_allowed_tenants_pass_on_the_common_keys_fetched_once() {
    let entra = Entra::start().await;
    let verifier = JwtVerifier::for_audience(RESOURCE)
        .audience(APP_ID_URI)
        .trust(
            TrustedIssuer::tenants(&entra.template(), [TENANT_A, TENANT_B])
                .unwrap()
                .jwks_url(entra.common_jwks()),
        )
        .discover()
        .await
        .unwrap();
    assert!(entra.log.paths().is_empty(), "a JWKS URL needs no metadata");

    for tenant in [TENANT_A, TENANT_B] {
        let info = accepted(&verifier, &entra.token(tenant, APP_ID_URI)).await;
        assert_eq!(info.issuer.as_deref(), Some(entra.issuer(tenant).as_str()));
        assert_eq!(info.claims["tid"], tenant);
        assert_eq!(info.scopes, ["tools.read", "tools.call"]);
        assert_eq!(info.client_id.as_deref(), Some(ENTRA_CLIENT));
        assert_eq!(info.audience, [APP_ID_URI]);
    }
    // Two tenants, one shared key set: one fetch.
    assert_eq!(entra.log.paths(), ["/common/discovery/v2.0/keys"]);

    // The resource URL as `aud` passes too; any other API's token does not.
    accepted(&verifier, &entra.token(TENANT_A, RESOURCE)).await;
    for other in [
        "api://other-api",
        "00000003-0000-0000-c000-000000000000", // Microsoft Graph
        "api://mcp-server/",
    ] {
        let why = refused(&verifier, &entra.token(TENANT_B, other)).await;
        assert_eq!(why, "the token is not for this resource (aud)", "{other}");
    }

    // A token of a tenant nobody allowed, signed by the same keys, goes nowhere; nor do the
    // `common`-style issuers, which no Entra token names but a forger might.
    for issuer in entra_foreign_issuers(&entra) {
        let mut claims = entra.claims(TENANT_C, APP_ID_URI);
        claims["iss"] = json!(issuer);
        let token = sign(&claims, Algorithm::RS256, Some(ENTRA_KID), "JWT");
        let why = refused(&verifier, &token).await;
        assert_eq!(why, "the token is from another issuer", "{issuer}");
    }
    assert_eq!(entra.log.count("/common/discovery/v2.0/keys"), 1);
    assert_eq!(entra.log.paths().len(), 1);
}

#[tokio::test]
async fn entra_tenants_discover_their_own_metadata_and_keys() {
    let entra = Entra::start().await;
    let verifier = JwtVerifier::for_audience(RESOURCE)
        .audience(APP_ID_URI)
        .trust(TrustedIssuer::tenants(&entra.template(), [TENANT_A, TENANT_B]).unwrap())
        .discover()
        .await
        .unwrap();
    // RFC 8414's path-inserted URLs first (Entra has none), then OpenID Connect's.
    let probes = |tenant: &str| {
        [
            format!("/.well-known/oauth-authorization-server/{tenant}/v2.0"),
            format!("/.well-known/openid-configuration/{tenant}/v2.0"),
            format!("/{tenant}/v2.0/.well-known/openid-configuration"),
        ]
    };
    let expected: Vec<String> = probes(TENANT_A)
        .into_iter()
        .chain(probes(TENANT_B))
        .collect();
    assert_eq!(entra.log.paths(), expected);

    for round in 0..2 {
        for tenant in [TENANT_A, TENANT_B] {
            let info = accepted(&verifier, &entra.token(tenant, APP_ID_URI)).await;
            assert_eq!(info.claims["tid"], tenant, "round {round}");
        }
    }
    // Each tenant's keys come from its own jwks_uri, once.
    assert_eq!(
        entra.log.count(&format!("/{TENANT_A}/discovery/v2.0/keys")),
        1
    );
    assert_eq!(
        entra.log.count(&format!("/{TENANT_B}/discovery/v2.0/keys")),
        1
    );
    assert_eq!(entra.log.paths().len(), expected.len() + 2);

    for issuer in entra_foreign_issuers(&entra) {
        let mut claims = entra.claims(TENANT_C, APP_ID_URI);
        claims["iss"] = json!(issuer);
        let token = sign(&claims, Algorithm::RS256, Some(ENTRA_KID), "JWT");
        assert_eq!(
            refused(&verifier, &token).await,
            "the token is from another issuer"
        );
    }
    // Nothing was asked of the refused tenants.
    assert!(
        !entra.log.paths().iter().any(|p| p.contains(TENANT_C)),
        "{:?}",
        entra.log.paths()
    );
    accepted(&verifier, &entra.token(TENANT_B, RESOURCE)).await;
    let why = refused(&verifier, &entra.token(TENANT_B, "api://other-api")).await;
    assert_eq!(why, "the token is not for this resource (aud)");
}

#[tokio::test]
async fn entra_tenants_named_by_domain_or_common_fail_discovery() {
    let entra = Entra::start().await;
    // Entra's metadata for a domain names the tenant id: tokens never carry the domain, so a
    // domain in the allow-list is a configuration error that discovery catches.
    for tenant in [TENANT_A_DOMAIN, "common"] {
        let error = JwtVerifier::for_audience(RESOURCE)
            .trust(TrustedIssuer::tenants(&entra.template(), [tenant]).unwrap())
            .discover()
            .await
            .unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::MetadataMismatch,
            "{tenant}: {error}"
        );
    }
    // An unknown tenant: Entra answers 400, a client error, so every candidate is a miss.
    let error = JwtVerifier::for_audience(RESOURCE)
        .trust(TrustedIssuer::tenants(&entra.template(), ["no-such-tenant"]).unwrap())
        .discover()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DiscoveryFailed, "{error}");
}

// ---------------------------------------------------------------------------------------------
// Entra over HTTP: RequireBearerLayer in front of an axum route.

/// `/mcp` behind `layer`, answering with the caller's AuthInfo; its URL.
async fn protected(layer: RequireBearerLayer<JwtVerifier>) -> String {
    let app = Router::new()
        .route(
            "/mcp",
            post(|Extension(info): Extension<AuthInfo>| async move {
                Json(json!({
                    "subject": info.subject,
                    "client_id": info.client_id,
                    "scopes": info.scopes,
                    "issuer": info.issuer,
                    "tid": info.claims.get("tid"),
                }))
            }),
        )
        .layer(layer);
    format!("{}/mcp", serve(app).await)
}

async fn call(url: &str, token: &str) -> support::Answer {
    send(
        http::Request::post(url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::from(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            ))
            .unwrap(),
    )
    .await
}

fn challenge(answer: &support::Answer) -> String {
    answer
        .headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn entra_tokens_over_http_get_200_with_auth_info_or_401_invalid_token() {
    let entra = Entra::start().await;
    let verifier = JwtVerifier::for_audience(RESOURCE)
        .audience(APP_ID_URI)
        .trust(
            TrustedIssuer::tenants(&entra.template(), [TENANT_A, TENANT_B])
                .unwrap()
                .jwks_url(entra.common_jwks()),
        )
        .discover_lazily()
        .unwrap();
    let metadata = format!("{RESOURCE}/.well-known/oauth-protected-resource");
    let mcp = protected(
        RequireBearerLayer::new(verifier)
            .resource_metadata(&metadata)
            .required_scopes(["tools.read"]),
    )
    .await;

    let answer = call(&mcp, &entra.token(TENANT_A, APP_ID_URI)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", challenge(&answer));
    assert_eq!(
        answer.json(),
        json!({
            "subject": "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA",
            "client_id": ENTRA_CLIENT,
            "scopes": ["tools.read", "tools.call"],
            "issuer": entra.issuer(TENANT_A),
            "tid": TENANT_A,
        })
    );

    // Tenant C's token, validly signed with the common keys.
    let answer = call(&mcp, &entra.token(TENANT_C, APP_ID_URI)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let www = challenge(&answer);
    assert!(www.starts_with(r#"Bearer error="invalid_token""#), "{www}");
    assert!(www.contains("another issuer"), "{www}");
    assert!(
        www.contains(&format!(r#"resource_metadata="{metadata}""#)),
        "{www}"
    );

    // Signed right, from the right tenant, without the scope every request needs.
    let mut narrow = entra.claims(TENANT_B, APP_ID_URI);
    narrow["scp"] = json!("tools.call");
    let narrow = sign(&narrow, Algorithm::RS256, Some(ENTRA_KID), "JWT");
    let answer = call(&mcp, &narrow).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let www = challenge(&answer);
    assert!(
        www.starts_with(r#"Bearer error="insufficient_scope""#),
        "{www}"
    );
    assert_eq!(entra.log.paths(), ["/common/discovery/v2.0/keys"]);
}

/// A layer that knows its resource (as it must, to check DPoP `htu`) leaves the audience to a
/// `JwtVerifier`, so the extra audience the verifier accepts (Entra's App ID URI) passes it.
#[tokio::test]
async fn entra_app_id_uri_tokens_pass_a_layer_that_knows_its_resource() {
    let entra = Entra::start().await;
    let verifier = JwtVerifier::for_audience(RESOURCE)
        .audience(APP_ID_URI)
        .trust(
            TrustedIssuer::tenants(&entra.template(), [TENANT_A])
                .unwrap()
                .jwks_url(entra.common_jwks()),
        )
        .build()
        .unwrap();
    let mcp = protected(RequireBearerLayer::new(verifier).resource(RESOURCE)).await;
    let answer = call(&mcp, &entra.token(TENANT_A, RESOURCE)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", challenge(&answer));
    let answer = call(&mcp, &entra.token(TENANT_A, APP_ID_URI)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", challenge(&answer));
}

// ---------------------------------------------------------------------------------------------
// Keycloak.
//
// Realm issuer `{base}/realms/{realm}`; OpenID metadata appended to it, JWKS at
// `{issuer}/protocol/openid-connect/certs` (a signing key and an `enc` RSA-OAEP key). Access
// tokens carry no `aud` unless an audience mapper adds one (or `"account"`, from the default
// roles), `azp` the client, `scope`, and a `typ` claim "Bearer". This realm signs with ES256.

const KC_KID: &str = "x8Ttz9pdVAVkQ0lO2D3m5YH6AzRZr3bQ1W1yXjv7g0E";
const KC_ENC_KID: &str = "kc-enc-rsa-oaep";
const KC_CLIENT: &str = "mcp-client";

struct Keycloak {
    base: String,
    log: Log,
}

impl Keycloak {
    async fn start() -> Self {
        let (listener, base) = bind().await;
        let log = Log::default();
        let issuer = format!("{base}/realms/mcp");
        let oidc = format!("{issuer}/protocol/openid-connect");
        let metadata = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{oidc}/auth"),
            "token_endpoint": format!("{oidc}/token"),
            "introspection_endpoint": format!("{oidc}/token/introspect"),
            "userinfo_endpoint": format!("{oidc}/userinfo"),
            "end_session_endpoint": format!("{oidc}/logout"),
            "jwks_uri": format!("{oidc}/certs"),
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        });
        // The `enc` key holds the fixture's RSA key: only its `use` keeps it from verifying.
        let certs = json!({"keys": [
            public_jwk(Algorithm::ES256, KC_KID, json!({"use": "sig"})),
            public_jwk(Algorithm::RS256, KC_ENC_KID, json!({"use": "enc", "alg": "RSA-OAEP"})),
        ]});
        let app = Router::new()
            .route(
                "/realms/mcp/.well-known/openid-configuration",
                get(move || async move { Json(metadata) }),
            )
            .route(
                "/realms/mcp/protocol/openid-connect/certs",
                get(move || async move { Json(certs) }),
            );
        serve_on(listener, log.around(app));
        Self { base, log }
    }

    fn issuer(&self) -> String {
        format!("{}/realms/mcp", self.base)
    }

    fn claims(&self, azp: &str) -> Value {
        let now = now();
        json!({
            "exp": now + 300,
            "iat": now,
            "auth_time": now,
            "jti": "onrtac:6f1c0a52-8d0b-4f43-9a3e-2c1b0f5e7d61",
            "iss": self.issuer(),
            "sub": "f3a1b2c4-5d6e-4f70-8a9b-0c1d2e3f4a5b",
            "typ": "Bearer",
            "azp": azp,
            "sid": "0b7c9d2e-1f3a-4b5c-8d6e-7f8091a2b3c4",
            "acr": "1",
            "allowed-origins": ["http://localhost:3000"],
            "realm_access": {"roles": ["default-roles-mcp", "offline_access", "uma_authorization"]},
            "scope": "openid profile email mcp:tools",
            "email_verified": true,
            "preferred_username": "alice",
        })
    }

    fn token(&self, claims: &Value) -> String {
        sign(claims, Algorithm::ES256, Some(KC_KID), "JWT")
    }
}

#[tokio::test]
async fn keycloak_tokens_without_aud_pass_only_with_the_opt_in_and_the_right_azp() {
    let keycloak = Keycloak::start().await;
    let strict = JwtVerifier::for_audience(RESOURCE)
        .trust(TrustedIssuer::new(keycloak.issuer()))
        .discover()
        .await
        .unwrap();
    let lenient = JwtVerifier::for_audience(RESOURCE)
        .trust(TrustedIssuer::new(keycloak.issuer()).without_audience([KC_CLIENT]))
        .discover()
        .await
        .unwrap();
    assert_eq!(
        keycloak.log.paths(),
        [
            "/.well-known/oauth-authorization-server/realms/mcp",
            "/.well-known/openid-configuration/realms/mcp",
            "/realms/mcp/.well-known/openid-configuration",
        ]
        .repeat(2)
    );

    let no_aud = keycloak.token(&keycloak.claims(KC_CLIENT));
    assert_eq!(
        refused(&strict, &no_aud).await,
        "the token has no aud claim"
    );
    let info = accepted(&lenient, &no_aud).await;
    assert_eq!(info.client_id.as_deref(), Some(KC_CLIENT));
    assert_eq!(info.scopes, ["openid", "profile", "email", "mcp:tools"]);
    assert!(info.audience.is_empty());
    assert_eq!(info.claims["typ"], "Bearer");

    // Another client of the realm: its tokens are not for us.
    let other = keycloak.token(&keycloak.claims("account-console"));
    assert_eq!(
        refused(&lenient, &other).await,
        "the token has no aud, and its azp is not an authorized party"
    );

    // Keycloak's default roles put `"aud": "account"` in user tokens: an aud that is not ours
    // is refused, opt-in or not.
    let mut account = keycloak.claims(KC_CLIENT);
    account["aud"] = json!("account");
    let account = keycloak.token(&account);
    for verifier in [&strict, &lenient] {
        assert_eq!(
            refused(verifier, &account).await,
            "the token is not for this resource (aud)"
        );
    }

    // With an audience mapper the token names the resource: both verifiers take it.
    let mut mapped = keycloak.claims(KC_CLIENT);
    mapped["aud"] = json!([RESOURCE, "account"]);
    let mapped = keycloak.token(&mapped);
    accepted(&strict, &mapped).await;
    accepted(&lenient, &mapped).await;

    // One certs fetch per verifier, whatever the number of tokens.
    assert_eq!(
        keycloak
            .log
            .count("/realms/mcp/protocol/openid-connect/certs"),
        2
    );
}

// ---------------------------------------------------------------------------------------------
// Auth0.
//
// Issuer `https://{tenant}.auth0.com/`, WITH its trailing slash, in metadata and tokens; OpenID
// metadata at `/.well-known/openid-configuration`, JWKS at `/.well-known/jwks.json`. An access
// token for an API has `aud` `[api identifier, "{issuer}userinfo"]` when `openid` was asked,
// `scope`, `azp`, and `permissions` with RBAC; `typ` "JWT", or "at+jwt" with the RFC 9068 profile.

const AUTH0_API: &str = "https://mcp-api.example.test";
const AUTH0_KID: &str = "QzBCMDk2QzBFRTM0RDhCNTg3RkIzNjUwMDQ4NkFCMzIxQTc1RDg2Ng";
const AUTH0_CLIENT: &str = "Xh4Zq9bN2mT7vK1pL8sW3yR6cF0dJ5gA";

struct Auth0 {
    base: String,
    log: Log,
}

impl Auth0 {
    async fn start() -> Self {
        let (listener, base) = bind().await;
        let log = Log::default();
        let metadata = json!({
            "issuer": format!("{base}/"),
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "registration_endpoint": format!("{base}/oidc/register"),
            "revocation_endpoint": format!("{base}/oauth/revoke"),
            "scopes_supported": ["openid", "profile", "offline_access", "email"],
            "code_challenge_methods_supported": ["S256", "plain"],
            "id_token_signing_alg_values_supported": ["HS256", "RS256", "PS256"],
        });
        let jwks = json!({"keys": [public_jwk(
            Algorithm::RS256,
            AUTH0_KID,
            json!({"use": "sig", "x5t": "QzBCMDk2QzBFRTM0RDhCNTg3RkIzNjUwMDQ4NkFCMzIxQTc1RDg2Ng"}),
        )]});
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(metadata) }),
            )
            .route(
                "/.well-known/jwks.json",
                get(move || async move { Json(jwks) }),
            );
        serve_on(listener, log.around(app));
        Self { base, log }
    }

    fn issuer(&self) -> String {
        format!("{}/", self.base)
    }

    fn claims(&self) -> Value {
        let now = now();
        json!({
            "iss": self.issuer(),
            "sub": "auth0|65f1c2d3e4a5b6c7d8e9f0a1",
            "aud": [AUTH0_API, format!("{}/userinfo", self.base)],
            "iat": now,
            "exp": now + 86400,
            "scope": "openid profile read:tools call:tools",
            "azp": AUTH0_CLIENT,
            "permissions": ["call:tools", "read:tools"],
        })
    }

    fn token(&self, claims: &Value, typ: &str) -> String {
        sign(claims, Algorithm::RS256, Some(AUTH0_KID), typ)
    }
}

#[tokio::test]
async fn auth0_issuer_with_its_trailing_slash_is_discovered_and_its_api_audience_accepted() {
    let auth0 = Auth0::start().await;
    let verifier = JwtVerifier::for_audience(RESOURCE)
        .audience(AUTH0_API)
        .trust(TrustedIssuer::new(auth0.issuer()))
        .discover()
        .await
        .unwrap();
    // The root candidates: RFC 8414 (none at Auth0), then OpenID Connect.
    assert_eq!(
        auth0.log.paths(),
        [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ]
    );

    let info = accepted(&verifier, &auth0.token(&auth0.claims(), "JWT")).await;
    assert_eq!(info.issuer.as_deref(), Some(auth0.issuer().as_str()));
    assert_eq!(
        info.subject.as_deref(),
        Some("auth0|65f1c2d3e4a5b6c7d8e9f0a1")
    );
    assert_eq!(info.client_id.as_deref(), Some(AUTH0_CLIENT));
    assert_eq!(
        info.scopes,
        ["openid", "profile", "read:tools", "call:tools"]
    );
    assert_eq!(
        info.claims["permissions"],
        json!(["call:tools", "read:tools"])
    );
    assert_eq!(auth0.log.count("/.well-known/jwks.json"), 1);

    // Only the userinfo audience (a token for another API asked with `openid`): refused.
    let mut userinfo_only = auth0.claims();
    userinfo_only["aud"] = json!([format!("{}/userinfo", auth0.base), "https://other-api"]);
    assert_eq!(
        refused(&verifier, &auth0.token(&userinfo_only, "JWT")).await,
        "the token is not for this resource (aud)"
    );
    // The issuer is compared exactly: without its slash it is someone else.
    let mut no_slash = auth0.claims();
    no_slash["iss"] = json!(auth0.base);
    assert_eq!(
        refused(&verifier, &auth0.token(&no_slash, "JWT")).await,
        "the token is from another issuer"
    );

    // Without the API identifier configured, the same token is not for this resource.
    let resource_only = JwtVerifier::for_audience(RESOURCE)
        .trust(
            TrustedIssuer::new(auth0.issuer())
                .jwks_url(format!("{}/.well-known/jwks.json", auth0.base)),
        )
        .build()
        .unwrap();
    assert_eq!(
        refused(&resource_only, &auth0.token(&auth0.claims(), "JWT")).await,
        "the token is not for this resource (aud)"
    );

    // Requiring RFC 9068 tokens: Auth0's default profile (typ JWT) is refused, its RFC 9068
    // profile (typ at+jwt) accepted.
    let at_jwt_only = JwtVerifier::for_audience(RESOURCE)
        .audience(AUTH0_API)
        .trust(TrustedIssuer::new(auth0.issuer()))
        .require_at_jwt_typ(true)
        .discover()
        .await
        .unwrap();
    assert_eq!(
        refused(&at_jwt_only, &auth0.token(&auth0.claims(), "JWT")).await,
        "the token's typ is not at+jwt"
    );
    accepted(&at_jwt_only, &auth0.token(&auth0.claims(), "at+jwt")).await;
}

#[tokio::test]
async fn auth0_issuer_configured_without_its_slash_fails_discovery() {
    let auth0 = Auth0::start().await;
    let error = JwtVerifier::for_audience(RESOURCE)
        .audience(AUTH0_API)
        .trust(TrustedIssuer::new(&auth0.base))
        .discover()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::MetadataMismatch, "{error}");
}

// ---------------------------------------------------------------------------------------------
// Two providers in one verifier: each issuer's tokens are checked with its own keys only.

#[tokio::test]
async fn keycloak_and_entra_in_one_verifier_never_lend_each_other_keys() {
    let keycloak = Keycloak::start().await;
    let entra = Entra::start().await;
    let verifier = JwtVerifier::for_audience(RESOURCE)
        .audience(APP_ID_URI)
        .trust(TrustedIssuer::new(keycloak.issuer()).without_audience([KC_CLIENT]))
        .trust(
            TrustedIssuer::tenants(&entra.template(), [TENANT_A])
                .unwrap()
                .jwks_url(entra.common_jwks()),
        )
        .discover()
        .await
        .unwrap();

    let kc = accepted(&verifier, &keycloak.token(&keycloak.claims(KC_CLIENT))).await;
    assert_eq!(kc.issuer.as_deref(), Some(keycloak.issuer().as_str()));
    let ms = accepted(&verifier, &entra.token(TENANT_A, APP_ID_URI)).await;
    assert_eq!(ms.issuer.as_deref(), Some(entra.issuer(TENANT_A).as_str()));

    // Keycloak claims under Entra's key, and Entra claims under Keycloak's.
    let kc_claims = keycloak.claims(KC_CLIENT);
    let entra_claims = entra.claims(TENANT_A, APP_ID_URI);
    for (token, why) in [
        (
            sign(&kc_claims, Algorithm::RS256, Some(ENTRA_KID), "JWT"),
            "no key of the issuer matches the token's kid and alg",
        ),
        (
            sign(&entra_claims, Algorithm::ES256, Some(KC_KID), "JWT"),
            "no key of the issuer matches the token's kid and alg",
        ),
        // Keycloak's kid over Entra's (RSA) key: the kid is Keycloak's `enc` key, never a
        // signing key, though it holds the very RSA key that signed.
        (
            sign(&kc_claims, Algorithm::RS256, Some(KC_ENC_KID), "JWT"),
            "no key of the issuer matches the token's kid and alg",
        ),
        // Entra's kid over Keycloak's (EC) key: Entra's key of that kid is RSA.
        (
            sign(&entra_claims, Algorithm::ES256, Some(ENTRA_KID), "JWT"),
            "no key of the issuer matches the token's kid and alg",
        ),
        // No kid at all: Entra's only key is RSA, so nothing fits ES256.
        (
            sign(&entra_claims, Algorithm::ES256, None, "JWT"),
            "no key of the issuer matches the token's kid and alg",
        ),
    ] {
        assert_eq!(refused(&verifier, &token).await, why);
    }

    // Keycloak's no-aud opt-in is Keycloak's alone: an Entra token without aud is refused.
    let mut entra_no_aud = entra.claims(TENANT_A, APP_ID_URI);
    entra_no_aud.as_object_mut().unwrap().remove("aud");
    entra_no_aud["azp"] = json!(KC_CLIENT);
    let token = sign(&entra_no_aud, Algorithm::RS256, Some(ENTRA_KID), "JWT");
    assert_eq!(
        refused(&verifier, &token).await,
        "the token has no aud claim"
    );

    // Each key set was fetched on first use, then once more for the first unknown kid; the
    // other unknown kids wait for the refetch interval.
    assert_eq!(
        keycloak
            .log
            .count("/realms/mcp/protocol/openid-connect/certs"),
        2
    );
    assert_eq!(entra.log.count("/common/discovery/v2.0/keys"), 2);
}
