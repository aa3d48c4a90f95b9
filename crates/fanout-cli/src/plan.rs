//! The plan: everything a run needs, prepared and checked, with nothing
//! running yet. Preparing opens (or resumes) the journal and the results
//! file, sweeps what a killed earlier run left behind, installs the signal
//! handlers and builds the job starter; anything that fails here fails
//! before the first job starts.

use std::sync::Arc;

use anyhow::Context;
use fanout::journal::Fingerprinter;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::flags::{Halt, HiArgs, Resume};
use crate::input::Value;
use crate::job::JobEnv;
use crate::joblog::{Joblog, Skip};
use crate::leftovers;
use crate::output::Printer;
use crate::results::Results;
use crate::spawn;
use crate::starter::Starter;

/// The jobs to run, in input order: each one's `{#}` and inputs.
pub(crate) type Jobs = Box<dyn Iterator<Item = (u64, Vec<Value>)> + Send>;

/// A run, ready to go.
pub(crate) struct Plan {
    /// The jobs, those a resumed journal records already left out.
    pub(crate) jobs: Jobs,
    /// How many jobs run at once.
    pub(crate) limit: usize,
    /// How many jobs the whole input makes (for `--halt ...%`).
    pub(crate) total_jobs: u64,
    /// When to stop early.
    pub(crate) halt: Option<Halt>,
    /// Whether lines are tagged with their job's inputs.
    pub(crate) tag: bool,
    /// The journal.
    pub(crate) joblog: Option<Joblog>,
    /// The `--results` file.
    pub(crate) results: Option<Results>,
    /// Prints job output in the order the flags ask for.
    pub(crate) printer: Printer,
    /// The progress bar.
    pub(crate) bar: Option<ProgressBar>,
    /// What every job shares.
    pub(crate) env: Arc<JobEnv>,
    /// Starts jobs for the engine.
    pub(crate) starter: Arc<Starter>,
    /// SIGINT and SIGTERM.
    pub(crate) signals: Signals,
}

/// The signals the run listens to.
pub(crate) struct Signals {
    /// Ctrl-C.
    pub(crate) interrupt: Signal,
    /// `kill`.
    pub(crate) terminate: Signal,
    /// A child exited: only as PID 1 (a container's init), where orphaned
    /// grandchildren of jobs are fanout's to reap.
    pub(crate) child: Option<Signal>,
}

impl Plan {
    /// Prepares the run `args` describe.
    ///
    /// # Errors
    /// The journal or results file cannot be opened, the journal belongs to
    /// another run, or the signal handlers cannot be installed; no job has
    /// started then.
    pub(crate) fn prepare(args: HiArgs) -> anyhow::Result<Plan> {
        // The results file first: failing on it must not cost an old joblog.
        let results = match &args.results {
            Some(path) => Some(Results::open(path, args.resume != Resume::Off)?),
            None => None,
        };
        let (joblog, skip) = open_joblog(&args)?;
        let mark = args
            .joblog
            .as_deref()
            .zip(joblog.as_ref())
            .map(|(path, log)| leftovers::mark(path, log.run_id()));
        let signals = Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            child: if std::process::id() == 1 {
                Some(signal(SignalKind::child()).context("cannot handle SIGCHLD")?)
            } else {
                None
            },
        };
        spawn::dispositions_changed();
        let total_jobs = args.inputs.job_count();
        let bar = progress_bar(&args, total_jobs.saturating_sub(skip.len() as u64));
        let env = Arc::new(
            JobEnv::new(
                std::env::var("PARALLEL_SHELL").unwrap_or_else(|_| "/bin/sh".to_owned()),
                args.timeout,
                args.attempts,
                args.line_buffer,
                args.tag,
                mark,
                args.jobs,
            )
            .context("cannot open /dev/null")?,
        );
        let starter = Arc::new(Starter::new(&args, env.clone()));
        let inputs = Arc::new(args.inputs);
        let jobs: Jobs = Box::new(
            inputs
                .into_jobs()
                .zip(1u64..)
                .filter(move |(_, seq)| !skip.contains(seq))
                .map(|(inputs, seq)| (seq, inputs)),
        );
        Ok(Plan {
            jobs,
            limit: args.jobs,
            total_jobs,
            halt: args.halt,
            tag: args.tag,
            joblog,
            results,
            printer: Printer::new(args.keep_order, bar.clone()),
            bar,
            env,
            starter,
            signals,
        })
    }
}

/// The journal, new or resumed, and the jobs it says to skip. Processes an
/// earlier, killed run of the journal left behind are killed first: a job
/// run again must not overlap with its orphaned earlier self.
fn open_joblog(args: &HiArgs) -> anyhow::Result<(Option<Joblog>, Skip)> {
    let Some(path) = &args.joblog else {
        return Ok((None, Skip::new()));
    };
    let mut fingerprint = Fingerprinter::new();
    for word in &args.command {
        fingerprint.feed(word.as_bytes());
    }
    fingerprint.feed(b"--inputs--");
    args.inputs.visit(|bytes| {
        fingerprint.feed(bytes);
    });
    let fingerprint = fingerprint.finish();
    let summary = format!(
        "command: {}; {} jobs",
        args.command.join(" "),
        args.inputs.job_count()
    );
    let opened = match args.resume {
        Resume::Off => Joblog::create(path, fingerprint, &summary, args.joblog_sync)?,
        mode => Joblog::resume(
            path,
            fingerprint,
            &summary,
            mode == Resume::Failed,
            args.joblog_sync,
        )?,
    };
    if opened.torn {
        eprintln!(
            "fanout: ignored the torn last line of joblog {} (a run was killed while writing it); \
             that job runs again",
            path.display()
        );
    }
    if let Some(unfinished) = opened.unfinished {
        let killed = leftovers::kill_left_by(path, unfinished);
        if killed > 0 {
            eprintln!(
                "fanout: killed {killed} process(es) left running by an earlier, killed run of this joblog"
            );
        }
    }
    Ok((Some(opened.log), opened.skip))
}

fn progress_bar(args: &HiArgs, total: u64) -> Option<ProgressBar> {
    let template = match (args.bar, args.eta) {
        (false, false) => return None,
        (true, true) => "{percent:>3}% {wide_bar} {pos}/{len} ETA {eta}",
        (true, false) => "{percent:>3}% {wide_bar} {pos}/{len}",
        (false, true) => "{pos}/{len} done, ETA {eta}",
    };
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}
