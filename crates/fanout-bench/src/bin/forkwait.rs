//! The floor for the `fanout` command benchmark (`scripts/bench-cli.sh`):
//! runs a program N times with at most J children at once and waits for
//! them, and does nothing else (no output capture, no journal, no shell).
//!
//! Usage: `forkwait N J [PROGRAM [ARGS...]]` (PROGRAM defaults to `true`).
//! Job `i` (from 1) runs `PROGRAM ARGS... i`: the same command line the
//! tools compared get from the input `seq N` (`fanout true`, `xargs -n 1
//! true`, …). It matters: GNU `true` with one argument sets up its locale
//! (to check for `--help`), which costs more than the rest of its run.

use std::process::{Child, Command, ExitCode, Stdio};

#[allow(
    clippy::zombie_processes,
    reason = "every child is reaped with wait(2), not Child::wait"
)]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), Some(j)) = (
        args.first().and_then(|a| a.parse::<usize>().ok()),
        args.get(1).and_then(|a| a.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: forkwait N J [PROGRAM [ARGS...]]");
        return ExitCode::from(2);
    };
    let program = args.get(2).map_or("true", String::as_str);
    let rest = args.get(3..).unwrap_or(&[]);
    let j = j.max(1);
    let mut running: Vec<Child> = Vec::with_capacity(j);
    let mut failed = 0usize;
    let mut started = 0usize;
    while started < n || !running.is_empty() {
        while started < n && running.len() < j {
            let arg = (started + 1).to_string();
            match Command::new(program)
                .args(rest)
                .arg(&arg)
                .stdin(Stdio::null())
                .spawn()
            {
                Ok(child) => running.push(child),
                Err(e) => {
                    eprintln!("forkwait: {program}: {e}");
                    return ExitCode::from(2);
                }
            }
            started += 1;
        }
        // Wait for any child, then reap it from the list.
        let mut status = 0;
        // SAFETY: wait(2) writes the status to a valid int.
        let pid = unsafe { libc_wait(&mut status) };
        if pid <= 0 {
            break;
        }
        if let Some(i) = running.iter().position(|c| c.id() as i32 == pid) {
            // Already reaped by wait(2); dropping the handle does not wait.
            running.swap_remove(i);
            if status != 0 {
                failed += 1;
            }
        }
    }
    ExitCode::from(u8::from(failed > 0))
}

extern "C" {
    #[link_name = "wait"]
    fn libc_wait(status: *mut i32) -> i32;
}
