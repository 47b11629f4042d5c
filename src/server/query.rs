//! Answers the statements replicas, `mariadb-binlog` and CDC libraries send, pure.
//!
//! Matching is case-insensitive and tolerates spacing and a trailing `;`. Every statement
//! gets an answer: a result set, OK, or a MySQL error that leaves the connection usable.
//! Answers follow the flavour of the stored binlog: on MySQL data the server has a
//! SERVER_UUID, GTID_MODE, gtid_executed / gtid_purged in MySQL's text form, and SHOW MASTER
//! STATUS (or SHOW BINARY LOG STATUS) carries Executed_Gtid_Set; on MariaDB data the MySQL
//! GTID variables are unknown, as on a MariaDB server.
//! It must not touch sockets or the store: the session hands it a [`ServerView`].

use std::collections::BTreeMap;

use crate::binlog::Flavour;
use crate::mysql::resultset::{ER_PARSE_ERROR, ER_UNKNOWN_SYSTEM_VARIABLE};

/// What a statement needs to know about the server.
#[derive(Clone, Debug, Default)]
pub struct ServerView {
    /// Version without the "5.5.5-" handshake prefix.
    pub version: String,
    pub server_id: u32,
    pub gtid_binlog_pos: String,
    /// Last stored file and the end of its whole content.
    pub master_status: Option<(String, u64)>,
    /// Stored files and their sizes (end of stored content).
    pub binary_logs: Vec<(String, u64)>,
    pub unix_time: u64,
    /// Who wrote the stored binlog (with nothing stored: as the version reported says).
    pub flavour: Flavour,
    /// This node's stable server UUID (MySQL's @@server_uuid).
    pub server_uuid: String,
    /// MySQL data: gtid_executed and gtid_purged in MySQL's text form (empty otherwise).
    pub gtid_executed: String,
    pub gtid_purged: String,
}

impl ServerView {
    fn is_mysql(&self) -> bool {
        self.flavour == Flavour::MySql
    }

    /// MySQL data with GTIDs: GTID_MODE is ON.
    fn gtid_mode_on(&self) -> bool {
        self.is_mysql() && !self.gtid_executed.is_empty()
    }

    /// MySQL 8.0 or later (SHOW BINARY LOGS has an Encrypted column).
    fn is_mysql8(&self) -> bool {
        self.is_mysql()
            && self
                .version
                .split('.')
                .next()
                .and_then(|major| major.parse::<u32>().ok())
                .is_some_and(|major| major >= 8)
    }
}

/// The session's user variables (`SET @x = …`), lower-cased names without the `@`.
pub type UserVars = BTreeMap<String, Option<String>>;

/// The answer to one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Ok,
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<Option<String>>>,
    },
    Err {
        code: u16,
        message: String,
    },
}

impl Reply {
    fn variables(rows: Vec<(&str, String)>) -> Reply {
        Reply::Rows {
            columns: vec!["Variable_name".into(), "Value".into()],
            rows: rows
                .into_iter()
                .map(|(n, v)| vec![Some(n.to_string()), Some(v)])
                .collect(),
        }
    }
}

/// Answers one statement, updating `vars` for `SET @…`.
pub fn answer(sql: &str, vars: &mut UserVars, view: &ServerView) -> Reply {
    let text = normalize(sql);
    let lower = text.to_ascii_lowercase();
    if lower.is_empty() {
        return Reply::Err {
            code: ER_PARSE_ERROR,
            message: "Query was empty".into(),
        };
    }
    if let Some(rest) = strip_word(&lower, "set") {
        let original_rest = &text[text.len() - rest.len()..];
        return set_statement(original_rest, vars, view);
    }
    if let Some(rest) = strip_word(&lower, "select") {
        let original_rest = &text[text.len() - rest.len()..];
        return select_statement(rest, original_rest, vars, view);
    }
    if let Some(rest) = strip_word(&lower, "show") {
        return show_statement(rest, view);
    }
    if matches!(
        lower.as_str(),
        "begin" | "commit" | "rollback" | "start transaction"
    ) || lower.starts_with("use ")
    {
        return Reply::Ok;
    }
    unsupported(&text)
}

fn unsupported(text: &str) -> Reply {
    let shown: String = text.chars().take(200).collect();
    Reply::Err {
        code: ER_PARSE_ERROR,
        message: format!("ferrobus does not support this statement: {shown}"),
    }
}

/// Trims, drops trailing `;`, collapses whitespace outside quotes.
fn normalize(sql: &str) -> String {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    let mut out = String::with_capacity(trimmed.len());
    let mut quote: Option<char> = None;
    let mut last_space = false;
    for c in trimmed.chars() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !last_space {
                    out.push(' ');
                }
                last_space = true;
                continue;
            }
            None => {
                if c == '\'' || c == '"' || c == '`' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
        last_space = false;
    }
    out
}

/// `rest` after `word` and a space, when `s` starts with that word.
fn strip_word<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(word)?;
    if rest.is_empty() {
        return Some(rest);
    }
    rest.strip_prefix(' ')
}

/// Splits on commas that are outside quotes and parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quote: Option<char> = None;
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' | '`' => quote = Some(c),
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(s[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            },
        }
    }
    parts.push(s[start..].trim());
    parts
}

fn unquote(v: &str) -> Option<&str> {
    let v = v.trim();
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return Some(&v[1..v.len() - 1]);
        }
    }
    None
}

fn set_statement(rest: &str, vars: &mut UserVars, view: &ServerView) -> Reply {
    for assignment in split_top_level(rest) {
        let Some((name, value)) = assignment.split_once('=') else {
            // `SET NAMES utf8mb4`, `SET CHARACTER SET …`, `SET autocommit 1`: accept.
            continue;
        };
        let name = name.trim().trim_start_matches(':');
        let Some(user_var) = name.strip_prefix('@').filter(|n| !n.starts_with('@')) else {
            continue; // session/global system variables: accepted, no effect here
        };
        let value = value.trim();
        let resolved = if let Some(s) = unquote(value) {
            Some(s.to_string())
        } else if value.eq_ignore_ascii_case("null") {
            None
        } else if let Some(sysvar) = value.strip_prefix("@@") {
            match system_variable(sysvar, view) {
                Some(v) => v,
                None => return unknown_variable(sysvar),
            }
        } else {
            Some(value.to_string())
        };
        vars.insert(user_var.to_ascii_lowercase(), resolved);
    }
    Reply::Ok
}

fn unknown_variable(name: &str) -> Reply {
    let bare = name.rsplit('.').next().unwrap_or(name);
    Reply::Err {
        code: ER_UNKNOWN_SYSTEM_VARIABLE,
        message: format!("Unknown system variable '{bare}'"),
    }
}

/// The value of a system variable (`global.x`, `session.x` or `x`), None if unknown.
fn system_variable(name: &str, view: &ServerView) -> Option<Option<String>> {
    let lower = name.to_ascii_lowercase();
    let bare = lower
        .strip_prefix("global.")
        .or_else(|| lower.strip_prefix("session."))
        .or_else(|| lower.strip_prefix("local."))
        .unwrap_or(&lower);
    let v = match bare {
        "version" => view.version.clone(),
        "version_comment" => "ferrobus binlog server".into(),
        "server_id" => view.server_id.to_string(),
        "server_uuid" => view.server_uuid.clone(),
        // MySQL's GTID variables exist on MySQL data only (a MariaDB server has none).
        "gtid_mode" | "enforce_gtid_consistency" if view.is_mysql() => {
            on_off(view.gtid_mode_on()).into()
        }
        "gtid_executed" if view.is_mysql() => view.gtid_executed.clone(),
        "gtid_purged" if view.is_mysql() => view.gtid_purged.clone(),
        "gtid_owned" if view.is_mysql() => String::new(),
        "binlog_row_value_options" if view.is_mysql() => String::new(),
        "binlog_gtid_simple_recovery" if view.is_mysql() => "ON".into(),
        "log_slave_updates" | "log_replica_updates" => "1".into(),
        "binlog_transaction_compression" if view.is_mysql() => "OFF".into(),
        // MariaDB's GTID variables exist on MariaDB data only.
        "gtid_binlog_pos" | "gtid_current_pos" | "gtid_binlog_state" if !view.is_mysql() => {
            view.gtid_binlog_pos.clone()
        }
        "gtid_slave_pos" if !view.is_mysql() => String::new(),
        "gtid_domain_id" if !view.is_mysql() => "0".into(),
        "gtid_strict_mode" if !view.is_mysql() => "1".into(),
        "binlog_checksum" => "CRC32".into(),
        "binlog_format" => "ROW".into(),
        "binlog_row_image" => "FULL".into(),
        "binlog_row_metadata" => "NO_LOG".into(),
        "log_bin" => "1".into(),
        "max_allowed_packet" => "1073741824".into(),
        "autocommit" => "1".into(),
        "auto_increment_increment" => "1".into(),
        "lower_case_table_names" => "0".into(),
        "character_set_server"
        | "character_set_client"
        | "character_set_results"
        | "character_set_connection" => "utf8mb4".into(),
        "collation_server" | "collation_connection" => "utf8mb4_general_ci".into(),
        "time_zone" | "system_time_zone" => "SYSTEM".into(),
        "sql_mode" => String::new(),
        "transaction_isolation" | "tx_isolation" => "REPEATABLE-READ".into(),
        "wait_timeout" | "interactive_timeout" => "28800".into(),
        "net_write_timeout" | "net_read_timeout" => "60".into(),
        "license" => "GPL".into(),
        "hostname" => "ferrobus".into(),
        "port" => "0".into(),
        "socket" => String::new(),
        "read_only" => "1".into(),
        _ => return None,
    };
    Some(Some(v))
}

fn on_off(on: bool) -> &'static str {
    if on {
        "ON"
    } else {
        "OFF"
    }
}

/// `… LIMIT n` at the end of a statement (`SELECT @@version_comment LIMIT 1` from the
/// mysql client): one row is all a variable select has anyway.
fn strip_limit(s: &str) -> &str {
    let lower = s.to_ascii_lowercase();
    match lower.rfind(" limit ") {
        Some(i) if lower[i + 7..].trim().parse::<u64>().is_ok() => &s[..i],
        _ => s,
    }
}

fn select_statement(rest: &str, original: &str, vars: &UserVars, view: &ServerView) -> Reply {
    let (rest, original) = (strip_limit(rest), strip_limit(original));
    if rest.contains(" from ") {
        // python-mysql-replication reads column metadata from information_schema: an empty
        // answer makes it fall back to unnamed columns instead of failing.
        if rest.contains("information_schema") {
            return empty_rows(rest);
        }
        return unsupported(original);
    }
    let items = split_top_level(original);
    let mut columns = Vec::with_capacity(items.len());
    let mut row = Vec::with_capacity(items.len());
    for item in items {
        let (expr, alias) = split_alias(item);
        let lower = expr.to_ascii_lowercase();
        let value = if lower == "version()" {
            Some(view.version.clone())
        } else if lower == "unix_timestamp()" {
            Some(view.unix_time.to_string())
        } else if lower == "database()" || lower == "user()" || lower == "current_user()" {
            None
        } else if lower == "connection_id()" {
            Some("1".into())
        } else if let Some(sysvar) = lower.strip_prefix("@@") {
            match system_variable(sysvar, view) {
                Some(v) => v,
                None => return unknown_variable(sysvar),
            }
        } else if let Some(user_var) = lower.strip_prefix('@') {
            vars.get(user_var).cloned().flatten()
        } else if let Some(s) = unquote(expr) {
            Some(s.to_string())
        } else if lower.parse::<i64>().is_ok() {
            Some(lower.clone())
        } else {
            return unsupported(original);
        };
        columns.push(alias.unwrap_or(expr).to_string());
        row.push(value);
    }
    Reply::Rows {
        columns,
        rows: vec![row],
    }
}

/// `expr AS alias` / `expr alias`.
fn split_alias(item: &str) -> (&str, Option<&str>) {
    let lower = item.to_ascii_lowercase();
    if let Some(i) = lower.rfind(" as ") {
        return (
            item[..i].trim(),
            Some(item[i + 4..].trim().trim_matches('`')),
        );
    }
    (item.trim(), None)
}

/// An empty result set whose columns are the selected names.
fn empty_rows(rest: &str) -> Reply {
    let list = rest.split(" from ").next().unwrap_or("");
    let columns = split_top_level(list)
        .into_iter()
        .map(|c| split_alias(c).1.unwrap_or(c).to_ascii_uppercase())
        .collect();
    Reply::Rows {
        columns,
        rows: Vec::new(),
    }
}

fn show_statement(rest: &str, view: &ServerView) -> Reply {
    let rest = rest
        .strip_prefix("global ")
        .or_else(|| rest.strip_prefix("session "))
        .unwrap_or(rest);
    if let Some(pattern) = rest.strip_prefix("variables") {
        return show_variables(pattern.trim(), view);
    }
    match rest {
        "master status" | "binary log status" | "binlog status" => master_status(view),
        "binary logs" | "master logs" => {
            let mut columns = vec!["Log_name".to_string(), "File_size".to_string()];
            if view.is_mysql8() {
                columns.push("Encrypted".into());
            }
            let rows = view
                .binary_logs
                .iter()
                .map(|(f, s)| {
                    let mut row = vec![Some(f.clone()), Some(s.to_string())];
                    if view.is_mysql8() {
                        row.push(Some("No".into()));
                    }
                    row
                })
                .collect();
            Reply::Rows { columns, rows }
        }
        "warnings" | "errors" => Reply::Rows {
            columns: vec!["Level".into(), "Code".into(), "Message".into()],
            rows: Vec::new(),
        },
        "slave hosts" | "replicas" => {
            let new_words = rest == "replicas";
            let mut columns: Vec<String> = if new_words {
                vec!["Server_Id", "Host", "Port", "Source_Id"]
            } else {
                vec!["Server_id", "Host", "Port", "Master_id"]
            }
            .into_iter()
            .map(String::from)
            .collect();
            if view.is_mysql() {
                columns.push(
                    if new_words {
                        "Replica_UUID"
                    } else {
                        "Slave_UUID"
                    }
                    .into(),
                );
            }
            Reply::Rows {
                columns,
                rows: Vec::new(),
            }
        }
        _ => unsupported(&format!("SHOW {rest}")),
    }
}

/// SHOW MASTER STATUS / SHOW BINARY LOG STATUS: MySQL adds Executed_Gtid_Set.
fn master_status(view: &ServerView) -> Reply {
    let mut columns: Vec<String> = ["File", "Position", "Binlog_Do_DB", "Binlog_Ignore_DB"]
        .into_iter()
        .map(String::from)
        .collect();
    if view.is_mysql() {
        columns.push("Executed_Gtid_Set".into());
    }
    let rows = view
        .master_status
        .iter()
        .map(|(f, p)| {
            let mut row = vec![
                Some(f.clone()),
                Some(p.to_string()),
                Some(String::new()),
                Some(String::new()),
            ];
            if view.is_mysql() {
                row.push(Some(view.gtid_executed.clone()));
            }
            row
        })
        .collect();
    Reply::Rows { columns, rows }
}

/// How SHOW VARIABLES shows a value: switches as ON/OFF, where SELECT @@x gives 1/0.
fn shown_value(name: &str, value: String) -> String {
    match (name, value.as_str()) {
        ("log_bin" | "log_slave_updates" | "log_replica_updates" | "read_only", "1") => "ON".into(),
        ("log_bin" | "log_slave_updates" | "log_replica_updates" | "read_only", "0") => {
            "OFF".into()
        }
        _ => value,
    }
}

fn show_variables(pattern: &str, view: &ServerView) -> Reply {
    const NAMES: &[&str] = &[
        "server_id",
        "server_uuid",
        "version",
        "binlog_checksum",
        "binlog_format",
        "binlog_row_image",
        "binlog_row_metadata",
        "log_bin",
        "gtid_binlog_pos",
        "gtid_current_pos",
        "gtid_domain_id",
        "gtid_strict_mode",
        "gtid_mode",
        "enforce_gtid_consistency",
        "gtid_executed",
        "gtid_purged",
        "binlog_row_value_options",
        "binlog_transaction_compression",
        "log_slave_updates",
        "log_replica_updates",
        "read_only",
        "max_allowed_packet",
        "lower_case_table_names",
        "character_set_server",
        "collation_server",
        "time_zone",
        "system_time_zone",
    ];
    let like = pattern
        .strip_prefix("like ")
        .and_then(unquote)
        .map(str::to_ascii_lowercase);
    let wanted = pattern.strip_prefix("where ").and_then(where_names);
    if !pattern.is_empty() && like.is_none() && wanted.is_none() {
        return unsupported(&format!("SHOW VARIABLES {pattern}"));
    }
    let rows = NAMES
        .iter()
        .filter(|n| like.as_deref().is_none_or(|p| like_matches(p, n)))
        .filter(|n| wanted.as_ref().is_none_or(|w| w.iter().any(|w| w == *n)))
        .filter_map(|n| Some((*n, shown_value(n, system_variable(n, view)??))))
        .collect();
    Reply::variables(rows)
}

/// The names of `WHERE Variable_name = 'x'` or `WHERE Variable_name IN ('x', 'y')`
/// (lower-cased input), None for any other condition.
fn where_names(condition: &str) -> Option<Vec<String>> {
    let rest = condition.strip_prefix("variable_name")?.trim_start();
    if let Some(value) = rest.strip_prefix('=') {
        return unquote(value).map(|v| vec![v.to_string()]);
    }
    let list = rest
        .strip_prefix("in")?
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    split_top_level(list)
        .into_iter()
        .map(|v| unquote(v).map(str::to_string))
        .collect()
}

/// SQL LIKE with `%` and `_`, case-insensitive (both sides already lower-cased).
/// Iterative, with one backtrack point (the last `%`): linear in practice and never deep,
/// whatever pattern a client sends.
fn like_matches(pattern: &str, name: &str) -> bool {
    // Tokens: Some(byte) matches that byte, None matches any one byte; `%` handled apart.
    enum Tok {
        Any,
        One(Option<u8>),
    }
    let p = pattern.as_bytes();
    let mut toks = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'%' => toks.push(Tok::Any),
            b'_' => toks.push(Tok::One(None)),
            b'\\' if i + 1 < p.len() => {
                i += 1;
                toks.push(Tok::One(Some(p[i])));
            }
            c => toks.push(Tok::One(Some(c))),
        }
        i += 1;
    }
    let s = name.as_bytes();
    let (mut ti, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match toks.get(ti) {
            Some(Tok::Any) => {
                star = Some((ti, si));
                ti += 1;
            }
            Some(Tok::One(c)) if c.is_none_or(|c| c == s[si]) => {
                ti += 1;
                si += 1;
            }
            _ => match star {
                Some((st, ss)) => {
                    ti = st + 1;
                    si = ss + 1;
                    star = Some((st, ss + 1));
                }
                None => return false,
            },
        }
    }
    toks[ti..].iter().all(|t| matches!(t, Tok::Any))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ServerView {
        ServerView {
            version: "10.11.19-MariaDB-log".into(),
            server_id: 7,
            gtid_binlog_pos: "0-7-5".into(),
            master_status: Some(("bin.000002".into(), 583)),
            binary_logs: vec![("bin.000001".into(), 1199), ("bin.000002".into(), 583)],
            unix_time: 1_700_000_000,
            flavour: Flavour::MariaDb,
            server_uuid: "6f8b3a52-0c1d-5e2f-8a3b-4c5d6e7f8091".into(),
            ..ServerView::default()
        }
    }

    fn rows(r: Reply) -> Vec<Vec<Option<String>>> {
        match r {
            Reply::Rows { rows, .. } => rows,
            other => panic!("expected rows, got {other:?}"),
        }
    }

    #[test]
    fn answers_the_mariadb_replica_sequence() {
        let v = view();
        let mut vars = UserVars::new();
        assert_eq!(
            rows(answer("SELECT UNIX_TIMESTAMP()", &mut vars, &v)),
            vec![vec![Some("1700000000".into())]]
        );
        assert_eq!(
            rows(answer("SHOW VARIABLES LIKE 'SERVER_ID'", &mut vars, &v)),
            vec![vec![Some("server_id".into()), Some("7".into())]]
        );
        assert_eq!(
            answer("SET @master_heartbeat_period= 1000000000", &mut vars, &v),
            Reply::Ok
        );
        assert_eq!(
            answer(
                "SET @master_binlog_checksum= @@global.binlog_checksum",
                &mut vars,
                &v
            ),
            Reply::Ok
        );
        assert_eq!(
            rows(answer("SELECT @master_binlog_checksum", &mut vars, &v)),
            vec![vec![Some("CRC32".into())]]
        );
        assert_eq!(
            answer("SET @mariadb_slave_capability=4", &mut vars, &v),
            Reply::Ok
        );
        assert_eq!(
            rows(answer("SELECT @@GLOBAL.gtid_domain_id", &mut vars, &v)),
            vec![vec![Some("0".into())]]
        );
        assert_eq!(
            answer("SET @slave_connect_state='0-7-3'", &mut vars, &v),
            Reply::Ok
        );
        assert_eq!(vars.get("slave_connect_state"), Some(&Some("0-7-3".into())));
        assert_eq!(
            answer("SET @slave_gtid_strict_mode=1", &mut vars, &v),
            Reply::Ok
        );
    }

    #[test]
    fn tolerates_case_spacing_and_semicolons() {
        let v = view();
        let mut vars = UserVars::new();
        assert_eq!(
            rows(answer("  select\n  VERSION() ;", &mut vars, &v)),
            vec![vec![Some("10.11.19-MariaDB-log".into())]]
        );
        assert_eq!(
            rows(answer("show   master\tstatus", &mut vars, &v))[0][0],
            Some("bin.000002".into())
        );
        assert_eq!(
            rows(answer(
                "SHOW GLOBAL VARIABLES LIKE 'binlog_checksum'",
                &mut vars,
                &v
            )),
            vec![vec![Some("binlog_checksum".into()), Some("CRC32".into())]]
        );
    }

    #[test]
    fn unknown_statements_and_variables_are_errors() {
        let v = view();
        let mut vars = UserVars::new();
        assert!(matches!(
            answer("DROP TABLE x", &mut vars, &v),
            Reply::Err {
                code: ER_PARSE_ERROR,
                ..
            }
        ));
        assert!(matches!(
            answer("SELECT @@no_such_thing", &mut vars, &v),
            Reply::Err {
                code: ER_UNKNOWN_SYSTEM_VARIABLE,
                ..
            }
        ));
        assert!(matches!(answer("", &mut vars, &v), Reply::Err { .. }));
    }

    #[test]
    fn show_binary_logs_and_several_selects() {
        let v = view();
        let mut vars = UserVars::new();
        assert_eq!(rows(answer("SHOW BINARY LOGS", &mut vars, &v)).len(), 2);
        let r = answer(
            "SELECT @@server_id, @@gtid_binlog_pos AS pos, @@gtid_current_pos",
            &mut vars,
            &v,
        );
        match r {
            Reply::Rows { columns, rows } => {
                assert_eq!(columns, vec!["@@server_id", "pos", "@@gtid_current_pos"]);
                assert_eq!(
                    rows,
                    vec![vec![
                        Some("7".into()),
                        Some("0-7-5".into()),
                        Some("0-7-5".into())
                    ]]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn like_patterns() {
        assert!(like_matches("server\\_id", "server_id"));
        assert!(like_matches("gtid%", "gtid_binlog_pos"));
        assert!(!like_matches("gtid", "gtid_binlog_pos"));
        assert!(like_matches("%_id", "server_id"));
        assert!(like_matches("s%r%d", "server_id"));
        assert!(!like_matches("s%x%d", "server_id"));
        assert!(like_matches("%", ""));
        assert!(!like_matches("_", ""));
        // A hostile pattern finishes quickly and without deep recursion.
        let hostile = format!("{}z", "%".repeat(100_000));
        assert!(!like_matches(&hostile, "server_id"));
    }

    fn mysql_view() -> ServerView {
        ServerView {
            version: "8.0.32".into(),
            server_id: 3,
            gtid_binlog_pos: String::new(),
            master_status: Some(("binlog.000003".into(), 5984)),
            binary_logs: vec![
                ("binlog.000002".into(), 6031),
                ("binlog.000003".into(), 5984),
            ],
            unix_time: 1_700_000_000,
            flavour: Flavour::MySql,
            server_uuid: "6f8b3a52-0c1d-5e2f-8a3b-4c5d6e7f8091".into(),
            gtid_executed: "214eb71f-96ec-11e8-ab4f-fa163e72d4ae:1-11820,\n\
                            3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
                .into(),
            gtid_purged: "214eb71f-96ec-11e8-ab4f-fa163e72d4ae:1-11789".into(),
        }
    }

    fn one(r: Reply) -> Option<String> {
        let rows = rows(r);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].len(), 1);
        rows[0][0].clone()
    }

    #[test]
    fn answers_a_mysql_replica_old_and_new_vocabulary() {
        let v = mysql_view();
        let mut vars = UserVars::new();
        for sql in ["SELECT @@GLOBAL.GTID_MODE", "SELECT @@gtid_mode"] {
            assert_eq!(one(answer(sql, &mut vars, &v)).as_deref(), Some("ON"));
        }
        assert_eq!(
            one(answer("SELECT @@GLOBAL.SERVER_UUID", &mut vars, &v)),
            Some(v.server_uuid.clone())
        );
        assert_eq!(
            one(answer("SELECT @@GLOBAL.SERVER_ID", &mut vars, &v)).as_deref(),
            Some("3")
        );
        assert_eq!(
            one(answer("SELECT @@GLOBAL.gtid_executed", &mut vars, &v)),
            Some(v.gtid_executed.clone())
        );
        assert_eq!(
            one(answer("SELECT @@GLOBAL.gtid_purged", &mut vars, &v)),
            Some(v.gtid_purged.clone())
        );
        for sql in [
            "SET @slave_uuid= '0d6c1b6e-7c7a-11ee-9f2a-0242ac120002'",
            "SET @replica_uuid= '0d6c1b6e-7c7a-11ee-9f2a-0242ac120002'",
            "SET @master_heartbeat_period= 30000001024",
            "SET @source_heartbeat_period= 30000001024",
            "SET @master_binlog_checksum= @@global.binlog_checksum",
            "SET @source_binlog_checksum= @@global.binlog_checksum",
            "SET @slave_uuid = 'a', @replica_uuid = 'a'",
            "SET @rpl_semi_sync_slave= 1",
        ] {
            assert_eq!(answer(sql, &mut vars, &v), Reply::Ok, "{sql}");
        }
        assert_eq!(
            one(answer("SELECT @source_binlog_checksum", &mut vars, &v)).as_deref(),
            Some("CRC32")
        );
        assert_eq!(vars.get("replica_uuid"), Some(&Some("a".into())));
        assert_eq!(
            vars.get("source_heartbeat_period"),
            Some(&Some("30000001024".into()))
        );
        // A source without the semi-sync plugin answers "unknown variable".
        assert!(matches!(
            answer(
                "SELECT @@global.rpl_semi_sync_source_enabled",
                &mut vars,
                &v
            ),
            Reply::Err {
                code: ER_UNKNOWN_SYSTEM_VARIABLE,
                ..
            }
        ));
        for sql in [
            "SELECT @@version_comment LIMIT 1",
            "select @@VERSION limit 1",
        ] {
            assert!(one(answer(sql, &mut vars, &v)).is_some(), "{sql}");
        }
    }

    #[test]
    fn mysql_status_statements_carry_the_gtid_set() {
        let v = mysql_view();
        let mut vars = UserVars::new();
        for sql in ["SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"] {
            match answer(sql, &mut vars, &v) {
                Reply::Rows { columns, rows } => {
                    assert_eq!(columns.len(), 5, "{sql}");
                    assert_eq!(columns[4], "Executed_Gtid_Set");
                    assert_eq!(
                        rows,
                        vec![vec![
                            Some("binlog.000003".into()),
                            Some("5984".into()),
                            Some(String::new()),
                            Some(String::new()),
                            Some(v.gtid_executed.clone()),
                        ]]
                    );
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
        match answer("SHOW BINARY LOGS", &mut vars, &v) {
            Reply::Rows { columns, rows } => {
                assert_eq!(columns, vec!["Log_name", "File_size", "Encrypted"]);
                assert_eq!(rows[1][2].as_deref(), Some("No"));
            }
            other => panic!("{other:?}"),
        }
        // MySQL 5.7 has no Encrypted column.
        let v57 = ServerView {
            version: "5.7.23-log".into(),
            ..mysql_view()
        };
        match answer("SHOW BINARY LOGS", &mut vars, &v57) {
            Reply::Rows { columns, .. } => assert_eq!(columns.len(), 2),
            other => panic!("{other:?}"),
        }
        match answer("SHOW REPLICAS", &mut vars, &v) {
            Reply::Rows { columns, .. } => assert_eq!(columns[4], "Replica_UUID"),
            other => panic!("{other:?}"),
        }
        let shown = |sql: &str| -> Vec<(String, String)> {
            rows(answer(sql, &mut UserVars::new(), &v))
                .into_iter()
                .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
                .collect()
        };
        assert_eq!(
            shown("SHOW GLOBAL VARIABLES LIKE 'GTID_MODE'"),
            vec![("gtid_mode".into(), "ON".into())]
        );
        assert_eq!(
            shown("SHOW VARIABLES LIKE 'server_uuid'"),
            vec![("server_uuid".into(), v.server_uuid.clone())]
        );
        assert_eq!(
            shown("SHOW GLOBAL VARIABLES LIKE 'log_bin'"),
            vec![("log_bin".into(), "ON".into())]
        );
        assert_eq!(
            shown("show variables where variable_name = 'binlog_row_image'"),
            vec![("binlog_row_image".into(), "FULL".into())]
        );
        assert_eq!(
            shown("SHOW VARIABLES WHERE Variable_name IN ('binlog_format', 'gtid_purged')"),
            vec![
                ("binlog_format".into(), "ROW".into()),
                ("gtid_purged".into(), v.gtid_purged.clone())
            ]
        );
        assert_eq!(
            shown("SHOW VARIABLES LIKE 'gtid%'"),
            vec![
                ("gtid_mode".into(), "ON".into()),
                ("gtid_executed".into(), v.gtid_executed.clone()),
                ("gtid_purged".into(), v.gtid_purged.clone()),
            ],
            "MariaDB's GTID variables are unknown on MySQL data"
        );
        assert!(matches!(
            answer("SHOW VARIABLES WHERE 1=1", &mut vars, &v),
            Reply::Err { .. }
        ));
        // MySQL data without GTIDs: GTID_MODE OFF.
        let off = ServerView {
            gtid_executed: String::new(),
            gtid_purged: String::new(),
            ..mysql_view()
        };
        assert_eq!(
            one(answer("SELECT @@GLOBAL.GTID_MODE", &mut vars, &off)).as_deref(),
            Some("OFF")
        );
    }

    #[test]
    fn mariadb_data_keeps_mariadb_answers() {
        let v = view();
        let mut vars = UserVars::new();
        for sql in ["SELECT @@GLOBAL.GTID_MODE", "SELECT @@gtid_executed"] {
            assert!(
                matches!(
                    answer(sql, &mut vars, &v),
                    Reply::Err {
                        code: ER_UNKNOWN_SYSTEM_VARIABLE,
                        ..
                    }
                ),
                "{sql}"
            );
        }
        match answer("SHOW MASTER STATUS", &mut vars, &v) {
            Reply::Rows { columns, .. } => assert_eq!(columns.len(), 4),
            other => panic!("{other:?}"),
        }
        match answer("SHOW BINARY LOGS", &mut vars, &v) {
            Reply::Rows { columns, .. } => assert_eq!(columns.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            rows(answer("SHOW VARIABLES LIKE 'gtid%'", &mut vars, &v)).len(),
            4,
            "gtid_binlog_pos, gtid_current_pos, gtid_domain_id, gtid_strict_mode"
        );
    }
}
