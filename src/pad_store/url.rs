//! [`open`]: a backend chosen by URL.
//!
//! - `memory://NAME`: in-process; the same NAME in one process is the same
//!   store, `memory://` alone a fresh anonymous one.
//! - `file:///abs/path?fsync=true` or a plain path (relative to the current
//!   folder): a local folder, created if missing. Writes are atomic (a
//!   temporary file renamed into place), so a process crash never leaves a
//!   torn object; `fsync=true` also flushes each write to the disk before it
//!   returns, for changes that must survive an OS crash or power loss.
//! - `s3://bucket/prefix?endpoint=..&region=..`: any S3-compatible service
//!   (see `open_s3` for its options, and `docs/s3.md`).
//! - `sim+<url>?latency_ms=..&jitter_ms=..&fail_rate=..&pad_price=..&seed=..&pads_refund=..`:
//!   the simulation wrapper ([`SimPadStore`]) around any of them.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore};

use super::lease::{ConditionalWrites, LeaseConfig};
use super::object::{Locking, ObjectPadStore};
use super::sim::{SimConfig, SimPadStore};
use super::{PadStore, create_folder_durably};
use crate::Error;

/// Extra settings for a backend, as key/value pairs (Python keywords), used
/// by `s3://` URLs: `endpoint`, `region`, `access_key_id`,
/// `secret_access_key`, `session_token`, `allow_http`, … They are applied
/// after the URL's query, so they win over it.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct BackendOptions {
    pub options: Vec<(String, String)>,
}

/// Credentials redacted: debug output ends up in logs and bug reports.
impl std::fmt::Debug for BackendOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<(&str, String)> = self
            .options
            .iter()
            .map(|(key, value)| (key.as_str(), redact_value(key, value)))
            .collect();
        f.debug_struct("BackendOptions")
            .field("options", &shown)
            .finish()
    }
}

/// The options whose values are credentials, named as `object_store` names
/// them without their optional `aws_` prefix. The access key id is no
/// secret by itself, but it is half of a credential pair and tells nothing
/// a user needs to read back, so it is hidden too.
pub const CREDENTIAL_OPTIONS: &[&str] = &[
    "access_key_id",
    "secret_access_key",
    "session_token",
    "token",
    "sse_customer_key_base64",
];

/// What a redacted credential shows instead of its value.
pub const REDACTED: &str = "***";

/// Whether the option `name` (any case, `aws_` prefix or not) holds a
/// credential.
pub fn is_credential(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("aws_").unwrap_or(&name);
    CREDENTIAL_OPTIONS.contains(&name)
}

/// The value of option `name` as it may be shown: a credential is
/// [`REDACTED`], a URL (an endpoint) loses its userinfo.
pub fn redact_value(name: &str, value: &str) -> String {
    if is_credential(name) {
        REDACTED.to_owned()
    } else {
        redact_userinfo(value)
    }
}

/// `url` as it may be shown in a repr, a message or a log line: the
/// `user:password@` of a URL and of any URL in its query (an endpoint) is
/// replaced by `***@`, and the value of every credential option in its
/// query by `***`. A plain path is returned as it is (it has no query, and
/// an `@` in it is part of a file name). The one place that decides what a
/// shown URL hides.
pub fn redact_url(url: &str) -> String {
    let has_query = url.trim_start().starts_with("sim+") || scheme_of(url.trim()).is_some();
    if !has_query {
        return url.to_owned();
    }
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut shown = redact_userinfo(base);
    if let Some(query) = query {
        shown.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let mut decoded = url::form_urlencoded::parse(pair.as_bytes());
                match decoded.next() {
                    Some((key, value)) => {
                        let redacted = redact_value(&key, &value);
                        if redacted == value {
                            pair.to_owned()
                        } else {
                            let raw_key = pair.split_once('=').map_or(pair, |(key, _)| key);
                            format!("{raw_key}={redacted}")
                        }
                    }
                    None => pair.to_owned(),
                }
            })
            .collect();
        shown.push_str(&pairs.join("&"));
    }
    shown
}

/// `text` with the userinfo of every `scheme://user:password@host` in it
/// replaced by `***`.
fn redact_userinfo(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        shown.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_len = after.find(['/', '?', '#', '&']).unwrap_or(after.len());
        let authority = &after[..authority_len];
        match authority.rfind('@') {
            Some(user_end) => {
                shown.push_str(REDACTED);
                shown.push_str(&authority[user_end..]);
            }
            None => shown.push_str(authority),
        }
        rest = &after[authority_len..];
    }
    shown.push_str(rest);
    shown
}

/// The query parameters a `sim+` URL takes for itself.
const SIM_PARAMETERS: &str = "latency_ms, jitter_ms, fail_rate, pad_price, seed, pads_refund";

/// Options of `s3://` URLs that anthill handles itself (all others are
/// `object_store`'s `AmazonS3ConfigKey` names).
const S3_MAX_RETRIES: &str = "max_retries";
const S3_RETRY_TIMEOUT: &str = "retry_timeout_secs";
/// `auto` (probe the service), `true` or `false`: see `lease.rs`.
const S3_CONDITIONAL_WRITES: &str = "conditional_writes";
/// Lifetime of the writer lease without renewal.
const S3_LEASE_TTL: &str = "lease_ttl_secs";
/// How long to wait for another writer's lease.
const S3_LOCK_WAIT: &str = "lock_wait_secs";

/// Retries inside one S3 call. The caller retries transient failures itself
/// (with progress events and backoff), so a call gives up sooner than
/// `object_store`'s default (10 retries, 3 minutes).
const S3_DEFAULT_MAX_RETRIES: usize = 3;
const S3_DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens the backend named by `url`. See the module documentation for the
/// URLs; a malformed URL, unknown scheme or unknown or invalid option is
/// [`Error::InvalidInput`].
pub async fn open(url: &str, options: &BackendOptions) -> Result<Arc<dyn PadStore>, Error> {
    let url = url.trim();
    if url.is_empty() {
        return Err(invalid(
            "the backend URL is empty; use memory://NAME, file:///path, a path, \
             s3://bucket/prefix or sim+<url>",
        ));
    }
    // A plain path is taken literally: a `?` in it is part of a file name.
    let has_query = url.starts_with("sim+") || scheme_of(url).is_some();
    let (base, query) = match url.split_once('?') {
        Some((base, query)) if has_query => (base, parse_query(query)),
        _ => (url, Vec::new()),
    };
    // Messages quote the URL, which may carry userinfo.
    open_target(base, query, options)
        .await
        .map_err(|error| match error {
            Error::InvalidInput(message) => Error::InvalidInput(redact_userinfo(&message)),
            other => other,
        })
}

/// Opens `base` (a URL without its query) with the query `pairs`.
async fn open_target(
    base: &str,
    pairs: Vec<(String, String)>,
    options: &BackendOptions,
) -> Result<Arc<dyn PadStore>, Error> {
    if let Some(inner) = base.strip_prefix("sim+") {
        if inner.is_empty() {
            return Err(invalid(
                "malformed store URL: sim+ needs a backend URL after it, like \
                 sim+memory://demo?latency_ms=50",
            ));
        }
        let (config, rest) = sim_config(pairs)?;
        let inner = Box::pin(open_target(inner, rest, options)).await?;
        return Ok(Arc::new(SimPadStore::new(inner, config)));
    }
    match scheme_of(base) {
        None => open_folder(FsPath::new(base), base, &pairs, options),
        Some(scheme) => {
            let rest = &base[scheme.len() + 1..];
            if !rest.starts_with("//") {
                // Only the scheme: the rest may hold credentials.
                return Err(invalid(format!(
                    "malformed store URL (starting {scheme}:): expected {scheme}://…"
                )));
            }
            match scheme.to_ascii_lowercase().as_str() {
                "memory" => open_memory(&rest[2..], &pairs, options),
                "file" => open_file_url(base, &pairs, options),
                "s3" => open_s3(base, pairs, options),
                _ => Err(invalid(format!(
                    "unknown backend scheme {scheme:?} in {base:?}; accepted: memory://NAME, \
                     file:///path (or a plain path), s3://bucket/prefix, sim+<url>"
                ))),
            }
        }
    }
}

/// Whether `location` is a URL (with a scheme, or `sim+`) rather than a
/// folder path.
pub fn is_url(location: &str) -> bool {
    let location = location.trim();
    location.starts_with("sim+") || scheme_of(location).is_some()
}

/// The scheme of `url` (`memory` in `memory://x`), or `None` for a path. A
/// single letter before `:` is a Windows drive, not a scheme.
fn scheme_of(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && scheme.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid(message)
}

/// Rejects any option: memory and folder stores take none.
fn no_options(
    description: &str,
    pairs: &[(String, String)],
    options: &BackendOptions,
) -> Result<(), Error> {
    let keys: Vec<&str> = pairs
        .iter()
        .chain(&options.options)
        .map(|(key, _)| key.as_str())
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "unknown option {} for {description}: a folder store takes only fsync, a memory \
         store no options (a sim+ URL accepts {SIM_PARAMETERS})",
        keys.join(", ")
    )))
}

/// Splits the simulation's parameters off the query.
fn sim_config(pairs: Vec<(String, String)>) -> Result<(SimConfig, Vec<(String, String)>), Error> {
    let mut config = SimConfig::default();
    let mut seen = Vec::new();
    let mut rest = Vec::new();
    for (key, value) in pairs {
        let name = key.as_str();
        if ![
            "latency_ms",
            "jitter_ms",
            "fail_rate",
            "pad_price",
            "seed",
            "pads_refund",
        ]
        .contains(&name)
        {
            rest.push((key, value));
            continue;
        }
        if seen.contains(&key) {
            return Err(invalid(format!("sim parameter {key} is given twice")));
        }
        let number = || -> Result<f64, Error> {
            value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|number| number.is_finite() && *number >= 0.0)
                .ok_or_else(|| {
                    invalid(format!(
                        "sim parameter {key}={value:?} is not a number >= 0"
                    ))
                })
        };
        match name {
            "latency_ms" => config.latency_ms = number()?,
            "jitter_ms" => config.jitter_ms = number()?,
            "pad_price" => config.pad_price = Some(number()?),
            "pads_refund" => {
                let refund = parse_bool(&value).ok_or_else(|| {
                    invalid(format!(
                        "sim parameter pads_refund={value:?} is not true or false"
                    ))
                })?;
                config.pads_never_refund = !refund;
            }
            "fail_rate" => {
                let rate = number()?;
                if rate > 1.0 {
                    return Err(invalid(format!(
                        "sim parameter fail_rate={value:?} is not a probability between 0 and 1"
                    )));
                }
                config.fail_rate = rate;
            }
            _ => {
                let seed = value.trim().parse::<u64>().map_err(|_| {
                    invalid(format!(
                        "sim parameter seed={value:?} is not a whole number >= 0"
                    ))
                })?;
                config.seed = Some(seed);
            }
        }
        seen.push(key);
    }
    Ok((config, rest))
}

/// The named in-memory stores of this process.
type MemoryStores = Mutex<HashMap<String, (Arc<InMemory>, Locking)>>;

fn memory_stores() -> &'static MemoryStores {
    static STORES: OnceLock<MemoryStores> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

fn open_memory(
    name: &str,
    pairs: &[(String, String)],
    options: &BackendOptions,
) -> Result<Arc<dyn PadStore>, Error> {
    let description = format!("memory://{name}");
    no_options(&description, pairs, options)?;
    let (memory, locking) = if name.is_empty() {
        (Arc::new(InMemory::new()), Locking::in_process())
    } else {
        // Protects only the name -> store table; no I/O under it.
        let mut stores = memory_stores()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        stores
            .entry(name.to_owned())
            .or_insert_with(|| (Arc::new(InMemory::new()), Locking::in_process()))
            .clone()
    };
    let store: Arc<dyn ObjectStore> = memory;
    Ok(Arc::new(ObjectPadStore::new(
        store,
        locking,
        Path::default(),
        description,
    )))
}

fn open_file_url(
    url: &str,
    pairs: &[(String, String)],
    options: &BackendOptions,
) -> Result<Arc<dyn PadStore>, Error> {
    let parsed = url::Url::parse(url)
        .map_err(|error| invalid(format!("malformed file URL {url:?}: {error}")))?;
    let path = parsed.to_file_path().map_err(|()| {
        invalid(format!(
            "file URL {url:?} does not name an absolute local path; use file:///abs/path \
             or a plain path"
        ))
    })?;
    open_folder(&path, url, pairs, options)
}

fn open_folder(
    path: &FsPath,
    given: &str,
    pairs: &[(String, String)],
    options: &BackendOptions,
) -> Result<Arc<dyn PadStore>, Error> {
    let mut fsync = false;
    let mut others = Vec::new();
    for (key, value) in pairs.iter().chain(&options.options) {
        if key == "fsync" {
            fsync = parse_bool(value).ok_or_else(|| {
                invalid(format!(
                    "folder option fsync={value:?} is not true or false"
                ))
            })?;
        } else {
            others.push((key.clone(), value.clone()));
        }
    }
    no_options(given, &others, &BackendOptions::default())?;
    let path: PathBuf = std::path::absolute(path)
        .map_err(|error| invalid(format!("cannot resolve the path {given:?}: {error}")))?;
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(invalid(format!(
                "{} is a file, not a folder; a local store needs a folder",
                path.display()
            )));
        }
        // Missing, or something in the way (a file as a parent folder):
        // creating the folder succeeds or says why not. Whatever fsync says,
        // the new folder reaches the disk: losing it in a power loss would
        // lose the store's metadata, and with it everything written since.
        Err(_) => {
            create_folder_durably(&path).map_err(|error| {
                invalid(format!(
                    "cannot create the store folder {}: {error}",
                    path.display()
                ))
            })?;
        }
    }
    let local = LocalFileSystem::new_with_prefix(&path)
        .map_err(|error| {
            invalid(format!(
                "cannot use {} as a store folder: {error}",
                path.display()
            ))
        })?
        // Reads, lists, deletes and reserves; puts go through FolderWriter
        // (folder.rs). Both write a temporary file and move it into place:
        // atomic, and in the kernel's hands (safe from a process crash) once
        // the call returns. fsync adds the disk's write time (a 1 GiB put:
        // ~1.1 s, not ~0.26 s, here).
        .with_fsync(fsync);
    let description = url::Url::from_file_path(&path)
        .map(String::from)
        .unwrap_or_else(|()| path.display().to_string());
    let store: Arc<dyn ObjectStore> = Arc::new(local);
    Ok(Arc::new(ObjectPadStore::new_folder(
        store,
        path,
        fsync,
        description,
    )))
}

/// Opens an S3 store. Settings come, later ones winning, from the `AWS_*`
/// environment variables, the URL's query and `options`: any
/// `object_store` S3 setting (`endpoint`, `region`, `access_key_id`,
/// `secret_access_key`, `session_token`, `allow_http`, …) plus anthill's own
/// `max_retries`, `retry_timeout_secs` (retries inside one request),
/// `conditional_writes` (`auto`, `true`, `false`), `lease_ttl_secs` and
/// `lock_wait_secs` (the writer lease). Requests are path-style, and an
/// `http://` endpoint allows plain HTTP unless `allow_http` says otherwise.
/// Opening sends no request: a wrong endpoint or key shows on first use.
fn open_s3(
    url: &str,
    pairs: Vec<(String, String)>,
    options: &BackendOptions,
) -> Result<Arc<dyn PadStore>, Error> {
    let parsed = url::Url::parse(url)
        .map_err(|error| invalid(format!("malformed S3 URL {url:?}: {error}")))?;
    let bucket = parsed
        .host_str()
        .filter(|bucket| !bucket.is_empty())
        .ok_or_else(|| {
            invalid(format!(
                "S3 URL {url:?} names no bucket: use s3://bucket/prefix"
            ))
        })?
        .to_owned();
    let prefix = Path::from_url_path(parsed.path())
        .map_err(|error| invalid(format!("invalid key prefix in S3 URL {url:?}: {error}")))?;

    // Garage, MinIO and most self-hosted services need path-style requests;
    // an explicit virtual_hosted_style_request option still wins.
    let mut builder = AmazonS3Builder::from_env().with_virtual_hosted_style_request(false);
    let mut retry = object_store::RetryConfig {
        max_retries: S3_DEFAULT_MAX_RETRIES,
        retry_timeout: S3_DEFAULT_RETRY_TIMEOUT,
        ..Default::default()
    };
    let mut lease = LeaseConfig::default();
    let mut allow_http_given = std::env::var_os("AWS_ALLOW_HTTP").is_some();
    let seconds = |key: &str, value: &str| {
        value
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .ok_or_else(|| {
                invalid(format!(
                    "S3 option {key}={value:?} is not a number of seconds"
                ))
            })
    };
    for (key, value) in pairs.iter().chain(&options.options) {
        let key = key.trim().to_ascii_lowercase();
        match key.as_str() {
            S3_MAX_RETRIES => {
                retry.max_retries = value.trim().parse().map_err(|_| {
                    invalid(format!(
                        "S3 option max_retries={value:?} is not a whole number"
                    ))
                })?;
                continue;
            }
            S3_RETRY_TIMEOUT => {
                retry.retry_timeout = seconds(&key, value)?;
                continue;
            }
            S3_CONDITIONAL_WRITES => {
                lease.conditional_writes = ConditionalWrites::parse(value).ok_or_else(|| {
                    invalid(format!(
                        "S3 option conditional_writes={value:?} is not auto, true or false"
                    ))
                })?;
                continue;
            }
            S3_LEASE_TTL => {
                lease.ttl = seconds(&key, value)?;
                if lease.ttl < Duration::from_secs(1) {
                    return Err(invalid(format!(
                        "S3 option lease_ttl_secs={value:?} is below 1 second"
                    )));
                }
                continue;
            }
            S3_LOCK_WAIT => {
                lease.wait_limit = seconds(&key, value)?;
                continue;
            }
            _ => {}
        }
        let config_key: AmazonS3ConfigKey = key.parse().map_err(|_| {
            invalid(format!(
                "unknown S3 option {key:?}; accepted: endpoint, region, access_key_id, \
                 secret_access_key, session_token, allow_http, virtual_hosted_style_request, \
                 {S3_MAX_RETRIES}, {S3_RETRY_TIMEOUT}, {S3_CONDITIONAL_WRITES}, {S3_LEASE_TTL}, \
                 {S3_LOCK_WAIT} and the other object_store S3 settings"
            ))
        })?;
        match config_key {
            AmazonS3ConfigKey::Bucket => {
                return Err(invalid(format!(
                    "S3 option {key} is not accepted: the bucket comes from the URL s3://bucket/…"
                )));
            }
            AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp) => allow_http_given = true,
            _ => {}
        }
        builder = builder.with_config(config_key, value);
    }
    // The endpoint from any source (the environment included).
    let endpoint = builder
        .get_config_value(&AmazonS3ConfigKey::Endpoint)
        .filter(|endpoint| !endpoint.is_empty());
    if let Some(endpoint) = &endpoint
        && redact_userinfo(endpoint) != *endpoint
    {
        // S3 signs requests with the access key; a user:password@ in the
        // endpoint would only end up in every request URL and error text.
        return Err(invalid(format!(
            "the S3 endpoint {} carries a user name or password: give credentials as \
             access_key_id and secret_access_key instead",
            redact_userinfo(endpoint)
        )));
    }
    if !allow_http_given
        && endpoint
            .as_deref()
            .is_some_and(|endpoint| endpoint.to_ascii_lowercase().starts_with("http://"))
    {
        // Asking for an http:// endpoint is asking for plain HTTP.
        builder = builder.with_allow_http(true);
    }
    let s3 = builder
        .with_bucket_name(&bucket)
        .with_retry(retry)
        .build()
        .map_err(|error| invalid(format!("cannot open {url:?}: {error}")))?;

    // Never credentials: the description goes into messages and logs.
    let mut description = format!("s3://{bucket}");
    if !prefix.as_ref().is_empty() {
        description = format!("{description}/{prefix}");
    }
    if let Some(endpoint) = endpoint {
        description = format!("{description}?endpoint={}", redact_userinfo(&endpoint));
    }
    let store: Arc<dyn ObjectStore> = Arc::new(s3);
    Ok(Arc::new(ObjectPadStore::new_s3(
        store,
        bucket,
        prefix,
        description,
        lease,
    )))
}
