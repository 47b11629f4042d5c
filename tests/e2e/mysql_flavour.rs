//! Issue 4's end-to-end tests of the MySQL flavour. No Oracle MySQL server can run here, so
//! the MySQL data comes from real MySQL binlog files (tests/data/mysql, see its README),
//! imported into real ferrobus nodes, and is read back by independent MySQL-flavour clients:
//! python-mysql-replication in MySQL mode (auto_position and file+position) and the `mysql`
//! crate's COM_BINLOG_DUMP_GTID. A second ferrobus node's syncer pulling from a first node
//! plays a MySQL replica of a MySQL source (GTID auto-positioning, caching_sha2_password).
//!
//! Every expectation is computed from the fixture bytes, never from ferrobus.

use serde_json::json;

use crate::harness::clients::{compare_dirs, ferro_source, node_binary_logs};
use crate::harness::mysql_data::*;
use crate::harness::util::poll;
use crate::harness::*;

const DUMP_SERVER_ID: u32 = 4301;
const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

fn chain_fixtures() -> Vec<&'static str> {
    KINGBUS_CHAIN.iter().map(|(f, _)| *f).collect()
}

/// A one-node cluster holding the kingbus chain, serving it on a free port.
fn node_with_chain(work: &WorkDir, name: &str, auth_plugin: Option<&str>) -> (Node, u16) {
    let node = Node::start(&work.join(name)).unwrap();
    import_all(&node, &KINGBUS_CHAIN).unwrap();
    let port = start_server(&node, auth_plugin);
    (node, port)
}

/// Starts `node`'s binlog server on a free port with the ferro account (and `auth_plugin`).
fn start_server(node: &Node, auth_plugin: Option<&str>) -> u16 {
    let port = free_port();
    node.start_server_with(port, auth_plugin).unwrap();
    port
}

#[test]
fn gtid_and_file_position_dumps_of_an_imported_chain() {
    let work = WorkDir::new("mysql-dumps").unwrap();
    let (_node, port) = node_with_chain(&work, "node", None);
    let src = ferro_source(port);
    let names: Vec<String> = KINGBUS_CHAIN.iter().map(|(_, n)| n.to_string()).collect();
    assert_eq!(node_binary_logs(port), names, "SHOW BINARY LOGS");

    // A replica that has everything up to the middle of the second file.
    let middle = 11805;
    let expected = expected_lines(&chain_fixtures(), middle).unwrap();
    assert_eq!(
        expected
            .iter()
            .filter(|l| l.starts_with("GtidEvent"))
            .count(),
        15,
        "fixture: transactions after {middle}"
    );
    let stop = format!("{KINGBUS_UUID}:11820");

    let set = format!("{KINGBUS_UUID}:1-{middle}");
    let out = pyrepl_mysql(&src, DUMP_SERVER_ID, PyStart::Gtid(&set), &stop).unwrap();
    assert_eq!(
        transaction_lines(&out),
        expected,
        "python-mysql-replication, auto_position {set}"
    );

    let (file, pos) = end_of_transaction(&KINGBUS_CHAIN, middle).unwrap();
    assert_eq!(file, "mysql_bin.000012");
    let out = pyrepl_mysql(
        &src,
        DUMP_SERVER_ID + 1,
        PyStart::FilePos(&file, pos),
        &stop,
    )
    .unwrap();
    assert_eq!(
        transaction_lines(&out),
        expected,
        "python-mysql-replication from {file}:{pos}"
    );

    let lines = mysql_crate_gtid_dump(
        &src,
        DUMP_SERVER_ID + 2,
        vec![sid(KINGBUS_UUID, &[(1, middle)])],
    )
    .unwrap()
    .unwrap_or_else(|e| panic!("mysql crate COM_BINLOG_DUMP_GTID refused: {e}"));
    assert_eq!(lines, expected, "mysql crate, GTID set {set}");

    // A replica with a hole: it has 11807 already, so 11807 is skipped and nothing else.
    let with_hole = vec![sid(KINGBUS_UUID, &[(1, middle), (11807, 11807)])];
    let lines = mysql_crate_gtid_dump(&src, DUMP_SERVER_ID + 3, with_hole)
        .unwrap()
        .unwrap_or_else(|e| panic!("mysql crate COM_BINLOG_DUMP_GTID refused: {e}"));
    let mut skipping = false;
    let expected_hole: Vec<String> = expected
        .iter()
        .filter(|l| {
            if l.starts_with("GtidEvent") {
                skipping = l.ends_with(":11807");
            }
            !skipping
        })
        .cloned()
        .collect();
    // A transaction is three lines here: its GTID, BEGIN and XID.
    assert_eq!(
        expected_hole.len() + 3,
        expected.len(),
        "one transaction fewer"
    );
    assert_eq!(
        lines, expected_hole,
        "mysql crate, set with 11807 already applied"
    );
}

#[test]
fn statements_of_mysql_replicas_and_cdc_tools_are_answered() {
    use mysql::prelude::Queryable;
    let work = WorkDir::new("mysql-statements").unwrap();
    let (_node, port) = node_with_chain(&work, "node", None);
    let mut conn = crate::harness::clients::mysql_connect(
        &ferro_source(port),
        std::time::Duration::from_secs(30),
    )
    .unwrap();
    // The version of the stored data (the FDE's), as a MySQL 5.7 source would greet.
    assert_eq!(conn.server_version(), (5, 7, 23));
    let one = |conn: &mut mysql::Conn, sql: &str| -> String {
        conn.query_first::<String, _>(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("{sql}: no row"))
    };
    let executed = format!("{KINGBUS_UUID}:1-11820");
    assert_eq!(one(&mut conn, "SELECT @@GLOBAL.GTID_MODE"), "ON");
    assert_eq!(one(&mut conn, "SELECT @@GLOBAL.gtid_executed"), executed);
    assert_eq!(
        one(&mut conn, "SELECT @@GLOBAL.gtid_purged"),
        format!("{KINGBUS_UUID}:1-11789")
    );
    let uuid = one(&mut conn, "SELECT @@GLOBAL.SERVER_UUID");
    assert!(
        uuid.len() == 36 && uuid.matches('-').count() == 4 && uuid != KINGBUS_UUID,
        "server_uuid {uuid}"
    );
    // Old and new vocabulary.
    for sql in [
        "SET @slave_uuid = '0b7d8c3e-1111-2222-3333-444455556666'",
        "SET @replica_uuid = '0b7d8c3e-1111-2222-3333-444455556666'",
        "SET @master_heartbeat_period = 30000000000",
        "SET @source_heartbeat_period = 30000000000",
        "SET @master_binlog_checksum = @@global.binlog_checksum",
        "SET @source_binlog_checksum = @@global.binlog_checksum",
    ] {
        conn.query_drop(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    for sql in ["SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"] {
        let row: mysql::Row = conn.query_first(sql).unwrap().expect(sql);
        let file: String = row.get(0).unwrap();
        let pos: u64 = row.get(1).unwrap();
        let gtids: String = row
            .get("Executed_Gtid_Set")
            .expect("Executed_Gtid_Set column");
        assert_eq!(
            (file.as_str(), pos, gtids.as_str()),
            ("mysql_bin.000013", 5984, executed.as_str()),
            "{sql}"
        );
    }
    let rows: Vec<(String, String)> = conn
        .query("SHOW GLOBAL VARIABLES LIKE 'binlog_checksum'")
        .unwrap();
    assert_eq!(
        rows,
        vec![("binlog_checksum".to_string(), "CRC32".to_string())]
    );
    let rows: Vec<(String, String)> = conn.query("SHOW VARIABLES LIKE 'gtid_mode'").unwrap();
    assert_eq!(rows, vec![("gtid_mode".to_string(), "ON".to_string())]);
}

#[test]
fn gtid_dump_refusals_name_the_problem() {
    let work = WorkDir::new("mysql-refusals").unwrap();
    let (node, port) = node_with_chain(&work, "node", None);
    let src = ferro_source(port);

    let refused = |sids, what: &str| -> String {
        match mysql_crate_gtid_dump(&src, DUMP_SERVER_ID, sids).unwrap() {
            Ok(lines) => panic!("{what}: dump accepted ({} lines)", lines.len()),
            Err(message) => {
                assert!(message.contains("1236"), "{what}: not ERR 1236: {message}");
                message
            }
        }
    };

    // The replica has transactions the store never had.
    let message = refused(vec![sid(KINGBUS_UUID, &[(1, 11830)])], "replica ahead");
    assert!(
        message.contains("11821-11830"),
        "replica ahead: the message must name the missing GTIDs: {message}"
    );
    // A server UUID the store does not know.
    let stranger = "11111111-2222-3333-4444-555555555555";
    let message = refused(
        vec![sid(KINGBUS_UUID, &[(1, 11805)]), sid(stranger, &[(1, 3)])],
        "unknown uuid",
    );
    assert!(
        message.contains(stranger),
        "unknown uuid not named: {message}"
    );
    // Transactions before the store begins: never stored, so "purged".
    let message = refused(Vec::new(), "empty set");
    assert!(message.contains("purged"), "empty set: {message}");

    // After a purge of the first file, a replica that stopped inside it needs purged data;
    // one that has everything before the second file is served.
    node.put_ok("/binlog/purge", &json!({"to_file": "mysql_bin.000012"}))
        .unwrap();
    assert_eq!(
        node_binary_logs(port),
        vec![
            "mysql_bin.000012".to_string(),
            "mysql_bin.000013".to_string()
        ]
    );
    let message = refused(vec![sid(KINGBUS_UUID, &[(1, 11795)])], "purged start");
    assert!(
        message.contains("purged") && message.contains("11796-11800"),
        "purged start: the message must say purged and name the GTIDs: {message}"
    );
    let lines = mysql_crate_gtid_dump(&src, DUMP_SERVER_ID, vec![sid(KINGBUS_UUID, &[(1, 11800)])])
        .unwrap()
        .unwrap_or_else(|e| panic!("dump from the purge point refused: {e}"));
    assert_eq!(
        lines,
        expected_lines(&chain_fixtures()[1..], 11800).unwrap()
    );
}

/// Node B's syncer pulls `files` from node A (which imported them) and B's export is the
/// fixtures, byte for byte.
fn pull_and_compare(test: &str, files: &[(&str, &str)], auth_plugin: Option<&str>) {
    let work = WorkDir::new(test).unwrap();
    let source = Node::start(&work.join("a")).unwrap();
    import_all(&source, files).unwrap();
    let port = start_server(&source, auth_plugin);

    let mut replica = Node::start(&work.join("b")).unwrap();
    replica
        .put_ok(
            "/binlog/syncer/start",
            &json!({
                "syncer_id": 4401,
                "mysql_addr": format!("127.0.0.1:{port}"),
                "mysql_user": FERRO_USER,
                "mysql_password": FERRO_PASSWORD,
            }),
        )
        .unwrap();
    let (last_fixture, last_name) = *files.last().unwrap();
    let last_len = std::fs::metadata(fixture_path(last_fixture)).unwrap().len();
    poll(
        "node b to store everything node a serves",
        SYNC_TIMEOUT,
        || {
            replica.check_alive()?;
            let status = replica.syncer_status()?;
            let file = status["last_binlog_file"].as_str().unwrap_or("");
            let pos = status["last_file_position"].as_u64().unwrap_or(0);
            if file == last_name && pos == last_len {
                return Ok(Poll::Ready(()));
            }
            Ok(Poll::Pending(format!("syncer status {status}")))
        },
    )
    .unwrap();
    let status = replica.syncer_status().unwrap();
    replica.terminate().unwrap();
    if let Some(plugin) = auth_plugin {
        let log = std::fs::read_to_string(source.log_path()).unwrap();
        assert!(
            log.contains(&format!("logged in with {plugin}")),
            "node a's log shows no {plugin} login"
        );
    }

    let out = work.join("export");
    export_offline(replica.data_dir(), &out).unwrap();
    let expected = work.join("expected");
    std::fs::create_dir_all(&expected).unwrap();
    for (fixture, name) in files {
        std::fs::copy(fixture_path(fixture), expected.join(name)).unwrap();
    }
    let compared = compare_dirs(&expected, &out)
        .unwrap_or_else(|e| panic!("export of node b vs the fixtures: {e}\nsyncer: {status}"));
    assert_eq!(compared, files.len());
}

#[test]
fn second_node_pulls_the_chain_by_gtid_with_caching_sha2() {
    pull_and_compare(
        "mysql-pull-gtid",
        &KINGBUS_CHAIN,
        Some("caching_sha2_password"),
    );
}

#[test]
fn second_node_pulls_anonymous_and_compressed_files() {
    // GTID mode off (anonymous GTIDs): the syncer dumps by file and position.
    pull_and_compare(
        "mysql-pull-anonymous",
        &[("mysql-5.7.21-bin.checksum-crc32", "mysql-bin.000001")],
        None,
    );
    // MySQL 8.0's compressed transactions pass through untouched.
    pull_and_compare(
        "mysql-pull-compressed",
        &[("transaction_compression.000001", "binlog.000001")],
        None,
    );
}
