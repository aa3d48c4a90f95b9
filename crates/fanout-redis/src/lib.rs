//! fanout's runs fanned out to worker processes on other machines, through
//! Redis Streams.

mod broker;
mod coordinator;
mod handler;
#[cfg(feature = "otel")]
mod trace;
mod wire;
mod worker;

pub use broker::{
    Broker, BrokerError, BrokerErrorKind, Completion, Cursor, Delivery, Discard, MemoryBroker,
    RedisBroker, RedisConfig,
};
pub use coordinator::{Coordinator, RemoteFanOut, RemoteStream};
pub use handler::Handler;
pub use worker::{RemoteCtx, Worker, WorkerReport};
