//! Options that come from elsewhere than the command line, read as GNU
//! parallel reads them: the profile files (`/etc/parallel/config`,
//! `config` in each configuration directory, `~/.parallelrc`, or the
//! `--profile`/`-J` files instead), then `$PARALLEL` (and `$PARALLEL_CSH`),
//! each split into words with Perl's `Text::ParseWords::shellwords`.
//! `--plain` ignores them all.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// GNU parallel's configuration directories that exist: `$PARALLEL_HOME`,
/// `$XDG_CONFIG_HOME/parallel`, each `$XDG_CONFIG_DIRS` entry's `parallel`,
/// `~/.parallel`.
pub(crate) fn config_dirs() -> Vec<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(home) = var("PARALLEL_HOME") {
        dirs.push(home.into());
    }
    // GNU parallel joins "$XDG_CONFIG_HOME/parallel" even when the variable
    // is unset, giving "/parallel".
    dirs.push(Path::new(&var("XDG_CONFIG_HOME").unwrap_or_default()).join("parallel"));
    if let Some(list) = var("XDG_CONFIG_DIRS") {
        for dir in std::env::split_paths(&list) {
            dirs.push(dir.join("parallel"));
        }
    }
    dirs.push(home().join(".parallel"));
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// `$HOME`, or `/tmp` as GNU parallel uses when it is not set.
fn home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

/// The words of the profile files: the default ones, or the named
/// `profiles` (a name starting with `/` or `./` is a path, any other is
/// looked for in the configuration directories; unreadable ones are
/// skipped, as GNU parallel does).
///
/// # Errors
/// A profile line whose quotes do not balance.
pub(crate) fn profile_words(profiles: &[String]) -> anyhow::Result<Vec<String>> {
    let dirs = config_dirs();
    let files: Vec<PathBuf> = if profiles.is_empty() {
        let mut files = vec![PathBuf::from("/etc/parallel/config")];
        files.extend(dirs.iter().map(|d| d.join("config")));
        files.push(home().join(".parallelrc"));
        files
    } else {
        let mut files = Vec::new();
        for profile in profiles {
            if profile.starts_with('/') || profile.starts_with("./") {
                files.push(PathBuf::from(profile));
            } else {
                files.extend(dirs.iter().map(|d| d.join(profile)));
            }
        }
        files
    };
    let mut words = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read(&file) else {
            continue;
        };
        let text = String::from_utf8(text)
            .with_context(|| format!("profile {} is not valid UTF-8", file.display()))?;
        for line in text.lines() {
            if line
                .trim_start_matches(crate::input::is_perl_space)
                .starts_with('#')
            {
                continue;
            }
            words.extend(shell_words(line).with_context(|| {
                format!(
                    "cannot split a line of profile {} into words: {line:?}",
                    file.display()
                )
            })?);
        }
    }
    Ok(words)
}

/// The words of `$PARALLEL` and `$PARALLEL_CSH`.
///
/// # Errors
/// Quotes that do not balance.
pub(crate) fn env_words() -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    for name in ["PARALLEL", "PARALLEL_CSH"] {
        let Some(value) = std::env::var_os(name).filter(|v| !v.is_empty()) else {
            continue;
        };
        let value = value
            .into_string()
            .map_err(|_| anyhow::anyhow!("${name} is not valid UTF-8"))?;
        words.extend(
            shell_words(&value)
                .with_context(|| format!("cannot split ${name} into words: {value:?}"))?,
        );
    }
    Ok(words)
}

/// Perl's `Text::ParseWords::shellwords`: words separated by white space;
/// `"…"` (where a backslash escapes any character) and `'…'` (taken as
/// is) quote; outside quotes a backslash escapes the next character.
///
/// # Errors
/// An unbalanced quote or a trailing backslash (where Perl returns no
/// words at all).
pub(crate) fn shell_words(line: &str) -> anyhow::Result<Vec<String>> {
    let bad = || anyhow::anyhow!("unbalanced quote or trailing backslash");
    let s: Vec<char> = line
        .trim_start_matches(crate::input::is_perl_space)
        .chars()
        .collect();
    let ws = |c: char| crate::input::is_perl_space(c);
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut i = 0;
    while i < s.len() {
        if s[i] == '"' || s[i] == '\'' {
            let quote = s[i];
            let mut j = i + 1;
            let mut raw = String::new();
            let mut closed = false;
            while j < s.len() {
                if s[j] == '\\' {
                    let next = *s.get(j + 1).ok_or_else(bad)?;
                    raw.push('\\');
                    raw.push(next);
                    j += 2;
                    continue;
                }
                if s[j] == quote {
                    closed = true;
                    break;
                }
                raw.push(s[j]);
                j += 1;
            }
            if !closed {
                return Err(bad());
            }
            let text = if quote == '"' { unescape(&raw) } else { raw };
            word.get_or_insert_with(String::new).push_str(&text);
            i = j + 1;
            if i >= s.len() {
                words.push(word.take());
            }
            continue;
        }
        let mut j = i;
        let mut raw = String::new();
        let mut delimiter_end = None;
        while j < s.len() {
            let c = s[j];
            if ws(c) {
                let mut k = j;
                while k < s.len() && ws(s[k]) {
                    k += 1;
                }
                delimiter_end = Some(k);
                break;
            }
            if c == '"' || c == '\'' {
                break;
            }
            if c == '\\' {
                let next = *s.get(j + 1).ok_or_else(bad)?;
                raw.push('\\');
                raw.push(next);
                j += 2;
                continue;
            }
            raw.push(c);
            j += 1;
        }
        word.get_or_insert_with(String::new)
            .push_str(&unescape(&raw));
        match delimiter_end {
            Some(k) => {
                words.push(word.take());
                i = k;
            }
            None => i = j,
        }
        if i >= s.len() {
            words.push(word.take());
        }
    }
    if words.last().is_some_and(Option::is_none) {
        words.pop();
    }
    Ok(words.into_iter().map(Option::unwrap_or_default).collect())
}

/// `s/\\(.)/$1/sg`.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_match_perls_text_parsewords() {
        let cases: &[(&str, &[&str])] = &[
            ("-j4 --tag", &["-j4", "--tag"]),
            ("  a  b ", &["a", "b"]),
            ("'a b' c", &["a b", "c"]),
            ("\"a\\\"b\" c", &["a\"b", "c"]),
            ("a\\ b", &["a b"]),
            ("x'y z'w", &["xy zw"]),
            ("'a\\b'", &["a\\b"]),
            ("\"a\\nb\"", &["anb"]),
            ("", &[]),
        ];
        for (line, want) in cases {
            assert_eq!(shell_words(line).unwrap(), *want, "{line:?}");
        }
        assert!(shell_words("'open").is_err());
        assert!(shell_words("trail\\").is_err());
    }

    #[test]
    fn shell_words_agree_with_perl_itself() {
        let Ok(out) = std::process::Command::new("perl")
            .arg("-MText::ParseWords")
            .arg("-e")
            .arg("for (@ARGV) { print join(\"\\x01\", shellwords($_)), \"\\x02\" }")
            .args([
                "a 'b c' \"d\\\"e\" f\\ g",
                "x\"y\"z 'q\\'r' s",
                "  lead trail  ",
            ])
            .output()
        else {
            eprintln!("note: perl not available; skipping");
            return;
        };
        let text = String::from_utf8(out.stdout).unwrap();
        let perl: Vec<Vec<String>> = text
            .split('\x02')
            .filter(|s| !s.is_empty())
            .map(|s| s.split('\x01').map(str::to_owned).collect())
            .collect();
        let ours: Vec<Vec<String>> = [
            "a 'b c' \"d\\\"e\" f\\ g",
            "x\"y\"z 'q\\'r' s",
            "  lead trail  ",
        ]
        .iter()
        .map(|l| shell_words(l).unwrap())
        .collect();
        assert_eq!(ours, perl);
    }
}
