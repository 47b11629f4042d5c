//! The HTTP admin API: a small JSON-over-HTTP server (tiny_http) that lets an operator start,
//! stop and inspect the syncer and the binlog server of this node, and manage the cluster's
//! membership.
//!
//! This module owns the listening socket and its worker threads; the routing table and
//! request handling live in `routes`, leader forwarding in `forward`, argument parsing in
//! `validate`, the wire types in `model`, the socket under a request in `connection`, the
//! Prometheus text of `GET /metrics` in `metrics`. It
//! knows nothing of what the daemon does: every action goes through the [`Backend`]
//! trait, which the daemon implements. Leader-only routes (`/binlog/syncer/*`, membership
//! changes, purge, import) are served locally only when the backend says
//! [`ClusterRoute::Local`]; otherwise they are forwarded to the leader. Import bodies
//! (whole binlog files) are streamed, never held in memory, and so are the binlog files
//! `GET /binlog/files/NAME` sends.
//!
//! Known limits of tiny_http 0.12 this module works around or cannot remove: accepted
//! sockets have no read timeout, so a client that stalls while sending a body holds a
//! worker until it closes (an import's body is bounded by IMPORT_BODY_STALL_MS through
//! `connection`, which finds its socket); and an accept error ends tiny_http's accept
//! thread (logged, the API then stops answering).

pub mod connection;
pub mod forward;
pub mod metrics;
pub mod model;
pub mod routes;
pub mod validate;

#[cfg(test)]
mod server_tests;

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

pub use model::{
    BinlogFileInfo, Health, ImportSummary, LatencyView, MemberAdd, MemberAnnounce, MemberRemove,
    MemberUpdate, MemberView, PeerView, PurgeArgs, RaftView, ServerArgs, ServerState, ServerStatus,
    SlaveInfo, SlaveMode, SyncerArgs, SyncerState, SyncerStatus,
};

use crate::limits::HTTP_WORKERS_MAX;

/// Where this node sends a leader-only request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClusterRoute {
    /// This node leads (or runs alone): serve it here.
    #[default]
    Local,
    /// Another node leads; its admin API is at `leader_admin` (`host:port`).
    Forward { leader_admin: String },
    /// No leader is known (an election, or no quorum), or the leader's admin address is
    /// not known yet.
    NoLeader,
}

/// The 503 a backend method answers with until the daemon implements it.
pub fn not_wired() -> ApiError {
    ApiError::unavailable("cluster support is not wired yet")
}

/// What the admin API drives. The daemon implements it; every method must return promptly
/// (it runs on an HTTP worker thread) and report failures as an [`ApiError`].
///
/// The syncer methods, `member_add`, `member_update`, `member_remove` and `purge` are
/// leader-only: the API calls them only when `cluster_route` says `Local`. The cluster
/// methods have defaults (503 "not wired") so a backend without a cluster still compiles.
pub trait Backend: Send + Sync + 'static {
    fn syncer_start(&self, args: SyncerArgs) -> Result<(), ApiError>;
    /// Succeeds when the syncer is already stopped.
    fn syncer_stop(&self) -> Result<(), ApiError>;
    fn syncer_status(&self) -> Result<SyncerStatus, ApiError>;
    /// The syncer's status when this node is a ready leader and it can be read at once;
    /// None otherwise (for `GET /metrics`, which must never wait).
    fn syncer_status_now(&self) -> Option<SyncerStatus> {
        None
    }
    fn server_start(&self, args: ServerArgs) -> Result<(), ApiError>;
    /// Succeeds when the server is already stopped.
    fn server_stop(&self) -> Result<(), ApiError>;
    fn server_status(&self) -> Result<ServerStatus, ApiError>;
    fn health(&self) -> Health;

    /// Who serves leader-only requests now. Must be quick (it is asked per request).
    fn cluster_route(&self) -> ClusterRoute {
        ClusterRoute::Local
    }

    /// `GET /members`: the membership table as this node has applied it (any node).
    fn members_list(&self) -> Result<Vec<MemberView>, ApiError> {
        Err(not_wired())
    }

    /// `POST /members` (leader): adds a member as a learner (promoted to voter once it has
    /// caught up); replies with the members after the change.
    /// Refusals: 409 (id used before, address taken, another membership change still in
    /// progress, a node alone on a peer port of the system's choosing), 400.
    fn member_add(&self, args: MemberAdd) -> Result<Vec<MemberView>, ApiError> {
        let _ = args;
        Err(not_wired())
    }

    /// `PUT /members/announce` (leader): records a member's own admin and binlog server
    /// addresses.
    fn member_announce(&self, args: MemberAnnounce) -> Result<(), ApiError> {
        let _ = args;
        Err(not_wired())
    }

    /// `PUT /members` (leader): changes a member's peer address (its id stays).
    fn member_update(&self, args: MemberUpdate) -> Result<Vec<MemberView>, ApiError> {
        let _ = args;
        Err(not_wired())
    }

    /// `DELETE /members` (leader): removes a member (404 when there is none of that name).
    fn member_remove(&self, name: String) -> Result<Vec<MemberView>, ApiError> {
        let _ = name;
        Err(not_wired())
    }

    /// `GET /raft/status`: this node's raft state and log syncs (any node).
    fn raft_status(&self) -> Result<RaftView, ApiError> {
        Err(not_wired())
    }

    /// `GET /cluster`: every member with `is_leader` set (any node).
    fn cluster(&self) -> Result<Vec<MemberView>, ApiError> {
        Err(not_wired())
    }

    /// `PUT /binlog/purge` (leader): drops the stored binlog before `to_file` on every node.
    fn purge(&self, to_file: String) -> Result<(), ApiError> {
        let _ = to_file;
        Err(not_wired())
    }

    /// `POST /binlog/import?file=NAME` (leader): stores the native binlog file read from
    /// `body` (at most IMPORT_FILE_BYTES_MAX bytes) through Raft, after checking it whole.
    /// Unlike the other methods it may take long (it returns once every entry is applied).
    fn binlog_import(&self, file: &str, body: &mut dyn Read) -> Result<ImportSummary, ApiError> {
        let _ = (file, body);
        Err(not_wired())
    }

    /// `GET /binlog/files` (any node): the stored files, oldest first.
    fn binlog_files(&self) -> Result<Vec<BinlogFileInfo>, ApiError> {
        Err(not_wired())
    }

    /// `GET /binlog/files/NAME` (any node): the stored file as a native binlog file.
    fn binlog_file(&self, name: &str) -> Result<FileStream, ApiError> {
        let _ = name;
        Err(not_wired())
    }
}

/// A native binlog file the API streams to the client.
pub struct FileStream {
    /// Size of the whole file (the reply's Content-Length).
    pub bytes: u64,
    pub reader: Box<dyn Read + Send>,
}

/// A failed admin request: the HTTP status and the message put in the reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// This node led and handed leadership to another node instead of doing what was asked
    /// (a leader cannot remove itself): the API sends the request on to the new leader.
    pub handed_over: bool,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            handed_over: false,
        }
    }

    /// A 503 for a leader-only request this node no longer leads for: it handed leadership
    /// over, and the request is to be forwarded to the new leader.
    pub fn handed_over(message: impl Into<String>) -> ApiError {
        ApiError {
            handed_over: true,
            ..ApiError::new(503, message)
        }
    }

    /// 400: the request is malformed or its arguments are invalid.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }

    /// 404: no such resource.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, message)
    }

    /// 409: the request conflicts with the current state (starting what already runs).
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, message)
    }

    /// 500: the node failed to do what it should have been able to do.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, message)
    }

    /// 503: the node is not ready to serve this request yet.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

/// The running admin API: a bound listener and its worker threads.
pub struct AdminServer {
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    /// Whether the server stops, and the import uploads it cuts short then.
    uploads: Arc<routes::Uploads>,
    local_addr: SocketAddr,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port) and starts `workers` threads serving it,
    /// clamped to 1..=HTTP_WORKERS_MAX.
    pub fn start(
        addr: &str,
        backend: Arc<dyn Backend>,
        workers: usize,
    ) -> Result<AdminServer, io::Error> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let server = tiny_http::Server::from_listener(listener, None).map_err(io::Error::other)?;
        let mut admin = AdminServer {
            server: Arc::new(server),
            workers: Vec::new(),
            uploads: Arc::new(routes::Uploads::default()),
            local_addr,
        };
        for index in 0..workers.clamp(1, HTTP_WORKERS_MAX) {
            // On failure `admin` is dropped, which stops the workers already started.
            let worker = admin.spawn_worker(index, Arc::clone(&backend))?;
            admin.workers.push(worker);
        }
        log::info!("admin API listening on http://{local_addr}");
        Ok(admin)
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting work, lets each worker finish its current request, and joins them.
    pub fn shutdown(mut self) {
        self.stop_workers();
    }

    fn spawn_worker(
        &self,
        index: usize,
        backend: Arc<dyn Backend>,
    ) -> Result<JoinHandle<()>, io::Error> {
        let server = Arc::clone(&self.server);
        let uploads = Arc::clone(&self.uploads);
        thread::Builder::new()
            .name(format!("admin-http-{index}"))
            .spawn(move || worker_loop(&server, backend.as_ref(), &uploads))
    }

    fn stop_workers(&mut self) {
        if self.workers.is_empty() {
            return;
        }
        let cut = self.uploads.cancel_all();
        if cut > 0 {
            log::info!(
                "admin API: stopping: cut short {cut} import upload(s) in progress (nothing \
                 of them is imported; send the files again once the node is back)"
            );
        }
        // Each unblock wakes exactly one thread blocked in recv(); a worker exits on the
        // first wake-up it sees once stopping is set, so one per worker frees them all.
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                log::error!("admin API worker thread panicked outside request handling");
            }
        }
        log::info!("admin API on {} stopped", self.local_addr);
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

fn worker_loop(server: &tiny_http::Server, backend: &dyn Backend, uploads: &routes::Uploads) {
    loop {
        match server.recv() {
            Ok(request) => routes::serve(request, backend, uploads),
            Err(error) => {
                if uploads.stopping() {
                    return;
                }
                // tiny_http reports accept errors this way and then ends its accept thread.
                log::error!("admin API: no longer accepting connections: {error}");
            }
        }
    }
}
