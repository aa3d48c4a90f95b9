//! GNU parallel's option syntax, as its `Getopt::Long` configuration
//! ("bundling", "require_order") reads it: long options in any case and
//! abbreviated to any unambiguous prefix, short options bundled, option
//! parsing ending at the first word that is not an option. Every option
//! GNU parallel 20221122 knows is known here; the ones fanout does not
//! implement are refused by name ([`REFUSED`]), never taken for a command.

use std::ffi::OsString;

use anyhow::bail;

/// How an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arity {
    /// A flag.
    Flag,
    /// A required value (`--opt VALUE`, `--opt=VALUE`, `-oVALUE`).
    Value,
    /// An optional string (`:s`): the next word is taken unless it starts
    /// with `-`.
    OptionalString,
    /// An optional number (`:f`): the next word is taken if it is a number.
    OptionalNumber,
}

/// An option GNU parallel has and fanout refuses.
#[derive(Debug)]
pub(crate) struct Refused {
    /// Long names (the first is the one messages use).
    pub(crate) long: &'static [&'static str],
    /// Short name.
    pub(crate) short: Option<char>,
    /// Whether it takes a value.
    pub(crate) arity: Arity,
    /// Why, for the message.
    pub(crate) why: &'static str,
}

const REMOTE: &str =
    "ssh remote execution is not supported (for other machines: `fanout worker` and --redis)";
const NOT_YET: &str = "not implemented";
const RETIRED: &str = "GNU parallel has retired it too";

/// The options of GNU parallel 20221122 fanout does not implement.
pub(crate) const REFUSED: &[Refused] = &[
    r(&["sql"], None, Arity::Value, RETIRED),
    r(
        &["sql-master", "sqlmaster"],
        None,
        Arity::Value,
        "SQL job queues are not supported",
    ),
    r(
        &["sql-worker", "sqlworker"],
        None,
        Arity::Value,
        "SQL job queues are not supported",
    ),
    r(
        &["sql-and-worker", "sqlandworker"],
        None,
        Arity::Value,
        "SQL job queues are not supported",
    ),
    r(&["retry-failed", "retryfailed"], None, Arity::Flag, NOT_YET),
    r(
        &["latest-line", "latestline", "ll"],
        None,
        Arity::Flag,
        NOT_YET,
    ),
    r(&["tmux"], None, Arity::Flag, "tmux output is not supported"),
    r(
        &["tmux-pane", "tmuxpane"],
        None,
        Arity::Flag,
        "tmux output is not supported",
    ),
    r(&["ssh-delay", "sshdelay"], None, Arity::Value, REMOTE),
    r(&["noswap"], None, Arity::Flag, NOT_YET),
    r(
        &["ctag"],
        None,
        Arity::Flag,
        "colour output is not supported",
    ),
    r(
        &["ctag-string", "ctagstring"],
        None,
        Arity::Value,
        "colour output is not supported",
    ),
    r(
        &["color", "colour"],
        None,
        Arity::Flag,
        "colour output is not supported",
    ),
    r(
        &[
            "color-failed",
            "colour-failed",
            "colorfailed",
            "colourfailed",
            "color-fail",
            "colour-fail",
            "colorfail",
            "colourfail",
            "cf",
        ],
        None,
        Arity::Flag,
        "colour output is not supported",
    ),
    r(&["onall"], None, Arity::Flag, REMOTE),
    r(&["nonall"], None, Arity::Flag, REMOTE),
    r(
        &["filter-hosts", "filterhosts", "filter-host"],
        None,
        Arity::Flag,
        REMOTE,
    ),
    r(&["sshloginfile", "slf"], None, Arity::Value, REMOTE),
    r(&["controlmaster"], Some('M'), Arity::Flag, REMOTE),
    r(&["ssh"], None, Arity::Value, REMOTE),
    r(
        &[
            "transfer-file",
            "transferfile",
            "transfer-files",
            "transferfiles",
            "tf",
        ],
        None,
        Arity::Value,
        REMOTE,
    ),
    r(&["return"], None, Arity::Value, REMOTE),
    r(&["trc"], None, Arity::Value, REMOTE),
    r(&["transfer"], None, Arity::Flag, REMOTE),
    r(&["cleanup"], None, Arity::Flag, REMOTE),
    r(&["basefile", "bf"], None, Arity::Value, REMOTE),
    r(&["template", "tmpl"], None, Arity::Value, NOT_YET),
    r(&["B"], None, Arity::Value, RETIRED),
    r(&["g"], None, Arity::Flag, RETIRED),
    r(&["ctrl-c", "ctrlc"], None, Arity::Flag, RETIRED),
    r(
        &["no-ctrl-c", "no-ctrlc", "noctrlc"],
        None,
        Arity::Flag,
        RETIRED,
    ),
    r(&["work-dir", "workdir", "wd"], None, Arity::Value, NOT_YET),
    r(&["W"], None, Arity::Value, RETIRED),
    r(&["rsync-opts", "rsyncopts"], None, Arity::Value, REMOTE),
    r(
        &["open-tty"],
        Some('o'),
        Arity::Flag,
        "giving jobs the terminal is not supported",
    ),
    r(
        &["tty"],
        None,
        Arity::Flag,
        "giving jobs the terminal is not supported",
    ),
    r(&["T"], None, Arity::Flag, RETIRED),
    r(&["H"], None, Arity::Value, RETIRED),
    r(&["U"], None, Arity::Value, RETIRED),
    r(
        &["env"],
        None,
        Arity::Value,
        "env_parallel and --env are not supported",
    ),
    r(
        &["record-env", "recordenv"],
        None,
        Arity::Flag,
        "env_parallel and --env are not supported",
    ),
    r(
        &["session"],
        None,
        Arity::Flag,
        "env_parallel and --env are not supported",
    ),
    r(&["tollef"], None, Arity::Flag, RETIRED),
    r(
        &["linkinputsource", "xapplyinputsource"],
        None,
        Arity::Value,
        NOT_YET,
    ),
    r(&["limit"], None, Arity::Value, NOT_YET),
    r(&["memsuspend"], None, Arity::Value, NOT_YET),
    r(
        &["interactive"],
        Some('p'),
        Arity::Flag,
        "interactive confirmation is not supported",
    ),
    r(&["show-limits", "showlimits"], None, Arity::Flag, NOT_YET),
    r(&["exit"], Some('x'), Arity::Flag, NOT_YET),
    r(
        &["semaphore"],
        None,
        Arity::Flag,
        "semaphore mode (sem) is not supported",
    ),
    r(
        &["semaphore-timeout", "semaphoretimeout", "st"],
        None,
        Arity::Value,
        "semaphore mode (sem) is not supported",
    ),
    r(
        &["semaphore-name", "semaphorename", "id"],
        None,
        Arity::Value,
        "semaphore mode (sem) is not supported",
    ),
    r(
        &["fg"],
        None,
        Arity::Flag,
        "semaphore mode (sem) is not supported",
    ),
    r(
        &["bg"],
        None,
        Arity::Flag,
        "semaphore mode (sem) is not supported",
    ),
    r(
        &["wait"],
        None,
        Arity::Flag,
        "semaphore mode (sem) is not supported",
    ),
    r(
        &["shebang", "hashbang"],
        None,
        Arity::Flag,
        "shebang scripts are not supported",
    ),
    r(
        &["_pipe-means-argfiles"],
        None,
        Arity::Flag,
        "it is internal to GNU parallel",
    ),
    r(&["Y"], None, Arity::Flag, RETIRED),
    r(
        &["bug"],
        None,
        Arity::Flag,
        "it is a GNU parallel test hook",
    ),
    r(
        &["block-timeout", "blocktimeout", "bt"],
        None,
        Arity::Value,
        NOT_YET,
    ),
    r(&["shard"], None, Arity::Value, NOT_YET),
    r(&["bin"], None, Arity::Value, NOT_YET),
    r(
        &["hgrp", "hostgrp", "hostgroup", "hostgroups"],
        None,
        Arity::Flag,
        REMOTE,
    ),
    r(
        &["embed"],
        None,
        Arity::Flag,
        "embedding GNU parallel in a script is not supported",
    ),
    r(&["_parset"], None, Arity::Value, "parset is not supported"),
    r(
        &["shell-completion", "shellcompletion"],
        None,
        Arity::Value,
        "use fanout --generate for fanout's completions",
    ),
    r(
        &["_test"],
        None,
        Arity::Value,
        "it is a GNU parallel test hook",
    ),
    r(
        &["debug"],
        Some('D'),
        Arity::Value,
        "GNU parallel's debug output is not supported",
    ),
    r(
        &["csv"],
        None,
        Arity::Flag,
        "CSV input is not supported (GNU parallel needs the Perl module Text::CSV for it)",
    ),
];

const fn r(
    long: &'static [&'static str],
    short: Option<char>,
    arity: Arity,
    why: &'static str,
) -> Refused {
    Refused {
        long,
        short,
        arity,
        why,
    }
}

/// fanout's own long options, which GNU parallel does not have. They are
/// never matched by an abbreviation, so that every abbreviation GNU
/// parallel accepts means the same option here (`--joblo` is `--joblog`).
pub(crate) const FANOUT_ONLY: &[&str] = &["generate", "joblog-sync", "redis", "secret-file"];

/// What the pre-scan knows about each option: its long names (the first is
/// canonical), short name and arity. Built from clap's definitions plus
/// [`REFUSED`].
#[derive(Debug, Clone)]
pub(crate) struct OptionInfo {
    /// Long names, canonical first.
    pub(crate) long: Vec<String>,
    /// Short name.
    pub(crate) short: Option<char>,
    /// How it takes a value.
    pub(crate) arity: Arity,
}

/// Rewrites `argv` so that clap reads it as `Getopt::Long` would: long
/// option names lower-cased and abbreviations expanded to the canonical
/// name, optional values attached with `=`. Stops at the first word that is
/// not an option (and at `--`), leaving the rest alone.
///
/// # Errors
/// An ambiguous abbreviation, as GNU parallel reports it.
pub(crate) fn normalize(
    argv: Vec<OsString>,
    options: &[OptionInfo],
) -> anyhow::Result<Vec<OsString>> {
    let mut out = Vec::with_capacity(argv.len());
    let mut rest = argv.into_iter().peekable();
    while let Some(arg) = rest.next() {
        let Some(text) = arg.to_str().map(str::to_owned) else {
            out.push(arg);
            break;
        };
        if text == "--" {
            out.push(arg);
            break;
        }
        if let Some(body) = text.strip_prefix("--") {
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            let Some(info) = lookup_long(name, options)? else {
                // Unknown: let clap report it.
                out.push(arg);
                continue;
            };
            let canonical = format!("--{}", info.long[0]);
            match (info.arity, value) {
                (_, Some(v)) => out.push(format!("{canonical}={v}").into()),
                (Arity::Flag, None) => out.push(canonical.into()),
                (Arity::Value, None) => {
                    out.push(canonical.into());
                    if let Some(v) = rest.next() {
                        out.push(v);
                    }
                }
                (arity, None) => {
                    let v = take_optional(&mut rest, arity);
                    out.push(format!("{canonical}={}", v.unwrap_or_default()).into());
                }
            }
            continue;
        }
        if text.len() > 1 && text.starts_with('-') {
            // A bundle of short options; the first that takes a value takes
            // the rest of the word, or the next word.
            let chars: Vec<char> = text[1..].chars().collect();
            let mut flags = String::from("-");
            let mut i = 0;
            let mut pushed = false;
            while i < chars.len() {
                let c = chars[i];
                let info = options.iter().find(|o| o.short == Some(c));
                match info.map(|o| o.arity) {
                    None | Some(Arity::Flag) => {
                        flags.push(c);
                        i += 1;
                    }
                    Some(Arity::Value) => {
                        flags.push(c);
                        let attached: String = chars[i + 1..].iter().collect();
                        if !attached.is_empty() {
                            flags.push_str(&attached);
                            out.push(flags.clone().into());
                        } else {
                            out.push(flags.clone().into());
                            if let Some(v) = rest.next() {
                                out.push(v);
                            }
                        }
                        pushed = true;
                        break;
                    }
                    Some(arity) => {
                        let attached: String = chars[i + 1..].iter().collect();
                        let value = if attached.is_empty() {
                            take_optional(&mut rest, arity)
                        } else {
                            Some(attached)
                        };
                        if flags.len() > 1 {
                            out.push(flags.clone().into());
                        }
                        let long = &info.expect("known").long[0];
                        out.push(format!("--{long}={}", value.unwrap_or_default()).into());
                        pushed = true;
                        break;
                    }
                }
            }
            if !pushed && flags.len() > 1 {
                out.push(flags.into());
            }
            continue;
        }
        // The first non-option: the command starts here.
        out.push(arg);
        break;
    }
    out.extend(rest);
    Ok(out)
}

/// `Getopt::Long`'s optional values: a string unless the next word starts
/// with `-`; a number only if the next word is one.
fn take_optional(
    rest: &mut std::iter::Peekable<impl Iterator<Item = OsString>>,
    arity: Arity,
) -> Option<String> {
    let next = rest.peek()?.to_str()?.to_owned();
    let take = match arity {
        Arity::OptionalString => !next.starts_with('-') || next == "-",
        Arity::OptionalNumber => is_number(&next),
        _ => false,
    };
    if take {
        rest.next();
        Some(next)
    } else {
        None
    }
}

fn is_number(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let digits = mantissa.replacen('.', "", 1);
    let mantissa_ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

/// The option a long name (any case) or an unambiguous prefix of one names.
fn lookup_long<'a>(
    name: &str,
    options: &'a [OptionInfo],
) -> anyhow::Result<Option<&'a OptionInfo>> {
    let lower = name.to_lowercase();
    if let Some(exact) = options
        .iter()
        .find(|o| o.long.iter().any(|l| l.to_lowercase() == lower))
    {
        return Ok(Some(exact));
    }
    let mut matches: Vec<(&OptionInfo, &str)> = Vec::new();
    for o in options {
        for l in &o.long {
            if l.len() > 1
                && l.to_lowercase().starts_with(&lower)
                && !FANOUT_ONLY.contains(&l.as_str())
            {
                matches.push((o, l));
            }
        }
    }
    let first = match matches.first() {
        Some((o, _)) => *o,
        None => return Ok(None),
    };
    if matches.iter().all(|(o, _)| std::ptr::eq(*o, first)) {
        return Ok(Some(first));
    }
    let names: Vec<&str> = matches.iter().map(|(_, l)| *l).collect();
    bail!(
        "option --{name} is ambiguous ({}); write it out",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Vec<OptionInfo> {
        let o = |long: &[&str], short, arity| OptionInfo {
            long: long.iter().map(|s| s.to_string()).collect(),
            short,
            arity,
        };
        vec![
            o(&["keep-order", "keeporder"], Some('k'), Arity::Flag),
            o(&["jobs", "max-procs"], Some('j'), Arity::Value),
            o(&["pipe"], None, Arity::Flag),
            o(&["pipe-part", "pipepart"], None, Arity::Flag),
            o(&["eof"], Some('e'), Arity::OptionalString),
            o(&["max-lines"], Some('l'), Arity::OptionalNumber),
            o(&["joblog"], None, Arity::Value),
            o(&["joblog-sync"], None, Arity::Value),
        ]
    }

    fn norm(args: &[&str]) -> anyhow::Result<Vec<String>> {
        normalize(args.iter().map(OsString::from).collect(), &opts())
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn long_names_ignore_case_and_accept_prefixes() {
        assert_eq!(
            norm(&["--KEEP", "echo"]).unwrap(),
            vec!["--keep-order", "echo"]
        );
        assert_eq!(
            norm(&["--max-p", "3", "x"]).unwrap(),
            vec!["--jobs", "3", "x"]
        );
        assert!(norm(&["--pi", "x"])
            .unwrap_err()
            .to_string()
            .contains("ambiguous"));
        assert_eq!(norm(&["--pipe", "x"]).unwrap(), vec!["--pipe", "x"]);
    }

    #[test]
    fn fanout_only_options_are_never_abbreviated() {
        // GNU parallel has no --joblog-sync: --joblo is --joblog there.
        assert_eq!(
            norm(&["--joblo", "log", "x"]).unwrap(),
            vec!["--joblog", "log", "x"]
        );
        assert_eq!(
            norm(&["--joblog-sync", "record", "x"]).unwrap(),
            vec!["--joblog-sync", "record", "x"]
        );
    }

    #[test]
    fn parsing_stops_at_the_command() {
        assert_eq!(
            norm(&["-kj2", "grep", "--keep"]).unwrap(),
            vec!["-kj2", "grep", "--keep"]
        );
        assert_eq!(norm(&["-j", "2", "-k"]).unwrap(), vec!["-j", "2", "-k"]);
    }

    #[test]
    fn optional_values_follow_getopt() {
        assert_eq!(
            norm(&["-e", "stop", "echo"]).unwrap(),
            vec!["--eof=stop", "echo"]
        );
        assert_eq!(norm(&["-e", "-k"]).unwrap(), vec!["--eof=", "-k"]);
        assert_eq!(norm(&["-l", "echo"]).unwrap(), vec!["--max-lines=", "echo"]);
        assert_eq!(
            norm(&["-l", "2", "echo"]).unwrap(),
            vec!["--max-lines=2", "echo"]
        );
        assert_eq!(norm(&["-kl3"]).unwrap(), vec!["-k", "--max-lines=3"]);
    }
}
