//! Incremental extraction: keep only rows whose cursor is past the watermark, and track the
//! highest cursor seen, which becomes the next watermark once the load commits.

use std::cmp::Ordering;

use arrow::array::{Array, ArrayRef, RecordBatch, Scalar, StringArray, make_comparator};
use arrow::compute::kernels::cmp::gt;
use arrow::compute::{cast, filter_record_batch};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::{ExtractError, ROW_COLUMN, SOURCE_COLUMN};

pub struct CursorFilter {
    column: String,
    /// The watermark as text, and as a one-element array of the cursor's type (made on the
    /// first batch, when that type is known).
    watermark: Option<String>,
    typed_watermark: Option<ArrayRef>,
    /// The highest cursor kept so far, as a one-element array.
    max: Option<ArrayRef>,
}

impl CursorFilter {
    pub fn new(column: &str, watermark: Option<String>) -> CursorFilter {
        CursorFilter {
            column: column.to_string(),
            watermark,
            typed_watermark: None,
            max: None,
        }
    }

    /// The rows of `batch` past the watermark.
    pub fn apply(&mut self, batch: RecordBatch) -> Result<RecordBatch, ExtractError> {
        let source = || provenance_source(&batch);
        let cursor = batch
            .column_by_name(&self.column)
            .ok_or_else(|| ExtractError::MissingCursor {
                path: source(),
                column: self.column.clone(),
            })?
            .clone();
        if cursor.null_count() > 0 {
            let index = (0..cursor.len()).find(|&i| cursor.is_null(i)).unwrap_or(0);
            return Err(ExtractError::NullCursor {
                path: source(),
                row: provenance_row(&batch, index),
                column: self.column.clone(),
            });
        }
        let kept = match self.typed(&cursor)? {
            Some(watermark) => filter_record_batch(
                &batch,
                &gt(&cursor, &Scalar::new(watermark)).expect("same types"),
            )
            .expect("mask matches the batch"),
            None => batch,
        };
        if let Some(cursor) = kept.column_by_name(&self.column) {
            self.track_max(cursor);
        }
        Ok(kept)
    }

    fn typed(&mut self, cursor: &ArrayRef) -> Result<Option<ArrayRef>, ExtractError> {
        let Some(text) = &self.watermark else {
            return Ok(None);
        };
        if self
            .typed_watermark
            .as_ref()
            .is_none_or(|w| w.data_type() != cursor.data_type())
        {
            let error = |message: String| ExtractError::Watermark {
                watermark: text.clone(),
                column: self.column.clone(),
                data_type: cursor.data_type().to_string(),
                message,
            };
            let typed = cast(&StringArray::from(vec![text.as_str()]), cursor.data_type())
                .map_err(|e| error(e.to_string()))?;
            if typed.is_null(0) {
                return Err(error("not a value of that type".into()));
            }
            self.typed_watermark = Some(typed);
        }
        Ok(self.typed_watermark.clone())
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
            None => self.watermark.clone(),
        }
    }
}

/// The source file named by a batch's provenance column.
pub fn provenance_source(batch: &RecordBatch) -> String {
    batch
        .column_by_name(SOURCE_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .filter(|c| !c.is_empty())
        .map_or_else(
            || "<unknown source>".to_string(),
            |c| c.value(0).to_string(),
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
