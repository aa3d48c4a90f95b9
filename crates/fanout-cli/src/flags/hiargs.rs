//! The validated configuration a run needs, built from [`LowArgs`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use fanout::journal::SyncPolicy;

use super::halt::Halt;
use super::lowargs::{split_separators, LowArgs, RawSource, SourceKind};
use crate::input::{Inputs, SourceDecl, SourceSpec};
use crate::template::Template;

/// `--joblog-sync group` syncs when this many records are unsynced.
const SYNC_GROUP_RECORDS: u32 = 64;

/// `--joblog-sync group` also syncs at the first record written this long
/// after the oldest unsynced one.
const SYNC_GROUP_INTERVAL: Duration = Duration::from_secs(1);

/// Which jobs a run skips because a previous run recorded them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Run everything; start a new joblog.
    Off,
    /// Skip every job the joblog records (`--resume`).
    All,
    /// Skip the jobs the joblog records as succeeded (`--resume-failed`).
    Failed,
}

/// Everything a run needs, checked: a `HiArgs` never starts a job that a
/// later check would have refused.
#[derive(Debug)]
pub(crate) struct HiArgs {
    /// How many jobs run at once (at least 1).
    pub(crate) jobs: usize,
    /// Print output in input order.
    pub(crate) keep_order: bool,
    /// Forward complete lines as they come instead of grouping.
    pub(crate) line_buffer: bool,
    /// Prefix output lines with the job's inputs.
    pub(crate) tag: bool,
    /// When to stop early; `None` is `never`.
    pub(crate) halt: Option<Halt>,
    /// Per-attempt time limit.
    pub(crate) timeout: Option<Duration>,
    /// Attempts per job in all (at least 1).
    pub(crate) attempts: u32,
    /// Print the commands only.
    pub(crate) dry_run: bool,
    /// Show a progress bar.
    pub(crate) bar: bool,
    /// Show the time left.
    pub(crate) eta: bool,
    /// The journal file.
    pub(crate) joblog: Option<PathBuf>,
    /// What the journal lets this run skip.
    pub(crate) resume: Resume,
    /// When journal records are synced to disk (`--joblog-sync`).
    pub(crate) joblog_sync: SyncPolicy,
    /// The JSON-lines results file.
    pub(crate) results: Option<PathBuf>,
    /// The command words as given, for the journal's fingerprint.
    pub(crate) command: Vec<String>,
    /// The parsed command.
    pub(crate) template: Template,
    /// The inputs, read.
    pub(crate) inputs: Inputs,
}

/// What parsing the arguments asks `main` to do.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Run with this configuration.
    Run(Box<HiArgs>),
    /// Print this (help or version) and exit 0.
    Print(String),
}

impl HiArgs {
    /// Parses and validates `argv` (without the program name), reading the
    /// input sources.
    ///
    /// # Errors
    /// Any bad flag, value or input source; the message names the problem.
    pub(crate) fn parse(argv: Vec<OsString>) -> anyhow::Result<Parsed> {
        let (head, sources) = split_separators(argv)?;
        let low =
            match LowArgs::try_parse_from(std::iter::once(OsString::from("fanout")).chain(head)) {
                Ok(low) => low,
                Err(err) => match err.kind() {
                    clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion => {
                        return Ok(Parsed::Print(err.render().to_string()));
                    }
                    _ => {
                        // clap's first line names the problem; its tips
                        // suggest `--` tricks that do not fit fanout's syntax.
                        let text = err.render().to_string();
                        let first = text.lines().next().unwrap_or("bad arguments");
                        bail!("{}; see fanout --help", first.trim_start_matches("error: "))
                    }
                },
            };
        HiArgs::from_low(low, sources).map(|c| Parsed::Run(Box::new(c)))
    }

    fn from_low(low: LowArgs, sources: Vec<RawSource>) -> anyhow::Result<HiArgs> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let jobs = match &low.jobs {
            Some(spec) => parse_jobs(spec, cpus)?,
            None => cpus,
        };
        let halt = match &low.halt {
            Some(spec) => Halt::parse(spec)?,
            None => None,
        };
        let timeout = low.timeout.as_deref().map(parse_timeout).transpose()?;
        let attempts = match &low.retries {
            Some(n) => n
                .parse::<u32>()
                .with_context(|| {
                    format!("bad --retries {n:?}: give the number of attempts, such as 3")
                })?
                .max(1),
            None => 1,
        };
        let resume = match (low.resume, low.resume_failed) {
            (true, _) => Resume::All,
            (_, true) => Resume::Failed,
            _ => Resume::Off,
        };
        if resume != Resume::Off && low.joblog.is_none() {
            bail!("--resume and --resume-failed need --joblog FILE: the joblog records what already ran");
        }
        let joblog_sync = match &low.joblog_sync {
            Some(_) if low.joblog.is_none() => {
                bail!(
                    "--joblog-sync needs --joblog FILE: it says when the joblog is synced to disk"
                )
            }
            Some(spec) => parse_joblog_sync(spec)?,
            None => SyncPolicy::None,
        };
        if low.line_buffer && low.keep_order {
            bail!("--line-buffer and -k cannot be combined: -k must hold output back until earlier jobs finish");
        }
        let delimiter = match (&low.delimiter, low.null) {
            (Some(d), _) => parse_delimiter(d)?,
            (None, true) => 0,
            (None, false) => b'\n',
        };

        let mut decls: Vec<SourceDecl> = low
            .arg_files
            .iter()
            .map(|path| SourceDecl {
                spec: SourceSpec::File(path.to_string_lossy().into_owned()),
                linked: false,
            })
            .collect();
        for source in sources {
            match source.kind {
                SourceKind::Args => decls.push(SourceDecl {
                    spec: SourceSpec::Args(source.words),
                    linked: source.linked,
                }),
                SourceKind::Files => {
                    if source.words.is_empty() {
                        bail!(
                            "{} needs at least one file name",
                            if source.linked { "::::+" } else { "::::" }
                        );
                    }
                    for (i, file) in source.words.into_iter().enumerate() {
                        decls.push(SourceDecl {
                            spec: SourceSpec::File(file),
                            linked: source.linked && i == 0,
                        });
                    }
                }
            }
        }
        if decls.is_empty() {
            decls.push(SourceDecl {
                spec: SourceSpec::File("-".to_owned()),
                linked: false,
            });
        }
        let inputs = Inputs::load(&decls, delimiter)?;
        let template = Template::parse(&low.command, inputs.source_count())?;

        Ok(HiArgs {
            jobs,
            keep_order: low.keep_order,
            line_buffer: low.line_buffer,
            tag: low.tag,
            halt,
            timeout,
            attempts,
            dry_run: low.dry_run,
            bar: low.bar,
            eta: low.eta,
            joblog: low.joblog,
            resume,
            joblog_sync,
            results: low.results,
            command: low.command,
            template,
            inputs,
        })
    }
}

/// `-j`: `N`, `N%` of the CPUs, `+N` or `-N` relative to them.
fn parse_jobs(spec: &str, cpus: usize) -> anyhow::Result<usize> {
    let bad = || {
        anyhow::anyhow!("bad -j {spec:?}: give a positive number of jobs (8), a share of the CPUs (50%), or +N/-N CPUs")
    };
    let jobs = if let Some(pct) = spec.strip_suffix('%') {
        let pct: f64 = pct.parse().map_err(|_| bad())?;
        if pct <= 0.0 || !pct.is_finite() {
            return Err(bad());
        }
        ((cpus as f64 * pct / 100.0).floor() as usize).max(1)
    } else if let Some(n) = spec.strip_prefix('+') {
        cpus + n.parse::<usize>().map_err(|_| bad())?
    } else if let Some(n) = spec.strip_prefix('-') {
        cpus.saturating_sub(n.parse::<usize>().map_err(|_| bad())?)
            .max(1)
    } else {
        spec.parse::<usize>().map_err(|_| bad())?
    };
    if jobs == 0 {
        bail!("bad -j {spec:?}: at least one job must run at a time (GNU parallel's -j 0, \"as many as possible\", is not supported)");
    }
    Ok(jobs)
}

/// `--joblog-sync`: `none`, `record` or `group` (every
/// [`SYNC_GROUP_RECORDS`] records, or at the first record
/// [`SYNC_GROUP_INTERVAL`] after the oldest unsynced one).
fn parse_joblog_sync(spec: &str) -> anyhow::Result<SyncPolicy> {
    match spec {
        "none" => Ok(SyncPolicy::None),
        "record" => Ok(SyncPolicy::EveryRecord),
        "group" => Ok(SyncPolicy::group(
            SYNC_GROUP_RECORDS,
            Some(SYNC_GROUP_INTERVAL),
        )),
        _ => bail!("bad --joblog-sync {spec:?}: give none, record or group"),
    }
}

/// `--timeout`: seconds, with an optional `s` suffix.
fn parse_timeout(spec: &str) -> anyhow::Result<Duration> {
    let secs = spec.strip_suffix('s').unwrap_or(spec);
    match secs.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
        _ => bail!("bad --timeout {spec:?}: give a positive number of seconds, such as 30 or 0.5"),
    }
}

/// `-d`: one byte, or one of the escapes `\n`, `\t`, `\0`, `\\`.
fn parse_delimiter(spec: &str) -> anyhow::Result<u8> {
    match spec {
        "\\n" => Ok(b'\n'),
        "\\t" => Ok(b'\t'),
        "\\0" => Ok(0),
        "\\\\" => Ok(b'\\'),
        _ if spec.len() == 1 => Ok(spec.as_bytes()[0]),
        _ => bail!(
            "bad -d {spec:?}: the delimiter must be one ASCII character or \\n, \\t, \\0, \\\\"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<HiArgs> {
        match HiArgs::parse(args.iter().map(OsString::from).collect())? {
            Parsed::Run(config) => Ok(*config),
            Parsed::Print(text) => bail!("printed {text}"),
        }
    }

    #[test]
    fn jobs_accept_counts_percentages_and_offsets() {
        assert_eq!(parse_jobs("3", 4).unwrap(), 3);
        assert_eq!(parse_jobs("50%", 4).unwrap(), 2);
        assert_eq!(parse_jobs("1%", 4).unwrap(), 1);
        assert_eq!(parse_jobs("+2", 4).unwrap(), 6);
        assert_eq!(parse_jobs("-9", 4).unwrap(), 1);
        assert!(parse_jobs("0", 4)
            .unwrap_err()
            .to_string()
            .contains("at least one job"));
        assert!(parse_jobs("x", 4).is_err());
    }

    #[test]
    fn a_full_command_line_becomes_a_config() {
        let c = parse(&[
            "-j2",
            "-k",
            "--halt",
            "now,fail=1",
            "--timeout",
            "1.5",
            "--retries",
            "3",
            "echo",
            "{}",
            ":::",
            "a",
            "b",
        ])
        .unwrap();
        assert_eq!(c.jobs, 2);
        assert!(c.keep_order);
        assert_eq!(c.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(c.attempts, 3);
        assert_eq!(c.inputs.job_count(), 2);
        assert_eq!(c.command, vec!["echo", "{}"]);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let cases: [(&[&str], &str); 6] = [
            (&["--halt", "bogus", "true", ":::", "a"], "--halt"),
            (&["--timeout", "-1", "true", ":::", "a"], "--timeout"),
            (&["--retries", "x", "true", ":::", "a"], "--retries"),
            (&["--resume", "true", ":::", "a"], "--joblog"),
            (&["-d", "ab", "true", ":::", "a"], "-d"),
            (&["--bogus", "true", ":::", "a"], "--bogus"),
        ];
        for (args, needle) in cases {
            let err = format!("{:#}", parse(args).unwrap_err());
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn file_sources_each_count_as_one_source() {
        let dir = tempfile::tempdir().unwrap();
        let (f1, f2) = (dir.path().join("f1"), dir.path().join("f2"));
        std::fs::write(&f1, "a\nb\n").unwrap();
        std::fs::write(&f2, "c\n").unwrap();
        let c = parse(&["echo", "::::", f1.to_str().unwrap(), f2.to_str().unwrap()]).unwrap();
        assert_eq!(c.inputs.source_count(), 2);
        assert_eq!(c.inputs.job_count(), 2);
    }
}
