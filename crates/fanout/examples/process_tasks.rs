//! Go's fan-out/fan-in idiom, `ProcessTasksInParallel`, written with fanout.
//!
//! The Go idiom builds every task first (a slice or a map), starts one
//! goroutine per task with a context cancelled on the first error, wraps each
//! task in a trace span, sends results and errors over buffered channels, and
//! collects them in a loop that returns early on the first error. It fans out
//! well enough, but its fan-in half is broken. Each part below says which of
//! its bugs fanout removes:
//!
//! - **orphans**: after the early `return nil, err` the other goroutines keep
//!   running, and their spans end after the parent's;
//! - **lost errors**: every error but the first is dropped, and a
//!   cancellation error can mask the real cause;
//! - **order**: results come back in completion order, no longer lined up
//!   with the tasks;
//! - **unbounded**: one goroutine per task, however many tasks there are;
//! - **panics**: a panic in a task crashes the process.
//!
//! Run it with `cargo run -p fanout --example process_tasks`. It prints the
//! results of a batch that succeeds, then the error of a batch where one task
//! fails, and checks that no task outlived either run.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fanout::{CancellationToken, Cause, TaskCtx};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

/// One unit of work: the Go version's `Task`.
#[derive(Debug, Clone)]
struct Task {
    id: u32,
    /// How long the simulated work takes.
    work: Duration,
    /// Whether the simulated work fails.
    fails: bool,
}

/// What one task produces: the Go version's `MyResult`.
#[derive(Debug)]
struct MyResult {
    task_id: u32,
    value: u64,
}

/// How one task fails.
#[derive(Debug)]
enum MyError {
    /// The work itself failed.
    BadInput { task_id: u32 },
    /// The run told the task to stop before it was done.
    Cancelled { task_id: u32 },
}

impl fmt::Display for MyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadInput { task_id } => write!(f, "task {task_id}: bad input"),
            Self::Cancelled { task_id } => write!(f, "task {task_id}: cancelled"),
        }
    }
}

impl std::error::Error for MyError {}

/// The number of task bodies alive right now: counted up when
/// `process_one_task` starts, down when its future is dropped, whether it
/// finished or was aborted. The Go version has no way to know this number.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most task bodies alive at once.
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct LiveGuard;

impl LiveGuard {
    fn new() -> Self {
        let now = LIVE.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        LiveGuard
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// At most this many tasks run at once.
///
/// Bug fixed, **unbounded**: the Go version starts one goroutine per task. fanout
/// never has more than `limit` task bodies alive (default
/// [`fanout::DEFAULT_LIMIT`]), and pulls the next task only when a slot frees.
const LIMIT: usize = 4;

/// Go's `ProcessTasksInParallel(ctx, tasks) -> ([]MyResult, error)`.
///
/// The whole fan-out *and* fan-in is one call. `token` plays the part of the
/// Go version's `ctx`: cancelling it stops the run (the run watches a child
/// token, Go's `parallelCtx`, and cancels that one itself on the first
/// error).
async fn process_tasks_in_parallel(
    token: &CancellationToken,
    tasks: Vec<Task>,
) -> Result<Vec<MyResult>, fanout::Error<usize, MyError>> {
    fanout::fan_out(tasks)
        .limit(LIMIT)
        .cancel_on(token)
        // Bug fixed, **panics**: a panicking task is a failure like any other
        // (its siblings are cancelled at once); by default its original
        // payload is re-raised here once every task is gone, or, with
        // `.panics(fanout::PanicPolicy::AsError)`, it comes back as an error
        // naming the task. It is never swallowed, nor does it kill a thread
        // while other tasks still run.
        //
        // Bug fixed, **orphans**: the future returned by `run` completes only
        // when every task has finished or been dropped. On the first error no
        // new task starts, the others are aborted (after `.grace(..)`, zero by
        // default), and then `run` returns. No `WaitGroup`, no `defer`.
        // Each task runs inside a `fanout.task` span (index, attempt,
        // outcome), child of this run's `fanout.run` span, and closed before
        // it: the Go version's `otel.Tracer("").Start(ctx, ...)` per task, done for
        // us.
        .run(process_one_task)
        .await
    // Bug fixed, **order**: `Ok(out)` has `out[i]` for `tasks[i]`, whatever
    // order they finished in.
    //
    // Bug fixed, **lost errors**: `Err(e)` carries the root cause (the first
    // failure, with its task's index), every other failure,
    // and the count of each outcome. Tasks that were only cancelled are
    // counted, never posing as the cause.
}

/// Go's `processOneTask`: simulated work that watches the run's
/// cancellation token.
async fn process_one_task(ctx: TaskCtx, task: Task) -> Result<MyResult, MyError> {
    let _live = LiveGuard::new();
    tokio::select! {
        () = tokio::time::sleep(task.work) => {}
        // The run stopped (a sibling failed, or the caller cancelled). With
        // the default grace period of zero fanout drops this future at its
        // next await anyway; with `.grace(..)` this is where a task would
        // clean up and stop early.
        () = ctx.cancelled() => return Err(MyError::Cancelled { task_id: task.id }),
    }
    if task.fails {
        let err = MyError::BadInput { task_id: task.id };
        // Logged inside the task's span: the Go version's
        // `otzap.AddErrorEvent(span, "failed to do the thing", err)`.
        tracing::warn!(error = %err, "failed to do the thing");
        return Err(err);
    }
    Ok(MyResult {
        task_id: task.id,
        value: u64::from(task.id) * u64::from(task.id),
    })
}

/// `n` tasks of 1 to 4 ms each; task `fail_at`, if any, fails after 1 ms.
fn make_tasks(n: u32, fail_at: Option<u32>) -> Vec<Task> {
    (0..n)
        .map(|id| Task {
            id,
            work: Duration::from_millis(if Some(id) == fail_at {
                1
            } else {
                1 + u64::from(id * 7 % 4)
            }),
            fails: Some(id) == fail_at,
        })
        .collect()
}

#[tokio::main]
async fn main() {
    // Print warnings with the spans they happened in (spans are kept, events
    // below WARN dropped).
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .without_time()
                .with_target(false)
                .with_filter(filter_fn(|meta| {
                    meta.is_span() || *meta.level() <= tracing::Level::WARN
                })),
        )
        .init();

    let token = CancellationToken::new();
    let started = std::time::Instant::now();

    // -- A batch that succeeds: results in input order.
    let results = process_tasks_in_parallel(&token, make_tasks(20, None))
        .await
        .expect("no task fails in the first batch");
    println!(
        "batch 1: {} results, in input order (limit {LIMIT}):",
        results.len()
    );
    let line: Vec<String> = results
        .iter()
        .map(|r| format!("{}→{}", r.task_id, r.value))
        .collect();
    println!("  {}", line.join(" "));
    assert!(results
        .iter()
        .enumerate()
        .all(|(i, r)| r.task_id as usize == i));
    println!(
        "  live tasks after return: {}, most alive at once: {}",
        LIVE.load(Ordering::SeqCst),
        PEAK.load(Ordering::SeqCst)
    );

    // -- A batch where task 9 fails.
    PEAK.store(0, Ordering::SeqCst);
    println!("batch 2: task 9 fails");
    let err = process_tasks_in_parallel(&token, make_tasks(20, Some(9)))
        .await
        .expect_err("task 9 fails");
    println!("  error: {err}");
    match err.cause() {
        Cause::Task(failure) => {
            println!("  root cause: task #{} ({})", failure.index, failure.error)
        }
        Cause::Cancelled => println!("  root cause: the caller's token"),
        Cause::DeadlineExceeded => println!("  root cause: the deadline"),
        // `Cause` is non-exhaustive.
        _ => println!("  root cause: {err}"),
    }
    if err.others().is_empty() {
        println!("  other failures: none");
    }
    for other in err.others() {
        println!("  other failure: {other}");
    }
    let counts = err.counts();
    println!(
        "  {} inputs: {} succeeded, {} failed, {} cancelled while running, {} not started",
        counts.total(),
        counts.succeeded,
        counts.failures(),
        counts.cancelled,
        counts.not_started
    );
    println!(
        "  live tasks after return: {} (no orphans), most alive at once: {}",
        LIVE.load(Ordering::SeqCst),
        PEAK.load(Ordering::SeqCst)
    );
    assert_eq!(err.key(), Some(&9));
    assert_eq!(counts.total(), 20);
    assert_eq!(LIVE.load(Ordering::SeqCst), 0);
    assert!(PEAK.load(Ordering::SeqCst) <= LIMIT);
    println!("done in {:?}", started.elapsed());
}
