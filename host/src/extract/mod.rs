//! Sources: where batches come from. One file per kind; each yields a stream of bounded
//! Arrow batches carrying provenance columns (`_weir_source`, `_weir_row`) so that a bad
//! row can be named by its source and row after any transform.

pub mod file;
pub mod incremental;
mod object_reader;
mod text;

use arrow::array::RecordBatch;
use futures::stream::BoxStream;

/// Provenance columns the extractor adds; sinks drop every `_weir_` column.
pub const SOURCE_COLUMN: &str = "_weir_source";
pub const ROW_COLUMN: &str = "_weir_row";

pub type BatchStream = BoxStream<'static, Result<RecordBatch, ExtractError>>;

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("source pattern `{pattern}`: {message}")]
    Pattern { pattern: String, message: String },
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("listing {root}: {}", crate::store::describe(cause))]
    List {
        root: String,
        cause: object_store::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{path}: cursor column `{column}` is missing")]
    MissingCursor { path: String, column: String },
    #[error(
        "{path} row {row}: cursor column `{column}` is null; an incremental load needs a cursor on every row"
    )]
    NullCursor {
        path: String,
        row: i64,
        column: String,
    },
    #[error(
        "watermark `{watermark}` cannot be compared with cursor column `{column}` ({data_type}): {message}"
    )]
    Watermark {
        watermark: String,
        column: String,
        data_type: String,
        message: String,
    },
}

impl ExtractError {
    /// I/O on the store may succeed if tried again; bad data or config will not.
    pub fn is_transient(&self) -> bool {
        matches!(self, ExtractError::List { .. })
            || matches!(self, ExtractError::Read { message, .. } if message.starts_with("I/O"))
    }
}
