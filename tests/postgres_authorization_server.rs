//! Two replicas of the embedded authorization server sharing one PostgreSQL database, over
//! real HTTP on 127.0.0.1: a code issued by one is redeemed at the other, races between them
//! are decided by the database, a revocation at one is seen by the other, a consent page
//! opened on one is approved on the other, and a database outage is a 503 that ends by itself.
//!
//! Needs `DATABASE_URL` (`.ci/postgres.sh start DIR` makes one); without it each test says it
//! is skipped and passes, unless `REQUIRE_POSTGRES_TESTS=1`.
#![cfg(all(
    feature = "postgres",
    feature = "authorization-server",
    feature = "server"
))]

mod support;

use support::postgres::{database_url, fresh_schema};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use support::auth_server::{consent_form, Server};
use support::{bind, get, send, serve_on, Answer};
use tokio::net::{TcpListener, TcpStream};
use tower_mcp_oauth::authorization_server::{
    AuthorizationServer, AuthorizationServerConfig, AutoApprove, ConsentPage,
    PostgresAuthorizationStore, SigningKey,
};
use tower_mcp_oauth::dpop::ReplayCache;
use tower_mcp_oauth::postgres::{PostgresPool, PostgresReplayCache};
use tower_mcp_oauth::server::{TokenVerifier, VerifyError};

/// One deployment: the issuer everybody names, and one replica per base URL.
struct Deployment {
    replicas: Vec<Server>,
}

/// Replicas of one authorization server (same issuer and signing key), each with its own pool
/// on `url`, as separate processes would have.
/// Replicas without a rotation grace period: a spent refresh token is reuse at once.
async fn deployment(url: &str, replicas: usize, consent_page: bool) -> Deployment {
    deployment_with_grace(url, replicas, consent_page, Duration::ZERO).await
}

async fn deployment_with_grace(
    url: &str,
    replicas: usize,
    consent_page: bool,
    grace: Duration,
) -> Deployment {
    let key = SigningKey::generate().unwrap();
    let mut listeners = Vec::new();
    for _ in 0..replicas {
        listeners.push(bind().await);
    }
    let issuer = listeners[0].1.clone();
    let resource = format!("{issuer}/mcp");
    let mut servers = Vec::new();
    for (listener, base) in listeners {
        let pool = PostgresPool::builder(url)
            .max_size(8)
            .connect()
            .await
            .unwrap();
        let store = PostgresAuthorizationStore::new(pool).await.unwrap();
        let config = AuthorizationServerConfig::new(&issuer)
            .unwrap()
            .resource(&resource)
            .scopes(["mcp:tools", "mcp:admin"])
            .signing_key(key.clone())
            .refresh_rotation_grace(grace)
            .store(store);
        let config = if consent_page {
            config.approval_policy(ConsentPage::new("alice"))
        } else {
            config.approval_policy(AutoApprove::new("alice"))
        };
        let server = AuthorizationServer::new(config).unwrap();
        serve_on(listener, server.router());
        servers.push(Server {
            base,
            resource: resource.clone(),
            server,
        });
    }
    Deployment { replicas: servers }
}

impl Deployment {
    fn a(&self) -> &Server {
        &self.replicas[0]
    }
    fn b(&self) -> &Server {
        &self.replicas[1]
    }
}

async fn verify_at(replica: &Server, token: &str) -> Result<(), VerifyError> {
    replica
        .server
        .local_verifier(&replica.resource)
        .verify(token)
        .await
        .map(drop)
}

fn access_token(answer: &Answer) -> String {
    answer.json()["access_token"].as_str().unwrap().to_owned()
}

fn refresh_token(answer: &Answer) -> String {
    answer.json()["refresh_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_from_one_replica_is_redeemed_at_the_other_and_refreshed_at_the_first() {
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    let d = deployment(&url, 2, false).await;
    // Registered at B, authorized at A, redeemed at B, refreshed at A.
    let client = d.b().public_client().await;
    let (code, verifier) = d.a().code(&client, "mcp:tools").await;
    let tokens = d.b().exchange(&client, &code, &verifier).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    verify_at(d.a(), &access_token(&tokens)).await.unwrap();
    verify_at(d.b(), &access_token(&tokens)).await.unwrap();
    let refreshed = d.a().refresh(&client, &refresh_token(&tokens)).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    verify_at(d.b(), &access_token(&refreshed)).await.unwrap();
    // The spent refresh token, presented at B, is reuse: the family is revoked everywhere.
    let reused = d.b().refresh(&client, &refresh_token(&tokens)).await;
    assert_eq!(reused.error(), "invalid_grant");
    assert!(verify_at(d.a(), &access_token(&refreshed)).await.is_err());
    let after = d.a().refresh(&client, &refresh_token(&refreshed)).await;
    assert_eq!(after.error(), "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_raced_at_both_replicas_gives_one_token_at_most_and_the_loser_revokes_it() {
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    let d = deployment(&url, 2, false).await;
    let client = d.a().public_client().await;
    let mut one_token = 0;
    for _ in 0..50 {
        let (code, verifier) = d.a().code(&client, "mcp:tools").await;
        let (at_a, at_b) = tokio::join!(
            d.a().exchange(&client, &code, &verifier),
            d.b().exchange(&client, &code, &verifier)
        );
        let winners: Vec<&Answer> = [&at_a, &at_b]
            .into_iter()
            .filter(|a| a.status == StatusCode::OK)
            .collect();
        assert!(winners.len() <= 1, "a code was redeemed twice");
        for loser in [&at_a, &at_b]
            .into_iter()
            .filter(|a| a.status != StatusCode::OK)
        {
            assert_eq!(loser.error(), "invalid_grant", "{}", loser.text());
        }
        if let Some(winner) = winners.first() {
            one_token += 1;
            // The second redemption revoked what the first issued, on both replicas.
            for replica in [d.a(), d.b()] {
                assert!(verify_at(replica, &access_token(winner)).await.is_err());
                let refresh = replica.refresh(&client, &refresh_token(winner)).await;
                assert_eq!(refresh.error(), "invalid_grant");
            }
        }
    }
    eprintln!("{one_token} of 50 races issued a token before the reuse revoked it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refresh_token_raced_at_both_replicas_rotates_once_and_both_agree() {
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    let d = deployment(&url, 2, false).await;
    let client = d.a().public_client().await;
    for _ in 0..20 {
        let tokens = d.a().tokens(&client).await;
        let refresh = tokens["refresh_token"].as_str().unwrap();
        let (at_a, at_b) = tokio::join!(
            d.a().refresh(&client, refresh),
            d.b().refresh(&client, refresh)
        );
        let rotated: Vec<&Answer> = [&at_a, &at_b]
            .into_iter()
            .filter(|a| a.status == StatusCode::OK)
            .collect();
        assert_eq!(rotated.len(), 1, "{} / {}", at_a.text(), at_b.text());
        let refused = if at_a.status == StatusCode::OK {
            &at_b
        } else {
            &at_a
        };
        assert_eq!(refused.error(), "invalid_grant");
        // The loser presented a spent token: reuse, so the family is revoked, on both.
        let winner = rotated[0];
        for replica in [d.a(), d.b()] {
            assert!(verify_at(replica, &access_token(winner)).await.is_err());
            let next = replica.refresh(&client, &refresh_token(winner)).await;
            assert_eq!(next.error(), "invalid_grant");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_at_one_replica_is_refused_at_the_other() {
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    let d = deployment(&url, 2, false).await;
    let client = d.a().public_client().await;
    let tokens = d.a().tokens(&client).await;
    let token = tokens["access_token"].as_str().unwrap();
    verify_at(d.a(), token).await.unwrap();
    let revoked = d
        .b()
        .post_form("/revoke", &[("token", token), ("client_id", &client)], None)
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    assert!(verify_at(d.a(), token).await.is_err());
    // Revoking the refresh token at A ends the grant at B too.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let more = d.b().refresh(&client, refresh).await;
    assert_eq!(more.status, StatusCode::OK);
    let revoked = d
        .a()
        .post_form(
            "/revoke",
            &[("token", &refresh_token(&more)), ("client_id", &client)],
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert!(verify_at(d.b(), &access_token(&more)).await.is_err());
    assert_eq!(
        d.b().refresh(&client, &refresh_token(&more)).await.error(),
        "invalid_grant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_page_opened_on_one_replica_is_approved_on_the_other_once() {
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    let d = deployment(&url, 2, true).await;
    let client = d.a().public_client().await;
    let (_, challenge) = support::auth_server::pkce();
    let page = get(&d
        .a()
        .authorize_url(&client, &challenge, &[("scope", "mcp:tools")]))
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let form = consent_form(&page);
    // The answer reaches B (behind the same public origin as A).
    let approve = |replica: &Server| {
        let mut request = replica.approve_request(form.clone());
        request
            .headers_mut()
            .insert("origin", http::HeaderValue::from_str(&d.a().base).unwrap());
        request
    };
    let answer = send(approve(d.b())).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text());
    let location = answer.location().unwrap();
    assert!(support::query(&location, "code").is_some());
    // Answered once: the same form again, at either replica, is refused.
    for replica in [d.a(), d.b()] {
        let again = send(approve(replica)).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_started_at_one_replica_is_approved_at_the_other_and_collected_once() {
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    let d = deployment(&url, 2, true).await;
    let client = d.a().device_client().await;
    let started = d.a().start_device(&client, "mcp:tools").await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());
    let started = started.json();
    let device_code = started["device_code"].as_str().unwrap();
    assert_eq!(
        d.b().poll_device(&client, device_code).await.error(),
        "authorization_pending"
    );
    // Polled again at A at once: the poll time is shared, so it is too soon there too.
    assert_eq!(
        d.a().poll_device(&client, device_code).await.error(),
        "slow_down"
    );
    let (_, answer) = support::auth_server::answer_device_page_at(
        &d.b().base,
        &d.a().base,
        started["user_code"].as_str().unwrap(),
        "approve",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    // Both replicas polled at once after the approval: the tokens go out once.
    let (at_a, at_b) = tokio::join!(
        d.a().poll_device(&client, device_code),
        d.b().poll_device(&client, device_code)
    );
    let mut statuses = [at_a.status, at_b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_REQUEST]);
    let (winner, loser) = if at_a.status == StatusCode::OK {
        (at_a, at_b)
    } else {
        (at_b, at_a)
    };
    assert_eq!(loser.error(), "invalid_grant");
    verify_at(d.b(), &access_token(&winner)).await.unwrap();
    let refreshed = d.b().refresh(&client, &refresh_token(&winner)).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_proof_used_at_one_replica_is_refused_at_the_other_with_no_cache_configured() {
    use tower_mcp_oauth::dpop::{DpopAlgorithm, DpopKey};
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    // The replicas are given only the store: it brings the replay cache they share.
    let d = deployment(&url, 2, false).await;
    let client = d.a().public_client().await;
    let (code, verifier) = d.a().code(&client, "mcp:tools").await;
    let key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    let token_endpoint = format!("{}/token", d.a().server.issuer());
    let proof = key.proof("POST", &token_endpoint, None, None).unwrap();
    let exchange = |replica: &Server, code: &str, verifier: &str| {
        let mut request = replica.form_request(
            "/token",
            &support::auth_server::code_grant(
                code,
                verifier,
                &[
                    ("client_id", &client),
                    ("redirect_uri", support::auth_server::REDIRECT),
                ],
            ),
            None,
        );
        request
            .headers_mut()
            .insert("dpop", http::HeaderValue::from_str(&proof).unwrap());
        request
    };
    let first = send(exchange(d.a(), &code, &verifier)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.json()["token_type"], "DPoP");
    // The same proof at the other replica, with another code: refused as a replay.
    let (other_code, other_verifier) = d.a().code(&client, "mcp:tools").await;
    let replayed = send(exchange(d.b(), &other_code, &other_verifier)).await;
    assert_eq!(
        replayed.error(),
        "invalid_dpop_proof",
        "{}",
        replayed.text()
    );
    assert!(
        replayed.text().contains("used before"),
        "{}",
        replayed.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once_and_share_one_time_ids() {
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    let starts = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let pool = PostgresPool::connect(&url).await.unwrap();
            PostgresAuthorizationStore::new(pool.clone()).await.unwrap();
            PostgresReplayCache::new(pool).await.unwrap()
        })
    });
    let mut caches = Vec::new();
    for start in starts {
        caches.push(start.await.unwrap());
    }
    let now = support::now_secs();
    let id = rand::random::<[u8; 16]>();
    assert!(caches[0]
        .first_use("client", id, now + 60, now)
        .await
        .unwrap());
    for cache in &caches {
        assert!(!cache.first_use("client", id, now + 60, now).await.unwrap());
    }
    // Once expired, the id may be taken again.
    assert!(caches[1]
        .first_use("client", id, now + 120, now + 61)
        .await
        .unwrap());
}

#[tokio::test]
async fn a_full_consent_table_drops_the_oldest_page_of_the_client_holding_the_most() {
    use tower_mcp_oauth::authorization_server::{AuthorizationStore, PendingConsent, TokenHash};
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    let pool = PostgresPool::connect(&url).await.unwrap();
    let store = PostgresAuthorizationStore::new(pool)
        .await
        .unwrap()
        .max_consents(3);
    let page = |client: &str, expires_at: u64| PendingConsent {
        client_id: client.into(),
        client_name: None,
        redirect_uri: "http://127.0.0.1:9/callback".into(),
        redirect_uri_in_request: true,
        state: None,
        scopes: vec![],
        resource: "http://127.0.0.1:1/mcp".into(),
        code_challenge: "c".into(),
        subject: "alice".into(),
        csrf_hash: TokenHash([0; 32]),
        expires_at,
    };
    let now = support::now_secs();
    let id = |n: u8| TokenHash([n; 32]);
    store
        .save_consent(id(1), page("flooder", now + 100))
        .await
        .unwrap();
    store
        .save_consent(id(2), page("flooder", now + 200))
        .await
        .unwrap();
    store
        .save_consent(id(3), page("honest", now + 300))
        .await
        .unwrap();
    // Full: the flooder's oldest page goes, the honest client's stays.
    store
        .save_consent(id(4), page("flooder", now + 400))
        .await
        .unwrap();
    assert!(store.take_consent(id(1)).await.unwrap().is_none());
    assert!(store.take_consent(id(3)).await.unwrap().is_some());
    assert!(store.take_consent(id(2)).await.unwrap().is_some());
    assert!(store.take_consent(id(4)).await.unwrap().is_some());
}

/// A TCP relay to the database that can be cut and restored, as a database restart would
/// look to the replicas: connections dropped, then refused, then accepted again.
struct Relay {
    url: String,
    up: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

async fn relay(database: &str) -> Relay {
    let target = url::Url::parse(database).unwrap();
    let upstream = format!(
        "{}:{}",
        target.host_str().unwrap(),
        target.port().unwrap_or(5432)
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut url = target.clone();
    url.set_port(Some(port)).unwrap();
    let up = Arc::new(AtomicBool::new(true));
    let (generation, _) = tokio::sync::watch::channel(0u64);
    let generation = Arc::new(generation);
    let (accepting, cuts) = (up.clone(), generation.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            if !accepting.load(Ordering::SeqCst) {
                continue; // dropped: refused
            }
            let upstream = upstream.clone();
            let mut cut = cuts.subscribe();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cut.changed() => {}
                }
            });
        }
    });
    Relay {
        url: url.to_string(),
        up,
        generation,
    }
}

impl Relay {
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_a_503_with_retry_after_and_ends_by_itself() {
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    let relay = relay(&url).await;
    let d = deployment(&relay.url, 1, false).await;
    let client = d.a().public_client().await;
    let tokens = d.a().tokens(&client).await;

    relay.cut();
    let during = d
        .a()
        .refresh(&client, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        during.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        during.text()
    );
    assert_eq!(during.error(), "temporarily_unavailable");
    assert!(during.headers.contains_key("retry-after"));
    let register = d
        .a()
        .register(serde_json::json!({"redirect_uris": [support::auth_server::REDIRECT]}))
        .await;
    assert!(register.status.is_server_error(), "{}", register.status);
    let verified = verify_at(d.a(), tokens["access_token"].as_str().unwrap()).await;
    assert!(
        matches!(verified, Err(VerifyError::Unavailable(_))),
        "{verified:?}"
    );
    // Nothing was spent while the database was away: the same refresh token still works.
    relay.restore();
    let mut after = None;
    for _ in 0..50 {
        let answer = d
            .a()
            .refresh(&client, tokens["refresh_token"].as_str().unwrap())
            .await;
        if answer.status != StatusCode::SERVICE_UNAVAILABLE {
            after = Some(answer);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let after = after.expect("the server recovered");
    assert_eq!(after.status, StatusCode::OK, "{}", after.text());
    let json: Value = after.json();
    assert!(json["access_token"].is_string());
}

#[tokio::test]
async fn the_pool_never_quotes_its_connection_string() {
    let Some(url) = database_url() else { return };
    let with_password = url.replacen("postgres://", "postgres://user:hunter2-secret@", 1);
    let pool = PostgresPool::builder(&with_password).timeout(std::time::Duration::from_secs(1));
    assert!(!format!("{pool:?}").contains("hunter2"));
    let unreachable = "postgres://user:hunter2-secret@127.0.0.1:1/db";
    let error = PostgresPool::builder(unreachable)
        .timeout(std::time::Duration::from_secs(1))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), tower_mcp_oauth::ErrorKind::Storage);
    assert!(!format!("{error} {error:?}").contains("hunter2"));
    let malformed = PostgresPool::connect("postgres://user:hunter2-secret@[::1")
        .await
        .unwrap_err();
    assert!(!format!("{malformed} {malformed:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_full_device_table_drops_the_oldest_waiting_one_of_the_client_holding_the_most() {
    use tower_mcp_oauth::authorization_server::{
        AuthorizationStore, DeviceGrant, DeviceSave, DeviceStatus, TokenHash,
    };
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    let pool = PostgresPool::connect(&url).await.unwrap();
    let store = PostgresAuthorizationStore::new(pool)
        .await
        .unwrap()
        .max_devices(3);
    let now = support::now_secs();
    let grant = |client: &str, user: u8, expires_at: u64| DeviceGrant {
        client_id: client.into(),
        client_name: None,
        user_code: TokenHash([user; 32]),
        scopes: vec![],
        resource: "http://127.0.0.1:1/mcp".into(),
        expires_at,
        interval: 5,
        last_poll: 0,
        status: DeviceStatus::Pending,
        family_id: format!("family-{user}"),
    };
    let save = |code: u8, client: &'static str, expires_at: u64| {
        let store = &store;
        async move {
            store
                .save_device(TokenHash([code; 32]), grant(client, code, expires_at))
                .await
                .unwrap()
        }
    };
    assert_eq!(save(1, "flooder", now + 100).await, DeviceSave::Saved);
    assert_eq!(save(2, "flooder", now + 200).await, DeviceSave::Saved);
    assert_eq!(save(3, "honest", now + 300).await, DeviceSave::Saved);
    // Full: a newcomer gets in, and the flooder's oldest goes, not the honest client's.
    assert_eq!(save(4, "newcomer", now + 400).await, DeviceSave::Saved);
    let waiting = |user: u8| store.device_by_user_code(TokenHash([user; 32]));
    assert!(waiting(1).await.unwrap().is_none());
    assert!(waiting(2).await.unwrap().is_some());
    assert!(waiting(3).await.unwrap().is_some());
    assert!(waiting(4).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_repeated_at_the_other_replica_within_the_grace_period_gets_the_same_successor() {
    let Some(url) = database_url() else { return };
    let url = fresh_schema(&url).await;
    let d = deployment_with_grace(&url, 2, false, Duration::from_secs(60)).await;
    // A confidential client: the grace period is for clients whose tokens are theirs alone.
    let (client, secret) = d.a().confidential_client("client_secret_post").await;
    let (code, verifier) = d.a().code(&client, "mcp:tools").await;
    let rest = [
        ("redirect_uri", support::auth_server::REDIRECT),
        ("client_id", client.as_str()),
        ("client_secret", secret.as_str()),
        ("resource", d.a().resource.as_str()),
    ];
    let pairs = support::auth_server::code_grant(&code, &verifier, &rest);
    let tokens = d.a().post_form("/token", &pairs, None).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let auth = [("client_secret", secret.as_str())];
    let first = refresh_token(&tokens);
    let rotated = d.a().refresh_with(&client, &first, &auth).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    // Killed before keeping the answer, the client asks the other replica.
    let repeated = d.b().refresh_with(&client, &first, &auth).await;
    assert_eq!(repeated.status, StatusCode::OK, "{}", repeated.text());
    assert_eq!(refresh_token(&repeated), refresh_token(&rotated));
    // Raced at both replicas: both get the one successor.
    let second = refresh_token(&rotated);
    let (at_a, at_b) = tokio::join!(
        d.a().refresh_with(&client, &second, &auth),
        d.b().refresh_with(&client, &second, &auth)
    );
    assert_eq!(at_a.status, StatusCode::OK, "{}", at_a.text());
    assert_eq!(at_b.status, StatusCode::OK, "{}", at_b.text());
    assert_eq!(refresh_token(&at_a), refresh_token(&at_b));
    // Two rotations old: reuse, the family revoked on both.
    let reused = d.b().refresh_with(&client, &first, &auth).await;
    assert_eq!(reused.error(), "invalid_grant");
    let third = refresh_token(&at_a);
    let after = d.a().refresh_with(&client, &third, &auth).await;
    assert_eq!(after.error(), "invalid_grant");
}
