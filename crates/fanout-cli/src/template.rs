//! The command template: GNU parallel's replacement strings, rendered either
//! as a shell command line or, when no shell is needed, as an argv.

use anyhow::bail;

use crate::quote::shell_quote;

/// A parsed command template.
///
/// Rendering follows GNU parallel: the command words are joined with spaces
/// (not quoted), each replaced input is quoted for the shell, `{}` stands for
/// all inputs of a job separated by spaces, and a template without any
/// replacement string gets ` {}` appended. An empty command means "each
/// input is itself a command", inserted unquoted.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    parts: Vec<Part>,
    direct: bool,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Text copied as it is.
    Literal(String),
    /// `{}`-style replacement: one input source (1-based), or all of them.
    Input {
        source: Option<usize>,
        transform: Transform,
    },
    /// `{#}`: the job's sequence number, from 1.
    Seq,
    /// `{%}`: the job's slot, from 1 to `-j`.
    Slot,
    /// The whole input, unquoted: used when the command is empty.
    RawInputs,
}

/// What a replacement string does to an input before inserting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transform {
    /// `{}`: unchanged.
    Whole,
    /// `{.}`: without its extension.
    NoExt,
    /// `{/}`: without its directory.
    Basename,
    /// `{//}`: only its directory (Perl's `File::Basename::dirname`).
    Dirname,
    /// `{/.}`: without directory and extension.
    BasenameNoExt,
}

/// Shell builtins and keywords: a command starting with one of these needs
/// the shell, either because there is no such program or because the program
/// behaves differently (dash's `echo` expands backslashes, `/bin/echo` does
/// not). `true` and `false` are left out: their programs behave the same.
const SHELL_WORDS: &[&str] = &[
    ".", ":", "[", "[[", "!", "{", "}", "alias", "bg", "break", "case", "cd", "command",
    "continue", "do", "done", "echo", "elif", "else", "esac", "eval", "exec", "exit", "export",
    "fc", "fg", "fi", "for", "function", "getopts", "hash", "if", "jobs", "kill", "let", "local",
    "printf", "pwd", "read", "readonly", "return", "select", "set", "shift", "source", "test",
    "then", "time", "times", "trap", "type", "ulimit", "umask", "unalias", "unset", "until",
    "wait", "while",
];

impl Template {
    /// Parses the command words for a run with `sources` input sources.
    ///
    /// # Errors
    /// A positional replacement string `{N}` whose source does not exist.
    pub(crate) fn parse(words: &[String], sources: usize) -> anyhow::Result<Template> {
        if words.is_empty() {
            return Ok(Template {
                parts: vec![Part::RawInputs],
                direct: false,
            });
        }
        let text = words.join(" ");
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text.as_str();
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            rest = &rest[open..];
            let close = rest[1..].find(['{', '}']).map(|i| i + 1);
            let parsed = match close {
                Some(close) if rest.as_bytes()[close] == b'}' => {
                    parse_placeholder(&rest[1..close], sources)?.map(|part| (part, close + 1))
                }
                _ => None,
            };
            match parsed {
                Some((part, len)) => {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                    rest = &rest[len..];
                }
                None => {
                    literal.push('{');
                    rest = &rest[1..];
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if !parts.iter().any(|p| !matches!(p, Part::Literal(_))) {
            parts.push(Part::Literal(" ".to_owned()));
            parts.push(Part::Input {
                source: None,
                transform: Transform::Whole,
            });
        }
        let direct = can_run_without_shell(&parts);
        Ok(Template { parts, direct })
    }

    /// Whether the command must run through a shell; when it does not,
    /// [`Template::render_argv`] gives the same words the shell would.
    pub(crate) fn needs_shell(&self) -> bool {
        !self.direct
    }

    /// The command line for the shell, with every input quoted as GNU
    /// parallel quotes it; also what `--dry-run` prints.
    pub(crate) fn render_shell(&self, inputs: &[&str], seq: u64, slot: usize) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Seq => out.push_str(&seq.to_string()),
                Part::Slot => out.push_str(&slot.to_string()),
                Part::RawInputs => out.push_str(&inputs.join(" ")),
                Part::Input { source, transform } => {
                    for (i, value) in selected(inputs, *source).iter().enumerate() {
                        if i > 0 {
                            out.push(' ');
                        }
                        out.push_str(&shell_quote(&transform.apply(value)));
                    }
                }
            }
        }
        out
    }

    /// The argv the shell would build from [`Template::render_shell`]'s line;
    /// only meaningful when [`Template::needs_shell`] is false.
    pub(crate) fn render_argv(&self, inputs: &[&str], seq: u64, slot: usize) -> Vec<String> {
        let mut words = Vec::new();
        // `None` between words; `Some` once a word has begun, even if empty,
        // because a quoted empty input ('') is still a word to the shell.
        let mut word: Option<String> = None;
        for part in &self.parts {
            let values: Vec<String> = match part {
                Part::Literal(text) => {
                    for piece in text.split_inclusive(' ') {
                        let (body, ends) = match piece.strip_suffix(' ') {
                            Some(body) => (body, true),
                            None => (piece, false),
                        };
                        if !body.is_empty() {
                            word.get_or_insert_with(String::new).push_str(body);
                        }
                        if ends {
                            words.extend(word.take());
                        }
                    }
                    continue;
                }
                Part::Seq => vec![seq.to_string()],
                Part::Slot => vec![slot.to_string()],
                Part::RawInputs => unreachable!("a raw-inputs template always needs the shell"),
                Part::Input { source, transform } => selected(inputs, *source)
                    .iter()
                    .map(|v| transform.apply(v))
                    .collect(),
            };
            for (i, value) in values.into_iter().enumerate() {
                if i > 0 {
                    words.extend(word.take());
                }
                word.get_or_insert_with(String::new).push_str(&value);
            }
        }
        words.extend(word);
        words
    }
}

/// The inputs a replacement string refers to.
fn selected<'a>(inputs: &'a [&'a str], source: Option<usize>) -> &'a [&'a str] {
    match source {
        None => inputs,
        Some(n) => &inputs[n - 1..n],
    }
}

/// Recognises the text between braces; `None` means "not a replacement
/// string", which GNU parallel leaves in place (so `awk '{print}'` works).
fn parse_placeholder(inner: &str, sources: usize) -> anyhow::Result<Option<Part>> {
    match inner {
        "#" => return Ok(Some(Part::Seq)),
        "%" => return Ok(Some(Part::Slot)),
        _ => {}
    }
    let digits = inner.bytes().take_while(u8::is_ascii_digit).count();
    let transform = match &inner[digits..] {
        "" => Transform::Whole,
        "." => Transform::NoExt,
        "/" => Transform::Basename,
        "//" => Transform::Dirname,
        "/." => Transform::BasenameNoExt,
        _ => return Ok(None),
    };
    if digits == 0 {
        return Ok(Some(Part::Input {
            source: None,
            transform,
        }));
    }
    let n: usize = inner[..digits].parse().unwrap_or(usize::MAX);
    if n == 0 || n > sources {
        bail!(
            "the replacement string {{{inner}}} refers to input source {} but there {}; \
             sources are numbered from 1 in the order of :::, ::::, -a or stdin",
            &inner[..digits],
            if sources == 1 {
                "is only 1".to_owned()
            } else {
                format!("are only {sources}")
            }
        );
    }
    Ok(Some(Part::Input {
        source: Some(n),
        transform,
    }))
}

/// A command can skip the shell when its literal text has no character a
/// shell would interpret and its first word is a literal program name that is
/// not a shell builtin or keyword.
fn can_run_without_shell(parts: &[Part]) -> bool {
    let mut first_word = String::new();
    let mut in_first_word = true;
    for part in parts {
        match part {
            Part::Literal(text) => {
                for c in text.chars() {
                    if c == ' ' {
                        in_first_word = in_first_word && first_word.is_empty();
                        continue;
                    }
                    let plain = c.is_ascii_alphanumeric() || "_-./,:+@%^".contains(c);
                    // `=` is harmless except in the first word, where the
                    // shell reads NAME=value as an assignment.
                    if !(plain || (c == '=' && !in_first_word)) {
                        return false;
                    }
                    if in_first_word {
                        first_word.push(c);
                    }
                }
            }
            Part::RawInputs => return false,
            _ if in_first_word => return false,
            _ => {}
        }
    }
    !first_word.is_empty() && !SHELL_WORDS.contains(&first_word.as_str())
}

impl Transform {
    /// Applies the transform the way GNU parallel's Perl code does.
    fn apply(self, value: &str) -> String {
        match self {
            Transform::Whole => value.to_owned(),
            Transform::NoExt => no_ext(value).to_owned(),
            Transform::Basename => basename(value).to_owned(),
            Transform::Dirname => dirname(value),
            Transform::BasenameNoExt => no_ext(basename(value)).to_owned(),
        }
    }
}

/// `s:\.[^/.]*$::`
fn no_ext(value: &str) -> &str {
    match value.rfind('.') {
        Some(dot) if !value[dot..].contains('/') => &value[..dot],
        _ => value,
    }
}

/// `s:^.*/::`
fn basename(value: &str) -> &str {
    value.rfind('/').map_or(value, |slash| &value[slash + 1..])
}

/// Perl's `File::Basename::dirname` on Unix.
fn dirname(value: &str) -> String {
    let (dir, base) = fileparse(value);
    let dir = strip_trailing_slashes(&dir);
    if !base.is_empty() {
        return dir;
    }
    let (dir, _) = fileparse(&dir);
    strip_trailing_slashes(&dir)
}

/// Perl's `fileparse`: `m{^(.*/)?(.*)}s`, with `./` for a missing directory.
fn fileparse(value: &str) -> (String, String) {
    match value.rfind('/') {
        Some(slash) => (value[..=slash].to_owned(), value[slash + 1..].to_owned()),
        None => ("./".to_owned(), value.to_owned()),
    }
}

/// `s{(.)/*\z}{$1}s`: drops trailing slashes but keeps the first character.
fn strip_trailing_slashes(dir: &str) -> String {
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() {
        dir.get(..1).unwrap_or("").to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(cmd: &str, sources: usize) -> Template {
        let words: Vec<String> = cmd.split(' ').map(str::to_owned).collect();
        Template::parse(&words, sources).unwrap()
    }

    #[test]
    fn replacement_strings_match_gnu_parallel() {
        // From `parallel --dry-run echo {} {.} {/} {//} {/.} ::: ...`.
        let t = template("echo {} {.} {/} {//} {/.}", 1);
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
            assert_eq!(t.render_shell(&[input], 1, 1), want, "input {input:?}");
        }
    }

    #[test]
    fn braces_that_are_not_replacement_strings_stay() {
        let t = template("awk {print} {{}}", 1);
        assert_eq!(t.render_shell(&["a"], 1, 1), "awk {print} {a}");
    }

    #[test]
    fn inputs_are_appended_when_the_command_has_no_replacement_string() {
        let t = template("echo", 2);
        assert_eq!(t.render_shell(&["a", "b c"], 1, 1), "echo a 'b c'");
        let t = template("echo {#}", 1);
        assert_eq!(t.render_shell(&["a"], 7, 1), "echo 7");
    }

    #[test]
    fn positional_replacement_strings_pick_their_source() {
        let t = template("echo {1} {2} {1.} {2/}", 2);
        assert_eq!(t.render_shell(&["a.x", "c/d"], 1, 1), "echo a.x c/d a d");
        assert!(Template::parse(&["echo".into(), "{3}".into()], 2).is_err());
        assert!(Template::parse(&["echo".into(), "{0}".into()], 2).is_err());
    }

    #[test]
    fn an_empty_command_runs_each_input_unquoted() {
        let t = Template::parse(&[], 1).unwrap();
        assert!(t.needs_shell());
        assert_eq!(t.render_shell(&["echo 'q'"], 1, 1), "echo 'q'");
    }

    #[test]
    fn simple_commands_skip_the_shell_and_keep_the_same_words() {
        let t = template("wc -c x{}y {#}", 2);
        assert!(!t.needs_shell());
        assert_eq!(
            t.render_argv(&["a b", ""], 3, 1),
            vec!["wc", "-c", "xa b", "y", "3"]
        );
        assert_eq!(t.render_shell(&["a b", ""], 3, 1), "wc -c x'a b' ''y 3");
    }

    #[test]
    fn shell_syntax_or_builtins_need_the_shell() {
        for cmd in [
            "echo {}",
            "cat {} | wc",
            "FOO=1 env",
            "ls *",
            "exit {}",
            "{} x",
            "ls $HOME",
        ] {
            assert!(template(cmd, 1).needs_shell(), "{cmd}");
        }
        for cmd in ["true", "ls -l {}", "env FOO=1 {}", "sleep {}"] {
            assert!(!template(cmd, 1).needs_shell(), "{cmd}");
        }
    }
}
