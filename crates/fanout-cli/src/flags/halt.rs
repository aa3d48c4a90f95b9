//! The `--halt` policy: when a run stops early, and with which exit code.

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
    /// A percentage of all the run's jobs (not of those finished so far).
    Percent(u64),
}

/// The completed jobs so far (jobs killed because the run was stopping
/// are not completed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Jobs whose last attempt succeeded.
    pub(crate) succeeded: u64,
    /// Jobs whose last attempt failed.
    pub(crate) failed: u64,
}

impl Tally {
    /// Counts one completed job.
    pub(crate) fn add(&mut self, succeeded: bool) {
        if succeeded {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
    }

    /// Every completed job.
    pub(crate) fn completed(&self) -> u64 {
        self.succeeded + self.failed
    }
}

/// The halt triggered: stop as `when` says, and exit with `exit_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Halting {
    /// Kill the running jobs, or let them finish.
    pub(crate) when: HaltWhen,
    /// fanout's exit code.
    pub(crate) exit_code: i32,
}

impl Halt {
    /// Whether the threshold is a percentage of all jobs.
    pub(crate) fn is_percentage(&self) -> bool {
        matches!(self.threshold, Threshold::Percent(_))
    }

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
        // GNU's `--halt 5%` is `soon,fail=5%`.
        if let Some(pct) = spec
            .strip_suffix('%')
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Halt::parse(&format!("soon,fail={pct}%"));
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
            Some(pct) => match pct.parse::<u64>() {
                Ok(p) if (1..=100).contains(&p) => Threshold::Percent(p),
                _ => bail!(
                    "bad --halt {spec:?}: the percentage must be a whole number from 1 to 100; {usage}"
                ),
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

    /// Whether the halt triggers after a job completed (`job_failed`, with
    /// exit code `job_code`), given the tally including it and the number
    /// of jobs in the run; and if so, fanout's exit code.
    ///
    /// GNU parallel 20221122's rule (`Job::should_we_halt`): the outcomes
    /// counted are the failed (`fail`), succeeded (`success`) or all
    /// completed (`done`) jobs; `=N%` means N% of all the run's jobs. A
    /// `success` halt exits 0; `fail` and `done` exit with the triggering
    /// job's code when the threshold is one job, else with the failure
    /// count (at most 101), or with the percentage of the run's jobs that
    /// failed, rounded up, for a percentage threshold.
    pub(crate) fn decide(
        &self,
        tally: &Tally,
        total_jobs: u64,
        job_failed: bool,
        job_code: i32,
    ) -> Option<Halting> {
        let counted = match self.on {
            HaltOn::Fail if job_failed => tally.failed,
            HaltOn::Success if !job_failed => tally.succeeded,
            HaltOn::Done => tally.completed(),
            _ => return None,
        };
        // In hundredths of a job, so that N% of the jobs compares exactly.
        let needed = match self.threshold {
            Threshold::Count(n) => n * 100,
            Threshold::Percent(p) => total_jobs * p,
        };
        if counted * 100 < needed {
            return None;
        }
        let exit_code = match (self.on, self.threshold) {
            (HaltOn::Success, _) => 0,
            _ if needed == 100 => {
                if job_failed {
                    job_code
                } else {
                    0
                }
            }
            (_, Threshold::Percent(_)) => (tally.failed * 100).div_ceil(total_jobs.max(1)) as i32,
            (_, Threshold::Count(_)) => tally.failed.min(101) as i32,
        };
        Some(Halting {
            when: self.when,
            exit_code,
        })
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
        assert_eq!(h.threshold, Threshold::Percent(50));
        let h = Halt::parse("5%").unwrap().unwrap();
        assert_eq!(
            (h.when, h.on, h.threshold),
            (HaltWhen::Soon, HaltOn::Fail, Threshold::Percent(5))
        );
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
            "soon,done=50.5%",
        ] {
            let err = Halt::parse(bad).unwrap_err().to_string();
            assert!(err.contains("now,fail=1"), "{bad}: {err}");
        }
    }

    #[test]
    fn percentages_are_of_all_the_jobs_not_of_those_finished() {
        let h = Halt::parse("now,done=50%").unwrap().unwrap();
        let tally = |succeeded, failed| Tally { succeeded, failed };
        // 3 of 100 jobs done is 3%, not 100% of those finished.
        assert_eq!(h.decide(&tally(3, 0), 100, false, 0), None);
        let halting = h.decide(&tally(49, 1), 100, false, 0).unwrap();
        // GNU exits with the share of all jobs that failed, rounded up.
        assert_eq!((halting.when, halting.exit_code), (HaltWhen::Now, 1));
    }

    #[test]
    fn exit_codes_follow_gnu_parallel() {
        let tally = |succeeded, failed| Tally { succeeded, failed };
        let fail1 = Halt::parse("now,fail=1").unwrap().unwrap();
        assert_eq!(
            fail1.decide(&tally(0, 1), 10, true, 7).unwrap().exit_code,
            7
        );
        let fail3 = Halt::parse("soon,fail=3").unwrap().unwrap();
        assert_eq!(fail3.decide(&tally(5, 2), 10, true, 7), None);
        assert_eq!(
            fail3.decide(&tally(5, 3), 10, true, 7).unwrap().exit_code,
            3
        );
        let done1 = Halt::parse("now,done=1").unwrap().unwrap();
        assert_eq!(
            done1.decide(&tally(1, 0), 10, false, 0).unwrap().exit_code,
            0
        );
        let success = Halt::parse("now,success=2").unwrap().unwrap();
        assert_eq!(success.decide(&tally(1, 4), 10, true, 3), None);
        assert_eq!(
            success
                .decide(&tally(2, 4), 10, false, 0)
                .unwrap()
                .exit_code,
            0
        );
        // 10% of 10 jobs is one job: the job's own code, as with fail=1.
        let pct = Halt::parse("now,fail=10%").unwrap().unwrap();
        assert_eq!(pct.decide(&tally(0, 1), 10, true, 4).unwrap().exit_code, 4);
    }
}
