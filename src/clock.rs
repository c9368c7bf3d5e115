//! Wall-clock time as OAuth counts it: whole seconds since the Unix epoch.

/// Seconds since the epoch (0 if the clock is set before it).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A JWT / RFC 7662 NumericDate: seconds since the epoch, possibly fractional.
// The client reads none.
#[cfg_attr(
    not(any(feature = "server", feature = "authorization-server")),
    allow(dead_code)
)]
pub(crate) fn numeric_date(value: &serde_json::Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}
