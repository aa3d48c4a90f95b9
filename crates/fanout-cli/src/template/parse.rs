//! Turning command words into a [`Words`] template the way GNU parallel's
//! `CommandLineQueue::new` does: `{= perl =}` expressions become
//! replacement slots, then every shorthand string of the table (longest
//! first, also in its positional form `{3...}`) does, outside the slots
//! already made.

use anyhow::{bail, Context};
use regex::Regex;

use super::rpl::Rpls;

/// One piece of a command word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text copied as it is.
    Text(String),
    /// A replacement slot: GNU parallel's `\257<…\257>`, holding the
    /// expression text (possibly prefixed with a position).
    Slot(String),
}

/// The words of a template, each a list of pieces.
pub(crate) type Words = Vec<Vec<Piece>>;

/// `{=` and `=}`, or what `--parens` makes them.
#[derive(Debug, Clone)]
pub(crate) struct Parens {
    /// The opening string.
    pub(crate) left: String,
    /// The closing string.
    pub(crate) right: String,
}

impl Parens {
    /// `--parens STR`: the first half opens, the second half closes.
    pub(crate) fn parse(spec: &str) -> anyhow::Result<Parens> {
        let chars: Vec<char> = spec.chars().collect();
        if chars.len() < 2 {
            bail!("bad --parens {spec:?}: give the opening and closing strings together, such as '{{==}}'");
        }
        let half = chars.len() / 2;
        Ok(Parens {
            left: chars[..half].iter().collect(),
            right: chars[half..].iter().collect(),
        })
    }
}

impl Default for Parens {
    fn default() -> Parens {
        Parens {
            left: "{=".to_owned(),
            right: "=}".to_owned(),
        }
    }
}

/// GNU parallel's `merge_rpl_parts`: words that open a `{=` without closing
/// it are joined (with a space) with the following words until it closes.
pub(crate) fn merge_parts(words: &[String], parens: &Parens) -> anyhow::Result<Vec<String>> {
    let closed = Regex::new(&format!(
        "(.*){}.*?{}",
        regex::escape(&parens.left),
        regex::escape(&parens.right)
    ))
    .context("bad --parens")?;
    let unclosed = |s: &str| {
        let mut s = s.to_owned();
        loop {
            let next = closed.replacen(&s, 1, "$1").into_owned();
            if next == s {
                break;
            }
            s = next;
        }
        s.contains(&parens.left)
    };
    let mut out = Vec::new();
    let mut rest = words.iter();
    while let Some(word) = rest.next() {
        let mut s = word.clone();
        if unclosed(&s) {
            for more in rest.by_ref() {
                s.push(' ');
                s.push_str(more);
                if !unclosed(&s) {
                    break;
                }
            }
        }
        out.push(s);
    }
    Ok(out)
}

/// Splits `text` at every `{= … =}` (innermost pair, no `{=` or `=}`
/// inside) into text and slots.
fn perl_slots(text: &str, parens: &Parens) -> Vec<Piece> {
    let (l, r) = (parens.left.as_str(), parens.right.as_str());
    let mut pieces = Vec::new();
    let mut done = 0;
    let mut from = 0;
    while let Some(open) = text[from..].find(l).map(|i| i + from) {
        let body_start = open + l.len();
        let Some(close) = text[body_start..].find(r).map(|i| i + body_start) else {
            break;
        };
        let body = &text[body_start..close];
        if body.contains(l) {
            // An inner `{=` makes this one's match fail; the inner one is
            // tried next.
            from = open + l.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        if open > done {
            pieces.push(Piece::Text(text[done..open].to_owned()));
        }
        pieces.push(Piece::Slot(body.to_owned()));
        done = close + r.len();
        from = done;
    }
    if done < text.len() {
        pieces.push(Piece::Text(text[done..].to_owned()));
    }
    pieces
}

/// A shorthand string compiled for matching: its plain form and, when it
/// starts with `{`, its positional form `{N…}`.
struct Matcher {
    plain: Regex,
    positional: Option<Regex>,
    code: String,
}

impl Matcher {
    /// GNU parallel splits a shorthand into a prefix up to the first `(`,
    /// a group part from there to the last `)`, and a postfix; prefix and
    /// postfix are literal, the group part is a regular expression whose
    /// captures become `$$1`, `$$2`, … in the code.
    fn new(key: &str, code: &str) -> anyhow::Result<Matcher> {
        let (prefix, group, postfix) = split_key(key);
        let build = |prefix: &str, positional: bool| {
            let mut pattern = String::new();
            if positional {
                pattern.push_str(r"\{(-?\d+)\s*");
            }
            pattern.push_str(&regex::escape(prefix));
            if !group.is_empty() {
                // GNU parallel interpolates the group part into a regular
                // expression compiled with Perl's /x and /s.
                pattern.push_str("(?s:");
                pattern.push_str(&perl_x(group));
                pattern.push(')');
            }
            pattern.push_str(&regex::escape(postfix));
            Regex::new(&pattern).with_context(|| {
                format!(
                    "the replacement string {key:?} uses a regular expression fanout cannot \
                     handle (look-around and back-references are not supported)"
                )
            })
        };
        let plain = build(prefix, false)?;
        let positional = match prefix.strip_prefix('{') {
            Some(prefix) => Some(build(prefix, true)?),
            None => None,
        };
        Ok(Matcher {
            plain,
            positional,
            code: code.to_owned(),
        })
    }

    /// The slot text for a match: the captured groups assigned to
    /// `$_pAr_gRpN`, then the code with `$$N` pointing at them.
    fn slot(&self, caps: &regex::Captures<'_>, first_group: usize) -> String {
        let mut set_args = String::new();
        let mut i = 1;
        while let Some(m) = caps.get(first_group + i - 1) {
            set_args.push_str(&format!("$_pAr_gRp{i} = \"{}\";", perl_quote(m.as_str())));
            i += 1;
        }
        let code = dollar_dollar(&self.code);
        format!("{set_args}{code}")
    }
}

/// A regular expression written for Perl's `/x` rewritten without it:
/// white space outside character classes dropped, `#` comments removed
/// (inside a class both are literal, as in Perl, unlike the regex crate's
/// `x` flag).
fn perl_x(re: &str) -> String {
    let mut out = String::with_capacity(re.len());
    let mut chars = re.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A leading `]` (or `^]`) is literal.
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().expect("peeked"));
                }
                if chars.peek() == Some(&']') {
                    out.push(chars.next().expect("peeked"));
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            c if !in_class && c.is_whitespace() => {}
            '#' if !in_class => {
                for next in chars.by_ref() {
                    if next == '\n' {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `^([^(]*)(\(.*\))?([^)]*)$`, as GNU parallel splits a shorthand.
fn split_key(key: &str) -> (&str, &str, &str) {
    let prefix_end = key.find('(').unwrap_or(key.len());
    let (prefix, rest) = key.split_at(prefix_end);
    match rest.rfind(')') {
        Some(close) if rest.starts_with('(') => {
            let (group, postfix) = rest.split_at(close + 1);
            if postfix.contains(')') {
                (prefix, "", rest)
            } else {
                (prefix, group, postfix)
            }
        }
        _ => (prefix, "", rest),
    }
}

/// `s/\$\$ (\d+)/\$_pAr_gRp$1/gx`.
fn dollar_dollar(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("$$") {
        let digits = rest[at + 2..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        if digits == 0 {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
            continue;
        }
        out.push_str(&rest[..at]);
        out.push_str("$_pAr_gRp");
        out.push_str(&rest[at + 2..at + 2 + digits]);
        rest = &rest[at + 2 + digits..];
    }
    out.push_str(rest);
    out
}

/// GNU parallel's `perl_quote_scalar`: `\`, `"`, `$`, `@` escaped.
fn perl_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '@') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses `words` (one string each, already merged) into pieces: `{= =}`
/// slots first, then every shorthand of `rpls`.
pub(crate) fn parse_words(words: &[String], rpls: &Rpls, parens: &Parens) -> anyhow::Result<Words> {
    let matchers: Vec<Matcher> = rpls
        .by_length()
        .into_iter()
        .map(|(key, code)| Matcher::new(key, code))
        .collect::<anyhow::Result<_>>()?;
    let mut out = Vec::with_capacity(words.len());
    for word in words {
        let mut pieces = perl_slots(word, parens);
        for matcher in &matchers {
            pieces = replace_in_text(pieces, |text| {
                matcher
                    .plain
                    .captures(text)
                    .map(|caps| {
                        let m = caps.get(0).map_or(0..0, |m| m.range());
                        (m, matcher.slot(&caps, 1))
                    })
                    .filter(|(m, _)| !m.is_empty())
            });
            if let Some(positional) = &matcher.positional {
                pieces = replace_in_text(pieces, |text| {
                    positional
                        .captures(text)
                        .map(|caps| {
                            let m = caps.get(0).map_or(0..0, |m| m.range());
                            let position = caps.get(1).map_or("", |p| p.as_str());
                            (m, format!("{position}{}", matcher.slot(&caps, 2)))
                        })
                        .filter(|(m, _)| !m.is_empty())
                });
            }
        }
        out.push(pieces);
    }
    Ok(out)
}

/// Replaces, in every text piece, each match `find` reports (leftmost
/// first, repeatedly) with a slot.
fn replace_in_text(
    pieces: Vec<Piece>,
    find: impl Fn(&str) -> Option<(std::ops::Range<usize>, String)>,
) -> Vec<Piece> {
    let mut out = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let Piece::Text(mut text) = piece else {
            out.push(piece);
            continue;
        };
        while let Some((range, slot)) = find(&text) {
            if range.start > 0 {
                out.push(Piece::Text(text[..range.start].to_owned()));
            }
            out.push(Piece::Slot(slot));
            text = text[range.end..].to_owned();
        }
        if !text.is_empty() {
            out.push(Piece::Text(text));
        }
    }
    out
}

/// Whether any word holds a slot.
pub(crate) fn has_slot(words: &Words) -> bool {
    words.iter().flatten().any(|p| matches!(p, Piece::Slot(_)))
}

/// GNU parallel's `"@command" =~ /^[^ \t\n=]*\257</`: a slot before any
/// space, tab, newline or `=` means the replacement is (part of) the
/// command name, so replacements are not quoted.
pub(crate) fn slot_in_command_name(words: &Words) -> bool {
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            return false;
        }
        for piece in word {
            match piece {
                Piece::Slot(_) => return true,
                Piece::Text(t) if t.contains([' ', '\t', '\n', '=']) => return false,
                Piece::Text(_) => {}
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str], plus: bool) -> Words {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let parens = Parens::default();
        let merged = merge_parts(&words, &parens).unwrap();
        parse_words(&merged, &Rpls::gnu(plus), &parens).unwrap()
    }

    fn slots(words: &Words) -> Vec<&str> {
        words
            .iter()
            .flatten()
            .filter_map(|p| match p {
                Piece::Slot(s) => Some(s.as_str()),
                Piece::Text(_) => None,
            })
            .collect()
    }

    #[test]
    fn shorthands_become_slots() {
        let w = parse(&["echo", "{}", "x{.}y", "{#}"], false);
        assert_eq!(slots(&w), vec!["", "s:\\.[^/.]*$::", "1 $_=$job->seq()"]);
        assert_eq!(
            w[2],
            vec![
                Piece::Text("x".into()),
                Piece::Slot("s:\\.[^/.]*$::".into()),
                Piece::Text("y".into())
            ]
        );
    }

    #[test]
    fn positional_forms_carry_their_position() {
        let w = parse(&["{2}", "{-1.}", "{3 }", "{2#}"], false);
        assert_eq!(
            slots(&w),
            vec!["2", "-1s:\\.[^/.]*$::", "3", "21 $_=$job->seq()"]
        );
    }

    #[test]
    fn perl_expressions_are_slots_and_merge_across_words() {
        let w = parse(&["echo", "{=", "s/a/b/", "=}", "{}"], false);
        assert_eq!(w.len(), 3);
        assert_eq!(slots(&w), vec![" s/a/b/ ", ""]);
        let w = parse(&["{=2 $_++ =}"], false);
        assert_eq!(slots(&w), vec!["2 $_++ "]);
    }

    #[test]
    fn braces_that_are_not_shorthands_stay_text() {
        let w = parse(&["awk", "{print}"], false);
        assert!(!has_slot(&w));
    }

    #[test]
    fn plus_strings_capture_their_argument() {
        let w = parse(&["{%.tar}", "{:-x}", "{1/a/b}"], true);
        let s = slots(&w);
        assert!(s[0].starts_with("$_pAr_gRp1 = \".tar\";"), "{s:?}");
        assert_eq!(s[1], "$_pAr_gRp1 = \"x\";$_ ||= $_pAr_gRp1");
        assert!(s[2].starts_with("1$_pAr_gRp1 = \"a\";$_pAr_gRp2 = \"b\";"));
    }

    #[test]
    fn a_slot_in_the_command_name_turns_quoting_off() {
        assert!(slot_in_command_name(&parse(&["{}"], false)));
        assert!(slot_in_command_name(&parse(&["my_{}", "x"], false)));
        assert!(!slot_in_command_name(&parse(&["echo", "{}"], false)));
        assert!(!slot_in_command_name(&parse(&["V={}"], false)));
    }

    #[test]
    fn custom_parens() {
        let parens = Parens::parse(",,,,").unwrap();
        let words = vec!["echo".to_owned(), ",,s/a/b/,,".to_owned()];
        let w = parse_words(&words, &Rpls::gnu(false), &parens).unwrap();
        assert_eq!(slots(&w), vec!["s/a/b/"]);
    }
}
