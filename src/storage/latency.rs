//! Latency histograms: how long the log's fdatasyncs take, kept without locks and read as
//! snapshots that can be subtracted (what happened between two looks) and asked for
//! quantiles.
//!
//! Buckets are in microseconds: one per value below [`EXACT_BELOW_US`], then
//! [`SUB_BUCKETS`] per power of two (each bucket at most 25 % wide), up to
//! [`HISTOGRAM_MAX_US`]; longer durations land in the last bucket, and the exact maximum is
//! kept beside. A quantile is given as the upper bound of the bucket holding it, so it is
//! never below the true value and at most a quarter above it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Values below this many µs have a bucket each.
pub const EXACT_BELOW_US: u64 = 8;
/// Buckets per power of two above [`EXACT_BELOW_US`].
pub const SUB_BUCKETS: u64 = 4;
/// Durations from 2^34 µs (about 4.8 hours) share the last bucket.
pub const HISTOGRAM_MAX_US: u64 = 1 << 34;
/// log2 of [`EXACT_BELOW_US`].
const EXACT_BITS: u32 = 3;
/// log2 of [`SUB_BUCKETS`].
const SUB_BITS: u32 = 2;
/// Number of buckets.
pub const BUCKETS: usize =
    EXACT_BELOW_US as usize + (34 - EXACT_BITS as usize) * SUB_BUCKETS as usize + 1;

/// The bucket of a value in µs.
fn bucket_of(us: u64) -> usize {
    if us < EXACT_BELOW_US {
        return us as usize;
    }
    if us >= HISTOGRAM_MAX_US {
        return BUCKETS - 1;
    }
    let exp = 63 - us.leading_zeros(); // >= EXACT_BITS
    let sub = (us >> (exp - SUB_BITS)) & (SUB_BUCKETS - 1);
    EXACT_BELOW_US as usize + ((exp - EXACT_BITS) as usize) * SUB_BUCKETS as usize + sub as usize
}

/// The smallest value (µs) that falls past bucket `i`: its exclusive upper bound.
pub fn bucket_end_us(i: usize) -> u64 {
    if i < EXACT_BELOW_US as usize {
        return i as u64 + 1;
    }
    if i >= BUCKETS - 1 {
        return u64::MAX;
    }
    let k = (i - EXACT_BELOW_US as usize) as u64;
    let exp = EXACT_BITS as u64 + k / SUB_BUCKETS;
    let sub = k % SUB_BUCKETS;
    (SUB_BUCKETS + sub + 1) << (exp - SUB_BITS as u64)
}

/// A histogram several threads record into and any thread reads.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> LatencyHistogram {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    pub fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// The counts so far (each counter read once; a record running meanwhile may show in
    /// some of them only).
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_us: self.sum_us.load(Ordering::Relaxed),
            max_us: self.max_us.load(Ordering::Relaxed),
        }
    }
}

/// Counts of a [`LatencyHistogram`] at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencySnapshot {
    pub buckets: [u64; BUCKETS],
    pub sum_us: u64,
    /// The longest duration recorded since the histogram was made (not reduced by
    /// [`LatencySnapshot::since`]).
    pub max_us: u64,
}

impl Default for LatencySnapshot {
    fn default() -> LatencySnapshot {
        LatencySnapshot {
            buckets: [0; BUCKETS],
            sum_us: 0,
            max_us: 0,
        }
    }
}

impl LatencySnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Mean in µs (0 when empty).
    pub fn mean_us(&self) -> u64 {
        self.sum_us.checked_div(self.count()).unwrap_or(0)
    }

    /// The value (µs) that at least `q` (0..=1) of the recorded durations do not exceed,
    /// as the upper bound of its bucket, capped by the maximum; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let count = self.count();
        if count == 0 {
            return 0;
        }
        // The rank of the quantile, 1-based: ceil(q * count), at least 1.
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return (bucket_end_us(i) - 1).min(self.max_us);
            }
        }
        self.max_us
    }

    /// What was recorded after `earlier` (a snapshot of the same histogram).
    pub fn since(&self, earlier: &LatencySnapshot) -> LatencySnapshot {
        LatencySnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i])),
            sum_us: self.sum_us.saturating_sub(earlier.sum_us),
            max_us: self.max_us,
        }
    }

    /// The non-empty buckets as (exclusive upper bound in µs, count); the last bucket's
    /// bound is `u64::MAX`.
    pub fn nonempty(&self) -> Vec<(u64, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (bucket_end_us(i), *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_and_are_at_most_a_quarter_wide() {
        let mut start = 0u64;
        for i in 0..BUCKETS - 1 {
            let end = bucket_end_us(i);
            assert!(end > start, "bucket {i}");
            assert_eq!(bucket_of(start), i, "first value of bucket {i}");
            assert_eq!(bucket_of(end - 1), i, "last value of bucket {i}");
            if start >= EXACT_BELOW_US {
                assert!(
                    (end - start) * 4 <= start,
                    "bucket {i} [{start}, {end}) too wide"
                );
            }
            start = end;
        }
        assert_eq!(start, HISTOGRAM_MAX_US);
        assert_eq!(bucket_of(HISTOGRAM_MAX_US), BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_bound_the_true_value_from_above_within_a_quarter() {
        let h = LatencyHistogram::default();
        // 1..=1000 µs, once each.
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        assert_eq!(s.mean_us(), 500);
        assert_eq!(s.max_us, 1000);
        for (q, exact) in [(0.5, 500u64), (0.9, 900), (0.99, 990), (1.0, 1000)] {
            let got = s.quantile_us(q);
            assert!(
                got >= exact && got * 4 <= exact * 5,
                "q{q}: {got} for {exact}"
            );
        }
        assert_eq!(s.quantile_us(0.0), 1);
        assert_eq!(LatencySnapshot::default().quantile_us(0.99), 0);
    }

    #[test]
    fn a_difference_of_snapshots_holds_only_what_came_between() {
        let h = LatencyHistogram::default();
        for _ in 0..100 {
            h.record(Duration::from_micros(300));
        }
        let before = h.snapshot();
        for _ in 0..10 {
            h.record(Duration::from_millis(20));
        }
        h.record(Duration::from_secs(100_000)); // past the last bound
        let between = h.snapshot().since(&before);
        assert_eq!(between.count(), 11);
        assert!(between.quantile_us(0.5) >= 20_000 && between.quantile_us(0.5) < 25_000);
        assert_eq!(between.quantile_us(1.0), 100_000_000_000);
        let nonempty = between.nonempty();
        assert_eq!(nonempty.len(), 2);
        assert_eq!(nonempty[1], (u64::MAX, 1));
    }
}
