//! A child process started by a test, the bench or the soak: in an empty working directory of
//! its own, optionally pinned to one core, killed by the kernel if its starter dies, with
//! every line it prints recorded, and killed when dropped.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::eventually_blocking;

/// How long a process gets to exit after SIGTERM in [`Process::stop`] before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// A running (or finished) child process; killed when dropped.
pub struct Process {
    name: String,
    child: Child,
    recorded: Arc<Recorded>,
    readers: Vec<JoinHandle<()>>,
    // Dropped after the process is gone (fields drop after `Drop::drop`).
    _dir: WorkDir,
}

/// Everything the process printed so far, and a signal for every new line.
#[derive(Default)]
struct Recorded {
    lines: Mutex<Lines>,
    changed: Condvar,
}

#[derive(Default)]
struct Lines {
    stdout: Vec<String>,
    stderr: Vec<String>,
    stdout_closed: bool,
}

impl Recorded {
    fn lock(&self) -> MutexGuard<'_, Lines> {
        // A reader thread cannot panic while holding the lock; recover the lines anyway.
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Process {
    /// Starts `command` in a fresh empty working directory (so no stray `.env` or dump file
    /// is read or left behind), on `core` alone when given. A relative program path would be
    /// looked up from that directory: give a bare name (found on `PATH`) or an absolute path.
    pub fn start(command: Command, core: Option<usize>) -> io::Result<Self> {
        Self::start_in(command, WorkDir::new()?, core)
    }

    /// Starts `command` in `dir`, which the process owns from now on.
    pub(crate) fn start_in(
        mut command: Command,
        dir: WorkDir,
        core: Option<usize>,
    ) -> io::Result<Self> {
        let name = Path::new(command.get_program())
            .file_name()
            .and_then(OsStr::to_str)
            .unwrap_or("process")
            .to_string();
        command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and makes only
        // async-signal-safe system calls that change nothing but the child itself.
        unsafe {
            command.pre_exec(move || {
                // Die with the thread that started it, so an interrupted run leaves nothing.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                match core {
                    Some(core) => pin_to_core(core),
                    None => Ok(()),
                }
            });
        }
        let mut child = command.spawn().map_err(|e| {
            let program = command.get_program().to_string_lossy();
            io::Error::new(e.kind(), format!("cannot start {program}: {e}"))
        })?;
        let recorded = Arc::new(Recorded::default());
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        // Both pipes are drained for the life of the process, so it never blocks on a write.
        let readers = vec![
            record(stdout, recorded.clone(), |lines| &mut lines.stdout, true),
            record(stderr, recorded.clone(), |lines| &mut lines.stderr, false),
        ];
        Ok(Self {
            name,
            child,
            recorded,
            readers,
            _dir: dir,
        })
    }

    /// Waits (at most `timeout`) for the first stdout line for which `find` gives a value;
    /// `what` names that line in the error, which carries everything the process printed,
    /// when it stops printing or time runs out first.
    pub fn wait_for_line<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut find: impl FnMut(&str) -> Option<T>,
    ) -> io::Result<T> {
        let deadline = Instant::now() + timeout;
        let recorded = self.recorded.clone();
        let mut seen = 0;
        let mut lines = recorded.lock();
        loop {
            for line in &lines.stdout[seen..] {
                if let Some(found) = find(line) {
                    return Ok(found);
                }
            }
            seen = lines.stdout.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if lines.stdout_closed || left.is_zero() {
                break;
            }
            lines = recorded
                .changed
                .wait_timeout(lines, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let closed = lines.stdout_closed;
        drop(lines);
        let failure = if closed {
            match self.wait_exit(Duration::from_secs(1)) {
                Some(status) => format!("exited with {status} before printing {what}"),
                None => format!("closed its stdout before printing {what}"),
            }
        } else {
            self.kill();
            format!("printed no {what} within {timeout:?}")
        };
        Err(io::Error::other(format!(
            "{} {failure}\n{}",
            self.name,
            self.transcript()
        )))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stdout line and then every stderr line printed so far.
    pub fn output(&self) -> Vec<String> {
        let lines = self.recorded.lock();
        lines.stdout.iter().chain(&lines.stderr).cloned().collect()
    }

    /// All of stdout so far, one line per line.
    pub fn stdout(&self) -> String {
        self.recorded.lock().stdout.join("\n")
    }

    /// All of stderr so far, one line per line.
    pub fn stderr(&self) -> String {
        self.recorded.lock().stderr.join("\n")
    }

    /// Both outputs, labelled, for failure messages.
    pub fn transcript(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr())
    }

    /// Its resident memory in KiB (`VmRSS`), while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let value = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    }

    /// Sends SIGTERM and returns at once.
    pub fn terminate(&self) -> io::Result<()> {
        // SAFETY: kill(2) on our own child's pid, which stays reserved until we reap it.
        if unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit; returns its status once it has, with
    /// its output then complete.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = eventually_blocking(timeout, || match self.child.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) | Err(_) => Err(()),
        })
        .ok()?;
        self.join_readers();
        Some(status)
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        if self.terminate().is_err() || self.wait_exit(STOP_TIMEOUT).is_none() {
            self.kill();
        }
    }

    /// SIGKILL, and waits until it is gone and its output is complete.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_readers();
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stream` line by line into the lines `pick` chooses, until it ends.
fn record(
    stream: impl Read + Send + 'static,
    recorded: Arc<Recorded>,
    pick: fn(&mut Lines) -> &mut Vec<String>,
    is_stdout: bool,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            pick(&mut recorded.lock()).push(line);
            recorded.changed.notify_all();
        }
        if is_stdout {
            recorded.lock().stdout_closed = true;
            recorded.changed.notify_all();
        }
    })
}

/// Pins the calling thread (and so a process that calls it before starting threads, or a
/// child before `exec`) to one core, like `taskset -c <core>`.
pub fn pin_to_core(core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit set for which all-zero is valid; CPU_SET only writes
    // into it, and sched_setaffinity only reads it. Both are async-signal-safe.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A fresh empty directory under the system's temp dir, removed when dropped.
pub(crate) struct WorkDir(PathBuf);

impl WorkDir {
    pub(crate) fn new() -> io::Result<Self> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "switchboard-testkit-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn both_outputs_are_recorded_and_the_awaited_line_is_found() {
        let mut process = Process::start(
            shell("echo one; echo two >&2; echo 'port 42'; exec sleep 5"),
            None,
        )
        .unwrap();
        let port = process
            .wait_for_line("a port", Duration::from_secs(5), |l| {
                l.strip_prefix("port ").map(str::to_owned)
            })
            .unwrap();
        assert_eq!(port, "42");
        process.kill();
        assert_eq!(process.output(), ["one", "port 42", "two"]);
    }

    #[test]
    fn a_process_that_exits_first_fails_the_wait_with_its_output() {
        let mut process = Process::start(shell("echo bad setting >&2; exit 3"), None).unwrap();
        let err = process
            .wait_for_line("a line", Duration::from_secs(5), |_| Some(()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sh exited with exit status: 3 before printing a line"),
            "{err}"
        );
        assert!(err.contains("bad setting"), "{err}");
    }

    #[test]
    fn stop_ends_a_process_that_heeds_sigterm_without_waiting_out_the_bound() {
        let mut process = Process::start(shell("exec sleep 30"), None).unwrap();
        let started = Instant::now();
        process.stop();
        assert!(started.elapsed() < STOP_TIMEOUT);
        assert!(process.wait_exit(Duration::ZERO).is_some());
    }
}
