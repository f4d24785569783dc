//! A transform's answer: which rows of its input it keeps, and its columns, each either one
//! of the input's (its kept rows) or one the plugin computed.
//!
//! The host holds the input too, so the input's columns are never sent back: only the keep
//! bitmap and the computed columns leave the sandbox, and the host filters its own copy of
//! the rest (`transform-columns` in the WIT package). For a transform that drops rows and
//! adds a few columns that is most of its output.
//!
//! A transform that reads only some columns ([`crate::Transform::reads`]) is given a batch
//! of those; an output made from that batch still stands for the whole input (see
//! [`Projection`]), so the columns it did not read pass through too.

use std::cell::RefCell;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{FieldRef, Schema, SchemaRef};
use arrow_select::filter::FilterBuilder;

use crate::Error;
use crate::adapter::transformer::weir::plugin::types::ColumnSource;

/// One output column: an input column (its kept rows) or one the plugin computed.
#[derive(Debug, Clone)]
pub(crate) enum Column {
    Input(usize),
    Computed(ArrayRef),
}

/// What [`crate::Transform::transform`] returns: a batch (`batch.into()`), or the rows of
/// the input kept ([`Output::select`]) with columns replaced, removed or added.
///
/// ```ignore
/// let mut out = Output::select(&batch, keep)?; // the input's columns, kept rows only
/// out.set(Field::new("total", DataType::Float64, false), Arc::new(totals))?;
/// out.remove("scratch");
/// ```
#[derive(Debug, Clone)]
pub struct Output {
    pub(crate) input: RecordBatch,
    /// Set where `input` holds only the columns the transform reads.
    projection: Option<Arc<Projection>>,
    pub(crate) keep: Option<BooleanBuffer>,
    pub(crate) rows: usize,
    /// `Column::Input` counts the whole input's columns.
    pub(crate) columns: Vec<(FieldRef, Column)>,
}

/// The batch a transform was given when the host sent only the columns it reads.
#[derive(Debug)]
pub(crate) struct Projection {
    given: RecordBatch,
    whole: SchemaRef,
    /// For each column of the whole input, its place in `given`, if it was sent.
    places: Vec<Option<usize>>,
}

impl Projection {
    /// `given` as the `columns` of an input of schema `whole`, if that is what it holds
    /// (else the host sent the whole input).
    pub(crate) fn of(given: &RecordBatch, whole: &SchemaRef, columns: &[usize]) -> Option<Self> {
        let names = given.schema_ref().fields().iter().map(|f| f.name());
        let expected = columns
            .iter()
            .map(|&i| whole.fields().get(i).map(|f| f.name()));
        if given.num_columns() != columns.len() || !names.map(Some).eq(expected) {
            return None;
        }
        let mut places = vec![None; whole.fields().len()];
        for (place, &column) in columns.iter().enumerate() {
            places[column] = Some(place);
        }
        Some(Projection {
            given: given.clone(),
            whole: whole.clone(),
            places,
        })
    }
}

thread_local! {
    // The projection of the `transform` call under way, if any.
    static PROJECTION: RefCell<Option<Arc<Projection>>> = const { RefCell::new(None) };
}

/// Run `f` (a `transform` call) with outputs made from `projection`'s batch standing for
/// the whole input.
pub(crate) fn with_projection<R>(projection: Option<Projection>, f: impl FnOnce() -> R) -> R {
    PROJECTION.with(|p| *p.borrow_mut() = projection.map(Arc::new));
    let result = f();
    PROJECTION.with(|p| *p.borrow_mut() = None);
    result
}

impl From<RecordBatch> for Output {
    /// Every row and column of `batch`. Returning the input itself (or adding columns to
    /// it) sends none of its columns back to the host.
    fn from(batch: RecordBatch) -> Output {
        let projection = PROJECTION.with(|p| p.borrow().clone());
        let projection = projection.filter(|p| same_batch(&p.given, &batch));
        let schema = projection
            .as_ref()
            .map_or_else(|| batch.schema(), |p| p.whole.clone());
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| (field.clone(), Column::Input(i)))
            .collect();
        Output {
            rows: batch.num_rows(),
            input: batch,
            projection,
            keep: None,
            columns,
        }
    }
}

impl Output {
    /// The rows of `input` whose bit is set in `keep` (one bit per input row), with every
    /// column of `input`.
    pub fn select(input: &RecordBatch, keep: BooleanBuffer) -> Result<Output, Error> {
        if keep.len() != input.num_rows() {
            return Err(Error::internal(format!(
                "the keep mask has {} bits for {} rows",
                keep.len(),
                input.num_rows()
            )));
        }
        let mut output = Output::from(input.clone());
        output.rows = keep.count_set_bits();
        output.keep = Some(keep);
        Ok(output)
    }

    /// The number of rows of the output.
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// Replace the column named as `field` with `array` (one value per output row), or add
    /// it after the others if there is none.
    pub fn set(&mut self, field: impl Into<FieldRef>, array: ArrayRef) -> Result<(), Error> {
        let field = field.into();
        if array.len() != self.rows {
            return Err(Error::internal(format!(
                "column `{}` has {} values for {} rows",
                field.name(),
                array.len(),
                self.rows
            )));
        }
        let column = (field.clone(), Column::Computed(array));
        match self
            .columns
            .iter_mut()
            .find(|(f, _)| f.name() == field.name())
        {
            Some(slot) => *slot = column,
            None => self.columns.push(column),
        }
        Ok(())
    }

    /// Remove the column named `name`, if there is one.
    pub fn remove(&mut self, name: &str) {
        self.columns.retain(|(field, _)| field.name() != name);
    }

    /// The output's schema.
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<FieldRef> = self.columns.iter().map(|(f, _)| f.clone()).collect();
        Arc::new(Schema::new(fields))
    }

    /// The output as one batch, the input's columns filtered to the kept rows here.
    pub fn into_batch(self) -> Result<RecordBatch, Error> {
        let filter = self.keep.as_ref().map(|keep| {
            FilterBuilder::new(&BooleanArray::new(keep.clone(), None))
                .optimize()
                .build()
        });
        let columns = self
            .columns
            .iter()
            .map(|(_, column)| match (column, &filter) {
                (Column::Computed(array), _) => Ok(array.clone()),
                (Column::Input(i), None) => Ok(self.input_column(*i)?.clone()),
                (Column::Input(i), Some(filter)) => Ok(filter.filter(self.input_column(*i)?)?),
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        Ok(RecordBatch::try_new_with_options(
            self.schema(),
            columns,
            &options,
        )?)
    }

    /// The input's column `i` (counted in the whole input), if the transform was given it.
    fn input_column(&self, i: usize) -> Result<&ArrayRef, Error> {
        let Some(projection) = &self.projection else {
            return Ok(self.input.column(i));
        };
        let place = projection.places[i].ok_or_else(|| {
            Error::internal(format!(
                "column `{}` is not one the transform reads (`Transform::reads`): only the \
                 host has it, and it cannot be part of a batch built here",
                projection.whole.field(i).name()
            ))
        })?;
        Ok(self.input.column(place))
    }

    /// As sent to the host for `input` (the batch the plugin was given): the keep bitmap,
    /// the computed columns as one batch, and where each output column comes from. Input
    /// columns of an output built from some other batch are sent as computed.
    pub(crate) fn into_parts(self, input: &RecordBatch) -> Result<Parts, Error> {
        if !same_batch(&self.input, input) {
            let computed = self.into_batch()?;
            let sources = (0..computed.num_columns() as u32)
                .map(ColumnSource::Computed)
                .collect();
            return Ok(Parts {
                keep: None,
                computed,
                sources,
            });
        }
        let keep = self.keep.as_ref().map(|keep| {
            let bytes = keep.len().div_ceil(8);
            keep.sliced().as_slice()[..bytes].to_vec()
        });
        let (mut fields, mut arrays) = (Vec::new(), Vec::new());
        let mut sources = Vec::with_capacity(self.columns.len());
        for (field, column) in self.columns {
            sources.push(match column {
                Column::Input(i) => ColumnSource::Input(i as u32),
                Column::Computed(array) => {
                    fields.push(field);
                    arrays.push(array);
                    ColumnSource::Computed(arrays.len() as u32 - 1)
                }
            });
        }
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        let computed =
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)?;
        Ok(Parts {
            keep,
            computed,
            sources,
        })
    }
}

/// An [`Output`] as `transform-columns` answers it.
pub(crate) struct Parts {
    pub keep: Option<Vec<u8>>,
    pub computed: RecordBatch,
    pub sources: Vec<ColumnSource>,
}

/// Whether `a` is `b` (the same arrays, not merely equal ones).
fn same_batch(a: &RecordBatch, b: &RecordBatch) -> bool {
    a.num_rows() == b.num_rows()
        && a.num_columns() == b.num_columns()
        && a.columns()
            .iter()
            .zip(b.columns())
            .all(|(x, y)| Arc::ptr_eq(x, y))
}

#[cfg(test)]
mod tests {
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field};

    use super::*;

    fn input() -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
            ),
            (
                "name",
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])) as _,
            ),
        ])
        .unwrap()
    }

    fn keep() -> BooleanBuffer {
        BooleanBuffer::from(vec![true, false, false, true])
    }

    #[test]
    fn selected_rows_with_columns_set_and_removed() {
        let input = input();
        let mut output = Output::select(&input, keep()).unwrap();
        output
            .set(
                Field::new("id", DataType::Int64, false),
                Arc::new(Int64Array::from(vec![10, 40])),
            )
            .unwrap();
        output
            .set(
                Field::new("flag", DataType::Utf8, false),
                Arc::new(StringArray::from(vec!["x", "y"])),
            )
            .unwrap();
        let batch = output.clone().into_batch().unwrap();
        let want = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![10, 40])) as ArrayRef),
            ("name", Arc::new(StringArray::from(vec!["a", "d"])) as _),
            ("flag", Arc::new(StringArray::from(vec!["x", "y"])) as _),
        ])
        .unwrap();
        assert_eq!(batch.columns(), want.columns());

        // Sent: the bitmap, only the two computed columns, and where each column is.
        let parts = output.clone().into_parts(&input).unwrap();
        assert_eq!(parts.keep, Some(vec![0b1001]));
        assert_eq!(parts.computed.num_columns(), 2);
        assert!(matches!(
            parts.sources[..],
            [
                ColumnSource::Computed(0),
                ColumnSource::Input(1),
                ColumnSource::Computed(1)
            ]
        ));

        output.remove("name");
        assert_eq!(output.schema().fields().len(), 2);
        // A column of the wrong length is refused.
        let wrong = output.set(
            Field::new("x", DataType::Int64, false),
            Arc::new(Int64Array::from(vec![1, 2, 3])),
        );
        assert!(wrong.is_err());
    }

    #[test]
    fn the_input_itself_sends_nothing_back_and_another_batch_is_sent_whole() {
        let input = input();
        let parts = Output::from(input.clone()).into_parts(&input).unwrap();
        assert_eq!(parts.keep, None);
        assert_eq!(parts.computed.num_columns(), 0);
        assert_eq!(parts.computed.num_rows(), 4);
        assert!(matches!(
            parts.sources[..],
            [ColumnSource::Input(0), ColumnSource::Input(1)]
        ));

        // Equal values, but not the input's arrays: the host must not take its own.
        let other = input.slice(0, 4);
        let copy = RecordBatch::try_new(
            input.schema(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                other.column(1).clone(),
            ],
        )
        .unwrap();
        let parts = Output::select(&copy, keep())
            .unwrap()
            .into_parts(&input)
            .unwrap();
        assert_eq!(parts.keep, None);
        assert_eq!(parts.computed.num_rows(), 2);
        assert!(matches!(
            parts.sources[..],
            [ColumnSource::Computed(0), ColumnSource::Computed(1)]
        ));
    }

    #[test]
    fn an_output_of_the_columns_read_stands_for_the_whole_input() {
        // The whole input: id, name, amount; the transform reads `name` alone.
        let whole = input();
        let whole = RecordBatch::try_from_iter(
            whole
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .zip(whole.columns().iter().cloned())
                .chain([(
                    "amount".to_string(),
                    Arc::new(Int64Array::from(vec![5, 6, 7, 8])) as ArrayRef,
                )]),
        )
        .unwrap();
        let given = whole.project(&[1]).unwrap();
        let projection = Projection::of(&given, &whole.schema(), &[1]);
        assert!(projection.is_some());
        // A batch that is not what was asked about is taken as the whole input.
        assert!(Projection::of(&given, &whole.schema(), &[0]).is_none());

        let (parts, made_here) = with_projection(projection, || {
            let mut output = Output::select(&given, keep()).unwrap();
            output.remove("amount");
            output
                .set(
                    Field::new("loud", DataType::Utf8, false),
                    Arc::new(StringArray::from(vec!["A", "D"])),
                )
                .unwrap();
            let names: Vec<String> = output
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(names, ["id", "name", "loud"]);
            // Outside the transform's batch, `id` exists only on the host.
            let made_here = output.clone().into_batch();
            (output.into_parts(&given).unwrap(), made_here)
        });
        assert!(matches!(
            parts.sources[..],
            [
                ColumnSource::Input(0),
                ColumnSource::Input(1),
                ColumnSource::Computed(0)
            ]
        ));
        assert_eq!(parts.keep, Some(vec![0b1001]));
        let error = made_here.unwrap_err().to_string();
        assert!(
            error.contains("`id` is not one the transform reads"),
            "{error}"
        );

        // After the call, the same batch is a batch of its own again.
        let parts = Output::from(given.clone()).into_parts(&given).unwrap();
        assert!(matches!(parts.sources[..], [ColumnSource::Input(0)]));
    }

    #[test]
    fn a_mask_of_the_wrong_length_is_refused() {
        let short = BooleanBuffer::from(vec![true, false]);
        assert!(Output::select(&input(), short).is_err());
    }
}
