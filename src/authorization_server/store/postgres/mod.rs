//! [`PostgresAuthorizationStore`]: the store for replicas. Every decision about a credential's
//! fate is made by the database (a conditional update, a row lock or a unique key), so any
//! number of authorization servers can share one deployment's state.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{
    AccessRecord, AuthorizationStore, CodeGrant, CodeRedemption, DeviceGrant, DevicePoll,
    DeviceSave, DeviceStatus, FamilyStart, PendingConsent, PendingSignIn, RefreshRotation,
    RegisteredClient, RememberedConsent, SealedUpstreamTokens, SignInSession, TokenFamily,
    TokenHash,
};
use crate::error::{Error, ErrorKind, Result};
use crate::postgres::{database_error, execute, query_opt, seconds, unsigned, PostgresPool};
use crate::BoxFuture;

mod pending;
mod rows;
mod schema;
mod sign_in;

use rows::{access_from, client_from, family_from, FAMILY_COLUMNS, ROTATE};
use schema::MIGRATIONS;

/// Spent codes are remembered this long after expiring, to detect a late reuse.
const SPENT_CODE_MEMORY_SECS: u64 = 600;
/// How long a revocation of a family not saved yet is kept: longer than any redemption takes.
const UNSAVED_REVOCATION_SECS: u64 = 3_600;
/// Consent pages one client may have waiting.
const MAX_CONSENTS_PER_CLIENT: i64 = 16;
/// Consent pages open at once across the deployment, by default.
const MAX_CONSENTS: i64 = 20_000;
/// Device authorizations one client may have waiting: a client id may be shared by everyone
/// who runs one program.
const MAX_DEVICES_PER_CLIENT: i64 = 500;
/// Device authorizations waiting at once across the deployment, by default.
const MAX_DEVICES: i64 = 20_000;
/// Writes between two sweeps of expired rows.
const SWEEP_EVERY: usize = 256;
/// Rows one sweep statement deletes at most: short statements, short locks.
const SWEEP_BATCH: i64 = 500;

/// An [`AuthorizationStore`] on PostgreSQL, for authorization servers running as replicas:
/// a code issued by one replica is redeemed at another, a revocation at one is seen by all.
///
/// - Codes are spent by a conditional update, refresh tokens rotated under a row lock on
///   their family, and a family revoked before it is saved stays revoked (its id is taken
///   first): the atomic contracts of [`AuthorizationStore`] hold across processes.
/// - Codes and tokens are kept as SHA-256 hashes. Expired rows are swept now and then, in
///   small batches, in the background.
/// - Its schema is created on [`new`](Self::new), once however many replicas start together.
/// - It brings a [`PostgresReplayCache`](crate::postgres::PostgresReplayCache) on the same
///   pool, which the server uses for DPoP proofs and client assertions unless given another:
///   a one-time id used at one replica is refused at every other.
///
/// ```no_run
/// # async fn example() -> tower_mcp_oauth::Result<()> {
/// use tower_mcp_oauth::authorization_server::{AuthorizationServerConfig, PostgresAuthorizationStore};
/// use tower_mcp_oauth::postgres::PostgresPool;
///
/// let pool = PostgresPool::connect("postgres://mcp@db.internal/mcp_oauth").await?;
/// let config = AuthorizationServerConfig::new("https://auth.example.com")?
///     .store(PostgresAuthorizationStore::new(pool.clone()).await?);
/// # let _ = config; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresAuthorizationStore {
    pool: PostgresPool,
    max_clients: i64,
    max_consents: i64,
    max_devices: i64,
    writes: Arc<AtomicUsize>,
    replay: crate::postgres::PostgresReplayCache,
}

impl PostgresAuthorizationStore {
    /// The store on `pool`, its schema created or brought up to date.
    ///
    /// # Errors
    /// [`ErrorKind::Storage`] when the database cannot be reached or refuses the schema.
    pub async fn new(pool: PostgresPool) -> Result<Self> {
        pool.migrate("authorization_store", MIGRATIONS).await?;
        let replay = crate::postgres::PostgresReplayCache::new(pool.clone()).await?;
        Ok(Self {
            replay,
            pool,
            max_clients: 100_000,
            max_consents: MAX_CONSENTS,
            max_devices: MAX_DEVICES,
            writes: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The most clients kept (default 100,000): past it, registration fails.
    pub fn max_clients(mut self, max_clients: usize) -> Self {
        self.max_clients = i64::try_from(max_clients).unwrap_or(i64::MAX);
        self
    }

    /// The most consent pages open at once (default 20,000): past it, the client holding the
    /// most loses its oldest, so no client (registration is open) pushes out the others'.
    pub fn max_consents(mut self, max_consents: usize) -> Self {
        self.max_consents = i64::try_from(max_consents).unwrap_or(i64::MAX);
        self
    }

    /// The most device authorizations waiting at once (default 20,000): past it, the client
    /// holding the most loses its oldest waiting one, so no client (registration is open)
    /// keeps out the others'. A client holds at most 500.
    pub fn max_devices(mut self, max_devices: usize) -> Self {
        self.max_devices = i64::try_from(max_devices).unwrap_or(i64::MAX);
        self
    }

    /// Counts a write, and every [`SWEEP_EVERY`] writes starts a sweep in the background.
    fn wrote(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY != SWEEP_EVERY - 1 {
            return;
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Err(error) = sweep(&pool, crate::clock::now_secs()).await {
                tracing::warn!(%error, "sweeping expired authorization rows failed");
            }
        });
    }
}

/// Deletes expired rows, a batch per table.
async fn sweep(pool: &PostgresPool, now: u64) -> Result<()> {
    let client = pool.client().await?;
    let now = seconds(now);
    let spent_codes = seconds(crate::clock::now_secs().saturating_sub(SPENT_CODE_MEMORY_SECS));
    for (table, before) in [
        ("mcp_oauth_codes", spent_codes),
        ("mcp_oauth_access", now),
        ("mcp_oauth_families", now),
        ("mcp_oauth_consents", now),
        ("mcp_oauth_sign_ins", now),
        ("mcp_oauth_sessions", now),
        ("mcp_oauth_remembered_consents", now),
        // Kept a while past expiry, so a late poll hears `expired_token`.
        ("mcp_oauth_devices", spent_codes),
    ] {
        let statement = format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM {table} WHERE expires_at < $1 LIMIT $2))"
        );
        execute(
            &client,
            &statement,
            &[&before, &SWEEP_BATCH],
            "sweeping expired rows",
        )
        .await?;
    }
    Ok(())
}

impl PostgresAuthorizationStore {
    async fn save_client(&self, client: RegisteredClient) -> Result<()> {
        let db = self.pool.client().await?;
        let metadata = serde_json::to_string(&client.metadata)
            .map_err(|_| Error::new(ErrorKind::Storage, "client metadata cannot be stored"))?;
        let secret = client.secret_hash.map(|h| h.0.to_vec());
        // One statement decides both the cap and the write, so replicas cannot overshoot by
        // much; a client already saved is always replaced.
        let written = execute(
            &db,
            "INSERT INTO mcp_oauth_clients
                     (client_id, secret_hash, auth_method, metadata, issued_at, pre_registered)
                 SELECT $1, $2, $3, $4::text::jsonb, $5, $6
                 WHERE EXISTS (SELECT 1 FROM mcp_oauth_clients WHERE client_id = $1)
                    OR (SELECT count(*) FROM mcp_oauth_clients) < $7
                 ON CONFLICT (client_id) DO UPDATE SET
                     secret_hash = EXCLUDED.secret_hash,
                     auth_method = EXCLUDED.auth_method,
                     metadata = EXCLUDED.metadata,
                     issued_at = EXCLUDED.issued_at,
                     pre_registered = EXCLUDED.pre_registered",
            &[
                &client.client_id,
                &secret,
                &client.auth_method.as_str(),
                &metadata,
                &seconds(client.issued_at),
                &client.pre_registered,
                &self.max_clients,
            ],
            "saving a client",
        )
        .await?;
        if written == 0 {
            return Err(Error::new(
                ErrorKind::Storage,
                "the client limit of the PostgreSQL store is reached",
            ));
        }
        Ok(())
    }

    async fn client(&self, client_id: &str) -> Result<Option<RegisteredClient>> {
        let db = self.pool.client().await?;
        let row = query_opt(
            &db,
            "SELECT client_id, secret_hash, auth_method, metadata::text AS metadata,
                        issued_at, pre_registered
                 FROM mcp_oauth_clients WHERE client_id = $1",
            &[&client_id],
            "loading a client",
        )
        .await?;
        row.as_ref().map(client_from).transpose()
    }

    async fn save_code(&self, code: TokenHash, grant: CodeGrant) -> Result<()> {
        let db = self.pool.client().await?;
        execute(
            &db,
            "INSERT INTO mcp_oauth_codes (code_hash, client_id, subject, scopes, resource,
                 redirect_uri, redirect_uri_in_request, code_challenge, expires_at, family_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &code.0.as_slice(),
                &grant.client_id,
                &grant.subject,
                &grant.scopes,
                &grant.resource,
                &grant.redirect_uri,
                &grant.redirect_uri_in_request,
                &grant.code_challenge,
                &seconds(grant.expires_at),
                &grant.family_id,
            ],
            "saving a code",
        )
        .await?;
        self.wrote();
        Ok(())
    }

    async fn redeem_code(&self, code: TokenHash) -> Result<CodeRedemption> {
        let db = self.pool.client().await?;
        // The first redemption flips `redeemed`; any other sees it flipped.
        let spent = query_opt(
            &db,
            "UPDATE mcp_oauth_codes SET redeemed = true
                 WHERE code_hash = $1 AND NOT redeemed
                 RETURNING client_id, subject, scopes, resource, redirect_uri,
                           redirect_uri_in_request, code_challenge, expires_at, family_id",
            &[&code.0.as_slice()],
            "redeeming a code",
        )
        .await?;
        if let Some(row) = spent {
            return Ok(CodeRedemption::Redeemed(CodeGrant {
                client_id: row.get("client_id"),
                subject: row.get("subject"),
                scopes: row.get("scopes"),
                resource: row.get("resource"),
                redirect_uri: row.get("redirect_uri"),
                redirect_uri_in_request: row.get("redirect_uri_in_request"),
                code_challenge: row.get("code_challenge"),
                expires_at: unsigned(row.get("expires_at")),
                family_id: row.get("family_id"),
            }));
        }
        let before = query_opt(
            &db,
            "SELECT family_id FROM mcp_oauth_codes WHERE code_hash = $1",
            &[&code.0.as_slice()],
            "redeeming a code",
        )
        .await?;
        Ok(match before {
            Some(row) => CodeRedemption::Reused {
                family_id: row.get("family_id"),
            },
            None => CodeRedemption::Unknown,
        })
    }

    async fn save_family(&self, family: TokenFamily, refresh: TokenHash) -> Result<FamilyStart> {
        let mut db = self.pool.client().await?;
        let tx = db
            .transaction()
            .await
            .map_err(|e| database_error("saving a token family", &e))?;
        // A revocation that came first holds the id: the family then never starts.
        let started = query_opt(
            &tx,
            "INSERT INTO mcp_oauth_families (id, client_id, subject, scopes, resource,
                     expires_at, revoked, dpop_jkt, current_refresh)
                 VALUES ($1, $2, $3, $4, $5, $6, false, $7, $8)
                 ON CONFLICT (id) DO NOTHING
                 RETURNING id",
            &[
                &family.id,
                &family.client_id,
                &family.subject,
                &family.scopes,
                &family.resource,
                &seconds(family.expires_at),
                &family.dpop_jkt,
                &refresh.0.as_slice(),
            ],
            "saving a token family",
        )
        .await?;
        if started.is_none() {
            return Ok(FamilyStart::Revoked);
        }
        execute(
            &tx,
            "INSERT INTO mcp_oauth_refresh (token_hash, family_id) VALUES ($1, $2)",
            &[&refresh.0.as_slice(), &family.id],
            "saving a refresh token",
        )
        .await?;
        tx.commit()
            .await
            .map_err(|e| database_error("saving a token family", &e))?;
        self.wrote();
        Ok(FamilyStart::Started)
    }

    async fn rotate_refresh(
        &self,
        old: TokenHash,
        new: TokenHash,
        now: u64,
        grace_secs: u64,
    ) -> Result<RefreshRotation> {
        let mut db = self.pool.client().await?;
        // The common case in one statement. A concurrent rotation of the same token waits on
        // the family's row, then finds `current_refresh` changed (READ COMMITTED re-checks the
        // row it waited for), so exactly one of them rotates; the other takes the path below.
        let rotated = query_opt(
            &db,
            ROTATE,
            &[&old.0.as_slice(), &new.0.as_slice(), &seconds(now)],
            "rotating a refresh token",
        )
        .await?;
        if let Some(row) = rotated {
            return Ok(RefreshRotation::Rotated(family_from(&row)?));
        }
        let tx = db
            .transaction()
            .await
            .map_err(|e| database_error("rotating a refresh token", &e))?;
        // Not rotated: unknown, spent, revoked or expired. Decided under the family's row lock.
        let row = query_opt(
            &tx,
            &format!(
                "SELECT {FAMILY_COLUMNS}, f.current_refresh, f.previous_refresh, f.rotated_at
                     FROM mcp_oauth_refresh r JOIN mcp_oauth_families f ON f.id = r.family_id
                     WHERE r.token_hash = $1
                     FOR UPDATE OF f"
            ),
            &[&old.0.as_slice()],
            "rotating a refresh token",
        )
        .await?;
        let Some(row) = row else {
            return Ok(RefreshRotation::Invalid);
        };
        let family = family_from(&row)?;
        if family.revoked || family.expires_at <= now {
            return Ok(RefreshRotation::Invalid);
        }
        let current: Option<Vec<u8>> = row.get("current_refresh");
        let previous: Option<Vec<u8>> = row.get("previous_refresh");
        let rotated_at: Option<i64> = row.get("rotated_at");
        let repeated = grace_secs > 0
            && previous.as_deref() == Some(old.0.as_slice())
            && current.as_deref() == Some(new.0.as_slice())
            && rotated_at.is_some_and(|at| now <= unsigned(at).saturating_add(grace_secs));
        if repeated {
            return Ok(RefreshRotation::Repeated(family));
        }
        if current.as_deref() != Some(old.0.as_slice()) {
            revoke_in(&tx, &family.id, now).await?;
            tx.commit()
                .await
                .map_err(|e| database_error("revoking a token family", &e))?;
            tracing::warn!("a spent refresh token was presented; its family is revoked");
            return Ok(RefreshRotation::Reused(TokenFamily {
                revoked: true,
                ..family
            }));
        }
        execute(
            &tx,
            "UPDATE mcp_oauth_families
             SET current_refresh = $2, previous_refresh = $3, rotated_at = $4 WHERE id = $1",
            &[
                &family.id,
                &new.0.as_slice(),
                &old.0.as_slice(),
                &seconds(now),
            ],
            "rotating a refresh token",
        )
        .await?;
        execute(
            &tx,
            "INSERT INTO mcp_oauth_refresh (token_hash, family_id) VALUES ($1, $2)",
            &[&new.0.as_slice(), &family.id],
            "rotating a refresh token",
        )
        .await?;
        tx.commit()
            .await
            .map_err(|e| database_error("rotating a refresh token", &e))?;
        Ok(RefreshRotation::Rotated(family))
    }

    async fn family_of_refresh(&self, refresh: TokenHash) -> Result<Option<(TokenFamily, bool)>> {
        let db = self.pool.client().await?;
        let row = query_opt(
            &db,
            &format!(
                "SELECT {FAMILY_COLUMNS}, f.current_refresh = $1 AS current
                     FROM mcp_oauth_refresh r JOIN mcp_oauth_families f ON f.id = r.family_id
                     WHERE r.token_hash = $1 AND f.client_id IS NOT NULL"
            ),
            &[&refresh.0.as_slice()],
            "loading a token family",
        )
        .await?;
        match row {
            Some(row) => Ok(Some((
                family_from(&row)?,
                row.get::<_, Option<bool>>("current").unwrap_or(false),
            ))),
            None => Ok(None),
        }
    }

    async fn family(&self, family_id: &str) -> Result<Option<TokenFamily>> {
        let db = self.pool.client().await?;
        let row = query_opt(
            &db,
            &format!(
                "SELECT {FAMILY_COLUMNS} FROM mcp_oauth_families f
                     WHERE f.id = $1 AND f.client_id IS NOT NULL"
            ),
            &[&family_id],
            "loading a token family",
        )
        .await?;
        row.as_ref().map(family_from).transpose()
    }

    async fn revoke_family(&self, family_id: &str) -> Result<()> {
        let mut db = self.pool.client().await?;
        let tx = db
            .transaction()
            .await
            .map_err(|e| database_error("revoking a token family", &e))?;
        revoke_in(&tx, family_id, crate::clock::now_secs()).await?;
        tx.commit()
            .await
            .map_err(|e| database_error("revoking a token family", &e))
    }

    async fn save_access(&self, token: TokenHash, record: AccessRecord) -> Result<()> {
        let db = self.pool.client().await?;
        // Nothing is added to a revoked family.
        execute(
            &db,
            "INSERT INTO mcp_oauth_access (token_hash, client_id, subject, scopes, resource,
                 issued_at, expires_at, family_id, dpop_jkt, act)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10
             WHERE NOT EXISTS (
                 SELECT 1 FROM mcp_oauth_families WHERE id = $8 AND revoked)",
            &[
                &token.0.as_slice(),
                &record.client_id,
                &record.subject,
                &record.scopes,
                &record.resource,
                &seconds(record.issued_at),
                &seconds(record.expires_at),
                &record.family_id,
                &record.dpop_jkt,
                &record.act,
            ],
            "saving an access token",
        )
        .await?;
        self.wrote();
        Ok(())
    }

    async fn access(&self, token: TokenHash) -> Result<Option<AccessRecord>> {
        let db = self.pool.client().await?;
        let row = query_opt(
            &db,
            "SELECT client_id, subject, scopes, resource, issued_at, expires_at, family_id,
                        dpop_jkt, act
                 FROM mcp_oauth_access WHERE token_hash = $1",
            &[&token.0.as_slice()],
            "loading an access token",
        )
        .await?;
        Ok(row.as_ref().map(access_from))
    }

    async fn revoke_access(&self, token: TokenHash) -> Result<()> {
        let db = self.pool.client().await?;
        execute(
            &db,
            "DELETE FROM mcp_oauth_access WHERE token_hash = $1",
            &[&token.0.as_slice()],
            "revoking an access token",
        )
        .await?;
        Ok(())
    }
}

/// Revokes a family and drops its access tokens; a family not saved yet is revoked ahead
/// (a row without a grant that its save then finds).
async fn revoke_in(
    tx: &deadpool_postgres::Transaction<'_>,
    family_id: &str,
    now: u64,
) -> Result<()> {
    execute(
        tx,
        "INSERT INTO mcp_oauth_families (id, expires_at, revoked) VALUES ($1, $2, true)
         ON CONFLICT (id) DO UPDATE SET revoked = true",
        &[&family_id, &seconds(now + UNSAVED_REVOCATION_SECS)],
        "revoking a token family",
    )
    .await?;
    execute(
        tx,
        "DELETE FROM mcp_oauth_access WHERE family_id = $1",
        &[&family_id],
        "revoking a token family",
    )
    .await?;
    Ok(())
}

impl AuthorizationStore for PostgresAuthorizationStore {
    fn save_client(&self, client: RegisteredClient) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.save_client(client))
    }
    fn client<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Result<Option<RegisteredClient>>> {
        Box::pin(self.client(client_id))
    }
    fn save_code(&self, code: TokenHash, grant: CodeGrant) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.save_code(code, grant))
    }
    fn redeem_code(&self, code: TokenHash) -> BoxFuture<'_, Result<CodeRedemption>> {
        Box::pin(self.redeem_code(code))
    }
    fn save_family(
        &self,
        family: TokenFamily,
        refresh: TokenHash,
    ) -> BoxFuture<'_, Result<FamilyStart>> {
        Box::pin(self.save_family(family, refresh))
    }
    fn rotate_refresh(
        &self,
        old: TokenHash,
        new: TokenHash,
        now: u64,
        grace_secs: u64,
    ) -> BoxFuture<'_, Result<RefreshRotation>> {
        Box::pin(self.rotate_refresh(old, new, now, grace_secs))
    }
    fn family_of_refresh(
        &self,
        refresh: TokenHash,
    ) -> BoxFuture<'_, Result<Option<(TokenFamily, bool)>>> {
        Box::pin(self.family_of_refresh(refresh))
    }
    fn family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<Option<TokenFamily>>> {
        Box::pin(self.family(family_id))
    }
    fn revoke_family<'a>(&'a self, family_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.revoke_family(family_id))
    }
    fn save_access(&self, token: TokenHash, record: AccessRecord) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.save_access(token, record))
    }
    fn access(&self, token: TokenHash) -> BoxFuture<'_, Result<Option<AccessRecord>>> {
        Box::pin(self.access(token))
    }
    fn revoke_access(&self, token: TokenHash) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.revoke_access(token))
    }
    fn save_consent(&self, id: TokenHash, consent: PendingConsent) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.save_consent(id, consent))
    }
    fn take_consent(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<PendingConsent>>> {
        Box::pin(self.take_consent(id))
    }
    fn save_device(
        &self,
        device_code: TokenHash,
        grant: DeviceGrant,
    ) -> BoxFuture<'_, Result<DeviceSave>> {
        Box::pin(self.save_device(device_code, grant))
    }
    fn device_by_user_code(
        &self,
        user_code: TokenHash,
    ) -> BoxFuture<'_, Result<Option<DeviceGrant>>> {
        Box::pin(self.device_by_user_code(user_code))
    }
    fn answer_device(
        &self,
        user_code: TokenHash,
        answer: DeviceStatus,
        now: u64,
    ) -> BoxFuture<'_, Result<bool>> {
        Box::pin(self.answer_device(user_code, answer, now))
    }
    fn poll_device<'a>(
        &'a self,
        device_code: TokenHash,
        client_id: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<DevicePoll>> {
        Box::pin(self.poll_device(device_code, client_id, now))
    }
    fn replay_cache(&self) -> Option<Arc<dyn crate::dpop::ReplayCache>> {
        Some(Arc::new(self.replay.clone()))
    }
    fn save_sign_in(&self, id: TokenHash, pending: PendingSignIn) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.save_sign_in(id, pending))
    }
    fn take_sign_in(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<PendingSignIn>>> {
        Box::pin(self.take_sign_in(id))
    }
    fn save_session(&self, id: TokenHash, session: SignInSession) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.save_session(id, session))
    }
    fn session(&self, id: TokenHash) -> BoxFuture<'_, Result<Option<SignInSession>>> {
        Box::pin(self.session(id))
    }
    fn end_session(&self, id: TokenHash) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.end_session(id))
    }
    fn remember_consent(&self, consent: RememberedConsent) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.remember_consent(consent))
    }
    fn remembered_consent<'a>(
        &'a self,
        subject: &'a str,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RememberedConsent>>> {
        Box::pin(self.remembered_consent(subject, client_id))
    }
    fn forget_consent<'a>(
        &'a self,
        subject: &'a str,
        client_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.forget_consent(subject, client_id))
    }
    fn save_upstream_tokens<'a>(
        &'a self,
        subject: &'a str,
        tokens: SealedUpstreamTokens,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.save_upstream_tokens(subject, tokens))
    }
    fn upstream_tokens<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Option<SealedUpstreamTokens>>> {
        Box::pin(self.upstream_tokens(subject))
    }
}
