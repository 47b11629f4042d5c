//! In-memory indexes over the stored binlog, pure: built by feeding entries in log order, at
//! startup (scan) and after every append. Answers "where does file F position P live", "where
//! does the transaction after GTID G start" (MariaDB GTIDs and MySQL `uuid[:tag]:gno` GTIDs),
//! "which files are stored" (with each file's PREVIOUS_GTIDS), "which flavour and server
//! version wrote them", the MySQL gtid_executed / gtid_purged sets of the stored binlog, and
//! "up to which entry is every transaction whole" (the watermark readers may serve up to).
//!
//! This module must not do I/O: callers feed it entries and read locations out of it.

use std::collections::BTreeMap;
use std::fmt;

use crate::binlog::event::{EventHeader, FormatDescription};
use crate::binlog::gtid::{MariaGtid, MariaGtidList, MysqlGtidSet, Tsid};
use crate::binlog::transaction::{Gtid, TransactionTracker};
use crate::binlog::Flavour;
use crate::store::entry::{
    EntryError, EventsHeader, FileStart, KIND_ABANDON, KIND_EVENTS, KIND_FILE_START,
    KIND_START_STATE,
};

/// A place in the stored byte stream: an entry and an offset into its binlog bytes, with the
/// master file and position it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub entry: u64,
    pub offset: usize,
    pub file: usize,
    pub pos: u64,
}

/// One stored master binlog file.
#[derive(Clone, Debug)]
pub struct FileMeta {
    pub name: String,
    /// First stored position (4 when the whole file is stored).
    pub start_pos: u64,
    /// The FORMAT_DESCRIPTION event as the master sent it.
    pub fde: Vec<u8>,
    /// Index of the `FileStart` entry.
    pub file_start_entry: u64,
    /// End of the stored content of this file (exclusive), counting whole groups only.
    pub end_pos: u64,
    /// Events and bytes of this file indexed (what retention weighs).
    pub events: u64,
    pub bytes: u64,
    /// Header timestamp of the newest event stored of this file (0: none yet).
    pub last_event_time: u32,
    /// MySQL: the file's PREVIOUS_GTIDS_LOG_EVENT (every GTID in earlier files), when it is
    /// stored (None for MariaDB files, MySQL 5.5, and a file stored from mid-file).
    pub previous_gtids: Option<MysqlGtidSet>,
    /// MySQL: the GTID of the file's first stored transaction that has one (indexed), so a
    /// GTID dump's start need not scan every stored group.
    pub first_mysql_gtid: Option<(Tsid, u64)>,
}

/// One `Events` entry.
#[derive(Clone, Copy, Debug)]
pub struct EntryMeta {
    pub index: u64,
    pub file: usize,
    pub start_pos: u64,
    pub len: usize,
    /// Offset of the first event that starts in this entry, if any does.
    pub first_event_offset: Option<usize>,
}

/// Where a GTID's transaction starts and where the one after it starts.
#[derive(Clone, Copy, Debug)]
pub struct GroupLoc {
    pub start: Loc,
    pub end: Loc,
}

/// A MariaDB group: keyed by (domain_id, seq_no), so the GTID's server_id is kept to tell
/// a stored GTID from another server's with the same domain and seq_no.
#[derive(Clone, Copy, Debug)]
struct MariaGroup {
    server_id: u32,
    loc: GroupLoc,
}

/// Why an entry could not be indexed. Any of these means the stored log is not a binlog
/// stream ferrobus wrote, so the caller refuses to serve it.
#[derive(Debug)]
pub enum IndexError {
    Entry(EntryError),
    Event {
        pos: u64,
        reason: String,
    },
    Discontiguous {
        expected: u64,
        found: u64,
    },
    NoFile {
        index: u64,
    },
    /// A FileStart for a file that is stored already.
    FileAgain {
        name: String,
    },
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::Entry(e) => write!(f, "{e}"),
            IndexError::Event { pos, reason } => write!(f, "bad event at position {pos}: {reason}"),
            IndexError::Discontiguous { expected, found } => write!(
                f,
                "entry starts at position {found} but the file's content ends at {expected}"
            ),
            IndexError::NoFile { index } => write!(f, "entry {index} has events but no file"),
            IndexError::FileAgain { name } => write!(f, "{name} is stored already"),
        }
    }
}

impl std::error::Error for IndexError {}

impl From<EntryError> for IndexError {
    fn from(e: EntryError) -> Self {
        IndexError::Entry(e)
    }
}

/// A group (transaction) seen start but not end yet.
#[derive(Clone, Debug)]
struct OpenGroup {
    gtid: Option<Gtid>,
    start: Loc,
}

/// The indexes. Feed every entry in log order with [`BinlogIndex::feed`].
#[derive(Default)]
pub struct BinlogIndex {
    files: Vec<FileMeta>,
    entries: Vec<EntryMeta>,
    maria: BTreeMap<(u32, u64), MariaGroup>,
    /// Last GTID per domain of whole stored groups (MariaDB's gtid_binlog_pos).
    maria_state: MariaGtidList,
    /// Smallest stored seq_no per domain (to tell "purged" from "never there").
    maria_first_seq: BTreeMap<u32, u64>,
    /// The GTID_LIST stored before the first GTID group: the master's gtid_binlog_pos where
    /// the store begins, so that a replica stopped exactly there can be served.
    maria_start_state: Option<MariaGtidList>,
    /// MySQL GTID groups: (source id, gno) → where the transaction lies.
    mysql: BTreeMap<(Tsid, u64), GroupLoc>,
    /// MySQL gtid_executed of the stored binlog: the GTIDs before the store began
    /// (`mysql_purged`) plus every whole stored transaction's GTID, plus every stored
    /// PREVIOUS_GTIDS (a master may add GTIDs without binlog, SET GTID_PURGED).
    mysql_executed: MysqlGtidSet,
    /// MySQL GTIDs before the first stored transaction (what a replica cannot be served).
    mysql_purged: MysqlGtidSet,
    /// Whether `mysql_purged` is known: from a start state, a purge, or a PREVIOUS_GTIDS
    /// stored before the first MySQL GTID group.
    mysql_start_known: bool,
    tracker: Option<TransactionTracker>,
    /// Bytes of an event that began in an earlier entry (a chunked event).
    carry: Vec<u8>,
    carry_start: Option<Loc>,
    open_group: Option<OpenGroup>,
    /// Last entry index up to which every group is whole: readers may serve up to it.
    whole_upto: u64,
    /// Stream position (file, pos) at the end of entry `whole_upto`.
    whole_end: Option<(usize, u64)>,
    /// Where the next byte of the current file goes, counting every stored byte.
    next_pos: Option<u64>,
    last_index: u64,
    events: u64,
    bytes: u64,
    /// Ranges of entries (inclusive) that hold an abandoned partial transaction: never read.
    dead: Vec<(u64, u64)>,
    /// Where this index began: the log index before its first fed entry and the entries
    /// that recreate its state there (nothing for a store that holds the whole log; a
    /// purge point or a snapshot's base otherwise). Fed them at that index followed by the
    /// log's later entries, an empty index becomes this one again.
    origin: Origin,
}

/// Where an index began: the log index before its first fed entry, and the entries (kind,
/// payload) that recreate its state there.
pub type Origin = (u64, Vec<(u8, Vec<u8>)>);

/// What a purge did to the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purged {
    /// Files dropped, oldest first.
    pub files: Vec<String>,
    /// The last log entry nothing stored needs any more (the entry before the first kept
    /// file's `FileStart`): the log may be compacted up to it.
    pub compact_to: u64,
    /// The GTID state where the store now begins.
    pub purged_gtids: MariaGtidList,
    /// MySQL: the GTIDs before the first kept transaction (empty for MariaDB data).
    pub purged_mysql: MysqlGtidSet,
}

impl BinlogIndex {
    pub fn new() -> BinlogIndex {
        BinlogIndex::default()
    }

    /// Checks, without changing anything, that a batch continues the indexed stream: every
    /// payload decodes, `Events` come after a file, and each starts where the stream ends.
    /// The store runs it before it makes a batch durable, so a batch that could never be
    /// indexed is refused instead of written.
    pub fn check_batch(&self, batch: &[(u8, Vec<u8>)]) -> Result<(), IndexError> {
        let mut has_file = !self.files.is_empty();
        let mut next_pos = self.next_pos;
        for (i, (kind, data)) in batch.iter().enumerate() {
            match *kind {
                KIND_FILE_START => {
                    next_pos = Some(FileStart::decode(data)?.start_pos);
                    has_file = true;
                }
                KIND_ABANDON => next_pos = self.whole_end.map(|(_, pos)| pos).or(next_pos),
                KIND_START_STATE => {
                    parse_start_state(data)?;
                }
                KIND_EVENTS => {
                    let (header, bytes) = EventsHeader::decode(data)?;
                    if !has_file {
                        return Err(IndexError::NoFile {
                            index: self.last_index + 1 + i as u64,
                        });
                    }
                    if let Some(expected) = next_pos.filter(|p| *p != header.start_pos) {
                        return Err(IndexError::Discontiguous {
                            expected,
                            found: header.start_pos,
                        });
                    }
                    next_pos = Some(header.start_pos + bytes.len() as u64);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Feeds one entry (of any kind; kinds this index does not know are skipped).
    pub fn feed(&mut self, index: u64, kind: u8, data: &[u8]) -> Result<(), IndexError> {
        self.last_index = index;
        match kind {
            KIND_FILE_START => {
                let fs = FileStart::decode(data)?;
                if self.files.iter().any(|f| f.name == fs.file_name) {
                    // A file proposed twice (an import retried while its first copy was
                    // still uncommitted): this copy, and its events after it (they do not
                    // continue the stored file), are dead.
                    let refusal = IndexError::FileAgain { name: fs.file_name };
                    self.skip(index, &refusal);
                } else {
                    self.feed_file_start(index, fs);
                }
            }
            KIND_EVENTS => match self.continues(index, data) {
                Ok((file, header, bytes)) => self.feed_events(index, file, header, bytes)?,
                Err(refusal) => self.skip(index, &refusal),
            },
            KIND_ABANDON => self.abandon(index),
            KIND_START_STATE => {
                let (state, mysql) = parse_start_state(data)?;
                seed_maria_state(&mut self.maria_state, !self.maria.is_empty(), &state);
                self.maria_start_state.get_or_insert(state);
                if let Some(set) = mysql {
                    // Likewise the MySQL gtid_executed where the stream begins.
                    self.mysql_executed = self.mysql_executed.union(&set);
                    if !self.mysql_start_known {
                        self.mysql_purged = set;
                        self.mysql_start_known = true;
                    }
                }
                if self.open_group.is_none() && self.carry.is_empty() {
                    self.whole_upto = index;
                }
            }
            _ => {
                if self.open_group.is_none() && self.carry.is_empty() {
                    self.whole_upto = index;
                }
            }
        }
        Ok(())
    }

    /// Drops the open partial transaction: the entries after `whole_upto` become dead, and
    /// the stream continues from the end of the last whole entry.
    fn abandon(&mut self, index: u64) {
        if self.whole_upto + 1 < index {
            let first_dead = self.whole_upto + 1;
            log::warn!(
                "entries {first_dead}..={} hold a transaction that was never completed; they \
                 are abandoned and never served",
                index - 1
            );
            self.dead.push((first_dead, index - 1));
            while self.entries.last().is_some_and(|e| e.index >= first_dead) {
                self.entries.pop();
            }
        }
        self.open_group = None;
        self.carry.clear();
        self.carry_start = None;
        if let Some(tracker) = self.tracker.as_mut() {
            tracker.reset();
        }
        self.next_pos = self.whole_end.map(|(_, pos)| pos).or(self.next_pos);
        self.whole_upto = index;
    }

    /// Entries that recreate, in an empty index, where this one's whole content ends: the
    /// GTID state there and the current file from that position. A snapshot carries them so
    /// that a node restored from it continues the stream. A transaction open at this
    /// moment is not carried (see the README's known limitations).
    pub fn base_entries(&self) -> Vec<(u8, Vec<u8>)> {
        let Some((file, pos)) = self.whole_end else {
            return Vec::new();
        };
        let meta = &self.files[file];
        let mysql = (self.flavour() == Some(Flavour::MySql)).then_some(&self.mysql_executed);
        vec![
            (
                KIND_START_STATE,
                encode_start_state(&self.maria_state, mysql),
            ),
            (
                KIND_FILE_START,
                FileStart {
                    file_name: meta.name.clone(),
                    start_pos: pos,
                    fde: meta.fde.clone(),
                }
                .encode(),
            ),
        ]
    }

    /// Forgets every file before the stored file `name`: their entries, groups and
    /// abandoned ranges. The GTID state after the last forgotten group becomes the state
    /// where the store begins ([`BinlogIndex::purged_gtids`]). None when `name` is not
    /// stored or is the first stored file (nothing to do). Deterministic: every node that
    /// applies the same purge to the same stream ends with the same index.
    pub fn purge_to(&mut self, name: &str) -> Option<Purged> {
        let keep = self.file_index(name).filter(|i| *i > 0)?;
        let first_kept = self.files[keep].file_start_entry;
        let compact_to = first_kept - 1;
        // The state after the last dropped group, replaying the dropped groups in stream
        // order over the state the store began with.
        let mut dropped: Vec<(Loc, MariaGtid)> = self
            .maria
            .iter()
            .filter(|(_, g)| g.loc.start.entry < first_kept)
            .map(|((domain_id, seq_no), g)| {
                let gtid = MariaGtid {
                    domain_id: *domain_id,
                    server_id: g.server_id,
                    seq_no: *seq_no,
                };
                (g.loc.start, gtid)
            })
            .collect();
        dropped.sort_by_key(|(loc, _)| (loc.entry, loc.offset));
        let mut purged_gtids = self.maria_start_state.clone().unwrap_or_default();
        for (_, gtid) in &dropped {
            purged_gtids.update(*gtid);
        }
        // MySQL: what the store began with, the dropped groups, and what the first kept
        // file's PREVIOUS_GTIDS says came before it.
        let mut purged_mysql = self.mysql_purged.clone();
        for ((tsid, gno), g) in &self.mysql {
            if g.start.entry < first_kept {
                // Stored GTIDs were valid when indexed; adding them again cannot fail.
                let _ = purged_mysql.add(tsid.uuid, tsid.tag.as_deref(), *gno);
            }
        }
        if let Some(previous) = &self.files[keep].previous_gtids {
            purged_mysql = purged_mysql.union(previous);
        }
        self.maria.retain(|_, g| g.loc.start.entry >= first_kept);
        for g in self.maria.values_mut() {
            g.loc.start.file -= keep;
            g.loc.end.file -= keep;
        }
        self.mysql.retain(|_, g| g.start.entry >= first_kept);
        for g in self.mysql.values_mut() {
            g.start.file -= keep;
            g.end.file -= keep;
        }
        let mysql_flavour = self.flavour() == Some(Flavour::MySql);
        self.entries.retain(|e| e.index >= first_kept);
        for e in &mut self.entries {
            e.file -= keep;
        }
        self.dead.retain(|(_, hi)| *hi >= first_kept);
        let files: Vec<FileMeta> = self.files.drain(..keep).collect();
        for f in &files {
            self.events = self.events.saturating_sub(f.events);
            self.bytes = self.bytes.saturating_sub(f.bytes);
        }
        // Later files only: the open group and the carried event start after the kept
        // file's FileStart, which reset them.
        if let Some((file, _)) = self.whole_end.as_mut() {
            *file -= keep;
        }
        if let Some(open) = self.open_group.as_mut() {
            open.start.file -= keep;
        }
        if let Some(carry) = self.carry_start.as_mut() {
            carry.file -= keep;
        }
        self.maria_first_seq = first_seqs(&self.maria);
        self.maria_start_state = Some(purged_gtids.clone());
        self.mysql_purged = purged_mysql.clone();
        self.mysql_start_known = true;
        self.mysql_executed = self.mysql_executed.union(&purged_mysql);
        self.origin = (
            compact_to,
            vec![(
                KIND_START_STATE,
                encode_start_state(&purged_gtids, mysql_flavour.then_some(&purged_mysql)),
            )],
        );
        Some(Purged {
            files: files.into_iter().map(|f| f.name).collect(),
            compact_to,
            purged_gtids,
            purged_mysql,
        })
    }

    /// The GTID state where the stored binlog begins: what was purged (or never stored).
    /// Empty when the store holds the master's binlog from its very beginning.
    pub fn purged_gtids(&self) -> MariaGtidList {
        self.maria_start_state.clone().unwrap_or_default()
    }

    /// Where this index began (see the field): the log index before its first entry and
    /// the entries that recreate its state there.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// An empty index that continues from `base` fed at log index `at`, remembering that
    /// origin (a node restored from a snapshot, or rebuilt after a purge).
    pub fn from_origin(at: u64, base: &[(u8, Vec<u8>)]) -> Result<BinlogIndex, IndexError> {
        let mut index = BinlogIndex::new();
        for (kind, data) in base {
            index.feed(at, *kind, data)?;
        }
        index.origin = (at, base.to_vec());
        Ok(index)
    }

    /// Whether entry `index` was abandoned (never to be read).
    pub fn is_dead(&self, index: u64) -> bool {
        self.dead
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&index))
    }

    /// Whether the indexed stream ends inside a transaction (entries after `whole_upto`).
    pub fn has_partial_tail(&self) -> bool {
        self.open_group.is_some() || self.carry_start.is_some()
    }

    fn feed_file_start(&mut self, index: u64, fs: FileStart) {
        let checksum_len = crate::binlog::event::checksum_len_of_fde(&fs.fde);
        self.tracker = Some(TransactionTracker::new(checksum_len));
        self.carry.clear();
        self.carry_start = None;
        self.open_group = None;
        self.next_pos = Some(fs.start_pos);
        self.files.push(FileMeta {
            name: fs.file_name,
            start_pos: fs.start_pos,
            fde: fs.fde,
            file_start_entry: index,
            end_pos: fs.start_pos,
            events: 0,
            bytes: 0,
            last_event_time: 0,
            previous_gtids: None,
            first_mysql_gtid: None,
        });
        let file = self.files.len() - 1;
        self.whole_upto = index;
        self.whole_end = Some((file, self.files[file].start_pos));
    }

    /// Whether an `Events` entry continues the stream (it decodes, a file is open, and it
    /// starts where the stream ends); the current file's number when it does. Changes
    /// nothing.
    fn continues<'a>(
        &self,
        index: u64,
        data: &'a [u8],
    ) -> Result<(usize, EventsHeader, &'a [u8]), IndexError> {
        let (header, bytes) = EventsHeader::decode(data)?;
        let file = self
            .files
            .len()
            .checked_sub(1)
            .ok_or(IndexError::NoFile { index })?;
        let expected = self.next_pos.unwrap_or(header.start_pos);
        if header.start_pos != expected {
            return Err(IndexError::Discontiguous {
                expected,
                found: header.start_pos,
            });
        }
        Ok((file, header, bytes))
    }

    /// A committed `Events` entry that does not continue the stream (a proposer's batch
    /// after a gap, or one repeating what is stored) is dead: never served, and the stream
    /// goes on where it was. Every node skips the same entries, since each sees the same
    /// log; stopping instead would stop every node at this entry, at every restart. The
    /// syncer's proposal chains and its waiting for every earlier proposal keep such
    /// entries out of the log; this is the last guard.
    fn skip(&mut self, index: u64, refusal: &IndexError) {
        log::error!(
            "log entry {index} does not continue the stored binlog ({refusal}); it is \
             skipped and never served"
        );
        match self.dead.last_mut() {
            Some((_, hi)) if *hi + 1 == index => *hi = index,
            _ => self.dead.push((index, index)),
        }
        if self.open_group.is_none() && self.carry_start.is_none() {
            self.whole_upto = index;
        }
    }

    /// Indexes an `Events` entry that `continues` accepted (its file, header and bytes).
    fn feed_events(
        &mut self,
        index: u64,
        file: usize,
        header: EventsHeader,
        bytes: &[u8],
    ) -> Result<(), IndexError> {
        self.next_pos = Some(header.start_pos + bytes.len() as u64);
        let mut meta = EntryMeta {
            index,
            file,
            start_pos: header.start_pos,
            len: bytes.len(),
            first_event_offset: None,
        };
        let mut offset = 0usize;
        // Finish an event carried over from earlier entries first. It takes two rounds when
        // the carried part does not hold the whole header: the header's rest first, then
        // the body the header announces.
        while let Some(carry_start) = self.carry_start {
            if offset >= bytes.len() {
                break;
            }
            let need = self.carry_need()?;
            let take = need.min(bytes.len() - offset);
            self.carry.extend_from_slice(&bytes[offset..offset + take]);
            offset += take;
            if self.carry.len() == self.carry_total()? {
                let event = std::mem::take(&mut self.carry);
                self.carry_start = None;
                let end = Loc {
                    entry: index,
                    offset,
                    file,
                    pos: header.start_pos + offset as u64,
                };
                self.on_event(&event, carry_start, end)?;
            }
        }
        while offset < bytes.len() {
            let start = Loc {
                entry: index,
                offset,
                file,
                pos: header.start_pos + offset as u64,
            };
            meta.first_event_offset.get_or_insert(offset);
            let rest = &bytes[offset..];
            let size = event_size(rest, start.pos)?;
            if let Some(Some(event)) = size.map(|s| rest.get(..s)) {
                let end = Loc {
                    offset: offset + event.len(),
                    pos: start.pos + event.len() as u64,
                    ..start
                };
                self.on_event(event, start, end)?;
                offset += event.len();
            } else {
                self.carry.clear();
                self.carry.extend_from_slice(rest);
                self.carry_start = Some(start);
                offset = bytes.len();
            }
        }
        self.entries.push(meta);
        if self.open_group.is_none() && self.carry_start.is_none() {
            self.whole_upto = index;
            self.whole_end = Some((file, header.start_pos + bytes.len() as u64));
        }
        Ok(())
    }

    fn carry_total(&self) -> Result<usize, IndexError> {
        let pos = self.carry_start.map_or(0, |l| l.pos);
        match event_size(&self.carry, pos)? {
            Some(total) => Ok(total),
            // Header not complete yet: ask for the rest of the header first.
            None => Ok(crate::binlog::event::HEADER_LEN),
        }
    }

    fn carry_need(&self) -> Result<usize, IndexError> {
        Ok(self.carry_total()?.saturating_sub(self.carry.len()))
    }

    fn on_event(&mut self, event: &[u8], start: Loc, end: Loc) -> Result<(), IndexError> {
        let tracker = self
            .tracker
            .as_mut()
            .ok_or(IndexError::NoFile { index: start.entry })?;
        let step = tracker.feed(event).map_err(|e| IndexError::Event {
            pos: start.pos,
            reason: e.to_string(),
        })?;
        self.events += 1;
        self.bytes += event.len() as u64;
        if let Some(meta) = self.files.get_mut(start.file) {
            meta.events += 1;
            meta.bytes += event.len() as u64;
            let time = event_time(event);
            if time != 0 {
                meta.last_event_time = time;
            }
        }
        if self.maria_start_state.is_none()
            && self.maria_first_seq.is_empty()
            && event.get(crate::binlog::event::TYPE_CODE_OFFSET)
                == Some(&crate::binlog::event::GTID_LIST_EVENT)
        {
            // A list that does not parse only leaves the start state unknown.
            self.maria_start_state =
                crate::binlog::event::GtidListEvent::parse(event, tracker.checksum_len())
                    .ok()
                    .map(|list| MariaGtidList::from_gtids(list.gtids));
            // As a START_STATE entry does (an index rebuilt from a purge point's origin gets
            // it that way): both must agree, or nodes report different positions.
            if let Some(state) = &self.maria_start_state {
                seed_maria_state(&mut self.maria_state, !self.maria.is_empty(), state);
            }
        }
        if event.get(crate::binlog::event::TYPE_CODE_OFFSET)
            == Some(&crate::binlog::event::PREVIOUS_GTIDS_LOG_EVENT)
        {
            let checksum_len = tracker.checksum_len();
            self.on_previous_gtids(event, checksum_len, start)?;
        }
        if step.starts_group {
            self.open_group = Some(OpenGroup {
                gtid: step.gtid,
                start,
            });
        }
        if step.ends_group {
            if let Some(group) = self.open_group.take() {
                self.close_group(group, end);
            }
            self.files[end.file].end_pos = end.pos;
        }
        Ok(())
    }

    /// A PREVIOUS_GTIDS event: the file's set of earlier GTIDs. Before the first MySQL
    /// group it is also where the store begins (what is "purged").
    fn on_previous_gtids(
        &mut self,
        event: &[u8],
        checksum_len: usize,
        start: Loc,
    ) -> Result<(), IndexError> {
        // The syncer and import refuse a PREVIOUS_GTIDS that does not parse before it is
        // proposed; should one be committed anyway (an older version stored it), failing
        // here would stop every node on every replay of the log. It only leaves the set
        // unknown, like a GTID_LIST that does not parse.
        let set = match crate::binlog::event::parse_previous_gtids(event, checksum_len) {
            Ok(set) => set,
            Err(e) => {
                log::warn!(
                    "PREVIOUS_GTIDS at {}:{} does not parse ({e}); the GTID set before that \
                     file is unknown",
                    self.files.get(start.file).map_or("?", |f| f.name.as_str()),
                    start.pos
                );
                return Ok(());
            }
        };
        if !self.mysql_start_known && self.mysql.is_empty() {
            self.mysql_purged = set.clone();
            self.mysql_start_known = true;
        }
        self.mysql_executed = self.mysql_executed.union(&set);
        if let Some(meta) = self.files.get_mut(start.file) {
            meta.previous_gtids = Some(set);
        }
        Ok(())
    }

    fn close_group(&mut self, group: OpenGroup, end: Loc) {
        match group.gtid {
            Some(Gtid::Maria(g)) => {
                self.maria.insert(
                    (g.domain_id, g.seq_no),
                    MariaGroup {
                        server_id: g.server_id,
                        loc: GroupLoc {
                            start: group.start,
                            end,
                        },
                    },
                );
                self.maria_first_seq.entry(g.domain_id).or_insert(g.seq_no);
                self.maria_state.update(g);
            }
            Some(Gtid::Mysql { uuid, tag, gno }) => {
                if let Err(e) = self.mysql_executed.add(uuid, tag.as_deref(), gno) {
                    // The tracker checked gno >= 1; only a gno past MySQL's maximum gets
                    // here. The group is still stored and served, just not by GTID.
                    log::warn!(
                        "MySQL GTID at position {} not indexed: {e}",
                        group.start.pos
                    );
                    return;
                }
                let tsid = Tsid { uuid, tag };
                if let Some(meta) = self.files.get_mut(group.start.file) {
                    meta.first_mysql_gtid
                        .get_or_insert_with(|| (tsid.clone(), gno));
                }
                self.mysql.insert(
                    (tsid, gno),
                    GroupLoc {
                        start: group.start,
                        end,
                    },
                );
            }
            Some(Gtid::Anonymous) | None => {}
        }
    }

    /// Which server wrote the stored binlog (from the last stored file's FDE); None before
    /// any file is stored or when its FDE does not parse.
    pub fn flavour(&self) -> Option<Flavour> {
        self.server_version()
            .map(|v| Flavour::of_server_version(&v))
    }

    /// The server version string of the last stored file's FDE (`5.7.23-log`,
    /// `10.11.6-MariaDB-log`).
    pub fn server_version(&self) -> Option<String> {
        let fde = &self.files.last()?.fde;
        FormatDescription::parse(fde).ok().map(|f| f.server_version)
    }

    /// MySQL gtid_executed of the stored binlog: the PREVIOUS_GTIDS where the store begins
    /// plus the GTID of every whole stored transaction (empty for MariaDB data).
    pub fn mysql_executed(&self) -> &MysqlGtidSet {
        &self.mysql_executed
    }

    /// MySQL gtid_purged of the stored binlog: the GTIDs before the first stored transaction
    /// (the first kept file's PREVIOUS_GTIDS); it advances with [`BinlogIndex::purge_to`].
    pub fn mysql_purged(&self) -> &MysqlGtidSet {
        &self.mysql_purged
    }

    /// Whether the MySQL GTID set where the store begins is known (a PREVIOUS_GTIDS event,
    /// a start state, or a purge point): without it, what came before the first stored
    /// transaction is unknown, and GTID auto-positioning cannot be served.
    pub fn mysql_start_known(&self) -> bool {
        self.mysql_start_known
    }

    /// Where the MySQL transaction `uuid[:tag]:gno` lies, if it is stored whole.
    #[cfg(test)]
    pub fn mysql_group(&self, uuid: &[u8; 16], tag: Option<&str>, gno: u64) -> Option<&GroupLoc> {
        let key = (
            Tsid {
                uuid: *uuid,
                tag: tag.map(str::to_ascii_lowercase),
            },
            gno,
        );
        self.mysql.get(&key)
    }

    /// Every stored MySQL GTID group in (uuid, tag, gno) order.
    #[cfg(test)]
    pub fn mysql_groups(&self) -> impl Iterator<Item = (&Tsid, u64, &GroupLoc)> + '_ {
        self.mysql.iter().map(|((tsid, gno), g)| (tsid, *gno, g))
    }

    /// The MySQL GTIDs before the first stored transaction of `file`: for the first stored
    /// file where the store begins ([`BinlogIndex::mysql_purged`]), for a later one its
    /// PREVIOUS_GTIDS (None when that file has none stored).
    pub fn mysql_gtids_before(&self, file: usize) -> Option<&MysqlGtidSet> {
        if file == 0 {
            return Some(&self.mysql_purged);
        }
        self.files.get(file)?.previous_gtids.as_ref()
    }

    /// server_id of the master whose binlog is stored (from the last file's FDE header).
    pub fn master_server_id(&self) -> Option<u32> {
        let fde = &self.files.last()?.fde;
        EventHeader::parse(fde).ok().map(|h| h.server_id)
    }

    pub fn files(&self) -> &[FileMeta] {
        &self.files
    }

    pub fn file_index(&self, name: &str) -> Option<usize> {
        self.files.iter().rposition(|f| f.name == name)
    }

    /// Last entry index up to which every group is whole.
    pub fn whole_upto(&self) -> u64 {
        self.whole_upto
    }

    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// (file name, position) at the end of the whole entries: where the syncer resumes.
    pub fn resume_point(&self) -> Option<(String, u64)> {
        self.whole_end
            .map(|(file, pos)| (self.files[file].name.clone(), pos))
    }

    /// MariaDB gtid_binlog_pos of the whole stored groups.
    pub fn maria_state(&self) -> &MariaGtidList {
        &self.maria_state
    }

    pub fn maria_group(&self, gtid: &MariaGtid) -> Option<&GroupLoc> {
        self.maria
            .get(&(gtid.domain_id, gtid.seq_no))
            .filter(|g| g.server_id == gtid.server_id)
            .map(|g| &g.loc)
    }

    /// The master's GTID state where the store begins, from the first stored GTID_LIST event
    /// (None when no GTID_LIST precedes the first stored group).
    pub fn maria_start_state(&self) -> Option<&MariaGtidList> {
        self.maria_start_state.as_ref()
    }

    /// Smallest stored seq_no in a domain.
    pub fn maria_first_seq(&self, domain_id: u32) -> Option<u64> {
        self.maria_first_seq.get(&domain_id).copied()
    }

    pub fn maria_domains(&self) -> impl Iterator<Item = u32> + '_ {
        self.maria_first_seq.keys().copied()
    }

    /// Counters: events and bytes indexed.
    pub fn totals(&self) -> (u64, u64) {
        (self.events, self.bytes)
    }

    /// The `Events` entries of a file, in order.
    pub fn entries_of(&self, file: usize) -> &[EntryMeta] {
        let lo = self.entries.partition_point(|e| e.file < file);
        let hi = self.entries.partition_point(|e| e.file <= file);
        &self.entries[lo..hi]
    }

    /// The `Events` entry holding position `pos` of `file`, if stored.
    pub fn entry_at(&self, file: usize, pos: u64) -> Option<&EntryMeta> {
        let entries = self.entries_of(file);
        let i = entries.partition_point(|e| e.start_pos + e.len as u64 <= pos);
        entries.get(i).filter(|e| e.start_pos <= pos)
    }

    /// The first `Events` entry with an index above `index`.
    pub fn entry_after(&self, index: u64) -> Option<&EntryMeta> {
        let i = self.entries.partition_point(|e| e.index <= index);
        self.entries.get(i)
    }

    pub fn entry_meta(&self, index: u64) -> Option<&EntryMeta> {
        let i = self.entries.partition_point(|e| e.index < index);
        self.entries.get(i).filter(|e| e.index == index)
    }

    /// Index of the `FileStart` entry that opens the file after `file`, if any.
    pub fn next_file(&self, file: usize) -> Option<&FileMeta> {
        self.files.get(file + 1)
    }

    /// Location of the first stored byte of the store, if any.
    pub fn first_loc(&self) -> Option<Loc> {
        let Some(first) = self.entries.first() else {
            // Files but no events yet (a store that begins at a snapshot's base): the
            // stream begins right after the first FileStart.
            let file = self.files.first()?;
            return Some(Loc {
                entry: file.file_start_entry + 1,
                offset: 0,
                file: 0,
                pos: file.start_pos,
            });
        };
        let offset = first.first_event_offset?;
        Some(Loc {
            entry: first.index,
            offset,
            file: first.file,
            pos: first.start_pos + offset as u64,
        })
    }
}

/// Per domain, the seq_no of the first group in stream order.
fn first_seqs(maria: &BTreeMap<(u32, u64), MariaGroup>) -> BTreeMap<u32, u64> {
    let mut first: BTreeMap<u32, (u64, usize, u64)> = BTreeMap::new();
    for ((domain, seq), g) in maria {
        let at = (g.loc.start.entry, g.loc.start.offset, *seq);
        first
            .entry(*domain)
            .and_modify(|f| {
                if (at.0, at.1) < (f.0, f.1) {
                    *f = at;
                }
            })
            .or_insert(at);
    }
    first.into_iter().map(|(d, (_, _, seq))| (d, seq)).collect()
}

/// The header timestamp of an event (0 when the header is short).
fn event_time(event: &[u8]) -> u32 {
    event
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Marks the MySQL part of a start state: `<MariaDB list>` alone (every store written
/// before MySQL support, and MariaDB stores still) or `<MariaDB list>\nmysql:<MySQL set>`.
const START_STATE_MYSQL: &str = "\nmysql:";

/// A start-state payload: the MariaDB GTID list, then the MySQL GTID set when there is one.
/// Where the stream begins (a START_STATE entry, or the first GTID_LIST before any group),
/// the master's gtid_binlog_pos is the state there: `maria_state` starts from it.
fn seed_maria_state(maria_state: &mut MariaGtidList, has_groups: bool, state: &MariaGtidList) {
    if !has_groups && maria_state.is_empty() {
        *maria_state = state.clone();
    }
}

pub fn encode_start_state(maria: &MariaGtidList, mysql: Option<&MysqlGtidSet>) -> Vec<u8> {
    let mut text = maria.to_string();
    if let Some(set) = mysql {
        text.push_str(START_STATE_MYSQL);
        text.push_str(&set.format());
    }
    text.into_bytes()
}

/// The MariaDB list and the MySQL set (if the payload has one) of a start-state payload.
pub fn parse_start_state(data: &[u8]) -> Result<(MariaGtidList, Option<MysqlGtidSet>), IndexError> {
    let text = std::str::from_utf8(data)
        .map_err(|_| IndexError::Entry(EntryError("start state is not text")))?;
    let (maria, mysql) = match text.split_once(START_STATE_MYSQL) {
        Some((maria, mysql)) => (maria, Some(mysql)),
        None => (text, None),
    };
    let maria = MariaGtidList::parse(maria)
        .map_err(|_| IndexError::Entry(EntryError("start state is not a MariaDB GTID list")))?;
    let mysql = mysql
        .map(MysqlGtidSet::parse)
        .transpose()
        .map_err(|_| IndexError::Entry(EntryError("start state has a bad MySQL GTID set")))?;
    Ok((maria, mysql))
}

/// Size of the event at the start of `bytes`, or None if its header is not all there.
fn event_size(bytes: &[u8], pos: u64) -> Result<Option<usize>, IndexError> {
    if bytes.len() < crate::binlog::event::HEADER_LEN {
        return Ok(None);
    }
    let at = crate::binlog::event::EVENT_SIZE_OFFSET;
    let size =
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
    if !(crate::binlog::event::HEADER_LEN..=crate::limits::EVENT_BYTES_MAX).contains(&size) {
        return Err(IndexError::Event {
            pos,
            reason: format!("event size {size} out of range"),
        });
    }
    Ok(Some(size))
}

/// MySQL-flavoured streams for the tests of the index and the binlog server: the kingbus
/// MySQL 5.7 chain (`tests/data/mysql/kingbus-5.7-mysql_bin.0000{11,12,13}`, master file
/// names `mysql_bin.0000NN`), and synthesized files (tagged GTIDs) built from its events.
#[cfg(test)]
pub(crate) mod mysql_testdata {
    use crate::binlog::event::{self, MysqlGtidEvent};
    use crate::binlog::gtid::MysqlGtidSet;
    use crate::binlog::test_data::{events_of, mysql_file};

    /// The master's file names of the chain, in order.
    pub const KINGBUS: [&str; 3] = ["mysql_bin.000011", "mysql_bin.000012", "mysql_bin.000013"];

    /// The events of one file of the chain (FDE first), by its master file name.
    pub fn kingbus_events(name: &str) -> Vec<(u64, Vec<u8>)> {
        let file = mysql_file(&format!("kingbus-5.7-{name}"));
        let mut pos = 4u64;
        events_of(&file)
            .into_iter()
            .map(|ev| {
                let at = pos;
                pos += ev.len() as u64;
                (at, ev.to_vec())
            })
            .collect()
    }

    /// A master's dump of whole files: per file an artificial ROTATE, then its events.
    pub fn kingbus_stream(names: &[&str]) -> Vec<Vec<u8>> {
        stream_of(
            &names
                .iter()
                .map(|n| {
                    let events = kingbus_events(n).into_iter().map(|(_, e)| e).collect();
                    (n.to_string(), events)
                })
                .collect::<Vec<_>>(),
        )
    }

    /// A dump of the given files (name, events from the FDE on).
    pub fn stream_of(files: &[(String, Vec<Vec<u8>>)]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (name, events) in files {
            out.push(event::build_rotate(name, 4, 1, true, true));
            out.extend(events.iter().cloned());
        }
        out
    }

    /// Every GTID of a stored file: (gno, position of its GTID event). The kingbus chain
    /// has one source uuid.
    pub fn kingbus_gtids(name: &str) -> Vec<(u64, u64)> {
        kingbus_events(name)
            .into_iter()
            .filter(|(_, ev)| ev[4] == event::GTID_LOG_EVENT)
            .map(|(pos, ev)| {
                let g = MysqlGtidEvent::parse(&ev, 4).unwrap();
                (g.gno as u64, pos)
            })
            .collect()
    }

    /// The source uuid of the kingbus chain.
    pub fn kingbus_uuid() -> [u8; 16] {
        let events = kingbus_events(KINGBUS[0]);
        let gtid = events.iter().find(|(_, e)| e[4] == event::GTID_LOG_EVENT);
        MysqlGtidEvent::parse(&gtid.unwrap().1, 4).unwrap().uuid
    }

    /// The PREVIOUS_GTIDS of a file of the chain.
    pub fn kingbus_previous(name: &str) -> MysqlGtidSet {
        let events = kingbus_events(name);
        event::parse_previous_gtids(&events[1].1, 4).unwrap()
    }

    /// A GTID_TAGGED_LOG_EVENT (type 42) body as MySQL 8.3+ serializes it.
    pub fn tagged_gtid_body(uuid: [u8; 16], tag: &str, gno: i64) -> Vec<u8> {
        let mut fields = Vec::new();
        let mut put = |field: u64, value: &dyn Fn(&mut Vec<u8>)| {
            event::put_varint_u64(&mut fields, field);
            value(&mut fields);
        };
        put(0, &|out| event::put_varint_u64(out, 0));
        put(1, &|out| {
            for b in uuid {
                event::put_varint_u64(out, u64::from(b));
            }
        });
        put(2, &|out| event::put_varint_i64(out, gno));
        put(3, &|out| {
            event::put_varint_u64(out, tag.len() as u64);
            out.extend_from_slice(tag.as_bytes());
        });
        put(4, &|out| event::put_varint_i64(out, 0));
        put(5, &|out| event::put_varint_i64(out, 1));
        put(6, &|out| event::put_varint_u64(out, 1_700_000_000_000_000));
        put(8, &|out| event::put_varint_u64(out, 100));
        put(9, &|out| event::put_varint_u64(out, 80400));
        let mut body = Vec::new();
        event::put_varint_u64(&mut body, 0);
        // The size counts from the format version byte; one byte each for these sizes.
        let size = 3 + fields.len();
        assert!(size < 128);
        event::put_varint_u64(&mut body, size as u64);
        event::put_varint_u64(&mut body, 10);
        body.extend_from_slice(&fields);
        body
    }

    /// A GTID event for (uuid, tag, gno): tagged → type 42; untagged → the chain's type 33
    /// event with uuid and gno replaced; gno 0 → ANONYMOUS_GTID (34). Positions and CRC32
    /// are fixed by [`fix_positions`].
    pub fn gtid_event(uuid: [u8; 16], tag: Option<&str>, gno: i64) -> Vec<u8> {
        if let Some(tag) = tag {
            let body = tagged_gtid_body(uuid, tag, gno);
            return event::build_event(event::GTID_TAGGED_LOG_EVENT, 1, 1, 0, 0, &body, true);
        }
        let chain = kingbus_events(KINGBUS[1]);
        let mut ev = chain[2].1.clone();
        if gno == 0 {
            ev[4] = event::ANONYMOUS_GTID_LOG_EVENT;
            ev[20..36].copy_from_slice(&[0; 16]);
        } else {
            ev[20..36].copy_from_slice(&uuid);
        }
        ev[36..44].copy_from_slice(&gno.to_le_bytes());
        ev
    }

    /// The events of the chain's first transaction after its GTID (BEGIN … XID).
    pub fn transaction_body() -> Vec<Vec<u8>> {
        let chain = kingbus_events(KINGBUS[1]);
        let xid = chain
            .iter()
            .position(|(_, e)| e[4] == event::XID_EVENT)
            .unwrap();
        chain[3..=xid].iter().map(|(_, e)| e.clone()).collect()
    }

    /// The chain's FDE and a PREVIOUS_GTIDS of `previous`: the start of a MySQL file.
    pub fn file_head(previous: &MysqlGtidSet) -> Vec<Vec<u8>> {
        let fde = kingbus_events(KINGBUS[1])[0].1.clone();
        let body = previous.encode();
        let prev = event::build_event(event::PREVIOUS_GTIDS_LOG_EVENT, 1, 1, 0, 0, &body, true);
        vec![fde, prev]
    }

    /// Sets every event's log_pos to where it ends in a file starting at 4, and its CRC32.
    pub fn fix_positions(events: &mut [Vec<u8>]) {
        let mut pos = 4u32;
        for ev in events {
            pos += ev.len() as u32;
            event::set_log_pos(ev, pos);
            event::set_checksum(ev);
        }
    }

    /// A MySQL file: [`file_head`], then per GTID one transaction copied from the chain's
    /// first one with its GTID event replaced (see [`gtid_event`]), ending with a ROTATE to
    /// `next` when given.
    pub fn synth_file(
        previous: &MysqlGtidSet,
        gtids: &[([u8; 16], Option<&str>, i64)],
        next: Option<&str>,
    ) -> Vec<Vec<u8>> {
        let mut events = file_head(previous);
        for (uuid, tag, gno) in gtids {
            events.push(gtid_event(*uuid, *tag, *gno));
            events.extend(transaction_body());
        }
        if let Some(next) = next {
            events.push(event::build_rotate(next, 4, 1, false, true));
        }
        fix_positions(&mut events);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testdata::{dump_stream, file_bytes, file_events, index_of, ingest};

    const LIMITS: [usize; 4] = [crate::limits::ENTRY_PAYLOAD_MAX, 300, 40, 10];

    /// At every place where `entries` are whole (`cut` entries in): `before` sees the index
    /// of those entries (`head`) and an index begun from its snapshot base; `after` sees
    /// `head` and that index once it was fed the rest of the entries.
    fn each_snapshot_cut(
        entries: &[(u8, Vec<u8>)],
        mut before: impl FnMut(usize, &BinlogIndex, &BinlogIndex),
        mut after: impl FnMut(usize, &BinlogIndex, &BinlogIndex),
    ) {
        for cut in 1..entries.len() {
            let head = index_of(&entries[..cut]);
            if head.has_partial_tail() || head.files().is_empty() {
                continue;
            }
            let base = head.base_entries();
            let mut index = BinlogIndex::from_origin(cut as u64, &base).unwrap();
            before(cut, &head, &index);
            for (i, (kind, data)) in entries.iter().enumerate().skip(cut) {
                index
                    .feed(i as u64 + 1, *kind, data)
                    .unwrap_or_else(|e| panic!("cut {cut}, entry {}: {e}", i + 1));
            }
            after(cut, &head, &index);
        }
    }

    /// Every MariaDB group of a file: (gtid, start pos, end pos).
    fn groups_of(name: &str) -> Vec<(MariaGtid, u64, u64)> {
        let mut tracker = TransactionTracker::new(4);
        let mut out = Vec::new();
        let mut open = None;
        for (pos, ev) in file_events(name) {
            let step = tracker.feed(&ev).unwrap();
            if step.starts_group {
                open = match step.gtid {
                    Some(Gtid::Maria(g)) => Some((g, pos)),
                    _ => None,
                };
            }
            if step.ends_group {
                if let Some((g, start)) = open.take() {
                    out.push((g, start, pos + ev.len() as u64));
                }
            }
        }
        out
    }

    #[test]
    fn every_gtid_group_is_found() {
        for limit in LIMITS {
            let index = index_of(&ingest(&dump_stream(&["bin.000001"]), limit));
            let groups = groups_of("bin.000001");
            assert_eq!(groups.len(), 17, "README: 0-1-1..15 and 2-1-1..2");
            for (g, start, end) in &groups {
                let loc = index
                    .maria_group(g)
                    .unwrap_or_else(|| panic!("{g}/{limit}"));
                assert_eq!((loc.start.pos, loc.end.pos), (*start, *end), "{g}/{limit}");
                assert_eq!((loc.start.file, loc.end.file), (0, 0));
                let other_server = MariaGtid { server_id: 9, ..*g };
                assert!(index.maria_group(&other_server).is_none());
            }
            assert_eq!(
                index.maria_state(),
                &MariaGtidList::parse("0-1-15,2-1-2").unwrap()
            );
            assert_eq!(index.maria_first_seq(0), Some(1));
            assert_eq!(index.maria_first_seq(2), Some(1));
            assert_eq!(index.maria_domains().collect::<Vec<_>>(), vec![0, 2]);
            assert_eq!(index.maria_start_state(), Some(&MariaGtidList::new()));
            let events = file_events("bin.000001");
            assert_eq!(
                index.totals(),
                (
                    events.len() as u64,
                    file_bytes("bin.000001").len() as u64 - 4
                )
            );
        }
    }

    #[test]
    fn group_locations_point_at_the_stored_bytes() {
        for limit in LIMITS {
            let entries = ingest(&dump_stream(&["bin.000001"]), limit);
            let index = index_of(&entries);
            let file = file_bytes("bin.000001");
            for (g, start, _) in groups_of("bin.000001") {
                let loc = index.maria_group(&g).unwrap().start;
                let data = &entries[loc.entry as usize - 1].1;
                let (h, bytes) = EventsHeader::decode(data).unwrap();
                assert_eq!(h.start_pos + loc.offset as u64, start);
                assert_eq!(
                    bytes[loc.offset..],
                    file[start as usize..start as usize + bytes.len() - loc.offset]
                );
            }
        }
    }

    #[test]
    fn entry_at_finds_every_event_start() {
        for limit in LIMITS {
            let entries = ingest(&dump_stream(&["bin.000001"]), limit);
            let index = index_of(&entries);
            for (pos, ev) in file_events("bin.000001") {
                let e = index.entry_at(0, pos).unwrap();
                assert!(e.start_pos <= pos && pos < e.start_pos + e.len as u64);
                let (h, bytes) = EventsHeader::decode(&entries[e.index as usize - 1].1).unwrap();
                assert_eq!(h.start_pos, e.start_pos);
                let off = (pos - e.start_pos) as usize;
                let n = ev.len().min(bytes.len() - off);
                assert_eq!(bytes[off..off + n], ev[..n], "{pos}/{limit}");
            }
            assert!(index.entry_at(0, 4587).is_none());
            assert!(index.entry_at(1, 4).is_none());
            assert!(index.entry_at(0, 3).is_none());
        }
    }

    #[test]
    fn files_and_resume_point_of_whole_files() {
        let names = ["bin.000001", "bin.000002", "bin.000003"];
        let entries = ingest(&dump_stream(&names), 100);
        let index = index_of(&entries);
        let files = index.files();
        assert_eq!(files.len(), 3);
        for (i, name) in names.iter().enumerate() {
            assert_eq!(files[i].name, *name);
            assert_eq!(files[i].start_pos, 4);
            assert_eq!(files[i].end_pos, file_bytes(name).len() as u64);
            assert_eq!(files[i].fde, file_events(name)[0].1);
            assert_eq!(index.file_index(name), Some(i));
            assert_eq!(
                entries[files[i].file_start_entry as usize - 1].0,
                KIND_FILE_START
            );
        }
        assert_eq!(index.file_index("bin.000009"), None);
        assert_eq!(index.whole_upto(), entries.len() as u64);
        assert_eq!(index.last_index(), entries.len() as u64);
        assert_eq!(index.resume_point(), Some(("bin.000003".into(), 430)));
        let first = index.first_loc().unwrap();
        assert_eq!(
            (first.entry, first.offset, first.file, first.pos),
            (2, 0, 0, 4)
        );
        assert_eq!(index.next_file(0).unwrap().name, "bin.000002");
        assert!(index.next_file(2).is_none());
        // bin.000002 begins with a GTID_LIST of what came before.
        let index = index_of(&ingest(&dump_stream(&["bin.000002"]), 100));
        assert_eq!(
            index.maria_start_state(),
            Some(&MariaGtidList::parse("0-1-15,2-1-2").unwrap())
        );
        assert_eq!(index.maria_first_seq(0), Some(16));
    }

    #[test]
    fn whole_upto_excludes_a_trailing_partial_chunk() {
        let entries = ingest(&dump_stream(&["bin.000001"]), 40);
        // Cut the log after every entry: the watermark is the last entry that ends outside
        // a group, and the resume point is where it ends.
        for cut in 1..=entries.len() {
            let index = index_of(&entries[..cut]);
            let mut expect = 1;
            let mut expect_end = 4;
            for (i, (kind, data)) in entries[..cut].iter().enumerate() {
                if *kind == KIND_EVENTS {
                    let (h, bytes) = EventsHeader::decode(data).unwrap();
                    if !h.ends_inside_group() {
                        expect = i as u64 + 1;
                        expect_end = h.start_pos + bytes.len() as u64;
                    }
                }
            }
            assert_eq!(index.whole_upto(), expect, "cut {cut}");
            assert_eq!(index.last_index(), cut as u64);
            assert_eq!(
                index.resume_point(),
                Some(("bin.000001".to_string(), expect_end))
            );
            assert_eq!(index.files()[0].end_pos, expect_end, "cut {cut}");
        }
        // Some cut really does end inside a group.
        let partial = entries
            .iter()
            .position(|(k, d)| {
                *k == KIND_EVENTS && EventsHeader::decode(d).unwrap().0.ends_inside_group()
            })
            .unwrap();
        assert!(index_of(&entries[..=partial]).whole_upto() < partial as u64 + 1);
    }

    #[test]
    fn bad_entries_are_refused() {
        let entries = ingest(&dump_stream(&["bin.000001"]), 300);
        // Events before any file, or not where the stream ends (a gap, or a repeat), are
        // skipped: dead, and the stream goes on where it was.
        let mut index = BinlogIndex::new();
        index.feed(1, KIND_EVENTS, &entries[1].1).unwrap();
        assert!(index.is_dead(1) && index.files().is_empty());
        let mut index = index_of(&entries[..3]);
        let resume = index.resume_point();
        for (at, entry) in [(4, 4), (5, 1), (6, 2)] {
            index.feed(at, KIND_EVENTS, &entries[entry].1).unwrap();
            assert!(index.is_dead(at), "entry {at}");
            assert_eq!(index.resume_point(), resume);
        }
        assert_eq!(index.dead, vec![(4, 6)], "adjacent skips merge");
        // The next entry that continues the stream is taken, and served.
        index.feed(7, KIND_EVENTS, &entries[3].1).unwrap();
        assert!(!index.is_dead(7));
        assert_eq!(index.whole_upto(), 7);
        assert_ne!(index.resume_point(), resume);
        let mut index = BinlogIndex::new();
        assert!(matches!(
            index.feed(1, KIND_FILE_START, &[]),
            Err(IndexError::Entry(_))
        ));
        // An event whose size field says less than a header.
        let mut index = index_of(&entries[..1]);
        let mut data = entries[1].1.clone();
        data[crate::store::entry::EVENTS_HEADER_LEN + 9..][..4].copy_from_slice(&[5, 0, 0, 0]);
        assert!(matches!(
            index.feed(2, KIND_EVENTS, &data),
            Err(IndexError::Event { pos: 4, .. })
        ));
    }

    #[test]
    fn unknown_kinds_are_skipped() {
        let entries = ingest(
            &dump_stream(&["bin.000001"]),
            crate::limits::ENTRY_PAYLOAD_MAX,
        );
        let mut index = index_of(&entries);
        let last = entries.len() as u64;
        index.feed(last + 1, 99, b"raft config").unwrap();
        assert_eq!(index.whole_upto(), last + 1);
        assert_eq!(index.resume_point(), Some(("bin.000001".into(), 4587)));
        assert!(index.entry_meta(last + 1).is_none());
        assert_eq!(index.entry_meta(last).unwrap().index, last);
        assert_eq!(index.entry_after(1).unwrap().index, 2);
        assert!(index.entry_after(last).is_none());
    }

    #[test]
    fn an_abandoned_partial_transaction_is_dead_and_the_refetch_continues() {
        let entries = ingest(&dump_stream(&["bin.000001"]), 40);
        let whole = index_of(&entries);
        // Every cut that leaves a transaction open: abandon it, then feed the rest again
        // from the last whole entry, as a new leader's syncer would.
        for cut in 1..entries.len() {
            let mut index = index_of(&entries[..cut]);
            if !index.has_partial_tail() {
                continue;
            }
            let whole_upto = index.whole_upto() as usize;
            let abandon_at = cut as u64 + 1;
            index.feed(abandon_at, KIND_ABANDON, &[]).unwrap();
            assert!(!index.has_partial_tail());
            assert_eq!(index.whole_upto(), abandon_at);
            for dead in whole_upto as u64 + 1..abandon_at {
                assert!(index.is_dead(dead), "cut {cut}: entry {dead} is dead");
            }
            assert!(!index.is_dead(abandon_at));
            for (k, (kind, data)) in entries[whole_upto..].iter().enumerate() {
                index
                    .feed(abandon_at + 1 + k as u64, *kind, data)
                    .unwrap_or_else(|e| panic!("cut {cut}: refetched entry {k}: {e}"));
            }
            assert_eq!(index.resume_point(), whole.resume_point(), "cut {cut}");
            assert_eq!(index.maria_state(), whole.maria_state(), "cut {cut}");
            for (gtid, _, _) in groups_of("bin.000001") {
                let group = index.maria_group(&gtid).expect("group indexed");
                assert!(!index.is_dead(group.start.entry), "cut {cut}: {gtid}");
            }
        }
    }
    /// Everything a purged or rebuilt index answers, to compare two of them.
    fn answers(index: &BinlogIndex) -> String {
        let files: Vec<_> = index
            .files()
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    f.start_pos,
                    f.end_pos,
                    f.file_start_entry,
                    f.events,
                    f.bytes,
                    f.last_event_time,
                )
            })
            .collect();
        let entries: Vec<_> = index
            .entries
            .iter()
            .map(|e| (e.index, e.file, e.start_pos, e.len, e.first_event_offset))
            .collect();
        let groups: Vec<_> = index
            .maria
            .iter()
            .map(|(k, g)| (*k, g.server_id, g.loc.start, g.loc.end))
            .collect();
        format!(
            "{files:?}\n{entries:?}\n{groups:?}\n{:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            index.maria_state(),
            index.maria_first_seq,
            index.maria_start_state(),
            index.resume_point(),
            index.whole_upto(),
            index.totals(),
            index.first_loc(),
        )
    }

    #[test]
    fn purge_drops_the_files_before_and_records_the_purged_state() {
        let names = ["bin.000001", "bin.000002", "bin.000003"];
        for limit in LIMITS {
            let entries = ingest(&dump_stream(&names), limit);
            let mut index = index_of(&entries);
            let resume = index.resume_point();
            let state = index.maria_state().clone();
            let second = index.files()[1].clone();
            let first_events = index.files()[0].events;
            let (events, bytes) = index.totals();
            assert!(index.files()[0].last_event_time > 0);
            assert_eq!(index.purged_gtids(), MariaGtidList::new());

            assert!(index.purge_to("bin.000001").is_none(), "nothing before it");
            assert!(index.purge_to("bin.000009").is_none(), "not stored");
            let purged = index.purge_to("bin.000002").unwrap();
            assert_eq!(purged.files, vec!["bin.000001".to_string()]);
            assert_eq!(purged.compact_to, second.file_start_entry - 1);
            assert_eq!(
                purged.purged_gtids,
                MariaGtidList::parse("0-1-15,2-1-2").unwrap()
            );
            assert_eq!(index.purged_gtids(), purged.purged_gtids);
            let kept: Vec<_> = index.files().iter().map(|f| f.name.as_str()).collect();
            assert_eq!(kept, ["bin.000002", "bin.000003"]);
            assert_eq!(index.file_index("bin.000002"), Some(0));
            assert!(index
                .maria_group(&MariaGtid::parse("0-1-15").unwrap())
                .is_none());
            let g = index
                .maria_group(&MariaGtid::parse("0-1-16").unwrap())
                .unwrap();
            assert_eq!((g.start.file, g.end.file), (0, 0));
            assert_eq!(index.maria_first_seq(0), Some(16));
            assert_eq!(index.maria_first_seq(2), None, "domain 2 has nothing left");
            assert_eq!(index.resume_point(), resume);
            assert_eq!(index.maria_state(), &state);
            assert_eq!(index.totals().0, events - first_events);
            assert!(index.totals().1 < bytes);
            let first = index.first_loc().unwrap();
            assert_eq!((first.file, first.pos), (0, 4));
            assert!(first.entry > purged.compact_to);
            assert!(index.entries.iter().all(|e| e.index > purged.compact_to));
            assert_eq!(index.entry_at(0, 4).unwrap().index, first.entry);

            // The origin plus the log after it gives the same index again (a restart).
            let (at, base) = index.origin().clone();
            assert_eq!(at, purged.compact_to);
            let mut rebuilt = BinlogIndex::from_origin(at, &base).unwrap();
            for (i, (kind, data)) in entries.iter().enumerate().skip(at as usize) {
                rebuilt.feed(i as u64 + 1, *kind, data).unwrap();
            }
            assert_eq!(answers(&rebuilt), answers(&index), "limit {limit}");
            assert_eq!(rebuilt.origin(), index.origin());

            // A second purge moves on from the first.
            let purged = index.purge_to("bin.000003").unwrap();
            assert_eq!(purged.files, vec!["bin.000002".to_string()]);
            assert_eq!(
                purged.purged_gtids,
                MariaGtidList::parse("0-1-18,2-1-2").unwrap()
            );
            assert_eq!(index.files().len(), 1);
            assert_eq!(index.resume_point(), resume);
        }
    }

    #[test]
    fn an_index_from_a_snapshot_base_continues_the_stream() {
        let names = ["bin.000001", "bin.000002", "bin.000003"];
        let entries = ingest(&dump_stream(&names), 200);
        let whole = index_of(&entries);
        // Every place where the stream is whole: base there, then the rest.
        let before = |cut: usize, head: &BinlogIndex, index: &BinlogIndex| {
            assert_eq!(index.origin(), &(cut as u64, head.base_entries()));
            assert_eq!(index.resume_point(), head.resume_point(), "cut {cut}");
            assert_eq!(index.maria_state(), head.maria_state(), "cut {cut}");
            assert_eq!(&index.purged_gtids(), head.maria_state(), "cut {cut}");
            // Nothing stored after the base yet: the stream begins right after it.
            let first = index.first_loc().unwrap();
            let resume = head.resume_point().unwrap();
            assert_eq!(
                (first.entry, first.file, first.pos),
                (cut as u64 + 1, 0, resume.1)
            );
        };
        let after = |cut: usize, _: &BinlogIndex, index: &BinlogIndex| {
            assert_eq!(index.resume_point(), whole.resume_point(), "cut {cut}");
            assert_eq!(index.maria_state(), whole.maria_state(), "cut {cut}");
            // Groups after the base are found where the whole index has them.
            for ((domain, seq), g) in &whole.maria {
                let gtid = MariaGtid {
                    domain_id: *domain,
                    server_id: g.server_id,
                    seq_no: *seq,
                };
                if g.loc.start.entry > cut as u64 {
                    let got = index.maria_group(&gtid).expect("group after the base");
                    assert_eq!(
                        (got.start.entry, got.start.pos),
                        (g.loc.start.entry, g.loc.start.pos)
                    );
                } else {
                    assert!(index.maria_group(&gtid).is_none(), "cut {cut}: {gtid}");
                }
            }
        };
        each_snapshot_cut(&entries, before, after);
    }

    mod mysql {
        use super::super::mysql_testdata::*;
        use super::*;

        fn set(text: &str) -> MysqlGtidSet {
            MysqlGtidSet::parse(text).unwrap()
        }

        fn chain_index(limit: usize) -> (Vec<(u8, Vec<u8>)>, BinlogIndex) {
            let entries = ingest(&kingbus_stream(&KINGBUS), limit);
            let index = index_of(&entries);
            (entries, index)
        }

        #[test]
        fn a_previous_gtids_that_does_not_parse_leaves_the_set_unknown() {
            let stream = kingbus_stream(&KINGBUS);
            let prev = stream[2].clone();
            assert_eq!(prev[4], crate::binlog::event::PREVIOUS_GTIDS_LOG_EVENT);
            let mut bad = prev.clone();
            // One interval 1..11790 becomes 5..3 (a set that cannot be).
            let interval = crate::binlog::event::HEADER_LEN + 8 + 16 + 8;
            bad[interval..interval + 8].copy_from_slice(&5u64.to_le_bytes());
            bad[interval + 8..interval + 16].copy_from_slice(&3u64.to_le_bytes());
            crate::binlog::event::set_checksum(&mut bad);
            let mut entries = ingest(&stream, crate::limits::ENTRY_PAYLOAD_MAX);
            let patched = entries.iter_mut().any(|(_, payload)| {
                let at = payload
                    .windows(prev.len())
                    .position(|w| w == prev.as_slice());
                at.map(|at| payload[at..at + bad.len()].copy_from_slice(&bad))
                    .is_some()
            });
            assert!(patched, "the PREVIOUS_GTIDS event is in an entry");
            // Feeding it must not fail (a failure would stop every node on every replay).
            let index = index_of(&entries);
            assert_eq!(index.files()[0].previous_gtids, None);
            assert_eq!(
                index.files()[1].previous_gtids,
                Some(kingbus_previous(KINGBUS[1]))
            );
        }

        #[test]
        fn the_kingbus_chain_is_indexed_by_mysql_gtid() {
            let uuid = kingbus_uuid();
            for limit in LIMITS {
                let (_, index) = chain_index(limit);
                assert_eq!(index.flavour(), Some(Flavour::MySql));
                assert_eq!(index.server_version().as_deref(), Some("5.7.23-log"));
                assert_eq!(index.files().len(), 3);
                let mut all = kingbus_previous(KINGBUS[0]);
                let mut count = 0;
                for (i, name) in KINGBUS.iter().enumerate() {
                    let meta = &index.files()[i];
                    assert_eq!(meta.previous_gtids, Some(kingbus_previous(name)), "{name}");
                    let gtids = kingbus_gtids(name);
                    assert_eq!(gtids.len(), if i == 0 { 11 } else { 10 });
                    // The file's first transaction, as a GTID dump's start needs it.
                    let uuid_tsid = Tsid { uuid, tag: None };
                    assert_eq!(
                        meta.first_mysql_gtid,
                        Some((uuid_tsid, gtids[0].0)),
                        "{name}"
                    );
                    // Each file's PREVIOUS_GTIDS is everything before it.
                    assert_eq!(&kingbus_previous(name), &all, "{name}");
                    for (k, (gno, pos)) in gtids.iter().enumerate() {
                        let g = index.mysql_group(&uuid, None, *gno).expect("indexed");
                        assert_eq!((g.start.file, g.start.pos), (i, *pos), "{name}:{gno}");
                        let next = gtids.get(k + 1).map(|(_, p)| *p);
                        if let Some(next) = next {
                            assert!(g.end.pos <= next, "{name}:{gno}");
                        }
                        assert!(index.mysql_group(&uuid, Some("t"), *gno).is_none());
                        all.add(uuid, None, *gno).unwrap();
                        count += 1;
                    }
                }
                assert_eq!(count, 31);
                assert_eq!(index.mysql_groups().count(), 31);
                assert_eq!(index.mysql_executed(), &all);
                assert_eq!(index.mysql_purged(), &kingbus_previous(KINGBUS[0]));
                assert_eq!(index.mysql_gtids_before(0), Some(index.mysql_purged()));
                assert_eq!(
                    index.mysql_gtids_before(2),
                    Some(&kingbus_previous(KINGBUS[2]))
                );
                assert!(index.mysql_gtids_before(3).is_none());
                // No MariaDB state at all.
                assert!(index.maria_state().is_empty());
            }
        }

        #[test]
        fn mariadb_data_has_no_mysql_state_and_keeps_its_start_state_format() {
            let names = ["bin.000001", "bin.000002"];
            let mut index = index_of(&ingest(&dump_stream(&names), 200));
            assert_eq!(index.flavour(), Some(Flavour::MariaDb));
            assert!(index.server_version().unwrap().contains("MariaDB"));
            assert!(index.mysql_executed().is_empty());
            assert!(index.mysql_purged().is_empty());
            assert!(index.files().iter().all(|f| f.previous_gtids.is_none()));
            let base = index.base_entries();
            assert_eq!(base[0].1, index.maria_state().to_string().into_bytes());
            let purged = index.purge_to("bin.000002").unwrap();
            assert!(purged.purged_mysql.is_empty());
            assert_eq!(
                index.origin().1[0].1,
                purged.purged_gtids.to_string().into_bytes(),
                "MariaDB stores write the start state as before"
            );
            assert_eq!(BinlogIndex::new().flavour(), None);
            assert_eq!(BinlogIndex::new().server_version(), None);
        }

        #[test]
        fn start_state_payloads_old_and_new() {
            let maria = MariaGtidList::parse("0-1-5").unwrap();
            let mysql = set("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:blue:3");
            let (m, y) = parse_start_state(b"0-1-5").unwrap();
            assert_eq!((m, y), (maria.clone(), None));
            let enc = encode_start_state(&maria, Some(&mysql));
            assert_eq!(
                parse_start_state(&enc).unwrap(),
                (maria, Some(mysql.clone()))
            );
            let enc = encode_start_state(&MariaGtidList::new(), Some(&MysqlGtidSet::new()));
            assert_eq!(
                parse_start_state(&enc).unwrap(),
                (MariaGtidList::new(), Some(MysqlGtidSet::new()))
            );
            assert!(parse_start_state(b"\nmysql:nonsense").is_err());
            assert!(parse_start_state(b"x\nmysql:").is_err());
            assert!(parse_start_state(&[0xff]).is_err());
            // A start state makes an empty index begin there.
            let enc = encode_start_state(&MariaGtidList::new(), Some(&mysql));
            let index = BinlogIndex::from_origin(7, &[(KIND_START_STATE, enc)]).unwrap();
            assert_eq!(index.mysql_purged(), &mysql);
            assert_eq!(index.mysql_executed(), &mysql);
        }

        #[test]
        fn purge_moves_mysql_purged_and_the_origin_rebuilds_it() {
            for limit in LIMITS {
                let (entries, mut index) = chain_index(limit);
                let executed = index.mysql_executed().clone();
                let purged = index.purge_to("mysql_bin.000012").unwrap();
                assert_eq!(purged.purged_mysql, kingbus_previous(KINGBUS[1]));
                assert_eq!(index.mysql_purged(), &purged.purged_mysql);
                assert_eq!(index.mysql_executed(), &executed);
                let uuid = kingbus_uuid();
                let (first_gno, _) = kingbus_gtids(KINGBUS[0])[0];
                assert!(index.mysql_group(&uuid, None, first_gno).is_none());
                let (gno, pos) = kingbus_gtids(KINGBUS[1])[0];
                let g = index.mysql_group(&uuid, None, gno).unwrap();
                assert_eq!((g.start.file, g.start.pos), (0, pos));
                assert_eq!(index.mysql_groups().count(), 20);
                // The origin plus the later log gives the same index again.
                let (at, base) = index.origin().clone();
                let mut rebuilt = BinlogIndex::from_origin(at, &base).unwrap();
                for (i, (kind, data)) in entries.iter().enumerate().skip(at as usize) {
                    rebuilt.feed(i as u64 + 1, *kind, data).unwrap();
                }
                assert_eq!(rebuilt.mysql_purged(), index.mysql_purged());
                assert_eq!(rebuilt.mysql_executed(), index.mysql_executed());
                let groups = |i: &BinlogIndex| -> Vec<String> {
                    i.mysql_groups()
                        .map(|(t, gno, g)| format!("{t:?}{gno}{:?}{:?}", g.start, g.end))
                        .collect()
                };
                assert_eq!(groups(&rebuilt), groups(&index));
                assert_eq!(answers(&rebuilt), answers(&index), "limit {limit}");
                let purged = index.purge_to("mysql_bin.000013").unwrap();
                assert_eq!(purged.purged_mysql, kingbus_previous(KINGBUS[2]));
            }
        }

        #[test]
        fn a_snapshot_base_carries_the_mysql_state() {
            let (entries, whole) = chain_index(300);
            each_snapshot_cut(
                &entries,
                |cut, head, index| {
                    assert_eq!(index.mysql_executed(), head.mysql_executed(), "cut {cut}");
                    assert_eq!(index.mysql_purged(), head.mysql_executed(), "cut {cut}");
                },
                |cut, head, index| {
                    assert_eq!(index.mysql_executed(), whole.mysql_executed(), "cut {cut}");
                    assert_eq!(index.mysql_purged(), head.mysql_executed(), "cut {cut}");
                },
            );
        }

        #[test]
        fn tagged_and_anonymous_gtids() {
            let uuid = kingbus_uuid();
            let other = [7u8; 16];
            let previous = set(&format!(
                "{}:1-3,{}:blue:1",
                crate::binlog::gtid::format_uuid(&uuid),
                crate::binlog::gtid::format_uuid(&other)
            ));
            let events = synth_file(
                &previous,
                &[
                    (uuid, None, 4),
                    (other, Some("Blue"), 2),
                    ([0; 16], None, 0),
                    (other, Some("blue"), 3),
                    (other, None, 9),
                ],
                None,
            );
            let stream = stream_of(&[("tagged.000001".to_string(), events)]);
            for limit in LIMITS {
                let index = index_of(&ingest(&stream, limit));
                assert_eq!(index.mysql_purged(), &previous);
                assert_eq!(
                    index.mysql_executed(),
                    &previous.union(&set(&format!(
                        "{}:4,{}:9:blue:2-3",
                        crate::binlog::gtid::format_uuid(&uuid),
                        crate::binlog::gtid::format_uuid(&other)
                    )))
                );
                assert_eq!(index.mysql_groups().count(), 4, "anonymous is not indexed");
                let blue = index.mysql_group(&other, Some("BLUE"), 2).unwrap();
                let plain = index.mysql_group(&uuid, None, 4).unwrap();
                assert!(plain.end.pos <= blue.start.pos);
                assert!(index.mysql_group(&other, None, 2).is_none());
                assert!(index.mysql_group(&other, Some("blue"), 9).is_none());
            }
        }
    }

    /// An index rebuilt from a purge point (a restart) reports the same MariaDB
    /// gtid_binlog_pos as the live one, also for a store that begins mid-history with a
    /// GTID_LIST naming a domain none of its transactions belong to (bin.000002 begins at
    /// 0-1-15,2-1-2): both count the list where the stream begins.
    #[test]
    fn a_rebuild_after_a_purge_keeps_the_gtid_position() {
        let entries = ingest(&dump_stream(&["bin.000002", "bin.000003"]), 300);
        let mut live = index_of(&entries);
        assert!(
            live.maria_state().get(2).is_some(),
            "{}",
            live.maria_state()
        );
        live.purge_to("bin.000003").unwrap();
        let (at, base) = live.origin().clone();
        let mut rebuilt = BinlogIndex::from_origin(at, &base).unwrap();
        for (i, (kind, data)) in entries.iter().enumerate().skip(at as usize) {
            rebuilt.feed(i as u64 + 1, *kind, data).unwrap();
        }
        assert_eq!(
            live.maria_state().to_string(),
            rebuilt.maria_state().to_string()
        );
        assert_eq!(
            live.purged_gtids().to_string(),
            rebuilt.purged_gtids().to_string()
        );
    }

    /// A file proposed a second time (an import retried while its first copy was still
    /// uncommitted) is dead whole, FileStart and events: it neither appears twice in the
    /// file list nor moves the stream; the next file still continues it.
    #[test]
    fn a_file_stored_twice_is_skipped_the_second_time() {
        let first = ingest(&dump_stream(&["bin.000001"]), 300);
        let second = ingest(&dump_stream(&["bin.000002"]), 300);
        let mut index = index_of(&first);
        let resume = index.resume_point();
        let mut at = first.len() as u64;
        for (kind, data) in &first {
            at += 1;
            index.feed(at, *kind, data).unwrap();
            assert!(index.is_dead(at), "entry {at}");
        }
        assert_eq!(index.files().len(), 1);
        assert_eq!(index.resume_point(), resume);
        for (kind, data) in &second {
            at += 1;
            index.feed(at, *kind, data).unwrap();
            assert!(!index.is_dead(at), "entry {at}");
        }
        let names: Vec<&str> = index.files().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["bin.000001", "bin.000002"]);
    }
}
