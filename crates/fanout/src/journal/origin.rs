//! Where an outcome of a journaled stream comes from.

/// Where an outcome of a [`JournaledStream`](super::JournaledStream) comes
/// from: this run ran the task, or recalled the outcome a journal held for
/// its key. ([`Report::is_recalled`](crate::Report::is_recalled) and
/// [`Counts::recalled`](crate::Counts::recalled) say the same of the other
/// run modes.)
///
/// ```
/// use fanout::journal::Origin;
///
/// assert!(Origin::Recalled.is_recalled());
/// assert!(!Origin::Ran.is_recalled());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The task ran in this run; its outcome was recorded before it was
    /// handed over (or the journal failed, and the stream said so first).
    Ran,
    /// The journal held the key's outcome: it was delivered without running
    /// the task.
    Recalled,
}

impl Origin {
    /// `true` for [`Origin::Recalled`].
    #[must_use]
    pub fn is_recalled(self) -> bool {
        self == Origin::Recalled
    }
}
