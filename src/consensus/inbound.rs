//! Inbound peer connections, read by the raft thread itself.
//!
//! The transport accepts a connection and reads its hello on a short-lived thread, then
//! hands it over as a [`PeerConnection`]. The raft thread keeps its connections in an
//! [`InboundSet`], sleeps in `poll(2)` on them and on its [`Waker`] (an eventfd that every
//! sender of a request writes after queueing it), and reads whatever frames arrived with
//! non-blocking reads. A message from a peer thus wakes exactly one thread, the one that
//! steps it; a reader thread per connection handing messages over cost a second wake-up
//! (and a second scheduling delay) for every acknowledgement, append and commit notice.
//!
//! Each round reads at most [`INBOUND_READ_BUDGET_BYTES`] per connection, so ticks,
//! requests and the other peers come round during a catch-up; what is left stays in the
//! socket, and TCP holds the sender back when the raft thread is busy, where a reader
//! thread's queue dropped messages. (A raft thread that reads nothing for
//! [`PEER_IO_TIMEOUT_MS`], say behind an fsync stalled that long, makes a sender's write
//! time out once the socket buffers are full: the sender reconnects, as after any error.)
//! The frames' CRC32 checks and decoding run on the raft thread too. A connection that
//! sends a bad frame, closes, fails, or sends nothing for [`PEER_IO_TIMEOUT_MS`] inside a
//! frame is closed (logged and counted by the transport); its sender reconnects.
//!
//! [`FrameReader`] is the frame parsing over any non-blocking `Read`, without sockets, so
//! that short reads and odd splits can be tested in process.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::eraftpb::Message;

use crate::consensus::transport::{ConnError, PeerConnection};
use crate::consensus::wire::{decode_frame_body, decode_frame_header, FRAME_HEADER_LEN};
use crate::limits::PEER_IO_TIMEOUT_MS;

/// Read buffer of a connection: frames that fit are parsed from it, larger ones are read
/// straight into their own body.
pub const INBOUND_READ_BUFFER_BYTES: usize = 64 << 10;
/// At most this much is read from one connection per round of the raft loop.
pub const INBOUND_READ_BUDGET_BYTES: usize = 1 << 20;
/// First allocation for a large frame's body; the rest of the frame's length is reserved
/// only once this much has arrived, so a header that lies about its length cannot make us
/// allocate the whole bound up front.
const INBOUND_BODY_RESERVE_BYTES: usize = 64 << 10;

// ---------------------------------------------------------------------------------------
// Waker.

/// An eventfd that wakes the raft thread from `poll`. Writes add up until the raft thread
/// reads them, so a wake-up given while it was busy is not lost.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above, `fd` is ours alone.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Wakes the thread polling on this waker (now, or at its next poll).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our descriptor. It fails only when the
        // counter is near u64::MAX, i.e. the thread is already due to wake.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Takes the pending wake-ups (the raft thread, before it looks for requests).
    fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking descriptor; nothing
        // pending is EAGAIN, which is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }

    fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

// ---------------------------------------------------------------------------------------
// Frame parsing.

/// How a read round on one connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// The socket has nothing more for now.
    Drained,
    /// The round's budget was used; more may be waiting.
    Budget,
    /// The sender closed the connection between frames.
    Closed,
}

/// A frame larger than the read buffer, read straight into its body.
#[derive(Debug)]
struct LargeFrame {
    len: usize,
    crc: u32,
    /// Zeroed up to its length, filled up to `filled`; it grows to the frame's length
    /// once its first reserve is full.
    body: Vec<u8>,
    filled: usize,
}

impl LargeFrame {
    fn is_whole(&self) -> bool {
        self.filled == self.len
    }

    /// Reads the next part of the body, at most `max` bytes.
    fn read_from(&mut self, r: &mut impl Read, max: usize) -> io::Result<usize> {
        if self.filled == self.body.len() {
            self.body.reserve_exact(self.len - self.body.len());
            self.body.resize(self.len, 0);
        }
        let end = self.body.len().min(self.filled.saturating_add(max));
        let got = r.read(&mut self.body[self.filled..end])?;
        self.filled += got;
        Ok(got)
    }
}

/// Incremental frame parsing for one connection.
#[derive(Debug)]
pub struct FrameReader {
    buf: Box<[u8]>,
    /// Parsed up to here.
    start: usize,
    /// Filled up to here.
    end: usize,
    large: Option<LargeFrame>,
    /// When bytes last arrived, while a frame is unfinished (None between frames).
    progress_at: Option<Instant>,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            buf: vec![0u8; INBOUND_READ_BUFFER_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            large: None,
            progress_at: None,
        }
    }
}

impl FrameReader {
    /// Reads from `r` until it would block, it closes, or `budget` bytes were read, and
    /// hands every whole frame's message to `deliver`, in order.
    pub fn read_from(
        &mut self,
        r: &mut impl Read,
        budget: usize,
        deliver: &mut impl FnMut(Message),
    ) -> Result<ReadEnd, ConnError> {
        let mut read = 0;
        loop {
            self.parse(deliver)?;
            if read >= budget {
                return Ok(ReadEnd::Budget);
            }
            let got = match &mut self.large {
                Some(frame) => frame.read_from(r, budget - read),
                None => {
                    if self.end == self.buf.len() {
                        // Only a frame that fits the buffer is left in it: make room.
                        self.buf.copy_within(self.start..self.end, 0);
                        self.end -= self.start;
                        self.start = 0;
                    }
                    r.read(&mut self.buf[self.end..])
                }
            };
            match got {
                Ok(0) if self.is_between_frames() => return Ok(ReadEnd::Closed),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a frame",
                    )
                    .into())
                }
                Ok(n) => {
                    read += n;
                    if self.large.is_none() {
                        self.end += n;
                    }
                    self.progress_at = Some(Instant::now());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadEnd::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether a frame is unfinished and no byte of it arrived for more than `limit` (a
    /// large frame on a slow link may take longer in all, as long as it keeps coming).
    pub fn stalled(&self, now: Instant, limit: Duration) -> bool {
        self.progress_at
            .is_some_and(|since| now.saturating_duration_since(since) > limit)
    }

    fn is_between_frames(&self) -> bool {
        self.large.is_none() && self.start == self.end
    }

    /// Hands out every whole frame buffered; keeps the start of the next one.
    fn parse(&mut self, deliver: &mut impl FnMut(Message)) -> Result<(), ConnError> {
        if let Some(frame) = &self.large {
            if !frame.is_whole() {
                return Ok(());
            }
            let frame = self.large.take().expect("checked above");
            deliver(decode_frame_body(&Bytes::from(frame.body), frame.crc)?);
        }
        loop {
            let avail = self.end - self.start;
            if avail < FRAME_HEADER_LEN {
                break;
            }
            let header = self.buf[self.start..self.start + FRAME_HEADER_LEN]
                .try_into()
                .expect("a header's length");
            let (len, crc) = decode_frame_header(header)?;
            let body_start = self.start + FRAME_HEADER_LEN;
            if avail - FRAME_HEADER_LEN >= len {
                // Exactly the frame's size: the entries decoded from it share it (and the
                // raft log's cache may keep it a while), so it must not carry slack.
                let body = Bytes::copy_from_slice(&self.buf[body_start..body_start + len]);
                self.start = body_start + len;
                deliver(decode_frame_body(&body, crc)?);
                continue;
            }
            if FRAME_HEADER_LEN + len > self.buf.len() {
                let have = &self.buf[body_start..self.end];
                let mut body = vec![0; len.min(INBOUND_BODY_RESERVE_BYTES).max(have.len())];
                body[..have.len()].copy_from_slice(have);
                self.large = Some(LargeFrame {
                    len,
                    crc,
                    body,
                    filled: have.len(),
                });
                self.start = self.end;
            }
            break;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.large.is_none() {
                self.progress_at = None;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The set.

struct Conn {
    peer: PeerConnection,
    reader: FrameReader,
    /// Poll said readable, or the last round left bytes unread.
    readable: bool,
}

/// The raft thread's inbound connections.
#[derive(Default)]
pub struct InboundSet {
    conns: Vec<Conn>,
    fds: Vec<libc::pollfd>,
}

impl InboundSet {
    /// Takes a connection over; it is read from the next round on.
    pub fn add(&mut self, peer: PeerConnection) {
        if let Err(e) = peer.stream().set_nonblocking(true) {
            peer.close(Some(e.into()));
            return;
        }
        self.conns.push(Conn {
            peer,
            reader: FrameReader::default(),
            // Frames may have arrived before the hand-over.
            readable: true,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Sleeps until a connection is readable, `waker` is woken, or `timeout` passes (at
    /// once when a connection has bytes left from the last round), then takes the
    /// waker's wake-ups: the caller looks for its requests after this.
    pub fn wait(&mut self, waker: &Waker, timeout: Duration) {
        let timeout = if self.conns.iter().any(|c| c.readable) {
            Duration::ZERO
        } else {
            timeout
        };
        self.fds.clear();
        self.fds.push(pollfd(waker.raw_fd()));
        self.fds.extend(
            self.conns
                .iter()
                .map(|c| pollfd(c.peer.stream().as_raw_fd())),
        );
        // Round up, so that a wait for a tick does not return just before it is due.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a live, initialized array of `fds.len()` pollfds.
        let n = unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            // EINTR, or (never with a valid array) another error: the caller's loop comes
            // round again and polls anew.
            return;
        }
        if self.fds[0].revents != 0 {
            waker.clear();
        }
        for (conn, fd) in self.conns.iter_mut().zip(&self.fds[1..]) {
            if fd.revents != 0 {
                conn.readable = true;
            }
        }
    }

    /// Reads the connections found readable, handing every message to `deliver`, and
    /// closes those that ended, failed or stalled.
    pub fn read(&mut self, deliver: &mut impl FnMut(Message)) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.conns.len() {
            match self.conns[i].read_round(now, deliver) {
                Ok(true) => i += 1,
                Ok(false) => self.conns.swap_remove(i).peer.close(None),
                Err(e) => self.conns.swap_remove(i).peer.close(Some(e)),
            }
        }
    }
}

impl Conn {
    /// One round of reading, if poll found the connection readable (or the last round
    /// left bytes). Ok(false): the sender closed it between frames.
    fn read_round(
        &mut self,
        now: Instant,
        deliver: &mut impl FnMut(Message),
    ) -> Result<bool, ConnError> {
        if self.readable {
            let peer = &self.peer;
            // A misrouted message ends the connection: nothing after it is delivered.
            let mut misrouted = None;
            let mut checked = |m: Message| {
                if misrouted.is_none() {
                    match peer.accept_message(&m) {
                        Ok(()) => deliver(m),
                        Err(e) => misrouted = Some(ConnError::from(e)),
                    }
                }
            };
            let mut stream = peer.stream();
            let end = self
                .reader
                .read_from(&mut stream, INBOUND_READ_BUDGET_BYTES, &mut checked);
            if let Some(e) = misrouted {
                return Err(e);
            }
            match end? {
                ReadEnd::Closed => return Ok(false),
                ReadEnd::Budget => {}
                ReadEnd::Drained => self.readable = false,
            }
        }
        if self
            .reader
            .stalled(now, Duration::from_millis(PEER_IO_TIMEOUT_MS))
        {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing more of a frame for {PEER_IO_TIMEOUT_MS} ms"),
            )
            .into());
        }
        Ok(true)
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::wire::encode_frame;
    use crate::consensus::wire::test_messages::big_msg;

    /// A message with an entry of `data_len` bytes, told apart by `i`.
    fn msg(i: u64, data_len: usize) -> Message {
        let mut m = big_msg(1, 2, data_len);
        m.index = i;
        m
    }

    fn frames(msgs: &[Message]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            encode_frame(m, &mut out).unwrap();
        }
        out
    }

    /// Hands out `data[..avail]` at most `chunk` bytes a read, then WouldBlock until
    /// `avail` grows; EOF at the end of `data` once `closed`.
    struct Pieces {
        data: Vec<u8>,
        at: usize,
        avail: usize,
        chunk: usize,
        closed: bool,
    }

    impl Pieces {
        fn new(data: Vec<u8>, chunk: usize, closed: bool) -> Pieces {
            Pieces {
                avail: data.len(),
                data,
                at: 0,
                chunk,
                closed,
            }
        }
    }

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.at == self.avail {
                return if self.closed && self.at == self.data.len() {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = (self.avail - self.at).min(out.len()).min(self.chunk);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn read_all(r: &mut FrameReader, p: &mut Pieces, budget: usize) -> (Vec<Message>, ReadEnd) {
        let mut got = Vec::new();
        let end = r.read_from(p, budget, &mut |m| got.push(m)).unwrap();
        (got, end)
    }

    #[test]
    fn frames_small_and_large_arrive_whole_however_the_bytes_are_cut() {
        let sizes = [
            0,
            10,
            1000,
            INBOUND_READ_BUFFER_BYTES - 200,
            INBOUND_READ_BUFFER_BYTES,
            300_000,
            5,
        ];
        let msgs: Vec<Message> = (0..).zip(sizes).map(|(i, n)| msg(i, n)).collect();
        let data = frames(&msgs);
        for chunk in [1usize, 3, 7, 4096, 65_537, data.len()] {
            let mut p = Pieces::new(data.clone(), chunk, true);
            let mut r = FrameReader::default();
            let (got, end) = read_all(&mut r, &mut p, usize::MAX);
            assert_eq!(end, ReadEnd::Closed);
            assert_eq!(got, msgs, "read {chunk} bytes at a time");
        }
    }

    #[test]
    fn a_partial_frame_waits_for_the_rest_and_times_out_when_it_stalls() {
        let first_end = frames(&[msg(1, 100)]).len();
        let mut p = Pieces::new(frames(&[msg(1, 100), msg(2, 200_000)]), usize::MAX, false);
        p.avail = first_end + 5;
        let mut r = FrameReader::default();
        let (got, end) = read_all(&mut r, &mut p, usize::MAX);
        assert_eq!((got, end), (vec![msg(1, 100)], ReadEnd::Drained));
        let now = Instant::now();
        let limit = Duration::from_millis(50);
        assert!(!r.stalled(now, limit));
        assert!(
            r.stalled(now + Duration::from_millis(60), limit),
            "a cut header stalls"
        );
        std::thread::sleep(Duration::from_millis(60));
        p.avail = first_end + 70_000;
        let (got, end) = read_all(&mut r, &mut p, usize::MAX);
        assert_eq!((got.len(), end), (0, ReadEnd::Drained));
        let now = Instant::now();
        assert!(
            !r.stalled(now, limit),
            "more of the frame came: not stalled"
        );
        assert!(
            r.stalled(now + Duration::from_millis(60), limit),
            "a cut body stalls"
        );
        p.avail = p.data.len();
        let (got, end) = read_all(&mut r, &mut p, usize::MAX);
        assert_eq!((got, end), (vec![msg(2, 200_000)], ReadEnd::Drained));
        assert!(
            !r.stalled(now + Duration::from_secs(3600), limit),
            "between frames"
        );
    }

    #[test]
    fn the_budget_ends_a_round_and_the_next_round_goes_on() {
        let msgs: Vec<Message> = (0..40).map(|i| msg(i, 10_000)).collect();
        let mut p = Pieces::new(frames(&msgs), 16 << 10, false);
        let mut r = FrameReader::default();
        let (first, end) = read_all(&mut r, &mut p, 100_000);
        assert_eq!(end, ReadEnd::Budget);
        assert!(!first.is_empty() && first.len() < 40, "{}", first.len());
        let (rest, end) = read_all(&mut r, &mut p, usize::MAX);
        assert_eq!(end, ReadEnd::Drained);
        assert_eq!([first, rest].concat(), msgs);
        // A large frame's reads keep to the budget too.
        let mut p = Pieces::new(frames(&[msg(1, 300_000)]), usize::MAX, false);
        let mut r = FrameReader::default();
        let (got, end) = read_all(&mut r, &mut p, 100_000);
        assert_eq!((got.len(), end, p.at), (0, ReadEnd::Budget, 100_000));
        let (got, end) = read_all(&mut r, &mut p, usize::MAX);
        assert_eq!((got, end), (vec![msg(1, 300_000)], ReadEnd::Drained));
    }

    #[test]
    fn bad_frames_and_cut_connections_are_errors() {
        // Closed inside a frame.
        let mut data = frames(&[msg(1, 100)]);
        let mut p = Pieces::new(data[..data.len() - 1].to_vec(), usize::MAX, true);
        let err = FrameReader::default()
            .read_from(&mut p, usize::MAX, &mut |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("inside a frame"), "{err}");
        // A flipped body byte fails its checksum.
        *data.last_mut().unwrap() ^= 1;
        let mut p = Pieces::new(data, usize::MAX, true);
        assert!(matches!(
            FrameReader::default().read_from(&mut p, usize::MAX, &mut |_| {}),
            Err(ConnError::Frame(_))
        ));
        // A length past the bound is refused from the header alone.
        let mut p = Pieces::new(vec![0xff; 8], usize::MAX, false);
        assert!(matches!(
            FrameReader::default().read_from(&mut p, usize::MAX, &mut |_| {}),
            Err(ConnError::Frame(_))
        ));
    }

    #[test]
    fn the_waker_wakes_a_poll_given_before_or_during_it() {
        let waker = std::sync::Arc::new(Waker::new().unwrap());
        let mut set = InboundSet::default();
        // Given before: the poll returns at once.
        waker.wake();
        let t = Instant::now();
        set.wait(&waker, Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5));
        // Taken: the next poll sleeps its timeout.
        let t = Instant::now();
        set.wait(&waker, Duration::from_millis(30));
        assert!(t.elapsed() >= Duration::from_millis(30));
        // Given during.
        let w = std::sync::Arc::clone(&waker);
        let th = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            w.wake();
        });
        let t = Instant::now();
        set.wait(&waker, Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5));
        th.join().unwrap();
    }
}
