//! Writers of one store taking turns: each handle below has a writer lock of
//! its own (a file lock on the store folder, as two processes have).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anthill::{PutOptions, Store, StoreOptions};
use bytes::Bytes;

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"writers taking turns".to_vec();
    options.pad_size = Some(64 * 1024);
    options
}

async fn open(path: &std::path::Path) -> Store {
    Store::open(&format!("file://{}", path.display()), options())
        .await
        .unwrap()
}

/// A writer in a loop of puts enters the gate again within the lock's
/// linger, and used to keep the lock until its loop ended: a writer of
/// another handle then waited for the whole loop. Now the loop gives the
/// lock back at the end of each turn, and the other's put lands while the
/// loop is still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_in_a_loop_gives_the_lock_to_a_waiting_one() {
    const LOOP: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let (looping, waiting) = (open(dir.path()).await, open(dir.path()).await);
    let done = Arc::new(AtomicUsize::new(0));
    looping
        .store_item(
            "first",
            Bytes::from_static(b"x"),
            PutOptions::default(),
            None,
        )
        .await
        .unwrap();
    let puts = {
        let (store, done) = (looping.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            for i in 0..LOOP {
                let data = Bytes::from(vec![i as u8; 1024]);
                store
                    .store_item(&format!("loop-{i}"), data, PutOptions::default(), None)
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // The loop holds the lock now (it has stored at least one item of it).
    while done.load(Ordering::Relaxed) == 0 {
        tokio::task::yield_now().await;
    }
    waiting
        .store_item(
            "other",
            Bytes::from_static(b"y"),
            PutOptions::default(),
            None,
        )
        .await
        .unwrap();
    let when = done.load(Ordering::Relaxed);
    puts.await.unwrap();
    assert!(
        when < LOOP,
        "the other writer's put waited for the whole loop of {LOOP} puts"
    );
    assert_eq!(looping.fetch_item("other", None).await.unwrap(), &b"y"[..]);
    assert_eq!(waiting.len().await.unwrap(), LOOP as u64 + 2);
    looping.close().await.unwrap();
    waiting.close().await.unwrap();
}
