//! The simulation wrapper's own behaviour (`sim+` URLs): counters, peak
//! concurrency, injected failures and lost acknowledgements, the operation log.

use std::sync::Arc;

use anthill::pad_store::sim::{OpRecord, OpStats, Phase};
use anthill::pad_store::{
    Backend, BackendError, BackendOptions, OpKind, PutReceipt, SimConfig, SimPadStore, open,
};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::join_all;

fn no_options() -> BackendOptions {
    BackendOptions::default()
}

async fn sim_over_memory(config: SimConfig) -> (Arc<SimPadStore>, Arc<dyn Backend>) {
    let inner = open("memory://", &no_options()).await.unwrap();
    let sim = Arc::new(SimPadStore::new(Arc::clone(&inner), config));
    (sim, inner)
}

fn stats(sim: &SimPadStore) -> anthill::pad_store::SimStats {
    sim.sim_stats()
}

#[tokio::test]
async fn sim_counts_each_op_kind_and_bytes() {
    let mut config = SimConfig::default();
    config.pad_price = Some(0.5);
    let (sim, _) = sim_over_memory(config).await;
    for name in ["p/1", "p/2", "p/3"] {
        sim.reserve(name, Bytes::from(vec![7; 10])).await.unwrap();
    }
    assert!(sim.reserve("p/1", Bytes::from(vec![7; 10])).await.is_err());
    let r1 = sim.put("p/1", Bytes::from(vec![1; 100])).await.unwrap();
    let r2 = sim.put("p/2", Bytes::from(vec![2; 50])).await.unwrap();
    sim.verify("p/1", &r1).await.unwrap();
    sim.verify("p/2", &r2).await.unwrap();
    assert_eq!(sim.get("p/1").await.unwrap().len(), 100);
    assert!(sim.get("p/missing").await.is_err());
    assert_eq!(sim.list("p/").await.unwrap().len(), 3);
    sim.delete("p/3").await.unwrap();

    let s = stats(&sim);
    let op = |calls, bytes| OpStats {
        calls,
        failures: 0,
        in_flight: 0,
        peak_in_flight: 1,
        bytes,
    };
    // The refused reserve sent nothing and is an answer, not a failure.
    assert_eq!(s.reserve, op(4, 30));
    assert_eq!(s.put, op(2, 150));
    assert_eq!(s.verify, op(2, 0));
    assert_eq!(s.get, op(2, 100));
    assert_eq!(s.list, op(1, 0));
    assert_eq!(s.delete, op(1, 0));
    assert_eq!(s.pads_reserved, 3);
    assert_eq!(s.cost, 1.5);
    assert_eq!(sim.capabilities().price_per_pad, Some(0.5));
    for kind in OpKind::ALL {
        assert_eq!(s.op(kind).in_flight, 0);
    }
}

/// A ranged read is one read request, counting only the bytes it fetched,
/// and the simulation passes the inner backend's `ranged_reads` on.
#[tokio::test]
async fn sim_counts_a_ranged_read_as_one_get_of_its_bytes() {
    let (sim, inner) = sim_over_memory(SimConfig::default()).await;
    sim.put("p/1", Bytes::from(vec![5; 100_000])).await.unwrap();
    assert_eq!(sim.get_range("p/1", 10..1034).await.unwrap().len(), 1024);
    assert_eq!(
        sim.get_range("p/1", 99_990..200_000).await.unwrap().len(),
        10
    );
    let s = stats(&sim);
    assert_eq!((s.get.calls, s.get.bytes), (2, 1034));
    assert!(inner.capabilities().ranged_reads);
    assert!(sim.capabilities().ranged_reads);
}

#[tokio::test]
async fn sim_peak_in_flight_reaches_the_concurrency_and_no_more() {
    let mut config = SimConfig::default();
    config.latency_ms = 5.0;
    config.jitter_ms = 2.0;
    config.seed = Some(1);
    let (sim, _) = sim_over_memory(config).await;
    let names: Vec<String> = (0..12).map(|i| format!("p/{i}")).collect();
    for name in &names {
        sim.put(name, Bytes::from_static(b"x")).await.unwrap();
    }
    assert_eq!(stats(&sim).put.peak_in_flight, 1);

    let gets = names.iter().take(8).map(|name| sim.get(name));
    let puts = names[8..]
        .iter()
        .map(|name| sim.put(name, Bytes::from_static(b"y")));
    let (got, put) = futures::join!(join_all(gets), join_all(puts));
    assert!(got.iter().all(Result::is_ok) && put.iter().all(Result::is_ok));
    let s = stats(&sim);
    assert_eq!(s.get.peak_in_flight, 8);
    assert_eq!(s.put.peak_in_flight, 4);
    assert_eq!((s.get.in_flight, s.put.in_flight), (0, 0));
    assert_eq!(s.reserve.peak_in_flight, 0);

    sim.reset_peaks();
    assert_eq!(stats(&sim).get.peak_in_flight, 0);
    join_all(names.iter().take(3).map(|name| sim.get(name))).await;
    assert_eq!(stats(&sim).get.peak_in_flight, 3);
}

#[tokio::test]
async fn sim_fail_rate_one_fails_every_op_transiently() {
    let mut config = SimConfig::default();
    config.fail_rate = 1.0;
    config.seed = Some(3);
    let (sim, _) = sim_over_memory(config).await;
    let receipt = PutReceipt {
        e_tag: None,
        size: 1,
    };
    let results = vec![
        sim.reserve("p/a", Bytes::from_static(b"a"))
            .await
            .map(|_| ()),
        sim.put("p/a", Bytes::from_static(b"a")).await.map(|_| ()),
        sim.put_durable("p/a", Bytes::from_static(b"a"))
            .await
            .map(|_| ()),
        sim.verify("p/a", &receipt).await,
        sim.get("p/a").await.map(|_| ()),
        sim.list("p/").await.map(|_| ()),
        sim.delete("p/a").await,
    ];
    for result in &results {
        assert!(
            matches!(result, Err(BackendError::Transient(m)) if m.contains("simulated")),
            "{result:?}"
        );
    }
    let s = stats(&sim);
    for kind in OpKind::ALL {
        assert_eq!(s.op(kind).calls, 1, "{kind:?}");
        assert_eq!(s.op(kind).failures, 1, "{kind:?}");
    }
    sim.set_fail_rate(0.0);
    sim.put("p/a", Bytes::from_static(b"ok")).await.unwrap();
    assert_eq!(sim.get("p/a").await.unwrap(), Bytes::from_static(b"ok"));
}

#[tokio::test]
async fn sim_fail_next_hits_exactly_the_nth_call_of_its_kind() {
    let (sim, inner) = sim_over_memory(SimConfig::default()).await;
    sim.fail_next(OpKind::Put, 3, true);
    sim.fail_next(OpKind::Get, 1, false);

    sim.put("p/x", Bytes::from_static(b"one")).await.unwrap();
    // Calls of other kinds do not count towards the put's countdown.
    assert!(matches!(
        sim.get("p/x").await,
        Err(BackendError::Transient(_))
    ));
    assert_eq!(sim.get("p/x").await.unwrap(), Bytes::from_static(b"one"));
    sim.put("p/x", Bytes::from_static(b"two")).await.unwrap();
    let third = sim.put("p/x", Bytes::from_static(b"three")).await;
    assert!(
        matches!(&third, Err(BackendError::Permanent(m)) if m.contains("simulated")),
        "{third:?}"
    );
    // The fault struck before the backend: the third put did not land.
    assert_eq!(inner.get("p/x").await.unwrap(), Bytes::from_static(b"two"));
    sim.put("p/x", Bytes::from_static(b"four")).await.unwrap();
    sim.put("p/x", Bytes::from_static(b"five")).await.unwrap();
    let s = stats(&sim);
    assert_eq!((s.put.calls, s.put.failures), (5, 1));
    assert_eq!((s.get.calls, s.get.failures), (2, 1));
}

#[tokio::test]
async fn sim_lost_ack_leaves_the_object_created() {
    let mut config = SimConfig::default();
    config.pad_price = Some(2.0);
    let (sim, inner) = sim_over_memory(config).await;
    sim.lose_ack_next(OpKind::Reserve, 1);
    let first = sim.reserve("p/lost", Bytes::from_static(b"pad")).await;
    assert!(
        matches!(first, Err(BackendError::Transient(_))),
        "{first:?}"
    );
    assert_eq!(
        inner.get("p/lost").await.unwrap(),
        Bytes::from_static(b"pad")
    );
    assert_eq!(
        sim.reserve("p/lost", Bytes::from_static(b"pad")).await,
        Err(BackendError::AlreadyExists("p/lost".into()))
    );
    let s = stats(&sim);
    // The network charged for the pad although the caller saw a failure.
    assert_eq!(s.pads_reserved, 1);
    assert_eq!(s.cost, 2.0);
    assert_eq!(s.reserve.bytes, 3);
}

#[tokio::test]
async fn sim_random_failures_may_create_the_object_and_a_retry_sees_it() {
    let mut config = SimConfig::default();
    config.fail_rate = 0.5;
    config.seed = Some(42);
    let (sim, inner) = sim_over_memory(config).await;
    let mut already_exists_after_failure = 0;
    for i in 0..200 {
        let name = format!("p/{i}");
        let mut failed_before = false;
        let outcome = loop {
            match sim.reserve(&name, Bytes::from_static(b"pad")).await {
                Err(BackendError::Transient(_)) => failed_before = true,
                other => break other,
            }
        };
        match outcome {
            Ok(()) => {}
            Err(BackendError::AlreadyExists(_)) => {
                assert!(failed_before, "{name}: AlreadyExists without a failure");
                already_exists_after_failure += 1;
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(inner.get(&name).await.unwrap(), Bytes::from_static(b"pad"));
    }
    assert!(
        already_exists_after_failure > 0,
        "no failure struck after the reserve in 200 tries at fail_rate 0.5"
    );
    let s = stats(&sim);
    assert_eq!(s.pads_reserved, 200, "each pad is created exactly once");
    assert!(s.reserve.failures > 0);
    assert_eq!(s.reserve.calls, s.reserve.failures + 200);
}

#[tokio::test]
async fn sim_op_log_records_start_and_end_in_order() {
    let mut config = SimConfig::default();
    config.latency_ms = 2.0;
    let (sim, _) = sim_over_memory(config).await;
    let record = |kind, phase, name: &str, ok| OpRecord {
        kind,
        phase,
        name: name.into(),
        ok,
    };
    sim.reserve("p/a", Bytes::from_static(b"a")).await.unwrap();
    sim.get("p/a").await.unwrap();
    sim.get("p/b").await.unwrap_err();
    assert_eq!(
        sim.op_log(),
        vec![
            record(OpKind::Reserve, Phase::Start, "p/a", true),
            record(OpKind::Reserve, Phase::End, "p/a", true),
            record(OpKind::Get, Phase::Start, "p/a", true),
            record(OpKind::Get, Phase::End, "p/a", true),
            record(OpKind::Get, Phase::Start, "p/b", true),
            record(OpKind::Get, Phase::End, "p/b", false),
        ]
    );

    sim.clear_log();
    assert!(sim.op_log().is_empty());
    join_all(["p/a", "p/a", "p/a"].map(|name| sim.get(name))).await;
    let phases: Vec<Phase> = sim.op_log().iter().map(|r| r.phase).collect();
    assert_eq!(
        phases,
        [
            Phase::Start,
            Phase::Start,
            Phase::Start,
            Phase::End,
            Phase::End,
            Phase::End
        ]
    );

    // A call dropped mid-way leaves the in-flight count and logs its end.
    sim.clear_log();
    let pending = sim.get("p/a").now_or_never();
    assert!(pending.is_none(), "the latency keeps the call pending");
    assert_eq!(stats(&sim).get.in_flight, 0);
    assert_eq!(
        sim.op_log(),
        vec![
            record(OpKind::Get, Phase::Start, "p/a", true),
            record(OpKind::Get, Phase::End, "p/a", false),
        ]
    );
}
