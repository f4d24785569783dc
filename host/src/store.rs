//! Which object store a path from the pipeline file means, and opening it: a local
//! directory, or an S3 bucket prefix (`s3://bucket/prefix`). Sources and sinks work on the
//! `ObjectStore` rooted at that location, so the same code reads and writes both.
//!
//! S3 settings: the `[s3]` table of the pipeline file, then the `AWS_*` environment
//! variables (as `AmazonS3Builder::from_env` reads them: `AWS_ENDPOINT_URL`, `AWS_REGION`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`, …),
//! then object_store's defaults (AWS itself, `us-east-1`, instance credentials).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

use crate::config::types::S3Settings;

pub const S3_SCHEME: &str = "s3://";

/// Bytes a local upload buffers before writing a part (every open file holds one buffer).
const LOCAL_PART_SIZE: usize = 1 << 20;
/// S3 refuses multipart parts under 5 MiB (all but the last); files smaller than one part
/// go up in a single PUT.
const S3_PART_SIZE: usize = 5 << 20;

/// Where a dataset or a source's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    /// `prefix` without leading or trailing `/` (empty: the bucket's root).
    S3 {
        bucket: String,
        prefix: String,
    },
}

/// Each message carries its cause's text, so no cause is also a `source()` (`{:#}` would
/// print it twice).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{url}` is not a valid S3 location: {message} (expected s3://BUCKET/PREFIX)")]
    Url { url: String, message: String },
    #[error("creating the directory {}: {cause}", path.display())]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("opening {location}: {}", describe(cause))]
    Open {
        location: String,
        cause: object_store::Error,
    },
    #[error(
        "opening {location}: the S3 endpoint `{endpoint}` is plain HTTP; set `allow_http = true` in [s3] (or AWS_ALLOW_HTTP=true) to allow it"
    )]
    PlainHttp { location: String, endpoint: String },
}

impl Location {
    /// A path as written in the pipeline file: `s3://…`, or a local path relative to
    /// `base_dir`.
    pub fn parse(written: &str, base_dir: &Path) -> Result<Location, StoreError> {
        let Some(rest) = written.strip_prefix(S3_SCHEME) else {
            return Ok(Location::Local(base_dir.join(written)));
        };
        let bad = |message: &str| StoreError::Url {
            url: written.to_string(),
            message: message.to_string(),
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket naming rules, reduced to what keeps a name usable in a path-style URL.
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c);
        if !(3..=63).contains(&bucket.len()) || !bucket.chars().all(valid) {
            return Err(bad(
                "the bucket name must be 3 to 63 lowercase letters, digits, `-` or `.`",
            ));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(bad("the key prefix has an empty, `.` or `..` segment"));
        }
        Ok(Location::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3 { bucket, prefix } => write!(f, "{S3_SCHEME}{bucket}/{prefix}"),
        }
    }
}

/// A store rooted at a [`Location`].
#[derive(Clone)]
pub struct Store {
    pub store: Arc<dyn ObjectStore>,
    /// Bytes per part of a multipart upload (and what an upload buffers before its first).
    pub part_size: usize,
    /// Parts of one upload in flight at once: memory per open upload is about
    /// `part_size * (1 + concurrency)`.
    pub upload_concurrency: usize,
    /// The directory of a local store (object store deletes leave empty directories behind
    /// that only the file system can remove).
    pub local_dir: Option<PathBuf>,
}

/// Whether a local location must exist already (a source) or is created (a sink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Opens `location`. Nothing is contacted yet: a bad endpoint or credential shows in the
/// first request.
pub fn open(location: &Location, s3: &S3Settings, access: Access) -> Result<Store, StoreError> {
    match location {
        Location::Local(dir) => open_local(dir, access),
        Location::S3 { bucket, prefix } => {
            let store = s3_builder(s3, bucket);
            let (endpoint, allow_http) = (
                store.get_config_value(&AmazonS3ConfigKey::Endpoint),
                store.get_config_value(&AmazonS3ConfigKey::Client(
                    object_store::ClientConfigKey::AllowHttp,
                )),
            );
            if let Some(endpoint) = endpoint
                && endpoint.starts_with("http://")
                && !allow_http.as_deref().is_some_and(truthy)
            {
                let location = location.to_string();
                return Err(StoreError::PlainHttp { location, endpoint });
            }
            let store = store.build().map_err(|cause| StoreError::Open {
                location: location.to_string(),
                cause,
            })?;
            let store: Arc<dyn ObjectStore> = match prefix.as_str() {
                "" => Arc::new(store),
                prefix => Arc::new(PrefixStore::new(store, prefix)),
            };
            Ok(Store {
                store,
                part_size: S3_PART_SIZE,
                upload_concurrency: 2,
                local_dir: None,
            })
        }
    }
}

/// An object store error in one line a user can act on: object_store's message (it names
/// the request) and the root cause it wraps (`Connection refused`, say) — not the chain of
/// wrappers in between, which repeat the message — and what to check.
pub fn describe(error: &object_store::Error) -> String {
    use object_store::Error as E;
    let mut text = error.to_string();
    let mut chain = text.clone();
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
        chain.push_str(&cause.to_string());
    }
    let root = cause.to_string();
    if !text.contains(&root) {
        text = format!("{text}: {root}");
    }
    let hint = match error {
        E::Unauthenticated { .. } | E::PermissionDenied { .. } => {
            " (check the credentials: [s3] access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        }
        // reqwest's words for a request that never got a response.
        _ if chain.contains("error sending request") => {
            " (the server could not be reached: check [s3] endpoint or AWS_ENDPOINT_URL, and that the server is up)"
        }
        _ => "",
    };
    text + hint
}

/// A boolean setting as object_store parses it (`AWS_ALLOW_HTTP=1` counts).
fn truthy(value: &str) -> bool {
    ["1", "true", "on", "yes", "y"].contains(&value.to_ascii_lowercase().as_str())
}

fn open_local(dir: &Path, access: Access) -> Result<Store, StoreError> {
    let open_error = |cause| StoreError::Open {
        location: dir.display().to_string(),
        cause,
    };
    let store = match access {
        Access::Read => LocalFileSystem::new_with_prefix(dir).map_err(open_error)?,
        Access::Write => {
            std::fs::create_dir_all(dir).map_err(|cause| StoreError::CreateDir {
                path: dir.to_owned(),
                cause,
            })?;
            let store = LocalFileSystem::new_with_prefix(dir).map_err(open_error)?;
            store.with_automatic_cleanup(true).with_fsync(true)
        }
    };
    Ok(Store {
        store: Arc::new(store),
        part_size: LOCAL_PART_SIZE,
        upload_concurrency: 8,
        local_dir: Some(dir.to_owned()),
    })
}

/// The environment's `AWS_*` settings, overridden by the pipeline file's `[s3]`.
fn s3_builder(s3: &S3Settings, bucket: &str) -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let settings = [
        (AmazonS3ConfigKey::Endpoint, s3.endpoint.clone()),
        (AmazonS3ConfigKey::Region, s3.region.clone()),
        (AmazonS3ConfigKey::AccessKeyId, s3.access_key_id.clone()),
        (
            AmazonS3ConfigKey::SecretAccessKey,
            s3.secret_access_key.clone(),
        ),
        (AmazonS3ConfigKey::Token, s3.session_token.clone()),
        (
            AmazonS3ConfigKey::VirtualHostedStyleRequest,
            s3.virtual_hosted_style.map(|b| b.to_string()),
        ),
        (
            AmazonS3ConfigKey::Client(object_store::ClientConfigKey::AllowHttp),
            s3.allow_http.map(|b| b.to_string()),
        ),
        // A humantime string, as object_store parses it (validation has checked it).
        (
            AmazonS3ConfigKey::Client(object_store::ClientConfigKey::Timeout),
            s3.timeout.clone(),
        ),
    ];
    for (key, value) in settings {
        if let Some(value) = value {
            builder = builder.with_config(key, value);
        }
    }
    // object_store's default keeps retrying for up to 3 minutes; the run has its own retry
    // policy (`[retry]`) around each attempt, so a few quick retries here ride out a
    // throttled request without hiding a wrong endpoint for minutes.
    builder.with_retry(RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_and_local_paths() {
        let base = Path::new("/project/pipelines");
        let s3 = |bucket: &str, prefix: &str| Location::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        };
        let parse = |written| Location::parse(written, base).unwrap();
        assert_eq!(parse("s3://my-lake/orders/"), s3("my-lake", "orders"));
        assert_eq!(parse("s3://my-lake/a/b"), s3("my-lake", "a/b"));
        assert_eq!(parse("s3://my-lake"), s3("my-lake", ""));
        assert_eq!(parse("s3://my-lake/a/b").to_string(), "s3://my-lake/a/b");
        assert_eq!(
            parse("lake/orders"),
            Location::Local(base.join("lake/orders"))
        );
        for bad in [
            "s3://",
            "s3://ab/x",
            "s3://My_Bucket/x",
            "s3://lake/a//b",
            "s3://lake/../b",
        ] {
            assert!(Location::parse(bad, base).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_needs_allowing() {
        let location = Location::S3 {
            bucket: "lake".into(),
            prefix: String::new(),
        };
        let mut settings = S3Settings {
            endpoint: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        // (Unless the environment running the tests allows it already.)
        if std::env::var_os("AWS_ALLOW_HTTP").is_none() {
            let refused = open(&location, &settings, Access::Read).err().unwrap();
            assert!(matches!(refused, StoreError::PlainHttp { .. }), "{refused}");
        }
        settings.allow_http = Some(true);
        let store = open(&location, &settings, Access::Read).unwrap();
        assert_eq!(store.part_size, S3_PART_SIZE);
    }
}
