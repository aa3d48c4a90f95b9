//! An open, locked journal file.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::format::EmbeddedNewline;
use super::sidecar::Sidecar;
use super::{parse, EncodeError, Error, RecordFormat, Records, RunId, Store, SyncPolicy};

/// An open journal: an append-only file of records, one per line, locked
/// for as long as this value lives. Made by [`Options::create`] or
/// [`Options::resume`].
///
/// [`record`](Journal::record) appends one record with a single `write` on
/// a file opened in append mode, so a process killed at any instant leaves
/// either the whole line or a prefix of it at the end, and the next
/// [`resume`](super::Options::resume) ignores and cuts off such a prefix. What a
/// record survives beyond the death of the process depends on the
/// [`SyncPolicy`].
///
/// Dropping a journal without [`finish`](Journal::finish) unlocks it and
/// leaves its sidecar saying the run did not finish, as a kill would (the
/// next run's [`PreviousRun`](super::PreviousRun) says so); under
/// [`SyncPolicy::Group`] the unsynced records are synced first.
///
/// Cost per record: the format's `encode`, one `write(2)`, and the policy's
/// share of an `fdatasync`; the figures are in the repository's
/// `docs/BENCHMARKS.md` ("Journal").
///
/// [`Options::create`]: super::Options::create
/// [`Options::resume`]: super::Options::resume
///
/// ```
/// # fn main() -> Result<(), fanout::journal::Error> {
/// use fanout::journal::{Fingerprint, JsonOutcomes, Options};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("journal");
/// let options = Options::new(Fingerprint::of(["example"]));
/// let mut journal = options.clone().create(&path, JsonOutcomes::<String, u64, String>::new())?.journal;
/// journal.record(&"a".to_owned(), &Ok(1))?;
/// journal.finish()?;
///
/// let mut journal = options.resume(&path, JsonOutcomes::<String, u64, String>::new())?.journal;
/// let records = journal.load()?;
/// assert_eq!(records.len(), 1);
/// assert_eq!(records[0].0, "a");
/// assert_eq!(records[0].1.as_ref().ok(), Some(&1));
/// # Ok(()) }
/// ```
pub struct Journal<F: RecordFormat> {
    file: File,
    path: PathBuf,
    format: F,
    sidecar: Sidecar,
    policy: SyncPolicy,
    /// The records read when the journal was opened, until `load` takes them.
    loaded: Option<Records<F::Key, F::Value>>,
    /// The line being written, reused.
    line: Vec<u8>,
    /// The length of the file's whole records (and header).
    len: u64,
    unsynced: u32,
    oldest_unsynced: Option<Instant>,
    syncs: u64,
    poisoned: bool,
}

impl<F: RecordFormat> Journal<F> {
    /// A journal opened by `Options`: the file is locked and holds `len`
    /// bytes of header and whole records.
    pub(crate) fn new(
        file: File,
        path: PathBuf,
        format: F,
        sidecar: Sidecar,
        policy: SyncPolicy,
        loaded: Records<F::Key, F::Value>,
        len: u64,
    ) -> Journal<F> {
        Journal {
            file,
            path,
            format,
            sidecar,
            policy,
            loaded: Some(loaded),
            line: Vec::new(),
            len,
            unsynced: 0,
            oldest_unsynced: None,
            syncs: 0,
            poisoned: false,
        }
    }

    /// Appends one record: the format's line and a newline, with a single
    /// `write`, then syncs as the [`SyncPolicy`] says.
    ///
    /// When it returns `Ok`, the record survives the death of this process
    /// at any instant; with [`SyncPolicy::EveryRecord`] it also survives a
    /// power loss.
    ///
    /// # Errors
    /// - [`Error::Encode`]: the format cannot write the record, or its line
    ///   holds a newline. Nothing was written; the journal stays usable.
    /// - [`Error::Io`]: the write failed (disk full, say). A partial line is
    ///   cut off again, and the journal stays usable; if the cut fails too,
    ///   or if the `fdatasync` failed (after which the kernel may have
    ///   dropped the unsynced data), the journal refuses later records with
    ///   [`Error::Poisoned`].
    pub fn record(&mut self, key: &F::Key, value: &F::Value) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
            });
        }
        self.line.clear();
        let encoded = match self.format.encode(key, value, &mut self.line) {
            Ok(()) if self.line.contains(&b'\n') => Err(EncodeError::new(EmbeddedNewline)),
            other => other,
        };
        if let Err(source) = encoded {
            return Err(Error::Encode {
                path: self.path.clone(),
                source,
            });
        }
        self.line.push(b'\n');
        if let Err(e) = self.file.write_all(&self.line) {
            if self.file.set_len(self.len).is_err() {
                self.poisoned = true;
            }
            return Err(Error::io(&self.path, "append to journal")(e));
        }
        self.len += self.line.len() as u64;
        self.unsynced = self.unsynced.saturating_add(1);
        match self.policy {
            SyncPolicy::None => Ok(()),
            SyncPolicy::EveryRecord => self.sync(),
            SyncPolicy::Group { records, interval } => {
                let overdue = interval.is_some_and(|interval| {
                    let oldest = *self.oldest_unsynced.get_or_insert_with(Instant::now);
                    oldest.elapsed() >= interval
                });
                if self.unsynced >= records.get() || overdue {
                    self.sync()
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Syncs (`fdatasync`) the records written since the last sync, if any,
    /// whatever the policy: afterwards they survive a power loss. Call it
    /// from a timer to bound in time what [`SyncPolicy::Group`] or
    /// [`SyncPolicy::None`] leaves unsynced.
    ///
    /// # Errors
    /// [`Error::Io`] if `fdatasync` fails; the journal then refuses later
    /// records ([`Error::Poisoned`]), since the kernel may have dropped the
    /// data it could not write.
    pub fn sync(&mut self) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
            });
        }
        if self.unsynced == 0 {
            return Ok(());
        }
        if let Err(e) = self.file.sync_data() {
            self.poisoned = true;
            return Err(Error::io(&self.path, "sync journal")(e));
        }
        self.syncs += 1;
        self.unsynced = 0;
        self.oldest_unsynced = None;
        Ok(())
    }

    /// Every record in the journal, oldest first: the first call hands over
    /// what opening read (nothing for [`Options::create`](super::Options::create));
    /// later calls read the file again, so they include this run's records.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Damaged`] if the file cannot be read again.
    pub fn load(&mut self) -> Result<Records<F::Key, F::Value>, Error> {
        if let Some(records) = self.loaded.take() {
            return Ok(records);
        }
        let mut bytes = vec![0u8; self.len as usize];
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(Error::io(&self.path, "read journal"))?;
        parse(&self.format, &bytes)
            .map(|contents| contents.records)
            .map_err(|damage| Error::Damaged {
                path: self.path.clone(),
                damage,
            })
    }

    /// Syncs what the policy left unsynced (nothing under
    /// [`SyncPolicy::None`]), marks the run finished in the sidecar (so the
    /// next run's [`PreviousRun`](super::PreviousRun) says it finished), and
    /// unlocks the journal.
    ///
    /// # Errors
    /// [`Error::Io`] if the sync or the sidecar's write fails: the records
    /// stay, and the sidecar says the run did not finish.
    pub fn finish(mut self) -> Result<(), Error> {
        if self.policy != SyncPolicy::None {
            self.sync()?;
        }
        self.sidecar.finished = true;
        self.sidecar.write(
            self.format.kind(),
            &self.path,
            self.policy != SyncPolicy::None,
        )
    }

    /// This run's id, new at each open, kept in the sidecar.
    #[must_use]
    pub fn run_id(&self) -> RunId {
        self.sidecar.run
    }

    /// The journal's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sync policy it was opened with.
    #[must_use]
    pub fn policy(&self) -> SyncPolicy {
        self.policy
    }

    /// How many `fdatasync` calls on the journal have succeeded since it
    /// was opened (the sidecar's own syncs not counted).
    #[must_use]
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// The record format.
    #[must_use]
    pub fn format(&self) -> &F {
        &self.format
    }
}

impl<F: RecordFormat> Drop for Journal<F> {
    fn drop(&mut self) {
        if matches!(self.policy, SyncPolicy::Group { .. }) {
            // Best effort: a drop has no one to report a failure to, and a
            // failed sync only loses what a power cut would.
            let _ = self.sync();
        }
    }
}

impl<F: RecordFormat> fmt::Debug for Journal<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("kind", &self.format.kind())
            .field("run", &self.sidecar.run)
            .field("policy", &self.policy)
            .field("len", &self.len)
            .field("syncs", &self.syncs)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// The local store: see [`Journal::load`], [`Journal::record`] and
/// [`Journal::finish`].
impl<F: RecordFormat> Store for Journal<F> {
    type Key = F::Key;
    type Value = F::Value;
    type Error = Error;

    fn load(&mut self) -> Result<Records<F::Key, F::Value>, Error> {
        Journal::load(self)
    }

    fn record(&mut self, key: &F::Key, value: &F::Value) -> Result<(), Error> {
        Journal::record(self, key, value)
    }

    fn finish(self) -> Result<(), Error> {
        Journal::finish(self)
    }
}
