//! The synchronisation primitives the engine's own code is built on, in one
//! place: built with `--cfg fanout_loom`, they are loom's, so that the model
//! checks in `loom_models.rs` exercise the engine's real code under every
//! interleaving loom explores (as tokio-util's `loom` module does).
//!
//! tokio's primitives (`CancellationToken`, `Notify`, `JoinSet`) are not
//! swapped: tokio model-checks them itself, and the models keep them out of
//! the interleavings they explore.

#[cfg(not(fanout_loom))]
pub(crate) use futures_util::task::AtomicWaker;
#[cfg(not(fanout_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};
#[cfg(not(fanout_loom))]
pub(crate) use std::sync::{Condvar, Mutex};

/// loom's `AtomicWaker`, with the `&Waker` registration of the one the
/// engine uses (`futures`').
#[cfg(fanout_loom)]
#[derive(Default)]
pub(crate) struct AtomicWaker(loom::future::AtomicWaker);

#[cfg(fanout_loom)]
impl AtomicWaker {
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.0.register_by_ref(waker);
    }

    pub(crate) fn wake(&self) {
        self.0.wake();
    }
}

#[cfg(fanout_loom)]
impl std::fmt::Debug for AtomicWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AtomicWaker")
    }
}
#[cfg(fanout_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize};
#[cfg(fanout_loom)]
pub(crate) use loom::sync::{Condvar, Mutex};

pub(crate) use std::sync::atomic::Ordering;
pub(crate) use std::sync::PoisonError;
