//! What a task knows about itself.

use std::sync::Arc;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// Handed to every attempt of a task: its position, key, attempt number and
/// the run's cancellation token.
///
/// `K` is the key type: the index (`usize`) for unkeyed input.
///
/// Cost: building a context clones the key and one lane-local `Arc`
/// (an uncontended atomic increment); the token itself is shared by the
/// lane, not cloned per task.
#[derive(Debug, Clone)]
pub struct TaskCtx<K = usize> {
    pub(crate) index: usize,
    pub(crate) key: K,
    pub(crate) attempt: u32,
    pub(crate) token: Arc<CancellationToken>,
}

impl<K> TaskCtx<K> {
    /// Position of the task's input in the input sequence, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The task's key (its index for unkeyed input).
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Which attempt this is, from 1 (greater than 1 only with a
    /// [`Retry`](crate::Retry) policy).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The run's cancellation token. It is cancelled when the run stops: a
    /// sibling failed (fail-fast), the external token was cancelled, the
    /// deadline passed, or the caller dropped the run. A task that watches it
    /// can finish cleanly within the grace period instead of being aborted.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// `true` once the run has been told to stop.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when the run is told to stop.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }
}
