//! Integrity of keyed runs: a map or a `Vec` of pairs gives results keyed by
//! the same keys, exactly one per input, in input order, and errors and
//! reports carry the keys. Tasks finish out of order on purpose; a property
//! test compares keyed runs with a sequential model.

use std::collections::{BTreeMap, HashMap};

use fanout::{fan_out_keyed, Order, PanicPolicy, TaskError};
use proptest::prelude::*;
use tokio::time::sleep;

use crate::common::{ms, paused_runtime};

#[tokio::test(start_paused = true)]
async fn a_btreemap_of_tasks_gives_one_result_per_key_in_map_order() {
    let map: BTreeMap<String, u64> = (0..20u64).map(|i| (format!("k{i:02}"), i)).collect();
    let out = fan_out_keyed(map.clone())
        .limit(4)
        .run(|ctx, v| async move {
            // Later keys finish first.
            sleep(ms(40 - 2 * v)).await;
            assert_eq!(ctx.key(), &format!("k{v:02}"));
            Ok::<_, ()>(v * 10)
        })
        .await
        .unwrap();
    let expected: Vec<(String, u64)> = map.into_iter().map(|(k, v)| (k, v * 10)).collect();
    assert_eq!(out, expected);
}

#[tokio::test(start_paused = true)]
async fn a_hashmap_of_tasks_gives_one_result_per_key_in_its_iteration_order() {
    let map: HashMap<u32, u32> = (0..50).map(|i| (i * 7, i)).collect();
    let order: Vec<u32> = map.keys().copied().collect();
    let out = fan_out_keyed(map.clone())
        .limit(8)
        .lanes(3)
        .run(|ctx, v| async move {
            sleep(ms(u64::from(v * 13 % 7))).await;
            assert_eq!(*ctx.key(), v * 7);
            Ok::<_, ()>(v)
        })
        .await
        .unwrap();
    assert_eq!(out.iter().map(|(k, _)| *k).collect::<Vec<_>>(), order);
    let back: HashMap<u32, u32> = out.into_iter().collect();
    assert_eq!(back, map);
}

#[tokio::test(start_paused = true)]
async fn a_vec_of_pairs_keeps_input_order_and_one_result_per_pair_even_with_repeated_keys() {
    let pairs = vec![("b", 1u64), ("a", 2), ("b", 3), ("c", 4)];
    let out = fan_out_keyed(pairs.clone())
        .limit(4)
        .run(|ctx, v| async move {
            sleep(ms(10 - v)).await;
            Ok::<_, ()>((ctx.index(), v))
        })
        .await
        .unwrap();
    assert_eq!(
        out,
        [("b", (0, 1)), ("a", (1, 2)), ("b", (2, 3)), ("c", (3, 4))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_keyed_failure_names_its_key_and_its_index() {
    let map = BTreeMap::from([("alpha", 30u64), ("beta", 10), ("gamma", 20), ("delta", 5)]);
    // BTreeMap order: alpha, beta, delta, gamma. beta fails first (10 ms),
    // gamma too but later (20 ms), so beta is the cause.
    let err = fan_out_keyed(map)
        .limit(4)
        .grace(ms(100))
        .run(|ctx, d| async move {
            sleep(ms(d)).await;
            match *ctx.key() {
                "beta" | "gamma" => Err(format!("{} broke", ctx.key())),
                _ => Ok(d),
            }
        })
        .await
        .unwrap_err();
    assert_eq!(err.key(), Some(&"beta"));
    let f = err.failure().unwrap();
    assert_eq!(f.index, 1);
    assert_eq!(err.task_error().map(String::as_str), Some("beta broke"));
    // gamma finished within the grace period: another genuine failure, keyed.
    assert_eq!(err.others().len(), 1);
    assert_eq!(err.others()[0].key, "gamma");
    assert_eq!(err.others()[0].index, 3);
    assert_eq!(err.counts().total(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_collect_all_report_has_one_outcome_per_key_in_input_order() {
    let pairs = vec![("x", 0u32), ("y", 1), ("z", 2), ("w", 3)];
    let report = fan_out_keyed(pairs)
        .limit(2)
        .panics(PanicPolicy::AsError)
        .run_all(|_ctx, v| async move {
            match v {
                1 => Err("bad"),
                2 => panic!("[intentional] keyed panic"),
                _ => Ok(v),
            }
        })
        .await;
    let keys: Vec<&str> = report.outcomes().iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["x", "y", "z", "w"]);
    assert!(matches!(report.outcomes()[0], ("x", Ok(0))));
    assert!(matches!(
        report.outcomes()[1],
        ("y", Err(TaskError::Failed("bad")))
    ));
    assert!(matches!(
        report.outcomes()[2],
        ("z", Err(TaskError::Panicked(_)))
    ));
    assert!(matches!(report.outcomes()[3], ("w", Ok(3))));
    let failed: Vec<&str> = report.failures().map(|(k, _)| *k).collect();
    assert_eq!(failed, ["y", "z"]);
    let err = report.into_result().unwrap_err();
    assert_eq!(err.key(), Some(&"y"));
    assert_eq!(err.others()[0].key, "z");
}

#[tokio::test(start_paused = true)]
async fn a_keyed_stream_in_input_order_yields_each_key_once_in_order() {
    let map: BTreeMap<u8, u64> = (0..30u8).map(|k| (k, u64::from(k) * 7 % 11)).collect();
    let mut stream =
        fan_out_keyed(map.clone())
            .limit(4)
            .stream(Order::Input, |_ctx, d| async move {
                sleep(ms(d)).await;
                Ok::<_, ()>(d)
            });
    let mut got = Vec::new();
    while let Some((k, o)) = stream.next().await {
        got.push((k, o.unwrap()));
    }
    assert_eq!(got, map.into_iter().collect::<Vec<_>>());
}

/// A task plan per key: its delay, and whether it fails.
fn keyed_plan() -> impl Strategy<Value = (BTreeMap<u16, (u64, bool)>, usize)> {
    (
        proptest::collection::btree_map(
            any::<u16>(),
            (0u64..20, proptest::bool::weighted(0.2)),
            0..30,
        ),
        1usize..=6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Against the sequential model: a collect-all run over a map gives, in
    /// map order, each key's own outcome, exactly once.
    #[test]
    fn a_collect_all_keyed_run_agrees_with_the_sequential_model((map, limit) in keyed_plan()) {
        let rt = paused_runtime();
        let report = rt.block_on(
            fan_out_keyed(map.clone())
                .limit(limit)
                .run_all(|ctx, (d, fails)| async move {
                    sleep(ms(d)).await;
                    if fails { Err(*ctx.key()) } else { Ok(u64::from(*ctx.key()) + d) }
                }),
        );
        let got: Vec<(u16, Result<u64, u16>)> = report
            .into_outcomes()
            .into_iter()
            .map(|(k, o)| (k, o.map_err(|e| e.into_failed().expect("only Failed"))))
            .collect();
        let expected: Vec<(u16, Result<u64, u16>)> = map
            .iter()
            .map(|(&k, &(d, fails))| (k, if fails { Err(k) } else { Ok(u64::from(k) + d) }))
            .collect();
        prop_assert_eq!(got, expected);

        // Fail-fast: Ok with every key iff nothing fails; else the error names
        // a failing key that finished first.
        let res = rt.block_on(
            fan_out_keyed(map.clone())
                .limit(limit)
                .run(|ctx, (d, fails)| async move {
                    sleep(ms(d)).await;
                    if fails { Err(*ctx.key()) } else { Ok(d) }
                }),
        );
        match res {
            Ok(out) => {
                prop_assert!(map.values().all(|(_, f)| !f));
                let expected: Vec<(u16, u64)> = map.iter().map(|(&k, &(d, _))| (k, d)).collect();
                prop_assert_eq!(out, expected);
            }
            Err(e) => {
                let key = *e.key().expect("a task is the cause");
                prop_assert!(map[&key].1, "the cause failed");
                prop_assert_eq!(e.task_error(), Some(&key));
                prop_assert_eq!(e.counts().total(), map.len());
            }
        }
    }
}
