//! How one record becomes one line of a journal, and back.

use std::error::Error as StdError;
use std::fmt;

/// The line format of a journal: its header, how a record (a key and its
/// value) is written as one line, and how a line is read back.
///
/// The file machinery ([`Journal`](super::Journal), [`parse`](super::parse))
/// owns everything that makes a journal crash-safe (the lock, the header
/// check, the torn-tail rule, one `write` per record, the fsync policy, the
/// sidecar); a format only says what a line looks like. The `fanout`
/// command's GNU parallel joblog and the library's [`JsonOutcomes`] are two
/// formats on the same machinery.
///
/// # Contract
///
/// - [`encode`](RecordFormat::encode) appends one line *without* its
///   newline; the journal adds it, and refuses (with
///   [`Error::Encode`](super::Error::Encode)) a line that holds a newline,
///   since it would read back as two lines.
/// - [`decode`](RecordFormat::decode) of what `encode` wrote gives the same
///   key and value back. It returns `None` for anything that is not a whole
///   record: the journal takes such a *last* line for a torn write and
///   ignores it, and such a line anywhere else for damage. So a prefix of a
///   line should not decode: if it can (GNU parallel's `12` cut from
///   `125 ...`), the format must reject it by shape (a field count, say).
/// - `decode` must not panic, whatever the bytes.
///
/// [`JsonOutcomes`]: super::JsonOutcomes
///
/// # Example
///
/// A format of `key=value` lines for `u32` keys and values:
///
/// ```
/// use fanout::journal::{EncodeError, RecordFormat};
///
/// struct Pairs;
///
/// impl RecordFormat for Pairs {
///     type Key = u32;
///     type Value = u32;
///     fn kind(&self) -> &str {
///         "pairs"
///     }
///     fn header(&self) -> &str {
///         "key=value"
///     }
///     fn encode(&self, key: &u32, value: &u32, line: &mut Vec<u8>) -> Result<(), EncodeError> {
///         line.extend_from_slice(format!("{key}={value}").as_bytes());
///         Ok(())
///     }
///     fn decode(&self, line: &[u8]) -> Option<(u32, u32)> {
///         let (k, v) = std::str::from_utf8(line).ok()?.split_once('=')?;
///         Some((k.parse().ok()?, v.parse().ok()?))
///     }
/// }
///
/// let mut line = Vec::new();
/// Pairs.encode(&7, &49, &mut line).unwrap();
/// assert_eq!(Pairs.decode(&line), Some((7, 49)));
/// ```
pub trait RecordFormat {
    /// What identifies a record: a later record of the same key supersedes
    /// an earlier one.
    type Key;
    /// What is recorded about the key.
    type Value;

    /// A short name for this kind of journal, written on the sidecar's first
    /// line (`"fanout-joblog"`, `"fanout-journal"`), so that a journal of
    /// one kind is never resumed as another. No spaces or newlines.
    fn kind(&self) -> &str;

    /// The journal's first line, without its newline. A file whose first
    /// line differs is refused as damaged.
    fn header(&self) -> &str;

    /// Appends the line of one record to `line`, without a newline.
    ///
    /// # Errors
    /// The value cannot be written in this format (a value that serde
    /// cannot serialize, an outcome that is not a completed one).
    fn encode(
        &self,
        key: &Self::Key,
        value: &Self::Value,
        line: &mut Vec<u8>,
    ) -> Result<(), EncodeError>;

    /// Reads one line (without its newline) back; `None` if it is not a
    /// whole record. Must not panic.
    fn decode(&self, line: &[u8]) -> Option<(Self::Key, Self::Value)>;

    /// The first line of a sidecar of an older layout that this format
    /// still reads: a `fingerprint` line and a summary line follow it, and
    /// there is no run line, so the last run's id is unknown and it counts as
    /// not finished. `None` (the default): no older layout.
    fn legacy_sidecar(&self) -> Option<&str> {
        None
    }
}

/// Why a record could not be written as a line: the cause is kept as the
/// error's [`source`](StdError::source).
///
/// ```
/// use fanout::journal::EncodeError;
/// use std::error::Error;
///
/// let err = EncodeError::new(std::fmt::Error);
/// assert!(err.source().is_some());
/// ```
#[derive(Debug)]
pub struct EncodeError {
    cause: Box<dyn StdError + Send + Sync + 'static>,
}

impl EncodeError {
    /// Wraps the reason a format could not encode a record.
    pub fn new(cause: impl StdError + Send + Sync + 'static) -> EncodeError {
        EncodeError {
            cause: Box::new(cause),
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the record cannot be written in the journal's format")
    }
}

impl StdError for EncodeError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.cause)
    }
}

/// The cause of an [`EncodeError`] for a line that holds a newline.
#[derive(Debug)]
pub(crate) struct EmbeddedNewline;

impl fmt::Display for EmbeddedNewline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the encoded record holds a newline, so it would read back as two lines")
    }
}

impl StdError for EmbeddedNewline {}
