//! Printing job output: each job's stdout then stderr as one block, in
//! completion order or, with `-k`, in input order.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};

use std::sync::Arc;

use indicatif::ProgressBar;
use tokio::sync::Notify;

use crate::job::{tag_of, Finished};

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

/// Prints finished jobs' spooled output.
///
/// With `keep_order`, a job's output waits until every job started before
/// it has been printed, so the output is byte-identical to running the jobs
/// one by one. Waiting output stays in its temporary file, not in memory.
#[derive(Debug)]
pub(crate) struct Printer {
    keep_order: bool,
    tag: bool,
    /// Seqs in start order that are not printed yet (only with `-k`).
    order: VecDeque<u64>,
    /// Finished jobs waiting for an earlier one (only with `-k`).
    waiting: BTreeMap<u64, Finished>,
    bar: Option<ProgressBar>,
}

impl Printer {
    /// A printer; `bar` is suspended while output is written.
    pub(crate) fn new(keep_order: bool, tag: bool, bar: Option<ProgressBar>) -> Printer {
        Printer {
            keep_order,
            tag,
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
    pub(crate) fn finished(&mut self, job: Finished) -> io::Result<()> {
        if !self.keep_order {
            return self.print(job);
        }
        self.waiting.insert(job.spec.seq, job);
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

    fn print(&mut self, mut job: Finished) -> io::Result<()> {
        let tag = self.tag.then(|| tag_of(&job.spec.inputs));
        let (stdout, stderr) = (job.stdout.take(), job.stderr.take());
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
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
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
pub(crate) fn read_spool(file: &mut Option<File>) -> Vec<u8> {
    use std::io::{Seek, SeekFrom};
    let mut bytes = Vec::new();
    if let Some(f) = file {
        let _ = f.read_to_end(&mut bytes);
        let _ = f.seek(SeekFrom::Start(0));
    }
    bytes
}
