//! The run: the `fanout` library's engine starts at most `-j` jobs at a
//! time, in input order; this loop takes each one as it ends, journals it,
//! prints it, and applies the halt policy and the signals.

use std::convert::Infallible;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fanout::{Order, Outcome, PanicPolicy, TaskError};
use indicatif::ProgressBar;
use tokio::signal::unix::Signal;
use tokio::time::Instant;

use crate::flags::{Halt, HaltWhen, Halting, Tally};
use crate::job::{self, Finished, JobEnv};
use crate::joblog::{JobRecord, Joblog};
use crate::output::{self, Printable, Printer};
use crate::plan::{Plan, Signals};
use crate::remote::client::Remote;
use crate::results::{ResultFiles, Row};
use crate::spawn;
use crate::starter::{self, Ran, Starter};

/// GNU parallel's exit code for an error of the tool itself.
pub(crate) const TOOL_ERROR: i32 = 255;

/// Why the run stopped starting jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndReason {
    /// The halt policy triggered; the exit code it implies.
    Halt(i32),
    /// SIGINT or SIGTERM arrived.
    Signal(i32),
    /// stdout was closed.
    BrokenPipe,
    /// fanout itself failed (journal or results not writable).
    ToolError,
}

/// How a run ended: what fanout's exit code is made of.
#[derive(Debug)]
pub(crate) struct Ending {
    why: Option<EndReason>,
    tally: Tally,
}

impl Ending {
    /// GNU parallel's exit code: the number of failed jobs (at most 101)
    /// when the run went to its end, the halt policy's code, 128 + the
    /// signal, 0 when stdout was closed early, 255 for a tool error.
    pub(crate) fn exit_code(&self) -> i32 {
        match self.why {
            None => self.tally.failed.min(101) as i32,
            Some(EndReason::Halt(code)) => code,
            Some(EndReason::Signal(sig)) => 128 + sig,
            Some(EndReason::BrokenPipe) => 0,
            Some(EndReason::ToolError) => TOOL_ERROR,
        }
    }
}

/// What the loop waits for.
enum Event {
    /// A job ended (or the engine has none left: `None`).
    Job(Option<(u64, Outcome<starter::JobEnd, Infallible>)>),
    /// SIGINT or SIGTERM.
    Signal(i32),
    /// stdout turned out to be a closed pipe.
    BrokenPipe,
    /// The running jobs' grace after SIGTERM is over.
    KillNow,
    /// A child exited (only listened to as PID 1: see `spawn::reap_orphans`).
    ChildExited,
    /// Time to print the oldest job's new lines (`-k --line-buffer`).
    PrintLive,
}

impl Plan {
    /// Runs the planned jobs to the end (or until the halt policy, a signal
    /// or a closed stdout stops the run) and says how it ended.
    pub(crate) async fn run(self) -> Ending {
        let Plan {
            jobs,
            limit,
            total_jobs,
            halt,
            joblog,
            results,
            table,
            printer,
            bar,
            env,
            starter,
            mut signals,
            remote,
        } = self;
        if let (Some(bar), Some(remote)) = (&bar, &remote) {
            tokio::spawn(show_workers(bar.clone(), remote.clone()));
        }
        let stream = engine(jobs, limit, &starter);
        let mut run = Run {
            starter,
            halt,
            total_jobs,
            joblog,
            results,
            table,
            printer,
            bar,
            tally: Tally::default(),
            stopping: Stopping::new(env, remote.clone()),
            unreported: 0,
        };
        run.drive(stream, &mut signals).await;
        if let Some(remote) = &remote {
            remote.finish().await;
        }
        run.finish()
    }
}

/// The jobs as the engine runs them: ends in completion order.
type JobStream = fanout::TaskStream<u64, starter::JobEnd, Infallible>;

/// The library's engine over the jobs. Jobs are never dropped by it
/// (`Duration::MAX` grace): each job reaps its own process, and fanout
/// terminates the process groups itself when the run stops. A finished job
/// holds its slot until the loop has taken it (window 0): the halt policy
/// decides on it before the next job starts, as in GNU parallel.
fn engine(jobs: crate::plan::Jobs, limit: usize, starter: &Arc<Starter>) -> JobStream {
    let starter = starter.clone();
    fanout::fan_out_keyed(jobs)
        .limit(limit)
        .window(0)
        .grace(Duration::MAX)
        .panics(PanicPolicy::AsError)
        .stream(Order::Completion, move |task, made| {
            starter.clone().start(*task.key(), made)
        })
}

impl Run {
    /// The loop: takes each job as it ends, and the signals, a closed
    /// stdout and the `--term-seq` steps as they come, until the engine has
    /// no job left.
    async fn drive(&mut self, mut stream: JobStream, signals: &mut Signals) {
        // -k --line-buffer: the oldest job's spool files are read for new
        // lines this often while it runs, as GNU parallel's loop does.
        let mut live_tick = tokio::time::interval(Duration::from_millis(20));
        live_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let live = self.printer.is_live();
        loop {
            if self.stopping.take_cancel() {
                self.starter.refuse_new();
                stream.cancel();
            }
            let event = tokio::select! {
                next = stream.next() => Event::Job(next),
                _ = signals.interrupt.recv() => Event::Signal(libc::SIGINT),
                _ = signals.terminate.recv() => Event::Signal(libc::SIGTERM),
                () = output::BROKEN_PIPE_NOTIFY.notified() => Event::BrokenPipe,
                () = sleep_until(self.stopping.kill_at) => Event::KillNow,
                Some(()) = next_signal(&mut signals.child) => Event::ChildExited,
                _ = live_tick.tick(), if live => Event::PrintLive,
            };
            for seq in self.starter.take_started() {
                self.printer.started(seq);
            }
            match event {
                Event::Job(Some((seq, outcome))) => self.on_job(seq, outcome),
                Event::Job(None) => return,
                Event::Signal(sig) => self.stopping.signal(sig),
                Event::BrokenPipe => self.stopping.now(EndReason::BrokenPipe),
                Event::KillNow => self.stopping.kill_now(),
                Event::ChildExited => self.stopping.reap_orphans(),
                Event::PrintLive => {
                    if let Err(e) = self.printer.poll_live() {
                        self.stopping.output_failed(&e);
                    }
                }
            }
        }
    }
}

/// `--bar` with `--redis`: how many workers serve the run, every second.
async fn show_workers(bar: ProgressBar, remote: Arc<Remote>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !bar.is_finished() {
        tick.tick().await;
        if let Some(n) = remote.workers().await {
            let s = if n == 1 { "" } else { "s" };
            bar.set_message(format!("{n} worker{s}"));
        }
    }
}

/// The run loop's state.
struct Run {
    starter: Arc<Starter>,
    halt: Option<Halt>,
    total_jobs: u64,
    joblog: Option<Joblog>,
    results: Option<ResultFiles>,
    table: bool,
    printer: Printer,
    bar: Option<ProgressBar>,
    tally: Tally,
    stopping: Stopping,
    /// Jobs that could not run after the first one the run stopped for.
    unreported: u64,
}

impl Run {
    /// Job `seq` ended, or never started.
    fn on_job(&mut self, seq: u64, outcome: Outcome<starter::JobEnd, Infallible>) {
        // After `--halt now` GNU parallel kills the other jobs and exits at
        // once: nothing that ends later is counted, journaled or printed.
        if self.stopping.halted_now {
            return;
        }
        let ran = match outcome {
            Ok(starter::JobEnd::Ran(ran)) => {
                self.starter.give_back(ran.job.spec.slot);
                *ran
            }
            // The run stopped before the job started: nothing ran.
            Ok(starter::JobEnd::NotStarted) | Err(TaskError::NotStarted | TaskError::Cancelled) => {
                return self.never_started(seq);
            }
            Ok(starter::JobEnd::Failed(message)) => {
                // The first such message says why the run stops; the jobs
                // that fail after it (often for the same reason) are
                // counted, and summed up at the end.
                if self.stopping.why == Some(EndReason::ToolError) {
                    self.unreported += 1;
                } else {
                    self.say(&format!("fanout: {message}\n"));
                }
                self.stopping.now(EndReason::ToolError);
                return self.never_started(seq);
            }
            Err(e) => {
                eprintln!("fanout: job {seq}'s task failed: {e}");
                self.stopping.now(EndReason::ToolError);
                return self.never_started(seq);
            }
        };
        // A job killed because the run is stopping did not complete: it is
        // neither counted nor journaled, and a resume runs it again.
        let mut ran = ran;
        if ran.job.last.virgin {
            // A --round-robin job that got no block: counted, not printed
            // or journaled, as in GNU parallel.
            self.tally.add(ran.job.is_success());
            return self.never_started(seq);
        }
        if !ran.job.last.aborted {
            self.complete(&mut ran.job);
        }
        self.print(ran);
    }

    /// A completed job: counted, recorded, and checked against the halt
    /// policy.
    fn complete(&mut self, job: &mut Finished) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        self.tally.add(job.is_success());
        if job.last.exitval == 0 {
            if let Some(timeout) = &self.stopping.env.config.timeout {
                timeout.succeeded(job.last.runtime);
            }
        }
        if job.last.timed_out {
            self.say(&format!(
                "fanout: job {} timed out and was killed: {}\n",
                job.spec.seq, job.spec.command
            ));
        }
        self.record(job);
        let Some(halt) = self.halt else { return };
        if self.stopping.why.is_some() {
            return;
        }
        let decided = halt.decide(
            &self.tally,
            self.total_jobs,
            !job.is_success(),
            job.last.exit_code(),
        );
        if let Some(Halting { when, exit_code }) = decided {
            let what = if job.is_success() {
                "succeeded"
            } else {
                "failed"
            };
            self.say(&format!(
                "fanout: halting (--halt) because this job {what}:\n{}\n",
                job.spec.command
            ));
            match when {
                HaltWhen::Now => {
                    self.stopping.now(EndReason::Halt(exit_code));
                    self.stopping.halted_now = true;
                }
                HaltWhen::Soon => self.stopping.soon(EndReason::Halt(exit_code)),
            }
        }
    }

    /// Writes the job's `--results` files and journal record.
    fn record(&mut self, job: &mut Finished) {
        if let Some(results) = &mut self.results {
            if let Err(e) = results.write(job) {
                self.say(&format!("fanout: {e:#}\n"));
                self.stopping.now(EndReason::ToolError);
            }
        }
        if let Some(log) = &mut self.joblog {
            if let Err(e) = log.append(&record_of(job)) {
                self.say(&format!("fanout: cannot write the joblog: {e}\n"));
                self.stopping.now(EndReason::ToolError);
            }
        }
    }

    /// Hands the job's output to the printer (with `-k`, it may wait).
    fn print(&mut self, ran: Ran) {
        let Ran { job, ticket } = ran;
        let row = self.table.then(|| Row {
            seq: job.spec.seq,
            start: job.last.start_secs(),
            runtime: job.last.runtime.as_secs_f64(),
            sent: job.last.sent,
            received: job.last.received,
            exitval: job.last.exitval,
            signal: job.last.signal,
            command: job.spec.command.clone(),
            values: job
                .spec
                .args
                .iter()
                .map(|a| a.as_deref().unwrap_or("").to_owned())
                .collect(),
        });
        let printable = Printable {
            seq: job.spec.seq,
            tag: job.spec.tag.clone(),
            output: job.last.output,
            ticket,
            row,
        };
        if let Err(e) = self.printer.finished(printable) {
            self.stopping.output_failed(&e);
        }
    }

    fn never_started(&mut self, seq: u64) {
        if let Err(e) = self.printer.never_started(seq) {
            self.stopping.output_failed(&e);
        }
    }

    /// A message on stderr, above the progress bar.
    fn say(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprint!("{msg}")),
            None => eprint!("{msg}"),
        }
    }

    /// Prints what is still held, marks the journal finished, and says how
    /// the run ended.
    fn finish(mut self) -> Ending {
        // After `--halt now`, output still held back by -k is dropped, as
        // GNU parallel exits without printing it.
        if !self.stopping.halted_now {
            if let Err(e) = self.printer.flush_all() {
                self.stopping.output_failed(&e);
            }
        }
        if let Some(log) = self.joblog.take() {
            if let Err(e) = log.finish() {
                self.say(&format!("fanout: {e:#}\n"));
                self.stopping.now(EndReason::ToolError);
            }
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
        if self.unreported > 0 {
            let (n, s) = (self.unreported, if self.unreported == 1 { "" } else { "s" });
            eprintln!("fanout: {n} more job{s} could not run either");
        }
        Ending {
            why: self.stopping.why,
            tally: self.tally,
        }
    }
}

/// Why the run stopped starting jobs, and when the running ones get the
/// next signal of `--term-seq`.
struct Stopping {
    why: Option<EndReason>,
    kill_at: Option<Instant>,
    /// The `--term-seq` steps not taken yet.
    steps: std::collections::VecDeque<(i32, Duration)>,
    env: Arc<JobEnv>,
    /// Whether the engine has been told to start no more jobs.
    cancelled: bool,
    /// `--halt now` triggered: later job ends are ignored.
    halted_now: bool,
    /// `--redis`: the remote run, cancelled when the run stops now.
    remote: Option<Arc<Remote>>,
}

impl Stopping {
    fn new(env: Arc<JobEnv>, remote: Option<Arc<Remote>>) -> Stopping {
        Stopping {
            why: None,
            kill_at: None,
            steps: std::collections::VecDeque::new(),
            env,
            cancelled: false,
            halted_now: false,
            remote,
        }
    }

    /// `true` once, when the engine must be told to start no more jobs.
    fn take_cancel(&mut self) -> bool {
        let take = self.why.is_some() && !self.cancelled;
        self.cancelled |= take;
        take
    }

    /// Starts no new job; running ones finish (`--halt soon`).
    fn soon(&mut self, why: EndReason) {
        self.why.get_or_insert(why);
    }

    /// Starts no new job and terminates the running ones' process groups
    /// with the `--term-seq` signals, one step at a time.
    fn now(&mut self, why: EndReason) {
        self.why.get_or_insert(why);
        if self.env.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(remote) = &self.remote {
            // The workers stop the run's jobs with their own --term-seq.
            remote.cancel();
        }
        self.steps = self.env.config.term_seq.0.iter().copied().collect();
        self.next_step();
    }

    /// Sends the next `--term-seq` signal and schedules the one after; the
    /// last step is followed by SIGKILL, so that nothing survives.
    fn next_step(&mut self) {
        match self.steps.pop_front() {
            Some((signal, wait)) => {
                self.kill_all(signal);
                self.kill_at = Some(Instant::now() + wait);
            }
            None => {
                self.kill_all(libc::SIGKILL);
                self.kill_at = None;
            }
        }
    }

    /// SIGINT or SIGTERM: stop now; a second one kills at once.
    fn signal(&mut self, sig: i32) {
        if matches!(self.why, Some(EndReason::Signal(_))) {
            return self.kill_all(libc::SIGKILL);
        }
        let name = if sig == libc::SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        };
        eprintln!("fanout: {name} received; stopping the running jobs");
        // A signal overrides a softer stop already under way (halt soon).
        self.why = Some(EndReason::Signal(sig));
        self.now(EndReason::Signal(sig));
    }

    /// Writing output failed: a closed stdout stops the run quietly,
    /// anything else is a tool error.
    fn output_failed(&mut self, e: &io::Error) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            output::broken_pipe();
            self.now(EndReason::BrokenPipe);
        } else {
            eprintln!("fanout: cannot write output: {e}");
            self.now(EndReason::ToolError);
        }
    }

    /// A `--term-seq` wait is over: the next signal.
    fn kill_now(&mut self) {
        self.next_step();
    }

    /// Reaps exited children that are not jobs (fanout is PID 1).
    fn reap_orphans(&self) {
        let groups = self.env.groups.lock().unwrap_or_else(|p| p.into_inner());
        spawn::reap_orphans(|pid| groups.values().any(|&job| job == pid));
    }

    fn kill_all(&self, sig: i32) {
        let groups = self.env.groups.lock().unwrap_or_else(|p| p.into_inner());
        for &pgid in groups.values() {
            job::signal_group(pgid, sig);
        }
    }
}

fn record_of(job: &Finished) -> JobRecord {
    JobRecord {
        seq: job.spec.seq,
        start: job.last.start_secs(),
        runtime: job.last.runtime.as_secs_f64(),
        sent: job.last.sent,
        received: job.last.received,
        exitval: job.last.exitval,
        signal: job.last.signal,
        command: job.spec.command.clone(),
        host: job.host.clone(),
    }
}

async fn next_signal(signal: &mut Option<Signal>) -> Option<()> {
    match signal {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
