//! Reading a journal's bytes: strict everywhere but at the tail.

use std::error::Error as StdError;
use std::fmt;

use super::{RecordFormat, Records};

/// What a journal's bytes hold: the complete records, and where the valid
/// part ends.
///
/// `bytes[..valid_len]` is the header line and every complete record;
/// anything after it is one torn last line, which a resume cuts off before
/// appending.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Contents<K, V> {
    /// Every complete record, in file order. A key may appear more than once
    /// (a failure, then the retry's success): the last one counts.
    pub records: Records<K, V>,
    /// The length of the valid prefix: 0 when not even the header is
    /// complete, otherwise it ends with a newline.
    pub valid_len: u64,
    /// Whether bytes after the valid prefix were ignored as a torn last line.
    pub torn: bool,
}

/// Reads journal bytes: the header line, then one record per line, where
/// only the last line may be torn.
///
/// A line is a record only if it ends with a newline *and* the format
/// decodes it. The last line may fail either test: a process killed in the
/// middle of its `write`, or a file system that lost the tail of the file
/// in a power cut, leaves such a line, and it is ignored (`torn`). A bytes
/// prefix of the header line (an empty file included) holds nothing yet.
///
/// This is what [`Options::resume`](super::Options::resume) reads; call it
/// to inspect a journal without opening (and locking) it.
///
/// Cost: one pass over the bytes, plus the format's `decode` per line.
///
/// # Errors
/// [`Damaged`]: a first line that is neither the header nor a prefix of it,
/// or a complete line that does not decode and is not the last one. A kill
/// cannot tear a line and then write its newline and more lines after it,
/// so that is a damaged or foreign file, not a crash: reading on would skip
/// what it held.
///
/// ```
/// use fanout::journal::{parse, JsonOutcomes};
///
/// let format = JsonOutcomes::<String, u64, String>::new();
/// let bytes = b"fanout-journal 1\n{\"key\":\"a\",\"ok\":1}\n{\"key\":\"b\",\"o";
/// let contents = parse(&format, bytes).unwrap();
/// assert_eq!(contents.records.len(), 1);
/// assert!(contents.torn);
/// assert_eq!(contents.valid_len, 36);
/// ```
pub fn parse<F>(format: &F, bytes: &[u8]) -> Result<Contents<F::Key, F::Value>, Damaged>
where
    F: RecordFormat + ?Sized,
{
    let header = format.header().as_bytes();
    let header_len = header.len() + 1;
    let mut contents = Contents {
        records: Vec::new(),
        valid_len: 0,
        torn: false,
    };
    if bytes.len() <= header.len() && header.starts_with(bytes) {
        contents.torn = !bytes.is_empty();
        return Ok(contents);
    }
    if bytes.len() < header_len || &bytes[..header.len()] != header || bytes[header.len()] != b'\n'
    {
        return Err(Damaged { line: 1 });
    }
    let mut offset = header_len;
    let mut line_no = 1u64;
    while offset < bytes.len() {
        line_no += 1;
        let rest = &bytes[offset..];
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            contents.torn = true;
            break;
        };
        match format.decode(&rest[..newline]) {
            Some(record) => contents.records.push(record),
            None if offset + newline + 1 == bytes.len() => {
                contents.torn = true;
                break;
            }
            None => return Err(Damaged { line: line_no }),
        }
        offset += newline + 1;
    }
    contents.valid_len = offset as u64;
    Ok(contents)
}

/// A journal line that is neither a record nor a torn last line: the file
/// is damaged or not a journal of this format, so it cannot say what
/// already ran.
///
/// ```
/// use fanout::journal::{parse, JsonOutcomes};
///
/// let format = JsonOutcomes::<String, u64, String>::new();
/// let err = parse(&format, b"fanout-journal 1\ngarbage\n{\"key\":\"a\",\"ok\":1}\n").unwrap_err();
/// assert_eq!(err.line(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    line: u64,
}

impl Damaged {
    /// The damaged line, counted from 1 (the header).
    #[must_use]
    pub fn line(&self) -> u64 {
        self.line
    }
}

impl fmt::Display for Damaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 1 {
            f.write_str("line 1 is not the journal's header")
        } else {
            write!(
                f,
                "line {} is not a record, and only the last line can be torn by a crash",
                self.line
            )
        }
    }
}

impl StdError for Damaged {}
