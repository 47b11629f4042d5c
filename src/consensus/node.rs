//! The raft thread and its handle: one thread per node owns the [`Driver`] (and so the
//! `RawNode`) and the peer [`Transport`]; every other thread talks to it through a
//! [`RaftHandle`], over one bounded channel of requests, and gets answers on a channel of its
//! own per request.
//!
//! The thread's loop: sleep in `poll` until a peer connection has bytes, a request was
//! queued (every sender then wakes the thread's [`Waker`]) or the next tick is due; take
//! the queued requests (up to [`RAFT_REQUEST_QUEUE_DEPTH_MAX`]) and step the messages the
//! peers sent (the thread reads its inbound connections itself: [`InboundSet`]), so that
//! many proposals share one Ready and so one fsync; tick every [`RAFT_TICK_INTERVAL_MS`];
//! hand raft what the transport learned (unreachable peers, snapshot outcomes); take a
//! finished log sync from the node's [`SyncThread`] (the driver then releases the
//! acknowledgements it held, and raft may commit); then handle one Ready through the driver
//! (which writes its entries and hands their fdatasync to the sync thread, or syncs at once
//! when the Ready changes term, vote or membership, or appends a small amount while no sync
//! runs: one transaction of steady replication), restore a received snapshot, apply the
//! committed normal entries to the [`StateMachine`] in log order, tell it about membership
//! changes, answer the proposals that completed, store a snapshot when raft asked for one,
//! and publish [`RaftStatus`].
//!
//! A proposal completes when its last entry is applied locally with the index and term it was
//! proposed at; another term at that index means another leader overwrote it (`Dropped`).
//! When this node stops leading, every pending proposal fails with `NotLeader`: the caller
//! cannot know whether the new leader kept it. A proposal fenced by a term other than the
//! current one is refused before anything is appended, so a proposer that has not yet seen
//! a leadership change never appends in a later term.
//!
//! An error while handling a Ready (a failed fsync above all) leaves raft mid-Ready and is
//! fatal: the node's fatal hook runs (by default: log and `exit(1)`), and the thread stops.
//! A panic on the thread (raft-rs aborts on broken invariants) is handled the same way.
//!
//! This module must not interpret the data of normal entries (the state machine does), must
//! not block the raft thread on anything but the state machine and the synchronous fsyncs
//! (small appends while no sync runs; state file, snapshot, a cut of the log's tail,
//! compaction), and must never let another thread touch the `RawNode`. A leader's raft
//! thread sends nothing while one of those runs: an fsync stalled past the election
//! timeout can cost it the leadership.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::eraftpb::{ConfChange, ConfState, Entry, EntryType, Message, MessageType};

use crate::consensus::driver::{Driver, PeerProgress, ReadyOutput, Role};
use crate::consensus::inbound::{InboundSet, Waker};
use crate::consensus::storage::{RaftStorage, INIT_INDEX, NORMAL_KIND_MAX};
use crate::consensus::sync_thread::SyncThread;
use crate::consensus::transport::{PeerConnection, Transport};
use crate::consensus::ConsensusError;
use crate::limits::{
    ENTRY_PAYLOAD_MAX, RAFT_BROKEN_CHAINS_KEPT, RAFT_REQUEST_QUEUE_DEPTH_MAX, RAFT_TICK_INTERVAL_MS,
};
use crate::storage::{LatencyHistogram, LatencySnapshot};

// ---------------------------------------------------------------------------------------
// Public types.

/// A committed normal entry, as the state machine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    /// The entry's kind byte (0 for the empty entry a new leader appends).
    pub kind: u8,
    /// The entry's payload, shared with the raft log's cache rather than copied.
    pub data: Bytes,
}

/// What the raft thread applies committed entries to. Every method runs on the raft
/// thread, so it must not call the node's [`RaftHandle`] (its queue may be full of requests
/// only this thread can take) and should return promptly: raft waits meanwhile.
pub trait StateMachine: Send + 'static {
    /// Committed normal entries, in log order (empty entries included, kind 0).
    fn apply(&mut self, entries: Vec<Applied>);
    /// The applied state as bytes, for a snapshot at the applied index; None when it
    /// cannot be described at this index (the binlog store in the middle of a transaction):
    /// the snapshot waits (compaction answers `InsideTransaction`, and raft asks again when
    /// it next needs one).
    fn snapshot_data(&mut self) -> Option<Vec<u8>>;
    /// Replace the state with a snapshot's: a follower that fell behind a compaction, or a
    /// node restarting from its stored snapshot (entries after it are applied again).
    fn restore(&mut self, index: u64, term: u64, data: &[u8]);
    /// The membership raft runs with: at start, and whenever a conf change was applied or a
    /// snapshot installed (called after the entries of that Ready were applied).
    fn on_conf_state(&mut self, voters: &[u64], learners: &[u64]);
    /// At start, before anything is applied: the last index of the log found on disk.
    /// Entries up to it that get applied were mostly applied before the restart (raft
    /// records the commit index lazily, so the log's end is the bound that is known).
    fn on_recovered(&mut self, _last_index: u64) {}
}

/// Called once with the reason when the raft thread hits a fatal error. The default
/// (`None` in [`NodeConfig::on_fatal`]) logs it and exits the process with status 1.
pub type FatalHook = Arc<dyn Fn(&str) + Send + Sync>;

/// How to start a node.
#[derive(Clone)]
pub struct NodeConfig {
    /// This node's raft id (never 0).
    pub id: u64,
    /// Peers of another cluster are refused at the transport's hello.
    pub cluster_id: u64,
    /// The node's data directory (`log/` and `raft/` inside it).
    pub data_dir: PathBuf,
    /// Address the peer transport listens on (port 0 picks one: see
    /// [`RaftNode::peer_addr`]).
    pub peer_listen: String,
    /// Where the others reach this node (its membership entry), said in every hello so
    /// that a peer whose table is older can answer; empty: the address bound.
    pub peer_advertise: String,
    /// The other members' raft ids and peer addresses.
    pub peers: Vec<(u64, String)>,
    /// `Some(voters)` on a brand-new cluster: an empty data directory is initialized with
    /// this membership (ignored when it already holds raft state). `None` for a node joining
    /// an existing cluster: it waits for the leader's snapshot.
    pub bootstrap_voters: Option<Vec<u64>>,
    /// What a fatal error does; `None` logs it and exits the process.
    pub on_fatal: Option<FatalHook>,
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("id", &self.id)
            .field("cluster_id", &self.cluster_id)
            .field("data_dir", &self.data_dir)
            .field("peer_listen", &self.peer_listen)
            .field("peer_advertise", &self.peer_advertise)
            .field("peers", &self.peers)
            .field("bootstrap_voters", &self.bootstrap_voters)
            .field("on_fatal", &self.on_fatal.as_ref().map(|_| "custom"))
            .finish()
    }
}

/// Why a proposal (or a membership change) did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// This node does not lead (any more); `leader_id` is the leader it knows (0: none).
    NotLeader { leader_id: u64 },
    /// The proposal was fenced to `fence_term` but the current term is another.
    TermChanged { fence_term: u64, current_term: u64 },
    /// Another leader's entry took the proposal's place in the log.
    Dropped,
    /// The node is stopping or stopped.
    Shutdown,
    /// An entry's data is larger than one log record may hold.
    TooLarge { bytes: usize, max: usize },
    /// The leader cannot take more now (too many uncommitted bytes, or a leadership
    /// transfer in progress); retry later.
    Busy,
    /// The proposal itself is wrong (empty, or a kind outside `1..=0x3f`), or raft refused
    /// the membership change (e.g. another one is still pending).
    Refused(String),
    /// The leader was asked to remove or demote itself: it hands leadership to node `to`
    /// instead; ask again, and the new leader makes the change.
    HandingOver { to: u64 },
    /// An earlier proposal of the same chain was refused, so this one is too: the entries
    /// of a chain continue each other, and none may be appended after a gap.
    ChainBroken,
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader { leader_id: 0 } => {
                write!(f, "this node is not the leader and no leader is known")
            }
            ProposeError::NotLeader { leader_id } => {
                write!(
                    f,
                    "this node is not the leader; the leader is node {leader_id:x}"
                )
            }
            ProposeError::TermChanged {
                fence_term,
                current_term,
            } => write!(
                f,
                "the raft term changed from {fence_term} to {current_term}; proposal refused"
            ),
            ProposeError::Dropped => write!(f, "the proposal was overwritten by another leader"),
            ProposeError::Shutdown => write!(f, "the raft node is shutting down"),
            ProposeError::TooLarge { bytes, max } => {
                write!(f, "an entry of {bytes} bytes is more than {max}")
            }
            ProposeError::Busy => write!(f, "the leader is busy; proposal dropped"),
            ProposeError::Refused(reason) => write!(f, "proposal refused: {reason}"),
            ProposeError::HandingOver { to } => write!(
                f,
                "the leader cannot remove itself; it is handing leadership to node {to}"
            ),
            ProposeError::ChainBroken => write!(
                f,
                "an earlier proposal of this sequence was refused; later ones are refused too"
            ),
        }
    }
}

impl std::error::Error for ProposeError {}

/// Why a compaction did not happen.
#[derive(Debug)]
pub enum CompactError {
    /// Only applied entries can be compacted (they must be covered by a snapshot).
    NotApplied {
        index: u64,
        applied: u64,
    },
    /// Storing the snapshot or compacting the log failed.
    Failed(ConsensusError),
    /// A snapshot is needed and the state machine cannot take one now (see
    /// [`StateMachine::snapshot_data`]); try again later.
    InsideTransaction,
    Shutdown,
}

impl fmt::Display for CompactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompactError::NotApplied { index, applied } => write!(
                f,
                "cannot compact the raft log to {index}: only {applied} is applied"
            ),
            CompactError::Failed(e) => write!(f, "compacting the raft log failed: {e}"),
            CompactError::InsideTransaction => write!(
                f,
                "a snapshot cannot be taken in the middle of a transaction; retried later"
            ),
            CompactError::Shutdown => write!(f, "the raft node is shutting down"),
        }
    }
}

impl std::error::Error for CompactError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CompactError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// The node's raft view, as published after each Ready.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: u64,
    /// The leader this node knows of (0 = none).
    pub leader_id: u64,
    pub term: u64,
    /// Commit index and last applied index.
    pub commit: u64,
    pub applied: u64,
    /// The membership, sorted.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// False once the raft thread stopped (shutdown or fatal error).
    pub running: bool,
    /// On the leader, the voters it heard from recently (itself included); empty elsewhere.
    pub active_voters: Vec<u64>,
    /// On the leader, when it became leader. Until `PEER_ACTIVE_WINDOW_MS` after that,
    /// `active_voters` may miss live voters: followers do not talk to each other, so a new
    /// leader has heard only from those that voted for it.
    pub leading_since: Option<Instant>,
    pub role: Role,
    /// The first index still in the log, the last index (written, maybe not yet durable)
    /// and the last durable one.
    pub first_index: u64,
    pub last_index: u64,
    pub persisted: u64,
    /// On the leader, each other node's progress and when it was last heard from; empty
    /// elsewhere.
    pub peers: Vec<(PeerProgress, Option<Instant>)>,
}

impl RaftStatus {
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// Leadership, term, membership or running state differ (what watchers wait for;
    /// commit and applied move on every write and do not count).
    fn role_differs(&self, other: &RaftStatus) -> bool {
        (self.leader_id, self.term, self.is_leader(), self.running)
            != (
                other.leader_id,
                other.term,
                other.is_leader(),
                other.running,
            )
            || self.voters != other.voters
            || self.learners != other.learners
    }
}

/// Counters of the raft thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Readies handled (each at most one log fsync).
    pub readies: u64,
    /// Readies that carried newly proposed entries: proposals per append round shows the
    /// group commit at work.
    pub append_rounds: u64,
    /// Entries proposed through this node and accepted by raft.
    pub proposed_entries: u64,
    /// Raft ticks (one every `RAFT_TICK_INTERVAL_MS`).
    pub ticks: u64,
}

// ---------------------------------------------------------------------------------------
// Shared between the raft thread and the handles.

struct Published {
    generation: u64,
    status: RaftStatus,
}

struct Shared {
    published: Mutex<Published>,
    changed: Condvar,
    /// Set by shutdown (and by the thread when it ends): the loop exits, handles refuse.
    stop: AtomicBool,
    readies: AtomicU64,
    append_rounds: AtomicU64,
    proposed_entries: AtomicU64,
    ticks: AtomicU64,
    /// How long the log's syncs take (recorded by the log itself).
    log_sync: Arc<LatencyHistogram>,
    /// How long this node's accepted proposals took from reaching the raft thread to
    /// applied here (a leader's commit round: its followers' acknowledgements, the log
    /// syncs of a majority, and the apply).
    proposals: LatencyHistogram,
    /// The last proposal chain number handed out.
    chains: AtomicU64,
    /// Woken after every request queued, every connection handed over, and by the sync
    /// thread after every sync.
    waker: Waker,
    /// Inbound peer connections the transport handed over, for the raft thread to take
    /// (outside the bounded request queue, so that a hand-over is never refused; the
    /// transport keeps at most `PEER_INBOUND_CONNECTIONS_MAX` open).
    handed: Mutex<Vec<PeerConnection>>,
}

impl Shared {
    fn new(status: RaftStatus, log_sync: Arc<LatencyHistogram>, waker: Waker) -> Shared {
        Shared {
            published: Mutex::new(Published {
                generation: 1,
                status,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            readies: AtomicU64::new(0),
            append_rounds: AtomicU64::new(0),
            proposed_entries: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            log_sync,
            proposals: LatencyHistogram::default(),
            chains: AtomicU64::new(0),
            waker,
            handed: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Published> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The transport's hand-over of an inbound connection: kept for the raft thread, which
    /// is woken to take it.
    fn hand_over(&self, conn: PeerConnection) {
        self.handed_over().push(conn);
        self.waker.wake();
    }

    /// The connections handed over and not taken yet.
    fn take_handed(&self) -> Vec<PeerConnection> {
        std::mem::take(&mut *self.handed_over())
    }

    fn handed_over(&self) -> MutexGuard<'_, Vec<PeerConnection>> {
        self.handed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the status; a change of role bumps the generation and wakes the watchers.
    fn publish(&self, status: RaftStatus) {
        let mut g = self.lock();
        let role_changed = g.status.role_differs(&status);
        g.status = status;
        if role_changed {
            g.generation += 1;
            self.changed.notify_all();
        }
    }
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// What the raft thread is asked to do.
enum Request {
    Propose {
        entries: Vec<(u8, Vec<u8>)>,
        fence_term: Option<u64>,
        /// The chain the proposal belongs to (see [`RaftHandle::propose_in_chain`]).
        chain: Option<u64>,
        reply: SyncSender<Result<u64, ProposeError>>,
    },
    ConfChange {
        cc: ConfChange,
        reply: SyncSender<Result<(), ProposeError>>,
    },
    Compact {
        index: u64,
        reply: SyncSender<Result<u64, CompactError>>,
    },
    SetPeer {
        id: u64,
        addr: String,
    },
    RemovePeer {
        id: u64,
    },
    TransferLeadership {
        reply: SyncSender<Option<u64>>,
    },
}

impl Request {
    /// Answers a request that will never be handled.
    fn fail_shutdown(self) {
        match self {
            Request::Propose { reply, .. } => answer(&reply, Err(ProposeError::Shutdown)),
            Request::ConfChange { reply, .. } => answer(&reply, Err(ProposeError::Shutdown)),
            Request::Compact { reply, .. } => answer(&reply, Err(CompactError::Shutdown)),
            Request::TransferLeadership { reply } => answer(&reply, None),
            Request::SetPeer { .. } | Request::RemovePeer { .. } => {}
        }
    }
}

/// Each reply channel holds exactly one answer, so this never blocks; a caller that
/// stopped waiting dropped its receiver and the answer is discarded.
fn answer<T>(reply: &SyncSender<T>, value: T) {
    let _ = reply.try_send(value);
}

// ---------------------------------------------------------------------------------------
// The handle.

/// How other threads talk to the raft thread. Cheap to clone. After shutdown every request
/// fails with `Shutdown` (a reply channel that disconnects means the same).
#[derive(Clone)]
pub struct RaftHandle {
    tx: SyncSender<Request>,
    shared: Arc<Shared>,
}

impl fmt::Debug for RaftHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftHandle")
            .field("status", &self.status())
            .finish()
    }
}

impl RaftHandle {
    pub fn status(&self) -> RaftStatus {
        self.shared.lock().status.clone()
    }

    /// The status with its generation (the number [`RaftHandle::wait_change`] compares).
    pub fn status_with_generation(&self) -> (u64, RaftStatus) {
        let g = self.shared.lock();
        (g.generation, g.status.clone())
    }

    /// Waits at most `timeout` until the generation differs from `seen_generation` (the
    /// leader, term, role, membership or running state changed), and returns the current
    /// generation and status either way.
    pub fn wait_change(&self, seen_generation: u64, timeout: Duration) -> (u64, RaftStatus) {
        let deadline = Instant::now() + timeout;
        let mut g = self.shared.lock();
        while g.generation == seen_generation {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            g = self
                .shared
                .changed
                .wait_timeout(g, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        (g.generation, g.status.clone())
    }

    /// Proposes `entries` (kind, data) as contiguous entries, all or none, and returns a
    /// receiver that completes when the last one is applied locally, with its index. With
    /// `fence_term`, the proposal is refused (`TermChanged`) unless that is still the term.
    /// Blocks only while the request queue is full.
    pub fn propose(
        &self,
        entries: Vec<(u8, Vec<u8>)>,
        fence_term: Option<u64>,
    ) -> Receiver<Result<u64, ProposeError>> {
        let (reply, rx) = mpsc::sync_channel(1);
        if let Err(e) = check_entries(&entries) {
            answer(&reply, Err(e));
            return rx;
        }
        self.send(Request::Propose {
            entries,
            fence_term,
            chain: None,
            reply,
        });
        rx
    }

    /// A number for a new chain of proposals, unique on this node.
    pub fn new_chain(&self) -> u64 {
        self.shared.chains.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// As [`RaftHandle::propose`], for a proposal that continues the earlier proposals of
    /// `chain` (a number from [`RaftHandle::new_chain`]): once one proposal of a chain is refused, for
    /// any reason, the raft thread refuses every later one (`ChainBroken`). A proposer that
    /// pipelines (proposes the next batch before the last one is answered) so never gets a
    /// batch appended after a refused one: the raft thread takes requests in order.
    pub fn propose_in_chain(
        &self,
        entries: Vec<(u8, Vec<u8>)>,
        fence_term: Option<u64>,
        chain: u64,
    ) -> Receiver<Result<u64, ProposeError>> {
        let (reply, rx) = mpsc::sync_channel(1);
        // Checked on the raft thread, so that a refusal breaks the chain there.
        self.send(Request::Propose {
            entries,
            fence_term,
            chain: Some(chain),
            reply,
        });
        rx
    }

    /// Proposes a membership change; completes when it is applied locally.
    pub fn conf_change(&self, cc: ConfChange) -> Receiver<Result<(), ProposeError>> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(Request::ConfChange { cc, reply });
        rx
    }

    /// Forgets this node's log up to `index` (which must be applied), storing a fresh
    /// snapshot of the state machine first when the stored one does not cover it. Answers
    /// the index compacted to.
    pub fn compact(&self, index: u64) -> Receiver<Result<u64, CompactError>> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(Request::Compact { index, reply });
        rx
    }

    /// Sets (or changes) the peer address of raft node `id`.
    pub fn set_peer(&self, id: u64, addr: &str) {
        let addr = addr.to_owned();
        self.send(Request::SetPeer { id, addr });
    }

    /// Stops talking to raft node `id`.
    pub fn remove_peer(&self, id: u64) {
        self.send(Request::RemovePeer { id });
    }

    /// On a leader about to stop: hands leadership to the most caught-up voter heard from
    /// within `PEER_ACTIVE_WINDOW_MS` (see `Driver::transfer_leadership`). Answers the voter
    /// chosen, or None (not the leader, no other voter heard from).
    pub fn transfer_leadership(&self) -> Receiver<Option<u64>> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(Request::TransferLeadership { reply });
        rx
    }

    pub fn stats(&self) -> NodeStats {
        let s = &self.shared;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NodeStats {
            readies: get(&s.readies),
            append_rounds: get(&s.append_rounds),
            proposed_entries: get(&s.proposed_entries),
            ticks: get(&s.ticks),
        }
    }

    /// How long this node's log syncs took, since it started.
    pub fn log_sync_latency(&self) -> LatencySnapshot {
        self.shared.log_sync.snapshot()
    }

    /// How long this node's accepted proposals took until applied, since it started.
    pub fn proposal_latency(&self) -> LatencySnapshot {
        self.shared.proposals.snapshot()
    }

    fn send(&self, req: Request) {
        if self.shared.stop.load(Ordering::SeqCst) {
            req.fail_shutdown();
            return;
        }
        // Blocks while the queue is full (the raft thread is busy and will take it).
        let sent = self.tx.send(req);
        self.shared.waker.wake();
        if let Err(mpsc::SendError(req)) = sent {
            req.fail_shutdown();
        }
    }
}

/// Checks a proposal before it is queued (the driver checks again).
fn check_entries(entries: &[(u8, Vec<u8>)]) -> Result<(), ProposeError> {
    if entries.is_empty() {
        return Err(ProposeError::Refused("an empty proposal".into()));
    }
    for (kind, data) in entries {
        if !(1..=NORMAL_KIND_MAX).contains(kind) {
            let reason = format!("entry kind {kind} is not in 1..={NORMAL_KIND_MAX}");
            return Err(ProposeError::Refused(reason));
        }
        if data.len() > ENTRY_PAYLOAD_MAX {
            return Err(ProposeError::TooLarge {
                bytes: data.len(),
                max: ENTRY_PAYLOAD_MAX,
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The node.

/// A running raft node: its thread and (owned by that thread) its transport.
pub struct RaftNode {
    handle: RaftHandle,
    peer_addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftNode")
            .field("peer_addr", &self.peer_addr)
            .field("status", &self.handle.status())
            .finish()
    }
}

impl RaftNode {
    /// Opens the node's storage (initializing a brand-new cluster member), restores the
    /// state machine from the stored snapshot, starts the transport and the raft thread. A
    /// one-node cluster campaigns at once.
    pub fn start(cfg: NodeConfig, sm: Box<dyn StateMachine>) -> Result<RaftNode, ConsensusError> {
        RaftNode::start_with(cfg, |_| sm)
    }

    /// As [`RaftNode::start`], with the state machine made from a reader of the node's log
    /// (a state machine that serves entries, like the binlog store, reads them from there).
    pub fn start_with(
        cfg: NodeConfig,
        make_sm: impl FnOnce(crate::storage::LogReader) -> Box<dyn StateMachine>,
    ) -> Result<RaftNode, ConsensusError> {
        let id = cfg.id;
        let (storage, recovery) = RaftStorage::open(&cfg.data_dir)?;
        let mut sm = make_sm(storage.reader());
        if let Some(voters) = &cfg.bootstrap_voters {
            if !storage.is_initialized() {
                let cs = ConfState {
                    voters: voters.clone(),
                    ..ConfState::default()
                };
                storage.initialize(cs)?;
                log::info!("raft node {id:x}: new cluster with voters {voters:x?}");
            }
        }
        log::info!(
            "raft node {id:x}: log {}..={}, commit {}, snapshot at {}",
            recovery.first_index,
            recovery.last_index,
            recovery.hard_state.commit,
            recovery.snapshot_index
        );
        sm.on_recovered(recovery.last_index);
        let applied = restore_stored_snapshot(&storage, sm.as_mut());
        let storage_latency = storage.sync_latency();
        let mut driver = Driver::new(id, storage, applied, &super::raft_log::raft_logger(id))?;
        let cs = driver.conf_state();
        sm.on_conf_state(&sorted(&cs.voters), &sorted(&cs.learners));

        let waker = Waker::new().map_err(|e| ConsensusError::io("eventfd", "create", e))?;
        let shared = Arc::new(Shared::new(
            status_of(&driver, &BTreeMap::new(), None),
            storage_latency,
            waker,
        ));
        let (tx, rx) = mpsc::sync_channel(RAFT_REQUEST_QUEUE_DEPTH_MAX);
        let transport = start_transport(&cfg, Arc::clone(&shared))?;
        for (peer, addr) in cfg.peers.iter().filter(|(peer, _)| *peer != id) {
            if let Err(e) = transport.set_peer(*peer, addr) {
                log::error!("raft node {id:x}: cannot start the sender to node {peer:x}: {e}");
            }
        }
        let sync_shared = Arc::clone(&shared);
        let wake = Box::new(move || sync_shared.waker.wake());
        let sync = SyncThread::start(format!("raft-sync-{id}"), wake)
            .map_err(|e| ConsensusError::io(format!("raft-sync-{id}"), "spawn thread", e))?;
        driver.set_sync_worker(Box::new(sync));
        // Alone: no one else could win, so do not wait an election timeout. raft refuses to
        // campaign while committed membership entries are unapplied (the founders' at
        // least), so the raft thread campaigns once its first Readies applied them.
        let campaign_alone = cs.voters == [id] && cs.learners.is_empty();
        let peer_addr = transport.local_addr();
        let runner = Runner {
            driver,
            transport,
            sm,
            rx,
            inbound: InboundSet::default(),
            received: Vec::new(),
            shared: Arc::clone(&shared),
            pending: BTreeMap::new(),
            proposed_since_ready: false,
            answers: Vec::new(),
            heard: BTreeMap::new(),
            leading_since: None,
            broken_chains: BTreeSet::new(),
            campaign_alone,
        };
        let on_fatal = cfg.on_fatal.clone().unwrap_or_else(exit_on_fatal);
        let thread = thread::Builder::new()
            .name(format!("raft-{id}"))
            .spawn(move || run_thread(runner, &on_fatal))
            .map_err(|e| ConsensusError::io(format!("raft-{id}"), "spawn thread", e))?;
        Ok(RaftNode {
            handle: RaftHandle { tx, shared },
            peer_addr,
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> RaftHandle {
        self.handle.clone()
    }

    /// The address the peer transport listens on.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Stops the raft thread and the transport and joins them. Pending and queued requests
    /// fail with `Shutdown`.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.handle.shared.stop.store(true, Ordering::SeqCst);
        self.handle.shared.waker.wake();
        if thread.join().is_err() {
            log::error!("raft thread panicked while stopping");
        }
    }
}

impl Drop for RaftNode {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn exit_on_fatal() -> FatalHook {
    Arc::new(|reason: &str| {
        log::error!("{reason}; stopping the process");
        std::process::exit(1);
    })
}

/// Restores the state machine from the stored snapshot, if there is one worth restoring,
/// and returns the index it stands at (raft hands out the committed entries after it).
pub(crate) fn restore_stored_snapshot(storage: &RaftStorage, sm: &mut dyn StateMachine) -> u64 {
    let Some(snapshot) = storage.stored_snapshot() else {
        return 0;
    };
    let meta = snapshot.get_metadata();
    // The bootstrap snapshot carries no state: the state machine starts empty.
    if meta.index > INIT_INDEX || !snapshot.data.is_empty() {
        sm.restore(meta.index, meta.term, &snapshot.data);
    }
    meta.index
}

fn start_transport(cfg: &NodeConfig, shared: Arc<Shared>) -> Result<Transport, ConsensusError> {
    let inbound = Box::new(move |conn: PeerConnection| shared.hand_over(conn));
    Transport::start(
        &cfg.peer_listen,
        cfg.id,
        cfg.cluster_id,
        &cfg.peer_advertise,
        inbound,
    )
    .map_err(|e| ConsensusError::io(&cfg.peer_listen, "listen for raft peers on", e))
}

fn sorted(ids: &[u64]) -> Vec<u64> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v
}

fn status_of(
    driver: &Driver,
    heard: &BTreeMap<u64, Instant>,
    leading_since: Option<Instant>,
) -> RaftStatus {
    let cs = driver.conf_state();
    // On the leader: the voters it heard from within the window (itself always), what a
    // membership change must keep a quorum of. raft-rs's own `recent_active` flags are reset
    // at every check-quorum tick, so a look right after a reset would see every peer idle.
    let window = Duration::from_millis(crate::limits::PEER_ACTIVE_WINDOW_MS);
    let active_voters = if driver.is_leader() {
        sorted(&cs.voters)
            .into_iter()
            .filter(|id| *id == driver.id() || heard.get(id).is_some_and(|t| t.elapsed() < window))
            .collect()
    } else {
        Vec::new()
    };
    RaftStatus {
        id: driver.id(),
        leader_id: driver.leader_id(),
        term: driver.term(),
        commit: driver.commit_index(),
        applied: driver.applied_index(),
        voters: sorted(&cs.voters),
        learners: sorted(&cs.learners),
        running: true,
        active_voters,
        leading_since: leading_since.filter(|_| driver.is_leader()),
        role: driver.role(),
        first_index: driver.first_index(),
        last_index: driver.last_index(),
        persisted: driver.persisted_index(),
        peers: driver
            .peer_progress()
            .into_iter()
            .map(|p| {
                let heard = heard.get(&p.id).copied();
                (p, heard)
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------
// The raft thread.

enum Reply {
    Propose(SyncSender<Result<u64, ProposeError>>),
    ConfChange(SyncSender<Result<(), ProposeError>>),
}

/// A proposal waiting for its last entry to be applied.
struct Pending {
    term: u64,
    reply: Reply,
    /// When the raft thread took it.
    since: Instant,
}

impl Pending {
    fn fail(self, e: ProposeError) -> Answer {
        match self.reply {
            Reply::Propose(tx) => Answer::Propose(tx, Err(e)),
            Reply::ConfChange(tx) => Answer::ConfChange(tx, Err(e)),
        }
    }
}

/// A reply held back until the status that explains it is published.
enum Answer {
    Propose(
        SyncSender<Result<u64, ProposeError>>,
        Result<u64, ProposeError>,
    ),
    ConfChange(
        SyncSender<Result<(), ProposeError>>,
        Result<(), ProposeError>,
    ),
}

impl Answer {
    fn send(self) {
        match self {
            Answer::Propose(tx, r) => answer(&tx, r),
            Answer::ConfChange(tx, r) => answer(&tx, r),
        }
    }
}

struct Runner {
    driver: Driver,
    transport: Transport,
    sm: Box<dyn StateMachine>,
    rx: Receiver<Request>,
    /// The peers' connections, read on this thread.
    inbound: InboundSet,
    /// Messages read in this round, to step (kept for its capacity).
    received: Vec<Message>,
    shared: Arc<Shared>,
    /// By the index of the proposal's last entry.
    pending: BTreeMap<u64, Pending>,
    proposed_since_ready: bool,
    /// Completed proposals, answered after the Ready's status is published (so a proposer
    /// that hears back sees at least that status).
    answers: Vec<Answer>,
    /// When each peer was last heard from (any raft message).
    heard: BTreeMap<u64, Instant>,
    /// When this node last became leader (None while it is not: also "was it leader" from
    /// one Ready to the next).
    leading_since: Option<Instant>,
    /// Proposal chains with a refused proposal (see [`RaftHandle::propose_in_chain`]).
    broken_chains: BTreeSet<u64>,
    /// A lone voter campaigns as soon as it has applied what its log commits.
    campaign_alone: bool,
}

fn run_thread(mut runner: Runner, on_fatal: &FatalHook) {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| runner.run()));
    let fatal = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(reason)) => Some(reason),
        Err(payload) => Some(format!(
            "raft node {:x}: the raft thread panicked: {}",
            runner.driver.id(),
            panic_message(payload.as_ref())
        )),
    };
    if let Some(reason) = fatal {
        log::error!("{reason}");
        on_fatal(&reason);
    }
    runner.finish();
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

impl Runner {
    /// The loop; returns the reason of a fatal error.
    fn run(&mut self) -> Result<(), String> {
        let tick = Duration::from_millis(RAFT_TICK_INTERVAL_MS);
        let mut next_tick = Instant::now() + tick;
        let mut more_requests = false;
        while !self.shared.stop.load(Ordering::SeqCst) {
            let wait = if self.driver.has_ready() || more_requests {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            // Takes the waker's wake-ups before the requests they announce.
            self.inbound.wait(&self.shared.waker, wait);
            more_requests = self.drain()?;
            self.take_handed();
            let mut received = std::mem::take(&mut self.received);
            self.inbound.read(&mut |m| received.push(m));
            for m in received.drain(..) {
                self.step(m);
            }
            self.received = received;
            let now = Instant::now();
            if now >= next_tick {
                self.driver.tick();
                bump(&self.shared.ticks, 1);
                // After a long stall, tick once rather than catching up in a burst.
                next_tick = (next_tick + tick).max(now);
            }
            self.report_transport();
            self.poll_sync()?;
            self.ready()?;
            self.campaign_alone()?;
        }
        Ok(())
    }

    /// A lone voter's campaign at start, once the committed entries are applied.
    fn campaign_alone(&mut self) -> Result<(), String> {
        if !self.campaign_alone || self.driver.applied_index() < self.driver.commit_index() {
            return Ok(());
        }
        self.campaign_alone = false;
        if self.driver.is_leader() {
            return Ok(());
        }
        self.driver
            .campaign()
            .map_err(|e| format!("raft node {:x}: campaigning failed: {e}", self.driver.id()))
    }

    /// Takes a finished log sync: held acknowledgements leave, and raft may commit.
    fn poll_sync(&mut self) -> Result<(), String> {
        let transport = &self.transport;
        self.driver
            .poll_sync(&mut |msgs| transport.send_all(msgs))
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "raft node {:x}: syncing the log failed: {e}",
                    self.driver.id()
                )
            })
    }

    /// Takes the connections the transport handed over.
    fn take_handed(&mut self) {
        for conn in self.shared.take_handed() {
            if let Some((said, remote)) = conn.advertised() {
                if let Err(e) = self.transport.learn(conn.node(), said, remote) {
                    log::error!(
                        "raft node {:x}: cannot start the sender to node {:x}: {e}",
                        self.driver.id(),
                        conn.node()
                    );
                }
            }
            self.inbound.add(conn);
        }
    }

    /// Takes what is queued (at most a queue's worth, so the loop comes round), so it all
    /// goes into the next Ready. True when it stopped at that bound: more may be queued.
    fn drain(&mut self) -> Result<bool, String> {
        for _ in 0..RAFT_REQUEST_QUEUE_DEPTH_MAX {
            match self.rx.try_recv() {
                Ok(req) => self.handle(req)?,
                Err(_) => return Ok(false),
            }
        }
        Ok(true)
    }

    fn handle(&mut self, req: Request) -> Result<(), String> {
        match req {
            Request::Propose {
                entries,
                fence_term,
                chain,
                reply,
            } => self.propose(entries, fence_term, chain, reply),
            Request::ConfChange { cc, reply } => self.propose_conf_change(cc, reply),
            Request::Compact { index, reply } => {
                let result = self.compact(index);
                let fatal = match &result {
                    Err(CompactError::Failed(e)) if e.is_fatal() => Some(format!(
                        "raft node {:x}: compaction failed: {e}",
                        self.driver.id()
                    )),
                    _ => None,
                };
                answer(&reply, result);
                if let Some(reason) = fatal {
                    return Err(reason);
                }
            }
            // This node never sends to itself.
            Request::SetPeer { id, .. } if id == self.driver.id() => {}
            Request::SetPeer { id, addr } => {
                if let Err(e) = self.transport.set_peer(id, &addr) {
                    let me = self.driver.id();
                    log::error!("raft node {me:x}: cannot start the sender to node {id:x}: {e}");
                }
            }
            Request::RemovePeer { id } => self.transport.remove_peer(id),
            Request::TransferLeadership { reply } => {
                self.tell_recently_heard();
                answer(&reply, self.driver.transfer_leadership());
            }
        }
        Ok(())
    }

    fn step(&mut self, m: Message) {
        // Proposals never travel between ferrobus nodes (a follower refuses them instead of
        // forwarding), and read-index requests are not used: refusing them from the network
        // keeps a stale proposer from appending through the leader, and keeps malformed
        // ones (raft-rs aborts on an empty proposal) away from raft.
        if matches!(
            m.get_msg_type(),
            MessageType::MsgPropose | MessageType::MsgReadIndex | MessageType::MsgReadIndexResp
        ) {
            log::debug!(
                "raft node {:x}: dropped a {:?} from node {:x}",
                self.driver.id(),
                m.get_msg_type(),
                m.from
            );
            return;
        }
        let (from, ty) = (m.from, m.get_msg_type());
        self.heard.insert(from, Instant::now());
        if let Err(e) = self.driver.step(m) {
            log::debug!(
                "raft node {:x}: {ty:?} from node {from:x} refused: {e}",
                self.driver.id()
            );
        }
    }

    fn propose(
        &mut self,
        entries: Vec<(u8, Vec<u8>)>,
        fence_term: Option<u64>,
        chain: Option<u64>,
        reply: SyncSender<Result<u64, ProposeError>>,
    ) {
        if chain.is_some_and(|c| self.broken_chains.contains(&c)) {
            answer(&reply, Err(ProposeError::ChainBroken));
            return;
        }
        let count = entries.len() as u64;
        match self.try_propose(entries, fence_term) {
            Ok(index) => {
                bump(&self.shared.proposed_entries, count);
                self.add_pending(index, Reply::Propose(reply));
            }
            Err(e) => {
                if let Some(c) = chain {
                    self.break_chain(c);
                }
                answer(&reply, Err(e))
            }
        }
    }

    /// Refuses every later proposal of `chain`. Only the newest chains are remembered:
    /// a proposer starts a new chain for each sequence, and stops proposing in one soon
    /// after a refusal.
    fn break_chain(&mut self, chain: u64) {
        self.broken_chains.insert(chain);
        while self.broken_chains.len() > RAFT_BROKEN_CHAINS_KEPT {
            self.broken_chains.pop_first();
        }
    }

    fn try_propose(
        &mut self,
        entries: Vec<(u8, Vec<u8>)>,
        fence_term: Option<u64>,
    ) -> Result<u64, ProposeError> {
        let current_term = self.driver.term();
        if let Some(fence_term) = fence_term {
            if fence_term != current_term {
                return Err(ProposeError::TermChanged {
                    fence_term,
                    current_term,
                });
            }
        }
        self.check_leader()?;
        check_entries(&entries)?;
        self.driver.propose_batch(entries).map_err(refused_proposal)
    }

    fn check_leader(&self) -> Result<(), ProposeError> {
        if self.driver.is_leader() {
            Ok(())
        } else {
            Err(ProposeError::NotLeader {
                leader_id: self.driver.leader_id(),
            })
        }
    }

    /// Tells the driver the peers heard from within `PEER_ACTIVE_WINDOW_MS`, among which a
    /// leader that leaves or stops picks its successor.
    fn tell_recently_heard(&mut self) {
        let window = Duration::from_millis(crate::limits::PEER_ACTIVE_WINDOW_MS);
        let heard = (self.heard.iter())
            .filter(|(_, at)| at.elapsed() < window)
            .map(|(id, _)| *id)
            .collect();
        self.driver.set_recently_heard(heard);
    }

    fn propose_conf_change(&mut self, cc: ConfChange, reply: SyncSender<Result<(), ProposeError>>) {
        self.tell_recently_heard();
        let result = self.check_leader().and_then(|()| {
            self.driver
                .propose_conf_change(cc)
                .map_err(refused_proposal)
        });
        match result {
            Ok(()) => {
                let index = self.driver.last_index();
                self.add_pending(index, Reply::ConfChange(reply));
            }
            Err(e) => answer(&reply, Err(e)),
        }
    }

    fn add_pending(&mut self, index: u64, reply: Reply) {
        self.proposed_since_ready = true;
        let term = self.driver.term();
        let p = Pending {
            term,
            reply,
            since: Instant::now(),
        };
        if let Some(old) = self.pending.insert(index, p) {
            // Only possible if an entry at this index was replaced without being applied.
            old.fail(ProposeError::Dropped).send();
        }
    }

    fn compact(&mut self, index: u64) -> Result<u64, CompactError> {
        let applied = self.driver.applied_index();
        if index > applied {
            return Err(CompactError::NotApplied { index, applied });
        }
        let stored = self
            .driver
            .storage()
            .stored_snapshot()
            .map_or(0, |s| s.get_metadata().index);
        if stored < index {
            let data = self
                .sm
                .snapshot_data()
                .ok_or(CompactError::InsideTransaction)?;
            self.driver
                .store_snapshot(data)
                .map_err(CompactError::Failed)?;
        }
        let transport = &self.transport;
        self.driver
            .compact(index, &mut |msgs| transport.send_all(msgs))
            .map_err(CompactError::Failed)?;
        log::info!("raft node {:x}: log compacted to {index}", self.driver.id());
        Ok(index)
    }

    fn report_transport(&mut self) {
        for id in self.transport.take_unreachable() {
            self.driver.report_unreachable(id);
        }
        for (id, status) in self.transport.take_snapshot_reports() {
            self.driver.report_snapshot(id, status);
        }
    }

    /// Handles one Ready, if raft has one, and everything that follows from it.
    fn ready(&mut self) -> Result<(), String> {
        if !self.driver.has_ready() {
            return Ok(());
        }
        let id = self.driver.id();
        let failed = |e: ConsensusError| format!("raft node {id:x}: handling a Ready failed: {e}");
        let transport = &self.transport;
        let Some((early, pending)) = self
            .driver
            .begin_ready(&mut |msgs| transport.send_all(msgs))
            .map_err(failed)?
        else {
            return Ok(());
        };
        // What this Ready commits is already durable here: applied (and the dump threads
        // woken) before this Ready's own fsync, not after it.
        self.apply_output(early);
        if !self.answers.is_empty() {
            self.publish_and_answer();
        }
        let transport = &self.transport;
        let out = self
            .driver
            .finish_ready(pending, &mut |msgs| transport.send_all(msgs))
            .map_err(failed)?;
        bump(&self.shared.readies, 1);
        if std::mem::take(&mut self.proposed_since_ready) {
            bump(&self.shared.append_rounds, 1);
        }
        let snapshot_requested = out.snapshot_requested;
        self.apply_output(out);
        if snapshot_requested {
            self.store_requested_snapshot()?;
        }
        self.publish_and_answer();
        Ok(())
    }

    /// Publishes the status, then sends the answers: an answer never runs ahead of the
    /// status its caller may read next.
    fn publish_and_answer(&mut self) {
        self.shared
            .publish(status_of(&self.driver, &self.heard, self.leading_since));
        for a in self.answers.drain(..) {
            a.send();
        }
    }

    fn apply_output(&mut self, out: ReadyOutput) {
        if let Some(snapshot) = &out.snapshot {
            let meta = snapshot.get_metadata();
            self.sm.restore(meta.index, meta.term, &snapshot.data);
            self.fail_pending_through(meta.index, ProposeError::Dropped);
        }
        let mut done = Vec::with_capacity(out.committed.len());
        let mut normal = Vec::with_capacity(out.committed.len());
        for e in out.committed {
            done.push((e.index, e.term, e.get_entry_type()));
            if e.get_entry_type() == EntryType::EntryNormal {
                normal.push(applied_of(e));
            }
        }
        if !normal.is_empty() {
            self.sm.apply(normal);
        }
        if let Some(cs) = &out.conf_state {
            self.sm
                .on_conf_state(&sorted(&cs.voters), &sorted(&cs.learners));
        }
        for (index, term, entry_type) in done {
            self.complete(index, term, entry_type);
        }
        // Nothing at or below the applied index can complete any more.
        self.fail_pending_through(self.driver.applied_index(), ProposeError::Dropped);
        match (self.leading_since.is_some(), out.is_leader) {
            (false, true) => self.leading_since = Some(Instant::now()),
            (true, false) => {
                self.leading_since = None;
                let leader_id = out.leader_id;
                for (_, p) in std::mem::take(&mut self.pending) {
                    self.answers
                        .push(p.fail(ProposeError::NotLeader { leader_id }));
                }
            }
            _ => {}
        }
    }

    /// Answers the proposal whose last entry is the applied entry `index`.
    fn complete(&mut self, index: u64, term: u64, entry_type: EntryType) {
        let Some(p) = self.pending.remove(&index) else {
            return;
        };
        let a = if p.term != term {
            p.fail(ProposeError::Dropped)
        } else {
            match p.reply {
                Reply::Propose(tx) => {
                    self.shared.proposals.record(p.since.elapsed());
                    Answer::Propose(tx, Ok(index))
                }
                // raft-rs swaps a conf change it will not take for an empty normal entry.
                Reply::ConfChange(tx) if entry_type == EntryType::EntryNormal => {
                    let reason = "another membership change is still in progress";
                    Answer::ConfChange(tx, Err(ProposeError::Refused(reason.into())))
                }
                Reply::ConfChange(tx) => Answer::ConfChange(tx, Ok(())),
            }
        };
        self.answers.push(a);
    }

    fn fail_pending_through(&mut self, index: u64, e: ProposeError) {
        let rest = self.pending.split_off(&(index + 1));
        for (_, p) in std::mem::replace(&mut self.pending, rest) {
            self.answers.push(p.fail(e.clone()));
        }
    }

    /// raft needs a snapshot newer than the stored one to catch a follower up.
    fn store_requested_snapshot(&mut self) -> Result<(), String> {
        let id = self.driver.id();
        let Some(data) = self.sm.snapshot_data() else {
            // raft asks again when it next needs it (a transaction ends soon).
            log::debug!("raft node {id:x}: a snapshot must wait for the open transaction");
            return Ok(());
        };
        match self.driver.store_snapshot(data) {
            Ok(index) => {
                log::info!("raft node {id:x}: stored a snapshot at {index} for a follower");
                Ok(())
            }
            Err(e) if e.is_fatal() => Err(format!("raft node {id:x}: storing a snapshot: {e}")),
            Err(e) => {
                // raft asks again when it next needs it.
                log::error!("raft node {id:x}: cannot store a snapshot: {e}");
                Ok(())
            }
        }
    }

    /// Stops: every waiting request fails with `Shutdown`, the transport stops, and the
    /// published status says the node is not running.
    fn finish(self) {
        let Runner {
            driver,
            transport,
            rx,
            shared,
            pending,
            answers,
            ..
        } = self;
        shared.stop.store(true, Ordering::SeqCst);
        // Answers of a Ready that did not finish: those entries were applied.
        for a in answers {
            a.send();
        }
        for (_, p) in pending {
            p.fail(ProposeError::Shutdown).send();
        }
        while let Ok(req) = rx.try_recv() {
            req.fail_shutdown();
        }
        drop(rx);
        // Connections handed over too late (the handles keep `shared` alive, not them).
        drop(shared.take_handed());
        let mut status = status_of(&driver, &BTreeMap::new(), None);
        status.role = Role::Follower;
        status.leader_id = 0;
        status.running = false;
        shared.publish(status);
        transport.shutdown();
        log::info!("raft node {:x} stopped", driver.id());
    }
}

fn refused_proposal(e: ConsensusError) -> ProposeError {
    match e {
        // The caller checked leadership: raft dropped it for load or a transfer.
        ConsensusError::Raft(raft::Error::ProposalDropped) => ProposeError::Busy,
        ConsensusError::Unrepresentable { reason, .. } => ProposeError::Refused(reason),
        ConsensusError::HandingOver { to } => ProposeError::HandingOver { to },
        e => ProposeError::Refused(e.to_string()),
    }
}

fn applied_of(e: Entry) -> Applied {
    Applied {
        index: e.index,
        term: e.term,
        kind: e.context.first().copied().unwrap_or(0),
        data: e.data,
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::atomic::AtomicUsize;

    use raft::eraftpb::ConfChangeType;
    use tempfile::TempDir;

    use super::*;
    use crate::limits::RAFT_ELECTION_TICKS;

    const KIND: u8 = 3;
    /// Bound on every wait, so a broken cluster fails the test instead of hanging it.
    const WAIT: Duration = Duration::from_secs(60);

    #[derive(Default)]
    struct Record {
        applied: Vec<Applied>,
        restores: Vec<(u64, u64)>,
        confs: Vec<Vec<u64>>,
    }

    /// Holds the raft thread inside `apply` of an entry whose data is `pause`.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        cv: Condvar,
        waiting: AtomicUsize,
    }

    impl Gate {
        fn pass(&self) {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.cv.wait(open).unwrap();
            }
        }

        fn release(&self) {
            *self.open.lock().unwrap() = true;
            self.cv.notify_all();
        }
    }

    /// Records what it applies; its snapshot is the whole record of applied entries.
    struct TestSm {
        rec: Arc<Mutex<Record>>,
        gate: Option<Arc<Gate>>,
    }

    fn encode(applied: &[Applied]) -> Vec<u8> {
        let mut out = Vec::new();
        for a in applied {
            out.extend_from_slice(&a.index.to_le_bytes());
            out.extend_from_slice(&a.term.to_le_bytes());
            out.push(a.kind);
            out.extend_from_slice(&(a.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&a.data);
        }
        out
    }

    fn decode(mut b: &[u8]) -> Vec<Applied> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let index = u64::from_le_bytes(b[..8].try_into().unwrap());
            let term = u64::from_le_bytes(b[8..16].try_into().unwrap());
            let kind = b[16];
            let n = u32::from_le_bytes(b[17..21].try_into().unwrap()) as usize;
            let data = Bytes::copy_from_slice(&b[21..21 + n]);
            out.push(Applied {
                index,
                term,
                kind,
                data,
            });
            b = &b[21 + n..];
        }
        out
    }

    impl StateMachine for TestSm {
        fn apply(&mut self, entries: Vec<Applied>) {
            for e in entries {
                if e.data == b"boom"[..] {
                    panic!("test state machine asked to blow up");
                }
                if e.data == b"pause"[..] {
                    if let Some(gate) = &self.gate {
                        gate.pass();
                    }
                }
                self.rec.lock().unwrap().applied.push(e);
            }
        }

        fn snapshot_data(&mut self) -> Option<Vec<u8>> {
            Some(encode(&self.rec.lock().unwrap().applied))
        }

        fn restore(&mut self, index: u64, term: u64, data: &[u8]) {
            let mut rec = self.rec.lock().unwrap();
            rec.applied = decode(data);
            rec.restores.push((index, term));
        }

        fn on_conf_state(&mut self, voters: &[u64], _learners: &[u64]) {
            self.rec.lock().unwrap().confs.push(voters.to_vec());
        }
    }

    struct TestNode {
        id: u64,
        dir: TempDir,
        rec: Arc<Mutex<Record>>,
        fatal: Arc<Mutex<Vec<String>>>,
        node: Option<RaftNode>,
        handle: RaftHandle,
        addr: String,
    }

    impl TestNode {
        fn start(
            id: u64,
            cluster_id: u64,
            dir: TempDir,
            peers: Vec<(u64, String)>,
            bootstrap_voters: Option<Vec<u64>>,
            gate: Option<Arc<Gate>>,
        ) -> TestNode {
            let rec = Arc::new(Mutex::new(Record::default()));
            let fatal = Arc::new(Mutex::new(Vec::new()));
            let fatal_log = Arc::clone(&fatal);
            let on_fatal: FatalHook =
                Arc::new(move |reason: &str| fatal_log.lock().unwrap().push(reason.to_owned()));
            let cfg = NodeConfig {
                id,
                cluster_id,
                data_dir: dir.path().to_path_buf(),
                peer_listen: "127.0.0.1:0".into(),
                peer_advertise: String::new(),
                peers,
                bootstrap_voters,
                on_fatal: Some(on_fatal),
            };
            let sm = TestSm {
                rec: Arc::clone(&rec),
                gate,
            };
            let node = RaftNode::start(cfg, Box::new(sm)).unwrap();
            TestNode {
                id,
                dir,
                rec,
                fatal,
                handle: node.handle(),
                addr: node.peer_addr().to_string(),
                node: Some(node),
            }
        }

        fn applied(&self) -> Vec<Applied> {
            self.rec.lock().unwrap().applied.clone()
        }

        /// Data of the applied non-empty entries, as strings.
        fn data(&self) -> Vec<String> {
            self.applied()
                .into_iter()
                .filter(|a| a.kind != 0)
                .map(|a| String::from_utf8(a.data.to_vec()).unwrap())
                .collect()
        }

        fn stop(&mut self) {
            if let Some(node) = self.node.take() {
                node.shutdown();
            }
            assert!(self.fatal.lock().unwrap().is_empty(), "node {}", self.id);
        }
    }

    fn cluster(ids: &[u64], cluster_id: u64) -> Vec<TestNode> {
        let nodes: Vec<TestNode> = ids
            .iter()
            .map(|&id| {
                let dir = tempfile::tempdir().unwrap();
                TestNode::start(id, cluster_id, dir, Vec::new(), Some(ids.to_vec()), None)
            })
            .collect();
        for a in &nodes {
            for b in &nodes {
                if a.id != b.id {
                    a.handle.set_peer(b.id, &b.addr);
                }
            }
        }
        nodes
    }

    fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until exactly one of `nodes` leads and all of them follow it in one term.
    fn leader(nodes: &[&TestNode]) -> u64 {
        wait_for("one leader", || {
            let st: Vec<RaftStatus> = nodes.iter().map(|n| n.handle.status()).collect();
            let leaders: Vec<&RaftStatus> = st.iter().filter(|s| s.is_leader()).collect();
            match leaders[..] {
                [l] if st.iter().all(|s| s.leader_id == l.id && s.term == l.term) => Some(l.id),
                _ => None,
            }
        })
    }

    fn node(nodes: &[TestNode], id: u64) -> &TestNode {
        nodes.iter().find(|n| n.id == id).unwrap()
    }

    fn recv<T>(rx: Receiver<T>) -> T {
        rx.recv_timeout(WAIT).unwrap()
    }

    fn propose(h: &RaftHandle, data: &str) -> u64 {
        recv(h.propose(vec![(KIND, data.as_bytes().to_vec())], None)).unwrap()
    }

    /// Waits until every node applied exactly what `reference` applied, which includes
    /// `last` (the index of the last proposal).
    fn wait_same(nodes: &[&TestNode], reference: &TestNode, last: u64) -> Vec<Applied> {
        wait_for("the same applied entries everywhere", || {
            let want = reference.applied();
            let done = want.last().is_some_and(|a| a.index >= last)
                && nodes.iter().all(|n| n.applied() == want);
            done.then_some(want)
        })
    }

    fn strings(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn three_nodes_elect_one_leader_apply_in_order_and_refuse_bad_proposals() {
        let mut nodes = cluster(&[1, 2, 3], 0x11);
        let all: Vec<&TestNode> = nodes.iter().collect();
        let l = leader(&all);
        let lh = node(&nodes, l).handle.clone();
        let mut last = 0;
        for (i, data) in strings("e", 10).iter().enumerate() {
            let index = propose(&lh, data);
            assert!(index > last, "{index} after {last}");
            last = index;
            // Completed means applied on this node.
            let applied = node(&nodes, l).applied();
            let entry = applied.iter().find(|a| a.index == index).unwrap();
            assert_eq!((entry.kind, &entry.data[..]), (KIND, data.as_bytes()));
            assert_eq!(i + 1, node(&nodes, l).data().len());
        }
        // A batch is contiguous and answered with the last index.
        let batch = vec![
            (KIND, b"b0".to_vec()),
            (1, b"b1".to_vec()),
            (2, b"b2".to_vec()),
        ];
        let index = recv(lh.propose(batch, None)).unwrap();
        assert_eq!(index, last + 3);
        let applied = wait_same(&all, node(&nodes, l), index);
        let tail: Vec<(u64, u8, &[u8])> = applied[applied.len() - 3..]
            .iter()
            .map(|a| (a.index, a.kind, &a.data[..]))
            .collect();
        assert_eq!(
            tail,
            vec![
                (index - 2, KIND, &b"b0"[..]),
                (index - 1, 1, b"b1"),
                (index, 2, b"b2")
            ]
        );
        let mut expect = strings("e", 10);
        expect.extend(strings("b", 3));
        for n in &nodes {
            assert_eq!(n.data(), expect, "node {}", n.id);
        }
        // Indices strictly increase, and the new leader's empty entry is applied too.
        assert!(applied.windows(2).all(|w| w[0].index + 1 == w[1].index));
        assert_eq!(applied[0].kind, 0);

        // The published status: roles, the log's indexes, and on the leader each follower's
        // progress (caught up once it applied everything); every node timed its log syncs.
        let status = lh.status();
        assert_eq!(status.role, Role::Leader);
        assert_eq!(status.first_index, 1);
        let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != l).collect();
        wait_for("followers matched", || {
            let s = lh.status();
            let caught_up = s
                .peers
                .iter()
                .all(|(p, heard)| p.matched == index && p.state == "replicate" && heard.is_some());
            let ids: Vec<u64> = s.peers.iter().map(|(p, _)| p.id).collect();
            (ids == followers && caught_up).then_some(())
        });
        for n in &nodes {
            let s = n.handle.status();
            if n.id != l {
                assert_eq!((s.role, s.leader_id), (Role::Follower, l), "node {}", n.id);
                assert!(s.peers.is_empty(), "node {}", n.id);
            }
            assert!(s.last_index >= index, "node {}", n.id);
            // A leader may apply before its own sync ends (a quorum of others has it).
            wait_for("durable", || {
                (n.handle.status().persisted >= index).then_some(())
            });
            let syncs = n.handle.log_sync_latency();
            assert!(syncs.count() > 0, "node {}: no log sync timed", n.id);
            assert!(syncs.max_us >= syncs.quantile_us(0.5), "node {}", n.id);
            // Only the leader took proposals: each accepted one is timed once, when applied.
            let proposals = n.handle.proposal_latency();
            if n.id == l {
                assert!(proposals.count() >= 1, "leader: no proposal timed");
                assert!(proposals.max_us >= proposals.quantile_us(0.5));
            } else {
                assert_eq!(proposals.count(), 0, "node {}", n.id);
            }
        }

        let status = lh.status();
        assert!(status.is_leader() && status.running);
        assert_eq!(status.voters, vec![1, 2, 3]);
        assert_eq!((status.commit, status.applied), (index, index));
        assert!(
            status.leading_since.is_some(),
            "a leader says since when it leads"
        );
        let f = nodes.iter().find(|n| n.id != l).unwrap();
        wait_for("the follower to know the leader", || {
            (f.handle.status().leader_id == l).then_some(())
        });
        assert_eq!(f.handle.status().leading_since, None);
        assert_eq!(
            recv(f.handle.propose(vec![(KIND, b"x".to_vec())], None)),
            Err(ProposeError::NotLeader { leader_id: l })
        );
        let term = status.term;
        assert_eq!(
            recv(lh.propose(vec![(KIND, b"x".to_vec())], Some(term + 1))),
            Err(ProposeError::TermChanged {
                fence_term: term + 1,
                current_term: term
            })
        );
        assert_eq!(
            recv(lh.propose(vec![(KIND, b"y".to_vec())], Some(term - 1))),
            Err(ProposeError::TermChanged {
                fence_term: term - 1,
                current_term: term
            })
        );
        let fenced = recv(lh.propose(vec![(KIND, b"fenced".to_vec())], Some(term))).unwrap();
        assert_eq!(fenced, index + 1);
        let big = vec![0; ENTRY_PAYLOAD_MAX + 1];
        assert!(matches!(
            recv(lh.propose(vec![(KIND, b"ok".to_vec()), (KIND, big)], None)),
            Err(ProposeError::TooLarge { .. })
        ));
        for bad in [
            vec![],
            vec![(0, b"z".to_vec())],
            vec![(0x40, b"z".to_vec())],
        ] {
            assert!(matches!(
                recv(lh.propose(bad, None)),
                Err(ProposeError::Refused(_))
            ));
        }
        let applied = wait_same(&all, node(&nodes, l), fenced);
        // Refused proposals appended nothing.
        assert_eq!(applied.last().unwrap().data, &b"fenced"[..]);
        assert_eq!(lh.status().term, term);
        for n in &mut nodes {
            n.stop();
        }
    }

    #[test]
    fn a_refused_proposal_breaks_its_chain_and_only_its_chain() {
        let dir = tempfile::tempdir().unwrap();
        let n = TestNode::start(9, 0x33, dir, Vec::new(), Some(vec![9]), None);
        wait_for("the lone node to lead", || {
            n.handle.status().is_leader().then_some(())
        });
        let h = &n.handle;
        let term = h.status().term;
        let entry = |data: &str| vec![(KIND, data.as_bytes().to_vec())];
        let chain = h.new_chain();
        assert!(recv(h.propose_in_chain(entry("c1"), Some(term), chain)).is_ok());
        // Refused for its fence; the chain's next proposal is refused too, though it alone
        // would be taken.
        assert!(matches!(
            recv(h.propose_in_chain(entry("x"), Some(term + 1), chain)),
            Err(ProposeError::TermChanged { .. })
        ));
        assert_eq!(
            recv(h.propose_in_chain(entry("x"), Some(term), chain)),
            Err(ProposeError::ChainBroken)
        );
        // Pipelined: both sent before either is answered. The raft thread takes them in
        // order, so the second never lands after the refused first.
        let other = h.new_chain();
        assert_ne!(other, chain);
        let bad = h.propose_in_chain(vec![(0, b"bad kind".to_vec())], Some(term), other);
        let after = h.propose_in_chain(entry("x"), Some(term), other);
        assert!(matches!(recv(bad), Err(ProposeError::Refused(_))));
        assert_eq!(recv(after), Err(ProposeError::ChainBroken));
        // Other chains, and proposals outside any chain, are untouched.
        let fresh = h.new_chain();
        assert!(recv(h.propose_in_chain(entry("c2"), Some(term), fresh)).is_ok());
        assert!(recv(h.propose(entry("c3"), Some(term))).is_ok());
        assert_eq!(n.data(), ["c1", "c2", "c3"]);
    }

    #[test]
    fn one_node_cluster_elects_itself_and_groups_queued_proposals() {
        let gate = Arc::new(Gate::default());
        let dir = tempfile::tempdir().unwrap();
        let mut n = TestNode::start(7, 0x22, dir, Vec::new(), Some(vec![7]), Some(gate.clone()));
        wait_for("the lone node to lead", || {
            n.handle.status().is_leader().then_some(())
        });
        // It campaigned at once, not after an election timeout (10 to 20 ticks).
        let ticks = n.handle.stats().ticks;
        assert!(
            ticks < RAFT_ELECTION_TICKS as u64,
            "led after {ticks} ticks"
        );
        // Once at start, once more when the founder's AddNode(7) at index 1 was applied
        // (it changes nothing); no snapshot to restore from.
        assert_eq!(n.rec.lock().unwrap().confs, vec![vec![7], vec![7]]);
        assert!(n.rec.lock().unwrap().restores.is_empty());
        let first = propose(&n.handle, "a");
        // 1 the AddNode (not a normal entry: not applied to the state machine), 2 the
        // leader's empty entry, 3 ours.
        assert_eq!(first, 3);
        let empty = Applied {
            index: 2,
            term: 2,
            kind: 0,
            data: Bytes::new(),
        };
        assert_eq!(n.applied()[0], empty);
        // Hold the raft thread inside apply while 100 proposals queue up.
        let paused = n.handle.propose(vec![(KIND, b"pause".to_vec())], None);
        wait_for("the raft thread to pause", || {
            (gate.waiting.load(Ordering::SeqCst) == 1).then_some(())
        });
        let before = n.handle.stats();
        let rxs: Vec<_> = (0..100)
            .map(|i| {
                let data = format!("p{i}").into_bytes();
                n.handle.propose(vec![(KIND, data)], None)
            })
            .collect();
        gate.release();
        assert_eq!(recv(paused), Ok(first + 1));
        let indices: Vec<u64> = rxs.into_iter().map(|rx| recv(rx).unwrap()).collect();
        assert_eq!(indices, (first + 2..first + 102).collect::<Vec<_>>());
        let after = n.handle.stats();
        // All 100 went into one Ready, so one log fsync.
        assert_eq!(after.append_rounds - before.append_rounds, 1);
        assert_eq!(after.proposed_entries - before.proposed_entries, 100);
        let mut expect = vec!["a".to_string(), "pause".into()];
        expect.extend(strings("p", 100));
        assert_eq!(n.data(), expect);
        let before_restart = n.applied();
        let term = n.handle.status().term;

        // A restart replays the log into a fresh state machine and leads again.
        n.stop();
        let old = n.handle.clone();
        assert!(!old.status().running);
        let n2 = TestNode::start(7, 0x22, n.dir, Vec::new(), Some(vec![7]), None);
        let mut n2 = n2;
        wait_for("the restarted node to lead", || {
            n2.handle.status().is_leader().then_some(())
        });
        assert!(n2.handle.status().term > term);
        let last = propose(&n2.handle, "after");
        let applied = n2.applied();
        assert_eq!(&applied[..before_restart.len()], &before_restart[..]);
        assert_eq!(applied.last().unwrap().index, last);
        assert_eq!(n2.data().last().unwrap(), "after");
        // Replayed from index 1, not restored: the founder's AddNode was applied again.
        assert!(n2.rec.lock().unwrap().restores.is_empty());
        assert_eq!(n2.rec.lock().unwrap().confs, vec![vec![7], vec![7]]);
        n2.stop();
    }

    #[test]
    fn leader_shutdown_fails_over_and_the_restarted_node_catches_up() {
        let ids = [1, 2, 3];
        let mut nodes = cluster(&ids, 0x33);
        let all: Vec<&TestNode> = nodes.iter().collect();
        let old = leader(&all);
        for data in strings("a", 5) {
            propose(&node(&nodes, old).handle, &data);
        }
        let pos = nodes.iter().position(|n| n.id == old).unwrap();
        let mut dead = nodes.remove(pos);
        let (gen, _) = dead.handle.status_with_generation();
        dead.stop();
        let (gen2, st) = dead.handle.wait_change(gen, WAIT);
        assert!(gen2 > gen);
        assert!(!st.running && !st.is_leader());
        assert_eq!(
            recv(dead.handle.propose(vec![(KIND, b"late".to_vec())], None)),
            Err(ProposeError::Shutdown)
        );

        let rest: Vec<&TestNode> = nodes.iter().collect();
        let new = leader(&rest);
        assert_ne!(new, old);
        let nh = node(&nodes, new).handle.clone();
        for data in strings("b", 5) {
            propose(&nh, &data);
        }
        // The old leader comes back from its data directory, on a new port.
        let peers: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
        let back = TestNode::start(old, 0x33, dead.dir, peers, Some(ids.to_vec()), None);
        for n in &nodes {
            n.handle.set_peer(old, &back.addr);
        }
        let last = propose(&nh, "c");
        nodes.push(back);
        let all: Vec<&TestNode> = nodes.iter().collect();
        let applied = wait_same(&all, node(&nodes, new), last);
        let mut expect = strings("a", 5);
        expect.extend(strings("b", 5));
        expect.push("c".into());
        assert_eq!(node(&nodes, old).data(), expect);
        assert!(applied.iter().any(|a| a.kind == 0 && a.index > 1));
        assert_eq!(leader(&all), new);
        for n in &mut nodes {
            n.stop();
        }
    }

    fn add_node(id: u64) -> ConfChange {
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = id;
        cc
    }

    #[test]
    fn added_node_catches_up_through_a_snapshot_after_compaction() {
        let mut nodes = cluster(&[1, 2, 3], 0x44);
        let all: Vec<&TestNode> = nodes.iter().collect();
        let l = leader(&all);
        let lh = node(&nodes, l).handle.clone();
        let mut last = 0;
        for data in strings("s", 20) {
            last = propose(&lh, &data);
        }
        let compacted = last;
        assert_eq!(recv(lh.compact(compacted)).unwrap(), compacted);
        assert!(matches!(
            recv(lh.compact(last + 100)),
            Err(CompactError::NotApplied { .. })
        ));
        let peers: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
        let dir = tempfile::tempdir().unwrap();
        let fourth = TestNode::start(4, 0x44, dir, peers, None, None);
        assert_eq!(fourth.handle.status().voters, Vec::<u64>::new());
        for n in &nodes {
            n.handle.set_peer(4, &fourth.addr);
        }
        recv(lh.conf_change(add_node(4))).unwrap();
        assert_eq!(lh.status().voters, vec![1, 2, 3, 4]);
        let mut expect = strings("s", 20);
        for data in strings("t", 2) {
            last = propose(&lh, &data);
            expect.push(data);
        }
        nodes.push(fourth);
        let all: Vec<&TestNode> = nodes.iter().collect();
        wait_same(&all, node(&nodes, l), last);
        let n4 = node(&nodes, 4);
        assert_eq!(n4.data(), expect);
        let restores = n4.rec.lock().unwrap().restores.clone();
        assert_eq!(restores.len(), 1, "{restores:?}");
        // A fresh snapshot, past the compacted one: it must include node 4's AddNode.
        assert!(restores[0].0 > compacted, "{restores:?}");
        assert_eq!(n4.rec.lock().unwrap().confs.last(), Some(&vec![1, 2, 3, 4]));
        let st = wait_for("node 4 to follow the leader", || {
            let st = n4.handle.status();
            (st.leader_id == l).then_some(st)
        });
        assert_eq!(st.voters, vec![1, 2, 3, 4]);
        assert_eq!(
            node(&nodes, l).rec.lock().unwrap().confs.last(),
            Some(&vec![1, 2, 3, 4])
        );
        for n in &mut nodes {
            n.stop();
        }
    }

    #[test]
    fn added_node_replays_the_log_from_index_1_when_nothing_is_compacted() {
        let mut nodes = cluster(&[1, 2, 3], 0x77);
        let all: Vec<&TestNode> = nodes.iter().collect();
        let l = leader(&all);
        let lh = node(&nodes, l).handle.clone();
        let mut expect = strings("s", 5);
        for data in &expect {
            propose(&lh, data);
        }
        let peers: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
        let dir = tempfile::tempdir().unwrap();
        let fourth = TestNode::start(4, 0x77, dir, peers, None, None);
        assert_eq!(fourth.handle.status().voters, Vec::<u64>::new());
        for n in &nodes {
            n.handle.set_peer(4, &fourth.addr);
        }
        recv(lh.conf_change(add_node(4))).unwrap();
        let mut last = 0;
        for data in strings("t", 2) {
            last = propose(&lh, &data);
            expect.push(data);
        }
        nodes.push(fourth);
        let all: Vec<&TestNode> = nodes.iter().collect();
        let applied = wait_same(&all, node(&nodes, l), last);
        let mut n4 = nodes.pop().unwrap();
        assert_eq!(n4.data(), expect);
        // Everything from the leader's empty entry on, at the leader's indexes: node 4
        // applied the whole history, not a snapshot of it.
        assert_eq!(n4.applied(), applied);
        assert_eq!(applied[0].index, 4);
        let rec = n4.rec.lock().unwrap();
        assert!(rec.restores.is_empty(), "{:?}", rec.restores);
        // It started knowing no one and learned the members from the entries it replayed.
        assert_eq!(rec.confs.first(), Some(&Vec::new()));
        assert_eq!(rec.confs.last(), Some(&vec![1, 2, 3, 4]));
        drop(rec);
        let st = wait_for("node 4 to follow the leader", || {
            let st = n4.handle.status();
            (st.leader_id == l).then_some(st)
        });
        assert_eq!(st.voters, vec![1, 2, 3, 4]);
        // Its log starts at index 1 with the founders' AddNode entries.
        n4.stop();
        let (storage, recovery) = RaftStorage::open(n4.dir.path()).unwrap();
        assert!(recovery.initialized);
        assert_eq!(recovery.first_index, 1);
        assert_eq!(
            (recovery.snapshot_index, storage.stored_snapshot()),
            (0, None)
        );
        let entries = storage.reader();
        for (index, id) in [(1, 1), (2, 2), (3, 3)] {
            let r = entries.read(index).unwrap();
            assert_eq!(
                (r.term, r.kind),
                (1, crate::consensus::storage::KIND_CONF_CHANGE)
            );
            let cc = <ConfChange as protobuf::Message>::parse_from_bytes(&r.data).unwrap();
            assert_eq!(
                (cc.get_change_type(), cc.node_id),
                (ConfChangeType::AddNode, id)
            );
        }
        drop(storage);
        for n in &mut nodes {
            n.stop();
        }
    }

    #[test]
    fn shutdown_joins_and_frees_the_peer_port() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = TestNode::start(9, 0x55, dir, Vec::new(), Some(vec![9]), None);
        wait_for("the lone node to lead", || {
            n.handle.status().is_leader().then_some(())
        });
        let h = n.handle.clone();
        n.stop();
        // The listener is closed: the port can be bound again.
        TcpListener::bind(&n.addr).unwrap();
        let st = h.status();
        assert!(!st.running && !st.is_leader());
        assert_eq!(
            recv(h.propose(vec![(KIND, b"x".to_vec())], None)),
            Err(ProposeError::Shutdown)
        );
        assert!(matches!(recv(h.compact(1)), Err(CompactError::Shutdown)));
        assert_eq!(
            recv(h.conf_change(add_node(10))),
            Err(ProposeError::Shutdown)
        );
    }

    #[test]
    fn a_panic_on_the_raft_thread_is_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let n = TestNode::start(5, 0x66, dir, Vec::new(), Some(vec![5]), None);
        wait_for("the lone node to lead", || {
            n.handle.status().is_leader().then_some(())
        });
        let rx = n.handle.propose(vec![(KIND, b"boom".to_vec())], None);
        // The pending proposal fails (Shutdown, or its reply channel disconnects).
        assert!(!matches!(rx.recv_timeout(WAIT), Ok(Ok(_))));
        let reasons = wait_for("the fatal hook", || {
            let r = n.fatal.lock().unwrap().clone();
            (!r.is_empty()).then_some(r)
        });
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].contains("panicked"), "{reasons:?}");
        wait_for("the node to stop", || {
            (!n.handle.status().running).then_some(())
        });
        n.node.unwrap().shutdown();
    }
}
