//! Turns the event stream a master sends into store entries, pure.
//!
//! It tells file content from what the master makes up for the connection (artificial
//! ROTATE, the FDE re-sent with log_pos 0, heartbeats, fake GTID_LIST), checks that every
//! content event starts exactly where the previous one ended, verifies CRC32, cuts the stream
//! into whole transactions, and packs those into entries: batches of whole transactions, or
//! chunks of one transaction larger than an entry. It must not touch sockets or the store.
//!
//! A MySQL source answering COM_BINLOG_DUMP_GTID may begin the stored file again before the
//! stored end: it re-sends the FORMAT_DESCRIPTION with its real position (the GTID protocol
//! never zeroes it), and, when it starts the file at 4, PREVIOUS_GTIDS and whatever it does
//! not skip, while the transactions in the replica's set are left out (MySQL's
//! `Binlog_sender::send_events` says so with a heartbeat carrying the position after them).
//! With [`Ingest::allow_resend`], events that end at or before the stored end of the stored
//! file are taken as such copies and dropped; the first event past them must begin exactly
//! at the stored end, so a real gap (or an event straddling the stored end) is still an
//! error.

use std::cmp::Ordering;
use std::fmt;

use crate::binlog::event::{self, EventHeader, HEADER_LEN};
use crate::binlog::gtid::MariaGtidList;
use crate::binlog::transaction::TransactionTracker;
use crate::binlog::BinlogError;
use crate::consensus::state::binlog_file_order;
use crate::limits::ENTRY_PAYLOAD_MAX;
use crate::store::entry::{
    EventsHeader, FileStart, ENDS_INSIDE_GROUP, EVENTS_HEADER_LEN, KIND_ABANDON, KIND_EVENTS,
    KIND_FILE_START, KIND_START_STATE, STARTS_INSIDE_GROUP,
};

/// Why the stream cannot be stored. Every one of these ends the connection; the syncer
/// reconnects from the last stored position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestError {
    Malformed {
        pos: u64,
        reason: String,
    },
    Checksum {
        file: String,
        pos: u64,
    },
    Gap {
        file: String,
        expected: u64,
        found: u64,
    },
    NoFile,
    Unexpected {
        what: String,
    },
    /// A re-sent event that runs past the stored end: the stream and the store disagree on
    /// where events begin.
    Overlap {
        file: String,
        start: u64,
        end: u64,
        stored_end: u64,
    },
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IngestError::Malformed { pos, reason } => {
                write!(f, "malformed event at position {pos}: {reason}")
            }
            IngestError::Checksum { file, pos } => {
                write!(f, "CRC32 mismatch in event at {file}:{pos}")
            }
            IngestError::Gap {
                file,
                expected,
                found,
            } => write!(
                f,
                "event at {file}:{found} does not follow the previous one (expected {expected})"
            ),
            IngestError::NoFile => write!(f, "event before any ROTATE named a file"),
            IngestError::Unexpected { what } => write!(f, "unexpected event: {what}"),
            IngestError::Overlap {
                file,
                start,
                end,
                stored_end,
            } => write!(
                f,
                "event at {file}:{start}..{end} straddles the stored end {stored_end}: the \
                 master's file differs from the stored one (was the master's binlog reset?)"
            ),
        }
    }
}

impl std::error::Error for IngestError {}

/// What one event turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// File content, stored.
    Content { timestamp: u32 },
    /// A heartbeat: the master is idle at this position.
    Heartbeat,
    /// Made up for this connection (artificial ROTATE, FDE copy, fake GTID_LIST), or a
    /// copy of stored content a MySQL GTID dump re-sent, or a heartbeat while such copies
    /// are replayed.
    Artificial,
}

/// The ingest state machine for one connection.
pub struct Ingest {
    /// File the store currently continues (the last FileStart).
    stored_file: Option<String>,
    /// File named by the latest ROTATE and the position it said.
    file: Option<String>,
    next_pos: u64,
    /// Whether the source may begin the stored file again before its stored end (a MySQL
    /// COM_BINLOG_DUMP_GTID stream).
    resend_ok: bool,
    /// While the stream replays the stored file: its stored end. Events ending at or
    /// before it are copies; the first one past it must start exactly there.
    replay_end: Option<u64>,
    /// The last event was the artificial ROTATE: the file's FDE may follow at 4 with its
    /// real position although the stream continues further on.
    after_rotate: bool,
    /// Checksum length of the current file, from its FDE (to restart the tracker).
    checksum_len: usize,
    tracker: Option<TransactionTracker>,
    /// Bytes of the group (transaction) in progress.
    group: Vec<u8>,
    group_start: u64,
    /// Whether chunks of the group in progress were already emitted.
    group_chunked: bool,
    /// Where the group in progress starts in `batch`, when it is written there (then
    /// `group` is empty).
    group_at: Option<usize>,
    /// The `Events` payload being packed: room for its header, then whole groups, then
    /// possibly the group in progress (see `group_at`); empty when nothing is packed yet.
    batch: Vec<u8>,
    batch_start: u64,
    ready: Vec<(u8, Vec<u8>)>,
    /// Largest run of binlog bytes in one `Events` entry: the entry payload limit less the
    /// entry header, so that no payload the log would refuse is ever produced.
    events_bytes_max: usize,
}

/// A packed batch is handed over without a copy when its buffer's spare room is at most
/// this fraction of its length.
const BATCH_SPARE_FRACTION: usize = 4;

impl Ingest {
    /// Starts ingesting a stream that continues the store at `resume` (file, position), or a
    /// fresh store when None.
    pub fn new(resume: Option<(String, u64)>) -> Ingest {
        Ingest::with_entry_limit(resume, ENTRY_PAYLOAD_MAX)
    }

    /// As `new`, with a smaller entry payload limit (tests). It must leave room for binlog
    /// bytes after the entry header.
    pub fn with_entry_limit(resume: Option<(String, u64)>, entry_payload_max: usize) -> Ingest {
        assert!(entry_payload_max > EVENTS_HEADER_LEN);
        let (stored_file, next_pos) = match resume {
            Some((f, p)) => (Some(f), p),
            None => (None, 0),
        };
        Ingest {
            stored_file,
            file: None,
            next_pos,
            resend_ok: false,
            replay_end: None,
            after_rotate: false,
            checksum_len: event::CHECKSUM_LEN,
            tracker: None,
            group: Vec::new(),
            group_start: 0,
            group_chunked: false,
            group_at: None,
            batch: Vec::new(),
            batch_start: 0,
            ready: Vec::new(),
            events_bytes_max: entry_payload_max - EVENTS_HEADER_LEN,
        }
    }

    /// Accepts copies of stored events before the stored end of the stored file, as a MySQL
    /// source sends them on COM_BINLOG_DUMP_GTID (see the module doc).
    pub fn allow_resend(&mut self) {
        self.resend_ok = true;
    }

    /// Records, as the store's first entry, the master's GTID state where the store begins
    /// (only for a store that begins after the start of the master's history).
    pub fn record_start_state(&mut self, state: &MariaGtidList) {
        self.ready
            .push((KIND_START_STATE, state.to_string().into_bytes()));
    }

    /// File and position of the next content byte the stream will bring.
    pub fn position(&self) -> Option<(&str, u64)> {
        let pos = self
            .replay_end
            .map_or(self.next_pos, |end| end.max(self.next_pos));
        self.file.as_deref().map(|f| (f, pos))
    }

    /// Feeds one event exactly as received (header, body, checksum).
    pub fn on_event(&mut self, ev: &[u8]) -> Result<Seen, IngestError> {
        let header = EventHeader::parse(ev).map_err(|e| IngestError::Malformed {
            pos: self.next_pos,
            reason: e.to_string(),
        })?;
        if header.event_size as usize != ev.len() || ev.len() < HEADER_LEN {
            return Err(IngestError::Malformed {
                pos: self.next_pos,
                reason: format!(
                    "event_size {} but packet holds {} bytes",
                    header.event_size,
                    ev.len()
                ),
            });
        }
        if !event::verify_checksum(ev) {
            return Err(IngestError::Checksum {
                file: self.current_file(),
                pos: self.next_pos,
            });
        }
        let after_rotate = std::mem::take(&mut self.after_rotate);
        match header.type_code {
            event::HEARTBEAT_LOG_EVENT | event::HEARTBEAT_LOG_EVENT_V2 => {
                heartbeat_position(ev).map_err(|reason| IngestError::Malformed {
                    pos: self.next_pos,
                    reason,
                })?;
                // While stored content is replayed, the master is not idle at our end yet.
                Ok(if self.replay_end.is_some() {
                    Seen::Artificial
                } else {
                    Seen::Heartbeat
                })
            }
            event::ROTATE_EVENT if is_artificial(&header) => self.on_artificial_rotate(ev),
            event::FORMAT_DESCRIPTION_EVENT if header.log_pos == 0 => self.on_fde_copy(ev),
            // A MariaDB dump that resumes inside an encrypted file sends the file's
            // START_ENCRYPTION again after the FDE copy, with log_pos 0 (a replica does not
            // move for it): a copy too, not content at the resume position.
            event::START_ENCRYPTION_EVENT if header.log_pos == 0 => Ok(Seen::Artificial),
            // MySQL's GTID protocol re-sends the FDE with its real position even when the
            // stream resumes further on: a copy, as with log_pos 0.
            event::FORMAT_DESCRIPTION_EVENT
                if after_rotate
                    && self.next_pos > 4
                    && u64::from(header.log_pos) == 4 + ev.len() as u64 =>
            {
                self.on_fde_copy(ev)
            }
            _ if is_artificial(&header) => Ok(Seen::Artificial),
            _ => self.on_content(ev, &header),
        }
    }

    fn on_artificial_rotate(&mut self, ev: &[u8]) -> Result<Seen, IngestError> {
        let rotate =
            event::Rotate::parse(ev, event::CHECKSUM_LEN).map_err(|e| IngestError::Malformed {
                pos: self.next_pos,
                reason: e.to_string(),
            })?;
        // The name becomes a stored file name, and later a file on disk (export).
        if !crate::binlog::file::is_plain_file_name(&rotate.next_file) {
            return Err(IngestError::Malformed {
                pos: self.next_pos,
                reason: format!(
                    "ROTATE to {:?}: not a plain binlog file name",
                    rotate.next_file
                ),
            });
        }
        // Continuing the stored file anywhere but where its stored content ends would leave
        // a hole (or an overlap) in the store; a MySQL GTID dump may begin it earlier and
        // re-send what is stored.
        if let Some(stored_file) = self.stored_file.as_deref() {
            if self.resend_ok
                && binlog_file_order(&rotate.next_file, stored_file) == Some(Ordering::Less)
            {
                return Err(IngestError::Unexpected {
                    what: format!(
                        "the master went back to {}, before the stored {stored_file} (it did \
                         not start where the dump asked, and the GTID set sent did not cover \
                         that file)",
                        rotate.next_file
                    ),
                });
            }
        }
        let stored = self.stored_file.as_deref() == Some(rotate.next_file.as_str());
        let replay_ok = self.resend_ok && rotate.position < self.next_pos;
        if stored && rotate.position != self.next_pos && !replay_ok {
            return Err(IngestError::Gap {
                file: rotate.next_file,
                expected: self.next_pos,
                found: rotate.position,
            });
        }
        self.drop_partial_group(&rotate.next_file);
        self.flush_batch();
        self.replay_end = (stored && rotate.position < self.next_pos).then_some(self.next_pos);
        self.file = Some(rotate.next_file);
        self.next_pos = rotate.position;
        self.after_rotate = true;
        Ok(Seen::Artificial)
    }

    /// An event of the stored file before its stored end, while replaying: dropped if it
    /// ends by the stored end. Returns None when the event begins exactly at the stored end
    /// (replay is over and the event is new content).
    fn on_replayed(
        &mut self,
        ev: &[u8],
        header: &EventHeader,
        file: &str,
        start: u64,
        stored_end: u64,
    ) -> Result<Option<Seen>, IngestError> {
        let end = start + ev.len() as u64;
        if start > stored_end {
            return Err(IngestError::Gap {
                file: file.to_string(),
                expected: stored_end,
                found: start,
            });
        }
        if start == stored_end {
            // The store ends between groups: a fresh tracker continues it.
            self.replay_end = None;
            self.next_pos = stored_end;
            self.tracker = Some(TransactionTracker::new(self.checksum_len));
            return Ok(None);
        }
        if end > stored_end {
            return Err(IngestError::Overlap {
                file: file.to_string(),
                start,
                end,
                stored_end,
            });
        }
        if header.type_code == event::FORMAT_DESCRIPTION_EVENT {
            self.checksum_len = event::checksum_len_of_fde(ev);
        }
        self.next_pos = end;
        Ok(Some(Seen::Artificial))
    }

    /// The FDE a master re-sends (log_pos 0) when a dump starts inside a file: not content,
    /// but the store needs it when the store itself starts inside this file.
    fn on_fde_copy(&mut self, ev: &[u8]) -> Result<Seen, IngestError> {
        let file = self.file.clone().ok_or(IngestError::NoFile)?;
        self.checksum_len = event::checksum_len_of_fde(ev);
        self.tracker = Some(TransactionTracker::new(self.checksum_len));
        if self.stored_file.as_deref() != Some(file.as_str()) {
            self.start_file(file, self.next_pos, ev);
        }
        Ok(Seen::Artificial)
    }

    /// The master file the stream is in (a copy, for errors and the rarer paths: content
    /// events do without one).
    fn current_file(&self) -> String {
        self.file.clone().unwrap_or_default()
    }

    fn start_file(&mut self, file: String, start_pos: u64, fde: &[u8]) {
        self.flush_batch();
        let fs = FileStart {
            file_name: file.clone(),
            start_pos,
            fde: fde.to_vec(),
        };
        self.ready.push((KIND_FILE_START, fs.encode()));
        self.stored_file = Some(file);
    }

    fn on_content(&mut self, ev: &[u8], header: &EventHeader) -> Result<Seen, IngestError> {
        if self.file.is_none() {
            return Err(IngestError::NoFile);
        }
        let start = if header.log_pos == 0 {
            self.next_pos
        } else {
            u64::from(header.log_pos)
                .checked_sub(ev.len() as u64)
                .ok_or_else(|| IngestError::Malformed {
                    pos: self.next_pos,
                    reason: format!("log_pos {} smaller than event size", header.log_pos),
                })?
        };
        if let Some(stored_end) = self.replay_end {
            let file = self.current_file();
            if let Some(seen) = self.on_replayed(ev, header, &file, start, stored_end)? {
                return Ok(seen);
            }
        }
        if header.type_code == event::FORMAT_DESCRIPTION_EVENT && start != 4 {
            return Err(IngestError::Unexpected {
                what: format!("FORMAT_DESCRIPTION at {}:{start}", self.current_file()),
            });
        }
        // Checked before a FileStart is queued: entries queued before an error are stored.
        if start != self.next_pos {
            return Err(IngestError::Gap {
                file: self.current_file(),
                expected: self.next_pos,
                found: start,
            });
        }
        if header.type_code == event::FORMAT_DESCRIPTION_EVENT {
            self.checksum_len = event::checksum_len_of_fde(ev);
            self.tracker = Some(TransactionTracker::new(self.checksum_len));
            if self.stored_file != self.file {
                self.start_file(self.current_file(), 4, ev);
            }
        }
        if self.stored_file != self.file {
            return Err(IngestError::Unexpected {
                what: format!(
                    "content of {} before its FORMAT_DESCRIPTION",
                    self.current_file()
                ),
            });
        }
        let tracker = self.tracker.as_mut().ok_or(IngestError::NoFile)?;
        let step = tracker.feed(ev).map_err(|e| IngestError::Malformed {
            pos: start,
            reason: e.to_string(),
        })?;
        // The index reads every PREVIOUS_GTIDS (the GTID set before a MySQL file): one that
        // does not parse is refused here, before it is stored.
        if header.type_code == event::PREVIOUS_GTIDS_LOG_EVENT {
            let checksum_len = tracker.checksum_len();
            event::parse_previous_gtids(ev, checksum_len).map_err(|e| IngestError::Malformed {
                pos: start,
                reason: format!("PREVIOUS_GTIDS: {e}"),
            })?;
        }
        if !self.in_group() {
            self.group_start = start;
        }
        self.push_event(ev);
        self.next_pos = start + ev.len() as u64;
        if step.ends_group {
            self.end_group();
        } else if self.group.len() >= self.events_bytes_max {
            self.emit_chunks(false);
        }
        Ok(Seen::Content {
            timestamp: header.timestamp,
        })
    }

    /// Adds an event to the group in progress: straight into the batch while the group fits
    /// there (most groups: no copy when the batch is packed), else into `group`.
    fn push_event(&mut self, ev: &[u8]) {
        if self.group.is_empty() && !self.group_chunked {
            let at = match self.group_at {
                Some(at) => at,
                None => {
                    self.open_batch();
                    *self.group_at.insert(self.batch.len())
                }
            };
            if self.batch_events_len() + ev.len() <= self.events_bytes_max {
                self.batch.extend_from_slice(ev);
                return;
            }
            // The batch cannot take the group whole: it goes with the groups before it.
            self.take_group_out_of_batch(at);
            self.flush_batch();
        }
        self.group.extend_from_slice(ev);
    }

    /// Starts a batch at the group in progress, unless one is open: room for the header.
    fn open_batch(&mut self) {
        if self.batch.is_empty() {
            self.batch_start = self.group_start;
            self.batch.extend_from_slice(&[0; EVENTS_HEADER_LEN]);
        }
    }

    /// Moves the group in progress, which starts at `at` in the batch, to `group`.
    fn take_group_out_of_batch(&mut self, at: usize) {
        self.group.extend_from_slice(&self.batch[at..]);
        self.batch.truncate(at);
        self.group_at = None;
        if at == EVENTS_HEADER_LEN {
            // No whole group before it: nothing to pack.
            self.batch.clear();
        }
    }

    fn end_group(&mut self) {
        if self.group_at.take().is_some() {
            // Packed already, and whole now.
            if self.batch_events_len() >= self.events_bytes_max {
                self.flush_batch();
            }
            return;
        }
        // The last event can take a group that was under the limit far over it.
        if self.group_chunked || self.group.len() > self.events_bytes_max {
            self.emit_chunks(true);
            return;
        }
        if self.batch_events_len() + self.group.len() > self.events_bytes_max {
            self.flush_batch();
        }
        self.open_batch();
        self.batch.extend_from_slice(&self.group);
        self.group.clear();
        if self.batch_events_len() >= self.events_bytes_max {
            self.flush_batch();
        }
    }

    /// Emits the group in progress as chunk entries; keeps a tail back unless `last`.
    fn emit_chunks(&mut self, last: bool) {
        self.flush_batch();
        let max = self.events_bytes_max;
        let mut offset = 0;
        while self.group.len() - offset >= max || (last && offset < self.group.len()) {
            let len = max.min(self.group.len() - offset);
            let is_last_piece = last && offset + len == self.group.len();
            let mut flags = 0;
            if self.group_chunked {
                flags |= STARTS_INSIDE_GROUP;
            }
            if !is_last_piece {
                flags |= ENDS_INSIDE_GROUP;
            }
            let header = EventsHeader {
                flags,
                start_pos: self.group_start + offset as u64,
            };
            self.ready.push((
                KIND_EVENTS,
                header.encode_with(&self.group[offset..offset + len]),
            ));
            self.group_chunked = true;
            offset += len;
        }
        self.group.drain(..offset);
        self.group_start += offset as u64;
        if last {
            self.group_chunked = false;
        }
    }

    /// Binlog bytes packed in `batch`.
    fn batch_events_len(&self) -> usize {
        self.batch.len().saturating_sub(EVENTS_HEADER_LEN)
    }

    /// Packs the whole groups of the batch into an entry (a group in progress there stays
    /// out of it and continues in `group`).
    fn flush_batch(&mut self) {
        if let Some(at) = self.group_at {
            self.take_group_out_of_batch(at);
        }
        if self.batch.is_empty() {
            return;
        }
        let header = EventsHeader {
            flags: 0,
            start_pos: self.batch_start,
        };
        self.batch[..EVENTS_HEADER_LEN].copy_from_slice(&header.encode());
        // A batch that (nearly) fills its buffer is handed over as it is, and the next one
        // gets a buffer as large; a smaller one is copied out at its size, so that an entry
        // never holds much more memory than its bytes (the raft log keeps entries a while).
        let (len, capacity) = (self.batch.len(), self.batch.capacity());
        let payload = if capacity - len <= len / BATCH_SPARE_FRACTION {
            std::mem::replace(&mut self.batch, Vec::with_capacity(capacity))
        } else {
            let payload = self.batch.clone();
            self.batch.clear();
            payload
        };
        self.ready.push((KIND_EVENTS, payload));
    }

    /// Entries ready to store. With `idle`, the whole groups gathered so far are packed too
    /// (the stream has nothing more right now, so waiting would only add latency).
    pub fn take_entries(&mut self, idle: bool) -> Vec<(u8, Vec<u8>)> {
        if idle {
            self.flush_batch();
        }
        std::mem::take(&mut self.ready)
    }

    /// A transaction still open when the master moves to another file never completes: its
    /// file ended inside it (the master crashed mid-transaction and went on in a new file,
    /// where a replica's SQL thread rolls it back too). It is dropped, and chunks of it
    /// already emitted are abandoned (an ABANDON entry: the store marks them dead), rather
    /// than glued to the next file's first events.
    fn drop_partial_group(&mut self, next_file: &str) {
        if !self.in_group() {
            return;
        }
        log::warn!(
            "the master moved to {next_file} inside a transaction of {} at {} (its file \
             ends there, unfinished: a crash); the transaction is dropped, as a replica drops it",
            self.current_file(),
            self.group_start
        );
        if let Some(at) = self.group_at.take() {
            self.take_group_out_of_batch(at);
        }
        self.group.clear();
        if self.group_chunked {
            self.flush_batch();
            self.ready.push((KIND_ABANDON, Vec::new()));
            self.group_chunked = false;
        }
        self.tracker = Some(TransactionTracker::new(self.checksum_len));
    }

    /// Whether a transaction is in progress (received in part).
    pub fn in_group(&self) -> bool {
        !self.group.is_empty() || self.group_chunked || self.group_at.is_some()
    }
}

fn is_artificial(header: &EventHeader) -> bool {
    header.flags & event::LOG_EVENT_ARTIFICIAL_F != 0
}

/// The master file and position a heartbeat (v1: type 27, v2: type 41) reports; `ev` is a
/// whole event with its CRC32. v1 carries the file as its body and the position in log_pos
/// (cut to 32 bits); v2 carries both in its body, the position in 64 bits.
pub fn heartbeat_position(ev: &[u8]) -> Result<(String, u64), String> {
    let header = EventHeader::parse(ev).map_err(|e| e.to_string())?;
    let body = event::event_body(ev, event::CHECKSUM_LEN).map_err(|e| e.to_string())?;
    if header.type_code == event::HEARTBEAT_LOG_EVENT {
        return Ok((
            String::from_utf8_lossy(body).into_owned(),
            u64::from(header.log_pos),
        ));
    }
    // The detail alone: the caller names the position and says it is malformed.
    event::HeartbeatV2::parse(ev, event::CHECKSUM_LEN)
        .map(|hb| (hb.log_file, hb.log_pos))
        .map_err(|e| match e {
            BinlogError::Malformed { detail, .. } => detail,
            e => e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::binlog::gtid::MariaGtidList;
    use crate::store::testdata::{dump_stream, file_bytes, file_events, ingest, SERVER_ID};

    /// Files whose events all carry a CRC32 (bin.000004 has none; ingest refuses it).
    const CRC_FILES: [&str; 8] = [
        "bin.000001",
        "bin.000002",
        "bin.000003",
        "bin.000005",
        "bin.000006",
        "bin.000007",
        "bin.000008",
        "bin.000010",
    ];

    /// Splits entries into (FileStart, Events header, bytes) values.
    fn decode(entries: &[(u8, Vec<u8>)]) -> Vec<Result<FileStart, (EventsHeader, Vec<u8>)>> {
        entries
            .iter()
            .map(|(kind, data)| match *kind {
                KIND_FILE_START => Ok(FileStart::decode(data).unwrap()),
                KIND_EVENTS => {
                    let (h, bytes) = EventsHeader::decode(data).unwrap();
                    Err((h, bytes.to_vec()))
                }
                other => panic!("unexpected kind {other}"),
            })
            .collect()
    }

    /// Concatenated Events bytes, checking every entry starts where the previous ended.
    fn concat_events(decoded: &[Result<FileStart, (EventsHeader, Vec<u8>)>]) -> (u64, Vec<u8>) {
        let mut out = Vec::new();
        let mut first = None;
        for item in decoded {
            if let Err((h, bytes)) = item {
                let start = *first.get_or_insert(h.start_pos);
                assert_eq!(h.start_pos, start + out.len() as u64, "entries contiguous");
                out.extend_from_slice(bytes);
            }
        }
        (first.unwrap_or(0), out)
    }

    /// Positions where groups end (and so the next begins) in a file, and the largest group.
    fn group_bounds(name: &str) -> (BTreeSet<u64>, usize) {
        let mut tracker = TransactionTracker::new(4);
        let mut bounds = BTreeSet::from([4]);
        let mut group_start = 4;
        let mut largest = 0;
        for (pos, ev) in file_events(name) {
            let step = tracker.feed(&ev).unwrap();
            if step.starts_group {
                group_start = pos;
            }
            if step.ends_group {
                let end = pos + ev.len() as u64;
                bounds.insert(end);
                largest = largest.max((end - group_start) as usize);
            }
        }
        (bounds, largest)
    }

    #[test]
    fn whole_files_become_file_start_and_events_equal_to_the_file() {
        for name in CRC_FILES {
            let entries = ingest(&dump_stream(&[name]), ENTRY_PAYLOAD_MAX);
            let decoded = decode(&entries);
            let events = file_events(name);
            assert_eq!(
                decoded[0],
                Ok(FileStart {
                    file_name: name.to_string(),
                    start_pos: 4,
                    fde: events[0].1.clone(),
                }),
                "{name}"
            );
            assert!(
                decoded[1..].iter().all(|d| d.is_err()),
                "{name}: one FileStart"
            );
            let (start, bytes) = concat_events(&decoded);
            assert_eq!(start, 4, "{name}");
            assert_eq!(bytes, file_bytes(name)[4..], "{name}");
        }
    }

    /// The syncer packs whatever whole groups it has each time the master's stream pauses,
    /// often in the middle of a transaction: the part of it already packed into the batch
    /// must stay out of that entry and go on with the next one.
    #[test]
    fn packing_between_any_two_events_keeps_groups_whole() {
        for name in CRC_FILES {
            let (bounds, largest) = group_bounds(name);
            for (every, limit) in [
                (1, ENTRY_PAYLOAD_MAX),
                (3, ENTRY_PAYLOAD_MAX),
                (2, largest + 9),
            ] {
                let mut ing = Ingest::with_entry_limit(None, limit);
                let mut entries = Vec::new();
                for (i, ev) in dump_stream(&[name]).iter().enumerate() {
                    ing.on_event(ev).unwrap();
                    if i % every == 0 {
                        entries.extend(ing.take_entries(true));
                    }
                }
                entries.extend(ing.take_entries(true));
                assert!(!ing.in_group(), "{name}: ends between groups");
                for (kind, data) in &entries {
                    if *kind == KIND_EVENTS {
                        let (h, bytes) = EventsHeader::decode(data).unwrap();
                        assert_eq!(h.flags, 0, "{name}: no chunks");
                        let end = h.start_pos + bytes.len() as u64;
                        assert!(bounds.contains(&h.start_pos), "{name} every {every}");
                        assert!(bounds.contains(&end), "{name} every {every}: end {end}");
                        assert!(data.capacity() - data.len() <= data.len() / BATCH_SPARE_FRACTION);
                    }
                }
                let decoded = decode(&entries);
                assert_eq!(concat_events(&decoded).1, file_bytes(name)[4..], "{name}");
            }
        }
    }

    #[test]
    fn batches_hold_whole_groups_and_stay_under_the_limit() {
        for name in CRC_FILES {
            let (bounds, largest) = group_bounds(name);
            // Room for the largest group, so nothing is chunked, but many batches.
            let limit = largest + EVENTS_HEADER_LEN;
            let entries = ingest(&dump_stream(&[name]), limit);
            let decoded = decode(&entries);
            let mut batches = 0;
            for (kind, data) in &entries {
                if *kind == KIND_EVENTS {
                    assert!(
                        data.len() <= limit,
                        "{name}: payload {} > {limit}",
                        data.len()
                    );
                    // Handed over whole or copied out: little memory beyond the bytes.
                    assert!(
                        data.capacity() - data.len() <= data.len() / BATCH_SPARE_FRACTION,
                        "{name}: payload of {} bytes holds {}",
                        data.len(),
                        data.capacity()
                    );
                    let (h, bytes) = EventsHeader::decode(data).unwrap();
                    assert_eq!(h.flags, 0, "{name}: no chunks");
                    assert!(bounds.contains(&h.start_pos), "{name}: starts a group");
                    let end = h.start_pos + bytes.len() as u64;
                    assert!(bounds.contains(&end), "{name}: ends a group at {end}");
                    batches += 1;
                }
            }
            if name == "bin.000001" {
                assert!(
                    batches > 3,
                    "bin.000001 makes several batches, got {batches}"
                );
            }
            assert_eq!(concat_events(&decoded).1, file_bytes(name)[4..], "{name}");
        }
    }

    #[test]
    fn big_groups_become_chunks_with_flags() {
        for limit in [EVENTS_HEADER_LEN + 1, EVENTS_HEADER_LEN + 10, 60, 200] {
            for name in CRC_FILES {
                let (bounds, _) = group_bounds(name);
                let entries = ingest(&dump_stream(&[name]), limit);
                let decoded = decode(&entries);
                let event_starts: BTreeSet<u64> =
                    file_events(name).iter().map(|(p, _)| *p).collect();
                let mut both_flags = 0;
                let mut cut_events = 0;
                for (kind, data) in &entries {
                    if *kind != KIND_EVENTS {
                        continue;
                    }
                    assert!(data.len() <= limit, "{name}/{limit}: payload too big");
                    let (h, bytes) = EventsHeader::decode(data).unwrap();
                    let end = h.start_pos + bytes.len() as u64;
                    assert_eq!(
                        h.starts_inside_group(),
                        !bounds.contains(&h.start_pos),
                        "{name}/{limit}: STARTS_INSIDE_GROUP of entry at {}",
                        h.start_pos
                    );
                    assert_eq!(
                        h.ends_inside_group(),
                        !bounds.contains(&end),
                        "{name}/{limit}: ENDS_INSIDE_GROUP of entry ending at {end}"
                    );
                    both_flags += usize::from(h.starts_inside_group() && h.ends_inside_group());
                    cut_events += usize::from(!event_starts.contains(&h.start_pos));
                }
                if name == "bin.000001" {
                    assert!(
                        both_flags > 0,
                        "{limit}: a group spans three chunks or more"
                    );
                    assert!(cut_events > 0, "{limit}: an event is cut across chunks");
                }
                assert_eq!(
                    concat_events(&decoded).1,
                    file_bytes(name)[4..],
                    "{name}/{limit}"
                );
            }
        }
    }

    #[test]
    fn a_rotate_to_a_path_is_refused() {
        for name in ["../../etc/cron.d/x", "/tmp/x", "a/b"] {
            let mut ing = Ingest::new(None);
            let rotate = event::build_rotate(name, 4, SERVER_ID, true, true);
            let err = ing.on_event(&rotate).unwrap_err();
            assert!(
                err.to_string().contains("not a plain binlog file name"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_skipped_event_is_a_gap() {
        let mut stream = dump_stream(&["bin.000001"]);
        let events = file_events("bin.000001");
        // stream[0] is the artificial ROTATE, stream[i + 1] is events[i].
        let skipped = 5;
        stream.remove(skipped + 1);
        let mut ing = Ingest::new(None);
        let mut result = Ok(Seen::Artificial);
        for ev in &stream {
            result = ing.on_event(ev);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(
            result,
            Err(IngestError::Gap {
                file: "bin.000001".into(),
                expected: events[skipped].0,
                found: events[skipped + 1].0,
            })
        );
    }

    #[test]
    fn a_corrupted_byte_is_a_checksum_error() {
        let mut stream = dump_stream(&["bin.000001"]);
        let events = file_events("bin.000001");
        let bad = 7;
        let ev = &mut stream[bad + 1];
        let mid = ev.len() / 2;
        ev[mid] ^= 0x40;
        let mut ing = Ingest::new(None);
        let mut result = Ok(Seen::Artificial);
        for ev in &stream {
            result = ing.on_event(ev);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(
            result,
            Err(IngestError::Checksum {
                file: "bin.000001".into(),
                pos: events[bad].0,
            })
        );
        // Nothing after the bad event was queued.
        let (_, bytes) = concat_events(&decode(&ing.take_entries(true)));
        assert!(bytes.len() as u64 <= events[bad].0 - 4);
    }

    /// What a master sends for a dump of `name` from `pos` (an event boundary past 4).
    fn dump_from(name: &str, pos: u64) -> Vec<Vec<u8>> {
        let events = file_events(name);
        let mut out = vec![
            event::build_rotate(name, pos, SERVER_ID, true, true),
            event::with_log_pos_zeroed_fde(&events[0].1, true),
        ];
        out.extend(
            events
                .into_iter()
                .filter(|(p, _)| *p >= pos)
                .map(|(_, e)| e),
        );
        out
    }

    /// Start of the 6th group of bin.000001.
    fn mid_file_pos() -> u64 {
        let (bounds, _) = group_bounds("bin.000001");
        *bounds.iter().nth(5).unwrap()
    }

    #[test]
    fn a_dump_from_mid_file_starts_the_file_there() {
        let pos = mid_file_pos();
        let stream = dump_from("bin.000001", pos);
        let mut ing = Ingest::new(None);
        let seen: Vec<Seen> = stream.iter().map(|e| ing.on_event(e).unwrap()).collect();
        assert_eq!(seen[..2], [Seen::Artificial, Seen::Artificial]);
        assert!(seen[2..].iter().all(|s| matches!(s, Seen::Content { .. })));
        let decoded = decode(&ing.take_entries(true));
        assert_eq!(
            decoded[0],
            Ok(FileStart {
                file_name: "bin.000001".into(),
                start_pos: pos,
                fde: stream[1].clone(),
            })
        );
        let (start, bytes) = concat_events(&decoded);
        assert_eq!(start, pos);
        assert_eq!(bytes, file_bytes("bin.000001")[pos as usize..]);
        assert_eq!(ing.position(), Some(("bin.000001", 4587)));
    }

    /// Resuming inside an encrypted MariaDB file: the master re-sends the file's
    /// START_ENCRYPTION (log_pos 0) after the FDE copy. It is not stored again at the resume
    /// position (which made the stored file overlap the next event, and every later
    /// session add another copy).
    #[test]
    fn a_start_encryption_copy_at_a_resume_is_not_stored() {
        let pos = mid_file_pos();
        let mut stream = dump_from("bin.000001", pos);
        let body = [vec![1u8], 7u32.to_le_bytes().to_vec(), vec![9u8; 12]].concat();
        let copy = event::build_event(
            event::START_ENCRYPTION_EVENT,
            0,
            SERVER_ID,
            0,
            0x80, // LOG_EVENT_IGNORABLE_F
            &body,
            true,
        );
        stream.insert(2, copy);
        let mut ing = Ingest::new(Some(("bin.000001".into(), pos)));
        let seen: Vec<Seen> = stream.iter().map(|e| ing.on_event(e).unwrap()).collect();
        assert_eq!(seen[..3], [Seen::Artificial; 3]);
        let decoded = decode(&ing.take_entries(true));
        let (start, bytes) = concat_events(&decoded);
        assert_eq!(start, pos);
        assert_eq!(bytes, file_bytes("bin.000001")[pos as usize..]);
    }

    #[test]
    fn a_resume_in_the_stored_file_adds_no_file_start() {
        let pos = mid_file_pos();
        let mut ing = Ingest::new(Some(("bin.000001".into(), pos)));
        for ev in dump_from("bin.000001", pos) {
            ing.on_event(&ev).unwrap();
        }
        let decoded = decode(&ing.take_entries(true));
        assert!(decoded.iter().all(|d| d.is_err()), "no FileStart");
        let (start, bytes) = concat_events(&decoded);
        assert_eq!(start, pos);
        assert_eq!(bytes, file_bytes("bin.000001")[pos as usize..]);
    }

    #[test]
    fn a_resume_elsewhere_in_the_stored_file_is_a_gap() {
        let pos = mid_file_pos();
        let mut ing = Ingest::new(Some(("bin.000001".into(), pos)));
        let rotate = event::build_rotate("bin.000001", 4, SERVER_ID, true, true);
        assert_eq!(
            ing.on_event(&rotate),
            Err(IngestError::Gap {
                file: "bin.000001".into(),
                expected: pos,
                found: 4,
            })
        );
        // A resume at the end of a file that the master continues in the next file is fine.
        let mut ing = Ingest::new(Some(("bin.000001".into(), 4587)));
        for ev in dump_stream(&["bin.000002"]) {
            ing.on_event(&ev).unwrap();
        }
        let decoded = decode(&ing.take_entries(true));
        assert!(matches!(&decoded[0], Ok(fs) if fs.file_name == "bin.000002"));
    }

    #[test]
    fn heartbeats_and_artificial_events_are_not_stored() {
        let events = file_events("bin.000001");
        let mut stream = dump_stream(&["bin.000001"]);
        // After the FDE: an artificial GTID_LIST; inside the stream: heartbeats, one in
        // the middle of a transaction.
        let list = MariaGtidList::parse("0-1-3").unwrap();
        stream.insert(
            2,
            event::build_gtid_list(&list, events[1].0, SERVER_ID, true),
        );
        for at in [10, 20, 21] {
            let pos = u32::try_from(events[at].0).unwrap();
            stream.insert(
                at + 2,
                event::build_heartbeat("bin.000001", pos, SERVER_ID, true),
            );
        }
        let mut ing = Ingest::with_entry_limit(None, 300);
        let mut kinds = (0, 0, 0);
        for ev in &stream {
            match ing.on_event(ev).unwrap() {
                Seen::Content { .. } => kinds.0 += 1,
                Seen::Heartbeat => kinds.1 += 1,
                Seen::Artificial => kinds.2 += 1,
            }
        }
        assert_eq!(kinds, (events.len(), 3, 2));
        let (_, bytes) = concat_events(&decode(&ing.take_entries(true)));
        assert_eq!(bytes, file_bytes("bin.000001")[4..]);
    }

    #[test]
    fn files_in_a_row_each_get_a_file_start() {
        let names = ["bin.000001", "bin.000002", "bin.000003"];
        for limit in [ENTRY_PAYLOAD_MAX, 100] {
            let decoded = decode(&ingest(&dump_stream(&names), limit));
            let starts: Vec<usize> = decoded
                .iter()
                .enumerate()
                .filter(|(_, d)| d.is_ok())
                .map(|(i, _)| i)
                .collect();
            assert_eq!(starts.len(), 3);
            assert_eq!(starts[0], 0);
            for (n, name) in names.iter().enumerate() {
                let Ok(fs) = &decoded[starts[n]] else {
                    unreachable!()
                };
                assert_eq!(fs.file_name, *name);
                assert_eq!(fs.start_pos, 4);
                let end = starts.get(n + 1).copied().unwrap_or(decoded.len());
                let (start, bytes) = concat_events(&decoded[starts[n]..end]);
                assert_eq!(start, 4, "{name}");
                assert_eq!(bytes, file_bytes(name)[4..], "{name}/{limit}");
            }
        }
    }

    #[test]
    fn content_before_any_rotate_is_refused() {
        let events = file_events("bin.000001");
        let mut ing = Ingest::new(None);
        assert_eq!(ing.on_event(&events[0].1), Err(IngestError::NoFile));
        let mut ing = Ingest::new(None);
        let rotate = event::build_rotate("bin.000001", 4, SERVER_ID, true, true);
        ing.on_event(&rotate).unwrap();
        // Content at 4 that is not the FDE: the file has no FDE yet.
        let mut not_fde = events[1].1.clone();
        let log_pos = 4 + not_fde.len() as u32;
        event::set_log_pos(&mut not_fde, log_pos);
        event::set_checksum(&mut not_fde);
        assert!(matches!(
            ing.on_event(&not_fde),
            Err(IngestError::Unexpected { .. })
        ));
    }

    #[test]
    fn a_truncated_packet_is_malformed() {
        let events = file_events("bin.000001");
        let mut ing = Ingest::new(None);
        let ev = &events[3].1;
        assert!(matches!(
            ing.on_event(&ev[..ev.len() - 1]),
            Err(IngestError::Malformed { .. })
        ));
        assert!(matches!(
            ing.on_event(&ev[..5]),
            Err(IngestError::Malformed { .. })
        ));
    }

    /// The master crashed inside a transaction at the end of bin.000001 and went on in
    /// bin.000002: the unfinished transaction is dropped (abandoned when chunks of it were
    /// emitted already), and bin.000002 is stored from 4, whole; nothing of it is skipped.
    #[test]
    fn a_transaction_cut_by_a_crash_at_a_file_end_is_dropped() {
        let events = file_events("bin.000001");
        let (bounds, _) = group_bounds("bin.000001");
        // The last group that holds more than one event, cut before its last event.
        let last_end = *bounds.iter().rev().nth(1).unwrap();
        let group_start = *bounds.range(..last_end).next_back().unwrap();
        let cut_at = events
            .iter()
            .rposition(|(p, _)| *p < last_end && *p > group_start)
            .unwrap();
        for limit in [24, ENTRY_PAYLOAD_MAX] {
            let mut stream = vec![event::build_rotate("bin.000001", 4, SERVER_ID, true, true)];
            stream.extend(events[..cut_at].iter().map(|(_, e)| e.clone()));
            stream.extend(dump_stream(&["bin.000002"]));
            let mut ing = Ingest::with_entry_limit(None, limit);
            for ev in &stream {
                ing.on_event(ev).unwrap();
            }
            let entries = ing.take_entries(true);
            let mut index = crate::store::index::BinlogIndex::new();
            for (i, (kind, data)) in entries.iter().enumerate() {
                index.feed(i as u64 + 1, *kind, data).unwrap();
            }
            let live: Vec<u64> = (1..=entries.len() as u64)
                .filter(|i| !index.is_dead(*i))
                .collect();
            let abandoned = entries.iter().any(|(kind, _)| *kind == KIND_ABANDON);
            assert_eq!(abandoned, limit == 24, "limit {limit}: chunks were emitted");
            // The live entries are bin.000001 up to the cut transaction, then all of
            // bin.000002.
            let served: Vec<(u8, Vec<u8>)> = live
                .iter()
                .map(|i| entries[*i as usize - 1].clone())
                .filter(|(kind, _)| *kind != KIND_ABANDON)
                .collect();
            let decoded = decode(&served);
            let second = decoded
                .iter()
                .position(|d| matches!(d, Ok(fs) if fs.file_name == "bin.000002"))
                .unwrap();
            let (start, first_bytes) = concat_events(&decoded[..second]);
            assert_eq!(start, 4);
            assert_eq!(
                first_bytes,
                file_bytes("bin.000001")[4..group_start as usize]
            );
            let (start, second_bytes) = concat_events(&decoded[second..]);
            assert_eq!(start, 4);
            assert_eq!(second_bytes, file_bytes("bin.000002")[4..]);
            let end = 4 + second_bytes.len() as u64;
            assert_eq!(index.resume_point(), Some(("bin.000002".into(), end)));
        }
    }

    #[test]
    fn in_group_follows_a_partly_received_transaction() {
        let stream = dump_stream(&["bin.000001"]);
        let mut ing = Ingest::with_entry_limit(None, 40);
        let mut tracker = TransactionTracker::new(4);
        ing.on_event(&stream[0]).unwrap();
        for ev in &stream[1..] {
            ing.on_event(ev).unwrap();
            tracker.feed(ev).unwrap();
            assert_eq!(ing.in_group(), tracker.in_group());
        }
        assert!(!ing.in_group());
    }

    // ---- MySQL: COM_BINLOG_DUMP_GTID streams over the kingbus chain (MySQL 5.7.23) ----

    mod mysql {
        use super::*;
        use crate::binlog::gtid::MysqlGtidSet;
        use crate::binlog::transaction::Gtid;
        // The chain's names on the master (the ROTATE events name them so).
        use crate::store::index::mysql_testdata::{
            kingbus_events, kingbus_previous as previous_gtids, KINGBUS as CHAIN,
        };

        const MASTER_ID: u32 = 3_306;

        /// The bytes of a file of the chain, by its master file name.
        fn bytes_of(name: &str) -> Vec<u8> {
            crate::binlog::test_data::mysql_file(&format!("kingbus-5.7-{name}"))
        }

        /// A MySQL GTID without tag: source uuid and gno.
        type MysqlGtid = ([u8; 16], u64);

        /// Events with their positions, and the MySQL GTID of each event's group (None for
        /// FDE, PREVIOUS_GTIDS, ROTATE).
        fn events_of(name: &str) -> Vec<(u64, Vec<u8>, Option<MysqlGtid>)> {
            let mut tracker = TransactionTracker::new(4);
            let mut current = None;
            kingbus_events(name)
                .into_iter()
                .map(|(pos, ev)| {
                    let step = tracker.feed(&ev).unwrap();
                    if step.starts_group {
                        current = match step.gtid {
                            Some(Gtid::Mysql { uuid, gno, .. }) => Some((uuid, gno)),
                            _ => None,
                        };
                    }
                    (pos, ev, current)
                })
                .collect()
        }

        fn heartbeat_v2(file: &str, pos: u64) -> Vec<u8> {
            // A MySQL 8.0 source caps the header's log_pos too; the body holds 64 bits.
            event::build_heartbeat_v2(file, pos, MASTER_ID, true)
        }

        /// What a MySQL 5.7/8.0 source sends for COM_BINLOG_DUMP_GTID excluding `set`, as
        /// `Binlog_sender` does: `from` = None (empty file name) starts at 4 of the last
        /// file whose PREVIOUS_GTIDS is in `set`; Some((file, pos)) starts there. Per file:
        /// an artificial ROTATE, the FDE with its real log_pos, then (from 4) everything
        /// after it, or (mid-file) the events from `pos`. A transaction in `set` is left out,
        /// and a heartbeat with the position after it precedes the next event sent (and
        /// ends the file when nothing follows).
        fn gtid_dump(from: Option<(&str, u64)>, set: &MysqlGtidSet, v2: bool) -> Vec<Vec<u8>> {
            let (first, start) = match from {
                Some((f, p)) => (CHAIN.iter().position(|n| *n == f).unwrap(), p),
                None => {
                    let i = (0..CHAIN.len())
                        .rev()
                        .find(|&i| previous_gtids(CHAIN[i]).is_subset(set))
                        .unwrap();
                    (i, 4)
                }
            };
            let heartbeat = |file: &str, pos: u64| {
                if v2 {
                    heartbeat_v2(file, pos)
                } else {
                    event::build_heartbeat(file, u32::try_from(pos).unwrap(), MASTER_ID, true)
                }
            };
            let mut out = Vec::new();
            for (i, name) in CHAIN.iter().enumerate().skip(first) {
                let from_pos = if i == first { start } else { 4 };
                out.push(event::build_rotate(name, from_pos, MASTER_ID, true, true));
                let events = events_of(name);
                out.push(events[0].1.clone());
                let mut skipped_to: Option<u64> = None;
                for (pos, ev, gtid) in events.iter().skip(1) {
                    if *pos < from_pos {
                        continue;
                    }
                    let excluded = ev[4] != event::ROTATE_EVENT
                        && gtid.is_some_and(|(uuid, gno)| set.contains_gtid(&uuid, None, gno));
                    let end = pos + ev.len() as u64;
                    if excluded {
                        skipped_to = Some(end);
                        continue;
                    }
                    if let Some(to) = skipped_to.take() {
                        out.push(heartbeat(name, to));
                    }
                    out.push(ev.clone());
                }
                if let Some(to) = skipped_to {
                    out.push(heartbeat(name, to));
                }
            }
            out
        }

        /// Feeds a stream; the first error, if any.
        fn feed(ing: &mut Ingest, stream: &[Vec<u8>]) -> Result<(), IngestError> {
            stream
                .iter()
                .try_for_each(|ev| ing.on_event(ev).map(|_| ()))
        }

        /// The stored files rebuilt from entries: per FileStart, its name and the bytes from
        /// its start position (4 → magic added, so a whole file compares to the original).
        fn files_of(entries: &[(u8, Vec<u8>)]) -> Vec<(String, u64, Vec<u8>)> {
            let mut files: Vec<(String, u64, Vec<u8>)> = Vec::new();
            for item in decode(entries) {
                match item {
                    Ok(fs) => {
                        let bytes = if fs.start_pos == 4 {
                            crate::binlog::file::MAGIC.to_vec()
                        } else {
                            Vec::new()
                        };
                        files.push((fs.file_name, fs.start_pos, bytes));
                    }
                    Err((h, bytes)) => {
                        let (_, start, out) = files.last_mut().expect("events after a FileStart");
                        let at = *start + out.len() as u64 - if *start == 4 { 4 } else { 0 };
                        assert_eq!(h.start_pos, at, "entries contiguous");
                        out.extend_from_slice(&bytes);
                    }
                }
            }
            files
        }

        /// The executed set after the chain's events before (file, pos).
        fn executed_before(file: usize, pos: u64) -> MysqlGtidSet {
            let mut set = previous_gtids(CHAIN[0]);
            for (i, name) in CHAIN.iter().enumerate().take(file + 1) {
                for (p, _, gtid) in events_of(name) {
                    if i < file || p < pos {
                        if let Some((uuid, gno)) = gtid {
                            set.add(uuid, None, gno).unwrap();
                        }
                    }
                }
            }
            set
        }

        /// Group starts (past the header events) of a chain file.
        fn group_starts(name: &str) -> Vec<u64> {
            let mut tracker = TransactionTracker::new(4);
            events_of(name)
                .iter()
                .filter(|(_, ev, _)| tracker.feed(ev).unwrap().starts_group)
                .map(|(p, _, _)| *p)
                .filter(|p| *p > 4)
                .collect()
        }

        #[test]
        fn the_chain_is_what_the_tests_assume() {
            // Each file's PREVIOUS_GTIDS is the previous one's plus its transactions.
            assert!(previous_gtids(CHAIN[0]).is_subset(&previous_gtids(CHAIN[1])));
            assert_eq!(
                previous_gtids(CHAIN[1]),
                executed_before(1, 0),
                "kingbus chain continuous"
            );
            assert_eq!(previous_gtids(CHAIN[2]), executed_before(2, 0));
            assert!(group_starts(CHAIN[1]).len() > 8);
        }

        #[test]
        fn a_gtid_dump_from_the_start_stores_the_files_exactly() {
            for v2 in [false, true] {
                let stream = gtid_dump(Some((CHAIN[0], 4)), &MysqlGtidSet::new(), v2);
                for limit in [ENTRY_PAYLOAD_MAX, 120] {
                    let mut ing = Ingest::with_entry_limit(None, limit);
                    ing.allow_resend();
                    feed(&mut ing, &stream).unwrap();
                    let files = files_of(&ing.take_entries(true));
                    assert_eq!(files.len(), 3);
                    for ((name, start, bytes), want) in files.iter().zip(CHAIN) {
                        assert_eq!((name.as_str(), *start), (want, 4));
                        assert!(*bytes == bytes_of(want), "{want} byte-identical");
                    }
                }
            }
        }

        #[test]
        fn a_previous_gtids_that_does_not_parse_is_refused_before_it_is_stored() {
            let mut stream = gtid_dump(Some((CHAIN[0], 4)), &MysqlGtidSet::new(), false);
            // [rotate, FDE, PREVIOUS_GTIDS, ...]: one sid, one interval 1..11790 (end
            // exclusive) becomes 5..3, with a valid CRC32, so only the set itself is bad.
            let prev = &mut stream[2];
            assert_eq!(prev[4], event::PREVIOUS_GTIDS_LOG_EVENT);
            let interval = event::HEADER_LEN + 8 + 16 + 8;
            prev[interval..interval + 8].copy_from_slice(&5u64.to_le_bytes());
            prev[interval + 8..interval + 16].copy_from_slice(&3u64.to_le_bytes());
            event::set_checksum(prev);
            let mut ing = Ingest::new(None);
            ing.allow_resend();
            let err = feed(&mut ing, &stream).unwrap_err();
            assert!(
                matches!(&err, IngestError::Malformed { .. })
                    && err.to_string().contains("PREVIOUS_GTIDS"),
                "{err}"
            );
            // What was queued before it (the FDE) may be stored; the bad event is not.
            let fde_len = stream[1].len();
            for (_, _, bytes) in files_of(&ing.take_entries(true)) {
                assert!(bytes.len() <= 4 + fde_len, "only the FDE may be stored");
            }
        }

        /// The store holds the chain up to `(file, pos)` (a group boundary); a new
        /// connection dumps with the stored executed set; the rest must follow exactly.
        fn resume_at(file: usize, pos: u64, stream: &[Vec<u8>]) -> Result<(), IngestError> {
            let mut first = Ingest::new(None);
            let mut head = gtid_dump(Some((CHAIN[0], 4)), &MysqlGtidSet::new(), false);
            // Cut the head after the event that ends at (file, pos).
            let mut seen_file = 0;
            let cut = head
                .iter()
                .position(|ev| {
                    let h = EventHeader::parse(ev).unwrap();
                    if h.type_code == event::ROTATE_EVENT && is_artificial(&h) {
                        let r = event::Rotate::parse(ev, 4).unwrap();
                        seen_file = CHAIN.iter().position(|n| *n == r.next_file).unwrap();
                    }
                    seen_file == file && u64::from(h.log_pos) == pos
                })
                .unwrap();
            head.truncate(cut + 1);
            feed(&mut first, &head).unwrap();
            let mut entries = first.take_entries(true);
            assert_eq!(first.position(), Some((CHAIN[file], pos)));

            let mut second = Ingest::new(Some((CHAIN[file].to_string(), pos)));
            second.allow_resend();
            let result = feed(&mut second, stream);
            entries.extend(second.take_entries(true));
            result?;
            let files = files_of(&entries);
            assert_eq!(files.len(), 3, "one FileStart per file");
            for ((name, start, bytes), want) in files.iter().zip(CHAIN) {
                assert_eq!((name.as_str(), *start), (want, 4));
                assert!(
                    *bytes == bytes_of(want),
                    "{want} byte-identical after resume"
                );
            }
            Ok(())
        }

        #[test]
        fn a_resume_reaching_back_to_the_file_start_skips_what_is_stored() {
            // Mid-file of the middle file, and at the first group after the headers.
            let starts = group_starts(CHAIN[1]);
            for pos in [starts[0], starts[4], starts[starts.len() - 2]] {
                let set = executed_before(1, pos);
                for v2 in [false, true] {
                    // The source ignores the file name (empty, as MySQL replicas send it):
                    // ROTATE to 4, FDE and PREVIOUS_GTIDS again, stored transactions left
                    // out with a heartbeat, then the rest.
                    let stream = gtid_dump(None, &set, v2);
                    let rotate = event::Rotate::parse(&stream[0], 4).unwrap();
                    assert_eq!((rotate.next_file.as_str(), rotate.position), (CHAIN[1], 4));
                    let types: Vec<u8> = stream.iter().map(|ev| ev[4]).collect();
                    assert_eq!(types[2], event::PREVIOUS_GTIDS_LOG_EVENT, "re-sent");
                    let hb = if v2 { 41 } else { 27 };
                    assert_eq!(types.contains(&hb), pos > starts[0], "stored ones left out");
                    resume_at(1, pos, &stream).unwrap();
                }
            }
        }

        #[test]
        fn a_resume_where_the_source_honours_file_and_position() {
            let starts = group_starts(CHAIN[1]);
            let pos = starts[3];
            let set = executed_before(1, pos);
            // ROTATE to the position, then the FDE with its real log_pos, then the rest.
            let stream = gtid_dump(Some((CHAIN[1], pos)), &set, true);
            assert_eq!(
                EventHeader::parse(&stream[1]).unwrap().log_pos,
                4 + stream[1].len() as u32
            );
            resume_at(1, pos, &stream).unwrap();
            // At the end of a whole file (after its ROTATE): the next file follows.
            let end = bytes_of(CHAIN[0]).len() as u64;
            let stream = gtid_dump(Some((CHAIN[0], end)), &executed_before(1, 0), false);
            resume_at(0, end, &stream).unwrap();
        }

        #[test]
        fn a_fresh_store_from_mid_file_starts_the_file_there() {
            let pos = group_starts(CHAIN[2])[2];
            let stream = gtid_dump(Some((CHAIN[2], pos)), &MysqlGtidSet::new(), false);
            let mut ing = Ingest::new(None);
            ing.allow_resend();
            feed(&mut ing, &stream).unwrap();
            let files = files_of(&ing.take_entries(true));
            assert_eq!(files.len(), 1);
            assert_eq!((files[0].0.as_str(), files[0].1), (CHAIN[2], pos));
            assert!(files[0].2 == bytes_of(CHAIN[2])[pos as usize..]);
        }

        #[test]
        fn a_real_gap_after_the_stored_end_is_still_an_error() {
            let starts = group_starts(CHAIN[1]);
            let pos = starts[2];
            // The source leaves out a transaction the store does not have: its set says
            // more than the store holds.
            let mut set = executed_before(1, starts[3]);
            let stream = gtid_dump(None, &set, false);
            assert_eq!(
                resume_at(1, pos, &stream),
                Err(IngestError::Gap {
                    file: CHAIN[1].into(),
                    expected: pos,
                    found: starts[3],
                })
            );
            // Same when the source honours the position.
            let stream = gtid_dump(Some((CHAIN[1], pos)), &set, true);
            assert!(matches!(
                resume_at(1, pos, &stream),
                Err(IngestError::Gap { .. })
            ));
            // A source resuming past the stored end is a gap too.
            set = executed_before(1, starts[3]);
            let stream = gtid_dump(Some((CHAIN[1], starts[3])), &set, false);
            assert!(matches!(
                resume_at(1, pos, &stream),
                Err(IngestError::Gap { .. })
            ));
        }

        #[test]
        fn a_stored_end_inside_an_event_is_an_overlap() {
            let starts = group_starts(CHAIN[1]);
            let set = executed_before(1, starts[2]);
            let stream = gtid_dump(None, &set, false);
            let mut ing = Ingest::new(Some((CHAIN[1].to_string(), starts[2] + 3)));
            ing.allow_resend();
            assert!(matches!(
                feed(&mut ing, &stream),
                Err(IngestError::Overlap { stored_end, .. }) if stored_end == starts[2] + 3
            ));
        }

        #[test]
        fn without_allow_resend_a_restart_of_the_stored_file_is_a_gap() {
            let pos = group_starts(CHAIN[1])[2];
            let stream = gtid_dump(None, &executed_before(1, pos), false);
            let mut ing = Ingest::new(Some((CHAIN[1].to_string(), pos)));
            assert_eq!(
                feed(&mut ing, &stream),
                Err(IngestError::Gap {
                    file: CHAIN[1].into(),
                    expected: pos,
                    found: 4,
                })
            );
        }

        #[test]
        fn a_master_going_back_to_an_earlier_file_is_refused() {
            // A source that ignores the file name and gets a set that does not cover the
            // earlier files starts from an earlier one.
            let stream = gtid_dump(Some((CHAIN[0], 4)), &MysqlGtidSet::new(), false);
            let mut ing = Ingest::new(Some((CHAIN[1].to_string(), group_starts(CHAIN[1])[1])));
            ing.allow_resend();
            assert!(matches!(
                feed(&mut ing, &stream),
                Err(IngestError::Unexpected { .. })
            ));
            let before = |a: &str, b: &str| binlog_file_order(a, b) == Some(Ordering::Less);
            assert!(before("mysql_bin.000011", "mysql_bin.000012"));
            assert!(before("b.999999", "b.1000000"));
            assert!(!before("a.000013", "a.000012"));
            assert!(!before("a.000011", "b.000012"));
            assert!(!before("a", "a.000012"));
        }

        #[test]
        fn heartbeats_v1_and_v2_give_file_and_position() {
            let v2 = heartbeat_v2("mysql_bin.000012", 5_000_000_000);
            assert_eq!(
                heartbeat_position(&v2),
                Ok(("mysql_bin.000012".into(), 5_000_000_000))
            );
            let v1 = event::build_heartbeat("mysql_bin.000012", 1234, MASTER_ID, true);
            assert_eq!(
                heartbeat_position(&v1),
                Ok(("mysql_bin.000012".into(), 1234))
            );
            // A v2 body cut inside a field is malformed, and so is one without a position.
            let mut cut = v2[..v2.len() - 4 - 6].to_vec();
            cut.extend_from_slice(&[0; 4]);
            let size = cut.len() as u32;
            cut[9..13].copy_from_slice(&size.to_le_bytes());
            event::set_checksum(&mut cut);
            assert!(heartbeat_position(&cut).is_err());
            let no_pos = event::build_event(
                event::HEARTBEAT_LOG_EVENT_V2,
                0,
                MASTER_ID,
                0,
                0,
                &[1, 1, b'x', 0],
                true,
            );
            assert!(heartbeat_position(&no_pos).is_err());
            let mut ing = Ingest::new(None);
            assert!(matches!(
                ing.on_event(&no_pos),
                Err(IngestError::Malformed { .. })
            ));
            assert_eq!(ing.on_event(&v2), Ok(Seen::Heartbeat));
        }
    }
}
