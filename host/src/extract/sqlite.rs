//! SQLite (sqlx): a table or a query of a database file, streamed as bounded Arrow batches,
//! selected by cursor like the Postgres source (`WHERE cursor > ? AND cursor <= ?`, bounds
//! bound as parameters, the upper one fixed before reading).
//!
//! # Types (SQLite → Arrow)
//! SQLite types values, not columns, so the column's declared type decides: `INTEGER`/`INT…`
//! → Int64, `REAL`/`FLOAT`/`DOUBLE` → Float64, `BOOLEAN` → Boolean, `BLOB` → Binary, anything
//! else (`TEXT`, `VARCHAR`, `DATE`, `DATETIME`, `NUMERIC`, an expression) → Utf8, SQLite's
//! text form of the value. A value that does not fit its column's type (text in an
//! `INTEGER` column) fails the read, naming the row and column.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder,
    RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, Column, Executor, Row, SqlSafeStr, Statement, TypeInfo};

use super::provenance::Provenance;
use super::{
    BatchStream, CursorRange, ExtractError, Part, QuerySpec, RowBatcher, cursor_clause,
    null_cursors, produced, send_rows,
};
use crate::load::postgres::quote;

pub struct SqliteSource {
    pool: SqlitePool,
    spec: QuerySpec,
    /// `sqlite shop.db table orders`, for messages and provenance.
    name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Real,
    Bool,
    Blob,
    Text,
}

impl Kind {
    fn of(declared: &str) -> Kind {
        let t = declared.to_ascii_uppercase();
        if t.contains("INT") {
            Kind::Int
        } else if ["REAL", "FLOA", "DOUB"].iter().any(|k| t.contains(k)) {
            Kind::Real
        } else if t.starts_with("BOOL") {
            Kind::Bool
        } else if t == "BLOB" {
            Kind::Blob
        } else {
            Kind::Text
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Kind::Int => DataType::Int64,
            Kind::Real => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Blob => DataType::Binary,
            Kind::Text => DataType::Utf8,
        }
    }

    fn builder(self, capacity: usize) -> Box<dyn ArrayBuilder> {
        match self {
            Kind::Int => Box::new(Int64Builder::with_capacity(capacity)),
            Kind::Real => Box::new(Float64Builder::with_capacity(capacity)),
            Kind::Bool => Box::new(BooleanBuilder::with_capacity(capacity)),
            Kind::Blob => Box::new(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            Kind::Text => Box::new(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }
}

impl SqliteSource {
    /// The database file `path` (which must exist), opened read-only; nothing is read yet.
    pub fn new(path: &Path, written: &str, spec: QuerySpec) -> Result<SqliteSource, ExtractError> {
        let what = spec.relation.describe();
        let name = format!("sqlite {written} {what}");
        if !path.is_file() {
            return Err(ExtractError::Read {
                path: name,
                message: format!("no database file at {}", path.display()),
            });
        }
        let options = SqliteConnectOptions::new().filename(path).read_only(true);
        Ok(SqliteSource {
            pool: SqlitePoolOptions::new()
                .max_connections(2)
                .connect_lazy_with(options),
            spec,
            name,
        })
    }

    fn error(&self, action: &str, error: sqlx::Error) -> ExtractError {
        ExtractError::Database {
            source_name: self.name.clone(),
            action: action.to_string(),
            error,
        }
    }

    /// Column names and kinds, from the prepared statement's declared types.
    async fn columns(&self) -> Result<Vec<(String, Kind)>, ExtractError> {
        let sql = self.spec.relation.select_sql();
        let statement = self
            .pool
            .prepare(AssertSqlSafe(sql).into_sql_str())
            .await
            .map_err(|e| self.error("describing the query's columns", e))?;
        let columns: Vec<(String, Kind)> = statement
            .columns()
            .iter()
            .map(|c| (c.name().to_string(), Kind::of(c.type_info().name())))
            .collect();
        if let Some(cursor) = &self.spec.cursor
            && !columns.iter().any(|(name, _)| name == cursor)
        {
            return Err(ExtractError::MissingCursor {
                path: self.name.clone(),
                column: cursor.clone(),
            });
        }
        Ok(columns)
    }
}

fn schema(columns: &[(String, Kind)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, kind)| Field::new(name, kind.data_type(), true))
            .collect::<Vec<_>>(),
    ))
}

#[async_trait::async_trait]
impl super::Source for SqliteSource {
    async fn list(&self) -> Result<Vec<Part>, ExtractError> {
        Ok(vec![Part {
            name: self.name.clone(),
            fingerprint: None,
            location: String::new(),
        }])
    }

    async fn schema(&self, _: &Part) -> Result<SchemaRef, ExtractError> {
        Ok(schema(&self.columns().await?))
    }

    fn selects_by_cursor(&self) -> bool {
        true
    }

    async fn upper_bound(&self, after: Option<&str>) -> Result<Option<String>, ExtractError> {
        let Some(cursor) = &self.spec.cursor else {
            return Ok(None);
        };
        self.columns().await?;
        let c = format!("s.{}", quote(cursor));
        let mut sql = format!(
            "SELECT CAST(max({c}) AS TEXT), count(*) - count({c}) FROM ({}) AS s",
            self.spec.relation.select_sql()
        );
        if after.is_some() {
            sql += &format!(" WHERE {c} > ? OR {c} IS NULL");
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        if let Some(after) = after {
            query = query.bind(after.to_string());
        }
        let finding = "finding the highest cursor";
        let row = query
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(finding, e))?;
        let max: Option<String> = row.try_get(0).map_err(|e| self.error(finding, e))?;
        let nulls: i64 = row.try_get(1).map_err(|e| self.error(finding, e))?;
        if nulls > 0 {
            return Err(null_cursors(&self.name, nulls, cursor));
        }
        Ok(max)
    }

    async fn read(&self, part: &Part, range: &CursorRange) -> Result<BatchStream, ExtractError> {
        let columns = self.columns().await?;
        let mut sql = format!("SELECT * FROM ({}) AS s", self.spec.relation.select_sql());
        let mut binds = Vec::new();
        if let Some(cursor) = &self.spec.cursor {
            let c = format!("s.{}", quote(cursor));
            let (clause, values) = cursor_clause(&c, |_| "?".to_string(), range);
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
            let mut decoder = Decoder::new(columns, batch_size, name.clone());
            send_rows(query.fetch(&pool), &mut decoder, batch_size, &name, &tx).await
        }))
    }
}

/// Rows into one batch at a time, with provenance (`_weir_row` counts from 1 over the read).
struct Decoder {
    columns: Vec<(String, Kind)>,
    builders: Vec<Box<dyn ArrayBuilder>>,
    capacity: usize,
    source: String,
    provenance: Provenance,
    done: i64,
}

impl Decoder {
    fn new(columns: Vec<(String, Kind)>, capacity: usize, source: String) -> Decoder {
        let builders = columns.iter().map(|(_, k)| k.builder(capacity)).collect();
        Decoder {
            columns,
            builders,
            capacity,
            provenance: Provenance::new(&source),
            source,
            done: 0,
        }
    }
}

impl RowBatcher<SqliteRow> for Decoder {
    fn len(&self) -> usize {
        self.builders.first().map_or(0, |b| b.len())
    }

    fn push(&mut self, row: &SqliteRow) -> Result<(), ExtractError> {
        let row_number = self.done + self.len() as i64 + 1;
        for (i, ((name, kind), builder)) in self.columns.iter().zip(&mut self.builders).enumerate()
        {
            let error = |e: sqlx::Error| ExtractError::Read {
                path: self.source.clone(),
                message: format!("row {row_number}: column `{name}`: {e}"),
            };
            let any = builder.as_any_mut();
            match kind {
                Kind::Int => {
                    let b = any.downcast_mut::<Int64Builder>().expect("made for Int");
                    b.append_option(row.try_get::<Option<i64>, _>(i).map_err(error)?);
                }
                Kind::Real => {
                    let b = any.downcast_mut::<Float64Builder>().expect("made for Real");
                    b.append_option(row.try_get::<Option<f64>, _>(i).map_err(error)?);
                }
                Kind::Bool => {
                    let b = any.downcast_mut::<BooleanBuilder>().expect("made for Bool");
                    b.append_option(row.try_get::<Option<bool>, _>(i).map_err(error)?);
                }
                Kind::Blob => {
                    let b = any.downcast_mut::<BinaryBuilder>().expect("made for Blob");
                    b.append_option(row.try_get::<Option<Vec<u8>>, _>(i).map_err(error)?);
                }
                Kind::Text => {
                    // SQLite gives any value as text.
                    let b = any.downcast_mut::<StringBuilder>().expect("made for Text");
                    b.append_option(
                        row.try_get_unchecked::<Option<String>, _>(i)
                            .map_err(error)?,
                    );
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<RecordBatch, ExtractError> {
        let rows = self.len();
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        let batch = RecordBatch::try_new(schema(&self.columns), arrays)
            .and_then(|batch| self.provenance.attach(&batch, self.done + 1))
            .map_err(|e| ExtractError::Read {
                path: self.source.clone(),
                message: e.to_string(),
            })?;
        self.done += rows as i64;
        let capacity = self.capacity;
        self.builders = self
            .columns
            .iter()
            .map(|(_, k)| k.builder(capacity))
            .collect();
        Ok(batch)
    }
}
