//! Issue 4 (import and export of native binlog files), end to end against real ferrobus
//! processes: every MySQL fixture (tests/data/mysql, provenance in its README) imported with
//! `ferrobus ctl import` comes back byte-identical from `ferrobus ctl export` on the running
//! node and from `ferrobus export` on its stopped data directory; the three-file kingbus
//! chain imports as one chain in one `ctl` call; truncated, damaged, non-binlog and
//! out-of-order files, and any import while a syncer is configured, are refused with a
//! clear message and leave the store as it was; and an import sent to a follower of a
//! three-node cluster goes through the leader to every node.
//!
//! Expectations come from the fixture bytes only. No timing assertions: bounded polls.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::harness::cluster::Cluster;
use crate::harness::mysql_data::{
    export_offline, export_offline_file, fixture_path, import_bytes, KINGBUS_CHAIN,
};
use crate::harness::node::{run_ferrobus, run_ferrobus_ok};
use crate::harness::util::fail;
use crate::harness::*;

/// The fixtures imported one per node, under their own file names.
const SINGLE_FIXTURES: [&str; 5] = [
    "binlog-invisible-columns.000001",
    "mysql-5.7.21-bin.checksum-crc32",
    "mysql-enum-string-set.000001",
    "mysql_type_bit.000001",
    "transaction_compression.000001",
];

const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `ferrobus ctl --admin A import [--name NAME] FILES...`.
fn ctl_import(admin: &str, first_name: Option<&str>, fixtures: &[&str]) -> (i32, String, String) {
    let paths: Vec<PathBuf> = fixtures.iter().map(|f| fixture_path(f)).collect();
    let mut args = vec!["ctl", "--admin", admin, "import"];
    if let Some(name) = first_name {
        args.extend(["--name", name]);
    }
    args.extend(paths.iter().map(|p| path_str(p)));
    run_ferrobus(&args).unwrap()
}

/// Asserts that `dir` holds exactly `expected` (stored name, fixture file), byte for byte.
fn assert_exported(dir: &Path, expected: &[(&str, &str)]) {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut names: Vec<String> = expected.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(found, names, "files exported to {}", dir.display());
    for (name, fixture_name) in expected {
        let got = std::fs::read(dir.join(name)).unwrap();
        let want = fixture_bytes(fixture_name);
        assert!(
            got == want,
            "{name} exported from {} differs from the fixture {fixture_name} ({} vs {} bytes, \
             first difference at {:?})",
            dir.display(),
            got.len(),
            want.len(),
            got.iter().zip(&want).position(|(a, b)| a != b)
        );
    }
}

/// `GET /binlog/files` as (name, start_pos, end_pos) triples.
fn stored_files(node: &Node) -> Vec<(String, u64, u64)> {
    let data = node.get_ok("/binlog/files").unwrap();
    data.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["start_pos"].as_u64().unwrap(),
                f["end_pos"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// One node: import `files` (stored name, fixture) in one `ctl import`, export them back
/// through `ctl export` while it runs and `ferrobus export` once it is stopped.
fn round_trip(work: &WorkDir, tag: &str, files: &[(&str, &str)]) {
    let mut node = Node::start(&work.join(tag)).unwrap();
    let admin = node.admin_addr();
    let fixtures: Vec<&str> = files.iter().map(|(_, f)| *f).collect();
    let first_name = (files[0].0 != files[0].1).then_some(files[0].0);
    let (code, stdout, stderr) = ctl_import(&admin, first_name, &fixtures);
    assert_eq!(code, 0, "import of {fixtures:?}: {stdout}\n{stderr}");
    for (name, fixture_name) in files {
        let size = fixture_bytes(fixture_name).len();
        assert!(
            stdout.contains(&format!("imported {name}: ")) && stdout.contains(&format!("..{size}")),
            "ctl import output names {name} and its end {size}: {stdout}"
        );
    }
    let listed = stored_files(&node);
    let expected: Vec<(String, u64, u64)> = files
        .iter()
        .map(|(n, f)| (n.to_string(), 4, fixture_bytes(f).len() as u64))
        .collect();
    assert_eq!(listed, expected, "GET /binlog/files");

    let live = work.join(&format!("{tag}-ctl-export"));
    let out =
        run_ferrobus_ok(&["ctl", "--admin", &admin, "export", "--to", path_str(&live)]).unwrap();
    assert_exported(&live, files);
    assert!(out.contains(&format!("exported {}", files[0].0)), "{out}");
    // A second export into the same folder is refused unless --force.
    let (code, _, stderr) =
        run_ferrobus(&["ctl", "--admin", &admin, "export", "--to", path_str(&live)]).unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    run_ferrobus_ok(&[
        "ctl",
        "--admin",
        &admin,
        "export",
        "--to",
        path_str(&live),
        "--force",
    ])
    .unwrap();
    assert_exported(&live, files);

    assert_eq!(node.terminate().unwrap(), Some(0));
    let offline = work.join(&format!("{tag}-offline-export"));
    export_offline(node.data_dir(), &offline).unwrap();
    assert_exported(&offline, files);
    // Only one file, by name.
    let one = work.join(&format!("{tag}-offline-one"));
    let last = files[files.len() - 1];
    export_offline_file(node.data_dir(), &one, last.0).unwrap();
    assert_exported(&one, &[last]);
}

/// Every fixture imports and exports back byte-identical, online and offline; the kingbus
/// chain does so as one chain imported in one call.
#[test]
fn every_fixture_round_trips_byte_identical() {
    let work = WorkDir::new("imex-fixtures").unwrap();
    for (i, name) in SINGLE_FIXTURES.iter().enumerate() {
        round_trip(&work, &format!("single{i}"), &[(name, name)]);
    }
    let chain: Vec<(&str, &str)> = KINGBUS_CHAIN.iter().map(|(f, n)| (*n, *f)).collect();
    round_trip(&work, "kingbus", &chain);
}

/// Truncated, damaged, non-binlog and out-of-order files, and imports while a syncer is
/// configured, are refused with a message saying why; the store is unchanged after each.
#[test]
fn bad_imports_are_refused_and_change_nothing() {
    let work = WorkDir::new("imex-refusals").unwrap();
    let node = Node::start(&work.join("node")).unwrap();
    let admin = node.admin_addr();
    let (code, out, err) = ctl_import(&admin, Some(KINGBUS_CHAIN[0].1), &[KINGBUS_CHAIN[0].0]);
    assert_eq!(code, 0, "{out}\n{err}");
    let before = stored_files(&node);
    let snapshot = |tag: &str| {
        let dir = work.join(&format!("export-{tag}"));
        run_ferrobus_ok(&["ctl", "--admin", &admin, "export", "--to", path_str(&dir)]).unwrap();
        dir
    };
    let assert_unchanged = |tag: &str| {
        assert_eq!(stored_files(&node), before, "store after {tag}");
        assert_exported(&snapshot(tag), &[(KINGBUS_CHAIN[0].1, KINGBUS_CHAIN[0].0)]);
    };
    let next = fixture_bytes(KINGBUS_CHAIN[1].0);
    let next_name = KINGBUS_CHAIN[1].1;

    let (status, message) = import_bytes(&node, next_name, &next[..next.len() - 7]).unwrap();
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("truncated"), "{message}");
    assert_unchanged("truncated");

    let mut flipped = next.clone();
    flipped[next.len() / 2] ^= 0x04;
    let (status, message) = import_bytes(&node, next_name, &flipped).unwrap();
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("CRC32"), "{message}");
    assert_unchanged("flipped");

    let (status, message) = import_bytes(&node, next_name, b"SELECT 1;\n").unwrap();
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("not a binlog"), "{message}");
    assert_unchanged("not-a-binlog");

    // Out of order: .000011 rotates to .000012, so .000013 cannot follow it.
    let (code, stdout, stderr) =
        ctl_import(&admin, Some(KINGBUS_CHAIN[2].1), &[KINGBUS_CHAIN[2].0]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("mysql_bin.000012") && stderr.contains("HTTP 409"),
        "{stderr}"
    );
    assert_unchanged("out-of-order");
    // ctl catches a broken chain before sending anything: nothing can be known to follow
    // a MariaDB file its master was still writing.
    let (code, _, stderr) = ctl_import(
        &admin,
        Some(KINGBUS_CHAIN[1].1),
        &["../mariadb/bin.000007-open", KINGBUS_CHAIN[1].0],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("neither a ROTATE nor a STOP") && stderr.contains("nothing was imported"),
        "{stderr}"
    );
    assert_unchanged("broken-chain");

    // A syncer configured (its master does not even answer): imports are refused.
    let syncer = json!({
        "syncer_id": 4242,
        "mysql_addr": format!("127.0.0.1:{}", free_port()),
        "mysql_user": "repl",
        "mysql_password": "x",
    });
    node.put_ok("/binlog/syncer/start", &syncer).unwrap();
    let (status, message) = import_bytes(&node, next_name, &next).unwrap();
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("syncer"), "{message}");
    assert_unchanged("syncer-configured");
    node.put_ok("/binlog/syncer/stop", &json!({})).unwrap();

    // The right file is still accepted afterwards.
    let (status, message) = import_bytes(&node, next_name, &next).unwrap();
    assert_eq!(status, 200, "{message}");
    assert_eq!(stored_files(&node).len(), 2);
}

/// An import sent to a follower goes through the leader to every node; any node exports
/// the files byte-identical.
#[test]
fn import_through_a_follower_reaches_every_node() {
    // The export folders live in a WorkDir, removed when the test ends, pass or fail.
    let work = WorkDir::new("imex-cluster").unwrap();
    let cluster = Cluster::start("imex", 3).unwrap();
    let leader = cluster.wait_leader(CLUSTER_TIMEOUT).unwrap();
    let followers = cluster.followers(&leader);
    let via = cluster.node(&followers[0]);
    let fixtures: Vec<&str> = KINGBUS_CHAIN.iter().map(|(f, _)| *f).collect();
    let (code, stdout, stderr) = ctl_import(&via.admin_addr(), Some(KINGBUS_CHAIN[0].1), &fixtures);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let expected: Vec<(String, u64, u64)> = KINGBUS_CHAIN
        .iter()
        .map(|(f, n)| (n.to_string(), 4, fixture_bytes(f).len() as u64))
        .collect();
    let chain: Vec<(&str, &str)> = KINGBUS_CHAIN.iter().map(|(f, n)| (*n, *f)).collect();
    for member in cluster.live() {
        let node = &member.node;
        poll(
            &format!("the imported chain on {}", member.name),
            CLUSTER_TIMEOUT,
            || {
                let files = stored_files(node);
                Ok(if files == expected {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("{files:?}"))
                })
            },
        )
        .unwrap();
        let dir = work.join(&format!("export-{}", member.name));
        run_ferrobus_ok(&[
            "ctl",
            "--admin",
            &node.admin_addr(),
            "export",
            "--to",
            path_str(&dir),
        ])
        .unwrap();
        assert_exported(&dir, &chain);
    }
    if cluster.live().len() != 3 {
        fail::<()>("a node died during the import".to_string()).unwrap();
    }
}

/// Sends the head of an import and `body` (a part of the declared length) on a raw
/// connection, which stays open: the caller reads the reply, or leaves it stalled.
fn start_upload(node: &Node, name: &str, declared: u64, body: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(node.admin_addr()).unwrap();
    // Not a timing assertion: a reply that never comes fails the test instead of hanging it.
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        conn,
        "POST /binlog/import?file={name} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n"
    )
    .unwrap();
    conn.write_all(body).unwrap();
    conn
}

/// A doomed import (the name is stored already) is refused before its body is uploaded:
/// the reply comes while most of the declared body was never sent. A stalled upload of the
/// right next file holds nothing: another import of it goes through meanwhile.
#[test]
fn doomed_imports_are_refused_before_the_upload_and_a_stalled_one_blocks_nothing() {
    use std::io::Read;
    let work = WorkDir::new("imex-early").unwrap();
    let node = Node::start(&work.join("node")).unwrap();
    let first = fixture_bytes(KINGBUS_CHAIN[0].0);
    let (status, message) = import_bytes(&node, KINGBUS_CHAIN[0].1, &first).unwrap();
    assert_eq!(status, 200, "{message}");

    let mut conn = start_upload(&node, KINGBUS_CHAIN[0].1, 1 << 30, &first[..1000]);
    let mut reply = Vec::new();
    let _ = conn.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("HTTP/1.1 409") && reply.contains("stored already"),
        "{reply}"
    );

    // Half of the next file, then nothing more: the upload stalls with its connection open.
    let next = fixture_bytes(KINGBUS_CHAIN[1].0);
    let stalled = start_upload(
        &node,
        KINGBUS_CHAIN[1].1,
        next.len() as u64,
        &next[..next.len() / 2],
    );
    let (status, message) = import_bytes(&node, KINGBUS_CHAIN[1].1, &next).unwrap();
    assert_eq!(status, 200, "{message}");
    assert_eq!(stored_files(&node).len(), 2);
    drop(stalled);
}
