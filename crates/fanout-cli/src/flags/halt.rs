//! The `--halt` policy: when a run stops early.

use anyhow::bail;

/// When to stop starting jobs, and whether to kill the running ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Halt {
    /// Kill running jobs (`now`) or let them finish (`soon`).
    pub(crate) when: HaltWhen,
    /// Which job outcomes count towards the threshold.
    pub(crate) on: HaltOn,
    /// How many such outcomes trigger the halt.
    pub(crate) threshold: Threshold,
}

/// `now` or `soon`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HaltWhen {
    /// Terminate running jobs at once.
    Now,
    /// Start no new job; wait for the running ones.
    Soon,
}

/// `fail`, `success` or `done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HaltOn {
    /// Failed jobs count.
    Fail,
    /// Succeeded jobs count.
    Success,
    /// Every finished job counts.
    Done,
}

/// `=N` or `=N%`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Threshold {
    /// An absolute number of jobs.
    Count(u64),
    /// A percentage of the finished jobs, judged once at least 3 finished
    /// (GNU parallel's rule, so one early failure is not 100%).
    Percent(f64),
}

impl Halt {
    /// Parses GNU parallel's `--halt` syntax; `None` means `never`.
    ///
    /// # Errors
    /// Anything else, with the accepted forms in the message.
    pub(crate) fn parse(spec: &str) -> anyhow::Result<Option<Halt>> {
        let short = |when, on| {
            Ok(Some(Halt {
                when,
                on,
                threshold: Threshold::Count(1),
            }))
        };
        match spec {
            "never" | "0" => return Ok(None),
            "1" => return short(HaltWhen::Soon, HaltOn::Fail),
            "2" => return short(HaltWhen::Now, HaltOn::Fail),
            "-1" => return short(HaltWhen::Soon, HaltOn::Success),
            "-2" => return short(HaltWhen::Now, HaltOn::Success),
            _ => {}
        }
        let usage = "use never, now|soon,fail|success|done=N or =N% (for example now,fail=1), \
                     or one of 0, 1, 2, -1, -2";
        let Some((when, rest)) = spec.split_once(',') else {
            bail!("bad --halt {spec:?}: {usage}");
        };
        let when = match when {
            "now" => HaltWhen::Now,
            "soon" => HaltWhen::Soon,
            _ => bail!("bad --halt {spec:?}: {when:?} must be now or soon; {usage}"),
        };
        let Some((on, value)) = rest.split_once('=') else {
            bail!("bad --halt {spec:?}: {usage}");
        };
        let on = match on {
            "fail" => HaltOn::Fail,
            "success" => HaltOn::Success,
            "done" => HaltOn::Done,
            _ => bail!("bad --halt {spec:?}: {on:?} must be fail, success or done; {usage}"),
        };
        let threshold = match value.strip_suffix('%') {
            Some(pct) => match pct.parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Threshold::Percent(p),
                _ => bail!("bad --halt {spec:?}: the percentage must be in (0, 100]; {usage}"),
            },
            None => match value.parse::<u64>() {
                Ok(n) if n > 0 => Threshold::Count(n),
                _ => bail!("bad --halt {spec:?}: the count must be a positive integer; {usage}"),
            },
        };
        Ok(Some(Halt {
            when,
            on,
            threshold,
        }))
    }

    /// Whether the halt triggers, given the counts of finished jobs so far.
    pub(crate) fn is_reached(&self, failed: u64, succeeded: u64) -> bool {
        let done = failed + succeeded;
        let counted = match self.on {
            HaltOn::Fail => failed,
            HaltOn::Success => succeeded,
            HaltOn::Done => done,
        };
        match self.threshold {
            Threshold::Count(n) => counted >= n,
            Threshold::Percent(p) => done >= 3 && counted as f64 * 100.0 >= p * done as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_halt_forms_parse() {
        let h = Halt::parse("now,fail=1").unwrap().unwrap();
        assert_eq!(
            (h.when, h.on, h.threshold),
            (HaltWhen::Now, HaltOn::Fail, Threshold::Count(1))
        );
        let h = Halt::parse("soon,success=50%").unwrap().unwrap();
        assert_eq!(h.threshold, Threshold::Percent(50.0));
        assert_eq!(Halt::parse("2").unwrap().unwrap().when, HaltWhen::Now);
        assert_eq!(Halt::parse("never").unwrap(), None);
    }

    #[test]
    fn bad_halt_specs_are_rejected_with_the_accepted_forms() {
        for bad in [
            "bogus",
            "now",
            "now,fail",
            "now,fail=0",
            "later,fail=1",
            "now,oops=1",
            "soon,done=200%",
        ] {
            let err = Halt::parse(bad).unwrap_err().to_string();
            assert!(err.contains("now,fail=1"), "{bad}: {err}");
        }
    }

    #[test]
    fn percent_thresholds_wait_for_three_jobs() {
        let h = Halt::parse("now,fail=50%").unwrap().unwrap();
        assert!(!h.is_reached(1, 0));
        assert!(h.is_reached(2, 1));
        assert!(!h.is_reached(1, 2));
    }
}
