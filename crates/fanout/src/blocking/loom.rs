//! Model checks of the blocking runs' own synchronisation, with loom (see
//! `engine/loom.rs` for how to run them). loom's condition variable never
//! times out on its own, so a wait that only ends on its timeout (a lost
//! wake-up, which real code would sit out for a tick) shows up as a
//! deadlock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use loom::thread;

use super::Run;
use crate::config::Config;
use crate::engine::Reason;
use crate::retry::NoRetry;
use crate::source::Indexed;
use crate::sync::Ordering;
use crate::CancellationToken;

type Closure = fn(&super::BlockingCtx<'_, usize>, usize) -> Result<(), ()>;

fn closure(_ctx: &super::BlockingCtx<'_, usize>, _item: usize) -> Result<(), ()> {
    Ok(())
}

type TestRun = Run<'static, Indexed<std::ops::Range<usize>>, Closure, NoRetry>;

/// A run whose borrows live for the whole model iteration (loom threads
/// must be `'static`: a few bytes leak per iteration).
fn run(cfg: Config) -> (Arc<TestRun>, &'static Config) {
    let cfg: &'static Config = Box::leak(Box::new(cfg));
    let span: &'static tracing::Span = Box::leak(Box::new(tracing::Span::none()));
    let f: &'static Closure = Box::leak(Box::new(closure as Closure));
    let run = Run::new(Indexed(0..0usize), cfg, f, &NoRetry, true, span);
    (Arc::new(run), cfg)
}

/// The caller's watch returns once every worker has exited: the last one's
/// wake-up is never lost, whichever order the workers leave in.
#[test]
fn loom_the_watch_hears_the_last_worker_leave() {
    loom::model(|| {
        let (run, cfg) = run(Config {
            // An external token is what makes the caller watch.
            external: Some(CancellationToken::new()),
            ..Config::default()
        });
        run.running.store(2, Ordering::Release);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let run = run.clone();
                thread::spawn(move || run.worker_exit())
            })
            .collect();
        run.watch(cfg, Instant::now());
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(run.running.load(Ordering::Acquire), 0);
    });
}

/// A backoff sleep ends as soon as the run stops: the stop's wake-up is
/// never lost between the sleeper's check and its wait.
#[test]
fn loom_a_backoff_sleep_ends_when_the_run_stops() {
    loom::model(|| {
        let (run, _) = run(Config::default());
        let r = run.clone();
        let stopper = thread::spawn(move || r.stop(Reason::Failure));
        assert!(
            !run.sleep_unless_stopped(Duration::from_secs(3600)),
            "the sleep ended without seeing the stop"
        );
        stopper.join().unwrap();
    });
}
