//! Local CSV and Parquet files read as a stream of bounded Arrow batches.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::csv;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Rows read to infer a CSV file's schema.
const INFER_ROWS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: unknown file type; expected .csv or .parquet")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: ArrowError },
    #[error("{path}: not a readable Parquet file: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
}

/// A file as a stream of record batches of at most `batch_size` rows.
pub struct FileBatches {
    schema: SchemaRef,
    path: PathBuf,
    inner: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>,
}

impl FileBatches {
    pub fn open(path: &Path, batch_size: usize) -> Result<FileBatches, FileError> {
        let open = |path: &Path| {
            File::open(path).map_err(|source| FileError::Open {
                path: path.to_path_buf(),
                source,
            })
        };
        let read_error = |source| FileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let (schema, inner): (SchemaRef, Box<dyn Iterator<Item = _> + Send>) =
            match extension.as_deref() {
                Some("csv") => {
                    let mut file = open(path)?;
                    let format = csv::reader::Format::default().with_header(true);
                    let (schema, _) = format
                        .infer_schema(&mut file, Some(INFER_ROWS))
                        .map_err(read_error)?;
                    file.seek(SeekFrom::Start(0))
                        .map_err(|source| FileError::Open {
                            path: path.to_path_buf(),
                            source,
                        })?;
                    let schema = std::sync::Arc::new(schema);
                    let reader = csv::ReaderBuilder::new(schema.clone())
                        .with_format(format)
                        .with_batch_size(batch_size)
                        .build(file)
                        .map_err(read_error)?;
                    (schema, Box::new(reader))
                }
                Some("parquet") => {
                    let parquet_error = |source| FileError::Parquet {
                        path: path.to_path_buf(),
                        source,
                    };
                    let builder = ParquetRecordBatchReaderBuilder::try_new(open(path)?)
                        .map_err(parquet_error)?;
                    let schema = builder.schema().clone();
                    let reader = builder
                        .with_batch_size(batch_size)
                        .build()
                        .map_err(parquet_error)?;
                    (schema, Box::new(reader))
                }
                _ => {
                    return Err(FileError::UnknownFormat {
                        path: path.to_path_buf(),
                    });
                }
            };
        Ok(FileBatches {
            schema,
            path: path.to_path_buf(),
            inner,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Iterator for FileBatches {
    type Item = Result<RecordBatch, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        let path = &self.path;
        self.inner.next().map(|r| {
            r.map_err(|source| FileError::Read {
                path: path.clone(),
                source,
            })
        })
    }
}
