//! Backend reads are capped at the largest object anthill writes under a
//! name: a foreign or damaged object larger than that (planted here in a
//! folder store, as a pad, a log object and the metadata) is an integrity
//! error naming it, and is not read into memory.

use anthill::{Error, PutOptions, Store, StoreOptions};
use bytes::Bytes;

const PAD: u64 = 4096;
/// Bigger than any object the store reads: 1 GiB and a byte. Planted as a
/// sparse file, so it costs no disk, but reading it would cost 1 GiB.
const HUGE: u64 = (1 << 30) + 1;

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"capped reads secret".to_vec();
    options.pad_size = Some(PAD);
    options
}

/// Bytes this process has read through `read` calls so far (Linux), to show
/// the planted object was not read: reading it would add 1 GiB.
fn bytes_read() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("rchar: "))?
        .trim()
        .parse()
        .ok()
}

/// Far below `HUGE`, far above what the rest of a test reads (other tests of
/// this binary may read meanwhile, which only adds a little).
const READ_BOUND: u64 = 256 << 20;

fn plant_huge(path: &std::path::Path) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(HUGE).unwrap();
}

/// A folder store with one small item in one pad, and its folder.
async fn small_store() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let store = Store::open(&url, options()).await.unwrap();
    store
        .store_item(
            "a",
            Bytes::from_static(b"hello"),
            PutOptions::default(),
            None,
        )
        .await
        .unwrap();
    store.close().await.unwrap();
    (dir, url)
}

fn only_file_in(folder: &std::path::Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

fn assert_refused(error: &Error, name: &str) {
    match error {
        Error::Integrity(message) => assert!(
            message.contains(name) && message.contains("was not read"),
            "{message}"
        ),
        other => panic!("expected an integrity error naming {name}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_pad_object_is_refused_unread() {
    let (dir, url) = small_store().await;
    let pad = only_file_in(&dir.path().join("p"));
    let name = format!("p/{}", pad.file_name().unwrap().to_string_lossy());
    plant_huge(&pad);

    let store = Store::open(&url, options()).await.unwrap();
    let before = bytes_read();
    let error = store.fetch_item("a", None).await.unwrap_err();
    let after = bytes_read();
    if let (Some(before), Some(after)) = (before, after) {
        assert!(after - before < READ_BOUND, "read {} bytes", after - before);
    }
    assert_refused(&error, &name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_log_object_is_refused_unread() {
    let (dir, url) = small_store().await;
    // The next log object after the last one written: read on open.
    let seq = std::fs::read_dir(dir.path().join("j"))
        .unwrap()
        .map(|entry| {
            let name = entry.unwrap().file_name();
            u64::from_str_radix(&name.to_string_lossy(), 16).unwrap()
        })
        .max()
        .unwrap();
    let name = format!("j/{:016x}", seq + 1);
    plant_huge(&dir.path().join(&name));

    let before = bytes_read();
    let error = Store::open(&url, options()).await.err().expect("opened");
    let after = bytes_read();
    if let (Some(before), Some(after)) = (before, after) {
        assert!(after - before < READ_BOUND, "read {} bytes", after - before);
    }
    assert_refused(&error, &name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_meta_object_is_refused_unread() {
    let (dir, url) = small_store().await;
    plant_huge(&dir.path().join("meta"));
    let before = bytes_read();
    let error = Store::open(&url, options()).await.err().expect("opened");
    let after = bytes_read();
    if let (Some(before), Some(after)) = (before, after) {
        assert!(after - before < READ_BOUND, "read {} bytes", after - before);
    }
    assert_refused(&error, "meta");
}
