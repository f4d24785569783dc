//! How each column of a Parquet file is encoded.
//!
//! A dictionary pays for columns that repeat values (months, currencies, rates). For a column
//! whose values are mostly distinct (ids, keys, timestamps, amounts), a row group's dictionary
//! is about as large as the values themselves, its indexes come on top, and building it
//! (hashing every value) is the costliest part of writing the column. Such columns go without
//! one: integers and times as deltas (`DELTA_BINARY_PACKED`), the rest plain. Each file judges
//! its columns on the first batch written to it, as DuckDB's writer judges a column on its
//! values.
//!
//! Deltas pack ids, keys and times, whose values lie in a narrow range or close to their
//! neighbours, into a few bits each where plain takes 4 or 8 bytes; Snappy found little of
//! that. In the 10 M-row bench pipeline the lake shrank from 187 to 139 MB, and the run took
//! ~6% less CPU and wall time (5 alternating runs). DuckDB, Polars and pyarrow read such
//! files back to the same sums as the SQLite sink's.

use std::collections::HashSet;
use std::hash::Hash;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use parquet::basic::Encoding;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// Fewer rows than this say too little about a column: it keeps the default (dictionary).
const MIN_SAMPLE: usize = 1024;
/// A column with more than this share of distinct values in the sample goes without: below
/// it, each value comes back twice on average. At 0.9, amounts (~84% distinct in a batch) got
/// dictionaries larger than their plain values with Snappy (42 MB against 38 MB for 10 M rows).
const DISTINCT_SHARE: f64 = 0.5;

/// `base`, with dictionary encoding turned off for the top-level columns of `first` (the
/// file's first batch) that are mostly distinct values, and deltas for those of them that are
/// integers or times.
pub(super) fn for_file(base: &WriterProperties, first: &RecordBatch) -> WriterProperties {
    let mut builder = base.clone().into_builder();
    for (field, column) in first.schema_ref().fields().iter().zip(first.columns()) {
        if mostly_distinct(column.as_ref()) {
            let path = ColumnPath::from(field.name().as_str());
            builder = builder.set_column_dictionary_enabled(path.clone(), false);
            if stored_as_integers(field.data_type()) {
                builder = builder.set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
            }
        }
    }
    builder.build()
}

/// Types whose Parquet values are INT32 or INT64, the two that take deltas.
fn stored_as_integers(ty: &DataType) -> bool {
    ty.is_integer()
        || matches!(
            ty,
            DataType::Date32
                | DataType::Date64
                | DataType::Time32(_)
                | DataType::Time64(_)
                | DataType::Timestamp(..)
        )
}

fn mostly_distinct(array: &dyn Array) -> bool {
    let rows = array.len();
    if rows < MIN_SAMPLE {
        return false;
    }
    let distinct = match array.data_type() {
        DataType::Utf8 => count(array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => count(array.as_string::<i64>().iter()),
        DataType::Utf8View => count(array.as_string_view().iter()),
        DataType::Binary => count(array.as_binary::<i32>().iter()),
        DataType::LargeBinary => count(array.as_binary::<i64>().iter()),
        ty => match ty.primitive_width() {
            // Fixed-width values compare by their bytes (null slots included: they are few
            // or they make the column repetitive, and either way the verdict holds).
            Some(width) if ty.is_primitive() => {
                let data = array.to_data();
                let start = data.offset() * width;
                let values = &data.buffers()[0].as_slice()[start..start + rows * width];
                count(values.chunks_exact(width))
            }
            // Booleans, dictionaries and nested types keep the default.
            _ => return false,
        },
    };
    distinct as f64 > DISTINCT_SHARE * rows as f64
}

fn count<T: Hash + Eq>(values: impl Iterator<Item = T>) -> usize {
    values.collect::<HashSet<T>>().len()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };

    use super::*;

    #[test]
    fn only_mostly_distinct_columns_go_without_a_dictionary() {
        let rows = 4096;
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(Int64Array::from_iter_values(0..rows))),
            (
                "at",
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    (0..rows).map(|i| i * 1_000_000),
                )),
            ),
            (
                // 60% distinct: each value comes back less than twice on average.
                "amount",
                Arc::new(Float64Array::from_iter_values(
                    (0..rows).map(|i| (i % (rows * 6 / 10)) as f64 / 100.0),
                )),
            ),
            (
                "rate",
                Arc::new(Float64Array::from_iter_values(
                    (0..rows).map(|i| (i % 50) as f64),
                )),
            ),
            (
                "month",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("2024-{:02}", i % 12)),
                )),
            ),
            (
                "note",
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("n{i}")),
                )),
            ),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let props = for_file(&WriterProperties::default(), &batch);
        let dictionary = |name: &str| props.dictionary_enabled(&ColumnPath::from(name));
        assert!(!dictionary("id"));
        assert!(!dictionary("at"));
        assert!(!dictionary("amount"));
        assert!(dictionary("rate"));
        assert!(dictionary("month"));
        assert!(!dictionary("note"));
        // Without a dictionary, integers and times go as deltas, the rest plain.
        let encoding = |name: &str| props.encoding(&ColumnPath::from(name));
        assert_eq!(encoding("id"), Some(Encoding::DELTA_BINARY_PACKED));
        assert_eq!(encoding("at"), Some(Encoding::DELTA_BINARY_PACKED));
        assert_eq!(encoding("amount"), None);
        assert_eq!(encoding("note"), None);
        assert_eq!(
            encoding("rate"),
            None,
            "a dictionary's fallback stays the default"
        );

        // A slice is judged on its own rows; too few rows keep the default.
        let sliced = batch.slice(10, 2048);
        assert!(
            !for_file(&WriterProperties::default(), &sliced)
                .dictionary_enabled(&ColumnPath::from("id"))
        );
        let small = batch.slice(0, 100);
        assert!(
            for_file(&WriterProperties::default(), &small)
                .dictionary_enabled(&ColumnPath::from("id"))
        );
    }
}
