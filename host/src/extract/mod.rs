//! Sources: where batches come from. One file per kind, each implementing [`Source`]; each
//! yields a stream of bounded Arrow batches carrying provenance columns (`_weir_source`,
//! `_weir_row`) so that a bad row can be named by its source and row after any transform.

mod csv_error;
pub mod drift;
pub mod file;
pub mod http;
pub mod incremental;
mod object_reader;
pub mod postgres;
pub(crate) mod provenance;
pub mod sqlite;
pub(crate) mod text;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::state::FileFingerprint;

/// Provenance columns the extractor adds; sinks drop every `_weir_` column.
pub const SOURCE_COLUMN: &str = "_weir_source";
pub const ROW_COLUMN: &str = "_weir_row";

pub type BatchStream = BoxStream<'static, Result<RecordBatch, ExtractError>>;

/// One unit a source reads: a file, or a query.
#[derive(Debug, Clone)]
pub struct Part {
    /// How the user names it: a file path as written in the pipeline, or the table or query.
    pub name: String,
    /// What a file looked like when listed, so a consumed file is not read again. `None` for
    /// parts read on every run (queries and APIs, which read new rows by cursor instead).
    pub fingerprint: Option<FileFingerprint>,
    /// Where the source finds the part (an object path for files).
    pub(crate) location: String,
}

/// The rows a run reads from a source that selects by cursor itself: `after < cursor <= upto`
/// (a bound that is `None` is open).
#[derive(Debug, Clone, Default)]
pub struct CursorRange {
    pub after: Option<String>,
    pub upto: Option<String>,
}

/// What a database source reads.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    /// A table name (`orders`, `schema.orders`) or a query.
    pub relation: Relation,
    pub batch_size: usize,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Relation {
    Table(String),
    Query(String),
}

impl Relation {
    /// How a source's name shows it: `table orders`, or `query`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Relation::Table(table) => format!("table {table}"),
            Relation::Query(_) => "query".to_string(),
        }
    }

    /// The SQL that selects every row: the table's, or the query itself (without a trailing
    /// `;`, so that it can be wrapped in a subquery or a view).
    pub(crate) fn select_sql(&self) -> String {
        match self {
            Relation::Table(table) => {
                format!(
                    "SELECT * FROM {}",
                    crate::load::postgres::quote_qualified(table)
                )
            }
            Relation::Query(query) => query.trim().trim_end_matches(';').to_string(),
        }
    }
}

/// The ` WHERE … ORDER BY …` that selects `range` on the cursor expression `column`, with
/// the placeholder for the n-th (1-based) bound value, and the values to bind, in order.
pub(crate) fn cursor_clause(
    column: &str,
    placeholder: impl Fn(usize) -> String,
    range: &CursorRange,
) -> (String, Vec<String>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    for (op, bound) in [(">", &range.after), ("<=", &range.upto)] {
        if let Some(value) = bound {
            values.push(value.clone());
            conditions.push(format!("{column} {op} {}", placeholder(values.len())));
        }
    }
    let mut clause = String::new();
    if !conditions.is_empty() {
        clause = format!(" WHERE {}", conditions.join(" AND "));
    }
    clause += &format!(" ORDER BY {column}");
    (clause, values)
}

/// Where a producer task sends its batches.
pub(crate) type BatchSender = tokio::sync::mpsc::Sender<Result<RecordBatch, ExtractError>>;

/// The batches `produce` sends, made on a task of its own: reading and decoding overlap the
/// pipeline's work, and the bounded channel keeps at most two batches waiting. `produce`
/// returns `Ok` early when a send fails (the reader went away); its error is the stream's
/// last item.
pub(crate) fn produced<F, Fut>(produce: F) -> BatchStream
where
    F: FnOnce(BatchSender) -> Fut,
    Fut: std::future::Future<Output = Result<(), ExtractError>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let errors = tx.clone();
    let work = produce(tx);
    tokio::spawn(async move {
        if let Err(e) = work.await {
            let _ = errors.send(Err(e)).await;
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

/// Turns a database's rows into batches.
pub(crate) trait RowBatcher<R> {
    fn push(&mut self, row: &R) -> Result<(), ExtractError>;
    /// Rows pushed since the last batch.
    fn len(&self) -> usize;
    fn finish(&mut self) -> Result<RecordBatch, ExtractError>;
}

/// Sends `rows` as batches of `batch_size` (the last one smaller).
pub(crate) async fn send_rows<R>(
    rows: impl futures::Stream<Item = Result<R, sqlx::Error>>,
    batcher: &mut impl RowBatcher<R>,
    batch_size: usize,
    source_name: &str,
    tx: &BatchSender,
) -> Result<(), ExtractError> {
    futures::pin_mut!(rows);
    while let Some(row) = rows.next().await {
        let row = row.map_err(|error| ExtractError::Database {
            source_name: source_name.to_string(),
            action: "reading rows".into(),
            error,
        })?;
        batcher.push(&row)?;
        if batcher.len() == batch_size && tx.send(batcher.finish()).await.is_err() {
            return Ok(()); // the reader went away
        }
    }
    if batcher.len() > 0 {
        let _ = tx.send(batcher.finish()).await;
    }
    Ok(())
}

/// Rows whose cursor is NULL: an incremental load would never read them.
pub(crate) fn null_cursors(source: &str, count: i64, column: &str) -> ExtractError {
    ExtractError::Read {
        path: source.to_string(),
        message: format!(
            "{count} rows have a NULL cursor `{column}`: an incremental load would never read \
             them; filter or fill them in `query`"
        ),
    }
}

#[async_trait]
pub trait Source: Send + Sync {
    /// What the source holds now, in reading order.
    async fn list(&self) -> Result<Vec<Part>, ExtractError>;
    /// The part's columns as they will be read, without the provenance columns.
    async fn schema(&self, part: &Part) -> Result<SchemaRef, ExtractError>;
    /// The part's rows; a source that [selects by cursor](Source::selects_by_cursor) reads
    /// only `range`, others ignore it.
    async fn read(&self, part: &Part, range: &CursorRange) -> Result<BatchStream, ExtractError>;
    /// Whether the source selects rows past the watermark itself (a query's `WHERE`). If not,
    /// the engine filters the batches and tracks the highest cursor.
    fn selects_by_cursor(&self) -> bool {
        false
    }
    /// For sources that select by cursor: the highest cursor past `after` now, `None` when
    /// there is nothing new. Fixing it before reading makes the run's range, and so its
    /// replay after a crash, exact.
    async fn upper_bound(&self, after: Option<&str>) -> Result<Option<String>, ExtractError> {
        let _ = after;
        Ok(None)
    }
    /// What to tell the user when [`list`](Source::list) finds nothing.
    fn nothing_listed(&self) -> String {
        "the source lists nothing".into()
    }
}

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
    /// A bad record of a file: `row` counts records after the header, from 1.
    #[error("{path} row {row}: {message}")]
    Row {
        path: String,
        row: u64,
        message: String,
    },
    /// A file of the load whose columns differ from the load's first file.
    #[error(
        "{path}: its columns differ from those of {first} (the load's first file): {message}; \
         every file of a load must have the same columns"
    )]
    Drift {
        path: String,
        first: String,
        message: String,
    },
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
    /// A database source's query or connection failed; `action` says what was being done.
    #[error("{source_name}: {action} failed: {error}")]
    Database {
        source_name: String,
        action: String,
        #[source]
        error: sqlx::Error,
    },
    /// An HTTP API source; `url` is shown without secrets, and so is `message`.
    #[error("{url}: {message}")]
    Http { url: String, message: String },
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
        if let ExtractError::Database { error, .. } = self {
            return crate::load::postgres::is_transient(error);
        }
        matches!(self, ExtractError::List { .. })
            || matches!(self, ExtractError::Read { message, .. } if message.starts_with("I/O"))
    }
}
