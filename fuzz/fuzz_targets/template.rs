//! Fuzzes the command template: GNU parallel's replacement-string parser,
//! the shell rendering and the no-shell argv rendering.
//!
//! Input: UTF-8 text; `\x01` separates the command from the inputs (one per
//! source), `\x02` separates command words. Checked, besides "no panic":
//! - every quoted value reads back, to a POSIX shell, as the value itself;
//! - when the template needs no shell, the argv fanout executes directly is
//!   exactly the words a shell would make of the rendered command line.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/fanout-cli/src/quote.rs"]
mod quote;
#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/fanout-cli/src/template.rs"]
mod template;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
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
    let Ok(t) = template::Template::parse(&words, inputs.len()) else {
        return;
    };
    let seq = data.len() as u64;
    let slot = 1 + data.first().copied().unwrap_or(0) as usize % 8;
    let line = t.render_shell(&inputs, seq, slot);
    if !t.needs_shell() {
        let argv = t.render_argv(&inputs, seq, slot);
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
