//! The admin API's routing table and request handling: which method and path reach which
//! [`Backend`] call, which routes only the leader serves (the others forward those, see
//! `forward`), how the body is read (capped), and how every outcome becomes a JSON reply in
//! the `{"message": ..., "data": ...}` envelope.
//!
//! This module serves one already-accepted request at a time; it owns no socket and no
//! thread. A panic while handling a request is caught here so it costs that request a 500,
//! never the worker.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::forward::{self, FORWARDED_HEADER, NOT_LEADER_MESSAGE, NO_LEADER_MESSAGE};
use super::{connection, metrics, validate};
use super::{ApiError, Backend, ClusterRoute};
use crate::limits::{
    HANDOVER_WAIT_MS, HTTP_BODY_BYTES_MAX, HTTP_BODY_DRAIN_BYTES_MAX, HTTP_IO_TIMEOUT_MS,
    IMPORT_BODY_STALL_MS, IMPORT_FILE_BYTES_MAX,
};

/// One admin action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    SyncerStart,
    SyncerStop,
    SyncerStatus,
    ServerStart,
    ServerStop,
    ServerStatus,
    Health,
    MembersList,
    MemberAdd,
    MemberUpdate,
    MemberAnnounce,
    MemberRemove,
    Cluster,
    /// `GET /raft/status`: this node's raft state (any node, never forwarded).
    RaftStatus,
    Purge,
    /// `POST /binlog/import?file=NAME`: the body is a binlog file (streamed).
    Import,
    /// `GET /binlog/files`.
    Files,
    /// `GET /binlog/files/NAME`: the reply is the binlog file (streamed).
    File,
    /// `GET /metrics`: Prometheus text, not JSON (any node, never forwarded).
    Metrics,
}

impl Route {
    /// Whether only the leader serves it (a follower forwards it). The syncer runs on the
    /// leader, so even its status is the leader's; membership changes and purge are
    /// proposed through Raft, which only the leader does. Reading the membership table
    /// is answered by any node from its applied copy.
    pub fn leader_only(self) -> bool {
        matches!(
            self,
            Route::SyncerStart
                | Route::SyncerStop
                | Route::SyncerStatus
                | Route::MemberAdd
                | Route::MemberUpdate
                | Route::MemberAnnounce
                | Route::MemberRemove
                | Route::Purge
                | Route::Import
        )
    }
}

/// Path prefix of `GET /binlog/files/NAME`.
const FILE_PATH_PREFIX: &str = "/binlog/files/";

/// The routing table: method, path, action.
const ROUTES: &[(&str, &str, Route)] = &[
    ("PUT", "/binlog/syncer/start", Route::SyncerStart),
    ("PUT", "/binlog/syncer/stop", Route::SyncerStop),
    ("GET", "/binlog/syncer/status", Route::SyncerStatus),
    ("PUT", "/binlog/server/start", Route::ServerStart),
    ("PUT", "/binlog/server/stop", Route::ServerStop),
    ("GET", "/binlog/server/status", Route::ServerStatus),
    ("GET", "/health", Route::Health),
    // Load balancers' health checks often use HEAD: the same reply, without its body
    // (tiny_http leaves the body out for HEAD).
    ("HEAD", "/health", Route::Health),
    ("GET", "/members", Route::MembersList),
    ("POST", "/members", Route::MemberAdd),
    ("PUT", "/members", Route::MemberUpdate),
    ("PUT", "/members/announce", Route::MemberAnnounce),
    ("DELETE", "/members", Route::MemberRemove),
    ("GET", "/cluster", Route::Cluster),
    ("GET", "/raft/status", Route::RaftStatus),
    ("PUT", "/binlog/purge", Route::Purge),
    ("POST", "/binlog/import", Route::Import),
    ("GET", "/binlog/files", Route::Files),
    ("GET", "/metrics", Route::Metrics),
];

/// Where a method and request target lead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    Found(Route),
    /// The path exists but not with this method; `allow` lists the methods it takes.
    MethodNotAllowed {
        allow: String,
    },
    NotFound,
}

/// Looks a request up in the routing table; the query string and fragment are ignored.
pub fn resolve(method: &str, target: &str) -> Resolution {
    let path = request_path(target);
    if path
        .strip_prefix(FILE_PATH_PREFIX)
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
    {
        return if method == "GET" {
            Resolution::Found(Route::File)
        } else {
            Resolution::MethodNotAllowed {
                allow: "GET".into(),
            }
        };
    }
    let mut allowed: Vec<&str> = Vec::new();
    for &(route_method, route_path, route) in ROUTES {
        if route_path != path {
            continue;
        }
        if route_method == method {
            return Resolution::Found(route);
        }
        allowed.push(route_method);
    }
    if allowed.is_empty() {
        Resolution::NotFound
    } else {
        Resolution::MethodNotAllowed {
            allow: allowed.join(", "),
        }
    }
}

/// The path part of a request target.
fn request_path(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}

/// A reply ready to send: status, JSON body, and the `Allow` header for 405s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub allow: Option<String>,
    /// From an [`ApiError::handed_over`]: forward the request to the new leader.
    pub handed_over: bool,
}

impl Reply {
    /// 200 `{"message":"success","data":data}`.
    pub fn success(data: Value) -> Reply {
        // Written by hand so that "message" comes first, as the interface shows it.
        Reply {
            status: 200,
            body: format!("{{\"message\":\"success\",\"data\":{data}}}"),
            allow: None,
            handed_over: false,
        }
    }

    /// `{"message": error.message}` with the error's status.
    pub fn error(error: &ApiError) -> Reply {
        Reply {
            status: error.status,
            body: json!({ "message": error.message }).to_string(),
            allow: None,
            handed_over: error.handed_over,
        }
    }
}

/// Runs one action against the backend and builds its reply. `body` is only looked at by
/// the start routes.
pub fn dispatch(backend: &dyn Backend, route: Route, body: &[u8]) -> Reply {
    let outcome = match route {
        Route::SyncerStart => validate::syncer_args_from_json(body)
            .and_then(|args| backend.syncer_start(args))
            .map(|()| Value::Null),
        Route::SyncerStop => backend.syncer_stop().map(|()| Value::Null),
        Route::SyncerStatus => backend.syncer_status().and_then(|status| to_data(&status)),
        Route::ServerStart => validate::server_args_from_json(body)
            .and_then(|args| backend.server_start(args))
            .map(|()| Value::Null),
        Route::ServerStop => backend.server_stop().map(|()| Value::Null),
        Route::ServerStatus => backend.server_status().and_then(|status| to_data(&status)),
        Route::Health => to_data(&backend.health()),
        Route::RaftStatus => backend.raft_status().and_then(|status| to_data(&status)),
        Route::MembersList => backend.members_list().and_then(|members| to_data(&members)),
        Route::MemberAdd => validate::member_add_from_json(body)
            .and_then(|args| backend.member_add(args))
            .and_then(|members| to_data(&members)),
        Route::MemberUpdate => validate::member_update_from_json(body)
            .and_then(|args| backend.member_update(args))
            .and_then(|members| to_data(&members)),
        Route::MemberAnnounce => validate::member_announce_from_json(body)
            .and_then(|args| backend.member_announce(args))
            .map(|()| Value::Null),
        Route::MemberRemove => validate::member_remove_from_json(body)
            .and_then(|args| backend.member_remove(args.name))
            .and_then(|members| to_data(&members)),
        Route::Cluster => backend.cluster().and_then(|members| to_data(&members)),
        Route::Purge => validate::purge_args_from_json(body)
            .and_then(|args| backend.purge(args.to_file))
            .map(|()| Value::Null),
        Route::Files => backend.binlog_files().and_then(|files| to_data(&files)),
        // Not JSON: `handle` serves these (streamed, or as text).
        Route::Import | Route::File | Route::Metrics => Err(ApiError::internal(format!(
            "{route:?} is served by its own handler"
        ))),
    };
    match outcome {
        Ok(data) => Reply::success(data),
        Err(error) => Reply::error(&error),
    }
}

fn to_data<T: Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value)
        .map_err(|error| ApiError::internal(format!("cannot encode the reply: {error}")))
}

/// A request that resolved to a route, as the worker received it.
#[derive(Clone, Copy, Debug)]
pub struct Incoming<'a> {
    pub route: Route,
    pub method: &'a str,
    /// The request target as received (path and query), sent on unchanged when forwarding.
    pub target: &'a str,
    pub body: &'a [u8],
    /// It carries FORWARDED_HEADER: a follower sent it here as to the leader.
    pub forwarded: bool,
}

/// Serves a resolved request: locally, or by forwarding it to the leader when the route
/// is leader-only and this node does not lead.
pub fn route_request(backend: &dyn Backend, incoming: Incoming<'_>) -> Reply {
    if !incoming.route.leader_only() {
        return dispatch(backend, incoming.route, incoming.body);
    }
    let forward = |leader_admin: &str| {
        forward::forward(
            incoming.method,
            incoming.target,
            incoming.body,
            leader_admin,
        )
    };
    let before = backend.cluster_route();
    let reply = match leader_decision(before.clone(), incoming.forwarded) {
        Err(reply) => return reply,
        Ok(Some(leader_admin)) => forward(&leader_admin),
        Ok(None) => dispatch(backend, incoming.route, incoming.body),
    };
    // The leader (this node, or the one the request went to) handed leadership over
    // rather than make the change (a leader cannot remove itself): the new leader does
    // it, once, like any forwarded request. A request forwarded here goes back with the
    // 503, and the node that forwarded it sends it on.
    if !reply.handed_over || incoming.forwarded {
        return reply;
    }
    match new_leader_route(backend, &before) {
        ClusterRoute::Forward { leader_admin } => {
            log::info!(
                "admin API: {} {} goes to the new leader at {leader_admin}",
                incoming.method,
                incoming.target
            );
            forward(&leader_admin)
        }
        ClusterRoute::Local => dispatch(backend, incoming.route, incoming.body),
        ClusterRoute::NoLeader => reply,
    }
}

/// Where leader-only requests go once a leader handed leadership over: waits (up to
/// HANDOVER_WAIT_MS) until this node's route differs from `before` (the route the request
/// took) and names a leader; NoLeader when none is known by then.
fn new_leader_route(backend: &dyn Backend, before: &ClusterRoute) -> ClusterRoute {
    let deadline = std::time::Instant::now() + Duration::from_millis(HANDOVER_WAIT_MS);
    loop {
        let route = backend.cluster_route();
        if route != *before && route != ClusterRoute::NoLeader {
            return route;
        }
        if std::time::Instant::now() >= deadline {
            return ClusterRoute::NoLeader;
        }
        std::thread::sleep(Duration::from_millis(HANDOVER_POLL_MS));
    }
}

/// How often [`new_leader_route`] looks for the new leader.
const HANDOVER_POLL_MS: u64 = 20;

/// Where a leader-only request is served, given this node's `route`: here (None), at the
/// leader's admin address, or nowhere (the 503 to answer: no leader known, or a request
/// already forwarded once, which is never sent on whatever this node believes).
fn leader_decision(route: ClusterRoute, forwarded: bool) -> Result<Option<String>, Reply> {
    match route {
        ClusterRoute::Local => Ok(None),
        _ if forwarded => Err(Reply::error(&ApiError::unavailable(NOT_LEADER_MESSAGE))),
        ClusterRoute::NoLeader => Err(Reply::error(&ApiError::unavailable(NO_LEADER_MESSAGE))),
        ClusterRoute::Forward { leader_admin } => Ok(Some(leader_admin)),
    }
}

/// `route_request`, with a panic in the backend turned into a 500.
fn route_guarded(backend: &dyn Backend, incoming: Incoming<'_>) -> Reply {
    guarded(incoming.route, || route_request(backend, incoming))
}

/// Runs a handler, with a panic in it turned into a 500.
fn guarded(route: Route, handler: impl FnOnce() -> Reply) -> Reply {
    // The backend is shared state behind `&`; a panic in it is the backend's bug to
    // report, and the reply we send does not depend on any state it may have left.
    match panic::catch_unwind(AssertUnwindSafe(handler)) {
        Ok(reply) => reply,
        Err(payload) => {
            log::error!(
                "admin API: handler for {route:?} panicked: {}",
                panic_message(payload.as_ref())
            );
            Reply::error(&ApiError::internal(
                "internal error: the request handler panicked",
            ))
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}

/// Whether the admin server stops, and the import uploads being read, so that a node that
/// stops cuts them short instead of waiting for a slow client (an upload may take
/// minutes; a stalled one up to IMPORT_BODY_STALL_MS).
#[derive(Default)]
pub struct Uploads {
    stopping: AtomicBool,
    next_id: AtomicU64,
    open: Mutex<Vec<(u64, TcpStream)>>,
}

impl Uploads {
    /// The server stops: cuts every upload short (and any that registers later); how many
    /// were running.
    pub fn cancel_all(&self) -> usize {
        self.stopping.store(true, Ordering::SeqCst);
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, socket) in open.iter() {
            let _ = socket.shutdown(Shutdown::Read);
        }
        open.len()
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Registers the socket an upload is read from, until the guard drops.
    fn register(&self, socket: &TcpStream) -> Option<UploadGuard<'_>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let clone = socket.try_clone().ok()?;
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, clone));
        // `cancel_all` sets the flag before it walks the list: one of the two sees the other.
        if self.stopping() {
            let _ = socket.shutdown(Shutdown::Read);
        }
        Some(UploadGuard { uploads: self, id })
    }
}

struct UploadGuard<'a> {
    uploads: &'a Uploads,
    id: u64,
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        self.uploads
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(id, _)| *id != self.id);
    }
}

/// Serves one request to the end; never panics.
pub fn serve(request: tiny_http::Request, backend: &dyn Backend, uploads: &Uploads) {
    // `handle` guards the backend call itself; this outer guard is for tiny_http's own
    // code (reading, responding), so that no request can take the worker down.
    if let Err(payload) =
        panic::catch_unwind(AssertUnwindSafe(|| handle(request, backend, uploads)))
    {
        log::error!(
            "admin API: serving a request panicked: {}",
            panic_message(payload.as_ref())
        );
    }
}

fn handle(mut request: tiny_http::Request, backend: &dyn Backend, uploads: &Uploads) {
    let socket = bound_socket_io(&request);
    let method = request.method().as_str().to_owned();
    let target = request.url().to_owned();
    let remote = request
        .remote_addr()
        .map_or_else(|| "?".to_string(), ToString::to_string);
    let declared = request.body_length();
    let resolution = resolve(&method, &target);
    let import = resolution == Resolution::Found(Route::Import);
    // An import's body is a whole binlog file, read as a stream; every other body is small.
    let (drain_max, too_large) = if import {
        (IMPORT_FILE_BYTES_MAX, import_too_large())
    } else {
        (HTTP_BODY_DRAIN_BYTES_MAX as u64, body_too_large())
    };
    if declared.is_some_and(|bytes| bytes as u64 > drain_max) {
        log::warn!(
            "admin API: {remote} declared a {}-byte body for {method} {target}; replying 413 \
             and abandoning the connection",
            declared.unwrap_or(0)
        );
        abandon(request, too_large);
        return;
    }
    match resolution {
        Resolution::Found(Route::Import) => {
            return handle_import(request, socket, backend, &target, uploads)
        }
        Resolution::Found(Route::File) => return handle_file(request, backend, &target),
        Resolution::Found(Route::Metrics) => return handle_metrics(request, backend),
        _ => {}
    }

    let reply = match resolution {
        Resolution::NotFound => Reply::error(&ApiError::not_found(format!(
            "no such route: {method} {}",
            request_path(&target)
        ))),
        Resolution::MethodNotAllowed { allow } => Reply {
            allow: Some(allow.clone()),
            ..Reply::error(&ApiError::new(
                405,
                format!("method {method} not allowed here; allowed: {allow}"),
            ))
        },
        Resolution::Found(route) => match read_body(&mut request) {
            Ok(body) => route_guarded(
                backend,
                Incoming {
                    route,
                    method: &method,
                    target: &target,
                    body: &body,
                    forwarded: is_forwarded(&request),
                },
            ),
            Err(reply) => reply,
        },
    };
    log::debug!("admin API: {remote} {method} {target} -> {}", reply.status);
    if let Err(error) = request.respond(to_response(reply)) {
        log::debug!("admin API: could not send the reply to {remote}: {error}");
    }
}

/// Bounds every read and write on the request's connection (`HTTP_IO_TIMEOUT_MS`): a
/// client that stops sending its body or stops reading a download would otherwise hold a
/// worker for good, and the workers are joined when the node stops. The timeouts stay on
/// the connection, so an idle keep-alive connection also lets its thread go in time. An
/// import then sets its own read bound on the socket returned (None: not found).
fn bound_socket_io(request: &tiny_http::Request) -> Option<TcpStream> {
    let socket = request
        .remote_addr()
        .copied()
        .and_then(connection::socket_to_peer)?;
    let timeout = Some(Duration::from_millis(HTTP_IO_TIMEOUT_MS));
    if let Err(error) = socket
        .set_read_timeout(timeout)
        .and_then(|()| socket.set_write_timeout(timeout))
    {
        log::debug!("admin API: cannot bound the connection's reads and writes: {error}");
    }
    Some(socket)
}

/// `POST /binlog/import?file=NAME`: the body goes to the backend (leader) or to the
/// leader (follower) as a stream, at most IMPORT_FILE_BYTES_MAX bytes, each read bounded
/// by IMPORT_BODY_STALL_MS (set on the connection's socket, see `connection`). A body the
/// handler did not read to its end (an early refusal, a stall, too large) is not drained:
/// the reply is sent and the connection closed.
fn handle_import(
    mut request: tiny_http::Request,
    socket: Option<TcpStream>,
    backend: &dyn Backend,
    target: &str,
    uploads: &Uploads,
) {
    let forwarded = is_forwarded(&request);
    let declared = request.body_length().map(|b| b as u64);
    match &socket {
        Some(socket) => {
            let stall = Duration::from_millis(IMPORT_BODY_STALL_MS);
            if let Err(error) = socket.set_read_timeout(Some(stall)) {
                log::warn!("admin API: cannot bound the import upload's reads: {error}");
            }
        }
        None => log::warn!(
            "admin API: the socket of this import's connection was not found; a stalled \
             upload holds this worker until its client gives up"
        ),
    }
    let registration = socket.as_ref().and_then(|s| uploads.register(s));
    let mut body = BodyReader {
        inner: request.as_reader().take(IMPORT_FILE_BYTES_MAX + 1),
        read_bytes: 0,
        at_end: false,
        declared,
        uploads,
    };
    let reply = match validate::import_file_from_target(target) {
        Err(error) => Reply::error(&error),
        Ok(name) => guarded(Route::Import, || {
            match leader_decision(backend.cluster_route(), forwarded) {
                Err(reply) => reply,
                Ok(None) => match backend.binlog_import(&name, &mut body) {
                    Ok(summary) => {
                        to_data(&summary).map_or_else(|e| Reply::error(&e), Reply::success)
                    }
                    Err(error) => Reply::error(&error),
                },
                Ok(Some(leader_admin)) => {
                    forward::forward_stream("POST", target, &mut body, &leader_admin)
                }
            }
        }),
    };
    drop(registration);
    log::debug!("admin API: POST {target} -> {}", reply.status);
    let (at_end, read_bytes) = (body.at_end, body.read_bytes);
    if at_end || declared == Some(0) {
        if let Some(socket) = &socket {
            let _ = socket.set_read_timeout(Some(Duration::from_millis(HTTP_IO_TIMEOUT_MS)));
        }
        if let Err(error) = request.respond(to_response(reply)) {
            log::debug!("admin API: could not send the import reply: {error}");
        }
        return;
    }
    log::info!(
        "admin API: import {target} answered after {read_bytes} of {} body bytes; closing \
         the connection instead of reading the rest",
        declared.map_or("(chunked)".to_string(), |d| d.to_string())
    );
    let Some(socket) = socket else {
        abandon(request, reply);
        return;
    };
    let remaining = declared.map_or(0, |d| d.saturating_sub(read_bytes));
    reply_and_close(request, reply, &socket, remaining);
}

/// Writes `reply` on the connection's socket itself (tiny_http would first drain the
/// body), then shuts the connection down: the client has the reply, its further bytes are
/// refused, and every later read here ends at once. The request is then dropped, which
/// reads what is still buffered; unless more than HTTP_BODY_DRAIN_BYTES_MAX of the
/// declared body is unread, as tiny_http allocates the unread length whole to drain it:
/// then the request is leaked, as `abandon` does.
fn reply_and_close(request: tiny_http::Request, reply: Reply, socket: &TcpStream, remaining: u64) {
    let reason = tiny_http::StatusCode(reply.status).default_reason_phrase();
    let message = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    let mut writer = socket;
    if let Err(error) = writer
        .write_all(message.as_bytes())
        .and_then(|()| writer.flush())
    {
        log::debug!("admin API: could not send the import reply: {error}");
    }
    let _ = socket.shutdown(Shutdown::Both);
    if remaining <= HTTP_BODY_DRAIN_BYTES_MAX as u64 {
        drop(request);
    } else {
        std::mem::forget(request);
    }
}

/// An import body that records how much was read and whether its end was reached.
struct BodyReader<'a, R> {
    inner: R,
    read_bytes: u64,
    at_end: bool,
    /// The Content-Length the client announced: an end before it is no end of the body.
    declared: Option<u64>,
    uploads: &'a Uploads,
}

impl<R: Read> Read for BodyReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf);
        // A node that stops cuts the upload short (its socket shut for reading): that end
        // is no end of the body, and the import must not take what came as a whole file.
        if self.uploads.stopping() && !matches!(read, Ok(n) if n > 0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the node is stopping: the upload was cut short, nothing of it is imported",
            ));
        }
        let n = read?;
        // A client that goes away in the middle of a Content-Length body leaves a short
        // read that looks like an end: a file cut between two transactions would pass for
        // a whole one.
        if n == 0 && !buf.is_empty() {
            if let Some(declared) = self.declared.filter(|&d| self.read_bytes < d) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the upload ended after {} of its {declared} bytes (the client went \
                         away)",
                        self.read_bytes
                    ),
                ));
            }
        }
        // The end of the capped reader is the body's end only within the cap.
        if n == 0 && !buf.is_empty() && self.read_bytes <= IMPORT_FILE_BYTES_MAX {
            self.at_end = true;
        }
        self.read_bytes += n as u64;
        Ok(n)
    }
}

/// `GET /binlog/files/NAME`: the stored file as a native binlog file, streamed.
fn handle_file(request: tiny_http::Request, backend: &dyn Backend, target: &str) {
    let raw = request_path(target)
        .strip_prefix(FILE_PATH_PREFIX)
        .unwrap_or_default();
    let stream = validate::file_name_from_path(raw)
        .map_err(|error| Reply::error(&error))
        .and_then(|name| {
            let mut found = None;
            let reply = guarded(Route::File, || match backend.binlog_file(&name) {
                Ok(stream) => {
                    found = Some(stream);
                    Reply::success(Value::Null)
                }
                Err(error) => Reply::error(&error),
            });
            found.ok_or(reply)
        });
    let outcome = match stream {
        Ok(stream) => {
            log::info!("admin API: sending {raw} ({} bytes)", stream.bytes);
            let length = usize::try_from(stream.bytes).ok();
            let response = tiny_http::Response::new(
                tiny_http::StatusCode(200),
                vec![header("Content-Type", "application/octet-stream")],
                stream.reader,
                length,
                None,
            );
            request.respond(response)
        }
        Err(reply) => request.respond(to_response(reply)),
    };
    if let Err(error) = outcome {
        log::warn!("admin API: sending {target} failed: {error}");
    }
}

/// `GET /metrics`: what the JSON routes show, as Prometheus text. The syncer's part is the
/// leader's alone, so only a ready leader adds it, and never waits for it.
fn handle_metrics(request: tiny_http::Request, backend: &dyn Backend) {
    let mut text = None;
    let reply = guarded(Route::Metrics, || {
        let health = backend.health();
        let raft = backend.raft_status().ok();
        let syncer = backend.syncer_status_now();
        let server = backend.server_status().ok();
        let files = backend.binlog_files().ok();
        text = Some(metrics::render(&metrics::Sample {
            health: &health,
            raft: raft.as_ref(),
            syncer: syncer.as_ref(),
            server: server.as_ref(),
            files: files.as_deref(),
        }));
        Reply::success(Value::Null)
    });
    let response = match text {
        Some(text) => tiny_http::Response::from_string(text)
            .with_header(header("Content-Type", metrics::CONTENT_TYPE)),
        None => to_response(reply),
    };
    if let Err(error) = request.respond(response) {
        log::warn!("admin API: sending the metrics failed: {error}");
    }
}

fn import_too_large() -> Reply {
    Reply::error(&ApiError::new(
        413,
        format!("binlog file too large (import takes at most {IMPORT_FILE_BYTES_MAX} bytes)"),
    ))
}

fn is_forwarded(request: &tiny_http::Request) -> bool {
    request
        .headers()
        .iter()
        .any(|header| header.field.equiv(FORWARDED_HEADER))
}

fn body_too_large() -> Reply {
    Reply::error(&ApiError::new(
        413,
        format!("request body too large (at most {HTTP_BODY_BYTES_MAX} bytes)"),
    ))
}

/// Reads the whole body, at most HTTP_BODY_BYTES_MAX bytes of it; the error is the reply.
fn read_body(request: &mut tiny_http::Request) -> Result<Vec<u8>, Reply> {
    if request
        .body_length()
        .is_some_and(|bytes| bytes > HTTP_BODY_BYTES_MAX)
    {
        return Err(body_too_large());
    }
    let mut body = Vec::new();
    // One byte past the cap tells a too-large chunked body from one that just fits.
    let cap = HTTP_BODY_BYTES_MAX as u64 + 1;
    match request.as_reader().take(cap).read_to_end(&mut body) {
        Ok(_) if body.len() > HTTP_BODY_BYTES_MAX => Err(body_too_large()),
        Ok(_) => Ok(body),
        Err(error) => Err(Reply::error(&ApiError::bad_request(format!(
            "could not read the request body: {error}"
        )))),
    }
}

fn to_response(reply: Reply) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut response = tiny_http::Response::from_string(reply.body)
        .with_status_code(reply.status)
        .with_header(header("Content-Type", "application/json"));
    if let Some(allow) = reply.allow {
        response.add_header(header("Allow", &allow));
    }
    if reply.handed_over {
        response.add_header(header(forward::HANDED_OVER_HEADER, "1"));
    }
    response
}

/// Builds a header from text this module controls (constants and route methods).
fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| panic!("invalid built-in header {name}: {value}"))
}

/// Sends `reply`'s status and headers, then gives up on the connection without dropping the
/// request: tiny_http 0.12 would drain the rest of the declared body by allocating all of it
/// at once, which a hostile Content-Length turns into an abort. The connection and its
/// tiny_http thread leak until the process exits; only a request declaring more than
/// HTTP_BODY_DRAIN_BYTES_MAX gets here.
fn abandon(request: tiny_http::Request, reply: Reply) {
    let stream = request.upgrade("abandoned", to_response(reply));
    std::mem::forget(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every admin connection gets bounded reads and writes, so a client that stalls
    /// cannot hold a worker (and the node's stop) for good.
    #[test]
    fn a_request_bounds_its_connection_io() {
        use std::io::Write as _;
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let addr = server.server_addr().to_ip().unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let request = server.recv().unwrap();
        let peer = *request.remote_addr().unwrap();
        let socket = connection::socket_to_peer(peer).unwrap();
        assert_eq!(socket.read_timeout().unwrap(), None, "tiny_http sets none");
        bound_socket_io(&request);
        let bound = Some(Duration::from_millis(HTTP_IO_TIMEOUT_MS));
        assert_eq!(socket.read_timeout().unwrap(), bound);
        assert_eq!(socket.write_timeout().unwrap(), bound);
    }

    #[test]
    fn every_route_resolves() {
        for &(method, path, route) in ROUTES {
            assert_eq!(resolve(method, path), Resolution::Found(route));
        }
    }

    #[test]
    fn leader_only_routes() {
        let leader_only: Vec<Route> = ROUTES
            .iter()
            .map(|&(_, _, route)| route)
            .filter(|route| route.leader_only())
            .collect();
        assert_eq!(
            leader_only,
            [
                Route::SyncerStart,
                Route::SyncerStop,
                Route::SyncerStatus,
                Route::MemberAdd,
                Route::MemberUpdate,
                Route::MemberAnnounce,
                Route::MemberRemove,
                Route::Purge,
                Route::Import
            ]
        );
        assert!(!Route::File.leader_only() && !Route::Files.leader_only());
        assert_eq!(
            resolve("PATCH", "/members"),
            Resolution::MethodNotAllowed {
                allow: "GET, POST, PUT, DELETE".into()
            }
        );
    }

    #[test]
    fn binlog_file_paths() {
        assert_eq!(
            resolve("GET", "/binlog/files/mysql-bin.000001"),
            Resolution::Found(Route::File)
        );
        assert_eq!(
            resolve("GET", "/binlog/files/a%20b?x=1"),
            Resolution::Found(Route::File)
        );
        assert_eq!(
            resolve("GET", "/binlog/files"),
            Resolution::Found(Route::Files)
        );
        assert_eq!(
            resolve("DELETE", "/binlog/files/x"),
            Resolution::MethodNotAllowed {
                allow: "GET".into()
            }
        );
        assert_eq!(resolve("GET", "/binlog/files/"), Resolution::NotFound);
        assert_eq!(resolve("GET", "/binlog/files/a/b"), Resolution::NotFound);
        assert_eq!(
            resolve("POST", "/binlog/import?file=x"),
            Resolution::Found(Route::Import)
        );
    }

    #[test]
    fn query_strings_are_ignored() {
        assert_eq!(
            resolve("GET", "/health?verbose=1"),
            Resolution::Found(Route::Health)
        );
        assert_eq!(
            resolve("PUT", "/binlog/syncer/stop#x"),
            Resolution::Found(Route::SyncerStop)
        );
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in [
            "/",
            "/health/",
            "/binlog/syncer",
            "/binlog/syncer/start/x",
            "",
            "/HEALTH",
        ] {
            assert_eq!(resolve("GET", path), Resolution::NotFound, "{path}");
        }
    }

    #[test]
    fn wrong_methods_list_the_allowed_ones() {
        assert_eq!(
            resolve("GET", "/binlog/syncer/start"),
            Resolution::MethodNotAllowed {
                allow: "PUT".into()
            }
        );
        assert_eq!(
            resolve("POST", "/health"),
            Resolution::MethodNotAllowed {
                allow: "GET, HEAD".into()
            }
        );
        assert_eq!(
            resolve("put", "/health"),
            Resolution::MethodNotAllowed {
                allow: "GET, HEAD".into()
            }
        );
        assert_eq!(resolve("HEAD", "/health"), Resolution::Found(Route::Health));
    }

    #[test]
    fn envelopes() {
        let reply = Reply::success(Value::Null);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, r#"{"message":"success","data":null}"#);
        let reply = Reply::success(json!({"a": [1, "x\"y"]}));
        let value: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            value,
            json!({"message": "success", "data": {"a": [1, "x\"y"]}})
        );
        let reply = Reply::error(&ApiError::conflict("already \"running\""));
        assert_eq!(reply.status, 409);
        let value: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(value, json!({"message": "already \"running\""}));
    }

    #[test]
    fn panic_messages_are_extracted() {
        let payload: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(panic_message(payload.as_ref()), "boom");
        let payload: Box<dyn std::any::Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_message(payload.as_ref()), "bang");
        let payload: Box<dyn std::any::Any + Send> = Box::new(3);
        assert_eq!(
            panic_message(payload.as_ref()),
            "(non-string panic payload)"
        );
    }
}
