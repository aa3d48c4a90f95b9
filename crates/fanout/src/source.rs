//! Inputs: unkeyed items or key/item pairs, pulled lazily.

use std::fmt::Debug;

use tracing::Span;

mod sealed {
    pub trait Sealed {}
}

/// An input sequence a run pulls from, one item at a time, only when a slot
/// is free. Implemented by [`Indexed`] (made by [`fan_out`](crate::fan_out))
/// and [`Keyed`] (made by [`fan_out_keyed`](crate::fan_out_keyed)); sealed.
///
/// Blocking runs accept any `Input` whose items and keys are `Send`, borrowed
/// ones included; async runs need a [`Source`], an `Input` that is also
/// `Send + 'static`.
pub trait Input: sealed::Sealed {
    /// What identifies a task in results and errors: the index for
    /// [`Indexed`], the caller's key for [`Keyed`].
    type Key: Clone + Debug + Send + Sync;
    /// The input handed to the task function.
    type Item: Send;

    /// The next input, given the index it will have.
    fn next(&mut self, index: usize) -> Option<(Self::Key, Self::Item)>;

    /// The number of inputs left, when the iterator knows it exactly.
    fn exact_len(&self) -> Option<usize>;

    /// Makes the span of one task, child of the run's span.
    fn task_span(run: &Span, index: usize, key: &Self::Key) -> Span;
}

/// An [`Input`] that async runs can pull from other threads: `Send +
/// 'static`, with `'static` keys and items. Implemented automatically.
pub trait Source: Input<Key: 'static, Item: 'static> + Send + 'static {}

impl<S> Source for S
where
    S: Input + Send + 'static,
    S::Key: 'static,
    S::Item: 'static,
{
}

/// Unkeyed input: any iterator of items. Task `i` is input `i`; its key is `i`.
#[derive(Debug)]
pub struct Indexed<I>(pub(crate) I);

/// Keyed input: any iterator of `(key, item)` pairs (a `HashMap`, a
/// `BTreeMap`, a `Vec` of pairs).
#[derive(Debug)]
pub struct Keyed<I>(pub(crate) I);

fn exact<I: Iterator>(it: &I) -> Option<usize> {
    match it.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo),
        _ => None,
    }
}

impl<I> sealed::Sealed for Indexed<I> {}
impl<I> sealed::Sealed for Keyed<I> {}

impl<I> Input for Indexed<I>
where
    I: Iterator,
    I::Item: Send,
{
    type Key = usize;
    type Item = I::Item;

    #[inline]
    fn next(&mut self, index: usize) -> Option<(usize, I::Item)> {
        self.0.next().map(|item| (index, item))
    }

    fn exact_len(&self) -> Option<usize> {
        exact(&self.0)
    }

    #[inline]
    fn task_span(run: &Span, index: usize, _key: &usize) -> Span {
        tracing::info_span!(
            parent: run,
            "fanout.task",
            task.index = index,
            task.attempt = tracing::field::Empty,
            task.outcome = tracing::field::Empty,
        )
    }
}

impl<I, K, V> Input for Keyed<I>
where
    I: Iterator<Item = (K, V)>,
    K: Clone + Debug + Send + Sync,
    V: Send,
{
    type Key = K;
    type Item = V;

    #[inline]
    fn next(&mut self, _index: usize) -> Option<(K, V)> {
        self.0.next()
    }

    fn exact_len(&self) -> Option<usize> {
        exact(&self.0)
    }

    #[inline]
    fn task_span(run: &Span, index: usize, key: &K) -> Span {
        tracing::info_span!(
            parent: run,
            "fanout.task",
            task.index = index,
            task.key = ?key,
            task.attempt = tracing::field::Empty,
            task.outcome = tracing::field::Empty,
        )
    }
}
