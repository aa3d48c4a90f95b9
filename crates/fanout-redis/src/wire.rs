//! What travels through the broker: a task (the envelope a worker runs)
//! and a recorded result, encoded with postcard (see the crate docs for the
//! measured sizes and costs).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The format version of envelopes and records; a worker refuses others.
pub(crate) const VERSION: u8 = 1;

/// One attempt of one task, as queued for a handler's workers. The
/// coordinator encodes it with a borrowed run id and payload (`&str`,
/// `&[u8]`: no copies); workers decode it owned. Both encode the same.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Envelope<P = Vec<u8>, R = String> {
    pub(crate) version: u8,
    /// The run the task belongs to.
    pub(crate) run: R,
    /// The task's position in the run's input.
    pub(crate) index: u64,
    /// Which attempt this is, from 1.
    pub(crate) attempt: u32,
    /// The fingerprint of the handler's types (see `Handler`).
    pub(crate) types: u64,
    /// The attempt's time limit on the worker, counted from its start.
    pub(crate) timeout_ms: Option<u64>,
    /// The W3C `traceparent` of the coordinator's span for the task.
    pub(crate) traceparent: Option<String>,
    /// A signature of everything above and the payload, when the run is
    /// signed (see `Secret`).
    pub(crate) signature: Option<[u8; 32]>,
    /// The task's input, encoded.
    pub(crate) payload: P,
}

/// A task's attempt, as recorded (once) in its run's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Recorded {
    pub(crate) index: u64,
    pub(crate) attempt: u32,
    /// The worker that ran it.
    pub(crate) worker: String,
    pub(crate) outcome: WireOutcome,
    /// A signature of everything above and the run's id, when the worker
    /// holds a `Secret`.
    pub(crate) signature: Option<[u8; 32]>,
}

/// How an attempt ended, as the worker saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireOutcome {
    /// The handler returned `Ok`: the result, encoded.
    Ok(Vec<u8>),
    /// The handler returned `Err`: the error, encoded.
    Failed(Vec<u8>),
    /// The handler panicked, with this message.
    Panicked(String),
    /// The attempt ran longer than its time limit (milliseconds).
    TimedOut(u64),
    /// The task could not run there (see `TaskError::Undeliverable`).
    Undeliverable(String),
}

/// Encodes a value of the user's.
///
/// # Errors
/// The value does not serialize (a map with non-string keys in some
/// formats, a failing `Serialize` impl).
pub(crate) fn encode<V: Serialize>(value: &V) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(value).map_err(|e| e.to_string())
}

/// Decodes a value of the user's.
///
/// # Errors
/// The bytes are not a `V`.
pub(crate) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

/// Why a task's input or result cannot travel.
pub(crate) fn too_large(index: u64, what: &str, len: usize) -> String {
    format!(
        "task {index}: its {what} is {len} bytes encoded, over the limit of {} bytes \
         (fanout_redis::MAX_PAYLOAD): pass a reference to the data (a path, a URL, a key) instead",
        crate::MAX_PAYLOAD
    )
}

impl WireOutcome {
    /// The outcome in words, for a dead letter.
    pub(crate) fn describe(&self) -> String {
        match self {
            WireOutcome::Ok(_) => "succeeded".to_owned(),
            WireOutcome::Failed(_) => "returned an error".to_owned(),
            WireOutcome::Panicked(m) => format!("panicked: {m}"),
            WireOutcome::TimedOut(ms) => format!("timed out after {ms} ms"),
            WireOutcome::Undeliverable(why) => why.clone(),
        }
    }
}

impl Envelope {
    /// The field of the run's record of this attempt: recording is once per
    /// `(index, attempt)`, whatever the deliveries.
    pub(crate) fn field(&self) -> String {
        format!("{}:{}", self.index, self.attempt)
    }
}
