//! A property test of the async engine against a sequential reference model.
//! Besides integrity (one outcome per input, in input order, the right one),
//! it checks that no task is alive when a run returns, that the limit holds,
//! when each input starts, which failure is the cause, that panics are
//! re-raised or reported as they must be, and when streams yield.
//!
//! Each case draws a plan: per input an outcome (ok, slow ok, error, panic,
//! hang) and a delay in virtual milliseconds, plus a limit, a lane count, a
//! run mode and a panic policy. The case runs on a current-thread runtime
//! with a paused clock, so every start and finish time is exact.
//!
//! The model: inputs are pulled in order, each as soon as one of `limit`
//! slots is free, and a slot is freed when its task's result is handed over
//! (at completion; for an input-order stream, when the result leaves the
//! reorder window). Lanes do not change this: a lane pulls at once when one of
//! its slots frees. From those start and finish times the model predicts
//! where the run stops (first genuine failure, first panic, or the deadline
//! when hung tasks block it) and the set of outcomes allowed for each input.
//! Where several tasks finish at the very instant of the stop, any of them
//! may be observed first, so the model allows each of its outcomes.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use fanout::{fan_out, Cause, Order, PanicPolicy, TaskCtx, TaskError};
use proptest::prelude::*;

use crate::common::{
    self, catch_unwind, multi_thread_runtime, paused_runtime, quiet_intentional_panics, Bodies,
};

/// The deadline set whenever a plan can hang: far beyond any finite plan.
const DEADLINE_MS: u64 = 100_000;
/// "Never": a hung task's finish, an input never pulled.
const NEVER: u64 = u64::MAX;
/// Starts every task panic's message; marked intentional for the quiet hook.
const PANIC_TAG: &str = "[intentional] fanout-model-panic";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ok(u64),
    Err(u32),
    Panic,
    Hang,
}

#[derive(Clone, Copy, Debug)]
struct Step {
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
    limit: usize,
    lanes: usize,
    mode: Mode,
    policy: PanicPolicy,
    deadline: bool,
}

/// One observed or allowed outcome, comparable.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Ok(u64),
    Failed(u32),
    Panicked(String),
    TimedOut,
    Cancelled,
    NotStarted,
}

fn seen<T: Into<u64> + Copy>(o: &Result<T, TaskError<u32>>) -> Seen {
    match o {
        Ok(v) => Seen::Ok((*v).into()),
        Err(TaskError::Failed(c)) => Seen::Failed(*c),
        Err(TaskError::Panicked(p)) => Seen::Panicked(p.message().unwrap_or("?").to_owned()),
        Err(TaskError::TimedOut(_)) => Seen::TimedOut,
        Err(TaskError::Cancelled) => Seen::Cancelled,
        Err(TaskError::NotStarted) => Seen::NotStarted,
        Err(_) => unreachable!("an outcome this test does not know"),
    }
}

fn task_panic_message(index: usize) -> String {
    format!("{PANIC_TAG} {index}")
}

fn own(step: &Step, index: usize) -> Option<Seen> {
    match step.kind {
        Kind::Ok(v) => Some(Seen::Ok(v)),
        Kind::Err(c) => Some(Seen::Failed(c)),
        Kind::Panic => Some(Seen::Panicked(task_panic_message(index))),
        Kind::Hang => None,
    }
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u64..20, any::<u16>()).prop_map(|(delay, v)| Step { kind: Kind::Ok(u64::from(v)), delay }),
        1 => (50u64..200, any::<u16>()).prop_map(|(delay, v)| Step { kind: Kind::Ok(u64::from(v)), delay }),
        1 => (0u64..20, 1u32..100).prop_map(|(delay, c)| Step { kind: Kind::Err(c), delay }),
        1 => (0u64..20).prop_map(|delay| Step { kind: Kind::Panic, delay }),
        1 => Just(Step { kind: Kind::Hang, delay: 0 }),
    ]
}

fn plan_strategy(modes: &'static [Mode]) -> impl Strategy<Value = Plan> {
    (
        proptest::collection::vec(step_strategy(), 0..=24),
        1usize..=8,
        1usize..=3,
        proptest::sample::select(modes),
        prop_oneof![Just(PanicPolicy::Propagate), Just(PanicPolicy::AsError)],
        any::<bool>(),
    )
        .prop_map(|(steps, limit, lanes, mode, policy, deadline)| {
            let hangs = steps.iter().any(|s| s.kind == Kind::Hang);
            Plan {
                steps,
                limit,
                lanes,
                mode,
                policy,
                deadline: deadline || hangs,
            }
        })
}

/// Start and finish times of every input if nothing stopped the run (but the
/// deadline, which stops pulling).
struct Sim {
    start: Vec<u64>,
    finish: Vec<u64>,
}

fn simulate(plan: &Plan) -> Sim {
    let n = plan.steps.len();
    let deadline = if plan.deadline { DEADLINE_MS } else { NEVER };
    let mut free: BinaryHeap<Reverse<u64>> = (0..plan.limit).map(|_| Reverse(0)).collect();
    let mut start = vec![NEVER; n];
    let mut finish = vec![NEVER; n];
    for (i, step) in plan.steps.iter().enumerate() {
        let Reverse(s) = free.pop().expect("limit slots");
        if s == NEVER || s >= deadline {
            break;
        }
        start[i] = s;
        finish[i] = match step.kind {
            Kind::Hang => NEVER,
            _ => s + step.delay,
        };
        // A slot frees when its task finishes, in every mode: a stream's
        // results wait in its window, which the runs below make large
        // enough never to fill (the window's bound is proved in
        // `bounded.rs` and `streams.rs`).
        free.push(Reverse(finish[i]));
    }
    Sim { start, finish }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopKind {
    None,
    /// A genuine failure (fail-fast) or a panic under `Propagate`.
    Failure(u64),
    Deadline,
}

/// Where the model says the run stops.
fn predicted_stop(plan: &Plan, sim: &Sim) -> StopKind {
    let stops_on = |k: Kind| match k {
        Kind::Err(_) => plan.mode == Mode::Run,
        Kind::Panic => plan.mode == Mode::Run || plan.policy == PanicPolicy::Propagate,
        _ => false,
    };
    let first = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(i, s)| sim.start[*i] != NEVER && stops_on(s.kind))
        .map(|(i, _)| sim.finish[i])
        .min();
    if let Some(t) = first {
        return StopKind::Failure(t);
    }
    let hung = plan
        .steps
        .iter()
        .enumerate()
        .any(|(i, s)| s.kind == Kind::Hang && sim.start[i] != NEVER);
    if hung {
        StopKind::Deadline
    } else {
        StopKind::None
    }
}

/// The outcomes input `i` may have, given where the run stops.
fn allowed(plan: &Plan, sim: &Sim, stop: StopKind, i: usize) -> BTreeSet<Seen> {
    let step = &plan.steps[i];
    let (s, f) = (sim.start[i], sim.finish[i]);
    let own = own(step, i);
    let mut set = BTreeSet::new();
    match stop {
        StopKind::None => {
            set.insert(own.expect("no hang runs without a stop"));
        }
        StopKind::Deadline => {
            if s == NEVER {
                set.insert(Seen::NotStarted);
            } else if f == NEVER {
                set.insert(Seen::Cancelled);
            } else {
                set.extend(own);
            }
        }
        StopKind::Failure(t) => {
            if s > t {
                set.insert(Seen::NotStarted);
            } else if s < t {
                if f < t {
                    set.extend(own);
                } else if f == t {
                    set.extend(own);
                    set.insert(Seen::Cancelled);
                } else {
                    set.insert(Seen::Cancelled);
                }
            } else {
                set.insert(Seen::NotStarted);
                if f == t {
                    set.extend(own);
                } else {
                    set.insert(Seen::Cancelled);
                }
            }
        }
    }
    set
}

/// What one run produced.
#[derive(Debug)]
enum Observed {
    /// `run` returned `Ok`.
    Values(Vec<u64>),
    /// `run` returned `Err`: cause (index and outcome, or a stop), others, counts.
    Error {
        cause: Result<(usize, Seen), &'static str>,
        others: Vec<(usize, Seen)>,
        counts: fanout::Counts,
    },
    /// `run_all` returned a report.
    Report {
        outcomes: Vec<(usize, Seen)>,
        /// `Some("deadline")` or `Some("cancelled")` when the run stopped early.
        stopped_by: Option<&'static str>,
    },
    /// A stream's yields: index, outcome, virtual ms; then whether it ended
    /// or panicked (with the message).
    Stream { yields: Vec<(usize, Seen, u64)> },
}

struct Outcome {
    observed: Observed,
    /// The message of the panic the run re-raised, if it did.
    panic: Option<String>,
    /// Live task bodies at the moment the run returned or panicked.
    live_at_end: usize,
}

fn execute(rt: &tokio::runtime::Runtime, plan: &Plan, rec: &Arc<Bodies>) -> Outcome {
    let steps = plan.steps.clone();
    let r = rec.clone();
    let task = move |ctx: TaskCtx<usize>, step: Step| {
        let r = r.clone();
        async move {
            let _guard = r.enter(ctx.index());
            if step.kind == Kind::Hang {
                std::future::pending::<()>().await;
            }
            if step.delay > 0 {
                tokio::time::sleep(Duration::from_millis(step.delay)).await;
            }
            match step.kind {
                Kind::Ok(v) => Ok(v),
                Kind::Err(c) => Err(c),
                Kind::Panic => panic!("{}", task_panic_message(ctx.index())),
                Kind::Hang => unreachable!("hung tasks never get here"),
            }
        }
    };
    let mut run = fan_out(steps)
        .limit(plan.limit)
        .lanes(plan.lanes)
        .panics(plan.policy);
    if plan.deadline {
        run = run.deadline(Duration::from_millis(DEADLINE_MS));
    }
    let rec = rec.clone();
    rt.block_on(async move {
        match plan.mode {
            Mode::Run => {
                let res = catch_unwind(run.run(task)).await;
                let live_at_end = rec.live.now();
                let (observed, panic) = match res {
                    Err(p) => (
                        Observed::Values(vec![]),
                        Some(common::panic_message(&*p).unwrap_or_default().to_owned()),
                    ),
                    Ok(Ok(values)) => (Observed::Values(values), None),
                    Ok(Err(e)) => {
                        let (cause, others, counts) = e.into_parts();
                        let cause = match cause {
                            Cause::Task(f) => {
                                assert_eq!(f.key, f.index, "an unkeyed task's key is its index");
                                Ok((f.index, seen(&Err::<u64, _>(f.error))))
                            }
                            Cause::Cancelled => Err("cancelled"),
                            Cause::DeadlineExceeded => Err("deadline"),
                            _ => Err("unknown cause"),
                        };
                        let others = others
                            .into_iter()
                            .map(|f| (f.index, seen(&Err::<u64, _>(f.error))))
                            .collect();
                        (
                            Observed::Error {
                                cause,
                                others,
                                counts,
                            },
                            None,
                        )
                    }
                };
                Outcome {
                    observed,
                    panic,
                    live_at_end,
                }
            }
            Mode::RunAll => {
                let res = catch_unwind(run.run_all(task)).await;
                let live_at_end = rec.live.now();
                match res {
                    Err(p) => Outcome {
                        observed: Observed::Report {
                            outcomes: vec![],
                            stopped_by: None,
                        },
                        panic: Some(common::panic_message(&*p).unwrap_or_default().to_owned()),
                        live_at_end,
                    },
                    Ok(report) => {
                        assert_eq!(report.counts().total(), report.len());
                        let stopped_by = report.stopped_by().map(|c| match c {
                            Cause::DeadlineExceeded => "deadline",
                            Cause::Cancelled => "cancelled",
                            _ => "task",
                        });
                        let outcomes = report
                            .into_outcomes()
                            .into_iter()
                            .map(|(k, o)| (k, seen(&o)))
                            .collect();
                        Outcome {
                            observed: Observed::Report {
                                outcomes,
                                stopped_by,
                            },
                            panic: None,
                            live_at_end,
                        }
                    }
                }
            }
            Mode::StreamCompletion | Mode::StreamInput => {
                let order = if plan.mode == Mode::StreamInput {
                    Order::Input
                } else {
                    Order::Completion
                };
                // A window that never fills: see `simulate`.
                let window = plan.steps.len().max(1) * plan.limit;
                let mut stream = run.window(window).stream(order, task);
                let mut yields = Vec::new();
                let mut panic = None;
                loop {
                    match catch_unwind(stream.next()).await {
                        Ok(Some((k, o))) => yields.push((k, seen(&o), rec.now_ms())),
                        Ok(None) => break,
                        Err(p) => {
                            panic = Some(common::panic_message(&*p).unwrap_or_default().to_owned());
                            break;
                        }
                    }
                }
                let live_at_end = rec.live.now();
                if panic.is_some() {
                    assert!(
                        catch_unwind(stream.next()).await.is_ok_and(|o| o.is_none()),
                        "after re-raising a panic the stream ends"
                    );
                }
                Outcome {
                    observed: Observed::Stream { yields },
                    panic,
                    live_at_end,
                }
            }
        }
    })
}

fn check(plan: &Plan) -> Result<(), TestCaseError> {
    quiet_intentional_panics();
    let n = plan.steps.len();
    let sim = simulate(plan);
    let stop = predicted_stop(plan, &sim);
    let stop_at = match stop {
        StopKind::None => NEVER,
        StopKind::Failure(t) => t,
        StopKind::Deadline => DEADLINE_MS,
    };
    let allowed: Vec<BTreeSet<Seen>> = (0..n).map(|i| allowed(plan, &sim, stop, i)).collect();
    let rt = paused_runtime();
    // Inside the runtime, so that its time 0 is the paused clock's.
    let rec = rt.block_on(async { Bodies::new(n) });
    let out = execute(&rt, plan, &rec);

    // No orphans and bounded: nothing alive when the run returns; never more
    // than `limit`.
    prop_assert_eq!(out.live_at_end, 0, "live task bodies when the run returned");
    prop_assert!(rec.live.max() <= plan.limit);

    // Every body started at most once, exactly when the model says, and none
    // after the stop (fail-fast).
    let starts = rec.starts.lock().unwrap().clone();
    for (i, s) in starts.iter().enumerate() {
        prop_assert!(s.len() <= 1, "input {} started {} times", i, s.len());
        if let Some(&t) = s.first() {
            prop_assert_eq!(t, sim.start[i], "start time of input {}", i);
            prop_assert!(t <= stop_at, "input {} started at {} after the stop", i, t);
        } else {
            prop_assert!(
                sim.start[i] >= stop_at,
                "input {} never started; model start {}",
                i,
                sim.start[i]
            );
        }
    }

    // Panics: which panics may be re-raised, and which must be.
    let propagates = plan.policy == PanicPolicy::Propagate;
    let possible_panics: BTreeSet<String> = (0..n)
        .filter(|&i| plan.steps[i].kind == Kind::Panic && sim.finish[i] == stop_at)
        .map(task_panic_message)
        .collect();
    let panic_must = propagates
        && matches!(stop, StopKind::Failure(_))
        && match plan.mode {
            // Fail-fast: when every failure at the stop instant is a panic.
            Mode::Run => (0..n)
                .filter(|&i| {
                    matches!(plan.steps[i].kind, Kind::Err(_) | Kind::Panic)
                        && sim.finish[i] == stop_at
                })
                .all(|i| plan.steps[i].kind == Kind::Panic),
            _ => true,
        };
    match &out.panic {
        Some(msg) => {
            prop_assert!(propagates, "a panic escaped under AsError: {}", msg);
            prop_assert!(
                possible_panics.contains(msg),
                "re-raised {:?}, expected one of {:?}",
                msg,
                possible_panics
            );
        }
        None => prop_assert!(!panic_must, "a task panic was swallowed"),
    }

    match out.observed {
        Observed::Values(values) => {
            if out.panic.is_none() {
                prop_assert_eq!(stop, StopKind::None, "Ok although the model stops");
                let expected: Vec<u64> = plan
                    .steps
                    .iter()
                    .map(|s| match s.kind {
                        Kind::Ok(v) => v,
                        _ => unreachable!(),
                    })
                    .collect();
                prop_assert_eq!(values, expected);
            }
        }
        Observed::Error {
            cause,
            others,
            counts,
        } => {
            prop_assert!(stop != StopKind::None, "Err although nothing fails");
            prop_assert_eq!(counts.total(), n);
            match stop {
                StopKind::Deadline => {
                    prop_assert_eq!(&cause, &Err("deadline"));
                }
                StopKind::Failure(t) => {
                    let (ci, c) = cause
                        .clone()
                        .map_err(|e| TestCaseError::fail(format!("cause is {e}, not a task")))?;
                    prop_assert_eq!(sim.finish[ci], t, "the cause failed first");
                    prop_assert_eq!(Some(c), own(&plan.steps[ci], ci));
                }
                StopKind::None => unreachable!(),
            }
            let mut seen_idx = BTreeSet::new();
            if let Ok((ci, _)) = &cause {
                seen_idx.insert(*ci);
            }
            for (i, o) in &others {
                prop_assert!(seen_idx.insert(*i), "input {} reported twice", i);
                prop_assert!(allowed[*i].contains(o), "other failure {} {:?}", i, o);
            }
            // Counts lie between what every input must be and may be.
            let count = |f: fn(&Seen) -> bool| {
                let sure = allowed
                    .iter()
                    .filter(|a| a.len() == 1 && a.iter().all(f))
                    .count();
                let may = allowed.iter().filter(|a| a.iter().any(f)).count();
                (sure, may)
            };
            let within = |c: usize, (sure, may): (usize, usize)| sure <= c && c <= may;
            prop_assert!(within(
                counts.succeeded,
                count(|s| matches!(s, Seen::Ok(_)))
            ));
            prop_assert!(within(
                counts.cancelled,
                count(|s| matches!(s, Seen::Cancelled))
            ));
            prop_assert!(within(
                counts.not_started,
                count(|s| matches!(s, Seen::NotStarted))
            ));
            prop_assert_eq!(
                counts.failed + counts.panicked,
                others.len() + usize::from(cause.is_ok())
            );
            prop_assert_eq!(counts.timed_out, 0);
        }
        Observed::Report {
            outcomes,
            stopped_by,
        } => {
            if out.panic.is_none() {
                prop_assert!(!panic_must);
                prop_assert_eq!(outcomes.len(), n);
                for (i, (k, o)) in outcomes.iter().enumerate() {
                    prop_assert_eq!(*k, i);
                    prop_assert!(
                        allowed[i].contains(o),
                        "input {}: {:?} not in {:?}",
                        i,
                        o,
                        allowed[i]
                    );
                }
                let expected_stop = match stop {
                    StopKind::Deadline => Some("deadline"),
                    _ => None,
                };
                prop_assert_eq!(stopped_by, expected_stop);
            }
        }
        Observed::Stream { yields } => {
            let mut yielded = BTreeSet::new();
            for (pos, (i, o, at)) in yields.iter().enumerate() {
                prop_assert!(yielded.insert(*i), "input {} yielded twice", i);
                prop_assert!(
                    allowed[*i].contains(o),
                    "input {}: {:?} not in {:?}",
                    i,
                    o,
                    allowed[*i]
                );
                if plan.mode == Mode::StreamInput {
                    prop_assert_eq!(*i, pos, "input order");
                }
                // When the model says the result is handed over.
                let done = |j: usize| sim.finish[j].min(DEADLINE_MS);
                let expected_at = match plan.mode {
                    Mode::StreamInput => (0..=*i).map(done).max().unwrap_or(0),
                    _ => done(*i),
                };
                if out.panic.is_none() {
                    prop_assert_eq!(*at, expected_at, "when input {} was yielded", i);
                } else {
                    prop_assert!(*at <= stop_at);
                }
            }
            if out.panic.is_none() {
                prop_assert!(!panic_must, "the stream swallowed a panic");
                // Every input that was pulled yields one outcome; others none.
                let pulled: BTreeSet<usize> = (0..n).filter(|&i| sim.start[i] != NEVER).collect();
                prop_assert_eq!(yielded, pulled);
            }
        }
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let mut cfg = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        cfg.cases = 512;
    }
    // Failing seeds are printed; this test creates no files.
    cfg.failure_persistence = None;
    cfg
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fail_fast_and_collect_all_runs_agree_with_the_sequential_model(
        plan in plan_strategy(&[Mode::Run, Mode::RunAll])
    ) {
        check(&plan)?;
    }

    #[test]
    fn streams_in_both_orders_agree_with_the_sequential_model(
        plan in plan_strategy(&[Mode::StreamCompletion, Mode::StreamInput])
    ) {
        check(&plan)?;
    }
}

/// Fixed plans that once needed thought, kept as regular tests.
#[test]
fn the_model_agrees_on_a_failure_racing_an_ok_at_the_same_instant() {
    let steps = vec![
        Step {
            kind: Kind::Ok(1),
            delay: 10,
        },
        Step {
            kind: Kind::Err(7),
            delay: 10,
        },
        Step {
            kind: Kind::Ok(2),
            delay: 0,
        },
        Step {
            kind: Kind::Hang,
            delay: 0,
        },
    ];
    for mode in [
        Mode::Run,
        Mode::RunAll,
        Mode::StreamCompletion,
        Mode::StreamInput,
    ] {
        for lanes in 1..=2 {
            let plan = Plan {
                steps: steps.clone(),
                limit: 2,
                lanes,
                mode,
                policy: PanicPolicy::AsError,
                deadline: true,
            };
            check(&plan).unwrap_or_else(|e| panic!("{mode:?} lanes {lanes}: {e}"));
        }
    }
}

/// Found by the property test (shrunk), when a result waiting in an
/// input-order stream still held its task's slot: results 3-6, taken at
/// 19 ms, had to free two slots of the lane that runs input 7, so that input
/// 10 started then, not when input 7 finished at 20 ms. Kept as a case with
/// two lanes and a window that drains in steps.
#[test]
fn the_model_agrees_on_an_input_order_stream_whose_window_drains_in_steps() {
    let ok = |delay| Step {
        kind: Kind::Ok(0),
        delay,
    };
    let mut steps = vec![
        ok(0),
        Step {
            kind: Kind::Err(1),
            delay: 0,
        },
    ];
    steps.extend([18, 19, 0, 0, 0, 2, 0, 0, 0].map(ok));
    let plan = Plan {
        steps,
        limit: 5,
        lanes: 2,
        mode: Mode::StreamInput,
        policy: PanicPolicy::AsError,
        deadline: false,
    };
    check(&plan).unwrap_or_else(|e| panic!("{e}"));
}

/// A plan for the multi-thread check: per input ok, error or panic after a
/// number of yields (no timers: the clock cannot be paused there).
fn mt_plan_strategy() -> impl Strategy<Value = (Vec<(Kind, u8)>, usize, usize, Mode, PanicPolicy)> {
    (
        proptest::collection::vec(
            (
                prop_oneof![
                    6 => any::<u16>().prop_map(|v| Kind::Ok(u64::from(v))),
                    1 => (1u32..100).prop_map(Kind::Err),
                    1 => Just(Kind::Panic),
                ],
                0u8..6,
            ),
            0..=40,
        ),
        1usize..=8,
        1usize..=4,
        proptest::sample::select(
            &[
                Mode::Run,
                Mode::RunAll,
                Mode::StreamCompletion,
                Mode::StreamInput,
            ][..],
        ),
        prop_oneof![Just(PanicPolicy::Propagate), Just(PanicPolicy::AsError)],
    )
}

/// On a multi-thread runtime the interleaving is not reproducible, so only
/// what holds under every interleaving is checked: the limit, no task alive
/// at the end, one outcome per input, which failures may be the cause, and
/// that a panic is re-raised exactly when it must be.
fn check_multi_thread(
    (plan, limit, lanes, mode, policy): (Vec<(Kind, u8)>, usize, usize, Mode, PanicPolicy),
) -> Result<(), TestCaseError> {
    quiet_intentional_panics();
    let n = plan.len();
    let rt = multi_thread_runtime(2);
    let rec = rt.block_on(async { Bodies::new(n) });
    let r = rec.clone();
    let task = move |ctx: TaskCtx<usize>, (kind, yields): (Kind, u8)| {
        let r = r.clone();
        async move {
            let _guard = r.enter(ctx.index());
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            match kind {
                Kind::Ok(v) => Ok(v),
                Kind::Err(c) => Err(c),
                _ => panic!("{}", task_panic_message(ctx.index())),
            }
        }
    };
    let run = fan_out(plan.clone())
        .limit(limit)
        .lanes(lanes)
        .panics(policy);
    let any_panic = plan.iter().any(|s| s.0 == Kind::Panic);
    let propagates = policy == PanicPolicy::Propagate;
    let r2 = rec.clone();
    let p2 = plan.clone();
    let (panic, live_at_end) = rt.block_on(async move {
        let plan = p2;
        let failing = |i: usize| !matches!(plan[i].0, Kind::Ok(_));
        let live = || r2.live.now();
        match mode {
            Mode::Run => match catch_unwind(run.run(task)).await {
                Err(p) => (
                    Some(common::panic_message(&*p).unwrap_or_default().to_owned()),
                    live(),
                ),
                Ok(Ok(values)) => {
                    let live = live();
                    assert!((0..n).all(|i| !failing(i)), "Ok despite a failure");
                    let expected: Vec<u64> = plan
                        .iter()
                        .map(|s| match s.0 {
                            Kind::Ok(v) => v,
                            _ => unreachable!(),
                        })
                        .collect();
                    assert_eq!(values, expected);
                    (None, live)
                }
                Ok(Err(e)) => {
                    let live = live();
                    let i = e.failure().expect("a task is the cause").index;
                    assert!(failing(i), "input {i} is not a failure");
                    assert_eq!(e.counts().total(), n);
                    for f in e.others() {
                        assert!(failing(f.index) && f.index != i);
                    }
                    if propagates {
                        assert!(!plan[i].0.eq(&Kind::Panic), "a panic cause under Propagate");
                    }
                    (None, live)
                }
            },
            Mode::RunAll => match catch_unwind(run.run_all(task)).await {
                Err(p) => (
                    Some(common::panic_message(&*p).unwrap_or_default().to_owned()),
                    live(),
                ),
                Ok(report) => {
                    let live = live();
                    assert_eq!(report.len(), n);
                    for (i, (k, o)) in report.outcomes().iter().enumerate() {
                        assert_eq!(*k, i);
                        assert_eq!(
                            Some(seen(o)),
                            own(
                                &Step {
                                    kind: plan[i].0,
                                    delay: 0
                                },
                                i
                            )
                        );
                    }
                    (None, live)
                }
            },
            Mode::StreamCompletion | Mode::StreamInput => {
                let order = if mode == Mode::StreamInput {
                    Order::Input
                } else {
                    Order::Completion
                };
                let mut stream = run.stream(order, task);
                let mut yielded = Vec::new();
                let mut panic = None;
                loop {
                    match catch_unwind(stream.next()).await {
                        Ok(Some((k, o))) => {
                            let o = seen(&o);
                            let mine = own(
                                &Step {
                                    kind: plan[k].0,
                                    delay: 0,
                                },
                                k,
                            );
                            // A stop caused by a panic may overtake the panic
                            // in the channel across threads: see
                            // `under_propagate_no_outcome_caused_by_the_panic_is_yielded_before_it`
                            // in `panics.rs`.
                            let by_stop = propagates
                                && any_panic
                                && matches!(o, Seen::Cancelled | Seen::NotStarted);
                            assert!(Some(&o) == mine.as_ref() || by_stop, "input {k}: {o:?}");
                            yielded.push(k);
                        }
                        Ok(None) => break,
                        Err(p) => {
                            panic = Some(common::panic_message(&*p).unwrap_or_default().to_owned());
                            break;
                        }
                    }
                }
                let live = live();
                if mode == Mode::StreamInput {
                    assert!(yielded.iter().enumerate().all(|(pos, &k)| pos == k));
                }
                if panic.is_none() {
                    yielded.sort_unstable();
                    assert_eq!(yielded, (0..n).collect::<Vec<_>>());
                }
                (panic, live)
            }
        }
    });
    prop_assert_eq!(live_at_end, 0);
    prop_assert!(rec.live.max() <= limit);
    let starts = rec.starts.lock().unwrap();
    prop_assert!(starts.iter().all(|s| s.len() <= 1));
    let failing = |i: usize| !matches!(plan[i].0, Kind::Ok(_));
    let all_failures_are_panics = (0..n)
        .filter(|&i| failing(i))
        .all(|i| plan[i].0 == Kind::Panic);
    let panic_must = propagates
        && any_panic
        && match mode {
            Mode::Run => all_failures_are_panics,
            _ => true,
        };
    match panic {
        Some(msg) => {
            prop_assert!(propagates && any_panic, "unexpected panic {}", msg);
            let i: usize = msg.rsplit(' ').next().unwrap().parse().unwrap();
            prop_assert_eq!(plan[i].0, Kind::Panic);
        }
        None => prop_assert!(!panic_must, "a panic was swallowed"),
    }
    Ok(())
}

proptest! {
    #![proptest_config({
        let mut cfg = config();
        cfg.cases = cfg.cases.min(128);
        cfg
    })]

    #[test]
    fn every_mode_keeps_its_invariants_on_a_multi_thread_runtime(case in mt_plan_strategy()) {
        check_multi_thread(case)?;
    }
}
