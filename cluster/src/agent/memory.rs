//! Keeping busy threads off the process's mmap lock: [`retain_heap`].
//!
//! Every thread of a process shares one memory map, guarded by one lock (`mmap_lock`). A page
//! fault takes it for reading; `brk`, `mmap`, `munmap` and `mprotect` take it for writing. A
//! thread that pre-faults a new log segment (the archive's preparer) holds it for reading
//! while it allocates and zeroes pages, and may be preempted while it holds it. A busy agent
//! thread that then needs the lock for writing waits, however high its own priority.
//!
//! glibc's allocator makes such calls from inside `malloc`, `realloc` and `free`: it grows
//! the main heap with `brk` (other threads' heaps with `mprotect`), gives memory back with
//! `brk` or `madvise`/`mmap` once more than `M_TRIM_THRESHOLD` (128 KiB) lies free at a heap's
//! top, and serves blocks above `M_MMAP_THRESHOLD` (128 KiB, raised on the fly up to 32 MiB)
//! with `mmap`/`munmap` of their own. A message buffer that grows to 64 KiB and is trimmed back
//! is enough: `perf record -e sched:sched_switch` on `cluster-bench` (issue #7) showed the
//! consensus thread 20–90 ms in `brk` behind three segment preparers at each segment roll.
//!
//! [`retain_heap`] sets the allocator so that, once a process has warmed up, freeing never
//! gives memory back and ordinary blocks never get mappings of their own: the heap reaches
//! its high-water mark and stays mapped and resident, and the hot path makes no such call.
//! The cost is that memory freed after a peak is kept by the process (it can be reused by
//! any later allocation). Call it at the start of `main` in a process that runs agents on
//! busy threads; it changes process-wide settings, so the library never calls it by itself.

/// Blocks up to this size come from the heap rather than a mapping of their own (glibc's
/// largest accepted `M_MMAP_THRESHOLD` on 64-bit targets; setting it also stops the dynamic
/// adjustment of the threshold).
pub const RETAIN_HEAP_MMAP_THRESHOLD_BYTES: usize = 32 << 20;

/// The heap grows by at least this much beyond what an allocation needs, so that it grows
/// rarely (pages cost nothing until they are touched).
pub const RETAIN_HEAP_TOP_PAD_BYTES: usize = 16 << 20;

/// Sets the C allocator to keep what it has mapped (see the module docs). Returns whether
/// the settings were applied: `false` where the allocator is not glibc's or refused one of
/// them. Idempotent; call it before the busy threads start.
#[must_use = "false means the allocator may still call brk/munmap on a busy thread"]
pub fn retain_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let settings = [
            // Never give free memory at a heap's top back to the system.
            (libc::M_TRIM_THRESHOLD, libc::c_int::MAX),
            (
                libc::M_MMAP_THRESHOLD,
                RETAIN_HEAP_MMAP_THRESHOLD_BYTES as libc::c_int,
            ),
            (libc::M_TOP_PAD, RETAIN_HEAP_TOP_PAD_BYTES as libc::c_int),
        ];
        settings.iter().all(|&(param, value)| {
            // SAFETY: mallopt only stores the integer setting; it has no pointer arguments.
            unsafe { libc::mallopt(param, value) == 1 }
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
