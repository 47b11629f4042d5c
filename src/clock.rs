//! Wall-clock time as the binlog and the admin API count it: whole seconds since the Unix
//! epoch. One function, so that every "now" the node reports is read the same way.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch now (0 for a clock set before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
