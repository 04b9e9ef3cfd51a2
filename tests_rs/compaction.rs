//! Compaction reaches the ideal, `ceil(live bytes / pad)`, within 10% on
//! any mix of sizes: a thinned store of uniform sizes (200 B to half a
//! pad) and one of two kinds (small items and items of most of a pad to
//! three pads), each compacted once, every survivor read back. The moves
//! cut pieces over free runs, so the counts below need cut pieces.

use anthill::{PutOptions, Store, StoreOptions};
use bytes::Bytes;

const PAD: u64 = 64 * 1024;

/// A small deterministic generator (xorshift64*), so the mixes are fixed.
struct Sizes(u64);

impl Sizes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn data(len: u64, seed: u64) -> Bytes {
    (0..len)
        .map(|i| (i.wrapping_mul(131).wrapping_add(seed * 7)) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Stores 400 items of `size`'s sizes, removes four in five, compacts
/// once; asserts the pad count against the ideal and reads every survivor.
async fn thin_and_compact(name: &str, mut size: impl FnMut() -> u64) {
    let mut options = StoreOptions::default();
    options.secret = b"test secret".to_vec();
    options.pad_size = Some(PAD);
    let url = format!("memory://{}", crate::unique(name));
    let store = Store::open(&url, options).await.unwrap();
    let mut kept = Vec::new();
    for i in 0..400u64 {
        let key = format!("k{i}");
        let value = data(size(), i);
        store
            .store_item(&key, value.clone(), PutOptions::default(), None)
            .await
            .unwrap();
        kept.push((key, value));
    }
    for (key, _) in kept
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 0)
        .map(|(_, k)| k)
    {
        store.remove_item(key).await.unwrap();
    }
    kept = kept.into_iter().step_by(5).collect();
    let report = store.compact(None).await.unwrap();
    let live: u64 = kept.iter().map(|(_, v)| v.len() as u64).sum();
    let ideal = live.div_ceil(PAD);
    println!(
        "{name}: {} pads after compaction, ideal {ideal}: {report:?}",
        report.pads_after
    );
    assert!(
        report.pads_after * 10 <= ideal * 11,
        "{name}: {} pads after compaction, ideal {ideal}: {report:?}",
        report.pads_after
    );
    assert_eq!(store.summary().await.unwrap().total_pads, report.pads_after);
    for (key, value) in &kept {
        assert_eq!(&store.fetch_item(key, None).await.unwrap(), value, "{key}");
    }
    let verified = store.verify(true, None).await.unwrap();
    assert!(verified.ok(), "{verified:?}");
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniform_sizes_compact_to_within_a_tenth_of_the_ideal() {
    for seed in [1, 2] {
        let mut sizes = Sizes(0x9e37_79b9_7f4a_7c15 ^ seed);
        thin_and_compact("uniform", move || sizes.between(200, PAD / 2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bimodal_sizes_compact_to_within_a_tenth_of_the_ideal() {
    let mut sizes = Sizes(0x2545_f491_4f6c_dd1d);
    thin_and_compact("bimodal", move || {
        if sizes.next().is_multiple_of(2) {
            sizes.between(100, 2048)
        } else {
            sizes.between(40 * 1024, 3 * PAD)
        }
    })
    .await;
}
