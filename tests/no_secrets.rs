//! No token, secret, code or verifier reaches a log line, an error message or `Debug` output.

#[path = "../examples/support/demo_server.rs"]
mod demo_server;

use std::io::Write;
use std::sync::{Arc, Mutex};

use demo_server::{Behaviour, DemoServer};
use serde_json::json;
use tower_mcp_oauth::client::{HeadlessHandler, OAuthConfig, OAuthState};
use url::Url;

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

#[tokio::test]
async fn logs_errors_and_debug_output_carry_no_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_env_filter("tower_mcp_oauth=trace")
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // A confidential client, so there is a client secret to leak too.
    let server = DemoServer::start(Behaviour {
        token_auth_methods: vec!["client_secret_post"],
        ..Default::default()
    })
    .await;
    let handler = HeadlessHandler::new(Url::parse("http://127.0.0.1:7/callback").unwrap());
    let state = OAuthState::new(
        server.mcp_url(),
        Some(OAuthConfig::new().with_handler(handler)),
    )
    .await
    .unwrap();
    let client = state.to_authorized_http_client().await.unwrap();
    let request = |text: &str| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}});
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
    let tokens = state.credentials().await.unwrap();
    secrets.push(tokens.access_token.expose().to_owned());
    let registration = state.client_registration().await.unwrap();
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
