use super::*;
use crate::input::Arg;

fn compiler(plus: bool, context: bool) -> Compiler {
    Compiler {
        rpls: Rpls::gnu(plus),
        parens: Parens::default(),
        exprs: Exprs::default(),
        context,
        unquoted: false,
    }
}

fn words(cmd: &str) -> Vec<String> {
    cmd.split(' ').map(str::to_owned).collect()
}

/// Renders `cmd` for one job with `args`, natively (no Perl).
fn render_with(
    c: &mut Compiler,
    cmd: &[String],
    args: &[&str],
    seq: u64,
    quote_all: bool,
) -> Rendered {
    let t = c.command(cmd, true, quote_all, &|_| false).unwrap();
    let args: Vec<Arg> = args.iter().map(|a| Some((*a).into())).collect();
    let mut needs = Vec::new();
    t.needs(args.len(), &mut needs);
    let mut eval = Evaluator::new(c.exprs.clone(), Trim::None, 1, 1).unwrap();
    let values = eval.evaluate(&args, seq, 1, &needs).unwrap();
    t.render(args.len(), &values)
}

fn line(cmd: &str, args: &[&str]) -> String {
    render_with(&mut compiler(false, false), &words(cmd), args, 1, false).line
}

#[test]
fn replacement_strings_match_gnu_parallel() {
    // From `parallel --dry-run echo {} {.} {/} {//} {/.} ::: ...`.
    let cases = [
        (
            "/tmp/dir/file.tar.gz",
            "echo /tmp/dir/file.tar.gz /tmp/dir/file.tar file.tar.gz /tmp/dir file.tar",
        ),
        ("rel.txt", "echo rel.txt rel rel.txt . rel"),
        ("/root.x", "echo /root.x /root root.x / root"),
        ("dir/", "echo dir/ dir/ '' . ''"),
        (".hidden", "echo .hidden '' .hidden . ''"),
        (
            "a b/c d.e",
            "echo 'a b/c d.e' 'a b/c d' 'c d.e' 'a b' 'c d'",
        ),
        ("a/b/", "echo a/b/ a/b/ '' a ''"),
        ("a//b", "echo a//b a//b b a b"),
        ("/", "echo / / '' / ''"),
        ("file.", "echo file. file file. . file"),
        ("a.b/c", "echo a.b/c a.b/c c a.b c"),
    ];
    for (input, want) in cases {
        assert_eq!(
            line("echo {} {.} {/} {//} {/.}", &[input]),
            want,
            "input {input:?}"
        );
    }
}

#[test]
fn braces_that_are_not_replacement_strings_stay() {
    assert_eq!(line("awk {print} {{}}", &["a"]), "awk {print} {a}");
}

#[test]
fn inputs_are_appended_when_the_command_has_no_replacement_string() {
    assert_eq!(line("echo", &["a", "b c"]), "echo a 'b c'");
    assert_eq!(
        render_with(
            &mut compiler(false, false),
            &words("echo {#}"),
            &["a"],
            7,
            false
        )
        .line,
        "echo 7"
    );
}

#[test]
fn positional_replacement_strings_pick_their_argument() {
    assert_eq!(
        line("echo {1} {2} {1.} {2/}", &["a.x", "c/d"]),
        "echo a.x c/d a d"
    );
    assert_eq!(line("echo {-1} {-2}", &["a", "b"]), "echo b a");
    // Out of range: nothing (GNU parallel's behaviour), and Perl's
    // wrap-around for a negative index past the start.
    assert_eq!(line("echo {3} x", &["a"]), "echo  x");
    assert_eq!(line("echo {-3}", &["a", "b"]), "echo b");
}

#[test]
fn an_empty_command_runs_each_input_unquoted() {
    let r = render_with(&mut compiler(false, false), &[], &["echo 'q'"], 1, false);
    assert_eq!(r.line, "echo 'q'");
    assert!(r.argv.is_none());
    // A replacement string in the command name turns quoting off.
    assert_eq!(line("{1} {2}", &["echo", "a b"]), "echo a b");
}

#[test]
fn several_arguments_expand_like_gnu_parallel() {
    // -m: a slot repeats; -X: its context group does.
    assert_eq!(line("echo x{}y", &["a", "b c"]), "echo xa 'b c'y");
    let mut x = compiler(false, true);
    assert_eq!(
        render_with(&mut x, &words("echo x{}y {#}"), &["a", "b"], 3, false).line,
        "echo xay xby 3"
    );
}

#[test]
fn quote_all_quotes_each_group() {
    let r = render_with(
        &mut compiler(false, false),
        &["perl".into(), "-e".into(), "print \"@ARGV\"".into()],
        &["a b"],
        1,
        true,
    );
    assert_eq!(r.line, "perl -e 'print \"@ARGV\"' 'a b'");
    assert_eq!(
        r.argv,
        Some(vec![
            "perl".into(),
            "-e".into(),
            "print \"@ARGV\"".into(),
            "a b".into()
        ])
    );
}

#[test]
fn simple_commands_skip_the_shell_and_keep_the_same_words() {
    let r = render_with(
        &mut compiler(false, false),
        &words("wc -c x{}y {#}"),
        &["a b", ""],
        3,
        false,
    );
    assert_eq!(r.line, "wc -c x'a b' ''y 3");
    assert_eq!(
        r.argv,
        Some(vec![
            "wc".into(),
            "-c".into(),
            "xa b".into(),
            "y".into(),
            "3".into()
        ])
    );
}

#[test]
fn shell_syntax_builtins_and_functions_need_the_shell() {
    let needs_shell = |cmd: &str, functions: &[&str]| {
        let mut c = compiler(false, false);
        let is_fn = |name: &str| functions.contains(&name);
        !c.command(&words(cmd), true, false, &is_fn)
            .unwrap()
            .is_direct()
    };
    for cmd in [
        "echo {}",
        "cat {} | wc",
        "FOO=1 env",
        "ls *",
        "exit {}",
        "{} x",
        "ls $HOME",
    ] {
        assert!(needs_shell(cmd, &[]), "{cmd}");
    }
    for cmd in ["true", "ls -l {}", "env FOO=1 {}", "sleep {}"] {
        assert!(!needs_shell(cmd, &[]), "{cmd}");
    }
    assert!(needs_shell("myfunc {}", &["myfunc"]));
}
