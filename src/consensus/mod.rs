//! Consensus: raft-rs (`raft` 0.7) over ferrobus's own durable log.
//!
//! - `storage`: [`storage::RaftStorage`], the `raft::Storage` over `crate::storage::Log` plus
//!   the durable HardState, ConfState and snapshot files in `DATA_DIR/raft/`.
//! - `driver`: [`driver::Driver`], the Ready-loop logic of the one raft thread (tick, propose,
//!   step, persist in the documented order), without threads or sockets, so it can be tested
//!   in process.
//! - `entry_cache`: [`entry_cache::EntryCache`], the log's unapplied tail in memory, which
//!   `storage` serves raft-rs's reads from.
//! - `sync_thread`: [`sync_thread::SyncThread`], the thread that runs the log's fdatasyncs
//!   for the raft thread (asynchronous persistence, see `driver`).
//! - `inbound`: [`inbound::InboundSet`], the raft thread's reading of its peers' connections
//!   (non-blocking, in `poll` with the thread's [`inbound::Waker`]).
//! - `raft_log`: raft-rs's slog lines through ferrobus's `log`, with their key-values.
//! - [`ConsensusError`]: the typed error of this module.
//!
//! This module must not open sockets or start threads (the transport and the node thread live
//! beside it), and must not interpret the data of normal entries.

pub mod driver;
pub mod entry_cache;
pub mod inbound;
pub mod node;
pub mod raft_log;
pub mod state;
pub mod storage;
pub mod sync_thread;
pub mod transport;
pub mod wire;

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::storage::StorageError;

/// Everything that can go wrong in consensus storage and the raft driver.
#[derive(Debug)]
pub enum ConsensusError {
    /// The entry log failed (see `StorageError`; `SyncFailed` in it is fatal).
    Log(StorageError),
    /// An operating-system call on a raft state file failed (not an fsync).
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// fsync of a raft state file or its directory failed: durability is unknown and the
    /// process must stop.
    SyncFailed { path: PathBuf, source: io::Error },
    /// A raft state or snapshot file is not what ferrobus wrote; ferrobus refuses to start
    /// on it rather than guess at votes or membership.
    CorruptFile { path: PathBuf, reason: String },
    /// The log holds entries but the raft state file is missing: the data directory is not
    /// one a raft node wrote.
    LogWithoutState { path: PathBuf },
    /// `initialize` on storage that already has state or entries.
    AlreadyInitialized,
    /// A raft entry that cannot be stored as a log record (context not a kind byte, or
    /// data too large), or a record that is not a raft entry.
    Unrepresentable { index: u64, reason: String },
    /// A write that would break the log's shape (a gap, or overwriting compacted entries),
    /// or a compaction/snapshot request outside what the log holds.
    OutOfOrder { reason: String },
    /// The state machine claims to have applied entries past the durable commit index.
    AppliedAhead { applied: u64, commit: u64 },
    /// raft-rs refused (proposal dropped, bad config, bad conf change, ...).
    Raft(raft::Error),
    /// A protobuf message could not be encoded or decoded.
    Codec(String),
    /// The leader was asked to remove or demote itself, which raft-rs cannot do safely (a
    /// leader outside its own configuration aborts when it persists): it hands leadership
    /// to node `to` instead, and the change is for the new leader to make.
    HandingOver { to: u64 },
}

impl ConsensusError {
    /// Whether the process must stop: an fsync failed, so the kernel may have dropped
    /// written data and nothing on disk can be trusted to match memory.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ConsensusError::SyncFailed { .. }
                | ConsensusError::Log(StorageError::SyncFailed { .. })
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        ConsensusError::Io {
            path: path.into(),
            op,
            source,
        }
    }

    pub(crate) fn sync(path: impl Into<PathBuf>, source: io::Error) -> Self {
        ConsensusError::SyncFailed {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ConsensusError::CorruptFile {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn out_of_order(reason: impl Into<String>) -> Self {
        ConsensusError::OutOfOrder {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConsensusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsensusError::Log(e) => write!(f, "raft log: {e}"),
            ConsensusError::Io { path, op, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            ConsensusError::SyncFailed { path, source } => {
                write!(f, "fsync {} failed: {source}", path.display())
            }
            ConsensusError::CorruptFile { path, reason } => write!(
                f,
                "raft state file {} is corrupt ({reason}); refusing to start on it",
                path.display()
            ),
            ConsensusError::LogWithoutState { path } => write!(
                f,
                "the log holds entries but the raft state file {} is missing",
                path.display()
            ),
            ConsensusError::AlreadyInitialized => {
                write!(f, "raft storage is already initialized")
            }
            ConsensusError::Unrepresentable { index, reason } => {
                write!(f, "raft entry {index} cannot be stored: {reason}")
            }
            ConsensusError::OutOfOrder { reason } => write!(f, "raft log: {reason}"),
            ConsensusError::AppliedAhead { applied, commit } => write!(
                f,
                "state machine applied index {applied} is past the durable commit index {commit}"
            ),
            ConsensusError::Raft(e) => write!(f, "raft: {e}"),
            ConsensusError::Codec(e) => write!(f, "protobuf: {e}"),
            ConsensusError::HandingOver { to } => write!(
                f,
                "the leader cannot remove itself; it is handing leadership to node {to}, \
                 which makes the change when asked again"
            ),
        }
    }
}

impl std::error::Error for ConsensusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConsensusError::Log(e) => Some(e),
            ConsensusError::Io { source, .. } | ConsensusError::SyncFailed { source, .. } => {
                Some(source)
            }
            ConsensusError::Raft(e) => Some(e),
            _ => None,
        }
    }
}

impl From<StorageError> for ConsensusError {
    fn from(e: StorageError) -> Self {
        ConsensusError::Log(e)
    }
}

impl From<raft::Error> for ConsensusError {
    fn from(e: raft::Error) -> Self {
        ConsensusError::Raft(e)
    }
}

impl From<protobuf::ProtobufError> for ConsensusError {
    fn from(e: protobuf::ProtobufError) -> Self {
        ConsensusError::Codec(e.to_string())
    }
}
