//! `--results`, as GNU parallel writes it: per-job files (a directory tree
//! named after the inputs, or names the replacement strings make), or one
//! CSV, TSV or JSON table of all jobs. Job output then goes there instead
//! of to stdout.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::flags::TableKind;
use crate::job::Finished;

/// Per-job result files.
#[derive(Debug)]
pub(crate) struct ResultFiles {
    /// The `--results` name as given.
    name: String,
    /// Column names by number, for the directory tree.
    headers: Vec<String>,
}

impl ResultFiles {
    /// Result files under `name`.
    pub(crate) fn new(name: String, headers: Vec<String>) -> ResultFiles {
        ResultFiles { name, headers }
    }

    /// Writes the job's `seq`, `stdout` and `stderr` files (for a plain
    /// name, `NAME/1/ARG1/2/ARG2/…/`; for a rendered name ending in `/`,
    /// that directory; for any other rendered name, `OUT`, `OUT.err`,
    /// `OUT.seq`). The job's spooled output is read from the start.
    ///
    /// # Errors
    /// A directory or file cannot be created or written.
    pub(crate) fn write(&self, job: &mut Finished) -> anyhow::Result<()> {
        let rendered = job
            .spec
            .results
            .clone()
            .unwrap_or_else(|| self.name.clone());
        let (seq, out, err) = if rendered == self.name {
            let dir = Path::new(&self.name).join(self.args_as_dirname(job));
            create_dir(&dir)?;
            (dir.join("seq"), dir.join("stdout"), dir.join("stderr"))
        } else if rendered.ends_with('/') {
            let dir = PathBuf::from(&rendered);
            create_dir(&dir)?;
            (dir.join("seq"), dir.join("stdout"), dir.join("stderr"))
        } else {
            if let Some(parent) = Path::new(&rendered).parent() {
                if !parent.as_os_str().is_empty() {
                    create_dir(parent)?;
                }
            }
            (
                PathBuf::from(format!("{rendered}.seq")),
                PathBuf::from(&rendered),
                PathBuf::from(format!("{rendered}.err")),
            )
        };
        let (stdout, stderr) = job.last.output.read_both();
        write_file(&seq, job.spec.seq.to_string().as_bytes())?;
        write_file(&out, &stdout)?;
        write_file(&err, &stderr)
    }

    /// GNU parallel's `args_as_dirname`: for each record, its columns in
    /// the order of their names (numbers first), each as `NAME/VALUE` with
    /// `\`, TAB, NUL and `/` in values written as `\\`, `\t`, `\0`, `\_`.
    fn args_as_dirname(&self, job: &Finished) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut first = 0;
        for &width in &job.spec.widths {
            let mut columns: Vec<usize> = (1..=width).collect();
            let name = |c: usize| -> String {
                self.headers
                    .get(c - 1)
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .unwrap_or_else(|| c.to_string())
            };
            columns.sort_by(|&a, &b| {
                let (na, nb) = (name(a), name(b));
                perl_num(&na)
                    .partial_cmp(&perl_num(&nb))
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| na.cmp(&nb))
            });
            for c in columns {
                let value = job.spec.args[first + c - 1].as_deref().unwrap_or("\0noarg");
                let value = value
                    .replace('\\', "\\\\")
                    .replace('\t', "\\t")
                    .replace('\0', "\\0")
                    .replace('/', "\\_");
                parts.push(name(c));
                parts.push(value);
            }
            first += width;
        }
        parts.join("/")
    }
}

/// Perl's numeric value of a string: its leading number, else 0.
fn perl_num(s: &str) -> f64 {
    let s = s.trim_start();
    let end = s
        .char_indices()
        .take_while(|(i, c)| {
            c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '-' || *c == '+'))
        })
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    s[..end].parse().unwrap_or(0.0)
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make dir '{}'", dir.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write to '{}'", path.display()))
}

/// One job's row of a results table.
#[derive(Debug)]
pub(crate) struct Row {
    /// `Seq`.
    pub(crate) seq: u64,
    /// `Starttime`, seconds since the epoch.
    pub(crate) start: f64,
    /// `JobRuntime`, seconds.
    pub(crate) runtime: f64,
    /// `Send`.
    pub(crate) sent: u64,
    /// `Receive`.
    pub(crate) received: u64,
    /// `Exitval`.
    pub(crate) exitval: i32,
    /// `Signal`.
    pub(crate) signal: i32,
    /// `Command`.
    pub(crate) command: String,
    /// `V1`, `V2`, …: the job's arguments.
    pub(crate) values: Vec<String>,
}

/// A results table: `NAME.csv`, `NAME.tsv`, `NAME.json`, or one of those
/// on stdout.
#[derive(Debug)]
pub(crate) struct Table {
    out: Box<dyn WriteDebug>,
    kind: TableKind,
    header_written: bool,
    /// Column names for the CSV/TSV header (`--header`), else `V1`, `V2`…
    names: Option<Vec<String>>,
}

trait WriteDebug: Write + std::fmt::Debug + Send {}
impl<T: Write + std::fmt::Debug + Send> WriteDebug for T {}

impl Table {
    /// Opens the table (truncated; appended to when resuming).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub(crate) fn open(
        path: Option<&Path>,
        kind: TableKind,
        append: bool,
        names: Option<Vec<String>>,
    ) -> anyhow::Result<Table> {
        let out: Box<dyn WriteDebug> = match path {
            Some(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(append)
                    .truncate(!append)
                    .open(path)
                    .with_context(|| format!("cannot open results file `{}'", path.display()))?,
            ),
            None => Box::new(Stdout),
        };
        Ok(Table {
            out,
            kind,
            header_written: false,
            names,
        })
    }

    /// Writes a job's row.
    ///
    /// # Errors
    /// The write fails.
    pub(crate) fn write(&mut self, row: &Row, stdout: &[u8], stderr: &[u8]) -> std::io::Result<()> {
        let stdout = String::from_utf8_lossy(stdout);
        let stderr = String::from_utf8_lossy(stderr);
        let mut line = String::new();
        match self.kind {
            TableKind::Json => {
                let values: Vec<String> = row
                    .values
                    .iter()
                    .map(|v| format!("\"{}\"", json_quote(v)))
                    .collect();
                line.push_str(&format!(
                    "{{ \"Seq\": {}, \"Host\": \":\", \"Starttime\": {:.3}, \"JobRuntime\": {:.3}, \
                     \"Send\": {}, \"Receive\": {}, \"Exitval\": {}, \"Signal\": {}, \"Command\": \"{}\", \
                     \"V\": [ {} ], \"Stdout\": \"{}\", \"Stderr\": \"{}\" }}\n",
                    row.seq,
                    row.start,
                    row.runtime,
                    row.sent,
                    row.received,
                    row.exitval,
                    row.signal,
                    json_quote(&row.command),
                    values.join(","),
                    json_quote(&stdout),
                    json_quote(&stderr),
                ));
            }
            TableKind::Csv | TableKind::Tsv => {
                let sep = if self.kind == TableKind::Csv {
                    ','
                } else {
                    '\t'
                };
                if !self.header_written {
                    let mut header: Vec<String> = [
                        "Seq",
                        "Host",
                        "Starttime",
                        "JobRuntime",
                        "Send",
                        "Receive",
                        "Exitval",
                        "Signal",
                        "Command",
                    ]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
                    for i in 0..row.values.len() {
                        let name = match &self.names {
                            Some(names) => names.get(i).cloned().unwrap_or_default(),
                            None => format!("V{}", i + 1),
                        };
                        header.push(name);
                    }
                    header.push("Stdout".into());
                    header.push("Stderr".into());
                    line.push_str(&csv_line(&header, sep));
                    self.header_written = true;
                }
                let mut fields = vec![
                    row.seq.to_string(),
                    ":".to_owned(),
                    format!("{:.3}", row.start),
                    format!("{:.3}", row.runtime),
                    row.sent.to_string(),
                    row.received.to_string(),
                    row.exitval.to_string(),
                    row.signal.to_string(),
                    row.command.clone(),
                ];
                fields.extend(row.values.iter().cloned());
                fields.push(stdout.into_owned());
                fields.push(stderr.into_owned());
                line.push_str(&csv_line(&fields, sep));
            }
        }
        self.out.write_all(line.as_bytes())?;
        self.out.flush()
    }
}

/// fanout's stdout, for `-.csv` and the like.
#[derive(Debug)]
struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

/// GNU parallel's `combine_ref`: a field is quoted (with `"` doubled) when
/// it holds a quote, white space, the separator or NUL.
fn csv_line(fields: &[String], sep: char) -> String {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        let quoted = f.contains('"')
            || f.contains(sep)
            || f.contains('\0')
            || f.chars().any(crate::input::is_perl_space);
        if quoted {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push('\n');
    out
}

/// GNU parallel's `jsonquote`: `\` and `"` escaped, control characters as
/// `\u00XX`.
fn json_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 32 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_like_gnu() {
        assert_eq!(
            csv_line(&["a".into(), "b c".into(), "x\"y".into(), "".into()], ','),
            "a,\"b c\",\"x\"\"y\",\n"
        );
    }

    #[test]
    fn json_quotes_control_characters() {
        assert_eq!(json_quote("a\n\"b\\"), "a\\u000a\\\"b\\\\");
    }

    #[test]
    fn perl_numbers() {
        assert_eq!(perl_num("12abc"), 12.0);
        assert_eq!(perl_num("abc"), 0.0);
    }
}
