//! Incremental extraction: keep only rows whose cursor is past the watermark (and, in a
//! replay, not past the interrupted load's end), and track the highest cursor seen, which
//! becomes the next watermark once the load commits.

use std::cmp::Ordering;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Datum, RecordBatch, Scalar, StringArray, make_comparator,
};
use arrow::compute::kernels::cmp::{gt, lt_eq};
use arrow::compute::{cast, filter_record_batch};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::{ExtractError, ROW_COLUMN, SOURCE_COLUMN};

pub struct CursorFilter {
    column: String,
    /// Rows with a cursor past `after` are kept, up to `upto` when set (a replay).
    after: Option<Bound>,
    upto: Option<Bound>,
    /// The highest cursor kept so far, as a one-element array.
    max: Option<ArrayRef>,
}

/// A watermark as text, and as a one-element array of the cursor's type (made on the first
/// batch, when that type is known).
struct Bound {
    text: String,
    typed: Option<ArrayRef>,
}

type Compare = fn(&dyn Datum, &dyn Datum) -> Result<BooleanArray, ArrowError>;

impl CursorFilter {
    pub fn new(column: &str, after: Option<String>, upto: Option<String>) -> CursorFilter {
        let bound = |text| Bound { text, typed: None };
        CursorFilter {
            column: column.to_string(),
            after: after.map(bound),
            upto: upto.map(bound),
            max: None,
        }
    }

    /// The rows of `batch` in the range.
    pub fn apply(&mut self, batch: RecordBatch) -> Result<RecordBatch, ExtractError> {
        let cursor = batch
            .column_by_name(&self.column)
            .ok_or_else(|| ExtractError::MissingCursor {
                path: provenance_source(&batch, 0),
                column: self.column.clone(),
            })?
            .clone();
        if cursor.null_count() > 0 {
            let index = (0..cursor.len()).find(|&i| cursor.is_null(i)).unwrap_or(0);
            return Err(ExtractError::NullCursor {
                path: provenance_source(&batch, index),
                row: provenance_row(&batch, index),
                column: self.column.clone(),
            });
        }
        let mut kept = batch;
        let bounds: [(Option<&mut Bound>, Compare); 2] =
            [(self.after.as_mut(), gt), (self.upto.as_mut(), lt_eq)];
        for (bound, keep) in bounds {
            if let Some(bound) = bound {
                let cursor = kept.column_by_name(&self.column).expect("checked above");
                let value = bound.typed(&self.column, cursor)?;
                let mask = keep(cursor, &Scalar::new(value)).expect("same types");
                kept = filter_record_batch(&kept, &mask).expect("mask matches the batch");
            }
        }
        if let Some(cursor) = kept.column_by_name(&self.column) {
            self.track_max(cursor);
        }
        Ok(kept)
    }

    fn track_max(&mut self, cursor: &ArrayRef) {
        if cursor.is_empty() {
            return;
        }
        let compare = make_comparator(cursor.as_ref(), cursor.as_ref(), Default::default())
            .expect("comparable cursor");
        let best = (1..cursor.len()).fold(0, |best, i| {
            if compare(i, best) == Ordering::Greater {
                i
            } else {
                best
            }
        });
        let candidate = cursor.slice(best, 1);
        let greater = match &self.max {
            None => true,
            Some(max) => make_comparator(candidate.as_ref(), max.as_ref(), Default::default())
                .map(|cmp| cmp(0, 0) == Ordering::Greater)
                .unwrap_or(true),
        };
        if greater {
            self.max = Some(candidate);
        }
    }

    /// The watermark after this load: the highest cursor kept, or the old watermark.
    pub fn next_watermark(&self) -> Option<String> {
        match &self.max {
            Some(max) => {
                let options = FormatOptions::default();
                let formatter =
                    ArrayFormatter::try_new(max.as_ref(), &options).expect("displayable cursor");
                Some(formatter.value(0).to_string())
            }
            None => self.after.as_ref().map(|b| b.text.clone()),
        }
    }
}

impl Bound {
    fn typed(&mut self, column: &str, cursor: &ArrayRef) -> Result<ArrayRef, ExtractError> {
        if let Some(typed) = &self.typed
            && typed.data_type() == cursor.data_type()
        {
            return Ok(typed.clone());
        }
        let error = |message: String| ExtractError::Watermark {
            watermark: self.text.clone(),
            column: column.to_string(),
            data_type: cursor.data_type().to_string(),
            message,
        };
        let typed = cast(
            &StringArray::from(vec![self.text.as_str()]),
            cursor.data_type(),
        )
        .map_err(|e| error(e.to_string()))?;
        if typed.is_null(0) {
            return Err(error("not a value of that type".into()));
        }
        self.typed = Some(typed.clone());
        Ok(typed)
    }
}

/// The source (a file, an API page) of row `index` of a batch, from its provenance column.
/// (A batch may span sources: an API's batches span pages.)
pub fn provenance_source(batch: &RecordBatch, index: usize) -> String {
    batch
        .column_by_name(SOURCE_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .filter(|c| index < c.len())
        .map_or_else(
            || "<unknown source>".to_string(),
            |c| c.value(index).to_string(),
        )
}

/// The source row number (1 = first data row) of row `index` of a batch, or -1.
pub fn provenance_row(batch: &RecordBatch, index: usize) -> i64 {
    batch
        .column_by_name(ROW_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int64Array>())
        .filter(|c| index < c.len())
        .map_or(-1, |c| c.value(index))
}
