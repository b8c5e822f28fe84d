//! How the binary's allocator (mimalloc, set in `main.rs`) keeps and returns freed memory.
//!
//! A training step frees and reallocates activations of tens of megabytes. mimalloc gives
//! freed memory back to the system after its purge delay, and the next step's activations come
//! back page by page (the kernel zeroes every page again: 6.5 % of a PreAct-ResNet18 step's
//! cycles, 41 000 page faults in a five-batch bench, measured with `perf`). The purge is not
//! per block: when the delay first scheduled runs out, every free block is purged, however
//! recently it was freed. So the delay is long ([`PURGE_DELAY_MS`]: at most one purge per
//! ten minutes of training), and the window's workers give the memory back as soon as a job
//! ends ([`give_back_freed_memory`]).

/// How long mimalloc may keep freed memory before giving it back: a purge costs the next
/// step one page fault per page, so it should come rarely during training (870 page faults in
/// the same bench, against 41 000 with mimalloc's default second and 19 000 with ten seconds).
pub const PURGE_DELAY_MS: std::ffi::c_long = 600_000;

/// `mi_option_purge_delay` in mimalloc 3's option enum (the Rust bindings leave it unnamed).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc 3's default purge delay, which tells that index 15 is the option we mean.
const MIMALLOC_DEFAULT_PURGE_DELAY_MS: std::ffi::c_long = 1000;

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`], only where the option still holds
/// mimalloc 3's default: a `MIMALLOC_PURGE_DELAY` from the environment wins, and another
/// enum layout is left alone. Call it first thing in `main`, before any thread starts
/// (`mi_option_set` is not thread safe).
pub fn keep_freed_memory_between_steps() {
    // SAFETY: plain reads and writes of mimalloc's option table; the caller runs it before any
    // other thread exists.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == MIMALLOC_DEFAULT_PURGE_DELAY_MS
        {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
}

/// Gives the memory freed so far back to the system now (mimalloc's forced collection), for a
/// thread whose job has ended: a window idle after training does not keep its activations for
/// the purge delay. Harmless where mimalloc is not the allocator (it holds nothing then).
pub fn give_back_freed_memory() {
    // SAFETY: mi_collect may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
