//! `--joblog-sync`: when joblog records are forced to disk, and what stays
//! the same whatever the choice (the joblog's format, `--resume`, and the
//! journals earlier releases wrote).

mod common;

use std::path::Path;
use std::process::Command;

use common::{fanout, run};

/// The joblog's lines without the columns that change from run to run
/// (start time and runtime).
fn stable_columns(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            format!("{}\t{}\t{}", f[0], f[1], f[4..].join("\t"))
        })
        .collect()
}

#[test]
fn every_sync_policy_writes_the_same_joblog_and_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut logs = Vec::new();
    for policy in ["none", "record", "group"] {
        let log = dir.path().join(policy);
        let log_arg = log.to_str().unwrap();
        let args = [
            "-j2",
            "--joblog",
            log_arg,
            "--joblog-sync",
            policy,
            "echo {}; exit {}",
            ":::",
            "0",
            "1",
            "0",
        ];
        let out = run(fanout(), &args, b"");
        assert_eq!(out.status.code(), Some(1), "{policy}");
        let mut resume = vec!["--resume"];
        resume.extend(args);
        let out = run(fanout(), &resume, b"");
        assert_eq!(out.status.code(), Some(0), "{policy}");
        assert!(out.stdout.is_empty(), "{policy}: --resume ran a job again");
        let mut lines = stable_columns(&log);
        lines[1..].sort();
        logs.push(lines);
    }
    assert_eq!(logs[0].len(), 4);
    assert_eq!(logs[0], logs[1]);
    assert_eq!(logs[0], logs[2]);
}

#[test]
fn joblog_sync_needs_a_joblog_and_a_known_policy() {
    for (args, needle) in [
        (
            &["--joblog-sync", "record", "true", ":::", "a"][..],
            "--joblog-sync needs --joblog",
        ),
        (
            &[
                "--joblog",
                "LOG",
                "--joblog-sync",
                "often",
                "true",
                ":::",
                "a",
            ][..],
            "bad --joblog-sync \"often\"",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let args: Vec<&str> = args
            .iter()
            .map(|a| {
                if *a == "LOG" {
                    log.to_str().unwrap()
                } else {
                    a
                }
            })
            .collect();
        let out = run(fanout(), &args, b"");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(255), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!log.exists(), "{args:?}: the joblog was created");
    }
}

#[test]
fn a_joblog_and_sidecar_of_the_previous_release_resume() {
    // Written by the release before the journal moved into the library, for
    // `fanout --joblog log echo ::: a`: its fingerprint must still match.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    std::fs::write(
        &log,
        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n\
         1\t:\t1796189922.117\t     0.001\t0\t2\t0\t0\techo a\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("log.fanout"),
        "fanout-joblog 2\nfingerprint 1aaf7b19234bc3c4\nrun a4a96567c814f15e finished\n\
         summary command: echo; 1 jobs\n",
    )
    .unwrap();
    let log_arg = log.to_str().unwrap();
    let out = run(
        fanout(),
        &["--resume", "--joblog", log_arg, "echo", ":::", "a"],
        b"",
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "the recorded job ran again");
    let out = run(
        fanout(),
        &["--resume", "--joblog", log_arg, "echo", ":::", "b"],
        b"",
    );
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different command or input list"));
}

/// How many `fdatasync` calls a run of 10 jobs makes under `policy`, as
/// strace counts them; `None` when strace is missing or not allowed here.
fn fdatasyncs(policy: &str) -> Option<usize> {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let log = dir.path().join("log");
    let status = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=fdatasync", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_fanout"))
        .args(["-j1", "--joblog"])
        .arg(&log)
        .args(["--joblog-sync", policy, "true", ":::"])
        .args((1..=10).map(|i| i.to_string()))
        .env("PARALLEL_SHELL", "/bin/sh")
        .output()
        .ok()?;
    if !status.status.success() {
        eprintln!(
            "note: strace cannot trace here ({}); skipping the count",
            String::from_utf8_lossy(&status.stderr).trim()
        );
        return None;
    }
    let text = std::fs::read_to_string(trace).ok()?;
    Some(text.lines().filter(|l| l.contains("fdatasync(")).count())
}

#[test]
fn each_sync_policy_makes_the_fdatasync_calls_it_promises() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("note: strace is not installed; skipping the count");
        return;
    }
    // none: no fdatasync at all. record: the header, then one per record.
    // group (64 records or a second): the header, then the 10 records at the
    // end of the run, unless a second passed between two records.
    let Some(none) = fdatasyncs("none") else {
        return;
    };
    assert_eq!(none, 0);
    assert_eq!(fdatasyncs("record"), Some(11));
    let group = fdatasyncs("group").unwrap();
    assert!((2..=11).contains(&group), "{group}");
}
