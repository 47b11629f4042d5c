//! The binlog store: the durable log (`storage`) plus the binlog indexes over it, with a
//! watermark that wakes waiting readers the moment new whole transactions are durable.
//!
//! Consensus writes the log and applies committed entries here ([`Store::apply`]); many
//! readers (dump threads) read entries and wait on the watermark. (Unit tests use a store
//! that writes its own log: `local`.) Readers never see an entry past the watermark, so they never see part of a
//! transaction that is not stored whole. This module must not speak any network protocol.

pub mod cursor;
pub mod entry;
pub mod export;
pub mod index;
#[cfg(test)]
mod local;

use std::fmt;
use std::sync::{Condvar, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

#[cfg(test)]
use crate::storage::Log;
use crate::storage::{Entry, LogReader, StorageError};
use index::{BinlogIndex, IndexError};

/// Errors of the binlog store.
#[derive(Debug)]
pub enum StoreError {
    Storage(StorageError),
    Index { index: u64, error: IndexError },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Storage(e) => write!(f, "{e}"),
            StoreError::Index { index, error } => write!(f, "log entry {index}: {error}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// Whether the store could not make written data durable: the process must stop
    /// (house rule 3), since the kernel may have dropped the dirty pages.
    pub fn is_sync_failure(&self) -> bool {
        matches!(self, StoreError::Storage(StorageError::SyncFailed { .. }))
    }
}

impl From<StorageError> for StoreError {
    fn from(e: StorageError) -> Self {
        StoreError::Storage(e)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Watermark {
    whole_upto: u64,
    closed: bool,
}

/// The store. Share it as `Arc<Store>`.
pub struct Store {
    /// Unit tests only: the writer of a store that writes its own log (see `local`); the
    /// daemon's log is written by consensus and the store only applies committed entries.
    #[cfg(test)]
    log: Option<Mutex<Log>>,
    reader: LogReader,
    index: RwLock<BinlogIndex>,
    watermark: Mutex<Watermark>,
    changed: Condvar,
    /// Log prefix a purge freed and nobody compacted yet.
    compaction: Mutex<Option<u64>>,
}

impl Store {
    fn publish(&self, whole_upto: u64) {
        let mut wm = self.watermark.lock().expect("watermark lock poisoned");
        wm.whole_upto = whole_upto;
        self.changed.notify_all();
    }

    /// A store over a log that consensus writes, with empty indexes: every committed entry
    /// arrives through [`Store::apply`] (raft applies the log again at start).
    pub fn over_log(reader: LogReader) -> Store {
        Store {
            #[cfg(test)]
            log: None,
            reader,
            index: RwLock::new(BinlogIndex::new()),
            watermark: Mutex::new(Watermark::default()),
            changed: Condvar::new(),
            compaction: Mutex::new(None),
        }
    }

    /// Indexes committed entries (in log order) and wakes readers. Entries of kinds the
    /// binlog index does not know (commands, empty entries) only move the watermark.
    pub fn apply(&self, entries: &[(u64, u8, &[u8])]) -> Result<(), StoreError> {
        let mut index = self.index.write().expect("index lock poisoned");
        for (i, kind, data) in entries {
            index
                .feed(*i, *kind, data)
                .map_err(|error| StoreError::Index { index: *i, error })?;
        }
        self.publish(index.whole_upto());
        Ok(())
    }

    /// When the indexed stream ends inside a transaction: the term of the log entry that
    /// transaction began in (its proposer's term).
    pub fn partial_tail_term(&self) -> Option<u64> {
        let index = self.index();
        if !index.has_partial_tail() {
            return None;
        }
        self.reader.term(index.whole_upto() + 1).ok()
    }

    /// Replaces the indexes with an empty one continued from `base` (see
    /// [`BinlogIndex::base_entries`]) at log index `index`: a node restored from a snapshot.
    pub fn restore_base(&self, index: u64, base: &[(u8, Vec<u8>)]) -> Result<(), StoreError> {
        let fresh = BinlogIndex::from_origin(index, base)
            .map_err(|error| StoreError::Index { index, error })?;
        self.replace_index(fresh);
        Ok(())
    }

    /// Rebuilds the indexes from `origin` (see [`BinlogIndex::origin`]) and the entries the
    /// log still holds after it, up to `upto`, whose term must be `term`: a node restarting
    /// from its own snapshot keeps the binlog its log still holds. Answers false, changing
    /// nothing, when the log does not hold all those entries (a snapshot from the leader:
    /// the log was reset past them).
    pub fn rebuild_from_log(
        &self,
        origin: &index::Origin,
        upto: u64,
        term: u64,
    ) -> Result<bool, StoreError> {
        let (at, base) = origin;
        let covered = self.reader.first_index() <= at + 1
            && self.reader.last_index() >= upto
            && *at <= upto
            && (upto == 0 || self.reader.term(upto).ok() == Some(term));
        if !covered {
            return Ok(false);
        }
        let mut fresh = BinlogIndex::from_origin(*at, base)
            .map_err(|error| StoreError::Index { index: *at, error })?;
        for i in at + 1..=upto {
            let e = self.reader.read(i)?;
            fresh
                .feed(e.index, e.kind, &e.data)
                .map_err(|error| StoreError::Index { index: i, error })?;
        }
        self.replace_index(fresh);
        if *at > 0 && self.reader.first_index() <= *at {
            // A purge whose compaction did not happen before the restart.
            self.want_compaction(*at);
        }
        Ok(true)
    }

    fn replace_index(&self, fresh: BinlogIndex) {
        let mut current = self.index.write().expect("index lock poisoned");
        *current = fresh;
        self.publish(current.whole_upto());
    }

    /// Applies a purge to the indexes (see [`BinlogIndex::purge_to`]) and records the log
    /// prefix it frees, for [`Store::take_compaction`]. Readers never see a dropped file
    /// again; a dump still reading one gets an error when it reads a compacted entry.
    pub fn purge_to(&self, name: &str) -> Option<index::Purged> {
        let purged = self
            .index
            .write()
            .expect("index lock poisoned")
            .purge_to(name)?;
        let mut wanted = self.compaction.lock().expect("compaction lock poisoned");
        *wanted = Some(wanted.map_or(purged.compact_to, |w| w.max(purged.compact_to)));
        Some(purged)
    }

    /// The log index up to which a purge freed the log, if a compaction is due (taken:
    /// the caller compacts, or gives it back with [`Store::want_compaction`] on failure).
    pub fn take_compaction(&self) -> Option<u64> {
        self.compaction
            .lock()
            .expect("compaction lock poisoned")
            .take()
    }

    /// Asks again for a compaction up to `index` (one that failed).
    pub fn want_compaction(&self, index: u64) {
        let mut wanted = self.compaction.lock().expect("compaction lock poisoned");
        *wanted = Some(wanted.map_or(index, |w| w.max(index)));
    }

    /// The indexes, for reading.
    pub fn index(&self) -> RwLockReadGuard<'_, BinlogIndex> {
        self.index.read().expect("index lock poisoned")
    }

    /// Reads one entry (its CRC is checked by the log).
    pub fn read(&self, index: u64) -> Result<Entry, StoreError> {
        Ok(self.reader.read(index)?)
    }

    /// Reads part of one entry's data into `buf` (see [`LogReader::read_data_range`]: the
    /// record's CRC is NOT checked, so the caller must verify what it uses).
    pub fn read_range(
        &self,
        index: u64,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<crate::storage::DataRange, StoreError> {
        Ok(self.reader.read_data_range(index, offset, buf)?)
    }

    /// Last entry index up to which every transaction is whole and durable.
    pub fn whole_upto(&self) -> u64 {
        self.watermark
            .lock()
            .expect("watermark lock poisoned")
            .whole_upto
    }

    /// Waits until the watermark passes `seen`, the store closes, or `timeout` passes.
    /// Returns the watermark, or None once the store is closed.
    pub fn wait_beyond(&self, seen: u64, timeout: Duration) -> Option<u64> {
        let wm = self.watermark.lock().expect("watermark lock poisoned");
        let (wm, _) = self
            .changed
            .wait_timeout_while(wm, timeout, |wm| !wm.closed && wm.whole_upto <= seen)
            .expect("watermark lock poisoned");
        (!wm.closed).then_some(wm.whole_upto)
    }

    /// Wakes every waiting reader and makes `wait_beyond` return None from now on.
    pub fn close(&self) {
        let mut wm = self.watermark.lock().expect("watermark lock poisoned");
        wm.closed = true;
        self.changed.notify_all();
    }

    /// Bytes of the log on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.reader.disk_bytes()
    }
}

/// Real MariaDB binlog files turned into what a master's dump sends, for the tests of the
/// store, the syncer's ingest and the binlog server.
#[cfg(test)]
pub(crate) mod testdata {
    use std::path::PathBuf;

    use super::index::BinlogIndex;
    use crate::binlog::event;
    use crate::binlog::file::BinlogFileReader;
    use crate::syncer::ingest::Ingest;

    pub const SERVER_ID: u32 = 1;

    fn path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/mariadb")
            .join(name)
    }

    /// The file's bytes, magic included.
    pub fn file_bytes(name: &str) -> Vec<u8> {
        std::fs::read(path(name)).expect("read test binlog")
    }

    /// The file's events with their positions.
    pub fn file_events(name: &str) -> Vec<(u64, Vec<u8>)> {
        let file = std::fs::File::open(path(name)).expect("open test binlog");
        let mut reader = BinlogFileReader::new(file);
        let mut out = Vec::new();
        while let Some(ev) = reader.next_event().expect("read test binlog event") {
            out.push(ev);
        }
        out
    }

    /// A dump of whole files in a row: per file an artificial ROTATE to its position 4, then
    /// its events as they are (the FDE at 4 first, the real ROTATE last).
    pub fn dump_stream(names: &[&str]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for name in names {
            out.push(event::build_rotate(name, 4, SERVER_ID, true, true));
            out.extend(file_events(name).into_iter().map(|(_, ev)| ev));
        }
        out
    }

    /// Feeds a whole stream to a fresh ingest; every event must be accepted.
    pub fn ingest(stream: &[Vec<u8>], entry_payload_max: usize) -> Vec<(u8, Vec<u8>)> {
        let mut ingest = Ingest::with_entry_limit(None, entry_payload_max);
        for ev in stream {
            ingest.on_event(ev).expect("ingest accepts the stream");
        }
        ingest.take_entries(true)
    }

    /// A synced log in `dir` holding `entries` as entries 1, 2, …, entry i + 1 of term
    /// `term_of(i)`; also the records written.
    pub fn log_of(
        dir: &std::path::Path,
        entries: &[(u8, Vec<u8>)],
        term_of: impl Fn(usize) -> u64,
    ) -> (crate::storage::Log, Vec<crate::storage::Entry>) {
        let (mut log, _) = crate::storage::Log::open(dir).expect("open a fresh log");
        let records: Vec<crate::storage::Entry> = entries
            .iter()
            .enumerate()
            .map(|(i, (kind, data))| crate::storage::Entry {
                index: i as u64 + 1,
                term: term_of(i),
                kind: *kind,
                data: data.clone().into(),
            })
            .collect();
        log.append(&records).expect("append");
        log.sync().expect("sync");
        (log, records)
    }

    /// An index fed `entries` as log entries 1, 2, …
    pub fn index_of(entries: &[(u8, Vec<u8>)]) -> BinlogIndex {
        let mut index = BinlogIndex::new();
        for (i, (kind, data)) in entries.iter().enumerate() {
            index
                .feed(i as u64 + 1, *kind, data)
                .expect("index accepts");
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::entry::{EventsHeader, KIND_EVENTS};
    use super::testdata::{dump_stream, ingest};
    use super::*;

    const NAMES: [&str; 3] = ["bin.000001", "bin.000002", "bin.000003"];

    /// Files (name, start, end, FileStart entry), resume point, GTID state.
    type Summary = (Vec<(String, u64, u64, u64)>, Option<(String, u64)>, String);

    fn summary(index: &BinlogIndex) -> Summary {
        (
            index
                .files()
                .iter()
                .map(|f| (f.name.clone(), f.start_pos, f.end_pos, f.file_start_entry))
                .collect(),
            index.resume_point(),
            index.maria_state().to_string(),
        )
    }

    /// Index of the first entry that ends inside a group.
    fn first_partial(entries: &[(u8, Vec<u8>)]) -> usize {
        entries
            .iter()
            .position(|(k, d)| {
                *k == KIND_EVENTS && EventsHeader::decode(d).unwrap().0.ends_inside_group()
            })
            .unwrap()
    }

    #[test]
    fn reopening_rebuilds_the_same_index() {
        let dir = tempfile::tempdir().unwrap();
        let entries = ingest(&dump_stream(&NAMES), 200);
        let n = entries.len() as u64;
        let before = {
            let (store, report) = Store::open(dir.path()).unwrap();
            assert_eq!(report.entries, 0);
            assert_eq!(store.whole_upto(), 0);
            assert_eq!(store.append(entries.clone()).unwrap(), n);
            assert_eq!(store.append(Vec::new()).unwrap(), n);
            assert_eq!(store.whole_upto(), n);
            assert!(store.disk_bytes() > 0);
            assert_eq!(store.read(1).unwrap().data, entries[0].1);
            let s = summary(&store.index());
            s
        };
        assert_eq!(
            before.1,
            Some(("bin.000003".to_string(), 430)),
            "resume at the end of the last file"
        );
        assert_eq!(before.2, "0-1-18,2-1-2");
        let (store, report) = Store::open(dir.path()).unwrap();
        assert_eq!(report.entries, n);
        assert_eq!(summary(&store.index()), before);
        assert_eq!(store.whole_upto(), n);
    }

    /// The term a half-stored transaction began in (what a new leader compares with its
    /// own before it abandons the transaction), and none once the transaction is whole.
    #[test]
    fn a_partial_tail_knows_its_term() {
        let entries = ingest(&dump_stream(&NAMES), 60);
        let partial = first_partial(&entries);
        let dir = tempfile::tempdir().unwrap();
        let (log, records) =
            testdata::log_of(dir.path(), &entries, |i| if i <= partial { 3 } else { 4 });
        let store = Store::over_log(log.reader());
        let batch: Vec<(u64, u8, &[u8])> = records
            .iter()
            .map(|e| (e.index, e.kind, &e.data[..]))
            .collect();
        store.apply(&batch[..=partial]).unwrap();
        assert_eq!(store.partial_tail_term(), Some(3));
        store.apply(&batch[partial + 1..]).unwrap();
        assert_eq!(store.partial_tail_term(), None);
    }

    #[test]
    fn a_trailing_partial_group_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let entries = ingest(&dump_stream(&NAMES), 60);
        let partial = first_partial(&entries);
        let (store, _) = Store::open(dir.path()).unwrap();
        store.append(entries[..=partial].to_vec()).unwrap();
        assert_eq!(store.index().last_index(), partial as u64 + 1);
        // Readers never see the partial chunk; the rest of its transaction completes it.
        let whole = store.whole_upto();
        assert!(whole < partial as u64 + 1);
        assert!(store.read(whole + 1).is_ok(), "stored, not yet served");
        store.append(entries[partial + 1..].to_vec()).unwrap();
        assert_eq!(store.whole_upto(), entries.len() as u64);
    }

    #[test]
    fn purge_asks_for_compaction_and_the_log_rebuilds_the_purged_index() {
        let dir = tempfile::tempdir().unwrap();
        let entries = ingest(&dump_stream(&NAMES), 200);
        let (store, _) = Store::open(dir.path()).unwrap();
        let last = store.append(entries.clone()).unwrap();
        assert_eq!(store.take_compaction(), None);
        assert!(store.purge_to("bin.000001").is_none());
        let purged = store.purge_to("bin.000002").unwrap();
        assert_eq!(store.take_compaction(), Some(purged.compact_to));
        assert_eq!(store.take_compaction(), None);
        store.want_compaction(3);
        store.want_compaction(2);
        assert_eq!(store.take_compaction(), Some(3));
        let after_purge = summary(&store.index());
        assert_eq!(after_purge.0[0].0, "bin.000002");
        assert_eq!(after_purge.0.len(), 2);
        assert_eq!(store.index().purged_gtids().to_string(), "0-1-15,2-1-2");

        // A restart from a snapshot at `last`: the origin and the log give the same index.
        let origin = store.index().origin().clone();
        store.restore_base(last, &[]).unwrap();
        assert!(store.index().files().is_empty());
        assert!(store.rebuild_from_log(&origin, last, 0).unwrap());
        assert_eq!(summary(&store.index()), after_purge);
        assert_eq!(store.whole_upto(), last);
        // Not when the log lacks entries up to the snapshot, or their term differs.
        assert!(!store.rebuild_from_log(&origin, last + 1, 0).unwrap());
        assert!(!store.rebuild_from_log(&origin, last, 7).unwrap());
        assert_eq!(summary(&store.index()), after_purge);
        // A snapshot base from the leader instead: the store begins at its end.
        let base = store.index().base_entries();
        store.restore_base(last, &base).unwrap();
        let restored = summary(&store.index());
        assert_eq!(restored.0.len(), 1);
        assert_eq!(restored.1, after_purge.1);
        assert_eq!(restored.2, after_purge.2);
        assert_eq!(store.index().origin(), &(last, base));
    }

    #[test]
    fn wait_beyond_wakes_on_append_and_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let entries = ingest(&dump_stream(&["bin.000001"]), 300);
        let (store, _) = Store::open(dir.path()).unwrap();
        let store = Arc::new(store);
        store.append(entries[..2].to_vec()).unwrap();
        assert_eq!(store.wait_beyond(0, Duration::ZERO), Some(2));
        assert_eq!(store.wait_beyond(2, Duration::ZERO), Some(2));
        let writer = {
            let store = store.clone();
            let rest = entries[2..].to_vec();
            std::thread::spawn(move || store.append(rest).unwrap())
        };
        let got = store.wait_beyond(2, Duration::from_secs(60));
        let last = writer.join().unwrap();
        assert_eq!(last, entries.len() as u64);
        assert!(matches!(got, Some(w) if w > 2 && w <= last), "{got:?}");

        let waiter = {
            let store = store.clone();
            std::thread::spawn(move || store.wait_beyond(last, Duration::from_secs(60)))
        };
        store.close();
        assert_eq!(waiter.join().unwrap(), None);
        assert_eq!(store.wait_beyond(0, Duration::from_secs(60)), None);
    }
}
