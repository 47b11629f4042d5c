//! Replication helpers on a MariaDB instance used as a replica: point it at an upstream (a
//! real master or a ferrobus binlog server), read SHOW SLAVE STATUS, wait for catch-up.
//!
//! Waiting fails early when a replication thread has stopped (an IO or SQL error that
//! replication will not recover from by itself); transient reconnects are waited out.

use std::collections::BTreeMap;
use std::time::Duration;

use super::mariadb::MariaDb;
use super::util::{fail, normalize_gtid_list, poll, Poll, Result};

/// Where a replica reads from.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub port: u16,
    pub user: String,
    pub password: String,
}

/// How a replica positions itself upstream.
#[derive(Clone, Debug)]
pub enum ReplMode {
    /// MASTER_USE_GTID=slave_pos (from the replica's gtid_slave_pos; empty = the start).
    Gtid,
    /// MASTER_USE_GTID=no with MASTER_LOG_FILE / MASTER_LOG_POS.
    FilePos { file: String, pos: u64 },
}

/// SHOW SLAVE STATUS as column name → value.
#[derive(Clone, Debug, Default)]
pub struct SlaveStatus(pub BTreeMap<String, String>);

impl SlaveStatus {
    pub fn get(&self, field: &str) -> &str {
        self.0.get(field).map(String::as_str).unwrap_or("")
    }

    /// A replication thread stopped by an error (it will not retry by itself).
    pub fn stopped_with_error(&self) -> bool {
        let sql_dead = self.get("Slave_SQL_Running") == "No";
        let io_dead = self.get("Slave_IO_Running") == "No";
        sql_dead || io_dead || !self.get("Last_SQL_Error").is_empty()
    }

    /// The fields that matter when something went wrong.
    pub fn summary(&self) -> String {
        [
            "Slave_IO_Running",
            "Slave_SQL_Running",
            "Last_IO_Errno",
            "Last_IO_Error",
            "Last_SQL_Errno",
            "Last_SQL_Error",
            "Master_Log_File",
            "Read_Master_Log_Pos",
            "Relay_Master_Log_File",
            "Exec_Master_Log_Pos",
            "Using_Gtid",
            "Gtid_IO_Pos",
        ]
        .iter()
        .map(|f| format!("{f}={:?}", self.get(f)))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

impl MariaDb {
    /// CHANGE MASTER TO the upstream and START SLAVE. Reconnects every second when the
    /// upstream goes away (MASTER_CONNECT_RETRY=1), so a restarted ferrobus is found quickly.
    pub fn replicate_from(&self, upstream: &Upstream, mode: &ReplMode) -> Result<()> {
        let position = match mode {
            ReplMode::Gtid => "MASTER_USE_GTID=slave_pos".to_string(),
            ReplMode::FilePos { file, pos } => {
                format!("MASTER_USE_GTID=no, MASTER_LOG_FILE='{file}', MASTER_LOG_POS={pos}")
            }
        };
        self.sql(&format!(
            "STOP SLAVE; RESET SLAVE ALL;
             CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='{}',
               MASTER_PASSWORD='{}', MASTER_CONNECT_RETRY=1, {position};
             START SLAVE;",
            upstream.port, upstream.user, upstream.password
        ))?;
        Ok(())
    }

    pub fn slave_status(&self) -> Result<SlaveStatus> {
        let rows = self.query_maps("SHOW SLAVE STATUS")?;
        Ok(SlaveStatus(rows.into_iter().next().unwrap_or_default()))
    }

    /// `@@gtid_slave_pos`, normalized.
    pub fn gtid_slave_pos(&self) -> Result<String> {
        Ok(normalize_gtid_list(
            &self.sql_value("SELECT @@GLOBAL.gtid_slave_pos")?,
        ))
    }

    /// Waits until this replica has applied everything `master` has written so far:
    /// gtid_slave_pos equals the master's gtid_binlog_pos (read once, now). Call it when the
    /// master has no more writes coming.
    pub fn wait_caught_up_with(&self, master: &MariaDb, timeout: Duration) -> Result<()> {
        self.wait_caught_up_checking(master, timeout, &|| Ok(()))
    }

    /// Like `wait_caught_up_with`, and fails as soon as `upstream_alive` fails (e.g. the
    /// ferrobus process between master and replica has exited).
    pub fn wait_caught_up_checking(
        &self,
        master: &MariaDb,
        timeout: Duration,
        upstream_alive: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        let target = master.gtid_binlog_pos()?;
        let desc = format!(
            "replica {} to reach {}'s gtid_binlog_pos {target}",
            self.name(),
            master.name()
        );
        poll(&desc, timeout, || {
            upstream_alive()?;
            let status = self.slave_status()?;
            if status.stopped_with_error() {
                return fail(format!(
                    "replication stopped on {}: {}",
                    self.name(),
                    status.summary()
                ));
            }
            let applied = self.gtid_slave_pos()?;
            if applied == target {
                return Ok(Poll::Ready(()));
            }
            Ok(Poll::Pending(format!(
                "gtid_slave_pos {applied:?}; {}",
                status.summary()
            )))
        })
    }

    /// Waits until the replica's IO thread reports `Slave_IO_Running=Yes`.
    pub fn wait_io_running(&self, timeout: Duration) -> Result<()> {
        poll(
            &format!("replica {} IO thread running", self.name()),
            timeout,
            || {
                let status = self.slave_status()?;
                if status.stopped_with_error() {
                    return fail(format!(
                        "replication stopped on {}: {}",
                        self.name(),
                        status.summary()
                    ));
                }
                Ok(if status.get("Slave_IO_Running") == "Yes" {
                    Poll::Ready(())
                } else {
                    Poll::Pending(status.summary())
                })
            },
        )
    }
}

/// Asserts (as an error) that master and replica have the same CHECKSUM TABLE for every table
/// of `db`, and that there is at least one table.
pub fn assert_same_checksums(master: &MariaDb, replica: &MariaDb, db: &str) -> Result<()> {
    let on_master = master.checksum_tables(db)?;
    let on_replica = replica.checksum_tables(db)?;
    if on_master.is_empty() {
        return fail(format!("no tables in {db} on {}", master.name()));
    }
    if on_master != on_replica {
        return fail(format!(
            "CHECKSUM TABLE differs:\n  {} {:?}\n  {} {:?}",
            master.name(),
            on_master,
            replica.name(),
            on_replica
        ));
    }
    Ok(())
}

/// Standard wait bound for a replica to catch up after a load (generous: 2 shared cores).
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(180);

/// Panics unless the replica's SQL thread reports no error.
pub fn assert_no_sql_error(replica: &MariaDb) {
    let status = replica.slave_status().unwrap();
    assert_eq!(
        status.get("Last_SQL_Error"),
        "",
        "replica {}: {}",
        replica.name(),
        status.summary()
    );
    assert_eq!(
        status.get("Last_SQL_Errno"),
        "0",
        "replica {}: {}",
        replica.name(),
        status.summary()
    );
}
