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
//!   (see `s3.rs` for its options, and `docs/s3.md`).
//! - `sim+<url>?latency_ms=..&jitter_ms=..&fail_rate=..&pad_price=..&seed=..&pads_refund=..&record_pad_writes=PATH&torn_overwrites=..`:
//!   the simulation wrapper ([`SimPadStore`]) around any of them.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;

use super::object::{Locking, ObjectPadStore};
use super::redact::{redact_userinfo, redact_value, scheme_of};
use super::s3::open_s3;
use super::sim::{SimConfig, SimPadStore};
use super::{Backend, create_folder_durably};
use crate::error::Error;

/// Extra settings for a backend, as key/value pairs (Python keywords), used
/// by `s3://` URLs: `endpoint`, `region`, `access_key_id`,
/// `secret_access_key`, `session_token`, `allow_http`, … They are applied
/// after the URL's query, so they win over it.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct BackendOptions {
    pub options: Vec<(String, String)>,
    /// Open only a store that exists: a missing local folder is an error
    /// instead of being created (read-only commands must create nothing).
    pub must_exist: bool,
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
            .field("must_exist", &self.must_exist)
            .finish()
    }
}

/// The query parameters a `sim+` URL takes for itself.
const SIM_PARAMETERS: &str = "latency_ms, jitter_ms, fail_rate, pad_price, seed, pads_refund, record_pad_writes, torn_overwrites";

/// Opens the backend named by `url`. See the module documentation for the
/// URLs; a malformed URL, unknown scheme or unknown or invalid option is
/// [`Error::InvalidInput`].
pub async fn open(url: &str, options: &BackendOptions) -> Result<Arc<dyn Backend>, Error> {
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
) -> Result<Arc<dyn Backend>, Error> {
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
                "s3" => open_s3(base, &with_options(pairs, options)),
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

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// The query's `pairs`, then the caller's `options` (which win where a
/// backend applies them in order).
fn with_options(pairs: Vec<(String, String)>, options: &BackendOptions) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .chain(options.options.iter().cloned())
        .collect()
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

/// A true-or-false sim parameter.
fn sim_bool(key: &str, value: &str) -> Result<bool, Error> {
    parse_bool(value).ok_or_else(|| {
        invalid(format!(
            "sim parameter {key}={value:?} is not true or false"
        ))
    })
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
            "record_pad_writes",
            "torn_overwrites",
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
            "record_pad_writes" => {
                if value.is_empty() {
                    return Err(invalid(
                        "sim parameter record_pad_writes needs a file path".to_string(),
                    ));
                }
                config.record_pad_writes = Some(std::path::PathBuf::from(value.as_str()));
            }
            "torn_overwrites" => config.torn_overwrites = sim_bool(&key, &value)?,
            "pads_refund" => config.pads_never_refund = !sim_bool(&key, &value)?,
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
) -> Result<Arc<dyn Backend>, Error> {
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
) -> Result<Arc<dyn Backend>, Error> {
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
) -> Result<Arc<dyn Backend>, Error> {
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
        Err(_) if options.must_exist => {
            return Err(invalid(format!(
                "no store at {}: the folder does not exist (a store is created by its \
                 first put; check the location)",
                path.display()
            )));
        }
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
        // the call returns. fsync adds the disk's write time to every put
        // (see docs/benchmarks.md).
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
