//! Issue 4's caching_sha2_password end to end: node A syncs from a real MariaDB master and
//! serves with `auth_plugin = caching_sha2_password`; node B's syncer logs in to A as its
//! master. B's first login takes the full path (RSA public key over a plain connection),
//! and after B restarts its login takes the fast path (A's cache); B ends up storing what
//! A stores, byte for byte the master's binlog. PyMySQL (with `cryptography`) logs in to A
//! too, and a wrong password gets ERR 1045.
//!
//! The paths are read from A's log (one line per caching_sha2_password login, saying which
//! path) and B's (its client logs the outcome at debug level). Nothing asserts timing.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::clients::{compare_dirs, ferro_source, mariadb_binlog_raw, venv_python};
use crate::harness::process::run_command;
use crate::harness::util::fail;
use crate::harness::*;

const MASTER_ID: u32 = 1;
const A_SYNCER_ID: u32 = 101;
const B_SYNCER_ID: u32 = 102;

const FULL_LINE: &str = "logged in with caching_sha2_password (full authentication";
const FAST_LINE: &str = "logged in with caching_sha2_password (fast path";

/// How many lines of `node`'s log contain `needle`.
fn log_count(node: &Node, needle: &str) -> usize {
    std::fs::read_to_string(node.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

/// Waits until B's syncer has stored all A has stored (same last file and position).
fn wait_b_caught_up_with_a(a: &Node, b: &Node) {
    poll(
        "node B to store all node A stores",
        CATCH_UP_TIMEOUT,
        || {
            a.check_alive()?;
            b.check_alive()?;
            let (sa, sb) = (a.syncer_status()?, b.syncer_status()?);
            let key = |s: &Value| {
                (
                    s["last_binlog_file"].as_str().unwrap_or("").to_string(),
                    s["last_file_position"].as_u64().unwrap_or(0),
                )
            };
            if key(&sa) == key(&sb) && !key(&sa).0.is_empty() {
                return Ok(Poll::Ready(()));
            }
            if sb["status"] == "stopped" {
                return fail(format!("node B's syncer stopped: {sb}"));
            }
            Ok(Poll::Pending(format!("A {sa}, B {sb}")))
        },
    )
    .unwrap();
}

/// PyMySQL against `port`: logs in and runs SHOW MASTER STATUS; prints the file name, or
/// "denied <code>" when the login is refused.
fn pymysql_login(port: u16, user: &str, password: &str) -> String {
    let script = r#"
import sys, pymysql
try:
    import cryptography  # noqa: F401  PyMySQL needs it for the RSA step
except ImportError:
    print("no cryptography in the venv: run scripts/install-test-deps.sh"); sys.exit(2)
try:
    conn = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user=sys.argv[2],
                           password=sys.argv[3], connect_timeout=30, read_timeout=60)
except pymysql.err.OperationalError as e:
    print("denied", e.args[0]); sys.exit(0)
cur = conn.cursor()
cur.execute("SHOW MASTER STATUS")
print(cur.fetchone()[0])
conn.close()
"#;
    let mut cmd = Command::new(venv_python().unwrap());
    cmd.arg("-c")
        .arg(script)
        .args([port.to_string(), user.to_string(), password.to_string()]);
    let output = run_command(cmd, None, Duration::from_secs(120)).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        output.status.success(),
        "PyMySQL against port {port}: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn node_syncs_from_a_node_serving_caching_sha2_password() {
    let work = WorkDir::new("auth-sha2").unwrap();
    let master = MariaDb::start("auth-master", MariaDbOpts::server_id(MASTER_ID)).unwrap();
    master
        .sql(
            "CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO shop.t VALUES (1, 'one'), (2, 'two');",
        )
        .unwrap();

    // Node A: syncs from the master, serves with caching_sha2_password.
    let a = Node::start(&work.join("a")).unwrap();
    a.start_syncer(&master, A_SYNCER_ID).unwrap();
    let a_port = free_port();
    // A key file that cannot be read is the request's fault (400), named in the reply.
    let missing = work.join("no-such-key.pem");
    let (status, reply) = a
        .api_put(
            "/binlog/server/start",
            &json!({
                "addr": format!("127.0.0.1:{a_port}"),
                "user": FERRO_USER,
                "password": FERRO_PASSWORD,
                "auth_plugin": "caching_sha2_password",
                "rsa_private_key_path": missing.display().to_string(),
            }),
        )
        .unwrap();
    let message = reply["message"].as_str().unwrap_or("");
    assert!(
        status == 400 && message.contains("no-such-key.pem") && !message.contains("listen"),
        "HTTP {status}: {reply}"
    );
    a.start_server_with(a_port, Some("caching_sha2_password"))
        .unwrap();
    a.wait_synced_with(&master, CATCH_UP_TIMEOUT).unwrap();

    // Node B: its master is node A.
    let mut b = Node::start(&work.join("b")).unwrap();
    b.put_ok(
        "/binlog/syncer/start",
        &json!({
            "syncer_id": B_SYNCER_ID,
            "mysql_addr": format!("127.0.0.1:{a_port}"),
            "mysql_user": FERRO_USER,
            "mysql_password": FERRO_PASSWORD,
        }),
    )
    .unwrap();
    wait_b_caught_up_with_a(&a, &b);
    // B's first login was A's first: the full path, exactly once (later connections of
    // B's syncer, if any, found the cache filled).
    assert_eq!(log_count(&a, FULL_LINE), 1, "A's full-path logins");
    assert!(
        log_count(&b, "Sha2Full") >= 1,
        "B logged no full-path login"
    );
    let fast_before = log_count(&a, FAST_LINE);
    // B's log is appended across restarts: only lines logged after this count.
    let b_fast_before = log_count(&b, "Sha2Fast");

    // Restart B: its syncer comes back by itself and logs in through A's cache.
    b.restart().unwrap();
    master
        .sql("INSERT INTO shop.t VALUES (3, 'three'); FLUSH BINARY LOGS; INSERT INTO shop.t VALUES (4, 'four');")
        .unwrap();
    a.wait_synced_with(&master, CATCH_UP_TIMEOUT).unwrap();
    wait_b_caught_up_with_a(&a, &b);
    assert_eq!(
        log_count(&a, FULL_LINE),
        1,
        "A's full-path logins after B restarted"
    );
    assert!(
        log_count(&a, FAST_LINE) > fast_before,
        "B's login after its restart did not take the fast path"
    );
    assert!(
        log_count(&b, "Sha2Fast") > b_fast_before,
        "B logged no fast-path login after its restart"
    );
    let (a_status, b_status) = (a.syncer_status().unwrap(), b.syncer_status().unwrap());
    assert_eq!(
        a_status["executed_gtid_set"], b_status["executed_gtid_set"],
        "A {a_status}\nB {b_status}"
    );

    // B's stored binlog is byte for byte the master's (and so A's): dump both raw.
    let b_port = free_port();
    b.start_server(b_port).unwrap();
    let first = master.first_binlog().unwrap();
    let from_master = work.join("raw-master");
    let from_b = work.join("raw-b");
    let master_src = Source {
        port: master.port(),
        user: REPL_USER.to_string(),
        password: REPL_PASSWORD.to_string(),
    };
    mariadb_binlog_raw(&master_src, &first, &from_master).unwrap();
    mariadb_binlog_raw(&ferro_source(b_port), &first, &from_b).unwrap();
    assert!(compare_dirs(&from_master, &from_b).unwrap() >= 2);

    // PyMySQL (cryptography for the RSA step) logs in to A; a wrong password is 1045.
    let (file, _) = master.master_status().unwrap();
    assert_eq!(pymysql_login(a_port, FERRO_USER, FERRO_PASSWORD), file);
    assert_eq!(
        pymysql_login(a_port, FERRO_USER, "not-the-password"),
        "denied 1045"
    );
}
