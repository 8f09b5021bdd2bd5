//! The directory writer lock: one writer at a time, released on drop.

use tandem_archive::{ArchiveError, DirLock, LOCK_FILE_NAME};

#[test]
fn second_acquire_is_refused_naming_the_holder_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        DirLock::holder_pid(dir.path()).unwrap(),
        None,
        "no lock file yet"
    );

    let lock = DirLock::acquire(dir.path()).unwrap();
    assert_eq!(lock.dir(), dir.path());
    assert_eq!(lock.path(), dir.path().join(LOCK_FILE_NAME));
    let me = std::process::id();
    assert_eq!(DirLock::holder_pid(dir.path()).unwrap(), Some(me));

    match DirLock::acquire(dir.path()) {
        Err(ArchiveError::Locked {
            dir: locked_dir,
            pid,
        }) => {
            assert_eq!(locked_dir, dir.path());
            assert_eq!(pid, Some(me));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // The probe of holder_pid must not disturb the holder.
    assert!(matches!(
        DirLock::acquire(dir.path()),
        Err(ArchiveError::Locked { .. })
    ));

    drop(lock);
    assert_eq!(
        DirLock::holder_pid(dir.path()).unwrap(),
        None,
        "lock file left behind, nobody holds it"
    );
    let again = DirLock::acquire(dir.path()).unwrap();
    assert_eq!(DirLock::holder_pid(dir.path()).unwrap(), Some(me));
    drop(again);
}

#[test]
fn a_stale_lock_file_from_a_dead_process_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(LOCK_FILE_NAME),
        "tandem-lock v1 pid=999999\n",
    )
    .unwrap();
    assert_eq!(DirLock::holder_pid(dir.path()).unwrap(), None);
    let lock = DirLock::acquire(dir.path()).unwrap();
    assert_eq!(
        DirLock::holder_pid(dir.path()).unwrap(),
        Some(std::process::id())
    );
    drop(lock);
}

#[test]
fn a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    assert!(matches!(
        DirLock::acquire(&missing),
        Err(ArchiveError::Io { .. })
    ));
    assert_eq!(DirLock::holder_pid(&missing).unwrap(), None);
}
