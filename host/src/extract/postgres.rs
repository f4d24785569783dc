//! Postgres (sqlx): a table or a query, streamed as bounded Arrow batches.
//!
//! The query runs as `SELECT .. FROM (<query>) AS s WHERE s.cursor > $1 AND s.cursor <= $2
//! ORDER BY s.cursor`, the bounds bound as parameters, and its rows arrive as a stream: the
//! result is never held whole. Column types come from the catalog (a temporary view of the
//! query, rolled back), so an empty result still has its schema.
//!
//! # Types (Postgres → Arrow)
//! | Postgres | Arrow |
//! |---|---|
//! | `boolean` | Boolean |
//! | `smallint`, `integer`, `bigint` | Int16, Int32, Int64 |
//! | `real`, `double precision` | Float32, Float64 |
//! | `numeric(p, s)`, p ≤ 38 | Decimal128(p, s) |
//! | `text`, `varchar`, `char`, `name` | Utf8 |
//! | `bytea` | Binary |
//! | `date` | Date32 |
//! | `time` | Time64(µs) |
//! | `timestamp` | Timestamp(µs) |
//! | `timestamptz` | Timestamp(µs, "UTC") |
//! | one-dimensional arrays of the scalar types above (not numeric) | List |
//! | everything else: `numeric` without precision, `uuid`, `json`, `jsonb`, `interval`, enums, … | Utf8 (Postgres' text form) |
//!
//! NULL is NULL in every column. `infinity` dates and timestamps and `NaN` numerics cannot be
//! represented and fail the row, naming it.

mod decode;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{Field, Schema, SchemaRef};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};

use self::decode::{Column, ColumnKind, RowDecoder};
use super::{
    BatchStream, CursorRange, ExtractError, Part, QuerySpec, cursor_clause, null_cursors, produced,
    send_rows,
};
use crate::load::postgres::quote;

pub struct PostgresSource {
    pool: PgPool,
    spec: QuerySpec,
    /// `postgres 127.0.0.1:5432/shop table orders`: for messages (never the URL: it may hold
    /// a password).
    name: String,
}

impl PostgresSource {
    /// Connects lazily: nothing is contacted until the first list or read.
    pub fn new(url: &str, spec: QuerySpec) -> Result<PostgresSource, ExtractError> {
        let (options, server) = connect_options(url).map_err(|message| ExtractError::Pattern {
            pattern: "source.url".into(),
            message,
        })?;
        let what = spec.relation.describe();
        Ok(PostgresSource {
            pool: PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(15))
                .connect_lazy_with(options),
            spec,
            name: format!("postgres {server} {what}"),
        })
    }

    fn error(&self, action: &str, error: sqlx::Error) -> ExtractError {
        ExtractError::Database {
            source_name: self.name.clone(),
            action: action.to_string(),
            error,
        }
    }

    /// The query's columns, from the catalog: a temporary view of it, rolled back.
    async fn columns(&self) -> Result<Vec<Column>, ExtractError> {
        let describing = "describing the query's columns";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.error("connecting", e))?;
        let view = format!(
            "CREATE TEMP VIEW weir_probe AS {}",
            self.spec.relation.select_sql()
        );
        sqlx::query(AssertSqlSafe(view))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(describing, e))?;
        let rows = sqlx::query(
            "SELECT attname::text, atttypid::int8, atttypmod, format_type(atttypid, atttypmod) \
             FROM pg_attribute WHERE attrelid = 'weir_probe'::regclass \
             AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.error(describing, e))?;
        tx.rollback().await.map_err(|e| self.error(describing, e))?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get(0)?;
                let oid: i64 = row.try_get(1)?;
                let typmod: i32 = row.try_get(2)?;
                let type_name: String = row.try_get(3)?;
                Ok(Column::new(name, oid as u32, typmod, type_name))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.error(describing, e))
    }

    fn cursor_column<'c>(&self, columns: &'c [Column]) -> Result<Option<&'c Column>, ExtractError> {
        let Some(cursor) = &self.spec.cursor else {
            return Ok(None);
        };
        match columns.iter().find(|c| &c.name == cursor) {
            Some(column) => Ok(Some(column)),
            None => Err(ExtractError::MissingCursor {
                path: self.name.clone(),
                column: cursor.clone(),
            }),
        }
    }
}

/// `options` with the session in UTC, and `host:port/database` for messages.
fn connect_options(url: &str) -> Result<(PgConnectOptions, String), String> {
    let options = PgConnectOptions::from_str(url)
        // sqlx's message may quote the URL, password included.
        .map_err(|_| "not a valid postgres:// URL".to_string())?
        .options([("TimeZone", "UTC"), ("DateStyle", "ISO")]);
    let server = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    Ok((options, server))
}

#[async_trait::async_trait]
impl super::Source for PostgresSource {
    async fn list(&self) -> Result<Vec<Part>, ExtractError> {
        Ok(vec![Part {
            name: self.name.clone(),
            fingerprint: None,
            location: String::new(),
        }])
    }

    async fn schema(&self, _: &Part) -> Result<SchemaRef, ExtractError> {
        let columns = self.columns().await?;
        self.cursor_column(&columns)?;
        Ok(Arc::new(Schema::new(
            columns.iter().map(Column::field).collect::<Vec<Field>>(),
        )))
    }

    fn selects_by_cursor(&self) -> bool {
        true
    }

    async fn upper_bound(&self, after: Option<&str>) -> Result<Option<String>, ExtractError> {
        let columns = self.columns().await?;
        let Some(cursor) = self.cursor_column(&columns)? else {
            return Ok(None);
        };
        let c = format!("s.{}", quote(&cursor.name));
        let mut sql = format!(
            "SELECT max({c})::text, count(*) FILTER (WHERE {c} IS NULL) FROM ({}) AS s",
            self.spec.relation.select_sql()
        );
        if after.is_some() {
            sql += &format!(
                " WHERE {c} > CAST($1 AS {}) OR {c} IS NULL",
                cursor.type_name
            );
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        if let Some(after) = after {
            query = query.bind(after);
        }
        let row = query
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error("finding the highest cursor", e))?;
        let (max, nulls): (Option<String>, i64) = (row.get(0), row.get(1));
        if nulls > 0 {
            return Err(null_cursors(&self.name, nulls, &cursor.name));
        }
        Ok(max)
    }

    async fn read(&self, part: &Part, range: &CursorRange) -> Result<BatchStream, ExtractError> {
        let columns = self.columns().await?;
        let cursor = self.cursor_column(&columns)?;
        let select: Vec<String> = columns
            .iter()
            .map(|c| match c.kind {
                ColumnKind::AsText => format!("s.{0}::text AS {0}", quote(&c.name)),
                _ => format!("s.{}", quote(&c.name)),
            })
            .collect();
        let mut sql = format!(
            "SELECT {} FROM ({}) AS s",
            select.join(", "),
            self.spec.relation.select_sql()
        );
        let mut binds = Vec::new();
        if let Some(cursor) = cursor {
            let c = format!("s.{}", quote(&cursor.name));
            let placeholder = |n: usize| format!("CAST(${n} AS {})", cursor.type_name);
            let (clause, values) = cursor_clause(&c, placeholder, range);
            sql += &clause;
            binds = values;
        }

        let pool = self.pool.clone();
        let name = part.name.clone();
        let batch_size = self.spec.batch_size;
        Ok(produced(move |tx| async move {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for bind in binds {
                query = query.bind(bind);
            }
            let mut decoder = RowDecoder::new(&columns, batch_size, &name);
            send_rows(query.fetch(&pool), &mut decoder, batch_size, &name, &tx).await
        }))
    }
}
