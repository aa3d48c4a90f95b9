//! A coordinator process for the conformance suite: runs `N` jobs of the
//! test handler as run `ID` (collect-all) and writes each outcome to a
//! file, one line per input: `index ok <value>` or `index <kind>`.
//!
//! `fanout-test-coordinator --redis URL --run-id ID --n N --sleep-ms MS
//! --limit L --out PATH`. Used to kill a coordinator mid-run and resume it.

use std::io::Write;
use std::path::PathBuf;

use fanout_redis::{Coordinator, RedisBroker};
use fanout_redis_tests::handler::{Job, JOB};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut url, mut run_id, mut n, mut sleep_ms, mut limit) =
        (String::new(), String::new(), 0u64, 0u64, 8usize);
    let mut out = PathBuf::new();
    while let Some(a) = args.next() {
        let mut value = || args.next().expect("a value");
        match a.as_str() {
            "--redis" => url = value(),
            "--run-id" => run_id = value(),
            "--n" => n = value().parse().expect("--n N"),
            "--sleep-ms" => sleep_ms = value().parse().expect("--sleep-ms MS"),
            "--limit" => limit = value().parse().expect("--limit L"),
            "--out" => out = PathBuf::from(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    let broker = RedisBroker::connect(&url).await.expect("connect to Redis");
    let coordinator = Coordinator::new(broker);
    let report = coordinator
        .fan_out((0..n).map(move |i| Job::sleepy(i, sleep_ms)))
        .id(run_id)
        .limit(limit)
        .run_all(&JOB)
        .await;
    let mut text = String::new();
    for (index, outcome) in report.outcomes() {
        match outcome {
            Ok(v) => text.push_str(&format!("{index} ok {v}\n")),
            Err(e) => text.push_str(&format!("{index} {}\n", e.kind())),
        }
    }
    std::fs::File::create(&out)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write the outcomes");
}
