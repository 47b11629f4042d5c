//! Issue 2's end-to-end tests: one ferrobus node between a real MariaDB master and real
//! replicas and binlog clients.
//!
//! Every test builds its own master, node (syncer + binlog server) and, where needed,
//! replica, on free ports of 127.0.0.1; everything is stopped by pid when the test ends,
//! and a failing test prints the logs of every process. Assertions compare what ferrobus
//! serves with what the master itself serves; no timing is asserted.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::abuse::{abuse_mysql_port, request_missing_gtid};
use crate::harness::clients::{
    compare_dirs, mariadb_binlog_raw, mysql_crate_dump, pyrepl_dump, DumpedEvent,
};
use crate::harness::util::normalize_gtid_list;
use crate::harness::*;

/// The server id ferrobus's syncer uses on the master.
const SYNCER_ID: u32 = 101;
const MASTER_ID: u32 = 1;
const REPLICA_ID: u32 = 2;

/// A master and a ferrobus node that syncs from it and serves on `server_port`.
/// Fields drop in order: node, master, then the work dir.
struct Setup {
    node: Node,
    master: MariaDb,
    server_port: u16,
    work: WorkDir,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let work = WorkDir::new(name).unwrap();
        let master =
            MariaDb::start(&format!("{name}-master"), MariaDbOpts::server_id(MASTER_ID)).unwrap();
        let node = Node::start(&work.join("node")).unwrap();
        node.start_syncer(&master, SYNCER_ID).unwrap();
        let server_port = free_port();
        node.start_server(server_port).unwrap();
        Setup {
            node,
            master,
            server_port,
            work,
        }
    }

    fn ferro_source(&self) -> Source {
        Source {
            port: self.server_port,
            user: FERRO_USER.to_string(),
            password: FERRO_PASSWORD.to_string(),
        }
    }

    fn master_source(&self) -> Source {
        Source {
            port: self.master.port(),
            user: REPL_USER.to_string(),
            password: REPL_PASSWORD.to_string(),
        }
    }

    /// Waits until the node has stored all the master has written.
    fn wait_node_synced(&self) {
        self.node
            .wait_synced_with(&self.master, CATCH_UP_TIMEOUT)
            .unwrap();
    }

    /// A new MariaDB replica of ferrobus (not of the master). The node is first given time
    /// to store what the master has, so the replica's start position exists on ferrobus.
    fn start_replica(&self, mode: ReplMode) -> MariaDb {
        self.wait_node_synced();
        let replica = MariaDb::start("replica", MariaDbOpts::server_id(REPLICA_ID)).unwrap();
        let upstream = Upstream {
            port: self.server_port,
            user: FERRO_USER.to_string(),
            password: FERRO_PASSWORD.to_string(),
        };
        replica.replicate_from(&upstream, &mode).unwrap();
        replica
    }

    /// Waits until `replica` has applied all the master wrote; fails at once when the node
    /// has exited or replication stopped with an error.
    fn wait_replica(&self, replica: &MariaDb) {
        replica
            .wait_caught_up_checking(&self.master, CATCH_UP_TIMEOUT, &|| self.node.check_alive())
            .unwrap();
    }

    fn first_file_mode(&self) -> ReplMode {
        ReplMode::FilePos {
            file: self.master.first_binlog().unwrap(),
            pos: 4,
        }
    }
}

/// The node's syncer reports the master's position and GTIDs, and never a password.
fn check_syncer_status(s: &Setup) {
    let status = s.node.syncer_status().unwrap();
    let text = status.to_string();
    assert!(
        !text.contains(REPL_PASSWORD),
        "syncer status shows a password: {text}"
    );
    assert_eq!(status["status"], "running", "syncer status: {text}");
    assert_eq!(status["syncer_id"], SYNCER_ID, "syncer status: {text}");
    assert_eq!(
        status["mysql_addr"],
        s.master.addr(),
        "syncer status: {text}"
    );
    let executed = normalize_gtid_list(status["executed_gtid_set"].as_str().unwrap_or(""));
    assert_eq!(
        executed,
        s.master.gtid_binlog_pos().unwrap(),
        "syncer status: {text}"
    );
}

/// The binlog server lists exactly one downstream replica, in `mode`.
fn check_server_lists_replica(s: &Setup, mode: &str) {
    let status = s.node.get_ok("/binlog/server/status").unwrap();
    let text = status.to_string();
    assert!(
        !text.contains(FERRO_PASSWORD),
        "server status shows a password: {text}"
    );
    assert_eq!(status["status"], "running", "server status: {text}");
    let slaves = status["slaves"].as_array().cloned().unwrap_or_default();
    let ours: Vec<&Value> = slaves
        .iter()
        .filter(|v| v["server_id"] == REPLICA_ID)
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "one entry for the replica in server status: {text}"
    );
    assert_eq!(ours[0]["mode"], mode, "server status: {text}");
}

fn replica_chain_test(name: &str, use_gtid: bool) {
    let s = Setup::new(name);
    let mode = if use_gtid {
        ReplMode::Gtid
    } else {
        s.first_file_mode()
    };
    let replica = s.start_replica(mode);
    Load::run(s.master.port(), LoadPlan::standard()).unwrap();
    s.wait_replica(&replica);
    assert_same_checksums(&s.master, &replica, LOAD_DB).unwrap();
    s.wait_node_synced();
    check_syncer_status(&s);
    check_server_lists_replica(&s, if use_gtid { "gtid" } else { "file_pos" });
}

/// Master → ferrobus → MariaDB replica with MASTER_USE_GTID=slave_pos: the full load
/// (transactions, DDL, FLUSH BINARY LOGS, 20 MB transaction, 17 MB row) arrives intact.
#[test]
fn gtid_replica_through_ferrobus_matches_master() {
    replica_chain_test("gtid-replica", true);
}

/// The same with a replica positioned by file and position (MASTER_USE_GTID=no, the
/// master's first binlog, position 4).
#[test]
fn file_pos_replica_through_ferrobus_matches_master() {
    replica_chain_test("filepos-replica", false);
}

/// `mariadb-binlog --read-from-remote-server --raw --to-last-log` yields the same files,
/// byte for byte, from ferrobus as from the master (no writes during the fetch).
#[test]
fn mariadb_binlog_raw_through_ferrobus_is_byte_identical() {
    let s = Setup::new("raw-fetch");
    Load::run(s.master.port(), LoadPlan::standard()).unwrap();
    s.wait_node_synced();
    let first = s.master.first_binlog().unwrap();
    let from_master = s.work.join("from-master");
    let from_ferrobus = s.work.join("from-ferrobus");
    mariadb_binlog_raw(&s.master_source(), &first, &from_master).unwrap();
    mariadb_binlog_raw(&s.ferro_source(), &first, &from_ferrobus).unwrap();
    let files = compare_dirs(&from_master, &from_ferrobus).unwrap();
    assert_eq!(files, s.master.binary_logs().unwrap().len());
}

/// kill -9 of ferrobus twice in the middle of the load, restart each time: the replica
/// ends equal to the master, with no duplicate key error and no gap. Then SIGTERM stops
/// the node cleanly (exit 0).
#[test]
fn kill9_ferrobus_mid_load_then_restart() {
    let mut s = Setup::new("kill9");
    let replica = s.start_replica(ReplMode::Gtid);
    let load = Load::spawn(s.master.port(), LoadPlan::paced());
    for fraction in [3, 2] {
        load.wait_progress(load.rounds() / fraction, CATCH_UP_TIMEOUT)
            .unwrap();
        s.node.kill9();
        s.node.restart().unwrap();
    }
    let stats = load.finish().unwrap();
    assert_eq!(stats.rounds_done, LoadPlan::paced().rounds);
    s.wait_node_synced();
    // wait_replica fails at once on a stopped SQL thread (a duplicate key error).
    s.wait_replica(&replica);
    assert_same_checksums(&s.master, &replica, LOAD_DB).unwrap();
    let status = replica.slave_status().unwrap();
    assert_eq!(status.get("Last_SQL_Errno"), "0", "{}", status.summary());
    check_syncer_status(&s);
    assert_eq!(s.node.terminate().unwrap(), Some(0), "SIGTERM exit code");
}

/// The master restarted during the load: the syncer reconnects by itself and the replica
/// ends equal to the master.
#[test]
fn master_restart_mid_load_syncer_reconnects() {
    let mut s = Setup::new("master-restart");
    let replica = s.start_replica(ReplMode::Gtid);
    let load = Load::spawn(s.master.port(), LoadPlan::paced());
    load.wait_progress(load.rounds() / 3, CATCH_UP_TIMEOUT)
        .unwrap();
    s.master.restart().unwrap();
    let stats = load.finish().unwrap();
    eprintln!("load across the master restart: {stats:?}");
    s.wait_node_synced();
    s.wait_replica(&replica);
    assert_same_checksums(&s.master, &replica, LOAD_DB).unwrap();
    check_syncer_status(&s);
}

/// Panics with the first differing line when two dumps differ.
fn assert_same_lines(what: &str, expected: &str, actual: &str) {
    if expected == actual {
        return;
    }
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let at = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let window = |v: &[&str]| v[at.saturating_sub(3)..(at + 3).min(v.len())].join("\n    ");
    panic!(
        "{what}: outputs differ at line {} ({} vs {} lines)\n  master:\n    {}\n  ferrobus:\n    {}",
        at + 1,
        e.len(),
        a.len(),
        window(&e),
        window(&a)
    );
}

/// python-mysql-replication (MariaDB GTID mode, blocking, stop at the master's last GTID)
/// reads the same events through ferrobus as from the master.
#[test]
fn python_mysql_replication_reads_same_events() {
    let s = Setup::new("pyrepl");
    Load::run(s.master.port(), LoadPlan::standard()).unwrap();
    s.wait_node_synced();
    let stop_gtid = s.master.gtid_binlog_pos().unwrap();
    let from_master = pyrepl_dump(&s.master_source(), 4242, &stop_gtid).unwrap();
    let from_ferrobus = pyrepl_dump(&s.ferro_source(), 4242, &stop_gtid).unwrap();
    assert!(
        from_master.contains(&format!("MariadbGtidEvent {stop_gtid}\n")),
        "master dump reached {stop_gtid}"
    );
    assert_same_lines("python-mysql-replication", &from_master, &from_ferrobus);
}

/// What two servers must agree on for one event. Artificial events (log_pos 0) carry the
/// sender's server id, and heartbeats are not content: both are left out of the comparison.
fn comparable(events: Vec<DumpedEvent>) -> Vec<(String, u8, u32, u32, Option<u32>)> {
    events
        .into_iter()
        .filter(|e| e.type_code != 27) // HEARTBEAT_LOG_EVENT
        .map(|e| {
            let server_id = (e.log_pos != 0).then_some(e.server_id);
            (e.file, e.type_code, e.log_pos, e.size, server_id)
        })
        .collect()
}

/// The `mysql` crate's binlog client dumps by file and position through ferrobus and gets
/// the same events (types, positions, sizes) as from the master.
#[test]
fn mysql_crate_binlog_dump_matches_master() {
    let s = Setup::new("mysql-crate");
    Load::run(s.master.port(), LoadPlan::standard()).unwrap();
    s.wait_node_synced();
    let first = s.master.first_binlog().unwrap();
    let (stop_file, stop_pos) = s.master.master_status().unwrap();
    let from_master =
        mysql_crate_dump(&s.master_source(), 4300, &first, &stop_file, stop_pos).unwrap();
    let from_ferrobus =
        mysql_crate_dump(&s.ferro_source(), 4300, &first, &stop_file, stop_pos).unwrap();
    assert!(from_master.len() > 100, "{} events", from_master.len());
    let (expected, actual) = (comparable(from_master), comparable(from_ferrobus));
    if expected != actual {
        let at = expected
            .iter()
            .zip(&actual)
            .position(|(x, y)| x != y)
            .unwrap_or(expected.len().min(actual.len()));
        panic!(
            "event {at} differs ({} vs {} events): master {:?}, ferrobus {:?}",
            expected.len(),
            actual.len(),
            expected.get(at),
            actual.get(at)
        );
    }
}

/// A request to the admin API that must be refused with `status` and a JSON message that
/// mentions `mention` (case-insensitive), if given.
fn expect_refusal(node: &Node, method: &str, path: &str, body: &[u8], status: u16, mention: &str) {
    let shown = String::from_utf8_lossy(body);
    let (got, reply) = node
        .request_json(method, path, Some(body))
        .unwrap_or_else(|e| panic!("{method} {path} {shown}: {e}"));
    assert_eq!(got, status, "{method} {path} {shown}: reply {reply}");
    let message = reply["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{method} {path} {shown}: no message string in {reply}"));
    assert!(
        message.to_lowercase().contains(&mention.to_lowercase()),
        "{method} {path} {shown}: message {message:?} should mention {mention:?}"
    );
}

fn with_field(base: &Value, field: &str, value: Value) -> Vec<u8> {
    let mut v = base.clone();
    v[field] = value;
    serde_json::to_vec(&v).unwrap()
}

fn without_field(base: &Value, field: &str) -> Vec<u8> {
    let mut v = base.clone();
    v.as_object_mut().unwrap().remove(field);
    serde_json::to_vec(&v).unwrap()
}

/// Malformed JSON and wrong types on every route, unknown routes and methods, an oversized
/// body, starting what runs: each gets its clear error, nothing starts by accident, and the
/// node keeps serving.
#[test]
fn bad_input_admin_api() {
    let s = Setup::new("bad-admin");
    // Start from a node with nothing running.
    s.node.put_ok("/binlog/syncer/stop", &json!({})).unwrap();
    s.node.put_ok("/binlog/server/stop", &json!({})).unwrap();
    let node = &s.node;

    let syncer = json!({
        "syncer_id": SYNCER_ID,
        "mysql_addr": s.master.addr(),
        "mysql_user": REPL_USER,
        "mysql_password": REPL_PASSWORD,
    });
    let server_port = free_port();
    let server = json!({
        "addr": format!("127.0.0.1:{server_port}"),
        "user": FERRO_USER,
        "password": FERRO_PASSWORD,
    });
    let malformed: [&[u8]; 9] = [
        b"",
        b"{",
        b"not json",
        b"{\"syncer_id\": 1,}",
        b"[]",
        b"null",
        b"\"a string\"",
        b"\xff\xfe\x00garbage",
        b"{\"a\":{\"b\":{\"c\":[[[[[[[[[[[[[[[[[[[[",
    ];
    for path in ["/binlog/syncer/start", "/binlog/server/start"] {
        for body in malformed {
            expect_refusal(node, "PUT", path, body, 400, "");
        }
    }
    // Routes that take no body must not fall over on a bad one either.
    for (method, path) in [
        ("PUT", "/binlog/syncer/stop"),
        ("PUT", "/binlog/server/stop"),
        ("GET", "/binlog/syncer/status"),
        ("GET", "/binlog/server/status"),
        ("GET", "/health"),
    ] {
        for body in malformed {
            let (status, reply) = node.request_json(method, path, Some(body)).unwrap();
            assert!(
                status == 200 || status == 400,
                "{method} {path} with a bad body: HTTP {status} {reply}"
            );
            assert!(reply["message"].is_string(), "{method} {path}: {reply}");
        }
    }

    let syncer_cases: Vec<(Vec<u8>, &str)> = vec![
        (with_field(&syncer, "syncer_id", json!("101")), "syncer_id"),
        (with_field(&syncer, "syncer_id", json!(-1)), "syncer_id"),
        (with_field(&syncer, "syncer_id", json!(1.5)), "syncer_id"),
        (with_field(&syncer, "syncer_id", json!(0)), "syncer_id"),
        (
            with_field(&syncer, "syncer_id", json!(4294967296u64)),
            "syncer_id",
        ),
        (with_field(&syncer, "syncer_id", json!(true)), "syncer_id"),
        (with_field(&syncer, "mysql_addr", json!(5)), "mysql_addr"),
        (
            with_field(&syncer, "mysql_addr", json!("127.0.0.1")),
            "mysql_addr",
        ),
        (with_field(&syncer, "mysql_addr", json!("")), "mysql_addr"),
        (with_field(&syncer, "mysql_user", json!(5)), "mysql_user"),
        (
            with_field(&syncer, "mysql_password", json!(false)),
            "mysql_password",
        ),
        (with_field(&syncer, "syncer_uuid", json!(7)), "syncer_uuid"),
        (with_field(&syncer, "semi_sync", json!("no")), "semi_sync"),
        (
            with_field(&syncer, "semi_sync", json!(true)),
            "semi_sync not supported yet",
        ),
        (with_field(&syncer, "gtid", json!(5)), "gtid"),
        (with_field(&syncer, "gtid", json!("not-a-gtid")), "gtid"),
        (with_field(&syncer, "binlog_file", json!(5)), "binlog_file"),
        (
            with_field(&syncer, "binlog_file", json!("bin.000001")),
            "binlog_pos",
        ),
        (without_field(&syncer, "syncer_id"), "syncer_id"),
        (without_field(&syncer, "mysql_addr"), "mysql_addr"),
        (without_field(&syncer, "mysql_user"), "mysql_user"),
        (without_field(&syncer, "mysql_password"), "mysql_password"),
    ];
    for (body, mention) in &syncer_cases {
        expect_refusal(node, "PUT", "/binlog/syncer/start", body, 400, mention);
    }
    let mut both = syncer.clone();
    both["gtid"] = json!("0-1-1");
    both["binlog_file"] = json!("bin.000001");
    both["binlog_pos"] = json!(4);
    expect_refusal(
        node,
        "PUT",
        "/binlog/syncer/start",
        &serde_json::to_vec(&both).unwrap(),
        400,
        "gtid",
    );
    let mut pos_only = syncer.clone();
    pos_only["binlog_pos"] = json!("4");
    expect_refusal(
        node,
        "PUT",
        "/binlog/syncer/start",
        &serde_json::to_vec(&pos_only).unwrap(),
        400,
        "binlog_pos",
    );

    let server_cases: Vec<(Vec<u8>, &str)> = vec![
        (with_field(&server, "addr", json!(5)), "addr"),
        (with_field(&server, "addr", json!("127.0.0.1")), "addr"),
        (with_field(&server, "addr", json!("nonsense")), "addr"),
        (with_field(&server, "user", json!(5)), "user"),
        (with_field(&server, "password", json!([])), "password"),
        (without_field(&server, "addr"), "addr"),
        (without_field(&server, "user"), "user"),
        (without_field(&server, "password"), "password"),
    ];
    for (body, mention) in &server_cases {
        expect_refusal(node, "PUT", "/binlog/server/start", body, 400, mention);
    }

    // Nothing was started by any of that.
    assert_eq!(node.syncer_status().unwrap()["status"], "stopped");
    assert_eq!(
        node.get_ok("/binlog/server/status").unwrap()["status"],
        "stopped"
    );

    // Unknown routes: 404. Known routes, wrong method: 405.
    for (method, path) in [
        ("GET", "/nope"),
        ("PUT", "/binlog/syncer/nope"),
        ("GET", "/binlog"),
        ("PUT", "/"),
    ] {
        expect_refusal(node, method, path, b"{}", 404, "");
    }
    for (method, path) in [
        ("GET", "/binlog/syncer/start"),
        ("POST", "/binlog/syncer/start"),
        ("DELETE", "/binlog/server/stop"),
        ("PUT", "/health"),
        ("PUT", "/binlog/syncer/status"),
        ("POST", "/binlog/server/status"),
    ] {
        expect_refusal(node, method, path, b"{}", 405, "");
    }

    // A body announced as 1 GB: 413 at once, without waiting for the bytes.
    assert_eq!(oversized_body_status(node.admin_port()), 413);

    // Several clients sending garbage at once.
    std::thread::scope(|scope| {
        for i in 0..6 {
            scope.spawn(move || {
                for body in malformed {
                    let path = if i % 2 == 0 {
                        "/binlog/syncer/start"
                    } else {
                        "/binlog/server/start"
                    };
                    let (status, _) = node.request_json("PUT", path, Some(body)).unwrap();
                    assert_eq!(status, 400);
                }
            });
        }
    });

    // Valid starts work; starting again is a conflict; stops succeed (twice for the syncer).
    node.put_ok("/binlog/server/start", &server).unwrap();
    expect_refusal(
        node,
        "PUT",
        "/binlog/server/start",
        &serde_json::to_vec(&server).unwrap(),
        409,
        "",
    );
    node.put_ok("/binlog/syncer/start", &syncer).unwrap();
    expect_refusal(
        node,
        "PUT",
        "/binlog/syncer/start",
        &serde_json::to_vec(&syncer).unwrap(),
        409,
        "",
    );
    s.wait_node_synced();
    let text = node.syncer_status().unwrap().to_string();
    assert!(
        !text.contains(REPL_PASSWORD),
        "syncer status shows a password: {text}"
    );
    node.put_ok("/binlog/syncer/stop", &json!({})).unwrap();
    node.put_ok("/binlog/syncer/stop", &json!({})).unwrap();
    node.put_ok("/binlog/server/stop", &json!({})).unwrap();

    // Started alone without --peer-addr: its raft port is one no other node can know, so
    // adding a member is refused with what to do, and the member table is unchanged.
    let before = node.get_ok("/members").unwrap();
    let add = json!({"name": "n2", "peer_url": format!("127.0.0.1:{}", free_port())});
    expect_refusal(
        node,
        "POST",
        "/members",
        &serde_json::to_vec(&add).unwrap(),
        409,
        "--peer-addr",
    );
    assert_eq!(node.get_ok("/members").unwrap(), before);

    assert_eq!(node.get_ok("/health").unwrap()["status"], "ok");
    assert!(s.node.is_running(), "ferrobus is still running");
}

/// Sends a PUT whose Content-Length announces 1 GB and no body; returns the HTTP status the
/// server answers with (a server that waits for the body would time out here).
fn oversized_body_status(admin_port: u16) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", admin_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    write!(
        stream,
        "PUT /binlog/syncer/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: 1000000000\r\nConnection: close\r\n\r\n{{"
    )
    .unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the status line is complete (the server may keep the socket open).
    while !reply.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer to an oversized body within 15 s: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&reply);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in {text:?}"))
}

/// Garbage bytes and truncated packets on the MySQL port, unknown commands and statements,
/// a wrong password (1045), GTIDs that were never there (1236): each gets a clear error,
/// and the other connections (a replica among them) keep working.
#[test]
fn bad_input_mysql_port() {
    let s = Setup::new("bad-mysql");
    let replica = s.start_replica(ReplMode::Gtid);
    Load::run(s.master.port(), LoadPlan::small()).unwrap();
    s.wait_replica(&replica);

    let report = abuse_mysql_port(s.server_port, FERRO_USER, FERRO_PASSWORD, true).unwrap();
    eprintln!(
        "abuse outcomes on ferrobus:\n  {}",
        report.lines.join("\n  ")
    );
    for gtid in ["0-1-999999", "0-9-5"] {
        let message =
            request_missing_gtid(s.server_port, FERRO_USER, FERRO_PASSWORD, gtid).unwrap();
        assert!(!message.is_empty(), "ERR 1236 for {gtid} has a message");
    }

    // With the truncated connections still open, replication goes on.
    Load::run(s.master.port(), LoadPlan::small()).unwrap();
    s.wait_replica(&replica);
    assert_same_checksums(&s.master, &replica, LOAD_DB).unwrap();
    drop(report);
    assert_eq!(s.node.get_ok("/health").unwrap()["status"], "ok");
}
