//! `cluster-tool` on offline directories built with the archive API.

mod common;

use common::*;

#[test]
fn recording_log_lists_every_entry_in_text_and_json() {
    let fx = fixture(40, &[10, 30]);
    let before = snapshot_tree(fx.path());
    let run = tool(fx.path(), &["recording-log"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("index"), "{}", run.stdout);
    assert!(run.stdout.contains("snapshot"), "{}", run.stdout);
    let json = tool(fx.path(), &["recording-log", "--json"]).json();
    let entries = json["entries"].as_array().unwrap();
    // term 1, snapshot set (2), term 2, snapshot set (2)
    assert_eq!(entries.len(), 6);
    assert_eq!(entries[0]["type"], "term");
    assert_eq!(entries[0]["term"], 1);
    assert_eq!(entries[0]["service_id"], serde_json::Value::Null);
    assert_eq!(entries[1]["type"], "snapshot");
    assert_eq!(entries[1]["position"], fx.snapshot_positions[0]);
    assert_eq!(entries[2]["service_id"], -1);
    assert_eq!(entries[2]["valid"], true);
    for key in [
        "index",
        "type",
        "term",
        "position",
        "service_id",
        "timestamp",
        "valid",
    ] {
        assert!(entries[3].get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["torn_tail"], false);
    assert_eq!(
        snapshot_tree(fx.path()),
        before,
        "read-only command changed the directory"
    );
}

#[test]
fn recovery_plan_then_invalidate_falls_back_to_the_previous_set() {
    let fx = fixture(40, &[10, 30]);
    let plan = tool(fx.path(), &["recovery-plan", "--json"]).json();
    assert_eq!(plan["snapshot"]["position"], fx.snapshot_positions[1]);
    assert_eq!(plan["replay_from_position"], fx.snapshot_positions[1]);
    assert_eq!(plan["replay_to_position"], fx.end);
    assert_eq!(plan["log_end_position"], fx.end);
    assert_eq!(plan["term_history"].as_array().unwrap().len(), 2);
    let text = tool(fx.path(), &["recovery-plan"]);
    assert_eq!(text.code, 0);
    assert!(
        text.stdout
            .contains(&format!("position {}", fx.snapshot_positions[1]))
    );

    let inv = tool(fx.path(), &["invalidate-latest-snapshot", "--json"]);
    assert_eq!(inv.code, 0, "{inv:?}");
    let inv = inv.json();
    assert_eq!(inv["invalidated_position"], fx.snapshot_positions[1]);
    assert_eq!(inv["entries_invalidated"], 2);
    assert_eq!(inv["next_snapshot"]["position"], fx.snapshot_positions[0]);

    let plan = tool(fx.path(), &["recovery-plan", "--json"]).json();
    assert_eq!(plan["snapshot"]["position"], fx.snapshot_positions[0]);
    assert_eq!(plan["replay_from_position"], fx.snapshot_positions[0]);
    // The archive's own recovery plan agrees: the next start uses the previous set.
    let (archive, _) =
        tandem_archive::Archive::open(fx.path(), CLUSTER_ID, MEMBER_ID, config()).expect("reopen");
    assert_eq!(
        archive.recovery_plan().unwrap().snapshot.unwrap().position,
        fx.snapshot_positions[0]
    );
    drop(archive);

    // Once more: nothing valid left, the plan replays from the log start.
    assert_eq!(tool(fx.path(), &["invalidate-latest-snapshot"]).code, 0);
    let plan = tool(fx.path(), &["recovery-plan", "--json"]).json();
    assert_eq!(plan["snapshot"], serde_json::Value::Null);
    assert_eq!(plan["replay_from_position"], 0);
    let again = tool(fx.path(), &["invalidate-latest-snapshot"]);
    assert_fails(&again, &["no valid snapshot set", "recording.log"]);
}

#[test]
fn seed_recording_log_keeps_a_backup_and_starts_at_the_newest_set() {
    let fx = fixture(40, &[10, 30]);
    let run = tool(fx.path(), &["seed-recording-log-from-snapshot", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    let backup = json["backup"].as_str().unwrap();
    assert!(std::path::Path::new(backup).exists());
    assert!(backup.ends_with("recording.log.bak-1"));
    let entries = json["entries"].as_array().unwrap();
    // The covering term entry, then the set's two entries.
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["type"], "term");
    assert_eq!(entries[0]["term"], 2);
    assert_eq!(entries[1]["position"], fx.snapshot_positions[1]);
    let plan = tool(fx.path(), &["recovery-plan", "--json"]).json();
    assert_eq!(plan["snapshot"]["position"], fx.snapshot_positions[1]);
}

#[test]
fn purge_offline_removes_segments_and_old_snapshots_within_retention() {
    // ~62 frames per segment: 200 frames span 4 segments; sets after frames 20, 130, 180.
    let fx = fixture(200, &[20, 130, 180]);
    let segments_before = std::fs::read_dir(fx.path().join("log")).unwrap().count();
    let run = tool(fx.path(), &["purge-segments", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    assert_eq!(json["mode"], "offline");
    // Retention keeps the two newest sets: the log from the set at frame 130 on.
    let retain_from = fx.snapshot_positions[1];
    assert_eq!(json["segments_removed"], retain_from / SEG);
    assert_eq!(json["snapshots_removed"], 2);
    assert_eq!(json["start_position"], retain_from & !(SEG - 1));
    let bytes = json["bytes_removed"].as_u64().unwrap();
    assert!(bytes >= (retain_from / SEG) * SEG, "{json}");
    assert_eq!(
        std::fs::read_dir(fx.path().join("log")).unwrap().count(),
        segments_before - (retain_from / SEG) as usize
    );
    assert!(!fx.snapshot_path(1, fx.snapshot_positions[0], 0).exists());
    assert!(fx.snapshot_path(2, fx.snapshot_positions[1], 0).exists());
    // Recovery still works and verify is clean.
    let plan = tool(fx.path(), &["recovery-plan", "--json"]).json();
    assert_eq!(plan["snapshot"]["position"], fx.snapshot_positions[2]);
    let verify = tool(fx.path(), &["verify"]);
    assert_eq!(verify.code, 0, "{verify:?}");

    // With --up-to below the retention point, purge stops there.
    let fx = fixture(200, &[20, 130, 180]);
    let json = tool(
        fx.path(),
        &["purge-segments", "--up-to", &SEG.to_string(), "--json"],
    )
    .json();
    assert_eq!(json["segments_removed"], 1);
    assert_eq!(json["start_position"], SEG);
    let text = tool(fx.path(), &["purge-segments", "--up-to", "0"]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("0 segments"), "{}", text.stdout);
}

#[test]
fn verify_passes_on_a_clean_directory_and_finds_a_flipped_bit() {
    let fx = fixture(100, &[10, 60]);
    let before = snapshot_tree(fx.path());
    let ok = tool(fx.path(), &["verify"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("verify: ok"), "{}", ok.stdout);
    assert!(ok.stdout.contains("100 frames"), "{}", ok.stdout);
    let json = tool(fx.path(), &["verify", "--json"]).json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["log"]["frames"], 100);
    assert_eq!(json["snapshots"].as_array().unwrap().len(), 4);

    // Flip a bit in the payload of frame 70 (segment 1): verify names file and position.
    let position = fx.frame_positions[70];
    let segment = fx.segment_path(position);
    flip_bit(&segment, (position & (SEG - 1)) + 48 + 17);
    let bad = tool(fx.path(), &["verify"]);
    assert_fails(
        &bad,
        &[
            &segment.display().to_string(),
            &format!("position {position}"),
            "checksum mismatch",
        ],
    );
    assert!(bad.stdout.contains("FAILED"), "{}", bad.stdout);
    let json = tool(fx.path(), &["verify", "--json"]).json();
    assert_eq!(json["ok"], false);
    assert_eq!(json["log"]["frames"], 70);
    // Verify did not repair (or truncate) anything but the bit we flipped.
    let after = snapshot_tree(fx.path());
    let changed: Vec<_> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.0.clone())
        .collect();
    assert_eq!(changed, vec![segment]);
}

#[test]
fn verify_finds_a_corrupted_snapshot_and_node_state() {
    let fx = fixture(20, &[5]);
    let snap = fx.snapshot_path(1, fx.snapshot_positions[0], 0);
    flip_bit(&snap, 100);
    let bad = tool(fx.path(), &["verify"]);
    assert_fails(&bad, &[&snap.display().to_string(), "checksum mismatch"]);

    let fx = fixture(20, &[]);
    let state = fx.path().join("node-state.dat");
    flip_bit(&state, 30);
    let bad = tool(fx.path(), &["verify"]);
    assert_fails(&bad, &["node-state.dat", "position 0"]);
}

#[test]
fn dump_prints_frames_the_same_for_every_member() {
    let a = fixture(30, &[]);
    let b = fixture(30, &[5]);
    let from = a.frame_positions[10].to_string();
    let run_a = tool(a.path(), &["dump", "--from", &from, "--count", "3"]);
    let run_b = tool(b.path(), &["dump", "--from", &from, "--count", "3"]);
    assert_eq!(run_a.code, 0, "{run_a:?}");
    assert_eq!(run_a.stdout, run_b.stdout);
    let lines: Vec<&str> = run_a.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run_a.stdout);
    assert!(lines[0].contains("position") && lines[0].contains("timestamp"));
    assert!(lines[1].contains("session-message"), "{}", lines[1]);

    let json = tool(
        a.path(),
        &["dump", "--from", &from, "--count", "3", "--json"],
    )
    .json();
    let frames = json["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 3);
    let f = &frames[0];
    assert_eq!(f["position"], a.frame_positions[10]);
    assert_eq!(f["type"], "session-message");
    assert_eq!(f["term"], 1);
    assert_eq!(f["session_id"], 3);
    assert_eq!(f["sequence"], 10);
    assert_eq!(f["timestamp"], 1010);
    assert_eq!(f["length"], PAYLOAD);
    assert_eq!(frames[2]["position"], a.frame_positions[12]);

    let all = tool(a.path(), &["dump", "--json"]).json();
    assert_eq!(all["frames"].as_array().unwrap().len(), 30);
    assert_eq!(all["frames"][29]["term"], 2);

    let mid = (a.frame_positions[10] + 8).to_string();
    let bad = tool(a.path(), &["dump", "--from", &mid]);
    assert_fails(&bad, &["not a frame boundary", ".seg"]);
    let beyond = (a.end + 4096).to_string();
    let bad = tool(a.path(), &["dump", "--from", &beyond]);
    assert_fails(&bad, &["beyond the end of the log"]);
}

#[test]
fn dump_stops_at_corruption_naming_it() {
    let fx = fixture(10, &[]);
    let position = fx.frame_positions[6];
    flip_bit(&fx.segment_path(position), position + 60);
    let run = tool(fx.path(), &["dump"]);
    assert_fails(
        &run,
        &[&format!("position {position}"), "checksum mismatch"],
    );
    assert_eq!(run.stdout.lines().count(), 7, "{}", run.stdout);
}

#[test]
fn describe_summarises_an_offline_directory() {
    let fx = fixture(100, &[10, 60]);
    let run = tool(fx.path(), &["describe"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("node_state:"), "{}", run.stdout);
    let json = tool(fx.path(), &["describe", "--json"]).json();
    assert_eq!(json["running"], false);
    assert_eq!(json["control"], serde_json::Value::Null);
    assert_eq!(json["node_state"]["member_id"], MEMBER_ID);
    assert_eq!(json["node_state"]["cluster_id"], CLUSTER_ID);
    assert_eq!(json["recording_log"]["valid_snapshot_sets"], 2);
    assert_eq!(
        json["recording_log"]["latest_snapshot_position"],
        fx.snapshot_positions[1]
    );
    assert_eq!(json["log"]["segments"], 2);
    assert_eq!(json["log"]["start_position"], 0);
    assert_eq!(json["log"]["end_position"], fx.end);
    assert_eq!(json["log"]["frames"], 100);
    assert_eq!(json["log"]["disk_bytes"], 2 * SEG);
    assert_eq!(json["snapshots"]["files"], 4);
    assert!(json["disk_used_bytes"].as_u64().unwrap() > 2 * SEG);
}

#[test]
fn describe_latest_snapshot_shows_sessions_and_timers() {
    let fx = fixture(40, &[10, 30]);
    let json = tool(fx.path(), &["describe-latest-snapshot", "--json"]).json();
    assert_eq!(json["position"], fx.snapshot_positions[1]);
    assert_eq!(json["term"], 2);
    assert_eq!(json["entries"].as_array().unwrap().len(), 2);
    let m = &json["module"];
    assert_eq!(m["cluster_time"], 123_456);
    assert_eq!(m["sessions"][0]["session_id"], 4);
    assert_eq!(m["sessions"][0]["principal"], "alice");
    assert_eq!(m["sessions"][0]["last_sequence"], 42);
    assert_eq!(m["timers"][0]["correlation_id"], 77);
    assert_eq!(m["timers"][0]["deadline"], 999);
    let text = tool(fx.path(), &["describe-latest-snapshot"]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout.contains("1 sessions, 1 timers"),
        "{}",
        text.stdout
    );

    let none = fixture(5, &[]);
    let run = tool(none.path(), &["describe-latest-snapshot"]);
    assert_fails(&run, &["no valid snapshot set", "recording.log"]);
}
