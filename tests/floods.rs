//! Floods at the embedded authorization server and at `RequireBearer`: registrations, consent
//! pages, refreshes, code guesses, oversized and malformed tokens. Every answer is a proper
//! 4xx/5xx, a client that behaves is not pushed out, and memory stays bounded.
//!
//! The default run floods a little and checks the answers. The soak test floods a lot and
//! prints the process's resident memory after each round (it must stop growing):
//! `cargo test --release --all-features --test floods -- --ignored --nocapture`.
#![cfg(all(feature = "authorization-server", feature = "jwt"))]

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use support::auth_server::{code_grant, consent_form, pkce, Server, REDIRECT};
use support::{hyper_client, query, resident_kib, send_with, Answer, HyperClient};
use tower_mcp_oauth::authorization_server::{ConsentPage, TokenFormat};
use tower_mcp_oauth::server::RequireBearerLayer;

/// A consent page opened and not yet answered.
struct Consent {
    client_id: String,
    verifier: String,
    /// Its cookie, request id and CSRF token.
    form: (String, String, String),
}

struct Target {
    server: Server,
    http: HyperClient,
    /// Requests in flight at once.
    parallel: Arc<tokio::sync::Semaphore>,
}

impl Target {
    async fn start() -> Self {
        let server = Server::start_with(
            |c| {
                c.scopes(["mcp"])
                    .token_format(TokenFormat::Opaque)
                    // Consent pages for the flooding client; the honest one is approved below.
                    .approval_policy(ConsentPage::new("alice"))
            },
            |server, resource| {
                let verifier = server.local_verifier(resource);
                let protected = axum::Router::new()
                    .route("/mcp", axum::routing::post(|| async { "ok" }))
                    .layer(RequireBearerLayer::new(verifier).resource(resource));
                server.router().merge(protected)
            },
        )
        .await;
        Self {
            server,
            http: hyper_client(),
            parallel: Arc::new(tokio::sync::Semaphore::new(32)),
        }
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Answer {
        let _permit = self.parallel.acquire().await.unwrap();
        send_with(&self.http, request).await
    }

    async fn register(&self) -> (StatusCode, Value) {
        let body = json!({
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        });
        let answer = self.send(self.server.register_request(&body)).await;
        (answer.status, answer.json())
    }

    async fn form(&self, path: &str, pairs: &[(&str, &str)]) -> (StatusCode, Value) {
        let answer = self.send(self.server.form_request(path, pairs, None)).await;
        (answer.status, answer.json())
    }

    fn authorize_url(&self, client_id: &str, challenge: &str) -> String {
        self.server
            .authorize_url_to(client_id, REDIRECT, "s", challenge, &[("scope", "mcp")])
    }

    async fn consent_page(&self, client_id: &str, challenge: &str) -> StatusCode {
        let request = Request::get(self.authorize_url(client_id, challenge))
            .body(Full::default())
            .unwrap();
        self.send(request).await.status
    }

    /// Opens a consent page: what its form needs to be answered.
    async fn open_consent(&self, client_id: &str) -> Consent {
        let (verifier, challenge) = pkce();
        let page = self
            .send(
                Request::get(self.authorize_url(client_id, &challenge))
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
        assert_eq!(page.status, StatusCode::OK);
        Consent {
            client_id: client_id.to_owned(),
            verifier,
            form: consent_form(&page),
        }
    }

    /// Approves an open consent page and redeems the code: the tokens.
    async fn approve(&self, consent: Consent) -> Value {
        let approved = self.send(self.server.approve_request(consent.form)).await;
        assert_eq!(
            approved.status,
            StatusCode::SEE_OTHER,
            "the consent page was kept"
        );
        let code = query(&approved.location().unwrap(), "code").unwrap();
        let (status, tokens) = self
            .form(
                "/token",
                &code_grant(
                    &code,
                    &consent.verifier,
                    &[
                        ("redirect_uri", REDIRECT),
                        ("client_id", &consent.client_id),
                    ],
                ),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        tokens
    }

    async fn sign_in(&self, client_id: &str) -> Value {
        let consent = self.open_consent(client_id).await;
        self.approve(consent).await
    }

    async fn call_mcp(&self, authorization: &str) -> StatusCode {
        let request = Request::post(&self.server.resource)
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .body(Full::from(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            ))
            .unwrap();
        self.send(request).await.status
    }
}

/// What a flood sends.
#[derive(Clone, Copy, Debug)]
enum Attack {
    Registrations,
    ConsentPages,
    CodeGuesses,
    MalformedTokens,
    /// 64 KiB bearer tokens.
    OversizedTokens,
    /// One client refreshing in a loop.
    Refreshes,
}

const ATTACKS: [Attack; 6] = [
    Attack::Registrations,
    Attack::ConsentPages,
    Attack::CodeGuesses,
    Attack::MalformedTokens,
    Attack::OversizedTokens,
    Attack::Refreshes,
];

/// `n` requests of one attack, 32 at a time. Checks every answer.
async fn flood(target: &Target, flooder: &Flooder, attack: Attack, n: usize) {
    use futures_util::StreamExt;
    if let Attack::Refreshes = attack {
        // One after another: each rotates the token.
        for _ in 0..n {
            let current = flooder.refresh_token.lock().unwrap().clone();
            let (status, tokens) = target
                .form(
                    "/token",
                    &[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", &current),
                        ("client_id", &flooder.client_id),
                    ],
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{tokens}");
            *flooder.refresh_token.lock().unwrap() =
                tokens["refresh_token"].as_str().unwrap().to_owned();
        }
        return;
    }
    futures_util::stream::iter(0..n)
        .for_each_concurrent(32, |i| async move {
            match attack {
                Attack::Registrations => {
                    // Created until the store is full, then refused with a 5xx.
                    let (status, _) = target.register().await;
                    assert!(
                        status == StatusCode::CREATED || status.is_server_error(),
                        "{status}"
                    );
                }
                Attack::ConsentPages => assert_eq!(
                    target
                        .consent_page(&flooder.client_id, &format!("{i:043}"))
                        .await,
                    StatusCode::OK
                ),
                Attack::CodeGuesses => {
                    let (status, body) = target
                        .form(
                            "/token",
                            &code_grant(
                                &format!("guess-{i}"),
                                &"v".repeat(50),
                                &[("client_id", &flooder.client_id)],
                            ),
                        )
                        .await;
                    assert_eq!(status, StatusCode::BAD_REQUEST);
                    assert_eq!(body["error"], "invalid_grant");
                }
                Attack::MalformedTokens => {
                    let status = target.call_mcp(&format!("Bearer not.a.jwt{i}")).await;
                    assert_eq!(status, StatusCode::UNAUTHORIZED);
                }
                Attack::OversizedTokens => {
                    let huge = format!("Bearer {i}{}", "A".repeat(64 * 1024));
                    let status = target.call_mcp(&huge).await;
                    assert!(status.is_client_error(), "{status}");
                }
                Attack::Refreshes => unreachable!("handled above"),
            }
        })
        .await;
}

struct Flooder {
    client_id: String,
    refresh_token: std::sync::Mutex<String>,
}

/// Floods `rounds` times with `per_round` requests of each attack, and checks that the honest
/// client got through. Returns the resident memory after each round of each attack.
async fn run(rounds: usize, per_round: usize) -> Vec<(Attack, usize, Option<u64>)> {
    let target = Target::start().await;
    let (_, honest) = target.register().await;
    let honest = honest["client_id"].as_str().unwrap().to_owned();
    let (_, flooder) = target.register().await;
    let flooder = flooder["client_id"].as_str().unwrap().to_owned();
    let honest_tokens = target.sign_in(&honest).await;
    let refresh_token = target.sign_in(&flooder).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let flooder = Flooder {
        client_id: flooder,
        refresh_token: std::sync::Mutex::new(refresh_token),
    };
    // The honest user opens a consent page before the flood and answers it after.
    let pending = target.open_consent(&honest).await;

    let mut resident = Vec::new();
    for attack in ATTACKS {
        for round in 1..=rounds {
            flood(&target, &flooder, attack, per_round).await;
            resident.push((attack, round, resident_kib()));
        }
    }

    // The honest client is unaffected: its token works, its refresh token rotates, and the
    // consent page it opened before the flood can still be approved.
    let access = honest_tokens["access_token"].as_str().unwrap();
    assert_eq!(
        target.call_mcp(&format!("Bearer {access}")).await,
        StatusCode::OK
    );
    let (status, _) = target
        .form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    honest_tokens["refresh_token"].as_str().unwrap(),
                ),
                ("client_id", &honest),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    target.approve(pending).await;
    resident
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_get_proper_answers_and_leave_other_clients_alone() {
    run(1, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: a few minutes; run with --release --ignored --nocapture"]
async fn memory_stays_bounded_under_floods() {
    let per_round = 20_000;
    let before = resident_kib();
    println!("before: RSS {before:?} KiB");
    let resident = run(3, per_round).await;
    for (attack, round, kib) in &resident {
        println!("{attack:?} round {round} ({per_round} requests): RSS {kib:?} KiB");
    }
    // Once an attack's caps are reached, more of it must not grow the process.
    for attack in ATTACKS {
        let rounds: Vec<u64> = resident
            .iter()
            .filter(|(a, _, _)| std::mem::discriminant(a) == std::mem::discriminant(&attack))
            .filter_map(|(_, _, kib)| *kib)
            .collect();
        if let (Some(first), Some(last)) = (rounds.first(), rounds.last()) {
            assert!(
                *last < first + first / 10 + 16 * 1024,
                "{attack:?}: RSS grew from {first} KiB to {last} KiB"
            );
        }
    }
}
