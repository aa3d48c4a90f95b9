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
//! # Journaled runs
//!
//! A keyed run given a journal ([`FanOut::journal`](crate::FanOut::journal),
//! or [`FanOut::journal_file`](crate::FanOut::journal_file) for a file in
//! the [`JsonOutcomes`] format) loads it when it starts, **recalls** the
//! outcome of each key it holds (a success, or a failure kept with
//! [`RecordedFailures::Keep`]) instead of running the task, and **records**
//! the outcome of every task that runs before anyone sees it. Killed at any
//! instant and run again, it never runs a task whose outcome was recorded,
//! and loses none:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), fanout::journal::Error> {
//! use fanout::journal::{Fingerprint, Options};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("sizes.journal");
//! let options = Options::new(Fingerprint::of(["file sizes", "v1"]));
//! let files = || ["a.txt", "bb.txt", "ccc.txt"].map(|name| (name.to_owned(), name));
//! let size = |_ctx, name: &'static str| async move { Ok::<u64, String>(name.len() as u64) };
//!
//! let first = fanout::fan_out_keyed(files()).journal_file(&path, options.clone())?.run_all(size).await.unwrap();
//! assert_eq!(first.counts().recalled, 0);
//! let again = fanout::fan_out_keyed(files()).journal_file(&path, options)?.run_all(size).await.unwrap();
//! assert_eq!(again.counts().recalled, 3); // nothing ran
//! # Ok(()) }
//! ```
//!
//! [`RunError`] says why a journaled run failed; [`JournaledStream`]
//! yields each outcome with its [`Origin`]. `examples/resume.rs` is a batch
//! to interrupt with Ctrl-C and run again.
//!
//! # Formats and stores
//!
//! The lines themselves are a [`RecordFormat`]'s: the `fanout` command
//! writes GNU parallel's joblog with this machinery, and keyed runs of the
//! library write [`JsonOutcomes`] (a key and its [`Outcome`](crate::Outcome)).
//! [`Store`] is the interface a run talks to (load what is recorded, record
//! more, finish); [`Journal`] is its implementation on a local file, and a
//! remote store can implement it too.
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
mod journaled;
mod lock;
mod memory;
mod options;
mod origin;
mod outcomes;
mod recorded_failures;
mod run_error;
mod run_id;
mod sidecar;
mod store;
mod stream;
mod sync_policy;

pub use contents::{parse, Contents, Damaged};
pub use error::Error;
pub use file::Journal;
pub use fingerprint::{Fingerprint, Fingerprinter};
pub use format::{EncodeError, RecordFormat};
pub use journaled::Journaled;
pub use options::{OnMismatch, Opened, Options};
pub use origin::Origin;
pub use outcomes::JsonOutcomes;
pub use recorded_failures::RecordedFailures;
pub use run_error::RunError;
pub use run_id::{PreviousRun, RunId};
pub use sidecar::sidecar_path;
pub use store::{Records, Store, Unrecorded};
pub use stream::{JournaledItem, JournaledStream};
pub use sync_policy::SyncPolicy;
