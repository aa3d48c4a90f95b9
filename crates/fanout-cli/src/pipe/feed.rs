//! Handing blocks to jobs: the reader thread, the one-block channel, and
//! what a job's standard input is fed from.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use regex::bytes::Regex;

use super::chunker::{self, Cutting, Separators};
use super::group_by::GroupBy;

/// A block for one job: the header (`--header`), then the records.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    /// Written first.
    pub(crate) header: Arc<[u8]>,
    /// The records (an `Arc<Vec>`, not an `Arc<[u8]>`: the block is handed
    /// over as the reader cut it, without a copy).
    pub(crate) data: Arc<Vec<u8>>,
}

/// A part of a file for one job (`--pipepart`): byte ranges, in order.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// The file.
    pub(crate) file: Arc<File>,
    /// `(offset, length)` pairs: the header, then the records.
    pub(crate) ranges: Vec<(u64, u64)>,
}

/// What a job's standard input is fed from.
#[derive(Debug, Clone, Default)]
pub(crate) enum Stdin {
    /// `/dev/null`.
    #[default]
    Null,
    /// One block.
    Block(Block),
    /// Parts of a file.
    Part(Part),
    /// `--round-robin`: the blocks the dispatcher gives this job.
    RoundRobin(Arc<RoundRobinSlot>),
    /// `--tee`: all of standard input, piece by piece.
    Tee(Arc<TeeSlot>),
}

/// A `--tee` job's share of standard input: every piece the reader reads.
/// The job's writer takes the receiver; when the job ends, dropping it tells
/// the reader to skip this job from then on.
#[derive(Debug)]
pub(crate) struct TeeSlot {
    /// Taken by the job's writer.
    pub(crate) rx: Mutex<Option<tokio::sync::mpsc::Receiver<Arc<[u8]>>>>,
}

/// Starts the `--tee` reader: standard input, in pieces of `block` bytes,
/// to each of `jobs` jobs (waiting for the slowest, as `tee` does).
pub(crate) fn start_tee(jobs: usize, block: usize) -> Vec<Arc<TeeSlot>> {
    let mut senders = Vec::with_capacity(jobs);
    let mut slots = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let (tx, rx) = tokio::sync::mpsc::channel::<Arc<[u8]>>(2);
        senders.push(Some(tx));
        slots.push(Arc::new(TeeSlot {
            rx: Mutex::new(Some(rx)),
        }));
    }
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0; block.clamp(4096, 1 << 20)];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let piece: Arc<[u8]> = Arc::from(&buf[..n]);
            for sender in &mut senders {
                if let Some(tx) = sender {
                    if tx.blocking_send(piece.clone()).is_err() {
                        *sender = None;
                    }
                }
            }
            if senders.iter().all(Option::is_none) {
                break;
            }
        }
    });
    slots
}

/// A `--round-robin` job's mailbox: the dispatcher puts a block in when the
/// job has written its previous one.
#[derive(Debug)]
pub(crate) struct RoundRobinSlot {
    rx: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Block>>,
    tx: Mutex<Option<tokio::sync::mpsc::Sender<Block>>>,
    /// Whether the job got any block (GNU parallel prints and journals
    /// only those that did).
    pub(crate) got_block: AtomicBool,
    /// Rung when the job has written a block and can take another.
    idle: Arc<tokio::sync::Notify>,
}

impl RoundRobinSlot {
    /// The next block for this job; `None` at the end of the input.
    pub(crate) async fn next(&self) -> Option<Block> {
        let block = self.rx.lock().await.recv().await;
        if block.is_some() {
            self.got_block.store(true, Ordering::SeqCst);
        }
        block
    }

    /// The job wrote its block.
    pub(crate) fn done_one(&self) {
        self.idle.notify_one();
    }
}

/// Blocks from the reader thread, one at a time, in order.
#[derive(Debug)]
pub(crate) struct Feed {
    rx: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Block>>,
    /// The seq of the last job that took its block.
    turn: tokio::sync::watch::Sender<u64>,
    /// Set when a job found no block: the input is used up.
    ended: AtomicBool,
    /// Set when the run stops: waiting jobs give up.
    stop: tokio::sync::watch::Sender<bool>,
    /// The reader's error, if reading failed.
    pub(crate) error: Mutex<Option<String>>,
    /// `--round-robin`: the jobs, by seq, once they have started.
    round_robin: Mutex<Vec<(u64, Arc<RoundRobinSlot>)>>,
    /// Rung when a round-robin job registers or finishes a block.
    idle: Arc<tokio::sync::Notify>,
}

/// How the reader prepares blocks.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    /// How records and blocks are cut.
    pub(crate) cutting: Cutting,
    /// `--header REGEX` (already turned into a regular expression).
    pub(crate) header: Option<Regex>,
    /// `--skip-first-line`.
    pub(crate) skip_first_line: bool,
    /// `--remove-rec-sep`.
    pub(crate) remove_rec_sep: bool,
    /// `--group-by`: standard input goes through its filter first.
    pub(crate) group_by: Option<Box<GroupBy>>,
}

impl Stdin {
    /// Whether a job that ends before reading all of this counts as killed
    /// by SIGPIPE, as GNU parallel's writer for `--pipe` and `--fifo` dies
    /// then (with `--pipepart` and `--round-robin` it does not).
    pub(crate) fn dies_unread(&self) -> bool {
        matches!(self, Stdin::Block(_))
    }
}

impl Feed {
    /// Starts the reader thread on standard input (through the
    /// `--group-by` filter, started here, if there is one).
    ///
    /// # Errors
    /// The `--group-by` filter cannot start.
    pub(crate) fn start(reading: Reading) -> anyhow::Result<Arc<Feed>> {
        let filter = reading
            .group_by
            .as_deref()
            .map(GroupBy::start)
            .transpose()?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Block>(1);
        let feed = Arc::new(Feed {
            rx: tokio::sync::Mutex::new(rx),
            turn: tokio::sync::watch::Sender::new(0),
            ended: AtomicBool::new(false),
            stop: tokio::sync::watch::Sender::new(false),
            error: Mutex::new(None),
            round_robin: Mutex::new(Vec::new()),
            idle: Arc::new(tokio::sync::Notify::new()),
        });
        let reader_feed = feed.clone();
        std::thread::spawn(move || {
            // The run stopped taking blocks: the filter's end is no error.
            let mut stopped = false;
            let mut send = |block| {
                let sent = tx.blocking_send(block).is_ok();
                stopped |= !sent;
                sent
            };
            let result = match filter {
                None => read_blocks(&reading, &mut std::io::stdin().lock(), None, &mut send)
                    .map_err(|e| format!("cannot read standard input: {e}")),
                Some(mut filter) => {
                    let header = filter.header.take();
                    let read = read_blocks(&reading, &mut filter, header, &mut send)
                        .map_err(|e| format!("cannot read --group-by's perl filter: {e}"));
                    let finished = filter.finish(stopped).map_err(|e| format!("{e:#}"));
                    read.and(finished)
                }
            };
            // Set before `tx` drops, so a job that finds no block sees it.
            if let Err(e) = result {
                *reader_feed.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
            drop(tx);
        });
        Ok(feed)
    }

    /// Job `seq`'s block: waits until job `seq - 1` has taken its own, then
    /// for the next block. `None` when the input is used up or the run
    /// stops.
    pub(crate) async fn take(&self, seq: u64) -> Option<Block> {
        let mut stop = self.stop.subscribe();
        let mut turn = self.turn.subscribe();
        let block = tokio::select! {
            block = async {
                let _ = turn.wait_for(|&t| t + 1 >= seq).await;
                self.rx.lock().await.recv().await
            } => block,
            _ = stop.wait_for(|&s| s) => None,
        };
        self.turn.send_modify(|t| *t = (*t).max(seq));
        if block.is_none() {
            self.ended.store(true, Ordering::SeqCst);
        }
        block
    }

    /// A `--round-robin` job's mailbox.
    pub(crate) fn register(&self, seq: u64) -> Arc<RoundRobinSlot> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let slot = Arc::new(RoundRobinSlot {
            rx: tokio::sync::Mutex::new(rx),
            tx: Mutex::new(Some(tx)),
            got_block: AtomicBool::new(false),
            idle: self.idle.clone(),
        });
        self.round_robin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((seq, slot.clone()));
        self.idle.notify_one();
        slot
    }

    /// `--round-robin`: hands the blocks to the `jobs` jobs as GNU parallel
    /// does: the queue of jobs (by seq) is rotated once per block, and the
    /// block goes to the first job that has written its previous one. At
    /// the end of the input every job's mailbox is closed.
    pub(crate) async fn dispatch(self: Arc<Self>, jobs: usize) {
        let mut stop = self.stop.subscribe();
        let mut queue: std::collections::VecDeque<(u64, Arc<RoundRobinSlot>)> =
            std::collections::VecDeque::new();
        loop {
            let block = tokio::select! {
                block = async { self.rx.lock().await.recv().await } => block,
                _ = stop.wait_for(|&s| s) => None,
            };
            let Some(block) = block else { break };
            if queue.is_empty() {
                // The first block: wait until every job has started.
                loop {
                    let notified = self.idle.notified();
                    let registered = self
                        .round_robin
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .len();
                    if registered >= jobs || *stop.borrow() {
                        break;
                    }
                    notified.await;
                }
                let mut all = self
                    .round_robin
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                all.sort_by_key(|(seq, _)| *seq);
                queue.extend(all);
            } else {
                queue.rotate_left(1);
            }
            let mut block = Some(block);
            while let Some(b) = block.take() {
                let notified = self.idle.notified();
                let mut pending = Some(b);
                for (_, slot) in &queue {
                    let tx = slot.tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let Some(tx) = tx else { continue };
                    match tx.try_send(pending.take().expect("a block")) {
                        Ok(()) => break,
                        Err(tokio::sync::mpsc::error::TrySendError::Full(b))
                        | Err(tokio::sync::mpsc::error::TrySendError::Closed(b)) => {
                            pending = Some(b);
                        }
                    }
                }
                if let Some(b) = pending {
                    if *stop.borrow() || queue.is_empty() {
                        break;
                    }
                    // Every job is still writing: wait for one to finish.
                    notified.await;
                    block = Some(b);
                }
            }
        }
        for (_, slot) in self
            .round_robin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            slot.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    /// Whether the input is used up (no more jobs need to be made).
    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// The run stops: jobs waiting for a block give up.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// Skips the first line and takes the header, then cuts the rest.
///
/// # Errors
/// Reading fails.
pub(crate) fn read_blocks(
    reading: &Reading,
    input: &mut dyn Read,
    preset_header: Option<Vec<u8>>,
    emit: &mut dyn FnMut(Block) -> bool,
) -> std::io::Result<()> {
    if reading.skip_first_line {
        let mut byte = [0u8];
        while input.read(&mut byte)? == 1 && byte[0] != b'\n' {}
    }
    let mut buf = Vec::new();
    let header: Arc<[u8]> = match (preset_header, &reading.header) {
        (Some(h), _) => h.into(),
        (None, Some(re)) => find_header(re, input, &mut buf, reading.cutting.block)?.into(),
        (None, None) => Arc::from(&b""[..]),
    };
    let separators = reading.cutting.separators.clone();
    let remove = reading.remove_rec_sep;
    chunker::cut(&reading.cutting, input, buf, &mut |mut data| {
        if remove {
            remove_rec_sep(&mut data, &separators);
        }
        emit(Block {
            header: header.clone(),
            data: Arc::new(data),
        })
    })
}

/// GNU parallel's `find_header`: read until the header pattern matches at
/// the start, and take what it matched.
fn find_header(
    re: &Regex,
    input: &mut dyn Read,
    buf: &mut Vec<u8>,
    block: usize,
) -> std::io::Result<Vec<u8>> {
    let mut chunk = vec![0; block.clamp(1, 1 << 20)];
    loop {
        let n = input.read(&mut chunk)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(m) = re.find(buf) {
            let header = buf[..m.end()].to_vec();
            buf.drain(..m.end());
            return Ok(header);
        }
    }
}

/// `--remove-rec-sep`: the separators between records, and a `--recstart`
/// at the start and a `--recend` at the end of the block, removed.
fn remove_rec_sep(data: &mut Vec<u8>, separators: &Separators) {
    match separators {
        Separators::Fixed { end, start } => {
            let both = [end.as_slice(), start.as_slice()].concat();
            if !both.is_empty() {
                let mut out = Vec::with_capacity(data.len());
                let mut at = 0;
                while let Some(i) = chunker::find(data, &both, at) {
                    out.extend_from_slice(&data[at..i]);
                    at = i + both.len();
                }
                out.extend_from_slice(&data[at..]);
                *data = out;
            }
            if !start.is_empty() && data.starts_with(start) {
                data.drain(..start.len());
            }
            if !end.is_empty() {
                if data.ends_with(end) {
                    data.truncate(data.len() - end.len());
                } else if data.ends_with(b"\n") && data[..data.len() - 1].ends_with(end) {
                    // Perl's `$` also matches before a final newline.
                    let keep = data.len() - 1 - end.len();
                    data.drain(keep..data.len() - 1);
                }
            }
        }
        Separators::Regexp {
            end_text,
            start_text,
            ..
        } => {
            let both = Regex::new(&format!("(?m)(?:{end_text})(?:{start_text})")).ok();
            let start = Regex::new(&format!("\\A(?:{start_text})")).ok();
            let end = Regex::new(&format!("(?:{end_text})(?:\\n?\\z)")).ok();
            if let Some(both) = both {
                *data = both.replace_all(data, &b""[..]).into_owned();
            }
            if let Some(start) = start {
                *data = start.replace(data, &b""[..]).into_owned();
            }
            if let Some(end) = end {
                if let Some(m) = end.find(data) {
                    let tail_newline = data[m.start()..m.end()].ends_with(b"\n");
                    let cut = m.start();
                    data.truncate(cut);
                    if tail_newline {
                        data.push(b'\n');
                    }
                }
            }
        }
    }
}

/// GNU parallel's `find_split_positions` for `--pipepart`: the part
/// boundaries, starting after the skipped first line and header, then the
/// first record boundary at or after each multiple of the block size, then
/// the file's end.
///
/// # Errors
/// Reading the file fails.
pub(crate) fn part_positions(
    file: &File,
    size: u64,
    block: u64,
    skip: u64,
    separators: &Separators,
) -> std::io::Result<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    let block = block.max(1);
    let mut positions = vec![skip];
    let fixed_empty = matches!(separators, Separators::Fixed { end, start } if end.is_empty() && start.is_empty());
    let mut pos = block + skip;
    while pos < size {
        if fixed_empty {
            positions.push(pos);
        } else {
            let mut buf = Vec::new();
            let mut chunk = vec![0; 131_072];
            loop {
                let n = file.read_at(&mut chunk, pos + buf.len() as u64)?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let found = match separators {
                    Separators::Fixed { end, start } => {
                        let both = [end.as_slice(), start.as_slice()].concat();
                        chunker::find(&buf, &both, 0).map(|i| i + end.len())
                    }
                    Separators::Regexp { boundary, .. } => (0..=buf.len())
                        .find_map(|k| boundary.captures(&buf[k..]).map(|c| k + c[1].len())),
                };
                if let Some(at) = found {
                    pos += at as u64;
                    positions.push(pos);
                    break;
                }
            }
        }
        pos += block;
    }
    if positions.last() != Some(&size) {
        positions.push(size);
    }
    Ok(positions)
}

/// Whether `file` can be split by seeking (a regular file).
pub(crate) fn is_seekable(file: &File) -> bool {
    file.metadata().is_ok_and(|m| m.is_file()) && file.as_raw_fd() >= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(end: &str, start: &str) -> Separators {
        Separators::Fixed {
            end: end.as_bytes().to_vec(),
            start: start.as_bytes().to_vec(),
        }
    }

    #[test]
    fn remove_rec_sep_like_gnu() {
        let mut d = b"/foo, bar/".to_vec();
        remove_rec_sep(&mut d, &fixed("", "/"));
        assert_eq!(d, b"foo, bar");
        let mut d = b"/foo, ".to_vec();
        remove_rec_sep(&mut d, &fixed(", ", ""));
        assert_eq!(d, b"/foo");
    }

    #[test]
    fn headers_are_taken_once_and_prefix_every_block() {
        let reading = Reading {
            cutting: Cutting {
                block: 4,
                separators: fixed("\n", ""),
                records: Some(1),
                lines: None,
                skip_blank: false,
            },
            header: Some(Regex::new("\\A(?:.*\\n)").unwrap()),
            skip_first_line: false,
            remove_rec_sep: false,
            group_by: None,
        };
        let mut blocks = Vec::new();
        read_blocks(&reading, &mut &b"h\n1\n2\n"[..], None, &mut |b| {
            blocks.push((b.header.to_vec(), b.data.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(
            blocks,
            vec![
                (b"h\n".to_vec(), b"1\n".to_vec()),
                (b"h\n".to_vec(), b"2\n".to_vec())
            ]
        );
    }
}
