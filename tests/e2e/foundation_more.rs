//! More of issue 2's end-to-end tests, for what `foundation.rs` does not cover: start points
//! on a fresh node (a GTID, a file and position), the configured connection limit, heartbeats
//! to an idle replica, the syncer's pre-checks and connection errors, stopped parts staying
//! stopped across a restart, and `ferrobus ctl` against a real node.
//!
//! Same rules as `foundation.rs`: real MariaDB servers and real ferrobus processes on free
//! ports of 127.0.0.1, everything stopped by pid when a test ends, logs printed on failure,
//! no timing assertions (bounded waits only), small loads so each test takes seconds.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::abuse::request_missing_gtid;
use crate::harness::clients::mysql_connect;
use crate::harness::clients::{ferro_source, node_binary_logs};
use crate::harness::node::{run_ferrobus, run_ferrobus_ok};
use crate::harness::util::{fail, normalize_gtid_list};
use crate::harness::wire::{Outcome, RawConn};
use crate::harness::*;

const SYNCER_ID: u32 = 101;
const MASTER_ID: u32 = 1;
const REPLICA_ID: u32 = 2;
/// Bound for state changes that need a reconnect or two (backoff tops out at 5 s).
const STATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for a short node sync or replica catch-up after a small write.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

fn master_source(master: &MariaDb) -> Source {
    Source {
        port: master.port(),
        user: REPL_USER.to_string(),
        password: REPL_PASSWORD.to_string(),
    }
}

fn syncer_body(master_addr: &str, password: &str) -> Value {
    json!({
        "syncer_id": SYNCER_ID,
        "mysql_addr": master_addr,
        "mysql_user": REPL_USER,
        "mysql_password": password,
    })
}

/// One event of a dump, as far as two servers must agree on it. Artificial events
/// (log_pos 0) carry the sender's server id, so theirs is left out.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ev {
    file: String,
    type_code: u8,
    log_pos: u32,
    size: u32,
    server_id: Option<u32>,
}

/// A non-blocking COM_BINLOG_DUMP by file and position with the `mysql` crate: Ok(events up
/// to the end of what the server has, heartbeats left out), or Err((code, message)) when the
/// server refused with an ERR packet.
fn dump_file_pos(
    src: &Source,
    file: &str,
    pos: u64,
) -> Result<std::result::Result<Vec<Ev>, (u16, String)>> {
    use mysql::prelude::Queryable;
    let mut conn = mysql_connect(src, Duration::from_secs(30))?;
    conn.query_drop("SET @mariadb_slave_capability=4")?;
    let request = mysql::BinlogRequest::new(4400)
        .with_filename(file.as_bytes())
        .with_pos(pos)
        .with_flags(mysql::BinlogDumpFlags::BINLOG_DUMP_NON_BLOCK);
    let stream = match conn.get_binlog_stream(request) {
        Ok(stream) => stream,
        Err(mysql::Error::MySqlError(e)) => return Ok(Err((e.code, e.message))),
        Err(e) => return fail(format!("dump {file}:{pos} on port {}: {e}", src.port)),
    };
    let mut current = file.to_string();
    let mut events = Vec::new();
    for event in stream {
        let event = match event {
            Ok(event) => event,
            Err(mysql::Error::MySqlError(e)) if events.is_empty() => {
                return Ok(Err((e.code, e.message)))
            }
            Err(e) => {
                return fail(format!(
                    "dump {file}:{pos} on port {} after {} events: {e}",
                    src.port,
                    events.len()
                ))
            }
        };
        let h = event.header();
        if h.event_type_raw() == 27 {
            continue; // HEARTBEAT: not content
        }
        events.push(Ev {
            file: current.clone(),
            type_code: h.event_type_raw(),
            log_pos: h.log_pos(),
            size: h.event_size(),
            server_id: (h.log_pos() != 0).then_some(h.server_id()),
        });
        if h.event_type_raw() == 4 {
            if let Ok(rotate) = event.read_event::<mysql::binlog::events::RotateEvent>() {
                current = rotate.name().into_owned();
            }
        }
    }
    Ok(Ok(events))
}

/// A dump that must succeed.
fn dump_ok(src: &Source, file: &str, pos: u64) -> Vec<Ev> {
    match dump_file_pos(src, file, pos).unwrap() {
        Ok(events) => events,
        Err((code, message)) => {
            panic!(
                "dump {file}:{pos} on port {}: ERR {code} {message}",
                src.port
            )
        }
    }
}

/// A dump that must be refused with ERR 1236; returns the message.
fn dump_refused(src: &Source, file: &str, pos: u64) -> String {
    match dump_file_pos(src, file, pos).unwrap() {
        Err((1236, message)) => message,
        Err((code, message)) => panic!(
            "dump {file}:{pos} on port {}: expected ERR 1236, got ERR {code} {message}",
            src.port
        ),
        Ok(events) => panic!(
            "dump {file}:{pos} on port {}: expected ERR 1236, got {} events: {:?}",
            src.port,
            events.len(),
            &events[..events.len().min(5)]
        ),
    }
}

/// The first event of a dump that is file content (not the artificial ROTATE, not the FDE
/// copy): where the dump really began.
fn first_content(events: &[Ev]) -> Option<&Ev> {
    events
        .iter()
        .find(|e| e.log_pos != 0 && e.type_code != 15 && e.type_code != 4)
}

/// Asserts that ferrobus and the master serve the same events from `file`:`pos`.
fn assert_same_dump(master: &MariaDb, server_port: u16, file: &str, pos: u64) -> Vec<Ev> {
    let from_master = dump_ok(&master_source(master), file, pos);
    let from_ferrobus = dump_ok(&ferro_source(server_port), file, pos);
    assert!(
        first_content(&from_master).is_some(),
        "master dump from {file}:{pos} has content: {from_master:?}"
    );
    if from_master != from_ferrobus {
        let at = from_master
            .iter()
            .zip(&from_ferrobus)
            .position(|(a, b)| a != b)
            .unwrap_or(from_master.len().min(from_ferrobus.len()));
        panic!(
            "dump from {file}:{pos}: event {at} differs ({} vs {} events): master {:?}, \
             ferrobus {:?}",
            from_master.len(),
            from_ferrobus.len(),
            from_master.get(at),
            from_ferrobus.get(at)
        );
    }
    from_ferrobus
}

/// SHOW BINLOG EVENTS IN `file` on the master: (Pos, Event_type, Info) per event.
fn binlog_events(master: &MariaDb, file: &str) -> Vec<(u64, String, String)> {
    master
        .query_maps(&format!("SHOW BINLOG EVENTS IN '{file}'"))
        .unwrap()
        .into_iter()
        .map(|row| {
            let pos = row["Pos"].parse().unwrap();
            (pos, row["Event_type"].clone(), row["Info"].clone())
        })
        .collect()
}

/// The position of the GTID event that starts transaction `gtid` in `file` of the master.
fn gtid_event_pos(master: &MariaDb, file: &str, gtid: &str) -> u64 {
    let events = binlog_events(master, file);
    events
        .iter()
        .find(|(_, kind, info)| kind == "Gtid" && info.split_whitespace().last() == Some(gtid))
        .map(|(pos, _, _)| *pos)
        .unwrap_or_else(|| panic!("no Gtid event for {gtid} in {file}: {events:?}"))
}

/// "0-1-7" → ("0-1", 7)
fn split_gtid(gtid: &str) -> (String, u64) {
    let (prefix, seq) = gtid.rsplit_once('-').expect("a GTID domain-server-seq");
    (prefix.to_string(), seq.parse().expect("a GTID seq_no"))
}

/// A fresh node whose syncer starts at a GTID in the middle of the master's second binlog
/// file: the node stores only what comes after it (its first file is the master's second,
/// and a dump from the second file's start is refused), a MariaDB replica whose
/// gtid_slave_pos is that GTID ends equal to the master for the tables created after it, a
/// dump from an older GTID is refused as purged, and a start point on a node that already
/// holds binlog is a conflict (409).
#[test]
fn syncer_starts_at_a_gtid_in_the_middle() {
    let work = WorkDir::new("start-gtid").unwrap();
    let master = MariaDb::start("start-gtid-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    master
        .sql(
            "CREATE DATABASE early;
             CREATE TABLE early.t (id INT PRIMARY KEY, v VARCHAR(20));
             INSERT INTO early.t VALUES (1, 'a');
             INSERT INTO early.t VALUES (2, 'b');
             FLUSH BINARY LOGS;
             INSERT INTO early.t VALUES (3, 'c');
             INSERT INTO early.t VALUES (4, 'd');",
        )
        .unwrap();
    let start_gtid = master.gtid_binlog_pos().unwrap();
    let (prefix, seq) = split_gtid(&start_gtid);
    let next_gtid = format!("{prefix}-{}", seq + 1);
    master
        .sql(
            "CREATE DATABASE late;
             CREATE TABLE late.a (id INT PRIMARY KEY, v VARCHAR(20));
             INSERT INTO late.a VALUES (1, 'x'), (2, 'y');
             BEGIN; INSERT INTO late.a VALUES (3, 'z'); UPDATE late.a SET v = 'w' WHERE id = 1;
             COMMIT;
             FLUSH BINARY LOGS;
             CREATE TABLE late.b (id INT PRIMARY KEY, n BIGINT);
             INSERT INTO late.b VALUES (1, 10), (2, 20), (3, 30);
             DELETE FROM late.a WHERE id = 2;",
        )
        .unwrap();
    let master_files: Vec<String> = master.binary_log_names().unwrap();
    assert_eq!(master_files.len(), 3, "master files {master_files:?}");
    let second = master_files[1].clone();
    let first_stored_pos = gtid_event_pos(&master, &second, &next_gtid);

    let node = Node::start(&work.join("node")).unwrap();
    let mut body = syncer_body(&master.addr(), REPL_PASSWORD);
    body["gtid"] = json!(start_gtid);
    node.put_ok("/binlog/syncer/start", &body).unwrap();
    let server_port = free_port();
    node.start_server(server_port).unwrap();
    node.wait_synced_with(&master, SYNC_TIMEOUT).unwrap();
    let status = node.syncer_status().unwrap();
    eprintln!("syncer status after a start at {start_gtid}: {status}");
    assert_eq!(status["status"], "running", "{status}");

    // The node began in the master's second file, right after the start GTID.
    assert_eq!(
        node_binary_logs(server_port),
        master_files[1..].to_vec(),
        "the node's SHOW BINARY LOGS"
    );
    let message = dump_refused(&ferro_source(server_port), &second, 4);
    eprintln!("dump from {second}:4 refused: {message}");
    dump_refused(&ferro_source(server_port), &master_files[0], 4);
    let events = assert_same_dump(&master, server_port, &second, first_stored_pos);
    let first = first_content(&events).unwrap();
    assert_eq!(
        u64::from(first.log_pos - first.size),
        first_stored_pos,
        "the node's dump of {second} begins at the GTID after {start_gtid}: {events:?}"
    );

    // A GTID older than the start one is not on the node: ERR 1236 saying it was purged.
    let older = format!("{prefix}-{}", seq - 1);
    let message = request_missing_gtid(server_port, FERRO_USER, FERRO_PASSWORD, &older).unwrap();
    assert!(
        message.to_lowercase().contains("purged"),
        "ERR 1236 for {older} should mention purged: {message:?}"
    );

    // The node holds binlog now: a start point is a conflict.
    node.put_ok("/binlog/syncer/stop", &json!({})).unwrap();
    for start in [
        json!({"gtid": start_gtid}),
        json!({"binlog_file": second, "binlog_pos": first_stored_pos}),
    ] {
        let mut body = syncer_body(&master.addr(), REPL_PASSWORD);
        for (k, v) in start.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (code, reply) = node.api_put("/binlog/syncer/start", &body).unwrap();
        assert_eq!(
            code, 409,
            "start with {start} on a node holding binlog: {reply}"
        );
        assert!(reply["message"].is_string(), "{reply}");
    }
    assert_eq!(node.syncer_status().unwrap()["status"], "stopped");

    // A GTID replica positioned at the start GTID gets everything after it: the node
    // recorded the master's GTID state where its store begins (a start-state entry).
    let replica = MariaDb::start("start-gtid-replica", MariaDbOpts::server_id(REPLICA_ID)).unwrap();
    replica
        .sql(&format!("SET GLOBAL gtid_slave_pos = '{start_gtid}'"))
        .unwrap();
    let upstream = Upstream {
        port: server_port,
        user: FERRO_USER.to_string(),
        password: FERRO_PASSWORD.to_string(),
    };
    replica.replicate_from(&upstream, &ReplMode::Gtid).unwrap();
    replica
        .wait_caught_up_checking(&master, SYNC_TIMEOUT, &|| node.check_alive())
        .unwrap();
    assert_same_checksums(&master, &replica, "late").unwrap();
    assert_eq!(
        replica
            .sql_value(
                "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'early'"
            )
            .unwrap(),
        "0",
        "nothing from before the start GTID reached the replica"
    );
}

/// A fresh node whose syncer starts at `binlog_file` + `binlog_pos` (a transaction boundary
/// in the middle of the master's first file): the node's first stored position is that one
/// (a dump from it works and equals the master's; from position 4 or the event boundary
/// just before it, ERR 1236).
#[test]
fn syncer_starts_at_a_file_position_in_the_middle() {
    let work = WorkDir::new("start-filepos").unwrap();
    let master = MariaDb::start("start-filepos-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    master
        .sql(
            "CREATE DATABASE d;
             CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(20));
             INSERT INTO d.t VALUES (1, 'a');
             INSERT INTO d.t VALUES (2, 'b');
             INSERT INTO d.t VALUES (3, 'c');
             INSERT INTO d.t VALUES (4, 'd');",
        )
        .unwrap();
    let first_file = master.first_binlog().unwrap();
    let events = binlog_events(&master, &first_file);
    // The third transaction's GTID event from the end of what is there now.
    let gtids: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, (_, kind, _))| kind == "Gtid")
        .map(|(i, _)| i)
        .collect();
    assert!(gtids.len() >= 5, "transactions in {first_file}: {events:?}");
    let at = gtids[gtids.len() - 2];
    let start_pos = events[at].0;
    let before_pos = events[at - 1].0;
    master
        .sql(
            "INSERT INTO d.t VALUES (5, 'e');
             FLUSH BINARY LOGS;
             INSERT INTO d.t VALUES (6, 'f');",
        )
        .unwrap();

    let node = Node::start(&work.join("node")).unwrap();
    let mut body = syncer_body(&master.addr(), REPL_PASSWORD);
    body["binlog_file"] = json!(first_file);
    body["binlog_pos"] = json!(start_pos);
    node.put_ok("/binlog/syncer/start", &body).unwrap();
    let server_port = free_port();
    node.start_server(server_port).unwrap();
    node.wait_synced_with(&master, SYNC_TIMEOUT).unwrap();
    eprintln!(
        "syncer status after a start at {first_file}:{start_pos}: {}",
        node.syncer_status().unwrap()
    );

    let from_start = assert_same_dump(&master, server_port, &first_file, start_pos);
    let first = first_content(&from_start).unwrap();
    assert_eq!(
        u64::from(first.log_pos - first.size),
        start_pos,
        "the node's dump begins at {start_pos}: {from_start:?}"
    );
    assert_eq!(first.type_code, 162, "a GTID event first: {first:?}");
    let ferro = ferro_source(server_port);
    for pos in [4, before_pos] {
        let message = dump_refused(&ferro, &first_file, pos);
        eprintln!("dump from {first_file}:{pos} refused: {message}");
    }
    assert_eq!(node_binary_logs(server_port).len(), 2);

    // Holding binlog now, the node refuses another start point.
    node.put_ok("/binlog/syncer/stop", &json!({})).unwrap();
    let (code, reply) = node.api_put("/binlog/syncer/start", &body).unwrap();
    assert_eq!(code, 409, "start point on a node holding binlog: {reply}");
}

/// `[server] max_connections = 2` in a TOML config file: two connections are served, a
/// third gets ERR 1040 "Too many connections", and after one closes a new one gets in.
#[test]
fn max_connections_from_config_file() {
    let work = WorkDir::new("max-conn").unwrap();
    let config = work.join("ferrobus.toml");
    std::fs::write(&config, "[server]\nmax_connections = 2\n").unwrap();
    let node = Node::start_with_args(
        &work.join("node"),
        &["--config".to_string(), config.display().to_string()],
    )
    .unwrap();
    let port = free_port();
    node.start_server(port).unwrap();

    let login = || -> RawConn {
        let mut conn = RawConn::connect(port, Duration::from_secs(15)).unwrap();
        match conn.login(FERRO_USER, FERRO_PASSWORD).unwrap() {
            Ok(()) => conn,
            Err(outcome) => panic!("login on port {port}: {outcome:?}"),
        }
    };
    let refused = || {
        let mut conn = RawConn::connect(port, Duration::from_secs(15)).unwrap();
        match conn.outcome() {
            Outcome::Err { code, message } => {
                assert_eq!(code, 1040, "{message}");
                assert!(message.contains("Too many connections"), "{message:?}");
            }
            other => panic!("a connection past the limit: expected ERR 1040, got {other:?}"),
        }
    };
    let mut first = login();
    let mut second = login();
    refused();
    for conn in [&mut first, &mut second] {
        assert_eq!(conn.query("SELECT 1").unwrap(), Outcome::Other(1));
    }
    drop(first);
    // The server notices the close asynchronously: wait for a slot.
    let mut third = poll("a free connection slot", STATE_TIMEOUT, || {
        let mut conn = RawConn::connect(port, Duration::from_secs(15))?;
        match conn.read_greeting() {
            Ok(_) => {}
            Err(e) => return Ok(Poll::Pending(e.0)),
        }
        match conn.login(FERRO_USER, FERRO_PASSWORD)? {
            Ok(()) => Ok(Poll::Ready(conn)),
            Err(outcome) => fail(format!("login after a close: {outcome:?}")),
        }
    })
    .unwrap();
    assert_eq!(third.query("SELECT 1").unwrap(), Outcome::Other(1));
    refused();
    assert_eq!(second.query("SELECT 1").unwrap(), Outcome::Other(1));
}

/// A MariaDB replica with MASTER_HEARTBEAT_PERIOD=0.5 attached to an idle node receives
/// heartbeats (Slave_received_heartbeats grows) and stays connected.
#[test]
fn idle_replica_receives_heartbeats() {
    let work = WorkDir::new("heartbeat").unwrap();
    let master = MariaDb::start("heartbeat-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let node = Node::start(&work.join("node")).unwrap();
    node.start_syncer(&master, SYNCER_ID).unwrap();
    let server_port = free_port();
    node.start_server(server_port).unwrap();
    master
        .sql("CREATE DATABASE hb; CREATE TABLE hb.t (id INT PRIMARY KEY); INSERT INTO hb.t VALUES (1);")
        .unwrap();
    node.wait_synced_with(&master, SYNC_TIMEOUT).unwrap();

    let replica = MariaDb::start("heartbeat-replica", MariaDbOpts::server_id(REPLICA_ID)).unwrap();
    replica
        .sql(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={server_port},
               MASTER_USER='{FERRO_USER}', MASTER_PASSWORD='{FERRO_PASSWORD}',
               MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=0.5, MASTER_USE_GTID=slave_pos;
             START SLAVE;"
        ))
        .unwrap();
    replica
        .wait_caught_up_checking(&master, SYNC_TIMEOUT, &|| node.check_alive())
        .unwrap();
    let heartbeats = || -> u64 {
        replica
            .sql("SHOW STATUS LIKE 'Slave_received_heartbeats'")
            .unwrap()
            .split('\t')
            .nth(1)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Slave_received_heartbeats value"))
    };
    let before = heartbeats();
    wait_until(
        "Slave_received_heartbeats to grow by 3",
        STATE_TIMEOUT,
        || heartbeats() >= before + 3,
    )
    .unwrap();
    let status = replica.slave_status().unwrap();
    assert_eq!(
        status.get("Slave_IO_Running"),
        "Yes",
        "{}",
        status.summary()
    );
    assert_eq!(status.get("Last_IO_Errno"), "0", "{}", status.summary());
    let servers = node.get_ok("/binlog/server/status").unwrap();
    let slaves = servers["slaves"].as_array().cloned().unwrap_or_default();
    assert!(
        slaves.iter().any(|s| s["server_id"] == REPLICA_ID),
        "the replica is listed while idle: {servers}"
    );
}

/// Waits until the syncer reports status error or connecting with a last_error that
/// contains `needle` (case-insensitive); returns the status.
fn wait_syncer_error(node: &Node, needle: &str) -> Value {
    poll(
        &format!("syncer last_error mentioning {needle:?}"),
        STATE_TIMEOUT,
        || {
            node.check_alive()?;
            let status = node.syncer_status()?;
            let state = status["status"].as_str().unwrap_or("");
            if state == "stopped" || state == "running" {
                return fail(format!("syncer should be failing, status: {status}"));
            }
            let error = status["last_error"].as_str().unwrap_or("").to_lowercase();
            Ok(if error.contains(&needle.to_lowercase()) {
                Poll::Ready(status)
            } else {
                Poll::Pending(status.to_string())
            })
        },
    )
    .unwrap()
}

/// A syncer pointed at a MariaDB without a binary log reports the failed pre-check (status
/// error or connecting, last_error naming log_bin), stores nothing, and the node stays up.
#[test]
fn syncer_precheck_fails_without_log_bin() {
    let work = WorkDir::new("no-log-bin").unwrap();
    let opts = MariaDbOpts {
        log_bin: false,
        ..MariaDbOpts::server_id(MASTER_ID)
    };
    let master = MariaDb::start("no-log-bin-master", opts).unwrap();
    assert_eq!(master.sql_value("SELECT @@GLOBAL.log_bin").unwrap(), "0");
    let node = Node::start(&work.join("node")).unwrap();
    node.start_syncer(&master, SYNCER_ID).unwrap();
    let status = wait_syncer_error(&node, "log_bin");
    eprintln!("syncer against a master without log_bin: {status}");
    assert_eq!(status["events"], 0, "{status}");
    assert_eq!(status["last_binlog_file"], Value::Null, "{status}");
    assert_eq!(node.get_ok("/health").unwrap()["status"], "ok");
    node.put_ok("/binlog/syncer/stop", &json!({})).unwrap();
    assert_eq!(node.syncer_status().unwrap()["status"], "stopped");
}

/// Within this after a stop, the syncer has closed a connection that waits for a greeting
/// (well under its 30 s I/O timeout, which it must not wait for).
const STOP_BOUND: Duration = Duration::from_secs(10);

/// A wrong password shows as an access denial; a closed port as a connect error, retried
/// (a listener opened later on that port gets a connection from the syncer); pointed
/// correctly (stop + start), the syncer syncs.
#[test]
fn syncer_connect_errors_then_recovers() {
    let work = WorkDir::new("syncer-errors").unwrap();
    let master = MariaDb::start("syncer-errors-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    master
        .sql(
            "CREATE DATABASE e; CREATE TABLE e.t (id INT PRIMARY KEY); INSERT INTO e.t VALUES (1);",
        )
        .unwrap();
    let node = Node::start(&work.join("node")).unwrap();

    node.put_ok(
        "/binlog/syncer/start",
        &syncer_body(&master.addr(), "certainly-wrong"),
    )
    .unwrap();
    let began = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let status = wait_syncer_error(&node, "access denied");
    eprintln!("syncer with a wrong password: {status}");
    // The error carries its time (this machine's clock, which the node shares).
    let at = status["last_error_at"].as_u64().unwrap_or(0);
    assert!(
        at >= began,
        "last_error_at {at} is before the test began ({began}): {status}"
    );
    assert!(!status.to_string().contains("certainly-wrong"), "{status}");
    assert_eq!(status["events"], 0, "{status}");
    node.put_ok("/binlog/syncer/stop", &json!({})).unwrap();

    let closed_port = free_port();
    node.put_ok(
        "/binlog/syncer/start",
        &syncer_body(&format!("127.0.0.1:{closed_port}"), REPL_PASSWORD),
    )
    .unwrap();
    let status = wait_syncer_error(&node, "connect");
    eprintln!("syncer against a closed port: {status}");
    // It keeps trying: something listening there now gets a connection from it.
    let listener = TcpListener::bind(("127.0.0.1", closed_port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let accepted = poll("the syncer to retry the closed port", STATE_TIMEOUT, || {
        node.check_alive()?;
        match listener.accept() {
            Ok((stream, _)) => Ok(Poll::Ready(stream)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Ok(Poll::Pending(node.syncer_status()?.to_string()))
            }
            Err(e) => fail(format!("accept: {e}")),
        }
    })
    .unwrap();
    drop(listener);
    let status = node.syncer_status().unwrap();
    assert_ne!(status["status"], "stopped", "{status}");
    // What answers there never greets (a hung master): a stop closes the connection at
    // once, without waiting for the syncer's I/O timeout (30 s).
    let mut accepted = accepted;
    accepted.set_nonblocking(false).unwrap();
    accepted.set_read_timeout(Some(STOP_BOUND)).unwrap();
    std::thread::scope(|scope| {
        let stop = scope.spawn(|| node.put_ok("/binlog/syncer/stop", &json!({})));
        let mut byte = [0u8; 1];
        match std::io::Read::read(&mut accepted, &mut byte) {
            Ok(0) => {}
            other => panic!(
                "the syncer still held its connection to a silent master {STOP_BOUND:?} after the stop ({other:?}): the stop waited for the I/O timeout"
            ),
        }
        stop.join().unwrap().unwrap();
    });

    node.start_syncer(&master, SYNCER_ID).unwrap();
    node.wait_synced_with(&master, SYNC_TIMEOUT).unwrap();
    let status = node.syncer_status().unwrap();
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(
        normalize_gtid_list(status["executed_gtid_set"].as_str().unwrap_or("")),
        master.gtid_binlog_pos().unwrap(),
        "{status}"
    );
}

/// Whether a login on 127.0.0.1:`port` works right now.
fn server_answers(port: u16) -> bool {
    let Ok(mut conn) = RawConn::connect(port, Duration::from_secs(15)) else {
        return false;
    };
    matches!(conn.login(FERRO_USER, FERRO_PASSWORD), Ok(Ok(())))
}

/// A start whose admin or peer port is taken fails with a message naming the address, and
/// writes no cluster identity: the same data directory then starts under another name.
#[test]
fn a_start_on_a_taken_port_leaves_the_data_dir_unclaimed() {
    let work = WorkDir::new("taken-port").unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let data_dir = work.join("node");
    let data = data_dir.to_str().unwrap();
    let free = format!("127.0.0.1:{}", free_port());
    for (admin, peer, what) in [
        (taken_addr.as_str(), free.as_str(), "admin_addr"),
        (free.as_str(), taken_addr.as_str(), "peer_addr"),
    ] {
        let (code, _, stderr) = run_ferrobus(&[
            "serve",
            "--data-dir",
            data,
            "--name",
            "first",
            "--admin-addr",
            admin,
            "--peer-addr",
            peer,
        ])
        .unwrap();
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on {taken_addr} ({what}")),
            "{stderr}"
        );
        assert!(!data_dir.join("raft_id").exists(), "raft_id was written");
        assert!(!data_dir.join("log").exists(), "the raft log was created");
    }
    // The corrected start, under another name, is a clean one-node cluster.
    let peer = format!("127.0.0.1:{}", free_port());
    let node = Node::start_with_args(
        &data_dir,
        &[
            "--name".to_string(),
            "second".to_string(),
            "--peer-addr".to_string(),
            peer,
        ],
    )
    .unwrap();
    poll("the new node to list itself alone", STATE_TIMEOUT, || {
        let members = node.get_ok("/members")?;
        let names: Vec<String> = members
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok(if names == ["second"] {
            Poll::Ready(())
        } else {
            Poll::Pending(members.to_string())
        })
    })
    .unwrap();
    drop(taken);
}

/// `signal` (a clean stop: exit 0, and the log names the signal), then start again.
fn restart_cleanly(node: &mut Node, signal: libc::c_int, name: &str) {
    assert_eq!(node.stop_with(signal).unwrap(), Some(0), "{name} exit code");
    let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
    assert!(
        log.contains(&format!("received {name}")),
        "the log does not name {name}"
    );
    node.restart().unwrap();
}

/// A stopped syncer stays stopped across a restart (nothing new stored while the master
/// writes); a started binlog server resumes serving after a restart, a stopped one stays
/// stopped.
#[test]
fn stopped_parts_stay_stopped_across_restart() {
    let work = WorkDir::new("stay-stopped").unwrap();
    let master = MariaDb::start("stay-stopped-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let mut node = Node::start(&work.join("node")).unwrap();
    node.start_syncer(&master, SYNCER_ID).unwrap();
    let port = free_port();
    node.start_server(port).unwrap();
    Load::run(master.port(), LoadPlan::small()).unwrap();
    node.wait_synced_with(&master, SYNC_TIMEOUT).unwrap();

    node.put_ok("/binlog/syncer/stop", &json!({})).unwrap();
    let stopped = node.syncer_status().unwrap();
    assert_eq!(stopped["status"], "stopped", "{stopped}");
    Load::run(master.port(), LoadPlan::small()).unwrap();
    restart_cleanly(&mut node, libc::SIGTERM, "SIGTERM");
    // Give a wrongly resumed syncer the time to show itself: the server resumed (its
    // desired state says so) and answers, so the node has finished restoring.
    wait_until("the binlog server to resume", STATE_TIMEOUT, || {
        server_answers(port)
    })
    .unwrap();
    let after = node.syncer_status().unwrap();
    assert_eq!(after["status"], "stopped", "{after}");
    for field in ["last_binlog_file", "last_file_position", "events", "bytes"] {
        assert_eq!(
            after[field], stopped[field],
            "{field}: {stopped} vs {after}"
        );
    }
    let master_at = master.master_status().unwrap();
    assert_ne!(
        (
            after["last_binlog_file"].as_str().unwrap_or("").to_string(),
            after["last_file_position"].as_u64().unwrap_or(0)
        ),
        master_at,
        "the master has written more than the node holds"
    );
    let server = node.get_ok("/binlog/server/status").unwrap();
    assert_eq!(server["status"], "running", "{server}");

    node.put_ok("/binlog/server/stop", &json!({})).unwrap();
    assert!(!server_answers(port), "stopped server still answers");
    // SIGHUP (a closed terminal) stops it as cleanly.
    restart_cleanly(&mut node, libc::SIGHUP, "SIGHUP");
    let server = node.get_ok("/binlog/server/status").unwrap();
    assert_eq!(server["status"], "stopped", "{server}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on {port} after a restart with a stopped server"
    );
    assert_eq!(node.syncer_status().unwrap()["status"], "stopped");

    // Started again, both come back, and the syncer catches up from where it stopped.
    node.start_syncer(&master, SYNCER_ID).unwrap();
    node.start_server(port).unwrap();
    node.wait_synced_with(&master, SYNC_TIMEOUT).unwrap();
    assert!(server_answers(port));
}

/// `ferrobus ctl` against a real node: syncer start (its password from a file) / status
/// (text and --json), server start / status / stop, health; exit 1 on a conflict (409), 3
/// when nothing listens.
#[test]
fn ctl_drives_a_real_node() {
    let work = WorkDir::new("ctl").unwrap();
    let master = MariaDb::start("ctl-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    master
        .sql(
            "CREATE DATABASE c; CREATE TABLE c.t (id INT PRIMARY KEY); INSERT INTO c.t VALUES (1);",
        )
        .unwrap();
    let node = Node::start(&work.join("node")).unwrap();
    let admin = node.admin_addr();
    let master_addr = master.addr();
    let syncer_id = SYNCER_ID.to_string();
    // The password from a file (as `echo` writes it), so the master's login proves it read.
    let password_file = work.join("repl.pw");
    std::fs::write(&password_file, format!("{REPL_PASSWORD}\n")).unwrap();
    let password_file = password_file.to_str().unwrap().to_string();
    let start: Vec<&str> = vec![
        "ctl",
        "--admin",
        &admin,
        "syncer",
        "start",
        "--syncer-id",
        &syncer_id,
        "--mysql-addr",
        &master_addr,
        "--mysql-user",
        REPL_USER,
        "--mysql-password-file",
        &password_file,
    ];
    run_ferrobus_ok(&start).unwrap();
    node.wait_synced_with(&master, SYNC_TIMEOUT).unwrap();
    let (file, pos) = master.master_status().unwrap();

    let text = run_ferrobus_ok(&["ctl", "--admin", &admin, "syncer", "status"]).unwrap();
    assert!(text.contains(&file), "syncer status names {file}:\n{text}");
    assert!(text.contains(&pos.to_string()), "syncer status: {text}");
    assert!(text.contains("running"), "syncer status: {text}");
    assert!(!text.contains(REPL_PASSWORD), "syncer status: {text}");
    let json_text =
        run_ferrobus_ok(&["ctl", "--admin", &admin, "--json", "syncer", "status"]).unwrap();
    let reply: Value = serde_json::from_str(json_text.trim())
        .unwrap_or_else(|e| panic!("ctl --json output is not JSON ({e}): {json_text}"));
    assert_eq!(reply["message"], "success", "{reply}");
    assert_eq!(reply["data"]["last_binlog_file"], file.as_str(), "{reply}");
    assert_eq!(reply["data"]["last_file_position"], pos, "{reply}");

    // Starting what runs: the node answers 409, ctl exits 1 with the message on stderr.
    let (code, _, stderr) = run_ferrobus(&start).unwrap();
    assert_eq!(code, 1, "second syncer start: stderr {stderr}");
    assert!(stderr.contains("already"), "stderr: {stderr}");

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    run_ferrobus_ok(&[
        "ctl",
        "--admin",
        &admin,
        "server",
        "start",
        "--addr",
        &addr,
        "--user",
        FERRO_USER,
        "--password",
        FERRO_PASSWORD,
    ])
    .unwrap();
    let text = run_ferrobus_ok(&["ctl", "--admin", &admin, "server", "status"]).unwrap();
    assert!(text.contains("running") && text.contains(&addr), "{text}");
    assert!(!text.contains(FERRO_PASSWORD), "{text}");
    assert!(server_answers(port), "binlog server started by ctl answers");
    let json_text =
        run_ferrobus_ok(&["ctl", "--admin", &admin, "--json", "server", "status"]).unwrap();
    let reply: Value = serde_json::from_str(json_text.trim()).unwrap();
    assert_eq!(reply["data"]["status"], "running", "{reply}");
    run_ferrobus_ok(&["ctl", "--admin", &admin, "server", "stop"]).unwrap();
    let text = run_ferrobus_ok(&["ctl", "--admin", &admin, "server", "status"]).unwrap();
    assert!(text.contains("stopped"), "{text}");

    let text = run_ferrobus_ok(&["ctl", "--admin", &admin, "health"]).unwrap();
    assert!(text.contains("ok"), "{text}");
    let reply: Value = serde_json::from_str(
        run_ferrobus_ok(&["ctl", "--admin", &admin, "--json", "health"])
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(reply["data"]["status"], "ok", "{reply}");

    run_ferrobus_ok(&["ctl", "--admin", &admin, "syncer", "stop"]).unwrap();
    assert_eq!(node.syncer_status().unwrap()["status"], "stopped");

    // Nothing listening: exit 3.
    let closed = format!("127.0.0.1:{}", free_port());
    let (code, _, stderr) = run_ferrobus(&["ctl", "--admin", &closed, "health"]).unwrap();
    assert_eq!(code, 3, "ctl against a closed port: stderr {stderr}");
    assert!(!stderr.is_empty());
}
