//! Every failure exits 2 with one line on stderr naming the problem.

mod common;

use common::*;

#[test]
fn no_such_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for cmd in ["describe", "verify", "recording-log", "snapshot", "pid"] {
        let run = tool(&missing, &[cmd]);
        assert_fails(&run, &["no such directory", &missing.display().to_string()]);
    }
}

#[test]
fn not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert_fails(&tool(&file, &["describe"]), &["is not a directory"]);
}

#[test]
fn not_a_node_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README"), b"hello").unwrap();
    for cmd in [
        "describe",
        "recording-log",
        "verify",
        "dump",
        "stat",
        "invalidate-latest-snapshot",
    ] {
        let run = tool(dir.path(), &[cmd]);
        assert_fails(
            &run,
            &["not a node directory", &dir.path().display().to_string()],
        );
    }
    // The tool created nothing there.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn corrupted_recording_log_names_file_and_position() {
    let fx = fixture(40, &[10, 30]);
    let path = fx.path().join("recording.log");
    // Entry 1 (not the last, which would read as a torn append).
    flip_bit(&path, 64 + 64 + 20);
    for cmd in ["recording-log", "recovery-plan", "describe-latest-snapshot"] {
        let run = tool(fx.path(), &[cmd]);
        assert_fails(
            &run,
            &["corrupted", &path.display().to_string(), "position 128"],
        );
    }
    let run = tool(fx.path(), &["verify"]);
    assert_fails(&run, &["corrupted", "recording.log", "position 128"]);
    // describe still prints what it can, and fails.
    let run = tool(fx.path(), &["describe"]);
    assert_fails(&run, &["recording.log"]);
    assert!(run.stdout.contains("node_state:"), "{}", run.stdout);
}

#[test]
fn corrupted_log_meta_and_control_file() {
    let fx = fixture(5, &[]);
    let meta = fx.path().join("log").join("log.meta");
    flip_bit(&meta, 20);
    assert_fails(
        &tool(fx.path(), &["dump"]),
        &["corrupted", "log.meta", "position 32"],
    );
    assert_fails(&tool(fx.path(), &["verify"]), &["log.meta"]);

    let fx = fixture(5, &[]);
    std::fs::write(fx.path().join("control.dat"), vec![0xFF; 64]).unwrap();
    assert_fails(&tool(fx.path(), &["stat"]), &["control.dat"]);
    assert_fails(&tool(fx.path(), &["pid"]), &["control.dat"]);
}

#[test]
fn usage_errors_exit_2() {
    let fx = fixture(1, &[]);
    let run = tool(fx.path(), &["no-such-command"]);
    assert_eq!(run.code, 2, "{run:?}");
    let run = tool(fx.path(), &["dump", "--from", "abc"]);
    assert_eq!(run.code, 2, "{run:?}");
    let run = tool(fx.path(), &["snapshot", "--timeout", "-1"]);
    assert_eq!(run.code, 2, "{run:?}");
}
