//! The journal: GNU parallel's `--joblog` format, written with the
//! library's crash-safe journal (`fanout::journal`), so that a SIGKILL at
//! any instant leaves a log that `--resume` can trust.
//!
//! This file only says what a joblog line is ([`GnuJoblog`], byte-compatible
//! with GNU parallel: header line, then one tab-separated record per
//! finished job) and words the library's errors for the command. The
//! library does the rest: the lock, the torn-last-line rule, one `write` per
//! record, the `--joblog-sync` policy, and the sidecar `FILE.fanout`, which
//! holds a fingerprint of the command and the input list, and the id of the
//! last run with whether it finished (GNU tools never look at it).

use std::collections::HashSet;
use std::io;
use std::path::Path;

use anyhow::anyhow;
use fanout::journal::{
    self, sidecar_path, Contents, Damaged, EncodeError, Error, Journal, Options, RecordFormat,
    SyncPolicy,
};
pub(crate) use fanout::journal::{Fingerprint, RunId};

/// The header line GNU parallel writes.
pub(crate) const HEADER: &str =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

/// The sidecar's kind, on its first line (`fanout-joblog 2`).
const SIDECAR_KIND: &str = "fanout-joblog";

/// The first line of the sidecar's first layout, which had no run id.
const SIDECAR_MAGIC_V1: &str = "fanout-joblog-fingerprint 1";

/// One finished job, as one joblog line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobRecord {
    /// The job's sequence number, `{#}`.
    pub(crate) seq: u64,
    /// Start time, seconds since the Unix epoch.
    pub(crate) start: f64,
    /// Run time in seconds.
    pub(crate) runtime: f64,
    /// Bytes of standard input the job was given (GNU's `Send`: the block
    /// with `--pipe`).
    pub(crate) sent: u64,
    /// Bytes of stdout the job wrote (GNU's `Receive`).
    pub(crate) received: u64,
    /// Exit status; -1 when killed by fanout (timeout, halt, interrupt).
    pub(crate) exitval: i32,
    /// The signal that ended the job, or 0.
    pub(crate) signal: i32,
    /// The command as run.
    pub(crate) command: String,
    /// GNU's `Host`: the `fanout worker` that ran the job (`--redis`), `:`
    /// for this machine.
    pub(crate) host: Option<String>,
}

impl JobRecord {
    /// Whether the job succeeded.
    pub(crate) fn is_success(&self) -> bool {
        self.exitval == 0 && self.signal == 0
    }

    /// The line, newline-terminated, in GNU parallel's layout. Newlines in
    /// the command become NUL bytes, as GNU parallel does, so that one
    /// record stays one line.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "the tests and the fuzz target write lines")
    )]
    pub(crate) fn to_line(&self) -> String {
        let mut line = self.fields(self.seq);
        line.push('\n');
        line
    }

    /// The line without its newline, with `seq` in the first column.
    fn fields(&self, seq: u64) -> String {
        // A worker's id cannot break the line: tabs and newlines become
        // spaces.
        let host = self
            .host
            .as_deref()
            .map_or(std::borrow::Cow::Borrowed(":"), |h| {
                std::borrow::Cow::Owned(h.replace(['\t', '\n', '\r'], " "))
            });
        format!(
            "{}\t{}\t{:.3}\t{:10.3}\t{}\t{}\t{}\t{}\t{}",
            seq,
            host,
            self.start,
            self.runtime,
            self.sent,
            self.received,
            self.exitval,
            self.signal,
            self.command.replace('\n', "\0")
        )
    }

    /// Parses one line without its newline; `None` if it is not a record.
    /// Nine fields are required, so a line cut short (`12` of `125\t...`)
    /// is never a record.
    fn parse(line: &str) -> Option<JobRecord> {
        let f: Vec<&str> = line.splitn(9, '\t').collect();
        if f.len() != 9 {
            return None;
        }
        Some(JobRecord {
            seq: f[0].parse().ok()?,
            start: f[2].trim().parse().ok()?,
            runtime: f[3].trim().parse().ok()?,
            sent: f[4].trim().parse().ok()?,
            received: f[5].trim().parse().ok()?,
            exitval: f[6].trim().parse().ok()?,
            signal: f[7].trim().parse().ok()?,
            command: f[8].replace('\0', "\n"),
            host: (f[1] != ":").then(|| f[1].to_owned()),
        })
    }
}

/// GNU parallel's joblog as a journal format: the key is the job's seq.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GnuJoblog;

impl RecordFormat for GnuJoblog {
    type Key = u64;
    type Value = JobRecord;

    fn kind(&self) -> &str {
        SIDECAR_KIND
    }

    fn header(&self) -> &str {
        HEADER.trim_end_matches('\n')
    }

    fn encode(&self, seq: &u64, record: &JobRecord, line: &mut Vec<u8>) -> Result<(), EncodeError> {
        line.extend_from_slice(record.fields(*seq).as_bytes());
        Ok(())
    }

    fn decode(&self, line: &[u8]) -> Option<(u64, JobRecord)> {
        let record = JobRecord::parse(std::str::from_utf8(line).ok()?)?;
        Some((record.seq, record))
    }

    fn legacy_sidecar(&self) -> Option<&str> {
        Some(SIDECAR_MAGIC_V1)
    }
}

/// Reads joblog bytes: every complete record, leniently at the tail (a torn
/// last line is ignored) and strictly elsewhere.
///
/// # Errors
/// A complete line that is not a record, anywhere but at the end: that is
/// not a torn write but a damaged or foreign file.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "the tests and the fuzz target read bytes")
)]
pub(crate) fn parse(bytes: &[u8]) -> Result<Contents<u64, JobRecord>, Damaged> {
    journal::parse(&GnuJoblog, bytes)
}

/// The open journal of the current run.
#[derive(Debug)]
pub(crate) struct Joblog {
    journal: Journal<GnuJoblog>,
}

/// The seqs a resumed run must skip.
pub(crate) type Skip = HashSet<u64>;

/// An earlier run of the journal that did not finish (fanout was killed):
/// processes it left may still run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unfinished {
    /// Its id; `None` for a journal of fanout's first format, whose jobs
    /// carried no id.
    pub(crate) run: Option<RunId>,
}

/// A journal opened for this run.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The journal, locked.
    pub(crate) log: Joblog,
    /// The jobs this run skips.
    pub(crate) skip: Skip,
    /// Whether a torn last line was ignored.
    pub(crate) torn: bool,
    /// The earlier run, if it was killed.
    pub(crate) unfinished: Option<Unfinished>,
}

impl Joblog {
    /// Starts a new joblog at `path`, replacing any old one, as GNU
    /// parallel's `--joblog` does without `--resume`.
    ///
    /// # Errors
    /// The file or its sidecar cannot be written, or another fanout is
    /// using the joblog.
    pub(crate) fn create(
        path: &Path,
        fingerprint: Fingerprint,
        summary: &str,
        sync: SyncPolicy,
    ) -> anyhow::Result<Opened> {
        let opened = options(fingerprint, summary, sync)
            .create(path, GnuJoblog)
            .map_err(|e| explain(path, e))?;
        Ok(Opened {
            skip: Skip::new(),
            torn: opened.torn,
            unfinished: unfinished(opened.previous),
            log: Joblog {
                journal: opened.journal,
            },
        })
    }

    /// Opens `path` to resume: checks the fingerprint, collects the seqs to
    /// skip (all recorded ones, or only the succeeded ones when
    /// `only_succeeded`), and cuts a torn last line off. A missing joblog, or
    /// one without a single record, is started afresh.
    ///
    /// # Errors
    /// The joblog belongs to another command or input list, has no sidecar,
    /// is damaged before its last line, is in use by another fanout, or
    /// cannot be read or written.
    pub(crate) fn resume(
        path: &Path,
        fingerprint: Fingerprint,
        summary: &str,
        only_succeeded: bool,
        sync: SyncPolicy,
    ) -> anyhow::Result<Opened> {
        let opened = options(fingerprint, summary, sync)
            .resume(path, GnuJoblog)
            .map_err(|e| explain(path, e))?;
        let mut journal = opened.journal;
        // As GNU parallel: a job with any record was run, and one with any
        // successful record succeeded.
        let skip = journal
            .load()
            .map_err(|e| explain(path, e))?
            .into_iter()
            .filter(|(_, record)| !only_succeeded || record.is_success())
            .map(|(seq, _)| seq)
            .collect();
        Ok(Opened {
            log: Joblog { journal },
            skip,
            torn: opened.torn,
            unfinished: unfinished(opened.previous),
        })
    }

    /// This run's id.
    pub(crate) fn run_id(&self) -> RunId {
        self.journal.run_id()
    }

    /// Appends one record with a single `write` on an `O_APPEND` file, so a
    /// kill leaves either the whole line or a prefix of it at the end; then
    /// syncs as `--joblog-sync` says.
    ///
    /// # Errors
    /// The write or the sync fails (disk full, say).
    pub(crate) fn append(&mut self, record: &JobRecord) -> io::Result<()> {
        self.journal
            .record(&record.seq, record)
            .map_err(|e| match e {
                Error::Io { source, .. } => source,
                other => io::Error::other(other),
            })
    }

    /// Records that this run finished (rather than being killed): what its
    /// jobs left running, they left on purpose. Then unlocks the journal.
    ///
    /// # Errors
    /// The sidecar cannot be written.
    pub(crate) fn finish(self) -> anyhow::Result<()> {
        let path = self.journal.path().to_owned();
        self.journal.finish().map_err(|e| explain(&path, e))
    }
}

fn options(fingerprint: Fingerprint, summary: &str, sync: SyncPolicy) -> Options {
    Options::new(fingerprint).summary(summary).sync(sync)
}

/// The earlier run, if it did not finish.
fn unfinished(previous: Option<journal::PreviousRun>) -> Option<Unfinished> {
    previous
        .filter(|run| !run.finished)
        .map(|run| Unfinished { run: run.id })
}

/// The library's error, worded for the command: its flags, and what GNU
/// parallel users expect.
fn explain(path: &Path, error: Error) -> anyhow::Error {
    let sidecar = sidecar_path(path);
    match error {
        Error::Locked { .. } => anyhow!(
            "joblog {} is in use by another running fanout; wait for it to finish \
             or use another --joblog",
            path.display()
        ),
        Error::Mismatch { summary, .. } => anyhow!(
            "joblog {} was written for a different command or input list ({summary}); resuming it \
             would skip the wrong jobs. Run the same command with the same inputs, or remove {} \
             and {} to start over",
            path.display(),
            path.display(),
            sidecar.display()
        ),
        Error::NoSidecar { .. } => anyhow!(
            "joblog {} has no fingerprint file {} (was it written by GNU parallel?), so fanout \
             cannot check that it belongs to this command and input list; remove the joblog to \
             start over",
            path.display(),
            sidecar.display()
        ),
        Error::BadSidecar { .. } => anyhow!(
            "{} is not a fanout fingerprint file; remove it and the joblog to start over",
            sidecar.display()
        ),
        Error::Damaged { damage, .. } => {
            let what = match damage.line() {
                1 => "line 1 is not GNU parallel's joblog header".to_owned(),
                n => format!("line {n} is not a joblog record"),
            };
            anyhow!(what).context(format!(
                "joblog {} is damaged, so it cannot say what already ran; remove it to start over",
                path.display()
            ))
        }
        Error::Io {
            path: file,
            action,
            source,
        } => anyhow::Error::new(source).context(format!(
            "cannot {} {}",
            action
                .replace("journal's sidecar", "joblog's fingerprint file")
                .replace("journal", "joblog"),
            file.display()
        )),
        other => anyhow::Error::new(other),
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;

    fn record(seq: u64, exitval: i32) -> JobRecord {
        JobRecord {
            seq,
            sent: 0,
            start: 1_795_982_418.252,
            runtime: 0.5,
            received: 6,
            exitval,
            signal: 0,
            command: format!("echo {seq}"),
            host: None,
        }
    }

    fn fp(n: u8) -> Fingerprint {
        Fingerprint::of([[n]])
    }

    fn records(contents: &Contents<u64, JobRecord>) -> Vec<JobRecord> {
        contents.records.iter().map(|(_, r)| r.clone()).collect()
    }

    const NONE: SyncPolicy = SyncPolicy::None;

    #[test]
    fn records_use_gnu_parallels_layout() {
        assert_eq!(
            record(2, 1).to_line(),
            "2\t:\t1795982418.252\t     0.500\t0\t6\t1\t0\techo 2\n"
        );
        let mut line = Vec::new();
        GnuJoblog.encode(&2, &record(2, 1), &mut line).unwrap();
        line.push(b'\n');
        assert_eq!(line, record(2, 1).to_line().as_bytes());
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut_off() {
        let full = format!(
            "{HEADER}{}{}",
            record(1, 0).to_line(),
            record(12, 0).to_line()
        );
        // Every prefix of the file must parse to the complete records only.
        for cut in HEADER.len()..=full.len() {
            let contents = parse(&full.as_bytes()[..cut]).unwrap();
            let complete = full[..cut].matches('\n').count() - 1;
            assert_eq!(contents.records.len(), complete, "cut at {cut}");
            assert_eq!(contents.torn, !full[..cut].ends_with('\n'), "cut at {cut}");
        }
        // "1" cut from "12\t..." must not be read as seq 1 done twice or seq 12.
        let torn = format!("{HEADER}{}12", record(1, 0).to_line());
        let contents = parse(torn.as_bytes()).unwrap();
        assert_eq!(records(&contents), vec![record(1, 0)]);
    }

    #[test]
    fn garbage_after_the_last_record_is_never_read_as_a_record() {
        // A tiny xorshift: the property must hold for any tail, and a fixed
        // seed keeps failures reproducible.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rand = |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let recs: Vec<JobRecord> = (1..=5).map(|i| record(i, (i % 2) as i32)).collect();
        let body: String = std::iter::once(HEADER.to_owned())
            .chain(recs.iter().map(JobRecord::to_line))
            .collect();
        let alphabet = b"0123456789\t:. -abc\0\xff";
        for _ in 0..2000 {
            let mut bytes = body.clone().into_bytes();
            let tail_len = rand(40) as usize;
            bytes.extend((0..tail_len).map(|_| alphabet[rand(alphabet.len() as u64) as usize]));
            let contents = parse(&bytes).unwrap();
            assert_eq!(records(&contents), recs);
            assert_eq!(contents.torn, tail_len > 0);
            assert_eq!(contents.valid_len as usize, body.len());
        }
        // Arbitrary bytes never panic.
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..rand(200)).map(|_| rand(256) as u8).collect();
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn a_damaged_middle_line_is_an_error() {
        let bad = format!("{HEADER}garbage\n{}", record(1, 0).to_line());
        assert!(parse(bad.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("line 2"));
    }

    #[test]
    fn resume_appends_after_cutting_the_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = Joblog::create(&path, fp(1), "cmd", NONE).unwrap().log;
        log.append(&record(1, 0)).unwrap();
        log.append(&record(2, 3)).unwrap();
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"3\t:\t179").unwrap();
        drop(f);

        let Opened {
            mut log,
            skip,
            torn,
            ..
        } = Joblog::resume(&path, fp(1), "cmd", false, NONE).unwrap();
        assert!(torn);
        assert_eq!(skip, Skip::from([1, 2]));
        log.append(&record(3, 0)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "{HEADER}{}{}{}",
                record(1, 0).to_line(),
                record(2, 3).to_line(),
                record(3, 0).to_line()
            )
        );

        drop(log);
        let skip = Joblog::resume(&path, fp(1), "cmd", true, NONE)
            .unwrap()
            .skip;
        assert_eq!(skip, Skip::from([1, 3]));
    }

    #[test]
    fn resume_refuses_another_command_or_input_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = Joblog::create(&path, fp(1), "command: echo", NONE)
            .unwrap()
            .log;
        log.append(&record(1, 0)).unwrap();
        drop(log);
        let err = format!(
            "{:#}",
            Joblog::resume(&path, fp(2), "x", false, NONE).unwrap_err()
        );
        assert!(err.contains("different command or input list"), "{err}");
        assert!(err.contains("command: echo"), "{err}");
    }

    #[test]
    fn resume_refuses_a_joblog_without_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, format!("{HEADER}{}", record(1, 0).to_line())).unwrap();
        let err = format!(
            "{:#}",
            Joblog::resume(&path, fp(1), "x", false, NONE).unwrap_err()
        );
        assert!(err.contains("no fingerprint file"), "{err}");
    }

    #[test]
    fn a_joblog_in_use_by_another_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let _held = Joblog::create(&path, fp(1), "x", NONE).unwrap();
        let err = format!(
            "{:#}",
            Joblog::resume(&path, fp(1), "x", false, NONE).unwrap_err()
        );
        assert!(err.contains("in use by another running fanout"), "{err}");
    }

    #[test]
    fn resume_of_a_missing_joblog_starts_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let skip = Joblog::resume(&path, fp(1), "x", false, NONE).unwrap().skip;
        assert!(skip.is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), HEADER);
    }

    #[test]
    fn a_run_that_did_not_finish_is_reported_to_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let first = Joblog::create(&path, fp(1), "x", NONE).unwrap();
        assert_eq!(first.unfinished, None);
        let killed = first.log.run_id();
        // Dropped without `finish`: as if fanout was killed.
        drop(first);
        let second = Joblog::resume(&path, fp(1), "x", false, NONE).unwrap();
        assert_eq!(second.unfinished, Some(Unfinished { run: Some(killed) }));
        assert_ne!(second.log.run_id(), killed);
        second.log.finish().unwrap();
        let third = Joblog::create(&path, fp(2), "y", NONE).unwrap();
        assert_eq!(third.unfinished, None);
    }

    #[test]
    fn a_sidecar_of_the_first_format_still_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, format!("{HEADER}{}", record(1, 0).to_line())).unwrap();
        std::fs::write(
            sidecar_path(&path),
            format!("{SIDECAR_MAGIC_V1}\nfingerprint {}\ncommand: x\n", fp(1)),
        )
        .unwrap();
        let opened = Joblog::resume(&path, fp(1), "x", false, NONE).unwrap();
        assert_eq!(opened.skip, Skip::from([1]));
        // Its jobs carried no run id: they count as a killed run's.
        assert_eq!(opened.unfinished, Some(Unfinished { run: None }));
    }

    #[test]
    fn the_sidecar_keeps_its_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let opened = Joblog::create(&path, fp(1), "command: echo; 1 jobs", NONE).unwrap();
        let run = opened.log.run_id();
        opened.log.finish().unwrap();
        assert_eq!(
            std::fs::read_to_string(sidecar_path(&path)).unwrap(),
            format!(
                "fanout-joblog 2\nfingerprint {}\nrun {run} finished\nsummary command: echo; 1 jobs\n",
                fp(1)
            )
        );
    }
}
