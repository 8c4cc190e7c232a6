//! Times as the manager shows them.

use std::time::{Duration, UNIX_EPOCH};

/// Formats microseconds since the epoch as RFC 3339 (UTC, microseconds);
/// `-` for a time before the epoch.
pub fn format_us(us: i64) -> String {
    match u64::try_from(us) {
        Ok(us) => {
            humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(us)).to_string()
        }
        Err(_) => "-".to_string(),
    }
}
