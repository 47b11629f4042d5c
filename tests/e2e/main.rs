//! End-to-end tests: real MariaDB servers and real ferrobus processes on 127.0.0.1.
//!
//! One integration binary. `harness/` starts and stops everything; `smoke.rs` proves the
//! harness against MariaDB alone (no ferrobus); `foundation.rs` holds issue 2's tests of a
//! single ferrobus node between a master and its replicas and clients.
//!
//! Run with few threads (each test starts two or three servers): `make test`, or
//! `cargo test --test e2e -- --test-threads=2`. Prerequisites: scripts/install-test-deps.sh.

mod foundation;
mod harness;
mod smoke;
