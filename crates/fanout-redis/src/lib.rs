//! fanout's runs fanned out to worker processes on other machines, through
//! Redis Streams.

mod broker;
mod coordinator;
mod handler;
mod secret;
#[cfg(feature = "otel")]
mod trace;
mod wire;
mod worker;

pub use broker::{
    Broker, BrokerError, BrokerErrorKind, Buried, Completion, Cursor, Delivery, Discard,
    MemoryBroker, RedisBroker, RedisConfig,
};
pub use coordinator::{Coordinator, DeadLetter, RemoteFanOut, RemoteStream};
pub use handler::Handler;
pub use secret::{Secret, WeakSecret};
pub use worker::{RemoteCtx, Worker, WorkerReport};

/// The largest task input, and the largest result or error, in bytes once
/// encoded: 16 MiB. A task whose input is larger fails as
/// [`TaskError::Undeliverable`](fanout::TaskError::Undeliverable) before it
/// is queued; one whose result is larger, on the worker. Tasks travel
/// through the broker's memory, and every byte is copied to it and from
/// it: pass large data by reference (a path on shared storage, a URL, an
/// object key).
pub const MAX_PAYLOAD: usize = 16 << 20;
