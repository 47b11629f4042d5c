//! Independent binlog clients, run against a real master or a ferrobus binlog server so the
//! tests can compare what each side serves:
//! - `mariadb-binlog --read-from-remote-server --raw` (MariaDB's own tool),
//! - python-mysql-replication (scripts/pyrepl_dump.py in the .venv),
//! - the `mysql` crate's binlog client.
//!
//! They only read. Each call is bounded in time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{BinlogRequest, Conn, OptsBuilder};

use super::process::{describe_status, run_command};
use super::util::{fail, repo_root, require_tool, Context, Result, INSTALL_HINT};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// Credentials of a binlog source (a master or a ferrobus binlog server) on 127.0.0.1.
#[derive(Clone, Debug)]
pub struct Source {
    pub port: u16,
    pub user: String,
    pub password: String,
}

/// `mariadb-binlog --read-from-remote-server --raw --to-last-log` from `first_file`, into
/// `out_dir` (created). Returns the tool's stderr for diagnostics.
pub fn mariadb_binlog_raw(src: &Source, first_file: &str, out_dir: &Path) -> Result<String> {
    std::fs::create_dir_all(out_dir)?;
    let mut cmd = Command::new(require_tool("mariadb-binlog")?);
    cmd.args([
        "--no-defaults".to_string(),
        "--read-from-remote-server".to_string(),
        "--raw".to_string(),
        "--to-last-log".to_string(),
        "--host=127.0.0.1".to_string(),
        format!("--port={}", src.port),
        format!("--user={}", src.user),
        format!("--password={}", src.password),
        format!("--result-file={}/", out_dir.display()),
        first_file.to_string(),
    ]);
    let output = run_command(cmd, None, CLIENT_TIMEOUT)?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return fail(format!(
            "mariadb-binlog against port {} failed ({}): {stderr}",
            src.port,
            describe_status(output.status)
        ));
    }
    Ok(stderr)
}

/// Compares two directories file by file: same names, same bytes. The error names the
/// first differing file and offset.
pub fn compare_dirs(a: &Path, b: &Path) -> Result<usize> {
    let names_a = sorted_names(a)?;
    let names_b = sorted_names(b)?;
    if names_a != names_b {
        return fail(format!(
            "different files:\n  {}: {names_a:?}\n  {}: {names_b:?}",
            a.display(),
            b.display()
        ));
    }
    if names_a.is_empty() {
        return fail(format!("{} is empty", a.display()));
    }
    for name in &names_a {
        let bytes_a = std::fs::read(a.join(name))?;
        let bytes_b = std::fs::read(b.join(name))?;
        if bytes_a != bytes_b {
            let offset = bytes_a
                .iter()
                .zip(&bytes_b)
                .position(|(x, y)| x != y)
                .unwrap_or(bytes_a.len().min(bytes_b.len()));
            return fail(format!(
                "{name} differs: {} bytes vs {} bytes, first difference at offset {offset}",
                bytes_a.len(),
                bytes_b.len()
            ));
        }
    }
    Ok(names_a.len())
}

fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).context(|| format!("reading {}", dir.display()))? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The venv python that has python-mysql-replication.
pub fn venv_python() -> Result<PathBuf> {
    let python = repo_root().join(".venv/bin/python");
    if !python.exists() {
        return fail(format!("{} is missing: {INSTALL_HINT}", python.display()));
    }
    Ok(python)
}

/// Runs scripts/pyrepl_dump.py (MariaDB GTID mode from the start, blocking, stops after the
/// transaction of `stop_gtid`): one line per event.
pub fn pyrepl_dump(src: &Source, server_id: u32, stop_gtid: &str) -> Result<String> {
    run_pyrepl(pyrepl_command(src, server_id, stop_gtid, 150)?, src)
}

/// A scripts/pyrepl_dump.py command (venv python) reading from `src` as replica
/// `server_id` until the transaction of `stop_gtid` is complete, giving up after
/// `timeout_secs`; the caller adds the flavour and start arguments, then runs it with
/// [`run_pyrepl`].
pub fn pyrepl_command(
    src: &Source,
    server_id: u32,
    stop_gtid: &str,
    timeout_secs: u32,
) -> Result<Command> {
    let script = repo_root().join("scripts/pyrepl_dump.py");
    let mut cmd = Command::new(venv_python()?);
    cmd.arg(&script).args([
        "--host=127.0.0.1".to_string(),
        format!("--port={}", src.port),
        format!("--user={}", src.user),
        format!("--password={}", src.password),
        format!("--server-id={server_id}"),
        format!("--stop-gtid={stop_gtid}"),
        format!("--timeout={timeout_secs}"),
    ]);
    Ok(cmd)
}

/// Runs a prepared scripts/pyrepl_dump.py command: its stdout, or an error with its stderr
/// and the last lines it printed.
pub fn run_pyrepl(cmd: Command, src: &Source) -> Result<String> {
    let output = run_command(cmd, None, CLIENT_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let lines: Vec<&str> = stdout.lines().collect();
        let last = &lines[lines.len().saturating_sub(10)..];
        return fail(format!(
            "pyrepl_dump.py against port {} failed ({}): {}\nlast lines of output:\n{}",
            src.port,
            describe_status(output.status),
            String::from_utf8_lossy(&output.stderr).trim(),
            last.join("\n")
        ));
    }
    Ok(stdout)
}

/// One event as the `mysql` crate's binlog client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpedEvent {
    /// The binlog file the event belongs to (from the ROTATE events).
    pub file: String,
    pub type_code: u8,
    pub log_pos: u32,
    pub size: u32,
    pub server_id: u32,
}

/// A connection with the `mysql` crate (TCP only, no queries sent on connect).
pub fn mysql_connect(
    src: &Source,
    read_timeout: Duration,
) -> std::result::Result<Conn, mysql::Error> {
    let opts = OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(src.port)
        .user(Some(src.user.clone()))
        .pass(Some(src.password.clone()))
        .prefer_socket(false)
        .max_allowed_packet(Some(1 << 30))
        .tcp_connect_timeout(Some(Duration::from_secs(10)))
        .read_timeout(Some(read_timeout))
        .write_timeout(Some(read_timeout));
    Conn::new(opts)
}

/// COM_BINLOG_DUMP by file and position with the `mysql` crate (as a MariaDB-capable
/// replica: `@mariadb_slave_capability=4`), blocking, until an event ending at or past
/// `stop_file`:`stop_pos` arrives.
pub fn mysql_crate_dump(
    src: &Source,
    server_id: u32,
    start_file: &str,
    stop_file: &str,
    stop_pos: u64,
) -> Result<Vec<DumpedEvent>> {
    let mut conn = mysql_connect(src, Duration::from_secs(60))
        .context(|| format!("mysql crate: connecting to port {}", src.port))?;
    conn.query_drop("SET @mariadb_slave_capability=4")
        .context(|| {
            format!(
                "mysql crate: SET @mariadb_slave_capability on port {}",
                src.port
            )
        })?;
    let request = BinlogRequest::new(server_id)
        .with_filename(start_file.as_bytes())
        .with_pos(4u32);
    let stream = conn
        .get_binlog_stream(request)
        .context(|| format!("mysql crate: binlog dump request on port {}", src.port))?;
    let mut file = start_file.to_string();
    let mut events = Vec::new();
    for event in stream {
        let event = event.map_err(|e| {
            format!(
                "mysql crate: binlog stream from port {} after {} events: {e}",
                src.port,
                events.len()
            )
        })?;
        let header = event.header();
        let dumped = DumpedEvent {
            file: file.clone(),
            type_code: header.event_type_raw(),
            log_pos: header.log_pos(),
            size: header.event_size(),
            server_id: header.server_id(),
        };
        // A ROTATE (artificial or real) names the file of the events after it; the ROTATE
        // itself is counted in the file it was read from.
        if header.event_type_raw() == 4 {
            if let Ok(rotate) = event.read_event::<mysql::binlog::events::RotateEvent>() {
                file = rotate.name().into_owned();
            }
        }
        let done = dumped.file == stop_file
            && dumped.type_code != 4
            && u64::from(dumped.log_pos) >= stop_pos;
        events.push(dumped);
        if done {
            return Ok(events);
        }
    }
    fail(format!(
        "mysql crate: stream from port {} ended after {} events before {stop_file}:{stop_pos}",
        src.port,
        events.len()
    ))
}

/// The downstream account on a ferrobus binlog server listening on `port`.
pub fn ferro_source(port: u16) -> Source {
    Source {
        port,
        user: super::node::FERRO_USER.to_string(),
        password: super::node::FERRO_PASSWORD.to_string(),
    }
}

/// SHOW BINARY LOGS on a ferrobus binlog server: the file names.
pub fn node_binary_logs(server_port: u16) -> Vec<String> {
    use mysql::prelude::Queryable;
    let mut conn = mysql_connect(&ferro_source(server_port), Duration::from_secs(30)).unwrap();
    let rows: Vec<mysql::Row> = conn.query("SHOW BINARY LOGS").unwrap();
    rows.into_iter()
        .map(|row| {
            row.get_opt::<String, usize>(0)
                .and_then(|v| v.ok())
                .unwrap_or_else(|| panic!("SHOW BINARY LOGS row without a name: {row:?}"))
        })
        .collect()
}
