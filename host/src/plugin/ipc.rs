//! Arrow IPC stream buffers as they cross the plugin boundary. Output from a plugin is
//! untrusted: it is fully validated, and a panic inside the decoder becomes an error.

use std::panic::{AssertUnwindSafe, catch_unwind};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    let mut writer = StreamWriter::try_new(&mut out, batch.schema_ref())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

pub fn encode_schema(schema: &Schema) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::new();
    StreamWriter::try_new(&mut out, schema)?.finish()?;
    Ok(out)
}

/// Decode a stream that must hold exactly one record batch.
pub fn decode_batch(bytes: &[u8]) -> Result<RecordBatch, String> {
    guarded(|| {
        let mut reader = StreamReader::try_new(bytes, None)?;
        let batch = reader
            .next()
            .ok_or_else(|| ArrowError::IpcError("the stream holds no record batch".into()))??;
        if reader.next().is_some() {
            return Err(ArrowError::IpcError(
                "the stream holds more than one record batch".into(),
            ));
        }
        Ok(batch)
    })
}

/// Decode a stream that holds a schema (batches, if any, are ignored).
pub fn decode_schema(bytes: &[u8]) -> Result<SchemaRef, String> {
    guarded(|| Ok(StreamReader::try_new(bytes, None)?.schema()))
}

fn guarded<T>(decode: impl FnOnce() -> Result<T, ArrowError>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(decode)) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("the Arrow decoder rejected it (malformed buffers)".into()),
    }
}
