//! `RaftStorage`: raft-rs's `Storage` over ferrobus's durable segmented log, plus the durable
//! raft state that is not entries.
//!
//! Layout on disk:
//! - the log directory (`DATA_DIR/log`): one record per raft entry. A normal entry's record
//!   kind is the first byte of its context (0 when the context is empty, 1..=0x3f otherwise);
//!   a ConfChange is kind 0x40 and a ConfChangeV2 kind 0x41, their protobuf bytes as data.
//! - `DATA_DIR/raft/state`: HardState, ConfState and the log's base (the index and term of
//!   the entry just before the first one raft may read).
//! - `DATA_DIR/raft/snapshot`: the latest snapshot, metadata and data.
//!
//! Both files are magic + version + CRC32 + body, written temp → fsync → rename → fsync dir,
//! and a file that fails its checks refuses `open` with a clear error.
//!
//! Durability order: log entries are synced before any state file that could refer to them
//! (a commit index never points past the durable log). `persist` is one group commit: one log
//! sync, then the state file only when HardState or ConfState changed.
//!
//! A new cluster starts with its initial voters written as committed AddNode conf-change
//! entries at indexes 1..=n (term 1, the same on every founder): a node that joins later
//! replays the log from index 1 and learns the founders from those entries, and receives
//! the binlog itself through plain appends (a snapshot is only needed after compaction).
//! Data directories made before this started from an initial snapshot at index 1; they
//! still open.
//!
//! This module must not interpret normal entry data, and must not panic on anything read
//! from disk. It holds no thread; the handle is shared between the raft thread (writes) and
//! raft-rs (reads) through one mutex.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState};

use crate::consensus::entry_cache::EntryCache;
use crate::consensus::ConsensusError;
use crate::limits::{ENTRY_PAYLOAD_MAX, RAFT_SNAPSHOT_BYTES_MAX, RAFT_STATE_FILE_BYTES_MAX};
use crate::storage::{
    self as log_store, LatencyHistogram, Log, LogOptions, LogReader, StorageError,
};

/// Result of consensus storage operations.
pub type Result<T> = std::result::Result<T, ConsensusError>;

/// Record kind of a normal entry with an empty context (a new leader's empty entry).
pub const KIND_EMPTY: u8 = 0;
/// Largest record kind of a normal entry (its context byte).
pub const NORMAL_KIND_MAX: u8 = 0x3f;
/// Record kind of an `EntryConfChange` entry.
pub const KIND_CONF_CHANGE: u8 = 0x40;
/// Record kind of an `EntryConfChangeV2` entry.
pub const KIND_CONF_CHANGE_V2: u8 = 0x41;

/// Index and term of the first initial-membership entry `initialize` writes.
pub const INIT_INDEX: u64 = 1;
pub const INIT_TERM: u64 = 1;

/// Directory names under the data directory.
pub const LOG_DIR: &str = "log";
pub const RAFT_DIR: &str = "raft";

const STATE_FILE: &str = "state";
const SNAPSHOT_FILE: &str = "snapshot";
const TEMP_SUFFIX: &str = ".tmp";
const STATE_MAGIC: [u8; 8] = *b"FBRAFTST";
const SNAPSHOT_MAGIC: [u8; 8] = *b"FBRAFTSN";
const FILE_VERSION: u32 = 1;
/// magic (8) + version (4) + CRC32 of the body (4).
const FILE_HEADER_LEN: usize = 16;
/// Room for the snapshot metadata besides its data.
const SNAPSHOT_META_BYTES_MAX: usize = 1 << 20;

// ---------------------------------------------------------------------------------------
// Entry ↔ record mapping (pure)

/// Turns a raft entry into a log record; refuses what the mapping cannot carry back.
pub fn entry_to_record(e: &Entry) -> Result<log_store::Entry> {
    let kind = match e.get_entry_type() {
        EntryType::EntryNormal => normal_kind(&e.context).ok_or_else(|| {
            unrepresentable(
                e.index,
                "a normal entry's context must be empty or one kind byte 1..=0x3f",
            )
        })?,
        EntryType::EntryConfChange => conf_change_kind(e, KIND_CONF_CHANGE)?,
        EntryType::EntryConfChangeV2 => conf_change_kind(e, KIND_CONF_CHANGE_V2)?,
    };
    if e.data.len() > ENTRY_PAYLOAD_MAX {
        let reason = format!(
            "{} bytes of data, more than {ENTRY_PAYLOAD_MAX}",
            e.data.len()
        );
        return Err(unrepresentable(e.index, reason));
    }
    Ok(log_store::Entry {
        index: e.index,
        term: e.term,
        kind,
        data: e.data.clone(),
    })
}

/// Turns a log record back into the raft entry it was made from.
pub fn record_to_entry(r: log_store::Entry) -> Result<Entry> {
    let mut e = Entry::default();
    match r.kind {
        KIND_EMPTY => e.set_entry_type(EntryType::EntryNormal),
        1..=NORMAL_KIND_MAX => {
            e.set_entry_type(EntryType::EntryNormal);
            e.context = Bytes::from(vec![r.kind]);
        }
        KIND_CONF_CHANGE => e.set_entry_type(EntryType::EntryConfChange),
        KIND_CONF_CHANGE_V2 => e.set_entry_type(EntryType::EntryConfChangeV2),
        other => {
            let reason = format!("record kind {other:#04x} is not a raft entry kind");
            return Err(unrepresentable(r.index, reason));
        }
    }
    e.index = r.index;
    e.term = r.term;
    e.data = r.data;
    Ok(e)
}

fn normal_kind(context: &[u8]) -> Option<u8> {
    match context {
        [] => Some(KIND_EMPTY),
        [k] if (1..=NORMAL_KIND_MAX).contains(k) => Some(*k),
        _ => None,
    }
}

fn conf_change_kind(e: &Entry, kind: u8) -> Result<u8> {
    if e.context.is_empty() {
        Ok(kind)
    } else {
        Err(unrepresentable(
            e.index,
            "a conf change entry must have an empty context",
        ))
    }
}

fn unrepresentable(index: u64, reason: impl Into<String>) -> ConsensusError {
    ConsensusError::Unrepresentable {
        index,
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------
// State and snapshot files (pure encoding)

/// What the state file holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PersistentState {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    /// The entry just before the first one raft may read: its term stays answerable.
    pub base_index: u64,
    pub base_term: u64,
}

/// Encodes the state file: header, then base index, base term, u32-length-prefixed
/// HardState and ConfState protobuf bytes (little endian).
pub fn encode_state(s: &PersistentState) -> Result<Vec<u8>> {
    let hs = s.hard_state.write_to_bytes()?;
    let cs = s.conf_state.write_to_bytes()?;
    let mut body = Vec::with_capacity(24 + hs.len() + cs.len());
    body.extend_from_slice(&s.base_index.to_le_bytes());
    body.extend_from_slice(&s.base_term.to_le_bytes());
    put_bytes_u32(&mut body, &hs);
    put_bytes_u32(&mut body, &cs);
    Ok(frame(STATE_MAGIC, &body))
}

/// Decodes a state file image; the error says what is wrong.
pub fn decode_state(bytes: &[u8]) -> std::result::Result<PersistentState, String> {
    let body = unframe(STATE_MAGIC, bytes)?;
    let mut r = Cursor::new(body);
    let base_index = r.u64()?;
    let base_term = r.u64()?;
    let hs = r.bytes_u32()?;
    let cs = r.bytes_u32()?;
    r.finish()?;
    let hard_state =
        HardState::parse_from_bytes(hs).map_err(|e| format!("HardState does not parse: {e}"))?;
    let conf_state =
        ConfState::parse_from_bytes(cs).map_err(|e| format!("ConfState does not parse: {e}"))?;
    Ok(PersistentState {
        hard_state,
        conf_state,
        base_index,
        base_term,
    })
}

/// Encodes the snapshot file: header, u32-length-prefixed SnapshotMetadata protobuf bytes,
/// u64-length-prefixed data.
pub fn encode_snapshot(s: &Snapshot) -> Result<Vec<u8>> {
    let meta = s.get_metadata().write_to_bytes()?;
    let mut body = Vec::with_capacity(12 + meta.len() + s.data.len());
    put_bytes_u32(&mut body, &meta);
    body.extend_from_slice(&(s.data.len() as u64).to_le_bytes());
    body.extend_from_slice(&s.data);
    Ok(frame(SNAPSHOT_MAGIC, &body))
}

/// Decodes a snapshot file image.
pub fn decode_snapshot(bytes: &[u8]) -> std::result::Result<Snapshot, String> {
    let body = unframe(SNAPSHOT_MAGIC, bytes)?;
    let mut r = Cursor::new(body);
    let meta = r.bytes_u32()?;
    let data_len = r.u64()?;
    if data_len > RAFT_SNAPSHOT_BYTES_MAX as u64 {
        return Err(format!("snapshot data of {data_len} bytes is implausible"));
    }
    let data = r.take(data_len as usize)?;
    r.finish()?;
    let metadata = SnapshotMetadata::parse_from_bytes(meta)
        .map_err(|e| format!("snapshot metadata does not parse: {e}"))?;
    let mut s = Snapshot::default();
    s.set_metadata(metadata);
    s.data = Bytes::copy_from_slice(data);
    Ok(s)
}

fn put_bytes_u32(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn frame(magic: [u8; 8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_HEADER_LEN + body.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn unframe(magic: [u8; 8], bytes: &[u8]) -> std::result::Result<&[u8], String> {
    let mut r = Cursor::new(bytes);
    if r.take(8).map_err(|_| "shorter than its header")? != magic {
        return Err("bad magic".into());
    }
    let version = r.u32().map_err(|_| "shorter than its header")?;
    if version != FILE_VERSION {
        return Err(format!("unknown format version {version}"));
    }
    let crc = r.u32().map_err(|_| "shorter than its header")?;
    let body = r.rest();
    if crc32fast::hash(body) != crc {
        return Err("CRC32 mismatch".into());
    }
    Ok(body)
}

/// Checked little-endian reads over a byte slice.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflows")?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| format!("truncated: {n} bytes wanted at offset {}", self.pos))?;
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes_u32(&mut self) -> std::result::Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        if n > SNAPSHOT_META_BYTES_MAX {
            return Err(format!("field of {n} bytes is implausible"));
        }
        self.take(n)
    }

    fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        s
    }

    fn finish(&self) -> std::result::Result<(), String> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.buf.len() - self.pos))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Small durable files

/// Writes `bytes` as `dir/name` atomically and durably: temp file, fsync, rename, fsync dir.
fn write_file_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| ConsensusError::io(&temp, "create", e))?;
    file.write_all(bytes)
        .map_err(|e| ConsensusError::io(&temp, "write", e))?;
    file.sync_all()
        .map_err(|e| ConsensusError::sync(&temp, e))?;
    drop(file);
    fs::rename(&temp, &path).map_err(|e| ConsensusError::io(&temp, "rename", e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| ConsensusError::io(dir, "open directory", e))?;
    d.sync_all().map_err(|e| ConsensusError::sync(dir, e))
}

/// Reads a whole small file; `None` when it does not exist. A file larger than `max` is
/// corrupt (never allocate what a damaged file claims).
fn read_file_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ConsensusError::io(path, "stat", e)),
    };
    if len > max {
        let reason = format!("{len} bytes, more than the {max} it may have");
        return Err(ConsensusError::corrupt(path, reason));
    }
    fs::read(path)
        .map(Some)
        .map_err(|e| ConsensusError::io(path, "read", e))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {
            log::warn!("removed unfinished raft state file {}", path.display());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ConsensusError::io(path, "remove", e)),
    }
}

// ---------------------------------------------------------------------------------------
// RaftStorage

/// What `RaftStorage::open` found and repaired.
#[derive(Clone, Debug, Default)]
pub struct RaftRecovery {
    /// What the entry log's own recovery did (torn tail cut, ...).
    pub log: log_store::Recovery,
    pub hard_state: HardState,
    pub conf_state: ConfState,
    /// First index raft may read and last index held.
    pub first_index: u64,
    pub last_index: u64,
    /// The stored snapshot (0, 0 when none): a restarting state machine restores from it.
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    /// Whether the node has a raft state at all (false for a brand-new data directory).
    pub initialized: bool,
    /// The log did not continue the snapshot it was reset to (a crash during a snapshot
    /// install) and was reset again.
    pub log_reset: bool,
}

struct Inner {
    log: Log,
    raft_dir: PathBuf,
    state: PersistentState,
    /// The state file exists on disk.
    state_saved: bool,
    /// `state` differs from the state file.
    state_dirty: bool,
    /// The latest snapshot, installed from a leader or set by the state machine.
    snapshot: Option<Snapshot>,
    /// raft asked for a snapshot the stored one cannot serve (too old, or from before the
    /// recipient was a member): the state machine should store a fresh one.
    snapshot_wanted: bool,
    /// The log's unapplied tail, which `entries` serves without reading the files. Changed
    /// together with `log`, and emptied when a change of the log fails.
    cache: EntryCache,
}

/// raft-rs `Storage` over the durable log; a cheap-clone handle. The raft thread writes
/// through it; raft-rs reads through the `Storage` trait; other threads read entries with
/// `reader()`, which never takes this handle's lock.
#[derive(Clone)]
pub struct RaftStorage {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for RaftStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("RaftStorage")
            .field("raft_dir", &g.raft_dir)
            .field("first_index", &g.first_index())
            .field("last_index", &g.log.last_index())
            .field("hard_state", &g.state.hard_state)
            .finish()
    }
}

impl RaftStorage {
    /// Opens the log in `data_dir/log` and the raft state in `data_dir/raft`.
    pub fn open(data_dir: &Path) -> Result<(RaftStorage, RaftRecovery)> {
        RaftStorage::open_with(
            &data_dir.join(LOG_DIR),
            &data_dir.join(RAFT_DIR),
            LogOptions::default(),
        )
    }

    /// Opens (creating when absent) and recovers: verifies both state files, recovers the
    /// log, and re-does an interrupted snapshot install (log reset). Refuses to open on a
    /// corrupt state or snapshot file, a log without state, or a commit index past the log.
    pub fn open_with(
        log_dir: &Path,
        raft_dir: &Path,
        options: LogOptions,
    ) -> Result<(RaftStorage, RaftRecovery)> {
        fs::create_dir_all(raft_dir)
            .map_err(|e| ConsensusError::io(raft_dir, "create directory", e))?;
        remove_if_exists(&raft_dir.join(format!("{STATE_FILE}{TEMP_SUFFIX}")))?;
        remove_if_exists(&raft_dir.join(format!("{SNAPSHOT_FILE}{TEMP_SUFFIX}")))?;
        let state_path = raft_dir.join(STATE_FILE);
        let state = load_state(&state_path)?;
        let snapshot = load_snapshot(&raft_dir.join(SNAPSHOT_FILE))?;
        let (mut log, log_recovery) = Log::open_with(log_dir, options)?;
        let state_saved = state.is_some();
        if !state_saved && log.last_index() >= log.first_index() {
            if !holds_only_founders(&log)? {
                return Err(ConsensusError::LogWithoutState { path: state_path });
            }
            // `initialize` writes the founders' entries, then the state: it was cut short
            // in between. Nothing was acknowledged; it starts again from an empty log.
            log::warn!(
                "raft log holds only the initial membership and there is no raft state \
                 (a first start was interrupted); starting over"
            );
            log.reset_to(INIT_INDEX)?;
        }
        let mut state = state.unwrap_or_default();
        let raised = raise_commit_to_snapshot(&mut state, snapshot.as_ref(), &log)?;
        check_snapshot_covers_base(&state, snapshot.as_ref(), raft_dir)?;
        let log_reset = reconcile_log(&mut log, state.base_index, state.base_term)?;
        check_commit(&state, &log, &state_path)?;
        let inner = Inner {
            log,
            raft_dir: raft_dir.to_path_buf(),
            state,
            state_saved,
            // A raised commit index is saved with the next state change.
            state_dirty: raised,
            snapshot,
            snapshot_wanted: false,
            cache: EntryCache::default(),
        };
        let recovery = RaftRecovery {
            log: log_recovery,
            hard_state: inner.state.hard_state.clone(),
            conf_state: inner.state.conf_state.clone(),
            first_index: inner.first_index(),
            last_index: inner.log.last_index(),
            snapshot_index: inner.snapshot_index(),
            snapshot_term: inner.snapshot.as_ref().map_or(0, |s| s.get_metadata().term),
            initialized: state_saved,
            log_reset,
        };
        Ok((
            RaftStorage {
                inner: Arc::new(Mutex::new(inner)),
            },
            recovery,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a brand-new cluster whose voters are in `conf_state`: writes one committed
    /// AddNode entry per voter (sorted, from `INIT_INDEX`, term `INIT_TERM`) and the
    /// matching state. Every initial member does this with the same voters; a node joining
    /// an existing cluster does not (it replays the leader's log from index 1).
    pub fn initialize(&self, conf_state: ConfState) -> Result<()> {
        let mut g = self.lock();
        if g.state_saved || g.state.base_index > 0 || g.log.last_index() >= g.log.first_index() {
            return Err(ConsensusError::AlreadyInitialized);
        }
        if conf_state.voters.is_empty() {
            let reason = "an initial membership needs at least one voter".to_owned();
            return Err(ConsensusError::Raft(raft::Error::ConfigInvalid(reason)));
        }
        // The initial membership is written as committed conf-change entries 1..=n, the
        // same on every founder, rather than as a snapshot: a node that joins later then
        // replays the whole log from index 1 (and with it the whole binlog, which a snapshot
        // could not carry) and learns the founders from those entries.
        // Sorted and without repeats, so that founders given the same members in another
        // order still write identical entries (one index and term must mean one entry).
        let mut ids = conf_state.voters.clone();
        ids.sort_unstable();
        ids.dedup();
        let mut records = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let cc = raft::eraftpb::ConfChange {
                change_type: raft::eraftpb::ConfChangeType::AddNode,
                node_id: *id,
                ..Default::default()
            };
            let data = cc.write_to_bytes().map_err(|e| {
                ConsensusError::Raft(raft::Error::ConfigInvalid(format!(
                    "encoding the initial membership: {e}"
                )))
            })?;
            let mut e = Entry::default();
            e.set_entry_type(EntryType::EntryConfChange);
            e.index = INIT_INDEX + i as u64;
            e.term = INIT_TERM;
            e.data = Bytes::from(data);
            records.push(entry_to_record(&e)?);
        }
        let last = records.last().map_or(0, |r| r.index);
        g.log.append(&records)?;
        g.state.hard_state.term = INIT_TERM;
        g.state.hard_state.commit = last;
        g.state.conf_state = ConfState {
            voters: ids,
            ..conf_state
        };
        g.save_state()
    }

    /// Whether this storage has a raft state (initialized, or joined through a snapshot).
    pub fn is_initialized(&self) -> bool {
        self.lock().state_saved
    }

    /// A reader of the durable log for other threads (the binlog server); it sees synced
    /// entries, which may include uncommitted ones: readers cap at the commit index.
    pub fn reader(&self) -> LogReader {
        self.lock().log.reader()
    }

    /// How long the log's syncs take, for any thread to read.
    pub fn sync_latency(&self) -> Arc<LatencyHistogram> {
        self.lock().log.sync_latency()
    }

    /// Appends raft entries (not yet durable: see `persist`). Entries whose index is at or
    /// below the last index replace the log from that index (Raft's conflicting suffix).
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let records = entries
            .iter()
            .map(entry_to_record)
            .collect::<Result<Vec<_>>>()?;
        let mut g = self.lock();
        if first.index <= g.state.base_index {
            return Err(ConsensusError::out_of_order(format!(
                "append at {} would overwrite compacted entries (first index {})",
                first.index,
                g.first_index()
            )));
        }
        let last = g.log.last_index();
        if first.index > last + 1 {
            return Err(ConsensusError::out_of_order(format!(
                "append at {} leaves a gap after last index {last}",
                first.index
            )));
        }
        // The cache follows the log, or is emptied should the log refuse or fail.
        let written = if first.index <= last {
            g.log.truncate_suffix(first.index)
        } else {
            Ok(())
        }
        .and_then(|()| g.log.append(&records));
        match written {
            Ok(()) => g.cache.append(entries),
            Err(e) => {
                g.cache.clear();
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// The state machine has entries up to `index`: raft-rs reads them from the log files
    /// from now on, should it need them again (a slow follower), and the cache lets go.
    pub fn release_applied(&self, index: u64) {
        self.lock().cache.drop_through(index);
    }

    /// Records a new HardState (durable at the next `persist`).
    pub fn set_hard_state(&self, hs: HardState) {
        let mut g = self.lock();
        if g.term_or_vote_differs(&hs) {
            g.state_dirty = true;
        }
        // A change of the commit index alone is not worth a save (see `set_commit`).
        g.state.hard_state = hs;
    }

    /// Records a new commit index. It is written with the state file's next save but does
    /// not by itself cause one: raft-rs needs only term and vote durable before it answers,
    /// and a commit index found stale after a restart is raised again by the leader (a
    /// one-node cluster re-commits its whole log in its first term). Saving it on every
    /// commit would add a file rewrite and two fsyncs to every write.
    pub fn set_commit(&self, commit: u64) {
        let mut g = self.lock();
        g.state.hard_state.commit = commit;
    }

    /// Records the ConfState after a conf change was applied (durable at the next `persist`).
    pub fn set_conf_state(&self, cs: ConfState) {
        let mut g = self.lock();
        if g.state.conf_state != cs {
            g.state.conf_state = cs;
            g.state_dirty = true;
        }
    }

    /// Group commit: one sync of the log, then the state file when it changed. A failure
    /// that `is_fatal()` must stop the process.
    pub fn persist(&self) -> Result<()> {
        let mut g = self.lock();
        if g.state_dirty {
            g.save_state()
        } else {
            g.log.sync().map_err(ConsensusError::from)
        }
    }

    /// Takes the log sync `persist` would do as a job for another thread (None: the log is
    /// already durable). Only for a Ready that leaves the state file alone: the state is
    /// saved by `persist`, which refuses to run until the job is finished.
    pub fn begin_sync(&self) -> Result<Option<log_store::SyncJob>> {
        Ok(self.lock().log.begin_sync()?)
    }

    /// Ends a job from `begin_sync` with its outcome: the log is then durable and visible
    /// to readers up to `upto`. A failure is fatal, as for `persist`.
    pub fn finish_sync(
        &self,
        upto: u64,
        outcome: std::result::Result<(), StorageError>,
    ) -> Result<()> {
        Ok(self.lock().log.finish_sync(upto, outcome)?)
    }

    /// Whether making `hs` (and any ConfState change recorded since) durable needs the
    /// state file rewritten, rather than only the log synced: term or vote changed.
    pub fn needs_state_save(&self, hs: Option<&HardState>) -> bool {
        let g = self.lock();
        g.state_dirty || hs.is_some_and(|hs| g.term_or_vote_differs(hs))
    }

    /// Installs a snapshot received from the leader: saves it, sets the state to it
    /// (ConfState, commit, base), and restarts the log empty after it. Durable on return.
    pub fn apply_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let mut g = self.lock();
        let index = snapshot.get_metadata().index;
        if index <= g.state.base_index {
            return Err(ConsensusError::out_of_order(format!(
                "snapshot at {index} is not newer than the log's base {}",
                g.state.base_index
            )));
        }
        g.install_snapshot(snapshot)
    }

    /// Forgets entries up to and including `index` (whole segments are deleted; `term(index)`
    /// stays answerable). `index` must be committed and covered by the stored snapshot, so a
    /// follower that needs the forgotten entries can be sent the snapshot instead.
    pub fn compact(&self, index: u64) -> Result<()> {
        let mut g = self.lock();
        if index <= g.state.base_index {
            return Ok(());
        }
        if index > g.state.hard_state.commit {
            return Err(ConsensusError::out_of_order(format!(
                "cannot compact to {index}: commit index is {}",
                g.state.hard_state.commit
            )));
        }
        let snapshot_index = g.snapshot_index();
        if index > snapshot_index {
            return Err(ConsensusError::out_of_order(format!(
                "cannot compact to {index}: the stored snapshot is at {snapshot_index}"
            )));
        }
        let term = g.log.term(index)?;
        g.state.base_index = index;
        g.state.base_term = term;
        g.save_state()?;
        g.cache.drop_through(index);
        g.log.drop_prefix(index + 1)?;
        Ok(())
    }

    /// Stores the state machine's snapshot at `index` (applied, so committed), to be sent to
    /// followers that need entries before the first index. Durable on return.
    pub fn set_snapshot(
        &self,
        data: Vec<u8>,
        index: u64,
        term: u64,
        conf_state: ConfState,
    ) -> Result<()> {
        let mut g = self.lock();
        if data.len() > RAFT_SNAPSHOT_BYTES_MAX {
            return Err(ConsensusError::out_of_order(format!(
                "snapshot of {} bytes is more than {RAFT_SNAPSHOT_BYTES_MAX}",
                data.len()
            )));
        }
        g.check_snapshot_position(index, term)?;
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        snapshot.data = Bytes::from(data);
        write_file_durably(&g.raft_dir, SNAPSHOT_FILE, &encode_snapshot(&snapshot)?)?;
        g.snapshot = Some(snapshot);
        Ok(())
    }

    /// Whether raft asked for a snapshot the stored one could not serve since the last
    /// call (the flag is cleared). The state machine answers with `set_snapshot`.
    pub fn take_snapshot_request(&self) -> bool {
        std::mem::take(&mut self.lock().snapshot_wanted)
    }

    /// The stored snapshot (a restarting state machine restores from it), if any.
    pub fn stored_snapshot(&self) -> Option<Snapshot> {
        self.lock().snapshot.clone()
    }

    pub fn hard_state(&self) -> HardState {
        self.lock().state.hard_state.clone()
    }

    pub fn conf_state(&self) -> ConfState {
        self.lock().state.conf_state.clone()
    }

    /// First index raft may read (entries before it were compacted or precede a snapshot).
    pub fn first_index(&self) -> u64 {
        self.lock().first_index()
    }

    /// Last index written.
    pub fn last_index(&self) -> u64 {
        self.lock().log.last_index()
    }

    /// Term of entry `index`, the log base's included.
    pub fn term_of(&self, index: u64) -> Result<u64> {
        self.lock().term(index)
    }
}

impl Inner {
    /// Whether `hs` changes what must be durable before raft answers: term or vote.
    fn term_or_vote_differs(&self, hs: &HardState) -> bool {
        let stored = &self.state.hard_state;
        (hs.term, hs.vote) != (stored.term, stored.vote)
    }

    fn first_index(&self) -> u64 {
        self.state.base_index + 1
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.get_metadata().index)
    }

    /// Makes the log durable, then writes the state file (so a commit index on disk never
    /// points past the durable log).
    fn save_state(&mut self) -> Result<()> {
        self.log.sync()?;
        write_file_durably(&self.raft_dir, STATE_FILE, &encode_state(&self.state)?)?;
        self.state_saved = true;
        self.state_dirty = false;
        Ok(())
    }

    /// Snapshot file, then state, then the log reset: a crash anywhere leaves a state that
    /// `open` completes (see `reconcile_log`).
    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        if snapshot.data.len() > RAFT_SNAPSHOT_BYTES_MAX {
            return Err(ConsensusError::out_of_order(format!(
                "snapshot of {} bytes is more than {RAFT_SNAPSHOT_BYTES_MAX}",
                snapshot.data.len()
            )));
        }
        let meta = snapshot.get_metadata();
        let (index, term) = (meta.index, meta.term);
        if index == 0 {
            return Err(ConsensusError::out_of_order("snapshot at index 0"));
        }
        write_file_durably(&self.raft_dir, SNAPSHOT_FILE, &encode_snapshot(&snapshot)?)?;
        let hs = &mut self.state.hard_state;
        hs.term = hs.term.max(term);
        hs.commit = hs.commit.max(index);
        self.state.conf_state = meta.get_conf_state().clone();
        self.state.base_index = index;
        self.state.base_term = term;
        self.snapshot = Some(snapshot);
        self.cache.clear();
        self.save_state()?;
        self.log.reset_to(index + 1)?;
        Ok(())
    }

    fn check_snapshot_position(&self, index: u64, term: u64) -> Result<()> {
        if index == 0 || index > self.state.hard_state.commit {
            return Err(ConsensusError::out_of_order(format!(
                "snapshot at {index} is not committed (commit index {})",
                self.state.hard_state.commit
            )));
        }
        if index < self.snapshot_index() || index < self.state.base_index {
            return Err(ConsensusError::out_of_order(format!(
                "snapshot at {index} is older than the stored one at {} or the log base {}",
                self.snapshot_index(),
                self.state.base_index
            )));
        }
        let actual = self.term(index)?;
        if actual != term {
            return Err(ConsensusError::out_of_order(format!(
                "snapshot at {index} says term {term}, the log says {actual}"
            )));
        }
        Ok(())
    }

    fn term(&self, index: u64) -> Result<u64> {
        if index == self.state.base_index {
            return Ok(self.state.base_term);
        }
        Ok(self.log.term(index)?)
    }
}

fn load_state(path: &Path) -> Result<Option<PersistentState>> {
    let Some(bytes) = read_file_bounded(path, RAFT_STATE_FILE_BYTES_MAX)? else {
        return Ok(None);
    };
    decode_state(&bytes)
        .map(Some)
        .map_err(|reason| ConsensusError::corrupt(path, reason))
}

fn load_snapshot(path: &Path) -> Result<Option<Snapshot>> {
    let max = (RAFT_SNAPSHOT_BYTES_MAX + SNAPSHOT_META_BYTES_MAX + 64) as u64;
    let Some(bytes) = read_file_bounded(path, max)? else {
        return Ok(None);
    };
    decode_snapshot(&bytes)
        .map(Some)
        .map_err(|reason| ConsensusError::corrupt(path, reason))
}

/// A compacted log needs a snapshot at or after its base, or nothing can rebuild the state
/// machine nor catch up a lagging follower.
fn check_snapshot_covers_base(
    state: &PersistentState,
    snapshot: Option<&Snapshot>,
    raft_dir: &Path,
) -> Result<()> {
    let snapshot_index = snapshot.map_or(0, |s| s.get_metadata().index);
    if state.base_index > snapshot_index {
        let reason = format!(
            "the log starts after index {} but the snapshot is at {snapshot_index}",
            state.base_index
        );
        return Err(ConsensusError::corrupt(
            raft_dir.join(SNAPSHOT_FILE),
            reason,
        ));
    }
    Ok(())
}

/// Whether the log holds nothing but the initial membership `initialize` writes: conf
/// changes of `INIT_TERM` from `INIT_INDEX`, at most one per allowed initial member.
fn holds_only_founders(log: &Log) -> Result<bool> {
    let (first, last) = (log.first_index(), log.last_index());
    if first != INIT_INDEX || last - first >= crate::config::INITIAL_CLUSTER_MEMBERS_MAX as u64 {
        return Ok(false);
    }
    for index in first..=last {
        let r = log.read(index)?;
        if r.term != INIT_TERM || r.kind != KIND_CONF_CHANGE {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A snapshot is only ever taken or installed at a committed index, but the commit index is
/// saved only with a term, vote or membership change, and a snapshot file is written before
/// the state: after a crash the stored snapshot may be past the saved commit index. The
/// commit index is raised to it; when the log does not hold the snapshot's entry, an
/// install was cut short between its two files, and the state is completed as the install
/// would have (the log is then reset by `reconcile_log`). Answers whether it changed the
/// state.
fn raise_commit_to_snapshot(
    state: &mut PersistentState,
    snapshot: Option<&Snapshot>,
    log: &Log,
) -> Result<bool> {
    let Some(meta) = snapshot.map(Snapshot::get_metadata) else {
        return Ok(false);
    };
    if meta.index <= state.hard_state.commit {
        return Ok(false);
    }
    let holds = log.first_index() <= meta.index
        && meta.index <= log.last_index()
        && log.term(meta.index)? == meta.term;
    log::warn!(
        "raft state: commit index {} is behind the stored snapshot at {}{}; raising it",
        state.hard_state.commit,
        meta.index,
        if holds {
            ""
        } else {
            " (an interrupted snapshot install: completing it)"
        }
    );
    if !holds && meta.index > state.base_index {
        state.base_index = meta.index;
        state.base_term = meta.term;
        state.conf_state = meta.get_conf_state().clone();
    }
    let hs = &mut state.hard_state;
    if hs.term < meta.term {
        // A vote belongs to its term.
        hs.term = meta.term;
        hs.vote = 0;
    }
    hs.commit = meta.index;
    Ok(true)
}

/// Makes the log continue the base (index, term) the state names. A crash during a
/// snapshot install can leave the old log, part of it, or an empty one; anything that does
/// not hold the base entry with its term, or start right after it, is reset.
fn reconcile_log(log: &mut Log, base_index: u64, base_term: u64) -> Result<bool> {
    if base_index == 0 {
        return Ok(false);
    }
    let (first, last) = (log.first_index(), log.last_index());
    let continues = if first == base_index + 1 {
        true
    } else if first <= base_index && base_index <= last {
        log.term(base_index)? == base_term
    } else {
        false
    };
    if continues {
        return Ok(false);
    }
    log::warn!(
        "raft log {}..={last} does not continue the snapshot at index {base_index} term \
         {base_term} (interrupted install); resetting it to start at {}",
        first,
        base_index + 1
    );
    log.reset_to(base_index + 1)?;
    Ok(true)
}

fn check_commit(state: &PersistentState, log: &Log, state_path: &Path) -> Result<()> {
    let commit = state.hard_state.commit;
    if commit > log.last_index() || commit < state.base_index {
        let reason = format!(
            "commit index {commit} is outside the log (base {}, last index {})",
            state.base_index,
            log.last_index()
        );
        return Err(ConsensusError::corrupt(state_path, reason));
    }
    Ok(())
}

/// Whether the snapshot's membership includes node `id` in any role.
fn names(s: &Snapshot, id: u64) -> bool {
    let cs = s.get_metadata().get_conf_state();
    cs.voters
        .iter()
        .chain(&cs.learners)
        .chain(&cs.voters_outgoing)
        .chain(&cs.learners_next)
        .any(|&v| v == id)
}

fn to_raft_error(e: ConsensusError) -> raft::Error {
    match e {
        ConsensusError::Log(StorageError::Compacted { .. }) => {
            raft::Error::Store(raft::StorageError::Compacted)
        }
        ConsensusError::Log(StorageError::OutOfRange { .. }) => {
            raft::Error::Store(raft::StorageError::Unavailable)
        }
        other => raft::Error::Store(raft::StorageError::Other(Box::new(other))),
    }
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let g = self.lock();
        Ok(RaftState::new(
            g.state.hard_state.clone(),
            g.state.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        let g = self.lock();
        if low < g.first_index() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > g.log.last_index() + 1 || low > high {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if low == high {
            return Ok(Vec::new());
        }
        if let Some(cached) = g.cache.get(low, high, max_size) {
            return Ok(cached);
        }
        let bytes_max = max_size.unwrap_or(raft::NO_LIMIT);
        let records = g
            .log
            .entries(low, high, bytes_max)
            .map_err(|e| to_raft_error(e.into()))?;
        drop(g);
        let mut out = records
            .into_iter()
            .map(record_to_entry)
            .collect::<Result<Vec<_>>>()
            .map_err(to_raft_error)?;
        raft::util::limit_size(&mut out, max_size);
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let g = self.lock();
        if idx < g.state.base_index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if idx > g.log.last_index() {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        g.term(idx).map_err(to_raft_error)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.lock().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.lock().log.last_index())
    }

    /// The stored snapshot, when it is at least `request_index` and its membership holds
    /// `to` (raft-rs refuses to restore a snapshot that does not name the node, so a node
    /// added after the snapshot was taken needs a newer one). Otherwise the request is
    /// recorded for `take_snapshot_request` and raft retries later.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let mut g = self.lock();
        match &g.snapshot {
            Some(s) if s.get_metadata().index >= request_index && names(s, to) => Ok(s.clone()),
            _ => {
                g.snapshot_wanted = true;
                Err(raft::Error::Store(
                    raft::StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    fn voters(ids: &[u64]) -> ConfState {
        ConfState {
            voters: ids.to_vec(),
            ..ConfState::default()
        }
    }

    fn normal(index: u64, term: u64, kind: Option<u8>, data: &[u8]) -> Entry {
        let mut e = Entry {
            index,
            term,
            data: Bytes::copy_from_slice(data),
            ..Entry::default()
        };
        if let Some(k) = kind {
            e.context = Bytes::from(vec![k]);
        }
        e
    }

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..HardState::default()
        }
    }

    fn open(dir: &Path) -> (RaftStorage, RaftRecovery) {
        RaftStorage::open(dir).expect("open")
    }

    fn open_small(dir: &Path) -> Result<(RaftStorage, RaftRecovery)> {
        let options = LogOptions {
            segment_bytes_max: 256,
            ..LogOptions::default()
        };
        RaftStorage::open_with(&dir.join(LOG_DIR), &dir.join(RAFT_DIR), options)
    }

    fn all(st: &RaftStorage) -> Vec<Entry> {
        let (lo, hi) = (st.first_index(), st.last_index() + 1);
        st.entries(lo, hi, None, ctx()).expect("entries")
    }

    fn terms(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries.iter().map(|e| (e.index, e.term)).collect()
    }

    /// The entries a new cluster of `ids` starts with: AddNode conf changes at 1..=n, term 1.
    fn add_nodes(ids: &[u64]) -> Vec<Entry> {
        let mut index = 0;
        ids.iter()
            .map(|&node_id| {
                index += 1;
                let cc = raft::eraftpb::ConfChange {
                    change_type: raft::eraftpb::ConfChangeType::AddNode,
                    node_id,
                    ..Default::default()
                };
                let mut e = normal(index, 1, None, &cc.write_to_bytes().unwrap());
                e.set_entry_type(EntryType::EntryConfChange);
                e
            })
            .collect()
    }

    /// What each entry's conf change says, decoded (not compared as bytes).
    fn changes(entries: &[Entry]) -> Vec<(EntryType, raft::eraftpb::ConfChangeType, u64)> {
        entries
            .iter()
            .map(|e| {
                let cc = raft::eraftpb::ConfChange::parse_from_bytes(&e.data).unwrap();
                (e.get_entry_type(), cc.get_change_type(), cc.node_id)
            })
            .collect()
    }

    #[test]
    fn fresh_storage_is_empty_and_uninitialized() {
        let dir = tempfile::tempdir().unwrap();
        let (st, rec) = open(dir.path());
        assert!(!rec.initialized);
        assert!(!st.is_initialized());
        assert_eq!((st.first_index(), st.last_index()), (1, 0));
        assert_eq!(Storage::term(&st, 0), Ok(0));
        assert_eq!(
            Storage::term(&st, 1),
            Err(raft::Error::Store(raft::StorageError::Unavailable))
        );
        assert_eq!(st.initial_state().unwrap().conf_state, ConfState::default());
        assert_eq!(
            st.snapshot(0, 2),
            Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable
            ))
        );
    }

    #[test]
    fn initialize_writes_the_founders_as_committed_add_nodes_and_refuses_twice() {
        use raft::eraftpb::ConfChangeType::AddNode;
        let dir = tempfile::tempdir().unwrap();
        let (st, _) = open(dir.path());
        st.initialize(voters(&[1, 2, 3])).unwrap();
        assert!(st.is_initialized());
        let check = |st: &RaftStorage| {
            // Nothing compacted: raft may read from index 1, and the entry before it is
            // the empty log's (0, 0).
            assert_eq!((st.first_index(), st.last_index()), (1, 3));
            assert_eq!(Storage::first_index(st), Ok(1));
            assert_eq!(Storage::term(st, 0), Ok(0));
            assert_eq!(Storage::term(st, 1), Ok(INIT_TERM));
            assert_eq!(Storage::term(st, 3), Ok(INIT_TERM));
            assert_eq!(
                Storage::term(st, 4),
                Err(raft::Error::Store(raft::StorageError::Unavailable))
            );
            assert_eq!(st.hard_state(), hs(1, 0, 3));
            assert_eq!(st.initial_state().unwrap().hard_state, hs(1, 0, 3));
            assert_eq!(st.initial_state().unwrap().conf_state, voters(&[1, 2, 3]));
            let got = all(st);
            assert_eq!(got, add_nodes(&[1, 2, 3]));
            assert_eq!(terms(&got), vec![(1, 1), (2, 1), (3, 1)]);
            assert_eq!(
                changes(&got),
                vec![
                    (EntryType::EntryConfChange, AddNode, 1),
                    (EntryType::EntryConfChange, AddNode, 2),
                    (EntryType::EntryConfChange, AddNode, 3),
                ]
            );
            let r = st.reader();
            assert_eq!((r.first_index(), r.last_index()), (1, 3));
            assert_eq!(r.read(1).unwrap().kind, KIND_CONF_CHANGE);
            // No snapshot: a node that joins later gets the log from index 1.
            assert!(st.stored_snapshot().is_none());
            assert_eq!(
                st.snapshot(0, 4),
                Err(raft::Error::Store(
                    raft::StorageError::SnapshotTemporarilyUnavailable
                ))
            );
            assert!(st.take_snapshot_request());
        };
        check(&st);
        assert!(matches!(
            st.initialize(voters(&[1])),
            Err(ConsensusError::AlreadyInitialized)
        ));
        check(&st);
        drop(st);
        let (st, rec) = open(dir.path());
        assert!(rec.initialized);
        assert!(!rec.log_reset);
        assert_eq!((rec.first_index, rec.last_index), (1, 3));
        assert_eq!((rec.snapshot_index, rec.snapshot_term), (0, 0));
        assert_eq!(rec.hard_state, hs(1, 0, 3));
        assert_eq!(rec.conf_state, voters(&[1, 2, 3]));
        check(&st);
        assert!(matches!(
            st.initialize(voters(&[1, 2, 3])),
            Err(ConsensusError::AlreadyInitialized)
        ));
        // Every founder writes the same entries, whatever order it was given the members
        // in (the same index and term must mean the same entry on every node).
        let other = tempfile::tempdir().unwrap();
        let (st2, _) = open(other.path());
        st2.initialize(voters(&[3, 1, 2, 1])).unwrap();
        check(&st2);
        assert_eq!(all(&st2), all(&st));
        let single = tempfile::tempdir().unwrap();
        let (st1, _) = open(single.path());
        st1.initialize(voters(&[7])).unwrap();
        assert_eq!((st1.first_index(), st1.last_index()), (1, 1));
        assert_eq!(all(&st1), add_nodes(&[7]));
        assert_eq!(st1.hard_state(), hs(1, 0, 1));
        let fresh = tempfile::tempdir().unwrap();
        let (st2, _) = open(fresh.path());
        assert!(matches!(
            st2.initialize(ConfState::default()),
            Err(ConsensusError::Raft(raft::Error::ConfigInvalid(_)))
        ));
    }

    #[test]
    fn reopen_round_trips_entries_hard_state_conf_state_and_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (st, _) = open(dir.path());
        st.initialize(voters(&[1, 2, 3])).unwrap();
        // After the founders' entries 1..=3: a new leader's empty entry, normal entries and
        // conf changes of both kinds.
        let mut cc = normal(7, 2, None, b"\x08\x04");
        cc.set_entry_type(EntryType::EntryConfChange);
        let mut cc2 = normal(8, 2, None, b"");
        cc2.set_entry_type(EntryType::EntryConfChangeV2);
        let written = vec![
            normal(4, 2, None, b""),
            normal(5, 2, Some(2), b"binlog bytes"),
            normal(6, 2, Some(3), b"{\"cmd\":1}"),
            cc,
            cc2,
        ];
        st.append(&written).unwrap();
        st.set_hard_state(hs(2, 1, 6));
        st.set_conf_state(voters(&[1, 2, 3, 4]));
        st.persist().unwrap();
        st.set_snapshot(b"state at 5".to_vec(), 5, 2, voters(&[1, 2, 3]))
            .unwrap();
        let mut expect = add_nodes(&[1, 2, 3]);
        expect.extend(written.iter().cloned());
        assert_eq!(all(&st), expect);
        drop(st);

        let (st, rec) = open(dir.path());
        // The snapshot does not compact: the founders' entries are still there.
        assert_eq!(all(&st), expect);
        assert_eq!(rec.hard_state, hs(2, 1, 6));
        assert_eq!(st.initial_state().unwrap().hard_state, hs(2, 1, 6));
        assert_eq!(st.conf_state().voters, vec![1, 2, 3, 4]);
        assert_eq!((rec.first_index, rec.last_index), (1, 8));
        assert_eq!((rec.snapshot_index, rec.snapshot_term), (5, 2));
        let snap = st.snapshot(5, 2).unwrap();
        assert_eq!(&snap.data[..], b"state at 5");
        assert!(!st.take_snapshot_request());
        // Node 4 joined after this snapshot: it cannot restore it, so a newer is requested.
        assert_eq!(
            st.snapshot(0, 4),
            Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable
            ))
        );
        assert!(st.take_snapshot_request());
        assert!(!st.take_snapshot_request());
        assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
        assert_eq!(
            st.snapshot(6, 2),
            Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable
            ))
        );
        assert!(!rec.log_reset);
        // The binlog server's reader sees the same records, kinds as mapped.
        let r = st.reader();
        assert_eq!(r.read(1).unwrap().kind, KIND_CONF_CHANGE);
        assert_eq!(r.read(5).unwrap().kind, 2);
        assert_eq!(&r.read(5).unwrap().data[..], b"binlog bytes");
        assert_eq!(r.read(7).unwrap().kind, KIND_CONF_CHANGE);
        assert_eq!(r.read(8).unwrap().kind, KIND_CONF_CHANGE_V2);
        assert_eq!(r.read(4).unwrap().kind, KIND_EMPTY);
    }

    #[test]
    fn unpersisted_hard_state_is_not_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (st, _) = open(dir.path());
        st.initialize(voters(&[1])).unwrap();
        st.append(&[normal(2, 2, None, b"")]).unwrap();
        st.set_hard_state(hs(2, 1, 2));
        drop(st);
        let (st, _) = open(dir.path());
        assert_eq!(st.hard_state(), hs(1, 0, 1));
    }

    #[test]
    fn conflicting_suffix_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (st, _) = open(dir.path());
        st.initialize(voters(&[1, 2, 3])).unwrap();
        let first: Vec<Entry> = (4..=8)
            .map(|i| normal(i, 2, Some(2), format!("old{i}").as_bytes()))
            .collect();
        st.append(&first).unwrap();
        st.persist().unwrap();
        st.append(&[
            normal(6, 3, Some(2), b"new6"),
            normal(7, 3, Some(2), b"new7"),
        ])
        .unwrap();
        st.persist().unwrap();
        assert_eq!(st.last_index(), 7);
        let want = vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 3), (7, 3)];
        let got = all(&st);
        assert_eq!(terms(&got), want);
        assert_eq!(&got[..3], &add_nodes(&[1, 2, 3])[..]);
        assert_eq!(&got[4].data[..], b"old5");
        assert_eq!(&got[5].data[..], b"new6");
        assert_eq!(
            Storage::term(&st, 8),
            Err(raft::Error::Store(raft::StorageError::Unavailable))
        );
        // A gap is refused (overwriting compacted entries: see the compaction test).
        assert!(matches!(
            st.append(&[normal(9, 3, None, b"")]),
            Err(ConsensusError::OutOfOrder { .. })
        ));
        assert_eq!(st.last_index(), 7);
        drop(st);
        let (st, _) = open(dir.path());
        let got = all(&st);
        assert_eq!(terms(&got), want);
        assert_eq!(&got[..3], &add_nodes(&[1, 2, 3])[..]);
        assert_eq!(&got[6].data[..], b"new7");
    }

    #[test]
    fn entries_from_the_cache_are_the_log_s() {
        let dir = tempfile::tempdir().unwrap();
        let (st, _) = open(dir.path());
        st.initialize(voters(&[1])).unwrap();
        // What raft-rs gets for every range, against the log's files read back.
        let check = |st: &RaftStorage| {
            let (lo, hi) = (st.first_index(), st.last_index() + 1);
            let disk: Vec<Entry> = st
                .reader()
                .entries(lo, hi, u64::MAX)
                .unwrap()
                .into_iter()
                .map(|r| record_to_entry(r).unwrap())
                .collect();
            assert_eq!(disk.len() as u64, hi - lo);
            for low in lo..hi {
                for high in low + 1..=hi {
                    let got = st.entries(low, high, None, ctx()).unwrap();
                    assert_eq!(got[..], disk[(low - lo) as usize..(high - lo) as usize]);
                }
            }
        };
        let es: Vec<Entry> = (2..=20)
            .map(|i| normal(i, 2, Some(2), format!("entry {i}").as_bytes()))
            .collect();
        st.append(&es).unwrap();
        st.persist().unwrap();
        check(&st);
        // Served from memory: the very bytes that were appended.
        let got = st.entries(20, 21, None, ctx()).unwrap();
        assert_eq!(got[0].data.as_ptr(), es[18].data.as_ptr());
        // A conflicting suffix replaces the cached tail too.
        st.append(&[normal(10, 3, Some(2), b"new 10"), normal(11, 3, None, b"")])
            .unwrap();
        st.persist().unwrap();
        assert_eq!(st.last_index(), 11);
        check(&st);
        // Applied entries are read from the files again; later ones still from memory.
        st.release_applied(6);
        check(&st);
        st.set_commit(11);
        st.set_snapshot(b"state".to_vec(), 8, 2, voters(&[1]))
            .unwrap();
        st.compact(8).unwrap();
        assert_eq!(st.first_index(), 9);
        check(&st);
        st.append(&[normal(12, 3, Some(2), b"after compaction")])
            .unwrap();
        st.persist().unwrap();
        check(&st);
        // A batch the log refuses (a gap inside it) leaves the cache empty, not wrong.
        assert!(st
            .append(&[normal(13, 3, None, b"x"), normal(15, 3, None, b"y")])
            .is_err());
        assert_eq!(st.last_index(), 12);
        check(&st);
        st.append(&[normal(13, 3, Some(2), b"13")]).unwrap();
        st.persist().unwrap();
        check(&st);
        // A snapshot from the leader resets the log, and the cache with it.
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 30;
        snap.mut_metadata().term = 4;
        snap.mut_metadata().set_conf_state(voters(&[1]));
        st.apply_snapshot(snap).unwrap();
        assert_eq!(
            st.entries(12, 14, None, ctx()),
            Err(raft::Error::Store(raft::StorageError::Compacted))
        );
        st.append(&[normal(31, 4, Some(2), b"31"), normal(32, 4, None, b"")])
            .unwrap();
        st.persist().unwrap();
        check(&st);
    }

    #[test]
    fn entries_respect_max_size_but_return_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let (st, _) = open(dir.path());
        st.initialize(voters(&[1])).unwrap();
        let es: Vec<Entry> = (2..=6).map(|i| normal(i, 2, Some(2), &[7; 100])).collect();
        st.append(&es).unwrap();
        st.persist().unwrap();
        let one = u64::from(es[0].compute_size());
        assert_eq!(st.entries(2, 7, Some(0), ctx()).unwrap().len(), 1);
        assert_eq!(st.entries(2, 7, Some(one), ctx()).unwrap().len(), 1);
        assert_eq!(st.entries(2, 7, Some(2 * one), ctx()).unwrap().len(), 2);
        assert_eq!(st.entries(2, 7, Some(2 * one + 1), ctx()).unwrap().len(), 2);
        assert_eq!(st.entries(2, 7, None, ctx()).unwrap(), es);
        assert_eq!(st.entries(3, 3, None, ctx()).unwrap(), vec![]);
        // From index 1 (nothing compacted): the founder's AddNode comes first, and alone
        // when the size limit allows no more.
        let from_1 = st.entries(1, 3, Some(0), ctx()).unwrap();
        assert_eq!(from_1, add_nodes(&[1]));
        assert_eq!(st.entries(1, 7, None, ctx()).unwrap()[1..], es[..]);
        assert_eq!(
            st.entries(0, 3, None, ctx()),
            Err(raft::Error::Store(raft::StorageError::Compacted))
        );
        assert_eq!(
            st.entries(2, 8, None, ctx()),
            Err(raft::Error::Store(raft::StorageError::Unavailable))
        );
    }

    #[test]
    fn compaction_keeps_the_base_term_and_needs_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (st, _) = open_small(dir.path()).unwrap();
        st.initialize(voters(&[1, 2, 3])).unwrap();
        let es: Vec<Entry> = (4..=50)
            .map(|i| normal(i, 2 + i / 20, Some(2), &[i as u8; 40]))
            .collect();
        st.append(&es).unwrap();
        st.set_hard_state(hs(4, 1, 40));
        st.persist().unwrap();
        // No snapshot covers 30 yet, and 45 is not committed.
        assert!(matches!(
            st.compact(30),
            Err(ConsensusError::OutOfOrder { .. })
        ));
        assert!(matches!(
            st.set_snapshot(b"sm".to_vec(), 45, 4, voters(&[1, 2, 3])),
            Err(ConsensusError::OutOfOrder { .. })
        ));
        assert!(matches!(
            st.set_snapshot(b"sm".to_vec(), 30, 2, voters(&[1, 2, 3])),
            Err(ConsensusError::OutOfOrder { .. })
        ));
        st.set_snapshot(b"sm at 30".to_vec(), 30, 3, voters(&[1, 2, 3]))
            .unwrap();
        st.compact(30).unwrap();
        let check = |st: &RaftStorage| {
            assert_eq!(st.first_index(), 31);
            assert_eq!(Storage::first_index(st), Ok(31));
            assert_eq!(Storage::term(st, 30), Ok(3));
            assert_eq!(Storage::term(st, 31), Ok(3));
            assert_eq!(Storage::term(st, 40), Ok(4));
            assert_eq!(
                Storage::term(st, 29),
                Err(raft::Error::Store(raft::StorageError::Compacted))
            );
            assert_eq!(
                st.entries(30, 32, None, ctx()),
                Err(raft::Error::Store(raft::StorageError::Compacted))
            );
            let got = st.entries(31, 51, None, ctx()).unwrap();
            assert_eq!(got, es[27..].to_vec());
            assert_eq!(got[0].index, 31);
            // Whole segments before the base are gone from disk (the founders' entries
            // with them); readers may still see the rest of the segment holding the base.
            let r = st.reader();
            assert!(r.first_index() > 1 && r.first_index() <= 31, "{r:?}");
        };
        check(&st);
        // Compacted entries cannot be overwritten, the base included.
        for index in [1, 30] {
            assert!(matches!(
                st.append(&[normal(index, 5, None, b"")]),
                Err(ConsensusError::OutOfOrder { .. })
            ));
        }
        assert_eq!(st.last_index(), 50);
        // Compacting to an older index is a no-op.
        st.compact(10).unwrap();
        assert_eq!(st.first_index(), 31);
        drop(st);
        let (st, rec) = open_small(dir.path()).unwrap();
        assert_eq!((rec.first_index, rec.last_index), (31, 50));
        check(&st);
    }

    #[test]
    fn apply_snapshot_resets_the_log_durably() {
        let dir = tempfile::tempdir().unwrap();
        let (st, _) = open(dir.path());
        st.initialize(voters(&[1, 2, 3])).unwrap();
        st.append(
            &(4..=10)
                .map(|i| normal(i, 2, None, b""))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        st.set_hard_state(hs(2, 1, 5));
        st.persist().unwrap();
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 20;
        snap.mut_metadata().term = 5;
        snap.mut_metadata().set_conf_state(voters(&[1, 2, 3, 4]));
        snap.data = Bytes::from_static(b"leader state");
        st.apply_snapshot(snap.clone()).unwrap();
        let check = |st: &RaftStorage| {
            assert_eq!((st.first_index(), st.last_index()), (21, 20));
            assert_eq!(Storage::term(st, 20), Ok(5));
            assert_eq!(st.hard_state(), hs(5, 1, 20));
            assert_eq!(st.conf_state().voters, vec![1, 2, 3, 4]);
            assert_eq!(st.snapshot(0, 4).unwrap(), snap);
        };
        check(&st);
        st.append(&[normal(21, 5, Some(2), b"after")]).unwrap();
        st.persist().unwrap();
        assert!(matches!(
            st.apply_snapshot(snap.clone()),
            Err(ConsensusError::OutOfOrder { .. })
        ));
        drop(st);
        let (st, rec) = open(dir.path());
        assert!(!rec.log_reset);
        assert_eq!(st.last_index(), 21);
        assert_eq!(Storage::term(&st, 20), Ok(5));
        assert_eq!(&all(&st)[0].data[..], b"after");
    }

    #[test]
    fn interrupted_snapshot_install_is_completed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (st, _) = open(dir.path());
        st.initialize(voters(&[1])).unwrap();
        st.append(
            &(2..=10)
                .map(|i| normal(i, 2, None, b""))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        st.persist().unwrap();
        {
            // Snapshot and state written, crash before the log reset.
            let mut g = st.lock();
            let mut snap = Snapshot::default();
            snap.mut_metadata().index = 8;
            snap.mut_metadata().term = 3;
            let raft_dir = g.raft_dir.clone();
            write_file_durably(&raft_dir, SNAPSHOT_FILE, &encode_snapshot(&snap).unwrap()).unwrap();
            g.state.base_index = 8;
            g.state.base_term = 3;
            g.state.hard_state.commit = 8;
            g.save_state().unwrap();
        }
        drop(st);
        let (st, rec) = open(dir.path());
        assert!(rec.log_reset);
        assert_eq!((st.first_index(), st.last_index()), (9, 8));
        assert_eq!(Storage::term(&st, 8), Ok(3));
        assert_eq!(st.reader().first_index(), 9);
    }

    fn corrupt_and_open(name: &str, edit: impl Fn(&mut Vec<u8>)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let (st, _) = open(dir.path());
        st.initialize(voters(&[1, 2, 3])).unwrap();
        // A new cluster has no snapshot file; store one (over the committed founders).
        st.set_snapshot(b"sm".to_vec(), 3, INIT_TERM, voters(&[1, 2, 3]))
            .unwrap();
        drop(st);
        RaftStorage::open(dir.path()).expect("opens before the damage");
        let path = dir.path().join(RAFT_DIR).join(name);
        let mut bytes = fs::read(&path).unwrap();
        edit(&mut bytes);
        fs::write(&path, &bytes).unwrap();
        match RaftStorage::open(dir.path()) {
            Err(e @ ConsensusError::CorruptFile { .. }) => e.to_string(),
            other => panic!("expected a corrupt-file error, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_state_files_refuse_to_open() {
        let msg = corrupt_and_open(STATE_FILE, |b| {
            let last = b.len() - 1;
            b[last] ^= 0x01;
        });
        assert!(msg.contains("CRC32 mismatch"), "{msg}");
        assert!(msg.contains("raft/state"), "{msg}");
        let msg = corrupt_and_open(STATE_FILE, |b| b[0] = b'X');
        assert!(msg.contains("bad magic"), "{msg}");
        let msg = corrupt_and_open(STATE_FILE, |b| b.truncate(10));
        assert!(msg.contains("shorter than its header"), "{msg}");
        let msg = corrupt_and_open(STATE_FILE, |b| b[8] = 9);
        assert!(msg.contains("unknown format version 9"), "{msg}");
        let msg = corrupt_and_open(SNAPSHOT_FILE, |b| b[20] ^= 0x40);
        assert!(msg.contains("CRC32 mismatch"), "{msg}");
        assert!(msg.contains("raft/snapshot"), "{msg}");
        // A well-formed body with a lying length is still caught.
        let msg = corrupt_and_open(STATE_FILE, |b| {
            b.truncate(FILE_HEADER_LEN + 16);
            b.extend_from_slice(&100u32.to_le_bytes());
            let crc = crc32fast::hash(&b[FILE_HEADER_LEN..]);
            b[12..16].copy_from_slice(&crc.to_le_bytes());
        });
        assert!(msg.contains("truncated"), "{msg}");
    }

    /// `initialize` cut short between the founders' entries and the state file: the next
    /// start begins again, rather than refusing for good.
    #[test]
    fn an_interrupted_first_start_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ConfState {
            voters: vec![3, 1, 2],
            ..ConfState::default()
        };
        {
            let (storage, _) = RaftStorage::open(dir.path()).unwrap();
            storage.initialize(cs.clone()).unwrap();
        }
        // As if the crash came before the state file was written.
        fs::remove_file(dir.path().join(RAFT_DIR).join(STATE_FILE)).unwrap();
        let (storage, recovery) = RaftStorage::open(dir.path()).unwrap();
        assert!(!recovery.initialized);
        assert_eq!(storage.last_index(), 0);
        storage.initialize(cs).unwrap();
        assert_eq!(storage.last_index(), 3);
    }

    #[test]
    fn a_log_without_state_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _) = Log::open(&dir.path().join(LOG_DIR)).unwrap();
            log.append(&[log_store::Entry {
                index: 1,
                term: 0,
                kind: 2,
                data: vec![1].into(),
            }])
            .unwrap();
            log.sync().unwrap();
        }
        let err = RaftStorage::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, ConsensusError::LogWithoutState { .. }),
            "{err}"
        );
    }

    #[test]
    fn entry_mapping_round_trips_and_refuses_what_it_cannot_carry() {
        let mut cc = normal(9, 4, None, b"\x08\x01\x10\x04");
        cc.set_entry_type(EntryType::EntryConfChange);
        for e in [
            normal(1, 1, None, b""),
            normal(2, 1, Some(1), b"fs"),
            normal(3, 2, Some(NORMAL_KIND_MAX), b"x"),
            cc.clone(),
        ] {
            let r = entry_to_record(&e).unwrap();
            assert_eq!(record_to_entry(r).unwrap(), e);
        }
        assert_eq!(entry_to_record(&cc).unwrap().kind, 0x40);
        for bad_context in [&[0u8][..], &[0x40], &[1, 2]] {
            let mut e = normal(5, 1, None, b"");
            e.context = Bytes::copy_from_slice(bad_context);
            assert!(matches!(
                entry_to_record(&e),
                Err(ConsensusError::Unrepresentable { index: 5, .. })
            ));
        }
        let mut e = cc;
        e.context = Bytes::from_static(b"c");
        assert!(entry_to_record(&e).is_err());
        let big = normal(6, 1, Some(2), &vec![0; ENTRY_PAYLOAD_MAX + 1]);
        assert!(entry_to_record(&big).is_err());
        let r = log_store::Entry {
            index: 7,
            term: 1,
            kind: 0x42,
            data: Bytes::new(),
        };
        assert!(matches!(
            record_to_entry(r),
            Err(ConsensusError::Unrepresentable { index: 7, .. })
        ));
    }

    #[test]
    fn state_and_snapshot_encodings_round_trip() {
        let s = PersistentState {
            hard_state: hs(7, 3, 99),
            conf_state: voters(&[1, 3, 5]),
            base_index: 42,
            base_term: 6,
        };
        let bytes = encode_state(&s).unwrap();
        assert_eq!(&bytes[..8], b"FBRAFTST");
        assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
        assert_eq!(decode_state(&bytes).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(decode_state(&bytes[..cut]).is_err());
        }
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 10;
        snap.mut_metadata().term = 2;
        snap.data = Bytes::from_static(b"data");
        let bytes = encode_snapshot(&snap).unwrap();
        assert_eq!(&bytes[..8], b"FBRAFTSN");
        assert_eq!(decode_snapshot(&bytes).unwrap(), snap);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x08;
            assert!(decode_snapshot(&bad).is_err(), "flip at {i} undetected");
        }
    }
}
