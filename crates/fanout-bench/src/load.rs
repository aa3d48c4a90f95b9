//! The machine's load around a measurement, read from `/proc`: the
//! benchmarks run on a shared 2-core machine, so every table says how busy
//! it was, and measurements wait for it to be quiet first.

use std::time::{Duration, Instant};

/// The share of the machine other processes may use for it to count as quiet.
pub const QUIET_SHARE: f64 = 0.08;

/// The machine's load while a measurement runs.
#[derive(Debug)]
pub struct LoadMeter {
    loadavg_start: f64,
    stat: (u64, u64),
    own: u64,
}

/// What a [`LoadMeter`] saw.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// The 1-minute load average when the meter started.
    pub loadavg_start: f64,
    /// Share of all CPU time used by other processes (0..1).
    pub foreign: f64,
}

impl LoadMeter {
    /// Starts measuring.
    pub fn start() -> Self {
        LoadMeter {
            loadavg_start: loadavg(),
            stat: cpu_stat(),
            own: own_ticks(),
        }
    }

    /// Stops measuring.
    pub fn finish(self) -> Load {
        let (busy, total) = cpu_stat();
        let own = own_ticks();
        let total = total.saturating_sub(self.stat.1).max(1) as f64;
        let foreign = busy
            .saturating_sub(self.stat.0)
            .saturating_sub(own.saturating_sub(self.own)) as f64;
        Load {
            loadavg_start: self.loadavg_start,
            foreign: (foreign / total).clamp(0.0, 1.0),
        }
    }
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Busy and total CPU ticks of the machine, from `/proc/stat`.
fn cpu_stat() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() < 8 {
        return (0, 1);
    }
    // user nice system idle iowait irq softirq steal
    let busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    (busy, busy + f[3] + f[4])
}

/// CPU ticks used by this process and its waited-for children.
fn own_ticks() -> u64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // After the state field: ppid(0) .. utime(10) stime(11) cutime(12) cstime(13).
    f.get(10..14).map_or(0, |s| s.iter().sum())
}

/// Waits until other processes use less than [`QUIET_SHARE`] of the machine
/// over 300 ms, at most `max`; returns the time waited and whether the
/// machine got quiet.
pub fn wait_quiet(max: Duration) -> (Duration, bool) {
    let start = Instant::now();
    loop {
        let meter = LoadMeter::start();
        std::thread::sleep(Duration::from_millis(300));
        if meter.finish().foreign < QUIET_SHARE {
            return (start.elapsed(), true);
        }
        if start.elapsed() >= max {
            return (start.elapsed(), false);
        }
    }
}
