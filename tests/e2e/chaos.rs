//! Repeated faults under a write load: a three-node cluster (every peer port behind a proxy
//! the test controls) between a real MariaDB master and two real MariaDB replicas goes
//! through a seeded random series of faults while the master writes: kill -9 of the leader
//! and of a follower, SIGTERM and restart of the leader, the leader and a follower cut off
//! from the others and healed, kill -9 of every node at once. Every kind happens once per run, in an order and on nodes
//! the seed picks, plus one more fault of any kind; `FERROBUS_CHAOS_SEED=<n>` replays a run
//! (the seed is printed first).
//!
//! The replicas stay attached to their nodes through everything (one by GTID, one by file
//! and position; they reconnect when their node comes back). At the end, what must hold:
//! - both replicas equal the master (`CHECKSUM TABLE`), with no SQL error;
//! - every node serves the master's `@@gtid_binlog_pos`;
//! - every node serves binlog files byte-identical to the master's
//!   (`mariadb-binlog --raw`): nothing lost, nothing stored twice, nothing out of place, so
//!   no deposed leader appended and no transaction a dead leader left half-proposed is
//!   served;
//! - the master has exactly one binlog dump thread from the cluster.
//!
//! Waits are bounded polls; nothing asserts how long anything took.

use std::time::Duration;

use crate::harness::clients::{compare_dirs, mariadb_binlog_raw};
use crate::harness::cluster::{
    cut_off, leader_seen_by, raft_id, wait_status_everywhere, Cluster, LEADER_TIMEOUT,
};
use crate::harness::load::write_marker;
use crate::harness::mariadb::wait_dump_threads;
use crate::harness::proxy::PeerProxy;
use crate::harness::replica::assert_no_sql_error;
use crate::harness::*;

const SYNCER_ID: u32 = 101;
const SEED_ENV: &str = "FERROBUS_CHAOS_SEED";

/// How long a killed or cut-off node stays away before it is restarted or healed (long
/// enough for the others to notice: more than raft's election timeout here).
const AWAY: Duration = Duration::from_secs(3);

/// The load: small paced transactions over most of a minute (the faults take about as
/// long), with the harness's DDL,
/// rolled-back transaction, binlog rotation and one 2 MiB transaction in the middle.
fn chaos_plan() -> LoadPlan {
    LoadPlan {
        rounds: 2400,
        rows_per_round: 3,
        big_txn_bytes: 2 << 20,
        big_row_bytes: 0,
        pause_per_round: Duration::from_millis(10),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    KillLeader,
    KillFollower,
    RestartLeader,
    CutOffLeader,
    CutOffFollower,
    /// kill -9 of every node at once, then all restarted.
    KillAll,
}

const KINDS: [Fault; 6] = [
    Fault::KillLeader,
    Fault::KillFollower,
    Fault::RestartLeader,
    Fault::CutOffLeader,
    Fault::CutOffFollower,
    Fault::KillAll,
];

/// xorshift64*: enough randomness to vary the schedule, and replayable from its seed.
struct Rng(u64);

impl Rng {
    /// Seeds that differ in a few bits (clock readings) start far apart: the seed goes
    /// through one splitmix64 step first.
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)).max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV}={v:?} is not an unsigned integer")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// Every kind once, shuffled, then one more of any kind.
fn schedule(rng: &mut Rng) -> Vec<Fault> {
    let mut faults = KINDS.to_vec();
    for i in (1..faults.len()).rev() {
        faults.swap(i, rng.below(i + 1));
    }
    faults.push(KINDS[rng.below(KINDS.len())]);
    faults
}

/// The syncer's stored event count, asked through `via` (None while it answers non-200).
fn events_via(cluster: &Cluster, via: &str) -> Option<u64> {
    cluster
        .syncer_status_via(via)
        .ok()
        .flatten()
        .and_then(|s| s["events"].as_u64())
}

/// Writes a marker on the master and waits until the syncer, asked through `via`, has
/// stored more events than before: the cluster is syncing.
fn wait_syncing(cluster: &Cluster, master: &MariaDb, via: &str, tag: &str) {
    let before = events_via(cluster, via).unwrap_or(0);
    write_marker(master, tag);
    poll(
        &format!("the syncer (through {via}) to store the marker {tag}"),
        CATCH_UP_TIMEOUT,
        || {
            Ok(match events_via(cluster, via) {
                Some(n) if n > before => Poll::Ready(()),
                other => Poll::Pending(format!("events {other:?}, before {before}")),
            })
        },
    )
    .unwrap();
}

/// Waits until the members `others` agree on a leader that is not `away`.
fn wait_leader_among(cluster: &Cluster, others: &[String], away: &str) -> String {
    poll(
        &format!("{others:?} to agree on a leader other than {away}"),
        LEADER_TIMEOUT,
        || {
            let seen: Vec<Option<String>> =
                others.iter().map(|n| leader_seen_by(cluster, n)).collect();
            Ok(match &seen[..] {
                [Some(a), rest @ ..]
                    if a != away && rest.iter().all(|b| b.as_deref() == Some(a.as_str())) =>
                {
                    Poll::Ready(a.clone())
                }
                _ => Poll::Pending(format!("leaders seen: {seen:?}")),
            })
        },
    )
    .unwrap()
}

/// Inflicts `fault` and undoes it (restart, heal); returns when the cluster has a leader
/// again, every node is back and the syncer stores new writes.
fn inflict(
    cluster: &mut Cluster,
    proxies: &[PeerProxy],
    master: &MariaDb,
    fault: Fault,
    rng: &mut Rng,
    tag: &str,
) {
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    let followers = cluster.followers(&leader);
    let victim = match fault {
        Fault::KillLeader | Fault::RestartLeader | Fault::CutOffLeader => leader.clone(),
        Fault::KillFollower | Fault::CutOffFollower => {
            followers[rng.below(followers.len())].clone()
        }
        Fault::KillAll => "every node".to_string(),
    };
    let others = cluster.live_others(&victim);
    eprintln!("[chaos] {tag}: {fault:?} on {victim} (leader {leader})");
    match fault {
        Fault::KillLeader | Fault::KillFollower => {
            cluster.kill9(&victim);
            let now_leading = wait_leader_among(cluster, &others, &victim);
            wait_syncing(cluster, master, &now_leading, &format!("{tag}-away"));
            std::thread::sleep(AWAY);
            cluster.restart(&victim).unwrap();
        }
        Fault::RestartLeader => {
            let code = cluster.terminate(&victim).unwrap();
            assert_eq!(code, Some(0), "{victim}'s exit code after SIGTERM");
            let now_leading = wait_leader_among(cluster, &others, &victim);
            wait_syncing(cluster, master, &now_leading, &format!("{tag}-away"));
            cluster.restart(&victim).unwrap();
        }
        Fault::CutOffLeader | Fault::CutOffFollower => {
            let id = raft_id(cluster, &victim);
            cut_off(cluster, proxies, &victim, id, true);
            let now_leading = wait_leader_among(cluster, &others, &victim);
            wait_syncing(cluster, master, &now_leading, &format!("{tag}-away"));
            std::thread::sleep(AWAY);
            cut_off(cluster, proxies, &victim, id, false);
        }
        Fault::KillAll => {
            let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
            for name in &names {
                cluster.kill9(name);
            }
            std::thread::sleep(AWAY);
            for name in &names {
                cluster.restart(name).unwrap();
            }
        }
    }
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    wait_status_everywhere(cluster, "running");
    wait_syncing(cluster, master, &leader, &format!("{tag}-back"));
    eprintln!("[chaos] {tag}: back to three nodes, {leader} leads");
}

#[test]
fn cluster_survives_repeated_faults_under_load() {
    let seed = seed();
    eprintln!("[chaos] seed {seed} ({SEED_ENV}={seed} replays this schedule)");
    let mut rng = Rng::new(seed);
    let faults = schedule(&mut rng);
    eprintln!("[chaos] faults: {faults:?}");

    let master = MariaDb::start("chaos-master", MariaDbOpts::server_id(1)).unwrap();
    let by_gtid = MariaDb::start("chaos-replica-gtid", MariaDbOpts::server_id(2)).unwrap();
    let by_pos = MariaDb::start("chaos-replica-pos", MariaDbOpts::server_id(3)).unwrap();
    let (mut cluster, proxies) = Cluster::start_behind_proxies("chaos", 3).unwrap();
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    cluster
        .start_syncer_via(&leader, &master, SYNCER_ID)
        .unwrap();
    cluster.start_servers().unwrap();
    let first = master.first_binlog().unwrap();
    by_gtid
        .replicate_from(&cluster.member("n1").upstream(), &ReplMode::Gtid)
        .unwrap();
    by_pos
        .replicate_from(
            &cluster.member("n2").upstream(),
            &ReplMode::FilePos {
                file: first.clone(),
                pos: 4,
            },
        )
        .unwrap();

    let load = Load::spawn(master.port(), chaos_plan());
    let step = load.rounds() / (faults.len() as u64 + 1);
    for (k, fault) in faults.iter().enumerate() {
        load.wait_progress(step * (k as u64 + 1), CATCH_UP_TIMEOUT)
            .unwrap();
        let tag = format!("fault-{}", k + 1);
        eprintln!("[chaos] {tag} at load round {}", load.progress());
        inflict(&mut cluster, &proxies, &master, *fault, &mut rng, &tag);
    }
    let stats = load.finish().unwrap();
    eprintln!("[chaos] load done: {stats:?}");

    write_marker(&master, "chaos-end");
    let leader = cluster.wait_leader(LEADER_TIMEOUT).unwrap();
    cluster
        .wait_synced_via(&leader, &master, CATCH_UP_TIMEOUT)
        .unwrap();
    for m in &cluster.members {
        cluster
            .wait_serves_master(&m.name, &master, CATCH_UP_TIMEOUT)
            .unwrap();
    }
    for replica in [&by_gtid, &by_pos] {
        replica
            .wait_caught_up_with(&master, CATCH_UP_TIMEOUT)
            .unwrap();
        assert_no_sql_error(replica);
        assert_same_checksums(&master, replica, LOAD_DB).unwrap();
    }

    // Every node serves the master's binlog files, byte for byte.
    let work = WorkDir::new("chaos-fetch").unwrap();
    let master_source = Source {
        port: master.port(),
        user: REPL_USER.to_string(),
        password: REPL_PASSWORD.to_string(),
    };
    let from_master = work.join("master");
    mariadb_binlog_raw(&master_source, &first, &from_master).unwrap();
    let files = master.binary_logs().unwrap().len();
    assert!(files >= 2, "the load rotates the binlog: {files} file(s)");
    for m in &cluster.members {
        let from_node = work.join(&m.name);
        mariadb_binlog_raw(&m.source(), &first, &from_node).unwrap();
        let same = compare_dirs(&from_master, &from_node)
            .unwrap_or_else(|e| panic!("{} against the master: {}", m.name, e.0));
        assert_eq!(same, files, "{}", m.name);
    }
    wait_dump_threads(&master, 1);
}
