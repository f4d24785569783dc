//! Arrow values as SQLite stores them.
//!
//! | Arrow | column type | stored value |
//! |---|---|---|
//! | Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32 | INTEGER | the number |
//! | UInt64 | INTEGER | the number; a value above `i64::MAX` is an error |
//! | Float32, Float64 | REAL | the number (Float32 widened exactly) |
//! | Utf8, LargeUtf8, Utf8View | TEXT | the string |
//! | Boolean | INTEGER | 0 or 1 |
//! | Date32 | TEXT | `YYYY-MM-DD` |
//! | Timestamp (any unit, any zone) | TEXT | RFC 3339 in UTC with microseconds, `2024-01-03T09:15:00.000000Z`; sorts as text; nanoseconds are floored; no zone is taken as UTC |
//! | Decimal32/64/128/256 | TEXT | the exact decimal, `12.30` |
//! | anything else | | an error naming the column and its type |
//!

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, TimeUnit, UInt64Type};
use arrow::error::ArrowError;
use chrono::DateTime;
use sqlx::Arguments;
use sqlx::sqlite::SqliteArguments;

use super::LoadError;

/// A column ready to bind, as SQLite stores it: dates and timestamps already as their text.
pub(super) enum Column {
    Int(Int64Array),
    Real(Float64Array),
    Text(StringArray),
}

impl Column {
    pub(super) fn new(sink: &str, field: &Field, array: &ArrayRef) -> Result<Column, LoadError> {
        let name = field.name();
        let wrap = |e| load_err!(Schema, sink, "converting column `{name}`: {e}");
        let to = |t: &DataType| cast(array, t).map_err(wrap);
        let int = |a: ArrayRef| Column::Int(a.as_primitive().clone());
        // Dates and timestamps (stored as epoch values in a unit, UTC whatever the zone).
        let scale = match array.data_type() {
            DataType::Date32 => Some((86_400_000_000, 1)),
            DataType::Timestamp(TimeUnit::Second, _) => Some((1_000_000, 1)),
            DataType::Timestamp(TimeUnit::Millisecond, _) => Some((1_000, 1)),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Some((1, 1)),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => Some((1, 1_000)),
            _ => None,
        };
        Ok(match array.data_type() {
            DataType::UInt64 => {
                let max = arrow::compute::max(array.as_primitive::<UInt64Type>());
                if let Some(max) = max.filter(|m| *m > i64::MAX as u64) {
                    return Err(load_err!(
                        Schema,
                        sink,
                        "column `{name}` holds {max}, above SQLite's largest integer; filter \
                         those rows or cast the column to utf8 in a transform"
                    ));
                }
                int(to(&DataType::Int64)?)
            }
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                int(to(&DataType::Int64)?)
            }
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::Boolean => {
                int(to(&DataType::Int64)?)
            }
            DataType::Float32 | DataType::Float64 => {
                Column::Real(to(&DataType::Float64)?.as_primitive().clone())
            }
            _ if scale.is_some() => {
                let (scale, div) = scale.expect("matched");
                let raw = to(&DataType::Int64)?;
                let in_range = |v: i64| {
                    let micros = v.div_euclid(div).checked_mul(scale);
                    let ok = micros.filter(|m| MICROS_IN_RANGE.contains(m));
                    ok.ok_or_else(|| ArrowError::ComputeError(format!("{v} is out of range")))
                };
                let micros = raw.as_primitive::<Int64Type>().try_unary(in_range);
                let time = !matches!(array.data_type(), DataType::Date32);
                Column::Text(formatted(&micros.map_err(wrap)?, time))
            }
            // Decimals and all strings: arrow's cast gives the exact text.
            _ => {
                sql_type(sink, field)?;
                Column::Text(to(&DataType::Utf8)?.as_string::<i32>().clone())
            }
        })
    }

    pub(super) fn add_to(&self, args: &mut SqliteArguments, row: usize) {
        let valid = |a: &dyn Array| a.is_valid(row);
        let added = match self {
            Column::Int(a) => args.add(valid(a).then(|| a.value(row))),
            Column::Real(a) => args.add(valid(a).then(|| a.value(row))),
            Column::Text(a) => args.add(valid(a).then(|| a.value(row))),
        };
        added.expect("plain values always encode");
    }

    /// A key that tells partition values apart (type, then value).
    pub(super) fn key(&self, row: usize) -> String {
        match self {
            Column::Int(a) if a.is_valid(row) => format!("i{}", a.value(row)),
            Column::Real(a) if a.is_valid(row) => format!("r{}", a.value(row).to_bits()),
            Column::Text(a) if a.is_valid(row) => format!("t{}", a.value(row)),
            _ => "null".into(),
        }
    }
}

/// Every value of `micros` as [`iso8601`] text, into one buffer: a batch's text is made
/// once and bound without a copy, like any text column. A batch's values share few days,
/// so each day's date text is worked out once (in a small cache by day).
fn formatted(micros: &Int64Array, time: bool) -> StringArray {
    let mut text = String::with_capacity(micros.len() * if time { 27 } else { 10 });
    let mut offsets = Vec::with_capacity(micros.len() + 1);
    offsets.push(0i32);
    let mut dates = [(i64::MIN, None); DATE_CACHE];
    for (i, &value) in micros.values().iter().enumerate() {
        if micros.is_valid(i) {
            let days = value.div_euclid(DAY);
            let (cached, date) = &mut dates[days.rem_euclid(DATE_CACHE as i64) as usize];
            if *cached != days {
                (*cached, *date) = (days, date_text(days));
            }
            match date {
                Some(date) => push_ascii(&mut text, date, time.then_some(value)),
                None => iso8601(value, time, &mut text),
            }
        }
        offsets.push(i32::try_from(text.len()).expect("a batch's text is under 2 GiB"));
    }
    // SAFETY: the offsets start at 0, never decrease, and end at the text's length, and
    // they fall between whole values of ASCII text.
    unsafe {
        let offsets = OffsetBuffer::new_unchecked(offsets.into());
        StringArray::new_unchecked(offsets, text.into_bytes().into(), micros.nulls().cloned())
    }
}

/// Days whose date text [`formatted`] keeps at once (a year and more).
const DATE_CACHE: usize = 512;

/// The epoch microseconds chrono can represent (what [`iso8601`] formats), as bounds: a
/// chrono conversion per value to check them was 1% of a bench run.
const MICROS_IN_RANGE: std::ops::RangeInclusive<i64> = DateTime::<chrono::Utc>::MIN_UTC
    .timestamp_micros()
    ..=DateTime::<chrono::Utc>::MAX_UTC.timestamp_micros();

const DAY: i64 = 86_400_000_000;

/// `YYYY-MM-DD`, or with `time` `YYYY-MM-DDTHH:MM:SS.ffffffZ`, appended to `out`. Written
/// by hand (calendar from H. Hinnant's `civil_from_days`, digits from a table): chrono's
/// `format` re-parses its pattern for every value, and even its field accessors were a
/// tenth of the sink's time.
fn iso8601(micros: i64, time: bool, out: &mut String) {
    match date_text(micros.div_euclid(DAY)) {
        Some(date) => push_ascii(out, &date, time.then_some(micros)),
        None => {
            use std::fmt::Write;
            let t = DateTime::from_timestamp_micros(micros).expect("range checked by Column::new");
            let pattern = match time {
                true => "%Y-%m-%dT%H:%M:%S%.6fZ",
                false => "%Y-%m-%d",
            };
            write!(out, "{}", t.format(pattern)).expect("writing to a String");
        }
    }
}

/// `YYYY-MM-DD` of a day count since 1970-01-01, for years 0 to 9999 (`None` for others).
fn date_text(days: i64) -> Option<[u8; 10]> {
    let (year, month, day) = civil_from_days(days);
    let year = u64::try_from(year).ok().filter(|y| *y <= 9999)?;
    let mut text = *b"0000-00-00";
    put_pair(&mut text, 0, year / 100);
    put_pair(&mut text, 2, year % 100);
    put_pair(&mut text, 5, month);
    put_pair(&mut text, 8, day);
    Some(text)
}

/// `date`, then with `micros` its time of day as `THH:MM:SS.ffffffZ`, appended to `out`.
fn push_ascii(out: &mut String, date: &[u8; 10], micros: Option<i64>) {
    // SAFETY: ASCII digits and separators are UTF-8 (and checking that cost 1% of a run).
    let out = unsafe { out.as_mut_vec() };
    out.extend_from_slice(date);
    let Some(micros) = micros else { return };
    let of_day = micros.rem_euclid(DAY) as u64;
    let mut text = *b"T00:00:00.000000Z";
    let fraction = of_day % 1_000_000;
    put_pair(&mut text, 1, of_day / 3_600_000_000);
    put_pair(&mut text, 4, of_day / 60_000_000 % 60);
    put_pair(&mut text, 7, of_day / 1_000_000 % 60);
    put_pair(&mut text, 10, fraction / 10_000);
    put_pair(&mut text, 12, fraction / 100 % 100);
    put_pair(&mut text, 14, fraction % 100);
    out.extend_from_slice(&text);
}

/// The two digits of `value` (< 100) at `at`, from a table: half the divisions of digit
/// by digit.
fn put_pair(text: &mut [u8], at: usize, value: u64) {
    let pair = value as usize * 2;
    text[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
}

/// "00", "01", … "99".
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// Year, month and day of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The declared column type; also the one place that says which Arrow types load.
pub(super) fn sql_type(sink: &str, field: &Field) -> Result<&'static str, LoadError> {
    use DataType::*;
    Ok(match field.data_type() {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Boolean => "INTEGER",
        Float32 | Float64 => "REAL",
        Utf8 | LargeUtf8 | Utf8View | Date32 | Timestamp(..) => "TEXT",
        Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => "TEXT",
        other => {
            return Err(load_err!(
                Schema,
                sink,
                "column `{}` has type {other}, which the SQLite sink cannot store; cast it in \
                 a transform (to int64, float64, utf8, bool, date or timestamp) or drop it",
                field.name()
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    #[test]
    fn the_range_bounds_are_chronos() {
        let (min, max) = (
            *super::MICROS_IN_RANGE.start(),
            *super::MICROS_IN_RANGE.end(),
        );
        for micros in [
            min - 1,
            min,
            min + 1,
            -1,
            0,
            max - 1,
            max,
            max + 1,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(
                super::MICROS_IN_RANGE.contains(&micros),
                DateTime::from_timestamp_micros(micros).is_some(),
                "{micros}"
            );
        }
    }

    /// A column's text (days cached) is each value's, nulls kept: values on the same day, on
    /// days that share a cache slot, and in years that chrono formats.
    #[test]
    fn a_formatted_column_is_its_values_text() {
        use arrow::array::{Array, Int64Array};
        let day = super::DAY;
        let slots = super::DATE_CACHE as i64;
        let mut values = Vec::new();
        for i in 0..3000i64 {
            let on = [0, 3, 3 + slots, -1 - slots, 19_000, 19_000 + 7 * slots][i as usize % 6];
            values.push((i % 17 != 0).then_some(on * day + i * 1_234_567));
        }
        values.push(Some(super::MICROS_IN_RANGE.start() + 5));
        values.push(Some(*super::MICROS_IN_RANGE.end()));
        let micros = Int64Array::from(values.clone());
        for time in [true, false] {
            let column = super::formatted(&micros, time);
            assert_eq!(column.len(), values.len());
            for (i, value) in values.iter().enumerate() {
                let expected = value.map(|v| {
                    let mut text = String::new();
                    super::iso8601(v, time, &mut text);
                    text
                });
                assert_eq!(
                    column.is_valid(i).then(|| column.value(i)),
                    expected.as_deref()
                );
            }
        }
    }

    /// The hand-written formatting is chrono's, over the whole range a column may hold.
    #[test]
    fn iso8601_is_chronos() {
        let (min, max) = (
            DateTime::<chrono::Utc>::MIN_UTC.timestamp_micros(),
            DateTime::<chrono::Utc>::MAX_UTC.timestamp_micros(),
        );
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut samples = vec![
            min,
            max,
            -1,
            0,
            1,
            951_782_400_000_000,
            -62_135_596_800_000_001,
        ];
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Mostly years around 0..=9999 (±2^57 µs is ±4,500 years), some anywhere.
            let v = match state % 8 {
                0 => min + (state >> 3) as i64 % (max - min),
                _ => (state >> 5) as i64 % (1 << 58) - (1 << 57),
            };
            samples.push(v.clamp(min, max));
        }
        for micros in samples {
            let t = DateTime::from_timestamp_micros(micros).unwrap();
            for (time, pattern) in [(true, "%Y-%m-%dT%H:%M:%S%.6fZ"), (false, "%Y-%m-%d")] {
                let mut ours = String::new();
                super::iso8601(micros, time, &mut ours);
                assert_eq!(ours, t.format(pattern).to_string(), "{micros}");
            }
        }
    }
}
