//! `cluster-tool` against a control file driven by a test thread playing the node: the
//! toggle protocol, reads of the live fields, and the refusals that depend on a node
//! running. (The same commands against a live 3-member cluster: `live.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use tandem_cluster::control::{
    Action, ActionResult, Counter, MemberProgress, MemberRole, ResultCode,
};

fn ok_with(value: u64, extra: u64) -> Answer {
    Box::new(move |_| ActionResult {
        code: ResultCode::Ok,
        value,
        extra,
    })
}

#[test]
fn snapshot_waits_for_completion_and_prints_the_position() {
    let fx = fixture(5, &[]);
    let node = FakeNode::answering(fx.path(), 1, ok_with(65_536, 0));
    let start = Instant::now();
    let run = tool(fx.path(), &["snapshot"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(50),
        "did not wait for the node"
    );
    assert!(
        run.stdout.contains("snapshot taken at position 65536"),
        "{}",
        run.stdout
    );
    let json = tool(fx.path(), &["snapshot", "--json"]).json();
    assert_eq!(json["snapshot_position"], 65_536);
    assert_eq!(json["action"], "snapshot");
    assert_eq!(json["result"], "ok");
    assert_eq!(node.seen(), vec![Action::Snapshot, Action::Snapshot]);
}

#[test]
fn cluster_actions_and_stop_go_through_the_toggle() {
    let fx = fixture(5, &[]);
    let node = FakeNode::answering(fx.path(), 0, ok_with(0, 0));
    for cmd in ["suspend", "resume", "shutdown", "abort", "stop"] {
        let run = tool(fx.path(), &[cmd, "--json"]);
        assert_eq!(run.code, 0, "{cmd}: {run:?}");
        assert_eq!(run.json()["action"], cmd);
    }
    assert_eq!(
        node.seen(),
        vec![
            Action::Suspend,
            Action::Resume,
            Action::Shutdown,
            Action::Abort,
            Action::Stop
        ]
    );
}

#[test]
fn refused_actions_exit_2_naming_the_action() {
    let fx = fixture(5, &[]);
    let _node = FakeNode::answering(
        fx.path(),
        0,
        Box::new(|a| {
            ActionResult::with_code(if a == Action::Suspend {
                ResultCode::Rejected
            } else {
                ResultCode::Failed
            })
        }),
    );
    assert_fails(&tool(fx.path(), &["suspend"]), &["suspend", "rejected"]);
    assert_fails(&tool(fx.path(), &["snapshot"]), &["snapshot", "failed"]);
}

#[test]
fn purge_segments_on_a_running_node_uses_the_toggle() {
    let fx = fixture(5, &[]);
    let node = FakeNode::answering(fx.path(), 1, ok_with(131_072, 4096));
    let run = tool(
        fx.path(),
        &["purge-segments", "--up-to", "200000", "--json"],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    assert_eq!(json["mode"], "running");
    assert_eq!(json["start_position"], 131_072);
    // The fake node removed nothing, and the tool counts what it finds gone.
    assert_eq!(json["segments_removed"], 0);
    assert_eq!(json["snapshots_removed"], 0);
    assert_eq!(json["bytes_removed"], 0);
    assert_eq!(node.seen(), vec![Action::Purge(200_000)]);
    // Nothing was deleted by the tool itself.
    assert!(fx.segment_path(0).exists());
    let text = tool(fx.path(), &["purge-segments"]);
    assert_eq!(text.code, 0);
    assert!(
        text.stdout.contains("log now starts at 131072"),
        "{}",
        text.stdout
    );
    assert_eq!(node.seen()[1], Action::Purge(u64::MAX));
}

#[test]
fn a_request_nobody_answers_times_out_naming_the_action_and_is_withdrawn() {
    let fx = fixture(5, &[]);
    let node = FakeNode::silent(fx.path(), 1);
    let start = Instant::now();
    let run = tool(fx.path(), &["snapshot", "--timeout", "0.3"]);
    assert_fails(&run, &["timed out", "snapshot", "control.dat"]);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(node.control.pending_request(), None, "request left behind");
    assert_fails(
        &tool(fx.path(), &["stop", "--timeout", "0.2"]),
        &["timed out", "stop"],
    );
    assert_fails(
        &tool(fx.path(), &["purge-segments", "--timeout", "0.2"]),
        &["timed out", "purge-segments"],
    );
}

#[test]
fn a_busy_toggle_is_an_error() {
    let fx = fixture(5, &[]);
    let node = FakeNode::silent(fx.path(), 1);
    let _pending = node.control.request(Action::Resume).unwrap();
    assert_fails(
        &tool(fx.path(), &["suspend", "--timeout", "1"]),
        &["resume", "pending"],
    );
}

#[test]
fn is_leader_pid_list_members_stat_and_errors_read_the_control_file() {
    let fx = fixture(5, &[]);
    let node = FakeNode::silent(fx.path(), 1);
    let c = &node.control;
    c.set_role(MemberRole::Follower);
    c.set_term(3);
    c.set_leader_id(Some(2));
    c.set_election_state(16);
    c.set_append_position(4096);
    c.set_commit_position(2048);
    c.set_member_progress(
        0,
        MemberProgress {
            append_position: 1024,
            commit_position: 512,
            last_heard_ns: 77,
        },
    );
    c.set_member_progress(
        2,
        MemberProgress {
            append_position: 8192,
            commit_position: 2048,
            last_heard_ns: 99,
        },
    );
    c.add(Counter::DatagramsIn, 12);
    c.increment(Counter::Elections);
    c.record_error(1_000, 5, "first problem");
    c.record_error(2_000, 6, "second problem");

    let run = tool(fx.path(), &["is-leader"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("follower"));
    let json = tool(fx.path(), &["is-leader", "--json"]).json();
    assert_eq!(json["is_leader"], false);
    assert_eq!(json["leader_id"], 2);
    c.set_role(MemberRole::Leader);
    c.set_leader_id(Some(1));
    let run = tool(fx.path(), &["is-leader"]);
    assert_eq!(run.code, 0, "{run:?}");

    let run = tool(fx.path(), &["pid"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.stdout.trim(), std::process::id().to_string());
    assert_eq!(
        tool(fx.path(), &["pid", "--json"]).json()["pid"],
        std::process::id()
    );

    let json = tool(fx.path(), &["list-members", "--json"]).json();
    assert_eq!(json["member_count"], 3);
    assert_eq!(json["leader_id"], 1);
    let members = json["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members[0]["append_position"], 1024);
    assert_eq!(members[0]["last_heard_ns"], 77);
    assert_eq!(members[1]["self"], true);
    assert_eq!(members[1]["leader"], true);
    assert_eq!(members[1]["append_position"], 4096);
    assert_eq!(members[2]["commit_position"], 2048);
    // Endpoints from the members list the node wrote: client, and peer = client port + 1.
    for (m, client, peer) in [
        (&members[0], "127.0.0.1:9010", "127.0.0.1:9011"),
        (&members[1], "127.0.0.1:9020", "127.0.0.1:9021"),
        (&members[2], "[::1]:9030", "[::1]:9031"),
    ] {
        assert_eq!(m["endpoint"], client, "{m}");
        assert_eq!(m["peer_endpoint"], peer, "{m}");
    }
    let text = tool(fx.path(), &["list-members"]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("self,leader"), "{}", text.stdout);
    assert!(text.stdout.contains("peer_endpoint"), "{}", text.stdout);
    for (id, client, peer) in [
        (0, "127.0.0.1:9010", "127.0.0.1:9011"),
        (1, "127.0.0.1:9020", "127.0.0.1:9021"),
        (2, "[::1]:9030", "[::1]:9031"),
    ] {
        let line = text
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&id.to_string()))
            .unwrap_or_else(|| panic!("no row for member {id}: {}", text.stdout));
        assert!(line.contains(client) && line.contains(peer), "{line}");
    }

    let json = tool(fx.path(), &["stat", "--json"]).json();
    assert_eq!(json["term"], 3);
    assert_eq!(json["role"], "leader");
    assert_eq!(json["election_state"], "FOLLOWER_READY");
    assert_eq!(json["counters"]["datagrams_in"], 12);
    assert_eq!(json["counters"]["elections"], 1);
    assert_eq!(json["counters"]["errors"], 2);
    let text = tool(fx.path(), &["stat"]);
    assert!(text.stdout.contains("datagrams_in"), "{}", text.stdout);

    let json = tool(fx.path(), &["errors", "--json"]).json();
    assert_eq!(json["error_count"], 2);
    assert_eq!(json["errors"][0]["message"], "second problem");
    assert_eq!(json["errors"][1]["code"], 5);
    let text = tool(fx.path(), &["errors"]);
    assert!(text.stdout.contains("first problem"), "{}", text.stdout);

    let json = tool(fx.path(), &["describe", "--json"]).json();
    assert_eq!(json["running"], true);
    assert_eq!(json["pid"], std::process::id());
    assert_eq!(json["control"]["term"], 3);
    assert_eq!(json["control"]["role"], "leader");
    assert_eq!(json["control"]["error_count"], 2);
    assert_eq!(json["node_state"]["member_id"], MEMBER_ID);
    assert_eq!(
        json["control"]["members"]["2"]["endpoint"], "[::1]:9030",
        "{json}"
    );
    assert_eq!(
        json["control"]["members"]["0"]["peer_endpoint"],
        "127.0.0.1:9011"
    );
    let text = tool(fx.path(), &["describe"]);
    assert!(
        text.stdout.contains("peer_endpoint: 127.0.0.1:9021"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_damaged_members_area_fails_list_members_naming_the_file_and_byte() {
    use std::os::unix::fs::FileExt;

    let fx = fixture(5, &[]);
    let node = FakeNode::silent(fx.path(), 1);
    node.control.set_term(4);
    // The members list's text starts at byte 18312 of the control file (format version 2).
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(fx.path().join("control.dat"))
        .unwrap();
    file.write_all_at(b"0=nowhere", 18_312).unwrap();

    let run = tool(fx.path(), &["list-members"]);
    assert_fails(&run, &["control.dat", "18312", "members list"]);
    // describe shows the rest of the control file, reports the damage and fails.
    let run = tool(fx.path(), &["describe", "--json"]);
    assert_eq!(run.code, 2, "{run:?}");
    let json = run.json();
    assert_eq!(json["control"]["term"], 4);
    let error = json["control"]["members"]["error"].as_str().unwrap();
    assert!(error.contains("18312"), "{error}");
    assert!(run.stderr.contains("control.dat"), "{run:?}");
}

#[test]
fn stat_watch_refreshes_until_interrupted() {
    let fx = fixture(5, &[]);
    let node = FakeNode::silent(fx.path(), 1);
    node.control.set_term(9);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cluster-tool"))
        .arg(fx.path())
        .args(["stat", "--watch", "0.1", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per refresh"))
        .collect();
    assert!(docs.len() >= 2, "{text}");
    assert_eq!(docs[0]["term"], 9);
}

#[test]
fn writing_commands_refuse_while_a_node_runs() {
    let fx = fixture(40, &[10, 30]);
    let node = FakeNode::silent(fx.path(), 1);
    let pid = std::process::id().to_string();
    for cmd in [
        "invalidate-latest-snapshot",
        "seed-recording-log-from-snapshot",
    ] {
        let run = tool(fx.path(), &[cmd]);
        assert_fails(&run, &["node is running", &pid, cmd]);
    }
    drop(node);
    // A stale control file (its process gone) does not count as running.
    set_control_pid(fx.path(), dead_pid());
    let run = tool(fx.path(), &["invalidate-latest-snapshot"]);
    assert_eq!(run.code, 0, "{run:?}");

    // The directory lock held by a node process counts too, without a control file.
    let fx = fixture(40, &[10, 30]);
    let lock = tandem_archive::DirLock::acquire(fx.path()).unwrap();
    assert_fails(
        &tool(fx.path(), &["invalidate-latest-snapshot"]),
        &["node is running", &pid],
    );
    assert_fails(
        &tool(fx.path(), &["seed-recording-log-from-snapshot"]),
        &["node is running"],
    );
    drop(lock);
    wait_unlocked(fx.path());
    assert_eq!(
        tool(fx.path(), &["seed-recording-log-from-snapshot"]).code,
        0
    );
}

#[test]
fn commands_that_need_a_running_node_refuse_a_stopped_one() {
    // No control file at all.
    let fx = fixture(5, &[]);
    for cmd in [
        "pid",
        "is-leader",
        "snapshot",
        "suspend",
        "resume",
        "shutdown",
        "abort",
        "stop",
    ] {
        let run = tool(fx.path(), &[cmd]);
        assert_fails(&run, &["not running", &fx.path().display().to_string()]);
    }
    // A control file whose process is gone.
    drop(FakeNode::silent(fx.path(), 1));
    let dead = dead_pid();
    set_control_pid(fx.path(), dead);
    for cmd in ["pid", "is-leader", "snapshot", "stop"] {
        let run = tool(fx.path(), &[cmd]);
        assert_fails(&run, &["not running", &dead.to_string()]);
    }
    // Reading what the dead node left is still possible.
    assert_eq!(tool(fx.path(), &["errors"]).code, 0);
    let json = tool(fx.path(), &["stat", "--json"]).json();
    assert_eq!(json["running"], false);
}

#[test]
fn verify_on_a_running_node_ignores_the_tail_past_the_commit_position() {
    let fx = fixture(20, &[]);
    let node = FakeNode::silent(fx.path(), 1);
    let position = fx.frame_positions[15];
    flip_bit(&fx.segment_path(position), position + 60);
    node.control.set_commit_position(position);
    let run = tool(fx.path(), &["verify"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("ignored"), "{}", run.stdout);
    node.control.set_commit_position(fx.end);
    let run = tool(fx.path(), &["verify"]);
    assert_fails(
        &run,
        &[&format!("position {position}"), "checksum mismatch"],
    );
}
