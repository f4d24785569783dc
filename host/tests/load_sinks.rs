//! The sinks against real SQLite files and real dataset directories, read back independently
//! (SQLite through its own connection, Parquet with the `parquet` crate's sync reader).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array};
use arrow::array::{AsArray, UInt64Array};
use arrow::array::{Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::array::{TimestampMicrosecondArray, TimestampNanosecondArray, TimestampSecondArray};
use arrow::datatypes::{Float64Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Connection};
use weir::load::{LoadError, LoadMode, LoadSpec, ParquetSink, Sink, SqliteSink};

fn arc(array: impl Array + 'static) -> ArrayRef {
    Arc::new(array)
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

/// Orders rows `(order_id, month, amount)`, plus the provenance column `_weir_row`.
fn orders(rows: &[(i64, &str, f64)]) -> RecordBatch {
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

fn owned(rows: &[(i64, &str, f64)]) -> Vec<(i64, String, f64)> {
    rows.iter()
        .map(|(id, month, amount)| (*id, month.to_string(), *amount))
        .collect()
}

fn spec(load_id: &str, batch: &RecordBatch) -> LoadSpec {
    let (pipeline, load_id, schema) = ("orders".into(), load_id.into(), batch.schema());
    LoadSpec {
        pipeline,
        load_id,
        schema,
    }
}

/// Runs a whole load; `None` when the sink says it is a replay.
async fn load(
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

fn replace() -> LoadMode {
    LoadMode::ReplacePartition {
        column: "month".into(),
    }
}

async fn sqlite(db: &Path, table: &str, mode: LoadMode) -> SqliteSink {
    SqliteSink::connect("wh", db, table, mode).await.unwrap()
}

/// Rows of `sql`, through a connection of the test's own.
async fn query<T>(db: &Path, sql: &str) -> Vec<T>
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

async fn orders_table(db: &Path) -> Vec<(i64, String, f64)> {
    query(
        db,
        "SELECT order_id, month, amount FROM orders ORDER BY order_id",
    )
    .await
}

#[tokio::test]
async fn sqlite_append_loads_rows_once_and_replay_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/dir/warehouse.db");
    let sink = sqlite(&db, "orders", LoadMode::Append).await;
    let a = orders(&[(1, "2024-01", 10.0), (2, "2024-01", 20.0)]);
    let batches = [a, orders(&[(3, "2024-02", 30.5)])];
    assert_eq!(load(&sink, "load-1", &batches).await.unwrap(), Some(3));
    let expected = owned(&[
        (1, "2024-01", 10.0),
        (2, "2024-01", 20.0),
        (3, "2024-02", 30.5),
    ]);
    assert_eq!(orders_table(&db).await, expected);
    assert!(sink.is_committed("load-1").await.unwrap());
    assert!(!sink.is_committed("load-2").await.unwrap());

    assert_eq!(
        load(&sink, "load-1", &batches).await.unwrap(),
        None,
        "a replay is skipped"
    );
    assert_eq!(orders_table(&db).await, expected);
    let marker: Vec<(String, String, i64)> =
        query(&db, "SELECT pipeline, table_name, rows FROM _weir_loads").await;
    assert_eq!(marker, [("orders".into(), "orders".into(), 3)]);
    let columns: Vec<(String,)> = query(&db, "SELECT name FROM pragma_table_info('orders')").await;
    let columns: Vec<String> = columns.into_iter().map(|c| c.0).collect();
    assert_eq!(
        columns,
        ["order_id", "month", "amount"],
        "`_weir_row` is not written"
    );
    let journal: Vec<(String,)> = query(&db, "PRAGMA journal_mode").await;
    assert_eq!(journal[0].0, "wal");
}

#[tokio::test]
async fn sqlite_aborted_or_dropped_load_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let sink = sqlite(&db, "orders", LoadMode::Append).await;
    let batch = orders(&[(1, "2024-01", 1.0), (2, "2024-01", 2.0)]);
    let mut aborted = sink.begin(&spec("l1", &batch)).await.unwrap().unwrap();
    aborted.write(&batch).await.unwrap();
    aborted.abort().await.unwrap();
    let mut dropped = sink.begin(&spec("l1", &batch)).await.unwrap().unwrap();
    dropped.write(&batch).await.unwrap();
    drop(dropped);

    let sql = "SELECT (SELECT count(*) FROM sqlite_master WHERE name = 'orders'), \
               (SELECT count(*) FROM _weir_loads)";
    let counts: Vec<(i64, i64)> = query(&db, sql).await;
    assert_eq!(
        counts,
        [(0, 0)],
        "no rows, no marker, not even the table the load created"
    );
    assert!(!sink.is_committed("l1").await.unwrap());
    assert_eq!(
        load(&sink, "l1", &[batch]).await.unwrap(),
        Some(2),
        "a retry loads"
    );
}

#[tokio::test]
async fn a_load_whose_write_failed_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let sqlite = sqlite(&db, "orders", LoadMode::Append).await;
    let parquet = parquet_sink(&dir.path().join("lake"), LoadMode::Append);
    let good = orders(&[(1, "2024-01", 1.0)]);
    let short = good.project(&[0, 1]).unwrap();
    for sink in [&sqlite as &dyn Sink, &parquet] {
        let mut load = sink.begin(&spec("l1", &good)).await.unwrap().unwrap();
        load.write(&good).await.unwrap();
        let err = load.write(&short).await.unwrap_err();
        assert!(err.to_string().contains("lacks column `amount`"), "{err}");
        let err = load.commit().await.unwrap_err().to_string();
        assert!(
            err.contains("an earlier write of this load failed"),
            "{err}"
        );
        assert!(!sink.is_committed("l1").await.unwrap());
    }
    let tables: Vec<(i64,)> = query(
        &db,
        "SELECT count(*) FROM sqlite_master WHERE name = 'orders'",
    )
    .await;
    assert_eq!(tables, [(0,)]);
    let lake = dataset(&dir.path().join("lake"));
    assert!(
        lake.keys().all(|f| f.starts_with("_weir_staging/")),
        "{lake:?}"
    );
}

#[tokio::test]
async fn sqlite_replace_partition_replaces_only_the_touched_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let sink = sqlite(&db, "orders", replace()).await;
    let first = orders(&[
        (1, "2024-01", 1.0),
        (2, "2024-02", 2.0),
        (3, "2024-02", 3.0),
    ]);
    load(&sink, "l1", &[first]).await.unwrap();
    // Two batches of one partition: the second must not delete what the first loaded.
    let b1 = orders(&[(20, "2024-02", 20.0)]);
    let b2 = orders(&[(21, "2024-02", 21.0), (30, "2024-03", 30.0)]);
    assert_eq!(load(&sink, "l2", &[b1, b2]).await.unwrap(), Some(3));
    let expected = [
        (1, "2024-01", 1.0),
        (20, "2024-02", 20.0),
        (21, "2024-02", 21.0),
    ];
    let expected = owned(&[&expected[..], &[(30, "2024-03", 30.0)]].concat());
    assert_eq!(orders_table(&db).await, expected);
}

#[tokio::test]
async fn sqlite_merge_updates_changed_rows_and_inserts_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let sink = sqlite(
        &db,
        "orders",
        LoadMode::Merge {
            keys: vec!["order_id".into()],
        },
    )
    .await;
    let first = orders(&[(1, "2024-01", 1.0), (2, "2024-01", 2.0)]);
    load(&sink, "l1", &[first]).await.unwrap();
    let second = orders(&[(2, "2024-02", 99.0), (3, "2024-02", 3.0)]);
    load(&sink, "l2", &[second]).await.unwrap();
    let expected = owned(&[
        (1, "2024-01", 1.0),
        (2, "2024-02", 99.0),
        (3, "2024-02", 3.0),
    ]);
    assert_eq!(orders_table(&db).await, expected);
}

#[tokio::test]
async fn sqlite_maps_types_and_rejects_what_it_cannot_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    // 2024-01-03T09:15:00.123456789Z, given with a +02:00 zone: stored in UTC.
    let ns = TimestampNanosecondArray::from(vec![Some(1_704_273_300_123_456_789), Some(-1), None]);
    let price = Decimal128Array::from(vec![1230, -5, 0]).with_precision_and_scale(10, 2);
    let types = batch(vec![
        ("at_ns", arc(ns.with_timezone("+02:00"))),
        (
            "at_us",
            arc(TimestampMicrosecondArray::from(vec![
                1_704_273_300_000_000,
                0,
                1,
            ])),
        ),
        ("at_s", arc(TimestampSecondArray::from(vec![-1, 0, 1]))),
        (
            "day",
            arc(Date32Array::from(vec![Some(19_725), Some(0), None])),
        ),
        (
            "paid",
            arc(BooleanArray::from(vec![Some(true), Some(false), None])),
        ),
        ("price", arc(price.unwrap())),
        ("ratio", arc(Float32Array::from(vec![1.5, -0.25, 0.0]))),
        ("big", arc(UInt64Array::from(vec![i64::MAX as u64, 0, 7]))),
    ]);
    load(
        &sqlite(&db, "types", LoadMode::Append).await,
        "l1",
        &[types],
    )
    .await
    .unwrap();
    let declared: Vec<(String, String)> =
        query(&db, "SELECT name, type FROM pragma_table_info('types')").await;
    let declared: Vec<String> = declared
        .into_iter()
        .map(|(n, t)| format!("{n} {t}"))
        .collect();
    let expected = [
        "at_ns TEXT",
        "at_us TEXT",
        "at_s TEXT",
        "day TEXT",
        "paid INTEGER",
    ];
    assert_eq!(
        declared,
        [&expected[..], &["price TEXT", "ratio REAL", "big INTEGER"]].concat()
    );
    type Times = (Option<String>, String, String, Option<String>);
    let times: Vec<Times> = query(&db, "SELECT at_ns, at_us, at_s, day FROM types").await;
    let first = ("2024-01-03T09:15:00.123456Z", "2024-01-03T09:15:00.000000Z");
    let first = (
        Some(first.0.into()),
        first.1.into(),
        "1969-12-31T23:59:59.000000Z".into(),
    );
    assert_eq!(
        times[0],
        (first.0, first.1, first.2, Some("2024-01-03".into()))
    );
    let floored = Some("1969-12-31T23:59:59.999999Z".into());
    assert_eq!(
        (&times[1].0, &times[1].3),
        (&floored, &Some("1970-01-01".into()))
    );
    assert_eq!((&times[2].0, &times[2].3), (&None, &None));
    let sql = "SELECT paid, typeof(paid), price, ratio, big FROM types";
    let others: Vec<(Option<i64>, String, String, f64, i64)> = query(&db, sql).await;
    assert_eq!(
        others[0],
        (Some(1), "integer".into(), "12.30".into(), 1.5, i64::MAX)
    );
    assert_eq!(
        (others[1].0, others[2].0, others[1].2.as_str()),
        (Some(0), None, "-0.05")
    );

    // Each unstorable column fails the load with a permanent error naming sink and column.
    let unstorable = [
        (
            "big",
            arc(UInt64Array::from(vec![u64::MAX])),
            "sink `wh`: column `big` holds",
        ),
        (
            "blob",
            arc(BinaryArray::from_vec(vec![b"x"])),
            "column `blob` has type Binary",
        ),
    ];
    for (name, array, expected) in unstorable {
        let sink = sqlite(&db, name, LoadMode::Append).await;
        let err = load(&sink, name, &[batch(vec![(name, array)])])
            .await
            .unwrap_err();
        assert!(
            !err.is_transient() && err.to_string().contains(expected),
            "{err}"
        );
    }
}

#[tokio::test]
async fn sqlite_hostile_names_are_quoted_and_hostile_values_are_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    query::<(i64,)>(&db, "CREATE TABLE x (a INTEGER)").await;
    let table = "orders\"; DROP TABLE x; --";
    let (column, value) = ("id\"; DROP TABLE x; --", "'); DROP TABLE orders; --");
    let notes = StringArray::from(vec![value, "\" OR 1=1"]);
    let hostile = batch(vec![
        (column, arc(Int64Array::from(vec![1, 2]))),
        ("note", arc(notes)),
    ]);
    let sink = sqlite(
        &db,
        table,
        LoadMode::Merge {
            keys: vec![column.into()],
        },
    )
    .await;
    load(&sink, "l1", std::slice::from_ref(&hostile))
        .await
        .unwrap();
    load(&sink, "l2", &[hostile]).await.unwrap();
    let sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name";
    let tables: Vec<(String,)> = query(&db, sql).await;
    assert_eq!(
        tables,
        [("_weir_loads".into(),), (table.into(),), ("x".into(),)]
    );
    let sql = format!(
        "SELECT note FROM \"{}\" ORDER BY 1",
        table.replace('"', "\"\"")
    );
    let notes: Vec<(String,)> = query(&db, &sql).await;
    assert_eq!(
        notes,
        [("\" OR 1=1".into(),), (value.into(),)],
        "merged, not duplicated"
    );
}

#[tokio::test]
async fn sqlite_existing_table_with_other_columns_is_a_permanent_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    query::<(i64,)>(
        &db,
        "CREATE TABLE orders (order_id INTEGER, month TEXT, discount REAL)",
    )
    .await;
    let sink = sqlite(&db, "orders", LoadMode::Append).await;
    let err = load(&sink, "l1", &[orders(&[(1, "2024-01", 1.0)])])
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        !err.is_transient() && message.contains("[\"amount\"]"),
        "{message}"
    );
    assert!(message.contains("[\"discount\"]"), "{message}");
}

#[tokio::test]
async fn sqlite_busy_database_is_a_transient_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let timeout = Duration::from_millis(100);
    let sink =
        SqliteSink::connect_with_busy_timeout("wh", &db, "orders", LoadMode::Append, timeout);
    let sink = sink.await.unwrap();
    let options = SqliteConnectOptions::new().filename(&db);
    let mut other = sqlx::SqliteConnection::connect_with(&options)
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
        "a retry succeeds"
    );
}

/// Every file under `root` (relative, `/`-separated) with its rows (`order_id`, `amount`);
/// files under `_`-prefixed directories (markers, staging) are listed but not read.
fn dataset(root: &Path) -> BTreeMap<String, Vec<(i64, f64)>> {
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

fn files(root: &Path) -> Vec<String> {
    dataset(root).into_keys().collect()
}

fn parquet_sink(root: &Path, mode: LoadMode) -> ParquetSink {
    ParquetSink::new("lake", root, Some("month".into()), mode).unwrap()
}

#[tokio::test]
async fn parquet_append_writes_hive_partitions_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let sink = parquet_sink(&root, LoadMode::Append).with_rows_per_file(2);
    let a = orders(&[
        (1, "2024-01", 1.0),
        (2, "2024-02", 2.0),
        (3, "2024-01", 3.0),
    ]);
    let batches = [a, orders(&[(4, "2024-01", 4.0)])];
    assert_eq!(load(&sink, "l1", &batches).await.unwrap(), Some(4));
    let expected = BTreeMap::from([
        ("_weir_loads/l1.json".to_string(), vec![]),
        (
            "month=2024-01/part-l1-0.parquet".into(),
            vec![(1, 1.0), (3, 3.0)],
        ),
        ("month=2024-01/part-l1-1.parquet".into(), vec![(4, 4.0)]),
        ("month=2024-02/part-l1-0.parquet".into(), vec![(2, 2.0)]),
    ]);
    assert_eq!(dataset(&root), expected);
    let marker = std::fs::read(root.join("_weir_loads/l1.json")).unwrap();
    let marker: serde_json::Value = serde_json::from_slice(&marker).unwrap();
    assert_eq!(marker["rows"], 4);
    assert_eq!(
        marker["objects"][2]["path"],
        "month=2024-02/part-l1-0.parquet"
    );
    assert!(sink.is_committed("l1").await.unwrap());
    assert_eq!(load(&sink, "l1", &batches).await.unwrap(), None);
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
    assert!(files(&root).is_empty(), "{:?}", files(&root));
    assert!(!sink.is_committed("l1").await.unwrap());

    let merge = LoadMode::Merge {
        keys: vec!["order_id".into()],
    };
    let err = ParquetSink::new("lake", &root, None, merge).err().unwrap();
    let expected = "merge is not supported by the parquet sink; use append or replace_partition";
    assert!(
        !err.is_transient() && err.to_string().contains(expected),
        "{err}"
    );
}

#[tokio::test]
async fn parquet_replace_partition_replaces_only_the_touched_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let sink = parquet_sink(&root, replace());
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
    let expected = [
        "_weir_loads/l1.json",
        "_weir_loads/l2.json",
        "month=2024-01/part-l1-0.parquet",
    ];
    let expected = [&expected[..], &["month=2024-02/part-l2-0.parquet"]].concat();
    assert_eq!(
        files(&root),
        [&expected[..], &["month=2024-03/part-l2-0.parquet"]].concat()
    );
}

/// Runs load `id` to a commit that fails after moving some objects (a directory stands where
/// its object for month=2024-03 goes), then removes the obstacle: a crash mid-commit.
async fn crash_mid_commit(sink: &ParquetSink, root: &Path, id: &str, batches: &[RecordBatch]) {
    let obstacle = root.join(format!("month=2024-03/part-{id}-0.parquet"));
    std::fs::create_dir_all(&obstacle).unwrap();
    let err = load(sink, id, batches).await.unwrap_err();
    assert!(
        err.to_string().contains("moving") && err.is_transient(),
        "{err}"
    );
    assert!(!sink.is_committed(id).await.unwrap());
    std::fs::remove_dir(&obstacle).unwrap();
}

#[tokio::test]
async fn parquet_replay_after_a_crash_mid_commit_ends_as_a_clean_load() {
    let dir = tempfile::tempdir().unwrap();
    let prior = orders(&[(1, "2024-01", 1.0), (2, "2024-02", 2.0)]);
    let a = orders(&[(20, "2024-02", 20.0), (30, "2024-03", 30.0)]);
    let batches = [a, orders(&[(21, "2024-02", 21.0)])];
    let clean = dir.path().join("clean");
    let sink = parquet_sink(&clean, replace());
    load(&sink, "p", std::slice::from_ref(&prior))
        .await
        .unwrap();
    load(&sink, "l", &batches).await.unwrap();

    let crashed = dir.path().join("crashed");
    let sink = parquet_sink(&crashed, replace());
    load(&sink, "p", &[prior]).await.unwrap();
    // Attempt 1 stops while writing: staged data, then the load is dropped.
    let mut attempt = sink.begin(&spec("l", &batches[0])).await.unwrap().unwrap();
    attempt.write(&batches[0]).await.unwrap();
    drop(attempt);
    // Attempt 2 stops mid-commit: month=2024-02 moved, half replaced, no marker.
    crash_mid_commit(&sink, &crashed, "l", &batches).await;
    assert!(crashed.join("month=2024-02/part-l-0.parquet").exists());
    assert!(crashed.join("month=2024-02/part-p-0.parquet").exists());

    assert_eq!(load(&sink, "l", &batches).await.unwrap(), Some(3));
    assert_eq!(dataset(&crashed), dataset(&clean));
    assert!(!crashed.join("_weir_staging").exists());
}

#[tokio::test]
async fn parquet_replay_or_abort_removes_what_an_interrupted_attempt_moved() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let sink = parquet_sink(&root, LoadMode::Append).with_rows_per_file(1);
    // One file per batch (rows_per_file = 1): three files in month=2024-02.
    let attempt =
        [1, 2, 3, 9].map(|i| orders(&[(i, if i < 9 { "2024-02" } else { "2024-03" }, 1.0)]));
    crash_mid_commit(&sink, &root, "l", &attempt).await;
    assert!(
        root.join("month=2024-02/part-l-2.parquet").exists(),
        "moved before the crash"
    );
    // An append replay whose data changed writes one file: the other two must go.
    let replay = [orders(&[(1, "2024-02", 1.0)])];
    assert_eq!(load(&sink, "l", &replay).await.unwrap(), Some(1));
    let expected = ["_weir_loads/l.json", "month=2024-02/part-l-0.parquet"];
    assert_eq!(files(&root), expected);

    // An abort after an interrupted commit also removes what that commit moved.
    crash_mid_commit(&sink, &root, "m", &attempt).await;
    let mut aborted = sink.begin(&spec("m", &attempt[0])).await.unwrap().unwrap();
    aborted.write(&attempt[0]).await.unwrap();
    aborted.abort().await.unwrap();
    assert_eq!(files(&root), expected);
}

#[tokio::test]
async fn parquet_partition_values_are_escaped_and_null_goes_to_the_default_partition() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let months = StringArray::from(vec![Some("../../escape"), None, Some("a=b/c%")]);
    let (ids, amounts) = (
        Int64Array::from(vec![1, 2, 3]),
        Float64Array::from(vec![1.0; 3]),
    );
    let odd = batch(vec![
        ("order_id", arc(ids)),
        ("month", arc(months)),
        ("amount", arc(amounts)),
    ]);
    load(&parquet_sink(&root, LoadMode::Append), "l1", &[odd])
        .await
        .unwrap();
    let expected = [
        "_weir_loads/l1.json",
        "month=..%2F..%2Fescape/part-l1-0.parquet",
    ];
    let more = [
        "month=__HIVE_DEFAULT_PARTITION__/part-l1-0.parquet",
        "month=a%3Db%2Fc%25/part-l1-0.parquet",
    ];
    assert_eq!(files(&root), [&expected[..], &more[..]].concat());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing outside the dataset"
    );
}

#[tokio::test]
async fn parquet_many_partitions_are_written_a_bounded_number_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    // 40 partitions interleaved: more than may be open at once, so files are finished early.
    let rows: Vec<(i64, String, f64)> = (0..80).map(|i| (i, format!("m{}", i % 40), 0.5)).collect();
    let rows: Vec<(i64, &str, f64)> = rows.iter().map(|(i, m, a)| (*i, m.as_str(), *a)).collect();
    let batches = [orders(&rows[..40]), orders(&rows[40..])];
    load(&parquet_sink(&root, LoadMode::Append), "l1", &batches)
        .await
        .unwrap();
    let lake = dataset(&root);
    let mut loaded: Vec<i64> = lake.values().flatten().map(|(id, _)| *id).collect();
    loaded.sort();
    assert_eq!(loaded, (0..80).collect::<Vec<_>>());
    assert!(
        lake.contains_key("month=m0/part-l1-1.parquet"),
        "{:?}",
        lake.keys()
    );
}

/// A 7-column orders-like batch of `n` rows starting at `start`.
fn bench_batch(start: i64, n: usize) -> RecordBatch {
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

#[tokio::test(flavor = "multi_thread")]
#[ignore = "throughput: cargo test --release -p weir --test load_sinks -- --ignored --nocapture"]
async fn throughput_one_million_rows() {
    const ROWS: usize = 1_000_000;
    const BATCH: usize = 65_536;
    let batches: Vec<RecordBatch> = (0..ROWS.div_ceil(BATCH))
        .map(|i| bench_batch((i * BATCH) as i64, BATCH.min(ROWS - i * BATCH)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let merge = LoadMode::Merge {
        keys: vec!["order_id".into()],
    };
    let month = Some("order_month".into());
    let sinks: Vec<(&str, Box<dyn Sink>)> = vec![
        (
            "sqlite append",
            Box::new(sqlite(&dir.path().join("a.db"), "o", LoadMode::Append).await),
        ),
        (
            "sqlite merge",
            Box::new(sqlite(&dir.path().join("m.db"), "o", merge).await),
        ),
        (
            "parquet, 12 partitions",
            Box::new(
                ParquetSink::new("p", &dir.path().join("lake"), month, LoadMode::Append).unwrap(),
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
    let count: Vec<(i64,)> = query(&dir.path().join("a.db"), "SELECT count(*) FROM o").await;
    assert_eq!(count, [(ROWS as i64,)]);
}
