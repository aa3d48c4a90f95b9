//! Output integrity: grouped output never interleaves, `-k` output is
//! byte-identical to a sequential run, results and dry runs say what ran.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{fanout, fanout_out, run};

/// A small deterministic generator, so failures can be replayed from the
/// printed seed without a `rand` dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// Jobs with outputs from 0 bytes to 200 KiB (beyond the 64 KiB pipe
/// buffer), some without a final newline, some writing to stderr too, and
/// random delays so they finish out of order.
fn job_inputs(rng: &mut Lcg, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let size = match rng.next(4) {
                0 => 0,
                1 => rng.next(100),
                2 => rng.next(10_000),
                _ => 65_536 + rng.next(140_000),
            };
            let delay = rng.next(30);
            let newline = if rng.next(2) == 0 { "echo" } else { "true" };
            let err = if rng.next(3) == 0 {
                "echo to-stderr >&2;"
            } else {
                ""
            };
            format!("sleep 0.0{delay:02}; yes job{i} | head -c {size}; {newline}; {err}")
        })
        .collect()
}

#[test]
fn keep_order_output_matches_sequential_run() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let mut rng = Lcg(seed);
    for _ in 0..5 {
        let inputs = job_inputs(&mut rng, 24);
        let mut expected = Vec::new();
        for cmd in &inputs {
            expected.extend(
                Command::new("/bin/sh")
                    .args(["-c", cmd])
                    .stderr(Stdio::null())
                    .output()
                    .unwrap()
                    .stdout,
            );
        }
        let mut args = vec!["-k", "-j6", ":::"];
        args.extend(inputs.iter().map(String::as_str));
        let out = run(fanout(), &args, b"");
        assert_eq!(out.status.code(), Some(0));
        assert!(
            out.stdout == expected,
            "-k output differs from the sequential run (seed {seed})"
        );
    }
}

#[test]
fn grouped_output_is_never_interleaved() {
    // Each job writes 200 KiB of its own word in many small writes; any
    // interleaving would split a job's block.
    let out = run(
        fanout(),
        &[
            "-j8",
            "yes {} | head -n 20000",
            ":::",
            "aa",
            "bb",
            "cc",
            "dd",
            "ee",
            "ff",
            "gg",
            "hh",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut blocks: Vec<(&str, usize)> = Vec::new();
    for line in text.lines() {
        match blocks.last_mut() {
            Some((word, count)) if *word == line => *count += 1,
            _ => blocks.push((line, 1)),
        }
    }
    assert_eq!(
        blocks.len(),
        8,
        "output was interleaved: {} blocks",
        blocks.len()
    );
    assert!(blocks.iter().all(|&(_, n)| n == 20000));
}

#[test]
fn line_buffer_never_splits_a_line() {
    let out = run(
        fanout(),
        &[
            "--line-buffer",
            "-j4",
            "--tag",
            "yes {}{}{}{} | head -n 5000",
            ":::",
            "a",
            "b",
            "c",
            "d",
        ],
        b"",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 20000);
    for line in text.lines() {
        let (tag, body) = line.split_once('\t').unwrap();
        assert_eq!(body, tag.repeat(4), "mixed line {line:?}");
    }
}

#[test]
fn keep_order_line_buffer_prints_the_oldest_jobs_lines_while_it_runs() {
    // Job 1 prints a line, then waits (at most 20 s) for a file the test
    // creates only after reading that line: the line must come out while
    // job 1 runs. Job 2's output, finished long before, follows job 1's.
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("seen");
    let job1 = format!(
        "echo first; i=0; while [ ! -e {f} ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; \
         if [ -e {f} ]; then echo last; else echo 'not printed while running'; fi",
        f = flag.display()
    );
    let mut child = fanout()
        .args(["-k", "--lb", "-j2", "{}", ":::", &job1, "echo second"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    std::fs::write(&flag, "").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "last\nsecond\n");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_closed_stdout_pipe_exits_quietly() {
    let mut child = fanout()
        .args([
            "-j2",
            "seq {} 200000",
            ":::",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
            "7",
            "8",
            "9",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here: fanout's stdout is now a broken pipe.
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn a_json_results_file_holds_one_object_per_job_and_nothing_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("out.json");
    let out = run(
        fanout(),
        &[
            "--results",
            results.to_str().unwrap(),
            "echo out {}; echo err >&2; exit {}",
            ":::",
            "0",
            "3",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "GNU parallel prints nothing with --results"
    );
    let text = std::fs::read_to_string(&results).unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.sort_by_key(|v| v["Seq"].as_u64());
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["V"], serde_json::json!(["3"]));
    assert_eq!(lines[1]["Exitval"], 3);
    assert_eq!(lines[1]["Signal"], 0);
    assert_eq!(lines[1]["Stdout"], "out 3\n");
    assert_eq!(lines[1]["Stderr"], "err\n");
    assert!(lines[1]["JobRuntime"].as_f64().unwrap() >= 0.0);
}

#[test]
fn dry_run_prints_the_commands_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let cmd = format!("touch {}", marker.display());
    let (out, code) = fanout_out(&["--dry-run", &cmd, ":::", "a"], b"");
    assert_eq!(code, 0);
    assert_eq!(out, format!("{cmd} a\n"));
    assert!(!marker.exists());
}

#[test]
fn a_command_without_shell_syntax_gets_the_same_arguments_as_through_the_shell() {
    let inputs = ["a b", "it's", "", "x$y", "*", "-n", "é"];
    let mut direct = vec!["-k", "/bin/echo", "x{}y", ":::"];
    direct.extend(inputs);
    let mut shell = vec!["-k", "/bin/echo x{}y; true", ":::"];
    shell.extend(inputs);
    let (a, _) = fanout_out(&direct, b"");
    let (b, _) = fanout_out(&shell, b"");
    assert_eq!(a, b);
    assert_eq!(a, "xa by\nxit'sy\nxy\nxx$yy\nx*y\nx-ny\nxéy\n");
}

#[test]
fn a_missing_program_fails_like_the_shell_says_not_found() {
    let out = run(fanout(), &["no-such-program-fanout", ":::", "a"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-program-fanout: command not found")
    );
}

#[test]
fn bar_and_eta_leave_the_output_alone_when_stderr_is_not_a_terminal() {
    let out = run(
        fanout(),
        &["-k", "--bar", "--eta", "echo", ":::", "a", "b"],
        b"",
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}
