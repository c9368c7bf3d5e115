//! The client flow end to end against a real authorization server and MCP endpoint on loopback.

mod support;

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use support::client::{headless, headless_config as config, CALLBACK};
use support::demo_server::{Behaviour, DemoServer};
use support::mcp::echo_message;
use support::now_secs;
use tower_mcp_oauth::client::{
    AuthorizationHandler, AuthorizedHttpClient, ClientRegistration, FileStore, HeadlessHandler,
    LoopbackHandler, OAuthConfig, OAuthState, TokenEndpointAuthMethod,
};
use tower_mcp_oauth::http::HttpClient;
use tower_mcp_oauth::ErrorKind;
use url::Url;

async fn start(behaviour: Behaviour) -> DemoServer {
    DemoServer::start(behaviour).await
}

async fn client_for(server: &DemoServer, config: OAuthConfig) -> AuthorizedHttpClient {
    let state = OAuthState::new(server.mcp_url(), Some(config))
        .await
        .unwrap();
    state.to_authorized_http_client().await.unwrap()
}

async fn echo(
    client: &AuthorizedHttpClient,
    server: &DemoServer,
    text: &str,
) -> tower_mcp_oauth::Result<http::Response<Bytes>> {
    let body = echo_message(text);
    let request = http::Request::post(server.mcp_url())
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap().into())
        .unwrap();
    client.send(request).await
}

fn echoed(response: &http::Response<Bytes>) -> String {
    assert_eq!(response.status(), 200, "{:?}", response);
    let value: Value = serde_json::from_slice(response.body()).unwrap();
    value["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_401_runs_discovery_registration_authorization_and_replays() {
    let server = start(Behaviour::default()).await;
    let client = client_for(&server, config()).await;
    let response = echo(&client, &server, "hello").await.unwrap();
    assert_eq!(echoed(&response), "hello");

    let counters = server.counters();
    assert_eq!(counters.registrations, 1);
    assert_eq!(counters.authorizations, 1);
    assert_eq!(counters.code_exchanges, 1);
    assert_eq!(counters.mcp_requests, 2, "one 401, one replay");
    assert_eq!(counters.protocol_version_headers, vec!["2025-11-25"]);

    let registration = &counters.registration_bodies[0];
    assert_eq!(registration["application_type"], "native");
    assert_eq!(registration["token_endpoint_auth_method"], "none");
    assert_eq!(
        registration["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(registration["redirect_uris"], json!([CALLBACK]));

    let authorize = &counters.authorize_params[0];
    assert_eq!(authorize["code_challenge_method"], "S256");
    assert_eq!(authorize["resource"], server.mcp_url());
    // The resource's scopes, plus offline_access because the server offers it.
    assert_eq!(authorize["scope"], "mcp offline_access");
    assert_eq!(counters.token_resources, vec![Some(server.mcp_url())]);

    // A second call reuses the token.
    assert_eq!(
        echoed(&echo(&client, &server, "again").await.unwrap()),
        "again"
    );
    assert_eq!(server.counters().authorizations, 1);
}

#[tokio::test]
async fn the_seed_api_works_as_written() {
    let server = start(Behaviour::default()).await;
    let mut oauth_state = OAuthState::new(&server.mcp_url(), None).await.unwrap();
    oauth_state
        .start_authorization(&["mcp", "profile", "email"], CALLBACK)
        .await
        .unwrap();
    let auth_url = Url::parse(&oauth_state.get_authorization_url().await.unwrap()).unwrap();
    let query: std::collections::HashMap<_, _> = auth_url.query_pairs().into_owned().collect();
    assert_eq!(query["scope"], "mcp profile email");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["resource"], server.mcp_url());

    // The user's browser: follow the authorization URL and read the redirect.
    let redirect = headless().authorize(&auth_url).await.unwrap();
    // The query string alone will do.
    let credentials = oauth_state
        .handle_callback(redirect.query().unwrap())
        .await
        .unwrap();
    assert!(credentials.access_token.expose().starts_with("at-"));
    assert!(credentials.expires_at.is_some());
    assert!(!format!("{credentials:?}").contains(credentials.access_token.expose()));

    let client = oauth_state.to_authorized_http_client().await.unwrap();
    assert_eq!(
        echoed(&echo(&client, &server, "seed").await.unwrap()),
        "seed"
    );
    assert_eq!(
        server.counters().mcp_requests,
        1,
        "no 401: the token was attached"
    );
}

async fn started_state(server: &DemoServer) -> (OAuthState, Url) {
    let mut state = OAuthState::new(server.mcp_url(), None).await.unwrap();
    state.start_authorization(&[], CALLBACK).await.unwrap();
    let url = Url::parse(&state.get_authorization_url().await.unwrap()).unwrap();
    let redirect = headless().authorize(&url).await.unwrap();
    (state, redirect)
}

fn with_param(url: &Url, name: &str, value: Option<&str>) -> String {
    let mut out = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != name)
        .collect();
    {
        let mut q = out.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        if let Some(value) = value {
            q.append_pair(name, value);
        }
    }
    out.to_string()
}

#[tokio::test]
async fn handle_callback_checks_state_iss_and_errors() {
    let server = start(Behaviour::default()).await;

    let (mut state, redirect) = started_state(&server).await;
    let err = state
        .handle_callback(&with_param(&redirect, "state", Some("forged")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StateMismatch);

    let err = state
        .handle_callback(&with_param(&redirect, "iss", Some("https://evil.example")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::IssuerMismatch);

    // The server advertises RFC 9207, so a missing iss is refused, in a whole URL or in a
    // query string alone (the old two-argument handle_callback let this through).
    let without_iss = with_param(&redirect, "iss", None);
    let err = state.handle_callback(&without_iss).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::IssuerMismatch);
    let query = Url::parse(&without_iss)
        .unwrap()
        .query()
        .unwrap()
        .to_owned();
    let err = state.handle_callback(&query).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::IssuerMismatch);

    let denied = format!(
        "{CALLBACK}?error=access_denied&error_description=nope&iss={}&state={}",
        server.base,
        redirect
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
    );
    let err = state.handle_callback(&denied).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthorizationDenied);
    assert!(err.to_string().contains("access_denied"));

    let elsewhere = redirect.as_str().replace("127.0.0.1:7", "127.0.0.1:8");
    let err = state.handle_callback(&elsewhere).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedRedirect);

    // The genuine redirect still completes: nothing above consumed the pending authorization.
    let tokens = state.handle_callback(redirect.as_str()).await.unwrap();
    assert!(!tokens.access_token.expose().is_empty());

    // handle_callback checks state too.
    let (mut state, redirect) = started_state(&server).await;
    let code = redirect
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let err = state
        .handle_callback(&format!("code={code}&state=forged"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StateMismatch);
    assert!(!err.to_string().contains(&code), "no code in messages");
    // A web handler's path and query are read on the redirect URI's origin, path checked.
    let err = state
        .handle_callback(&format!("/callback?code={code}&state=forged"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StateMismatch);
    let err = state
        .handle_callback(&format!("/elsewhere?code={code}&state=forged"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedRedirect);
}

#[tokio::test]
async fn iss_is_optional_when_not_advertised_but_checked_when_present() {
    let server = start(Behaviour {
        advertise_iss: false,
        redirect_iss: Some(None),
        ..Default::default()
    })
    .await;
    let (mut state, redirect) = started_state(&server).await;
    state.handle_callback(redirect.as_str()).await.unwrap();

    server.set(|b| b.redirect_iss = Some(Some("http://127.0.0.1:1".into())));
    let (mut state, redirect) = started_state(&server).await;
    assert_eq!(
        state
            .handle_callback(redirect.as_str())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::IssuerMismatch
    );
}

async fn start_error(behaviour: Behaviour) -> (tower_mcp_oauth::Error, DemoServer) {
    let server = start(behaviour).await;
    let mut state = OAuthState::new(server.mcp_url(), None).await.unwrap();
    let err = state.start_authorization(&[], CALLBACK).await.unwrap_err();
    (err, server)
}

#[tokio::test]
async fn pkce_support_is_required() {
    let (err, server) = start_error(Behaviour {
        code_challenge_methods: None,
        ..Default::default()
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::PkceNotSupported);
    assert_eq!(
        server.counters().registrations,
        0,
        "stops before registering"
    );
    let (err, _) = start_error(Behaviour {
        code_challenge_methods: Some(vec!["plain"]),
        ..Default::default()
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::PkceNotSupported);
}

#[tokio::test]
async fn hostile_metadata_is_refused_with_a_typed_error() {
    let (err, server) = start_error(Behaviour {
        prm_resource: Some("https://evil.example.com/mcp".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::MetadataMismatch);
    assert_eq!(server.counters().authorizations, 0);

    let (err, _) = start_error(Behaviour {
        metadata_issuer: Some("https://evil.example.com".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::MetadataMismatch);

    let (err, _) = start_error(Behaviour {
        metadata_content_type: "text/html",
        ..Default::default()
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);

    let (err, _) = start_error(Behaviour {
        metadata_padding: 2 * 1024 * 1024,
        ..Default::default()
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::BodyTooLarge);

    let (err, _) = start_error(Behaviour {
        redirect_to: Some("https://elsewhere.example/metadata".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::UnexpectedRedirect);

    let (err, _) = start_error(Behaviour {
        token_endpoint: Some("http://auth.example.com/token".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::InsecureUrl);

    // A JSON content type with parameters is fine.
    let server = start(Behaviour {
        metadata_content_type: "application/json; charset=utf-8",
        ..Default::default()
    })
    .await;
    let mut state = OAuthState::new(server.mcp_url(), None).await.unwrap();
    state.start_authorization(&[], CALLBACK).await.unwrap();
}

#[tokio::test]
async fn bad_json_is_an_invalid_response() {
    let server = start(Behaviour::default()).await;
    // A token endpoint that answers garbage: the metadata route, which refuses a POST with an
    // empty 405.
    server.set(|b| {
        b.token_endpoint = Some(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            server.base
        ))
    });
    let client = client_for(&server, config()).await;
    let err = echo(&client, &server, "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{err:?}");

    for body in ["{not json", "[1, 2]", "{\"issuer\": 42}", ""] {
        let (err, _) = start_error(Behaviour {
            metadata_body: Some(body),
            ..Default::default()
        })
        .await;
        assert_eq!(err.kind(), ErrorKind::InvalidResponse, "{body}");
    }
}

#[tokio::test]
async fn a_hanging_token_endpoint_times_out() {
    let server = start(Behaviour {
        token_delay: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let http = HttpClient::new().timeout(Duration::from_millis(300));
    let handler = HeadlessHandler::with_http(http.clone(), Url::parse(CALLBACK).unwrap());
    let config = OAuthConfig::new().http(http).handler(handler);
    let client = client_for(&server, config).await;
    let started = std::time::Instant::now();
    let err = echo(&client, &server, "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn redirect_uris_must_be_https_or_loopback() {
    let server = start(Behaviour::default()).await;
    let mut state = OAuthState::new(server.mcp_url(), None).await.unwrap();
    for bad in [
        "http://example.com/callback",
        "ftp://127.0.0.1/cb",
        "not a url",
    ] {
        let err = state.start_authorization(&[], bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad}");
    }
    assert!(state
        .start_authorization(&[], "https://app.example.com/cb")
        .await
        .is_ok());
    assert_eq!(
        OAuthState::new("http://mcp.example.com/mcp", None)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InsecureUrl
    );
}

#[tokio::test]
async fn expired_tokens_refresh_with_rotation() {
    // Tokens live 4 s: with the default 60 s margin, bounded by half the lifetime, a token is
    // due for refresh after 2 s. Expiry counts whole seconds, so the waits keep a margin.
    let server = start(Behaviour {
        access_token_lifetime: Duration::from_secs(4),
        ..Default::default()
    })
    .await;
    let state = OAuthState::new(server.mcp_url(), Some(config()))
        .await
        .unwrap();
    let client = state.to_authorized_http_client().await.unwrap();
    echoed(&echo(&client, &server, "1").await.unwrap());
    echoed(&echo(&client, &server, "fresh").await.unwrap());
    assert_eq!(
        server.counters().refreshes,
        0,
        "a fresh short-lived token is used as is"
    );
    let first = state.credentials().unwrap();

    tokio::time::sleep(Duration::from_millis(2200)).await;
    echoed(&echo(&client, &server, "2").await.unwrap());
    let second = state.credentials().unwrap();
    let counters = server.counters();
    assert_eq!(counters.refreshes, 1);
    assert_eq!(counters.authorizations, 1);
    assert_ne!(first.refresh_token, second.refresh_token, "rotated");
    assert_eq!(
        counters.token_resources.last().unwrap(),
        &Some(server.mcp_url()),
        "resource on refresh"
    );
}

#[tokio::test]
async fn without_rotation_the_old_refresh_token_is_kept() {
    let server = start(Behaviour {
        rotate_refresh_tokens: false,
        ..Default::default()
    })
    .await;
    let state = OAuthState::new(server.mcp_url(), Some(config()))
        .await
        .unwrap();
    state.authorize().await.unwrap();
    let original = state.credentials().unwrap().refresh_token.unwrap();
    let refreshed = state.refresh().await.unwrap();
    assert_eq!(refreshed.refresh_token.as_ref(), Some(&original));
    state.refresh().await.unwrap();
    assert_eq!(server.counters().refreshes, 2);
}

#[tokio::test]
async fn invalid_grant_on_refresh_leads_to_a_new_authorization() {
    let server = start(Behaviour::default()).await;
    let client = client_for(&server, config()).await;
    echoed(&echo(&client, &server, "1").await.unwrap());
    server.revoke_access_tokens();
    server.revoke_refresh_tokens();
    echoed(&echo(&client, &server, "2").await.unwrap());
    let counters = server.counters();
    assert_eq!(counters.refreshes, 1);
    assert_eq!(counters.authorizations, 2);
    assert_eq!(counters.registrations, 1);
}

#[tokio::test]
async fn invalid_client_leads_to_a_new_registration() {
    let server = start(Behaviour::default()).await;
    let client = client_for(&server, config()).await;
    echoed(&echo(&client, &server, "1").await.unwrap());
    server.revoke_access_tokens();
    server.forget_clients();
    echoed(&echo(&client, &server, "2").await.unwrap());
    let counters = server.counters();
    assert_eq!(counters.registrations, 2);
    assert_eq!(counters.authorizations, 2);
}

#[tokio::test]
async fn registration_picks_the_auth_method_the_server_supports() {
    for (method, expected) in [
        ("client_secret_post", "client_secret_post"),
        ("client_secret_basic", "client_secret_basic"),
        ("none", "none"),
    ] {
        let server = start(Behaviour {
            token_auth_methods: vec![method],
            ..Default::default()
        })
        .await;
        let client = client_for(&server, config()).await;
        echoed(&echo(&client, &server, method).await.unwrap());
        assert_eq!(
            server.counters().token_client_auth,
            vec![expected],
            "{method}"
        );
    }
}

#[tokio::test]
async fn a_registration_with_other_redirect_uris_fails_clearly_before_any_authorization() {
    let server = start(Behaviour {
        registered_redirect_uris: Some(vec!["http://127.0.0.1:9/elsewhere".into()]),
        ..Default::default()
    })
    .await;
    let client = client_for(&server, config()).await;
    let error = echo(&client, &server, "x").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Registration, "{error}");
    assert!(error.to_string().contains("redirect"));
    assert_eq!(server.counters().authorizations, 0);
}

#[tokio::test]
async fn an_expired_client_secret_is_never_sent_the_client_registers_again() {
    let already_expired = start(Behaviour {
        token_auth_methods: vec!["client_secret_basic"],
        client_secret_expires_at: Some(now_secs() - 10),
        ..Default::default()
    })
    .await;
    let client = client_for(&already_expired, config()).await;
    let error = echo(&client, &already_expired, "x").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Registration, "{error}");

    // A secret that expires while its tokens are in use: the refresh is not attempted with
    // it; the client registers again and authorizes. (Whole seconds: room for a loaded
    // machine before the first expiry.)
    let server = start(Behaviour {
        token_auth_methods: vec!["client_secret_basic"],
        client_secret_expires_at: Some(now_secs() + 5),
        access_token_lifetime: Duration::from_secs(5),
        ..Default::default()
    })
    .await;
    let client = client_for(&server, config()).await;
    echoed(&echo(&client, &server, "before").await.unwrap());
    server.set(|b| b.client_secret_expires_at = Some(now_secs() + 3600));
    tokio::time::sleep(Duration::from_millis(6100)).await;
    echoed(&echo(&client, &server, "after").await.unwrap());
    let counters = server.counters();
    assert_eq!(counters.registrations, 2);
    assert_eq!(counters.refreshes, 0, "no refresh with the expired secret");
    assert_eq!(counters.authorizations, 2);
}

#[tokio::test]
async fn a_pre_registered_client_is_used_first() {
    let server = start(Behaviour {
        registration: false,
        token_auth_methods: vec!["client_secret_basic"],
        pre_registered: Some(("app", "app-secret")),
        ..Default::default()
    })
    .await;
    let config = config().client(ClientRegistration::confidential(
        "app",
        "app-secret",
        TokenEndpointAuthMethod::ClientSecretBasic,
    ));
    let client = client_for(&server, config).await;
    echoed(&echo(&client, &server, "pre").await.unwrap());
    let counters = server.counters();
    assert_eq!(counters.registrations, 0);
    assert_eq!(counters.authorize_params[0]["client_id"], "app");
    assert_eq!(counters.token_client_auth, vec!["client_secret_basic"]);

    // Without any way to register, the error says what to configure.
    let server = start(Behaviour {
        registration: false,
        ..Default::default()
    })
    .await;
    let client = client_for(&server, config_without_client()).await;
    let err = echo(&client, &server, "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Registration);
}

#[tokio::test]
async fn a_pre_registered_client_bound_to_an_issuer_goes_nowhere_else() {
    let behaviour = || Behaviour {
        registration: false,
        token_auth_methods: vec!["client_secret_basic"],
        pre_registered: Some(("app", "app-secret")),
        ..Default::default()
    };
    let server = start(behaviour()).await;
    let bound = |issuer: &str| {
        config().client(
            ClientRegistration::confidential(
                "app",
                "app-secret",
                TokenEndpointAuthMethod::ClientSecretBasic,
            )
            .for_issuer(issuer),
        )
    };
    // Bound elsewhere: refused before the authorization or token endpoint sees the client.
    let client = client_for(&server, bound("https://login.example.com")).await;
    let err = echo(&client, &server, "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::IssuerMismatch);
    let counters = server.counters();
    assert!(counters.authorize_params.is_empty());
    assert!(counters.token_forms.is_empty());

    // Bound to this server's issuer: used as before.
    let server = start(behaviour()).await;
    let client = client_for(&server, bound(&server.base)).await;
    echoed(&echo(&client, &server, "bound").await.unwrap());
    assert_eq!(
        server.counters().token_client_auth,
        vec!["client_secret_basic"]
    );
}

fn config_without_client() -> OAuthConfig {
    config()
}

#[tokio::test]
async fn a_client_id_metadata_document_is_used_when_supported() {
    let server = start(Behaviour {
        cimd_supported: true,
        ..Default::default()
    })
    .await;
    let cimd = "https://app.example.com/oauth/client.json";
    let config = config().client_metadata_url(Url::parse(cimd).unwrap());
    let client = client_for(&server, config.clone()).await;
    echoed(&echo(&client, &server, "cimd").await.unwrap());
    let counters = server.counters();
    assert_eq!(counters.registrations, 0);
    assert_eq!(counters.authorize_params[0]["client_id"], cimd);

    // Not advertised: dynamic registration instead.
    let server = start(Behaviour::default()).await;
    let client = client_for(&server, config).await;
    echoed(&echo(&client, &server, "dcr").await.unwrap());
    assert_eq!(server.counters().registrations, 1);
}

#[tokio::test]
async fn servers_of_2025_03_26_without_metadata_use_default_endpoints() {
    let server = start(Behaviour {
        publish_prm: false,
        publish_as_metadata: false,
        ..Default::default()
    })
    .await;
    let client = client_for(&server, config()).await;
    echoed(&echo(&client, &server, "legacy").await.unwrap());
    let counters = server.counters();
    assert_eq!(counters.registrations, 1);
    assert_eq!(counters.code_exchanges, 1);
    // No protected resource metadata, so no resource indicator.
    assert_eq!(counters.token_resources, vec![None]);
}

/// Signs in and calls once through a client keeping its credentials in a fresh `FileStore`;
/// the store's path (valid while the directory lives).
async fn signed_in_with_a_file_store(
    server: &DemoServer,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.json");
    let client = client_for(server, config().store(FileStore::new(&path))).await;
    echoed(&echo(&client, server, "before").await.unwrap());
    (dir, path)
}

#[tokio::test]
async fn the_file_store_survives_a_restart() {
    let server = start(Behaviour::default()).await;
    let (_dir, path) = signed_in_with_a_file_store(&server).await;
    let stored = std::fs::read_to_string(&path).unwrap();
    assert!(stored.contains("access_token"));

    // A new process: no handler, so it could not authorize again; it must use what was stored.
    let state = OAuthState::new(
        server.mcp_url(),
        Some(OAuthConfig::new().store(FileStore::new(&path))),
    )
    .await
    .unwrap();
    assert!(state.credentials().is_some());
    let second = state.to_authorized_http_client().await.unwrap();
    echoed(&echo(&second, &server, "after").await.unwrap());
    let counters = server.counters();
    assert_eq!(counters.authorizations, 1);
    assert_eq!(counters.registrations, 1);
}

#[tokio::test]
async fn an_access_token_that_cannot_be_attached_is_refused() {
    let server = start(Behaviour {
        access_token_suffix: "\u{1}",
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.json");
    let client = client_for(&server, config().store(FileStore::new(&path))).await;
    let error = echo(&client, &server, "x").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidResponse, "{error}");
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(!stored.contains("access_token"), "nothing stored: {stored}");
}

#[tokio::test]
async fn a_stored_token_that_cannot_be_attached_does_not_wedge_the_session() {
    let server = start(Behaviour::default()).await;
    let (_dir, path) = signed_in_with_a_file_store(&server).await;
    // The stored access token gets a control character, as a corrupted or hostile file would.
    let stored = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, stored.replace("\"at-", "\"\\u0001at-")).unwrap();

    let second = client_for(&server, config().store(FileStore::new(&path))).await;
    let response = tokio::time::timeout(Duration::from_secs(10), echo(&second, &server, "after"))
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(echoed(&response), "after");
    assert_eq!(server.counters().authorizations, 2, "it authorized again");
}

#[tokio::test]
async fn without_a_handler_a_401_comes_back_with_its_challenge() {
    let server = start(Behaviour::default()).await;
    let client = client_for(&server, OAuthConfig::new()).await;
    let response = echo(&client, &server, "x").await.unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response
        .extensions()
        .get::<tower_mcp_oauth::challenge::BearerChallenge>()
        .expect("the parsed challenge rides along");
    assert!(challenge
        .resource_metadata
        .as_deref()
        .unwrap()
        .ends_with("/.well-known/oauth-protected-resource/mcp"));
}

#[tokio::test]
async fn step_up_asks_for_granted_and_challenged_scopes() {
    let server = start(Behaviour {
        scopes_supported: vec!["mcp", "files:write"],
        ..Default::default()
    })
    .await;
    let client = client_for(&server, config()).await;
    echoed(&echo(&client, &server, "1").await.unwrap());
    server.set(|b| b.required_scope = Some("files:write"));
    echoed(&echo(&client, &server, "2").await.unwrap());
    let counters = server.counters();
    assert_eq!(counters.authorizations, 2);
    assert_eq!(counters.authorize_params[1]["scope"], "mcp files:write");
    // The step-up signs in with the client registered for the first sign-in.
    assert_eq!(counters.registrations, 1);
    assert_eq!(
        counters.authorize_params[0]["client_id"],
        counters.authorize_params[1]["client_id"]
    );
}

#[tokio::test]
async fn the_headless_handler_refuses_a_redirect_elsewhere() {
    let server = start(Behaviour {
        authorize_location: Some("https://evil.example/steal".into()),
        ..Default::default()
    })
    .await;
    let client = client_for(&server, config()).await;
    assert_eq!(
        echo(&client, &server, "x").await.unwrap_err().kind(),
        ErrorKind::UnexpectedRedirect
    );
}

#[tokio::test]
async fn the_loopback_handler_catches_the_redirect() {
    let handler = LoopbackHandler::bind()
        .await
        .unwrap()
        .open_browser(false)
        .timeout(Duration::from_secs(10));
    let redirect_uri = handler.redirect_uri();
    assert_eq!(redirect_uri.host_str(), Some("127.0.0.1"));
    let auth_url = Url::parse("http://127.0.0.1:9/authorize?client_id=x&state=xyz").unwrap();
    let waiting = tokio::spawn(async move { handler.authorize(&auth_url).await });

    let http = HttpClient::new();
    let mut stray = redirect_uri.clone();
    stray.set_path("/favicon.ico");
    let response = http
        .send(
            http::Request::get(stray.as_str())
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // A stray callback with another state is turned away and does not end the wait.
    let forged = format!("{redirect_uri}?code=evil&state=other");
    let response = http
        .send(
            http::Request::get(forged.as_str())
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let callback = format!("{redirect_uri}?code=abc&state=xyz");
    let response = http
        .send(
            http::Request::get(callback.as_str())
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(String::from_utf8_lossy(response.body()).contains("Authorization complete"));
    let received = waiting.await.unwrap().unwrap();
    assert_eq!(received.as_str(), callback);
}

#[tokio::test]
async fn a_fixed_callback_port_is_held_only_during_a_sign_in_and_waited_for_while_busy() {
    // Another process holds the port at first: its own sign-in, say.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = other.local_addr().unwrap();
    let port = std::num::NonZeroU16::new(address.port()).unwrap();
    let handler = LoopbackHandler::on_port(port)
        .open_browser(false)
        .timeout(Duration::from_secs(20));
    let redirect_uri = handler.redirect_uri();
    assert_eq!(redirect_uri.as_str(), format!("http://{address}/callback"));
    let auth_url = Url::parse("http://127.0.0.1:9/authorize?client_id=x&state=xyz").unwrap();
    let waiting = tokio::spawn(async move { handler.authorize(&auth_url).await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!waiting.is_finished(), "a busy port is waited for");
    drop(other);
    // Once free, the sign-in takes the port and gets its redirect.
    let callback = format!("{redirect_uri}?code=abc&state=xyz");
    let http = HttpClient::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let request = http::Request::get(callback.as_str())
            .body(Default::default())
            .unwrap();
        match http.send(request).await {
            Ok(response) => {
                assert_eq!(response.status(), 200);
                break;
            }
            Err(_) => assert!(tokio::time::Instant::now() < deadline, "never listened"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the sign-in ends")
        .unwrap()
        .unwrap();
    assert_eq!(received.as_str(), callback);
    // Between sign-ins the port is free for others.
    drop(std::net::TcpListener::bind(address).expect("the port was released"));
}

#[tokio::test]
async fn the_loopback_handler_times_out() {
    let handler = LoopbackHandler::bind()
        .await
        .unwrap()
        .open_browser(false)
        .timeout(Duration::from_millis(100));
    let url = Url::parse("http://127.0.0.1:9/authorize").unwrap();
    assert_eq!(
        handler.authorize(&url).await.unwrap_err().kind(),
        ErrorKind::Timeout
    );
}
