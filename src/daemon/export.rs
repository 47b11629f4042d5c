//! Export of the stored binlog as native binlog files: on a running node for the admin API
//! (`GET /binlog/files`, `GET /binlog/files/NAME`, streamed), and offline for `ferrobus
//! export --data-dir DIR --to OUTDIR`, which opens a stopped node's data directory, indexes
//! its log as the node would at its next start, and writes the files (see
//! `store::export` for the bytes and the FORMAT_DESCRIPTION in-use flag rule).
//!
//! Offline export takes the data directory's lock, so it refuses to run beside a node on
//! the same directory; opening recovers the log exactly as the node's next start would
//! (a torn tail left by a crash is cut). It never appends to the log.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::{ApiError, FileStream};
use crate::consensus::node::{restore_stored_snapshot, Applied, StateMachine};
use crate::consensus::storage::{RaftStorage, LOG_DIR, RAFT_DIR};
use crate::limits::BATCH_ENTRIES_MAX;
use crate::store::export::{
    choose, list_files, plan_file, prepare_dir, write_file, ExportError, FileExport,
};
use crate::store::Store;

use super::machine::{ClusterShared, NodeMachine};

/// The stored files, for `GET /binlog/files`.
pub use crate::store::export::list_files as file_infos;

/// One stored file as native bytes, for `GET /binlog/files/NAME`.
pub fn file_stream(store: &Arc<Store>, name: &str) -> Result<FileStream, ApiError> {
    let plan = plan_file(store, name).map_err(|e| match e {
        ExportError::NoSuchFile { .. } => ApiError::not_found(e.to_string()),
        ExportError::NotFromStart { .. } => ApiError::conflict(e.to_string()),
        _ => ApiError::internal(e.to_string()),
    })?;
    let export = FileExport::new(store.clone(), plan);
    Ok(FileStream {
        bytes: export.len_bytes(),
        reader: Box::new(export),
    })
}

/// Why an offline export failed.
#[derive(Debug)]
pub enum OfflineError {
    /// No ferrobus data in the directory.
    NoData {
        path: PathBuf,
    },
    Open(super::DaemonError),
    Consensus(crate::consensus::ConsensusError),
    /// A file asked for by name cannot be exported.
    Export(ExportError),
}

impl fmt::Display for OfflineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OfflineError::NoData { path } => {
                write!(
                    f,
                    "{} holds no ferrobus data (no log/ and raft/)",
                    path.display()
                )
            }
            OfflineError::Open(super::DaemonError::Locked { path }) => write!(
                f,
                "a ferrobus node is running on {}; stop it first, or export from it with \
                 `ferrobus ctl export`",
                path.display()
            ),
            OfflineError::Open(e) => write!(f, "{e}"),
            OfflineError::Consensus(e) => write!(f, "cannot open the log: {e}"),
            OfflineError::Export(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OfflineError {}

/// What an offline export did, file by file.
#[derive(Debug, Default)]
pub struct OfflineReport {
    /// (name, bytes) of every file written.
    pub written: Vec<(String, u64)>,
    /// Files skipped, and why (stored only from a position after 4).
    pub skipped: Vec<(String, String)>,
}

/// Opens the data directory of a stopped node and indexes its log: the store the node
/// would serve after a restart.
pub fn open_offline(data_dir: &Path) -> Result<(fs::File, Arc<Store>), OfflineError> {
    if !data_dir.join(LOG_DIR).is_dir() || !data_dir.join(RAFT_DIR).is_dir() {
        return Err(OfflineError::NoData {
            path: data_dir.to_path_buf(),
        });
    }
    let lock = super::lock_data_dir(data_dir).map_err(OfflineError::Open)?;
    let (storage, recovery) = RaftStorage::open(data_dir).map_err(OfflineError::Consensus)?;
    let store = Arc::new(Store::over_log(storage.reader()));
    let mut machine = NodeMachine::new(store.clone(), Arc::new(ClusterShared::new()));
    // As the raft node does at start: the stored snapshot first, then committed entries.
    let applied = restore_stored_snapshot(&storage, &mut machine);
    let reader = storage.reader();
    // The commit index on disk lags (raft records it lazily): on a node alone every entry
    // of its log is committed; a cluster member's log may end with entries the cluster
    // never committed, which export includes with a warning.
    let commit = reader.last_index();
    let cs = &recovery.conf_state;
    let own = super::recorded_raft_id(data_dir);
    let alone =
        cs.learners.is_empty() && cs.voters.len() == 1 && own.is_none_or(|id| cs.voters[0] == id);
    if !alone && commit > recovery.hard_state.commit {
        log::warn!(
            "log entries {}..={commit} are past the last commit index this member recorded; \
             they are exported too, though the cluster may not have committed them (export \
             from a running cluster with `ferrobus ctl export` to be sure)",
            recovery.hard_state.commit + 1
        );
    }
    let mut next = (applied + 1).max(reader.first_index());
    while next <= commit {
        // Applied in groups of the size the syncer proposes.
        let last = commit.min(next + BATCH_ENTRIES_MAX as u64 - 1);
        let mut batch = Vec::new();
        for index in next..=last {
            let e = reader
                .read(index)
                .map_err(|e| OfflineError::Export(ExportError::Store(e.into())))?;
            batch.push(Applied {
                index: e.index,
                term: e.term,
                kind: e.kind,
                data: e.data,
            });
        }
        machine.apply(batch);
        next = last + 1;
    }
    Ok((lock, store))
}

/// `ferrobus export`: writes every stored file (or only `only`) of the stopped node's data
/// directory to `to` (created if missing). Files stored only from a position after 4 are
/// skipped (reported); asked for by name, that is an error. Existing files are refused
/// before anything is written unless `force`.
pub fn export_offline(
    data_dir: &Path,
    to: &Path,
    only: Option<&str>,
    force: bool,
) -> Result<OfflineReport, OfflineError> {
    let (_lock, store) = open_offline(data_dir)?;
    let (chosen, skipped) = choose(&list_files(&store), only).map_err(OfflineError::Export)?;
    prepare_dir(to, &chosen, force).map_err(OfflineError::Export)?;
    let mut report = OfflineReport {
        written: Vec::new(),
        skipped,
    };
    for file in chosen {
        let bytes = write_file(&store, &file.name, to, force).map_err(OfflineError::Export)?;
        report.written.push((file.name, bytes));
    }
    Ok(report)
}
