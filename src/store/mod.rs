//! The binlog store: the durable log (`storage`) plus the binlog indexes over it, with a
//! watermark that wakes waiting readers the moment new whole transactions are durable.
//!
//! One writer (the syncer) appends; many readers (dump threads) read entries and wait on the
//! watermark. Readers never see an entry past the watermark, so they never see part of a
//! transaction that is not stored whole. This module must not speak any network protocol.

pub mod cursor;
pub mod entry;
pub mod index;

use std::fmt;
use std::path::Path;
use std::sync::{Condvar, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::storage::{Entry, Log, LogReader, StorageError};
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
    log: Mutex<Log>,
    reader: LogReader,
    index: RwLock<BinlogIndex>,
    watermark: Mutex<Watermark>,
    changed: Condvar,
}

/// What opening the store found.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub entries: u64,
    pub torn_bytes_truncated: u64,
    pub partial_entries_dropped: u64,
}

impl Store {
    /// Opens (or creates) the store in `dir`, recovers the log, rebuilds the indexes, and
    /// drops a trailing partial transaction (entries after the last whole one), which no
    /// reader has ever been served.
    pub fn open(dir: &Path) -> Result<(Store, OpenReport), StoreError> {
        let (mut log, recovery) = Log::open(dir)?;
        let reader = log.reader();
        let mut report = OpenReport {
            torn_bytes_truncated: recovery.truncated_bytes,
            ..OpenReport::default()
        };
        let mut index = build_index(&reader)?;
        let last = reader.last_index();
        if index.whole_upto() < last {
            let from = index.whole_upto() + 1;
            report.partial_entries_dropped = last - index.whole_upto();
            log::warn!(
                "dropping {} log entries from index {from}: they end inside a transaction",
                report.partial_entries_dropped
            );
            log.truncate_suffix(from)?;
            index = build_index(&reader)?;
        }
        report.entries = reader
            .last_index()
            .saturating_sub(reader.first_index().saturating_sub(1));
        let whole_upto = index.whole_upto();
        Ok((
            Store {
                log: Mutex::new(log),
                reader,
                index: RwLock::new(index),
                watermark: Mutex::new(Watermark {
                    whole_upto,
                    closed: false,
                }),
                changed: Condvar::new(),
            },
            report,
        ))
    }

    /// Appends entries (kind, payload), makes them durable with one fsync, indexes them and
    /// wakes readers. Returns the index of the last entry. A failed fsync is returned as
    /// `StorageError::SyncFailed`; the caller must stop the process.
    pub fn append(&self, entries: Vec<(u8, Vec<u8>)>) -> Result<u64, StoreError> {
        if entries.is_empty() {
            return Ok(self.reader.last_index());
        }
        let mut log = self.log.lock().expect("log lock poisoned");
        let first = log.last_index() + 1;
        let entries: Vec<Entry> = entries
            .into_iter()
            .enumerate()
            .map(|(i, (kind, data))| Entry {
                index: first + i as u64,
                term: 0,
                kind,
                data,
            })
            .collect();
        log.append(&entries)?;
        log.sync()?;
        let whole_upto = {
            let mut index = self.index.write().expect("index lock poisoned");
            for e in &entries {
                index
                    .feed(e.index, e.kind, &e.data)
                    .map_err(|error| StoreError::Index {
                        index: e.index,
                        error,
                    })?;
            }
            index.whole_upto()
        };
        drop(log);
        self.publish(whole_upto);
        Ok(first + entries.len() as u64 - 1)
    }

    fn publish(&self, whole_upto: u64) {
        let mut wm = self.watermark.lock().expect("watermark lock poisoned");
        wm.whole_upto = whole_upto;
        self.changed.notify_all();
    }

    /// Drops entries after the last whole transaction (chunks of a transaction whose
    /// connection broke): nobody was served them, and the syncer fetches it again whole.
    pub fn discard_partial_tail(&self) -> Result<(), StoreError> {
        let mut log = self.log.lock().expect("log lock poisoned");
        let whole_upto = self.index().whole_upto();
        let last = log.last_index();
        if whole_upto >= last {
            return Ok(());
        }
        log::warn!(
            "dropping {} log entries from index {}: they end inside a transaction",
            last - whole_upto,
            whole_upto + 1
        );
        log.truncate_suffix(whole_upto + 1)?;
        let rebuilt = build_index(&self.reader)?;
        *self.index.write().expect("index lock poisoned") = rebuilt;
        Ok(())
    }

    /// The indexes, for reading.
    pub fn index(&self) -> RwLockReadGuard<'_, BinlogIndex> {
        self.index.read().expect("index lock poisoned")
    }

    /// Reads one entry (its CRC is checked by the log).
    pub fn read(&self, index: u64) -> Result<Entry, StoreError> {
        Ok(self.reader.read(index)?)
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
        self.log.lock().expect("log lock poisoned").disk_bytes()
    }
}

fn build_index(reader: &LogReader) -> Result<BinlogIndex, StoreError> {
    let mut index = BinlogIndex::new();
    let first = reader.first_index();
    let last = reader.last_index();
    if last >= first && last > 0 {
        for i in first..=last {
            let e = reader.read(i)?;
            index
                .feed(e.index, e.kind, &e.data)
                .map_err(|error| StoreError::Index { index: i, error })?;
        }
    }
    Ok(index)
}
