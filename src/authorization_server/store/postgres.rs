//! [`PostgresAuthorizationStore`]: the store for replicas. Every decision about a credential's
//! fate is made by the database (a conditional update, a row lock or a unique key), so any
//! number of authorization servers can share one deployment's state.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio_postgres::Row;

use super::{
    AccessRecord, AuthorizationStore, ClientAuthMethod, CodeGrant, CodeRedemption, DeviceGrant,
    DevicePoll, DeviceSave, DeviceStatus, FamilyStart, PendingConsent, RefreshRotation,
    RegisteredClient, TokenFamily, TokenHash,
};
use crate::error::{Error, ErrorKind, Result};
use crate::postgres::{database_error, execute, query_opt, seconds, unsigned, PostgresPool};
use crate::BoxFuture;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE mcp_oauth_clients (
    client_id TEXT PRIMARY KEY,
    secret_hash BYTEA,
    auth_method TEXT NOT NULL,
    metadata JSONB NOT NULL,
    issued_at BIGINT NOT NULL,
    pre_registered BOOLEAN NOT NULL
);
CREATE TABLE mcp_oauth_codes (
    code_hash BYTEA PRIMARY KEY,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    scopes TEXT[] NOT NULL,
    resource TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    redirect_uri_in_request BOOLEAN NOT NULL,
    code_challenge TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    family_id TEXT NOT NULL,
    redeemed BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX mcp_oauth_codes_expiry ON mcp_oauth_codes (expires_at);
-- A row without client_id is a revocation that arrived before its family was saved.
CREATE TABLE mcp_oauth_families (
    id TEXT PRIMARY KEY,
    client_id TEXT,
    subject TEXT,
    scopes TEXT[],
    resource TEXT,
    expires_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL,
    dpop_jkt TEXT,
    current_refresh BYTEA
);
CREATE INDEX mcp_oauth_families_expiry ON mcp_oauth_families (expires_at);
CREATE TABLE mcp_oauth_refresh (
    token_hash BYTEA PRIMARY KEY,
    family_id TEXT NOT NULL REFERENCES mcp_oauth_families (id) ON DELETE CASCADE
);
CREATE INDEX mcp_oauth_refresh_family ON mcp_oauth_refresh (family_id);
CREATE TABLE mcp_oauth_access (
    token_hash BYTEA PRIMARY KEY,
    client_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    scopes TEXT[] NOT NULL,
    resource TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    family_id TEXT,
    dpop_jkt TEXT
);
CREATE INDEX mcp_oauth_access_family ON mcp_oauth_access (family_id);
CREATE INDEX mcp_oauth_access_expiry ON mcp_oauth_access (expires_at);
CREATE TABLE mcp_oauth_consents (
    id BYTEA PRIMARY KEY,
    client_id TEXT NOT NULL,
    client_name TEXT,
    redirect_uri TEXT NOT NULL,
    redirect_uri_in_request BOOLEAN NOT NULL,
    state TEXT,
    scopes TEXT[] NOT NULL,
    resource TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    subject TEXT NOT NULL,
    csrf_hash BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX mcp_oauth_consents_client ON mcp_oauth_consents (client_id, expires_at);
CREATE INDEX mcp_oauth_consents_expiry ON mcp_oauth_consents (expires_at);
"#,
    r#"
CREATE TABLE mcp_oauth_devices (
    device_hash BYTEA PRIMARY KEY,
    user_hash BYTEA NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    client_name TEXT,
    scopes TEXT[] NOT NULL,
    resource TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    interval_secs BIGINT NOT NULL,
    last_poll BIGINT NOT NULL,
    status TEXT NOT NULL,
    subject TEXT,
    family_id TEXT NOT NULL
);
CREATE INDEX mcp_oauth_devices_client ON mcp_oauth_devices (client_id, expires_at);
CREATE INDEX mcp_oauth_devices_expiry ON mcp_oauth_devices (expires_at);
"#,
];

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

    /// The most device authorizations waiting at once (default 20,000): past it, new ones are
    /// refused (`temporarily_unavailable`) until some are collected or expire.
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

fn hash_of(row: &Row, column: &str) -> Result<TokenHash> {
    let bytes: Vec<u8> = row.get(column);
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| unreadable("a stored hash is not 32 bytes"))?;
    Ok(TokenHash(bytes))
}

fn unreadable(why: &str) -> Error {
    Error::new(
        ErrorKind::Storage,
        format!("PostgreSQL: a stored row is unreadable: {why}"),
    )
}

fn client_from(row: &Row) -> Result<RegisteredClient> {
    let auth_method = match row.get::<_, &str>("auth_method") {
        "none" => ClientAuthMethod::None,
        "client_secret_post" => ClientAuthMethod::ClientSecretPost,
        "client_secret_basic" => ClientAuthMethod::ClientSecretBasic,
        "private_key_jwt" => ClientAuthMethod::PrivateKeyJwt,
        _ => return Err(unreadable("unknown client authentication method")),
    };
    let secret_hash = match row.get::<_, Option<Vec<u8>>>("secret_hash") {
        Some(bytes) => Some(TokenHash(
            bytes
                .try_into()
                .map_err(|_| unreadable("a stored hash is not 32 bytes"))?,
        )),
        None => None,
    };
    let metadata =
        serde_json::from_str(row.get("metadata")).map_err(|_| unreadable("client metadata"))?;
    Ok(RegisteredClient {
        client_id: row.get("client_id"),
        secret_hash,
        auth_method,
        metadata,
        issued_at: unsigned(row.get("issued_at")),
        pre_registered: row.get("pre_registered"),
    })
}

/// Rotates `$1` to `$2` when `$1` is its family's current token and the family is live at `$3`;
/// returns the family, or no row.
const ROTATE: &str = "WITH rotated AS (
        UPDATE mcp_oauth_families f SET current_refresh = $2
        WHERE f.id = (SELECT family_id FROM mcp_oauth_refresh WHERE token_hash = $1)
          AND f.current_refresh = $1 AND NOT f.revoked AND f.expires_at > $3
        RETURNING f.id, f.client_id, f.subject, f.scopes, f.resource, f.expires_at, f.revoked,
                  f.dpop_jkt
    ), added AS (
        INSERT INTO mcp_oauth_refresh (token_hash, family_id) SELECT $2, id FROM rotated
    )
    SELECT * FROM rotated";

const FAMILY_COLUMNS: &str =
    "f.id, f.client_id, f.subject, f.scopes, f.resource, f.expires_at, f.revoked, f.dpop_jkt";

fn family_from(row: &Row) -> Result<TokenFamily> {
    let missing = || unreadable("a token family lacks its grant");
    Ok(TokenFamily {
        id: row.get("id"),
        client_id: row
            .get::<_, Option<String>>("client_id")
            .ok_or_else(missing)?,
        subject: row
            .get::<_, Option<String>>("subject")
            .ok_or_else(missing)?,
        scopes: row
            .get::<_, Option<Vec<String>>>("scopes")
            .ok_or_else(missing)?,
        resource: row
            .get::<_, Option<String>>("resource")
            .ok_or_else(missing)?,
        expires_at: unsigned(row.get("expires_at")),
        revoked: row.get("revoked"),
        dpop_jkt: row.get("dpop_jkt"),
    })
}

fn access_from(row: &Row) -> AccessRecord {
    AccessRecord {
        client_id: row.get("client_id"),
        subject: row.get("subject"),
        scopes: row.get("scopes"),
        resource: row.get("resource"),
        issued_at: unsigned(row.get("issued_at")),
        expires_at: unsigned(row.get("expires_at")),
        family_id: row.get("family_id"),
        dpop_jkt: row.get("dpop_jkt"),
    }
}

const DEVICE_COLUMNS: &str = "user_hash, client_id, client_name, scopes, resource, expires_at,
     interval_secs, last_poll, status, subject, family_id";

fn device_from(row: &Row) -> Result<DeviceGrant> {
    let status = match (
        row.get::<_, &str>("status"),
        row.get::<_, Option<String>>("subject"),
    ) {
        ("pending", _) => DeviceStatus::Pending,
        ("approved", Some(subject)) => DeviceStatus::Approved { subject },
        ("denied", _) => DeviceStatus::Denied,
        _ => return Err(unreadable("a device authorization has an unknown status")),
    };
    Ok(DeviceGrant {
        client_id: row.get("client_id"),
        client_name: row.get("client_name"),
        user_code: hash_of(row, "user_hash")?,
        scopes: row.get("scopes"),
        resource: row.get("resource"),
        expires_at: unsigned(row.get("expires_at")),
        interval: unsigned(row.get("interval_secs")),
        last_poll: unsigned(row.get("last_poll")),
        status,
        family_id: row.get("family_id"),
    })
}

/// A status as stored: its name and its subject.
fn device_status_columns(status: &DeviceStatus) -> (&'static str, Option<&str>) {
    match status {
        DeviceStatus::Pending => ("pending", None),
        DeviceStatus::Approved { subject } => ("approved", Some(subject)),
        DeviceStatus::Denied => ("denied", None),
    }
}

fn consent_from(row: &Row) -> Result<PendingConsent> {
    Ok(PendingConsent {
        client_id: row.get("client_id"),
        client_name: row.get("client_name"),
        redirect_uri: row.get("redirect_uri"),
        redirect_uri_in_request: row.get("redirect_uri_in_request"),
        state: row.get("state"),
        scopes: row.get("scopes"),
        resource: row.get("resource"),
        code_challenge: row.get("code_challenge"),
        subject: row.get("subject"),
        csrf_hash: hash_of(row, "csrf_hash")?,
        expires_at: unsigned(row.get("expires_at")),
    })
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
                "SELECT {FAMILY_COLUMNS}, f.current_refresh
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
            "UPDATE mcp_oauth_families SET current_refresh = $2 WHERE id = $1",
            &[&family.id, &new.0.as_slice()],
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
                 issued_at, expires_at, family_id, dpop_jkt)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
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
                        dpop_jkt
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

    async fn save_consent(&self, id: TokenHash, consent: PendingConsent) -> Result<()> {
        let mut db = self.pool.client().await?;
        let tx = db
            .transaction()
            .await
            .map_err(|e| database_error("saving a consent request", &e))?;
        // One client's pages push out only its own oldest.
        execute(
            &tx,
            "DELETE FROM mcp_oauth_consents WHERE id IN (
                 SELECT id FROM mcp_oauth_consents WHERE client_id = $1
                 ORDER BY expires_at DESC OFFSET $2)",
            &[&consent.client_id, &(MAX_CONSENTS_PER_CLIENT - 1)],
            "saving a consent request",
        )
        .await?;
        execute(
            &tx,
            "DELETE FROM mcp_oauth_consents WHERE id = (
                 SELECT id FROM mcp_oauth_consents WHERE client_id = (
                     SELECT client_id FROM mcp_oauth_consents
                     GROUP BY client_id ORDER BY count(*) DESC LIMIT 1)
                 ORDER BY expires_at LIMIT 1)
             AND (SELECT count(*) FROM mcp_oauth_consents) >= $1",
            &[&self.max_consents],
            "saving a consent request",
        )
        .await?;
        execute(
            &tx,
            "INSERT INTO mcp_oauth_consents (id, client_id, client_name, redirect_uri,
                 redirect_uri_in_request, state, scopes, resource, code_challenge, subject,
                 csrf_hash, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &id.0.as_slice(),
                &consent.client_id,
                &consent.client_name,
                &consent.redirect_uri,
                &consent.redirect_uri_in_request,
                &consent.state,
                &consent.scopes,
                &consent.resource,
                &consent.code_challenge,
                &consent.subject,
                &consent.csrf_hash.0.as_slice(),
                &seconds(consent.expires_at),
            ],
            "saving a consent request",
        )
        .await?;
        tx.commit()
            .await
            .map_err(|e| database_error("saving a consent request", &e))?;
        self.wrote();
        Ok(())
    }

    async fn take_consent(&self, id: TokenHash) -> Result<Option<PendingConsent>> {
        let db = self.pool.client().await?;
        let row = query_opt(
            &db,
            "DELETE FROM mcp_oauth_consents WHERE id = $1
                 RETURNING client_id, client_name, redirect_uri, redirect_uri_in_request, state,
                           scopes, resource, code_challenge, subject, csrf_hash, expires_at",
            &[&id.0.as_slice()],
            "taking a consent request",
        )
        .await?;
        row.as_ref().map(consent_from).transpose()
    }

    async fn save_device(&self, device_code: TokenHash, grant: DeviceGrant) -> Result<DeviceSave> {
        const DOING: &str = "saving a device authorization";
        let now = seconds(crate::clock::now_secs());
        let mut db = self.pool.client().await?;
        let tx = db
            .transaction()
            .await
            .map_err(|e| database_error(DOING, &e))?;
        // An expired grant gives its user code back.
        execute(
            &tx,
            "DELETE FROM mcp_oauth_devices WHERE user_hash = $1 AND expires_at <= $2",
            &[&grant.user_code.0.as_slice(), &now],
            DOING,
        )
        .await?;
        // A soft cap: replicas saving at the same moment may pass it by a few.
        let counts = query_opt(
            &tx,
            "SELECT (SELECT count(*) FROM mcp_oauth_devices
                         WHERE client_id = $1 AND expires_at > $2) AS held,
                    (SELECT count(*) FROM mcp_oauth_devices WHERE expires_at > $2) AS live",
            &[&grant.client_id, &now],
            DOING,
        )
        .await?
        .ok_or_else(|| unreadable("counting device authorizations gave no row"))?;
        let (held, live): (i64, i64) = (counts.get("held"), counts.get("live"));
        if held >= MAX_DEVICES_PER_CLIENT || live >= self.max_devices {
            return Ok(DeviceSave::Full);
        }
        let (status, subject) = device_status_columns(&grant.status);
        let inserted = execute(
            &tx,
            "INSERT INTO mcp_oauth_devices (device_hash, user_hash, client_id, client_name,
                 scopes, resource, expires_at, interval_secs, last_poll, status, subject,
                 family_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT DO NOTHING",
            &[
                &device_code.0.as_slice(),
                &grant.user_code.0.as_slice(),
                &grant.client_id,
                &grant.client_name,
                &grant.scopes,
                &grant.resource,
                &seconds(grant.expires_at),
                &seconds(grant.interval),
                &seconds(grant.last_poll),
                &status,
                &subject,
                &grant.family_id,
            ],
            DOING,
        )
        .await?;
        tx.commit().await.map_err(|e| database_error(DOING, &e))?;
        self.wrote();
        Ok(if inserted == 1 {
            DeviceSave::Saved
        } else {
            DeviceSave::UserCodeTaken
        })
    }

    async fn device_by_user_code(&self, user_code: TokenHash) -> Result<Option<DeviceGrant>> {
        let db = self.pool.client().await?;
        let row = query_opt(
            &db,
            &format!("SELECT {DEVICE_COLUMNS} FROM mcp_oauth_devices WHERE user_hash = $1"),
            &[&user_code.0.as_slice()],
            "reading a device authorization",
        )
        .await?;
        row.as_ref().map(device_from).transpose()
    }

    async fn answer_device(
        &self,
        user_code: TokenHash,
        answer: DeviceStatus,
        now: u64,
    ) -> Result<bool> {
        let db = self.pool.client().await?;
        let (status, subject) = device_status_columns(&answer);
        let answered = execute(
            &db,
            "UPDATE mcp_oauth_devices SET status = $2, subject = $3
             WHERE user_hash = $1 AND status = 'pending' AND expires_at > $4",
            &[&user_code.0.as_slice(), &status, &subject, &seconds(now)],
            "answering a device authorization",
        )
        .await?;
        Ok(answered == 1)
    }

    async fn poll_device(
        &self,
        device_code: TokenHash,
        client_id: &str,
        now: u64,
    ) -> Result<DevicePoll> {
        const DOING: &str = "polling a device authorization";
        let mut db = self.pool.client().await?;
        let tx = db
            .transaction()
            .await
            .map_err(|e| database_error(DOING, &e))?;
        // The row lock makes two polls (two replicas) take turns: one hands the grant out.
        let row = query_opt(
            &tx,
            &format!(
                "SELECT {DEVICE_COLUMNS} FROM mcp_oauth_devices WHERE device_hash = $1 FOR UPDATE"
            ),
            &[&device_code.0.as_slice()],
            DOING,
        )
        .await?;
        let Some(mut grant) = row.as_ref().map(device_from).transpose()? else {
            return Ok(DevicePoll::Unknown);
        };
        if grant.client_id != client_id {
            return Ok(DevicePoll::Unknown);
        }
        let outcome = grant.poll(now);
        if matches!(outcome, DevicePoll::Pending | DevicePoll::SlowDown) {
            execute(
                &tx,
                "UPDATE mcp_oauth_devices SET last_poll = $2, interval_secs = $3
                 WHERE device_hash = $1",
                &[
                    &device_code.0.as_slice(),
                    &seconds(grant.last_poll),
                    &seconds(grant.interval),
                ],
                DOING,
            )
            .await?;
        } else {
            execute(
                &tx,
                "DELETE FROM mcp_oauth_devices WHERE device_hash = $1",
                &[&device_code.0.as_slice()],
                DOING,
            )
            .await?;
        }
        tx.commit().await.map_err(|e| database_error(DOING, &e))?;
        Ok(outcome)
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
    ) -> BoxFuture<'_, Result<RefreshRotation>> {
        Box::pin(self.rotate_refresh(old, new, now))
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
}
