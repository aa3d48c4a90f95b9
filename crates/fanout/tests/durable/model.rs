//! A property test of journaled runs against a sequential model: the model
//! of `integrity/model.rs` (inputs pulled in order, each as soon as one of
//! `limit` slots is free, on a paused clock), extended with a journal.
//!
//! Each case draws a plan: input keys (a shuffled subset of a small
//! universe), per input an outcome (ok, error, panic) and a delay, the
//! records a journal holds before the run (any keys of the universe, some
//! more than once), whether recorded failures are kept, a limit, a lane
//! count and a run mode. Panics are reported as errors (a panic re-raised
//! from a journaled run is `a_panicking_task_is_recorded_before_the_panic_is_re_raised`).
//!
//! The model: an input whose key's last record is a success (or a failure
//! that is kept) is recalled: delivered at the instant it is pulled, with
//! the recorded outcome, without a slot and without running; every other
//! input runs as without a journal. A fail-fast run stops at the first
//! failure, run or recalled. Afterwards the journal holds the records it
//! held, untouched, then exactly one record per input that ran and
//! completed, with the outcome the run reported for it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use fanout::journal::{parse, Fingerprint, JsonOutcomes, Options, RecordedFailures, RunError};
use fanout::{fan_out_keyed, Cause, Order, Outcome, Panic, PanicPolicy, TaskCtx, TaskError};
use proptest::prelude::*;

use crate::common::{paused_runtime, quiet_intentional_panics, since, Bodies};

type Format = JsonOutcomes<u32, u64, u32>;

/// "Never": an input never pulled.
const NEVER: u64 = u64::MAX;
/// Starts every task panic's message; marked intentional for the quiet hook.
const PANIC_TAG: &str = "[intentional] durable-model-panic";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ok(u64),
    Err(u32),
    Panic,
}

#[derive(Clone, Copy, Debug)]
struct Step {
    key: u32,
    kind: Kind,
    delay: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Run,
    RunAll,
    StreamCompletion,
    StreamInput,
}

#[derive(Clone, Debug)]
struct Plan {
    steps: Vec<Step>,
    /// The journal's records before the run, in file order.
    prior: Vec<(u32, Kind)>,
    failures: RecordedFailures,
    limit: usize,
    lanes: usize,
    mode: Mode,
}

/// One observed or expected outcome, comparable.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Ok(u64),
    Failed(u32),
    Panicked(String),
    Cancelled,
    NotStarted,
}

fn seen(o: &Outcome<u64, u32>) -> Seen {
    match o {
        Ok(v) => Seen::Ok(*v),
        Err(TaskError::Failed(c)) => Seen::Failed(*c),
        Err(TaskError::Panicked(p)) => Seen::Panicked(p.message().unwrap_or("?").to_owned()),
        Err(TaskError::Cancelled) => Seen::Cancelled,
        Err(TaskError::NotStarted) => Seen::NotStarted,
        Err(other) => unreachable!("an outcome this test does not make: {other:?}"),
    }
}

fn panic_message(key: u32) -> String {
    format!("{PANIC_TAG} {key}")
}

/// The outcome of `kind` for `key`, as a run reports it.
fn of_kind(kind: Kind, key: u32) -> Seen {
    match kind {
        Kind::Ok(v) => Seen::Ok(v),
        Kind::Err(c) => Seen::Failed(c),
        Kind::Panic => Seen::Panicked(panic_message(key)),
    }
}

fn outcome_of(kind: Kind, key: u32) -> Outcome<u64, u32> {
    match kind {
        Kind::Ok(v) => Ok(v),
        Kind::Err(c) => Err(TaskError::Failed(c)),
        Kind::Panic => Err(TaskError::Panicked(Panic::new(Box::new(panic_message(
            key,
        ))))),
    }
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => any::<u16>().prop_map(|v| Kind::Ok(u64::from(v))),
        1 => (1u32..100).prop_map(Kind::Err),
        1 => Just(Kind::Panic),
    ]
}

/// Keys are drawn from `0..UNIVERSE`, so that inputs and records overlap.
const UNIVERSE: u32 = 24;

fn plan_strategy(modes: &'static [Mode]) -> impl Strategy<Value = Plan> {
    let keys =
        proptest::sample::subsequence((0..UNIVERSE).collect::<Vec<_>>(), 0..=16).prop_shuffle();
    (
        keys,
        proptest::collection::vec((kind_strategy(), 0u64..20), 16),
        proptest::collection::vec((0..UNIVERSE, kind_strategy()), 0..24),
        prop_oneof![Just(RecordedFailures::Rerun), Just(RecordedFailures::Keep)],
        1usize..=6,
        1usize..=3,
        proptest::sample::select(modes),
    )
        .prop_map(|(keys, kinds, prior, failures, limit, lanes, mode)| Plan {
            steps: keys
                .into_iter()
                .zip(kinds)
                .map(|(key, (kind, delay))| Step { key, kind, delay })
                .collect(),
            prior,
            failures,
            limit,
            lanes,
            mode,
        })
}

/// What the model says of each input: whether it is recalled (and with
/// what), when it is pulled, when it is handed over.
struct Sim {
    recalled: Vec<Option<Seen>>,
    start: Vec<u64>,
    finish: Vec<u64>,
}

fn simulate(plan: &Plan) -> Sim {
    let last: BTreeMap<u32, Kind> = plan.prior.iter().copied().collect();
    let recalled: Vec<Option<Seen>> = plan
        .steps
        .iter()
        .map(|s| {
            let kind = *last.get(&s.key)?;
            let kept = matches!(kind, Kind::Ok(_)) || plan.failures == RecordedFailures::Keep;
            kept.then(|| of_kind(kind, s.key))
        })
        .collect();
    let mut free: BinaryHeap<Reverse<u64>> = (0..plan.limit).map(|_| Reverse(0)).collect();
    let n = plan.steps.len();
    let (mut start, mut finish) = (vec![NEVER; n], vec![NEVER; n]);
    for (i, step) in plan.steps.iter().enumerate() {
        // Pulled when a slot is free; a recalled input gives it back at once.
        let Reverse(s) = free.pop().expect("limit slots");
        start[i] = s;
        finish[i] = if recalled[i].is_some() {
            s
        } else {
            s + step.delay
        };
        free.push(Reverse(finish[i]));
    }
    Sim {
        recalled,
        start,
        finish,
    }
}

/// The outcome input `i` ends with when nothing stops the run.
fn final_outcome(plan: &Plan, sim: &Sim, i: usize) -> Seen {
    sim.recalled[i]
        .clone()
        .unwrap_or_else(|| of_kind(plan.steps[i].kind, plan.steps[i].key))
}

fn is_failure(seen: &Seen) -> bool {
    matches!(seen, Seen::Failed(_) | Seen::Panicked(_))
}

/// When a fail-fast run stops: the first failure handed over, run or
/// recalled.
fn stop_at(plan: &Plan, sim: &Sim) -> Option<u64> {
    (0..plan.steps.len())
        .filter(|&i| is_failure(&final_outcome(plan, sim, i)))
        .map(|i| sim.finish[i])
        .min()
}

/// The outcomes input `i` may have in a fail-fast run stopped at `t`, or
/// `None` if it is never pulled (then it is only counted as not started).
fn allowed_at_stop(plan: &Plan, sim: &Sim, t: u64, i: usize) -> BTreeSet<Seen> {
    let (s, f) = (sim.start[i], sim.finish[i]);
    let own = final_outcome(plan, sim, i);
    let mut set = BTreeSet::new();
    if s > t {
        set.insert(Seen::NotStarted);
    } else if sim.recalled[i].is_some() {
        // Pulled before the stop, or at its instant (then maybe not pulled).
        set.insert(own);
        if s == t {
            set.insert(Seen::NotStarted);
        }
    } else if s < t {
        if f < t {
            set.insert(own);
        } else if f == t {
            set.insert(own);
            set.insert(Seen::Cancelled);
        } else {
            set.insert(Seen::Cancelled);
        }
    } else {
        set.insert(Seen::NotStarted);
        if f == t {
            set.insert(own);
        } else {
            set.insert(Seen::Cancelled);
        }
    }
    set
}

/// What one run produced.
#[derive(Debug)]
enum Observed {
    /// `run` returned `Ok`: the values in input order.
    Values(Vec<u64>),
    /// `run` returned the run's error: the cause (index and outcome), the
    /// others, the counts.
    Error {
        cause: Option<(usize, Seen)>,
        others: Vec<(usize, Seen)>,
        counts: fanout::Counts,
    },
    /// `run_all`: every outcome, and whether it was recalled.
    Report(Vec<(u32, Seen, bool)>, fanout::Counts),
    /// A stream: each item, with whether it was recalled and when it came.
    Stream(Vec<(u32, Seen, bool, u64)>),
}

fn options() -> Options {
    Options::new(Fingerprint::of(["durable model"]))
}

fn execute(
    rt: &tokio::runtime::Runtime,
    plan: &Plan,
    path: &std::path::Path,
    rec: &Arc<Bodies>,
) -> Observed {
    let journal = options().resume(path, Format::new()).unwrap().journal;
    let r = rec.clone();
    let task = move |ctx: TaskCtx<u32>, step: Step| {
        let r = r.clone();
        async move {
            let _guard = r.enter(ctx.index());
            if step.delay > 0 {
                tokio::time::sleep(Duration::from_millis(step.delay)).await;
            }
            match step.kind {
                Kind::Ok(v) => Ok(v),
                Kind::Err(c) => Err(c),
                Kind::Panic => panic!("{}", panic_message(step.key)),
            }
        }
    };
    let inputs: Vec<(u32, Step)> = plan.steps.iter().map(|s| (s.key, *s)).collect();
    // A window that never fills, as in the model of `integrity`.
    let window = plan.steps.len().max(1) * plan.limit;
    let run = fan_out_keyed(inputs)
        .limit(plan.limit)
        .lanes(plan.lanes)
        .panics(PanicPolicy::AsError)
        .window(window)
        .journal(journal)
        .recorded_failures(plan.failures);
    let rec = rec.clone();
    let index_of = |key: u32| plan.steps.iter().position(|s| s.key == key).unwrap();
    rt.block_on(async move {
        match plan.mode {
            Mode::Run => match run.run(task).await {
                Ok(values) => Observed::Values(values.into_iter().map(|(_, v)| v).collect()),
                Err(RunError::Run(e)) => {
                    let (cause, others, counts) = e.into_parts();
                    let cause = match cause {
                        Cause::Task(f) => {
                            assert_eq!(f.index, index_of(f.key));
                            Some((f.index, seen(&Err(f.error))))
                        }
                        _ => None,
                    };
                    let others = others
                        .into_iter()
                        .map(|f| (f.index, seen(&Err(f.error))))
                        .collect();
                    Observed::Error {
                        cause,
                        others,
                        counts,
                    }
                }
                Err(e) => panic!("the journal failed: {e:?}"),
            },
            Mode::RunAll => {
                let report = run.run_all(task).await.unwrap();
                let counts = *report.counts();
                let recalled: Vec<bool> =
                    (0..report.len()).map(|i| report.is_recalled(i)).collect();
                Observed::Report(
                    report
                        .into_outcomes()
                        .into_iter()
                        .zip(recalled)
                        .map(|((k, o), r)| (k, seen(&o), r))
                        .collect(),
                    counts,
                )
            }
            Mode::StreamCompletion | Mode::StreamInput => {
                let order = if plan.mode == Mode::StreamInput {
                    Order::Input
                } else {
                    Order::Completion
                };
                let mut stream = run.stream(order, task);
                let mut yields = Vec::new();
                while let Some(item) = stream.next().await {
                    let (k, o, origin) = item.unwrap();
                    yields.push((k, seen(&o), origin.is_recalled(), since(rec.t0)));
                }
                Observed::Stream(yields)
            }
        }
    })
}

fn check(plan: &Plan) -> Result<(), TestCaseError> {
    quiet_intentional_panics();
    let n = plan.steps.len();
    let sim = simulate(plan);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    {
        let journal = options().create(&path, Format::new()).unwrap().journal;
        for (key, kind) in &plan.prior {
            journal.record(key, &outcome_of(*kind, *key)).unwrap();
        }
    }
    let prior_bytes = std::fs::read(&path).unwrap();
    let rt = paused_runtime();
    // Inside the runtime, so that its time 0 is the paused clock's.
    let rec = rt.block_on(async { Bodies::new(n) });
    let observed = execute(&rt, plan, &path, &rec);

    prop_assert_eq!(rec.live.now(), 0, "live task bodies when the run returned");
    prop_assert!(rec.live.max() <= plan.limit, "over the limit");

    // The journal: what it held, untouched, then one record per input that
    // ran and completed.
    let after = std::fs::read(&path).unwrap();
    prop_assert_eq!(
        &after[..prior_bytes.len()],
        &prior_bytes[..],
        "prior records changed"
    );
    let records = parse(&Format::new(), &after).unwrap().records;
    prop_assert!(!parse(&Format::new(), &after).unwrap().torn);
    let appended: Vec<(u32, Seen)> = records[plan.prior.len()..]
        .iter()
        .map(|(k, o)| (*k, seen(o)))
        .collect();
    let mut appended_keys: Vec<u32> = appended.iter().map(|(k, _)| *k).collect();
    appended_keys.sort_unstable();
    let unique = appended_keys.len();
    appended_keys.dedup();
    prop_assert_eq!(
        unique,
        appended_keys.len(),
        "a key recorded twice: {:?}",
        appended
    );
    let appended: BTreeMap<u32, Seen> = appended.into_iter().collect();
    for (k, o) in &appended {
        let i = plan
            .steps
            .iter()
            .position(|s| s.key == *k)
            .ok_or_else(|| TestCaseError::fail(format!("{k} recorded, not an input")))?;
        prop_assert!(
            sim.recalled[i].is_none(),
            "recalled input {} recorded again",
            i
        );
        prop_assert_eq!(o, &of_kind(plan.steps[i].kind, *k), "record of input {}", i);
    }
    let opened = options().resume(&path, Format::new()).unwrap();
    prop_assert!(
        opened.previous.unwrap().finished,
        "the run returned normally"
    );

    // Starts: recalled inputs never run; the others start once, when the
    // model says (recalled inputs take no slot), never after a stop.
    let stop = if plan.mode == Mode::Run {
        stop_at(plan, &sim)
    } else {
        None
    };
    let starts = rec.starts.lock().unwrap().clone();
    for (i, s) in starts.iter().enumerate() {
        if sim.recalled[i].is_some() {
            prop_assert!(s.is_empty(), "recalled input {} ran", i);
            continue;
        }
        prop_assert!(s.len() <= 1, "input {} started {} times", i, s.len());
        match (s.first(), stop) {
            (Some(&t), _) => prop_assert_eq!(t, sim.start[i], "start of input {}", i),
            (None, Some(t)) => prop_assert!(sim.start[i] >= t, "input {} never started", i),
            (None, None) => prop_assert!(false, "input {} never started", i),
        }
    }

    let index_of = |key: u32| plan.steps.iter().position(|s| s.key == key).unwrap();
    match observed {
        Observed::Values(values) => {
            prop_assert_eq!(stop, None, "Ok although the model stops");
            let expected: Vec<u64> = (0..n)
                .map(|i| match final_outcome(plan, &sim, i) {
                    Seen::Ok(v) => v,
                    other => unreachable!("no failure, yet {other:?}"),
                })
                .collect();
            prop_assert_eq!(values, expected);
            prop_assert_eq!(
                appended.len(),
                sim.recalled.iter().filter(|r| r.is_none()).count()
            );
        }
        Observed::Error {
            cause,
            others,
            counts,
        } => {
            let t = stop.ok_or_else(|| TestCaseError::fail("Err although nothing fails"))?;
            prop_assert_eq!(counts.total(), n);
            let (ci, c) = cause.ok_or_else(|| TestCaseError::fail("the cause is not a task"))?;
            prop_assert_eq!(sim.finish[ci], t, "the cause failed first");
            prop_assert_eq!(&c, &final_outcome(plan, &sim, ci));
            let allowed: Vec<BTreeSet<Seen>> =
                (0..n).map(|i| allowed_at_stop(plan, &sim, t, i)).collect();
            for (i, o) in &others {
                prop_assert!(allowed[*i].contains(o), "other failure {} {:?}", i, o);
            }
            // Every failure and success reported that ran was recorded, and
            // only those.
            let ran_and_completed =
                counts.succeeded + counts.failed + counts.panicked - counts.recalled;
            prop_assert_eq!(appended.len(), ran_and_completed);
            if sim.recalled[ci].is_none() {
                prop_assert!(
                    appended.contains_key(&plan.steps[ci].key),
                    "the cause is recorded"
                );
            }
            let within = |count: usize, f: &dyn Fn(usize, &BTreeSet<Seen>) -> bool| {
                let sure = (0..n)
                    .filter(|&i| allowed[i].len() == 1 && f(i, &allowed[i]))
                    .count();
                let may = (0..n).filter(|&i| f(i, &allowed[i])).count();
                sure <= count && count <= may
            };
            prop_assert!(within(counts.recalled, &|i, a| sim.recalled[i].is_some()
                && a.iter().any(|s| !matches!(s, Seen::NotStarted))));
            prop_assert!(within(counts.succeeded, &|_, a| a
                .iter()
                .any(|s| matches!(s, Seen::Ok(_)))));
            prop_assert!(within(counts.not_started, &|_, a| a.contains(&Seen::NotStarted)));
            prop_assert!(within(counts.cancelled, &|_, a| a.contains(&Seen::Cancelled)));
        }
        Observed::Report(outcomes, counts) => {
            prop_assert_eq!(outcomes.len(), n);
            for (i, (k, o, recalled)) in outcomes.iter().enumerate() {
                prop_assert_eq!(*k, plan.steps[i].key);
                prop_assert_eq!(o, &final_outcome(plan, &sim, i), "input {}", i);
                prop_assert_eq!(*recalled, sim.recalled[i].is_some(), "input {} recalled", i);
                prop_assert_eq!(
                    appended.get(k),
                    sim.recalled[i].is_none().then_some(o),
                    "the record of input {}",
                    i
                );
            }
            prop_assert_eq!(
                counts.recalled,
                sim.recalled.iter().filter(|r| r.is_some()).count()
            );
        }
        Observed::Stream(yields) => {
            prop_assert_eq!(yields.len(), n, "one outcome per input");
            let mut yielded = BTreeSet::new();
            for (pos, (k, o, recalled, at)) in yields.iter().enumerate() {
                let i = index_of(*k);
                prop_assert!(yielded.insert(i), "input {} yielded twice", i);
                if plan.mode == Mode::StreamInput {
                    prop_assert_eq!(i, pos, "input order");
                }
                prop_assert_eq!(o, &final_outcome(plan, &sim, i), "input {}", i);
                prop_assert_eq!(*recalled, sim.recalled[i].is_some(), "input {} recalled", i);
                prop_assert_eq!(
                    appended.get(k),
                    sim.recalled[i].is_none().then_some(o),
                    "the record of input {}",
                    i
                );
                // Handed over when the model says: recalled ones at once.
                let expected_at = match plan.mode {
                    Mode::StreamInput => (0..=i).map(|j| sim.finish[j]).max().unwrap_or(0),
                    _ => sim.finish[i],
                };
                prop_assert_eq!(*at, expected_at, "when input {} was yielded", i);
            }
        }
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let mut cfg = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        cfg.cases = 256;
    }
    // Failing seeds are printed; each case's files are temporary.
    cfg.failure_persistence = None;
    cfg
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn journaled_fail_fast_and_collect_all_runs_agree_with_the_sequential_model(
        plan in plan_strategy(&[Mode::Run, Mode::RunAll])
    ) {
        check(&plan)?;
    }

    #[test]
    fn journaled_streams_in_both_orders_agree_with_the_sequential_model(
        plan in plan_strategy(&[Mode::StreamCompletion, Mode::StreamInput])
    ) {
        check(&plan)?;
    }
}
