//! Starting a job's process the cheap way, and waiting for it.
//!
//! `std::process::Command` falls back to `fork` as soon as a `pre_exec`
//! hook is set, and fanout needs one (`PR_SET_PDEATHSIG`). `fork` copies
//! fanout's page tables and makes its next writes copy-on-write faults; with
//! thousands of short jobs that was most of fanout's own cost. This module
//! does what glibc's `posix_spawn` does instead: `clone(CLONE_VM |
//! CLONE_VFORK)` onto a small separate stack, and in the child only
//! async-signal-safe system calls: signal dispositions back to default, own
//! process group, parent-death signal, the three standard descriptors, an
//! empty signal mask, `execve`. The parent sleeps until the child has
//! called `execve` (or died), so an exec error comes back as an error.
//!
//! Waiting uses a pidfd registered with tokio (`waitpid` once it is
//! readable), falling back to polling on kernels without `pidfd_open`.

use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// Bytes of stack for the child between `clone` and `execve`.
const STACK_SIZE: usize = 64 * 1024;

/// Most arguments the ENOEXEC fallback (`/bin/sh FILE ARGS…`) can pass.
const MAX_SH_ARGS: usize = 1024;

/// The environment every job starts from: fanout's own, without the
/// variables fanout sets per job.
#[derive(Debug)]
pub(crate) struct BaseEnv(pub(crate) Vec<CString>);

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
    argv: *const *const c_char,
    envp: *const *const c_char,
    fds: [c_int; 3],
    parent: libc::pid_t,
    /// The signals to set back to their default action (see `handled_signals`).
    handled: *const [c_int; MAX_SIGNALS],
    handled_len: usize,
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
            if let Some(status) = self.try_reap()? {
                return Ok(status);
            }
            match &self.pidfd {
                Some(fd) => {
                    let mut ready = fd.readable().await?;
                    if let Some(status) = try_reap(self.pid)? {
                        self.reaped = true;
                        return Ok(status);
                    }
                    ready.clear_ready();
                }
                None => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }

    fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        let status = try_reap(self.pid)?;
        self.reaped |= status.is_some();
        Ok(status)
    }
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
            // Like tokio's kill_on_drop: the job's own process goes with it.
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is
            // ours and not reaped, so it names our child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
            }
            let _ = self.try_reap();
        }
    }
}

/// Starts `path` with `argv` and `envp` (each without the terminating null
/// pointer; this adds it), stdin, stdout and stderr on the given
/// descriptors, in a new process group, with `PR_SET_PDEATHSIG` = SIGKILL
/// and SIGPIPE at its default action. `stack` is reused between calls.
///
/// Must be called from fanout's single runtime thread only (the parent is
/// suspended while the child uses `stack`).
///
/// # Errors
/// `clone` fails, or the child's `execve` fails (its errno).
pub(crate) fn spawn(
    path: &CString,
    argv: &[CString],
    envp: &[*const c_char],
    fds: [RawFd; 3],
    stack: &mut Vec<u8>,
) -> io::Result<Process> {
    let handled = handled_signals();
    let argv_ptrs: Vec<*const c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let mut envp_ptrs: Vec<*const c_char> = Vec::with_capacity(envp.len() + 1);
    envp_ptrs.extend_from_slice(envp);
    envp_ptrs.push(std::ptr::null());
    let mut args = ChildArgs {
        path: path.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        fds,
        parent: std::process::id() as libc::pid_t,
        handled: &handled.0,
        handled_len: handled.1,
        error: 0,
    };
    if stack.len() < STACK_SIZE {
        stack.resize(STACK_SIZE, 0);
    }
    // The stack grows down: pass its 16-byte aligned top.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;

    // SAFETY: all signals are blocked around clone so that no handler of
    // fanout's runs in the child, which shares fanout's memory; the child
    // resets the dispositions before unblocking. `args`, the pointer arrays
    // and `stack` outlive the child's use of them: CLONE_VFORK suspends
    // this thread until the child has exec'd or exited.
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
    // SAFETY: the child wrote `error` (if at all) before it exited, and it
    // has exec'd or exited by now (CLONE_VFORK).
    let error = unsafe { std::ptr::read_volatile(std::ptr::addr_of!(args.error)) };
    let mut process = Process {
        pid,
        pidfd: None,
        reaped: false,
    };
    if error != 0 {
        // The child has exited (status 127); reap it now.
        let mut status = 0;
        // SAFETY: waitpid on our own child, writing to a valid int.
        unsafe {
            libc::waitpid(pid, &mut status, 0);
        }
        process.reaped = true;
        return Err(io::Error::from_raw_os_error(error));
    }
    // SAFETY: pidfd_open takes a pid and flags; a returned fd is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd >= 0 {
        // SAFETY: the syscall just returned this descriptor to us.
        // pidfd_open always sets close-on-exec.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        // SAFETY: the AsyncFd owns the descriptor, so it stays open (and is
        // not reused) for as long as it is registered.
        process.pidfd =
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok();
    }
    Ok(process)
}

/// Room for every signal number.
const MAX_SIGNALS: usize = 65;

/// The signals whose disposition the child must set back to default: those
/// with a handler in fanout (Rust's, tokio's), and SIGPIPE, which Rust
/// ignores in fanout (an ignored signal stays ignored across exec, which
/// would change how `cmd | head` ends). Looked up once, at the first spawn
/// (fanout installs its handlers, SIGINT and SIGTERM, before any job
/// starts), so that the child, which runs while fanout waits, makes a
/// handful of calls instead of one per signal.
fn handled_signals() -> &'static ([c_int; MAX_SIGNALS], usize) {
    static HANDLED: std::sync::OnceLock<([c_int; MAX_SIGNALS], usize)> = std::sync::OnceLock::new();
    HANDLED.get_or_init(look_up_handled_signals)
}

fn look_up_handled_signals() -> ([c_int; MAX_SIGNALS], usize) {
    let mut list = [0; MAX_SIGNALS];
    let mut len = 0;
    for sig in 1..libc::SIGRTMAX().min(MAX_SIGNALS as c_int) {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction with a null new action only reads the current
        // one into a valid struct.
        let handled = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction != libc::SIG_DFL
                && old.sa_sigaction != libc::SIG_IGN
        };
        if handled || sig == libc::SIGPIPE {
            list[len] = sig;
            len += 1;
        }
    }
    (list, len)
}

/// The child, between `clone` and `execve`: only async-signal-safe calls,
/// no allocation, no unwinding.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive while we run; every
    // call below is an async-signal-safe system call wrapper.
    unsafe {
        let args = &mut *arg.cast::<ChildArgs>();
        // Handlers are fanout's code; they must not run here, and exec
        // would reset them anyway. SIGPIPE: Rust ignores it in fanout, and
        // an ignored signal stays ignored across exec.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for i in 0..args.handled_len {
            let sig = (*args.handled)[i];
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
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
        libc::execve(args.path, args.argv, args.envp);
        if *libc::__errno_location() == libc::ENOEXEC {
            // A script without `#!`: run it with /bin/sh, as execvp does.
            let mut sh_argv: [*const c_char; MAX_SH_ARGS + 2] = [std::ptr::null(); MAX_SH_ARGS + 2];
            sh_argv[0] = c"/bin/sh".as_ptr();
            sh_argv[1] = args.path;
            let mut i = 1;
            while i <= MAX_SH_ARGS && !(*args.argv.add(i)).is_null() {
                sh_argv[i + 1] = *args.argv.add(i);
                i += 1;
            }
            if (*args.argv.add(i)).is_null() {
                libc::execve(c"/bin/sh".as_ptr(), sh_argv.as_ptr(), args.envp);
            }
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
