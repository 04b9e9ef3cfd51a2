//! How a backend failure becomes a [`BackendError`]: an answer (`NotFound`,
//! `AlreadyExists`), worth retrying (`Transient`) or not (`Permanent`, with
//! a message a user can act on). The one place that reads `object_store`'s
//! errors, S3 error codes, HTTP statuses and local I/O errors; every backend
//! of `pad_store` (objects, folder writes, the S3 lease) classifies here.

use std::error::Error as StdError;
use std::io;

use crate::backend_error::BackendError;

/// The one place that decides what an `object_store` failure means to the
/// caller: an answer (`NotFound`, `AlreadyExists`), worth retrying
/// (`Transient`) or not (`Permanent`, with a message a user can act on).
///
/// `name` is the object concerned, `url` the store's description and
/// `bucket` its S3 bucket, all for messages.
pub(super) fn classify_error(
    error: object_store::Error,
    name: &str,
    url: &str,
    bucket: Option<&str>,
) -> BackendError {
    use object_store::Error as E;

    // S3 error codes and HTTP statuses only survive as text: the retry error
    // type of `object_store` is private. Checking the codes first also
    // catches a 404 that means a missing bucket rather than a missing object.
    let text = chain_text(&error);
    if let Some(answer) = classify_s3_code(&text, url, bucket) {
        return answer;
    }
    match error {
        E::NotFound { .. } => BackendError::NotFound(name.to_owned()),
        // Our only conditional write is `reserve`'s create-if-absent, so a
        // failed precondition means the object is there.
        E::AlreadyExists { .. } | E::Precondition { .. } | E::NotModified { .. } => {
            BackendError::AlreadyExists(name.to_owned())
        }
        E::Unauthenticated { .. } => BackendError::Permanent(format!(
            "wrong credentials for {url}: the service rejected the request ({text})"
        )),
        E::PermissionDenied { .. } => BackendError::Permanent(format!(
            "permission denied on {url}: the credentials lack access to {name:?} ({text})"
        )),
        E::InvalidPath { .. } => {
            BackendError::Permanent(format!("invalid object name {name:?} on {url}: {text}"))
        }
        E::NotSupported { .. } | E::NotImplemented { .. } | E::UnknownConfigurationKey { .. } => {
            BackendError::Permanent(format!("{url} does not support this operation: {text}"))
        }
        E::JoinError { source } if source.is_panic() => {
            BackendError::Permanent(format!("a storage task on {url} panicked: {text}"))
        }
        E::JoinError { .. } => {
            BackendError::Transient(format!("a storage task on {url} was cancelled: {text}"))
        }
        _ => http_status(&text)
            .and_then(|status| classify_status(status, url, &text))
            .unwrap_or_else(|| classify_by_source(&error, name, url, &text)),
    }
}

/// The message of `error` and of every error below it, joined.
fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let part = source.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

/// Errors recognised by an S3 error code in the message.
fn classify_s3_code(text: &str, url: &str, bucket: Option<&str>) -> Option<BackendError> {
    // With no credentials given, object_store asks the cloud instance
    // metadata service for some; off the cloud that request fails.
    if text.contains("169.254.169.254") {
        return Some(BackendError::Permanent(format!(
            "no S3 credentials for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
             or pass access_key_id= and secret_access_key= (none were given, and this \
             machine's instance metadata service at 169.254.169.254 gave none)"
        )));
    }
    if text.contains("NoSuchBucket") {
        let bucket = bucket.unwrap_or("of the store");
        return Some(BackendError::Permanent(format!(
            "bucket {bucket} does not exist ({url}); create it first"
        )));
    }
    // Garage says AccessDenied with "No such key" or "Invalid signature".
    let garage_credentials = text.contains("AccessDenied")
        && ["No such key", "Invalid signature"]
            .iter()
            .any(|message| text.contains(message));
    if garage_credentials
        || [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "InvalidToken",
            "ExpiredToken",
        ]
        .iter()
        .any(|code| text.contains(code))
    {
        return Some(BackendError::Permanent(format!(
            "wrong credentials for {url}: check access_key_id and secret_access_key ({text})"
        )));
    }
    if text.contains("AuthorizationHeaderMalformed") {
        return Some(BackendError::Permanent(format!(
            "wrong region for {url}: check the region option ({text})"
        )));
    }
    if text.contains("RequestTimeTooSkewed") {
        return Some(BackendError::Permanent(format!(
            "this machine's clock is too far off for {url} to accept requests ({text})"
        )));
    }
    None
}

/// An HTTP error status that object_store left as a generic error.
fn classify_status(status: u16, url: &str, text: &str) -> Option<BackendError> {
    Some(match status {
        401 => BackendError::Permanent(format!("wrong credentials for {url} ({text})")),
        403 => BackendError::Permanent(format!(
            "permission denied on {url}: wrong credentials or no access ({text})"
        )),
        404 => BackendError::Permanent(format!("{url} answered 404 Not Found: {text}")),
        408 | 429 => BackendError::Transient(format!("{url} is throttling or slow: {text}")),
        500..=599 => BackendError::Transient(format!("{url} had a server error: {text}")),
        400..=499 => BackendError::Permanent(format!("{url} refused the request: {text}")),
        _ => return None,
    })
}

/// The status in object_store's "Server returned non-2xx status code: 503 …".
fn http_status(text: &str) -> Option<u16> {
    let (_, after) = text.split_once("status code: ")?;
    after.get(..3)?.parse().ok()
}

/// A generic failure, judged by the I/O or HTTP error underneath it.
fn classify_by_source(
    error: &(dyn StdError + 'static),
    name: &str,
    url: &str,
    text: &str,
) -> BackendError {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(http) = current.downcast_ref::<object_store::client::HttpError>() {
            // Connection refused or reset, timeouts, a body cut short: the
            // network, which may come back.
            use object_store::client::HttpErrorKind as K;
            let cause = match http.kind() {
                K::Connect => format!(
                    "cannot reach {url}: connecting failed (is the endpoint right and the \
                     service running?)"
                ),
                K::Timeout => format!("{url} did not answer in time"),
                _ => format!("network error talking to {url}"),
            };
            return BackendError::Transient(format!("{cause}: {text}"));
        }
        if let Some(io_error) = current.downcast_ref::<io::Error>() {
            return classify_io(io_error, name, url, text);
        }
        next = current.source();
    }
    BackendError::Transient(format!("{url} failed: {text}"))
}

/// Local disk problems a retry will not fix are Permanent with their cause
/// named; everything else (timeouts, interruptions, too many open files, …)
/// is Transient.
pub(super) fn classify_io(error: &io::Error, name: &str, url: &str, text: &str) -> BackendError {
    use io::ErrorKind as K;
    let cause = match error.kind() {
        K::StorageFull => "disk full",
        K::QuotaExceeded => "disk quota exceeded",
        K::PermissionDenied => "permission denied",
        K::ReadOnlyFilesystem => "read-only file system",
        K::FileTooLarge => "file too large for the file system",
        K::NotADirectory | K::IsADirectory | K::AlreadyExists | K::DirectoryNotEmpty => {
            "a file or folder is in the way"
        }
        K::InvalidFilename | K::InvalidInput => "invalid file name",
        K::Unsupported => "operation not supported by the file system",
        _ => {
            return BackendError::Transient(format!("I/O error on {name:?} in {url}: {text}"));
        }
    };
    BackendError::Permanent(format!("{cause}: cannot write {name:?} in {url} ({text})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(source: impl StdError + Send + Sync + 'static) -> object_store::Error {
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(source),
        }
    }

    fn classify(error: object_store::Error) -> BackendError {
        classify_error(error, "p/abc", "file:///data", Some("bucket-x"))
    }

    #[derive(Debug, thiserror::Error)]
    #[error("Unable to copy data to file: {source}")]
    struct Wrapped {
        source: io::Error,
    }

    #[test]
    fn disk_full_and_permission_are_permanent_with_cause() {
        let full = classify(generic(Wrapped {
            source: io::Error::from(io::ErrorKind::StorageFull),
        }));
        assert!(matches!(&full, BackendError::Permanent(m) if m.starts_with("disk full")));
        let denied = classify(generic(io::Error::from(io::ErrorKind::PermissionDenied)));
        assert!(
            matches!(&denied, BackendError::Permanent(m) if m.starts_with("permission denied"))
        );
        let read_only = classify(generic(io::Error::from(io::ErrorKind::ReadOnlyFilesystem)));
        assert!(matches!(&read_only, BackendError::Permanent(m) if m.contains("read-only")));
    }

    #[test]
    fn raw_enospc_is_disk_full() {
        #[cfg(unix)]
        {
            let error = classify(generic(io::Error::from_raw_os_error(28)));
            assert!(matches!(&error, BackendError::Permanent(m) if m.starts_with("disk full")));
        }
    }

    #[test]
    fn timeouts_and_unknown_io_errors_are_transient() {
        assert!(classify(generic(io::Error::from(io::ErrorKind::TimedOut))).is_transient());
        assert!(classify(generic(io::Error::from(io::ErrorKind::ConnectionReset))).is_transient());
        assert!(classify(generic(io::Error::other("odd"))).is_transient());
    }

    #[test]
    fn s3_codes_and_statuses_in_messages() {
        let text = |t: &str| generic(io::Error::other(t.to_owned()));
        let missing = classify(object_store::Error::NotFound {
            path: "p/abc".into(),
            source: Box::new(io::Error::other(
                "404 Not Found: <Error><Code>NoSuchBucket</Code></Error>",
            )),
        });
        assert!(
            matches!(&missing, BackendError::Permanent(m) if m.contains("bucket bucket-x does not exist"))
        );
        let creds = classify(object_store::Error::PermissionDenied {
            path: "p/abc".into(),
            source: Box::new(io::Error::other("<Code>InvalidAccessKeyId</Code>")),
        });
        assert!(matches!(&creds, BackendError::Permanent(m) if m.contains("wrong credentials")));
        for garage in [
            "<Code>AccessDenied</Code><Message>Forbidden: No such key: GK01</Message>",
            "<Code>AccessDenied</Code><Message>Forbidden: Invalid signature</Message>",
        ] {
            let creds = classify(object_store::Error::PermissionDenied {
                path: "p/abc".into(),
                source: Box::new(io::Error::other(garage)),
            });
            assert!(
                matches!(&creds, BackendError::Permanent(m) if m.contains("wrong credentials")),
                "{garage}: {creds:?}"
            );
        }
        let slow = classify(text(
            "Server returned non-2xx status code: 503 Service Unavailable",
        ));
        assert!(slow.is_transient());
        let throttled = classify(text("Server returned non-2xx status code: 429 Too Many"));
        assert!(throttled.is_transient());
        let forbidden = classify(text("Server returned non-2xx status code: 403 Forbidden"));
        assert!(matches!(forbidden, BackendError::Permanent(_)));
        let not_found = classify(object_store::Error::NotFound {
            path: "p/abc".into(),
            source: Box::new(io::Error::other("Server returned non-2xx status code: 404")),
        });
        assert_eq!(not_found, BackendError::NotFound("p/abc".into()));
    }

    #[test]
    fn answers_keep_the_name() {
        let exists = classify(object_store::Error::AlreadyExists {
            path: "x".into(),
            source: Box::new(io::Error::from(io::ErrorKind::AlreadyExists)),
        });
        assert_eq!(exists, BackendError::AlreadyExists("p/abc".into()));
    }
}
