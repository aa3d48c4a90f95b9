//! Jobs on other machines, through Redis (`--redis`): the coordinating
//! `fanout` renders every command line as a local run does and sends it,
//! signed with a shared secret, to `fanout worker` processes
//! ([`worker`]), which run it and send back its output and exit status
//! ([`client`]). The distributed mode of the `fanout-redis` library carries
//! them: leases, redelivery of a dead worker's jobs, each job's outcome
//! recorded once.
//!
//! Security: a worker runs only jobs signed with its secret (HMAC-SHA256),
//! so write access to the Redis server alone runs nothing; whoever holds
//! the secret can run any command as the worker's user, as an ssh login
//! could with GNU parallel's `-S`.

pub(crate) mod client;
pub(crate) mod worker;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use fanout_redis::{Handler, RedisBroker, Secret};
use serde::{Deserialize, Serialize};

/// The queue of command jobs. The version changes with [`RemoteJob`] and
/// [`RemoteEnd`]: a worker of another version serves another queue, and
/// the coordinator says that no worker serves its jobs.
pub(crate) const JOBS: Handler<RemoteJob, RemoteEnd, String> = Handler::new("fanout-command-v1");

/// Output channel of a job's stdout.
pub(crate) const STDOUT: u8 = 1;
/// Output channel of a job's stderr.
pub(crate) const STDERR: u8 = 2;
/// Output travels in chunks of at most this many bytes (the library's
/// limit).
pub(crate) const CHUNK: usize = 1 << 20;

/// A job as a worker gets it: the command line the coordinator rendered,
/// and the settings that apply to it there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RemoteJob {
    /// `{#}`, the job's `$PARALLEL_SEQ`.
    pub(crate) seq: u64,
    /// `{%}`, the job's `$PARALLEL_JOBSLOT`.
    pub(crate) slot: usize,
    /// The shell command line.
    pub(crate) command: String,
    /// The argv, when the command needs no shell.
    pub(crate) argv: Option<Vec<String>>,
    /// `--timeout`, per attempt.
    pub(crate) timeout_ms: Option<u64>,
    /// `--retries`: attempts in all, on the same worker.
    pub(crate) attempts: u32,
    /// The variable holding `{%}` minus one (`--process-slot-var`).
    pub(crate) slot_var: String,
}

/// How a job ended on its worker (its output came before, in chunks).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RemoteEnd {
    /// Start of its last attempt, seconds since the Unix epoch (the
    /// worker's clock).
    pub(crate) start: f64,
    /// Run time of its last attempt, seconds.
    pub(crate) runtime: f64,
    /// Exit status; -1 when killed (timeout, cancelled run).
    pub(crate) exitval: i32,
    /// The signal that ended it, or 0.
    pub(crate) signal: i32,
    /// Whether `--timeout` killed it.
    pub(crate) timed_out: bool,
    /// Whether the worker killed it because the run was cancelled.
    pub(crate) aborted: bool,
    /// Bytes of stdout.
    pub(crate) received: u64,
}

/// Reads the shared secret from `path`: at least 16 bytes, and readable by
/// its owner only (like an ssh key), since it is the key to the workers.
pub(crate) fn read_secret(path: &Path) -> anyhow::Result<Secret> {
    let shown = path.display();
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read the secret file {shown}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "the secret file {shown} can be read by other users; make it private: chmod 600 {shown}"
        );
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the secret file {shown}"))?;
    Secret::new(&bytes).map_err(|_| {
        anyhow::anyhow!(
            "the secret in {shown} is {} bytes; give at least 16 (head -c 32 /dev/urandom > {shown})",
            bytes.len()
        )
    })
}

/// Connects to the Redis server at `url`; the error names it without its
/// password.
pub(crate) async fn connect(url: &str) -> anyhow::Result<RedisBroker> {
    RedisBroker::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}
