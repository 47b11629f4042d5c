//! Small tools every part of the harness uses: the error type, tool lookup, free ports,
//! polling, work directories and log tails.
//!
//! Nothing here starts a server. Polling is for waiting on state; it never asserts how long
//! something took.

use std::fmt;
use std::fs;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The harness error: a message meant for a person reading a failed test's output.
/// `Debug` prints the raw message (not an escaped string) so that `.unwrap()` and
/// `-> Result<()>` test failures show multi-line logs readably.
pub struct Error(pub String);

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error(s.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(format!("I/O error: {e}"))
    }
}

impl From<mysql::Error> for Error {
    fn from(e: mysql::Error) -> Self {
        Error(format!("mysql client error: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error(format!("JSON error: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Returns `Err(Error(msg))`; shorthand for early returns.
pub fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error(msg.into()))
}

/// Adds context in front of an error message.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {}", what(), e.into().0)))
    }
}

pub const INSTALL_HINT: &str = "run scripts/install-test-deps.sh";

/// The repository root: where scripts/, .venv and tests/work live.
/// FERROBUS_E2E_REPO overrides it (for building the tests from another crate).
pub fn repo_root() -> PathBuf {
    match std::env::var_os("FERROBUS_E2E_REPO") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    }
}

/// Finds an executable on PATH or in the sbin directories (mariadbd lives in /usr/sbin,
/// which a non-login shell may not have on PATH). A missing tool is a failure that says how
/// to install it: tests never skip.
pub fn require_tool(name: &str) -> Result<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"].map(PathBuf::from);
    std::env::split_paths(&path_var)
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            Error(format!(
                "`{name}` not found on PATH or in /usr/sbin: {INSTALL_HINT}"
            ))
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Where test processes claim the ports they hand out (one lock file per port).
const PORT_CLAIMS_DIR: &str = "ferrobus-e2e-ports";

/// Ports handed out lie this far below the kernel's ephemeral range at most.
const PORTS_BELOW_EPHEMERAL: u16 = 10_000;

/// A TCP port on 127.0.0.1 that was free a moment ago, and that no other test process has
/// been given. nextest runs every test in its own process, so a set kept in this process
/// is not enough: two tests starting together could each get the same port, and then one
/// test's node fails to bind it while the test's client talks to the other test's node.
/// Each port handed out is claimed with an exclusive `flock` on a file named after it
/// (under the temp dir), held until this process exits; the kernel drops the claims of a
/// process that dies, so nothing goes stale. The files themselves stay (empty, at most one
/// per port): removing one that another process holds would void its claim.
///
/// The ports come from below the kernel's ephemeral range (`ip_local_port_range`): one
/// inside it can become the source port of any outgoing connection (a replica's, a node's)
/// between this check and the server's bind, which then fails with "Address already in use".
pub fn free_port() -> u16 {
    static CLAIMED: Mutex<Vec<fs::File>> = Mutex::new(Vec::new());
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(PORT_CLAIMS_DIR);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let (low, high) = non_ephemeral_ports();
    // Each process starts at its own place in the range (its pid), then walks it.
    let span = u64::from(high - low) + 1;
    let start = u64::from(std::process::id()).wrapping_mul(7919);
    for _ in 0..1000 {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = low + ((start + step * 104_729) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let path = dir.join(port.to_string());
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        // SAFETY: flock on a descriptor this function owns; it only reads the arguments.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if locked {
            claimed.push(file);
            return port;
        }
    }
    panic!("no free port in {low}..={high} after 1000 tries");
}

/// The ports below the kernel's ephemeral range that `free_port` hands out (read once).
fn non_ephemeral_ports() -> (u16, u16) {
    static RANGE: std::sync::OnceLock<(u16, u16)> = std::sync::OnceLock::new();
    *RANGE.get_or_init(read_non_ephemeral_ports)
}

fn read_non_ephemeral_ports() -> (u16, u16) {
    let path = "/proc/sys/net/ipv4/ip_local_port_range";
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let ephemeral_low: u16 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{path}: unexpected contents {text:?}"));
    assert!(
        ephemeral_low > 2048,
        "{path} starts at {ephemeral_low}: no room for test ports below it"
    );
    let low = ephemeral_low
        .saturating_sub(PORTS_BELOW_EPHEMERAL)
        .max(1024);
    (low, ephemeral_low - 1)
}

/// What a poll step saw: done with a value, or not yet (with a description of the state, for
/// the timeout message).
pub enum Poll<T> {
    Ready(T),
    Pending(String),
}

/// Polls `step` every 50 ms until it is ready, fails, or `timeout` passes. An `Err` from the
/// step ends the wait at once (fail early on a state that cannot get better).
pub fn poll<T>(
    desc: &str,
    timeout: Duration,
    mut step: impl FnMut() -> Result<Poll<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let state = match step()? {
            Poll::Ready(value) => return Ok(value),
            Poll::Pending(state) => state,
        };
        if Instant::now() >= deadline {
            return fail(format!(
                "timed out after {:?} waiting for {desc}; last state: {state}",
                timeout
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls a condition every 50 ms until it holds or `timeout` passes.
pub fn wait_until(desc: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    poll(desc, timeout, || {
        Ok(if cond() {
            Poll::Ready(())
        } else {
            Poll::Pending("condition false".to_string())
        })
    })
}

/// A fresh directory under tests/work/ (gitignored). Removed on drop unless
/// FERROBUS_E2E_KEEP=1 is set (then a failing test's files stay for inspection).
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub fn new(name: &str) -> Result<WorkDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let base = repo_root().join("tests").join("work");
        let path = base.join(format!("{name}-{}-{n}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path).context(|| format!("removing stale {}", path.display()))?;
        }
        fs::create_dir_all(&path).context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::env::var("FERROBUS_E2E_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("[harness] keeping {}", self.path.display());
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "[harness] removing {} (set FERROBUS_E2E_KEEP=1 to keep it)",
                self.path.display()
            );
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The last `lines` lines of a text file (lossy UTF-8), or a note when it can't be read.
pub fn tail_file(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Prints a log tail to stderr between banners (used when a test fails).
pub fn print_log_tail(title: &str, path: &Path, lines: usize) {
    eprintln!(
        "\n===== {title}: last {lines} lines of {} =====\n{}\n===== end of {title} =====",
        path.display(),
        tail_file(path, lines)
    );
}

/// Cuts long text (SQL statements in error messages) to a readable size.
pub fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let cut: String = text.chars().take(max_chars).collect();
    format!("{cut}… ({} chars)", text.chars().count())
}

/// Sorts the members of a MariaDB GTID list ("0-1-5,1-2-3") so two lists compare equal
/// regardless of order and spacing.
pub fn normalize_gtid_list(list: &str) -> String {
    let mut parts: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    parts.sort_unstable();
    parts.join(",")
}
