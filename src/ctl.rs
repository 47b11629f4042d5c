//! `ferrobus ctl`: sends one admin API request to a node and prints the reply, as text for
//! people or as the raw JSON with `--json`, and turns the outcome into the exit status.
//!
//! The HTTP exchange is the only I/O here; turning a reply into output is a set of pure
//! functions (`render` and the `format_*` helpers) so it can be tested without a node.
//! This module does not validate arguments (`cli` did) and does not retry.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;

use serde_json::{Map, Value};

use crate::api::model::MemberRole;
use crate::api::{
    Health, LatencyView, MemberRemove, MemberView, PurgeArgs, RaftView, ServerStatus, SlaveInfo,
    SyncerStatus,
};
use crate::cli::{CtlArgs, CtlCommand};
use crate::limits::{HTTP_CLIENT_TIMEOUT_MS, PASSWORD_FILE_BYTES_MAX, PEER_ACTIVE_WINDOW_MS};

mod transfer;

/// Exit statuses of `ctl` (see the interface contract).
pub const EXIT_OK: i32 = 0;
pub const EXIT_NODE_ERROR: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;

/// Longest piece of a non-JSON reply quoted in an error message.
const SNIPPET_CHARS_MAX: usize = 200;

/// What a null value prints as.
const ABSENT: &str = "-";

/// `ctl cluster` flags a member the leader has not heard from for this long: the window in
/// which the leader counts a member active for a membership change's quorum check.
const SILENT_MEMBER_MS: u64 = PEER_ACTIVE_WINDOW_MS;

/// Runs one `ctl` command against the node; returns the process exit status.
pub fn run(mut args: CtlArgs) -> i32 {
    match &args.command {
        CtlCommand::Import { files, name } => {
            return transfer::import_files(&args, files, name.as_deref())
        }
        CtlCommand::Export { to, file, force } => {
            return transfer::export_files(&args, to, file.as_deref(), *force)
        }
        _ => {}
    }
    if let Err(message) = fill_password(&mut args.command) {
        eprintln!("error: {message}");
        return EXIT_USAGE;
    }
    let request = match Request::for_command(&args.command) {
        Ok(request) => request,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_USAGE;
        }
    };
    let url = format!("http://{}{}", args.admin, request.path);
    match send(&request, &url) {
        Ok((status, body)) => {
            let outcome = render(&args.command, status, &body, args.json);
            print!("{}", outcome.stdout);
            eprint!("{}", outcome.stderr);
            outcome.exit_code
        }
        Err(error) => {
            eprintln!("error: {}", unreachable(&args.admin, &error));
            EXIT_UNREACHABLE
        }
    }
}

/// Reads the password of a start command given with a password file into its arguments.
fn fill_password(command: &mut CtlCommand) -> Result<(), String> {
    let (slot, file) = match command {
        CtlCommand::SyncerStart {
            args,
            password_file: Some(file),
        } => (&mut args.mysql_password, file),
        CtlCommand::ServerStart {
            args,
            password_file: Some(file),
        } => (&mut args.password, file),
        _ => return Ok(()),
    };
    *slot = read_password_file(file)?;
    Ok(())
}

fn read_password_file(path: &Path) -> Result<String, String> {
    let shown = format!("'{}'", path.display());
    let file = std::fs::File::open(path)
        .map_err(|error| format!("cannot read the password file {shown}: {error}"))?;
    let mut bytes = Vec::new();
    // Room for the longest password and its line end, and one byte to tell a longer file.
    file.take(PASSWORD_FILE_BYTES_MAX + 3)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("cannot read the password file {shown}: {error}"))?;
    password_from_file(&bytes).map_err(|why| format!("password file {shown}: {why}"))
}

/// A password file's content without one final newline (`\n` or `\r\n`), as `echo` or an
/// editor leaves it. Refused rather than sent as a password: an empty file (a secret not
/// provisioned yet would open the binlog server to anyone; `--password=` gives an empty
/// password on purpose), more than one line, a byte-order mark, and a password of more than
/// `PASSWORD_FILE_BYTES_MAX` bytes.
fn password_from_file(bytes: &[u8]) -> Result<String, String> {
    let too_long =
        || format!("holds more than {PASSWORD_FILE_BYTES_MAX} bytes; is it the right file?");
    // The password and its line end at most (a longer file may be cut inside a character).
    if bytes.len() as u64 > PASSWORD_FILE_BYTES_MAX + 2 {
        return Err(too_long());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.len() as u64 > PASSWORD_FILE_BYTES_MAX {
        return Err(too_long());
    }
    if text.is_empty() {
        return Err(
            "is empty; give the password in it (or --password= for an empty password)".into(),
        );
    }
    if text.starts_with('\u{feff}') {
        return Err("begins with a byte-order mark; save it without one".into());
    }
    if text.contains(['\n', '\r']) {
        return Err("holds more than one line; it must hold the password alone".into());
    }
    Ok(text.to_string())
}

/// Why a request to the node at `admin` got no reply: a timeout says how long ctl waited
/// (the node accepted the connection, or the address does not answer at all); anything
/// else is a connection that could not be made.
fn unreachable(admin: &str, error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => format!(
            "no reply from {admin} within {} s: is it a ferrobus admin address, and is the \
             node running (a leader-only call waits for the leader)?",
            HTTP_CLIENT_TIMEOUT_MS / 1000
        ),
        _ => format!("cannot reach the node at {admin}: {error}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Get,
    Put,
    Post,
    Delete,
}

/// The HTTP request a command becomes.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: Method,
    path: &'static str,
    /// JSON body, for the start commands.
    body: Option<String>,
}

impl Request {
    fn for_command(command: &CtlCommand) -> Result<Request, String> {
        let (method, path, body) = match command {
            CtlCommand::SyncerStart { args, .. } => {
                (Method::Put, "/binlog/syncer/start", Some(to_json(args)?))
            }
            CtlCommand::SyncerStop => (Method::Put, "/binlog/syncer/stop", None),
            CtlCommand::SyncerStatus => (Method::Get, "/binlog/syncer/status", None),
            CtlCommand::ServerStart { args, .. } => {
                (Method::Put, "/binlog/server/start", Some(to_json(args)?))
            }
            CtlCommand::ServerStop => (Method::Put, "/binlog/server/stop", None),
            CtlCommand::ServerStatus => (Method::Get, "/binlog/server/status", None),
            CtlCommand::Health => (Method::Get, "/health", None),
            CtlCommand::MembersList => (Method::Get, "/members", None),
            CtlCommand::MemberAdd(args) => (Method::Post, "/members", Some(to_json(args)?)),
            CtlCommand::MemberUpdate(args) => (Method::Put, "/members", Some(to_json(args)?)),
            CtlCommand::MemberRemove { name } => {
                let body = to_json(&MemberRemove { name: name.clone() })?;
                (Method::Delete, "/members", Some(body))
            }
            CtlCommand::Cluster => (Method::Get, "/cluster", None),
            CtlCommand::Raft => (Method::Get, "/raft/status", None),
            CtlCommand::Purge { to_file } => {
                let body = to_json(&PurgeArgs {
                    to_file: to_file.clone(),
                })?;
                (Method::Put, "/binlog/purge", Some(body))
            }
            CtlCommand::Import { .. } | CtlCommand::Export { .. } => {
                return Err("import and export stream files; see ctl::transfer".into())
            }
        };
        Ok(Request { method, path, body })
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|error| format!("cannot encode the request: {error}"))
}

/// Sends the request; any transport failure (connect, timeout, broken reply) is an error,
/// every HTTP status is an answer.
fn send(request: &Request, url: &str) -> Result<(u16, String), ureq::Error> {
    let agent = crate::api::forward::admin_agent(HTTP_CLIENT_TIMEOUT_MS);
    let json = "application/json";
    let response = match (request.method, &request.body) {
        (Method::Get, _) => agent.get(url).call(),
        (Method::Put, Some(body)) => agent
            .put(url)
            .header("Content-Type", json)
            .send(body.as_str()),
        (Method::Put, None) => agent.put(url).send_empty(),
        (Method::Post, body) => agent
            .post(url)
            .header("Content-Type", json)
            .send(body.as_deref().unwrap_or("")),
        // kingbus's DELETE /members takes a JSON body; ureq wants that asked for.
        (Method::Delete, body) => agent
            .delete(url)
            .header("Content-Type", json)
            .force_send_body()
            .send(body.as_deref().unwrap_or("")),
    };
    let mut response = response?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string()?;
    Ok((status, body))
}

/// What to print and how to exit.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
}

/// Turns the node's reply into output. With `json`, stdout gets the reply exactly as
/// received; errors also go to stderr as text.
pub fn render(command: &CtlCommand, status: u16, body: &str, json: bool) -> Outcome {
    let Ok(reply) = serde_json::from_str::<Value>(body) else {
        return Outcome {
            stdout: String::new(),
            stderr: format!(
                "error: the node replied HTTP {status} with a body that is not JSON: {}\n",
                snippet(body)
            ),
            exit_code: EXIT_NODE_ERROR,
        };
    };
    let raw = if json {
        with_newline(body)
    } else {
        String::new()
    };
    if !(200..300).contains(&status) {
        let message = reply
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| snippet(body), str::to_string);
        return Outcome {
            stdout: raw,
            stderr: format!("error: {message} (HTTP {status})\n"),
            exit_code: EXIT_NODE_ERROR,
        };
    }
    let stdout = if json {
        raw
    } else {
        format_success(command, reply.get("data").unwrap_or(&Value::Null))
    };
    Outcome {
        stdout,
        stderr: String::new(),
        exit_code: EXIT_OK,
    }
}

/// Human text for a successful reply.
fn format_success(command: &CtlCommand, data: &Value) -> String {
    match command {
        CtlCommand::SyncerStart { .. } => "syncer started\n".to_string(),
        CtlCommand::SyncerStop => "syncer stopped\n".to_string(),
        CtlCommand::ServerStart { .. } => "binlog server started\n".to_string(),
        CtlCommand::ServerStop => "binlog server stopped\n".to_string(),
        CtlCommand::SyncerStatus => typed(data, format_syncer_status),
        CtlCommand::ServerStatus => typed(data, format_server_status),
        CtlCommand::Health => typed(data, format_health),
        CtlCommand::MembersList => typed(data, |members: &Vec<MemberView>| format_members(members)),
        CtlCommand::Cluster => typed(data, |members: &Vec<MemberView>| format_cluster(members)),
        CtlCommand::Raft => typed(data, format_raft),
        CtlCommand::MemberAdd(args) => after_change(&format!("member {} added", args.name), data),
        CtlCommand::MemberUpdate(args) => after_change(
            &format!("member {} now at {}", args.name, args.new_peer_url),
            data,
        ),
        CtlCommand::MemberRemove { name } => after_change(&format!("member {name} removed"), data),
        CtlCommand::Purge { to_file } => format!("binlog before {to_file} purged\n"),
        CtlCommand::Import { .. } => typed(data, transfer::format_import),
        // `ctl export` downloads the files itself and renders only failures.
        CtlCommand::Export { .. } => String::new(),
    }
}

/// What a membership change printed: a line saying what was done, then the members.
fn after_change(done: &str, data: &Value) -> String {
    let table = match data {
        Value::Null => String::new(),
        _ => format!("\n{}", typed(data, |m: &Vec<MemberView>| format_members(m))),
    };
    format!("{done}\n{table}")
}

/// The members as a table: ROLE is `voter`, `learner` for a member still catching up
/// (promoted by the leader once it has), or `none` for one raft does not know (see
/// `MemberRole`); a LEADER column when the reply says who leads (`/cluster`).
pub fn format_members(members: &[MemberView]) -> String {
    let with_leader = members.iter().any(|member| member.is_leader.is_some());
    let with_heard = members.iter().any(|member| member.heard_ms_ago.is_some());
    let mut header = vec!["NAME", "ID", "PEER_URL", "ADMIN_URL", "BINLOG_ADDR", "ROLE"];
    if with_leader {
        header.push("LEADER");
    }
    if with_heard {
        header.push("HEARD");
    }
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for member in members {
        let mut row = vec![
            member.name.clone(),
            member.id.clone(),
            list_or_absent(&member.peer_urls),
            list_or_absent(&member.admin_urls),
            or_absent(&member.binlog_addr),
            member.role.as_str().to_string(),
        ];
        if with_leader {
            let leads = member.is_leader == Some(true);
            row.push(if leads { "yes" } else { "no" }.to_string());
        }
        if with_heard {
            row.push(format_heard(member));
        }
        rows.push(row);
    }
    format_table(&rows)
}

fn list_or_absent(values: &[String]) -> String {
    if values.is_empty() {
        ABSENT.to_string()
    } else {
        values.join(",")
    }
}

/// Formats `data` as `T` when it decodes as one (a node of another version may send
/// something else), else prints it generically.
fn typed<T: serde::de::DeserializeOwned>(data: &Value, format: fn(&T) -> String) -> String {
    match serde_json::from_value::<T>(data.clone()) {
        Ok(value) => format(&value),
        Err(_) => format_value(data),
    }
}

/// Syncer status as aligned `key: value` lines, in the interface's order.
pub fn format_syncer_status(status: &SyncerStatus) -> String {
    format_fields(&[
        ("status", status.status.as_str().to_string()),
        ("mysql_addr", or_absent(&status.mysql_addr)),
        ("mysql_user", or_absent(&status.mysql_user)),
        ("syncer_id", or_absent(&status.syncer_id)),
        ("current_gtid", or_absent(&status.current_gtid)),
        ("last_binlog_file", or_absent(&status.last_binlog_file)),
        ("last_file_position", or_absent(&status.last_file_position)),
        (
            "executed_gtid_set",
            or_absent(&status.executed_gtid_set.clone().filter(|s| !s.is_empty())),
        ),
        (
            "purged_gtid_set",
            or_absent(&status.purged_gtid_set.clone().filter(|s| !s.is_empty())),
        ),
        ("last_error", or_absent(&status.last_error)),
        (
            "last_error_at",
            or_absent(&status.last_error_at.map(format_unix_time)),
        ),
        ("lag_seconds", or_absent(&status.lag_seconds)),
        ("events", status.events.to_string()),
        ("bytes", status.bytes.to_string()),
    ])
}

/// Server status: `key: value` lines, then a table of the connected replicas.
pub fn format_server_status(status: &ServerStatus) -> String {
    let mut text = format_fields(&[
        ("status", status.status.as_str().to_string()),
        ("addr", or_absent(&status.addr)),
        ("user", or_absent(&status.user)),
        ("slaves", status.slaves.len().to_string()),
    ]);
    if !status.slaves.is_empty() {
        text.push('\n');
        text.push_str(&format_slave_table(&status.slaves));
    }
    text
}

/// The replicas as a left-aligned table with a header row.
pub fn format_slave_table(slaves: &[SlaveInfo]) -> String {
    let header = [
        "SERVER_ID",
        "HOST",
        "PORT",
        "MODE",
        "POSITION",
        "BYTES_SENT",
        "CONNECTED_SINCE",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for slave in slaves {
        rows.push(vec![
            slave.server_id.to_string(),
            slave.host.clone(),
            slave.port.to_string(),
            slave.mode.as_str().to_string(),
            slave.position.clone(),
            slave.bytes_sent.to_string(),
            format_unix_time(slave.connected_since),
        ]);
    }
    format_table(&rows)
}

/// A latency histogram's count and quantiles in milliseconds.
fn latency_text(l: &LatencyView) -> String {
    let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
    format!(
        "{} (mean {}, p50 {}, p99 {}, p99.9 {}, max {})",
        l.count,
        ms(l.mean_us),
        ms(l.p50_us),
        ms(l.p99_us),
        ms(l.p999_us),
        ms(l.max_us)
    )
}

pub fn format_raft(raft: &RaftView) -> String {
    let mut out = format_fields(&[
        ("name", raft.name.clone()),
        ("id", raft.id.clone()),
        ("role", raft.role.clone()),
        ("term", raft.term.to_string()),
        ("leader_id", or_absent(&raft.leader_id)),
        (
            "log",
            format!(
                "first {} last {} durable {} committed {} applied {}",
                raft.first_index, raft.last_index, raft.persisted, raft.commit, raft.applied
            ),
        ),
        ("voters", list_or_absent(&raft.voters)),
        ("learners", list_or_absent(&raft.learners)),
        ("log_syncs", latency_text(&raft.log_sync)),
        ("proposals", latency_text(&raft.proposals)),
        (
            "readies",
            format!(
                "{} ({} with proposals; {} entries proposed here)",
                raft.readies, raft.append_rounds, raft.proposed_entries
            ),
        ),
    ]);
    if !raft.peers.is_empty() {
        let mut rows = vec![["PEER", "ID", "MATCHED", "NEXT", "STATE", "HEARD_MS_AGO"]
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()];
        for p in &raft.peers {
            rows.push(vec![
                if p.name.is_empty() {
                    ABSENT.to_string()
                } else {
                    p.name.clone()
                },
                p.id.clone(),
                p.matched.to_string(),
                p.next.to_string(),
                p.state.clone(),
                p.heard_ms_ago
                    .map_or(ABSENT.to_string(), |ms| ms.to_string()),
            ]);
        }
        out.push_str(&format_table(&rows));
    }
    out
}

pub fn format_health(health: &Health) -> String {
    format_fields(&[
        ("status", health.status.clone()),
        ("version", health.version.clone()),
        ("uptime_seconds", health.uptime_seconds.to_string()),
        ("pid", health.pid.to_string()),
    ])
}

/// Any JSON value: an object as `key: value` lines, anything else as pretty JSON.
pub fn format_value(value: &Value) -> String {
    match value {
        Value::Object(object) => format_object(object),
        Value::Null => String::new(),
        other => with_newline(&serde_json::to_string_pretty(other).unwrap_or_default()),
    }
}

fn format_object(object: &Map<String, Value>) -> String {
    let fields: Vec<(&str, String)> = object
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::Null => ABSENT.to_string(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (key.as_str(), text)
        })
        .collect();
    format_fields(&fields)
}

/// `key: value` lines with the values aligned one column after the longest key.
pub fn format_fields(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(key, _)| key.len()).max().unwrap_or(0) + 1;
    let mut text = String::new();
    for (key, value) in fields {
        let label = format!("{key}:");
        let _ = writeln!(text, "{label:<width$} {value}");
    }
    text
}

/// Rows of cells as columns two spaces apart, trailing blanks trimmed.
pub fn format_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn or_absent<T: ToString>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(|| ABSENT.to_string(), ToString::to_string)
}

/// `ctl cluster`: the members, and a line when no leader is known (an election, or a lost
/// quorum) or the node asked knows no member yet (a joiner before its first entries).
fn format_cluster(members: &[MemberView]) -> String {
    let mut out = format_members(members);
    let leader = members.iter().find(|m| m.is_leader == Some(true));
    if members.is_empty() {
        out.push_str("(this node knows no member yet: a new member learns them from the leader)\n");
    } else if leader.is_none() {
        out.push_str(
            "no leader known: an election is under way, or fewer than a quorum of the voters \
             run and reach each other\n",
        );
    } else if members.iter().any(|m| m.heard_ms_ago.is_some()) {
        let expected = |m: &&MemberView| m.is_leader != Some(true) && m.role != MemberRole::None;
        let silent: Vec<String> = members
            .iter()
            .filter(expected)
            .filter(|m| m.heard_ms_ago.is_some_and(|ms| ms > SILENT_MEMBER_MS))
            .map(|m| format!("{} ({})", m.name, format_heard(m)))
            .collect();
        if !silent.is_empty() {
            let _ = writeln!(
                out,
                "the leader has not heard from {} for over {:.1} s: down, or cut off from it?",
                silent.join(", "),
                SILENT_MEMBER_MS as f64 / 1000.0
            );
        }
        let never: Vec<&str> = members
            .iter()
            .filter(expected)
            .filter(|m| m.heard_ms_ago.is_none())
            .map(|m| m.name.as_str())
            .collect();
        if !never.is_empty() {
            let _ = writeln!(
                out,
                "the leader has never heard from {} since it started: not started yet, or down?",
                never.join(", ")
            );
        }
    } else if let Some(admin) = leader.and_then(|m| m.admin_urls.first()) {
        let _ = writeln!(
            out,
            "(the leader tells how recently it heard from each member: ferrobus ctl --admin \
             {admin} cluster)"
        );
    }
    out
}

/// When the leader last heard from `member`, for people: `now` for the leader itself.
fn format_heard(member: &MemberView) -> String {
    match member.heard_ms_ago {
        _ if member.is_leader == Some(true) => "now".into(),
        None => "never".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms ago"),
        Some(ms) => format!("{:.1} s ago", ms as f64 / 1000.0),
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn format_unix_time(seconds: u64) -> String {
    let days = seconds / 86_400;
    let in_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01, counting in 400-year eras of
/// 146097 days that start on March 1st (so the leap day ends the year).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn with_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

fn snippet(text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.chars().count() <= SNIPPET_CHARS_MAX {
        return format!("{trimmed:?}");
    }
    let cut: String = trimmed.chars().take(SNIPPET_CHARS_MAX).collect();
    format!("{cut:?}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ServerArgs, ServerState, SlaveMode, SyncerArgs, SyncerState};
    use serde_json::json;

    fn syncer_status() -> SyncerStatus {
        SyncerStatus {
            status: SyncerState::Running,
            mysql_addr: Some("10.0.0.1:3306".into()),
            mysql_user: Some("repl".into()),
            syncer_id: Some(1001),
            current_gtid: Some("0-1-100".into()),
            last_binlog_file: Some("mysql-bin.000003".into()),
            last_file_position: Some(4567),
            executed_gtid_set: Some("0-1-100".into()),
            purged_gtid_set: None,
            last_error: None,
            last_error_at: None,
            lag_seconds: Some(0),
            events: 12,
            bytes: 3456,
        }
    }

    fn slave(server_id: u32, host: &str) -> SlaveInfo {
        SlaveInfo {
            server_id,
            host: host.into(),
            port: 40001,
            mode: SlaveMode::FilePos,
            position: "mysql-bin.000001:4".into(),
            bytes_sent: 99,
            connected_since: 0,
        }
    }

    fn success(data: Value) -> String {
        json!({"message": "success", "data": data}).to_string()
    }

    #[test]
    fn a_password_file_holds_one_line() {
        assert_eq!(password_from_file(b"s3cret\n").unwrap(), "s3cret");
        assert_eq!(password_from_file(b"s3cret\r\n").unwrap(), "s3cret");
        assert_eq!(
            password_from_file(b" with spaces ").unwrap(),
            " with spaces "
        );
        for empty in [&b""[..], b"\n", b"\r\n"] {
            assert!(password_from_file(empty).unwrap_err().contains("is empty"));
        }
        let two = password_from_file(b"a\nb\n").unwrap_err();
        assert!(two.contains("more than one line"), "{two}");
        assert!(password_from_file(b"a\n\n").is_err());
        assert!(password_from_file(&[0xff, 0xfe])
            .unwrap_err()
            .contains("UTF-8"));
        let bom = password_from_file("\u{feff}pw\n".as_bytes()).unwrap_err();
        assert!(bom.contains("byte-order mark"), "{bom}");
        let big = vec![b'x'; PASSWORD_FILE_BYTES_MAX as usize + 1];
        assert!(password_from_file(&big).unwrap_err().contains("more than"));
        let mut most = vec![b'x'; PASSWORD_FILE_BYTES_MAX as usize];
        assert_eq!(password_from_file(&most).unwrap().len(), most.len());
        most.extend_from_slice(b"\r\n");
        assert_eq!(password_from_file(&most).unwrap().len(), most.len() - 2);
        // A longer file read up to its cap, cut inside a character: too long, not "not UTF-8".
        let mut cut = "é".repeat(PASSWORD_FILE_BYTES_MAX as usize).into_bytes();
        cut.truncate(PASSWORD_FILE_BYTES_MAX as usize + 3);
        assert!(password_from_file(&cut).unwrap_err().contains("more than"));
    }

    #[test]
    fn requests_per_command() {
        let start = SyncerArgs {
            syncer_id: 3,
            mysql_addr: "h:1".into(),
            mysql_user: "u".into(),
            mysql_password: "p".into(),
            syncer_uuid: None,
            semi_sync: false,
            gtid: Some("0-1-2".into()),
            binlog_file: None,
            binlog_pos: None,
        };
        let request = Request::for_command(&CtlCommand::SyncerStart {
            args: start,
            password_file: None,
        })
        .unwrap();
        assert_eq!(
            (request.method, request.path),
            (Method::Put, "/binlog/syncer/start")
        );
        let body: Value = serde_json::from_str(request.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"syncer_id": 3, "mysql_addr": "h:1", "mysql_user": "u", "mysql_password": "p",
                   "semi_sync": false, "gtid": "0-1-2"})
        );
        // The body the client sends is one the server accepts.
        let text = request.body.unwrap();
        assert!(crate::api::validate::syncer_args_from_json(text.as_bytes()).is_ok());

        let server = ServerArgs {
            addr: "0.0.0.0:1".into(),
            user: "u".into(),
            password: String::new(),
            auth_plugin: Some("caching_sha2_password".into()),
            ..Default::default()
        };
        let request = Request::for_command(&CtlCommand::ServerStart {
            args: server,
            password_file: None,
        })
        .unwrap();
        let text = request.body.unwrap();
        assert!(crate::api::validate::server_args_from_json(text.as_bytes()).is_ok());

        let cases = [
            (CtlCommand::SyncerStop, Method::Put, "/binlog/syncer/stop"),
            (
                CtlCommand::SyncerStatus,
                Method::Get,
                "/binlog/syncer/status",
            ),
            (CtlCommand::ServerStop, Method::Put, "/binlog/server/stop"),
            (
                CtlCommand::ServerStatus,
                Method::Get,
                "/binlog/server/status",
            ),
            (CtlCommand::Health, Method::Get, "/health"),
        ];
        for (command, method, path) in cases {
            let request = Request::for_command(&command).unwrap();
            assert_eq!(
                request,
                Request {
                    method,
                    path,
                    body: None
                }
            );
        }
    }

    fn member_json(name: &str, id: &str, leader: Option<bool>) -> Value {
        let mut value = json!({"Id": id, "name": name, "peerURLs": [format!("{name}:9596")],
            "adminURLs": [format!("{name}:9595")], "binlog_addr": null});
        if let Some(leader) = leader {
            value["isLeader"] = json!(leader);
            value["is_leader"] = json!(leader);
        }
        value
    }

    #[test]
    fn cluster_requests() {
        use crate::api::{MemberAdd, MemberUpdate};
        let add = CtlCommand::MemberAdd(MemberAdd {
            name: "n4".into(),
            peer_url: "h:1".into(),
            admin_url: None,
        });
        let request = Request::for_command(&add).unwrap();
        assert_eq!((request.method, request.path), (Method::Post, "/members"));
        let body = request.body.unwrap();
        assert_eq!(body, r#"{"name":"n4","peer_url":"h:1"}"#);
        assert!(crate::api::validate::member_add_from_json(body.as_bytes()).is_ok());

        let update = CtlCommand::MemberUpdate(MemberUpdate {
            name: "n2".into(),
            new_peer_url: "h:2".into(),
        });
        let request = Request::for_command(&update).unwrap();
        assert_eq!((request.method, request.path), (Method::Put, "/members"));
        let body = request.body.unwrap();
        assert_eq!(body, r#"{"name":"n2","new_peer_url":"h:2"}"#);
        assert!(crate::api::validate::member_update_from_json(body.as_bytes()).is_ok());

        let remove = CtlCommand::MemberRemove { name: "n3".into() };
        let request = Request::for_command(&remove).unwrap();
        assert_eq!((request.method, request.path), (Method::Delete, "/members"));
        assert_eq!(request.body.as_deref(), Some(r#"{"name":"n3"}"#));

        let purge = CtlCommand::Purge {
            to_file: "b.000002".into(),
        };
        let request = Request::for_command(&purge).unwrap();
        assert_eq!(
            (request.method, request.path),
            (Method::Put, "/binlog/purge")
        );
        let body = request.body.unwrap();
        assert!(crate::api::validate::purge_args_from_json(body.as_bytes()).is_ok());

        for (command, path) in [
            (CtlCommand::MembersList, "/members"),
            (CtlCommand::Cluster, "/cluster"),
            (CtlCommand::Raft, "/raft/status"),
        ] {
            let request = Request::for_command(&command).unwrap();
            assert_eq!(
                request,
                Request {
                    method: Method::Get,
                    path,
                    body: None
                }
            );
        }
    }

    #[test]
    fn raft_status_text() {
        let leader = json!({
            "id": "1a", "name": "n1", "role": "leader", "term": 3, "leader_id": "1a",
            "commit": 90, "applied": 90, "first_index": 1, "last_index": 91, "persisted": 90,
            "voters": ["1a", "2b", "3c"], "learners": [],
            "peers": [
                {"id": "2b", "name": "n2", "matched": 91, "next": 92, "state": "replicate",
                 "heard_ms_ago": 12},
                {"id": "3c", "name": "", "matched": 0, "next": 1, "state": "probe",
                 "heard_ms_ago": null}
            ],
            "log_sync": {"count": 80, "mean_us": 610, "p50_us": 447, "p90_us": 1023,
                         "p99_us": 3583, "p999_us": 12287, "max_us": 12001,
                         "buckets": [[448, 40], [1024, 32], [3584, 7], [12288, 1]]},
            "proposals": {"count": 85, "mean_us": 1210, "p50_us": 1023, "p90_us": 2047,
                          "p99_us": 4095, "p999_us": 4095, "max_us": 3900,
                          "buckets": [[1024, 50], [2048, 30], [4096, 5]]},
            "readies": 120, "append_rounds": 85, "proposed_entries": 85
        });
        let outcome = render(&CtlCommand::Raft, 200, &success(leader.clone()), false);
        assert_eq!(
            outcome.stdout,
            "name:      n1\n\
             id:        1a\n\
             role:      leader\n\
             term:      3\n\
             leader_id: 1a\n\
             log:       first 1 last 91 durable 90 committed 90 applied 90\n\
             voters:    1a,2b,3c\n\
             learners:  -\n\
             log_syncs: 80 (mean 0.61 ms, p50 0.45 ms, p99 3.58 ms, p99.9 12.29 ms, max 12.00 ms)\n\
             proposals: 85 (mean 1.21 ms, p50 1.02 ms, p99 4.09 ms, p99.9 4.09 ms, max 3.90 ms)\n\
             readies:   120 (85 with proposals; 85 entries proposed here)\n\
             PEER  ID  MATCHED  NEXT  STATE      HEARD_MS_AGO\n\
             n2    2b  91       92    replicate  12\n\
             -     3c  0        1     probe      -\n"
        );
        // A follower has no peers table, and no leader may be known.
        let mut follower = leader;
        follower["role"] = json!("follower");
        follower["leader_id"] = json!(null);
        follower["peers"] = json!([]);
        let outcome = render(&CtlCommand::Raft, 200, &success(follower), false);
        assert!(
            outcome.stdout.contains("leader_id: -\n"),
            "{}",
            outcome.stdout
        );
        assert!(outcome.stdout.contains("role:      follower\n"));
        assert!(!outcome.stdout.contains("PEER"), "{}", outcome.stdout);
    }

    #[test]
    fn the_leaders_cluster_view_says_who_it_has_not_heard_from() {
        let heard = |name: &str, id: &str, leads: bool, ms: Option<u64>| {
            let mut m = member_json(name, id, Some(leads));
            m["heard_ms_ago"] = json!(ms);
            m
        };
        let mut gone = heard("n5", "5", false, None);
        gone["role"] = json!("none");
        let cluster = json!([
            heard("n1", "1", true, Some(0)),
            heard("n2", "2", false, Some(12)),
            heard("n3", "3", false, Some(SILENT_MEMBER_MS + 3000)),
            heard("n4", "4", false, None),
            gone,
        ]);
        let outcome = render(&CtlCommand::Cluster, 200, &success(cluster), false);
        let lines: Vec<&str> = outcome.stdout.lines().collect();
        assert!(lines[0].ends_with("LEADER  HEARD"), "{}", outcome.stdout);
        assert!(lines[1].ends_with("yes     now"), "{}", outcome.stdout);
        assert!(
            lines[2].ends_with("no      12 ms ago"),
            "{}",
            outcome.stdout
        );
        assert!(
            lines[3].ends_with("no      5.5 s ago"),
            "{}",
            outcome.stdout
        );
        assert!(lines[4].ends_with("no      never"), "{}", outcome.stdout);
        // n2 is fine; n5 is in no raft role, so no one expects to hear from it.
        assert_eq!(
            lines[6],
            "the leader has not heard from n3 (5.5 s ago) for over 2.5 s: down, or cut off from \
             it?"
        );
        assert_eq!(
            lines[7],
            "the leader has never heard from n4 since it started: not started yet, or down?"
        );
        let all_heard = json!([
            heard("n1", "1", true, Some(0)),
            heard("n2", "2", false, Some(80))
        ]);
        let outcome = render(&CtlCommand::Cluster, 200, &success(all_heard), false);
        assert_eq!(outcome.stdout.lines().count(), 3, "{}", outcome.stdout);
    }

    #[test]
    fn member_tables() {
        let mut learner = member_json("n22", "2bc", None);
        learner["isLearner"] = json!(true);
        let members = json!([member_json("n1", "1a", None), learner]);
        let outcome = render(&CtlCommand::MembersList, 200, &success(members), false);
        assert_eq!(
            outcome.stdout,
            "NAME  ID   PEER_URL  ADMIN_URL  BINLOG_ADDR  ROLE\n\
             n1    1a   n1:9596   n1:9595    -            voter\n\
             n22   2bc  n22:9596  n22:9595   -            learner\n"
        );
        let mut second = member_json("n2", "2", Some(true));
        second["adminURLs"] = json!([]);
        second["binlog_addr"] = json!("0.0.0.0:3307");
        let cluster = json!([member_json("n1", "1", Some(false)), second]);
        let outcome = render(&CtlCommand::Cluster, 200, &success(cluster.clone()), false);
        assert_eq!(
            outcome.stdout,
            "NAME  ID  PEER_URL  ADMIN_URL  BINLOG_ADDR   ROLE   LEADER\n\
             n1    1   n1:9596   n1:9595    -             voter  no\n\
             n2    2   n2:9596   -          0.0.0.0:3307  voter  yes\n"
        );
        let outcome = render(&CtlCommand::Cluster, 200, &success(cluster.clone()), true);
        assert_eq!(outcome.stdout, format!("{}\n", success(cluster)));
        // No leader among them: said under the table; no member known: said instead.
        let leaderless = json!([member_json("n1", "1", Some(false))]);
        let outcome = render(&CtlCommand::Cluster, 200, &success(leaderless), false);
        assert!(
            outcome.stdout.ends_with("no leader known: an election is under way, or fewer than a quorum of the voters run and reach each other\n"),
            "{}",
            outcome.stdout
        );
        let outcome = render(&CtlCommand::Cluster, 200, &success(json!([])), false);
        assert!(
            outcome.stdout.contains("knows no member yet"),
            "{}",
            outcome.stdout
        );

        // From a follower: no HEARD column, and a pointer to the leader, who has one.
        let from_follower = json!([
            member_json("n1", "1", Some(true)),
            member_json("n2", "2", Some(false))
        ]);
        let outcome = render(&CtlCommand::Cluster, 200, &success(from_follower), false);
        assert!(!outcome.stdout.contains("HEARD"), "{}", outcome.stdout);
        assert!(
            outcome
                .stdout
                .ends_with("(the leader tells how recently it heard from each member: ferrobus ctl --admin n1:9595 cluster)\n"),
            "{}",
            outcome.stdout
        );

        let remove = CtlCommand::MemberRemove { name: "n3".into() };
        let members = json!([member_json("n1", "1", None)]);
        let outcome = render(&remove, 200, &success(members), false);
        assert_eq!(
            outcome.stdout,
            "member n3 removed\n\nNAME  ID  PEER_URL  ADMIN_URL  BINLOG_ADDR  ROLE\nn1    1   n1:9596   n1:9595    -            voter\n"
        );
        let purge = CtlCommand::Purge {
            to_file: "b.000002".into(),
        };
        let outcome = render(&purge, 200, &success(Value::Null), false);
        assert_eq!(outcome.stdout, "binlog before b.000002 purged\n");
        let outcome = render(
            &CtlCommand::MembersList,
            503,
            r#"{"message":"no leader is known"}"#,
            false,
        );
        assert_eq!(outcome.exit_code, EXIT_NODE_ERROR);
        assert_eq!(outcome.stderr, "error: no leader is known (HTTP 503)\n");
    }

    #[test]
    fn a_node_that_never_replies_is_told_from_one_that_cannot_be_reached() {
        let message = unreachable("127.0.0.1:9", &ureq::Error::Timeout(ureq::Timeout::Global));
        assert!(
            message.starts_with("no reply from 127.0.0.1:9 within ") && !message.contains("reach"),
            "{message}"
        );
        let refused = ureq::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let message = unreachable("127.0.0.1:9", &refused);
        assert!(
            message.starts_with("cannot reach the node at 127.0.0.1:9"),
            "{message}"
        );
    }

    #[test]
    fn syncer_status_lines_are_aligned() {
        let mut status = syncer_status();
        status.purged_gtid_set = Some(String::new());
        status.last_error = Some("cannot connect to the master".into());
        status.last_error_at = Some(1_700_000_000);
        let text = format_syncer_status(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 14);
        assert_eq!(lines[0], "status:             running");
        assert_eq!(lines[5], "last_binlog_file:   mysql-bin.000003");
        assert_eq!(lines[8], "purged_gtid_set:    -");
        assert_eq!(lines[10], "last_error_at:      2023-11-14T22:13:20Z");
        assert_eq!(lines[13], "bytes:              3456");
        // Every value starts in the same column.
        let column = lines[0].find("running").unwrap();
        assert!(lines
            .iter()
            .all(|line| line.len() > column && line.as_bytes()[column - 1] == b' '));
    }

    #[test]
    fn server_status_with_and_without_slaves() {
        let mut status = ServerStatus {
            addr: Some("0.0.0.0:3307".into()),
            user: Some("repl".into()),
            status: ServerState::Running,
            slaves: vec![],
        };
        assert_eq!(
            format_server_status(&status),
            "status: running\naddr:   0.0.0.0:3307\nuser:   repl\nslaves: 0\n"
        );
        status.slaves = vec![slave(7, "10.0.0.7"), slave(123456, "h")];
        status.slaves[1].mode = SlaveMode::Gtid;
        status.slaves[1].position = "0-1-5".into();
        status.slaves[1].connected_since = 1_700_000_000;
        let text = format_server_status(&status);
        let table: Vec<&str> = text.lines().skip(5).collect();
        assert_eq!(
            table,
            [
                "SERVER_ID  HOST      PORT   MODE      POSITION            BYTES_SENT  CONNECTED_SINCE",
                "7          10.0.0.7  40001  file_pos  mysql-bin.000001:4  99          1970-01-01T00:00:00Z",
                "123456     h         40001  gtid      0-1-5               99          2023-11-14T22:13:20Z",
            ]
        );
    }

    #[test]
    fn unix_times() {
        assert_eq!(format_unix_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix_time(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(format_unix_time(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(format_unix_time(253_402_300_799), "9999-12-31T23:59:59Z");
        // Never panics, even at the end of the range.
        assert!(format_unix_time(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn render_success_as_text_and_json() {
        let body = success(serde_json::to_value(syncer_status()).unwrap());
        let outcome = render(&CtlCommand::SyncerStatus, 200, &body, false);
        assert_eq!(outcome.exit_code, EXIT_OK);
        assert_eq!(outcome.stdout, format_syncer_status(&syncer_status()));
        assert_eq!(outcome.stderr, "");

        let outcome = render(&CtlCommand::SyncerStatus, 200, &body, true);
        assert_eq!(outcome.stdout, format!("{body}\n"));

        let outcome = render(&CtlCommand::SyncerStop, 200, &success(Value::Null), false);
        assert_eq!(outcome.stdout, "syncer stopped\n");
        let outcome = render(&CtlCommand::ServerStop, 200, &success(Value::Null), false);
        assert_eq!(outcome.stdout, "binlog server stopped\n");

        let health = json!({"status": "ok", "version": "0.1.0", "uptime_seconds": 5, "pid": 77});
        let outcome = render(&CtlCommand::Health, 200, &success(health), false);
        assert_eq!(
            outcome.stdout,
            "status:         ok\nversion:        0.1.0\nuptime_seconds: 5\npid:            77\n"
        );
    }

    #[test]
    fn unexpected_data_is_printed_generically() {
        let health = json!({"status": "ok", "version": "9.9", "raft": {"leader": 1}, "note": null});
        let outcome = render(&CtlCommand::Health, 200, &success(health), false);
        assert_eq!(outcome.exit_code, EXIT_OK);
        assert_eq!(
            outcome.stdout,
            "note:    -\nraft:    {\"leader\":1}\nstatus:  ok\nversion: 9.9\n"
        );
        let outcome = render(
            &CtlCommand::ServerStatus,
            200,
            &success(json!([1, 2])),
            false,
        );
        assert_eq!(outcome.stdout, "[\n  1,\n  2\n]\n");
    }

    #[test]
    fn render_errors() {
        let body = r#"{"message":"syncer already running"}"#;
        let outcome = render(&CtlCommand::Health, 409, body, false);
        assert_eq!(
            outcome,
            Outcome {
                stdout: String::new(),
                stderr: "error: syncer already running (HTTP 409)\n".into(),
                exit_code: EXIT_NODE_ERROR,
            }
        );
        let outcome = render(&CtlCommand::Health, 409, body, true);
        assert_eq!(outcome.stdout, format!("{body}\n"));
        assert_eq!(outcome.exit_code, EXIT_NODE_ERROR);

        let outcome = render(&CtlCommand::Health, 502, "<html>bad gateway</html>", true);
        assert_eq!(outcome.exit_code, EXIT_NODE_ERROR);
        assert_eq!(outcome.stdout, "");
        assert!(outcome
            .stderr
            .contains("HTTP 502 with a body that is not JSON: \"<html>bad gateway</html>\""));

        let outcome = render(&CtlCommand::Health, 500, r#"{"error":"x"}"#, false);
        assert_eq!(
            outcome.stderr,
            "error: \"{\\\"error\\\":\\\"x\\\"}\" (HTTP 500)\n"
        );

        let long = "x".repeat(5000);
        let outcome = render(&CtlCommand::Health, 200, &long, false);
        assert!(outcome.stderr.len() < 400);
    }

    #[test]
    fn tables_handle_ragged_rows() {
        let rows = vec![
            vec!["A".to_string(), "BB".to_string()],
            vec!["ccc".to_string()],
        ];
        assert_eq!(format_table(&rows), "A    BB\nccc\n");
        assert_eq!(format_table(&[]), "");
        assert_eq!(format_fields(&[]), "");
    }

    #[test]
    fn unreachable_node_exits_3() {
        // Bind then drop a listener to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args = CtlArgs {
            admin: format!("127.0.0.1:{port}"),
            json: false,
            command: CtlCommand::Health,
        };
        assert_eq!(run(args), EXIT_UNREACHABLE);
    }
}
