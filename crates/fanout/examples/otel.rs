//! Exports a run's spans through OpenTelemetry, as Go code does with
//! `otel.Tracer("").Start(ctx, ...)` around every task.
//!
//! fanout only speaks `tracing`: a `fanout.run` span per run, child of the
//! caller's current span, and a `fanout.task` span per task (fields
//! `task.index`, `task.key` for keyed input, `task.attempt`, `task.outcome`),
//! child of the run's span and closed before it. `tracing-opentelemetry`
//! turns them into OpenTelemetry spans; here they go to the SDK's in-memory
//! exporter so that the example can check the tree and print it. For a real
//! backend, swap the exporter for `opentelemetry-otlp`'s (or
//! `opentelemetry-stdout`'s to print them).
//!
//! Run it with `cargo run -p fanout --example otel --features otel`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

const TASKS: usize = 8;

#[tokio::main]
async fn main() {
    // -- The pipeline: tracing -> tracing-opentelemetry -> SDK -> exporter.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("fanout-example");
    // Global, not thread-local: fanout polls tasks on the runtime's worker
    // threads.
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer)),
    )
    .expect("no other subscriber is installed");

    // -- The run, inside a span of the caller's.
    let out = async {
        fanout::fan_out(0..TASKS)
            .limit(4)
            .run(|ctx, n| async move {
                tokio::time::sleep(Duration::from_millis(1 + n as u64 % 3)).await;
                Ok::<_, Infallible>(ctx.index() * 10)
            })
            .await
    }
    .instrument(tracing::info_span!("process_tasks_in_parallel"))
    .await
    .expect("no task fails");
    assert_eq!(out, (0..TASKS).map(|i| i * 10).collect::<Vec<_>>());

    // -- What was exported.
    provider.force_flush().expect("flush the span processor");
    let spans = exporter
        .get_finished_spans()
        .expect("the exporter is not shut down");
    let caller = one_named(&spans, "process_tasks_in_parallel");
    let run = one_named(&spans, "fanout.run");
    let mut tasks: Vec<&SpanData> = spans.iter().filter(|s| s.name == "fanout.task").collect();
    tasks.sort_by_key(|s| attr(s, "task.index").parse::<usize>().unwrap_or(usize::MAX));

    print_span(0, caller);
    print_span(1, run);
    for task in &tasks {
        print_span(2, task);
    }

    // -- The promises of the span tree.
    let run_id = run.span_context.span_id();
    assert_eq!(run.parent_span_id, caller.span_context.span_id());
    assert_eq!(tasks.len(), TASKS, "one fanout.task span per task");
    for (i, task) in tasks.iter().enumerate() {
        assert_eq!(attr(task, "task.index"), i.to_string());
        assert_eq!(attr(task, "task.outcome"), "ok");
        assert_eq!(
            task.parent_span_id, run_id,
            "task spans are children of the run span"
        );
        assert_eq!(task.span_context.trace_id(), run.span_context.trace_id());
        assert!(
            task.end_time <= run.end_time,
            "task spans close before the run span"
        );
    }
    println!(
        "exported {} spans: 1 fanout.run, child of the caller's span, and {} fanout.task, \
         each a child of fanout.run that ended before it",
        spans.len(),
        tasks.len()
    );

    // -- A keyed run where one task fails: the task spans carry the key and
    //    each task's outcome, the run span the run's.
    exporter.reset();
    let jobs = [
        ("alpha", 3),
        ("beta", 1),
        ("gamma", 0),
        ("delta", 2),
        ("omega", 4),
    ];
    let err = fanout::fan_out_keyed(jobs)
        .limit(2)
        .run(|_ctx, ms| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            if ms == 2 {
                Err("delta broke")
            } else {
                Ok(ms)
            }
        })
        .await
        .expect_err("delta fails");
    provider.force_flush().expect("flush the span processor");
    let spans = exporter
        .get_finished_spans()
        .expect("the exporter is not shut down");
    let run = one_named(&spans, "fanout.run");
    let mut tasks: Vec<&SpanData> = spans.iter().filter(|s| s.name == "fanout.task").collect();
    tasks.sort_by_key(|s| attr(s, "task.index").parse::<usize>().unwrap_or(usize::MAX));
    println!("keyed run, {err}:");
    print_span(1, run);
    for task in &tasks {
        print_span(2, task);
    }
    assert_eq!(attr(run, "fanout.outcome"), "error");
    for task in &tasks {
        assert_eq!(task.parent_span_id, run.span_context.span_id());
        assert!(task.end_time <= run.end_time);
    }
    let delta = tasks
        .iter()
        .find(|s| attr(s, "task.key") == "\"delta\"")
        .expect("delta started, so it has a span");
    assert_eq!(attr(delta, "task.outcome"), "error");

    provider.shutdown().expect("shut the tracer provider down");
}

/// The only exported span called `name`.
fn one_named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let mut found = spans.iter().filter(|s| s.name == name);
    let span = found
        .next()
        .unwrap_or_else(|| panic!("no {name} span exported"));
    assert!(found.next().is_none(), "one {name} span");
    span
}

/// The value of the attribute `key`, or `""`.
fn attr(span: &SpanData, key: &str) -> String {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
        .unwrap_or_default()
}

/// One line per span: name, fanout's own fields, duration.
fn print_span(depth: usize, span: &SpanData) {
    let fields: HashMap<&str, String> = span
        .attributes
        .iter()
        .filter(|kv| kv.key.as_str().starts_with("fanout.") || kv.key.as_str().starts_with("task."))
        .map(|kv| (kv.key.as_str(), kv.value.to_string()))
        .collect();
    let mut fields: Vec<String> = fields
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    fields.sort();
    let took = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    println!(
        "{:indent$}{} {}  {:.1?}  span {} parent {}",
        "",
        span.name,
        fields.join(" "),
        took,
        short(span.span_context.span_id().to_string()),
        short(span.parent_span_id.to_string()),
        indent = depth * 2,
    );
}

/// The first 8 hex digits of a span id.
fn short(id: String) -> String {
    id[..8].to_owned()
}
