//! The coordinating side of `--redis`: one remote run per invocation, fed
//! the jobs the local engine starts. Each started job is sent to the
//! workers and waits for its outcome; its output chunks are written to
//! spool files as they arrive, so the job is printed, journaled and
//! counted exactly as a local job is, and a big output is never held in
//! memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use fanout::{CancellationToken, Order, Outcome, PanicPolicy, TaskError};
use fanout_redis::{Coordinator, Output, RedisBroker};
use tokio::sync::{mpsc, oneshot};

use super::{RemoteEnd, RemoteJob, JOBS, STDERR, STDOUT};
use crate::flags::RemoteArgs;
use crate::job::{Attempt, Finished, JobEnv, JobSpec};
use crate::limits::Timeout;
use crate::output::Spooled;

/// How long a run waits at its start for a worker to announce itself; past
/// that its jobs are undeliverable and the run stops with a tool error.
const WORKER_WAIT: Duration = Duration::from_secs(10);

/// How long the run's records stay on the Redis server after it ends.
const KEEP: Duration = Duration::from_secs(3600);

/// The remote run this invocation's jobs go to.
pub(crate) struct Remote {
    state: Arc<Mutex<State>>,
    coordinator: Coordinator<RedisBroker>,
    /// Cancels the remote run: its running jobs are stopped on the workers.
    cancel: CancellationToken,
    /// Reads the run's outcomes until it ends.
    dispatcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// With `--joblog FILE`: `FILE.redis-run`, the id of the run in
    /// progress, so that a coordinator resuming after a crash cancels the
    /// jobs the dead one left queued.
    id_file: Option<PathBuf>,
    url: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Jobs sent and not yet ended, by their position in the remote run.
#[derive(Default)]
struct State {
    /// Where the next job goes; `None` once the run is closed.
    input: Option<mpsc::UnboundedSender<RemoteJob>>,
    /// The next job's position in the remote run.
    next: u64,
    pending: HashMap<u64, Pending>,
}

/// A job out on the workers.
struct Pending {
    reply: oneshot::Sender<Reply>,
    /// Output received, per attempt and worker: chunks of a delivery that
    /// died or stalled are kept apart, and only the recorded one counts.
    spools: Vec<(u32, String, Spooled)>,
    recorded: Option<(u32, String)>,
    /// Writing a chunk to its spool file failed.
    spool_error: Option<String>,
}

/// A job's outcome, its output and the worker that ran it.
struct Reply {
    outcome: Outcome<RemoteEnd, String>,
    output: Spooled,
    worker: Option<String>,
    spool_error: Option<String>,
}

/// The jobs the local engine started, as a stream for the remote run.
struct Jobs(mpsc::UnboundedReceiver<RemoteJob>);

impl futures_core::Stream for Jobs {
    type Item = RemoteJob;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RemoteJob>> {
        self.0.poll_recv(cx)
    }
}

/// A coordinator connected to the Redis server, before its run starts.
pub(crate) struct Connected {
    coordinator: Coordinator<RedisBroker>,
    shown: String,
}

impl Connected {
    /// Connects to the Redis server (before anything else is touched, so
    /// that an unreachable server costs nothing).
    ///
    /// # Errors
    /// The server cannot be reached, or refuses the connection.
    pub(crate) async fn connect(args: RemoteArgs) -> anyhow::Result<Connected> {
        let broker = super::connect(&args.url).await?;
        let shown = broker.url().to_owned();
        Ok(Connected {
            coordinator: Coordinator::new(broker).with_secret(args.secret),
            shown,
        })
    }

    /// Starts the remote run, which takes at most `limit` jobs at once.
    /// With `joblog` (opened, hence locked, by now), first cancels the run a
    /// killed earlier coordinator of the same joblog left behind.
    ///
    /// # Errors
    /// The server fails, or the run's id cannot be written next to the
    /// joblog.
    pub(crate) async fn start(self, limit: usize, joblog: Option<&Path>) -> anyhow::Result<Remote> {
        let Connected { coordinator, shown } = self;
        let id_file = joblog.map(|p| {
            let mut name = p.as_os_str().to_owned();
            name.push(".redis-run");
            PathBuf::from(name)
        });
        if let Some(file) = &id_file {
            if let Ok(old) = std::fs::read_to_string(file) {
                let old = old.trim();
                if !old.is_empty() {
                    coordinator
                        .cancel_run(old)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            }
        }
        let id = format!("fanout-{:016x}", random_u64());
        if let Some(file) = &id_file {
            std::fs::write(file, format!("{id}\n"))
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
        }
        match coordinator.workers(&JOBS).await {
            Ok(0) => eprintln!(
                "fanout: no fanout worker is serving {shown} yet; waiting up to {} s for one \
                 (start one with: fanout worker --redis URL --secret-file FILE)",
                WORKER_WAIT.as_secs()
            ),
            Ok(_) => {}
            Err(e) => anyhow::bail!("{e}"),
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(State {
            input: Some(tx),
            ..State::default()
        }));
        let cancel = CancellationToken::new();
        let on_output = state.clone();
        let mut stream = coordinator
            .fan_out_stream(Jobs(rx))
            .id(id)
            .limit(limit.max(1))
            .cancel_on(&cancel)
            .panics(PanicPolicy::AsError)
            .worker_wait(WORKER_WAIT)
            .keep(KEEP)
            .on_output(move |output| received(&on_output, output))
            .stream(Order::Completion, &JOBS);
        let dispatch = state.clone();
        let dispatcher = tokio::spawn(async move {
            while let Some((index, outcome)) = stream.next().await {
                deliver(&dispatch, index as u64, outcome);
            }
            // Jobs still waiting now never get an outcome: dropping their
            // senders tells them.
            lock(&dispatch).pending.clear();
        });
        Ok(Remote {
            state,
            coordinator,
            cancel,
            dispatcher: Mutex::new(Some(dispatcher)),
            id_file,
            url: shown,
        })
    }
}

impl Remote {
    /// How many workers are serving jobs now.
    pub(crate) async fn workers(&self) -> Option<usize> {
        self.coordinator.workers(&JOBS).await.ok()
    }

    /// Runs `spec` on a worker and waits for its end. A job the run
    /// stopped before or while it ran on its worker comes back aborted
    /// (not journaled, as locally).
    ///
    /// # Errors
    /// The job could not reach a worker (none serves, the secret is not
    /// theirs, Redis is gone) or its worker failed: the run stops with
    /// this message.
    pub(crate) async fn run(&self, spec: JobSpec, env: &JobEnv) -> Result<Finished, String> {
        let cfg = &env.config;
        let job = RemoteJob {
            seq: spec.seq,
            slot: spec.slot,
            command: spec.command.clone(),
            argv: spec.argv.clone(),
            timeout_ms: cfg.timeout.as_deref().map(|t| match t {
                Timeout::Fixed(d) => d.as_millis().min(u128::from(u64::MAX)) as u64,
                // Refused with --redis when the flags were read.
                Timeout::Percent { .. } => u64::MAX,
            }),
            attempts: cfg.attempts,
            slot_var: cfg.slot_var.clone(),
        };
        let (reply, replied) = oneshot::channel();
        {
            let mut state = lock(&self.state);
            let Some(input) = state.input.clone() else {
                return Err("the run on Redis has ended".into());
            };
            // Under the lock, so that positions follow the order of sends.
            let index = state.next;
            state.next += 1;
            state.pending.insert(
                index,
                Pending {
                    reply,
                    spools: Vec::new(),
                    recorded: None,
                    spool_error: None,
                },
            );
            if input.send(job).is_err() {
                state.pending.remove(&index);
                return Err("the run on Redis has ended".into());
            }
        }
        if cfg.verbose_stderr {
            eprintln!("{}", spec.command);
        }
        let Ok(reply) = replied.await else {
            return Err(format!(
                "lost the run on {} before job {} ended",
                self.url, spec.seq
            ));
        };
        if let Some(e) = reply.spool_error {
            return Err(format!("cannot spool the output of job {}: {e}", spec.seq));
        }
        let stopping = env.stopping.load(Ordering::SeqCst);
        let last = match reply.outcome {
            Ok(end) => {
                let mut output = reply.output;
                if cfg.print_commands {
                    output.stdout = Some(
                        with_command_first(&spec.command, output.stdout).map_err(|e| {
                            format!("cannot spool the output of job {}: {e}", spec.seq)
                        })?,
                    );
                }
                Attempt {
                    start: SystemTime::UNIX_EPOCH + Duration::from_secs_f64(end.start.max(0.0)),
                    runtime: Duration::from_secs_f64(end.runtime.max(0.0)),
                    exitval: end.exitval,
                    signal: end.signal,
                    timed_out: end.timed_out,
                    aborted: (end.aborted || stopping) && !end.timed_out,
                    output,
                    received: end.received,
                    sent: 0,
                    virgin: false,
                }
            }
            Err(TaskError::Cancelled | TaskError::NotStarted) if stopping => Attempt {
                start: SystemTime::now(),
                runtime: Duration::ZERO,
                exitval: -1,
                signal: 0,
                timed_out: false,
                aborted: true,
                output: Spooled::default(),
                received: 0,
                sent: 0,
                virgin: false,
            },
            Err(TaskError::Undeliverable(why)) => {
                return Err(format!("job {} could not run on a worker: {why}", spec.seq))
            }
            Err(e) => return Err(format!("job {} failed on its worker: {e}", spec.seq)),
        };
        Ok(Finished {
            spec,
            last,
            host: reply.worker,
        })
    }

    /// Stops the run now: the workers stop its running jobs and skip its
    /// queued ones.
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
    }

    /// No more jobs: waits (at most 10 s) for the remote run to end on the
    /// server, and forgets its id.
    pub(crate) async fn finish(&self) {
        lock(&self.state).input = None;
        let dispatcher = self
            .dispatcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(dispatcher) = dispatcher {
            let _ = tokio::time::timeout(Duration::from_secs(10), dispatcher).await;
        }
        if let Some(file) = &self.id_file {
            let _ = std::fs::remove_file(file);
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Output from a worker: appended to the spool file of its job, attempt
/// and worker (on the task that reads the run's log: a file write, no
/// waiting).
fn received(state: &Mutex<State>, output: Output) {
    let mut state = lock(state);
    match output {
        Output::Chunk {
            index,
            attempt,
            worker,
            channel,
            bytes,
        } => {
            let Some(pending) = state.pending.get_mut(&index) else {
                return;
            };
            if let Err(e) = append(pending, attempt, worker, channel, &bytes) {
                pending.spool_error.get_or_insert(e.to_string());
            }
        }
        Output::Recorded {
            index,
            attempt,
            worker,
        } => {
            if let Some(pending) = state.pending.get_mut(&index) {
                pending.recorded = Some((attempt, worker));
            }
        }
        _ => {}
    }
}

fn append(
    pending: &mut Pending,
    attempt: u32,
    worker: String,
    channel: u8,
    bytes: &[u8],
) -> std::io::Result<()> {
    let at = match pending
        .spools
        .iter()
        .position(|(a, w, _)| *a == attempt && *w == worker)
    {
        Some(at) => at,
        None => {
            pending.spools.push((attempt, worker, Spooled::default()));
            pending.spools.len() - 1
        }
    };
    let spooled = &mut pending.spools[at].2;
    let file = match channel {
        STDOUT => &mut spooled.stdout,
        STDERR => &mut spooled.stderr,
        _ => return Ok(()),
    };
    if file.is_none() {
        *file = Some(tempfile::tempfile()?);
    }
    file.as_mut().map_or(Ok(()), |f| f.write_all(bytes))
}

/// A job's outcome arrived: its recorded worker's output, read from the
/// start, goes to the job with it.
fn deliver(state: &Mutex<State>, index: u64, outcome: Outcome<RemoteEnd, String>) {
    let Some(pending) = lock(state).pending.remove(&index) else {
        return;
    };
    let Pending {
        reply,
        spools,
        recorded,
        spool_error,
    } = pending;
    let mut output = Spooled::default();
    if let Some((attempt, worker)) = &recorded {
        if let Some((_, _, spooled)) = spools
            .into_iter()
            .find(|(a, w, _)| a == attempt && w == worker)
        {
            output = spooled;
        }
    }
    for file in [&mut output.stdout, &mut output.stderr]
        .into_iter()
        .flatten()
    {
        let _ = file.seek(SeekFrom::Start(0));
    }
    let _ = reply.send(Reply {
        outcome,
        output,
        worker: recorded.map(|(_, w)| w),
        spool_error,
    });
}

/// `-v`: the command line, then the job's stdout.
fn with_command_first(command: &str, stdout: Option<File>) -> std::io::Result<File> {
    let mut file = tempfile::tempfile()?;
    writeln!(file, "{command}")?;
    if let Some(mut out) = stdout {
        std::io::copy(&mut out, &mut file)?;
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Eight random bytes from the kernel, or the time and the process id.
fn random_u64() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let random = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_ok() {
        return u64::from_le_bytes(bytes);
    }
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}
