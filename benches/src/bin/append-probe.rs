//! Quick probe: raw append cost inside one prepared segment.
use std::time::Instant;
use tandem_archive::{FrameHeader, Log, LogConfig};
fn main() {
    let len: usize = std::env::args().nth(1).map_or(64, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_len_bytes: 1 << 30,
        max_frame_len_bytes: 1 << 20,
        prepare_next_segment: false,
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open(dir.path(), config, 0).unwrap();
    let payload = vec![1u8; len];
    let h = FrameHeader {
        frame_type: 1,
        term: 1,
        ..FrameHeader::default()
    };
    log.append(&h, &payload).unwrap();
    for round in 0..3 {
        let n = if len > 512 { 200_000u64 } else { 2_000_000u64 };
        let f0 = faults();
        let t = Instant::now();
        for i in 0..n {
            let mut c = log.claim(FrameHeader { sequence: i, ..h }, len).unwrap();
            c.payload_mut().copy_from_slice(&payload);
            c.commit().unwrap();
        }
        let e = t.elapsed();
        let f1 = faults();
        println!(
            "faults {} round {round}: {:.1} ns/frame, {:.2} M frames/s, {:.2} GB/s",
            f1 - f0,
            e.as_nanos() as f64 / n as f64,
            n as f64 / e.as_secs_f64() / 1e6,
            (n * (len as u64 + 48)) as f64 / e.as_secs_f64() / 1e9
        );
    }
}

fn faults() -> i64 {
    // SAFETY: zeroed rusage is valid to overwrite.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer for the call.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    u.ru_minflt + u.ru_majflt
}
