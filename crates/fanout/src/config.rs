//! Run policies shared by every run mode.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::progress::Progress;

/// What a run does when a task panics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PanicPolicy {
    /// The panic is a failure like any other: the run stops at once (in every
    /// mode, even collect-all and streams), drains, and then re-raises the
    /// original payload in the caller with [`std::panic::resume_unwind`].
    /// When several tasks panic, the first one observed is re-raised. The
    /// default, as `std::thread::scope` and rayon do.
    #[default]
    Propagate,
    /// The panic becomes [`TaskError::Panicked`](crate::TaskError::Panicked),
    /// which names the task and keeps the payload. A fail-fast run stops on
    /// it like on an error; a collect-all run reports it and goes on.
    AsError,
}

/// The default concurrency limit of an async run.
///
/// 64: async tasks mostly wait on I/O, so the limit bounds open connections,
/// file descriptors and memory rather than CPU. 64 overlaps enough waits to
/// saturate typical backends while staying below common connection-pool and
/// `ulimit -n` sizes; it is also the figure the benchmarks use.
pub const DEFAULT_LIMIT: usize = 64;

/// A stream's default window, in results per unit of the limit: how many
/// finished results may wait for the consumer (see [`FanOut::window`]).
///
/// 8: handing results from a lane to the consumer costs a cross-thread
/// wake-up (microseconds when a worker has to be unparked), so a lane must
/// be able to run well ahead of its consumer for that cost to spread over
/// many results. On the project's benchmark a window of `limit` made a
/// stream of trivial tasks cost about 2× a `run`, `4 × limit` 1.0–1.9×, and
/// `8 × limit` 1.0–1.35× (`docs/BENCHMARKS.md`).
///
/// [`FanOut::window`]: crate::FanOut::window
pub(crate) const DEFAULT_WINDOW_PER_SLOT: usize = 8;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// `None`: the mode's default ([`DEFAULT_LIMIT`] for async runs, the
    /// number of CPUs for blocking runs).
    pub(crate) limit: Option<usize>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) grace: Duration,
    pub(crate) external: Option<CancellationToken>,
    pub(crate) panics: PanicPolicy,
    pub(crate) progress: Option<Progress>,
    pub(crate) lanes: Option<usize>,
    /// `None`: [`DEFAULT_WINDOW_PER_SLOT`] × the limit.
    pub(crate) window: Option<usize>,
}

impl Config {
    pub(crate) fn async_limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT)
    }

    pub(crate) fn blocking_limit(&self) -> usize {
        self.limit.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limit: None,
            timeout: None,
            deadline: None,
            grace: Duration::ZERO,
            external: None,
            panics: PanicPolicy::Propagate,
            progress: None,
            lanes: None,
            window: None,
        }
    }
}
