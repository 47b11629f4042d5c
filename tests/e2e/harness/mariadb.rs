//! A throwaway MariaDB server for one test: its own directory, port, socket and server id,
//! started with `--no-defaults` (never /etc/mysql, never the system instance).
//!
//! `sql` talks to it through the `mariadb` command-line client (statements on stdin, so size
//! is not limited by argv). Drop stops the server by pid and, when the test is failing,
//! prints the tail of its error log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{describe_status, run_command, Proc};
use super::util::{
    fail, free_port, normalize_gtid_list, poll, print_log_tail, require_tool, shorten, Context,
    Poll, Result, WorkDir,
};

/// The replication account created on every instance (outside the binlog).
pub const REPL_USER: &str = "repl";
pub const REPL_PASSWORD: &str = "replpass";

/// How long a start (install + first connection) may take before it is an error.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long one `sql` call may take (the 20 MB transaction included).
const SQL_TIMEOUT: Duration = Duration::from_secs(300);
/// Lines of the error log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

#[derive(Clone, Debug)]
pub struct MariaDbOpts {
    pub server_id: u32,
    /// Binary log on (`--log-bin`). Replicas keep it on too (log-slave-updates), so any
    /// instance can be a master.
    pub log_bin: bool,
    /// Extra `mariadbd` arguments, appended last.
    pub extra_args: Vec<String>,
}

impl MariaDbOpts {
    pub fn server_id(server_id: u32) -> MariaDbOpts {
        MariaDbOpts {
            server_id,
            log_bin: true,
            extra_args: Vec::new(),
        }
    }
}

pub struct MariaDb {
    name: String,
    port: u16,
    opts: MariaDbOpts,
    datadir: PathBuf,
    socket: PathBuf,
    error_log: PathBuf,
    proc: Option<Proc>,
    // Declared last: dropped after the process is stopped.
    work: WorkDir,
}

impl MariaDb {
    /// Creates a fresh data directory, starts the server on a free port, waits until it
    /// accepts connections and creates the replication user (with sql_log_bin=0).
    pub fn start(name: &str, opts: MariaDbOpts) -> Result<MariaDb> {
        require_tool("mariadbd")?;
        require_tool("mariadb")?;
        let work = WorkDir::new(&format!("mariadb-{name}"))?;
        let datadir = work.join("data");
        let error_log = work.join("error.log");
        let socket = socket_path(&work)?;
        install_db(&work, &datadir)?;
        let mut db = MariaDb {
            name: name.to_string(),
            port: free_port(),
            opts,
            datadir,
            socket,
            error_log,
            proc: None,
            work,
        };
        db.spawn_and_wait()?;
        db.sql(&format!(
            "SET sql_log_bin=0;
             CREATE USER {REPL_USER}@'%' IDENTIFIED BY '{REPL_PASSWORD}';
             GRANT REPLICATION SLAVE, BINLOG MONITOR, REPLICATION SLAVE ADMIN ON *.* TO {REPL_USER}@'%';
             SET sql_log_bin=1;"
        ))
        .context(|| format!("creating the replication user on {name}"))?;
        Ok(db)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:<port>"
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn server_id(&self) -> u32 {
        self.opts.server_id
    }

    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    pub fn error_log(&self) -> &Path {
        &self.error_log
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::is_running)
    }

    fn server_args(&self) -> Vec<String> {
        let d = self.datadir.display();
        let mut args = vec![
            "--no-defaults".to_string(), // must be first, or /etc/mysql is read
            "--user=root".to_string(),
            format!("--datadir={d}"),
            format!("--socket={}", self.socket.display()),
            format!("--pid-file={d}/mariadbd.pid"),
            format!("--tmpdir={}", self.work.join("tmp").display()),
            format!("--port={}", self.port),
            "--bind-address=127.0.0.1".to_string(),
            format!("--server-id={}", self.opts.server_id),
            "--binlog-format=ROW".to_string(),
            "--binlog-checksum=CRC32".to_string(),
            "--gtid-strict-mode=1".to_string(),
            "--log-slave-updates=1".to_string(),
            "--innodb-flush-log-at-trx-commit=2".to_string(),
            "--slave-parallel-threads=4".to_string(),
            "--slave-parallel-mode=optimistic".to_string(),
            "--max-allowed-packet=1G".to_string(),
            "--skip-name-resolve".to_string(),
            format!("--relay-log={d}/relay"),
            "--innodb-buffer-pool-size=128M".to_string(),
        ];
        if self.opts.log_bin {
            args.push(format!("--log-bin={d}/bin"));
        }
        args.extend(self.opts.extra_args.iter().cloned());
        args
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let mut cmd = Command::new(require_tool("mariadbd")?);
        cmd.args(self.server_args());
        let proc = Proc::spawn(&format!("mariadbd {}", self.name), cmd, &self.error_log)?;
        self.proc = Some(proc);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let desc = format!(
            "MariaDB {} on port {} to accept connections",
            self.name, self.port
        );
        let result = poll(&desc, START_TIMEOUT, || {
            if let Some(status) = self.proc.as_mut().and_then(Proc::try_exit) {
                return fail(format!("mariadbd exited ({})", describe_status(status)));
            }
            Ok(match self.sql("SELECT 1") {
                Ok(_) => Poll::Ready(()),
                Err(e) => Poll::Pending(e.0),
            })
        });
        result.map_err(|e| {
            format!(
                "{desc}: {e}\n--- error log tail ---\n{}",
                super::util::tail_file(&self.error_log, LOG_TAIL_LINES)
            )
            .into()
        })
    }

    /// The base `mariadb` client command for this instance (root, TCP, batch mode).
    pub fn client_command(&self) -> Result<Command> {
        let mut cmd = Command::new(require_tool("mariadb")?);
        cmd.args([
            "--no-defaults",
            "--user=root",
            "--host=127.0.0.1",
            &format!("--port={}", self.port),
            "--batch",
            "--max-allowed-packet=1G",
            "--connect-timeout=10",
        ]);
        Ok(cmd)
    }

    /// Runs SQL (one or more statements) as root; returns stdout without headers, rows as
    /// tab-separated lines, trailing newline trimmed.
    pub fn sql(&self, sql: &str) -> Result<String> {
        let mut cmd = self.client_command()?;
        cmd.arg("--skip-column-names");
        self.run_client(cmd, sql)
    }

    /// Runs one query and returns its rows as maps from column name to value (batch mode
    /// escaping; NULL is "NULL"). For SHOW SLAVE STATUS and the like.
    pub fn query_maps(&self, sql: &str) -> Result<Vec<BTreeMap<String, String>>> {
        let cmd = self.client_command()?;
        let out = self.run_client(cmd, sql)?;
        let mut lines = out.lines();
        let Some(header) = lines.next() else {
            return Ok(Vec::new());
        };
        let names: Vec<&str> = header.split('\t').collect();
        Ok(lines
            .map(|line| {
                names
                    .iter()
                    .zip(line.split('\t'))
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect()
            })
            .collect())
    }

    fn run_client(&self, cmd: Command, sql: &str) -> Result<String> {
        let output = run_command(cmd, Some(sql.as_bytes().to_vec()), SQL_TIMEOUT)
            .context(|| format!("mariadb client on {}", self.name))?;
        if !output.status.success() {
            return fail(format!(
                "SQL on {} failed ({}): {}\nstatement: {}",
                self.name,
                describe_status(output.status),
                String::from_utf8_lossy(&output.stderr).trim(),
                shorten(sql, 300)
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(text.trim_end_matches('\n').to_string())
    }

    /// One value (first column of the first row).
    pub fn sql_value(&self, sql: &str) -> Result<String> {
        let out = self.sql(sql)?;
        Ok(out
            .lines()
            .next()
            .unwrap_or("")
            .split('\t')
            .next()
            .unwrap_or("")
            .to_string())
    }

    /// `@@gtid_binlog_pos`, normalized.
    pub fn gtid_binlog_pos(&self) -> Result<String> {
        Ok(normalize_gtid_list(
            &self.sql_value("SELECT @@GLOBAL.gtid_binlog_pos")?,
        ))
    }

    /// SHOW MASTER STATUS: (file, position).
    pub fn master_status(&self) -> Result<(String, u64)> {
        let out = self.sql("SHOW MASTER STATUS")?;
        let mut cols = out.lines().next().unwrap_or("").split('\t');
        match (cols.next(), cols.next().and_then(|p| p.parse().ok())) {
            (Some(file), Some(pos)) if !file.is_empty() => Ok((file.to_string(), pos)),
            _ => fail(format!(
                "unexpected SHOW MASTER STATUS on {}: {out:?}",
                self.name
            )),
        }
    }

    /// Waits until the newest binlog file's last Binlog_checkpoint event names that file.
    ///
    /// After a rotation (FLUSH BINARY LOGS, max_binlog_size) MariaDB writes, asynchronously,
    /// once the engines have made the older file's transactions durable, one more
    /// Binlog_checkpoint event naming the new file: a write nobody asked for, up to about a
    /// second later on a busy machine. A test that compares positions or bytes with the
    /// master's waits for it first, or the master's binlog can grow after the comparison.
    pub fn wait_binlog_settled(&self, timeout: Duration) -> Result<()> {
        poll(
            &format!("{}'s binlog checkpoint to name its newest file", self.name),
            timeout,
            || {
                let (file, _) = self.master_status()?;
                let events = self.sql(&format!("SHOW BINLOG EVENTS IN '{file}'"))?;
                let checkpoint = events
                    .lines()
                    .rev()
                    .map(|line| line.split('\t').collect::<Vec<_>>())
                    .filter(|cols| cols.get(2) == Some(&"Binlog_checkpoint"))
                    .find_map(|cols| cols.get(5).map(|info| info.trim().to_string()));
                match checkpoint {
                    Some(named) if named == file => Ok(Poll::Ready(())),
                    other => Ok(Poll::Pending(format!(
                        "{file}'s last checkpoint names {other:?}"
                    ))),
                }
            },
        )
    }

    /// SHOW BINARY LOGS: [(file, size)] oldest first.
    pub fn binary_logs(&self) -> Result<Vec<(String, u64)>> {
        let out = self.sql("SHOW BINARY LOGS")?;
        out.lines()
            .map(|line| {
                let mut cols = line.split('\t');
                match (cols.next(), cols.next().and_then(|s| s.parse().ok())) {
                    (Some(f), Some(size)) => Ok((f.to_string(), size)),
                    _ => fail(format!("unexpected SHOW BINARY LOGS line {line:?}")),
                }
            })
            .collect()
    }

    /// The names of SHOW BINARY LOGS, oldest first.
    pub fn binary_log_names(&self) -> Result<Vec<String>> {
        Ok(self.binary_logs()?.into_iter().map(|(f, _)| f).collect())
    }

    /// The oldest binlog file still on the server.
    pub fn first_binlog(&self) -> Result<String> {
        match self.binary_logs()?.into_iter().next() {
            Some((file, _)) => Ok(file),
            None => fail(format!("{} has no binary logs", self.name)),
        }
    }

    /// CHECKSUM TABLE for every base table of `db`, sorted by table name:
    /// [("db.table", checksum)]. An absent database gives an empty list.
    pub fn checksum_tables(&self, db: &str) -> Result<Vec<(String, String)>> {
        let tables = self.sql(&format!(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = '{db}' AND table_type = 'BASE TABLE' ORDER BY table_name"
        ))?;
        let names: Vec<&str> = tables.lines().filter(|l| !l.is_empty()).collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = names.iter().map(|t| format!("`{db}`.`{t}`")).collect();
        let out = self.sql(&format!("CHECKSUM TABLE {}", list.join(", ")))?;
        let mut sums: Vec<(String, String)> = out
            .lines()
            .map(|line| {
                let mut cols = line.split('\t');
                let table = cols.next().unwrap_or("").to_string();
                let sum = cols.next().unwrap_or("").to_string();
                (table, sum)
            })
            .collect();
        sums.sort();
        Ok(sums)
    }

    /// Stops the server gracefully (SIGTERM, bounded wait).
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut proc) = self.proc.take() {
            if proc.is_running() {
                proc.terminate(Duration::from_secs(60))
                    .context(|| format!("stopping {}", self.name))?;
            }
        }
        Ok(())
    }

    /// SIGKILL: a crash. `restart` brings it back (with crash recovery).
    pub fn kill9(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill9();
        }
    }

    /// Stops the server if it runs (gracefully), then starts it again on the same port with
    /// the same data, and waits until it accepts connections.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn_and_wait()
    }

    pub fn print_error_log(&self) {
        print_log_tail(
            &format!("MariaDB {} (port {}) error log", self.name, self.port),
            &self.error_log,
            LOG_TAIL_LINES,
        );
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_error_log();
        }
        // Proc's own Drop stops it by pid (SIGTERM, then SIGKILL).
        self.proc.take();
    }
}

/// Unix socket paths are limited to ~107 bytes; fall back to /tmp when the work dir is deep.
fn socket_path(work: &WorkDir) -> Result<PathBuf> {
    let preferred = work.join("s.sock");
    if preferred.as_os_str().len() < 100 {
        return Ok(preferred);
    }
    let name = work
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let short: String = name
        .chars()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Ok(std::env::temp_dir().join(format!("fb-{short}.sock")))
}

fn install_db(work: &WorkDir, datadir: &Path) -> Result<()> {
    let tmpdir = work.join("tmp");
    std::fs::create_dir_all(&tmpdir)?;
    let mut cmd = Command::new(require_tool("mariadb-install-db")?);
    cmd.args([
        "--no-defaults".to_string(),
        "--user=root".to_string(),
        format!("--datadir={}", datadir.display()),
        "--auth-root-authentication-method=normal".to_string(),
        "--skip-test-db".to_string(),
        // Own temp dir: parallel bootstraps sharing /tmp collide on temp-table files.
        format!("--tmpdir={}", tmpdir.display()),
    ]);
    let output = run_command(cmd, None, START_TIMEOUT)?;
    let log = work.join("install-db.log");
    let mut text = output.stdout.clone();
    text.extend_from_slice(&output.stderr);
    std::fs::write(&log, &text)?;
    if !output.status.success() {
        return fail(format!(
            "mariadb-install-db failed ({}):\n{}",
            describe_status(output.status),
            String::from_utf8_lossy(&text)
        ));
    }
    Ok(())
}

/// Binlog dump threads on the master (one per running syncer).
pub fn dump_threads(master: &MariaDb) -> u64 {
    master
        .sql_value(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE COMMAND LIKE 'Binlog Dump%'",
        )
        .unwrap()
        .parse()
        .unwrap()
}

pub fn wait_dump_threads(master: &MariaDb, want: u64) {
    poll(
        &format!("{want} binlog dump thread(s) on the master"),
        Duration::from_secs(60),
        || {
            let n = dump_threads(master);
            Ok(if n == want {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{n} dump threads"))
            })
        },
    )
    .unwrap();
}
