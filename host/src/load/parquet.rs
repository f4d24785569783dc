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
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::json;

use super::{LoadError, LoadMode, LoadSpec, PROVENANCE_PREFIX, Sink, SinkLoad};
use super::{data_schema, project};
use crate::config::types::S3Settings;
use crate::engine::fault;
use crate::store::{self, Access, Location, Store};

/// Rows per file before the next file of the partition starts.
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
        let staging = staging_path(&load.load_id);
        self.io.delete_prefix(&staging, Some(&intent)).await?;
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
    /// Finished staged files: final name (relative to the dataset root) and rows.
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
        let count = self.partitions.len();
        let index = *self.by_dir.entry(dir.clone()).or_insert(count);
        if index == count {
            self.partitions.push(Partition {
                dir,
                files: 0,
                open: None,
            });
        }
        self.tick += 1;
        if self.partitions[index].open.is_none() {
            let open = self.partitions.iter().enumerate();
            let open = open.filter_map(|(i, p)| p.open.as_ref().map(|f| (f.last_used, i)));
            let open: Vec<(u64, usize)> = open.collect();
            if open.len() >= MAX_OPEN_FILES {
                let (_, oldest) = *open.iter().min().expect("files are open");
                self.finish_file(oldest).await?;
            }
            let partition = &mut self.partitions[index];
            let file = format!("part-{}-{}.parquet", self.load_id, partition.files);
            partition.files += 1;
            let name = match partition.dir.as_str() {
                "" => file,
                dir => format!("{dir}/{file}"),
            };
            let staged = self.io.staged(&self.load_id, &name)?;
            // Files up to one part go up in a single PUT; larger ones as a multipart upload.
            // (Under `WEIR_FAULT=upload_part…` the store counts the uploaded parts.)
            let store = fault::watch_parts(self.io.store.clone());
            let upload = BufWriter::with_capacity(store, staged, self.io.part_size)
                .with_max_concurrency(self.io.upload_concurrency);
            let (schema, props) = (self.file_schema.clone(), Some(self.props.clone()));
            let writer = AsyncArrowWriter::try_new(upload, schema, props);
            let writer = writer.map_err(|e| self.parquet_err(e))?;
            self.partitions[index].open = Some(OpenFile {
                writer,
                name,
                rows: 0,
                last_used: 0,
            });
        }
        let file = self.partitions[index].open.as_mut().expect("opened above");
        let written = file.writer.write(&batch).await;
        let sink = self.io.sink.clone();
        written.map_err(|source| LoadError::Parquet { sink, source })?;
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
            return Ok(()); // no empty files
        }
        let Some((index, column)) = self.partition.clone() else {
            return self.write_partition(String::new(), batch).await;
        };
        let groups = partition_rows(&self.io.sink, &column, batch.column(index).as_ref())?;
        let keep: Vec<usize> = (0..batch.num_columns()).filter(|i| *i != index).collect();
        let body = batch.project(&keep).expect("indices in range");
        let single = groups.len() == 1;
        for (dir, rows) in groups {
            let part = match single {
                true => Ok(body.clone()),
                false => take_record_batch(&body, &UInt32Array::from(rows)),
            };
            let bad = |e| load_err!(Schema, self.io.sink, "splitting a batch by partition: {e}");
            self.write_partition(dir, part.map_err(bad)?).await?;
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
        // From here on only `Sync` parts are used (the writers are closed), so the future
        // stays `Send`.
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
        let touched = partitions.into_iter().map(|p| p.dir);
        let touched: Vec<String> = touched.filter(|d| replace && !d.is_empty()).collect();
        let finals: HashSet<&str> = staged.iter().map(|(name, _)| name.as_str()).collect();
        let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
        let stale: Vec<&str> = stale.into_iter().filter(|s| !finals.contains(s)).collect();
        // The intent lists the stale names too, in case this attempt also stops halfway.
        let intent: Vec<&str> = finals.iter().chain(&stale).copied().collect();
        io.put_json(
            &intent_path(&load_id),
            &json!(intent),
            "writing the commit intent",
        )
        .await?;
        for (name, _) in &staged {
            let (from, to) = (io.staged(&load_id, name)?, io.path(name)?);
            let moved = io.store.rename(&from, &to).await;
            moved.map_err(|e| io.err(&format!("moving {name} into place"), e))?;
        }
        for name in stale {
            io.delete(&io.path(name)?).await?;
        }
        // replace_partition: what else the touched partitions hold is what the load replaces.
        for dir in &touched {
            let listed = io
                .store
                .list(Some(&io.path(dir)?))
                .try_collect::<Vec<_>>()
                .await;
            let listed = listed.map_err(|e| io.err("listing a replaced partition", e))?;
            for object in listed
                .iter()
                .filter(|o| !finals.contains(o.location.as_ref()))
            {
                io.delete(&object.location).await?;
            }
        }
        io.delete_prefix(&staging_path(&load_id), None).await?;
        io.remove_staging_dir(&load_id).await;
        let objects = staged
            .iter()
            .map(|(path, rows)| json!({ "path": path, "rows": rows }));
        let marker = json!({
            "load_id": load_id,
            "pipeline": pipeline,
            "rows": rows,
            "objects": objects.collect::<Vec<_>>(),
            "committed_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        });
        let payload = serde_json::to_vec_pretty(&marker).expect("json serializes");
        let written = io
            .store
            .put_opts(
                &marker_path(&load_id),
                payload.into(),
                PutMode::Create.into(),
            )
            .await;
        match written {
            // Another attempt committed this load first: its marker names the same objects.
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(rows),
            Err(e) => Err(io.err("writing the load marker", e)),
        }
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

fn marker_path(load_id: &str) -> Path {
    Path::from_iter(["_weir_loads", &format!("{load_id}.json")])
}

fn staging_path(load_id: &str) -> Path {
    Path::from_iter([STAGING, load_id])
}

fn intent_path(load_id: &str) -> Path {
    Path::from_iter([STAGING, load_id, "_commit.json"])
}

/// The store and the sink's name for errors. Unlike a load (whose writers are not `Sync`),
/// it can be borrowed across awaits.
#[derive(Clone)]
struct Dataset {
    sink: String,
    store: Arc<dyn ObjectStore>,
    /// Bytes per part of an upload, and parts in flight (see [`Store`]).
    part_size: usize,
    upload_concurrency: usize,
    /// The local dataset directory, to remove the empty staging directories that object
    /// store deletes leave behind.
    root: Option<PathBuf>,
}

impl Dataset {
    fn err(&self, action: &str, cause: object_store::Error) -> LoadError {
        LoadError::Store {
            sink: self.sink.clone(),
            action: action.to_owned(),
            cause,
        }
    }

    fn path(&self, name: &str) -> Result<Path, LoadError> {
        Path::parse(name).map_err(|e| self.err(&format!("naming {name}"), e.into()))
    }

    fn staged(&self, load_id: &str, name: &str) -> Result<Path, LoadError> {
        self.path(&format!("{STAGING}/{load_id}/{name}"))
    }

    async fn put_json(
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

    /// Deletes every object under `prefix` except `keep`; a missing object is not an error.
    async fn delete_prefix(&self, prefix: &Path, keep: Option<&Path>) -> Result<(), LoadError> {
        let listed = self.store.list(Some(prefix)).try_collect::<Vec<_>>().await;
        let listed = listed.map_err(|e| self.err("listing", e))?;
        for object in listed.iter().filter(|o| Some(&o.location) != keep) {
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
