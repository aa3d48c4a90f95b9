//! Turning what the lanes (or threads) collected into what a run mode
//! returns: shared by the async and the blocking runs.

use tracing::Span;

use super::{Collected, Reason, RunState};
use crate::config::PanicPolicy;
use crate::counts::Counts;
use crate::error::{Cause, Error};
use crate::progress::Progress;
use crate::report::Report;
use crate::source::{in_input_order, Input};
use crate::task_error::TaskError;

/// The fail-fast result: every success (unordered, with its index) if no
/// task failed and nothing stopped the run; otherwise the error. Re-raises
/// the first panic under `PanicPolicy::Propagate`.
#[allow(
    clippy::type_complexity,
    reason = "the tuple is the natural shape here"
)]
pub(crate) fn fail_fast<S: Input, T, E>(
    shared: &RunState<S>,
    mut c: Collected<S::Key, T, E>,
    panics: PanicPolicy,
    progress: Option<&Progress>,
    span: &Span,
) -> Result<Vec<(usize, S::Key, T)>, Error<S::Key, E>> {
    reraise_first_panic(&mut c, panics, progress, span);
    let reason = shared.reason();
    if reason.is_none() && c.failures.is_empty() && c.stopped.is_empty() {
        if let Some(p) = progress {
            p.finish();
        }
        span.record("fanout.outcome", "ok");
        return Ok(c.ok);
    }
    // Fail-fast never drains the input: the iterator may be endless or have
    // side effects. The inputs never pulled are counted when it knows how
    // many are left (a `Vec`, a range, a map do).
    let not_started = shared.not_pulled();
    if let Some(p) = progress {
        p.add_not_started(not_started);
        p.finish();
    }
    let mut counts = Counts {
        succeeded: c.ok.len(),
        not_started,
        ..Counts::default()
    };
    for (_, f) in &c.failures {
        counts.add_error(&f.error);
    }
    for (_, _, e) in &c.stopped {
        counts.add_error(e);
    }
    c.failures.sort_by_key(|(seq, _)| *seq);
    let root = c.root;
    let mut cause = None;
    let mut others = Vec::with_capacity(c.failures.len());
    for (seq, f) in c.failures {
        if Some(seq) == root {
            cause = Some(Cause::Task(f));
        } else {
            others.push(f);
        }
    }
    let cause = cause.unwrap_or_else(|| reason.map_or(Cause::Cancelled, Reason::as_cause));
    span.record("fanout.outcome", "error");
    Err(Error::from_parts(cause, others, counts))
}

/// The collect-all report: one outcome per input, in input order, the inputs
/// never pulled (`rest`, pulled after the stop with their indices) reported
/// as not started. Re-raises the first panic under `PanicPolicy::Propagate`.
pub(crate) fn report<S: Input, T, E>(
    shared: &RunState<S>,
    mut c: Collected<S::Key, T, E>,
    rest: Vec<(usize, S::Key)>,
    panics: PanicPolicy,
    progress: Option<&Progress>,
    span: &Span,
) -> Report<S::Key, T, E> {
    reraise_first_panic(&mut c, panics, progress, span);
    let not_started = rest.len();
    if let Some(p) = progress {
        p.add_not_started(not_started);
        p.finish();
    }
    let total = c.ok.len() + c.failures.len() + c.stopped.len() + rest.len();
    let entries =
        c.ok.into_iter()
            .map(|(i, k, v)| (i, (k, Ok(v))))
            .chain(
                c.failures
                    .into_iter()
                    .map(|(_, f)| (f.index, (f.key, Err(f.error)))),
            )
            .chain(c.stopped.into_iter().map(|(i, k, e)| (i, (k, Err(e)))))
            .chain(
                rest.into_iter()
                    .map(|(i, k)| (i, (k, Err(TaskError::NotStarted)))),
            );
    let outcomes = in_input_order(total, entries);
    let report = Report::from_outcomes(outcomes, shared.reason().map(Reason::as_cause));
    span.record(
        "fanout.outcome",
        if report.is_success() { "ok" } else { "partial" },
    );
    report
}

/// Under `PanicPolicy::Propagate`, re-raises the first task panic observed
/// (every task has been dropped by now).
fn reraise_first_panic<K, T, E>(
    c: &mut Collected<K, T, E>,
    panics: PanicPolicy,
    progress: Option<&Progress>,
    span: &Span,
) {
    if panics == PanicPolicy::Propagate {
        if let Some(p) = c.take_first_panic() {
            span.record("fanout.outcome", "panic");
            if let Some(pr) = progress {
                pr.finish();
            }
            p.resume();
        }
    }
}
