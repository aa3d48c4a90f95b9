//! A broker in the process's memory: the same semantics as Redis (queues,
//! leases, redelivery, dead letters, records once per attempt,
//! cancellation), for tests and for runs that stay in one process.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;

use super::{
    sealed, Broker, BrokerError, Buried, Completion, Cursor, Delivery, Discard, DEAD_LETTERS_KEPT,
};
use crate::secret::Secret;
use crate::wire;

/// A broker inside the process: every coordinator and worker given a clone
/// of it shares its queues. Leases, redelivery after a lease passes, dead
/// letters, records once per task attempt and cancellation behave as with
/// [`RedisBroker`](crate::RedisBroker); time is tokio's, so tests can pause
/// it. Nothing survives the process.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker").finish_non_exhaustive()
    }
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }
}

struct Inner {
    state: Mutex<State>,
    /// Something was queued, recorded or released.
    changed: Notify,
    cancellations: broadcast::Sender<String>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            changed: Notify::new(),
            cancellations: broadcast::channel(1024).0,
        }
    }
}

#[derive(Default)]
struct State {
    next_entry: u64,
    queues: HashMap<String, Queue>,
    runs: HashMap<String, RunLog>,
    workers: HashMap<String, HashMap<String, Instant>>,
    cancelled: HashSet<String>,
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<(String, Vec<u8>)>,
    pending: BTreeMap<String, Pending>,
    delayed: Vec<(Instant, Vec<u8>)>,
    dead: Vec<Buried>,
}

struct Pending {
    worker: String,
    since: Instant,
    deliveries: u32,
    task: Vec<u8>,
}

#[derive(Default)]
struct RunLog {
    records: Vec<Vec<u8>>,
    done: HashSet<String>,
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn entry_id(&mut self) -> String {
        self.next_entry += 1;
        self.next_entry.to_string()
    }

    fn record(&mut self, run: &str, field: String, record: Vec<u8>) {
        let log = self.runs.entry(run.to_owned()).or_default();
        if log.done.insert(field) {
            log.records.push(record);
        }
    }
}

impl sealed::Sealed for MemoryBroker {}

impl Broker for MemoryBroker {
    type Cancellations = Pin<Box<dyn Stream<Item = String> + Send>>;

    async fn begin(&self, run: &str, _keep: Duration) -> Result<(), BrokerError> {
        self.inner.state().cancelled.remove(run);
        Ok(())
    }

    async fn still_there(&self, _run: &str) -> Result<bool, BrokerError> {
        // Nothing is ever lost from the process's memory.
        Ok(true)
    }

    async fn enqueue(&self, handler: &str, tasks: Vec<Vec<u8>>) -> Result<(), BrokerError> {
        {
            let mut state = self.inner.state();
            for task in tasks {
                let id = state.entry_id();
                state
                    .queues
                    .entry(handler.to_owned())
                    .or_default()
                    .ready
                    .push_back((id, task));
            }
        }
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn schedule(
        &self,
        handler: &str,
        delay: Duration,
        task: Vec<u8>,
    ) -> Result<(), BrokerError> {
        self.inner
            .state()
            .queues
            .entry(handler.to_owned())
            .or_default()
            .delayed
            .push((Instant::now() + delay, task));
        Ok(())
    }

    async fn results(
        &self,
        run: &str,
        after: &Cursor,
        wait: Duration,
    ) -> Result<(Cursor, Vec<Vec<u8>>), BrokerError> {
        let from: usize = if after.0 == Cursor::start().0 {
            0
        } else {
            after.0.parse().unwrap_or(0)
        };
        let until = Instant::now() + wait;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let state = self.inner.state();
                let records = state.runs.get(run).map_or(&[][..], |l| &l.records[..]);
                if records.len() > from {
                    let new = records[from..].to_vec();
                    return Ok((Cursor(records.len().to_string()), new));
                }
            }
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return Ok((after.clone(), Vec::new()));
            }
        }
    }

    async fn cancel(&self, run: &str) -> Result<(), BrokerError> {
        self.inner.state().cancelled.insert(run.to_owned());
        let _ = self.inner.cancellations.send(run.to_owned());
        Ok(())
    }

    async fn end(&self, _run: &str, _keep: Duration) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn live_workers(&self, handler: &str, within: Duration) -> Result<usize, BrokerError> {
        let now = Instant::now();
        Ok(self.inner.state().workers.get(handler).map_or(0, |w| {
            w.values()
                .filter(|&&seen| now.saturating_duration_since(seen) <= within)
                .count()
        }))
    }

    async fn claim(
        &self,
        worker: &str,
        handlers: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let until = Instant::now() + wait;
        loop {
            let changed = self.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.inner.state();
                let now = Instant::now();
                let mut out = Vec::new();
                for handler in handlers {
                    let Some(queue) = state.queues.get_mut(handler) else {
                        continue;
                    };
                    while out.len() < max {
                        let Some((entry, task)) = queue.ready.pop_front() else {
                            break;
                        };
                        queue.pending.insert(
                            entry.clone(),
                            Pending {
                                worker: worker.to_owned(),
                                since: now,
                                deliveries: 1,
                                task: task.clone(),
                            },
                        );
                        out.push(Delivery {
                            handler: handler.clone(),
                            entry,
                            deliveries: 1,
                            task,
                        });
                    }
                }
                if !out.is_empty() {
                    return Ok(out);
                }
            }
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn complete(&self, worker: &str, done: Vec<Completion>) -> Result<(), BrokerError> {
        {
            let mut state = self.inner.state();
            for c in done {
                let owned = state
                    .queues
                    .get(&c.handler)
                    .and_then(|q| q.pending.get(&c.entry))
                    .is_some_and(|p| p.worker == worker);
                if !owned {
                    // The lease passed and another worker took the entry:
                    // this late result is dropped.
                    continue;
                }
                state.record(&c.run, c.field, c.record);
                if let Some(q) = state.queues.get_mut(&c.handler) {
                    q.pending.remove(&c.entry);
                }
            }
        }
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn discard(&self, discards: Vec<Discard>) -> Result<(), BrokerError> {
        let mut state = self.inner.state();
        for d in discards {
            if let Some(q) = state.queues.get_mut(&d.handler) {
                q.pending.remove(&d.entry);
            }
        }
        Ok(())
    }

    async fn renew(
        &self,
        worker: &str,
        handlers: &[String],
        held: &[(String, String)],
    ) -> Result<(), BrokerError> {
        let mut state = self.inner.state();
        let now = Instant::now();
        for handler in handlers {
            state
                .workers
                .entry(handler.clone())
                .or_default()
                .insert(worker.to_owned(), now);
        }
        for (handler, entry) in held {
            if let Some(p) = state
                .queues
                .get_mut(handler)
                .and_then(|q| q.pending.get_mut(entry))
            {
                if p.worker == worker {
                    p.since = now;
                }
            }
        }
        Ok(())
    }

    async fn reclaim(
        &self,
        worker: &str,
        handlers: &[String],
        lease: Duration,
        max_deliveries: u32,
        secret: Option<&Secret>,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let mut adopted = Vec::new();
        {
            let mut state = self.inner.state();
            let now = Instant::now();
            let mut dead_records = Vec::new();
            let mut due_retries = Vec::new();
            for handler in handlers {
                let Some(queue) = state.queues.get_mut(handler) else {
                    continue;
                };
                let (due, later): (Vec<_>, Vec<_>) =
                    queue.delayed.drain(..).partition(|(at, _)| *at <= now);
                queue.delayed = later;
                due_retries.extend(due.into_iter().map(|(_, task)| (handler.clone(), task)));
                let expired: Vec<String> = queue
                    .pending
                    .iter()
                    .filter(|(_, p)| now.saturating_duration_since(p.since) >= lease)
                    .map(|(e, _)| e.clone())
                    .collect();
                for entry in expired {
                    let p = queue.pending.get_mut(&entry).expect("listed above");
                    p.deliveries += 1;
                    if p.deliveries > max_deliveries {
                        let p = queue.pending.remove(&entry).expect("listed above");
                        let why = format!(
                            "delivered {} times, and the worker that took it died or \
                             stalled past its lease each time; it is in the dead-letter \
                             list of handler '{handler}'",
                            p.deliveries - 1
                        );
                        dead_records.push((p.task.clone(), why.clone()));
                        queue.dead.push(Buried {
                            task: p.task,
                            why,
                            outcome: None,
                        });
                    } else {
                        p.worker = worker.to_owned();
                        p.since = now;
                        adopted.push(Delivery {
                            handler: handler.clone(),
                            entry,
                            deliveries: p.deliveries,
                            task: p.task.clone(),
                        });
                    }
                }
            }
            for (handler, task) in due_retries {
                let id = state.entry_id();
                state
                    .queues
                    .entry(handler)
                    .or_default()
                    .ready
                    .push_back((id, task));
            }
            for (task, why) in dead_records {
                if let Ok(env) = wire::decode::<wire::Envelope>(&task) {
                    let mut record = wire::Recorded {
                        index: env.index,
                        attempt: env.attempt,
                        worker: worker.to_owned(),
                        outcome: wire::WireOutcome::Undeliverable(why),
                        signature: None,
                    };
                    if let Some(secret) = secret {
                        secret.sign_record(&env.run, &mut record);
                    }
                    if let Ok(bytes) = wire::encode(&record) {
                        state.record(&env.run, env.field(), bytes);
                    }
                }
            }
        }
        self.inner.changed.notify_waiters();
        Ok(adopted)
    }

    async fn cancelled(&self, runs: &[String]) -> Result<Vec<bool>, BrokerError> {
        let state = self.inner.state();
        Ok(runs.iter().map(|r| state.cancelled.contains(r)).collect())
    }

    async fn cancellations(&self) -> Result<Self::Cancellations, BrokerError> {
        let rx = self.inner.cancellations.subscribe();
        Ok(Box::pin(futures_util::stream::unfold(
            rx,
            |mut rx| async move {
                loop {
                    match rx.recv().await {
                        Ok(run) => return Some((run, rx)),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        )))
    }

    async fn bury(
        &self,
        handler: &str,
        task: Vec<u8>,
        why: String,
        outcome: Option<Vec<u8>>,
    ) -> Result<(), BrokerError> {
        let mut state = self.inner.state();
        let dead = &mut state.queues.entry(handler.to_owned()).or_default().dead;
        dead.push(Buried { task, why, outcome });
        if dead.len() > DEAD_LETTERS_KEPT {
            let over = dead.len() - DEAD_LETTERS_KEPT;
            dead.drain(..over);
        }
        Ok(())
    }

    async fn clear_dead_letters(&self, handler: &str) -> Result<(), BrokerError> {
        if let Some(q) = self.inner.state().queues.get_mut(handler) {
            q.dead.clear();
        }
        Ok(())
    }

    async fn dead_letters(&self, handler: &str) -> Result<Vec<Buried>, BrokerError> {
        Ok(self
            .inner
            .state()
            .queues
            .get(handler)
            .map(|q| q.dead.clone())
            .unwrap_or_default())
    }
}
