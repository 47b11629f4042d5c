//! Leader duties: the syncer runs on the raft leader only, from the replicated desired state,
//! and proposes through raft fenced by the leader's term. This module's watcher thread
//! starts it when this node becomes a ready leader with a syncer desired, and stops it the
//! moment leadership is lost or the desire is withdrawn; it also keeps the transport's peer
//! table in line with the replicated members, and lets a new cluster's first leader record
//! the initial members.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::model::SyncerArgs;
use crate::consensus::node::{ProposeError, RaftHandle};
use crate::consensus::state::{ClusterState, Command, COMMAND_KIND};
use crate::limits::{
    ANNOUNCE_RETRY_MS, LEADER_WATCH_INTERVAL_MS, PROPOSE_TIMEOUT_MS, SYNCER_PROPOSALS_IN_FLIGHT_MAX,
};
use crate::store::entry::KIND_ABANDON;
use crate::store::Store;
use crate::syncer::{Sink, SinkError, Syncer, SyncerConfig};

use super::leaderless::{Leaderless, Notice};
use super::machine::ClusterShared;
use super::worker::Worker;

/// Proposes syncer entries through raft, fenced to the term this node leads in. Several
/// batches may be in flight at once (the next is proposed while the last commits), up to
/// `SYNCER_PROPOSALS_IN_FLIGHT_MAX`; `flush` waits for all of them.
///
/// Each session's batches form one proposal chain (`RaftHandle::propose_in_chain`): after
/// one is refused, raft refuses the rest, so no batch is ever appended after a gap. And a
/// proposal is never forgotten before its outcome is known: a wait that times out leaves it
/// in flight, and `begin_session` waits until every earlier proposal is answered (applied,
/// refused, or failed by a change of leader) before the syncer reads where to resume. A
/// proposal still pending when the next session read its resume point would otherwise be
/// committed after that point, and the next session's batches would repeat it.
pub struct RaftSink {
    raft: RaftHandle,
    store: Arc<Store>,
    term: u64,
    state: Mutex<InFlight>,
    /// How long one wait for an answer lasts (`PROPOSE_TIMEOUT_MS`).
    timeout: Duration,
}

/// The proposals of the current chain not answered yet, oldest first.
struct InFlight {
    chain: u64,
    pending: VecDeque<Receiver<Result<u64, ProposeError>>>,
}

/// How waiting for one proposal ended.
enum Outcome {
    Answered(Result<u64, SinkError>),
    /// Not answered within `PROPOSE_TIMEOUT_MS`: still in flight.
    TimedOut,
}

impl RaftSink {
    pub fn new(raft: RaftHandle, store: Arc<Store>, term: u64) -> RaftSink {
        let chain = raft.new_chain();
        RaftSink {
            raft,
            store,
            term,
            state: Mutex::new(InFlight {
                chain,
                pending: VecDeque::new(),
            }),
            timeout: Duration::from_millis(PROPOSE_TIMEOUT_MS),
        }
    }

    #[cfg(test)]
    fn with_timeout(mut self, timeout: Duration) -> RaftSink {
        self.timeout = timeout;
        self
    }

    fn sink_error(e: ProposeError) -> SinkError {
        match e {
            ProposeError::NotLeader { .. }
            | ProposeError::TermChanged { .. }
            | ProposeError::Dropped => SinkError::Deposed(e.to_string()),
            e => SinkError::Unavailable(e.to_string()),
        }
    }

    fn timed_out(&self) -> SinkError {
        SinkError::Unavailable(format!(
            "no commit within {} ms (is a quorum reachable?)",
            self.timeout.as_millis()
        ))
    }

    /// Waits for the oldest pending proposal (there is one); an answered one leaves the
    /// queue.
    fn wait_oldest(&self, pending: &mut VecDeque<Receiver<Result<u64, ProposeError>>>) -> Outcome {
        let rx = pending.front().expect("a pending proposal to wait for");
        let outcome = match rx.recv_timeout(self.timeout) {
            Ok(Ok(index)) => Outcome::Answered(Ok(index)),
            Ok(Err(e)) => Outcome::Answered(Err(Self::sink_error(e))),
            Err(RecvTimeoutError::Timeout) => return Outcome::TimedOut,
            Err(RecvTimeoutError::Disconnected) => {
                Outcome::Answered(Err(SinkError::Unavailable("the raft node stopped".into())))
            }
        };
        pending.pop_front();
        outcome
    }

    /// Takes the answers already there, in order; the first failure among them.
    fn take_answered(
        pending: &mut VecDeque<Receiver<Result<u64, ProposeError>>>,
    ) -> Result<(), SinkError> {
        let mut first_error = None;
        pending.retain(|rx| match rx.try_recv() {
            Ok(Ok(_)) => false,
            Ok(Err(e)) => {
                first_error.get_or_insert_with(|| Self::sink_error(e));
                false
            }
            Err(TryRecvError::Empty) => true,
            Err(TryRecvError::Disconnected) => {
                first_error
                    .get_or_insert_with(|| SinkError::Unavailable("the raft node stopped".into()));
                false
            }
        });
        first_error.map_or(Ok(()), Err)
    }

    /// Waits until at most `keep` proposals are unanswered; the first failure ends the
    /// wait (the proposals after it stay pending for `settle`).
    fn wait_until(&self, state: &mut InFlight, keep: usize) -> Result<(), SinkError> {
        while state.pending.len() > keep {
            match self.wait_oldest(&mut state.pending) {
                Outcome::Answered(result) => {
                    result?;
                }
                Outcome::TimedOut => return Err(self.timed_out()),
            }
        }
        Ok(())
    }

    /// Waits until every proposal made so far is answered, whatever the answer (a refusal
    /// is no error here): what is applied then is all they will ever add. Fails when one
    /// stays unanswered for `PROPOSE_TIMEOUT_MS` (it stays in flight), or with `Deposed`
    /// when one says this node no longer leads.
    pub fn settle(&self) -> Result<(), SinkError> {
        let mut state = self.state.lock().expect("in-flight lock");
        let mut deposed = None;
        while !state.pending.is_empty() {
            match self.wait_oldest(&mut state.pending) {
                Outcome::Answered(Err(e @ SinkError::Deposed(_))) => {
                    deposed.get_or_insert(e);
                }
                Outcome::Answered(_) => {}
                Outcome::TimedOut => return Err(self.timed_out()),
            }
        }
        deposed.map_or(Ok(()), Err)
    }

    /// Proposes outside the pipeline and waits (the session's abandon entry).
    fn propose_now(&self, entries: Vec<(u8, Vec<u8>)>, chain: u64) -> Result<u64, SinkError> {
        let rx = self.raft.propose_in_chain(entries, Some(self.term), chain);
        let mut one = VecDeque::from([rx]);
        match self.wait_oldest(&mut one) {
            Outcome::Answered(result) => result,
            // Never forgotten: the next session waits for it first.
            Outcome::TimedOut => {
                let mut state = self.state.lock().expect("in-flight lock");
                state.pending.extend(one);
                Err(self.timed_out())
            }
        }
    }
}

impl Sink for RaftSink {
    fn append(&self, entries: Vec<(u8, Vec<u8>)>) -> Result<(), SinkError> {
        let mut state = self.state.lock().expect("in-flight lock");
        // A refused batch ends the session before anything more is proposed (raft would
        // refuse the rest of the chain anyway).
        Self::take_answered(&mut state.pending)?;
        let rx = self
            .raft
            .propose_in_chain(entries, Some(self.term), state.chain);
        state.pending.push_back(rx);
        self.wait_until(&mut state, SYNCER_PROPOSALS_IN_FLIGHT_MAX)
    }

    fn flush(&self) -> Result<(), SinkError> {
        let mut state = self.state.lock().expect("in-flight lock");
        self.wait_until(&mut state, 0)
    }

    fn begin_session(&self) -> Result<(), SinkError> {
        self.settle()?;
        let chain = {
            let mut state = self.state.lock().expect("in-flight lock");
            state.chain = self.raft.new_chain();
            state.chain
        };
        // A transaction a previous leader left half-proposed is abandoned, whole, before
        // this leader fetches it again.
        if self.store.index().has_partial_tail() {
            self.propose_now(vec![(KIND_ABANDON, Vec::new())], chain)?;
        }
        Ok(())
    }
}

/// Starts a syncer for `args` (the daemon builds the config and the fatal hook).
pub type StartSyncer = Box<dyn Fn(&SyncerArgs, Arc<dyn Sink>) -> Syncer + Send + Sync>;

/// The running syncer, as the watcher and the API see it.
#[derive(Default)]
pub struct SyncerSlot {
    pub running: Option<(SyncerArgs, u64, Syncer)>,
}

/// The watcher thread.
pub struct LeaderWatch(Worker);

pub struct WatchContext {
    pub raft: RaftHandle,
    pub store: Arc<Store>,
    pub cluster: Arc<ClusterShared>,
    pub slot: Arc<Mutex<SyncerSlot>>,
    pub start_syncer: StartSyncer,
    pub my_id: u64,
    /// `(name, peer_url)` of the initial members, when this node may bootstrap them.
    pub bootstrap: Vec<(String, String)>,
    /// This node's name and admin address, announced when it leads.
    pub my_name: String,
    pub my_admin: String,
    /// This node's binlog server address, when it runs one; None while it is not known yet
    /// (at start, until the binlog server the node ran before has resumed): the member
    /// table's is announced then (see `binlog_to_announce`).
    pub binlog_addr: Box<dyn Fn() -> Option<Option<String>> + Send + Sync>,
    /// Called once when this node, a member before, is no longer in the configuration
    /// (removed through `DELETE /members`): it receives nothing more.
    pub on_removed: Box<dyn Fn() + Send + Sync>,
}

impl LeaderWatch {
    pub fn start(ctx: WatchContext) -> LeaderWatch {
        LeaderWatch(Worker::spawn("leader-watch", move |stop| watch(ctx, stop)))
    }

    pub fn stop(self) {
        self.0.stop();
    }
}

fn watch(ctx: WatchContext, stop: &AtomicBool) {
    let mut peers: BTreeMap<u64, String> = BTreeMap::new();
    let mut seen = 0u64;
    let mut last_announce: Option<std::time::Instant> = None;
    let mut leaderless = Leaderless::default();
    let mut was_member = false;
    let mut removed = false;
    while !stop.load(Ordering::SeqCst) {
        seen = ctx
            .cluster
            .wait_change(seen, Duration::from_millis(LEADER_WATCH_INTERVAL_MS));
        let status = ctx.raft.status();
        // A node replaying the log before its own admission is no member yet; one that was
        // and is no longer has applied its own removal.
        let member = status.voters.contains(&ctx.my_id) || status.learners.contains(&ctx.my_id);
        if member {
            was_member = true;
        } else if was_member && !removed && status.running {
            removed = true;
            log::error!(
                "this node ({}, id {:x}) was removed from the cluster (voters now {:x?}): it \
                 receives no more of the binlog, so its binlog server stops; stop this \
                 process (a node rejoins under a new name, with an empty data directory)",
                ctx.my_name,
                ctx.my_id,
                status.voters
            );
            (ctx.on_removed)();
        }
        match leaderless.observe(status.leader_id != 0, std::time::Instant::now()) {
            Some(Notice::Leaderless(without)) => log::warn!(
                "no leader known for {} s (voters {}): the cluster has no quorum if fewer \
                 than {} of them run and reach each other's peer addresses{}",
                without.as_secs(),
                voter_names(&ctx, &status.voters),
                status.voters.len() / 2 + 1,
                if member {
                    ""
                } else {
                    "; this node is not among them: if it was removed, stop it"
                }
            ),
            Some(Notice::LeaderBack(after)) => log::info!(
                "leader {:x} known again, after {} s without one",
                status.leader_id,
                after.as_secs()
            ),
            None => {}
        }
        sync_peers(&ctx, &mut peers);
        // A leader is ready once an entry of its own term is applied: everything committed
        // before its election is then applied too, so the store's resume point is final.
        let ready_leader = status.running && ctx.cluster.leads_ready(&status);
        if ready_leader {
            lead_duties(&ctx);
        } else if !status.is_leader() && status.leader_id != 0 {
            follower_announce(&ctx, status.leader_id, &mut last_announce);
        }
        let mut slot = ctx.slot.lock().expect("syncer slot");
        // Read under the slot's lock: a `syncer stop` makes the stop applied before it takes
        // the slot, so a desire read here is never older than a stop that emptied it.
        let desired = ctx.cluster.state().syncer().cloned();
        let keep = match (&slot.running, &desired) {
            (Some((args, term, _)), Some(want)) => {
                ready_leader && args == want && *term == status.term
            }
            _ => false,
        };
        if !keep {
            if let Some((_, term, syncer)) = slot.running.take() {
                log::info!("stopping the syncer (leader of term {term})");
                syncer.stop();
            }
        }
        let idle_leader = slot.running.is_none() && ready_leader && desired.is_none();
        if slot.running.is_none() && ready_leader {
            if let Some(args) = desired {
                log::info!(
                    "leader of term {}: starting the syncer for {}",
                    status.term,
                    args.mysql_addr
                );
                let sink: Arc<dyn Sink> = Arc::new(RaftSink::new(
                    ctx.raft.clone(),
                    ctx.store.clone(),
                    status.term,
                ));
                let syncer = (ctx.start_syncer)(&args, sink);
                slot.running = Some((args, status.term, syncer));
            }
        }
        drop(slot);
        if idle_leader {
            abandon_stale_tail(&ctx, status.term);
        }
    }
    if let Some((_, _, syncer)) = ctx.slot.lock().expect("syncer slot").running.take() {
        syncer.stop();
    }
}

/// The voters by name where the member table knows them (`name (id)`), else by id.
fn voter_names(ctx: &WatchContext, voters: &[u64]) -> String {
    let state = ctx.cluster.state();
    voters
        .iter()
        .map(|id| match state.member_by_id(*id) {
            Some(m) => format!("{} ({id:x})", m.name),
            None => format!("{id:x}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A transaction a leader of an earlier term left half-stored is abandoned by the next
/// leader's syncer when it starts; with no syncer to start, the leader abandons it itself,
/// so that the store does not end inside a transaction for good (no snapshot can be taken
/// there, so no compaction either). A partial tail of this term is an import under way.
fn abandon_stale_tail(ctx: &WatchContext, term: u64) {
    let Some(tail_term) = ctx.store.partial_tail_term() else {
        return;
    };
    if tail_term >= term {
        return;
    }
    log::warn!(
        "leader of term {term}: the store ends inside a transaction a leader of term \
         {tail_term} left half-stored, and no syncer runs; abandoning it"
    );
    let rx = ctx
        .raft
        .propose(vec![(KIND_ABANDON, Vec::new())], Some(term));
    match rx.recv_timeout(Duration::from_millis(PROPOSE_TIMEOUT_MS)) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => log::warn!("abandoning the half-stored transaction failed: {e}"),
        Err(_) => log::warn!("abandoning the half-stored transaction: no answer yet"),
    }
}

/// What only the leader does besides syncing: record the initial members of a new
/// cluster, and announce its own admin address so followers can forward to it.
fn lead_duties(ctx: &WatchContext) {
    let mut commands = Vec::new();
    {
        let state = ctx.cluster.state();
        commands.extend(state.bootstrap_commands(&ctx.bootstrap));
        if commands.is_empty() {
            let binlog = binlog_to_announce(ctx, &state);
            if let Some(c) = state.announce_command(&ctx.my_name, &ctx.my_admin, binlog.as_deref())
            {
                commands.push(c);
            }
        }
    }
    if commands.is_empty() {
        return;
    }
    let entries = commands
        .iter()
        .map(|c| (COMMAND_KIND, c.encode()))
        .collect();
    // Fire and forget: the apply wakes this watcher again, which re-checks.
    let _ = ctx.raft.propose(entries, None);
}

/// This node's binlog server address to announce: the running server's, or, while the
/// node has not yet resumed the server it ran before, the member table's (unchanged), so
/// that the admin address is announced at once and the binlog address never reads "none"
/// for a moment.
fn binlog_to_announce(ctx: &WatchContext, state: &ClusterState) -> Option<String> {
    match (ctx.binlog_addr)() {
        Some(known) => known,
        None => state
            .member(&ctx.my_name)
            .and_then(|m| m.binlog_addr.clone()),
    }
}

/// A follower makes its own admin and binlog server addresses known: it asks the leader
/// (followers cannot propose) through the leader's admin API, at most every few seconds,
/// until the replicated member table says so.
fn follower_announce(ctx: &WatchContext, leader_id: u64, last: &mut Option<std::time::Instant>) {
    if last.is_some_and(|t| t.elapsed() < Duration::from_millis(ANNOUNCE_RETRY_MS)) {
        return;
    }
    let (binlog, leader_admin) = {
        let state = ctx.cluster.state();
        let binlog = binlog_to_announce(ctx, &state);
        if state
            .announce_command(&ctx.my_name, &ctx.my_admin, binlog.as_deref())
            .is_none()
        {
            return;
        }
        match state.admin_addr_of(leader_id) {
            Some(addr) => (binlog, addr.to_string()),
            None => return,
        }
    };
    *last = Some(std::time::Instant::now());
    let body = serde_json::json!({
        "name": ctx.my_name,
        "admin_url": ctx.my_admin,
        "binlog_addr": binlog,
    });
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(ANNOUNCE_RETRY_MS)))
        .http_status_as_error(false)
        .max_idle_connections(0)
        .proxy(None)
        .build()
        .into();
    let url = format!("http://{leader_admin}/members/announce");
    match agent.put(&url).send_json(&body) {
        Ok(r) if r.status().is_success() => {
            log::info!("announced this node's addresses to the leader at {leader_admin}")
        }
        Ok(r) => log::warn!("announcing to {leader_admin}: HTTP {}", r.status()),
        Err(e) => log::warn!("announcing to {leader_admin}: {e}"),
    }
}

/// Points the transport at every member's current peer address.
fn sync_peers(ctx: &WatchContext, known: &mut BTreeMap<u64, String>) {
    let wanted: BTreeMap<u64, String> = ctx
        .cluster
        .state()
        .members()
        .filter(|m| m.id != ctx.my_id)
        .map(|m| (m.id, m.peer_url.clone()))
        .collect();
    for (id, addr) in &wanted {
        if known.get(id) != Some(addr) {
            ctx.raft.set_peer(*id, addr);
        }
    }
    for id in known.keys() {
        if !wanted.contains_key(id) {
            ctx.raft.remove_peer(*id);
        }
    }
    *known = wanted;
}

/// Builds a syncer config from the API's arguments.
pub fn syncer_config(args: &SyncerArgs) -> Result<SyncerConfig, String> {
    let start = super::start_point(args).map_err(|e| e.message)?;
    Ok(SyncerConfig {
        upstream: crate::syncer::upstream::Upstream {
            addr: args.mysql_addr.clone(),
            user: args.mysql_user.clone(),
            password: args.mysql_password.clone(),
            server_id: args.syncer_id,
            uuid: args.syncer_uuid.clone(),
        },
        start,
    })
}

/// Proposes one command and waits for it to be applied.
pub fn propose_command(raft: &RaftHandle, command: &Command) -> Result<u64, ProposeError> {
    let rx = raft.propose(vec![(COMMAND_KIND, command.encode())], None);
    rx.recv_timeout(Duration::from_millis(PROPOSE_TIMEOUT_MS))
        .unwrap_or(Err(ProposeError::Busy))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Condvar;
    use std::time::Instant;

    use super::*;
    use crate::consensus::node::{Applied, NodeConfig, RaftNode, StateMachine};
    use crate::storage::Log;

    /// Records applied data; `hold` makes apply wait until released.
    #[derive(Default)]
    struct Held {
        applied: Mutex<Vec<Vec<u8>>>,
        hold: Mutex<bool>,
        released: Condvar,
        waiting: AtomicUsize,
    }

    struct HeldSm(Arc<Held>);

    impl StateMachine for HeldSm {
        fn apply(&mut self, entries: Vec<Applied>) {
            let h = &self.0;
            let mut hold = h.hold.lock().unwrap();
            h.waiting.fetch_add(1, Ordering::SeqCst);
            while *hold {
                hold = h.released.wait(hold).unwrap();
            }
            h.waiting.fetch_sub(1, Ordering::SeqCst);
            let mut applied = h.applied.lock().unwrap();
            applied.extend(
                entries
                    .iter()
                    .filter(|e| e.kind != 0)
                    .map(|e| e.data.to_vec()),
            );
        }
        fn snapshot_data(&mut self) -> Option<Vec<u8>> {
            Some(Vec::new())
        }
        fn restore(&mut self, _index: u64, _term: u64, _data: &[u8]) {}
        fn on_conf_state(&mut self, _voters: &[u64], _learners: &[u64]) {}
    }

    const KIND: u8 = 0x30;

    /// A proposal whose wait timed out is still waited for by the next session: the resume
    /// point is read only once every earlier proposal is answered, so none lands after it.
    #[test]
    fn a_timed_out_proposal_is_not_forgotten_by_the_next_session() {
        let dir = tempfile::tempdir().unwrap();
        let held = Arc::new(Held::default());
        let node = RaftNode::start(
            NodeConfig {
                id: 5,
                cluster_id: 0x44,
                data_dir: dir.path().join("node"),
                peer_listen: "127.0.0.1:0".into(),
                peer_advertise: String::new(),
                peers: Vec::new(),
                bootstrap_voters: Some(vec![5]),
                on_fatal: Some(Arc::new(|reason: &str| panic!("fatal: {reason}"))),
            },
            Box::new(HeldSm(Arc::clone(&held))),
        )
        .unwrap();
        let raft = node.handle();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !raft.status().is_leader() {
            assert!(Instant::now() < deadline, "no leader");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (log, _) = Log::open(&dir.path().join("store")).unwrap();
        let store = Arc::new(Store::over_log(log.reader()));
        let term = raft.status().term;
        let sink =
            RaftSink::new(raft.clone(), store, term).with_timeout(Duration::from_millis(200));
        sink.append(vec![(KIND, b"one".to_vec())]).unwrap();
        sink.flush().unwrap();

        // The raft thread now stalls in apply: the next batch is appended but unanswered.
        *held.hold.lock().unwrap() = true;
        sink.append(vec![(KIND, b"two".to_vec())]).unwrap();
        assert!(matches!(sink.flush(), Err(SinkError::Unavailable(_))));
        // A new session refuses to begin while it is unanswered ...
        assert!(matches!(
            sink.begin_session(),
            Err(SinkError::Unavailable(_))
        ));
        assert_eq!(held.waiting.load(Ordering::SeqCst), 1, "apply is held");
        // ... and begins once it is, with "two" applied exactly once.
        *held.hold.lock().unwrap() = false;
        held.released.notify_all();
        sink.begin_session().unwrap();
        assert_eq!(
            *held.applied.lock().unwrap(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        sink.append(vec![(KIND, b"three".to_vec())]).unwrap();
        sink.flush().unwrap();
        assert_eq!(held.applied.lock().unwrap().len(), 3);
        node.shutdown();
    }
}
