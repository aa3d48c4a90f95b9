//! Observability: a `fanout.run` span per run, child of the span current
//! where the run is called, and a `fanout.task` span per task with its index,
//! key, attempt and outcome; task spans close before their run's span (part
//! of no orphans); and `Progress` shows the run while it goes and at its end.
//! A recording `tracing` layer captures every span, its fields and the order
//! spans close in.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::ms;
use fanout::{fan_out, fan_out_keyed, PanicPolicy, Progress, Retry};
use tokio::time::sleep;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Instrument;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone)]
struct SpanRec {
    id: u64,
    name: String,
    parent: Option<u64>,
    fields: HashMap<String, String>,
}

#[derive(Debug, Default)]
struct Log {
    spans: Vec<SpanRec>,
    closed: Vec<u64>,
}

/// Records every span's name, parent and fields, and the order spans close.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Log>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = if let Some(p) = attrs.parent() {
            Some(p.into_u64())
        } else if attrs.is_contextual() {
            ctx.current_span().id().map(Id::into_u64)
        } else {
            None
        };
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().spans.push(SpanRec {
            id: id.into_u64(),
            name: attrs.metadata().name().to_owned(),
            parent,
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut log = self.0.lock().unwrap();
        // Ids are reused once closed: the latest span with this id.
        if let Some(s) = log.spans.iter_mut().rev().find(|s| s.id == id.into_u64()) {
            values.record(&mut Fields(&mut s.fields));
        }
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        self.0.lock().unwrap().closed.push(id.into_u64());
    }
}

impl Recorder {
    fn named(&self, name: &str) -> Vec<SpanRec> {
        self.0
            .lock()
            .unwrap()
            .spans
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    fn closed(&self) -> Vec<u64> {
        self.0.lock().unwrap().closed.clone()
    }

    /// Asserts that every span recorded is closed, and every task span
    /// before its run span.
    fn assert_all_closed_tasks_first(&self) {
        let closed = self.closed();
        let pos = |id: u64| closed.iter().position(|&c| c == id);
        for run in self.named("fanout.run") {
            let r = pos(run.id).expect("the run span is closed when the run returns");
            for t in self.named("fanout.task") {
                if t.parent == Some(run.id) {
                    let p =
                        pos(t.id).unwrap_or_else(|| panic!("task span {:?} still open", t.fields));
                    assert!(p < r, "task span {:?} closed after the run span", t.fields);
                }
            }
        }
    }
}

/// Installs the recorder for the current thread; the tests use a
/// current-thread runtime, so every lane runs on this thread.
fn install() -> (Recorder, tracing::subscriber::DefaultGuard) {
    let rec = Recorder::default();
    let sub = tracing_subscriber::registry().with(rec.clone());
    let guard = tracing::subscriber::set_default(sub);
    (rec, guard)
}

fn field<'a>(s: &'a SpanRec, name: &str) -> Option<&'a str> {
    s.fields.get(name).map(String::as_str)
}

#[tokio::test(start_paused = true)]
async fn each_run_has_one_span_child_of_the_callers_span_and_one_child_span_per_task() {
    let (rec, _g) = install();
    let caller = tracing::info_span!("caller");
    let out = fan_out(0..5u64)
        .limit(2)
        .run(|_ctx, i| async move {
            sleep(ms(5 - i)).await;
            Ok::<_, ()>(i)
        })
        .instrument(caller.clone())
        .await
        .unwrap();
    assert_eq!(out, [0, 1, 2, 3, 4]);
    let runs = rec.named("fanout.run");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.parent, caller.id().map(|i| i.into_u64()));
    let tasks = rec.named("fanout.task");
    assert_eq!(tasks.len(), 5);
    let mut indices: Vec<&str> = tasks
        .iter()
        .map(|t| field(t, "task.index").unwrap())
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, ["0", "1", "2", "3", "4"]);
    for t in &tasks {
        assert_eq!(t.parent, Some(run.id));
        assert_eq!(field(t, "task.attempt"), Some("1"));
        assert_eq!(field(t, "task.outcome"), Some("ok"));
        assert!(
            field(t, "task.key").is_none(),
            "no key field for unkeyed input"
        );
    }
    rec.assert_all_closed_tasks_first();
}

#[tokio::test(start_paused = true)]
async fn the_run_span_is_a_child_of_the_span_current_where_the_run_is_called() {
    let (rec, _g) = install();
    let caller = tracing::info_span!("caller");
    // Built (called) inside the caller's span, awaited outside it, as when a
    // run is handed to `tokio::spawn` or `join!` elsewhere.
    let fut = caller.in_scope(|| fan_out(0..2u64).run(|_ctx, i| async move { Ok::<_, ()>(i) }));
    fut.await.unwrap();
    let runs = rec.named("fanout.run");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].parent,
        caller.id().map(|i| i.into_u64()),
        "the run span must be parented where `run` is called, as \
         `#[instrument]` on an async fn and `stream()` do"
    );
}

#[tokio::test(start_paused = true)]
async fn task_spans_record_every_outcome() {
    let (rec, _g) = install();
    let report = fan_out(0..4u64)
        .limit(4)
        .timeout(ms(50))
        .panics(PanicPolicy::AsError)
        .run_all(|_ctx, i| async move {
            match i {
                0 => Ok(0),
                1 => Err("no"),
                2 => panic!("[intentional] span test"),
                _ => {
                    sleep(ms(500)).await;
                    Ok(3)
                }
            }
        })
        .await;
    assert_eq!(report.len(), 4);
    let mut by_index: Vec<(String, String)> = rec
        .named("fanout.task")
        .iter()
        .map(|t| {
            (
                field(t, "task.index").unwrap().to_owned(),
                field(t, "task.outcome").unwrap_or("<none>").to_owned(),
            )
        })
        .collect();
    by_index.sort();
    let expected = [
        ("0", "ok"),
        ("1", "error"),
        ("2", "panic"),
        ("3", "timeout"),
    ]
    .map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(by_index, expected);
    rec.assert_all_closed_tasks_first();
}

#[tokio::test(start_paused = true)]
async fn on_the_fail_fast_path_task_spans_say_cancelled_or_not_started_and_close_before_the_run() {
    let (rec, _g) = install();
    let (tx0, rx0) = tokio::sync::oneshot::channel::<()>();
    let (tx1, rx1) = tokio::sync::oneshot::channel::<()>();
    let rxs = Arc::new(Mutex::new(vec![Some(rx0), Some(rx1)]));
    // One lane, limit 3: inputs 0 and 1 wait for a signal, 2 never ends.
    // Input 0 is released just before input 1: it succeeds, input 3 is
    // pulled into the freed slot, and input 1 fails around 3's first poll:
    // 3 did not start (today's lane polls the woken task 1 first) or was
    // cancelled; 2 is cancelled. Either way the span agrees with the counts.
    let run = fan_out(0..6u64).limit(3).lanes(1).run(move |ctx, i| {
        let rx = rxs
            .lock()
            .unwrap()
            .get_mut(ctx.index())
            .and_then(Option::take);
        async move {
            match (i, rx) {
                (0, Some(rx)) => {
                    rx.await.unwrap();
                    Ok(0)
                }
                (1, Some(rx)) => {
                    rx.await.unwrap();
                    Err("one")
                }
                _ => std::future::pending().await,
            }
        }
    });
    let release = async {
        sleep(ms(10)).await;
        tx0.send(()).unwrap();
        tx1.send(()).unwrap();
    };
    let (res, ()) = tokio::join!(run, release);
    let err = res.unwrap_err();
    assert_eq!(err.key(), Some(&1));
    let mut outcomes: Vec<(String, String)> = rec
        .named("fanout.task")
        .iter()
        .map(|t| {
            (
                field(t, "task.index").unwrap().to_owned(),
                field(t, "task.outcome").unwrap_or("<none>").to_owned(),
            )
        })
        .collect();
    outcomes.sort();
    let outcomes: Vec<(&str, &str)> = outcomes
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        outcomes[..3],
        [("0", "ok"), ("1", "error"), ("2", "cancelled")],
        "{outcomes:?}"
    );
    // Inputs 4 and 5 are never pulled: no span. Input 3 is pulled only if
    // the lane refilled the slot of 0 before it saw 1 fail (both finish in
    // the same wake-up; the lane delivers every ready task before pulling,
    // so today it is not pulled).
    assert!(
        outcomes.len() == 3 || outcomes.len() == 4,
        "inputs 4 and 5 were never pulled: no span: {outcomes:?}"
    );
    let three = outcomes.get(3).copied().unwrap_or(("3", "never pulled"));
    assert!(
        three == ("3", "not_started")
            || three == ("3", "cancelled")
            || three == ("3", "never pulled"),
        "{three:?}"
    );
    // Spans and counts tell the same story; 3 (unless cancelled), 4 and 5
    // count as not started.
    let c = err.counts();
    let three_cancelled = usize::from(three.1 == "cancelled");
    assert_eq!(c.not_started, 3 - three_cancelled);
    assert_eq!(c.cancelled, 1 + three_cancelled);
    assert_eq!((c.succeeded, c.failed), (1, 1));
    rec.assert_all_closed_tasks_first();
}

#[tokio::test(start_paused = true)]
async fn task_spans_of_a_dropped_stream_close_before_its_run_span() {
    let (rec, _g) = install();
    let stream = fan_out(0..10u64)
        .limit(3)
        .stream(fanout::Order::Completion, |_ctx, _i| {
            std::future::pending::<Result<(), ()>>()
        });
    sleep(ms(5)).await;
    drop(stream);
    sleep(ms(5)).await;
    assert_eq!(rec.named("fanout.task").len(), 3);
    for t in rec.named("fanout.task") {
        assert_eq!(field(&t, "task.outcome"), Some("cancelled"));
    }
    rec.assert_all_closed_tasks_first();
}

#[tokio::test(start_paused = true)]
async fn keyed_task_spans_carry_the_key_and_the_attempt_count() {
    let (rec, _g) = install();
    let out = fan_out_keyed(vec![("alpha", 1u32), ("beta", 3)])
        .retry(Retry::attempts(5).backoff(ms(1)))
        .run(|ctx, fails| async move {
            if ctx.attempt() < fails {
                Err(ctx.attempt())
            } else {
                Ok(ctx.attempt())
            }
        })
        .await
        .unwrap();
    assert_eq!(out, [("alpha", 1), ("beta", 3)]);
    let mut spans: Vec<(String, String, String)> = rec
        .named("fanout.task")
        .iter()
        .map(|t| {
            (
                field(t, "task.key").unwrap_or("<none>").to_owned(),
                field(t, "task.index").unwrap().to_owned(),
                field(t, "task.attempt").unwrap_or("<none>").to_owned(),
            )
        })
        .collect();
    spans.sort();
    let expected = [("\"alpha\"", "0", "1"), ("\"beta\"", "1", "3")]
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(spans, expected);
}

#[tokio::test(start_paused = true)]
async fn progress_shows_the_run_while_it_goes_and_at_its_end() {
    let progress = Progress::new();
    // Limit 2: 0 ok at 10, 1 fails at 20, 2 (from 10) panics at 30 as an
    // error, 3 (from 20) ok at 40, 4 (from 30) ok at 50, 5 (from 40) at 60.
    let delays = [10u64, 20, 20, 20, 20, 20];
    let run = fan_out(delays.into_iter().enumerate())
        .limit(2)
        .panics(PanicPolicy::AsError)
        .progress(&progress)
        .run_all(|_ctx, (i, d)| async move {
            sleep(ms(d)).await;
            match i {
                1 => Err("one"),
                2 => panic!("[intentional] progress"),
                _ => Ok(i),
            }
        });
    let t0 = tokio::time::Instant::now();
    let watch = async move {
        let mut snaps = Vec::new();
        for at in [5u64, 15, 25, 35] {
            tokio::time::sleep_until(t0 + ms(at)).await;
            snaps.push(progress.snapshot());
        }
        snaps
    };
    let (report, snaps) = tokio::join!(run, watch);
    assert_eq!(report.len(), 6);
    let view: Vec<_> = snaps
        .iter()
        .map(|s| (s.started, s.in_flight, s.succeeded, s.failed, s.finished))
        .collect();
    assert_eq!(
        view,
        [
            (2, 2, 0, 0, false),
            (3, 2, 1, 0, false),
            (4, 2, 1, 1, false),
            (5, 2, 1, 2, false),
        ]
    );
    assert_eq!(snaps[0].total, Some(6));
}

#[tokio::test(start_paused = true)]
async fn progress_counts_cancelled_and_not_started_tasks_of_a_stopped_run() {
    let progress = Progress::new();
    let err = fan_out(0..6u64)
        .limit(2)
        .progress(&progress)
        .run(|_ctx, i| async move {
            if i == 0 {
                sleep(ms(10)).await;
                Err::<(), _>("zero")
            } else {
                std::future::pending().await
            }
        })
        .await
        .unwrap_err();
    assert_eq!(err.key(), Some(&0));
    let s = progress.snapshot();
    assert_eq!(
        (
            s.started,
            s.in_flight,
            s.succeeded,
            s.failed,
            s.cancelled,
            s.not_started,
            s.finished
        ),
        (2, 0, 0, 1, 1, 4, true)
    );
    assert_eq!(s.total, Some(6));
}
