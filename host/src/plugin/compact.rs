//! The kept rows of the input's columns, for a transform's answer by columns.
//!
//! Transforms usually keep most rows and drop a scattered few; at those selectivities
//! Arrow's filter kernel gathers each column through a list of indices. Columns of 8-byte
//! values (integers, floats, timestamps, dates) are compressed here instead, eight rows at a
//! time with AVX-512's `VPCOMPRESSQ` and their validity bits 64 at a time with BMI2's `PEXT`,
//! on CPUs that have both (the AMD ones that do also have a fast `PEXT`). Anything else goes
//! to Arrow's kernel, which gives the same arrays (see the tests).

use std::sync::OnceLock;

use arrow::array::{ArrayRef, BooleanArray};
use arrow::buffer::BooleanBuffer;
use arrow::compute::{FilterBuilder, FilterPredicate};
use arrow::error::ArrowError;

/// The rows a transform keeps, ready to filter the input's columns by.
pub(crate) struct Keep {
    bits: BooleanBuffer,
    kept: usize,
    /// Arrow's filter, built on first use (building it is a pass over the bitmap).
    arrow: OnceLock<FilterPredicate>,
}

impl Keep {
    /// `kept` is `bits.count_set_bits()`, which the caller has already counted.
    pub(crate) fn new(bits: BooleanBuffer, kept: usize) -> Keep {
        debug_assert_eq!(kept, bits.count_set_bits());
        Keep {
            bits,
            kept,
            arrow: OnceLock::new(),
        }
    }

    /// The kept rows of `array` (as long as the bitmap).
    pub(crate) fn filter(&self, array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
        #[cfg(target_arch = "x86_64")]
        if let Some(compacted) = x86::compact(array.as_ref(), &self.bits, self.kept) {
            return compacted;
        }
        self.arrow_filter(array)
    }

    fn arrow_filter(&self, array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
        let predicate = self.arrow.get_or_init(|| {
            FilterBuilder::new(&BooleanArray::new(self.bits.clone(), None))
                .optimize()
                .build()
        });
        predicate.filter(array)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m512i, _mm512_maskz_compress_epi64, _mm512_maskz_loadu_epi64, _mm512_storeu_si512,
        _pext_u64,
    };

    use arrow::array::{Array, ArrayData, ArrayRef, make_array};
    use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer};
    use arrow::error::ArrowError;

    /// `array`'s rows set in `keep`, if it holds 8-byte values and the CPU can compress.
    pub(super) fn compact(
        array: &dyn Array,
        keep: &BooleanBuffer,
        kept: usize,
    ) -> Option<Result<ArrayRef, ArrowError>> {
        let data = array.to_data();
        if data.data_type().primitive_width() != Some(8)
            || data.len() != keep.len()
            || !std::arch::is_x86_feature_detected!("avx512f")
            || !std::arch::is_x86_feature_detected!("bmi2")
        {
            return None;
        }
        let bytes = &data.buffers()[0].as_slice()[data.offset() * 8..][..data.len() * 8];
        // SAFETY: the CPU has AVX-512F (checked above); `bytes` holds `keep.len()` values.
        let values = unsafe { compress(bytes, keep, kept) };
        let nulls = data.nulls().filter(|n| n.null_count() > 0).map(|n| {
            // SAFETY: the CPU has BMI2 (checked above).
            let bits = unsafe { pext_bits(n.inner(), keep, kept) };
            NullBuffer::new(BooleanBuffer::new(bits, 0, kept))
        });
        let compacted = ArrayData::builder(data.data_type().clone())
            .len(kept)
            .add_buffer(values)
            .nulls(nulls)
            .build();
        Some(compacted.map(make_array))
    }

    /// The 8-byte values of `bytes` whose bit is set in `keep`, in order.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `bytes` must hold `keep.len()` values of 8 bytes.
    #[target_feature(enable = "avx512f")]
    unsafe fn compress(bytes: &[u8], keep: &BooleanBuffer, kept: usize) -> Buffer {
        let rows = keep.len();
        assert_eq!(bytes.len(), rows * 8);
        // Each step stores a whole 64-byte register: room for one more beyond the last value.
        let mut out: Vec<u64> = Vec::with_capacity(kept + 8);
        let mut written = 0;
        for (chunk, mut word) in keep.bit_chunks().iter_padded().enumerate() {
            for byte in 0..8 {
                let row = chunk * 64 + byte * 8;
                if row >= rows {
                    break;
                }
                let in_range = if rows - row >= 8 {
                    0xff
                } else {
                    (1u8 << (rows - row)) - 1
                };
                let mask = (word as u8) & in_range;
                word >>= 8;
                // SAFETY: the load takes only the `in_range` lanes, all within `bytes`; the
                // store writes 64 bytes at `written`, and `written + 8 <= kept + 8`, the
                // capacity, since `written` counts kept rows before this one.
                unsafe {
                    let lanes =
                        _mm512_maskz_loadu_epi64(in_range, bytes.as_ptr().add(row * 8).cast());
                    let packed = _mm512_maskz_compress_epi64(mask, lanes);
                    _mm512_storeu_si512(out.as_mut_ptr().add(written).cast::<__m512i>(), packed);
                }
                written += mask.count_ones() as usize;
            }
        }
        assert_eq!(written, kept);
        // SAFETY: the first `kept` values were written above.
        unsafe { out.set_len(kept) };
        Buffer::from_vec(out)
    }

    /// The bits of `bits` whose bit is set in `keep`, packed in order (`kept` of them).
    ///
    /// # Safety
    /// The CPU must have BMI2.
    #[target_feature(enable = "bmi2")]
    unsafe fn pext_bits(bits: &BooleanBuffer, keep: &BooleanBuffer, kept: usize) -> Buffer {
        let mut out = vec![0u64; kept.div_ceil(64) + 1];
        let mut at = 0;
        let words = bits.bit_chunks().iter_padded();
        for (chunk, (valid, word)) in words.zip(keep.bit_chunks().iter_padded()).enumerate() {
            let rows = (keep.len() - chunk * 64).min(64);
            let word = if rows == 64 {
                word
            } else {
                word & ((1 << rows) - 1)
            };
            let packed = _pext_u64(valid, word);
            let (index, shift) = (at / 64, at % 64);
            out[index] |= packed << shift;
            if shift > 0 {
                out[index + 1] |= packed >> (64 - shift);
            }
            at += word.count_ones() as usize;
        }
        assert_eq!(at, kept);
        out.truncate(kept.div_ceil(64));
        Buffer::from_vec(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
        TimestampMicrosecondArray,
    };
    use arrow::buffer::BooleanBuffer;
    use arrow::compute::filter;

    use super::Keep;

    /// xorshift64: deterministic.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        /// True with probability `p` in 1000.
        fn chance(&mut self, per_mille: u64) -> bool {
            self.next() % 1000 < per_mille
        }
    }

    /// Whatever the length, density, nulls, slicing and type, the kept rows are Arrow's.
    #[test]
    fn the_kept_rows_are_exactly_arrows_filter() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for rows in [0, 1, 7, 8, 9, 63, 64, 65, 127, 200, 1000, 65_536] {
            for per_mille in [0, 100, 500, 800, 990, 1000] {
                let keep = BooleanBuffer::collect_bool(rows, |_| rng.chance(per_mille));
                let predicate = BooleanArray::new(keep.clone(), None);
                let with_nulls = |rng: &mut Rng, nulls: bool| {
                    (0..rows + 3)
                        .map(|_| (!nulls || rng.chance(900)).then(|| rng.next() as i64))
                        .collect::<Vec<_>>()
                };
                let mut arrays: Vec<ArrayRef> = Vec::new();
                for nulls in [false, true] {
                    let values = with_nulls(&mut rng, nulls);
                    let ints = Int64Array::from(values.clone());
                    // Sliced: an offset into the buffers, values and validity alike.
                    arrays.push(Arc::new(ints.slice(3, rows)));
                    arrays.push(Arc::new(Int64Array::from(values[..rows].to_vec())));
                    let floats = values[..rows].iter().map(|v| v.map(|v| v as f64 / 7.0));
                    arrays.push(Arc::new(floats.collect::<Float64Array>()));
                    let times = TimestampMicrosecondArray::from(values[..rows].to_vec());
                    arrays.push(Arc::new(times.with_timezone("UTC")));
                    // Not 8-byte values: Arrow's kernel.
                    let small = values[..rows].iter().map(|v| v.map(|v| v as i32));
                    arrays.push(Arc::new(small.collect::<Int32Array>()));
                    let text = values[..rows].iter().map(|v| v.map(|v| v.to_string()));
                    arrays.push(Arc::new(text.collect::<StringArray>()));
                }
                // On a CPU that can, the 8-byte columns take the compressing path.
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("bmi2")
                {
                    let kept = keep.count_set_bits();
                    assert!(super::x86::compact(arrays[0].as_ref(), &keep, kept).is_some());
                    assert!(super::x86::compact(arrays[4].as_ref(), &keep, kept).is_none());
                }
                let ours = Keep::new(keep.clone(), keep.count_set_bits());
                for array in &arrays {
                    let expected = filter(array.as_ref(), &predicate).unwrap();
                    let got = ours.filter(array).unwrap();
                    got.to_data().validate_full().unwrap();
                    assert_eq!(
                        got.to_data(),
                        expected.to_data(),
                        "{rows} rows, {per_mille}‰ kept, {}",
                        array.data_type()
                    );
                }
            }
        }
    }

    /// A bitmap's bits past its length (a plugin may set them) keep nothing.
    #[test]
    fn bits_past_the_rows_are_ignored() {
        let all = arrow::buffer::Buffer::from_vec(vec![u64::MAX; 2]);
        for rows in [5, 64, 70] {
            let keep = BooleanBuffer::new(all.clone(), 0, rows);
            let array: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
            let got = Keep::new(keep, rows).filter(&array).unwrap();
            assert_eq!(got.to_data(), array.to_data());
        }
    }
}
