//! A child process owned by a test: spawned with its output appended to a log file, stopped
//! by its own pid (SIGTERM, then SIGKILL after a bounded wait) when dropped, pass or fail.
//!
//! Never signals anything but the pid it spawned. Children get PR_SET_PDEATHSIG=SIGKILL so a
//! test binary killed from outside does not leave servers behind.

use std::fs::OpenOptions;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::util::{Context, Result};

/// How long Drop and `terminate` wait after SIGTERM before SIGKILL.
pub const TERM_WAIT: Duration = Duration::from_secs(20);

pub struct Proc {
    name: String,
    child: Child,
    log_path: PathBuf,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout+stderr appended to `log_path`.
    pub fn spawn(name: &str, mut cmd: Command, log_path: &Path) -> Result<Proc> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .context(|| format!("opening log {}", log_path.display()))?;
        let log2 = log.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .context(|| format!("spawning {name}: {:?}", cmd.get_program()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log_path: log_path.to_path_buf(),
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The exit status if the process has ended (reaps it), else None.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
            }
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    fn signal(&mut self, sig: libc::c_int) {
        if self.is_running() {
            // The pid is our own unreaped child, so it cannot have been reused.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, sig);
            }
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{} (pid {}) survived SIGKILL", self.name, self.pid()))
    }

    /// SIGTERM and wait up to `timeout` for the exit; past it SIGKILL and an error.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.stop_with(libc::SIGTERM, timeout)
    }

    /// Sends `signal` and waits (bounded) for the exit; kill -9 if it does not come.
    pub fn stop_with(&mut self, signal: libc::c_int, timeout: Duration) -> Result<ExitStatus> {
        self.signal(signal);
        if let Some(status) = self.wait_exit(timeout) {
            return Ok(status);
        }
        self.kill9();
        Err(format!(
            "{} (pid {}) did not exit within {:?} of signal {signal}; killed it",
            self.name,
            self.pid(),
            timeout
        )
        .into())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_exit().is_some() {
            return;
        }
        if self.terminate(TERM_WAIT).is_err() {
            eprintln!("[harness] {} needed SIGKILL after SIGTERM", self.name);
        }
    }
}

/// "exit code 3" / "signal 9" for messages.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => format!("{status}"),
    }
}

/// Runs a short-lived command to completion with `input` on stdin, collecting stdout and
/// stderr. Past `timeout` the command is killed by pid and an error returned.
pub fn run_command(
    mut cmd: Command,
    input: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<std::process::Output> {
    let program = format!("{:?}", cmd.get_program());
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().context(|| format!("spawning {program}"))?;
    let pid = child.id();
    let writer = match (input, child.stdin.take()) {
        (Some(bytes), Some(mut stdin)) => Some(std::thread::spawn(move || {
            use std::io::Write;
            // A client that exits early closes the pipe: that error is the client's story,
            // told by its exit status and stderr.
            let _ = stdin.write_all(&bytes);
        })),
        _ => None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(timeout) {
        Ok(output) => output.context(|| format!("waiting for {program}"))?,
        Err(_) => {
            // Still our unreaped child (the waiting thread has not returned): safe to signal.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            return Err(format!("{program} did not finish within {timeout:?}; killed it").into());
        }
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    Ok(output)
}
