//! Printing job output: each job's stdout then stderr as one block, in
//! completion order or, with `-k`, in input order; or, with
//! `--line-buffer`, complete lines as they come. With both `-k` and
//! `--line-buffer`, the oldest unprinted job's complete lines are printed
//! from its spool files while it runs, and the others wait their turn.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use indicatif::ProgressBar;
use tokio::io::{AsyncBufReadExt, AsyncRead};
use tokio::sync::Notify;

use crate::results::{Row, Table};

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
    /// With `--results NAME.csv` and the like: the job's row.
    pub(crate) row: Option<Row>,
}

/// Where printed output goes.
#[derive(Debug)]
pub(crate) enum Destination {
    /// fanout's stdout and stderr.
    Terminal,
    /// Nowhere (`--results` files hold it).
    Nowhere,
    /// A results table.
    Table(Table),
}

/// With `-k --line-buffer`: the spool files (stdout, stderr) and the tag
/// of each running job, by seq, so that the oldest one's lines can be
/// printed while it runs.
pub(crate) type LiveSpools = Mutex<HashMap<u64, (File, File, Option<Arc<str>>)>>;

/// The job whose output `-k --line-buffer` prints as it comes, and how much
/// of each of its files is printed.
#[derive(Debug)]
struct LiveHead {
    spools: Arc<LiveSpools>,
    seq: u64,
    printed: [u64; 2],
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
    destination: Destination,
    /// `-k --line-buffer`.
    live: Option<LiveHead>,
}

impl Printer {
    /// A printer; `bar` is suspended while output is written.
    pub(crate) fn new(
        keep_order: bool,
        bar: Option<ProgressBar>,
        destination: Destination,
    ) -> Printer {
        Printer {
            keep_order,
            order: VecDeque::new(),
            waiting: BTreeMap::new(),
            bar,
            destination,
            live: None,
        }
    }

    /// With `-k`: prints the oldest unprinted job's complete lines while
    /// it runs, from the spool files its job registers in `spools`.
    pub(crate) fn print_live(&mut self, spools: Arc<LiveSpools>) {
        if self.keep_order && matches!(self.destination, Destination::Terminal) {
            self.live = Some(LiveHead {
                spools,
                seq: 0,
                printed: [0, 0],
            });
        }
    }

    /// Whether [`Printer::poll_live`] has anything to do.
    pub(crate) fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// `-k --line-buffer`: prints the complete lines the oldest unprinted
    /// job has written since the last call.
    ///
    /// # Errors
    /// Writing to stdout or stderr fails.
    pub(crate) fn poll_live(&mut self) -> io::Result<()> {
        let Some(live) = &mut self.live else {
            return Ok(());
        };
        let Some(&head) = self.order.front() else {
            return Ok(());
        };
        if live.seq != head {
            live.seq = head;
            live.printed = [0, 0];
        }
        let spools = live.spools.lock().unwrap_or_else(|p| p.into_inner());
        let Some((out, err, tag)) = spools.get(&head) else {
            return Ok(());
        };
        let bar = self.bar.as_ref();
        for (i, file) in [out, err].into_iter().enumerate() {
            let printed = &mut live.printed[i];
            let write = |lines: &[u8]| -> io::Result<()> {
                let mut tagged = Vec::with_capacity(lines.len());
                tag_lines(
                    lines,
                    tag.as_deref().map(str::as_bytes),
                    &mut true,
                    &mut tagged,
                );
                let write = || {
                    if i == 0 {
                        let mut out = io::stdout().lock();
                        out.write_all(&tagged).and_then(|()| out.flush())
                    } else {
                        io::stderr().lock().write_all(&tagged)
                    }
                };
                match bar {
                    Some(bar) => bar.suspend(write),
                    None => write(),
                }
            };
            copy_lines_from(file, printed, write)?;
        }
        Ok(())
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
        // The next job's lines so far need not wait for the next tick.
        self.poll_live()
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
            seq,
            tag,
            output: Spooled {
                mut stdout,
                mut stderr,
            },
            ticket,
            row,
        } = job;
        // What -k --line-buffer printed while the job ran is not printed
        // again.
        if let Some(live) = self.live.as_mut().filter(|l| l.seq == seq) {
            for (file, at) in [
                (&mut stdout, live.printed[0]),
                (&mut stderr, live.printed[1]),
            ] {
                if let Some(f) = file {
                    f.seek(SeekFrom::Start(at))?;
                }
            }
            live.seq = 0;
        }
        let destination = &mut self.destination;
        let write = || -> io::Result<()> {
            match destination {
                Destination::Nowhere => {}
                Destination::Terminal => {
                    if let Some(file) = stdout {
                        let mut out = io::stdout().lock();
                        copy(file, &mut out, tag.as_deref())?;
                        out.flush()?;
                    }
                    if let Some(file) = stderr {
                        let mut err = io::stderr().lock();
                        copy(file, &mut err, tag.as_deref())?;
                    }
                }
                Destination::Table(table) => {
                    let read = |f: Option<File>| -> io::Result<Vec<u8>> {
                        let mut bytes = Vec::new();
                        if let Some(mut f) = f {
                            f.read_to_end(&mut bytes)?;
                        }
                        Ok(match tag.as_deref() {
                            Some(tag) => tag_lines_by_line(&bytes, tag.as_bytes()),
                            None => bytes,
                        })
                    };
                    let (out, err) = (read(stdout)?, read(stderr)?);
                    if let Some(row) = row {
                        table.write(&row, &out, &err)?;
                    }
                }
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

/// Reads `file` from `printed` on and hands each stretch of complete lines
/// to `write`, advancing `printed` past them; a last partial line is left
/// for later.
fn copy_lines_from(
    file: &File,
    printed: &mut u64,
    mut write: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut chunk = vec![0; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut at = *printed;
    loop {
        let n = match file.read_at(&mut chunk, at) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        at += n as u64;
        let got = &chunk[..n];
        match got.iter().rposition(|&b| b == b'\n') {
            Some(end) => {
                pending.extend_from_slice(&got[..=end]);
                write(&pending)?;
                *printed += pending.len() as u64;
                pending.clear();
                pending.extend_from_slice(&got[end + 1..]);
            }
            None => pending.extend_from_slice(got),
        }
    }
}

/// Copies a spooled output file, tagging lines as GNU parallel does.
fn copy(mut file: File, out: &mut impl Write, tag: Option<&str>) -> io::Result<()> {
    let Some(tag) = tag else {
        io::copy(&mut file, out)?;
        return Ok(());
    };
    let mut buf = vec![0; 32 * 1024];
    let mut pretag = true;
    let mut tagged = Vec::with_capacity(buf.len() + tag.len());
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        tagged.clear();
        tag_lines(&buf[..n], Some(tag.as_bytes()), &mut pretag, &mut tagged);
        out.write_all(&tagged)?;
    }
}

/// GNU parallel's tagging of printed output: the tag before the first
/// byte, and after every `\n` or `\r` that more output follows (`pretag`
/// carries "the last chunk ended a line" across chunks).
pub(crate) fn tag_lines(chunk: &[u8], tag: Option<&[u8]>, pretag: &mut bool, out: &mut Vec<u8>) {
    let Some(tag) = tag else {
        out.extend_from_slice(chunk);
        return;
    };
    if chunk.is_empty() {
        return;
    }
    if *pretag {
        out.extend_from_slice(tag);
    }
    for (i, &b) in chunk.iter().enumerate() {
        out.push(b);
        if (b == b'\n' || b == b'\r') && i + 1 < chunk.len() {
            out.extend_from_slice(tag);
        }
    }
    *pretag = matches!(chunk.last(), Some(b'\n' | b'\r'));
}

/// GNU parallel's tagging for results tables: each line (up to `\n`)
/// starts with the tag, and the tag follows every `\r` in it.
fn tag_lines_by_line(bytes: &[u8], tag: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(tag);
        for &b in line {
            out.push(b);
            if b == b'\r' {
                out.extend_from_slice(tag);
            }
        }
    }
    out
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
        tag_lines(
            &line,
            tag.as_deref().map(str::as_bytes),
            &mut true,
            &mut out,
        );
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
