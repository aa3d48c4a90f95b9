//! One job: spawning its process (in its own process group, tied to
//! fanout's life), waiting with a timeout, retrying, and capturing output.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::input::Arg;
use crate::limits::Timeout;
use crate::output::{forward_lines, LiveSpools, Spooled};
use crate::pipe::{Block, Stdin};
use crate::spawn::{self, BaseEnv};
use crate::termseq::TermSeq;

/// How job output reaches fanout's own stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capture {
    /// Into spool files, printed when the job ends.
    Spool,
    /// Through pipes, forwarded line by line.
    Lines,
    /// Straight to fanout's stdout and stderr.
    Direct,
    /// Stdout into a file that is kept, whose name is printed (`--files`);
    /// stderr is dropped.
    Files,
}

/// The settings every job of a run shares.
#[derive(Debug, Clone)]
pub(crate) struct JobConfig {
    /// The shell for commands that need one.
    pub(crate) shell: String,
    /// Per-attempt time limit.
    pub(crate) timeout: Option<Arc<Timeout>>,
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
    /// `--term-seq`.
    pub(crate) term_seq: TermSeq,
    /// `--nice`: the jobs' niceness.
    pub(crate) nice: Option<i32>,
    /// `--shell-quote`: print each command quoted this many times instead
    /// of running it.
    pub(crate) shell_quote: u32,
    /// `--cat` (a block is written to `$PARALLEL_TMP` first) or `--fifo`
    /// (written through a named pipe there).
    pub(crate) block_file: Option<BlockFile>,
}

/// How `--cat` and `--fifo` give a job its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockFile {
    /// A regular file, written before the job starts.
    Cat,
    /// A named pipe, written while the job runs.
    Fifo,
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
    pub(crate) base_env: Arc<BaseEnv>,
    /// Threads that start the jobs' processes (none with one job at a
    /// time: the runtime's thread does it).
    pub(crate) spawner: Option<Arc<spawn::Spawner>>,
    /// `/dev/null`, every job's stdin.
    pub(crate) devnull: Arc<File>,
    /// The stack a child uses between `clone` and `execve`.
    pub(crate) stack: Arc<Mutex<Vec<u8>>>,
    /// Programs found in `$PATH`, by name.
    pub(crate) programs: Arc<Mutex<HashMap<String, CString>>>,
    /// Empty spool files of finished jobs, ready for the next ones.
    pub(crate) spools: Arc<Mutex<Vec<File>>>,
    /// At most this many spool files are kept for reuse.
    pub(crate) max_spools: usize,
    /// Jobs killed because free memory fell below half of `--memfree`.
    pub(crate) memory_killed: Mutex<std::collections::HashSet<u64>>,
    /// `-k --line-buffer`: running jobs' spool files, for the printer.
    pub(crate) live: Option<Arc<LiveSpools>>,
}

impl JobEnv {
    /// What every job shares; opens `/dev/null` and captures the
    /// environment.
    ///
    /// # Errors
    /// `/dev/null` cannot be opened.
    pub(crate) fn new(config: JobConfig) -> std::io::Result<JobEnv> {
        let base_env = Arc::new(JobEnv::base_env(&config));
        JobEnv::with_base(config, base_env)
    }

    /// fanout's environment as every job of `config` gets it, without the
    /// per-job variables.
    pub(crate) fn base_env(config: &JobConfig) -> BaseEnv {
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
        base_env
    }

    /// What every job of `config` shares, with an environment captured
    /// before (see [`JobEnv::base_env`]); opens `/dev/null`.
    ///
    /// # Errors
    /// `/dev/null` cannot be opened, or the spawning threads not started.
    pub(crate) fn with_base(config: JobConfig, base_env: Arc<BaseEnv>) -> std::io::Result<JobEnv> {
        let jobs = config.jobs;
        let threads = crate::cpus::Cpus::detect().threads.min(jobs);
        let spawner = if threads > 1 {
            Some(Arc::new(spawn::Spawner::new(threads)?))
        } else {
            None
        };
        Ok(JobEnv {
            config,
            groups: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            base_env,
            spawner,
            devnull: Arc::new(File::open("/dev/null")?),
            stack: Arc::new(Mutex::new(Vec::new())),
            programs: Arc::new(Mutex::new(HashMap::new())),
            spools: Arc::new(Mutex::new(Vec::new())),
            max_spools: 2 * jobs + 16,
            memory_killed: Mutex::new(std::collections::HashSet::new()),
            live: None,
        })
    }

    /// Settings `config` for jobs that share everything else with `like`'s:
    /// the environment, `/dev/null`, the spawning threads, the clone stack,
    /// the programs found and the spool files kept for reuse; with a table
    /// of process groups and a stop flag of their own. For `fanout
    /// worker`, whose jobs each come with their own settings and are
    /// stopped one by one.
    pub(crate) fn sharing(config: JobConfig, like: &JobEnv) -> JobEnv {
        JobEnv {
            config,
            groups: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            base_env: like.base_env.clone(),
            spawner: like.spawner.clone(),
            devnull: like.devnull.clone(),
            stack: like.stack.clone(),
            programs: like.programs.clone(),
            spools: like.spools.clone(),
            max_spools: like.max_spools,
            memory_killed: Mutex::new(std::collections::HashSet::new()),
            live: None,
        }
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
    /// What its standard input is fed from.
    pub(crate) stdin: Stdin,
}

/// How a job ended: the job, and its last attempt.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The job as started.
    pub(crate) spec: JobSpec,
    /// Its last attempt (only the last one's output is kept, as in GNU
    /// parallel).
    pub(crate) last: Attempt,
    /// The `fanout worker` that ran it (`--redis`); `None` for this
    /// machine.
    pub(crate) host: Option<String>,
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
            return Finished {
                spec,
                last,
                host: None,
            };
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
    /// Bytes of standard input it was given (`--pipe`).
    pub(crate) sent: u64,
    /// A `--round-robin` job that got no block.
    pub(crate) virgin: bool,
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
                Capture::Spool => stdout = spool_with(text),
                Capture::Lines => print_now(text, spec.tag.as_deref()),
                Capture::Direct => print_now(text, None),
                Capture::Files => {
                    // GNU parallel prints the name of a file it then removes.
                    let name = format!("{}.par\n", tmp_name(&shared.config.tmpdir).display());
                    stdout = spool_with(&name);
                }
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
            sent: 0,
            virgin: false,
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
            sent: 0,
            virgin: false,
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
    if cfg.shell_quote > 0 && !spec.skip {
        let mut quoted = spec.command.clone();
        for _ in 0..cfg.shell_quote {
            quoted = crate::quote::shell_quote(&quoted);
        }
        quoted.push('\n');
        let exitval = 0;
        return Attempt::without_process(start, exitval, Some(&quoted), spec, shared);
    }
    if cfg.dry_run || spec.skip {
        // GNU parallel runs `true` instead; a skipped job ends with -2.
        let exitval = if spec.skip { -2 } else { 0 };
        return Attempt::without_process(start, exitval, shown.as_deref(), spec, shared);
    }
    let shell_line;
    // GNU parallel runs a --cat command as `cat > $PARALLEL_TMP;COMMAND;
    // CLEANUP`, where the cleanup exits with a status the shell never sets:
    // the job's exit status is 0 unless the command itself exits.
    let cat = cfg.block_file == Some(BlockFile::Cat);
    let words: Vec<&str> = match (&spec.argv, &cfg.parallel_env) {
        (Some(argv), None) if !cat => argv.iter().map(String::as_str).collect(),
        (_, penv) => {
            let command = if cat {
                format!("{};true", spec.command)
            } else {
                spec.command.clone()
            };
            shell_line = match penv {
                Some(env) if cfg.shell.contains("zsh") => {
                    format!("{env}\neval {}", crate::quote::shell_quote(&command))
                }
                Some(env) => format!("{env}\n{command}"),
                None => command,
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
    let parallel_tmp = tmp_name(&cfg.tmpdir);
    let job_env = [
        CString::new(format!("PARALLEL_SEQ={}", spec.seq)),
        CString::new(format!("PARALLEL_JOBSLOT={}", spec.slot)),
        CString::new(format!("{}={}", cfg.slot_var, spec.slot.saturating_sub(1))),
        CString::new(format!("PARALLEL_TMP={}", parallel_tmp.display())),
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
    let mut kept_file: Option<PathBuf> = None;
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
        Capture::Files => {
            let name = PathBuf::from(format!("{}.par", tmp_name(&cfg.tmpdir).display()));
            let out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&name);
            match (out, shared.spool()) {
                (Ok(mut out), Ok(err)) => {
                    if let Some(text) = &shown {
                        let _ = out.write_all(text.as_bytes());
                    }
                    kept_file = Some(name);
                    spool = Some((out, err));
                }
                (Err(e), _) | (_, Err(e)) => {
                    return Attempt::failed_to_start(
                        start,
                        255,
                        format!(
                            "fanout: cannot create a file in {}: {e}\n",
                            cfg.tmpdir.display()
                        ),
                    );
                }
            }
        }
        Capture::Direct => {}
    }
    if !matches!(cfg.capture, Capture::Spool | Capture::Files) {
        if let Some(text) = &shown {
            let tag = if cfg.capture == Capture::Lines {
                spec.tag.as_deref()
            } else {
                None
            };
            print_now(text, tag);
        }
    }
    // Standard input: /dev/null, or a pipe a writer task feeds the
    // job's block into (--cat and --fifo put the block in $PARALLEL_TMP).
    let mut stdin_feed = None;
    let mut fifo_feed = None;
    let mut fifo_writer = None;
    let fifo_done = Arc::new(AtomicBool::new(false));
    // Bytes of a block (or part) not yet handed to the job: if any are
    // left when the job ends, GNU parallel's writer would have died of
    // SIGPIPE, and the job counts as killed by it.
    let unsent = Arc::new(AtomicU64::new(stdin_len(&spec.stdin)));
    match (&spec.stdin, cfg.block_file) {
        (Stdin::Null, _) => {}
        (source @ (Stdin::Block(_) | Stdin::Part(_)), Some(BlockFile::Cat)) => {
            if let Err(e) = write_source_to(source, &parallel_tmp) {
                return Attempt::failed_to_start(
                    start,
                    255,
                    format!("fanout: cannot write {}: {e}\n", parallel_tmp.display()),
                );
            }
            unsent.store(0, Ordering::SeqCst);
        }
        (source @ (Stdin::Block(_) | Stdin::Part(_)), Some(BlockFile::Fifo)) => {
            match make_fifo(&parallel_tmp) {
                Ok(()) => fifo_feed = Some(source.clone()),
                Err(e) => {
                    return Attempt::failed_to_start(
                        start,
                        255,
                        format!(
                            "fanout: cannot make a fifo {}: {e}\n",
                            parallel_tmp.display()
                        ),
                    );
                }
            }
        }
        (source, _) => match pipe() {
            Ok((r, w)) => stdin_feed = Some((r, w, source.clone())),
            Err(e) => {
                return Attempt::failed_to_start(
                    start,
                    255,
                    format!("fanout: cannot create a pipe: {e}\n"),
                );
            }
        },
    }
    let stdin_fd = stdin_feed
        .as_ref()
        .map_or(shared.devnull.as_raw_fd(), |(r, _, _)| r.as_raw_fd());
    let fds = match (&spool, &pipes) {
        (Some((out, err)), _) => [stdin_fd, out.as_raw_fd(), err.as_raw_fd()],
        (None, Some(((_, out_w), (_, err_w)))) => [stdin_fd, out_w.as_raw_fd(), err_w.as_raw_fd()],
        (None, None) => [stdin_fd, 1, 2],
    };
    let started = Instant::now();
    let request = spawn::SpawnRequest {
        path,
        argv: words,
        base_env: shared.base_env.clone(),
        job_env: job_env.into_iter().flatten().chain(mark).collect(),
        fds,
        nice: cfg.nice,
    };
    let spawned = match &shared.spawner {
        Some(spawner) => spawner.spawn(request).await,
        None => {
            let mut stack = shared.stack.lock().unwrap_or_else(|p| p.into_inner());
            request.run(&mut stack)
        }
    };
    let mut child = match spawned {
        Ok(child) => child.into_process(),
        Err(e) => return spawn_error(e),
    };
    let pid = child.id();
    shared
        .groups
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(spec.seq, pid);
    if let (Some(live), Some((out, err)), Capture::Spool) = (&shared.live, &spool, cfg.capture) {
        if let (Ok(out), Ok(err)) = (out.try_clone(), err.try_clone()) {
            live.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(spec.seq, (out, err, spec.tag.clone()));
        }
    }
    let writer = match (stdin_feed, fifo_feed) {
        (Some((read_end, write_end, source)), _) => {
            // The child has its copy of the read end.
            drop(read_end);
            Some(tokio::spawn(feed_stdin(write_end, source, unsent.clone())))
        }
        (None, Some(source)) => {
            let done = fifo_done.clone();
            let path = parallel_tmp.clone();
            let unsent = unsent.clone();
            fifo_writer = Some(tokio::task::spawn_blocking(move || {
                feed_fifo(path, source, done, unsent)
            }));
            None
        }
        (None, None) => None,
    };

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
    let status = match &cfg.timeout {
        None => child.wait().await,
        Some(timeout) => {
            // A percentage timeout changes as jobs succeed.
            let (mut limit, mut changes) = timeout.limit();
            loop {
                let deadline = tokio::time::Instant::from_std(started + limit);
                let changed = async {
                    match changes.as_mut() {
                        Some(c) => c.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                enum Woke {
                    Exited(std::io::Result<std::process::ExitStatus>),
                    Deadline,
                    Changed(bool),
                }
                let woke = tokio::select! {
                    status = child.wait() => Woke::Exited(status),
                    () = tokio::time::sleep_until(deadline) => Woke::Deadline,
                    ok = changed => Woke::Changed(ok),
                };
                match woke {
                    Woke::Exited(status) => break status,
                    Woke::Deadline => {
                        timed_out = true;
                        break terminate_group(pid, &mut child, &cfg.term_seq).await;
                    }
                    Woke::Changed(true) => {
                        limit = *changes.as_ref().expect("changes").borrow();
                    }
                    Woke::Changed(false) => changes = None,
                }
            }
        }
    };
    // Remove the group before any further await: on fanout's single-threaded
    // runtime nothing can signal it in between, so a reused pid is never hit.
    shared
        .groups
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&spec.seq);
    if let Some(live) = &shared.live {
        live.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&spec.seq);
    }
    if let Some(writer) = writer {
        // The job is gone: whatever it did not read is not needed.
        writer.abort();
    }
    if let Some(writer) = fifo_writer {
        fifo_done.store(true, Ordering::SeqCst);
        // A writer blocked in a write gets EPIPE now that the reader is
        // gone; one still waiting for a reader sees `done`.
        let _ = writer.await;
    }
    let runtime = started.elapsed();
    let killed_for_memory = shared
        .memory_killed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&spec.seq);
    let aborted = !timed_out && !killed_for_memory && shared.stopping.load(Ordering::SeqCst);
    // GNU parallel removes $PARALLEL_TMP after the job.
    let _ = std::fs::remove_file(&parallel_tmp);

    let mut received = 0;
    if let Some((out, err)) = forwarders {
        for handle in [out, err].into_iter().flatten() {
            received += handle.await.unwrap_or(0);
        }
    }
    let output = match (spool, kept_file) {
        (Some((out, _)), Some(name)) => {
            // --files: the job's stdout stays in its file; the output is
            // the file's name (stderr is dropped, as GNU parallel does).
            received = out.metadata().map_or(0, |m| m.len());
            Spooled {
                stdout: spool_with(&format!("{}\n", name.display())),
                stderr: None,
            }
        }
        (Some((mut out, mut err)), None) => {
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
        (None, _) => Spooled::default(),
    };
    let (mut exitval, mut signal) = match status {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => (code, 0),
                (None, Some(sig)) => (
                    if timed_out || aborted || killed_for_memory {
                        -1
                    } else {
                        0
                    },
                    sig,
                ),
                (None, None) => (-1, 0),
            }
        }
        Err(_) => (-1, 0),
    };
    let sent = stdin_len(&spec.stdin) - unsent.load(Ordering::SeqCst);
    // A --round-robin job that got no block: GNU parallel counts its exit
    // status but neither prints nor journals it.
    let virgin =
        matches!(&spec.stdin, Stdin::RoundRobin(slot) if !slot.got_block.load(Ordering::SeqCst));
    if sent < stdin_len(&spec.stdin) && !timed_out && !aborted && spec.stdin.dies_unread() {
        (exitval, signal) = (0, libc::SIGPIPE);
    }
    Attempt {
        start,
        runtime,
        exitval,
        signal,
        timed_out,
        aborted: aborted && (exitval != 0 || signal != 0),
        output,
        received,
        sent,
        virgin,
    }
}

/// The bytes a job's standard input carries (0 when fed without end, as
/// with `--round-robin`).
fn stdin_len(stdin: &Stdin) -> u64 {
    match stdin {
        Stdin::Null | Stdin::RoundRobin(_) | Stdin::Tee(_) => 0,
        Stdin::Block(b) => (b.header.len() + b.data.len()) as u64,
        Stdin::Part(p) => p.ranges.iter().map(|(_, len)| len).sum(),
    }
}

/// `--cat`: the block or part, written to `path`.
fn write_source_to(source: &Stdin, path: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::fs::File::create(path)?;
    match source {
        Stdin::Block(b) => {
            out.write_all(&b.header)?;
            out.write_all(&b.data)?;
        }
        Stdin::Part(p) => {
            for &(offset, len) in &p.ranges {
                copy_range(&p.file, offset, len, &mut out, &AtomicU64::new(len))?;
            }
        }
        Stdin::Null | Stdin::RoundRobin(_) | Stdin::Tee(_) => {}
    }
    Ok(())
}

/// Copies `len` bytes of `file` from `offset` to `out`, counting them down
/// in `left`.
fn copy_range(
    file: &File,
    offset: u64,
    len: u64,
    out: &mut dyn std::io::Write,
    left: &AtomicU64,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; (len as usize).min(1 << 20)];
    let mut done = 0;
    while done < len {
        let want = ((len - done) as usize).min(buf.len());
        let n = file.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        done += n as u64;
        left.fetch_sub(n as u64, Ordering::SeqCst);
    }
    Ok(())
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

/// Writes a job's standard input: its block, the blocks of the shared feed
/// (`--round-robin`), or its parts of a file (`--pipepart`, with
/// `splice(2)`, so the bytes do not pass through fanout). Stops quietly
/// when the job closes its end.
async fn feed_stdin(fd: OwnedFd, source: Stdin, unsent: Arc<AtomicU64>) {
    use tokio::io::AsyncWriteExt;
    let Ok(mut tx) = tokio::net::unix::pipe::Sender::from_owned_fd(fd) else {
        return;
    };
    match source {
        Stdin::Null => {}
        Stdin::Block(block) => {
            let _ = write_block(&mut tx, &block, true, &unsent).await;
        }
        Stdin::Tee(slot) => {
            let rx = slot.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(mut rx) = rx {
                while let Some(piece) = rx.recv().await {
                    if tx.write_all(&piece).await.is_err() {
                        break;
                    }
                }
            }
        }
        Stdin::RoundRobin(slot) => {
            let mut first = true;
            let none = AtomicU64::new(u64::MAX);
            while let Some(block) = slot.next().await {
                let written = write_block(&mut tx, &block, first, &none).await;
                slot.done_one();
                if written.is_err() {
                    break;
                }
                first = false;
            }
        }
        Stdin::Part(part) => {
            for (offset, len) in part.ranges {
                let mut offset = offset as libc::loff_t;
                let mut left = len as usize;
                while left > 0 {
                    if tx.writable().await.is_err() {
                        return;
                    }
                    let spliced = tx.try_io(|| {
                        // SAFETY: splice(2) between two descriptors we own,
                        // with a valid offset pointer.
                        let n = unsafe {
                            libc::splice(
                                part.file.as_raw_fd(),
                                &mut offset,
                                tx.as_raw_fd(),
                                std::ptr::null_mut(),
                                left.min(1 << 20),
                                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
                            )
                        };
                        if n < 0 {
                            Err(std::io::Error::last_os_error())
                        } else {
                            Ok(n as usize)
                        }
                    });
                    match spliced {
                        Ok(0) => return,
                        Ok(n) => {
                            left -= n;
                            unsent.fetch_sub(n as u64, Ordering::SeqCst);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
            }
        }
    }
    let _ = tx.shutdown().await;
}

async fn write_block(
    tx: &mut tokio::net::unix::pipe::Sender,
    block: &Block,
    with_header: bool,
    unsent: &AtomicU64,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let parts: [&[u8]; 2] = [if with_header { &block.header } else { &[] }, &block.data];
    for mut part in parts {
        while !part.is_empty() {
            let n = tx.write(part).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            part = &part[n..];
            unsent.fetch_sub(n as u64, Ordering::SeqCst);
        }
    }
    Ok(())
}

/// Makes the named pipe `path`.
fn make_fifo(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: mkfifo with a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `--fifo`: writes the block into the named pipe once the job opens it
/// for reading (opening for writing cannot succeed before that); gives up
/// when `done` is set (the job ended without opening it). Closing it then
/// gives the job end-of-file.
fn feed_fifo(path: PathBuf, source: Stdin, done: Arc<AtomicBool>, unsent: Arc<AtomicU64>) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut wait = Duration::from_micros(200);
    let mut file = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(file) => break file,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                // No reader yet.
                if done.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(20));
            }
            Err(_) => return,
        }
    };
    // Blocking writes from here: the job reads at its pace; if it goes
    // away, the write fails (EPIPE) and the block is dropped.
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    match source {
        Stdin::Block(block) => {
            for part in [&block.header[..], &block.data[..]] {
                if file.write_all(part).is_err() {
                    return;
                }
                unsent.fetch_sub(part.len() as u64, Ordering::SeqCst);
            }
        }
        Stdin::Part(part) => {
            for &(offset, len) in &part.ranges {
                if copy_range(&part.file, offset, len, &mut file, &unsent).is_err() {
                    return;
                }
            }
        }
        Stdin::Null | Stdin::RoundRobin(_) | Stdin::Tee(_) => {}
    }
}

/// An unlinked temporary file holding `text`, read from the start.
fn spool_with(text: &str) -> Option<File> {
    let mut f = tempfile::tempfile().ok()?;
    f.write_all(text.as_bytes()).ok()?;
    f.seek(SeekFrom::Start(0)).ok()?;
    Some(f)
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

/// Stops a job's process group as `--term-seq` says: each signal, then a
/// wait of at most its time for the job to end; the sequence goes on while
/// any process of the group is left.
async fn terminate_group(
    pid: i32,
    child: &mut spawn::Process,
    seq: &TermSeq,
) -> std::io::Result<std::process::ExitStatus> {
    let mut status = None;
    for &(signal, wait) in &seq.0 {
        signal_group(pid, signal);
        if status.is_none() {
            if let Ok(s) = tokio::time::timeout(wait, child.wait()).await {
                status = Some(s);
            }
        } else {
            tokio::time::sleep(wait).await;
        }
        if status.is_some() && !group_exists(pid) {
            break;
        }
    }
    match status {
        Some(status) => status,
        None => {
            // The sequence ended without a KILL that took: make sure.
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
