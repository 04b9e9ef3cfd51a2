//! Property tests of the index and its journal: any sequence of puts,
//! overwrites and removes, replayed from the backend (log and checkpoints),
//! reproduces exactly what a model of the store says.

use std::collections::BTreeMap;

use anthill::index::{self, Index, Record};
use anthill::{Error, PutOptions, Store, StoreOptions};
use bytes::Bytes;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put { key: u8, len: usize, seed: u8 },
    Remove { key: u8 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..12, 0usize..9000, any::<u8>()).prop_map(|(key, len, seed)| Op::Put { key, len, seed }),
        3 => (0u8..12).prop_map(|key| Op::Remove { key }),
        1 => Just(Op::Reopen),
    ]
}

fn value(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| (i as u8) ^ seed).collect()
}

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"journal".to_vec();
    options.pad_size = Some(2048);
    // Checkpoint often, so replays cross checkpoints and deleted logs.
    options.checkpoint_interval = 300;
    options
}

async fn run(ops: Vec<Op>, url: String) -> Result<(), TestCaseError> {
    let mut model: BTreeMap<String, Bytes> = BTreeMap::new();
    let mut store = Store::open(&url, options()).await.unwrap();
    for op in ops {
        match op {
            Op::Put { key, len, seed } => {
                let key = format!("key-{key}");
                let data = value(len, seed);
                let mut options = PutOptions::default();
                options.overwrite = true;
                store
                    .store_item(&key, data.clone(), options, None)
                    .await
                    .unwrap();
                model.insert(key, data);
            }
            Op::Remove { key } => {
                let key = format!("key-{key}");
                match store.remove_item(&key).await {
                    Ok(()) => prop_assert!(model.remove(&key).is_some()),
                    Err(Error::KeyNotFound(_)) => prop_assert!(!model.contains_key(&key)),
                    Err(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
            }
            Op::Reopen => {
                drop(store);
                store = Store::open(&url, options()).await.unwrap();
            }
        }
    }
    let summary = store.summary().await.unwrap();
    drop(store);
    let store = Store::open(&url, options()).await.unwrap();
    prop_assert_eq!(
        store.keys().await.unwrap(),
        model.keys().cloned().collect::<Vec<_>>()
    );
    for (key, data) in &model {
        prop_assert_eq!(&store.fetch_item(key, None).await.unwrap(), data);
    }
    let reopened = store.summary().await.unwrap();
    prop_assert_eq!(&reopened, &summary);
    prop_assert_eq!(
        reopened.used_space,
        model.values().map(|v| v.len() as u64).sum::<u64>()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn replaying_the_journal_reproduces_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let url = format!("memory://journal-{}", rand_name());
        runtime.block_on(run(ops, url))?;
    }

    #[test]
    fn records_and_checkpoints_round_trip(keys in prop::collection::vec("[a-z/]{1,12}", 0..40), sizes in prop::collection::vec(0u64..10_000, 40)) {
        let mut index = Index::default();
        let mut records = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let entry = index::Entry { data_id: i as u64, size: sizes[i], hash: [i as u8; 16], pieces: Vec::new(), created: 1, modified: 2 };
            records.push(if i % 3 == 2 { Record::Remove { key: key.clone() } } else { Record::Put { key: key.clone(), entry } });
        }
        for record in &records {
            index.apply(record).unwrap();
        }
        let log: Vec<Record> = index::from_bytes(&index::to_bytes(&records).unwrap(), "log").unwrap();
        prop_assert_eq!(&log, &records);
        let checkpoint: Index = index::from_bytes(&index::to_bytes(&index).unwrap(), "checkpoint").unwrap();
        prop_assert_eq!(checkpoint, index);
    }
}

fn rand_name() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id()) * 1_000_000
}
