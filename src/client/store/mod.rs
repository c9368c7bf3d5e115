//! Where the client keeps what it learns: [`CredentialStore`], in memory or in a file.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::client::registration::ClientRegistration;
use crate::client::tokens::TokenSet;
use crate::error::Result;
use crate::metadata::{AuthorizationServerMetadata, ProtectedResourceMetadata};
use crate::sync::LockExt;

use crate::BoxFuture;

/// What a store keys a record by: the protected resource and the authorization server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CredentialKey {
    /// The resource identifier (the MCP server's canonical URL).
    pub resource: String,
    /// The authorization server's issuer identifier.
    pub issuer: String,
}

impl CredentialKey {
    /// A key for `resource` at `issuer`.
    pub fn new(resource: impl Into<String>, issuer: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            issuer: issuer.into(),
        }
    }
}

/// Everything remembered for one resource at one authorization server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoredCredentials {
    /// The client registration, secret included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientRegistration>,
    /// The tokens, with absolute expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenSet>,
    /// Protected resource metadata, when the server published some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_metadata: Option<ProtectedResourceMetadata>,
    /// Authorization server metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_server: Option<AuthorizationServerMetadata>,
    /// When the record was last written, milliseconds since the epoch (set by the store).
    #[serde(default)]
    pub updated_at: u64,
}

/// Where the client keeps what it learns: the client registration, tokens with their absolute
/// expiry, and the discovered metadata, keyed by resource and issuer.
///
/// [`MemoryStore`] lives as long as the process; [`FileStore`] keeps a JSON file that survives
/// restarts, written atomically (temporary file, `fsync`, rename) with 0600 permissions.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_mcp_oauth::Error> {
/// use tower_mcp_oauth::client::{CredentialKey, CredentialStore, MemoryStore, StoredCredentials};
///
/// let store = MemoryStore::new();
/// let key = CredentialKey::new("https://mcp.example.com/mcp", "https://auth.example.com");
/// store.save(&key, &StoredCredentials::default()).await?;
/// assert!(store.load(&key).await?.is_some());
/// assert_eq!(store.latest("https://mcp.example.com/mcp").await?.unwrap().0, key);
/// # Ok(()) }
/// ```
///
/// A place to keep credentials. Implementations must be safe to share between tasks.
pub trait CredentialStore: Send + Sync + 'static {
    /// The record for `key`, if any.
    fn load<'a>(
        &'a self,
        key: &'a CredentialKey,
    ) -> BoxFuture<'a, Result<Option<StoredCredentials>>>;

    /// Replaces the record for `key`.
    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        record: &'a StoredCredentials,
    ) -> BoxFuture<'a, Result<()>>;

    /// Forgets the record for `key`.
    fn remove<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<()>>;

    /// The most recently written record for `resource` at any issuer: what a restarted client
    /// starts from before it has talked to the network.
    fn latest<'a>(
        &'a self,
        resource: &'a str,
    ) -> BoxFuture<'a, Result<Option<(CredentialKey, StoredCredentials)>>>;

    /// Holds other processes off `key` while this one refreshes, so no two redeem the same
    /// rotating refresh token; the refresher re-reads the record once it holds the lease. Stores
    /// that only one process uses need no lease and return `None` (the default).
    fn lease<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoreLease>>> {
        let _ = key;
        Box::pin(async { Ok(None) })
    }
}

/// A hold on a store entry, released when dropped.
pub struct StoreLease {
    _guard: Box<dyn Send + Sync>,
}

impl StoreLease {
    /// A lease that lasts as long as `guard` lives.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self {
            _guard: Box::new(guard),
        }
    }
}

impl std::fmt::Debug for StoreLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLease")
    }
}

type Records = BTreeMap<CredentialKey, StoredCredentials>;

fn latest_in(records: &Records, resource: &str) -> Option<(CredentialKey, StoredCredentials)> {
    records
        .iter()
        .filter(|(key, _)| key.resource == resource)
        .max_by_key(|(_, record)| record.updated_at)
        .map(|(key, record)| (key.clone(), record.clone()))
}

/// Stamps a record newer than every other, so `latest` has a strict order even within one
/// millisecond.
fn stamped(records: &Records, record: &StoredCredentials) -> StoredCredentials {
    let newest = records.values().map(|r| r.updated_at).max().unwrap_or(0);
    let now_millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut record = record.clone();
    record.updated_at = now_millis.max(newest.saturating_add(1));
    record
}

/// Credentials kept in memory, lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<Records>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Records) -> T) -> T {
        let mut guard = self.records.locked();
        f(&mut guard)
    }
}

impl CredentialStore for MemoryStore {
    fn load<'a>(
        &'a self,
        key: &'a CredentialKey,
    ) -> BoxFuture<'a, Result<Option<StoredCredentials>>> {
        Box::pin(async move { Ok(self.with(|r| r.get(key).cloned())) })
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        record: &'a StoredCredentials,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.with(|r| {
                let record = stamped(r, record);
                r.insert(key.clone(), record)
            });
            Ok(())
        })
    }

    fn remove<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.with(|r| r.remove(key));
            Ok(())
        })
    }

    fn latest<'a>(
        &'a self,
        resource: &'a str,
    ) -> BoxFuture<'a, Result<Option<(CredentialKey, StoredCredentials)>>> {
        Box::pin(async move { Ok(self.with(|r| latest_in(r, resource))) })
    }
}

mod file;

pub use crate::seal::SealingKey;
pub use file::FileStore;

#[cfg(test)]
mod tests {
    use super::file::key_digest;
    use super::*;
    use crate::error::ErrorKind;
    use crate::secret::Secret;
    use proptest::strategy::Strategy;

    fn record(token: &str) -> StoredCredentials {
        StoredCredentials {
            tokens: Some(TokenSet {
                access_token: Secret::new(token),
                token_type: "Bearer".into(),
                refresh_token: Some(Secret::new("refresh-1")),
                expires_at: Some(4_000_000_000),
                scopes: vec!["mcp".into()],
                issued_at: None,
                dpop_key: None,
                id_token: None,
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn file_store_survives_a_new_instance_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/creds.json");
        let key = CredentialKey::new("http://127.0.0.1:1/mcp", "http://127.0.0.1:2");
        let dpop_key = crate::dpop::DpopKey::generate(crate::dpop::DpopAlgorithm::ES256).unwrap();
        let mut saved = record("access-1");
        saved.tokens.as_mut().unwrap().dpop_key = Some(dpop_key.clone());
        FileStore::new(&path).save(&key, &saved).await.unwrap();

        let reopened = FileStore::new(&path);
        let loaded = reopened.load(&key).await.unwrap().unwrap();
        let tokens = loaded.tokens.unwrap();
        assert_eq!(tokens.access_token.expose(), "access-1");
        assert_eq!(tokens.expires_at, Some(4_000_000_000));
        let restored = tokens
            .dpop_key
            .clone()
            .expect("the DPoP key is stored with the tokens");
        assert_eq!(restored.thumbprint(), dpop_key.thumbprint());
        assert!(
            !format!("{restored:?} {tokens:?}").contains("pkcs8"),
            "Debug shows no key material"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let created = path.parent().unwrap();
            let mode = std::fs::metadata(created).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "the directory the store made");
        }
        // Only the store file remains: no temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut names: Vec<_> = names
            .into_iter()
            .map(|n| n.into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["creds.json", "creds.json.write-lock"]);
    }

    #[tokio::test]
    async fn leases_are_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.json");
        let short = std::time::Duration::from_millis(100);
        let (one, two) = (
            FileStore::new(&path).lease_timeout(short),
            FileStore::new(&path).lease_timeout(short),
        );
        let a = CredentialKey::new("http://127.0.0.1:1/mcp", "http://127.0.0.1:2");
        let b = CredentialKey::new("http://127.0.0.1:3/mcp", "http://127.0.0.1:2");
        let held = one.lease(&a).await.unwrap().unwrap();
        // Another "process" waits for the same key, not for another one.
        assert!(two.lease(&b).await.unwrap().is_some());
        let err = two.lease(&a).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Storage);
        drop(held);
        assert!(two.lease(&a).await.unwrap().is_some());
        assert_eq!(key_digest(&a), key_digest(&a.clone()));
        assert_ne!(key_digest(&a), key_digest(&b));
    }

    #[tokio::test]
    async fn corrupt_file_is_a_storage_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.json");
        std::fs::write(&path, b"{\"version\":1,\"records\":[[{\"resource\":").unwrap();
        let store = FileStore::new(&path);
        let key = CredentialKey::new("r", "i");
        let err = store.load(&key).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Storage);
        assert!(store.save(&key, &record("x")).await.is_err());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"{\"version\":1,\"records\":[[{\"resource\":"
        );
    }

    #[tokio::test]
    async fn a_sealed_store_shows_nothing_and_opens_only_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.json");
        let key_bytes = SealingKey::generate_bytes();
        let key = CredentialKey::new("http://127.0.0.1:1/mcp", "http://127.0.0.1:2");
        let store = FileStore::new(&path).sealed(SealingKey::new(&key_bytes));
        assert!(!store.is_sealed(), "no file yet");
        store.save(&key, &record("access-sealed")).await.unwrap();
        assert!(store.is_sealed() && FileStore::new(&path).is_sealed());
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(file.contains("\"version\": 2"), "{file}");
        for secret in ["access-sealed", "refresh-1", "127.0.0.1"] {
            assert!(!file.contains(secret), "{secret} in {file}");
        }
        let reopened = FileStore::new(&path).sealed(SealingKey::new(&key_bytes));
        let loaded = reopened.load(&key).await.unwrap().unwrap();
        assert_eq!(
            loaded.tokens.unwrap().access_token.expose(),
            "access-sealed"
        );
        assert_eq!(reopened.entries().await.unwrap().len(), 1);

        for other in [
            FileStore::new(&path).sealed(SealingKey::new(&SealingKey::generate_bytes())),
            FileStore::new(&path),
        ] {
            assert_eq!(
                other.load(&key).await.unwrap_err().kind(),
                ErrorKind::Storage
            );
            assert!(other.save(&key, &record("x")).await.is_err());
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), file, "left alone");
        // The first release read files into this shape, `version` unchecked: a sealed file
        // must fail there (so it refuses to write) rather than read as empty.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct FirstRelease {
            version: u32,
            records: Vec<(CredentialKey, StoredCredentials)>,
        }
        assert!(serde_json::from_str::<FirstRelease>(&file).is_err());
    }

    #[tokio::test]
    async fn an_upgrade_reads_the_plain_format_and_seals_it_and_a_newer_format_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.json");
        // The first release's format, byte for byte.
        std::fs::write(
            &path,
            br#"{"version":1,"records":[[{"resource":"https://mcp.example.com/mcp","issuer":"https://auth.example.com"},{"tokens":{"access_token":"old-access","token_type":"Bearer","refresh_token":"old-refresh","expires_at":4000000000,"scopes":["mcp"]},"updated_at":1700000000}]]}"#,
        )
        .unwrap();
        let key = CredentialKey::new("https://mcp.example.com/mcp", "https://auth.example.com");
        let sealed = FileStore::new(&path).sealed(SealingKey::new(&[7; 32]));
        assert!(!sealed.is_sealed(), "the plain format");
        let loaded = sealed.load(&key).await.unwrap().unwrap();
        assert_eq!(
            loaded.tokens.unwrap().refresh_token.unwrap().expose(),
            "old-refresh"
        );
        let other = CredentialKey::new("https://other.example.com/mcp", "https://auth.example.com");
        sealed.save(&other, &record("new")).await.unwrap();
        let file = std::fs::read_to_string(&path).unwrap();
        assert!(!file.contains("old-refresh"), "sealed at the next write");
        assert!(sealed.load(&key).await.unwrap().is_some(), "nothing lost");

        std::fs::write(&path, br#"{"version":3,"records":[],"vault":"..."}"#).unwrap();
        let error = sealed.load(&key).await.unwrap_err();
        assert!(error.to_string().contains("newer version"), "{error}");
        assert!(sealed.save(&key, &record("x")).await.is_err());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            br#"{"version":3,"records":[],"vault":"..."}"#
        );
    }

    proptest::proptest! {
        /// Whatever is in the file: records, or a typed storage error, never a panic; and the
        /// error never quotes the file.
        #[test]
        fn any_file_reads_or_fails_typed(
            contents in proptest::prop_oneof![
                proptest::collection::vec(proptest::num::u8::ANY, 0..200),
                "[ -~]{0,120}".prop_map(String::into_bytes),
                ("[0-9]{1,3}", "[A-Za-z0-9+/=]{0,80}").prop_map(|(version, sealed)| {
                    format!(r#"{{"version":{version},"sealed":"{sealed}","records":[]}}"#).into_bytes()
                }),
            ],
            sealed in proptest::bool::ANY,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("creds.json");
            std::fs::write(&path, &contents).unwrap();
            let mut store = FileStore::new(&path);
            if sealed {
                store = store.sealed(SealingKey::new(&[1; 32]));
            }
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            match runtime.block_on(store.entries()) {
                Ok(_) => {}
                Err(error) => {
                    proptest::prop_assert_eq!(error.kind(), ErrorKind::Storage);
                    let text = String::from_utf8_lossy(&contents);
                    proptest::prop_assert!(text.len() < 8 || !error.to_string().contains(text.as_ref()));
                }
            }
        }
    }

    #[tokio::test]
    async fn latest_picks_the_newest_issuer_and_remove_forgets() {
        let store = MemoryStore::new();
        let old = CredentialKey::new("res", "https://old");
        let new = CredentialKey::new("res", "https://new");
        let mut r = record("a");
        r.updated_at = 1;
        store.save(&old, &r).await.unwrap();
        store.save(&new, &record("b")).await.unwrap();
        assert_eq!(store.latest("res").await.unwrap().unwrap().0, new);
        store.remove(&new).await.unwrap();
        assert_eq!(store.latest("res").await.unwrap().unwrap().0, old);
        assert!(store.latest("other").await.unwrap().is_none());
    }
}
