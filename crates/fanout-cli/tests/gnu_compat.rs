//! Behaviour that must match GNU parallel, checked by running both tools on
//! the same arguments (skipped with a note when `parallel` is not installed),
//! plus the same expectations written out so they hold without it.

mod common;

use common::{fanout_out, same_as_gnu};

#[test]
fn dry_run_quotes_inputs_like_gnu_parallel() {
    let args = [
        "--dry-run",
        "-k",
        "echo",
        ":::",
        "a b",
        "it's",
        "x$y",
        "plain",
        "a*b",
        "",
        "~home",
        "a,b",
        "a=b",
        "a/b.c",
        "-n",
        "é",
        "a\"b",
        "a\\b",
        "!x",
        "a;b",
        "'",
        "''",
        "tab\tx",
    ];
    same_as_gnu(&args, b"", false);
    let (out, code) = fanout_out(&["--dry-run", "echo", ":::", "it's", "", "a b"], b"");
    assert_eq!(out, "echo 'it'\"'\"'s'\necho ''\necho 'a b'\n");
    assert_eq!(code, 0);
}

#[test]
fn replacement_strings_expand_like_gnu_parallel() {
    let inputs = [
        "/tmp/dir/file.tar.gz",
        "rel.txt",
        "noext",
        "/root.x",
        "dir/",
        ".hidden",
        "a b/c d.e",
        "a//b",
        "/",
        "file.",
    ];
    let mut args = vec![
        "--dry-run",
        "-k",
        "echo",
        "{}",
        "{.}",
        "{/}",
        "{//}",
        "{/.}",
        "{#}",
        ":::",
    ];
    args.extend(inputs);
    same_as_gnu(&args, b"", false);
}

#[test]
fn positional_replacement_strings_pick_their_source_like_gnu_parallel() {
    same_as_gnu(
        &[
            "--dry-run",
            "-k",
            "echo",
            "{1}",
            "{2}",
            "{1.}",
            "{2/}",
            ":::",
            "a.x",
            "b",
            ":::",
            "c/d",
            "e",
        ],
        b"",
        false,
    );
    let (out, _) = fanout_out(
        &["--dry-run", "echo", "{2}-{1}", ":::", "a", "b", ":::", "1"],
        b"",
    );
    assert_eq!(out, "echo 1-a\necho 1-b\n");
}

#[test]
fn several_sources_give_their_cartesian_product_in_gnu_order() {
    same_as_gnu(
        &["-k", "echo", ":::", "a", "b", ":::", "1", "2", "3"],
        b"",
        false,
    );
    let (out, _) = fanout_out(&["-k", "echo", ":::", "a", "b", ":::", "1", "2"], b"");
    assert_eq!(out, "a 1\na 2\nb 1\nb 2\n");
}

#[test]
fn linked_sources_pair_up_like_gnu_parallel() {
    same_as_gnu(
        &["-k", "echo", ":::", "a", "b", ":::+", "1", "2", "3"],
        b"",
        false,
    );
    let (out, _) = fanout_out(&["-k", "echo", ":::", "a", "b", ":::+", "1", "2"], b"");
    assert_eq!(out, "a 1\nb 2\n");
}

#[test]
fn stdin_lines_are_the_default_input_like_gnu_parallel() {
    same_as_gnu(
        &["-k", "echo", "x"],
        b"a\n\nb c\nlast-without-newline",
        false,
    );
}

#[test]
fn null_and_custom_delimiters_split_records_like_gnu_parallel() {
    same_as_gnu(&["-k", "-0", "echo"], b"a\nb\0\0c d\0", false);
    same_as_gnu(&["-k", "-d", ",", "echo"], b"a,b,,c", false);
}

#[test]
fn file_sources_read_records_like_gnu_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let f1 = dir.path().join("f1");
    let f2 = dir.path().join("f2");
    std::fs::write(&f1, "f1a\nf1b\n").unwrap();
    std::fs::write(&f2, "f2a\n").unwrap();
    let (f1, f2) = (f1.to_str().unwrap(), f2.to_str().unwrap());
    same_as_gnu(&["-k", "echo", "::::", f1, f2], b"", false);
    same_as_gnu(&["-k", "-a", f1, "echo", ":::", "x", "y"], b"", false);
    same_as_gnu(&["-k", "echo", ":::", "a", "::::", "-"], b"x\ny\n", false);
}

#[test]
fn an_empty_command_runs_each_input_as_a_command_like_gnu_parallel() {
    same_as_gnu(&["-k", ":::", "echo a  b", "echo 'q'"], b"", false);
}

#[test]
fn tag_prefixes_every_line_like_gnu_parallel() {
    same_as_gnu(
        &["-k", "--tag", "printf 'x\\ny'", ":::", "a", "b c"],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "--tag", "echo", ":::", "a", "b", ":::", "c d"],
        b"",
        false,
    );
}

#[test]
fn exit_code_counts_failed_jobs_like_gnu_parallel() {
    same_as_gnu(&["exit {}", ":::", "0", "1", "2", "3"], b"", true);
    let (_, code) = fanout_out(&["exit {}", ":::", "0", "1", "2", "3"], b"");
    assert_eq!(code, 3);
}

#[test]
fn more_than_a_hundred_failures_exit_with_101_like_gnu_parallel() {
    let input: String = (1..=150).map(|i| format!("{i}\n")).collect();
    same_as_gnu(&["false"], input.as_bytes(), true);
    let (_, code) = fanout_out(&["false"], input.as_bytes());
    assert_eq!(code, 101);
}

#[test]
fn halt_now_on_first_failure_exits_with_the_jobs_code_like_gnu_parallel() {
    same_as_gnu(
        &[
            "--halt",
            "now,fail=1",
            "sleep 0.{}; exit {}",
            ":::",
            "3",
            "5",
            "9",
        ],
        b"",
        true,
    );
    same_as_gnu(&["--halt", "2", "exit {}", ":::", "0", "3"], b"", true);
    same_as_gnu(
        &[
            "-j1",
            "--halt",
            "soon,fail=1",
            "exit {}",
            ":::",
            "0",
            "4",
            "5",
        ],
        b"",
        true,
    );
    same_as_gnu(
        &[
            "-j1",
            "--halt",
            "now,success=1",
            "exit {}",
            ":::",
            "3",
            "0",
            "4",
        ],
        b"",
        true,
    );
}

#[test]
fn halt_on_done_exits_with_the_triggering_jobs_code_like_gnu_parallel() {
    same_as_gnu(&["--halt", "now,done=1", "exit {}", ":::", "3"], b"", true);
    same_as_gnu(&["--halt", "now,done=1", "exit {}", ":::", "0"], b"", true);
}

#[test]
fn a_job_killed_by_a_signal_counts_as_failed_like_gnu_parallel() {
    same_as_gnu(&["kill -{} $$", ":::", "9", "15"], b"", true);
    same_as_gnu(
        &["--halt", "now,fail=1", "kill -9 $$", ":::", "1"],
        b"",
        true,
    );
}

#[test]
fn a_timed_out_job_counts_as_failed_like_gnu_parallel() {
    same_as_gnu(&["--timeout", "0.5", "sleep", ":::", "0.1", "3"], b"", true);
}

#[test]
fn retries_show_only_the_last_attempts_output_like_gnu_parallel() {
    same_as_gnu(
        &["--retries", "3", "echo try; exit 1", ":::", "a"],
        b"",
        false,
    );
}

#[test]
fn no_input_means_no_job_and_exit_zero_like_gnu_parallel() {
    same_as_gnu(&["echo"], b"", false);
    same_as_gnu(&["echo", ":::"], b"", false);
}

#[test]
fn a_missing_program_counts_as_one_failed_job_like_gnu_parallel() {
    same_as_gnu(&["no-such-program-fanout-test", ":::", "a"], b"", false);
}

#[test]
fn halt_percentages_count_all_the_jobs_like_gnu_parallel() {
    // Ten jobs, one at a time so that the order is fixed: which job trips
    // the threshold, and the exit code, must be GNU parallel's.
    let codes = ["0", "1", "0", "1", "1", "0", "0", "1", "0", "0"];
    for spec in [
        "now,done=50%",
        "now,fail=30%",
        "soon,fail=20%",
        "now,success=40%",
        "now,fail=10%",
        "soon,done=100%",
        "20%",
    ] {
        let mut args = vec!["-j1", "-k", "--halt", spec, "echo {}; exit {}", ":::"];
        args.extend(codes);
        same_as_gnu(&args, b"", false);
    }
}
