//! [`PostgresCredentialStore`]: the client's credentials in PostgreSQL, shared by every process
//! of a fleet, with the refresh lease held as a session advisory lock per resource and issuer.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::client::store::{CredentialKey, CredentialStore, StoreLease, StoredCredentials};
use crate::error::{Error, ErrorKind, Result};
use crate::postgres::{database_error, unsigned, PostgresPool};
use crate::BoxFuture;

/// The name the store's migrations are recorded under.
const COMPONENT: &str = "credential_store";

/// The schema, one batch per version: applied once, in order, never edited once released.
const MIGRATIONS: &[&str] = &["CREATE TABLE mcp_oauth_client_credentials (
        resource TEXT NOT NULL,
        issuer TEXT NOT NULL,
        format INTEGER NOT NULL,
        record JSONB NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (resource, issuer)
    )"];

/// The record format written: `StoredCredentials` as serde writes it, the same representation
/// as in [`FileStore`](super::FileStore)'s version 1 file. A later version of the crate reads
/// every format up to its own; an older one refuses a newer format instead of misreading it.
const RECORD_FORMAT: i32 = 1;

/// How long [`CredentialStore::lease`] waits for another process by default.
const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// How much longer than the lease timeout the client waits for the server to answer at all.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

const LOAD: &str = "SELECT format, record::text, updated_at FROM mcp_oauth_client_credentials
    WHERE resource = $1 AND issuer = $2";

/// `updated_at` comes from the database's clock (one clock for the whole fleet), in
/// milliseconds, and is later than every record of the resource, so `latest` has a strict order
/// even within one millisecond.
const SAVE: &str = "INSERT INTO mcp_oauth_client_credentials
        (resource, issuer, format, record, updated_at)
    VALUES ($1, $2, $3, ($4::text)::jsonb, GREATEST(
        (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
        (SELECT COALESCE(MAX(updated_at), 0) + 1 FROM mcp_oauth_client_credentials
            WHERE resource = $1)))
    ON CONFLICT (resource, issuer) DO UPDATE
    SET format = EXCLUDED.format, record = EXCLUDED.record, updated_at = EXCLUDED.updated_at";

const REMOVE: &str = "DELETE FROM mcp_oauth_client_credentials
    WHERE resource = $1 AND issuer = $2";

const LATEST: &str = "SELECT issuer, format, record::text, updated_at
    FROM mcp_oauth_client_credentials
    WHERE resource = $1
    ORDER BY updated_at DESC, issuer DESC
    LIMIT 1";

/// Credentials kept in PostgreSQL, so a fleet of clients (replicas, workers, CLI invocations)
/// shares one sign-in and refreshes each token once.
///
/// Records live in the table `mcp_oauth_client_credentials`, one row per resource and issuer,
/// as JSONB in the same representation [`FileStore`](super::FileStore) writes, stamped with the
/// database's clock for [`latest`](CredentialStore::latest). [`new`](Self::new) creates the table
/// (a migration applied once however many processes start together).
///
/// **The refresh lease** ([`lease`](CredentialStore::lease)) is a session advisory lock,
/// `pg_advisory_lock`, on a 64-bit key derived from the resource and issuer (SHA-256, so every
/// process and build agrees on it). It is taken on a connection of its own, taken out of the
/// pool for good (it does not count against [`max_size`](crate::postgres::PostgresPoolBuilder::max_size)),
/// and the lease ends by closing that connection: the server releases the lock when the session
/// ends, also when the holder crashes, and a connection that held a lease is never reused. The
/// wait is bounded by [`lease_timeout`](Self::lease_timeout) (`lock_timeout` on that connection,
/// 30 s by default), past which the lease fails with [`ErrorKind::Storage`].
///
/// **Security**: the rows hold the client secret, the tokens and the DPoP private key in clear:
/// give the database role only to the clients, and reach the database on a private network.
/// Nothing the store logs or returns as an error quotes a record, and its `Debug` shows only the
/// pool's size.
///
/// ```no_run
/// # async fn example() -> tower_mcp_oauth::Result<()> {
/// use tower_mcp_oauth::client::{OAuthConfig, OAuthState, PostgresCredentialStore};
/// use tower_mcp_oauth::postgres::PostgresPool;
///
/// let pool = PostgresPool::connect("postgres://mcp@db.internal/mcp_oauth").await?;
/// let store = PostgresCredentialStore::new(pool).await?;
/// let config = OAuthConfig::new().store(store);
/// let state = OAuthState::new("https://mcp.example.com/mcp", Some(config)).await?;
/// # let _ = state; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresCredentialStore {
    pool: PostgresPool,
    lease_timeout: Duration,
}

impl PostgresCredentialStore {
    /// A store on `pool`, creating its table if it is not there yet.
    ///
    /// # Errors
    /// [`ErrorKind::Storage`] when the database cannot be reached or the migration fails.
    pub async fn new(pool: PostgresPool) -> Result<Self> {
        pool.migrate(COMPONENT, MIGRATIONS).await?;
        Ok(Self {
            pool,
            lease_timeout: DEFAULT_LEASE_TIMEOUT,
        })
    }

    /// How long [`lease`](CredentialStore::lease) waits for another process's lease before it
    /// fails with [`ErrorKind::Storage`] (default 30 s, at least a millisecond). Keep it longer
    /// than a refresh takes (the token endpoint's timeout), or a waiting process fails instead of
    /// adopting the tokens the holder is about to store.
    pub fn lease_timeout(mut self, timeout: Duration) -> Self {
        self.lease_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    async fn take_lease(&self, key: &CredentialKey) -> Result<StoreLease> {
        // Out of the pool before anything else: if this future is dropped while it waits (a
        // caller's timeout), the connection, and the lock it may still get, go with it instead
        // of going back to the pool.
        let client = deadpool_postgres::Object::take(self.pool.client().await?);
        let millis = self.lease_timeout.as_millis().clamp(1, i32::MAX as u128);
        let lock = async {
            client
                .batch_execute(&format!(
                    "SET lock_timeout = {millis}; SET statement_timeout = {millis}"
                ))
                .await
                .map_err(|e| database_error("preparing the refresh lease", &e))?;
            client
                .execute("SELECT pg_advisory_lock($1)", &[&lease_id(key)])
                .await
                .map_err(|e| self.lease_error(&e))
        };
        // A backstop on our side, should the server stop answering mid-wait: the server-side
        // timeout plus a margin for the round trips around it.
        let bound = self.lease_timeout.saturating_add(LEASE_MARGIN);
        match tokio::time::timeout(bound, lock).await {
            Ok(Ok(_)) => Ok(StoreLease::new(HeldLease { _client: client })),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::new(
                ErrorKind::Storage,
                "PostgreSQL: the database did not answer while taking the refresh lease",
            )),
        }
    }

    fn lease_error(&self, error: &tokio_postgres::Error) -> Error {
        use tokio_postgres::error::SqlState;
        match error.code() {
            Some(code)
                if *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::QUERY_CANCELED =>
            {
                Error::new(
                    ErrorKind::Storage,
                    format!(
                        "PostgreSQL: another process held the refresh lease longer than {} ms; \
                         try again, or raise the lease timeout if refreshes take that long",
                        self.lease_timeout.as_millis()
                    ),
                )
            }
            _ => database_error("taking the refresh lease", error),
        }
    }
}

/// The connection holding a lease. Dropping it closes the connection (deadpool's client aborts
/// its connection task), and the server releases the session's advisory lock.
struct HeldLease {
    _client: deadpool_postgres::ClientWrapper,
}

/// The advisory lock key for `key`: the first 8 bytes of a SHA-256 over a domain-separated,
/// length-prefixed encoding of the resource and issuer. Stable across processes and builds; a
/// collision only makes two keys share a lease.
fn lease_id(key: &CredentialKey) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(b"tower-mcp-oauth credential lease v1\0");
    for part in [&key.resource, &key.issuer] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// A stored row back as a record, its `updated_at` from the row. Never quotes the row.
fn decode(format: i32, record: &str, updated_at: i64) -> Result<StoredCredentials> {
    if format > RECORD_FORMAT {
        return Err(Error::new(
            ErrorKind::Storage,
            format!(
                "PostgreSQL: a stored credential record has format {format}, written by a newer \
                 version of tower-mcp-oauth; upgrade this client"
            ),
        ));
    }
    if format < 1 {
        return Err(unreadable());
    }
    let mut record: StoredCredentials = serde_json::from_str(record).map_err(|_| unreadable())?;
    record.updated_at = unsigned(updated_at);
    Ok(record)
}

fn unreadable() -> Error {
    Error::new(
        ErrorKind::Storage,
        "PostgreSQL: a stored credential record is unreadable (not a credential record this \
         version understands); remove it and sign in again",
    )
}

impl CredentialStore for PostgresCredentialStore {
    fn load<'a>(
        &'a self,
        key: &'a CredentialKey,
    ) -> BoxFuture<'a, Result<Option<StoredCredentials>>> {
        Box::pin(async move {
            let client = self.pool.client().await?;
            let statement = client
                .prepare_cached(LOAD)
                .await
                .map_err(|e| database_error("preparing to read credentials", &e))?;
            let row = client
                .query_opt(&statement, &[&key.resource, &key.issuer])
                .await
                .map_err(|e| database_error("reading credentials", &e))?;
            row.map(|row| {
                let (format, record, updated_at) = columns(&row, 0)?;
                decode(format, &record, updated_at)
            })
            .transpose()
        })
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        record: &'a StoredCredentials,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let json = serde_json::to_string(record).map_err(|_| {
                Error::new(ErrorKind::Storage, "cannot serialize the credential record")
            })?;
            let client = self.pool.client().await?;
            let statement = client
                .prepare_cached(SAVE)
                .await
                .map_err(|e| database_error("preparing to write credentials", &e))?;
            client
                .execute(
                    &statement,
                    &[&key.resource, &key.issuer, &RECORD_FORMAT, &json],
                )
                .await
                .map_err(|e| database_error("writing credentials", &e))?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let client = self.pool.client().await?;
            let statement = client
                .prepare_cached(REMOVE)
                .await
                .map_err(|e| database_error("preparing to remove credentials", &e))?;
            client
                .execute(&statement, &[&key.resource, &key.issuer])
                .await
                .map_err(|e| database_error("removing credentials", &e))?;
            Ok(())
        })
    }

    fn latest<'a>(
        &'a self,
        resource: &'a str,
    ) -> BoxFuture<'a, Result<Option<(CredentialKey, StoredCredentials)>>> {
        Box::pin(async move {
            let client = self.pool.client().await?;
            let statement = client
                .prepare_cached(LATEST)
                .await
                .map_err(|e| database_error("preparing to read credentials", &e))?;
            let row = client
                .query_opt(&statement, &[&resource])
                .await
                .map_err(|e| database_error("reading credentials", &e))?;
            let Some(row) = row else {
                return Ok(None);
            };
            let issuer: String = row.try_get(0).map_err(|_| unexpected_row())?;
            let (format, record, updated_at) = columns(&row, 1)?;
            let record = decode(format, &record, updated_at)?;
            Ok(Some((CredentialKey::new(resource, issuer), record)))
        })
    }

    fn lease<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoreLease>>> {
        Box::pin(async move { self.take_lease(key).await.map(Some) })
    }
}

/// The `format`, `record` and `updated_at` columns, starting at `first`.
fn columns(row: &tokio_postgres::Row, first: usize) -> Result<(i32, String, i64)> {
    let format = row.try_get(first).map_err(|_| unexpected_row())?;
    let record: Option<String> = row.try_get(first + 1).map_err(|_| unexpected_row())?;
    let updated_at = row.try_get(first + 2).map_err(|_| unexpected_row())?;
    Ok((format, record.ok_or_else(unreadable)?, updated_at))
}

fn unexpected_row() -> Error {
    Error::new(
        ErrorKind::Storage,
        "PostgreSQL: the credential table does not have the expected columns",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_key_is_stable_and_separates_resource_from_issuer() {
        let key = CredentialKey::new("https://mcp.example.com/mcp", "https://auth.example.com");
        // Every process and every build must agree: this value is part of the format.
        assert_eq!(lease_id(&key), lease_id(&key.clone()));
        assert_eq!(lease_id(&key), GOLDEN_LEASE_ID);
        let shifted = CredentialKey::new("https://mcp.example.com/mcphttps", "://auth.example.com");
        assert_ne!(lease_id(&key), lease_id(&shifted));
        let other = CredentialKey::new("https://mcp.example.com/mcp", "https://other.example.com");
        assert_ne!(lease_id(&key), lease_id(&other));
    }

    /// Computed independently: `sha256(b"tower-mcp-oauth credential lease v1\0" + be64(len) +
    /// resource + be64(len) + issuer)[..8]` as a big-endian i64.
    const GOLDEN_LEASE_ID: i64 = 1_046_917_739_399_785_851;

    #[test]
    fn rows_decode_to_records_or_storage_errors_that_quote_nothing() {
        let record = decode(
            1,
            r#"{"tokens":{"access_token":"at-1","token_type":"Bearer","expires_at":5},"updated_at":1}"#,
            1234,
        )
        .unwrap();
        assert_eq!(record.updated_at, 1234, "the row's stamp wins");
        assert_eq!(record.tokens.unwrap().access_token.expose(), "at-1");

        for (format, json) in [
            (1, r#"{"tokens":{"access_token":42}}"#),
            (1, r#""secret-looking-string""#),
            (1, "not json"),
            (0, "{}"),
        ] {
            let error = decode(format, json, 0).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Storage);
            assert!(error.to_string().contains("unreadable"), "{error}");
            assert!(!error.to_string().contains("42"));
            assert!(!error.to_string().contains("secret-looking"));
        }
        let newer = decode(2, "{}", 0).unwrap_err();
        assert_eq!(newer.kind(), ErrorKind::Storage);
        assert!(newer.to_string().contains("newer version"), "{newer}");
    }
}
