//! The set of task futures one lane drives: fixed slots reused from task to
//! task, each with its own waker made once.
//!
//! Why not `FuturesUnordered`: profiling a run of 10^6 trivial tasks
//! (`perf record`, one lane) showed about half the time in it: an `Arc`
//! allocated and freed per task, the future moved into it, and the lane's
//! waker registered on every `poll_next`. Here a slot's memory and waker are
//! made once and reused, so starting a task allocates nothing, and a task
//! that finishes on its first poll never touches the ready queue. See
//! `docs/BENCHMARKS.md` for the measured difference.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::sync::{AtomicBool, AtomicWaker, Mutex, Ordering, PoisonError};

/// Slots woken since the lane last looked, and the lane's waker.
#[derive(Default)]
struct ReadyQueue {
    indices: Mutex<Vec<usize>>,
    lane: AtomicWaker,
}

/// The waker of one slot: queues the slot's index once until it is polled.
struct SlotWake {
    index: usize,
    queued: AtomicBool,
    queue: Arc<ReadyQueue>,
}

impl Wake for SlotWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue
                .indices
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.index);
            self.queue.lane.wake();
        }
    }
}

struct Slot<F> {
    fut: Pin<Box<Option<F>>>,
    wake: Arc<SlotWake>,
    waker: Waker,
}

/// Up to `cap` futures of one type, polled in place.
///
/// A woken slot may be polled after its task finished and another took its
/// place: futures tolerate such spurious polls.
pub(crate) struct Slab<F> {
    slots: Vec<Slot<F>>,
    free: Vec<usize>,
    queue: Arc<ReadyQueue>,
    spare: Vec<usize>,
    len: usize,
}

impl<F: Future> Slab<F> {
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            queue: Arc::default(),
            spare: Vec::new(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `fut` in a free slot and polls it once; returns its output if
    /// it finished on that first poll.
    pub(crate) fn start(&mut self, fut: F) -> Option<F::Output> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let index = self.slots.len();
                let wake = Arc::new(SlotWake {
                    index,
                    queued: AtomicBool::new(false),
                    queue: self.queue.clone(),
                });
                self.slots.push(Slot {
                    fut: Box::pin(None),
                    waker: Waker::from(wake.clone()),
                    wake,
                });
                index
            }
        };
        self.len += 1;
        self.slots[index].fut.as_mut().set(Some(fut));
        self.poll_slot(index)
    }

    fn poll_slot(&mut self, index: usize) -> Option<F::Output> {
        let slot = &mut self.slots[index];
        slot.wake.queued.store(false, Ordering::Release);
        let fut = slot.fut.as_mut().as_pin_mut()?;
        let mut cx = Context::from_waker(&slot.waker);
        match fut.poll(&mut cx) {
            Poll::Pending => None,
            Poll::Ready(out) => {
                slot.fut.as_mut().set(None);
                self.free.push(index);
                self.len -= 1;
                Some(out)
            }
        }
    }

    /// Polls every slot woken since the last call, pushing the outputs of
    /// those that finished; registers `cx`'s waker to hear of the next ones.
    pub(crate) fn poll_woken(&mut self, cx: &Context<'_>, out: &mut Vec<F::Output>) {
        self.queue.lane.register(cx.waker());
        let mut woken = std::mem::take(&mut self.spare);
        std::mem::swap(
            &mut woken,
            &mut *self
                .queue
                .indices
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for &index in &woken {
            if let Some(o) = self.poll_slot(index) {
                out.push(o);
            }
        }
        woken.clear();
        self.spare = woken;
    }

    /// Drops every future in place (aborting it).
    pub(crate) fn clear(&mut self) {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.fut.is_some() {
                slot.fut.as_mut().set(None);
                self.free.push(index);
            }
        }
        self.len = 0;
    }
}
