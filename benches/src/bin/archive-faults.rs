//! Counts the page faults the append path takes in steady state, across
//! segment rolls, with `getrusage(RUSAGE_THREAD)` on the appending thread.
//!
//! `cargo run --release -p tandem-benches --bin archive-faults -- [PAYLOAD_BYTES] [SEGMENTS]`
//!
//! The first segment is created on the appending thread at the first append
//! (start-up, not counted); every later segment is created, reserved and
//! pre-faulted by the log's background thread, so the steady-state count
//! should be zero.

use std::time::Instant;

use tandem_archive::{FrameHeader, Log, LogConfig, aligned_frame_len};

fn thread_faults() -> (i64, i64) {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the duration of the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    (usage.ru_minflt, usage.ru_majflt)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let payload_len: usize = args
        .next()
        .map_or(64, |a| a.parse().expect("payload bytes"));
    let segments: u64 = args.next().map_or(4, |a| a.parse().expect("segments"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig::default();
    let segment_len = config.segment_len_bytes;
    let (mut log, _) = Log::open(dir.path(), config, 0).expect("open log");
    let payload = vec![0x42u8; payload_len];
    let header = FrameHeader {
        frame_type: 1,
        term: 1,
        ..FrameHeader::default()
    };

    // Start-up: the first append creates the first segment on this thread.
    log.append(&header, &payload).expect("append");
    // Give the background thread time to prepare the next segment.
    std::thread::sleep(std::time::Duration::from_millis(300));

    let target = segment_len * segments;
    let frames_per_segment = segment_len / aligned_frame_len(payload_len) as u64;
    let (min0, maj0) = thread_faults();
    let started = Instant::now();
    let mut frames = 0u64;
    let mut waits = 0u64;
    // Faults taken while pausing (not on the append path) are left out of the count.
    let (mut pause_min, mut pause_maj) = (0i64, 0i64);
    while log.append_position() < target {
        let before = log.segment_count();
        let mut claim = log.claim(header, payload_len).expect("claim");
        claim.payload_mut().copy_from_slice(&payload);
        claim.commit().expect("commit");
        frames += 1;
        if log.segment_count() != before {
            waits += 1;
            // Pace segment rolls so the background preparation (which competes
            // for the cores) is done before the next roll: the figure measured is
            // faults on the append path, not preparation speed.
            let (min, maj) = thread_faults();
            std::thread::sleep(std::time::Duration::from_millis(300));
            let (min2, maj2) = thread_faults();
            pause_min += min2 - min;
            pause_maj += maj2 - maj;
        }
    }
    let elapsed = started.elapsed();
    let (min1, maj1) = thread_faults();
    println!(
        "{{\"payload_bytes\":{payload_len},\"frames\":{frames},\"frames_per_segment\":{frames_per_segment},\"segment_rolls\":{waits},\"minor_faults\":{},\"major_faults\":{},\"wall_ms_including_pauses\":{}}}",
        min1 - min0 - pause_min,
        maj1 - maj0 - pause_maj,
        elapsed.as_millis()
    );
}
