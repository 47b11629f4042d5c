//! Bad input on a MySQL-protocol port: garbage bytes, truncated packets, unknown commands,
//! unknown statements, wrong credentials. Each must get an ERR packet or a closed
//! connection (never a hang), and a connection opened before the abuse, plus a new one,
//! must keep working. The same checks run against a real MariaDB (harness self-test) and
//! against ferrobus's binlog server, so the expectations are those of a real server.

use std::time::Duration;

use super::util::{fail, Result};
use super::wire::{Outcome, RawConn};

/// How long a server may take to reject bad input before we call it a hang.
const REJECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What the abuse did; `held_open` are connections left mid-packet on purpose (they must
/// not stop the server from serving others); drop them to close.
pub struct AbuseReport {
    pub strict: bool,
    pub lines: Vec<String>,
    pub held_open: Vec<RawConn>,
}

fn connect(port: u16) -> Result<RawConn> {
    RawConn::connect(port, REJECT_TIMEOUT)
}

fn logged_in(port: u16, user: &str, password: &str) -> Result<RawConn> {
    let mut conn = connect(port)?;
    match conn.login(user, password)? {
        Ok(()) => Ok(conn),
        Err(outcome) => fail(format!(
            "login as {user} on port {port} failed: {outcome:?}"
        )),
    }
}

impl AbuseReport {
    /// Strict: the input must be rejected (ERR or close). Lenient (how MariaDB itself is
    /// checked, since it tolerates some short replication commands): it must get some
    /// answer, not silence.
    fn expect_rejection(&mut self, what: &str, outcome: Outcome) -> Result<()> {
        self.lines.push(format!("{what}: {outcome:?}"));
        let acceptable = if self.strict {
            outcome.is_rejection()
        } else {
            outcome != Outcome::Silent
        };
        if !acceptable {
            return fail(format!(
                "{what}: expected an ERR packet or a closed connection, got {outcome:?}"
            ));
        }
        Ok(())
    }
}

fn expect_select_works(conn: &mut RawConn, what: &str) -> Result<()> {
    match conn.query("SELECT VERSION()")? {
        Outcome::Other(1) => Ok(()),
        other => fail(format!(
            "{what}: SELECT VERSION() answered {other:?}, expected a one-column result set"
        )),
    }
}

/// Runs every abuse scenario against 127.0.0.1:`port`; `user`/`password` is a valid
/// account there. `strict`: see `AbuseReport::expect_rejection`.
pub fn abuse_mysql_port(
    port: u16,
    user: &str,
    password: &str,
    strict: bool,
) -> Result<AbuseReport> {
    let mut report = AbuseReport {
        strict,
        lines: Vec::new(),
        held_open: Vec::new(),
    };
    let mut keeper = logged_in(port, user, password)?;
    expect_select_works(&mut keeper, "before the abuse")?;

    // Garbage before even reading the greeting, then EOF.
    let mut c = connect(port)?;
    c.write_raw(&[0x41; 300])?;
    c.shutdown_write();
    let _ = c.read_greeting();
    let outcome = c.outcome();
    report.expect_rejection("garbage before the greeting", outcome)?;

    // A well-framed packet of garbage instead of a handshake response.
    let mut c = connect(port)?;
    c.read_greeting()?;
    c.write_packet(1, &[0x41; 64])?;
    let outcome = c.outcome();
    report.expect_rejection("garbage handshake response", outcome)?;

    // An empty packet instead of a handshake response.
    let mut c = connect(port)?;
    c.read_greeting()?;
    c.write_packet(1, &[])?;
    let outcome = c.outcome();
    report.expect_rejection("empty handshake response", outcome)?;

    // A truncated handshake response (header says 100 bytes, 10 sent), then EOF.
    let mut c = connect(port)?;
    c.read_greeting()?;
    c.write_raw(&[100, 0, 0, 1, 0x85, 0xa6, 0x0f, 0, 0, 0, 0, 1, 33, 0])?;
    c.shutdown_write();
    let outcome = c.outcome();
    report.expect_rejection("truncated handshake response then EOF", outcome)?;

    // Truncated packets left open: the server must keep serving everyone else meanwhile.
    let mut c = connect(port)?;
    c.read_greeting()?;
    c.write_raw(&[0xe8, 0x03, 0, 1, 0x85, 0xa6, 0x0f, 0, 1, 2, 3, 4, 5, 6])?;
    report.held_open.push(c);
    let mut c = connect(port)?;
    c.read_greeting()?;
    c.write_raw(&[0xff, 0xff, 0xff, 1, 0x41, 0x41])?;
    report.held_open.push(c);
    let mut c = connect(port)?;
    c.write_raw(&[0x41, 0x41])?; // half a header, never finished
    report.held_open.push(c);
    report
        .lines
        .push("3 truncated packets held open".to_string());

    // After a good login: unknown command byte, truncated replication commands.
    for (what, payload) in [
        ("unknown command 0x7f", vec![0x7f, 1, 2, 3]),
        ("truncated COM_BINLOG_DUMP", vec![0x12, 4, 0]),
        ("truncated COM_REGISTER_SLAVE", vec![0x15, 1]),
        ("truncated COM_BINLOG_DUMP_GTID", vec![0x1e, 0, 0, 1]),
        ("empty command packet", vec![]),
    ] {
        let mut c = logged_in(port, user, password)?;
        let outcome = c.command(&payload)?;
        report.expect_rejection(what, outcome)?;
    }

    // A statement the server does not know: ERR, and the connection stays usable.
    let mut c = logged_in(port, user, password)?;
    match c.query("THIS IS NOT A STATEMENT AT ALL")? {
        Outcome::Err { code, message } => {
            report
                .lines
                .push(format!("unknown statement: ERR {code} {message}"));
        }
        other => return fail(format!("unknown statement: expected ERR, got {other:?}")),
    }
    expect_select_works(&mut c, "after an unknown statement")?;

    // Wrong password and unknown user: ERR 1045.
    for (what, u, p) in [
        ("wrong password", user, "certainly-wrong"),
        ("unknown user", "nobody_here", password),
    ] {
        let mut c = connect(port)?;
        match c.login(u, p)? {
            Err(Outcome::Err {
                code: 1045,
                message,
            }) => {
                report.lines.push(format!("{what}: ERR 1045 {message}"));
            }
            other => return fail(format!("{what}: expected ERR 1045, got {other:?}")),
        }
    }

    // The connection opened before the abuse, and a new one, still work.
    expect_select_works(&mut keeper, "the connection opened before the abuse")?;
    let mut fresh = logged_in(port, user, password)?;
    expect_select_works(&mut fresh, "a new connection after the abuse")?;
    Ok(report)
}

/// Asks for a dump from a MariaDB GTID position the server never had; the answer must be
/// ERR 1236 (and not a hang or a dump from somewhere else). Uses the `mysql` crate.
pub fn request_missing_gtid(port: u16, user: &str, password: &str, gtid: &str) -> Result<String> {
    use mysql::prelude::Queryable;
    let src = super::clients::Source {
        port,
        user: user.to_string(),
        password: password.to_string(),
    };
    let mut conn = super::clients::mysql_connect(&src, REJECT_TIMEOUT)?;
    for stmt in [
        "SET @mariadb_slave_capability=4".to_string(),
        format!("SET @slave_connect_state='{gtid}'"),
        "SET @slave_gtid_strict_mode=1".to_string(),
        "SET @slave_gtid_ignore_duplicates=0".to_string(),
    ] {
        conn.query_drop(&stmt)
            .map_err(|e| format!("{stmt} on port {port}: {e}"))?;
    }
    let mut stream = conn.get_binlog_stream(mysql::BinlogRequest::new(4243))?;
    // The dump may start with preamble events before the server notices; read a few.
    for _ in 0..10 {
        match stream.next() {
            Some(Err(mysql::Error::MySqlError(e))) if e.code == 1236 => return Ok(e.message),
            Some(Err(e)) => return fail(format!("GTID {gtid}: expected ERR 1236, got error {e}")),
            Some(Ok(event))
                if event.header().event_type_raw() == 4
                    || event.header().event_type_raw() == 15 => {}
            Some(Ok(event)) => {
                return fail(format!(
                    "GTID {gtid}: expected ERR 1236, got event type {} at {}",
                    event.header().event_type_raw(),
                    event.header().log_pos()
                ))
            }
            None => return fail(format!("GTID {gtid}: stream ended without ERR 1236")),
        }
    }
    fail(format!("GTID {gtid}: no ERR 1236 after 10 events"))
}
