//! Tells the operator, in the log, when a node has known no leader for a while: raft's own
//! lines (pre-votes, elections every second or two) do not say that the cluster has lost
//! its quorum. Pure: the leader watch feeds it what it sees and logs what it returns.

use std::time::{Duration, Instant};

use crate::limits::{LEADERLESS_REPEAT_MS, LEADERLESS_WARN_MS};

/// What to log after an observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// No leader has been known for this long.
    Leaderless(Duration),
    /// A leader is known again, after this long without one (only after a `Leaderless`).
    LeaderBack(Duration),
}

/// Tracks how long a node has known no leader.
#[derive(Debug, Default)]
pub struct Leaderless {
    /// Since when no leader has been known.
    since: Option<Instant>,
    /// When the last `Leaderless` notice was given.
    warned_at: Option<Instant>,
}

impl Leaderless {
    /// Records whether a leader is known at `now`; what to log, if anything: the first
    /// notice after `LEADERLESS_WARN_MS` without a leader, then one every
    /// `LEADERLESS_REPEAT_MS`, and one when a leader is known again after a notice.
    pub fn observe(&mut self, leader_known: bool, now: Instant) -> Option<Notice> {
        if leader_known {
            let since = self.since.take()?;
            return self
                .warned_at
                .take()
                .map(|_| Notice::LeaderBack(now.saturating_duration_since(since)));
        }
        let since = *self.since.get_or_insert(now);
        let without = now.saturating_duration_since(since);
        let due = match self.warned_at {
            None => without >= Duration::from_millis(LEADERLESS_WARN_MS),
            Some(at) => {
                now.saturating_duration_since(at) >= Duration::from_millis(LEADERLESS_REPEAT_MS)
            }
        };
        if !due {
            return None;
        }
        self.warned_at = Some(now);
        Some(Notice::Leaderless(without))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_long_leaderless_spell_is_told_then_repeated_then_its_end() {
        let t0 = Instant::now();
        let mut l = Leaderless::default();
        assert_eq!(l.observe(true, t0), None);
        // An election's short gap says nothing.
        assert_eq!(l.observe(false, t0), None);
        assert_eq!(l.observe(false, t0 + ms(LEADERLESS_WARN_MS - 1)), None);
        assert_eq!(l.observe(true, t0 + ms(LEADERLESS_WARN_MS - 1)), None);
        // A long one is told once, then every LEADERLESS_REPEAT_MS.
        let t1 = t0 + ms(10_000);
        assert_eq!(l.observe(false, t1), None);
        let warn = t1 + ms(LEADERLESS_WARN_MS);
        assert_eq!(
            l.observe(false, warn),
            Some(Notice::Leaderless(ms(LEADERLESS_WARN_MS)))
        );
        assert_eq!(l.observe(false, warn + ms(1)), None);
        let again = warn + ms(LEADERLESS_REPEAT_MS);
        assert_eq!(
            l.observe(false, again),
            Some(Notice::Leaderless(ms(
                LEADERLESS_WARN_MS + LEADERLESS_REPEAT_MS
            )))
        );
        // Its end is told, once.
        let back = again + ms(500);
        assert_eq!(l.observe(true, back), Some(Notice::LeaderBack(back - t1)));
        assert_eq!(l.observe(true, back + ms(1)), None);
    }
}
