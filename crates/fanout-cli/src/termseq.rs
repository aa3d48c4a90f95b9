//! `--term-seq`: how a job is stopped (timeout, `--halt now`, Ctrl-C):
//! signals sent to its process group, each followed by a wait of at most so
//! many milliseconds, as GNU parallel's `kill_sleep_seq` does. The default
//! is GNU parallel's: TERM, 200 ms, TERM, 100 ms, TERM, 50 ms, KILL, 25 ms.

use std::time::Duration;

use anyhow::bail;

/// The signals and waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TermSeq(pub(crate) Vec<(i32, Duration)>);

impl Default for TermSeq {
    fn default() -> TermSeq {
        let ms = Duration::from_millis;
        TermSeq(vec![
            (libc::SIGTERM, ms(200)),
            (libc::SIGTERM, ms(100)),
            (libc::SIGTERM, ms(50)),
            (libc::SIGKILL, ms(25)),
        ])
    }
}

impl TermSeq {
    /// `SIGNAL,MS,SIGNAL,MS,…` (names with or without `SIG`, or numbers;
    /// a missing last wait is 0).
    ///
    /// # Errors
    /// An unknown signal or a bad number.
    pub(crate) fn parse(spec: &str) -> anyhow::Result<TermSeq> {
        let parts: Vec<&str> = spec.split(',').collect();
        if spec.is_empty() {
            return Ok(TermSeq::default());
        }
        let mut steps = Vec::new();
        for pair in parts.chunks(2) {
            let signal = signal_number(pair[0]).ok_or_else(|| {
                anyhow::anyhow!(
                    "bad --term-seq {spec:?}: {:?} is not a signal name or number",
                    pair[0]
                )
            })?;
            let wait = match pair.get(1) {
                Some(ms) => match ms.trim().parse::<u64>() {
                    Ok(ms) => Duration::from_millis(ms),
                    Err(_) => {
                        bail!("bad --term-seq {spec:?}: {ms:?} is not a number of milliseconds")
                    }
                },
                None => Duration::ZERO,
            };
            steps.push((signal, wait));
        }
        Ok(TermSeq(steps))
    }
}

/// A signal's number from its name (`TERM`, `SIGTERM`) or number.
fn signal_number(name: &str) -> Option<i32> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        return (0..65).contains(&n).then_some(n);
    }
    let name = name.strip_prefix("SIG").unwrap_or(name);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" | "CLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return None,
    };
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_parse_like_gnu() {
        assert_eq!(TermSeq::parse("").unwrap(), TermSeq::default());
        let s = TermSeq::parse("INT,200,SIGKILL,25").unwrap();
        assert_eq!(
            s.0,
            vec![
                (libc::SIGINT, Duration::from_millis(200)),
                (libc::SIGKILL, Duration::from_millis(25))
            ]
        );
        assert_eq!(TermSeq::parse("9").unwrap().0, vec![(9, Duration::ZERO)]);
        assert!(TermSeq::parse("NOPE,1").is_err());
        assert!(TermSeq::parse("TERM,x").is_err());
    }
}
