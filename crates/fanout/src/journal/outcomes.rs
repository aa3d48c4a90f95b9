//! The library's own record format: a task's key and its outcome, one JSON
//! object per line.

use std::error::Error as StdError;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::{EncodeError, RecordFormat};
use crate::{Outcome, Panic, TaskError};

/// The journal format of keyed runs: each line is a JSON object with the
/// task's key and its [`Outcome`], one of
///
/// ```text
/// {"key":K,"ok":T}                 the task succeeded
/// {"key":K,"failed":E}             it returned Err(e) (on its last attempt)
/// {"key":K,"panicked":"message"}   it panicked (null: a non-string payload)
/// {"key":K,"timed_out_ns":N}       it timed out after N nanoseconds
/// {"key":K,"undeliverable":"why"}  it never reached an outcome where it was sent
/// ```
///
/// after the header line `fanout-journal 1`. Keys, values and errors go
/// through serde (`serde_json`), which never writes a raw newline, so a
/// record is always one line; a line cut anywhere is not a JSON object and
/// so never reads as a record. Only completed outcomes are recorded:
/// [`TaskError::Cancelled`] and [`TaskError::NotStarted`] are refused with
/// an [`EncodeError`], since a resumed run must run such tasks. A panic is
/// recorded by its message, and read back as a [`Panic`] whose payload is
/// that `String` (or `()` when it had no message).
///
/// Cost: serde_json's; measured per record in the repository's
/// `docs/BENCHMARKS.md` ("Journal").
///
/// ```
/// use fanout::journal::{JsonOutcomes, RecordFormat};
/// use fanout::TaskError;
///
/// let format = JsonOutcomes::<String, u64, String>::new();
/// let mut line = Vec::new();
/// format.encode(&"b".to_owned(), &Err(TaskError::Failed("no disk".to_owned())), &mut line).unwrap();
/// assert_eq!(line, br#"{"key":"b","failed":"no disk"}"#);
/// let (key, outcome) = format.decode(&line).unwrap();
/// assert_eq!((key.as_str(), outcome.unwrap_err().as_failed().map(String::as_str)), ("b", Some("no disk")));
/// ```
pub struct JsonOutcomes<K, T, E> {
    types: Types<K, T, E>,
}

/// The types a format is for; `fn() ->` so that the format is `Send`,
/// `Sync` and `Copy` whatever they are.
type Types<K, T, E> = PhantomData<fn() -> (K, T, E)>;

impl<K, T, E> JsonOutcomes<K, T, E> {
    /// The format, for keys `K`, values `T` and errors `E`.
    #[must_use]
    pub const fn new() -> Self {
        JsonOutcomes { types: PhantomData }
    }
}

impl<K, T, E> Default for JsonOutcomes<K, T, E> {
    fn default() -> Self {
        JsonOutcomes::new()
    }
}

impl<K, T, E> Clone for JsonOutcomes<K, T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, T, E> Copy for JsonOutcomes<K, T, E> {}

impl<K, T, E> fmt::Debug for JsonOutcomes<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JsonOutcomes")
    }
}

impl<K, T, E> RecordFormat for JsonOutcomes<K, T, E>
where
    K: Serialize + DeserializeOwned,
    T: Serialize + DeserializeOwned,
    E: Serialize + DeserializeOwned,
{
    type Key = K;
    type Value = Outcome<T, E>;

    fn kind(&self) -> &str {
        "fanout-journal"
    }

    fn header(&self) -> &str {
        "fanout-journal 1"
    }

    fn encode(
        &self,
        key: &K,
        value: &Outcome<T, E>,
        line: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        line.extend_from_slice(b"{\"key\":");
        serde_json::to_writer(&mut *line, key).map_err(EncodeError::new)?;
        match value {
            Ok(value) => {
                line.extend_from_slice(b",\"ok\":");
                serde_json::to_writer(&mut *line, value)
            }
            Err(TaskError::Failed(error)) => {
                line.extend_from_slice(b",\"failed\":");
                serde_json::to_writer(&mut *line, error)
            }
            Err(TaskError::Panicked(panic)) => {
                line.extend_from_slice(b",\"panicked\":");
                serde_json::to_writer(&mut *line, &panic.message())
            }
            Err(TaskError::TimedOut(after)) => {
                line.extend_from_slice(b",\"timed_out_ns\":");
                let nanos = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
                serde_json::to_writer(&mut *line, &nanos)
            }
            Err(TaskError::Undeliverable(why)) => {
                line.extend_from_slice(b",\"undeliverable\":");
                serde_json::to_writer(&mut *line, why)
            }
            Err(TaskError::Cancelled | TaskError::NotStarted) => {
                return Err(EncodeError::new(NotCompleted));
            }
        }
        .map_err(EncodeError::new)?;
        line.push(b'}');
        Ok(())
    }

    fn decode(&self, line: &[u8]) -> Option<(K, Outcome<T, E>)> {
        let Value::Object(mut object) = serde_json::from_slice::<Value>(line).ok()? else {
            return None;
        };
        if object.len() != 2 {
            return None;
        }
        let key = serde_json::from_value(object.remove("key")?).ok()?;
        let outcome = decode_outcome(object)?;
        Some((key, outcome))
    }
}

/// The outcome field of a record, the key taken out.
fn decode_outcome<T, E>(mut object: Map<String, Value>) -> Option<Outcome<T, E>>
where
    T: DeserializeOwned,
    E: DeserializeOwned,
{
    if let Some(value) = object.remove("ok") {
        return serde_json::from_value(value).ok().map(Ok);
    }
    if let Some(error) = object.remove("failed") {
        return serde_json::from_value(error)
            .ok()
            .map(|e| Err(TaskError::Failed(e)));
    }
    if let Some(message) = object.remove("panicked") {
        let payload: Box<dyn std::any::Any + Send> = match message {
            Value::String(message) => Box::new(message),
            Value::Null => Box::new(()),
            _ => return None,
        };
        return Some(Err(TaskError::Panicked(Panic::new(payload))));
    }
    if let Some(Value::String(why)) = object.remove("undeliverable") {
        return Some(Err(TaskError::Undeliverable(why)));
    }
    let nanos = object.remove("timed_out_ns")?.as_u64()?;
    Some(Err(TaskError::TimedOut(Duration::from_nanos(nanos))))
}

/// The cause of an [`EncodeError`] for an outcome that is not a completed
/// one.
#[derive(Debug)]
struct NotCompleted;

impl fmt::Display for NotCompleted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a cancelled or never started task has no outcome to record")
    }
}

impl StdError for NotCompleted {}
