//! A task's panic, caught and kept so that it can be re-raised.

use std::any::Any;
use std::fmt;

use sync_wrapper::SyncWrapper;

/// A caught panic: its message (when the payload is a `&str` or a `String`)
/// and the original payload, which [`into_payload`](Panic::into_payload) hands
/// back for [`std::panic::resume_unwind`].
pub struct Panic {
    message: Option<String>,
    // The payload is only reachable by value, so sharing `&Panic` across
    // threads never touches it: that is what makes `Panic` (and so the
    // errors holding it) `Sync`, as tokio's `JoinError` does.
    payload: SyncWrapper<Box<dyn Any + Send + 'static>>,
}

impl Panic {
    /// Wraps a payload caught by [`std::panic::catch_unwind`].
    pub fn new(payload: Box<dyn Any + Send + 'static>) -> Self {
        let message = payload
            .downcast_ref::<&'static str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        Self {
            message,
            payload: SyncWrapper::new(payload),
        }
    }

    /// The panic message, if the payload was a string.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The original payload, unchanged: pass it to
    /// [`std::panic::resume_unwind`] or downcast it.
    pub fn into_payload(self) -> Box<dyn Any + Send + 'static> {
        self.payload.into_inner()
    }

    /// Re-raises the original panic in the current thread.
    pub fn resume(self) -> ! {
        std::panic::resume_unwind(self.into_payload())
    }
}

impl fmt::Debug for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Panic")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => f.write_str("(non-string panic payload)"),
        }
    }
}
