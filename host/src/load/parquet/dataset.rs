//! The dataset's store as a load uses it (naming, JSON records, deletes), and rows to
//! Hive partition directories.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::Array;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, TimeDelta, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{INTENT, NULL_PARTITION, STAGING};
use crate::load::LoadError;

/// How long another load's staged files must have gone untouched before a load deletes them.
const ABANDONED_AFTER: TimeDelta = TimeDelta::hours(24);

/// The store and the sink's name for errors. Unlike a load (whose writers are not `Sync`),
/// it can be borrowed across awaits.
#[derive(Clone)]
pub(super) struct Dataset {
    pub(super) sink: String,
    pub(super) store: Arc<dyn ObjectStore>,
    /// Bytes per part of an upload, and parts in flight (see [`Store`]).
    pub(super) part_size: usize,
    pub(super) upload_concurrency: usize,
    /// The local dataset directory, to remove the empty staging directories that object
    /// store deletes leave behind.
    pub(super) root: Option<PathBuf>,
}

impl Dataset {
    pub(super) fn err(&self, action: &str, cause: object_store::Error) -> LoadError {
        LoadError::Store {
            sink: self.sink.clone(),
            action: action.to_owned(),
            cause,
        }
    }

    pub(super) fn path(&self, name: &str) -> Result<Path, LoadError> {
        Path::parse(name).map_err(|e| self.err(&format!("naming {name}"), e.into()))
    }

    pub(super) fn staged(&self, load_id: &str, name: &str) -> Result<Path, LoadError> {
        self.path(&format!("{STAGING}/{load_id}/{name}"))
    }

    pub(super) async fn put_json(
        &self,
        path: &Path,
        value: &serde_json::Value,
        action: &str,
    ) -> Result<(), LoadError> {
        let payload = PutPayload::from(serde_json::to_vec_pretty(value).expect("json serializes"));
        self.store
            .put(path, payload)
            .await
            .map(drop)
            .map_err(|e| self.err(action, e))
    }

    /// Deletes every object under `prefix`; a missing object is not an error.
    pub(super) async fn delete_prefix(&self, prefix: &Path) -> Result<(), LoadError> {
        let listed = self.store.list(Some(prefix)).try_collect::<Vec<_>>().await;
        let listed = listed.map_err(|e| self.err("listing", e))?;
        for object in &listed {
            self.delete(&object.location).await?;
        }
        Ok(())
    }

    pub(super) async fn delete(&self, path: &Path) -> Result<(), LoadError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(&format!("deleting {path}"), e)),
        }
    }

    /// Clears the staging area as a load begins, from one listing of it:
    /// - this load's files from an earlier attempt, which it rewrites, all but its commit
    ///   intent (`intent`), which its replay needs;
    /// - other loads' files that were dropped before their commit began (no intent) and that
    ///   nothing has touched for [`ABANDONED_AFTER`]: a load a crash stopped, whose replay
    ///   never came because the next load read something else (new files; a source without
    ///   fingerprints). A replay would rewrite them anyway. A load with an intent keeps its
    ///   staging area: its replay needs the intent.
    pub(super) async fn clear_staging(
        &self,
        this_load: &str,
        intent: &Path,
    ) -> Result<(), LoadError> {
        let listed = self.store.list(Some(&Path::from(STAGING)));
        let listed = listed.try_collect::<Vec<_>>().await;
        let listed = listed.map_err(|e| self.err("listing the staging area", e))?;
        let load_of = |location: &Path| location.parts().nth(1).map(|p| p.as_ref().to_string());
        // Per other load: its newest object, and whether it holds a commit intent.
        let mut others: HashMap<String, (DateTime<Utc>, bool)> = HashMap::new();
        for object in &listed {
            let Some(load_id) = load_of(&object.location) else {
                continue;
            };
            if load_id == this_load {
                if &object.location != intent {
                    self.delete(&object.location).await?;
                }
                continue;
            }
            let load = others
                .entry(load_id)
                .or_insert((object.last_modified, false));
            load.0 = load.0.max(object.last_modified);
            load.1 |= object.location.filename() == Some(INTENT);
        }
        let cutoff = Utc::now() - ABANDONED_AFTER;
        others.retain(|_, (newest, intent)| !*intent && *newest < cutoff);
        for object in &listed {
            if load_of(&object.location).is_some_and(|id| others.contains_key(&id)) {
                self.delete(&object.location).await?;
            }
        }
        for load_id in others.keys() {
            tracing::info!(
                sink = self.sink,
                load_id,
                "deleted an abandoned load's staged files"
            );
            self.remove_staging_dir(load_id).await;
        }
        Ok(())
    }

    /// Removes a load's staging directory from a local dataset: the moves leave it empty
    /// but present (object stores have no directories to remove).
    pub(super) async fn remove_staging_dir(&self, load_id: &str) {
        if let Some(root) = &self.root {
            // Best effort: a leftover empty directory is harmless, not worth failing for.
            let _ = tokio::fs::remove_dir_all(root.join(STAGING).join(load_id)).await;
            let _ = tokio::fs::remove_dir(root.join(STAGING)).await;
        }
    }
}

/// Row indices grouped by partition directory (`col=value`), in order of first appearance.
pub(super) fn partition_rows(
    sink: &str,
    column: &str,
    array: &dyn Array,
) -> Result<Vec<(String, Vec<u32>)>, LoadError> {
    let formatter = ArrayFormatter::try_new(array, &FormatOptions::default());
    let bad = |e| {
        load_err!(
            Schema,
            sink,
            "partition column `{column}` as directory name: {e}"
        )
    };
    let formatter = formatter.map_err(bad)?;
    let prefix = format!("{}=", escape(column));
    let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
    let add = |groups: &mut Vec<(String, Vec<u32>)>, dir: &str| {
        groups.push((format!("{prefix}{dir}"), Vec::new()));
        groups.len() - 1
    };
    let (mut by_value, mut null_group) = (HashMap::<String, usize>::new(), None);
    let mut value = String::new();
    for row in 0..array.len() {
        let group = if array.is_null(row) {
            *null_group.get_or_insert_with(|| add(&mut groups, NULL_PARTITION))
        } else {
            value.clear();
            write!(value, "{}", formatter.value(row)).expect("writing to a string");
            // Looked up by `&str`: only a new value costs an allocation.
            match by_value.get(value.as_str()) {
                Some(group) => *group,
                None => *by_value
                    .entry(value.clone())
                    .or_insert(add(&mut groups, &escape(&value))),
            }
        };
        groups[group].1.push(row as u32);
    }
    Ok(groups)
}

/// Hive's path escaping (`%XX` for the characters Hive escapes), plus the characters object
/// stores advise against, so a value can never add a directory level or a `..` segment.
pub fn escape(value: &str) -> String {
    if value == "." || value == ".." {
        return value.replace('.', "%2E");
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c.is_ascii_control() || "\"#%'*/:=?\\{}[]^|<>~`".contains(c) {
            true => write!(out, "%{:02X}", c as u32).expect("writing to a string"),
            false => out.push(c),
        }
    }
    out
}
