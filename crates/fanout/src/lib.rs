//! Structured fan-out/fan-in on tokio: run a batch of work in parallel with a
//! bound on concurrency, stop cleanly on the first failure or collect every
//! outcome, and get the results in input order, by key, or as they complete.
//!
//! (Crate docs: being written.)

mod config;
mod ctx;
mod engine;
mod error;
mod fan_out;
mod progress;
mod report;
mod retry;
mod source;
mod stream;

pub use config::{PanicPolicy, DEFAULT_LIMIT};
pub use ctx::TaskCtx;
pub use error::{Cause, Error, Failure, Panic, TaskError};
pub use fan_out::{fan_out, fan_out_keyed, FanOut};
pub use progress::{Progress, Snapshot};
pub use report::{Counts, Report, Stop};
pub use retry::{NoRetry, Retry, RetryAll, RetryPolicy, RetryPredicate};
pub use source::{Indexed, Keyed, Source};
pub use stream::{Order, TaskStream};
pub use tokio_util::sync::CancellationToken;
