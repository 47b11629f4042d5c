//! The on-disk format of the segmented log, pure: segment headers and entry records as
//! bytes in, values out, and back. It knows nothing of files, directories or locking.
//!
//! Segment header (24 bytes): magic `b"FBUSLOG\0"`, u32 format version, u64 first index,
//! u32 CRC32 of the 20 bytes before it.
//! Record (25 bytes + data): u32 body length, u32 CRC32 of the body, then the body:
//! u64 index, u64 term, u8 kind, data. All integers little endian.
//!
//! This module must not do I/O, and must not panic on any input bytes.

use bytes::Bytes;

use crate::limits::ENTRY_PAYLOAD_MAX;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FBUSLOG\0";
/// Format version written in every segment header.
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 24;
/// Bytes before the body of a record: body length and body CRC32.
pub const RECORD_PREFIX_LEN: usize = 8;
/// Bytes of a record body before the entry data: index, term, kind.
pub const BODY_FIXED_LEN: usize = 17;
/// Bytes a record adds to its entry data on disk.
pub const RECORD_OVERHEAD: usize = RECORD_PREFIX_LEN + BODY_FIXED_LEN;
/// Largest record body the log writes or accepts when reading.
pub const BODY_LEN_MAX: usize = BODY_FIXED_LEN + ENTRY_PAYLOAD_MAX;

const _: () = assert!(BODY_LEN_MAX <= u32::MAX as usize);

/// One log entry: what the log stores, in index order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log; the first entry ever is 1.
    pub index: u64,
    /// Raft term the entry was created in.
    pub term: u64,
    /// What the data is; opaque to storage.
    pub kind: u8,
    /// Payload, at most `ENTRY_PAYLOAD_MAX` bytes; shared, not copied, when an entry moves
    /// between the log and its callers.
    pub data: Bytes,
}

/// Why bytes are not a valid header or record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer bytes than the header or record needs.
    Incomplete,
    /// Magic bytes differ.
    BadMagic,
    /// A format version this build does not read.
    BadVersion(u32),
    /// Header or record CRC32 mismatch.
    BadCrc,
    /// A record body length outside `BODY_FIXED_LEN..=BODY_LEN_MAX`.
    BadLength(u32),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::Incomplete => write!(f, "incomplete"),
            FormatError::BadMagic => write!(f, "bad magic"),
            FormatError::BadVersion(v) => write!(f, "unknown format version {v}"),
            FormatError::BadCrc => write!(f, "CRC32 mismatch"),
            FormatError::BadLength(n) => write!(f, "implausible record body length {n}"),
        }
    }
}

/// The fixed part of a decoded record body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    pub index: u64,
    pub term: u64,
    pub kind: u8,
    /// Bytes of the body (fixed part + data).
    pub body_len: u32,
}

impl RecordMeta {
    /// Bytes of the whole record on disk.
    pub fn record_len(&self) -> u64 {
        RECORD_PREFIX_LEN as u64 + u64::from(self.body_len)
    }
}

/// Encodes the header of a segment whose first entry has `first_index`.
pub fn encode_header(first_index: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32fast::hash(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a segment header from the start of `bytes`; returns its first index.
pub fn decode_header(bytes: &[u8]) -> Result<u64, FormatError> {
    let h = bytes
        .get(..SEGMENT_HEADER_LEN)
        .ok_or(FormatError::Incomplete)?;
    if h[0..8] != SEGMENT_MAGIC {
        return Err(FormatError::BadMagic);
    }
    if crc32fast::hash(&h[0..20]) != le_u32(&h[20..24]) {
        return Err(FormatError::BadCrc);
    }
    let version = le_u32(&h[8..12]);
    if version != SEGMENT_VERSION {
        return Err(FormatError::BadVersion(version));
    }
    Ok(le_u64(&h[12..20]))
}

/// Bytes `entry` takes on disk as a record.
pub fn record_len(entry: &Entry) -> usize {
    RECORD_OVERHEAD + entry.data.len()
}

/// Appends `entry` as a record to `buf` (its head, then its data copied once). The caller
/// has checked `entry.data.len() <= ENTRY_PAYLOAD_MAX`.
pub fn encode_record_into(buf: &mut Vec<u8>, entry: &Entry) {
    encode_record_head_into(buf, entry);
    buf.extend_from_slice(&entry.data);
}

/// Appends the part of `entry`'s record before its data to `buf` (prefix, index, term,
/// kind; the CRC covers the data too): the record is those bytes followed by the data.
/// The caller has checked `entry.data.len() <= ENTRY_PAYLOAD_MAX`.
pub fn encode_record_head_into(buf: &mut Vec<u8>, entry: &Entry) {
    assert!(
        entry.data.len() <= ENTRY_PAYLOAD_MAX,
        "caller checks entry size"
    );
    let body_len = (BODY_FIXED_LEN + entry.data.len()) as u32;
    let mut fixed = [0u8; BODY_FIXED_LEN];
    fixed[0..8].copy_from_slice(&entry.index.to_le_bytes());
    fixed[8..16].copy_from_slice(&entry.term.to_le_bytes());
    fixed[16] = entry.kind;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&fixed);
    hasher.update(&entry.data);
    buf.extend_from_slice(&body_len.to_le_bytes());
    buf.extend_from_slice(&hasher.finalize().to_le_bytes());
    buf.extend_from_slice(&fixed);
}

/// Reads a record prefix (body length, body CRC); checks only the length's plausibility.
pub fn decode_prefix(bytes: &[u8]) -> Result<(u32, u32), FormatError> {
    let p = bytes
        .get(..RECORD_PREFIX_LEN)
        .ok_or(FormatError::Incomplete)?;
    let body_len = le_u32(&p[0..4]);
    let crc = le_u32(&p[4..8]);
    if (body_len as usize) < BODY_FIXED_LEN || body_len as usize > BODY_LEN_MAX {
        return Err(FormatError::BadLength(body_len));
    }
    Ok((body_len, crc))
}

/// Decodes the fixed part of a body (index, term, kind). `fixed` holds at least 17 bytes.
pub fn decode_body_fixed(fixed: &[u8]) -> Result<(u64, u64, u8), FormatError> {
    let b = fixed.get(..BODY_FIXED_LEN).ok_or(FormatError::Incomplete)?;
    Ok((le_u64(&b[0..8]), le_u64(&b[8..16]), b[16]))
}

/// Decodes and verifies the record at the start of `bytes`, without copying its data.
pub fn decode_record(bytes: &[u8]) -> Result<RecordMeta, FormatError> {
    let (body_len, crc) = decode_prefix(bytes)?;
    let end = RECORD_PREFIX_LEN + body_len as usize;
    let body = bytes
        .get(RECORD_PREFIX_LEN..end)
        .ok_or(FormatError::Incomplete)?;
    if crc32fast::hash(body) != crc {
        return Err(FormatError::BadCrc);
    }
    let (index, term, kind) = decode_body_fixed(body)?;
    Ok(RecordMeta {
        index,
        term,
        kind,
        body_len,
    })
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term: 7,
            kind: 3,
            data: Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn header_round_trip_and_layout() {
        let h = encode_header(0x0102_0304_0506_0708);
        assert_eq!(&h[0..8], b"FBUSLOG\0");
        assert_eq!(&h[8..12], &[1, 0, 0, 0]);
        assert_eq!(&h[12..20], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(decode_header(&h), Ok(0x0102_0304_0506_0708));
    }

    #[test]
    fn header_errors() {
        let h = encode_header(5);
        assert_eq!(decode_header(&h[..23]), Err(FormatError::Incomplete));
        let mut bad = h;
        bad[0] ^= 1;
        assert_eq!(decode_header(&bad), Err(FormatError::BadMagic));
        let mut bad = h;
        bad[13] ^= 1;
        assert_eq!(decode_header(&bad), Err(FormatError::BadCrc));
        let mut bad = h;
        bad[8] = 2;
        let crc = crc32fast::hash(&bad[0..20]);
        bad[20..24].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_header(&bad), Err(FormatError::BadVersion(2)));
    }

    #[test]
    fn record_layout_is_25_bytes_plus_data() {
        let mut buf = Vec::new();
        encode_record_into(&mut buf, &entry(9, b"abc"));
        assert_eq!(buf.len(), 28);
        assert_eq!(buf.len(), record_len(&entry(9, b"abc")));
        assert_eq!(&buf[0..4], &20u32.to_le_bytes());
        assert_eq!(&buf[4..8], &crc32fast::hash(&buf[8..]).to_le_bytes());
        assert_eq!(&buf[8..16], &9u64.to_le_bytes());
        assert_eq!(&buf[16..24], &7u64.to_le_bytes());
        assert_eq!(buf[24], 3);
        assert_eq!(&buf[25..], b"abc");
        let meta = decode_record(&buf).unwrap();
        assert_eq!(
            meta,
            RecordMeta {
                index: 9,
                term: 7,
                kind: 3,
                body_len: 20
            }
        );
        assert_eq!(meta.record_len(), 28);
    }

    #[test]
    fn record_every_truncation_is_incomplete_and_every_flip_is_caught() {
        let mut buf = Vec::new();
        encode_record_into(&mut buf, &entry(1, b"hello world"));
        for cut in 0..buf.len() {
            assert_eq!(decode_record(&buf[..cut]), Err(FormatError::Incomplete));
        }
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(decode_record(&bad).is_err(), "flip at {i} undetected");
        }
    }

    #[test]
    fn implausible_lengths_rejected() {
        let mut b = [0u8; 8];
        assert_eq!(decode_prefix(&b), Err(FormatError::BadLength(0)));
        b[0..4].copy_from_slice(&(BODY_LEN_MAX as u32 + 1).to_le_bytes());
        assert!(matches!(decode_prefix(&b), Err(FormatError::BadLength(_))));
    }
}
