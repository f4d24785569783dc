//! The transform as it was before it was fused into one pass over the kept rows (every
//! row's date parsed by Arrow itself, then `filter_record_batch`): the tests check that the
//! transform gives exactly its batches, and its errors.

use std::sync::Arc;

use weir_sdk::Error;
use weir_sdk::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, Float64Array, RecordBatch,
    TimestampMicrosecondArray,
};
use weir_sdk::arrow::buffer::BooleanBuffer;
use weir_sdk::arrow::cast::parse::string_to_timestamp_nanos;
use weir_sdk::arrow::schema::{DataType, Field, Schema};
use weir_sdk::arrow::{arith, select};

use crate::{BadDates, as_f64, column};

/// `order_date` as UTC microseconds: parsed from text (ISO 8601 / RFC 3339 forms), or
/// converted from a timestamp or date column. `None` where the text is not a date.
fn order_dates(
    batch: &RecordBatch,
    bad_dates: BadDates,
) -> Result<TimestampMicrosecondArray, Error> {
    let array = column(batch, "order_date")?;
    let dates: TimestampMicrosecondArray = match array.data_type() {
        DataType::Utf8 => {
            let text = array.as_string::<i32>();
            // Values and validity built directly: no `Option` per row to convert afterwards.
            let mut values = Vec::with_capacity(text.len());
            let mut valid = BooleanBufferBuilder::new(text.len());
            for (row, value) in text.iter().enumerate() {
                let parsed = value.and_then(|s| {
                    string_to_timestamp_nanos(s)
                        .ok()
                        .map(|ns| ns.div_euclid(1000))
                });
                if parsed.is_none()
                    && bad_dates == BadDates::Fail
                    && let Some(v) = value
                {
                    return Err(Error::input(format!(
                        "row {row}: order_date `{v}` is not a date"
                    )));
                }
                values.push(parsed.unwrap_or(0));
                valid.append(parsed.is_some());
            }
            TimestampMicrosecondArray::new(values.into(), Some(valid.finish().into()))
        }
        // Unchanged by the one-pass rewrite: the transform's own conversion.
        _ => crate::convert_dates(array)?,
    };
    Ok(dates.with_timezone("UTC"))
}

/// The transform itself, with Arrow kernels only.
pub(crate) fn transform_orders(
    batch: &RecordBatch,
    bad_dates: BadDates,
) -> Result<RecordBatch, Error> {
    let dates = order_dates(batch, bad_dates)?;
    // Typed kernels rather than the dynamic ones keep the component small.
    let total: Float64Array = arith::arity::binary(
        &as_f64(batch, "amount")?,
        &as_f64(batch, "exchange_rate")?,
        |a, r| a * r,
    )?;
    // Keep rows with a customer and `total_usd > 0`; a null total (null amount) is dropped,
    // as pandas' comparison drops NaN.
    let mut keep = BooleanBuffer::collect_bool(total.len(), |i| total.value(i) > 0.0);
    for nulls in [
        total.nulls(),
        column(batch, "customer_id")?.logical_nulls().as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        keep = &keep & nulls.inner();
    }
    let keep = BooleanArray::new(keep, None);
    let total: ArrayRef = Arc::new(total);
    let dates: ArrayRef = Arc::new(dates);

    let mut fields: Vec<Field> = Vec::with_capacity(batch.num_columns() + 2);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns() + 2);
    let mut dates_at = 0;
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.name() == "order_date" {
            dates_at = columns.len();
            fields.push(Field::new("order_date", dates.data_type().clone(), true));
            columns.push(dates.clone());
        } else if field.name() != "total_usd" && field.name() != "order_month" {
            fields.push(field.as_ref().clone());
            columns.push(array.clone());
        }
    }
    fields.push(Field::new("total_usd", DataType::Float64, true));
    columns.push(total);
    let all = RecordBatch::try_new(Arc::new(Schema::new(fields.clone())), columns)?;

    // `order_month` from the kept dates: fewer rows, and no text column to filter.
    let kept = select::filter::filter_record_batch(&all, &keep)?;
    let months = crate::order_month(kept.column(dates_at).as_primitive());
    fields.push(Field::new("order_month", DataType::Utf8, true));
    let mut columns = kept.columns().to_vec();
    columns.push(Arc::new(months));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weir_sdk::arrow::array::{
        Array, ArrayRef, Date32Array, Float32Array, Float64Array, Int32Array, Int64Array,
        NullArray, RecordBatch, StringArray, TimestampNanosecondArray, TimestampSecondArray,
    };
    use weir_sdk::arrow::schema::{Field, Schema};

    use crate::BadDates;
    use crate::dates::tests::Rng;

    /// Dates of every kind the parser treats differently, valid and not.
    const DATES: &[&str] = &[
        "2024-03-15T10:15:30Z",
        "2024-03-15",
        "not a date",
        "",
        "2024-01-31T23:59:60Z",      // a leap second into February
        "2024-12-31T23:30:00-01:00", // the next year's January in UTC
        "2024-03-01T00:30:00+01:00", // February in UTC
        "2024-02-29T12:00:00.123456789+05:30",
        "2024-02-30",
        "2024-13-01",
        "2024-03-15 10:15:30",
        "2024-03-15T10:15:30.1234567890Z", // Arrow's own path
        "2024-03-15T10:15:30 UTC",
        "1677-09-21T00:12:44Z",
        "1678-01-01T00:00:00+05:00",
        "2261-12-31T23:59:59-05:00",
        "2262-04-11T23:47:16.854775807Z",
        "0000-01-01",
        "9999-12-31",
        "2024-03-15T25:00:00Z",
    ];

    fn float64(rng: &mut Rng, n: usize, nulls: usize) -> ArrayRef {
        const VALUES: &[f64] = &[12.5, -3.0, 0.0, -0.0, f64::NAN, f64::INFINITY, 1e-300, 0.92];
        Arc::new(Float64Array::from_iter((0..n).map(|_| {
            (!rng.one_in(nulls)).then(|| VALUES[rng.below(VALUES.len())])
        })))
    }

    /// A batch with the columns the transform reads, of varied types, some of them missing,
    /// and others it carries along.
    fn batch(rng: &mut Rng) -> RecordBatch {
        let n = rng.below(300);
        let nulls = [2, 10, 50, usize::MAX][rng.below(4)];
        let amount: ArrayRef = match rng.below(5) {
            0 => Arc::new(Int64Array::from_iter(
                (0..n).map(|i| (!rng.one_in(nulls)).then_some(i as i64 % 7 - 2)),
            )),
            1 => Arc::new(Int32Array::from_iter(
                (0..n).map(|i| (!rng.one_in(nulls)).then_some(i as i32 % 7 - 2)),
            )),
            2 => Arc::new(Float32Array::from_iter(
                (0..n).map(|i| (!rng.one_in(nulls)).then_some(i as f32 * 0.7 - 20.0)),
            )),
            3 if rng.one_in(10) => Arc::new(StringArray::from(vec!["1"; n])),
            _ => float64(rng, n, nulls),
        };
        let order_date: ArrayRef = match rng.below(12) {
            0 => Arc::new(
                TimestampSecondArray::from_iter(
                    (0..n).map(|i| (!rng.one_in(nulls)).then_some(i as i64 * 86_399 - 1_000_000)),
                )
                .with_timezone("+05:00"),
            ),
            1 => Arc::new(TimestampNanosecondArray::from_iter((0..n).map(|i| {
                (!rng.one_in(nulls)).then_some(i as i64 * 7_777_777_777_777)
            }))),
            2 => Arc::new(Date32Array::from_iter(
                (0..n).map(|i| (!rng.one_in(nulls)).then_some(i as i32 * 17 - 400)),
            )),
            3 if rng.one_in(4) => Arc::new(Int64Array::from(vec![1; n])),
            _ => {
                Arc::new(StringArray::from_iter((0..n).map(|_| {
                    (!rng.one_in(nulls)).then(|| DATES[rng.below(DATES.len())])
                })))
            }
        };
        let customer_id: ArrayRef = match rng.below(8) {
            0 => Arc::new(NullArray::new(n)),
            _ => Arc::new(Int64Array::from_iter(
                (0..n).map(|i| (!rng.one_in(nulls)).then_some(i as i64)),
            )),
        };
        let mut columns: Vec<(&str, ArrayRef)> = vec![
            (
                "order_id",
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
            ),
            ("customer_id", customer_id),
            ("amount", amount),
            ("exchange_rate", float64(rng, n, nulls)),
            ("order_date", order_date),
            (
                "note",
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| (!rng.one_in(3)).then(|| "x".repeat(i % 5))),
                )),
            ),
            ("total_usd", Arc::new(Float64Array::from(vec![1.0; n]))),
            (
                "order_month",
                Arc::new(StringArray::from(vec!["2000-01"; n])),
            ),
        ];
        // Shuffled, a column sometimes dropped.
        for i in (1..columns.len()).rev() {
            columns.swap(i, rng.below(i + 1));
        }
        if rng.one_in(20) {
            columns.remove(rng.below(columns.len()));
        }
        let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = columns
            .into_iter()
            .map(|(name, array)| (Field::new(name, array.data_type().clone(), true), array))
            .unzip();
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        // Sometimes a slice: arrays with an offset.
        let from = rng.below(n / 4 + 1);
        if rng.one_in(3) {
            batch.slice(from, n - from - rng.below(n / 4 + 1).min(n - from))
        } else {
            batch
        }
    }

    #[test]
    fn gives_exactly_the_reference_batches_and_errors() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let (mut ok, mut failed) = (0, 0);
        for _ in 0..20_000 {
            let batch = batch(&mut rng);
            let bad_dates = [BadDates::Null, BadDates::Fail][rng.below(2)];
            let got =
                crate::transform_orders(&batch, bad_dates).and_then(weir_sdk::Output::into_batch);
            let want = super::transform_orders(&batch, bad_dates);
            match (got, want) {
                (Ok(got), Ok(want)) => {
                    ok += 1;
                    assert_eq!(got.schema(), want.schema());
                    assert_eq!(got.num_rows(), want.num_rows());
                    for (g, w) in got.columns().iter().zip(want.columns()) {
                        assert_eq!(g.to_data(), w.to_data(), "{batch:?}");
                        // The same null bits. (Filtering away no row, Arrow's filter keeps a
                        // null buffer without nulls, where ours has none: a difference
                        // neither Arrow's equality nor its IPC encoding sees.)
                        let nulls =
                            |a: &ArrayRef| a.nulls().filter(|n| n.null_count() > 0).cloned();
                        assert_eq!(nulls(g), nulls(w));
                        assert_eq!(g.data_type(), w.data_type());
                    }
                    // Bit for bit (NaN would not equal itself), and the same slices of text.
                    let floats = |b: &RecordBatch| -> Vec<u64> {
                        let total = b.column_by_name("total_usd").unwrap();
                        let total = total.as_any().downcast_ref::<Float64Array>().unwrap();
                        total.values().iter().map(|v| v.to_bits()).collect()
                    };
                    assert_eq!(floats(&got), floats(&want));
                }
                (Err(got), Err(want)) => {
                    failed += 1;
                    assert_eq!(got.to_string(), want.to_string());
                }
                (got, want) => panic!("{batch:?}: {:?} vs {:?}", got.map(|_| ()), want.map(|_| ())),
            }
        }
        // Deterministic: only guards against the generator losing one kind of outcome.
        assert!(ok > 10_000 && failed > 1_000, "{ok} ok, {failed} errors");
    }
}
