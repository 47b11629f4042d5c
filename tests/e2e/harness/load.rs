//! The write load: a deterministic list of rounds written to database `ferro` on a master
//! through the `mysql` crate, in a background thread with a stop flag.
//!
//! It covers what a binlog server must carry: multi-statement transactions, DDL (CREATE /
//! ALTER TABLE), a rolled-back transaction, `FLUSH BINARY LOGS` in the middle, one
//! transaction of ~20 MB (many rows) and one row over 16 MB (a LONGBLOB: one binlog event
//! larger than a protocol packet). Every round is idempotent enough to be retried after a
//! lost connection (master restart): the load reconnects and goes on. It asserts nothing
//! about the replica; tests compare checksums afterwards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};

use super::mariadb::MariaDb;
use super::util::{fail, poll, Poll, Result};

/// The database the load writes to.
pub const LOAD_DB: &str = "ferro";

#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// Number of rounds; one round is one transaction (plus a special step at some rounds).
    pub rounds: u64,
    /// Rows inserted into ferro.t1 per round.
    pub rows_per_round: u64,
    /// Bytes of the one big transaction (rows of 2 KiB each); 0 = none.
    pub big_txn_bytes: u64,
    /// Bytes of the one big row (a LONGBLOB); 0 = none.
    pub big_row_bytes: u64,
    /// Pause after each round, to spread the load over time (for mid-load faults).
    pub pause_per_round: Duration,
}

impl LoadPlan {
    /// The load of the foundation tests: a few thousand rows, the 20 MB transaction and the
    /// 17 MB row.
    pub fn standard() -> LoadPlan {
        LoadPlan {
            rounds: 400,
            rows_per_round: 8,
            big_txn_bytes: 20 << 20,
            big_row_bytes: 17 << 20,
            pause_per_round: Duration::ZERO,
        }
    }

    /// The standard load spread over a few seconds, so that a test can break something in
    /// the middle of it.
    pub fn paced() -> LoadPlan {
        LoadPlan {
            pause_per_round: Duration::from_millis(15),
            ..LoadPlan::standard()
        }
    }

    /// A few small transactions (no big ones), for tests about something else.
    pub fn small() -> LoadPlan {
        LoadPlan {
            rounds: 30,
            rows_per_round: 4,
            big_txn_bytes: 0,
            big_row_bytes: 0,
            pause_per_round: Duration::ZERO,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct LoadStats {
    /// Rounds that committed.
    pub rounds_done: u64,
    /// Rounds that failed on a lost connection and were retried.
    pub retries: u64,
    /// New connections after a lost one.
    pub reconnects: u64,
}

/// A load running in a background thread. Dropping it stops and joins the thread.
pub struct Load {
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    rounds: u64,
    handle: Option<JoinHandle<Result<LoadStats>>>,
}

impl Load {
    /// Starts the load against 127.0.0.1:`port` (user root, no password) in a thread.
    pub fn spawn(port: u16, plan: LoadPlan) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let rounds = plan.rounds;
        let (stop2, progress2) = (stop.clone(), progress.clone());
        let handle = std::thread::Builder::new()
            .name("write-load".to_string())
            .spawn(move || Writer::new(port, plan, stop2, progress2).run())
            .expect("spawning the load thread");
        Load {
            stop,
            progress,
            rounds,
            handle: Some(handle),
        }
    }

    /// Runs the whole load in this thread.
    pub fn run(port: u16, plan: LoadPlan) -> Result<LoadStats> {
        Load::spawn(port, plan).finish()
    }

    /// Rounds committed so far.
    pub fn progress(&self) -> u64 {
        self.progress.load(Ordering::SeqCst)
    }

    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Waits until at least `rounds` rounds have committed (or the load ended).
    pub fn wait_progress(&self, rounds: u64, timeout: Duration) -> Result<()> {
        poll(&format!("the load to pass round {rounds}"), timeout, || {
            let done = self.progress();
            if done >= rounds {
                return Ok(Poll::Ready(()));
            }
            if self.handle.as_ref().is_some_and(JoinHandle::is_finished) {
                return fail(format!(
                    "the load ended after {done} rounds, before round {rounds}"
                ));
            }
            Ok(Poll::Pending(format!("{done} rounds done")))
        })
    }

    /// Waits for the load to finish all its rounds.
    pub fn finish(mut self) -> Result<LoadStats> {
        self.join()
    }

    /// Asks the load to stop after the current round and waits for it.
    pub fn stop(mut self) -> Result<LoadStats> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    fn join(&mut self) -> Result<LoadStats> {
        match self.handle.take() {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| fail("the load thread panicked")),
            None => fail("the load was already joined"),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// How long the load keeps trying to reconnect to a master that went away.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(120);
/// Tries per round before the load gives up (each after a reconnect).
const ROUND_TRIES_MAX: u32 = 5;

struct Writer {
    port: u16,
    plan: LoadPlan,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    stats: LoadStats,
}

impl Writer {
    fn new(port: u16, plan: LoadPlan, stop: Arc<AtomicBool>, progress: Arc<AtomicU64>) -> Self {
        Writer {
            port,
            plan,
            stop,
            progress,
            stats: LoadStats::default(),
        }
    }

    fn run(mut self) -> Result<LoadStats> {
        let mut conn = self.connect_retrying()?;
        self.with_retries(&mut conn, "setup", setup_statements())?;
        for round in 0..self.plan.rounds {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let statements = round_statements(&self.plan, round);
            self.with_retries(&mut conn, &format!("round {round}"), statements)?;
            self.stats.rounds_done += 1;
            self.progress.store(round + 1, Ordering::SeqCst);
            if !self.plan.pause_per_round.is_zero() {
                std::thread::sleep(self.plan.pause_per_round);
            }
        }
        Ok(self.stats)
    }

    /// Runs the statements of one step; on a lost connection reconnects and runs the whole
    /// step again (its statements are written to be safe to repeat).
    fn with_retries(&mut self, conn: &mut Conn, what: &str, statements: Vec<String>) -> Result<()> {
        let mut tries = 0;
        loop {
            tries += 1;
            match run_statements(conn, &statements) {
                Ok(()) => return Ok(()),
                Err((e, stmt)) if is_connection_error(&e) && tries < ROUND_TRIES_MAX => {
                    log_line(&format!(
                        "{what}: lost the connection ({e}) at {stmt:.80}; reconnecting"
                    ));
                    self.stats.retries += 1;
                    *conn = self.connect_retrying()?;
                    self.stats.reconnects += 1;
                }
                Err((e, stmt)) => {
                    return fail(format!(
                        "load {what} failed after {tries} tries: {e}\nstatement: {stmt:.300}"
                    ))
                }
            }
        }
    }

    fn connect_retrying(&self) -> Result<Conn> {
        let deadline = Instant::now() + RECONNECT_TIMEOUT;
        loop {
            match connect_root(self.port) {
                Ok(conn) => return Ok(conn),
                Err(e) if Instant::now() < deadline && !self.stop.load(Ordering::SeqCst) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return fail(format!(
                        "load: cannot connect to 127.0.0.1:{}: {e}",
                        self.port
                    ))
                }
            }
        }
    }
}

fn log_line(msg: &str) {
    eprintln!("[load] {msg}");
}

/// A root connection to a MariaDB server on 127.0.0.1 (TCP only, no extra queries).
pub fn connect_root(port: u16) -> std::result::Result<Conn, mysql::Error> {
    let opts = OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .max_allowed_packet(Some(1 << 30))
        .tcp_connect_timeout(Some(Duration::from_secs(10)))
        .read_timeout(Some(Duration::from_secs(300)))
        .write_timeout(Some(Duration::from_secs(300)));
    Conn::new(opts)
}

fn run_statements(
    conn: &mut Conn,
    statements: &[String],
) -> std::result::Result<(), (mysql::Error, String)> {
    for stmt in statements {
        conn.query_drop(stmt).map_err(|e| (e, stmt.clone()))?;
    }
    Ok(())
}

/// Errors that mean "the server went away", not "the statement is wrong".
fn is_connection_error(e: &mysql::Error) -> bool {
    match e {
        mysql::Error::MySqlError(err) => matches!(
            err.code,
            1053 /* ER_SERVER_SHUTDOWN */
                | 1317 /* ER_QUERY_INTERRUPTED */
                | 1927 /* ER_CONNECTION_KILLED */
                | 2006 | 2013 /* gone away, lost connection */
                | 4031 /* ER_CLIENT_INTERACTION_TIMEOUT */
        ),
        mysql::Error::IoError(_) | mysql::Error::DriverError(_) => true,
        _ => false,
    }
}

fn setup_statements() -> Vec<String> {
    [
        "CREATE DATABASE IF NOT EXISTS ferro",
        "CREATE TABLE IF NOT EXISTS ferro.t1 (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         k INT NOT NULL, v VARCHAR(255) NOT NULL, d DECIMAL(12,2), ts DATETIME(6) NOT NULL, \
         KEY (k)) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS ferro.t2 (id INT PRIMARY KEY, n BIGINT NOT NULL, \
         txt TEXT, f DOUBLE, u INT UNSIGNED, e ENUM('a','b','c'), dt DATE) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS ferro.nopk (a INT, b VARCHAR(32)) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS ferro.bulk (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
         k INT NOT NULL, pad VARCHAR(2048) NOT NULL) ENGINE=InnoDB",
        "CREATE TABLE IF NOT EXISTS ferro.big (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB",
    ]
    .map(String::from)
    .to_vec()
}

/// The statements of one round: one ordinary transaction, plus a special step at fixed
/// rounds (DDL, rollback, FLUSH BINARY LOGS, the big transaction, the big row).
fn round_statements(plan: &LoadPlan, round: u64) -> Vec<String> {
    let mut out = ordinary_transaction(plan, round);
    let n = plan.rounds.max(1);
    if round == n / 5 {
        out.push(
            "ALTER TABLE ferro.t1 ADD COLUMN IF NOT EXISTS extra INT NOT NULL DEFAULT 7".into(),
        );
        out.push(
            "CREATE TABLE IF NOT EXISTS ferro.t3 (id INT PRIMARY KEY, s VARCHAR(20)) ENGINE=InnoDB"
                .into(),
        );
        out.push("REPLACE INTO ferro.t3 VALUES (1, 'one'), (2, 'two'), (3, 'three')".into());
    }
    if round == n / 4 {
        out.push("START TRANSACTION".into());
        out.push("INSERT INTO ferro.t3 VALUES (100, 'rolled back')".into());
        out.push("ROLLBACK".into());
    }
    if round == n / 3 {
        out.push("CREATE TABLE IF NOT EXISTS ferro.t4 LIKE ferro.t2".into());
        out.push("INSERT IGNORE INTO ferro.t4 SELECT * FROM ferro.t2".into());
        out.push("ALTER TABLE ferro.t4 ADD INDEX IF NOT EXISTS idx_n (n)".into());
    }
    if round == n / 2 {
        out.push("FLUSH BINARY LOGS".into());
    }
    if round == n / 2 + 1 && plan.big_txn_bytes > 0 {
        // Rows of 2048 bytes generated on the server: the statement stays small, the
        // transaction in the binlog is big.
        let rows = plan.big_txn_bytes.div_ceil(2048);
        out.push("START TRANSACTION".into());
        out.push(format!(
            "INSERT INTO ferro.bulk (k, pad) SELECT seq, REPEAT(MD5(seq), 64) FROM ferro.seq_1_to_{rows}"
        ));
        out.push("UPDATE ferro.bulk SET k = k + 1 WHERE id % 100 = 0".into());
        out.push("COMMIT".into());
    }
    if round == 2 * n / 3 && plan.big_row_bytes > 0 {
        // One row bigger than a 16 MiB protocol packet: its rows event is split on the wire.
        let repeats = plan.big_row_bytes.div_ceil(16);
        out.push(format!(
            "REPLACE INTO ferro.big (id, b) VALUES (1, REPEAT('0123456789abcdef', {repeats}))"
        ));
    }
    if round == 3 * n / 4 {
        out.push("DROP TABLE IF EXISTS ferro.t4".into());
        out.push("CREATE TABLE IF NOT EXISTS ferro.t5 (id INT PRIMARY KEY, b BLOB)".into());
        out.push("REPLACE INTO ferro.t5 VALUES (1, UNHEX('00FF10')), (2, NULL)".into());
    }
    out
}

fn ordinary_transaction(plan: &LoadPlan, round: u64) -> Vec<String> {
    let values: Vec<String> = (0..plan.rows_per_round)
        .map(|i| {
            format!(
                "({round}, 'row-{round}-{i}-{:x}', {}.{:02}, NOW(6))",
                round.wrapping_mul(2654435761) ^ i,
                round * 3 + i,
                (round + i) % 100
            )
        })
        .collect();
    let id2 = round % 50;
    vec![
        "START TRANSACTION".into(),
        format!("INSERT INTO ferro.t1 (k, v, d, ts) VALUES {}", values.join(", ")),
        format!("UPDATE ferro.t1 SET v = CONCAT(LEFT(v, 200), '+'), d = d + 1 WHERE k = {}", round / 2),
        format!(
            "INSERT INTO ferro.t2 (id, n, txt, f, u, e, dt) VALUES ({id2}, {round}, REPEAT('t', {}), {round} / 7, {}, '{}', '2024-01-{:02}') \
             ON DUPLICATE KEY UPDATE n = n + VALUES(n), txt = VALUES(txt), f = VALUES(f)",
            round % 300,
            round * 1000,
            ["a", "b", "c"][(round % 3) as usize],
            round % 28 + 1
        ),
        format!("DELETE FROM ferro.t1 WHERE k = {} AND id % 3 = 0", round.saturating_sub(5)),
        format!("INSERT INTO ferro.nopk VALUES ({round}, 'x{round}')"),
        "COMMIT".into(),
    ]
}

/// A few direct writes on the master in a table of their own (no load needed).
pub fn write_marker(master: &MariaDb, tag: &str) {
    master
        .sql(&format!(
            "CREATE DATABASE IF NOT EXISTS {LOAD_DB};
             CREATE TABLE IF NOT EXISTS {LOAD_DB}.marker (tag VARCHAR(64) PRIMARY KEY, n INT);
             INSERT INTO {LOAD_DB}.marker VALUES ('{tag}-1', 1);
             INSERT INTO {LOAD_DB}.marker VALUES ('{tag}-2', 2);"
        ))
        .unwrap();
}
