//! Log replication (DESIGN §5): the leader's appends, heartbeats, flow control and commit; the
//! follower's matching, truncation, acknowledgement and commit; install-snapshot.
//!
//! * An append carries (previous position, previous term) and whole frames. A follower accepts
//!   it only if its log holds a frame ending at the previous position with that term. Frames it
//!   already holds with the same term are skipped (a duplicated or reordered append never
//!   shortens the log); at the first frame whose term differs it truncates, which must be above
//!   its commit position (asserted).
//! * The follower's matched position is the end of the last append it accepted in the current
//!   term (the highest, if appends were reordered); it acknowledges min(matched, durable) and
//!   commits min(leader's commit, matched).
//! * On a gap or mismatch the follower answers at once with a hint (its append position, or the
//!   start of its conflicting term run) and the term of its frame ending there; the leader
//!   resumes from the hint if its own log has the same term there (then it is a common frame
//!   boundary), otherwise from the start of its own term run containing the hint.
//! * The leader keeps at most `max_inflight_bytes` unacknowledged bytes per follower and reads
//!   older data back from its log; a follower whose next position is below the log start gets
//!   the newest snapshot in chunks, then the log after it.
//! * The leader's commit is the highest position acknowledged by a majority, counting its own
//!   durable position and not counting learners, and only once it covers the leader's own
//!   new-leadership-term entry (earlier terms commit only through it).
//! * A leader that hears from no majority within an election timeout steps down.

use std::sync::Arc;

use crate::codec::entry::encode_session_close;
use crate::codec::frame::{EntryType, FrameIter};
use crate::codec::peer::{PeerMessage, encode_append_header};
use crate::consensus::Application;
use crate::consensus::command::{Command, Outbox};
use crate::consensus::core::{Consensus, IncomingSnapshot, SnapshotSend};
use crate::consensus::election::ElectionState;
use crate::consensus::snapshot::Snapshot;
use crate::consensus::state::ModuleState;
use crate::consensus::storage::LogStore;
use crate::consensus::types::{LogPosition, MemberId, SessionId, Term};
use tandem_service_api::{CloseReason, Role};

impl<L: LogStore> Consensus<L> {
    // ---- leader -----------------------------------------------------------------------------

    pub(super) fn leader_tick(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        // Check quorum: step down if no majority was heard for an election timeout.
        let timeout = self.cfg.election_timeout_ns;
        let me = self.cfg.member_id.0 as usize;
        let heard = 1 + self
            .peers
            .iter()
            .enumerate()
            .filter(|(i, p)| *i != me && !p.learner && self.now_ns - p.last_ack_ns < timeout)
            .count();
        if heard < self.cfg.majority() && self.now_ns - self.leader_since_ns >= timeout {
            self.step_down(app, out);
            return;
        }
        // Due timers fire through the log (not while an operator suspended the cluster).
        let mut due = std::mem::take(&mut self.scratch_pairs);
        due.clear();
        let clock = self.now_ns.max(self.last_stamp_ns);
        let held = self.appends_held();
        due.extend(
            self.state
                .timers
                .due(clock)
                .filter(|t| !held && !self.timer_fires.contains(t)),
        );
        for &(id, generation) in &due {
            self.timer_fires.insert((id, generation));
            let mut payload = [0u8; 8];
            payload.copy_from_slice(&id.to_le_bytes());
            self.append_entry(EntryType::TimerEvent, SessionId(0), generation, &payload);
        }
        // Silent sessions close through the log.
        due.clear();
        let session_timeout = self.cfg.session_timeout_ns;
        for (id, s) in &self.clients {
            if !held && !s.close_appended && self.now_ns - s.last_heard_ns >= session_timeout {
                due.push((id.0, 0));
            }
        }
        for &(id, _) in &due {
            self.append_close(SessionId(id), CloseReason::Timeout);
        }
        self.scratch_pairs = due;
        // Heartbeats and retransmission.
        let hb = self.cfg.heartbeat_interval_ns;
        for i in 0..self.peers.len() {
            if i == me || self.now_ns - self.peers[i].last_send_ns < hb {
                continue;
            }
            let to = MemberId(i as u32);
            if self.peers[i].snapshot.is_some() {
                self.send_snapshot_chunk(to, out);
            } else {
                self.send_append(to, true, out);
            }
        }
        self.flush(app, out);
        if self.stopping.is_some() {
            self.try_transfer(app, out);
        }
    }

    /// Leader: appends a session close (once per term per session).
    pub(super) fn append_close(&mut self, id: SessionId, reason: CloseReason) {
        if let Some(c) = self.clients.get_mut(&id) {
            if c.close_appended {
                return;
            }
            c.close_appended = true;
        }
        let mut payload = [0u8; 1];
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        encode_session_close(&mut buf, reason);
        payload.copy_from_slice(&buf);
        self.scratch = buf;
        self.append_entry(EntryType::SessionClose, id, 0, &payload);
    }

    /// Leader: appends the service messages offered since the last ones appended.
    pub(super) fn append_pending_service_messages(&mut self) {
        let pending = std::mem::take(&mut self.state.pending_service);
        for (id, bytes) in &pending {
            if *id > self.service_appended_to {
                self.append_entry(EntryType::ServiceMessage, SessionId(0), *id, bytes);
                self.service_appended_to = *id;
            }
        }
        self.state.pending_service = pending;
    }

    pub(super) fn replicate_all(&mut self, out: &mut Outbox) {
        for i in 0..self.cfg.member_count {
            if i != self.cfg.member_id.0 {
                self.replicate(MemberId(i), out);
            }
        }
    }

    /// Sends appends to `to` while it has unsent frames and its window is open.
    fn replicate(&mut self, to: MemberId, out: &mut Outbox) {
        let end = self.log.end();
        loop {
            let p = &self.peers[to.index()];
            if p.snapshot.is_some() {
                return;
            }
            if p.next < self.log.start().0 {
                self.start_snapshot_send(to, out);
                return;
            }
            if p.next >= end || p.next.0 - p.matched.0.min(p.next.0) >= self.cfg.max_inflight_bytes
            {
                return;
            }
            if self.send_append(to, false, out) == 0 {
                return;
            }
        }
    }

    /// Sends one append from the peer's next position (empty when `heartbeat` and nothing to
    /// send, or when the window is full); returns the frame bytes sent.
    fn send_append(&mut self, to: MemberId, heartbeat: bool, out: &mut Outbox) -> u64 {
        let p = &self.peers[to.index()];
        let prev = p.next;
        let Some(prev_term) = self.log.term_at(prev) else {
            if prev < self.log.start().0 {
                self.start_snapshot_send(to, out);
            }
            return 0;
        };
        let window_full = prev.0 - p.matched.0.min(prev.0) >= self.cfg.max_inflight_bytes;
        // The store says where the run ends (padding may precede its first frame).
        let (frames, run_end): (&[u8], LogPosition) = if heartbeat && window_full {
            (&[], prev)
        } else {
            let run = self.log.read_frames(
                prev,
                self.cfg.max_append_bytes,
                self.cfg.max_frames_per_append,
            );
            (run.bytes, run.end)
        };
        let start = out.bytes.len();
        encode_append_header(
            &mut out.bytes,
            self.term,
            self.cfg.member_id,
            prev,
            prev_term,
            self.commit,
        );
        out.bytes.extend_from_slice(frames);
        out.finish_peer(to, start);
        let sent = frames.len() as u64;
        let p = &mut self.peers[to.index()];
        if sent > 0 {
            p.next = run_end;
        }
        p.last_send_ns = self.now_ns;
        sent
    }

    fn start_snapshot_send(&mut self, to: MemberId, out: &mut Outbox) {
        let Some(snapshot) = self.latest_snapshot.clone() else {
            // No snapshot although the log was purged: cannot happen (purge needs a snapshot).
            panic!("log starts above the follower's position but no snapshot exists");
        };
        self.peers[to.index()].snapshot = Some(SnapshotSend {
            snapshot,
            acked: 0,
            last_send_ns: self.now_ns,
        });
        self.send_snapshot_chunk(to, out);
    }

    fn send_snapshot_chunk(&mut self, to: MemberId, out: &mut Outbox) {
        let now = self.now_ns;
        let chunk_len = self.cfg.snapshot_chunk_bytes;
        let (term, me) = (self.term, self.cfg.member_id);
        let p = &mut self.peers[to.index()];
        let Some(send) = &mut p.snapshot else { return };
        let snap = &send.snapshot;
        let from = (send.acked as usize).min(snap.bytes.len());
        let until = (from + chunk_len).min(snap.bytes.len());
        out.send_peer(
            to,
            &PeerMessage::InstallSnapshot {
                term,
                leader: me,
                snapshot_position: snap.position,
                snapshot_term: snap.term,
                total_len: snap.bytes.len() as u64,
                offset: from as u64,
                chunk: &snap.bytes[from..until],
            },
        );
        send.last_send_ns = now;
        p.last_send_ns = now;
    }

    pub(super) fn on_snapshot_response(
        &mut self,
        from: MemberId,
        term: Term,
        snapshot_position: LogPosition,
        next_offset: u64,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        if term > self.term {
            self.adopt_term(term, app, out);
            return;
        }
        if term < self.term || self.role != Role::Leader {
            return;
        }
        let p = &mut self.peers[from.index()];
        p.last_ack_ns = self.now_ns;
        let Some(send) = &mut p.snapshot else { return };
        if send.snapshot.position != snapshot_position {
            return;
        }
        let total = send.snapshot.bytes.len() as u64;
        send.acked = next_offset.min(total);
        if send.acked < total {
            self.send_snapshot_chunk(from, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_append_response(
        &mut self,
        from: MemberId,
        term: Term,
        success: bool,
        learner: bool,
        position: LogPosition,
        hint_term: Term,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        if term > self.term {
            self.adopt_term(term, app, out);
            return;
        }
        if term < self.term || self.role != Role::Leader {
            return;
        }
        let now = self.now_ns;
        let end = self.log.end();
        let start = self.log.start().0;
        let p = &mut self.peers[from.index()];
        p.last_ack_ns = now;
        if p.learner != learner {
            p.learner = learner;
        }
        if success {
            if !self.bugs.ack_beyond_match {
                assert!(
                    position <= end,
                    "{from} acknowledged {position} beyond the leader's log end {end}"
                );
            }
            if position > p.matched {
                p.matched = position;
            }
            if p.next < p.matched {
                p.next = p.matched;
            }
            if p.snapshot
                .as_ref()
                .is_some_and(|s| position >= s.snapshot.position)
            {
                p.snapshot = None;
                p.next = p.next.max(position);
            }
            self.advance_leader_commit(app, out);
            if self.role == Role::Leader {
                self.replicate(from, out);
                if self.stopping.is_some() {
                    self.try_transfer(app, out);
                }
            }
            return;
        }
        // Rejected: find where to resume.
        let hint = position.min(end);
        let resume = if hint < start || self.log.term_at(hint) == Some(hint_term) {
            hint
        } else {
            self.log.term_run_start(hint)
        };
        let p = &mut self.peers[from.index()];
        if p.snapshot.is_some() {
            return;
        }
        // A hint below what the follower acknowledged means it lost data (a wiped directory, or
        // a machine crash under `fsync = none`), or the rejection is stale: either way, count
        // it for no more than it now claims (under-counting is safe).
        p.matched = p.matched.min(resume);
        let damped =
            p.last_resend.0 == resume && now - p.last_resend.1 < self.cfg.heartbeat_interval_ns / 2;
        if resume < p.next && !damped {
            p.next = resume;
            p.last_resend = (resume, now);
            self.replicate(from, out);
            if self.peers[from.index()].next == resume
                && self.peers[from.index()].snapshot.is_none()
            {
                // Nothing to send from there (follower caught up to the end): probe at once.
                self.send_append(from, true, out);
            }
        }
    }

    /// Leader: commit = highest position a majority acknowledged, once it covers this term's
    /// first entry.
    pub(super) fn advance_leader_commit(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        if self.role != Role::Leader {
            return;
        }
        let candidate = if self.bugs.commit_without_majority {
            self.log.end()
        } else {
            let mut positions = [LogPosition(0); 16];
            let n = self.cfg.member_count as usize;
            let me = self.cfg.member_id.index();
            for (i, p) in self.peers.iter().enumerate() {
                positions[i] = if i == me {
                    self.durable
                } else if p.learner {
                    LogPosition(0)
                } else {
                    p.matched
                };
            }
            let positions = &mut positions[..n];
            positions.sort_unstable_by(|a, b| b.cmp(a));
            positions[self.cfg.majority() - 1]
        };
        if candidate > self.commit && candidate > self.leader_term_start {
            assert!(candidate <= self.log.end(), "commit beyond the log end");
            self.commit = candidate;
            self.apply_committed(app, out);
        }
    }

    // ---- follower ---------------------------------------------------------------------------

    /// Common handling of a leader's message in `term`: returns false if it must be ignored.
    fn accept_leader(
        &mut self,
        from: MemberId,
        term: Term,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) -> bool {
        if term > self.term {
            self.adopt_term(term, app, out);
        }
        if term < self.term {
            return false;
        }
        if self.role == Role::Leader {
            // Two leaders in one term: only possible with a deliberate voting bug.
            return false;
        }
        if self.role == Role::Candidate {
            self.step_down(app, out);
        }
        self.last_leader_contact_ns = Some(self.now_ns);
        self.reset_election_deadline();
        let role = if self.learner {
            Role::Learner
        } else {
            Role::Follower
        };
        self.set_role(role, Some(from), app, out);
        if !self.learner {
            self.set_election(ElectionState::FollowerReady, out);
        }
        true
    }

    fn respond(&mut self, to: MemberId, success: bool, position: LogPosition, out: &mut Outbox) {
        let hint_term = if success {
            Term(0)
        } else {
            self.log.term_at(position).unwrap_or(Term(0))
        };
        self.last_answer_ns = self.now_ns;
        if success {
            self.last_ack_sent = self.last_ack_sent.max(position);
        } else {
            self.counters.appends_rejected += 1;
        }
        let msg = PeerMessage::AppendResponse {
            term: self.term,
            follower: self.cfg.member_id,
            success,
            learner: self.learner,
            position,
            hint_term,
        };
        self.send_dependent(to, &msg, out);
    }

    /// What a follower acknowledges: min(matched, durable).
    fn ack_position(&self) -> LogPosition {
        let matched = if self.bugs.ack_beyond_match {
            self.log.end()
        } else {
            self.matched
        };
        matched.min(self.durable)
    }

    pub(super) fn truncate_log(&mut self, position: LogPosition, out: &mut Outbox) {
        if !self.bugs.truncate_below_commit {
            assert!(
                position >= self.commit,
                "member {} would truncate at {position}, below its commit {}",
                self.cfg.member_id,
                self.commit
            );
        }
        self.log.truncate(position);
        self.epoch += 1;
        self.durable = self.durable.min(position);
        self.matched = self.matched.min(position);
        self.commit = self.commit.min(position);
        out.commands.push(Command::Truncated {
            position,
            epoch: self.epoch,
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_append(
        &mut self,
        from: MemberId,
        term: Term,
        _leader: MemberId,
        prev_position: LogPosition,
        prev_term: Term,
        leader_commit: LogPosition,
        frames: &[u8],
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        if !self.accept_leader(from, term, app, out) {
            if term < self.term {
                let end = self.log.end();
                self.respond(from, false, end, out);
            }
            return;
        }
        let (start, _) = self.log.start();
        let end = self.log.end();
        if prev_position < start {
            // We hold a snapshot past `prev`: resume from our commit position, which matches.
            let at = self.commit.max(start);
            self.respond(from, false, at, out);
            return;
        }
        if prev_position > end {
            // A gap: ask for a resend from our end at once.
            self.respond(from, false, end, out);
            return;
        }
        let prev_ok =
            self.bugs.skip_prev_term_check || self.log.term_at(prev_position) == Some(prev_term);
        if !prev_ok {
            let run_start = self.log.term_run_start(prev_position);
            let hint = run_start.max(self.commit.min(prev_position));
            self.respond(from, false, hint, out);
            return;
        }
        let mut pos = prev_position;
        let mut appended_from: Option<LogPosition> = None;
        let mut valid = true;
        for item in FrameIter::new(frames) {
            let Ok((frame, raw)) = item else {
                valid = false;
                break;
            };
            if frame.header.term > term {
                valid = false;
                break;
            }
            if pos < self.log.end() {
                if self.bugs.truncate_below_commit {
                    self.truncate_log(pos, out);
                } else {
                    // The frame we hold after `pos` (past any padding): the same term means the
                    // same frame, and the store says where it ends.
                    let existing = self
                        .log
                        .next_frame(pos)
                        .map(|f| (f.frame.header.term, f.end));
                    if let Some((t, end)) = existing
                        && t == frame.header.term
                    {
                        pos = end;
                        continue;
                    }
                    // Truncate at `pos`, not at the frame's start: our store then places the
                    // leader's frame (after padding or not) exactly as the leader's store did.
                    self.truncate_log(pos, out);
                }
            }
            appended_from.get_or_insert(pos);
            pos = self.log.append_raw(raw);
            self.last_stamp_ns = self.last_stamp_ns.max(frame.header.timestamp);
        }
        if pos > self.matched {
            self.matched = pos;
        }
        if let Some(from_pos) = appended_from {
            out.commands.push(Command::Appended {
                from: from_pos,
                to: self.log.end(),
                epoch: self.epoch,
            });
        }
        self.follower_commit(leader_commit, app, out);
        if !valid {
            self.respond(from, false, pos, out);
            return;
        }
        let ack = self.ack_position();
        // New entries not yet durable: an answer now would acknowledge nothing new, and the
        // runtime's durability report for them answers with their end (`on_log_durable`
        // acknowledges whatever passes `last_ack_sent`). Skipping it halves a follower's
        // datagrams per append (issue #7). Heartbeats and appends of nothing new are
        // answered at once, and so is any append a heartbeat interval after the last
        // answer: a slow sync (`batch`, `every`) must not keep the leader from hearing us.
        let durable_report_answers = appended_from.is_some()
            && self.durable < self.matched
            && ack <= self.last_ack_sent
            && self.matched > self.last_ack_sent
            && self.now_ns.saturating_sub(self.last_answer_ns) < self.cfg.heartbeat_interval_ns;
        if !durable_report_answers {
            self.respond(from, true, ack, out);
        }
        self.maybe_promote(app, out);
    }

    fn follower_commit(
        &mut self,
        leader_commit: LogPosition,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        let matched = if self.bugs.ack_beyond_match {
            self.log.end()
        } else {
            self.matched
        };
        let c = leader_commit.min(matched);
        if c > self.commit {
            self.commit = c;
            self.apply_committed(app, out);
        }
    }

    pub(super) fn on_log_durable(
        &mut self,
        position: LogPosition,
        epoch: u64,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        if epoch != self.epoch {
            return;
        }
        let position = position.min(self.log.end());
        if position <= self.durable {
            return;
        }
        self.durable = position;
        match self.role {
            Role::Leader => {
                self.advance_leader_commit(app, out);
            }
            _ => {
                if let Some(leader) = self.leader {
                    let ack = self.ack_position();
                    if ack > self.last_ack_sent {
                        self.respond(leader, true, ack, out);
                    }
                }
                self.maybe_promote(app, out);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_install_snapshot(
        &mut self,
        from: MemberId,
        term: Term,
        position: LogPosition,
        snapshot_term: Term,
        total_len: u64,
        offset: u64,
        chunk: &[u8],
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        if !self.accept_leader(from, term, app, out) {
            return;
        }
        if position <= self.commit {
            // Already have everything up to there (committed, identical everywhere).
            let at = self.commit;
            self.respond(from, true, at, out);
            return;
        }
        const MAX_SNAPSHOT_BYTES: u64 = 1 << 34;
        if total_len > MAX_SNAPSHOT_BYTES {
            return;
        }
        if self
            .incoming
            .as_ref()
            .is_none_or(|s| s.position != position || s.total_len != total_len)
        {
            self.incoming = Some(IncomingSnapshot {
                position,
                total_len,
                bytes: Vec::new(),
            });
        }
        let inc = self.incoming.as_mut().expect("set above");
        if offset == inc.bytes.len() as u64 && offset + chunk.len() as u64 <= total_len {
            inc.bytes.extend_from_slice(chunk);
        }
        let have = inc.bytes.len() as u64;
        let msg = PeerMessage::SnapshotResponse {
            term: self.term,
            follower: self.cfg.member_id,
            snapshot_position: position,
            next_offset: have,
        };
        if have < total_len {
            self.send_dependent(from, &msg, out);
            return;
        }
        let inc = self.incoming.take().expect("complete");
        let snapshot = match Snapshot::from_bytes(inc.bytes) {
            Ok(s) if s.position == position && s.term == snapshot_term => s,
            _ => {
                // Corrupt: start over.
                let msg = PeerMessage::SnapshotResponse {
                    term: self.term,
                    follower: self.cfg.member_id,
                    snapshot_position: position,
                    next_offset: 0,
                };
                self.send_dependent(from, &msg, out);
                return;
            }
        };
        let Ok(module) = ModuleState::decode(snapshot.parts().module, &self.limits) else {
            return;
        };
        self.send_dependent(from, &msg, out);
        self.install_snapshot(Arc::new(snapshot), module, app, out);
        let ack = self.ack_position();
        self.respond(from, true, ack, out);
        self.maybe_promote(app, out);
    }

    fn install_snapshot(
        &mut self,
        snapshot: Arc<Snapshot>,
        module: ModuleState,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        let position = snapshot.position;
        assert!(
            position > self.commit,
            "installing a snapshot at or below the commit position"
        );
        self.log.reset(position, snapshot.term);
        self.epoch += 1;
        self.durable = position;
        self.matched = position;
        self.commit = position;
        self.applied = position;
        self.state = module;
        self.last_stamp_ns = self.last_stamp_ns.max(snapshot.timestamp);
        {
            let ts = snapshot.timestamp;
            let mut ctx = self.context(ts, position, true);
            app.start_from(&mut ctx, Some(snapshot.parts()));
        }
        self.latest_snapshot = Some(snapshot.clone());
        self.counters.snapshots_installed += 1;
        out.commands.push(Command::SnapshotInstalled {
            snapshot,
            epoch: self.epoch,
        });
        self.persist(false, out);
    }
}
