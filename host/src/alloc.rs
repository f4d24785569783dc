//! The `host` binary's allocator: glibc's malloc for small blocks, and for batch-sized ones
//! (≥ 256 KiB) whole mappings kept in a small, capped cache of freed blocks.
//!
//! Why: a run allocates the same few batch-sized buffers for every batch (CSV columns, the
//! plugins' IPC buffers, Parquet pages). Left to glibc, either they live on the heap, where
//! they fragment and the process grows with its input (315 MiB for 600 MB of CSV), or, with
//! a fixed mmap threshold, each one is a fresh mapping that faults in every page and is
//! unmapped again (0.77 M page faults and ~4 s of kernel time per 10 M-row run). Here a
//! freed block waits in the cache for the next batch's buffer of its size class, and the
//! cache never holds more than [`CACHE_BYTES`], so memory stays bounded by design.
//!
//! Size classes are four per power of two (a block is at most 25% larger than asked for;
//! pages of it that are never touched never become resident). Growing a block that no
//! cached block fits moves its pages with `mremap` instead of copying them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::Mutex;

/// Blocks from this size on are mappings of their own (glibc's default mmap threshold is
/// 128 KiB; smaller buffers are not per-batch).
const LARGE: usize = 256 << 10;
/// Smallest class exponent: class sizes lie in (2^e, 2^(e+1)], so 256 KiB is in e = 17.
const MIN_EXP: u32 = LARGE.trailing_zeros() - 1;
/// Cached classes end at 256 MiB; larger blocks are mapped and unmapped every time.
const MAX_EXP: u32 = 27;
const STEPS: usize = 4;
const CLASSES: usize = (MAX_EXP - MIN_EXP + 1) as usize * STEPS;
/// Freed blocks kept per class.
const SLOTS: usize = 8;
/// Bytes of freed blocks kept in all classes together.
const CACHE_BYTES: usize = 64 << 20;
const PAGE: usize = 4096;

pub struct BatchAllocator {
    cache: Mutex<Cache>,
}

struct Cache {
    free: [[usize; SLOTS]; CLASSES],
    len: [u8; CLASSES],
    bytes: usize,
}

impl BatchAllocator {
    pub const fn new() -> BatchAllocator {
        BatchAllocator {
            cache: Mutex::new(Cache {
                free: [[0; SLOTS]; CLASSES],
                len: [0; CLASSES],
                bytes: 0,
            }),
        }
    }

    /// Bytes held by freed blocks waiting for reuse.
    #[cfg(test)]
    fn cached_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // Nothing panics while the lock is held, but never let poisoning fail an allocation.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, class: Class) -> Option<*mut u8> {
        let mut cache = self.lock();
        let len = &mut cache.len[class.index];
        if *len == 0 {
            return None;
        }
        *len -= 1;
        let at = *len as usize;
        cache.bytes -= class.bytes;
        Some(cache.free[class.index][at] as *mut u8)
    }

    /// Keep `block` for reuse if the cache has room; otherwise it is unmapped.
    fn give(&self, block: *mut u8, class: Class) {
        {
            let mut cache = self.lock();
            let len = cache.len[class.index] as usize;
            if len < SLOTS && cache.bytes + class.bytes <= CACHE_BYTES {
                cache.free[class.index][len] = block as usize;
                cache.len[class.index] += 1;
                cache.bytes += class.bytes;
                return;
            }
        }
        // SAFETY: `block` is a mapping of `class.bytes` made by `map`, no longer in use.
        unsafe { unmap(block, class.bytes) };
    }

    /// A block of `class`, and whether it is fresh (so already zeroed).
    unsafe fn obtain(&self, class: Class) -> (*mut u8, bool) {
        match cached(class).then(|| self.take(class)).flatten() {
            Some(block) => (block, false),
            // SAFETY: mapping fresh memory has no preconditions.
            None => (unsafe { map(class.bytes) }, true),
        }
    }

    /// # Safety
    /// `block` came from `obtain(class)` and is no longer in use.
    unsafe fn release(&self, block: *mut u8, class: Class) {
        match cached(class) {
            true => self.give(block, class),
            // SAFETY: per the function's contract.
            false => unsafe { unmap(block, class.bytes) },
        }
    }
}

impl Default for BatchAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// A block's size class: its index in the cache (none above [`MAX_EXP`]) and mapped size.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Class {
    index: usize,
    bytes: usize,
}

/// Where a block of `layout` lives: `None` for glibc's heap.
fn route(layout: &Layout) -> Option<Class> {
    if layout.size() < LARGE || layout.align() > PAGE {
        return None;
    }
    Some(class_of(layout.size()))
}

fn class_of(size: usize) -> Class {
    let exp = usize::BITS - 1 - (size - 1).leading_zeros(); // 2^exp < size <= 2^(exp+1)
    if exp > MAX_EXP {
        return Class {
            index: CLASSES,
            bytes: size.next_multiple_of(PAGE),
        };
    }
    let step = 1usize << (exp - 2);
    let k = (size - 1 - (1 << exp)) / step; // 0..STEPS
    Class {
        index: (exp - MIN_EXP) as usize * STEPS + k,
        bytes: (1 << exp) + (k + 1) * step,
    }
}

fn cached(class: Class) -> bool {
    class.index < CLASSES
}

unsafe fn map(bytes: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping; the kernel picks the address.
    let block = unsafe {
        libc::mmap(
            ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    match block {
        libc::MAP_FAILED => ptr::null_mut(),
        block => block.cast(),
    }
}

/// # Safety
/// `block` is a mapping of exactly `bytes`, no longer in use.
unsafe fn unmap(block: *mut u8, bytes: usize) {
    // SAFETY: per the function's contract.
    unsafe { libc::munmap(block.cast(), bytes) };
}

// SAFETY: large blocks are page-aligned mappings at least as big as asked (their class
// size); everything else is glibc's. `route` sends a block's dealloc and realloc where its
// alloc went, since both see the same layout.
unsafe impl GlobalAlloc for BatchAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match route(&layout) {
            // SAFETY: per GlobalAlloc's contract, passed on.
            None => unsafe { System.alloc(layout) },
            Some(class) => unsafe { self.obtain(class) }.0,
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match route(&layout) {
            // SAFETY: per GlobalAlloc's contract, passed on.
            None => unsafe { System.alloc_zeroed(layout) },
            Some(class) => {
                let (block, fresh) = unsafe { self.obtain(class) };
                if !fresh {
                    // SAFETY: the block holds at least `layout.size()` bytes.
                    unsafe { ptr::write_bytes(block, 0, layout.size()) };
                }
                block
            }
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match route(&layout) {
            // SAFETY: per GlobalAlloc's contract, passed on.
            None => unsafe { System.dealloc(block, layout) },
            Some(class) => unsafe { self.release(block, class) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY (all below): per GlobalAlloc's contract; the new layout is valid by it.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let (old, new) = (route(&layout), route(&new_layout));
        match (old, new) {
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            (Some(old), Some(new)) if old == new => block,
            (Some(old), Some(new)) if !cached(new) || self.lock().len[new.index] == 0 => {
                // No cached block to copy into: move the pages instead.
                let moved = unsafe {
                    libc::mremap(block.cast(), old.bytes, new.bytes, libc::MREMAP_MAYMOVE)
                };
                match moved {
                    libc::MAP_FAILED => ptr::null_mut(),
                    moved => moved.cast(),
                }
            }
            _ => {
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    let keep = layout.size().min(new_size);
                    unsafe { ptr::copy_nonoverlapping(block, moved, keep) };
                    unsafe { self.dealloc(block, layout) };
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 64).unwrap()
    }

    #[test]
    fn classes_are_four_per_power_of_two_and_hold_their_sizes() {
        assert_eq!(class_of(LARGE).bytes, LARGE);
        assert_eq!(class_of(LARGE + 1).bytes, LARGE + LARGE / 4);
        assert_eq!(class_of(LARGE + 1).index, class_of(LARGE).index + 1);
        let mut last = class_of(LARGE);
        for size in (LARGE..(1 << (MAX_EXP + 1))).step_by(40_961) {
            let class = class_of(size);
            assert!(
                class.bytes >= size && class.bytes <= size + size / 4,
                "{size}"
            );
            assert!(class.bytes.is_multiple_of(PAGE));
            assert!(class.index >= last.index && class.index < CLASSES);
            last = class;
        }
        assert!(!cached(class_of((1 << (MAX_EXP + 1)) + 1)));
    }

    #[test]
    fn a_freed_block_is_reused_for_the_next_of_its_class_and_zeroed_when_asked() {
        let heap = BatchAllocator::new();
        unsafe {
            let first = heap.alloc(layout(1 << 20));
            first.write_bytes(7, 1 << 20);
            heap.dealloc(first, layout(1 << 20));
            assert_eq!(heap.cached_bytes(), 1 << 20);
            let again = heap.alloc_zeroed(layout((1 << 20) - 100));
            assert_eq!(again, first, "same class, same block");
            assert!((0..(1 << 20) - 100).all(|i| *again.add(i) == 0));
            assert_eq!(heap.cached_bytes(), 0);
            heap.dealloc(again, layout((1 << 20) - 100));
        }
    }

    #[test]
    fn the_cache_never_holds_more_than_its_cap() {
        let heap = BatchAllocator::new();
        let size = 16 << 20;
        let blocks: Vec<*mut u8> = (0..8)
            .map(|_| unsafe { heap.alloc(layout(size)) })
            .collect();
        for block in blocks {
            unsafe { heap.dealloc(block, layout(size)) };
            assert!(heap.cached_bytes() <= CACHE_BYTES);
        }
        assert_eq!(heap.cached_bytes(), CACHE_BYTES);
    }

    #[test]
    fn realloc_keeps_the_contents_across_heap_classes_and_mappings() {
        let heap = BatchAllocator::new();
        unsafe {
            let mut size = 1000;
            let mut block = heap.alloc(layout(size));
            for i in 0..size {
                *block.add(i) = (i % 251) as u8;
            }
            // Up through the heap, large classes (moved pages), then a cached block.
            let spare = heap.alloc(layout(3 << 20));
            heap.dealloc(spare, layout(3 << 20));
            for next in [200_000, 300_000, 1 << 20, 3 << 20, 600 << 20, 100_000, 10] {
                block = heap.realloc(block, layout(size), next);
                assert!(!block.is_null());
                let kept = size.min(next).min(1000);
                assert!(
                    (0..kept).all(|i| *block.add(i) == (i % 251) as u8),
                    "{next}"
                );
                size = next;
            }
            heap.dealloc(block, layout(size));
        }
    }

    #[test]
    fn small_and_overaligned_blocks_stay_on_the_heap() {
        assert_eq!(route(&layout(LARGE - 1)), None);
        let aligned = Layout::from_size_align(1 << 20, 2 * PAGE).unwrap();
        assert_eq!(route(&aligned), None);
        assert!(route(&layout(LARGE)).is_some());
    }
}
