//! A ferrobus process for one test: `ferrobus serve` with its own data dir and a free admin
//! port, logs (RUST_LOG=info,ferrobus=debug) to a file beside the data dir.
//!
//! Talks to it only through its admin HTTP API and its binlog-server port, as a user would.
//! Drop stops it by pid and, when the test is failing, prints its log tail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

use super::mariadb::{MariaDb, REPL_PASSWORD, REPL_USER};
use super::process::{describe_status, run_command, Proc};
use super::util::{fail, free_port, poll, print_log_tail, tail_file, Context, Poll, Result};

/// The account downstream clients use on ferrobus's binlog server.
pub const FERRO_USER: &str = "ferro";
pub const FERRO_PASSWORD: &str = "ferropass";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 200;
/// Bound on a one-shot `ferrobus` command (ctl, export): importing or exporting the largest
/// fixture chain takes a small fraction of it; past it the command is killed and the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

impl From<ureq::Error> for super::util::Error {
    fn from(e: ureq::Error) -> Self {
        super::util::Error(format!("HTTP error: {e}"))
    }
}

/// The ferrobus binary cargo built for this test run.
pub fn ferrobus_bin() -> Result<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ferrobus"));
    if !bin.exists() {
        return fail(format!("{} does not exist: run cargo build", bin.display()));
    }
    Ok(bin)
}

/// Runs the one-shot command `ferrobus <args>` (e.g. `ctl --admin A health`, `export ...`)
/// to completion: (exit code, stdout, stderr). FERROBUS_ADMIN is removed from its
/// environment so that only `args` say which node it talks to. Exit code -1: killed by a signal.
pub fn run_ferrobus(args: &[&str]) -> Result<(i32, String, String)> {
    let mut cmd = Command::new(ferrobus_bin()?);
    cmd.args(args).env_remove("FERROBUS_ADMIN");
    let out =
        run_command(cmd, None, COMMAND_TIMEOUT).context(|| format!("running ferrobus {args:?}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// [`run_ferrobus`], which must exit 0: its stdout; otherwise an error with both outputs.
pub fn run_ferrobus_ok(args: &[&str]) -> Result<String> {
    let (code, stdout, stderr) = run_ferrobus(args)?;
    if code != 0 {
        return fail(format!(
            "ferrobus {args:?}: exit {code}\nstdout: {stdout}\nstderr: {stderr}"
        ));
    }
    Ok(stdout)
}

pub struct Node {
    name: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    admin_port: u16,
    /// Extra `serve` arguments (e.g. `--config FILE`), given on every start.
    extra_args: Vec<String>,
    // A Mutex so that `&self` methods (used from several threads) can notice an exit.
    proc: Mutex<Option<Proc>>,
    agent: ureq::Agent,
}

impl Node {
    /// Starts `ferrobus serve --data-dir <data_dir> --admin-addr 127.0.0.1:<free port>` and
    /// waits until GET /health answers 200. The log goes to `<data_dir>.log`.
    pub fn start(data_dir: &Path) -> Result<Node> {
        Node::start_with_args(data_dir, &[])
    }

    /// Like `start`, with extra `ferrobus serve` arguments after the harness's own (kept
    /// for restarts).
    pub fn start_with_args(data_dir: &Path, extra_args: &[String]) -> Result<Node> {
        let name = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "node".to_string());
        if let Some(parent) = data_dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // No pooled keep-alive connections, like curl and `ferrobus ctl`: tiny_http 0.12's
        // connection pool can leave a new connection unserved while every pool thread sits
        // on an idle keep-alive connection (see README, known limitations).
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .into();
        let mut node = Node {
            name,
            data_dir: data_dir.to_path_buf(),
            log_path: data_dir.with_extension("log"),
            admin_port: free_port(),
            extra_args: extra_args.to_vec(),
            proc: Mutex::new(None),
            agent,
        };
        node.spawn_and_wait()?;
        Ok(node)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// "127.0.0.1:<admin port>"
    pub fn admin_addr(&self) -> String {
        format!("127.0.0.1:{}", self.admin_port)
    }

    fn proc(&self) -> MutexGuard<'_, Option<Proc>> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc().as_ref().map(Proc::pid)
    }

    pub fn is_running(&self) -> bool {
        self.proc().as_mut().is_some_and(Proc::is_running)
    }

    /// "exit code 101" when the process has ended by itself (not stopped by the test).
    pub fn exited(&self) -> Option<String> {
        self.proc()
            .as_mut()
            .and_then(Proc::try_exit)
            .map(describe_status)
    }

    /// An error naming the exit when the process has ended by itself.
    pub fn check_alive(&self) -> Result<()> {
        match self.exited() {
            Some(how) => fail(format!(
                "ferrobus {} has exited ({how}); log tail:\n{}",
                self.name,
                tail_file(&self.log_path, 20)
            )),
            None => Ok(()),
        }
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        let mut cmd = Command::new(ferrobus_bin()?);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--admin-addr")
            .arg(self.admin_addr())
            .args(&self.extra_args)
            .env("RUST_LOG", "info,ferrobus=debug")
            .env_remove("FERROBUS_ADMIN");
        *self.proc() = Some(Proc::spawn(
            &format!("ferrobus {}", self.name),
            cmd,
            &self.log_path,
        )?);
        let desc = format!(
            "ferrobus {} GET /health on {}",
            self.name,
            self.admin_addr()
        );
        let result = poll(&desc, START_TIMEOUT, || {
            if let Some(how) = self.exited() {
                return fail(format!("ferrobus exited ({how})"));
            }
            Ok(match self.request("GET", "/health", None) {
                Ok((200, body)) => {
                    // The answer must come from the process this node started, not from
                    // another one that holds the port.
                    let pid = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["data"]["pid"].as_u64());
                    let mine = self.pid().map(u64::from);
                    if pid != mine {
                        return fail(format!(
                            "GET /health answered by pid {pid:?}, not this node's {mine:?}: \
                             another process serves {}",
                            self.admin_addr()
                        ));
                    }
                    Poll::Ready(())
                }
                Ok((status, body)) => Poll::Pending(format!("HTTP {status}: {body}")),
                Err(e) => Poll::Pending(e.0),
            })
        });
        result.map_err(|e| {
            format!(
                "{desc}: {e}\n--- ferrobus log tail ---\n{}",
                tail_file(&self.log_path, LOG_TAIL_LINES)
            )
            .into()
        })
    }

    /// Any method, raw body: (HTTP status, body text). For malformed-input tests.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, String)> {
        let url = format!("http://{}{}", self.admin_addr(), path);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if body.is_some() {
            builder = builder.header("Content-Type", "application/json");
        }
        let request = builder
            .body(body.unwrap_or_default().to_vec())
            .map_err(|e| format!("building {method} {url}: {e}"))?;
        let mut response = match self.agent.run(request) {
            Ok(response) => response,
            Err(e) => {
                let note = match self.exited() {
                    Some(how) => format!(" (ferrobus has exited: {how})"),
                    None => String::new(),
                };
                return fail(format!("{method} {url}: HTTP error: {e}{note}"));
            }
        };
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .context(|| format!("reading the reply to {method} {url}"))?;
        Ok((status, text))
    }

    /// Like `request`, but the reply must be JSON (every admin reply is).
    pub fn request_json(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Value)> {
        let (status, text) = self.request(method, path, body)?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            format!("{method} {path}: HTTP {status} reply is not JSON ({e}): {text:?}")
        })?;
        Ok((status, value))
    }

    /// PUT with a JSON body: (status, reply JSON).
    pub fn api_put(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let bytes = serde_json::to_vec(body)?;
        self.request_json("PUT", path, Some(&bytes))
    }

    /// GET: (status, reply JSON).
    pub fn api_get(&self, path: &str) -> Result<(u16, Value)> {
        self.request_json("GET", path, None)
    }

    /// PUT that must succeed (200, message "success"); returns `data`.
    pub fn put_ok(&self, path: &str, body: &Value) -> Result<Value> {
        let (status, reply) = self.api_put(path, body)?;
        expect_success("PUT", path, status, reply)
    }

    /// GET that must succeed; returns `data`.
    pub fn get_ok(&self, path: &str) -> Result<Value> {
        let (status, reply) = self.api_get(path)?;
        expect_success("GET", path, status, reply)
    }

    /// Starts the syncer against `master` as replica `syncer_id`, with the repl account.
    pub fn start_syncer(&self, master: &MariaDb, syncer_id: u32) -> Result<Value> {
        self.put_ok(
            "/binlog/syncer/start",
            &json!({
                "syncer_id": syncer_id,
                "mysql_addr": master.addr(),
                "mysql_user": REPL_USER,
                "mysql_password": REPL_PASSWORD,
            }),
        )
    }

    /// Starts the binlog server on 127.0.0.1:`port` with the ferro account.
    pub fn start_server(&self, port: u16) -> Result<Value> {
        self.start_server_with(port, None)
    }

    /// [`Node::start_server`], with `auth_plugin` (e.g. `caching_sha2_password`) as the
    /// account's authentication plugin when given, the server's default otherwise.
    pub fn start_server_with(&self, port: u16, auth_plugin: Option<&str>) -> Result<Value> {
        let mut args = json!({
            "addr": format!("127.0.0.1:{port}"),
            "user": FERRO_USER,
            "password": FERRO_PASSWORD,
        });
        if let Some(plugin) = auth_plugin {
            args["auth_plugin"] = json!(plugin);
        }
        self.put_ok("/binlog/server/start", &args)
    }

    pub fn syncer_status(&self) -> Result<Value> {
        self.get_ok("/binlog/syncer/status")
    }

    /// Waits until the syncer has stored everything the master has written:
    /// last_binlog_file/last_file_position equal SHOW MASTER STATUS. Fails early when the
    /// syncer is stopped. Call it when the master has no more writes coming; it first waits
    /// for the master's own last write, the checkpoint event that follows a rotation.
    pub fn wait_synced_with(&self, master: &MariaDb, timeout: Duration) -> Result<()> {
        master.wait_binlog_settled(timeout)?;
        let desc = format!(
            "ferrobus {} to store all of {}'s binlog",
            self.name,
            master.name()
        );
        poll(&desc, timeout, || {
            self.check_alive()?;
            let (file, pos) = master.master_status()?;
            let status = self.syncer_status()?;
            let synced_file = status["last_binlog_file"].as_str().unwrap_or("");
            let synced_pos = status["last_file_position"].as_u64().unwrap_or(0);
            if synced_file == file && synced_pos == pos {
                return Ok(Poll::Ready(()));
            }
            if status["status"] == "stopped" {
                return fail(format!("syncer is stopped: {status}"));
            }
            Ok(Poll::Pending(format!(
                "master at {file}:{pos}, syncer status {status}"
            )))
        })
    }

    /// SIGKILL: a crash. `restart` brings it back.
    pub fn kill9(&mut self) {
        if let Some(mut proc) = self.proc().take() {
            proc.kill9();
        }
    }

    /// SIGTERM and wait (bounded) for the exit; returns the exit code (None: killed by a
    /// signal, i.e. it did not exit by itself).
    pub fn terminate(&mut self) -> Result<Option<i32>> {
        self.stop_with(libc::SIGTERM)
    }

    /// `signal` and wait (bounded) for the exit; returns the exit code (None: killed by a
    /// signal, i.e. it did not exit by itself).
    pub fn stop_with(&mut self, signal: libc::c_int) -> Result<Option<i32>> {
        let taken = self.proc().take();
        match taken {
            Some(mut proc) => {
                let status = proc
                    .stop_with(signal, Duration::from_secs(30))
                    .context(|| format!("stopping ferrobus {} with signal {signal}", self.name))?;
                Ok(status.code())
            }
            None => fail(format!("ferrobus {} is not running", self.name)),
        }
    }

    /// Replaces the extra `serve` arguments for the next (re)start.
    pub fn set_args(&mut self, extra_args: Vec<String>) {
        self.extra_args = extra_args;
    }

    /// Stops the node if it runs (SIGTERM), then starts it again with the same data dir and
    /// admin port, and waits for /health.
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.terminate()?;
        }
        self.proc().take();
        self.spawn_and_wait()
    }

    pub fn print_log(&self) {
        print_log_tail(
            &format!("ferrobus {} (admin {})", self.name, self.admin_addr()),
            &self.log_path,
            LOG_TAIL_LINES,
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log();
        }
        // Proc's own Drop stops it by pid (SIGTERM, then SIGKILL).
        self.proc().take();
    }
}

fn expect_success(method: &str, path: &str, status: u16, reply: Value) -> Result<Value> {
    if status != 200 || reply["message"] != "success" {
        return fail(format!(
            "{method} {path}: expected 200 success, got HTTP {status}: {reply}"
        ));
    }
    Ok(reply.get("data").cloned().unwrap_or(Value::Null))
}
