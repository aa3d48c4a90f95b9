//! Process hygiene: jobs get exactly the arguments, limits, signal
//! dispositions and descriptors a shell would give them, whatever the
//! environment fanout was started in, and fanout never signals a process
//! that is not its own.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{fanout, processes_matching, wait_for_no_process, wait_for_processes};

/// Runs `fanout ARGS` from `bash -c PRELUDE; exec fanout ARGS`, so that the
/// prelude (a `trap`, a `ulimit`) shapes the environment fanout starts in.
/// bash, because dash does not pass `trap '' CHLD` on to what it runs.
fn fanout_after(prelude: &str, args: &[&str]) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_fanout");
    let mut cmd = Command::new("/bin/bash");
    cmd.arg("-c")
        .arg(format!("{prelude}; exec \"$0\" \"$@\""))
        .arg(bin)
        .args(args)
        .env("PARALLEL_SHELL", "/bin/sh")
        .stdin(Stdio::null());
    cmd.output().expect("run sh")
}

/// What `sh -c SCRIPT` prints when started the same way as fanout above:
/// the reference for what a job should see.
fn shell_after(prelude: &str, script: &str) -> String {
    let out = Command::new("/bin/bash")
        .arg("-c")
        .arg(format!("{prelude}; exec /bin/sh -c '{script}'"))
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn a_script_without_a_shebang_gets_exactly_its_arguments_even_past_a_thousand() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("count");
    // No `#!`: execve fails with ENOEXEC and the script runs with /bin/sh,
    // as execvp does.
    std::fs::write(
        &script,
        "echo \"$# $1 ${1025} ${1100} $(eval echo \\${$#})\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    for n in [1023usize, 1024, 1099, 3000] {
        let words: Vec<String> = (1..=n).map(|i| format!("a{i}")).collect();
        let mut args = vec![script.to_str().unwrap()];
        args.extend(words.iter().map(String::as_str));
        args.extend([":::", "last"]);
        let out = fanout().args(&args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let at = |i: usize| {
            if i <= n {
                format!("a{i}")
            } else if i == n + 1 {
                "last".to_owned()
            } else {
                String::new()
            }
        };
        let want = format!("{} a1 {} {} last\n", n + 1, at(1025), at(1100));
        assert_eq!(
            stdout,
            want,
            "{n} arguments; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{n} arguments");
    }
}

#[test]
fn jobs_are_waited_for_normally_when_fanout_starts_with_sigchld_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let out = fanout_after(
        "trap '' CHLD",
        &[
            "-j2",
            "--joblog",
            log.to_str().unwrap(),
            "sh -c 'exit {}'",
            ":::",
            "0",
            "3",
            "0",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "one job failed; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let mut exitvals: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split('\t').nth(6).unwrap())
        .collect();
    exitvals.sort_unstable();
    assert_eq!(exitvals, ["0", "0", "3"], "{text}");
}

#[test]
fn jobs_see_their_callers_open_files_limit_not_the_one_fanout_raised() {
    let want = shell_after("ulimit -Sn 256", "ulimit -Sn");
    assert_eq!(want, "256\n");
    let out = fanout_after(
        "ulimit -Sn 256",
        &["-k", "sh -c 'ulimit -Sn'", ":::", "1", "2"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "256\n256\n");
}

#[test]
fn jobs_get_the_signal_dispositions_a_shell_would_give_them() {
    // Ignored signals are inherited across exec; a shell's child keeps them
    // (SIGHUP under nohup, SIGINT for background jobs, even SIGRTMAX). fanout
    // itself handles SIGINT and ignores SIGPIPE, which jobs must not see.
    let script = "grep -E \"^Sig(Ign|Blk)\" /proc/self/status";
    for prelude in [
        "true",
        "trap '' HUP",
        "trap '' INT",
        "trap '' PIPE",
        "trap '' HUP INT TERM 64",
        "trap '' CHLD",
    ] {
        let want = shell_after(prelude, script);
        // The input goes into a shell comment: the job is the script alone.
        let job = format!("{script} # {{}}");
        let out = fanout_after(prelude, &[&job, ":::", "x"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "after `{prelude}`; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_cleanly_finished_run_leaves_the_processes_it_meant_to_leave_alone() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let log = log.to_str().unwrap();
    // The job starts a daemon on purpose (its own session, detached) and
    // exits; the run finishes cleanly.
    let first = fanout()
        .args([
            "--joblog",
            log,
            "setsid sleep 3191.5 < /dev/null > /dev/null 2>&1 & echo started # {}",
            ":::",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&first.stdout), "started\n");
    assert_eq!(first.status.code(), Some(0));
    // The daemon may still be on its way to exec'ing sleep.
    wait_for_processes("sleep 3191.5", 1);
    // The next run of the same joblog must not take the daemon for a
    // leftover of a killed run.
    let second = fanout()
        .args([
            "--joblog",
            log,
            "--resume",
            "setsid sleep 3191.5 < /dev/null > /dev/null 2>&1 & echo started # {}",
            ":::",
            "1",
        ])
        .output()
        .unwrap();
    let survivors = processes_matching("sleep 3191.5");
    for pid in &survivors {
        common::send_signal(*pid, "KILL");
    }
    assert_eq!(
        survivors.len(),
        1,
        "the daemon was killed; stderr: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(!String::from_utf8_lossy(&second.stderr).contains("killed"));
    assert!(wait_for_no_process("sleep 3191.5", Duration::from_secs(2)).is_empty());
}

#[test]
fn as_pid_1_fanout_reaps_the_orphans_its_jobs_leave() {
    // A PID namespace of its own, with its own /proc: fanout is its init.
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("note: cannot create a PID namespace here (needs root and unshare); skipping");
        return;
    }
    // Job 1 leaves an orphan that exits at once; job 2 (one job at a time)
    // counts the zombies left in the namespace once it has had time to go.
    let out = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount-proc",
            env!("CARGO_BIN_EXE_fanout"),
        ])
        // No command: each input is a command line of its own.
        .args(["-j1", "-k", "--timeout", "20"])
        .args([
            ":::",
            "(sleep 0.1 &) ; exit 0",
            "sleep 1; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l",
        ])
        .env("PARALLEL_SHELL", "/bin/sh")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0\n",
        "zombies left; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
