//! The seed's `transform_orders`, as a Weir transform:
//!
//! - `order_date` (text) parsed to a UTC timestamp (microseconds);
//! - `total_usd = amount * exchange_rate`;
//! - rows with a null `customer_id` dropped; only rows with `total_usd > 0` kept;
//! - `order_month` added as `YYYY-MM`.
//!
//! Settings: `bad_dates = "null"` (default: an unparseable date becomes null, for a
//! `not_null` check to catch with its row) or `"fail"` (the batch fails naming the row).

use std::sync::Arc;

use weir_sdk::arrow::array::types::{
    Date32Type, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use weir_sdk::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, Float64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use weir_sdk::arrow::buffer::{BooleanBuffer, OffsetBuffer};
use weir_sdk::arrow::schema::{DataType, Field, Schema, TimeUnit};
use weir_sdk::arrow::{arith, select};
use weir_sdk::{Config, Error, Transform};

mod dates;

#[derive(serde::Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BadDates {
    #[default]
    Null,
    Fail,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub bad_dates: BadDates,
}

pub struct OrdersTransform(Settings);

impl Transform for OrdersTransform {
    fn new(config: Config) -> Result<Self, Error> {
        Ok(OrdersTransform(config.parse()?))
    }

    fn transform(&mut self, batch: RecordBatch) -> Result<RecordBatch, Error> {
        transform_orders(&batch, self.0.bad_dates)
    }
}

#[cfg(target_arch = "wasm32")]
weir_sdk::export_transform!(OrdersTransform);

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, Error> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::input(format!("input has no `{name}` column")))
}

/// A numeric column as f64. (Specific conversions instead of `arrow_cast::cast`, whose
/// every-type-to-every-type table would triple the component's size.)
fn as_f64(batch: &RecordBatch, name: &str) -> Result<Float64Array, Error> {
    let array = column(batch, name)?;
    Ok(match array.data_type() {
        DataType::Float64 => array.as_primitive::<Float64Type>().clone(),
        DataType::Float32 => array.as_primitive::<Float32Type>().unary(f64::from),
        DataType::Int64 => array.as_primitive::<Int64Type>().unary(|v| v as f64),
        DataType::Int32 => array.as_primitive::<Int32Type>().unary(f64::from),
        other => {
            return Err(Error::input(format!(
                "`{name}` must be numeric, not {other}"
            )));
        }
    })
}

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
                let parsed = value.and_then(dates::parse_utc_micros);
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
        // Timestamps without a time zone are taken as UTC, as `pd.to_datetime(utc=True)` does.
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .unary(|s| s * 1_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .unary(|ms| ms * 1000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().clone()
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive::<TimestampNanosecondType>()
            .unary(|ns| ns.div_euclid(1000)),
        DataType::Date32 => array
            .as_primitive::<Date32Type>()
            .unary(|days| i64::from(days) * 86_400_000_000),
        other => {
            return Err(Error::input(format!(
                "`order_date` must be text, a date or a timestamp, not {other}"
            )));
        }
    };
    Ok(dates.with_timezone("UTC"))
}

/// The transform itself, with Arrow kernels only.
pub fn transform_orders(batch: &RecordBatch, bad_dates: BadDates) -> Result<RecordBatch, Error> {
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
    let months = order_month(kept.column(dates_at).as_primitive());
    fields.push(Field::new("order_month", DataType::Utf8, true));
    let mut columns = kept.columns().to_vec();
    columns.push(Arc::new(months));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// `YYYY-MM` of each timestamp, without a date library: the civil-from-days algorithm.
/// Written straight into the string buffers (every value is 7 ASCII bytes).
fn order_month(dates: &TimestampMicrosecondArray) -> StringArray {
    let mut text = Vec::with_capacity(dates.len() * 7);
    let mut offsets = Vec::with_capacity(dates.len() + 1);
    offsets.push(0);
    for (i, &us) in dates.values().iter().enumerate() {
        if dates.is_valid(i) {
            // Any i64 of microseconds is within ±2^27 days. (i32: see `year_month`.)
            let (y, m) = year_month(us.div_euclid(86_400_000_000) as i32);
            let y = y.clamp(0, 9999) as u32;
            text.extend_from_slice(&[
                digit(y / 1000),
                digit(y / 100),
                digit(y / 10),
                digit(y),
                b'-',
                digit(m / 10),
                digit(m),
            ]);
        }
        offsets.push(text.len() as i32);
    }
    StringArray::new(
        OffsetBuffer::new(offsets.into()),
        text.into(),
        dates.nulls().cloned(),
    )
}

/// The ASCII digit of `n`'s last decimal place.
fn digit(n: u32) -> u8 {
    b'0' + (n % 10) as u8
}

/// Year and month of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`). In
/// i32: Wasm has no 64-bit multiply-high, so 64-bit divisions by constants stay divisions.
fn year_month(days: i32) -> (i32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i32::from(month <= 2);
    (year, month)
}

#[cfg(test)]
mod tests {
    #[test]
    fn year_month_matches_known_dates() {
        assert_eq!(super::year_month(0), (1970, 1));
        assert_eq!(super::year_month(19_737), (2024, 1)); // 2024-01-15
        assert_eq!(super::year_month(19_782), (2024, 2)); // 2024-02-29
        assert_eq!(super::year_month(-1), (1969, 12));
    }
}
