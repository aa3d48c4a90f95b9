//! Grouping records into jobs, as GNU parallel's `CommandLine::populate`
//! does: one record per job by default; `-n`/`-N`/`-L` records per job; or,
//! with `-m`/`-X`/`--xargs`, as many as fit in the command-line length
//! limit, spread over the job slots when the input ends (`-m`, `-X`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::input::{Arg, Value};
use crate::template::{Evaluator, JobValues, LengthModel, Tally};

/// How many records a job takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batching {
    /// Up to this many (at least 1).
    Count(usize),
    /// As many as the command-line length allows, at most `max` if set;
    /// `spread`: when the input ends, the records left are spread evenly
    /// over the job slots (`-m`, `-X`, not `--xargs`).
    Length {
        /// `-n`/`-N` given as well.
        max: Option<usize>,
        /// Spread at the end of the input.
        spread: bool,
    },
}

/// One job's arguments.
#[derive(Debug)]
pub(crate) struct JobArgs {
    /// `{#}`.
    pub(crate) seq: u64,
    /// Every argument of every record, flat; at least one (an empty one
    /// when the job has no input, as in GNU parallel).
    pub(crate) args: Vec<Arg>,
    /// How many arguments each record has.
    pub(crate) widths: Vec<usize>,
    /// Values already computed while measuring the command line.
    pub(crate) values: Option<JobValues>,
}

/// What the length check needs.
#[derive(Debug)]
pub(crate) struct LengthCheck {
    /// GNU parallel's estimate.
    pub(crate) model: LengthModel,
    /// The limit.
    pub(crate) max_len: usize,
    /// Computes the values.
    pub(crate) eval: Arc<Mutex<Evaluator>>,
}

/// The jobs of a run, made from its records.
pub(crate) struct Batcher {
    records: Box<dyn Iterator<Item = Vec<Value>> + Send>,
    unget: VecDeque<Vec<Value>>,
    mode: Batching,
    /// `-n 0`: the arguments are read but not used.
    no_args: bool,
    next_seq: u64,
    length: Option<LengthCheck>,
    max_jobs: usize,
    spread_done: bool,
    /// The first record number of the next job (for error messages).
    record_no: u64,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// Jobs from `records`; `length` is needed for [`Batching::Length`].
    pub(crate) fn new(
        records: Box<dyn Iterator<Item = Vec<Value>> + Send>,
        mode: Batching,
        no_args: bool,
        length: Option<LengthCheck>,
        max_jobs: usize,
    ) -> Batcher {
        Batcher {
            records,
            unget: VecDeque::new(),
            mode,
            no_args,
            next_seq: 1,
            length,
            max_jobs,
            spread_done: false,
            record_no: 0,
        }
    }

    fn next_record(&mut self) -> Option<Vec<Value>> {
        self.unget.pop_front().or_else(|| self.records.next())
    }

    fn is_empty(&mut self) -> bool {
        if !self.unget.is_empty() {
            return false;
        }
        match self.records.next() {
            Some(r) => {
                self.unget.push_back(r);
                false
            }
            None => true,
        }
    }

    fn by_count(&mut self, max: usize) -> Option<Vec<Vec<Value>>> {
        let mut records = Vec::new();
        while records.len() < max {
            match self.next_record() {
                Some(r) => records.push(r),
                None => break,
            }
        }
        (!records.is_empty()).then_some(records)
    }

    /// Fills a job up to the length limit; the values computed on the way
    /// come along.
    fn by_length(
        &mut self,
        max: Option<usize>,
    ) -> anyhow::Result<Option<(Vec<Vec<Value>>, JobValues)>> {
        let seq = self.next_seq;
        let mut job = Growing::default();
        loop {
            if max.is_some_and(|m| job.records.len() >= m) {
                break;
            }
            let Some(record) = self.next_record() else {
                break;
            };
            let len = self.push(&mut job, record, seq)?;
            let check = self.length.as_ref().expect("length mode has a check");
            if len >= check.max_len {
                if job.records.len() > 1 {
                    let last = self.pop(&mut job);
                    self.unget.push_front(last);
                    break;
                }
                let shown: String = job.records[0].join(" ");
                let shown = if shown.chars().count() > 50 {
                    format!("{}...", shown.chars().take(50).collect::<String>())
                } else {
                    shown
                };
                anyhow::bail!(
                    "command line too long ({len} >= {}) at input {}: {shown}",
                    check.max_len,
                    self.record_no + 1
                );
            }
        }
        if job.records.is_empty() {
            return Ok(None);
        }
        if let Batching::Length { spread: true, .. } = self.mode {
            if !self.spread_done && self.max_jobs > 0 && self.is_empty() {
                self.spread_done = true;
                if job.records.len() > 1 {
                    // GNU parallel spreads what is left over the job slots:
                    // this job and the next ones take ceil(n / slots) each.
                    let each = job.records.len().div_ceil(self.max_jobs);
                    self.mode = Batching::Length {
                        max: Some(each),
                        spread: true,
                    };
                    while job.records.len() > each {
                        let last = self.pop(&mut job);
                        self.unget.push_front(last);
                    }
                }
            }
        }
        Ok(Some((job.records, job.values)))
    }

    /// Adds a record to a job being filled; returns the new estimate.
    fn push(&mut self, job: &mut Growing, record: Vec<Value>, seq: u64) -> anyhow::Result<usize> {
        let check = self.length.as_ref().expect("length mode has a check");
        let first = job.args.len();
        let width = record.len();
        job.args
            .extend(record.iter().map(|v| (!self.no_args).then(|| v.clone())));
        job.records.push(record);
        let mut needs = Vec::new();
        check.model.needs(first, width, &mut needs);
        let mut eval = check.eval.lock().unwrap_or_else(|p| p.into_inner());
        eval.evaluate_into(&mut job.values, &job.args, seq, 0, &needs)?;
        check.model.add(&mut job.tally, first, width, &job.values);
        Ok(check.model.estimate_tally(&job.tally))
    }

    /// Takes the last record back out of a job being filled.
    fn pop(&mut self, job: &mut Growing) -> Vec<Value> {
        let check = self.length.as_ref().expect("length mode has a check");
        let record = job.records.pop().expect("a record");
        let first = job.args.len() - record.len();
        check
            .model
            .remove(&mut job.tally, first, record.len(), &job.values);
        job.args.truncate(first);
        record
    }

    fn args_of(&self, records: &[Vec<Value>]) -> Vec<Arg> {
        let mut args: Vec<Arg> = records
            .iter()
            .flatten()
            .map(|v| (!self.no_args).then(|| v.clone()))
            .collect();
        if args.is_empty() {
            args.push(Some(Value::from("")));
        }
        args
    }
}

/// A job being filled by length.
#[derive(Debug, Default)]
struct Growing {
    records: Vec<Vec<Value>>,
    args: Vec<Arg>,
    values: JobValues,
    tally: Tally,
}

/// A job, or why the next one cannot be made (the run then stops).
pub(crate) type Made = Result<JobArgs, String>;

impl Iterator for Batcher {
    type Item = Made;

    fn next(&mut self) -> Option<Made> {
        let made = match self.mode {
            Batching::Count(max) => self.by_count(max.max(1)).map(|r| Ok((r, None))),
            Batching::Length { max, .. } => match self.by_length(max) {
                Ok(Some((r, v))) => Some(Ok((r, Some(v)))),
                Ok(None) => None,
                Err(e) => Some(Err(format!("{e:#}"))),
            },
        }?;
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(made.map(|(records, values)| {
            self.record_no += records.len() as u64;
            JobArgs {
                seq,
                args: self.args_of(&records),
                widths: records.iter().map(Vec::len).collect(),
                values,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Box<dyn Iterator<Item = Vec<Value>> + Send> {
        Box::new((1..=n).map(|i| vec![Value::from(i.to_string())]))
    }

    #[test]
    fn count_batches_take_n_records() {
        let jobs: Vec<Vec<String>> = Batcher::new(records(5), Batching::Count(2), false, None, 1)
            .map(|j| {
                j.unwrap()
                    .args
                    .iter()
                    .map(|a| a.as_deref().unwrap().to_owned())
                    .collect()
            })
            .collect();
        assert_eq!(jobs, vec![vec!["1", "2"], vec!["3", "4"], vec!["5"]]);
    }

    #[test]
    fn no_args_keeps_the_count_but_drops_the_values() {
        let jobs: Vec<JobArgs> = Batcher::new(records(2), Batching::Count(1), true, None, 1)
            .map(Result::unwrap)
            .collect();
        assert_eq!(jobs.len(), 2);
        assert!(jobs[0].args[0].is_none());
        assert_eq!(jobs[1].seq, 2);
    }
}
