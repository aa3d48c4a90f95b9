//! Limits on when jobs start and how long they run, as GNU parallel
//! computes them: `--timeout N%` (N% of the median run time of the jobs
//! that succeeded, by Rousseeuw and Bassett's remedian), `--memfree` (free
//! memory as GNU parallel measures it on Linux) and `--load` (the number of
//! threads running or in uninterruptible sleep right now).

use std::sync::Mutex;
use std::time::Duration;

/// `--timeout`: fixed, or a percentage of the median run time so far.
#[derive(Debug)]
pub(crate) enum Timeout {
    /// Seconds.
    Fixed(Duration),
    /// N% of the remedian of successful jobs' run times; no limit before
    /// the first success (GNU parallel starts with 1 000 000 s).
    Percent {
        /// N / 100.
        share: f64,
        /// The run times seen.
        median: Mutex<Remedian>,
        /// Rung when the limit changes.
        changed: tokio::sync::watch::Sender<Duration>,
    },
}

impl Timeout {
    /// A percentage timeout.
    pub(crate) fn percent(share: f64) -> Timeout {
        Timeout::Percent {
            share,
            median: Mutex::new(Remedian::default()),
            changed: tokio::sync::watch::Sender::new(Duration::from_secs(1_000_000)),
        }
    }

    /// The current limit, and (for percentages) how to hear of changes.
    pub(crate) fn limit(&self) -> (Duration, Option<tokio::sync::watch::Receiver<Duration>>) {
        match self {
            Timeout::Fixed(d) => (*d, None),
            Timeout::Percent { changed, .. } => (*changed.borrow(), Some(changed.subscribe())),
        }
    }

    /// A job succeeded after `runtime` (GNU parallel counts only those).
    pub(crate) fn succeeded(&self, runtime: Duration) {
        if let Timeout::Percent {
            share,
            median,
            changed,
        } = self
        {
            // GNU parallel's run times have millisecond precision.
            let secs = (runtime.as_secs_f64() * 1000.0).floor() / 1000.0;
            let median = {
                let mut m = median.lock().unwrap_or_else(|p| p.into_inner());
                m.add(secs);
                m.value()
            };
            changed.send_replace(Duration::from_secs_f64((share * median).max(0.0)));
        }
    }
}

/// GNU parallel's remedian: the median of the medians of blocks of 999
/// values, three levels deep. Values are sorted as Perl's `sort` sorts them:
/// as strings.
#[derive(Debug, Default)]
pub(crate) struct Remedian {
    count: usize,
    levels: [Vec<String>; 3],
}

impl Remedian {
    fn add(&mut self, value: f64) {
        let i = self.count;
        self.count += 1;
        set(&mut self.levels[0], i % 999, perl_number(value));
        let m0 = median(&self.levels[0]);
        set(&mut self.levels[1], i / 999 % 999, m0);
        let m1 = median(&self.levels[1]);
        set(&mut self.levels[2], i / 999 / 999 % 999, m1);
    }

    fn value(&self) -> f64 {
        median(&self.levels[2]).parse().unwrap_or(0.0)
    }
}

fn set(v: &mut Vec<String>, at: usize, value: String) {
    if v.len() <= at {
        v.resize(at + 1, String::new());
    }
    v[at] = value;
}

/// `(sort @a)[$#a / 2]`.
fn median(values: &[String]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .cloned()
        .unwrap_or_default()
}

/// How Perl prints a number (up to 15 significant digits, no trailing
/// zeros).
fn perl_number(value: f64) -> String {
    let s = format!("{value:.15}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// Free memory as GNU parallel reads it on Linux: MemFree, Buffers, Cached
/// and SwapCached of `/proc/meminfo`, in bytes.
pub(crate) fn memfree() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut kb = 0;
    for line in text.lines() {
        let (name, rest) = line.split_once(':')?;
        if matches!(name, "MemFree" | "Buffers" | "Cached" | "SwapCached") {
            kb += rest.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(kb * 1024)
}

/// GNU parallel's instant load: threads in state R, D or O that are not
/// kernel threads, minus one (its own `ps`; here, fanout's own thread).
pub(crate) fn load() -> Option<f64> {
    let mut count = 0u64;
    for process in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = process.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Kernel threads have no command line (ps shows them as [name]).
        let Ok(cmdline) = std::fs::read(process.path().join("cmdline")) else {
            continue;
        };
        if cmdline.is_empty() {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(process.path().join("task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            if matches!(state, Some("R" | "D" | "O")) {
                count += 1;
            }
        }
    }
    Some(count.saturating_sub(1) as f64)
}

/// `--load`: `N`, `N%` of the CPUs, `+N`/`-N` relative to them.
///
/// # Errors
/// Anything else.
pub(crate) fn parse_load(spec: &str, cpus: usize) -> anyhow::Result<f64> {
    let bad =
        || anyhow::anyhow!("bad --load {spec:?}: give a load such as 2, 80% of the CPUs, or +1/-1");
    let load = if let Some(n) = spec.strip_prefix('+') {
        cpus as f64 + n.parse::<u32>().map_err(|_| bad())? as f64
    } else if let Some(n) = spec.strip_prefix('-') {
        cpus as f64 - n.parse::<u32>().map_err(|_| bad())? as f64
    } else if let Some(p) = spec.strip_suffix('%') {
        cpus as f64 * p.parse::<u32>().map_err(|_| bad())? as f64 / 100.0
    } else if std::path::Path::new(spec).is_file() {
        anyhow::bail!("--load {spec:?} names a file: reading the load limit from a file is not supported by fanout");
    } else {
        spec.parse::<f64>().map_err(|_| bad())?
    };
    Ok(load.max(0.01))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remedian_sorts_as_perl_does() {
        let mut r = Remedian::default();
        for v in [2.1, 10.5, 3.0] {
            r.add(v);
        }
        // As strings: "10.5" < "2.1" < "3": the middle one is "2.1".
        assert_eq!(r.value(), 2.1);
        let mut r = Remedian::default();
        r.add(2.1);
        r.add(2.2);
        assert_eq!(r.value(), 2.1);
    }

    #[test]
    fn memory_and_load_are_readable() {
        assert!(memfree().is_some_and(|m| m > 0));
        assert!(load().is_some());
    }

    #[test]
    fn load_limits_parse_like_gnu() {
        assert_eq!(parse_load("2", 4).unwrap(), 2.0);
        assert_eq!(parse_load("50%", 4).unwrap(), 2.0);
        assert_eq!(parse_load("+1", 4).unwrap(), 5.0);
        assert_eq!(parse_load("0", 4).unwrap(), 0.01);
        assert!(parse_load("x", 4).is_err());
    }
}
