//! The Postgres type mappings, both ways, and the sink's schema-drift policy, through the
//! library against a real server.

mod common;

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::*;
use futures::TryStreamExt;

use common::postgres::PgServer;
use weir::extract::postgres::PostgresSource;
use weir::extract::{CursorRange, Source};
use weir::extract::{QuerySpec, Relation};
use weir::load::postgres::SchemaPolicy;
use weir::load::{LoadError, LoadMode, LoadSpec, PostgresSink, Sink};

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

const COLUMNS: &str = "id, b, i2, i8, f4, f8, dec, num, t, vc, by, d, tm, ts, tstz, u, j";

#[test]
fn every_mapped_type_reads_into_arrow_and_copies_back_unchanged() {
    let pg = PgServer::start();
    pg.execute(
        "postgres",
        "CREATE TABLE every_type (id int4, b bool, i2 int2, i8 int8, f4 real, f8 float8, \
         dec numeric(12, 2), num numeric, t text, vc varchar(10), by bytea, d date, tm time, \
         ts timestamp, tstz timestamptz, u uuid, j jsonb, ia int4[], ta text[]);
         INSERT INTO every_type VALUES (1, true, -2, 9000000000, 1.5, 2.25, -12345.67, 3.14159, \
         'héllo', 'v', '\\x0102', '2024-02-29', '13:14:15.5', '2024-03-05 10:20:30.123456', \
         '2024-03-05 10:20:30+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"k\": [1, 2]}', \
         '{1,NULL,3}', '{a,b}');
         INSERT INTO every_type (id) VALUES (2);",
    );
    let batches: Vec<RecordBatch> = block_on(async {
        let source = PostgresSource::new(
            &pg.url("postgres"),
            QuerySpec {
                relation: Relation::Query("SELECT * FROM every_type ORDER BY id".into()),
                batch_size: 1024,
                cursor: None,
            },
        )
        .unwrap();
        let part = source.list().await.unwrap().remove(0);
        source
            .read(&part, &CursorRange::default())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    });
    let batch = &batches[0];
    let types: Vec<(String, DataType)> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let utc = Some("UTC".into());
    let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
    let expected = [
        ("id", DataType::Int32),
        ("b", DataType::Boolean),
        ("i2", DataType::Int16),
        ("i8", DataType::Int64),
        ("f4", DataType::Float32),
        ("f8", DataType::Float64),
        ("dec", DataType::Decimal128(12, 2)),
        ("num", DataType::Utf8),
        ("t", DataType::Utf8),
        ("vc", DataType::Utf8),
        ("by", DataType::Binary),
        ("d", DataType::Date32),
        ("tm", DataType::Time64(TimeUnit::Microsecond)),
        ("ts", DataType::Timestamp(TimeUnit::Microsecond, None)),
        ("tstz", DataType::Timestamp(TimeUnit::Microsecond, utc)),
        ("u", DataType::Utf8),
        ("j", DataType::Utf8),
        ("ia", list(DataType::Int32)),
        ("ta", list(DataType::Utf8)),
        ("_weir_source", DataType::Utf8),
        ("_weir_row", DataType::Int64),
    ]
    .map(|(n, t)| (n.to_string(), t));
    assert_eq!(types, expected);

    let col = |name: &str| batch.column_by_name(name).unwrap();
    assert_eq!(
        col("i8").as_primitive::<Int64Type>().value(0),
        9_000_000_000
    );
    assert_eq!(
        col("dec").as_primitive::<Decimal128Type>().value(0),
        -1_234_567
    );
    assert_eq!(col("num").as_string::<i32>().value(0), "3.14159");
    assert_eq!(col("t").as_string::<i32>().value(0), "héllo");
    assert_eq!(col("by").as_binary::<i32>().value(0), [1, 2]);
    // 2024-02-29 is day 19782 after 1970-01-01.
    assert_eq!(col("d").as_primitive::<Date32Type>().value(0), 19_782);
    assert_eq!(
        col("tm").as_primitive::<Time64MicrosecondType>().value(0),
        (13 * 3600 + 14 * 60 + 15) * 1_000_000 + 500_000
    );
    // 2024-03-05T10:20:30.123456 and 08:20:30Z, in microseconds since the epoch.
    assert_eq!(
        col("ts")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        1_709_634_030_123_456
    );
    assert_eq!(
        col("tstz")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        1_709_626_830_000_000
    );
    assert_eq!(
        col("u").as_string::<i32>().value(0),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    );
    assert_eq!(col("j").as_string::<i32>().value(0), r#"{"k": [1, 2]}"#);
    let ints = col("ia").as_list::<i32>().value(0);
    assert_eq!(
        ints.as_primitive::<Int32Type>().iter().collect::<Vec<_>>(),
        [Some(1), None, Some(3)]
    );
    // Row 2: NULL in every column but the id.
    for (i, field) in batch.schema().fields().iter().enumerate().skip(1) {
        if !field.name().starts_with("_weir_") {
            assert!(batch.column(i).is_null(1), "{} is NULL", field.name());
        }
    }
    assert_eq!(
        col("_weir_row").as_primitive::<Int64Type>().values(),
        &[1, 2]
    );

    // Back into a table the sink creates, lists left out (the sink refuses them).
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| !matches!(batch.schema().field(i).data_type(), DataType::List(_)))
        .collect();
    let back = batch.project(&keep).unwrap();
    block_on(async {
        let sink = PostgresSink::connect(
            "copy",
            &pg.url("postgres"),
            "copied",
            LoadMode::Append,
            SchemaPolicy::Strict,
        )
        .await
        .unwrap();
        let spec = LoadSpec {
            pipeline: "types".into(),
            load_id: "load-1".into(),
            schema: back.schema(),
        };
        let mut load = sink.begin(&spec).await.unwrap().unwrap();
        load.write(&back).await.unwrap();
        assert_eq!(load.commit().await.unwrap(), 2);
    });
    let text = |table: &str| {
        let cast: Vec<String> = COLUMNS.split(", ").map(|c| format!("{c}::text")).collect();
        pg.rows(
            "postgres",
            &format!("SELECT {} FROM {table} ORDER BY id", cast.join(", ")),
        )
    };
    assert_eq!(text("copied"), text("every_type"));
}

fn batch(columns: Vec<(&str, Arc<dyn Array>)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

/// Loads `batch` into `table` under `policy`; the error's message if it fails.
fn load(
    pg: &PgServer,
    table: &str,
    policy: SchemaPolicy,
    batch: &RecordBatch,
) -> Result<(), String> {
    block_on(async {
        let sink =
            PostgresSink::connect("dw", &pg.url("postgres"), table, LoadMode::Append, policy)
                .await
                .unwrap();
        let spec = LoadSpec {
            pipeline: "drift".into(),
            load_id: format!("{table}-{policy:?}"),
            schema: batch.schema(),
        };
        let result: Result<(), LoadError> = async {
            let mut load = sink.begin(&spec).await?.unwrap();
            load.write(batch).await?;
            load.commit().await.map(drop)
        }
        .await;
        result.map_err(|e| e.to_string())
    })
}

#[test]
fn schema_drift_follows_the_sinks_policy() {
    let pg = PgServer::start();
    pg.execute(
        "postgres",
        "CREATE TABLE strict_t (id bigint, note text);
         CREATE TABLE required_t (id bigint, note text NOT NULL);
         CREATE TABLE evolve_t (id bigint, note text);
         CREATE TABLE typed_t (id integer);
         CREATE TABLE wide_t (id bigint, ratio double precision);",
    );
    let ids = || Arc::new(Int32Array::from(vec![1, 2])) as Arc<dyn Array>;
    let extra = || Arc::new(StringArray::from(vec!["x", "y"])) as Arc<dyn Array>;

    // A new column: refused under strict, added under evolve.
    let with_extra = batch(vec![("id", ids()), ("note", extra()), ("extra", extra())]);
    let error = load(&pg, "strict_t", SchemaPolicy::Strict, &with_extra).unwrap_err();
    assert!(
        error.contains("the load has column `extra` (text), which table strict_t lacks"),
        "{error}"
    );
    assert!(error.contains("schema = \"evolve\""), "{error}");
    let only_extra = batch(vec![("id", ids()), ("extra", extra())]);
    load(&pg, "evolve_t", SchemaPolicy::Evolve, &only_extra).unwrap();
    assert_eq!(
        pg.rows(
            "postgres",
            "SELECT id::text, note, extra FROM evolve_t ORDER BY id"
        ),
        [
            [Some("1".to_string()), None, Some("x".to_string())],
            [Some("2".to_string()), None, Some("y".to_string())],
        ]
    );

    // A missing column: refused under strict; under evolve only if it may be NULL.
    let only_ids = batch(vec![("id", ids())]);
    let error = load(&pg, "strict_t", SchemaPolicy::Strict, &only_ids).unwrap_err();
    assert!(
        error.contains("table strict_t has column `note` (text), which the load lacks"),
        "{error}"
    );
    let error = load(&pg, "required_t", SchemaPolicy::Evolve, &only_ids).unwrap_err();
    assert!(error.contains("NOT NULL without a default"), "{error}");

    // A changed type fails under every policy; a wider column takes the values.
    let text_ids = batch(vec![("id", extra())]);
    let error = load(&pg, "typed_t", SchemaPolicy::Evolve, &text_ids).unwrap_err();
    assert!(
        error.contains("column `id` of table typed_t is integer but the load's is text"),
        "{error}"
    );
    let ratio = Arc::new(Float32Array::from(vec![0.5, 1.5])) as Arc<dyn Array>;
    let narrow = batch(vec![("id", ids()), ("ratio", ratio)]);
    load(&pg, "wide_t", SchemaPolicy::Strict, &narrow).unwrap();
    assert_eq!(
        pg.rows(
            "postgres",
            "SELECT id::text, ratio::text FROM wide_t ORDER BY id"
        ),
        [
            [Some("1".to_string()), Some("0.5".to_string())],
            [Some("2".to_string()), Some("1.5".to_string())],
        ]
    );
    // Nothing of a refused load is left behind.
    assert_eq!(
        pg.rows("postgres", "SELECT count(*)::text FROM strict_t"),
        [[Some("0".to_string())]]
    );
}
