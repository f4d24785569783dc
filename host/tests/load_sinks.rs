//! What every sink does alike, and the sinks' throughput alone, 1 M rows × 7 columns (ignored
//! by default: a measurement, recorded in BENCHMARKS.md). Each sink's own behaviour is in
//! `sink_sqlite.rs` and `sink_parquet.rs`.

mod common;

use std::time::Instant;

use arrow::array::RecordBatch;
use weir::load::{LoadMode, ParquetSink, Sink};

use common::sinks::*;

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
