//! Arrow batches → Postgres' binary COPY format (header, one tuple per row, trailer).
//! Each column is first cast to the Arrow type its table column reads ([`PgType::arrow`]),
//! so one encoder per Postgres type suffices.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Time64MicrosecondType, TimestampMicrosecondType,
};

use super::schema::{PgType, TableColumns};
use super::{PG_EPOCH_DAYS, PG_EPOCH_MICROS};

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Appends `batch` to `out` as one complete COPY stream.
pub(super) fn encode(
    out: &mut Vec<u8>,
    batch: &RecordBatch,
    columns: &TableColumns,
) -> Result<(), String> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .zip(batch.columns())
        .map(|(column, array)| {
            cast_with_options(array, &column.pg.arrow(), &options).map_err(|e| {
                format!(
                    "column `{}` does not fit the table's type: {e}",
                    column.name
                )
            })
        })
        .collect::<Result<_, _>>()?;
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    let field_count = (columns.len() as i16).to_be_bytes();
    for row in 0..batch.num_rows() {
        out.extend_from_slice(&field_count);
        for (column, array) in columns.iter().zip(&arrays) {
            if array.is_null(row) {
                out.extend_from_slice(&(-1i32).to_be_bytes());
            } else {
                field(out, column.pg, array, row);
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Ok(())
}

/// One non-null value: its length, then its bytes.
fn field(out: &mut Vec<u8>, pg: PgType, array: &ArrayRef, row: usize) {
    fn sized(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    match pg {
        PgType::Bool => sized(out, &[array.as_boolean().value(row) as u8]),
        PgType::Int2 => sized(
            out,
            &array.as_primitive::<Int16Type>().value(row).to_be_bytes(),
        ),
        PgType::Int4 => sized(
            out,
            &array.as_primitive::<Int32Type>().value(row).to_be_bytes(),
        ),
        PgType::Int8 => sized(
            out,
            &array.as_primitive::<Int64Type>().value(row).to_be_bytes(),
        ),
        PgType::Float4 => sized(
            out,
            &array.as_primitive::<Float32Type>().value(row).to_be_bytes(),
        ),
        PgType::Float8 => sized(
            out,
            &array.as_primitive::<Float64Type>().value(row).to_be_bytes(),
        ),
        PgType::Numeric { scale, .. } => {
            let value = array.as_primitive::<Decimal128Type>().value(row);
            sized(out, &numeric(value, scale))
        }
        PgType::Text => sized(out, array.as_string::<i32>().value(row).as_bytes()),
        PgType::Bytea => sized(out, array.as_binary::<i32>().value(row)),
        PgType::Date => {
            let days = array.as_primitive::<Date32Type>().value(row) - PG_EPOCH_DAYS;
            sized(out, &days.to_be_bytes())
        }
        PgType::Time => {
            let micros = array.as_primitive::<Time64MicrosecondType>().value(row);
            sized(out, &micros.to_be_bytes())
        }
        PgType::Timestamp | PgType::TimestampTz => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(row);
            sized(out, &(micros - PG_EPOCH_MICROS).to_be_bytes())
        }
    }
}

/// A decimal (an integer scaled by 10^`scale`) in `numeric`'s binary form: base-10000
/// digits around the decimal point, weight, sign and display scale.
fn numeric(value: i128, scale: i8) -> Vec<u8> {
    let scale = scale.max(0) as usize;
    let digits = value.unsigned_abs().to_string();
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int_part, frac_part) = digits.split_at(digits.len() - scale);
    // Pad both parts to whole base-10000 groups, aligned on the decimal point.
    let int_part = format!(
        "{int_part:0>width$}",
        width = int_part.len().div_ceil(4) * 4
    );
    let frac_part = format!(
        "{frac_part:0<width$}",
        width = frac_part.len().div_ceil(4) * 4
    );
    let mut groups: Vec<i16> = int_part
        .as_bytes()
        .chunks(4)
        .chain(frac_part.as_bytes().chunks(4))
        .map(|g| {
            std::str::from_utf8(g)
                .expect("ASCII digits")
                .parse()
                .expect("4 digits")
        })
        .collect();
    let mut weight = (int_part.len() / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&(if value < 0 { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(scale as u16).to_be_bytes());
    for group in groups {
        out.extend_from_slice(&group.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::numeric;

    fn words(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks(2)
            .map(|w| i16::from_be_bytes([w[0], w[1]]))
            .collect()
    }

    #[test]
    fn decimals_encode_as_base_10000_digits() {
        // 12345.67: digits [1, 2345, 6700], weight 1, scale 2
        assert_eq!(words(&numeric(1_234_567, 2)), [3, 1, 0, 2, 1, 2345, 6700]);
        // -0.05: digits [500], weight -1, negative
        assert_eq!(words(&numeric(-5, 2)), [1, -1, 0x4000, 2, 500]);
        // 0 with scale 3: no digits
        assert_eq!(words(&numeric(0, 3)), [0, 0, 0, 3]);
        // 20000: digits [2], weight 1 (the trailing zero group is dropped)
        assert_eq!(words(&numeric(20_000, 0)), [1, 1, 0, 0, 2]);
    }
}
