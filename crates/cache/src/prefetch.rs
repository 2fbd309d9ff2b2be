//! Asking the CPU to start loading a hit's bytes before they are read.
//!
//! With many objects in memory (tens of MiB), a hit's header values and
//! body are rarely in the CPU caches. The handler reads the headers
//! first, then the kernel copies the body into the socket, each a chain of
//! cache misses taken one after another. A prefetch issued at lookup puts
//! them in flight together while the response head is built: 5% more
//! HTTP/1.1 hits over 10,000 objects of 4 KiB, the same on one hot object
//! (README › Benchmarks).

/// How much of a body is prefetched. The CPU keeps only so many loads in
/// flight; past that a prefetch waits, and the wait moves from the copy to
/// the lookup. 1 KiB did better than 2 and 8 KiB; the kernel's copy
/// streams the rest.
pub(crate) const BODY_PREFETCH_BYTES: usize = 1024;

const CACHE_LINE: usize = 64;

/// Starts loading the memory of `items` (at most `limit` bytes of it)
/// into the CPU caches. A hint only: never faults, changes nothing, does
/// nothing elsewhere than on x86_64.
pub(crate) fn prefetch<T>(items: &[T], limit: usize) {
    let len = std::mem::size_of_val(items).min(limit);
    let start = items.as_ptr().cast::<u8>();
    for offset in (0..len).step_by(CACHE_LINE) {
        prefetch_line(start.wrapping_add(offset));
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn prefetch_line(address: *const u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: a prefetch reads nothing architecturally and cannot fault;
    // SSE is part of the x86_64 baseline.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast()) }
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch_line(_address: *const u8) {}
