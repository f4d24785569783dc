//! A batch's Arrow IPC stream written straight into the guest's memory.
//!
//! The interface passes batches as `list<u8>`. Encoding the stream into a host buffer and
//! having wasmtime copy that buffer into the guest wrote every byte twice. A [`Stream`] is
//! the stream as its ordered segments (the framing, and the batch's own Arrow buffers,
//! uncopied), and lowers as the `list<u8>` of their bytes: the guest's allocator gives one
//! block of the total length, and each segment is copied into it once.
//!
//! This implements wasmtime's `Lower` by hand (its methods are public but doc-hidden, and
//! follow wasmtime's own `impl Lower for [u8]`), so it is checked again on every wasmtime
//! upgrade by the tests that call plugins.

use std::mem::MaybeUninit;

use arrow::buffer::Buffer;
use wasmtime::ValRaw;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower};

/// A `list<u8>` argument: an IPC stream's segments, or bytes already encoded.
#[derive(Clone, Copy)]
pub enum Stream<'a> {
    Segments(&'a [Buffer]),
    Bytes(&'a [u8]),
}

impl Stream<'_> {
    /// Copy the stream into a block the guest allocates; its address and length.
    fn store<T>(&self, cx: &mut LowerContext<'_, T>) -> wasmtime::Result<(usize, usize)> {
        let segments: &[&[u8]] = &match self {
            Stream::Segments(buffers) => buffers.iter().map(|b| b.as_slice()).collect(),
            Stream::Bytes(bytes) => vec![*bytes],
        };
        let len = segments.iter().map(|s| s.len()).sum();
        // Alignment 1, as for any `list<u8>`; `realloc` checks the block lies in memory.
        let ptr = cx.realloc(0, 0, 1, len)?;
        let block = &mut cx.as_slice_mut()[ptr..][..len];
        let mut at = 0;
        for segment in segments {
            block[at..at + segment.len()].copy_from_slice(segment);
            at += segment.len();
        }
        Ok((ptr, len))
    }
}

// SAFETY: lowered exactly as `[u8]` is (a pointer and a length), and type-checked as it.
unsafe impl ComponentType for Stream<'_> {
    type Lower = [ValRaw; 2];
    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[u8] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: writes only inside the block the guest's `realloc` returned (bounds-checked
// slices), and the pointer pair as wasmtime's `[u8]` writes it.
unsafe impl Lower for Stream<'_> {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 2]>,
    ) -> wasmtime::Result<()> {
        let (ptr, len) = self.store(cx)?;
        dst.write([ValRaw::i64(ptr as i64), ValRaw::i64(len as i64)]);
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let (ptr, len) = self.store(cx)?;
        *cx.get::<4>(offset) = u32::try_from(ptr)?.to_le_bytes();
        *cx.get::<4>(offset + 4) = u32::try_from(len)?.to_le_bytes();
        Ok(())
    }
}
