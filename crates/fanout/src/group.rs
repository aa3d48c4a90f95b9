//! A group of heterogeneous tasks: errgroup's `Go` / `TryGo` / `Wait`, with
//! a limit, fail-fast cancellation and no orphans.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{PanicPolicy, DEFAULT_LIMIT};
use crate::counts::Counts;
use crate::error::{Cause, Error, Failure};
use crate::panic::Panic;
use crate::task_error::{Outcome, TaskError};

/// A group of tasks of any shape, spawned one by one: the lower-level
/// sibling of [`fan_out`](crate::fan_out) for when the tasks are not one
/// function over a batch of inputs.
///
/// - [`spawn`](Group::spawn) waits for a free slot (at most `limit` tasks
///   alive), as errgroup's `Go` with `SetLimit`; while it waits it watches
///   the running tasks, so a failure is seen at once.
///   [`try_spawn`](Group::try_spawn) never waits, as `TryGo`.
/// - Fail-fast: the first failure (an `Err` or a panic) cancels the
///   group's token; no task spawned after it starts (it is counted as not
///   started), and [`join`](Group::join) gives the running tasks the grace
///   period, then aborts them.
/// - [`join`](Group::join) returns only when every task has finished or been
///   dropped: results in spawn order, or an [`Error`] naming the first
///   failure by its spawn index. Under [`PanicPolicy::Propagate`] (the
///   default) a task panic is re-raised there, after the drain.
/// - Dropping the group cancels its token and aborts every task (tokio drops
///   them at their next scheduling point).
///
/// Unlike [`fan_out`](crate::fan_out), every task is its own tokio task
/// (about 1 µs of spawn cost on the project's machine): use `fan_out` for
/// large batches.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use fanout::Group;
///
/// let mut group = Group::new(2);
/// group.spawn(|_token| async { Ok::<_, String>(1) }).await.unwrap();
/// group.spawn(|_token| async { Ok(2) }).await.unwrap();
/// assert_eq!(group.join().await.unwrap(), [1, 2]);
/// # }
/// ```
#[must_use = "a Group's tasks are aborted when it is dropped; call join"]
pub struct Group<T, E> {
    // A task hands its permit back with its result, so that its slot frees
    // only once the group has seen the result: a failure is always observed
    // before the slot it held can start another task.
    tasks: JoinSet<Finished<T, E>>,
    ids: HashMap<Id, usize>,
    permits: Arc<Semaphore>,
    token: CancellationToken,
    panics: PanicPolicy,
    grace: Duration,
    next_index: usize,
    done: Vec<(usize, Outcome<T, E>)>,
    root: Option<usize>,
    not_started: usize,
    span: tracing::Span,
}

/// A finished task: its spawn index, result, and the permit of its slot.
type Finished<T, E> = (usize, Result<T, E>, OwnedSemaphorePermit);

/// Returned by [`Group::spawn`] and [`Group::try_spawn`] when the group has
/// stopped after a failure (or a cancellation): the task was not started,
/// and is counted as not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the group has stopped after a failure or a cancellation; the task was not started",
        )
    }
}

impl std::error::Error for Stopped {}

/// Why [`Group::try_spawn`] did not start a task.
#[derive(Debug)]
pub enum TrySpawnError<F> {
    /// Every slot is taken; the closure is handed back.
    Full(F),
    /// The group has stopped; the task is counted as not started.
    Stopped,
}

impl<T, E> Group<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    /// A group running at most `limit` tasks at once, with
    /// [`PanicPolicy::Propagate`] and no grace period.
    ///
    /// # Panics
    /// If `limit` is 0.
    #[track_caller]
    pub fn new(limit: usize) -> Self {
        assert!(
            limit > 0,
            "fanout: Group::new(0) would never run a task; use a limit of at least 1"
        );
        Self {
            tasks: JoinSet::new(),
            ids: HashMap::new(),
            permits: Arc::new(Semaphore::new(limit)),
            token: CancellationToken::new(),
            panics: PanicPolicy::Propagate,
            grace: Duration::ZERO,
            next_index: 0,
            done: Vec::new(),
            root: None,
            not_started: 0,
            span: tracing::info_span!("fanout.group", fanout.limit = limit),
        }
    }

    /// Stops the group when `token` is cancelled (the group watches a child
    /// token).
    pub fn cancel_on(mut self, token: &CancellationToken) -> Self {
        self.token = token.child_token();
        self
    }

    /// What a panicking task does. Default [`PanicPolicy::Propagate`].
    pub fn panics(mut self, policy: PanicPolicy) -> Self {
        self.panics = policy;
        self
    }

    /// How long [`join`](Group::join) lets running tasks go on after a stop
    /// before aborting them. Default zero.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The group's token, cancelled on the first failure; each task also
    /// gets a clone.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Spawns `f(token)` once a slot is free, and returns its spawn index
    /// (from 0), the position of its result in [`join`](Group::join)'s
    /// output.
    ///
    /// # Errors
    /// [`Stopped`] if the group has stopped, before or while waiting.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped while waiting, nothing is
    /// spawned (and nothing is counted).
    pub async fn spawn<F, Fut>(&mut self, f: F) -> Result<usize, Stopped>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let permit = loop {
            if self.is_stopped() {
                self.not_started += 1;
                return Err(Stopped);
            }
            let permits = self.permits.clone();
            tokio::select! {
                biased;
                Some(joined) = self.tasks.join_next_with_id() => self.record(joined),
                permit = permits.acquire_owned() => break permit.expect("the group never closes its semaphore"),
                () = self.token.cancelled() => {}
            }
        };
        if self.is_stopped() {
            self.not_started += 1;
            return Err(Stopped);
        }
        Ok(self.start(permit, f))
    }

    /// Spawns `f(token)` if a slot is free, without waiting.
    ///
    /// # Errors
    /// [`TrySpawnError::Full`] with `f` when every slot is taken,
    /// [`TrySpawnError::Stopped`] when the group has stopped.
    pub fn try_spawn<F, Fut>(&mut self, f: F) -> Result<usize, TrySpawnError<F>>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        while let Some(joined) = self.tasks.try_join_next_with_id() {
            self.record(joined);
        }
        if self.is_stopped() {
            self.not_started += 1;
            return Err(TrySpawnError::Stopped);
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(self.start(permit, f)),
            Err(_) => Err(TrySpawnError::Full(f)),
        }
    }

    fn is_stopped(&self) -> bool {
        self.root.is_some() || self.token.is_cancelled()
    }

    fn start<F, Fut>(&mut self, permit: OwnedSemaphorePermit, f: F) -> usize
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let index = self.next_index;
        self.next_index += 1;
        let span = tracing::info_span!(parent: &self.span, "fanout.task", task.index = index);
        let fut = f(self.token.clone());
        let handle = self.tasks.spawn(
            async move {
                let out = fut.await;
                (index, out, permit)
            }
            .instrument(span),
        );
        self.ids.insert(handle.id(), index);
        index
    }

    fn record(&mut self, joined: Result<(Id, Finished<T, E>), JoinError>) {
        let (index, outcome) = match joined {
            Ok((id, (index, out, _permit))) => {
                self.ids.remove(&id);
                (index, out.map_err(TaskError::Failed))
            }
            Err(e) => {
                let index = self
                    .ids
                    .remove(&e.id())
                    .expect("every task's id is recorded");
                match e.try_into_panic() {
                    Ok(p) => (index, Err(TaskError::Panicked(Panic::new(p)))),
                    Err(_) => (index, Err(TaskError::Cancelled)),
                }
            }
        };
        if matches!(&outcome, Err(e) if e.is_failure())
            && self.root.is_none()
            && !self.token.is_cancelled()
        {
            self.root = Some(index);
        }
        if matches!(&outcome, Err(e) if e.is_failure()) {
            self.token.cancel();
        }
        self.done.push((index, outcome));
    }

    /// Waits for every task and returns their results in spawn order.
    ///
    /// After a stop, running tasks get the grace period and are then
    /// aborted; `join` returns once every one of them has been dropped.
    ///
    /// # Errors
    /// An [`Error`] whose cause is the first failure observed (by spawn
    /// index), with the other failures and the counts; or
    /// [`Cause::Cancelled`] if the external token stopped the group.
    ///
    /// # Panics
    /// Under [`PanicPolicy::Propagate`], re-raises the first task panic
    /// observed, after the drain.
    pub async fn join(mut self) -> Result<Vec<T>, Error<usize, E>> {
        loop {
            if self.is_stopped() {
                let grace = tokio::time::sleep(self.grace);
                tokio::pin!(grace);
                while !self.tasks.is_empty() && !self.grace.is_zero() {
                    tokio::select! {
                        Some(joined) = self.tasks.join_next_with_id() => self.record(joined),
                        () = &mut grace => break,
                    }
                }
                self.tasks.abort_all();
                while let Some(joined) = self.tasks.join_next_with_id().await {
                    self.record(joined);
                }
                break;
            }
            tokio::select! {
                joined = self.tasks.join_next_with_id() => match joined {
                    Some(joined) => self.record(joined),
                    None => break,
                },
                () = self.token.cancelled() => {}
            }
        }
        let _entered = self.span.enter();
        let mut done = std::mem::take(&mut self.done);
        done.sort_by_key(|(i, _)| *i);
        if self.panics == PanicPolicy::Propagate {
            if let Some(pos) = done
                .iter()
                .position(|(_, o)| matches!(o, Err(TaskError::Panicked(_))))
            {
                if let (_, Err(TaskError::Panicked(p))) = done.swap_remove(pos) {
                    p.resume();
                }
            }
        }
        if self.root.is_none() && done.iter().all(|(_, o)| o.is_ok()) && !self.token.is_cancelled()
        {
            return Ok(done.into_iter().filter_map(|(_, o)| o.ok()).collect());
        }
        let mut counts = Counts {
            not_started: self.not_started,
            ..Counts::default()
        };
        let mut cause = None;
        let mut others = Vec::new();
        for (index, outcome) in done {
            counts.add(&outcome);
            if let Err(error) = outcome {
                if Some(index) == self.root {
                    cause = Some(Cause::Task(Failure {
                        index,
                        key: index,
                        error,
                    }));
                } else if error.is_failure() {
                    others.push(Failure {
                        index,
                        key: index,
                        error,
                    });
                }
            }
        }
        Err(Error::from_parts(
            cause.unwrap_or(Cause::Cancelled),
            others,
            counts,
        ))
    }
}

impl<T: Send + 'static, E: Send + 'static> Default for Group<T, E> {
    /// A group with the default limit, [`DEFAULT_LIMIT`].
    fn default() -> Self {
        Self::new(DEFAULT_LIMIT)
    }
}

impl<T, E> Drop for Group<T, E> {
    fn drop(&mut self) {
        // The JoinSet's own drop aborts every task; cancelling first lets the
        // tasks that watch the token see why.
        self.token.cancel();
    }
}

impl<T, E> fmt::Debug for Group<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("running", &self.tasks.len())
            .field("spawned", &self.next_index)
            .field(
                "stopped",
                &(self.root.is_some() || self.token.is_cancelled()),
            )
            .finish_non_exhaustive()
    }
}
