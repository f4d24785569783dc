//! Arrow IPC stream encoding of one batch or one schema, as the WIT interface carries them.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::{FileDecoder, StreamReader};
use arrow_ipc::writer::StreamWriter;
use arrow_ipc::{Block, Message, MessageHeader, root_as_message};
use arrow_schema::{ArrowError, Schema, SchemaRef};

/// Decode an IPC stream that holds exactly one record batch.
pub fn decode_batch(bytes: &[u8]) -> Result<RecordBatch, ArrowError> {
    one_batch(StreamReader::try_new(bytes, None)?)
}

/// As [`decode_batch`], for a batch the host sent: without copying the buffers out of
/// `bytes` and without validating them again.
pub(crate) fn decode_host_batch(bytes: Vec<u8>) -> Result<RecordBatch, ArrowError> {
    // `StreamReader` copies each message body into a fresh buffer, and `StreamDecoder` (which
    // does not) always validates; `FileDecoder` does neither, given where each message is.
    let bytes = Buffer::from_vec(bytes);
    let mut decoder: Option<FileDecoder> = None;
    let mut at = 0;
    loop {
        let (message, meta_len) = message_at(&bytes, at)?;
        let body_len = usize::try_from(message.bodyLength())
            .map_err(|_| ArrowError::IpcError("negative body length".into()))?;
        let block = Block::new(at as i64, meta_len as i32, body_len as i64);
        let no_schema = || ArrowError::IpcError("stream holds no schema".into());
        match message.header_type() {
            MessageHeader::Schema => {
                let schema = message
                    .header_as_schema()
                    .ok_or_else(|| ArrowError::IpcError("unreadable schema".into()))?;
                let schema = Arc::new(try_fb_to_schema(schema)?);
                // SAFETY: the host encodes these buffers from arrays it has validated (and it
                // validates everything a plugin returns); checking UTF-8 and offsets again here
                // only costs time.
                decoder = Some(unsafe {
                    FileDecoder::new(schema, message.version()).with_skip_validation(true)
                });
            }
            MessageHeader::DictionaryBatch => decoder
                .as_mut()
                .ok_or_else(no_schema)?
                .read_dictionary(&block, &bytes.slice(at))?,
            MessageHeader::RecordBatch => {
                return decoder
                    .ok_or_else(no_schema)?
                    .read_record_batch(&block, &bytes.slice(at))?
                    .ok_or_else(|| ArrowError::IpcError("stream holds no record batch".into()));
            }
            other => {
                return Err(ArrowError::IpcError(format!(
                    "unexpected {other:?} message in the stream"
                )));
            }
        }
        at += meta_len + body_len;
    }
}

/// The IPC message at `at` of a stream, and the length of its metadata (with its prefix).
fn message_at(bytes: &[u8], at: usize) -> Result<(Message<'_>, usize), ArrowError> {
    let truncated = || ArrowError::IpcError("stream holds no record batch".into());
    let word = |at: usize| -> Result<u32, ArrowError> {
        let b = bytes.get(at..at + 4).ok_or_else(truncated)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    // `0xFFFFFFFF` then the length, or the length alone (before format version 0.15).
    let prefix = if word(at)? == u32::MAX { 8 } else { 4 };
    let len = word(at + prefix - 4)? as usize;
    if len == 0 {
        return Err(truncated()); // end of stream
    }
    let fb = bytes
        .get(at + prefix..at + prefix + len)
        .ok_or_else(truncated)?;
    let message = root_as_message(fb)
        .map_err(|e| ArrowError::IpcError(format!("unreadable message: {e}")))?;
    Ok((message, prefix + len))
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

#[cfg(test)]
mod tests {
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, Int64Array, RecordBatch, StringArray};

    use super::*;

    #[test]
    fn host_batches_decode_as_encoded() {
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "id",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
            ),
            ("text", Arc::new(StringArray::from(vec!["a", "", "ccc"]))),
            (
                "dict",
                Arc::new(DictionaryArray::<Int32Type>::from_iter(["x", "y", "x"])),
            ),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let bytes = encode_batch(&batch).unwrap();
        assert_eq!(decode_host_batch(bytes.clone()).unwrap(), batch);
        assert_eq!(decode_batch(&bytes).unwrap(), batch);

        let schema_only = encode_schema(&batch.schema()).unwrap();
        assert!(decode_host_batch(schema_only).is_err());
        assert!(decode_host_batch(bytes[..bytes.len() / 2].to_vec()).is_err());
    }
}
