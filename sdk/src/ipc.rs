//! Arrow IPC stream encoding of one batch or one schema, as the WIT interface carries them.

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, Schema, SchemaRef};

/// Decode an IPC stream that holds exactly one record batch.
pub fn decode_batch(bytes: &[u8]) -> Result<RecordBatch, ArrowError> {
    one_batch(StreamReader::try_new(bytes, None)?)
}

/// As [`decode_batch`], for a batch the host sent, without validating it again.
pub(crate) fn decode_host_batch(bytes: &[u8]) -> Result<RecordBatch, ArrowError> {
    // SAFETY: the host encodes these buffers from arrays it has validated (and it validates
    // everything a plugin returns); checking UTF-8 and offsets again here only costs time.
    one_batch(unsafe { StreamReader::try_new(bytes, None)?.with_skip_validation(true) })
}

fn one_batch(mut reader: StreamReader<&[u8]>) -> Result<RecordBatch, ArrowError> {
    let batch = reader
        .next()
        .ok_or_else(|| ArrowError::IpcError("stream holds no record batch".into()))??;
    if reader.next().is_some() {
        return Err(ArrowError::IpcError(
            "stream holds more than one record batch".into(),
        ));
    }
    Ok(batch)
}

/// Encode one record batch as an IPC stream.
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    let mut writer = StreamWriter::try_new(&mut out, batch.schema_ref())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// Decode an IPC stream that holds a schema and no batches.
pub fn decode_schema(bytes: &[u8]) -> Result<SchemaRef, ArrowError> {
    Ok(StreamReader::try_new(bytes, None)?.schema())
}

/// Encode a schema as an IPC stream with no batches.
pub fn encode_schema(schema: &Schema) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::new();
    StreamWriter::try_new(&mut out, schema)?.finish()?;
    Ok(out)
}
