//! A validator for the sandbox tests: spins forever when the first row of the batch's
//! `attack` column is `loop`; otherwise one passing check, `fine`, whose message says what
//! it saw (`<n> rows, <m> columns`). It reads every column.

use weir_sdk::arrow::array::{Array, AsArray, RecordBatch};
use weir_sdk::{Check, Config, Error, Validator};

pub struct HostileValidator;

impl Validator for HostileValidator {
    fn new(_config: Config) -> Result<Self, Error> {
        Ok(HostileValidator)
    }

    fn validate(&mut self, batch: &RecordBatch) -> Result<Vec<Check>, Error> {
        let attack = batch
            .column_by_name("attack")
            .and_then(|c| c.as_string_opt::<i32>())
            .filter(|c| !c.is_empty() && c.is_valid(0))
            .map(|c| c.value(0).to_string());
        if attack.as_deref() == Some("loop") {
            loop {
                std::hint::black_box(batch);
            }
        }
        let seen = format!("{} rows, {} columns", batch.num_rows(), batch.num_columns());
        Ok(vec![Check::batch("fine", true, seen)])
    }
}

#[cfg(target_arch = "wasm32")]
weir_sdk::export_validator!(HostileValidator);
