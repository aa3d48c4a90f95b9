//! Durable runs (feature `journal`): a journaled keyed run killed at any
//! instant and run again never re-runs a task whose outcome was recorded,
//! never loses one, ignores a torn last record, and refuses a second
//! concurrent run on the same journal.
//!
//! `sigkill` kills a process running a journaled run at random instants and
//! compares the end with an uninterrupted run; `torn` resumes a run from a
//! journal cut at every byte; `model` runs random plans against a
//! sequential model of a run with a journal. The tests here check the rest
//! of what `FanOut::journal` promises: keys rather than positions, what is
//! recalled and what runs again, fail-fast with recalled failures, which
//! error wins, when the journal is finished.

mod common;
#[path = "durable/model.rs"]
mod model;
#[path = "durable/sigkill.rs"]
mod sigkill;
#[path = "durable/torn.rs"]
mod torn;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use fanout::journal::{
    parse, Error, Fingerprint, Journal, JsonOutcomes, Options, Origin, RecordedFailures, Records,
    RunError, Store, Unrecorded,
};
use fanout::{fan_out_keyed, Order, Outcome, Progress, TaskError};
use tokio::sync::Notify;

use common::{catch_unwind, ms, quiet_intentional_panics, Live};

/// The format of these tests' journals: string keys, `u64` values, string
/// errors.
pub(crate) type Format = JsonOutcomes<String, u64, String>;

pub(crate) fn options(name: &str) -> Options {
    Options::new(Fingerprint::of(["durable runs", name])).summary(format!("durable {name}"))
}

pub(crate) fn key(i: u64) -> String {
    format!("key-{i}")
}

/// Inputs `key(i) => i` for each `i`, in that order.
pub(crate) fn inputs(ids: impl IntoIterator<Item = u64>) -> Vec<(String, u64)> {
    ids.into_iter().map(|i| (key(i), i)).collect()
}

/// What every test's task returns for input `i`: `i * 10`, or an error for
/// multiples of 7 (but 0).
pub(crate) fn expected(i: u64) -> Result<u64, String> {
    if i % 7 == 0 && i > 0 {
        Err(format!("{i} is a multiple of 7"))
    } else {
        Ok(i * 10)
    }
}

/// A temporary directory and a journal path in it.
pub(crate) fn journal_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    (dir, path)
}

/// The records in the journal file at `path`, read without opening it.
pub(crate) fn records_in(path: &Path) -> Records<String, Outcome<u64, String>> {
    parse(&Format::new(), &std::fs::read(path).unwrap())
        .unwrap()
        .records
}

/// The keys recorded in the journal at `path`, in file order.
pub(crate) fn recorded_keys(path: &Path) -> Vec<String> {
    records_in(path).into_iter().map(|(k, _)| k).collect()
}

/// Whether the last run on the journal at `path` finished, as the next one
/// sees it.
fn finished(path: &Path, name: &str) -> bool {
    let opened = options(name).resume(path, Format::new()).unwrap();
    opened.previous.expect("a run used the journal").finished
}

/// Counts the task bodies that ran, by input.
#[derive(Clone, Default)]
struct Ran(Arc<Mutex<Vec<u64>>>);

impl Ran {
    fn note(&self, i: u64) {
        self.0.lock().unwrap().push(i);
    }

    fn sorted(&self) -> Vec<u64> {
        let mut ran = self.0.lock().unwrap().clone();
        ran.sort_unstable();
        ran
    }
}

/// A collect-all journaled run over `ids` on the journal at `path`: its
/// outcomes by input, which were recalled, and which tasks ran.
async fn run_all_over(
    path: &Path,
    name: &str,
    ids: &[u64],
    failures: RecordedFailures,
) -> (Vec<(String, Outcome<u64, String>)>, Vec<bool>, Vec<u64>) {
    let ran = Ran::default();
    let r = ran.clone();
    let report = fan_out_keyed(inputs(ids.iter().copied()))
        .limit(3)
        .journal_file(path, options(name))
        .unwrap()
        .recorded_failures(failures)
        .run_all(move |_ctx, i| {
            let ran = r.clone();
            async move {
                ran.note(i);
                expected(i)
            }
        })
        .await
        .unwrap();
    let recalled = (0..report.len()).map(|i| report.is_recalled(i)).collect();
    assert_eq!(report.counts().recalled, report.recalled().count());
    (report.into_outcomes(), recalled, ran.sorted())
}

/// A success or a task's own error; any other outcome fails the test.
pub(crate) fn plain<T: Clone, E: Clone + std::fmt::Debug>(outcome: &Outcome<T, E>) -> Result<T, E> {
    match outcome {
        Ok(v) => Ok(v.clone()),
        Err(TaskError::Failed(e)) => Err(e.clone()),
        Err(other) => panic!("unexpected outcome {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_a_journal_in_use_is_refused_with_a_clear_error() {
    let (_dir, path) = journal_path();
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (s, r) = (started.clone(), release.clone());
    // One slot: while task 0 waits, the first run writes nothing more, so
    // the journal's bytes show whether the refused runs wrote anything.
    let first = fan_out_keyed(inputs(0..3))
        .limit(1)
        .journal_file(&path, options("lock"))
        .unwrap()
        .run_all(move |_ctx, i| {
            let (started, release) = (s.clone(), r.clone());
            async move {
                if i == 0 {
                    let released = release.notified();
                    started.notify_one();
                    released.await;
                }
                expected(i)
            }
        });
    let first = tokio::spawn(first);
    started.notified().await;

    // While the first run goes, a second one on the same journal is refused,
    // whichever way it opens it, and nothing is written.
    let before = std::fs::read(&path).unwrap();
    let err = fan_out_keyed(inputs(0..3))
        .journal_file::<u64, String>(&path, options("lock"))
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "journal {} is in use by another run; wait for it to finish or use another journal",
            path.display()
        )),
        "{message}"
    );
    let err = options("lock").resume(&path, Format::new()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    release.notify_one();
    let report = first.await.unwrap().unwrap();
    assert!(report.is_success());
    // Once it is done, the journal is free, and a new run recalls it all.
    let (_, recalled, ran) = run_all_over(&path, "lock", &[0, 1, 2], RecordedFailures::Rerun).await;
    assert_eq!(recalled, [true; 3]);
    assert_eq!(ran, Vec::<u64>::new());
}

#[tokio::test]
async fn a_reordered_grown_or_shrunk_input_finds_its_outcomes_by_key_and_leaves_the_others_untouched(
) {
    let (_dir, path) = journal_path();
    let first: Vec<u64> = (0..6).collect();
    let (outcomes, _, ran) = run_all_over(&path, "keys", &first, RecordedFailures::Keep).await;
    assert_eq!(ran, first);
    assert_eq!(outcomes.len(), 6);
    let after_first = std::fs::read(&path).unwrap();

    // Reordered: everything recalled, each outcome at its key's new place.
    let reordered = [5, 3, 1, 0, 2, 4];
    let (outcomes, recalled, ran) =
        run_all_over(&path, "keys", &reordered, RecordedFailures::Keep).await;
    assert_eq!(ran, Vec::<u64>::new());
    assert_eq!(recalled, [true; 6]);
    for (&i, (k, outcome)) in reordered.iter().zip(&outcomes) {
        assert_eq!((k.clone(), plain(outcome)), (key(i), expected(i)));
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        after_first,
        "nothing recorded again"
    );

    // Shrunk: the keys left out stay in the journal, untouched.
    let shrunk = [4, 1];
    let (outcomes, recalled, ran) =
        run_all_over(&path, "keys", &shrunk, RecordedFailures::Keep).await;
    assert_eq!(ran, Vec::<u64>::new());
    assert_eq!(recalled, [true, true]);
    assert_eq!(outcomes.len(), 2);
    assert_eq!(std::fs::read(&path).unwrap(), after_first);

    // Grown (and reordered, and without some of the first keys): new keys
    // run, each old one is recalled, the ones left out earlier included.
    let grown = [9, 0, 8, 5, 7, 2];
    let (outcomes, recalled, ran) =
        run_all_over(&path, "keys", &grown, RecordedFailures::Keep).await;
    assert_eq!(ran, [7, 8, 9]);
    assert_eq!(recalled, [false, true, false, true, false, true]);
    for (&i, (k, outcome)) in grown.iter().zip(&outcomes) {
        assert_eq!((k.clone(), plain(outcome)), (key(i), expected(i)));
    }
    let after = std::fs::read(&path).unwrap();
    assert_eq!(&after[..after_first.len()], &after_first[..]);
    let mut keys = recorded_keys(&path);
    keys.sort();
    assert_eq!(
        keys,
        [0, 1, 2, 3, 4, 5, 7, 8, 9].map(key),
        "each key recorded once"
    );
}

#[tokio::test]
async fn a_recorded_failure_runs_again_unless_the_caller_keeps_it() {
    let (_dir, path) = journal_path();
    // 7 and 14 fail.
    let ids: Vec<u64> = (5..16).collect();
    run_all_over(&path, "failures", &ids, RecordedFailures::Rerun).await;
    let recorded = recorded_keys(&path).len();
    assert_eq!(recorded, ids.len());

    // Kept: nothing runs; the failures are delivered as recorded.
    let (outcomes, recalled, ran) =
        run_all_over(&path, "failures", &ids, RecordedFailures::Keep).await;
    assert_eq!(ran, Vec::<u64>::new());
    assert!(recalled.iter().all(|&r| r));
    for (&i, (_, outcome)) in ids.iter().zip(&outcomes) {
        assert_eq!(plain(outcome), expected(i));
    }
    assert_eq!(recorded_keys(&path).len(), recorded);

    // Rerun (the default): only the failed keys run, and are recorded again.
    let (outcomes, recalled, ran) =
        run_all_over(&path, "failures", &ids, RecordedFailures::Rerun).await;
    assert_eq!(ran, [7, 14]);
    for ((&i, (_, outcome)), recalled) in ids.iter().zip(&outcomes).zip(recalled) {
        assert_eq!(plain(outcome), expected(i));
        assert_eq!(recalled, expected(i).is_ok(), "input {i}");
    }
    let keys = recorded_keys(&path);
    assert_eq!(keys.len(), recorded + 2);
    assert_eq!(&keys[recorded..], [key(7), key(14)]);
}

#[tokio::test]
async fn a_later_success_of_a_key_supersedes_its_recorded_failure() {
    let (_dir, path) = journal_path();
    let journal = options("supersede")
        .create(&path, Format::new())
        .unwrap()
        .journal;
    journal
        .record(&key(1), &Err(TaskError::Failed("first try".into())))
        .unwrap();
    journal.record(&key(1), &Ok(11)).unwrap();
    journal
        .record(&key(2), &Err(TaskError::Failed("second try".into())))
        .unwrap();
    drop(journal);
    let (outcomes, recalled, ran) =
        run_all_over(&path, "supersede", &[1, 2], RecordedFailures::Rerun).await;
    assert_eq!(ran, [2]);
    assert_eq!(recalled, [true, false]);
    assert_eq!(plain(&outcomes[0].1), Ok(11));
    assert_eq!(plain(&outcomes[1].1), Ok(20));
}

#[tokio::test(start_paused = true)]
async fn a_kept_failure_stops_a_fail_fast_run_when_it_is_delivered() {
    let (_dir, path) = journal_path();
    let journal = options("kept")
        .create(&path, Format::new())
        .unwrap()
        .journal;
    journal
        .record(&key(3), &Err(TaskError::Failed("recorded".into())))
        .unwrap();
    drop(journal);
    let ran = Ran::default();
    let r = ran.clone();
    // One slot: inputs 0, 1, 2 run one after the other, then 3 is recalled
    // as a failure, and the run stops before 4 and 5.
    let err = fan_out_keyed(inputs(0..6))
        .limit(1)
        .journal_file(&path, options("kept"))
        .unwrap()
        .recorded_failures(RecordedFailures::Keep)
        .run(move |_ctx, i| {
            let ran = r.clone();
            async move {
                ran.note(i);
                tokio::time::sleep(ms(10)).await;
                Ok::<u64, String>(i)
            }
        })
        .await
        .unwrap_err();
    let RunError::Run(err) = err else {
        panic!("the journal did not fail: {err}");
    };
    assert_eq!(err.key(), Some(&key(3)));
    assert_eq!(err.failure().unwrap().index, 3);
    assert_eq!(err.task_error().map(String::as_str), Some("recorded"));
    let counts = err.counts();
    assert_eq!(
        (
            counts.succeeded,
            counts.failed,
            counts.not_started,
            counts.recalled
        ),
        (3, 1, 2, 1)
    );
    assert_eq!(ran.sorted(), [0, 1, 2]);
    // The run returned normally: the journal is finished, and holds what ran.
    assert!(finished(&path, "kept"));
    assert_eq!(recorded_keys(&path), [3, 0, 1, 2].map(key));

    // Rerun (the default): the failed key runs again, and the run succeeds.
    let out = fan_out_keyed(inputs(0..6))
        .journal_file(&path, options("kept"))
        .unwrap()
        .run(|_ctx, i| async move { Ok::<u64, String>(i) })
        .await
        .unwrap();
    assert_eq!(out, (0..6).map(|i| (key(i), i)).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_repeated_key_stops_the_run_with_an_error_naming_it() {
    let (_dir, path) = journal_path();
    let ran = Ran::default();
    let r = ran.clone();
    let pairs = vec![(key(1), 1), (key(2), 2), (key(1), 3), (key(4), 4)];
    let err = fan_out_keyed(pairs)
        .limit(1)
        .journal_file(&path, options("repeat"))
        .unwrap()
        .run_all(move |_ctx, i| {
            let ran = r.clone();
            async move {
                ran.note(i);
                Ok::<u64, String>(i)
            }
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::RepeatedKey { key: k, index: 2 } if *k == key(1)),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "key \"key-1\" appears more than once in the input (again at input 2); a journaled run \
         finds outcomes by key, so make the keys unique or remove the repeats"
    );
    // The repeat (input 2) never ran, nor did anything after it.
    assert_eq!(ran.sorted(), [1, 2]);
    assert!(!finished(&path, "repeat"));
}

/// A store that fails every record after the first `ok` ones.
struct Failing {
    inner: Journal<Format>,
    ok: usize,
    records: AtomicUsize,
}

#[derive(Debug)]
struct DiskFull;

impl std::fmt::Display for DiskFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("disk full")
    }
}

impl std::error::Error for DiskFull {}

impl Store for Failing {
    type Key = String;
    type Value = Outcome<u64, String>;
    type Error = DiskFull;

    async fn load(&mut self) -> Result<Records<String, Outcome<u64, String>>, DiskFull> {
        Ok(self.inner.load().unwrap())
    }

    async fn record(&self, key: &String, value: &Outcome<u64, String>) -> Result<(), DiskFull> {
        if self.records.fetch_add(1, SeqCst) >= self.ok {
            return Err(DiskFull);
        }
        self.inner.record(key, value).unwrap();
        Ok(())
    }

    async fn finish(self) -> Result<(), DiskFull> {
        self.inner.finish().unwrap();
        Ok(())
    }
}

fn failing(path: &Path, ok: usize) -> Failing {
    Failing {
        inner: options("failing")
            .resume(path, Format::new())
            .unwrap()
            .journal,
        ok,
        records: AtomicUsize::new(0),
    }
}

#[tokio::test(start_paused = true)]
async fn a_record_that_fails_stops_the_run_and_its_error_comes_first() {
    let (_dir, path) = journal_path();
    let ran = Ran::default();
    let r = ran.clone();
    let task = move |_ctx, i: u64| {
        let ran = r.clone();
        async move {
            ran.note(i);
            tokio::time::sleep(ms(10 * (i + 1))).await;
            Ok::<u64, String>(i)
        }
    };
    // Two slots; the third record fails (input 2, at 30 ms): no input
    // starts after it, and the error names it, whatever the run's result.
    let err = fan_out_keyed(inputs(0..10))
        .limit(2)
        .journal(failing(&path, 2))
        .run(task.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::Record { key: k, error: DiskFull } if *k == key(2)),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("cannot record the outcome of task \"key-2\""),
        "{err}"
    );
    assert_eq!(ran.sorted(), [0, 1, 2, 3]);
    assert_eq!(recorded_keys(&path), [0, 1].map(key));
    assert!(!finished(&path, "failing"));

    // A stream says so before it yields the outcome that was not recorded.
    let mut stream = fan_out_keyed(inputs(0..10))
        .limit(2)
        .journal(failing(&path, 1))
        .stream(Order::Completion, task);
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(match item {
            Ok((k, Ok(v), origin)) => format!("{k} {v} {origin:?}"),
            Ok((k, Err(e), origin)) => format!("{k} {} {origin:?}", e.kind()),
            Err(e) => format!("error: {e}"),
        });
    }
    // 0 and 1 are recalled; 2 is recorded (at 30 ms); 3's record fails (at
    // 40 ms), which stops the run: 4, started at 30 ms, is cancelled.
    assert_eq!(
        items[..3],
        ["key-0 0 Recalled", "key-1 1 Recalled", "key-2 2 Ran"]
    );
    assert!(
        items[3].starts_with("error: cannot record the outcome of task \"key-3\""),
        "{items:?}"
    );
    assert_eq!(items[4..], ["key-3 3 Ran", "key-4 cancelled Ran"]);
    assert_eq!(recorded_keys(&path), [0, 1, 2].map(key));
    assert!(!finished(&path, "failing"));
}

/// A store whose `load` fails.
struct Unreadable;

impl Store for Unreadable {
    type Key = String;
    type Value = Outcome<u64, String>;
    type Error = DiskFull;

    async fn load(&mut self) -> Result<Records<String, Outcome<u64, String>>, DiskFull> {
        Err(DiskFull)
    }

    async fn record(&self, _key: &String, _value: &Outcome<u64, String>) -> Result<(), DiskFull> {
        unreachable!("nothing is recorded when nothing was loaded")
    }

    async fn finish(self) -> Result<(), DiskFull> {
        unreachable!("a run whose journal failed is not finished")
    }
}

#[tokio::test]
async fn a_journal_that_cannot_be_loaded_runs_nothing() {
    let ran = Ran::default();
    let r = ran.clone();
    let err = fan_out_keyed(inputs(0..3))
        .journal(Unreadable)
        .run(move |_ctx, i| {
            let ran = r.clone();
            async move {
                ran.note(i);
                Ok::<u64, String>(i)
            }
        })
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::Load(DiskFull)), "{err:?}");
    assert!(err
        .to_string()
        .contains("cannot load the run's journal, so no task ran"));
    assert_eq!(ran.sorted(), Vec::<u64>::new());

    let mut stream = fan_out_keyed(inputs(0..3))
        .journal(Unreadable)
        .stream(Order::Input, |_ctx, i| async move { Ok::<u64, String>(i) });
    assert!(matches!(
        stream.next().await,
        Some(Err(RunError::Load(DiskFull)))
    ));
    assert!(stream.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_task_is_recorded_before_the_panic_is_re_raised() {
    quiet_intentional_panics();
    let (_dir, path) = journal_path();
    let run = fan_out_keyed(inputs(0..4))
        .limit(4)
        .journal_file(&path, options("panic"))
        .unwrap()
        .run(|_ctx, i| async move {
            tokio::time::sleep(ms(10 * (i + 1))).await;
            if i == 1 {
                panic!("[intentional] task 1");
            }
            Ok::<u64, String>(i)
        });
    let payload = catch_unwind(run).await.unwrap_err();
    assert_eq!(
        common::panic_message(&*payload),
        Some("[intentional] task 1")
    );
    let records = records_in(&path);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(plain(&records[0].1), Ok(0));
    let Err(TaskError::Panicked(panic)) = &records[1].1 else {
        panic!("{records:?}");
    };
    assert_eq!(panic.message(), Some("[intentional] task 1"));
    // Re-raising is not returning: the journal is not finished.
    assert!(!finished(&path, "panic"));
}

#[tokio::test(start_paused = true)]
async fn tasks_cancelled_or_never_started_are_not_recorded_and_run_again() {
    let (_dir, path) = journal_path();
    let task = |_ctx, i: u64| async move {
        tokio::time::sleep(ms(10 * (i + 1))).await;
        expected(i)
    };
    // Eight slots: 0..=7 start at once, 8..=14 as 0..=6 finish (every 10
    // ms); 7 fails at 80 ms and stops the run: 8..=14 are cancelled, 15 and
    // 16 never start.
    let err = fan_out_keyed(inputs(0..17))
        .limit(8)
        .journal_file(&path, options("stopped"))
        .unwrap()
        .run(task)
        .await
        .unwrap_err();
    let counts = err.run_error().unwrap().counts();
    assert_eq!(
        (
            counts.succeeded,
            counts.failed,
            counts.cancelled,
            counts.not_started
        ),
        (7, 1, 7, 2)
    );
    assert_eq!(recorded_keys(&path), (0..8).map(key).collect::<Vec<_>>());
    assert!(finished(&path, "stopped"));

    // 0..=6 are recalled; 7 (a failure) and the rest run. A stream
    // cancelled when 8 (at 90 ms) is yielded: 9, 10 and 11 are cancelled,
    // and not recorded.
    let mut stream = fan_out_keyed(inputs(0..12))
        .limit(12)
        .journal_file(&path, options("stopped"))
        .unwrap()
        .stream(Order::Completion, task);
    let mut cancelled = Vec::new();
    let mut recalled = Vec::new();
    while let Some(item) = stream.next().await {
        let (k, outcome, origin) = item.unwrap();
        if origin.is_recalled() {
            recalled.push(k.clone());
        }
        if k == key(8) {
            stream.cancel();
        }
        if matches!(outcome, Err(TaskError::Cancelled)) {
            cancelled.push(k);
        }
    }
    assert_eq!(recalled, (0..7).map(key).collect::<Vec<_>>());
    assert_eq!(cancelled, [9, 10, 11].map(key));
    let mut expected_keys: Vec<String> = (0..8).map(key).collect();
    expected_keys.extend([key(7), key(8)]);
    assert_eq!(recorded_keys(&path), expected_keys);
    assert!(
        finished(&path, "stopped"),
        "a cancelled stream ends normally"
    );

    // The next run runs exactly those not recorded, and the failure again.
    let (_, _, ran) = run_all_over(
        &path,
        "stopped",
        &(0..12).collect::<Vec<_>>(),
        RecordedFailures::Rerun,
    )
    .await;
    assert_eq!(ran, [7, 9, 10, 11]);
}

#[tokio::test]
async fn a_run_dropped_before_it_returns_leaves_its_journal_unfinished() {
    let (_dir, path) = journal_path();
    let started = Arc::new(Notify::new());
    let s = started.clone();
    let run = fan_out_keyed(inputs(0..2))
        .journal_file(&path, options("dropped"))
        .unwrap()
        .run(move |_ctx, i| {
            let started = s.clone();
            async move {
                if i == 1 {
                    started.notify_one();
                    std::future::pending::<()>().await;
                }
                Ok::<u64, String>(i)
            }
        });
    let run = tokio::spawn(run);
    started.notified().await;
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    // The run's lanes are aborted with it; the journal is unlocked once the
    // runtime has dropped them.
    let mut yields = 0;
    let previous = loop {
        match options("dropped").resume(&path, Format::new()) {
            Ok(opened) => break opened.previous.unwrap(),
            Err(Error::Locked { .. }) if yields < 1000 => {
                yields += 1;
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(!previous.finished);
    assert_eq!(recorded_keys(&path), [key(0)]);
}

#[tokio::test(start_paused = true)]
async fn a_collect_all_run_stopped_early_reports_the_recalled_outcomes_of_inputs_never_pulled() {
    let (_dir, path) = journal_path();
    run_all_over(&path, "deadline", &[8, 9], RecordedFailures::Rerun).await;
    let report = fan_out_keyed(inputs(0..10))
        .limit(1)
        .deadline(ms(25))
        .journal_file(&path, options("deadline"))
        .unwrap()
        .run_all(|_ctx, i| async move {
            tokio::time::sleep(ms(10)).await;
            Ok::<u64, String>(i * 10)
        })
        .await
        .unwrap();
    assert!(report.stopped_by().is_some());
    let kinds: Vec<&str> = report
        .outcomes()
        .iter()
        .map(|(_, o)| match o {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "ok",
            "ok",
            "cancelled",
            "not_started",
            "not_started",
            "not_started",
            "not_started",
            "not_started",
            "ok",
            "ok"
        ]
    );
    assert_eq!(
        report
            .recalled()
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>(),
        [key(8), key(9)]
    );
    assert_eq!(report.counts().recalled, 2);
    assert!(report
        .counts()
        .to_string()
        .ends_with("; 2 recalled from the journal"));
}

#[tokio::test(start_paused = true)]
async fn progress_counts_recalled_outcomes_as_done_never_as_in_flight() {
    let (_dir, path) = journal_path();
    run_all_over(&path, "progress", &[0, 1, 2], RecordedFailures::Rerun).await;
    let progress = Progress::new();
    let release = Arc::new(Notify::new());
    let live = Live::new();
    let (r, l) = (release.clone(), live.clone());
    let run = fan_out_keyed(inputs(0..5))
        .progress(&progress)
        .journal_file(&path, options("progress"))
        .unwrap()
        .run(move |_ctx, i| {
            let (release, live) = (r.clone(), l.clone());
            async move {
                let released = release.notified();
                let _guard = live.guard();
                released.await;
                Ok::<u64, String>(i)
            }
        });
    let run = tokio::spawn(run);
    // The recalled outcomes (0, 1, 2) are delivered before 3 and 4 start.
    live.wait_created(2).await;
    let s = progress.snapshot();
    assert_eq!(
        (s.started, s.in_flight, s.succeeded, s.recalled),
        (2, 2, 3, 3),
        "{s:?}"
    );
    release.notify_waiters();
    run.await.unwrap().unwrap();
    let s = progress.snapshot();
    assert_eq!(
        (s.started, s.in_flight, s.succeeded, s.recalled),
        (2, 0, 5, 3)
    );
}

#[tokio::test]
async fn a_journaled_stream_in_input_order_yields_each_key_once_with_its_origin() {
    let (_dir, path) = journal_path();
    run_all_over(&path, "stream", &[1, 3, 4], RecordedFailures::Rerun).await;
    let mut stream = fan_out_keyed(inputs(0..6))
        .limit(2)
        .journal_file(&path, options("stream"))
        .unwrap()
        .stream(Order::Input, |_ctx, i| async move {
            for _ in 0..(6 - i) {
                tokio::task::yield_now().await;
            }
            expected(i)
        });
    let mut got = BTreeMap::new();
    let mut order = Vec::new();
    while let Some(item) = stream.next().await {
        let (k, outcome, origin) = item.unwrap();
        order.push(k.clone());
        assert!(got.insert(k, (plain(&outcome), origin)).is_none());
    }
    assert_eq!(order, (0..6).map(key).collect::<Vec<_>>());
    for i in 0..6 {
        let origin = if [1, 3, 4].contains(&i) {
            Origin::Recalled
        } else {
            Origin::Ran
        };
        assert_eq!(got[&key(i)], (expected(i), origin));
    }
    assert!(finished(&path, "stream"));
}

/// A journal file that also notes, in memory, each key it has recorded.
struct Noting {
    inner: Journal<Format>,
    noted: Arc<Mutex<Vec<String>>>,
}

impl Store for Noting {
    type Key = String;
    type Value = Outcome<u64, String>;
    type Error = Error;

    async fn load(&mut self) -> Result<Records<String, Outcome<u64, String>>, Error> {
        self.inner.load()
    }

    async fn record(&self, key: &String, value: &Outcome<u64, String>) -> Result<(), Error> {
        self.inner.record(key, value)?;
        self.noted.lock().unwrap().push(key.clone());
        Ok(())
    }

    async fn finish(self) -> Result<(), Error> {
        self.inner.finish()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_that_ran_is_recorded_before_it_is_handed_over() {
    let (_dir, path) = journal_path();
    run_all_over(
        &path,
        "before",
        &(0..500).step_by(3).collect::<Vec<_>>(),
        RecordedFailures::Keep,
    )
    .await;
    let noted = Arc::new(Mutex::new(Vec::new()));
    let store = Noting {
        inner: options("before")
            .resume(&path, Format::new())
            .unwrap()
            .journal,
        noted: noted.clone(),
    };
    let mut stream = fan_out_keyed(inputs(0..500))
        .limit(16)
        .journal(store)
        .recorded_failures(RecordedFailures::Keep)
        .stream(Order::Completion, |_ctx, i| async move {
            for _ in 0..i % 3 {
                tokio::task::yield_now().await;
            }
            expected(i)
        });
    let mut handed = 0;
    while let Some(item) = stream.next().await {
        let (k, _, origin) = item.unwrap();
        let recorded = noted.lock().unwrap().contains(&k);
        assert_eq!(
            recorded,
            !origin.is_recalled(),
            "{k} handed over ({origin:?})"
        );
        handed += 1;
    }
    assert_eq!(handed, 500);
    assert_eq!(noted.lock().unwrap().len(), 500 - 167);
}

#[test]
fn unrecorded_names_how_many_were_recorded() {
    let (_dir, path) = journal_path();
    let journal = options("batch")
        .create(&path, Format::new())
        .unwrap()
        .journal;
    // A newline in an error is escaped by JSON; a key that serde cannot
    // write does not exist for strings, so use the format's own refusal: a
    // cancelled outcome.
    let records: Vec<(String, Outcome<u64, String>)> = vec![
        (key(0), Ok(0)),
        (key(1), Ok(1)),
        (key(2), Err(TaskError::Cancelled)),
        (key(3), Ok(3)),
    ];
    let err: Unrecorded<Error> = journal
        .record_all(records.iter().map(|(k, o)| (k, o)))
        .unwrap_err();
    assert_eq!(err.recorded, 2);
    assert!(matches!(err.error, Error::Encode { .. }), "{err:?}");
    drop(journal);
    assert_eq!(recorded_keys(&path), [key(0), key(1)]);
}

#[tokio::test]
async fn a_journal_of_another_run_is_refused_before_anything_runs() {
    let (_dir, path) = journal_path();
    run_all_over(&path, "one", &[0], RecordedFailures::Rerun).await;
    let err = fan_out_keyed(inputs(0..2))
        .journal_file::<u64, String>(&path, options("another"))
        .unwrap_err();
    assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("written by a different run (durable one)"),
        "{err}"
    );
}
