//! The journal: `--joblog` in GNU parallel's format, and `--resume` /
//! `--resume-failed` that survive SIGKILL at any instant.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{fanout, run};

/// Complete records of a joblog: seq → exit values, in file order. The
/// header and a torn last line are left out.
fn records(log: &Path) -> BTreeMap<u64, Vec<i32>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out: BTreeMap<u64, Vec<i32>> = BTreeMap::new();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    for line in complete.lines().skip(1) {
        let fields: Vec<&str> = line.splitn(9, '\t').collect();
        assert_eq!(fields.len(), 9, "bad record {line:?}");
        out.entry(fields[0].parse().unwrap())
            .or_default()
            .push(fields[6].parse().unwrap());
    }
    out
}

/// Lines "seq run" appended by the jobs themselves: who ran, in which run.
fn side_effects(file: &Path) -> Vec<(u64, u32)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (seq, run) = l.split_once(' ')?;
            Some((seq.parse().ok()?, run.parse().ok()?))
        })
        .collect()
}

#[test]
fn joblog_uses_gnu_parallels_format() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let out = run(
        fanout(),
        &[
            "-j1",
            "--joblog",
            log.to_str().unwrap(),
            "echo {}; exit {}",
            ":::",
            "0",
            "1",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand")
    );
    for (seq, line) in (1..).zip(lines) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 9, "{line:?}");
        assert_eq!(f[0], seq.to_string());
        assert_eq!(f[1], ":");
        assert!(
            f[2].contains('.') && f[2].split('.').nth(1).unwrap().len() == 3,
            "{line:?}"
        );
        assert_eq!(
            f[3].len(),
            10,
            "runtime is right-aligned in 10 columns: {line:?}"
        );
        assert_eq!((f[4], f[5]), ("0", "2"));
        assert_eq!(f[6], (seq - 1).to_string());
        assert_eq!(f[8], format!("echo {0}; exit {0}", seq - 1));
    }
}

#[test]
fn resume_skips_recorded_jobs_and_resume_failed_reruns_failed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let side = dir.path().join("side");
    let cmd = format!(
        "echo {{}} $RUN >> {}; test {{}} != 3 || test -e {}/allow",
        side.display(),
        dir.path().display()
    );
    let go = |mode: &str, run_id: &str| {
        let mut a: Vec<&str> = vec!["-j1", "--joblog", log.to_str().unwrap()];
        if !mode.is_empty() {
            a.push(mode);
        }
        a.extend([cmd.as_str(), ":::", "1", "2", "3", "4"]);
        let mut c = fanout();
        c.env("RUN", run_id);
        run(c, &a, b"").status.code()
    };
    // First run: job 3 fails.
    assert_eq!(go("", "1"), Some(1));
    // --resume runs nothing: every job is recorded, failed or not.
    assert_eq!(go("--resume", "2"), Some(0));
    std::fs::write(dir.path().join("allow"), "").unwrap();
    // --resume-failed runs job 3 only.
    assert_eq!(go("--resume-failed", "3"), Some(0));
    assert_eq!(
        side_effects(&side),
        vec![(1, 1), (2, 1), (3, 1), (4, 1), (3, 3)]
    );
    assert_eq!(records(&log)[&3], vec![1, 0]);
}

#[test]
fn a_torn_last_line_is_ignored_and_its_job_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let side = dir.path().join("side");
    let cmd = format!("echo {{}} $RUN >> {}", side.display());
    let base = [
        "-j1",
        "--joblog",
        log.to_str().unwrap(),
        &cmd,
        ":::",
        "1",
        "2",
        "3",
    ];
    let mut c = fanout();
    c.env("RUN", "1");
    assert_eq!(run(c, &base, b"").status.code(), Some(0));
    // Cut the last record in the middle, as a power cut could.
    let text = std::fs::read_to_string(&log).unwrap();
    let last_start = text[..text.len() - 1].rfind('\n').unwrap() + 1;
    std::fs::write(&log, &text[..last_start + 3]).unwrap();

    let mut resume: Vec<&str> = vec!["--resume"];
    resume.extend(base);
    let mut c = fanout();
    c.env("RUN", "2");
    assert_eq!(run(c, &resume, b"").status.code(), Some(0));
    assert_eq!(side_effects(&side), vec![(1, 1), (2, 1), (3, 1), (3, 2)]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert_eq!(
        records(&log).keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

/// T10 of the reliability plan, scaled down for every test run: SIGKILL
/// fanout at random instants, resume, and check that no recorded job ran
/// again, no job was lost, and at most `-j` jobs per kill were started but
/// not recorded. Half of the kills also cut the journal's last line, as a
/// power cut could.
#[test]
fn sigkill_at_random_instants_then_resume_never_reruns_a_recorded_job_nor_loses_one() {
    const JOBS: u64 = 300;
    const PARALLEL: usize = 4;
    let seed = std::env::var("FANOUT_CLI_JOURNAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} (replay with FANOUT_CLI_JOURNAL_TEST_SEED={seed})");
    let mut state = seed | 1;
    let mut rand = |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let side = dir.path().join("side");
    // Each job leaves "seq run" in the side file before it can be recorded,
    // then takes a little while; every tenth fails.
    let cmd = format!(
        "echo {{}} $RUN >> {}; sleep 0.0$(( {{}} % 3 )); test $(( {{}} % 10 )) != 0",
        side.display()
    );
    let inputs: Vec<String> = (1..=JOBS).map(|i| i.to_string()).collect();
    let (mut kills, mut max_unrecorded) = (0, 0);
    for run_id in 1u32.. {
        let mut args = vec![
            "-j".to_owned(),
            PARALLEL.to_string(),
            "--joblog".into(),
            log.to_str().unwrap().into(),
        ];
        if run_id > 1 {
            args.push("--resume".into());
        }
        args.push(cmd.clone());
        args.push(":::".into());
        args.extend(inputs.iter().cloned());
        let recorded_before: BTreeSet<u64> = records(&log).keys().copied().collect();
        let side_before = side_effects(&side).len();
        let mut child = fanout()
            .args(&args)
            .env("RUN", run_id.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let finished = if run_id <= 25 {
            std::thread::sleep(Duration::from_millis(rand(150)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
                false
            } else {
                true
            }
        } else {
            // The exit code counts the failures among the jobs this run ran.
            let code = child.wait().unwrap().code().unwrap();
            assert!((0..=30).contains(&code), "exit code {code}");
            true
        };
        // The jobs of a killed run die with it (parent-death signal): wait
        // until none is left, so that their side effects count for this run.
        let survivors =
            common::wait_for_no_process(side.to_str().unwrap(), Duration::from_secs(10));
        assert!(
            survivors.is_empty(),
            "jobs outlived the killed run: {survivors:?}"
        );
        let ran: Vec<u64> = side_effects(&side)[side_before..]
            .iter()
            .map(|&(seq, _)| seq)
            .collect();
        let rerun: Vec<u64> = ran
            .iter()
            .copied()
            .filter(|s| recorded_before.contains(s))
            .collect();
        assert!(
            rerun.is_empty(),
            "run {run_id} re-ran recorded jobs {rerun:?} (seed {seed})"
        );
        if finished {
            break;
        }
        let recorded: BTreeSet<u64> = records(&log).keys().copied().collect();
        let unrecorded = ran.iter().filter(|s| !recorded.contains(s)).count();
        max_unrecorded = max_unrecorded.max(unrecorded);
        assert!(
            unrecorded <= PARALLEL,
            "run {run_id}: {unrecorded} jobs started but not recorded (seed {seed})"
        );
        // Half the kills also tear the last line (a run killed before it
        // created the joblog left nothing to tear).
        if let (0, Ok(text)) = (rand(2), std::fs::read(&log)) {
            if let Some(last) = text[..text.len().saturating_sub(1)]
                .iter()
                .rposition(|&b| b == b'\n')
            {
                let cut = last + 1 + rand((text.len() - last - 1) as u64) as usize;
                std::fs::write(&log, &text[..cut]).unwrap();
            }
        }
    }
    let recs = records(&log);
    assert_eq!(recs.len() as u64, JOBS, "lost jobs (seed {seed})");
    assert!(
        recs.values().all(|v| v.len() == 1),
        "duplicate records (seed {seed})"
    );
    for (seq, exits) in &recs {
        assert_eq!(exits[0] != 0, seq % 10 == 0, "seq {seq}");
    }
    let ran: BTreeSet<u64> = side_effects(&side)
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(ran.len() as u64, JOBS);
    eprintln!("kills {kills}, max jobs started but unrecorded at a kill {max_unrecorded}");
}
