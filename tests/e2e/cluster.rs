//! Issue 3's end-to-end tests: a three-node ferrobus Raft cluster between a real MariaDB
//! master and real MariaDB replicas, all on 127.0.0.1.
//!
//! Covered: kill -9 of the leader under a write load (a new leader resumes the syncer, the
//! replicas end equal to the master), the syncer driven through a follower's API (it runs on
//! the leader, and a stop sticks across a leader change), a full cluster stop and start, and
//! membership (add a fourth node, remove it, a removal that would break the quorum).
//!
//! Each test owns its master, replicas and nodes; everything is stopped by pid when the test
//! ends, and a failing test prints every process's log. Waits are bounded polls; nothing
//! asserts how long something took. The one "nothing happens" check (a stopped syncer stays
//! stopped) watches for a bounded window longer than the 3 s a new leader has to resume.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::cluster::{
    cut_off, leader_seen_by, raft_id, wait_status_everywhere, Cluster, LEADER_TIMEOUT,
};
use crate::harness::load::write_marker;
use crate::harness::mariadb::{dump_threads, wait_dump_threads};
use crate::harness::node::run_ferrobus_ok;
use crate::harness::replica::assert_no_sql_error;
use crate::harness::*;

/// The server id ferrobus's syncer uses on the master.
const SYNCER_ID: u32 = 101;
const MASTER_ID: u32 = 1;

/// Longer than the 3 s within which a new leader must resume a desired syncer, with margin
/// for two shared cores: the window in which a stopped syncer must stay stopped.
const STAYS_STOPPED_WINDOW: Duration = Duration::from_secs(8);

/// Longer than raft's check-quorum interval (the election timeout, ~1-2 s here), after which
/// the leader no longer counts a dead voter as recently active.
const FAILURE_DETECTION_WAIT: Duration = Duration::from_secs(4);

/// A smaller version of the harness load, paced so that the leader can die in the middle:
/// a few hundred transactions, one 1 MiB transaction, DDL and a binlog rotation.
fn mid_load_plan() -> LoadPlan {
    LoadPlan {
        rounds: 240,
        rows_per_round: 4,
        big_txn_bytes: 1 << 20,
        big_row_bytes: 0,
        pause_per_round: Duration::from_millis(20),
    }
}

/// POST/DELETE with a JSON body: (status, reply JSON).
fn send_json(node: &Node, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    node.request_json(method, path, Some(&bytes)).unwrap()
}

/// DELETE /members `name` on `node`: the HTTP status and the reply.
fn remove_member(node: &Node, name: &str) -> (u16, Value) {
    send_json(node, "DELETE", "/members", &json!({ "name": name }))
}

/// POST /members on `via` with a removed member's `body` again: ids are never reused, so it
/// must be refused with a message.
fn assert_readd_refused(cluster: &Cluster, via: &str, removed: &str, body: &Value) {
    let (status, reply) = send_json(cluster.node(via), "POST", "/members", body);
    assert_ne!(
        status, 200,
        "re-adding removed {removed} was accepted: {reply}"
    );
    assert!(
        reply["message"].as_str().is_some_and(|m| !m.is_empty()),
        "re-adding {removed}: no error message: {reply}"
    );
    eprintln!("[cluster] re-adding {removed}: HTTP {status}: {reply}");
}

/// Names listed by GET /members on `name`, sorted.
fn member_names(cluster: &Cluster, name: &str) -> Vec<String> {
    let data = cluster.node(name).get_ok("/members").unwrap();
    let mut names: Vec<String> = data
        .as_array()
        .unwrap_or_else(|| panic!("GET /members on {name}: not a list: {data}"))
        .iter()
        .map(|m| m["name"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

/// Waits until GET /members on `name` lists exactly `want` (sorted). A follower applies a
/// membership change only when it next hears the leader's commit index, so right after the
/// DELETE answers it may still list the old configuration.
fn wait_member_names(cluster: &Cluster, name: &str, want: &[String]) {
    poll(
        &format!("GET /members on {name} to list {want:?}"),
        LEADER_TIMEOUT,
        || {
            let seen = member_names(cluster, name);
            Ok(if seen == want {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{seen:?}"))
            })
        },
    )
    .unwrap();
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `connected_since` of the downstream replica `server_id` on `name`'s binlog server.
fn connected_since(cluster: &Cluster, name: &str, server_id: u32) -> Option<Value> {
    let status = cluster.node(name).get_ok("/binlog/server/status").ok()?;
    status["slaves"]
        .as_array()?
        .iter()
        .find(|s| s["server_id"] == server_id)
        .map(|s| s["connected_since"].clone())
}

#[test]
fn cluster_leader_kill9_mid_load_replicas_stay_equal() {
    let master = MariaDb::start("ck-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let on_follower = MariaDb::start("ck-replica-f", MariaDbOpts::server_id(2)).unwrap();
    let on_leader = MariaDb::start("ck-replica-l", MariaDbOpts::server_id(3)).unwrap();
    let mut cluster = Cluster::start("kill9", 3).unwrap();

    let old_leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    let followers = cluster.followers(&old_leader);
    let follower = followers[0].clone();
    cluster
        .start_syncer_via(&follower, &master, SYNCER_ID)
        .unwrap();
    cluster.start_servers().unwrap();
    on_follower
        .replicate_from(&cluster.member(&follower).upstream(), &ReplMode::Gtid)
        .unwrap();
    on_leader
        .replicate_from(&cluster.member(&old_leader).upstream(), &ReplMode::Gtid)
        .unwrap();
    on_follower.wait_io_running(CATCH_UP_TIMEOUT).unwrap();
    on_leader.wait_io_running(CATCH_UP_TIMEOUT).unwrap();

    let load = Load::spawn(master.port(), mid_load_plan());
    load.wait_progress(load.rounds() / 3, CATCH_UP_TIMEOUT)
        .unwrap();
    // The follower's replica is attached and has data before the crash.
    let since_before = poll(
        "the follower's binlog server to list its replica",
        Duration::from_secs(60),
        || {
            Ok(match connected_since(&cluster, &follower, 2) {
                Some(v) => Poll::Ready(v),
                None => Poll::Pending("not listed".into()),
            })
        },
    )
    .unwrap();

    cluster.kill9(&old_leader);
    let rounds_at_kill = load.progress();
    assert!(
        rounds_at_kill < load.rounds(),
        "the load had finished ({rounds_at_kill} rounds) before the kill: not mid-load"
    );
    eprintln!("[cluster] killed leader {old_leader} after {rounds_at_kill} rounds");

    let new_leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    assert_ne!(new_leader, old_leader);
    // The new leader resumes the syncer by itself; every live node reports it running.
    let seen = wait_status_everywhere(&cluster, "running");
    let events_before = seen[0].1["events"].as_u64().unwrap_or(0);
    write_marker(&master, "after-kill");
    let via = cluster.live_others(&new_leader)[0].clone();
    poll(
        "the resumed syncer to store more events",
        CATCH_UP_TIMEOUT,
        || {
            Ok(match cluster.syncer_status_via(&via)? {
                Some(s) if s["events"].as_u64().unwrap_or(0) > events_before => Poll::Ready(()),
                other => Poll::Pending(format!("{other:?}")),
            })
        },
    )
    .unwrap();

    // The replica that read from the dead leader moves to a live node, by GTID.
    let live_target = cluster.live_others(&follower)[0].clone();
    on_leader
        .replicate_from(&cluster.member(&live_target).upstream(), &ReplMode::Gtid)
        .unwrap();

    let stats = load.finish().unwrap();
    eprintln!("[cluster] load done: {stats:?}");
    write_marker(&master, "end");
    cluster
        .wait_synced_via(&follower, &master, CATCH_UP_TIMEOUT)
        .unwrap();
    for name in cluster.live_others("") {
        cluster
            .wait_serves_master(&name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }
    for replica in [&on_follower, &on_leader] {
        replica
            .wait_caught_up_with(&master, CATCH_UP_TIMEOUT)
            .unwrap();
        assert_no_sql_error(replica);
        assert_same_checksums(&master, replica, LOAD_DB).unwrap();
    }
    // The replica on the follower streamed through the leader's death on one connection.
    assert_eq!(
        connected_since(&cluster, &follower, 2),
        Some(since_before),
        "the replica on {follower} reconnected during the failover"
    );

    // The crashed node comes back and catches up.
    cluster.restart(&old_leader).unwrap();
    cluster
        .wait_serves_master(&old_leader, &master, CATCH_UP_TIMEOUT)
        .unwrap();
    cluster.wait_leader(LEADER_TIMEOUT).unwrap();
}

#[test]
fn syncer_through_follower_runs_on_leader_and_stop_sticks() {
    let master = MariaDb::start("cs-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let mut cluster = Cluster::start("stopsticks", 3).unwrap();
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    let followers = cluster.followers(&leader);
    let (fa, fb) = (followers[0].clone(), followers[1].clone());
    cluster.start_servers().unwrap();

    cluster.start_syncer_via(&fa, &master, SYNCER_ID).unwrap();
    Load::run(master.port(), LoadPlan::small()).unwrap();
    cluster
        .wait_synced_via(&fb, &master, CATCH_UP_TIMEOUT)
        .unwrap();
    // One syncer, on the leader (the leader answers its own status, unforwarded).
    wait_dump_threads(&master, 1);
    let on_leader = cluster.syncer_status_via(&leader).unwrap().unwrap();
    assert_eq!(
        on_leader["status"], "running",
        "status on the leader: {on_leader}"
    );
    assert_eq!(on_leader["syncer_id"], SYNCER_ID, "{on_leader}");
    assert_eq!(on_leader["mysql_addr"], master.addr(), "{on_leader}");
    for name in [&fa, &fb] {
        let s = cluster.syncer_status_via(name).unwrap().unwrap();
        for field in [
            "status",
            "syncer_id",
            "mysql_addr",
            "last_binlog_file",
            "last_file_position",
            "executed_gtid_set",
        ] {
            assert_eq!(
                s[field], on_leader[field],
                "{field} through {name} differs from the leader's: {s} vs {on_leader}"
            );
        }
    }
    for name in ["n1", "n2", "n3"] {
        cluster
            .wait_serves_master(name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }
    assert_raft_status(&cluster, &leader);
    assert_metrics(&cluster, &leader, &fa);

    // Stop through a follower.
    let (status, reply) = cluster
        .node(&fb)
        .request_json("PUT", "/binlog/syncer/stop", None)
        .unwrap();
    assert_eq!(status, 200, "stop through {fb}: {reply}");
    wait_status_everywhere(&cluster, "stopped");
    wait_dump_threads(&master, 0);

    // Kill the leader; the stop holds under the new one.
    cluster.kill9(&leader);
    let new_leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    assert_ne!(new_leader, leader);
    let stored: Vec<(String, String)> = [&fa, &fb]
        .iter()
        .map(|n| (n.to_string(), cluster.served_gtid_pos(n).unwrap()))
        .collect();
    write_marker(&master, "while-stopped");
    let master_pos = master.gtid_binlog_pos().unwrap();
    assert_stays_stopped(&cluster, &master, &stored, &master_pos);

    // The old leader comes back (its own data dir once saw the syncer running): still
    // stopped everywhere, nothing new stored.
    cluster.restart(&leader).unwrap();
    cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    let before = stored[0].1.clone();
    poll(
        &format!("restarted {leader} to serve what the others hold"),
        CATCH_UP_TIMEOUT,
        || {
            Ok(match cluster.served_gtid_pos(&leader) {
                Ok(pos) if pos == before => Poll::Ready(()),
                Ok(pos) => Poll::Pending(format!("serves {pos:?}")),
                Err(e) => Poll::Pending(e.0),
            })
        },
    )
    .unwrap();
    let mut stored_all = stored.clone();
    stored_all.push((leader.clone(), before));
    assert_stays_stopped(&cluster, &master, &stored_all, &master_pos);

    // Started again through a follower, it resumes from what is stored and catches up.
    let via = cluster.followers(&cluster.wait_leader(LEADER_TIMEOUT).unwrap())[0].clone();
    cluster.start_syncer_via(&via, &master, SYNCER_ID).unwrap();
    cluster
        .wait_synced_via(&via, &master, CATCH_UP_TIMEOUT)
        .unwrap();
    for name in ["n1", "n2", "n3"] {
        cluster
            .wait_serves_master(name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }
}

/// `GET /metrics` on the leader and on a follower of a cluster whose syncer runs and whose
/// nodes all serve: Prometheus text with each node's part.
fn assert_metrics(cluster: &Cluster, leader: &str, follower: &str) {
    let scrape = |name: &str| {
        let (status, text) = cluster.node(name).request("GET", "/metrics", None).unwrap();
        assert_eq!(status, 200, "GET /metrics on {name}: {text}");
        text
    };
    let has = |text: &str, line: &str| text.lines().any(|l| l == line);
    let on_leader = scrape(leader);
    for line in [
        "ferrobus_raft_is_leader 1",
        "ferrobus_raft_voters 3",
        "ferrobus_syncer_state{state=\"running\"} 1",
        "ferrobus_binlog_server_running 1",
        "ferrobus_removed 0",
    ] {
        assert!(has(&on_leader, line), "{line} on {leader}:\n{on_leader}");
    }
    let followers = on_leader
        .lines()
        .filter(|l| l.starts_with("ferrobus_raft_peer_matched_index{"))
        .count();
    assert_eq!(followers, 2, "{on_leader}");
    let on_follower = scrape(follower);
    assert!(
        has(&on_follower, "ferrobus_raft_is_leader 0"),
        "{on_follower}"
    );
    assert!(
        has(&on_follower, "ferrobus_raft_has_leader 1"),
        "{on_follower}"
    );
    assert!(!on_follower.contains("ferrobus_syncer_"), "{on_follower}");
    let stored = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("ferrobus_binlog_stored_bytes "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(stored(&on_follower) > 0, "{on_follower}");
}

/// `GET /raft/status` on every node of a synced, idle cluster led by `leader`: the roles
/// and the leader agree, the leader sees both followers caught up and streaming (matched =
/// its last index), every node has applied its whole log and timed its log syncs.
fn assert_raft_status(cluster: &Cluster, leader: &str) {
    let on_leader = cluster.node(leader).get_ok("/raft/status").unwrap();
    assert_eq!(on_leader["role"], "leader", "{on_leader}");
    assert_eq!(on_leader["name"], leader, "{on_leader}");
    let leader_id = on_leader["id"].clone();
    assert_eq!(on_leader["leader_id"], leader_id, "{on_leader}");
    let mut followers = cluster.followers(leader);
    followers.sort();
    let status = poll(
        "the leader to see both followers caught up",
        CATCH_UP_TIMEOUT,
        || {
            let s = cluster.node(leader).get_ok("/raft/status")?;
            let last = s["last_index"].as_u64().unwrap_or(0);
            let peers = s["peers"].as_array().cloned().unwrap_or_default();
            let mut names: Vec<String> = peers
                .iter()
                .map(|p| p["name"].as_str().unwrap_or("").to_string())
                .collect();
            names.sort();
            let caught_up = peers.iter().all(|p| {
                p["matched"].as_u64() == Some(last)
                    && p["state"] == "replicate"
                    && p["heard_ms_ago"].as_u64().is_some()
            });
            Ok(
                if names == followers && caught_up && s["applied"].as_u64() == Some(last) {
                    Poll::Ready(s)
                } else {
                    Poll::Pending(s.to_string())
                },
            )
        },
    )
    .unwrap();
    let last = status["last_index"].as_u64().unwrap();
    for name in &followers {
        let s = poll(
            &format!("{name} to apply index {last}"),
            CATCH_UP_TIMEOUT,
            || {
                let s = cluster.node(name).get_ok("/raft/status")?;
                Ok(if s["applied"].as_u64() >= Some(last) {
                    Poll::Ready(s)
                } else {
                    Poll::Pending(s.to_string())
                })
            },
        )
        .unwrap();
        assert_eq!(s["role"], "follower", "{name}: {s}");
        assert_eq!(s["leader_id"], leader_id, "{name}: {s}");
        assert_eq!(s["term"], status["term"], "{name}: {s}");
        assert_eq!(s["peers"], json!([]), "{name}: {s}");
    }
    for name in ["n1", "n2", "n3"] {
        let s = cluster.node(name).get_ok("/raft/status").unwrap();
        let sync = &s["log_sync"];
        let count = sync["count"].as_u64().unwrap_or(0);
        assert!(count > 0, "{name} timed no log sync: {s}");
        let buckets: u64 = sync["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[1].as_u64().unwrap())
            .sum();
        assert_eq!(
            buckets, count,
            "{name}: the buckets do not add up to the count: {s}"
        );
        assert!(
            sync["p50_us"].as_u64() <= sync["max_us"].as_u64(),
            "{name}: {s}"
        );
    }
}

/// For `STAYS_STOPPED_WINDOW`: the status through every live node stays "stopped", the
/// master has no dump thread, and every node in `stored` serves what it served before (not
/// the master's newer `master_pos`).
fn assert_stays_stopped(
    cluster: &Cluster,
    master: &MariaDb,
    stored: &[(String, String)],
    master_pos: &str,
) {
    let end = Instant::now() + STAYS_STOPPED_WINDOW;
    while Instant::now() < end {
        for m in cluster.live() {
            if let Some(s) = cluster.syncer_status_via(&m.name).unwrap() {
                assert_eq!(s["status"], "stopped", "status through {}: {s}", m.name);
            }
        }
        assert_eq!(dump_threads(master), 0, "a syncer connected to the master");
        for (name, pos) in stored {
            let now = cluster.served_gtid_pos(name).unwrap();
            assert_eq!(
                &now, pos,
                "{name} stored new data while the syncer is stopped"
            );
            assert_ne!(now, master_pos, "{name} has the master's latest writes");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn full_cluster_stop_and_start_resumes() {
    let master = MariaDb::start("cf-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let replica = MariaDb::start("cf-replica", MariaDbOpts::server_id(2)).unwrap();
    let mut cluster = Cluster::start("fullstop", 3).unwrap();
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    cluster
        .start_syncer_via(&leader, &master, SYNCER_ID)
        .unwrap();
    cluster.start_servers().unwrap();
    replica
        .replicate_from(&cluster.member("n2").upstream(), &ReplMode::Gtid)
        .unwrap();
    Load::run(master.port(), LoadPlan::small()).unwrap();
    cluster
        .wait_synced_via("n1", &master, CATCH_UP_TIMEOUT)
        .unwrap();
    replica
        .wait_caught_up_with(&master, CATCH_UP_TIMEOUT)
        .unwrap();

    for name in ["n1", "n2", "n3"] {
        let code = cluster.terminate(name).unwrap();
        assert_eq!(code, Some(0), "ferrobus {name} exit after SIGTERM");
    }
    // Writes while the whole cluster is down.
    Load::run(master.port(), LoadPlan::small()).unwrap();
    write_marker(&master, "while-down");

    // Alone, a node cannot catch up: its binlog server waits, and says so.
    cluster.restart("n1").unwrap();
    let alone = cluster.node("n1").get_ok("/binlog/server/status").unwrap();
    assert_eq!(alone["status"], "starting", "{alone}");
    assert!(alone["addr"].is_string(), "{alone}");
    for name in ["n2", "n3"] {
        cluster.restart(name).unwrap();
    }
    cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    wait_status_everywhere(&cluster, "running");
    wait_until("n1's binlog server to resume", CATCH_UP_TIMEOUT, || {
        cluster
            .node("n1")
            .get_ok("/binlog/server/status")
            .is_ok_and(|s| s["status"] == "running")
    })
    .unwrap();
    cluster
        .wait_synced_via("n3", &master, CATCH_UP_TIMEOUT)
        .unwrap();
    for name in ["n1", "n2", "n3"] {
        cluster
            .wait_serves_master(name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }
    replica
        .wait_caught_up_with(&master, CATCH_UP_TIMEOUT)
        .unwrap();
    assert_no_sql_error(&replica);
    assert_same_checksums(&master, &replica, LOAD_DB).unwrap();
}

/// Waits until the raft status on `asker` (the leader) lists `voters` voters and no
/// learner: a member added through `POST /members` joins as a learner and the leader
/// promotes it once it has caught up.
fn wait_voters(cluster: &Cluster, asker: &str, voters: usize) {
    poll(
        &format!("{asker} to list {voters} voters and no learner"),
        CATCH_UP_TIMEOUT,
        || {
            let status = cluster.node(asker).get_ok("/raft/status")?;
            let counts = (
                status["voters"].as_array().map_or(0, Vec::len),
                status["learners"].as_array().map_or(0, Vec::len),
            );
            Ok(if counts == (voters, 0) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("voters and learners: {counts:?}"))
            })
        },
    )
    .unwrap();
}

/// Asserts that GET /members on `asker` lists exactly `want` (sorted), none a learner.
fn assert_voting_members(cluster: &Cluster, asker: &str, want: &[&str]) {
    let data = cluster.node(asker).get_ok("/members").unwrap();
    let members = data.as_array().expect("a list of members");
    let mut listed: Vec<String> = members
        .iter()
        .map(|m| m["name"].as_str().unwrap_or("").to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, names(want), "GET /members on {asker}: {data}");
    assert!(
        members
            .iter()
            .all(|m| m["role"] == "voter" && m["isLearner"] == false),
        "GET /members on {asker}: a member is not a voter: {data}"
    );
}

#[test]
fn members_add_and_remove() {
    let master = MariaDb::start("cm-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let replica = MariaDb::start("cm-replica", MariaDbOpts::server_id(2)).unwrap();
    let mut cluster = Cluster::start("members", 3).unwrap();
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    let follower = cluster.followers(&leader)[0].clone();
    cluster
        .start_syncer_via(&leader, &master, SYNCER_ID)
        .unwrap();
    cluster.start_servers().unwrap();
    Load::run(master.port(), LoadPlan::small()).unwrap();
    cluster
        .wait_synced_via(&follower, &master, CATCH_UP_TIMEOUT)
        .unwrap();
    for name in ["n1", "n2", "n3"] {
        assert_eq!(member_names(&cluster, name), names(&["n1", "n2", "n3"]));
    }

    // Adding a voter again changes nothing: still a voter, its announced addresses kept.
    let entry = |name: &str| -> Value {
        let data = cluster.node(&leader).get_ok("/members").unwrap();
        let found = data.as_array().unwrap().iter().find(|m| m["name"] == name);
        found.cloned().unwrap_or(Value::Null)
    };
    let before = entry(&follower);
    assert!(
        !before["adminURLs"].as_array().unwrap().is_empty(),
        "{before}"
    );
    let again = json!({"name": follower, "peer_url": cluster.member(&follower).peer_addr()});
    let (status, reply) = send_json(cluster.node(&leader), "POST", "/members", &again);
    assert_eq!(status, 200, "POST /members {follower} again: {reply}");
    assert_eq!(entry(&follower), before, "{follower} added again");
    wait_voters(&cluster, &leader, 3);

    // A member added but never started stays a learner (the quorum is untouched), and is
    // removed as one.
    let n5 = json!({"name": "n5", "peer_url": format!("127.0.0.1:{}", Cluster::new_peer_port())});
    let (status, reply) = send_json(cluster.node(&follower), "POST", "/members", &n5);
    assert_eq!(status, 200, "POST /members n5: {reply}");
    assert_eq!(entry("n5")["role"], "learner", "{reply}");
    let (status, reply) = remove_member(cluster.node(&follower), "n5");
    assert_eq!(status, 200, "DELETE /members n5, a learner: {reply}");
    wait_voters(&cluster, &leader, 3);
    assert_voting_members(&cluster, &leader, &["n1", "n2", "n3"]);

    // Add n4 through a follower, then start it as a joiner.
    let n4_peer = cluster.add_and_join(&follower, "n4").unwrap();
    cluster
        .wait_serves_master("n4", &master, CATCH_UP_TIMEOUT)
        .unwrap();
    replica
        .replicate_from(&cluster.member("n4").upstream(), &ReplMode::Gtid)
        .unwrap();
    write_marker(&master, "with-n4");
    cluster
        .wait_serves_master("n4", &master, CATCH_UP_TIMEOUT)
        .unwrap();
    replica
        .wait_caught_up_with(&master, CATCH_UP_TIMEOUT)
        .unwrap();
    assert_no_sql_error(&replica);
    assert_same_checksums(&master, &replica, LOAD_DB).unwrap();
    // n4 joined as a learner; caught up, it is a voter now.
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    wait_voters(&cluster, &leader, 4);
    for name in ["n1", "n2", "n3", "n4"] {
        wait_member_names(&cluster, name, &names(&["n1", "n2", "n3", "n4"]));
        assert_voting_members(&cluster, name, &["n1", "n2", "n3", "n4"]);
    }

    // Remove n4 through a follower (not n4); the three others go on.
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    let via = cluster
        .followers(&leader)
        .into_iter()
        .find(|n| n != "n4")
        .unwrap();
    let (status, reply) = remove_member(cluster.node(&via), "n4");
    assert_eq!(status, 200, "DELETE /members n4 through {via}: {reply}");
    let code = cluster.terminate("n4").unwrap();
    eprintln!("[cluster] n4 exit after removal and SIGTERM: {code:?}");
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    assert_ne!(leader, "n4");
    for name in ["n1", "n2", "n3"] {
        assert_eq!(member_names(&cluster, name), names(&["n1", "n2", "n3"]));
    }
    Load::run(master.port(), LoadPlan::small()).unwrap();
    cluster
        .wait_synced_via(&via, &master, CATCH_UP_TIMEOUT)
        .unwrap();
    for name in ["n1", "n2", "n3"] {
        cluster
            .wait_serves_master(name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }

    // Ids are never reused: the same name and peer address again is refused.
    let add = json!({"name": "n4", "peer_url": format!("127.0.0.1:{n4_peer}")});
    assert_readd_refused(&cluster, &leader, "n4", &add);
}

/// A one-node cluster grows to three: each member added joins as a learner, catches up and
/// is promoted by the leader (a second voter could not be added to a node alone directly:
/// the quorum of two would need the newcomer before it exists). The three then outlive the
/// founder: after its kill -9 the two it added elect a leader that resumes the syncer, and
/// a replica on one of them ends equal to the master. The founder, restarted with its
/// one-member command line, rejoins them (it once waited a minute to lead alone).
#[test]
fn one_node_grows_to_three_then_loses_the_founder() {
    let master = MariaDb::start("cg-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let replica = MariaDb::start("cg-replica", MariaDbOpts::server_id(2)).unwrap();
    let mut cluster = Cluster::start("grow", 1).unwrap();
    assert_eq!(cluster.wait_leader(LEADER_TIMEOUT).unwrap(), "n1");
    sync_a_small_load(&cluster, &master, "n1");

    for (name, voters) in [("n2", 2), ("n3", 3)] {
        cluster.add_and_join("n1", name).unwrap();
        wait_voters(&cluster, "n1", voters);
        cluster
            .wait_serves_master(name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }
    for name in ["n1", "n2", "n3"] {
        wait_member_names(&cluster, name, &names(&["n1", "n2", "n3"]));
        assert_voting_members(&cluster, name, &["n1", "n2", "n3"]);
    }
    replica
        .replicate_from(&cluster.member("n2").upstream(), &ReplMode::Gtid)
        .unwrap();
    replica.wait_io_running(CATCH_UP_TIMEOUT).unwrap();

    cluster.kill9("n1");
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    assert_ne!(leader, "n1");
    wait_status_everywhere(&cluster, "running");
    two_left_go_on(
        &cluster,
        &master,
        &leader,
        &names(&["n2", "n3"]),
        "after-founder-kill",
    );
    replica
        .wait_caught_up_with(&master, CATCH_UP_TIMEOUT)
        .unwrap();
    assert_no_sql_error(&replica);
    assert_same_checksums(&master, &replica, LOAD_DB).unwrap();

    cluster.restart("n1").unwrap();
    write_marker(&master, "founder-back");
    cluster
        .wait_serves_master("n1", &master, CATCH_UP_TIMEOUT)
        .unwrap();
    wait_member_names(&cluster, "n1", &names(&["n1", "n2", "n3"]));
    assert_voting_members(&cluster, "n1", &["n1", "n2", "n3"]);
}

#[test]
fn members_remove_one_cluster_continues() {
    let master = MariaDb::start("cr-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let mut cluster = Cluster::start("remove", 3).unwrap();
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    let followers = cluster.followers(&leader);
    let (via, removed) = (followers[0].clone(), followers[1].clone());
    sync_a_small_load(&cluster, &master, &via);
    for name in ["n1", "n2", "n3"] {
        assert_eq!(member_names(&cluster, name), names(&["n1", "n2", "n3"]));
    }

    // Remove a follower through the other follower (forwarded to the leader).
    let (status, reply) = remove_member(cluster.node(&via), &removed);
    assert_eq!(
        status, 200,
        "DELETE /members {removed} through {via}: {reply}"
    );
    // The removed node, still running, knows it: its /health says so and its binlog server
    // stops, rather than serve a binlog that no longer grows.
    poll(
        &format!("{removed} to report itself removed"),
        LEADER_TIMEOUT,
        || {
            let health = cluster.node(&removed).get_ok("/health")?;
            let server = cluster.node(&removed).get_ok("/binlog/server/status")?;
            Ok(
                if health["status"] == "removed" && server["status"] == "stopped" {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("health {health}, server {server}"))
                },
            )
        },
    )
    .unwrap();
    let code = cluster.terminate(&removed).unwrap();
    eprintln!("[cluster] {removed} exit after removal and SIGTERM: {code:?}");
    let mut left = vec![leader.clone(), via.clone()];
    left.sort();
    assert_eq!(cluster.wait_leader(LEADER_TIMEOUT).unwrap(), leader);
    for name in &left {
        wait_member_names(&cluster, name, &left);
    }

    // The two left go on: new writes are synced and served by both.
    two_left_go_on(&cluster, &master, &via, &left, "after-remove");

    // Ids are never reused: the removed name at its old peer address is refused.
    let again = json!({"name": removed, "peer_url": cluster.member(&removed).peer_addr()});
    assert_readd_refused(&cluster, &leader, &removed, &again);
}

/// `PUT /members` moves a member to a new peer address; restarted there (flags naming the
/// new address), it keeps the raft id the membership knows, rejoins, and serves what the
/// master writes meanwhile. Before, its id was derived again from the new address, and the
/// moved node was cut off from the cluster for good.
#[test]
fn members_update_moves_a_member_that_rejoins_at_its_new_address() {
    let master = MariaDb::start("cu-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let mut cluster = Cluster::start("moved", 3).unwrap();
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    let moved = cluster.followers(&leader)[0].clone();
    sync_a_small_load(&cluster, &master, &leader);
    let id_before = raft_id(&cluster, &moved);

    let new_port = Cluster::new_peer_port();
    let new_url = format!("127.0.0.1:{new_port}");
    let (status, reply) = send_json(
        cluster.node(&moved),
        "PUT",
        "/members",
        &json!({"name": moved, "new_peer_url": new_url}),
    );
    assert_eq!(status, 200, "PUT /members {moved} → {new_url}: {reply}");
    cluster.restart_moved(&moved, new_port).unwrap();
    cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    write_marker(&master, "after-move");
    cluster
        .wait_serves_master(&moved, &master, CATCH_UP_TIMEOUT)
        .unwrap();
    assert_eq!(
        raft_id(&cluster, &moved),
        id_before,
        "the moved member's id"
    );
    let own = cluster.node(&moved).get_ok("/raft/status").unwrap();
    assert_eq!(
        own["id"]
            .as_str()
            .map(|id| u64::from_str_radix(id, 16).unwrap()),
        Some(id_before),
        "the moved node runs under the id the membership knows: {own}"
    );
    let listed = cluster.node(&leader).get_ok("/members").unwrap();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == moved.as_str())
        .cloned()
        .unwrap();
    assert_eq!(entry["peerURLs"], json!([new_url]), "{listed}");
}

/// Starts the syncer through `via`, every member's binlog server, and a small load on the
/// master, and waits until the cluster has stored all of it.
fn sync_a_small_load(cluster: &Cluster, master: &MariaDb, via: &str) {
    cluster.start_syncer_via(via, master, SYNCER_ID).unwrap();
    cluster.start_servers().unwrap();
    Load::run(master.port(), LoadPlan::small()).unwrap();
    cluster
        .wait_synced_via(via, master, CATCH_UP_TIMEOUT)
        .unwrap();
}

/// A clean stop of the leader (SIGTERM, as in a rolling restart) hands leadership to a
/// follower first: the leader names it in its log, exits 0, and the named follower leads
/// and syncs on.
#[test]
fn a_stopping_leader_hands_leadership_over() {
    let master = MariaDb::start("ho-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let mut cluster = Cluster::start("handover", 3).unwrap();
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    sync_a_small_load(&cluster, &master, &leader);
    let ids: Vec<(String, u64)> = cluster
        .followers(&leader)
        .into_iter()
        .map(|name| {
            let id = raft_id(&cluster, &name);
            (name, id)
        })
        .collect();
    let log_path = cluster.node(&leader).log_path().to_path_buf();
    assert_eq!(cluster.terminate(&leader).unwrap(), Some(0));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let (heir, _) = ids
        .iter()
        .find(|(_, id)| log.contains(&format!("handed leadership to node {id:x} before stopping")))
        .unwrap_or_else(|| panic!("{leader} names no follower it handed over to:\n{log}"));
    let (other, _) = ids.iter().find(|(name, _)| name != heir).unwrap();
    wait_until(&format!("{other} to follow {heir}"), LEADER_TIMEOUT, || {
        leader_seen_by(&cluster, other).as_deref() == Some(heir.as_str())
    })
    .unwrap();
    write_marker(&master, "after-hand-over");
    for name in [heir, other] {
        cluster
            .wait_serves_master(name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }
}

/// A node that was down while a member moved restarts with a membership table that names
/// the old address; the moved member leads. The moved leader's hello says where it listens
/// now, so the node answers it there and catches up (it stayed behind for good before).
#[test]
fn a_node_down_during_a_move_catches_up_from_the_moved_leader() {
    let master = MariaDb::start("bm-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let mut cluster = Cluster::start("behind-move", 3).unwrap();
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    let followers = cluster.followers(&leader);
    let (moved, stale) = (followers[0].clone(), followers[1].clone());
    sync_a_small_load(&cluster, &master, &leader);

    // `stale` stops before the move: its table keeps the old address.
    assert_eq!(cluster.terminate(&stale).unwrap(), Some(0));
    assert_leader_misses(&cluster, &leader, &stale, &moved);
    let new_port = Cluster::new_peer_port();
    let (status, reply) = send_json(
        cluster.node(&leader),
        "PUT",
        "/members",
        &json!({"name": moved, "new_peer_url": format!("127.0.0.1:{new_port}")}),
    );
    assert_eq!(status, 200, "PUT /members {moved}: {reply}");
    cluster.restart_moved(&moved, new_port).unwrap();
    // Leadership goes to the moved member: restart whoever else leads until it does.
    let mut now_leading = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    for _ in 0..10 {
        if now_leading == moved {
            break;
        }
        cluster.restart(&now_leading).unwrap();
        now_leading = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    }
    assert_eq!(now_leading, moved, "the moved member never took the lead");

    write_marker(&master, "moved-leads");
    cluster.restart(&stale).unwrap();
    for m in &cluster.members {
        cluster
            .wait_serves_master(&m.name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }
}

/// The leader's `GET /cluster` and `ctl cluster` tell a stopped member (`down`) from a
/// live one (`up`) by how long ago the leader heard from each.
fn assert_leader_misses(cluster: &Cluster, leader: &str, down: &str, up: &str) {
    let node = cluster.node(leader);
    let heard = |members: &Value, name: &str| {
        members
            .as_array()
            .and_then(|list| list.iter().find(|m| m["name"] == name))
            .map(|m| m["heard_ms_ago"].as_u64())
    };
    poll(
        "the leader to miss the stopped member",
        CATCH_UP_TIMEOUT,
        || {
            let members = node.get_ok("/cluster")?;
            Ok(match (heard(&members, down), heard(&members, up)) {
                (Some(Some(gone)), Some(Some(live))) if gone > 3_000 && live < 2_500 => {
                    Poll::Ready(())
                }
                _ => Poll::Pending(members.to_string()),
            })
        },
    )
    .unwrap();
    let admin = node.admin_addr();
    let text = run_ferrobus_ok(&["ctl", "--admin", &admin, "cluster"]).unwrap();
    assert!(
        text.contains(&format!("the leader has not heard from {down} (")),
        "{text}"
    );
    assert!(!text.contains(&format!("{up} (")), "{text}");
    // A follower has no such view; it points to the leader.
    let text =
        run_ferrobus_ok(&["ctl", "--admin", &cluster.node(up).admin_addr(), "cluster"]).unwrap();
    assert!(
        text.contains(&format!("ferrobus ctl --admin {admin} cluster")),
        "{text}"
    );
}

#[test]
fn removing_the_leader_hands_leadership_over_first() {
    remove_the_leader("rmleader", false);
}

/// The same asked through a follower: one call removes the leader (the follower sends it
/// on to the new leader after the handover), not a 503 to retry.
#[test]
fn removing_the_leader_through_a_follower_takes_one_call() {
    remove_the_leader("rmleader-f", true);
}

/// raft-rs cannot run a leader that removed itself: asked to (on itself, or through a
/// follower when `via_follower`), the leader hands leadership to another voter and the new
/// leader removes it; the syncer moves along.
fn remove_the_leader(test: &str, via_follower: bool) {
    let master =
        MariaDb::start(&format!("{test}-master"), MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let mut cluster = Cluster::start(test, 3).unwrap();
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    sync_a_small_load(&cluster, &master, &leader);

    let via = if via_follower {
        cluster.followers(&leader)[0].clone()
    } else {
        leader.clone()
    };
    let (status, reply) = remove_member(cluster.node(&via), &leader);
    assert_eq!(
        status, 200,
        "DELETE /members {leader} through {via}: {reply}"
    );
    let mut left = cluster.followers(&leader);
    left.sort();
    for name in &left {
        wait_member_names(&cluster, name, &left);
    }
    let log = std::fs::read_to_string(cluster.node(&leader).log_path()).unwrap();
    assert!(
        log.contains("leadership handed to node"),
        "{leader} did not hand leadership over; its log:\n{log}"
    );
    // It was never a leader outside its own configuration (raft-rs aborts such a node):
    // it is still running and stops cleanly.
    let code = cluster.terminate(&leader).unwrap();
    assert_eq!(code, Some(0), "{leader} exit after its removal and SIGTERM");
    let new_leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    assert!(
        left.contains(&new_leader),
        "{new_leader} leads, not one of {left:?}"
    );

    two_left_go_on(
        &cluster,
        &master,
        &new_leader,
        &left,
        "after-leader-removal",
    );
}

/// After a removal: new writes on the master are synced (status through `via`) and
/// served by every node `left`.
fn two_left_go_on(cluster: &Cluster, master: &MariaDb, via: &str, left: &[String], marker: &str) {
    Load::run(master.port(), LoadPlan::small()).unwrap();
    write_marker(master, marker);
    cluster
        .wait_synced_via(via, master, CATCH_UP_TIMEOUT)
        .unwrap();
    for name in left {
        cluster
            .wait_serves_master(name, master, CATCH_UP_TIMEOUT)
            .unwrap();
    }
}

#[test]
fn members_remove_breaking_quorum_is_refused() {
    let mut cluster = Cluster::start("quorum", 3).unwrap();
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    let followers = cluster.followers(&leader);
    let (alive, dead) = (followers[0].clone(), followers[1].clone());
    cluster.kill9(&dead);
    assert_eq!(cluster.wait_leader(LEADER_TIMEOUT).unwrap(), leader);
    // The leader counts a voter as active while it heard from it within the last check-quorum
    // interval (raft's election timeout); give it that long to notice the death. Not a timing
    // assertion: only a wait for the failure detector.
    std::thread::sleep(FAILURE_DETECTION_WAIT);

    // Removing the live follower would leave {leader, dead}: one active of two voters.
    let (status, reply) = remove_member(cluster.node(&leader), &alive);
    eprintln!("[cluster] DELETE {alive} with {dead} down: HTTP {status}: {reply}");
    let message = reply["message"].as_str().unwrap_or("");
    assert!(
        status == 409 && message.contains("quorum"),
        "removing {alive} while {dead} is down (it would leave no quorum) must be refused \
         with 409 and a message about the quorum; got HTTP {status}: {reply}"
    );
    // The cluster still works: same leader, three members, a member change is possible.
    assert_eq!(cluster.wait_leader(LEADER_TIMEOUT).unwrap(), leader);
    assert_eq!(member_names(&cluster, &alive), names(&["n1", "n2", "n3"]));
    // Removing the dead one keeps a quorum of two: accepted.
    let (status, reply) = remove_member(cluster.node(&alive), &dead);
    assert_eq!(status, 200, "removing the dead {dead}: {reply}");
    let mut left = vec![leader.clone(), alive.clone()];
    left.sort();
    assert_eq!(member_names(&cluster, &leader), left);
}

/// The leader cut off from the other two (a proxy in front of every peer port refuses its
/// connections both ways): it stops appending, the majority elects a leader whose syncer
/// continues, and after the heal the old leader's log matches the others'. The master never
/// has more than one dump thread from the cluster.
#[test]
fn cut_off_leader_stops_appending_and_majority_continues() {
    let master = MariaDb::start("cp-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    let (cluster, proxies) = Cluster::start_behind_proxies("partition", 3).unwrap();
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    cluster
        .start_syncer_via(&leader, &master, SYNCER_ID)
        .unwrap();
    cluster.start_servers().unwrap();
    write_marker(&master, "before");
    for m in &cluster.members {
        cluster
            .wait_serves_master(&m.name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }

    // Cut the leader off: its proxy refuses everything, the others' refuse it.
    let leader_id = raft_id(&cluster, &leader);
    cut_off(&cluster, &proxies, &leader, leader_id, true);
    let cut_at = cluster.served_gtid_pos(&leader).unwrap();
    let others = cluster.live_others(&leader);
    let new_leader = poll("the majority to elect a new leader", LEADER_TIMEOUT, || {
        let seen: Vec<Option<String>> =
            others.iter().map(|n| leader_seen_by(&cluster, n)).collect();
        Ok(match &seen[..] {
            [Some(a), Some(b)] if a == b && *a != leader => Poll::Ready(a.clone()),
            _ => Poll::Pending(format!("leaders seen by {others:?}: {seen:?}")),
        })
    })
    .unwrap();

    // The master keeps writing; the new leader's syncer stores it, the cut-off node cannot.
    write_marker(&master, "during");
    for name in &others {
        cluster
            .wait_serves_master(name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }
    assert_eq!(
        cluster.served_gtid_pos(&leader).unwrap(),
        cut_at,
        "the cut-off old leader {leader} appended while {new_leader} led"
    );
    assert!(
        dump_threads(&master) <= 1,
        "two syncers dump from the master"
    );

    // Heal: the old leader rejoins as a follower and its log matches the others'.
    cut_off(&cluster, &proxies, &leader, leader_id, false);
    write_marker(&master, "after");
    for m in &cluster.members {
        cluster
            .wait_serves_master(&m.name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }
    let positions: Vec<String> = cluster
        .members
        .iter()
        .map(|m| cluster.served_gtid_pos(&m.name).unwrap())
        .collect();
    assert!(
        positions.iter().all(|p| *p == positions[0]),
        "the nodes serve different positions after the heal: {positions:?}"
    );
    wait_dump_threads(&master, 1);
}
