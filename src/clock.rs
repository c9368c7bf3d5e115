//! Wall-clock time as OAuth counts it: whole seconds since the Unix epoch.

/// Seconds since the epoch (0 if the clock is set before it).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
