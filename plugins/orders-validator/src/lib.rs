//! The seed's `validate`, as a Weir validator: `customer_id` not null, `total_usd >= 0`,
//! the batch not empty, no duplicate `order_id` (each repeat is a failing row).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

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

    fn reads(&self) -> Option<&[&str]> {
        Some(&["customer_id", "total_usd", "order_id"])
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

/// Indexes of the values that repeat an earlier one (nulls are not compared). Ids usually
/// come in order, and then a repeat is the value just before it: one pass, no hashing.
fn repeats<T, I>(values: impl Fn() -> I) -> Vec<u32>
where
    T: std::hash::Hash + Eq + PartialOrd + Copy,
    I: ExactSizeIterator<Item = Option<T>>,
{
    let mut previous: Option<T> = None;
    let in_order = values().flatten().all(|v| {
        let ordered = previous.is_none_or(|p| p <= v);
        previous = Some(v);
        ordered
    });
    if in_order {
        let mut previous: Option<T> = None;
        return failing(values(), |v| previous.replace(v) == Some(v));
    }
    let values = values();
    let mut seen = HashSet::with_capacity_and_hasher(values.len(), Ids::default());
    failing(values, |v| !seen.insert(v))
}

/// A hasher for ids: a multiply folded to 64 bits per word (std's SipHash was most of this
/// validator's time). Not keyed: a batch crafted to collide only slows its own check, and
/// the step's time budget bounds that.
type Ids = BuildHasherDefault<IdHasher>;

#[derive(Default)]
struct IdHasher(u64);

impl IdHasher {
    fn mix(&mut self, word: u64) {
        let product = u128::from(self.0 ^ word) * 0x9E37_79B9_7F4A_7C15;
        self.0 = (product as u64) ^ (product >> 64) as u64;
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.mix(u64::from_le_bytes(last) ^ bytes.len() as u64);
    }

    fn write_u64(&mut self, word: u64) {
        self.mix(word);
    }

    fn write_i64(&mut self, word: i64) {
        self.mix(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
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
        DataType::Int64 => repeats(|| ids.as_primitive::<Int64Type>().iter()),
        DataType::Utf8 => repeats(|| ids.as_string::<i32>().iter()),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The repeats by the definition: each value equal to one before it.
    fn naive<T: PartialEq>(values: &[Option<T>]) -> Vec<u32> {
        let repeated = |i: usize| values[..i].iter().any(|v| v.is_some() && *v == values[i]);
        (0..values.len())
            .filter(|&i| repeated(i))
            .map(|i| i as u32)
            .collect()
    }

    #[test]
    fn repeats_are_exactly_the_values_seen_before() {
        let ints: Vec<Option<i64>> = (0..5000)
            .map(|i: i64| (i % 97 != 0).then_some((i * 7919) % 3001 - 1500))
            .collect();
        assert_eq!(repeats(|| ints.iter().copied()), naive(&ints));
        // In order (the one-pass path), with nulls between repeats.
        let mut sorted: Vec<Option<i64>> = ints.iter().flatten().map(|&v| Some(v)).collect();
        sorted.sort();
        sorted.iter_mut().step_by(7).for_each(|v| *v = None);
        assert!(sorted.windows(2).any(|w| w[0].is_some() && w[0] == w[1]));
        assert_eq!(repeats(|| sorted.iter().copied()), naive(&sorted));

        // Strings of every length around the hasher's 8-byte words, some equal but for length.
        let texts: Vec<Option<String>> = (0..3000)
            .map(|i| (i % 89 != 0).then(|| "ab".repeat(i % 13) + &"x".repeat(i % 11)))
            .collect();
        let strs: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
        assert_eq!(repeats(|| strs.iter().copied()), naive(&strs));
        assert!(repeats(|| strs.iter().copied()).len() > 100);
    }
}
