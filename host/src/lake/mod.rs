//! Lake zones and their retention: `host lake gc` deletes a zone's objects older than a
//! cutoff.
//!
//! An object's age is the date in its `load_date=YYYY-MM-DD` partition (the raw zone's
//! layout, `<raw>/<pipeline>/load_date=…/`), else its last modification. A dataset's load
//! marker (`_weir_loads/<load_id>.json`) goes with the last of the files it lists, so a
//! marker never outlives its data and never goes before it. Staging areas of loads in
//! flight (`_weir_staging/`) are never touched.

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::config::types::S3Settings;
use crate::store::{self, Access, Location, StoreError};

const MARKERS: &str = "_weir_loads";
const STAGING: &str = "_weir_staging";
const DATE_PARTITION: &str = "load_date=";

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error(transparent)]
    Open(#[from] StoreError),
    #[error("zone root {root}: {}", store::describe(source))]
    Store {
        root: String,
        #[source]
        source: object_store::Error,
    },
    #[error("`{0}` is not an age: write a number and a unit, `90d` (days) or `12h` (hours)")]
    Age(String),
}

/// One object gc deletes (or would delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doomed {
    /// Relative to the zone root.
    pub path: String,
    pub size: u64,
    /// Why it is old enough: `load_date 2024-01-01` or `modified 2024-01-01T…`.
    pub age: String,
}

/// `90d` or `12h` as a duration.
pub fn parse_age(text: &str) -> Result<chrono::Duration, LakeError> {
    let error = || LakeError::Age(text.to_string());
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| error())?;
    match unit {
        "d" => chrono::Duration::try_days(n),
        "h" => chrono::Duration::try_hours(n),
        _ => None,
    }
    .filter(|_| n >= 0)
    .ok_or_else(error)
}

/// The objects under the zone `root` (a directory or `s3://bucket/prefix`; S3 settings from
/// the `AWS_*` variables) older than `cutoff`; deleted unless `dry_run`.
pub async fn gc(
    root: &str,
    cutoff: DateTime<Utc>,
    dry_run: bool,
) -> Result<Vec<Doomed>, LakeError> {
    let location = Location::parse(root, Path::new("."))?;
    if matches!(&location, Location::Local(dir) if !dir.is_dir()) {
        return Ok(Vec::new()); // nothing was ever written to the zone
    }
    let store_error = |source| LakeError::Store {
        root: root.to_string(),
        source,
    };
    let store = store::open(&location, &S3Settings::default(), Access::Read)?.store;
    let objects: Vec<ObjectMeta> = store.list(None).try_collect().await.map_err(store_error)?;
    let is_marker = |p: &str| p.split('/').any(|s| s == MARKERS);
    let mut doomed: Vec<Doomed> = objects
        .iter()
        .filter(|o| {
            let path = o.location.as_ref();
            !is_marker(path) && !path.split('/').any(|s| s == STAGING)
        })
        .filter_map(|o| {
            let (when, age) = age_of(o);
            (when < cutoff).then(|| Doomed {
                path: o.location.to_string(),
                size: o.size,
                age,
            })
        })
        .collect();
    let gone: HashSet<&str> = doomed.iter().map(|d| d.path.as_str()).collect();
    let present: HashSet<&str> = objects.iter().map(|o| o.location.as_ref()).collect();
    let mut markers = Vec::new();
    for marker in objects.iter().filter(|o| is_marker(o.location.as_ref())) {
        let files = marker_files(store.as_ref(), marker)
            .await
            .map_err(store_error)?;
        let all_gone = files
            .iter()
            .all(|f| gone.contains(f.as_str()) || !present.contains(f.as_str()));
        if !files.is_empty() && all_gone {
            markers.push(Doomed {
                path: marker.location.to_string(),
                size: marker.size,
                age: "its files are deleted".into(),
            });
        }
    }
    doomed.extend(markers);
    if !dry_run {
        // Data first, markers last: a marker is never left pointing at missing files
        // because it went first.
        for object in &doomed {
            let location = ObjectPath::from(object.path.as_str());
            match store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e)),
            }
        }
    }
    Ok(doomed)
}

/// The date in a `load_date=` partition, else the last modification.
fn age_of(object: &ObjectMeta) -> (DateTime<Utc>, String) {
    let partition = object
        .location
        .as_ref()
        .split('/')
        .find_map(|s| s.strip_prefix(DATE_PARTITION))
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    match partition {
        Some(date) => (
            date.and_hms_opt(0, 0, 0).expect("midnight").and_utc(),
            format!("load_date {date}"),
        ),
        None => (
            object.last_modified,
            format!(
                "modified {}",
                object.last_modified.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        ),
    }
}

/// The files a load marker lists, relative to the zone root.
async fn marker_files(
    store: &dyn ObjectStore,
    marker: &ObjectMeta,
) -> Result<Vec<String>, object_store::Error> {
    let bytes = store.get(&marker.location).await?.bytes().await?;
    let dataset = marker
        .location
        .as_ref()
        .split_once(&format!("{MARKERS}/"))
        .map_or("", |(dataset, _)| dataset);
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(json["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["path"].as_str())
        .map(|p| format!("{dataset}{p}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::parse_age;

    #[test]
    fn ages_are_days_or_hours() {
        assert_eq!(parse_age("90d").unwrap(), chrono::Duration::days(90));
        assert_eq!(parse_age("12h").unwrap(), chrono::Duration::hours(12));
        for bad in ["90", "d", "-1d", "3w", ""] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
