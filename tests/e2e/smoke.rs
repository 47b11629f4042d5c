//! Harness self-tests against MariaDB only (no ferrobus): they prove that the servers, the
//! load, the replication helpers and every independent client work, so that a failing
//! foundation test points at ferrobus and not at the harness.

use crate::harness::abuse::{abuse_mysql_port, request_missing_gtid};
use crate::harness::clients::{compare_dirs, mariadb_binlog_raw, mysql_crate_dump, pyrepl_dump};
use crate::harness::*;

fn repl_source(master: &MariaDb) -> Source {
    Source {
        port: master.port(),
        user: REPL_USER.to_string(),
        password: REPL_PASSWORD.to_string(),
    }
}

/// Master → replica directly (GTID and file/pos replicas), the full write load, catch-up,
/// CHECKSUM TABLE equal for every table.
#[test]
fn harness_direct_replication_smoke() {
    let master = MariaDb::start("master", MariaDbOpts::server_id(1)).unwrap();
    let gtid_replica = MariaDb::start("replica-gtid", MariaDbOpts::server_id(2)).unwrap();
    let filepos_replica = MariaDb::start("replica-filepos", MariaDbOpts::server_id(3)).unwrap();
    let upstream = Upstream {
        port: master.port(),
        user: REPL_USER.to_string(),
        password: REPL_PASSWORD.to_string(),
    };
    let first = master.first_binlog().unwrap();
    gtid_replica
        .replicate_from(&upstream, &ReplMode::Gtid)
        .unwrap();
    filepos_replica
        .replicate_from(
            &upstream,
            &ReplMode::FilePos {
                file: first,
                pos: 4,
            },
        )
        .unwrap();

    let stats = Load::run(master.port(), LoadPlan::standard()).unwrap();
    assert_eq!(stats.rounds_done, LoadPlan::standard().rounds);
    assert!(
        master.binary_logs().unwrap().len() >= 2,
        "FLUSH BINARY LOGS ran"
    );

    for replica in [&gtid_replica, &filepos_replica] {
        replica
            .wait_caught_up_with(&master, CATCH_UP_TIMEOUT)
            .unwrap();
        assert_same_checksums(&master, replica, LOAD_DB).unwrap();
    }
    let big = master
        .sql_value("SELECT LENGTH(b) FROM ferro.big WHERE id = 1")
        .unwrap();
    assert!(
        big.parse::<u64>().unwrap() > 16 << 20,
        "the big row is over 16 MiB: {big}"
    );
    let bulk_bytes = master
        .sql_value("SELECT SUM(LENGTH(pad)) FROM ferro.bulk")
        .unwrap();
    assert!(
        bulk_bytes.parse::<u64>().unwrap() >= 20 << 20,
        "20 MB transaction: {bulk_bytes}"
    );
}

/// Every independent client works against a real master, twice the same: mariadb-binlog
/// --raw, python-mysql-replication, the mysql crate; the abuse checks hold on MariaDB; a
/// missing GTID gets ERR 1236.
#[test]
fn harness_clients_and_abuse_against_master() {
    let work = WorkDir::new("clients").unwrap();
    let master = MariaDb::start("master", MariaDbOpts::server_id(1)).unwrap();
    Load::run(master.port(), LoadPlan::standard()).unwrap();
    // The load rotates the binlog; its last checkpoint event is written after the load.
    master.wait_binlog_settled(CATCH_UP_TIMEOUT).unwrap();
    let src = repl_source(&master);
    let first = master.first_binlog().unwrap();

    mariadb_binlog_raw(&src, &first, &work.join("a")).unwrap();
    mariadb_binlog_raw(&src, &first, &work.join("b")).unwrap();
    let files = compare_dirs(&work.join("a"), &work.join("b")).unwrap();
    assert_eq!(files, master.binary_logs().unwrap().len());
    // The raw copy of a closed file is the master's file, byte for byte.
    let on_disk = std::fs::read(master.datadir().join(&first)).unwrap();
    let fetched = std::fs::read(work.join("a").join(&first)).unwrap();
    assert!(
        on_disk == fetched,
        "raw fetch of {first} equals the file on disk"
    );

    let stop_gtid = master.gtid_binlog_pos().unwrap();
    let py = pyrepl_dump(&src, 4242, &stop_gtid).unwrap();
    assert!(
        py.lines().count() > 100,
        "pyrepl printed {} lines",
        py.lines().count()
    );
    assert!(
        py.contains(&format!("MariadbGtidEvent {stop_gtid}\n")),
        "reached {stop_gtid}"
    );
    assert_eq!(py, pyrepl_dump(&src, 4243, &stop_gtid).unwrap());

    let (stop_file, stop_pos) = master.master_status().unwrap();
    let events = mysql_crate_dump(&src, 4244, &first, &stop_file, stop_pos).unwrap();
    assert!(events.len() > 100, "{} events", events.len());
    assert!(
        events.iter().any(|e| e.type_code == 162),
        "MariaDB GTID events present"
    );
    assert!(
        events.iter().any(|e| e.size > 16 << 20),
        "an event over 16 MiB arrived whole"
    );
    assert_eq!(
        events,
        mysql_crate_dump(&src, 4245, &first, &stop_file, stop_pos).unwrap()
    );

    let report = abuse_mysql_port(master.port(), REPL_USER, REPL_PASSWORD, false).unwrap();
    eprintln!(
        "abuse outcomes on MariaDB:\n  {}",
        report.lines.join("\n  ")
    );
    drop(report);
    for gtid in ["0-1-999999", "0-9-5"] {
        let msg = request_missing_gtid(master.port(), REPL_USER, REPL_PASSWORD, gtid).unwrap();
        eprintln!("missing GTID {gtid}: {msg}");
    }
    // The master is still fine afterwards.
    assert_eq!(master.sql_value("SELECT 1").unwrap(), "1");
}
