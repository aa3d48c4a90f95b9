//! Printing job output: each job's stdout then stderr as one block, in
//! completion order or, with `-k`, in input order; or, with
//! `--line-buffer`, complete lines as they come.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::Arc;

use indicatif::ProgressBar;
use tokio::io::{AsyncBufReadExt, AsyncRead};
use tokio::sync::Notify;

use crate::input::Value;

/// Wakes the run loop when fanout's stdout turns out to be a closed pipe
/// (`fanout … | head`), so the run stops quietly.
pub(crate) static BROKEN_PIPE_NOTIFY: Notify = Notify::const_new();

/// With `-k`, a started job's place in the bounded backlog of unprinted
/// jobs; dropping it (when the job is printed, or did not start) lets a
/// later job start. Job `i` (in start order) may start once `i` is below
/// the number of places given back plus the limit, so the earliest
/// unprinted job can always start, whatever order jobs ask in.
#[derive(Debug)]
pub(crate) struct BacklogTicket(pub(crate) Arc<tokio::sync::watch::Sender<u64>>);

impl Drop for BacklogTicket {
    fn drop(&mut self) {
        self.0.send_modify(|released| *released += 1);
    }
}

/// Records that stdout is gone; the run then stops quietly.
pub(crate) fn broken_pipe() {
    BROKEN_PIPE_NOTIFY.notify_one();
}

/// A job's spooled output: its stdout and stderr in (unlinked) temporary
/// files, read from the start; `None` when the job wrote nothing there.
#[derive(Debug, Default)]
pub(crate) struct Spooled {
    /// What the job wrote to stdout.
    pub(crate) stdout: Option<File>,
    /// What the job wrote to stderr.
    pub(crate) stderr: Option<File>,
}

impl Spooled {
    /// Reads both files whole (then rewinds them): for `--results`.
    pub(crate) fn read_both(&mut self) -> (Vec<u8>, Vec<u8>) {
        (read_spool(&mut self.stdout), read_spool(&mut self.stderr))
    }
}

/// A finished job's output, waiting for its turn to be printed.
#[derive(Debug)]
pub(crate) struct Printable {
    /// The job's sequence number.
    pub(crate) seq: u64,
    /// The `--tag` prefix of every line, if tagging.
    pub(crate) tag: Option<Arc<str>>,
    /// What to print.
    pub(crate) output: Spooled,
    /// With `-k`: the job's place in the backlog, given back once printed.
    pub(crate) ticket: Option<BacklogTicket>,
}

/// GNU parallel's tag: the inputs separated by spaces, then a TAB.
pub(crate) fn tag_of(inputs: &[Value]) -> Arc<str> {
    let mut tag = inputs.iter().map(|v| &**v).collect::<Vec<_>>().join(" ");
    tag.push('\t');
    Arc::from(tag)
}

/// Prints finished jobs' spooled output.
///
/// With `keep_order`, a job's output waits until every job started before
/// it has been printed, so the output is byte-identical to running the jobs
/// one by one. Waiting output stays in its temporary file, not in memory.
#[derive(Debug)]
pub(crate) struct Printer {
    keep_order: bool,
    /// Seqs in start order that are not printed yet (only with `-k`).
    order: VecDeque<u64>,
    /// Finished jobs waiting for an earlier one (only with `-k`).
    waiting: BTreeMap<u64, Printable>,
    bar: Option<ProgressBar>,
}

impl Printer {
    /// A printer; `bar` is suspended while output is written.
    pub(crate) fn new(keep_order: bool, bar: Option<ProgressBar>) -> Printer {
        Printer {
            keep_order,
            order: VecDeque::new(),
            waiting: BTreeMap::new(),
            bar,
        }
    }

    /// Notes that a job started, fixing its place in `-k` order.
    pub(crate) fn started(&mut self, seq: u64) {
        if self.keep_order {
            self.order.push_back(seq);
        }
    }

    /// Forgets a job that was to start but never did (the run stopped
    /// first), so later jobs' output need not wait for it.
    ///
    /// # Errors
    /// Writing to stdout or stderr fails.
    pub(crate) fn never_started(&mut self, seq: u64) -> io::Result<()> {
        if let Some(at) = self.order.iter().position(|&s| s == seq) {
            self.order.remove(at);
        }
        self.print_ready()
    }

    /// Prints `job` now, or holds it until its turn.
    ///
    /// # Errors
    /// Writing to stdout or stderr fails.
    pub(crate) fn finished(&mut self, job: Printable) -> io::Result<()> {
        if !self.keep_order {
            return self.print(job);
        }
        self.waiting.insert(job.seq, job);
        self.print_ready()
    }

    /// Prints the held jobs whose turn has come.
    fn print_ready(&mut self) -> io::Result<()> {
        while let Some(seq) = self.order.front() {
            let Some(job) = self.waiting.remove(seq) else {
                break;
            };
            self.order.pop_front();
            self.print(job)?;
        }
        Ok(())
    }

    /// Prints everything still held, in order; used when a run stops with
    /// jobs that never finished.
    ///
    /// # Errors
    /// Writing fails.
    pub(crate) fn flush_all(&mut self) -> io::Result<()> {
        self.order.clear();
        while let Some((_, job)) = self.waiting.pop_first() {
            self.print(job)?;
        }
        Ok(())
    }

    fn print(&mut self, job: Printable) -> io::Result<()> {
        let Printable {
            tag,
            output: Spooled { stdout, stderr },
            ticket,
            ..
        } = job;
        let write = || -> io::Result<()> {
            if let Some(file) = stdout {
                let mut out = io::stdout().lock();
                copy(file, &mut out, tag.as_deref())?;
                out.flush()?;
            }
            if let Some(file) = stderr {
                let mut err = io::stderr().lock();
                copy(file, &mut err, tag.as_deref())?;
            }
            Ok(())
        };
        let written = match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        };
        // Printed: the job's place in the -k backlog goes to a later job.
        drop(ticket);
        written
    }
}

/// Copies a spooled output file, prefixing every line (the last one too,
/// even without a newline) with `tag`.
fn copy(file: File, out: &mut impl Write, tag: Option<&str>) -> io::Result<()> {
    let Some(tag) = tag else {
        let mut file = file;
        io::copy(&mut file, out)?;
        return Ok(());
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        out.write_all(tag.as_bytes())?;
        out.write_all(&line)?;
    }
}

/// Reads a spooled file whole, then rewinds it for printing.
fn read_spool(file: &mut Option<File>) -> Vec<u8> {
    use std::io::{Seek, SeekFrom};
    let mut bytes = Vec::new();
    if let Some(f) = file {
        let _ = f.read_to_end(&mut bytes);
        let _ = f.seek(SeekFrom::Start(0));
    }
    bytes
}

/// `--line-buffer`: copies complete lines to fanout's stdout or stderr as
/// they arrive, each with one write, so lines never mix. Returns the bytes
/// read.
pub(crate) async fn forward_lines(
    stream: impl AsyncRead + Unpin,
    to_stderr: bool,
    tag: Option<Arc<str>>,
) -> u64 {
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = Vec::new();
    let mut total = 0;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n as u64,
        }
        let mut out = Vec::with_capacity(line.len() + tag.as_deref().map_or(0, str::len));
        if let Some(tag) = &tag {
            out.extend_from_slice(tag.as_bytes());
        }
        out.extend_from_slice(&line);
        let result = if to_stderr {
            io::stderr().lock().write_all(&out)
        } else {
            let mut stdout = io::stdout().lock();
            stdout.write_all(&out).and_then(|()| stdout.flush())
        };
        if let Err(e) = result {
            if e.kind() == io::ErrorKind::BrokenPipe {
                broken_pipe();
            }
        }
    }
}
