//! Behaviour of `Store`: the store_item contract (brief §2), events (§3),
//! space reuse, concurrency limits, pipelining, failures, integrity, reopen.
//! Two handles on one store are in `store_handles.rs`.

use std::sync::{Arc, Mutex};

use anthill::pad_store::sim::Phase;
use anthill::pad_store::{self, Backend, BackendOptions, OpKind, SimConfig, SimPadStore};
use anthill::{Callback, Error, GetEvent, PutEvent, PutOptions, Store, StoreOptions};
use bytes::Bytes;
use futures::FutureExt;

pub(crate) const PAD: u64 = 4096;

pub(crate) fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"test secret".to_vec();
    options.pad_size = Some(PAD);
    options
}

/// Put options that replace a stored key.
pub(crate) fn overwriting() -> PutOptions {
    let mut put = PutOptions::default();
    put.overwrite = true;
    put
}

/// Put options that finish an interrupted upload.
fn resuming() -> PutOptions {
    let mut put = PutOptions::default();
    put.resume = true;
    put
}

pub(crate) async fn memory() -> Arc<dyn Backend> {
    pad_store::open("memory://", &BackendOptions::default())
        .await
        .unwrap()
}

pub(crate) async fn sim(inner: &Arc<dyn Backend>, config: SimConfig) -> Arc<SimPadStore> {
    Arc::new(SimPadStore::new(Arc::clone(inner), config))
}

pub(crate) async fn open(backend: Arc<dyn Backend>, options: StoreOptions) -> Store {
    Store::open_with_backend("test", backend, options)
        .await
        .unwrap()
}

pub(crate) fn data(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Records every event; answers `answer` to `ConfirmReservation`.
#[derive(Clone)]
struct Recorder<E> {
    events: Arc<Mutex<Vec<E>>>,
}

impl<E: Clone + Send + 'static> Recorder<E> {
    fn new() -> Self {
        Self {
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn events(&self) -> Vec<E> {
        self.events.lock().unwrap().clone()
    }
}

impl Recorder<PutEvent> {
    fn put_callback(&self, confirm: bool) -> Callback<PutEvent> {
        let events = Arc::clone(&self.events);
        Arc::new(move |event: PutEvent| {
            let answer = !matches!(event, PutEvent::ConfirmReservation { .. }) || confirm;
            events.lock().unwrap().push(event);
            async move { Ok(answer) }.boxed()
        })
    }
}

impl Recorder<GetEvent> {
    fn get_callback(&self) -> Callback<GetEvent> {
        let events = Arc::clone(&self.events);
        Arc::new(move |event: GetEvent| {
            events.lock().unwrap().push(event);
            async { Ok(true) }.boxed()
        })
    }
}

pub(crate) async fn put(store: &Store, key: &str, value: &Bytes) {
    store
        .store_item(key, value.clone(), PutOptions::default(), None)
        .await
        .unwrap();
}

/// Most operations of `kind` on pads (`p/…` objects) in flight at once.
fn peak_pad_ops(sim: &SimPadStore, kind: OpKind) -> u64 {
    let (mut now, mut peak) = (0i64, 0i64);
    for record in sim.op_log() {
        if record.kind == kind && record.name.starts_with("p/") {
            now += if record.phase == Phase::Start { 1 } else { -1 };
            peak = peak.max(now);
        }
    }
    peak as u64
}

fn pad_puts(sim: &SimPadStore) -> usize {
    sim.op_log()
        .iter()
        .filter(|r| r.kind == OpKind::Put && r.phase == Phase::Start && r.name.starts_with("p/"))
        .count()
}

#[tokio::test]
async fn put_needing_new_pads_emits_the_full_event_sequence() {
    let store = open(memory().await, options()).await;
    let value = data(3 * PAD as usize + 100, 1);
    let recorder = Recorder::new();
    store
        .store_item(
            "big",
            value.clone(),
            PutOptions::default(),
            Some(recorder.put_callback(true)),
        )
        .await
        .unwrap();
    let events = recorder.events();
    let size = value.len() as u64;
    assert_eq!(
        events[..2],
        [
            PutEvent::ConfirmReservation {
                needed: 4,
                data_size: size,
                total_space: 0,
                free_space: 0,
                current_scratchpads: 0,
                estimated_cost: None,
            },
            PutEvent::ReservingScratchpads { needed: 4 },
        ]
    );
    let starting = events
        .iter()
        .position(|e| matches!(e, PutEvent::StartingUpload { .. }))
        .unwrap();
    assert_eq!(
        events[starting],
        PutEvent::StartingUpload {
            total_bytes: size,
            total_pads: 4,
        }
    );
    assert!(
        events[..starting].iter().all(|e| !matches!(
            e,
            PutEvent::UploadProgress { .. } | PutEvent::ScratchpadUploadComplete { .. }
        )),
        "uploads are announced before they report progress"
    );
    assert_eq!(
        events[events.len() - 2..],
        [PutEvent::UploadFinished, PutEvent::StoreComplete]
    );
    let middle: Vec<PutEvent> = events[2..events.len() - 2]
        .iter()
        .filter(|e| !matches!(e, PutEvent::StartingUpload { .. }))
        .cloned()
        .collect();
    assert_eq!(middle.len(), 16, "{middle:?}");
    let reservations: Vec<_> = middle
        .iter()
        .filter_map(|e| match e {
            PutEvent::ReservationProgress { current, total } => Some((*current, *total)),
            _ => None,
        })
        .collect();
    assert_eq!(reservations, [(1, 4), (2, 4), (3, 4), (4, 4)]);
    let written: Vec<u64> = middle
        .iter()
        .filter_map(|e| match e {
            PutEvent::UploadProgress {
                bytes_written,
                total_bytes,
            } => {
                assert_eq!(*total_bytes, size);
                Some(*bytes_written)
            }
            _ => None,
        })
        .collect();
    assert_eq!(written.len(), 4);
    assert!(written.windows(2).all(|w| w[0] < w[1]), "{written:?}");
    assert_eq!(*written.last().unwrap(), size);
    for kind in ["upload", "commit"] {
        let indices: Vec<(u64, u64)> = middle
            .iter()
            .filter_map(|e| match (kind, e) {
                ("upload", PutEvent::ScratchpadUploadComplete { index, total })
                | ("commit", PutEvent::ScratchpadCommitComplete { index, total }) => {
                    Some((*index, *total))
                }
                _ => None,
            })
            .collect();
        assert_eq!(indices, [(1, 4), (2, 4), (3, 4), (4, 4)], "{kind}");
    }
    assert_eq!(store.fetch_item("big", None).await.unwrap(), value);
}

#[tokio::test]
async fn put_into_free_space_emits_no_reservation_events() {
    let store = open(memory().await, options()).await;
    put(&store, "first", &data(100, 1)).await;
    let recorder = Recorder::new();
    // Below a pad: committed in the log, no pad reserved or written now.
    let value = data(1000, 2);
    store
        .store_item(
            "second",
            value.clone(),
            PutOptions::default(),
            Some(recorder.put_callback(true)),
        )
        .await
        .unwrap();
    assert_eq!(
        recorder.events(),
        [
            PutEvent::StartingUpload {
                total_bytes: 1000,
                total_pads: 0
            },
            PutEvent::UploadProgress {
                bytes_written: 1000,
                total_bytes: 1000
            },
            PutEvent::UploadFinished,
            PutEvent::StoreComplete,
        ]
    );
}

#[tokio::test]
async fn confirmation_shows_the_summary_before_allocation_and_reopen_agrees_after() {
    let inner = memory().await;
    let store = open(Arc::clone(&inner), options()).await;
    put(&store, "a", &data(PAD as usize + 10, 1)).await;
    let before = store.summary().await.unwrap();
    let recorder = Recorder::new();
    let value = data(3 * PAD as usize, 2);
    store
        .store_item(
            "b",
            value.clone(),
            PutOptions::default(),
            Some(recorder.put_callback(true)),
        )
        .await
        .unwrap();
    let PutEvent::ConfirmReservation {
        needed,
        data_size,
        total_space,
        free_space,
        current_scratchpads,
        ..
    } = recorder.events()[0].clone()
    else {
        panic!("first event is the confirmation");
    };
    assert_eq!(total_space, before.total_space);
    assert_eq!(free_space, before.free_space);
    assert_eq!(current_scratchpads, before.total_pads);
    assert_eq!(data_size, value.len() as u64);
    assert_eq!(
        Some(needed),
        store
            .check_allocation_possible(0)
            .await
            .unwrap()
            .or(Some(needed))
    );
    let after = store.summary().await.unwrap();
    assert_eq!(after.total_pads, before.total_pads + needed);
    assert_eq!(after.used_space, before.used_space + value.len() as u64);
    drop(store);
    let reopened = open(inner, options()).await;
    assert_eq!(reopened.summary().await.unwrap(), after);
}

#[tokio::test]
async fn declining_or_a_spending_cap_spends_nothing() {
    let inner = memory().await;
    let sim = sim(&inner, SimConfig::default()).await;
    let store = open(sim.clone(), options()).await;
    put(&store, "small", &data(10, 1)).await;
    let before = store.summary().await.unwrap();
    let reserved = sim.sim_stats().pads_reserved;
    let recorder = Recorder::new();
    let result = store
        .store_item(
            "big",
            data(5 * PAD as usize, 2),
            PutOptions::default(),
            Some(recorder.put_callback(false)),
        )
        .await;
    assert!(matches!(result, Err(Error::Cancelled(_))), "{result:?}");
    assert_eq!(recorder.events().len(), 1, "nothing after the refusal");
    let mut capped_put = PutOptions::default();
    capped_put.max_new_pads = Some(2);
    let capped = store
        .store_item("big", data(5 * PAD as usize, 2), capped_put, None)
        .await;
    assert!(
        matches!(capped, Err(Error::Cancelled(ref m)) if m.contains("max_new_pads")),
        "{capped:?}"
    );
    assert_eq!(sim.sim_stats().pads_reserved, reserved);
    assert_eq!(store.summary().await.unwrap(), before);
    assert!(!store.contains("big").await.unwrap());
}

#[tokio::test]
async fn freed_space_is_reused_without_new_reservations() {
    let sim = sim(&memory().await, SimConfig::default()).await;
    let store = open(sim.clone(), options()).await;
    put(&store, "a", &data(2 * PAD as usize + 7, 1)).await;
    put(&store, "keep", &data(50, 3)).await;
    let reserved = sim.sim_stats().pads_reserved;
    store.remove_item("a").await.unwrap();
    assert_eq!(
        store.check_allocation_possible(2 * PAD).await.unwrap(),
        None
    );
    let recorder = Recorder::new();
    let value = data(2 * PAD as usize, 2);
    store
        .store_item(
            "b",
            value.clone(),
            PutOptions::default(),
            Some(recorder.put_callback(true)),
        )
        .await
        .unwrap();
    assert_eq!(sim.sim_stats().pads_reserved, reserved);
    assert!(
        !recorder
            .events()
            .iter()
            .any(|e| matches!(e, PutEvent::ConfirmReservation { .. }))
    );
    assert_eq!(store.fetch_item("b", None).await.unwrap(), value);
    assert_eq!(store.fetch_item("keep", None).await.unwrap(), data(50, 3));
}

#[tokio::test]
async fn small_items_share_a_pad() {
    let store = open(memory().await, options()).await;
    for i in 0..20 {
        put(&store, &format!("k{i}"), &data(150, i)).await;
    }
    let summary = store.summary().await.unwrap();
    assert_eq!(summary.total_pads, 1);
    assert_eq!(summary.used_space, 20 * 150);
    assert_eq!(summary.items, 20);
    for i in 0..20 {
        assert_eq!(
            store.fetch_item(&format!("k{i}"), None).await.unwrap(),
            data(150, i)
        );
    }
}

#[tokio::test]
async fn concurrency_limits_hold_and_are_reached() {
    let mut config = SimConfig::default();
    config.latency_ms = 3.0;
    let sim = sim(&memory().await, config).await;
    let mut limited = options();
    limited.reservation_concurrency = 6;
    limited.upload_concurrency = 5;
    let store = open(sim.clone(), limited).await;
    let value = data(40 * PAD as usize, 9);
    put(&store, "big", &value).await;
    assert_eq!(peak_pad_ops(&sim, OpKind::Reserve), 6);
    assert_eq!(peak_pad_ops(&sim, OpKind::Put), 5);
    assert_eq!(sim.sim_stats().pads_reserved, 40);
    assert_eq!(store.fetch_item("big", None).await.unwrap(), value);
}

#[tokio::test]
async fn uploads_start_before_reservations_finish() {
    let mut config = SimConfig::default();
    config.latency_ms = 2.0;
    let sim = sim(&memory().await, config).await;
    let store = open(sim.clone(), options()).await;
    sim.clear_log();
    put(&store, "big", &data(64 * PAD as usize, 4)).await;
    let log = sim.op_log();
    let first_upload = log
        .iter()
        .position(|r| r.kind == OpKind::Put && r.phase == Phase::Start && r.name.starts_with("p/"))
        .unwrap();
    let last_reservation = log
        .iter()
        .rposition(|r| r.kind == OpKind::Reserve && r.phase == Phase::End)
        .unwrap();
    assert!(
        first_upload < last_reservation,
        "first pad upload at {first_upload}, last reservation ended at {last_reservation}"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_and_permanent_ones_leave_the_store_intact() {
    let inner = memory().await;
    let mut config = SimConfig::default();
    config.fail_rate = 0.3;
    config.seed = Some(7);
    let sim = sim(&inner, config).await;
    let store = open(sim.clone(), options()).await;
    let values: Vec<Bytes> = (0..12).map(|i| data(i * 1500 + 1, i as u8)).collect();
    for (i, value) in values.iter().enumerate() {
        put(&store, &format!("k{i}"), value).await;
    }
    for (i, value) in values.iter().enumerate() {
        assert_eq!(
            &store.fetch_item(&format!("k{i}"), None).await.unwrap(),
            value
        );
    }
    assert!(sim.sim_stats().put.failures > 0, "failures were injected");

    sim.set_fail_rate(0.0);
    sim.fail_next(OpKind::Put, 1, true);
    let failed = store
        .store_item(
            "doomed",
            data(3 * PAD as usize, 1),
            PutOptions::default(),
            None,
        )
        .await;
    assert!(matches!(failed, Err(Error::Backend(_))), "{failed:?}");
    drop(store);
    let reopened = open(inner, options()).await;
    for (i, value) in values.iter().enumerate() {
        assert_eq!(
            &reopened.fetch_item(&format!("k{i}"), None).await.unwrap(),
            value
        );
    }
    assert!(!reopened.contains("doomed").await.unwrap());
    // The pads reserved for the failed put are known and reusable.
    let summary = reopened.summary().await.unwrap();
    assert_eq!(summary.total_pads, sim.sim_stats().pads_reserved);
}

#[tokio::test]
async fn concurrent_puts_sharing_pads_lose_nothing() {
    let inner = memory().await;
    let mut config = SimConfig::default();
    config.latency_ms = 1.0;
    config.jitter_ms = 2.0;
    let sim = sim(&inner, config).await;
    let store = open(sim.clone(), options()).await;
    let values: Vec<Bytes> = (0..60).map(|i| data(100 + i * 7, i as u8)).collect();
    futures::future::join_all(values.iter().enumerate().map(|(i, value)| {
        let store = store.clone();
        async move { put(&store, &format!("k{i}"), value).await }
    }))
    .await;
    let summary = store.summary().await.unwrap();
    assert!(summary.total_pads <= 8, "{summary:?}");
    assert!(
        (pad_puts(&sim) as u64) < 60,
        "concurrent small puts share pad writes"
    );
    drop(store);
    let reopened = open(inner, options()).await;
    for (i, value) in values.iter().enumerate() {
        assert_eq!(
            &reopened.fetch_item(&format!("k{i}"), None).await.unwrap(),
            value
        );
    }
}

#[tokio::test]
async fn wrong_secret_and_flipped_bits_are_integrity_errors() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    let store = Store::open(&url, options()).await.unwrap();
    let value = data(1000, 5);
    put(&store, "x", &value).await;
    store.close().await.unwrap(); // its pad written back
    drop(store);

    let mut wrong_secret = options();
    wrong_secret.secret = b"not the secret".to_vec();
    let wrong = Store::open(&url, wrong_secret).await;
    assert!(matches!(wrong, Err(Error::Integrity(ref m)) if m.contains("wrong secret")));

    let pad_dir = dir.path().join("p");
    let pad_file = std::fs::read_dir(&pad_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&pad_file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&pad_file, &bytes).unwrap();
    let store = Store::open(&url, options()).await.unwrap();
    let fetched = store.fetch_item("x", None).await;
    assert!(matches!(fetched, Err(Error::Integrity(_))), "{fetched:?}");

    let log_dir = dir.path().join("j");
    let log_file = std::fs::read_dir(&log_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&log_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&log_file, &bytes).unwrap();
    let reopened = Store::open(&url, options()).await;
    assert!(matches!(reopened, Err(Error::Integrity(_))));
}

#[tokio::test]
async fn reopen_reproduces_keys_contents_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let store = Store::open(&url, options()).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..15u8 {
        let value = data(usize::from(i) * 900 + 3, i);
        put(&store, &format!("key/{i}"), &value).await;
        expected.push((format!("key/{i}"), value));
    }
    for i in (0..15).step_by(3) {
        store.remove_item(&format!("key/{i}")).await.unwrap();
    }
    expected.retain(|(k, _)| !(0..15).step_by(3).any(|i| *k == format!("key/{i}")));
    store
        .store_item("key/1", data(10, 99), overwriting(), None)
        .await
        .unwrap();
    expected.iter_mut().find(|(k, _)| k == "key/1").unwrap().1 = data(10, 99);
    let summary = store.summary().await.unwrap();
    let keys = store.keys().await.unwrap();
    drop(store);

    let reopened = Store::open(&url, options()).await.unwrap();
    assert_eq!(reopened.summary().await.unwrap(), summary);
    assert_eq!(reopened.keys().await.unwrap(), keys);
    assert_eq!(keys.len(), expected.len());
    for (key, value) in &expected {
        assert_eq!(&reopened.fetch_item(key, None).await.unwrap(), value);
    }
}

#[tokio::test]
async fn key_errors_are_specific() {
    let store = open(memory().await, options()).await;
    put(&store, "k", &data(10, 1)).await;
    let again = store
        .store_item("k", data(10, 2), PutOptions::default(), None)
        .await;
    assert!(matches!(again, Err(Error::KeyExists(_))));
    assert!(matches!(
        store.fetch_item("nope", None).await,
        Err(Error::KeyNotFound(_))
    ));
    assert!(matches!(
        store.remove_item("nope").await,
        Err(Error::KeyNotFound(_))
    ));
    assert!(matches!(
        store
            .store_item("", data(1, 1), PutOptions::default(), None)
            .await,
        Err(Error::InvalidInput(_))
    ));
    store.close().await.unwrap();
    assert!(matches!(
        store.fetch_item("k", None).await,
        Err(Error::InvalidInput(_))
    ));
}

/// A buffer of another size than the item's, from the caller's
/// `make_buffer`, is the caller's mistake (invalid input, not an internal
/// error), for an item in pads and for one still in the log; the store
/// reads both afterwards.
#[tokio::test]
async fn a_wrong_sized_buffer_is_invalid_input_and_changes_nothing() {
    let store = open(memory().await, options()).await;
    let (large, small) = (data(3 * PAD as usize, 5), data(10, 6));
    put(&store, "large", &large).await;
    put(&store, "small", &small).await;
    for key in ["large", "small"] {
        let wrong = store
            .fetch_item_into(key, |size| Ok(vec![0u8; size + 1]), None)
            .await;
        assert!(
            matches!(wrong, Err(Error::InvalidInput(_))),
            "{key}: {wrong:?}"
        );
    }
    assert_eq!(store.fetch_item("large", None).await.unwrap(), large);
    assert_eq!(store.fetch_item("small", None).await.unwrap(), small);
}

#[tokio::test]
async fn get_events_count_up_to_the_size() {
    let store = open(memory().await, options()).await;
    let value = data(3 * PAD as usize, 3);
    put(&store, "k", &value).await;
    let recorder = Recorder::new();
    assert_eq!(
        store
            .fetch_item("k", Some(recorder.get_callback()))
            .await
            .unwrap(),
        value
    );
    let events = recorder.events();
    let size = value.len() as u64;
    assert_eq!(events[0], GetEvent::StartingDownload { total_bytes: size });
    assert_eq!(*events.last().unwrap(), GetEvent::DownloadFinished);
    let read: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            GetEvent::DownloadProgress { bytes_read, .. } => Some(*bytes_read),
            _ => None,
        })
        .collect();
    assert_eq!(read.len(), 3);
    assert_eq!(*read.last().unwrap(), size);
}

#[tokio::test]
async fn an_interrupted_put_is_pending_and_resumes_without_reuploading() {
    let inner = memory().await;
    let sim = sim(&inner, SimConfig::default()).await;
    let mut opts = options();
    opts.retry_attempts = 2;
    let store = open(sim.clone(), opts.clone()).await;
    let value = data(5 * PAD as usize, 8);
    // The callback interrupts the put once every pad is committed and the
    // upload is recorded as pending, and makes the next write (the one that
    // would drop the pending record) fail.
    let (watch, failing) = (store.clone(), Arc::clone(&sim));
    let callback: Callback<PutEvent> = Arc::new(move |event| {
        let (watch, failing) = (watch.clone(), Arc::clone(&failing));
        async move {
            if let PutEvent::ScratchpadCommitComplete { index, total } = event
                && index == total
            {
                while watch.summary().await?.pending == 0 {
                    tokio::task::yield_now().await;
                }
                failing.fail_next_on(OpKind::Reserve, "j/", true);
                return Err(Error::Cancelled("interrupted".into()));
            }
            Ok(true)
        }
        .boxed()
    });
    let result = store
        .store_item("big", value.clone(), PutOptions::default(), Some(callback))
        .await;
    assert!(result.is_err());
    drop(store);
    let store = open(sim.clone(), opts).await;
    assert_eq!(store.summary().await.unwrap().pending, 1);
    assert!(!store.contains("big").await.unwrap());
    let blocked = store
        .store_item("big", value.clone(), PutOptions::default(), None)
        .await;
    assert!(
        matches!(blocked, Err(Error::UploadPending { ref reason, .. }) if reason.contains("resume=True"))
    );
    let wrong = store
        .store_item("big", data(5 * PAD as usize, 9), resuming(), None)
        .await;
    assert!(matches!(wrong, Err(Error::InvalidInput(_))));
    sim.clear_log();
    store
        .store_item("big", value.clone(), resuming(), None)
        .await
        .unwrap();
    assert_eq!(pad_puts(&sim), 0, "committed pads are not uploaded again");
    assert_eq!(store.fetch_item("big", None).await.unwrap(), value);
    assert_eq!(store.summary().await.unwrap().pending, 0);
}
