//! No token, secret, code or verifier reaches a log line, an error message or `Debug` output.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use support::client::headless_state;
use support::demo_server::{Behaviour, DemoServer};
use support::mcp::echo_message;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every TRACE line of this crate, for this thread, until the guard drops.
fn capture_trace_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_env_filter("tower_mcp_oauth=trace")
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn logs_errors_and_debug_output_carry_no_secrets() {
    let (captured, _guard) = capture_trace_logs();

    // A confidential client, so there is a client secret to leak too.
    let server = DemoServer::start(Behaviour {
        token_auth_methods: vec!["client_secret_post"],
        ..Default::default()
    })
    .await;
    let state = headless_state(&server.mcp_url()).await;
    let client = state.to_authorized_http_client().await.unwrap();
    let request = |text: &str| {
        let body = echo_message(text);
        http::Request::post(server.mcp_url())
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap().into())
            .unwrap()
    };
    assert_eq!(client.send(request("a")).await.unwrap().status(), 200);
    state.refresh().await.unwrap();
    // A failing refresh: its error message must not quote the refresh token.
    server.revoke_refresh_tokens();
    let refresh_error = state.refresh().await.unwrap_err();

    let mut secrets: Vec<String> = Vec::new();
    for form in server.counters().token_forms {
        for name in ["code", "code_verifier", "refresh_token", "client_secret"] {
            if let Some(value) = form.get(name) {
                secrets.push(value.clone());
            }
        }
    }
    let tokens = state.credentials().unwrap();
    secrets.push(tokens.access_token.expose().to_owned());
    let registration = state.client_registration().unwrap();
    secrets.push(
        registration
            .client_secret
            .as_ref()
            .unwrap()
            .expose()
            .to_owned(),
    );
    assert!(secrets.len() >= 8, "collected {} secrets", secrets.len());

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("registered client"), "logging was captured");
    let debug_dump = format!(
        "{state:?} {client:?} {tokens:?} {registration:?} {refresh_error:?} {refresh_error}"
    );
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
        assert!(
            !debug_dump.contains(secret.as_str()),
            "a secret reached Debug or an error message"
        );
    }
}

/// The embedded authorization server: a whole flow, a refresh, a refused reuse and a bad client
/// secret leave no code, token or secret in its logs or answers' error text.
#[cfg(all(
    feature = "authorization-server",
    feature = "rmcp",
    feature = "rmcp-server",
    feature = "jwt"
))]
#[tokio::test]
async fn the_authorization_server_logs_no_secrets() {
    use serde_json::json;
    use support::client::{headless, CALLBACK};
    use support::oauth_server_app;
    use tower_mcp_oauth::client::{AuthorizationHandler, OAuthState};
    use url::Url;

    let (captured, _guard) = capture_trace_logs();

    let running = support::approving_server(oauth_server_app::Options {
        opaque_tokens: true,
        ..Default::default()
    })
    .await;
    let mut state = OAuthState::new(&running.mcp_url, None).await.unwrap();
    state
        .start_authorization(&["mcp:tools", "offline_access"], CALLBACK)
        .await
        .unwrap();
    let url = Url::parse(&state.get_authorization_url().await.unwrap()).unwrap();
    let redirect = headless().authorize(&url).await.unwrap();
    let code = support::query(&redirect, "code").unwrap();
    let first = state.handle_callback(redirect.as_str()).await.unwrap();
    // One authorized call, so the resource server introspects with its own secret.
    let client = state.to_authorized_http_client().await.unwrap();
    let ping = http::Request::post(&running.mcp_url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            serde_json::to_vec(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}),
            )
            .unwrap()
            .into(),
        )
        .unwrap();
    assert_eq!(client.send(ping).await.unwrap().status(), 200);
    let second = state.refresh().await.unwrap();
    // Two rotations: the first refresh token is then past the rotation grace (which would
    // hand out the current one, by design) and its replay is reuse.
    let third = state.refresh().await.unwrap();

    // Replays and a wrong secret, answered with errors.
    let token_endpoint = format!("{}/token", running.base);
    // The tokens are DPoP-bound (the server offers it): the replay carries the client's proof,
    // or the server would refuse it for the key before seeing the reuse.
    let dpop_key = first.dpop_key.clone().expect("DPoP-bound tokens");
    let proof = dpop_key.proof("POST", &token_endpoint, None, None).unwrap();
    let post = |form: Vec<(&str, String)>, basic: Option<String>, proof: Option<String>| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = http::Request::post(&token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(basic) = basic {
            request = request.header("authorization", basic);
        }
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        let request = request
            .body(tower_mcp_oauth::http::RequestBody::from(body))
            .unwrap();
        async move {
            let response = tower_mcp_oauth::http::HttpClient::new()
                .send(request)
                .await
                .unwrap();
            String::from_utf8_lossy(response.body()).into_owned()
        }
    };
    let registration = state.client_registration().unwrap();
    let old_refresh = first.refresh_token.as_ref().unwrap().expose().to_owned();
    let mut answers = String::new();
    answers += &post(
        vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", old_refresh.clone()),
            ("client_id", registration.client_id.clone()),
        ],
        None,
        Some(proof),
    )
    .await;
    answers += &post(
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", code.clone()),
            ("code_verifier", "x".repeat(43)),
            ("client_id", registration.client_id.clone()),
        ],
        None,
        None,
    )
    .await;
    // A wrong secret for the one confidential client in play: the resource server's.
    let (rs_id, rs_secret) = running.introspection_client.clone().unwrap();
    answers += &post(
        vec![("grant_type", "client_credentials".into())],
        Some(format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{rs_id}:wrong-secret-value")
            )
        )),
        None,
    )
    .await;
    assert!(answers.contains("invalid_grant") && answers.contains("invalid_client"));

    let mut secrets = vec![
        code,
        old_refresh,
        first.access_token.expose().to_owned(),
        second.access_token.expose().to_owned(),
        "wrong-secret-value".to_owned(),
    ];
    for later in [&second, &third] {
        secrets.push(later.access_token.expose().to_owned());
        if let Some(refresh) = &later.refresh_token {
            secrets.push(refresh.expose().to_owned());
        }
    }
    if let Some(secret) = &registration.client_secret {
        secrets.push(secret.expose().to_owned());
    }
    secrets.push(rs_secret.expose().to_owned());
    let stored_key = serde_json::to_value(&dpop_key).unwrap();
    secrets.push(stored_key["pkcs8"].as_str().unwrap().to_owned());
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("refresh token was presented"),
        "the reuse was logged"
    );
    let debug_dump = format!("{:?} {answers}", running.authorization_server);
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
        assert!(
            !debug_dump.contains(secret.as_str()),
            "a secret reached Debug or an answer"
        );
    }
}
