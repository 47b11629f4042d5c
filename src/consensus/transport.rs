//! Peer transport: raft [`Message`]s between cluster nodes over plain TCP, blocking, one
//! thread per connection.
//!
//! Every connection goes one way, from the sender's outbound thread to the receiver's
//! listener (a pair of nodes uses two connections). It opens with a hello (a magic, the
//! sender's raft id, the cluster id, and where the sender listens: see
//! [`Transport::learn`]), then carries frames, one raft message each (both are
//! laid out in [`crate::consensus::wire`]). A bad hello or
//! frame ends that connection only (logged and counted). The receiver never writes.
//!
//! Sending never blocks the caller (the raft thread): [`Transport::send_all`] writes a peer's
//! messages straight into its socket with one non-blocking write when the peer's outbound
//! thread is idle with nothing queued and they are small (at most
//! [`PEER_DIRECT_WRITE_BYTES_MAX`], never a snapshot), which spares a thread wake-up per
//! message in steady replication; otherwise (or when the socket takes nothing) it puts them
//! on the peer's bounded queue, or drops and counts them when the queue is full or the peer
//! is unknown; Raft retransmits what is lost. A direct write the socket took only part of
//! leaves the rest to the outbound thread, which writes it before anything else, so frames
//! never interleave. Each peer's outbound thread connects (with a
//! timeout), writes the hello, gathers whatever is queued into few writes, and after any
//! error reconnects with bounded exponential backoff, discarding the messages queued while
//! the peer could not be reached. Failures are reported back for `RawNode::report_unreachable`
//! ([`Transport::take_unreachable`]) and snapshot outcomes for `RawNode::report_snapshot`
//! ([`Transport::take_snapshot_reports`]).
//!
//! Inbound connections each get a short-lived thread that reads the hello and hands the
//! connection to the callback given at start, as a [`PeerConnection`]: the raft thread reads
//! the frames itself (`consensus::inbound`), so a message wakes only the thread that steps
//! it. The newest connection from a node id replaces older ones (the older is shut down),
//! so a peer that vanished without closing its socket costs at most one idle socket.
//!
//! This module decides nothing about Raft: it does not look inside messages beyond routing
//! (`to`) and sanity (`from`, `to` match the connection), keeps no durable state, and never
//! retries a message itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use raft::SnapshotStatus;

use crate::consensus::wire::{
    check_route, decode_hello, decode_hello_addr, encode_frame, encode_hello, FrameError, Gather,
    FRAME_HEADER_LEN, HELLO_LEN, HELLO_MAGIC,
};
use crate::limits::{
    PEER_BACKOFF_MAX_MS, PEER_BACKOFF_MIN_MS, PEER_BATCH_BYTES_MAX, PEER_CONNECT_TIMEOUT_MS,
    PEER_DIRECT_WRITE_BYTES_MAX, PEER_HELLO_TIMEOUT_MS, PEER_INBOUND_CONNECTIONS_MAX,
    PEER_IO_TIMEOUT_MS, PEER_QUEUE_DEPTH_MAX,
};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 100;
/// An outbound buffer that grew past this (one huge message) is released after use.
const OUTBOUND_BUFFER_KEEP_BYTES: usize = 2 * PEER_BATCH_BYTES_MAX;
/// Called with every inbound connection whose hello was accepted. It runs on that
/// connection's hello thread and must not block indefinitely, or [`Transport::shutdown`]
/// waits for it; dropping the connection closes it.
pub type InboundFn = Box<dyn Fn(PeerConnection) + Send + Sync>;

/// What ended an inbound connection.
#[derive(Debug)]
pub enum ConnError {
    Io(io::Error),
    Frame(FrameError),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "i/o: {e}"),
            ConnError::Frame(e) => e.fmt(f),
        }
    }
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        ConnError::Io(e)
    }
}

impl From<FrameError> for ConnError {
    fn from(e: FrameError) -> Self {
        ConnError::Frame(e)
    }
}

fn is_snapshot(msg: &Message) -> bool {
    msg.get_msg_type() == MessageType::MsgSnapshot
}

// ---------------------------------------------------------------------------------------
// Shared state and counters.

/// Counters since start. `dropped_*` messages never reached the peer's socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages written to a peer socket.
    pub sent: u64,
    /// Dropped by `send` because the peer's queue held [`PEER_QUEUE_DEPTH_MAX`] messages.
    pub dropped_queue_full: u64,
    /// Dropped by `send` because no address is known for `msg.to`.
    pub dropped_unknown_peer: u64,
    /// Dropped by an outbound thread: queued while the peer was unreachable, lost with a
    /// failed write, too large to frame, or still queued when the peer was removed.
    pub dropped_unsent: u64,
    /// Connections established after an earlier attempt or connection to that peer failed.
    pub reconnects: u64,
    /// Connection attempts (connect + hello) that failed.
    pub connect_failures: u64,
    /// Messages received from peers and checked (routing) by their reader.
    pub received: u64,
    /// Inbound connections refused: bad or foreign hello, or over the connection limit.
    pub refused_connections: u64,
    /// Inbound connections ended by a bad frame.
    pub bad_frames: u64,
}

impl TransportStats {
    /// Every message dropped, for whatever reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_unknown_peer + self.dropped_unsent
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_unknown_peer: AtomicU64,
    dropped_unsent: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    received: AtomicU64,
    refused_connections: AtomicU64,
    bad_frames: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// State every thread of one transport shares.
struct Shared {
    my_id: u64,
    cluster_id: u64,
    /// Where the others reach this node, said in every hello.
    advertised: String,
    stopping: AtomicBool,
    counters: Counters,
    /// Threads started and not yet finished (tests check it reaches 0 after shutdown).
    threads_alive: AtomicUsize,
    unreachable: Mutex<BTreeSet<u64>>,
    /// Only the latest outcome per peer matters to Raft, so this stays small.
    snapshot_reports: Mutex<BTreeMap<u64, SnapshotStatus>>,
}

impl Shared {
    fn report_unreachable(&self, id: u64) {
        lock(&self.unreachable).insert(id);
    }

    fn report_snapshot(&self, id: u64, status: SnapshotStatus) {
        lock(&self.snapshot_reports).insert(id, status);
    }

    /// Counts a message `send` could not queue (in `counter`); a snapshot is reported failed.
    fn drop_on_send(&self, counter: &AtomicU64, msg: &Message) {
        bump(counter, 1);
        log::trace!("raft transport: dropped a message for node {}", msg.to);
        if is_snapshot(msg) {
            self.report_snapshot(msg.to, SnapshotStatus::Failure);
        }
    }

    /// Counts messages that will never be sent and reports a lost snapshot as failed.
    fn discard(&self, to: u64, dropped: u64, had_snapshot: bool) {
        bump(&self.counters.dropped_unsent, dropped);
        if had_snapshot {
            self.report_snapshot(to, SnapshotStatus::Failure);
        }
    }
}

/// Locks, ignoring poisoning: every critical section here leaves the data consistent, and a
/// panicking inbound callback must not take the whole transport down with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a thread as alive from before it is spawned until its closure ends (or is dropped
/// because the spawn failed).
struct ThreadToken(Arc<Shared>);

impl ThreadToken {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.threads_alive.fetch_add(1, Ordering::SeqCst);
        ThreadToken(Arc::clone(shared))
    }
}

impl Drop for ThreadToken {
    fn drop(&mut self) {
        self.0.threads_alive.fetch_sub(1, Ordering::SeqCst);
    }
}

fn spawn_counted<T, F>(shared: &Arc<Shared>, name: String, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let token = ThreadToken::new(shared);
    thread::Builder::new().name(name).spawn(move || {
        let _token = token;
        f()
    })
}

// ---------------------------------------------------------------------------------------
// The transport.

/// A running peer transport. Dropping it stops it as [`Transport::shutdown`] does.
pub struct Transport {
    shared: Arc<Shared>,
    inbound: Arc<Inbound>,
    local_addr: SocketAddr,
    accept_thread: Option<JoinHandle<Vec<JoinHandle<()>>>>,
    peers: Mutex<HashMap<u64, PeerHandle>>,
    /// Peer addresses learned from the peers' own hellos (see [`Transport::learn`]).
    learned: Mutex<HashMap<u64, String>>,
    /// Threads of removed or replaced peers, joined when they finish or at shutdown, so
    /// `remove_peer` never waits for a connect in progress.
    retired: Mutex<Vec<JoinHandle<()>>>,
}

impl Transport {
    /// Binds `listen_addr` (port 0 picks one, see [`Transport::local_addr`]) and starts
    /// accepting peers of cluster `cluster_id`; every message received goes to `inbound`.
    /// `advertised` is where the others reach this node (its membership entry), said in
    /// every hello; empty: the address bound.
    pub fn start(
        listen_addr: &str,
        my_id: u64,
        cluster_id: u64,
        advertised: &str,
        inbound: InboundFn,
    ) -> io::Result<Transport> {
        let listener = TcpListener::bind(listen_addr)?;
        let local_addr = listener.local_addr()?;
        let advertised = if advertised.is_empty() {
            local_addr.to_string()
        } else {
            advertised.to_string()
        };
        let shared = Arc::new(Shared {
            my_id,
            cluster_id,
            advertised,
            stopping: AtomicBool::new(false),
            counters: Counters::default(),
            threads_alive: AtomicUsize::new(0),
            unreachable: Mutex::new(BTreeSet::new()),
            snapshot_reports: Mutex::new(BTreeMap::new()),
        });
        let inbound = Arc::new(Inbound {
            shared: Arc::clone(&shared),
            deliver: inbound,
            conns: Mutex::new(HashMap::new()),
        });
        let accept_inbound = Arc::clone(&inbound);
        let accept_thread = spawn_counted(&shared, "raft-accept".into(), move || {
            run_accept(listener, accept_inbound)
        })?;
        log::info!("raft transport of node {my_id:x} listening on {local_addr}");
        Ok(Transport {
            shared,
            inbound,
            local_addr,
            accept_thread: Some(accept_thread),
            peers: Mutex::new(HashMap::new()),
            learned: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sets (or changes) the address of peer `id`. A new peer gets its outbound thread; a
    /// changed address makes the thread drop its connection and connect to the new one,
    /// keeping what is queued. The address is resolved at every connect.
    pub fn set_peer(&self, id: u64, addr: &str) -> io::Result<()> {
        // What the peer said of itself in a hello is newer than any table entry: a table
        // replayed or restored from before a move still names the old address.
        let learned = lock(&self.learned).get(&id).cloned();
        let addr = learned.as_deref().unwrap_or(addr);
        self.reap_retired();
        let mut peers = lock(&self.peers);
        if let Some(handle) = peers.get(&id) {
            handle.peer.set_addr(addr);
            return Ok(());
        }
        let peer = Arc::new(Peer::new(id, addr));
        let (thread_peer, thread_shared) = (Arc::clone(&peer), Arc::clone(&self.shared));
        let thread = spawn_counted(&self.shared, format!("raft-out-{id}"), move || {
            run_outbound(&thread_peer, &thread_shared)
        })?;
        peers.insert(id, PeerHandle { peer, thread });
        Ok(())
    }

    /// Remembers where peer `id` says it listens (from a hello it sent here) and sends to
    /// it there from now on, also when the membership table names another address (one
    /// from before the peer moved) or none (a node that has not applied the peer's entry
    /// yet: a joiner, or a node restarted behind). So a node can always answer a peer that
    /// reached it. `remote` is where the connection came from: a peer that listens on a
    /// wildcard address is reached at that host.
    pub fn learn(&self, id: u64, said: &str, remote: SocketAddr) -> io::Result<()> {
        let addr = match said.parse::<SocketAddr>() {
            Ok(sa) if sa.ip().is_unspecified() => {
                SocketAddr::new(remote.ip(), sa.port()).to_string()
            }
            _ => said.to_string(),
        };
        let before = lock(&self.learned).insert(id, addr.clone());
        if before.as_deref() != Some(addr.as_str()) {
            log::debug!("raft transport: node {id:x} says it listens on {addr}");
        }
        self.set_peer(id, &addr)
    }

    /// Forgets peer `id`: its thread stops (without waiting here) and its queue is dropped.
    pub fn remove_peer(&self, id: u64) {
        lock(&self.learned).remove(&id);
        let removed = lock(&self.peers).remove(&id);
        if let Some(handle) = removed {
            handle.peer.stop();
            lock(&self.retired).push(handle.thread);
        }
        self.reap_retired();
    }

    /// Queues `msg` for `msg.to`. Never blocks: when the peer is unknown or its queue is
    /// full the message is dropped and counted (a dropped snapshot is reported as failed).
    pub fn send(&self, msg: Message) {
        self.send_all(std::iter::once(msg));
    }

    /// Sends every message of `msgs` (e.g. a `Ready`'s messages), in order per peer: each
    /// peer's share is written to its socket at once when possible, queued otherwise (see
    /// the module doc). Never blocks.
    pub fn send_all(&self, msgs: impl IntoIterator<Item = Message>) {
        // Per peer, in order; a Ready addresses few peers, so a short list beats a map.
        let mut by_peer: Vec<(u64, Vec<Message>)> = Vec::new();
        for msg in msgs {
            match by_peer.iter_mut().find(|(to, _)| *to == msg.to) {
                Some((_, batch)) => batch.push(msg),
                None => by_peer.push((msg.to, vec![msg])),
            }
        }
        let peers = lock(&self.peers);
        for (to, batch) in by_peer {
            match peers.get(&to) {
                Some(handle) => handle.peer.send_batch(batch, &self.shared),
                None => {
                    for msg in batch {
                        self.shared
                            .drop_on_send(&self.shared.counters.dropped_unknown_peer, &msg);
                    }
                }
            }
        }
    }

    /// Peers that could not be reached (connect or write failed) since the last call, for
    /// `RawNode::report_unreachable`.
    pub fn take_unreachable(&self) -> Vec<u64> {
        std::mem::take(&mut *lock(&self.shared.unreachable))
            .into_iter()
            .collect()
    }

    /// Outcome of snapshot messages since the last call, the latest per peer, for
    /// `RawNode::report_snapshot`: `Finish` once a `MsgSnapshot` was written to the peer's
    /// socket, `Failure` when it was dropped anywhere. (Written is not applied; Raft learns
    /// the rest from the follower's reply.)
    pub fn take_snapshot_reports(&self) -> Vec<(u64, SnapshotStatus)> {
        std::mem::take(&mut *lock(&self.shared.snapshot_reports))
            .into_iter()
            .collect()
    }

    pub fn stats(&self) -> TransportStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TransportStats {
            sent: get(&c.sent),
            dropped_queue_full: get(&c.dropped_queue_full),
            dropped_unknown_peer: get(&c.dropped_unknown_peer),
            dropped_unsent: get(&c.dropped_unsent),
            reconnects: get(&c.reconnects),
            connect_failures: get(&c.connect_failures),
            received: get(&c.received),
            refused_connections: get(&c.refused_connections),
            bad_frames: get(&c.bad_frames),
        }
    }

    /// Stops every thread and joins it. Waits at most for a connect in progress
    /// ([`PEER_CONNECT_TIMEOUT_MS`]) and for inbound callbacks to return.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(accept_thread) = self.accept_thread.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Tell every outbound thread first so they wind down while we wait for the rest.
        let peers: Vec<PeerHandle> = lock(&self.peers).drain().map(|(_, h)| h).collect();
        for handle in &peers {
            handle.peer.stop();
        }
        wake_listener(self.local_addr);
        let greeters = accept_thread.join().unwrap_or_else(|_| {
            log::error!("raft transport: accept thread panicked");
            Vec::new()
        });
        // No connection comes in after the accept thread ended: end every one, those still
        // saying hello and those handed over (their reader then reads the end).
        for conn in lock(&self.inbound.conns).values() {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        let retired = std::mem::take(&mut *lock(&self.retired));
        let threads = greeters
            .into_iter()
            .chain(peers.into_iter().map(|h| h.thread))
            .chain(retired);
        for thread in threads {
            if thread.join().is_err() {
                log::error!("raft transport: a peer thread panicked");
            }
        }
        log::info!("raft transport of node {:x} stopped", self.shared.my_id);
    }

    fn reap_retired(&self) {
        let mut retired = lock(&self.retired);
        let (done, running): (Vec<_>, Vec<_>) = retired.drain(..).partition(|t| t.is_finished());
        *retired = running;
        drop(retired);
        for t in done {
            let _ = t.join();
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Unblocks the accept thread's `accept` by connecting to the listener once.
fn wake_listener(local_addr: SocketAddr) {
    let mut addr = local_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let timeout = Duration::from_millis(PEER_CONNECT_TIMEOUT_MS);
    if let Err(e) = TcpStream::connect_timeout(&addr, timeout) {
        log::error!("raft transport: cannot wake the listener on {addr}: {e}");
    }
}

// ---------------------------------------------------------------------------------------
// Outbound: one thread per peer.

struct PeerHandle {
    peer: Arc<Peer>,
    thread: JoinHandle<()>,
}

/// One peer as seen by `send` and by its outbound thread.
struct Peer {
    id: u64,
    state: Mutex<PeerState>,
    /// Signalled on a new message, an address change and stop.
    wake: Condvar,
}

struct PeerState {
    queue: VecDeque<Message>,
    addr: String,
    addr_changed: bool,
    stop: bool,
    /// A clone of the live connection, so stop and address changes can interrupt a write,
    /// and the raft thread can write to it directly (only while `busy` is false).
    conn: Option<TcpStream>,
    /// The outbound thread took a batch and is writing it: the socket's byte stream is its
    /// own until it says it is done.
    busy: bool,
    /// The unwritten rest of a direct write (part of a frame, then whole frames), which the
    /// outbound thread writes first; and how many messages it finishes.
    partial: Vec<u8>,
    partial_messages: u64,
    /// Reused buffer for direct writes.
    direct_buf: Vec<u8>,
}

/// What the outbound thread should do next.
enum Next {
    Stop,
    Reconnect,
    Send,
}

impl Peer {
    fn new(id: u64, addr: &str) -> Self {
        Peer {
            id,
            state: Mutex::new(PeerState {
                queue: VecDeque::new(),
                addr: addr.to_string(),
                addr_changed: false,
                stop: false,
                conn: None,
                busy: false,
                partial: Vec::new(),
                partial_messages: 0,
                direct_buf: Vec::new(),
            }),
            wake: Condvar::new(),
        }
    }

    /// Writes `batch` to the socket now when the outbound thread is idle with nothing
    /// queued (see `write_direct`); queues what is left, dropping what does not fit (or
    /// everything when stopping); wakes the outbound thread only when it has work.
    fn send_batch(&self, batch: Vec<Message>, shared: &Shared) {
        let mut st = lock(&self.state);
        let mut batch = batch;
        if write_direct(&mut st, &mut batch, shared) {
            if st.partial.is_empty() {
                return;
            }
            drop(st);
            self.wake.notify_one();
            return;
        }
        let mut queued = false;
        for msg in batch {
            if st.stop || st.queue.len() >= PEER_QUEUE_DEPTH_MAX {
                shared.drop_on_send(&shared.counters.dropped_queue_full, &msg);
            } else {
                st.queue.push_back(msg);
                queued = true;
            }
        }
        drop(st);
        if queued {
            self.wake.notify_one();
        }
    }

    fn set_addr(&self, addr: &str) {
        let mut st = lock(&self.state);
        if st.addr == addr {
            return;
        }
        log::info!("raft transport: node {:x} moves to {addr}", self.id);
        st.addr = addr.to_string();
        st.addr_changed = true;
        shutdown_conn(&st);
        drop(st);
        self.wake.notify_one();
    }

    fn stop(&self) {
        let mut st = lock(&self.state);
        st.stop = true;
        shutdown_conn(&st);
        drop(st);
        self.wake.notify_one();
    }

    /// The address to connect to, or None when stopping.
    fn next_addr(&self) -> Option<String> {
        let mut st = lock(&self.state);
        st.addr_changed = false;
        (!st.stop).then(|| st.addr.clone())
    }

    /// The live connection (None: none). Either way the byte stream starts afresh: a rest
    /// of a direct write belonged to the old connection and is dropped (counted).
    fn set_conn(&self, conn: Option<TcpStream>, shared: &Shared) {
        let mut st = lock(&self.state);
        st.conn = conn;
        st.busy = false;
        if !st.partial.is_empty() {
            shared.discard(self.id, st.partial_messages, false);
            st.partial.clear();
            st.partial_messages = 0;
        }
        if st.stop || st.addr_changed {
            // Set while we were connecting; make the new connection fail fast too.
            shutdown_conn(&st);
        }
    }

    /// Waits until there is something to send, or a reason to stop or reconnect.
    fn wait_next(&self) -> Next {
        let mut st = lock(&self.state);
        loop {
            if st.stop {
                return Next::Stop;
            }
            if st.addr_changed {
                return Next::Reconnect;
            }
            if !st.queue.is_empty() || !st.partial.is_empty() {
                return Next::Send;
            }
            st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Stop or Reconnect if one was asked for.
    fn interrupted(&self) -> Option<PumpEnd> {
        let st = lock(&self.state);
        if st.stop {
            Some(PumpEnd::Stop)
        } else if st.addr_changed {
            Some(PumpEnd::Reconnect)
        } else {
            None
        }
    }

    /// Moves everything queued into `into` (which must be empty), without allocating.
    fn take_queue(&self, into: &mut VecDeque<Message>) {
        std::mem::swap(&mut lock(&self.state).queue, into);
    }

    /// Takes the socket for a write: the rest of a direct write is appended to `out` (it
    /// goes first) and what is queued moved into `into`; answers how many messages that rest
    /// finishes. Until `done_writing`, the raft thread does not write to the socket.
    fn take_for_write(&self, into: &mut VecDeque<Message>, out: &mut Gather) -> u64 {
        let mut st = lock(&self.state);
        st.busy = true;
        std::mem::swap(&mut st.queue, into);
        out.extend_from_slice(&st.partial);
        st.partial.clear();
        std::mem::take(&mut st.partial_messages)
    }

    fn done_writing(&self) {
        lock(&self.state).busy = false;
    }

    /// Waits `backoff`, or less if stopped or moved. Returns false when stopping.
    fn wait_backoff(&self, backoff: Duration) -> bool {
        let deadline = Instant::now() + backoff;
        let mut st = lock(&self.state);
        loop {
            if st.stop {
                return false;
            }
            let now = Instant::now();
            if st.addr_changed || now >= deadline {
                return true;
            }
            st = self
                .wake
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Drops what is queued (the peer cannot be reached, or it is being removed).
    fn discard_queue(&self, shared: &Shared) {
        let mut dropped = VecDeque::new();
        self.take_queue(&mut dropped);
        if !dropped.is_empty() {
            let snapshot = dropped.iter().any(is_snapshot);
            shared.discard(self.id, dropped.len() as u64, snapshot);
        }
    }
}

/// Writes as much of `batch` as the socket takes now, from the caller's thread, when that
/// cannot interleave with the outbound thread: connected, not `busy`, nothing queued or
/// left over, no snapshot, and at most [`PEER_DIRECT_WRITE_BYTES_MAX`] encoded. Answers
/// whether it wrote (then `batch` is empty, and any rest is in `st.partial` for the outbound
/// thread); false leaves `batch` whole, for the queue. A write error is left for the
/// outbound thread to find on its own write.
fn write_direct(st: &mut PeerState, batch: &mut Vec<Message>, shared: &Shared) -> bool {
    let idle = !st.busy && !st.stop && !st.addr_changed;
    if !idle || st.conn.is_none() || !st.queue.is_empty() || !st.partial.is_empty() {
        return false;
    }
    if batch.iter().any(is_snapshot) {
        return false;
    }
    // Sized before anything is encoded: a large batch (catch-up appends) goes to the
    // outbound thread without being encoded twice.
    let bytes: usize = batch
        .iter()
        .map(|m| FRAME_HEADER_LEN + m.compute_size() as usize)
        .sum();
    if bytes > PEER_DIRECT_WRITE_BYTES_MAX {
        return false;
    }
    let mut buf = std::mem::take(&mut st.direct_buf);
    buf.clear();
    let mut count = 0u64;
    let mut fits = true;
    for msg in batch.iter() {
        if encode_frame(msg, &mut buf).is_err() {
            fits = false;
            break;
        }
        count += 1;
    }
    let written = match (&st.conn, fits) {
        (Some(conn), true) => send_nonblocking(conn, &buf),
        _ => 0,
    };
    let done = written > 0;
    if done {
        batch.clear();
        if written < buf.len() {
            st.partial.extend_from_slice(&buf[written..]);
            st.partial_messages = count;
        } else {
            bump(&shared.counters.sent, count);
        }
    }
    if buf.capacity() <= OUTBOUND_BUFFER_KEEP_BYTES {
        st.direct_buf = buf;
    }
    done
}

/// One non-blocking write (MSG_DONTWAIT, and no SIGPIPE): the bytes the socket took, 0 when
/// it took none or failed.
fn send_nonblocking(conn: &TcpStream, buf: &[u8]) -> usize {
    // SAFETY: `buf` is valid for its length and the descriptor is owned by `conn`.
    let n = unsafe {
        libc::send(
            conn.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(n).unwrap_or(0)
}

fn shutdown_conn(st: &PeerState) {
    if let Some(conn) = &st.conn {
        let _ = conn.shutdown(Shutdown::Both);
    }
}

/// How a connection's pump loop ended.
enum PumpEnd {
    Stop,
    Reconnect,
    Failed { sent_any: bool, error: io::Error },
}

fn run_outbound(peer: &Peer, shared: &Shared) {
    let id = peer.id;
    let mut backoff_ms = PEER_BACKOFF_MIN_MS;
    let mut attempted = false;
    let mut failing = false;
    let mut out = Outbound::new(id);
    while let Some(addr) = peer.next_addr() {
        let mut connected_for = Duration::ZERO;
        let end = match connect_peer(&addr, shared) {
            Ok(stream) => {
                let began = Instant::now();
                if attempted {
                    bump(&shared.counters.reconnects, 1);
                }
                if failing {
                    log::info!("raft transport: connected to node {id:x} at {addr}");
                    failing = false;
                }
                let clone = stream.try_clone().ok();
                peer.set_conn(clone, shared);
                let end = out.pump(peer, shared, stream);
                peer.set_conn(None, shared);
                connected_for = began.elapsed();
                end
            }
            Err(error) => {
                bump(&shared.counters.connect_failures, 1);
                PumpEnd::Failed {
                    sent_any: false,
                    error,
                }
            }
        };
        attempted = true;
        match end {
            PumpEnd::Stop => break,
            PumpEnd::Reconnect => {
                backoff_ms = PEER_BACKOFF_MIN_MS;
                continue;
            }
            PumpEnd::Failed { sent_any, error } => {
                // A connection that carried messages a while was good: reconnect at once. One
                // the peer closes right after the first write (it refuses us: a stale
                // address, another cluster) backs off like a failed connect.
                if sent_any && connected_for >= Duration::from_millis(PEER_BACKOFF_MAX_MS) {
                    backoff_ms = PEER_BACKOFF_MIN_MS;
                }
                if failing {
                    log::debug!("raft transport: node {id:x} at {addr} still unreachable: {error}");
                } else {
                    log::warn!("raft transport: node {id:x} at {addr} unreachable: {error}");
                }
                failing = true;
                shared.report_unreachable(id);
                peer.discard_queue(shared);
            }
        }
        if !peer.wait_backoff(Duration::from_millis(backoff_ms)) {
            break;
        }
        backoff_ms = (backoff_ms * 2).min(PEER_BACKOFF_MAX_MS);
    }
    peer.discard_queue(shared);
}

/// Connects, sets timeouts and writes the hello.
fn connect_peer(addr: &str, shared: &Shared) -> io::Result<TcpStream> {
    let timeout = Duration::from_millis(PEER_CONNECT_TIMEOUT_MS);
    let mut last_error = io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{addr} resolves to no address"),
    );
    // Resolution of a host name has no timeout in std; peers are normally given as IPs.
    for sock_addr in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&sock_addr, timeout) {
            Ok(mut stream) => {
                let io_timeout = Some(Duration::from_millis(PEER_IO_TIMEOUT_MS));
                stream.set_nodelay(true)?;
                stream.set_write_timeout(io_timeout)?;
                stream.set_read_timeout(io_timeout)?;
                stream.write_all(&encode_hello(
                    shared.my_id,
                    shared.cluster_id,
                    &shared.advertised,
                ))?;
                return Ok(stream);
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// The outbound thread's reusable buffers.
struct Outbound {
    id: u64,
    batch: VecDeque<Message>,
    out: Gather,
}

/// Messages encoded into the write buffer but not yet written.
#[derive(Default)]
struct Pending {
    count: u64,
    snapshot: bool,
}

impl Outbound {
    fn new(id: u64) -> Self {
        Outbound {
            id,
            batch: VecDeque::new(),
            out: Gather::default(),
        }
    }

    /// Sends queued messages on `stream` until stopped, moved, or an error.
    fn pump(&mut self, peer: &Peer, shared: &Shared, mut stream: TcpStream) -> PumpEnd {
        let mut sent_any = false;
        loop {
            match peer.wait_next() {
                Next::Stop => return PumpEnd::Stop,
                Next::Reconnect => return PumpEnd::Reconnect,
                Next::Send => {}
            }
            // Check before taking the batch: the receiver may have gone away while we were
            // idle, and a write into a dead connection can still "succeed" once.
            if let Err(error) = check_open(&stream) {
                return PumpEnd::Failed { sent_any, error };
            }
            self.out.clear();
            let partial_messages = peer.take_for_write(&mut self.batch, &mut self.out);
            let written = self.write_batch(shared, &mut stream, partial_messages);
            // Failed or not, the thread is done with the socket for now (after a failure the
            // connection is dropped before the raft thread could write to it again).
            if let Err(error) = written {
                // A write cut short by stop or an address change is not the peer's fault.
                return peer
                    .interrupted()
                    .unwrap_or(PumpEnd::Failed { sent_any, error });
            }
            peer.done_writing();
            sent_any = true;
        }
    }

    /// Encodes and writes `self.batch` after what `self.out` already holds (the rest of a
    /// direct write, finishing `partial_messages`), one write per [`PEER_BATCH_BYTES_MAX`]
    /// gathered. On error every message not yet written counts as dropped.
    fn write_batch(
        &mut self,
        shared: &Shared,
        stream: &mut TcpStream,
        partial_messages: u64,
    ) -> io::Result<()> {
        let mut pending = Pending {
            count: partial_messages,
            snapshot: false,
        };
        let mut result = Ok(());
        while let Some(msg) = self.batch.pop_front() {
            self.encode(shared, msg, &mut pending);
            if self.out.len() >= PEER_BATCH_BYTES_MAX {
                result = self.flush(shared, stream, &mut pending);
                if result.is_err() {
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.flush(shared, stream, &mut pending);
        }
        if result.is_err() {
            let snapshot = pending.snapshot || self.batch.iter().any(is_snapshot);
            let dropped = pending.count + self.batch.len() as u64;
            self.batch.clear();
            shared.discard(self.id, dropped, snapshot);
        }
        if self.out.capacity() > OUTBOUND_BUFFER_KEEP_BYTES {
            self.out = Gather::default();
        }
        result
    }

    fn encode(&mut self, shared: &Shared, msg: Message, pending: &mut Pending) {
        let (msg_type, snapshot) = (msg.get_msg_type(), is_snapshot(&msg));
        match self.out.push_frame(msg) {
            Ok(()) => {
                pending.count += 1;
                pending.snapshot |= snapshot;
            }
            Err(e) => {
                log::error!(
                    "raft transport: dropping a {msg_type:?} for node {}: {e}",
                    self.id
                );
                shared.discard(self.id, 1, snapshot);
            }
        }
    }

    fn flush(
        &mut self,
        shared: &Shared,
        stream: &mut TcpStream,
        pending: &mut Pending,
    ) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.out.write_to(stream)?;
        bump(&shared.counters.sent, pending.count);
        if pending.snapshot {
            shared.report_snapshot(self.id, SnapshotStatus::Finish);
        }
        *pending = Pending::default();
        Ok(())
    }
}

/// Fails when the receiver closed or reset the connection. The receiver never writes, so
/// anything readable means the connection is over.
fn check_open(stream: &TcpStream) -> io::Result<()> {
    let mut byte = [0u8; 1];
    // One non-blocking peek (MSG_DONTWAIT) rather than switching the socket to non-blocking
    // and back: this runs before every batch, so it is three syscalls against one.
    // SAFETY: the buffer is valid for one byte and the descriptor is owned by `stream`.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            byte.as_mut_ptr().cast(),
            byte.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    let peeked = if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    };
    match peeked {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "peer closed the connection",
        )),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "peer wrote on a one-way connection",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Inbound: one accept thread, a short-lived hello thread per connection.

struct Inbound {
    shared: Arc<Shared>,
    deliver: InboundFn,
    /// Live inbound connections by serial, so shutdown and newer connections of the same
    /// node can end them.
    conns: Mutex<HashMap<u64, InboundConn>>,
}

struct InboundConn {
    /// The sender's node id once its hello was accepted.
    node_id: Option<u64>,
    stream: TcpStream,
}

/// An inbound connection whose hello was accepted, for its reader (the raft thread) to
/// read frames from. Dropping it (or [`PeerConnection::close`]) closes the connection.
pub struct PeerConnection {
    node: u64,
    remote: SocketAddr,
    /// Where the peer says it listens (its hello).
    advertised: Option<String>,
    stream: TcpStream,
    inbound: Arc<Inbound>,
    serial: u64,
}

impl fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConnection")
            .field("node", &self.node)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl PeerConnection {
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The raft id of the node that sent the hello.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// Where the peer says it listens (see [`Transport::learn`]), and where the
    /// connection came from.
    pub fn advertised(&self) -> Option<(&str, SocketAddr)> {
        self.advertised.as_deref().map(|a| (a, self.remote))
    }

    /// Checks that a message read from this connection is routed as it must be (from its
    /// sender, to this node) and counts it received.
    pub fn accept_message(&self, msg: &Message) -> Result<(), FrameError> {
        let shared = &self.inbound.shared;
        check_route(msg, self.node, shared.my_id)?;
        bump(&shared.counters.received, 1);
        Ok(())
    }

    /// Closes the connection: `None` when the sender closed it, else what ended it (logged,
    /// and a bad frame counted).
    pub fn close(self, reason: Option<ConnError>) {
        let (node, remote) = (self.node, self.remote);
        match reason {
            None => log::debug!("raft transport: node {node:x} at {remote} disconnected"),
            Some(e) => {
                if matches!(e, ConnError::Frame(_)) {
                    bump(&self.inbound.shared.counters.bad_frames, 1);
                }
                log::warn!(
                    "raft transport: closing connection from node {node:x} at {remote}: {e}"
                );
            }
        }
    }
}

impl Drop for PeerConnection {
    fn drop(&mut self) {
        lock(&self.inbound.conns).remove(&self.serial);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn run_accept(listener: TcpListener, inbound: Arc<Inbound>) -> Vec<JoinHandle<()>> {
    let shared = Arc::clone(&inbound.shared);
    let mut greeters: Vec<JoinHandle<()>> = Vec::new();
    let mut serial: u64 = 0;
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                log::warn!("raft transport: accept failed: {e}");
                thread::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS));
                continue;
            }
        };
        greeters = reap(greeters);
        serial += 1;
        if let Some(greeter) = start_greeter(&inbound, stream, remote, serial) {
            greeters.push(greeter);
        }
    }
    greeters
}

/// Joins the threads that have finished and returns the others.
fn reap(threads: Vec<JoinHandle<()>>) -> Vec<JoinHandle<()>> {
    let (done, running): (Vec<_>, Vec<_>) = threads.into_iter().partition(|t| t.is_finished());
    for t in done {
        let _ = t.join();
    }
    running
}

/// Registers the connection and starts the thread that reads its hello.
fn start_greeter(
    inbound: &Arc<Inbound>,
    stream: TcpStream,
    remote: SocketAddr,
    serial: u64,
) -> Option<JoinHandle<()>> {
    let shared = &inbound.shared;
    let mut conns = lock(&inbound.conns);
    if conns.len() >= PEER_INBOUND_CONNECTIONS_MAX {
        // Make room by ending the oldest connection that has not said hello yet: a real
        // peer says it at once, so only connections that hold a slot without being a peer
        // (scanners, or a flood) are ended, and they cannot keep real peers out.
        let oldest_unknown = conns
            .iter()
            .filter(|(_, c)| c.node_id.is_none())
            .map(|(serial, _)| *serial)
            .min();
        if let Some(evicted) = oldest_unknown {
            // Its hello thread, failing on the shut socket, counts it as refused.
            if let Some(conn) = conns.remove(&evicted) {
                let _ = conn.stream.shutdown(Shutdown::Both);
            }
            log::warn!(
                "raft transport: {PEER_INBOUND_CONNECTIONS_MAX} connections open; ending the \
                 oldest one that has not said hello to make room for {remote}"
            );
        }
    }
    if conns.len() >= PEER_INBOUND_CONNECTIONS_MAX {
        drop(conns);
        bump(&shared.counters.refused_connections, 1);
        log::warn!(
            "raft transport: refusing {remote}: {PEER_INBOUND_CONNECTIONS_MAX} connections open"
        );
        return None;
    }
    let clone = match stream.try_clone() {
        Ok(clone) => clone,
        Err(e) => {
            log::warn!("raft transport: dropping connection from {remote}: {e}");
            return None;
        }
    };
    conns.insert(
        serial,
        InboundConn {
            node_id: None,
            stream: clone,
        },
    );
    drop(conns);
    let greeter_inbound = Arc::clone(inbound);
    let spawned = spawn_counted(shared, format!("raft-hello-{serial}"), move || {
        greet(greeter_inbound, stream, remote, serial)
    });
    match spawned {
        Ok(t) => Some(t),
        Err(e) => {
            lock(&inbound.conns).remove(&serial);
            log::error!("raft transport: cannot start a thread for {remote}: {e}");
            None
        }
    }
}

/// Reads the hello and hands the connection over, or ends it (counted as refused).
fn greet(inbound: Arc<Inbound>, mut stream: TcpStream, remote: SocketAddr, serial: u64) {
    let hello = read_hello(&mut stream)
        .map_err(ConnError::from)
        .and_then(|(hello, addr)| {
            let node = decode_hello(&hello, inbound.shared.cluster_id)?;
            Ok((node, decode_hello_addr(&addr)?))
        });
    let (node, advertised) = match hello {
        Ok(hello) => hello,
        Err(e) => {
            if let Some(conn) = lock(&inbound.conns).remove(&serial) {
                let _ = conn.stream.shutdown(Shutdown::Both);
            }
            bump(&inbound.shared.counters.refused_connections, 1);
            log::warn!("raft transport: closing connection from peer at {remote}: {e}");
            return;
        }
    };
    claim_node(&inbound, serial, node);
    let conn = PeerConnection {
        node,
        remote,
        advertised,
        stream,
        inbound: Arc::clone(&inbound),
        serial,
    };
    if inbound.shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    log::debug!("raft transport: node {node:x} connected from {remote}");
    (inbound.deliver)(conn);
}

/// Reads the hello within `PEER_HELLO_TIMEOUT_MS` in all (a read timeout alone bounds each
/// read, so a sender trickling a byte at a time could hold the connection for minutes).
fn read_hello(stream: &mut TcpStream) -> io::Result<([u8; HELLO_LEN], Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_millis(PEER_HELLO_TIMEOUT_MS);
    let mut hello = [0u8; HELLO_LEN];
    read_within(stream, &mut hello, deadline)?;
    // A peer of another wire version is refused by its magic, before its length is read.
    if hello[..8] != HELLO_MAGIC {
        return Ok((hello, Vec::new()));
    }
    let mut len = [0u8; 1];
    read_within(stream, &mut len, deadline)?;
    let mut addr = vec![0u8; usize::from(len[0])];
    read_within(stream, &mut addr, deadline)?;
    stream.set_read_timeout(None)?;
    Ok((hello, addr))
}

/// Fills `buf` from `stream` by `deadline`.
fn read_within(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no hello within {PEER_HELLO_TIMEOUT_MS} ms"),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Records which node this connection belongs to and ends that node's older connections:
/// a node has one outbound connection to us, so older ones are dead or being replaced.
fn claim_node(inbound: &Inbound, serial: u64, node: u64) {
    let mut conns = lock(&inbound.conns);
    for (other, conn) in conns.iter_mut() {
        if *other != serial && conn.node_id == Some(node) {
            let _ = conn.stream.shutdown(Shutdown::Both);
            conn.node_id = None;
        }
    }
    if let Some(conn) = conns.get_mut(&serial) {
        conn.node_id = Some(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::inbound::{InboundSet, Waker};
    use crate::consensus::wire::test_messages::{big_msg, msg};
    use crate::consensus::wire::HELLO_MAGIC;
    use std::sync::mpsc;

    const CLUSTER: u64 = 0xfeed;

    /// Polls `cond` until it holds; fails the test after a generous bound (not a timing
    /// assertion: only a guard against hanging forever).
    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// A transport whose received messages come out of the returned channel.
    fn start(id: u64, addr: &str) -> (Transport, mpsc::Receiver<Message>) {
        start_stalling(id, addr, Duration::ZERO)
    }

    /// As `start`, with the reader stalling `stall` after its first message. A thread reads
    /// the connections as the raft thread does (an [`InboundSet`] and a [`Waker`]); it ends
    /// once the transport is dropped or the channel's receiver is gone.
    fn start_stalling(
        id: u64,
        addr: &str,
        mut stall: Duration,
    ) -> (Transport, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel();
        let handed: Arc<Mutex<Vec<PeerConnection>>> = Arc::default();
        let waker = Arc::new(Waker::new().unwrap());
        let (to_reader, reader_waker) = (Arc::clone(&handed), Arc::clone(&waker));
        let inbound: InboundFn = Box::new(move |conn| {
            lock(&to_reader).push(conn);
            reader_waker.wake();
        });
        thread::spawn(move || {
            let mut set = InboundSet::default();
            loop {
                set.wait(&waker, Duration::from_millis(20));
                for conn in lock(&handed).drain(..) {
                    set.add(conn);
                }
                let mut receiver_gone = false;
                set.read(&mut |m| {
                    receiver_gone |= tx.send(m).is_err();
                    thread::sleep(std::mem::take(&mut stall));
                });
                if receiver_gone || Arc::strong_count(&handed) == 1 && set.is_empty() {
                    return;
                }
            }
        });
        (
            Transport::start(addr, id, CLUSTER, "", inbound).unwrap(),
            rx,
        )
    }

    fn recv(rx: &mpsc::Receiver<Message>) -> Message {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("no message arrived")
    }

    fn addr_of(t: &Transport) -> String {
        t.local_addr().to_string()
    }

    /// A raw client connection to `t`, with a read timeout so tests cannot hang.
    fn raw_connect(t: &Transport) -> TcpStream {
        let s = TcpStream::connect(t.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    /// True once the transport has closed `s` (reads EOF or an error).
    fn closed_by_peer(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 16];
        !matches!(s.read(&mut b), Ok(n) if n > 0)
    }

    fn shutdown_checked(t: Transport) {
        let shared = Arc::clone(&t.shared);
        t.shutdown();
        assert_eq!(shared.threads_alive.load(Ordering::SeqCst), 0);
    }

    /// A node answers a peer that reached it, whatever its table says: the address the
    /// peer said in its hello is used for it from then on, also over a stale table entry,
    /// and a wildcard host is the host the connection came from.
    #[test]
    fn a_learned_address_wins_over_the_table() {
        let (a, _a_rx) = start(1, "127.0.0.1:0");
        let (b, b_rx) = start(2, "127.0.0.1:0");
        let remote: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        // No table entry for 2: learning it is enough to send there.
        a.learn(2, &addr_of(&b), remote).unwrap();
        a.send(msg(1, 2, 1));
        assert_eq!(recv(&b_rx).index, 1);
        // A table from before a move names an address where nothing listens: ignored.
        a.set_peer(2, "127.0.0.1:1").unwrap();
        a.send(msg(1, 2, 2));
        assert_eq!(recv(&b_rx).index, 2);
        // A wildcard listen address is reached at the connection's host.
        let port = b.local_addr().port();
        a.learn(2, &format!("0.0.0.0:{port}"), remote).unwrap();
        assert_eq!(
            lock(&a.learned).get(&2).map(String::as_str),
            Some(format!("127.0.0.1:{port}").as_str())
        );
        a.send(msg(1, 2, 3));
        assert_eq!(recv(&b_rx).index, 3);
        // Removing the peer forgets what it said.
        a.remove_peer(2);
        assert!(!lock(&a.learned).contains_key(&2));
        shutdown_checked(a);
        shutdown_checked(b);
    }

    #[test]
    fn transport_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Transport>();
    }

    #[test]
    fn two_transports_exchange_in_order() {
        let (a, a_rx) = start(1, "127.0.0.1:0");
        let (b, b_rx) = start(2, "127.0.0.1:0");
        a.set_peer(2, &addr_of(&b)).unwrap();
        b.set_peer(1, &addr_of(&a)).unwrap();
        const N: u64 = 2000;
        for i in 0..N {
            a.send(msg(1, 2, i));
            b.send(msg(2, 1, i));
        }
        for i in 0..N {
            assert_eq!(recv(&b_rx), msg(1, 2, i));
            assert_eq!(recv(&a_rx), msg(2, 1, i));
        }
        wait_until("sent counters", || {
            a.stats().sent == N && b.stats().sent == N
        });
        assert_eq!(a.stats().received, N);
        assert_eq!(a.stats().dropped(), 0);
        assert!(a.take_unreachable().is_empty());
        shutdown_checked(a);
        shutdown_checked(b);
    }

    /// Batches written straight from the caller, batches the socket takes only part of (the
    /// rest finished by the outbound thread), and batches too large to write directly (queued)
    /// all arrive whole and in order.
    #[test]
    fn direct_partial_and_queued_writes_keep_order() {
        let (a, _a_rx) = start(1, "127.0.0.1:0");
        // The receiver stalls on its first message, so the socket buffers fill up and later
        // direct writes are taken only in part, or not at all.
        let (b, b_rx) = start_stalling(2, "127.0.0.1:0", Duration::from_millis(500));
        a.set_peer(2, &addr_of(&b)).unwrap();
        let mut sent = Vec::new();
        for i in 0..1000u64 {
            // 0 .. ~90 KiB per batch, sometimes past PEER_DIRECT_WRITE_BYTES_MAX.
            let batch: Vec<Message> = (0..3)
                .map(|j| {
                    let mut m = big_msg(1, 2, ((i * 7919 + j * 104_729) % 30_000) as usize);
                    m.index = i * 3 + j;
                    m
                })
                .collect();
            sent.extend(batch.iter().cloned());
            a.send_all(batch);
        }
        for m in &sent {
            assert_eq!(&recv(&b_rx), m);
        }
        wait_until("sent counter", || a.stats().sent == sent.len() as u64);
        assert_eq!(a.stats().dropped(), 0);
        shutdown_checked(a);
        shutdown_checked(b);
    }

    #[test]
    fn large_message_arrives_whole() {
        let (a, _a_rx) = start(1, "127.0.0.1:0");
        let (b, b_rx) = start(2, "127.0.0.1:0");
        a.set_peer(2, &addr_of(&b)).unwrap();
        let big = big_msg(1, 2, 6 << 20);
        a.send(big.clone());
        a.send(msg(1, 2, 42));
        assert_eq!(recv(&b_rx), big);
        assert_eq!(recv(&b_rx), msg(1, 2, 42));
        shutdown_checked(a);
        shutdown_checked(b);
    }

    #[test]
    fn bad_connections_are_refused_and_good_peers_still_served() {
        let (b, b_rx) = start(2, "127.0.0.1:0");
        let mut valid = Vec::new();
        encode_frame(&msg(1, 2, 1), &mut valid).unwrap();

        let mut garbage = raw_connect(&b);
        garbage.write_all(&[0x55; 100]).unwrap();
        let mut wrong_magic = raw_connect(&b);
        let mut hello = encode_hello(1, CLUSTER, "");
        hello[0] = b'X';
        wrong_magic.write_all(&hello).unwrap();
        let mut wrong_cluster = raw_connect(&b);
        wrong_cluster
            .write_all(&encode_hello(1, CLUSTER + 1, ""))
            .unwrap();
        let mut short_then_close = raw_connect(&b);
        short_then_close.write_all(&HELLO_MAGIC).unwrap();
        short_then_close.shutdown(Shutdown::Write).unwrap();
        for s in [&mut garbage, &mut wrong_magic, &mut wrong_cluster] {
            assert!(closed_by_peer(s));
        }
        wait_until("refusals counted", || b.stats().refused_connections == 4);

        let mut bad_crc = raw_connect(&b);
        bad_crc.write_all(&encode_hello(1, CLUSTER, "")).unwrap();
        let mut corrupt = valid.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        bad_crc.write_all(&corrupt).unwrap();
        let mut oversize = raw_connect(&b);
        oversize.write_all(&encode_hello(1, CLUSTER, "")).unwrap();
        oversize.write_all(&u32::MAX.to_le_bytes()).unwrap();
        oversize.write_all(&[0; 4]).unwrap();
        let mut wrong_sender = raw_connect(&b);
        wrong_sender
            .write_all(&encode_hello(3, CLUSTER, ""))
            .unwrap();
        wrong_sender.write_all(&valid).unwrap();
        for s in [&mut bad_crc, &mut oversize, &mut wrong_sender] {
            assert!(closed_by_peer(s));
        }
        wait_until("bad frames counted", || b.stats().bad_frames == 3);
        assert_eq!(b.stats().received, 0);

        // A hand-made good peer and a real transport are both served.
        let mut good = raw_connect(&b);
        good.write_all(&encode_hello(1, CLUSTER, "")).unwrap();
        good.write_all(&valid).unwrap();
        assert_eq!(recv(&b_rx), msg(1, 2, 1));
        let (a, _a_rx) = start(3, "127.0.0.1:0");
        a.set_peer(2, &addr_of(&b)).unwrap();
        a.send(msg(3, 2, 7));
        assert_eq!(recv(&b_rx), msg(3, 2, 7));
        assert!(b_rx.try_recv().is_err());
        shutdown_checked(a);
        shutdown_checked(b);
    }

    /// Connections that never say hello cannot keep real peers out: with the table full of
    /// them, a new connection ends the oldest of them; and a hello trickled a byte at a
    /// time is cut after PEER_HELLO_TIMEOUT_MS in all.
    #[test]
    fn silent_connections_cannot_keep_peers_out() {
        let (b, b_rx) = start(2, "127.0.0.1:0");
        let silent: Vec<TcpStream> = (0..PEER_INBOUND_CONNECTIONS_MAX)
            .map(|_| raw_connect(&b))
            .collect();
        wait_until("the table is full", || {
            lock(&b.inbound.conns).len() == PEER_INBOUND_CONNECTIONS_MAX
        });
        let (a, _a_rx) = start(1, "127.0.0.1:0");
        a.set_peer(2, &addr_of(&b)).unwrap();
        a.send(msg(1, 2, 1));
        assert_eq!(recv(&b_rx), msg(1, 2, 1));
        // Its hello thread counts it once the shut socket fails its read.
        wait_until("one silent connection ended", || {
            b.stats().refused_connections >= 1
        });

        let mut trickle = raw_connect(&b);
        let started = Instant::now();
        let mut closed = false;
        for byte in encode_hello(1, CLUSTER, "") {
            if trickle.write_all(&[byte]).is_err() {
                closed = true;
                break;
            }
            thread::sleep(Duration::from_millis(200));
            if started.elapsed() > Duration::from_millis(PEER_HELLO_TIMEOUT_MS + 1_000) {
                break;
            }
        }
        if !closed {
            trickle
                .set_read_timeout(Some(Duration::from_millis(PEER_HELLO_TIMEOUT_MS)))
                .unwrap();
            let mut byte = [0u8; 1];
            closed = match trickle.read(&mut byte) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ),
            };
        }
        assert!(closed, "a trickled hello is cut");
        drop(silent);
        shutdown_checked(a);
        shutdown_checked(b);
    }

    /// A peer that closes every connection right after the first frame (here: another
    /// cluster's node at the address) is retried with a growing backoff, not every 100 ms:
    /// the first write succeeding does not make the connection good.
    #[test]
    fn a_peer_that_refuses_us_is_retried_with_backoff() {
        // Our hellos name the wrong cluster: no connection is ever handed over.
        let inbound: InboundFn = Box::new(|conn| panic!("handed over {conn:?}"));
        let foreign = Transport::start("127.0.0.1:0", 2, CLUSTER + 1, "", inbound).unwrap();
        let (a, _a_rx) = start(1, "127.0.0.1:0");
        a.set_peer(2, &addr_of(&foreign)).unwrap();
        let began = Instant::now();
        let mut i = 0;
        while began.elapsed() < Duration::from_secs(3) {
            a.send(msg(1, 2, i));
            i += 1;
            thread::sleep(Duration::from_millis(20));
        }
        // Backoff 100, 200, 400, 800 ms… gives about 5 attempts in 3 s; without it, 15-30.
        let reconnects = a.stats().reconnects;
        assert!(reconnects <= 8, "{reconnects} reconnects in 3 s");
        assert!(foreign.stats().refused_connections >= 1);
        shutdown_checked(a);
        shutdown_checked(foreign);
    }

    #[test]
    fn newest_connection_of_a_node_replaces_older_ones() {
        let (b, b_rx) = start(2, "127.0.0.1:0");
        let mut first = raw_connect(&b);
        first.write_all(&encode_hello(1, CLUSTER, "")).unwrap();
        let mut frame = Vec::new();
        encode_frame(&msg(1, 2, 1), &mut frame).unwrap();
        first.write_all(&frame).unwrap();
        assert_eq!(recv(&b_rx), msg(1, 2, 1));
        let mut second = raw_connect(&b);
        second.write_all(&encode_hello(1, CLUSTER, "")).unwrap();
        assert!(closed_by_peer(&mut first));
        frame.clear();
        encode_frame(&msg(1, 2, 2), &mut frame).unwrap();
        second.write_all(&frame).unwrap();
        assert_eq!(recv(&b_rx), msg(1, 2, 2));
        assert_eq!(b.stats().bad_frames, 0);
        shutdown_checked(b);
    }

    /// An address nobody listens on (for now): bind port 0, note it, release it.
    fn free_addr() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    #[test]
    fn down_peer_drops_then_reconnects_when_it_comes_up() {
        let (a, _a_rx) = start(1, "127.0.0.1:0");
        let addr = free_addr();
        a.set_peer(2, &addr).unwrap();
        let total = (PEER_QUEUE_DEPTH_MAX * 3) as u64;
        for i in 0..total {
            a.send(msg(1, 2, i)); // returns at once, whatever the peer's state
        }
        wait_until("peer reported unreachable", || {
            a.take_unreachable().contains(&2)
        });
        let s = a.stats();
        assert!(s.connect_failures >= 1);
        assert_eq!(s.sent, 0);
        wait_until("queued messages discarded", || {
            let s = a.stats();
            s.dropped() == total
        });

        let (b, b_rx) = start(2, &addr);
        const MARK: u64 = 1 << 40;
        let mut next = MARK;
        wait_until("delivery after the peer came up", || {
            a.send(msg(1, 2, next));
            next += 1;
            matches!(b_rx.try_recv(), Ok(m) if m.index >= MARK)
        });
        let s = a.stats();
        assert!(s.reconnects >= 1);
        assert!(s.sent >= 1);
        // Messages on a working connection arrive in order.
        let mut last = 0;
        a.send(msg(1, 2, u64::MAX));
        loop {
            let m = recv(&b_rx);
            assert!(m.index > last);
            last = m.index;
            if m.index == u64::MAX {
                break;
            }
        }

        // The peer restarts on the same address: the idle connection is found dead and
        // replaced.
        shutdown_checked(b);
        let (b, b_rx) = start(2, &addr);
        const MARK2: u64 = 1 << 50;
        let mut next = MARK2;
        wait_until("delivery after the peer restarted", || {
            a.send(msg(1, 2, next));
            next += 1;
            matches!(b_rx.try_recv(), Ok(m) if m.index >= MARK2)
        });
        assert!(a.stats().reconnects >= 2);
        shutdown_checked(a);
        shutdown_checked(b);
    }

    #[test]
    fn address_change_reconnects_to_the_new_address() {
        let (a, _a_rx) = start(1, "127.0.0.1:0");
        let (b1, b1_rx) = start(2, "127.0.0.1:0");
        let (b2, b2_rx) = start(2, "127.0.0.1:0");
        a.set_peer(2, &addr_of(&b1)).unwrap();
        a.send(msg(1, 2, 1));
        assert_eq!(recv(&b1_rx), msg(1, 2, 1));
        a.set_peer(2, &addr_of(&b1)).unwrap(); // same address: nothing changes
        a.set_peer(2, &addr_of(&b2)).unwrap();
        a.send(msg(1, 2, 2));
        assert_eq!(recv(&b2_rx), msg(1, 2, 2));
        a.send(msg(1, 2, 3));
        assert_eq!(recv(&b2_rx), msg(1, 2, 3));
        assert!(b1_rx.try_recv().is_err());
        shutdown_checked(a);
        shutdown_checked(b1);
        shutdown_checked(b2);
    }

    #[test]
    fn unknown_and_removed_peers_drop_and_report_snapshots() {
        let (a, _a_rx) = start(1, "127.0.0.1:0");
        let (b, b_rx) = start(2, "127.0.0.1:0");
        a.send(msg(1, 9, 0));
        let mut snap = msg(1, 9, 0);
        snap.set_msg_type(MessageType::MsgSnapshot);
        a.send(snap.clone());
        assert_eq!(a.stats().dropped_unknown_peer, 2);
        assert_eq!(
            a.take_snapshot_reports(),
            vec![(9, SnapshotStatus::Failure)]
        );
        assert!(a.take_snapshot_reports().is_empty());

        a.set_peer(2, &addr_of(&b)).unwrap();
        snap.to = 2;
        a.send(snap.clone());
        assert_eq!(recv(&b_rx), snap);
        wait_until("snapshot reported sent", || {
            a.take_snapshot_reports() == vec![(2, SnapshotStatus::Finish)]
        });

        a.remove_peer(2);
        a.send(msg(1, 2, 5));
        assert_eq!(a.stats().dropped_unknown_peer, 3);
        // Only a's accept thread is left (connections past their hello have no thread).
        wait_until("removed peer's thread ends", || {
            a.shared.threads_alive.load(Ordering::SeqCst) == 1
        });
        shutdown_checked(a);
        shutdown_checked(b);
    }

    #[test]
    fn shutdown_joins_every_thread() {
        let (a, _a_rx) = start(1, "127.0.0.1:0");
        let (b, b_rx) = start(2, "127.0.0.1:0");
        a.set_peer(2, &addr_of(&b)).unwrap();
        b.set_peer(1, &addr_of(&a)).unwrap();
        a.set_peer(3, &free_addr()).unwrap(); // down: its thread sits in backoff
        a.send(msg(1, 2, 1));
        a.send(msg(1, 3, 1));
        assert_eq!(recv(&b_rx), msg(1, 2, 1));
        // Inbound connections stuck in every state: mid-hello, idle after hello.
        let mut half = raw_connect(&a);
        half.write_all(&HELLO_MAGIC[..3]).unwrap();
        let mut idle = raw_connect(&a);
        idle.write_all(&encode_hello(4, CLUSTER, "")).unwrap();
        b.send(msg(2, 1, 1));
        // Connections past their hello have no thread of their own: accept + 2 outbound +
        // the hello thread still waiting for `half`'s.
        wait_until("connections handed over", || {
            lock(&a.inbound.conns).len() == 3
                && a.stats().received == 1
                && a.shared.threads_alive.load(Ordering::SeqCst) == 4
        });
        shutdown_checked(a);
        assert!(closed_by_peer(&mut half));
        assert!(closed_by_peer(&mut idle));
        // b's writer to a now fails; b still shuts down cleanly.
        b.send(msg(2, 1, 2));
        shutdown_checked(b);
    }
}
