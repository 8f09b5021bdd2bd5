//! `cluster-tool` (the real binary) against a live 3-member cluster running in this test
//! process over loopback UDP, with a client driving load: `is-leader`, `pid`,
//! `list-members`, `stat`, `describe`, `errors`, `verify`, `snapshot` (from the leader's and
//! from a follower's directory), `purge-segments` on a running member, `stop` of one member
//! while the others keep serving, `shutdown` of the whole cluster; and, after a live run,
//! offline: `invalidate-latest-snapshot`, then the member restarts from the previous snapshot.
//!
//! The nodes share this process's pid, so "is a node running here" is the directory lock
//! (which a node holds while it runs), not the pid in the control file. One cluster at a time
//! (the tests take `SERIAL`), so that the agents share the machine's cores with fewer threads.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::path::Path;
use std::sync::Mutex;

use cluster::*;
use common::{Run, assert_fails, tool};
use tandem_cluster::control::Counter;
use tandem_service_api::Role;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn ok(run: Run) -> Run {
    assert_eq!(run.code, 0, "expected exit 0: {run:?}");
    assert!(run.stderr.is_empty(), "{run:?}");
    run
}

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    ok(tool(dir, &args)).json()
}

/// Takes a snapshot through member `via`'s directory and waits until every running member
/// has stored it; returns its position.
fn snapshot_via(c: &LiveCluster, via: usize) -> u64 {
    let doc = json(&c.dir(via), &["snapshot", "--timeout", "30"]);
    assert_eq!(doc["action"], "snapshot");
    assert_eq!(doc["result"], "ok");
    let position = doc["snapshot_position"].as_u64().unwrap();
    assert!(position > 0, "{doc}");
    wait_for("every member stored the snapshot", LIMIT, || {
        c.nodes
            .iter()
            .flatten()
            .all(|n| n.control().snapshot_position() == position)
            .then_some(())
    });
    position
}

#[test]
fn is_leader_pid_list_members_stat_describe_and_errors_on_a_live_cluster() {
    let _serial = serial();
    let c = LiveCluster::launch();
    let mut client = c.client();
    send(&mut client, 0, 100, 200);
    c.wait_applied(100);
    let leader = c.leader();
    let term = c.node(leader).status().term;
    let pid = std::process::id();

    // is-leader: 0 on the leader, 1 on each follower, and everyone names the same leader.
    let run = ok(tool(&c.dir(leader), &["is-leader"]));
    assert!(
        run.stdout
            .contains(&format!("member {leader} is the leader (term {term})")),
        "{}",
        run.stdout
    );
    let doc = json(&c.dir(leader), &["is-leader"]);
    assert_eq!(doc["is_leader"], true);
    assert_eq!(doc["role"], "leader");
    assert_eq!(doc["member_id"], leader);
    assert_eq!(doc["term"], term);
    for f in c.others(leader) {
        let run = tool(&c.dir(f), &["is-leader"]);
        assert_eq!(run.code, 1, "a follower answers no: {run:?}");
        assert!(run.stderr.is_empty(), "{run:?}");
        assert!(
            run.stdout.contains(&format!(
                "member {f} is not the leader: follower, leader {leader}"
            )),
            "{}",
            run.stdout
        );
        let run = tool(&c.dir(f), &["is-leader", "--json"]);
        assert_eq!(run.code, 1, "{run:?}");
        let doc = run.json();
        assert_eq!(doc["is_leader"], false);
        assert_eq!(doc["role"], "follower");
        assert_eq!(doc["leader_id"], leader);
        assert_eq!(doc["term"], term);
    }

    // pid: the nodes run in this process.
    for id in 0..3 {
        let run = ok(tool(&c.dir(id), &["pid"]));
        assert_eq!(run.stdout.trim(), pid.to_string());
        assert_eq!(json(&c.dir(id), &["pid"])["pid"], pid);
    }

    // list-members on the leader: every member, each one's replicated position.
    let commit = c.node(leader).commit_position();
    let doc = wait_for("the leader's view of every member caught up", LIMIT, || {
        let doc = json(&c.dir(leader), &["list-members"]);
        let members = doc["members"].as_array().unwrap();
        members
            .iter()
            .all(|m| m["append_position"].as_u64().unwrap() >= commit)
            .then_some(doc)
    });
    assert_eq!(doc["cluster_id"], CLUSTER_ID);
    assert_eq!(doc["member_id"], leader);
    assert_eq!(doc["member_count"], 3);
    assert_eq!(doc["leader_id"], leader);
    assert_eq!(doc["term"], term);
    assert_eq!(doc["running"], true);
    let members = doc["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    // The endpoints the cluster was launched with: client `HOST:PORT`, peer `HOST:PORT+1`.
    let endpoints = tandem_cluster::transport::MemberEndpoints::parse(&c.members).unwrap();
    for (id, m) in members.iter().enumerate() {
        assert_eq!(m["member_id"], id);
        assert_eq!(m["self"], id == leader);
        assert_eq!(m["leader"], id == leader);
        assert!(m["commit_position"].as_u64().unwrap() >= commit, "{m}");
        let e = endpoints.get(id as u32).unwrap();
        assert_eq!(m["endpoint"], e.client.to_string(), "{m}");
        assert_eq!(m["peer_endpoint"], e.peer.to_string(), "{m}");
        assert_eq!(e.peer.port(), e.client.port() + 1);
    }
    let run = ok(tool(&c.dir(leader), &["list-members"]));
    assert!(run.stdout.contains("self,leader"), "{}", run.stdout);
    for e in endpoints.iter() {
        let (client, peer) = (e.client.to_string(), e.peer.to_string());
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains(&client) && l.contains(&peer)),
            "member {}'s endpoints {client} {peer}: {}",
            e.id,
            run.stdout
        );
    }
    assert!(
        run.stdout.contains(&format!(
            "member {leader} of 3, leader {leader}, term {term}"
        )),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("not running"), "{}", run.stdout);
    // A follower's view names the leader and itself.
    let f = c.others(leader)[0];
    let doc = json(&c.dir(f), &["list-members"]);
    assert_eq!(doc["leader_id"], leader);
    assert_eq!(doc["members"][f]["self"], true);
    assert_eq!(doc["members"][leader]["leader"], true);
    assert!(doc["members"][f]["append_position"].as_u64().unwrap() >= commit);
    assert_eq!(
        doc["members"][leader]["endpoint"],
        endpoints.get(leader as u32).unwrap().client.to_string()
    );

    // stat: role, term, positions and counters of a busy member.
    for id in 0..3 {
        let doc = json(&c.dir(id), &["stat"]);
        assert_eq!(doc["member_id"], id);
        assert_eq!(doc["running"], true);
        assert_eq!(
            doc["role"],
            if id == leader { "leader" } else { "follower" }
        );
        assert_eq!(doc["term"], term);
        assert_eq!(doc["leader_id"], leader);
        assert!(doc["commit_position"].as_u64().unwrap() >= commit, "{doc}");
        assert!(
            doc["append_position"].as_u64().unwrap() >= doc["commit_position"].as_u64().unwrap()
        );
        assert!(
            doc["counters"]["datagrams_in"].as_u64().unwrap() > 0,
            "{doc}"
        );
        assert!(doc["counters"]["bytes_out"].as_u64().unwrap() > 0, "{doc}");
        assert_eq!(doc["counters"]["errors"], 0, "{doc}");
    }
    let doc = json(&c.dir(leader), &["stat"]);
    assert!(
        doc["counters"]["sessions_open"].as_u64().unwrap() >= 1,
        "{doc}"
    );
    let run = ok(tool(&c.dir(leader), &["stat"]));
    assert!(run.stdout.contains("(leader, term"), "{}", run.stdout);
    assert!(run.stdout.contains("positions: append"), "{}", run.stdout);
    assert!(run.stdout.contains("datagrams_in"), "{}", run.stdout);
    assert!(!run.stdout.contains("not running"), "{}", run.stdout);

    // describe: control file, node state, recording log, log and snapshots of a live member.
    for id in 0..3 {
        let doc = json(&c.dir(id), &["describe"]);
        assert_eq!(doc["running"], true, "{doc}");
        assert_eq!(doc["pid"], pid);
        assert_eq!(doc["control"]["member_id"], id);
        assert_eq!(doc["control"]["cluster_id"], CLUSTER_ID);
        assert_eq!(doc["control"]["term"], term);
        assert_eq!(
            doc["control"]["members"]["1"]["peer_endpoint"],
            endpoints.get(1).unwrap().peer.to_string(),
            "{doc}"
        );
        assert_eq!(doc["node_state"]["member_id"], id);
        assert_eq!(doc["node_state"]["cluster_id"], CLUSTER_ID);
        assert_eq!(doc["node_state"]["current_term"], term);
        assert_eq!(doc["recording_log"]["latest_term"], term, "{doc}");
        assert_eq!(doc["log"]["segment_len_bytes"], SEGMENT_LEN);
        assert!(doc["log"]["segments"].as_u64().unwrap() >= 1, "{doc}");
        assert!(
            doc["log"]["end_position"].as_u64().unwrap() >= commit,
            "{doc}"
        );
        // A new-term entry, the session's open and the 100 messages of 200 bytes (a client
        // batch's messages share one frame, so fewer frames, but every byte of them).
        assert!(doc["log"]["frames"].as_u64().unwrap() >= 3, "{doc}");
        assert!(
            doc["log"]["end_position"].as_u64().unwrap() >= 100 * 200,
            "{doc}"
        );
        assert!(doc["disk_used_bytes"].as_u64().unwrap() > 0);
    }
    let run = ok(tool(&c.dir(leader), &["describe"]));
    assert!(run.stdout.contains(&pid.to_string()), "{}", run.stdout);

    // errors: none on a healthy cluster. verify: the live log checks out.
    for id in 0..3 {
        let doc = json(&c.dir(id), &["errors"]);
        assert_eq!(doc["error_count"], 0, "{doc}");
        ok(tool(&c.dir(id), &["verify"]));
    }
    // dump: the same frames on every member, up to the commit position.
    let dumps: Vec<Vec<serde_json::Value>> = (0..3)
        .map(|id| {
            let doc = json(&c.dir(id), &["dump", "--count", "10"]);
            let frames = doc["frames"].as_array().expect("frames").clone();
            assert_eq!(frames.len(), 10, "{doc}");
            frames
        })
        .collect();
    assert_eq!(dumps[0], dumps[1]);
    assert_eq!(dumps[0], dumps[2]);

    client.close();
    drop(c);
}

#[test]
fn snapshot_through_the_leader_then_purge_segments_on_a_running_member() {
    let _serial = serial();
    let c = LiveCluster::launch();
    let mut client = c.client();
    let leader = c.leader();
    let follower = c.others(leader)[0];
    // Three snapshot sets, each after ~100 KiB of log: with 64 KiB segments and two sets
    // retained, the log below the second set and the first set's files can go.
    let mut positions = Vec::new();
    for round in 0..3 {
        send(&mut client, round * 100, 100, 1000);
        c.wait_applied((round + 1) * 100);
        positions.push(snapshot_via(&c, leader));
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let dir = c.dir(follower);
    let before = json(&dir, &["describe"]);
    assert_eq!(before["log"]["start_position"], 0);
    assert!(before["log"]["segments"].as_u64().unwrap() >= 4, "{before}");
    let doc = json(&dir, &["recording-log"]);
    let entries = doc["entries"].as_array().expect("entries");
    let snapshot_entries = entries
        .iter()
        .filter(|e| e["type"] == "snapshot" && e["valid"] == true)
        .count();
    assert!(snapshot_entries >= 3, "{doc}");

    let doc = json(&dir, &["purge-segments", "--timeout", "30"]);
    assert_eq!(doc["mode"], "running", "{doc}");
    let start = doc["start_position"].as_u64().unwrap();
    assert!(start > 0, "{doc}");
    assert!(
        start <= positions[1],
        "purged past the second-newest snapshot: {doc}"
    );
    assert!(doc["segments_removed"].as_u64().unwrap() >= 1, "{doc}");
    assert!(doc["snapshots_removed"].as_u64().unwrap() >= 1, "{doc}");
    assert!(
        doc["bytes_removed"].as_u64().unwrap() >= SEGMENT_LEN,
        "{doc}"
    );
    assert_eq!(c.node(follower).control().log_start_position(), start);
    // On disk the log starts at the base of the segment holding the new start.
    let after = json(&dir, &["describe"]);
    let segment_base = start & !(SEGMENT_LEN - 1);
    assert_eq!(after["log"]["start_position"], segment_base, "{after}");
    assert!(
        after["log"]["segments"].as_u64().unwrap() < before["log"]["segments"].as_u64().unwrap()
    );
    let kept: Vec<u64> = after["snapshots"]["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert!(!kept.contains(&positions[0]), "{after}");
    assert!(kept.contains(&positions[1]) && kept.contains(&positions[2]));
    // Nothing left to purge within retention: the node says no, naming the action.
    let run = tool(&dir, &["purge-segments"]);
    assert_fails(&run, &["purge", "rejected"]);
    // The other members kept their whole log.
    for id in c.others(follower) {
        assert_eq!(json(&c.dir(id), &["describe"])["log"]["start_position"], 0);
    }

    // The purged member keeps serving: more load, the same state everywhere, a clean verify.
    send(&mut client, 300, 50, 1000);
    c.wait_applied(350);
    ok(tool(&dir, &["verify"]));
    let plan = json(&dir, &["recovery-plan"]);
    assert_eq!(plan["log_start_position"], segment_base, "{plan}");
    client.close();
    drop(c);
}

#[test]
fn snapshot_from_a_follower_directory_is_taken_cluster_wide() {
    let _serial = serial();
    let c = LiveCluster::launch();
    let mut client = c.client();
    send(&mut client, 0, 50, 200);
    c.wait_applied(50);
    let leader = c.leader();
    let follower = c.others(leader)[0];
    let taken_before: Vec<u64> = (0..3)
        .map(|i| c.node(i).control().counter(Counter::SnapshotsTaken))
        .collect();
    let run = ok(tool(&c.dir(follower), &["snapshot", "--timeout", "30"]));
    let position: u64 = run
        .stdout
        .trim()
        .strip_prefix("snapshot taken at position ")
        .unwrap_or_else(|| panic!("{run:?}"))
        .parse()
        .unwrap();
    assert!(position > 0);
    // Forwarded to the leader through the log: every member snapshots at that position.
    wait_for("every member stored the snapshot", LIMIT, || {
        (0..3)
            .all(|i| {
                let ctl = c.node(i).control();
                ctl.snapshot_position() == position
                    && ctl.counter(Counter::SnapshotsTaken) > taken_before[i]
            })
            .then_some(())
    });
    // --json, from the other follower.
    let other = c.others(leader)[1];
    send(&mut client, 50, 10, 200);
    c.wait_applied(60);
    let doc = json(&c.dir(other), &["snapshot"]);
    assert_eq!(doc["action"], "snapshot");
    assert!(
        doc["snapshot_position"].as_u64().unwrap() > position,
        "{doc}"
    );
    client.close();
    drop(c);
}

#[test]
fn stop_of_one_member_while_the_others_keep_serving() {
    let _serial = serial();
    let mut c = LiveCluster::launch();
    let mut client = c.client();
    send(&mut client, 0, 50, 200);
    c.wait_applied(50);
    let leader = c.leader();
    let dir = c.dir(leader);

    // The leader stops: it hands over leadership first, then its node closes.
    let doc = json(&dir, &["stop", "--timeout", "30"]);
    assert_eq!(doc["action"], "stop");
    assert_eq!(doc["result"], "ok");
    wait_for("the stopped member's agent to end", LIMIT, || {
        (!c.node(leader).is_running()).then_some(())
    });
    c.close(leader);
    let new_leader = c.leader();
    assert_ne!(new_leader, leader);
    ok(tool(&c.dir(new_leader), &["is-leader"]));

    // The tool sees the stopped member as stopped (its process, this one, lives on).
    let run = tool(&dir, &["is-leader"]);
    assert_fails(&run, &["not running", &dir.display().to_string()]);
    assert_fails(&tool(&dir, &["pid"]), &["not running"]);
    assert_fails(&tool(&dir, &["stop"]), &["not running"]);
    let doc = json(&dir, &["stat"]);
    assert_eq!(doc["running"], false);
    assert!(
        ok(tool(&dir, &["stat"]))
            .stdout
            .contains("node not running")
    );
    let doc = json(&dir, &["list-members"]);
    assert_eq!(doc["running"], false);
    // A stopped member's file still names every member's endpoints.
    let endpoints = tandem_cluster::transport::MemberEndpoints::parse(&c.members).unwrap();
    for (id, m) in doc["members"].as_array().unwrap().iter().enumerate() {
        let e = endpoints.get(id as u32).unwrap();
        assert_eq!(m["endpoint"], e.client.to_string(), "{m}");
        assert_eq!(m["peer_endpoint"], e.peer.to_string(), "{m}");
    }
    assert_eq!(json(&dir, &["describe"])["running"], false);

    // The other two keep serving the same client session.
    send(&mut client, 50, 50, 200);
    c.wait_applied(100);
    let doc = json(&c.dir(new_leader), &["list-members"]);
    assert_eq!(doc["leader_id"], new_leader);
    assert_eq!(doc["running"], true);

    // A follower stops too (it leads nothing, so it just stops) after the old leader is back.
    c.restart(leader);
    c.wait_applied(100);
    let follower = c.others(new_leader)[0];
    let run = ok(tool(&c.dir(follower), &["stop"]));
    assert!(run.stdout.contains("stop: done"), "{}", run.stdout);
    wait_for("the stopped follower's agent to end", LIMIT, || {
        (!c.node(follower).is_running()).then_some(())
    });
    c.close(follower);
    send(&mut client, 100, 20, 200);
    c.wait_applied(120);
    client.close();
    drop(c);
}

#[test]
fn shutdown_of_the_whole_cluster_from_a_follower() {
    let _serial = serial();
    let mut c = LiveCluster::launch();
    let mut client = c.client();
    send(&mut client, 0, 50, 200);
    let hash = c.wait_applied(50);
    let leader = c.leader();
    let follower = c.others(leader)[0];

    let doc = json(&c.dir(follower), &["shutdown", "--timeout", "30"]);
    assert_eq!(doc["action"], "shutdown");
    assert_eq!(doc["result"], "ok");
    // Snapshot, then every member stops.
    wait_for("every member stopped", LIMIT, || {
        c.nodes
            .iter()
            .flatten()
            .all(|n| !n.is_running())
            .then_some(())
    });
    let positions: Vec<u64> = (0..3)
        .map(|i| c.node(i).control().snapshot_position())
        .collect();
    assert!(positions[0] > 0, "no shutdown snapshot: {positions:?}");
    assert!(
        positions.iter().all(|&p| p == positions[0]),
        "{positions:?}"
    );
    client.close();
    c.close_all();
    for id in 0..3 {
        let dir = c.dir(id);
        assert_fails(&tool(&dir, &["is-leader"]), &["not running"]);
        assert_eq!(json(&dir, &["stat"])["running"], false);
        let plan = json(&dir, &["recovery-plan"]);
        assert_eq!(plan["snapshot"]["position"], positions[0], "{plan}");
    }
    // A restart resumes from the shutdown snapshot with the same state.
    for id in 0..3 {
        c.restart(id);
    }
    c.leader();
    assert_eq!(c.wait_applied(50), hash);
    drop(c);
}

#[test]
fn invalidate_latest_snapshot_after_a_live_run_then_restart_from_the_previous() {
    let _serial = serial();
    let mut c = LiveCluster::launch();
    let mut client = c.client();
    send(&mut client, 0, 40, 300);
    c.wait_applied(40);
    let leader = c.leader();
    let older = snapshot_via(&c, leader);
    send(&mut client, 40, 40, 300);
    c.wait_applied(80);
    let newer = snapshot_via(&c, leader);
    assert!(older < newer);
    send(&mut client, 80, 20, 300);
    let hash = c.wait_applied(100);
    client.close();
    let target = c.others(leader)[0];
    let dir = c.dir(target);

    // Refused while the member runs, and nothing changes.
    let run = tool(&dir, &["invalidate-latest-snapshot"]);
    assert_fails(
        &run,
        &[
            "node is running",
            "invalidate-latest-snapshot",
            &std::process::id().to_string(),
        ],
    );
    assert_eq!(
        json(&dir, &["recovery-plan"])["snapshot"]["position"],
        newer
    );

    c.close_all();
    let plan = json(&dir, &["recovery-plan"]);
    assert_eq!(plan["snapshot"]["position"], newer, "{plan}");
    let run = ok(tool(&dir, &["invalidate-latest-snapshot"]));
    assert!(
        run.stdout
            .contains(&format!("invalidated the snapshot set at position {newer}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "the next start uses the snapshot set at position {older}"
        )),
        "{}",
        run.stdout
    );
    let plan = json(&dir, &["recovery-plan"]);
    assert_eq!(plan["snapshot"]["position"], older, "{plan}");
    let doc = json(&dir, &["recording-log"]);
    let invalid: Vec<&serde_json::Value> = doc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "snapshot" && e["valid"] == false)
        .collect();
    assert!(!invalid.is_empty(), "{doc}");
    assert!(invalid.iter().all(|e| e["position"] == newer), "{doc}");

    // The member restarts from the older snapshot (taken after 40 messages), replays the log
    // after it, and ends with the same state as the members that started from the newer one.
    for id in 0..3 {
        c.restart(id);
    }
    c.leader();
    assert_eq!(c.wait_applied(100), hash);
    assert_eq!(c.restored_from(target), Some(40));
    for id in c.others(target) {
        assert_eq!(c.restored_from(id), Some(80));
    }

    assert_eq!(json(&dir, &["stat"])["running"], true);
    let mut client = c.client();
    send(&mut client, 100, 10, 300);
    c.wait_applied(110);
    client.close();
    drop(c);
}

#[test]
fn commands_on_a_member_whose_cluster_has_no_quorum_still_read_and_time_out_cleanly() {
    let _serial = serial();
    let mut c = LiveCluster::launch();
    let leader = c.leader();
    // Two members gone: the third cannot elect a leader or snapshot; the tool still reads it
    // and an action that nobody can complete times out, naming the action. A request the node
    // has not taken is withdrawn; one it took (to forward) stays in progress, never pending.
    let lone = c.others(leader)[0];
    for id in 0..3 {
        if id != lone {
            c.close(id);
        }
    }
    let dir = c.dir(lone);
    assert_eq!(json(&dir, &["stat"])["running"], true);
    let run = tool(&dir, &["snapshot", "--timeout", "0.5"]);
    assert_fails(&run, &["timed out", "snapshot", "control.dat"]);
    let left = c.node(lone).control().pending_request();
    assert!(
        matches!(left, None | Some((_, "snapshot", true))),
        "request left pending: {left:?}"
    );
    assert_ne!(c.node(lone).role(), Role::Leader);
    drop(c);
}
