//! The syncer: a replica of the upstream master that pulls its binary log into the store.
//!
//! One supervisor thread per running syncer connects, runs the pre-checks, asks for a dump
//! from where the store ends (or from the requested start point on a fresh store), and
//! reconnects with bounded exponential backoff when the connection breaks. Each connection
//! reads and stores on one thread (network → [`ingest`] → sink), gathering whatever the
//! socket has buffered while the previous batch was being stored, so catch-up batches grow
//! by themselves (group commit) and a lone transaction is proposed without a hand-off. The syncer publishes its status into a shared
//! snapshot; it must not serve anything downstream.
//!
//! MariaDB and MySQL masters are told apart by their version (see [`upstream`]). A MySQL
//! master with GTID_MODE=ON is asked with COM_BINLOG_DUMP_GTID from the store's end (file
//! and position) leaving out the store's executed GTID set, so that it never re-sends what
//! is stored; [`ingest`] still accepts a source that begins the stored file again.

pub mod ingest;
pub mod upstream;

use std::fmt;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::binlog::gtid::{MariaGtidList, MysqlGtidSet};
use crate::binlog::Flavour;
use crate::limits::{BATCH_BYTES_MAX, RECONNECT_BACKOFF_MAX_MS, RECONNECT_BACKOFF_MIN_MS};
use crate::net::client::Client;
use crate::store::{Store, StoreError};
use ingest::{Ingest, Seen};
use upstream::Upstream;

/// Why a syncer connection ended.
#[derive(Debug)]
pub enum SyncerError {
    Connect(String),
    Connection(String),
    Precheck(String),
    Master(String),
    Ingest(ingest::IngestError),
    Sink(SinkError),
}

impl fmt::Display for SyncerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncerError::Connect(e) => write!(f, "cannot connect to the master: {e}"),
            SyncerError::Connection(e) => write!(f, "connection to the master failed: {e}"),
            SyncerError::Precheck(e) => write!(f, "pre-check failed: {e}"),
            SyncerError::Master(e) => write!(f, "the master reported: {e}"),
            SyncerError::Ingest(e) => write!(f, "bad binlog stream: {e}"),
            SyncerError::Sink(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SyncerError {}

/// Where a fresh store starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartPoint {
    /// The master's oldest binlog file still on disk, position 4.
    Oldest,
    /// After this MariaDB GTID state.
    Gtid(String),
    /// This file and position.
    FilePos(String, u64),
}

/// What a syncer is asked to do.
#[derive(Clone, Debug)]
pub struct SyncerConfig {
    pub upstream: Upstream,
    pub start: StartPoint,
}

/// Connection state, as the status API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    Stopped,
    Connecting,
    Running,
    Error,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Connecting => "connecting",
            State::Running => "running",
            State::Error => "error",
        }
    }
}

/// The syncer's published status.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub state: State,
    pub last_error: Option<String>,
    /// When `last_error` happened (seconds since the Unix epoch).
    pub last_error_at: Option<u64>,
    pub master_version: Option<String>,
    pub master_server_id: Option<u32>,
    pub file: Option<String>,
    pub position: u64,
    pub events: u64,
    pub bytes: u64,
    pub lag_seconds: Option<u64>,
}

struct Shared {
    stop: AtomicBool,
    /// Wakes the supervisor out of a backoff sleep when stopping.
    sleep: (Mutex<()>, Condvar),
    socket: Mutex<Option<TcpStream>>,
    progress: Mutex<Progress>,
}

/// A running syncer. Dropping it without `stop` leaves the thread running; call `stop`.
pub struct Syncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Called when the store cannot make data durable: the process must stop (house rule 3).
pub type FatalHook = Arc<dyn Fn(&StoreError) + Send + Sync>;

/// Where the syncer's entries go: Raft proposals on the leader (`daemon::leader::RaftSink`).
/// `append` may return while a few batches are still being committed; `flush` (called when a
/// connection ends) and `begin_session` wait for them, so the store's resume point reflects
/// everything appended before the next connection starts.
pub trait Sink: Send + Sync + 'static {
    fn append(&self, entries: Vec<(u8, Vec<u8>)>) -> Result<(), SinkError>;
    /// Waits until every entry appended so far is durable (committed) and applied.
    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Called before each connection: makes sure the log does not end inside a transaction
    /// (truncating it locally, or proposing an abandon entry on a cluster).
    fn begin_session(&self) -> Result<(), SinkError>;
}

/// Why a sink refused entries.
#[derive(Debug)]
pub enum SinkError {
    /// The local store failed; a failed fsync among these stops the process.
    Store(StoreError),
    /// This node is no longer the leader (or the term changed): the syncer must stop.
    Deposed(String),
    /// Consensus could not take the entries now (timeout, shutdown); retried.
    Unavailable(String),
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Store(e) => write!(f, "{e}"),
            SinkError::Deposed(m) => write!(f, "no longer the leader: {m}"),
            SinkError::Unavailable(m) => write!(f, "consensus unavailable: {m}"),
        }
    }
}

impl Syncer {
    pub fn start(
        config: SyncerConfig,
        store: Arc<Store>,
        sink: Arc<dyn Sink>,
        fatal: FatalHook,
    ) -> Syncer {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            sleep: (Mutex::new(()), Condvar::new()),
            socket: Mutex::new(None),
            progress: Mutex::new(Progress {
                state: State::Connecting,
                ..Progress::default()
            }),
        });
        let s = shared.clone();
        let thread = thread::Builder::new()
            .name("syncer".into())
            .spawn(move || supervise(config, store, sink, s, fatal))
            .expect("spawn syncer thread");
        Syncer {
            shared,
            thread: Some(thread),
        }
    }

    pub fn progress(&self) -> Progress {
        self.shared.progress.lock().expect("progress lock").clone()
    }

    /// Stops the syncer: closes the connection, stores the whole transactions received, and
    /// joins the thread.
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(sock) = self.shared.socket.lock().expect("socket lock").as_ref() {
            let _ = sock.shutdown(Shutdown::Both);
        }
        {
            // Under the mutex, so the wake-up cannot fall between the supervisor's check of
            // `stop` and its wait.
            let _guard = self.shared.sleep.0.lock().expect("sleep lock");
            self.shared.sleep.1.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn supervise(
    config: SyncerConfig,
    store: Arc<Store>,
    sink: Arc<dyn Sink>,
    shared: Arc<Shared>,
    fatal: FatalHook,
) {
    let mut backoff_ms = RECONNECT_BACKOFF_MIN_MS;
    while !shared.stop.load(Ordering::SeqCst) {
        set_state(&shared, State::Connecting, None);
        let progressed = Arc::new(AtomicBool::new(false));
        let began = std::time::Instant::now();
        let result = session(&config, &store, &sink, &shared, &progressed);
        // The session's connection is over, failed or not: its registered copy goes too,
        // so that the master does not see it open through the backoff.
        *shared.socket.lock().expect("socket lock") = None;
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let err = match result {
            Ok(()) => "the master closed the dump".to_string(),
            Err(SyncerError::Sink(SinkError::Store(e))) if e.is_sync_failure() => {
                fatal(&e);
                set_state(&shared, State::Error, Some(e.to_string()));
                return;
            }
            Err(SyncerError::Sink(SinkError::Deposed(m))) => {
                log::warn!("syncer: stopping: no longer the leader ({m})");
                set_state(
                    &shared,
                    State::Stopped,
                    Some(format!("no longer the leader: {m}")),
                );
                return;
            }
            Err(e) => e.to_string(),
        };
        // Back to a quick retry only after a session that went well for a while: one that
        // took new content, or lasted. A session that fails the same way each time (a
        // corrupt event, ERR 1236) must not log in to the master ten times a second.
        let lasted = began.elapsed() >= Duration::from_millis(2 * RECONNECT_BACKOFF_MAX_MS);
        if progressed.load(Ordering::SeqCst) || lasted {
            backoff_ms = RECONNECT_BACKOFF_MIN_MS;
        }
        log::warn!(
            "syncer (master {}): {err}; reconnecting in {backoff_ms} ms",
            config.upstream.addr
        );
        set_state(&shared, State::Error, Some(err));
        let guard = shared.sleep.0.lock().expect("sleep lock");
        let _ = shared
            .sleep
            .1
            .wait_timeout_while(guard, Duration::from_millis(backoff_ms), |_| {
                !shared.stop.load(Ordering::SeqCst)
            });
        backoff_ms = (backoff_ms * 2).min(RECONNECT_BACKOFF_MAX_MS);
    }
    set_state(&shared, State::Stopped, None);
    log::info!("syncer stopped");
}

fn set_state(shared: &Shared, state: State, error: Option<String>) {
    let mut p = shared.progress.lock().expect("progress lock");
    p.state = state;
    if error.is_some() {
        p.last_error = error;
        p.last_error_at = Some(crate::clock::unix_now());
    }
}

/// One connection: from connect to the end of the stream.
fn session(
    config: &SyncerConfig,
    store: &Arc<Store>,
    sink: &Arc<dyn Sink>,
    shared: &Arc<Shared>,
    progressed: &AtomicBool,
) -> Result<(), SyncerError> {
    sink.begin_session().map_err(SyncerError::Sink)?;
    let (resume, stored_master, stored_flavour) = {
        let index = store.index();
        (
            index.resume_point(),
            index.master_server_id(),
            index.flavour(),
        )
    };
    let up = &config.upstream;
    let (mut client, info) = connect_checked(up, shared)?;
    if let Some(stored) = stored_master.filter(|id| *id != info.server_id) {
        return Err(SyncerError::Precheck(format!(
            "the stored binlog comes from a master with server_id {stored}, but {} has \
             server_id {}; ferrobus does not mix two masters' binlogs (use a fresh data \
             directory for a different master)",
            up.addr, info.server_id
        )));
    }
    log::info!(
        "syncer: master {} is {} {} (server_id {}{})",
        up.addr,
        info.flavour.name(),
        info.version,
        info.server_id,
        info.gtid_mode
            .as_deref()
            .map(|m| format!(", gtid_mode {m}"))
            .unwrap_or_default()
    );
    if let Some(stored) = stored_flavour.filter(|f| *f != info.flavour) {
        return Err(SyncerError::Precheck(format!(
            "the store holds a {} binlog, but {} is a {} master; ferrobus does not mix them \
             (use a fresh data directory for this master)",
            stored.name(),
            up.addr,
            info.flavour.name()
        )));
    }
    let plan = plan(config, store, &resume, &mut client, &info, shared)?;
    let (file, pos) = (plan.file.clone(), plan.pos);
    if !info.binlogs.contains(&file) {
        return Err(SyncerError::Precheck(format!(
            "the master no longer has binlog file {file} (it has {} .. {}); the position \
             ferrobus needs was purged on the master",
            info.binlogs.first().map(String::as_str).unwrap_or("?"),
            info.binlogs.last().map(String::as_str).unwrap_or("?"),
        )));
    }
    {
        let mut p = shared.progress.lock().expect("progress lock");
        p.master_version = Some(info.version.clone());
        p.master_server_id = Some(info.server_id);
        p.file = Some(file.clone());
        p.position = pos;
    }
    if shared.stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let mut ingest = Ingest::new(resume);
    match &plan.dump {
        Dump::MariaDb(start_state) => {
            log::info!(
                "syncer: dumping from {} at {file}:{pos} as server id {}",
                up.addr,
                up.server_id
            );
            upstream::start_dump(&mut client, up, &file, pos, None)?;
            if let Some(state) = start_state {
                ingest.record_start_state(state);
            }
        }
        Dump::MySql(how) => {
            match how {
                upstream::MysqlDump::Gtid(set) => {
                    log::info!(
                        "syncer: COM_BINLOG_DUMP_GTID from {} at {file}:{pos} excluding '{}' \
                         as server id {}, replica uuid {}",
                        up.addr,
                        set.format(),
                        up.server_id,
                        upstream::replica_uuid(up)
                    );
                    ingest.allow_resend();
                }
                upstream::MysqlDump::FilePos => log::info!(
                    "syncer: COM_BINLOG_DUMP from {} at {file}:{pos} as server id {} \
                     (gtid_mode is not ON on the master)",
                    up.addr,
                    up.server_id
                ),
            }
            upstream::start_mysql_dump(&mut client, up, &info, &file, pos, how)?;
        }
    }
    set_state(shared, State::Running, None);

    stream_loop(&mut client, ingest, sink.as_ref(), shared, progressed)
}

/// Where a connection's dump begins and how it is asked for.
struct DumpPlan {
    file: String,
    pos: u64,
    dump: Dump,
}

/// How the dump is asked for, per flavour.
enum Dump {
    /// COM_BINLOG_DUMP; the GTID state where a store that begins after the master's history
    /// begins (recorded so that a replica that stopped exactly there can be served).
    MariaDb(Option<MariaGtidList>),
    /// COM_BINLOG_DUMP_GTID with the set to leave out, or COM_BINLOG_DUMP.
    MySql(upstream::MysqlDump),
}

/// From the store's end, or on a fresh store from the configured start point. A start GTID
/// is resolved to a file and position on a connection that the GTID dump leaves unusable,
/// so a new one is opened after it.
fn plan(
    config: &SyncerConfig,
    store: &Store,
    resume: &Option<(String, u64)>,
    client: &mut Client,
    info: &upstream::MasterInfo,
    shared: &Shared,
) -> Result<DumpPlan, SyncerError> {
    let up = &config.upstream;
    let (file, pos) = match (resume, &config.start) {
        (Some((f, p)), _) => (f.clone(), *p),
        (None, StartPoint::FilePos(f, p)) => (f.clone(), *p),
        (None, StartPoint::Oldest) => (info.binlogs[0].clone(), 4),
        (None, StartPoint::Gtid(g)) => {
            let at = match info.flavour {
                Flavour::MariaDb => upstream::resolve_gtid(client, up, g)?,
                Flavour::MySql => mysql_gtid_start(client, up, info, g)?,
            };
            (*client, _) = connect_checked(up, shared)?;
            at
        }
    };
    let dump = match info.flavour {
        // A store that begins after the start of the master's history records the GTID
        // state there.
        Flavour::MariaDb => Dump::MariaDb(match (resume, &config.start) {
            (None, StartPoint::FilePos(..) | StartPoint::Gtid(_)) => {
                Some(upstream::gtid_state_at(client, &file, pos)?)
            }
            _ => None,
        }),
        Flavour::MySql => Dump::MySql(mysql_dump(store, resume, client, info, &file, pos)?),
    };
    Ok(DumpPlan { file, pos, dump })
}

/// A MySQL start GTID set, turned into the file the master would begin it from. The store
/// takes that file whole (from position 4, nothing left out), so that it holds the master's
/// files byte for byte; the transactions of the set in that file are stored too, and
/// replicas asking from the set are served from the right place all the same.
fn mysql_gtid_start(
    client: &mut Client,
    up: &Upstream,
    info: &upstream::MasterInfo,
    text: &str,
) -> Result<(String, u64), SyncerError> {
    let set = MysqlGtidSet::parse(text).map_err(|e| {
        SyncerError::Precheck(format!(
            "the start GTID {text:?} is not a MySQL GTID set (the master is MySQL): {e}"
        ))
    })?;
    if !info.mysql_gtid_dump() {
        return Err(SyncerError::Precheck(format!(
            "a start GTID set needs GTID_MODE=ON on the master (it is {}); give \
             binlog_file and binlog_pos instead",
            info.gtid_mode.as_deref().unwrap_or("OFF")
        )));
    }
    let file = upstream::resolve_mysql_gtid(client, up, info, &set)?;
    log::info!("syncer: the master begins GTID set '{text}' in {file}; storing it whole");
    Ok((file, 4))
}

/// A MySQL dump: from the store's end with the stored executed set (GTID_MODE=ON) or by
/// position.
fn mysql_dump(
    store: &Store,
    resume: &Option<(String, u64)>,
    client: &mut Client,
    info: &upstream::MasterInfo,
    file: &str,
    pos: u64,
) -> Result<upstream::MysqlDump, SyncerError> {
    if resume.is_none() && pos > 4 {
        log::warn!(
            "syncer: the store begins inside {file} at {pos}; its executed GTID set starts \
             with the transactions stored (MySQL has no BINLOG_GTID_POS to ask)"
        );
    }
    if !info.mysql_gtid_dump() {
        return Ok(upstream::MysqlDump::FilePos);
    }
    // With a file name the master starts there and leaves out only what the set holds:
    // what the store holds, all before this position. A fresh store sends the master's
    // gtid_purged, which nothing from the oldest kept file on belongs to (a source may
    // refuse a replica that lacks purged transactions).
    let executed = if resume.is_some() {
        store.index().mysql_executed().clone()
    } else {
        upstream::master_gtid_purged(client)?
    };
    Ok(upstream::MysqlDump::Gtid(executed))
}

/// Connects, registers the socket as soon as it is connected so that `stop` can interrupt
/// any later wait on it (a master that accepts the connection and never greets included),
/// and runs the pre-checks.
fn connect_checked(
    up: &Upstream,
    shared: &Shared,
) -> Result<(Client, upstream::MasterInfo), SyncerError> {
    let mut client = upstream::open(up, |sock| {
        *shared.socket.lock().expect("socket lock") = sock.try_clone().ok();
        // `stop` sets the flag before it looks for a socket: one of the two sees the other.
        if shared.stop.load(Ordering::SeqCst) {
            let _ = sock.shutdown(Shutdown::Both);
        }
    })?;
    if shared.stop.load(Ordering::SeqCst) {
        return Err(SyncerError::Connection("stopping".into()));
    }
    let info = upstream::precheck(&mut client)?;
    Ok((client, info))
}

/// Reads the dump and stores it, on the connection's one thread: each event goes to ingest
/// straight from the packet, and what ingest made is handed to the sink together once the
/// socket has nothing more buffered, the stream ends, or `BATCH_BYTES_MAX` bytes were fed
/// (one proposal, one fsync: what arrived during the last one). No hand-off to another
/// thread sits between a transaction's arrival and its proposal; the sink bounds what is
/// in flight (blocking here applies back-pressure to the master).
fn stream_loop(
    client: &mut Client,
    mut ingest: Ingest,
    sink: &dyn Sink,
    shared: &Shared,
    progressed: &AtomicBool,
) -> Result<(), SyncerError> {
    // Reused for every packet: grows to the largest event.
    let mut packet = Vec::new();
    let mut seen = SessionSeen::default();
    let result = loop {
        let ev = match upstream::read_dump_event(client, &mut packet) {
            Ok(ev) => ev,
            // Whole events received before the stream broke are stored (whole
            // transactions of them; a partial one is not).
            Err(e) => break store(&mut ingest, sink, shared, &mut seen).and(Err(e)),
        };
        let more = ev.is_some();
        if let Some(ev) = ev {
            let content_before = seen.events;
            if let Err(e) = feed(ev, &mut ingest, &mut seen) {
                // What ingest accepted before the bad event is stored.
                break store(&mut ingest, sink, shared, &mut seen).and(Err(e));
            }
            if seen.events > content_before {
                progressed.store(true, Ordering::Relaxed);
            }
        }
        let drained = client.conn_mut().buffered_input_len() == 0;
        if seen.fed_bytes > 0 && (!more || drained || seen.fed_bytes >= BATCH_BYTES_MAX) {
            if let Err(e) = store(&mut ingest, sink, shared, &mut seen) {
                break Err(e);
            }
        }
        if !more {
            break Ok(());
        }
    };
    // Everything handed to the sink is durable before the session ends (the next one starts
    // from what is stored); a sink error wins over the session's own.
    sink.flush().map_err(SyncerError::Sink)?;
    result
}

/// What the status needs from the events of a session, and what was fed since the last
/// store.
#[derive(Default)]
struct SessionSeen {
    last_timestamp: Option<u32>,
    caught_up: bool,
    /// Bytes of all events fed to ingest since the last store (heartbeats included).
    fed_bytes: usize,
    /// Content events and their bytes fed since the last store (for the status).
    events: u64,
    bytes: u64,
}

/// Feeds one whole event to ingest.
fn feed(ev: &[u8], ingest: &mut Ingest, seen: &mut SessionSeen) -> Result<(), SyncerError> {
    seen.fed_bytes += ev.len();
    match ingest.on_event(ev).map_err(SyncerError::Ingest)? {
        Seen::Content { timestamp } => {
            seen.events += 1;
            seen.bytes += ev.len() as u64;
            seen.last_timestamp = Some(timestamp);
            seen.caught_up = false;
        }
        Seen::Heartbeat => seen.caught_up = !ingest.in_group(),
        Seen::Artificial => {}
    }
    Ok(())
}

/// Hands the entries ingest made from the events fed so far (whole transactions only) to
/// the sink and publishes the status.
fn store(
    ingest: &mut Ingest,
    sink: &dyn Sink,
    shared: &Shared,
    seen: &mut SessionSeen,
) -> Result<(), SyncerError> {
    let entries = ingest.take_entries(true);
    if !entries.is_empty() {
        sink.append(entries).map_err(SyncerError::Sink)?;
    }
    publish(
        shared,
        ingest,
        seen.events,
        seen.bytes,
        seen.last_timestamp,
        seen.caught_up,
    );
    (seen.fed_bytes, seen.events, seen.bytes) = (0, 0, 0);
    Ok(())
}

fn publish(
    shared: &Shared,
    ingest: &Ingest,
    events: u64,
    bytes: u64,
    last_timestamp: Option<u32>,
    caught_up: bool,
) {
    let mut p = shared.progress.lock().expect("progress lock");
    if let Some((file, pos)) = ingest.position() {
        p.file = Some(file.to_string());
        p.position = pos;
    }
    p.events += events;
    p.bytes += bytes;
    let now = crate::clock::unix_now();
    p.lag_seconds = if caught_up {
        Some(0)
    } else {
        last_timestamp.map(|t| now.saturating_sub(u64::from(t)))
    };
}
