//! Input sources, read the way GNU parallel reads them, and the records
//! their combination makes.
//!
//! Every source is a list of records: the words after `:::` (GNU parallel
//! writes them to a file, one per delimiter, and reads them back, so a word
//! holding the delimiter is several records), or the records of a file
//! (`::::`, `-a`, stdin). Reading honours the delimiter (`-d`, `-0`), the
//! end-of-file string (`-E`), `-r` (skip blank records) and, with `-L`/`-l`,
//! GNU's line continuation (a record ending in white space continues on the
//! next). Several sources make the cartesian product (last varies fastest),
//! or with `:::+`/`::::+` pair up with the previous one up to the shorter,
//! or with `--link` pair up all, the shorter ones starting over. With
//! `--colsep` each value is split into columns.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use regex::Regex;

/// One input value, shared between the job that uses it and its records.
pub(crate) type Value = Arc<str>;

/// One argument of a job: a value, or `None` for the "no argument" that
/// `-n 0` puts in its place.
pub(crate) type Arg = Option<Value>;

/// Where one input source's values come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceSpec {
    /// Values given on the command line after `:::`.
    Args(Vec<String>),
    /// Records of a file (`::::` or `-a`); `-` is standard input.
    File(String),
}

/// An input source as given, with whether it is linked to the previous one
/// (`:::+`/`::::+`) instead of multiplied with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceDecl {
    /// The values or the file holding them.
    pub(crate) spec: SourceSpec,
    /// Paired element by element with the previous source.
    pub(crate) linked: bool,
}

/// How records are read.
#[derive(Debug, Clone)]
pub(crate) struct ReadRules {
    /// The record delimiter (GNU parallel's `$/`).
    pub(crate) delimiter: Vec<u8>,
    /// `-E`: a record equal to this ends its source.
    pub(crate) eof: Option<String>,
    /// `-r`: records of white space only are skipped.
    pub(crate) skip_blank: bool,
    /// `-L`/`-l`: a record ending in white space continues on the next.
    pub(crate) continuation: bool,
    /// `--skip-first-line`: the first source's first record is dropped.
    pub(crate) skip_first_line: bool,
}

impl Default for ReadRules {
    fn default() -> ReadRules {
        ReadRules {
            delimiter: b"\n".to_vec(),
            eof: None,
            skip_blank: false,
            continuation: false,
            skip_first_line: false,
        }
    }
}

/// All input sources, read into memory, ready to be combined.
///
/// The sources themselves are held in memory; their product (what the jobs
/// get) is produced lazily by [`Inputs::records`], one combination at a
/// time.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    /// Each group is a list of linked sources, truncated to the shortest.
    groups: Vec<Vec<Vec<Value>>>,
    /// `--link`: all sources paired, shorter ones recycled.
    link_all: bool,
    /// `--colsep`: each value split into columns.
    colsep: Option<Regex>,
    /// `--shuf`: the order records come in.
    order: Option<Vec<u64>>,
}

impl Inputs {
    /// Reads every source.
    ///
    /// # Errors
    /// An unreadable file, or a record that is not UTF-8.
    pub(crate) fn load(decls: &[SourceDecl], rules: &ReadRules) -> anyhow::Result<Vec<RawSource>> {
        let mut stdin_used = false;
        let mut out = Vec::with_capacity(decls.len());
        for (i, decl) in decls.iter().enumerate() {
            let (name, bytes) = match &decl.spec {
                SourceSpec::Args(words) => {
                    let mut bytes = Vec::new();
                    for w in words {
                        bytes.extend_from_slice(w.as_bytes());
                        bytes.extend_from_slice(&rules.delimiter);
                    }
                    (None, bytes)
                }
                SourceSpec::File(name) => {
                    if name == "-" {
                        anyhow::ensure!(
                            !stdin_used,
                            "standard input (-) can be only one input source"
                        );
                        stdin_used = true;
                    }
                    (Some(name.clone()), read_file(name)?)
                }
            };
            let records = split_records(&bytes, &rules.delimiter)
                .into_iter()
                .map(|r| {
                    std::str::from_utf8(r).map(str::to_owned).map_err(|_| {
                        anyhow::anyhow!(
                            "input {} is not valid UTF-8; fanout needs UTF-8 inputs",
                            name.as_deref().unwrap_or("after :::")
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<String>>>()?;
            let mut records = records.into_iter();
            if rules.skip_first_line && i == 0 {
                records.next();
            }
            out.push(RawSource {
                file: name,
                records: records.collect(),
                linked: decl.linked,
            });
        }
        Ok(out)
    }

    /// Applies the reading rules to each source (after any header record
    /// was taken) and builds the combinations.
    pub(crate) fn combine(
        sources: Vec<RawSource>,
        rules: &ReadRules,
        link_all: bool,
        colsep: Option<Regex>,
    ) -> Inputs {
        let mut groups: Vec<Vec<Vec<Value>>> = Vec::new();
        for source in sources {
            let values = apply_rules(source.records, rules);
            match groups.last_mut() {
                Some(group) if source.linked && !link_all => group.push(values),
                _ => groups.push(vec![values]),
            }
        }
        // GNU parallel reads one record of every source first; an empty
        // source then gives one empty value, unless all are empty.
        let all_empty = groups.iter().flatten().all(Vec::is_empty);
        if !all_empty && !link_all {
            for group in &mut groups {
                if group.len() == 1 && group[0].is_empty() {
                    group[0].push(Value::from(""));
                }
            }
        }
        Inputs {
            groups,
            link_all,
            colsep,
            order: None,
        }
    }

    /// `--shuf`: the records come in a random order.
    pub(crate) fn shuffle(&mut self) {
        let n = self.record_count();
        let mut order: Vec<u64> = (0..n).collect();
        let mut state = seed();
        for i in (1..order.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let j = (state % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        self.order = Some(order);
    }

    /// The number of input sources (before column splitting).
    pub(crate) fn source_count(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }

    /// The number of records the combination makes (saturating).
    pub(crate) fn record_count(&self) -> u64 {
        if self.link_all {
            return self
                .groups
                .iter()
                .map(|g| group_len(g) as u64)
                .max()
                .unwrap_or(0);
        }
        self.groups
            .iter()
            .fold(1u64, |n, g| n.saturating_mul(group_len(g) as u64))
    }

    /// The record with number `i` (0-based, in GNU parallel's order): one
    /// value per source, each split into columns with `--colsep`.
    fn record(&self, i: u64) -> Vec<Value> {
        let i = match &self.order {
            Some(order) => order[i as usize],
            None => i,
        };
        let mut values = Vec::new();
        if self.link_all {
            for group in &self.groups {
                for source in group {
                    values.push(source[(i % source.len() as u64) as usize].clone());
                }
            }
        } else {
            // The last group varies fastest.
            let mut rest = i;
            let mut picks = vec![0usize; self.groups.len()];
            for (g, group) in self.groups.iter().enumerate().rev() {
                let len = group_len(group) as u64;
                picks[g] = (rest % len) as usize;
                rest /= len;
            }
            for (group, &pick) in self.groups.iter().zip(&picks) {
                for source in group {
                    values.push(source[pick].clone());
                }
            }
        }
        match &self.colsep {
            None => values,
            Some(colsep) => values
                .iter()
                .flat_map(|v| split_columns(v, colsep))
                .collect(),
        }
    }

    /// The records, in order, lazily.
    pub(crate) fn records(self: Arc<Inputs>) -> Records {
        let total = self.record_count();
        Records {
            inputs: self,
            next: 0,
            total,
        }
    }

    /// Feeds every value, with its position, to `sink`; used to fingerprint
    /// the input list for the journal.
    pub(crate) fn visit(&self, mut sink: impl FnMut(&[u8])) {
        for (g, group) in self.groups.iter().enumerate() {
            sink(format!("group {g} of {}", group.len()).as_bytes());
            for source in group {
                sink(format!("source of {}", source.len()).as_bytes());
                for value in source {
                    sink(value.as_bytes());
                }
            }
        }
        if self.link_all {
            sink(b"linked");
        }
        if let Some(colsep) = &self.colsep {
            sink(format!("colsep {}", colsep.as_str()).as_bytes());
        }
    }
}

/// A source as read, before the reading rules apply.
#[derive(Debug, Clone)]
pub(crate) struct RawSource {
    /// The file it was read from (`None` for `:::` words).
    pub(crate) file: Option<String>,
    /// Its records, split at the delimiter.
    pub(crate) records: Vec<String>,
    /// Linked to the previous source.
    pub(crate) linked: bool,
}

/// The records of the combined sources, in GNU parallel's order.
#[derive(Debug)]
pub(crate) struct Records {
    inputs: Arc<Inputs>,
    next: u64,
    total: u64,
}

impl Iterator for Records {
    type Item = Vec<Value>;

    fn next(&mut self) -> Option<Vec<Value>> {
        if self.next >= self.total {
            return None;
        }
        let record = self.inputs.record(self.next);
        self.next += 1;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.total - self.next).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

/// Linked sources pair up to the shortest one, as GNU parallel's `:::+` does.
fn group_len(group: &[Vec<Value>]) -> usize {
    group.iter().map(Vec::len).min().unwrap_or(0)
}

/// `-E`, `-r` and line continuation, as GNU parallel's `read_arg_from_fh`
/// applies them.
fn apply_rules(records: Vec<String>, rules: &ReadRules) -> Vec<Value> {
    let mut out = Vec::with_capacity(records.len());
    let mut pending: Option<String> = None;
    for record in records {
        if rules.eof.as_deref() == Some(record.as_str()) {
            break;
        }
        let record = match pending.take() {
            Some(mut p) => {
                p.push_str(&record);
                p
            }
            None => record,
        };
        if rules.skip_blank && record.chars().all(is_perl_space) {
            continue;
        }
        if rules.continuation && record.ends_with(is_perl_space) {
            pending = Some(record);
            continue;
        }
        out.push(Value::from(record));
    }
    if let Some(p) = pending {
        out.push(Value::from(p));
    }
    out
}

/// Perl's `\s` on bytes.
pub(crate) fn is_perl_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C')
}

/// Perl's `split /$colsep/, $value, -1` (an empty value is one empty
/// column); captured groups of the pattern are columns too, as in Perl.
pub(crate) fn split_columns(value: &str, colsep: &Regex) -> Vec<Value> {
    if value.is_empty() {
        return vec![Value::from("")];
    }
    let mut out = Vec::new();
    let mut last = 0;
    for caps in colsep.captures_iter(value) {
        let m = caps.get(0).expect("match");
        // Perl skips a zero-length match at the start of the string.
        if m.end() == 0 {
            continue;
        }
        if m.start() == m.end() && m.start() == last && last > 0 && m.start() == value.len() {
            break;
        }
        out.push(Value::from(&value[last..m.start()]));
        for g in caps.iter().skip(1) {
            out.push(Value::from(g.map_or("", |g| g.as_str())));
        }
        last = m.end();
    }
    out.push(Value::from(&value[last..]));
    out
}

/// Reads a file (or stdin for `-`).
fn read_file(name: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if name == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(Path::new(name))
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| format!("cannot read input file {name:?}"))?;
    }
    Ok(bytes)
}

/// Splits on `delimiter`; a final record without a delimiter still counts,
/// an empty tail after the last delimiter does not.
pub(crate) fn split_records<'a>(bytes: &'a [u8], delimiter: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    if bytes.is_empty() || delimiter.is_empty() {
        if !bytes.is_empty() {
            out.push(bytes);
        }
        return out;
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        match find(rest, delimiter) {
            Some(at) => {
                out.push(&rest[..at]);
                rest = &rest[at + delimiter.len()..];
            }
            None => {
                out.push(rest);
                break;
            }
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return haystack.iter().position(|&b| b == needle[0]);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A seed for `--shuf` from the clock and the process id.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ (u64::from(std::process::id()) << 32)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str], linked: bool) -> SourceDecl {
        SourceDecl {
            spec: SourceSpec::Args(words.iter().map(|w| w.to_string()).collect()),
            linked,
        }
    }

    fn all(decls: &[SourceDecl], rules: &ReadRules, link: bool) -> Vec<Vec<String>> {
        let raw = Inputs::load(decls, rules).unwrap();
        let inputs = Arc::new(Inputs::combine(raw, rules, link, None));
        inputs
            .records()
            .map(|job| job.iter().map(|v| v.to_string()).collect())
            .collect()
    }

    #[test]
    fn the_product_varies_the_last_source_fastest() {
        let got = all(
            &[args(&["a", "b"], false), args(&["c", "d"], false)],
            &ReadRules::default(),
            false,
        );
        assert_eq!(
            got,
            vec![
                vec!["a", "c"],
                vec!["a", "d"],
                vec!["b", "c"],
                vec!["b", "d"]
            ]
        );
    }

    #[test]
    fn linked_sources_pair_up_to_the_shortest() {
        let decls = [
            args(&["a", "b"], false),
            args(&["1", "2", "3"], true),
            args(&["x"], false),
        ];
        assert_eq!(
            all(&decls, &ReadRules::default(), false),
            vec![vec!["a", "1", "x"], vec!["b", "2", "x"]]
        );
    }

    #[test]
    fn link_recycles_the_shorter_sources() {
        let decls = [args(&["a", "b", "c"], false), args(&["1", "2"], false)];
        assert_eq!(
            all(&decls, &ReadRules::default(), true),
            vec![vec!["a", "1"], vec!["b", "2"], vec!["c", "1"]]
        );
    }

    #[test]
    fn an_empty_source_counts_as_one_empty_value_unless_all_are_empty() {
        let got = all(
            &[args(&["a"], false), args(&[], false)],
            &ReadRules::default(),
            false,
        );
        assert_eq!(got, vec![vec!["a", ""]]);
        let got = all(&[args(&[], false)], &ReadRules::default(), false);
        assert!(got.is_empty());
    }

    #[test]
    fn a_word_holding_the_delimiter_is_several_records() {
        let got = all(&[args(&["a\nb", "c"], false)], &ReadRules::default(), false);
        assert_eq!(got, vec![vec!["a"], vec!["b"], vec!["c"]]);
    }

    #[test]
    fn eof_string_blank_records_and_continuation() {
        let rules = ReadRules {
            eof: Some("stop".into()),
            skip_blank: true,
            ..ReadRules::default()
        };
        let got = all(&[args(&["a", " ", "b", "stop", "c"], false)], &rules, false);
        assert_eq!(got, vec![vec!["a"], vec!["b"]]);
        let rules = ReadRules {
            continuation: true,
            ..ReadRules::default()
        };
        let got = all(&[args(&["a ", "b", "c"], false)], &rules, false);
        assert_eq!(got, vec![vec!["a b"], vec!["c"]]);
    }

    #[test]
    fn records_keep_empty_ones_but_not_an_empty_tail() {
        assert_eq!(split_records(b"a\n\nb", b"\n"), vec![&b"a"[..], b"", b"b"]);
        assert_eq!(
            split_records(b"a\0\0b\0", b"\0"),
            vec![&b"a"[..], b"", b"b"]
        );
        assert_eq!(split_records(b"", b"\n"), Vec::<&[u8]>::new());
        assert_eq!(split_records(b"\n", b"\n"), vec![&b""[..]]);
        assert_eq!(split_records(b"a\r\nb\r\n", b"\r\n"), vec![&b"a"[..], b"b"]);
    }

    #[test]
    fn columns_split_like_perl() {
        let tab = Regex::new("\t").unwrap();
        let cols = |v: &str, r: &Regex| {
            split_columns(v, r)
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(cols("a\tb\t", &tab), vec!["a", "b", ""]);
        assert_eq!(cols("", &tab), vec![""]);
        assert_eq!(cols("\ta", &tab), vec!["", "a"]);
        let grouped = Regex::new("(,)").unwrap();
        assert_eq!(cols("a,b", &grouped), vec!["a", ",", "b"]);
    }
}
