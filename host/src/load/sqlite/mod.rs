//! SQLite sink: one table; each load is ONE transaction holding its rows and its marker
//! (a row of `_weir_loads`), so a load is either wholly visible and marked, or absent.
//!
//! Types: see [`types`]. Nulls are NULL. Identifiers are always double-quoted; values are always bound parameters.

mod bulk;
mod types;
mod writeback;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use chrono::Utc;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode};
use sqlx::sqlite::{SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Sqlite, SqlitePool, Transaction};

use super::{LoadError, LoadMode, LoadSpec, Sink, SinkLoad, data_schema, project};
use types::{Column, sql_type};
use writeback::Writeback;

/// How long a statement waits for another connection's lock before failing with BUSY.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page size of the databases the sink creates (SQLite's maximum).
const PAGE_SIZE: u32 = 65_536;

const MARKER_DDL: &str = "CREATE TABLE IF NOT EXISTS _weir_loads (load_id TEXT PRIMARY KEY, \
                          pipeline TEXT, table_name TEXT, rows INTEGER, committed_at TEXT)";
const MARKED: &str = "SELECT 1 FROM _weir_loads WHERE load_id = ?";

type Tx = Transaction<'static, Sqlite>;

pub struct SqliteSink {
    name: String,
    table: String,
    mode: LoadMode,
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteSink {
    /// Opens (creating file and parent directories if missing) the database at `db_path`
    /// in WAL mode, waiting up to [`DEFAULT_BUSY_TIMEOUT`] for locks.
    pub async fn connect(
        name: &str,
        db_path: &Path,
        table: &str,
        mode: LoadMode,
    ) -> Result<SqliteSink, LoadError> {
        Self::connect_with_busy_timeout(name, db_path, table, mode, DEFAULT_BUSY_TIMEOUT).await
    }

    pub async fn connect_with_busy_timeout(
        name: &str,
        db_path: &Path,
        table: &str,
        mode: LoadMode,
        busy_timeout: Duration,
    ) -> Result<SqliteSink, LoadError> {
        check_identifier(name, table)?;
        if table
            .to_ascii_lowercase()
            .starts_with(super::PROVENANCE_PREFIX)
        {
            return Err(load_err!(
                Config,
                name,
                "table name `{table}` is reserved for Weir"
            ));
        }
        if let Some(parent) = db_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let action = format!("creating directory {}", parent.display());
            let io = |source| LoadError::Io {
                sink: name.into(),
                action,
                source,
            };
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        // WAL lets readers run during a load. FULL syncs the WAL at each commit: the state
        // records a load as done right after the sink commits, so a commit that a power cut
        // could still take back (NORMAL syncs only at checkpoints) would lose its rows for
        // good. A load commits once, so this is one fsync per load.
        // A database the sink creates gets SQLite's largest page: loads are bulk appends, and
        // against 4 KiB pages the 10 M-row bench pipeline used ~12% less CPU. (An existing
        // database keeps its page size; the pragma is a no-op there.)
        let options = SqliteConnectOptions::new()
            .filename(db_path)
            .create_if_missing(true)
            .page_size(PAGE_SIZE)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(busy_timeout);
        let action = format!("opening {}", db_path.display());
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options);
        let pool = pool.await.map_err(sql_err(name, &action))?;
        let marker_table = sqlx::query(MARKER_DDL).execute(&pool).await;
        marker_table.map_err(sql_err(name, "creating the _weir_loads table"))?;
        let (name, table) = (name.to_owned(), table.to_owned());
        Ok(SqliteSink {
            name,
            table,
            mode,
            pool,
            path: db_path.to_owned(),
        })
    }

    /// Creates the table if missing (else checks its columns) and the index the mode needs.
    async fn prepare_table(&self, tx: &mut Tx, schema: &SchemaRef) -> Result<(), LoadError> {
        let existing: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(&self.table)
            .fetch_all(&mut **tx)
            .await
            .map_err(sql_err(&self.name, "reading the table's columns"))?;
        let wanted: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let table = quote(&self.table);
        if existing.is_empty() {
            let mut columns = Vec::new();
            for field in schema.fields() {
                columns.push(format!(
                    "{} {}",
                    quote(field.name()),
                    sql_type(&self.name, field)?
                ));
            }
            let ddl = format!("CREATE TABLE {table} ({})", columns.join(", "));
            self.execute(tx, ddl, "creating the table").await?;
        }
        // SQLite matches identifiers case-insensitively, so compare the same way.
        let absent = |from: &[&str], of: &[&str]| -> Vec<String> {
            let has = |c: &&str| of.iter().any(|o| o.eq_ignore_ascii_case(c));
            from.iter()
                .filter(|c| !has(c))
                .map(|c| c.to_string())
                .collect()
        };
        let existing: Vec<&str> = existing.iter().map(String::as_str).collect();
        let (missing, extra) = (absent(&wanted, &existing), absent(&existing, &wanted));
        let matches = missing.is_empty() && extra.is_empty();
        if !existing.is_empty() && !matches {
            return Err(load_err!(
                Schema,
                self.name,
                "table `{}` does not match the load's columns (not in the table: {missing:?}; \
                 not in the load: {extra:?}); alter the table, drop it to have it recreated, \
                 or change the pipeline's columns",
                self.table
            ));
        }
        let keys = match &self.mode {
            LoadMode::Append => return Ok(()),
            LoadMode::ReplacePartition { column } => std::slice::from_ref(column),
            LoadMode::Merge { keys } => keys.as_slice(),
        };
        if let Some(key) = keys.iter().find(|k| !wanted.contains(&k.as_str())) {
            let message = "is not a column of the load";
            return Err(load_err!(
                Config,
                self.name,
                "mode column `{key}` {message}: {wanted:?}"
            ));
        }
        if keys.is_empty() {
            return Err(load_err!(
                Config,
                self.name,
                "merge needs at least one key column"
            ));
        }
        // replace_partition deletes by partition value: an index keeps that from scanning.
        // Merge's ON CONFLICT(keys) needs a unique index on exactly the keys.
        let (kind, unique) = match self.mode {
            LoadMode::Merge { .. } => ("merge", "UNIQUE "),
            _ => ("partition", ""),
        };
        let index = quote(&format!("{}_weir_{kind}_{}", self.table, keys.join("_")));
        let columns: Vec<String> = keys.iter().map(|k| quote(k)).collect();
        let ddl = format!(
            "CREATE {unique}INDEX IF NOT EXISTS {index} ON {table} ({})",
            columns.join(", ")
        );
        let action = format!("creating the {kind} index (are existing rows unique on it?)");
        self.execute(tx, ddl, &action).await
    }

    async fn execute(&self, tx: &mut Tx, sql: String, action: &str) -> Result<(), LoadError> {
        // Every identifier in `sql` went through `quote`; no value is formatted into SQL.
        let done = sqlx::query(AssertSqlSafe(sql)).execute(&mut **tx).await;
        done.map(drop).map_err(sql_err(&self.name, action))
    }
}

#[async_trait]
impl Sink for SqliteSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn is_committed(&self, load_id: &str) -> Result<bool, LoadError> {
        let found = sqlx::query_scalar::<_, i64>(MARKED).bind(load_id);
        let found = found.fetch_optional(&self.pool).await;
        Ok(found
            .map_err(sql_err(&self.name, "reading the load marker"))?
            .is_some())
    }

    async fn begin(&self, load: &LoadSpec) -> Result<Option<Box<dyn SinkLoad>>, LoadError> {
        // IMMEDIATE takes the write lock up front (waiting up to busy_timeout): a deferred
        // transaction that reads the marker and writes later can fail to upgrade its lock.
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await;
        let mut tx = tx.map_err(sql_err(&self.name, "starting the load transaction"))?;
        let marked = sqlx::query_scalar::<_, i64>(MARKED).bind(&load.load_id);
        let marked = marked.fetch_optional(&mut *tx).await;
        if marked
            .map_err(sql_err(&self.name, "reading the load marker"))?
            .is_some()
        {
            let done = tx.rollback().await;
            done.map_err(sql_err(&self.name, "ending the replay's transaction"))?;
            return Ok(None);
        }
        let schema = data_schema(&load.schema);
        if schema.fields().is_empty() {
            return Err(load_err!(
                Schema,
                self.name,
                "the load has no columns to write"
            ));
        }
        for field in schema.fields() {
            check_identifier(&self.name, field.name())?;
            sql_type(&self.name, field)?;
        }
        self.prepare_table(&mut tx, &schema).await?;
        let partition = match &self.mode {
            LoadMode::ReplacePartition { column } => {
                let sql = format!(
                    "DELETE FROM {} WHERE {} IS ?",
                    quote(&self.table),
                    quote(column)
                );
                schema
                    .index_of(column)
                    .ok()
                    .map(|index| (index, Arc::from(sql)))
            }
            _ => None,
        };
        Ok(Some(Box::new(SqliteLoad {
            sink: self.name.clone(),
            load_id: load.load_id.clone(),
            pipeline: load.pipeline.clone(),
            table: self.table.clone(),
            insert: insert_sql(&self.table, &schema, &self.mode),
            schema,
            tx,
            partition,
            seen: HashSet::new(),
            rows: 0,
            failed: false,
            writeback: Writeback::start(&self.path),
        })))
    }
}

/// The load's INSERT (an upsert in merge mode), in parts for statements of one and of many rows.
fn insert_sql(table: &str, schema: &SchemaRef, mode: &LoadMode) -> bulk::InsertSql {
    let names: Vec<String> = schema.fields().iter().map(|f| quote(f.name())).collect();
    let upsert = match mode {
        LoadMode::Merge { keys } => {
            let keys: Vec<String> = keys.iter().map(|k| quote(k)).collect();
            let set = names.iter().filter(|n| !keys.contains(n));
            let set: Vec<String> = set.map(|n| format!("{n} = excluded.{n}")).collect();
            let action = match set.is_empty() {
                true => "NOTHING".to_owned(),
                false => format!("UPDATE SET {}", set.join(", ")),
            };
            format!(" ON CONFLICT ({}) DO {action}", keys.join(", "))
        }
        _ => String::new(),
    };
    bulk::InsertSql {
        head: format!(
            "INSERT INTO {} ({}) VALUES ",
            quote(table),
            names.join(", ")
        ),
        columns: names.len(),
        tail: upsert,
    }
}

struct SqliteLoad {
    sink: String,
    load_id: String,
    pipeline: String,
    table: String,
    schema: SchemaRef,
    insert: bulk::InsertSql,
    /// The whole load: rows, deletes and marker commit or roll back together.
    tx: Tx,
    /// replace_partition: the partition column's index and its DELETE statement.
    partition: Option<(usize, Arc<str>)>,
    /// Partition values already deleted in this load (so rows loaded earlier stay).
    seen: HashSet<String>,
    rows: u64,
    failed: bool,
    /// Lives until the commit (or abort) returns, so the commit's syncs find less to write.
    writeback: Writeback,
}

impl SqliteLoad {
    async fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), LoadError> {
        let batch = project(&self.sink, batch, &self.schema)?;
        let fields = self.schema.fields().iter().zip(batch.columns());
        let columns = fields.map(|(f, a)| Column::new(&self.sink, f, a));
        let columns = columns.collect::<Result<Vec<_>, _>>()?;
        if let Some((index, delete)) = self.partition.clone() {
            for row in 0..batch.num_rows() {
                if self.seen.insert(columns[index].key(row)) {
                    let mut args = SqliteArguments::default();
                    columns[index].add_to(&mut args, row);
                    let query = sqlx::query_with(AssertSqlSafe(delete.clone()), args);
                    let done = query.execute(&mut *self.tx).await;
                    done.map_err(sql_err(&self.sink, "deleting the partition's old rows"))?;
                }
            }
        }
        let handle = self.tx.lock_handle().await;
        let mut handle = handle.map_err(sql_err(&self.sink, "locking the connection"))?;
        let db = handle.as_raw_handle();
        let rows = batch.num_rows();
        // Inline on the sink's task, blocking its worker for the batch: with
        // `block_in_place` the worker handoffs made the 2 GB memory-bound run 50% slower
        // and its peak RSS 386 MiB instead of 216 (a thread, and its malloc arena, each).
        // SAFETY: the lock keeps sqlx's worker off the connection until `handle` drops,
        // after the call; the call cannot be cancelled half-way (no await inside).
        let inserted = unsafe { bulk::insert(db, &self.insert, &columns, rows) };
        inserted.map_err(|failed| LoadError::Sqlite {
            sink: self.sink.clone(),
            action: format!(
                "inserting row {} of the load",
                self.rows + failed.row as u64 + 1
            ),
            source: failed.error.into(),
        })?;
        self.rows += rows as u64;
        Ok(())
    }
}

#[async_trait]
impl SinkLoad for SqliteLoad {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), LoadError> {
        // A failed write may have written part of a batch: such a load must not commit.
        if self.failed {
            return Err(super::failed_earlier(&self.sink));
        }
        let result = self.write_batch(batch).await;
        self.failed = result.is_err();
        result
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, LoadError> {
        if self.failed {
            return Err(super::failed_earlier(&self.sink));
        }
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let sql = "INSERT INTO _weir_loads (load_id, pipeline, table_name, rows, committed_at) \
                   VALUES (?, ?, ?, ?, ?)";
        let (id, pipeline, table) = (&self.load_id, &self.pipeline, &self.table);
        let marker = sqlx::query(sql)
            .bind(id)
            .bind(pipeline)
            .bind(table)
            .bind(self.rows as i64);
        let done = marker.bind(now).execute(&mut *self.tx).await;
        done.map_err(sql_err(&self.sink, "writing the load marker"))?;
        self.writeback.checkpoint_begins();
        let done = self.tx.commit().await;
        done.map_err(sql_err(&self.sink, "committing the load"))?;
        Ok(self.rows)
    }

    async fn abort(self: Box<Self>) -> Result<(), LoadError> {
        let done = self.tx.rollback().await;
        done.map_err(sql_err(&self.sink, "rolling back the load"))
    }
}

/// `"name"` with embedded quotes doubled: the only way identifiers reach SQL text.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn check_identifier(sink: &str, name: &str) -> Result<(), LoadError> {
    // SQLite ends statement text at a NUL, which quoting cannot protect against.
    match name.is_empty() || name.contains('\0') {
        true => Err(load_err!(
            Schema,
            sink,
            "name {name:?} is empty or has a NUL; rename it"
        )),
        false => Ok(()),
    }
}

fn sql_err<'a>(sink: &'a str, action: &'a str) -> impl FnOnce(sqlx::Error) -> LoadError + 'a {
    move |source| LoadError::Sqlite {
        sink: sink.to_owned(),
        action: action.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_are_synced_before_the_state_records_them() {
        let dir = tempfile::tempdir().unwrap();
        let sink = SqliteSink::connect("wh", &dir.path().join("w.db"), "t", LoadMode::Append)
            .await
            .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&sink.pool)
            .await
            .unwrap();
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&sink.pool)
            .await
            .unwrap();
        assert_eq!((mode.as_str(), synchronous), ("wal", 2), "2 is FULL");
    }

    async fn page_size(sink: &SqliteSink) -> i64 {
        sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&sink.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn databases_it_creates_get_large_pages_and_others_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let connect = |file: &str| {
            let path = dir.path().join(file);
            async move { SqliteSink::connect("wh", &path, "t", LoadMode::Append).await }
        };
        let created = connect("new.db").await.unwrap();
        assert_eq!(page_size(&created).await, i64::from(PAGE_SIZE));

        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("old.db"))
            .create_if_missing(true)
            .page_size(4096)
            .journal_mode(SqliteJournalMode::Wal);
        let old = SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE kept (x)")
            .execute(&old)
            .await
            .unwrap();
        old.close().await;
        let existing = connect("old.db").await.unwrap();
        assert_eq!(page_size(&existing).await, 4096);
    }
}
