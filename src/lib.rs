//! ferrobus: a Raft-replicated MySQL/MariaDB binlog server.
//!
//! A node pulls the binary log from a real master as a replica would (the syncer), keeps
//! every event in a durable segmented log on disk, and serves that log to downstream
//! replicas and CDC clients exactly as the master would, by GTID or by file and position.
//! It is driven through an HTTP admin API.
//!
//! # Layout
//!
//! - [`limits`]: every bound, as a named constant.
//! - [`mysql`]: the MySQL wire protocol, pure (bytes ↔ values).
//! - [`net`]: blocking packet connections and the MySQL client used by the syncer.
//! - [`binlog`]: what a binlog is, pure: events, checksums, GTIDs, transactions, files.
//! - [`storage`]: the durable segmented log of entries (later the Raft log).
//! - [`store`]: the binlog store over that log: entry payloads, indexes, reading cursor,
//!   and the watermark that wakes waiting readers.
//! - [`consensus`]: Raft (raft-rs) over the durable log: storage, the Ready-loop driver, and
//!   the peer transport (being wired into the daemon; see issue 3).
//! - [`syncer`]: the replica client that pulls the master's binlog into the store.
//! - [`server`]: the binlog server that streams stored events to downstream replicas.
//! - [`api`]: the HTTP admin API.
//! - [`config`], [`cli`], [`ctl`], [`daemon`]: configuration, command line, the admin
//!   client, and the process that ties the threads together.

pub mod api;
pub mod binlog;
pub mod cli;
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
