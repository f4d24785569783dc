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
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, TimeUnit, UInt64Type};
use arrow::error::ArrowError;
use chrono::{DateTime, Datelike, Timelike};
use sqlx::Arguments;
use sqlx::sqlite::SqliteArguments;

use super::LoadError;

/// A column ready to bind: numbers as SQLite stores them; dates and timestamps as epoch
/// microseconds, formatted while binding (one string allocation per value).
pub(super) enum Column {
    Int(Int64Array),
    Real(Float64Array),
    Text(StringArray),
    /// Microseconds since the epoch (UTC); `time: false` for dates.
    Time {
        micros: Int64Array,
        time: bool,
    },
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
                    let ok = micros.filter(|m| DateTime::from_timestamp_micros(*m).is_some());
                    ok.ok_or_else(|| ArrowError::ComputeError(format!("{v} is out of range")))
                };
                let micros = raw.as_primitive::<Int64Type>().try_unary(in_range);
                let time = !matches!(array.data_type(), DataType::Date32);
                Column::Time {
                    micros: micros.map_err(wrap)?,
                    time,
                }
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
            Column::Time { micros, time } => {
                let value = valid(micros).then(|| {
                    let mut text = String::with_capacity(27);
                    iso8601(micros.value(row), *time, &mut text);
                    text
                });
                args.add(value)
            }
        };
        added.expect("plain values always encode");
    }

    /// A key that tells partition values apart (type, then value).
    pub(super) fn key(&self, row: usize) -> String {
        match self {
            Column::Int(a) if a.is_valid(row) => format!("i{}", a.value(row)),
            Column::Real(a) if a.is_valid(row) => format!("r{}", a.value(row).to_bits()),
            Column::Text(a) if a.is_valid(row) => format!("t{}", a.value(row)),
            Column::Time { micros, .. } if micros.is_valid(row) => {
                format!("m{}", micros.value(row))
            }
            _ => "null".into(),
        }
    }
}

/// `YYYY-MM-DD`, or with `time` `YYYY-MM-DDTHH:MM:SS.ffffffZ`, appended to `out`; written
/// by hand because chrono's `format` re-parses its pattern for every value, which
/// dominated the profile.
pub(super) fn iso8601(micros: i64, time: bool, out: &mut String) {
    use std::fmt::Write;
    let t = DateTime::from_timestamp_micros(micros).expect("range checked by Column::new");
    if !(0..=9999).contains(&t.year()) {
        let pattern = if time {
            "%Y-%m-%dT%H:%M:%S%.6fZ"
        } else {
            "%Y-%m-%d"
        };
        write!(out, "{}", t.format(pattern)).expect("writing to a String");
        return;
    }
    let mut push = |value: u32, width: u32, then: &str| {
        for power in (0..width).rev() {
            out.push(char::from(b'0' + (value / 10u32.pow(power) % 10) as u8));
        }
        out.push_str(then);
    };
    push(t.year() as u32, 4, "-");
    push(t.month(), 2, "-");
    push(t.day(), 2, if time { "T" } else { "" });
    if time {
        push(t.hour(), 2, ":");
        push(t.minute(), 2, ":");
        push(t.second(), 2, ".");
        push(t.timestamp_subsec_micros(), 6, "Z");
    }
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
