//! [`FileStore`]: credentials in one JSON file, plain or sealed, shared by processes through
//! advisory locks.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::seal::SealingKey;

use super::{
    latest_in, stamped, CredentialKey, CredentialStore, Records, StoreLease, StoredCredentials,
};
use crate::BoxFuture;

/// Credentials kept in one JSON file that survives restarts and can be shared by processes.
///
/// Every write goes to a temporary file in the same directory, created with 0600 permissions,
/// flushed to disk and renamed over the old file, so a crash never leaves a half-written store.
/// Processes sharing the file coordinate through advisory locks on files beside it:
/// `{path}.write-lock` around each read-modify-write, and `{path}.lease.{digest}` per resource
/// and issuer, held by the process that is refreshing that key's tokens. The file holds secrets:
/// keep it in a private directory.
///
/// With [`sealed`](Self::sealed), the records are encrypted (AES-256-GCM) with a key kept
/// elsewhere, the OS credential store say: the file alone then gives nothing away.
///
/// The file says which format it is in (`version`): 1 is plain JSON, 2 is sealed. A store
/// reads every version up to its own, so an upgrade never signs anyone out (a sealed store
/// reads a plain file and seals it at the next write), and refuses to touch a file a newer
/// version wrote rather than lose what it cannot read.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    write_lock: tokio::sync::Mutex<()>,
    lease_timeout: std::time::Duration,
    sealing: Option<SealingKey>,
}

/// Binds a sealed store's ciphertext to its format.
const SEALED_AAD: &[u8] = b"tower-mcp-oauth FileStore v2";
/// The plain JSON format.
const PLAIN_VERSION: u32 = 1;
/// The sealed format.
const SEALED_VERSION: u32 = 2;

/// How long to wait for a lock another process holds before giving up.
const DEFAULT_LEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Takes an exclusive advisory lock on `path` (created 0600), polling so no thread blocks, and
/// giving up after `timeout`.
async fn lock_file(path: PathBuf, timeout: std::time::Duration) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let file = options.open(&path)?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "another process holds the lock",
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Creates `dir` and its missing parents readable by this user alone (0700 on Unix, as the
/// XDG base directory specification asks); an existing directory is left as it is.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A name for a key's lease file: FNV-1a over the resource and issuer. Stable across builds and
/// processes (unlike std's hasher); a collision only makes two keys share a lease.
pub(super) fn key_digest(key: &CredentialKey) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.resource.bytes().chain([0]).chain(key.issuer.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[derive(Serialize, Deserialize, Default)]
struct FileContents {
    version: u32,
    /// Version 1: the records. Left out of version 2, so that a release that knows only
    /// version 1 (and reads no `version`) finds the file unreadable instead of empty, and
    /// never writes over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    records: Option<Vec<(CredentialKey, StoredCredentials)>>,
    /// Version 2: the records, sealed (base64 of nonce and ciphertext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
}

impl FileStore {
    /// A store at `path`. The file is created on the first write.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            write_lock: tokio::sync::Mutex::new(()),
            lease_timeout: DEFAULT_LEASE_TIMEOUT,
            sealing: None,
        }
    }

    /// Encrypts the records with `key` (AES-256-GCM) from the next write on; a plain file
    /// is still read, and sealed when next written.
    pub fn sealed(mut self, key: SealingKey) -> Self {
        self.sealing = Some(key);
        self
    }

    /// How long to wait for another process's lock (default 30 s).
    pub fn lease_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.lease_timeout = timeout;
        self
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file exists and is sealed, so that only its key can open it. Reads the
    /// file's header synchronously: for deciding, before a key is made, that an existing
    /// file needs the old one.
    pub fn is_sealed(&self) -> bool {
        #[derive(Deserialize)]
        struct Header {
            version: u32,
        }
        std::fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Header>(&bytes).ok())
            .is_some_and(|header| header.version >= SEALED_VERSION)
    }

    /// Every record in the store, for listing (a command-line `status`, say).
    ///
    /// # Errors
    /// [`ErrorKind::Storage`] for a file that cannot be read or is corrupt.
    pub async fn entries(&self) -> Result<Vec<(CredentialKey, StoredCredentials)>> {
        Ok(self.read_all().await?.into_iter().collect())
    }

    fn storage_error(&self, what: &str, e: impl Into<crate::error::BoxError>) -> Error {
        Error::new(
            ErrorKind::Storage,
            format!("{what} credential store {}", self.path.display()),
        )
        .with_source(e)
    }

    fn corrupt(&self, e: &serde_json::Error) -> Error {
        Error::new(
            ErrorKind::Storage,
            format!(
                "credential store {} is corrupt (line {}, column {})",
                self.path.display(),
                e.line(),
                e.column()
            ),
        )
    }

    async fn read_all(&self) -> Result<Records> {
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Records::new()),
            Err(e) => return Err(self.storage_error("cannot read", e)),
        };
        let contents: FileContents =
            serde_json::from_slice(&bytes).map_err(|e| self.corrupt(&e))?;
        match (contents.version, contents.sealed) {
            (PLAIN_VERSION, None) => Ok(contents.records.unwrap_or_default().into_iter().collect()),
            (SEALED_VERSION, Some(sealed)) => {
                let Some(key) = &self.sealing else {
                    return Err(Error::new(
                        ErrorKind::Storage,
                        format!(
                            "credential store {} is sealed with a key this store was not given (the OS credential store's)",
                            self.path.display()
                        ),
                    ));
                };
                let plaintext = base64::engine::general_purpose::STANDARD
                    .decode(sealed)
                    .ok()
                    .and_then(|sealed| key.open(&sealed, SEALED_AAD))
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Storage,
                            format!(
                                "credential store {} cannot be opened with this key (another key sealed it, or it was altered)",
                                self.path.display()
                            ),
                        )
                    })?;
                let records: Vec<(CredentialKey, StoredCredentials)> =
                    serde_json::from_slice(&plaintext).map_err(|e| self.corrupt(&e))?;
                Ok(records.into_iter().collect())
            }
            (version, _) if version > SEALED_VERSION => Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "credential store {} was written by a newer version (format {version}); it is left as it is",
                    self.path.display()
                ),
            )),
            _ => Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "credential store {} is corrupt (its format does not match its version)",
                    self.path.display()
                ),
            )),
        }
    }

    async fn write_all(&self, records: Records) -> Result<()> {
        let records: Vec<_> = records.into_iter().collect();
        let contents = match &self.sealing {
            None => FileContents {
                version: PLAIN_VERSION,
                records: Some(records),
                sealed: None,
            },
            Some(key) => {
                let plaintext = serde_json::to_vec(&records)
                    .map_err(|e| self.storage_error("cannot serialize", e))?;
                FileContents {
                    version: SEALED_VERSION,
                    records: None,
                    sealed: Some(
                        base64::engine::general_purpose::STANDARD
                            .encode(key.seal(&plaintext, SEALED_AAD)),
                    ),
                }
            }
        };
        let bytes = serde_json::to_vec_pretty(&contents)
            .map_err(|e| self.storage_error("cannot serialize", e))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| self.storage_error("cannot write", e))?
            .map_err(|e| self.storage_error("cannot write", e))
    }

    async fn update(&self, f: impl FnOnce(&mut Records)) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        let _file_guard = lock_file(self.sibling(".write-lock"), self.lease_timeout)
            .await
            .map_err(|e| self.storage_error("cannot lock", e))?;
        let mut records = self.read_all().await?;
        f(&mut records);
        self.write_all(records).await
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;

    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "credentials".into());
    let suffix: u64 = rand::random();
    let tmp = dir.join(format!(".{file_name}.{suffix:016x}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        #[cfg(unix)]
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl CredentialStore for FileStore {
    fn load<'a>(
        &'a self,
        key: &'a CredentialKey,
    ) -> BoxFuture<'a, Result<Option<StoredCredentials>>> {
        Box::pin(async move { Ok(self.read_all().await?.remove(key)) })
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        record: &'a StoredCredentials,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.update(|r| {
                let record = stamped(r, record);
                r.insert(key.clone(), record);
            })
            .await
        })
    }

    fn remove<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.update(|r| {
                r.remove(key);
            })
            .await
        })
    }

    fn latest<'a>(
        &'a self,
        resource: &'a str,
    ) -> BoxFuture<'a, Result<Option<(CredentialKey, StoredCredentials)>>> {
        Box::pin(async move { Ok(latest_in(&self.read_all().await?, resource)) })
    }

    fn lease<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoreLease>>> {
        // One lease per key, so refreshes for different servers do not wait on each other.
        let lease = self.sibling(&format!(".lease.{:016x}", key_digest(key)));
        Box::pin(async move {
            let file = lock_file(lease, self.lease_timeout)
                .await
                .map_err(|e| self.storage_error("cannot take the refresh lease on", e))?;
            Ok(Some(StoreLease::new(file)))
        })
    }
}
