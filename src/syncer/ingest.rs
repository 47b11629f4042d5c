//! Turns the event stream a master sends into store entries, pure.
//!
//! It tells file content from what the master makes up for the connection (artificial
//! ROTATE, the FDE re-sent with log_pos 0, heartbeats, fake GTID_LIST), checks that every
//! content event starts exactly where the previous one ended, verifies CRC32, cuts the stream
//! into whole transactions, and packs those into entries: batches of whole transactions, or
//! chunks of one transaction larger than an entry. It must not touch sockets or the store.

use std::fmt;

use crate::binlog::event::{self, EventHeader, HEADER_LEN};
use crate::binlog::transaction::TransactionTracker;
use crate::limits::ENTRY_PAYLOAD_MAX;
use crate::store::entry::{
    EventsHeader, FileStart, ENDS_INSIDE_GROUP, KIND_EVENTS, KIND_FILE_START, STARTS_INSIDE_GROUP,
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
    /// Made up for this connection (artificial ROTATE, FDE copy, fake GTID_LIST).
    Artificial,
}

/// The ingest state machine for one connection.
pub struct Ingest {
    /// File the store currently continues (the last FileStart).
    stored_file: Option<String>,
    /// File named by the latest ROTATE and the position it said.
    file: Option<String>,
    next_pos: u64,
    tracker: Option<TransactionTracker>,
    /// Bytes of the group (transaction) in progress.
    group: Vec<u8>,
    group_start: u64,
    /// Whether chunks of the group in progress were already emitted.
    group_chunked: bool,
    /// Whole groups not yet packed into an entry.
    batch: Vec<u8>,
    batch_start: u64,
    ready: Vec<(u8, Vec<u8>)>,
    entry_payload_max: usize,
}

impl Ingest {
    /// Starts ingesting a stream that continues the store at `resume` (file, position), or a
    /// fresh store when None.
    pub fn new(resume: Option<(String, u64)>) -> Ingest {
        Ingest::with_entry_limit(resume, ENTRY_PAYLOAD_MAX)
    }

    /// As `new`, with a smaller entry size (tests).
    pub fn with_entry_limit(resume: Option<(String, u64)>, entry_payload_max: usize) -> Ingest {
        let (stored_file, next_pos) = match resume {
            Some((f, p)) => (Some(f), p),
            None => (None, 0),
        };
        Ingest {
            stored_file,
            file: None,
            next_pos,
            tracker: None,
            group: Vec::new(),
            group_start: 0,
            group_chunked: false,
            batch: Vec::new(),
            batch_start: 0,
            ready: Vec::new(),
            entry_payload_max,
        }
    }

    /// File and position of the next content byte the stream will bring.
    pub fn position(&self) -> Option<(&str, u64)> {
        self.file.as_deref().map(|f| (f, self.next_pos))
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
                file: self.file.clone().unwrap_or_default(),
                pos: self.next_pos,
            });
        }
        match header.type_code {
            event::HEARTBEAT_LOG_EVENT | event::HEARTBEAT_LOG_EVENT_V2 => Ok(Seen::Heartbeat),
            event::ROTATE_EVENT if is_artificial(&header) => self.on_artificial_rotate(ev),
            event::FORMAT_DESCRIPTION_EVENT if header.log_pos == 0 => self.on_fde_copy(ev),
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
        self.flush_batch();
        self.file = Some(rotate.next_file);
        self.next_pos = rotate.position;
        Ok(Seen::Artificial)
    }

    /// The FDE a master re-sends (log_pos 0) when a dump starts inside a file: not content,
    /// but the store needs it when the store itself starts inside this file.
    fn on_fde_copy(&mut self, ev: &[u8]) -> Result<Seen, IngestError> {
        let file = self.file.clone().ok_or(IngestError::NoFile)?;
        self.tracker = Some(TransactionTracker::new(event::checksum_len_of_fde(ev)));
        if self.stored_file.as_deref() != Some(file.as_str()) {
            self.start_file(file, self.next_pos, ev);
        }
        Ok(Seen::Artificial)
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
        let file = self.file.clone().ok_or(IngestError::NoFile)?;
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
        if header.type_code == event::FORMAT_DESCRIPTION_EVENT {
            if start != 4 {
                return Err(IngestError::Unexpected {
                    what: format!("FORMAT_DESCRIPTION at {file}:{start}"),
                });
            }
            self.tracker = Some(TransactionTracker::new(event::checksum_len_of_fde(ev)));
            self.next_pos = 4;
            if self.stored_file.as_deref() != Some(file.as_str()) {
                self.start_file(file.clone(), 4, ev);
            }
        }
        if start != self.next_pos {
            return Err(IngestError::Gap {
                file,
                expected: self.next_pos,
                found: start,
            });
        }
        if self.stored_file.as_deref() != Some(file.as_str()) {
            return Err(IngestError::Unexpected {
                what: format!("content of {file} before its FORMAT_DESCRIPTION"),
            });
        }
        let tracker = self.tracker.as_mut().ok_or(IngestError::NoFile)?;
        let step = tracker.feed(ev).map_err(|e| IngestError::Malformed {
            pos: start,
            reason: e.to_string(),
        })?;
        if self.group.is_empty() && !self.group_chunked {
            self.group_start = start;
        }
        self.group.extend_from_slice(ev);
        self.next_pos = start + ev.len() as u64;
        if step.ends_group {
            self.end_group();
        } else if self.group.len() >= self.entry_payload_max {
            self.emit_chunks(false);
        }
        Ok(Seen::Content {
            timestamp: header.timestamp,
        })
    }

    fn end_group(&mut self) {
        if self.group_chunked {
            self.emit_chunks(true);
            return;
        }
        if self.batch.is_empty() {
            self.batch_start = self.group_start;
        }
        self.batch.append(&mut self.group);
        if self.batch.len() >= self.entry_payload_max {
            self.flush_batch();
        }
    }

    /// Emits the group in progress as chunk entries; keeps a tail back unless `last`.
    fn emit_chunks(&mut self, last: bool) {
        self.flush_batch();
        let max = self.entry_payload_max;
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

    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let header = EventsHeader {
            flags: 0,
            start_pos: self.batch_start,
        };
        self.ready
            .push((KIND_EVENTS, header.encode_with(&self.batch)));
        self.batch.clear();
    }

    /// Entries ready to store. With `idle`, the whole groups gathered so far are packed too
    /// (the stream has nothing more right now, so waiting would only add latency).
    pub fn take_entries(&mut self, idle: bool) -> Vec<(u8, Vec<u8>)> {
        if idle {
            self.flush_batch();
        }
        std::mem::take(&mut self.ready)
    }

    /// Whether a transaction is in progress (received in part).
    pub fn in_group(&self) -> bool {
        !self.group.is_empty() || self.group_chunked
    }
}

fn is_artificial(header: &EventHeader) -> bool {
    header.flags & event::LOG_EVENT_ARTIFICIAL_F != 0
}
