//! Reads the stored binlog back as events, in order, from a location, never past a given
//! entry (the watermark). Events cut across chunk entries come out whole, or as a head and
//! pieces when the caller streams them (below).
//!
//! It reads an entry through a window of `CURSOR_READ_BYTES_MAX` bytes, never the whole
//! entry (up to `ENTRY_PAYLOAD_MAX`): a cursor holds the window plus the one event it
//! assembles, so many dumps of old binlog stay small. Those range reads skip the log
//! record's CRC32; every event carries its own, which the binlog server verifies before
//! sending it (`event::verify_checksum` in `server::dump`), or while sending a streamed one
//! (its last piece held back until the CRC32 matches), so corruption is still caught.
//!
//! Events are lent, not copied: an event whole in the window is yielded as a slice of it,
//! one gathered across windows or entries as a slice of the cursor's `carry`; either is
//! valid until the next call (a dump sends tens of thousands of events a second per client,
//! and an allocation and a copy for each showed in its CPU time).
//!
//! An event larger than the window whose type the caller chose to stream ([`Cursor::streaming`])
//! is not gathered at all: it comes as an [`Item::Head`] (its first bytes, a header at
//! least) and then as pieces ([`Cursor::piece`]), each a slice of the window, so a dump of
//! a 100 MiB row event holds a window of it, not the event. Its CRC32 can then only be
//! checked as it goes (`event::ChecksumStream`).
//!
//! It only reads; it must not decide what to send (that is the binlog server's job).

use super::entry::{EventsHeader, FileStart, EVENTS_HEADER_LEN, KIND_EVENTS, KIND_FILE_START};
use super::index::Loc;
use super::{Store, StoreError};
use crate::binlog::event::HEADER_LEN;
use crate::limits::CURSOR_READ_BYTES_MAX;
use crate::storage::DataRange;

// The first window of an entry must hold its Events header, and a window an event header.
const _: () = assert!(CURSOR_READ_BYTES_MAX >= HEADER_LEN && HEADER_LEN >= EVENTS_HEADER_LEN);

/// What the cursor yields, borrowed from it until its next call.
#[derive(Debug)]
pub enum Item<'a> {
    /// The store continues in another master file.
    FileStart(FileStart),
    /// One whole event, starting at `pos` of the current file.
    Event { pos: u64, bytes: &'a [u8] },
    /// The first bytes of an event of `len` bytes larger than the window, starting at
    /// `pos` (a header at least, a window at most); the rest follows through
    /// [`Cursor::piece`] (what the caller does not take, the next `next` skips).
    Head {
        pos: u64,
        len: usize,
        head: &'a [u8],
    },
}

/// A reading position in the store.
pub struct Cursor {
    next_entry: u64,
    /// Offset to start at in the first entry loaded.
    first_offset: usize,
    /// The Events entry being read and the length of its data.
    entry: u64,
    entry_len: usize,
    /// `buf[..win_len]` holds the entry's data bytes `win_start..win_start + win_len`.
    buf: Vec<u8>,
    win_start: usize,
    win_len: usize,
    /// Bytes read at a time (`CURSOR_READ_BYTES_MAX`; smaller in tests).
    window: usize,
    /// Offset in the entry's data of the next byte to yield.
    off: usize,
    start_pos: u64,
    /// An event gathered across windows or entries, and where it starts. Its room is kept
    /// only up to a window's size.
    carry: Vec<u8>,
    carry_pos: u64,
    /// `carry` holds an event already yielded: cleared at the next call.
    carry_lent: bool,
    /// Which events larger than the window come as a head and pieces (by type code);
    /// the others are gathered whole. None: every event whole.
    stream: Option<fn(u8) -> bool>,
    /// Bytes of the event a `Head` began still to come as pieces.
    piece_left: usize,
}

impl Cursor {
    /// A cursor that yields the event at `loc` first.
    pub fn at(loc: Loc) -> Cursor {
        Cursor {
            next_entry: loc.entry,
            first_offset: loc.offset,
            entry: 0,
            entry_len: 0,
            buf: Vec::new(),
            win_start: 0,
            win_len: 0,
            window: CURSOR_READ_BYTES_MAX,
            off: 0,
            start_pos: 0,
            carry: Vec::new(),
            carry_pos: 0,
            carry_lent: false,
            stream: None,
            piece_left: 0,
        }
    }

    /// The same cursor, yielding events larger than the window whose type code `by_type`
    /// accepts as a head and pieces instead of gathering them.
    pub fn streaming(mut self, by_type: fn(u8) -> bool) -> Cursor {
        self.stream = Some(by_type);
        self
    }

    /// Bytes of the event the last `Head` began that were not yielded yet.
    #[cfg(test)]
    fn piece_left(&self) -> usize {
        self.piece_left
    }

    /// A cursor that starts with entry `index` (a FileStart or the first Events entry).
    pub fn at_entry(index: u64) -> Cursor {
        Cursor::at(Loc {
            entry: index,
            offset: 0,
            file: 0,
            pos: 0,
        })
    }

    /// The same cursor reading `window` bytes at a time.
    #[cfg(test)]
    fn with_window(mut self, window: usize) -> Cursor {
        assert!(window >= HEADER_LEN);
        self.window = window;
        self
    }

    /// Entry the cursor reads next once the current one is used up.
    pub fn next_entry(&self) -> u64 {
        self.next_entry
    }

    /// Next item, or None when the next entry is past `upto`.
    pub fn next(&mut self, store: &Store, upto: u64) -> Result<Option<Item<'_>>, StoreError> {
        if std::mem::take(&mut self.carry_lent) {
            self.empty_carry();
        }
        // The rest of a streamed event the caller did not take.
        while self.piece_left > 0 {
            if self.piece(store, upto)?.is_none() {
                return Ok(None);
            }
        }
        loop {
            if self.off < self.entry_len {
                if self.off >= self.win_start + self.win_len {
                    self.fill(store)?;
                }
                match self.take_event(store)? {
                    Taken::Window { start, len } => {
                        return Ok(Some(Item::Event {
                            pos: self.start_pos.wrapping_add(self.off as u64 - len as u64),
                            bytes: &self.buf[start..start + len],
                        }))
                    }
                    Taken::Carried => {
                        self.carry_lent = true;
                        return Ok(Some(Item::Event {
                            pos: self.carry_pos,
                            bytes: &self.carry,
                        }));
                    }
                    Taken::HeadInWindow { start, len, size } => {
                        return Ok(Some(Item::Head {
                            pos: self.start_pos.wrapping_add(self.off as u64 - len as u64),
                            len: size,
                            head: &self.buf[start..start + len],
                        }))
                    }
                    Taken::HeadInCarry { size } => {
                        self.carry_lent = true;
                        return Ok(Some(Item::Head {
                            pos: self.carry_pos,
                            len: size,
                            head: &self.carry,
                        }));
                    }
                    Taken::Nothing => continue,
                }
            }
            match self.open_next_entry(store, upto)? {
                Opened::Past => return Ok(None),
                Opened::FileStart(fs) => {
                    self.empty_carry();
                    return Ok(Some(Item::FileStart(fs)));
                }
                Opened::Events | Opened::Other => {}
            }
        }
    }

    /// The next bytes of the event the last `Head` began, lent until the next call: None
    /// once it was all yielded, or (with `piece_left` above 0) when the rest lies in
    /// entries past `upto`; a later call with a larger `upto` goes on.
    pub fn piece(&mut self, store: &Store, upto: u64) -> Result<Option<&[u8]>, StoreError> {
        if std::mem::take(&mut self.carry_lent) {
            self.empty_carry();
        }
        while self.piece_left > 0 {
            if self.off < self.entry_len {
                if self.off >= self.win_start + self.win_len {
                    self.fill(store)?;
                }
                let start = self.off - self.win_start;
                let len = self.piece_left.min(self.win_len - start);
                self.off += len;
                self.piece_left -= len;
                return Ok(Some(&self.buf[start..start + len]));
            }
            // The event goes on in the next Events entry.
            match self.open_next_entry(store, upto)? {
                Opened::Past => return Ok(None),
                Opened::Events | Opened::Other => {}
                Opened::FileStart(_) => {
                    let e = super::entry::EntryError("a new file starts inside an event");
                    return Err(bad(self.next_entry - 1, e));
                }
            }
        }
        Ok(None)
    }

    /// Moves on to the next live entry (dead ones are skipped): an Events entry becomes
    /// the one read.
    fn open_next_entry(&mut self, store: &Store, upto: u64) -> Result<Opened, StoreError> {
        if self.next_entry > upto {
            return Ok(Opened::Past);
        }
        if store.index().is_dead(self.next_entry) {
            self.next_entry += 1;
            return Ok(Opened::Other);
        }
        let index = self.next_entry;
        let range = self.load(store, index, 0)?;
        self.next_entry += 1;
        match range.kind {
            KIND_FILE_START => Ok(Opened::FileStart(self.file_start(store, index, range)?)),
            KIND_EVENTS => {
                let (header, _) =
                    EventsHeader::decode(&self.buf[..self.win_len]).map_err(|e| bad(index, e))?;
                self.entry = index;
                self.entry_len = range.data_len;
                self.off = EVENTS_HEADER_LEN + std::mem::take(&mut self.first_offset);
                self.start_pos = header.start_pos.wrapping_sub(EVENTS_HEADER_LEN as u64);
                if self.off > self.entry_len {
                    self.off = self.entry_len;
                }
                Ok(Opened::Events)
            }
            _ => {
                self.win_len = 0;
                Ok(Opened::Other)
            }
        }
    }

    /// Whether an event of `size` bytes whose header `header` begins is yielded as a head
    /// and pieces.
    fn streams(&self, header: &[u8], size: usize) -> bool {
        size > self.window
            && self
                .stream
                .is_some_and(|by_type| by_type(header[crate::binlog::event::TYPE_CODE_OFFSET]))
    }

    /// Empties `carry`. Room for an event larger than a window (an ANNOTATE_ROWS of a bulk
    /// INSERT can take megabytes) is let go rather than kept for the rest of the dump, in
    /// every dump.
    fn empty_carry(&mut self) {
        if self.carry.capacity() > self.window {
            self.carry = Vec::new();
        } else {
            self.carry.clear();
        }
    }

    /// Reads a window of entry `index` from `offset` into `buf`.
    fn load(&mut self, store: &Store, index: u64, offset: usize) -> Result<DataRange, StoreError> {
        if self.buf.len() != self.window {
            self.buf = vec![0; self.window];
        }
        let range = store.read_range(index, offset, &mut self.buf)?;
        self.win_start = offset;
        self.win_len = range.read;
        Ok(range)
    }

    /// Moves the window of the current entry to start at `off`.
    fn fill(&mut self, store: &Store) -> Result<(), StoreError> {
        let range = self.load(store, self.entry, self.off)?;
        // Stored entries do not change under a reader (a reset makes the read fail); a
        // different length or no bytes means the log is not what the cursor started on.
        if range.kind != KIND_EVENTS || range.data_len != self.entry_len || range.read == 0 {
            return Err(bad(
                self.entry,
                super::entry::EntryError("entry changed while read"),
            ));
        }
        Ok(())
    }

    /// Decodes a FileStart entry whose first window is loaded (it is small; a larger one
    /// is read whole).
    fn file_start(
        &mut self,
        store: &Store,
        index: u64,
        range: DataRange,
    ) -> Result<FileStart, StoreError> {
        let fs = if range.read == range.data_len {
            FileStart::decode(&self.buf[..self.win_len])
        } else {
            FileStart::decode(&store.read(index)?.data)
        };
        self.win_len = 0;
        fs.map_err(|e| bad(index, e))
    }

    /// Takes the next event out of the window, or moves its start into `carry`.
    fn take_event(&mut self, store: &Store) -> Result<Taken, StoreError> {
        if self.carry.is_empty() {
            let start = self.off - self.win_start;
            let rest = &self.buf[start..self.win_len];
            if rest.len() >= HEADER_LEN {
                let size = event_size(rest);
                if size <= rest.len() {
                    self.off += size;
                    return Ok(Taken::Window { start, len: size });
                }
                if self.streams(rest, size) {
                    let len = rest.len();
                    self.off += len;
                    self.piece_left = size - len;
                    return Ok(Taken::HeadInWindow { start, len, size });
                }
            }
            // Not whole in the window: read on from the event's start if the entry holds
            // more, so only an event larger than the window (or one cut across entries)
            // is gathered in `carry`.
            if self.win_start < self.off && self.win_start + self.win_len < self.entry_len {
                self.fill(store)?;
                return Ok(Taken::Nothing);
            }
        }
        Ok(self.take_carried())
    }

    fn take_carried(&mut self) -> Taken {
        if self.carry.is_empty() {
            self.carry_pos = self.start_pos.wrapping_add(self.off as u64);
        }
        let total = if self.carry.len() >= HEADER_LEN {
            event_size(&self.carry)
        } else {
            HEADER_LEN
        };
        // The header gathered (its start was at the end of an entry): a streamed event
        // goes on as pieces from here.
        if self.carry.len() >= HEADER_LEN && self.streams(&self.carry, total) {
            self.piece_left = total - self.carry.len();
            return Taken::HeadInCarry { size: total };
        }
        // Room for exactly the event, not up to twice it by doubling: many dumps that
        // start together may all be gathering the same large events at once. Only as far
        // as this entry goes: a damaged size field must not reserve what it claims (up to
        // EVENT_BYTES_MAX) before any of it is read.
        let here = self.entry_len.saturating_sub(self.off);
        self.carry
            .reserve_exact(total.saturating_sub(self.carry.len()).min(here));
        let rest = &self.buf[self.off - self.win_start..self.win_len];
        let take = total.saturating_sub(self.carry.len()).min(rest.len());
        self.carry.extend_from_slice(&rest[..take]);
        self.off += take;
        if self.carry.len() >= HEADER_LEN && self.carry.len() == event_size(&self.carry) {
            Taken::Carried
        } else {
            Taken::Nothing
        }
    }
}

/// What `take_event` found.
enum Taken {
    /// A whole event at `buf[start..start + len]`.
    Window { start: usize, len: usize },
    /// A whole event in `carry`.
    Carried,
    /// The first `len` bytes of a streamed event of `size` bytes at `buf[start..]`.
    HeadInWindow {
        start: usize,
        len: usize,
        size: usize,
    },
    /// The first bytes of a streamed event of `size` bytes in `carry`.
    HeadInCarry { size: usize },
    /// Not yet a whole event.
    Nothing,
}

/// What `open_next_entry` found.
enum Opened {
    /// The next entry is past `upto`.
    Past,
    FileStart(FileStart),
    /// An Events entry, now the one read.
    Events,
    /// A dead entry or one of another kind, skipped.
    Other,
}

/// Event size from a header the index validated when the entry was stored. Clamped all the
/// same: a cursor placed off an event boundary (a replica's bad position) reads garbage as a
/// header, and must not gather gigabytes for it; the server's CRC check then refuses it.
fn event_size(bytes: &[u8]) -> usize {
    let size = u32::from_le_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]) as usize;
    size.clamp(HEADER_LEN, crate::limits::EVENT_BYTES_MAX)
}

fn bad(index: u64, e: super::entry::EntryError) -> StoreError {
    StoreError::Index {
        index,
        error: super::index::IndexError::Entry(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testdata::{dump_stream, file_events, ingest};

    fn store_with(names: &[&str], limit: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        store.append(ingest(&dump_stream(names), limit)).unwrap();
        (dir, store)
    }

    type Yielded = Vec<(String, u64, Vec<u8>)>;

    /// Everything a cursor yields up to `upto`, files as names and events as (pos, bytes)
    /// (a streamed event put together from its head and pieces); an event streamed up to
    /// `upto` only is left for the next call.
    fn drain(cursor: &mut Cursor, store: &Store, upto: u64) -> Yielded {
        Reader::default().drain(cursor, store, upto)
    }

    /// Reads like `drain`, and puts an event cut at `upto` together across calls.
    #[derive(Default)]
    struct Reader {
        /// A streamed event read in part: (pos, len, bytes so far).
        partial: Option<(u64, usize, Vec<u8>)>,
        /// Each Head's and each piece's length.
        lent: Vec<usize>,
    }

    impl Reader {
        fn drain(&mut self, cursor: &mut Cursor, store: &Store, upto: u64) -> Yielded {
            let mut out = Vec::new();
            loop {
                if let Some((pos, len, mut bytes)) = self.partial.take() {
                    while let Some(piece) = cursor.piece(store, upto).unwrap() {
                        self.lent.push(piece.len());
                        bytes.extend_from_slice(piece);
                    }
                    if cursor.piece_left() > 0 {
                        assert_eq!(bytes.len() + cursor.piece_left(), len);
                        self.partial = Some((pos, len, bytes));
                        return out;
                    }
                    assert_eq!(bytes.len(), len, "a streamed event at {pos}");
                    out.push((String::new(), pos, bytes));
                }
                match cursor.next(store, upto).unwrap() {
                    None => return out,
                    Some(Item::FileStart(fs)) => out.push((fs.file_name, fs.start_pos, Vec::new())),
                    Some(Item::Event { pos, bytes }) => {
                        out.push((String::new(), pos, bytes.to_vec()))
                    }
                    Some(Item::Head { pos, len, head }) => {
                        assert!(head.len() >= HEADER_LEN && head.len() < len);
                        self.lent.push(head.len());
                        self.partial = Some((pos, len, head.to_vec()));
                    }
                }
            }
        }
    }

    fn expected(names: &[&str]) -> Vec<(String, u64, Vec<u8>)> {
        let mut out = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                out.push((name.to_string(), 4, Vec::new()));
            }
            out.extend(
                file_events(name)
                    .into_iter()
                    .map(|(p, e)| (String::new(), p, e)),
            );
        }
        out
    }

    #[test]
    fn reads_every_event_back_in_order() {
        let names = ["bin.000001", "bin.000002", "bin.000003"];
        for limit in [crate::limits::ENTRY_PAYLOAD_MAX, 300, 40, 10] {
            let (_dir, store) = store_with(&names, limit);
            let first = store.index().first_loc().unwrap();
            let mut cursor = Cursor::at(first);
            let got = drain(&mut cursor, &store, store.whole_upto());
            assert_eq!(got, expected(&names), "limit {limit}");
            assert_eq!(cursor.next_entry(), store.whole_upto() + 1);
            // From entry 1 the first FileStart comes too.
            let got = drain(&mut Cursor::at_entry(1), &store, store.whole_upto());
            assert_eq!(got[0], ("bin.000001".to_string(), 4, Vec::new()));
            assert_eq!(got[1..], expected(&names)[..]);
        }
    }

    /// A cursor started off an event boundary reads garbage as an event header; what it
    /// gathers for it is bounded by what the store holds, not by the size the garbage claims.
    #[test]
    fn a_garbage_header_reserves_no_more_than_the_store_holds() {
        let (_dir, store) = store_with(&["bin.000001"], crate::limits::ENTRY_PAYLOAD_MAX);
        let last = store.whole_upto();
        let stored: usize = (1..=last).map(|i| store.read(i).unwrap().data.len()).sum();
        for entry in 1..=last {
            for offset in 1..40 {
                let start = Loc {
                    entry,
                    offset,
                    file: 0,
                    pos: 0,
                };
                let mut cursor = Cursor::at(start).with_window(HEADER_LEN);
                while let Some(_item) = cursor.next(&store, last).unwrap() {}
                assert!(
                    cursor.carry.capacity() <= 2 * stored,
                    "entry {entry} offset {offset}: {} bytes reserved, {stored} stored",
                    cursor.carry.capacity()
                );
            }
        }
    }

    /// Events larger than the window are gathered in room of exactly their size.
    #[test]
    fn a_carried_event_gets_exactly_its_room() {
        let (_dir, store) = store_with(&["bin.000001"], 40);
        let mut cursor = Cursor::at_entry(1).with_window(HEADER_LEN);
        let mut carried = 0;
        loop {
            let len = match cursor.next(&store, store.whole_upto()).unwrap() {
                Some(Item::Event { bytes, .. }) => bytes.len(),
                Some(Item::FileStart(_)) => continue,
                Some(Item::Head { .. }) => unreachable!("this cursor does not stream"),
                None => break,
            };
            if len > HEADER_LEN {
                carried += 1;
                assert_eq!(cursor.carry.capacity(), len);
            }
        }
        assert!(carried > 10, "{carried} events carried");
    }

    #[test]
    fn starts_at_a_group_end() {
        let (_dir, store) = store_with(&["bin.000001"], 40);
        let events = file_events("bin.000001");
        let g = crate::binlog::gtid::MariaGtid::parse("0-1-7").unwrap();
        let end = store.index().maria_group(&g).unwrap().end;
        let got = drain(&mut Cursor::at(end), &store, store.whole_upto());
        let want: Vec<_> = events
            .into_iter()
            .filter(|(p, _)| *p >= end.pos)
            .map(|(p, e)| (String::new(), p, e))
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want);
    }

    #[test]
    fn stops_at_upto_and_continues_past_it_later() {
        let (_dir, store) = store_with(&["bin.000001"], 10);
        let all = expected(&["bin.000001"]);
        let last = store.whole_upto();
        let first = store.index().first_loc().unwrap();
        for upto in [2, 5, 77, last / 2, last - 1] {
            let mut cursor = Cursor::at(first);
            let head = drain(&mut cursor, &store, upto);
            // Only events whose last byte is in an entry up to `upto`.
            let end_of_upto = {
                let index = store.index();
                let e = index.entry_meta(upto).unwrap();
                e.start_pos + e.len as u64
            };
            let want: Vec<_> = all
                .iter()
                .filter(|(_, p, e)| p + e.len() as u64 <= end_of_upto)
                .cloned()
                .collect();
            assert_eq!(head, want, "upto {upto}");
            assert_eq!(cursor.next_entry(), upto + 1);
            // The rest (including an event cut at `upto`) comes once more is allowed.
            let tail = drain(&mut cursor, &store, last);
            assert_eq!([head, tail].concat(), all, "upto {upto}");
        }
    }

    /// Every start (entry, offset), on and off event boundaries, up to a middle entry and
    /// then on: a window smaller than the entries yields exactly what reading each entry
    /// whole does.
    #[test]
    fn small_windows_read_the_same_as_whole_entries() {
        let names = ["bin.000001", "bin.000002", "bin.000003"];
        let whole = crate::limits::ENTRY_PAYLOAD_MAX;
        for limit in [whole, 300, 40] {
            let (_dir, store) = store_with(&names, limit);
            let last = store.whole_upto();
            let largest = (1..=last)
                .map(|i| store.read(i).unwrap().data.len())
                .max()
                .unwrap();
            assert!(
                largest > 64,
                "limit {limit}: entries larger than the windows"
            );
            for entry in 1..=last {
                let len = store.read(entry).unwrap().data.len();
                for offset in [0, 1, 7, 20, len / 2, len.saturating_sub(1), len + 3] {
                    let start = Loc {
                        entry,
                        offset,
                        file: 0,
                        pos: 0,
                    };
                    let run = |window: usize| {
                        let mut cursor = Cursor::at(start).with_window(window);
                        let mid = (entry + last) / 2;
                        let head = drain(&mut cursor, &store, mid);
                        let at_mid = cursor.next_entry();
                        let tail = drain(&mut cursor, &store, last);
                        assert!(cursor.buf.len() <= window);
                        // Room for events larger than the window is not kept once
                        // they are sent (a cursor at a bad offset may end mid-garbage).
                        assert!(
                            !cursor.carry.is_empty() || cursor.carry.capacity() <= window,
                            "window {window}: {} bytes of room kept",
                            cursor.carry.capacity()
                        );
                        (head, at_mid, tail, cursor.next_entry())
                    };
                    let want = run(largest);
                    for window in [HEADER_LEN, 20, 33, 64] {
                        assert!(window < largest);
                        let got = run(window);
                        assert!(
                            got == want,
                            "limit {limit} entry {entry} offset {offset} window {window}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn small_windows_yield_every_event() {
        let names = ["bin.000001", "bin.000002", "bin.000003"];
        let (_dir, store) = store_with(&names, crate::limits::ENTRY_PAYLOAD_MAX);
        let first = store.index().first_loc().unwrap();
        for window in [HEADER_LEN, 50, 1000] {
            let mut cursor = Cursor::at(first).with_window(window);
            let got = drain(&mut cursor, &store, store.whole_upto());
            assert_eq!(got, expected(&names), "window {window}");
        }
    }

    /// A streaming cursor yields what a gathering one does, put together from heads and
    /// pieces no larger than its window, and never gathers more than a window itself.
    #[test]
    fn streamed_events_put_together_are_the_gathered_ones() {
        let names = ["bin.000001", "bin.000002", "bin.000003"];
        for limit in [crate::limits::ENTRY_PAYLOAD_MAX, 300, 40] {
            let (_dir, store) = store_with(&names, limit);
            let first = store.index().first_loc().unwrap();
            let last = store.whole_upto();
            for window in [HEADER_LEN, 20, 33, 64, 1000] {
                let mut cursor = Cursor::at(first).with_window(window).streaming(|_| true);
                let mut reader = Reader::default();
                let got = reader.drain(&mut cursor, &store, last);
                assert_eq!(got, expected(&names), "limit {limit} window {window}");
                let streamed = reader.lent.len();
                assert!(
                    window >= 1000 || streamed > 10,
                    "window {window}: {streamed} lent"
                );
                assert!(reader.lent.iter().all(|&n| n > 0 && n <= window));
                assert!(
                    cursor.carry.capacity() <= window,
                    "limit {limit} window {window}"
                );
            }
        }
    }

    /// Only the types the caller names are streamed; the others come whole.
    #[test]
    fn only_the_chosen_types_are_streamed() {
        let names = ["bin.000001"];
        let (_dir, store) = store_with(&names, 300);
        let first = store.index().first_loc().unwrap();
        let window = 33;
        let mut cursor = Cursor::at(first)
            .with_window(window)
            .streaming(|t| t != crate::binlog::event::GTID_EVENT);
        let (mut whole_gtids, mut heads) = (0, 0);
        while let Some(item) = cursor.next(&store, store.whole_upto()).unwrap() {
            match item {
                Item::Event { bytes, .. } if bytes.len() > window => {
                    assert_eq!(bytes[4], crate::binlog::event::GTID_EVENT);
                    whole_gtids += 1;
                }
                Item::Head { head, .. } => {
                    assert_ne!(head[4], crate::binlog::event::GTID_EVENT);
                    heads += 1;
                }
                _ => {}
            }
        }
        assert!(
            whole_gtids > 0 && heads > 0,
            "{whole_gtids} GTIDs whole, {heads} heads"
        );
    }

    /// A streamed event whose end lies past `upto` stops there and goes on once more is
    /// allowed; pieces a caller does not take are skipped by the next `next`.
    #[test]
    fn streaming_stops_at_upto_and_skips_what_is_not_taken() {
        let names = ["bin.000001"];
        let (_dir, store) = store_with(&names, 10);
        let all = expected(&names);
        let last = store.whole_upto();
        let first = store.index().first_loc().unwrap();
        for upto in [2, 5, 77, last / 2, last - 1] {
            let mut cursor = Cursor::at(first).with_window(20).streaming(|_| true);
            let mut reader = Reader::default();
            let head = reader.drain(&mut cursor, &store, upto);
            let tail = reader.drain(&mut cursor, &store, last);
            assert_eq!([head, tail].concat(), all, "upto {upto}");
        }
        // Heads only: every event's position still comes, in order.
        let mut cursor = Cursor::at(first).with_window(20).streaming(|_| true);
        let mut positions = Vec::new();
        while let Some(item) = cursor.next(&store, last).unwrap() {
            match item {
                Item::Event { pos, .. } | Item::Head { pos, .. } => positions.push(pos),
                Item::FileStart(_) => {}
            }
        }
        let want: Vec<u64> = all.iter().map(|(_, p, _)| *p).collect();
        assert_eq!(positions, want);
    }

    /// A streaming cursor started at every offset of every entry, on and off event
    /// boundaries: no panic, heads and pieces within the window, and never more than a
    /// window gathered (a garbage header claiming a huge event is streamed, not gathered).
    #[test]
    fn a_streaming_cursor_off_the_boundaries_stays_within_its_window() {
        let names = ["bin.000001", "bin.000002"];
        for limit in [crate::limits::ENTRY_PAYLOAD_MAX, 300, 40] {
            let (_dir, store) = store_with(&names, limit);
            let last = store.whole_upto();
            for entry in 1..=last {
                for offset in 0..60 {
                    for window in [HEADER_LEN, 33, 64] {
                        let start = Loc {
                            entry,
                            offset,
                            file: 0,
                            pos: 0,
                        };
                        let mut cursor = Cursor::at(start).with_window(window).streaming(|_| true);
                        // Garbage may end in an error; what matters is how it gets there.
                        while let Ok(Some(item)) = cursor.next(&store, last) {
                            if let Item::Head { head, len, .. } = item {
                                assert!(head.len() <= window && head.len() < len);
                                while let Ok(Some(piece)) = cursor.piece(&store, last) {
                                    assert!(!piece.is_empty() && piece.len() <= window);
                                }
                            }
                            assert!(cursor.carry.capacity() <= window, "window {window}");
                        }
                    }
                }
            }
        }
    }

    /// Taking some of a streamed event's pieces and leaving the rest: the next `next`
    /// goes on with the following event, at every window and entry size.
    #[test]
    fn pieces_left_untaken_are_skipped() {
        let names = ["bin.000001", "bin.000002"];
        let want: Vec<u64> = expected(&names).iter().map(|(_, p, _)| *p).collect();
        for limit in [crate::limits::ENTRY_PAYLOAD_MAX, 300, 40, 10] {
            let (_dir, store) = store_with(&names, limit);
            let first = store.index().first_loc().unwrap();
            let last = store.whole_upto();
            for window in [HEADER_LEN, 20, 33, 64] {
                for take in 0..4 {
                    let mut cursor = Cursor::at(first).with_window(window).streaming(|_| true);
                    let mut got = Vec::new();
                    while let Some(item) = cursor.next(&store, last).unwrap() {
                        match item {
                            Item::FileStart(fs) => got.push(fs.start_pos),
                            Item::Event { pos, .. } => got.push(pos),
                            Item::Head { pos, .. } => {
                                got.push(pos);
                                for _ in 0..take {
                                    cursor.piece(&store, last).unwrap();
                                }
                            }
                        }
                    }
                    assert_eq!(got, want, "limit {limit} window {window} take {take}");
                }
            }
        }
    }

    /// Entries that do not continue the stream (dead: a repeated entry, as a new leader's
    /// log can hold) between the entries of a streamed event are skipped.
    #[test]
    fn dead_entries_inside_a_streamed_event_are_skipped() {
        use crate::store::entry::KIND_EVENTS;
        let names = ["bin.000001", "bin.000002"];
        for limit in [300, 40] {
            let mut entries = Vec::new();
            for (kind, data) in ingest(&dump_stream(&names), limit) {
                let again = (kind == KIND_EVENTS).then(|| (kind, data.clone()));
                entries.push((kind, data));
                entries.extend(again);
            }
            let dir = tempfile::tempdir().unwrap();
            let (log, _) = crate::store::testdata::log_of(dir.path(), &entries, |_| 1);
            let store = Store::over_log(log.reader());
            let batch: Vec<(u64, u8, &[u8])> = entries
                .iter()
                .enumerate()
                .map(|(i, (kind, data))| (i as u64 + 1, *kind, &data[..]))
                .collect();
            store.apply(&batch).unwrap();
            let first = store.index().first_loc().unwrap();
            assert!((1..=store.whole_upto()).any(|i| store.index().is_dead(i)));
            for window in [HEADER_LEN, 33, 64] {
                let mut cursor = Cursor::at(first).with_window(window).streaming(|_| true);
                let mut reader = Reader::default();
                let got = reader.drain(&mut cursor, &store, store.whole_upto());
                assert_eq!(got, expected(&names), "limit {limit} window {window}");
                assert!(reader.lent.len() > 5, "window {window}: streamed");
            }
        }
    }
}
