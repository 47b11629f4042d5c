//! `Driver`: what the one raft thread does with its `RawNode`, without the thread and
//! without the network, so that a whole cluster can run in one test by routing messages.
//!
//! A Ready is handled in two halves (`begin_ready`, then `finish_ready`, the caller applying
//! what each hands out) in raft-rs's documented order: a leader's `messages()` may leave
//! before anything is persisted (Raft thesis 10.2.1); then the snapshot is installed, the
//! Ready's committed entries handed out (raft hands out only entries already persisted here,
//! so they need not wait for this Ready's fsync: `begin_ready`); then the entries appended
//! and the HardState recorded, all made durable with one `persist` (one log fsync, the
//! state file only when it changed); only then may `persisted_messages()` leave. After
//! `advance`, the light ready's commit index is persisted before its committed entries are
//! handed out, then `advance_apply` (`finish_ready`). Committed
//! conf changes are applied to raft (`apply_conf_change`) and the new ConfState is stored
//! before the half that hands them out returns.
//!
//! Asynchronous persistence (with a [`SyncWorker`], as the node runs): the usual Ready only
//! appends entries (readable by raft at once) and hands the log's fdatasync to the worker
//! (`advance_append_async`); its `persisted_messages()` are held until that sync is done
//! (`poll_sync`), then raft is told (`on_persist_ready`) and they leave, in Ready order.
//! Meanwhile the raft thread goes on: a leader counts its followers' acknowledgements and
//! commits with a majority that need not include itself, and a follower writes the next
//! appends while the previous ones sync; the next sync takes everything written meanwhile
//! (group commit across Readies). A Ready that must rewrite the state file (term, vote,
//! membership), install a snapshot or cut the log's tail waits for the running sync and
//! takes the synchronous path, as does compaction. So does a small append (at most
//! [`RAFT_INLINE_SYNC_BYTES_MAX`] of entry data, one transaction of steady replication)
//! when no sync is running: a follower's acknowledgement waits for the fdatasync either
//! way, a leader's append has already left for its followers, and syncing on the raft
//! thread spares the two thread wake-ups of the hand-off; large appends (catch-up), and the
//! small ones behind them, still overlap their syncs. Committed entries are handed out only
//! once persisted here (raft-rs caps them at its persisted index), so readers, which see
//! only synced entries, always see what is applied.
//!
//! This module must not open sockets, start threads, sleep, or interpret the data of normal
//! entries; the caller sends the messages and applies the committed entries.

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType,
    Snapshot,
};
use raft::{Config, RawNode, SnapshotStatus, StateRole};

use std::collections::VecDeque;

use crate::consensus::storage::{RaftStorage, NORMAL_KIND_MAX};
use crate::consensus::ConsensusError;
use crate::limits::{
    ENTRY_PAYLOAD_MAX, RAFT_COMMITTED_BYTES_PER_READY_MAX, RAFT_ELECTION_TICKS,
    RAFT_HEARTBEAT_TICKS, RAFT_INFLIGHT_MSGS_MAX, RAFT_INLINE_SYNC_BYTES_MAX, RAFT_MSG_BYTES_MAX,
    RAFT_UNCOMMITTED_BYTES_MAX,
};
use crate::storage::{StorageError, SyncJob};

/// Result of driver operations.
pub type Result<T> = std::result::Result<T, ConsensusError>;

/// What one half of a Ready (`begin_ready`, `finish_ready`) produced for the caller; the
/// messages went to its `send`.
#[derive(Debug, Default)]
pub struct ReadyOutput {
    /// A snapshot from the leader was installed: the state machine must restore from its
    /// data before applying `committed`.
    pub snapshot: Option<Snapshot>,
    /// Newly committed entries, to apply in order. Conf change entries among them have
    /// already been applied to raft; the empty entries of new leaders are included (they
    /// advance the applied index).
    pub committed: Vec<Entry>,
    /// The membership changed in this Ready (conf change applied or snapshot installed).
    pub conf_state: Option<ConfState>,
    /// Raft's view after this Ready.
    pub leader_id: u64,
    pub term: u64,
    pub is_leader: bool,
    /// Leader or role changed in this Ready.
    pub soft_state_changed: bool,
    /// raft needs a snapshot newer than the stored one (to catch up a follower, typically
    /// one added after the last snapshot): after applying `committed`, the caller should
    /// call `store_snapshot` with the state machine's data.
    pub snapshot_requested: bool,
}

/// A Ready whose first half [`Driver::begin_ready`] handled; [`Driver::finish_ready`] must
/// follow before raft is asked for anything else.
pub struct ReadyInProgress {
    rd: raft::Ready,
}

/// The raft-rs configuration ferrobus runs with (see the `RAFT_*` limits).
pub fn raft_config(id: u64, applied: u64) -> Config {
    Config {
        id,
        election_tick: RAFT_ELECTION_TICKS,
        heartbeat_tick: RAFT_HEARTBEAT_TICKS,
        applied,
        max_size_per_msg: RAFT_MSG_BYTES_MAX,
        max_inflight_msgs: RAFT_INFLIGHT_MSGS_MAX,
        max_uncommitted_size: RAFT_UNCOMMITTED_BYTES_MAX,
        max_committed_size_per_ready: RAFT_COMMITTED_BYTES_PER_READY_MAX,
        check_quorum: true,
        pre_vote: true,
        ..Config::default()
    }
}

/// A logger that drops raft-rs's log lines.
pub fn discard_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// Runs the log's fdatasyncs away from the raft thread, one job at a time (the node's sync
/// thread; a test's hand).
pub trait SyncWorker: Send {
    /// Starts running `job` (nothing else is running).
    fn submit(&mut self, job: SyncJob);
    /// The submitted job's outcome, if it has run.
    fn poll(&mut self) -> Option<SyncOutcome>;
    /// Waits for the submitted job's outcome (a worker that died answers with a fatal
    /// `SyncFailed`).
    fn wait(&mut self) -> SyncOutcome;
}

/// What a finished [`SyncJob`] reports: the index it made durable, and how it went.
pub type SyncOutcome = (u64, std::result::Result<(), StorageError>);

/// Where asynchronous persistence stands (see the module doc).
#[derive(Default)]
struct Persistence {
    worker: Option<Box<dyn SyncWorker>>,
    /// The Ready number the running sync job covers.
    in_flight: Option<u64>,
    /// The last Ready number whose entries are written.
    written: u64,
    /// The last Ready number raft was told is persisted.
    reported: u64,
    /// Each async Ready's `persisted_messages()`, until its sync is done.
    held: VecDeque<(u64, Vec<Message>)>,
}

/// The raft node of the raft thread.
pub struct Driver {
    raw: RawNode<RaftStorage>,
    storage: RaftStorage,
    persistence: Persistence,
    /// The last entry index handed out as committed (or restored from a snapshot).
    handed_out: u64,
    /// The nodes the raft thread heard from recently (`set_recently_heard`), among which a
    /// leader that leaves or stops picks its successor; None until told.
    recently_heard: Option<Vec<u64>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("id", &self.id())
            .field("term", &self.term())
            .field("leader_id", &self.leader_id())
            .field("commit_index", &self.commit_index())
            .finish()
    }
}

impl Driver {
    /// Starts raft node `id` on `storage`. `applied` is the index the state machine has
    /// applied (from its restored snapshot); entries after it up to the commit index come
    /// out of the first Readies again. An `applied` at or below the log's base
    /// means "from the base" (the state machine restored the stored snapshot).
    pub fn new(
        id: u64,
        storage: RaftStorage,
        applied: u64,
        logger: &slog::Logger,
    ) -> Result<Driver> {
        let commit = storage.hard_state().commit;
        if applied > commit {
            return Err(ConsensusError::AppliedAhead { applied, commit });
        }
        let base = storage.first_index() - 1;
        let applied = if applied > base { applied } else { 0 };
        let config = raft_config(id, applied);
        config.validate()?;
        let raw = RawNode::new(&config, storage.clone(), logger)?;
        Ok(Driver {
            raw,
            storage,
            persistence: Persistence::default(),
            handed_out: 0,
            recently_heard: None,
        })
    }

    /// The nodes heard from recently, for the choice of a successor when this leader is
    /// asked to leave or stops (raft-rs's own `recent_active` flags are reset every election
    /// timeout, so they may show every peer idle at the moment of asking).
    pub fn set_recently_heard(&mut self, ids: Vec<u64>) {
        self.recently_heard = Some(ids);
    }

    /// From now on the log's fdatasyncs run on `worker` (asynchronous persistence); without
    /// one, every Ready is made durable before `finish_ready` returns.
    pub fn set_sync_worker(&mut self, worker: Box<dyn SyncWorker>) {
        self.persistence.worker = Some(worker);
    }

    #[cfg(test)]
    fn has_sync_worker(&self) -> bool {
        self.persistence.worker.is_some()
    }

    /// Whether a sync job is running (its completion is picked up by `poll_sync`).
    #[cfg(test)]
    fn sync_in_flight(&self) -> bool {
        self.persistence.in_flight.is_some()
    }

    /// Advances the logical clock by one tick (every `RAFT_TICK_INTERVAL_MS`).
    pub fn tick(&mut self) -> bool {
        self.raw.tick()
    }

    /// Starts an election now (tests, leadership transfer targets).
    pub fn campaign(&mut self) -> Result<()> {
        Ok(self.raw.campaign()?)
    }

    /// Proposes a normal entry of `kind` (1..=0x3f, stored as the entry's context byte).
    /// Fails with `Raft(ProposalDropped)` when this node is not the leader: proposals are
    /// never forwarded by raft, so a deposed leader's proposals cannot reach the new one.
    pub fn propose(&mut self, kind: u8, data: Vec<u8>) -> Result<()> {
        self.check_leader()?;
        check_normal(kind, &data)?;
        Ok(self.raw.propose(vec![kind], data)?)
    }

    /// Proposes several normal entries as one raft message, so raft appends all of them or
    /// none (a batch is never left half-proposed by this node). Returns the index of the
    /// last. Fails like `propose`; an empty batch is refused (raft-rs would abort on it).
    pub fn propose_batch(&mut self, entries: Vec<(u8, Vec<u8>)>) -> Result<u64> {
        self.check_leader()?;
        if entries.is_empty() {
            let reason = "an empty proposal".to_owned();
            return Err(ConsensusError::Unrepresentable { index: 0, reason });
        }
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.id();
        for (kind, data) in entries {
            check_normal(kind, &data)?;
            m.mut_entries().push(Entry {
                context: vec![kind].into(),
                data: data.into(),
                ..Entry::default()
            });
        }
        self.raw.step(m)?;
        Ok(self.last_index())
    }

    /// `propose`, only while this node leads in `term` (the term its proposer started in):
    /// fences a proposer that has not yet noticed a leadership change.
    pub fn propose_in_term(&mut self, term: u64, kind: u8, data: Vec<u8>) -> Result<()> {
        if self.term() != term {
            return Err(ConsensusError::Raft(raft::Error::ProposalDropped));
        }
        self.propose(kind, data)
    }

    fn check_leader(&self) -> Result<()> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(ConsensusError::Raft(raft::Error::ProposalDropped))
        }
    }

    /// Proposes a single membership change. One that removes or demotes this leader is
    /// refused with `HandingOver`, and leadership is handed to another voter.
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<()> {
        self.check_leader()?;
        self.hand_over_instead_of_leaving(&[(cc.get_change_type(), cc.node_id)])?;
        Ok(self.raw.propose_conf_change(Vec::new(), cc)?)
    }

    /// Proposes a (possibly joint) membership change; see `propose_conf_change`.
    pub fn propose_conf_change_v2(&mut self, cc: ConfChangeV2) -> Result<()> {
        self.check_leader()?;
        let changes: Vec<_> = cc
            .changes
            .iter()
            .map(|c| (c.get_change_type(), c.node_id))
            .collect();
        self.hand_over_instead_of_leaving(&changes)?;
        Ok(self.raw.propose_conf_change(Vec::new(), cc)?)
    }

    /// raft-rs keeps a leader that removed itself leading, and aborts when it then persists
    /// entries (its own progress is gone): a leader asked to leave hands leadership to the
    /// voter whose log matches most instead (raft-rs catches it up, then has it campaign).
    fn hand_over_instead_of_leaving(&mut self, changes: &[(ConfChangeType, u64)]) -> Result<()> {
        let me = self.id();
        let leaving = changes.iter().any(|&(ty, id)| {
            id == me
                && matches!(
                    ty,
                    ConfChangeType::RemoveNode | ConfChangeType::AddLearnerNode
                )
        });
        if !leaving {
            return Ok(());
        }
        // A voter heard from recently, else any (a removal's quorum check keeps the first
        // from being empty, but the caller may not have told who was heard).
        let heard = self.successor(self.recently_heard.as_deref());
        let Some(to) = heard.or_else(|| self.successor(None)) else {
            let reason = "the only voter cannot leave the cluster".to_owned();
            return Err(ConsensusError::Raft(raft::Error::ConfChangeError(reason)));
        };
        self.raw.transfer_leader(to);
        Err(ConsensusError::HandingOver { to })
    }

    /// A leader about to stop hands leadership to the voter heard from recently (see
    /// `set_recently_heard`; not told, any) whose log matches most (raft-rs catches it up,
    /// then has it campaign at once), so that the cluster need not wait an election timeout.
    /// Answers the voter chosen; None when this node does not lead or no other voter was
    /// heard from.
    pub fn transfer_leadership(&mut self) -> Option<u64> {
        if self.raw.raft.state != raft::StateRole::Leader {
            return None;
        }
        let to = self.successor(self.recently_heard.as_deref())?;
        self.raw.transfer_leader(to);
        Some(to)
    }

    /// The other voter whose log matches this leader's most (only among `among` if given).
    fn successor(&self, among: Option<&[u64]>) -> Option<u64> {
        let me = self.id();
        let prs = self.raw.raft.prs();
        self.conf_state()
            .voters
            .into_iter()
            .filter(|&id| id != me)
            .filter(|id| among.is_none_or(|ids| ids.contains(id)))
            .max_by_key(|&id| prs.get(id).map_or(0, |p| p.matched))
    }

    /// Feeds a message from a peer.
    pub fn step(&mut self, m: Message) -> Result<()> {
        Ok(self.raw.step(m)?)
    }

    /// Tells raft a peer could not be reached (it slows down appends to it).
    pub fn report_unreachable(&mut self, id: u64) {
        self.raw.report_unreachable(id);
    }

    /// Tells raft how sending a snapshot to a peer ended.
    pub fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        self.raw.report_snapshot(id, status);
    }

    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
    }

    /// The first half of a Ready (None: raft has none): a leader's `messages()` leave, a
    /// received snapshot is installed, and the Ready's committed entries are handed out
    /// (their conf changes applied to raft) — before this Ready's new entries are made
    /// durable, as raft-rs's documented order allows: raft only hands out committed entries
    /// that are already persisted here, so applying them need not wait for the next fsync
    /// (on a follower, the commit of one transaction usually arrives with the next one's
    /// entries). The caller applies `committed`, then calls [`Driver::finish_ready`].
    pub fn begin_ready(
        &mut self,
        send: &mut dyn FnMut(Vec<Message>),
    ) -> Result<Option<(ReadyOutput, ReadyInProgress)>> {
        if !self.raw.has_ready() {
            return Ok(None);
        }
        let mut out = ReadyOutput::default();
        let mut rd = self.raw.ready();
        out.soft_state_changed = rd.ss().is_some();
        send_nonempty(send, rd.take_messages());
        if !rd.snapshot().is_empty() {
            // Installing resets the log: the running sync must be over first.
            self.wait_in_flight()?;
            let snapshot = rd.snapshot().clone();
            self.storage.apply_snapshot(snapshot.clone())?;
            out.conf_state = Some(snapshot.get_metadata().get_conf_state().clone());
            self.handed_out = self.handed_out.max(snapshot.get_metadata().index);
            out.snapshot = Some(snapshot);
        }
        let committed = rd.take_committed_entries();
        self.apply_conf_changes(&committed, &mut out);
        self.note_handed_out(&committed);
        out.committed = committed;
        out.leader_id = self.leader_id();
        out.term = self.term();
        out.is_leader = self.is_leader();
        Ok(Some((out, ReadyInProgress { rd })))
    }

    /// The second half of a Ready: its entries appended and its HardState recorded, made
    /// durable with one `persist`; then `persisted_messages()` leave; after `advance`, the
    /// light ready's commit index is recorded, its messages leave, and its committed
    /// entries (made durable by this Ready) are handed out, after a `persist` that makes any
    /// ConfState change durable; then `advance_apply`.
    ///
    /// With a [`SyncWorker`], a Ready that only appends (no snapshot, no cut of the log's
    /// tail, no term, vote or membership change) is not made durable here, unless it is a
    /// small append while no sync runs: see [`Driver::poll_sync`].
    pub fn finish_ready(
        &mut self,
        pending: ReadyInProgress,
        send: &mut dyn FnMut(Vec<Message>),
    ) -> Result<ReadyOutput> {
        let mut rd = pending.rd;
        if self.persistence.worker.is_some() && !self.needs_synchronous_path(&rd) {
            return self.finish_ready_async(rd, send);
        }
        let mut out = ReadyOutput::default();
        self.wait_in_flight()?;
        self.storage.append(rd.entries())?;
        if let Some(hs) = rd.hs() {
            self.storage.set_hard_state(hs.clone());
        }
        self.storage.persist()?;
        // Everything written is durable now: the held messages of earlier Readies first.
        while let Some((_, messages)) = self.persistence.held.pop_front() {
            send(messages);
        }
        send_nonempty(send, rd.take_persisted_messages());
        // `advance` tells raft that every Ready up to this one is persisted.
        self.persistence.written = rd.number();
        self.persistence.reported = rd.number();

        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.storage.set_commit(commit);
        }
        send_nonempty(send, light.take_messages());
        let committed = light.take_committed_entries();
        self.apply_conf_changes(&committed, &mut out);
        self.note_handed_out(&committed);
        out.committed = committed;
        // The commit index and ConfState are durable before these are applied.
        self.storage.persist()?;
        self.raw.advance_apply();
        self.fill_roles(&mut out);
        Ok(out)
    }

    /// A Ready that cannot wait for an asynchronous sync: a snapshot, entries that replace
    /// the log's tail (cutting it syncs), or a state file to rewrite; or one that is better
    /// made durable at once: a small append ([`RAFT_INLINE_SYNC_BYTES_MAX`]) while no sync
    /// runs (behind a running one, it waits for the next, as any append does, rather than
    /// block the raft thread).
    fn needs_synchronous_path(&self, rd: &raft::Ready) -> bool {
        let small_append = || {
            self.persistence.in_flight.is_none()
                && !rd.entries().is_empty()
                && rd.entries().iter().map(|e| e.data.len()).sum::<usize>()
                    <= RAFT_INLINE_SYNC_BYTES_MAX
        };
        !rd.snapshot().is_empty()
            || rd
                .entries()
                .first()
                .is_some_and(|e| e.index <= self.storage.last_index())
            || self.storage.needs_state_save(rd.hs())
            || small_append()
    }

    /// The asynchronous second half of a Ready: entries written (raft reads them back from
    /// storage), the commit index recorded, persisted messages held, and a sync started
    /// when none is running.
    fn finish_ready_async(
        &mut self,
        mut rd: raft::Ready,
        send: &mut dyn FnMut(Vec<Message>),
    ) -> Result<ReadyOutput> {
        self.storage.append(rd.entries())?;
        if let Some(hs) = rd.hs() {
            // Only the commit index changed (see `needs_synchronous_path`).
            self.storage.set_hard_state(hs.clone());
        }
        let number = rd.number();
        let messages = rd.take_persisted_messages();
        if !messages.is_empty() {
            self.persistence.held.push_back((number, messages));
        }
        self.raw.advance_append_async(rd);
        self.persistence.written = number;
        self.raw.advance_apply();
        if self.persistence.in_flight.is_none() {
            self.start_sync(send)?;
        }
        let mut out = ReadyOutput::default();
        self.fill_roles(&mut out);
        Ok(out)
    }

    /// Picks up a finished sync job, if any: the log becomes visible up to it, raft learns
    /// what is persisted (a leader may commit, so a Ready may follow), the held messages it
    /// covers leave, and the next job starts with whatever was written meanwhile. Returns
    /// whether a job finished. An error is fatal (as in `finish_ready`).
    pub fn poll_sync(&mut self, send: &mut dyn FnMut(Vec<Message>)) -> Result<bool> {
        let Some(number) = self.persistence.in_flight else {
            return Ok(false);
        };
        let Some(worker) = self.persistence.worker.as_mut() else {
            return Ok(false);
        };
        let Some((upto, outcome)) = worker.poll() else {
            return Ok(false);
        };
        self.persistence.in_flight = None;
        self.storage.finish_sync(upto, outcome)?;
        self.report_persisted(number, send);
        self.start_sync(send)?;
        Ok(true)
    }

    /// Starts a sync of what was written since the last one was reported.
    fn start_sync(&mut self, send: &mut dyn FnMut(Vec<Message>)) -> Result<()> {
        let number = self.persistence.written;
        if number <= self.persistence.reported {
            return Ok(());
        }
        match self.storage.begin_sync()? {
            Some(job) => {
                let Some(worker) = self.persistence.worker.as_mut() else {
                    unreachable!("only the asynchronous path leaves Readies unreported");
                };
                worker.submit(job);
                self.persistence.in_flight = Some(number);
            }
            // Those Readies wrote no entries, or a synchronous sync covered them.
            None => self.report_persisted(number, send),
        }
        Ok(())
    }

    /// Tells raft every Ready up to `number` is persisted and sends their held messages.
    fn report_persisted(&mut self, number: u64, send: &mut dyn FnMut(Vec<Message>)) {
        self.raw.on_persist_ready(number);
        self.persistence.reported = number;
        let covered = self.persistence.held.partition_point(|(n, _)| *n <= number);
        for (_, messages) in self.persistence.held.drain(..covered) {
            send(messages);
        }
    }

    /// Waits for the running sync job and publishes what it covered; raft is told later
    /// (by `advance` on the synchronous path, or `report_persisted`). Returns the Ready
    /// number it covered.
    fn wait_in_flight(&mut self) -> Result<Option<u64>> {
        let Some(number) = self.persistence.in_flight.take() else {
            return Ok(None);
        };
        let Some(worker) = self.persistence.worker.as_mut() else {
            unreachable!("a sync job runs only on a worker");
        };
        let (upto, outcome) = worker.wait();
        self.storage.finish_sync(upto, outcome)?;
        Ok(Some(number))
    }

    /// Forgets the log up to `index` (committed, covered by the stored snapshot), after the
    /// running sync, if any, is over. Messages that sync releases go to `send`.
    pub fn compact(&mut self, index: u64, send: &mut dyn FnMut(Vec<Message>)) -> Result<()> {
        if let Some(number) = self.wait_in_flight()? {
            self.report_persisted(number, send);
        }
        let compacted = self.storage.compact(index);
        // Compaction synced the log, so anything written since is durable too; refused, it
        // synced nothing, and the next sync must start all the same.
        self.start_sync(send)?;
        compacted
    }

    fn note_handed_out(&mut self, committed: &[Entry]) {
        if let Some(e) = committed.last() {
            self.handed_out = self.handed_out.max(e.index);
            self.storage.release_applied(self.handed_out);
        }
    }

    /// Applies committed conf changes to raft and stores the resulting ConfState. A change
    /// raft refuses is skipped on every node alike (it is deterministic), and logged.
    fn apply_conf_changes(&mut self, entries: &[Entry], out: &mut ReadyOutput) {
        for e in entries {
            let applied = match e.get_entry_type() {
                EntryType::EntryNormal => continue,
                // raft-rs never commits an empty v1 conf change; skip as its examples do.
                EntryType::EntryConfChange if e.data.is_empty() => continue,
                EntryType::EntryConfChange => ConfChange::parse_from_bytes(&e.data)
                    .map_err(ConsensusError::from)
                    .and_then(|cc| Ok(self.raw.apply_conf_change(&cc)?)),
                // An empty v2 change is the leader's "leave joint configuration".
                EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&e.data)
                    .map_err(ConsensusError::from)
                    .and_then(|cc| Ok(self.raw.apply_conf_change(&cc)?)),
            };
            match applied {
                Ok(cs) => {
                    self.storage.set_conf_state(cs.clone());
                    out.conf_state = Some(cs);
                }
                Err(e2) => log::error!(
                    "raft {}: conf change in entry {} not applied: {e2}",
                    self.id(),
                    e.index
                ),
            }
        }
    }

    fn fill_roles(&self, out: &mut ReadyOutput) {
        out.leader_id = self.leader_id();
        out.term = self.term();
        out.is_leader = self.is_leader();
        out.snapshot_requested = self.storage.take_snapshot_request();
    }

    /// Stores the state machine's snapshot `data`, taken at the applied index (with the
    /// membership raft runs with), for followers that need it. Call between Readies,
    /// after applying what they returned. Returns the snapshot's index.
    pub fn store_snapshot(&mut self, data: Vec<u8>) -> Result<u64> {
        let index = self.applied_index();
        let term = self.storage.term_of(index)?;
        let conf_state = self.storage.conf_state();
        self.storage.set_snapshot(data, index, term, conf_state)?;
        Ok(index)
    }

    pub fn id(&self) -> u64 {
        self.raw.raft.id
    }

    /// The leader this node knows of (0 when none).
    pub fn leader_id(&self) -> u64 {
        self.raw.raft.leader_id
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// This node's raft role.
    pub fn role(&self) -> Role {
        match self.raw.raft.state {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        }
    }

    /// Index of the first entry still in the log (after the last compaction).
    pub fn first_index(&self) -> u64 {
        self.storage.first_index()
    }

    /// Index of the last entry durable on this node.
    pub fn persisted_index(&self) -> u64 {
        self.raw.raft.raft_log.persisted
    }

    /// On the leader, what it knows of each other node's log (none elsewhere), by id.
    pub fn peer_progress(&self) -> Vec<PeerProgress> {
        if !self.is_leader() {
            return Vec::new();
        }
        let me = self.id();
        let mut peers: Vec<PeerProgress> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, pr)| PeerProgress {
                id: *id,
                matched: pr.matched,
                next: pr.next_idx,
                state: match pr.state {
                    raft::ProgressState::Probe => "probe",
                    raft::ProgressState::Replicate => "replicate",
                    raft::ProgressState::Snapshot => "snapshot",
                },
            })
            .collect();
        peers.sort_unstable_by_key(|p| p.id);
        peers
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// Index of the last entry in raft's log, including entries not yet persisted (a
    /// proposal's index right after it was accepted).
    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }

    /// Index of the last entry handed out as committed (the caller applies what a half of
    /// a Ready hands out before it asks; raft's own applied index follows only at the end
    /// of the Ready).
    pub fn applied_index(&self) -> u64 {
        self.handed_out.max(self.raw.raft.raft_log.applied)
    }

    /// The membership raft currently runs with.
    pub fn conf_state(&self) -> ConfState {
        self.raw.raft.prs().conf().to_conf_state()
    }

    pub fn storage(&self) -> &RaftStorage {
        &self.storage
    }
}

/// A node's raft role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    #[default]
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre_candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// The leader's view of another node's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    pub id: u64,
    /// The highest index known to be in that node's log.
    pub matched: u64,
    /// The next index the leader will send it.
    pub next: u64,
    /// "replicate" (streaming), "probe" (finding where the logs agree) or "snapshot".
    pub state: &'static str,
}

/// A normal entry's kind must be a stored kind byte and its data fit one log record.
fn check_normal(kind: u8, data: &[u8]) -> Result<()> {
    if !(1..=NORMAL_KIND_MAX).contains(&kind) {
        let reason = format!("entry kind {kind} is not in 1..={NORMAL_KIND_MAX}");
        return Err(ConsensusError::Unrepresentable { index: 0, reason });
    }
    if data.len() > ENTRY_PAYLOAD_MAX {
        let reason = format!("{} bytes, more than {ENTRY_PAYLOAD_MAX}", data.len());
        return Err(ConsensusError::Unrepresentable { index: 0, reason });
    }
    Ok(())
}

fn send_nonempty(send: &mut dyn FnMut(Vec<Message>), messages: Vec<Message>) {
    if !messages.is_empty() {
        send(messages);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, VecDeque};
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
    use std::sync::Arc;

    use raft::eraftpb::ConfChangeType;
    use raft::{GetEntriesContext, Storage};
    use tempfile::TempDir;

    use super::*;
    use crate::consensus::storage::INIT_INDEX;

    const KIND_TEST: u8 = 3;

    /// The test state machine: the (index, data) of every non-empty normal entry applied.
    type Applied = Vec<(u64, Vec<u8>)>;

    fn encode_sm(sm: &Applied) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, d) in sm {
            out.extend_from_slice(&i.to_le_bytes());
            out.extend_from_slice(&(d.len() as u32).to_le_bytes());
            out.extend_from_slice(d);
        }
        out
    }

    fn decode_sm(mut b: &[u8]) -> Applied {
        let mut out = Vec::new();
        while !b.is_empty() {
            let i = u64::from_le_bytes(b[..8].try_into().unwrap());
            let n = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
            out.push((i, b[12..12 + n].to_vec()));
            b = &b[12 + n..];
        }
        out
    }

    struct Node {
        dir: TempDir,
        driver: Option<Driver>,
        sm: Applied,
        /// While set, this node's sync jobs do not finish (asynchronous nodes only).
        hold: Arc<AtomicBool>,
        /// The most entry data one half of a Ready handed out.
        largest_handout: usize,
    }

    /// The test's sync worker: a job runs when the driver waits for it, or when polled
    /// unless the test holds it.
    struct HandSync {
        job: Option<SyncJob>,
        hold: Arc<AtomicBool>,
    }

    impl SyncWorker for HandSync {
        fn submit(&mut self, job: SyncJob) {
            assert!(self.job.is_none(), "one sync job at a time");
            self.job = Some(job);
        }

        fn poll(&mut self) -> Option<SyncOutcome> {
            if self.hold.load(AtomicOrdering::SeqCst) {
                return None;
            }
            let job = self.job.take()?;
            Some((job.upto(), job.run()))
        }

        fn wait(&mut self) -> SyncOutcome {
            let job = self.job.take().expect("a job was submitted");
            (job.upto(), job.run())
        }
    }

    /// Applies one half of a Ready to the test state machine.
    fn apply_to(sm: &mut Applied, out: ReadyOutput) {
        if let Some(s) = &out.snapshot {
            *sm = decode_sm(&s.data);
        }
        for e in out.committed {
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                assert_eq!(&e.context[..], &[KIND_TEST]);
                sm.push((e.index, e.data.to_vec()));
            }
        }
    }

    /// Odd ids persist asynchronously, even ones synchronously: every cluster test runs
    /// both paths side by side.
    fn is_asynchronous(id: u64) -> bool {
        id % 2 == 1
    }

    /// Opens the node's storage and restores its state machine from the stored snapshot,
    /// as the node thread does at startup.
    fn start(id: u64, dir: &Path) -> (Driver, Applied) {
        let (storage, _) = RaftStorage::open(dir).unwrap();
        let (sm, applied) = match storage.stored_snapshot() {
            Some(s) => (decode_sm(&s.data), s.get_metadata().index),
            None => (Vec::new(), 0),
        };
        let driver = Driver::new(id, storage, applied, &discard_logger()).unwrap();
        (driver, sm)
    }

    struct Cluster {
        nodes: BTreeMap<u64, Node>,
        isolated: BTreeSet<u64>,
        queue: VecDeque<Message>,
    }

    impl Cluster {
        fn new(ids: &[u64]) -> Cluster {
            let mut c = Cluster {
                nodes: BTreeMap::new(),
                isolated: BTreeSet::new(),
                queue: VecDeque::new(),
            };
            for &id in ids {
                let dir = tempfile::tempdir().unwrap();
                let (storage, _) = RaftStorage::open(dir.path()).unwrap();
                let cs = ConfState {
                    voters: ids.to_vec(),
                    ..ConfState::default()
                };
                storage.initialize(cs).unwrap();
                drop(storage);
                c.add(id, dir);
            }
            c
        }

        fn add(&mut self, id: u64, dir: TempDir) {
            let (driver, sm) = start(id, dir.path());
            let node = Node {
                dir,
                driver: Some(driver),
                sm,
                hold: Arc::new(AtomicBool::new(false)),
                largest_handout: 0,
            };
            self.nodes.insert(id, node);
        }

        fn d(&mut self, id: u64) -> &mut Driver {
            self.nodes.get_mut(&id).unwrap().driver.as_mut().unwrap()
        }

        fn live(&self) -> Vec<u64> {
            self.nodes
                .iter()
                .filter(|(_, n)| n.driver.is_some())
                .map(|(&id, _)| id)
                .collect()
        }

        fn handle_all_ready(&mut self) -> bool {
            let mut any = false;
            for id in self.live() {
                let node = self.nodes.get_mut(&id).unwrap();
                let driver = node.driver.as_mut().unwrap();
                if is_asynchronous(id) && !driver.has_sync_worker() {
                    // Also a restarted node's new driver.
                    let hold = node.hold.clone();
                    driver.set_sync_worker(Box::new(HandSync { job: None, hold }));
                }
                let queue = &mut self.queue;
                any |= driver.poll_sync(&mut |m| queue.extend(m)).unwrap();
                if !driver.has_ready() {
                    continue;
                }
                any = true;
                // As the node does: apply what each half hands out before going on.
                let mut send = |m: Vec<Message>| queue.extend(m);
                let (early, pending) = driver.begin_ready(&mut send).unwrap().unwrap();
                if let Some(e) = early.committed.last() {
                    // What the status reports as applied between the halves.
                    assert_eq!(driver.applied_index(), e.index);
                }
                let bytes = |out: &ReadyOutput| out.committed.iter().map(|e| e.data.len()).sum();
                node.largest_handout = node.largest_handout.max(bytes(&early));
                apply_to(&mut node.sm, early);
                let late = driver.finish_ready(pending, &mut send).unwrap();
                node.largest_handout = node.largest_handout.max(bytes(&late));
                let snapshot_requested = late.snapshot_requested;
                apply_to(&mut node.sm, late);
                if snapshot_requested {
                    driver.store_snapshot(encode_sm(&node.sm)).unwrap();
                }
            }
            any
        }

        /// Delivers queued messages like the transport does: a message to a cut-off or
        /// absent node is lost (reported unreachable), and the sender of a snapshot learns
        /// whether it arrived (raft pauses a follower until it does).
        fn deliver(&mut self) {
            while let Some(m) = self.queue.pop_front() {
                let (from, to) = (m.from, m.to);
                let is_snapshot = m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot;
                let cut = self.isolated.contains(&from) || self.isolated.contains(&to);
                let delivered = match self.nodes.get_mut(&to) {
                    Some(Node {
                        driver: Some(d), ..
                    }) if !cut => {
                        // A peer unknown to the receiver is refused; raft retries.
                        let _ = d.step(m);
                        true
                    }
                    _ => false,
                };
                let Some(Node {
                    driver: Some(sender),
                    ..
                }) = self.nodes.get_mut(&from)
                else {
                    continue;
                };
                if !delivered {
                    sender.report_unreachable(to);
                }
                if is_snapshot {
                    let status = if delivered {
                        SnapshotStatus::Finish
                    } else {
                        SnapshotStatus::Failure
                    };
                    sender.report_snapshot(to, status);
                }
            }
        }

        /// Handles Readies and delivers messages until nothing moves.
        fn settle(&mut self) {
            for _ in 0..10_000 {
                let any = self.handle_all_ready();
                if !any && self.queue.is_empty() {
                    return;
                }
                self.deliver();
            }
            panic!("cluster did not settle");
        }

        fn tick(&mut self) {
            for id in self.live() {
                self.d(id).tick();
            }
            self.settle();
        }

        /// Ticks until exactly one of `among` leads and the others follow it.
        fn elect(&mut self, among: &[u64]) -> u64 {
            for _ in 0..200 {
                self.tick();
                let leaders: Vec<u64> = among
                    .iter()
                    .copied()
                    .filter(|&id| self.d(id).is_leader())
                    .collect();
                if let [leader] = leaders[..] {
                    let term = self.d(leader).term();
                    if among.iter().all(|&id| {
                        let d = self.d(id);
                        d.leader_id() == leader && d.term() == term
                    }) {
                        return leader;
                    }
                }
            }
            panic!("no leader elected among {among:?}");
        }

        fn propose(&mut self, id: u64, data: &str) {
            self.d(id)
                .propose(KIND_TEST, data.as_bytes().to_vec())
                .unwrap();
        }

        /// Proposes `data` on `leader` and asserts that it is not committed.
        fn assert_stalls(&mut self, leader: u64, data: &str, why: &str) {
            let commit = self.d(leader).commit_index();
            self.propose(leader, data);
            self.settle();
            assert_eq!(self.d(leader).commit_index(), commit, "{why}");
        }

        fn sm_data(&self, id: u64) -> Vec<String> {
            self.nodes[&id]
                .sm
                .iter()
                .map(|(_, d)| String::from_utf8(d.clone()).unwrap())
                .collect()
        }

        fn log(&mut self, id: u64) -> Vec<Entry> {
            let st = self.d(id).storage().clone();
            let (lo, hi) = (st.first_index(), st.last_index() + 1);
            st.entries(lo, hi, None, GetEntriesContext::empty(false))
                .unwrap()
        }
    }

    fn strings(range: std::ops::RangeInclusive<u32>, prefix: &str) -> Vec<String> {
        range.map(|i| format!("{prefix}{i}")).collect()
    }

    /// Asserts that `log` starts with a new cluster's entries: one committed AddNode conf
    /// change per founder in `ids`, at indexes 1..=n, term 1.
    fn assert_founders(log: &[Entry], ids: &[u64]) {
        assert!(log.len() >= ids.len(), "{log:?}");
        for (i, (e, &id)) in log.iter().zip(ids).enumerate() {
            assert_eq!((e.index, e.term), (i as u64 + 1, 1), "{e:?}");
            assert_eq!(e.get_entry_type(), EntryType::EntryConfChange, "{e:?}");
            let cc = ConfChange::parse_from_bytes(&e.data).unwrap();
            assert_eq!(cc.get_change_type(), ConfChangeType::AddNode, "{e:?}");
            assert_eq!(cc.node_id, id, "{e:?}");
        }
    }

    /// Entry data this large makes a Ready go to the node's sync worker (more than
    /// `RAFT_INLINE_SYNC_BYTES_MAX`); `tag` starts it.
    fn large(tag: &str) -> String {
        format!("{tag}{}", "x".repeat(RAFT_INLINE_SYNC_BYTES_MAX))
    }

    /// Three nodes, 20 entries committed everywhere, and a snapshot the leader stored at
    /// its applied index: (cluster, leader, snapshot index).
    fn snapshot_after_20_entries() -> (Cluster, u64, u64) {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect(&[1, 2, 3]);
        for i in 1..=20 {
            c.propose(leader, &format!("b{i}"));
        }
        c.settle();
        let data = encode_sm(&c.nodes[&leader].sm);
        let at = c.d(leader).store_snapshot(data).unwrap();
        (c, leader, at)
    }

    /// The commit index is saved only with term, vote or membership changes, and a
    /// snapshot is stored at the applied index: a crash right after storing one (before the
    /// compaction that would save the state) left a snapshot past the saved commit, which
    /// every later start refused. Opening raises the commit to the snapshot.
    #[test]
    fn a_snapshot_stored_past_the_saved_commit_survives_a_crash() {
        let (mut c, leader, at) = snapshot_after_20_entries();
        let dir = c.nodes[&leader].dir.path().to_path_buf();
        c.nodes.get_mut(&leader).unwrap().driver = None; // the crash
        let (storage, recovery) = RaftStorage::open(&dir).unwrap();
        assert_eq!(recovery.snapshot_index, at);
        assert!(
            recovery.hard_state.commit >= at,
            "commit {} behind the snapshot at {at}",
            recovery.hard_state.commit
        );
        let driver = Driver::new(leader, storage, at, &discard_logger()).unwrap();
        assert_eq!(driver.applied_index(), at);
    }

    /// A three-node cluster that applied its founders' entries and elected `leader`, and
    /// the leader's last index then.
    fn led_by(leader: u64) -> (Cluster, u64) {
        let mut c = Cluster::new(&[1, 2, 3]);
        c.settle();
        c.d(leader).campaign().unwrap();
        c.settle();
        assert_eq!(c.elect(&[1, 2, 3]), leader);
        let base = c.d(leader).last_index();
        (c, base)
    }

    #[test]
    fn acknowledgements_wait_for_syncs_and_a_leader_commits_before_its_own() {
        // Node 1 (asynchronous) leads.
        let (mut c, base) = led_by(1);
        let held = |c: &Cluster, id: u64, on: bool| {
            c.nodes[&id].hold.store(on, AtomicOrdering::SeqCst);
        };
        // The leader's and one follower's syncs do not finish: only node 2 acknowledges, and
        // one of three is no majority. (Large entries: small appends would be synced inline
        // by nodes 1 and 3, see the next tests.)
        held(&c, 1, true);
        held(&c, 3, true);
        let sent: Vec<String> = (1..=4).map(|i| large(&format!("h{i}"))).collect();
        for data in &sent {
            c.propose(1, data);
            c.settle();
        }
        let last = c.d(1).last_index();
        assert_eq!(last, base + 4);
        assert!(c.d(1).sync_in_flight() && c.d(3).sync_in_flight());
        assert_eq!(c.d(1).commit_index(), base);
        assert_eq!(c.d(3).storage().last_index(), last, "node 3 wrote them");
        assert_eq!(
            c.d(3).storage().reader().last_index(),
            base,
            "but readers wait"
        );
        // Node 3's sync finishes: with node 2 that is a majority, without the leader's own.
        held(&c, 3, false);
        c.settle();
        c.tick();
        assert_eq!(c.d(1).commit_index(), last);
        assert!(c.d(1).sync_in_flight());
        for id in [2, 3] {
            assert_eq!(c.sm_data(id), sent, "node {id}");
        }
        // The leader applies only what it has persisted itself.
        assert!(c.sm_data(1).is_empty());
        assert_eq!(c.d(1).storage().reader().last_index(), base);
        held(&c, 1, false);
        c.settle();
        assert_eq!(c.sm_data(1), sent);
        assert_eq!(c.d(1).storage().reader().last_index(), last);
        assert!(!c.d(1).sync_in_flight());
        for id in [1, 2, 3] {
            assert_eq!(c.log(id), c.log(1), "node {id}");
        }
    }

    /// Node `node`'s held worker syncs a large append (entry `base + 2`, `big`, proposed on
    /// `leader` after "small" at `base + 1`): a small append behind that sync joins the next
    /// one instead of waiting; once the worker is released, the next small append is synced
    /// inline again; every node then applies all four and holds the same log.
    fn behind_then_inline(c: &mut Cluster, leader: u64, node: u64, base: u64, big: String) {
        c.propose(leader, "behind");
        c.settle();
        assert!(
            c.d(node).sync_in_flight(),
            "the large append's sync still runs"
        );
        assert_eq!(c.d(node).storage().last_index(), base + 3);
        assert_eq!(c.d(node).storage().reader().last_index(), base + 1);
        c.nodes[&node].hold.store(false, AtomicOrdering::SeqCst);
        c.settle();
        assert!(!c.d(node).sync_in_flight());
        assert_eq!(c.d(node).storage().reader().last_index(), base + 3);
        c.propose(leader, "after");
        c.settle();
        assert!(!c.d(node).sync_in_flight(), "synced inline again");
        assert_eq!(c.d(node).storage().reader().last_index(), base + 4);
        c.tick();
        c.settle();
        let all = vec![
            "small".to_string(),
            big,
            "behind".to_string(),
            "after".to_string(),
        ];
        for id in [1, 2, 3] {
            assert_eq!(c.sm_data(id), all, "node {id}");
            assert_eq!(c.log(id), c.log(leader), "node {id}");
        }
    }

    #[test]
    fn an_asynchronous_leader_syncs_small_appends_inline_and_large_ones_on_its_worker() {
        let (mut c, base) = led_by(1);
        // Node 1 (asynchronous) leads; its worker finishes no job while held, so what it
        // has durable was synced on its raft thread.
        c.nodes[&1].hold.store(true, AtomicOrdering::SeqCst);
        c.propose(1, "small");
        c.settle();
        assert!(!c.d(1).sync_in_flight(), "a small append is synced inline");
        assert_eq!(c.d(1).storage().reader().last_index(), base + 1);
        assert_eq!(c.d(1).commit_index(), base + 1);
        assert_eq!(c.sm_data(1), vec!["small".to_string()]);
        // A large one goes to the held worker: committed by the followers, not applied by
        // the leader until its own sync ends.
        let big = large("big");
        c.propose(1, &big);
        c.settle();
        assert!(c.d(1).sync_in_flight(), "a large append goes to the worker");
        assert_eq!(c.d(1).commit_index(), base + 2);
        assert_eq!(c.d(1).storage().reader().last_index(), base + 1);
        behind_then_inline(&mut c, 1, 1, base, big);
    }

    #[test]
    fn a_follower_syncs_small_appends_inline_and_large_ones_on_its_worker() {
        let (mut c, base) = led_by(2);
        // Nodes 1 and 3 (asynchronous) follow the synchronous node 2. Node 1's worker
        // finishes no job while held, so what node 1 acknowledges was synced inline.
        c.nodes[&1].hold.store(true, AtomicOrdering::SeqCst);
        c.propose(2, "small");
        c.settle();
        assert!(!c.d(1).sync_in_flight(), "a small append is synced inline");
        assert_eq!(c.d(1).storage().reader().last_index(), base + 1);
        // Both followers acknowledged; the leader commits and all three apply.
        assert_eq!(c.d(2).commit_index(), base + 1);
        c.tick();
        c.settle();
        for id in [1, 2, 3] {
            assert_eq!(c.sm_data(id), vec!["small".to_string()], "node {id}");
        }
        // A large append goes to the worker: written, not yet visible, not acknowledged.
        let big = large("big");
        c.propose(2, &big);
        c.settle();
        assert!(c.d(1).sync_in_flight(), "a large append goes to the worker");
        assert_eq!(c.d(1).storage().last_index(), base + 2);
        assert_eq!(c.d(1).storage().reader().last_index(), base + 1);
        behind_then_inline(&mut c, 2, 1, base, big);
    }

    #[test]
    fn config_is_the_documented_one() {
        let c = raft_config(7, 0);
        assert_eq!((c.election_tick, c.heartbeat_tick), (10, 1));
        assert!(c.pre_vote && c.check_quorum);
        assert_eq!(c.max_size_per_msg, 1 << 20);
        assert_eq!(c.max_inflight_msgs, 16);
        c.validate().unwrap();
    }

    #[test]
    fn a_leader_hands_over_to_the_most_caught_up_active_voter() {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect(&[1, 2, 3]);
        let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
        assert_eq!(
            c.d(followers[0]).transfer_leadership(),
            None,
            "a follower does not"
        );
        // One follower is cut off and misses entries: the other is the one chosen.
        let (behind, ahead) = (followers[0], followers[1]);
        c.isolated.insert(behind);
        for i in 1..=3 {
            c.propose(leader, &format!("e{i}"));
        }
        c.settle();
        // Only the voters heard from recently are candidates.
        assert_eq!(c.d(leader).successor(Some(&[leader, behind])), Some(behind));
        assert_eq!(c.d(leader).successor(Some(&[leader])), None);
        c.d(leader).set_recently_heard(vec![leader]);
        assert_eq!(c.d(leader).transfer_leadership(), None);
        c.d(leader).set_recently_heard(vec![1, 2, 3]);
        assert_eq!(c.d(leader).transfer_leadership(), Some(ahead));
        c.settle();
        assert!(
            c.d(ahead).is_leader(),
            "{ahead} took over at once, without ticks"
        );
        assert!(!c.d(leader).is_leader());
        // A leader cut off from both steps down (check-quorum): nothing to hand over.
        c.isolated.clear();
        let now = c.elect(&[1, 2, 3]);
        c.isolated.insert(now);
        for _ in 0..30 {
            c.tick();
        }
        assert!(!c.d(now).is_leader());
        assert_eq!(c.d(now).transfer_leadership(), None);
    }

    #[test]
    fn three_nodes_elect_one_leader_and_commit_in_order() {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect(&[1, 2, 3]);
        let term = c.d(leader).term();
        // Initial term 1; pre-vote does not bump it, a real election does (a split vote,
        // which the randomized timeouts make possible, takes one more term).
        assert!(term >= 2, "term {term}");
        let leaders = [1, 2, 3].iter().filter(|&&id| c.d(id).is_leader()).count();
        assert_eq!(leaders, 1);
        let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
        assert!(matches!(
            c.d(follower).propose(KIND_TEST, b"x".to_vec()),
            Err(ConsensusError::Raft(raft::Error::ProposalDropped))
        ));
        for i in 1..=10 {
            c.propose(leader, &format!("e{i}"));
        }
        c.settle();
        // Indexes 1..=3 are the founders' AddNode entries (term 1), 4 the new leader's
        // empty entry, 5..=14 ours.
        for id in [1, 2, 3] {
            assert_eq!(c.sm_data(id), strings(1..=10, "e"), "node {id}");
            let idx: Vec<u64> = c.nodes[&id].sm.iter().map(|(i, _)| *i).collect();
            assert_eq!(idx, (5..=14).collect::<Vec<_>>());
            let log = c.log(id);
            assert_eq!(log.len(), 14);
            assert_eq!(log[0].index, 1);
            assert_founders(&log, &[1, 2, 3]);
            assert!(log[3..].iter().all(|e| e.term == term));
            assert_eq!(log[3].get_entry_type(), EntryType::EntryNormal);
            assert!(log[3].data.is_empty() && log[3].context.is_empty());
            assert_eq!(&log[13].data[..], b"e10");
            assert_eq!(c.d(id).commit_index(), 14);
            assert_eq!(c.d(id).applied_index(), 14);
            assert_eq!(c.d(id).storage().hard_state().commit, 14);
            // Re-applying the founders' AddNodes changed nothing.
            assert_eq!(voters(c.d(id).conf_state()), vec![1, 2, 3]);
            assert_eq!(voters(c.d(id).storage().conf_state()), vec![1, 2, 3]);
        }
    }

    /// A restarted node whose saved commit index is old gets its whole log committed by the
    /// leader's first message; raft hands it out over several Readies of at most
    /// `RAFT_COMMITTED_BYTES_PER_READY_MAX` (plus one entry), not in one.
    #[test]
    fn a_restart_replays_the_log_in_bounded_readies() {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect(&[1, 2, 3]);
        let entry_bytes = 256 << 10;
        let count = (RAFT_COMMITTED_BYTES_PER_READY_MAX as usize / entry_bytes) * 2;
        for i in 0..count {
            let data = format!("{i:06}{}", "x".repeat(entry_bytes - 6));
            c.propose(leader, &data);
            c.settle();
        }
        let f = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
        let before = c.nodes[&f].sm.clone();
        c.nodes.get_mut(&f).unwrap().driver = None;
        let (driver, sm) = start(f, c.nodes[&f].dir.path());
        assert!(driver.storage().hard_state().commit < driver.storage().last_index());
        let node = c.nodes.get_mut(&f).unwrap();
        node.driver = Some(driver);
        node.sm = sm;
        node.largest_handout = 0;
        for _ in 0..3 {
            c.tick();
        }
        assert_eq!(
            c.nodes[&f].sm, before,
            "the restarted node applied the whole log again"
        );
        let largest = c.nodes[&f].largest_handout;
        assert!(
            largest <= RAFT_COMMITTED_BYTES_PER_READY_MAX as usize + entry_bytes,
            "one Ready handed out {largest} bytes"
        );
    }

    #[test]
    fn restarted_follower_rejoins_and_catches_up() {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect(&[1, 2, 3]);
        let term = c.d(leader).term();
        for i in 1..=3 {
            c.propose(leader, &format!("a{i}"));
        }
        c.settle();
        let f = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
        c.nodes.get_mut(&f).unwrap().driver = None;
        for i in 4..=8 {
            c.propose(leader, &format!("a{i}"));
        }
        c.settle();
        // 1..=3 founders, 4 the leader's empty entry, 5..=12 a1..a8.
        assert_eq!(c.d(leader).commit_index(), 12);
        let (driver, sm) = start(f, c.nodes[&f].dir.path());
        // Durable state came back: term, vote and the entries, the founders' included; the
        // commit index is saved only with term or vote changes, so it may be behind (the
        // leader raises it again), but never below the founders' entries nor past the log.
        assert_eq!(driver.term(), term);
        let commit = driver.storage().hard_state().commit;
        assert!((3..=7).contains(&commit), "{commit}");
        assert_eq!(driver.storage().first_index(), 1);
        assert_eq!(driver.storage().last_index(), 7);
        assert!(driver.storage().stored_snapshot().is_none());
        // No snapshot: the state machine starts empty and the log is applied from index 1.
        assert!(sm.is_empty());
        assert_eq!(driver.applied_index(), 0);
        let node = c.nodes.get_mut(&f).unwrap();
        node.driver = Some(driver);
        node.sm = sm;
        for _ in 0..3 {
            c.tick();
        }
        c.propose(leader, "a9");
        c.settle();
        assert_eq!(c.sm_data(f), strings(1..=9, "a"));
        assert_eq!(c.nodes[&f].sm, c.nodes[&leader].sm);
        let log = c.log(f);
        assert_founders(&log, &[1, 2, 3]);
        assert_eq!(log, c.log(leader));
        assert_eq!(c.d(f).commit_index(), 13);
        assert_eq!(c.d(f).leader_id(), leader);
    }

    #[test]
    fn partitioned_leader_is_replaced_and_its_log_repaired() {
        let mut c = Cluster::new(&[1, 2, 3]);
        let old = c.elect(&[1, 2, 3]);
        let old_term = c.d(old).term();
        c.propose(old, "committed");
        c.settle();
        c.isolated.insert(old);
        // The cut-off leader still accepts these; they can never commit.
        for i in 1..=3 {
            c.propose(old, &format!("lost{i}"));
        }
        c.settle();
        // 1..=3 founders, 4 empty, 5 "committed", 6..=8 the lost ones.
        assert_eq!(c.d(old).storage().last_index(), 8);
        assert_eq!(c.d(old).commit_index(), 5);
        let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != old).collect();
        let new = c.elect(&rest);
        assert_ne!(new, old);
        let new_term = c.d(new).term();
        assert!(new_term > old_term);
        // check_quorum: the old leader steps down on its own within two election timeouts.
        for _ in 0..2 * RAFT_ELECTION_TICKS {
            if !c.d(old).is_leader() {
                break;
            }
            c.tick();
        }
        assert!(!c.d(old).is_leader());
        assert_eq!(c.d(old).term(), old_term);
        assert!(c.d(old).propose(KIND_TEST, b"late".to_vec()).is_err());
        for i in 1..=3 {
            c.propose(new, &format!("new{i}"));
        }
        c.settle();
        let mut expect = vec!["committed".to_string()];
        expect.extend(strings(1..=3, "new"));
        for &id in &rest {
            assert_eq!(c.sm_data(id), expect, "node {id}");
        }
        assert_eq!(c.sm_data(old), vec!["committed".to_string()]);
        c.isolated.clear();
        for _ in 0..5 {
            c.tick();
        }
        assert_eq!(c.d(new).leader_id(), new);
        assert_eq!(c.d(old).leader_id(), new);
        assert_eq!(c.sm_data(old), expect);
        let log = c.log(old);
        assert_eq!(log, c.log(new));
        // Only the uncommitted suffix was replaced: the founders' entries and "committed"
        // at 5 are where they were.
        assert_founders(&log, &[1, 2, 3]);
        assert_eq!((log[4].index, &log[4].data[..]), (5, &b"committed"[..]));
        assert!(log.iter().all(|e| !e.data.starts_with(b"lost")));
        assert_eq!(log.last().unwrap().term, new_term);
        // The repaired log is what reopening finds on disk.
        let st = c.d(old).storage().clone();
        c.nodes.get_mut(&old).unwrap().driver = None;
        drop(st);
        let (st, _) = RaftStorage::open(c.nodes[&old].dir.path()).unwrap();
        let (lo, hi) = (st.first_index(), st.last_index() + 1);
        let reopened = st.entries(lo, hi, None, GetEntriesContext::empty(false));
        assert_eq!(reopened.unwrap(), log);
    }

    fn voters(cs: ConfState) -> Vec<u64> {
        let mut v = cs.voters;
        v.sort_unstable();
        v
    }

    fn conf_change(ty: ConfChangeType, id: u64) -> ConfChange {
        let mut cc = ConfChange::default();
        cc.set_change_type(ty);
        cc.node_id = id;
        cc
    }

    /// As `snapshot_after_20_entries`, with the leader's log compacted to the snapshot.
    fn compacted_after_20_entries() -> (Cluster, u64, u64) {
        let (mut c, leader, at) = snapshot_after_20_entries();
        let queue = &mut c.queue;
        let driver = c.nodes.get_mut(&leader).unwrap().driver.as_mut().unwrap();
        driver.compact(at, &mut |m| queue.extend(m)).unwrap();
        (c, leader, at)
    }

    /// A member joins as a learner after compaction: it gets a snapshot naming it and
    /// catches up without counting towards the quorum (two voters of three cut off stall
    /// commits, one does not), and once promoted it counts.
    #[test]
    fn learner_catches_up_from_a_snapshot_then_is_promoted() {
        let (mut c, leader, snap_index) = compacted_after_20_entries();
        c.d(leader)
            .propose_conf_change(conf_change(ConfChangeType::AddLearnerNode, 4))
            .unwrap();
        c.settle();
        for id in [1, 2, 3] {
            let cs = c.d(id).conf_state();
            assert_eq!((voters(cs.clone()), cs.learners), (vec![1, 2, 3], vec![4]));
        }
        let dir = tempfile::tempdir().unwrap();
        c.add(4, dir);
        for _ in 0..5 {
            c.tick();
        }
        c.propose(leader, "b21");
        c.settle();
        assert_eq!(c.sm_data(4), strings(1..=21, "b"));
        let st4 = c.d(4).storage().clone();
        let s4 = st4.stored_snapshot().unwrap().get_metadata().index;
        assert!(s4 > snap_index, "a fresh snapshot naming the learner: {s4}");
        assert_eq!(c.d(4).conf_state().learners, vec![4]);
        assert!(!c.d(4).is_leader());
        // As a learner it is no part of the quorum: the leader and it commit nothing.
        let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
        c.isolated.extend(&others);
        c.assert_stalls(leader, "b22", "a learner does not vote");
        // One voter back: two of three commit, and the learner gets it.
        c.isolated.remove(&others[0]);
        c.tick();
        c.propose(leader, "b23");
        c.settle();
        assert_eq!(c.sm_data(4), strings(1..=23, "b"));
        c.isolated.clear();
        c.tick();

        // Promoted: four voters.
        c.d(leader)
            .propose_conf_change(conf_change(ConfChangeType::AddNode, 4))
            .unwrap();
        c.settle();
        for id in [1, 2, 3, 4] {
            let cs = c.d(id).conf_state();
            assert_eq!(voters(cs.clone()), vec![1, 2, 3, 4], "on {id}");
            assert!(cs.learners.is_empty(), "on {id}");
        }
        // With two of four voters cut off, nothing commits; with one, the learner-turned-voter
        // is part of the quorum of three.
        c.isolated.insert(others[0]);
        c.propose(leader, "b24");
        c.settle();
        assert_eq!(c.sm_data(4), strings(1..=24, "b"));
        assert_eq!(c.sm_data(leader), strings(1..=24, "b"));
        c.isolated.insert(others[1]);
        c.assert_stalls(leader, "b25", "2 of 4 voters commit nothing");
    }

    #[test]
    fn added_node_gets_a_snapshot_after_compaction_and_catches_up() {
        let (mut c, leader, snap_index) = compacted_after_20_entries();
        // 1..=3 founders, 4 empty, 5..=24 b1..b20.
        assert_eq!(snap_index, 24);
        assert_eq!(c.d(leader).storage().first_index(), 25);
        c.d(leader)
            .propose_conf_change(conf_change(ConfChangeType::AddNode, 4))
            .unwrap();
        c.settle();
        for id in [1, 2, 3] {
            assert_eq!(voters(c.d(id).conf_state()), vec![1, 2, 3, 4]);
            assert_eq!(voters(c.d(id).storage().conf_state()), vec![1, 2, 3, 4]);
        }
        c.propose(leader, "b21");
        c.settle();
        // A brand-new node: empty storage, not initialized.
        let dir = tempfile::tempdir().unwrap();
        c.add(4, dir);
        assert!(!c.d(4).storage().is_initialized());
        for _ in 0..5 {
            c.tick();
        }
        c.propose(leader, "b22");
        c.settle();
        assert_eq!(c.sm_data(4), strings(1..=22, "b"));
        assert_eq!(c.nodes[&4].sm, c.nodes[&leader].sm);
        // Index 1 was compacted away, so node 4 could not replay the log from there. The
        // compacted snapshot predates node 4's membership (raft-rs would refuse it), so
        // the leader was asked for a fresh one, past the AddNode entry at 25.
        let st4 = c.d(4).storage().clone();
        let s4 = st4.stored_snapshot().unwrap().get_metadata().index;
        assert!(s4 > 25, "{s4}");
        assert_eq!(
            st4.entries(1, 2, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(raft::StorageError::Compacted))
        );
        assert_eq!(st4.first_index(), s4 + 1);
        let leader_snap = c.d(leader).storage().stored_snapshot().unwrap();
        assert_eq!(leader_snap.get_metadata().index, s4);
        assert_eq!(
            voters(leader_snap.get_metadata().get_conf_state().clone()),
            vec![1, 2, 3, 4]
        );
        assert_eq!(voters(st4.conf_state()), vec![1, 2, 3, 4]);
        assert_eq!(voters(c.d(4).conf_state()), vec![1, 2, 3, 4]);
        assert_eq!(c.d(4).commit_index(), c.d(leader).commit_index());
        let leader_log = c.log(leader);
        let tail: Vec<Entry> = leader_log.into_iter().filter(|e| e.index > s4).collect();
        assert_eq!(c.log(4), tail);
        assert_eq!(tail.last().map(|e| e.index), Some(27));
        // Node 4 restarts from its own snapshot and log.
        c.nodes.get_mut(&4).unwrap().driver = None;
        let (driver, sm) = start(4, c.nodes[&4].dir.path());
        assert_eq!(voters(driver.conf_state()), vec![1, 2, 3, 4]);
        let node = c.nodes.get_mut(&4).unwrap();
        node.driver = Some(driver);
        node.sm = sm;
        c.tick();
        assert_eq!(c.sm_data(4), strings(1..=22, "b"));
    }

    #[test]
    fn added_node_replays_the_whole_log_from_index_1_when_nothing_is_compacted() {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect(&[1, 2, 3]);
        for i in 1..=5 {
            c.propose(leader, &format!("b{i}"));
        }
        c.settle();
        c.d(leader)
            .propose_conf_change(conf_change(ConfChangeType::AddNode, 4))
            .unwrap();
        c.settle();
        c.propose(leader, "b6");
        c.settle();
        let dir = tempfile::tempdir().unwrap();
        c.add(4, dir);
        assert!(!c.d(4).storage().is_initialized());
        assert!(c.d(4).conf_state().voters.is_empty());
        for _ in 0..5 {
            c.tick();
        }
        c.propose(leader, "b7");
        c.settle();
        // Plain appends from index 1: the same log as the leader's, founders first, and
        // every entry applied in order, without any snapshot on either side.
        let log4 = c.log(4);
        assert_eq!(log4[0].index, 1);
        assert_founders(&log4, &[1, 2, 3]);
        assert_eq!(log4, c.log(leader));
        // 1..=3 founders, 4 empty, 5..=9 b1..b5, 10 AddNode(4), 11 b6, 12 b7.
        let add4 = &log4[9];
        assert_eq!(add4.get_entry_type(), EntryType::EntryConfChange);
        let cc = ConfChange::parse_from_bytes(&add4.data).unwrap();
        assert_eq!(
            (cc.get_change_type(), cc.node_id),
            (ConfChangeType::AddNode, 4)
        );
        assert_eq!(log4.last().map(|e| e.index), Some(12));
        let st4 = c.d(4).storage().clone();
        assert!(st4.is_initialized());
        assert_eq!(st4.first_index(), 1);
        assert!(st4.stored_snapshot().is_none());
        assert!(c.d(leader).storage().stored_snapshot().is_none());
        assert_eq!(c.sm_data(4), strings(1..=7, "b"));
        assert_eq!(c.nodes[&4].sm, c.nodes[&leader].sm);
        assert_eq!(c.d(4).commit_index(), 12);
        assert_eq!(c.d(4).applied_index(), 12);
        // Node 4 learned the founders and itself from the entries it replayed.
        assert_eq!(voters(c.d(4).conf_state()), vec![1, 2, 3, 4]);
        assert_eq!(voters(st4.conf_state()), vec![1, 2, 3, 4]);
        assert_eq!(c.d(4).leader_id(), leader);
        // Node 4 restarts without a snapshot: it replays its own log from index 1.
        c.nodes.get_mut(&4).unwrap().driver = None;
        let (driver, sm) = start(4, c.nodes[&4].dir.path());
        assert!(sm.is_empty());
        assert_eq!(driver.storage().first_index(), 1);
        assert_eq!(voters(driver.conf_state()), vec![1, 2, 3, 4]);
        let node = c.nodes.get_mut(&4).unwrap();
        node.driver = Some(driver);
        node.sm = sm;
        c.tick();
        assert_eq!(c.nodes[&4].sm, c.nodes[&leader].sm);
        assert_eq!(voters(c.d(4).conf_state()), vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_leader_asked_to_leave_hands_over_to_a_voter_heard_from() {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect(&[1, 2, 3]);
        c.propose(leader, "before");
        c.settle();
        // Both followers are as caught up; the one not heard from lately is passed over,
        // whichever comes first in the list.
        for silent in [1, 2, 3].into_iter().filter(|&id| id != leader) {
            let heard = [1, 2, 3].into_iter().filter(|&id| id != silent).collect();
            c.d(leader).set_recently_heard(heard);
            let refused = c
                .d(leader)
                .propose_conf_change(conf_change(ConfChangeType::RemoveNode, leader));
            let Err(ConsensusError::HandingOver { to }) = refused else {
                panic!("{refused:?}");
            };
            assert!(
                to != silent && to != leader,
                "handed to {to}, {silent} is silent"
            );
        }
        // Told of no one, any voter will do rather than none.
        c.d(leader).set_recently_heard(vec![leader]);
        let refused = c
            .d(leader)
            .propose_conf_change(conf_change(ConfChangeType::RemoveNode, leader));
        assert!(
            matches!(refused, Err(ConsensusError::HandingOver { .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn a_leader_asked_to_leave_hands_over_and_the_new_leader_removes_it() {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect(&[1, 2, 3]);
        c.propose(leader, "before");
        c.settle();
        let refused = c
            .d(leader)
            .propose_conf_change(conf_change(ConfChangeType::RemoveNode, leader));
        let Err(ConsensusError::HandingOver { to }) = refused else {
            panic!("{refused:?}");
        };
        assert_ne!(to, leader);
        assert!(c.d(leader).storage().conf_state().voters.contains(&leader));
        for _ in 0..30 {
            c.tick();
            if c.d(to).is_leader() {
                break;
            }
        }
        assert!(c.d(to).is_leader(), "node {to} took over");
        assert_eq!(c.elect(&[1, 2, 3]), to);
        c.d(to)
            .propose_conf_change(conf_change(ConfChangeType::RemoveNode, leader))
            .unwrap();
        c.settle();
        let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
        for &id in &rest {
            assert_eq!(voters(c.d(id).conf_state()), rest);
        }
        c.nodes.get_mut(&leader).unwrap().driver = None;
        c.propose(to, "after");
        c.settle();
        for &id in &rest {
            assert_eq!(c.sm_data(id), vec!["before".to_string(), "after".into()]);
        }
        // The last voter cannot leave at all.
        let mut alone = Cluster::new(&[1]);
        alone.elect(&[1]);
        let refused = alone
            .d(1)
            .propose_conf_change(conf_change(ConfChangeType::RemoveNode, 1));
        assert!(
            matches!(refused, Err(ConsensusError::Raft(_))),
            "{refused:?}"
        );
        assert!(alone.d(1).is_leader());
    }

    #[test]
    fn removed_node_leaves_and_the_rest_continue() {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect(&[1, 2, 3]);
        c.propose(leader, "before");
        c.settle();
        let gone = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
        let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != gone).collect();
        c.d(leader)
            .propose_conf_change(conf_change(ConfChangeType::RemoveNode, gone))
            .unwrap();
        c.settle();
        for &id in &rest {
            assert_eq!(voters(c.d(id).conf_state()), rest);
            assert_eq!(voters(c.d(id).storage().conf_state()), rest);
        }
        // The removed node is cut off for good; two voters still make a quorum.
        c.nodes.get_mut(&gone).unwrap().driver = None;
        for _ in 0..30 {
            c.tick();
        }
        assert!(c.d(leader).is_leader());
        c.propose(leader, "after");
        c.settle();
        for &id in &rest {
            assert_eq!(c.sm_data(id), vec!["before".to_string(), "after".into()]);
        }
        // The membership survives a restart.
        let other = rest.iter().copied().find(|&id| id != leader).unwrap();
        c.nodes.get_mut(&other).unwrap().driver = None;
        let (driver, sm) = start(other, c.nodes[&other].dir.path());
        assert_eq!(voters(driver.conf_state()), rest);
        // It replays its log from index 1, the founders' AddNode of the removed node
        // included, and ends with the membership it had (the RemoveNode is replayed too).
        assert!(sm.is_empty());
        assert_founders(&c.log(leader), &[1, 2, 3]);
        let node = c.nodes.get_mut(&other).unwrap();
        node.driver = Some(driver);
        node.sm = sm;
        c.tick();
        assert_eq!(c.d(other).applied_index(), c.d(leader).commit_index());
        assert_eq!(c.sm_data(other), vec!["before".to_string(), "after".into()]);
        assert_eq!(voters(c.d(other).conf_state()), rest);
        assert_eq!(voters(c.d(other).storage().conf_state()), rest);
    }

    #[test]
    fn single_node_cluster_commits_alone() {
        let mut c = Cluster::new(&[1]);
        assert_eq!(c.elect(&[1]), 1);
        c.propose(1, "solo");
        c.settle();
        assert_eq!(c.sm_data(1), vec!["solo".to_string()]);
        // 1 the founder's AddNode, 2 the leader's empty entry, 3 "solo".
        assert_eq!(c.nodes[&1].sm, vec![(3, b"solo".to_vec())]);
        assert_eq!(c.d(1).storage().hard_state().commit, 3);
        assert_founders(&c.log(1), &[1]);
    }

    #[test]
    fn bad_proposals_and_applied_ahead_are_refused() {
        let mut c = Cluster::new(&[1]);
        c.elect(&[1]);
        for kind in [0, 0x40, 0xff] {
            assert!(matches!(
                c.d(1).propose(kind, vec![1]),
                Err(ConsensusError::Unrepresentable { .. })
            ));
        }
        let big = vec![0; ENTRY_PAYLOAD_MAX + 1];
        assert!(c.d(1).propose(KIND_TEST, big).is_err());
        let st = c.d(1).storage().clone();
        let commit = st.hard_state().commit;
        assert!(matches!(
            Driver::new(1, st, commit + 1, &discard_logger()),
            Err(ConsensusError::AppliedAhead { .. })
        ));
        assert_eq!(INIT_INDEX, 1);
    }
}
