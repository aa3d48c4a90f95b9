//! W3C trace context, as tasks carry it from coordinator to worker.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

/// The context a `traceparent` header names (`00-<trace>-<span>-<flags>`),
/// as the remote parent of a span; `None` if it is not one.
pub(crate) fn parse_traceparent(header: &str) -> Option<Context> {
    let mut parts = header.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    sc.is_valid()
        .then(|| Context::new().with_remote_span_context(sc))
}
