//! Which run wrote a journal last, and whether it finished.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

/// The id of one run of a journal, new each time a journal is opened, kept
/// in the sidecar.
///
/// What it is for: a run can mark what it leaves behind with its id (the
/// `fanout` command puts it in every job's environment), so that the next
/// run, told by [`PreviousRun`] that this one did not finish, can find what
/// a killed run left and tell it from what a finished run left on purpose.
///
/// ```
/// # fn main() -> Result<(), fanout::journal::Error> {
/// use fanout::journal::{Fingerprint, JsonOutcomes, Options};
///
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("journal");
/// let fingerprint = Fingerprint::of(["example"]);
/// let format = JsonOutcomes::<String, u64, String>::new;
/// let first = Options::new(fingerprint).create(&path, format())?;
/// let id = first.journal.run_id();
/// drop(first); // not finished: as if the process had been killed
/// let second = Options::new(fingerprint).resume(&path, format())?;
/// let previous = second.previous.unwrap();
/// assert_eq!((previous.id, previous.finished), (Some(id), false));
/// assert_ne!(second.journal.run_id(), id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunId(u64);

impl RunId {
    /// A fresh id: eight random bytes from the kernel, or, if they cannot be
    /// read, the time and the process id.
    pub(crate) fn new() -> RunId {
        let mut bytes = [0u8; 8];
        let random = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        if random.is_ok() {
            return RunId(u64::from_le_bytes(bytes));
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        RunId(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// The id's 64 bits.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Reads the 16 hex digits of [`Display`](fmt::Display).
    pub(crate) fn from_hex(hex: &str) -> Option<RunId> {
        (hex.len() == 16)
            .then(|| u64::from_str_radix(hex, 16).ok())
            .flatten()
            .map(RunId)
    }
}

/// Sixteen lowercase hex digits, as the sidecar holds it.
impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The run that used a journal before this one, as its sidecar tells.
///
/// It is read after the journal's lock is taken, which proves that the
/// process of that run is gone: if it did not [`finish`](super::Journal::finish),
/// it was killed (or dropped its journal on an error path), and whatever it
/// left running is an orphan.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreviousRun {
    /// Its id; `None` when its sidecar has an older layout without one
    /// (see [`RecordFormat::legacy_sidecar`](super::RecordFormat::legacy_sidecar)).
    pub id: Option<RunId>,
    /// Whether it called [`Journal::finish`](super::Journal::finish).
    pub finished: bool,
    /// The summary it was opened with (see [`Options::summary`](super::Options::summary)).
    pub summary: String,
}
