//! What a task knows about itself.

use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::sync::{AtomicUsize, AtomicWaker, Ordering};

/// What the tasks of one lane share: the run's token and the count of
/// blocking closures still running.
#[derive(Debug)]
pub(crate) struct CtxShared {
    pub(crate) token: CancellationToken,
    pub(crate) blocking: Arc<BlockingTracker>,
}

/// Counts the blocking closures a run's tasks started with
/// [`TaskCtx::spawn_blocking`], so that the run returns only once they have
/// all returned: tokio cannot abort a blocking thread.
///
/// One waiter at a time: the run that owns it, once its tasks are gone.
#[derive(Debug, Default)]
pub(crate) struct BlockingTracker {
    alive: AtomicUsize,
    idle: AtomicWaker,
}

impl BlockingTracker {
    /// Ready once no closure is running; otherwise registers `cx` to be
    /// woken when the last one returns.
    pub(crate) fn poll_idle(&self, cx: &Context<'_>) -> Poll<()> {
        if self.alive.load(Ordering::Acquire) == 0 {
            return Poll::Ready(());
        }
        self.idle.register(cx.waker());
        // Checked again after registering: a closure that returned in
        // between woke whatever waker was registered before.
        if self.alive.load(Ordering::Acquire) == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Completes once no closure is running.
    pub(crate) async fn wait_idle(&self) {
        poll_fn(|cx| self.poll_idle(cx)).await;
    }

    /// A closure starts; the returned guard says when it has returned.
    pub(crate) fn start(self: &Arc<Self>) -> Alive {
        self.alive.fetch_add(1, Ordering::AcqRel);
        Alive(self.clone())
    }
}

/// A running blocking closure, counted by its tracker until dropped.
pub(crate) struct Alive(Arc<BlockingTracker>);

impl Drop for Alive {
    fn drop(&mut self) {
        if self.0.alive.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.wake();
        }
    }
}

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
    pub(crate) shared: Arc<CtxShared>,
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
        &self.shared.token
    }

    /// `true` once the run has been told to stop.
    pub fn is_cancelled(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// Completes when the run is told to stop.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.shared.token.cancelled()
    }

    /// Runs blocking or CPU-heavy work on tokio's blocking pool, handing it
    /// the run's token, and waits for its result.
    ///
    /// The work runs under the run's limit: the calling task holds its slot
    /// while it waits, so at most `limit` such closures run at once, however
    /// large tokio's blocking pool is. A blocking thread cannot be aborted,
    /// so when the run stops the closure goes on until it returns (it should
    /// watch the token); the run returns only once every closure its tasks
    /// started has returned. A panic in the closure is the task's panic.
    ///
    /// Needs a tokio runtime; cost: one `spawn_blocking` (a thread hand-off).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let digests = fanout::fan_out(vec![b"abc".to_vec(), b"defg".to_vec()])
    ///     .limit(2)
    ///     .run(|ctx, data| async move {
    ///         let sum = ctx.spawn_blocking(move |_token| data.iter().map(|&b| u64::from(b)).sum::<u64>()).await;
    ///         Ok::<_, std::convert::Infallible>(sum)
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(digests, [294, 406]);
    /// # }
    /// ```
    pub fn spawn_blocking<R, F>(&self, f: F) -> impl Future<Output = R> + Send + 'static
    where
        F: FnOnce(&CancellationToken) -> R + Send + 'static,
        R: Send + 'static,
    {
        let alive = self.shared.blocking.start();
        let token = self.shared.token.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let _alive = alive;
            f(&token)
        });
        async move {
            match handle.await {
                Ok(r) => r,
                Err(e) => match e.try_into_panic() {
                    Ok(payload) => std::panic::resume_unwind(payload),
                    // A blocking task is only cancelled when the runtime
                    // shuts down, and then this task is being dropped too.
                    Err(_) => std::future::pending().await,
                },
            }
        }
    }
}

/// Model check of the tracker with loom (see `engine/loom.rs` for how to
/// run it): the run waiting for its blocking closures hears the last one
/// return, whichever way their ends interleave with its check.
#[cfg(all(test, fanout_loom))]
mod loom {
    use std::sync::Arc;

    use super::BlockingTracker;

    #[test]
    fn loom_the_run_hears_the_last_blocking_closure_return() {
        loom::model(|| {
            let tracker = Arc::new(BlockingTracker::default());
            let closures: Vec<_> = (0..2)
                .map(|_| {
                    let alive = tracker.start();
                    loom::thread::spawn(move || drop(alive))
                })
                .collect();
            loom::future::block_on(tracker.wait_idle());
            for c in closures {
                c.join().unwrap();
            }
        });
    }
}
