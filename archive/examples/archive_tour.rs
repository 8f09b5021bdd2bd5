//! A tour of the archive: append a few hundred thousand frames across segment
//! boundaries, snapshot, purge, "crash" with a torn tail, and recover.
//!
//! `cargo run --release -p tandem-archive --example archive_tour`

use std::io::Write;
use std::time::Instant;

use tandem_archive::{
    Archive, ArchiveConfig, CONSENSUS_MODULE_SERVICE_ID, Durability, FrameHeader, LogConfig, Result,
};

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("tandem-archive-tour-{}", std::process::id()));
    let config = ArchiveConfig {
        log: LogConfig {
            segment_len_bytes: 1 << 20,
            max_frame_len_bytes: 64 * 1024,
            durability: Durability::Batch,
            ..LogConfig::default()
        },
        ..ArchiveConfig::default()
    };
    println!("archive directory: {}", dir.display());

    let (mut archive, recovery) = Archive::open(&dir, 42, 0, config.clone())?;
    println!(
        "fresh directory: {} (a new member joins as a learner)",
        recovery.node_state_created
    );

    // Append 300k frames of 64 bytes in batches of 64, each batch made durable with one sync.
    let payload = [7u8; 64];
    let started = Instant::now();
    let mut seq = 0u64;
    for batch in 0..300_000 / 64 {
        for _ in 0..64 {
            seq += 1;
            let header = FrameHeader {
                frame_type: 1,
                term: 1 + batch / 2000,
                session_id: 9,
                sequence: seq,
                timestamp: seq as i64,
                ..FrameHeader::default()
            };
            let mut claim = archive.log_mut().claim(header, payload.len())?;
            claim.payload_mut().copy_from_slice(&payload);
            claim.commit()?;
        }
        archive.log_mut().sync()?;
        // Three snapshots along the way (the service's and the consensus module's).
        if batch % 1500 == 1000 {
            let position = archive.log().append_position();
            let term = archive.log().last_term();
            for service_id in [0, CONSENSUS_MODULE_SERVICE_ID] {
                let mut w = archive
                    .snapshots()
                    .writer(term, position, service_id, seq as i64)?;
                w.write_all(format!("state of service {service_id} at {position}").as_bytes())
                    .map_err(|e| {
                        tandem_archive::ArchiveError::io("write snapshot", archive.dir(), e)
                    })?;
                w.finish()?;
                archive
                    .recording_log_mut()
                    .append_snapshot(term, position, seq as i64, service_id)?;
            }
            println!("snapshot set at position {position} (term {term})");
        }
    }
    let elapsed = started.elapsed();
    println!(
        "appended {seq} frames in {:?} ({:.1} M frames/s with a sync every 64), append position {}, {} segments",
        elapsed,
        seq as f64 / elapsed.as_secs_f64() / 1e6,
        archive.log().append_position(),
        archive.log().segment_count()
    );

    let purge = archive.purge_segments(u64::MAX)?;
    println!(
        "purge: {} segments and {} snapshot files removed ({} bytes); log now starts at {}",
        purge.segments_removed, purge.snapshots_removed, purge.bytes_removed, purge.start_position
    );
    let plan = archive.recovery_plan()?;
    println!(
        "recovery plan: snapshot at {:?}, replay {}..{}",
        plan.snapshot.as_ref().map(|s| s.position),
        plan.replay_from_position,
        plan.replay_to_position
    );
    let end = archive.log().append_position();
    archive
        .node_state_mut()
        .update(|s| s.commit_position_lower_bound = end - 4096)?;
    drop(archive);

    // Tear the tail: scribble over the last 100 bytes of the log.
    let last_segment = dir
        .join("log")
        .join(format!("{:020}.seg", (end - 100) & !((1 << 20) - 1)));
    let mut bytes = std::fs::read(&last_segment).expect("read segment");
    let tail = ((end - 100) % (1 << 20)) as usize;
    bytes[tail..tail + 100].fill(0xFF);
    std::fs::write(&last_segment, &bytes).expect("write segment");

    let (archive, recovery) = Archive::open(&dir, 42, 0, config)?;
    println!(
        "after a torn write: recovered append position {} (was {end}), {} garbage bytes zeroed: {}",
        recovery.log.append_position,
        recovery.log.truncated_bytes,
        recovery.log.stop_reason.as_deref().unwrap_or("clean")
    );
    drop(archive);
    std::fs::remove_dir_all(&dir).expect("clean up");
    Ok(())
}
