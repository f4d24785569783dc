//! SQLite sink: one table; each load is ONE transaction holding its rows and its marker
//! (a row of `_weir_loads`), so a load is either wholly visible and marked, or absent.
//!
//! # Type mapping
//!
//! | Arrow | column type | stored value |
//! |---|---|---|
//! | Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32 | INTEGER | the number |
//! | UInt64 | INTEGER | the number; a value above `i64::MAX` is an error |
//! | Float32, Float64 | REAL | the number (Float32 widened exactly) |
//! | Utf8, LargeUtf8, Utf8View | TEXT | the string |
//! | Boolean | INTEGER | 0 or 1 |
//! | Date32 | TEXT | `YYYY-MM-DD` |
//! | Timestamp (any unit, any zone) | TEXT | RFC 3339 in UTC with microseconds, `2024-01-03T09:15:00.000000Z`: sorts and compares as text; nanoseconds are floored to microseconds; a timestamp without zone is taken as UTC |
//! | Decimal32/64/128/256 | TEXT | the exact decimal, `12.30` |
//! | anything else | | an error naming the column and its type |
//!
//! Nulls are NULL. Identifiers are always double-quoted; values are always bound parameters.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, SchemaRef, TimeUnit, UInt64Type};
use async_trait::async_trait;
use chrono::{Datelike, Timelike};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Arguments, AssertSqlSafe, Sqlite, SqlitePool, Transaction};

use super::{LoadError, LoadMode, LoadSpec, Sink, SinkLoad, data_schema, project};

/// How long a statement waits for another connection's lock before failing with BUSY.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite's limit on bound parameters per statement (SQLITE_MAX_VARIABLE_NUMBER since 3.32).
const MAX_VARIABLES: usize = 32_766;

const MARKER_DDL: &str = "CREATE TABLE IF NOT EXISTS _weir_loads (load_id TEXT PRIMARY KEY, pipeline TEXT, \
     table_name TEXT, rows INTEGER, committed_at TEXT)";

pub struct SqliteSink {
    name: String,
    table: String,
    mode: LoadMode,
    pool: SqlitePool,
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
        check_identifier(name, "table", table)?;
        if table
            .to_ascii_lowercase()
            .starts_with(super::PROVENANCE_PREFIX)
        {
            return Err(config(
                name,
                format!(
                    "table name `{table}` is reserved (`_weir_` tables are Weir's own); choose another"
                ),
            ));
        }
        if let Some(parent) = db_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| LoadError::Io {
                    sink: name.to_owned(),
                    action: format!("creating directory {}", parent.display()),
                    source,
                })?;
        }
        // WAL lets readers run during a load; NORMAL sync keeps commits atomic (a power cut
        // can lose the last commit, marker included, which a replay then redoes).
        let options = SqliteConnectOptions::new()
            .filename(db_path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout);
        let action = format!("opening {}", db_path.display());
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(sql_err(name, &action))?;
        sqlx::query(MARKER_DDL)
            .execute(&pool)
            .await
            .map_err(sql_err(name, "creating the _weir_loads table"))?;
        Ok(SqliteSink {
            name: name.to_owned(),
            table: table.to_owned(),
            mode,
            pool,
        })
    }

    /// Creates the table if missing (else checks its columns) and the index the mode needs.
    async fn prepare_table(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        schema: &SchemaRef,
    ) -> Result<(), LoadError> {
        let existing: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(&self.table)
            .fetch_all(&mut **tx)
            .await
            .map_err(sql_err(&self.name, "reading the table's columns"))?;
        let wanted: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        if existing.is_empty() {
            let columns: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| Ok(format!("{} {}", quote(f.name()), sql_type(&self.name, f)?)))
                .collect::<Result<_, LoadError>>()?;
            let ddl = format!(
                "CREATE TABLE {} ({})",
                quote(&self.table),
                columns.join(", ")
            );
            self.execute(tx, ddl, "creating the table").await?;
        } else {
            // SQLite matches identifiers case-insensitively, so compare the same way.
            let has = |cols: &[&str], c: &str| cols.iter().any(|x| x.eq_ignore_ascii_case(c));
            let existing_ref: Vec<&str> = existing.iter().map(String::as_str).collect();
            let missing: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|c| !has(&existing_ref, c))
                .collect();
            let extra: Vec<&str> = existing_ref
                .iter()
                .copied()
                .filter(|c| !has(&wanted, c))
                .collect();
            if !missing.is_empty() || !extra.is_empty() {
                return Err(schema_err(
                    &self.name,
                    format!(
                        "table `{}` does not match the load's columns (not in the table: {missing:?}; not in the load: {extra:?}); \
                     alter the table, drop it to have it recreated, or change the pipeline's columns",
                        self.table
                    ),
                ));
            }
        }
        let need = |column: &str| {
            if wanted.contains(&column) {
                Ok(())
            } else {
                Err(config(
                    &self.name,
                    format!(
                        "mode column `{column}` is not a column of the load (columns: {wanted:?})"
                    ),
                ))
            }
        };
        match &self.mode {
            LoadMode::Append => {}
            LoadMode::ReplacePartition { column } => {
                need(column)?;
                // Each load deletes by partition value: an index keeps that from scanning.
                let index = quote(&format!("{}_weir_partition_{column}", self.table));
                let ddl = format!(
                    "CREATE INDEX IF NOT EXISTS {index} ON {} ({})",
                    quote(&self.table),
                    quote(column)
                );
                self.execute(tx, ddl, "creating the partition index")
                    .await?;
            }
            LoadMode::Merge { keys } => {
                if keys.is_empty() {
                    return Err(config(
                        &self.name,
                        "merge needs at least one key column".into(),
                    ));
                }
                keys.iter().try_for_each(|k| need(k))?;
                // ON CONFLICT(keys) needs a unique index on exactly those columns.
                let index = quote(&format!("{}_weir_merge_{}", self.table, keys.join("_")));
                let cols: Vec<String> = keys.iter().map(|k| quote(k)).collect();
                let ddl = format!(
                    "CREATE UNIQUE INDEX IF NOT EXISTS {index} ON {} ({})",
                    quote(&self.table),
                    cols.join(", ")
                );
                self.execute(tx, ddl, "creating the unique index on the merge keys (are existing rows unique on them?)").await?;
            }
        }
        Ok(())
    }

    async fn execute(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        sql: String,
        action: &str,
    ) -> Result<(), LoadError> {
        // Every identifier in `sql` went through `quote`; no value is formatted into SQL.
        sqlx::query(AssertSqlSafe(sql))
            .execute(&mut **tx)
            .await
            .map_err(sql_err(&self.name, action))?;
        Ok(())
    }
}

#[async_trait]
impl Sink for SqliteSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn is_committed(&self, load_id: &str) -> Result<bool, LoadError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM _weir_loads WHERE load_id = ?")
            .bind(load_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_err(&self.name, "reading the load marker"))?;
        Ok(found.is_some())
    }

    async fn begin(&self, load: &LoadSpec) -> Result<Option<Box<dyn SinkLoad>>, LoadError> {
        // IMMEDIATE takes the write lock up front (waiting up to busy_timeout): a deferred
        // transaction that reads the marker and writes later can fail to upgrade its lock.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sql_err(&self.name, "starting the load transaction"))?;
        let marked: Option<i64> = sqlx::query_scalar("SELECT 1 FROM _weir_loads WHERE load_id = ?")
            .bind(&load.load_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(sql_err(&self.name, "reading the load marker"))?;
        if marked.is_some() {
            tx.rollback()
                .await
                .map_err(sql_err(&self.name, "ending the replay's transaction"))?;
            return Ok(None);
        }
        let schema = data_schema(&load.schema);
        if schema.fields().is_empty() {
            return Err(schema_err(
                &self.name,
                "the load has no columns to write".into(),
            ));
        }
        for field in schema.fields() {
            check_identifier(&self.name, "column", field.name())?;
            sql_type(&self.name, field)?;
        }
        self.prepare_table(&mut tx, &schema).await?;
        let partition = match &self.mode {
            LoadMode::ReplacePartition { column } => {
                let index = schema.index_of(column).expect("checked by prepare_table");
                let sql = format!(
                    "DELETE FROM {} WHERE {} IS ?",
                    quote(&self.table),
                    quote(column)
                );
                Some((index, Arc::<str>::from(sql)))
            }
            _ => None,
        };
        Ok(Some(Box::new(SqliteLoad {
            sink: self.name.clone(),
            load_id: load.load_id.clone(),
            pipeline: load.pipeline.clone(),
            table: self.table.clone(),
            insert: Insert::new(&self.table, &schema, &self.mode),
            schema,
            tx,
            partition,
            seen: HashSet::new(),
            args: SqliteArguments::default(),
            pending: 0,
            rows: 0,
            failed: false,
        })))
    }
}

/// The multi-row INSERT: as many rows per statement as the parameter limit allows. The
/// full-size statement text is built once; sqlx caches its prepared form per connection.
struct Insert {
    head: String,
    row: String,
    tail: String,
    rows_per_statement: usize,
    full: Arc<str>,
}

impl Insert {
    fn new(table: &str, schema: &SchemaRef, mode: &LoadMode) -> Insert {
        let names: Vec<String> = schema.fields().iter().map(|f| quote(f.name())).collect();
        let head = format!(
            "INSERT INTO {} ({}) VALUES ",
            quote(table),
            names.join(", ")
        );
        let row = format!("({})", vec!["?"; names.len()].join(","));
        let tail = match mode {
            LoadMode::Merge { keys } => {
                let keyed = |f: &&Arc<Field>| keys.iter().any(|k| k == f.name());
                let keys: Vec<String> = keys.iter().map(|k| quote(k)).collect();
                let sets: Vec<String> = schema
                    .fields()
                    .iter()
                    .filter(|f| !keyed(f))
                    .map(|f| format!("{0} = excluded.{0}", quote(f.name())))
                    .collect();
                let action = if sets.is_empty() {
                    "NOTHING".to_owned()
                } else {
                    format!("UPDATE SET {}", sets.join(", "))
                };
                format!(" ON CONFLICT ({}) DO {action}", keys.join(", "))
            }
            _ => String::new(),
        };
        let rows_per_statement = (MAX_VARIABLES / names.len()).max(1);
        let mut insert = Insert {
            head,
            row,
            tail,
            rows_per_statement,
            full: Arc::from(""),
        };
        insert.full = Arc::from(insert.sql(rows_per_statement));
        insert
    }

    fn sql(&self, rows: usize) -> String {
        let mut sql =
            String::with_capacity(self.head.len() + rows * (self.row.len() + 1) + self.tail.len());
        sql.push_str(&self.head);
        for i in 0..rows {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&self.row);
        }
        sql.push_str(&self.tail);
        sql
    }
}

struct SqliteLoad {
    sink: String,
    load_id: String,
    pipeline: String,
    table: String,
    schema: SchemaRef,
    insert: Insert,
    /// The whole load: rows, deletes and marker commit or roll back together.
    tx: Transaction<'static, Sqlite>,
    /// replace_partition: the partition column's index and its DELETE statement.
    partition: Option<(usize, Arc<str>)>,
    /// Partition values already deleted in this load (so rows loaded earlier stay).
    seen: HashSet<Value>,
    /// Rows bound but not yet inserted; carried across batches so statements stay full.
    args: SqliteArguments,
    pending: usize,
    rows: u64,
    failed: bool,
}

impl SqliteLoad {
    async fn flush(&mut self) -> Result<(), LoadError> {
        if self.pending == 0 {
            return Ok(());
        }
        let sql = if self.pending == self.insert.rows_per_statement {
            self.insert.full.clone()
        } else {
            Arc::from(self.insert.sql(self.pending))
        };
        let args = std::mem::take(&mut self.args);
        sqlx::query_with::<Sqlite, _>(AssertSqlSafe(sql), args)
            .execute(&mut *self.tx)
            .await
            .map_err(sql_err(&self.sink, "inserting rows"))?;
        self.pending = 0;
        Ok(())
    }

    async fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), LoadError> {
        let batch = project(&self.sink, batch, &self.schema)?;
        let columns: Vec<Column> = self
            .schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, a)| Column::new(&self.sink, f, a))
            .collect::<Result<_, _>>()?;
        if let Some((index, delete)) = self.partition.clone() {
            for row in 0..batch.num_rows() {
                let value = columns[index].value(row).map_err(|e| {
                    schema_err(
                        &self.sink,
                        format!("column `{}`: {e}", self.schema.field(index).name()),
                    )
                })?;
                if !self.seen.contains(&value) {
                    let query = value
                        .clone()
                        .bind(sqlx::query(AssertSqlSafe(delete.clone())));
                    query
                        .execute(&mut *self.tx)
                        .await
                        .map_err(sql_err(&self.sink, "deleting the partition's old rows"))?;
                    self.seen.insert(value);
                }
            }
        }
        for row in 0..batch.num_rows() {
            for (column, field) in columns.iter().zip(self.schema.fields()) {
                column.add_to(&mut self.args, row).map_err(|e| {
                    schema_err(&self.sink, format!("column `{}`: {e}", field.name()))
                })?;
            }
            self.pending += 1;
            if self.pending == self.insert.rows_per_statement {
                self.flush().await?;
            }
        }
        self.rows += batch.num_rows() as u64;
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
        self.flush().await?;
        let committed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        sqlx::query("INSERT INTO _weir_loads (load_id, pipeline, table_name, rows, committed_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&self.load_id)
            .bind(&self.pipeline)
            .bind(&self.table)
            .bind(self.rows as i64)
            .bind(committed_at)
            .execute(&mut *self.tx)
            .await
            .map_err(sql_err(&self.sink, "writing the load marker"))?;
        let rows = self.rows;
        self.tx
            .commit()
            .await
            .map_err(sql_err(&self.sink, "committing the load"))?;
        Ok(rows)
    }

    async fn abort(self: Box<Self>) -> Result<(), LoadError> {
        self.tx
            .rollback()
            .await
            .map_err(sql_err(&self.sink, "rolling back the load"))
    }
}

/// A column ready to bind: numbers as SQLite stores them; dates and timestamps kept as
/// numbers and formatted while binding (one string allocation per value).
enum Column {
    Int(Int64Array),
    Real(Float64Array),
    Text(StringArray),
    /// Days since the epoch.
    Date(Date32Array),
    /// Microseconds since the epoch, UTC.
    Micros(Int64Array),
}

/// One value, hashable, for the replace_partition bookkeeping.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Value {
    Null,
    Int(i64),
    /// The bits of the f64, so the value can be hashed.
    Real(u64),
    Text(String),
}

impl Value {
    fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, Sqlite, SqliteArguments>,
    ) -> sqlx::query::Query<'q, Sqlite, SqliteArguments> {
        match self {
            Value::Null => query.bind(None::<i64>),
            Value::Int(v) => query.bind(v),
            Value::Real(bits) => query.bind(f64::from_bits(bits)),
            Value::Text(v) => query.bind(v),
        }
    }
}

impl Column {
    fn new(sink: &str, field: &Field, array: &ArrayRef) -> Result<Column, LoadError> {
        let name = field.name();
        let wrap = |e: arrow::error::ArrowError| {
            schema_err(sink, format!("converting column `{name}`: {e}"))
        };
        let to = |t: &DataType| cast(array, t).map_err(wrap);
        Ok(match array.data_type() {
            DataType::UInt64 => {
                if let Some(max) = arrow::compute::max(array.as_primitive::<UInt64Type>())
                    .filter(|m| *m > i64::MAX as u64)
                {
                    return Err(schema_err(
                        sink,
                        format!(
                            "column `{name}` holds {max}, above SQLite's largest integer {}; filter those rows or cast the column to utf8 in a transform",
                            i64::MAX
                        ),
                    ));
                }
                Column::Int(to(&DataType::Int64)?.as_primitive().clone())
            }
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::Boolean => Column::Int(to(&DataType::Int64)?.as_primitive().clone()),
            DataType::Float32 | DataType::Float64 => {
                Column::Real(to(&DataType::Float64)?.as_primitive().clone())
            }
            DataType::Date32 => Column::Date(array.as_primitive().clone()),
            DataType::Timestamp(unit, _) => {
                // The stored i64s are epoch values in `unit` (UTC whatever the zone).
                let (scale, div) = match unit {
                    TimeUnit::Second => (1_000_000, 1),
                    TimeUnit::Millisecond => (1_000, 1),
                    TimeUnit::Microsecond => (1, 1),
                    TimeUnit::Nanosecond => (1, 1_000),
                };
                let raw = to(&DataType::Int64)?;
                let micros: Int64Array = raw
                    .as_primitive::<Int64Type>()
                    .try_unary(|v: i64| {
                        v.div_euclid(div).checked_mul(scale).ok_or_else(|| {
                            arrow::error::ArrowError::ComputeError(format!(
                                "timestamp {v} {unit:?} is out of range"
                            ))
                        })
                    })
                    .map_err(wrap)?;
                Column::Micros(micros)
            }
            // Decimals and all strings: arrow's cast gives the exact text.
            _ => {
                sql_type(sink, field)?;
                Column::Text(to(&DataType::Utf8)?.as_string::<i32>().clone())
            }
        })
    }

    /// The value of `row` as SQLite receives it (`None` for NULL).
    fn text(&self, row: usize) -> Result<Option<String>, String> {
        let mut out = String::new();
        match self {
            Column::Date(a) if a.is_valid(row) => {
                let day = chrono::DateTime::from_timestamp(i64::from(a.value(row)) * 86_400, 0)
                    .ok_or("date out of range")?;
                write_date(&mut out, &day);
            }
            Column::Micros(a) if a.is_valid(row) => {
                let time = chrono::DateTime::from_timestamp_micros(a.value(row))
                    .ok_or("timestamp out of range")?;
                write_date(&mut out, &time);
                write_time(&mut out, &time);
            }
            _ => return Ok(None),
        }
        Ok(Some(out))
    }

    fn value(&self, row: usize) -> Result<Value, String> {
        Ok(match self {
            Column::Int(a) if a.is_valid(row) => Value::Int(a.value(row)),
            Column::Real(a) if a.is_valid(row) => Value::Real(a.value(row).to_bits()),
            Column::Text(a) if a.is_valid(row) => Value::Text(a.value(row).to_owned()),
            Column::Date(_) | Column::Micros(_) => self.text(row)?.map_or(Value::Null, Value::Text),
            _ => Value::Null,
        })
    }

    fn add_to(
        &self,
        args: &mut SqliteArguments,
        row: usize,
    ) -> Result<(), sqlx::error::BoxDynError> {
        match self {
            Column::Int(a) => args.add(a.is_valid(row).then(|| a.value(row))),
            Column::Real(a) => args.add(a.is_valid(row).then(|| a.value(row))),
            Column::Text(a) => args.add(a.is_valid(row).then(|| a.value(row))),
            Column::Date(_) | Column::Micros(_) => args.add(self.text(row)?),
        }
    }
}

/// `YYYY-MM-DD`, written by hand: chrono's `format` re-parses its pattern for every value,
/// which dominated the load's profile.
fn write_date(out: &mut String, t: &chrono::DateTime<chrono::Utc>) {
    if !(0..=9999).contains(&t.year()) {
        write!(out, "{}", t.format("%Y-%m-%d")).expect("writing to a string");
        return;
    }
    push_digits(out, t.year() as u32, 4);
    out.push('-');
    push_digits(out, t.month(), 2);
    out.push('-');
    push_digits(out, t.day(), 2);
}

/// `THH:MM:SS.ffffffZ`.
fn write_time(out: &mut String, t: &chrono::DateTime<chrono::Utc>) {
    out.push('T');
    push_digits(out, t.hour(), 2);
    out.push(':');
    push_digits(out, t.minute(), 2);
    out.push(':');
    push_digits(out, t.second(), 2);
    out.push('.');
    push_digits(out, t.timestamp_subsec_micros(), 6);
    out.push('Z');
}

fn push_digits(out: &mut String, value: u32, width: u32) {
    for power in (0..width).rev() {
        out.push(char::from(b'0' + (value / 10u32.pow(power) % 10) as u8));
    }
}

/// The declared column type; also the one place that says which Arrow types load.
fn sql_type(sink: &str, field: &Field) -> Result<&'static str, LoadError> {
    Ok(match field.data_type() {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Boolean => "INTEGER",
        DataType::Float32 | DataType::Float64 => "REAL",
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Date32
        | DataType::Timestamp(..)
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "TEXT",
        other => {
            return Err(schema_err(
                sink,
                format!(
                    "column `{}` has type {other}, which the SQLite sink cannot store; cast it in a transform \
                 (to int64, float64, utf8, bool, date or timestamp) or drop it",
                    field.name()
                ),
            ));
        }
    })
}

/// `"name"` with embedded quotes doubled: the only way identifiers reach SQL text.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn check_identifier(sink: &str, what: &str, name: &str) -> Result<(), LoadError> {
    // SQLite ends statement text at a NUL, which quoting cannot protect against.
    if name.is_empty() || name.contains('\0') {
        return Err(schema_err(
            sink,
            format!("{what} name {name:?} is empty or contains a NUL character; rename it"),
        ));
    }
    Ok(())
}

fn sql_err<'a>(sink: &'a str, action: &'a str) -> impl FnOnce(sqlx::Error) -> LoadError + 'a {
    move |source| LoadError::Sqlite {
        sink: sink.to_owned(),
        action: action.to_owned(),
        source,
    }
}

fn schema_err(sink: &str, message: String) -> LoadError {
    LoadError::Schema {
        sink: sink.to_owned(),
        message,
    }
}

fn config(sink: &str, message: String) -> LoadError {
    LoadError::Config {
        sink: sink.to_owned(),
        message,
    }
}
