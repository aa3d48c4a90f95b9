//! Input sources and the lazy cartesian product of them.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

/// One input value, shared between the job that uses it and its records.
pub(crate) type Value = Arc<str>;

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

/// All input sources, read into memory, ready to be combined.
///
/// The sources themselves are held in memory; their product (what the jobs
/// get) is produced lazily by [`Inputs::jobs`], one combination at a time.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    /// Each group is a list of linked sources, truncated to the shortest.
    groups: Vec<Vec<Vec<Value>>>,
}

impl Inputs {
    /// Reads every source; records in files and stdin end with `delimiter`.
    ///
    /// # Errors
    /// An unreadable file, or a record that is not UTF-8.
    pub(crate) fn load(decls: &[SourceDecl], delimiter: u8) -> anyhow::Result<Inputs> {
        let mut groups: Vec<Vec<Vec<Value>>> = Vec::new();
        let mut stdin_used = false;
        for decl in decls {
            let values = match &decl.spec {
                SourceSpec::Args(words) => words.iter().map(|w| Value::from(w.as_str())).collect(),
                SourceSpec::File(name) => {
                    if name == "-" {
                        anyhow::ensure!(
                            !stdin_used,
                            "standard input (-) can be only one input source"
                        );
                        stdin_used = true;
                    }
                    read_records(name, delimiter)?
                }
            };
            match groups.last_mut() {
                Some(group) if decl.linked => group.push(values),
                _ => groups.push(vec![values]),
            }
        }
        Ok(Inputs { groups })
    }

    /// The number of input sources (what `{1}`, `{2}`… can refer to).
    pub(crate) fn source_count(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }

    /// The number of jobs the product yields (saturating).
    pub(crate) fn job_count(&self) -> u64 {
        self.groups
            .iter()
            .fold(1u64, |n, g| n.saturating_mul(group_len(g) as u64))
    }

    /// The jobs' inputs in GNU parallel's order: the last source varies
    /// fastest. Each item holds one value per source.
    pub(crate) fn jobs(&self) -> Product<&Inputs> {
        Product {
            inputs: self,
            odometer: vec![0; self.groups.len()],
            done: self.job_count() == 0,
        }
    }

    /// [`Inputs::jobs`] for a shared `Inputs`: an iterator that owns its
    /// inputs, as a run on the `fanout` library needs.
    pub(crate) fn into_jobs(self: Arc<Inputs>) -> Product<Arc<Inputs>> {
        Product {
            odometer: vec![0; self.groups.len()],
            done: self.job_count() == 0,
            inputs: self,
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
    }
}

/// Linked sources pair up to the shortest one, as GNU parallel's `:::+` does.
fn group_len(group: &[Vec<Value>]) -> usize {
    group.iter().map(Vec::len).min().unwrap_or(0)
}

/// The lazy cartesian product of the input groups.
#[derive(Debug)]
pub(crate) struct Product<B> {
    inputs: B,
    odometer: Vec<usize>,
    done: bool,
}

impl<B: std::borrow::Borrow<Inputs>> Iterator for Product<B> {
    type Item = Vec<Value>;

    fn next(&mut self) -> Option<Vec<Value>> {
        if self.done {
            return None;
        }
        let groups = &self.inputs.borrow().groups;
        let item = groups
            .iter()
            .zip(&self.odometer)
            .flat_map(|(group, &i)| group.iter().map(move |source| source[i].clone()))
            .collect();
        self.done = true;
        for (g, i) in self.odometer.iter_mut().enumerate().rev() {
            *i += 1;
            if *i < group_len(&groups[g]) {
                self.done = false;
                break;
            }
            *i = 0;
        }
        Some(item)
    }
}

/// Reads a file (or stdin for `-`) and splits it into records.
fn read_records(name: &str, delimiter: u8) -> anyhow::Result<Vec<Value>> {
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
    split_records(&bytes, delimiter)
        .enumerate()
        .map(|(i, record)| {
            std::str::from_utf8(record).map(Value::from).map_err(|_| {
                anyhow::anyhow!(
                    "record {} of input {name:?} is not valid UTF-8; fanout needs UTF-8 inputs",
                    i + 1
                )
            })
        })
        .collect()
}

/// Splits on `delimiter`; a final record without a delimiter still counts,
/// an empty tail after the last delimiter does not.
pub(crate) fn split_records(bytes: &[u8], delimiter: u8) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(&[delimiter]).unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(move |&b| b == delimiter).filter(move |_| !empty)
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

    fn all(inputs: &Inputs) -> Vec<Vec<String>> {
        inputs
            .jobs()
            .map(|job| job.iter().map(|v| v.to_string()).collect())
            .collect()
    }

    #[test]
    fn the_product_varies_the_last_source_fastest() {
        let inputs =
            Inputs::load(&[args(&["a", "b"], false), args(&["c", "d"], false)], b'\n').unwrap();
        assert_eq!(
            all(&inputs),
            vec![
                vec!["a", "c"],
                vec!["a", "d"],
                vec!["b", "c"],
                vec!["b", "d"]
            ]
        );
        assert_eq!(inputs.job_count(), 4);
        assert_eq!(inputs.source_count(), 2);
    }

    #[test]
    fn linked_sources_pair_up_to_the_shortest() {
        let decls = [
            args(&["a", "b"], false),
            args(&["1", "2", "3"], true),
            args(&["x"], false),
        ];
        let inputs = Inputs::load(&decls, b'\n').unwrap();
        assert_eq!(all(&inputs), vec![vec!["a", "1", "x"], vec!["b", "2", "x"]]);
    }

    #[test]
    fn an_empty_source_gives_no_jobs() {
        let inputs = Inputs::load(&[args(&["a"], false), args(&[], false)], b'\n').unwrap();
        assert_eq!(all(&inputs), Vec::<Vec<String>>::new());
    }

    #[test]
    fn records_keep_empty_ones_but_not_an_empty_tail() {
        let split = |b: &'static [u8], d| split_records(b, d).collect::<Vec<_>>();
        assert_eq!(split(b"a\n\nb", b'\n'), vec![&b"a"[..], b"", b"b"]);
        assert_eq!(split(b"a\0\0b\0", 0), vec![&b"a"[..], b"", b"b"]);
        assert_eq!(split(b"", b'\n'), Vec::<&[u8]>::new());
        assert_eq!(split(b"\n", b'\n'), vec![&b""[..]]);
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let decl = SourceDecl {
            spec: SourceSpec::File("/nonexistent/x".into()),
            linked: false,
        };
        let err = Inputs::load(&[decl], b'\n').unwrap_err();
        assert!(format!("{err:#}").contains("cannot read input file \"/nonexistent/x\""));
    }
}
