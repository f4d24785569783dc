//! Parquet sink: a Hive-partitioned dataset (`<col>=<value>/part-<load_id>-<n>.parquet`) on an
//! object store (today the local file system; any `ObjectStore` works).
//!
//! A load streams each partition's rows into staged objects under `_weir_staging/<load_id>/`.
//! Commit finishes them, records the final names in `_weir_staging/<load_id>/_commit.json`,
//! moves every staged object to its final name, deletes what the load replaces, and writes
//! the marker `_weir_loads/<load_id>.json` LAST: a load without marker is not committed, and
//! its replay rewrites the same deterministic names, so a crash anywhere in commit ends, after
//! the replay, in the state of a clean load. (Objects appear one by one during the moves: an
//! object store has no multi-object atomic rename; readers that need the exact committed set
//! read the markers.) Directories starting with `_` are ignored by Hive-style readers.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::json;

use super::{
    LoadError, LoadMode, LoadSpec, PROVENANCE_PREFIX, Sink, SinkLoad, data_schema, project,
};

/// Rows per file before the next file of the partition starts.
pub const DEFAULT_ROWS_PER_FILE: u64 = 1_000_000;
/// Partitions written at once; past this the least recently used file is finished (each
/// open file holds a row group and an upload buffer in memory).
const MAX_OPEN_FILES: usize = 16;
const ROW_GROUP_ROWS: usize = 128 * 1024;
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";
const STAGING: &str = "_weir_staging";
const MARKERS: &str = "_weir_loads";

pub struct ParquetSink {
    dataset: Dataset,
    partition_by: Option<String>,
    replace: bool,
    rows_per_file: u64,
}

impl ParquetSink {
    /// A dataset in the directory `root` (created if missing).
    pub fn new(
        name: &str,
        root: &FsPath,
        partition_by: Option<String>,
        mode: LoadMode,
    ) -> Result<ParquetSink, LoadError> {
        std::fs::create_dir_all(root).map_err(|source| LoadError::Io {
            sink: name.to_owned(),
            action: format!("creating the dataset directory {}", root.display()),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(root)
            .map_err(|source| LoadError::Store {
                sink: name.to_owned(),
                action: format!("opening {}", root.display()),
                source,
            })?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        let mut sink = Self::with_store(name, Arc::new(store), partition_by, mode)?;
        sink.dataset.root = Some(root.to_owned());
        Ok(sink)
    }

    /// A dataset at the root of `store` (e.g. an S3 bucket prefix).
    pub fn with_store(
        name: &str,
        store: Arc<dyn ObjectStore>,
        partition_by: Option<String>,
        mode: LoadMode,
    ) -> Result<ParquetSink, LoadError> {
        let config = |message: String| LoadError::Config {
            sink: name.to_owned(),
            message,
        };
        let (partition_by, replace) = match mode {
            LoadMode::Append => (partition_by, false),
            LoadMode::ReplacePartition { column } => match partition_by {
                Some(p) if p != column => {
                    return Err(config(format!(
                        "replace_partition on `{column}` needs partition_by = `{column}` (it is `{p}`)"
                    )));
                }
                _ => (Some(column), true),
            },
            LoadMode::Merge { .. } => {
                return Err(config(
                    "merge is not supported by the parquet sink; use append or replace_partition"
                        .into(),
                ));
            }
        };
        if let Some(p) = partition_by
            .as_deref()
            .filter(|p| p.starts_with(PROVENANCE_PREFIX))
        {
            return Err(config(format!(
                "cannot partition by `{p}`: `_weir_` columns are never written"
            )));
        }
        Ok(ParquetSink {
            dataset: Dataset {
                sink: name.to_owned(),
                store,
                root: None,
            },
            partition_by,
            replace,
            rows_per_file: DEFAULT_ROWS_PER_FILE,
        })
    }

    /// Start a new file every `rows` rows of a partition (default [`DEFAULT_ROWS_PER_FILE`]).
    pub fn with_rows_per_file(mut self, rows: u64) -> ParquetSink {
        self.rows_per_file = rows.max(1);
        self
    }
}

fn marker_path(load_id: &str) -> Path {
    Path::from_iter([MARKERS, &format!("{load_id}.json")])
}

fn staging_path(load_id: &str) -> Path {
    Path::from_iter([STAGING, load_id])
}

fn intent_path(load_id: &str) -> Path {
    Path::from_iter([STAGING, load_id, "_commit.json"])
}

#[async_trait]
impl Sink for ParquetSink {
    fn name(&self) -> &str {
        &self.dataset.sink
    }

    async fn is_committed(&self, load_id: &str) -> Result<bool, LoadError> {
        check_load_id(&self.dataset.sink, load_id)?;
        match self.dataset.store.head(&marker_path(load_id)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(self.dataset.err("reading the load marker", source)),
        }
    }

    async fn begin(&self, load: &LoadSpec) -> Result<Option<Box<dyn SinkLoad>>, LoadError> {
        if self.is_committed(&load.load_id).await? {
            return Ok(None);
        }
        let data = data_schema(&load.schema);
        let partition = match &self.partition_by {
            Some(column) => Some(data.index_of(column).map_err(|_| LoadError::Config {
                sink: self.dataset.sink.clone(),
                message: format!("partition column `{column}` is not a column of the load"),
            })?),
            None => None,
        };
        // The partition column lives in the directory names, not in the files.
        let file_schema = match partition {
            Some(index) => {
                let keep: Vec<usize> = (0..data.fields().len()).filter(|i| *i != index).collect();
                Arc::new(data.project(&keep).expect("indices in range"))
            }
            None => data.clone(),
        };
        let io = self.dataset.clone();
        // An earlier attempt of this load may have moved objects before it stopped: its
        // intent names them, so they can be removed if this attempt does not rewrite them.
        let intent = intent_path(&load.load_id);
        let stale = match io.store.get(&intent).await {
            Ok(found) => {
                let bytes = found
                    .bytes()
                    .await
                    .map_err(|e| io.err("reading the previous attempt's intent", e))?;
                serde_json::from_slice::<Vec<String>>(&bytes).unwrap_or_default()
            }
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(io.err("reading the previous attempt's intent", e)),
        };
        io.delete_prefix(&staging_path(&load.load_id), Some(&intent))
            .await?;
        Ok(Some(Box::new(ParquetLoad {
            io,
            load_id: load.load_id.clone(),
            pipeline: load.pipeline.clone(),
            replace: self.replace,
            rows_per_file: self.rows_per_file,
            data,
            file_schema,
            partition: partition.zip(self.partition_by.clone()),
            partitions: Vec::new(),
            by_dir: HashMap::new(),
            staged: Vec::new(),
            stale,
            rows: 0,
            tick: 0,
            failed: false,
            props: WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .build(),
        })))
    }
}

struct ParquetLoad {
    io: Dataset,
    load_id: String,
    pipeline: String,
    replace: bool,
    rows_per_file: u64,
    /// The columns written (provenance dropped), partition column included.
    data: SchemaRef,
    file_schema: SchemaRef,
    /// The partition column: its index in `data`, and its name.
    partition: Option<(usize, String)>,
    partitions: Vec<Partition>,
    by_dir: HashMap<String, usize>,
    /// Finished staged files, by final name (relative to the dataset root).
    staged: Vec<(String, u64)>,
    /// Final names an interrupted earlier attempt may have moved into place.
    stale: Vec<String>,
    rows: u64,
    tick: u64,
    props: WriterProperties,
    failed: bool,
}

struct Partition {
    /// `col=value`, or empty for an unpartitioned dataset.
    dir: String,
    files: usize,
    open: Option<OpenFile>,
}

struct OpenFile {
    writer: AsyncArrowWriter<BufWriter>,
    name: String,
    rows: u64,
    last_used: u64,
}

impl ParquetLoad {
    fn parquet_err(&self, source: parquet::errors::ParquetError) -> LoadError {
        LoadError::Parquet {
            sink: self.io.sink.clone(),
            source,
        }
    }

    async fn write_partition(&mut self, dir: String, batch: RecordBatch) -> Result<(), LoadError> {
        let index = match self.by_dir.get(&dir) {
            Some(index) => *index,
            None => {
                self.by_dir.insert(dir.clone(), self.partitions.len());
                self.partitions.push(Partition {
                    dir,
                    files: 0,
                    open: None,
                });
                self.partitions.len() - 1
            }
        };
        self.tick += 1;
        if self.partitions[index].open.is_none() {
            if self.partitions.iter().filter(|p| p.open.is_some()).count() >= MAX_OPEN_FILES {
                let oldest = (0..self.partitions.len())
                    .filter(|i| self.partitions[*i].open.is_some())
                    .min_by_key(|i| self.partitions[*i].open.as_ref().map(|f| f.last_used))
                    .expect("some file is open");
                self.finish_file(oldest).await?;
            }
            let partition = &mut self.partitions[index];
            let file = format!("part-{}-{}.parquet", self.load_id, partition.files);
            partition.files += 1;
            let name = if partition.dir.is_empty() {
                file
            } else {
                format!("{}/{file}", partition.dir)
            };
            let upload =
                BufWriter::new(self.io.store.clone(), self.io.staged(&self.load_id, &name)?);
            let writer = AsyncArrowWriter::try_new(
                upload,
                self.file_schema.clone(),
                Some(self.props.clone()),
            )
            .map_err(|e| self.parquet_err(e))?;
            self.partitions[index].open = Some(OpenFile {
                writer,
                name,
                rows: 0,
                last_used: 0,
            });
        }
        let file = self.partitions[index].open.as_mut().expect("opened above");
        file.writer
            .write(&batch)
            .await
            .map_err(|source| LoadError::Parquet {
                sink: self.io.sink.clone(),
                source,
            })?;
        file.rows += batch.num_rows() as u64;
        file.last_used = self.tick;
        if file.rows >= self.rows_per_file {
            self.finish_file(index).await?;
        }
        Ok(())
    }

    async fn finish_file(&mut self, index: usize) -> Result<(), LoadError> {
        if let Some(file) = self.partitions[index].open.take() {
            file.writer.close().await.map_err(|e| self.parquet_err(e))?;
            self.staged.push((file.name, file.rows));
        }
        Ok(())
    }

    async fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), LoadError> {
        let batch = project(&self.io.sink, batch, &self.data)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let Some((index, column)) = self.partition.clone() else {
            return self.write_partition(String::new(), batch).await;
        };
        let groups = partition_rows(&self.io.sink, &column, batch.column(index).as_ref())?;
        let keep: Vec<usize> = (0..batch.num_columns()).filter(|i| *i != index).collect();
        let body = batch.project(&keep).expect("indices in range");
        let single = groups.len() == 1;
        for (dir, rows) in groups {
            let part = if single {
                body.clone()
            } else {
                take_record_batch(&body, &UInt32Array::from(rows)).map_err(|e| {
                    LoadError::Schema {
                        sink: self.io.sink.clone(),
                        message: format!("splitting a batch by partition: {e}"),
                    }
                })?
            };
            self.write_partition(dir, part).await?;
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }
}

#[async_trait]
impl SinkLoad for ParquetLoad {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), LoadError> {
        // A failed write may have written part of a batch: such a load must not commit.
        if self.failed {
            return Err(super::failed_earlier(&self.io.sink));
        }
        let result = self.write_batch(batch).await;
        self.failed = result.is_err();
        result
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, LoadError> {
        if self.failed {
            return Err(super::failed_earlier(&self.io.sink));
        }
        for index in 0..self.partitions.len() {
            self.finish_file(index).await?;
        }
        // From here on only `Sync` parts are used: the writers are all closed.
        let ParquetLoad {
            io,
            load_id,
            pipeline,
            replace,
            partitions,
            staged,
            stale,
            rows,
            ..
        } = *self;
        let touched: Vec<String> = partitions
            .into_iter()
            .map(|p| p.dir)
            .filter(|d| replace && !d.is_empty())
            .collect();
        let finals: HashSet<&str> = staged.iter().map(|(name, _)| name.as_str()).collect();
        // The intent lists the stale names too, in case this attempt also stops halfway.
        let mut intent: Vec<&str> = finals.iter().copied().collect();
        intent.extend(
            stale
                .iter()
                .map(String::as_str)
                .filter(|s| !finals.contains(s)),
        );
        let payload = PutPayload::from(serde_json::to_vec(&intent).expect("strings serialize"));
        io.store
            .put(&intent_path(&load_id), payload)
            .await
            .map_err(|e| io.err("writing the commit intent", e))?;
        for (name, _) in &staged {
            let (from, to) = (io.staged(&load_id, name)?, io.path(name)?);
            io.store
                .rename(&from, &to)
                .await
                .map_err(|e| io.err(&format!("moving {name} into place"), e))?;
        }
        for name in stale.iter().filter(|s| !finals.contains(s.as_str())) {
            io.delete(&io.path(name)?).await?;
        }
        // replace_partition: whatever else the touched partitions hold is what this load replaces.
        for dir in &touched {
            let objects: Vec<_> = io
                .store
                .list(Some(&io.path(dir)?))
                .try_collect()
                .await
                .map_err(|e| io.err("listing a replaced partition", e))?;
            for object in objects
                .iter()
                .filter(|o| !finals.contains(o.location.as_ref()))
            {
                io.delete(&object.location).await?;
            }
        }
        io.delete_prefix(&staging_path(&load_id), None).await?;
        io.remove_staging_dir(&load_id).await;
        let objects: Vec<_> = staged
            .iter()
            .map(|(path, rows)| json!({ "path": path, "rows": rows }))
            .collect();
        let marker = json!({
            "load_id": load_id,
            "pipeline": pipeline,
            "rows": rows,
            "objects": objects,
            "committed_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        });
        let payload =
            PutPayload::from(serde_json::to_vec_pretty(&marker).expect("json serializes"));
        io.store
            .put(&marker_path(&load_id), payload)
            .await
            .map_err(|e| io.err("writing the load marker", e))?;
        Ok(rows)
    }

    async fn abort(mut self: Box<Self>) -> Result<(), LoadError> {
        for partition in &mut self.partitions {
            if let Some(file) = partition.open.take() {
                // Only a started multipart upload has anything to clean up; ignore the rest.
                let _ = file.writer.into_inner().abort().await;
            }
        }
        let ParquetLoad {
            io, load_id, stale, ..
        } = *self;
        // Objects an interrupted earlier attempt moved into place are this load's too.
        for name in &stale {
            io.delete(&io.path(name)?).await?;
        }
        io.delete_prefix(&staging_path(&load_id), None).await?;
        io.remove_staging_dir(&load_id).await;
        Ok(())
    }
}

/// The store with what errors need to name; `Sync`, unlike a load (whose writers are not),
/// so it can be borrowed across awaits.
#[derive(Clone)]
struct Dataset {
    sink: String,
    store: Arc<dyn ObjectStore>,
    /// The local dataset directory, to remove the empty staging directories that object
    /// store deletes leave behind.
    root: Option<PathBuf>,
}

impl Dataset {
    fn err(&self, action: &str, source: object_store::Error) -> LoadError {
        LoadError::Store {
            sink: self.sink.clone(),
            action: action.to_owned(),
            source,
        }
    }

    fn path(&self, name: &str) -> Result<Path, LoadError> {
        Path::parse(name).map_err(|e| self.err(&format!("naming {name}"), e.into()))
    }

    fn staged(&self, load_id: &str, name: &str) -> Result<Path, LoadError> {
        self.path(&format!("{STAGING}/{load_id}/{name}"))
    }

    /// Deletes every object under `prefix` except `keep`; a missing object is not an error.
    async fn delete_prefix(&self, prefix: &Path, keep: Option<&Path>) -> Result<(), LoadError> {
        let objects: Vec<_> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| self.err("listing", e))?;
        for object in objects.into_iter().filter(|o| Some(&o.location) != keep) {
            self.delete(&object.location).await?;
        }
        Ok(())
    }

    async fn delete(&self, path: &Path) -> Result<(), LoadError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(&format!("deleting {path}"), e)),
        }
    }

    /// Removes a load's staging directory from a local dataset: the moves leave it empty
    /// but present (object stores have no directories to remove).
    async fn remove_staging_dir(&self, load_id: &str) {
        if let Some(root) = &self.root {
            // Best effort: a leftover empty directory is harmless, not worth failing for.
            let _ = tokio::fs::remove_dir_all(root.join(STAGING).join(load_id)).await;
            let _ = tokio::fs::remove_dir(root.join(STAGING)).await;
        }
    }
}

/// Row indices grouped by partition directory (`col=value`), in order of first appearance.
fn partition_rows(
    sink: &str,
    column: &str,
    array: &dyn Array,
) -> Result<Vec<(String, Vec<u32>)>, LoadError> {
    let formatter = ArrayFormatter::try_new(array, &FormatOptions::default()).map_err(|e| {
        LoadError::Schema {
            sink: sink.to_owned(),
            message: format!(
                "partition column `{column}` cannot be turned into directory names: {e}"
            ),
        }
    })?;
    let prefix = format!("{}=", escape(column));
    let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
    let mut by_value: HashMap<String, usize> = HashMap::new();
    let mut null_group = None;
    let mut value = String::new();
    for row in 0..array.len() {
        let group = if array.is_null(row) {
            *null_group.get_or_insert_with(|| {
                groups.push((format!("{prefix}{NULL_PARTITION}"), Vec::new()));
                groups.len() - 1
            })
        } else {
            value.clear();
            write!(value, "{}", formatter.value(row)).expect("writing to a string");
            match by_value.get(value.as_str()) {
                Some(group) => *group,
                None => {
                    groups.push((format!("{prefix}{}", escape(&value)), Vec::new()));
                    by_value.insert(value.clone(), groups.len() - 1);
                    groups.len() - 1
                }
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
        if c.is_ascii_control() || "\"#%'*/:=?\\{}[]^|<>~`".contains(c) {
            write!(out, "%{:02X}", c as u32).expect("writing to a string");
        } else {
            out.push(c);
        }
    }
    out
}

fn check_load_id(sink: &str, load_id: &str) -> Result<(), LoadError> {
    // The id becomes part of object names: keep it to characters that need no escaping.
    let ok = !load_id.is_empty()
        && !load_id.starts_with('.')
        && load_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(LoadError::Config {
            sink: sink.to_owned(),
            message: format!("load id {load_id:?} must be ASCII letters, digits, `-`, `_` or `.`"),
        })
    }
}
