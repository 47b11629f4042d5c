//! End-to-end tests: real MariaDB servers and real ferrobus processes on 127.0.0.1.
//!
//! One integration binary. `harness/` starts and stops everything; `smoke.rs` proves the
//! harness against MariaDB alone (no ferrobus); `foundation.rs` holds issue 2's tests of a
//! single ferrobus node between a master and its replicas and clients; `foundation_more.rs`
//! adds start points, the connection limit, heartbeats, syncer errors, persistence of
//! stopped parts and `ferrobus ctl`; `cluster.rs` holds issue 3's tests of a three-node Raft
//! cluster (failover, forwarding, full restart, membership); `chaos.rs` puts that cluster
//! through a seeded random series of kills, restarts and partitions under load;
//! `import_export.rs` holds issue 4's tests of native binlog files in and out (`ctl import`,
//! `ctl export`, `export`); `mysql_flavour.rs` its tests of MySQL-flavoured data (imported
//! MySQL binlog files served to MySQL-mode clients and pulled by a second node); `auth.rs`
//! has a node syncing from a node that serves with caching_sha2_password.
//!
//! Run with few threads (each test starts two or three servers): `make test`, or
//! `cargo test --test e2e -- --test-threads=2`. Prerequisites: scripts/install-test-deps.sh.

mod auth;
mod chaos;
mod cluster;
mod foundation;
mod foundation_more;
mod harness;
mod import_export;
mod mysql_flavour;
mod retention;
mod smoke;
