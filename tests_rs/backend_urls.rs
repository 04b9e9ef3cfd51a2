//! Opening backends by URL: memory, folder, sim+ and S3 (offline), and the
//! URLs and parameters refused as invalid input.

use crate::unique;
use std::sync::Arc;

use anthill::Error;
use anthill::pad_store::{Backend, BackendError, BackendOptions, SimPadStore, open};
use bytes::Bytes;
use tempfile::TempDir;

fn no_options() -> BackendOptions {
    BackendOptions::default()
}

fn assert_invalid(result: Result<Arc<dyn Backend>, Error>, url: &str, expect: &str) {
    match result {
        Err(Error::InvalidInput(message)) => assert!(
            message.contains(expect),
            "{url}: message {message:?} should mention {expect:?}"
        ),
        Err(other) => panic!("{url}: expected InvalidInput, got {other:?}"),
        Ok(store) => panic!("{url}: expected InvalidInput, opened {}", store.describe()),
    }
}

#[tokio::test]
async fn urls_open_memory_file_and_sim() {
    let name = unique("named");
    let memory = open(&format!("memory://{name}"), &no_options())
        .await
        .unwrap();
    assert_eq!(memory.describe(), format!("memory://{name}"));
    assert!(SimPadStore::of(memory.as_ref()).is_none());
    assert_eq!(memory.capabilities().price_per_pad, None);

    let dir = TempDir::new().unwrap();
    let path = dir.path().join("sub").join("store");
    let url = format!("file://{}", path.display());
    let folder = open(&url, &no_options()).await.unwrap();
    assert!(path.is_dir(), "the folder is created");
    assert_eq!(folder.describe(), url);
    folder
        .put("p/x", Bytes::from_static(b"on disk"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(path.join("p").join("x")).unwrap(), b"on disk");

    // A plain path, absolute or relative to the current folder.
    let plain = open(path.to_str().unwrap(), &no_options()).await.unwrap();
    assert_eq!(
        plain.get("p/x").await.unwrap(),
        Bytes::from_static(b"on disk")
    );
    let relative = format!("target/{}", unique("relative-store"));
    let store = open(&relative, &no_options()).await.unwrap();
    let absolute = std::env::current_dir().unwrap().join(&relative);
    assert!(absolute.is_dir());
    assert!(
        store.describe().ends_with(&relative),
        "{}",
        store.describe()
    );
    std::fs::remove_dir_all(absolute).unwrap();

    let sim = open(
        &format!("sim+memory://{name}?latency_ms=1&jitter_ms=2&fail_rate=0.25&pad_price=3&seed=7"),
        &no_options(),
    )
    .await
    .unwrap();
    assert_eq!(sim.capabilities().price_per_pad, Some(3.0));
    assert_eq!(
        sim.describe(),
        format!("sim+memory://{name}?latency_ms=1&jitter_ms=2&fail_rate=0.25&pad_price=3&seed=7")
    );
    assert_eq!(stats_of(&sim).pads_reserved, 0);

    let sim_folder = open(
        &format!("sim+{}?latency_ms=0", path.display()),
        &no_options(),
    )
    .await
    .unwrap();
    assert_eq!(
        sim_folder.get("p/x").await.unwrap(),
        Bytes::from_static(b"on disk")
    );
    assert!(SimPadStore::of(sim_folder.as_ref()).is_some());
}

fn stats_of(store: &Arc<dyn Backend>) -> anthill::pad_store::SimStats {
    SimPadStore::of(store.as_ref())
        .expect("a sim+ store is a simulation")
        .sim_stats()
}

#[tokio::test]
async fn urls_two_opens_of_one_memory_name_share_data() {
    let url = format!("memory://{}", unique("shared"));
    let first = open(&url, &no_options()).await.unwrap();
    let second = open(&url, &no_options()).await.unwrap();
    first
        .put("p/s", Bytes::from_static(b"shared"))
        .await
        .unwrap();
    assert_eq!(
        second.get("p/s").await.unwrap(),
        Bytes::from_static(b"shared")
    );
    // Through a simulation too.
    let sim = open(&format!("sim+{url}?latency_ms=1"), &no_options())
        .await
        .unwrap();
    assert_eq!(sim.get("p/s").await.unwrap(), Bytes::from_static(b"shared"));

    let anonymous = open("memory://", &no_options()).await.unwrap();
    let other = open("memory://", &no_options()).await.unwrap();
    anonymous
        .put("p/s", Bytes::from_static(b"mine"))
        .await
        .unwrap();
    assert_eq!(
        other.get("p/s").await,
        Err(BackendError::NotFound("p/s".into()))
    );
}

#[tokio::test]
async fn urls_bad_urls_and_parameters_are_invalid_input() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let file = file.display().to_string();
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "empty"),
        ("   ".into(), "empty"),
        ("ftp://host/x".into(), "unknown backend scheme"),
        ("memory:x".into(), "malformed"),
        ("memory://x?foo=1".into(), "foo"),
        ("file:///tmp/x?foo=1".into(), "foo"),
        ("file://relative/x".into(), "absolute"),
        (file.clone(), "is a file, not a folder"),
        (format!("file://{file}/sub"), "cannot create"),
        ("sim+".into(), "sim+ needs a backend URL"),
        ("sim+memory://x?fail_rate=2".into(), "fail_rate"),
        ("sim+memory://x?fail_rate=-0.1".into(), "fail_rate"),
        ("sim+memory://x?latency_ms=-1".into(), "latency_ms"),
        ("sim+memory://x?latency_ms=abc".into(), "latency_ms"),
        ("sim+memory://x?jitter_ms=inf".into(), "jitter_ms"),
        ("sim+memory://x?pad_price=NaN".into(), "pad_price"),
        ("sim+memory://x?seed=-3".into(), "seed"),
        ("sim+memory://x?seed=1&seed=2".into(), "twice"),
        ("sim+memory://x?bogus=1".into(), "bogus"),
        ("sim+ftp://x".into(), "unknown backend scheme"),
        ("s3://".into(), "bucket"),
        ("s3://bucket/p?nope=1".into(), "unknown S3 option \"nope\""),
        (
            "s3://bucket/p?bucket=other".into(),
            "bucket comes from the URL",
        ),
        ("s3://bucket/p?max_retries=many".into(), "max_retries"),
        (
            "s3://bucket/p?conditional_writes=maybe".into(),
            "conditional_writes",
        ),
        ("s3://bucket/p?lease_ttl_secs=0.5".into(), "lease_ttl_secs"),
        ("s3://bucket/p?lock_wait_secs=soon".into(), "lock_wait_secs"),
    ];
    for (url, expect) in cases {
        assert_invalid(open(&url, &no_options()).await, &url, expect);
    }
    // The sim error names what is accepted.
    assert_invalid(
        open("sim+memory://x?bogus=1", &no_options()).await,
        "bogus",
        "latency_ms, jitter_ms, fail_rate, pad_price, seed",
    );
    let mut options = BackendOptions::default();
    options.options = vec![("region".into(), "x".into())];
    assert_invalid(
        open("memory://x", &options).await,
        "memory + options",
        "region",
    );
}

#[tokio::test]
async fn urls_s3_opens_offline_and_keeps_secrets_out_of_describe() {
    let url = "s3://bucket/pre/fix?endpoint=http://127.0.0.1:9&region=garage&allow_http=true\
               &access_key_id=AKID&secret_access_key=SECRET";
    let store = open(url, &no_options()).await.unwrap();
    assert_eq!(
        store.describe(),
        "s3://bucket/pre/fix?endpoint=http://127.0.0.1:9"
    );
    let mut options = BackendOptions::default();
    options.options = vec![
        ("endpoint".into(), "http://127.0.0.1:9".into()),
        ("region".into(), "garage".into()),
        ("allow_http".into(), "true".into()),
        ("access_key_id".into(), "AKID".into()),
        ("secret_access_key".into(), "SECRET".into()),
    ];
    let store = open("s3://bucket", &options).await.unwrap();
    assert!(!store.describe().contains("SECRET"));
    let sim = open(&format!("sim+{url}&latency_ms=1"), &no_options())
        .await
        .unwrap();
    assert!(
        sim.describe()
            .starts_with("sim+s3://bucket/pre/fix?endpoint=")
    );
    assert!(!sim.describe().contains("SECRET"));
}
