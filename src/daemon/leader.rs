//! Leader duties: the syncer runs on the raft leader only, from the replicated desired state,
//! and proposes through raft fenced by the leader's term. This module's watcher thread
//! starts it when this node becomes a ready leader with a syncer desired, and stops it the
//! moment leadership is lost or the desire is withdrawn; it also keeps the transport's peer
//! table in line with the replicated members, and lets a new cluster's first leader record
//! the initial members.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api::model::SyncerArgs;
use crate::consensus::node::{ProposeError, RaftHandle};
use crate::consensus::state::{Command, COMMAND_KIND};
use crate::limits::{
    ANNOUNCE_RETRY_MS, LEADER_WATCH_INTERVAL_MS, PROPOSE_TIMEOUT_MS, SYNCER_PROPOSALS_IN_FLIGHT_MAX,
};
use crate::store::entry::KIND_ABANDON;
use crate::store::Store;
use crate::syncer::{Sink, SinkError, Syncer, SyncerConfig};

use super::machine::ClusterShared;
use super::worker::Worker;

/// Proposes syncer entries through raft, fenced to the term this node leads in. Several
/// batches may be in flight at once (the next is proposed while the last commits), up to
/// `SYNCER_PROPOSALS_IN_FLIGHT_MAX`; `flush` waits for all of them.
pub struct RaftSink {
    raft: RaftHandle,
    store: Arc<Store>,
    term: u64,
    in_flight: Mutex<VecDeque<Receiver<Result<u64, ProposeError>>>>,
}

impl RaftSink {
    pub fn new(raft: RaftHandle, store: Arc<Store>, term: u64) -> RaftSink {
        RaftSink {
            raft,
            store,
            term,
            in_flight: Mutex::new(VecDeque::new()),
        }
    }

    fn propose(&self, entries: Vec<(u8, Vec<u8>)>) -> Result<u64, SinkError> {
        let rx = self.raft.propose(entries, Some(self.term));
        Self::wait(rx)
    }

    /// Waits for one proposal's outcome.
    fn wait(rx: Receiver<Result<u64, ProposeError>>) -> Result<u64, SinkError> {
        match rx.recv_timeout(Duration::from_millis(PROPOSE_TIMEOUT_MS)) {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(
                e @ (ProposeError::NotLeader { .. }
                | ProposeError::TermChanged { .. }
                | ProposeError::Dropped),
            )) => Err(SinkError::Deposed(e.to_string())),
            Ok(Err(e)) => Err(SinkError::Unavailable(e.to_string())),
            Err(_) => Err(SinkError::Unavailable(format!(
                "no commit within {PROPOSE_TIMEOUT_MS} ms (is a quorum reachable?)"
            ))),
        }
    }
}

impl Sink for RaftSink {
    fn append(&self, entries: Vec<(u8, Vec<u8>)>) -> Result<(), SinkError> {
        let rx = self.raft.propose(entries, Some(self.term));
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        in_flight.push_back(rx);
        while in_flight.len() > SYNCER_PROPOSALS_IN_FLIGHT_MAX {
            let oldest = in_flight.pop_front().expect("not empty");
            if let Err(e) = Self::wait(oldest) {
                // The later ones were proposed in the same term: they fail alike.
                in_flight.clear();
                return Err(e);
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        while let Some(rx) = in_flight.pop_front() {
            if let Err(e) = Self::wait(rx) {
                in_flight.clear();
                return Err(e);
            }
        }
        Ok(())
    }

    fn begin_session(&self) -> Result<(), SinkError> {
        self.flush()?;
        // A transaction a previous leader left half-proposed is abandoned, whole, before
        // this leader fetches it again.
        if self.store.index().has_partial_tail() {
            self.propose(vec![(KIND_ABANDON, Vec::new())])?;
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
    /// This node's binlog server address, when it runs one.
    pub binlog_addr: Box<dyn Fn() -> Option<String> + Send + Sync>,
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
    while !stop.load(Ordering::SeqCst) {
        seen = ctx
            .cluster
            .wait_change(seen, Duration::from_millis(LEADER_WATCH_INTERVAL_MS));
        let status = ctx.raft.status();
        sync_peers(&ctx, &mut peers);
        let applied_term = ctx.cluster.last_applied_term.load(Ordering::SeqCst);
        // A leader is ready once an entry of its own term is applied: everything committed
        // before its election is then applied too, so the store's resume point is final.
        let ready_leader = status.is_leader && status.running && applied_term == status.term;
        if ready_leader {
            lead_duties(&ctx);
        } else if !status.is_leader && status.leader_id != 0 {
            follower_announce(&ctx, status.leader_id, &mut last_announce);
        }
        let desired = ctx.cluster.state().syncer().cloned();
        let mut slot = ctx.slot.lock().expect("syncer slot");
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
    }
    if let Some((_, _, syncer)) = ctx.slot.lock().expect("syncer slot").running.take() {
        syncer.stop();
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
            let binlog = (ctx.binlog_addr)();
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

/// A follower makes its own admin and binlog server addresses known: it asks the leader
/// (followers cannot propose) through the leader's admin API, at most every few seconds,
/// until the replicated member table says so.
fn follower_announce(ctx: &WatchContext, leader_id: u64, last: &mut Option<std::time::Instant>) {
    if last.is_some_and(|t| t.elapsed() < Duration::from_millis(ANNOUNCE_RETRY_MS)) {
        return;
    }
    let binlog = (ctx.binlog_addr)();
    let leader_admin = {
        let state = ctx.cluster.state();
        if state
            .announce_command(&ctx.my_name, &ctx.my_admin, binlog.as_deref())
            .is_none()
        {
            return;
        }
        match state.admin_addr_of(leader_id) {
            Some(addr) => addr.to_string(),
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
