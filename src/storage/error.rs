//! The typed errors of the storage module. Each carries what a caller needs to act on it
//! (path and operation for I/O, position for corruption); callers add no string context.
//!
//! This module only describes errors; it must not decide what to do about them.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in storage.
#[derive(Debug)]
pub enum StorageError {
    /// An operating-system call failed (not an fsync: see `SyncFailed`).
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// fsync/fdatasync failed. The data's durability is unknown: the process must stop.
    SyncFailed { path: PathBuf, source: io::Error },
    /// Bytes on disk are not what the log wrote.
    Corrupt {
        segment: PathBuf,
        offset: u64,
        reason: String,
    },
    /// An appended entry does not follow the log (`expected` is the index it must have).
    NotContiguous { expected: u64, got: u64 },
    /// The entry was removed by `drop_prefix` or `reset_to`.
    Compacted { index: u64 },
    /// The entry is past the end of the (visible) log.
    OutOfRange { index: u64, last_index: u64 },
    /// An entry's data exceeds `ENTRY_PAYLOAD_MAX`.
    EntryTooLarge {
        index: u64,
        bytes: usize,
        max: usize,
    },
    /// A write operation failed earlier; the writer refuses further changes until the log
    /// is reopened (which recovers a consistent state from disk).
    Poisoned,
    /// A sync, truncation or reset was asked for while a [`crate::storage::SyncJob`] was
    /// still running: the writer's caller must finish that job first.
    SyncInFlight,
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            op,
            source,
        }
    }

    pub(crate) fn corrupt(segment: impl Into<PathBuf>, offset: u64, reason: String) -> Self {
        StorageError::Corrupt {
            segment: segment.into(),
            offset,
            reason,
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { path, op, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            StorageError::SyncFailed { path, source } => {
                write!(f, "fsync {} failed: {source}", path.display())
            }
            StorageError::Corrupt {
                segment,
                offset,
                reason,
            } => write!(
                f,
                "corrupt log segment {} at offset {offset}: {reason}",
                segment.display()
            ),
            StorageError::NotContiguous { expected, got } => write!(
                f,
                "entry index {got} does not follow the log (expected {expected})"
            ),
            StorageError::Compacted { index } => {
                write!(f, "entry {index} was compacted away")
            }
            StorageError::OutOfRange { index, last_index } => write!(
                f,
                "entry {index} is past the end of the log (last index {last_index})"
            ),
            StorageError::EntryTooLarge { index, bytes, max } => write!(
                f,
                "entry {index} has {bytes} bytes of data, more than the maximum {max}"
            ),
            StorageError::Poisoned => write!(
                f,
                "log writer failed earlier and refuses writes until reopened"
            ),
            StorageError::SyncInFlight => write!(
                f,
                "log writer asked to sync or cut the log while a sync job is still running"
            ),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } | StorageError::SyncFailed { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}
