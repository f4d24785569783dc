//! Files — CSV, NDJSON and Parquet, one file or a glob, on local disk or S3 — read through
//! `object_store` as streams of bounded Arrow batches.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;

use super::csv_error::{self, Columns};
use super::object_reader::ObjectReader;
use super::produced;
use super::provenance::Provenance;
use super::text::{TextDecoder, infer_schema};
use super::{BatchStream, CursorRange, ExtractError, Part};
use crate::config::types::{ColumnType, FileFormat, S3Settings};
use crate::state::FileFingerprint;
use crate::store::{self, Access, Location};

/// Bytes read from the head of a text file to infer its schema.
const INFER_BYTES: u64 = 1 << 20;
const INFER_RECORDS: usize = 1000;

/// What to read.
#[derive(Debug, Clone)]
pub struct FileSpec {
    /// A path or glob relative to `base_dir` (e.g. `data/orders/*.csv`), or on S3
    /// (`s3://bucket/orders/*.csv`).
    pub pattern: String,
    pub format: Option<FileFormat>,
    pub batch_size: usize,
    pub declared: BTreeMap<String, ColumnType>,
}

/// One file found by the pattern.
#[derive(Debug, Clone)]
pub struct FoundFile {
    /// As the user would write it: relative to the pipeline file's directory.
    pub path: String,
    location: ObjectPath,
    pub fingerprint: FileFingerprint,
}

pub struct FileSource {
    store: Arc<dyn ObjectStore>,
    /// A directory on this machine (read in large ranges, see [`read_local`]).
    local: bool,
    /// The pattern's directory part, as the user wrote it (prefix of every `FoundFile::path`).
    root_display: String,
    matcher: glob::Pattern,
    spec: FileSpec,
}

pub fn arrow_type(t: ColumnType) -> DataType {
    match t {
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Utf8 => DataType::Utf8,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// A type as `source.schema` spells it (the inverse of [`arrow_type`]); Arrow's name for
/// the others.
pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int64 => "int64".into(),
        DataType::Float64 => "float64".into(),
        DataType::Utf8 => "utf8".into(),
        DataType::Boolean => "bool".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(..) => "timestamp".into(),
        other => other.to_string(),
    }
}

impl FileSource {
    /// The files the pattern names: on S3 for an `s3://` pattern, else on local disk
    /// relative to `base_dir`.
    pub fn open(
        base_dir: &Path,
        spec: FileSpec,
        s3: &S3Settings,
    ) -> Result<FileSource, ExtractError> {
        let pattern_error = |message: String| ExtractError::Pattern {
            pattern: spec.pattern.clone(),
            message,
        };
        // The directory part before the first glob character is the store's root.
        let first_glob = spec
            .pattern
            .find(['*', '?', '['])
            .unwrap_or(spec.pattern.len());
        let root_len = spec.pattern[..first_glob].rfind('/').map_or(0, |i| i + 1);
        let (root, rest) = spec.pattern.split_at(root_len);
        let location = Location::parse(root, base_dir)?;
        if let Location::Local(dir) = &location
            && !dir.is_dir()
        {
            let message = format!("directory {} does not exist", dir.display());
            return Err(pattern_error(message));
        }
        let matcher = glob::Pattern::new(rest).map_err(|e| pattern_error(e.to_string()))?;
        Ok(FileSource {
            store: store::open(&location, s3, Access::Read)?.store,
            local: matches!(location, Location::Local(_)),
            root_display: root.to_string(),
            matcher,
            spec,
        })
    }

    /// The matching files, sorted by path (the order they are read in).
    pub async fn list(&self) -> Result<Vec<FoundFile>, ExtractError> {
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        let mut found: Vec<FoundFile> = self
            .store
            .list(None)
            .map_err(|cause| ExtractError::List {
                root: self.root_display.clone(),
                cause,
            })
            .try_filter_map(|meta| async move {
                let relative = meta.location.to_string();
                Ok(self
                    .matcher
                    .matches_with(&relative, options)
                    .then(|| FoundFile {
                        path: format!("{}{relative}", self.root_display),
                        location: meta.location,
                        fingerprint: FileFingerprint {
                            size: meta.size,
                            etag: meta.e_tag,
                            modified_ms: Some(meta.last_modified.timestamp_millis()),
                        },
                    }))
            })
            .try_collect()
            .await?;
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    fn format_of(&self, file: &FoundFile) -> Result<FileFormat, ExtractError> {
        if let Some(format) = self.spec.format {
            return Ok(format);
        }
        match file
            .path
            .rsplit('.')
            .next()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Ok(FileFormat::Csv),
            Some("json" | "ndjson" | "jsonl") => Ok(FileFormat::Ndjson),
            Some("parquet") => Ok(FileFormat::Parquet),
            _ => Err(read_error(
                file,
                "unknown file type: set `format` to csv, ndjson or parquet",
            )),
        }
    }

    /// The file's schema as it will be read (declared types applied), without provenance.
    pub async fn schema(&self, file: &FoundFile) -> Result<SchemaRef, ExtractError> {
        let format = self.format_of(file)?;
        let raw = match format {
            FileFormat::Parquet => self.parquet_builder(file).await?.schema().clone(),
            // An empty text file has no header and no rows: nothing to read.
            _ if file.fingerprint.size == 0 => return Ok(Arc::new(Schema::empty())),
            FileFormat::Csv | FileFormat::Ndjson => {
                let head = self
                    .store
                    .get_range(&file.location, 0..file.fingerprint.size.min(INFER_BYTES))
                    .await
                    .map_err(|e| io_error(file, e))?;
                let csv = format == FileFormat::Csv;
                let schema = infer_schema(csv, &head, INFER_RECORDS).map_err(|e| match csv {
                    true => csv_error(&file.path, &header_of(&head), &self.spec.declared, e),
                    false => read_error(file, e),
                })?;
                Arc::new(schema)
            }
        };
        Ok(self.apply_declared(&raw))
    }

    fn apply_declared(&self, schema: &Schema) -> SchemaRef {
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| match self.spec.declared.get(f.name()) {
                Some(t) => Field::new(f.name(), arrow_type(*t), true),
                None => f.as_ref().clone(),
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    async fn parquet_builder(
        &self,
        file: &FoundFile,
    ) -> Result<ParquetRecordBatchStreamBuilder<ObjectReader>, ExtractError> {
        let reader = ObjectReader::new(
            self.store.clone(),
            file.location.clone(),
            file.fingerprint.size,
        );
        ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|e| read_error(file, format!("not a readable Parquet file: {e}")))
    }

    /// Read one file as a stream of batches with provenance columns appended.
    pub async fn read(&self, file: &FoundFile) -> Result<BatchStream, ExtractError> {
        let schema = self.schema(file).await?;
        if schema.fields().is_empty() && file.fingerprint.size == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        let batches: BatchStream = match self.format_of(file)? {
            FileFormat::Parquet => {
                let stream = self
                    .parquet_builder(file)
                    .await?
                    .with_batch_size(self.spec.batch_size)
                    .build()
                    .map_err(|e| read_error(file, e))?;
                let (path, target) = (file.path.clone(), schema.clone());
                stream
                    .map(move |b| {
                        b.map_err(|e| read_error_at(&path, e))
                            .and_then(|b| cast_to(&path, b, &target))
                    })
                    .boxed()
            }
            format => {
                let path = file.path.clone();
                let (decoder, explain): (_, ErrorMap) = match format {
                    FileFormat::Csv => {
                        let names: Vec<String> =
                            schema.fields().iter().map(|f| f.name().clone()).collect();
                        let declared = self.spec.declared.clone();
                        let explain = move |e| csv_error(&path, &names, &declared, e);
                        let decoder = TextDecoder::csv(schema, self.spec.batch_size);
                        (decoder, Box::new(explain))
                    }
                    _ => {
                        let decoder = TextDecoder::json(schema, self.spec.batch_size)
                            .map_err(|e| read_error(file, e))?;
                        (decoder, Box::new(move |e| read_error_at(&path, e)))
                    }
                };
                let bytes = match self.local {
                    true => read_local(&self.store, file),
                    false => self
                        .store
                        .get(&file.location)
                        .await
                        .map_err(|e| io_error(file, e))?
                        .into_stream(),
                };
                decode_stream(file.path.clone(), bytes, decoder, explain)
            }
        };
        let path = file.path.clone();
        let mut provenance = Provenance::new(&path);
        let mut next_row = 1i64;
        Ok(batches
            .map(move |batch| {
                let batch = batch?;
                let rows = batch.num_rows();
                let provenance = provenance.attach(&batch, next_row);
                next_row += rows as i64;
                provenance.map_err(|e| read_error_at(&path, e))
            })
            .boxed())
    }
}

/// Bytes read per range of a local file.
const LOCAL_RANGE: u64 = 1 << 20;

/// The listed bytes of a local file, in [`LOCAL_RANGE`]s with the next one read while the
/// current one is decoded. (object_store's own stream of a local file reads 8 KiB per
/// blocking task: two thread handoffs per 8 KiB, ~110 k for 450 MB of CSV.)
fn read_local(
    store: &Arc<dyn ObjectStore>,
    file: &FoundFile,
) -> futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>> {
    let (store, location, size) = (store.clone(), file.location.clone(), file.fingerprint.size);
    let starts = (0..size).step_by(LOCAL_RANGE as usize);
    futures::stream::iter(starts)
        .map(move |start| {
            let (store, location) = (store.clone(), location.clone());
            async move {
                let range = start..(start + LOCAL_RANGE).min(size);
                store.get_range(&location, range).await
            }
        })
        .buffered(2)
        .boxed()
}

/// Push bytes from the store through a decoder; a bounded channel keeps memory bounded.
/// Turns a decoder's error into one naming the file (and, for CSV, the row and column).
type ErrorMap = Box<dyn Fn(ArrowError) -> ExtractError + Send>;

fn decode_stream(
    path: String,
    mut bytes: futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    mut decoder: TextDecoder,
    explain: ErrorMap,
) -> BatchStream {
    produced(move |tx| async move {
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(|e| ExtractError::Read {
                path: path.clone(),
                message: format!("I/O: {}", store::describe(&e)),
            })?;
            for batch in decoder.push(&chunk).map_err(&explain)? {
                if tx.send(Ok(batch)).await.is_err() {
                    return Ok(()); // the reader went away
                }
            }
        }
        if let Some(batch) = decoder.finish().map_err(&explain)? {
            let _ = tx.send(Ok(batch)).await;
        }
        Ok(())
    })
}

/// Cast a Parquet batch's columns to the declared types.
fn cast_to(
    path: &str,
    batch: RecordBatch,
    target: &SchemaRef,
) -> Result<RecordBatch, ExtractError> {
    if batch.schema_ref() == target {
        return Ok(batch);
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns = batch
        .columns()
        .iter()
        .zip(target.fields())
        .map(|(column, field)| {
            cast_with_options(column, field.data_type(), &options)
                .map_err(|e| read_error_at(path, format!("column `{}`: {e}", field.name())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(target.clone(), columns).map_err(|e| read_error_at(path, e))
}

/// A CSV error naming the row and column (see [`csv_error`]).
pub(crate) fn csv_error(
    path: &str,
    names: &[String],
    declared: &BTreeMap<String, ColumnType>,
    error: ArrowError,
) -> ExtractError {
    let is_declared = |name: &str| declared.contains_key(name);
    let columns = Columns {
        names,
        declared: &is_declared,
    };
    let problem = csv_error::explain(&error, &columns);
    match problem.row {
        Some(row) => ExtractError::Row {
            path: path.to_string(),
            row,
            message: problem.message,
        },
        None => read_error_at(path, problem.message),
    }
}

/// The column names of a CSV file's header line (for errors from schema inference, which
/// come before there is a schema).
fn header_of(head: &[u8]) -> Vec<String> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .split(',')
        .map(|name| name.trim().trim_matches('"').to_string())
        .collect()
}

fn read_error(file: &FoundFile, message: impl ToString) -> ExtractError {
    read_error_at(&file.path, message)
}

fn read_error_at(path: &str, message: impl ToString) -> ExtractError {
    ExtractError::Read {
        path: path.to_string(),
        message: message.to_string(),
    }
}

fn io_error(file: &FoundFile, e: object_store::Error) -> ExtractError {
    ExtractError::Read {
        path: file.path.clone(),
        message: format!("I/O: {}", store::describe(&e)),
    }
}

#[async_trait::async_trait]
impl super::Source for FileSource {
    async fn list(&self) -> Result<Vec<Part>, ExtractError> {
        Ok(FileSource::list(self)
            .await?
            .into_iter()
            .map(Part::from)
            .collect())
    }

    async fn schema(&self, part: &Part) -> Result<SchemaRef, ExtractError> {
        FileSource::schema(self, &FoundFile::from(part)).await
    }

    async fn read(&self, part: &Part, _: &CursorRange) -> Result<BatchStream, ExtractError> {
        FileSource::read(self, &FoundFile::from(part)).await
    }

    fn nothing_listed(&self) -> String {
        format!("no file matches `{}`", self.spec.pattern)
    }
}

impl From<FoundFile> for Part {
    fn from(file: FoundFile) -> Part {
        Part {
            name: file.path,
            location: file.location.to_string(),
            fingerprint: Some(file.fingerprint),
        }
    }
}

impl From<&Part> for FoundFile {
    fn from(part: &Part) -> FoundFile {
        FoundFile {
            path: part.name.clone(),
            location: ObjectPath::from(part.location.as_str()),
            fingerprint: part.fingerprint.clone().unwrap_or(FileFingerprint {
                size: 0,
                etag: None,
                modified_ms: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, RecordBatch};
    use arrow::datatypes::Int64Type;

    use super::*;

    /// A CSV of `rows` rows (`id,padding`), several [`LOCAL_RANGE`]s long for enough rows.
    fn source(dir: &Path, rows: usize) -> FileSource {
        let mut csv = String::from("id,padding\n");
        for id in 0..rows {
            csv.push_str(&format!("{id},{}\n", "x".repeat(id % 97)));
        }
        std::fs::write(dir.join("big.csv"), csv).unwrap();
        open(dir, "big.csv")
    }

    fn open(dir: &Path, pattern: &str) -> FileSource {
        let spec = FileSpec {
            pattern: pattern.into(),
            format: None,
            batch_size: 10_000,
            declared: Default::default(),
        };
        FileSource::open(dir, spec, &Default::default()).unwrap()
    }

    #[tokio::test]
    async fn a_local_file_of_many_ranges_is_read_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let source = source(dir.path(), 100_000);
        let file = source.list().await.unwrap().remove(0);
        assert!(
            file.fingerprint.size > 3 * LOCAL_RANGE,
            "rows span range boundaries"
        );
        let batches: Vec<RecordBatch> = source
            .read(&file)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let ids = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec());
        assert!(ids.eq(0..100_000), "every row once, in file order");
    }

    /// Polars writes zstd by default, Spark and pyarrow snappy, older Hive data gzip.
    #[tokio::test]
    async fn parquet_files_of_every_common_codec_are_read() {
        use parquet::arrow::ArrowWriter;
        use parquet::basic::{Compression, GzipLevel, ZstdLevel};
        use parquet::file::properties::WriterProperties;

        let dir = tempfile::tempdir().unwrap();
        let ids = arrow::array::Int64Array::from_iter_values(0..1000);
        let batch = RecordBatch::try_from_iter([("id", Arc::new(ids) as _)]).unwrap();
        let codecs = [
            ("snappy", Compression::SNAPPY),
            ("zstd", Compression::ZSTD(ZstdLevel::default())),
            ("lz4", Compression::LZ4_RAW),
            ("gzip", Compression::GZIP(GzipLevel::default())),
        ];
        for (name, codec) in codecs {
            let file = std::fs::File::create(dir.path().join(format!("{name}.parquet"))).unwrap();
            let props = WriterProperties::builder().set_compression(codec).build();
            let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();
        }
        let source = open(dir.path(), "*.parquet");
        for file in source.list().await.unwrap() {
            let read = source
                .read(&file)
                .await
                .unwrap()
                .try_collect::<Vec<_>>()
                .await;
            let read = read.unwrap_or_else(|e| panic!("{}: {e}", file.path));
            let ids = read[0]
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec();
            assert_eq!(ids, (0..1000).collect::<Vec<i64>>(), "{}", file.path);
        }
    }

    #[tokio::test]
    async fn a_local_file_cut_short_after_listing_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let source = source(dir.path(), 100_000);
        let file = source.list().await.unwrap().remove(0);
        let cut = std::fs::File::options()
            .write(true)
            .open(dir.path().join("big.csv"));
        cut.unwrap().set_len(LOCAL_RANGE + 10).unwrap();
        let read: Result<Vec<RecordBatch>, _> =
            source.read(&file).await.unwrap().try_collect().await;
        let error = read.unwrap_err().to_string();
        assert!(error.contains("big.csv"), "{error}");
    }
}
