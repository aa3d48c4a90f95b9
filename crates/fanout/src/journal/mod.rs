//! A crash-safe journal: an append-only file of records, by key, that a run
//! killed at any instant can be resumed from (feature `journal`, Unix).
//!
//! A long batch that dies at 90 % should not start over. A journal records
//! each finished piece of work as it finishes; a later run loads what is
//! recorded and skips it. What makes that hard is what a crash leaves
//! behind, and this module owns it:
//!
//! - **One run at a time.** The journal file is locked (`flock`) for as
//!   long as it is open; a second run is refused ([`Error::Locked`]). The
//!   kernel drops the lock when the process dies, by `SIGKILL` too.
//! - **A torn last record is not a record.** Each record is one line,
//!   written with one `write`: a kill leaves the whole line or a prefix of
//!   it. A line is a record only with its newline and when the format reads
//!   it; a bad last line is ignored and cut off before the next record is
//!   appended, so it is never glued to it. A bad line anywhere else is
//!   damage, refused ([`Error::Damaged`]) rather than skipped.
//! - **The journal of another run is refused.** A sidecar file
//!   ([`sidecar_path`]: the journal's path plus `.fanout`) holds a
//!   [`Fingerprint`] of what identifies the run, the [`RunId`] of the last
//!   run and whether it finished. Resuming with another fingerprint is
//!   refused ([`Error::Mismatch`]) unless the caller adopts it
//!   ([`OnMismatch::Adopt`]). The sidecar is replaced atomically.
//! - **Durability is a choice.** Every record survives the death of the
//!   process once recorded; what survives a power loss is the
//!   [`SyncPolicy`]'s: nothing promised, every record, or all but the last
//!   group.
//!
//! The lines themselves are a [`RecordFormat`]'s: the `fanout` command
//! writes GNU parallel's joblog with this machinery, and keyed runs of the
//! library write [`JsonOutcomes`] (a key and its [`Outcome`](crate::Outcome)).
//! [`Store`] is the interface a run talks to (load what is recorded, record
//! one more, finish); [`Journal`] is its implementation on a local file,
//! and a remote store can implement it too.
//!
//! # Example
//!
//! A batch killed halfway and run again does only the rest:
//!
//! ```
//! # fn main() -> Result<(), fanout::journal::Error> {
//! use fanout::journal::{Fingerprint, JsonOutcomes, Options};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("sizes.journal");
//! let options = Options::new(Fingerprint::of(["file sizes", "v1"])).summary("file sizes v1");
//! let format = JsonOutcomes::<String, u64, String>::new();
//! let inputs = ["a.txt", "b.txt", "c.txt"];
//!
//! // First run: two inputs done, then the process dies (here: a drop).
//! let journal = options.clone().resume(&path, format)?.journal;
//! for name in &inputs[..2] {
//!     journal.record(&name.to_string(), &Ok(name.len() as u64))?;
//! }
//! drop(journal);
//!
//! // Second run: loads what is recorded, runs the rest.
//! let opened = options.resume(&path, format)?;
//! assert!(!opened.previous.as_ref().unwrap().finished);
//! let mut journal = opened.journal;
//! let done = journal.load()?;
//! assert_eq!(done.len(), 2);
//! for name in inputs.iter().filter(|n| !done.iter().any(|(k, _)| k == *n)) {
//!     journal.record(&name.to_string(), &Ok(name.len() as u64))?;
//! }
//! journal.finish()?;
//! # Ok(()) }
//! ```
//!
//! # Files
//!
//! `FILE` is the header line, then one record per line. `FILE.fanout`, the
//! sidecar, is four lines: `<kind> 2`, `fingerprint <hex>`,
//! `run <hex> running|finished`, `summary <text>`. Tools that only know the
//! journal's format (GNU parallel, for a joblog) ignore the sidecar.

mod contents;
mod error;
mod file;
mod fingerprint;
mod format;
mod lock;
mod options;
mod outcomes;
mod run_id;
mod sidecar;
mod store;
mod sync_policy;

pub use contents::{parse, Contents, Damaged};
pub use error::Error;
pub use file::Journal;
pub use fingerprint::{Fingerprint, Fingerprinter};
pub use format::{EncodeError, RecordFormat};
pub use options::{OnMismatch, Opened, Options};
pub use outcomes::JsonOutcomes;
pub use run_id::{PreviousRun, RunId};
pub use sidecar::sidecar_path;
pub use store::{Records, Store};
pub use sync_policy::SyncPolicy;
