//! The provenance columns every source adds to its batches, so a bad row can be named by
//! where it came from: `_weir_source` (a file, a table, a page's URL) and `_weir_row`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;

use super::{ROW_COLUMN, SOURCE_COLUMN};

/// `batch` with the provenance columns appended: `sources` (Utf8) and `rows` (Int64).
pub(crate) fn append(
    batch: &RecordBatch,
    sources: ArrayRef,
    rows: ArrayRef,
) -> Result<RecordBatch, ArrowError> {
    let mut fields = batch.schema().fields().to_vec();
    fields.push(Arc::new(Field::new(SOURCE_COLUMN, DataType::Utf8, false)));
    fields.push(Arc::new(Field::new(ROW_COLUMN, DataType::Int64, false)));
    let mut columns = batch.columns().to_vec();
    columns.extend([sources, rows]);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Adds the provenance columns to one source's batches: the source's name on every row and
/// the row numbers. The names are the same for every batch, so they are built once (as long
/// as the longest batch) and sliced.
pub(crate) struct Provenance {
    source: String,
    names: StringArray,
}

impl Provenance {
    pub(crate) fn new(source: &str) -> Provenance {
        Provenance {
            source: source.to_string(),
            names: StringArray::new_null(0),
        }
    }

    /// `batch` with the columns, its first row numbered `first_row`.
    pub(crate) fn attach(
        &mut self,
        batch: &RecordBatch,
        first_row: i64,
    ) -> Result<RecordBatch, ArrowError> {
        let rows = batch.num_rows();
        if self.names.len() < rows {
            self.names = StringArray::from_iter_values(std::iter::repeat_n(&self.source, rows));
        }
        let numbers = Int64Array::from_iter_values(first_row..first_row + rows as i64);
        append(
            batch,
            Arc::new(self.names.slice(0, rows)),
            Arc::new(numbers),
        )
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    use super::*;

    #[test]
    fn provenance_names_the_source_and_numbers_the_rows_of_batches_of_any_size() {
        let mut provenance = Provenance::new("data/a.csv");
        let mut first = 1;
        for rows in [3, 7, 0, 5, 7, 2] {
            let ids = Int64Array::from_iter_values(0..rows);
            let batch = RecordBatch::try_from_iter([("id", Arc::new(ids) as ArrayRef)]).unwrap();
            let out = provenance.attach(&batch, first).unwrap();
            let names = out
                .column_by_name(SOURCE_COLUMN)
                .unwrap()
                .as_string::<i32>();
            assert_eq!(names.len(), rows as usize);
            assert!(names.iter().all(|n| n == Some("data/a.csv")));
            let numbers = out.column_by_name(ROW_COLUMN).unwrap();
            let numbers = numbers.as_primitive::<Int64Type>().values().to_vec();
            assert_eq!(numbers, (first..first + rows).collect::<Vec<_>>());
            first += rows;
        }
    }
}
