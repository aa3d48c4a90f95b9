//! `fanout timeline` draws a run from its joblog; `fanout --generate` prints
//! the man page and shell completions from the same option definitions as
//! `--help`.

mod common;

use common::{fanout, run};

#[test]
fn a_timeline_shows_every_job_of_a_joblog_and_its_failures() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.log");
    let log = log.to_str().unwrap();
    let out = run(
        fanout(),
        &[
            "-j3",
            "--joblog",
            log,
            "exit $(( {} % 3 == 0 ))",
            ":::",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
            "7",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    let svg_path = dir.path().join("run.svg");
    let out = run(
        fanout(),
        &["timeline", log, "-o", svg_path.to_str().unwrap()],
        b"",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<rect class=\"job").count(), 7);
    assert_eq!(svg.matches("<rect class=\"job failed\"").count(), 2);
    assert!(svg.contains("7 jobs, 2 failed"));
    // At most three jobs ran at once, so at most three slots.
    assert!(!svg.contains(">slot 4<"));

    let html = run(fanout(), &["timeline", "--html", log], b"");
    let html = String::from_utf8(html.stdout).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<h2>Failed jobs</h2>"));
    assert_eq!(html.matches("<tr><td>").count(), 2);
}

#[test]
fn a_timeline_of_something_that_is_not_a_joblog_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "not a joblog\n").unwrap();
    for args in [
        vec!["timeline", bad.to_str().unwrap()],
        vec!["timeline", "/nonexistent/log"],
    ] {
        let out = run(fanout(), &args, b"");
        assert_eq!(out.status.code(), Some(255));
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("fanout: "));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_program_named_timeline_still_runs_after_an_option() {
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("timeline");
    std::fs::write(&prog, "#!/bin/sh\necho ran \"$@\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = fanout();
    cmd.env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()));
    let out = run(cmd, &["-k", "timeline", ":::", "a"], b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran a\n");
}

#[test]
fn the_man_page_and_completions_come_from_the_option_definitions() {
    let man = run(fanout(), &["--generate", "man"], b"");
    assert_eq!(man.status.code(), Some(0));
    let man = String::from_utf8(man.stdout).unwrap();
    assert!(man.contains(".TH fanout 1"));
    for option in ["keep\\-order", "pipe\\-part", "joblog", "halt\\-on\\-error"] {
        assert!(man.contains(option), "man page lacks {option}");
    }
    // Options fanout refuses are not offered.
    assert!(!man.contains("sshloginfile"));
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(fanout(), &["--generate", shell], b"");
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("--keep-order"),
            "{shell} completion lacks --keep-order"
        );
    }
    let bash = run(fanout(), &["--generate", "bash"], b"");
    let check = std::process::Command::new("bash")
        .args(["-n", "-c", &String::from_utf8(bash.stdout).unwrap()])
        .status()
        .unwrap();
    assert!(check.success(), "the bash completion is not valid bash");
    let out = run(fanout(), &["--generate", "tcsh"], b"");
    assert_eq!(out.status.code(), Some(255));
}
