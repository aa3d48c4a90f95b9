//! Cutting a byte stream into the blocks `--pipe` hands to jobs, as GNU
//! parallel's `spreadstdin` cuts it: read up to the next multiple of the
//! block size, then pass everything up to the last record boundary (a
//! `--recend` followed by a `--recstart`); with `-N`, exactly N records per
//! block; with `-L`, whole N-line records; what is left at the end of the
//! input is the last block. A record longer than the block makes the block
//! grow (by 30% at a time).

use std::io::Read;

use regex::bytes::Regex;

/// How records are delimited.
#[derive(Debug, Clone)]
pub(crate) enum Separators {
    /// Fixed strings (`--recend`, default `\n`, and `--recstart`).
    Fixed {
        /// `--recend`.
        end: Vec<u8>,
        /// `--recstart`.
        start: Vec<u8>,
    },
    /// Regular expressions (`--regexp`).
    Regexp {
        /// `\A(recend)(?:recstart)`: a boundary at this position.
        boundary: Regex,
        /// `\A(?:recstart)`.
        start: Regex,
        /// `recend` and `recstart` for `--remove-rec-sep`.
        end_text: String,
        /// See `end_text`.
        start_text: String,
    },
}

impl Separators {
    /// Where the record boundary nearest `from` (at or after it) is: the
    /// position right after its `--recend`.
    fn next_boundary(&self, buf: &[u8], from: usize) -> Option<usize> {
        match self {
            Separators::Fixed { end, start } => {
                let both = [end.as_slice(), start.as_slice()].concat();
                find(buf, &both, from).map(|i| i + end.len())
            }
            Separators::Regexp { boundary, .. } => (from..=buf.len())
                .find_map(|k| boundary.captures(&buf[k..]).map(|c| k + c[1].len())),
        }
    }

    /// The last record boundary in `buf`.
    fn last_boundary(&self, buf: &[u8]) -> Option<usize> {
        match self {
            Separators::Fixed { end, start } => {
                let both = [end.as_slice(), start.as_slice()].concat();
                rfind(buf, &both, buf.len()).map(|i| i + end.len())
            }
            Separators::Regexp { boundary, .. } => (0..=buf.len())
                .rev()
                .find_map(|k| boundary.captures(&buf[k..]).map(|c| k + c[1].len())),
        }
    }

    /// Whether `buf` starts with a `--recstart`.
    fn starts_record(&self, buf: &[u8]) -> bool {
        match self {
            Separators::Fixed { start, .. } => buf.starts_with(start),
            Separators::Regexp { start, .. } => start.is_match(buf),
        }
    }
}

/// What `--pipe` reads records with.
#[derive(Debug, Clone)]
pub(crate) struct Cutting {
    /// `--block`.
    pub(crate) block: usize,
    /// The separators.
    pub(crate) separators: Separators,
    /// `-N`: records per block (times `-L` lines).
    pub(crate) records: Option<usize>,
    /// `-L` without `-N`: blocks hold whole records of this many lines.
    pub(crate) lines: Option<usize>,
    /// `-r`: blank lines are removed.
    pub(crate) skip_blank: bool,
}

/// Largest block GNU parallel makes (2 GiB - 1).
const MAX_BLOCK: usize = (1 << 31) - 1;

/// Cuts `input` into blocks, calling `emit` with each; stops early if
/// `emit` returns false.
///
/// # Errors
/// Reading fails.
pub(crate) fn cut(
    cutting: &Cutting,
    input: &mut dyn Read,
    mut buf: Vec<u8>,
    emit: &mut dyn FnMut(Vec<u8>) -> bool,
) -> std::io::Result<()> {
    let mut block = cutting.block.max(1);
    let mut regexp_garbage_done = false;
    loop {
        // Read up to the next multiple of the block size, or the end.
        let mut want = block - buf.len() % block;
        // Exactly what the block needs: growing by doubling could leave a
        // block's buffer with up to twice its size allocated.
        buf.reserve_exact(want);
        let mut last = 1;
        while want > 0 {
            let at = buf.len();
            buf.resize(at + want.min(1 << 20), 0);
            let n = match input.read(&mut buf[at..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    buf.truncate(at);
                    continue;
                }
                Err(e) => {
                    buf.truncate(at);
                    return Err(e);
                }
            };
            buf.truncate(at + n);
            last = n;
            if n == 0 {
                break;
            }
            want -= n;
        }
        let eof = last == 0;
        if cutting.skip_blank {
            remove_blank_lines(&mut buf);
            if buf.is_empty() {
                if eof {
                    break;
                }
                continue;
            }
        }
        let mut written = false;
        let mut pass = |buf: &mut Vec<u8>, end: usize| -> bool {
            if end == 0 {
                return true;
            }
            let rest = buf.split_off(end);
            let chunk = std::mem::replace(buf, rest);
            written = true;
            emit(chunk)
        };
        let keep_going = match (cutting.lines, cutting.records, &cutting.separators) {
            (Some(lines), None, _) => {
                let end = n_line_records(&buf, lines);
                pass(&mut buf, end)
            }
            (_, Some(n), Separators::Regexp { .. }) => {
                let mut ok = true;
                if !regexp_garbage_done {
                    regexp_garbage_done = true;
                    if !cutting.separators.starts_record(&buf) {
                        if let Some(end) = cutting.separators.next_boundary(&buf, 0) {
                            ok = pass(&mut buf, end);
                        }
                    }
                }
                let n = n * cutting.lines.unwrap_or(1);
                while ok {
                    let Some(end) = nth_regexp_boundary(&cutting.separators, &buf, n) else {
                        break;
                    };
                    ok = pass(&mut buf, end);
                }
                ok
            }
            (_, Some(n), Separators::Fixed { end, start }) => {
                let n = n * cutting.lines.unwrap_or(1);
                let both = [end.as_slice(), start.as_slice()].concat();
                let mut ok = true;
                while ok && !buf.is_empty() {
                    let Some(i) = nindex(&buf, &both, n) else {
                        break;
                    };
                    ok = pass(&mut buf, i + end.len());
                }
                ok
            }
            (_, None, separators) => {
                if eof {
                    true
                } else {
                    match separators.last_boundary(&buf) {
                        Some(end) => pass(&mut buf, end),
                        None => true,
                    }
                }
            }
        };
        if !keep_going {
            return Ok(());
        }
        if eof {
            break;
        }
        if !written && block < MAX_BLOCK {
            let old = block;
            block = ((block as f64 * 1.3 + 1.0).ceil() as usize).min(MAX_BLOCK);
            eprintln!(
                "fanout: Warning: A record was longer than {old}. Increasing to --blocksize {block}."
            );
        }
    }
    if !buf.is_empty() {
        emit(buf);
    }
    Ok(())
}

/// The end of the last whole `lines`-line record in `buf` (0 if none).
fn n_line_records(buf: &[u8], lines: usize) -> usize {
    let mut count = buf.iter().filter(|&&b| b == b'\n').count();
    let mut last = rfind(buf, b"\n", buf.len()).map_or(-1, |p| p as i64);
    while count % lines != 0 {
        count -= 1;
        // Perl's rindex with a position below 0 searches at 0.
        let at = (last - 1).max(0) as usize;
        last = rfind(buf, b"\n", at).map_or(-1, |p| p as i64);
    }
    (last + 1) as usize
}

/// GNU parallel's `nindex`: the `n`th occurrence of `needle`, the first
/// looked for from position 1.
fn nindex(buf: &[u8], needle: &[u8], n: usize) -> Option<usize> {
    let mut i = 0;
    for _ in 0..n {
        i = find(buf, needle, i + 1)?;
    }
    Some(i)
}

/// The `n`th regexp record boundary from the start (records start with
/// `--recstart`).
fn nth_regexp_boundary(separators: &Separators, buf: &[u8], n: usize) -> Option<usize> {
    let mut at = 0;
    let mut from = 0;
    for _ in 0..n {
        at = separators.next_boundary(buf, from)?;
        if at == 0 {
            return None;
        }
        from = at;
    }
    (at > 0).then_some(at)
}

/// `s/^\s*\n//gm`: lines of white space only are removed.
fn remove_blank_lines(buf: &mut Vec<u8>) {
    let mut out = Vec::with_capacity(buf.len());
    for line in buf.split_inclusive(|&b| b == b'\n') {
        let blank = line.ends_with(b"\n")
            && line[..line.len() - 1]
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\x0B' | b'\x0C' | b'\n'));
        if !blank {
            out.extend_from_slice(line);
        }
    }
    *buf = out;
}

/// Perl's `index($buf, $needle, $from)`.
pub(crate) fn find(buf: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > buf.len() {
        return None;
    }
    if needle.is_empty() {
        return Some(from);
    }
    if needle.len() == 1 {
        return memchr(needle[0], &buf[from..]).map(|i| i + from);
    }
    buf[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Perl's `rindex($buf, $needle, $at)`: the last occurrence starting at or
/// before `at`.
pub(crate) fn rfind(buf: &[u8], needle: &[u8], at: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(at.min(buf.len()));
    }
    if needle.len() > buf.len() {
        return None;
    }
    let last_start = at.min(buf.len() - needle.len());
    if needle.len() == 1 {
        return buf[..=last_start].iter().rposition(|&b| b == needle[0]);
    }
    (0..=last_start)
        .rev()
        .find(|&i| &buf[i..i + needle.len()] == needle)
}

fn memchr(b: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&x| x == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Separators {
        Separators::Fixed {
            end: b"\n".to_vec(),
            start: Vec::new(),
        }
    }

    fn blocks(cutting: &Cutting, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        cut(cutting, &mut &input[..], Vec::new(), &mut |b| {
            out.push(String::from_utf8(b).unwrap());
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn blocks_end_at_the_last_record_boundary() {
        let c = Cutting {
            block: 5,
            separators: lines(),
            records: None,
            lines: None,
            skip_blank: false,
        };
        assert_eq!(blocks(&c, b"a\nbb\nccc\nd"), vec!["a\nbb\n", "ccc\n", "d"]);
    }

    #[test]
    fn n_records_per_block() {
        let c = Cutting {
            block: 1 << 20,
            separators: lines(),
            records: Some(2),
            lines: None,
            skip_blank: false,
        };
        assert_eq!(
            blocks(&c, b"1\n2\n3\n4\n5\n"),
            vec!["1\n2\n", "3\n4\n", "5\n"]
        );
    }

    #[test]
    fn n_line_records() {
        let c = Cutting {
            block: 7,
            separators: lines(),
            records: None,
            lines: Some(2),
            skip_blank: false,
        };
        assert_eq!(
            blocks(&c, b"1\n2\n3\n4\n5\n"),
            vec!["1\n2\n", "3\n4\n", "5\n"]
        );
    }

    #[test]
    fn a_long_record_grows_the_block() {
        let c = Cutting {
            block: 2,
            separators: lines(),
            records: None,
            lines: None,
            skip_blank: false,
        };
        assert_eq!(blocks(&c, b"abcdef\ng\n"), vec!["abcdef\n", "g\n"]);
    }

    #[test]
    fn perl_index_semantics() {
        assert_eq!(find(b"abc", b"", 1), Some(1));
        assert_eq!(rfind(b"abc", b"", 3), Some(3));
        assert_eq!(rfind(b"a\nb\n", b"\n", 4), Some(3));
        assert_eq!(rfind(b"a\nb\n", b"\n", 2), Some(1));
        assert_eq!(nindex(b"\na\nb\n", b"\n", 1), Some(2));
    }
}
