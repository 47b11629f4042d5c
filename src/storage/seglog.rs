//! The durable segmented append-only log: one writer ([`Log`]) and any number of
//! concurrent readers ([`LogReader`]).
//!
//! A log is a directory of segment files named by their first index
//! (`00000000000000000001.seg`), each a header then contiguous records (see `record`).
//! The writer appends records through a write buffer, one write syscall per batch of small
//! entries; an entry of at least `LOG_WRITE_IN_PLACE_BYTES_MIN` goes in a vectored write
//! (what is buffered, then its data from where it is, not copied). It makes them durable
//! with one fdatasync per `sync` (group commit). It keeps, shared with readers behind an
//! `RwLock`, the position and term of every record; readers look a position up under the
//! read lock, drop the lock and `pread` the record, so they never wait for a write or an
//! fsync (the writer holds the write lock only to push positions or publish an index).
//!
//! **Visibility contract:** readers see an entry only once a `sync` that covers it has
//! returned (or, after `open`, the entries recovered from disk). The writer itself sees
//! everything it wrote.
//!
//! A sync can also run on another thread: `begin_sync` hands out a [`SyncJob`] (the files
//! to fdatasync and the last index they cover), the job runs anywhere, and `finish_sync`
//! publishes that index. The writer keeps appending meanwhile; what would remove or sync
//! bytes the job covers (`sync`, `truncate_suffix`, `drop_prefix`, `reset_to`, another
//! `begin_sync`) is refused with `SyncInFlight` until the job is finished. Every whole-entry read verifies the record's CRC32 and index; a
//! range read (`read_data_range`) checks the index and length only, since it never holds
//! the whole record (its caller must verify what it reads, see that method).
//!
//! Crash safety: segments are created as a temp file (header, fsync), renamed into place,
//! then the directory is fsynced, so a segment never has a partial header. `open` truncates
//! a torn tail of the last segment only and reports it; anything else wrong refuses to open.
//!
//! Preallocation: a small append (a buffered write of at most a quarter of
//! [`LogOptions::preallocate_bytes`], not one carrying a large entry's data) that reaches the
//! end of the active segment also writes that many zeros after it, so that the following appends land
//! inside the file and their fdatasync need not write the inode too. A segment is cut back
//! to its last record (durably) before the next one is created, and `open` cuts an all-zero
//! tail of any segment silently (it is preallocated space, not a torn write; a sealed
//! segment can hold one only if the process died between that cut and the next segment's
//! creation, and a lost record there would show as a gap before the next segment).
//!
//! This module must not interpret entry data (kind and data are opaque), and must not
//! panic on anything it reads from disk.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use crate::limits::{
    ENTRY_PAYLOAD_MAX, LOG_PREALLOCATE_BYTES, LOG_WRITE_BUFFER_BYTES_MAX,
    LOG_WRITE_IN_PLACE_BYTES_MIN, SEGMENT_BYTES_MAX,
};
use crate::storage::error::StorageError;
use crate::storage::latency::LatencyHistogram;
use crate::storage::record::{
    decode_body_fixed, decode_header, decode_prefix, decode_record, encode_header,
    encode_record_head_into, encode_record_into, record_len, Entry, BODY_FIXED_LEN,
    RECORD_OVERHEAD, RECORD_PREFIX_LEN, SEGMENT_HEADER_LEN,
};

/// Result of storage operations.
pub type Result<T> = std::result::Result<T, StorageError>;

const SEGMENT_SUFFIX: &str = ".seg";
const TEMP_SUFFIX: &str = ".seg.tmp";
const SEGMENT_NAME_DIGITS: usize = 20;
/// Largest index the log accepts, far below `u64::MAX` so index arithmetic never overflows
/// whatever a damaged header says.
const INDEX_MAX: u64 = u64::MAX / 2;

/// Tunables of a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// A segment rolls before a record that would take it past this many bytes (a segment
    /// holding a single record may exceed it; a record is never split).
    pub segment_bytes_max: u64,
    /// Zeros written past the active segment's end when a buffered write of at most a
    /// quarter of this reaches it (0: never; see the module doc).
    pub preallocate_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes_max: SEGMENT_BYTES_MAX,
            preallocate_bytes: LOG_PREALLOCATE_BYTES,
        }
    }
}

/// What `Log::open` found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files found.
    pub segments: usize,
    /// First and last index in the log after recovery (`last_index == first_index - 1`
    /// when the log holds no entry).
    pub first_index: u64,
    pub last_index: u64,
    /// The segment whose torn tail was cut off; None when nothing was cut.
    pub segment: Option<PathBuf>,
    /// Offset in `segment` where the cut was made.
    pub truncated_at_offset: u64,
    /// Bytes cut off (0 when the log was clean).
    pub truncated_bytes: u64,
}

/// Where one record lives; `len` is the whole record (prefix + body).
#[derive(Clone, Copy, Debug)]
struct Loc {
    offset: u64,
    term: u64,
    len: u32,
}

struct SegView {
    first_index: u64,
    path: Arc<Path>,
    file: Arc<File>,
    locs: Vec<Loc>,
}

impl SegView {
    fn next_index(&self) -> u64 {
        self.first_index + self.locs.len() as u64
    }
}

/// What readers and the writer share.
struct View {
    /// First index held (the next index to be written when no segment exists).
    first_index: u64,
    /// Last index readers may see (durable).
    visible_last: u64,
    segments: Vec<SegView>,
}

impl View {
    fn written_last(&self) -> u64 {
        match self.segments.last() {
            Some(s) => s.next_index() - 1,
            None => self.first_index - 1,
        }
    }
}

struct Shared {
    view: RwLock<View>,
    /// Bumped (under the write lock) before the writer removes or rewrites bytes a reader
    /// may have located; a reader whose read straddled a bump retries.
    epoch: AtomicU64,
}

impl Shared {
    fn disk_bytes(&self) -> u64 {
        let v = self.read();
        let records: u64 = v
            .segments
            .iter()
            .flat_map(|s| s.locs.iter())
            .map(|l| u64::from(l.len))
            .sum();
        records + (v.segments.len() * SEGMENT_HEADER_LEN) as u64
    }

    fn read(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Finds entry `index`, seen up to `last` (visible or written).
    fn locate(&self, index: u64, writer: bool) -> Result<(Arc<File>, Arc<Path>, Loc, u64)> {
        let v = self.read();
        let last = if writer {
            v.written_last()
        } else {
            v.visible_last
        };
        if index < v.first_index {
            return Err(StorageError::Compacted { index });
        }
        if index > last {
            return Err(StorageError::OutOfRange {
                index,
                last_index: last,
            });
        }
        let pos = v.segments.partition_point(|s| s.first_index <= index);
        let seg = pos.checked_sub(1).and_then(|p| v.segments.get(p));
        let Some(seg) = seg else {
            return Err(StorageError::Compacted { index });
        };
        let loc = seg.locs.get((index - seg.first_index) as usize);
        let Some(&loc) = loc else {
            return Err(StorageError::OutOfRange {
                index,
                last_index: last,
            });
        };
        let epoch = self.epoch.load(Ordering::SeqCst);
        Ok((seg.file.clone(), seg.path.clone(), loc, epoch))
    }

    fn term(&self, index: u64, writer: bool) -> Result<u64> {
        self.locate(index, writer).map(|(_, _, loc, _)| loc.term)
    }

    fn read_entry(&self, index: u64, writer: bool) -> Result<Entry> {
        loop {
            let (file, path, loc, epoch) = self.locate(index, writer)?;
            let result = read_record(&file, &path, loc, index);
            if self.epoch.load(Ordering::SeqCst) == epoch {
                return result;
            }
            // The writer truncated or reset while we read: look the entry up again.
        }
    }

    fn read_range(&self, index: u64, offset: usize, buf: &mut [u8]) -> Result<DataRange> {
        loop {
            let (file, path, loc, epoch) = self.locate(index, false)?;
            let result = read_record_range(&file, &path, loc, index, offset, buf);
            if self.epoch.load(Ordering::SeqCst) == epoch {
                return result;
            }
            // As in `read_entry`: the bytes may belong to another record now; look again.
        }
    }

    fn entries(&self, low: u64, high: u64, bytes_max: u64, writer: bool) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut total = 0u64;
        for index in low..high {
            let e = self.read_entry(index, writer)?;
            total += e.data.len() as u64;
            if !out.is_empty() && total > bytes_max {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }
}

/// Reads and verifies the record at `loc`, which must hold entry `index`. Two preads (the
/// fixed part, then the data straight into the entry's buffer) avoid copying the data.
fn read_record(file: &File, path: &Path, loc: Loc, index: u64) -> Result<Entry> {
    let mut head = [0u8; RECORD_OVERHEAD];
    file.read_exact_at(&mut head, loc.offset)
        .map_err(|e| StorageError::io(path, "read", e))?;
    let corrupt = |reason: String| StorageError::corrupt(path, loc.offset, reason);
    let (body_len, crc) = decode_prefix(&head).map_err(|e| corrupt(e.to_string()))?;
    if RECORD_PREFIX_LEN as u64 + u64::from(body_len) != u64::from(loc.len) {
        return Err(corrupt(format!("record length {body_len} changed")));
    }
    let (found, term, kind) =
        decode_body_fixed(&head[RECORD_PREFIX_LEN..]).map_err(|e| corrupt(e.to_string()))?;
    let mut data = vec![0u8; body_len as usize - BODY_FIXED_LEN];
    file.read_exact_at(&mut data, loc.offset + RECORD_OVERHEAD as u64)
        .map_err(|e| StorageError::io(path, "read", e))?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[RECORD_PREFIX_LEN..]);
    hasher.update(&data);
    if hasher.finalize() != crc {
        return Err(corrupt(format!("CRC32 mismatch in entry {index}")));
    }
    if found != index {
        return Err(corrupt(format!(
            "entry {found} found where {index} expected"
        )));
    }
    Ok(Entry {
        index,
        term,
        kind,
        data: data.into(),
    })
}

/// What [`LogReader::read_data_range`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataRange {
    /// The entry's kind.
    pub kind: u8,
    /// Bytes of the entry's whole data.
    pub data_len: usize,
    /// Bytes copied into the buffer: `buf.len()`, or fewer at the end of the data (0 when
    /// the offset is at or past it).
    pub read: usize,
}

/// Reads part of the data of the record at `loc`, which must hold entry `index`: the fixed
/// part (length, index, kind checked), and the bytes asked for, straight into `buf`: in one
/// `preadv` from the data's start (a dump reads most entries whole, and many are small),
/// else in two reads. The record's CRC32 covers the whole body and so is not checked (see
/// `read_data_range`).
fn read_record_range(
    file: &File,
    path: &Path,
    loc: Loc,
    index: u64,
    offset: usize,
    buf: &mut [u8],
) -> Result<DataRange> {
    let mut head = [0u8; RECORD_OVERHEAD];
    // What the index says the data holds; checked against the record's own length below.
    let indexed_len = (loc.len as usize).saturating_sub(RECORD_OVERHEAD);
    let read = indexed_len.saturating_sub(offset).min(buf.len());
    let together = offset == 0 && read > 0;
    if together {
        read_exact_pair_at(file, &mut head, &mut buf[..read], loc.offset)
    } else {
        file.read_exact_at(&mut head, loc.offset)
    }
    .map_err(|e| StorageError::io(path, "read", e))?;
    let corrupt = |reason: String| StorageError::corrupt(path, loc.offset, reason);
    let (body_len, _) = decode_prefix(&head).map_err(|e| corrupt(e.to_string()))?;
    if RECORD_PREFIX_LEN as u64 + u64::from(body_len) != u64::from(loc.len) {
        return Err(corrupt(format!("record length {body_len} changed")));
    }
    let (found, _, kind) =
        decode_body_fixed(&head[RECORD_PREFIX_LEN..]).map_err(|e| corrupt(e.to_string()))?;
    if found != index {
        return Err(corrupt(format!(
            "entry {found} found where {index} expected"
        )));
    }
    if read > 0 && !together {
        let at = loc.offset + RECORD_OVERHEAD as u64 + offset as u64;
        file.read_exact_at(&mut buf[..read], at)
            .map_err(|e| StorageError::io(path, "read", e))?;
    }
    Ok(DataRange {
        kind,
        // The record's length matches the index's (checked above).
        data_len: indexed_len,
        read,
    })
}

/// A cheap, cloneable handle for reading the log from any thread. It sees entries made
/// durable by the writer's `sync` (see the module doc).
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl LogReader {
    /// Bytes of all segment files (headers and records).
    pub fn disk_bytes(&self) -> u64 {
        self.shared.disk_bytes()
    }
}

impl fmt::Debug for LogReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogReader")
            .field("first_index", &self.first_index())
            .field("last_index", &self.last_index())
            .finish()
    }
}

impl LogReader {
    /// First entry still held (entries before it were compacted). When the log holds no
    /// entry this is the index the next entry will have.
    pub fn first_index(&self) -> u64 {
        self.shared.read().first_index
    }

    /// Last durable entry (`first_index() - 1` when none).
    pub fn last_index(&self) -> u64 {
        self.shared.read().visible_last
    }

    /// Term of a durable entry, from memory.
    pub fn term(&self, index: u64) -> Result<u64> {
        self.shared.term(index, false)
    }

    /// Reads a durable entry from disk, verifying its CRC32.
    pub fn read(&self, index: u64) -> Result<Entry> {
        self.shared.read_entry(index, false)
    }

    /// Bytes of a durable entry's data, from memory.
    pub fn data_len(&self, index: u64) -> Result<usize> {
        let (_, _, loc, _) = self.shared.locate(index, false)?;
        Ok((loc.len as usize).saturating_sub(RECORD_OVERHEAD))
    }

    /// Reads the bytes of a durable entry's data from `offset` into `buf` (fewer at the end
    /// of the data), with its kind and data length, without reading the rest of the record:
    /// a reader streaming a large entry holds only `buf`.
    ///
    /// Unlike [`LogReader::read`], this does NOT verify the record's CRC32 (it covers the
    /// whole body); it checks only the record's index and length. Use it only where the
    /// bytes carry their own checksum that the caller verifies before trusting them (the
    /// binlog server checks every event's CRC32 before sending it, or before sending the
    /// last piece of one it streams).
    pub fn read_data_range(&self, index: u64, offset: usize, buf: &mut [u8]) -> Result<DataRange> {
        self.shared.read_range(index, offset, buf)
    }

    /// Entries `low..high`, stopping before the data would exceed `bytes_max` (at least one
    /// entry is returned when the range is not empty), as raft-rs `Storage::entries` wants.
    pub fn entries(&self, low: u64, high: u64, bytes_max: u64) -> Result<Vec<Entry>> {
        self.shared.entries(low, high, bytes_max, false)
    }
}

/// The writer's state of the segment it appends to.
struct Active {
    path: Arc<Path>,
    file: Arc<File>,
    /// Bytes of records and header (where the next record goes).
    size: u64,
    /// Length of the file: `size` plus preallocated zeros.
    allocated: u64,
    records: u64,
}

/// The single writer of a log. Not `Clone`; hand `reader()`s to other threads.
pub struct Log {
    dir: PathBuf,
    options: LogOptions,
    shared: Arc<Shared>,
    active: Option<Active>,
    next_index: u64,
    /// Files written since the last sync.
    unsynced: Vec<(Arc<Path>, Arc<File>)>,
    buf: Vec<u8>,
    pending: Vec<Loc>,
    poisoned: bool,
    /// A `SyncJob` was handed out and not finished yet.
    sync_in_flight: bool,
    /// How long each sync of the log took.
    sync_latency: Arc<LatencyHistogram>,
}

/// The fdatasyncs that make a log durable up to `upto`, taken from the writer by
/// [`Log::begin_sync`] to run on another thread; [`Log::finish_sync`] then publishes it.
#[derive(Debug)]
pub struct SyncJob {
    files: Vec<(Arc<Path>, Arc<File>)>,
    upto: u64,
    latency: Arc<LatencyHistogram>,
}

impl SyncJob {
    /// The last index this job makes durable.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    /// Runs the fdatasyncs (any thread). A failure is `SyncFailed`: fatal, as for `sync`.
    pub fn run(&self) -> Result<()> {
        sync_files(&self.files, &self.latency)
    }
}

/// fdatasync of each file, in order; the first failure is `SyncFailed`. The time it took
/// (all files together) goes into `latency` unless there was nothing to sync.
fn sync_files(files: &[(Arc<Path>, Arc<File>)], latency: &LatencyHistogram) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    for (path, file) in files {
        file.sync_data()
            .map_err(|source| StorageError::SyncFailed {
                path: path.to_path_buf(),
                source,
            })?;
    }
    latency.record(started.elapsed());
    Ok(())
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("next_index", &self.next_index)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl Log {
    /// Opens (creating the directory if needed) and recovers the log in `dir` with default
    /// options.
    pub fn open(dir: &Path) -> Result<(Log, Recovery)> {
        Log::open_with(dir, LogOptions::default())
    }

    /// Opens and recovers the log in `dir`: verifies every segment header and record CRC
    /// and that indexes are contiguous; cuts a torn tail off the last segment (reported in
    /// `Recovery` and logged); refuses with `Corrupt` on anything else.
    pub fn open_with(dir: &Path, options: LogOptions) -> Result<(Log, Recovery)> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, "create directory", e))?;
        let names = list_segments(dir)?;
        let mut recovery = Recovery {
            segments: names.len(),
            ..Recovery::default()
        };
        let mut segments: Vec<SegView> = Vec::with_capacity(names.len());
        for (i, (first_index, path)) in names.iter().enumerate() {
            let is_last = i + 1 == names.len();
            let expected_first = segments.last().map(SegView::next_index);
            let (seg, torn) = load_segment(path, *first_index, expected_first, is_last)?;
            if let Some((offset, bytes)) = torn {
                log::warn!(
                    "log segment {}: torn tail of {bytes} bytes at offset {offset} truncated \
                     (an unfinished write); last index is now {}",
                    path.display(),
                    seg.next_index() - 1
                );
                recovery.segment = Some(path.clone());
                recovery.truncated_at_offset = offset;
                recovery.truncated_bytes = bytes;
            }
            segments.push(seg);
        }
        let first_index = segments.first().map_or(1, |s| s.first_index);
        let active = match segments.last() {
            Some(s) => Some(activate(s)?),
            None => None,
        };
        let view = View {
            first_index,
            visible_last: 0,
            segments,
        };
        let next_index = view.written_last() + 1;
        let mut log = Log {
            dir: dir.to_path_buf(),
            options,
            shared: Arc::new(Shared {
                view: RwLock::new(view),
                epoch: AtomicU64::new(0),
            }),
            active,
            next_index,
            unsynced: Vec::new(),
            buf: Vec::new(),
            pending: Vec::new(),
            poisoned: false,
            sync_in_flight: false,
            sync_latency: Arc::default(),
        };
        // What we found may sit only in the page cache (the process died, not the machine):
        // make it durable before readers may see it.
        if let Some(a) = &log.active {
            log.unsynced.push((a.path.clone(), a.file.clone()));
        }
        log.sync()?;
        recovery.first_index = first_index;
        recovery.last_index = next_index - 1;
        Ok((log, recovery))
    }

    /// A handle for reading from other threads.
    /// How long the log's syncs took (`sync`, and jobs from `begin_sync`), from any thread.
    pub fn sync_latency(&self) -> Arc<LatencyHistogram> {
        Arc::clone(&self.sync_latency)
    }

    pub fn reader(&self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// First entry held (see `LogReader::first_index`).
    pub fn first_index(&self) -> u64 {
        self.shared.read().first_index
    }

    /// Last entry written, synced or not.
    pub fn last_index(&self) -> u64 {
        self.next_index - 1
    }

    /// Last entry made durable (and visible to readers).
    pub fn synced_index(&self) -> u64 {
        self.shared.read().visible_last
    }

    /// Term of any written entry.
    pub fn term(&self, index: u64) -> Result<u64> {
        self.shared.term(index, true)
    }

    /// Reads any written entry, verifying its CRC32.
    pub fn read(&self, index: u64) -> Result<Entry> {
        self.shared.read_entry(index, true)
    }

    /// Entries `low..high` of everything written (see `LogReader::entries`).
    pub fn entries(&self, low: u64, high: u64, bytes_max: u64) -> Result<Vec<Entry>> {
        self.shared.entries(low, high, bytes_max, true)
    }

    /// Bytes of all segment files (headers and records).
    pub fn disk_bytes(&self) -> u64 {
        self.shared.disk_bytes()
    }

    /// Writes `entries` (which must continue the log: the first has index
    /// `last_index() + 1`, the rest follow by one) without fsync. Nothing is written when
    /// the batch is refused. After an I/O error the log is poisoned (see `Poisoned`).
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        self.check_writable()?;
        check_batch(entries, self.next_index)?;
        let result = self.append_checked(entries);
        self.poison_on_error(result)
    }

    /// Makes everything written durable (one fdatasync per file written since the last
    /// sync, normally one) and then visible to readers. A failure is `SyncFailed`: the
    /// caller must stop the process, since the kernel may have dropped the dirty pages.
    pub fn sync(&mut self) -> Result<()> {
        self.check_quiet()?;
        let result = self.sync_unsynced();
        self.poison_on_error(result)?;
        self.publish(self.next_index - 1);
        Ok(())
    }

    /// Takes what `sync` would do as a job to run on another thread (None: everything
    /// written is already durable). Until `finish_sync`, the writer may only append.
    pub fn begin_sync(&mut self) -> Result<Option<SyncJob>> {
        self.check_quiet()?;
        let upto = self.next_index - 1;
        if self.unsynced.is_empty() && self.shared.read().visible_last == upto {
            return Ok(None);
        }
        self.sync_in_flight = true;
        let files = std::mem::take(&mut self.unsynced);
        Ok(Some(SyncJob {
            files,
            upto,
            latency: Arc::clone(&self.sync_latency),
        }))
    }

    /// Ends the job `begin_sync` handed out, with what its `run` returned: on success the
    /// entries up to `upto` become visible to readers; a failure poisons the writer.
    pub fn finish_sync(&mut self, upto: u64, outcome: Result<()>) -> Result<()> {
        self.sync_in_flight = false;
        self.check_writable()?;
        self.poison_on_error(outcome)?;
        self.publish(upto);
        Ok(())
    }

    /// Removes every entry with index >= `from` (Raft's conflicting suffix), durably: later
    /// segments are deleted, the one holding `from` is cut, and all is fsynced before it
    /// returns. Readers see none of the removed entries afterwards. `from` past the end is
    /// a no-op; `from` before `first_index()` is `Compacted`.
    pub fn truncate_suffix(&mut self, from: u64) -> Result<()> {
        self.check_quiet()?;
        if from >= self.next_index {
            return Ok(());
        }
        if from < self.first_index() {
            return Err(StorageError::Compacted { index: from });
        }
        let result = self.truncate_checked(from);
        self.poison_on_error(result)
    }

    /// Deletes whole segments all of whose entries are < `before` (never the segment being
    /// appended to). `first_index()` then is the first entry of the first segment left,
    /// which may be below `before`; reading a dropped entry is `Compacted`.
    pub fn drop_prefix(&mut self, before: u64) -> Result<()> {
        self.check_quiet()?;
        let result = self.drop_prefix_checked(before);
        self.poison_on_error(result)
    }

    /// Discards the whole log and restarts it empty at `next_index` (after installing a
    /// snapshot that covers everything before it). Not atomic: after a crash during it,
    /// `open` finds a valid log that is a suffix of the old one, empty, or the new empty
    /// log; the caller must redo the reset from its own snapshot record.
    pub fn reset_to(&mut self, next_index: u64) -> Result<()> {
        self.check_quiet()?;
        if !(1..=INDEX_MAX).contains(&next_index) {
            return Err(StorageError::OutOfRange {
                index: next_index,
                last_index: self.last_index(),
            });
        }
        let result = self.reset_checked(next_index);
        self.poison_on_error(result)
    }

    fn check_writable(&self) -> Result<()> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        Ok(())
    }

    /// Writable, and no sync job running (see the module doc).
    fn check_quiet(&self) -> Result<()> {
        self.check_writable()?;
        if self.sync_in_flight {
            return Err(StorageError::SyncInFlight);
        }
        Ok(())
    }

    fn poison_on_error<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn publish(&self, last: u64) {
        self.shared.write().visible_last = last;
    }

    fn append_checked(&mut self, entries: &[Entry]) -> Result<()> {
        for e in entries {
            let len = record_len(e) as u64;
            if self.must_roll(len) {
                self.flush()?;
                self.roll(e.index)?;
            } else if self.buf.len() >= LOG_WRITE_BUFFER_BYTES_MAX {
                self.flush()?;
            }
            let Some(a) = &self.active else {
                unreachable!("roll creates the active segment");
            };
            self.pending.push(Loc {
                offset: a.size + self.buf.len() as u64,
                term: e.term,
                len: len as u32,
            });
            self.next_index = e.index + 1;
            if e.data.len() >= LOG_WRITE_IN_PLACE_BYTES_MIN {
                // Large data goes from where it is, right after what is buffered.
                encode_record_head_into(&mut self.buf, e);
                self.flush_with(&e.data)?;
            } else {
                encode_record_into(&mut self.buf, e);
            }
        }
        self.flush()
    }

    /// Whether a record of `len` bytes must go to a new segment.
    fn must_roll(&self, len: u64) -> bool {
        match &self.active {
            None => true,
            Some(a) => {
                let records = a.records + self.pending.len() as u64;
                let size = a.size + self.buf.len() as u64;
                records > 0 && size + len > self.options.segment_bytes_max
            }
        }
    }

    /// Writes the buffer to the active segment and shares the new records' positions.
    fn flush(&mut self) -> Result<()> {
        self.flush_with(&[])
    }

    /// `flush`, with `tail` written right after the buffer in the same call: the data of
    /// the last buffered record, whose head ends the buffer.
    fn flush_with(&mut self, tail: &[u8]) -> Result<()> {
        debug_assert!(
            tail.is_empty() || !self.buf.is_empty(),
            "a tail follows its head"
        );
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(a) = &mut self.active else {
            unreachable!("records are buffered only for an active segment");
        };
        let written = (self.buf.len() + tail.len()) as u64;
        let end = a.size + written;
        let prealloc = self.options.preallocate_bytes;
        let mut zeros = 0;
        if tail.is_empty() {
            if end > a.allocated && prealloc > 0 && written <= prealloc / 4 {
                // The zeros go in the same write, after the records. (Not after a large
                // entry's data: the next small append that reaches the end adds them.)
                zeros = prealloc as usize;
            }
            self.buf.resize(self.buf.len() + zeros, 0);
            a.file.write_all_at(&self.buf, a.size)
        } else {
            write_all_vectored_at(
                &a.file,
                &mut [IoSlice::new(&self.buf), IoSlice::new(tail)],
                a.size,
            )
        }
        .map_err(|e| StorageError::io(&*a.path, "write", e))?;
        a.allocated = a.allocated.max(end + zeros as u64);
        a.size = end;
        a.records += self.pending.len() as u64;
        if !self.unsynced.iter().any(|(_, f)| Arc::ptr_eq(f, &a.file)) {
            self.unsynced.push((a.path.clone(), a.file.clone()));
        }
        self.buf.clear();
        let mut v = self.shared.write();
        let Some(seg) = v.segments.last_mut() else {
            unreachable!("the active segment is in the view");
        };
        seg.locs.append(&mut self.pending);
        Ok(())
    }

    /// Starts a new segment whose first entry is `first_index`, after cutting the current
    /// one back to its records, durably (a sealed segment must end with its last record).
    /// The current one is synced even when nothing was cut: the new segment is durable as
    /// soon as it exists, and a crash must not leave it after a segment whose last records
    /// were lost (a sync job of those records may still be running).
    fn roll(&mut self, first_index: u64) -> Result<()> {
        if let Some(a) = &mut self.active {
            if a.allocated > a.size {
                a.file
                    .set_len(a.size)
                    .map_err(|e| StorageError::io(&*a.path, "truncate", e))?;
                a.allocated = a.size;
            }
            let sealed = (a.path.clone(), a.file.clone());
            sync_files(std::slice::from_ref(&sealed), &self.sync_latency)?;
            // Durable now: the next sync need not do it again.
            self.unsynced.retain(|(_, f)| !Arc::ptr_eq(f, &sealed.1));
        }
        let (path, file) = create_segment(&self.dir, first_index)?;
        let seg = SegView {
            first_index,
            path,
            file: Arc::new(file),
            locs: Vec::new(),
        };
        self.active = Some(activate(&seg)?);
        self.shared.write().segments.push(seg);
        Ok(())
    }

    fn sync_unsynced(&mut self) -> Result<()> {
        sync_files(&std::mem::take(&mut self.unsynced), &self.sync_latency)
    }

    fn truncate_checked(&mut self, from: u64) -> Result<()> {
        // Hide the removed entries from readers before any byte changes.
        let (removed, target) = {
            let mut v = self.shared.write();
            self.shared.epoch.fetch_add(1, Ordering::SeqCst);
            v.visible_last = v.visible_last.min(from - 1);
            let keep = v.segments.partition_point(|s| s.first_index <= from);
            let removed = v.segments.split_off(keep);
            let Some(t) = v.segments.last_mut() else {
                unreachable!("from >= first_index, so a segment holds it");
            };
            let k = (from - t.first_index) as usize;
            let new_size = t.locs.get(k).map(|l| l.offset);
            let Some(new_size) = new_size else {
                unreachable!("from < next_index, so the segment holding it has it");
            };
            t.locs.truncate(k);
            let active = Active {
                path: t.path.clone(),
                file: t.file.clone(),
                size: new_size,
                allocated: new_size,
                records: k as u64,
            };
            (removed, active)
        };
        self.unsynced
            .retain(|(_, f)| !removed.iter().any(|s| Arc::ptr_eq(f, &s.file)));
        // Delete later segments last first, and make that durable before cutting the
        // target, so a crash never leaves a gap between segments.
        for s in removed.iter().rev() {
            fs::remove_file(&s.path).map_err(|e| StorageError::io(&*s.path, "remove", e))?;
        }
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        target
            .file
            .set_len(target.size)
            .map_err(|e| StorageError::io(&*target.path, "truncate", e))?;
        if !self
            .unsynced
            .iter()
            .any(|(_, f)| Arc::ptr_eq(f, &target.file))
        {
            self.unsynced
                .push((target.path.clone(), target.file.clone()));
        }
        self.active = Some(target);
        self.next_index = from;
        self.sync_unsynced()?;
        self.publish(from - 1);
        Ok(())
    }

    fn drop_prefix_checked(&mut self, before: u64) -> Result<()> {
        let removed = {
            let mut v = self.shared.write();
            let n = v
                .segments
                .windows(2)
                .take_while(|w| w[1].first_index <= before)
                .count();
            if n == 0 {
                return Ok(());
            }
            let removed: Vec<SegView> = v.segments.drain(..n).collect();
            if let Some(s) = v.segments.first() {
                v.first_index = s.first_index;
            }
            removed
        };
        self.unsynced
            .retain(|(_, f)| !removed.iter().any(|s| Arc::ptr_eq(f, &s.file)));
        // Oldest first: a crash midway leaves a contiguous suffix.
        for s in &removed {
            fs::remove_file(&s.path).map_err(|e| StorageError::io(&*s.path, "remove", e))?;
        }
        sync_dir(&self.dir)
    }

    fn reset_checked(&mut self, next_index: u64) -> Result<()> {
        let removed = {
            let mut v = self.shared.write();
            self.shared.epoch.fetch_add(1, Ordering::SeqCst);
            v.first_index = next_index;
            v.visible_last = next_index - 1;
            std::mem::take(&mut v.segments)
        };
        self.active = None;
        self.unsynced.clear();
        self.buf.clear();
        self.pending.clear();
        self.next_index = next_index;
        for s in &removed {
            fs::remove_file(&s.path).map_err(|e| StorageError::io(&*s.path, "remove", e))?;
        }
        sync_dir(&self.dir)?;
        self.roll(next_index)
    }
}

/// Fills `first` then `second` from the file's bytes at `offset` (contiguous): one `preadv`,
/// finished with plain reads after a short one. The end of the file first is an
/// `UnexpectedEof` error, as for `read_exact_at`.
fn read_exact_pair_at(
    file: &File,
    first: &mut [u8],
    second: &mut [u8],
    offset: u64,
) -> io::Result<()> {
    let at = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?;
    let n = loop {
        let mut slices = [
            io::IoSliceMut::new(&mut *first),
            io::IoSliceMut::new(&mut *second),
        ];
        // SAFETY: IoSliceMut is ABI-compatible with iovec; the slices are valid and
        // writable for the call, and the descriptor is owned by `file`.
        let n = unsafe {
            libc::preadv(
                file.as_raw_fd(),
                slices.as_mut_ptr().cast::<libc::iovec>(),
                slices.len() as libc::c_int,
                at,
            )
        };
        match usize::try_from(n) {
            Ok(n) => break n,
            Err(_) => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    };
    let (len1, len2) = (first.len(), second.len());
    if n < len1 {
        file.read_exact_at(&mut first[n..], offset + n as u64)?;
        file.read_exact_at(second, offset + len1 as u64)?;
    } else if n < len1 + len2 {
        file.read_exact_at(&mut second[n - len1..], offset + n as u64)?;
    }
    Ok(())
}

/// Writes all of `bufs` at `offset` with pwritev.
fn write_all_vectored_at(file: &File, bufs: &mut [IoSlice<'_>], offset: u64) -> io::Result<()> {
    write_all_vectored(bufs, offset, |slices, at| {
        let at = libc::off_t::try_from(at)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?;
        // SAFETY: IoSlice is ABI-compatible with iovec; the slices are valid for the call,
        // and the descriptor is owned by `file`.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                slices.len() as libc::c_int,
                at,
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    })
}

/// Writes all of `bufs` at `offset` with `write` (a positioned vectored write, given at
/// most `IOV_COUNT_MAX` slices): again after a short write or an interrupted one.
fn write_all_vectored(
    mut bufs: &mut [IoSlice<'_>],
    mut offset: u64,
    mut write: impl FnMut(&[IoSlice<'_>], u64) -> io::Result<usize>,
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let count = bufs.len().min(IOV_COUNT_MAX);
        match write(&bufs[..count], offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                offset += n as u64;
                IoSlice::advance_slices(&mut bufs, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Most slices one pwritev takes (Linux's IOV_MAX).
const IOV_COUNT_MAX: usize = 1024;

/// Checks that `entries` continue a log whose next index is `next` and fit the size limit.
fn check_batch(entries: &[Entry], next: u64) -> Result<()> {
    for (expected, e) in (next..).zip(entries) {
        if e.index != expected {
            return Err(StorageError::NotContiguous {
                expected,
                got: e.index,
            });
        }
        if e.data.len() > ENTRY_PAYLOAD_MAX {
            return Err(StorageError::EntryTooLarge {
                index: e.index,
                bytes: e.data.len(),
                max: ENTRY_PAYLOAD_MAX,
            });
        }
    }
    Ok(())
}

fn activate(seg: &SegView) -> Result<Active> {
    let size = seg
        .file
        .metadata()
        .map_err(|e| StorageError::io(&*seg.path, "stat", e))?
        .len();
    Ok(Active {
        path: seg.path.clone(),
        file: seg.file.clone(),
        size,
        allocated: size,
        records: seg.locs.len() as u64,
    })
}

/// `00000000000000000001.seg` for first index 1.
fn segment_name(first_index: u64) -> String {
    format!(
        "{first_index:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    )
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files of `dir` in index order; removes leftover temp files of segment creation.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let read = fs::read_dir(dir).map_err(|e| StorageError::io(dir, "list", e))?;
    for item in read {
        let item = item.map_err(|e| StorageError::io(dir, "list", e))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TEMP_SUFFIX) {
            let path = item.path();
            log::warn!("removing unfinished segment {}", path.display());
            fs::remove_file(&path).map_err(|e| StorageError::io(&path, "remove", e))?;
        } else if let Some(first_index) = parse_segment_name(name) {
            out.push((first_index, item.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads and verifies one segment. Returns its view and, for a torn tail that was cut off,
/// (offset, bytes cut).
fn load_segment(
    path: &Path,
    name_index: u64,
    expected_first: Option<u64>,
    is_last: bool,
) -> Result<(SegView, Option<(u64, u64)>)> {
    let bytes = fs::read(path).map_err(|e| StorageError::io(path, "read", e))?;
    let first_index = decode_header(&bytes)
        .map_err(|e| StorageError::corrupt(path, 0, format!("header: {e}")))?;
    if !(1..=INDEX_MAX).contains(&first_index) {
        let reason = format!("implausible first index {first_index}");
        return Err(StorageError::corrupt(path, 0, reason));
    }
    if first_index != name_index {
        let reason = format!("header says first index {first_index}, name says {name_index}");
        return Err(StorageError::corrupt(path, 0, reason));
    }
    if let Some(expected) = expected_first {
        if first_index != expected {
            let reason = format!("starts at index {first_index}, expected {expected}");
            return Err(StorageError::corrupt(path, 0, reason));
        }
    }
    let (locs, tail) = scan_records(&bytes, first_index, path, is_last)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io(path, "open", e))?;
    let torn = match tail {
        Some((offset, kind)) => {
            file.set_len(offset)
                .map_err(|e| StorageError::io(path, "truncate", e))?;
            file.sync_data()
                .map_err(|source| StorageError::SyncFailed {
                    path: path.to_path_buf(),
                    source,
                })?;
            (kind == Tail::Torn).then(|| (offset, bytes.len() as u64 - offset))
        }
        None => None,
    };
    let seg = SegView {
        first_index,
        path: Arc::from(path),
        file: Arc::new(file),
        locs,
    };
    Ok((seg, torn))
}

/// What follows the last record of a segment, to be cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    /// Part of a record whose write did not finish (reported).
    Torn,
    /// Zeros only: space preallocated by the writer (see the module doc).
    Preallocated,
}

/// Where a segment's tail starts, and what it is.
type TailAt = (u64, Tail);

/// Walks the records of a segment image. Zeros after the last record are preallocated
/// space, in any segment; otherwise a bad record ends a last segment (torn tail) only when
/// nothing valid follows it, and anything else is corrupt. The tail is returned with the
/// offset where it starts.
fn scan_records(
    bytes: &[u8],
    first_index: u64,
    path: &Path,
    is_last: bool,
) -> Result<(Vec<Loc>, Option<TailAt>)> {
    let mut locs = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    let mut expected = first_index;
    while let Some(rest) = bytes.get(offset..).filter(|r| !r.is_empty()) {
        match decode_record(rest) {
            Ok(meta) => {
                if meta.index != expected {
                    let reason = format!("entry {} where {expected} expected", meta.index);
                    return Err(StorageError::corrupt(path, offset as u64, reason));
                }
                locs.push(Loc {
                    offset: offset as u64,
                    term: meta.term,
                    len: meta.record_len() as u32,
                });
                offset += meta.record_len() as usize;
                expected += 1;
            }
            Err(_) if rest.iter().all(|&b| b == 0) => {
                return Ok((locs, Some((offset as u64, Tail::Preallocated))));
            }
            Err(e) if !is_last => {
                let reason = format!("bad record in a sealed segment: {e}");
                return Err(StorageError::corrupt(path, offset as u64, reason));
            }
            Err(e) => {
                if let Some(valid) = find_valid_record(bytes, offset, expected) {
                    let reason = format!("bad record ({e}) followed by a valid one at {valid}");
                    return Err(StorageError::corrupt(path, offset as u64, reason));
                }
                return Ok((locs, Some((offset as u64, Tail::Torn))));
            }
        }
    }
    Ok((locs, None))
}

/// Looks for a valid record after the bad one at `bad_offset` (whose index would have
/// been `expected`). Candidates must have a plausible index before their CRC is computed,
/// which keeps the scan linear in practice.
fn find_valid_record(bytes: &[u8], bad_offset: usize, expected: u64) -> Option<usize> {
    let tail = bytes.len() - bad_offset;
    let index_max = expected.saturating_add((tail / RECORD_OVERHEAD) as u64);
    (bad_offset + 1..bytes.len()).find(|&p| {
        let Some(rest) = bytes.get(p..) else {
            return false;
        };
        let Ok((body_len, _)) = decode_prefix(rest) else {
            return false;
        };
        if rest.len() < RECORD_PREFIX_LEN + body_len as usize {
            return false;
        }
        let Ok((index, _, _)) = decode_body_fixed(&rest[RECORD_PREFIX_LEN..]) else {
            return false;
        };
        (expected..=index_max).contains(&index) && decode_record(rest).is_ok()
    })
}

/// Creates a segment durably: header in a temp file, fsync, rename, fsync the directory.
fn create_segment(dir: &Path, first_index: u64) -> Result<(Arc<Path>, File)> {
    let path = dir.join(segment_name(first_index));
    let temp = dir.join(format!(
        "{first_index:0width$}{TEMP_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| StorageError::io(&temp, "create", e))?;
    file.write_all_at(&encode_header(first_index), 0)
        .map_err(|e| StorageError::io(&temp, "write", e))?;
    file.sync_all().map_err(|source| StorageError::SyncFailed {
        path: temp.clone(),
        source,
    })?;
    fs::rename(&temp, &path).map_err(|e| StorageError::io(&temp, "rename", e))?;
    sync_dir(dir)?;
    Ok((Arc::from(path.as_path()), file))
}

fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| StorageError::io(dir, "open directory", e))?;
    d.sync_all().map_err(|source| StorageError::SyncFailed {
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
#[path = "seglog_tests.rs"]
mod tests;
