//! How S3 failures are classified, against a fake S3 server on loopback
//! that answers every request with one canned response.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use anthill::pad_store::{Backend, BackendError, BackendOptions, open};
use bytes::Bytes;

fn no_options() -> BackendOptions {
    BackendOptions::default()
}

// with one canned response.

/// Serves `status` and `body` to every request; returns the port.
fn fake_s3(status: &'static str, body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 8192];
            // Read the head and any body announced by Content-Length.
            while let Ok(read) = stream.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .and_then(|value| value.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

async fn s3_at(port: u16) -> Arc<dyn Backend> {
    let url = format!(
        "s3://bucket-x/prefix?endpoint=http://127.0.0.1:{port}&region=garage&allow_http=true\
         &access_key_id=AKID&secret_access_key=SECRET&max_retries=0"
    );
    open(&url, &no_options()).await.unwrap()
}

#[tokio::test]
async fn s3_wrong_credentials_are_permanent() {
    let port = fake_s3(
        "403 Forbidden",
        "<Error><Code>InvalidAccessKeyId</Code><Message>no such key</Message></Error>",
    );
    let store = s3_at(port).await;
    // Reads only: a write is refused before any request without the writer
    // lease, which this server cannot grant (see
    // `s3_writes_without_the_writer_lease_are_refused`).
    for result in [
        store.get("p/a").await.map(|_| ()),
        store.list("p/").await.map(|_| ()),
    ] {
        assert!(
            matches!(&result, Err(BackendError::Permanent(m)) if m.contains("wrong credentials")),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn s3_missing_bucket_is_permanent() {
    let port = fake_s3(
        "404 Not Found",
        "<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>",
    );
    let store = s3_at(port).await;
    for result in [
        store.get("p/a").await.map(|_| ()),
        store.list("").await.map(|_| ()),
    ] {
        assert!(
            matches!(&result, Err(BackendError::Permanent(m))
                if m.contains("bucket bucket-x does not exist")),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn s3_missing_object_is_not_found() {
    let port = fake_s3(
        "404 Not Found",
        "<Error><Code>NoSuchKey</Code><Message>no</Message></Error>",
    );
    let store = s3_at(port).await;
    assert_eq!(
        store.get("p/a").await,
        Err(BackendError::NotFound("p/a".into()))
    );
}

#[tokio::test]
async fn s3_server_errors_and_throttling_are_transient() {
    for (status, body) in [
        (
            "503 Service Unavailable",
            "<Error><Code>SlowDown</Code></Error>",
        ),
        ("500 Internal Server Error", ""),
        ("429 Too Many Requests", ""),
    ] {
        let store = s3_at(fake_s3(status, body)).await;
        let result = store.get("p/a").await;
        assert!(
            result.as_ref().is_err_and(BackendError::is_transient),
            "{status}: {result:?}"
        );
    }
}

#[tokio::test]
async fn s3_unreachable_endpoint_is_transient() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = s3_at(port).await;
    let result = store.get("p/a").await;
    assert!(
        result.as_ref().is_err_and(BackendError::is_transient),
        "{result:?}"
    );
}

#[tokio::test]
async fn s3_writes_without_the_writer_lease_are_refused() {
    // Every request answers 200, as if every write would land: without the
    // writer lease none is made. (How `reserve` checks for an existing
    // object first is tested beside it, in `object.rs`.)
    let store = s3_at(fake_s3("200 OK", "")).await;
    for result in [
        store.reserve("p/a", Bytes::from_static(b"a")).await,
        store.put("p/a", Bytes::from_static(b"a")).await.map(|_| ()),
        store.delete("p/a").await,
    ] {
        assert!(
            matches!(&result, Err(BackendError::Permanent(m))
                if m.contains("does not hold the writer lease")),
            "{result:?}"
        );
    }
}
