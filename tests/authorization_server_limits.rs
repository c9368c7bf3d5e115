//! The embedded authorization server's limits and store over real HTTP on 127.0.0.1: oversized
//! and malformed requests get client errors, a flood of consent pages pushes out nobody else's
//! user, and a code redeemed twice at once gives nothing, even with a slow store.
#![cfg(all(feature = "authorization-server", feature = "jwt"))]

mod support;

use std::sync::Arc;

use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use support::auth_server::{consent_form, pkce, Server, REDIRECT};
use support::{get, query, send};
use tower_mcp_oauth::authorization_server::{ConsentPage, TokenFormat};

#[tokio::test]
async fn oversized_requests_are_refused() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let (_, challenge) = pkce();
    let long_state = "s".repeat(10_000);
    let answer = get(&s.authorize_url(&client, &challenge, &[("state", &long_state)])).await;
    assert_eq!(answer.status, StatusCode::URI_TOO_LONG);
    let answer = s
        .register(json!({"redirect_uris": [REDIRECT], "client_name": "n".repeat(20_000)}))
        .await;
    assert_eq!(answer.error(), "invalid_client_metadata");
}

#[tokio::test]
async fn malformed_requests_get_client_errors_not_server_errors() {
    let s = Server::start(|c| c).await;
    let client = s.public_client().await;
    let token_bodies: [&[u8]; 7] = [
        b"",
        b"grant_type",
        b"grant_type=authorization_code&code=%FF%FE&code_verifier=%00",
        b"grant_type=refresh_token&refresh_token=&client_id=",
        b"grant_type=authorization_code&grant_type=refresh_token",
        b"\xff\xfe\xfd=\x00",
        b"client_id=%E2%82&grant_type=client_credentials",
    ];
    for body in token_bodies {
        for path in ["/token", "/revoke", "/introspect"] {
            let answer = send(
                Request::post(format!("{}{path}", s.base))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::from(body.to_vec()))
                    .unwrap(),
            )
            .await;
            assert!(
                answer.status.is_client_error(),
                "{path} {body:?}: {}",
                answer.status
            );
            assert!(!answer.error().is_empty(), "{path}: an OAuth error body");
        }
    }
    for basic in [
        "Basic",
        "Basic !!!",
        "Basic Og==",
        "Bearer x",
        "Basic w4M6w4M=",
    ] {
        let answer = send(
            Request::post(format!("{}/token", s.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", basic)
                .body(Full::from("grant_type=client_credentials"))
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{basic}");
    }
    for body in [
        "",
        "null",
        "[]",
        "{\"redirect_uris\": 5}",
        "{\"redirect_uris\": [\"\\u0000\"]}",
    ] {
        let answer = s
            .register(serde_json::from_str(body).unwrap_or(Value::Null))
            .await;
        assert!(answer.status.is_client_error(), "{body}");
    }
    let (_, challenge) = pkce();
    for query in [
        "".to_owned(),
        "client_id=%FF".to_owned(),
        format!("client_id={client}&redirect_uri=%00"),
        format!("client_id={client}&redirect_uri=javascript:alert(1)"),
        format!("client_id={client}&redirect_uri={REDIRECT}&response_type=code&code_challenge={challenge}&code_challenge_method=S256&resource=%20"),
    ] {
        let answer = get(&format!("{}/authorize?{query}", s.base)).await;
        assert!(!answer.status.is_server_error(), "{query}: {}", answer.status);
        if let Some(location) = answer.location() {
            assert!(location.as_str().starts_with(REDIRECT), "only to the registered URI");
        }
    }
}

#[tokio::test]
async fn a_flood_of_consent_pages_does_not_push_out_another_clients_user() {
    let s = Server::start(|c| c.approval_policy(ConsentPage::new("bob"))).await;
    let user_client = s.public_client().await;
    let flooder = s.public_client().await;
    let (verifier, challenge) = pkce();
    let page = get(&s.authorize_url(&user_client, &challenge, &[("scope", "mcp:tools")])).await;
    assert_eq!(page.status, StatusCode::OK);
    let (cookie, request, csrf) = consent_form(&page);

    let flood = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for _ in 0..2_000 {
        let url = s.authorize_url(&flooder, &challenge, &[("scope", "mcp:tools")]);
        let flood = flood.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = flood.acquire().await.unwrap();
            get(&url).await.status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }

    let approved = s.approve((cookie, request, csrf)).await;
    assert_eq!(
        approved.status,
        StatusCode::SEE_OTHER,
        "{}",
        approved.text()
    );
    let code = query(&approved.location().unwrap(), "code").unwrap();
    assert_eq!(
        s.exchange(&user_client, &code, &verifier).await.status,
        StatusCode::OK
    );
}

/// A store whose `save_family` waits until the test lets it go, as a slow database would:
/// the window in which a second redemption of the code arrives.
struct SlowFamilyStore(
    tower_mcp_oauth::authorization_server::MemoryAuthorizationStore,
    Arc<FamilyGate>,
);

#[derive(Default)]
struct FamilyGate {
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

mod slow_store {
    use super::SlowFamilyStore;
    use tower_mcp_oauth::authorization_server::*;
    use tower_mcp_oauth::Result;

    impl AuthorizationStore for SlowFamilyStore {
        fn save_client(&self, client: RegisteredClient) -> BoxFuture<'_, Result<()>> {
            self.0.save_client(client)
        }
        fn client<'a>(
            &'a self,
            client_id: &'a str,
        ) -> BoxFuture<'a, Result<Option<RegisteredClient>>> {
            self.0.client(client_id)
        }
        fn save_code(&self, code: TokenHash, grant: CodeGrant) -> BoxFuture<'_, Result<()>> {
            self.0.save_code(code, grant)
        }
        fn redeem_code(&self, code: TokenHash) -> BoxFuture<'_, Result<CodeRedemption>> {
            self.0.redeem_code(code)
        }
        fn save_family(
            &self,
            family: TokenFamily,
            refresh: TokenHash,
        ) -> BoxFuture<'_, Result<FamilyStart>> {
            Box::pin(async move {
                self.1.entered.notify_one();
                self.1.release.notified().await;
                self.0.save_family(family, refresh).await
            })
        }
        fn rotate_refresh(
            &self,
            old: TokenHash,
            new: TokenHash,
            now: u64,
            grace_secs: u64,
        ) -> BoxFuture<'_, Result<RefreshRotation>> {
            self.0.rotate_refresh(old, new, now, grace_secs)
        }
        fn family_of_refresh(
            &self,
            refresh: TokenHash,
        ) -> BoxFuture<'_, Result<Option<(TokenFamily, bool)>>> {
            self.0.family_of_refresh(refresh)
        }
        fn family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<Option<TokenFamily>>> {
            self.0.family(family_id)
        }
        fn save_consent(
            &self,
            id: TokenHash,
            consent: PendingConsent,
        ) -> BoxFuture<'_, Result<()>> {
            self.0.save_consent(id, consent)
        }
        fn take_consent(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<PendingConsent>>> {
            self.0.take_consent(id)
        }
        fn revoke_family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<()>> {
            self.0.revoke_family(family_id)
        }
        fn save_access(&self, token: TokenHash, record: AccessRecord) -> BoxFuture<'_, Result<()>> {
            self.0.save_access(token, record)
        }
        fn access(&self, token: TokenHash) -> BoxFuture<'_, Result<Option<AccessRecord>>> {
            self.0.access(token)
        }
        fn revoke_access(&self, token: TokenHash) -> BoxFuture<'_, Result<()>> {
            self.0.revoke_access(token)
        }
        fn save_device(
            &self,
            device_code: TokenHash,
            grant: DeviceGrant,
        ) -> BoxFuture<'_, Result<DeviceSave>> {
            self.0.save_device(device_code, grant)
        }
        fn device_by_user_code(
            &self,
            user_code: TokenHash,
        ) -> BoxFuture<'_, Result<Option<DeviceGrant>>> {
            self.0.device_by_user_code(user_code)
        }
        fn answer_device(
            &self,
            user_code: TokenHash,
            answer: DeviceStatus,
            now: u64,
        ) -> BoxFuture<'_, Result<bool>> {
            self.0.answer_device(user_code, answer, now)
        }
        fn poll_device<'a>(
            &'a self,
            device_code: TokenHash,
            client_id: &'a str,
            now: u64,
        ) -> BoxFuture<'a, Result<DevicePoll>> {
            self.0.poll_device(device_code, client_id, now)
        }
    }
}

#[tokio::test]
async fn a_code_reused_while_its_first_redemption_is_in_flight_gives_nothing() {
    let gate = Arc::new(FamilyGate::default());
    let s = Server::start(|c| {
        c.store(SlowFamilyStore(Default::default(), gate.clone()))
            .token_format(TokenFormat::Opaque)
    })
    .await;
    let client = s.public_client().await;
    let (code, verifier) = s.code(&client, "mcp:tools").await;
    // Bounded: were the second redemption let into `save_family` too, it would wait there.
    let both = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::join!(s.exchange(&client, &code, &verifier), async {
            // The first redemption is saving its tokens: the second arrives now.
            tokio::time::timeout(std::time::Duration::from_secs(10), gate.entered.notified())
                .await
                .expect("the first redemption saves its tokens");
            let second = s.exchange(&client, &code, &verifier).await;
            gate.release.notify_one();
            second
        })
    });
    let (first, second) = both.await.expect("both redemptions answered");
    assert_eq!(second.error(), "invalid_grant");
    assert_eq!(first.error(), "invalid_grant", "{}", first.text());
    assert!(first.json()["access_token"].is_null());
}
