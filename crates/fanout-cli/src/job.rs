//! One job: spawning its process (in its own process group, tied to
//! fanout's life), waiting with a timeout, retrying, and capturing output.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::input::Value;

/// What every job of a run shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The shell for commands that need one.
    pub(crate) shell: String,
    /// Per-attempt time limit.
    pub(crate) timeout: Option<Duration>,
    /// Attempts per job in all.
    pub(crate) attempts: u32,
    /// Forward lines as they come instead of spooling to files.
    pub(crate) line_buffer: bool,
    /// Prefix output lines with the inputs.
    pub(crate) tag: bool,
    /// The process group of each running job, by seq, so the run can
    /// terminate them all.
    pub(crate) groups: Mutex<HashMap<u64, i32>>,
    /// The journal mark every job's processes carry (see `leftovers`).
    pub(crate) mark: Option<String>,
    /// Set once the run stops (halt or signal): no new attempt starts, and a
    /// job ending now was killed by fanout, not by its own doing.
    pub(crate) stopping: AtomicBool,
}

/// A job ready to start.
#[derive(Debug)]
pub(crate) struct JobSpec {
    /// `{#}`.
    pub(crate) seq: u64,
    /// `{%}`.
    pub(crate) slot: usize,
    /// One value per input source.
    pub(crate) inputs: Vec<Value>,
    /// The shell command line (also what the joblog records).
    pub(crate) command: String,
    /// The argv, when the command needs no shell.
    pub(crate) argv: Option<Vec<String>>,
}

/// How a job ended.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The job as started.
    pub(crate) spec: JobSpec,
    /// When the last attempt started.
    pub(crate) start: SystemTime,
    /// How long the last attempt ran.
    pub(crate) runtime: Duration,
    /// Exit status, or -1 when fanout killed it (timeout, halt, signal).
    pub(crate) exitval: i32,
    /// The signal that ended it, or 0.
    pub(crate) signal: i32,
    /// Whether the timeout killed it.
    pub(crate) timed_out: bool,
    /// Whether fanout killed it because the run was stopping; such a job
    /// did not complete and is not journaled, so a resume runs it again.
    pub(crate) aborted: bool,
    /// The spooled stdout (grouped mode), read from the start.
    pub(crate) stdout: Option<File>,
    /// The spooled stderr (grouped mode).
    pub(crate) stderr: Option<File>,
    /// Bytes of stdout.
    pub(crate) received: u64,
}

impl Finished {
    /// Whether the job succeeded.
    pub(crate) fn is_success(&self) -> bool {
        self.exitval == 0 && self.signal == 0
    }

    /// The exit code this job stands for when it decides fanout's own:
    /// its exit status, or 128 + the signal that killed it.
    pub(crate) fn exit_code(&self) -> i32 {
        if self.exitval > 0 {
            self.exitval
        } else if self.signal > 0 {
            128 + self.signal
        } else {
            1
        }
    }
}

/// Runs a job to its end, retrying failed attempts.
pub(crate) async fn run(spec: JobSpec, shared: Arc<Shared>) -> Finished {
    let mut attempt = 1;
    loop {
        let outcome = run_once(&spec, &shared).await;
        // Only the last attempt's output is kept, as in GNU parallel.
        if outcome.is_success()
            || attempt >= shared.attempts
            || shared.stopping.load(Ordering::SeqCst)
        {
            return Finished {
                spec,
                start: outcome.start,
                runtime: outcome.runtime,
                exitval: outcome.exitval,
                signal: outcome.signal,
                timed_out: outcome.timed_out,
                aborted: outcome.aborted,
                stdout: outcome.stdout,
                stderr: outcome.stderr,
                received: outcome.received,
            };
        }
        attempt += 1;
    }
}

/// One attempt's result.
#[derive(Debug)]
struct Outcome {
    start: SystemTime,
    runtime: Duration,
    exitval: i32,
    signal: i32,
    timed_out: bool,
    aborted: bool,
    stdout: Option<File>,
    stderr: Option<File>,
    received: u64,
}

impl Outcome {
    fn is_success(&self) -> bool {
        self.exitval == 0 && self.signal == 0
    }

    fn failed_to_start(start: SystemTime, exitval: i32, message: String) -> Outcome {
        let stderr = tempfile::tempfile().ok().and_then(|mut f| {
            f.write_all(message.as_bytes()).ok()?;
            f.seek(SeekFrom::Start(0)).ok()?;
            Some(f)
        });
        if stderr.is_none() {
            // Line-buffered mode, or no temp file: say it directly.
            eprint!("{message}");
        }
        Outcome {
            start,
            runtime: Duration::ZERO,
            exitval,
            signal: 0,
            timed_out: false,
            aborted: false,
            stdout: None,
            stderr,
            received: 0,
        }
    }
}

async fn run_once(spec: &JobSpec, shared: &Shared) -> Outcome {
    let start = SystemTime::now();
    let mut cmd = match &spec.argv {
        Some(argv) => {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            cmd
        }
        None => {
            let mut cmd = Command::new(&shared.shell);
            cmd.arg("-c").arg(&spec.command);
            cmd
        }
    };
    cmd.env("PARALLEL_SEQ", spec.seq.to_string())
        .env("PARALLEL_JOBSLOT", spec.slot.to_string())
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(mark) = &shared.mark {
        cmd.env(crate::leftovers::MARK_VAR, mark);
    }
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (prctl, getppid, signal, _exit).
    unsafe {
        cmd.pre_exec(move || {
            // Die with fanout, even when it is SIGKILLed, so no job outlives
            // the run that started it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            // Rust ignores SIGPIPE in fanout itself; an ignored signal stays
            // ignored across exec, which would change how `cmd | head` ends.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            Ok(())
        });
    }
    let spool = if shared.line_buffer {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        None
    } else {
        match (tempfile::tempfile(), tempfile::tempfile()) {
            (Ok(out), Ok(err)) => match (out.try_clone(), err.try_clone()) {
                (Ok(out2), Ok(err2)) => {
                    cmd.stdout(out2).stderr(err2);
                    Some((out, err))
                }
                (Err(e), _) | (_, Err(e)) => {
                    return Outcome::failed_to_start(
                        start,
                        255,
                        format!("fanout: cannot spool output: {e}\n"),
                    );
                }
            },
            (Err(e), _) | (_, Err(e)) => {
                return Outcome::failed_to_start(
                    start,
                    255,
                    format!("fanout: cannot create a temporary file: {e}\n"),
                );
            }
        }
    };
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let program = spec
                .argv
                .as_ref()
                .map_or(shared.shell.as_str(), |a| a[0].as_str());
            let (code, what) = match e.kind() {
                std::io::ErrorKind::NotFound => (127, "command not found".to_owned()),
                std::io::ErrorKind::PermissionDenied => (126, "permission denied".to_owned()),
                _ => (126, e.to_string()),
            };
            return Outcome::failed_to_start(start, code, format!("fanout: {program}: {what}\n"));
        }
    };
    drop(cmd);
    let pid = child.id().map_or(0, |id| id as i32);
    shared
        .groups
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(spec.seq, pid);

    let tag = shared.tag.then(|| tag_of(&spec.inputs));
    let forwarders = shared.line_buffer.then(|| {
        let out = child
            .stdout
            .take()
            .map(|s| tokio::spawn(forward_lines(s, false, tag.clone())));
        let err = child
            .stderr
            .take()
            .map(|s| tokio::spawn(forward_lines(s, true, tag.clone())));
        (out, err)
    });

    let mut timed_out = false;
    let status = match shared.timeout {
        None => child.wait().await,
        Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                timed_out = true;
                terminate_group(pid, &mut child).await
            }
        },
    };
    // Remove the group before any further await: on fanout's single-threaded
    // runtime nothing can signal it in between, so a reused pid is never hit.
    shared
        .groups
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&spec.seq);
    let runtime = started.elapsed();
    let aborted = !timed_out && shared.stopping.load(Ordering::SeqCst);

    let mut received = 0;
    if let Some((out, err)) = forwarders {
        for handle in [out, err].into_iter().flatten() {
            received += handle.await.unwrap_or(0);
        }
    }
    let (stdout, stderr) = match spool {
        Some((mut out, mut err)) => {
            received = out.seek(SeekFrom::End(0)).unwrap_or(0);
            let _ = out.seek(SeekFrom::Start(0));
            let err_len = err.seek(SeekFrom::End(0)).unwrap_or(1);
            let _ = err.seek(SeekFrom::Start(0));
            // Empty spools are closed now: with -k, finished jobs wait with
            // their files open, and most jobs write no stderr.
            ((received > 0).then_some(out), (err_len > 0).then_some(err))
        }
        None => (None, None),
    };
    let (exitval, signal) = match status {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => (code, 0),
                (None, Some(sig)) => (if timed_out || aborted { -1 } else { 0 }, sig),
                (None, None) => (-1, 0),
            }
        }
        Err(_) => (-1, 0),
    };
    Outcome {
        start,
        runtime,
        exitval,
        signal,
        timed_out,
        aborted: aborted && (exitval != 0 || signal != 0),
        stdout,
        stderr,
        received,
    }
}

/// GNU parallel's `--term-seq` shortened: SIGTERM to the whole group, then
/// SIGKILL if it is still there 200 ms later.
async fn terminate_group(
    pid: i32,
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    signal_group(pid, libc::SIGTERM);
    match tokio::time::timeout(Duration::from_millis(200), child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal_group(pid, libc::SIGKILL);
            child.wait().await
        }
    }
}

/// Sends `signal` to the process group `pgid`.
pub(crate) fn signal_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; it
        // has no memory-safety preconditions.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// GNU parallel's tag: the inputs separated by spaces, then a TAB.
pub(crate) fn tag_of(inputs: &[Value]) -> Arc<str> {
    let mut tag = inputs.iter().map(|v| &**v).collect::<Vec<_>>().join(" ");
    tag.push('\t');
    Arc::from(tag)
}

/// `--line-buffer`: copies complete lines to fanout's stdout or stderr as
/// they arrive, each with one write, so lines never mix. Returns the bytes
/// read.
async fn forward_lines(
    stream: impl AsyncRead + Unpin,
    to_stderr: bool,
    tag: Option<Arc<str>>,
) -> u64 {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut total = 0;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n as u64,
        }
        let mut out = Vec::with_capacity(line.len() + tag.as_deref().map_or(0, str::len));
        if let Some(tag) = &tag {
            out.extend_from_slice(tag.as_bytes());
        }
        out.extend_from_slice(&line);
        let result = if to_stderr {
            std::io::stderr().lock().write_all(&out)
        } else {
            std::io::stdout()
                .lock()
                .write_all(&out)
                .and_then(|()| std::io::stdout().lock().flush())
        };
        if let Err(e) = result {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                crate::output::broken_pipe();
            }
        }
    }
}
