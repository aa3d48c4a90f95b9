//! Counting CPUs the way GNU parallel does on Linux: the CPUs the machine
//! has (sockets, physical cores, hardware threads), each capped by the CPUs
//! this process may run on (`taskset`). Unlike Rust's
//! `available_parallelism`, a cgroup CPU quota does not lower the count,
//! so `-j 100%` (the default) means what it means to GNU parallel.

use std::collections::HashSet;
use std::path::Path;

/// The CPU counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cpus {
    /// Sockets with a CPU.
    pub(crate) sockets: usize,
    /// Physical cores.
    pub(crate) cores: usize,
    /// Hardware threads (what `-j 100%` counts).
    pub(crate) threads: usize,
}

impl Cpus {
    /// This machine's counts, from `/sys/devices/system/cpu`, capped by the
    /// affinity mask.
    pub(crate) fn detect() -> Cpus {
        let fallback = std::thread::available_parallelism().map_or(1, |n| n.get());
        let root = Path::new("/sys/devices/system/cpu");
        let mut sockets = HashSet::new();
        let mut cores = HashSet::new();
        let mut threads = 0;
        // GNU parallel counts cpu0, cpu1, ... until one lacks a topology.
        loop {
            let topo = root.join(format!("cpu{threads}/topology"));
            let read = |f: &str| std::fs::read_to_string(topo.join(f)).ok();
            let Some(package) = read("physical_package_id") else {
                break;
            };
            sockets.insert(package.trim().to_owned());
            if let Some(siblings) = read("thread_siblings") {
                cores.insert(siblings.trim().to_owned());
            }
            threads += 1;
        }
        let active = affinity_count().unwrap_or(fallback);
        if threads == 0 {
            return Cpus {
                sockets: 1,
                cores: active,
                threads: active,
            };
        }
        let cores = if cores.is_empty() {
            threads
        } else {
            cores.len()
        };
        Cpus {
            sockets: sockets.len().max(1).min(active),
            cores: cores.min(active),
            threads: threads.min(active),
        }
    }
}

/// The number of CPUs in this process's affinity mask.
fn affinity_count() -> Option<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, and
    // sched_getaffinity writes at most its size into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let n = libc::CPU_COUNT(&set);
        usize::try_from(n).ok().filter(|&n| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_positive_and_ordered() {
        let c = Cpus::detect();
        assert!(c.sockets >= 1 && c.cores >= 1 && c.threads >= 1);
        assert!(c.sockets <= c.threads && c.cores <= c.threads);
    }
}
