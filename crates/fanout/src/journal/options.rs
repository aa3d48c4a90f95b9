//! Opening a journal: new, or resumed after a crash.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use super::lock::open_locked;
use super::sidecar::{sidecar_path, ReadSidecar, Sidecar};
use super::{parse, Error, Fingerprint, Journal, PreviousRun, RecordFormat, SyncPolicy};

/// How to open a journal: the fingerprint of the run, and the settings.
/// [`create`](Options::create) starts a journal over;
/// [`resume`](Options::resume) continues one.
///
/// Both take the journal's lock first (refusing a journal another run
/// holds, with [`Error::Locked`]), read the previous run's state from the
/// sidecar, and write nothing until every check has passed.
///
/// ```
/// # fn main() -> Result<(), fanout::journal::Error> {
/// use fanout::journal::{Fingerprint, JsonOutcomes, OnMismatch, Options, SyncPolicy};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("journal");
/// let opened = Options::new(Fingerprint::of(["thumbnails", "v2"]))
///     .summary("thumbnails v2")
///     .sync(SyncPolicy::group(64, None))
///     .on_mismatch(OnMismatch::Refuse)
///     .resume(&path, JsonOutcomes::<String, u64, String>::new())?;
/// assert!(!opened.torn);
/// assert_eq!(opened.previous, None); // a new journal
/// opened.journal.finish()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "options do nothing until `create` or `resume` opens a journal"]
pub struct Options {
    fingerprint: Fingerprint,
    summary: String,
    sync: SyncPolicy,
    on_mismatch: OnMismatch,
}

/// What [`Options::resume`] does with a journal whose sidecar names another
/// run (another fingerprint), none at all, or is unreadable as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnMismatch {
    /// Refuse it ([`Error::Mismatch`], [`Error::NoSidecar`],
    /// [`Error::BadSidecar`]), leaving both files untouched. The default.
    #[default]
    Refuse,
    /// Take it over: keep its records, and write this run's fingerprint to
    /// the sidecar. For a caller whose records are keyed so that they stay
    /// meaningful when the work changes (new inputs, a new version of the
    /// task code it chooses to trust).
    Adopt,
}

/// A journal just opened, and what opening found.
#[derive(Debug)]
#[non_exhaustive]
pub struct Opened<F: RecordFormat> {
    /// The journal, locked; its [`load`](Journal::load) returns the records
    /// found.
    pub journal: Journal<F>,
    /// Whether a torn last line (a run killed while writing it, or the tail
    /// of the file lost in a power cut) was ignored and cut off.
    pub torn: bool,
    /// The run that used the journal before, if its sidecar says so.
    pub previous: Option<PreviousRun>,
    /// Whether the journal belonged to another run and was taken over
    /// ([`OnMismatch::Adopt`]).
    pub adopted: bool,
}

impl Options {
    /// Options for the run `fingerprint` identifies, with the defaults: no
    /// summary, [`SyncPolicy::None`], [`OnMismatch::Refuse`].
    pub fn new(fingerprint: Fingerprint) -> Options {
        Options {
            fingerprint,
            summary: String::new(),
            sync: SyncPolicy::None,
            on_mismatch: OnMismatch::Refuse,
        }
    }

    /// One line describing the run for a human, kept in the sidecar and
    /// quoted by [`Error::Mismatch`] when another run tries to resume the
    /// journal. Newlines become spaces. Default: empty.
    pub fn summary(self, summary: impl Into<String>) -> Options {
        Options {
            summary: summary.into(),
            ..self
        }
    }

    /// When records are synced to the disk. Default: [`SyncPolicy::None`]
    /// (records survive a crash of the process, not of the machine).
    pub fn sync(self, sync: SyncPolicy) -> Options {
        Options { sync, ..self }
    }

    /// What [`resume`](Options::resume) does with a journal of another run.
    /// Default: [`OnMismatch::Refuse`].
    pub fn on_mismatch(self, on_mismatch: OnMismatch) -> Options {
        Options {
            on_mismatch,
            ..self
        }
    }

    /// Starts the journal at `path` over (creating it if needed): an empty
    /// journal with only its header, and a sidecar naming this run. Records
    /// an earlier run left are discarded, as GNU parallel's `--joblog`
    /// without `--resume` does.
    ///
    /// The sidecar is written first (to a temporary file, synced, renamed
    /// over the old one), then the journal is emptied and its header
    /// written: a crash in between leaves a journal without records, which
    /// a resume starts over. Unless the policy is [`SyncPolicy::None`], the
    /// directory and the header are synced too.
    ///
    /// # Errors
    /// [`Error::Locked`] if another run holds the journal; [`Error::Io`] if
    /// a file cannot be opened or written.
    pub fn create<F: RecordFormat>(
        self,
        path: impl AsRef<Path>,
        format: F,
    ) -> Result<Opened<F>, Error> {
        let path = path.as_ref();
        let file = open_locked(path)?;
        let previous = previous_run(&format, path);
        let journal = self.start_over(path, file, format)?;
        Ok(Opened {
            journal,
            torn: false,
            previous,
            adopted: false,
        })
    }

    /// Opens the journal at `path` to continue it: reads and checks its
    /// records, checks the sidecar's fingerprint, cuts a torn last line off
    /// (so the next record starts on a line of its own), and marks this run
    /// in the sidecar. [`Journal::load`] then returns the records.
    ///
    /// A missing journal, or one without a single record, is started over as
    /// by [`create`](Options::create): there is nothing to check it against.
    ///
    /// Cost: reading and decoding the whole file once.
    ///
    /// # Errors
    /// Nothing is written when it fails:
    /// - [`Error::Locked`]: another run holds the journal.
    /// - [`Error::Damaged`]: a line other than the last is not a record (see
    ///   [`parse`](super::parse)).
    /// - [`Error::Mismatch`], [`Error::NoSidecar`], [`Error::BadSidecar`]:
    ///   the records belong to another run, or nothing says which run they
    ///   belong to; unless [`OnMismatch::Adopt`].
    /// - [`Error::Io`]: a file cannot be read or written.
    pub fn resume<F: RecordFormat>(
        self,
        path: impl AsRef<Path>,
        format: F,
    ) -> Result<Opened<F>, Error> {
        let path = path.as_ref();
        let mut file = open_locked(path)?;
        let previous = previous_run(&format, path);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(Error::io(path, "read journal"))?;
        let contents = parse(&format, &bytes).map_err(|damage| Error::Damaged {
            path: path.to_owned(),
            damage,
        })?;
        let torn = contents.torn;
        if contents.records.is_empty() {
            let journal = self.start_over(path, file, format)?;
            return Ok(Opened {
                journal,
                torn,
                previous,
                adopted: false,
            });
        }
        let adopted = self.check_sidecar(&format, path)?;
        let durable = self.sync != SyncPolicy::None;
        if contents.valid_len < bytes.len() as u64 {
            file.set_len(contents.valid_len)
                .and_then(|()| if durable { file.sync_data() } else { Ok(()) })
                .map_err(Error::io(path, "cut the torn last line off journal"))?;
        }
        let sidecar = Sidecar::running(self.fingerprint, &self.summary);
        sidecar.write(format.kind(), path, durable)?;
        Ok(Opened {
            journal: Journal::new(
                file,
                path.to_owned(),
                format,
                sidecar,
                self.sync,
                contents.records,
                contents.valid_len,
            ),
            torn,
            previous,
            adopted,
        })
    }

    /// Empties the locked journal and starts it over for this run.
    fn start_over<F: RecordFormat>(
        self,
        path: &Path,
        mut file: File,
        format: F,
    ) -> Result<Journal<F>, Error> {
        let durable = self.sync != SyncPolicy::None;
        let sidecar = Sidecar::running(self.fingerprint, &self.summary);
        sidecar.write(format.kind(), path, durable)?;
        let mut header = format.header().as_bytes().to_vec();
        header.push(b'\n');
        file.set_len(0)
            .and_then(|()| file.write_all(&header))
            .and_then(|()| if durable { file.sync_data() } else { Ok(()) })
            .map_err(Error::io(path, "write journal"))?;
        Ok(Journal::new(
            file,
            path.to_owned(),
            format,
            sidecar,
            self.sync,
            Vec::new(),
            header.len() as u64,
        ))
    }

    /// Checks that the journal's records are this run's: `Ok(true)` if they
    /// are not but are adopted.
    fn check_sidecar<F: RecordFormat>(&self, format: &F, path: &Path) -> Result<bool, Error> {
        let refused = match Sidecar::read(format, path) {
            Ok(Some(ReadSidecar { fingerprint, .. })) if fingerprint == self.fingerprint => {
                return Ok(false)
            }
            Ok(Some(ReadSidecar { previous, .. })) => Error::Mismatch {
                path: path.to_owned(),
                sidecar: sidecar_path(path),
                summary: previous.summary,
            },
            Ok(None) => Error::NoSidecar {
                path: path.to_owned(),
                sidecar: sidecar_path(path),
            },
            Err(e @ Error::BadSidecar { .. }) => e,
            Err(e) => return Err(e),
        };
        match self.on_mismatch {
            OnMismatch::Refuse => Err(refused),
            OnMismatch::Adopt => Ok(true),
        }
    }
}

/// The run that used the journal at `path` before, as its sidecar says.
/// Only meaningful while holding the journal's lock, which proves that
/// run's process is gone. An unreadable sidecar says nothing.
fn previous_run<F: RecordFormat>(format: &F, path: &Path) -> Option<PreviousRun> {
    Sidecar::read(format, path)
        .ok()
        .flatten()
        .map(|read| read.previous)
}
