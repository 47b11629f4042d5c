//! Issue 3's retention tests on one node: `PUT /binlog/purge` through the admin API (SHOW
//! BINARY LOGS lists what is left, a dump of a purged file or GTID gets ERR 1236 saying it
//! was purged, bad purges are refused), and `[retention] max_bytes` purging by itself,
//! periodically, while a replica attached to the node keeps replicating.
//!
//! Same rules as `foundation.rs`: real MariaDB servers and real ferrobus processes on free
//! ports of 127.0.0.1, everything stopped by pid when a test ends, logs printed on failure,
//! bounded waits only, no timing assertions.

use std::time::Duration;

use serde_json::json;

use crate::harness::abuse::request_missing_gtid;
use crate::harness::clients::mysql_connect;
use crate::harness::clients::{ferro_source, node_binary_logs};
use crate::harness::util::normalize_gtid_list;
use crate::harness::*;

const SYNCER_ID: u32 = 101;
const MASTER_ID: u32 = 1;
const REPLICA_ID: u32 = 2;
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// A non-blocking dump by file and position: Ok(number of events) or Err((code, message)).
fn dump_file_pos(port: u16, file: &str, pos: u64) -> std::result::Result<usize, (u16, String)> {
    dump_from(&ferro_source(port), file, pos)
}

/// The same dump from the master itself (as the replication user).
fn master_dump_file_pos(master: &MariaDb, file: &str, pos: u64) -> usize {
    let source = Source {
        port: master.port(),
        user: REPL_USER.to_string(),
        password: REPL_PASSWORD.to_string(),
    };
    dump_from(&source, file, pos).unwrap()
}

fn dump_from(source: &Source, file: &str, pos: u64) -> std::result::Result<usize, (u16, String)> {
    use mysql::prelude::Queryable;
    let mut conn = mysql_connect(source, Duration::from_secs(30)).unwrap();
    conn.query_drop("SET @mariadb_slave_capability=4").unwrap();
    let request = mysql::BinlogRequest::new(4401)
        .with_filename(file.as_bytes())
        .with_pos(pos)
        .with_flags(mysql::BinlogDumpFlags::BINLOG_DUMP_NON_BLOCK);
    let stream = match conn.get_binlog_stream(request) {
        Ok(stream) => stream,
        Err(mysql::Error::MySqlError(e)) => return Err((e.code, e.message)),
        Err(e) => panic!("dump {file}:{pos}: {e}"),
    };
    let mut events = 0;
    for event in stream {
        match event {
            Ok(_) => events += 1,
            Err(mysql::Error::MySqlError(e)) => return Err((e.code, e.message)),
            Err(e) => panic!("dump {file}:{pos} after {events} events: {e}"),
        }
    }
    Ok(events)
}

/// Writes a few rows and closes the master's current binlog file, `rounds` times.
fn write_and_flush(master: &MariaDb, rounds: usize, payload: usize) {
    master
        .sql(
            "CREATE DATABASE IF NOT EXISTS ret; CREATE TABLE IF NOT EXISTS ret.t \
             (id INT AUTO_INCREMENT PRIMARY KEY, v LONGTEXT)",
        )
        .unwrap();
    for _ in 0..rounds {
        master
            .sql(&format!(
                "INSERT INTO ret.t (v) VALUES (REPEAT('x', {payload})); \
                 INSERT INTO ret.t (v) VALUES (REPEAT('y', {payload})); FLUSH BINARY LOGS"
            ))
            .unwrap();
    }
}

#[test]
fn purge_through_the_api_drops_files_and_refuses_purged_data() {
    let work = WorkDir::new("retention-purge").unwrap();
    let master =
        MariaDb::start("retention-purge-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let mut node = Node::start(&work.join("node")).unwrap();
    node.start_syncer(&master, SYNCER_ID).unwrap();
    let server_port = free_port();
    node.start_server(server_port).unwrap();
    write_and_flush(&master, 4, 100);
    node.wait_synced_with(&master, SYNC_TIMEOUT).unwrap();
    let master_files: Vec<String> = master.binary_log_names().unwrap();
    assert!(master_files.len() >= 5, "files: {master_files:?}");
    assert_eq!(node_binary_logs(server_port), master_files);
    let first_gtid = format!("0-{MASTER_ID}-1");

    // Refusals: the current file, a file never stored.
    let last = master_files.last().unwrap().clone();
    let (code, body) = node
        .api_put("/binlog/purge", &json!({"to_file": last}))
        .unwrap();
    assert_eq!(code, 409, "purge to the current file: {body}");
    let (code, body) = node
        .api_put("/binlog/purge", &json!({"to_file": "nosuch-bin.000001"}))
        .unwrap();
    assert_eq!(code, 404, "purge to a file never stored: {body}");

    // Purge before the third file.
    let keep = master_files[2].clone();
    node.put_ok("/binlog/purge", &json!({"to_file": keep}))
        .unwrap();
    assert_eq!(node_binary_logs(server_port), master_files[2..].to_vec());
    let (code, body) = node
        .api_put("/binlog/purge", &json!({"to_file": master_files[1]}))
        .unwrap();
    assert_eq!(code, 409, "purge to an already purged file: {body}");
    // Purging to the first stored file again changes nothing.
    node.put_ok("/binlog/purge", &json!({"to_file": keep}))
        .unwrap();
    assert_eq!(node_binary_logs(server_port), master_files[2..].to_vec());

    // Purged data: ERR 1236 naming the first stored file; what is left is served.
    for file in &master_files[..2] {
        let (code, message) = dump_file_pos(server_port, file, 4).unwrap_err();
        assert_eq!(code, 1236, "{message}");
        assert!(
            message.contains("purged") && message.contains(&keep),
            "dump of purged {file}: {message}"
        );
    }
    let events = dump_file_pos(server_port, &keep, 4).unwrap();
    assert!(events > 3, "dump from {keep}: {events} events");
    let message =
        request_missing_gtid(server_port, FERRO_USER, FERRO_PASSWORD, &first_gtid).unwrap();
    assert!(
        message.contains("purged"),
        "dump from purged GTID {first_gtid}: {message}"
    );

    // The purged GTID set is reported; writes go on being stored and served.
    let status = node.syncer_status().unwrap();
    let purged = normalize_gtid_list(status["purged_gtid_set"].as_str().unwrap_or(""));
    assert!(
        purged.starts_with(&format!("0-{MASTER_ID}-")),
        "purged_gtid_set: {status}"
    );
    write_and_flush(&master, 1, 100);
    node.wait_synced_with(&master, SYNC_TIMEOUT).unwrap();
    let more = dump_file_pos(server_port, &keep, 4).unwrap();
    assert!(
        more > events,
        "new writes are served after the purge: {more} events"
    );
    let log = std::fs::read_to_string(node.log_path()).unwrap();
    assert!(
        log.contains("raft log compacted to entry"),
        "the purge compacts the raft log"
    );

    // A restart (from the snapshot the compaction stored) keeps exactly what was left.
    let kept = node_binary_logs(server_port);
    node.restart().unwrap();
    poll(
        "the binlog server back after the restart",
        SYNC_TIMEOUT,
        || {
            node.check_alive()?;
            Ok(match dump_file_pos(server_port, &keep, 4) {
                Ok(n) => Poll::Ready(n),
                Err(e) => Poll::Pending(format!("{e:?}")),
            })
        },
    )
    .unwrap();
    assert_eq!(node_binary_logs(server_port), kept);
    // What the node serves from the kept file is what the master serves from it (the
    // master may still append a BINLOG_CHECKPOINT after a FLUSH, so compare, don't count).
    poll(
        "the node to serve what the master serves",
        SYNC_TIMEOUT,
        || {
            let (node_count, master_count) = (
                dump_file_pos(server_port, &keep, 4),
                master_dump_file_pos(&master, &keep, 4),
            );
            Ok(if node_count == Ok(master_count) && master_count >= more {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("node {node_count:?}, master {master_count}"))
            })
        },
    )
    .unwrap();
    let log = std::fs::read_to_string(node.log_path()).unwrap();
    assert!(
        log.contains("binlog indexed again from log entry"),
        "the restart restored the snapshot and indexed the log after the purge point"
    );
    let (code, message) = dump_file_pos(server_port, &master_files[0], 4).unwrap_err();
    assert!(code == 1236 && message.contains("purged"), "{message}");
    write_and_flush(&master, 1, 100);
    node.wait_synced_with(&master, SYNC_TIMEOUT).unwrap();
    drop(node);
    drop(master);
    drop(work);
}

#[test]
fn retention_by_bytes_purges_by_itself_while_a_replica_replicates() {
    let work = WorkDir::new("retention-bytes").unwrap();
    let master =
        MariaDb::start("retention-bytes-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let config = work.join("ferrobus.toml");
    std::fs::write(
        &config,
        "[retention]\nmax_bytes = 20000\ncheck_interval_seconds = 1\n",
    )
    .unwrap();
    let node = Node::start_with_args(
        &work.join("node"),
        &["--config".to_string(), config.display().to_string()],
    )
    .unwrap();
    node.start_syncer(&master, SYNCER_ID).unwrap();
    let server_port = free_port();
    node.start_server(server_port).unwrap();
    let first = master.first_binlog().unwrap();
    let replica = MariaDb::start(
        "retention-bytes-replica",
        MariaDbOpts::server_id(REPLICA_ID),
    )
    .unwrap();
    node.wait_synced_with(&master, SYNC_TIMEOUT).unwrap();
    let upstream = Upstream {
        port: server_port,
        user: FERRO_USER.to_string(),
        password: FERRO_PASSWORD.to_string(),
    };
    replica
        .replicate_from(
            &upstream,
            &ReplMode::FilePos {
                file: first.clone(),
                pos: 4,
            },
        )
        .unwrap();

    // About 8 KB per file: far more than 20000 bytes in all.
    for round in 0..3 {
        write_and_flush(&master, 4, 4000);
        replica
            .wait_caught_up_checking(&master, CATCH_UP_TIMEOUT, &|| node.check_alive())
            .unwrap();
        eprintln!(
            "round {round}: node has {:?}",
            node_binary_logs(server_port)
        );
    }
    // Purged by itself, down to at most max_bytes (and never the current file).
    let kept = poll(
        "retention to purge the node's oldest files",
        SYNC_TIMEOUT,
        || {
            node.check_alive()?;
            let files = node_binary_logs(server_port);
            Ok(if files.first() != Some(&first) && files.len() <= 4 {
                Poll::Ready(files)
            } else {
                Poll::Pending(format!("node has {files:?}"))
            })
        },
    )
    .unwrap();
    let master_files: Vec<String> = master.binary_log_names().unwrap();
    assert_eq!(kept.last(), master_files.last(), "the current file is kept");
    let (code, message) = dump_file_pos(server_port, &first, 4).unwrap_err();
    assert_eq!(code, 1236, "{message}");
    assert!(message.contains("purged"), "{message}");

    // It runs periodically: more files, more purges; the replica keeps replicating.
    let before = kept.first().cloned().unwrap();
    write_and_flush(&master, 6, 4000);
    replica
        .wait_caught_up_checking(&master, CATCH_UP_TIMEOUT, &|| node.check_alive())
        .unwrap();
    poll("a second automatic purge", SYNC_TIMEOUT, || {
        node.check_alive()?;
        let files = node_binary_logs(server_port);
        Ok(if files.first() != Some(&before) && files.len() <= 4 {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("node has {files:?}"))
        })
    })
    .unwrap();
    assert_same_checksums(&master, &replica, "ret").unwrap();
    let log = std::fs::read_to_string(node.log_path()).unwrap();
    assert!(
        log.contains("retention: purging"),
        "the node logs its purges"
    );
    drop(replica);
    drop(node);
    drop(master);
    drop(work);
}

/// What `name`'s binlog server lists in SHOW BINARY LOGS.
fn member_binary_logs(cluster: &crate::harness::cluster::Cluster, name: &str) -> Vec<String> {
    node_binary_logs(cluster.member(name).binlog_port)
}

#[test]
fn cluster_purge_through_a_follower_then_a_fourth_node_joins_and_serves() {
    use crate::harness::cluster::{Cluster, LEADER_TIMEOUT};
    let master = MariaDb::start("rc-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let replica = MariaDb::start("rc-replica", MariaDbOpts::server_id(REPLICA_ID)).unwrap();
    let mut cluster = Cluster::start("retention", 3).unwrap();
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    let follower = cluster.followers(&leader)[0].clone();
    cluster
        .start_syncer_via(&follower, &master, SYNCER_ID)
        .unwrap();
    cluster.start_servers().unwrap();
    write_and_flush(&master, 4, 100);
    cluster
        .wait_synced_via(&follower, &master, CATCH_UP_TIMEOUT)
        .unwrap();
    let first = master.first_binlog().unwrap();
    replica
        .replicate_from(
            &cluster.member(&leader).upstream(),
            &ReplMode::FilePos {
                file: first.clone(),
                pos: 4,
            },
        )
        .unwrap();
    replica
        .wait_caught_up_with(&master, CATCH_UP_TIMEOUT)
        .unwrap();
    let master_files: Vec<String> = master.binary_log_names().unwrap();
    for name in ["n1", "n2", "n3"] {
        cluster
            .wait_serves_master(name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }

    // Purge through a follower: forwarded to the leader, applied on every node.
    let keep = master_files[2].clone();
    cluster
        .node(&follower)
        .put_ok("/binlog/purge", &json!({"to_file": keep}))
        .unwrap();
    for name in ["n1", "n2", "n3"] {
        poll(&format!("{name} to apply the purge"), SYNC_TIMEOUT, || {
            let files = member_binary_logs(&cluster, name);
            Ok(if files == master_files[2..] {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{name} has {files:?}"))
            })
        })
        .unwrap();
        let port = cluster.member(name).binlog_port;
        let (code, message) = dump_file_pos(port, &first, 4).unwrap_err();
        assert!(
            code == 1236 && message.contains("purged"),
            "{name}: {message}"
        );
    }

    // A fourth node joins after the compaction: it gets the snapshot and serves what
    // follows it.
    cluster.add_and_join(&follower, "n4").unwrap();
    cluster
        .wait_serves_master("n4", &master, CATCH_UP_TIMEOUT)
        .unwrap();
    // The replica moves to n4 by GTID and keeps replicating what comes next.
    replica
        .replicate_from(&cluster.member("n4").upstream(), &ReplMode::Gtid)
        .unwrap();
    write_and_flush(&master, 2, 100);
    cluster
        .wait_serves_master("n4", &master, CATCH_UP_TIMEOUT)
        .unwrap();
    replica
        .wait_caught_up_with(&master, CATCH_UP_TIMEOUT)
        .unwrap();
    assert_same_checksums(&master, &replica, "ret").unwrap();
    let (code, message) = dump_file_pos(cluster.member("n4").binlog_port, &first, 4).unwrap_err();
    assert!(code == 1236 && message.contains("purged"), "n4: {message}");
}
