//! The broker on Redis Streams (Redis 6.2 or later; Valkey too).
//!
//! Keys, with the default prefix `fanout` (see `docs/DISTRIBUTED.md` for how
//! they shard on Redis Cluster):
//!
//! | key | type | what |
//! |---|---|---|
//! | `fanout:q:{H}` | stream, group `workers` | the queue of handler `H` |
//! | `fanout:delayed:{H}` | sorted set | retries of `H`'s tasks, by due time |
//! | `fanout:dead:{H}` | stream | `H`'s dead letters |
//! | `fanout:workers:{H}` | sorted set | workers serving `H`, by last heartbeat |
//! | `fanout:run:{R}:res` | stream | run `R`'s results, one record per task attempt |
//! | `fanout:run:{R}:done` | hash | which attempts of `R` are recorded |
//! | `fanout:run:{R}:cancel` | string | set when `R` is cancelled |
//! | `fanout:run:{R}:live` | string | set while `R` runs: its absence means the server lost its data |
//! | `fanout:cancel` | pub/sub channel | cancelled run ids |
//!
//! Timing (leases, heartbeats, retry due times) uses the server's clock
//! (`TIME` in scripts), so machines whose clocks differ agree.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_core::Stream;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, RedisError, Script, Value};

use super::{
    sealed, Broker, BrokerError, BrokerErrorKind, Buried, Completion, Cursor, Delivery, Discard,
    DEAD_LETTERS_KEPT,
};
use crate::secret::Secret;
use crate::wire;

/// The consumer group of every queue.
const GROUP: &str = "workers";

/// Records task attempts' results once each: for each `(field, record)`
/// pair of ARGV[2..], `HSETNX` on the run's `done` hash; the records whose
/// field was new are appended to the run's results stream together, as
/// one entry (each record framed by its length, see `frame`). Both keys
/// are the run's (one Cluster slot). New keys get the expiry ARGV[1].
const RECORD: &str = r"
local new = {}
for i = 2, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], 1) == 1 then
    new[#new + 1] = ARGV[i + 1]
  end
end
if #new > 0 then
  redis.call('XADD', KEYS[2], '*', 'b', table.concat(new))
  if redis.call('TTL', KEYS[2]) < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
    redis.call('EXPIRE', KEYS[2], ARGV[1])
  end
end
return #new
";

/// A record as the `RECORD` script stores it: its length (4 bytes, little
/// endian), then the record. One results entry holds a batch of them: a
/// coordinator reads a batch of results as one entry, not one per task.
fn frame(record: &[u8]) -> Vec<u8> {
    let len = u32::try_from(record.len()).expect("records are far below 4 GiB");
    let mut out = Vec::with_capacity(4 + record.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(record);
    out
}

/// The records of a results entry written by `RECORD`.
fn unframe(mut batch: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), BrokerError> {
    while !batch.is_empty() {
        let (len, rest) = batch
            .split_first_chunk::<4>()
            .ok_or_else(|| protocol("a results entry"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(protocol("a results entry"));
        }
        out.push(rest[..len].to_vec());
        batch = &rest[len..];
    }
    Ok(())
}

/// Queues an envelope once ARGV[1] milliseconds have passed on the
/// server's clock.
const SCHEDULE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
return 1
";

/// Moves the retries that are due from the delayed set to the queue.
const PROMOTE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, task in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 't', task)
  redis.call('ZREM', KEYS[1], task)
end
return #due
";

/// Announces the worker ARGV[2] in KEYS[2] (server time), and renews its
/// leases on the entries ARGV[3..] of queue KEYS[1], only those it still
/// holds: a lease that passed and went to another worker is not taken
/// back.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now, ARGV[2])
local renewed = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p == 1 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    renewed = renewed + 1
  end
end
return renewed
";

/// How many workers of KEYS[1] announced themselves within ARGV[1] ms.
const LIVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[1]), '+inf')
";

/// Settings of a [`RedisBroker`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The first part of every key. Default `fanout`.
    pub prefix: String,
    /// How long connecting may take. Default 5 s.
    pub connect_timeout: Duration,
    /// How long a (non-blocking) command may take. Default 10 s.
    pub command_timeout: Duration,
    /// How long a lost connection is retried before an operation gives up.
    /// Default 30 s.
    pub reconnect_for: Duration,
    /// A CA certificate (PEM) to trust for `rediss://` URLs instead of the
    /// system's roots.
    pub ca_cert_pem: Option<Vec<u8>>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: "fanout".to_owned(),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(10),
            reconnect_for: Duration::from_secs(30),
            ca_cert_pem: None,
        }
    }
}

/// The broker on Redis Streams: `redis://[user:password@]host:port/db`,
/// `rediss://` for TLS, `redis+unix:///path`.
///
/// Cloning it is cheap and shares its connections. It reconnects by itself
/// when the server comes back (operations retry for
/// [`RedisConfig::reconnect_for`]). Errors name the URL without its
/// password.
#[derive(Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// The URL with its password replaced, for messages.
    shown: String,
    config: RedisConfig,
    /// The connection for ordinary commands, shared; `None` after it broke.
    commands: Mutex<Option<MultiplexedConnection>>,
    /// Connections for blocking reads, one per caller at a time (a
    /// blocking command holds its connection).
    blocking: Mutex<Vec<MultiplexedConnection>>,
    scripts: Scripts,
    /// Queue keys whose consumer group is known to exist.
    groups: Mutex<std::collections::HashSet<String>>,
}

struct Scripts {
    record: Script,
    schedule: Script,
    promote: Script,
    renew: Script,
    live: Script,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("url", &self.inner.shown)
            .finish_non_exhaustive()
    }
}

/// `url` with the password of its user info replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None if userinfo.is_empty() => String::new(),
        // A lone `user@` is Redis's password (the user defaults).
        None => "***".to_owned(),
    };
    format!("{}{}{}", &url[..scheme_end + 3], shown, &rest[at..])
}

impl RedisBroker {
    /// Connects to the Redis at `url` (and checks the credentials).
    ///
    /// # Errors
    /// The URL is not a Redis URL, the server cannot be reached, or it
    /// refuses the credentials; the message names the URL without its
    /// password.
    pub async fn connect(url: &str) -> Result<Self, BrokerError> {
        Self::connect_with(url, RedisConfig::default()).await
    }

    /// [`connect`](RedisBroker::connect) with settings.
    ///
    /// # Errors
    /// As `connect`.
    pub async fn connect_with(url: &str, config: RedisConfig) -> Result<Self, BrokerError> {
        let shown = redact(url);
        if url.starts_with("rediss://") && rustls::crypto::CryptoProvider::get_default().is_none() {
            // rustls needs a process-wide crypto provider; the application
            // may have chosen one, else it is `ring` (losing a race with
            // another installer is fine: one is installed either way).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = match &config.ca_cert_pem {
            Some(ca) => Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            None => Client::open(url),
        }
        .map_err(|e| {
            BrokerError::new(
                BrokerErrorKind::BadUrl,
                format!(
                    "{shown} is not a Redis URL ({}): use redis://host:port, rediss:// for TLS",
                    e.kind_text()
                ),
            )
        })?;
        let broker = Self {
            inner: Arc::new(Inner {
                client,
                shown,
                config,
                commands: Mutex::new(None),
                blocking: Mutex::new(Vec::new()),
                groups: Mutex::new(std::collections::HashSet::new()),
                scripts: Scripts {
                    record: Script::new(RECORD),
                    schedule: Script::new(SCHEDULE),
                    promote: Script::new(PROMOTE),
                    renew: Script::new(RENEW),
                    live: Script::new(LIVE),
                },
            }),
        };
        // Connect now, so that a bad URL, password or server shows here.
        let mut con = broker
            .connection(Some(broker.inner.config.command_timeout))
            .await?;
        redis::cmd("PING")
            .query_async::<Value>(&mut con)
            .await
            .map_err(|e| broker.error(&e, "cannot talk to"))?;
        // A Cluster node would answer MOVED for the keys of other slots,
        // task by task: refuse it here, in one clear error.
        let cluster: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut con)
            .await
            .map_err(|e| broker.error(&e, "cannot talk to"))?;
        if cluster.contains("cluster_enabled:1") {
            return Err(BrokerError::new(
                BrokerErrorKind::BadUrl,
                format!(
                    "{} is a Redis Cluster node, and fanout-redis talks to one Redis server \
                     (a primary with replicas is fine): give it the URL of a Redis without \
                     cluster mode (docs/DISTRIBUTED.md says how the keys would shard)",
                    broker.inner.shown
                ),
            ));
        }
        *broker
            .inner
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(con);
        Ok(broker)
    }

    /// The URL, password hidden.
    pub fn url(&self) -> &str {
        &self.inner.shown
    }

    fn key_q(&self, handler: &str) -> String {
        format!("{}:q:{{{handler}}}", self.inner.config.prefix)
    }

    fn key_delayed(&self, handler: &str) -> String {
        format!("{}:delayed:{{{handler}}}", self.inner.config.prefix)
    }

    fn key_dead(&self, handler: &str) -> String {
        format!("{}:dead:{{{handler}}}", self.inner.config.prefix)
    }

    fn key_workers(&self, handler: &str) -> String {
        format!("{}:workers:{{{handler}}}", self.inner.config.prefix)
    }

    fn key_run(&self, run: &str, what: &str) -> String {
        format!("{}:run:{{{run}}}:{what}", self.inner.config.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:cancel", self.inner.config.prefix)
    }

    /// A broker error for `e`, naming the URL (without its password).
    fn error(&self, e: &RedisError, doing: &str) -> BrokerError {
        let shown = &self.inner.shown;
        let auth = e.kind() == ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
        if auth {
            return BrokerError::new(
                BrokerErrorKind::Auth,
                format!("{shown} refused the credentials: check the user and password in the URL"),
            );
        }
        let kind = if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
            BrokerErrorKind::Unreachable
        } else {
            BrokerErrorKind::Io
        };
        BrokerError::new(kind, format!("{doing} Redis at {shown}: {}", e.kind_text()))
    }

    async fn connection(
        &self,
        response_timeout: Option<Duration>,
    ) -> Result<MultiplexedConnection, BrokerError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.inner.config.connect_timeout))
            .set_response_timeout(response_timeout);
        self.inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.error(&e, "cannot connect to"))
    }

    /// The shared command connection (connecting again if it broke).
    async fn commands(&self) -> Result<MultiplexedConnection, BrokerError> {
        if let Some(con) = self
            .inner
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(con);
        }
        let con = self
            .connection(Some(self.inner.config.command_timeout))
            .await?;
        *self
            .inner
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(con.clone());
        Ok(con)
    }

    /// Runs `op` on the command connection, retrying with a new connection
    /// while the server is unreachable, for up to `reconnect_for`. Every
    /// operation retried this way is safe to repeat: queueing twice runs a
    /// task twice at worst, and results are recorded once.
    async fn with_commands<R, F, Fut>(&self, doing: &str, mut op: F) -> Result<R, BrokerError>
    where
        F: FnMut(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<R, RedisError>>,
    {
        let give_up = tokio::time::Instant::now() + self.inner.config.reconnect_for;
        let mut pause = Duration::from_millis(50);
        loop {
            let attempt = match self.commands().await {
                Ok(con) => op(con).await.map_err(|e| {
                    (
                        self.error(&e, doing),
                        e.is_unrecoverable_error()
                            || e.is_io_error()
                            || e.is_connection_dropped()
                            || e.is_timeout(),
                    )
                }),
                Err(e) => {
                    let retry = e.kind == BrokerErrorKind::Unreachable;
                    Err((e, retry))
                }
            };
            match attempt {
                Ok(r) => return Ok(r),
                Err((e, retry)) => {
                    if !retry || tokio::time::Instant::now() + pause > give_up {
                        return Err(e);
                    }
                    *self
                        .inner
                        .commands
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = None;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// A connection for one blocking read, returned with [`Self::give_back`].
    async fn blocking(&self) -> Result<MultiplexedConnection, BrokerError> {
        let pooled = self
            .inner
            .blocking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match pooled {
            Some(con) => Ok(con),
            None => self.connection(None).await,
        }
    }

    fn give_back(&self, con: MultiplexedConnection) {
        let mut pool = self
            .inner
            .blocking
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if pool.len() < 16 {
            pool.push(con);
        }
    }

    /// A blocking read, on a connection of its own, retried as
    /// [`Self::with_commands`] retries.
    async fn with_blocking<R, F, Fut>(&self, doing: &str, mut op: F) -> Result<R, BrokerError>
    where
        F: FnMut(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<R, RedisError>>,
    {
        let give_up = tokio::time::Instant::now() + self.inner.config.reconnect_for;
        let mut pause = Duration::from_millis(50);
        loop {
            let con = match self.blocking().await {
                Ok(con) => con,
                Err(e)
                    if e.kind == BrokerErrorKind::Unreachable
                        && tokio::time::Instant::now() + pause <= give_up =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
                Err(e) => return Err(e),
            };
            match op(con.clone()).await {
                Ok(r) => {
                    self.give_back(con);
                    return Ok(r);
                }
                Err(e) => {
                    let retry = e.is_io_error() || e.is_connection_dropped() || e.is_timeout();
                    if !retry || tokio::time::Instant::now() + pause > give_up {
                        return Err(self.error(&e, doing));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Creates `handler`'s queue and consumer group if they do not exist
    /// (from the queue's start, so that entries queued before a worker came
    /// are delivered).
    async fn ensure_group(&self, handler: &str) -> Result<(), BrokerError> {
        let key = self.key_q(handler);
        // Known to exist: a server that lost it answers NOGROUP, and
        // `forget_groups` makes the next call create it again.
        if self
            .inner
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key)
        {
            return Ok(());
        }
        self.with_commands("cannot create the queue on", |mut con| {
            let key = key.clone();
            async move {
                let created: Result<Value, RedisError> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&key)
                    .arg(GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut con)
                    .await;
                match created {
                    Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                    Err(e) => Err(e),
                    Ok(_) => Ok(()),
                }
            }
        })
        .await?;
        self.inner
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key);
        Ok(())
    }

    /// After a NOGROUP answer (the server lost its data): groups are
    /// created again on next use.
    fn forget_groups(&self, e: &BrokerError) {
        if e.message.contains("NOGROUP") {
            self.inner
                .groups
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// Records `(run, field)` once, with `record`.
    fn record_invocation(&self, pipe: &mut redis::Pipeline, run: &str, field: &str, record: &[u8]) {
        self.record_batch(pipe, run, &[(field, record)]);
    }

    /// Records each `(field, record)` of `run` once, in one script call.
    fn record_batch(&self, pipe: &mut redis::Pipeline, run: &str, records: &[(&str, &[u8])]) {
        // Keys made by a worker before the coordinator set the run's own
        // expiry (it does when the run begins and ends) live a week.
        let keep = 7 * 24 * 3600;
        let cmd = pipe
            .cmd("EVALSHA")
            .arg(self.inner.scripts.record.get_hash())
            .arg(2)
            .arg(self.key_run(run, "done"))
            .arg(self.key_run(run, "res"))
            .arg(keep);
        for (field, record) in records {
            cmd.arg(*field).arg(frame(record));
        }
        cmd.ignore();
    }

    /// Loads the scripts (after a restart of the server, which forgets
    /// them).
    async fn load_scripts(&self) -> Result<(), BrokerError> {
        let sources = [RECORD, SCHEDULE, PROMOTE, RENEW, LIVE];
        self.with_commands("cannot load scripts into", |mut con| async move {
            let mut pipe = redis::pipe();
            for src in sources {
                pipe.cmd("SCRIPT").arg("LOAD").arg(src).ignore();
            }
            pipe.query_async::<()>(&mut con).await
        })
        .await
    }

    /// Runs a pipeline holding `EVALSHA`s, loading the scripts first if the
    /// server forgot them (it does on a restart).
    async fn with_scripts(
        &self,
        doing: &str,
        pipe: redis::Pipeline,
    ) -> Result<Vec<Value>, BrokerError> {
        let pipe = &pipe;
        let run = || {
            self.with_commands(doing, move |mut con| async move {
                pipe.query_async::<Vec<Value>>(&mut con).await
            })
        };
        match run().await {
            Err(e)
                if e.message.contains("NOSCRIPT") || e.message.contains("No matching script") =>
            {
                self.load_scripts().await?;
                run().await
            }
            other => other,
        }
    }
}

/// A short text of a Redis error, without the URL (which the caller names).
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for RedisError {
    fn kind_text(&self) -> String {
        // The error's own text; the redis crate never puts the password in
        // it (it prints the connection info without it).
        self.to_string()
    }
}

fn protocol(what: &str) -> BrokerError {
    BrokerError::new(
        BrokerErrorKind::Protocol,
        format!("unexpected answer from Redis: {what}"),
    )
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        Value::Nil => Some(&[]),
        _ => None,
    }
}

/// The value of `field` in a stream entry's field list.
fn field(fields: &Value, name: &str) -> Option<Vec<u8>> {
    match fields {
        Value::Array(kv) => kv
            .chunks(2)
            .find(|c| is_name(&c[0], name))
            .and_then(|c| c.get(1).and_then(bytes)),
        Value::Map(kv) => kv
            .iter()
            .find(|(k, _)| is_name(k, name))
            .and_then(|(_, v)| bytes(v)),
        _ => None,
    }
}

/// Moves the value of field `name` out of an entry's fields (no copy).
fn take_field(fields: &mut Value, name: &str) -> Option<Vec<u8>> {
    let v = match fields {
        Value::Array(kv) => kv.chunks_mut(2).find_map(|c| match c {
            [k, v] if is_name(k, name) => Some(v),
            _ => None,
        }),
        Value::Map(kv) => kv
            .iter_mut()
            .find_map(|(k, v)| is_name(k, name).then_some(v)),
        _ => None,
    }?;
    match std::mem::replace(v, Value::Nil) {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

/// `true` if `v` is the text `name` (compared without allocating).
fn is_name(v: &Value, name: &str) -> bool {
    match v {
        Value::BulkString(b) => b == name.as_bytes(),
        Value::SimpleString(s) => s == name,
        _ => false,
    }
}

/// The entries of an `XREAD`/`XREADGROUP` reply, moved out of it:
/// `(stream, id, fields)`.
fn stream_entries(reply: Value) -> Result<Vec<(String, String, Value)>, BrokerError> {
    let mut out = Vec::new();
    let streams: Vec<(Value, Value)> = match reply {
        Value::Nil => return Ok(out),
        Value::Array(a) => a
            .into_iter()
            .map(|s| match s {
                Value::Array(pair) => match <[Value; 2]>::try_from(pair) {
                    Ok([name, entries]) => Ok((name, entries)),
                    Err(_) => Err(protocol("a stream of XREAD")),
                },
                _ => Err(protocol("a stream of XREAD")),
            })
            .collect::<Result<_, _>>()?,
        Value::Map(m) => m,
        _ => return Err(protocol("XREAD")),
    };
    for (name, entries) in streams {
        let name = text(&name).ok_or_else(|| protocol("a stream name"))?;
        let Value::Array(entries) = entries else {
            return Err(protocol("stream entries"));
        };
        for entry in entries {
            match entry {
                Value::Array(pair) => match <[Value; 2]>::try_from(pair) {
                    Ok([id, fields]) => {
                        let id = text(&id).ok_or_else(|| protocol("an entry id"))?;
                        out.push((name.clone(), id, fields));
                    }
                    // An entry deleted while pending comes with nil fields.
                    Err(_) => continue,
                },
                _ => continue,
            }
        }
    }
    Ok(out)
}

/// A stream entry id, `ms-seq`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct EntryId(u64, u64);

impl EntryId {
    fn parse(id: &str) -> Option<Self> {
        let (ms, seq) = id.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// The handler whose queue key is `key` (`prefix:q:{handler}`).
fn handler_of(key: &str) -> Option<String> {
    let open = key.find('{')?;
    let close = key.rfind('}')?;
    (open < close).then(|| key[open + 1..close].to_owned())
}

impl sealed::Sealed for RedisBroker {}

impl Broker for RedisBroker {
    type Cancellations = Pin<Box<dyn Stream<Item = String> + Send>>;

    async fn begin(&self, run: &str, keep: Duration) -> Result<(), BrokerError> {
        let cancel = self.key_run(run, "cancel");
        let (res, done) = (self.key_run(run, "res"), self.key_run(run, "done"));
        let live = self.key_run(run, "live");
        let keep = keep.as_secs().max(1);
        self.with_commands("cannot start a run on", |mut con| {
            let (cancel, res, done, live) =
                (cancel.clone(), res.clone(), done.clone(), live.clone());
            async move {
                redis::pipe()
                    .cmd("DEL")
                    .arg(&cancel)
                    .ignore()
                    .cmd("SET")
                    .arg(&live)
                    .arg(1)
                    .arg("EX")
                    .arg(keep)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&res)
                    .arg(keep)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&done)
                    .arg(keep)
                    .ignore()
                    .query_async::<()>(&mut con)
                    .await
            }
        })
        .await
    }

    async fn enqueue(&self, handler: &str, tasks: Vec<Vec<u8>>) -> Result<(), BrokerError> {
        if tasks.is_empty() {
            return Ok(());
        }
        // No group needed: workers create it from the stream's start.
        let key = self.key_q(handler);
        let mut pipe = redis::pipe();
        for task in &tasks {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("t")
                .arg(task)
                .ignore();
        }
        let pipe = &pipe;
        self.with_commands("cannot queue tasks on", |mut con| async move {
            pipe.query_async::<()>(&mut con).await
        })
        .await
    }

    async fn schedule(
        &self,
        handler: &str,
        delay: Duration,
        task: Vec<u8>,
    ) -> Result<(), BrokerError> {
        let mut pipe = redis::pipe();
        pipe.cmd("EVALSHA")
            .arg(self.inner.scripts.schedule.get_hash())
            .arg(1)
            .arg(self.key_delayed(handler))
            .arg(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
            .arg(task);
        self.with_scripts("cannot schedule a retry on", pipe)
            .await
            .map(drop)
    }

    async fn results(
        &self,
        run: &str,
        after: &Cursor,
        wait: Duration,
    ) -> Result<(Cursor, Vec<Vec<u8>>), BrokerError> {
        let key = self.key_run(run, "res");
        let from = after.0.clone();
        let block = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let reply: Value = self
            .with_blocking("cannot read results from", |mut con| {
                let (key, from) = (key.clone(), from.clone());
                async move {
                    redis::cmd("XREAD")
                        .arg("COUNT")
                        .arg(1000)
                        .arg("BLOCK")
                        .arg(block)
                        .arg("STREAMS")
                        .arg(&key)
                        .arg(&from)
                        .query_async(&mut con)
                        .await
                }
            })
            .await?;
        let mut cursor = after.clone();
        let mut out = Vec::new();
        for (_, id, mut fields) in stream_entries(reply)? {
            if let Some(batch) = take_field(&mut fields, "b") {
                unframe(&batch, &mut out)?;
            }
            cursor = Cursor(id);
        }
        Ok((cursor, out))
    }

    async fn cancel(&self, run: &str) -> Result<(), BrokerError> {
        let (flag, channel) = (self.key_run(run, "cancel"), self.channel());
        let run = run.to_owned();
        self.with_commands("cannot cancel a run on", |mut con| {
            let (flag, channel, run) = (flag.clone(), channel.clone(), run.clone());
            async move {
                redis::pipe()
                    .cmd("SET")
                    .arg(&flag)
                    .arg(1)
                    .arg("EX")
                    .arg(7 * 24 * 3600)
                    .ignore()
                    .cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&run)
                    .ignore()
                    .query_async::<()>(&mut con)
                    .await
            }
        })
        .await
    }

    async fn still_there(&self, run: &str) -> Result<bool, BrokerError> {
        let live = self.key_run(run, "live");
        let n: i64 = self
            .with_commands("cannot check a run on", |mut con| {
                let live = live.clone();
                async move { redis::cmd("EXISTS").arg(&live).query_async(&mut con).await }
            })
            .await?;
        Ok(n > 0)
    }

    async fn end(&self, run: &str, keep: Duration) -> Result<(), BrokerError> {
        let keys = ["res", "done", "cancel", "live"].map(|w| self.key_run(run, w));
        let keep = keep.as_secs().max(1);
        self.with_commands("cannot end a run on", |mut con| {
            let keys = keys.clone();
            async move {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("EXPIRE").arg(k).arg(keep).ignore();
                }
                pipe.query_async::<()>(&mut con).await
            }
        })
        .await
    }

    async fn live_workers(&self, handler: &str, within: Duration) -> Result<usize, BrokerError> {
        let mut pipe = redis::pipe();
        pipe.cmd("EVALSHA")
            .arg(self.inner.scripts.live.get_hash())
            .arg(1)
            .arg(self.key_workers(handler))
            .arg(u64::try_from(within.as_millis()).unwrap_or(u64::MAX));
        let reply = self.with_scripts("cannot count workers on", pipe).await?;
        reply
            .first()
            .and_then(int)
            .map(|n| usize::try_from(n).unwrap_or(0))
            .ok_or_else(|| protocol("worker count"))
    }

    async fn claim(
        &self,
        worker: &str,
        handlers: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BrokerError> {
        if handlers.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        for h in handlers {
            self.ensure_group(h).await?;
        }
        let keys: Vec<String> = handlers.iter().map(|h| self.key_q(h)).collect();
        let block = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let worker = worker.to_owned();
        let reply: Value = self
            .with_blocking("cannot take tasks from", |mut con| {
                let (keys, worker) = (keys.clone(), worker.clone());
                async move {
                    let mut cmd = redis::cmd("XREADGROUP");
                    cmd.arg("GROUP")
                        .arg(GROUP)
                        .arg(&worker)
                        .arg("COUNT")
                        .arg(max)
                        .arg("BLOCK")
                        .arg(block)
                        .arg("STREAMS");
                    for k in &keys {
                        cmd.arg(k);
                    }
                    for _ in &keys {
                        cmd.arg(">");
                    }
                    cmd.query_async(&mut con).await
                }
            })
            .await
            .inspect_err(|e| self.forget_groups(e))?;
        let mut out = Vec::new();
        for (stream, id, mut fields) in stream_entries(reply)? {
            let handler = handler_of(&stream).ok_or_else(|| protocol("a queue name"))?;
            let task = take_field(&mut fields, "t").ok_or_else(|| protocol("a task entry"))?;
            out.push(Delivery {
                handler,
                entry: id,
                deliveries: 1,
                task,
            });
        }
        Ok(out)
    }

    async fn complete(&self, worker: &str, done: Vec<Completion>) -> Result<(), BrokerError> {
        if done.is_empty() {
            return Ok(());
        }
        // First which entries this worker still holds: a worker whose lease
        // passed (it stalled, another took the task) records nothing. One
        // XPENDING per queue, over the range of the batch's entries,
        // filtered to this worker.
        let mut queues: Vec<(&str, EntryId, EntryId)> = Vec::new();
        for c in &done {
            let Some(id) = EntryId::parse(&c.entry) else {
                continue;
            };
            match queues.iter_mut().find(|(h, _, _)| *h == c.handler) {
                Some((_, lo, hi)) => {
                    *lo = (*lo).min(id);
                    *hi = (*hi).max(id);
                }
                None => queues.push((&c.handler, id, id)),
            }
        }
        let mut check = redis::pipe();
        for (handler, lo, hi) in &queues {
            check
                .cmd("XPENDING")
                .arg(self.key_q(handler))
                .arg(GROUP)
                .arg(lo.to_string())
                .arg(hi.to_string())
                // At most what the worker holds in that range: its limit
                // and what it claimed ahead, far below this.
                .arg(1_000_000)
                .arg(worker);
        }
        let pending: Vec<Value> = self
            .with_commands("cannot check leases on", |mut con| {
                let check = check.clone();
                async move { check.query_async(&mut con).await }
            })
            .await
            .inspect_err(|e| self.forget_groups(e))?;
        let mut held = std::collections::HashSet::new();
        for (reply, (handler, _, _)) in pending.iter().zip(&queues) {
            for p in array(reply).unwrap_or(&[]) {
                if let Some(id) = array(p).and_then(|p| p.first()).and_then(text) {
                    held.insert((*handler, id));
                }
            }
        }
        // Then, in one pipeline: the records (one script call per run,
        // each attempt recorded once), then the acknowledgements. Redis
        // runs a pipeline in order, so an entry is never acknowledged
        // without its record.
        let kept: Vec<&Completion> = done
            .iter()
            .filter(|c| held.contains(&(c.handler.as_str(), c.entry.clone())))
            .collect();
        if kept.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let mut runs: Vec<&str> = kept.iter().map(|c| c.run.as_str()).collect();
        runs.sort_unstable();
        runs.dedup();
        for run in runs {
            let records: Vec<(&str, &[u8])> = kept
                .iter()
                .filter(|c| c.run == run)
                .map(|c| (c.field.as_str(), c.record.as_slice()))
                .collect();
            self.record_batch(&mut pipe, run, &records);
        }
        for (handler, _, _) in &queues {
            let ids: Vec<&str> = kept
                .iter()
                .filter(|c| c.handler == *handler)
                .map(|c| c.entry.as_str())
                .collect();
            if ids.is_empty() {
                continue;
            }
            let key = self.key_q(handler);
            pipe.cmd("XACK").arg(&key).arg(GROUP).arg(&ids).ignore();
            pipe.cmd("XDEL").arg(&key).arg(&ids).ignore();
        }
        self.with_scripts("cannot record results on", pipe)
            .await
            .map(drop)
    }

    async fn discard(&self, discards: Vec<Discard>) -> Result<(), BrokerError> {
        if discards.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for d in &discards {
            let key = self.key_q(&d.handler);
            pipe.cmd("XACK").arg(&key).arg(GROUP).arg(&d.entry).ignore();
            pipe.cmd("XDEL").arg(&key).arg(&d.entry).ignore();
        }
        self.with_commands("cannot acknowledge tasks on", |mut con| {
            let pipe = pipe.clone();
            async move { pipe.query_async::<()>(&mut con).await }
        })
        .await
    }

    async fn renew(
        &self,
        worker: &str,
        handlers: &[String],
        held: &[(String, String)],
    ) -> Result<(), BrokerError> {
        let mut pipe = redis::pipe();
        for handler in handlers {
            pipe.cmd("EVALSHA")
                .arg(self.inner.scripts.renew.get_hash())
                .arg(2)
                .arg(self.key_q(handler))
                .arg(self.key_workers(handler))
                .arg(GROUP)
                .arg(worker);
            for (h, entry) in held {
                if h == handler {
                    pipe.arg(entry);
                }
            }
            pipe.ignore();
        }
        if handlers.is_empty() {
            return Ok(());
        }
        self.with_scripts("cannot renew leases on", pipe)
            .await
            .map(drop)
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
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        for handler in handlers {
            self.ensure_group(handler).await?;
            let (q, delayed, dead) = (
                self.key_q(handler),
                self.key_delayed(handler),
                self.key_dead(handler),
            );
            let mut promote = redis::pipe();
            promote
                .cmd("EVALSHA")
                .arg(self.inner.scripts.promote.get_hash())
                .arg(2)
                .arg(&delayed)
                .arg(&q)
                .arg(256);
            self.with_scripts("cannot queue due retries on", promote)
                .await?;
            let reply: Value = self
                .with_commands("cannot reclaim tasks on", |mut con| {
                    let (q, worker) = (q.clone(), worker.to_owned());
                    async move {
                        redis::cmd("XAUTOCLAIM")
                            .arg(&q)
                            .arg(GROUP)
                            .arg(&worker)
                            .arg(lease_ms)
                            .arg("0-0")
                            .arg("COUNT")
                            .arg(128)
                            .query_async(&mut con)
                            .await
                    }
                })
                .await?;
            let claimed = match array(&reply) {
                Some([_cursor, entries, ..]) => array(entries)
                    .ok_or_else(|| protocol("XAUTOCLAIM entries"))?
                    .to_vec(),
                _ => return Err(protocol("XAUTOCLAIM")),
            };
            let mut entries = Vec::new();
            for e in &claimed {
                if let Some([id, fields]) = array(e) {
                    if let (Some(id), Some(task)) = (text(id), field(fields, "t")) {
                        entries.push((id, task));
                    }
                }
            }
            if entries.is_empty() {
                continue;
            }
            // How often each was delivered, XAUTOCLAIM's included.
            let mut counts = redis::pipe();
            for (id, _) in &entries {
                counts
                    .cmd("XPENDING")
                    .arg(&q)
                    .arg(GROUP)
                    .arg(id)
                    .arg(id)
                    .arg(1);
            }
            let counts: Vec<Value> = self
                .with_commands("cannot read delivery counts on", |mut con| {
                    let counts = counts.clone();
                    async move { counts.query_async(&mut con).await }
                })
                .await?;
            let mut dead_pipe = redis::pipe();
            let mut any_dead = false;
            for ((id, task), count) in entries.into_iter().zip(&counts) {
                let deliveries = array(count)
                    .and_then(|c| c.first())
                    .and_then(array)
                    .and_then(|p| p.get(3))
                    .and_then(int)
                    .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX));
                if deliveries > max_deliveries {
                    let why = format!(
                        "delivered {} times, and the worker that took it died or stalled past \
                         its lease each time; it is in the dead-letter stream {dead}",
                        deliveries - 1
                    );
                    if let Ok(env) = wire::decode::<wire::Envelope>(&task) {
                        let mut record = wire::Recorded {
                            index: env.index,
                            attempt: env.attempt,
                            worker: worker.to_owned(),
                            outcome: wire::WireOutcome::Undeliverable(why.clone()),
                            signature: None,
                        };
                        if let Some(secret) = secret {
                            secret.sign_record(&env.run, &mut record);
                        }
                        if let Ok(bytes) = wire::encode(&record) {
                            self.record_invocation(&mut dead_pipe, &env.run, &env.field(), &bytes);
                        }
                    }
                    dead_pipe
                        .cmd("XADD")
                        .arg(&dead)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(DEAD_LETTERS_KEPT)
                        .arg("*")
                        .arg("t")
                        .arg(&task)
                        .arg("why")
                        .arg(&why)
                        .ignore();
                    dead_pipe.cmd("XACK").arg(&q).arg(GROUP).arg(&id).ignore();
                    dead_pipe.cmd("XDEL").arg(&q).arg(&id).ignore();
                    any_dead = true;
                } else {
                    adopted.push(Delivery {
                        handler: handler.clone(),
                        entry: id,
                        deliveries,
                        task,
                    });
                }
            }
            if any_dead {
                self.with_scripts("cannot move dead letters on", dead_pipe)
                    .await?;
            }
        }
        Ok(adopted)
    }

    async fn cancelled(&self, runs: &[String]) -> Result<Vec<bool>, BrokerError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for run in runs {
            pipe.cmd("EXISTS").arg(self.key_run(run, "cancel"));
        }
        let reply: Vec<Value> = self
            .with_commands("cannot read cancellations on", |mut con| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut con).await }
            })
            .await?;
        Ok(reply.iter().map(|v| int(v).unwrap_or(0) > 0).collect())
    }

    async fn cancellations(&self) -> Result<Self::Cancellations, BrokerError> {
        let mut pubsub = self
            .inner
            .client
            .get_async_pubsub()
            .await
            .map_err(|e| self.error(&e, "cannot subscribe to"))?;
        pubsub
            .subscribe(self.channel())
            .await
            .map_err(|e| self.error(&e, "cannot subscribe to"))?;
        let messages = pubsub.into_on_message();
        Ok(Box::pin(futures_util::StreamExt::filter_map(
            messages,
            |m| async move { m.get_payload::<String>().ok() },
        )))
    }

    async fn bury(
        &self,
        handler: &str,
        task: Vec<u8>,
        why: String,
        outcome: Option<Vec<u8>>,
    ) -> Result<(), BrokerError> {
        let key = self.key_dead(handler);
        self.with_commands("cannot add a dead letter on", |mut con| {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(DEAD_LETTERS_KEPT)
                .arg("*")
                .arg("t")
                .arg(&task)
                .arg("why")
                .arg(&why);
            if let Some(o) = &outcome {
                cmd.arg("o").arg(o);
            }
            async move { cmd.query_async::<()>(&mut con).await }
        })
        .await
    }

    async fn clear_dead_letters(&self, handler: &str) -> Result<(), BrokerError> {
        let key = self.key_dead(handler);
        self.with_commands("cannot clear dead letters on", |mut con| {
            let key = key.clone();
            async move {
                redis::cmd("DEL")
                    .arg(&key)
                    .query_async::<()>(&mut con)
                    .await
            }
        })
        .await
    }

    async fn dead_letters(&self, handler: &str) -> Result<Vec<Buried>, BrokerError> {
        let key = self.key_dead(handler);
        let reply: Value = self
            .with_commands("cannot read dead letters on", |mut con| {
                let key = key.clone();
                async move {
                    redis::cmd("XRANGE")
                        .arg(&key)
                        .arg("-")
                        .arg("+")
                        .query_async(&mut con)
                        .await
                }
            })
            .await?;
        let mut out = Vec::new();
        for e in array(&reply).ok_or_else(|| protocol("XRANGE"))? {
            if let Some([_, fields]) = array(e) {
                if let Some(task) = field(fields, "t") {
                    let why = field(fields, "why")
                        .and_then(|w| String::from_utf8(w).ok())
                        .unwrap_or_default();
                    out.push(Buried {
                        task,
                        why,
                        outcome: field(fields, "o"),
                    });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("redis://:s3cret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact("rediss://alice:s3cret@host/"),
            "rediss://alice:***@host/"
        );
        assert_eq!(redact("redis://s3cret@host"), "redis://***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(
            redact("redis+unix:///tmp/r.sock"),
            "redis+unix:///tmp/r.sock"
        );
    }

    #[test]
    fn framed_records_come_back_whole() {
        let records: Vec<Vec<u8>> = vec![vec![], vec![1], vec![7; 300]];
        let batch: Vec<u8> = records.iter().flat_map(|r| frame(r)).collect();
        let mut out = Vec::new();
        unframe(&batch, &mut out).unwrap();
        assert_eq!(out, records);
        assert!(unframe(&batch[..batch.len() - 1], &mut Vec::new()).is_err());
    }

    #[test]
    fn handler_names_come_back_from_queue_keys() {
        assert_eq!(handler_of("fanout:q:{thumbs}").as_deref(), Some("thumbs"));
    }
}
