//! Writes the stored binlog back as native binlog files: the 4-byte magic, then the stored
//! events of one master file, byte for byte, in order.
//!
//! The one byte export may change is LOG_EVENT_BINLOG_IN_USE_F in the FORMAT_DESCRIPTION
//! event (byte 21 of the file): a master sets it on disk while the file is open and clears
//! it when it sends the file, and its CRC32 is computed as if it were clear, so flipping it
//! never breaks the checksum. The store keeps it clear (as a master sends it); export sets
//! it when the file is the last stored file and does not end with a ROTATE or STOP event
//! (the master was still writing it), and clears it otherwise: the state the master's own
//! copy of the file was in. See [`in_use_flag`].
//!
//! A file stored only from a position after 4 (the store began inside it) has no complete
//! copy and is refused. Entries of an abandoned transaction and entries past the watermark
//! (a transaction not stored whole yet) are never written. This module reads the store and
//! writes to any `Write`; it never serves the network and never changes the store.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::entry::EventsHeader;
use super::{Store, StoreError};
use crate::binlog::event::{
    self, EventHeader, FLAGS_OFFSET, HEADER_LEN, LOG_EVENT_BINLOG_IN_USE_F, TYPE_CODE_OFFSET,
};
use crate::binlog::file::{FIRST_EVENT_POSITION, MAGIC};

/// Offset in a binlog file of the flags byte of the FORMAT_DESCRIPTION event at position 4
/// (the low byte of the header's flags, which holds LOG_EVENT_BINLOG_IN_USE_F).
pub const FDE_FLAGS_FILE_OFFSET: u64 = FIRST_EVENT_POSITION + FLAGS_OFFSET as u64;
/// Offset in a binlog file of the type code of the event at position 4.
const FIRST_TYPE_FILE_OFFSET: u64 = FIRST_EVENT_POSITION + TYPE_CODE_OFFSET as u64;

/// Why a file cannot be exported.
#[derive(Debug)]
pub enum ExportError {
    /// No stored file has this name.
    NoSuchFile {
        name: String,
    },
    /// The store holds the file only from `start_pos` (it began inside it): no complete copy.
    NotFromStart {
        name: String,
        start_pos: u64,
    },
    /// The stored entries do not hold the file's bytes as the index says (damage, or a
    /// purge compacted them meanwhile).
    Inconsistent {
        name: String,
        detail: String,
    },
    Store(StoreError),
    Io {
        path: PathBuf,
        error: io::Error,
    },
    /// The output file exists and overwriting was not asked for.
    Exists {
        path: PathBuf,
    },
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::NoSuchFile { name } => write!(f, "no stored binlog file named {name}"),
            ExportError::NotFromStart { name, start_pos } => write!(
                f,
                "{name} is stored only from position {start_pos} (the store began inside it); \
                 there is no complete copy to export"
            ),
            ExportError::Inconsistent { name, detail } => {
                write!(f, "cannot export {name}: {detail}")
            }
            ExportError::Store(e) => write!(f, "reading the store: {e}"),
            ExportError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            ExportError::Exists { path } => write!(
                f,
                "{} exists; remove it or pass --force to overwrite it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ExportError {}

impl From<StoreError> for ExportError {
    fn from(e: StoreError) -> Self {
        ExportError::Store(e)
    }
}

/// A stored master binlog file, as `GET /binlog/files` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileInfo {
    pub name: String,
    /// First stored position (4 when the whole file is stored).
    pub start_pos: u64,
    /// End of the stored whole transactions: the size of the exported file.
    pub end_pos: u64,
    /// Binlog bytes stored of this file (its events).
    pub bytes: u64,
    pub events: u64,
    /// Whether the file is stored from position 4, so `GET /binlog/files/NAME` can export it.
    pub complete: bool,
}

/// The stored files, oldest first (also the reply of `GET /binlog/files`).
pub fn list_files(store: &Store) -> Vec<FileInfo> {
    let index = store.index();
    index
        .files()
        .iter()
        .map(|f| FileInfo {
            name: f.name.clone(),
            start_pos: f.start_pos,
            end_pos: f.end_pos.max(f.start_pos),
            events: f.events,
            bytes: f.bytes,
            complete: f.start_pos == FIRST_EVENT_POSITION,
        })
        .collect()
}

/// (name, why) of the files an export skips.
pub type Skipped = Vec<(String, String)>;

/// The files to export out of `files` (a listing of the store): every complete one, or
/// only the one named `only`. Returns them with the files skipped (stored only from a
/// position after 4) and why; asked for by name, such a file is an error.
pub fn choose(
    files: &[FileInfo],
    only: Option<&str>,
) -> Result<(Vec<FileInfo>, Skipped), ExportError> {
    let mut chosen = Vec::new();
    let mut skipped = Vec::new();
    for file in files {
        if only.is_some_and(|n| n != file.name) {
            continue;
        }
        if !file.complete {
            let why = ExportError::NotFromStart {
                name: file.name.clone(),
                start_pos: file.start_pos,
            };
            if only.is_some() {
                return Err(why);
            }
            skipped.push((file.name.clone(), why.to_string()));
            continue;
        }
        chosen.push(file.clone());
    }
    if let Some(name) = only.filter(|_| chosen.is_empty()) {
        return Err(ExportError::NoSuchFile {
            name: name.to_string(),
        });
    }
    Ok((chosen, skipped))
}

/// Creates the output folder `to`, and refuses (before anything is written) when one of
/// `files` exists there already, unless `force`.
pub fn prepare_dir(to: &Path, files: &[FileInfo], force: bool) -> Result<(), ExportError> {
    if to.exists() && !to.is_dir() {
        return Err(ExportError::Io {
            path: to.to_path_buf(),
            error: std::io::Error::other("it exists and is not a directory"),
        });
    }
    fs::create_dir_all(to).map_err(|error| ExportError::Io {
        path: to.to_path_buf(),
        error,
    })?;
    if !force {
        if let Some(path) = files.iter().map(|f| to.join(&f.name)).find(|p| p.exists()) {
            return Err(ExportError::Exists { path });
        }
    }
    Ok(())
}

/// Writes `dir/name` as a whole or not at all: `fill` writes into a temporary file, which
/// is then synced and renamed (and the folder synced, so the rename lasts); on any error
/// the temporary file is removed. `local` turns an I/O error on a path into `E`. Returns
/// what `fill` returns (the bytes written).
pub fn write_atomically<E>(
    dir: &Path,
    name: &str,
    local: impl Fn(io::Error, &Path) -> E,
    fill: impl FnOnce(&mut File) -> Result<u64, E>,
) -> Result<u64, E> {
    let tmp = dir.join(format!(".{name}.part"));
    let path = dir.join(name);
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| local(e, &tmp))?;
    let written = fill(&mut out).and_then(|written| {
        out.flush().map_err(|e| local(e, &tmp))?;
        out.sync_all().map_err(|e| local(e, &tmp))?;
        Ok(written)
    });
    drop(out);
    let written = written.inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    fs::rename(&tmp, &path).map_err(|e| local(e, &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| local(e, dir))?;
    Ok(written)
}

/// The last event of a binlog file, as far as chaining files and the in-use flag care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LastEvent {
    /// The master closed the file and went on in `next_file` at `position`.
    Rotate { next_file: String, position: u64 },
    /// The master shut down.
    Stop,
    /// Any other event (or none decodable): the master was still writing the file, or
    /// crashed.
    Other,
}

impl LastEvent {
    /// Classifies one whole event (header included; `checksum_len` trailing bytes).
    pub fn of(ev: &[u8], checksum_len: usize) -> LastEvent {
        match ev.get(TYPE_CODE_OFFSET).copied() {
            Some(event::ROTATE_EVENT) => match event::Rotate::parse(ev, checksum_len) {
                Ok(r) => LastEvent::Rotate {
                    next_file: r.next_file,
                    position: r.position,
                },
                Err(_) => LastEvent::Other,
            },
            Some(event::STOP_EVENT) => LastEvent::Stop,
            _ => LastEvent::Other,
        }
    }
}

/// Whether an exported file's FORMAT_DESCRIPTION carries LOG_EVENT_BINLOG_IN_USE_F: only
/// the last stored file, and only when its last event is neither a ROTATE nor a STOP (the
/// master had not closed it). A master clears the flag when it closes a file, and writes a
/// ROTATE (next file) or a STOP (shutdown) as the file's last event then.
pub fn in_use_flag(is_last_file: bool, last_event: &LastEvent) -> bool {
    is_last_file && *last_event == LastEvent::Other
}

/// What exporting one file reads: its `Events` entries and where they start.
#[derive(Clone, Debug)]
pub struct FilePlan {
    pub name: String,
    /// Size of the exported file (magic included): the stored end position.
    pub end_pos: u64,
    /// (log index, first file position) of every entry holding the file's bytes, in order.
    pieces: Vec<(u64, u64)>,
    /// The exported FDE carries LOG_EVENT_BINLOG_IN_USE_F.
    pub in_use: bool,
}

/// Plans the export of the stored file `name`.
pub fn plan_file(store: &Store, name: &str) -> Result<FilePlan, ExportError> {
    let (pieces, end_pos, is_last) = {
        let index = store.index();
        let file = index
            .file_index(name)
            .ok_or_else(|| ExportError::NoSuchFile {
                name: name.to_string(),
            })?;
        let meta = &index.files()[file];
        if meta.start_pos != FIRST_EVENT_POSITION {
            return Err(ExportError::NotFromStart {
                name: name.to_string(),
                start_pos: meta.start_pos,
            });
        }
        (
            live_pieces(&index, file),
            meta.end_pos,
            file + 1 == index.files().len(),
        )
    };
    let last = last_event_in(store, name, pieces.last().copied(), end_pos)?;
    Ok(FilePlan {
        name: name.to_string(),
        end_pos: end_pos.max(FIRST_EVENT_POSITION),
        pieces,
        in_use: in_use_flag(is_last, &last),
    })
}

/// (log index, first file position) of the entries that hold file `file`'s exportable
/// bytes: whole (up to the watermark), not abandoned, and starting before its end.
fn live_pieces(index: &super::index::BinlogIndex, file: usize) -> Vec<(u64, u64)> {
    let end_pos = index.files()[file].end_pos;
    let whole_upto = index.whole_upto();
    index
        .entries_of(file)
        .iter()
        .filter(|e| e.index <= whole_upto && e.start_pos < end_pos)
        .filter(|e| !index.is_dead(e.index))
        .map(|e| (e.index, e.start_pos))
        .collect()
}

/// The last event of the stored file `name` (of its exportable bytes); Other when the
/// file is not stored or holds none.
pub fn last_event(store: &Store, name: &str) -> Result<LastEvent, ExportError> {
    let (last_piece, end_pos) = {
        let index = store.index();
        let Some(file) = index.file_index(name) else {
            return Ok(LastEvent::Other);
        };
        (
            live_pieces(&index, file).last().copied(),
            index.files()[file].end_pos,
        )
    };
    last_event_in(store, name, last_piece, end_pos)
}

/// The event that ends at `end_pos`, found by walking the events that start in the file's
/// last entry `last_piece` (log index, first file position); Other when none starts there
/// (one large event spans it).
fn last_event_in(
    store: &Store,
    name: &str,
    last_piece: Option<(u64, u64)>,
    end_pos: u64,
) -> Result<LastEvent, ExportError> {
    let Some((entry, start_pos)) = last_piece else {
        return Ok(LastEvent::Other);
    };
    let first_offset = store
        .index()
        .entry_meta(entry)
        .and_then(|m| m.first_event_offset);
    let Some(mut offset) = first_offset else {
        return Ok(LastEvent::Other);
    };
    let data = store.read(entry)?.data;
    let (_, bytes) = EventsHeader::decode(&data).map_err(|e| ExportError::Inconsistent {
        name: name.to_string(),
        detail: format!("log entry {entry}: {e}"),
    })?;
    let len = usize::try_from(end_pos.saturating_sub(start_pos))
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let bytes = &bytes[..len];
    loop {
        let Some(rest) = bytes.get(offset..).filter(|r| !r.is_empty()) else {
            return Ok(LastEvent::Other);
        };
        let header = EventHeader::parse(rest).map_err(|e| ExportError::Inconsistent {
            name: name.to_string(),
            detail: format!("event at {}: {e}", start_pos + offset as u64),
        })?;
        let size = header.event_size as usize;
        if size < HEADER_LEN {
            return Ok(LastEvent::Other);
        }
        if offset + size >= bytes.len() {
            return Ok(LastEvent::of(
                &rest[..size.min(rest.len())],
                event::CHECKSUM_LEN,
            ));
        }
        offset += size;
    }
}

/// A native binlog file read out of the store, as a `Read`: the magic, then the stored
/// bytes entry by entry (at most one entry in memory at a time).
pub struct FileExport {
    store: Arc<Store>,
    plan: FilePlan,
    next_piece: usize,
    buf: Vec<u8>,
    buf_offset: usize,
    /// File position of `buf[0]`.
    buf_pos: u64,
    /// Bytes handed out so far (the file position of the next byte).
    emitted: u64,
}

impl FileExport {
    pub fn new(store: Arc<Store>, plan: FilePlan) -> FileExport {
        FileExport {
            store,
            plan,
            next_piece: 0,
            buf: MAGIC.to_vec(),
            buf_offset: 0,
            buf_pos: 0,
            emitted: 0,
        }
    }

    /// Size of the whole file.
    pub fn len_bytes(&self) -> u64 {
        self.plan.end_pos
    }

    /// Loads the next entry's bytes into `buf`; false at the end of the file.
    fn refill(&mut self) -> Result<bool, ExportError> {
        let Some(&(entry, start_pos)) = self.plan.pieces.get(self.next_piece) else {
            if self.emitted != self.plan.end_pos {
                return Err(self.inconsistent(format!(
                    "the stored entries end at position {}, the index says {}",
                    self.emitted, self.plan.end_pos
                )));
            }
            return Ok(false);
        };
        self.next_piece += 1;
        if start_pos != self.emitted {
            return Err(self.inconsistent(format!(
                "log entry {entry} starts at position {start_pos}, expected {}",
                self.emitted
            )));
        }
        let data = self.store.read(entry)?.data;
        let (header, bytes) = EventsHeader::decode(&data)
            .map_err(|e| self.inconsistent(format!("log entry {entry}: {e}")))?;
        if header.start_pos != start_pos {
            return Err(self.inconsistent(format!(
                "log entry {entry} holds position {}, the index says {start_pos}",
                header.start_pos
            )));
        }
        let room = usize::try_from(self.plan.end_pos - start_pos).unwrap_or(usize::MAX);
        let mut chunk = bytes[..bytes.len().min(room)].to_vec();
        patch_in_use_flag(&mut chunk, start_pos, self.plan.in_use);
        self.buf = chunk;
        self.buf_offset = 0;
        self.buf_pos = start_pos;
        Ok(true)
    }

    fn inconsistent(&self, detail: String) -> ExportError {
        ExportError::Inconsistent {
            name: self.plan.name.clone(),
            detail,
        }
    }
}

/// Sets or clears LOG_EVENT_BINLOG_IN_USE_F in `chunk` (file bytes from `chunk_pos`) when
/// it holds the flags byte of the FORMAT_DESCRIPTION event at position 4.
fn patch_in_use_flag(chunk: &mut [u8], chunk_pos: u64, in_use: bool) {
    let at = |file_offset: u64| {
        file_offset
            .checked_sub(chunk_pos)
            .and_then(|o| usize::try_from(o).ok())
    };
    let (Some(type_at), Some(flags_at)) = (at(FIRST_TYPE_FILE_OFFSET), at(FDE_FLAGS_FILE_OFFSET))
    else {
        return;
    };
    if chunk.get(type_at) != Some(&event::FORMAT_DESCRIPTION_EVENT) {
        return;
    }
    if let Some(flags) = chunk.get_mut(flags_at) {
        let bit = LOG_EVENT_BINLOG_IN_USE_F as u8;
        *flags = if in_use { *flags | bit } else { *flags & !bit };
    }
}

impl Read for FileExport {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf_offset >= self.buf.len() {
            if !self.refill().map_err(io::Error::other)? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.buf_offset);
        out[..n].copy_from_slice(&self.buf[self.buf_offset..self.buf_offset + n]);
        self.buf_offset += n;
        self.emitted = self.buf_pos + self.buf_offset as u64;
        Ok(n)
    }
}

/// Writes the stored file `name` to `dir/name`: into a temporary file first, synced, then
/// renamed, so a half-written file never carries the real name. Refuses to replace an
/// existing file unless `force`. Returns the bytes written.
pub fn write_file(
    store: &Arc<Store>,
    name: &str,
    dir: &Path,
    force: bool,
) -> Result<u64, ExportError> {
    let plan = plan_file(store, name)?;
    // Stored names were checked when they arrived; checked again before one becomes a path.
    if !crate::binlog::file::is_plain_file_name(name) {
        return Err(ExportError::NoSuchFile {
            name: name.escape_debug().to_string(),
        });
    }
    let path = dir.join(name);
    if !force && path.exists() {
        return Err(ExportError::Exists { path });
    }
    let local = |error, path: &Path| ExportError::Io {
        path: path.to_path_buf(),
        error,
    };
    write_atomically(dir, name, local, |out| {
        let mut export = FileExport::new(store.clone(), plan);
        io::copy(&mut export, out).map_err(|error| {
            match error.into_inner().map(|e| e.downcast::<ExportError>()) {
                Some(Ok(export_error)) => *export_error,
                Some(Err(other)) => local(io::Error::other(other), &path),
                None => local(io::Error::other("copy failed"), &path),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_target_that_is_a_file_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("afile");
        std::fs::write(&file, b"x").unwrap();
        let message = prepare_dir(&file, &[], false).unwrap_err().to_string();
        assert!(message.contains("is not a directory"), "{message}");
    }
    use crate::binlog::test_data::{mariadb_files, mysql_files};
    use crate::store::testdata::SERVER_ID;
    use crate::syncer::ingest::Ingest;

    /// Stores `files` in a fresh store as a dump of them would, with the FDE's in-use flag
    /// cleared as a master sends it.
    fn store_of(files: &[(String, Vec<u8>)], entry_max: usize) -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let mut ingest = Ingest::with_entry_limit(None, entry_max);
        for (name, bytes) in files {
            ingest
                .on_event(&event::build_rotate(name, 4, SERVER_ID, true, true))
                .unwrap();
            let mut reader = crate::binlog::file::BinlogFileReader::new(bytes.as_slice());
            while let Some((_, mut ev)) = reader.next_event().unwrap() {
                if ev[TYPE_CODE_OFFSET] == event::FORMAT_DESCRIPTION_EVENT {
                    ev[FLAGS_OFFSET] &= !(LOG_EVENT_BINLOG_IN_USE_F as u8);
                }
                ingest.on_event(&ev).unwrap();
            }
        }
        store.append(ingest.take_entries(true)).unwrap();
        (dir, Arc::new(store))
    }

    fn export(store: &Arc<Store>, name: &str) -> Vec<u8> {
        let plan = plan_file(store, name).unwrap();
        let mut out = Vec::new();
        let mut reader = FileExport::new(store.clone(), plan);
        assert_eq!(
            reader.read_to_end(&mut out).unwrap() as u64,
            reader.len_bytes()
        );
        out
    }

    fn fixture(name: &str) -> (String, Vec<u8>) {
        mysql_files()
            .into_iter()
            .chain(mariadb_files())
            .find(|(n, _)| n == name)
            .unwrap()
    }

    #[test]
    fn every_mysql_fixture_exports_byte_identical_alone() {
        for (name, bytes) in mysql_files() {
            for entry_max in [300, crate::limits::ENTRY_PAYLOAD_MAX] {
                let (_dir, store) = store_of(&[(name.clone(), bytes.clone())], entry_max);
                assert_eq!(export(&store, &name), bytes, "{name} at {entry_max}");
                let files = list_files(&store);
                assert_eq!(files.len(), 1);
                assert_eq!(files[0].end_pos, bytes.len() as u64);
                assert!(files[0].complete);
            }
        }
    }

    #[test]
    fn the_kingbus_chain_exports_byte_identical() {
        let names = [
            "kingbus-5.7-mysql_bin.000011",
            "kingbus-5.7-mysql_bin.000012",
            "kingbus-5.7-mysql_bin.000013",
        ];
        let files: Vec<_> = names.iter().map(|n| fixture(n)).collect();
        let (_dir, store) = store_of(&files, 500);
        for (name, bytes) in &files {
            assert_eq!(&export(&store, name), bytes, "{name}");
        }
        // Only the last one (no ROTATE at its end) is marked in use.
        let flags: Vec<bool> = names
            .iter()
            .map(|n| plan_file(&store, n).unwrap().in_use)
            .collect();
        assert_eq!(flags, [false, false, true]);
    }

    #[test]
    fn mariadb_files_export_byte_identical() {
        // bin.000001..3 form a chain; the last ends with a ROTATE, so no flag is set.
        let files: Vec<_> = ["bin.000001", "bin.000002", "bin.000003"]
            .iter()
            .map(|n| fixture(n))
            .collect();
        let (_dir, store) = store_of(&files, 200);
        for (name, bytes) in &files {
            assert_eq!(&export(&store, name), bytes, "{name}");
        }
    }

    #[test]
    fn in_use_rule() {
        let rotate = LastEvent::Rotate {
            next_file: "x.000002".into(),
            position: 4,
        };
        assert!(in_use_flag(true, &LastEvent::Other));
        assert!(!in_use_flag(true, &rotate));
        assert!(!in_use_flag(true, &LastEvent::Stop));
        assert!(!in_use_flag(false, &LastEvent::Other));
        // The flag patch touches only the FDE's flags byte, both ways.
        let (_, bytes) = fixture("mysql_type_bit.000001");
        let mut cleared = bytes.clone();
        patch_in_use_flag(&mut cleared, 0, false);
        assert_eq!(cleared[21] & 1, 0);
        assert_eq!(cleared[..21], bytes[..21]);
        assert_eq!(cleared[22..], bytes[22..]);
        let mut set = cleared.clone();
        patch_in_use_flag(&mut set, 0, true);
        assert_eq!(set, bytes);
        // A chunk that starts after the FDE is left alone.
        let mut later = bytes[100..].to_vec();
        patch_in_use_flag(&mut later, 100, false);
        assert_eq!(later, bytes[100..]);
    }

    #[test]
    fn missing_and_partial_files_are_refused() {
        let (_dir, store) = store_of(&[fixture("bin.000001")], 200);
        assert!(matches!(
            plan_file(&store, "bin.000009"),
            Err(ExportError::NoSuchFile { .. })
        ));
        let out = tempfile::tempdir().unwrap();
        assert_eq!(
            write_file(&store, "bin.000001", out.path(), false).unwrap(),
            fixture("bin.000001").1.len() as u64
        );
        assert_eq!(
            fs::read(out.path().join("bin.000001")).unwrap(),
            fixture("bin.000001").1
        );
        let err = write_file(&store, "bin.000001", out.path(), false).unwrap_err();
        assert!(matches!(err, ExportError::Exists { .. }), "{err}");
        assert!(err.to_string().contains("--force"));
        write_file(&store, "bin.000001", out.path(), true).unwrap();
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 1, "no temp left");

        // A store that begins inside a file (a syncer started at a position).
        let dir = tempfile::tempdir().unwrap();
        let (partial, _) = Store::open(dir.path()).unwrap();
        let (_, bytes) = fixture("bin.000001");
        let events: Vec<_> = crate::binlog::file::BinlogFileReader::new(bytes.as_slice())
            .collect::<Result<_, _>>()
            .unwrap();
        let (start, _) = events[3];
        let mut ingest = Ingest::new(None);
        ingest
            .on_event(&event::build_rotate(
                "bin.000001",
                start,
                SERVER_ID,
                true,
                true,
            ))
            .unwrap();
        ingest
            .on_event(&event::with_log_pos_zeroed_fde(&events[0].1, true))
            .unwrap();
        for (_, ev) in &events[3..] {
            ingest.on_event(ev).unwrap();
        }
        partial.append(ingest.take_entries(true)).unwrap();
        let partial = Arc::new(partial);
        let err = plan_file(&partial, "bin.000001").unwrap_err();
        assert!(
            matches!(err, ExportError::NotFromStart { start_pos, .. } if start_pos == start),
            "{err}"
        );
        assert!(!list_files(&partial)[0].complete);
    }
}
