//! The hostile test plugin's inputs and the policies the sandbox tests run it under.

use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use weir::plugin::{Limits, StepPolicy};

/// A three-row batch whose `attack` column tells the hostile plugin what to do.
pub fn attack(name: &str) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("attack", DataType::Utf8, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![name; 3])),
        ],
    )
    .unwrap()
}

pub fn policy(timeout_ms: u64, memory_mib: u64) -> StepPolicy {
    StepPolicy {
        limits: Limits {
            memory_mib,
            timeout_ms,
        },
        ..StepPolicy::default()
    }
}

/// Tests that measure time or CPU shares take this first, to run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
