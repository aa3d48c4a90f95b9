//! Why a journaled run returned no results.

use std::error::Error as StdError;
use std::fmt;

use crate::error::Error;

/// Why a journaled run ([`FanOut::journal`](crate::FanOut::journal))
/// returned no results: its journal failed, its input repeated a key, or
/// (fail-fast [`run`](crate::FanOut::run) only) the run itself failed as a
/// run without a journal would.
///
/// `J` is the store's error type ([`Store::Error`](super::Store::Error);
/// [`journal::Error`](super::Error) for a journal file).
///
/// **Which error wins.** A failure of the journal wins over the run's own
/// error: once a record could not be written, the journal no longer holds
/// everything this run did, and that is what the caller must hear first.
/// Of several journal failures, the first one is kept (the others are
/// usually its consequences). Only a panic re-raised under
/// [`PanicPolicy::Propagate`](crate::PanicPolicy::Propagate) takes
/// precedence over every error: it unwinds out of the run instead.
///
/// **Nothing recorded is lost.** Every outcome recorded before the error is
/// in the journal; running again (with the same journal) recalls them and
/// runs only the rest.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), fanout::journal::Error> {
/// use fanout::journal::{Fingerprint, Options, RunError};
///
/// let dir = tempfile::tempdir().unwrap();
/// let options = Options::new(Fingerprint::of(["example"]));
/// let inputs = ["a", "b", "a"].map(|k| (k.to_owned(), k));
/// let err = fanout::fan_out_keyed(inputs)
///     .journal_file(dir.path().join("journal"), options)?
///     .run(|_ctx, k| async move { Ok::<usize, String>(k.len()) })
///     .await
///     .unwrap_err();
/// assert!(matches!(&err, RunError::RepeatedKey { key, index: 2 } if key == "a"));
/// assert!(err.to_string().contains("appears more than once"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError<K, E, J> {
    /// The journal could not be read when the run started: no task ran.
    Load(J),
    /// The outcome of task `key` could not be recorded, so the run stopped
    /// at once, as on a cancellation (no new task starts; running tasks get
    /// the grace period, then are aborted). A later run runs `key` again.
    Record {
        /// The task whose outcome was not recorded.
        key: K,
        /// Why.
        error: J,
    },
    /// `key` came a second time in the input, as input `index`. A journal
    /// finds outcomes by key, so it could not tell the two inputs apart: the
    /// run stopped as on a cancellation, without running input `index`.
    RepeatedKey {
        /// The repeated key.
        key: K,
        /// The position of its second occurrence in the input, from 0.
        index: usize,
    },
    /// Every outcome was recorded, but the journal could not be marked
    /// finished; running again recalls them all and finishes it.
    Finish(J),
    /// The run failed as it would have without a journal (a task failed,
    /// the external token, the deadline): only from the fail-fast
    /// [`run`](crate::FanOut::run), whose [`Error`] counts the outcomes
    /// recalled from the journal in [`Counts::recalled`](crate::Counts::recalled).
    Run(Error<K, E>),
}

impl<K, E, J> RunError<K, E, J> {
    /// The store's error, if the journal failed.
    pub fn journal_error(&self) -> Option<&J> {
        match self {
            RunError::Load(error) | RunError::Record { error, .. } | RunError::Finish(error) => {
                Some(error)
            }
            RunError::RepeatedKey { .. } | RunError::Run(_) => None,
        }
    }

    /// The run's own error, if it failed as a run without a journal would.
    pub fn run_error(&self) -> Option<&Error<K, E>> {
        match self {
            RunError::Run(error) => Some(error),
            _ => None,
        }
    }
}

impl<K: fmt::Debug, E: fmt::Display, J> fmt::Display for RunError<K, E, J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Load(_) => f.write_str(
                "cannot load the run's journal, so no task ran; fix the cause and run again",
            ),
            RunError::Record { key, .. } => write!(
                f,
                "cannot record the outcome of task {key:?} in the run's journal, so the run \
                 stopped; the outcomes recorded before it are kept, and running again recalls \
                 them"
            ),
            RunError::RepeatedKey { key, index } => write!(
                f,
                "key {key:?} appears more than once in the input (again at input {index}); a \
                 journaled run finds outcomes by key, so make the keys unique or remove the \
                 repeats"
            ),
            RunError::Finish(_) => f.write_str(
                "every outcome was recorded, but the run's journal could not be marked \
                 finished; run again to finish it (recorded outcomes are recalled, not run)",
            ),
            RunError::Run(error) => fmt::Display::fmt(error, f),
        }
    }
}

impl<K, E, J> StdError for RunError<K, E, J>
where
    K: fmt::Debug,
    E: StdError + 'static,
    J: StdError + 'static,
{
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            RunError::Load(error) | RunError::Record { error, .. } | RunError::Finish(error) => {
                Some(error)
            }
            RunError::RepeatedKey { .. } => None,
            RunError::Run(error) => error.source(),
        }
    }
}
