//! [`PacketConn`]: logical MySQL packets over a blocking byte stream.
//!
//! Reads are buffered and joined (frames of 0xFFFFFF bytes continue in the next one), with
//! sequence ids checked and a per-connection bound on the logical length. Writes are split
//! into frames and buffered; [`PacketConn::write_packet`] flushes, while
//! [`PacketConn::write_packet_no_flush`] lets a streaming server batch many small events
//! into few syscalls. One sequence counter serves both directions, as in MySQL: it is reset
//! to 0 at the start of each command.
//!
//! After an I/O error the connection should be dropped, with one exception that callers
//! may rely on: a read that times out before the first frame of a packet has fully arrived
//! (for frames shorter than the read buffer) consumes nothing, so the read can be retried.
//! This module knows nothing about what packets mean.

use std::io::{self, Read, Write};

use super::NetError;
use crate::limits::PACKET_PAYLOAD_MAX;
use crate::mysql::packet::{frame_header, parse_header, Joiner, HEADER_LEN};

/// Read buffer size: many small binlog events per syscall, without a large per-connection
/// cost when thousands of downstream connections sit idle.
const READ_BUF_BYTES: usize = 16 << 10;
/// Buffered output is written to the stream once it reaches this size.
const WRITE_BUF_BYTES: usize = 64 << 10;
/// Frames at least this long are written straight from the caller's slice, not copied.
const WRITE_DIRECT_BYTES: usize = 16 << 10;
/// Room of the output buffer: below `WRITE_BUF_BYTES` it takes one more frame (header, a
/// one-byte head such as an event packet's status, and a copied piece), so that an event
/// stream never makes it grow (doubling it to 128 KiB cost every dump 64 KiB).
const WRITE_BUF_ROOM: usize = WRITE_BUF_BYTES + HEADER_LEN + 1 + WRITE_DIRECT_BYTES;

pub struct PacketConn<S: Read + Write> {
    stream: S,
    rbuf: Box<[u8]>,
    /// Unconsumed input is `rbuf[rpos..rend]`.
    rpos: usize,
    rend: usize,
    wbuf: Vec<u8>,
    /// Sequence id of the next packet, read or written.
    seq: u8,
    packet_len_max: usize,
    /// Payload bytes still to come of the logical packet being written (`begin_packet`),
    /// and of its current frame.
    out_left: usize,
    frame_left: usize,
    /// The current frame is a full one: another frame (maybe empty) follows it.
    frame_full: bool,
}

impl<S: Read + Write> PacketConn<S> {
    /// `packet_len_max`: the largest logical packet accepted from the peer (capped at
    /// `limits::LOGICAL_PACKET_MAX`).
    pub fn new(stream: S, packet_len_max: usize) -> Self {
        PacketConn::with_read_buffer(stream, packet_len_max, READ_BUF_BYTES)
    }

    /// `new` with a read buffer of `read_buf_bytes` (at least a frame header's): a larger
    /// one for a connection that receives a stream (fewer reads, and more packets that
    /// `read_packet_ref` lends without a copy).
    pub fn with_read_buffer(stream: S, packet_len_max: usize, read_buf_bytes: usize) -> Self {
        PacketConn {
            stream,
            rbuf: vec![0; read_buf_bytes.max(HEADER_LEN)].into_boxed_slice(),
            rpos: 0,
            rend: 0,
            wbuf: Vec::with_capacity(WRITE_BUF_ROOM),
            seq: 0,
            packet_len_max,
            out_left: 0,
            frame_left: 0,
            frame_full: false,
        }
    }

    pub fn set_packet_len_max(&mut self, packet_len_max: usize) {
        self.packet_len_max = packet_len_max;
    }

    /// Starts a new command exchange: the next packet carries sequence id 0.
    pub fn reset_seq(&mut self) {
        self.seq = 0;
    }

    pub fn set_seq(&mut self, seq: u8) {
        self.seq = seq;
    }

    /// The sequence id the next packet (read or written) carries.
    pub fn seq(&self) -> u8 {
        self.seq
    }

    /// Reads one logical packet into a new buffer.
    pub fn read_packet(&mut self) -> Result<Vec<u8>, NetError> {
        let mut buf = Vec::new();
        self.read_packet_into(&mut buf)?;
        Ok(buf)
    }

    /// Reads one logical packet: lent straight from the read buffer when it is one frame
    /// that fits there (most binlog events: no copy), else read into `scratch` as
    /// `read_packet_into` does. Errors and what a timeout consumes are as for that method.
    pub fn read_packet_ref<'a>(
        &'a mut self,
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], NetError> {
        self.fill_to(HEADER_LEN, true)?;
        let (len, seq) = self.buffered_header();
        if len >= PACKET_PAYLOAD_MAX || HEADER_LEN + len > self.rbuf.len() {
            self.read_packet_into(scratch)?;
            return Ok(scratch);
        }
        let mut joiner = Joiner::new(self.seq, self.packet_len_max);
        let last = joiner.accept(seq, len)?;
        debug_assert!(last, "a frame shorter than the maximum ends its packet");
        self.fill_to(HEADER_LEN + len, false)?;
        let start = self.rpos + HEADER_LEN;
        self.rpos = start + len;
        self.seq = joiner.next_seq();
        Ok(&self.rbuf[start..start + len])
    }

    /// Reads one logical packet into `buf` (cleared first), reusing its allocation.
    /// Returns [`NetError::Closed`] if the stream ends exactly at a packet boundary.
    pub fn read_packet_into(&mut self, buf: &mut Vec<u8>) -> Result<(), NetError> {
        buf.clear();
        let mut joiner = Joiner::new(self.seq, self.packet_len_max);
        let mut first = true;
        loop {
            self.fill_to(HEADER_LEN, first)?;
            let (len, seq) = self.buffered_header();
            // Check sequence and size before spending memory or reads on the payload.
            let last = joiner.accept(seq, len)?;
            if HEADER_LEN + len <= self.rbuf.len() {
                // Buffer the whole frame before consuming any of it (see module doc).
                self.fill_to(HEADER_LEN + len, false)?;
            }
            self.rpos += HEADER_LEN;
            self.read_payload(len, buf)?;
            first = false;
            if last {
                break;
            }
        }
        self.seq = joiner.next_seq();
        Ok(())
    }

    /// Payload length and sequence id of the frame header at the read position (which
    /// `fill_to(HEADER_LEN, ..)` buffered).
    fn buffered_header(&self) -> (usize, u8) {
        let h = &self.rbuf[self.rpos..self.rpos + HEADER_LEN];
        parse_header([h[0], h[1], h[2], h[3]])
    }

    /// Appends `len` payload bytes to `buf`, from the buffer first, then the stream.
    fn read_payload(&mut self, len: usize, buf: &mut Vec<u8>) -> Result<(), NetError> {
        let buffered = (self.rend - self.rpos).min(len);
        buf.extend_from_slice(&self.rbuf[self.rpos..self.rpos + buffered]);
        self.rpos += buffered;
        let missing = len - buffered;
        if missing == 0 {
            return Ok(());
        }
        // The buffer is empty here: read the rest straight into the destination.
        let start = buf.len();
        buf.resize(start + missing, 0);
        self.stream
            .read_exact(&mut buf[start..])
            .map_err(NetError::Io)
    }

    /// Reads until at least `n` bytes (n <= buffer size) are buffered. `at_boundary`: an
    /// end of stream with nothing buffered is a clean close, not a truncated packet.
    fn fill_to(&mut self, n: usize, at_boundary: bool) -> Result<(), NetError> {
        assert!(n <= self.rbuf.len(), "fill_to({n}) beyond the read buffer");
        if self.rend - self.rpos >= n {
            return Ok(());
        }
        if self.rpos > 0 {
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            self.rend -= self.rpos;
            self.rpos = 0;
        }
        while self.rend < n {
            match self.stream.read(&mut self.rbuf[self.rend..]) {
                Ok(0) if at_boundary && self.rend == 0 => return Err(NetError::Closed),
                Ok(0) => {
                    return Err(NetError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a packet",
                    )))
                }
                Ok(read) => self.rend += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(NetError::Io(e)),
            }
        }
        Ok(())
    }

    /// Bytes received but not yet returned as packets.
    pub fn buffered_input_len(&self) -> usize {
        self.rend - self.rpos
    }

    /// Writes one logical packet and flushes.
    pub fn write_packet(&mut self, payload: &[u8]) -> Result<(), NetError> {
        self.write_packet_no_flush(payload)?;
        self.flush()
    }

    /// Queues one logical packet; output reaches the stream when the buffer fills or on
    /// [`flush`](Self::flush).
    pub fn write_packet_no_flush(&mut self, payload: &[u8]) -> Result<(), NetError> {
        self.write_parts_no_flush(&[], payload)
    }

    /// Queues one logical packet made of `head` followed by `body` without joining them
    /// first (a binlog event packet is a 0x00 status byte and the event, which may be
    /// large): same framing as [`write_packet_no_flush`](Self::write_packet_no_flush).
    pub fn write_parts_no_flush(&mut self, head: &[u8], body: &[u8]) -> Result<(), NetError> {
        let len = head.len() + body.len();
        if len < PACKET_PAYLOAD_MAX && body.len() < WRITE_DIRECT_BYTES && self.out_left == 0 {
            // The usual binlog event: one frame, copied (a dump sends millions; the general
            // path below costs each a few more branches).
            self.wbuf.extend_from_slice(&frame_header(len, self.seq));
            self.seq = self.seq.wrapping_add(1);
            self.wbuf.extend_from_slice(head);
            self.wbuf.extend_from_slice(body);
            if self.wbuf.len() >= WRITE_BUF_BYTES {
                self.write_buffered()?;
            }
            return Ok(());
        }
        self.begin_packet(len)?;
        self.write_payload(head)?;
        self.write_payload(body)
    }

    /// Starts one logical packet of `len` payload bytes, which follow through
    /// [`write_payload`](Self::write_payload) in as many calls as the caller likes: a
    /// packet too large to hold in memory at once. Frames of up to `PACKET_PAYLOAD_MAX`
    /// bytes, buffered like the others. A packet left incomplete breaks the connection; one
    /// begun before the last one is complete is refused.
    pub fn begin_packet(&mut self, len: usize) -> Result<(), NetError> {
        if self.out_left != 0 {
            return Err(NetError::Unexpected(
                "a packet begun before the last one was complete",
            ));
        }
        self.out_left = len;
        self.frame_left = 0;
        self.frame_full = false;
        if len == 0 {
            self.open_frame();
        }
        Ok(())
    }

    /// The next payload bytes of the packet `begin_packet` started; more than it has left
    /// is refused (and nothing of them is written).
    pub fn write_payload(&mut self, mut bytes: &[u8]) -> Result<(), NetError> {
        if bytes.len() > self.out_left {
            return Err(NetError::Unexpected(
                "payload bytes beyond the packet's length",
            ));
        }
        while !bytes.is_empty() {
            if self.frame_left == 0 {
                self.open_frame();
            }
            let (piece, rest) = bytes.split_at(self.frame_left.min(bytes.len()));
            if piece.len() >= WRITE_DIRECT_BYTES {
                self.write_buffered()?;
                self.stream.write_all(piece)?;
            } else {
                self.wbuf.extend_from_slice(piece);
            }
            if self.wbuf.len() >= WRITE_BUF_BYTES {
                self.write_buffered()?;
            }
            self.frame_left -= piece.len();
            self.out_left -= piece.len();
            bytes = rest;
        }
        // A payload that is an exact multiple of the maximum ends with an empty frame.
        if self.out_left == 0 && self.frame_left == 0 && self.frame_full {
            self.open_frame();
            if self.wbuf.len() >= WRITE_BUF_BYTES {
                self.write_buffered()?;
            }
        }
        Ok(())
    }

    /// Queues the header of the next frame of the packet being written.
    fn open_frame(&mut self) {
        let len = self.out_left.min(PACKET_PAYLOAD_MAX);
        self.wbuf.extend_from_slice(&frame_header(len, self.seq));
        self.seq = self.seq.wrapping_add(1);
        self.frame_left = len;
        self.frame_full = len == PACKET_PAYLOAD_MAX;
    }

    /// Bytes queued and not yet written to the stream.
    pub fn buffered_output_len(&self) -> usize {
        self.wbuf.len()
    }

    fn write_buffered(&mut self) -> Result<(), NetError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf)?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Writes everything queued and flushes the stream.
    pub fn flush(&mut self) -> Result<(), NetError> {
        self.write_buffered()?;
        self.stream.flush()?;
        Ok(())
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream; reading or writing it directly bypasses the buffers.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The stream; buffered input and unflushed output are lost.
    pub fn into_inner(self) -> S {
        self.stream
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{LOGICAL_PACKET_MAX, PACKET_PAYLOAD_MAX};
    use crate::mysql::packet::encode_packets;
    use crate::mysql::ProtocolError;
    use std::collections::VecDeque;

    /// An in-memory stream: reads come from `input` in the given slices (an empty slice is
    /// a WouldBlock, as a socket read timeout), writes go to `output`.
    #[derive(Default)]
    struct MockStream {
        input: VecDeque<Vec<u8>>,
        output: Vec<u8>,
        writes: usize,
    }

    impl Read for MockStream {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let Some(mut chunk) = self.input.pop_front() else {
                return Ok(0);
            };
            if chunk.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = chunk.len().min(out.len());
            out[..n].copy_from_slice(&chunk[..n]);
            if n < chunk.len() {
                chunk.drain(..n);
                self.input.push_front(chunk);
            }
            Ok(n)
        }
    }

    impl Write for MockStream {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            self.output.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn conn_reading(chunks: Vec<Vec<u8>>) -> PacketConn<MockStream> {
        let stream = MockStream {
            input: chunks.into(),
            ..Default::default()
        };
        PacketConn::new(stream, LOGICAL_PACKET_MAX)
    }

    #[test]
    fn writes_then_reads_packets_of_every_size() {
        let sizes = [
            0,
            1,
            300,
            READ_BUF_BYTES,
            PACKET_PAYLOAD_MAX,
            PACKET_PAYLOAD_MAX + 7,
        ];
        let payloads: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7 % 256) as u8).collect())
            .collect();
        let mut writer = PacketConn::new(MockStream::default(), LOGICAL_PACKET_MAX);
        for p in &payloads {
            writer.write_packet_no_flush(p).unwrap();
        }
        writer.flush().unwrap();
        let wire = writer.into_inner().output;
        let mut expected = Vec::new();
        let mut seq = 0;
        for p in &payloads {
            seq = encode_packets(p, seq, &mut expected);
        }
        assert!(wire == expected);
        // Feed it back in awkward slices.
        let chunks: Vec<Vec<u8>> = wire.chunks(10_007).map(|c| c.to_vec()).collect();
        let mut reader = conn_reading(chunks);
        let mut buf = Vec::new();
        for p in &payloads {
            reader.read_packet_into(&mut buf).unwrap();
            assert!(&buf == p, "payload of {} bytes", p.len());
        }
        assert_eq!(reader.seq(), seq);
        assert!(matches!(reader.read_packet(), Err(NetError::Closed)));
    }

    /// A packet written in pieces of any size through `begin_packet` is framed exactly as
    /// one written whole, around every frame boundary; more bytes than it has are refused.
    #[test]
    fn a_packet_written_in_pieces_is_framed_as_one_written_whole() {
        let max = PACKET_PAYLOAD_MAX;
        for len in [0, 1, 5_000, max - 1, max, max + 1, 2 * max, 2 * max + 3] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut expected = Vec::new();
            let next_seq = encode_packets(&payload, 0, &mut expected);
            expected.extend_from_slice(&frame_header(1, next_seq));
            expected.push(0xee);
            // Even pieces, and a cycle of uneven ones that cross frames at odd offsets.
            let cycle = [
                1,
                3,
                4093,
                WRITE_DIRECT_BYTES - 1,
                WRITE_DIRECT_BYTES,
                65_537,
            ];
            let even = [WRITE_DIRECT_BYTES, 1 << 20, max + 1];
            let small = if len <= 5_000 { &[1, 7][..] } else { &[][..] };
            let plans = small
                .iter()
                .chain(&even)
                .map(|&n| vec![n])
                .chain([cycle.to_vec()]);
            for plan in plans {
                let mut writer = PacketConn::new(MockStream::default(), LOGICAL_PACKET_MAX);
                writer.begin_packet(len).unwrap();
                let (mut at, mut sizes) = (0, plan.iter().cycle());
                while at < len {
                    let end = (at + sizes.next().unwrap()).min(len);
                    writer.write_payload(&payload[at..end]).unwrap();
                    at = end;
                }
                writer.write_packet_no_flush(&[0xee]).unwrap();
                writer.flush().unwrap();
                let wire = writer.into_inner().output;
                assert!(wire == expected, "{len} bytes in pieces of {plan:?}");
            }
        }
        let mut writer = PacketConn::new(MockStream::default(), LOGICAL_PACKET_MAX);
        writer.begin_packet(3).unwrap();
        writer.write_payload(b"ab").unwrap();
        assert!(writer.write_payload(b"cd").is_err());
        assert!(
            writer.begin_packet(1).is_err(),
            "the last packet is not complete"
        );
        writer.write_payload(b"c").unwrap();
        writer.flush().unwrap();
        assert_eq!(writer.into_inner().output, b"\x03\x00\x00\x00abc");
    }

    #[test]
    fn packets_that_fit_are_lent_from_the_read_buffer_and_read_the_same() {
        let sizes = [
            300,
            0,
            1,
            READ_BUF_BYTES - HEADER_LEN,
            READ_BUF_BYTES,
            5,
            0xff_ff_ff + 3,
            7,
        ];
        let payloads: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| (0..n).map(|i| (i * 13 % 256) as u8).collect())
            .collect();
        let mut wire = Vec::new();
        let mut seq = 0;
        for p in &payloads {
            seq = encode_packets(p, seq, &mut wire);
        }
        // A read that stops inside the first frame (a timeout) first: nothing is consumed.
        let mut chunks = vec![wire[..150].to_vec(), Vec::new()];
        chunks.extend(wire[150..].chunks(10_007).map(|c| c.to_vec()));
        let mut reader = conn_reading(chunks);
        let mut scratch = Vec::new();
        assert!(matches!(
            reader.read_packet_ref(&mut scratch),
            Err(NetError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock
        ));
        for (p, &size) in payloads.iter().zip(&sizes) {
            let rbuf = reader.rbuf.as_ptr_range();
            let got = reader.read_packet_ref(&mut scratch).unwrap();
            assert!(got == &p[..], "payload of {size} bytes");
            let lent = rbuf.contains(&got.as_ptr()) || (size == 0 && scratch.is_empty());
            assert_eq!(lent, size + HEADER_LEN <= READ_BUF_BYTES, "{size} bytes");
        }
        assert_eq!(reader.seq(), seq);
        assert!(matches!(
            reader.read_packet_ref(&mut scratch),
            Err(NetError::Closed)
        ));
    }

    #[test]
    fn parts_frame_like_one_payload() {
        for len in [
            0usize,
            1,
            100,
            20_000,
            0xff_ff_fe,
            0xff_ff_ff,
            0xff_ff_ff * 2 + 7,
        ] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut joined = vec![0u8];
            joined.extend_from_slice(&body);
            let mut a = PacketConn::new(MockStream::default(), usize::MAX);
            a.write_packet_no_flush(&joined).unwrap();
            a.flush().unwrap();
            let mut b = PacketConn::new(MockStream::default(), usize::MAX);
            b.write_parts_no_flush(&[0], &body).unwrap();
            b.flush().unwrap();
            assert!(a.get_ref().output == b.get_ref().output, "length {len}");
        }
    }

    /// Event packets of every size up to the direct-write bound, in any order, fit the
    /// output buffer's first room.
    #[test]
    fn an_event_stream_never_grows_the_output_buffer() {
        let mut conn = PacketConn::new(MockStream::default(), usize::MAX);
        let room = conn.wbuf.capacity();
        let mut len = 1usize;
        for _ in 0..5_000 {
            len = (len * 7919 + 13) % (WRITE_DIRECT_BYTES + 100);
            conn.write_parts_no_flush(&[0], &vec![1; len]).unwrap();
            assert_eq!(conn.wbuf.capacity(), room, "after a {len}-byte event");
        }
    }

    #[test]
    fn small_packets_are_batched_until_flush() {
        let mut conn = PacketConn::new(MockStream::default(), LOGICAL_PACKET_MAX);
        for _ in 0..100 {
            conn.write_packet_no_flush(&[0; 100]).unwrap();
        }
        assert_eq!(conn.get_ref().writes, 0);
        assert_eq!(conn.buffered_output_len(), 100 * 104);
        conn.flush().unwrap();
        assert_eq!(conn.get_ref().writes, 1);
        assert_eq!(conn.seq(), 100);
    }

    #[test]
    fn sequence_is_checked_and_shared_with_writes() {
        let mut wire = Vec::new();
        encode_packets(b"\x00answer", 1, &mut wire);
        let mut conn = conn_reading(vec![wire]);
        conn.write_packet(b"\x0e").unwrap();
        assert_eq!(conn.read_packet().unwrap(), b"\x00answer");
        assert_eq!(conn.seq(), 2);

        let mut wire = Vec::new();
        encode_packets(b"late", 5, &mut wire);
        let mut conn = conn_reading(vec![wire]);
        assert!(matches!(
            conn.read_packet(),
            Err(NetError::Protocol(ProtocolError::OutOfOrder {
                expected: 0,
                got: 5
            }))
        ));
    }

    #[test]
    fn oversized_packet_is_refused() {
        let mut wire = Vec::new();
        encode_packets(&[1; 2000], 0, &mut wire);
        let mut conn = conn_reading(vec![wire]);
        conn.set_packet_len_max(1000);
        assert!(matches!(
            conn.read_packet(),
            Err(NetError::Protocol(ProtocolError::TooLarge { .. }))
        ));
    }

    #[test]
    fn close_inside_a_packet_is_an_io_error() {
        let mut wire = Vec::new();
        encode_packets(b"hello", 0, &mut wire);
        wire.truncate(6);
        let mut conn = conn_reading(vec![wire]);
        match conn.read_packet() {
            Err(NetError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeout_before_a_full_frame_can_be_retried() {
        let mut wire = Vec::new();
        encode_packets(b"first", 0, &mut wire);
        encode_packets(b"second", 1, &mut wire);
        let (a, rest) = wire.split_at(2);
        let (b, c) = rest.split_at(10);
        let mut conn = conn_reading(vec![a.to_vec(), vec![], b.to_vec(), vec![], c.to_vec()]);
        let err = conn.read_packet().unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(conn.read_packet().unwrap(), b"first");
        assert!(conn.read_packet().unwrap_err().is_timeout());
        assert_eq!(conn.read_packet().unwrap(), b"second");
    }
}
