//! Physical MySQL packet framing: a 3-byte little-endian payload length, a 1-byte sequence
//! id, then the payload. A logical payload of 0xFFFFFF bytes or more is split over several
//! physical packets; the last one is shorter than 0xFFFFFF (possibly empty), which is how
//! the receiver knows the logical packet has ended.
//!
//! Pure: [`parse_frame`] looks at bytes already received, [`encode_packets`] appends to a
//! buffer, [`Joiner`] checks sequence ids and sizes while frames are glued together. No I/O.

use std::ops::Range;

use super::ProtocolError;
use crate::limits::{LOGICAL_PACKET_MAX, PACKET_PAYLOAD_MAX};

/// Bytes of a physical packet header.
pub const HEADER_LEN: usize = 4;

/// One physical packet found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Sequence id.
    pub seq: u8,
    /// Where the payload lies in the buffer given to [`parse_frame`].
    pub payload: Range<usize>,
    /// Bytes of the buffer this frame occupies (header and payload).
    pub consumed: usize,
}

/// The physical packet at the start of `buf`, or `None` when more bytes are needed.
pub fn parse_frame(buf: &[u8]) -> Option<Frame> {
    let header = buf.get(..HEADER_LEN)?;
    let (len, seq) = parse_header([header[0], header[1], header[2], header[3]]);
    let end = HEADER_LEN + len;
    if buf.len() < end {
        return None;
    }
    Some(Frame {
        seq,
        payload: HEADER_LEN..end,
        consumed: end,
    })
}

/// Payload length and sequence id of a physical packet header.
pub fn parse_header(header: [u8; HEADER_LEN]) -> (usize, u8) {
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    (len, header[3])
}

/// The header of a physical packet. `len` must fit in 24 bits.
pub fn frame_header(len: usize, seq: u8) -> [u8; HEADER_LEN] {
    assert!(len <= PACKET_PAYLOAD_MAX, "physical packet of {len} bytes");
    [len as u8, (len >> 8) as u8, (len >> 16) as u8, seq]
}

/// The physical payloads a logical payload is sent as: full 0xFFFFFF-byte chunks, then
/// one shorter chunk, which is empty when the length is an exact multiple (or zero).
fn physical_chunks(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let count = payload.len() / PACKET_PAYLOAD_MAX + 1;
    (0..count).map(move |i| {
        let start = i * PACKET_PAYLOAD_MAX;
        let end = (start + PACKET_PAYLOAD_MAX).min(payload.len());
        &payload[start..end]
    })
}

/// Appends `payload` framed as physical packets numbered from `first_seq`; returns the
/// sequence id the next packet must carry.
pub fn encode_packets(payload: &[u8], first_seq: u8, out: &mut Vec<u8>) -> u8 {
    let mut seq = first_seq;
    out.reserve(payload.len() + HEADER_LEN * (payload.len() / PACKET_PAYLOAD_MAX + 1));
    for chunk in physical_chunks(payload) {
        out.extend_from_slice(&frame_header(chunk.len(), seq));
        out.extend_from_slice(chunk);
        seq = seq.wrapping_add(1);
    }
    seq
}

/// Checks the physical frames of logical packets as they arrive: each sequence id must be
/// the previous one plus one (mod 256) and a logical packet must stay within its bound.
/// The payload bytes go to a buffer the caller owns, so a hot loop can reuse one.
#[derive(Debug, Clone)]
pub struct Joiner {
    next_seq: u8,
    logical_len_max: usize,
    /// Bytes of the logical packet in progress.
    len: usize,
}

impl Joiner {
    /// `logical_len_max` is capped at [`LOGICAL_PACKET_MAX`].
    pub fn new(next_seq: u8, logical_len_max: usize) -> Self {
        Joiner {
            next_seq,
            logical_len_max: logical_len_max.min(LOGICAL_PACKET_MAX),
            len: 0,
        }
    }

    /// The sequence id the next frame must carry.
    pub fn next_seq(&self) -> u8 {
        self.next_seq
    }

    /// Expects `seq` next and forgets any logical packet in progress.
    pub fn reset(&mut self, seq: u8) {
        self.next_seq = seq;
        self.len = 0;
    }

    /// Whether a logical packet has begun and not ended.
    pub fn in_progress(&self) -> bool {
        self.len > 0
    }

    pub fn set_logical_len_max(&mut self, logical_len_max: usize) {
        self.logical_len_max = logical_len_max.min(LOGICAL_PACKET_MAX);
    }

    /// Validates a frame header before its payload is read (so an oversized packet is
    /// refused before memory is spent on it). Returns true when this frame ends the
    /// logical packet.
    pub fn accept(&mut self, seq: u8, payload_len: usize) -> Result<bool, ProtocolError> {
        if seq != self.next_seq {
            return Err(ProtocolError::OutOfOrder {
                expected: self.next_seq,
                got: seq,
            });
        }
        let total = self.len.saturating_add(payload_len);
        if total > self.logical_len_max {
            return Err(ProtocolError::TooLarge {
                what: "logical packet",
                len: total,
                max: self.logical_len_max,
            });
        }
        self.next_seq = seq.wrapping_add(1);
        let last = payload_len < PACKET_PAYLOAD_MAX;
        self.len = if last { 0 } else { total };
        Ok(last)
    }

    /// [`accept`](Self::accept)s a frame and appends its payload to `out`.
    pub fn push(
        &mut self,
        seq: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, ProtocolError> {
        let last = self.accept(seq, payload.len())?;
        out.extend_from_slice(payload);
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `wire` into frames and joins them; returns the logical payloads.
    fn join_all(wire: &[u8], first_seq: u8, max: usize) -> Result<Vec<Vec<u8>>, ProtocolError> {
        let mut joiner = Joiner::new(first_seq, max);
        let mut out = Vec::new();
        let mut current = Vec::new();
        let mut rest = wire;
        while let Some(frame) = parse_frame(rest) {
            if joiner.push(frame.seq, &rest[frame.payload.clone()], &mut current)? {
                out.push(std::mem::take(&mut current));
            }
            rest = &rest[frame.consumed..];
        }
        assert!(rest.is_empty(), "trailing partial frame");
        Ok(out)
    }

    #[test]
    fn small_packet_from_captured_bytes() {
        // COM_QUERY "select 1" as sent by the mariadb CLI.
        let wire = b"\x09\x00\x00\x00\x03select 1";
        let frame = parse_frame(wire).unwrap();
        assert_eq!(frame.seq, 0);
        assert_eq!(&wire[frame.payload], b"\x03select 1");
        assert_eq!(frame.consumed, wire.len());
        let mut out = Vec::new();
        assert_eq!(encode_packets(b"\x03select 1", 0, &mut out), 1);
        assert_eq!(&out[..], &wire[..]);
    }

    #[test]
    fn partial_input_needs_more() {
        assert_eq!(parse_frame(&[]), None);
        assert_eq!(parse_frame(&[5, 0, 0]), None);
        assert_eq!(parse_frame(&[5, 0, 0, 0, 1, 2]), None);
        assert!(parse_frame(&[0, 0, 0, 7]).is_some());
    }

    #[test]
    fn empty_payload_is_one_empty_packet() {
        let mut out = Vec::new();
        assert_eq!(encode_packets(&[], 255, &mut out), 0);
        assert_eq!(out, [0, 0, 0, 255]);
    }

    #[test]
    fn sixteen_mib_payload_splits_and_joins() {
        let payload: Vec<u8> = (0..(16 << 20) + 5).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        let next = encode_packets(&payload, 3, &mut wire);
        assert_eq!(next, 5);
        assert_eq!(wire.len(), payload.len() + 2 * HEADER_LEN);
        assert_eq!(&wire[..4], &[0xff, 0xff, 0xff, 3]);
        let joined = join_all(&wire, 3, LOGICAL_PACKET_MAX).unwrap();
        assert_eq!(joined.len(), 1);
        assert!(joined[0] == payload);
    }

    #[test]
    fn exact_multiple_ends_with_empty_packet() {
        let payload = vec![0x5a; 2 * PACKET_PAYLOAD_MAX];
        let mut wire = Vec::new();
        let next = encode_packets(&payload, 254, &mut wire);
        assert_eq!(next, 1, "three packets: 254, 255, 0");
        assert_eq!(wire.len(), payload.len() + 3 * HEADER_LEN);
        assert_eq!(&wire[wire.len() - 4..], &[0, 0, 0, 0]);
        // Followed by a small packet, which must be a separate logical packet.
        encode_packets(b"next", next, &mut wire);
        let joined = join_all(&wire, 254, LOGICAL_PACKET_MAX).unwrap();
        assert_eq!(joined.len(), 2);
        assert!(joined[0] == payload);
        assert_eq!(joined[1], b"next");
    }

    #[test]
    fn out_of_order_sequence_is_refused() {
        let mut wire = Vec::new();
        encode_packets(b"a", 0, &mut wire);
        encode_packets(b"b", 2, &mut wire);
        assert_eq!(
            join_all(&wire, 0, 100),
            Err(ProtocolError::OutOfOrder {
                expected: 1,
                got: 2
            })
        );
    }

    #[test]
    fn oversized_logical_packet_is_refused_before_payload() {
        let mut joiner = Joiner::new(0, 1 << 20);
        assert!(matches!(
            joiner.accept(0, PACKET_PAYLOAD_MAX),
            Err(ProtocolError::TooLarge { .. })
        ));
        let mut joiner = Joiner::new(0, 10);
        assert_eq!(joiner.accept(0, 10), Ok(true));
        assert!(joiner.accept(1, 11).is_err());
        // The bound can never exceed the crate-wide ceiling.
        let joiner = Joiner::new(0, usize::MAX);
        assert_eq!(joiner.logical_len_max, LOGICAL_PACKET_MAX);
    }
}
