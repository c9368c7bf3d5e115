use super::*;

fn hash_of(n: u64) -> TokenHash {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    TokenHash(bytes)
}

fn family(id: &str, client_id: &str) -> TokenFamily {
    TokenFamily {
        id: id.into(),
        client_id: client_id.into(),
        subject: "alice".into(),
        scopes: vec![],
        resource: "http://127.0.0.1/mcp".into(),
        expires_at: u64::MAX / 2,
        revoked: false,
        dpop_jkt: None,
    }
}

fn access_in(family_id: Option<&str>, client_id: &str) -> AccessRecord {
    AccessRecord {
        client_id: client_id.into(),
        subject: "alice".into(),
        scopes: vec![],
        resource: "http://127.0.0.1/mcp".into(),
        issued_at: 0,
        expires_at: u64::MAX / 2,
        family_id: family_id.map(str::to_owned),
        dpop_jkt: None,
        act: None,
    }
}

fn device(client_id: &str, user_code: u64, expires_at: u64) -> DeviceGrant {
    DeviceGrant {
        client_id: client_id.into(),
        client_name: None,
        user_code: hash_of(user_code),
        scopes: vec![],
        resource: "http://127.0.0.1/mcp".into(),
        expires_at,
        interval: 5,
        last_poll: 0,
        status: DeviceStatus::Pending,
        family_id: format!("family-{user_code}"),
    }
}

#[tokio::test]
async fn device_grants_are_capped_per_client_and_user_codes_stay_unique() {
    let store = MemoryAuthorizationStore::new();
    let later = crate::clock::now_secs() + 600;
    for n in 0..MAX_DEVICES_PER_CLIENT as u64 {
        assert_eq!(
            store
                .save_device(hash_of(10_000 + n), device("greedy", 1_000 + n, later))
                .await
                .unwrap(),
            DeviceSave::Saved
        );
    }
    // Full for this client: refused, and nobody's grant was dropped for it.
    assert_eq!(
        store
            .save_device(hash_of(4999), device("greedy", 999, later))
            .await
            .unwrap(),
        DeviceSave::Full
    );
    assert!(store
        .device_by_user_code(hash_of(1_000))
        .await
        .unwrap()
        .is_some());
    // Another client still gets in; a live user code is not given twice, an expired one is.
    assert_eq!(
        store
            .save_device(hash_of(5000), device("other", 1_000, later))
            .await
            .unwrap(),
        DeviceSave::UserCodeTaken
    );
    assert_eq!(
        store
            .save_device(hash_of(5001), device("other", 100, 1))
            .await
            .unwrap(),
        DeviceSave::Saved
    );
    assert_eq!(
        store
            .save_device(hash_of(5002), device("other", 100, later))
            .await
            .unwrap(),
        DeviceSave::Saved
    );
    // Polled by the wrong client: nothing changes; answered once only.
    assert!(matches!(
        store
            .poll_device(hash_of(5002), "greedy", 10)
            .await
            .unwrap(),
        DevicePoll::Unknown
    ));
    let approve = DeviceStatus::Approved {
        subject: "alice".into(),
    };
    assert!(store
        .answer_device(hash_of(100), approve.clone(), 10)
        .await
        .unwrap());
    assert!(!store
        .answer_device(hash_of(100), DeviceStatus::Denied, 10)
        .await
        .unwrap());
    assert!(matches!(
        store.poll_device(hash_of(5002), "other", 10).await.unwrap(),
        DevicePoll::Approved(_)
    ));
    assert!(matches!(
        store.poll_device(hash_of(5002), "other", 11).await.unwrap(),
        DevicePoll::Unknown
    ));
    assert!(store
        .device_by_user_code(hash_of(100))
        .await
        .unwrap()
        .is_none());
}

#[test]
fn a_poll_sooner_than_the_interval_slows_the_device_down() {
    let mut grant = device("c", 1, 1_000);
    assert!(matches!(grant.poll(100), DevicePoll::Pending));
    assert!(matches!(grant.poll(104), DevicePoll::SlowDown));
    assert_eq!(grant.interval, 10);
    assert!(matches!(grant.poll(110), DevicePoll::SlowDown), "10 s now");
    assert!(matches!(grant.poll(125), DevicePoll::Pending));
    assert!(matches!(grant.poll(1_000), DevicePoll::Expired));
}

fn sizes(store: &MemoryAuthorizationStore) -> (usize, usize, usize) {
    store.with(|s, _| (s.families.len(), s.refresh.len(), s.access.len()))
}

#[tokio::test]
async fn a_revocation_before_the_family_is_saved_sticks() {
    let store = MemoryAuthorizationStore::new();
    store.revoke_family("f").await.unwrap();
    let start = store
        .save_family(family("f", "c"), hash_of(1))
        .await
        .unwrap();
    assert_eq!(start, FamilyStart::Revoked);
    assert!(store.family_of_refresh(hash_of(1)).await.unwrap().is_none());
    assert!(matches!(
        store
            .rotate_refresh(hash_of(1), hash_of(2), 0, 0)
            .await
            .unwrap(),
        RefreshRotation::Invalid
    ));
}

/// Exchanged tokens have a queue of their own in the family: past its cap the oldest
/// exchanged one goes, never the family's own access token; revoking the family takes both.
#[tokio::test]
async fn exchanged_tokens_never_retire_the_familys_own() {
    let store = MemoryAuthorizationStore::new()
        .limits(MemoryStoreLimits::default().exchanged_per_family(3));
    store
        .save_family(family("f", "c"), hash_of(0))
        .await
        .unwrap();
    store
        .save_access(hash_of(100), access_in(Some("f"), "c"))
        .await
        .unwrap();
    for n in 0..10 {
        let exchanged = AccessRecord {
            act: Some(r#"{"sub":"mcp-server"}"#.into()),
            ..access_in(Some("f"), "mcp-server")
        };
        store
            .save_access(hash_of(200 + n), exchanged)
            .await
            .unwrap();
    }
    let live = |n| {
        let store = &store;
        async move { store.access(hash_of(n)).await.unwrap().is_some() }
    };
    assert!(live(100).await, "the user's own token");
    assert!(!live(206).await, "past the cap");
    for n in 207..210 {
        assert!(live(n).await, "the latest exchanged {n}");
    }
    store.revoke_family("f").await.unwrap();
    assert!(!live(100).await);
    assert!(!live(209).await);
}

#[tokio::test]
async fn a_family_refreshing_forever_holds_a_bounded_history() {
    let store = MemoryAuthorizationStore::new();
    let limits = MemoryStoreLimits::default();
    store
        .save_family(family("f", "c"), hash_of(0))
        .await
        .unwrap();
    for n in 0..1_000 {
        let rotation = store.rotate_refresh(hash_of(n), hash_of(n + 1), 1, 0).await;
        assert!(matches!(rotation.unwrap(), RefreshRotation::Rotated(_)));
        store
            .save_access(hash_of(1_000_000 + n), access_in(Some("f"), "c"))
            .await
            .unwrap();
    }
    let (families, refresh, access) = sizes(&store);
    assert_eq!(families, 1);
    assert_eq!(refresh, limits.spent_refresh_per_family + 1);
    assert_eq!(access, limits.access_per_family);
    // A recently spent token is still reuse; one forgotten long ago is just unknown.
    assert!(matches!(
        store
            .rotate_refresh(hash_of(0), hash_of(5_000), 1, 0)
            .await
            .unwrap(),
        RefreshRotation::Invalid
    ));
    assert!(matches!(
        store
            .rotate_refresh(hash_of(999), hash_of(5_001), 1, 0)
            .await
            .unwrap(),
        RefreshRotation::Reused(_)
    ));
    assert_eq!(
        sizes(&store).2,
        0,
        "reuse revokes the family's access tokens"
    );
}

#[tokio::test]
async fn one_client_flooding_families_pushes_out_only_its_own() {
    let store = MemoryAuthorizationStore::new().limits(
        MemoryStoreLimits::default()
            .max_families_per_client(10)
            .max_families(25),
    );
    store
        .save_family(family("victim", "v"), hash_of(0))
        .await
        .unwrap();
    for n in 1..200 {
        let id = format!("a{n}");
        store
            .save_family(family(&id, "a"), hash_of(n))
            .await
            .unwrap();
    }
    assert_eq!(sizes(&store).0, 11);
    assert!(store.family("victim").await.unwrap().is_some());
    // Many flooding clients together: the store stays at its cap and evicts the biggest.
    for n in 0..100 {
        let id = format!("b{n}");
        store
            .save_family(family(&id, &format!("b{}", n % 5)), hash_of(1_000 + n))
            .await
            .unwrap();
    }
    assert!(sizes(&store).0 <= 25);
    assert!(store.family("victim").await.unwrap().is_some());
}

#[tokio::test]
async fn codes_and_loose_access_tokens_are_capped_per_client() {
    let store = MemoryAuthorizationStore::new();
    let limits = MemoryStoreLimits::default();
    for n in 0..1_000 {
        let grant = CodeGrant {
            client_id: "c".into(),
            subject: "alice".into(),
            scopes: vec![],
            resource: String::new(),
            redirect_uri: String::new(),
            redirect_uri_in_request: false,
            code_challenge: String::new(),
            expires_at: u64::MAX / 2,
            family_id: format!("f{n}"),
        };
        store.save_code(hash_of(n), grant).await.unwrap();
        store
            .save_access(hash_of(10_000 + n), access_in(None, "c"))
            .await
            .unwrap();
    }
    let (codes, access) = store.with(|s, _| (s.codes.len(), s.access.len()));
    assert_eq!(codes, limits.codes_per_client);
    assert_eq!(access, limits.loose_access_per_client);
    assert!(matches!(
        store.redeem_code(hash_of(999)).await.unwrap(),
        CodeRedemption::Redeemed(_)
    ));
}

#[tokio::test]
async fn clients_filling_the_device_store_push_out_only_their_own() {
    let store = MemoryAuthorizationStore::new();
    let later = crate::clock::now_secs() + 600;
    let save = |code: u64, client: &str, user_code: u64| {
        store.save_device(hash_of(code), device(client, user_code, later))
    };
    assert_eq!(save(1, "honest", 1).await.unwrap(), DeviceSave::Saved);
    // Self-registered flooders, each at its own cap, fill the store and more.
    let mut code = 100;
    for flooder in 0..(MAX_DEVICES / MAX_DEVICES_PER_CLIENT + 1) {
        for _ in 0..MAX_DEVICES_PER_CLIENT {
            code += 1;
            let saved = save(code, &format!("flooder-{flooder}"), code)
                .await
                .unwrap();
            assert_eq!(saved, DeviceSave::Saved);
        }
    }
    assert!(store.with(|s, _| s.devices.len()) <= MAX_DEVICES);
    assert!(
        store
            .device_by_user_code(hash_of(1))
            .await
            .unwrap()
            .is_some(),
        "the honest client's authorization is still waiting"
    );
    assert_eq!(save(2, "newcomer", 2).await.unwrap(), DeviceSave::Saved);
}

#[tokio::test]
async fn the_token_rotated_last_may_come_again_within_the_grace_period_only() {
    let store = MemoryAuthorizationStore::new();
    store
        .save_family(family("f", "client"), hash_of(1))
        .await
        .unwrap();
    let rotate =
        |old: u64, new: u64, now: u64| store.rotate_refresh(hash_of(old), hash_of(new), now, 60);
    assert!(matches!(
        rotate(1, 2, 100).await.unwrap(),
        RefreshRotation::Rotated(_)
    ));
    assert!(matches!(
        rotate(1, 2, 160).await.unwrap(),
        RefreshRotation::Repeated(_)
    ));
    // Asking for another successor than the one given is not a repeat: reuse.
    let store_b = MemoryAuthorizationStore::new();
    store_b
        .save_family(family("g", "client"), hash_of(1))
        .await
        .unwrap();
    store_b
        .rotate_refresh(hash_of(1), hash_of(2), 100, 60)
        .await
        .unwrap();
    assert!(matches!(
        store_b
            .rotate_refresh(hash_of(1), hash_of(3), 110, 60)
            .await
            .unwrap(),
        RefreshRotation::Reused(_)
    ));
    // Past the window: reuse, and the family is revoked.
    assert!(matches!(
        rotate(1, 2, 161).await.unwrap(),
        RefreshRotation::Reused(_)
    ));
    assert!(matches!(
        rotate(2, 3, 162).await.unwrap(),
        RefreshRotation::Invalid
    ));
}

#[tokio::test]
async fn denied_authorizations_make_room_too_and_approved_ones_stay() {
    let store = MemoryAuthorizationStore::new();
    let later = crate::clock::now_secs() + 600;
    // A flooder's authorizations, all denied, fill most of the store.
    let mut code = 0;
    for flooder in 0..(MAX_DEVICES / MAX_DEVICES_PER_CLIENT) {
        for _ in 0..MAX_DEVICES_PER_CLIENT - 1 {
            code += 1;
            let mut grant = device(&format!("flooder-{flooder}"), code, later);
            grant.status = DeviceStatus::Denied;
            store.save_device(hash_of(code), grant).await.unwrap();
        }
    }
    // One a user approved, not yet collected; then the store fills up.
    let mut approved = device("honest", 1_000_000, later);
    approved.status = DeviceStatus::Approved {
        subject: "alice".into(),
    };
    store
        .save_device(hash_of(1_000_000), approved)
        .await
        .unwrap();
    for n in 0..10 {
        let saved = store
            .save_device(
                hash_of(2_000_000 + n),
                device("newcomer", 2_000_000 + n, later),
            )
            .await
            .unwrap();
        assert_eq!(saved, DeviceSave::Saved);
    }
    assert!(store.with(|s, _| s.devices.len()) <= MAX_DEVICES);
    let kept = store.device_by_user_code(hash_of(1_000_000)).await.unwrap();
    assert!(
        kept.is_some(),
        "an approved authorization is never dropped for room"
    );
}
