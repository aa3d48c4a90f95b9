//! A batch that survives being killed: press Ctrl-C while it runs, run it
//! again, and it goes on where it was, recalling from its journal what was
//! done instead of doing it again.
//!
//! ```text
//! cargo run -p fanout --features journal --example resume          # Ctrl-C it halfway
//! cargo run -p fanout --features journal --example resume          # resumes
//! cargo run -p fanout --features journal --example resume -- PATH  # another journal
//! ```
//!
//! Each of the 40 items takes a third of a second, four at a time. Ctrl-C
//! kills the process (there is no handler), as a crash would: the journal
//! keeps every outcome recorded before it, whole, and the next run recalls
//! them. Remove the journal and its `.fanout` sidecar to start over.

use std::path::PathBuf;
use std::time::Duration;

use fanout::journal::{Fingerprint, JsonOutcomes, Options, Origin, SyncPolicy};
use fanout::Order;

/// A stand-in for real work: a checksum of the item's name, slowly.
async fn checksum(name: String) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(330)).await;
    Ok(name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os().nth(1).map_or_else(
        || std::env::temp_dir().join("fanout-resume-example.journal"),
        PathBuf::from,
    );
    // The fingerprint names the work: a journal of other work is refused.
    let options = Options::new(Fingerprint::of(["fanout resume example", "v1"]))
        .summary("the fanout resume example, v1")
        .sync(SyncPolicy::group(8, None));
    let opened = options.resume(&path, JsonOutcomes::new())?;
    match &opened.previous {
        None => println!("journal {}: new", path.display()),
        Some(previous) if previous.finished => {
            println!("journal {}: the last run finished", path.display());
        }
        Some(_) => println!(
            "journal {}: the last run was interrupted; resuming",
            path.display()
        ),
    }
    if opened.torn {
        println!("(a record torn by the interruption was ignored)");
    }

    let items = (1..=40).map(|i| {
        let name = format!("item-{i:02}");
        (name.clone(), name)
    });
    let mut outcomes = fanout::fan_out_keyed(items)
        .limit(4)
        .journal(opened.journal)
        .stream(Order::Completion, |_ctx, name| checksum(name));
    let (mut ran, mut recalled) = (0, 0);
    while let Some(item) = outcomes.next().await {
        let (name, outcome, origin) = item.map_err(|e| e.to_string())?;
        let from = match origin {
            Origin::Recalled => {
                recalled += 1;
                "from the journal"
            }
            Origin::Ran => {
                ran += 1;
                "ran now"
            }
        };
        match outcome {
            Ok(sum) => println!("{name}: {sum:016x}  ({from})"),
            Err(e) => println!("{name}: {e}  ({from})"),
        }
    }
    println!(
        "done: {ran} ran, {recalled} from the journal. Run again to see every item recalled; \
         remove {} and its .fanout sidecar to start over.",
        path.display()
    );
    Ok(())
}
