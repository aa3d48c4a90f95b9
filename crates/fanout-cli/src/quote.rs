//! Quoting of inputs for a POSIX shell, exactly as GNU parallel does it.

/// Quotes `value` for a Bourne shell the way GNU parallel 20221122 does
/// (`shell_quote_scalar_default`): a value made only of `-_.+/`, ASCII
/// letters and digits is left alone, the empty value becomes `''`, anything
/// else is wrapped in single quotes with each `'` written as `'"'"'`.
pub(crate) fn shell_quote(value: &str) -> String {
    if value.is_empty() {
        return "''".to_owned();
    }
    if value.bytes().all(is_plain) {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    quoted.push_str(&value.replace('\'', "'\"'\"'"));
    quoted.push('\'');
    // GNU drops the empty '' pair left at either end by a leading or
    // trailing single quote; matching it keeps --dry-run output identical.
    let mut quoted = quoted
        .strip_prefix("''")
        .map(str::to_owned)
        .unwrap_or(quoted);
    if quoted.ends_with("''") && quoted.len() >= 2 {
        quoted.truncate(quoted.len() - 2);
    }
    quoted
}

/// Whether GNU parallel leaves this byte unquoted.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'/')
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoting_matches_gnu_parallel_dry_run_output() {
        // Expected strings were taken from `parallel --dry-run echo ::: ...`
        // (GNU parallel 20221122).
        let cases = [
            ("a b", "'a b'"),
            ("it's", "'it'\"'\"'s'"),
            ("x$y", "'x$y'"),
            ("plain", "plain"),
            ("", "''"),
            ("a,b", "'a,b'"),
            ("a/b.c", "a/b.c"),
            ("-n", "-n"),
            ("é", "'é'"),
            ("'abc", "\"'\"'abc'"),
            ("abc'", "'abc'\"'\""),
            ("a'b'", "'a'\"'\"'b'\"'\""),
            ("+x", "+x"),
            ("a@b", "'a@b'"),
            ("''", "\"'\"''\"'\""),
        ];
        for (input, want) in cases {
            assert_eq!(shell_quote(input), want, "input {input:?}");
        }
    }

    #[test]
    fn a_lone_single_quote_is_quoted_like_gnu() {
        assert_eq!(shell_quote("'"), "\"'\"");
    }
}
