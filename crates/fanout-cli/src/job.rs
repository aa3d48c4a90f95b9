//! One job: spawning its process (in its own process group, tied to
//! fanout's life), waiting with a timeout, retrying, and capturing output.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::input::Arg;
use crate::output::{forward_lines, Spooled};
use crate::spawn::{self, BaseEnv};

/// How job output reaches fanout's own stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capture {
    /// Into spool files, printed when the job ends.
    Spool,
    /// Through pipes, forwarded line by line.
    Lines,
    /// Straight to fanout's stdout and stderr.
    Direct,
}

/// The settings every job of a run shares.
#[derive(Debug, Clone)]
pub(crate) struct JobConfig {
    /// The shell for commands that need one.
    pub(crate) shell: String,
    /// Per-attempt time limit.
    pub(crate) timeout: Option<Duration>,
    /// Attempts per job in all.
    pub(crate) attempts: u32,
    /// How output is captured.
    pub(crate) capture: Capture,
    /// The journal mark every job's processes carry (see `leftovers`).
    pub(crate) mark: Option<String>,
    /// Run nothing; each job's output is its command line.
    pub(crate) dry_run: bool,
    /// `-v`: each command line first in the job's output.
    pub(crate) print_commands: bool,
    /// `-t`: each command line on stderr when it starts.
    pub(crate) verbose_stderr: bool,
    /// The variable holding the slot number minus one.
    pub(crate) slot_var: String,
    /// `$PARALLEL_ENV`: shell code run before each command.
    pub(crate) parallel_env: Option<String>,
    /// Where `$PARALLEL_TMP` names point.
    pub(crate) tmpdir: PathBuf,
    /// `--tmpdir`, which jobs see as `$TMPDIR`.
    pub(crate) tmpdir_option: Option<PathBuf>,
    /// How many jobs run at once.
    pub(crate) jobs: usize,
}

/// What every job of a run shares: its settings, the running jobs' process
/// groups, and resources reused from job to job.
#[derive(Debug)]
pub(crate) struct JobEnv {
    /// The settings.
    pub(crate) config: JobConfig,
    /// The process group of each running job, by seq, so the run can
    /// terminate them all.
    pub(crate) groups: Mutex<HashMap<u64, i32>>,
    /// Set once the run stops (halt or signal): no new attempt starts, and a
    /// job ending now was killed by fanout, not by its own doing.
    pub(crate) stopping: AtomicBool,
    /// fanout's environment without the per-job variables, plus the
    /// variables GNU parallel gives every job.
    pub(crate) base_env: BaseEnv,
    /// `/dev/null`, every job's stdin.
    pub(crate) devnull: File,
    /// The stack a child uses between `clone` and `execve`.
    pub(crate) stack: Mutex<Vec<u8>>,
    /// Programs found in `$PATH`, by name.
    pub(crate) programs: Mutex<HashMap<String, CString>>,
    /// Empty spool files of finished jobs, ready for the next ones.
    pub(crate) spools: Mutex<Vec<File>>,
    /// At most this many spool files are kept for reuse.
    pub(crate) max_spools: usize,
}

impl JobEnv {
    /// What every job shares; opens `/dev/null` and captures the
    /// environment.
    ///
    /// # Errors
    /// `/dev/null` cannot be opened.
    pub(crate) fn new(config: JobConfig) -> std::io::Result<JobEnv> {
        let mut base_env = BaseEnv::capture(&[
            "PARALLEL_SEQ",
            "PARALLEL_JOBSLOT",
            "PARALLEL_TMP",
            "PARALLEL_PID",
            "PARALLEL_ENV",
            "PARALLEL_SSHHOST",
            "PARALLEL_SSHLOGIN",
            "SSHPASS",
            config.slot_var.as_str(),
            crate::leftovers::MARK_VAR,
        ]);
        // The variables GNU parallel sets in its own environment, which
        // every job inherits.
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let mut set = |name: &str, value: &OsStr| base_env.set(name, value);
        set("PARALLEL_PID", OsStr::new(&std::process::id().to_string()));
        set("PARALLEL_SSHHOST", OsStr::new(":"));
        set("PARALLEL_SSHLOGIN", OsStr::new(":"));
        set("SSHPASS", OsStr::new(""));
        if var("PARALLEL_REMOTE_TMPDIR").is_none() {
            set("PARALLEL_REMOTE_TMPDIR", OsStr::new("/tmp"));
        }
        if var("PARALLEL_RSYNC_OPTS").is_none() {
            set("PARALLEL_RSYNC_OPTS", OsStr::new("-rlDzR"));
        }
        match (&config.tmpdir_option, var("TMPDIR")) {
            (Some(dir), _) => set("TMPDIR", dir.as_os_str()),
            (None, None) => set("TMPDIR", OsStr::new("/tmp")),
            (None, Some(_)) => {}
        }
        if let Some(pwd) = std::env::var_os("PWD") {
            set("OLDPWD", &pwd);
        }
        if var("HOME").is_none() {
            set("HOME", OsStr::new("/tmp"));
        }
        let jobs = config.jobs;
        Ok(JobEnv {
            config,
            groups: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            base_env,
            devnull: File::open("/dev/null")?,
            stack: Mutex::new(Vec::new()),
            programs: Mutex::new(HashMap::new()),
            spools: Mutex::new(Vec::new()),
            max_spools: 2 * jobs + 16,
        })
    }

    /// The path to execute for `program` (looked up in `$PATH` once).
    fn resolve(&self, program: &str) -> std::io::Result<CString> {
        let mut programs = self.programs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = programs.get(program) {
            return Ok(path.clone());
        }
        // Only found programs are remembered: one that a job creates can
        // still be found by a later job.
        let path = spawn::resolve(program)?;
        programs.insert(program.to_owned(), path.clone());
        Ok(path)
    }

    /// An empty spool file: a recycled one, or a new unlinked temp file.
    fn spool(&self) -> std::io::Result<File> {
        let recycled = self.spools.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match recycled {
            Some(file) => Ok(file),
            None => tempfile::tempfile(),
        }
    }

    /// Keeps an empty spool file, at offset 0 and written to by no
    /// process, for a later job.
    fn recycle(&self, mut file: File) {
        let mut spools = self.spools.lock().unwrap_or_else(|p| p.into_inner());
        // A job may have written and then truncated its output: empty, but
        // not at offset 0.
        if spools.len() < self.max_spools && file.stream_position().is_ok_and(|at| at == 0) {
            spools.push(file);
        }
    }
}

/// A job ready to start.
#[derive(Debug)]
pub(crate) struct JobSpec {
    /// `{#}`.
    pub(crate) seq: u64,
    /// `{%}`.
    pub(crate) slot: usize,
    /// The job's arguments (every record's, flat).
    pub(crate) args: Vec<Arg>,
    /// How many arguments each record has.
    pub(crate) widths: Vec<usize>,
    /// The shell command line (also what the joblog records).
    pub(crate) command: String,
    /// The argv, when the command needs no shell.
    pub(crate) argv: Option<Vec<String>>,
    /// The `--tag`/`--tagstring` prefix of each output line, TAB included.
    pub(crate) tag: Option<Arc<str>>,
    /// The rendered `--results` name, for per-job result files.
    pub(crate) results: Option<String>,
    /// `skip()` or `--filter` said not to run it.
    pub(crate) skip: bool,
}

/// How a job ended: the job, and its last attempt.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The job as started.
    pub(crate) spec: JobSpec,
    /// Its last attempt (only the last one's output is kept, as in GNU
    /// parallel).
    pub(crate) last: Attempt,
}

impl Finished {
    /// Whether the job succeeded.
    pub(crate) fn is_success(&self) -> bool {
        self.last.is_success()
    }
}

/// Runs a job to its end, retrying failed attempts.
pub(crate) async fn run(spec: JobSpec, env: Arc<JobEnv>) -> Finished {
    let mut attempt = 1;
    loop {
        let last = run_once(&spec, &env).await;
        if last.is_success()
            || attempt >= env.config.attempts
            || env.stopping.load(Ordering::SeqCst)
        {
            return Finished { spec, last };
        }
        attempt += 1;
    }
}

/// How one attempt of a job ended.
#[derive(Debug)]
pub(crate) struct Attempt {
    /// When it started.
    pub(crate) start: SystemTime,
    /// How long it ran.
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
    /// Its output (grouped mode; empty with `--line-buffer`).
    pub(crate) output: Spooled,
    /// Bytes of stdout.
    pub(crate) received: u64,
}

impl Attempt {
    /// Whether the attempt succeeded.
    pub(crate) fn is_success(&self) -> bool {
        self.exitval == 0 && self.signal == 0
    }

    /// The exit code this attempt stands for when it decides fanout's own:
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

    /// The start time in seconds since the Unix epoch.
    pub(crate) fn start_secs(&self) -> f64 {
        self.start
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }

    /// A job that runs nothing (`--dry-run`, `skip()`, `--filter`): its
    /// output is `shown` (the command line, for `--dry-run` and `-v`).
    fn without_process(
        start: SystemTime,
        exitval: i32,
        shown: Option<&str>,
        spec: &JobSpec,
        shared: &JobEnv,
    ) -> Attempt {
        let mut stdout = None;
        let mut received = 0;
        if let Some(text) = shown {
            received = text.len() as u64;
            match shared.config.capture {
                Capture::Spool => {
                    stdout = tempfile::tempfile().ok().and_then(|mut f| {
                        f.write_all(text.as_bytes()).ok()?;
                        f.seek(SeekFrom::Start(0)).ok()?;
                        Some(f)
                    });
                }
                Capture::Lines => print_now(text, spec.tag.as_deref()),
                Capture::Direct => print_now(text, None),
            }
        }
        Attempt {
            start,
            runtime: Duration::ZERO,
            exitval,
            signal: 0,
            timed_out: false,
            aborted: false,
            output: Spooled {
                stdout,
                stderr: None,
            },
            received,
        }
    }

    fn failed_to_start(start: SystemTime, exitval: i32, message: String) -> Attempt {
        // The message becomes the job's stderr, as a shell's would.
        let stderr = tempfile::tempfile().ok().and_then(|mut f| {
            f.write_all(message.as_bytes()).ok()?;
            f.seek(SeekFrom::Start(0)).ok()?;
            Some(f)
        });
        if stderr.is_none() {
            // Line-buffered mode, or no temp file: say it directly.
            eprint!("{message}");
        }
        Attempt {
            start,
            runtime: Duration::ZERO,
            exitval,
            signal: 0,
            timed_out: false,
            aborted: false,
            output: Spooled {
                stdout: None,
                stderr,
            },
            received: 0,
        }
    }
}

async fn run_once(spec: &JobSpec, shared: &JobEnv) -> Attempt {
    let start = SystemTime::now();
    let cfg = &shared.config;
    if cfg.verbose_stderr {
        eprintln!("{}", spec.command);
    }
    let shown = (cfg.print_commands || cfg.dry_run).then(|| format!("{}\n", spec.command));
    if cfg.dry_run || spec.skip {
        // GNU parallel runs `true` instead; a skipped job ends with -2.
        let exitval = if spec.skip { -2 } else { 0 };
        return Attempt::without_process(start, exitval, shown.as_deref(), spec, shared);
    }
    let shell_line;
    let words: Vec<&str> = match (&spec.argv, &cfg.parallel_env) {
        (Some(argv), None) => argv.iter().map(String::as_str).collect(),
        (_, penv) => {
            shell_line = match penv {
                Some(env) if cfg.shell.contains("zsh") => {
                    format!("{env}\neval {}", crate::quote::shell_quote(&spec.command))
                }
                Some(env) => format!("{env}\n{}", spec.command),
                None => spec.command.clone(),
            };
            vec![cfg.shell.as_str(), "-c", shell_line.as_str()]
        }
    };
    let program = words[0];
    let spawn_error = |e: std::io::Error| {
        let (code, what) = match e.kind() {
            std::io::ErrorKind::NotFound => (127, "command not found".to_owned()),
            std::io::ErrorKind::PermissionDenied => (126, "permission denied".to_owned()),
            _ => (126, e.to_string()),
        };
        Attempt::failed_to_start(start, code, format!("fanout: {program}: {what}\n"))
    };
    let path = match shared.resolve(program) {
        Ok(path) => path,
        Err(e) => return spawn_error(e),
    };
    let words: Result<Vec<CString>, _> = words.iter().map(|a| CString::new(a.as_bytes())).collect();
    let words = match words {
        Ok(words) => words,
        Err(e) => return spawn_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)),
    };
    let tmp_name = tmp_name(&cfg.tmpdir);
    let job_env = [
        CString::new(format!("PARALLEL_SEQ={}", spec.seq)),
        CString::new(format!("PARALLEL_JOBSLOT={}", spec.slot)),
        CString::new(format!("{}={}", cfg.slot_var, spec.slot.saturating_sub(1))),
        CString::new(format!("PARALLEL_TMP={}", tmp_name.display())),
    ];
    let mark = cfg
        .mark
        .as_ref()
        .and_then(|m| CString::new(format!("{}={m}", crate::leftovers::MARK_VAR)).ok());

    // Grouped output goes to two spool files (recycled ones when possible);
    // --line-buffer output to pipes read as it comes; --ungroup output
    // straight to fanout's own stdout and stderr.
    let mut pipes = None;
    let mut spool = None;
    match cfg.capture {
        Capture::Lines => match (pipe(), pipe()) {
            (Ok(out), Ok(err)) => pipes = Some((out, err)),
            (Err(e), _) | (_, Err(e)) => {
                return Attempt::failed_to_start(
                    start,
                    255,
                    format!("fanout: cannot create a pipe: {e}\n"),
                );
            }
        },
        Capture::Spool => match (shared.spool(), shared.spool()) {
            (Ok(mut out), Ok(err)) => {
                if let Some(text) = &shown {
                    if let Err(e) = out.write_all(text.as_bytes()) {
                        return Attempt::failed_to_start(
                            start,
                            255,
                            format!("fanout: cannot write a temporary file: {e}\n"),
                        );
                    }
                }
                spool = Some((out, err));
            }
            (Err(e), _) | (_, Err(e)) => {
                return Attempt::failed_to_start(
                    start,
                    255,
                    format!("fanout: cannot create a temporary file: {e}\n"),
                );
            }
        },
        Capture::Direct => {}
    }
    if cfg.capture != Capture::Spool {
        if let Some(text) = &shown {
            let tag = if cfg.capture == Capture::Lines {
                spec.tag.as_deref()
            } else {
                None
            };
            print_now(text, tag);
        }
    }
    let fds = match (&spool, &pipes) {
        (Some((out, err)), _) => [shared.devnull.as_raw_fd(), out.as_raw_fd(), err.as_raw_fd()],
        (None, Some(((_, out_w), (_, err_w)))) => [
            shared.devnull.as_raw_fd(),
            out_w.as_raw_fd(),
            err_w.as_raw_fd(),
        ],
        (None, None) => [shared.devnull.as_raw_fd(), 1, 2],
    };
    let started = Instant::now();
    let spawned = {
        let env: Vec<&CStr> = shared
            .base_env
            .0
            .iter()
            .chain(job_env.iter().flatten())
            .chain(mark.iter())
            .map(CString::as_c_str)
            .collect();
        let mut stack = shared.stack.lock().unwrap_or_else(|p| p.into_inner());
        spawn::spawn(&path, &words, &env, fds, &mut stack)
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return spawn_error(e),
    };
    let pid = child.id();
    shared
        .groups
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(spec.seq, pid);

    let tag = spec.tag.clone();
    let forwarders = pipes.map(|((out_r, out_w), (err_r, err_w))| {
        // Our copies of the write ends go, so the readers see EOF when the
        // job's processes are done with them.
        drop((out_w, err_w));
        let forward = |fd: OwnedFd, to_stderr: bool| {
            tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
                .ok()
                .map(|r| tokio::spawn(forward_lines(r, to_stderr, tag.clone())))
        };
        (forward(out_r, false), forward(err_r, true))
    });

    let mut timed_out = false;
    let status = match cfg.timeout {
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
    // GNU parallel removes $PARALLEL_TMP after the job.
    let _ = std::fs::remove_file(&tmp_name);

    let mut received = 0;
    if let Some((out, err)) = forwarders {
        for handle in [out, err].into_iter().flatten() {
            received += handle.await.unwrap_or(0);
        }
    }
    let output = match spool {
        Some((mut out, mut err)) => {
            received = out.metadata().map_or(0, |m| m.len());
            let err_len = err.metadata().map_or(1, |m| m.len());
            // Nothing can write to an empty spool any more once the job's
            // process group is gone: recycle it. Otherwise keep it (read
            // from the start) or, if still empty, close it now: with -k,
            // finished jobs wait with their files open.
            let group_gone = !group_exists(pid);
            let out = if received > 0 {
                let _ = out.seek(SeekFrom::Start(0));
                Some(out)
            } else {
                if group_gone {
                    shared.recycle(out);
                }
                None
            };
            let err = if err_len > 0 {
                let _ = err.seek(SeekFrom::Start(0));
                Some(err)
            } else {
                if group_gone {
                    shared.recycle(err);
                }
                None
            };
            Spooled {
                stdout: out,
                stderr: err,
            }
        }
        None => Spooled::default(),
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
    Attempt {
        start,
        runtime,
        exitval,
        signal,
        timed_out,
        aborted: aborted && (exitval != 0 || signal != 0),
        output,
        received,
    }
}

/// A fresh `$PARALLEL_TMP`: `DIR/parXXXXX`, a name no file has yet (the job
/// may create it; fanout removes it after the job, as GNU parallel does).
fn tmp_name(dir: &Path) -> PathBuf {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut state = std::process::id() as u64
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    loop {
        let mut name = String::from("par");
        for _ in 0..5 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            name.push(CHARS[(state % CHARS.len() as u64) as usize] as char);
        }
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            return path;
        }
    }
}

/// Prints `text` on stdout now, each line prefixed with `tag`.
fn print_now(text: &str, tag: Option<&str>) {
    let mut out = std::io::stdout().lock();
    let mut bytes = Vec::with_capacity(text.len());
    crate::output::tag_lines(
        text.as_bytes(),
        tag.map(str::as_bytes),
        &mut true,
        &mut bytes,
    );
    let _ = out.write_all(&bytes).and_then(|()| out.flush());
}

/// Whether any process is left in the process group `pgid`. Only ESRCH
/// says the group is gone: EPERM means a process is left that fanout may
/// not signal (one that changed its user, say).
fn group_exists(pgid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks; no memory is involved.
    pgid > 0
        && (unsafe { libc::kill(-pgid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH))
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors to a valid array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these descriptors to us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// GNU parallel's `--term-seq` shortened: SIGTERM to the whole group, then
/// SIGKILL if it is still there 200 ms later.
async fn terminate_group(
    pid: i32,
    child: &mut spawn::Process,
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
