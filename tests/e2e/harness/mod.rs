//! The end-to-end test harness: real MariaDB servers, real ferrobus processes, independent
//! binlog clients, a write load, and abuse helpers.
//!
//! Rules it keeps: every process it starts is stopped by its pid when its owner is dropped,
//! pass or fail; a failing test (panicking thread) prints the log tails of every process
//! involved; only 127.0.0.1 is used; waits are bounded polls, never timing assertions; a
//! missing prerequisite fails with "run scripts/install-test-deps.sh", never skips.

#![allow(dead_code)] // not every test uses every helper

pub mod abuse;
pub mod clients;
pub mod cluster;
pub mod load;
pub mod mariadb;
pub mod mysql_data;
pub mod node;
pub mod process;
pub mod proxy;
pub mod replica;
pub mod util;
pub mod wire;

pub use clients::Source;
pub use load::{Load, LoadPlan, LOAD_DB};
pub use mariadb::{MariaDb, MariaDbOpts, REPL_PASSWORD, REPL_USER};
pub use node::{Node, FERRO_PASSWORD, FERRO_USER};
pub use replica::{assert_same_checksums, ReplMode, Upstream, CATCH_UP_TIMEOUT};
#[allow(unused_imports)]
pub use util::{free_port, poll, wait_until, Poll, Result, WorkDir};
