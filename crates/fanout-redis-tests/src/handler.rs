//! The handler every conformance test runs: a job that squares a number,
//! and on request sleeps, fails (always, or on its first attempts),
//! panics, crashes its worker process, or logs each execution.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use fanout_redis::{Broker, Handler, RemoteCtx, Worker};
use serde::{Deserialize, Serialize};

/// One job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The number squared.
    pub value: u64,
    /// Milliseconds the job sleeps first.
    pub sleep_ms: u64,
    /// Fail every attempt with `boom <value>`.
    pub fail: bool,
    /// Fail the attempts up to this one (a transient failure).
    pub fail_until_attempt: u32,
    /// Panic with `kaboom <value>`.
    pub panic: bool,
    /// Abort the worker process (in a worker process only).
    pub abort: bool,
    /// Bytes carried along (to exceed size limits).
    pub pad: Vec<u8>,
    /// When set, the job encodes but does not decode.
    pub undecodable: Undecodable,
}

/// A flag that serializes, but fails to deserialize when set: an input a
/// worker cannot read although its types match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Undecodable(pub bool);

impl Serialize for Undecodable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(self.0)
    }
}

impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if bool::deserialize(d)? {
            return Err(serde::de::Error::custom("this job refuses to be decoded"));
        }
        Ok(Undecodable(false))
    }
}

impl Job {
    /// A job squaring `value`, nothing else.
    pub fn square(value: u64) -> Self {
        Self {
            value,
            ..Self::default()
        }
    }

    /// A job squaring `value` after sleeping `ms`.
    pub fn sleepy(value: u64, ms: u64) -> Self {
        Self {
            value,
            sleep_ms: ms,
            ..Self::default()
        }
    }
}

/// The handler, shared by coordinators and workers.
pub const JOB: Handler<Job, u64, String> = Handler::new("job");

/// A handler of the same name with other types: a worker serving it must
/// refuse `JOB`'s tasks.
pub const JOB_OTHER_TYPES: Handler<String, String, String> = Handler::new("job");

/// A handler no worker serves.
pub const NOBODY: Handler<Job, u64, String> = Handler::new("nobody");

/// Runs one job; logs its start and its end (or that its run's token
/// fired while it slept) to `log`, one line each: `start|end|cancelled run
/// index attempt worker unix-nanos`, so that tests count executions across
/// processes.
pub async fn run_job(ctx: RemoteCtx, job: Job, log: Option<PathBuf>) -> Result<u64, String> {
    let note = |what: &str| {
        if let Some(path) = &log {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let line = format!(
                "{what} {} {} {} {} {nanos}\n",
                ctx.run(),
                ctx.index(),
                ctx.attempt(),
                ctx.worker()
            );
            // One write per line, on an O_APPEND file: lines never mix.
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
    };
    note("start");
    if job.abort {
        std::process::abort();
    }
    if job.sleep_ms > 0 {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(job.sleep_ms)) => {}
            () = ctx.token().cancelled() => {
                note("cancelled");
                return Err("cancelled".to_owned());
            }
        }
    }
    if ctx.attempt() <= job.fail_until_attempt {
        note("end");
        return Err(format!("attempt {} fails", ctx.attempt()));
    }
    if job.fail {
        note("end");
        return Err(format!("boom {}", job.value));
    }
    assert!(!job.panic, "kaboom {}", job.value);
    note("end");
    Ok(job.value * job.value)
}

/// A worker serving [`JOB`] with [`run_job`].
pub fn job_worker<B: Broker>(broker: B, log: Option<PathBuf>) -> Worker<B> {
    Worker::new(broker).serve(&JOB, move |ctx, job| run_job(ctx, job, log.clone()))
}

/// One line of the execution log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    /// `start`, `end` or `cancelled`.
    pub what: String,
    /// The run.
    pub run: String,
    /// The task's index.
    pub index: u64,
    /// The attempt.
    pub attempt: u32,
    /// The worker.
    pub worker: String,
    /// When, in nanoseconds since the Unix epoch (one clock for every
    /// process of the machine).
    pub at_ns: u128,
}

/// The lines of an execution log.
pub fn executions(log: &std::path::Path) -> Vec<Execution> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            (f.len() == 6).then(|| Execution {
                what: f[0].to_owned(),
                run: f[1].to_owned(),
                index: f[2].parse().unwrap_or(u64::MAX),
                attempt: f[3].parse().unwrap_or(0),
                worker: f[4].to_owned(),
                at_ns: f[5].parse().unwrap_or(0),
            })
        })
        .collect()
}
