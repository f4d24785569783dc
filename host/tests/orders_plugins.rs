//! The orders plugins, run as Wasm, against an independent row-by-row reference of the
//! seed's `transform_orders` and `validate`, on generated data with nulls, negatives and
//! bad dates.

mod common;

use common::xorshift::Gen;

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use weir::plugin::{Cause, StepPolicy};

struct Row {
    order_id: i64,
    customer_id: Option<i64>,
    amount: Option<f64>,
    exchange_rate: f64,
    order_date: Option<String>,
}

fn generate(rows: usize, seed: u64) -> Vec<Row> {
    let mut g = Gen(seed);
    (0..rows)
        .map(|i| {
            let (y, m, d) = (
                2023 + g.below(3) as i32,
                1 + g.below(12) as u32,
                1 + g.below(28) as u32,
            );
            let (hh, mm, ss) = (g.below(24), g.below(60), g.below(60));
            let order_date = match g.below(12) {
                0 => None,
                1 => Some("not a date".to_string()),
                2 => Some(format!("{y}-13-{d:02}")),
                3 => Some("2023-02-29".to_string()),
                4 => Some(format!("{y}-{m:02}-{d:02}")),
                5 => Some(format!("{y}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")),
                6 => Some(format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}+05:30")),
                7 => Some(format!("{y}-{m:02}-01T00:30:00+02:00")), // the previous month in UTC
                _ => Some(format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")),
            };
            Row {
                order_id: i as i64,
                customer_id: (g.below(9) != 0).then(|| g.below(5000) as i64),
                amount: match g.below(15) {
                    0 => None,
                    1 => Some(0.0),
                    2..=3 => Some(-(g.below(100_000) as f64) / 100.0),
                    _ => Some(g.below(100_000) as f64 / 100.0),
                },
                exchange_rate: [1.0, 0.5, 1.25, 0.0, 108.3][g.below(5) as usize],
                order_date,
            }
        })
        .collect()
}

fn to_batch(rows: &[Row]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("exchange_rate", DataType::Float64, false),
        Field::new("order_date", DataType::Utf8, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(rows.iter().map(|r| r.order_id).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.customer_id).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.amount).collect::<Float64Array>()),
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.exchange_rate))
                    .collect::<Float64Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| r.order_date.clone())
                    .collect::<StringArray>(),
            ),
        ],
    )
    .unwrap()
}

/// Parse a date the way the seed's `pd.to_datetime(utc=True)` reads these formats.
fn parse_utc_micros(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Some(t.and_utc().timestamp_micros());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros())
}

/// One expected output row.
#[derive(Debug, PartialEq)]
struct Expected {
    order_id: i64,
    order_date: Option<i64>,
    total_usd: f64,
    order_month: Option<String>,
}

fn reference(rows: &[Row]) -> Vec<Expected> {
    rows.iter()
        .filter(|r| r.customer_id.is_some())
        .filter_map(|r| {
            let total = r.amount? * r.exchange_rate;
            (total > 0.0).then(|| {
                let date = r.order_date.as_deref().and_then(parse_utc_micros);
                let month = date.map(|us| {
                    DateTime::from_timestamp_micros(us)
                        .unwrap()
                        .format("%Y-%m")
                        .to_string()
                });
                Expected {
                    order_id: r.order_id,
                    order_date: date,
                    total_usd: total,
                    order_month: month,
                }
            })
        })
        .collect()
}

fn actual(batch: &RecordBatch) -> Vec<Expected> {
    let ids = batch
        .column_by_name("order_id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let dates = batch
        .column_by_name("order_date")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    let totals = batch
        .column_by_name("total_usd")
        .unwrap()
        .as_primitive::<Float64Type>();
    let months = batch
        .column_by_name("order_month")
        .unwrap()
        .as_string::<i32>();
    (0..batch.num_rows())
        .map(|i| Expected {
            order_id: ids.value(i),
            order_date: dates.is_valid(i).then(|| dates.value(i)),
            total_usd: totals.value(i),
            order_month: months.is_valid(i).then(|| months.value(i).to_string()),
        })
        .collect()
}

#[test]
fn wasm_orders_transform_matches_an_independent_reference() {
    let rows = generate(50_000, 0x5eed);
    let expected = reference(&rows);
    let plugin = common::load(&common::components().orders_transform);
    let mut session = plugin
        .transform_session("{}", StepPolicy::default())
        .unwrap();

    let mut got = Vec::new();
    for chunk in rows.chunks(8192) {
        let output = session.transform(&to_batch(chunk)).unwrap();
        assert_eq!(
            output
                .schema()
                .field_with_name("order_date")
                .unwrap()
                .data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        got.extend(actual(&output));
    }
    // The generated data exercises every path.
    assert!(rows.iter().filter(|r| r.customer_id.is_none()).count() > 1000);
    assert!(
        expected.iter().filter(|e| e.order_date.is_none()).count() > 1000,
        "bad dates kept as null"
    );
    assert!(
        expected.len() > 10_000 && expected.len() < 40_000,
        "{} rows kept",
        expected.len()
    );
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
}

/// The orders transform reads four columns (`Transform::reads`): a wide column it does not
/// read never enters the sandbox, yet reaches the output, its kept rows as they were.
#[test]
fn columns_the_transform_does_not_read_stay_outside_the_sandbox() {
    let rows = generate(2_000, 0xface);
    let narrow = to_batch(&rows);
    let wide = with_payload(&narrow);
    let policy = common::hostile::policy(10_000, 16);

    let plugin = common::load(&common::components().orders_transform);
    let mut session = plugin.transform_session("{}", policy).unwrap();
    let output = session.transform(&wide).unwrap();
    let expected = session.transform(&narrow).unwrap();
    assert_eq!(output.num_rows(), expected.num_rows());
    assert!(output.num_rows() > 1000);
    assert_eq!(output.schema().field(1).name(), "payload");
    let ids = output.column(0).as_primitive::<Int64Type>();
    let payload = output.column(1).as_string::<i32>();
    for row in 0..output.num_rows() {
        assert_eq!(payload.value(row), format!("{:016384}", ids.value(row)));
    }
    // The rest is what the narrow batch gives.
    assert_eq!(output.project(&[0, 2, 3, 4, 5, 6, 7]).unwrap(), expected);

    // A plugin that reads every column cannot take this batch under the same cap.
    let hostile = common::load(&common::components().hostile);
    let error = hostile
        .transform_session("{}", policy)
        .unwrap()
        .transform(&wide)
        .expect_err("the payload does not fit");
    assert!(matches!(error.cause, Cause::MemoryCap { .. }), "{error}");
}

/// `batch` with a column `payload` second: 16 KiB of text per row (`order_id`, padded), 31
/// MiB for 2,000 rows, more than a 16 MiB memory cap.
fn with_payload(batch: &RecordBatch) -> RecordBatch {
    let ids = batch.column(0).as_primitive::<Int64Type>();
    let payload: StringArray = ids
        .iter()
        .map(|id| Some(format!("{:016384}", id?)))
        .collect();
    let mut fields = batch.schema().fields().to_vec();
    fields.insert(1, Arc::new(Field::new("payload", DataType::Utf8, true)));
    let mut columns = batch.columns().to_vec();
    columns.insert(1, Arc::new(payload));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// Orders as the validator sees them: with `total_usd` (negative where the amount is).
fn validator_input(rows: &[Row]) -> RecordBatch {
    let batch = to_batch(rows);
    let totals: Float64Array = rows
        .iter()
        .map(|r| r.amount.map(|a| a * r.exchange_rate))
        .collect();
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(totals));
    let mut fields = batch.schema().fields().to_vec();
    fields.push(Arc::new(Field::new("total_usd", DataType::Float64, true)));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// The orders validator reads three columns: a wide column it does not read never enters
/// the sandbox, and the checks (their failing rows counted in the whole batch) are those of
/// the batch without it.
#[test]
fn columns_the_validator_does_not_read_stay_outside_the_sandbox() {
    let mut rows = generate(2_000, 0xbeef);
    rows[7].order_id = rows[3].order_id; // a duplicate, for a failing row
    let narrow = validator_input(&rows);
    let plugin = common::load(&common::components().orders_validator);
    let mut session = plugin
        .validate_session("{}", common::hostile::policy(10_000, 16))
        .unwrap();
    let outcome = |checks: Vec<weir::plugin::CheckResult>| -> Vec<(String, bool, Vec<u32>)> {
        checks
            .into_iter()
            .map(|c| (c.name, c.passed, c.failing_rows))
            .collect()
    };
    let expected = outcome(session.validate(&narrow).unwrap());
    assert!(expected.iter().any(|(_, passed, _)| !passed));
    let got = outcome(session.validate(&with_payload(&narrow)).unwrap());
    assert_eq!(got, expected);
}

#[test]
fn bad_dates_fail_the_batch_when_configured_naming_the_row() {
    let rows = generate(100, 7);
    let first_bad = rows
        .iter()
        .position(|r| {
            r.order_date
                .as_deref()
                .is_some_and(|d| parse_utc_micros(d).is_none())
        })
        .unwrap();
    let plugin = common::load(&common::components().orders_transform);
    let mut session = plugin
        .transform_session(r#"{"bad_dates": "fail"}"#, StepPolicy::default())
        .unwrap();
    let error = session.transform(&to_batch(&rows)).unwrap_err();
    assert!(
        matches!(&error.cause, Cause::Returned { kind, .. } if kind == "invalid-input"),
        "{error}"
    );
    let bad = rows[first_bad].order_date.as_deref().unwrap();
    assert!(
        error.to_string().contains(&format!(
            "row {first_bad}: order_date `{bad}` is not a date"
        )),
        "{error}"
    );
}

#[test]
fn wasm_orders_validator_finds_exactly_the_failing_rows() {
    let mut rows = generate(5_000, 99);
    rows[10].order_id = 3; // duplicates
    rows[20].order_id = 3;
    // The validator runs on transformed data: a `total_usd` with negatives.
    let batch = validator_input(&rows);

    let plugin = common::load(&common::components().orders_validator);
    let mut session = plugin
        .validate_session("{}", StepPolicy::default())
        .unwrap();
    let checks = session.validate(&batch).unwrap();
    let by_name = |n: &str| {
        checks
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("no check {n}"))
    };

    let null_customers: Vec<u32> = (0..rows.len() as u32)
        .filter(|&i| rows[i as usize].customer_id.is_none())
        .collect();
    assert_eq!(by_name("customer_id_not_null").failing_rows, null_customers);
    assert!(!by_name("customer_id_not_null").passed);

    let negative: Vec<u32> = (0..rows.len() as u32)
        .filter(|&i| {
            rows[i as usize]
                .amount
                .is_some_and(|a| a * rows[i as usize].exchange_rate < 0.0)
        })
        .collect();
    assert_eq!(by_name("total_usd_non_negative").failing_rows, negative);

    let mut seen = HashSet::new();
    let duplicates: Vec<u32> = (0..rows.len() as u32)
        .filter(|&i| !seen.insert(rows[i as usize].order_id))
        .collect();
    assert_eq!(duplicates, vec![10, 20]);
    assert_eq!(by_name("order_id_unique").failing_rows, duplicates);
    assert!(by_name("batch_not_empty").passed);

    let empty = session.validate(&batch.slice(0, 0)).unwrap();
    assert!(
        !empty
            .iter()
            .find(|c| c.name == "batch_not_empty")
            .unwrap()
            .passed
    );
}

/// The batch as an Arrow IPC stream.
fn encode(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    writer.write(batch).unwrap();
    writer.finish().unwrap();
    drop(writer);
    out
}

#[test]
fn a_transforms_output_stream_goes_to_the_validator_as_it_is() {
    let rows = generate(6_000, 11);
    let transform = common::load(&common::components().orders_transform);
    let mut transform = transform
        .transform_session("{}", StepPolicy::default())
        .unwrap();
    let (output, stream) = transform.transform_ipc(&to_batch(&rows), None).unwrap();
    // orders-transform answers by columns (only what it computed comes back), so there is
    // no stream of its whole output: the validator gets the batch encoded.
    assert!(stream.is_none());
    let stream = encode(&output);

    // A validator reading every column (the test one, whose check says what it saw).
    let validator = common::load(&common::components().hostile_validator);
    let mut validator = validator
        .validate_session("{}", StepPolicy::default())
        .unwrap();
    let message = |checks| check_message(checks, "fine");
    let rows = output.num_rows();
    let encoded = message(validator.validate(&output).unwrap());
    assert_eq!(encoded, format!("{rows} rows, 7 columns"));
    let handed = message(validator.validate_ipc(&output, Some(&stream)).unwrap());
    assert_eq!(handed, encoded);
    // The bytes are sent, not the batch encoded anew: a stream of half the rows is what the
    // validator sees.
    let half = encode(&output.slice(0, rows / 2));
    let seen = message(validator.validate_ipc(&output, Some(&half)).unwrap());
    assert_eq!(seen, format!("{} rows, 7 columns", rows / 2));

    // The orders validator reads 3 of the 7 columns: it is sent those, encoded anew, and
    // the stream is not used (it holds every column).
    let orders = common::load(&common::components().orders_validator);
    let mut orders = orders
        .validate_session("{}", StepPolicy::default())
        .unwrap();
    let seen = orders.validate_ipc(&output, Some(&half)).unwrap();
    assert_eq!(
        check_message(seen, "batch_not_empty"),
        format!("{rows} rows")
    );
}

/// The message of the check called `name`.
fn check_message(checks: Vec<weir::plugin::CheckResult>, name: &str) -> String {
    let check = checks.into_iter().find(|c| c.name == name);
    check.unwrap_or_else(|| panic!("no check {name}")).message
}
