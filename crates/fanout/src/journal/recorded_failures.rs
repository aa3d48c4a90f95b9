//! What a journaled run does with the failures a journal holds.

/// What a journaled run does with a key whose last record in the journal
/// is a failure (an error, a panic, a timeout, undeliverable): run it
/// again, or keep the failure as the key's outcome. Set with
/// [`FanOut::recorded_failures`](crate::FanOut::recorded_failures).
///
/// A recorded success is always kept. Keys never recorded always run.
///
/// | | GNU parallel | a recorded failure |
/// |---|---|---|
/// | [`Rerun`](RecordedFailures::Rerun) (default) | `--resume-failed` | runs again; its new outcome is recorded after the old one, and supersedes it |
/// | [`Keep`](RecordedFailures::Keep) | `--resume` | is delivered as the key's outcome without running, as a recorded success is |
///
/// A kept failure is the key's outcome in every respect: it stops a
/// fail-fast [`run`](crate::FanOut::run) when it is delivered (at the
/// key's place in the input, as if its task had failed at once), and a
/// kept panic under [`PanicPolicy::Propagate`](crate::PanicPolicy::Propagate)
/// is re-raised after the drain (its payload is then the recorded message,
/// a `String`). So with `Keep`, a fail-fast run over a journal that holds a
/// failure fails on every resume; use `Rerun`, or
/// [`run_all`](crate::FanOut::run_all), to get past it.
///
/// ```
/// use fanout::journal::RecordedFailures;
///
/// assert_eq!(RecordedFailures::default(), RecordedFailures::Rerun);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RecordedFailures {
    /// Run the key's task again. The default.
    #[default]
    Rerun,
    /// Deliver the recorded failure without running the task.
    Keep,
}
