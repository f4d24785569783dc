//! Sinks: where a load's batches end up. One module per kind (SQLite table, Postgres table,
//! Parquet dataset).
//!
//! Every load is exactly-once per load id: a sink writes the load's data and a marker
//! naming the load id together, so a replay of a committed load is recognised
//! ([`Sink::begin`] returns `None`) and an interrupted one leaves nothing visible, or is
//! completed by the replay. Columns named `_weir_*` (provenance the engine adds) are never
//! written.

/// `LoadError::$kind { sink, message }` with a `format!`ted message.
macro_rules! load_err {
    ($kind:ident, $sink:expr, $($message:tt)+) => {
        $crate::load::LoadError::$kind { sink: $sink.to_string(), message: format!($($message)+) }
    };
}

pub mod parquet;
pub mod postgres;
pub mod sqlite;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;

pub use self::parquet::ParquetSink;
pub use self::postgres::PostgresSink;
pub use self::sqlite::SqliteSink;
pub use crate::config::types::LoadMode;

/// Prefix of the columns the engine adds for provenance; sinks drop them.
pub const PROVENANCE_PREFIX: &str = "_weir_";

/// One load: a pipeline run's batches, identified by a load id that is stable across retries.
pub struct LoadSpec {
    pub pipeline: String,
    pub load_id: String,
    pub schema: SchemaRef,
}

#[async_trait]
pub trait Sink: Send + Sync {
    fn name(&self) -> &str;
    /// Whether the load with this id is already committed in the sink (its marker exists).
    async fn is_committed(&self, load_id: &str) -> Result<bool, LoadError>;
    /// Start writing a load; `None` when it is already committed (a replay: skip it).
    async fn begin(&self, load: &LoadSpec) -> Result<Option<Box<dyn SinkLoad>>, LoadError>;
}

#[async_trait]
pub trait SinkLoad: Send {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), LoadError>;
    /// Finish writing, once every batch is written and before any sink of the run commits:
    /// the slow work of closing a load (a Parquet file's last row group and footer) runs
    /// here, beside the other sinks', rather than between one sink's commit and the next.
    async fn prepare(&mut self) -> Result<(), LoadError> {
        Ok(())
    }
    /// Make the load visible, data and marker together; returns rows loaded.
    async fn commit(self: Box<Self>) -> Result<u64, LoadError>;
    /// Drop everything written (nothing of the load stays visible).
    async fn abort(self: Box<Self>) -> Result<(), LoadError>;
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A statement failed; `action` says what the sink was doing.
    #[error("sink `{sink}`: {action} failed: {source}; {}", sqlite_hint(source))]
    Sqlite {
        sink: String,
        action: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("sink `{sink}`: {action} failed: {source}; {}", postgres::hint(source))]
    Postgres {
        sink: String,
        action: String,
        #[source]
        source: sqlx::Error,
    },
    /// The dataset's store (a directory, an S3 prefix) cannot be opened.
    #[error("sink `{sink}`: {cause}")]
    Open {
        sink: String,
        cause: crate::store::StoreError,
    },
    /// An object store (dataset directory or S3 prefix) operation failed.
    #[error(
        "sink `{sink}`: {action} failed: {}; check that the dataset directory or bucket is reachable and writable (and not full), then rerun",
        crate::store::describe(cause)
    )]
    Store {
        sink: String,
        action: String,
        cause: object_store::Error,
    },
    #[error(
        "sink `{sink}`: writing Parquet failed: {source}; check that the dataset directory or bucket is reachable and writable (and not full), then rerun"
    )]
    Parquet {
        sink: String,
        #[source]
        source: ::parquet::errors::ParquetError,
    },
    #[error("sink `{sink}`: {action} failed: {source}")]
    Io {
        sink: String,
        action: String,
        #[source]
        source: std::io::Error,
    },
    /// The data does not fit the sink (column names, types, values); retrying will not help.
    #[error("sink `{sink}`: {message}")]
    Schema { sink: String, message: String },
    /// The sink's settings cannot work (e.g. an unsupported mode).
    #[error("sink `{sink}`: {message}")]
    Config { sink: String, message: String },
}

impl LoadError {
    /// Whether retrying the load may succeed: a busy or locked database, I/O errors. Schema,
    /// type and configuration errors are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            LoadError::Sqlite { source, .. } => sqlx_is_transient(source),
            LoadError::Postgres { source, .. } => postgres::is_transient(source),
            LoadError::Store { cause, .. } => store_is_transient(cause),
            // `External` is what the async writer wraps the store's I/O errors in.
            LoadError::Parquet { source, .. } => {
                matches!(source, ::parquet::errors::ParquetError::External(_))
            }
            LoadError::Io { .. } => true,
            LoadError::Open { .. } | LoadError::Schema { .. } | LoadError::Config { .. } => false,
        }
    }
}

/// SQLite primary result codes (the low byte of the extended code sqlx reports).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;

fn sqlite_primary_code(error: &sqlx::Error) -> Option<i32> {
    let code = error.as_database_error()?.code()?;
    code.parse::<i32>().ok().map(|c| c & 0xff)
}

fn sqlx_is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(_) => matches!(
            sqlite_primary_code(error),
            Some(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR | SQLITE_FULL)
        ),
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

fn sqlite_hint(error: &sqlx::Error) -> &'static str {
    match sqlite_primary_code(error) {
        Some(SQLITE_BUSY | SQLITE_LOCKED) => {
            "another connection holds the database lock; retrying may succeed, and if this persists stop the other writer"
        }
        Some(SQLITE_IOERR | SQLITE_FULL) => {
            "check the disk holding the database (space, permissions), then rerun"
        }
        _ if sqlx_is_transient(error) => "retrying may succeed",
        _ => "fix the table or the pipeline's columns, then rerun",
    }
}

fn store_is_transient(error: &object_store::Error) -> bool {
    use object_store::Error as E;
    // `Generic` is how the local file system reports I/O errors; everything listed here
    // describes a request that will fail the same way again.
    !matches!(
        error,
        E::NotFound { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotImplemented { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::UnknownConfigurationKey { .. }
    )
}

pub(crate) fn failed_earlier(sink: &str) -> LoadError {
    LoadError::Config {
        sink: sink.to_owned(),
        message: "an earlier write of this load failed, so the load cannot commit; abort it and run it again".into(),
    }
}

/// The columns a sink writes: all but the `_weir_*` provenance columns, in schema order.
pub(crate) fn data_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| !f.name().starts_with(PROVENANCE_PREFIX))
        .cloned()
        .collect();
    SchemaRef::new(Schema::new(fields))
}

/// `batch` reduced to the columns of `data` (looked up by name, so a batch whose columns
/// come in another order still loads).
pub(crate) fn project(
    sink: &str,
    batch: &RecordBatch,
    data: &SchemaRef,
) -> Result<RecordBatch, LoadError> {
    let columns = data
        .fields()
        .iter()
        .map(|field| {
            batch.column_by_name(field.name()).cloned().ok_or_else(|| LoadError::Schema {
                sink: sink.to_owned(),
                message: format!(
                    "a batch lacks column `{}` that the load's schema declared; every batch of a load must have the same columns",
                    field.name()
                ),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(data.clone(), columns).map_err(|e| LoadError::Schema {
        sink: sink.to_owned(),
        message: format!("a batch does not match the load's schema: {e}"),
    })
}
