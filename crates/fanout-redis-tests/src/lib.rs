//! What the conformance suite of `fanout-redis` shares between its tests
//! and the worker and coordinator processes they start: the test handler,
//! and a Redis server started and stopped by pid. (The fixtures that start
//! workers are in `tests/common`.)

pub mod handler;
#[cfg(feature = "otel")]
pub mod otel;
pub mod server;
