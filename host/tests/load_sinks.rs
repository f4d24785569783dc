//! The sinks against real SQLite files and real dataset directories, read back independently
//! (SQLite through its own connection, Parquet with the `parquet` crate's sync reader).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, TimestampNanosecondArray,
    TimestampSecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{Connection, Row};
use weir::load::{LoadError, LoadMode, LoadSpec, ParquetSink, Sink, SqliteSink};

/// Orders rows: `(order_id, month, amount)`, plus the provenance column `_weir_row`.
fn orders(rows: &[(i64, &str, f64)]) -> RecordBatch {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "order_id",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        ),
        (
            "month",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        ),
        (
            "amount",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ),
        (
            "_weir_row",
            Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)),
        ),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

fn spec(load_id: &str, batch: &RecordBatch) -> LoadSpec {
    LoadSpec {
        pipeline: "orders".into(),
        load_id: load_id.into(),
        schema: batch.schema(),
    }
}

/// Runs a whole load; `None` when the sink says it is a replay.
async fn load(
    sink: &dyn Sink,
    load_id: &str,
    batches: &[RecordBatch],
) -> Result<Option<u64>, LoadError> {
    let Some(mut load) = sink.begin(&spec(load_id, &batches[0])).await? else {
        return Ok(None);
    };
    for batch in batches {
        load.write(batch).await?;
    }
    load.commit().await.map(Some)
}

async fn open(db: &Path) -> SqlitePool {
    SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(db)
            .create_if_missing(true),
    )
    .await
    .unwrap()
}

async fn table_rows(db: &Path, table: &str) -> Vec<(i64, String, f64)> {
    let sql = format!("SELECT order_id, month, amount FROM \"{table}\" ORDER BY order_id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&open(db).await)
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn owned(rows: &[(i64, &str, f64)]) -> Vec<(i64, String, f64)> {
    rows.iter()
        .map(|(id, month, amount)| (*id, month.to_string(), *amount))
        .collect()
}

#[tokio::test]
async fn sqlite_append_loads_rows_once_and_replay_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/dir/warehouse.db");
    let sink = SqliteSink::connect("wh", &db, "orders", LoadMode::Append)
        .await
        .unwrap();
    let (a, b) = (
        orders(&[(1, "2024-01", 10.0), (2, "2024-01", 20.0)]),
        orders(&[(3, "2024-02", 30.5)]),
    );
    assert_eq!(
        load(&sink, "load-1", &[a.clone(), b.clone()])
            .await
            .unwrap(),
        Some(3)
    );
    let expected = owned(&[
        (1, "2024-01", 10.0),
        (2, "2024-01", 20.0),
        (3, "2024-02", 30.5),
    ]);
    assert_eq!(table_rows(&db, "orders").await, expected);
    assert!(sink.is_committed("load-1").await.unwrap());
    assert!(!sink.is_committed("load-2").await.unwrap());

    assert_eq!(
        load(&sink, "load-1", &[a, b]).await.unwrap(),
        None,
        "a replay is skipped"
    );
    assert_eq!(table_rows(&db, "orders").await, expected);
    let pool = open(&db).await;
    let marker =
        sqlx::query("SELECT pipeline, table_name, rows FROM _weir_loads WHERE load_id = 'load-1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (
            marker.get::<String, _>(0),
            marker.get::<String, _>(1),
            marker.get::<i64, _>(2)
        ),
        ("orders".into(), "orders".into(), 3)
    );
    let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info('orders')")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        columns,
        ["order_id", "month", "amount"],
        "`_weir_row` is not written"
    );
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
}

#[tokio::test]
async fn sqlite_aborted_or_dropped_load_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let sink = SqliteSink::connect("wh", &db, "orders", LoadMode::Append)
        .await
        .unwrap();
    let batch = orders(&[(1, "2024-01", 1.0), (2, "2024-01", 2.0)]);
    let mut aborted = sink.begin(&spec("l1", &batch)).await.unwrap().unwrap();
    aborted.write(&batch).await.unwrap();
    aborted.abort().await.unwrap();
    let mut dropped = sink.begin(&spec("l1", &batch)).await.unwrap().unwrap();
    dropped.write(&batch).await.unwrap();
    drop(dropped);

    let pool = open(&db).await;
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'orders'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(tables, 0, "even the table the load created is rolled back");
    let markers: i64 = sqlx::query_scalar("SELECT count(*) FROM _weir_loads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(markers, 0);
    assert!(!sink.is_committed("l1").await.unwrap());
    assert_eq!(
        load(&sink, "l1", &[batch]).await.unwrap(),
        Some(2),
        "the retry loads normally"
    );
}

#[tokio::test]
async fn a_load_whose_write_failed_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let sqlite = SqliteSink::connect("wh", &db, "orders", LoadMode::Append)
        .await
        .unwrap();
    let parquet = parquet_sink(&dir.path().join("lake"), LoadMode::Append);
    let good = orders(&[(1, "2024-01", 1.0)]);
    let short = good.project(&[0, 1]).unwrap();
    for sink in [&sqlite as &dyn Sink, &parquet] {
        let mut load = sink.begin(&spec("l1", &good)).await.unwrap().unwrap();
        load.write(&good).await.unwrap();
        let err = load.write(&short).await.unwrap_err();
        assert!(err.to_string().contains("lacks column `amount`"), "{err}");
        let err = load.commit().await.unwrap_err();
        assert!(
            err.to_string()
                .contains("an earlier write of this load failed"),
            "{err}"
        );
        assert!(!sink.is_committed("l1").await.unwrap());
    }
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'orders'")
            .fetch_one(&open(&db).await)
            .await
            .unwrap();
    assert_eq!(tables, 0);
    assert!(
        dataset(&dir.path().join("lake"))
            .keys()
            .all(|f| f.starts_with("_weir_staging/")),
        "nothing visible"
    );
}

#[tokio::test]
async fn sqlite_replace_partition_replaces_only_the_touched_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let mode = LoadMode::ReplacePartition {
        column: "month".into(),
    };
    let sink = SqliteSink::connect("wh", &db, "orders", mode)
        .await
        .unwrap();
    let first = orders(&[
        (1, "2024-01", 1.0),
        (2, "2024-02", 2.0),
        (3, "2024-02", 3.0),
    ]);
    load(&sink, "l1", &[first]).await.unwrap();
    // Two batches of one partition: the second must not delete what the first loaded.
    let (b1, b2) = (
        orders(&[(20, "2024-02", 20.0)]),
        orders(&[(21, "2024-02", 21.0), (30, "2024-03", 30.0)]),
    );
    assert_eq!(load(&sink, "l2", &[b1, b2]).await.unwrap(), Some(3));
    let expected = owned(&[
        (1, "2024-01", 1.0),
        (20, "2024-02", 20.0),
        (21, "2024-02", 21.0),
        (30, "2024-03", 30.0),
    ]);
    assert_eq!(table_rows(&db, "orders").await, expected);
}

#[tokio::test]
async fn sqlite_merge_updates_changed_rows_and_inserts_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let sink = SqliteSink::connect(
        "wh",
        &db,
        "orders",
        LoadMode::Merge {
            keys: vec!["order_id".into()],
        },
    )
    .await
    .unwrap();
    load(
        &sink,
        "l1",
        &[orders(&[(1, "2024-01", 1.0), (2, "2024-01", 2.0)])],
    )
    .await
    .unwrap();
    load(
        &sink,
        "l2",
        &[orders(&[(2, "2024-02", 99.0), (3, "2024-02", 3.0)])],
    )
    .await
    .unwrap();
    let expected = owned(&[
        (1, "2024-01", 1.0),
        (2, "2024-02", 99.0),
        (3, "2024-02", 3.0),
    ]);
    assert_eq!(table_rows(&db, "orders").await, expected);
}

#[tokio::test]
async fn sqlite_maps_types_and_rejects_what_it_cannot_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    // 2024-01-03T09:15:00.123456789Z, given with a +02:00 zone: stored in UTC.
    let ns = 1_704_273_300_123_456_789_i64;
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "at_ns",
            Arc::new(
                TimestampNanosecondArray::from(vec![Some(ns), Some(-1), None])
                    .with_timezone("+02:00"),
            ),
        ),
        (
            "at_us",
            Arc::new(TimestampMicrosecondArray::from(vec![
                1_704_273_300_000_000,
                0,
                1,
            ])),
        ),
        ("at_s", Arc::new(TimestampSecondArray::from(vec![-1, 0, 1]))),
        (
            "day",
            Arc::new(Date32Array::from(vec![Some(19_725), Some(0), None])),
        ),
        (
            "paid",
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        ),
        (
            "price",
            Arc::new(
                Decimal128Array::from(vec![1230, -5, 0])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ),
        ("ratio", Arc::new(Float32Array::from(vec![1.5, -0.25, 0.0]))),
        (
            "big",
            Arc::new(UInt64Array::from(vec![i64::MAX as u64, 0, 7])),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let sink = SqliteSink::connect("wh", &db, "types", LoadMode::Append)
        .await
        .unwrap();
    load(&sink, "l1", &[batch]).await.unwrap();
    let pool = open(&db).await;
    let declared: Vec<(String, String)> =
        sqlx::query_as("SELECT name, type FROM pragma_table_info('types')")
            .fetch_all(&pool)
            .await
            .unwrap();
    let declared: Vec<String> = declared
        .into_iter()
        .map(|(n, t)| format!("{n} {t}"))
        .collect();
    assert_eq!(
        declared,
        [
            "at_ns TEXT",
            "at_us TEXT",
            "at_s TEXT",
            "day TEXT",
            "paid INTEGER",
            "price TEXT",
            "ratio REAL",
            "big INTEGER"
        ]
    );
    type Row8 = (
        Option<String>,
        String,
        String,
        Option<String>,
        Option<i64>,
        String,
        f64,
        i64,
    );
    let rows: Vec<Row8> = sqlx::query_as("SELECT * FROM types ORDER BY rowid")
        .fetch_all(&pool)
        .await
        .unwrap();
    let first: Row8 = (
        Some("2024-01-03T09:15:00.123456Z".into()),
        "2024-01-03T09:15:00.000000Z".into(),
        "1969-12-31T23:59:59.000000Z".into(),
        Some("2024-01-03".into()),
        Some(1),
        "12.30".into(),
        1.5,
        i64::MAX,
    );
    assert_eq!(rows[0], first);
    assert_eq!(
        rows[1].0.as_deref(),
        Some("1969-12-31T23:59:59.999999Z"),
        "nanoseconds are floored"
    );
    assert_eq!(
        (rows[1].3.as_deref(), rows[1].4, rows[1].5.as_str()),
        (Some("1970-01-01"), Some(0), "-0.05")
    );
    assert_eq!(
        (rows[2].0.clone(), rows[2].3.clone(), rows[2].4),
        (None, None, None)
    );
    let paid_type: String = sqlx::query_scalar("SELECT typeof(paid) FROM types LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(paid_type, "integer");

    let too_big = RecordBatch::try_from_iter([(
        "big",
        Arc::new(UInt64Array::from(vec![u64::MAX])) as ArrayRef,
    )])
    .unwrap();
    let sink = SqliteSink::connect("wh", &db, "unsigned", LoadMode::Append)
        .await
        .unwrap();
    let err = load(&sink, "l2", &[too_big]).await.unwrap_err();
    assert!(
        !err.is_transient() && err.to_string().contains("`big`") && err.to_string().contains("wh"),
        "{err}"
    );
    let binary = RecordBatch::try_from_iter([(
        "blob",
        Arc::new(BinaryArray::from_vec(vec![b"x"])) as ArrayRef,
    )])
    .unwrap();
    let sink = SqliteSink::connect("wh", &db, "binary", LoadMode::Append)
        .await
        .unwrap();
    let err = load(&sink, "l3", &[binary]).await.unwrap_err();
    assert!(
        !err.is_transient() && err.to_string().contains("`blob` has type Binary"),
        "{err}"
    );
}

#[tokio::test]
async fn sqlite_hostile_names_are_quoted_and_hostile_values_are_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    sqlx::query("CREATE TABLE x (a INTEGER)")
        .execute(&open(&db).await)
        .await
        .unwrap();
    let (table, column, value) = (
        "orders\"; DROP TABLE x; --",
        "id\"; DROP TABLE x; --",
        "'); DROP TABLE orders; --",
    );
    let batch = RecordBatch::try_from_iter([
        (column, Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        (
            "note",
            Arc::new(StringArray::from(vec![value, "\" OR 1=1"])) as ArrayRef,
        ),
    ])
    .unwrap();
    let sink = SqliteSink::connect(
        "wh",
        &db,
        table,
        LoadMode::Merge {
            keys: vec![column.into()],
        },
    )
    .await
    .unwrap();
    load(&sink, "l1", &[batch.clone()]).await.unwrap();
    load(&sink, "l2", &[batch]).await.unwrap();
    let pool = open(&db).await;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(tables, ["_weir_loads", table, "x"]);
    let sql = format!(
        "SELECT note FROM \"{}\" ORDER BY 1",
        table.replace('"', "\"\"")
    );
    let notes: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(notes, ["\" OR 1=1", value]);
}

#[tokio::test]
async fn sqlite_existing_table_with_other_columns_is_a_permanent_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    sqlx::query("CREATE TABLE orders (order_id INTEGER, month TEXT, discount REAL)")
        .execute(&open(&db).await)
        .await
        .unwrap();
    let sink = SqliteSink::connect("wh", &db, "orders", LoadMode::Append)
        .await
        .unwrap();
    let err = load(&sink, "l1", &[orders(&[(1, "2024-01", 1.0)])])
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        !err.is_transient() && message.contains("amount") && message.contains("discount"),
        "{message}"
    );
}

#[tokio::test]
async fn sqlite_busy_database_is_a_transient_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let sink = SqliteSink::connect_with_busy_timeout(
        "wh",
        &db,
        "orders",
        LoadMode::Append,
        Duration::from_millis(100),
    )
    .await
    .unwrap();
    let mut other =
        sqlx::SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&db))
            .await
            .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let batch = orders(&[(1, "2024-01", 1.0)]);
    let err = load(&sink, "l1", std::slice::from_ref(&batch))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("sink `wh`") && err.to_string().contains("lock"),
        "{err}"
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    assert_eq!(
        load(&sink, "l1", &[batch]).await.unwrap(),
        Some(1),
        "the retry succeeds"
    );
}

/// Every file under `root` (relative, `/`-separated), with its rows (`order_id`, `amount`);
/// `_`-prefixed directories (markers, staging) are listed but not read.
fn dataset(root: &Path) -> BTreeMap<String, Vec<(i64, f64)>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<(i64, f64)>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if path.is_dir() {
                walk(root, &path, out);
            } else if name.starts_with('_') {
                out.insert(name, Vec::new());
            } else {
                let reader =
                    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
                        .unwrap()
                        .build()
                        .unwrap();
                let mut rows = Vec::new();
                for batch in reader {
                    let batch = batch.unwrap();
                    let names: Vec<&str> = batch
                        .schema_ref()
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect();
                    assert_eq!(
                        names,
                        ["order_id", "amount"],
                        "no partition or `_weir_` column in {name}"
                    );
                    let ids = batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap();
                    let amounts = batch
                        .column(1)
                        .as_any()
                        .downcast_ref::<Float64Array>()
                        .unwrap();
                    rows.extend(
                        ids.values()
                            .iter()
                            .copied()
                            .zip(amounts.values().iter().copied()),
                    );
                }
                out.insert(name, rows);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn parquet_sink(root: &Path, mode: LoadMode) -> ParquetSink {
    ParquetSink::new("lake", root, Some("month".into()), mode).unwrap()
}

#[tokio::test]
async fn parquet_append_writes_hive_partitions_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let sink = parquet_sink(&root, LoadMode::Append).with_rows_per_file(2);
    let (a, b) = (
        orders(&[
            (1, "2024-01", 1.0),
            (2, "2024-02", 2.0),
            (3, "2024-01", 3.0),
        ]),
        orders(&[(4, "2024-01", 4.0)]),
    );
    assert_eq!(
        load(&sink, "l1", &[a.clone(), b.clone()]).await.unwrap(),
        Some(4)
    );
    let expected: BTreeMap<String, Vec<(i64, f64)>> = [
        ("_weir_loads/l1.json", vec![]),
        ("month=2024-01/part-l1-0.parquet", vec![(1, 1.0), (3, 3.0)]),
        ("month=2024-01/part-l1-1.parquet", vec![(4, 4.0)]),
        ("month=2024-02/part-l1-0.parquet", vec![(2, 2.0)]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(dataset(&root), expected);
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("_weir_loads/l1.json")).unwrap()).unwrap();
    assert_eq!(
        (
            marker["rows"].as_u64(),
            marker["objects"].as_array().unwrap().len()
        ),
        (Some(4), 3)
    );
    assert!(sink.is_committed("l1").await.unwrap());
    assert_eq!(load(&sink, "l1", &[a, b]).await.unwrap(), None);
    assert_eq!(dataset(&root), expected, "the replay changed nothing");
}

#[tokio::test]
async fn parquet_aborted_load_leaves_nothing_and_merge_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let sink = parquet_sink(&root, LoadMode::Append);
    let batch = orders(&[(1, "2024-01", 1.0), (2, "2024-02", 2.0)]);
    let mut aborted = sink.begin(&spec("l1", &batch)).await.unwrap().unwrap();
    aborted.write(&batch).await.unwrap();
    aborted.abort().await.unwrap();
    assert!(dataset(&root).is_empty(), "{:?}", dataset(&root));
    assert!(!sink.is_committed("l1").await.unwrap());

    let err = ParquetSink::new(
        "lake",
        &root,
        None,
        LoadMode::Merge {
            keys: vec!["order_id".into()],
        },
    )
    .err()
    .unwrap();
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains(
            "merge is not supported by the parquet sink; use append or replace_partition"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn parquet_replace_partition_replaces_only_the_touched_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let sink = parquet_sink(
        &root,
        LoadMode::ReplacePartition {
            column: "month".into(),
        },
    );
    load(
        &sink,
        "l1",
        &[orders(&[(1, "2024-01", 1.0), (2, "2024-02", 2.0)])],
    )
    .await
    .unwrap();
    load(
        &sink,
        "l2",
        &[orders(&[(20, "2024-02", 20.0), (30, "2024-03", 30.0)])],
    )
    .await
    .unwrap();
    let files: Vec<String> = dataset(&root).into_keys().collect();
    assert_eq!(
        files,
        [
            "_weir_loads/l1.json",
            "_weir_loads/l2.json",
            "month=2024-01/part-l1-0.parquet",
            "month=2024-02/part-l2-0.parquet",
            "month=2024-03/part-l2-0.parquet",
        ]
    );
}

#[tokio::test]
async fn parquet_replay_after_a_crash_mid_commit_ends_as_a_clean_load() {
    let dir = tempfile::tempdir().unwrap();
    let mode = || LoadMode::ReplacePartition {
        column: "month".into(),
    };
    let prior = orders(&[(1, "2024-01", 1.0), (2, "2024-02", 2.0)]);
    let batches = [
        orders(&[(20, "2024-02", 20.0), (30, "2024-03", 30.0)]),
        orders(&[(21, "2024-02", 21.0)]),
    ];

    let clean = dir.path().join("clean");
    let sink = parquet_sink(&clean, mode());
    load(&sink, "p", std::slice::from_ref(&prior))
        .await
        .unwrap();
    load(&sink, "l", &batches).await.unwrap();

    let crashed = dir.path().join("crashed");
    let sink = parquet_sink(&crashed, mode());
    load(&sink, "p", &[prior]).await.unwrap();
    // Attempt 1 stops while writing: staged data, then the load is dropped.
    let mut attempt = sink.begin(&spec("l", &batches[0])).await.unwrap().unwrap();
    attempt.write(&batches[0]).await.unwrap();
    drop(attempt);
    // Attempt 2 stops mid-commit: a directory where its last object goes makes that move fail
    // after the first one, leaving month=2024-02 half replaced and no marker.
    let blocker = crashed.join("month=2024-03/part-l-0.parquet");
    std::fs::create_dir_all(&blocker).unwrap();
    assert!(load(&sink, "l", &batches).await.is_err());
    assert!(
        crashed.join("month=2024-02/part-l-0.parquet").exists(),
        "the first object was moved"
    );
    assert!(!sink.is_committed("l").await.unwrap());
    std::fs::remove_dir(&blocker).unwrap();

    assert_eq!(load(&sink, "l", &batches).await.unwrap(), Some(3));
    assert_eq!(dataset(&crashed), dataset(&clean));
    assert!(!crashed.join("_weir_staging").exists());
}

#[tokio::test]
async fn parquet_partition_values_are_escaped_and_null_goes_to_the_default_partition() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let sink = parquet_sink(&root, LoadMode::Append);
    let months = StringArray::from(vec![Some("../../escape"), None, Some("a=b/c%")]);
    let batch = RecordBatch::try_from_iter([
        (
            "order_id",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        ),
        ("month", Arc::new(months) as ArrayRef),
        (
            "amount",
            Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])) as ArrayRef,
        ),
    ])
    .unwrap();
    load(&sink, "l1", &[batch]).await.unwrap();
    let files: Vec<String> = dataset(&root).into_keys().collect();
    assert_eq!(
        files,
        [
            "_weir_loads/l1.json",
            "month=..%2F..%2Fescape/part-l1-0.parquet",
            "month=__HIVE_DEFAULT_PARTITION__/part-l1-0.parquet",
            "month=a%3Db%2Fc%25/part-l1-0.parquet",
        ]
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing was written outside the dataset"
    );
}

/// A 7-column orders-like batch of `n` rows starting at `start`.
fn bench_batch(start: i64, n: usize) -> RecordBatch {
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        Field::new("order_month", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, true),
        Field::new(
            "created_at",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("paid", DataType::Boolean, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| i % 10_007))),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("2024-{:02}", i % 12 + 1)),
        )),
        Arc::new(StringArray::from_iter_values(
            ids.iter()
                .map(|i| ["paid", "shipped", "refunded"][*i as usize % 3]),
        )),
        Arc::new(Float64Array::from_iter(
            ids.iter().map(|i| (i % 97 != 0).then(|| *i as f64 * 0.01)),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                ids.iter().map(|i| 1_704_067_200_000_000 + i * 1_000_000),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(BooleanArray::from_iter(
            ids.iter().map(|i| Some(i % 2 == 0)),
        )),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "throughput: cargo test --release -p weir --test load_sinks -- --ignored --nocapture"]
async fn throughput_one_million_rows() {
    const ROWS: usize = 1_000_000;
    const BATCH: usize = 65_536;
    let batches: Vec<RecordBatch> = (0..ROWS.div_ceil(BATCH))
        .map(|i| bench_batch((i * BATCH) as i64, BATCH.min(ROWS - i * BATCH)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let sinks: Vec<(&str, Box<dyn Sink>)> = vec![
        (
            "sqlite append",
            Box::new(
                SqliteSink::connect(
                    "bench",
                    &dir.path().join("a.db"),
                    "orders",
                    LoadMode::Append,
                )
                .await
                .unwrap(),
            ),
        ),
        (
            "sqlite merge",
            Box::new(
                SqliteSink::connect(
                    "bench",
                    &dir.path().join("m.db"),
                    "orders",
                    LoadMode::Merge {
                        keys: vec!["order_id".into()],
                    },
                )
                .await
                .unwrap(),
            ),
        ),
        (
            "parquet, 12 partitions",
            Box::new(
                ParquetSink::new(
                    "bench",
                    &dir.path().join("lake"),
                    Some("order_month".into()),
                    LoadMode::Append,
                )
                .unwrap(),
            ),
        ),
    ];
    for (what, sink) in sinks {
        let started = Instant::now();
        assert_eq!(
            load(sink.as_ref(), "bench-1", &batches).await.unwrap(),
            Some(ROWS as u64)
        );
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{what}: {ROWS} rows x 7 columns in {secs:.2} s = {:.0} rows/s",
            ROWS as f64 / secs
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&open(&dir.path().join("a.db")).await)
        .await
        .unwrap();
    assert_eq!(count, ROWS as i64);
}
