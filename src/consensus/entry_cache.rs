//! The raft log's newest entries kept in memory, so that raft-rs reads the entries it is
//! about to apply (and, mostly, those it sends to followers) without reading them back from
//! the log's files: no read, no buffer to zero and no CRC32 per entry on the way out.
//!
//! The cache holds a contiguous run of entries that ends at the log's last index: the
//! owner ([`super::storage::RaftStorage`]) tells it about every append, cut of the tail,
//! compaction and reset, in the same step as the log. Entries leave once they are applied
//! (the state machine has them) and, whatever happens, as soon as their data passes
//! [`RAFT_ENTRY_CACHE_BYTES_MAX`]. The data is shared with raft-rs's own copies (`Bytes`),
//! so the cache costs no copy, only the memory of entries it keeps alive longer.
//!
//! Pure: no I/O, no locking.

use std::collections::VecDeque;

use raft::eraftpb::Entry;

use crate::limits::RAFT_ENTRY_CACHE_BYTES_MAX;

/// See the module documentation.
#[derive(Debug)]
pub struct EntryCache {
    entries: VecDeque<Entry>,
    /// Sum of the kept entries' data lengths.
    bytes: usize,
    /// Largest `bytes` allowed.
    bytes_max: usize,
}

impl Default for EntryCache {
    fn default() -> Self {
        EntryCache::with_limit(RAFT_ENTRY_CACHE_BYTES_MAX)
    }
}

impl EntryCache {
    /// An empty cache that keeps at most `bytes_max` bytes of entry data.
    pub fn with_limit(bytes_max: usize) -> EntryCache {
        EntryCache {
            entries: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// Records entries just written to the log after its entry `entries[0].index - 1`
    /// (anything cached from that index on was cut from the log first). A batch that does
    /// not continue the cache replaces it.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        self.truncate_from(first.index);
        if self.next_index().is_some_and(|next| next != first.index) {
            self.clear();
        }
        for e in entries {
            self.bytes += e.data.len();
            self.entries.push_back(e.clone());
        }
        while self.bytes > self.bytes_max {
            self.pop_front();
        }
    }

    /// Forgets entries from `index` on (the log's tail was cut there).
    pub fn truncate_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|e| e.index >= index) {
            if let Some(e) = self.entries.pop_back() {
                self.bytes -= e.data.len();
            }
        }
    }

    /// Forgets entries up to and including `index` (applied, or compacted from the log).
    pub fn drop_through(&mut self, index: u64) {
        while self.entries.front().is_some_and(|e| e.index <= index) {
            self.pop_front();
        }
    }

    /// Forgets everything (the log was reset, or an operation on it failed).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries `low..high` (at least one, then while their data fits in `max_size`, as
    /// raft-rs asks), when the cache holds all of them; None sends the caller to the log.
    pub fn get(&self, low: u64, high: u64, max_size: Option<u64>) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.index;
        let next = self.next_index()?;
        if low < first || high > next || low >= high {
            return None;
        }
        // Contiguous by construction; should that ever break, the log answers instead.
        let range = (low - first) as usize..(high - first) as usize;
        let (lo, hi) = (
            self.entries.get(range.start)?,
            self.entries.get(range.end - 1)?,
        );
        let contiguous = lo.index == low && hi.index == high - 1;
        debug_assert!(contiguous, "entry cache not contiguous");
        if !contiguous {
            return None;
        }
        let max = max_size.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut total = 0u64;
        for e in self.entries.range(range) {
            total = total.saturating_add(encoded_size(e));
            if !out.is_empty() && total > max {
                break;
            }
            out.push(e.clone());
        }
        Some(out)
    }

    fn next_index(&self) -> Option<u64> {
        self.entries.back().map(|e| e.index + 1)
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.data.len();
        }
    }
}

/// The size raft-rs's `limit_size` counts for an entry: its encoded protobuf size.
fn encoded_size(e: &Entry) -> u64 {
    u64::from(protobuf::Message::compute_size(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(index: u64, len: usize) -> Entry {
        Entry {
            index,
            term: 1,
            data: Bytes::from(vec![index as u8; len]),
            ..Entry::default()
        }
    }

    fn run(first: u64, last: u64, len: usize) -> Vec<Entry> {
        (first..=last).map(|i| entry(i, len)).collect()
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.index).collect()
    }

    #[test]
    fn serves_what_it_holds_and_sends_the_rest_to_the_log() {
        let mut c = EntryCache::with_limit(1 << 20);
        assert_eq!(c.get(1, 2, None), None);
        c.append(&run(5, 9, 10));
        assert_eq!(indexes(&c.get(5, 10, None).unwrap()), vec![5, 6, 7, 8, 9]);
        assert_eq!(indexes(&c.get(7, 9, None).unwrap()), vec![7, 8]);
        assert_eq!(c.get(4, 6, None), None, "starts before the cache");
        assert_eq!(c.get(8, 11, None), None, "ends after the log");
        assert_eq!(c.get(6, 6, None), None, "empty range");
        // The data is the same memory, not a copy.
        let got = c.get(5, 6, None).unwrap();
        assert_eq!(got[0].data.as_ptr(), c.entries[0].data.as_ptr());
    }

    #[test]
    fn max_size_is_applied_as_raft_does_but_returns_at_least_one() {
        let mut c = EntryCache::with_limit(1 << 20);
        c.append(&run(1, 4, 100));
        let one = encoded_size(&entry(1, 100));
        assert_eq!(indexes(&c.get(1, 5, Some(0)).unwrap()), vec![1]);
        assert_eq!(indexes(&c.get(1, 5, Some(one * 2)).unwrap()), vec![1, 2]);
        assert_eq!(
            indexes(&c.get(1, 5, Some(one * 2 + 1)).unwrap()),
            vec![1, 2]
        );
        let mut from_raft = run(1, 4, 100);
        raft::util::limit_size(&mut from_raft, Some(one * 3));
        assert_eq!(
            indexes(&c.get(1, 5, Some(one * 3)).unwrap()),
            indexes(&from_raft)
        );
    }

    #[test]
    fn an_append_over_the_tail_replaces_it_and_a_gap_starts_afresh() {
        let mut c = EntryCache::with_limit(1 << 20);
        c.append(&run(1, 6, 10));
        let mut replacement = run(4, 5, 10);
        replacement[0].term = 2;
        c.append(&replacement);
        let got = c.get(1, 6, None).unwrap();
        assert_eq!(indexes(&got), vec![1, 2, 3, 4, 5]);
        assert_eq!(got[3].term, 2);
        assert_eq!(c.get(1, 7, None), None, "entry 6 was cut");
        assert_eq!(c.bytes, 50);
        // Not continuing the cache (after a reset to a snapshot): only the new run is kept.
        c.append(&run(20, 21, 10));
        assert_eq!(c.get(5, 6, None), None);
        assert_eq!(indexes(&c.get(20, 22, None).unwrap()), vec![20, 21]);
        assert_eq!(c.bytes, 20);
    }

    #[test]
    fn applied_compacted_and_oversized_entries_leave() {
        let mut c = EntryCache::with_limit(250);
        c.append(&run(1, 2, 100));
        c.append(&run(3, 3, 100));
        assert_eq!(c.get(1, 4, None), None, "over the limit, the oldest left");
        assert_eq!(indexes(&c.get(2, 4, None).unwrap()), vec![2, 3]);
        assert_eq!(c.bytes, 200);
        c.drop_through(2);
        assert_eq!(indexes(&c.get(3, 4, None).unwrap()), vec![3]);
        c.drop_through(10);
        assert_eq!(c.bytes, 0);
        assert_eq!(c.get(3, 4, None), None);
        // Emptied, the next append starts the cache wherever it is.
        c.append(&run(4, 4, 10));
        assert_eq!(indexes(&c.get(4, 5, None).unwrap()), vec![4]);
        c.truncate_from(4);
        assert_eq!((c.entries.len(), c.bytes), (0, 0));
        // One entry larger than the limit is not kept at all.
        c.append(&run(4, 4, 300));
        assert_eq!((c.entries.len(), c.bytes), (0, 0));
    }
}
