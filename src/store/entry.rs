//! The payload of a binlog log entry, pure: what the syncer stores and the binlog server
//! reads back. One entry is one record of the durable log (later one Raft entry).
//!
//! Two kinds carry binlog data:
//!
//! - `FileStart`: the store begins (or continues in) a master binlog file. It names the file,
//!   the first stored position in it, and carries the file's FORMAT_DESCRIPTION event as the
//!   master sent it, so that a dump starting anywhere in the file can be given the FDE.
//! - `Events`: a run of the master's binlog bytes, exactly as in the master's file, starting
//!   at `start_pos` of the current file. Normally it holds whole events of one or more whole
//!   transactions (a batch). A transaction larger than an entry is cut into chunks: a chunk
//!   that does not end where a transaction ends has `ENDS_INSIDE_GROUP` set, and the next chunk
//!   has `STARTS_INSIDE_GROUP` set. A single event may be cut too; readers reassemble it.
//!
//! This module must not do I/O or know about Raft: it turns values into bytes and back.

use std::fmt;

/// Entry kind code of a [`FileStart`] entry.
pub const KIND_FILE_START: u8 = 1;
/// Entry kind code of an `Events` entry.
pub const KIND_EVENTS: u8 = 2;
/// Entry kind code of a start-state entry: the MariaDB GTID state (text, e.g. `0-1-5`) of the
/// master's binlog at the place where the store begins, when it begins after the start of
/// the master's history (a syncer started at a GTID or a file position). It lets the binlog
/// server serve a replica that stopped exactly there.
pub const KIND_START_STATE: u8 = 4;
/// Entry kind code of an abandon entry (empty payload): the transaction the entries before it
/// left open (chunks a dead leader proposed) will never be completed; those entries are dead,
/// never served, and the stream continues from the end of the last whole transaction.
pub const KIND_ABANDON: u8 = 5;

/// `Events` flag: the first byte does not start an event group (continues the previous
/// entry's transaction).
pub const STARTS_INSIDE_GROUP: u8 = 0x01;
/// `Events` flag: the last byte does not end an event group (the transaction continues in the
/// next entry); readers must not serve it until the entry that ends the group is stored.
pub const ENDS_INSIDE_GROUP: u8 = 0x02;

/// Payload of a `FileStart` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStart {
    pub file_name: String,
    /// First position of the file that the store holds (4 when the whole file is stored).
    pub start_pos: u64,
    /// The file's FORMAT_DESCRIPTION event, with its checksum, as the master sent it.
    pub fde: Vec<u8>,
}

/// Header of an `Events` entry; the binlog bytes follow it in the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventsHeader {
    pub flags: u8,
    /// Position in the current master file of the first byte of the payload's binlog bytes.
    pub start_pos: u64,
}

/// Bytes of an `Events` payload before its binlog bytes.
pub const EVENTS_HEADER_LEN: usize = 9;

/// A payload that does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryError(pub &'static str);

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed log entry: {}", self.0)
    }
}

impl std::error::Error for EntryError {}

impl FileStart {
    pub fn encode(&self) -> Vec<u8> {
        let name = self.file_name.as_bytes();
        assert!(name.len() <= crate::limits::BINLOG_FILE_NAME_MAX);
        let mut out = Vec::with_capacity(1 + name.len() + 8 + self.fde.len());
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&self.start_pos.to_le_bytes());
        out.extend_from_slice(&self.fde);
        out
    }

    pub fn decode(data: &[u8]) -> Result<FileStart, EntryError> {
        let (&name_len, rest) = data.split_first().ok_or(EntryError("empty FileStart"))?;
        let name_len = name_len as usize;
        let name = rest
            .get(..name_len)
            .ok_or(EntryError("FileStart name truncated"))?;
        let file_name = std::str::from_utf8(name)
            .map_err(|_| EntryError("FileStart name is not UTF-8"))?
            .to_string();
        let pos = rest
            .get(name_len..name_len + 8)
            .ok_or(EntryError("FileStart position truncated"))?;
        let start_pos = u64::from_le_bytes(pos.try_into().expect("8 bytes"));
        let fde = rest[name_len + 8..].to_vec();
        Ok(FileStart {
            file_name,
            start_pos,
            fde,
        })
    }
}

impl EventsHeader {
    /// The header's bytes, which precede the binlog bytes in a payload.
    pub fn encode(&self) -> [u8; EVENTS_HEADER_LEN] {
        let mut out = [0; EVENTS_HEADER_LEN];
        out[0] = self.flags;
        out[1..].copy_from_slice(&self.start_pos.to_le_bytes());
        out
    }

    /// Encodes the header followed by `bytes` into one payload.
    pub fn encode_with(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(EVENTS_HEADER_LEN + bytes.len());
        out.extend_from_slice(&self.encode());
        out.extend_from_slice(bytes);
        out
    }

    /// Splits a payload into its header and its binlog bytes.
    pub fn decode(data: &[u8]) -> Result<(EventsHeader, &[u8]), EntryError> {
        if data.len() < EVENTS_HEADER_LEN {
            return Err(EntryError("Events header truncated"));
        }
        let flags = data[0];
        if flags & !(STARTS_INSIDE_GROUP | ENDS_INSIDE_GROUP) != 0 {
            return Err(EntryError("Events header has unknown flags"));
        }
        let start_pos = u64::from_le_bytes(data[1..9].try_into().expect("8 bytes"));
        Ok((
            EventsHeader { flags, start_pos },
            &data[EVENTS_HEADER_LEN..],
        ))
    }

    pub fn ends_inside_group(&self) -> bool {
        self.flags & ENDS_INSIDE_GROUP != 0
    }

    pub fn starts_inside_group(&self) -> bool {
        self.flags & STARTS_INSIDE_GROUP != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_start_round_trips() {
        let fs = FileStart {
            file_name: "bin.000042".into(),
            start_pos: 4,
            fde: vec![1, 2, 3, 4, 5],
        };
        assert_eq!(FileStart::decode(&fs.encode()).unwrap(), fs);
    }

    #[test]
    fn file_start_rejects_truncation_at_every_length() {
        let enc = FileStart {
            file_name: "bin.000001".into(),
            start_pos: 1234,
            fde: vec![],
        }
        .encode();
        for len in 0..enc.len() {
            assert!(FileStart::decode(&enc[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn events_header_round_trips() {
        let h = EventsHeader {
            flags: ENDS_INSIDE_GROUP,
            start_pos: 999,
        };
        let enc = h.encode_with(b"abc");
        let (d, bytes) = EventsHeader::decode(&enc).unwrap();
        assert_eq!(d, h);
        assert_eq!(bytes, b"abc");
        assert!(d.ends_inside_group() && !d.starts_inside_group());
    }

    #[test]
    fn events_header_rejects_short_and_unknown_flags() {
        assert!(EventsHeader::decode(&[0; 8]).is_err());
        assert!(EventsHeader::decode(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
