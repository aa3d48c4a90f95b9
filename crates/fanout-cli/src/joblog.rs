//! The journal: GNU parallel's `--joblog` format, written so that a SIGKILL
//! at any instant leaves a log that `--resume` can trust.
//!
//! The joblog itself is byte-compatible with GNU parallel (header line, then
//! one tab-separated record per finished job). Beside it, `FILE.fanout`
//! holds a fingerprint of the command and the input list, and the id of the
//! last run with whether it finished; GNU tools never look at it. A resume
//! checks the fingerprint, ignores a torn last line (no newline or not nine
//! fields) and cuts it off before appending, so the next record starts on a
//! line of its own.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The header line GNU parallel writes.
pub(crate) const HEADER: &str =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

/// The first line of the sidecar file; names its format version.
const SIDECAR_MAGIC: &str = "fanout-joblog 2";

/// The first line of the first version, which had no run id.
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
}

impl JobRecord {
    /// Whether the job succeeded.
    pub(crate) fn is_success(&self) -> bool {
        self.exitval == 0 && self.signal == 0
    }

    /// The line, newline-terminated, in GNU parallel's layout. Newlines in
    /// the command become NUL bytes, as GNU parallel does, so that one
    /// record stays one line.
    pub(crate) fn to_line(&self) -> String {
        format!(
            "{}\t:\t{:.3}\t{:10.3}\t{}\t{}\t{}\t{}\t{}\n",
            self.seq,
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
        })
    }
}

/// What a joblog holds, read leniently at its tail and strictly elsewhere.
#[derive(Debug, Default)]
pub(crate) struct Contents {
    /// Every complete record, in file order.
    pub(crate) records: Vec<JobRecord>,
    /// The length of the valid prefix; bytes after it are a torn line.
    pub(crate) valid_len: u64,
    /// Whether a torn last line was found (and is to be ignored).
    pub(crate) torn: bool,
}

/// Parses joblog bytes.
///
/// # Errors
/// A complete line that is not a record, anywhere but at the end: that is
/// not a torn write but a damaged or foreign file.
pub(crate) fn parse(bytes: &[u8]) -> anyhow::Result<Contents> {
    let mut contents = Contents::default();
    let mut offset = 0usize;
    let mut line_no = 0usize;
    while offset < bytes.len() {
        line_no += 1;
        let rest = &bytes[offset..];
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            contents.torn = true;
            break;
        };
        let line = &rest[..newline];
        let is_last = offset + newline + 1 == bytes.len();
        if line_no == 1 {
            if line != HEADER.trim_end().as_bytes() {
                bail!("line 1 is not GNU parallel's joblog header");
            }
        } else {
            match std::str::from_utf8(line).ok().and_then(JobRecord::parse) {
                Some(record) => contents.records.push(record),
                // A kill cannot tear a line and still write its newline, so
                // only the final line may be a fragment (from a filesystem
                // that lost the tail after a power cut, say).
                None if is_last => {
                    contents.torn = true;
                    break;
                }
                None => bail!("line {line_no} is not a joblog record"),
            }
        }
        offset += newline + 1;
    }
    contents.valid_len = offset as u64;
    Ok(contents)
}

/// A 64-bit FNV-1a hash of the command and input list, stable across
/// builds (unlike `std`'s hasher), which is what a file on disk needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fingerprint(u64);

impl Fingerprint {
    /// Hashes length-prefixed pieces, so that `["ab", "c"]` and `["a", "bc"]`
    /// differ.
    pub(crate) fn of(visit: impl FnOnce(&mut dyn FnMut(&[u8]))) -> Fingerprint {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        visit(&mut feed);
        Fingerprint(hash)
    }

    fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The open journal of the current run.
#[derive(Debug)]
pub(crate) struct Joblog {
    file: File,
    path: PathBuf,
    sidecar: Sidecar,
}

/// The seqs a resumed run must skip.
pub(crate) type Skip = HashSet<u64>;

/// A run's id: its jobs carry it (see `leftovers`), so that a later run can
/// tell what a killed run left behind from what a finished one left on
/// purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunId(u64);

impl RunId {
    /// A fresh id: random bytes from the kernel, or the time and pid.
    fn new() -> RunId {
        let mut bytes = [0u8; 8];
        let random = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        if random.is_ok() {
            return RunId(u64::from_le_bytes(bytes));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        RunId(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// The id as 16 hex digits.
    pub(crate) fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

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

/// The sidecar's path: `FILE.fanout`.
pub(crate) fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".fanout");
    PathBuf::from(name)
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
    ) -> anyhow::Result<Opened> {
        let file = open_locked(path)?;
        let unfinished = previous_run(path);
        let log = start_fresh(path, file, fingerprint, summary)?;
        Ok(Opened {
            log,
            skip: Skip::new(),
            torn: false,
            unfinished,
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
    ) -> anyhow::Result<Opened> {
        let mut file = open_locked(path)?;
        let unfinished = previous_run(path);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read joblog {}", path.display()))?;
        let contents = if bytes.len() < HEADER.len() && HEADER.as_bytes().starts_with(&bytes) {
            // Killed while writing the header: nothing was recorded yet.
            Contents {
                records: Vec::new(),
                valid_len: 0,
                torn: !bytes.is_empty(),
            }
        } else {
            parse(&bytes).with_context(|| {
                format!(
                    "joblog {} is damaged, so it cannot say what already ran; \
                     remove it to start over",
                    path.display()
                )
            })?
        };
        if contents.records.is_empty() {
            let log = start_fresh(path, file, fingerprint, summary)?;
            return Ok(Opened {
                log,
                skip: Skip::new(),
                torn: contents.torn,
                unfinished,
            });
        }
        check_sidecar(path, fingerprint)?;
        let skip = contents
            .records
            .iter()
            .filter(|r| !only_succeeded || r.is_success())
            .map(|r| r.seq)
            .collect();
        // Appends land after the cut, so the next record starts its own line.
        file.set_len(contents.valid_len)
            .with_context(|| format!("cannot cut the torn line off {}", path.display()))?;
        let sidecar = Sidecar::running(fingerprint, summary);
        sidecar.write(path)?;
        Ok(Opened {
            log: Joblog {
                file,
                path: path.to_owned(),
                sidecar,
            },
            skip,
            torn: contents.torn,
            unfinished,
        })
    }

    /// This run's id.
    pub(crate) fn run_id(&self) -> RunId {
        self.sidecar.run
    }

    /// Appends one record with a single `write` on an `O_APPEND` file, so a
    /// kill leaves either the whole line or a prefix of it at the end.
    /// There is no fsync: the record survives the death of fanout, not
    /// necessarily a power cut (the torn-tail rule covers what it loses).
    ///
    /// # Errors
    /// The write fails (disk full, say).
    pub(crate) fn append(&mut self, record: &JobRecord) -> std::io::Result<()> {
        self.file.write_all(record.to_line().as_bytes())
    }

    /// Records that this run finished (rather than being killed): what its
    /// jobs left running, they left on purpose. Then unlocks the journal.
    ///
    /// # Errors
    /// The sidecar cannot be written.
    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        self.sidecar.finished = true;
        self.sidecar.write(&self.path)
    }
}

/// Opens (creating) the joblog for appending and takes an exclusive lock
/// on it for the life of the run: two runs appending to one journal would
/// each skip the other's jobs, and the lock also tells a later run that any
/// process still marked with this journal is an orphan. The kernel drops the
/// lock when fanout dies, SIGKILL included.
fn open_locked(path: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot open joblog {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::WouldBlock {
            bail!(
                "joblog {} is in use by another running fanout; wait for it to finish \
                 or use another --joblog",
                path.display()
            );
        }
        return Err(err).with_context(|| format!("cannot lock joblog {}", path.display()));
    }
    Ok(file)
}

/// Empties the locked joblog and starts it over for this command and input
/// list.
fn start_fresh(
    path: &Path,
    mut file: File,
    fingerprint: Fingerprint,
    summary: &str,
) -> anyhow::Result<Joblog> {
    // The sidecar goes first: a kill between the two leaves a sidecar and a
    // journal without records, which a resume starts afresh.
    let sidecar = Sidecar::running(fingerprint, summary);
    sidecar.write(path)?;
    file.set_len(0)
        .and_then(|()| file.write_all(HEADER.as_bytes()))
        .with_context(|| format!("cannot write joblog {}", path.display()))?;
    Ok(Joblog {
        file,
        path: path.to_owned(),
        sidecar,
    })
}

/// The sidecar `FILE.fanout`: which command and input list the journal
/// belongs to, and the last run and whether it finished.
#[derive(Debug, Clone)]
struct Sidecar {
    fingerprint: String,
    run: RunId,
    finished: bool,
    summary: String,
}

/// A sidecar as read: `run` is `None` in the first format.
#[derive(Debug)]
struct ReadSidecar {
    fingerprint: String,
    run: Option<(RunId, bool)>,
    summary: String,
}

impl Sidecar {
    /// The sidecar of a new run, not finished yet.
    fn running(fingerprint: Fingerprint, summary: &str) -> Sidecar {
        Sidecar {
            fingerprint: fingerprint.hex(),
            run: RunId::new(),
            finished: false,
            summary: summary.replace('\n', " "),
        }
    }

    /// Writes it atomically (a temporary file renamed over it, synced first).
    fn write(&self, path: &Path) -> anyhow::Result<()> {
        let sidecar = sidecar_path(path);
        let mut tmp = sidecar.clone().into_os_string();
        tmp.push(".tmp");
        let text = format!(
            "{SIDECAR_MAGIC}\nfingerprint {}\nrun {} {}\nsummary {}\n",
            self.fingerprint,
            self.run.hex(),
            if self.finished { "finished" } else { "running" },
            self.summary
        );
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &sidecar)
        };
        write().with_context(|| {
            format!(
                "cannot write the joblog's fingerprint file {}",
                sidecar.display()
            )
        })
    }

    /// Reads the sidecar of `path`: `Ok(None)` if there is none.
    ///
    /// # Errors
    /// It cannot be read, or is not a fanout sidecar.
    fn read(path: &Path) -> anyhow::Result<Option<ReadSidecar>> {
        let sidecar = sidecar_path(path);
        let text = match std::fs::read_to_string(&sidecar) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", sidecar.display())),
        };
        let not_ours = || {
            anyhow::anyhow!(
                "{} is not a fanout fingerprint file; remove it and the joblog to start over",
                sidecar.display()
            )
        };
        let mut lines = text.lines();
        let magic = lines.next().ok_or_else(not_ours)?;
        let fingerprint = lines
            .next()
            .and_then(|l| l.strip_prefix("fingerprint "))
            .ok_or_else(not_ours)?
            .to_owned();
        if magic == SIDECAR_MAGIC_V1 {
            let summary = lines.next().unwrap_or("").to_owned();
            return Ok(Some(ReadSidecar {
                fingerprint,
                run: None,
                summary,
            }));
        }
        if magic != SIDECAR_MAGIC {
            return Err(not_ours());
        }
        let run = lines
            .next()
            .and_then(|l| l.strip_prefix("run "))
            .and_then(|l| l.split_once(' '))
            .and_then(|(id, state)| {
                let id = RunId(u64::from_str_radix(id, 16).ok()?);
                match state {
                    "running" => Some((id, false)),
                    "finished" => Some((id, true)),
                    _ => None,
                }
            })
            .ok_or_else(not_ours)?;
        let summary = lines
            .next()
            .and_then(|l| l.strip_prefix("summary "))
            .unwrap_or("")
            .to_owned();
        Ok(Some(ReadSidecar {
            fingerprint,
            run: Some(run),
            summary,
        }))
    }
}

/// The earlier run of the journal at `path`, if it did not finish. Only
/// meaningful while holding the journal's lock (which proves that run's
/// fanout is gone). An unreadable sidecar says nothing: no run is assumed.
fn previous_run(path: &Path) -> Option<Unfinished> {
    match Sidecar::read(path) {
        Ok(Some(ReadSidecar {
            run: Some((id, false)),
            ..
        })) => Some(Unfinished { run: Some(id) }),
        Ok(Some(ReadSidecar { run: None, .. })) => Some(Unfinished { run: None }),
        _ => None,
    }
}

fn check_sidecar(path: &Path, fingerprint: Fingerprint) -> anyhow::Result<()> {
    let sidecar = sidecar_path(path);
    let Some(read) = Sidecar::read(path)? else {
        bail!(
            "joblog {} has no fingerprint file {} (was it written by GNU parallel?), so fanout cannot \
             check that it belongs to this command and input list; remove the joblog to start over",
            path.display(),
            sidecar.display()
        );
    };
    if read.fingerprint != fingerprint.hex() {
        bail!(
            "joblog {} was written for a different command or input list ({}); resuming it would \
             skip the wrong jobs. Run the same command with the same inputs, or remove {} and {} to start over",
            path.display(),
            read.summary,
            path.display(),
            sidecar.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
        }
    }

    fn fp(n: u8) -> Fingerprint {
        Fingerprint::of(|feed| feed(&[n]))
    }

    #[test]
    fn records_use_gnu_parallels_layout() {
        assert_eq!(
            record(2, 1).to_line(),
            "2\t:\t1795982418.252\t     0.500\t0\t6\t1\t0\techo 2\n"
        );
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
        assert_eq!(contents.records, vec![record(1, 0)]);
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
            assert_eq!(contents.records, recs);
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
        let mut log = Joblog::create(&path, fp(1), "cmd").unwrap().log;
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
        } = Joblog::resume(&path, fp(1), "cmd", false).unwrap();
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
        let skip = Joblog::resume(&path, fp(1), "cmd", true).unwrap().skip;
        assert_eq!(skip, Skip::from([1, 3]));
    }

    #[test]
    fn resume_refuses_another_command_or_input_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut log = Joblog::create(&path, fp(1), "command: echo").unwrap().log;
        log.append(&record(1, 0)).unwrap();
        drop(log);
        let err = format!(
            "{:#}",
            Joblog::resume(&path, fp(2), "x", false).unwrap_err()
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
            Joblog::resume(&path, fp(1), "x", false).unwrap_err()
        );
        assert!(err.contains("no fingerprint file"), "{err}");
    }

    #[test]
    fn a_joblog_in_use_by_another_run_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let _held = Joblog::create(&path, fp(1), "x").unwrap();
        let err = format!(
            "{:#}",
            Joblog::resume(&path, fp(1), "x", false).unwrap_err()
        );
        assert!(err.contains("in use by another running fanout"), "{err}");
    }

    #[test]
    fn resume_of_a_missing_joblog_starts_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let skip = Joblog::resume(&path, fp(1), "x", false).unwrap().skip;
        assert!(skip.is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), HEADER);
    }

    #[test]
    fn a_run_that_did_not_finish_is_reported_to_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let first = Joblog::create(&path, fp(1), "x").unwrap();
        assert_eq!(first.unfinished, None);
        let killed = first.log.run_id();
        // Dropped without `finish`: as if fanout was killed.
        drop(first);
        let second = Joblog::resume(&path, fp(1), "x", false).unwrap();
        assert_eq!(second.unfinished, Some(Unfinished { run: Some(killed) }));
        assert_ne!(second.log.run_id(), killed);
        second.log.finish().unwrap();
        let third = Joblog::create(&path, fp(2), "y").unwrap();
        assert_eq!(third.unfinished, None);
    }

    #[test]
    fn a_sidecar_of_the_first_format_still_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, format!("{HEADER}{}", record(1, 0).to_line())).unwrap();
        std::fs::write(
            sidecar_path(&path),
            format!(
                "{SIDECAR_MAGIC_V1}\nfingerprint {}\ncommand: x\n",
                fp(1).hex()
            ),
        )
        .unwrap();
        let opened = Joblog::resume(&path, fp(1), "x", false).unwrap();
        assert_eq!(opened.skip, Skip::from([1]));
        // Its jobs carried no run id: they count as a killed run's.
        assert_eq!(opened.unfinished, Some(Unfinished { run: None }));
    }

    #[test]
    fn fingerprints_separate_pieces() {
        let a = Fingerprint::of(|feed| {
            feed(b"ab");
            feed(b"c")
        });
        let b = Fingerprint::of(|feed| {
            feed(b"a");
            feed(b"bc")
        });
        assert_ne!(a.hex(), b.hex());
    }
}
