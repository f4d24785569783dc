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
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use weir_sdk::arrow::buffer::{BooleanBuffer, BooleanBufferBuilder, NullBuffer, OffsetBuffer};
use weir_sdk::arrow::schema::{DataType, Field, TimeUnit};
use weir_sdk::{Config, Error, Output, Transform};

mod dates;
#[cfg(test)]
mod reference;

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

    fn transform(&mut self, batch: RecordBatch) -> Result<Output, Error> {
        transform_orders(&batch, self.0.bad_dates)
    }

    /// The rest (`order_id`, and whatever else the input has) passes through from the
    /// host's copy without entering the sandbox.
    fn reads(&self) -> Option<&[&str]> {
        Some(&["customer_id", "amount", "exchange_rate", "order_date"])
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

/// `order_date` as UTC microseconds, for a column that is not text: converted from a
/// timestamp or date column (text is parsed in `parse_kept`).
fn convert_dates(array: &ArrayRef) -> Result<TimestampMicrosecondArray, Error> {
    Ok(match array.data_type() {
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
    })
}

/// With `bad_dates = "fail"`: the first row (of all, kept or not) whose text is not a date.
fn check_dates(text: &StringArray) -> Result<(), Error> {
    for (row, value) in text.iter().enumerate() {
        if let Some(v) = value
            && dates::parse(v).is_none()
        {
            return Err(Error::input(format!(
                "row {row}: order_date `{v}` is not a date"
            )));
        }
    }
    Ok(())
}

/// The input's `order_date`.
enum OrderDate<'a> {
    /// Text, parsed row by row (only for the rows kept).
    Text(&'a StringArray),
    /// Timestamps or dates, as UTC microseconds (every row).
    Converted(TimestampMicrosecondArray),
}

/// The transform (see the crate's documentation), in one pass over the kept rows.
///
/// The keep mask is computed first (cheap, vectorised), so that dates are parsed, and
/// totals and months built, only for the rows kept, straight into the output arrays. The
/// other columns are the input's, kept rows only: the answer names them rather than
/// filtering them here, and the host filters its own copy (see `weir_sdk::Output`). The
/// result is exactly that of parsing and computing every row and then filtering (see the
/// `reference` tests).
pub fn transform_orders(batch: &RecordBatch, bad_dates: BadDates) -> Result<Output, Error> {
    // Errors in the order the step has always reported them: the dates' first.
    let order_date = column(batch, "order_date")?;
    let order_date = match order_date.data_type() {
        DataType::Utf8 => {
            let text = order_date.as_string::<i32>();
            if bad_dates == BadDates::Fail {
                check_dates(text)?;
            }
            OrderDate::Text(text)
        }
        _ => OrderDate::Converted(convert_dates(order_date)?),
    };
    let amount = as_f64(batch, "amount")?;
    let rate = as_f64(batch, "exchange_rate")?;
    let customer_nulls = column(batch, "customer_id")?.logical_nulls();

    // Keep rows with a customer and `total_usd > 0`; a null total (null amount or rate) is
    // dropped, as pandas' comparison drops NaN.
    // Slices, not the arrays' buffers: a slice's pointer and length stay in registers, where
    // a buffer's would be read back from memory at every row (in Wasm).
    let (a, r): (&[f64], &[f64]) = (amount.values(), rate.values());
    let mut keep = BooleanBuffer::collect_bool(a.len(), |i| a[i] * r[i] > 0.0);
    for nulls in [amount.nulls(), rate.nulls(), customer_nulls.as_ref()]
        .into_iter()
        .flatten()
    {
        keep = &keep & nulls.inner();
    }

    let (dates, months, total) = match order_date {
        OrderDate::Text(text) => parse_kept(text, &keep, (a, r)),
        OrderDate::Converted(dates) => {
            let dates = filter(&dates, &keep)?;
            let dates = dates.as_primitive::<TimestampMicrosecondType>();
            (dates.clone(), order_month(dates), totals(&keep, (a, r)))
        }
    };
    let dates: ArrayRef = Arc::new(dates.with_timezone("UTC"));

    let mut output = Output::select(batch, keep)?;
    output.set(
        Field::new("order_date", dates.data_type().clone(), true),
        dates,
    )?;
    // Computed here, so put last even where the input had columns of these names.
    output.remove("total_usd");
    output.remove("order_month");
    // Every kept row has an amount and a rate: no nulls.
    output.set(
        Field::new("total_usd", DataType::Float64, true),
        Arc::new(Float64Array::new(total.into(), None)),
    )?;
    output.set(
        Field::new("order_month", DataType::Utf8, true),
        Arc::new(months),
    )?;
    Ok(output)
}

/// `f` of each row set in `keep`, in order. (A word of the bitmap at a time: fewer values
/// live than in `BooleanBuffer::set_indices`, which in Wasm means fewer spills.)
#[inline(always)]
fn for_kept(keep: &BooleanBuffer, mut f: impl FnMut(usize)) {
    for (word, mut bits) in keep.bit_chunks().iter_padded().enumerate() {
        while bits != 0 {
            f(word * 64 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
}

/// `amount * exchange_rate` of the rows set in `keep`.
fn totals(keep: &BooleanBuffer, (a, r): (&[f64], &[f64])) -> Vec<f64> {
    // Into a slice of its final size, not pushed: a `Vec`'s length would be stored back to
    // memory at every row in Wasm.
    let mut total = vec![0.0; keep.count_set_bits()];
    let mut k = 0;
    for_kept(keep, |i| {
        total[k] = a[i] * r[i];
        k += 1;
    });
    total
}

/// The rows of `array` set in `keep`.
fn filter(array: &dyn Array, keep: &BooleanBuffer) -> Result<ArrayRef, Error> {
    Ok(weir_sdk::arrow::select::filter::filter(
        array,
        &BooleanArray::new(keep.clone(), None),
    )?)
}

/// For the rows set in `keep`: `order_date` parsed (null where not a date), `order_month`,
/// written straight into their buffers, and the totals (as [`totals`] gives them: in the
/// same loop: a pass over the kept rows fewer, ~6% of the plugin's time in Wasm).
fn parse_kept(
    text: &StringArray,
    keep: &BooleanBuffer,
    (a, r): (&[f64], &[f64]),
) -> (TimestampMicrosecondArray, StringArray, Vec<f64>) {
    // Written in place into buffers of their final size (the months' text cut to length
    // after) rather than pushed: the loop keeps far fewer values live (no `Vec` lengths
    // and capacities to check and spill), which made it ~25% faster.
    let kept = keep.count_set_bits();
    let mut micros = vec![0; kept];
    let mut total = vec![0.0; kept];
    let mut month_ends = vec![0; kept + 1];
    let mut month_text = vec![0; kept * 7];
    let mut end = 0;
    let mut k = 0;
    // The kept rows whose text is not a date: few, so listed here, and their bits cleared
    // after (a comparison of month offsets per row afterwards cost ~7% in Wasm).
    let mut not_dates = Vec::new();
    for_kept(keep, |row| {
        total[k] = a[row] * r[row];
        // A null is read as "", which is not a date either.
        let value = if text.is_valid(row) {
            text.value(row)
        } else {
            ""
        };
        if let Some(date) = dates::parse(value) {
            micros[k] = date.micros;
            let month: &mut [u8; 7] = (&mut month_text[end..end + 7]).try_into().unwrap();
            if date.on_text_date {
                // The common case: `YYYY-MM` as written, no division.
                month.copy_from_slice(&value.as_bytes()[..7]);
            } else {
                *month = year_month_text(date.micros);
            }
            end += 7;
        } else {
            not_dates.push(k);
        }
        month_ends[k + 1] = end as i32;
        k += 1;
    });
    month_text.truncate(end);
    // No null buffer when nothing is null, as Arrow's filter leaves it.
    let nulls = (!not_dates.is_empty()).then(|| {
        let mut valid = BooleanBufferBuilder::new(kept);
        valid.append_n(kept, true);
        for &k in &not_dates {
            valid.set_bit(k, false);
        }
        NullBuffer::new(valid.finish())
    });
    let dates = TimestampMicrosecondArray::new(micros.into(), nulls.clone());
    (dates, months_array(month_ends, month_text, nulls), total)
}

/// The `order_month` column from its offsets and text, which hold a `YYYY-MM` per valid row.
/// Not checked again: `StringArray::new` walks every offset and the text's UTF-8, ~6% of the
/// plugin's time in Wasm, and the host validates what it receives in full anyway.
fn months_array(ends: Vec<i32>, text: Vec<u8>, nulls: Option<NullBuffer>) -> StringArray {
    debug_assert!(ends.windows(2).all(|w| w[1] - w[0] == 7 || w[1] == w[0]));
    debug_assert!(text.is_ascii() && ends.last() == Some(&(text.len() as i32)));
    // SAFETY: `ends` starts at 0 and each value is the one before or 7 more (one month, as
    // every writer above does), ending at the text's length; the text is ASCII (digits and
    // `-`: copied from a date whose bytes `dates::parse` checked, or formatted), so every
    // offset is a UTF-8 boundary.
    unsafe {
        StringArray::new_unchecked(OffsetBuffer::new_unchecked(ends.into()), text.into(), nulls)
    }
}

/// `YYYY-MM` of each timestamp, without a date library: the civil-from-days algorithm.
/// Written straight into the string buffers (every value is 7 ASCII bytes).
fn order_month(dates: &TimestampMicrosecondArray) -> StringArray {
    let mut text = Vec::with_capacity(dates.len() * 7);
    let mut offsets = Vec::with_capacity(dates.len() + 1);
    offsets.push(0);
    for (i, &us) in dates.values().iter().enumerate() {
        if dates.is_valid(i) {
            text.extend_from_slice(&year_month_text(us));
        }
        offsets.push(text.len() as i32);
    }
    months_array(offsets, text, dates.nulls().cloned())
}

/// The `YYYY-MM` of a timestamp.
fn year_month_text(us: i64) -> [u8; 7] {
    // Any i64 of microseconds is within ±2^27 days. (i32: see `year_month`.)
    let (y, m) = year_month(us.div_euclid(86_400_000_000) as i32);
    let y = y.clamp(0, 9999) as u32;
    [
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        b'-',
        digit(m / 10),
        digit(m),
    ]
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
