//! `s3://bucket/prefix?endpoint=..&region=..`: any S3-compatible service
//! (AWS S3, Garage, MinIO, Ceph RGW, R2), as an [`ObjectPadStore`] over
//! `object_store`'s S3 client, whose writers exclude each other by a lease
//! object (`lease/`). See `docs/s3.md`.
//!
//! Settings come, later ones winning, from the `AWS_*` environment
//! variables, the URL's query and the caller's options: any `object_store`
//! S3 setting (`endpoint`, `region`, `access_key_id`, `secret_access_key`,
//! `session_token`, `allow_http`, …) plus anthill's own `max_retries`,
//! `retry_timeout_secs` (retries inside one request), `conditional_writes`
//! (`auto`, `true`, `false`), `lease_ttl_secs` and `lock_wait_secs` (the
//! writer lease). Requests are path-style, and an `http://` endpoint allows
//! plain HTTP unless `allow_http` says otherwise. Opening sends no request:
//! a wrong endpoint or key shows on first use.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore, RetryConfig};

use super::Backend;
use super::lease::{ConditionalWrites, LeaseConfig};
use super::object::ObjectPadStore;
use super::redact::redact_userinfo;
use crate::error::Error;

/// Options of `s3://` URLs that anthill handles itself (all others are
/// `object_store`'s `AmazonS3ConfigKey` names).
const S3_MAX_RETRIES: &str = "max_retries";
const S3_RETRY_TIMEOUT: &str = "retry_timeout_secs";
/// `auto` (probe the service), `true` or `false`: see `lease/`.
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

/// Opens the S3 store `url` (without its query) with `options`: the query's
/// pairs, then the caller's (see the module documentation).
pub(super) fn open_s3(url: &str, options: &[(String, String)]) -> Result<Arc<dyn Backend>, Error> {
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

    let mut settings = Settings::from_env();
    for (key, value) in options {
        settings.apply(key, value)?;
    }
    let endpoint = settings.endpoint()?;
    let s3 = settings
        .builder
        .with_bucket_name(&bucket)
        .with_retry(settings.retry)
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
    Ok(Arc::new(ObjectPadStore::new_leased(
        store,
        bucket,
        prefix,
        description,
        settings.lease,
    )))
}

/// The settings of one S3 store, as options are applied.
struct Settings {
    builder: AmazonS3Builder,
    retry: RetryConfig,
    lease: LeaseConfig,
    /// Whether `allow_http` was given (an option or the environment).
    allow_http_given: bool,
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            // Garage, MinIO and most self-hosted services need path-style
            // requests; an explicit virtual_hosted_style_request option
            // still wins.
            builder: AmazonS3Builder::from_env().with_virtual_hosted_style_request(false),
            retry: RetryConfig {
                max_retries: S3_DEFAULT_MAX_RETRIES,
                retry_timeout: S3_DEFAULT_RETRY_TIMEOUT,
                ..Default::default()
            },
            lease: LeaseConfig::default(),
            allow_http_given: std::env::var_os("AWS_ALLOW_HTTP").is_some(),
        }
    }

    /// Applies one option: anthill's own, or an `object_store` S3 setting.
    fn apply(&mut self, key: &str, value: &str) -> Result<(), Error> {
        let key = key.trim().to_ascii_lowercase();
        if self.apply_own(&key, value)? {
            return Ok(());
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
            AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp) => self.allow_http_given = true,
            _ => {}
        }
        self.builder = std::mem::take(&mut self.builder).with_config(config_key, value);
        Ok(())
    }

    /// Applies `key` if it is one of anthill's own options; `false` if not.
    fn apply_own(&mut self, key: &str, value: &str) -> Result<bool, Error> {
        match key {
            S3_MAX_RETRIES => {
                self.retry.max_retries = value.trim().parse().map_err(|_| {
                    invalid(format!(
                        "S3 option max_retries={value:?} is not a whole number"
                    ))
                })?;
            }
            S3_RETRY_TIMEOUT => self.retry.retry_timeout = seconds(key, value)?,
            S3_CONDITIONAL_WRITES => {
                self.lease.conditional_writes =
                    ConditionalWrites::parse(value).ok_or_else(|| {
                        invalid(format!(
                            "S3 option conditional_writes={value:?} is not auto, true or false"
                        ))
                    })?;
            }
            S3_LEASE_TTL => {
                self.lease.ttl = seconds(key, value)?;
                if self.lease.ttl < Duration::from_secs(1) {
                    return Err(invalid(format!(
                        "S3 option lease_ttl_secs={value:?} is below 1 second"
                    )));
                }
            }
            S3_LOCK_WAIT => self.lease.wait_limit = seconds(key, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The endpoint from any source (the environment included), checked;
    /// an `http://` one allows plain HTTP unless `allow_http` was given.
    fn endpoint(&mut self) -> Result<Option<String>, Error> {
        let endpoint = self
            .builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .filter(|endpoint| !endpoint.is_empty());
        let Some(endpoint) = endpoint else {
            return Ok(None);
        };
        if redact_userinfo(&endpoint) != endpoint {
            // S3 signs requests with the access key; a user:password@ in the
            // endpoint would only end up in every request URL and error text.
            return Err(invalid(format!(
                "the S3 endpoint {} carries a user name or password: give credentials as \
                 access_key_id and secret_access_key instead",
                redact_userinfo(&endpoint)
            )));
        }
        let plain_http = endpoint.to_ascii_lowercase().starts_with("http://");
        let allow_http = self
            .builder
            .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp));
        // object_store's reading of the value: anything else is false.
        let truthy = |value: &str| {
            ["true", "1", "on", "yes", "y"].contains(&value.trim().to_ascii_lowercase().as_str())
        };
        if plain_http
            && self.allow_http_given
            && allow_http.is_some_and(|value| !truthy(value.as_str()))
        {
            return Err(invalid(format!(
                "the S3 endpoint {} is plain http:// but allow_http is false: use an \
                 https:// endpoint, or allow_http=true",
                redact_userinfo(&endpoint)
            )));
        }
        if !self.allow_http_given && plain_http {
            // Asking for an http:// endpoint is asking for plain HTTP.
            self.builder = std::mem::take(&mut self.builder).with_allow_http(true);
        }
        Ok(Some(endpoint))
    }
}

/// The option `key`'s `value` as a duration in seconds.
fn seconds(key: &str, value: &str) -> Result<Duration, Error> {
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
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid(message)
}
