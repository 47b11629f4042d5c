//! ferrobus: a Raft-replicated MySQL/MariaDB binlog server.
//!
//! A node pulls the binary log from a real MariaDB or MySQL master as a replica would (the
//! syncer), replicates every event through Raft to the other nodes of its cluster, keeps it
//! in a durable segmented log on disk (the Raft log), and serves that log to downstream
//! replicas and CDC clients exactly as the master would, by GTID or by file and position.
//! It is driven through an HTTP admin API; native binlog files can be imported and exported.
//!
//! # Layout
//!
//! - [`limits`]: every bound, as a named constant.
//! - [`clock`]: wall-clock time as Unix seconds.
//! - [`mysql`]: the MySQL wire protocol, pure (bytes ↔ values), password proofs included.
//! - [`net`]: blocking packet connections and the MySQL client used by the syncer.
//! - [`binlog`]: what a binlog is, pure: events, checksums, GTIDs, transactions, files.
//! - [`storage`]: the durable segmented log of entries (the Raft log).
//! - [`store`]: the binlog store over that log: entry payloads, indexes, reading cursor,
//!   export to native files, and the watermark that wakes waiting readers.
//! - [`consensus`]: Raft (raft-rs) over the durable log: storage, the Ready-loop driver, the
//!   raft thread, the peer transport and the replicated cluster state.
//! - [`syncer`]: the replica client that pulls a master's binlog (MariaDB or MySQL).
//! - [`server`]: the binlog server: logins, statements, and dumps to downstream replicas.
//! - [`api`]: the HTTP admin API, with forwarding to the leader.
//! - [`config`], [`cli`], [`ctl`], [`daemon`]: configuration, command line, the admin
//!   client, and the process that ties the threads together (state machine, leader duties,
//!   retention, import, offline export).

pub mod api;
pub mod binlog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod consensus;
pub mod ctl;
pub mod daemon;
pub mod limits;
pub mod mysql;
pub mod net;
pub mod server;
pub mod storage;
pub mod store;
pub mod syncer;
