//! Peer wire format (pure): the hello that opens a connection and the frames that carry
//! raft [`Message`]s after it, with their checks; no I/O beyond a [`Gather`]'s write.
//!
//! A frame is: length u32 LE, CRC32 of the body u32 LE, body = the protobuf bytes of one
//! `Message`, at most [`PEER_FRAME_BYTES_MAX`]. [`encode_frame`] writes one frame into a
//! buffer (small messages, written straight to a socket); a [`Gather`] collects frames for
//! one vectored write with the entries' payloads written from where they are, not copied
//! (a leader sends every payload byte once per follower). Both make frames that
//! [`decode_frame_body`] reads the same way: protobuf fields may come in any order, and a
//! gathered frame puts the message's entries after its other fields.

use std::fmt;
use std::io::{self, IoSlice, Write};
use std::ops::Range;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{Entry, Message};

use crate::limits::PEER_FRAME_BYTES_MAX;

/// First bytes of every peer connection: name and wire version (2: the hello ends with the
/// sender's peer address).
pub const HELLO_MAGIC: [u8; 8] = *b"FBRAFT\0\x02";
/// The hello's fixed part: magic + sender node id + cluster id. Then one byte, the length
/// of the sender's peer address (up to [`HELLO_ADDR_MAX`]), and that address (UTF-8,
/// `host:port`, where the others reach the sender; empty when it does not say).
pub const HELLO_LEN: usize = 24;
/// Longest peer address a hello carries.
pub const HELLO_ADDR_MAX: usize = 255;
/// Length + CRC32.
pub const FRAME_HEADER_LEN: usize = 8;

/// Why a hello or a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    BadMagic,
    WrongCluster {
        expected: u64,
        got: u64,
    },
    TooLarge {
        len: usize,
    },
    BadChecksum {
        expected: u32,
        actual: u32,
    },
    Decode(String),
    Encode(String),
    /// The hello's peer address is not `host:port` text.
    BadHelloAddr,
    /// The frame's `from` is not the node that said hello.
    WrongSender {
        hello: u64,
        from: u64,
    },
    /// The frame is addressed to another node (the sender has a stale address).
    WrongReceiver {
        me: u64,
        to: u64,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadMagic => write!(
                f,
                "bad hello magic (not a ferrobus raft peer, or one of another wire version)"
            ),
            FrameError::BadHelloAddr => write!(f, "the hello's peer address is not host:port"),
            FrameError::WrongCluster { expected, got } => {
                write!(
                    f,
                    "peer belongs to cluster {got:#x}, this node to {expected:#x} (the cluster \
                     id comes from cluster_token: give every member the same one)"
                )
            }
            FrameError::TooLarge { len } => {
                write!(f, "frame of {len} bytes exceeds {PEER_FRAME_BYTES_MAX}")
            }
            FrameError::BadChecksum { expected, actual } => {
                write!(
                    f,
                    "frame CRC32 {actual:#010x}, header says {expected:#010x}"
                )
            }
            FrameError::Decode(e) => write!(f, "frame is not a raft message: {e}"),
            FrameError::Encode(e) => write!(f, "cannot encode raft message: {e}"),
            FrameError::WrongSender { hello, from } => {
                write!(
                    f,
                    "message from node {from:x} on the connection of node {hello:x}"
                )
            }
            FrameError::WrongReceiver { me, to } => {
                write!(f, "message for node {to:x} arrived at node {me:x}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// The hello a sender writes first on every connection: the fixed part, then its peer
/// address (left out, as empty, when longer than [`HELLO_ADDR_MAX`]).
pub fn encode_hello(node_id: u64, cluster_id: u64, peer_addr: &str) -> Vec<u8> {
    let addr = if peer_addr.len() <= HELLO_ADDR_MAX {
        peer_addr.as_bytes()
    } else {
        &[]
    };
    let mut h = Vec::with_capacity(HELLO_LEN + 1 + addr.len());
    h.extend_from_slice(&HELLO_MAGIC);
    h.extend_from_slice(&node_id.to_le_bytes());
    h.extend_from_slice(&cluster_id.to_le_bytes());
    h.push(addr.len() as u8);
    h.extend_from_slice(addr);
    h
}

/// The peer address a hello ends with (the bytes after its length byte); None when empty.
pub fn decode_hello_addr(bytes: &[u8]) -> Result<Option<String>, FrameError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    match std::str::from_utf8(bytes) {
        Ok(addr) if addr.contains(':') && !addr.chars().any(char::is_control) => {
            Ok(Some(addr.to_string()))
        }
        _ => Err(FrameError::BadHelloAddr),
    }
}

/// Checks a hello against this node's cluster and returns the sender's node id.
pub fn decode_hello(h: &[u8; HELLO_LEN], cluster_id: u64) -> Result<u64, FrameError> {
    let (magic, rest) = h.split_at(8);
    if magic != HELLO_MAGIC {
        return Err(FrameError::BadMagic);
    }
    let (node, cluster) = rest.split_at(8);
    let got = u64_le(cluster);
    if got != cluster_id {
        return Err(FrameError::WrongCluster {
            expected: cluster_id,
            got,
        });
    }
    Ok(u64_le(node))
}

/// Appends one frame holding `msg` to `out`. On error `out` is left as it was.
pub fn encode_frame(msg: &Message, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let size = msg.compute_size() as usize;
    if size > PEER_FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge { len: size });
    }
    let start = out.len();
    out.reserve(FRAME_HEADER_LEN + size);
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    if let Err(e) = msg.write_to_vec(out) {
        out.truncate(start);
        return Err(FrameError::Encode(e.to_string()));
    }
    let body = &out[start + FRAME_HEADER_LEN..];
    // compute_size and the written length agree; the length field must match the body.
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Reads a frame header: body length (checked against the bound) and body CRC32.
pub fn decode_frame_header(h: &[u8; FRAME_HEADER_LEN]) -> Result<(usize, u32), FrameError> {
    let (len, crc) = h.split_at(4);
    let len = u32_le(len) as usize;
    if len > PEER_FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge { len });
    }
    Ok((len, u32_le(crc)))
}

/// Checks a frame body's CRC32 and decodes the message. Entry payloads share `body`'s
/// memory rather than being copied.
pub fn decode_frame_body(body: &Bytes, crc: u32) -> Result<Message, FrameError> {
    let actual = crc32fast::hash(body);
    if actual != crc {
        return Err(FrameError::BadChecksum {
            expected: crc,
            actual,
        });
    }
    Message::parse_from_carllerche_bytes(body).map_err(|e| FrameError::Decode(e.to_string()))
}

/// Checks that a received message belongs on this connection.
pub(crate) fn check_route(msg: &Message, hello_id: u64, my_id: u64) -> Result<(), FrameError> {
    if msg.from != hello_id {
        return Err(FrameError::WrongSender {
            hello: hello_id,
            from: msg.from,
        });
    }
    if msg.to != my_id {
        return Err(FrameError::WrongReceiver {
            me: my_id,
            to: msg.to,
        });
    }
    Ok(())
}

fn u64_le(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

fn u32_le(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

// ---------------------------------------------------------------------------------------
// Gathered frames.

/// Entry payloads up to this size are copied into a [`Gather`]'s buffer; larger ones are
/// written from where they are (fewer, larger pieces per write).
const GATHER_INLINE_BYTES_MAX: usize = 4 << 10;
/// Pieces handed to one `writev` (Linux's `IOV_MAX`).
const GATHER_IOVECS_MAX: usize = 1024;
/// Protobuf key of `Message.entries` (field 7, length-delimited).
const MESSAGE_ENTRIES_KEY: u8 = (7 << 3) | 2;
/// Protobuf key of `Entry.data` (field 4, length-delimited).
const ENTRY_DATA_KEY: u8 = (4 << 3) | 2;

/// Frames collected for one vectored write. Everything but the entries' large payloads is
/// copied into one buffer; the payloads are kept as shared [`Bytes`] (the same memory the
/// raft log's cache holds) and written from there.
#[derive(Default)]
pub struct Gather {
    buf: Vec<u8>,
    /// What to write, in order: runs of `buf` and shared payloads.
    parts: Vec<Part>,
    /// Bytes of `buf` that `parts` already covers.
    covered: usize,
    /// Bytes in the shared payloads.
    shared: usize,
    /// The payloads of the message being added (the vector is reused).
    payloads: Vec<Bytes>,
}

enum Part {
    Buf(Range<usize>),
    Shared(Bytes),
}

impl Gather {
    /// Bytes gathered.
    pub fn len(&self) -> usize {
        self.buf.len() + self.shared
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Capacity of the buffer for the small pieces.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.parts.clear();
        self.covered = 0;
        self.shared = 0;
    }

    /// Appends bytes as they are (for example the rest of a frame written in part).
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends one frame holding `msg`. On error nothing is appended.
    pub fn push_frame(&mut self, mut msg: Message) -> Result<(), FrameError> {
        let mut entries = msg.take_entries().into_vec();
        self.payloads.clear();
        let mut size = msg.compute_size() as usize;
        // What goes into `buf` (not the payloads written from where they are).
        let mut copied = size;
        for e in &mut entries {
            let data = std::mem::take(&mut e.data);
            let field = field_len(entry_len(e, data.len()));
            size += field;
            copied += field;
            if data.len() > GATHER_INLINE_BYTES_MAX {
                copied -= data.len();
            }
            self.payloads.push(data);
        }
        if size > PEER_FRAME_BYTES_MAX {
            return Err(FrameError::TooLarge { len: size });
        }
        let before = (self.buf.len(), self.parts.len(), self.covered, self.shared);
        self.buf.reserve(FRAME_HEADER_LEN + copied);
        let result = self.write_frame(&msg, &entries, size);
        if result.is_err() {
            let (buf, parts, covered, shared) = before;
            self.buf.truncate(buf);
            self.parts.truncate(parts);
            self.covered = covered;
            self.shared = shared;
        }
        self.payloads.clear();
        result
    }

    fn write_frame(
        &mut self,
        msg: &Message,
        entries: &[Entry],
        size: usize,
    ) -> Result<(), FrameError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
        let encode = |e: protobuf::ProtobufError| FrameError::Encode(e.to_string());
        msg.write_to_vec(&mut self.buf).map_err(encode)?;
        let mut crc = crc32fast::Hasher::new();
        let mut unhashed = start + FRAME_HEADER_LEN;
        let mut body = 0usize;
        let mut payloads = std::mem::take(&mut self.payloads);
        for (e, data) in entries.iter().zip(payloads.drain(..)) {
            self.buf.push(MESSAGE_ENTRIES_KEY);
            put_varint(&mut self.buf, entry_len(e, data.len()) as u64);
            e.write_to_vec(&mut self.buf).map_err(encode)?;
            if data.is_empty() {
                continue;
            }
            self.buf.push(ENTRY_DATA_KEY);
            put_varint(&mut self.buf, data.len() as u64);
            if data.len() <= GATHER_INLINE_BYTES_MAX {
                self.buf.extend_from_slice(&data);
                continue;
            }
            crc.update(&self.buf[unhashed..]);
            body += self.buf.len() - unhashed;
            unhashed = self.buf.len();
            crc.update(&data);
            body += data.len();
            self.seal();
            self.shared += data.len();
            self.parts.push(Part::Shared(data));
        }
        self.payloads = payloads;
        crc.update(&self.buf[unhashed..]);
        body += self.buf.len() - unhashed;
        debug_assert_eq!(body, size, "the computed size is the encoded size");
        if body > PEER_FRAME_BYTES_MAX {
            return Err(FrameError::TooLarge { len: body });
        }
        self.buf[start..start + 4].copy_from_slice(&(body as u32).to_le_bytes());
        self.buf[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
        Ok(())
    }

    /// Ends the current run of `buf` (before a shared payload, or before writing).
    fn seal(&mut self) {
        if self.covered < self.buf.len() {
            self.parts.push(Part::Buf(self.covered..self.buf.len()));
            self.covered = self.buf.len();
        }
    }

    /// Writes everything gathered, in order, then clears. On error some of it may have been
    /// written; the gather is cleared all the same.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<()> {
        self.seal();
        let result = {
            let mut slices: Vec<IoSlice<'_>> = self
                .parts
                .iter()
                .map(|p| match p {
                    Part::Buf(r) => IoSlice::new(&self.buf[r.clone()]),
                    Part::Shared(b) => IoSlice::new(b),
                })
                .collect();
            write_all_vectored(w, &mut slices)
        };
        self.clear();
        result
    }
}

/// `Write::write_all_vectored` (not stable): every byte of `slices`, at most
/// [`GATHER_IOVECS_MAX`] pieces per call.
fn write_all_vectored(w: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        let take = slices.len().min(GATHER_IOVECS_MAX);
        match w.write_vectored(&slices[..take]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the peer connection took no bytes",
                ))
            }
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Encoded length of `e` (whose payload was taken out) with a payload of `data_len` bytes.
fn entry_len(e: &Entry, data_len: usize) -> usize {
    let data_field = if data_len == 0 {
        0
    } else {
        field_len(data_len)
    };
    e.compute_size() as usize + data_field
}

/// Bytes of a length-delimited field holding `len` bytes, key (one byte) included.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Messages for the tests of this module and of the transport.
#[cfg(test)]
pub(crate) mod test_messages {
    use bytes::Bytes;
    use raft::eraftpb::{Entry, Message, MessageType};

    pub(crate) fn msg(from: u64, to: u64, index: u64) -> Message {
        Message {
            msg_type: MessageType::MsgAppend,
            from,
            to,
            term: 3,
            index,
            ..Default::default()
        }
    }

    pub(crate) fn big_msg(from: u64, to: u64, data_bytes: usize) -> Message {
        let mut m = msg(from, to, 1);
        let data: Vec<u8> = (0..data_bytes).map(|i| (i * 7 % 251) as u8).collect();
        let e = Entry {
            index: 2,
            term: 3,
            data: Bytes::from(data),
            context: Bytes::from_static(&[2]),
            ..Default::default()
        };
        m.mut_entries().push(e);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::test_messages::{big_msg, msg};
    use super::*;
    use raft::eraftpb::{EntryType, MessageType, Snapshot};

    const CLUSTER: u64 = 0xfeed;

    #[test]
    fn hello_roundtrip_and_refusals() {
        let full = encode_hello(7, CLUSTER, "10.0.0.7:9596");
        assert_eq!(&full[..8], b"FBRAFT\0\x02");
        assert_eq!(usize::from(full[HELLO_LEN]), "10.0.0.7:9596".len());
        assert_eq!(
            decode_hello_addr(&full[HELLO_LEN + 1..]),
            Ok(Some("10.0.0.7:9596".to_string()))
        );
        assert_eq!(decode_hello_addr(&[]), Ok(None));
        assert_eq!(decode_hello_addr(b"no port"), Err(FrameError::BadHelloAddr));
        assert_eq!(
            decode_hello_addr(&[0xff, b':', b'1']),
            Err(FrameError::BadHelloAddr)
        );
        // Too long to say: said as empty.
        let long = format!("{}:1", "h".repeat(HELLO_ADDR_MAX));
        assert_eq!(encode_hello(7, CLUSTER, &long)[HELLO_LEN], 0);
        let h: [u8; HELLO_LEN] = full[..HELLO_LEN].try_into().unwrap();
        assert_eq!(decode_hello(&h, CLUSTER), Ok(7));
        assert_eq!(
            decode_hello(&h, CLUSTER + 1),
            Err(FrameError::WrongCluster {
                expected: CLUSTER + 1,
                got: CLUSTER
            })
        );
        let mut bad = h;
        bad[7] = 1; // the previous wire version
        assert_eq!(decode_hello(&bad, CLUSTER), Err(FrameError::BadMagic));
    }

    #[test]
    fn frame_roundtrip() {
        let m = big_msg(1, 2, 1000);
        let mut buf = vec![0xAA]; // frames append
        encode_frame(&m, &mut buf).unwrap();
        encode_frame(&msg(1, 2, 9), &mut buf).unwrap();
        assert_eq!(frames_in(&buf[1..]), vec![m, msg(1, 2, 9)]);
    }

    #[test]
    fn frame_corruption_and_size_are_detected() {
        let mut buf = Vec::new();
        encode_frame(&msg(1, 2, 5), &mut buf).unwrap();
        let header: [u8; FRAME_HEADER_LEN] = buf[..FRAME_HEADER_LEN].try_into().unwrap();
        let (len, crc) = decode_frame_header(&header).unwrap();
        assert_eq!(len, buf.len() - FRAME_HEADER_LEN);
        let mut body = buf[FRAME_HEADER_LEN..].to_vec();
        body[0] ^= 0x40;
        assert!(matches!(
            decode_frame_body(&Bytes::from(body), crc),
            Err(FrameError::BadChecksum { .. })
        ));
        let mut huge = [0u8; FRAME_HEADER_LEN];
        huge[..4].copy_from_slice(&(PEER_FRAME_BYTES_MAX as u32 + 1).to_le_bytes());
        assert_eq!(
            decode_frame_header(&huge),
            Err(FrameError::TooLarge {
                len: PEER_FRAME_BYTES_MAX + 1
            })
        );
        // A body with a valid CRC that is not protobuf.
        let junk = Bytes::from_static(&[0xFF; 10]);
        assert!(matches!(
            decode_frame_body(&junk, crc32fast::hash(&junk)),
            Err(FrameError::Decode(_))
        ));
    }

    #[test]
    fn route_checks() {
        let m = msg(1, 2, 0);
        assert_eq!(check_route(&m, 1, 2), Ok(()));
        assert_eq!(
            check_route(&m, 3, 2),
            Err(FrameError::WrongSender { hello: 3, from: 1 })
        );
        assert_eq!(
            check_route(&m, 1, 4),
            Err(FrameError::WrongReceiver { me: 4, to: 2 })
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            header in proptest::array::uniform8(proptest::prelude::any::<u8>()),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let _ = decode_frame_header(&header);
            let body = Bytes::from(body);
            let _ = decode_frame_body(&body, crc32fast::hash(&body));
            let mut hello = [0u8; HELLO_LEN];
            hello[..8].copy_from_slice(&header);
            let _ = decode_hello(&hello, CLUSTER);
        }
    }

    /// Reads back the frames in `wire`.
    fn frames_in(wire: &[u8]) -> Vec<Message> {
        let mut rest = wire;
        let mut got = Vec::new();
        while !rest.is_empty() {
            let header: [u8; FRAME_HEADER_LEN] = rest[..FRAME_HEADER_LEN].try_into().unwrap();
            let (len, crc) = decode_frame_header(&header).unwrap();
            let body = Bytes::copy_from_slice(&rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len]);
            got.push(decode_frame_body(&body, crc).unwrap());
            rest = &rest[FRAME_HEADER_LEN + len..];
        }
        got
    }

    /// Messages of every shape a leader sends: no entries, payloads around the inline
    /// bound, several entries with and without payloads and contexts, a snapshot.
    fn assorted() -> Vec<Message> {
        let mut out = vec![msg(1, 2, 9)];
        for size in [
            1,
            GATHER_INLINE_BYTES_MAX,
            GATHER_INLINE_BYTES_MAX + 1,
            100_000,
            300_000,
        ] {
            out.push(big_msg(1, 2, size));
        }
        let mut many = msg(1, 2, 10);
        many.commit = 77;
        for (i, size) in [0usize, 5, 20_000, 0, 9_000, 3].into_iter().enumerate() {
            many.mut_entries().push(Entry {
                entry_type: if i == 3 {
                    EntryType::EntryConfChangeV2
                } else {
                    EntryType::EntryNormal
                },
                term: 4,
                index: 11 + i as u64,
                data: Bytes::from(vec![i as u8 + 1; size]),
                context: if i % 2 == 0 {
                    Bytes::new()
                } else {
                    Bytes::from_static(b"ctx")
                },
                ..Default::default()
            });
        }
        out.push(many);
        let mut snap = msg(1, 2, 0);
        snap.set_msg_type(MessageType::MsgSnapshot);
        let mut s = Snapshot::default();
        s.mut_metadata().index = 40;
        s.data = Bytes::from(vec![9u8; 50_000]);
        snap.set_snapshot(s);
        out.push(snap);
        out
    }

    #[test]
    fn gathered_frames_decode_as_the_messages_given() {
        let msgs = assorted();
        let mut g = Gather::default();
        g.extend_from_slice(b"rest");
        for m in &msgs {
            g.push_frame(m.clone()).unwrap();
        }
        let mut wire = Vec::new();
        let len = g.len();
        g.write_to(&mut wire).unwrap();
        assert_eq!(wire.len(), len);
        assert!(g.is_empty());
        assert_eq!(&wire[..4], b"rest");
        assert_eq!(frames_in(&wire[4..]), msgs);
        // The same messages, one frame each, as encode_frame makes them.
        let mut one_by_one = Vec::new();
        for m in &msgs {
            encode_frame(m, &mut one_by_one).unwrap();
        }
        assert_eq!(frames_in(&one_by_one), msgs);
    }

    /// A writer that takes at most `step` bytes per call.
    struct Stingy {
        out: Vec<u8>,
        step: usize,
    }

    impl Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.step - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.step {
                    break;
                }
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn gathered_frames_survive_short_writes_and_reuse() {
        let msgs = assorted();
        let mut g = Gather::default();
        let mut w = Stingy {
            out: Vec::new(),
            step: 4_999,
        };
        for round in 0..2 {
            for m in &msgs {
                g.push_frame(m.clone()).unwrap();
            }
            g.write_to(&mut w).unwrap();
            assert!(g.is_empty(), "round {round}");
        }
        let mut want = msgs.clone();
        want.extend(msgs);
        assert_eq!(frames_in(&w.out), want);
    }

    #[test]
    fn a_frame_over_the_bound_is_refused_and_leaves_the_gather_as_it_was() {
        let mut g = Gather::default();
        g.push_frame(big_msg(1, 2, 10)).unwrap();
        let before = g.len();
        let mut huge = msg(1, 2, 3);
        for i in 0..3 {
            huge.mut_entries().push(Entry {
                index: 4 + i,
                data: Bytes::from(vec![0u8; PEER_FRAME_BYTES_MAX / 3 + 1]),
                ..Default::default()
            });
        }
        assert!(matches!(
            g.push_frame(huge),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(g.len(), before);
        let mut wire = Vec::new();
        g.write_to(&mut wire).unwrap();
        assert_eq!(frames_in(&wire), vec![big_msg(1, 2, 10)]);
    }

    #[test]
    fn varints_match_protobuf() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            put_varint(&mut ours, v);
            assert_eq!(ours.len(), varint_len(v), "{v}");
            let mut theirs = Vec::new();
            let mut os = protobuf::CodedOutputStream::vec(&mut theirs);
            os.write_raw_varint64(v).unwrap();
            os.flush().unwrap();
            drop(os);
            assert_eq!(ours, theirs, "{v}");
        }
    }
}
