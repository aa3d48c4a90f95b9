//! The replacement strings a run knows: GNU parallel's table of shorthand
//! strings, each standing for a Perl expression applied to `$_` (the input),
//! as extended by `--plus`, renamed by `-I`, `--extensionreplace`, … and
//! added to by `--rpl`.
//!
//! The seven strings every run knows (`{}` `{.}` `{/}` `{//}` `{/.}` `{#}`
//! `{%}`) are computed natively ([`Native`]); any other expression needs
//! Perl (see `perl.rs`). An expression is native only when its Perl text is
//! exactly the one GNU parallel defines, so `--rpl '{} s/a/b/'` is Perl.

/// GNU parallel's default replacement strings (`%Global::replace`).
const DEFAULT: &[(&str, &str)] = &[
    ("{}", ""),
    ("{#}", "1 $_=$job->seq()"),
    ("{%}", "1 $_=$job->slot()"),
    ("{/}", "s:.*/::"),
    (
        "{//}",
        "$Global::use{\"File::Basename\"} ||= eval \"use File::Basename; 1;\"; $_ = dirname($_);",
    ),
    ("{/.}", "s:.*/::; s:\\.[^/.]*$::;"),
    ("{.}", "s:\\.[^/.]*$::"),
];

/// The strings `--plus` adds (`%Global::plus`), as documented in GNU
/// parallel's man page under `--plus`.
const PLUS: &[(&str, &str)] = &[
    ("{+/}", "s:/[^/]*$:: || s:.*$::"),
    ("{+.}", "s:.*\\.:: || s:.*$::"),
    ("{+..}", "s:.*\\.([^/.]*\\.[^/.]*)$:$1: || s:.*$::"),
    (
        "{+...}",
        "s:.*\\.([^/.]*\\.[^/.]*\\.[^/.]*)$:$1: || s:.*$::",
    ),
    ("{..}", "s:\\.[^/.]*\\.[^/.]*$::"),
    ("{...}", "s:\\.[^/.]*\\.[^/.]*\\.[^/.]*$::"),
    ("{/..}", "s:.*/::; s:\\.[^/.]*\\.[^/.]*$::"),
    ("{/...}", "s:.*/::; s:\\.[^/.]*\\.[^/.]*\\.[^/.]*$::"),
    (
        "{choose_k}",
        "for $t (2..$#arg){ if($arg[$t-1] ge $arg[$t]) { skip() } }",
    ),
    ("{uniq}", "if(::uniq(@arg) != @arg) { skip(); }"),
    ("{##}", "1 $_=total_jobs()"),
    (
        "{0%}",
        "1 $f=1+int((log($Global::max_jobs_running||1)/log(10)));$_=sprintf(\"%0${f}d\",slot())",
    ),
    (
        "{0#}",
        "1 $f=1+int((log(total_jobs())/log(10)));$_=sprintf(\"%0${f}d\",seq())",
    ),
    ("{:-([^}]+?)}", "$_ ||= $$1"),
    ("{:(\\d+?)}", "substr($_,0,$$1) = \"\""),
    ("{:(\\d+?):(\\d+?)}", "$_ = substr($_,$$1,$$2);"),
    (
        "{#([^#}][^}]*?)}",
        "$nongreedy=::make_regexp_ungreedy($$1);s/^$nongreedy(.*)/$1/;",
    ),
    ("{##([^#}][^}]*?)}", "s/^$$1//;"),
    (
        "{%([^}]+?)}",
        "$nongreedy=::make_regexp_ungreedy($$1);s/(.*)$nongreedy$/$1/;",
    ),
    ("{%%([^}]+?)}", "s/$$1$//;"),
    ("{/([^#%}/]+?)/([^}]*?)}", "s/$$1/$$2/;"),
    ("{/#([^}]+?)/([^}]*?)}", "s/^$$1/$$2/g;"),
    ("{/%([^}]+?)/([^}]*?)}", "s/$$1$/$$2/g;"),
    ("{//([^}]+?)/([^}]*?)}", "s/$$1/$$2/g;"),
    ("{^([^}]+?)}", "s/^($$1)/uc($1)/e;"),
    ("{^^([^}]+?)}", "s/($$1)/uc($1)/eg;"),
    ("{,([^}]+?)}", "s/^($$1)/lc($1)/e;"),
    ("{,,([^}]+?)}", "s/($$1)/lc($1)/eg;"),
    ("{slot}", "1 $_=\"\\${PARALLEL_JOBSLOT}\";uq()"),
    ("{host}", "1 $_=\"\\${PARALLEL_SSHHOST}\";uq()"),
    ("{sshlogin}", "1 $_=\"\\${PARALLEL_SSHLOGIN}\";uq()"),
    ("{hgrp}", "1 $_=\"\\${PARALLEL_HOSTGROUPS}\";uq()"),
    ("{agrp}", "1 $_=\"\\${PARALLEL_ARGHOSTGROUPS}\";uq()"),
];

/// A transform fanout computes without Perl, identical to the Perl
/// expression GNU parallel defines for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Native {
    /// `{}`: the input unchanged.
    Whole,
    /// `{.}`: `s:\.[^/.]*$::`.
    NoExt,
    /// `{/}`: `s:.*/::`.
    Basename,
    /// `{//}`: Perl's `File::Basename::dirname`.
    Dirname,
    /// `{/.}`: `s:.*/::; s:\.[^/.]*$::;`.
    BasenameNoExt,
    /// `{#}`: the job's sequence number.
    Seq,
    /// `{%}`: the job's slot.
    Slot,
}

impl Native {
    /// The native transform for a Perl expression (without its position
    /// prefix), if GNU parallel's code for it is exactly this text.
    pub(crate) fn of(code: &str) -> Option<Native> {
        let native = [
            Native::Whole,
            Native::Seq,
            Native::Slot,
            Native::Basename,
            Native::Dirname,
            Native::BasenameNoExt,
            Native::NoExt,
        ];
        DEFAULT
            .iter()
            .zip(native)
            .find_map(|((_, default), native)| (strip_position(default) == code).then_some(native))
    }

    /// Applies the transform to `value` (already trimmed as `--trim` says).
    pub(crate) fn apply(self, value: &str, seq: u64, slot: usize) -> String {
        match self {
            Native::Whole => value.to_owned(),
            Native::NoExt => no_ext(value).to_owned(),
            Native::Basename => basename(value),
            Native::Dirname => dirname(value),
            Native::BasenameNoExt => no_ext(&basename(value)).to_owned(),
            Native::Seq => seq.to_string(),
            Native::Slot => slot.to_string(),
        }
    }
}

/// GNU parallel's `s/^(-?\d+)? *//` on an expression: the text after a
/// leading position number and spaces.
pub(crate) fn strip_position(code: &str) -> &str {
    let digits = code.strip_prefix('-').unwrap_or(code);
    let n = digits.bytes().take_while(u8::is_ascii_digit).count();
    let rest = if n > 0 { &digits[n..] } else { code };
    rest.trim_start_matches(' ')
}

/// The ordered table of shorthand strings and their Perl code.
#[derive(Debug, Clone)]
pub(crate) struct Rpls {
    entries: Vec<(String, String)>,
}

impl Rpls {
    /// GNU parallel's table, with the `--plus` strings if `plus`.
    pub(crate) fn gnu(plus: bool) -> Rpls {
        let mut entries: Vec<(String, String)> = Vec::new();
        let extra: &[(&str, &str)] = if plus { PLUS } else { &[] };
        for (key, code) in extra.iter().chain(DEFAULT) {
            entries.push(((*key).to_owned(), (*code).to_owned()));
        }
        Rpls { entries }
    }

    /// Renames the shorthand `old` to `new` (`-I`, `--extensionreplace`,
    /// …), as GNU parallel's `rpl()` does.
    pub(crate) fn rename(&mut self, old: &str, new: &str) {
        if old == new {
            return;
        }
        if let Some(code) = self.remove(old) {
            self.define(new, &code);
        }
    }

    /// Defines (or redefines) a shorthand string.
    pub(crate) fn define(&mut self, key: &str, code: &str) {
        self.remove(key);
        self.entries.push((key.to_owned(), code.to_owned()));
    }

    /// `--rpl 'TAG PERL'`: the tag up to the first white space, then the
    /// code.
    pub(crate) fn define_spec(&mut self, spec: &str) {
        let (key, code) = match spec.find(char::is_whitespace) {
            Some(at) => {
                let ws = spec[at..].chars().next().map_or(1, char::len_utf8);
                (&spec[..at], &spec[at + ws..])
            }
            None => (spec, ""),
        };
        self.define(key, code);
    }

    fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    /// The entries, longest shorthand first (a short one may be part of a
    /// long one); among equal lengths, in definition order.
    pub(crate) fn by_length(&self) -> Vec<(&str, &str)> {
        let mut all: Vec<(&str, &str)> = self
            .entries
            .iter()
            .map(|(k, c)| (k.as_str(), c.as_str()))
            .collect();
        all.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        all
    }

    /// The shorthand currently standing for `{}` (`-I` renames it).
    #[cfg(test)]
    pub(crate) fn whole_key(&self) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, code)| code.is_empty())
            .map(|(k, _)| k.as_str())
    }
}

/// `s:\.[^/.]*$::` (Perl's `$` also matches before a final newline, which
/// the character class can swallow anyway).
fn no_ext(value: &str) -> &str {
    match value.rfind('.') {
        Some(dot) if !value[dot..].contains('/') => &value[..dot],
        _ => value,
    }
}

/// `s:.*/::`: `.` does not cross a newline, so the first line holding a
/// `/` loses everything up to its last `/`.
fn basename(value: &str) -> String {
    let mut start = 0;
    for line in value.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        if let Some(slash) = body.rfind('/') {
            let mut out = String::with_capacity(value.len());
            out.push_str(&value[..start]);
            out.push_str(&value[start + slash + 1..]);
            return out;
        }
        start += line.len();
    }
    value.to_owned()
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

    #[test]
    fn only_gnus_exact_code_is_native() {
        assert_eq!(Native::of(""), Some(Native::Whole));
        assert_eq!(Native::of("$_=$job->seq()"), Some(Native::Seq));
        assert_eq!(Native::of("s:\\.[^/.]*$::"), Some(Native::NoExt));
        assert_eq!(Native::of("s/a/b/"), None);
    }

    #[test]
    fn renaming_keeps_the_code() {
        let mut rpls = Rpls::gnu(false);
        rpls.rename("{}", "XX");
        assert_eq!(rpls.whole_key(), Some("XX"));
        rpls.define_spec("{..} s:\\.[^.]+$::;");
        assert!(rpls.by_length()[0].0 == "{//}" || rpls.by_length()[0].0 == "{/.}");
        assert!(rpls.by_length().contains(&("{..}", "s:\\.[^.]+$::;")));
    }

    #[test]
    fn positions_are_stripped_like_gnu() {
        assert_eq!(strip_position("1 $_=total_jobs()"), "$_=total_jobs()");
        assert_eq!(strip_position("-2 s/a//"), "s/a//");
        assert_eq!(strip_position(" s/a//"), "s/a//");
        assert_eq!(strip_position("-x"), "-x");
    }

    #[test]
    fn basename_stops_at_a_newline_like_perl() {
        assert_eq!(basename("a/b/c"), "c");
        assert_eq!(basename("a\nb/c"), "a\nc");
        assert_eq!(basename("x/y\nb/c"), "y\nb/c");
        assert_eq!(basename("plain"), "plain");
    }
}
