//! `host run` end to end, through the binary: what lands in SQLite and Parquet is compared
//! with what the test computes itself from the generated source data.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use common::pipeline::*;
use common::{stderr, stdout};

#[test]
fn runs_load_new_rows_exactly_once_and_a_second_run_loads_nothing() {
    let project = Project::new();
    let first = orders(1, 400, 0);
    project.write_data("a.csv", &first[..250]);
    project.write_data("b.csv", &first[250..]);
    let pipeline = project.pipeline("quarantine", &format!("{SQLITE_APPEND}{PARQUET_BY_MONTH}"));

    let out = project.run(&pipeline, None);
    assert_eq!(
        out.status.code(),
        Some(3),
        "rows were quarantined\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let expected = once(first.iter().filter(|o| o.loads()).map(|o| o.id));
    assert!(expected.len() > 250, "{}", expected.len());
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected);
    assert_eq!(parquet_ids(&project.path("lake")), expected);
    // Partitions hold exactly their month's rows.
    for (partition, batch) in parquet_rows(&project.path("lake")) {
        for id in batch
            .column_by_name("order_id")
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
        {
            let order = first.iter().find(|o| o.id == *id).unwrap();
            assert_eq!(partition, format!("order_month={}", order.month()));
        }
    }
    let quarantined: usize = parquet_rows(&project.path("quarantine"))
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum();
    assert_eq!(
        quarantined,
        first.iter().filter(|o| o.quarantined()).count()
    );
    let summary = stdout(&out);
    assert!(
        summary.contains(&format!("rows read        {:>10}", first.len())),
        "{summary}"
    );
    assert!(
        summary.contains("watermark  (none) -> 2024-06-01T06:39:00Z"),
        "{summary}"
    );

    let out = project.run(&pipeline, None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing new to load"),
        "{}",
        stdout(&out)
    );
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected);

    // A new file: only its rows arrive.
    let more = orders(401, 120, 400);
    project.write_data("c.csv", &more);
    let out = project.run(&pipeline, None);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(3),
        "{}",
        stderr(&out)
    );
    let all = once(
        first
            .iter()
            .chain(&more)
            .filter(|o| o.loads())
            .map(|o| o.id),
    );
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), all);
    assert_eq!(parquet_ids(&project.path("lake")), all);

    let runs = stdout(&project.host(&["runs", pipeline.to_str().unwrap()]));
    assert_eq!(
        runs.lines().filter(|l| l.contains("Succeeded")).count(),
        2,
        "{runs}"
    );
    assert_eq!(
        runs.lines().filter(|l| l.contains("NothingNew")).count(),
        1,
        "{runs}"
    );
}

#[test]
fn a_changed_file_is_read_again_but_only_past_the_watermark() {
    let project = Project::new();
    let first = orders(1, 100, 0);
    project.write_data("a.csv", &first);
    let pipeline = project.pipeline("quarantine", SQLITE_APPEND);
    project.run(&pipeline, None);

    // The same file, grown: the old rows are at or below the watermark.
    let grown: Vec<Order> = orders(1, 160, 0);
    project.write_data("a.csv", &grown);
    let out = project.run(&pipeline, None);
    assert!(
        stdout(&out).contains(&format!("rows read        {:>10}", 60)),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        sqlite_ids(&project.path("warehouse.db")),
        once(grown.iter().filter(|o| o.loads()).map(|o| o.id))
    );
}

#[test]
fn abort_on_dirty_data_loads_nothing_and_names_the_file_row_and_check() {
    let project = Project::new();
    project.write_data("a.csv", &orders(1, 100, 0));
    let pipeline = project.pipeline("abort", SQLITE_APPEND);
    let out = project.run(&pipeline, None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("validation failed; nothing was loaded and the watermark is unchanged"),
        "{err}"
    );
    // Order 17 has an unparseable date; it is the 17th data row of a.csv.
    assert!(
        err.contains("data/a.csv row 17: failed not_null(order_date)"),
        "{err}"
    );
    assert!(err.contains("not_null(order_date): 5 rows"), "{err}");
    assert!(
        !project.path("warehouse.db").exists()
            || sqlite_ids_or_empty(&project.path("warehouse.db")).is_empty()
    );
    let state = stdout(&project.host(&["state", "show", pipeline.to_str().unwrap()]));
    assert!(state.contains("watermark (none)"), "{state}");
    // The history still says how many rows the failed run read (columns: run, status, read).
    let runs = stdout(&project.host(&["runs", pipeline.to_str().unwrap()]));
    let failed = runs.lines().find(|l| l.contains("ValidationFailed"));
    let read = failed.and_then(|l| l.split_whitespace().nth(2));
    assert_eq!(read, Some("100"), "{runs}");
}

#[test]
fn validate_and_plan_report_without_running() {
    let project = Project::new();
    project.write_data("a.csv", &orders(1, 10, 0));
    let pipeline = project.pipeline("quarantine", SQLITE_APPEND);
    let out = project.host(&["validate", pipeline.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("total_usd: Float64"),
        "{}",
        stdout(&out)
    );
    let out = project.host(&["plan", pipeline.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("would read 1 of 1 files:\n  data/a.csv"),
        "{}",
        stdout(&out)
    );
    assert!(
        !project.path("warehouse.db").exists()
            || sqlite_ids_or_empty(&project.path("warehouse.db")).is_empty()
    );

    // A check on a column no step produces is a problem.
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("column = \"order_date\"", "column = \"shipped_at\"");
    std::fs::write(&pipeline, text).unwrap();
    let out = project.host(&["validate", pipeline.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(
            "check `not_null(shipped_at)` names column `shipped_at`, which the steps do not produce"
        ),
        "{}",
        stdout(&out)
    );
}

/// The same orders as NDJSON and as Parquet load exactly as the CSV does.
#[test]
fn ndjson_and_parquet_sources_load_like_csv() {
    let data = orders(1, 200, 0);
    let expected = once(data.iter().filter(|o| o.loads()).map(|o| o.id));
    for format in ["ndjson", "parquet"] {
        let project = Project::new();
        let path = project.path(&format!("data/a.{format}"));
        match format {
            "ndjson" => {
                let mut text = String::new();
                for o in &data {
                    let customer = o.customer.map_or("null".to_string(), |c| c.to_string());
                    let _ = writeln!(
                        text,
                        r#"{{"order_id":{},"customer_id":{customer},"amount":{:.1},"currency":"USD","exchange_rate":{:.1},"order_date":"{}","updated_at":"{}"}}"#,
                        o.id, o.amount, o.rate, o.date, o.updated
                    );
                }
                std::fs::write(&path, text).unwrap();
            }
            _ => {
                // Read the CSV with arrow and write it as Parquet: the same values, typed.
                let csv_path = project.path("a.csv.tmp");
                std::fs::write(&csv_path, csv(&data)).unwrap();
                let format = arrow::csv::reader::Format::default().with_header(true);
                let (schema, _) = format
                    .infer_schema(std::fs::File::open(&csv_path).unwrap(), None)
                    .unwrap();
                let schema = std::sync::Arc::new(schema);
                let reader = arrow::csv::ReaderBuilder::new(schema.clone())
                    .with_header(true)
                    .build(std::fs::File::open(&csv_path).unwrap())
                    .unwrap();
                let mut writer = parquet::arrow::ArrowWriter::try_new(
                    std::fs::File::create(&path).unwrap(),
                    schema,
                    None,
                )
                .unwrap();
                for batch in reader {
                    writer.write(&batch.unwrap()).unwrap();
                }
                writer.close().unwrap();
            }
        }
        let text = std::fs::read_to_string(project.pipeline("quarantine", SQLITE_APPEND)).unwrap();
        let pipeline = project.path("pipeline.toml");
        std::fs::write(
            &pipeline,
            text.replace("data/*.csv", &format!("data/*.{format}")),
        )
        .unwrap();
        let out = project.run(&pipeline, None);
        assert_eq!(out.status.code(), Some(3), "{format}: {}", stderr(&out));
        assert_eq!(
            sqlite_ids(&project.path("warehouse.db")),
            expected,
            "{format}"
        );
    }
}

/// A day file delivered again (corrected) replaces that day's rows and nothing else.
#[test]
fn a_corrected_day_file_replaces_its_partition() {
    let project = Project::new();
    let day = |d: u32, ids: std::ops::Range<i64>, amount: f64| {
        let mut text =
            "order_day,order_id,customer_id,amount,currency,exchange_rate,order_date\n".to_string();
        for id in ids {
            let _ = writeln!(
                text,
                "2024-03-{d:02},{id},7,{amount},USD,1.0,2024-03-{d:02}T10:00:00Z"
            );
        }
        std::fs::write(project.path(&format!("data/2024-03-{d:02}.csv")), text).unwrap();
    };
    day(1, 1..11, 5.0);
    day(2, 11..21, 5.0);
    let c = common::components();
    let pipeline = project.path("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"name = "daily"
[source]
kind = "files"
path = "data/*.csv"
schema = {{ order_day = "utf8" }}
[[steps]]
kind = "transform"
plugin = "{}"
[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "warehouse.db"
table = "orders"
mode = "replace_partition"
partition_by = "order_day"
[[sinks]]
kind = "parquet"
name = "lake"
path = "lake"
partition_by = "order_day"
mode = "replace_partition"
"#,
            c.orders_transform.display()
        ),
    )
    .unwrap();
    assert!(project.run(&pipeline, None).status.success());
    // Day 2 corrected: 4 rows instead of 10, other ids.
    day(2, 100..104, 9.0);
    let out = project.run(&pipeline, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = once((1..11).chain(100..104));
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected);
    assert_eq!(parquet_ids(&project.path("lake")), expected);
    let partitions: BTreeSet<String> = parquet_rows(&project.path("lake"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        partitions,
        BTreeSet::from([
            "order_day=2024-03-01".to_string(),
            "order_day=2024-03-02".to_string()
        ])
    );
}

#[test]
fn bad_pipeline_files_name_the_file_line_and_key() {
    let project = Project::new();
    project.write_data("a.csv", &orders(1, 5, 0));
    let good = std::fs::read_to_string(project.pipeline("abort", SQLITE_APPEND)).unwrap();
    let pipeline = project.path("pipeline.toml");
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let cases: Vec<(String, String)> = vec![
        {
            let text = good.replace("batch_size = 100", "batch_size = 100\nincremntal = 3");
            let line = line_of(&text, "incremntal");
            (
                text,
                format!(
                    "pipeline.toml:{line}: source.incremntal: unknown key `incremntal`, did you mean `incremental`?"
                ),
            )
        },
        {
            let text = good.replace("batch_size = 100", "batch_size = \"large\"");
            let line = line_of(&text, "batch_size");
            (text, format!("pipeline.toml:{line}: source.batch_size:"))
        },
        {
            let text = good.replace(
                &common::components().orders_validator.display().to_string(),
                "plugins/missing.wasm",
            );
            let line = line_of(&text, "plugins/missing.wasm");
            (
                text,
                format!(
                    "pipeline.toml:{line}: steps[1].plugin: plugin `plugins/missing.wasm` does not exist"
                ),
            )
        },
        {
            let text = good.replace(
                "path = \"warehouse.db\"",
                "path = \"${WEIR_TEST_UNSET_DIR}/warehouse.db\"",
            );
            let line = line_of(&text, "WEIR_TEST_UNSET_DIR");
            (
                text,
                format!(
                    "pipeline.toml:{line}: sinks[0].path: environment variable `WEIR_TEST_UNSET_DIR` is not set"
                ),
            )
        },
    ];
    for (text, expected) in cases {
        std::fs::write(&pipeline, &text).unwrap();
        let out = project.run(&pipeline, None);
        assert_eq!(out.status.code(), Some(1), "{expected}");
        assert!(
            stderr(&out).contains(&expected),
            "expected `{expected}` in:\n{}",
            stderr(&out)
        );
    }
}
