//! Processes an earlier, killed run of the same journal left behind.
//!
//! The parent-death signal reaches each job's own process, not the children
//! a shell job starts. So every job of a run with `--joblog` carries
//! `FANOUT_JOBLOG=<journal path>` in its environment (children inherit it),
//! and a run that holds the journal's lock kills every process still
//! carrying its journal's mark before it starts a job: a re-run job never
//! overlaps with its orphaned earlier self.

use std::path::Path;
use std::time::{Duration, Instant};

/// The environment variable that marks a job's processes.
pub(crate) const MARK_VAR: &str = "FANOUT_JOBLOG";

/// The mark for a journal at `path` (made absolute, so runs from different
/// directories agree).
pub(crate) fn mark_for(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_owned())
        .to_string_lossy()
        .into_owned()
}

/// Kills (SIGKILL) every process whose environment holds `MARK_VAR=mark`
/// and waits, up to two seconds, for them to go; returns how many were
/// found. Only call this while holding the journal's lock, which proves
/// that the run that marked them is dead.
pub(crate) fn kill_marked(mark: &str) -> usize {
    let needle = format!("{MARK_VAR}={mark}").into_bytes();
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut killed = 0;
    loop {
        let found = marked_processes(&needle, me);
        if found.is_empty() || Instant::now() > deadline {
            return killed;
        }
        for pid in &found {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
        killed = killed.max(found.len());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Live processes (not zombies) whose environment contains `needle` as one
/// entry. Processes of other users are unreadable and skipped.
fn marked_processes(needle: &[u8], me: u32) -> Vec<u32> {
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
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|&b| b == 0).any(|var| var == needle) && !is_zombie(&entry.path()) {
            found.push(pid);
        }
    }
    found
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
