//! `--results FILE`: one JSON object per finished job, one per line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::job::Finished;

/// One line of the results file.
#[derive(Debug, Serialize)]
struct Line<'a> {
    seq: u64,
    input: Vec<&'a str>,
    command: &'a str,
    exit_code: i32,
    signal: i32,
    timed_out: bool,
    start: f64,
    runtime: f64,
    stdout: String,
    stderr: String,
}

/// The open results file; every line is written with one `write`, so a
/// kill leaves at most a torn last line.
#[derive(Debug)]
pub(crate) struct Results {
    file: File,
}

impl Results {
    /// Opens `path`: truncated for a new run, appended to when resuming.
    ///
    /// # Errors
    /// The file cannot be opened for writing.
    pub(crate) fn open(path: &Path, append: bool) -> anyhow::Result<Results> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .with_context(|| format!("cannot open results file {} for writing", path.display()))?;
        Ok(Results { file })
    }

    /// Writes `job`'s line. Output that is not UTF-8 is stored with
    /// replacement characters.
    ///
    /// # Errors
    /// The write fails.
    pub(crate) fn write(&mut self, job: &mut Finished) -> anyhow::Result<()> {
        let (stdout, stderr) = job.last.output.read_both();
        let last = &job.last;
        let line = Line {
            seq: job.spec.seq,
            input: job.spec.inputs.iter().map(|v| &**v).collect(),
            command: &job.spec.command,
            exit_code: last.exitval,
            signal: last.signal,
            timed_out: last.timed_out,
            start: last.start_secs(),
            runtime: last.runtime.as_secs_f64(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        };
        let mut text = serde_json::to_string(&line).context("cannot encode a result")?;
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .context("cannot write to the results file")
    }
}
