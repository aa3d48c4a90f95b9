//! The transport between coordinators and workers: queues per handler, a
//! results log per run, leases, retries, dead letters and cancellation.
//! [`RedisBroker`] is the real one; [`MemoryBroker`] keeps everything in
//! the process, with the same semantics, for tests and single-process use.

mod memory;
mod redis;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures_core::Stream;

use crate::secret::Secret;

pub use self::memory::MemoryBroker;
pub use self::redis::{RedisBroker, RedisConfig};

mod sealed {
    pub trait Sealed {}
}

/// A task delivered to a worker: which queue entry it is, how many times it
/// has been delivered, and the task itself (an encoded envelope).
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Delivery {
    pub(crate) handler: String,
    pub(crate) entry: String,
    pub(crate) deliveries: u32,
    pub(crate) task: Vec<u8>,
}

/// A worker's result for a delivery, to record in its run's results (once
/// per task attempt) and then acknowledge.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Completion {
    pub(crate) handler: String,
    pub(crate) entry: String,
    pub(crate) run: String,
    /// `index:attempt`: what makes the record unique.
    pub(crate) field: String,
    /// The encoded record.
    pub(crate) record: Vec<u8>,
}

/// A delivery to drop without recording anything: its run was cancelled,
/// or it could not be read at all.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Discard {
    pub(crate) handler: String,
    pub(crate) entry: String,
}

/// How many dead letters a handler's list keeps: the oldest go first.
pub(crate) const DEAD_LETTERS_KEPT: usize = 100_000;

/// An entry of a handler's dead-letter list, as stored: the task, why it
/// is there, and the last attempt's outcome when it ran.
#[derive(Debug, Clone)]
#[doc(hidden)]
pub struct Buried {
    pub(crate) task: Vec<u8>,
    pub(crate) why: String,
    pub(crate) outcome: Option<Vec<u8>>,
}

/// A position in a run's results log.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub(crate) String);

impl Cursor {
    /// Before the first record.
    pub fn start() -> Cursor {
        Cursor("0-0".to_owned())
    }
}

/// What went wrong talking to the broker. Messages never hold a password.
#[derive(Debug, Clone)]
pub struct BrokerError {
    pub(crate) kind: BrokerErrorKind,
    pub(crate) message: String,
}

/// The kind of a [`BrokerError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerErrorKind {
    /// The server cannot be reached (refused, unknown host, timeout, TLS).
    Unreachable,
    /// The server refused the credentials.
    Auth,
    /// The URL cannot be used.
    BadUrl,
    /// A command failed, or the connection broke during it.
    Io,
    /// The server answered something fanout cannot read (a different
    /// version of fanout wrote it, or another program).
    Protocol,
}

impl BrokerError {
    pub(crate) fn new(kind: BrokerErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Which kind of failure it is.
    pub fn kind(&self) -> BrokerErrorKind {
        self.kind
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BrokerError {}

/// What coordinators and workers need of a broker. Implemented by
/// [`RedisBroker`] and [`MemoryBroker`]; sealed.
///
/// Semantics every implementation keeps:
/// - **queues** hold envelopes per handler; a claimed entry is leased to its
///   worker until acknowledged; an entry whose lease passed unrenewed is
///   adopted by a worker that sweeps ([`reclaim`](Broker::reclaim)), and one
///   delivered more than `max_deliveries` times goes to the handler's
///   dead-letter list, its run recording it as undeliverable;
/// - **results** are recorded once per `(run, index, attempt)`: a second
///   record of the same attempt (a redelivery) is dropped, and so is the
///   record of a worker that no longer holds the entry's lease;
/// - **records before acknowledgements**: a worker dying between the two
///   only causes a redelivery;
/// - **cancellation** is a flag per run (authoritative) and a broadcast
///   (fast).
pub trait Broker: sealed::Sealed + Clone + Send + Sync + 'static {
    /// A stream of the ids of runs cancelled from now on.
    #[doc(hidden)]
    type Cancellations: Stream<Item = String> + Send + Unpin + 'static;

    /// Readies a run: clears a cancellation left by an earlier attempt of
    /// it, and makes its keys expire after `keep` unless ended sooner.
    #[doc(hidden)]
    fn begin(
        &self,
        run: &str,
        keep: Duration,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// `false` if the broker no longer knows `run` although it began: it
    /// lost its data (restarted without persistence, keys deleted or
    /// evicted).
    #[doc(hidden)]
    fn still_there(&self, run: &str) -> impl Future<Output = Result<bool, BrokerError>> + Send;

    /// Queues encoded envelopes for `handler`'s workers.
    #[doc(hidden)]
    fn enqueue(
        &self,
        handler: &str,
        tasks: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Queues an envelope once `delay` has passed (a retry's backoff).
    #[doc(hidden)]
    fn schedule(
        &self,
        handler: &str,
        delay: Duration,
        task: Vec<u8>,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// The records of `run` after `after`, waiting up to `wait` for one.
    #[doc(hidden)]
    fn results(
        &self,
        run: &str,
        after: &Cursor,
        wait: Duration,
    ) -> impl Future<Output = Result<(Cursor, Vec<Vec<u8>>), BrokerError>> + Send;

    /// Cancels `run`: sets its flag and tells every worker.
    #[doc(hidden)]
    fn cancel(&self, run: &str) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// The run is over: its keys expire after `keep`.
    #[doc(hidden)]
    fn end(
        &self,
        run: &str,
        keep: Duration,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// How many workers serving `handler` announced themselves within
    /// `within`.
    #[doc(hidden)]
    fn live_workers(
        &self,
        handler: &str,
        within: Duration,
    ) -> impl Future<Output = Result<usize, BrokerError>> + Send;

    /// Claims up to `max` new entries of `handlers`' queues for `worker`,
    /// waiting up to `wait` for one.
    #[doc(hidden)]
    fn claim(
        &self,
        worker: &str,
        handlers: &[String],
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, BrokerError>> + Send;

    /// Records each completion once, if `worker` still holds its entry,
    /// then acknowledges the entries.
    #[doc(hidden)]
    fn complete(
        &self,
        worker: &str,
        done: Vec<Completion>,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Acknowledges entries without recording anything.
    #[doc(hidden)]
    fn discard(
        &self,
        discards: Vec<Discard>,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Renews `worker`'s leases on the entries it holds, and announces it
    /// as serving `handlers`.
    #[doc(hidden)]
    fn renew(
        &self,
        worker: &str,
        handlers: &[String],
        held: &[(String, String)],
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Adopts for `worker` the entries of `handlers`' queues whose lease
    /// passed, moves the ones delivered more than `max_deliveries` times to
    /// the dead-letter list (recording them as undeliverable), and queues
    /// the retries that are due.
    /// Records are signed with `secret`, when given.
    #[doc(hidden)]
    fn reclaim(
        &self,
        worker: &str,
        handlers: &[String],
        lease: Duration,
        max_deliveries: u32,
        secret: Option<&Secret>,
    ) -> impl Future<Output = Result<Vec<Delivery>, BrokerError>> + Send;

    /// Adds a task to `handler`'s dead-letter list: why, and the encoded
    /// outcome of its last attempt if it ran.
    #[doc(hidden)]
    fn bury(
        &self,
        handler: &str,
        task: Vec<u8>,
        why: String,
        outcome: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Empties `handler`'s dead-letter list.
    #[doc(hidden)]
    fn clear_dead_letters(
        &self,
        handler: &str,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Which of `runs` are cancelled (the authoritative flags).
    #[doc(hidden)]
    fn cancelled(
        &self,
        runs: &[String],
    ) -> impl Future<Output = Result<Vec<bool>, BrokerError>> + Send;

    /// Subscribes to cancellations.
    #[doc(hidden)]
    fn cancellations(
        &self,
    ) -> impl Future<Output = Result<Self::Cancellations, BrokerError>> + Send;

    /// The dead-letter list of `handler`, oldest first.
    #[doc(hidden)]
    fn dead_letters(
        &self,
        handler: &str,
    ) -> impl Future<Output = Result<Vec<Buried>, BrokerError>> + Send;
}
