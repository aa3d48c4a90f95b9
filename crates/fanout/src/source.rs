//! Inputs: unkeyed items or key/item pairs, from an iterator or a stream,
//! pulled lazily.

use std::fmt::Debug;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use tracing::Span;

mod sealed {
    pub trait Sealed {}
}

/// The input of a run: [`Indexed`] items (made by [`fan_out`](crate::fan_out)
/// from an iterator, or [`fan_out_stream`](crate::fan_out_stream) from a
/// stream) or [`Keyed`] pairs ([`fan_out_keyed`](crate::fan_out_keyed),
/// [`fan_out_keyed_stream`](crate::fan_out_keyed_stream)). Sealed: you never
/// implement it, and you rarely name it.
///
/// A run pulls from it one item at a time, only when a slot is free. Blocking
/// runs accept borrowed items and keys; async runs, whose tasks live on the
/// runtime's worker threads, need the input, its keys and items to be
/// `Send + 'static`.
pub trait Input: sealed::Sealed {
    /// What identifies a task in results and errors: the index for
    /// [`Indexed`], the caller's key for [`Keyed`].
    type Key: Clone + Debug + Send + Sync;
    /// The input handed to the task function.
    type Item: Send;
    /// What a fail-fast run returns for results of type `T`: `Vec<T>` in
    /// input order for [`Indexed`], `Vec<(K, T)>` in input order for
    /// [`Keyed`].
    type Results<T>;

    #[doc(hidden)]
    /// The next input, given the index it will have; `Pending` (an iterator
    /// never is) registers `cx` to be woken when the stream has one.
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        index: usize,
    ) -> Poll<Option<(Self::Key, Self::Item)>>;

    #[doc(hidden)]
    /// The number of inputs left, when the iterator knows it exactly.
    fn exact_len(&self) -> Option<usize>;

    #[doc(hidden)]
    /// Makes the span of one task, child of the run's span.
    fn task_span(run: &Span, index: usize, key: &Self::Key) -> Span;

    #[doc(hidden)]
    /// Puts the successes of a run (one per input, unordered, with their
    /// index) in input order.
    fn results<T>(ok: Vec<(usize, Self::Key, T)>) -> Self::Results<T>;
}

/// Unkeyed input: any iterator of items, or a stream of them
/// ([`FromStream`]). Task `i` is input `i`; its key is `i`.
#[derive(Debug)]
pub struct Indexed<I>(pub(crate) I);

/// Keyed input: any iterator of `(key, item)` pairs (a `HashMap`, a
/// `BTreeMap`, a `Vec` of pairs), or a stream of them ([`FromStream`]).
#[derive(Debug)]
pub struct Keyed<I>(pub(crate) I);

/// A stream as the input of a run: made by
/// [`fan_out_stream`](crate::fan_out_stream) and
/// [`fan_out_keyed_stream`](crate::fan_out_keyed_stream). The stream is
/// pinned on the heap once, so it need not be `Unpin`.
pub struct FromStream<St>(Pin<Box<St>>);

impl<St> FromStream<St> {
    pub(crate) fn new(stream: St) -> Self {
        Self(Box::pin(stream))
    }
}

impl<St> Debug for FromStream<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FromStream").finish_non_exhaustive()
    }
}

fn exact(size_hint: (usize, Option<usize>)) -> Option<usize> {
    match size_hint {
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
    type Results<T> = Vec<T>;

    #[inline]
    fn poll_next(&mut self, _cx: &mut Context<'_>, index: usize) -> Poll<Option<(usize, I::Item)>> {
        Poll::Ready(self.0.next().map(|item| (index, item)))
    }

    fn exact_len(&self) -> Option<usize> {
        exact(self.0.size_hint())
    }

    #[inline]
    fn task_span(run: &Span, index: usize, _key: &usize) -> Span {
        indexed_span(run, index)
    }

    fn results<T>(ok: Vec<(usize, usize, T)>) -> Vec<T> {
        indexed_results(ok)
    }
}

impl<St> Input for Indexed<FromStream<St>>
where
    St: Stream,
    St::Item: Send,
{
    type Key = usize;
    type Item = St::Item;
    type Results<T> = Vec<T>;

    #[inline]
    fn poll_next(&mut self, cx: &mut Context<'_>, index: usize) -> Poll<Option<(usize, St::Item)>> {
        self.0
             .0
            .as_mut()
            .poll_next(cx)
            .map(|item| item.map(|item| (index, item)))
    }

    fn exact_len(&self) -> Option<usize> {
        exact(self.0 .0.size_hint())
    }

    #[inline]
    fn task_span(run: &Span, index: usize, _key: &usize) -> Span {
        indexed_span(run, index)
    }

    fn results<T>(ok: Vec<(usize, usize, T)>) -> Vec<T> {
        indexed_results(ok)
    }
}

fn indexed_span(run: &Span, index: usize) -> Span {
    tracing::info_span!(
        parent: run,
        "fanout.task",
        task.index = index,
        task.attempt = tracing::field::Empty,
        task.outcome = tracing::field::Empty,
    )
}

fn indexed_results<T>(ok: Vec<(usize, usize, T)>) -> Vec<T> {
    in_input_order(ok.len(), ok.into_iter().map(|(i, _, v)| (i, v)))
}

impl<I, K, V> Input for Keyed<I>
where
    I: Iterator<Item = (K, V)>,
    K: Clone + Debug + Send + Sync,
    V: Send,
{
    type Key = K;
    type Item = V;
    type Results<T> = Vec<(K, T)>;

    #[inline]
    fn poll_next(&mut self, _cx: &mut Context<'_>, _index: usize) -> Poll<Option<(K, V)>> {
        Poll::Ready(self.0.next())
    }

    fn exact_len(&self) -> Option<usize> {
        exact(self.0.size_hint())
    }

    #[inline]
    fn task_span(run: &Span, index: usize, key: &K) -> Span {
        keyed_span(run, index, key)
    }

    fn results<T>(ok: Vec<(usize, K, T)>) -> Vec<(K, T)> {
        keyed_results(ok)
    }
}

impl<St, K, V> Input for Keyed<FromStream<St>>
where
    St: Stream<Item = (K, V)>,
    K: Clone + Debug + Send + Sync,
    V: Send,
{
    type Key = K;
    type Item = V;
    type Results<T> = Vec<(K, T)>;

    #[inline]
    fn poll_next(&mut self, cx: &mut Context<'_>, _index: usize) -> Poll<Option<(K, V)>> {
        self.0 .0.as_mut().poll_next(cx)
    }

    fn exact_len(&self) -> Option<usize> {
        exact(self.0 .0.size_hint())
    }

    #[inline]
    fn task_span(run: &Span, index: usize, key: &K) -> Span {
        keyed_span(run, index, key)
    }

    fn results<T>(ok: Vec<(usize, K, T)>) -> Vec<(K, T)> {
        keyed_results(ok)
    }
}

fn keyed_span<K: Debug>(run: &Span, index: usize, key: &K) -> Span {
    tracing::info_span!(
        parent: run,
        "fanout.task",
        task.index = index,
        task.key = ?key,
        task.attempt = tracing::field::Empty,
        task.outcome = tracing::field::Empty,
    )
}

fn keyed_results<K, T>(ok: Vec<(usize, K, T)>) -> Vec<(K, T)> {
    in_input_order(ok.len(), ok.into_iter().map(|(i, k, v)| (i, (k, v))))
}

/// An [`Input`] that async runs can pull from other threads: the shorthand
/// the engine uses for `Input + Send + 'static` with `'static` keys and
/// items. Public methods spell the bounds out instead, so that rustdoc
/// shows them.
pub(crate) trait SendInput: Input<Key: 'static, Item: 'static> + Send + 'static {}

impl<S> SendInput for S
where
    S: Input + Send + 'static,
    S::Key: 'static,
    S::Item: 'static,
{
}

/// Places `n` entries, one per index in `0..n`, by index: O(n), no sort.
pub(crate) fn in_input_order<X>(n: usize, entries: impl Iterator<Item = (usize, X)>) -> Vec<X> {
    let mut slots: Vec<Option<X>> = Vec::with_capacity(n);
    slots.resize_with(n, || None);
    for (i, x) in entries {
        slots[i] = Some(x);
    }
    slots
        .into_iter()
        .map(|s| s.expect("fanout: every input has exactly one outcome"))
        .collect()
}
