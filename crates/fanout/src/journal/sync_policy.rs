//! When a journal's records are forced to the disk.

use std::num::NonZeroU32;
use std::time::Duration;

/// When a journal calls `fdatasync`, and so what a record survives.
///
/// Every policy writes each record with one `write(2)` as it is recorded:
/// from then on it is in the kernel's page cache and survives the death of
/// the process at any instant, `SIGKILL` included. What differs is a crash
/// of the machine (power loss, kernel panic): only records that were synced
/// survive it. The torn-tail rule covers what a crash loses: a resume reads
/// the records that reached the disk and ignores a torn last line.
///
/// | policy | survives a process crash | survives a power loss | cost per record |
/// |---|---|---|---|
/// | [`None`](SyncPolicy::None) | every record | nothing promised | one `write` |
/// | [`EveryRecord`](SyncPolicy::EveryRecord) | every record | every record, once [`record`](super::Journal::record) returns | one `write` + one `fdatasync` |
/// | [`Group`](SyncPolicy::Group) | every record | all but at most `records - 1` records | one `write` + `1 / records` of an `fdatasync` |
///
/// On the project's (virtual, shared) machine a record costs under a
/// microsecond without sync, a few microseconds in groups of 64, and a few
/// hundred microseconds when each one is synced; the figures, side by side,
/// and the command that measures them are in the repository's
/// `docs/BENCHMARKS.md` ("Journal").
///
/// `fdatasync` runs in the thread that records, and blocks it until the
/// disk has the data. Opening and finishing a journal write its sidecar
/// atomically, which costs an `fsync` each whatever the policy (see
/// [`Options::create`](super::Options::create)).
///
/// ```
/// use std::time::Duration;
/// use fanout::journal::SyncPolicy;
///
/// // At most 63 records lost in a power cut, and none older than about a
/// // second as long as records keep coming.
/// let policy = SyncPolicy::group(64, Some(Duration::from_secs(1)));
/// assert_eq!(policy, SyncPolicy::Group {
///     records: 64.try_into().unwrap(),
///     interval: Some(Duration::from_secs(1)),
/// });
/// assert_eq!(SyncPolicy::default(), SyncPolicy::None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// Never `fdatasync` a record: records survive a crash of the process,
    /// not necessarily one of the machine. The default.
    #[default]
    None,
    /// `fdatasync` after every record: when `record` returns, the record
    /// survives a power loss.
    EveryRecord,
    /// `fdatasync` once `records` records are unsynced, or when a record is
    /// written `interval` or more after the oldest unsynced one; and when the
    /// journal finishes or is dropped. A power loss loses at most
    /// `records - 1` records. The interval is checked only when a record is
    /// written (there is no timer thread): records written just before a
    /// pause stay unsynced until the next record, [`Journal::sync`](super::Journal::sync)
    /// or the end, and call `sync` from a timer for a bound in time too.
    Group {
        /// Sync when this many records are unsynced.
        records: NonZeroU32,
        /// Also sync at the first record written this long after the oldest
        /// unsynced one.
        interval: Option<Duration>,
    },
}

impl SyncPolicy {
    /// [`SyncPolicy::Group`] of `records` records and an optional interval.
    ///
    /// # Panics
    /// If `records` is 0.
    #[must_use]
    #[track_caller]
    pub fn group(records: u32, interval: Option<Duration>) -> SyncPolicy {
        let Some(records) = NonZeroU32::new(records) else {
            panic!("SyncPolicy::group needs at least one record per group");
        };
        SyncPolicy::Group { records, interval }
    }
}
