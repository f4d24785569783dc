//! The seed's `validate`, as a Weir validator: `customer_id` not null, `total_usd >= 0`,
//! the batch not empty, no duplicate `order_id` (each repeat is a failing row).

use std::collections::HashSet;

use weir_sdk::arrow::array::types::{Float64Type, Int64Type};
use weir_sdk::arrow::array::{Array, AsArray, RecordBatch};
use weir_sdk::arrow::schema::DataType;
use weir_sdk::{Check, Config, Error, Validator};

pub struct OrdersValidator;

impl Validator for OrdersValidator {
    fn new(_config: Config) -> Result<Self, Error> {
        Ok(OrdersValidator)
    }

    fn validate(&mut self, batch: &RecordBatch) -> Result<Vec<Check>, Error> {
        validate_orders(batch)
    }
}

#[cfg(target_arch = "wasm32")]
weir_sdk::export_validator!(OrdersValidator);

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, Error> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| Error::input(format!("input has no `{name}` column")))
}

/// Indexes of the non-null values for which `fails` holds.
fn failing<T>(
    values: impl Iterator<Item = Option<T>>,
    mut fails: impl FnMut(T) -> bool,
) -> Vec<u32> {
    let mut rows = Vec::new();
    for (i, value) in values.enumerate() {
        if value.is_some_and(&mut fails) {
            rows.push(i as u32);
        }
    }
    rows
}

/// Indexes of the values that repeat an earlier one (nulls are not compared).
fn repeats<T: std::hash::Hash + Eq>(values: impl Iterator<Item = Option<T>>) -> Vec<u32> {
    let mut seen = HashSet::new();
    failing(values, |v| !seen.insert(v))
}

pub fn validate_orders(batch: &RecordBatch) -> Result<Vec<Check>, Error> {
    let customers = column(batch, "customer_id")?;
    let null_customers = (0..batch.num_rows() as u32)
        .filter(|&i| customers.is_null(i as usize))
        .collect();

    let totals = column(batch, "total_usd")?;
    let negative = match totals.data_type() {
        DataType::Float64 => failing(totals.as_primitive::<Float64Type>().iter(), |v| v < 0.0),
        DataType::Int64 => failing(totals.as_primitive::<Int64Type>().iter(), |v| v < 0),
        other => {
            return Err(Error::input(format!(
                "`total_usd` must be Float64 or Int64, not {other}"
            )));
        }
    };

    let ids = column(batch, "order_id")?;
    let duplicates = match ids.data_type() {
        DataType::Int64 => repeats(ids.as_primitive::<Int64Type>().iter()),
        DataType::Utf8 => repeats(ids.as_string::<i32>().iter()),
        other => {
            return Err(Error::input(format!(
                "`order_id` must be Int64 or Utf8, not {other}"
            )));
        }
    };

    Ok(vec![
        Check::rows(
            "customer_id_not_null",
            null_customers,
            "have a null customer_id",
        ),
        Check::rows(
            "total_usd_non_negative",
            negative,
            "have a negative total_usd",
        ),
        Check::batch(
            "batch_not_empty",
            batch.num_rows() > 0,
            format!("{} rows", batch.num_rows()),
        ),
        Check::rows("order_id_unique", duplicates, "repeat an earlier order_id"),
    ])
}
