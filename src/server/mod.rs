//! The binlog server: listens for downstream replicas and CDC clients and serves them the
//! stored binlog as the master would. One thread per connection, a configured maximum of
//! connections (past it: ERR 1040), and a registry of dumping replicas for the status API.
//!
//! It reads the store and never writes it.

pub mod auth;
pub mod dump;
pub mod query;
pub mod session;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::binlog::event::{EventHeader, FormatDescription};
use crate::binlog::Flavour;
use crate::limits::{DOWNSTREAM_IO_TIMEOUT_MS, SERVER_STOP_WAIT_MS};
use crate::mysql::resultset::{ErrPacket, ER_CON_COUNT_ERROR};
use crate::store::Store;
use dump::DumpProgress;
use query::ServerView;

/// What the binlog server is started with.
#[derive(Clone)]
pub struct ServerConfig {
    pub addr: String,
    pub user: String,
    pub password: String,
    pub max_connections: usize,
    /// The node's @@server_uuid (see [`node_server_uuid`]).
    pub server_uuid: String,
    /// The password plugin downstream clients must log in with.
    pub auth_plugin: auth::AuthPlugin,
    /// PEM RSA private key for caching_sha2_password; `None`: one generated per process.
    pub rsa_private_key_path: Option<String>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("max_connections", &self.max_connections)
            .field("auth_plugin", &self.auth_plugin)
            .field("rsa_private_key_path", &self.rsa_private_key_path)
            .finish_non_exhaustive()
    }
}

/// A stable server UUID for a node: a name-based (version 5 layout) UUID from SHA-1 of the
/// cluster id and the member id, so that it survives restarts and differs between nodes.
/// MySQL replicas refuse a source whose @@server_uuid equals their own, and remember it.
pub fn node_server_uuid(cluster_id: u64, member_id: u64) -> String {
    let mut name = b"ferrobus server uuid\0".to_vec();
    name.extend_from_slice(&cluster_id.to_be_bytes());
    name.extend_from_slice(&member_id.to_be_bytes());
    crate::binlog::gtid::name_based_uuid(&name)
}

/// A dumping replica, for the status API.
#[derive(Clone)]
pub struct SlaveEntry {
    pub server_id: u32,
    pub host: String,
    pub port: u16,
    pub mode: &'static str,
    pub progress: Arc<DumpProgress>,
    pub connected_since: u64,
    /// Set to end this dump (the server stops, or the replica dumps again): a dump waiting
    /// for new binlog notices it within `DUMP_STOP_CHECK_MS`.
    pub ended: Arc<AtomicBool>,
}

/// A snapshot of one dumping replica.
#[derive(Clone, Debug)]
pub struct SlaveSnapshot {
    pub server_id: u32,
    pub host: String,
    pub port: u16,
    pub mode: &'static str,
    pub file: String,
    pub position: u64,
    pub bytes_sent: u64,
    pub connected_since: u64,
}

/// State shared by the listener and the sessions.
pub struct Shared {
    pub(crate) store: Arc<Store>,
    config: ServerConfig,
    pub(crate) stop: AtomicBool,
    slaves: Mutex<BTreeMap<u64, SlaveEntry>>,
    sockets: Mutex<BTreeMap<u64, TcpStream>>,
    active: AtomicUsize,
    next_id: AtomicU64,
    /// Version of the syncer's master, used until a file is stored.
    fallback_version: String,
    /// The login plugin, its RSA keys and caching_sha2_password's cache.
    pub(crate) auth: auth::AuthState,
}

impl Shared {
    pub(crate) fn args(&self) -> &ServerConfig {
        &self.config
    }

    /// What queries and the handshake report, from the stored data.
    pub fn view(&self) -> ServerView {
        let index = self.store.index();
        let files = index.files();
        let (version, server_id) = files
            .last()
            .and_then(|f| {
                let fde = FormatDescription::parse(&f.fde).ok()?;
                let header = EventHeader::parse(&f.fde).ok()?;
                Some((fde.server_version, header.server_id))
            })
            .unwrap_or_else(|| (self.fallback_version.clone(), 0));
        let flavour = index
            .flavour()
            .unwrap_or_else(|| Flavour::of_server_version(&version));
        let mysql = flavour == Flavour::MySql;
        ServerView {
            server_id,
            gtid_binlog_pos: index.maria_state().to_string(),
            master_status: files.last().map(|f| (f.name.clone(), f.end_pos)),
            binary_logs: files.iter().map(|f| (f.name.clone(), f.end_pos)).collect(),
            unix_time: crate::clock::unix_now(),
            flavour,
            server_uuid: self.config.server_uuid.clone(),
            gtid_executed: if mysql {
                index.mysql_executed().format_mysql()
            } else {
                String::new()
            },
            gtid_purged: if mysql {
                index.mysql_purged().format_mysql()
            } else {
                String::new()
            },
            version,
        }
    }

    /// The version string of the handshake: MariaDB servers prefix "5.5.5-" so that old
    /// clients see a 5.5-compatible server; MariaDB clients strip it.
    pub(crate) fn handshake_version(&self, version: &str) -> String {
        if version.contains("MariaDB") && !version.starts_with("5.5.5-") {
            format!("5.5.5-{version}")
        } else {
            version.to_string()
        }
    }

    /// Records a dump. An older dump of the same replica (same non-zero server id) is
    /// ended, as a master ends it: a replica that reconnects does so because its old
    /// connection is dead to it, and that connection's thread would otherwise wait for a
    /// write timeout, holding a connection slot and the files it reads from purge.
    pub(crate) fn register(&self, id: u64, entry: SlaveEntry) {
        let server_id = entry.server_id;
        let zombies: Vec<u64> = {
            let mut slaves = self.slaves.lock().expect("slaves lock");
            let zombies = slaves
                .iter()
                .filter(|(other, s)| **other != id && server_id != 0 && s.server_id == server_id)
                .map(|(other, s)| {
                    s.ended.store(true, Ordering::SeqCst);
                    *other
                })
                .collect();
            slaves.insert(id, entry);
            zombies
        };
        let sockets = self.sockets.lock().expect("sockets lock");
        for zombie in zombies {
            if let Some(sock) = sockets.get(&zombie) {
                log::info!(
                    "binlog server: replica server id {server_id} connected again; ending its \
                     older dump (connection {zombie})"
                );
                let _ = sock.shutdown(Shutdown::Both);
            }
        }
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.slaves.lock().expect("slaves lock").remove(&id);
    }
}

/// A running binlog server.
pub struct BinlogServer {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    listener: Option<JoinHandle<()>>,
}

/// Why a binlog server did not start.
#[derive(Debug)]
pub enum StartError {
    /// The RSA private key (caching_sha2_password) could not be loaded: the request's
    /// fault, the message names the file.
    Keys(io::Error),
    /// Binding the address, or starting the listener, failed.
    Listen(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Keys(e) | StartError::Listen(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl BinlogServer {
    /// Binds `config.addr` and starts accepting.
    pub fn start(
        config: ServerConfig,
        store: Arc<Store>,
        fallback_version: String,
    ) -> Result<BinlogServer, StartError> {
        let auth = auth::AuthState::new(config.auth_plugin, config.rsa_private_key_path.as_deref())
            .map_err(StartError::Keys)?;
        let listener = TcpListener::bind(&config.addr).map_err(StartError::Listen)?;
        let local_addr = listener.local_addr().map_err(StartError::Listen)?;
        let shared = Arc::new(Shared {
            store,
            config,
            stop: AtomicBool::new(false),
            slaves: Mutex::new(BTreeMap::new()),
            sockets: Mutex::new(BTreeMap::new()),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            fallback_version,
            auth,
        });
        let s = shared.clone();
        let handle = thread::Builder::new()
            .name("binlog-listen".into())
            .spawn(move || accept_loop(listener, s))
            .map_err(StartError::Listen)?;
        log::info!(
            "binlog server listening on {local_addr} (replicas log in with {})",
            shared.auth.plugin().name()
        );
        Ok(BinlogServer {
            shared,
            local_addr,
            listener: Some(handle),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// The login plugin's state: caching_sha2_password's fast and full login counts.
    pub fn auth(&self) -> &auth::AuthState {
        &self.shared.auth
    }

    /// Every dumping replica.
    pub fn slaves(&self) -> Vec<SlaveSnapshot> {
        self.shared
            .slaves
            .lock()
            .expect("slaves lock")
            .values()
            .map(|s| {
                let (file, position) = s.progress.position.lock().expect("progress lock").clone();
                SlaveSnapshot {
                    server_id: s.server_id,
                    host: s.host.clone(),
                    port: s.port,
                    mode: s.mode,
                    file,
                    position,
                    bytes_sent: s.progress.bytes_sent.load(Ordering::Relaxed),
                    connected_since: s.connected_since,
                }
            })
            .collect()
    }

    /// Stops accepting, closes every connection, and joins the listener.
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for s in self.shared.slaves.lock().expect("slaves lock").values() {
            s.ended.store(true, Ordering::SeqCst);
        }
        // Wake the blocking accept with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.local_addr, Duration::from_secs(1));
        for sock in self.shared.sockets.lock().expect("sockets lock").values() {
            let _ = sock.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.listener.take() {
            let _ = h.join();
        }
        // Connection threads end once their sockets are shut down; wait for them, bounded,
        // so that a new server started right after sees none of the old sessions.
        let deadline = std::time::Instant::now() + Duration::from_millis(SERVER_STOP_WAIT_MS);
        while self.shared.active.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(10));
        }
        let left = self.shared.active.load(Ordering::SeqCst);
        if left > 0 {
            log::warn!(
                "binlog server on {}: {left} connections still closing",
                self.local_addr
            );
        }
        log::info!("binlog server on {} stopped", self.local_addr);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("binlog server: accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer = match stream.peer_addr() {
            Ok(p) => p,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let timeout = Some(Duration::from_millis(DOWNSTREAM_IO_TIMEOUT_MS));
        let _ = stream.set_read_timeout(timeout);
        let _ = stream.set_write_timeout(timeout);
        let max = shared.config.max_connections;
        if shared.active.fetch_add(1, Ordering::SeqCst) >= max {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            refuse_too_many(stream, peer, max);
            continue;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            shared
                .sockets
                .lock()
                .expect("sockets lock")
                .insert(id, clone);
        }
        // A stop that ran between accept and the insert above did not see this socket.
        if shared.stop.load(Ordering::SeqCst) {
            shared.sockets.lock().expect("sockets lock").remove(&id);
            shared.active.fetch_sub(1, Ordering::SeqCst);
            break;
        }
        let s = shared.clone();
        let spawned = thread::Builder::new()
            .name(format!("binlog-conn-{id}"))
            .spawn(move || {
                if let Err(e) = session::serve(stream, peer, id, &s) {
                    log::debug!("binlog server: connection {id} from {peer} ended: {e}");
                }
                s.sockets.lock().expect("sockets lock").remove(&id);
                s.active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            log::error!("binlog server: cannot start a connection thread: {e}");
            shared.sockets.lock().expect("sockets lock").remove(&id);
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn refuse_too_many(mut stream: TcpStream, peer: SocketAddr, max: usize) {
    log::warn!("binlog server: refusing {peer}: {max} connections already");
    let err = ErrPacket {
        code: ER_CON_COUNT_ERROR,
        sql_state: *b"08004",
        message: "Too many connections".into(),
    };
    let mut out = Vec::new();
    crate::mysql::packet::encode_packets(&err.encode(), 0, &mut out);
    let _ = stream.write_all(&out);
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn node_server_uuids_are_stable_distinct_and_well_formed() {
        let a = node_server_uuid(7, 1);
        assert_eq!(
            a,
            node_server_uuid(7, 1),
            "the same node gets the same uuid"
        );
        assert_ne!(a, node_server_uuid(7, 2));
        assert_ne!(a, node_server_uuid(8, 1));
        let bytes = crate::binlog::gtid::parse_uuid(&a).unwrap();
        assert_eq!(crate::binlog::gtid::format_uuid(&bytes), a);
        assert_eq!(bytes[6] >> 4, 5, "version 5 layout");
        assert_eq!(bytes[8] >> 6, 2, "RFC 4122 variant");
    }

    /// A store holding the MySQL-flavoured kingbus chain (entries of at most 300 bytes).
    fn kingbus_store(dir: &std::path::Path) -> Store {
        use crate::store::index::mysql_testdata::{kingbus_stream, KINGBUS};
        let (store, _) = Store::open(dir).unwrap();
        store
            .append(crate::store::testdata::ingest(
                &kingbus_stream(&KINGBUS),
                300,
            ))
            .unwrap();
        store
    }

    /// A server on a free loopback port for the account repl/secret.
    fn start_server(store: Store, max_connections: usize) -> BinlogServer {
        let config = ServerConfig {
            addr: "127.0.0.1:0".into(),
            user: "repl".into(),
            password: "secret".into(),
            max_connections,
            server_uuid: node_server_uuid(1, 2),
            auth_plugin: auth::AuthPlugin::default(),
            rsa_private_key_path: None,
        };
        BinlogServer::start(config, Arc::new(store), "8.0.0".into()).unwrap()
    }

    /// A `mysql` crate connection to `server` as repl.
    fn connect(server: &BinlogServer) -> mysql::Conn {
        let opts = mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(server.local_addr().port())
            .user(Some("repl"))
            .pass(Some("secret"))
            .prefer_socket(false)
            .max_allowed_packet(Some(1 << 30))
            .read_timeout(Some(Duration::from_secs(30)));
        mysql::Conn::new(opts).unwrap()
    }

    /// A client that never set @master_binlog_checksum is refused a dump of a binlog with
    /// CRC32 (it would read each checksum as event body), as MariaDB and MySQL refuse it;
    /// one that set it (any value), or a store with nothing yet, is not. Which clients set
    /// it: `session::dump_options`.
    #[test]
    fn a_client_not_aware_of_checksums_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (empty, _) = Store::open(dir.path()).unwrap();
        assert_eq!(dump::checksum_refusal(&empty, false), None);

        let dir = tempfile::tempdir().unwrap();
        let store = kingbus_store(dir.path());
        let refusal = dump::checksum_refusal(&store, false).unwrap();
        assert!(refusal.contains("checksum"), "{refusal}");
        assert_eq!(dump::checksum_refusal(&store, true), None);

        // Aware: any value of @master_binlog_checksum (or @source_binlog_checksum).
        let server = start_server(store, 2);
        let aware = |vars: &query::UserVars| {
            let start = dump::DumpStart::FilePos {
                file: String::new(),
                pos: 4,
            };
            session::dump_options(&server.shared, vars, start, 0, 1).checksum_aware
        };
        let mut vars = query::UserVars::new();
        assert!(!aware(&vars));
        for value in ["CRC32", "NONE", "ALL"] {
            vars.insert("master_binlog_checksum".into(), Some(value.into()));
            assert!(aware(&vars), "{value}");
        }
        vars.clear();
        vars.insert("source_binlog_checksum".into(), Some("CRC32".into()));
        assert!(aware(&vars));
    }

    /// A replica that dumps again under the same server id ends its older dump (a
    /// connection it no longer reads), as a master does; another server id is left alone.
    #[test]
    fn a_second_dump_of_the_same_replica_ends_the_first() {
        use crate::store::index::mysql_testdata::KINGBUS;

        let dir = tempfile::tempdir().unwrap();
        let server = start_server(kingbus_store(dir.path()), 8);
        // Blocking dumps from the start of the first file: they stay open once caught up.
        let dump = |server_id: u32| {
            let request = mysql::BinlogRequest::new(server_id)
                .with_filename(KINGBUS[0].as_bytes().to_vec())
                .with_pos(4u64);
            let mut stream = connect(&server).get_binlog_stream(request).unwrap();
            stream.next().unwrap().unwrap();
            stream
        };
        let wait_slaves = |want: Vec<u32>| {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let mut ids: Vec<u32> = server.slaves().iter().map(|s| s.server_id).collect();
                ids.sort_unstable();
                if ids == want {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "slaves {ids:?}, want {want:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let _first = dump(77);
        let _other = dump(78);
        wait_slaves(vec![77, 78]);
        let _again = dump(77);
        wait_slaves(vec![77, 78]);
        drop(server);
    }

    /// The `mysql` crate, as an independent client, dumps the MySQL-flavoured kingbus chain
    /// by COM_BINLOG_DUMP_GTID over a loopback socket and gets exactly the transactions
    /// after its set, across the ROTATE.
    #[test]
    fn the_mysql_crate_dumps_mysql_data_by_gtid() {
        use crate::store::index::mysql_testdata::kingbus_uuid;
        use mysql::prelude::Queryable;

        let dir = tempfile::tempdir().unwrap();
        let server = start_server(kingbus_store(dir.path()), 4);
        let mut conn = connect(&server);
        let uuid: Option<String> = conn.query_first("SELECT @@GLOBAL.SERVER_UUID").unwrap();
        assert_eq!(uuid, Some(node_server_uuid(1, 2)));
        let mode: Option<String> = conn.query_first("SELECT @@GLOBAL.GTID_MODE").unwrap();
        assert_eq!(mode.as_deref(), Some("ON"));
        let request = mysql::BinlogRequest::new(77)
            .with_use_gtid(true)
            .with_sids(vec![format!(
                "{}:1-11805",
                crate::binlog::gtid::format_uuid(&kingbus_uuid())
            )
            .parse()
            .unwrap()])
            .with_flags(mysql::BinlogDumpFlags::BINLOG_DUMP_NON_BLOCK);
        let stream = conn.get_binlog_stream(request).unwrap();
        let mut gnos = Vec::new();
        let mut rotates = 0;
        for event in stream {
            let event = event.unwrap();
            match event.header().event_type_raw() {
                33 => {
                    let gtid = event
                        .read_event::<mysql::binlog::events::GtidEvent>()
                        .unwrap();
                    assert_eq!(gtid.sid(), kingbus_uuid());
                    gnos.push(gtid.gno());
                }
                4 => rotates += 1,
                _ => {}
            }
        }
        assert_eq!(gnos, (11806..=11820).collect::<Vec<u64>>());
        assert_eq!(rotates, 3, "artificial, real, artificial");
        server.stop();
    }
}
