//! Starting jobs for the engine: handing out `{%}` slots, spacing starts
//! (`--delay`), rendering each command (and its tag, results name and
//! filters) and, with `-k`, places in the bounded backlog of unprinted
//! output.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::batch::{JobArgs, Made};
use crate::flags::HiArgs;
use crate::job::{self, Finished, JobEnv, JobSpec};
use crate::output::BacklogTicket;
use crate::pipe::{Feed, Part, Stdin, TeeSlot};
use crate::remote::client::Remote;
use crate::spawn;
use crate::template::{Evaluator, LengthModel, Template};

/// What the engine gets back for a job.
#[derive(Debug)]
pub(crate) enum JobEnd {
    /// The job ran (or was skipped, or printed by `--dry-run`).
    Ran(Box<Ran>),
    /// The run stopped before the job started.
    NotStarted,
    /// The job could not be made (a command line too long, a failing Perl
    /// expression): the run stops with this message.
    Failed(String),
}

/// A job the engine ran: how it ended, and with `-k` its place in the
/// backlog (given back once its output is printed).
#[derive(Debug)]
pub(crate) struct Ran {
    /// How the job ended.
    pub(crate) job: Finished,
    /// Its place in the `-k` backlog.
    pub(crate) ticket: Option<BacklogTicket>,
}

/// The templates a job is rendered with.
#[derive(Debug)]
struct Templates {
    command: Template,
    tag: Option<Template>,
    results: Option<Template>,
    filters: Vec<Template>,
    /// Length check for jobs made by count (those made by length were
    /// checked when made).
    length: Option<(LengthModel, usize)>,
}

/// Starts jobs: called by the engine, in input order, when a slot is free.
pub(crate) struct Starter {
    templates: Templates,
    eval: Arc<Mutex<Evaluator>>,
    env: Arc<JobEnv>,
    /// `{%}` numbers given back, oldest first (GNU parallel reuses them in
    /// the order they were freed), and the highest handed out so far.
    free_slots: Mutex<(VecDeque<usize>, usize)>,
    /// Seqs of jobs handed to the engine, in order, not yet seen by the
    /// printer (their place in `-k` order).
    started: Mutex<VecDeque<u64>>,
    /// With -k, waiting output keeps its temp files open (one or two per
    /// job); past `backlog_limit` unprinted jobs a job waits for the
    /// earliest to be printed before it starts, so fanout never runs out of
    /// file descriptors.
    backlog: Option<Arc<tokio::sync::watch::Sender<u64>>>,
    backlog_limit: u64,
    /// Jobs handed to the engine so far.
    issued: AtomicU64,
    /// Set when the run stops: a job still waiting for a backlog place does
    /// not start.
    no_new_starts: AtomicBool,
    /// `--delay`, and when the next job may start.
    delay: Option<(Duration, Mutex<tokio::time::Instant>)>,
    /// `--pipe`, `--pipepart`: where jobs' standard input comes from.
    pipe: Option<PipeSource>,
    /// `--memfree` and `--load`: what must hold before a job starts.
    gate: Gate,
    /// `--redis`: jobs run on workers.
    remote: Option<Arc<Remote>>,
}

/// `--memfree` bytes free and `--load` below a limit, checked before each
/// start; while they do not hold, the start waits (checking again after
/// 10 ms, doubling up to 1 s, as GNU parallel backs off).
#[derive(Debug, Clone, Copy, Default)]
struct Gate {
    memfree: Option<u64>,
    load: Option<f64>,
}

impl Gate {
    fn open(&self) -> bool {
        let mem = self
            .memfree
            .is_none_or(|need| crate::limits::memfree().is_none_or(|free| free >= need));
        let load = self
            .load
            .is_none_or(|max| crate::limits::load().is_some_and(|l| l < max));
        mem && load
    }
}

/// Where `--pipe` jobs get their blocks.
#[derive(Debug)]
pub(crate) enum PipeSource {
    /// Job `N` takes block `N`.
    Blocks(Arc<Feed>),
    /// Every job takes blocks until the input ends.
    RoundRobin(Arc<Feed>),
    /// Job `N` gets part `N` of the files.
    Parts(Vec<Part>),
    /// Job `N` gets all of standard input through slot `N`.
    Tee(Vec<Arc<TeeSlot>>),
}

impl std::fmt::Debug for Starter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Starter").finish_non_exhaustive()
    }
}

impl Starter {
    /// A starter for the jobs `args` describes.
    pub(crate) fn new(
        args: &HiArgs,
        eval: Arc<Mutex<Evaluator>>,
        env: Arc<JobEnv>,
        pipe: Option<PipeSource>,
        remote: Option<Arc<Remote>>,
    ) -> Starter {
        let fd_budget = spawn::raise_open_files_limit().saturating_sub(64 + 2 * args.jobs) / 2;
        let backlog_limit = fd_budget.clamp(args.jobs.max(1), (args.jobs * 16).max(1024));
        let results = match &args.results {
            Some(crate::flags::ResultsSpec::Files { template, .. }) => Some(template.clone()),
            _ => None,
        };
        let by_count = matches!(args.batching, crate::batch::Batching::Count(_));
        Starter {
            templates: Templates {
                command: args.template.clone(),
                tag: args.tag.clone(),
                results,
                filters: args.filters.clone(),
                length: by_count.then(|| (args.length.clone(), args.max_len)),
            },
            eval,
            env,
            free_slots: Mutex::new((VecDeque::new(), 0)),
            started: Mutex::new(VecDeque::new()),
            backlog: args
                .keep_order
                .then(|| Arc::new(tokio::sync::watch::Sender::new(0))),
            backlog_limit: backlog_limit as u64,
            issued: AtomicU64::new(0),
            no_new_starts: AtomicBool::new(false),
            delay: args
                .delay
                .map(|d| (d, Mutex::new(tokio::time::Instant::now()))),
            pipe,
            gate: Gate {
                memfree: args.memfree,
                load: args.load,
            },
            remote,
        }
    }

    /// Jobs started since the last call, in start order.
    pub(crate) fn take_started(&self) -> Vec<u64> {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }

    /// No job starts from now on, not even one already waiting for a
    /// backlog place.
    pub(crate) fn refuse_new(&self) {
        self.no_new_starts.store(true, Ordering::SeqCst);
        if let Some(PipeSource::Blocks(feed) | PipeSource::RoundRobin(feed)) = &self.pipe {
            feed.stop();
        }
    }

    /// The job `seq`: `NotStarted` if the run stopped before it could start.
    pub(crate) fn start(
        self: Arc<Self>,
        seq: u64,
        made: Made,
    ) -> impl Future<Output = Result<JobEnd, Infallible>> + Send + 'static {
        // Called by the engine in input order, when it starts the job.
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(seq);
        let place = self.issued.fetch_add(1, Ordering::SeqCst);
        async move {
            let job = match made {
                Ok(job) => job,
                Err(message) => return Ok(JobEnd::Failed(message)),
            };
            let ticket = match &self.backlog {
                Some(released) => {
                    let ticket = BacklogTicket(released.clone());
                    let limit = self.backlog_limit;
                    let _ = released
                        .subscribe()
                        .wait_for(|&released| place < released + limit)
                        .await;
                    Some(ticket)
                }
                None => None,
            };
            if let Some((delay, next)) = &self.delay {
                let at = {
                    let mut next = next.lock().unwrap_or_else(|p| p.into_inner());
                    let at = (*next).max(tokio::time::Instant::now());
                    *next = at + *delay;
                    at
                };
                tokio::time::sleep_until(at).await;
            }
            let stdin = match &self.pipe {
                None => Stdin::Null,
                Some(PipeSource::Blocks(feed)) => match feed.take(seq).await {
                    Some(block) => Stdin::Block(block),
                    // The input ended before this job's turn: it never runs.
                    None => return Ok(JobEnd::NotStarted),
                },
                Some(PipeSource::RoundRobin(feed)) => Stdin::RoundRobin(feed.register(seq)),
                Some(PipeSource::Parts(parts)) => match parts.get((seq - 1) as usize) {
                    Some(part) => Stdin::Part(part.clone()),
                    None => return Ok(JobEnd::NotStarted),
                },
                Some(PipeSource::Tee(slots)) => match slots.get((seq - 1) as usize) {
                    Some(slot) => Stdin::Tee(slot.clone()),
                    None => return Ok(JobEnd::NotStarted),
                },
            };
            let mut wait = Duration::from_millis(10);
            while !self.gate.open() && !self.no_new_starts.load(Ordering::SeqCst) {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            if self.no_new_starts.load(Ordering::SeqCst) {
                return Ok(JobEnd::NotStarted);
            }
            let slot = self.take_slot();
            let spec = match self.spec(job, slot, stdin) {
                Ok(spec) => spec,
                Err(e) => {
                    self.give_back(slot);
                    return Ok(JobEnd::Failed(format!("{e:#}")));
                }
            };
            let job = match &self.remote {
                // A job `skip()` or `--filter` leaves out runs nowhere.
                Some(remote) if !spec.skip => match remote.run(spec, &self.env).await {
                    Ok(job) => job,
                    Err(message) => {
                        self.give_back(slot);
                        return Ok(JobEnd::Failed(message));
                    }
                },
                _ => job::run(spec, self.env.clone()).await,
            };
            // The slot is given back when the run loop takes the job, as
            // GNU parallel frees it when it reaps the job.
            Ok(JobEnd::Ran(Box::new(Ran { job, ticket })))
        }
    }

    fn take_slot(&self) -> usize {
        let mut slots = self.free_slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.0.pop_front() {
            Some(slot) => slot,
            None => {
                slots.1 += 1;
                slots.1
            }
        }
    }

    /// Gives a job's `{%}` back for a later job.
    pub(crate) fn give_back(&self, slot: usize) {
        self.free_slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .push_back(slot);
    }

    /// Renders the job's command, tag, results name and filters.
    fn spec(&self, job: JobArgs, slot: usize, stdin: Stdin) -> anyhow::Result<JobSpec> {
        let JobArgs {
            seq,
            args,
            widths,
            values,
        } = job;
        let t = &self.templates;
        let n = args.len();
        let mut needs = Vec::new();
        t.command.needs(n, &mut needs);
        for other in t.tag.iter().chain(t.results.iter()).chain(&t.filters) {
            other.needs(n, &mut needs);
        }
        if let Some((model, _)) = &t.length {
            let mut first = 0;
            for w in &widths {
                model.needs(first, *w, &mut needs);
                first += w;
            }
        }
        let mut eval = self.eval.lock().unwrap_or_else(|p| p.into_inner());
        let mut values = values.unwrap_or_default();
        eval.evaluate_into(&mut values, &args, seq, slot, &needs)?;
        let rendered = t.command.render(n, &values);
        if let Some((model, max_len)) = &t.length {
            let len = model.estimate(&widths, &values);
            if len >= *max_len {
                let shown: String = args
                    .iter()
                    .map(|a| a.as_deref().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(" ");
                let shown = if shown.chars().count() > 50 {
                    format!("{}...", shown.chars().take(50).collect::<String>())
                } else {
                    shown
                };
                anyhow::bail!("command line too long ({len} >= {max_len}) at input {seq}: {shown}");
            }
        }
        let tag = t.tag.as_ref().map(|tag| {
            let mut text = tag.render_text(n, &values);
            text.push('\t');
            Arc::<str>::from(text)
        });
        let results = t.results.as_ref().map(|r| r.render_text(n, &values));
        let mut skip = values.skip;
        if !t.filters.is_empty() {
            let codes: Vec<String> = t
                .filters
                .iter()
                .map(|f| f.render_text(n, &values))
                .collect();
            skip |= !eval.filter(&codes)?;
        }
        drop(eval);
        Ok(JobSpec {
            seq,
            slot,
            args,
            widths,
            command: rendered.line,
            argv: rendered.argv,
            tag,
            results,
            skip,
            stdin,
        })
    }
}
