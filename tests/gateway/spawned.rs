//! Processes a test starts (nginx, redis-server, Python upstreams, chromedriver and its
//! Chromium, the `handoff` binary), stopped so that nothing they started outlives them.
//!
//! Each runs in a process group of its own. Stopping it signals the whole group (nginx's
//! master and its workers, chromedriver and the browser it launched), waits for the leader to
//! exit — without reaping it, so the group's id cannot be taken by another process meanwhile —
//! then SIGKILLs whatever of the group is still there, and only then reaps the leader.
//! `.ci/leftovers.py` runs the suite and fails it if any process it started is still alive.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

/// How long a server gets to stop on its stop signal before its group is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A started process and its process group, stopped (the group with it) when dropped.
pub struct Spawned {
    child: Child,
    stop_signal: i32,
    stopped: Option<ExitStatus>,
}

impl Spawned {
    /// Starts `cmd` in a new process group; stopping sends `stop_signal` first (SIGTERM:
    /// nginx's fast shutdown, which stops its workers; redis-server's and Python's exit).
    pub fn start(cmd: &mut Command, stop_signal: i32, what: &str) -> Spawned {
        let child = cmd
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        Spawned {
            child,
            stop_signal,
            stopped: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Stops the process and everything in its group; its exit status. Idempotent.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.stopped.is_none() {
            let group = -self.pid();
            // SAFETY: kill(2) on our own child's process group.
            unsafe { libc::kill(group, self.stop_signal) };
            let deadline = Instant::now() + STOP_GRACE;
            while !self.leader_exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            // The leader is a zombie (or killed here): the group id is still ours.
            // SAFETY: as above.
            unsafe { libc::kill(group, libc::SIGKILL) };
            self.stopped = self.child.wait().ok();
        }
        self.stopped
    }

    /// Whether the leader has exited, without reaping it (`WNOWAIT`). A leader a test already
    /// reaped (`Child::try_wait`) counts as exited.
    fn leader_exited(&mut self) -> bool {
        // SAFETY: waitid(2) on our own child, into a zeroed siginfo_t.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // ECHILD: already reaped. Otherwise a pid is set once the leader has exited.
        rc != 0 || unsafe { info.si_pid() } != 0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}
