//! `wc` on a farm: workers count the lines, words and bytes of files; a
//! coordinator fans the files out to them and prints the counts in the
//! order it was given the files, like `wc`.
//!
//! ```sh
//! redis-server --port 6379 --save '' &
//! cargo run -p fanout-redis --example wordcount -- worker redis://127.0.0.1:6379 &
//! cargo run -p fanout-redis --example wordcount -- worker redis://127.0.0.1:6379 &
//! cargo run -p fanout-redis --example wordcount -- count redis://127.0.0.1:6379 /etc/*.conf
//! ```
//!
//! The files are read by the workers: on several machines, give paths on
//! storage they share. Stop a worker with Ctrl-C: it finishes what it runs,
//! then exits.

use std::time::Duration;

use fanout_redis::{Coordinator, Handler, RedisBroker, Worker};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// What a worker counts in one file.
#[derive(Debug, Serialize, Deserialize)]
struct Counts {
    lines: u64,
    words: u64,
    bytes: u64,
}

/// The handler both sides share: a path in, its counts out.
const WORDCOUNT: Handler<String, Counts, String> = Handler::new("wordcount");

async fn count(path: String) -> Result<Counts, String> {
    let data = tokio::fs::read(&path)
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let text = String::from_utf8_lossy(&data);
    Ok(Counts {
        lines: data.iter().filter(|&&b| b == b'\n').count() as u64,
        words: text.split_whitespace().count() as u64,
        bytes: data.len() as u64,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: wordcount worker REDIS-URL | wordcount count REDIS-URL FILE...";
    let (Some(mode), Some(url)) = (args.first(), args.get(1)) else {
        return Err(usage.into());
    };
    let broker = RedisBroker::connect(url).await?;
    match mode.as_str() {
        "worker" => {
            let shutdown = CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
            });
            let report = Worker::new(broker)
                .limit(8)
                .drain(Duration::from_secs(10))
                .serve(&WORDCOUNT, |_ctx, path| count(path))
                .on_ready(|| eprintln!("worker ready"))
                .run(shutdown)
                .await?;
            eprintln!("worker stopped: {} files counted", report.completed);
        }
        "count" => {
            let files: Vec<String> = args[2..].to_vec();
            let report = Coordinator::new(broker)
                .fan_out(files.clone())
                .limit(256)
                .run_all(&WORDCOUNT)
                .await;
            let mut total = Counts {
                lines: 0,
                words: 0,
                bytes: 0,
            };
            for (i, outcome) in report.outcomes() {
                match outcome {
                    Ok(c) => {
                        println!("{:>7} {:>7} {:>7} {}", c.lines, c.words, c.bytes, files[*i]);
                        total.lines += c.lines;
                        total.words += c.words;
                        total.bytes += c.bytes;
                    }
                    Err(e) => eprintln!(
                        "wordcount: {}",
                        e.as_failed().cloned().unwrap_or_else(|| e.to_string())
                    ),
                }
            }
            if files.len() > 1 {
                println!(
                    "{:>7} {:>7} {:>7} total",
                    total.lines, total.words, total.bytes
                );
            }
            if report.counts().failures() > 0 {
                std::process::exit(1);
            }
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
