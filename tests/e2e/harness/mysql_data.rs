//! MySQL-flavour test data and clients: the MySQL binlog fixtures (tests/data/mysql, real
//! files written by MySQL 5.7 and 8.0 servers), what they contain, how to load them into a
//! ferrobus node (the import route), and the independent clients that read them back in the
//! MySQL flavour (python-mysql-replication in MySQL mode, the `mysql` crate's
//! COM_BINLOG_DUMP_GTID).
//!
//! It only reads the fixtures; the expectations it computes come from the fixture bytes,
//! never from ferrobus.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mysql::{BinlogDumpFlags, BinlogRequest};
use mysql_common::packets::{GnoInterval, Sid};

use super::clients::{mysql_connect, pyrepl_command, run_pyrepl, Source};
use super::node::{ferrobus_bin, Node};
use super::process::{describe_status, run_command};
use super::util::{fail, repo_root, Context, Result};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const BINLOG_MAGIC: &[u8] = b"\xfebin";
const EVENT_HEADER_LEN: usize = 19;
const GTID_LOG_EVENT: u8 = 33;
const QUERY_EVENT: u8 = 2;
const XID_EVENT: u8 = 16;

/// The kingbus chain: (fixture file, the name its master gave it — the ROTATE of the file
/// before names it so).
pub const KINGBUS_CHAIN: [(&str, &str); 3] = [
    ("kingbus-5.7-mysql_bin.000011", "mysql_bin.000011"),
    ("kingbus-5.7-mysql_bin.000012", "mysql_bin.000012"),
    ("kingbus-5.7-mysql_bin.000013", "mysql_bin.000013"),
];

/// The server UUID of the kingbus chain's master.
pub const KINGBUS_UUID: &str = "214eb71f-96ec-11e8-ab4f-fa163e72d4ae";

pub fn fixture_path(name: &str) -> PathBuf {
    repo_root().join("tests/data/mysql").join(name)
}

/// One event of a fixture file, as far as the tests look at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixtureEvent {
    pub pos: u64,
    pub type_code: u8,
    /// End position (the header's log_pos).
    pub log_pos: u32,
    /// `uuid:gno` of a GTID event.
    pub gtid: Option<(String, u64)>,
}

/// The events of a native binlog file (magic checked, every header read).
pub fn fixture_events(name: &str) -> Result<Vec<FixtureEvent>> {
    let path = fixture_path(name);
    let bytes = std::fs::read(&path).context(|| format!("reading {}", path.display()))?;
    if !bytes.starts_with(BINLOG_MAGIC) {
        return fail(format!("{} is not a binlog file", path.display()));
    }
    let mut events = Vec::new();
    let mut pos = BINLOG_MAGIC.len();
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + EVENT_HEADER_LEN) else {
            return fail(format!("{}: torn header at {pos}", path.display()));
        };
        let type_code = header[4];
        let size = u32::from_le_bytes(header[9..13].try_into().unwrap()) as usize;
        let log_pos = u32::from_le_bytes(header[13..17].try_into().unwrap());
        let Some(event) = bytes.get(pos..pos + size) else {
            return fail(format!("{}: torn event at {pos}", path.display()));
        };
        let gtid = (type_code == GTID_LOG_EVENT).then(|| {
            let body = &event[EVENT_HEADER_LEN..];
            let uuid = format_uuid(&body[1..17]);
            let gno = u64::from_le_bytes(body[17..25].try_into().unwrap());
            (uuid, gno)
        });
        events.push(FixtureEvent {
            pos: pos as u64,
            type_code,
            log_pos,
            gtid,
        });
        pos += size;
    }
    Ok(events)
}

fn format_uuid(b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// What a MySQL-mode client must report of a stream, one line per GTID, XID and QUERY event:
/// `GtidEvent uuid:gno`, `XidEvent <log_pos>`, `QueryEvent <log_pos>` — for the events of
/// `chain` (fixture names, in order) from the transaction after `after_gno` (0 = all).
pub fn expected_lines(chain: &[&str], after_gno: u64) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut include = false;
    for name in chain {
        for ev in fixture_events(name)? {
            if let Some((uuid, gno)) = &ev.gtid {
                include = *gno > after_gno;
                if include {
                    lines.push(format!("GtidEvent {uuid}:{gno}"));
                }
                continue;
            }
            if !include {
                continue;
            }
            match ev.type_code {
                XID_EVENT => lines.push(format!("XidEvent {}", ev.log_pos)),
                QUERY_EVENT => lines.push(format!("QueryEvent {}", ev.log_pos)),
                _ => {}
            }
        }
    }
    Ok(lines)
}

/// Keeps the GTID, XID and QUERY lines of a client's output (the others vary by client).
pub fn transaction_lines(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| {
            l.starts_with("GtidEvent ")
                || l.starts_with("XidEvent ")
                || l.starts_with("QueryEvent ")
        })
        .map(str::to_string)
        .collect()
}

/// The position just after the transaction `gno` in `chain`: (master file name, position) —
/// the end of its last event (the XID, or the DDL query), before the next GTID event or the
/// file's closing ROTATE / STOP.
pub fn end_of_transaction(chain: &[(&str, &str)], gno: u64) -> Result<(String, u64)> {
    const NOT_IN_A_TRANSACTION: [u8; 3] = [3, 4, 35]; // STOP, ROTATE, PREVIOUS_GTIDS
    for (fixture, name) in chain {
        let mut end = None;
        for ev in fixture_events(fixture)? {
            if let Some((_, g)) = &ev.gtid {
                if end.is_some() {
                    break;
                }
                if *g == gno {
                    end = Some(u64::from(ev.log_pos));
                }
            } else if end.is_some() && !NOT_IN_A_TRANSACTION.contains(&ev.type_code) {
                end = Some(u64::from(ev.log_pos));
            }
        }
        if let Some(end) = end {
            return Ok((name.to_string(), end));
        }
    }
    fail(format!("no transaction {gno} in the chain"))
}

/// Imports one native binlog file into `node` through its admin API
/// (`POST /binlog/import?file=NAME`): (HTTP status, reply message — see [`import_bytes`]).
pub fn import_file(node: &Node, fixture: &str, name: &str) -> Result<(u16, String)> {
    let path = fixture_path(fixture);
    let bytes = std::fs::read(&path).context(|| format!("reading {}", path.display()))?;
    import_bytes(node, name, &bytes)
}

/// Sends `bytes` (a fixture, or a damaged copy of one) to `node`'s import route as the file
/// `name`: (HTTP status, the reply's `message`, or the whole reply text when it is not the
/// route's JSON reply).
pub fn import_bytes(node: &Node, name: &str, bytes: &[u8]) -> Result<(u16, String)> {
    let (status, text) =
        node.request("POST", &format!("/binlog/import?file={name}"), Some(bytes))?;
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or(text);
    Ok((status, message))
}

/// Imports the files, each of which must be accepted.
pub fn import_all(node: &Node, files: &[(&str, &str)]) -> Result<()> {
    for (fixture, name) in files {
        let (status, text) = import_file(node, fixture, name)?;
        if status != 200 {
            return fail(format!(
                "import of {fixture} as {name}: HTTP {status}: {text}"
            ));
        }
    }
    Ok(())
}

/// `ferrobus export --data-dir DIR --to OUT` on a stopped node's data dir: its output.
pub fn export_offline(data_dir: &Path, out: &Path) -> Result<String> {
    export_offline_files(data_dir, out, None)
}

/// [`export_offline`] of the one stored file `name` (`--file NAME`).
pub fn export_offline_file(data_dir: &Path, out: &Path, name: &str) -> Result<String> {
    export_offline_files(data_dir, out, Some(name))
}

fn export_offline_files(data_dir: &Path, out: &Path, file: Option<&str>) -> Result<String> {
    let mut cmd = Command::new(ferrobus_bin()?);
    cmd.arg("export")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--to")
        .arg(out);
    if let Some(name) = file {
        cmd.arg("--file").arg(name);
    }
    cmd.env_remove("FERROBUS_ADMIN");
    let output = run_command(cmd, None, CLIENT_TIMEOUT)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return fail(format!(
            "ferrobus export --data-dir {} --to {} (file {file:?}) failed ({}): {text}",
            data_dir.display(),
            out.display(),
            describe_status(output.status)
        ));
    }
    Ok(text)
}

/// Where python-mysql-replication (MySQL mode) starts.
pub enum PyStart<'a> {
    /// COM_BINLOG_DUMP_GTID with this GTID set (auto_position).
    Gtid(&'a str),
    /// COM_BINLOG_DUMP at file and position.
    FilePos(&'a str, u64),
}

/// scripts/pyrepl_dump.py in MySQL mode, blocking, until the transaction of `stop_gtid` is
/// complete: its output, one line per event.
pub fn pyrepl_mysql(
    src: &Source,
    server_id: u32,
    start: PyStart,
    stop_gtid: &str,
) -> Result<String> {
    let mut cmd = pyrepl_command(src, server_id, stop_gtid, 90)?;
    cmd.arg("--flavour=mysql");
    match start {
        PyStart::Gtid(set) => {
            cmd.arg(format!("--start-gtid={set}"));
        }
        PyStart::FilePos(file, pos) => {
            cmd.arg(format!("--log-file={file}"))
                .arg(format!("--log-pos={pos}"));
        }
    }
    run_pyrepl(cmd, src)
}

/// A GTID set given to the `mysql` crate: one UUID with inclusive gno ranges.
pub fn sid(uuid: &str, ranges: &[(u64, u64)]) -> Sid<'static> {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("uuid hex");
    }
    // The wire format's intervals end exclusively.
    let intervals = ranges
        .iter()
        .map(|(a, b)| GnoInterval::new(*a, b + 1))
        .collect();
    Sid::new(bytes).with_intervals(intervals)
}

/// COM_BINLOG_DUMP_GTID with the `mysql` crate, non-blocking (the server sends what it has,
/// then EOF): the stream as transaction lines (see [`transaction_lines`]), or the server's
/// error text when the dump is refused.
pub fn mysql_crate_gtid_dump(
    src: &Source,
    server_id: u32,
    sids: Vec<Sid<'static>>,
) -> Result<std::result::Result<Vec<String>, String>> {
    let conn = mysql_connect(src, Duration::from_secs(30))
        .context(|| format!("mysql crate: connecting to port {}", src.port))?;
    let request = BinlogRequest::new(server_id)
        .with_use_gtid(true)
        .with_flags(BinlogDumpFlags::BINLOG_DUMP_NON_BLOCK | BinlogDumpFlags::BINLOG_THROUGH_GTID)
        .with_sids(sids);
    let stream = match conn.get_binlog_stream(request) {
        Ok(stream) => stream,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut lines = Vec::new();
    for event in stream {
        let event = match event {
            Ok(event) => event,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let header = event.header();
        match header.event_type_raw() {
            GTID_LOG_EVENT => {
                let gtid = event
                    .read_event::<mysql::binlog::events::GtidEvent>()
                    .map_err(|e| format!("mysql crate: GTID event does not decode: {e}"))?;
                lines.push(format!(
                    "GtidEvent {}:{}",
                    format_uuid(&gtid.sid()),
                    gtid.gno()
                ));
            }
            XID_EVENT => lines.push(format!("XidEvent {}", header.log_pos())),
            QUERY_EVENT => lines.push(format!("QueryEvent {}", header.log_pos())),
            _ => {}
        }
    }
    Ok(Ok(lines))
}
