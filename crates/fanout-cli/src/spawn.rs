//! Starting a job's process the cheap way, and waiting for it.
//!
//! `std::process::Command` falls back to `fork` as soon as a `pre_exec`
//! hook is set, and fanout needs one (`PR_SET_PDEATHSIG`). `fork` copies
//! fanout's page tables and makes its next writes copy-on-write faults; with
//! thousands of short jobs that was most of fanout's own cost. This module
//! does what glibc's `posix_spawn` does instead: `clone(CLONE_VM |
//! CLONE_VFORK)` onto a small separate stack, and in the child only
//! async-signal-safe system calls: signal dispositions back to what fanout's
//! caller gave fanout, the caller's open-files limit, own process group,
//! parent-death signal, the three standard descriptors, an empty signal
//! mask, `execve`. Everything the child needs, the `/bin/sh` fallback's
//! argument list included, is prepared by the parent: the child allocates
//! nothing. The parent sleeps until the child has called `execve` (or died),
//! so an exec error comes back as an error.
//!
//! Waiting uses a pidfd registered with tokio (`waitpid` once it is
//! readable), falling back to polling on kernels without `pidfd_open`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// [`ChildArgs::nice`] when the job keeps fanout's niceness.
const KEEP_NICENESS: c_int = c_int::MIN;

/// Bytes of stack for the child between `clone` and `execve`.
const STACK_SIZE: usize = 64 * 1024;

/// The environment every job starts from: fanout's own, without the
/// variables fanout sets per job.
#[derive(Debug, Clone)]
pub(crate) struct BaseEnv(pub(crate) Vec<CString>);

/// What a [`Spawner`] thread needs to start a child: everything owned, so
/// that it can cross threads.
#[derive(Debug)]
pub(crate) struct SpawnRequest {
    /// The program.
    pub(crate) path: CString,
    /// Its argv.
    pub(crate) argv: Vec<CString>,
    /// The environment every job shares.
    pub(crate) base_env: Arc<BaseEnv>,
    /// This job's own variables, after the shared ones.
    pub(crate) job_env: Vec<CString>,
    /// Stdin, stdout and stderr; the requester keeps them open until it
    /// has the answer.
    pub(crate) fds: [RawFd; 3],
    /// `--nice`.
    pub(crate) nice: Option<i32>,
}

impl SpawnRequest {
    /// Starts the child on the calling thread, using `stack`.
    pub(crate) fn run(&self, stack: &mut Vec<u8>) -> io::Result<Spawned> {
        let env: Vec<&CStr> = self
            .base_env
            .0
            .iter()
            .chain(self.job_env.iter())
            .map(CString::as_c_str)
            .collect();
        spawn_raw(&self.path, &self.argv, &env, self.fds, self.nice, stack)
    }
}

type Reply = tokio::sync::oneshot::Sender<io::Result<Spawned>>;

/// Threads that start children, so that on several CPUs one thread's wait
/// for a child's `execve` (the `vfork` suspension) overlaps another's: a
/// single spawning thread leaves CPUs idle while it is suspended. The
/// threads live as long as fanout (a child dies with the thread that made
/// it).
#[derive(Debug)]
pub(crate) struct Spawner {
    requests: Mutex<std::sync::mpsc::Sender<(SpawnRequest, Reply)>>,
}

impl Spawner {
    /// `threads` spawning threads.
    ///
    /// # Errors
    /// A thread cannot be created.
    pub(crate) fn new(threads: usize) -> io::Result<Spawner> {
        let (tx, rx) = std::sync::mpsc::channel::<(SpawnRequest, Reply)>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("fanout-spawn-{i}"))
                .spawn(move || {
                    let mut stack = Vec::new();
                    loop {
                        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((request, reply)) = next else { return };
                        let spawned = request.run(&mut stack);
                        let _ = reply.send(spawned);
                    }
                })?;
        }
        Ok(Spawner {
            requests: Mutex::new(tx),
        })
    }

    /// Starts a child on one of the threads.
    ///
    /// # Errors
    /// As [`spawn_raw`]; also when the threads are gone.
    pub(crate) async fn spawn(&self, request: SpawnRequest) -> io::Result<Spawned> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((request, reply))
            .map_err(|_| io::Error::other("the spawning threads are gone"))?;
        answer
            .await
            .map_err(|_| io::Error::other("a spawning thread is gone"))?
    }
}

impl BaseEnv {
    /// Captures fanout's environment, leaving out `skip`.
    pub(crate) fn capture(skip: &[&str]) -> BaseEnv {
        BaseEnv(
            std::env::vars_os()
                .filter(|(k, _)| !skip.iter().any(|s| k.as_bytes() == s.as_bytes()))
                .filter_map(|(k, v)| {
                    let mut entry = k.as_bytes().to_vec();
                    entry.push(b'=');
                    entry.extend_from_slice(v.as_bytes());
                    CString::new(entry).ok()
                })
                .collect(),
        )
    }

    /// Sets `name` to `value`, replacing any earlier value.
    pub(crate) fn set(&mut self, name: &str, value: &std::ffi::OsStr) {
        let prefix = format!("{name}=");
        self.0
            .retain(|entry| !entry.as_bytes().starts_with(prefix.as_bytes()));
        let mut entry = prefix.into_bytes();
        entry.extend_from_slice(value.as_bytes());
        if let Ok(entry) = CString::new(entry) {
            self.0.push(entry);
        }
    }
}

/// Finds `program` the way `execvp` does: as given when it holds a `/`,
/// else the first executable regular file of that name in `$PATH`.
///
/// # Errors
/// `NotFound` when there is none.
pub(crate) fn resolve(program: &str) -> io::Result<CString> {
    let not_found = || io::Error::from(io::ErrorKind::NotFound);
    if program.is_empty() {
        return Err(not_found());
    }
    if program.contains('/') {
        return CString::new(program).map_err(|_| not_found());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut denied = false;
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() {
            ".".into()
        } else {
            dir
        };
        let candidate = dir.join(program);
        let Ok(c) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        let is_file = std::fs::metadata(&candidate).is_ok_and(|m| m.is_file());
        if !is_file {
            continue;
        }
        // SAFETY: access(2) reads a valid NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            return Ok(c);
        }
        denied = true;
    }
    Err(if denied {
        io::Error::from(io::ErrorKind::PermissionDenied)
    } else {
        not_found()
    })
}

/// What the child needs, prepared by the parent (the child must not
/// allocate).
#[repr(C)]
struct ChildArgs {
    path: *const c_char,
    /// `[_, argv[0], argv[1], …, null]`: the program's argv starts at index
    /// 1; for the `/bin/sh` fallback the child writes `/bin/sh` and `path`
    /// into indices 0 and 1 and passes the whole array.
    argv: *mut *const c_char,
    envp: *const *const c_char,
    fds: [c_int; 3],
    parent: libc::pid_t,
    /// The dispositions to set (see [`SignalPlan`]).
    signals: *const SignalPlan,
    /// The open-files limit to restore, if fanout raised it.
    nofile: *const libc::rlimit,
    /// `--nice`: the niceness to set, or [`KEEP_NICENESS`].
    nice: c_int,
    /// Set by the child when `execve` failed (errno).
    error: c_int,
}

/// A started process, reaped when waited for, killed and reaped (if it has
/// exited by then) when dropped unwaited.
#[derive(Debug)]
pub(crate) struct Process {
    pid: libc::pid_t,
    pidfd: Option<AsyncFd<OwnedFd>>,
    reaped: bool,
}

impl Process {
    /// The process id, which is also its process group id.
    pub(crate) fn id(&self) -> i32 {
        self.pid
    }

    /// Waits until the process exits and reaps it.
    ///
    /// Cancel-safe: the process is only reaped in the same poll that
    /// returns its status.
    ///
    /// # Errors
    /// `waitpid` fails.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = reap(self.pid, &mut self.reaped)? {
                return Ok(status);
            }
            match &self.pidfd {
                Some(fd) => {
                    let mut ready = fd.readable().await?;
                    if let Some(status) = reap(self.pid, &mut self.reaped)? {
                        return Ok(status);
                    }
                    ready.clear_ready();
                }
                None => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }
}

/// [`try_reap`], noting in `reaped` when `pid` is no longer ours to signal:
/// reaped by us, or (ECHILD) by someone else, in which case the pid may
/// already belong to another process.
fn reap(pid: libc::pid_t, reaped: &mut bool) -> io::Result<Option<ExitStatus>> {
    let status = try_reap(pid);
    *reaped |= matches!(&status, Ok(Some(_)))
        || matches!(&status, Err(e) if e.raw_os_error() == Some(libc::ECHILD));
    status
}

/// `waitpid(pid, WNOHANG)`: the status if the process has exited (it is
/// reaped then).
fn try_reap(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    let mut status: c_int = 0;
    loop {
        // SAFETY: waitpid writes the status to a valid int.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.reaped {
            // Like tokio's kill_on_drop: the job's own process goes with it,
            // and is reaped at once (a blocking wait: SIGKILL cannot be
            // caught, so it is short), leaving no zombie behind.
            // SAFETY: kill(2) and waitpid(2) have no memory-safety
            // preconditions beyond a valid status pointer; the pid is ours
            // and not reaped, so it names our child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                let mut status = 0;
                while libc::waitpid(self.pid, &mut status, 0) < 0
                    && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                {
                }
            }
            self.reaped = true;
        }
    }
}

/// Starts `path` with `argv` and `env`, stdin, stdout and stderr on the
/// given descriptors, in a new process group, with `PR_SET_PDEATHSIG` =
/// SIGKILL, the signal dispositions and open-files limit fanout's caller
/// gave fanout, the niceness `nice` (if given, as `setpriority` sets it),
/// and an empty signal mask. A file without `#!` that the
/// kernel refuses (ENOEXEC) runs with `/bin/sh FILE ARGS…`, as `execvp`
/// does. `stack` is reused between calls.
///
/// The calling thread is suspended while the child uses `stack` (until its
/// `execve`); the child gets SIGKILL when the calling *thread* exits
/// (`PR_SET_PDEATHSIG`), so call it from threads that live as long as
/// fanout: the runtime's, or a [`Spawner`]'s.
///
/// # Errors
/// `clone` fails, or the child's `execve` fails (its errno).
pub(crate) fn spawn_raw(
    path: &CStr,
    argv: &[CString],
    env: &[&CStr],
    fds: [RawFd; 3],
    nice: Option<i32>,
    stack: &mut Vec<u8>,
) -> io::Result<Spawned> {
    let signals = SignalPlan::current();
    let nofile = caller_nofile();
    // Slot 0 is the fallback's `/bin/sh`; the program's argv starts at 1.
    let mut argv_ptrs: Vec<*const c_char> = Vec::with_capacity(argv.len() + 2);
    argv_ptrs.push(std::ptr::null());
    argv_ptrs.extend(argv.iter().map(|a| a.as_ptr()));
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const c_char> = Vec::with_capacity(env.len() + 1);
    envp_ptrs.extend(env.iter().map(|e| e.as_ptr()));
    envp_ptrs.push(std::ptr::null());
    let mut args = ChildArgs {
        path: path.as_ptr(),
        argv: argv_ptrs.as_mut_ptr(),
        envp: envp_ptrs.as_ptr(),
        fds,
        parent: std::process::id() as libc::pid_t,
        signals: &*signals,
        nofile: nofile.map_or(std::ptr::null(), |l| l as *const libc::rlimit),
        nice: nice.unwrap_or(KEEP_NICENESS),
        error: 0,
    };
    if stack.len() < STACK_SIZE {
        stack.resize(STACK_SIZE, 0);
    }
    // The stack grows down: pass its 16-byte aligned top.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;

    // SAFETY: all signals are blocked around clone so that no handler of
    // fanout's runs in the child, which shares fanout's memory; the child
    // sets the dispositions before unblocking. `args`, the pointer arrays,
    // the signal plan and `stack` outlive the child's use of them:
    // CLONE_VFORK suspends this thread until the child has exec'd or exited.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main,
            top as *mut c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::addr_of_mut!(args).cast::<c_void>(),
        );
        let clone_error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    drop(argv_ptrs);
    // SAFETY: the child wrote `error` (if at all) before it exited, and it
    // has exec'd or exited by now (CLONE_VFORK).
    let error = unsafe { std::ptr::read_volatile(std::ptr::addr_of!(args.error)) };
    if error != 0 {
        // The child has exited (status 127); reap it now.
        let mut status = 0;
        // SAFETY: waitpid on our own child, writing to a valid int.
        unsafe {
            libc::waitpid(pid, &mut status, 0);
        }
        return Err(io::Error::from_raw_os_error(error));
    }
    // SAFETY: pidfd_open takes a pid and flags; a returned fd is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: the syscall just returned this descriptor to us. pidfd_open
    // always sets close-on-exec.
    let pidfd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    Ok(Spawned { pid, pidfd })
}

/// A child started by [`spawn_raw`], not yet watched: its pid (also its
/// process group) and its pidfd.
#[derive(Debug)]
pub(crate) struct Spawned {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
}

impl Spawned {
    /// Watches the child from fanout's runtime (which must be current).
    pub(crate) fn into_process(mut self) -> Process {
        let pid = std::mem::replace(&mut self.pid, 0);
        // SAFETY: the AsyncFd owns the descriptor, so it stays open (and is
        // not reused) for as long as it is registered.
        let pidfd = self.pidfd.take().and_then(|fd| {
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
        });
        Process {
            pid,
            pidfd,
            reaped: false,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Dropped before becoming a Process (the job was abandoned): kill
        // and reap it, as Process does.
        if self.pid > 0 {
            // SAFETY: our own unreaped child; kill and waitpid have no
            // memory preconditions beyond a valid status pointer.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                let mut status = 0;
                libc::waitpid(self.pid, &mut status, 0);
            }
        }
    }
}

/// Room for every signal number: Linux's SIGRTMAX is 64.
const MAX_SIGNALS: usize = 65;

/// The signals fanout's caller left ignored (bit `sig - 1`), recorded
/// before Rust's runtime starts: it ignores SIGPIPE before `main`, so only
/// code that runs earlier can see what the caller gave. Ignored signals are
/// inherited across exec, and a shell's child keeps them (SIGHUP under
/// `nohup`, SIGINT for background jobs): jobs get them back.
static CALLER_IGNORED: AtomicU64 = AtomicU64::new(0);

/// The caller's open-files limit, once fanout has raised its own.
static CALLER_NOFILE: OnceLock<libc::rlimit> = OnceLock::new();

/// Runs before Rust's runtime (an ELF constructor, as the `ctor` crate
/// makes), so that it sees the dispositions fanout's caller gave it.
#[used]
#[link_section = ".init_array"]
static RECORD_CALLER_SIGNALS: extern "C" fn() = record_caller_signals;

extern "C" fn record_caller_signals() {
    let mut ignored = 0u64;
    for sig in all_signals() {
        if disposition(sig) == Some(libc::SIG_IGN) {
            ignored |= 1 << (sig - 1);
        }
    }
    CALLER_IGNORED.store(ignored, Ordering::Relaxed);
}

/// Whether fanout's caller left `sig` ignored.
fn caller_ignored(sig: c_int) -> bool {
    CALLER_IGNORED.load(Ordering::Relaxed) & (1 << (sig - 1)) != 0
}

/// Sets SIGCHLD back to its default action if fanout's caller ignored it:
/// with SIGCHLD ignored the kernel reaps children itself, and no job's exit
/// status could be read. Call first thing in `main`.
pub(crate) fn reset_sigchld() {
    if caller_ignored(libc::SIGCHLD) {
        // SAFETY: setting a standard disposition; no handler code runs.
        unsafe {
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        }
    }
}

/// Every signal but SIGKILL and SIGSTOP, up to and including SIGRTMAX.
fn all_signals() -> impl Iterator<Item = c_int> {
    let max = libc::SIGRTMAX().min(MAX_SIGNALS as c_int - 1);
    (1..=max).filter(|&sig| sig != libc::SIGKILL && sig != libc::SIGSTOP)
}

/// The current handler of `sig` (`SIG_DFL`, `SIG_IGN` or a function),
/// read from the kernel directly: glibc's `sigaction` refuses the two
/// signals it reserves for its threads (32 and 33), whose dispositions a
/// caller may still have set to ignored.
fn disposition(sig: c_int) -> Option<libc::sighandler_t> {
    // SAFETY: rt_sigaction with a null new action only reads the current
    // one into a valid struct of the kernel's layout.
    unsafe { raw_sigaction(sig, None) }
}

/// The kernel's `struct sigaction` (x86_64 and aarch64 have `sa_restorer`).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// `rt_sigaction(sig, new, old)` without glibc's wrapper: sets `sig` to
/// `new` (`SIG_DFL` or `SIG_IGN` only, no flags, empty mask) if given, and
/// returns the previous handler. Async-signal-safe (one system call).
///
/// # Safety
/// `new`, if given, must be `SIG_DFL` or `SIG_IGN`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn raw_sigaction(sig: c_int, new: Option<libc::sighandler_t>) -> Option<libc::sighandler_t> {
    let set = new.map(|handler| KernelSigaction {
        handler,
        flags: 0,
        restorer: 0,
        mask: 0,
    });
    let mut old = KernelSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    let set_ptr = set
        .as_ref()
        .map_or(std::ptr::null(), |s| s as *const KernelSigaction);
    // SAFETY: the caller's contract; both structs have the kernel's layout
    // and the size of its sigset is 8 bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            set_ptr,
            &mut old as *mut KernelSigaction,
            8usize,
        )
    };
    (r == 0).then_some(old.handler)
}

/// Other architectures: glibc's `sigaction` (signals 32 and 33 out of
/// reach).
///
/// # Safety
/// As above.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn raw_sigaction(sig: c_int, new: Option<libc::sighandler_t>) -> Option<libc::sighandler_t> {
    // SAFETY: valid structs; the caller's contract on `new`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        let mut action: libc::sigaction = std::mem::zeroed();
        let set = match new {
            Some(handler) => {
                action.sa_sigaction = handler;
                &action as *const libc::sigaction
            }
            None => std::ptr::null(),
        };
        (libc::sigaction(sig, set, &mut old) == 0).then_some(old.sa_sigaction)
    }
}

/// Raises fanout's soft limit on open files to the hard limit (at most
/// 65536), as spooled output needs descriptors, and remembers the caller's
/// limit, which every job gets back. Returns the limit now in force.
pub(crate) fn raise_open_files_limit() -> usize {
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
            let _ = CALLER_NOFILE.set(limit);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = wanted;
            }
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// The open-files limit a job must get back, if fanout raised its own.
fn caller_nofile() -> Option<&'static libc::rlimit> {
    CALLER_NOFILE.get()
}

/// The dispositions the child sets between `clone` and `execve`: for every
/// signal whose disposition in fanout differs from what the caller gave
/// fanout (a handler of fanout's, SIGPIPE which Rust ignores, a signal the
/// caller ignored and fanout handles), the caller's: `SIG_IGN` if it
/// ignored it, else `SIG_DFL` (always for SIGCHLD). Handlers must go before the child unblocks
/// signals: they are fanout's code, and the child shares fanout's memory.
///
/// Computed in the parent, so that the child makes a handful of calls
/// instead of one per signal; recomputed after [`dispositions_changed`].
#[derive(Debug)]
struct SignalPlan {
    list: [(c_int, libc::sighandler_t); MAX_SIGNALS],
    len: usize,
}

static SIGNAL_PLAN: Mutex<Option<Arc<SignalPlan>>> = Mutex::new(None);

/// Tells the spawner that fanout installed or removed a signal handler:
/// the next job's dispositions are worked out afresh.
pub(crate) fn dispositions_changed() {
    *SIGNAL_PLAN.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

impl SignalPlan {
    fn current() -> Arc<SignalPlan> {
        SIGNAL_PLAN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| Arc::new(SignalPlan::compute()))
            .clone()
    }

    fn compute() -> SignalPlan {
        // SIGCHLD: jobs that wait for their own children need it default.
        let ignored = |sig: c_int| caller_ignored(sig) && sig != libc::SIGCHLD;
        let mut plan = SignalPlan {
            list: [(0, libc::SIG_DFL); MAX_SIGNALS],
            len: 0,
        };
        for sig in all_signals() {
            let want = if ignored(sig) {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            };
            if disposition(sig).is_some_and(|now| now != want) {
                plan.list[plan.len] = (sig, want);
                plan.len += 1;
            }
        }
        plan
    }
}

/// The child, between `clone` and `execve`: only async-signal-safe calls,
/// no allocation, no unwinding.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive while we run; every
    // call below is an async-signal-safe system call wrapper; the pointers
    // in it point into the parent's memory, which outlives the child's use.
    unsafe {
        let args = &mut *arg.cast::<ChildArgs>();
        let signals = &*args.signals;
        for &(sig, handler) in &signals.list[..signals.len] {
            // SIG_DFL or SIG_IGN only (see SignalPlan::compute).
            raw_sigaction(sig, Some(handler));
        }
        if !args.nofile.is_null() {
            libc::setrlimit(libc::RLIMIT_NOFILE, args.nofile);
        }
        if args.nice != KEEP_NICENESS {
            // As GNU parallel's child does; a failure (raising priority
            // without the right) leaves the niceness as it was.
            libc::setpriority(libc::PRIO_PROCESS, 0, args.nice);
        }
        if libc::setpgid(0, 0) != 0 {
            return fail(args);
        }
        // Die with fanout, even when it is SIGKILLed, so no job outlives the
        // run that started it.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return fail(args);
        }
        if libc::getppid() != args.parent {
            libc::_exit(1);
        }
        // Move any descriptor that sits on 0..=2 out of the way first, so
        // that dup2 onto 0, 1, 2 never overwrites one still to be used.
        for fd in &mut args.fds {
            if *fd < 3 {
                let moved = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3);
                if moved < 0 {
                    return fail(args);
                }
                *fd = moved;
            }
        }
        for (target, fd) in args.fds.iter().enumerate() {
            if libc::dup2(*fd, target as c_int) < 0 {
                return fail(args);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(args.path, args.argv.add(1), args.envp);
        if *libc::__errno_location() == libc::ENOEXEC {
            // A script without `#!`: `/bin/sh FILE ARGS…`, as execvp does.
            // The parent left slot 0 free for this.
            *args.argv = c"/bin/sh".as_ptr();
            *args.argv.add(1) = args.path;
            libc::execve(c"/bin/sh".as_ptr(), args.argv, args.envp);
            *libc::__errno_location() = libc::ENOEXEC;
        }
        fail(args)
    }
}

/// Records errno for the parent and exits the child.
unsafe fn fail(args: &mut ChildArgs) -> c_int {
    // SAFETY: errno is thread-local storage of the (shared) thread
    // descriptor; we only read it. _exit never returns.
    unsafe {
        let e = *libc::__errno_location();
        std::ptr::write_volatile(&mut args.error, if e == 0 { libc::ECHILD } else { e });
        libc::_exit(127)
    }
}

/// As PID 1 (a container's init), fanout is the parent of every orphaned
/// process in its PID namespace: a job's grandchild whose parent exited is
/// handed to fanout, and would stay a zombie forever unless fanout reaps it.
/// Reaps every child that has exited and is not one of fanout's own jobs
/// (`is_job`), whose exit status belongs to the job's waiter.
pub(crate) fn reap_orphans(is_job: impl Fn(libc::pid_t) -> bool) {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace())
            .into_iter()
            .flatten();
        let (state, ppid) = (fields.next(), fields.next());
        if state == Some("Z") && ppid == Some(me.as_str()) && !is_job(pid) {
            let mut status = 0;
            // SAFETY: waitpid on a child of ours, writing to a valid int.
            unsafe {
                libc::waitpid(pid, &mut status, libc::WNOHANG);
            }
        }
    }
}
