//! Import of native binlog files (`POST /binlog/import?file=NAME`, on the leader): the file
//! is spooled to the data directory, checked whole, and only then turned into log entries by
//! the syncer's own ingest (an artificial ROTATE to the file at position 4, then its events)
//! and proposed through Raft like synced events, so imported files keep their names and
//! positions and are served like the master's.
//!
//! Checked before anything is proposed (a refused file leaves the store unchanged): the
//! magic; every event's size, and its CRC32 (the FORMAT_DESCRIPTION's in-use flag masked);
//! truncation (the last event incomplete, or the file ending inside a transaction); a
//! FORMAT_DESCRIPTION with CRC32 checksums at position 4; every event where the previous
//! one ended; the same flavour (MySQL or MariaDB) as the stored files; and that the file
//! continues the stored chain (see [`check_chain`]; for MySQL data also its PREVIOUS_GTIDS,
//! which must equal the stored gtid_executed, for MariaDB data its GTID_LIST, which must
//! agree with the stored gtid_binlog_pos, see `check_gtid_list`). The last stored file
//! may be imported again when it ends with neither a ROTATE nor a STOP (an import that
//! stopped part of the way, the leader deposed): if the upload repeats the stored bytes
//! exactly ([`check_stored_prefix`]), the syncer's ingest drops them as re-sent, as on a
//! MySQL GTID reconnect, and stores the rest. Import and the syncer exclude each
//! other: an import is refused while a syncer is configured, and a syncer start while an
//! import runs.
//!
//! The FORMAT_DESCRIPTION's LOG_EVENT_BINLOG_IN_USE_F is stored clear, as a master sends it
//! (a master's open file has it set on disk): the store then holds exactly what syncing the
//! file from its master would have stored, and export sets the flag again where the
//! master's copy had it (see `store::export`).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::api::model::ImportSummary;
use crate::api::ApiError;
use crate::binlog::event::{
    self, ChecksumAlg, FormatDescription, FLAGS_OFFSET, LOG_EVENT_BINLOG_IN_USE_F, TYPE_CODE_OFFSET,
};
use crate::binlog::file::{
    numbered_name, read_up_to, BinlogFileReader, FileError, FIRST_EVENT_POSITION,
};
use crate::binlog::gtid::{MariaGtidList, MysqlGtidSet};
use crate::binlog::Flavour;
use crate::limits::{BATCH_BYTES_MAX, IMPORT_BODY_STALL_MS, IMPORT_FILE_BYTES_MAX};
use crate::store::{export, Store};
use crate::syncer::ingest::{Ingest, IngestError};
use crate::syncer::Sink;

use super::leader::RaftSink;
use super::Node;

/// Folder of the data directory where an import's body is spooled.
pub const IMPORT_SPOOL_DIR: &str = "import";

/// Empties the spool folder at node start: an import that a crash or a kill interrupted
/// leaves its body there (up to IMPORT_FILE_BYTES_MAX), and nothing else would remove it.
/// Logs what it removes; returns the names removed. Must run before the admin API starts
/// (no import can be running then).
pub fn clear_spool(data_dir: &Path) -> Vec<String> {
    let dir = data_dir.join(IMPORT_SPOOL_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            log::warn!("cannot list the import spool {}: {e}", dir.display());
            return Vec::new();
        }
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let outcome = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match outcome {
            Ok(()) => {
                log::info!(
                    "removed {} ({bytes} bytes), left by an import that did not finish",
                    path.display()
                );
                removed.push(entry.file_name().to_string_lossy().into_owned());
            }
            Err(e) => log::warn!("cannot remove the import spool {}: {e}", path.display()),
        }
    }
    removed.sort();
    removed
}

/// Why a file is refused (or an accepted one could not be stored).
#[derive(Debug)]
pub enum ImportError {
    /// Not a binlog file at all.
    NotBinlog {
        file: String,
        detail: String,
    },
    /// The file ends inside an event, or inside a transaction.
    Truncated {
        file: String,
        detail: String,
    },
    /// An event fails its CRC32 or declares an impossible size.
    Corrupt {
        file: String,
        detail: String,
    },
    /// The file has no FORMAT_DESCRIPTION at 4, or it announces no CRC32.
    Unsupported {
        file: String,
        detail: String,
    },
    /// Events do not follow one another (log_pos) as the master writes them.
    Stream {
        file: String,
        error: IngestError,
    },
    /// The file does not continue the stored chain.
    Chain {
        file: String,
        detail: String,
    },
    /// A file of this name is stored already.
    AlreadyStored {
        file: String,
    },
    TooLarge {
        file: String,
    },
    /// The upload ended before its announced length, or the node stopped during it:
    /// nothing of it is imported.
    Cut {
        file: String,
        detail: String,
        stopping: bool,
    },
    /// The upload paused longer than IMPORT_BODY_STALL_MS.
    Stalled {
        file: String,
        received_bytes: u64,
    },
    Io {
        file: String,
        error: io::Error,
    },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::NotBinlog { file, detail } => {
                write!(f, "{file} is not a binlog file: {detail}")
            }
            ImportError::Truncated { file, detail } => {
                write!(f, "{file} is truncated: {detail}")
            }
            ImportError::Corrupt { file, detail } => write!(f, "{file} is damaged: {detail}"),
            ImportError::Unsupported { file, detail } => {
                write!(f, "{file} cannot be imported: {detail}")
            }
            ImportError::Stream { file, error } => {
                write!(f, "{file} is not a binlog as a master writes it: {error}")
            }
            ImportError::Chain { file, detail } => {
                write!(f, "{file} does not continue the stored binlog: {detail}")
            }
            ImportError::AlreadyStored { file } => write!(
                f,
                "{file} is stored already; import only the files that follow the last stored one"
            ),
            ImportError::TooLarge { file } => write!(
                f,
                "{file} is larger than {IMPORT_FILE_BYTES_MAX} bytes, the largest file import takes"
            ),
            ImportError::Stalled {
                file,
                received_bytes,
            } => write!(
                f,
                "the upload of {file} stalled after {received_bytes} bytes (nothing arrived for \
                 {IMPORT_BODY_STALL_MS} ms); nothing was imported, send the file again"
            ),
            ImportError::Io { file, error } => write!(f, "importing {file}: {error}"),
            ImportError::Cut { file, detail, .. } => {
                write!(
                    f,
                    "the upload of {file} was cut: {detail}; nothing was imported"
                )
            }
        }
    }
}

impl std::error::Error for ImportError {}

impl ImportError {
    fn http_status(&self) -> u16 {
        match self {
            ImportError::Chain { .. } | ImportError::AlreadyStored { .. } => 409,
            ImportError::TooLarge { .. } => 413,
            ImportError::Stalled { .. } => 408,
            ImportError::Cut { stopping: true, .. } => 503,
            ImportError::Cut {
                stopping: false, ..
            } => 400,
            ImportError::Io { .. } => 500,
            _ => 400,
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> ApiError {
        ApiError::new(e.http_status(), e.to_string())
    }
}

pub use crate::store::export::LastEvent;

/// What the store ends with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail {
    pub file: String,
    pub end_pos: u64,
    pub last_event: LastEvent,
    pub mariadb: bool,
}

/// What an import needs to know of the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreView {
    /// Names of the stored files.
    pub files: Vec<String>,
    pub tail: Option<Tail>,
    /// Where the stored stream ends (ingest continues from there).
    pub resume: Option<(String, u64)>,
    /// The stored binlog's gtid_executed when it holds MySQL data: the next file's
    /// PREVIOUS_GTIDS must equal it.
    pub mysql_executed: Option<MysqlGtidSet>,
    /// The stored binlog's gtid_binlog_pos when it holds MariaDB groups: the next file's
    /// GTID_LIST must agree with it (see `check_gtid_list`).
    pub maria_executed: Option<MariaGtidList>,
    /// The last stored file is stored from its start (position 4), not from where a
    /// syncer began inside it.
    pub last_file_whole: bool,
}

impl StoreView {
    /// Where the stored part of `name` ends, when an import of `name` may continue it: the
    /// last stored file, ending with neither a ROTATE nor a STOP (an import stopped part of
    /// the way, or its master had not closed it), and the store's stream ends there. The
    /// upload must then repeat the stored bytes exactly (see [`check_stored_prefix`]).
    pub fn resumes(&self, name: &str) -> Option<u64> {
        let tail = self.tail.as_ref()?;
        let continues = tail.file == name
            && self.last_file_whole
            && tail.last_event == LastEvent::Other
            && self.resume.as_ref() == Some(&(tail.file.clone(), tail.end_pos));
        continues.then_some(tail.end_pos)
    }
}

/// Reads what an import needs of the store.
pub fn store_view(store: &Store) -> Result<StoreView, ApiError> {
    let (files, last, resume, mysql_executed, maria_executed, last_file_whole) = {
        let index = store.index();
        let files: Vec<String> = index.files().iter().map(|f| f.name.clone()).collect();
        let last_meta = index.files().last();
        let last_file_whole = last_meta.is_none_or(|f| f.start_pos == FIRST_EVENT_POSITION);
        let last = last_meta.map(|f| (f.name.clone(), f.end_pos, f.fde.clone()));
        let mysql_executed =
            (index.flavour() == Some(Flavour::MySql)).then(|| index.mysql_executed().clone());
        let maria_executed = (index.flavour() == Some(Flavour::MariaDb)
            && !index.maria_state().is_empty())
        .then(|| index.maria_state().clone());
        (
            files,
            last,
            index.resume_point(),
            mysql_executed,
            maria_executed,
            last_file_whole,
        )
    };
    let tail = match last {
        None => None,
        Some((file, end_pos, fde)) => Some(Tail {
            last_event: export::last_event(store, &file).map_err(|e| {
                ApiError::internal(format!("cannot read the end of stored {file}: {e}"))
            })?,
            mariadb: FormatDescription::parse(&fde).is_ok_and(|f| f.is_mariadb()),
            file,
            end_pos,
        }),
    };
    Ok(StoreView {
        files,
        tail,
        resume,
        mysql_executed,
        maria_executed,
        last_file_whole,
    })
}

/// The file a master opens after `name` when it restarts: the same base with the number
/// after the last dot incremented, keeping its width (`mysql-bin.000009` → `.000010`).
pub fn successor(name: &str) -> Option<String> {
    let (base, digits, number) = numbered_name(name)?;
    let next = number.checked_add(1)?;
    Some(format!("{base}.{next:0width$}", width = digits.len()))
}

/// The name of the file that follows `tail` (the chain rule, shared with `ctl import`):
/// after a file that ends with a ROTATE (to position 4), the file it names; after one that
/// ends with a STOP (the master shut down), the next number of the same base. After a file
/// that ends with neither (its master crashed, or was still writing it): for MySQL data
/// the next number too, as the master opens it when it restarts (its PREVIOUS_GTIDS must
/// then prove that nothing is missing, see `ingest_file`); for MariaDB data nothing, as a
/// GTID_LIST holds the binlog state per (domain, server id), which the store does not keep
/// in that form, so continuity cannot be proven. The error says why no file can follow.
pub fn next_name(tail: &Tail) -> Result<String, String> {
    let numbered = |ends: &str| {
        successor(&tail.file).ok_or_else(|| {
            format!(
                "{} ends {ends} and its name has no number to tell which file follows it",
                tail.file
            )
        })
    };
    match &tail.last_event {
        LastEvent::Rotate {
            next_file,
            position,
        } if *position == FIRST_EVENT_POSITION => Ok(next_file.clone()),
        LastEvent::Rotate {
            next_file,
            position,
        } => Err(format!(
            "{} ends with a ROTATE to {next_file} at position {position}, not at the start of \
             a file",
            tail.file
        )),
        LastEvent::Stop => numbered("with a STOP event"),
        LastEvent::Other if !tail.mariadb => numbered("without a ROTATE or STOP event"),
        LastEvent::Other => Err(format!(
            "{} is MariaDB data that ends at position {} with neither a ROTATE nor a STOP \
             event (its master was still writing it, or crashed), so no file can be proven \
             to continue it",
            tail.file, tail.end_pos
        )),
    }
}

/// Whether `name` may be stored next: any file into an empty store, else only the one
/// [`next_name`] gives, or the last stored file itself when an import may continue it
/// ([`StoreView::resumes`]).
pub fn check_chain(name: &str, view: &StoreView) -> Result<(), ImportError> {
    if view.resumes(name).is_some() {
        return Ok(());
    }
    if view.files.iter().any(|f| f == name) {
        return Err(ImportError::AlreadyStored {
            file: name.to_string(),
        });
    }
    let Some(tail) = &view.tail else {
        return Ok(());
    };
    let chain = |detail: String| ImportError::Chain {
        file: name.to_string(),
        detail,
    };
    let next = next_name(tail).map_err(|e| chain(format!("the last stored file {e}")))?;
    if next != name {
        let ends = match tail.last_event {
            LastEvent::Rotate { .. } => "ends with a ROTATE to it".to_string(),
            LastEvent::Stop => "ends with a STOP event (its master shut down)".to_string(),
            LastEvent::Other => format!(
                "ends at position {} without a ROTATE or STOP event (its master crashed or \
                 was still writing it), and its master opens that file when it restarts",
                tail.end_pos
            ),
        };
        return Err(chain(format!(
            "only {next} can follow it: the last stored file {} {ends}",
            tail.file
        )));
    }
    Ok(())
}

/// Where [`ingest_file`] hands the entries it makes (kind, payload).
pub type Emit<'a> = dyn FnMut(Vec<(u8, Vec<u8>)>) -> Result<(), ImportError> + 'a;

/// What reading one file through ingest found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSummary {
    /// Events read (the stored part's included).
    pub events: u64,
    pub end_pos: u64,
    pub last_pos: u64,
    /// Where the stored part ended, when this read continued it.
    pub resumed_from: Option<u64>,
}

/// Reads the binlog file `name` from `input` through the syncer's ingest, continuing the
/// store `view` describes, and hands the entries it makes to `emit` (in batches of about
/// BATCH_BYTES_MAX). Every check of the module's doc is made; with an `emit` that drops
/// the entries, this is the dry run that validates a file.
pub fn ingest_file(
    name: &str,
    input: impl Read,
    view: &StoreView,
    emit: &mut Emit<'_>,
) -> Result<FileSummary, ImportError> {
    check_chain(name, view)?;
    let file = || name.to_string();
    let mut reader = BinlogFileReader::new(input);
    let mut ingest = Ingest::new(view.resume.clone());
    // Continuing the stored part of `name`: what ends by the stored end is dropped as
    // stored already (the caller has checked it is the same bytes), and the first event
    // after it must begin exactly there.
    let resumed_from = view.resumes(name);
    if resumed_from.is_some() {
        ingest.allow_resend();
    }
    let stream = |error| ImportError::Stream {
        file: file(),
        error,
    };
    ingest
        .on_event(&event::build_rotate(
            name,
            FIRST_EVENT_POSITION,
            0,
            true,
            true,
        ))
        .map_err(stream)?;
    let mut summary = FileSummary {
        events: 0,
        end_pos: FIRST_EVENT_POSITION,
        last_pos: FIRST_EVENT_POSITION,
        resumed_from,
    };
    let mut pending_bytes = 0;
    let mut seen_gtid_list = false;
    // An event the stored part holds was checked when it was stored (and the upload repeats
    // it byte for byte); one past the stored end is checked as in a new file, against a
    // store that holds nothing of this file beyond it.
    let held = |pos: u64, len: u64| resumed_from.is_some_and(|end| pos + len <= end);
    while let Some((pos, mut ev)) = reader.next_event().map_err(|e| file_error(name, e))? {
        let stored = held(pos, ev.len() as u64);
        if summary.events == 1 && !stored {
            check_previous_gtids(name, Some(&ev), view)?;
        }
        if !seen_gtid_list && !stored && ev.get(TYPE_CODE_OFFSET) == Some(&event::GTID_LIST_EVENT) {
            seen_gtid_list = true;
            check_gtid_list(name, &ev, view)?;
        }
        if summary.events == 0 {
            check_first_event(name, &ev, view)?;
            // Stored as the master sends it (see the module doc).
            if let Some(flags) = ev.get_mut(FLAGS_OFFSET) {
                *flags &= !(LOG_EVENT_BINLOG_IN_USE_F as u8);
            }
        }
        ingest.on_event(&ev).map_err(stream)?;
        summary.events += 1;
        summary.last_pos = pos;
        summary.end_pos = pos + ev.len() as u64;
        pending_bytes += ev.len();
        if pending_bytes >= BATCH_BYTES_MAX {
            pending_bytes = 0;
            let entries = ingest.take_entries(true);
            if !entries.is_empty() {
                emit(entries)?;
            }
        }
    }
    if summary.events == 0 {
        return Err(ImportError::Unsupported {
            file: file(),
            detail: "it holds no event after the magic".into(),
        });
    }
    if summary.events == 1 && !held(summary.last_pos, summary.end_pos - summary.last_pos) {
        check_previous_gtids(name, None, view)?;
    }
    if ingest.in_group() {
        return Err(ImportError::Truncated {
            file: file(),
            detail: format!(
                "it ends at position {} inside a transaction (no COMMIT or XID after its last \
                 events)",
                summary.end_pos
            ),
        });
    }
    let entries = ingest.take_entries(true);
    if !entries.is_empty() {
        emit(entries)?;
    }
    Ok(summary)
}

/// The first event must be a FORMAT_DESCRIPTION announcing CRC32, of the stored flavour.
fn check_first_event(name: &str, ev: &[u8], view: &StoreView) -> Result<(), ImportError> {
    let unsupported = |detail: String| ImportError::Unsupported {
        file: name.to_string(),
        detail,
    };
    if ev.get(TYPE_CODE_OFFSET) != Some(&event::FORMAT_DESCRIPTION_EVENT) {
        return Err(unsupported(format!(
            "the event at position 4 is a {}, not a FORMAT_DESCRIPTION",
            event::type_name(ev.get(TYPE_CODE_OFFSET).copied().unwrap_or(0))
        )));
    }
    let fde = FormatDescription::parse(ev).map_err(|e| ImportError::Corrupt {
        file: name.to_string(),
        detail: format!("format description event at 4: {e}"),
    })?;
    if fde.checksum_alg != ChecksumAlg::Crc32 {
        return Err(unsupported(
            "it was written without CRC32 checksums (binlog_checksum=NONE); ferrobus stores \
             only checksummed binlogs"
                .into(),
        ));
    }
    if let Some(tail) = &view.tail {
        if tail.mariadb != fde.is_mariadb() {
            let flavour = |mariadb: bool| {
                if mariadb {
                    crate::binlog::Flavour::MariaDb
                } else {
                    crate::binlog::Flavour::MySql
                }
            };
            return Err(ImportError::Chain {
                file: name.to_string(),
                detail: format!(
                    "it was written by {} but the stored binlog by {}",
                    flavour(fde.is_mariadb()),
                    flavour(tail.mariadb)
                ),
            });
        }
    }
    Ok(())
}

/// A MySQL file's PREVIOUS_GTIDS (its second event) names every transaction before it: it
/// continues the stored chain only when that is exactly the stored gtid_executed. This is
/// what tells a file that skips one (000011 then 000013) from the right next file. After a
/// MySQL file its master never closed, `check_chain` accepts the next number only on this
/// proof, so there a file without a PREVIOUS_GTIDS is refused. `second` is the file's
/// second event (None when it has only one).
fn check_previous_gtids(
    name: &str,
    second: Option<&[u8]>,
    view: &StoreView,
) -> Result<(), ImportError> {
    let previous_gtids =
        second.filter(|ev| ev.get(TYPE_CODE_OFFSET) == Some(&event::PREVIOUS_GTIDS_LOG_EVENT));
    let Some(ev) = previous_gtids else {
        return match &view.tail {
            Some(tail) if tail.last_event == LastEvent::Other && !tail.mariadb => {
                Err(ImportError::Chain {
                    file: name.to_string(),
                    detail: format!(
                        "the last stored file {} ends without a ROTATE or STOP event, so only \
                         a file whose PREVIOUS_GTIDS (its second event) equals the stored \
                         gtid_executed can follow it, and this file has none",
                        tail.file
                    ),
                })
            }
            _ => Ok(()),
        };
    };
    let Some(executed) = &view.mysql_executed else {
        return Ok(());
    };
    let previous =
        event::parse_previous_gtids(ev, event::CHECKSUM_LEN).map_err(|e| ImportError::Corrupt {
            file: name.to_string(),
            detail: format!("PREVIOUS_GTIDS event: {e}"),
        })?;
    if &previous != executed {
        return Err(ImportError::Chain {
            file: name.to_string(),
            detail: format!(
                "its PREVIOUS_GTIDS is '{}' but the stored binlog's gtid_executed is '{}': \
                 transactions are missing or repeated between them",
                previous.format_mysql(),
                executed.format_mysql()
            ),
        });
    }
    Ok(())
}

/// For MariaDB data after stored groups: the file's GTID_LIST (the master's binlog state
/// when it began the file, one GTID per domain and server) must agree with what is stored.
/// In every domain both know, the list's latest GTID must be the stored one; an empty list
/// (a master's first file, or one after RESET MASTER) cannot follow stored groups. A domain
/// only the store knows is let through: `FLUSH BINARY LOGS DELETE_DOMAIN_ID` drops one from
/// the master's state. This catches a file imported out of order or under the wrong name;
/// the chain of names (ROTATE, STOP) alone cannot.
fn check_gtid_list(name: &str, ev: &[u8], view: &StoreView) -> Result<(), ImportError> {
    let Some(stored) = &view.maria_executed else {
        return Ok(());
    };
    let list =
        event::GtidListEvent::parse(ev, event::CHECKSUM_LEN).map_err(|e| ImportError::Corrupt {
            file: name.to_string(),
            detail: format!("GTID_LIST event: {e}"),
        })?;
    // The master lists each domain's latest GTID last (after the other servers' in that
    // domain): that one is where its binlog stood, as gtid_binlog_pos says.
    let mut listed = MariaGtidList::new();
    for gtid in list.gtids {
        listed.update(gtid);
    }
    let disagrees = listed.is_empty()
        || stored
            .iter()
            .any(|g| listed.get(g.domain_id).is_some_and(|l| l != g));
    if disagrees {
        return Err(ImportError::Chain {
            file: name.to_string(),
            detail: format!(
                "its GTID_LIST says the binlog stood at '{listed}' when the file began, but the stored binlog ends at '{stored}': it is not the file that follows the stored ones (imported out of order, or under the wrong name)"
            ),
        });
    }
    Ok(())
}

/// When an import continues the stored part of `name` ([`StoreView::resumes`], at
/// `stored_end`): the upload must begin with exactly the stored bytes (the
/// FORMAT_DESCRIPTION's in-use flag aside: export sets it on an unclosed last file, a
/// closed copy has it clear) and go on past them. An upload that holds nothing more is
/// stored already.
pub fn check_stored_prefix(
    store: &Arc<Store>,
    name: &str,
    mut upload: impl Read,
    stored_end: u64,
) -> Result<(), ImportError> {
    let io_error = |error: io::Error| ImportError::Io {
        file: name.to_string(),
        error,
    };
    let plan = export::plan_file(store, name).map_err(|e| io_error(io::Error::other(e)))?;
    let mut stored = export::FileExport::new(store.clone(), plan);
    let mut ours = vec![0u8; COMPARE_CHUNK_BYTES];
    let mut theirs = Vec::with_capacity(COMPARE_CHUNK_BYTES);
    let mut pos = 0u64;
    while pos < stored_end {
        let want = usize::try_from(stored_end - pos).map_or(ours.len(), |n| n.min(ours.len()));
        stored.read_exact(&mut ours[..want]).map_err(io_error)?;
        theirs.clear();
        let got = read_up_to(&mut upload, want as u64, &mut theirs).map_err(io_error)?;
        let differs = (0..got).find(|&i| {
            let (a, b) = (ours[i], theirs[i]);
            a != b
                && !(pos + i as u64 == export::FDE_FLAGS_FILE_OFFSET
                    && a ^ b == LOG_EVENT_BINLOG_IN_USE_F as u8)
        });
        if let Some(i) = differs {
            return Err(ImportError::Chain {
                file: name.to_string(),
                detail: format!(
                    "{name} is stored up to position {stored_end}, and this file differs from it at position {}: it is another file of the same name",
                    pos + i as u64
                ),
            });
        }
        if got < want {
            return Err(ImportError::AlreadyStored {
                file: name.to_string(),
            });
        }
        pos += want as u64;
    }
    if read_up_to(&mut upload, 1, &mut theirs).map_err(io_error)? == 0 {
        return Err(ImportError::AlreadyStored {
            file: name.to_string(),
        });
    }
    Ok(())
}

/// Bytes compared at a time by [`check_stored_prefix`].
const COMPARE_CHUNK_BYTES: usize = 64 * 1024;

fn file_error(name: &str, e: FileError) -> ImportError {
    let file = name.to_string();
    let detail = e.to_string();
    match e {
        FileError::BadMagic { .. } => ImportError::NotBinlog { file, detail },
        FileError::TruncatedEvent { .. } => ImportError::Truncated { file, detail },
        FileError::Io(error) => ImportError::Io { file, error },
        _ => ImportError::Corrupt { file, detail },
    }
}

/// Refuses an import while a syncer is configured or running, or another import runs.
fn refuse_if_busy(node: &Node) -> Result<(), ApiError> {
    let configured = node.cluster.state().syncer().map(|s| s.mysql_addr.clone());
    let running = node
        .syncer
        .lock()
        .expect("syncer lock")
        .running
        .as_ref()
        .map(|(args, _, _)| args.mysql_addr.clone());
    if let Some(master) = configured.or(running) {
        return Err(ApiError::conflict(format!(
            "a syncer is configured (master {master}): imported files cannot be mixed with a \
             master's stream; stop it first (`ferrobus ctl syncer stop`)"
        )));
    }
    if node.importing.load(Ordering::SeqCst) {
        return Err(import_running());
    }
    Ok(())
}

fn import_running() -> ApiError {
    ApiError::conflict("another import is running on this node; import files one at a time")
}

/// Refuses unless this node is a leader that has applied its own term.
fn refuse_unless_ready_leader(node: &Node) -> Result<u64, ApiError> {
    let status = node.raft.status();
    if !node.cluster.leads_ready(&status) {
        return Err(ApiError::unavailable(
            "this node is not a ready leader (an election is under way); retry in a moment",
        ));
    }
    Ok(status.term)
}

/// The checks that need only the name (a ready leader, no syncer, no other import, the
/// next file of the stored chain): made before the body is read, so that a doomed upload
/// is refused at once, and again once it is spooled (the store may have changed).
fn check_name(node: &Node, name: &str) -> Result<(), ApiError> {
    refuse_unless_ready_leader(node)?;
    refuse_if_busy(node)?;
    check_chain(name, &store_view(&node.store)?).map_err(|e| {
        log::warn!("import refused before its upload: {e}");
        ApiError::from(e)
    })
}

/// Holds the import slot: one import at a time, none while a syncer is configured, and no
/// syncer start meanwhile (`Node::syncer_start` looks at the same flag under the same
/// lock). Taken only once the body is spooled, so a slow or stalled upload blocks nothing.
struct ImportSlot<'a> {
    node: &'a Node,
}

impl<'a> ImportSlot<'a> {
    fn take(node: &'a Node) -> Result<ImportSlot<'a>, ApiError> {
        let _changes = node.changes.lock().expect("changes lock");
        // `importing` is set only here, under the `changes` lock: refuse_if_busy has seen
        // it clear, so no other import can take the slot in between.
        refuse_if_busy(node)?;
        node.importing.store(true, Ordering::SeqCst);
        Ok(ImportSlot { node })
    }
}

impl Drop for ImportSlot<'_> {
    fn drop(&mut self) {
        self.node.importing.store(false, Ordering::SeqCst);
    }
}

/// An import's body on disk, under a name no other upload uses; removed when dropped
/// (whatever the import's outcome). A crash leaves it for `clear_spool` at the next start.
struct Spool {
    path: PathBuf,
    bytes: u64,
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            log::warn!(
                "cannot remove the import spool {}: {e}",
                self.path.display()
            );
        }
    }
}

/// Tells concurrent uploads of the same name apart.
static SPOOL_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Copies the body into `dir` under `NAME.<n>.part`, at most IMPORT_FILE_BYTES_MAX bytes.
/// A body whose reads time out (the admin API sets the connection's read timeout to
/// IMPORT_BODY_STALL_MS while an import's body is read) is a stalled upload.
fn spool(name: &str, body: &mut dyn Read, dir: &Path) -> Result<Spool, ImportError> {
    let io_error = |error| ImportError::Io {
        file: name.to_string(),
        error,
    };
    fs::create_dir_all(dir).map_err(io_error)?;
    let sequence = SPOOL_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{name}.{sequence}.part"));
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_error)?;
    // From here on the file is removed on every path.
    let mut spooled = Spool { path, bytes: 0 };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The admin API's reader says so when the node stops (see `api::routes`).
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
                return Err(ImportError::Cut {
                    file: name.to_string(),
                    detail: e.to_string(),
                    stopping: true,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(ImportError::Cut {
                    file: name.to_string(),
                    detail: e.to_string(),
                    stopping: false,
                })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ImportError::Stalled {
                    file: name.to_string(),
                    received_bytes: spooled.bytes,
                })
            }
            Err(e) => return Err(io_error(e)),
        };
        spooled.bytes += n as u64;
        if spooled.bytes > IMPORT_FILE_BYTES_MAX {
            return Err(ImportError::TooLarge {
                file: name.to_string(),
            });
        }
        out.write_all(&buf[..n]).map_err(io_error)?;
    }
    out.flush().map_err(io_error)?;
    Ok(spooled)
}

/// Serves `POST /binlog/import?file=NAME` on the leader: see the module doc.
pub(super) fn import(
    node: &Node,
    name: &str,
    body: &mut dyn Read,
) -> Result<ImportSummary, ApiError> {
    check_name(node, name)?;
    let spooled = spool(name, body, &node.data_dir.join(IMPORT_SPOOL_DIR)).map_err(|e| {
        log::warn!("import of {name}: receiving the file failed: {e}");
        ApiError::from(e)
    })?;
    let size = spooled.bytes;
    // The store, the syncer or the leadership may have changed during the upload: the slot
    // checks the syncer again, the dry run below the chain against the store as it is now.
    let _slot = ImportSlot::take(node)?;
    let term = refuse_unless_ready_leader(node)?;
    log::info!("import of {name}: {size} bytes received, checking the file");
    let path = &spooled.path;

    let open = || {
        File::open(path)
            .map(BufReader::new)
            .map_err(|e| ApiError::internal(format!("cannot read {}: {e}", path.display())))
    };
    let view = store_view(&node.store)?;
    if let Some(stored_end) = view.resumes(name) {
        check_stored_prefix(&node.store, name, open()?, stored_end).map_err(|e| {
            log::warn!("import refused: {e}");
            ApiError::from(e)
        })?;
        log::info!(
            "import of {name}: the file repeats the stored part up to {stored_end}; continuing it"
        );
    }
    // The dry run: everything is checked before anything is proposed.
    let checked = ingest_file(name, open()?, &view, &mut |_| Ok(())).map_err(|e| {
        log::warn!("import refused: {e}");
        ApiError::from(e)
    })?;

    let sink = RaftSink::new(node.raft.clone(), node.store.clone(), term);
    sink.begin_session()
        .map_err(|e| ApiError::unavailable(format!("cannot import {name} now: {e}")))?;
    let view = store_view(&node.store)?;
    let mut proposed = 0usize;
    let outcome = ingest_file(name, open()?, &view, &mut |entries| {
        proposed += entries.len();
        sink.append(entries).map_err(|e| ImportError::Io {
            file: name.to_string(),
            error: io::Error::other(e.to_string()),
        })
    })
    .map_err(ApiError::from)
    .and_then(|summary| {
        sink.flush()
            .map(|()| summary)
            .map_err(|e| ApiError::unavailable(e.to_string()))
    });
    let summary = outcome.map_err(|e| {
        // What was proposed is answered before the store's end is reported: a batch still
        // in flight could otherwise land after a retry read that end.
        if let Err(settle) = sink.settle() {
            log::error!("import of {name}: earlier batches are still unanswered: {settle}");
        }
        let stored = node.store.index().resume_point();
        log::error!(
            "import of {name} stopped after {proposed} proposed entries: {}; the store ends \
             at {stored:?}",
            e.message
        );
        ApiError::new(
            e.status,
            format!(
                "the import of {name} stopped: {}; the store now ends at {}",
                e.message,
                stored.map_or("(nothing)".to_string(), |(f, p)| format!("{f}:{p}"))
            ),
        )
    })?;
    if summary != checked {
        return Err(ApiError::internal(format!(
            "{name} read differently the second time ({checked:?} then {summary:?})"
        )));
    }
    let first_pos = summary.resumed_from.unwrap_or(FIRST_EVENT_POSITION);
    log::info!(
        "imported {name}: {} events, positions {first_pos}..{}",
        summary.events,
        summary.end_pos
    );
    Ok(ImportSummary {
        file: name.to_string(),
        events: summary.events,
        bytes: size,
        first_pos,
        last_pos: summary.last_pos,
        end_pos: summary.end_pos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::test_data::{mariadb_files, mysql_files};
    use crate::store::export::{plan_file, FileExport};
    use std::sync::Arc;

    /// A fixture's bytes; the kingbus files by their name on the master (the fixture files
    /// carry a prefix, and their ROTATE events name the master's files).
    fn fixture(name: &str) -> Vec<u8> {
        let wanted = if name.starts_with("mysql_bin.") {
            format!("kingbus-5.7-{name}")
        } else {
            name.to_string()
        };
        mysql_files()
            .into_iter()
            .chain(mariadb_files())
            .find(|(n, _)| *n == wanted)
            .unwrap()
            .1
    }

    const K11: &str = "mysql_bin.000011";
    const K12: &str = "mysql_bin.000012";
    const K13: &str = "mysql_bin.000013";

    /// A local store that imports files as the leader would, appending what ingest makes.
    struct Harness {
        _dir: tempfile::TempDir,
        store: Arc<Store>,
    }

    impl Harness {
        fn new() -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let (store, _) = Store::open(dir.path()).unwrap();
            Harness {
                _dir: dir,
                store: Arc::new(store),
            }
        }

        fn import(&self, name: &str, bytes: &[u8]) -> Result<FileSummary, ImportError> {
            let view = store_view(&self.store).unwrap();
            if let Some(stored_end) = view.resumes(name) {
                check_stored_prefix(&self.store, name, bytes, stored_end)?;
            }
            ingest_file(name, bytes, &view, &mut |_| Ok(()))?;
            let store = self.store.clone();
            ingest_file(name, bytes, &view, &mut |entries| {
                store.append(entries).unwrap();
                Ok(())
            })
        }

        fn export(&self, name: &str) -> Vec<u8> {
            let plan = plan_file(&self.store, name).unwrap();
            let mut out = Vec::new();
            FileExport::new(self.store.clone(), plan)
                .read_to_end(&mut out)
                .unwrap();
            out
        }

        fn snapshot(&self) -> (Vec<String>, u64) {
            (
                store_view(&self.store).unwrap().files,
                self.store.index().last_index(),
            )
        }
    }

    #[test]
    fn every_fixture_imports_and_exports_byte_identical() {
        for (name, bytes) in mysql_files() {
            let h = Harness::new();
            let summary = h.import(&name, &bytes).unwrap();
            assert_eq!(summary.end_pos, bytes.len() as u64, "{name}");
            assert_eq!(h.export(&name), bytes, "{name}");
        }
    }

    #[test]
    fn the_kingbus_chain_imports_as_one_chain() {
        let h = Harness::new();
        for name in [K11, K12, K13] {
            h.import(name, &fixture(name)).unwrap();
        }
        assert_eq!(h.snapshot().0, [K11, K12, K13]);
        for name in [K11, K12, K13] {
            assert_eq!(h.export(name), fixture(name), "{name}");
        }
        // The store continues where .000013 ends, as after syncing the three.
        assert_eq!(
            h.store.index().resume_point(),
            Some((K13.to_string(), fixture(K13).len() as u64))
        );
    }

    #[test]
    fn refusals_leave_the_store_unchanged() {
        let h = Harness::new();
        h.import(K11, &fixture(K11)).unwrap();
        let before = h.snapshot();
        let k12 = fixture(K12);

        // Out of order: .000011 rotates to .000012.
        let err = h.import(K13, &fixture(K13)).unwrap_err();
        assert!(matches!(err, ImportError::Chain { .. }), "{err}");
        assert!(err.to_string().contains(K12), "{err}");
        // Out of order under the expected name: PREVIOUS_GTIDS shows 11801-11810 missing.
        let err = h.import(K12, &fixture(K13)).unwrap_err();
        assert!(matches!(err, ImportError::Chain { .. }), "{err}");
        assert!(
            err.to_string().contains("PREVIOUS_GTIDS") && err.to_string().contains("1-11810"),
            "{err}"
        );
        // Already stored.
        let err = h.import(K11, &fixture(K11)).unwrap_err();
        assert!(matches!(err, ImportError::AlreadyStored { .. }), "{err}");
        // Truncated inside the last event, and between events inside a transaction.
        let err = h.import(K12, &k12[..k12.len() - 10]).unwrap_err();
        assert!(matches!(err, ImportError::Truncated { .. }), "{err}");
        let events: Vec<_> = BinlogFileReader::new(k12.as_slice())
            .collect::<Result<_, _>>()
            .unwrap();
        // Cut right after the first event of the first transaction (its GTID event).
        let (gtid_pos, gtid) = events
            .iter()
            .find(|(_, ev)| ev[TYPE_CODE_OFFSET] == event::GTID_LOG_EVENT)
            .unwrap();
        let cut = *gtid_pos as usize + gtid.len();
        let err = h.import(K12, &k12[..cut]).unwrap_err();
        assert!(matches!(err, ImportError::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("inside a transaction"), "{err}");
        // One flipped byte: the CRC32 catches it.
        let mut flipped = k12.clone();
        flipped[k12.len() / 2] ^= 0x10;
        let err = h.import(K12, &flipped).unwrap_err();
        assert!(matches!(err, ImportError::Corrupt { .. }), "{err}");
        // Not a binlog.
        let err = h.import(K12, b"hello, this is a text file\n").unwrap_err();
        assert!(matches!(err, ImportError::NotBinlog { .. }), "{err}");
        assert_eq!(ApiError::from(err).status, 400);
        // The wrong flavour: a MariaDB file after a MySQL one, even under the right name.
        let err = h.import(K12, &fixture("bin.000001")).unwrap_err();
        assert!(err.to_string().contains("MariaDB"), "{err}");
        // The magic alone.
        let err = h.import(K12, &[0xfe, b'b', b'i', b'n']).unwrap_err();
        assert!(matches!(err, ImportError::Unsupported { .. }), "{err}");

        assert_eq!(h.snapshot(), before);
        // And the real next file is still accepted.
        h.import(K12, &k12).unwrap();
        assert_eq!(h.export(K12), k12);
    }

    #[test]
    fn after_an_unclosed_mysql_file_its_successor_follows_if_previous_gtids_match() {
        // .000011 without its closing ROTATE: as if its master crashed after the last commit.
        let k11 = fixture(K11);
        let (rotate_pos, _) = BinlogFileReader::new(k11.as_slice())
            .map(Result::unwrap)
            .last()
            .unwrap();
        let open = &k11[..rotate_pos as usize];
        let h = Harness::new();
        h.import(K11, open).unwrap();
        assert_eq!(
            store_view(&h.store).unwrap().tail.unwrap().last_event,
            LastEvent::Other
        );
        let before = h.snapshot();
        // Only the next number may follow.
        let err = h.import(K13, &fixture(K13)).unwrap_err();
        assert!(matches!(err, ImportError::Chain { .. }), "{err}");
        assert!(err.to_string().contains(K12), "{err}");
        // The next number, but PREVIOUS_GTIDS shows transactions missing.
        let err = h.import(K12, &fixture(K13)).unwrap_err();
        assert!(err.to_string().contains("PREVIOUS_GTIDS"), "{err}");
        // The next number without a PREVIOUS_GTIDS proves nothing.
        let k12 = fixture(K12);
        let events: Vec<_> = BinlogFileReader::new(k12.as_slice())
            .map(Result::unwrap)
            .collect();
        let fde_only = &k12[..events[1].0 as usize];
        let err = h.import(K12, fde_only).unwrap_err();
        assert!(err.to_string().contains("has none"), "{err}");
        assert_eq!(h.snapshot(), before);
        // The real next file is accepted.
        h.import(K12, &k12).unwrap();
        assert_eq!(h.export(K12), k12);
    }

    #[test]
    fn nothing_follows_an_unclosed_mariadb_file_and_a_stop_takes_its_successor() {
        // A store of one file, `file`, that ends at position 100 with `last_event`.
        let one_file = |file: &str, last_event: LastEvent, mariadb: bool| StoreView {
            files: vec![file.into()],
            tail: Some(Tail {
                file: file.into(),
                end_pos: 100,
                last_event,
                mariadb,
            }),
            resume: Some((file.into(), 100)),
            mysql_executed: None,
            maria_executed: None,
            last_file_whole: true,
        };
        let unclosed = one_file("m.000007", LastEvent::Other, true);
        let err = check_chain("m.000008", &unclosed).unwrap_err();
        assert!(err.to_string().contains("MariaDB"), "{err}");

        // binlog-invisible-columns.000001 ends with a STOP.
        let view = one_file("b.000007", LastEvent::Stop, false);
        assert!(check_chain("b.000008", &view).is_ok());
        let err = check_chain("b.000009", &view).unwrap_err();
        assert!(err.to_string().contains("b.000008"), "{err}");
        let h = Harness::new();
        let stop_file = "binlog-invisible-columns.000001";
        h.import(stop_file, &fixture(stop_file)).unwrap();
        let tail = store_view(&h.store).unwrap().tail.unwrap();
        assert_eq!(tail.last_event, LastEvent::Stop);
    }

    #[test]
    fn a_mariadb_file_that_does_not_follow_the_stored_gtids_is_refused() {
        let h = Harness::new();
        let b1 = fixture("bin.000001");
        h.import("bin.000001", &b1).unwrap();
        let before = h.snapshot();
        // The first file again, under the name the chain expects next: its GTID_LIST is the
        // state before its own transactions.
        let err = h.import("bin.000002", &b1).unwrap_err();
        assert!(matches!(err, ImportError::Chain { .. }), "{err}");
        assert!(err.to_string().contains("GTID_LIST"), "{err}");
        assert_eq!(ApiError::from(err).status, 409);
        assert_eq!(h.snapshot(), before);
        // The real chain goes on.
        for name in ["bin.000002", "bin.000003"] {
            h.import(name, &fixture(name)).unwrap();
            assert_eq!(h.export(name), fixture(name), "{name}");
        }
    }

    /// An import that stopped part of the way (the leader deposed mid-file) left whole
    /// transactions of the file stored: importing the file again continues it.
    #[test]
    fn an_import_stopped_part_of_the_way_is_continued_by_importing_the_file_again() {
        for (name, other, gtid_type) in [
            (K11, K12, event::GTID_LOG_EVENT),
            ("bin.000001", "bin.000002", event::GTID_EVENT),
        ] {
            let full = fixture(name);
            let groups: Vec<u64> = BinlogFileReader::new(full.as_slice())
                .map(Result::unwrap)
                .filter(|(_, ev)| ev[TYPE_CODE_OFFSET] == gtid_type)
                .map(|(pos, _)| pos)
                .collect();
            assert!(groups.len() >= 2, "{name}");
            // The stored part ends after a whole transaction, in the middle of the file.
            let cut = groups[groups.len() / 2];
            let part = &full[..cut as usize];
            let h = Harness::new();
            h.import(name, part).unwrap();
            let view = store_view(&h.store).unwrap();
            assert_eq!(view.resumes(name), Some(cut), "{name}");
            let before = h.snapshot();

            // The same part again, or less of it, holds nothing new.
            for upload in [part, &full[..cut as usize - 1]] {
                let err = h.import(name, upload).unwrap_err();
                assert!(matches!(err, ImportError::AlreadyStored { .. }), "{err}");
            }
            // Another file under this name differs from the stored part: refused, saying
            // where.
            let err = h.import(name, &fixture(other)).unwrap_err();
            assert!(matches!(err, ImportError::Chain { .. }), "{name}: {err}");
            assert!(err.to_string().contains("differs"), "{err}");
            // A changed byte inside the stored part, with a valid file around it: refused.
            let mut changed = full.clone();
            changed[cut as usize - 20] ^= 1;
            let err = h.import(name, &changed).unwrap_err();
            assert!(err.to_string().contains(&format!("{}", cut - 20)), "{err}");
            assert_eq!(h.snapshot(), before, "{name}");

            // The whole file: the rest is stored, and the file exports whole.
            let summary = h.import(name, &full).unwrap();
            assert_eq!(summary.resumed_from, Some(cut), "{name}");
            assert_eq!(summary.end_pos, full.len() as u64, "{name}");
            assert_eq!(h.export(name), full, "{name}");
            assert_eq!(store_view(&h.store).unwrap().resumes(name), None, "{name}");
            let err = h.import(name, &full).unwrap_err();
            assert!(matches!(err, ImportError::AlreadyStored { .. }), "{err}");
            // And the chain continues after it.
            h.import(other, &fixture(other)).unwrap();
        }
    }

    /// Stores only `name`'s FileStart entry, as an import deposed right after its first
    /// entry committed leaves it (raft carries the FileStart alone when the next entry
    /// would take the message past its size limit).
    fn only_the_file_start_of(h: &Harness, name: &str) {
        let view = store_view(&h.store).unwrap();
        let store = h.store.clone();
        let cut = ingest_file(name, fixture(name).as_slice(), &view, &mut |entries| {
            assert_eq!(entries[0].0, crate::store::entry::KIND_FILE_START);
            store.append(vec![entries[0].clone()]).unwrap();
            Err(ImportError::Io {
                file: name.into(),
                error: io::Error::other("deposed"),
            })
        });
        assert!(cut.is_err());
        assert_eq!(store_view(&h.store).unwrap().resumes(name), Some(4));
    }

    /// Continuing a file of which nothing past the magic is stored checks what a new file
    /// is checked for: the wrong file under the expected name is refused (review s9-diff
    /// 1.1: it was stored, with a GTID gap or twice).
    #[test]
    fn a_resume_from_a_bare_file_start_checks_the_file_as_a_new_one() {
        let h = Harness::new();
        h.import(K11, &fixture(K11)).unwrap();
        only_the_file_start_of(&h, K12);
        let err = h.import(K12, &fixture(K13)).unwrap_err();
        assert!(err.to_string().contains("PREVIOUS_GTIDS"), "{err}");
        let summary = h.import(K12, &fixture(K12)).unwrap();
        assert_eq!(summary.resumed_from, Some(4));
        assert_eq!(h.export(K12), fixture(K12));

        let h = Harness::new();
        h.import("bin.000001", &fixture("bin.000001")).unwrap();
        only_the_file_start_of(&h, "bin.000002");
        let err = h.import("bin.000002", &fixture("bin.000001")).unwrap_err();
        assert!(err.to_string().contains("GTID_LIST"), "{err}");
        h.import("bin.000002", &fixture("bin.000002")).unwrap();
        assert_eq!(h.export("bin.000002"), fixture("bin.000002"));
    }

    #[test]
    fn spool_files_left_by_a_crash_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        assert!(clear_spool(dir.path()).is_empty());
        let spool = dir.path().join(IMPORT_SPOOL_DIR);
        fs::create_dir_all(&spool).unwrap();
        fs::write(spool.join("mysql_bin.000012.1.part"), b"half a file").unwrap();
        fs::write(spool.join("x.000001.7.part"), b"").unwrap();
        fs::write(dir.path().join("keep"), b"not the spool's").unwrap();
        assert_eq!(
            clear_spool(dir.path()),
            ["mysql_bin.000012.1.part", "x.000001.7.part"]
        );
        assert_eq!(fs::read_dir(&spool).unwrap().count(), 0);
        assert!(dir.path().join("keep").exists());
    }

    /// A body that yields `data` and then fails as a socket read timeout does.
    struct StallingBody {
        data: Vec<u8>,
        kind: io::ErrorKind,
    }

    impl Read for StallingBody {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(io::Error::new(self.kind, "timed out"));
            }
            let n = buf.len().min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn a_stalled_upload_fails_clearly_and_leaves_no_spool_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().join(IMPORT_SPOOL_DIR);
        for kind in [io::ErrorKind::WouldBlock, io::ErrorKind::TimedOut] {
            let mut body = StallingBody {
                data: vec![7; 100_000],
                kind,
            };
            let err = spool(K12, &mut body, &spool_dir).err().unwrap();
            assert!(
                matches!(
                    err,
                    ImportError::Stalled {
                        received_bytes: 100_000,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains(K12), "{err}");
            assert_eq!(ApiError::from(err).status, 408);
            assert_eq!(fs::read_dir(&spool_dir).unwrap().count(), 0);
        }
        // Another error is an I/O error, and leaves nothing either.
        let mut body = StallingBody {
            data: vec![1; 10],
            kind: io::ErrorKind::ConnectionReset,
        };
        let err = spool(K12, &mut body, &spool_dir).err().unwrap();
        assert!(matches!(err, ImportError::Io { .. }), "{err}");
        assert_eq!(fs::read_dir(&spool_dir).unwrap().count(), 0);
    }

    #[test]
    fn uploads_of_one_name_spool_to_distinct_files_removed_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let k12 = fixture(K12);
        let a = spool(K12, &mut k12.as_slice(), dir.path()).unwrap();
        let b = spool(K12, &mut &b"other"[..], dir.path()).unwrap();
        assert_ne!(a.path, b.path);
        assert!(a.path.to_string_lossy().ends_with(".part"));
        assert_eq!(fs::read(&a.path).unwrap(), k12);
        assert_eq!((a.bytes, b.bytes), (k12.len() as u64, 5));
        drop(a);
        drop(b);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn successors() {
        assert_eq!(
            successor("mysql-bin.000009").as_deref(),
            Some("mysql-bin.000010")
        );
        assert_eq!(successor("a.b.99").as_deref(), Some("a.b.100"));
        assert_eq!(successor("noext"), None);
        assert_eq!(successor("x.1a"), None);
        assert_eq!(successor("x."), None);
    }

    #[test]
    fn a_file_without_checksums_is_refused() {
        // bin.000004 was written with binlog_checksum=NONE.
        let h = Harness::new();
        let err = h.import("bin.000004", &fixture("bin.000004")).unwrap_err();
        assert!(err.to_string().contains("CRC32"), "{err}");
        assert!(h.snapshot().0.is_empty());
    }
}
