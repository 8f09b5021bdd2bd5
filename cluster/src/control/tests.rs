//! Tests of the control file through its public API (plus raw byte edits of the file).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const IDENT: ControlIdent = ControlIdent {
    cluster_id: 0xC1,
    member_id: 1,
    member_count: 3,
};

const MEMBERS: &str = "0=127.0.0.1:9010,1=127.0.0.1:9020,2=127.0.0.1:9030";

fn poke(dir: &Path, byte_offset: u64, value: u64) {
    let file = fs::OpenOptions::new()
        .write(true)
        .open(dir.join(CONTROL_FILE_NAME))
        .unwrap();
    file.write_all_at(&value.to_ne_bytes(), byte_offset)
        .unwrap();
}

#[test]
fn create_and_open_see_each_others_writes() {
    let dir = tempfile::tempdir().unwrap();
    let node = ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap();
    let tool = ControlFile::open(dir.path()).unwrap();
    assert_eq!(tool.version(), FORMAT_VERSION);
    assert_eq!(
        fs::metadata(tool.path()).unwrap().len(),
        FILE_LEN_BYTES as u64
    );
    assert_eq!(tool.pid(), u64::from(std::process::id()));
    assert_eq!(
        (tool.cluster_id(), tool.member_id(), tool.member_count()),
        (0xC1, 1, 3)
    );
    assert!(tool.start_timestamp_ns() > 0);
    assert!(tool.is_owner_alive());
    assert_eq!(tool.role(), Some(MemberRole::Follower));
    assert_eq!(tool.leader_id(), None);

    node.set_role(MemberRole::Leader);
    node.set_term(7);
    node.set_leader_id(Some(1));
    node.set_election_state(17);
    node.set_append_position(4096);
    node.set_commit_position(2048);
    node.set_durable_position(1024);
    node.set_log_start_position(512);
    node.set_snapshot_position(256);
    node.set_updated_ns(99);
    let progress = MemberProgress {
        append_position: 100,
        commit_position: 90,
        last_heard_ns: 5,
    };
    node.set_member_progress(2, progress);
    node.increment(Counter::DatagramsIn);
    node.add(Counter::BytesIn, 1500);
    node.set_counter(Counter::SessionsOpen, 4);

    assert_eq!(tool.role(), Some(MemberRole::Leader));
    assert_eq!(
        (tool.term(), tool.leader_id(), tool.election_state()),
        (7, Some(1), 17)
    );
    assert_eq!(
        [
            tool.append_position(),
            tool.commit_position(),
            tool.durable_position(),
            tool.log_start_position(),
            tool.snapshot_position(),
            tool.updated_ns(),
        ],
        [4096, 2048, 1024, 512, 256, 99]
    );
    assert_eq!(tool.member_progress(2), Some(progress));
    assert_eq!(tool.member_progress(0), Some(MemberProgress::default()));
    assert_eq!(tool.member_progress(3), None, "beyond the member count");
    assert_eq!(tool.counter(Counter::DatagramsIn), 1);
    let counters = tool.counters();
    assert_eq!(counters.len(), Counter::ALL.len());
    assert!(counters.contains(&("bytes_in", 1500)));
    assert!(counters.contains(&("sessions_open", 4)));

    // And the other way: the tool's toggle writes are seen by the node's mapping.
    let id = tool.request(Action::Stop).unwrap();
    assert_eq!(node.poll_request(), Some((id, Action::Stop)));
}

#[test]
fn create_replaces_a_stale_file_and_a_mapped_reader_survives() {
    let dir = tempfile::tempdir().unwrap();
    let first = ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap();
    first.set_term(3);
    let old_reader = ControlFile::open(dir.path()).unwrap();
    let second = ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap();
    assert_eq!(second.term(), 0, "a fresh file");
    assert_eq!(old_reader.term(), 3, "the old mapping is still valid");
    assert_eq!(ControlFile::open(dir.path()).unwrap().term(), 0);
    assert!(!dir.path().join("control.dat.tmp").exists());
}

#[test]
fn create_checks_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    for (member_id, member_count) in [(0, 0), (3, 3), (0, 17)] {
        let ident = ControlIdent {
            member_id,
            member_count,
            ..IDENT
        };
        assert!(matches!(
            ControlFile::create(dir.path(), ident, MEMBERS),
            Err(ControlError::InvalidIdent { .. })
        ));
    }
}

#[test]
fn members_list_round_trips_with_client_and_peer_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let given = "0=127.0.0.1:9010, 1=localhost:9020,2=[::1]:9030";
    let _node = ControlFile::create(dir.path(), IDENT, given).unwrap();
    let tool = ControlFile::open(dir.path()).unwrap();
    let members = tool.member_endpoints().unwrap();
    assert_eq!(
        members,
        crate::transport::MemberEndpoints::parse(given).unwrap()
    );
    let endpoints: Vec<(u32, String, String)> = members
        .iter()
        .map(|m| (m.id, m.client.to_string(), m.peer.to_string()))
        .collect();
    assert_eq!(
        endpoints,
        [
            (0, "127.0.0.1:9010".into(), "127.0.0.1:9011".into()),
            (1, "127.0.0.1:9020".into(), "127.0.0.1:9021".into()),
            (2, "[::1]:9030".into(), "[::1]:9031".into()),
        ]
    );
    // Stored as given, length-prefixed, at byte 18304.
    let bytes = fs::read(tool.path()).unwrap();
    assert_eq!(bytes.len(), 19_328);
    assert_eq!(
        u64::from_ne_bytes(bytes[18_304..18_312].try_into().unwrap()),
        given.len() as u64
    );
    assert_eq!(&bytes[18_312..18_312 + given.len()], given.as_bytes());
    assert!(bytes[18_312 + given.len()..].iter().all(|&b| b == 0));
}

#[test]
fn create_refuses_a_members_list_too_long_or_not_matching_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let padding = " ".repeat(MEMBERS_LIST_MAX_BYTES);
    let long = format!("0=127.0.0.1:9010,{padding}1=127.0.0.1:9020,2=127.0.0.1:9030");
    let err = ControlFile::create(dir.path(), IDENT, &long).unwrap_err();
    assert!(
        matches!(
            err,
            ControlError::MembersListTooLong {
                max_bytes: 1016,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("at most 1016"), "{err}");
    assert!(!dir.path().join(CONTROL_FILE_NAME).exists());
    // Exactly the limit is fine.
    let fits = format!(
        "0=127.0.0.1:9010,{}1=127.0.0.1:9020,2=127.0.0.1:9030",
        " ".repeat(MEMBERS_LIST_MAX_BYTES - 50)
    );
    assert_eq!(fits.len(), MEMBERS_LIST_MAX_BYTES);
    let _node = ControlFile::create(dir.path(), IDENT, &fits).unwrap();
    assert_eq!(
        ControlFile::open(dir.path())
            .unwrap()
            .member_endpoints()
            .unwrap()
            .len(),
        3
    );
    for bad in [
        "",
        "garbage",
        "0=127.0.0.1:9010,1=127.0.0.1:9020",
        "0=127.0.0.1:9010,1=127.0.0.1:9020,3=127.0.0.1:9030",
    ] {
        let err = ControlFile::create(dir.path(), IDENT, bad).unwrap_err();
        assert!(
            matches!(err, ControlError::InvalidIdent { .. }),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn a_damaged_members_area_gives_a_typed_error_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let _node = ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap();
    let check = |offset: u64, bytes: &[u8], expected_offset: u64, needle: &str| {
        let path = dir.path().join(CONTROL_FILE_NAME);
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(bytes, offset).unwrap();
        let tool = ControlFile::open(dir.path()).expect("the rest of the file still opens");
        let err = tool.member_endpoints().unwrap_err();
        let ControlError::BadMembers {
            offset: found_offset,
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*found_offset, expected_offset, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("control.dat") && text.contains(needle),
            "{text}"
        );
        // Restore the original area.
        let mut area = vec![0_u8; 1024];
        area[..8].copy_from_slice(&(MEMBERS.len() as u64).to_ne_bytes());
        area[8..8 + MEMBERS.len()].copy_from_slice(MEMBERS.as_bytes());
        file.write_all_at(&area, 18_304).unwrap();
        file.write_all_at(&3_u64.to_ne_bytes(), 48).unwrap();
        assert!(tool.member_endpoints().is_ok());
    };
    check(18_304, &0_u64.to_ne_bytes(), 18_304, "length 0");
    check(18_304, &1017_u64.to_ne_bytes(), 18_304, "length 1017");
    check(18_304, &u64::MAX.to_ne_bytes(), 18_304, "is not 1 to 1016");
    check(18_312 + 5, &[0xFF, 0xFE], 18_317, "not UTF-8");
    check(18_312, b"0=nonsense", 18_312, "0=nonsense");
    check(18_312 + 17, b"5", 18_312, "does not list exactly");
    // Header says 2 members; the list holds 3.
    check(48, &2_u64.to_ne_bytes(), 18_312, "does not list exactly");
}

#[test]
fn toggle_round_trip_with_a_node_thread() {
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap());
    let tool = ControlFile::open(dir.path()).unwrap();
    let node_thread = {
        let node = Arc::clone(&node);
        std::thread::spawn(move || {
            let mut served = 0;
            while served < 2 {
                match node.poll_request() {
                    Some((id, Action::Purge(position))) => {
                        let result = ActionResult {
                            code: ResultCode::Ok,
                            value: position,
                            extra: 4096,
                        };
                        node.complete(id, result).unwrap();
                        served += 1;
                    }
                    Some((id, Action::Snapshot)) => {
                        node.complete(id, ActionResult::ok(777)).unwrap();
                        served += 1;
                    }
                    Some((id, _)) => {
                        let result = ActionResult::with_code(ResultCode::Rejected);
                        node.complete(id, result).unwrap();
                    }
                    None => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        })
    };
    let wait = Duration::from_secs(60);
    let id = tool.request(Action::Purge(1 << 20)).unwrap();
    let result = tool.wait_for(id, wait).unwrap();
    assert_eq!(
        (result.code, result.value, result.extra),
        (ResultCode::Ok, 1 << 20, 4096)
    );
    let id = tool.request(Action::Snapshot).unwrap();
    assert_eq!(tool.wait_for(id, wait).unwrap(), ActionResult::ok(777));
    assert_eq!(tool.result(id), Some(ActionResult::ok(777)));
    node_thread.join().unwrap();
    assert_eq!(tool.pending_request(), None);
}

#[test]
fn second_request_is_busy_and_poll_takes_a_request_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap();
    let tool = ControlFile::open(dir.path()).unwrap();
    let other_tool = ControlFile::open(dir.path()).unwrap();
    let first = tool.request(Action::Suspend).unwrap();
    assert_eq!(
        node.pending_request(),
        Some((first.seq(), "suspend", false))
    );
    match other_tool.request(Action::Resume) {
        Err(err @ ControlError::Busy { .. }) => {
            assert!(
                err.to_string().contains("suspend request 1 pending"),
                "{err}"
            );
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    let (id, action) = node.poll_request().unwrap();
    assert_eq!((id, action), (first, Action::Suspend));
    assert_eq!(node.poll_request(), None, "taken once");
    assert!(!tool.cancel(first), "too late to cancel");
    assert!(matches!(
        tool.request(Action::Resume),
        Err(ControlError::Busy { .. })
    ));
    node.complete(id, ActionResult::ok(0)).unwrap();
    assert!(matches!(
        node.complete(id, ActionResult::ok(0)),
        Err(ControlError::NotInProgress { request: 1, .. })
    ));
    let second = other_tool.request(Action::Resume).unwrap();
    assert!(second.seq() > first.seq());
    assert!(other_tool.cancel(second));
    assert_eq!(node.poll_request(), None, "cancelled");
}

#[test]
fn wait_for_times_out_naming_the_action() {
    let dir = tempfile::tempdir().unwrap();
    let _node = ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap();
    let tool = ControlFile::open(dir.path()).unwrap();
    let id = tool.request(Action::Shutdown).unwrap();
    let err = tool.wait_for(id, Duration::from_millis(5)).unwrap_err();
    assert!(
        matches!(
            err,
            ControlError::Timeout {
                action: "shutdown",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("shutdown"), "{err}");
}

#[test]
fn wait_for_a_dead_node_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let _node = ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap();
    poke(dir.path(), 24, u64::from(i32::MAX as u32)); // pid above any pid_max
    let tool = ControlFile::open(dir.path()).unwrap();
    assert!(!tool.is_owner_alive());
    let id = tool.request(Action::Abort).unwrap();
    let err = tool.wait_for(id, Duration::from_secs(60)).unwrap_err();
    assert!(
        matches!(
            err,
            ControlError::OwnerDead {
                action: "abort",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn is_owner_alive_is_false_for_a_stale_file() {
    let dir = tempfile::tempdir().unwrap();
    let node = ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap();
    assert!(node.is_owner_alive());
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = u64::from(child.id());
    child.wait().unwrap();
    poke(dir.path(), 24, dead_pid);
    assert_eq!(node.pid(), dead_pid);
    // The reaped child's pid is almost surely unused; a reuse within this test would be a
    // live process, which is the right answer anyway, so only check the certain cases.
    for pid in [0, u64::from(i32::MAX as u32), u64::MAX] {
        poke(dir.path(), 24, pid);
        assert!(!node.is_owner_alive(), "pid {pid}");
    }
}

#[test]
fn unknown_action_code_is_completed_as_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let node = ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap();
    let id = node.request(Action::Snapshot).unwrap();
    // Rewrite the pending toggle's action code to one this build does not know.
    poke(dir.path(), 1280, (id.seq() << 16) | (2 << 8) | 0x42);
    assert_eq!(node.poll_request(), None);
    assert_eq!(node.pending_request(), None);
}

#[test]
fn error_ring_keeps_the_newest_records() {
    let dir = tempfile::tempdir().unwrap();
    let node = ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap();
    let tool = ControlFile::open(dir.path()).unwrap();
    assert!(tool.errors().is_empty());
    node.record_error(10, 7, "first");
    assert_eq!(
        tool.errors(),
        [ErrorRecord {
            index: 0,
            timestamp_ns: 10,
            code: 7,
            message: "first".to_owned(),
        }]
    );
    let total = ERROR_RECORDS as u64 * 2 + 5;
    for i in 1..total {
        node.record_error(10 + i, i as u32, &format!("error number {i}"));
    }
    let errors = tool.errors();
    assert_eq!(tool.error_count(), total);
    assert_eq!(tool.counter(Counter::Errors), total);
    assert_eq!(errors.len(), ERROR_RECORDS);
    for (k, record) in errors.iter().enumerate() {
        let i = total - 1 - k as u64;
        assert_eq!(record.index, i);
        assert_eq!(record.timestamp_ns, 10 + i);
        assert_eq!(record.code, i as u32);
        assert_eq!(record.message, format!("error number {i}"));
    }
}

#[test]
fn long_messages_are_cut_on_a_character_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let node = ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap();
    let message = "é".repeat(200); // 400 bytes of two-byte characters
    node.record_error(1, 1, &message);
    let read = &node.errors()[0].message;
    assert_eq!(read.len(), ERROR_MESSAGE_MAX_BYTES);
    assert!(message.starts_with(read.as_str()));
    node.record_error(2, 2, &"x".repeat(231));
    node.record_error(3, 3, &format!("{}é", "x".repeat(231)));
    let errors = node.errors();
    assert_eq!(
        errors[0].message,
        "x".repeat(231),
        "a cut character is dropped whole"
    );
    assert_eq!(errors[1].message.len(), 231);
}

#[test]
fn error_ring_stays_consistent_under_a_concurrent_writer() {
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap());
    let tool = ControlFile::open(dir.path()).unwrap();
    let writer = {
        let node = Arc::clone(&node);
        std::thread::spawn(move || {
            for i in 0..20_000_u64 {
                node.record_error(
                    i,
                    i as u32,
                    &format!("record {i} {}", "#".repeat((i % 100) as usize)),
                );
                if i % 1000 == 0 {
                    std::thread::yield_now();
                }
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        for record in tool.errors() {
            let i = record.index;
            assert_eq!(
                (record.timestamp_ns, u64::from(record.code)),
                (i, i),
                "torn record"
            );
            let expected = format!("record {i} {}", "#".repeat((i % 100) as usize));
            assert_eq!(record.message, expected, "torn message");
        }
        reads += 1;
        std::thread::sleep(Duration::from_micros(100));
    }
    writer.join().unwrap();
    assert_eq!(tool.errors().len(), ERROR_RECORDS);
}

#[test]
fn open_reports_missing_files_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        ControlFile::open(dir.path().join("nope")),
        Err(ControlError::DirNotFound { .. })
    ));
    let err = ControlFile::open(dir.path()).unwrap_err();
    assert!(matches!(err, ControlError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("control.dat"), "{err}");
    let file = dir.path().join("plain");
    fs::write(&file, b"x").unwrap();
    assert!(matches!(
        ControlFile::open(&file),
        Err(ControlError::NotADirectory { .. })
    ));
    assert!(matches!(
        ControlFile::create(dir.path().join("nope"), IDENT, MEMBERS),
        Err(ControlError::DirNotFound { .. })
    ));
}

#[test]
fn open_reports_bad_files_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONTROL_FILE_NAME);
    let _node = ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap();
    let good = fs::read(&path).unwrap();

    let check = |bytes: &[u8], expected: fn(&ControlError) -> bool| {
        fs::write(&path, bytes).unwrap();
        let err = ControlFile::open(dir.path()).unwrap_err();
        assert!(expected(&err), "{err:?}");
        assert!(
            err.to_string().contains("control.dat"),
            "names the file: {err}"
        );
    };
    check(&good[..100], |e| {
        matches!(e, ControlError::Truncated { len_bytes: 100, .. })
    });
    check(&good[..4], |e| matches!(e, ControlError::Truncated { .. }));
    check(&[], |e| {
        matches!(e, ControlError::Truncated { len_bytes: 0, .. })
    });
    check(&[0; FILE_LEN_BYTES], |e| {
        matches!(e, ControlError::Uninitialised { .. })
    });
    check(b"#!/bin/sh\necho this is not a control file\n", |e| {
        matches!(e, ControlError::BadMagic { .. })
    });
    let mut wrong_version = good.clone();
    wrong_version[8..16].copy_from_slice(&1_u64.to_ne_bytes());
    check(&wrong_version, |e| {
        matches!(
            e,
            ControlError::Version {
                found: 1,
                expected: 2,
                ..
            }
        )
    });
    let mut bad_area = good.clone();
    bad_area[96..104].copy_from_slice(&512_u64.to_ne_bytes());
    check(&bad_area, |e| {
        matches!(
            e,
            ControlError::Corrupt {
                what: "members area length",
                value: 512,
                ..
            }
        )
    });
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 8]);
    check(&longer, |e| {
        matches!(
            e,
            ControlError::Corrupt {
                what: "actual file length",
                ..
            }
        )
    });
    let mut bad_count = good.clone();
    bad_count[48..56].copy_from_slice(&99_u64.to_ne_bytes());
    check(&bad_count, |e| {
        matches!(
            e,
            ControlError::Corrupt {
                what: "member count",
                ..
            }
        )
    });
    fs::write(&path, &good).unwrap();
    assert!(ControlFile::open(dir.path()).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn open_never_panics_on_random_files(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        len in prop_oneof![Just(0_usize), 1..64_usize, Just(FILE_LEN_BYTES), 0..FILE_LEN_BYTES + 64],
        keep_magic in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut content = bytes;
        content.resize(len, 0xA5);
        if keep_magic && content.len() >= 16 {
            content[..8].copy_from_slice(b"TNDMCTRL");
            content[8..16].copy_from_slice(&FORMAT_VERSION.to_ne_bytes());
        }
        fs::write(dir.path().join(CONTROL_FILE_NAME), &content).unwrap();
        prop_assert!(ControlFile::open(dir.path()).is_err());
    }

    #[test]
    fn open_never_panics_on_a_damaged_valid_file(
        offset in 0..FILE_LEN_BYTES,
        value in any::<u8>(),
        cut in prop::option::of(0..FILE_LEN_BYTES),
    ) {
        let dir = tempfile::tempdir().unwrap();
        drop(ControlFile::create(dir.path(), IDENT, MEMBERS).unwrap());
        let path = dir.path().join(CONTROL_FILE_NAME);
        let mut content = fs::read(&path).unwrap();
        content[offset] = value;
        if let Some(cut) = cut {
            content.truncate(cut);
        }
        fs::write(&path, &content).unwrap();
        if let Ok(file) = ControlFile::open(dir.path()) {
            // Whatever the file holds, reading it must not panic.
            let _ = (file.role(), file.leader_id(), file.counters(), file.errors());
            let _ = (file.member_progress(0), file.pending_request(), file.is_owner_alive());
            let _ = file.member_endpoints();
        } else {
            prop_assert!(cut.is_some() || offset < 128);
        }
    }
}
