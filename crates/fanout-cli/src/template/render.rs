//! Rendering a template for a job, GNU parallel's `replace_placeholders`:
//! the command words become tokens (text split at white space, each slot
//! its own token, an unquoted space between words); a slot expands once per
//! argument of the job (a positional one once), or with context replace
//! (`-X`) the whole white-space-delimited group around it does; the result
//! is grouped at the unquoted spaces, and with `-q` each group is quoted.

use super::eval::{ExprId, JobValues, NO_ARG};
use crate::quote::shell_quote;

/// A token of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// The unquoted space between two command words (`\0spc`).
    Space,
    /// An empty command word (`\0empty`).
    Empty,
    /// Literal text without white space, or a single white-space character.
    Text(String),
    /// A replacement: a position (1-based, negative from the end) or every
    /// argument in turn, and the expression.
    Slot {
        /// `Some(n)` for `{n…}`.
        position: Option<i64>,
        /// The expression.
        expr: ExprId,
    },
}

/// A rendered token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Out<'a> {
    /// Splits groups.
    Space,
    /// Literal text.
    Text(&'a str),
    /// A replaced value: as inserted (quoted or not) and as it is.
    Value {
        /// What the command line shows.
        shown: String,
        /// The value itself.
        raw: String,
    },
}

/// How slots are expanded and quoted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    /// `-X`, `-N`, `-L`: the white-space-delimited group around a slot is
    /// repeated for each argument.
    pub(crate) context: bool,
    /// Each replaced value is quoted for the shell.
    pub(crate) quote_args: bool,
    /// `-q`: each group of the result is quoted for the shell.
    pub(crate) quote_all: bool,
}

/// The (argument, expression) pairs rendering `tokens` for a job with
/// `nargs` arguments needs, in the order it needs them.
pub(crate) fn needs(tokens: &[Token], nargs: usize, out: &mut Vec<(usize, ExprId)>) {
    let n = nargs.max(1);
    for token in tokens {
        if let Token::Slot { position, expr } = token {
            match position {
                Some(p) => {
                    if let Some(i) = resolve(*p, n) {
                        out.push((i, *expr));
                    }
                }
                None => out.extend((0..n).map(|i| (i, *expr))),
            }
        }
    }
}

/// A position's 0-based index among `n` arguments: `p - 1`, or `n + p`
/// when negative, where a still negative index counts from the end once
/// more (Perl's `$array[-i]`); `None` outside.
fn resolve(p: i64, n: usize) -> Option<usize> {
    let n = n as i64;
    let i = if p > 0 { p - 1 } else { n + p };
    let i = if i < 0 { n + i } else { i };
    (0..n).contains(&i).then_some(i as usize)
}

/// Renders `tokens` into groups of output tokens.
pub(crate) fn render<'t>(
    tokens: &'t [Token],
    nargs: usize,
    values: &JobValues,
    mode: Mode,
) -> Vec<Vec<Out<'t>>> {
    // Jobs always have at least one argument (an empty one when the input
    // gives none, as in GNU parallel).
    let n = nargs.max(1);
    let value = |arg: usize, expr: ExprId| -> Option<Out<'t>> {
        let v = values.get(arg, expr);
        let text = v.map_or("", |v| v.text.as_str());
        if text == NO_ARG {
            return None;
        }
        let shown = if mode.quote_args && !v.is_some_and(|v| v.unquoted) {
            shell_quote(text)
        } else {
            text.to_owned()
        };
        Some(Out::Value {
            shown,
            raw: text.to_owned(),
        })
    };
    let positional = |p: i64, expr: ExprId| -> Option<Out<'t>> {
        match resolve(p, n) {
            Some(i) => value(i, expr),
            None => Some(Out::Text("")),
        }
    };
    let mut replaced: Vec<Option<Out<'t>>> = Vec::new();
    let text = |t: &'t Token| -> Option<Out<'t>> {
        match t {
            Token::Space => Some(Out::Space),
            Token::Empty => Some(Out::Text("")),
            Token::Text(s) => Some(Out::Text(s)),
            Token::Slot { .. } => None,
        }
    };
    if mode.context {
        let mut group: Vec<&'t Token> = Vec::new();
        let ends_group =
            |t: Option<&Token>| matches!(t, None | Some(Token::Space)) || is_ws(t, &[" ", "\t"]);
        for t in tokens.iter().map(Some).chain(std::iter::once(None)) {
            if ends_group(t) {
                if group.iter().any(|g| matches!(g, Token::Slot { .. })) {
                    for arg in 0..n {
                        if arg > 0 {
                            replaced.push(Some(Out::Space));
                        }
                        let mut normal = false;
                        for g in &group {
                            match g {
                                Token::Slot {
                                    position: Some(p),
                                    expr,
                                } if *p != 0 => replaced.push(positional(*p, *expr)),
                                Token::Slot { expr, .. } => {
                                    normal = true;
                                    replaced.push(value(arg, *expr));
                                }
                                other => replaced.push(text(other)),
                            }
                        }
                        if !normal {
                            break;
                        }
                    }
                } else {
                    replaced.extend(group.iter().map(|g| text(g)));
                }
                group.clear();
            }
            match t {
                Some(Token::Space) => replaced.push(Some(Out::Space)),
                Some(t) if is_ws(Some(t), &[" "]) => replaced.push(text(t)),
                Some(t) => group.push(t),
                None => {}
            }
        }
    } else {
        for t in tokens {
            match t {
                Token::Slot {
                    position: Some(p),
                    expr,
                } if *p != 0 => replaced.push(positional(*p, *expr)),
                Token::Slot { expr, .. } => {
                    for arg in 0..n {
                        if arg > 0 {
                            replaced.push(Some(Out::Space));
                        }
                        replaced.push(value(arg, *expr));
                    }
                }
                other => replaced.push(text(other)),
            }
        }
    }
    let mut groups = vec![Vec::new()];
    for out in replaced.into_iter().flatten() {
        match out {
            Out::Space => groups.push(Vec::new()),
            other => groups.last_mut().expect("one group").push(other),
        }
    }
    groups
}

fn is_ws(t: Option<&Token>, which: &[&str]) -> bool {
    matches!(t, Some(Token::Text(s)) if which.contains(&s.as_str()))
}

/// The command line: groups joined with spaces; with `-q` each non-empty
/// group quoted.
pub(crate) fn shell_line(groups: &[Vec<Out<'_>>], quote_all: bool) -> String {
    let mut words: Vec<String> = Vec::with_capacity(groups.len());
    for group in groups {
        let mut s = String::new();
        for out in group {
            match out {
                Out::Text(t) => s.push_str(t),
                Out::Value { shown, .. } => s.push_str(shown),
                Out::Space => {}
            }
        }
        if quote_all {
            if !group.is_empty() {
                words.push(shell_quote(&s));
            }
        } else {
            words.push(s);
        }
    }
    words.join(" ")
}

/// The argv a POSIX shell makes of [`shell_line`]'s result, for templates
/// whose literal text holds no character the shell interprets other than
/// spaces (checked when the template is compiled).
pub(crate) fn argv(groups: &[Vec<Out<'_>>], quote_all: bool) -> Vec<String> {
    let mut words = Vec::new();
    if quote_all {
        for group in groups.iter().filter(|g| !g.is_empty()) {
            let mut word = String::new();
            for out in group {
                match out {
                    Out::Text(t) => word.push_str(t),
                    Out::Value { raw, .. } => word.push_str(raw),
                    Out::Space => {}
                }
            }
            words.push(word);
        }
        return words;
    }
    // `None` between words; `Some` once a word has begun, even if empty,
    // because a quoted empty value ('') is still a word to the shell.
    for group in groups {
        let mut word: Option<String> = None;
        for out in group {
            match out {
                Out::Text(" ") => words.extend(word.take()),
                Out::Text(t) => {
                    if !t.is_empty() {
                        word.get_or_insert_with(String::new).push_str(t);
                    }
                }
                Out::Value { raw, shown } => {
                    if !shown.is_empty() {
                        word.get_or_insert_with(String::new).push_str(raw);
                    }
                }
                Out::Space => {}
            }
        }
        words.extend(word);
    }
    words
}
