//! The Parquet sink against real dataset directories, read back with the `parquet` crate's
//! sync reader: hive partitions, replays, aborts, crashes in the middle of a commit, escaped
//! partition values and bounded open files.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use weir::load::{LoadMode, ParquetSink, Sink};

use common::sinks::*;

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

#[tokio::test]
async fn parquet_files_never_hold_more_than_rows_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let sink = parquet_sink(&root, LoadMode::Append).with_rows_per_file(2);
    // One batch of five rows of one month: split over three files, not one of five.
    let rows: Vec<(i64, &str, f64)> = (1..=5).map(|i| (i, "2024-01", i as f64)).collect();
    assert_eq!(load(&sink, "l1", &[orders(&rows)]).await.unwrap(), Some(5));
    let expected = BTreeMap::from([
        ("_weir_loads/l1.json".to_string(), vec![]),
        (
            "month=2024-01/part-l1-0.parquet".into(),
            vec![(1, 1.0), (2, 2.0)],
        ),
        (
            "month=2024-01/part-l1-1.parquet".into(),
            vec![(3, 3.0), (4, 4.0)],
        ),
        ("month=2024-01/part-l1-2.parquet".into(), vec![(5, 5.0)]),
    ]);
    assert_eq!(dataset(&root), expected);
}

#[tokio::test]
async fn a_load_deletes_staged_files_that_other_loads_abandoned_a_day_ago() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let staging = root.join("_weir_staging");
    let stage = |load: &str, file: &str, age_hours: u64| {
        let path = staging.join(load).join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"staged").unwrap();
        let when = std::time::SystemTime::now() - Duration::from_secs(age_hours * 3600);
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(when).unwrap();
    };
    stage("abandoned", "month=2024-01/part-abandoned-0.parquet", 25);
    stage("committing", "month=2024-01/part-committing-0.parquet", 25);
    stage("committing", "_commit.json", 25);
    stage("running", "month=2024-01/part-running-0.parquet", 1);

    let sink = parquet_sink(&root, LoadMode::Append);
    let batch = orders(&[(1, "2024-01", 1.0)]);
    assert_eq!(load(&sink, "l1", &[batch]).await.unwrap(), Some(1));
    // Gone: the day-old load that never began its commit. Kept: one whose replay needs its
    // intent, and one that may still be running.
    assert!(!staging.join("abandoned").exists());
    assert!(staging.join("committing/_commit.json").exists());
    assert!(
        staging
            .join("committing/month=2024-01/part-committing-0.parquet")
            .exists()
    );
    assert!(
        staging
            .join("running/month=2024-01/part-running-0.parquet")
            .exists()
    );
    assert_eq!(
        dataset(&root)
            .keys()
            .filter(|k| !k.starts_with("_weir_staging"))
            .count(),
        2,
        "the load's own file and marker"
    );
}

#[tokio::test]
async fn parquet_unpartitioned_load_counts_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let sink = ParquetSink::new("lake", &root, None, LoadMode::Append)
        .unwrap()
        .with_rows_per_file(2);
    let batches = [
        orders(&[
            (1, "2024-01", 1.0),
            (2, "2024-02", 2.0),
            (3, "2024-01", 3.0),
        ]),
        orders(&[(4, "2024-01", 4.0)]),
    ];
    assert_eq!(load(&sink, "l1", &batches).await.unwrap(), Some(4));
    let marker = std::fs::read(root.join("_weir_loads/l1.json")).unwrap();
    let marker: serde_json::Value = serde_json::from_slice(&marker).unwrap();
    assert_eq!(marker["rows"], 4);
    let mut files: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".parquet"))
        .collect();
    files.sort();
    assert_eq!(files, ["part-l1-0.parquet", "part-l1-1.parquet"]);
}

#[tokio::test]
async fn parquet_columns_of_distinct_values_are_written_without_a_dictionary() {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let sink = ParquetSink::new("lake", &root, None, LoadMode::Append).unwrap();
    let rows: Vec<(i64, &str, f64)> = (0..4096)
        .map(|i| (i * 7 - 5000, "2024-01", (i % 10) as f64))
        .collect();
    load(&sink, "l1", &[orders(&rows)]).await.unwrap();

    let file = std::fs::File::open(root.join("part-l1-0.parquet")).unwrap();
    let reader = SerializedFileReader::new(file).unwrap();
    let group = reader.metadata().row_group(0);
    let column = |name: &str| {
        (0..group.num_columns())
            .map(|i| group.column(i))
            .find(|c| c.column_path().string() == name)
            .unwrap()
    };
    let ids = column("order_id");
    assert!(
        ids.dictionary_page_offset().is_none(),
        "unique ids: no dictionary"
    );
    assert!(ids.encodings().any(|e| e == Encoding::DELTA_BINARY_PACKED));
    assert!(
        column("amount").dictionary_page_offset().is_some(),
        "ten amounts: a dictionary"
    );
    // The deltas read back as the ids written (negative ones included).
    let file = std::fs::File::open(root.join("part-l1-0.parquet")).unwrap();
    let mut read = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
    {
        let batch = batch.unwrap();
        let ids = batch
            .column_by_name("order_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        read.extend(ids.values().iter().copied());
    }
    assert_eq!(read, rows.iter().map(|r| r.0).collect::<Vec<_>>());
}
