//! Why a journal cannot be opened or written.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::{Damaged, EncodeError};

/// Why a journal cannot be opened, read or written. Each names the file and
/// says what to do; the underlying cause, if any, is the
/// [`source`](StdError::source).
///
/// When opening fails, nothing was written: the journal and its sidecar are
/// as they were.
///
/// ```
/// # fn main() -> Result<(), fanout::journal::Error> {
/// use fanout::journal::{Error, Fingerprint, JsonOutcomes, Options};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("journal");
/// let format = JsonOutcomes::<String, u64, String>::new;
/// let _running = Options::new(Fingerprint::of(["a"])).create(&path, format())?;
/// let second = Options::new(Fingerprint::of(["a"])).resume(&path, format());
/// assert!(matches!(second, Err(Error::Locked { .. })));
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Another open journal (in this process or another) holds the file's
    /// lock: two runs on one journal would each skip what the other
    /// records.
    Locked {
        /// The journal.
        path: PathBuf,
    },
    /// A file operation failed.
    Io {
        /// The file (the journal, or its sidecar).
        path: PathBuf,
        /// What was being done, as in "cannot *read* journal ...".
        action: &'static str,
        /// Why.
        source: io::Error,
    },
    /// A line is neither a record nor a torn last line.
    Damaged {
        /// The journal.
        path: PathBuf,
        /// Which line.
        damage: Damaged,
    },
    /// The journal holds records but has no sidecar, so nothing says which
    /// run wrote them (a GNU parallel joblog, say).
    NoSidecar {
        /// The journal.
        path: PathBuf,
        /// Where the sidecar should be.
        sidecar: PathBuf,
    },
    /// The sidecar is not one of this journal's kind (another format, or not
    /// a sidecar at all).
    BadSidecar {
        /// The sidecar.
        sidecar: PathBuf,
    },
    /// The journal was written by a run with another fingerprint: resuming
    /// it would replay records that belong to other work.
    Mismatch {
        /// The journal.
        path: PathBuf,
        /// Its sidecar.
        sidecar: PathBuf,
        /// The summary that run gave (see [`Options::summary`](super::Options::summary)).
        summary: String,
    },
    /// The format could not write the record as one line.
    Encode {
        /// The journal.
        path: PathBuf,
        /// Why.
        source: EncodeError,
    },
    /// An earlier write or sync of this journal failed, and the journal can
    /// no longer promise that its tail is whole (a partial record could not
    /// be cut off) or that synced records reached the disk (after a failed
    /// `fdatasync` the kernel may have dropped them): it refuses more records.
    Poisoned {
        /// The journal.
        path: PathBuf,
    },
}

impl Error {
    /// The file the error is about.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Error::Locked { path }
            | Error::Io { path, .. }
            | Error::Damaged { path, .. }
            | Error::NoSidecar { path, .. }
            | Error::Mismatch { path, .. }
            | Error::Encode { path, .. }
            | Error::Poisoned { path } => path,
            Error::BadSidecar { sidecar } => sidecar,
        }
    }

    pub(crate) fn io<'a>(
        path: &'a Path,
        action: &'static str,
    ) -> impl FnOnce(io::Error) -> Error + 'a {
        move |source| Error::Io {
            path: path.to_owned(),
            action,
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Locked { path } => write!(
                f,
                "journal {} is in use by another run; wait for it to finish or use another journal",
                path.display()
            ),
            Error::Io { path, action, .. } => write!(f, "cannot {action} {}", path.display()),
            Error::Damaged { path, .. } => write!(
                f,
                "journal {} is damaged, so it cannot say what already ran; remove it to start over",
                path.display()
            ),
            Error::NoSidecar { path, sidecar } => write!(
                f,
                "journal {} has no sidecar {}, so nothing says which run wrote it; \
                 remove the journal to start over, or adopt it",
                path.display(),
                sidecar.display()
            ),
            Error::BadSidecar { sidecar } => write!(
                f,
                "{} is not a sidecar of this kind of journal; remove it and the journal to start over",
                sidecar.display()
            ),
            Error::Mismatch {
                path,
                sidecar,
                summary,
            } => write!(
                f,
                "journal {} was written by a different run ({summary}); resuming it would replay \
                 the wrong records. Resume with that run's fingerprint, remove {} and {} to start \
                 over, or adopt it",
                path.display(),
                path.display(),
                sidecar.display()
            ),
            Error::Encode { path, .. } => write!(
                f,
                "cannot record in journal {}: the format cannot write the record",
                path.display()
            ),
            Error::Poisoned { path } => write!(
                f,
                "journal {} refuses more records after a failed write or sync",
                path.display()
            ),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Damaged { damage, .. } => Some(damage),
            Error::Encode { source, .. } => Some(source),
            _ => None,
        }
    }
}
