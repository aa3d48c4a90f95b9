//! Processes an earlier, killed run of the same journal left behind.
//!
//! The parent-death signal reaches each job's own process, not the children
//! a shell job starts. So every job of a run with `--joblog` carries
//! `FANOUT_JOBLOG=<journal path>#<run id>` in its environment (children
//! inherit it). A run that holds the journal's lock, and whose journal says
//! the previous run did not finish (fanout was killed), kills every process
//! still carrying that run's mark before it starts a job: a re-run job never
//! overlaps with its orphaned earlier self. What a run that finished left
//! running, it left on purpose (a daemon a job started), and stays.
//!
//! Each process is signalled through a pidfd opened before its mark is
//! checked, so a pid reused by an unrelated process is never signalled.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::joblog::{RunId, Unfinished};

/// The environment variable that marks a job's processes.
pub(crate) const MARK_VAR: &str = "FANOUT_JOBLOG";

/// The mark of run `run` of the journal at `path` (made absolute, so runs
/// from different directories agree).
pub(crate) fn mark(path: &Path, run: RunId) -> String {
    format!("{}#{run}", journal_mark(path))
}

/// The mark of the first journal format: the path alone.
fn journal_mark(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_owned())
        .to_string_lossy()
        .into_owned()
}

/// Kills (SIGKILL) every process left by the unfinished run of the journal
/// at `path`, and waits, up to two seconds, for them to go; returns how
/// many were found. Only call this while holding the journal's lock, which
/// proves that the run that marked them is dead.
pub(crate) fn kill_left_by(path: &Path, run: Unfinished) -> usize {
    let mark = match run.run {
        Some(id) => mark(path, id),
        None => journal_mark(path),
    };
    let needle = format!("{MARK_VAR}={mark}").into_bytes();
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut killed = 0;
    loop {
        let found = marked_processes(&needle, me);
        if found.is_empty() || Instant::now() > deadline {
            return killed;
        }
        for (_, pidfd) in &found {
            // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                );
            }
        }
        killed = killed.max(found.len());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Live processes (not zombies) whose environment contains `needle` as one
/// entry, each with a pidfd opened *before* its environment was read: the
/// pidfd names exactly the process that was checked. Processes of other
/// users are unreadable and skipped.
fn marked_processes(needle: &[u8], me: u32) -> Vec<(u32, OwnedFd)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Some(pidfd) = pidfd_open(pid) else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|&b| b == 0).any(|var| var == needle) && !is_zombie(&entry.path()) {
            found.push((pid, pidfd));
        }
    }
    found
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; a returned fd is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: the syscall just returned this descriptor to us.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A zombie is dead already and waits for its parent; killing it again
/// does nothing.
fn is_zombie(proc_dir: &Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}
