//! Raw command-line arguments, as clap sees them, plus GNU parallel's input
//! separators, which clap cannot express and are split off by hand first.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

/// How `fanout` differs from GNU parallel; shown at the end of `--help`.
const DIFFERENCES: &str = "\
Differences from GNU parallel:
  * Commands without shell syntax are executed directly (no shell); others run
    with $PARALLEL_SHELL, or /bin/sh when it is unset (GNU parallel uses the
    shell it was started from).
  * A ::: argument containing a newline is one input, not several.
  * {N} naming an input source that does not exist is an error (GNU parallel
    replaces it with nothing).
  * --joblog writes a sidecar FILE.fanout holding a fingerprint of the command
    and inputs; --resume and --resume-failed refuse a joblog from another
    command or input list, and ignore a torn last line. A run locks its
    joblog, and kills what a SIGKILLed earlier run of it left behind.
  * The joblog line is written when a job completes, before its output is
    printed (with -k, possibly long before), so a SIGKILL re-runs at most -j
    jobs on --resume.
  * --results FILE writes JSON lines, one per finished job.
  * Jobs killed because fanout was interrupted or halted (--halt now) did not
    complete and get no joblog line, so --resume runs them again.
  * Interrupted by SIGINT or SIGTERM, fanout exits with 128 + the signal; when
    its stdout is closed (fanout ... | head) it stops quietly with exit 0.
  * -j 0 is refused; jobs read /dev/null as stdin; --dry-run ignores the
    joblog.";

/// The options and command words, as parsed by clap from everything before
/// the first input separator.
#[derive(Debug, Parser)]
#[command(
    name = "fanout",
    version,
    about = "Run a command for each input, in parallel, with a crash-safe journal.",
    override_usage = "fanout [OPTIONS] [COMMAND]... [::: ARGS... | :::: FILES... | :::+ ARGS... | ::::+ FILES...]...\n       \
                      fanout [OPTIONS] [COMMAND]... < INPUT_LINES",
    after_help = DIFFERENCES,
)]
pub(crate) struct LowArgs {
    /// Number of jobs run at once: N, or N% of the CPUs [default: the number
    /// of CPUs].
    #[arg(
        short = 'j',
        long = "jobs",
        value_name = "N|N%",
        allow_hyphen_values = true
    )]
    pub(crate) jobs: Option<String>,

    /// Print the output of the jobs in input order, byte-identical to running
    /// them one by one.
    #[arg(short = 'k', long = "keep-order")]
    pub(crate) keep_order: bool,

    /// Print complete lines as soon as they arrive instead of grouping each
    /// job's output (lines of different jobs may alternate, never mix).
    #[arg(long = "line-buffer", visible_alias = "lb")]
    pub(crate) line_buffer: bool,

    /// Prefix each output line with the job's inputs and a TAB.
    #[arg(long = "tag")]
    pub(crate) tag: bool,

    /// When to stop: never, or now|soon,fail|success|done=N|N% (also GNU's
    /// short forms 0, 1, 2, -1, -2).
    #[arg(
        long = "halt",
        visible_alias = "halt-on-error",
        value_name = "SPEC",
        allow_hyphen_values = true
    )]
    pub(crate) halt: Option<String>,

    /// Kill a job (its whole process group) that runs longer than SECS.
    #[arg(long = "timeout", value_name = "SECS", allow_hyphen_values = true)]
    pub(crate) timeout: Option<String>,

    /// Run a failing job up to N times in all [default: 1].
    #[arg(long = "retries", value_name = "N", allow_hyphen_values = true)]
    pub(crate) retries: Option<String>,

    /// Print the commands that would run, run nothing.
    #[arg(long = "dry-run")]
    pub(crate) dry_run: bool,

    /// Show a progress bar on stderr.
    #[arg(long = "bar")]
    pub(crate) bar: bool,

    /// Show the estimated time left on stderr.
    #[arg(long = "eta")]
    pub(crate) eta: bool,

    /// Record each finished job in FILE, GNU parallel's tab-separated format.
    #[arg(long = "joblog", value_name = "FILE")]
    pub(crate) joblog: Option<PathBuf>,

    /// Skip the jobs the joblog records as run (needs --joblog).
    #[arg(long = "resume")]
    pub(crate) resume: bool,

    /// Skip the jobs the joblog records as succeeded; re-run failed ones
    /// (needs --joblog).
    #[arg(long = "resume-failed", conflicts_with = "resume")]
    pub(crate) resume_failed: bool,

    /// When joblog records are forced to disk (fsync): none (a record
    /// survives a crash of fanout, not of the machine), record (each one
    /// survives a power loss), group (every 64 records, or at the first one
    /// a second after the oldest unsynced: a power loss loses at most 63)
    /// [default: none] (needs --joblog).
    #[arg(long = "joblog-sync", value_name = "none|record|group")]
    pub(crate) joblog_sync: Option<String>,

    /// Append one JSON line per finished job to FILE (input, exit code,
    /// signal, runtime, stdout, stderr).
    #[arg(long = "results", value_name = "FILE")]
    pub(crate) results: Option<PathBuf>,

    /// Read inputs from FILE (repeat for several input sources; - is stdin).
    #[arg(short = 'a', long = "arg-file", value_name = "FILE")]
    pub(crate) arg_files: Vec<PathBuf>,

    /// Inputs are separated by NUL bytes instead of newlines.
    #[arg(short = '0', long = "null")]
    pub(crate) null: bool,

    /// Inputs are separated by DELIM (one character; \n, \t, \0 and \\ are
    /// understood) instead of newlines.
    #[arg(
        short = 'd',
        long = "delimiter",
        value_name = "DELIM",
        conflicts_with = "null"
    )]
    pub(crate) delimiter: Option<String>,

    /// The command and its arguments; the input replaces {} (appended when
    /// the command has no replacement string).
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub(crate) command: Vec<String>,
}

/// The kind of an input source given after a separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// `:::`: the words themselves are the inputs.
    Args,
    /// `::::`: each word names a file whose records are the inputs.
    Files,
}

/// One input source as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawSource {
    /// Whether the words are inputs or file names.
    pub(crate) kind: SourceKind,
    /// Whether it was introduced by `:::+`/`::::+` (paired with the previous
    /// source instead of multiplied with it).
    pub(crate) linked: bool,
    /// The words after the separator, up to the next separator.
    pub(crate) words: Vec<String>,
}

/// Splits argv (without the program name) at the first input separator:
/// clap gets what comes before, the rest becomes input sources.
///
/// GNU parallel treats these tokens as separators wherever they appear after
/// the options, so a command cannot contain a bare `:::` either.
pub(crate) fn split_separators(
    args: Vec<OsString>,
) -> anyhow::Result<(Vec<OsString>, Vec<RawSource>)> {
    let mut head = Vec::new();
    let mut sources: Vec<RawSource> = Vec::new();
    for arg in args {
        let sep = match arg.to_str() {
            Some(":::") => Some((SourceKind::Args, false)),
            Some(":::+") => Some((SourceKind::Args, true)),
            Some("::::") => Some((SourceKind::Files, false)),
            Some("::::+") => Some((SourceKind::Files, true)),
            _ => None,
        };
        match (sep, sources.last_mut()) {
            (Some((kind, linked)), _) => {
                if linked && sources.is_empty() {
                    anyhow::bail!(
                        "{} must follow another input source (::: or ::::) to link with",
                        if kind == SourceKind::Args {
                            ":::+"
                        } else {
                            "::::+"
                        }
                    );
                }
                sources.push(RawSource {
                    kind,
                    linked,
                    words: Vec::new(),
                });
            }
            (None, Some(source)) => source.words.push(arg.into_string().map_err(|bad| {
                anyhow::anyhow!(
                    "input {:?} is not valid UTF-8; fanout needs UTF-8 inputs",
                    bad
                )
            })?),
            (None, None) => head.push(arg),
        }
    }
    Ok((head, sources))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn separators_split_command_from_sources() {
        let (head, sources) = split_separators(os(&[
            "-j2", "echo", "{}", ":::", "a", "b", ":::+", "1", "2", "::::", "f",
        ]))
        .unwrap();
        assert_eq!(head, os(&["-j2", "echo", "{}"]));
        assert_eq!(sources.len(), 3);
        assert_eq!(sources[0].words, vec!["a", "b"]);
        assert!(sources[1].linked);
        assert_eq!(sources[2].kind, SourceKind::Files);
    }

    #[test]
    fn a_linked_source_needs_a_previous_one() {
        assert!(split_separators(os(&["echo", ":::+", "a"])).is_err());
    }

    #[test]
    fn options_after_the_command_belong_to_the_command() {
        let low = LowArgs::try_parse_from(os(&["fanout", "-k", "grep", "-v", "x"])).unwrap();
        assert!(low.keep_order);
        assert_eq!(low.command, vec!["grep", "-v", "x"]);
    }
}
