//! PostgreSQL plumbing for the stores that let authorization servers and client fleets run as
//! replicas (feature `postgres`): a bounded pool with timeouts, schema migrations that run once
//! however many replicas start together, and database failures as typed errors.
//!
//! ```no_run
//! # async fn example() -> tower_mcp_oauth::Result<()> {
//! use tower_mcp_oauth::postgres::PostgresPool;
//!
//! let pool = PostgresPool::builder("postgres://mcp@db.internal/mcp_oauth")
//!     .max_size(16)
//!     .connect()
//!     .await?;
//! # let _ = pool; Ok(()) }
//! ```

use std::time::Duration;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::error::{Error, ErrorKind, Result};

/// Connections kept at most, by default.
pub const DEFAULT_MAX_SIZE: usize = 16;
/// How long a request waits for a connection, opens one, or runs one statement, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serializes migrations across replicas: an advisory lock held for the migrating transaction.
#[cfg_attr(
    not(any(
        feature = "client",
        feature = "server",
        feature = "authorization-server"
    )),
    allow(dead_code)
)]
const MIGRATION_LOCK: i64 = 0x6d63_705f_6f61_7574; // "mcp_oaut"

/// A pool of PostgreSQL connections, shared by every store of a process. Cheap to clone.
#[derive(Clone)]
pub struct PostgresPool {
    pool: Pool,
}

impl std::fmt::Debug for PostgresPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string (and its password) stays out.
        let status = self.pool.status();
        f.debug_struct("PostgresPool")
            .field("max_size", &status.max_size)
            .field("size", &status.size)
            .field("available", &status.available)
            .finish_non_exhaustive()
    }
}

/// Builds a [`PostgresPool`].
pub struct PostgresPoolBuilder {
    url: String,
    max_size: usize,
    timeout: Duration,
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    allow_plaintext: bool,
}

impl std::fmt::Debug for PostgresPoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresPoolBuilder")
            .field("max_size", &self.max_size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PostgresPool {
    /// A pool for the database at `url` (`postgres://user:password@host:port/database`, or
    /// the key=value form).
    pub fn builder(url: impl Into<String>) -> PostgresPoolBuilder {
        PostgresPoolBuilder {
            url: url.into(),
            max_size: DEFAULT_MAX_SIZE,
            timeout: DEFAULT_TIMEOUT,
            extra_roots: Vec::new(),
            allow_plaintext: false,
        }
    }

    /// [`builder`](Self::builder) with the defaults, connected.
    ///
    /// # Errors
    /// See [`PostgresPoolBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// A connection from the pool.
    pub(crate) async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(|error| {
            let why = match error {
                deadpool_postgres::PoolError::Timeout(_) => "no connection was free in time",
                deadpool_postgres::PoolError::Backend(_) => "cannot connect to the database",
                _ => "cannot get a database connection",
            };
            Error::new(ErrorKind::Storage, format!("PostgreSQL: {why}"))
        })
    }

    #[cfg_attr(
        not(any(
            feature = "client",
            feature = "server",
            feature = "authorization-server"
        )),
        allow(dead_code)
    )]
    /// Applies the migrations of `component` not applied yet, in order, each once: replicas
    /// starting together take an advisory lock, so exactly one applies each.
    pub(crate) async fn migrate(&self, component: &str, migrations: &[&str]) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| database_error("starting a migration", &e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| database_error("locking for a migration", &e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS mcp_oauth_migrations (
                component TEXT NOT NULL,
                version INTEGER NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (component, version)
            )",
        )
        .await
        .map_err(|e| database_error("creating the migrations table", &e))?;
        let applied: Vec<i32> = tx
            .query(
                "SELECT version FROM mcp_oauth_migrations WHERE component = $1",
                &[&component],
            )
            .await
            .map_err(|e| database_error("reading the migrations", &e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for (index, sql) in migrations.iter().enumerate() {
            let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
            if applied.contains(&version) {
                continue;
            }
            tx.batch_execute(sql)
                .await
                .map_err(|e| database_error("applying a migration", &e))?;
            tx.execute(
                "INSERT INTO mcp_oauth_migrations (component, version) VALUES ($1, $2)",
                &[&component, &version],
            )
            .await
            .map_err(|e| database_error("recording a migration", &e))?;
            tracing::info!(component, version, "applied a PostgreSQL migration");
        }
        tx.commit()
            .await
            .map_err(|e| database_error("committing a migration", &e))
    }
}

impl PostgresPoolBuilder {
    /// Connections kept at most (default [`DEFAULT_MAX_SIZE`]).
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size.max(1);
        self
    }

    /// How long a request may wait for a connection, open one, or run one statement (default
    /// [`DEFAULT_TIMEOUT`]): past it, the request fails with a storage error (a 503 at the
    /// authorization server) instead of hanging.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also trusts the PEM certificates in `roots_pem` for the database's TLS certificate (a
    /// private CA), beside the webpki roots.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `roots_pem` holds no valid certificate.
    pub fn root_certificates(mut self, roots_pem: &[u8]) -> Result<Self> {
        self.extra_roots
            .extend(crate::http::parse_certificates(roots_pem)?);
        Ok(self)
    }

    /// Lets a database off loopback be reached without TLS (`sslmode=disable` or `prefer` in
    /// the URL). Off by default: credentials, refresh tokens and DPoP keys travel to the
    /// database, so anywhere but loopback or a Unix socket, TLS is required.
    pub fn allow_plaintext(mut self, allow: bool) -> Self {
        self.allow_plaintext = allow;
        self
    }

    /// Builds the pool and checks that the database answers.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a malformed URL; [`ErrorKind::Storage`] when the database
    /// cannot be reached. Neither quotes the URL.
    pub async fn connect(self) -> Result<PostgresPool> {
        let pool = self.build()?;
        let client = pool.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| database_error("checking the connection", &e))?;
        Ok(pool)
    }

    fn build(self) -> Result<PostgresPool> {
        let mut config: tokio_postgres::Config = self.url.parse().map_err(|_| {
            Error::new(
                ErrorKind::Config,
                "the PostgreSQL connection string is malformed",
            )
        })?;
        let millis = self.timeout.as_millis().max(1);
        // The URL's own options (a search_path, say) are kept; the timeouts come after them.
        let options = format!(
            "{} -c statement_timeout={millis} -c lock_timeout={millis} -c client_min_messages=warning",
            config.get_options().unwrap_or_default()
        );
        config
            .connect_timeout(self.timeout)
            .options(options.trim_start());
        let local = is_loopback_only(&config);
        if !local && !self.allow_plaintext {
            match config.get_ssl_mode() {
                SslMode::Disable => {
                    return Err(Error::new(
                        ErrorKind::Config,
                        "sslmode=disable to a database off loopback: use TLS, or allow_plaintext",
                    ))
                }
                // `prefer` would fall back to plaintext silently.
                _ => {
                    config.ssl_mode(SslMode::Require);
                }
            }
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(crate::http::tls_config(
            &self.extra_roots,
        ));
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.max_size)
            .wait_timeout(Some(self.timeout))
            .create_timeout(Some(self.timeout))
            .recycle_timeout(Some(self.timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|_| Error::new(ErrorKind::Config, "cannot build the PostgreSQL pool"))?;
        Ok(PostgresPool { pool })
    }
}

/// A database failure as a [`ErrorKind::Storage`] error: what was being done and the SQLSTATE,
/// never the server's message (which can quote values).
pub(crate) fn database_error(doing: &str, error: &tokio_postgres::Error) -> Error {
    let code = error
        .code()
        .map(|code| format!(" (SQLSTATE {})", code.code()))
        .unwrap_or_default();
    let why = if error.is_closed() {
        "the connection is closed"
    } else {
        "the database refused or failed"
    };
    Error::new(
        ErrorKind::Storage,
        format!("PostgreSQL: {doing}: {why}{code}"),
    )
}

#[cfg_attr(not(feature = "authorization-server"), allow(dead_code))]
/// `sql` prepared once per connection (one round trip per query afterwards, not two), then
/// run for at most one row.
pub(crate) async fn query_opt(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    doing: &str,
) -> Result<Option<Row>> {
    let statement = db
        .prepare_cached(sql)
        .await
        .map_err(|e| database_error(doing, &e))?;
    db.query_opt(&statement, params)
        .await
        .map_err(|e| database_error(doing, &e))
}

#[cfg_attr(not(feature = "authorization-server"), allow(dead_code))]
/// `sql` prepared once per connection, then run; the rows it changed.
pub(crate) async fn execute(
    db: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    doing: &str,
) -> Result<u64> {
    let statement = db
        .prepare_cached(sql)
        .await
        .map_err(|e| database_error(doing, &e))?;
    db.execute(&statement, params)
        .await
        .map_err(|e| database_error(doing, &e))
}

#[cfg_attr(not(feature = "authorization-server"), allow(dead_code))]
/// The current time in seconds since the epoch, as the stores count it (i64 for PostgreSQL).
pub(crate) fn seconds(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg_attr(not(feature = "authorization-server"), allow(dead_code))]
/// A stored time back as seconds since the epoch.
pub(crate) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Whether every address the connection may go to is this machine: each host a loopback
/// address, `localhost` or a Unix socket, and each `hostaddr` (which tokio-postgres connects
/// to instead of resolving the host) a loopback address. Only then may the password travel in
/// plaintext.
fn is_loopback_only(config: &tokio_postgres::Config) -> bool {
    let hosts = config.get_hosts();
    let addresses = config.get_hostaddrs();
    let named_locally = hosts.iter().all(|host| match host {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    });
    (!hosts.is_empty() || !addresses.is_empty())
        && named_locally
        && addresses.iter().all(std::net::IpAddr::is_loopback)
}

/// A [`ReplayCache`](crate::dpop::ReplayCache) on PostgreSQL: DPoP proofs, client assertions
/// and ID-JAGs seen by one replica are refused at every other. An id is accepted once until
/// it expires; expired ids are swept as new ones arrive.
#[cfg(any(feature = "server", feature = "authorization-server"))]
#[derive(Debug, Clone)]
pub struct PostgresReplayCache {
    pool: PostgresPool,
    inserts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(any(feature = "server", feature = "authorization-server"))]
impl PostgresReplayCache {
    /// The cache on `pool`, its table created if missing.
    ///
    /// # Errors
    /// [`ErrorKind::Storage`] when the database cannot be reached or refuses the schema.
    pub async fn new(pool: PostgresPool) -> Result<Self> {
        pool.migrate(
            "replay_cache",
            &["CREATE TABLE mcp_oauth_replay (
                   id BYTEA PRIMARY KEY,
                   expires_at BIGINT NOT NULL
               );
               CREATE INDEX mcp_oauth_replay_expiry ON mcp_oauth_replay (expires_at);"],
        )
        .await?;
        Ok(Self {
            pool,
            inserts: std::sync::Arc::default(),
        })
    }

    async fn first_use(&self, id: [u8; 16], expires_at: u64, now: u64) -> Result<bool> {
        let db = self.pool.client().await?;
        // New, or seen before but expired since: taken. Seen and live: a replay.
        let taken = db
            .execute(
                "INSERT INTO mcp_oauth_replay (id, expires_at) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at
                 WHERE mcp_oauth_replay.expires_at <= $3",
                &[&id.as_slice(), &seconds(expires_at), &seconds(now)],
            )
            .await
            .map_err(|e| database_error("recording a one-time id", &e))?;
        let count = self
            .inserts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if count % 256 == 255 {
            // The id is taken already: a failed sweep must not turn it into an error.
            let _ = db
                .execute(
                    "DELETE FROM mcp_oauth_replay WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM mcp_oauth_replay WHERE expires_at <= $1 LIMIT 1000))",
                    &[&seconds(now)],
                )
                .await
                .inspect_err(|error| tracing::warn!(%error, "sweeping one-time ids failed"));
        }
        Ok(taken == 1)
    }
}

#[cfg(any(feature = "server", feature = "authorization-server"))]
impl crate::dpop::ReplayCache for PostgresReplayCache {
    /// The table holds every live id, so no owner's proofs push out another's: `owner` is
    /// not needed.
    fn first_use<'a>(
        &'a self,
        _owner: &'a str,
        id: [u8; 16],
        expires_at: u64,
        now: u64,
    ) -> crate::BoxFuture<'a, Result<bool>> {
        Box::pin(self.first_use(id, expires_at, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostaddr_off_loopback_needs_tls_whatever_the_host_says() {
        let loopback_only = |text: &str| is_loopback_only(&text.parse().unwrap());
        assert!(loopback_only("host=localhost"));
        assert!(loopback_only("host=127.0.0.1 hostaddr=127.0.0.1"));
        assert!(loopback_only("hostaddr=::1"));
        assert!(!loopback_only("host=localhost hostaddr=192.0.2.1"));
        assert!(!loopback_only("hostaddr=192.0.2.1"));
        assert!(!loopback_only("host=127.0.0.1,db.example.com"));
        for remote in [
            "host=localhost hostaddr=192.0.2.1 user=mcp password=hunter2 sslmode=disable",
            "hostaddr=192.0.2.1 user=mcp password=hunter2 sslmode=disable",
        ] {
            let error = PostgresPool::builder(remote).build().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config);
            assert!(!error.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn plaintext_to_a_remote_database_is_refused_unless_allowed() {
        let remote = "postgres://mcp:hunter2@db.example.com/mcp?sslmode=disable";
        let error = PostgresPool::builder(remote).build().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(!error.to_string().contains("hunter2"));
        assert!(PostgresPool::builder(remote)
            .allow_plaintext(true)
            .build()
            .is_ok());
        // Loopback and the default (TLS preferred, required off loopback) build.
        assert!(
            PostgresPool::builder("postgres://mcp@127.0.0.1/mcp?sslmode=disable")
                .build()
                .is_ok()
        );
        assert!(PostgresPool::builder("postgres://mcp@db.example.com/mcp")
            .build()
            .is_ok());
        let malformed = PostgresPool::builder("postgres://mcp:hunter2@[::1").build();
        assert!(malformed.is_err_and(|e| !format!("{e:?}").contains("hunter2")));
    }
}
