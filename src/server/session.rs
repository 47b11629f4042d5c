//! One downstream connection: handshake and authentication (in [`super::auth`]), then the
//! command loop (queries answered by [`super::query`], COM_REGISTER_SLAVE remembered,
//! COM_BINLOG_DUMP and COM_BINLOG_DUMP_GTID handed to [`super::dump`]).
//!
//! A protocol error ends this connection only; it must never affect another one.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::unix_now;
use crate::limits::{
    CLIENT_COMMAND_MAX, DOWNSTREAM_HEARTBEAT_DEFAULT_MS, DOWNSTREAM_HEARTBEAT_MIN_MS,
    DOWNSTREAM_HEARTBEAT_OFF_WAIT_MS, USER_VARS_MAX, USER_VAR_BYTES_MAX,
};

/// The error a session over its user-variable budget gets (ER_OUT_OF_RESOURCES); the
/// connection ends after it.
const ER_TOO_MANY_USER_VARS: u16 = 1041;
use crate::binlog::Flavour;
use crate::mysql::command::{
    Command, BINLOG_DUMP_NON_BLOCK, BINLOG_SEND_ANNOTATE_ROWS_EVENT, USE_HEARTBEAT_EVENT_V2,
};
use crate::mysql::handshake;
use crate::mysql::resultset::{encode_text_resultset, ErrPacket, OkPacket, ER_UNKNOWN_COM_ERROR};
use crate::net::conn::PacketConn;
use crate::net::NetError;

use super::dump::{self, DumpOptions, DumpStart};
use super::query::{self, Reply, UserVars};
use super::{Shared, SlaveEntry};

const STATUS_AUTOCOMMIT: u16 = handshake::SERVER_STATUS_AUTOCOMMIT;

/// Serves one connection until it ends.
pub fn serve<S: Read + Write>(
    stream: S,
    peer: SocketAddr,
    conn_id: u64,
    shared: &Arc<Shared>,
) -> Result<(), NetError> {
    let mut conn = PacketConn::new(stream, CLIENT_COMMAND_MAX);
    let user = super::auth::authenticate(&mut conn, peer, conn_id, shared)?;
    log::debug!("binlog server: {user}@{peer} authenticated (connection {conn_id})");
    let mut vars = UserVars::new();
    let mut registered: Option<(u32, String, u16)> = None;
    loop {
        if shared.stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        conn.reset_seq();
        let packet = match conn.read_packet() {
            Ok(p) => p,
            Err(NetError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let command = match Command::decode(&packet) {
            Ok(c) => c,
            Err(e) => {
                send_err(
                    &mut conn,
                    ER_UNKNOWN_COM_ERROR,
                    "08S01",
                    &format!("bad command: {e}"),
                )?;
                continue;
            }
        };
        match command {
            Command::Quit => return Ok(()),
            Command::Ping | Command::InitDb(_) => send_ok(&mut conn)?,
            Command::Query(sql) => {
                let view = shared.view();
                let reply = query::answer(&sql, &mut vars, &view);
                if vars.len() > USER_VARS_MAX
                    || vars
                        .values()
                        .flatten()
                        .any(|v| v.len() > USER_VAR_BYTES_MAX)
                {
                    send_err(
                        &mut conn,
                        ER_TOO_MANY_USER_VARS,
                        "HY000",
                        &format!(
                            "ferrobus keeps at most {USER_VARS_MAX} user variables of at most \
                             {USER_VAR_BYTES_MAX} bytes per connection"
                        ),
                    )?;
                    return Ok(());
                }
                send_reply(&mut conn, reply)?;
            }
            Command::RegisterSlave(r) => {
                let host = if r.host.is_empty() {
                    peer.ip().to_string()
                } else {
                    r.host.clone()
                };
                registered = Some((r.server_id, host, r.port));
                send_ok(&mut conn)?;
            }
            Command::BinlogDump(d) => {
                let start = match vars.get("slave_connect_state").cloned().flatten() {
                    Some(state) => DumpStart::MariaGtid(state),
                    None => DumpStart::FilePos {
                        // A C string to the master: a trailing NUL is not part of the name.
                        file: d.binlog_filename.trim_end_matches('\0').to_string(),
                        pos: u64::from(d.binlog_pos),
                    },
                };
                let opts = dump_options(shared, &vars, start, d.flags, d.server_id);
                return run_dump(
                    &mut conn,
                    peer,
                    conn_id,
                    d.server_id,
                    &registered,
                    opts,
                    shared,
                );
            }
            Command::BinlogDumpGtid(d) => {
                let start = DumpStart::MysqlGtid {
                    sid_data: d.sid_data.clone(),
                    // Some replicas end the name with its C string's NUL.
                    file: d.binlog_filename.trim_end_matches('\0').to_string(),
                    pos: d.binlog_pos,
                };
                let opts = dump_options(shared, &vars, start, d.flags, d.server_id);
                return run_dump(
                    &mut conn,
                    peer,
                    conn_id,
                    d.server_id,
                    &registered,
                    opts,
                    shared,
                );
            }
            Command::Other(code) => send_err(
                &mut conn,
                ER_UNKNOWN_COM_ERROR,
                "08S01",
                &format!("Unknown command {code:#04x}"),
            )?,
        }
    }
}

/// How to serve a COM_BINLOG_DUMP or COM_BINLOG_DUMP_GTID with `flags` from replica
/// `replica_id`. The flags mean what MySQL's do for a GTID dump (a MySQL-only command) and
/// for a position dump of a stored MySQL binlog; MariaDB's otherwise (the same bit asks
/// MySQL for HEARTBEAT_LOG_EVENT_V2 and MariaDB for ANNOTATE_ROWS events).
pub(super) fn dump_options(
    shared: &Shared,
    vars: &UserVars,
    start: DumpStart,
    flags: u16,
    replica_id: u32,
) -> DumpOptions {
    let view = shared.view();
    let mysql = matches!(start, DumpStart::MysqlGtid { .. }) || view.flavour == Flavour::MySql;
    DumpOptions {
        start,
        // mysqlbinlog asks MySQL for a non-blocking dump with server id 0.
        non_blocking: flags & BINLOG_DUMP_NON_BLOCK != 0 || (mysql && replica_id == 0),
        send_annotate_rows: !mysql && flags & BINLOG_SEND_ANNOTATE_ROWS_EVENT != 0,
        heartbeat_period: heartbeat_period(vars),
        artificial_crc: artificial_crc(vars),
        checksum_aware: source_or_master_var(vars, "binlog_checksum").is_some(),
        server_id: view.server_id,
        heartbeat_v2: mysql && flags & USE_HEARTBEAT_EVENT_V2 != 0,
    }
}

/// Serves the dump; the replica is known by the id it registered with, else by the one in
/// its dump command (`replica_id`).
fn run_dump<S: Read + Write>(
    conn: &mut PacketConn<S>,
    peer: SocketAddr,
    conn_id: u64,
    replica_id: u32,
    registered: &Option<(u32, String, u16)>,
    opts: DumpOptions,
    shared: &Arc<Shared>,
) -> Result<(), NetError> {
    let server_id = registered.as_ref().map_or(replica_id, |r| r.0);
    let progress = Arc::new(dump::DumpProgress::default());
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (host, port) = registered
        .as_ref()
        .map_or((peer.ip().to_string(), peer.port()), |r| (r.1.clone(), r.2));
    let (mode, from) = match &opts.start {
        DumpStart::MariaGtid(state) => ("gtid", format!("GTID state '{state}'")),
        DumpStart::MysqlGtid { file, pos, .. } if file.is_empty() => {
            ("gtid", format!("its GTID set (auto-position, {pos})"))
        }
        DumpStart::MysqlGtid { file, pos, .. } => ("gtid", format!("its GTID set, {file}:{pos}")),
        DumpStart::FilePos { file, pos } => ("file_pos", format!("{file}:{pos}")),
    };
    log::info!("binlog server: replica server id {server_id} at {peer} dumps from {from}");
    shared.register(
        conn_id,
        SlaveEntry {
            server_id,
            host,
            port,
            mode,
            progress: progress.clone(),
            connected_since: unix_now(),
            ended: ended.clone(),
        },
    );
    // A server stopped between the check and the registration does not see this dump.
    if shared.stop.load(std::sync::atomic::Ordering::SeqCst) {
        ended.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let result = dump::run(conn, &shared.store, &opts, &progress, &ended);
    shared.unregister(conn_id);
    match result {
        Ok(()) => Ok(()),
        Err(dump::DumpError::Net(e)) => Err(e),
        Err(dump::DumpError::Cut(message)) => {
            log::warn!(
                "binlog server: dump for server id {server_id} at {peer} cut inside an event, \
                 closing the connection: {message}"
            );
            Err(NetError::Unexpected("a dump cut inside an event"))
        }
        Err(e) => {
            log::warn!("binlog server: dump for server id {server_id} at {peer} ended: {e}");
            Ok(())
        }
    }
}

/// A user variable a replica sets under MySQL 8.0.26+'s name or the old one.
fn source_or_master_var(vars: &UserVars, name: &str) -> Option<String> {
    vars.get(&format!("source_{name}"))
        .or_else(|| vars.get(&format!("master_{name}")))
        .cloned()
        .flatten()
}

fn heartbeat_period(vars: &UserVars) -> Duration {
    let ns =
        source_or_master_var(vars, "heartbeat_period").and_then(|v| v.trim().parse::<f64>().ok());
    match ns {
        // 0: the replica turned heartbeats off; wake only for new data (and a rare check).
        Some(ns) if ns <= 0.0 => Duration::from_millis(DOWNSTREAM_HEARTBEAT_OFF_WAIT_MS),
        Some(ns) => Duration::from_millis(((ns / 1e6) as u64).max(DOWNSTREAM_HEARTBEAT_MIN_MS)),
        None => Duration::from_millis(DOWNSTREAM_HEARTBEAT_DEFAULT_MS),
    }
}

fn artificial_crc(vars: &UserVars) -> bool {
    match source_or_master_var(vars, "binlog_checksum") {
        Some(v) => !v.eq_ignore_ascii_case("none") && !v.is_empty(),
        None => false,
    }
}

pub(super) fn send_ok<S: Read + Write>(conn: &mut PacketConn<S>) -> Result<(), NetError> {
    let ok = OkPacket {
        affected_rows: 0,
        last_insert_id: 0,
        status_flags: STATUS_AUTOCOMMIT,
        warnings: 0,
        info: String::new(),
    };
    conn.write_packet(&ok.encode())?;
    conn.flush()
}

pub(super) fn send_err<S: Read + Write>(
    conn: &mut PacketConn<S>,
    code: u16,
    state: &str,
    message: &str,
) -> Result<(), NetError> {
    let mut sql_state = [b'H', b'Y', b'0', b'0', b'0'];
    if state.len() == 5 {
        sql_state.copy_from_slice(state.as_bytes());
    }
    let err = ErrPacket {
        code,
        sql_state,
        message: message.to_string(),
    };
    conn.write_packet(&err.encode())?;
    conn.flush()
}

fn send_reply<S: Read + Write>(conn: &mut PacketConn<S>, reply: Reply) -> Result<(), NetError> {
    match reply {
        Reply::Ok => send_ok(conn),
        Reply::Err { code, message } => {
            let state = if code == crate::mysql::resultset::ER_PARSE_ERROR {
                "42000"
            } else {
                "HY000"
            };
            send_err(conn, code, state, &message)
        }
        Reply::Rows { columns, rows } => {
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            for payload in encode_text_resultset(&names, &rows, false) {
                conn.write_packet_no_flush(&payload)?;
            }
            conn.flush()
        }
    }
}
