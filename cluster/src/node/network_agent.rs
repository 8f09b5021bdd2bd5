//! [`NetworkAgent`]: a member's sockets (or in-process hub endpoint) as an agent of its own.
//!
//! It owns the member's [`NodeNetwork`]. Each duty cycle it
//!
//! 1. hands what the consensus agent queued on the outbound [`MessagePipe`] to the transport
//!    and flushes it (sends the transport refuses with `WouldBlock` are dropped, as a lost
//!    datagram would be);
//! 2. polls the transport and copies every received message into the inbound pipe (polling
//!    only while the pipe has room for a whole receive batch, so a busy consensus agent
//!    leaves datagrams in the socket buffers rather than losing them here);
//! 3. publishes the transport's counters to the control file, at most once a millisecond.
//!
//! When both agents share a thread, the member also calls `NetworkAgent::send_queued` after
//! the consensus agent's cycle, so what a cycle decided leaves in that same cycle.
//!
//! It ends once the consensus agent has closed and everything it queued has been sent (so a
//! leader's handover message leaves before the thread ends). When run on a thread of its own
//! (`dedicated`), the consensus agent fails the member if this agent ends first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{Thread, ThreadId};

use crate::agent::{Agent, AgentClock, AgentError, Termination};
use crate::control::{ControlFile, Counter};
use crate::transport::Event;

use super::net::NodeNetwork;
use super::pipe::{Endpoint, MessagePipe};

/// Messages each pipe holds.
const PIPE_MESSAGES: usize = 4096;
/// Bytes each pipe buffer starts with (a heartbeat or a small client message fits; buffers
/// grow to the largest message they carry, up to [`super::pipe::RETAIN_BYTES`] kept).
const PIPE_INITIAL_BYTES: usize = 512;
/// The network agent polls only while the inbound pipe has this many free buffers (more
/// than one receive batch on both sockets, reassembled messages included).
const POLL_RESERVE: usize = 512;
/// Outbound messages handed to the transport per duty cycle, at most.
const SENDS_PER_CYCLE: usize = 2048;

/// The network agent reads the clock once in this many duty cycles.
const CLOCK_EVERY_CYCLES: u32 = 16;

/// What a member's agents share: the two pipes between the network and consensus agents and
/// the flags by which they learn of each other's end.
#[derive(Debug)]
pub(crate) struct MemberLinks {
    /// Network agent to consensus agent: received messages.
    pub(crate) inbound: MessagePipe,
    /// Consensus agent to network agent: messages to send.
    pub(crate) outbound: MessagePipe,
    /// Set by the consensus agent when it has closed (stopped, shut down, failed).
    pub(crate) consensus_closed: AtomicBool,
    /// Set by the network agent when it has closed.
    pub(crate) network_closed: AtomicBool,
    /// Crash the member (in-process clusters): every agent drops what it holds.
    pub(crate) kill: AtomicBool,
    /// Messages the consensus agent could not decode: bad length or content.
    pub(crate) decode_bad_length: AtomicU64,
    /// Messages the consensus agent could not decode: unsupported protocol version.
    pub(crate) decode_bad_version: AtomicU64,
    /// The thread running the network agent (set when it starts).
    pub(crate) network_thread: OnceLock<Thread>,
    /// The thread running the consensus agent (set when it starts).
    pub(crate) consensus_thread: OnceLock<Thread>,
}

impl MemberLinks {
    pub(crate) fn new() -> Self {
        Self {
            inbound: MessagePipe::new(PIPE_MESSAGES, PIPE_INITIAL_BYTES),
            outbound: MessagePipe::new(PIPE_MESSAGES, PIPE_INITIAL_BYTES),
            consensus_closed: AtomicBool::new(false),
            network_closed: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            decode_bad_length: AtomicU64::new(0),
            decode_bad_version: AtomicU64::new(0),
            network_thread: OnceLock::new(),
            consensus_thread: OnceLock::new(),
        }
    }
}

/// Wakes the other agent's thread after handing it messages: idle strategies park with
/// `park_timeout`, and a parked consumer would otherwise see the messages only when its park
/// ends (up to a millisecond with `backoff`). `unpark` is one atomic swap when the thread is
/// not parked, one futex wake when it is; no lock. Nothing is done when both agents run on
/// one thread (`shared`, `cluster`).
#[derive(Debug, Default)]
pub(crate) struct Waker {
    own: Option<ThreadId>,
    other: Option<Thread>,
    resolved: bool,
}

impl Waker {
    /// Records the calling thread as the one running this agent.
    pub(crate) fn register(&mut self, me: &OnceLock<Thread>) {
        let current = std::thread::current();
        self.own = Some(current.id());
        // Set once: an agent starts once.
        let _ = me.set(current);
    }

    /// Unparks the thread recorded in `other` if it is not this agent's own.
    pub(crate) fn wake(&mut self, other: &OnceLock<Thread>) {
        if !self.resolved {
            let Some(t) = other.get() else {
                return;
            };
            self.resolved = true;
            if Some(t.id()) != self.own {
                self.other = Some(t.clone());
            }
        }
        if let Some(t) = &self.other {
            t.unpark();
        }
    }
}

/// A member's network as an agent (see the module docs). Built by
/// [`NodeAgent::new`](super::NodeAgent::new); run on its own thread in the `dedicated`
/// threading mode, composed with the consensus agent otherwise.
pub struct NetworkAgent {
    net: Option<NodeNetwork>,
    pub(crate) links: Arc<MemberLinks>,
    pub(crate) control: Arc<ControlFile>,
    member_id: u32,
    name: String,
    epoch: AgentClock,
    /// The clock as read at most [`CLOCK_EVERY_CYCLES`] cycles ago: this agent needs time
    /// only for fragment reassembly deadlines (half a second) and publishing (each
    /// millisecond), and a read was half of an idle cycle's cost (perf, issue #7).
    now_ns: u64,
    cycles: u32,
    last_publish_ns: u64,
    /// Sends the transport refused (its queue full).
    send_drops: u64,
    waker: Waker,
}

impl std::fmt::Debug for NetworkAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkAgent")
            .field("name", &self.name)
            .field("open", &self.net.is_some())
            .field("send_drops", &self.send_drops)
            .field("inbound_refused", &self.links.inbound.refused())
            .field("outbound_refused", &self.links.outbound.refused())
            .finish()
    }
}

impl NetworkAgent {
    pub(crate) fn new(
        member_id: u32,
        net: NodeNetwork,
        links: Arc<MemberLinks>,
        control: Arc<ControlFile>,
    ) -> Self {
        Self {
            net: Some(net),
            links,
            control,
            member_id,
            name: format!("network-{member_id}"),
            epoch: AgentClock::start(),
            now_ns: 0,
            cycles: 0,
            last_publish_ns: 0,
            send_drops: 0,
            waker: Waker::default(),
        }
    }

    /// Hands up to `limit` queued outbound messages to the transport.
    fn send(net: &mut NodeNetwork, links: &MemberLinks, limit: usize, drops: &mut u64) -> usize {
        let mut n = 0;
        while n < limit {
            let Some(m) = links.outbound.poll() else {
                break;
            };
            n += 1;
            let sent = match m.endpoint {
                Endpoint::Member(id) => net.send_to_member(id, &m.bytes),
                Endpoint::Client(addr) => net.send_to_client(addr, &m.bytes),
            };
            if let Err(e) = sent {
                *drops += 1;
                tracing::debug!(to = ?m.endpoint, error = %e, "send dropped");
            }
            links.outbound.recycle(m.bytes);
        }
        n
    }

    /// Hands what the consensus agent queued to the transport now and flushes it. For a
    /// member whose two agents share a thread (`shared`, `cluster`): called after the
    /// consensus agent's cycle, it sends what that cycle produced at once instead of in the
    /// next cycle, so a hop between members (or to a client) costs no extra duty cycle. In
    /// `cluster` threading a round trip (client, leader, followers, leader, client) took about
    /// five cycles of every member, each with its receive system calls; now it takes two.
    pub(crate) fn send_queued(&mut self) -> usize {
        if self.links.kill.load(Ordering::Acquire) {
            return 0;
        }
        let Some(net) = self.net.as_mut() else {
            return 0;
        };
        let sent = Self::send(net, &self.links, SENDS_PER_CYCLE, &mut self.send_drops);
        if sent > 0
            && let Err(e) = net.flush()
        {
            tracing::debug!(member = self.member_id, error = %e, "network flush failed");
        }
        sent
    }

    /// This member's id.
    pub(crate) fn member_id(&self) -> u32 {
        self.member_id
    }

    /// Holds what goes to the members `member_ids` until
    /// [`NetworkAgent::release_held_sends`] (see [`NodeNetwork::hold_sends_to`]).
    pub(crate) fn hold_sends_to(&mut self, member_ids: impl IntoIterator<Item = u32>) {
        if let Some(net) = self.net.as_mut() {
            net.hold_sends_to(member_ids);
        }
    }

    /// Ends the hold and sends what it held; a killed member sends nothing more. Returns the
    /// datagrams sent.
    pub(crate) fn release_held_sends(&mut self) -> usize {
        if self.links.kill.load(Ordering::Acquire) {
            return 0;
        }
        let Some(net) = self.net.as_mut() else {
            return 0;
        };
        net.release_held_sends().unwrap_or_else(|e| {
            tracing::debug!(member = self.member_id, error = %e, "network flush failed");
            0
        })
    }

    fn receive(net: &mut NodeNetwork, links: &MemberLinks, now_ns: u64) -> usize {
        if links.inbound.free_slots() < POLL_RESERVE {
            return 0;
        }
        let inbound = &links.inbound;
        let result = net.poll(now_ns, |event| {
            let queued = match event {
                Event::FromMember { member_id, msg } => {
                    inbound.offer(Endpoint::Member(member_id), msg)
                }
                Event::FromClient { addr, msg } => inbound.offer(Endpoint::Client(addr), msg),
            };
            if !queued {
                tracing::debug!("inbound pipe full: message dropped");
            }
        });
        match result {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "network poll failed");
                0
            }
        }
    }

    fn publish(&mut self) {
        let Some(net) = &self.net else {
            return;
        };
        let c = &self.control;
        let l = &self.links;
        let t = net.counters();
        c.set_counter(Counter::DatagramsIn, t.datagrams_in.max(t.messages_in));
        c.set_counter(Counter::DatagramsOut, t.datagrams_out.max(t.messages_out));
        c.set_counter(Counter::BytesIn, t.bytes_in);
        c.set_counter(Counter::BytesOut, t.bytes_out);
        c.set_counter(
            Counter::DroppedBadLength,
            t.dropped_bad_length
                + t.dropped_bad_header
                + l.decode_bad_length.load(Ordering::Relaxed),
        );
        c.set_counter(Counter::DroppedOversize, t.dropped_oversize);
        c.set_counter(Counter::DroppedBadChecksum, t.dropped_bad_checksum);
        c.set_counter(
            Counter::DroppedBadVersion,
            t.dropped_bad_version + l.decode_bad_version.load(Ordering::Relaxed),
        );
        c.set_counter(Counter::DroppedWrongCluster, t.dropped_wrong_cluster);
        c.set_counter(Counter::DroppedUnknownMember, t.dropped_unknown_member);
    }

    fn clock_ns(&self) -> u64 {
        self.epoch.elapsed_ns()
    }
}

impl Agent for NetworkAgent {
    fn on_start(&mut self) -> Result<(), AgentError> {
        self.epoch = AgentClock::start();
        self.waker.register(&self.links.network_thread);
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        if self.links.kill.load(Ordering::Acquire) {
            // A crash: the sockets close without sending what was queued.
            self.net = None;
        }
        if self.cycles.is_multiple_of(CLOCK_EVERY_CYCLES) {
            self.now_ns = self.clock_ns();
        }
        self.cycles = self.cycles.wrapping_add(1);
        let now_ns = self.now_ns;
        let Some(net) = self.net.as_mut() else {
            return 0;
        };
        let links = &*self.links;
        let mut work = Self::send(net, links, SENDS_PER_CYCLE, &mut self.send_drops);
        match net.flush() {
            Ok(n) => work += n,
            Err(e) => tracing::debug!(member = self.member_id, error = %e, "network flush failed"),
        }
        let received = Self::receive(net, links, now_ns);
        if received > 0 {
            self.waker.wake(&links.consensus_thread);
        }
        work += received;
        if now_ns.saturating_sub(self.last_publish_ns) >= 1_000_000 {
            self.last_publish_ns = now_ns;
            self.publish();
        }
        work
    }

    fn termination(&mut self) -> Option<Termination> {
        (self.net.is_some()
            && self.links.consensus_closed.load(Ordering::Acquire)
            && self.links.outbound.is_empty())
        .then_some(Termination::Done)
    }

    fn on_close(&mut self) {
        if let Some(net) = self.net.as_mut() {
            // What the consensus agent queued last (a stopping leader's handover) still goes.
            Self::send(net, &self.links, usize::MAX, &mut self.send_drops);
            if let Err(e) = net.flush() {
                tracing::debug!(member = self.member_id, error = %e, "network flush failed");
            }
            self.publish();
        }
        self.net = None;
        self.links.network_closed.store(true, Ordering::Release);
    }

    fn role_name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ControlIdent;
    use crate::transport::InProcHub;

    fn agent(hub: &InProcHub, dir: &std::path::Path) -> NetworkAgent {
        let net = NodeNetwork::InProc(Box::new(hub.bind_member(0).unwrap()));
        let ident = ControlIdent {
            cluster_id: 1,
            member_id: 0,
            member_count: 2,
        };
        let control =
            Arc::new(ControlFile::create(dir, ident, "0=127.0.0.1:10,1=127.0.0.1:20").unwrap());
        NetworkAgent::new(0, net, Arc::new(MemberLinks::new()), control)
    }

    fn drain(peer: &mut crate::transport::InProcTransport) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        crate::transport::Network::poll(peer, 0, |e| {
            if let Event::FromMember { member_id: 0, msg } = e {
                got.push(msg.to_vec());
            }
        })
        .unwrap();
        got
    }

    #[test]
    fn send_queued_hands_what_consensus_queued_to_the_transport_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let hub = InProcHub::new(64, 1024);
        let mut peer = hub.bind_member(1).unwrap();
        let mut net = agent(&hub, dir.path());
        assert_eq!(net.send_queued(), 0, "nothing queued");
        // What the consensus agent queued after this cycle's do_work...
        assert!(net.links.outbound.offer(Endpoint::Member(1), b"append-1"));
        assert!(net.links.outbound.offer(Endpoint::Member(1), b"append-2"));
        // ...is at the peer before the next cycle.
        assert_eq!(net.send_queued(), 2);
        assert!(net.links.outbound.is_empty());
        assert_eq!(
            drain(&mut peer),
            [b"append-1".to_vec(), b"append-2".to_vec()]
        );

        // A killed member sends nothing more.
        assert!(
            net.links
                .outbound
                .offer(Endpoint::Member(1), b"after the crash")
        );
        net.links.kill.store(true, Ordering::Release);
        assert_eq!(net.send_queued(), 0);
        assert!(drain(&mut peer).is_empty());
    }
}
