//! What a blocking closure knows about itself.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::sync::{AtomicBool, Ordering};

/// Handed (by reference) to every attempt of a blocking closure: its
/// position, key, attempt number, and the run's stop signal.
///
/// Threads cannot be interrupted, so cancellation and timeouts are
/// cooperative: a long closure should check
/// [`is_cancelled`](BlockingCtx::is_cancelled) now and then (it costs one
/// atomic load, plus a clock read when a timeout is set) and return early
/// when it is `true`.
#[derive(Debug)]
pub struct BlockingCtx<'a, K = usize> {
    pub(crate) index: usize,
    pub(crate) key: &'a K,
    pub(crate) attempt: u32,
    pub(crate) stopped: &'a AtomicBool,
    pub(crate) token: &'a CancellationToken,
    pub(crate) deadline: Option<Instant>,
}

impl<K> BlockingCtx<'_, K> {
    /// Position of the closure's input in the input sequence, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The input's key (its index for unkeyed input).
    pub fn key(&self) -> &K {
        self.key
    }

    /// Which attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// `true` once the run has stopped (a sibling failed, the external
    /// token was cancelled, the deadline passed) or this attempt's timeout
    /// has passed. The closure should then return early. Whatever it
    /// returns is recorded as it is (a success after a sibling's failure
    /// still counts as a success), except that an attempt that returns after
    /// its timeout ends as [`TimedOut`](crate::TaskError::TimedOut).
    pub fn is_cancelled(&self) -> bool {
        self.stopped.load(Ordering::Acquire) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The time left before this attempt's timeout, if one is set.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The run's cancellation token, for handing to APIs that take one. It
    /// does not reflect the per-attempt timeout; `is_cancelled` does, and is
    /// cheaper.
    pub fn token(&self) -> &CancellationToken {
        self.token
    }
}
