//! A store that writes its own log, for unit tests: the daemon's store only applies what
//! consensus wrote ([`Store::over_log`] and [`Store::apply`]); tests of the readers (dumps,
//! export, import checks, logins) build their stores with these instead of a Raft node.

use std::path::Path;
use std::sync::{Condvar, Mutex, RwLock};

use super::index::BinlogIndex;
use super::{Store, StoreError, Watermark};
use crate::storage::{Entry, Log, LogReader};

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
                log: Some(Mutex::new(log)),
                reader,
                index: RwLock::new(index),
                watermark: Mutex::new(Watermark {
                    whole_upto,
                    closed: false,
                }),
                changed: Condvar::new(),
                compaction: Mutex::new(None),
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
        let mut log = self.writer();
        self.index()
            .check_batch(&entries)
            .map_err(|error| StoreError::Index {
                index: log.last_index() + 1,
                error,
            })?;
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
        {
            let mut index = self.index.write().expect("index lock poisoned");
            for e in &entries {
                index
                    .feed(e.index, e.kind, &e.data)
                    .map_err(|error| StoreError::Index {
                        index: e.index,
                        error,
                    })?;
            }
            // Published while the index is still locked, so a reader that resolved a start
            // in the new entries also sees the watermark that lets it read them.
            self.publish(index.whole_upto());
        }
        drop(log);
        Ok(first + entries.len() as u64 - 1)
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Log> {
        let log = self.log.as_ref();
        log.expect("a store from Store::open")
            .lock()
            .expect("log lock poisoned")
    }

    /// Drops entries after the last whole transaction (chunks of a transaction whose
    /// connection broke): nobody was served them, and the syncer fetches it again whole.
    pub fn discard_partial_tail(&self) -> Result<(), StoreError> {
        let mut log = self.writer();
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
}

fn build_index(reader: &LogReader) -> Result<BinlogIndex, StoreError> {
    build_index_upto(reader, reader.last_index())
}

fn build_index_upto(reader: &LogReader, last: u64) -> Result<BinlogIndex, StoreError> {
    let mut index = BinlogIndex::new();
    let first = reader.first_index();
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
