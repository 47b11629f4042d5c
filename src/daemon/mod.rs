//! The node process: opens the data directory, restores the desired state, starts the admin
//! API, the syncer and the binlog server as asked, and owns the one shutdown signal
//! (SIGTERM / SIGINT). It is the only place that adds context to the modules' errors.
//!
//! The [`Node`] is what the admin API drives ([`crate::api::Backend`]): one owner per piece of
//! state (the syncer handle, the server handle, the desired state), each behind its own
//! mutex, taken briefly.

pub mod export;
pub mod import;
pub mod leader;
pub mod leaderless;
pub mod machine;
pub mod memory;
pub mod promote;
pub mod retention;
pub mod worker;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::api::model::{
    BinlogFileInfo, Health, ImportSummary, LatencyView, MemberAdd, MemberAnnounce, MemberUpdate,
    MemberView, PeerView, RaftView, ServerArgs, ServerState, ServerStatus, SlaveInfo, SlaveMode,
    SyncerArgs, SyncerState, SyncerStatus,
};
use crate::api::{AdminServer, ApiError, Backend, ClusterRoute, FileStream};
use crate::binlog::gtid::MariaGtidList;
use crate::config::Config;
use crate::consensus::node::{NodeConfig, ProposeError, RaftHandle, RaftNode};
use crate::consensus::state::{Command, Effect, MemberInfo, QuorumError, StateError};
use crate::server::auth::AuthPlugin;
use crate::server::{BinlogServer, ServerConfig, StartError};
use crate::store::{Store, StoreError};
use crate::syncer::{StartPoint, State, Syncer};
use leader::{LeaderWatch, SyncerSlot, WatchContext};
use machine::{ClusterShared, NodeMachine};

/// Name of the desired-state file in the data directory.
const DESIRED_FILE: &str = "desired.json";
/// Name of the lock file that keeps a second daemon off the data directory.
const LOCK_FILE: &str = "LOCK";
/// Name of the file that records this node's raft id (hex) at its first start.
const RAFT_ID_FILE: &str = "raft_id";
/// How often a leader elected moments ago looks again whether it is ready, or whether a
/// membership change's quorum check passes now.
const NEW_LEADER_RECHECK_MS: u64 = 50;

/// Why the daemon could not run.
#[derive(Debug)]
pub enum DaemonError {
    DataDir {
        path: PathBuf,
        error: std::io::Error,
    },
    Locked {
        path: PathBuf,
    },
    Store(StoreError),
    Consensus(crate::consensus::ConsensusError),
    Admin {
        addr: String,
        error: std::io::Error,
    },
    Desired {
        path: PathBuf,
        message: String,
    },
    /// An address the node must listen on cannot be bound.
    Listen {
        what: &'static str,
        addr: String,
        error: std::io::Error,
    },
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::DataDir { path, error } => {
                write!(f, "data directory {}: {error}", path.display())
            }
            DaemonError::Locked { path } => write!(
                f,
                "data directory {} is in use by another ferrobus process",
                path.display()
            ),
            DaemonError::Store(e) => write!(f, "cannot open the binlog store: {e}"),
            DaemonError::Consensus(e) => write!(f, "cannot start raft: {e}"),
            DaemonError::Admin { addr, error } => {
                write!(f, "cannot start the admin API on {addr}: {error}")
            }
            DaemonError::Desired { path, message } => {
                write!(f, "desired state {}: {message}", path.display())
            }
            DaemonError::Listen { what, addr, error } => write!(
                f,
                "cannot listen on {addr} ({what}): {error}; the node stopped before writing any \
                 cluster state"
            ),
        }
    }
}

impl std::error::Error for DaemonError {}

/// What this node should be doing locally; persisted so a restarted node resumes by itself.
/// (The syncer's desired state is replicated through raft instead: see `machine`.)
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Desired {
    #[serde(default)]
    server: Option<ServerArgs>,
}

/// One node: the state the admin API reads and changes.
pub struct Node {
    data_dir: PathBuf,
    store: Arc<Store>,
    raft: RaftHandle,
    cluster: Arc<ClusterShared>,
    syncer: Arc<Mutex<SyncerSlot>>,
    server: Mutex<Option<BinlogServer>>,
    /// This node was removed from the cluster while it ran (see `removed_from_cluster`).
    removed: AtomicBool,
    /// Where the node is in resuming the binlog server `desired.json` names (`restore`).
    resume: Mutex<Resume>,
    desired: Mutex<Desired>,
    /// Serializes this node's changes to the replicated state (syncer, members, purge,
    /// import), which wait for raft; the node-local `desired` state has its own lock, so
    /// that starting or stopping the binlog server never waits behind a proposal.
    changes: Mutex<()>,
    server_max_connections: usize,
    /// This node's @@server_uuid for downstream MySQL replicas (stable across restarts).
    server_uuid: String,
    server_auth_plugin: AuthPlugin,
    server_rsa_private_key_path: Option<String>,
    started: Instant,
    /// An import of binlog files runs (see `import`); set and read under `changes`.
    importing: std::sync::atomic::AtomicBool,
    /// Alone on the default peer address (no `--peer-addr`, or the default given): raft
    /// peers listen on a port of the system's choosing, which no other node can know, so
    /// the cluster cannot grow.
    chosen_peer_port: bool,
}

/// Where a starting node is in resuming the binlog server it ran before (see
/// `Node::restore`).
enum Resume {
    /// Not yet: this node's binlog address is not known, and not announced. The server
    /// `desired.json` names (address, user), shown by `server status` as starting, unless
    /// the API started or stopped one since.
    Waiting(Option<(String, String)>),
    Done,
}

/// Runs a node until SIGTERM, SIGINT or SIGHUP. Returns after a clean stop.
pub fn serve(config: Config) -> Result<(), DaemonError> {
    // Block the stop signals before any thread starts, so every thread inherits the mask and
    // the main thread alone receives them in `wait_for_stop_signal`.
    let signals = StopSignals::block();
    memory::tune_malloc();
    log::info!(
        "ferrobus {} starting: {}",
        env!("CARGO_PKG_VERSION"),
        config.summary()
    );
    let data_dir = config.data_dir.clone();
    create_data_dir(&data_dir)?;
    let _lock = lock_data_dir(&data_dir)?;
    check_listen_addrs(&config)?;
    import::clear_spool(&data_dir);

    let cluster = Arc::new(ClusterShared::new());
    let store_slot: Arc<Mutex<Option<Arc<Store>>>> = Arc::new(Mutex::new(None));
    let my_id = own_raft_id(&data_dir, config.member_id())?;
    let node_config = node_config(&config, my_id);
    let raft = {
        let cluster = cluster.clone();
        let store_slot = store_slot.clone();
        RaftNode::start_with(node_config, move |reader| {
            let store = Arc::new(Store::over_log(reader));
            *store_slot.lock().expect("store slot") = Some(store.clone());
            Box::new(NodeMachine::new(store, cluster))
        })
        .map_err(DaemonError::Consensus)?
    };
    let store = store_slot
        .lock()
        .expect("store slot")
        .clone()
        .expect("the state machine was built");
    log::info!(
        "raft node {my_id:x} ({}) started; peers listen on {}",
        config.name,
        raft.peer_addr()
    );
    let handle = raft.handle();
    // The only voter leads by itself: wait for that, so that the API is ready when it
    // answers. A node that grew from one (same one-member --initial-cluster) must not
    // wait: it needs its peers, which the leader watch gives the transport.
    if handle.status().voters == [my_id] {
        wait_ready_leader(&handle, &cluster);
    }

    let node = Arc::new(Node {
        data_dir: data_dir.clone(),
        store: store.clone(),
        raft: handle.clone(),
        cluster: cluster.clone(),
        syncer: Arc::new(Mutex::new(SyncerSlot::default())),
        server: Mutex::new(None),
        removed: AtomicBool::new(false),
        resume: Mutex::new(Resume::Waiting(None)),
        desired: Mutex::new(Desired::default()),
        changes: Mutex::new(()),
        server_max_connections: config.server_max_connections,
        server_uuid: crate::server::node_server_uuid(config.cluster_id(), my_id),
        server_auth_plugin: config.server_auth_plugin,
        server_rsa_private_key_path: config.server_rsa_private_key_path.clone(),
        started: Instant::now(),
        importing: std::sync::atomic::AtomicBool::new(false),
        chosen_peer_port: peer_port_chosen(&config),
    });
    // The binlog server comes back once this node has caught up with the cluster (it
    // re-applies its log at start and learns the commit index from the leader), so that a
    // replica is never told the binlog it already has is not stored. In the background:
    // the other members may still be starting, and they need this node's admin API.
    let desired = load_desired(&data_dir)?;
    *node.resume.lock().expect("resume lock") = Resume::Waiting(
        desired
            .server
            .as_ref()
            .map(|s| (s.addr.clone(), s.user.clone())),
    );
    // Set on SIGTERM: a restore still waiting for the cluster gives up (the node stops).
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let restorer = {
        let node = node.clone();
        let stopping = stopping.clone();
        std::thread::Builder::new()
            .name("restore".into())
            .spawn(move || {
                if let Some(server) = &desired.server {
                    log::info!(
                        "the binlog server on {} resumes once this node has caught up with \
                         the cluster (or after {} s at most)",
                        server.addr,
                        crate::limits::STARTUP_APPLY_WAIT_MS / 1000
                    );
                }
                if wait_caught_up(&node.raft, &node.cluster, &stopping) {
                    node.restore(desired);
                }
            })
            .map_err(|error| DaemonError::DataDir {
                path: data_dir.clone(),
                error,
            })?
    };
    let backend: Arc<dyn Backend> = node.clone();
    let admin =
        AdminServer::start(&config.admin_addr, backend, config.http_workers).map_err(|error| {
            DaemonError::Admin {
                addr: config.admin_addr.clone(),
                error,
            }
        })?;
    let watch = LeaderWatch::start(WatchContext {
        raft: handle.clone(),
        store: store.clone(),
        cluster: cluster.clone(),
        slot: node.syncer.clone(),
        start_syncer: syncer_starter(store.clone()),
        my_id,
        bootstrap: config.initial_members(),
        my_name: config.name.clone(),
        my_admin: advertised_admin(admin.local_addr(), &config.own_entry().peer_url),
        binlog_addr: {
            let node = node.clone();
            Box::new(move || {
                let resumed = matches!(*node.resume.lock().expect("resume lock"), Resume::Done);
                resumed.then(|| node.binlog_addr())
            })
        },
        on_removed: {
            let node = node.clone();
            Box::new(move || node.removed_from_cluster())
        },
    });
    let retention = retention::RetentionThread::start(node.clone(), config.retention.clone());
    let promoter = promote::PromoteThread::start(node.clone());
    let releaser = memory::MemoryReleaser::start();
    log::info!(
        "ferrobus {} up: admin API on {}",
        env!("CARGO_PKG_VERSION"),
        admin.local_addr()
    );
    let signal = signals.wait();
    log::info!("received {signal}: stopping");
    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = restorer.join();
    // The watch stops the syncer as it ends (nothing is proposed during the hand-over).
    watch.stop();
    hand_leadership_over(&handle, my_id);
    admin.shutdown();
    retention.stop();
    promoter.stop();
    releaser.stop();
    node.shutdown();
    raft.shutdown();
    log::info!("stopped cleanly");
    Ok(())
}

/// A leader that stops hands leadership to another voter first and waits (up to
/// `HANDOVER_WAIT_MS`) until that one leads, so that a planned stop (a rolling restart)
/// costs the cluster a hand-over rather than an election timeout without a leader.
fn hand_leadership_over(raft: &RaftHandle, my_id: u64) {
    let (mut seen, status) = raft.status_with_generation();
    if !status.is_leader() || status.voters.len() < 2 {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(crate::limits::HANDOVER_WAIT_MS);
    let to = match raft
        .transfer_leadership()
        .recv_timeout(Duration::from_millis(crate::limits::HANDOVER_WAIT_MS))
    {
        Ok(Some(to)) => to,
        Ok(None) => {
            log::info!(
                "no other voter heard from recently (or no longer the leader): stopping \
                 without handing leadership over"
            );
            return;
        }
        Err(_) => {
            log::warn!("the raft thread did not answer: stopping without handing leadership over");
            return;
        }
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::warn!(
                "node {to:x} did not take over within {} ms; stopping anyway (the others \
                 elect a leader)",
                crate::limits::HANDOVER_WAIT_MS
            );
            return;
        }
        let status;
        (seen, status) = raft.wait_change(seen, left);
        if status.leader_id != 0 && status.leader_id != my_id {
            log::info!(
                "handed leadership to node {:x} before stopping",
                status.leader_id
            );
            return;
        }
    }
}

/// Binds the admin and peer addresses once before anything durable is written (the raft
/// id, the cluster's first entries), so that an address in use, or the two given the same
/// port, fails the start with a clear message and leaves the data directory as it was.
/// The real listeners bind moments later; a port taken in between still fails the start.
fn check_listen_addrs(config: &Config) -> Result<(), DaemonError> {
    let bind = |what: &'static str, addr: &str| {
        std::net::TcpListener::bind(addr).map_err(|error| DaemonError::Listen {
            what,
            addr: addr.to_string(),
            error,
        })
    };
    let _admin = bind("admin_addr", &config.admin_addr)?;
    if !peer_port_chosen(config) {
        let _peer = bind("peer_addr, the raft peer port", &config.peer_addr)?;
    }
    Ok(())
}

/// A node alone that was not given a peer address listens for raft peers on a port the
/// system chooses (several such nodes can run on one machine); it cannot grow.
fn peer_port_chosen(config: &Config) -> bool {
    config.initial_cluster.len() == 1 && config.peer_addr == crate::config::PEER_ADDR_DEFAULT
}

/// The raft node's configuration from the node's.
fn node_config(config: &Config, id: u64) -> NodeConfig {
    // A node alone on a port the system chose says that port; any other says its entry
    // in the initial cluster (where the others dial it: behind a proxy or a NAT that need
    // not be the address it listens on).
    let (peer_listen, peer_advertise) = if peer_port_chosen(config) {
        ("127.0.0.1:0".to_string(), String::new())
    } else {
        (
            config.peer_addr.clone(),
            config.own_entry().peer_url.clone(),
        )
    };
    let bootstrap_voters = match config.initial_cluster_state {
        crate::config::InitialClusterState::New => Some(
            config
                .initial_cluster
                .iter()
                .map(|peer| peer.id())
                .collect(),
        ),
        crate::config::InitialClusterState::Existing => None,
    };
    NodeConfig {
        id,
        cluster_id: config.cluster_id(),
        data_dir: config.data_dir.clone(),
        peer_listen,
        peer_advertise,
        peers: config.other_peers(),
        bootstrap_voters,
        on_fatal: None,
    }
}

/// Waits (bounded) until this node has caught up with the cluster (see
/// [`ClusterShared::caught_up`]): its store then holds at least what the cluster had when
/// it stopped. Answers false when the node is stopping meanwhile (nothing is to be restored
/// then).
fn wait_caught_up(
    raft: &RaftHandle,
    cluster: &ClusterShared,
    stopping: &std::sync::atomic::AtomicBool,
) -> bool {
    let deadline = Instant::now() + Duration::from_millis(crate::limits::STARTUP_APPLY_WAIT_MS);
    loop {
        if stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let status = raft.status();
        let caught_up = cluster.caught_up(&status);
        let timed_out = Instant::now() >= deadline;
        if caught_up || !status.running || timed_out {
            let leader = match status.leader_id {
                0 => "no leader known yet".to_string(),
                id => format!("leader {id:x}"),
            };
            let what = format!(
                "applied {} of the {} entries this node knows committed ({leader})",
                status.applied, status.commit
            );
            if caught_up {
                log::info!("ready: {what}");
            } else if timed_out {
                log::warn!(
                    "not caught up with the cluster after {} s ({what}, none yet of the \
                     current term): ready anyway; a binlog server resumed now serves what \
                     this node has",
                    crate::limits::STARTUP_APPLY_WAIT_MS / 1000
                );
            } else {
                log::info!("raft stopped before this node caught up ({what})");
            }
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A node alone elects itself at once and then commits its whole log again (the commit
/// index on disk may be behind). Wait (bounded) until an entry of its own term is applied:
/// the whole log is then applied, and the first admin request finds a leader.
fn wait_ready_leader(raft: &RaftHandle, cluster: &ClusterShared) {
    let deadline = Instant::now() + Duration::from_millis(crate::limits::STARTUP_APPLY_WAIT_MS);
    loop {
        if cluster.leads_ready(&raft.status()) || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn syncer_starter(store: Arc<Store>) -> leader::StartSyncer {
    Box::new(move |args: &SyncerArgs, sink| {
        let fatal: crate::syncer::FatalHook = Arc::new(|e: &StoreError| {
            log::error!("the store cannot make data durable: {e}; stopping the process");
            std::process::exit(1);
        });
        let config = match leader::syncer_config(args) {
            Ok(c) => c,
            Err(e) => {
                log::error!("the desired syncer arguments are unusable: {e}");
                // The API validated them before proposing; start with the oldest file.
                let mut plain = args.clone();
                plain.gtid = None;
                plain.binlog_file = None;
                plain.binlog_pos = None;
                leader::syncer_config(&plain).expect("plain arguments")
            }
        };
        Syncer::start(config, store.clone(), sink, fatal)
    })
}

impl Node {
    /// The syncer's status as this leader knows it (`slot` is the syncer slot, locked).
    fn syncer_view(&self, slot: &SyncerSlot) -> SyncerStatus {
        let desired = self.cluster.state().syncer().cloned();
        let index = self.store.index();
        let state = index.maria_state();
        let stored = index.resume_point();
        let (events, bytes) = index.totals();
        let mut status = SyncerStatus {
            status: SyncerState::Stopped,
            mysql_addr: None,
            mysql_user: None,
            syncer_id: None,
            current_gtid: last_gtid(state),
            last_binlog_file: stored.as_ref().map(|s| s.0.clone()),
            last_file_position: stored.map(|s| s.1),
            executed_gtid_set: Some(state.to_string()),
            purged_gtid_set: Some(index.purged_gtids().to_string()),
            last_error: None,
            last_error_at: None,
            lag_seconds: None,
            events,
            bytes,
        };
        if let Some(args) = &desired {
            // Desired but not running here yet: the leader is starting it.
            status.status = SyncerState::Connecting;
            status.mysql_addr = Some(args.mysql_addr.clone());
            status.mysql_user = Some(args.mysql_user.clone());
            status.syncer_id = Some(args.syncer_id);
        }
        if let Some((_, _, syncer)) = slot.running.as_ref().filter(|_| desired.is_some()) {
            let p = syncer.progress();
            status.status = match p.state {
                State::Running => SyncerState::Running,
                State::Connecting => SyncerState::Connecting,
                State::Stopped => SyncerState::Stopped,
                State::Error => SyncerState::Error,
            };
            status.last_error = p.last_error;
            status.last_error_at = p.last_error_at;
            status.lag_seconds = p.lag_seconds;
        }
        status
    }

    /// Starts the binlog server if the desired state asks for it. A failure is logged; the
    /// node keeps running so an operator can fix it through the API.
    fn restore(&self, desired: Desired) {
        let mut current = self.desired.lock().expect("desired lock");
        if current.server.is_some() || self.server.lock().expect("server lock").is_some() {
            // The API started a server meanwhile: that is the desired state now.
            *self.resume.lock().expect("resume lock") = Resume::Done;
            return;
        }
        // What is saved now wins over what was read at start: a `server stop` through the
        // API while this node caught up saved "stopped", and must not be undone here.
        let desired = match load_desired(&self.data_dir) {
            Ok(saved) => saved,
            Err(e) => {
                log::warn!(
                    "cannot read the desired state again ({e}); using the one read at start"
                );
                desired
            }
        };
        if let Some(args) = desired.server.clone() {
            log::info!("resuming the binlog server on {}", args.addr);
            if let Err(e) = self.start_server(args) {
                log::error!("cannot resume the binlog server: {}", e.message);
            }
        }
        *current = desired;
        *self.resume.lock().expect("resume lock") = Resume::Done;
    }

    fn shutdown(&self) {
        if let Some((_, _, syncer)) = self.syncer.lock().expect("syncer lock").running.take() {
            syncer.stop();
        }
        if let Some(server) = self.server.lock().expect("server lock").take() {
            server.stop();
        }
        self.store.close();
    }

    /// The bound address of this node's binlog server, when it runs.
    /// This node was removed from the cluster while it ran: it receives nothing more, so
    /// its binlog server stops (and stays stopped after a restart) rather than serve a
    /// binlog that no longer grows to replicas that cannot tell; `/health` says `removed`.
    fn removed_from_cluster(&self) {
        self.removed.store(true, Ordering::SeqCst);
        if let Err(e) = self.server_stop() {
            log::error!(
                "stopping the binlog server of a removed node: {}",
                e.message
            );
        }
    }

    fn binlog_addr(&self) -> Option<String> {
        self.server
            .lock()
            .expect("server lock")
            .as_ref()
            .map(|s| s.local_addr().to_string())
    }

    fn start_server(&self, args: ServerArgs) -> Result<(), ApiError> {
        let mut slot = self.server.lock().expect("server lock");
        if let Some(running) = slot.as_ref() {
            return Err(ApiError::conflict(format!(
                "the binlog server is already running on {}; stop it first",
                running.config().addr
            )));
        }
        let fallback_version = self
            .syncer
            .lock()
            .expect("syncer lock")
            .running
            .as_ref()
            .and_then(|(_, _, s)| s.progress().master_version)
            .unwrap_or_else(|| "10.11.0-MariaDB-ferrobus".to_string());
        let config = ServerConfig {
            addr: args.addr.clone(),
            user: args.user.clone(),
            password: args.password.clone(),
            max_connections: self.server_max_connections,
            server_uuid: self.server_uuid.clone(),
            auth_plugin: args
                .auth_plugin
                .as_deref()
                .and_then(AuthPlugin::parse)
                .unwrap_or(self.server_auth_plugin),
            rsa_private_key_path: args
                .rsa_private_key_path
                .clone()
                .or_else(|| self.server_rsa_private_key_path.clone()),
        };
        let server = BinlogServer::start(config, self.store.clone(), fallback_version).map_err(
            |e| match e {
                // The request named the key file: its fault.
                StartError::Keys(e) if args.rsa_private_key_path.is_some() => {
                    ApiError::bad_request(e.to_string())
                }
                // The node's own configuration did: a fault of the node, not of the request.
                StartError::Keys(e) if self.server_rsa_private_key_path.is_some() => {
                    ApiError::internal(format!(
                        "{e} (the node's [server] rsa_private_key_path setting)"
                    ))
                }
                // The key pair could not be made.
                StartError::Keys(e) => ApiError::internal(e.to_string()),
                StartError::Listen(e) => {
                    ApiError::conflict(format!("cannot listen on {}: {e}", args.addr))
                }
            },
        )?;
        *slot = Some(server);
        Ok(())
    }

    /// Runs one change of what the node does locally (the binlog server) and saves the
    /// desired state, under the desired-state lock: changes are serialized and the saved
    /// state always matches what runs. Lock order: desired, then the server slot.
    fn change(
        &self,
        act: impl FnOnce() -> Result<(), ApiError>,
        record: impl FnOnce(&mut Desired),
    ) -> Result<(), ApiError> {
        let mut desired = self.desired.lock().expect("desired lock");
        act()?;
        record(&mut desired);
        save_desired(&self.data_dir, &desired)
            .map_err(|e| ApiError::internal(format!("cannot save the desired state: {e}")))?;
        // What the API asked for, now saved, replaces the server waiting to resume.
        if let Resume::Waiting(shown) = &mut *self.resume.lock().expect("resume lock") {
            *shown = None;
        }
        Ok(())
    }

    /// Waits until this node is a ready leader: one that has applied an entry of its own
    /// term, so everything its predecessors committed too (the desired syncer, the members,
    /// the purge point). Until then its copy of the replicated state may be stale: a
    /// `syncer stop` read against it could find no syncer and skip the proposal, and the
    /// predecessor's start would then apply after the reply. 503 when this node stops
    /// leading, or is not ready within `LEADER_READY_WAIT_MS`.
    fn until_ready_leader(&self) -> Result<(), ApiError> {
        let deadline = Instant::now() + Duration::from_millis(crate::limits::LEADER_READY_WAIT_MS);
        loop {
            let seen = self.cluster.generation();
            let status = self.raft.status();
            if !status.is_leader() {
                return Err(ApiError::unavailable(
                    "this node no longer leads (an election is under way); retry in a moment",
                ));
            }
            if self.cluster.leads_ready(&status) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ApiError::unavailable(format!(
                    "this node was elected leader moments ago and has not applied its log \
                     within {} ms; retry in a moment",
                    crate::limits::LEADER_READY_WAIT_MS
                )));
            }
            // Woken by every applied term change; short naps cover a missed one.
            self.cluster
                .wait_change(seen, left.min(Duration::from_millis(NEW_LEADER_RECHECK_MS)));
        }
    }

    /// Proposes a replicated command and waits until it is applied here.
    fn propose(&self, command: &Command) -> Result<(), ApiError> {
        leader::propose_command(&self.raft, command)
            .map(|_| ())
            .map_err(propose_error)
    }

    /// The quorum check of a membership change (`check` gets the voters and the active
    /// ones), refused with 409 when it fails. A leader elected less than
    /// `PEER_ACTIVE_WINDOW_MS` ago may not have heard from every live voter yet (a change
    /// handed over by a leaving leader arrives right after the election): a failing check
    /// is then tried again until the leader has led that long.
    fn check_quorum(
        &self,
        check: impl Fn(&[u64], &[u64]) -> Result<(), QuorumError>,
    ) -> Result<(), ApiError> {
        let window = Duration::from_millis(crate::limits::PEER_ACTIVE_WINDOW_MS);
        loop {
            let status = self.raft.status();
            let Err(e) = check(&status.voters, &status.active_voters) else {
                return Ok(());
            };
            if status.leading_since.is_none_or(|t| t.elapsed() >= window) {
                return Err(ApiError::conflict(e.to_string()));
            }
            std::thread::sleep(Duration::from_millis(NEW_LEADER_RECHECK_MS));
        }
    }

    fn conf_change(
        &self,
        change_type: raft::eraftpb::ConfChangeType,
        id: u64,
    ) -> Result<(), ApiError> {
        let cc = raft::eraftpb::ConfChange {
            change_type,
            node_id: id,
            ..Default::default()
        };
        let outcome = self
            .raft
            .conf_change(cc)
            .recv_timeout(Duration::from_millis(crate::limits::PROPOSE_TIMEOUT_MS))
            .unwrap_or(Err(ProposeError::Busy));
        match outcome {
            Err(e @ ProposeError::HandingOver { .. }) => Err(self.await_handover(&e)),
            other => other.map_err(propose_error),
        }
    }

    /// Promotes a learner that has caught up to voter (see `promote`), when this node is a
    /// ready leader; serialized with the API's changes. False when a proposal failed.
    pub(crate) fn promote_ready_learner(&self) -> bool {
        let _guard = self.changes.lock().expect("changes lock");
        let status = self.raft.status();
        if !self.cluster.leads_ready(&status) {
            return true;
        }
        let (ready, name) = {
            let state = self.cluster.state();
            let ready = promote::ready_learner(&status, Instant::now(), |id| {
                state.member_by_id(id).is_some()
            });
            let name = ready.and_then(|r| state.member_by_id(r.id).map(|m| m.name.clone()));
            (ready, name.unwrap_or_default())
        };
        let Some(ready) = ready else {
            return true;
        };
        match self.conf_change(raft::eraftpb::ConfChangeType::AddNode, ready.id) {
            Ok(()) => {
                log::info!(
                    "member {name} (id {:x}) caught up (log at {}, commit {}): promoted to \
                     voter",
                    ready.id,
                    ready.matched,
                    ready.commit
                );
                true
            }
            Err(e) => {
                log::warn!(
                    "promoting member {name} (id {:x}) to voter failed, retrying in {} s: {}",
                    ready.id,
                    crate::limits::LEARNER_PROMOTE_RETRY_MS / 1000,
                    e.message
                );
                false
            }
        }
    }

    /// After this leader refused to remove itself and handed leadership over: waits (up
    /// to `HANDOVER_WAIT_MS`) until another node leads, so the API can forward the request
    /// there.
    fn await_handover(&self, e: &ProposeError) -> ApiError {
        let deadline = Instant::now() + Duration::from_millis(crate::limits::HANDOVER_WAIT_MS);
        let (mut seen, mut status) = self.raft.status_with_generation();
        while status.is_leader() || status.leader_id == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return ApiError::unavailable(format!(
                    "{e}, which has not taken over within {} ms; retry",
                    crate::limits::HANDOVER_WAIT_MS
                ));
            }
            (seen, status) = self.raft.wait_change(seen, left);
        }
        log::info!(
            "leadership handed to node {:x} for a membership change",
            status.leader_id
        );
        ApiError::handed_over(format!("{e}; retry: the new leader makes the change"))
    }
}

fn propose_error(e: ProposeError) -> ApiError {
    match e {
        ProposeError::NotLeader { .. } => ApiError::unavailable(format!(
            "{e}; retry on the leader (followers forward this route)"
        )),
        ProposeError::TooLarge { .. } => ApiError::bad_request(e.to_string()),
        // Raft's refusals (another membership change still in progress) are conflicts
        // with the cluster's state, not bad requests: the same call can succeed later.
        ProposeError::Refused(_) => ApiError::conflict(e.to_string()),
        _ => ApiError::unavailable(e.to_string()),
    }
}

fn state_error(e: StateError) -> ApiError {
    ApiError::new(e.http_status(), e.to_string())
}

pub(crate) fn start_point(args: &SyncerArgs) -> Result<StartPoint, ApiError> {
    match (&args.gtid, &args.binlog_file, args.binlog_pos) {
        (Some(g), None, None) => {
            crate::api::validate::check_gtid_start(g)
                .map_err(|e| ApiError::bad_request(format!("field `gtid`: {e}")))?;
            Ok(StartPoint::Gtid(g.clone()))
        }
        (None, Some(f), Some(p)) => Ok(StartPoint::FilePos(f.clone(), p)),
        (None, None, None) => Ok(StartPoint::Oldest),
        _ => Err(ApiError::bad_request(
            "give either `gtid`, or `binlog_file` with `binlog_pos`, or neither",
        )),
    }
}

impl Backend for Node {
    fn cluster_route(&self) -> ClusterRoute {
        let status = self.raft.status();
        if status.is_leader() {
            return ClusterRoute::Local;
        }
        if status.leader_id == 0 {
            return ClusterRoute::NoLeader;
        }
        match self.cluster.state().admin_addr_of(status.leader_id) {
            Some(addr) => ClusterRoute::Forward {
                leader_admin: addr.to_string(),
            },
            None => ClusterRoute::NoLeader,
        }
    }

    fn syncer_start(&self, args: SyncerArgs) -> Result<(), ApiError> {
        self.until_ready_leader()?;
        // Serialized with the other admin changes of this node.
        let _guard = self.changes.lock().expect("changes lock");
        let start = start_point(&args)?;
        if self.importing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ApiError::conflict(
                "an import of binlog files is running; start the syncer after it ends",
            ));
        }
        if let Some(running) = self.cluster.state().syncer() {
            return Err(ApiError::conflict(format!(
                "the syncer is already running (master {}); stop it first",
                running.mysql_addr
            )));
        }
        if start != StartPoint::Oldest {
            if let Some((file, pos)) = self.store.index().resume_point() {
                return Err(ApiError::conflict(format!(
                    "the store already holds the binlog up to {file}:{pos}; a start point \
                     (gtid or binlog_file) applies only to an empty store"
                )));
            }
        }
        self.propose(&Command::SetSyncer(Some(args.clone())))?;
        log::info!("syncer desired through the API: {args:?}");
        Ok(())
    }

    fn syncer_stop(&self) -> Result<(), ApiError> {
        self.until_ready_leader()?;
        let _guard = self.changes.lock().expect("changes lock");
        // Proposed even when no syncer is desired here: cheap, and right whatever this
        // node's copy of the state says.
        self.propose(&Command::SetSyncer(None))?;
        // Stop it now rather than at the watcher's next look, so the reply means stopped.
        let taken = self.syncer.lock().expect("syncer lock").running.take();
        if let Some((_, _, syncer)) = taken {
            syncer.stop();
            log::info!("syncer stopped through the API");
        }
        Ok(())
    }

    fn syncer_status(&self) -> Result<SyncerStatus, ApiError> {
        self.until_ready_leader()?;
        let slot = self.syncer.lock().expect("syncer lock");
        Ok(self.syncer_view(&slot))
    }

    fn syncer_status_now(&self) -> Option<SyncerStatus> {
        if !self.cluster.leads_ready(&self.raft.status()) {
            return None;
        }
        // Busy while the leader watch starts or stops the syncer: no figure this time.
        let slot = self.syncer.try_lock().ok()?;
        Some(self.syncer_view(&slot))
    }

    fn members_list(&self) -> Result<Vec<MemberView>, ApiError> {
        let status = self.raft.status();
        let state = self.cluster.state();
        Ok(state.member_views(None, &status.voters, &status.learners))
    }

    fn cluster(&self) -> Result<Vec<MemberView>, ApiError> {
        let status = self.raft.status();
        let state = self.cluster.state();
        let mut views =
            state.member_views(Some(status.leader_id), &status.voters, &status.learners);
        if status.is_leader() {
            // The leader hears every member (acknowledgements, heartbeat replies).
            let now = Instant::now();
            let hex = MemberView::format_id;
            for view in &mut views {
                view.heard_ms_ago = if view.id == hex(status.id) {
                    Some(0)
                } else {
                    status
                        .peers
                        .iter()
                        .find(|(p, _)| hex(p.id) == view.id)
                        .and_then(|(_, heard)| *heard)
                        .map(|t| ms_since(now, t))
                };
            }
        }
        Ok(views)
    }

    /// Adds the member as a raft learner (it catches up without voting; `promote` makes it
    /// a voter then). Adding a member again keeps the addresses it announced (unless the
    /// request names another admin address) and its raft role (a voter is never demoted);
    /// it repairs a member whose raft change failed after its table entry was written.
    fn member_add(&self, args: MemberAdd) -> Result<Vec<MemberView>, ApiError> {
        self.until_ready_leader()?;
        let _guard = self.changes.lock().expect("changes lock");
        if self.chosen_peer_port {
            return Err(ApiError::conflict(
                "this node runs alone on the default peer address, so it listens for raft \
                 peers on a port of the system's choosing, which no other node can know: \
                 restart it with --peer-addr set to an address the others reach (and keep \
                 that address) before adding members",
            ));
        }
        let mut info = MemberInfo::new(&args.name, &args.peer_url, args.admin_url.clone());
        if let Some(current) = self.cluster.state().member(&args.name) {
            if current.id == info.id {
                info.admin_url = info.admin_url.or_else(|| current.admin_url.clone());
                info.binlog_addr = current.binlog_addr.clone();
            }
        }
        let command = Command::SetMember(info.clone());
        let effect = self.cluster.state().check(&command).map_err(state_error)?;
        if !matches!(effect, Effect::Unchanged) {
            self.propose(&command)?;
        }
        let status = self.raft.status();
        if status.voters.contains(&info.id) || status.learners.contains(&info.id) {
            return self.members_list();
        }
        self.conf_change(raft::eraftpb::ConfChangeType::AddLearnerNode, info.id)
            .map_err(|mut e| {
                e.message = format!(
                    "{}; {} is in the member table, but not in raft's membership yet (role \
                     none): add it again",
                    e.message, info.name
                );
                e
            })?;
        log::info!(
            "member {} (id {:x}) added at {} as a learner; it becomes a voter once it has \
             caught up",
            info.name,
            info.id,
            info.peer_url
        );
        self.members_list()
    }

    fn member_announce(&self, args: MemberAnnounce) -> Result<(), ApiError> {
        let command = self.cluster.state().announce_command(
            &args.name,
            &args.admin_url,
            args.binlog_addr.as_deref(),
        );
        match command {
            Some(command) => self.propose(&command),
            None if self.cluster.state().member(&args.name).is_none() => Err(ApiError::not_found(
                format!("no member named {}", args.name),
            )),
            None => Ok(()),
        }
    }

    fn member_update(&self, args: MemberUpdate) -> Result<Vec<MemberView>, ApiError> {
        self.until_ready_leader()?;
        let _guard = self.changes.lock().expect("changes lock");
        let current = self
            .cluster
            .state()
            .member(&args.name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no member named {}", args.name)))?;
        let command = Command::SetMember(MemberInfo {
            peer_url: args.new_peer_url.clone(),
            ..current
        });
        self.cluster.state().check(&command).map_err(state_error)?;
        self.propose(&command)?;
        self.members_list()
    }

    fn member_remove(&self, name: String) -> Result<Vec<MemberView>, ApiError> {
        self.until_ready_leader()?;
        let _guard = self.changes.lock().expect("changes lock");
        let member = self
            .cluster
            .state()
            .member(&name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no member named {name}")))?;
        self.check_quorum(|voters, active| {
            crate::consensus::state::check_quorum_after_remove(voters, active, member.id)
        })?;
        self.conf_change(raft::eraftpb::ConfChangeType::RemoveNode, member.id)?;
        self.propose(&Command::RemoveMember { name: name.clone() })?;
        log::info!("member {name} (id {:x}) removed", member.id);
        self.members_list()
    }

    fn server_start(&self, args: ServerArgs) -> Result<(), ApiError> {
        self.change(
            || self.start_server(args.clone()),
            |d| d.server = Some(args.clone()),
        )
    }

    fn server_stop(&self) -> Result<(), ApiError> {
        self.change(
            || {
                let taken = self.server.lock().expect("server lock").take();
                if let Some(server) = taken {
                    server.stop();
                }
                Ok(())
            },
            |d| d.server = None,
        )
    }

    fn server_status(&self) -> Result<ServerStatus, ApiError> {
        let slot = self.server.lock().expect("server lock");
        let Some(server) = slot.as_ref() else {
            let waiting = match &*self.resume.lock().expect("resume lock") {
                Resume::Waiting(Some(server)) => Some(server.clone()),
                _ => None,
            };
            let status = match waiting {
                Some(_) => ServerState::Starting,
                None => ServerState::Stopped,
            };
            let (addr, user) = waiting.unzip();
            return Ok(ServerStatus {
                addr,
                user,
                status,
                slaves: Vec::new(),
            });
        };
        let slaves = server
            .slaves()
            .into_iter()
            .map(|s| SlaveInfo {
                server_id: s.server_id,
                host: s.host,
                port: s.port,
                mode: if s.mode == "gtid" {
                    SlaveMode::Gtid
                } else {
                    SlaveMode::FilePos
                },
                position: format!("{}:{}", s.file, s.position),
                bytes_sent: s.bytes_sent,
                connected_since: s.connected_since,
            })
            .collect();
        Ok(ServerStatus {
            addr: Some(server.local_addr().to_string()),
            user: Some(server.config().user.clone()),
            status: ServerState::Running,
            slaves,
        })
    }

    fn purge(&self, to_file: String) -> Result<(), ApiError> {
        self.until_ready_leader()?;
        retention::purge(self, to_file)
    }

    fn binlog_import(&self, file: &str, body: &mut dyn Read) -> Result<ImportSummary, ApiError> {
        import::import(self, file, body)
    }

    fn binlog_files(&self) -> Result<Vec<BinlogFileInfo>, ApiError> {
        Ok(export::file_infos(&self.store))
    }

    fn binlog_file(&self, name: &str) -> Result<FileStream, ApiError> {
        export::file_stream(&self.store, name)
    }

    fn raft_status(&self) -> Result<RaftView, ApiError> {
        let status = self.raft.status();
        let stats = self.raft.stats();
        let sync = self.raft.log_sync_latency();
        let proposals = self.raft.proposal_latency();
        let state = self.cluster.state();
        let name_of = |id: u64| state.member_by_id(id).map(|m| m.name.clone());
        let hex = MemberView::format_id;
        let now = Instant::now();
        Ok(RaftView {
            id: hex(status.id),
            name: name_of(status.id).unwrap_or_default(),
            role: if status.learners.contains(&status.id) {
                "learner".into()
            } else {
                status.role.as_str().into()
            },
            term: status.term,
            leader_id: (status.leader_id != 0).then(|| hex(status.leader_id)),
            commit: status.commit,
            applied: status.applied,
            first_index: status.first_index,
            last_index: status.last_index,
            persisted: status.persisted,
            voters: status.voters.iter().map(|id| hex(*id)).collect(),
            learners: status.learners.iter().map(|id| hex(*id)).collect(),
            peers: status
                .peers
                .iter()
                .map(|(p, heard)| PeerView {
                    id: hex(p.id),
                    name: name_of(p.id).unwrap_or_default(),
                    matched: p.matched,
                    next: p.next,
                    state: p.state.into(),
                    heard_ms_ago: heard.map(|t| ms_since(now, t)),
                })
                .collect(),
            log_sync: LatencyView::of(&sync),
            proposals: LatencyView::of(&proposals),
            readies: stats.readies,
            append_rounds: stats.append_rounds,
            proposed_entries: stats.proposed_entries,
        })
    }

    fn health(&self) -> Health {
        Health {
            status: if self.removed.load(Ordering::SeqCst) {
                "removed".into()
            } else {
                "ok".into()
            },
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: self.started.elapsed().as_secs(),
            pid: std::process::id(),
        }
    }
}

/// Whole milliseconds from `then` to `now` (0 when `then` is later).
fn ms_since(now: Instant, then: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(then).as_millis()).unwrap_or(u64::MAX)
}

/// The GTID of the last stored transaction (the highest domain's, when several).
fn last_gtid(state: &MariaGtidList) -> Option<String> {
    state.iter().last().map(|g| g.to_string())
}

fn load_desired(data_dir: &Path) -> Result<Desired, DaemonError> {
    let path = data_dir.join(DESIRED_FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DaemonError::Desired {
            path,
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Desired::default()),
        Err(e) => Err(DaemonError::Desired {
            path,
            message: e.to_string(),
        }),
    }
}

/// Writes the desired state durably: temp file, fsync, rename, fsync the directory. The file
/// holds passwords, so only the owner may read it.
fn save_desired(data_dir: &Path, desired: &Desired) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(desired).map_err(std::io::Error::other)?;
    write_durably(data_dir, DESIRED_FILE, &bytes)
}

/// Writes `data_dir/name` (mode 0600) atomically and durably: a temporary file, fsync,
/// rename, fsync of the directory.
fn write_durably(data_dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = data_dir.join(name);
    let tmp = data_dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(data_dir)?.sync_all()
}

/// The admin address the other members forward to: the listen address, unless it is a
/// wildcard (0.0.0.0, [::]), which reaches nothing from elsewhere; then the host of this
/// member's peer address (where the others reach it already) with the admin port.
fn advertised_admin(local: std::net::SocketAddr, peer_url: &str) -> String {
    if !local.ip().is_unspecified() {
        return local.to_string();
    }
    let host = peer_url.rsplit_once(':').map_or(peer_url, |(host, _)| host);
    format!("{host}:{}", local.port())
}

/// Creates the data directory readable by its owner only (it holds the master's
/// replication password in the raft log, and the binlog itself); an existing one that
/// others may read is used as it is, with a warning.
fn create_data_dir(data_dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let failed = |error| DaemonError::DataDir {
        path: data_dir.to_path_buf(),
        error,
    };
    if !data_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(failed)?;
    }
    let meta = fs::metadata(data_dir).map_err(failed)?;
    if !meta.is_dir() {
        return Err(failed(std::io::Error::other(
            "it exists and is not a directory",
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        log::warn!(
            "data directory {} is open to other users (mode {:o}); it holds the master's \
             replication password and the binlog: consider chmod 700",
            data_dir.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// This node's raft id: the one recorded in its data directory (`RAFT_ID_FILE`), else
/// `derived` (from its name and peer address), recorded now. A member keeps its id for
/// good: after `PUT /members` moved it to a new peer address, it restarts there with the
/// id the membership knows, not one derived from the new address.
fn own_raft_id(data_dir: &Path, derived: u64) -> Result<u64, DaemonError> {
    let path = data_dir.join(RAFT_ID_FILE);
    let bad = |error: std::io::Error| DaemonError::DataDir {
        path: path.clone(),
        error,
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = parse_raft_id(&text).ok_or_else(|| {
                bad(std::io::Error::other(format!(
                    "not a raft id (hex): {:?}",
                    text.trim()
                )))
            })?;
            if id != derived {
                log::warn!(
                    "this node keeps the raft id {id:x} recorded in {} at its first start; its \
                     name and peer address now would give {derived:x}. Right after `ferrobus \
                     ctl members update` moved it, that is expected. If instead its first start \
                     failed (a wrong --initial-cluster or --peer-addr), it never joined under \
                     that id: stop it, clear its data directory, and start it again",
                    path.display()
                );
            }
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_durably(data_dir, RAFT_ID_FILE, format!("{derived:x}\n").as_bytes())
                .map_err(bad)?;
            Ok(derived)
        }
        Err(e) => Err(bad(e)),
    }
}

/// The raft id this data directory's node recorded at its first start, if it did (and it
/// reads as one).
pub(crate) fn recorded_raft_id(data_dir: &Path) -> Option<u64> {
    parse_raft_id(&fs::read_to_string(data_dir.join(RAFT_ID_FILE)).ok()?)
}

/// A raft id as `RAFT_ID_FILE` holds it: hex, never 0.
fn parse_raft_id(text: &str) -> Option<u64> {
    u64::from_str_radix(text.trim(), 16)
        .ok()
        .filter(|id| *id != 0)
}

/// Takes an exclusive lock on the data directory for the life of the process.
fn lock_data_dir(data_dir: &Path) -> Result<File, DaemonError> {
    use std::os::fd::AsRawFd;
    let path = data_dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| DaemonError::DataDir {
            path: path.clone(),
            error,
        })?;
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(DaemonError::Locked {
            path: data_dir.to_path_buf(),
        });
    }
    Ok(file)
}

/// SIGTERM, SIGINT and SIGHUP (the terminal of a node started from a shell closed; there
/// is nothing to reload), blocked in every thread and received synchronously by the main
/// one: each stops the node cleanly.
struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    fn block() -> StopSignals {
        // SAFETY: plain libc signal-set calls on a local, initialised set.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            StopSignals { set }
        }
    }

    /// Waits for one of the signals and names it.
    fn wait(&self) -> &'static str {
        let mut sig: libc::c_int = 0;
        loop {
            // SAFETY: sigwait with the set blocked above and a valid out pointer.
            let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
            if rc == 0 {
                return match sig {
                    libc::SIGINT => "SIGINT",
                    libc::SIGHUP => "SIGHUP",
                    _ => "SIGTERM",
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_path_that_is_a_file_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("afile");
        fs::write(&file, b"x").unwrap();
        let message = create_data_dir(&file).unwrap_err().to_string();
        assert!(message.contains("is not a directory"), "{message}");
        let fresh = dir.path().join("a/b");
        create_data_dir(&fresh).unwrap();
        assert!(fresh.is_dir());
    }

    #[test]
    fn a_wildcard_admin_address_is_advertised_with_the_peer_host() {
        for (listen, peer_url, advertised) in [
            ("10.0.0.5:9595", "10.0.0.5:9596", "10.0.0.5:9595"),
            ("0.0.0.0:9595", "10.0.0.5:9596", "10.0.0.5:9595"),
            ("[::]:9595", "[fd00::5]:9596", "[fd00::5]:9595"),
            ("0.0.0.0:9595", "db-1.example:9596", "db-1.example:9595"),
        ] {
            let local = listen.parse::<std::net::SocketAddr>().unwrap();
            assert_eq!(advertised_admin(local, peer_url), advertised, "{listen}");
        }
    }

    #[test]
    fn a_new_data_dir_is_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        create_data_dir(&data).unwrap();
        let mode = fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // An existing directory is left as it is.
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        create_data_dir(&data).unwrap();
        let mode = fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn the_raft_id_is_recorded_at_first_start_and_kept_after() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(own_raft_id(dir.path(), 0xabc).unwrap(), 0xabc);
        assert_eq!(
            fs::read_to_string(dir.path().join(RAFT_ID_FILE)).unwrap(),
            "abc\n"
        );
        // Moved to another address: the name and address now give another id; the
        // recorded one stays.
        assert_eq!(own_raft_id(dir.path(), 0xdef).unwrap(), 0xabc);
        for bad in ["", "zz\n", "0\n"] {
            fs::write(dir.path().join(RAFT_ID_FILE), bad).unwrap();
            let e = own_raft_id(dir.path(), 0xabc).unwrap_err().to_string();
            assert!(
                e.contains(RAFT_ID_FILE) && e.contains("not a raft id"),
                "{bad:?}: {e}"
            );
        }
    }
}
