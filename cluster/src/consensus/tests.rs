//! Unit tests of the core in the openraft style: feed inputs, compare the emitted commands.
//! Also shows that every deliberate bug flag changes behaviour observably (unit tests build
//! with `cfg(test)`, so the flags are honoured here).

use crate::codec::client::{Egress, EventCode, Ingress};
use crate::codec::entry::SessionOpenPayload;
use crate::codec::frame::{EntryType, FrameHeader, encode_frame};
use crate::codec::peer::PeerMessage;
use crate::consensus::*;
use crate::testkit::{TestService, test_config};
use tandem_service_api::Role;

fn header(term: u64, entry_type: EntryType, session: u64, seq: u64) -> FrameHeader {
    FrameHeader {
        entry_type,
        flags: 0,
        term: Term(term),
        session_id: SessionId(session),
        sequence: seq,
        timestamp: 0,
    }
}

fn frame(term: u64) -> Vec<u8> {
    let mut b = Vec::new();
    encode_frame(&mut b, &header(term, EntryType::Padding, 0, 0), &[1, 2, 3]);
    b
}

fn log_of_terms(terms: &[u64]) -> MemLog {
    let mut log = MemLog::new();
    for &t in terms {
        log.append_raw(&frame(t));
    }
    log
}

/// Each test frame is 56 bytes.
const F: u64 = 56;

struct Harness {
    core: Consensus<MemLog>,
    app: Box<dyn Application>,
    out: Outbox,
}

impl Harness {
    fn new(id: u32, log: MemLog, ns: Option<NodeState>, bugs: BugFlags) -> Self {
        let mut cfg = test_config(MemberId(id), 3);
        cfg.bugs = bugs;
        let mut h = Self {
            core: Consensus::new(cfg, log, ns, None),
            app: Box::new(NoopApplication),
            out: Outbox::new(),
        };
        h.core.start(0, &mut *h.app, &mut h.out);
        h.out.clear();
        h
    }

    fn voter(id: u32, log: MemLog) -> Self {
        Self::new(id, log, Some(NodeState::default()), BugFlags::default())
    }

    fn input(&mut self, input: Input<'_>) {
        self.out.clear();
        self.core.handle(input, &mut *self.app, &mut self.out);
    }

    fn peer(&mut self, from: u32, msg: PeerMessage<'_>) {
        self.input(Input::Peer {
            from: MemberId(from),
            msg,
        });
    }

    /// Follower `from` acknowledges (successfully) the log up to `position` in `term`.
    fn acked(&mut self, from: u32, term: Term, position: LogPosition) {
        self.peer(
            from,
            PeerMessage::AppendResponse {
                term,
                follower: MemberId(from),
                success: true,
                learner: false,
                position,
                hint_term: Term(0),
            },
        );
    }

    fn sent(&self) -> Vec<(MemberId, String)> {
        self.out
            .peer_messages()
            .map(|(to, m)| (to, format!("{m:?}")))
            .collect()
    }

    fn persist_ids(&self) -> Vec<(u64, NodeState)> {
        self.out
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::PersistState { id, state } => Some((*id, *state)),
                _ => None,
            })
            .collect()
    }

    fn complete_io(&mut self) {
        let cmds = std::mem::take(&mut self.out.commands);
        let bytes = std::mem::take(&mut self.out.bytes);
        let mut next = Outbox::new();
        for c in &cmds {
            match c {
                Command::PersistState { id, .. } => {
                    self.core
                        .handle(Input::StatePersisted { id: *id }, &mut *self.app, &mut next);
                }
                Command::Appended { to, epoch, .. } => self.core.handle(
                    Input::LogDurable {
                        position: *to,
                        epoch: *epoch,
                    },
                    &mut *self.app,
                    &mut next,
                ),
                _ => {}
            }
        }
        self.out.commands = cmds;
        self.out.bytes = bytes;
        let base = self.out.bytes.len();
        for c in next.commands {
            let c = match c {
                Command::SendPeer { to, bytes } => Command::SendPeer {
                    to,
                    bytes: bytes.start + base..bytes.end + base,
                },
                Command::SendClient { to, bytes } => Command::SendClient {
                    to,
                    bytes: bytes.start + base..bytes.end + base,
                },
                c => c,
            };
            self.out.commands.push(c);
        }
        self.out.bytes.extend_from_slice(&next.bytes);
    }

    /// Makes this member (id 0 of 3) leader of term 1 by feeding it the votes it asks for.
    fn make_leader(&mut self) {
        let term = self.core.term().next();
        self.input(Input::Tick {
            now_ns: 250_000_000,
        });
        self.peer(
            1,
            PeerMessage::VoteResponse {
                pre_vote: true,
                term,
                voter: MemberId(1),
                granted: true,
            },
        );
        assert_eq!(self.core.election_state(), ElectionState::Nominate);
        self.complete_io();
        assert_eq!(self.core.election_state(), ElectionState::CandidateBallot);
        self.peer(
            1,
            PeerMessage::VoteResponse {
                pre_vote: false,
                term,
                voter: MemberId(1),
                granted: true,
            },
        );
        assert_eq!(self.core.role(), Role::Leader);
        self.complete_io();
    }
}

fn vote_request(
    term: u64,
    candidate: u32,
    last_term: u64,
    last_position: u64,
) -> PeerMessage<'static> {
    PeerMessage::VoteRequest {
        pre_vote: false,
        transfer: false,
        term: Term(term),
        candidate: MemberId(candidate),
        last_term: Term(last_term),
        last_position: LogPosition(last_position),
    }
}

fn granted(h: &Harness) -> Option<bool> {
    h.out.peer_messages().find_map(|(_, m)| match m {
        PeerMessage::VoteResponse { granted, .. } => Some(granted),
        _ => None,
    })
}

fn append<'a>(
    term: u64,
    prev: u64,
    prev_term: u64,
    commit: u64,
    frames: &'a [u8],
) -> PeerMessage<'a> {
    PeerMessage::Append {
        term: Term(term),
        leader: MemberId(0),
        prev_position: LogPosition(prev),
        prev_term: Term(prev_term),
        commit: LogPosition(commit),
        frames,
    }
}

/// The last append response sent.
fn append_response(h: &Harness) -> Option<(bool, LogPosition)> {
    h.out
        .peer_messages()
        .filter_map(|(_, m)| match m {
            PeerMessage::AppendResponse {
                success, position, ..
            } => Some((success, position)),
            _ => None,
        })
        .last()
}

// ---- elections --------------------------------------------------------------------------------

#[test]
fn a_vote_leaves_only_after_term_and_vote_are_durable() {
    let mut h = Harness::voter(1, MemLog::new());
    h.peer(0, vote_request(1, 0, 0, 0));
    let persists = h.persist_ids();
    assert_eq!(
        persists.last().map(|p| p.1.voted_for),
        Some(Some(MemberId(0)))
    );
    assert_eq!(persists.last().map(|p| p.1.term), Some(Term(1)));
    assert!(
        h.sent().is_empty(),
        "nothing leaves before the persist completes"
    );
    let last = persists.last().expect("persist").0;
    h.input(Input::StatePersisted { id: last - 1 });
    if last > 1 {
        assert!(
            h.sent().is_empty(),
            "an earlier completion does not release the vote"
        );
    }
    h.input(Input::StatePersisted { id: last });
    assert_eq!(granted(&h), Some(true));
}

#[test]
fn a_candidate_asks_for_votes_only_after_its_term_is_durable() {
    let mut h = Harness::voter(0, MemLog::new());
    h.input(Input::Tick {
        now_ns: 250_000_000,
    });
    assert_eq!(h.core.election_state(), ElectionState::Canvass);
    assert_eq!(h.core.term(), Term(0), "a pre-vote changes no term");
    assert_eq!(h.sent().len(), 2);
    h.peer(
        2,
        PeerMessage::VoteResponse {
            pre_vote: true,
            term: Term(1),
            voter: MemberId(2),
            granted: true,
        },
    );
    assert_eq!(h.core.term(), Term(1));
    assert_eq!(h.core.election_state(), ElectionState::Nominate);
    assert!(h.sent().is_empty(), "vote requests wait for the persist");
    h.complete_io();
    let requests: Vec<_> = h
        .out
        .peer_messages()
        .filter(|(_, m)| {
            matches!(
                m,
                PeerMessage::VoteRequest {
                    pre_vote: false,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(requests.len(), 2);
}

#[test]
fn pre_votes_are_refused_while_a_live_leader_is_heard() {
    let mut h = Harness::voter(1, MemLog::new());
    h.peer(0, append(1, 0, 0, 0, &[]));
    h.complete_io();
    let pre = PeerMessage::VoteRequest {
        pre_vote: true,
        transfer: false,
        term: Term(2),
        candidate: MemberId(2),
        last_term: Term(0),
        last_position: LogPosition(0),
    };
    h.peer(2, pre);
    assert_eq!(granted(&h), Some(false));
    assert_eq!(h.core.term(), Term(1));
    h.input(Input::Tick {
        now_ns: 150_000_000,
    });
    h.peer(2, pre);
    assert_eq!(
        granted(&h),
        Some(true),
        "after an election timeout of silence"
    );
    assert_eq!(h.core.term(), Term(1), "a pre-vote never changes the term");
}

#[test]
fn a_vote_needs_an_up_to_date_log() {
    let mut h = Harness::voter(1, log_of_terms(&[1, 2]));
    h.peer(0, vote_request(3, 0, 1, 10 * F));
    h.complete_io();
    assert_eq!(
        granted(&h),
        Some(false),
        "lower last term loses despite a longer log"
    );
    h.peer(2, vote_request(3, 2, 2, 2 * F));
    h.complete_io();
    assert_eq!(granted(&h), Some(true));
}

#[test]
fn any_higher_term_makes_a_leader_step_down() {
    let mut h = Harness::voter(0, MemLog::new());
    h.make_leader();
    h.peer(
        2,
        PeerMessage::AppendResponse {
            term: Term(5),
            follower: MemberId(2),
            success: false,
            learner: false,
            position: LogPosition(0),
            hint_term: Term(0),
        },
    );
    assert_eq!(h.core.role(), Role::Follower);
    assert_eq!(h.core.term(), Term(5));
    assert_eq!(h.persist_ids().last().map(|p| p.1.term), Some(Term(5)));
}

#[test]
fn a_leader_that_hears_no_majority_steps_down() {
    let mut h = Harness::voter(0, MemLog::new());
    h.make_leader();
    h.input(Input::Tick {
        now_ns: 300_000_000,
    });
    assert_eq!(h.core.role(), Role::Leader);
    h.input(Input::Tick {
        now_ns: 400_000_000,
    });
    assert_eq!(h.core.role(), Role::Follower);
}

#[test]
fn a_new_leader_commits_earlier_terms_only_through_its_own_entry() {
    let ns = NodeState {
        term: Term(1),
        ..NodeState::default()
    };
    let mut h = Harness::new(0, log_of_terms(&[1]), Some(ns), BugFlags::default());
    h.make_leader();
    assert_eq!(h.core.term(), Term(2));
    let nlt_end = h.core.log_end();
    assert!(nlt_end > LogPosition(F));
    // A follower acknowledges only the old entry: not enough.
    h.acked(1, Term(2), LogPosition(F));
    assert_eq!(h.core.commit_position(), LogPosition(0));
    h.acked(1, Term(2), nlt_end);
    assert_eq!(h.core.commit_position(), nlt_end);
}

// ---- replication ------------------------------------------------------------------------------

#[test]
fn duplicated_or_reordered_appends_never_shorten_the_log() {
    let mut h = Harness::voter(1, MemLog::new());
    let mut two = frame(1);
    two.extend_from_slice(&frame(1));
    h.peer(0, append(1, 0, 0, 0, &two));
    h.complete_io();
    assert_eq!(append_response(&h), Some((true, LogPosition(2 * F))));
    // The first append again (duplicated, arriving late).
    h.peer(0, append(1, 0, 0, 0, &two[..F as usize]));
    assert_eq!(h.core.log_end(), LogPosition(2 * F));
    assert_eq!(append_response(&h), Some((true, LogPosition(2 * F))));
    assert!(
        !h.out
            .commands
            .iter()
            .any(|c| matches!(c, Command::Truncated { .. }))
    );
}

#[test]
fn a_conflicting_suffix_is_truncated_above_the_commit_position() {
    let mut h = Harness::voter(1, log_of_terms(&[1, 1, 1]));
    let f2 = frame(2);
    h.peer(0, append(2, F, 1, F, &f2));
    assert!(
        h.out.commands.iter().any(
            |c| matches!(c, Command::Truncated { position, .. } if *position == LogPosition(F))
        )
    );
    assert_eq!(h.core.log_end(), LogPosition(2 * F));
    assert_eq!(h.core.log().term_at(LogPosition(2 * F)), Some(Term(2)));
    assert_eq!(h.core.commit_position(), LogPosition(F));
}

#[test]
#[should_panic(expected = "below its commit")]
fn truncation_below_the_commit_position_is_a_bug_that_panics() {
    let mut h = Harness::voter(1, MemLog::new());
    let mut two = frame(1);
    two.extend_from_slice(&frame(1));
    h.peer(0, append(1, 0, 0, 2 * F, &two));
    h.complete_io();
    assert_eq!(h.core.commit_position(), LogPosition(2 * F));
    // A (buggy) leader of a later term claims a different frame at a committed position.
    let f3 = frame(3);
    h.peer(0, append(3, 0, 0, 0, &f3));
}

#[test]
fn a_gap_or_mismatch_is_answered_at_once_with_a_hint() {
    let mut h = Harness::voter(1, log_of_terms(&[1, 1]));
    h.peer(0, append(2, 5 * F, 2, 0, &[]));
    h.complete_io();
    assert_eq!(
        append_response(&h),
        Some((false, LogPosition(2 * F))),
        "gap: our end"
    );
    h.peer(0, append(2, 2 * F, 2, 0, &[]));
    let (ok, hint) = append_response(&h).expect("answer");
    assert!(!ok);
    assert_eq!(
        hint,
        LogPosition(0),
        "mismatch: start of our conflicting term run"
    );
}

#[test]
fn follower_commit_is_bounded_by_its_matched_position() {
    let mut h = Harness::voter(1, log_of_terms(&[1, 1, 1]));
    // New leader of term 2 proves a match only up to F, but says its commit is 3F.
    h.peer(0, append(2, F, 1, 3 * F, &[]));
    h.complete_io();
    assert_eq!(append_response(&h), Some((true, LogPosition(F))));
    assert_eq!(h.core.commit_position(), LogPosition(F));
}

/// A follower answers an append of new entries once, when the runtime reports them durable
/// (an answer before would acknowledge nothing new); a heartbeat is answered at once, and so
/// is an append when the last answer is a heartbeat interval old (a slow sync must not keep
/// the leader from hearing the follower).
#[test]
fn a_follower_answers_new_entries_when_durable_or_a_heartbeat_interval_after_its_last_answer() {
    let mut h = Harness::voter(1, MemLog::new());
    let one = frame(1);
    let t0 = 1_000_000;
    h.input(Input::Tick { now_ns: t0 });
    // The first append of the term (its answer waits for the term to be persisted).
    h.peer(0, append(1, 0, 0, 0, &one));
    h.complete_io();
    assert_eq!(append_response(&h), Some((true, LogPosition(F))));
    // Answered just now: the new entry is answered only by its durability report.
    h.peer(0, append(1, F, 1, 0, &one));
    assert_eq!(append_response(&h), None, "{:?}", h.sent());
    h.complete_io();
    assert_eq!(append_response(&h), Some((true, LogPosition(2 * F))));
    // A heartbeat: at once.
    h.peer(0, append(1, 2 * F, 1, 0, &[]));
    assert_eq!(append_response(&h), Some((true, LogPosition(2 * F))));
    // A heartbeat interval after the last answer, new entries are answered at once too.
    let interval = h.core.config().heartbeat_interval_ns;
    h.input(Input::Tick {
        now_ns: t0 + interval,
    });
    h.peer(0, append(1, 2 * F, 1, 0, &one));
    assert_eq!(append_response(&h), Some((true, LogPosition(2 * F))));
    h.complete_io();
    assert_eq!(append_response(&h), Some((true, LogPosition(3 * F))));
}

#[test]
fn a_slow_follower_gets_a_bounded_window_and_does_not_slow_commits() {
    let mut h = Harness::voter(0, MemLog::new());
    h.make_leader();
    h.input(Input::Client {
        from: ClientAddr(1),
        msg: Ingress::Connect {
            correlation_id: 1,
            credentials: b"",
        },
    });
    h.input(Input::Flush);
    h.complete_io();
    let end = h.core.log_end();
    // Only member 1 acknowledges: commit advances without member 2.
    h.acked(1, Term(1), end);
    assert_eq!(h.core.commit_position(), end);
    let opened = h.out.client_messages().any(|(_, e)| {
        matches!(
            e,
            Egress::SessionEvent {
                code: EventCode::Ok,
                session: SessionId(1),
                ..
            }
        )
    });
    assert!(
        opened,
        "the leader answers the connect once the open is applied"
    );
    // Lots of traffic: member 2 never answers; what is sent to it stays within the window.
    let mut sent_to_2 = 0usize;
    for seq in 1..=20_000u64 {
        h.input(Input::Client {
            from: ClientAddr(1),
            msg: Ingress::Message {
                session: SessionId(1),
                sequence: seq,
                payload: &[0u8; 200],
            },
        });
        sent_to_2 += h
            .out
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::SendPeer { to, bytes } if *to == MemberId(2) => Some(bytes.len()),
                _ => None,
            })
            .sum::<usize>();
    }
    let window = h.core.config().max_inflight_bytes as usize;
    assert!(
        sent_to_2 <= window + 70_000,
        "{sent_to_2} bytes sent beyond a {window} window"
    );
}

// ---- deliberate bugs --------------------------------------------------------------------------

fn bugs(f: impl FnOnce(&mut BugFlags)) -> BugFlags {
    let mut b = BugFlags::default();
    f(&mut b);
    b
}

#[test]
fn bug_vote_twice_in_term() {
    for bug in [false, true] {
        let flags = bugs(|b| b.vote_twice_in_term = bug);
        let mut h = Harness::new(1, MemLog::new(), Some(NodeState::default()), flags);
        h.peer(0, vote_request(1, 0, 0, 0));
        h.complete_io();
        assert_eq!(granted(&h), Some(true));
        h.peer(2, vote_request(1, 2, 0, 0));
        h.complete_io();
        assert_eq!(granted(&h), Some(bug), "second vote in the same term");
    }
}

#[test]
fn bug_commit_without_majority() {
    for bug in [false, true] {
        let flags = bugs(|b| b.commit_without_majority = bug);
        let mut h = Harness::new(0, MemLog::new(), Some(NodeState::default()), flags);
        h.make_leader();
        assert_eq!(h.core.commit_position() > LogPosition(0), bug);
    }
}

#[test]
fn bug_skip_prev_term_check() {
    for bug in [false, true] {
        let flags = bugs(|b| b.skip_prev_term_check = bug);
        let mut h = Harness::new(1, log_of_terms(&[1, 1]), Some(NodeState::default()), flags);
        let f3 = frame(3);
        h.peer(0, append(3, 2 * F, 2, 0, &f3));
        h.complete_io();
        assert_eq!(append_response(&h).map(|r| r.0), Some(bug));
    }
}

#[test]
fn bug_ack_beyond_match() {
    for bug in [false, true] {
        let flags = bugs(|b| b.ack_beyond_match = bug);
        let mut h = Harness::new(
            1,
            log_of_terms(&[1, 1, 1]),
            Some(NodeState::default()),
            flags,
        );
        h.peer(0, append(2, F, 1, 3 * F, &[]));
        h.complete_io();
        let want = if bug { 3 * F } else { F };
        assert_eq!(append_response(&h), Some((true, LogPosition(want))));
        assert_eq!(h.core.commit_position(), LogPosition(want));
    }
}

#[test]
fn bug_replay_past_commit_bound() {
    for bug in [false, true] {
        let flags = bugs(|b| b.replay_past_commit_bound = bug);
        let ns = NodeState {
            commit_lower_bound: LogPosition(F),
            ..NodeState::default()
        };
        let h = Harness::new(1, log_of_terms(&[1, 1, 1]), Some(ns), flags);
        let want = if bug { 3 * F } else { F };
        assert_eq!(h.core.applied_position(), LogPosition(want));
    }
}

#[test]
fn bug_wiped_member_votes() {
    for bug in [false, true] {
        let flags = bugs(|b| b.wiped_member_votes = bug);
        let mut h = Harness::new(1, MemLog::new(), None, flags);
        assert_eq!(h.core.is_learner(), !bug);
        h.peer(0, vote_request(1, 0, 0, 0));
        h.complete_io();
        assert_eq!(granted(&h), Some(bug));
    }
}

#[test]
fn bug_truncate_below_commit() {
    for bug in [false, true] {
        let flags = bugs(|b| b.truncate_below_commit = bug);
        let mut h = Harness::new(1, MemLog::new(), Some(NodeState::default()), flags);
        let mut two = frame(1);
        two.extend_from_slice(&frame(1));
        h.peer(0, append(1, 0, 0, 2 * F, &two));
        h.complete_io();
        assert_eq!(h.core.commit_position(), LogPosition(2 * F));
        // The first append, duplicated and late.
        h.peer(0, append(1, 0, 0, 0, &two[..F as usize]));
        let truncated_below_commit = h.out.commands.iter().any(
            |c| matches!(c, Command::Truncated { position, .. } if *position < LogPosition(2 * F)),
        );
        assert_eq!(truncated_below_commit, bug);
    }
}

#[test]
fn bug_apply_duplicates() {
    for bug in [false, true] {
        let mut cfg = test_config(MemberId(1), 3);
        cfg.bugs.apply_duplicates = bug;
        let mut log = MemLog::new();
        let mut open = Vec::new();
        SessionOpenPayload {
            client: ClientAddr(1),
            accepted: true,
            principal: b"",
        }
        .encode(&mut open);
        log.append(&header(1, EntryType::SessionOpen, 0, 9), &open);
        log.append(&header(1, EntryType::SessionMessage, 1, 1), b"a");
        let end = log.append(&header(1, EntryType::SessionMessage, 1, 1), b"a");
        let ns = NodeState {
            commit_lower_bound: end,
            ..NodeState::default()
        };
        let mut core = Consensus::new(cfg, log, Some(ns), None);
        let mut svc = TestService::default();
        let mut out = Outbox::new();
        core.start(0, &mut svc, &mut out);
        assert_eq!(svc.applied.len(), if bug { 2 } else { 1 });
    }
}

#[test]
fn same_inputs_same_outputs() {
    let run = || {
        let mut h = Harness::voter(0, MemLog::new());
        h.make_leader();
        let mut trace = Vec::new();
        for t in 1..50 {
            h.input(Input::Tick {
                now_ns: 300_000_000 + t * 7_000_000,
            });
            trace.push(format!("{:?}", h.out.commands));
            trace.push(format!("{:?}", h.out.bytes));
        }
        trace
    };
    assert_eq!(run(), run());
}

#[test]
fn a_batch_of_client_messages_goes_out_in_one_append_and_is_acknowledged_once() {
    let mut h = Harness::voter(0, MemLog::new());
    h.make_leader();
    h.input(Input::Client {
        from: ClientAddr(1),
        msg: Ingress::Connect {
            correlation_id: 1,
            credentials: b"",
        },
    });
    h.input(Input::Flush);
    h.complete_io();
    let end = h.core.log_end();
    h.acked(1, Term(1), end);
    let mut appends: Vec<(MemberId, usize)> = Vec::new();
    for seq in 1..=64u64 {
        h.input(Input::Client {
            from: ClientAddr(1),
            msg: Ingress::Message {
                session: SessionId(1),
                sequence: seq,
                payload: &[9u8; 64],
            },
        });
        for (to, m) in h.out.peer_messages() {
            if let PeerMessage::Append { frames, .. } = m {
                let n = crate::codec::frame::FrameIter::new(frames).count();
                appends.push((to, n));
            }
        }
    }
    assert_eq!(appends, vec![(MemberId(1), 64), (MemberId(2), 64)]);
    // A follower holding the prefix receives that append and answers once.
    let frames = h.core.log().read_run(end, 1 << 20, 64).to_vec();
    let mut prefix_log = MemLog::new();
    let prefix = h
        .core
        .log()
        .read_run(LogPosition(0), end.0 as usize, 64)
        .to_vec();
    for item in crate::codec::frame::FrameIter::new(&prefix) {
        prefix_log.append_raw(item.expect("valid").1);
    }
    assert_eq!(prefix_log.end(), end);
    let ns = NodeState {
        term: Term(1),
        ..NodeState::default()
    };
    let mut f = Harness::new(1, prefix_log, Some(ns), BugFlags::default());
    f.peer(0, append(1, end.0, 1, end.0, &frames));
    let acks = f
        .out
        .peer_messages()
        .filter(|(_, m)| matches!(m, PeerMessage::AppendResponse { .. }))
        .count();
    assert_eq!(acks, 1);
    assert_eq!(f.core.log_end(), h.core.log_end());
}

/// A service that records each message's sequence and log position and offers
/// `replies_per_message` replies to it.
struct RecordingReplier {
    seen: std::rc::Rc<std::cell::RefCell<Vec<(u64, u64)>>>,
    replies_per_message: usize,
}

impl tandem_service_api::ClusteredService for RecordingReplier {
    fn on_start(
        &mut self,
        _: &mut dyn tandem_service_api::Cluster,
        _: Option<tandem_service_api::SnapshotImage<'_>>,
    ) {
    }
    fn on_session_open(
        &mut self,
        _: &mut dyn tandem_service_api::Cluster,
        _: &tandem_service_api::ClientSession<'_>,
        _: i64,
    ) {
    }
    fn on_session_close(
        &mut self,
        _: &mut dyn tandem_service_api::Cluster,
        _: &tandem_service_api::ClientSession<'_>,
        _: i64,
        _: tandem_service_api::CloseReason,
    ) {
    }
    fn on_session_message(
        &mut self,
        cluster: &mut dyn tandem_service_api::Cluster,
        session: Option<SessionId>,
        _: i64,
        message: &[u8],
        header: &tandem_service_api::Header,
    ) {
        assert_eq!(
            message,
            header.sequence.to_le_bytes(),
            "the message of its sequence"
        );
        assert_eq!(cluster.log_position(), header.log_position);
        self.seen
            .borrow_mut()
            .push((header.sequence, header.log_position));
        for k in 0..self.replies_per_message {
            let reply = [header.sequence.to_le_bytes(), (k as u64).to_le_bytes()].concat();
            cluster
                .offer_egress(session.expect("a client message"), &reply)
                .expect("reply offered");
        }
    }
    fn on_timer_event(&mut self, _: &mut dyn tandem_service_api::Cluster, _: u64, _: i64) {}
    fn on_take_snapshot(&mut self, _: &mut tandem_service_api::SnapshotWriter<'_>) {}
    fn on_role_change(&mut self, _: Role) {}
    fn on_new_leadership_term_event(
        &mut self,
        _: &mut dyn tandem_service_api::Cluster,
        _: &tandem_service_api::LeadershipTermEvent,
    ) {
    }
    fn on_terminate(&mut self, _: &mut dyn tandem_service_api::Cluster) {}
}

/// The frames of `h`'s log from `from` on: `(position, end, type, sequence, messages)`.
fn frames_from(h: &Harness, from: LogPosition) -> Vec<(u64, u64, EntryType, u64, usize)> {
    let run = h.core.log().read_run(from, 1 << 20, 1024).to_vec();
    let mut position = from.0;
    crate::codec::frame::FrameIter::new(&run)
        .map(|item| {
            let (f, _) = item.expect("valid frame");
            let end = position + f.len_aligned as u64;
            let messages = match f.header.entry_type {
                EntryType::SessionMessages => {
                    crate::codec::entry::SessionMessages::decode(f.payload)
                        .expect("a valid batch")
                        .len()
                }
                _ => 1,
            };
            let row = (
                position,
                end,
                f.header.entry_type,
                f.header.sequence,
                messages,
            );
            position = end;
            row
        })
        .collect()
}

/// Follower 1 acknowledges `position` (committing it), then the leader applies; returns the
/// replies sent meanwhile: `(egress sequence, request sequence, bytes)`.
fn ack_and_apply(h: &mut Harness, position: LogPosition) -> Vec<(u64, u64, Vec<u8>)> {
    let mut replies = Vec::new();
    let mut collect = |out: &Outbox| {
        for c in &out.commands {
            if let Command::SendClient { bytes, .. } = c {
                let messages = crate::codec::client::egress_messages(&out.bytes[bytes.clone()]);
                for m in messages.expect("the core encodes valid egress") {
                    if let Egress::Reply {
                        egress_seq,
                        request_seq,
                        payload,
                        ..
                    } = m
                    {
                        replies.push((egress_seq, request_seq, payload.to_vec()));
                    }
                }
            }
        }
    };
    h.acked(1, Term(1), position);
    collect(&h.out);
    h.input(Input::Apply);
    collect(&h.out);
    replies
}

/// A client batch of `count` messages from `first`, each message its sequence's bytes.
fn client_batch(first: u64, count: u64) -> Vec<u8> {
    let mut b = Vec::new();
    crate::codec::client::begin_batch(&mut b, SessionId(1), first);
    for seq in first..first + count {
        crate::codec::client::push_batch_message(&mut b, &seq.to_le_bytes());
    }
    b
}

#[test]
fn a_client_batch_goes_into_one_frame_and_each_message_is_applied_with_its_own_sequence() {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut h = Harness::voter(0, MemLog::new());
    h.make_leader();
    // More replies per batch than the reply cache holds (64 entries): none may be lost.
    h.app = Box::new(RecordingReplier {
        seen: seen.clone(),
        replies_per_message: 20,
    });
    h.input(Input::Client {
        from: ClientAddr(1),
        msg: Ingress::Connect {
            correlation_id: 1,
            credentials: b"",
        },
    });
    h.input(Input::Flush);
    h.complete_io();
    let start = h.core.log_end();
    ack_and_apply(&mut h, start);

    // Five new messages: one frame.
    let b = client_batch(1, 5);
    h.input(Input::Client {
        from: ClientAddr(1),
        msg: Ingress::decode(&b).unwrap(),
    });
    // 4 and 5 again (in the log, not applied: skipped), then 6..=8: one frame of three.
    let b = client_batch(4, 5);
    h.input(Input::Client {
        from: ClientAddr(1),
        msg: Ingress::decode(&b).unwrap(),
    });
    // One new message alone is a plain session-message entry.
    let b = client_batch(9, 1);
    h.input(Input::Client {
        from: ClientAddr(1),
        msg: Ingress::decode(&b).unwrap(),
    });
    // A gap refuses the rest of its batch and appends nothing.
    let b = client_batch(11, 3);
    h.input(Input::Client {
        from: ClientAddr(1),
        msg: Ingress::decode(&b).unwrap(),
    });
    let refused: Vec<_> = h
        .out
        .client_messages()
        .filter(|(_, m)| {
            matches!(
                m,
                Egress::SessionEvent {
                    code: EventCode::SequenceGap,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "{:?}",
        h.out.client_messages().collect::<Vec<_>>()
    );
    h.input(Input::Flush);
    h.complete_io();

    let frames = frames_from(&h, start);
    let shape: Vec<_> = frames.iter().map(|f| (f.2, f.3, f.4)).collect();
    assert_eq!(
        shape,
        vec![
            (EntryType::SessionMessages, 1, 5),
            (EntryType::SessionMessages, 6, 3),
            (EntryType::SessionMessage, 9, 1),
        ]
    );

    // Committed by a follower's acknowledgement, then applied.
    let end = h.core.log_end();
    let replies = ack_and_apply(&mut h, end);

    // Every message once, in order, each with its own sequence; positions distinct and
    // increasing, and the last message of each frame at the frame's end.
    let seen = seen.borrow().clone();
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<u64>>()
    );
    assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "{seen:?}");
    for (sequence, end) in [(5, frames[0].1), (8, frames[1].1), (9, frames[2].1)] {
        assert_eq!(
            seen[sequence as usize - 1].1,
            end,
            "message {sequence} ends its frame"
        );
    }
    assert!(seen[0].1 > frames[0].0 && seen[0].1 < frames[0].1);
    // Every reply of every message, in egress order, none lost to the reply cache.
    assert_eq!(replies.len(), 9 * 20);
    for (i, (egress_seq, request_seq, payload)) in replies.iter().enumerate() {
        let (seq, k) = (i as u64 / 20 + 1, i as u64 % 20);
        assert_eq!(*egress_seq, i as u64 + 1);
        assert_eq!(*request_seq, seq);
        assert_eq!(payload, &[seq.to_le_bytes(), k.to_le_bytes()].concat());
    }
}

#[test]
fn the_core_can_move_to_another_thread() {
    fn is_send<T: Send>() {}
    is_send::<Consensus<MemLog>>();
    is_send::<Outbox>();
}

// ---- operator actions -------------------------------------------------------------------------

fn operator_frame(term: u64, action: OperatorAction, origin: u32, id: u64) -> Vec<u8> {
    let mut payload = Vec::new();
    crate::codec::entry::OperatorActionPayload {
        action,
        origin: MemberId(origin),
        id,
    }
    .encode(&mut payload);
    let mut b = Vec::new();
    encode_frame(
        &mut b,
        &header(term, EntryType::OperatorAction, 0, 0),
        &payload,
    );
    b
}

fn operator_requests(h: &Harness) -> Vec<(MemberId, OperatorAction, u64)> {
    h.out
        .peer_messages()
        .filter_map(|(to, m)| match m {
            PeerMessage::OperatorRequest { action, id, .. } => Some((to, action, id)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_follower_forwards_an_operator_request_to_the_leader_it_knows() {
    let mut f = Harness::voter(1, MemLog::new());
    // No leader known: held.
    f.input(Input::Operator {
        action: OperatorAction::Snapshot,
        id: 9,
    });
    assert!(operator_requests(&f).is_empty());
    assert_eq!(
        f.core.pending_operator(),
        Some((OperatorAction::Snapshot, 9))
    );
    // It learns the leader: the next tick forwards it.
    f.peer(0, append(1, 0, 0, 0, &[]));
    f.complete_io();
    f.input(Input::Tick { now_ns: 1_000_000 });
    assert_eq!(
        operator_requests(&f),
        vec![(MemberId(0), OperatorAction::Snapshot, 9)]
    );
    // Not again before an election timeout, then again.
    f.peer(0, append(1, 0, 0, 0, &[]));
    f.input(Input::Tick { now_ns: 50_000_000 });
    assert!(operator_requests(&f).is_empty());
    f.peer(0, append(1, 0, 0, 0, &[]));
    f.input(Input::Tick {
        now_ns: 101_000_000,
    });
    assert_eq!(operator_requests(&f).len(), 1);
    // A newer request replaces it and goes out at once.
    f.input(Input::Operator {
        action: OperatorAction::Suspend,
        id: 10,
    });
    assert_eq!(
        operator_requests(&f),
        vec![(MemberId(0), OperatorAction::Suspend, 10)]
    );
    f.core.cancel_operator_request();
    assert_eq!(f.core.pending_operator(), None);
}

#[test]
fn the_leader_appends_each_forwarded_request_once_per_term() {
    let mut h = Harness::voter(0, MemLog::new());
    h.make_leader();
    let end = h.core.log_end();
    let req = PeerMessage::OperatorRequest {
        term: h.core.term(),
        from: MemberId(2),
        action: OperatorAction::Suspend,
        id: 5,
    };
    h.peer(2, req);
    let after = h.core.log_end();
    assert!(after > end);
    let f = h.core.log().read(end).expect("appended");
    assert_eq!(f.header.entry_type, EntryType::OperatorAction);
    let p = crate::codec::entry::OperatorActionPayload::decode(f.payload).unwrap();
    assert_eq!(
        (p.action, p.origin, p.id),
        (OperatorAction::Suspend, MemberId(2), 5)
    );
    // The leader holds new ingress back from the moment it appended the suspend.
    assert!(h.core.is_suspended());
    assert!(!h.core.module_state().is_suspended(), "not applied yet");
    // A repeat is not appended again; a request claiming another origin is ignored.
    h.peer(2, req);
    h.peer(
        1,
        PeerMessage::OperatorRequest {
            term: h.core.term(),
            from: MemberId(2),
            action: OperatorAction::Abort,
            id: 6,
        },
    );
    assert_eq!(h.core.log_end(), after);
    // A request with a higher term makes it step down and is dropped.
    let term = h.core.term().next();
    h.peer(
        1,
        PeerMessage::OperatorRequest {
            term,
            from: MemberId(1),
            action: OperatorAction::Snapshot,
            id: 1,
        },
    );
    assert_eq!(h.core.role(), Role::Follower);
    assert_eq!(h.core.log_end(), after);
}

#[test]
fn shutdown_and_abort_entries_act_only_live_in_their_own_term() {
    // Replayed at start (below the commit lower bound): not acted on.
    let abort = operator_frame(1, OperatorAction::Abort, 0, 1);
    let mut log = MemLog::new();
    log.append_raw(&abort);
    let end = log.end();
    let ns = NodeState {
        term: Term(1),
        voted_for: None,
        commit_lower_bound: end,
    };
    let h = Harness::new(1, log, Some(ns), BugFlags::default());
    assert_eq!(h.core.applied_position(), end);
    assert!(!h.core.is_closed());

    // Committed in a later term (leader changed, or the cluster restarted): not acted on.
    let mut log = MemLog::new();
    log.append_raw(&abort);
    let mut f = Harness::voter(1, log);
    f.peer(0, append(2, end.0, 1, end.0, &[]));
    f.complete_io();
    assert_eq!(f.core.applied_position(), end);
    assert!(!f.core.is_closed());

    // The same entry on its origin, still waiting: skipped, and asked for again.
    let mut log = MemLog::new();
    log.append_raw(&operator_frame(1, OperatorAction::Abort, 1, 8));
    let mut f = Harness::voter(1, log);
    f.input(Input::Operator {
        action: OperatorAction::Abort,
        id: 8,
    });
    f.peer(0, append(2, end.0, 1, end.0, &[]));
    f.complete_io();
    assert!(!f.core.is_closed());
    assert_eq!(f.core.take_operator_done(), None);
    assert_eq!(f.core.pending_operator(), Some((OperatorAction::Abort, 8)));
    f.input(Input::Tick { now_ns: 1_000_000 });
    assert_eq!(
        operator_requests(&f),
        vec![(MemberId(0), OperatorAction::Abort, 8)]
    );

    // Committed in its own term: the follower acknowledges to the leader and terminates.
    let mut f = Harness::voter(1, MemLog::new());
    f.peer(0, append(1, 0, 0, 0, &abort));
    f.complete_io();
    f.peer(0, append(1, end.0, 1, end.0, &[]));
    f.complete_io();
    assert!(f.core.is_closed());
    assert!(f.out.commands.contains(&Command::Terminated));
    assert!(f.out.peer_messages().any(|(to, m)| to == MemberId(0)
        && matches!(m, PeerMessage::TerminationAck { position, .. } if position == end)));

    // A shutdown snapshots first, and reports to its origin.
    let shutdown = operator_frame(1, OperatorAction::Shutdown, 1, 3);
    let mut f = Harness::voter(1, MemLog::new());
    f.peer(0, append(1, 0, 0, 0, &[]));
    f.complete_io();
    f.input(Input::Operator {
        action: OperatorAction::Shutdown,
        id: 3,
    });
    f.peer(0, append(1, 0, 0, 0, &shutdown));
    f.complete_io();
    f.peer(0, append(1, end.0, 1, end.0, &[]));
    let snap =
        f.out.commands.iter().position(
            |c| matches!(c, Command::SnapshotTaken { snapshot } if snapshot.position == end),
        );
    let term = f
        .out
        .commands
        .iter()
        .position(|c| matches!(c, Command::Terminated));
    assert!(matches!((snap, term), (Some(s), Some(t)) if s < t));
    assert_eq!(
        f.core.take_operator_done(),
        Some(OperatorDone {
            action: OperatorAction::Shutdown,
            id: 3,
            position: end,
        })
    );
}

#[test]
fn a_leader_that_applied_a_shutdown_waits_for_the_others_then_terminates() {
    let mut h = Harness::voter(0, MemLog::new());
    h.make_leader();
    h.input(Input::Operator {
        action: OperatorAction::Abort,
        id: 1,
    });
    h.complete_io();
    let end = h.core.log_end();
    for from in [1, 2] {
        h.acked(from, h.core.term(), end);
    }
    assert_eq!(h.core.commit_position(), end);
    assert!(!h.core.is_closed(), "waits for the others");
    assert_eq!(h.core.take_operator_done().map(|d| d.position), Some(end));
    // Nothing new is appended while it waits.
    h.input(Input::Tick {
        now_ns: 260_000_000,
    });
    assert_eq!(h.core.log_end(), end);
    h.peer(
        1,
        PeerMessage::TerminationAck {
            term: h.core.term(),
            from: MemberId(1),
            position: end,
        },
    );
    assert!(!h.core.is_closed());
    h.peer(
        2,
        PeerMessage::TerminationAck {
            term: h.core.term(),
            from: MemberId(2),
            position: end,
        },
    );
    assert!(h.core.is_closed());
    assert!(h.out.commands.contains(&Command::Terminated));
}

#[test]
fn a_leader_waiting_for_acknowledgements_terminates_at_its_deadline() {
    let mut h = Harness::voter(0, MemLog::new());
    h.make_leader();
    h.input(Input::Operator {
        action: OperatorAction::Shutdown,
        id: 1,
    });
    h.complete_io();
    let end = h.core.log_end();
    h.acked(1, h.core.term(), end);
    assert_eq!(h.core.applied_position(), end);
    assert!(!h.core.is_closed());
    assert!(h.core.latest_snapshot().is_some_and(|s| s.position == end));
    h.input(Input::Tick {
        now_ns: 250_000_000 + 99_000_000,
    });
    assert!(!h.core.is_closed());
    h.input(Input::Tick {
        now_ns: 250_000_000 + 100_000_000,
    });
    assert!(h.core.is_closed());
}
