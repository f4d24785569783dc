//! One load into a Parquet dataset: rows streamed into staged files per partition, then
//! the commit (see the module above for the protocol).

use std::collections::{HashMap, HashSet};

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::{ObjectStore, ObjectStoreExt, PutMode};
use parquet::arrow::AsyncArrowWriter;
use parquet::file::properties::WriterProperties;
use serde_json::json;

use super::dataset::{Dataset, partition_rows};
use super::{MAX_OPEN_FILES, intent_path, marker_path, staging_path};
use crate::engine::fault;
use crate::load::{LoadError, SinkLoad, project};

pub(super) struct ParquetLoad {
    pub(super) io: Dataset,
    pub(super) load_id: String,
    pub(super) pipeline: String,
    pub(super) replace: bool,
    pub(super) rows_per_file: u64,
    /// The columns written (provenance dropped), partition column included.
    pub(super) data: SchemaRef,
    pub(super) file_schema: SchemaRef,
    /// The partition column: its index in `data`, and its name.
    pub(super) partition: Option<(usize, String)>,
    pub(super) partitions: Vec<Partition>,
    pub(super) by_dir: HashMap<String, usize>,
    /// Finished staged files: final name (relative to the dataset root) and rows.
    pub(super) staged: Vec<(String, u64)>,
    /// Final names an interrupted earlier attempt may have moved into place.
    pub(super) stale: Vec<String>,
    pub(super) rows: u64,
    pub(super) tick: u64,
    pub(super) props: WriterProperties,
    pub(super) failed: bool,
}

pub(super) struct Partition {
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

    /// Writes a partition's rows to its open file (opening one if needed), split so that no
    /// file holds more than `rows_per_file` rows.
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
        let mut rest = batch;
        while rest.num_rows() > 0 {
            if self.partitions[index].open.is_none() {
                self.open_file(index, &rest).await?;
            }
            let file = self.partitions[index].open.as_mut().expect("opened above");
            // A file is finished as soon as it is full, so an open one has room.
            let room = usize::try_from(self.rows_per_file - file.rows).unwrap_or(usize::MAX);
            let take = room.min(rest.num_rows());
            let head = rest.slice(0, take);
            rest = rest.slice(take, rest.num_rows() - take);
            let written = file.writer.write(&head).await;
            let sink = self.io.sink.clone();
            written.map_err(|source| LoadError::Parquet { sink, source })?;
            file.rows += take as u64;
            file.last_used = self.tick;
            if file.rows >= self.rows_per_file {
                self.finish_file(index).await?;
            }
        }
        Ok(())
    }

    /// Starts the partition's next staged file (finishing the least recently used open file
    /// first if [`MAX_OPEN_FILES`] are open); `first` is the first batch it will hold.
    async fn open_file(&mut self, index: usize, first: &RecordBatch) -> Result<(), LoadError> {
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
        let props = Some(super::encoding::for_file(&self.props, first));
        let schema = self.file_schema.clone();
        let writer = AsyncArrowWriter::try_new(upload, schema, props);
        let writer = writer.map_err(|e| self.parquet_err(e))?;
        self.partitions[index].open = Some(OpenFile {
            writer,
            name,
            rows: 0,
            last_used: 0,
        });
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
        let rows = batch.num_rows() as u64;
        let Some((index, column)) = self.partition.clone() else {
            self.write_partition(String::new(), batch).await?;
            self.rows += rows;
            return Ok(());
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
        self.rows += rows;
        Ok(())
    }
}

#[async_trait]
impl SinkLoad for ParquetLoad {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), LoadError> {
        // A failed write may have written part of a batch: such a load must not commit.
        if self.failed {
            return Err(crate::load::failed_earlier(&self.io.sink));
        }
        let result = self.write_batch(batch).await;
        self.failed = result.is_err();
        result
    }

    async fn prepare(&mut self) -> Result<(), LoadError> {
        if self.failed {
            return Err(crate::load::failed_earlier(&self.io.sink));
        }
        for index in 0..self.partitions.len() {
            let finished = self.finish_file(index).await;
            self.failed = finished.is_err();
            finished?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, LoadError> {
        // Files still open if `prepare` was not called.
        self.prepare().await?;
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
        io.delete_prefix(&staging_path(&load_id)).await?;
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
        io.delete_prefix(&staging_path(&load_id)).await?;
        io.remove_staging_dir(&load_id).await;
        Ok(())
    }
}
