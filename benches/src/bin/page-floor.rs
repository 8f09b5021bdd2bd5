//! The floor under a log's sustained write rate: what a fresh page costs this machine.
//!
//! `cargo run --release -p tandem-benches --bin page-floor -- [MIB] [DIR]`
//!
//! Every log byte lands in a page-cache page the segment preparer faulted in beforehand
//! (`MADV_POPULATE_WRITE`, see `tandem_archive`'s segment module). A page the kernel has not
//! handed out lately can cost far more than zeroing 4 KiB: on a virtual machine whose host
//! backs guest memory lazily (or takes freed memory back), the first write to it is a fault
//! in the host too. This prints, in µs per 4 KiB page and MB/s:
//!
//! * `anon first touch`: writing one byte in each page of a fresh anonymous mapping of `MIB`;
//! * `anon again`: the same after unmapping and mapping again at once (pages the kernel just
//!   got back);
//! * `segment prefault`: what the preparer does for a segment of `MIB` in `DIR` (default: the
//!   temporary directory): create, `posix_fallocate`, map, `MADV_POPULATE_WRITE` in one call.
//!
//! A log of `B` bytes per message at `R` messages/s per member needs `B × R` bytes of fresh
//! pages per second and member, at the `segment prefault` rate.

use std::os::fd::AsRawFd;
use std::time::Instant;

const PAGE: usize = 4096;

fn report(what: &str, bytes: usize, secs: f64) {
    let pages = (bytes / PAGE) as f64;
    println!(
        "{what:<18} {:>8.2} us/page {:>9.0} MB/s  ({} MiB in {:.3} s)",
        secs * 1e6 / pages,
        bytes as f64 / secs / 1e6,
        bytes >> 20,
        secs
    );
}

/// Maps `len` bytes of anonymous memory, writes a byte in each page, unmaps; returns seconds.
fn touch_anonymous(len: usize) -> f64 {
    // SAFETY: a private anonymous mapping with no address hint; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap of {len} bytes");
    let base = p.cast::<u8>();
    let started = Instant::now();
    for offset in (0..len).step_by(PAGE) {
        // SAFETY: `offset < len`, inside the writable mapping made above.
        unsafe { base.add(offset).write_volatile(1) };
    }
    let secs = started.elapsed().as_secs_f64();
    // SAFETY: unmaps exactly the mapping made above; nothing refers to it any more.
    unsafe { libc::munmap(p, len) };
    secs
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib = match args.next().map(|a| a.parse::<usize>()) {
        None => 1024,
        Some(Ok(mib)) if (1..=1 << 20).contains(&mib) => mib,
        Some(_) => {
            eprintln!("usage: page-floor [MIB: 1 to 1048576] [DIR]");
            std::process::exit(2);
        }
    };
    let dir = args
        .next()
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let len = mib << 20;
    println!("page-floor: {mib} MiB, segment file in {}", dir.display());
    report("anon first touch", len, touch_anonymous(len));
    report("anon again", len, touch_anonymous(len));

    let file = tempfile::tempfile_in(&dir).expect("a file in DIR");
    let started = Instant::now();
    // SAFETY: posix_fallocate reads only its integer arguments and the open file's fd.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    assert_eq!(rc, 0, "posix_fallocate of {len} bytes");
    // SAFETY: the file is ours, open read-write, `len` bytes long, and only this mapping
    // touches it while it lives.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file) }.expect("mmap");
    map.advise(memmap2::Advice::PopulateWrite)
        .expect("MADV_POPULATE_WRITE (Linux 5.14 or later)");
    report("segment prefault", len, started.elapsed().as_secs_f64());
}
