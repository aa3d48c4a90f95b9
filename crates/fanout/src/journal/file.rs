//! An open, locked journal file.

use std::fmt;
use std::fs::File;
use std::future::{ready, Future};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
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
/// [`resume`](super::Options::resume) ignores and cuts off such a prefix.
/// What a record survives beyond the death of the process depends on the
/// [`SyncPolicy`].
///
/// `record` and `sync` take `&self`: threads (or a run's lanes) may record
/// at once, and records are appended whole, one at a time, in the order
/// the calls take the journal's internal lock.
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
/// let journal = options.clone().create(&path, JsonOutcomes::<String, u64, String>::new())?.journal;
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
    /// The file's length when they were read.
    loaded_len: u64,
    appender: Mutex<Appender>,
}

/// What appending changes, behind the journal's lock.
struct Appender {
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
            loaded_len: len,
            appender: Mutex::new(Appender {
                line: Vec::new(),
                len,
                unsynced: 0,
                oldest_unsynced: None,
                syncs: 0,
                poisoned: false,
            }),
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
    ///   [`Error::Poisoned`], as it does after a panic in the format.
    pub fn record(&self, key: &F::Key, value: &F::Value) -> Result<(), Error> {
        let mut appender = self.appender()?;
        let appender = &mut *appender;
        appender.line.clear();
        let encoded = match self.format.encode(key, value, &mut appender.line) {
            Ok(()) if appender.line.contains(&b'\n') => Err(EncodeError::new(EmbeddedNewline)),
            other => other,
        };
        if let Err(source) = encoded {
            return Err(Error::Encode {
                path: self.path.clone(),
                source,
            });
        }
        appender.line.push(b'\n');
        if let Err(e) = (&self.file).write_all(&appender.line) {
            if self.file.set_len(appender.len).is_err() {
                appender.poisoned = true;
            }
            return Err(Error::io(&self.path, "append to journal")(e));
        }
        appender.len += appender.line.len() as u64;
        appender.unsynced = appender.unsynced.saturating_add(1);
        let due = match self.policy {
            SyncPolicy::None => false,
            SyncPolicy::EveryRecord => true,
            SyncPolicy::Group { records, interval } => {
                appender.unsynced >= records.get()
                    || interval.is_some_and(|interval| {
                        let oldest = *appender.oldest_unsynced.get_or_insert_with(Instant::now);
                        oldest.elapsed() >= interval
                    })
            }
        };
        if due {
            self.sync_locked(appender)
        } else {
            Ok(())
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
    pub fn sync(&self) -> Result<(), Error> {
        let mut appender = self.appender()?;
        self.sync_locked(&mut appender)
    }

    fn sync_locked(&self, appender: &mut Appender) -> Result<(), Error> {
        if appender.unsynced == 0 {
            return Ok(());
        }
        if let Err(e) = self.file.sync_data() {
            appender.poisoned = true;
            return Err(Error::io(&self.path, "sync journal")(e));
        }
        appender.syncs += 1;
        appender.unsynced = 0;
        appender.oldest_unsynced = None;
        Ok(())
    }

    /// The appender, unless the journal refuses records.
    fn appender(&self) -> Result<MutexGuard<'_, Appender>, Error> {
        match self.appender.lock() {
            Ok(appender) if !appender.poisoned => Ok(appender),
            _ => Err(Error::Poisoned {
                path: self.path.clone(),
            }),
        }
    }

    /// Every record in the journal, oldest first, this run's included.
    ///
    /// Cost: nothing the first time if nothing was recorded since the
    /// journal was opened (opening read the records already, and they are
    /// handed over); otherwise reading and decoding the file.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Damaged`] if the file cannot be read again.
    pub fn load(&mut self) -> Result<Records<F::Key, F::Value>, Error> {
        let len = match self.appender.get_mut() {
            Ok(appender) => appender.len,
            Err(poisoned) => poisoned.into_inner().len,
        };
        if let Some(records) = self.loaded.take() {
            if self.loaded_len == len {
                return Ok(records);
            }
        }
        let mut bytes = vec![0u8; len as usize];
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
    /// [`Error::Io`] if the sync or the sidecar's write fails, or
    /// [`Error::Poisoned`]: the records stay, and the sidecar says the run
    /// did not finish.
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
        match self.appender.lock() {
            Ok(appender) => appender.syncs,
            Err(poisoned) => poisoned.into_inner().syncs,
        }
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
        let mut debug = f.debug_struct("Journal");
        debug
            .field("path", &self.path)
            .field("kind", &self.format.kind())
            .field("run", &self.sidecar.run)
            .field("policy", &self.policy);
        if let Ok(appender) = self.appender.try_lock() {
            debug
                .field("len", &appender.len)
                .field("syncs", &appender.syncs)
                .field("poisoned", &appender.poisoned);
        }
        debug.finish_non_exhaustive()
    }
}

/// The local store: [`Journal::load`], [`Journal::record`] and
/// [`Journal::finish`]. Each does its work when called (a local file has
/// nothing to wait for that an executor could run meanwhile) and returns a
/// future that is ready at once.
impl<F> Store for Journal<F>
where
    F: RecordFormat + Send,
    F::Key: Send,
    F::Value: Send,
{
    type Key = F::Key;
    type Value = F::Value;
    type Error = Error;

    fn load(&mut self) -> impl Future<Output = Result<Records<F::Key, F::Value>, Error>> + Send {
        ready(Journal::load(self))
    }

    fn record(
        &self,
        key: &F::Key,
        value: &F::Value,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        ready(Journal::record(self, key, value))
    }

    fn finish(self) -> impl Future<Output = Result<(), Error>> + Send {
        ready(Journal::finish(self))
    }
}
