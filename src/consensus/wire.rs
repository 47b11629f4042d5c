//! Peer wire format (pure): the hello that opens a connection and the frames that carry
//! raft [`Message`]s after it, with their checks.
//!
//! A frame is: length u32 LE, CRC32 of the body u32 LE, body = the protobuf bytes of one
//! `Message`, at most [`PEER_FRAME_BYTES_MAX`].

use std::fmt;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::Message;

use crate::limits::PEER_FRAME_BYTES_MAX;

/// First bytes of every peer connection: name and wire version.
pub const HELLO_MAGIC: [u8; 8] = *b"FBRAFT\0\x01";
/// Magic + sender node id + cluster id.
pub const HELLO_LEN: usize = 24;
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
            FrameError::BadMagic => write!(f, "bad hello magic (not a ferrobus raft peer)"),
            FrameError::WrongCluster { expected, got } => {
                write!(
                    f,
                    "peer belongs to cluster {got:#x}, this node to {expected:#x}"
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
                    "message from node {from} on the connection of node {hello}"
                )
            }
            FrameError::WrongReceiver { me, to } => {
                write!(f, "message for node {to} arrived at node {me}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// The hello a sender writes first on every connection.
pub fn encode_hello(node_id: u64, cluster_id: u64) -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..8].copy_from_slice(&HELLO_MAGIC);
    h[8..16].copy_from_slice(&node_id.to_le_bytes());
    h[16..24].copy_from_slice(&cluster_id.to_le_bytes());
    h
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

    const CLUSTER: u64 = 0xfeed;

    #[test]
    fn hello_roundtrip_and_refusals() {
        let h = encode_hello(7, CLUSTER);
        assert_eq!(&h[..8], b"FBRAFT\0\x01");
        assert_eq!(decode_hello(&h, CLUSTER), Ok(7));
        assert_eq!(
            decode_hello(&h, CLUSTER + 1),
            Err(FrameError::WrongCluster {
                expected: CLUSTER + 1,
                got: CLUSTER
            })
        );
        let mut bad = h;
        bad[7] = 2; // another wire version
        assert_eq!(decode_hello(&bad, CLUSTER), Err(FrameError::BadMagic));
    }

    #[test]
    fn frame_roundtrip() {
        let m = big_msg(1, 2, 1000);
        let mut buf = vec![0xAA]; // frames append
        encode_frame(&m, &mut buf).unwrap();
        encode_frame(&msg(1, 2, 9), &mut buf).unwrap();
        let mut rest = &buf[1..];
        let mut got = Vec::new();
        while !rest.is_empty() {
            let header: [u8; FRAME_HEADER_LEN] = rest[..FRAME_HEADER_LEN].try_into().unwrap();
            let (len, crc) = decode_frame_header(&header).unwrap();
            let body = Bytes::copy_from_slice(&rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len]);
            got.push(decode_frame_body(&body, crc).unwrap());
            rest = &rest[FRAME_HEADER_LEN + len..];
        }
        assert_eq!(got, vec![m, msg(1, 2, 9)]);
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
}
