//! Model checks of the async engine's own synchronisation, with loom: every
//! interleaving (up to loom's preemption bound) of the real code, built
//! with the primitives of `crate::sync` swapped for loom's.
//!
//! ```text
//! RUSTFLAGS="--cfg fanout_loom" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test -p fanout --lib --release loom
//! ```

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::thread;

use super::slab::Slab;
use super::task::{LaneRefs, Task};
use super::{Reason, RunState};
use crate::config::Config;
use crate::source::Indexed;
use crate::sync::{Mutex, Ordering};
use crate::task_error::{Outcome, TaskError};

/// A future that completes once its flag has fired `need` times,
/// registering its waker until then: what a task waiting on I/O looks like
/// to its lane (one that waits twice is woken while the lane may still be
/// polling it after the first wake-up).
struct Flagged {
    flag: Arc<Flag>,
    need: usize,
}

struct Flag {
    fired: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

impl Flag {
    fn new() -> Arc<Flag> {
        Arc::new(Flag {
            fired: AtomicUsize::new(0),
            waker: Mutex::new(None),
        })
    }

    /// Fires once and wakes the future, from another thread.
    fn fire(&self) {
        self.fired.fetch_add(1, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }

    fn once(self: &Arc<Self>) -> Flagged {
        Flagged {
            flag: self.clone(),
            need: 1,
        }
    }
}

impl Future for Flagged {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        *self.flag.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.flag.fired.load(Ordering::Acquire) >= self.need {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// The slab's wake queue loses no wake-up: a task woken twice from one
/// thread and another woken once from another, while the lane polls what
/// was woken, both complete (loom reports a deadlock if the lane waits for
/// a wake-up that never comes).
#[test]
fn loom_slab_loses_no_wake_up() {
    loom::model(|| {
        let (twice, once) = (Flag::new(), Flag::new());
        let mut slab = Slab::new();
        let waits_twice = Flagged {
            flag: twice.clone(),
            need: 2,
        };
        assert!(slab.start(waits_twice).is_none());
        assert!(slab.start(once.once()).is_none());
        let wakers = [
            thread::spawn(move || {
                twice.fire();
                twice.fire();
            }),
            thread::spawn(move || once.fire()),
        ];
        let mut done = Vec::new();
        loom::future::block_on(poll_fn(|cx| {
            slab.poll_woken(cx, &mut done);
            if done.len() == 2 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        for w in wakers {
            w.join().unwrap();
        }
        assert!(slab.is_empty());
    });
}

/// A slot reused by a new task after its old task finished: a late wake-up
/// meant for the old task must not be lost for the new one, nor poll a
/// freed slot.
#[test]
fn loom_a_reused_slot_still_hears_its_new_task() {
    loom::model(|| {
        let (old, new) = (Flag::new(), Flag::new());
        let mut slab = Slab::new();
        assert!(slab.start(old.once()).is_none());
        let o = old.clone();
        let late = thread::spawn(move || o.fire());
        let mut done = Vec::new();
        loom::future::block_on(poll_fn(|cx| {
            slab.poll_woken(cx, &mut done);
            if done.len() == 1 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        // The slot is free again; the new task takes it.
        assert!(slab.start(new.once()).is_none());
        let n = new.clone();
        let waker = thread::spawn(move || n.fire());
        loom::future::block_on(poll_fn(|cx| {
            slab.poll_woken(cx, &mut done);
            if done.len() == 2 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        late.join().unwrap();
        waker.join().unwrap();
    });
}

fn run_state(n: usize) -> Arc<RunState<Indexed<std::ops::Range<usize>>>> {
    Arc::new(RunState::for_run(Indexed(0..n), &Config::default()))
}

/// Two stops at once: exactly one decides the reason, and it is the one
/// recorded; the run is stopped and its token cancelled either way.
#[test]
fn loom_the_first_stop_decides_the_reason() {
    loom::model(|| {
        let state = run_state(4);
        let s = state.clone();
        let other = thread::spawn(move || s.stop(Reason::External));
        let mine = state.stop(Reason::Failure);
        let theirs = other.join().unwrap();
        assert!(mine != theirs, "exactly one stop wins");
        let want = if mine {
            Reason::Failure
        } else {
            Reason::External
        };
        assert_eq!(state.reason(), Some(want));
        assert!(state.is_stopped());
        assert!(state.token.is_cancelled());
    });
}

/// No input is pulled after a stop that the puller has seen: a lane that
/// learns of the stop (through any synchronisation) and then pulls gets
/// nothing.
#[test]
fn loom_no_input_is_pulled_after_a_stop_is_seen() {
    loom::model(|| {
        let state = run_state(4);
        let seen = Arc::new(AtomicBool::new(false));
        let (s, flag) = (state.clone(), seen.clone());
        let stopper = thread::spawn(move || {
            s.stop(Reason::Failure);
            flag.store(true, Ordering::Release);
        });
        let mut pulled = Vec::new();
        let saw_stop = seen.load(Ordering::Acquire);
        let waker = futures_util::task::noop_waker();
        state.pull(2, &Context::from_waker(&waker), |i, _, _| pulled.push(i));
        if saw_stop {
            assert!(
                pulled.is_empty(),
                "pulled {pulled:?} after the stop was seen"
            );
        }
        stopper.join().unwrap();
    });
}

fn lane_refs(stopped: &'static AtomicBool) -> LaneRefs<'static, usize, (), ()> {
    LaneRefs {
        stopped,
        abort_on_stop: true,
        aborted: Mutex::new(Vec::new()),
        stop_on_failure: true,
        stop_on_panic: true,
        progress: None,
    }
}

/// A task body that records that it ran, then ends with `outcome`.
struct Body {
    ran: Arc<AtomicUsize>,
    fail: bool,
}

impl Future for Body {
    type Output = (Outcome<(), ()>, u32);

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.ran.fetch_add(1, Ordering::SeqCst);
        let outcome = if self.fail {
            Err(TaskError::Failed(()))
        } else {
            Ok(())
        };
        Poll::Ready((outcome, 1))
    }
}

fn poll_once<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
    let waker = futures_util::task::noop_waker();
    fut.poll(&mut Context::from_waker(&waker))
}

/// Fail-fast across lanes: once a task has failed on one lane, a task on
/// another lane that has seen that (through any synchronisation) never
/// starts its body: it ends as not started.
#[test]
fn loom_no_task_body_starts_after_a_failure_is_seen() {
    loom::model(|| {
        // Leaked so that the lane references are 'static, as a lane's are
        // for the life of its loop; a few bytes per model iteration.
        let stopped: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let seen = Arc::new(AtomicBool::new(false));
        let ran = Arc::new(AtomicUsize::new(0));
        let (flag, r) = (seen.clone(), ran.clone());
        let failing_lane = thread::spawn(move || {
            let refs = lane_refs(stopped);
            let task = Task::new(
                0,
                0,
                Body { ran: r, fail: true },
                &refs,
                tracing::Span::none(),
            );
            let outcome = poll_once(pin!(task));
            assert!(matches!(
                outcome,
                Poll::Ready((0, 0, Err(TaskError::Failed(()))))
            ));
            flag.store(true, Ordering::Release);
        });
        let refs = lane_refs(stopped);
        let saw_failure = seen.load(Ordering::Acquire);
        let body_ran = Arc::new(AtomicUsize::new(0));
        let task = Task::new(
            1,
            1,
            Body {
                ran: body_ran.clone(),
                fail: false,
            },
            &refs,
            tracing::Span::none(),
        );
        let outcome = poll_once(pin!(task));
        if saw_failure {
            assert!(matches!(
                outcome,
                Poll::Ready((1, 1, Err(TaskError::NotStarted)))
            ));
            assert_eq!(body_ran.load(Ordering::SeqCst), 0);
        }
        failing_lane.join().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    });
}
