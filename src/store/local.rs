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
}

impl Store {
    /// Opens (or creates) the store in `dir`, recovers the log and rebuilds the indexes.
    pub fn open(dir: &Path) -> Result<(Store, OpenReport), StoreError> {
        let (log, _) = Log::open(dir)?;
        let reader = log.reader();
        let index = build_index(&reader)?;
        let report = OpenReport {
            entries: reader
                .last_index()
                .saturating_sub(reader.first_index().saturating_sub(1)),
        };
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
                data: data.into(),
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
}

fn build_index(reader: &LogReader) -> Result<BinlogIndex, StoreError> {
    let mut index = BinlogIndex::new();
    let (first, last) = (reader.first_index(), reader.last_index());
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
