//! A transform's answer by columns (`transform-columns`), checked and turned into its batch.
//!
//! The plugin sends the rows it keeps (a bitmap), the columns it computed (one IPC batch,
//! validated in full like any plugin output) and where each output column comes from; the
//! input's columns it names are filtered here, from the host's own copy of the input.

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::buffer::{BooleanBuffer, Buffer};
use arrow::datatypes::{FieldRef, Schema};

use super::bindings::{ColumnSource, Transformed};
use super::compact::Keep;
use super::error::Cause;
use super::ipc;

/// The output batch `answer` describes for `input`, and, when the answer was a whole batch
/// (every row, every column computed in order), the IPC stream it came in.
pub(crate) fn assemble(
    input: &RecordBatch,
    answer: Transformed,
) -> Result<(RecordBatch, Option<Buffer>), Cause> {
    let bad = |message: String| Cause::BadColumns(message);
    let rows = input.num_rows();
    let keep = match answer.keep {
        None => None,
        Some(bits) if bits.len() == rows.div_ceil(8) => {
            Some(BooleanBuffer::new(Buffer::from_vec(bits), 0, rows))
        }
        Some(bits) => {
            return Err(bad(format!(
                "its keep bitmap has {} bytes for {rows} input rows (ceil(rows / 8) = {})",
                bits.len(),
                rows.div_ceil(8)
            )));
        }
    };
    let names_input = (answer.columns.iter()).any(|c| matches!(c, ColumnSource::Input(_)));
    let stream = Buffer::from_vec(answer.computed);
    let computed = ipc::decode_batch(stream.clone()).map_err(Cause::BadOutput)?;
    // The output's rows: those kept, or the input's, or, for an answer that is all computed
    // columns without a bitmap (a whole batch), as many as it has.
    let kept = match &keep {
        Some(keep) => keep.count_set_bits(),
        None if names_input => rows,
        None => computed.num_rows(),
    };
    if computed.num_rows() != kept {
        return Err(bad(format!(
            "its computed columns have {} rows, but it keeps {kept} of {rows} input rows",
            computed.num_rows()
        )));
    }

    let whole = keep.is_none()
        && answer.columns.len() == computed.num_columns()
        && (answer.columns.iter().enumerate())
            .all(|(i, c)| matches!(c, ColumnSource::Computed(j) if *j as usize == i));
    if whole {
        return Ok((computed, Some(stream)));
    }

    let filter = keep
        .filter(|_| names_input)
        .map(|keep| Keep::new(keep, kept));
    let mut fields: Vec<FieldRef> = Vec::with_capacity(answer.columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(answer.columns.len());
    for source in &answer.columns {
        let (field, array) = match *source {
            ColumnSource::Input(i) => {
                let i = i as usize;
                if i >= input.num_columns() {
                    return Err(bad(format!(
                        "it names input column {i}, but the input has {}",
                        input.num_columns()
                    )));
                }
                let array = match &filter {
                    Some(filter) => filter
                        .filter(input.column(i))
                        .map_err(|e| bad(format!("filtering input column {i} failed: {e}")))?,
                    None => input.column(i).clone(),
                };
                (input.schema_ref().fields()[i].clone(), array)
            }
            ColumnSource::Computed(j) => {
                let j = j as usize;
                if j >= computed.num_columns() {
                    return Err(bad(format!(
                        "it names computed column {j}, but it computed {}",
                        computed.num_columns()
                    )));
                }
                let field = computed.schema_ref().fields()[j].clone();
                (field, computed.column(j).clone())
            }
        };
        fields.push(field);
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(kept));
    let batch = RecordBatch::try_new_with_options(Schema::new(fields).into(), arrays, &options)
        .map_err(|e| bad(e.to_string()))?;
    Ok((batch, None))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, RecordBatchOptions, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::{Cause, ColumnSource, Transformed, assemble};
    use crate::plugin::ipc::encode_batch;

    fn input() -> RecordBatch {
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from_iter_values(0..10)) as _),
            (
                "name",
                Arc::new(StringArray::from_iter_values(
                    (0..10).map(|i| format!("n{i}")),
                )) as _,
            ),
        ])
        .unwrap()
    }

    fn computed(rows: usize, values: Vec<i64>) -> Vec<u8> {
        let schema = Schema::new(vec![Field::new("double", DataType::Int64, false)]);
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(values))],
            &options,
        )
        .unwrap();
        encode_batch(&batch).unwrap()
    }

    #[test]
    fn kept_rows_of_input_columns_and_computed_ones_in_the_order_named() {
        // Rows 1, 3 and 9 kept; the bits past the tenth row are set and must not count.
        let keep = vec![0b0000_1010, 0b1111_1110];
        let answer = Transformed {
            keep: Some(keep),
            computed: computed(3, vec![2, 6, 18]),
            columns: vec![
                ColumnSource::Computed(0),
                ColumnSource::Input(1),
                ColumnSource::Input(0),
            ],
        };
        let (batch, stream) = assemble(&input(), answer).unwrap();
        assert!(stream.is_none(), "not a whole answer");
        let want = RecordBatch::try_from_iter([
            ("double", Arc::new(Int64Array::from(vec![2, 6, 18])) as _),
            (
                "name",
                Arc::new(StringArray::from(vec!["n1", "n3", "n9"])) as _,
            ),
            ("id", Arc::new(Int64Array::from(vec![1, 3, 9])) as _),
        ])
        .unwrap();
        assert_eq!(batch.schema().field(0), want.schema().field(0));
        assert_eq!(batch.columns(), want.columns());
        // No keep bitmap: every row, input columns as they are.
        let answer = Transformed {
            keep: None,
            computed: computed(10, (0..10).collect()),
            columns: vec![ColumnSource::Input(1)],
        };
        let (batch, _) = assemble(&input(), answer).unwrap();
        assert_eq!(batch.column(0), input().column(1));
    }

    #[test]
    fn keeping_no_rows_and_no_columns_is_an_empty_batch() {
        let answer = Transformed {
            keep: Some(vec![0, 0]),
            computed: computed_rows_zero(),
            columns: vec![],
        };
        let (batch, _) = assemble(&input(), answer).unwrap();
        assert_eq!((batch.num_rows(), batch.num_columns()), (0, 0));
    }

    fn computed_rows_zero() -> Vec<u8> {
        let options = RecordBatchOptions::new().with_row_count(Some(0));
        let empty =
            RecordBatch::try_new_with_options(Arc::new(Schema::empty()), vec![], &options).unwrap();
        encode_batch(&empty).unwrap()
    }

    #[test]
    fn a_keep_bitmap_of_the_wrong_size_is_refused() {
        for bytes in [1, 3] {
            let answer = Transformed {
                keep: Some(vec![0xFF; bytes]),
                computed: computed_rows_zero(),
                columns: vec![],
            };
            let error = assemble(&input(), answer).unwrap_err();
            assert!(matches!(error, Cause::BadColumns(_)), "{error}");
            assert!(
                error
                    .to_string()
                    .contains(&format!("{bytes} bytes for 10 input rows")),
                "{error}"
            );
        }
    }
}
