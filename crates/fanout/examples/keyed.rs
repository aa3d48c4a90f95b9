//! A map of tasks, run with [`fanout::fan_out_keyed`]: results and errors keep
//! the map's keys.
//!
//! Go's fan-out idiom starts by building the tasks (into a map or slice);
//! its fan-in then collects results in completion order and loses the keys.
//! Here a `BTreeMap` of page names to URLs is "fetched" (simulated):
//!
//! 1. fail-fast with `run`: one `(key, result)` per key, in the map's order;
//! 2. collect-all with `run_all`: one outcome per key (ok, failed, timed
//!    out...), with counts, while a [`fanout::Progress`] is watched live.
//!
//! Run it with `cargo run -p fanout --example keyed`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use fanout::{Progress, TaskCtx, TaskError};

/// A simulated HTTP response.
#[derive(Debug)]
struct Page {
    status: u16,
    bytes: usize,
}

/// Why a simulated fetch failed.
#[derive(Debug)]
struct FetchError {
    url: &'static str,
    status: u16,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GET {} returned {}", self.url, self.status)
    }
}

impl std::error::Error for FetchError {}

/// "Fetches" `url`: sleeps a few ms; URLs containing `missing` answer 404,
/// URLs containing `slow` take 200 ms.
async fn fetch(ctx: TaskCtx<&'static str>, url: &'static str) -> Result<Page, FetchError> {
    let delay = if url.contains("slow") {
        200
    } else {
        2 + url.len() as u64 % 5
    };
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(delay)) => {}
        // Never reached with the default grace of zero: fanout aborts the
        // task at its next await when the run stops.
        () = ctx.cancelled() => return Err(FetchError { url, status: 499 }),
    }
    if url.contains("missing") {
        return Err(FetchError { url, status: 404 });
    }
    Ok(Page {
        status: 200,
        bytes: url.len() * 100,
    })
}

#[tokio::main]
async fn main() {
    // -- 1. Every fetch succeeds: fail-fast `run` gives one result per key.
    let site: BTreeMap<&'static str, &'static str> = BTreeMap::from([
        ("home", "https://example.invalid/"),
        ("about", "https://example.invalid/about"),
        ("blog", "https://example.invalid/blog"),
        ("contact", "https://example.invalid/contact"),
        ("pricing", "https://example.invalid/pricing"),
    ]);
    let pages = fanout::fan_out_keyed(site.clone())
        .limit(3)
        .run(fetch)
        .await
        .expect("every page of `site` exists");
    println!("run: {} pages, keyed, in the map's order", pages.len());
    for (name, page) in &pages {
        println!(
            "  {name:<8} {:<32} {} {:>5} bytes",
            site[name], page.status, page.bytes
        );
    }
    // The keys come back exactly once each, so the results make a map again.
    let by_name: BTreeMap<_, _> = pages.into_iter().collect();
    assert!(by_name.keys().eq(site.keys()));

    // -- 2. Some fetches fail: `run_all` reports every key, and `Progress`
    //    shows the run while it goes.
    let mut links = site;
    links.insert("old-docs", "https://example.invalid/missing/docs");
    links.insert("archive", "https://example.invalid/slow/archive");
    links.insert("faq", "https://example.invalid/missing/faq");

    let progress = Progress::new();
    let run = tokio::spawn(
        fanout::fan_out_keyed(links.clone())
            .limit(3)
            // Per-attempt timeout, counted from the moment the fetch starts.
            .timeout(Duration::from_millis(50))
            .progress(&progress)
            .run_all(fetch),
    );
    println!("run_all: {} links, limit 3, timeout 50 ms", links.len());
    loop {
        let s = progress.snapshot();
        if s.finished {
            break;
        }
        println!(
            "  progress: {}/{} started, {} in flight, {} ok, {} failed",
            s.started,
            s.total.map_or("?".to_owned(), |t| t.to_string()),
            s.in_flight,
            s.succeeded,
            s.failed
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = run.await.expect("no task panics");
    for (name, outcome) in report.outcomes() {
        match outcome {
            Ok(page) => println!("  {name:<8} ok     {} bytes", page.bytes),
            Err(TaskError::Failed(e)) => println!("  {name:<8} failed {e}"),
            Err(e) => println!("  {name:<8} {e}"),
        }
    }
    println!("  {}", report.counts());
    let s = progress.snapshot();
    println!(
        "  progress at the end: {} started, {} ok, {} failed, {} in flight",
        s.started, s.succeeded, s.failed, s.in_flight
    );

    // Exactly one outcome per key, in the map's order.
    assert!(report.outcomes().iter().map(|(k, _)| k).eq(links.keys()));
    assert_eq!(report.counts().failed, 2);
    assert_eq!(report.counts().timed_out, 1);
    assert_eq!(report.counts().succeeded, 5);

    // `into_result` turns the report into the fail-fast shape: the cause is
    // the failure with the lowest index, keyed.
    let err = report.into_result().expect_err("three links failed");
    println!(
        "  as an error: cause {:?}, {} other failure(s)",
        err.key().expect("a task failed"),
        err.others().len()
    );
}
