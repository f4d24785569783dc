//! Postgres sink: one table; each load is ONE transaction holding its rows, bulk-loaded with
//! binary `COPY ... FROM STDIN`, and its marker (a row of `_weir_loads` in the table's
//! schema), so a load is either wholly visible and marked, or absent.
//!
//! - `append` copies straight into the table.
//! - `replace_partition` and `merge` copy into a temporary staging table, then delete the
//!   partitions (or the keys) the load holds from the table and insert the staged rows; in a
//!   merge the last row of a key within the load wins.
//!
//! The table is created from the load's columns if missing (types: [`schema`]); an existing
//! table is checked against them under the sink's [`SchemaPolicy`]. Identifiers are always
//! double-quoted; values are always bound parameters or COPY data.

mod copy;
mod schema;

use std::str::FromStr;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Postgres, Transaction};

use super::{LoadError, LoadMode, LoadSpec, Sink, SinkLoad, data_schema, project};
pub use crate::config::types::SchemaPolicy;
use schema::TableColumns;

type Tx = Transaction<'static, Postgres>;

/// Days and microseconds from 1970-01-01 (Arrow) to 2000-01-01 (Postgres' epoch).
pub(crate) const PG_EPOCH_DAYS: i32 = 10_957;
pub(crate) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

const STAGE: &str = "weir_stage";
/// Orders a merge's staged rows, so the last row of a key wins.
const STAGE_SEQ: &str = "_weir_seq";

pub struct PostgresSink {
    name: String,
    /// `schema.table` as written; `quoted` for SQL.
    table: String,
    quoted: String,
    /// The quoted `_weir_loads` in the table's schema.
    markers: String,
    mode: LoadMode,
    policy: SchemaPolicy,
    pool: PgPool,
}

/// `"schema"."table"` from `schema.table` or `table`.
pub fn quote_qualified(name: &str) -> String {
    name.split('.').map(quote).collect::<Vec<_>>().join(".")
}

/// `"identifier"`, for SQL (identifiers cannot be bound as parameters).
pub(crate) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

impl PostgresSink {
    /// Connects (failing early on a wrong URL, password or database) and creates the
    /// `_weir_loads` marker table if missing.
    pub async fn connect(
        name: &str,
        url: &str,
        table: &str,
        mode: LoadMode,
        policy: SchemaPolicy,
    ) -> Result<PostgresSink, LoadError> {
        let options = PgConnectOptions::from_str(url)
            // sqlx's message may quote the URL, password included.
            .map_err(|_| load_err!(Config, name, "`url` is not a valid postgres:// URL"))?
            .options([("TimeZone", "UTC")]);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options)
            .await
            .map_err(pg_err(name, "connecting"))?;
        let markers = match table.rsplit_once('.') {
            Some((schema, _)) => format!("{}._weir_loads", quote_qualified(schema)),
            None => "_weir_loads".to_string(),
        };
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {markers} (table_name text NOT NULL, load_id text NOT NULL, \
             pipeline text NOT NULL, rows bigint NOT NULL, committed_at timestamptz NOT NULL, \
             PRIMARY KEY (table_name, load_id))"
        );
        sqlx::query(AssertSqlSafe(ddl))
            .execute(&pool)
            .await
            .map_err(pg_err(name, "creating the _weir_loads table"))?;
        Ok(PostgresSink {
            name: name.to_string(),
            table: table.to_string(),
            quoted: quote_qualified(table),
            markers,
            mode,
            policy,
            pool,
        })
    }

    async fn marked(&self, tx: &mut Tx, load_id: &str) -> Result<bool, LoadError> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE table_name = $1 AND load_id = $2",
            self.markers
        );
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(&self.table)
            .bind(load_id)
            .fetch_one(&mut **tx)
            .await
            .map_err(pg_err(&self.name, "reading load markers"))?;
        Ok(count > 0)
    }
}

#[async_trait]
impl Sink for PostgresSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn is_committed(&self, load_id: &str) -> Result<bool, LoadError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(pg_err(&self.name, "connecting"))?;
        let marked = self.marked(&mut tx, load_id).await;
        let _ = tx.rollback().await;
        marked
    }

    async fn begin(&self, load: &LoadSpec) -> Result<Option<Box<dyn SinkLoad>>, LoadError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(pg_err(&self.name, "starting the load's transaction"))?;
        if self.marked(&mut tx, &load.load_id).await? {
            let _ = tx.rollback().await;
            return Ok(None);
        }
        let data = data_schema(&load.schema);
        let columns = schema::prepare_table(
            &mut tx,
            &self.name,
            &self.table,
            &self.quoted,
            &data,
            &self.mode,
            self.policy,
        )
        .await?;
        let target = match self.mode {
            LoadMode::Append => self.quoted.clone(),
            LoadMode::ReplacePartition { .. } | LoadMode::Merge { .. } => {
                let stage = format!(
                    "CREATE TEMP TABLE {STAGE} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
                    self.quoted
                );
                execute(&mut tx, &self.name, stage, "creating the staging table").await?;
                let seq = format!("ALTER TABLE {STAGE} ADD COLUMN {STAGE_SEQ} bigserial");
                execute(&mut tx, &self.name, seq, "creating the staging table").await?;
                STAGE.to_string()
            }
        };
        Ok(Some(Box::new(PostgresLoad {
            sink: self.name.clone(),
            table: self.table.clone(),
            quoted: self.quoted.clone(),
            markers: self.markers.clone(),
            mode: self.mode.clone(),
            pipeline: load.pipeline.clone(),
            load_id: load.load_id.clone(),
            data,
            columns,
            copy_sql: String::new(),
            target,
            tx: Some(tx),
            rows: 0,
            buffer: Vec::new(),
        })))
    }
}

struct PostgresLoad {
    sink: String,
    table: String,
    quoted: String,
    markers: String,
    mode: LoadMode,
    pipeline: String,
    load_id: String,
    /// The load's columns (provenance dropped).
    data: SchemaRef,
    /// The table's columns the load writes, with their Postgres types.
    columns: TableColumns,
    copy_sql: String,
    /// The table, or the staging table.
    target: String,
    /// `None` after a failed write: the transaction is gone, the load can only abort.
    tx: Option<Tx>,
    rows: u64,
    buffer: Vec<u8>,
}

impl PostgresLoad {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[async_trait]
impl SinkLoad for PostgresLoad {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), LoadError> {
        let batch = project(&self.sink, batch, &self.data)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.copy_sql.is_empty() {
            self.copy_sql = format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                self.target,
                self.column_list()
            );
        }
        self.buffer.clear();
        copy::encode(&mut self.buffer, &batch, &self.columns)
            .map_err(|message| load_err!(Schema, self.sink, "{message}"))?;
        let Some(tx) = self.tx.as_mut() else {
            return Err(super::failed_earlier(&self.sink));
        };
        let result = async {
            let mut copy = tx.copy_in_raw(&self.copy_sql).await?;
            copy.send(self.buffer.as_slice()).await?;
            copy.finish().await
        }
        .await;
        match result {
            Ok(rows) => {
                self.rows += rows;
                Ok(())
            }
            Err(e) => {
                // A failed COPY aborts the transaction; roll it back now.
                if let Some(tx) = self.tx.take() {
                    let _ = tx.rollback().await;
                }
                Err(pg_err(&self.sink, "copying rows")(e))
            }
        }
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, LoadError> {
        let Some(mut tx) = self.tx.take() else {
            return Err(super::failed_earlier(&self.sink));
        };
        let columns = self.column_list();
        let staged: Vec<String> = match &self.mode {
            LoadMode::Append => Vec::new(),
            LoadMode::ReplacePartition { column } => {
                let c = quote(column);
                vec![
                    format!(
                        "DELETE FROM {} AS t WHERE EXISTS \
                         (SELECT 1 FROM {STAGE} AS s WHERE s.{c} IS NOT DISTINCT FROM t.{c})",
                        self.quoted
                    ),
                    format!(
                        "INSERT INTO {} ({columns}) SELECT {columns} FROM {STAGE}",
                        self.quoted
                    ),
                ]
            }
            LoadMode::Merge { keys } => {
                let keys: Vec<String> = keys.iter().map(|k| quote(k)).collect();
                let matching = keys
                    .iter()
                    .map(|k| format!("s.{k} IS NOT DISTINCT FROM t.{k}"))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                let key_list = keys.join(", ");
                vec![
                    format!(
                        "DELETE FROM {} AS t WHERE EXISTS (SELECT 1 FROM {STAGE} AS s WHERE {matching})",
                        self.quoted
                    ),
                    format!(
                        "INSERT INTO {} ({columns}) SELECT DISTINCT ON ({key_list}) {columns} \
                         FROM {STAGE} ORDER BY {key_list}, {STAGE_SEQ} DESC",
                        self.quoted
                    ),
                ]
            }
        };
        let mut loaded = self.rows;
        for sql in staged {
            let done = sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(pg_err(&self.sink, "moving the staged rows into the table"))?;
            loaded = done.rows_affected();
        }
        let marker = format!(
            "INSERT INTO {} (table_name, load_id, pipeline, rows, committed_at) \
             VALUES ($1, $2, $3, $4, now())",
            self.markers
        );
        sqlx::query(AssertSqlSafe(marker))
            .bind(&self.table)
            .bind(&self.load_id)
            .bind(&self.pipeline)
            .bind(loaded as i64)
            .execute(&mut *tx)
            .await
            .map_err(pg_err(&self.sink, "recording the load marker"))?;
        tx.commit()
            .await
            .map_err(pg_err(&self.sink, "committing the load"))?;
        Ok(loaded)
    }

    async fn abort(mut self: Box<Self>) -> Result<(), LoadError> {
        match self.tx.take() {
            Some(tx) => tx
                .rollback()
                .await
                .map_err(pg_err(&self.sink, "rolling back the load")),
            None => Ok(()),
        }
    }
}

async fn execute(tx: &mut Tx, sink: &str, sql: String, action: &str) -> Result<(), LoadError> {
    sqlx::query(AssertSqlSafe(sql))
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(pg_err(sink, action))
}

fn pg_err<'a>(sink: &'a str, action: &'a str) -> impl Fn(sqlx::Error) -> LoadError + 'a {
    move |source| LoadError::Postgres {
        sink: sink.to_string(),
        action: action.to_string(),
        source,
    }
}

/// Whether an error from Postgres may go away on a retry: a lost or refused connection, a
/// server shutting down or short of resources, a serialization failure or deadlock.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") // connection exception
                || code.starts_with("53") // insufficient resources
                || code.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
                || code == "40001" // serialization failure
                || code == "40P01" // deadlock
        }),
        _ => false,
    }
}

/// What the user can do about a Postgres error.
pub(super) fn hint(error: &sqlx::Error) -> &'static str {
    match error {
        _ if is_transient(error) => {
            "retrying may succeed; check that the server is up and reachable"
        }
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("28")) => {
            "check the user and password in the sink's `url`"
        }
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "3D000") => {
            "create the database, or fix its name in `url`"
        }
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("42")) => {
            "check the table and its columns against the load"
        }
        _ => "fix the table or the pipeline's columns, then rerun",
    }
}
