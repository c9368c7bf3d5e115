//! `PostgresCredentialStore` on a real PostgreSQL: records round-trip and survive a restart,
//! the refresh lease excludes other processes until it is dropped (and no more), corrupt rows
//! are storage errors, and two client "processes" sharing the database against the embedded
//! authorization server refresh an expired token exactly once for 200 concurrent requests.
//!
//! Needs `DATABASE_URL` (`.ci/postgres.sh start DIR` makes one); without it each test says it
//! is skipped and passes, unless `REQUIRE_POSTGRES_TESTS=1`. Every test uses keys of its own,
//! so the tests run in parallel and again on the same database.
#![cfg(all(
    feature = "postgres",
    feature = "client",
    feature = "authorization-server",
    feature = "server"
))]

mod support;

use support::postgres::database_url;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::middleware::Next;
use axum::routing::post;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use support::auth_server::Server;
use support::client::{headless_config, oauth_service};
use support::now_secs;
use tower::ServiceExt;
use tower_mcp_oauth::client::{
    CredentialKey, CredentialStore, OAuthConfig, OAuthState, PostgresCredentialStore,
    StoredCredentials, TokenSet,
};
use tower_mcp_oauth::dpop::{DpopAlgorithm, DpopKey};
use tower_mcp_oauth::metadata::ProtectedResourceMetadata;
use tower_mcp_oauth::postgres::PostgresPool;
use tower_mcp_oauth::secret::Secret;
use tower_mcp_oauth::server::{DpopPolicy, RequireBearerLayer, ResourceMetadataService};
use tower_mcp_oauth::ErrorKind;

/// One client "process": a pool of its own and a store on it.
async fn process(url: &str) -> PostgresCredentialStore {
    let pool = PostgresPool::connect(url).await.unwrap();
    PostgresCredentialStore::new(pool).await.unwrap()
}

/// A direct connection, to look at (or spoil) what the store wrote.
async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// A resource nobody else uses.
fn unique_resource() -> String {
    format!("https://mcp.example.com/{:016x}/mcp", rand::random::<u64>())
}

fn tokens(access: &str, dpop_key: Option<DpopKey>) -> TokenSet {
    TokenSet {
        access_token: Secret::new(access),
        token_type: if dpop_key.is_some() { "DPoP" } else { "Bearer" }.into(),
        refresh_token: Some(Secret::new(format!("refresh-{access}"))),
        expires_at: Some(4_000_000_000),
        scopes: vec!["mcp:tools".into()],
        issued_at: Some(1_700_000_000),
        dpop_key,
        id_token: None,
    }
}

fn record(access: &str, dpop_key: Option<DpopKey>) -> StoredCredentials {
    StoredCredentials {
        tokens: Some(tokens(access, dpop_key)),
        ..Default::default()
    }
}

fn access_token(record: &StoredCredentials) -> &str {
    record.tokens.as_ref().unwrap().access_token.expose()
}

#[tokio::test]
async fn records_round_trip_and_survive_a_restart() {
    let Some(url) = database_url() else { return };
    let store = process(&url).await;
    let resource = unique_resource();
    let first = CredentialKey::new(&resource, "https://auth-1.example.com");
    let second = CredentialKey::new(&resource, "https://auth-2.example.com");
    assert!(store.load(&first).await.unwrap().is_none());
    assert!(store.latest(&resource).await.unwrap().is_none());

    let dpop_key = DpopKey::generate(DpopAlgorithm::ES256).unwrap();
    store
        .save(&first, &record("access-1", Some(dpop_key.clone())))
        .await
        .unwrap();
    store
        .save(&second, &record("access-2", None))
        .await
        .unwrap();
    let (key, latest) = store.latest(&resource).await.unwrap().unwrap();
    assert_eq!(key, second, "the most recently written record");
    assert_eq!(access_token(&latest), "access-2");
    // Written again, the first is the latest; the stamps are strictly ordered.
    store
        .save(&first, &record("access-3", Some(dpop_key.clone())))
        .await
        .unwrap();
    let (key, latest) = store.latest(&resource).await.unwrap().unwrap();
    assert_eq!(key, first);
    assert_eq!(access_token(&latest), "access-3");
    let older = store.load(&second).await.unwrap().unwrap();
    assert!(latest.updated_at > older.updated_at && older.updated_at > 0);
    // Another resource's records are not its records.
    assert!(store.latest(&unique_resource()).await.unwrap().is_none());

    // The row holds the record as FileStore writes it, as JSONB, in format 1.
    let row = admin(&url)
        .await
        .query_one(
            "SELECT format, record::text FROM mcp_oauth_client_credentials
             WHERE resource = $1 AND issuer = $2",
            &[&first.resource, &first.issuer],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    let stored: serde_json::Value = serde_json::from_str(row.get::<_, &str>(1)).unwrap();
    let mut expected = serde_json::to_value(record("access-3", Some(dpop_key.clone()))).unwrap();
    expected["updated_at"] = stored["updated_at"].clone();
    assert_eq!(stored, expected);

    // A restart: a new pool and a new store read what the old one wrote.
    drop(store);
    let restarted = process(&url).await;
    let loaded = restarted.load(&first).await.unwrap().unwrap();
    let tokens = loaded.tokens.clone().unwrap();
    assert_eq!(tokens, self::tokens("access-3", Some(dpop_key.clone())));
    assert_eq!(
        tokens.dpop_key.unwrap().thumbprint(),
        dpop_key.thumbprint(),
        "the DPoP key comes back with the tokens"
    );
    let (key, latest) = restarted.latest(&resource).await.unwrap().unwrap();
    assert_eq!((key, latest.updated_at), (first.clone(), loaded.updated_at));
    // Debug shows neither the database nor anything stored.
    let debug = format!("{restarted:?}");
    assert!(debug.contains("PostgresCredentialStore"), "{debug}");
    assert!(
        !debug.contains("mcp_oauth_test") && !debug.contains("access-"),
        "{debug}"
    );

    restarted.remove(&first).await.unwrap();
    assert!(restarted.load(&first).await.unwrap().is_none());
    assert_eq!(
        restarted.latest(&resource).await.unwrap().unwrap().0,
        second
    );
    restarted.remove(&second).await.unwrap();
    restarted.remove(&second).await.unwrap();
    assert!(restarted.latest(&resource).await.unwrap().is_none());
}

/// The advisory lock key the store uses for `key`, computed here as any other process would.
fn lease_id(key: &CredentialKey) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(b"tower-mcp-oauth credential lease v1\0");
    for part in [&key.resource, &key.issuer] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    i64::from_be_bytes(<[u8; 8]>::try_from(&digest[..8]).unwrap())
}

/// Sessions holding the advisory lock for `key`.
async fn holders(admin: &tokio_postgres::Client, key: &CredentialKey) -> i64 {
    let id = lease_id(key);
    let (high, low) = ((id >> 32) & 0xffff_ffff, id & 0xffff_ffff);
    admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND objsubid = 1 AND classid::bigint = $1 AND objid::bigint = $2",
            &[&high, &low],
        )
        .await
        .unwrap()
        .get(0)
}

/// Waits (a little) for the server to see a closed connection's lock go.
async fn until_released(admin: &tokio_postgres::Client, key: &CredentialKey) -> Duration {
    let start = Instant::now();
    while holders(admin, key).await != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the lease was not released"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_excludes_other_processes_until_it_is_dropped() {
    let Some(url) = database_url() else { return };
    let admin = admin(&url).await;
    // Process one has a single pooled connection: the lease must not take it.
    let one = PostgresCredentialStore::new(
        PostgresPool::builder(&url)
            .max_size(1)
            .connect()
            .await
            .unwrap(),
    )
    .await
    .unwrap()
    .lease_timeout(Duration::from_millis(300));
    let two_pool = PostgresPool::connect(&url).await.unwrap();
    let two = PostgresCredentialStore::new(two_pool.clone())
        .await
        .unwrap()
        .lease_timeout(Duration::from_millis(300));
    let two_patient = PostgresCredentialStore::new(two_pool)
        .await
        .unwrap()
        .lease_timeout(Duration::from_secs(10));
    let resource = unique_resource();
    let a = CredentialKey::new(&resource, "https://auth.example.com");
    let b = CredentialKey::new(unique_resource(), "https://auth.example.com");

    let held = one.lease(&a).await.unwrap().expect("a lease");
    assert_eq!(holders(&admin, &a).await, 1);
    // The holder still reads and writes through its one pooled connection (the refresher
    // stores the new tokens while it holds the lease).
    one.save(&a, &record("access-1", None)).await.unwrap();
    assert!(one.load(&a).await.unwrap().is_some());
    // Another key is another lease.
    let other = two
        .lease(&b)
        .await
        .unwrap()
        .expect("a lease on another key");
    drop(other);

    // The same key waits, and gives up after the lease timeout, as a storage error.
    let start = Instant::now();
    let error = two.lease(&a).await.unwrap_err();
    let waited = start.elapsed();
    assert_eq!(error.kind(), ErrorKind::Storage, "{error}");
    assert!(error.to_string().contains("refresh lease"), "{error}");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "lock_timeout bounds the wait: {waited:?}"
    );

    // A patient waiter gets in promptly once the holder lets go.
    let waiter = {
        let (store, key) = (two_patient.clone(), a.clone());
        tokio::spawn(async move {
            let lease = store.lease(&key).await;
            (lease, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter waits while the lease is held"
    );
    let released = Instant::now();
    drop(held);
    let (lease, got) = waiter.await.unwrap();
    let second = lease.unwrap().expect("a lease");
    let delay = got - released;
    assert!(delay < Duration::from_secs(1), "handed over in {delay:?}");
    assert_eq!(holders(&admin, &a).await, 1);

    // A waiter that gives up (its caller's timeout) leaves nothing behind: once the holder
    // drops its lease, nobody holds the key.
    let abandoned = tokio::time::timeout(Duration::from_millis(200), one.lease(&a)).await;
    assert!(abandoned.is_err(), "still held by the second process");
    drop(second);
    until_released(&admin, &a).await;
    let again = one.lease(&a).await.unwrap().expect("the key is free again");
    assert_eq!(holders(&admin, &a).await, 1);
    drop(again);
    until_released(&admin, &a).await;
    // Every pooled connection of process one is free of locks: it serves as before.
    assert!(one.load(&a).await.unwrap().is_some());
    one.remove(&a).await.unwrap();
}

#[tokio::test]
async fn a_corrupt_row_is_a_storage_error_not_a_panic() {
    let Some(url) = database_url() else { return };
    let store = process(&url).await;
    let admin = admin(&url).await;
    let resource = unique_resource();
    let key = CredentialKey::new(&resource, "https://auth.example.com");
    let insert = "INSERT INTO mcp_oauth_client_credentials
        (resource, issuer, format, record, updated_at) VALUES ($1, $2, $3, $4::text::jsonb, 1)
        ON CONFLICT (resource, issuer) DO UPDATE
        SET format = EXCLUDED.format, record = EXCLUDED.record";
    for json in [
        r#"{"tokens": {"access_token": "leaked-secret-value", "token_type": 7}}"#,
        r#""leaked-secret-value""#,
        r#"[1, 2, 3]"#,
    ] {
        admin
            .execute(insert, &[&key.resource, &key.issuer, &1i32, &json])
            .await
            .unwrap();
        let error = store.load(&key).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Storage);
        let message = error.to_string();
        assert!(message.contains("unreadable"), "{message}");
        assert!(!message.contains("leaked-secret-value"), "{message}");
        let error = store.latest(&resource).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Storage);
        // What a user sees: the client cannot start from it, and says why.
        let config = OAuthConfig::new().store(store.clone());
        let error = OAuthState::new(&resource, Some(config)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Storage);
    }
    // A record from a newer version of the crate is refused, not misread.
    admin
        .execute(insert, &[&key.resource, &key.issuer, &2i32, &"{}"])
        .await
        .unwrap();
    let error = store.load(&key).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Storage);
    assert!(error.to_string().contains("newer version"), "{error}");
    // It can still be removed, and the store works on.
    store.remove(&key).await.unwrap();
    assert!(store.load(&key).await.unwrap().is_none());
    store.save(&key, &record("access-1", None)).await.unwrap();
    assert_eq!(
        access_token(&store.load(&key).await.unwrap().unwrap()),
        "access-1"
    );
    store.remove(&key).await.unwrap();
}

/// Token requests the authorization server received, by grant type.
#[derive(Default)]
struct TokenRequests {
    refresh: AtomicUsize,
    code: AtomicUsize,
}

/// The authorization server with `/mcp` protected beside it and its token requests counted.
async fn counted_server(requests: Arc<TokenRequests>) -> Server {
    Server::start_with(
        |config| config,
        move |server, resource| {
            let metadata = ResourceMetadataService::new(ProtectedResourceMetadata {
                resource: resource.to_owned(),
                authorization_servers: vec![server.issuer().to_owned()],
                ..Default::default()
            })
            .unwrap();
            let bearer = RequireBearerLayer::new(server.local_verifier(resource))
                .resource(resource)
                .resource_metadata(metadata.url())
                .dpop(DpopPolicy::accepted());
            let mut app = server
                .router()
                .route("/mcp", post(|| async { "ok" }).layer(bearer));
            for path in metadata.paths() {
                app = app.route_service(path, metadata.clone());
            }
            app.layer(axum::middleware::from_fn(
                move |request: Request<Body>, next: Next| {
                    let requests = requests.clone();
                    async move {
                        if request.uri().path() != "/token" {
                            return next.run(request).await;
                        }
                        let (parts, body) = request.into_parts();
                        let bytes = axum::body::to_bytes(body, 64 * 1024)
                            .await
                            .unwrap_or_default();
                        let grant = url::form_urlencoded::parse(&bytes)
                            .find(|(name, _)| name == "grant_type")
                            .map(|(_, value)| value.into_owned());
                        match grant.as_deref() {
                            Some("refresh_token") => &requests.refresh,
                            Some("authorization_code") => &requests.code,
                            _ => {
                                return next
                                    .run(Request::from_parts(parts, Body::from(bytes)))
                                    .await
                            }
                        }
                        .fetch_add(1, Ordering::SeqCst);
                        next.run(Request::from_parts(parts, Body::from(bytes)))
                            .await
                    }
                },
            ))
        },
    )
    .await
}

fn mcp_request(server: &Server) -> Request<Full<Bytes>> {
    Request::post(&server.resource)
        .header("content-type", "application/json")
        .body(Full::from("{}"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_the_database_refresh_an_expired_token_once() {
    let Some(url) = database_url() else { return };
    let requests = Arc::new(TokenRequests::default());
    let server = counted_server(requests.clone()).await;
    let key = CredentialKey::new(&server.resource, &server.base);
    // The port may have served an earlier run: start from nothing.
    let setup = process(&url).await;
    setup.remove(&key).await.unwrap();

    // Sign in once; the tokens land in the database.
    let signed_in = OAuthState::new(
        &server.resource,
        Some(headless_config().store(setup.clone())),
    )
    .await
    .unwrap();
    signed_in.authorize().await.unwrap();
    drop(signed_in);
    let (stored_key, mut stored) = setup.latest(&server.resource).await.unwrap().unwrap();
    assert_eq!(stored_key, key);
    // The access token has expired (as far as the clients can tell): both must refresh.
    stored.tokens.as_mut().unwrap().expires_at = Some(now_secs() - 60);
    setup.save(&key, &stored).await.unwrap();
    let expired = stored.tokens.clone().unwrap();

    // Two "processes": their own pools, stores, states and layers, sharing only the database.
    // No authorization handler: if refreshing fails, the requests fail.
    let a = OAuthState::new(
        &server.resource,
        Some(OAuthConfig::new().store(process(&url).await)),
    )
    .await
    .unwrap();
    let b = OAuthState::new(
        &server.resource,
        Some(OAuthConfig::new().store(process(&url).await)),
    )
    .await
    .unwrap();
    assert_eq!(a.credentials(), Some(expired.clone()));
    assert_eq!(b.credentials(), Some(expired.clone()));
    let (refreshes, codes) = (
        requests.refresh.load(Ordering::SeqCst),
        requests.code.load(Ordering::SeqCst),
    );
    assert_eq!((refreshes, codes), (0, 1), "one sign-in, no refresh yet");

    let services = [oauth_service(a.clone()), oauth_service(b.clone())];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let service = services[i % 2].clone();
        let request = mcp_request(&server);
        tasks.spawn(async move { service.oneshot(request).await.map(|r| r.status()) });
    }
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(StatusCode::OK) => ok += 1,
            other => panic!(
                "a request failed: {other:?} (token requests: {} refresh, {} code)",
                requests.refresh.load(Ordering::SeqCst),
                requests.code.load(Ordering::SeqCst)
            ),
        }
    }
    assert_eq!(ok, 200);
    assert_eq!(
        requests.refresh.load(Ordering::SeqCst),
        1,
        "one process refreshed, the other adopted its tokens"
    );
    assert_eq!(
        requests.code.load(Ordering::SeqCst),
        1,
        "nobody signed in again"
    );
    let (tokens_a, tokens_b) = (a.credentials().unwrap(), b.credentials().unwrap());
    assert_ne!(tokens_a.access_token, expired.access_token);
    assert_eq!(tokens_a, tokens_b, "both processes use the one new token");
    let stored = setup.load(&key).await.unwrap().unwrap().tokens.unwrap();
    assert_eq!(stored, tokens_a, "and it is the stored one");

    // The refresh family is alive: B refreshes again with the rotated refresh token (a reused
    // one would have revoked the family and this would be invalid_grant), A adopts B's tokens
    // from the database without a request, and both are still served.
    let refreshed = b.refresh().await.unwrap();
    assert_eq!(requests.refresh.load(Ordering::SeqCst), 2);
    assert_eq!(a.refresh().await.unwrap(), refreshed);
    assert_eq!(
        requests.refresh.load(Ordering::SeqCst),
        2,
        "A adopted B's tokens"
    );
    for service in services {
        let response = service.oneshot(mcp_request(&server)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    setup.remove(&key).await.unwrap();
}
