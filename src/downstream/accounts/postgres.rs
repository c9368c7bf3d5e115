//! [`PostgresAccountVault`]: linked accounts that survive restarts and are shared by replicas.

use super::vault::{AccountKey, AccountVault};
use crate::clock::now_secs;
use crate::error::Result;
use crate::postgres::{database_error, seconds, PostgresPool};
use crate::BoxFuture;

const MIGRATIONS: &[&str] = &["CREATE TABLE mcp_oauth_linked_accounts (
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        provider TEXT NOT NULL,
        sealed BYTEA,
        refreshing_until BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (issuer, subject, provider)
    );
    CREATE TABLE mcp_oauth_link_pending (
        handle BYTEA PRIMARY KEY,
        record BYTEA NOT NULL,
        expires_at BIGINT NOT NULL
    );
    CREATE INDEX mcp_oauth_link_pending_expiry ON mcp_oauth_link_pending (expires_at);"];

/// An [`AccountVault`] in PostgreSQL (feature `postgres`): what one replica links, every
/// replica reads; a refresh claim is a row update, so one replica refreshes while the others
/// wait for its result.
#[derive(Debug, Clone)]
pub struct PostgresAccountVault {
    pool: PostgresPool,
}

impl PostgresAccountVault {
    /// The vault on `pool`, its tables created if missing.
    ///
    /// # Errors
    /// [`ErrorKind::Storage`](crate::ErrorKind::Storage) when the database cannot be reached or
    /// refuses the schema.
    pub async fn new(pool: PostgresPool) -> Result<Self> {
        pool.migrate("linked_accounts", MIGRATIONS).await?;
        Ok(Self { pool })
    }

    async fn load(&self, account: &AccountKey) -> Result<Option<Vec<u8>>> {
        let db = self.pool.client().await?;
        let row = db
            .query_opt(
                "SELECT sealed FROM mcp_oauth_linked_accounts
                 WHERE issuer = $1 AND subject = $2 AND provider = $3",
                &[&account.issuer, &account.subject, &account.provider],
            )
            .await
            .map_err(|e| database_error("reading a linked account", &e))?;
        Ok(row.and_then(|row| row.get::<_, Option<Vec<u8>>>(0)))
    }

    async fn save(&self, account: &AccountKey, sealed: Vec<u8>) -> Result<()> {
        let db = self.pool.client().await?;
        db.execute(
            "INSERT INTO mcp_oauth_linked_accounts (issuer, subject, provider, sealed)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (issuer, subject, provider)
             DO UPDATE SET sealed = EXCLUDED.sealed, refreshing_until = 0",
            &[
                &account.issuer,
                &account.subject,
                &account.provider,
                &sealed,
            ],
        )
        .await
        .map_err(|e| database_error("keeping a linked account", &e))?;
        Ok(())
    }

    async fn remove(&self, account: &AccountKey) -> Result<bool> {
        let db = self.pool.client().await?;
        let removed = db
            .execute(
                "DELETE FROM mcp_oauth_linked_accounts
                 WHERE issuer = $1 AND subject = $2 AND provider = $3 AND sealed IS NOT NULL",
                &[&account.issuer, &account.subject, &account.provider],
            )
            .await
            .map_err(|e| database_error("forgetting a linked account", &e))?;
        Ok(removed == 1)
    }

    async fn claim_refresh(&self, account: &AccountKey, seen: &[u8], until: u64) -> Result<bool> {
        let db = self.pool.client().await?;
        // One statement: of replicas racing for an expired claim, exactly one updates the row,
        // and only while it still holds the tokens it read.
        let claimed = db
            .execute(
                "UPDATE mcp_oauth_linked_accounts SET refreshing_until = $4
                 WHERE issuer = $1 AND subject = $2 AND provider = $3 AND refreshing_until <= $5
                   AND sealed = $6",
                &[
                    &account.issuer,
                    &account.subject,
                    &account.provider,
                    &seconds(until),
                    &seconds(now_secs()),
                    &seen,
                ],
            )
            .await
            .map_err(|e| database_error("claiming a refresh", &e))?;
        Ok(claimed == 1)
    }

    async fn release_refresh(&self, account: &AccountKey) -> Result<()> {
        let db = self.pool.client().await?;
        db.execute(
            "UPDATE mcp_oauth_linked_accounts SET refreshing_until = 0
             WHERE issuer = $1 AND subject = $2 AND provider = $3",
            &[&account.issuer, &account.subject, &account.provider],
        )
        .await
        .map_err(|e| database_error("releasing a refresh", &e))?;
        Ok(())
    }

    async fn put_pending(&self, handle: [u8; 32], record: Vec<u8>, expires_at: u64) -> Result<()> {
        let db = self.pool.client().await?;
        db.execute(
            "INSERT INTO mcp_oauth_link_pending (handle, record, expires_at) VALUES ($1, $2, $3)",
            &[&handle.as_slice(), &record, &seconds(expires_at)],
        )
        .await
        .map_err(|e| database_error("keeping a link in progress", &e))?;
        // Expired records go with new ones, a few at a time.
        let _ = db
            .execute(
                "DELETE FROM mcp_oauth_link_pending WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM mcp_oauth_link_pending WHERE expires_at <= $1 LIMIT 100))",
                &[&seconds(now_secs())],
            )
            .await
            .inspect_err(|error| tracing::warn!(%error, "sweeping links in progress failed"));
        Ok(())
    }

    async fn take_pending(&self, handle: [u8; 32]) -> Result<Option<Vec<u8>>> {
        let db = self.pool.client().await?;
        let row = db
            .query_opt(
                "DELETE FROM mcp_oauth_link_pending WHERE handle = $1 RETURNING record, expires_at",
                &[&handle.as_slice()],
            )
            .await
            .map_err(|e| database_error("taking a link in progress", &e))?;
        Ok(row
            .filter(|row| row.get::<_, i64>(1) > seconds(now_secs()))
            .map(|row| row.get(0)))
    }
}

impl AccountVault for PostgresAccountVault {
    fn load<'a>(&'a self, account: &'a AccountKey) -> BoxFuture<'a, Result<Option<Vec<u8>>>> {
        Box::pin(self.load(account))
    }
    fn save<'a>(&'a self, account: &'a AccountKey, sealed: Vec<u8>) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.save(account, sealed))
    }
    fn remove<'a>(&'a self, account: &'a AccountKey) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.remove(account))
    }
    fn claim_refresh<'a>(
        &'a self,
        account: &'a AccountKey,
        seen: &'a [u8],
        until: u64,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.claim_refresh(account, seen, until))
    }
    fn release_refresh<'a>(&'a self, account: &'a AccountKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.release_refresh(account))
    }
    fn put_pending<'a>(
        &'a self,
        handle: [u8; 32],
        record: Vec<u8>,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.put_pending(handle, record, expires_at))
    }
    fn take_pending(&self, handle: [u8; 32]) -> BoxFuture<'_, Result<Option<Vec<u8>>>> {
        Box::pin(self.take_pending(handle))
    }
}
