//! Parquet sink: a Hive-partitioned dataset (`<col>=<value>/part-<load_id>-<n>.parquet`) on an
//! object store: a local directory or an S3 bucket prefix (see [`crate::store`]).
//!
//! A load streams each partition's rows into staged objects under `_weir_staging/<load_id>/`.
//! Commit finishes them, records the final names in `_weir_staging/<load_id>/_commit.json`,
//! moves every staged object to its final name, deletes what the load replaces, and writes
//! the marker `_weir_loads/<load_id>.json` LAST: a load without marker is not committed, and
//! its replay rewrites the same deterministic names, so a crash anywhere in commit ends, after
//! the replay, in the state of a clean load. (Objects appear one by one during the moves: an
//! object store has no multi-object atomic rename; readers that need the exact committed set
//! read the markers.) Directories starting with `_` are ignored by Hive-style readers.
//!
//! On S3 the same steps hold without a rename: a move is a server-side copy then a delete
//! (object_store's `rename`), and every object appears whole — a single PUT, or a multipart
//! upload that S3 shows only once it completes — so a reader never sees half a file. A move
//! interrupted between copy and delete leaves the staged copy, which the replay rewrites and
//! then deletes. The marker is written with put-if-absent: a committed load's marker is never
//! rewritten, and of two attempts committing the same load only one writes it.
//!
//! A load dropped before its commit began (a crash) leaves its staged files; its replay
//! rewrites them. When no replay comes (the next load read something else), a later load
//! deletes them once they are a day old, unless they hold a commit intent.

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{LoadError, LoadMode, LoadSpec, PROVENANCE_PREFIX, Sink, SinkLoad, data_schema};
use crate::config::types::S3Settings;
use crate::store::{self, Access, Location, Store};

mod dataset;
mod encoding;
mod load;

use dataset::Dataset;
use load::ParquetLoad;

/// Rows a file holds at most (`rows_per_file`); a batch that would overflow a file is split.
pub const DEFAULT_ROWS_PER_FILE: u64 = 1_000_000;
/// Files written at once; past this the least recently used one is finished (each open
/// file holds a row group and an upload buffer in memory).
const MAX_OPEN_FILES: usize = 16;
const ROW_GROUP_ROWS: usize = 64 * 1024;
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";
const STAGING: &str = "_weir_staging";

pub struct ParquetSink {
    io: Dataset,
    partition_by: Option<String>,
    replace: bool,
    rows_per_file: u64,
}

impl ParquetSink {
    /// A dataset in the local directory `root` (created if missing).
    pub fn new(
        name: &str,
        root: &FsPath,
        partition_by: Option<String>,
        mode: LoadMode,
    ) -> Result<ParquetSink, LoadError> {
        let location = Location::Local(root.to_owned());
        Self::open(name, &location, &S3Settings::default(), partition_by, mode)
    }

    /// A dataset at `location`: a local directory (created if missing) or an S3 prefix.
    pub fn open(
        name: &str,
        location: &Location,
        s3: &S3Settings,
        partition_by: Option<String>,
        mode: LoadMode,
    ) -> Result<ParquetSink, LoadError> {
        let store = store::open(location, s3, Access::Write).map_err(|cause| LoadError::Open {
            sink: name.into(),
            cause,
        })?;
        Self::with_store(name, store, partition_by, mode)
    }

    /// A dataset at the root of `store`.
    pub fn with_store(
        name: &str,
        store: Store,
        partition_by: Option<String>,
        mode: LoadMode,
    ) -> Result<ParquetSink, LoadError> {
        let (partition_by, replace) = match mode {
            LoadMode::Append => (partition_by, false),
            LoadMode::ReplacePartition { column } => match partition_by {
                Some(p) if p != column => {
                    let need = format!("needs partition_by = `{column}`, not `{p}`");
                    return Err(load_err!(Config, name, "replace_partition {need}"));
                }
                _ => (Some(column), true),
            },
            LoadMode::Merge { .. } => {
                let message = "use append or replace_partition";
                let message = format!("merge is not supported by the parquet sink; {message}");
                return Err(load_err!(Config, name, "{message}"));
            }
        };
        if let Some(p) = partition_by.as_deref()
            && p.starts_with(PROVENANCE_PREFIX)
        {
            return Err(load_err!(Config, name, "cannot partition by dropped `{p}`"));
        }
        let io = Dataset {
            sink: name.to_owned(),
            store: store.store,
            part_size: store.part_size,
            upload_concurrency: store.upload_concurrency,
            root: store.local_dir,
        };
        let rows_per_file = DEFAULT_ROWS_PER_FILE;
        Ok(ParquetSink {
            io,
            partition_by,
            replace,
            rows_per_file,
        })
    }

    /// Start a new file every `rows` rows of a partition (default [`DEFAULT_ROWS_PER_FILE`]).
    pub fn with_rows_per_file(mut self, rows: u64) -> ParquetSink {
        self.rows_per_file = rows.max(1);
        self
    }
}

#[async_trait]
impl Sink for ParquetSink {
    fn name(&self) -> &str {
        &self.io.sink
    }

    async fn is_committed(&self, load_id: &str) -> Result<bool, LoadError> {
        // The id becomes part of object names: keep it to characters that need no escaping.
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if load_id.is_empty() || load_id.starts_with('.') || !load_id.chars().all(allowed) {
            let rule = "must be ASCII letters, digits, `-`, `_` or `.`";
            return Err(load_err!(
                Config,
                self.io.sink,
                "load id {load_id:?} {rule}"
            ));
        }
        match self.io.store.head(&marker_path(load_id)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(self.io.err("reading the load marker", source)),
        }
    }

    async fn begin(&self, load: &LoadSpec) -> Result<Option<Box<dyn SinkLoad>>, LoadError> {
        if self.is_committed(&load.load_id).await? {
            return Ok(None);
        }
        let data = data_schema(&load.schema);
        let mut partition = None;
        let mut file_schema = data.clone();
        if let Some(column) = &self.partition_by {
            let Ok(index) = data.index_of(column) else {
                let message = "is not a column of the load";
                return Err(load_err!(
                    Config,
                    self.io.sink,
                    "partition `{column}` {message}"
                ));
            };
            // The partition column lives in the directory names, not in the files.
            let keep: Vec<usize> = (0..data.fields().len()).filter(|i| *i != index).collect();
            file_schema = Arc::new(data.project(&keep).expect("indices in range"));
            partition = Some((index, column.clone()));
        }
        // An earlier attempt of this load may have moved objects before it stopped: its
        // intent names them, so they can be removed if this attempt does not rewrite them.
        let intent = intent_path(&load.load_id);
        let stale = match self.io.store.get(&intent).await {
            Ok(found) => found.bytes().await.map(|b| serde_json::from_slice(&b).ok()),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        let stale = stale.map_err(|e| self.io.err("reading the previous attempt's intent", e))?;
        // Staged files of an earlier attempt are rewritten: start from an empty staging area.
        self.io.clear_staging(&load.load_id, &intent).await?;
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY);
        let props = props.set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        Ok(Some(Box::new(ParquetLoad {
            io: self.io.clone(),
            load_id: load.load_id.clone(),
            pipeline: load.pipeline.clone(),
            replace: self.replace,
            rows_per_file: self.rows_per_file,
            data,
            file_schema,
            partition,
            partitions: Vec::new(),
            by_dir: HashMap::new(),
            staged: Vec::new(),
            stale: stale.unwrap_or_default(),
            rows: 0,
            tick: 0,
            props: props.build(),
            failed: false,
        })))
    }
}

fn marker_path(load_id: &str) -> Path {
    Path::from_iter(["_weir_loads", &format!("{load_id}.json")])
}

/// The commit intent's file name in a load's staging area.
const INTENT: &str = "_commit.json";

fn staging_path(load_id: &str) -> Path {
    Path::from_iter([STAGING, load_id])
}

fn intent_path(load_id: &str) -> Path {
    Path::from_iter([STAGING, load_id, INTENT])
}
