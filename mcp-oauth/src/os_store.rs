//! The OS credential store (Secret Service, macOS Keychain, Windows Credential Manager) holds
//! the key that seals the credentials file, one key per file.
//!
//! Why a key and not the records: Windows keeps at most 2,560 bytes per credential, less than
//! a JWT, a refresh token and a DPoP key; the store cannot list its entries for `status`; and
//! processes signing in together need the file's locks anyway. Sealed with a key from the OS
//! store, the file alone gives nothing away.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use tower_mcp_oauth::client::{FileStore, SealingKey};

/// The service name entries are kept under.
const SERVICE: &str = "mcp-oauth";
/// How long the OS store may take to answer: a Secret Service that is being started (or
/// that waits for an unlock prompt nobody sees) must not hold the bridge up.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The sealing key for the credentials file at `store_path`, made and kept in the OS store
/// the first time. `Err` says why the OS store cannot be used.
pub(crate) async fn sealing_key(store_path: &Path) -> Result<SealingKey, String> {
    off_the_runtime(store_path, |entry, path| {
        if let Some(key) = read(entry)? {
            return Ok(key);
        }
        // Two processes starting together must not make two keys: the first makes it under
        // a lock beside the file, the other finds it.
        let _lock = lock_beside(path)?;
        match existing(entry, path)? {
            Some(key) => Ok(key),
            None => make(entry),
        }
    })
    .await
}

/// The sealing key for the file at `store_path` if the OS store has one; never makes one
/// (for commands that only read or remove credentials). `Err` says why the OS store cannot
/// be used, or that a sealed file's key is gone.
pub(crate) async fn existing_sealing_key(store_path: &Path) -> Result<Option<SealingKey>, String> {
    off_the_runtime(store_path, existing).await
}

/// Runs `lookup` on the file's entry: the OS store's clients block (and the Secret Service
/// one runs its own executor), so off the runtime's threads, and within [`TIMEOUT`].
async fn off_the_runtime<T: Send + 'static>(
    store_path: &Path,
    lookup: fn(&keyring::Entry, &Path) -> Result<T, String>,
) -> Result<T, String> {
    let store_path = store_path.to_path_buf();
    let lookup = tokio::task::spawn_blocking(move || lookup(&entry_for(&store_path)?, &store_path));
    match tokio::time::timeout(TIMEOUT, lookup).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err("the lookup stopped".into()),
        Err(_) => Err(format!("it did not answer within {} s", TIMEOUT.as_secs())),
    }
}

fn entry_for(store_path: &Path) -> Result<keyring::Entry, String> {
    // The entry names the file, so stores in different places have different keys.
    let absolute = std::path::absolute(store_path).unwrap_or_else(|_| store_path.to_path_buf());
    keyring::Entry::new(
        SERVICE,
        &format!("credentials key for {}", absolute.display()),
    )
    .map_err(describe)
}

/// The key in `entry`, or none; a sealed file without its key is an error.
fn existing(entry: &keyring::Entry, store_path: &Path) -> Result<Option<SealingKey>, String> {
    if let Some(key) = read(entry)? {
        return Ok(Some(key));
    }
    // A sealed file without its key stays shut for good: say so, rather than make a new key
    // that cannot open it either.
    if FileStore::new(store_path).is_sealed() {
        return Err(format!(
            "the key that sealed {} is gone from it; delete that file and sign in again",
            store_path.display()
        ));
    }
    Ok(None)
}

fn make(entry: &keyring::Entry) -> Result<SealingKey, String> {
    let bytes = SealingKey::generate_bytes();
    entry
        .set_password(&base64::engine::general_purpose::STANDARD.encode(bytes))
        .map_err(describe)?;
    tracing::info!("made a key for the credentials file in the OS credential store");
    Ok(SealingKey::new(&bytes))
}

fn read(entry: &keyring::Entry) -> Result<Option<SealingKey>, String> {
    match entry.get_password() {
        Ok(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or("its entry for the credentials key is not a key")?;
            Ok(Some(SealingKey::new(&bytes)))
        }
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(error) => Err(describe(error)),
    }
}

fn lock_beside(store_path: &Path) -> Result<std::fs::File, String> {
    let mut name = store_path.as_os_str().to_owned();
    name.push(".key-lock");
    if let Some(dir) = store_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Private, as the store makes it: this may be the first to need the directory.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|e| e.to_string())?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::path::PathBuf::from(name))
        .map_err(|e| e.to_string())?;
    file.lock().map_err(|e| e.to_string())?;
    Ok(file)
}

/// What went wrong, in a line: the OS store's messages name no secret.
fn describe(error: keyring::Error) -> String {
    match error {
        keyring::Error::PlatformFailure(e) | keyring::Error::NoStorageAccess(e) => e.to_string(),
        other => other.to_string(),
    }
}
