//! Behaviour of the streaming calls of `Store`: `store_file` (a put read
//! from a file a part at a time), `fetch_to` / `fetch_file` (a get written
//! to a sink in order) and `open_item` / `fetch_range` (reads of ranges).

use std::io::Write;
use std::sync::{Arc, Mutex};

use anthill::allocator::{ChunkSink, FileSource};
use anthill::pad_store::sim::Phase;
use anthill::pad_store::{self, Backend, BackendOptions, OpKind, SimConfig, SimPadStore};
use anthill::{Callback, Error, PutEvent, PutOptions, Store, StoreOptions};
use bytes::Bytes;
use futures::FutureExt;

const PAD: u64 = 4096;

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"test secret".to_vec();
    options.pad_size = Some(PAD);
    options
}

async fn sim_store() -> (Store, Arc<SimPadStore>) {
    let inner = pad_store::open("memory://", &BackendOptions::default())
        .await
        .unwrap();
    let sim = Arc::new(SimPadStore::new(inner, SimConfig::default()));
    let backend: Arc<dyn Backend> = sim.clone();
    let store = Store::open_with_backend("test", backend, options())
        .await
        .unwrap();
    (store, sim)
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + i / 251) as u8).wrapping_add(seed))
        .collect()
}

fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file
}

/// A sink that keeps what it is given.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<u8>>>);

impl ChunkSink for Collected {
    fn write_chunk(&mut self, chunk: &[u8]) -> anthill::Result<()> {
        self.0.lock().unwrap().extend_from_slice(chunk);
        Ok(())
    }
}

#[tokio::test]
async fn a_file_stored_part_by_part_reads_back_whole_and_by_ranges() {
    let (store, sim) = sim_store().await;
    for (key, len) in [
        ("empty", 0),
        ("small", 200),
        ("large", 200 * PAD as usize + 17),
    ] {
        let bytes = data(len, len as u8);
        let file = file_with(&bytes);
        let source = FileSource::open(file.path()).unwrap();
        store
            .store_file(key, source, PutOptions::default(), None)
            .await
            .unwrap();
        let sink = Collected::default();
        let written = store.fetch_to(key, sink.clone(), None).await.unwrap();
        assert_eq!(written, len as u64, "{key}");
        assert_eq!(*sink.0.lock().unwrap(), bytes, "{key}");
        let handle = store.open_item(key).await.unwrap();
        assert_eq!(handle.size(), len as u64);
    }
    let bytes = data(200 * PAD as usize + 17, 17);
    for offset in [0u64, PAD - 100, 120 * PAD + 5, 200 * PAD + 16] {
        let len = 1024.min(bytes.len() as u64 - offset);
        sim.clear_log();
        let range = store.fetch_range("large", offset, len).await.unwrap();
        // Pad reads (a read also probes the log for other writers' news).
        let gets = sim
            .op_log()
            .iter()
            .filter(|op| {
                op.kind == OpKind::Get && op.phase == Phase::Start && op.name.starts_with("p/")
            })
            .count();
        assert_eq!(
            range,
            Bytes::copy_from_slice(&bytes[offset as usize..][..len as usize])
        );
        assert!(gets <= 2, "{gets} reads for 1 KiB at {offset}");
    }
    assert!(matches!(
        store.fetch_range("large", bytes.len() as u64 - 3, 4).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn a_file_that_shrinks_while_stored_leaves_the_key_absent() {
    let (store, _sim) = sim_store().await;
    let bytes = data(50 * PAD as usize, 3);
    let file = file_with(&bytes);
    let path = file.path().to_path_buf();
    let callback: Callback<PutEvent> = Arc::new(move |event: PutEvent| {
        if matches!(event, PutEvent::StartingUpload { .. }) {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(10 * PAD)
                .unwrap();
        }
        async { Ok(true) }.boxed()
    });
    let source = FileSource::open(file.path()).unwrap();
    let result = store
        .store_file("k", source, PutOptions::default(), Some(callback))
        .await;
    assert!(matches!(result, Err(Error::InvalidInput(_))), "{result:?}");
    assert!(!store.contains("k").await.unwrap());
    assert_eq!(store.summary().await.unwrap().pending, 0);
    assert!(matches!(
        store.fetch_range("k", 0, 1).await,
        Err(Error::KeyNotFound(_))
    ));
}

/// A fetch into a named pipe writes into the pipe: renaming a finished
/// file over the destination, as for a regular file, would replace the
/// pipe (and, for `anthill get -o /dev/null` as root, the device itself).
#[tokio::test]
async fn a_fetch_into_a_pipe_writes_into_it_and_leaves_it_a_pipe() {
    use std::os::unix::fs::FileTypeExt;
    let (store, _) = sim_store().await;
    let item = data(3 * PAD as usize + 100, 9);
    store
        .store_item("k", Bytes::from(item.clone()), PutOptions::default(), None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("pipe");
    let path = std::ffi::CString::new(pipe.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let reading = pipe.clone();
    let reader = std::thread::spawn(move || std::fs::read(reading).unwrap());

    let written = store.fetch_file("k", &pipe, None).await.unwrap();
    assert!(
        std::fs::symlink_metadata(&pipe)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(written, item.len() as u64);
    assert_eq!(reader.join().unwrap(), item);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no file left beside it"
    );
}

/// Through a symbolic link the linked file gets the item; the link stays.
#[tokio::test]
async fn a_fetch_through_a_link_replaces_the_file_and_keeps_the_link() {
    let (store, _) = sim_store().await;
    let item = data(2 * PAD as usize + 7, 4);
    store
        .store_item("k", Bytes::from(item.clone()), PutOptions::default(), None)
        .await
        .unwrap();
    let (links, files) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let target = files.path().join("target");
    std::fs::write(&target, b"old").unwrap();
    let link = links.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    store.fetch_file("k", &link, None).await.unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&target).unwrap(), item);
    assert_eq!(std::fs::read_dir(links.path()).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(files.path()).unwrap().count(), 1);
}
