//! fanout's runs fanned out to worker processes on other machines, through
//! Redis Streams.

mod broker;
mod coordinator;
mod handler;
#[cfg(feature = "otel")]
mod trace;
mod secret;
mod wire;
mod worker;

pub use broker::{
    Broker, BrokerError, BrokerErrorKind, Buried, Completion, Cursor, Delivery, Discard, MemoryBroker,
    RedisBroker, RedisConfig,
};
pub use coordinator::{Coordinator, DeadLetter, RemoteFanOut, RemoteStream};
pub use handler::Handler;
pub use secret::{Secret, WeakSecret};
pub use worker::{RemoteCtx, Worker, WorkerReport};
