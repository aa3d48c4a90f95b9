//! Command templates: GNU parallel's replacement strings, rendered for each
//! job as a shell command line or, when no shell is needed, as an argv.
//!
//! A template is compiled the way GNU parallel compiles one ([`parse`]):
//! `{= perl =}` expressions and every shorthand string of the replacement
//! table ([`rpl`]) become slots, each naming an expression ([`eval`]).
//! Rendering ([`render`]) follows GNU parallel's `replace_placeholders`.
//! GNU parallel's seven default strings are computed natively; anything
//! else runs in one long-lived Perl interpreter ([`perl`]).

mod eval;
mod length;
mod parse;
mod perl;
mod render;
mod rpl;

pub(crate) use eval::{Evaluator, ExprId, Exprs, JobValues, Trim};
pub(crate) use length::{usable_line_length, LengthModel, Tally};
pub(crate) use parse::Parens;
pub(crate) use rpl::Rpls;

use parse::{Piece, Words};
use render::{Mode, Token};

/// Shell builtins and keywords (of POSIX sh, bash and dash): a command
/// starting with one of these needs the shell, either because there is no
/// such program or because the program behaves differently (dash's `echo`
/// expands backslashes, `/bin/echo` does not). `true` and `false` are left
/// out: their programs behave the same.
const SHELL_WORDS: &[&str] = &[
    ".",
    ":",
    "[",
    "[[",
    "]]",
    "!",
    "{",
    "}",
    "alias",
    "bg",
    "bind",
    "break",
    "builtin",
    "caller",
    "case",
    "cd",
    "command",
    "compgen",
    "complete",
    "compopt",
    "continue",
    "coproc",
    "declare",
    "dirs",
    "disown",
    "do",
    "done",
    "echo",
    "elif",
    "else",
    "enable",
    "esac",
    "eval",
    "exec",
    "exit",
    "export",
    "fc",
    "fg",
    "fi",
    "for",
    "function",
    "getopts",
    "hash",
    "help",
    "history",
    "if",
    "in",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "select",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "then",
    "time",
    "times",
    "trap",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "until",
    "wait",
    "while",
];

/// What a compiled template needs to know about the run.
#[derive(Debug, Clone)]
pub(crate) struct Compiler {
    /// The replacement table.
    pub(crate) rpls: Rpls,
    /// `{=` and `=}`.
    pub(crate) parens: Parens,
    /// The expressions of every template compiled so far.
    pub(crate) exprs: Exprs,
    /// Context replace (`-X`, `-N`, `-L`).
    pub(crate) context: bool,
    /// Replacements are never quoted (`--cat`, `--fifo`, where `{}` is
    /// `$PARALLEL_TMP`).
    pub(crate) unquoted: bool,
}

/// A compiled template.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    tokens: Vec<Token>,
    mode: Mode,
    /// Whether a rendered command can be executed without a shell.
    direct: bool,
    /// The parsed words (for the length estimate).
    words: Words,
}

/// A template rendered for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// The shell command line (also what `--dry-run` and the joblog show).
    pub(crate) line: String,
    /// The argv, when the command needs no shell.
    pub(crate) argv: Option<Vec<String>>,
}

impl Compiler {
    /// GNU parallel's length estimate for `command`, counting the slots of
    /// `others` (`--tagstring`, `--results`) too.
    pub(crate) fn length_model(&mut self, command: &Template, others: &[&Template]) -> LengthModel {
        let exprs = &mut self.exprs;
        let mut intern = |code: &str| exprs.intern(code);
        let mut model = LengthModel::new(
            &command.words,
            &mut intern,
            command.mode.quote_args,
            command.mode.quote_all,
            self.context,
        );
        for other in others {
            model.add_other(&other.words, &mut intern);
        }
        model
    }

    /// Compiles the command words. Without any replacement string, `{}` is
    /// appended as a word of its own (unless `append` is false, as with
    /// `--pipe`); with an empty command, `{}` is the command. `quote_all` is
    /// `-q`; `functions` names the shell functions the environment exports
    /// (a command naming one needs the shell).
    ///
    /// # Errors
    /// A replacement string whose regular expression fanout cannot compile.
    pub(crate) fn command(
        &mut self,
        words: &[String],
        append: bool,
        quote_all: bool,
        is_function: &dyn Fn(&str) -> bool,
    ) -> anyhow::Result<Template> {
        let merged = parse::merge_parts(words, &self.parens)?;
        let mut parsed = parse::parse_words(&merged, &self.rpls, &self.parens)?;
        if !parse::has_slot(&parsed) && append {
            parsed.push(vec![Piece::Slot(String::new())]);
        }
        let quote_args = !self.unquoted && !quote_all && !parse::slot_in_command_name(&parsed);
        let tokens = self.tokens(&parsed);
        let mode = Mode {
            context: self.context,
            quote_args,
            quote_all,
        };
        let direct = self.can_run_directly(&tokens, mode, is_function);
        Ok(Template {
            tokens,
            mode,
            direct,
            words: parsed,
        })
    }

    /// Compiles a text that is not a command (`--tagstring`, `--results`,
    /// `--filter`): one word, nothing quoted.
    ///
    /// # Errors
    /// As for [`Compiler::command`].
    pub(crate) fn text(&mut self, text: &str) -> anyhow::Result<Template> {
        let parsed = parse::parse_words(&[text.to_owned()], &self.rpls, &self.parens)?;
        let tokens = self.tokens(&parsed);
        Ok(Template {
            tokens,
            mode: Mode {
                context: self.context,
                quote_args: false,
                quote_all: false,
            },
            direct: false,
            words: parsed,
        })
    }

    /// GNU parallel's tokens: an unquoted space between words, an empty
    /// word marked, text split at each white-space character, each slot its
    /// own token.
    fn tokens(&mut self, words: &Words) -> Vec<Token> {
        let mut tokens = Vec::new();
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                tokens.push(Token::Space);
            }
            let empty = word
                .iter()
                .all(|p| matches!(p, Piece::Text(t) if t.is_empty()));
            if empty {
                tokens.push(Token::Empty);
                continue;
            }
            for piece in word {
                match piece {
                    Piece::Text(text) => split_white_space(text, &mut tokens),
                    Piece::Slot(slot) => {
                        let (position, code) = split_position(slot);
                        tokens.push(Token::Slot {
                            position,
                            expr: self.exprs.intern(code),
                        });
                    }
                }
            }
        }
        tokens
    }

    /// A command runs without a shell when the shell would only split it
    /// into words: its literal text holds letters, digits, `_-./,:+@%^`,
    /// `=` after the first word and spaces only; every replacement is
    /// native and quoted; and its first word is a literal program name that
    /// is not a shell builtin, keyword or exported function.
    fn can_run_directly(
        &self,
        tokens: &[Token],
        mode: Mode,
        is_function: &dyn Fn(&str) -> bool,
    ) -> bool {
        if !(mode.quote_args || mode.quote_all) {
            return false;
        }
        let mut first_word = String::new();
        let mut in_first = true;
        for token in tokens {
            match token {
                Token::Space => in_first = in_first && first_word.is_empty(),
                Token::Empty => {
                    if in_first {
                        return false;
                    }
                }
                Token::Text(t) if t == " " => {
                    if mode.quote_all {
                        // Inside a quoted group: part of the word.
                        if in_first {
                            return false;
                        }
                    } else {
                        in_first = in_first && first_word.is_empty();
                    }
                }
                Token::Text(t) => {
                    for c in t.chars() {
                        let plain = c.is_ascii_alphanumeric() || "_-./,:+@%^".contains(c);
                        if !(plain || mode.quote_all || (c == '=' && !in_first)) {
                            return false;
                        }
                        if mode.quote_all && matches!(c, '\t' | '\n' | '\r' | '\x0B' | '\x0C') {
                            return false;
                        }
                    }
                    if in_first {
                        first_word.push_str(t);
                    }
                }
                Token::Slot { expr, .. } => {
                    if in_first || self.exprs.get(*expr).native.is_none() {
                        return false;
                    }
                }
            }
        }
        !first_word.is_empty()
            && !SHELL_WORDS.contains(&first_word.as_str())
            && !is_function(&first_word)
            && !first_word.contains('=')
    }
}

/// Splits text at each white-space character (Perl's `\s`), which becomes a
/// token of its own.
fn split_white_space(text: &str, tokens: &mut Vec<Token>) {
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C') {
            if i > start {
                tokens.push(Token::Text(text[start..i].to_owned()));
            }
            tokens.push(Token::Text(c.to_string()));
            start = i + c.len_utf8();
        }
    }
    if start < text.len() {
        tokens.push(Token::Text(text[start..].to_owned()));
    }
}

/// A slot's text: `(-?\d+)?(.*)`, where a position that Perl reads as false
/// (`0`, `00`) is no position, then the code without a position prefix.
fn split_position(slot: &str) -> (Option<i64>, &str) {
    let neg = slot.starts_with('-');
    let digits_start = usize::from(neg);
    let n = slot[digits_start..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    if n == 0 {
        return (None, rpl::strip_position(slot));
    }
    let number = &slot[..digits_start + n];
    let rest = rpl::strip_position(&slot[digits_start + n..]);
    // Perl's only false number strings here: "0".
    if number == "0" {
        return (None, rest);
    }
    (
        Some(
            number
                .parse()
                .unwrap_or(if neg { i64::MIN } else { i64::MAX }),
        ),
        rest,
    )
}

impl Template {
    /// Appends the (argument, expression) pairs a job with `nargs`
    /// arguments needs.
    pub(crate) fn needs(&self, nargs: usize, out: &mut Vec<(usize, ExprId)>) {
        render::needs(&self.tokens, nargs, out);
    }

    /// Renders the template for a job whose values are computed.
    pub(crate) fn render(&self, nargs: usize, values: &JobValues) -> Rendered {
        let groups = render::render(&self.tokens, nargs, values, self.mode);
        let line = render::shell_line(&groups, self.mode.quote_all);
        let argv = self
            .direct
            .then(|| render::argv(&groups, self.mode.quote_all));
        Rendered { line, argv }
    }

    /// Renders a text template (no quoting, groups joined with spaces).
    pub(crate) fn render_text(&self, nargs: usize, values: &JobValues) -> String {
        let groups = render::render(&self.tokens, nargs, values, self.mode);
        render::shell_line(&groups, false)
    }

    /// Whether the command can run without a shell.
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        self.direct
    }
}

#[cfg(test)]
mod tests;
