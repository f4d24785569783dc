//! Postgres' binary wire format → Arrow builders (the mapping is in the parent's docs).

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListBuilder,
    RecordBatch, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sqlx::postgres::PgRow;
use sqlx::{Row, ValueRef};

use crate::extract::provenance::Provenance;
use crate::extract::{ExtractError, RowBatcher};
use crate::load::postgres::{PG_EPOCH_DAYS, PG_EPOCH_MICROS};

/// A scalar the decoder reads natively; lists hold these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scalar {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Text,
    Bytes,
    Date,
    Time,
    Timestamp,
    TimestampTz,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ColumnKind {
    Scalar(Scalar),
    Decimal {
        precision: u8,
        scale: i8,
    },
    List(Scalar),
    /// Selected as `::text`.
    AsText,
}

#[derive(Debug, Clone)]
pub(super) struct Column {
    pub name: String,
    /// `format_type`'s name, for `CAST($1 AS ...)`.
    pub type_name: String,
    pub kind: ColumnKind,
}

fn scalar(oid: u32) -> Option<Scalar> {
    Some(match oid {
        16 => Scalar::Bool,
        21 => Scalar::Int16,
        23 => Scalar::Int32,
        20 => Scalar::Int64,
        700 => Scalar::Float32,
        701 => Scalar::Float64,
        25 | 1043 | 1042 | 19 => Scalar::Text,
        17 => Scalar::Bytes,
        1082 => Scalar::Date,
        1083 => Scalar::Time,
        1114 => Scalar::Timestamp,
        1184 => Scalar::TimestampTz,
        _ => return None,
    })
}

/// The element type of the one-dimensional arrays read as lists.
fn list_of(oid: u32) -> Option<Scalar> {
    let element = match oid {
        1000 => 16,
        1005 => 21,
        1007 => 23,
        1016 => 20,
        1021 => 700,
        1022 => 701,
        1009 => 25,
        1015 => 1043,
        1182 => 1082,
        1115 => 1114,
        1185 => 1184,
        _ => return None,
    };
    scalar(element)
}

impl Column {
    pub fn new(name: String, oid: u32, typmod: i32, type_name: String) -> Column {
        const NUMERIC: u32 = 1700;
        let kind = if let Some(s) = scalar(oid) {
            ColumnKind::Scalar(s)
        } else if let Some(s) = list_of(oid) {
            ColumnKind::List(s)
        } else if oid == NUMERIC && typmod >= 4 {
            let precision = ((typmod - 4) >> 16) & 0xffff;
            let scale = (typmod - 4) & 0xffff;
            if precision <= 38 && scale <= precision {
                ColumnKind::Decimal {
                    precision: precision as u8,
                    scale: scale as i8,
                }
            } else {
                ColumnKind::AsText
            }
        } else {
            ColumnKind::AsText
        };
        Column {
            name,
            type_name,
            kind,
        }
    }

    pub fn field(&self) -> Field {
        let data_type = match self.kind {
            ColumnKind::Scalar(s) => scalar_type(s),
            ColumnKind::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            ColumnKind::List(s) => {
                DataType::List(Arc::new(Field::new_list_field(scalar_type(s), true)))
            }
            ColumnKind::AsText => DataType::Utf8,
        };
        Field::new(&self.name, data_type, true)
    }
}

fn scalar_type(s: Scalar) -> DataType {
    match s {
        Scalar::Bool => DataType::Boolean,
        Scalar::Int16 => DataType::Int16,
        Scalar::Int32 => DataType::Int32,
        Scalar::Int64 => DataType::Int64,
        Scalar::Float32 => DataType::Float32,
        Scalar::Float64 => DataType::Float64,
        Scalar::Text => DataType::Utf8,
        Scalar::Bytes => DataType::Binary,
        Scalar::Date => DataType::Date32,
        Scalar::Time => DataType::Time64(TimeUnit::Microsecond),
        Scalar::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        Scalar::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

fn scalar_builder(s: Scalar, capacity: usize) -> Box<dyn ArrayBuilder> {
    match s {
        Scalar::Bool => Box::new(BooleanBuilder::with_capacity(capacity)),
        Scalar::Int16 => Box::new(Int16Builder::with_capacity(capacity)),
        Scalar::Int32 => Box::new(Int32Builder::with_capacity(capacity)),
        Scalar::Int64 => Box::new(Int64Builder::with_capacity(capacity)),
        Scalar::Float32 => Box::new(Float32Builder::with_capacity(capacity)),
        Scalar::Float64 => Box::new(Float64Builder::with_capacity(capacity)),
        Scalar::Text => Box::new(StringBuilder::with_capacity(capacity, capacity * 16)),
        Scalar::Bytes => Box::new(BinaryBuilder::with_capacity(capacity, capacity * 16)),
        Scalar::Date => Box::new(Date32Builder::with_capacity(capacity)),
        Scalar::Time => Box::new(Time64MicrosecondBuilder::with_capacity(capacity)),
        Scalar::Timestamp => Box::new(TimestampMicrosecondBuilder::with_capacity(capacity)),
        Scalar::TimestampTz => {
            Box::new(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"))
        }
    }
}

fn builder(kind: ColumnKind, capacity: usize) -> Box<dyn ArrayBuilder> {
    match kind {
        ColumnKind::Scalar(s) => scalar_builder(s, capacity),
        ColumnKind::AsText => scalar_builder(Scalar::Text, capacity),
        ColumnKind::Decimal { precision, scale } => Box::new(
            Decimal128Builder::with_capacity(capacity)
                .with_precision_and_scale(precision, scale)
                .expect("precision and scale checked when the column was described"),
        ),
        ColumnKind::List(s) => Box::new(ListBuilder::with_capacity(
            scalar_builder(s, capacity),
            capacity,
        )),
    }
}

/// Rows into one batch at a time, with provenance (`_weir_row` counts from 1 over the read).
pub(super) struct RowDecoder {
    columns: Vec<Column>,
    builders: Vec<Box<dyn ArrayBuilder>>,
    schema: SchemaRef,
    capacity: usize,
    source: String,
    provenance: Provenance,
    /// Rows decoded before the current batch.
    done: i64,
}

impl RowDecoder {
    pub fn new(columns: &[Column], capacity: usize, source: &str) -> RowDecoder {
        RowDecoder {
            columns: columns.to_vec(),
            builders: columns.iter().map(|c| builder(c.kind, capacity)).collect(),
            schema: Arc::new(Schema::new(
                columns.iter().map(Column::field).collect::<Vec<_>>(),
            )),
            capacity,
            source: source.to_string(),
            provenance: Provenance::new(source),
            done: 0,
        }
    }
}

impl RowBatcher<PgRow> for RowDecoder {
    fn len(&self) -> usize {
        self.builders.first().map_or(0, |b| b.len())
    }

    fn push(&mut self, row: &PgRow) -> Result<(), ExtractError> {
        let row_number = self.done + self.len() as i64 + 1;
        for (i, (column, builder)) in self.columns.iter().zip(&mut self.builders).enumerate() {
            let value = row.try_get_raw(i).map_err(|e| ExtractError::Read {
                path: self.source.clone(),
                message: format!("row {row_number}: column `{}`: {e}", column.name),
            })?;
            let bytes = if value.is_null() {
                None
            } else {
                Some(value.as_bytes().unwrap_or_default())
            };
            append(builder.as_mut(), column.kind, bytes).map_err(|message| ExtractError::Read {
                path: self.source.clone(),
                message: format!("row {row_number}: column `{}`: {message}", column.name),
            })?;
        }
        Ok(())
    }

    /// The rows decoded since the last call, as a batch with provenance columns.
    fn finish(&mut self) -> Result<RecordBatch, ExtractError> {
        let rows = self.len();
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .and_then(|batch| self.provenance.attach(&batch, self.done + 1))
            .map_err(|e| ExtractError::Read {
                path: self.source.clone(),
                message: e.to_string(),
            })?;
        self.done += rows as i64;
        self.builders = self
            .columns
            .iter()
            .map(|c| builder(c.kind, self.capacity))
            .collect();
        Ok(batch)
    }
}

fn downcast<T: 'static>(builder: &mut dyn ArrayBuilder) -> &mut T {
    builder
        .as_any_mut()
        .downcast_mut::<T>()
        .expect("builder made for this column kind")
}

fn append(
    builder: &mut dyn ArrayBuilder,
    kind: ColumnKind,
    bytes: Option<&[u8]>,
) -> Result<(), String> {
    match kind {
        ColumnKind::Scalar(s) => append_scalar(builder, s, bytes),
        ColumnKind::AsText => append_scalar(builder, Scalar::Text, bytes),
        ColumnKind::Decimal { scale, .. } => {
            let b = downcast::<Decimal128Builder>(builder);
            match bytes {
                None => b.append_null(),
                Some(bytes) => b.append_value(numeric(bytes, scale)?),
            }
            Ok(())
        }
        ColumnKind::List(s) => {
            let b = downcast::<ListBuilder<Box<dyn ArrayBuilder>>>(builder);
            match bytes {
                None => b.append_null(),
                Some(bytes) => {
                    for element in array_elements(bytes)? {
                        append_scalar(b.values().as_mut(), s, element)?;
                    }
                    b.append(true);
                }
            }
            Ok(())
        }
    }
}

fn append_scalar(
    builder: &mut dyn ArrayBuilder,
    s: Scalar,
    bytes: Option<&[u8]>,
) -> Result<(), String> {
    macro_rules! put {
        ($builder:ty, $decode:expr) => {{
            let b = downcast::<$builder>(builder);
            match bytes {
                None => b.append_null(),
                Some(bytes) => b.append_value($decode(bytes)?),
            }
        }};
    }
    match s {
        Scalar::Bool => put!(BooleanBuilder, |b: &[u8]| fixed::<1>(b).map(|v| v[0] != 0)),
        Scalar::Int16 => put!(Int16Builder, |b: &[u8]| fixed(b).map(i16::from_be_bytes)),
        Scalar::Int32 => put!(Int32Builder, |b: &[u8]| fixed(b).map(i32::from_be_bytes)),
        Scalar::Int64 => put!(Int64Builder, |b: &[u8]| fixed(b).map(i64::from_be_bytes)),
        Scalar::Float32 => put!(Float32Builder, |b: &[u8]| fixed(b).map(f32::from_be_bytes)),
        Scalar::Float64 => put!(Float64Builder, |b: &[u8]| fixed(b).map(f64::from_be_bytes)),
        Scalar::Text => put!(StringBuilder, utf8),
        Scalar::Bytes => put!(BinaryBuilder, Ok::<_, String>),
        Scalar::Date => put!(Date32Builder, |b: &[u8]| {
            let days = i32::from_be_bytes(fixed(b)?);
            match days {
                i32::MAX | i32::MIN => Err("date `infinity` cannot be represented".to_string()),
                _ => Ok(days + PG_EPOCH_DAYS),
            }
        }),
        Scalar::Time => put!(Time64MicrosecondBuilder, |b: &[u8]| fixed(b)
            .map(i64::from_be_bytes)),
        Scalar::Timestamp | Scalar::TimestampTz => {
            put!(TimestampMicrosecondBuilder, |b: &[u8]| {
                let micros = i64::from_be_bytes(fixed(b)?);
                match micros {
                    i64::MAX | i64::MIN => {
                        Err("timestamp `infinity` cannot be represented".to_string())
                    }
                    _ => Ok(micros + PG_EPOCH_MICROS),
                }
            })
        }
    }
    Ok(())
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes
        .try_into()
        .map_err(|_| format!("expected {N} bytes, the server sent {}", bytes.len()))
}

fn read_i32(bytes: &[u8], at: usize) -> Result<i32, String> {
    bytes
        .get(at..at + 4)
        .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
        .ok_or_else(|| "truncated array".to_string())
}

/// The elements of a one-dimensional array (`None` for NULL elements).
fn array_elements(bytes: &[u8]) -> Result<Vec<Option<&[u8]>>, String> {
    let dimensions = read_i32(bytes, 0)?;
    match dimensions {
        0 => return Ok(Vec::new()),
        1 => {}
        n => {
            return Err(format!(
                "a {n}-dimensional array cannot be read as a list; cast it to text in `query`"
            ));
        }
    }
    let count = read_i32(bytes, 12)?.max(0) as usize;
    let mut at = 20;
    let mut elements = Vec::with_capacity(count);
    for _ in 0..count {
        let len = read_i32(bytes, at)?;
        at += 4;
        if len < 0 {
            elements.push(None);
            continue;
        }
        let end = at + len as usize;
        elements.push(Some(
            bytes
                .get(at..end)
                .ok_or_else(|| "truncated array".to_string())?,
        ));
        at = end;
    }
    Ok(elements)
}

/// A `numeric` in binary form (base-10000 digits) as an integer scaled by 10^`scale`.
fn numeric(bytes: &[u8], scale: i8) -> Result<i128, String> {
    let word = |i: usize| -> Result<i16, String> {
        bytes
            .get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".to_string())
    };
    let (ndigits, weight, sign) = (word(0)? as usize, word(1)? as i32, word(2)? as u16);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("NaN cannot be represented as a decimal".into()),
        _ => return Err("infinity cannot be represented as a decimal".into()),
    }
    let overflow = || "the value does not fit the column's precision".to_string();
    let mut value: i128 = 0;
    for i in 0..ndigits {
        let digit = word(4 + i)? as i128;
        value = value
            .checked_mul(10_000)
            .and_then(|v| v.checked_add(digit))
            .ok_or_else(overflow)?;
    }
    // value × 10000^(weight − ndigits + 1) × 10^scale
    let exponent = 4 * (weight - ndigits as i32 + 1) + scale as i32;
    if exponent >= 0 {
        value = 10i128
            .checked_pow(exponent as u32)
            .and_then(|p| value.checked_mul(p))
            .ok_or_else(overflow)?;
    } else {
        // Digits past the column's scale are zero padding of the last base-10000 word.
        value /= 10i128.checked_pow((-exponent) as u32).unwrap_or(i128::MAX);
    }
    Ok(if sign == 0x4000 { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(weight: i16, negative: bool, scale: u16, digits: &[i16]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((digits.len() as i16).to_be_bytes());
        out.extend(weight.to_be_bytes());
        out.extend((if negative { 0x4000u16 } else { 0 }).to_be_bytes());
        out.extend(scale.to_be_bytes());
        for d in digits {
            out.extend(d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_become_scaled_integers() {
        // 12345.67 = [1, 2345, 6700], weight 1
        assert_eq!(
            numeric(&numeric_bytes(1, false, 2, &[1, 2345, 6700]), 2),
            Ok(1_234_567)
        );
        // -0.05 = [500], weight -1
        assert_eq!(numeric(&numeric_bytes(-1, true, 2, &[500]), 2), Ok(-5));
        // 0
        assert_eq!(numeric(&numeric_bytes(0, false, 0, &[]), 3), Ok(0));
        // 20000 = [2], weight 1
        assert_eq!(numeric(&numeric_bytes(1, false, 0, &[2]), 0), Ok(20_000));
        let nan = [0, 0, 0, 0, 0xC0, 0, 0, 0];
        assert!(numeric(&nan, 2).unwrap_err().contains("NaN"));
    }

    #[test]
    fn numeric_typmods_give_decimal_columns() {
        let typmod = ((12 << 16) | 2) + 4;
        let column = Column::new("amount".into(), 1700, typmod, "numeric(12,2)".into());
        assert_eq!(column.field().data_type(), &DataType::Decimal128(12, 2));
        let unconstrained = Column::new("x".into(), 1700, -1, "numeric".into());
        assert_eq!(unconstrained.kind, ColumnKind::AsText);
        let uuid = Column::new("id".into(), 2950, -1, "uuid".into());
        assert_eq!(uuid.kind, ColumnKind::AsText);
    }

    #[test]
    fn multidimensional_arrays_are_refused() {
        let mut bytes = Vec::new();
        bytes.extend(2i32.to_be_bytes());
        assert!(
            array_elements(&bytes)
                .unwrap_err()
                .contains("2-dimensional")
        );
    }
}
