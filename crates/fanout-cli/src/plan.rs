//! The plan: everything a run needs, prepared and checked, with nothing
//! running yet. Preparing opens (or resumes) the journal and the results
//! file, sweeps what a killed earlier run left behind, installs the signal
//! handlers and builds the job starter; anything that fails here fails
//! before the first job starts.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use fanout::journal::Fingerprinter;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::batch::{Batcher, Batching, JobArgs, LengthCheck, Made};
use crate::flags::{Halt, HiArgs, OutputMode, PipeSetup, ResultsSpec, Resume};
use crate::input::Value;
use crate::job::{Capture, JobConfig, JobEnv};
use crate::joblog::{Joblog, Skip};
use crate::leftovers;
use crate::output::{Destination, LiveSpools, Printer};
use crate::pipe::Feed;
use crate::remote::client::{Connected, Remote};
use crate::results::{ResultFiles, Table};
use crate::spawn;
use crate::starter::{PipeSource, Starter};
use crate::template::Evaluator;

/// The jobs to run, in input order: each one's `{#}` and arguments (or why
/// it could not be made).
pub(crate) type Jobs = Box<dyn Iterator<Item = (u64, Made)> + Send>;

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
    /// The journal.
    pub(crate) joblog: Option<Joblog>,
    /// Per-job `--results` files.
    pub(crate) results: Option<ResultFiles>,
    /// Whether a `--results` table gets a row per job.
    pub(crate) table: bool,
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
    /// `--redis`: the remote run the jobs go to.
    pub(crate) remote: Option<Arc<Remote>>,
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
    pub(crate) async fn prepare(mut args: HiArgs) -> anyhow::Result<Plan> {
        let resuming = args.resume != Resume::Off;
        // The results first: failing on them must not cost an old joblog.
        let mut destination = Destination::Terminal;
        let mut results = None;
        let mut table = false;
        match &args.results {
            Some(ResultsSpec::Table { path, kind }) => {
                let names = args.has_header.then(|| args.header_names.clone());
                destination =
                    Destination::Table(Table::open(path.as_deref(), *kind, resuming, names)?);
                table = true;
            }
            Some(ResultsSpec::Files { name, .. }) => {
                results = Some(ResultFiles::new(name.clone(), args.header_names.clone()));
                destination = Destination::Nowhere;
            }
            None => {}
        }
        // Perl (if needed) starts and compiles every expression before
        // anything else happens.
        let eval = Arc::new(Mutex::new(Evaluator::new(
            args.compiler.exprs.clone(),
            args.trim,
            args.total_jobs,
            args.jobs,
        )?));
        // The Redis server next (`--redis`), before the journal is touched.
        // Nothing runs remotely in a dry run or with --shell-quote.
        let remote = match args.remote.take() {
            Some(remote) if !args.dry_run && args.shell_quote == 0 => {
                Some(Connected::connect(remote).await?)
            }
            _ => None,
        };
        let (joblog, skip) = if args.dry_run {
            // GNU parallel writes no joblog in a dry run.
            (None, Skip::new())
        } else {
            open_joblog(&args)?
        };
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
        let total_jobs = args.total_jobs;
        let bar = progress_bar(&args, total_jobs.saturating_sub(skip.len() as u64));
        let capture = match args.output {
            _ if args.files => Capture::Files,
            OutputMode::Group => Capture::Spool,
            OutputMode::LineBuffer if args.results.is_none() && !args.keep_order => Capture::Lines,
            OutputMode::LineBuffer => Capture::Spool,
            OutputMode::Ungroup if args.results.is_none() => Capture::Direct,
            OutputMode::Ungroup => Capture::Spool,
        };
        let tmpdir = args
            .tmpdir
            .clone()
            .or_else(|| {
                std::env::var_os("TMPDIR")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        let live = (args.keep_order && args.output == OutputMode::LineBuffer)
            .then(|| Arc::new(LiveSpools::default()));
        let mut env = JobEnv::new(JobConfig {
            shell: args.shell.path.clone(),
            timeout: args.timeout.take().map(Arc::new),
            attempts: args.attempts,
            capture,
            mark,
            dry_run: args.dry_run,
            print_commands: args.print_commands,
            verbose_stderr: args.verbose_stderr,
            slot_var: args.slot_var.clone(),
            parallel_env: args.parallel_env.clone(),
            tmpdir,
            tmpdir_option: args.tmpdir.clone(),
            jobs: args.jobs,
            term_seq: args.term_seq.clone(),
            nice: args.nice,
            shell_quote: args.shell_quote,
            block_file: args.block_file,
        })
        .context("cannot open /dev/null")?;
        env.live = live.clone();
        let env = Arc::new(env);
        if let Some(limit) = args.memfree {
            tokio::spawn(kill_youngest_below(limit / 2, env.clone()));
        }
        let (pipe, pipe_jobs) = match args.pipe.take() {
            None => (None, None),
            Some(setup) => {
                let arg = if args.block_file.is_some() {
                    "$PARALLEL_TMP"
                } else {
                    ""
                };
                let job = move |seq: u64| -> (u64, Made) {
                    (
                        seq,
                        Ok(JobArgs {
                            seq,
                            args: vec![Some(Value::from(arg))],
                            widths: vec![1],
                            values: None,
                        }),
                    )
                };
                match setup {
                    PipeSetup::Stream {
                        reading,
                        round_robin: false,
                    } => {
                        let feed = Feed::start(reading)?;
                        let ended = feed.clone();
                        // A job per block; after the input ends, jobs made
                        // while it was being read find no block and do not
                        // run, and no more are made.
                        let jobs: Jobs =
                            Box::new((1..).map(job).take_while(move |_| !ended.is_ended()));
                        (Some(PipeSource::Blocks(feed)), Some(jobs))
                    }
                    PipeSetup::Stream {
                        reading,
                        round_robin: true,
                    } => {
                        let feed = Feed::start(reading)?;
                        tokio::spawn(feed.clone().dispatch(args.jobs));
                        let jobs: Jobs = Box::new((1..=args.jobs as u64).map(job));
                        (Some(PipeSource::RoundRobin(feed)), Some(jobs))
                    }
                    PipeSetup::Parts(parts) => {
                        let jobs: Jobs = Box::new((1..=parts.len() as u64).map(job));
                        (Some(PipeSource::Parts(parts)), Some(jobs))
                    }
                    PipeSetup::Tee { block } => {
                        let slots = crate::pipe::start_tee(args.total_jobs as usize, block);
                        // The jobs and their arguments come from the inputs.
                        (Some(PipeSource::Tee(slots)), None)
                    }
                }
            }
        };
        let remote = match remote {
            Some(connected) => Some(Arc::new(
                connected.start(args.jobs, args.joblog.as_deref()).await?,
            )),
            None => None,
        };
        let starter = Arc::new(Starter::new(
            &args,
            eval.clone(),
            env.clone(),
            pipe,
            remote.clone(),
        ));
        let length = match args.batching {
            Batching::Length { .. } => Some(LengthCheck {
                model: args.length.clone(),
                max_len: args.max_len,
                eval,
            }),
            Batching::Count(_) => None,
        };
        let jobs: Jobs = match pipe_jobs {
            Some(jobs) => jobs,
            None => {
                let records = Arc::new(args.inputs).records();
                let batcher = Batcher::new(
                    Box::new(records),
                    args.batching,
                    args.no_args,
                    length,
                    args.jobs,
                );
                Box::new(
                    batcher
                        .enumerate()
                        .map(|(i, made)| (i as u64 + 1, made))
                        .filter(move |(seq, _)| !skip.contains(seq)),
                )
            }
        };
        Ok(Plan {
            jobs,
            limit: args.jobs,
            total_jobs,
            halt: args.halt,
            joblog,
            results,
            table,
            printer: {
                let mut printer = Printer::new(args.keep_order, bar.clone(), destination);
                if let Some(live) = live {
                    printer.print_live(live);
                }
                printer
            },
            bar,
            env,
            starter,
            signals,
            remote,
        })
    }
}

/// `--memfree`: while free memory is below `limit`, kills the youngest
/// running job (its `--term-seq`), as GNU parallel does; it counts as
/// failed (exit -1).
async fn kill_youngest_below(limit: u64, env: Arc<JobEnv>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        if crate::limits::memfree().is_none_or(|free| free >= limit) {
            continue;
        }
        let youngest = {
            let groups = env.groups.lock().unwrap_or_else(|p| p.into_inner());
            groups
                .iter()
                .max_by_key(|(seq, _)| **seq)
                .map(|(s, g)| (*s, *g))
        };
        let Some((seq, pgid)) = youngest else {
            continue;
        };
        let first = env
            .memory_killed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq);
        if first {
            let steps = env.config.term_seq.0.clone();
            tokio::spawn(async move {
                for (signal, wait) in steps {
                    crate::job::signal_group(pgid, signal);
                    tokio::time::sleep(wait).await;
                }
                crate::job::signal_group(pgid, libc::SIGKILL);
            });
        }
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
    // Options that change which inputs a job number stands for; left out
    // when at their defaults, so older journals still match.
    if args.batching != Batching::Count(1) || args.no_args {
        fingerprint.feed(format!("--batching {:?} {}", args.batching, args.no_args).as_bytes());
    }
    let fingerprint = fingerprint.finish();
    let summary = format!(
        "command: {}; {} jobs",
        args.command.join(" "),
        args.total_jobs
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
    let template = match (args.bar, args.eta || args.progress) {
        (false, false) => return None,
        (true, true) => "{percent:>3}% {wide_bar} {pos}/{len} ETA {eta} {msg}",
        (true, false) => "{percent:>3}% {wide_bar} {pos}/{len} {msg}",
        (false, true) => "{pos}/{len} done, ETA {eta} {msg}",
    };
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}
