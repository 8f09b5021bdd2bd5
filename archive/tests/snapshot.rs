//! The snapshot store: streaming round trips, torn and corrupted files,
//! chunked transfer, unfinished writers.

use std::io::{Read, Write};
use std::path::Path;

use tandem_archive::{
    ArchiveError, CONSENSUS_MODULE_SERVICE_ID, SNAPSHOT_HEADER_LEN_BYTES,
    SNAPSHOT_TRAILER_LEN_BYTES, SNAPSHOTS_DIR_NAME, SnapshotStore,
};

const CM: i32 = CONSENSUS_MODULE_SERVICE_ID;

/// Deterministic pseudo-random bytes.
fn body(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes `data` in odd-sized pieces (1, 7, 4093, 65537, ... bytes).
fn write_snapshot(store: &SnapshotStore, term: u64, position: u64, service_id: i32, data: &[u8]) {
    let mut w = store.writer(term, position, service_id, 1234).unwrap();
    let sizes = [1usize, 7, 4093, 65537, 13, 300_001];
    let mut at = 0;
    let mut i = 0;
    while at < data.len() {
        let n = sizes[i % sizes.len()].min(data.len() - at);
        w.write_all(&data[at..at + n]).unwrap();
        at += n;
        i += 1;
    }
    assert_eq!(w.body_len_bytes(), data.len() as u64);
    let meta = w.finish().unwrap();
    assert_eq!(
        (meta.term, meta.position, meta.service_id),
        (term, position, service_id)
    );
    assert_eq!(meta.body_len_bytes(), data.len() as u64);
    assert_eq!(
        meta.file_len_bytes,
        data.len() as u64 + SNAPSHOT_HEADER_LEN_BYTES + SNAPSHOT_TRAILER_LEN_BYTES
    );
}

fn read_snapshot(store: &SnapshotStore, position: u64, service_id: i32) -> Vec<u8> {
    let mut r = store.reader(position, service_id).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 9999];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(r.body_len_bytes(), out.len() as u64);
    assert_eq!(r.timestamp(), 1234);
    out
}

fn visible_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(SNAPSHOTS_DIR_NAME))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn large_and_empty_snapshots_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let large = body(5 * 1024 * 1024 + 123, 42);
    write_snapshot(&store, 3, 65536, 0, &large);
    write_snapshot(&store, 3, 65536, CM, &[]);
    assert_eq!(read_snapshot(&store, 65536, 0), large);
    assert!(read_snapshot(&store, 65536, CM).is_empty());

    let list = store.list().unwrap();
    assert_eq!(
        list.iter()
            .map(|m| (m.position, m.term, m.service_id))
            .collect::<Vec<_>>(),
        vec![(65536, 3, CM), (65536, 3, 0)]
    );
    assert_eq!(
        store.disk_usage_bytes().unwrap(),
        list.iter().map(|m| m.file_len_bytes).sum::<u64>()
    );
    assert_eq!(store.verify(65536, 0).unwrap().path, list[1].path);

    // A reopened store sees the same files.
    drop(store);
    let store = SnapshotStore::open(dir.path()).unwrap();
    assert_eq!(store.list().unwrap(), list);
    assert_eq!(read_snapshot(&store, 65536, 0), large);

    assert!(store.delete(65536, 0).unwrap());
    assert!(!store.delete(65536, 0).unwrap());
    assert!(matches!(
        store.reader(65536, 0),
        Err(ArchiveError::NotFound(_))
    ));
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn names_sort_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    for position in [900u64, 10_000, 1 << 40, 5] {
        write_snapshot(&store, 1, position, 0, b"x");
    }
    let names = visible_files(dir.path());
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    let positions: Vec<u64> = store.list().unwrap().iter().map(|m| m.position).collect();
    assert_eq!(positions, vec![5, 900, 10_000, 1 << 40]);
}

#[test]
fn torn_files_are_corrupted_at_every_truncation_point() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let data = body(10_000, 7);
    write_snapshot(&store, 2, 4096, 1, &data);
    let path = store.find(4096, 1).unwrap().path;
    let good = std::fs::read(&path).unwrap();
    let mut cuts: Vec<usize> = (0..200).collect();
    cuts.extend((200..good.len()).step_by(97));
    cuts.extend(good.len() - 20..good.len());
    for cut in cuts {
        std::fs::write(&path, &good[..cut]).unwrap();
        match store.reader(4096, 1) {
            Err(ArchiveError::Corrupted { file, position, .. }) => {
                assert_eq!(file, path);
                assert!(position <= cut as u64, "cut {cut}: offset {position}");
            }
            other => panic!("cut {cut}: expected Corrupted, got {other:?}"),
        }
    }
    std::fs::write(&path, &good).unwrap();
    assert_eq!(read_snapshot(&store, 4096, 1), data);
}

#[test]
fn bit_flips_anywhere_are_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    write_snapshot(&store, 2, 4096, 1, &body(3000, 9));
    let path = store.find(4096, 1).unwrap().path;
    let good = std::fs::read(&path).unwrap();
    let mut offsets: Vec<usize> = (0..80).collect();
    offsets.extend((80..good.len()).step_by(31));
    offsets.extend(good.len() - 16..good.len());
    for at in offsets {
        for bit in [0, 5] {
            let mut bytes = good.clone();
            bytes[at] ^= 1 << bit;
            std::fs::write(&path, &bytes).unwrap();
            assert!(
                matches!(store.reader(4096, 1), Err(ArchiveError::Corrupted { .. })),
                "flip at {at} bit {bit} not detected"
            );
        }
    }
}

#[test]
fn a_file_under_the_wrong_name_is_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    write_snapshot(&store, 2, 4096, 1, b"state");
    let from = store.find(4096, 1).unwrap().path;
    let to = store.dir().join(SnapshotStore::file_name(2, 8192, 1));
    std::fs::rename(&from, &to).unwrap();
    assert!(matches!(
        store.reader(8192, 1),
        Err(ArchiveError::Corrupted { position: 16, .. })
    ));
}

#[test]
fn chunked_transfer_reproduces_an_identical_valid_file() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = SnapshotStore::open(leader_dir.path()).unwrap();
    let follower = SnapshotStore::open(follower_dir.path()).unwrap();
    let data = body(3 * 1024 * 1024 + 17, 5);
    write_snapshot(&leader, 7, 1 << 20, 0, &data);

    let len = leader.file_len(1 << 20, 0).unwrap();
    let mut w = follower.raw_writer(7, 1 << 20, 0).unwrap();
    let mut offset = 0u64;
    let mut buf = vec![0u8; 60_001];
    loop {
        let n = leader.read_chunk(1 << 20, 0, offset, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        w.write_chunk(offset, &buf[..n]).unwrap();
        // A retransmitted chunk is harmless.
        w.write_chunk(offset, &buf[..n]).unwrap();
        offset += n as u64;
    }
    assert_eq!(offset, len);
    assert_eq!(w.len_bytes(), len);
    assert!(
        follower.list().unwrap().is_empty(),
        "nothing visible before finish"
    );
    let meta = w.finish().unwrap();
    assert_eq!(meta.file_len_bytes, len);
    assert_eq!(
        std::fs::read(&meta.path).unwrap(),
        std::fs::read(leader.find(1 << 20, 0).unwrap().path).unwrap()
    );
    assert_eq!(read_snapshot(&follower, 1 << 20, 0), data);
    assert_eq!(leader.read_chunk(1 << 20, 0, len + 5, &mut buf).unwrap(), 0);
}

#[test]
fn an_incomplete_or_damaged_transfer_is_refused_and_leaves_nothing() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = SnapshotStore::open(leader_dir.path()).unwrap();
    let follower = SnapshotStore::open(follower_dir.path()).unwrap();
    write_snapshot(&leader, 7, 640, 0, &body(50_000, 3));
    let file = std::fs::read(leader.find(640, 0).unwrap().path).unwrap();

    // A missing chunk in the middle.
    let mut w = follower.raw_writer(7, 640, 0).unwrap();
    w.write_chunk(0, &file[..10_000]).unwrap();
    w.write_chunk(20_000, &file[20_000..]).unwrap();
    assert!(matches!(w.finish(), Err(ArchiveError::Corrupted { .. })));
    // The file of another snapshot.
    let mut w = follower.raw_writer(8, 640, 0).unwrap();
    w.write_chunk(0, &file).unwrap();
    assert!(matches!(w.finish(), Err(ArchiveError::Corrupted { .. })));
    // Stopped half way.
    let mut w = follower.raw_writer(7, 640, 0).unwrap();
    w.write_chunk(0, &file[..25_000]).unwrap();
    drop(w);
    assert!(visible_files(follower_dir.path()).is_empty());
}

#[test]
fn an_unfinished_writer_leaves_no_visible_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let mut w = store.writer(1, 100, 0, 0).unwrap();
    w.write_all(&body(100_000, 1)).unwrap();
    w.flush().unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(matches!(
        store.reader(100, 0),
        Err(ArchiveError::NotFound(_))
    ));
    drop(w);
    assert!(
        visible_files(dir.path()).is_empty(),
        "temp file removed on drop"
    );

    // A crash leaves the temp file; the next open removes it.
    let w = store.writer(1, 200, 0, 0).unwrap();
    std::mem::forget(w);
    assert_eq!(visible_files(dir.path()).len(), 1);
    assert!(store.list().unwrap().is_empty());
    drop(store);
    let store = SnapshotStore::open(dir.path()).unwrap();
    assert!(visible_files(dir.path()).is_empty());
    assert_eq!(store.disk_usage_bytes().unwrap(), 0);
}

#[test]
fn missing_snapshots_are_not_found_and_foreign_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    std::fs::write(store.dir().join("README"), b"not a snapshot").unwrap();
    std::fs::write(store.dir().join("snapshot-1-2-s3.snap"), b"bad name").unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(matches!(store.reader(1, 3), Err(ArchiveError::NotFound(_))));
    assert!(matches!(
        store.file_len(1, 3),
        Err(ArchiveError::NotFound(_))
    ));
    let mut buf = [0u8; 8];
    assert!(matches!(
        store.read_chunk(1, 3, 0, &mut buf),
        Err(ArchiveError::NotFound(_))
    ));
}
