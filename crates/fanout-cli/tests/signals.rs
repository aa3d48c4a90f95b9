//! Signals, timeouts and halts: no job outlives fanout, and fanout stops
//! promptly.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{fanout, send_signal, wait_for_no_process, wait_for_processes};

#[test]
fn ctrl_c_terminates_every_jobs_process_group_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // Each job has a grandchild (the backgrounded sleep) to prove the whole
    // process group is terminated, not only the shell.
    let mut child = fanout()
        .args([
            "-j3",
            "--joblog",
            log.to_str().unwrap(),
            "sleep 3171.{} & sleep 3171.{}; wait",
            ":::",
            "1",
            "2",
            "3",
            "4",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_processes("sleep 3171.", 6);
    let started = Instant::now();
    send_signal(child.id(), "INT");
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    assert_eq!(
        wait_for_no_process("sleep 3171.", Duration::from_secs(2)),
        Vec::<u32>::new()
    );
    // Interrupted jobs did not complete, so the journal holds no record for
    // them and --resume will run them.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn sigterm_stops_the_run_like_ctrl_c() {
    let mut child = fanout()
        .args(["-j2", "sleep", ":::", "3172.1", "3172.2", "3172.3"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_processes("sleep 3172.", 2);
    send_signal(child.id(), "TERM");
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert_eq!(
        wait_for_no_process("sleep 3172.", Duration::from_secs(2)),
        Vec::<u32>::new()
    );
}

#[test]
fn jobs_die_with_fanout_even_when_it_is_sigkilled() {
    // `sleep` needs no shell, so the job's process is sleep itself, which
    // the parent-death signal reaches.
    let mut child = fanout()
        .args(["-j2", "sleep", ":::", "3173.1", "3173.2"])
        .spawn()
        .unwrap();
    wait_for_processes("sleep 3173.", 2);
    send_signal(child.id(), "KILL");
    child.wait().unwrap();
    assert_eq!(
        wait_for_no_process("sleep 3173.", Duration::from_secs(2)),
        Vec::<u32>::new()
    );
}

#[test]
fn halt_now_returns_at_once_with_the_failing_jobs_code_and_kills_the_others() {
    let started = Instant::now();
    let out = fanout()
        .args([
            "-j3",
            "--halt",
            "now,fail=1",
            ":::",
            "sleep 3174.1",
            "sleep 3174.2",
            "sleep 0.3; exit 5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        wait_for_no_process("sleep 3174.", Duration::from_secs(2)),
        Vec::<u32>::new()
    );
}

#[test]
fn halt_soon_starts_no_new_job_but_lets_running_ones_finish() {
    let out = fanout()
        .args([
            "-j2",
            "--halt",
            "soon,fail=1",
            ":::",
            "exit 3",
            "sleep 0.5; echo finished",
            "echo never",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "finished\n");
}

#[test]
fn a_timeout_kills_the_jobs_whole_process_group() {
    let started = Instant::now();
    let out = fanout()
        .args([
            "--timeout",
            "0.5",
            "sleep 3175.{} & sleep 3175.{}; wait",
            ":::",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"));
    assert_eq!(
        wait_for_no_process("sleep 3175.", Duration::from_secs(2)),
        Vec::<u32>::new()
    );
}

#[test]
fn a_resume_kills_what_a_sigkilled_run_left_behind_before_starting_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let stop = dir.path().join("stop");
    // Until `stop` exists each job leaves a grandchild; the parent-death
    // signal reaches only the shell, so the grandchildren outlive a SIGKILL.
    let cmd = format!(
        "test -e {} || {{ sleep 3177.{{}} & wait; }}",
        stop.display()
    );
    let args = |resume: bool| {
        let mut a = vec![
            "-j2".to_owned(),
            "--joblog".into(),
            log.to_str().unwrap().into(),
        ];
        if resume {
            a.push("--resume".into());
        }
        a.extend([cmd.clone(), ":::".into(), "1".into(), "2".into()]);
        a
    };
    let mut child = fanout().args(args(false)).spawn().unwrap();
    wait_for_processes("sleep 3177.", 2);
    send_signal(child.id(), "KILL");
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        common::processes_matching("sleep 3177.").len(),
        2,
        "the grandchildren are expected to survive the SIGKILL itself"
    );
    std::fs::write(&stop, "").unwrap();
    let out = fanout().args(args(true)).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("killed 2 process(es)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(common::processes_matching("sleep 3177."), Vec::<u32>::new());
}

#[test]
fn two_runs_cannot_share_a_joblog() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut first = fanout()
        .args(["--joblog", log.to_str().unwrap(), "sleep", ":::", "3178.1"])
        .spawn()
        .unwrap();
    wait_for_processes("sleep 3178.", 1);
    let second = fanout()
        .args(["--joblog", log.to_str().unwrap(), "true", ":::", "a"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use by another running fanout"));
    send_signal(first.id(), "TERM");
    first.wait().unwrap();
    assert_eq!(
        wait_for_no_process("sleep 3178.", Duration::from_secs(2)),
        Vec::<u32>::new()
    );
}
