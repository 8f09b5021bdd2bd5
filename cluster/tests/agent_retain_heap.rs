//! `agent::retain_heap`: after it, a block far above glibc's default mmap threshold comes
//! from the heap (no mapping of its own, so no `mmap`/`munmap` on the thread that allocates
//! and frees it) and freeing it gives nothing back (no `brk`/trim). One test per process:
//! the allocator's settings and statistics are process-wide.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn retained_heap_serves_big_blocks_from_the_heap_and_keeps_freed_memory() {
    use tandem_cluster::agent::{RETAIN_HEAP_MMAP_THRESHOLD_BYTES, retain_heap};

    let stats = || {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        unsafe { libc::mallinfo2() }
    };
    assert!(retain_heap(), "glibc accepts the settings");
    assert!(retain_heap(), "idempotent");
    let len = 8 << 20;
    assert!(len < RETAIN_HEAP_MMAP_THRESHOLD_BYTES && len > 128 << 10);

    let before = stats();
    let block = std::hint::black_box(vec![1u8; len]);
    let during = stats();
    assert_eq!(
        during.hblks, before.hblks,
        "an 8 MiB block got a mapping of its own"
    );
    assert!(
        during.arena >= before.arena,
        "the heap did not shrink while growing"
    );
    assert!(
        during.uordblks >= before.uordblks + len,
        "served by the heap"
    );
    drop(block);
    let after = stats();
    assert_eq!(after.hblks, during.hblks);
    assert_eq!(
        after.arena, during.arena,
        "freeing gave heap memory back to the system"
    );
}
