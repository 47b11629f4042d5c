//! Reads the stored binlog back as events, in order, from a location, never past a given
//! entry (the watermark). Events cut across chunk entries come out whole.
//!
//! It only reads; it must not decide what to send (that is the binlog server's job).

use super::entry::{EventsHeader, FileStart, KIND_EVENTS, KIND_FILE_START};
use super::index::Loc;
use super::{Store, StoreError};
use crate::binlog::event::HEADER_LEN;

/// What the cursor yields.
#[derive(Debug)]
pub enum Item {
    /// The store continues in another master file.
    FileStart(FileStart),
    /// One whole event, starting at `pos` of the current file.
    Event { pos: u64, bytes: Vec<u8> },
}

/// A reading position in the store.
pub struct Cursor {
    next_entry: u64,
    /// Offset to start at in the first entry loaded.
    first_offset: usize,
    data: Vec<u8>,
    off: usize,
    start_pos: u64,
    carry: Vec<u8>,
    carry_pos: u64,
}

impl Cursor {
    /// A cursor that yields the event at `loc` first.
    pub fn at(loc: Loc) -> Cursor {
        Cursor {
            next_entry: loc.entry,
            first_offset: loc.offset,
            data: Vec::new(),
            off: 0,
            start_pos: 0,
            carry: Vec::new(),
            carry_pos: 0,
        }
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

    /// Entry the cursor reads next once the current one is used up.
    pub fn next_entry(&self) -> u64 {
        self.next_entry
    }

    /// Next item, or None when the next entry is past `upto`.
    pub fn next(&mut self, store: &Store, upto: u64) -> Result<Option<Item>, StoreError> {
        loop {
            if self.off < self.data.len() {
                if let Some(item) = self.take_event() {
                    return Ok(Some(item));
                }
                continue;
            }
            if self.next_entry > upto {
                return Ok(None);
            }
            let entry = store.read(self.next_entry)?;
            self.next_entry += 1;
            match entry.kind {
                KIND_FILE_START => {
                    let fs = FileStart::decode(&entry.data).map_err(|e| bad(entry.index, e))?;
                    self.carry.clear();
                    return Ok(Some(Item::FileStart(fs)));
                }
                KIND_EVENTS => {
                    let (header, _) =
                        EventsHeader::decode(&entry.data).map_err(|e| bad(entry.index, e))?;
                    self.data = entry.data;
                    self.off =
                        super::entry::EVENTS_HEADER_LEN + std::mem::take(&mut self.first_offset);
                    self.start_pos = header
                        .start_pos
                        .wrapping_sub(super::entry::EVENTS_HEADER_LEN as u64);
                    if self.off > self.data.len() {
                        self.off = self.data.len();
                    }
                }
                _ => {}
            }
        }
    }

    /// Takes the next event out of the loaded entry, or moves its start into `carry`.
    fn take_event(&mut self) -> Option<Item> {
        let rest = &self.data[self.off..];
        if !self.carry.is_empty() || rest.len() < HEADER_LEN {
            return self.take_carried(rest.len());
        }
        let size = event_size(rest);
        if size <= rest.len() {
            let pos = self.start_pos.wrapping_add(self.off as u64);
            let bytes = rest[..size].to_vec();
            self.off += size;
            return Some(Item::Event { pos, bytes });
        }
        self.take_carried(rest.len())
    }

    fn take_carried(&mut self, available: usize) -> Option<Item> {
        if self.carry.is_empty() {
            self.carry_pos = self.start_pos.wrapping_add(self.off as u64);
        }
        let total = if self.carry.len() >= HEADER_LEN {
            event_size(&self.carry)
        } else {
            HEADER_LEN
        };
        let take = total.saturating_sub(self.carry.len()).min(available);
        self.carry
            .extend_from_slice(&self.data[self.off..self.off + take]);
        self.off += take;
        if self.carry.len() >= HEADER_LEN && self.carry.len() == event_size(&self.carry) {
            let bytes = std::mem::take(&mut self.carry);
            return Some(Item::Event {
                pos: self.carry_pos,
                bytes,
            });
        }
        None
    }
}

/// Event size from a header the index already validated when the entry was stored.
fn event_size(bytes: &[u8]) -> usize {
    let size = u32::from_le_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]) as usize;
    size.max(HEADER_LEN)
}

fn bad(index: u64, e: super::entry::EntryError) -> StoreError {
    StoreError::Index {
        index,
        error: super::index::IndexError::Entry(e),
    }
}
