//! The node process: opens the data directory, restores the desired state, starts the admin
//! API, the syncer and the binlog server as asked, and owns the one shutdown signal
//! (SIGTERM / SIGINT). It is the only place that adds context to the modules' errors.
//!
//! The [`Node`] is what the admin API drives ([`crate::api::Backend`]): one owner per piece of
//! state (the syncer handle, the server handle, the desired state), each behind its own
//! mutex, taken briefly.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::api::model::{
    Health, ServerArgs, ServerState, ServerStatus, SlaveInfo, SlaveMode, SyncerArgs, SyncerState,
    SyncerStatus,
};
use crate::api::{AdminServer, ApiError, Backend};
use crate::binlog::gtid::MariaGtidList;
use crate::config::Config;
use crate::server::{BinlogServer, ServerConfig};
use crate::store::{Store, StoreError};
use crate::syncer::upstream::Upstream;
use crate::syncer::{StartPoint, State, Syncer, SyncerConfig};

/// Name of the desired-state file in the data directory.
const DESIRED_FILE: &str = "desired.json";
/// Name of the directory of the log in the data directory.
const LOG_DIR: &str = "log";
/// Name of the lock file that keeps a second daemon off the data directory.
const LOCK_FILE: &str = "LOCK";

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
    Admin {
        addr: String,
        error: std::io::Error,
    },
    Desired {
        path: PathBuf,
        message: String,
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
            DaemonError::Admin { addr, error } => {
                write!(f, "cannot start the admin API on {addr}: {error}")
            }
            DaemonError::Desired { path, message } => {
                write!(f, "desired state {}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for DaemonError {}

/// What the node should be doing; persisted so a restarted node resumes by itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Desired {
    #[serde(default)]
    syncer: Option<SyncerArgs>,
    #[serde(default)]
    server: Option<ServerArgs>,
}

/// One node: the state the admin API reads and changes.
pub struct Node {
    data_dir: PathBuf,
    store: Arc<Store>,
    syncer: Mutex<Option<(SyncerArgs, Syncer)>>,
    server: Mutex<Option<BinlogServer>>,
    desired: Mutex<Desired>,
    server_max_connections: usize,
    started: Instant,
}

/// Runs a node until SIGTERM or SIGINT. Returns after a clean stop.
pub fn serve(config: Config) -> Result<(), DaemonError> {
    // Block the stop signals before any thread starts, so every thread inherits the mask and
    // the main thread alone receives them in `wait_for_stop_signal`.
    let signals = StopSignals::block();
    let data_dir = config.data_dir.clone();
    fs::create_dir_all(&data_dir).map_err(|error| DaemonError::DataDir {
        path: data_dir.clone(),
        error,
    })?;
    let _lock = lock_data_dir(&data_dir)?;
    let (store, report) = Store::open(&data_dir.join(LOG_DIR)).map_err(DaemonError::Store)?;
    log::info!(
        "store opened in {}: {} entries, {} torn bytes truncated, {} partial entries dropped",
        data_dir.display(),
        report.entries,
        report.torn_bytes_truncated,
        report.partial_entries_dropped
    );
    let desired = load_desired(&data_dir)?;
    let node = Arc::new(Node {
        data_dir: data_dir.clone(),
        store: Arc::new(store),
        syncer: Mutex::new(None),
        server: Mutex::new(None),
        desired: Mutex::new(Desired::default()),
        server_max_connections: config.server_max_connections,
        started: Instant::now(),
    });
    node.restore(desired);
    let backend: Arc<dyn Backend> = node.clone();
    let admin =
        AdminServer::start(&config.admin_addr, backend, config.http_workers).map_err(|error| {
            DaemonError::Admin {
                addr: config.admin_addr.clone(),
                error,
            }
        })?;
    log::info!("ferrobus {} ready", env!("CARGO_PKG_VERSION"));
    let signal = signals.wait();
    log::info!("received {signal}: stopping");
    admin.shutdown();
    node.shutdown();
    log::info!("stopped cleanly");
    Ok(())
}

impl Node {
    /// Starts what the desired state asks for. A failure is logged and shows in the status;
    /// the node keeps running so an operator can fix it through the API.
    fn restore(&self, desired: Desired) {
        if let Some(args) = desired.syncer.clone() {
            log::info!("resuming the syncer from the desired state ({args:?})");
            if let Err(e) = self.start_syncer(args, true) {
                log::error!("cannot resume the syncer: {}", e.message);
            }
        }
        if let Some(args) = desired.server.clone() {
            log::info!("resuming the binlog server on {}", args.addr);
            if let Err(e) = self.start_server(args) {
                log::error!("cannot resume the binlog server: {}", e.message);
            }
        }
        *self.desired.lock().expect("desired lock") = desired;
    }

    fn shutdown(&self) {
        if let Some((_, syncer)) = self.syncer.lock().expect("syncer lock").take() {
            syncer.stop();
        }
        if let Some(server) = self.server.lock().expect("server lock").take() {
            server.stop();
        }
        self.store.close();
    }

    fn start_syncer(&self, args: SyncerArgs, resuming: bool) -> Result<(), ApiError> {
        let mut slot = self.syncer.lock().expect("syncer lock");
        if let Some((running, _)) = slot.as_ref() {
            return Err(ApiError::conflict(format!(
                "the syncer is already running (master {}); stop it first",
                running.mysql_addr
            )));
        }
        let start = start_point(&args)?;
        let stored = self.store.index().resume_point();
        if let (Some((file, pos)), false, true) = (&stored, resuming, start != StartPoint::Oldest) {
            return Err(ApiError::conflict(format!(
                "the store already holds the binlog up to {file}:{pos}; a start point (gtid or \
                 binlog_file) applies only to an empty store"
            )));
        }
        let config = SyncerConfig {
            upstream: Upstream {
                addr: args.mysql_addr.clone(),
                user: args.mysql_user.clone(),
                password: args.mysql_password.clone(),
                server_id: args.syncer_id,
                uuid: args.syncer_uuid.clone(),
            },
            start,
        };
        let fatal: crate::syncer::FatalHook = Arc::new(|e: &StoreError| {
            log::error!("the store cannot make data durable: {e}; stopping the process");
            std::process::exit(1);
        });
        let sink: Arc<dyn crate::syncer::Sink> =
            Arc::new(crate::syncer::LocalSink(self.store.clone()));
        let syncer = Syncer::start(config, self.store.clone(), sink, fatal);
        log::info!("syncer started: {args:?}");
        *slot = Some((args, syncer));
        Ok(())
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
            .as_ref()
            .and_then(|(_, s)| s.progress().master_version)
            .unwrap_or_else(|| "10.11.0-MariaDB-ferrobus".to_string());
        let config = ServerConfig {
            addr: args.addr.clone(),
            user: args.user.clone(),
            password: args.password.clone(),
            max_connections: self.server_max_connections,
        };
        let server = BinlogServer::start(config, self.store.clone(), fallback_version)
            .map_err(|e| ApiError::conflict(format!("cannot listen on {}: {e}", args.addr)))?;
        *slot = Some(server);
        Ok(())
    }

    /// Runs one change of what the node does (start or stop) and saves the desired state,
    /// all under the desired-state lock: changes are serialized, a stop finishes (its thread
    /// joined) before the next start begins, and the saved state always matches what runs.
    /// Lock order: desired, then the syncer or server slot.
    fn change(
        &self,
        act: impl FnOnce() -> Result<(), ApiError>,
        record: impl FnOnce(&mut Desired),
    ) -> Result<(), ApiError> {
        let mut desired = self.desired.lock().expect("desired lock");
        act()?;
        record(&mut desired);
        save_desired(&self.data_dir, &desired)
            .map_err(|e| ApiError::internal(format!("cannot save the desired state: {e}")))
    }
}

fn start_point(args: &SyncerArgs) -> Result<StartPoint, ApiError> {
    match (&args.gtid, &args.binlog_file, args.binlog_pos) {
        (Some(g), None, None) => {
            MariaGtidList::parse(g)
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
    fn syncer_start(&self, args: SyncerArgs) -> Result<(), ApiError> {
        self.change(
            || self.start_syncer(args.clone(), false),
            |d| d.syncer = Some(args.clone()),
        )
    }

    fn syncer_stop(&self) -> Result<(), ApiError> {
        self.change(
            || {
                let taken = self.syncer.lock().expect("syncer lock").take();
                if let Some((_, syncer)) = taken {
                    syncer.stop();
                    log::info!("syncer stopped through the API");
                }
                Ok(())
            },
            |d| d.syncer = None,
        )
    }

    fn syncer_status(&self) -> Result<SyncerStatus, ApiError> {
        let slot = self.syncer.lock().expect("syncer lock");
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
            purged_gtid_set: Some(String::new()),
            last_error: None,
            lag_seconds: None,
            events,
            bytes,
        };
        if let Some((args, syncer)) = slot.as_ref() {
            let p = syncer.progress();
            status.status = match p.state {
                State::Running => SyncerState::Running,
                State::Connecting => SyncerState::Connecting,
                State::Stopped => SyncerState::Stopped,
                State::Error => SyncerState::Error,
            };
            status.mysql_addr = Some(args.mysql_addr.clone());
            status.mysql_user = Some(args.mysql_user.clone());
            status.syncer_id = Some(args.syncer_id);
            status.last_error = p.last_error;
            status.lag_seconds = p.lag_seconds;
        }
        Ok(status)
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
            return Ok(ServerStatus {
                addr: None,
                user: None,
                status: ServerState::Stopped,
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

    fn health(&self) -> Health {
        Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: self.started.elapsed().as_secs(),
        }
    }
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
    let path = data_dir.join(DESIRED_FILE);
    let tmp = data_dir.join(format!("{DESIRED_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(desired).map_err(std::io::Error::other)?;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(data_dir)?.sync_all()
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

/// SIGTERM and SIGINT, blocked in every thread and received synchronously by the main one.
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
                return if sig == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
            }
        }
    }
}
