//! Turns the event stream a master sends into store entries, pure.
//!
//! It tells file content from what the master makes up for the connection (artificial
//! ROTATE, the FDE re-sent with log_pos 0, heartbeats, fake GTID_LIST), checks that every
//! content event starts exactly where the previous one ended, verifies CRC32, cuts the stream
//! into whole transactions, and packs those into entries: batches of whole transactions, or
//! chunks of one transaction larger than an entry. It must not touch sockets or the store.

use std::fmt;

use crate::binlog::event::{self, EventHeader, HEADER_LEN};
use crate::binlog::gtid::MariaGtidList;
use crate::binlog::transaction::TransactionTracker;
use crate::limits::ENTRY_PAYLOAD_MAX;
use crate::store::entry::{
    EventsHeader, FileStart, ENDS_INSIDE_GROUP, EVENTS_HEADER_LEN, KIND_EVENTS, KIND_FILE_START,
    KIND_START_STATE, STARTS_INSIDE_GROUP,
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
    /// Largest run of binlog bytes in one `Events` entry: the entry payload limit less the
    /// entry header, so that no payload the log would refuse is ever produced.
    events_bytes_max: usize,
}

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
            tracker: None,
            group: Vec::new(),
            group_start: 0,
            group_chunked: false,
            batch: Vec::new(),
            batch_start: 0,
            ready: Vec::new(),
            events_bytes_max: entry_payload_max - EVENTS_HEADER_LEN,
        }
    }

    /// Records, as the store's first entry, the master's GTID state where the store begins
    /// (only for a store that begins after the start of the master's history).
    pub fn record_start_state(&mut self, state: &MariaGtidList) {
        self.ready
            .push((KIND_START_STATE, state.to_string().into_bytes()));
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
        // Continuing the stored file anywhere but where its stored content ends would leave
        // a hole (or an overlap) in the store.
        if self.stored_file.as_deref() == Some(rotate.next_file.as_str())
            && rotate.position != self.next_pos
        {
            return Err(IngestError::Gap {
                file: rotate.next_file,
                expected: self.next_pos,
                found: rotate.position,
            });
        }
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
        if header.type_code == event::FORMAT_DESCRIPTION_EVENT && start != 4 {
            return Err(IngestError::Unexpected {
                what: format!("FORMAT_DESCRIPTION at {file}:{start}"),
            });
        }
        // Checked before a FileStart is queued: entries queued before an error are stored.
        if start != self.next_pos {
            return Err(IngestError::Gap {
                file,
                expected: self.next_pos,
                found: start,
            });
        }
        if header.type_code == event::FORMAT_DESCRIPTION_EVENT {
            self.tracker = Some(TransactionTracker::new(event::checksum_len_of_fde(ev)));
            if self.stored_file.as_deref() != Some(file.as_str()) {
                self.start_file(file.clone(), 4, ev);
            }
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
        } else if self.group.len() >= self.events_bytes_max {
            self.emit_chunks(false);
        }
        Ok(Seen::Content {
            timestamp: header.timestamp,
        })
    }

    fn end_group(&mut self) {
        // The last event can take a group that was under the limit far over it.
        if self.group_chunked || self.group.len() > self.events_bytes_max {
            self.emit_chunks(true);
            return;
        }
        if self.batch.len() + self.group.len() > self.events_bytes_max {
            self.flush_batch();
        }
        if self.batch.is_empty() {
            self.batch_start = self.group_start;
        }
        self.batch.append(&mut self.group);
        if self.batch.len() >= self.events_bytes_max {
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
}
