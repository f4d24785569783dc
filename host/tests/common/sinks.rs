//! Shared by the sink tests: orders batches, whole loads, and what landed, read back
//! independently (SQLite through a connection of the test's own, Parquet with the `parquet`
//! crate's sync reader).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch};
use arrow::array::{AsArray, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{Float64Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sqlx::AssertSqlSafe;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqliteRow};
use weir::load::{LoadError, LoadMode, LoadSpec, ParquetSink, Sink, SqliteSink};

pub fn arc(array: impl Array + 'static) -> ArrayRef {
    Arc::new(array)
}

pub fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

/// Orders rows `(order_id, month, amount)`, plus the provenance column `_weir_row`.
pub fn orders(rows: &[(i64, &str, f64)]) -> RecordBatch {
    batch(vec![
        (
            "order_id",
            arc(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        ),
        (
            "month",
            arc(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        ),
        (
            "amount",
            arc(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ),
        (
            "_weir_row",
            arc(Int64Array::from_iter_values(0..rows.len() as i64)),
        ),
    ])
}

pub fn owned(rows: &[(i64, &str, f64)]) -> Vec<(i64, String, f64)> {
    rows.iter()
        .map(|(id, month, amount)| (*id, month.to_string(), *amount))
        .collect()
}

pub fn spec(load_id: &str, batch: &RecordBatch) -> LoadSpec {
    let (pipeline, load_id, schema) = ("orders".into(), load_id.into(), batch.schema());
    LoadSpec {
        pipeline,
        load_id,
        schema,
    }
}

/// Runs a whole load; `None` when the sink says it is a replay.
pub async fn load(
    sink: &dyn Sink,
    id: &str,
    batches: &[RecordBatch],
) -> Result<Option<u64>, LoadError> {
    let Some(mut load) = sink.begin(&spec(id, &batches[0])).await? else {
        return Ok(None);
    };
    for batch in batches {
        load.write(batch).await?;
    }
    load.commit().await.map(Some)
}

pub fn replace() -> LoadMode {
    LoadMode::ReplacePartition {
        column: "month".into(),
    }
}

pub async fn sqlite(db: &Path, table: &str, mode: LoadMode) -> SqliteSink {
    SqliteSink::connect("wh", db, table, mode).await.unwrap()
}

/// Rows of `sql`, through a connection of the test's own.
pub async fn query<T>(db: &Path, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin,
{
    let options = SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    let query = sqlx::query_as(AssertSqlSafe(sql.to_owned()));
    query.fetch_all(&pool).await.unwrap()
}

/// A 7-column orders-like batch of `n` rows starting at `start`.
pub fn bench_batch(start: i64, n: usize) -> RecordBatch {
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let month = |i: &i64| format!("2024-{:02}", i % 12 + 1);
    let status = |i: &i64| ["paid", "shipped", "refunded"][*i as usize % 3];
    let created = ids.iter().map(|i| 1_704_067_200_000_000 + i * 1_000_000);
    batch(vec![
        ("order_id", arc(Int64Array::from(ids.clone()))),
        (
            "customer_id",
            arc(Int64Array::from_iter_values(ids.iter().map(|i| i % 10_007))),
        ),
        (
            "order_month",
            arc(StringArray::from_iter_values(ids.iter().map(month))),
        ),
        (
            "status",
            arc(StringArray::from_iter_values(ids.iter().map(status))),
        ),
        (
            "amount",
            arc(Float64Array::from_iter(
                ids.iter().map(|i| Some(*i as f64 * 0.01)),
            )),
        ),
        (
            "created_at",
            arc(TimestampMicrosecondArray::from_iter_values(created).with_timezone("UTC")),
        ),
        (
            "paid",
            arc(BooleanArray::from_iter(
                ids.iter().map(|i| Some(i % 2 == 0)),
            )),
        ),
    ])
}

/// Every file under `root` (relative, `/`-separated) with its rows (`order_id`, `amount`);
/// files under `_`-prefixed directories (markers, staging) are listed but not read.
pub fn dataset(root: &Path) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for path in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()) {
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let mut rows = Vec::new();
            if !name.starts_with('_') {
                let file = std::fs::File::open(&path).unwrap();
                for batch in ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap()
                {
                    let batch = batch.unwrap();
                    let fields = batch.schema_ref().fields().iter().map(|f| f.name().clone());
                    let names: Vec<String> = fields.collect();
                    assert_eq!(
                        names,
                        ["order_id", "amount"],
                        "no partition or `_weir_` column"
                    );
                    let ids = batch.column(0).as_primitive::<Int64Type>().values().iter();
                    let amounts = batch.column(1).as_primitive::<Float64Type>().values();
                    rows.extend(ids.copied().zip(amounts.iter().copied()));
                }
            }
            out.insert(name, rows);
        }
    }
    out
}

pub fn files(root: &Path) -> Vec<String> {
    dataset(root).into_keys().collect()
}

pub fn parquet_sink(root: &Path, mode: LoadMode) -> ParquetSink {
    ParquetSink::new("lake", root, Some("month".into()), mode).unwrap()
}
