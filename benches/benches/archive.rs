//! Criterion suite for the archive's log: append, scan-and-validate, recovery
//! and durability latency.
//!
//! Run: `cargo bench -p tandem-benches --bench archive`. Figures and the floor
//! beside them are recorded in `docs/PERFORMANCE.md`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tandem_archive::{Durability, FrameHeader, Log, LogConfig, aligned_frame_len};

/// Keep the log below this many bytes: reset it (untimed) past it.
const MAX_LOG_BYTES: u64 = 512 * 1024 * 1024;
/// Segment length of the in-segment append bench.
const SEG_1G: u64 = 1 << 30;

fn open(dir: &Path, durability: Durability) -> Log {
    let config = LogConfig {
        durability,
        ..LogConfig::default()
    };
    Log::open(dir, config, 0).expect("open log").0
}

fn header(i: u64) -> FrameHeader {
    FrameHeader {
        frame_type: 1,
        flags: 0,
        term: 1,
        session_id: 7,
        sequence: i,
        timestamp: i as i64,
    }
}

/// The append path itself: claim, fill, commit (header and CRC included)
/// into a segment prepared beforehand. 1 GiB segments; the log is reset
/// (untimed) before a sample could cross into a new segment.
fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_append");
    group
        .measurement_time(Duration::from_secs(4))
        .sample_size(30);
    for payload_len in [64usize, 1024] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            segment_len_bytes: SEG_1G,
            max_frame_len_bytes: 1 << 20,
            prepare_next_segment: false,
            ..LogConfig::default()
        };
        let (mut log, _) = Log::open(dir.path(), config, 0).expect("open log");
        let payload = vec![0x5Au8; payload_len];
        let frame_len = aligned_frame_len(payload_len) as u64;
        let mut seq = 0u64;
        group.throughput(Throughput::Bytes(frame_len));
        group.bench_function(format!("{payload_len}B_fsync_none_in_segment"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let room = SEG_1G - (log.append_position() & (SEG_1G - 1));
                    let fit = room.saturating_sub(4096) / frame_len;
                    if fit < 1024 {
                        // Untimed: a fresh segment, created and pre-faulted now.
                        let next = (log.append_position() | (SEG_1G - 1)) + 1;
                        log.reset(next, 1).expect("reset");
                        log.append(&header(seq), &payload).expect("append");
                        continue;
                    }
                    let n = left.min(fit);
                    let start = Instant::now();
                    for _ in 0..n {
                        seq += 1;
                        let mut claim = log.claim(header(seq), payload_len).expect("claim");
                        claim.payload_mut().copy_from_slice(&payload);
                        black_box(claim.commit().expect("commit"));
                    }
                    total += start.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
    group.finish();
}

/// Sustained appends across segment rolls with the default 64 MiB segments
/// prepared in the background: bounded by how fast the kernel hands out and
/// zeroes fresh page-cache pages for the next segment.
fn bench_append_sustained(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_append_sustained");
    group
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    for payload_len in [64usize, 1024] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open(dir.path(), Durability::None);
        let payload = vec![0x5Au8; payload_len];
        let mut seq = 0u64;
        group.throughput(Throughput::Bytes(aligned_frame_len(payload_len) as u64));
        group.bench_function(format!("{payload_len}B_fsync_none_64MiB_segments"), |b| {
            b.iter_custom(|iters| {
                if log.append_position() > MAX_LOG_BYTES {
                    let next = log.append_position();
                    log.reset(next, 1).expect("reset");
                    log.append(&header(seq), &payload).expect("append");
                }
                let start = Instant::now();
                for _ in 0..iters {
                    seq += 1;
                    black_box(log.append(&header(seq), &payload).expect("append"));
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

fn filled_log(dir: &Path, payload_len: usize, bytes: u64) -> Log {
    let mut log = open(dir, Durability::None);
    let payload = vec![0xA5u8; payload_len];
    let mut i = 0;
    while log.append_position() + (aligned_frame_len(payload_len) as u64) < bytes {
        log.append(&header(i), &payload).expect("append");
        i += 1;
    }
    log
}

fn bench_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_scan_validate");
    group
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    for payload_len in [64usize, 1024] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = filled_log(dir.path(), payload_len, 60 * 1024 * 1024);
        let end = log.append_position();
        group.throughput(Throughput::Bytes(end));
        group.bench_function(format!("{payload_len}B_frames"), |b| {
            b.iter(|| black_box(log.verify(0, end).expect("verify")))
        });
        // Zero-copy iteration without checksums (the service container's read path).
        group.bench_function(format!("{payload_len}B_frames_iterate"), |b| {
            b.iter(|| {
                let mut sum = 0u64;
                for f in log.frames(0, end).expect("frames") {
                    sum = sum.wrapping_add(f.payload.len() as u64);
                }
                black_box(sum)
            })
        });
    }
    group.finish();
}

fn bench_recovery(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_recovery");
    group
        .measurement_time(Duration::from_secs(6))
        .sample_size(10);
    let dir = tempfile::tempdir().expect("tempdir");
    let end = {
        let log = filled_log(dir.path(), 1024, 64 * 1024 * 1024 - 4096);
        log.append_position()
    };
    group.throughput(Throughput::Bytes(end));
    group.bench_function("full_64MiB_segment_1KiB_frames", |b| {
        b.iter(|| {
            let config = LogConfig {
                prepare_next_segment: false,
                ..LogConfig::default()
            };
            let (log, report) = Log::open(dir.path(), config, end).expect("open");
            assert_eq!(report.append_position, end);
            black_box(log)
        })
    });
    group.finish();
}

fn bench_durability(c: &mut Criterion) {
    let mut group = c.benchmark_group("log_durable_append");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    for (name, durability) in [
        ("64B_fsync_batch_sync_each", Durability::Batch),
        ("64B_fsync_every", Durability::Every),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open(dir.path(), durability);
        let payload = [1u8; 64];
        let mut seq = 0;
        group.bench_function(name, |b| {
            b.iter_batched(
                || (),
                |()| {
                    seq += 1;
                    log.append(&header(seq), &payload).expect("append");
                    black_box(log.sync().expect("sync"))
                },
                BatchSize::PerIteration,
            )
        });
    }
    // A batch of 64 frames made durable with one sync.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), Durability::Batch);
    let payload = [1u8; 64];
    let mut seq = 0;
    group.throughput(Throughput::Elements(64));
    group.bench_function("64x64B_fsync_batch", |b| {
        b.iter(|| {
            for _ in 0..64 {
                seq += 1;
                log.append(&header(seq), &payload).expect("append");
            }
            black_box(log.sync().expect("sync"))
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_append,
    bench_append_sustained,
    bench_scan,
    bench_recovery,
    bench_durability
);
criterion_main!(benches);
