//! Behaviour that must match GNU parallel, checked by running both tools on
//! the same arguments (skipped with a note when `parallel` is not installed),
//! plus the same expectations written out so they hold without it.

mod common;

use common::{fanout_out, same_as_gnu, same_script_as_gnu};

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

#[test]
fn perl_replacement_strings_evaluate_like_gnu_parallel() {
    same_as_gnu(
        &["-k", "echo", "{= $_ = uc($_) =}", ":::", "ab", "c d"],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "echo", "{= $_ = ++$n =}", "{}", ":::", "a", "b", "c"],
        b"",
        false,
    );
    same_as_gnu(
        &[
            "-k",
            "echo",
            "{=2 s/x/y/ =}",
            "{=1 $_ = length $_ =}",
            ":::",
            "abc",
            ":::",
            "xx",
        ],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "echo", "{= $_ = Q($_); uq() =}", ":::", "a b"],
        b"",
        false,
    );
    same_as_gnu(
        &[
            "-k",
            "echo",
            "{= $_ = $arg[2] . seq() . total_jobs() =}",
            ":::",
            "a",
            ":::",
            "b",
        ],
        b"",
        false,
    );
    // skip() counts as a failed job (exit -2 in the joblog).
    same_as_gnu(
        &["-k", "echo", "{= skip() if /2/ =}", ":::", "1", "2", "3"],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "--filter", "{} > 1", "echo", ":::", "1", "2", "3"],
        b"",
        false,
    );
    same_as_gnu(
        &["--parens", ",,,,", "echo", ",,s/I/O/g,,", ":::", "FII"],
        b"",
        false,
    );
}

#[test]
fn plus_and_custom_replacement_strings_match_gnu_parallel() {
    let mut args = vec![
        "-k", "--plus", "echo", "{..}", "{+..}", "{/..}", "{+/}", "{+.}", "{...}", "{##}", "{0#}",
        ":::",
    ];
    args.extend(["dir/sub/file.ex1.ex2.ex3", "a.b", "plain"]);
    same_as_gnu(&args, b"", false);
    for s in [
        "{:-def}", "{:2}", "{:1:2}", "{#b}", "{##*b}", "{%c}", "{%%b*}", "{/b/X}", "{//b/X}",
        "{^a}", "{^^b}", "{,A}", "{,,B}",
    ] {
        same_as_gnu(
            &["-k", "--plus", "echo", s, ":::", "abcb", "Abc", ""],
            b"",
            false,
        );
    }
    same_as_gnu(
        &[
            "-k",
            "--plus",
            "echo",
            "{choose_k}",
            ":::",
            "A",
            "B",
            "C",
            ":::",
            "A",
            "B",
            "C",
        ],
        b"",
        false,
    );
    same_as_gnu(
        &[
            "-k", "--plus", "echo", "{uniq}", ":::", "A", "B", ":::", "A", "B",
        ],
        b"",
        false,
    );
    same_as_gnu(
        &[
            "-k",
            "--rpl",
            "{%(.*?)} s/$$1//",
            "echo",
            "{%.tar.gz}",
            ":::",
            "a.tar.gz",
        ],
        b"",
        false,
    );
    same_as_gnu(
        &[
            "-k",
            "--rpl",
            "{..} s:\\.[^.]+$::;s:\\.[^.]+$::;",
            "echo",
            "{2..}",
            ":::",
            "a",
            ":::",
            "b.c.d",
        ],
        b"",
        false,
    );
    same_as_gnu(&["-k", "-I", "XX", "echo", "XX", ":::", "a"], b"", false);
    same_as_gnu(
        &[
            "-k", "--er", "EE", "--bnr", "BB", "echo", "EE", "BB", ":::", "d/a.b",
        ],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "--seqreplace", "SS", "echo", "SS", ":::", "a", "b"],
        b"",
        false,
    );
}

#[test]
fn several_arguments_per_job_match_gnu_parallel() {
    let inputs: Vec<String> = (1..=11).map(|i| format!("in {i}")).collect();
    let with = |opts: &[&str]| {
        let mut args: Vec<&str> = vec!["-k"];
        args.extend(opts);
        args.push(":::");
        args.extend(inputs.iter().map(String::as_str));
        same_as_gnu(&args, b"", false);
    };
    with(&["-n3", "echo"]);
    with(&["-N3", "echo", "{1}+{3}", "{-1}"]);
    with(&["-N2", "echo", "x{}y"]);
    with(&["-n2", "echo", "x{}y"]);
    with(&["-j3", "-m", "echo"]);
    with(&["-j3", "-X", "echo", "x{}y", "{#}"]);
    with(&["--xargs", "echo"]);
    with(&["-n0", "echo", "no args"]);
    with(&["-L2", "echo"]);
    // Long inputs: -X/-m fill each command line up to GNU's limit.
    let long: Vec<String> = (0..3000).map(|i| format!("{i:0>40}")).collect();
    for opt in ["-X", "-m", "--xargs"] {
        let mut args = vec!["-k", "-j2", opt, "echo", "p{}q", ":::"];
        args.extend(long.iter().map(String::as_str));
        same_as_gnu(&args, b"", false);
    }
}

#[test]
fn columns_headers_and_linking_match_gnu_parallel() {
    same_as_gnu(
        &["-k", "--colsep", ",", "echo", "{2}-{1}"],
        b"a , b\nc,d,e\n,\n",
        false,
    );
    same_as_gnu(
        &["-k", "--colsep", "\\s+", "--trim", "n", "echo", "[{1}]"],
        b" a b\n",
        false,
    );
    same_as_gnu(
        &[
            "-k", "--header", ":", "echo", "{f1}{f2}", ":::", "f1", "1", "2", ":::", "f2", "x",
        ],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "--header", ":", "--colsep", "\t", "echo", "{b}"],
        b"a\tb\n1\t2\n3\t4\n",
        false,
    );
    same_as_gnu(
        &[
            "-k", "--link", "echo", ":::", "a", "b", "c", ":::", "1", "2",
        ],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "--xapply", "echo", ":::", "a", ":::", "1", "2"],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "echo", ":::", "a", "b", ":::", "1", ":::+", "x", "y"],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "echo", "{1}{2}", ":::", "a", "b", "::::", "/dev/null"],
        b"",
        false,
    );
}

#[test]
fn reading_rules_match_gnu_parallel() {
    same_as_gnu(&["-k", "-E", "stop", "echo"], b"a\nstop\nb\n", false);
    same_as_gnu(
        &["-k", "--eof=stop", "echo", ":::", "a", "stop", "b"],
        b"",
        false,
    );
    same_as_gnu(&["-k", "-r", "echo", "x"], b"a\n  \n\nb\n", false);
    same_as_gnu(&["-k", "-d", "\\r\\n", "echo"], b"a\r\nb\r\n", false);
    same_as_gnu(&["-k", "-d", "\\t", "echo"], b"a\tb", false);
    same_as_gnu(&["-k", "echo", ":::", "a\nb", "c"], b"", false);
    same_as_gnu(&["-k", "-0", "echo", ":::", "a\nb", "c"], b"", false);
    same_as_gnu(
        &["-k", "--arg-sep", ",,", "echo", ",,", "a", ":::"],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "--arg-file-sep", "//", "echo", "//", "/dev/null"],
        b"",
        false,
    );
    same_as_gnu(&["-k", "--skip-first-line", "echo"], b"head\na\nb\n", false);
}

#[test]
fn quoting_printing_and_tags_match_gnu_parallel() {
    same_as_gnu(
        &[
            "-k",
            "-q",
            "perl",
            "-e",
            "print \"@ARGV\\n\"",
            ":::",
            "a b",
            "c",
        ],
        b"",
        false,
    );
    same_as_gnu(&["-k", "-v", "echo", ":::", "a b", "c"], b"", false);
    same_as_gnu(&["-k", "--dry-run", "-v", "echo", ":::", "x"], b"", false);
    same_as_gnu(
        &["-k", "--tagstring", "<{}>\\t{#}", "echo", ":::", "a", "b"],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "--tag", "printf", "a\\rb\\nc", ":::", "x"],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "--tag", "echo", "{1}", ":::", "a", ":::", "b c"],
        b"",
        false,
    );
    same_as_gnu(&["-k", "{}", ":::", "echo a  b"], b"", false);
    same_as_gnu(
        &["-k", "{1}", "{2}", ":::", "echo", ":::", "x  y"],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "--dry-run", "echo", "{3}", "x", ":::", "a"],
        b"",
        false,
    );
    same_as_gnu(
        &[
            "-k",
            "--dry-run",
            "--plus",
            "echo",
            "{choose_k}",
            ":::",
            "a",
            "b",
            ":::",
            "a",
            "b",
        ],
        b"",
        false,
    );
}

#[test]
fn results_in_every_format_match_gnu_parallel() {
    let list = "; find . -type f | sort | while read f; do echo \"== $f\"; cat \"$f\"; done";
    for name in ["outdir", "outdir/", "out_{}", "sub/{1}/{2}.txt"] {
        same_script_as_gnu(
            &format!("parallel -k --results '{name}' 'echo o{{}}; echo e >&2' ::: a b ::: 1{list}"),
            b"",
            false,
        );
    }
    let mask = "| perl -pe 's/^(\\d+[,\\t]:[,\\t])[0-9.]+([,\\t])[0-9.]+/$1T$2R/; s/\"(Starttime|JobRuntime)\": [0-9.]+/$1/g'";
    for table in ["o.csv", "o.tsv", "o.json"] {
        same_script_as_gnu(
            &format!("parallel -k --results {table} 'echo \"o {{}}\"; exit {{}}' ::: 0 1 a,b; echo $?; cat {table} {mask}"),
            b"",
            false,
        );
    }
    same_script_as_gnu(
        &format!("parallel -k --results -.csv echo ::: a b {mask}"),
        b"",
        false,
    );
    same_script_as_gnu(
        &format!("parallel -k --header : --results o.csv echo {{x}} ::: x 1 2; cat o.csv {mask}"),
        b"",
        false,
    );
}

#[test]
fn options_from_the_environment_and_profiles_match_gnu_parallel() {
    same_script_as_gnu("PARALLEL='-k --tag' parallel echo ::: a b", b"", false);
    same_script_as_gnu(
        "PARALLEL=\"-j1 --tagstring 'x y'\" parallel echo ::: a b",
        b"",
        false,
    );
    same_script_as_gnu(
        "mkdir -p p && echo '-k --tag' > p/tagged && PARALLEL_HOME=$PWD/p parallel -J tagged echo ::: a b",
        b"",
        false,
    );
    same_script_as_gnu(
        "mkdir -p p && echo '--tag # a comment' > p/config && PARALLEL_HOME=$PWD/p parallel -k echo ::: a b; \
         PARALLEL_HOME=$PWD/p parallel --plain -k echo ::: c",
        b"",
        false,
    );
    // Getopt::Long: any case, unique prefixes.
    same_as_gnu(
        &["--KEEP-ORDER", "--tagstr", "x", "echo", ":::", "a"],
        b"",
        false,
    );
    same_as_gnu(&["--keep", "echo", ":::", "a", "b"], b"", false);
}

#[test]
fn jobs_run_with_the_shell_fanout_was_started_from_like_gnu_parallel() {
    same_script_as_gnu(
        "f() { echo \"f:$1\"; }; export -f f; parallel -k f ::: a b",
        b"",
        false,
    );
    same_script_as_gnu("parallel -k 'echo {1..3}' ::: x", b"", false);
    same_script_as_gnu(
        "parallel -j1 -k 'echo $PARALLEL_SEQ $PARALLEL_JOBSLOT0 $PARALLEL_SSHLOGIN' ::: a b",
        b"",
        false,
    );
    same_script_as_gnu(
        "parallel -j1 -k --process-slot-var=S 'echo $S' ::: a b",
        b"",
        false,
    );
}

#[test]
fn halt_now_prints_nothing_after_the_halt_like_gnu_parallel() {
    same_as_gnu(
        &[
            "--halt",
            "now,fail=1",
            "echo {}; sleep {}; exit {}",
            ":::",
            "2",
            "1",
        ],
        b"",
        false,
    );
    same_as_gnu(
        &[
            "-k",
            "--halt",
            "now,fail=1",
            "echo {}; sleep {}; exit {}",
            ":::",
            "2",
            "1",
        ],
        b"",
        false,
    );
}

#[test]
fn pipe_blocks_match_gnu_parallel() {
    let input: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    let input = input.as_bytes();
    for opts in [
        &["--pipe", "--block", "10k", "wc"][..],
        &["--pipe", "-N333", "wc"],
        &["--pipe", "-L7", "--block", "1k", "wc"],
        &["--pipe", "--recend", "", "--block", "4k", "md5sum"],
        &["--pipe", "--block", "10k", "--cat", "wc -l < {}"],
        &["--pipe", "--block", "10k", "--fifo", "wc -l < {}"],
        &["--pipe", "--block", "3k", "-v", "echo {#}; wc -c"],
        &["--pipe", "--skip-first-line", "-N5000", "head -1"],
        &["--pipe", "--header", "2", "-N4000", "head -3"],
    ] {
        let mut args = vec!["-k"];
        args.extend(opts);
        same_as_gnu(&args, input, false);
    }
    let records = b"/foo, bar/, /baz, qux/,\n";
    for opts in [
        &[
            "-N1",
            "--recend",
            ", ",
            "--pipe",
            "echo JOB{#}; cat; echo END",
        ][..],
        &[
            "-N1",
            "--recstart",
            "/",
            "--pipe",
            "echo JOB{#}; cat; echo END",
        ],
        &[
            "-N1",
            "--recend",
            ", ",
            "--recstart",
            "/",
            "--rrs",
            "--pipe",
            "echo JOB{#}; cat; echo END",
        ],
    ] {
        let mut args = vec!["-k"];
        args.extend(opts);
        same_as_gnu(&args, records, false);
    }
    same_as_gnu(
        &[
            "-k",
            "-N1",
            "--regexp",
            "--recend",
            ",_+",
            "--pipe",
            "echo JOB{#}; cat; echo END",
        ],
        b"foo,bar,_baz,__qux,\n",
        false,
    );
    // GNU parallel's --cat cleanup loses the command's exit status unless
    // the command exits the shell itself.
    same_as_gnu(
        &["-k", "--pipe", "-N1", "--cat", "cat {}; false"],
        b"a\nb\n",
        false,
    );
    same_as_gnu(
        &["-k", "--pipe", "-N1", "--cat", "cat {}; exit 3"],
        b"a\nb\n",
        false,
    );
    // Round robin: blocks go to the jobs in turn; jobs that got none are
    // counted but not printed.
    same_as_gnu(
        &["--pipe", "-j3", "--round-robin", "echo job; cat; exit 3"],
        b"a\n",
        false,
    );
    // Which job gets which block depends on which is free first: compare
    // the totals.
    same_script_as_gnu(
        "seq 20000 | parallel --pipe -j2 --round-robin --block 10k wc -l | awk '{ s += $1 } END { print s, NR }'",
        b"",
        false,
    );
    // A job that does not read all of its block is killed by SIGPIPE (GNU
    // parallel's writer dies), and counts as failed.
    same_as_gnu(
        &["-k", "--pipe", "--block", "100k", "head -1"],
        input,
        false,
    );
}

#[test]
fn keep_order_with_line_buffer_prints_what_gnu_parallel_prints() {
    same_as_gnu(
        &[
            "-k",
            "--lb",
            "--tag",
            "-j3",
            "printf 'a\\nb'; sleep 0.{}; printf 'c\\n'; printf x",
            ":::",
            "3",
            "1",
            "2",
        ],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "--lb", "-j2", "seq {}", ":::", "30000", "3", "20000"],
        b"",
        false,
    );
}

#[test]
fn group_by_keeps_equal_values_in_one_block_like_gnu_parallel() {
    let table: String = (0..3000)
        .map(|i| format!("{}\t{}\tname{}\n", i / 7, i % 5, i / 400))
        .collect();
    let table = table.as_bytes();
    for opts in [
        &["--group-by", "1", "--block", "1k", "wc"][..],
        &[
            "--pipe",
            "--group-by",
            "3",
            "--block",
            "10k",
            "-k",
            "md5sum",
        ],
        &["--group-by", "1", "-N2", "sort -u | wc -l"],
        // A Perl expression on the column's value, or on the whole line.
        &["--group-by", "1 $_ = int($_ / 10)", "--block", "1", "wc -l"],
        &["--group-by", "$_ = substr($_, 0, 2)", "-N1", "wc -l"],
    ] {
        let mut args = vec!["-k"];
        args.extend(opts);
        same_as_gnu(&args, table, false);
    }
    let csv = b"id,kind,n\n1,a,0\n1,b,0\n2,a,0\n3,c,0\n3,c,0\n";
    // By name: the header line prefixes every block. (The last column's
    // name ends with the newline, so GNU parallel finds no `n`.)
    for name in ["kind", "id", "n"] {
        same_as_gnu(
            &[
                "-k",
                "--colsep",
                ",",
                "--group-by",
                name,
                "-N1",
                "cat; echo --",
            ],
            csv,
            false,
        );
    }
    same_as_gnu(
        &[
            "-k",
            "--colsep",
            ",",
            "--group-by",
            "id",
            "--header",
            ":",
            "-N1",
            "cat; echo --",
        ],
        csv,
        false,
    );
    // A name the header does not have, and options --group-by excludes.
    same_as_gnu(&["--colsep", ",", "--group-by", "nope", "cat"], csv, false);
    same_as_gnu(&["--group-by", "1", "--recend", "x", "cat"], csv, false);
    same_as_gnu(&["--group-by", "1", "--rrs", "cat"], csv, false);
}

#[test]
fn pipepart_splits_files_like_gnu_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    let text: String = (1..=50000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap();
    same_as_gnu(
        &["-k", "--pipepart", "-a", file, "--block", "33k", "wc"],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "-j3", "--pipepart", "-a", file, "--block", "-2", "wc"],
        b"",
        false,
    );
    same_as_gnu(
        &["-k", "--pipepart", "--block", "100k", "wc", "::::", file],
        b"",
        false,
    );
    same_as_gnu(
        &[
            "-k",
            "--pipepart",
            "-a",
            file,
            "--block",
            "100k",
            "--cat",
            "wc -l < {}",
        ],
        b"",
        false,
    );
    same_as_gnu(
        &[
            "-k",
            "--pipepart",
            "-a",
            file,
            "--header",
            "1",
            "--block",
            "100k",
            "head -2",
        ],
        b"",
        false,
    );
}

#[test]
fn tee_gives_all_input_to_every_job_like_gnu_parallel() {
    let input: String = (1..=3000).map(|i| format!("{i}\n")).collect();
    same_as_gnu(
        &["-k", "--pipe", "--tee", "wc", "{}", ":::", "-w", "-l", "-c"],
        input.as_bytes(),
        false,
    );
    same_as_gnu(
        &[
            "-k",
            "--pipe",
            "--tee",
            "--tag",
            "grep {1} | wc -l",
            ":::",
            "1",
            "7",
            "99",
        ],
        input.as_bytes(),
        false,
    );
}

#[test]
fn timeouts_in_percent_of_the_median_match_gnu_parallel() {
    // The 3 s job exceeds 200% of the median (0.3 s) of those that
    // succeeded before it.
    same_as_gnu(
        &[
            "-j1",
            "-k",
            "--timeout",
            "200%",
            "sleep {}; echo {}",
            ":::",
            "0.3",
            "0.3",
            "3",
            "0.2",
        ],
        b"",
        false,
    );
}
