//! The outcomes of a journaled run as a stream.

use std::fmt;
use std::future::{poll_fn, Future};
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_core::Stream;

use super::memory::Memory;
use super::{Origin, RecordedFailures, RunError, Store};
use crate::stream::TaskStream;
use crate::task_error::Outcome;

/// Starts the run's lanes once the journal is loaded.
type Start<K, T, E, St> = Box<dyn FnOnce(Arc<Memory<St>>) -> TaskStream<K, T, E> + Send>;
type Loading<St> = Pin<Box<dyn Future<Output = Result<Memory<St>, <St as Store>::Error>> + Send>>;
type Finishing<J> = Pin<Box<dyn Future<Output = Result<(), J>> + Send>>;

type Polled<K, T, E, J> = Poll<Option<JournaledItem<K, T, E, J>>>;

/// What a [`JournaledStream`] yields: an outcome with its key and where it
/// comes from, or the journal's failure.
pub type JournaledItem<K, T, E, J> = Result<(K, Outcome<T, E>, Origin), RunError<K, E, J>>;

/// The outcomes of a journaled run
/// ([`FanOut::stream`](crate::FanOut::stream) on a `FanOut` given a
/// [`journal`](crate::FanOut::journal)), each as `Ok((key, outcome,
/// origin))`: the [`TaskStream`] of a run without a journal, plus where
/// each outcome comes from ([`Origin`]) and the journal's errors.
///
/// - When first polled, it loads the journal (a failure is yielded as
///   [`RunError::Load`], and the stream ends), then starts the run.
/// - Outcomes come as a [`TaskStream`]'s do (as they complete, or in input
///   order), recalled ones included: a recalled outcome is yielded at once,
///   at its key's place in the input. An outcome of a task that ran was
///   recorded before it is yielded.
/// - If the journal fails (a record cannot be written, a key repeats), the
///   run stops as on [`cancel`](JournaledStream::cancel), and the stream
///   yields the [`RunError`] before any outcome that was not recorded; then
///   the remaining outcomes (nothing computed is dropped), then it ends.
/// - When the run ends normally (every input done, or after `cancel`), the
///   stream finishes the journal before it ends: a failure to do so is its
///   last item, [`RunError::Finish`]. A stream dropped before its end does
///   not finish the journal, as after a kill.
/// - Under [`PanicPolicy::Propagate`](crate::PanicPolicy::Propagate) a task
///   panic is re-raised from `next`, as by a [`TaskStream`] (the journal is
///   not finished).
///
/// Cost: a [`TaskStream`]'s, plus a hash-map lookup under a lock per
/// outcome (its origin), on top of a journaled run's per-task cost (see
/// [`FanOut::journal`](crate::FanOut::journal)).
///
/// # Cancel safety
/// [`next`](JournaledStream::next) and `Stream::poll_next` are cancel safe:
/// an outcome is removed only when it is returned, and loading and
/// finishing the journal go on at the next poll.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), fanout::journal::Error> {
/// use fanout::journal::{Fingerprint, Options};
/// use fanout::Order;
///
/// let dir = tempfile::tempdir().unwrap();
/// let options = Options::new(Fingerprint::of(["example"]));
/// let mut stream = fanout::fan_out_keyed([(1u32, 1u32), (2, 2)])
///     .journal_file(dir.path().join("journal"), options)?
///     .stream(Order::Completion, |_ctx, n| async move { Ok::<u32, String>(n + 1) });
/// let mut sum = 0;
/// while let Some(item) = stream.next().await {
///     let (_key, outcome, _origin) = item.expect("the journal works");
///     sum += outcome.unwrap();
/// }
/// assert_eq!(sum, 5);
/// # Ok(()) }
/// ```
#[must_use = "a JournaledStream runs its tasks only while it is polled or alive; dropping it aborts them"]
pub struct JournaledStream<K, T, E, St: Store> {
    state: State<K, T, E, St>,
    /// An outcome taken from the run while the journal's error waited to
    /// be yielded first.
    held: Option<(K, Outcome<T, E>)>,
    /// The journal failed: it is not finished.
    failed: bool,
    /// `cancel` was called before the run started.
    cancelled: AtomicBool,
}

#[allow(
    clippy::large_enum_variant,
    reason = "a stream spends its life running; boxing would cost each poll an indirection"
)]
enum State<K, T, E, St: Store> {
    Loading {
        load: Loading<St>,
        start: Option<Start<K, T, E, St>>,
    },
    Running {
        stream: TaskStream<K, T, E>,
        memory: Arc<Memory<St>>,
    },
    Finishing(Finishing<St::Error>),
    Done,
}

impl<K, T, E, St> JournaledStream<K, T, E, St>
where
    St: Store<Key = K, Value = Outcome<T, E>> + Send + 'static,
    K: Hash + Eq + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    pub(crate) fn new(store: St, failures: RecordedFailures, start: Start<K, T, E, St>) -> Self {
        JournaledStream {
            state: State::Loading {
                load: Box::pin(Memory::load(store, failures)),
                start: Some(start),
            },
            held: None,
            failed: false,
            cancelled: AtomicBool::new(false),
        }
    }

    /// The next item, or `None` once the run and the journal are done.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn next(&mut self) -> Option<JournaledItem<K, T, E, St::Error>> {
        poll_fn(|cx| self.poll_item(cx)).await
    }

    /// Stops the run as [`TaskStream::cancel`] does: no new task starts,
    /// running ones are cancelled, their outcomes still come; then the
    /// stream finishes the journal and ends. Inputs never pulled are not
    /// recorded, so a later run runs them.
    pub fn cancel(&self) {
        match &self.state {
            State::Running { stream, .. } => stream.cancel(),
            _ => self.cancelled.store(true, Ordering::Release),
        }
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Polled<K, T, E, St::Error> {
        loop {
            match &mut self.state {
                State::Loading { load, start } => {
                    let memory = match ready!(load.as_mut().poll(cx)) {
                        Ok(memory) => Arc::new(memory),
                        Err(error) => {
                            self.state = State::Done;
                            return Poll::Ready(Some(Err(RunError::Load(error))));
                        }
                    };
                    let start = start.take().expect("a journaled stream starts once");
                    let stream = start(memory.clone());
                    if self.cancelled.load(Ordering::Acquire) {
                        stream.cancel();
                    }
                    self.state = State::Running { stream, memory };
                }
                State::Running { stream, memory } => {
                    if let Some((key, outcome)) = self.held.take() {
                        let origin = memory.origin(&key);
                        return Poll::Ready(Some(Ok((key, outcome, origin))));
                    }
                    let next = ready!(Pin::new(&mut *stream).poll_next(cx));
                    // The failure was kept before the outcome it concerns
                    // was handed over: looking after taking the outcome
                    // sees it.
                    if let Some(failure) = memory.take_failure() {
                        self.failed = true;
                        self.held = next;
                        return Poll::Ready(Some(Err(failure.into())));
                    }
                    if let Some((key, outcome)) = next {
                        let origin = memory.origin(&key);
                        return Poll::Ready(Some(Ok((key, outcome, origin))));
                    }
                    // Every lane has ended, so nothing else holds the memory.
                    let State::Running { memory, .. } =
                        std::mem::replace(&mut self.state, State::Done)
                    else {
                        unreachable!("matched as running above");
                    };
                    if self.failed {
                        return Poll::Ready(None);
                    }
                    let memory =
                        Arc::into_inner(memory).expect("every lane, and so every task, has ended");
                    self.state = State::Finishing(Box::pin(memory.finish()));
                }
                State::Finishing(finish) => {
                    let finished = ready!(finish.as_mut().poll(cx));
                    self.state = State::Done;
                    return Poll::Ready(finished.err().map(|e| Err(RunError::Finish(e))));
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }
}

impl<K, T, E, St> Stream for JournaledStream<K, T, E, St>
where
    St: Store<Key = K, Value = Outcome<T, E>> + Send + 'static,
    K: Hash + Eq + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    type Item = JournaledItem<K, T, E, St::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

// No field is ever pinned structurally: the futures are boxed.
impl<K, T, E, St: Store> Unpin for JournaledStream<K, T, E, St> {}

impl<K, T, E, St: Store> fmt::Debug for JournaledStream<K, T, E, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Loading { .. } => "loading",
            State::Running { .. } => "running",
            State::Finishing(_) => "finishing",
            State::Done => "done",
        };
        f.debug_struct("JournaledStream")
            .field("state", &state)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
