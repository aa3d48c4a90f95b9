//! Fuzzes the command template: GNU parallel's replacement-string parser,
//! the shell rendering and the no-shell argv rendering.
//!
//! Input: UTF-8 text; `\x01` separates the command from the inputs (the
//! job's arguments, at most four), `\x02` separates command words; a first
//! byte with bit 7 set turns on `--plus`. Checked, besides "no panic":
//! - every quoted value reads back, to a POSIX shell, as the value itself;
//! - when the template needs no shell, the argv fanout executes directly is
//!   exactly the words a shell would make of the rendered command line.
//!
//! Templates holding a Perl expression (`{= ... =}`, or a replacement string
//! only Perl computes) are compiled but not evaluated: evaluating them runs
//! the fuzzer's text as Perl code.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The two input types and the helper the template module takes from the
/// command's `input` module.
mod input {
    /// One input value.
    pub(crate) type Value = std::sync::Arc<str>;
    /// One argument of a job.
    pub(crate) type Arg = Option<Value>;
    /// Perl's `\s`.
    pub(crate) fn is_perl_space(c: char) -> bool {
        matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C')
    }
}
#[allow(
    dead_code,
    unreachable_pub,
    reason = "the module is the command's; the fuzzer uses part of it"
)]
#[path = "../../crates/fanout-cli/src/quote.rs"]
mod quote;
#[allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    reason = "the module is the command's; the fuzzer uses part of it"
)]
#[path = "../../crates/fanout-cli/src/template/mod.rs"]
mod template;

use template::{Compiler, Evaluator, Exprs, JobValues, Parens, Rpls, Trim};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let plus = data.first().is_some_and(|b| b & 0x80 != 0);
    let mut pieces = text.split('\u{1}');
    let command = pieces.next().unwrap_or_default();
    let words: Vec<String> = if command.is_empty() {
        Vec::new()
    } else {
        command.split('\u{2}').map(str::to_owned).collect()
    };
    let mut inputs: Vec<&str> = pieces.take(4).collect();
    if inputs.is_empty() {
        inputs.push("");
    }
    for value in &inputs {
        let quoted = quote::shell_quote(value);
        assert_eq!(
            shell_words(&quoted).as_deref(),
            Some(&[(*value).to_owned()][..]),
            "quoting {value:?} gave {quoted:?}"
        );
    }
    let mut compiler = Compiler {
        rpls: Rpls::gnu(plus),
        parens: Parens::default(),
        exprs: Exprs::default(),
        context: false,
        unquoted: false,
    };
    let Ok(t) = compiler.command(&words, true, false, &|_| false) else {
        return;
    };
    if compiler.exprs.needs_perl() {
        return;
    }
    let args: Vec<input::Arg> = inputs.iter().map(|a| Some((*a).into())).collect();
    let mut needs = Vec::new();
    t.needs(args.len(), &mut needs);
    let Ok(mut eval) = Evaluator::new(compiler.exprs.clone(), Trim::None, 1, 8) else {
        return;
    };
    let seq = data.len() as u64;
    let slot = 1 + data.first().copied().unwrap_or(0) as usize % 8;
    let mut values = JobValues::default();
    if eval
        .evaluate_into(&mut values, &args, seq, slot, &needs)
        .is_err()
    {
        return;
    }
    let rendered = t.render(args.len(), &values);
    if let Some(argv) = rendered.argv {
        let line = rendered.line;
        assert!(!argv.is_empty(), "no program for {line:?}");
        assert_eq!(
            shell_words(&line),
            Some(argv.clone()),
            "argv {argv:?} differs from the shell's reading of {line:?}"
        );
    }
});

/// The words a POSIX shell makes of `line`, for the subset of shell syntax
/// that quoted values and no-shell templates use: blanks, single quotes,
/// double quotes, backslashes. `None` for anything else (expansions,
/// operators, an unterminated quote), which a no-shell line must not hold.
fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('$' | '`' | '"' | '\\') => w.push(c),
                            '\n' => {}
                            c => {
                                w.push('\\');
                                w.push(c);
                            }
                        },
                        '$' | '`' => return None,
                        c => w.push(c),
                    }
                }
            }
            '\\' => match chars.next()? {
                '\n' => {}
                c => word.get_or_insert_with(String::new).push(c),
            },
            '$' | '`' | '|' | '&' | ';' | '<' | '>' | '(' | ')' | '*' | '?' | '[' | '#' | '~'
            | '{' | '}' | '!' => return None,
            // `=` only matters in a leading NAME=value word.
            '=' if words.is_empty() => return None,
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Some(words)
}
