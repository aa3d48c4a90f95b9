//! Starting jobs for the engine: rendering each command, handing out `{%}`
//! slots and, with `-k`, places in the bounded backlog of unprinted output.

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::flags::HiArgs;
use crate::input::Value;
use crate::job::{self, Finished, JobEnv, JobSpec};
use crate::output::BacklogTicket;
use crate::spawn;
use crate::template::Template;

/// A job the engine ran: how it ended, and with `-k` its place in the
/// backlog (given back once its output is printed).
#[derive(Debug)]
pub(crate) struct Ran {
    /// How the job ended.
    pub(crate) job: Finished,
    /// Its place in the `-k` backlog.
    pub(crate) ticket: Option<BacklogTicket>,
}

/// Starts jobs: called by the engine, in input order, when a slot is free.
pub(crate) struct Starter {
    template: Template,
    env: Arc<JobEnv>,
    /// `{%}` numbers not in use, lowest first.
    free_slots: Mutex<BTreeSet<usize>>,
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
}

impl std::fmt::Debug for Starter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Starter").finish_non_exhaustive()
    }
}

impl Starter {
    /// A starter for the jobs `args` describes.
    pub(crate) fn new(args: &HiArgs, env: Arc<JobEnv>) -> Starter {
        let fd_budget = spawn::raise_open_files_limit().saturating_sub(64 + 2 * args.jobs) / 2;
        let backlog_limit = fd_budget.clamp(args.jobs.max(1), (args.jobs * 16).max(1024));
        Starter {
            template: args.template.clone(),
            env,
            free_slots: Mutex::new((1..=args.jobs).collect()),
            started: Mutex::new(VecDeque::new()),
            backlog: args
                .keep_order
                .then(|| Arc::new(tokio::sync::watch::Sender::new(0))),
            backlog_limit: backlog_limit as u64,
            issued: AtomicU64::new(0),
            no_new_starts: AtomicBool::new(false),
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
    }

    /// The job `seq`: `None` if the run stopped before it could start.
    pub(crate) fn start(
        self: Arc<Self>,
        seq: u64,
        inputs: Vec<Value>,
    ) -> impl Future<Output = Result<Option<Ran>, Infallible>> + Send + 'static {
        // Called by the engine in input order, when it starts the job.
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(seq);
        let place = self.issued.fetch_add(1, Ordering::SeqCst);
        async move {
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
            if self.no_new_starts.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let slot = self
                .free_slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_first()
                .unwrap_or(1);
            let spec = self.spec(seq, slot, inputs);
            let job = job::run(spec, self.env.clone()).await;
            self.free_slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(slot);
            Ok(Some(Ran { job, ticket }))
        }
    }

    fn spec(&self, seq: u64, slot: usize, inputs: Vec<Value>) -> JobSpec {
        let values: Vec<&str> = inputs.iter().map(|v| &**v).collect();
        let command = self.template.render_shell(&values, seq, slot);
        let argv =
            (!self.template.needs_shell()).then(|| self.template.render_argv(&values, seq, slot));
        drop(values);
        JobSpec {
            seq,
            slot,
            inputs,
            command,
            argv,
        }
    }
}
