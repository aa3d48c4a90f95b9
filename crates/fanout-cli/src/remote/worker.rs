//! `fanout worker`: serves the jobs of `fanout --redis` coordinators on this
//! machine until SIGTERM or SIGINT, then lets running jobs finish (up to
//! `--drain`) and hands back the rest to other workers.
//!
//! Each job runs as a local job does (its own process group, tied to the
//! worker's life; `--timeout` and `--retries` as the coordinator gave them;
//! `$PARALLEL_SEQ` and `$PARALLEL_JOBSLOT` as the coordinator numbered it),
//! with its output spooled to files; when it ends its stdout and stderr
//! are sent to the coordinator in chunks of 1 MiB, then its exit status.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fanout::CancellationToken;
use fanout_redis::{RemoteCtx, Worker};
use tokio::signal::unix::{signal, SignalKind};

use super::{RemoteEnd, RemoteJob, CHUNK, JOBS, STDERR, STDOUT};
use crate::job::{self, Capture, JobConfig, JobEnv, JobSpec};
use crate::limits::Timeout;
use crate::pipe::Stdin;
use crate::termseq::TermSeq;

/// `fanout worker`: run the jobs of `fanout --redis` coordinators here.
#[derive(Debug, Parser)]
#[command(
    name = "fanout worker",
    about = "Run the jobs of `fanout --redis URL` coordinators on this machine, until SIGTERM or SIGINT.",
    long_about = "Run the jobs of `fanout --redis URL` coordinators on this machine, until \
                  SIGTERM or SIGINT.\n\nOnly jobs signed with the secret in --secret-file run: \
                  write access to the Redis server alone runs nothing here. Whoever holds the \
                  secret can run any command as this worker's user."
)]
struct WorkerArgs {
    /// The Redis server (redis://[USER:PASSWORD@]HOST:PORT[/DB], or rediss:// for TLS).
    #[arg(long = "redis", value_name = "URL")]
    redis: String,

    /// The file holding the shared secret (at least 16 bytes, readable by
    /// its owner only); coordinators sign jobs with the same one.
    #[arg(long = "secret-file", value_name = "FILE")]
    secret_file: PathBuf,

    /// How many jobs run here at once [default: the number of CPUs].
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<usize>,

    /// This worker's name in the coordinators' joblogs (the Host column)
    /// [default: host name, process id and a random part].
    #[arg(long = "id", value_name = "NAME")]
    id: Option<String>,

    /// Seconds a job stays this worker's without a heartbeat: when the
    /// worker dies or loses Redis, its jobs go to other workers after this.
    #[arg(long = "lease", value_name = "SECS", default_value = "30")]
    lease: f64,

    /// Seconds running jobs get to finish after SIGTERM before they are
    /// handed back to other workers.
    #[arg(long = "drain", value_name = "SECS", default_value = "30")]
    drain: f64,
}

/// Runs `fanout worker ARGS`; returns the exit code.
pub(crate) fn main(argv: Vec<OsString>) -> i32 {
    let args = match WorkerArgs::try_parse_from(
        std::iter::once(OsString::from("fanout worker")).chain(argv),
    ) {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() { 255 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    // One thread: a job's process group is removed from its table before
    // anything else runs, so a cancelled job's signal never reaches a
    // reused pid (as in a local run).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fanout worker: cannot start the runtime: {e}");
            return crate::run::TOOL_ERROR;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("fanout worker: {e:#}");
            crate::run::TOOL_ERROR
        }
    }
}

fn seconds(value: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("bad {name} {value}: give a positive number of seconds"))
}

async fn serve(args: WorkerArgs) -> anyhow::Result<()> {
    let lease = seconds(args.lease, "--lease")?;
    let drain = Duration::try_from_secs_f64(args.drain)
        .ok()
        .with_context(|| format!("bad --drain {}: give a number of seconds", args.drain))?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| crate::cpus::Cpus::detect().threads)
        .max(1);
    let secret = super::read_secret(&args.secret_file)?;
    let broker = super::connect(&args.redis).await?;
    let shown = broker.url().to_owned();
    let shell = crate::shell::Shell::detect()?;
    let config = JobConfig {
        shell: shell.path,
        timeout: None,
        attempts: 1,
        capture: Capture::Spool,
        mark: None,
        dry_run: false,
        print_commands: false,
        verbose_stderr: false,
        slot_var: "PARALLEL_JOBSLOT0".to_owned(),
        parallel_env: None,
        tmpdir: std::env::temp_dir(),
        tmpdir_option: None,
        jobs: 1,
        term_seq: TermSeq::default(),
        nice: None,
        shell_quote: 0,
        block_file: None,
    };
    // What every job shares (spawning threads, program paths, reused spool
    // files); each job gets its own settings and stop flag on top.
    let shared = Arc::new(
        JobEnv::new(JobConfig {
            jobs,
            ..config.clone()
        })
        .context("cannot open /dev/null")?,
    );
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    crate::spawn::dispositions_changed();

    let mut worker = Worker::new(broker)
        .limit(jobs)
        .lease(lease)
        .drain(drain)
        .secret(secret);
    if let Some(id) = &args.id {
        worker = worker.id(id.clone());
    }
    let ready = format!("fanout worker: serving jobs from {shown}, {jobs} at a time");
    let worker = worker
        .on_ready(move || eprintln!("{ready}"))
        .serve(&JOBS, move |ctx, job| {
            run_job(ctx, job, config.clone(), shared.clone())
        });
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!(
            "fanout worker: stopping: no new jobs; running ones get {} s to finish",
            drain.as_secs_f64()
        );
        stop.cancel();
    });
    let report = worker
        .run(shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    eprintln!(
        "fanout worker: stopped: {} jobs completed, {} cancelled by their runs, {} handed back to other workers",
        report.completed, report.discarded, report.handed_back
    );
    Ok(())
}

/// Runs one job; a cancelled run stops it with the `--term-seq` default
/// (TERM, 200 ms, TERM, 100 ms, TERM, 50 ms, KILL, 25 ms).
async fn run_job(
    ctx: RemoteCtx,
    job: RemoteJob,
    mut config: JobConfig,
    shared: Arc<JobEnv>,
) -> Result<RemoteEnd, String> {
    config.timeout = job
        .timeout_ms
        .map(|ms| Arc::new(Timeout::Fixed(Duration::from_millis(ms))));
    config.attempts = job.attempts.max(1);
    config.slot_var = job.slot_var;
    let env = Arc::new(JobEnv::sharing(config, &shared));
    let spec = JobSpec {
        seq: job.seq,
        slot: job.slot,
        args: Vec::new(),
        widths: Vec::new(),
        command: job.command,
        argv: job.argv,
        tag: None,
        results: None,
        skip: false,
        stdin: Stdin::Null,
    };
    let running = job::run(spec, env.clone());
    tokio::pin!(running);
    let finished = tokio::select! {
        finished = &mut running => finished,
        () = ctx.token().cancelled() => {
            env.stopping.store(true, Ordering::SeqCst);
            tokio::select! {
                finished = &mut running => finished,
                () = terminate(&env) => running.await,
            }
        }
    };
    let mut last = finished.last;
    for (channel, file) in [
        (STDOUT, &mut last.output.stdout),
        (STDERR, &mut last.output.stderr),
    ] {
        if let Some(file) = file {
            send(&ctx, channel, file).await?;
        }
    }
    Ok(RemoteEnd {
        start: last.start_secs(),
        runtime: last.runtime.as_secs_f64(),
        exitval: last.exitval,
        signal: last.signal,
        timed_out: last.timed_out,
        aborted: last.aborted,
        received: last.received,
    })
}

/// Signals the job's process group step by step; returns after the KILL.
async fn terminate(env: &JobEnv) {
    let steps = TermSeq::default().0;
    for (signal, wait) in steps {
        let groups: Vec<i32> = env
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .copied()
            .collect();
        for pgid in groups {
            job::signal_group(pgid, signal);
        }
        tokio::time::sleep(wait).await;
    }
}

/// Sends a spool file to the coordinator in chunks (each waits while the
/// run's output backlog on the server is full).
async fn send(ctx: &RemoteCtx, channel: u8, file: &mut std::fs::File) -> Result<(), String> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read the job's output: {e}")),
        };
        ctx.send(channel, &buf[..n])
            .await
            .map_err(|e| format!("cannot send the job's output: {e}"))?;
    }
}
