//! Inputs: unkeyed items or key/item pairs, pulled lazily.

use std::fmt::Debug;

use tracing::Span;

mod sealed {
    pub trait Sealed {}
}

/// The input of a run: [`Indexed`] items (made by [`fan_out`](crate::fan_out))
/// or [`Keyed`] pairs (made by [`fan_out_keyed`](crate::fan_out_keyed)).
/// Sealed: you never implement it, and you rarely name it.
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
    /// The next input, given the index it will have.
    fn next(&mut self, index: usize) -> Option<(Self::Key, Self::Item)>;

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
    type Results<T> = Vec<T>;

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

    fn results<T>(ok: Vec<(usize, usize, T)>) -> Vec<T> {
        in_input_order(ok.len(), ok.into_iter().map(|(i, _, v)| (i, v)))
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
    type Results<T> = Vec<(K, T)>;

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

    fn results<T>(ok: Vec<(usize, K, T)>) -> Vec<(K, T)> {
        in_input_order(ok.len(), ok.into_iter().map(|(i, k, v)| (i, (k, v))))
    }
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
