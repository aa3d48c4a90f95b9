//! Helpers shared by the integration tests: running the real `fanout`
//! binary and, when it is installed, GNU parallel on the same arguments.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The `fanout` binary built by cargo for these tests.
pub(crate) fn fanout() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fanout"));
    cmd.env("PARALLEL_SHELL", "/bin/sh")
        .env("PARALLEL_HOME", parallel_home())
        .env_remove("PARALLEL");
    cmd
}

/// A `$PARALLEL_HOME` for both tools, so that no profile of the machine's
/// user leaks in.
pub(crate) fn parallel_home() -> std::path::PathBuf {
    let home = std::env::temp_dir().join("fanout-tests-parallel-home");
    let _ = std::fs::create_dir_all(&home);
    home
}

/// GNU parallel, or `None` (with a note on stderr) when it is not installed.
pub(crate) fn gnu_parallel() -> Option<Command> {
    let version = Command::new("parallel")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !String::from_utf8_lossy(&version.stdout).contains("GNU parallel") {
        eprintln!("note: `parallel` is not GNU parallel; skipping the comparison");
        return None;
    }
    let mut cmd = Command::new("parallel");
    // The same shell for both tools, and no per-user config or citation
    // state leaking in from the machine.
    cmd.env("PARALLEL_SHELL", "/bin/sh")
        .env("PARALLEL_HOME", parallel_home())
        .env_remove("PARALLEL");
    Some(cmd)
}

/// Runs `cmd` with `args` and `stdin`, collecting its output.
pub(crate) fn run(mut cmd: Command, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut pipe = child.stdin.take().expect("stdin");
    // fanout may exit (bad input) before reading its stdin.
    if let Err(e) = pipe.write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    drop(pipe);
    child.wait_with_output().expect("wait")
}

/// Runs fanout with `args`; returns (stdout, exit code).
pub(crate) fn fanout_out(args: &[&str], stdin: &[u8]) -> (String, i32) {
    let out = run(fanout(), args, stdin);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// Asserts that fanout and GNU parallel print the same stdout and exit with
/// the same code; when `sort` is set, lines are compared as sets (for runs
/// whose completion order is not fixed). Skipped when GNU parallel is absent.
pub(crate) fn same_as_gnu(args: &[&str], stdin: &[u8], sort: bool) {
    let Some(gnu) = gnu_parallel() else {
        eprintln!("note: GNU parallel not on PATH; skipping comparison of {args:?}");
        return;
    };
    let ours = run(fanout(), args, stdin);
    let theirs = run(gnu, args, stdin);
    let text = |o: &Output| {
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        if sort {
            let mut lines: Vec<_> = s.lines().map(str::to_owned).collect();
            lines.sort();
            lines.join("\n")
        } else {
            s
        }
    };
    assert_eq!(
        text(&ours),
        text(&theirs),
        "stdout differs for {args:?}\nfanout stderr: {}",
        String::from_utf8_lossy(&ours.stderr)
    );
    assert_eq!(
        ours.status.code(),
        theirs.status.code(),
        "exit code differs for {args:?}"
    );
}

/// Runs the bash `script` twice, with `parallel` on PATH standing for GNU
/// parallel and then for fanout (no `$PARALLEL_SHELL`: both pick the shell
/// they were started from, bash), and asserts the same stdout and exit
/// code; `sort` compares lines as sets. Skipped when GNU parallel is absent.
pub(crate) fn same_script_as_gnu(script: &str, stdin: &[u8], sort: bool) {
    if gnu_parallel().is_none() {
        eprintln!("note: GNU parallel not on PATH; skipping comparison of {script:?}");
        return;
    }
    let run_with = |tool: &str| -> (String, Option<i32>, String) {
        let bin = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(tool, bin.path().join("parallel")).expect("symlink");
        let path = format!(
            "{}:{}",
            bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .current_dir(work.path())
            .env("PATH", path)
            .env("PARALLEL_HOME", parallel_home())
            .env_remove("PARALLEL_SHELL")
            .env_remove("PARALLEL");
        let out = run(cmd, &[], stdin);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        if sort {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            text = lines.join("\n");
        }
        (
            text,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let gnu_path = String::from_utf8(
        Command::new("bash")
            .args(["-c", "command -v parallel"])
            .output()
            .expect("bash")
            .stdout,
    )
    .expect("utf-8");
    let theirs = run_with(gnu_path.trim());
    let ours = run_with(env!("CARGO_BIN_EXE_fanout"));
    assert_eq!(
        ours.0, theirs.0,
        "stdout differs for {script:?}\nfanout stderr: {}",
        ours.2
    );
    assert_eq!(ours.1, theirs.1, "exit code differs for {script:?}");
}

/// Processes whose command line starts with `needle` (from /proc), so tests can
/// prove that no job outlives fanout. Tests use distinctive `sleep` values
/// as needles so that parallel tests do not see each other's processes.
pub(crate) fn processes_matching(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // Zombies have an empty cmdline and are already dead.
        if cmdline.starts_with(needle) && pid != std::process::id() {
            found.push(pid);
        }
    }
    found
}

/// Waits up to `limit` for no process to match `needle`; returns the
/// survivors.
pub(crate) fn wait_for_no_process(needle: &str, limit: std::time::Duration) -> Vec<u32> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = processes_matching(needle);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits until at least `n` processes match `needle` (jobs have started).
pub(crate) fn wait_for_processes(needle: &str, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while processes_matching(needle).len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "jobs matching {needle:?} did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Sends `signal` to `pid`.
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}
