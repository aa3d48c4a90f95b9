//! The conformance suite: each test is written once, generic over the
//! broker, and runs twice: on the memory broker with workers as tasks of
//! the test, and on a real Redis (started by the test, stopped by pid) with
//! workers as separate processes. Test `x` runs as `x::memory` and
//! `x::redis`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{records, until_log, Farm, MemoryFarm, RedisFarm, WorkerOpts};
use fanout::{PanicPolicy, Retry, TaskError};
use fanout_redis::Coordinator;
use fanout_redis_tests::handler::{executions, Job, JOB, NOBODY};
use fanout_redis_tests::server;

/// Runs a generic test on both brokers.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(super::MemoryFarm::new(dir.path()), dir.path()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                if !super::server::available() {
                    return;
                }
                let dir = tempfile::tempdir().unwrap();
                super::$name(super::RedisFarm::new(dir.path(), &[]), dir.path()).await;
            }
        }
    };
}

async fn results_come_back_in_input_order_and_by_key(mut farm: impl Farm, _dir: &Path) {
    farm.start_worker(WorkerOpts::default()).await;
    farm.start_worker(WorkerOpts::default()).await;
    let coordinator = Coordinator::new(farm.broker().await);
    // Later inputs finish first.
    let jobs: Vec<Job> = (0..60).map(|i| Job::sleepy(i, 60 - i)).collect();
    let out = coordinator.fan_out(jobs).limit(16).run(&JOB).await.unwrap();
    assert_eq!(out, (0..60u64).map(|i| i * i).collect::<Vec<_>>());
    let keyed: BTreeMap<String, Job> = (0..20)
        .map(|i| (format!("k{i:02}"), Job::sleepy(i, 20 - i)))
        .collect();
    let pairs = coordinator.fan_out_keyed(keyed).run(&JOB).await.unwrap();
    let want: Vec<(String, u64)> = (0..20).map(|i| (format!("k{i:02}"), i * i)).collect();
    assert_eq!(pairs, want);
    farm.stop().await;
}
on_both!(results_come_back_in_input_order_and_by_key);

async fn a_collect_all_report_has_one_outcome_per_input(mut farm: impl Farm, _dir: &Path) {
    farm.start_worker(WorkerOpts::default()).await;
    let coordinator = Coordinator::new(farm.broker().await);
    let jobs: Vec<Job> = (0..30)
        .map(|i| Job {
            value: i,
            fail: i % 10 == 3,
            panic: i % 10 == 7,
            ..Job::default()
        })
        .collect();
    let report = coordinator
        .fan_out(jobs)
        .panics(PanicPolicy::AsError)
        .run_all(&JOB)
        .await;
    assert_eq!(report.len(), 30);
    let c = report.counts();
    assert_eq!((c.succeeded, c.failed, c.panicked), (24, 3, 3), "{c}");
    for (i, (k, o)) in report.outcomes().iter().enumerate() {
        assert_eq!(*k, i);
        match i % 10 {
            3 => assert_eq!(
                o.as_ref().unwrap_err().as_failed(),
                Some(&format!("boom {i}"))
            ),
            7 => match o {
                Err(TaskError::Panicked(p)) => {
                    assert_eq!(p.message(), Some(format!("kaboom {i}").as_str()))
                }
                other => panic!("input {i}: {other:?}"),
            },
            _ => assert_eq!(o.as_ref().ok(), Some(&(i as u64 * i as u64))),
        }
    }
    farm.stop().await;
}
on_both!(a_collect_all_report_has_one_outcome_per_input);

async fn fail_fast_cancels_the_siblings_running_on_other_workers(mut farm: impl Farm, _dir: &Path) {
    // Four slots each: the eight tasks need both workers.
    let opts = WorkerOpts {
        limit: 4,
        ..WorkerOpts::default()
    };
    farm.start_worker(opts.clone()).await;
    farm.start_worker(opts).await;
    let coordinator = Coordinator::new(farm.broker().await);
    // Task 0 fails once the others run; they would sleep a minute.
    let mut jobs: Vec<Job> = (0..8).map(|i| Job::sleepy(i, 60_000)).collect();
    jobs[0] = Job {
        value: 0,
        sleep_ms: 300,
        fail: true,
        ..Job::default()
    };
    let err = coordinator
        .fan_out(jobs)
        .limit(8)
        .run(&JOB)
        .await
        .unwrap_err();
    assert_eq!(err.key(), Some(&0));
    assert_eq!(err.task_error().map(String::as_str), Some("boom 0"));
    let c = err.counts();
    assert_eq!(c.failed, 1);
    assert_eq!(c.cancelled + c.not_started, 7, "{c}");
    // Every sibling that started heard the cancellation on its worker.
    let log = farm.log().to_owned();
    until_log(&log, "every started sibling cancelled", |e| {
        let started: Vec<u64> = e
            .iter()
            .filter(|x| x.what == "start" && x.index != 0)
            .map(|x| x.index)
            .collect();
        !started.is_empty()
            && started
                .iter()
                .all(|i| e.iter().any(|x| x.what == "cancelled" && x.index == *i))
    })
    .await;
    let workers: std::collections::BTreeSet<String> = executions(&log)
        .into_iter()
        .filter(|x| x.what == "cancelled")
        .map(|x| x.worker)
        .collect();
    assert_eq!(
        workers.len(),
        2,
        "both workers had siblings to cancel: {workers:?} {:#?}",
        executions(&log)
    );
    assert!(!executions(&log)
        .iter()
        .any(|x| x.what == "end" && x.index != 0));
    farm.stop().await;
}
on_both!(fail_fast_cancels_the_siblings_running_on_other_workers);

async fn a_timeout_counts_from_the_attempts_start_on_the_worker(mut farm: impl Farm, _dir: &Path) {
    // One slot: the second task waits in the queue longer than the
    // timeout, which must not count.
    farm.start_worker(WorkerOpts {
        limit: 1,
        ..WorkerOpts::default()
    })
    .await;
    let coordinator = Coordinator::new(farm.broker().await);
    let report = coordinator
        .fan_out([
            Job::sleepy(1, 300),
            Job::sleepy(2, 10),
            Job::sleepy(3, 5_000),
        ])
        .timeout(Duration::from_millis(1000))
        .run_all(&JOB)
        .await;
    let kinds: Vec<&str> = report
        .outcomes()
        .iter()
        .map(|(_, o)| o.as_ref().err().map_or("ok", |e| e.kind()))
        .collect();
    assert_eq!(kinds, ["ok", "ok", "timeout"]);
    assert!(
        matches!(report.outcomes()[2].1, Err(TaskError::TimedOut(d)) if d == Duration::from_millis(1000))
    );
    farm.stop().await;
}
on_both!(a_timeout_counts_from_the_attempts_start_on_the_worker);

async fn a_transient_failure_is_retried_with_backoff_by_any_worker(
    mut farm: impl Farm,
    _dir: &Path,
) {
    farm.start_worker(WorkerOpts::default()).await;
    farm.start_worker(WorkerOpts::default()).await;
    let broker = farm.broker().await;
    let coordinator = Coordinator::new(broker.clone());
    let jobs: Vec<Job> = (0..4)
        .map(|i| Job {
            value: i,
            fail_until_attempt: 2,
            ..Job::default()
        })
        .collect();
    let out = coordinator
        .fan_out(jobs.clone())
        .id("retried")
        .retry(Retry::attempts(3).backoff(Duration::from_millis(100)))
        .run(&JOB)
        .await
        .unwrap();
    assert_eq!(out, [0, 1, 4, 9]);
    // Three attempts each, each recorded once.
    let mut recs: Vec<(u64, u32)> = records(&broker, "retried")
        .await
        .into_iter()
        .map(|r| (r.0, r.1))
        .collect();
    recs.sort_unstable();
    let want: Vec<(u64, u32)> = (0..4).flat_map(|i| (1..=3).map(move |a| (i, a))).collect();
    assert_eq!(recs, want);
    // With too few attempts, the last error comes back.
    let err = coordinator
        .fan_out(jobs)
        .retry(Retry::attempts(2).backoff(Duration::from_millis(10)))
        .run(&JOB)
        .await
        .unwrap_err();
    assert_eq!(
        err.task_error().map(String::as_str),
        Some("attempt 2 fails")
    );
    farm.stop().await;
}
on_both!(a_transient_failure_is_retried_with_backoff_by_any_worker);

async fn a_handler_nobody_serves_is_reported_not_waited_for(mut farm: impl Farm, _dir: &Path) {
    farm.start_worker(WorkerOpts::default()).await;
    let coordinator = Coordinator::new(farm.broker().await);
    let err = coordinator
        .fan_out([Job::square(1), Job::square(2)])
        .worker_wait(Duration::from_millis(300))
        .run(&NOBODY)
        .await
        .unwrap_err();
    let Some(TaskError::Undeliverable(why)) = err.failure().map(|f| &f.error) else {
        panic!("{err:?}");
    };
    assert!(why.contains("no worker serves handler 'nobody'"), "{why}");
    farm.stop().await;
}
on_both!(a_handler_nobody_serves_is_reported_not_waited_for);

async fn a_worker_serving_other_types_refuses_the_task_by_name(mut farm: impl Farm, _dir: &Path) {
    farm.start_worker(WorkerOpts {
        other_types: true,
        ..WorkerOpts::default()
    })
    .await;
    let coordinator = Coordinator::new(farm.broker().await);
    let report = coordinator.fan_out([Job::square(3)]).run_all(&JOB).await;
    let Err(TaskError::Undeliverable(why)) = &report.outcomes()[0].1 else {
        panic!("{:?}", report.outcomes());
    };
    assert!(
        why.contains("serves handler 'job' with input alloc::string::String"),
        "{why}"
    );
    farm.stop().await;
}
on_both!(a_worker_serving_other_types_refuses_the_task_by_name);

async fn a_killed_workers_task_is_taken_over_and_recorded_once(mut farm: impl Farm, _dir: &Path) {
    let opts = WorkerOpts {
        lease: Duration::from_millis(600),
        ..WorkerOpts::default()
    };
    let doomed = farm.start_worker(opts.clone()).await;
    let broker = farm.broker().await;
    let coordinator = Coordinator::new(broker.clone());
    let jobs: Vec<Job> = (0..6).map(|i| Job::sleepy(i, 400)).collect();
    let run = tokio::spawn(coordinator.fan_out(jobs).id("takeover").limit(6).run(&JOB));
    let log = farm.log().to_owned();
    until_log(&log, "the first worker holding tasks", |e| {
        e.iter().filter(|x| x.what == "start").count() >= 6
    })
    .await;
    farm.kill_worker(doomed);
    farm.start_worker(opts).await;
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the run finished")
        .unwrap()
        .unwrap();
    assert_eq!(out, [0, 1, 4, 9, 16, 25]);
    let mut recs: Vec<(u64, u32)> = records(&broker, "takeover")
        .await
        .into_iter()
        .map(|r| (r.0, r.1))
        .collect();
    recs.sort_unstable();
    assert_eq!(
        recs,
        (0..6).map(|i| (i, 1)).collect::<Vec<_>>(),
        "each task recorded once"
    );
    farm.stop().await;
}
on_both!(a_killed_workers_task_is_taken_over_and_recorded_once);

async fn a_task_that_kills_every_worker_ends_in_the_dead_letters(mut farm: impl Farm, _dir: &Path) {
    // Each delivery's worker is killed while it holds the task (it hangs);
    // the third delivery, past `max_deliveries`, is dead-lettered.
    let opts = WorkerOpts {
        lease: Duration::from_millis(500),
        max_deliveries: 2,
        ..WorkerOpts::default()
    };
    let broker = farm.broker().await;
    let coordinator = Coordinator::new(broker.clone());
    let first = farm.start_worker(opts.clone()).await;
    let run = tokio::spawn(
        coordinator
            .fan_out([Job::sleepy(7, 600_000)])
            .id("poison")
            .run_all(&JOB),
    );
    let log = farm.log().to_owned();
    until_log(&log, "delivery 1", |e| {
        e.iter().filter(|x| x.what == "start").count() >= 1
    })
    .await;
    farm.kill_worker(first);
    let second = farm.start_worker(opts.clone()).await;
    until_log(&log, "delivery 2", |e| {
        e.iter().filter(|x| x.what == "start").count() >= 2
    })
    .await;
    farm.kill_worker(second);
    farm.start_worker(opts).await;
    let report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the run finished")
        .unwrap();
    let Err(TaskError::Undeliverable(why)) = &report.outcomes()[0].1 else {
        panic!("{:?}", report.outcomes());
    };
    assert!(why.contains("dead-letter"), "{why}");
    assert_eq!(report.counts().undeliverable, 1);
    let dead = coordinator.dead_letters(&JOB).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].why.contains("delivered 2 times"), "{}", dead[0].why);
    assert_eq!(dead[0].input.as_ref().map(|j| j.value), Some(7));
    assert!(matches!(dead[0].error, TaskError::Undeliverable(_)));
    farm.stop().await;
}
on_both!(a_task_that_kills_every_worker_ends_in_the_dead_letters);

async fn a_task_that_fails_every_attempt_lands_in_the_dead_letters_with_its_last_error(
    mut farm: impl Farm,
    _dir: &Path,
) {
    farm.start_worker(WorkerOpts::default()).await;
    let coordinator = Coordinator::new(farm.broker().await);
    coordinator.clear_dead_letters(&JOB).await.unwrap();
    let jobs = [
        Job::square(1),
        Job {
            value: 2,
            fail_until_attempt: 5,
            ..Job::default()
        },
        Job {
            value: 3,
            fail_until_attempt: 1,
            ..Job::default()
        },
    ];
    let report = coordinator
        .fan_out(jobs)
        .id("doomed")
        .retry(Retry::attempts(2).backoff(Duration::from_millis(10)))
        .run_all(&JOB)
        .await;
    assert_eq!(report.counts().succeeded, 2);
    // Only the task that failed both attempts is a dead letter; the one
    // that recovered on its second attempt is not.
    let dead = coordinator.dead_letters(&JOB).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!((d.run.as_str(), d.index, d.attempt), ("doomed", 1, 2));
    assert_eq!(d.input.as_ref().map(|j| j.value), Some(2));
    assert_eq!(
        d.error.as_failed().map(String::as_str),
        Some("attempt 2 fails")
    );
    assert!(d.why.contains("failed its last attempt (2)"), "{}", d.why);
    coordinator.clear_dead_letters(&JOB).await.unwrap();
    assert!(coordinator.dead_letters(&JOB).await.unwrap().is_empty());
    farm.stop().await;
}
on_both!(a_task_that_fails_every_attempt_lands_in_the_dead_letters_with_its_last_error);

const SECRET: &str = "a secret of more than sixteen bytes";

async fn a_worker_with_a_secret_runs_only_tasks_signed_with_it(mut farm: impl Farm, _dir: &Path) {
    farm.start_worker(WorkerOpts {
        secret: Some(SECRET),
        ..WorkerOpts::default()
    })
    .await;
    let broker = farm.broker().await;
    let secret = fanout_redis::Secret::new(SECRET).unwrap();
    let signed = Coordinator::new(broker.clone()).with_secret(secret);
    let out = signed.fan_out([Job::square(4)]).run(&JOB).await.unwrap();
    assert_eq!(out, [16]);
    // Someone with access to the broker only: unsigned, or signed with
    // another secret. Neither runs.
    signed.clear_dead_letters(&JOB).await.unwrap();
    let intruders = [
        Coordinator::new(broker.clone()),
        Coordinator::new(broker.clone())
            .with_secret(fanout_redis::Secret::new("another secret, also long").unwrap()),
    ];
    for (n, intruder) in intruders.iter().enumerate() {
        let report = intruder
            .fan_out([Job::square(100 + n as u64)])
            .id(format!("intruder-{n}"))
            .run_all(&JOB)
            .await;
        let Err(TaskError::Undeliverable(why)) = &report.outcomes()[0].1 else {
            panic!("{:?}", report.outcomes());
        };
        // The worker's refusal, signed with its secret: the intruder with
        // another secret cannot read it as the worker's either.
        let expected = [
            "runs only tasks signed with its secret",
            "is signed with another secret, not with this coordinator's secret",
        ][n];
        assert!(why.contains(expected), "{why}");
    }
    let log = executions(farm.log());
    assert!(
        log.iter().all(|x| !x.run.starts_with("intruder")),
        "a task not signed with the secret ran: {log:?}"
    );
    let dead = signed.dead_letters(&JOB).await.unwrap();
    let whys: Vec<&str> = dead.iter().map(|d| d.why.as_str()).collect();
    assert_eq!(dead.len(), 2, "{whys:?}");
    assert!(whys[0].contains("is not signed"), "{whys:?}");
    assert!(whys[1].contains("is signed with another"), "{whys:?}");
    farm.stop().await;
}
on_both!(a_worker_with_a_secret_runs_only_tasks_signed_with_it);

async fn a_coordinator_with_a_secret_accepts_only_results_signed_with_it(
    mut farm: impl Farm,
    _dir: &Path,
) {
    // A worker without the secret (someone else's) takes the task: its
    // result must not be taken for the task's.
    farm.start_worker(WorkerOpts::default()).await;
    let coordinator = Coordinator::new(farm.broker().await)
        .with_secret(fanout_redis::Secret::new(SECRET).unwrap());
    let err = coordinator
        .fan_out([Job::square(5)])
        .run(&JOB)
        .await
        .unwrap_err();
    let Some(TaskError::Undeliverable(why)) = err.failure().map(|f| &f.error) else {
        panic!("{err:?}");
    };
    assert!(
        why.contains("is not signed with this coordinator's secret"),
        "{why}"
    );
    farm.stop().await;
}
on_both!(a_coordinator_with_a_secret_accepts_only_results_signed_with_it);

async fn an_input_the_worker_cannot_read_fails_that_task_only(mut farm: impl Farm, _dir: &Path) {
    farm.start_worker(WorkerOpts::default()).await;
    let coordinator = Coordinator::new(farm.broker().await);
    let mut jobs: Vec<Job> = (0..5).map(Job::square).collect();
    jobs[2].undecodable = fanout_redis_tests::handler::Undecodable(true);
    let report = coordinator.fan_out(jobs).run_all(&JOB).await;
    let kinds: Vec<&str> = report
        .outcomes()
        .iter()
        .map(|(_, o)| o.as_ref().err().map_or("ok", |e| e.kind()))
        .collect();
    assert_eq!(kinds, ["ok", "ok", "undeliverable", "ok", "ok"]);
    let Err(TaskError::Undeliverable(why)) = &report.outcomes()[2].1 else {
        unreachable!()
    };
    assert!(
        why.contains("task 2 of run") && why.contains("does not decode as"),
        "{why}"
    );
    // The worker is still there.
    assert_eq!(
        coordinator
            .fan_out([Job::square(9)])
            .run(&JOB)
            .await
            .unwrap(),
        [81]
    );
    farm.stop().await;
}
on_both!(an_input_the_worker_cannot_read_fails_that_task_only);

async fn an_input_over_the_size_limit_is_refused_before_it_is_queued(
    mut farm: impl Farm,
    _dir: &Path,
) {
    farm.start_worker(WorkerOpts::default()).await;
    let coordinator = Coordinator::new(farm.broker().await);
    let big = Job {
        value: 1,
        pad: vec![7; fanout_redis::MAX_PAYLOAD],
        ..Job::default()
    };
    let fits = Job {
        value: 2,
        pad: vec![7; 1 << 20],
        ..Job::default()
    };
    let report = coordinator.fan_out([big, fits]).run_all(&JOB).await;
    let Err(TaskError::Undeliverable(why)) = &report.outcomes()[0].1 else {
        panic!("{:?}", report.outcomes()[0].1);
    };
    assert!(
        why.contains("task 0: its input is 16777") && why.contains("over the limit"),
        "{why}"
    );
    assert_eq!(report.outcomes()[1].1.as_ref().ok(), Some(&4));
    let log = executions(farm.log());
    assert!(
        log.iter().all(|x| x.index != 0),
        "the big task was queued: {log:?}"
    );
    farm.stop().await;
}
on_both!(an_input_over_the_size_limit_is_refused_before_it_is_queued);

async fn a_stream_hands_outcomes_over_as_they_complete_or_in_input_order(
    mut farm: impl Farm,
    _dir: &Path,
) {
    farm.start_worker(WorkerOpts::default()).await;
    let coordinator = Coordinator::new(farm.broker().await);
    // Task i sleeps (5 - i) * 150 ms: the last finishes first.
    let jobs = || (0..5u64).map(|i| Job::sleepy(i, (5 - i) * 150));
    let progress = fanout::Progress::new();
    let mut s = coordinator
        .fan_out(jobs())
        .progress(&progress)
        .stream(fanout::Order::Completion, &JOB);
    let mut seen = Vec::new();
    while let Some((i, o)) = s.next().await {
        assert_eq!(o.unwrap(), (i as u64).pow(2));
        seen.push(i);
    }
    assert_eq!(seen, [4, 3, 2, 1, 0]);
    let snap = progress.snapshot();
    assert_eq!((snap.started, snap.succeeded, snap.in_flight), (5, 5, 0));
    let mut s = coordinator
        .fan_out(jobs())
        .stream(fanout::Order::Input, &JOB);
    let mut seen = Vec::new();
    while let Some((i, o)) = s.next().await {
        o.unwrap();
        seen.push(i);
    }
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    farm.stop().await;
}
on_both!(a_stream_hands_outcomes_over_as_they_complete_or_in_input_order);

async fn the_callers_token_and_the_deadline_cancel_the_tasks_on_the_workers(
    mut farm: impl Farm,
    _dir: &Path,
) {
    farm.start_worker(WorkerOpts::default()).await;
    let coordinator = Coordinator::new(farm.broker().await);
    let log = farm.log().to_owned();
    let cancelled_in = |run: &str| {
        executions(&log)
            .iter()
            .filter(|x| x.what == "cancelled" && x.run == run)
            .count()
    };
    // The caller's token, once all four tasks run.
    let token = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(
        coordinator
            .fan_out((0..4).map(|i| Job::sleepy(i, 60_000)))
            .id("token")
            .cancel_on(&token)
            .run(&JOB),
    );
    until_log(&log, "four tasks running", |e| {
        e.iter().filter(|x| x.run == "token").count() == 4
    })
    .await;
    token.cancel();
    let err = run.await.unwrap().unwrap_err();
    assert!(matches!(err.cause(), fanout::Cause::Cancelled), "{err:?}");
    assert_eq!(err.counts().cancelled, 4, "{}", err.counts());
    until_log(&log, "the four cancelled on the worker", |_| {
        cancelled_in("token") == 4
    })
    .await;
    // The deadline.
    let err = coordinator
        .fan_out((0..4).map(|i| Job::sleepy(i, 60_000)))
        .id("deadline")
        .deadline(Duration::from_millis(500))
        .run(&JOB)
        .await
        .unwrap_err();
    assert!(
        matches!(err.cause(), fanout::Cause::DeadlineExceeded),
        "{err:?}"
    );
    until_log(&log, "the started ones cancelled on the worker", |e| {
        let started = e.iter().filter(|x| x.run == "deadline").count() - cancelled_in("deadline");
        started > 0 && started == cancelled_in("deadline")
    })
    .await;
    farm.stop().await;
}
on_both!(the_callers_token_and_the_deadline_cancel_the_tasks_on_the_workers);

async fn without_prefetch_a_queued_task_goes_to_the_worker_with_a_free_slot(
    mut farm: impl Farm,
    _dir: &Path,
) {
    let opts = WorkerOpts {
        limit: 1,
        prefetch: Some(0),
        ..WorkerOpts::default()
    };
    farm.start_worker(opts.clone()).await;
    farm.start_worker(opts).await;
    let coordinator = Coordinator::new(farm.broker().await);
    let out = coordinator
        .fan_out([Job::sleepy(1, 600), Job::sleepy(2, 600)])
        .id("spread")
        .run(&JOB)
        .await
        .unwrap();
    assert_eq!(out, [1, 4]);
    // Neither worker held the second task while running the first.
    let workers: std::collections::BTreeSet<String> = executions(farm.log())
        .into_iter()
        .filter(|x| x.what == "start")
        .map(|x| x.worker)
        .collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    farm.stop().await;
}
on_both!(without_prefetch_a_queued_task_goes_to_the_worker_with_a_free_slot);
