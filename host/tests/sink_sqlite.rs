//! The SQLite sink against real database files, read back through a connection of the
//! test's own: each load mode, replays, aborts, types, hostile names and values, and a
//! locked database.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::UInt64Array;
use arrow::array::{BinaryArray, BooleanArray, Date32Array, Decimal128Array};
use arrow::array::{Float32Array, Int64Array, StringArray};
use arrow::array::{TimestampMicrosecondArray, TimestampNanosecondArray, TimestampSecondArray};
use sqlx::Connection;
use sqlx::sqlite::SqliteConnectOptions;
use weir::load::{LoadMode, Sink, SqliteSink};

use common::sinks::*;

/// A warehouse in which the user made the `orders` table with `ddl` (columns and
/// constraints the sink knows nothing of), and an append sink into it.
async fn users_orders_table(ddl: &str) -> (tempfile::TempDir, PathBuf, SqliteSink) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    query::<(i64,)>(&db, ddl).await;
    let sink = sqlite(&db, "orders", LoadMode::Append).await;
    (dir, db, sink)
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
    let (_dir, _db, sink) =
        users_orders_table("CREATE TABLE orders (order_id INTEGER, month TEXT, discount REAL)")
            .await;
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

#[tokio::test]
async fn sqlite_a_row_the_table_refuses_is_named_and_nothing_of_the_load_stays() {
    let (_dir, db, sink) = users_orders_table("CREATE TABLE orders (order_id INTEGER UNIQUE, month TEXT, amount REAL CHECK (amount < 100))").await;
    let first = orders(&[(1, "2024-01", 1.0), (2, "2024-01", 2.0)]);
    let second = orders(&[
        (3, "2024-02", 3.0),
        (1, "2024-02", 4.0),
        (5, "2024-02", 5.0),
    ]);
    let err = load(&sink, "l1", &[first.clone(), second])
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("inserting row 4 of the load")
            && message.contains("UNIQUE constraint failed: orders.order_id"),
        "{message}"
    );
    assert!(
        !err.is_transient(),
        "a constraint does not go away: {message}"
    );
    let overdrawn = orders(&[(7, "2024-03", 7.0), (8, "2024-03", 800.0)]);
    let err = load(&sink, "l2", &[overdrawn]).await.unwrap_err();
    assert!(
        err.to_string().contains("inserting row 2 of the load")
            && err.to_string().contains("CHECK constraint failed"),
        "{err}"
    );
    assert!(orders_table(&db).await.is_empty(), "no row of either load");
    assert!(!sink.is_committed("l1").await.unwrap());
    assert_eq!(load(&sink, "l3", &[first]).await.unwrap(), Some(2));
}

#[tokio::test]
async fn sqlite_rows_go_in_many_per_statement_and_a_refused_one_is_still_named() {
    let (_dir, db, sink) = users_orders_table(
        "CREATE TABLE orders (order_id INTEGER UNIQUE, month TEXT, amount REAL)",
    )
    .await;
    // 800 rows: three full statements of many rows (256 each) and single rows after them;
    // every value distinct, so a value bound to the wrong row or column shows.
    let months: Vec<String> = (0..800).map(|i| format!("m{i}")).collect();
    let rows: Vec<(i64, &str, f64)> = (0..800)
        .map(|i| (i, months[i as usize].as_str(), i as f64 + 0.5))
        .collect();
    assert_eq!(
        load(&sink, "l1", &[orders(&rows)]).await.unwrap(),
        Some(800)
    );
    let expected: Vec<(i64, String, f64)> = rows
        .iter()
        .map(|(id, m, a)| (*id, m.to_string(), *a))
        .collect();
    assert_eq!(orders_table(&db).await, expected);

    // Row 551 of the next load repeats an id: inside a statement of many rows (the third),
    // it is still the row named, and none of the load's rows stay.
    let mut again: Vec<(i64, &str, f64)> = (1000..1800).map(|i| (i, "m", 1.0)).collect();
    again[550].0 = 7;
    let err = load(&sink, "l2", &[orders(&again)]).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("inserting row 551 of the load")
            && message.contains("UNIQUE constraint failed"),
        "{message}"
    );
    assert_eq!(
        orders_table(&db).await,
        expected,
        "nothing of the failed load"
    );
}
