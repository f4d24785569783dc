//! The table a Postgres sink loads: created from the load's columns, or checked against them.
//!
//! # Types (Arrow → Postgres)
//! | Arrow | Postgres |
//! |---|---|
//! | Boolean | `boolean` |
//! | Int8, Int16, UInt8 | `smallint` |
//! | Int32, UInt16 | `integer` |
//! | Int64, UInt32 | `bigint` |
//! | Float16, Float32 | `real` |
//! | Float64 | `double precision` |
//! | Decimal128(p, s) | `numeric(p, s)` |
//! | Utf8, LargeUtf8, Utf8View | `text` |
//! | Binary, LargeBinary | `bytea` |
//! | Date32 | `date` |
//! | Time64 | `time` |
//! | Timestamp without zone | `timestamp` |
//! | Timestamp with a zone | `timestamptz` |
//!
//! Other types (UInt64, lists, structs, …) are refused, naming the column. An existing column
//! may be wider than the load's (a `bigint` column takes Int32 values, `double precision`
//! takes Float32, `varchar` takes text); any other difference is a changed type, which fails
//! under every policy.

use arrow::datatypes::{DataType, Schema, TimeUnit};
use sqlx::Row;

use super::{SchemaPolicy, Tx, execute, pg_err, quote};
use crate::load::{LoadError, LoadMode};

/// A Postgres column type the sink writes in binary COPY format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric { precision: u8, scale: i8 },
    Text,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
}

impl PgType {
    fn for_arrow(data_type: &DataType) -> Option<PgType> {
        Some(match data_type {
            DataType::Boolean => PgType::Bool,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => PgType::Int2,
            DataType::Int32 | DataType::UInt16 => PgType::Int4,
            DataType::Int64 | DataType::UInt32 => PgType::Int8,
            DataType::Float16 | DataType::Float32 => PgType::Float4,
            DataType::Float64 => PgType::Float8,
            DataType::Decimal128(precision, scale) => PgType::Numeric {
                precision: *precision,
                scale: *scale,
            },
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PgType::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => PgType::Bytea,
            DataType::Date32 => PgType::Date,
            DataType::Time64(_) | DataType::Time32(_) => PgType::Time,
            DataType::Timestamp(_, None) => PgType::Timestamp,
            DataType::Timestamp(_, Some(_)) => PgType::TimestampTz,
            _ => return None,
        })
    }

    /// An existing column's type, by type oid; `None` for types the sink does not write.
    fn for_oid(oid: u32, scale: i8) -> Option<PgType> {
        Some(match oid {
            16 => PgType::Bool,
            21 => PgType::Int2,
            23 => PgType::Int4,
            20 => PgType::Int8,
            700 => PgType::Float4,
            701 => PgType::Float8,
            1700 => PgType::Numeric {
                precision: 38,
                scale,
            },
            25 | 1043 | 1042 => PgType::Text,
            17 => PgType::Bytea,
            1082 => PgType::Date,
            1083 => PgType::Time,
            1114 => PgType::Timestamp,
            1184 => PgType::TimestampTz,
            _ => return None,
        })
    }

    fn ddl(self) -> String {
        match self {
            PgType::Bool => "boolean".into(),
            PgType::Int2 => "smallint".into(),
            PgType::Int4 => "integer".into(),
            PgType::Int8 => "bigint".into(),
            PgType::Float4 => "real".into(),
            PgType::Float8 => "double precision".into(),
            PgType::Numeric { precision, scale } => format!("numeric({precision}, {scale})"),
            PgType::Text => "text".into(),
            PgType::Bytea => "bytea".into(),
            PgType::Date => "date".into(),
            PgType::Time => "time".into(),
            PgType::Timestamp => "timestamp".into(),
            PgType::TimestampTz => "timestamptz".into(),
        }
    }

    /// Whether a column of type `self` can hold the values of a `load` column.
    fn holds(self, load: PgType) -> bool {
        use PgType::*;
        match (self, load) {
            (Numeric { scale: a, .. }, Numeric { scale: b, .. }) => a >= b,
            (Int4, Int2) | (Int8, Int2 | Int4) | (Float8, Float4) => true,
            (column, load) => column == load,
        }
    }

    /// The Arrow type the COPY encoder reads for this column.
    pub(super) fn arrow(self) -> DataType {
        match self {
            PgType::Bool => DataType::Boolean,
            PgType::Int2 => DataType::Int16,
            PgType::Int4 => DataType::Int32,
            PgType::Int8 => DataType::Int64,
            PgType::Float4 => DataType::Float32,
            PgType::Float8 => DataType::Float64,
            PgType::Numeric { precision, scale } => DataType::Decimal128(precision, scale),
            PgType::Text => DataType::Utf8,
            PgType::Bytea => DataType::Binary,
            PgType::Date => DataType::Date32,
            PgType::Time => DataType::Time64(TimeUnit::Microsecond),
            PgType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// One column the load writes, in the load's column order.
#[derive(Debug, Clone)]
pub(super) struct TableColumn {
    pub name: String,
    pub pg: PgType,
}

pub(super) type TableColumns = Vec<TableColumn>;

struct Existing {
    name: String,
    oid: u32,
    type_name: String,
    scale: i8,
    /// NOT NULL without a default or identity: a load must give it a value.
    required: bool,
}

/// Creates the table if missing, or checks it against `data` under `policy` (adding columns
/// under `evolve`); returns the columns to COPY with their table types.
pub(super) async fn prepare_table(
    tx: &mut Tx,
    sink: &str,
    table: &str,
    quoted: &str,
    data: &Schema,
    mode: &LoadMode,
    policy: SchemaPolicy,
) -> Result<TableColumns, LoadError> {
    let wanted = data
        .fields()
        .iter()
        .map(|f| match PgType::for_arrow(f.data_type()) {
            Some(pg) => Ok(TableColumn {
                name: f.name().clone(),
                pg,
            }),
            None => Err(load_err!(
                Schema,
                sink,
                "column `{}` has type {}, which the Postgres sink cannot write; cast it in a transform",
                f.name(),
                f.data_type()
            )),
        })
        .collect::<Result<TableColumns, _>>()?;
    let existing = existing_columns(tx, sink, quoted).await?;
    if existing.is_empty() {
        create(tx, sink, quoted, &wanted, mode).await?;
        return Ok(wanted);
    }
    let evolve = policy == SchemaPolicy::Evolve;
    let mut columns = Vec::with_capacity(wanted.len());
    for column in wanted {
        let Some(found) = existing.iter().find(|e| e.name == column.name) else {
            if !evolve {
                return Err(load_err!(
                    Schema,
                    sink,
                    "the load has column `{}` ({}), which table {table} lacks; set `schema = \"evolve\"` \
                     on the sink to add it, or drop the column in a transform",
                    column.name,
                    column.pg.ddl()
                ));
            }
            let sql = format!(
                "ALTER TABLE {quoted} ADD COLUMN {} {}",
                quote(&column.name),
                column.pg.ddl()
            );
            execute(tx, sink, sql, "adding a column").await?;
            columns.push(column);
            continue;
        };
        match PgType::for_oid(found.oid, found.scale) {
            Some(pg) if pg.holds(column.pg) => columns.push(TableColumn {
                name: column.name,
                pg,
            }),
            _ => {
                return Err(load_err!(
                    Schema,
                    sink,
                    "column `{}` of table {table} is {} but the load's is {}; a changed type is never \
                     applied automatically: migrate the column, or cast it in a transform",
                    column.name,
                    found.type_name,
                    column.pg.ddl()
                ));
            }
        }
    }
    for missing in existing
        .iter()
        .filter(|e| !columns.iter().any(|c| c.name == e.name))
    {
        if missing.required || !evolve {
            let why = if missing.required {
                "it is NOT NULL without a default, so the load must give it"
            } else {
                "set `schema = \"evolve\"` on the sink to load NULL into it"
            };
            return Err(load_err!(
                Schema,
                sink,
                "table {table} has column `{}` ({}), which the load lacks; {why}",
                missing.name,
                missing.type_name
            ));
        }
    }
    Ok(columns)
}

async fn existing_columns(
    tx: &mut Tx,
    sink: &str,
    quoted: &str,
) -> Result<Vec<Existing>, LoadError> {
    let rows = sqlx::query(
        "SELECT attname::text, atttypid::int8, format_type(atttypid, atttypmod), \
         CASE WHEN atttypid = 1700 AND atttypmod >= 4 THEN (atttypmod - 4) & 65535 ELSE 0 END, \
         attnotnull AND NOT atthasdef AND attidentity = '' \
         FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped \
         ORDER BY attnum",
    )
    .bind(quoted)
    .fetch_all(&mut **tx)
    .await
    .map_err(pg_err(sink, "reading the table's columns"))?;
    rows.iter()
        .map(|row| {
            Ok(Existing {
                name: row.try_get(0)?,
                oid: row.try_get::<i64, _>(1)? as u32,
                type_name: row.try_get(2)?,
                scale: row.try_get::<i32, _>(3)? as i8,
                required: row.try_get(4)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(pg_err(sink, "reading the table's columns"))
}

async fn create(
    tx: &mut Tx,
    sink: &str,
    quoted: &str,
    columns: &TableColumns,
    mode: &LoadMode,
) -> Result<(), LoadError> {
    let mut definitions: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", quote(&c.name), c.pg.ddl()))
        .collect();
    if let LoadMode::Merge { keys } = mode {
        let keys: Vec<String> = keys.iter().map(|k| quote(k)).collect();
        definitions.push(format!("PRIMARY KEY ({})", keys.join(", ")));
    }
    let sql = format!("CREATE TABLE {quoted} ({})", definitions.join(", "));
    execute(tx, sink, sql, "creating the table").await?;
    if let LoadMode::ReplacePartition { column } = mode {
        let sql = format!("CREATE INDEX ON {quoted} ({})", quote(column));
        execute(tx, sink, sql, "indexing the partition column").await?;
    }
    Ok(())
}
