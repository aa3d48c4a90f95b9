//! Every bad input gets one clear message and exit code 255, and no job
//! starts.

mod common;

use std::path::Path;

use common::{fanout, run};

/// Runs fanout with `args` (where `CMD` is replaced by a command that leaves
/// a file in `dir` when a job starts) and checks the failure contract.
fn refuses(dir: &Path, args: &[&str], needle: &str) {
    let marker = format!("touch {}/started-{{#}}", dir.display());
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "CMD" { marker.as_str() } else { a })
        .collect();
    let out = run(fanout(), &args, b"in\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} should mention {needle:?}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: one message expected, got {stderr:?}"
    );
    assert!(stderr.starts_with("fanout: "), "{stderr}");
    let started = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("started-"))
        .count();
    assert_eq!(started, 0, "{args:?} started a job");
}

#[test]
fn unknown_flags_are_refused_before_any_job_starts() {
    let dir = tempfile::tempdir().unwrap();
    refuses(
        dir.path(),
        &["--no-such-flag", "CMD", ":::", "a"],
        "--no-such-flag",
    );
}

#[test]
fn bad_flag_values_are_refused_before_any_job_starts() {
    let dir = tempfile::tempdir().unwrap();
    refuses(
        dir.path(),
        &["--halt", "bogus", "CMD", ":::", "a"],
        "--halt",
    );
    refuses(
        dir.path(),
        &["--halt", "now,fail=0", "CMD", ":::", "a"],
        "--halt",
    );
    refuses(dir.path(), &["-j", "-9999", "CMD", ":::", "a"], "-j");
    refuses(dir.path(), &["-j", "many", "CMD", ":::", "a"], "-j");
    refuses(
        dir.path(),
        &["--timeout", "soon", "CMD", ":::", "a"],
        "--timeout",
    );
    refuses(
        dir.path(),
        &["--retries", "-2", "CMD", ":::", "a"],
        "--retries",
    );
    refuses(dir.path(), &["-d", "", "CMD"], "-d");
    refuses(dir.path(), &["--resume", "CMD", ":::", "a"], "--joblog");
    refuses(
        dir.path(),
        &["-k", "--line-buffer", "--retries", "2", "CMD", ":::", "a"],
        "--line-buffer",
    );
}

#[test]
fn a_missing_input_file_is_refused_before_any_job_starts() {
    let dir = tempfile::tempdir().unwrap();
    refuses(
        dir.path(),
        &["-a", "/nonexistent/inputs", "CMD"],
        "/nonexistent/inputs",
    );
    refuses(
        dir.path(),
        &["CMD", "::::", "/nonexistent/inputs"],
        "/nonexistent/inputs",
    );
}

#[test]
fn gnu_parallel_options_fanout_lacks_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    refuses(dir.path(), &["-S", "host", "CMD", ":::", "a"], "-S");
    refuses(
        dir.path(),
        &["--sshlogin", "host", "CMD", ":::", "a"],
        "--sshlogin",
    );
    refuses(
        dir.path(),
        &["--retry-failed", "--joblog", "log", "CMD"],
        "--retry-failed",
    );
    refuses(
        dir.path(),
        &["--group-by", "1", "--pipepart", "-a", "file", "CMD"],
        "--group-by",
    );
    refuses(dir.path(), &["--tmux", "CMD", ":::", "a"], "--tmux");
    // An abbreviation GNU parallel finds ambiguous is refused too.
    refuses(dir.path(), &["--pi", "CMD", ":::", "a"], "ambiguous");
}

#[test]
fn a_joblog_on_stdout_or_appended_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    refuses(
        dir.path(),
        &["--joblog", "-", "CMD", ":::", "a"],
        "--joblog -",
    );
    refuses(
        dir.path(),
        &["--joblog", "+log", "CMD", ":::", "a"],
        "--joblog +FILE",
    );
}

#[test]
fn an_unwritable_results_file_is_refused_before_any_job_starts() {
    let dir = tempfile::tempdir().unwrap();
    refuses(
        dir.path(),
        &["--results", "/dev/null/out.json", "CMD", ":::", "a"],
        "results file",
    );
}

#[test]
fn a_joblog_from_another_command_is_refused_and_left_intact() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let log = log.to_str().unwrap();
    let first = run(fanout(), &["--joblog", log, "true", ":::", "a", "b"], b"");
    assert_eq!(first.status.code(), Some(0));
    let before = std::fs::read(log).unwrap();
    let jobs = tempfile::tempdir().unwrap();
    refuses(
        jobs.path(),
        &["--resume", "--joblog", log, "CMD", ":::", "a", "b"],
        "different command or input list",
    );
    refuses(
        jobs.path(),
        &["--resume-failed", "--joblog", log, "true", ":::", "a", "c"],
        "different command or input list",
    );
    assert_eq!(std::fs::read(log).unwrap(), before);
}

#[test]
fn a_damaged_joblog_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    std::fs::write(&log, "not a joblog\n").unwrap();
    refuses(
        dir.path(),
        &[
            "--resume",
            "--joblog",
            log.to_str().unwrap(),
            "CMD",
            ":::",
            "a",
        ],
        "damaged",
    );
}
