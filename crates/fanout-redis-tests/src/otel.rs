//! OpenTelemetry for the trace test: spans exported to memory, and written
//! to a file as one line per span, `name trace_id span_id parent_span_id`,
//! so that a worker process's spans can be read by the test.

use std::io::Write;
use std::path::Path;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;

/// Spans finished so far, as exported.
#[derive(Debug, Clone)]
pub struct Collected {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

/// One finished span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanLine {
    /// The span's name.
    pub name: String,
    /// Its trace, in hex.
    pub trace: String,
    /// Its id, in hex.
    pub id: String,
    /// Its parent's id, in hex (all zeros for a root).
    pub parent: String,
}

/// Installs the OpenTelemetry layer as the process's global subscriber.
///
/// # Panics
/// If a global subscriber is already installed.
pub fn install() -> Collected {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("fanout-redis-tests");
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    Collected { exporter, provider }
}

impl Collected {
    /// The spans finished so far.
    pub fn spans(&self) -> Vec<SpanLine> {
        let _ = self.provider.force_flush();
        self.exporter
            .get_finished_spans()
            .unwrap_or_default()
            .into_iter()
            .map(|s| SpanLine {
                name: s.name.to_string(),
                trace: s.span_context.trace_id().to_string(),
                id: s.span_context.span_id().to_string(),
                parent: s.parent_span_id.to_string(),
            })
            .collect()
    }

    /// Writes the spans finished so far to `path`.
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn write(&self, path: &Path) {
        let mut text = String::new();
        for s in self.spans() {
            text.push_str(&format!("{} {} {} {}\n", s.name, s.trace, s.id, s.parent));
        }
        std::fs::File::create(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .expect("write the spans");
    }
}

/// Reads a file written by [`Collected::write`].
pub fn read(path: &Path) -> Vec<SpanLine> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 4).then(|| SpanLine {
                name: f[0].to_owned(),
                trace: f[1].to_owned(),
                id: f[2].to_owned(),
                parent: f[3].to_owned(),
            })
        })
        .collect()
}
