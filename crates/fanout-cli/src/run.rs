//! The run: starts at most `-j` jobs at a time, collects them, journals,
//! prints, applies the halt policy and handles signals.

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use fanout::{Order, PanicPolicy, TaskError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::signal::unix::{signal, SignalKind};

use crate::flags::{Config, HaltOn, HaltWhen, Resume};
use crate::job::{self, Finished, JobSpec, Shared};
use crate::joblog::{Fingerprint, JobRecord, Joblog, Skip};
use crate::leftovers;
use crate::output::{self, BacklogTicket, Printer};
use crate::results::Results;
use crate::template::Template;

/// How long jobs get between SIGTERM and SIGKILL when the run stops.
const GRACE: Duration = Duration::from_millis(200);

/// The engine's grace period: jobs are never dropped by it, since fanout
/// terminates their process groups itself and each job reaps its process.
const NO_ABORT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// GNU parallel's exit code for an error of the tool itself.
pub(crate) const TOOL_ERROR: i32 = 255;

/// Why the run stopped starting jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The halt policy triggered; the exit code it implies.
    Halt(i32),
    /// SIGINT or SIGTERM arrived.
    Signal(i32),
    /// stdout was closed.
    BrokenPipe,
    /// fanout itself failed (journal or results not writable).
    ToolError,
}

/// Runs the jobs `config` describes and returns fanout's exit code.
///
/// # Errors
/// Setting up the run fails (journal, results file, signal handlers); no
/// job has started then.
pub(crate) async fn run(config: Config) -> anyhow::Result<i32> {
    if config.dry_run {
        return dry_run(&config);
    }
    let fingerprint = Fingerprint::of(|feed| {
        for word in &config.command {
            feed(word.as_bytes());
        }
        feed(b"--inputs--");
        config.inputs.visit(|bytes| feed(bytes));
    });
    let summary = format!(
        "command: {}; {} jobs",
        config.command.join(" "),
        config.inputs.job_count()
    );
    // The results file first: failing on it must not cost an old joblog.
    let mut results = match &config.results {
        Some(path) => Some(Results::open(path, config.resume != Resume::Off)?),
        None => None,
    };
    let (mut joblog, skip) = match (&config.joblog, config.resume) {
        (None, _) => (None, Skip::new()),
        (Some(path), Resume::Off) => (
            Some(Joblog::create(path, fingerprint, &summary)?),
            Skip::new(),
        ),
        (Some(path), mode) => {
            let (log, skip, contents) =
                Joblog::resume(path, fingerprint, &summary, mode == Resume::Failed)?;
            if contents.torn {
                eprintln!(
                    "fanout: ignored the torn last line of joblog {} (a run was killed while writing it); \
                     that job runs again",
                    path.display()
                );
            }
            (Some(log), skip)
        }
    };
    let mark = config.joblog.as_deref().map(leftovers::mark_for);
    if let Some(mark) = &mark {
        let killed = leftovers::kill_marked(mark);
        if killed > 0 {
            eprintln!("fanout: killed {killed} process(es) left running by an earlier, killed run of this joblog");
        }
    }
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;

    let total = config.inputs.job_count().saturating_sub(skip.len() as u64);
    let bar = progress_bar(&config, total);
    let shared = Arc::new(
        Shared::new(
            std::env::var("PARALLEL_SHELL").unwrap_or_else(|_| "/bin/sh".to_owned()),
            config.timeout,
            config.attempts,
            config.line_buffer,
            config.tag,
            mark,
            config.jobs,
        )
        .context("cannot open /dev/null")?,
    );
    let mut printer = Printer::new(config.keep_order, config.tag, bar.clone());
    // With -k, waiting output keeps its temp files open (one or two per
    // job); past this many unprinted jobs the run waits for the earliest
    // instead of starting more, so it never runs out of file descriptors.
    let fd_budget = raise_fd_limit().saturating_sub(64 + 2 * config.jobs) / 2;
    let backlog_limit = fd_budget.clamp(config.jobs.max(1), (config.jobs * 16).max(1024));

    // The jobs run on the `fanout` library's engine: it starts at most `-j`
    // at a time, in input order, and hands each one's outcome over as it
    // completes. Stopping maps onto `cancel()` (no new start); the running
    // jobs' process groups are terminated by fanout itself (`stop_now`),
    // and the grace period is unbounded so that the engine never drops a
    // job that is still reaping its process.
    let inputs = Arc::new(config.inputs.clone());
    let jobs = inputs
        .into_jobs()
        .zip(1u64..)
        .filter(move |(_, seq)| !skip.contains(seq))
        .map(|(inputs, seq)| (seq, inputs));
    let starter = Arc::new(Starter {
        template: config.template.clone(),
        shared: shared.clone(),
        free_slots: Mutex::new((1..=config.jobs).collect()),
        started: Mutex::new(VecDeque::new()),
        backlog: config
            .keep_order
            .then(|| Arc::new(tokio::sync::watch::Sender::new(0))),
        backlog_limit: backlog_limit as u64,
        issued: AtomicU64::new(0),
        no_new_starts: AtomicBool::new(false),
    });
    let mut stream = {
        let starter = starter.clone();
        fanout::fan_out_keyed(jobs)
            .limit(config.jobs)
            .grace(NO_ABORT)
            .panics(PanicPolicy::AsError)
            .stream(Order::Completion, move |task, inputs| {
                starter.clone().start(*task.key(), inputs)
            })
    };
    let (mut failed, mut succeeded) = (0u64, 0u64);
    let mut stop: Option<Stop> = None;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut cancelled = false;

    loop {
        if stop.is_some() && !cancelled {
            starter.no_new_starts.store(true, Ordering::SeqCst);
            stream.cancel();
            cancelled = true;
        }
        let next = tokio::select! {
            next = stream.next() => next,
            _ = sigint.recv() => {
                on_signal(&mut stop, &shared, &mut kill_at, libc::SIGINT);
                continue;
            }
            _ = sigterm.recv() => {
                on_signal(&mut stop, &shared, &mut kill_at, libc::SIGTERM);
                continue;
            }
            () = output::BROKEN_PIPE_NOTIFY.notified() => {
                stop_now(&mut stop, Stop::BrokenPipe, &shared, &mut kill_at);
                continue;
            }
            () = sleep_until(kill_at) => {
                kill_all(&shared, libc::SIGKILL);
                kill_at = None;
                continue;
            }
        };
        // Jobs the engine started, in start order: their place in -k order.
        for seq in starter
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            printer.started(seq);
        }
        let Some((seq, outcome)) = next else {
            break;
        };
        let mut finished = match outcome {
            Ok(Some(finished)) => finished,
            // The run stopped before the job started: nothing ran.
            Ok(None) | Err(TaskError::NotStarted | TaskError::Cancelled) => {
                if let Err(e) = printer.never_started(seq) {
                    report_write_error(&e, &mut stop, &shared, &mut kill_at);
                }
                continue;
            }
            Err(e) => {
                eprintln!("fanout: job {seq}'s task failed: {e}");
                stop_now(&mut stop, Stop::ToolError, &shared, &mut kill_at);
                if let Err(e) = printer.never_started(seq) {
                    report_write_error(&e, &mut stop, &shared, &mut kill_at);
                }
                continue;
            }
        };
        if finished.aborted {
            // Killed because the run is stopping: it did not complete, so it
            // is neither counted nor journaled, and a resume runs it again.
            if let Err(e) = printer.finished(finished) {
                report_write_error(&e, &mut stop, &shared, &mut kill_at);
            }
            continue;
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
        if finished.is_success() {
            succeeded += 1;
        } else {
            failed += 1;
            if finished.timed_out {
                let msg = format!(
                    "fanout: job {} timed out and was killed: {}\n",
                    finished.spec.seq, finished.spec.command
                );
                eprint_above(&bar, &msg);
            }
        }
        if let Some(results) = &mut results {
            if let Err(e) = results.write(&mut finished) {
                eprint_above(&bar, &format!("fanout: {e:#}\n"));
                stop_now(&mut stop, Stop::ToolError, &shared, &mut kill_at);
            }
        }
        if let Some(log) = &mut joblog {
            if let Err(e) = log.append(&record_of(&finished)) {
                eprint_above(&bar, &format!("fanout: cannot write the joblog: {e}\n"));
                stop_now(&mut stop, Stop::ToolError, &shared, &mut kill_at);
            }
        }
        if let Some(halt) = config.halt {
            let counts = match halt.on {
                HaltOn::Fail => !finished.is_success(),
                HaltOn::Success => finished.is_success(),
                HaltOn::Done => true,
            };
            if counts && stop.is_none() && halt.is_reached(failed, succeeded) {
                let code = match halt.on {
                    HaltOn::Fail => finished.exit_code(),
                    HaltOn::Success => 0,
                    // GNU parallel exits with the triggering job's status.
                    HaltOn::Done if finished.is_success() => 0,
                    HaltOn::Done => finished.exit_code(),
                };
                let command = &finished.spec.command;
                let what = if finished.is_success() {
                    "succeeded"
                } else {
                    "failed"
                };
                eprint_above(
                    &bar,
                    &format!("fanout: halting (--halt) because this job {what}:\n{command}\n"),
                );
                match halt.when {
                    HaltWhen::Now => stop_now(&mut stop, Stop::Halt(code), &shared, &mut kill_at),
                    HaltWhen::Soon => stop = Some(Stop::Halt(code)),
                }
            }
        }
        if let Err(e) = printer.finished(finished) {
            report_write_error(&e, &mut stop, &shared, &mut kill_at);
        }
    }
    if let Err(e) = printer.flush_all() {
        report_write_error(&e, &mut stop, &shared, &mut kill_at);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(match stop {
        None => failed.min(101) as i32,
        Some(Stop::Halt(code)) => code,
        Some(Stop::Signal(sig)) => 128 + sig,
        Some(Stop::BrokenPipe) => 0,
        Some(Stop::ToolError) => TOOL_ERROR,
    })
}

/// Raises the soft limit on open files to the hard limit (at most 65536),
/// as spooled output needs descriptors; returns the limit in force.
fn raise_fd_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to / read from a valid rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        let wanted = limit.rlim_max.min(65536);
        if wanted > limit.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = wanted;
            }
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// `--dry-run`: the commands, one per line, nothing run or journaled.
fn dry_run(config: &Config) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    for (i, inputs) in config.inputs.jobs().enumerate() {
        let seq = i as u64 + 1;
        let slot = i % config.jobs + 1;
        let values: Vec<&str> = inputs.iter().map(|v| &**v).collect();
        let line = config.template.render_shell(&values, seq, slot);
        if let Err(e) = writeln!(out, "{line}") {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(0);
            }
            return Err(e).context("cannot write to stdout");
        }
    }
    Ok(0)
}

/// Starts jobs for the engine: renders the command, takes a `{%}` slot and,
/// with `-k`, a place in the bounded backlog of unprinted jobs.
struct Starter {
    template: Template,
    shared: Arc<Shared>,
    /// `{%}` numbers not in use, lowest first.
    free_slots: Mutex<BTreeSet<usize>>,
    /// Seqs of jobs handed to the engine, in order, not yet seen by the run
    /// loop's printer.
    started: Mutex<VecDeque<u64>>,
    /// With -k, waiting output keeps its temp files open; past this many
    /// unprinted jobs a job waits for the earliest to be printed before it
    /// starts, so fanout never runs out of file descriptors.
    backlog: Option<Arc<tokio::sync::watch::Sender<u64>>>,
    /// How many unprinted jobs (with -k).
    backlog_limit: u64,
    /// Jobs handed to the engine so far.
    issued: AtomicU64,
    /// Set when the run stops: a job still waiting for a backlog place does
    /// not start.
    no_new_starts: AtomicBool,
}

impl std::fmt::Debug for Starter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Starter").finish_non_exhaustive()
    }
}

impl Starter {
    /// The job `seq`: `None` if the run stopped before it could start.
    fn start(
        self: Arc<Self>,
        seq: u64,
        inputs: Vec<crate::input::Value>,
    ) -> impl std::future::Future<Output = Result<Option<Finished>, Infallible>> + Send + 'static
    {
        // Called by the engine in input order, when it starts the job.
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(seq);
        let place = self.issued.fetch_add(1, Ordering::SeqCst);
        async move {
            let backlog = match &self.backlog {
                Some(released) => {
                    let ticket = BacklogTicket(released.clone());
                    let limit = self.backlog_limit;
                    let _ = released
                        .subscribe()
                        .wait_for(|&released| place < released + limit)
                        .await;
                    Some(ticket)
                }
                None => None,
            };
            if self.no_new_starts.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let slot = self
                .free_slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_first()
                .unwrap_or(1);
            let values: Vec<&str> = inputs.iter().map(|v| &**v).collect();
            let command = self.template.render_shell(&values, seq, slot);
            let argv = (!self.template.needs_shell())
                .then(|| self.template.render_argv(&values, seq, slot));
            drop(values);
            let spec = JobSpec {
                seq,
                slot,
                inputs,
                command,
                argv,
            };
            let mut finished = job::run(spec, self.shared.clone()).await;
            self.free_slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(slot);
            finished.backlog = backlog;
            Ok(Some(finished))
        }
    }
}

fn record_of(job: &Finished) -> JobRecord {
    JobRecord {
        seq: job.spec.seq,
        start: job
            .start
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        runtime: job.runtime.as_secs_f64(),
        received: job.received,
        exitval: job.exitval,
        signal: job.signal,
        command: job.spec.command.clone(),
    }
}

fn on_signal(
    stop: &mut Option<Stop>,
    shared: &Shared,
    kill_at: &mut Option<tokio::time::Instant>,
    sig: i32,
) {
    if matches!(stop, Some(Stop::Signal(_))) {
        // A second signal: no more grace.
        kill_all(shared, libc::SIGKILL);
        return;
    }
    eprintln!(
        "fanout: {} received; stopping the running jobs",
        if sig == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        }
    );
    // A signal overrides a softer stop already under way (halt soon).
    *stop = None;
    stop_now(stop, Stop::Signal(sig), shared, kill_at);
}

/// Stops starting jobs and terminates the running ones' process groups.
fn stop_now(
    stop: &mut Option<Stop>,
    why: Stop,
    shared: &Shared,
    kill_at: &mut Option<tokio::time::Instant>,
) {
    if stop.is_none() {
        *stop = Some(why);
    }
    shared.stopping.store(true, Ordering::SeqCst);
    kill_all(shared, libc::SIGTERM);
    kill_at.get_or_insert_with(|| tokio::time::Instant::now() + GRACE);
}

fn kill_all(shared: &Shared, sig: i32) {
    let groups = shared.groups.lock().unwrap_or_else(|p| p.into_inner());
    for &pgid in groups.values() {
        job::signal_group(pgid, sig);
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn report_write_error(
    e: &std::io::Error,
    stop: &mut Option<Stop>,
    shared: &Shared,
    kill_at: &mut Option<tokio::time::Instant>,
) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        output::broken_pipe();
        stop_now(stop, Stop::BrokenPipe, shared, kill_at);
    } else {
        eprintln!("fanout: cannot write output: {e}");
        stop_now(stop, Stop::ToolError, shared, kill_at);
    }
}

fn eprint_above(bar: &Option<ProgressBar>, msg: &str) {
    match bar {
        Some(bar) => bar.suspend(|| eprint!("{msg}")),
        None => eprint!("{msg}"),
    }
}

fn progress_bar(config: &Config, total: u64) -> Option<ProgressBar> {
    if !config.bar && !config.eta {
        return None;
    }
    let template = match (config.bar, config.eta) {
        (true, true) => "{percent:>3}% {wide_bar} {pos}/{len} ETA {eta}",
        (true, false) => "{percent:>3}% {wide_bar} {pos}/{len}",
        _ => "{pos}/{len} done, ETA {eta}",
    };
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}
