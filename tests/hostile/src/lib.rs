//! A hostile transform for the sandbox tests. The attack is chosen by the input: the value
//! of the first row of the batch's `attack` column. A batch without one passes through
//! unchanged, so a test can show that the very next call on the same session succeeds.
//!
//! Attacks: `loop`, `memory_bomb`, `recursion`, `native_recursion`, `panic`, `trap`, `garbage` (output that is
//! not Arrow IPC), `extra_rows`, `schema_lie` (a column it never declared), `nullable_lie`
//! (nulls in a column it declares not null), `huge_output` (a 1 GiB batch), `near_cap:<MiB>`
//! (allocates and frees that much, then passes the batch through), `spin:<n>` (n million
//! iterations of busy work, then passes the batch through), `snoop` (reports what it could
//! see of files, environment and clock, as a one-row batch), `count` (not an attack: every
//! row's `attack` becomes `count:<n>`, n the batches this instance has served, for the
//! tests of parallel batches).
//!
//! It answers by columns (`transform-columns`), the whole output as computed columns, and
//! has attacks of that answer's own: `keep_short` (a keep bitmap a byte short),
//! `bad_input_column` and `bad_computed_column` (columns it does not have), `computed_rows`
//! (computed columns with more rows than it keeps) and `columns_garbage` (computed columns
//! that are not Arrow IPC).
//!
//! It reads every column (`transform-reads` answers `none`), except for an input with a
//! column named `bad_reads`: then it claims a column that input does not have.

use std::sync::Arc;

use weir_sdk::Error;
use weir_sdk::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
};
use weir_sdk::arrow::schema::{DataType, Field, Schema};
use weir_sdk::arrow::select::concat::concat_batches;

use weir_sdk::__private::transformer::exports::weir::plugin::transform::{Guest, PluginError};
use weir_sdk::__private::transformer::exports::weir::plugin::{transform_columns, transform_reads};
use weir_sdk::__private::transformer::weir::plugin::types::{ColumnSource, Transformed};
use weir_sdk::ipc;

thread_local! {
    static SNOOP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static SERVED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Implements the WIT interface directly, not through the SDK's trait: a hostile plugin
/// is not bound by the SDK's good manners (it can return bytes that are not Arrow IPC).
pub struct Hostile;

impl Guest for Hostile {
    fn init(config: String) -> Result<(), PluginError> {
        SNOOP.set(config.contains("snoop"));
        Ok(())
    }

    fn output_schema(input: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        if SNOOP.get() {
            return Ok(ipc::encode_schema(&snoop_schema()).map_err(Error::from)?);
        }
        // Declares its input schema unchanged, whatever it will really return.
        Ok(input)
    }

    fn transform(bytes: Vec<u8>) -> Result<Vec<u8>, PluginError> {
        if SNOOP.get() {
            return Ok(ipc::encode_batch(&snoop()?).map_err(Error::from)?);
        }
        let batch = ipc::decode_batch(&bytes).map_err(Error::from)?;
        if attack_of(&batch).as_deref() == Some("garbage") {
            return Ok(b"this is not an Arrow IPC stream".to_vec());
        }
        Ok(ipc::encode_batch(&attack(batch)?).map_err(Error::from)?)
    }
}

impl transform_reads::Guest for Hostile {
    fn reads(input: Vec<u8>) -> Result<Option<Vec<u32>>, PluginError> {
        let schema = ipc::decode_schema(&input).map_err(Error::from)?;
        let bad = schema.field_with_name("bad_reads").is_ok();
        Ok(bad.then(|| vec![0, schema.fields().len() as u32]))
    }
}

impl transform_columns::Guest for Hostile {
    fn transform(bytes: Vec<u8>) -> Result<Transformed, PluginError> {
        if SNOOP.get() {
            return whole(&snoop()?);
        }
        let batch = ipc::decode_batch(&bytes).map_err(Error::from)?;
        let rows = batch.num_rows();
        let all_rows = || Some(vec![0xFF; rows.div_ceil(8)]);
        let no_columns = || -> Result<Vec<u8>, Error> {
            let options = RecordBatchOptions::new().with_row_count(Some(rows));
            let empty =
                RecordBatch::try_new_with_options(Arc::new(Schema::empty()), vec![], &options)?;
            Ok(ipc::encode_batch(&empty)?)
        };
        let inputs = |n: usize| (0..n as u32).map(ColumnSource::Input).collect::<Vec<_>>();
        Ok(match attack_of(&batch).as_deref() {
            Some("garbage") | Some("columns_garbage") => Transformed {
                keep: None,
                computed: b"this is not an Arrow IPC stream".to_vec(),
                columns: vec![ColumnSource::Computed(0)],
            },
            Some("keep_short") => Transformed {
                keep: Some(vec![0xFF; rows.div_ceil(8).saturating_sub(1)]),
                computed: no_columns()?,
                columns: inputs(batch.num_columns()),
            },
            Some("bad_input_column") => Transformed {
                keep: all_rows(),
                computed: no_columns()?,
                columns: vec![ColumnSource::Input(batch.num_columns() as u32)],
            },
            Some("bad_computed_column") => Transformed {
                keep: None,
                computed: no_columns()?,
                columns: vec![ColumnSource::Computed(0)],
            },
            Some("computed_rows") => {
                let doubled =
                    concat_batches(batch.schema_ref(), [&batch, &batch]).map_err(Error::from)?;
                Transformed {
                    keep: all_rows(),
                    ..whole(&doubled)?
                }
            }
            _ => return whole(&attack(batch)?),
        })
    }
}

/// `batch` as the answer: every row, every column computed.
fn whole(batch: &RecordBatch) -> Result<Transformed, PluginError> {
    Ok(Transformed {
        keep: None,
        computed: ipc::encode_batch(batch).map_err(Error::from)?,
        columns: (0..batch.num_columns() as u32)
            .map(ColumnSource::Computed)
            .collect(),
    })
}

fn attack_of(batch: &RecordBatch) -> Option<String> {
    batch
        .column_by_name("attack")
        .and_then(|c| c.as_string_opt::<i32>())
        .filter(|c| !c.is_empty() && c.is_valid(0))
        .map(|c| c.value(0).to_string())
}

fn attack(batch: RecordBatch) -> Result<RecordBatch, Error> {
    match attack_of(&batch).as_deref() {
        None | Some("") | Some("none") => Ok(batch),
        Some("loop") => loop {
            std::hint::black_box(&batch);
        },
        Some("memory_bomb") => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Some("recursion") => Ok(recurse(std::hint::black_box(1)).then_some(batch).unwrap()),
        Some("native_recursion") => Ok((native_recurse(std::hint::black_box(1)) > 0)
            .then_some(batch)
            .unwrap()),
        Some("panic") => panic!("the hostile plugin panics on purpose"),
        Some("trap") => {
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_arch = "wasm32"))]
            unreachable!()
        }
        Some("count") => {
            let served = SERVED.get() + 1;
            SERVED.set(served);
            let at = batch.schema().index_of("attack")?;
            let mut columns = batch.columns().to_vec();
            let text = format!("count:{served}");
            columns[at] = Arc::new(StringArray::from(vec![text.as_str(); batch.num_rows()]));
            Ok(RecordBatch::try_new(batch.schema(), columns)?)
        }
        Some("extra_rows") => Ok(concat_batches(batch.schema_ref(), [&batch, &batch])?),
        Some("schema_lie") => {
            let mut fields = batch.schema().fields().to_vec();
            fields.push(Arc::new(Field::new("undeclared", DataType::Int64, false)));
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(Int64Array::from(vec![7; batch.num_rows()])) as ArrayRef);
            Ok(RecordBatch::try_new(
                Arc::new(Schema::new(fields)),
                columns,
            )?)
        }
        Some("nullable_lie") => {
            // `id` is declared not null (as the input says) but the output holds nulls.
            let mut columns = batch.columns().to_vec();
            columns[0] = Arc::new(Int64Array::from(vec![None; batch.num_rows()]));
            // SAFETY: the lie is the point; only the host's validation stands in the way.
            Ok(unsafe { RecordBatch::new_unchecked(batch.schema(), columns, batch.num_rows()) })
        }
        Some("huge_output") => {
            let text = StringArray::from(vec![Some("x".repeat(1 << 30).as_str())]);
            let schema = Schema::new(vec![Field::new("huge", DataType::Utf8, true)]);
            Ok(RecordBatch::try_new(
                Arc::new(schema),
                vec![Arc::new(text)],
            )?)
        }
        Some(other) if other.starts_with("near_cap:") => {
            let mib: usize = other["near_cap:".len()..].parse().unwrap_or(0);
            let hoard = vec![1u8; mib << 20];
            std::hint::black_box(&hoard);
            Ok(batch)
        }
        Some(other) if other.starts_with("spin:") => {
            let millions: u64 = other["spin:".len()..].parse().unwrap_or(0);
            let mut x = 0u64;
            for i in 0..millions * 1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            std::hint::black_box(x);
            Ok(batch)
        }
        Some(other) => Err(Error::input(format!("unknown attack `{other}`"))),
    }
}

/// Recursion with small frames: exhausts the engine's native stack before the guest's own.
fn native_recurse(depth: u64) -> u64 {
    if depth == 0 {
        0
    } else {
        std::hint::black_box(native_recurse(depth + 1)) + 1
    }
}

/// Recursion with large frames: runs off the guest's stack in linear memory.
fn recurse(depth: u64) -> bool {
    let frame = [depth; 64];
    std::hint::black_box(&frame);
    if depth == 0 {
        true
    } else {
        recurse(std::hint::black_box(depth + 1)) && frame[3] > 0
    }
}

fn snoop_schema() -> Schema {
    Schema::new(
        ["file", "dir", "env", "clock_secs"]
            .map(|n| Field::new(n, DataType::Utf8, false))
            .to_vec(),
    )
}

/// What a plugin can find out about its host: one row of text columns.
fn snoop() -> Result<RecordBatch, Error> {
    let file = match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => format!("read {} bytes", text.len()),
        Err(e) => format!("denied: {e}"),
    };
    let dir = match std::fs::read_dir("/") {
        Ok(entries) => format!("listed {} entries", entries.count()),
        Err(e) => format!("denied: {e}"),
    };
    let env = std::env::vars()
        .map(|(k, _)| k)
        .collect::<Vec<_>>()
        .join(",");
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().to_string())
        .unwrap_or_default();
    let column = |v: String| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    Ok(RecordBatch::try_new(
        Arc::new(snoop_schema()),
        vec![column(file), column(dir), column(env), column(clock)],
    )?)
}

#[cfg(target_arch = "wasm32")]
weir_sdk::__private::transformer::export!(Hostile with_types_in weir_sdk::__private::transformer);
