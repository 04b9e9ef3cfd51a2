//! The lease's unit tests: its format, the probe, acquisition, renewal,
//! the fence and release, against an in-memory object store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path;
use object_store::{ObjectStore, PutMode};

use super::held::HeldState;
use super::record::{Record, local_host};
use super::*;

#[test]
fn records_round_trip_and_garbage_is_none() {
    let record = Record {
        owner: "abc-pid-7".into(),
        token: "0123".into(),
        expires_ms: 1_700_000_000_000,
        pid: 7,
        host: "boot/pid:[1]".into(),
    };
    assert_eq!(Record::decode(&record.encode()), Some(record));
    assert_eq!(Record::decode(b"not a lease"), None);
    assert_eq!(Record::decode(b"anthill-lease 1\nowner x\n"), None);
}

#[test]
fn conditional_writes_option_values() {
    assert_eq!(
        ConditionalWrites::parse("auto"),
        Some(ConditionalWrites::Auto)
    );
    assert_eq!(
        ConditionalWrites::parse("TRUE"),
        Some(ConditionalWrites::Honoured)
    );
    assert_eq!(
        ConditionalWrites::parse("false"),
        Some(ConditionalWrites::Ignored)
    );
    assert_eq!(ConditionalWrites::parse("maybe"), None);
}

fn memory_lease(conditional: ConditionalWrites, ttl: Duration) -> Arc<Lease> {
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    Arc::new(Lease::new(
        store,
        Path::from("pre"),
        "memory://lease-test".into(),
        "bucket".into(),
        LeaseConfig {
            conditional_writes: conditional,
            ttl,
            wait_limit: Duration::from_secs(5),
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_honours_conditional_writes() {
    let lease = memory_lease(ConditionalWrites::Auto, DEFAULT_TTL);
    assert!(lease.conditional_writes().await.unwrap());
    // The probe cleaned up after itself.
    let left: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(lease.store.list(None))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_lease_stops_its_holder_and_is_not_deleted_on_release() {
    for conditional in [ConditionalWrites::Honoured, ConditionalWrites::Ignored] {
        let ttl = Duration::from_millis(900);
        let lease = memory_lease(conditional, ttl);
        let held = lease.acquire().await.unwrap();
        held.check().await.unwrap();
        // Another writer overwrites it (as if ours had expired).
        let thief = Record {
            owner: "thief".into(),
            token: "stolen".into(),
            expires_ms: now_ms() + 60_000,
            pid: 1,
            host: "elsewhere".into(),
        };
        lease.write(&thief, PutMode::Overwrite).await.unwrap();
        // A renewal (every third of the lifetime) finds it taken; on a
        // busy machine perhaps not the first one due.
        let mut refused = None;
        for _ in 0..100 {
            tokio::time::sleep(ttl / 3).await;
            if let Err(error) = held.check().await {
                refused = Some(error);
                break;
            }
        }
        let error = refused.expect("a renewal stopped the holder");
        assert!(
            error.to_string().contains("another writer took over"),
            "{conditional:?}: {error}"
        );
        assert!(lease.write_deadline("p/x", false).is_err());
        drop(held);
        // The release runs in the background and lets go of this lock last.
        drop(lease.in_process.lock().await);
        let left = lease.read().await.unwrap().unwrap().record.unwrap();
        assert_eq!(left, thief, "{conditional:?}: the thief's lease stays");
    }
}

#[test]
fn a_holder_that_exited_on_this_machine_is_gone() {
    let Some(host) = local_host() else {
        return; // not Linux: such leases wait for their expiry
    };
    // A child that has exited (and been reaped) is surely gone.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let record = |pid, host: &str| Record {
        owner: "o".into(),
        token: "t".into(),
        expires_ms: u64::MAX,
        pid,
        host: host.into(),
    };
    assert!(record(pid, host).holder_has_exited());
    assert!(!record(pid, "another-machine").holder_has_exited());
    assert!(!record(std::process::id(), host).holder_has_exited());
    assert!(!record(1, host).holder_has_exited(), "init is alive");
}

/// On the tokio clock, paused: its sleeps pass at once, in order.
#[tokio::test(start_paused = true)]
async fn a_lease_whose_holder_exited_here_is_taken_once_its_requests_could_have_landed() {
    let Some(host) = local_host() else {
        return; // not Linux: such leases wait for their expiry
    };
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let lease = memory_lease(ConditionalWrites::Ignored, DEFAULT_TTL);
    let left_behind = Record {
        owner: "crashed".into(),
        token: "old".into(),
        expires_ms: now_ms() + 60_000,
        pid,
        host: host.clone(),
    };
    lease.write(&left_behind, PutMode::Overwrite).await.unwrap();
    let started = tokio::time::Instant::now();
    let held = lease.acquire().await.unwrap();
    let waited = started.elapsed();
    // Not at once (a request of the dead holder may still land), but well
    // before the lease's expiry a minute away.
    assert!(waited >= acquire::EXITED_HOLDER_SETTLE, "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_now_deletes_the_lease_before_returning() {
    let lease = memory_lease(ConditionalWrites::Ignored, DEFAULT_TTL);
    let guard = Arc::clone(&lease.in_process).lock_owned().await;
    let record = Record {
        owner: lease.owner.clone(),
        token: "t".into(),
        expires_ms: now_ms() + 60_000,
        pid: std::process::id(),
        host: "-".into(),
    };
    lease.write(&record, PutMode::Overwrite).await.unwrap();
    let held = lease.hold(guard, record, None, Instant::now(), false);
    held.release_now().await;
    assert!(lease.read().await.unwrap().is_none());
    assert!(lease.in_process.try_lock().is_ok(), "unlocked");
    held.release_now().await;
    drop(held);
}

/// The state the fence checks, as the renewal task sees it.
fn held_state(lease: &Lease) -> Arc<std::sync::Mutex<HeldState>> {
    lease.held.lock().unwrap().clone().expect("a lease is held")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_refuses_writes_unless_the_lease_is_provably_ours() {
    let lease = memory_lease(ConditionalWrites::Honoured, Duration::from_secs(6));
    let refused = |lease: &Lease| lease.write_deadline("p/x", false).unwrap_err().to_string();
    assert!(refused(&lease).contains("does not hold the writer lease"));

    let held = lease.acquire().await.unwrap();
    let deadline = lease.write_deadline("p/x", false).unwrap();
    // The lifetime less the margin, from the write of the lease.
    assert!(deadline <= Instant::now() + Duration::from_secs(5));
    assert!(deadline > Instant::now() + Duration::from_secs(4));

    // Paused past the lifetime: the last renewal is too long ago.
    let state = held_state(&lease);
    let renewed = state.lock().unwrap().valid_until;
    state.lock().unwrap().valid_until = Instant::now() + margin(lease.config.ttl);
    assert!(
        refused(&lease).contains("lost the writer lease"),
        "{}",
        refused(&lease)
    );
    assert!(held.check().await.is_err());
    state.lock().unwrap().valid_until = renewed;
    lease.write_deadline("p/x", false).unwrap();

    // The machine slept (the monotonic clock stood still): the expiry
    // others read, by the wall clock, is what counts.
    let expires_ms = state.lock().unwrap().expires_ms;
    state.lock().unwrap().expires_ms = now_ms() + 500;
    assert!(refused(&lease).contains("lost the writer lease"));
    state.lock().unwrap().expires_ms = expires_ms;
    lease.write_deadline("p/x", false).unwrap();

    state.lock().unwrap().lost = Some("another writer took over".into());
    assert!(refused(&lease).contains("another writer took over"));

    drop(held);
    assert!(refused(&lease).contains("does not hold the writer lease"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_and_renewal_keeps_it() {
    let lease = memory_lease(ConditionalWrites::Ignored, Duration::from_millis(600));
    let stale = Record {
        owner: "crashed".into(),
        token: "old".into(),
        expires_ms: now_ms().saturating_sub(1),
        pid: 1,
        host: "elsewhere".into(),
    };
    lease.write(&stale, PutMode::Overwrite).await.unwrap();
    let held = lease.acquire().await.unwrap();
    // Longer than the lifetime: only renewals keep it valid.
    tokio::time::sleep(Duration::from_millis(900)).await;
    held.check().await.unwrap();
    drop(held);
    drop(lease.in_process.lock().await);
    assert!(lease.read().await.unwrap().is_none(), "released on drop");
}
