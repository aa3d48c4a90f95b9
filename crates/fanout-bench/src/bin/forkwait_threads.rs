//! The floor for the `fanout` command benchmark when jobs are started from
//! several threads (`scripts/bench-cli.sh`): like `forkwait`, it runs a
//! program N times with at most J children at once and does nothing else,
//! but T threads start the children (each `posix_spawn` waits until its
//! child has exec'd, so one thread's wait overlaps another's start) while
//! the main thread reaps them with wait(2). `fanout` starts its jobs the
//! same way (one spawning thread per CPU, at most `-j`).
//!
//! Usage: `forkwait_threads N J T [PROGRAM [ARGS...]]` (PROGRAM defaults to
//! `true`). Job `i` (from 1) runs `PROGRAM ARGS... i`, as in `forkwait`.

use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A counter threads wait on.
#[derive(Default)]
struct Count {
    value: Mutex<usize>,
    changed: Condvar,
}

impl Count {
    fn add(&self, n: usize) {
        *self.value.lock().unwrap_or_else(|p| p.into_inner()) += n;
        self.changed.notify_all();
    }

    /// Waits until the value is above `floor`, then takes one if `take`.
    fn wait_above(&self, floor: usize, take: bool) {
        let mut value = self.value.lock().unwrap_or_else(|p| p.into_inner());
        while *value <= floor {
            value = self.changed.wait(value).unwrap_or_else(|p| p.into_inner());
        }
        if take {
            *value -= 1;
        }
    }
}

#[allow(
    clippy::zombie_processes,
    reason = "every child is reaped with wait(2), not Child::wait"
)]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), Some(j), Some(t)) = (
        args.first().and_then(|a| a.parse::<usize>().ok()),
        args.get(1).and_then(|a| a.parse::<usize>().ok()),
        args.get(2).and_then(|a| a.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: forkwait_threads N J T [PROGRAM [ARGS...]]");
        return ExitCode::from(2);
    };
    let program: Arc<str> = args.get(3).map_or("true", String::as_str).into();
    let rest: Arc<[String]> = args.get(4..).unwrap_or(&[]).into();
    let free = Arc::new(Count::default());
    free.add(j.max(1));
    let spawned = Arc::new(Count::default());
    let next = Arc::new(AtomicUsize::new(0));
    let spawn_failed = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..t.max(1))
        .map(|_| {
            let (program, rest, free, spawned, next, spawn_failed) = (
                program.clone(),
                rest.clone(),
                free.clone(),
                spawned.clone(),
                next.clone(),
                spawn_failed.clone(),
            );
            std::thread::spawn(move || loop {
                free.wait_above(0, true);
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    free.add(1);
                    return;
                }
                let started = Command::new(&*program)
                    .args(rest.iter())
                    .arg((i + 1).to_string())
                    .stdin(Stdio::null())
                    .spawn();
                if let Err(e) = started {
                    eprintln!("forkwait_threads: {program}: {e}");
                    spawn_failed.store(true, Ordering::SeqCst);
                    std::process::exit(2);
                }
                // The handle is dropped without waiting: the main thread
                // reaps every child with wait(2).
                spawned.add(1);
            })
        })
        .collect();
    let mut failed = 0usize;
    for reaped in 0..n {
        // Only wait once a child exists: wait(2) fails with no children.
        spawned.wait_above(reaped, false);
        let mut status = 0;
        // SAFETY: wait(2) writes the status to a valid int.
        let pid = unsafe { libc_wait(&mut status) };
        if pid <= 0 {
            break;
        }
        if status != 0 {
            failed += 1;
        }
        free.add(1);
    }
    for thread in threads {
        let _ = thread.join();
    }
    ExitCode::from(u8::from(failed > 0 || spawn_failed.load(Ordering::SeqCst)))
}

extern "C" {
    #[link_name = "wait"]
    fn libc_wait(status: *mut i32) -> i32;
}
