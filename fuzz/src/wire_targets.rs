//! Fuzz entry points for what a member decodes from the network and from a snapshot: the
//! codec (peer, client ingress and egress messages, log frames and entry payloads), the
//! transport's datagram decoder and fragment reassembly, and the consensus module's snapshot.
//! Whatever the bytes: no panic, no hang, no unbounded allocation. Shared by the cargo-fuzz
//! targets (`fuzz/fuzz_targets`) and the normal test suite (`cluster/tests/fuzz_regressions.rs`,
//! which includes this file by path).

use std::net::SocketAddr;

use tandem_cluster::codec::entry::{
    NewLeadershipTermPayload, OperatorActionPayload, SessionMessages, SessionOpenPayload,
    StateHashPayload, decode_session_close, decode_timer_event,
};
use tandem_cluster::codec::{
    Egress, FrameIter, Ingress, PeerMessage, decode_frame, egress_messages,
};
use tandem_cluster::consensus::state::Limits;
use tandem_cluster::consensus::{ModuleState, Snapshot};
use tandem_cluster::transport::TransportCounters;
use tandem_cluster::transport::frame::{self, FLAG_FRAGMENT, HEADER_LEN, Header};
use tandem_cluster::transport::reassembly::Reassembler;

/// Every codec decoder over the same bytes; what decodes re-encodes to something that
/// decodes to the same value.
pub fn codec(data: &[u8]) {
    if let Ok(m) = PeerMessage::decode(data) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(
            PeerMessage::decode(&out).expect("re-encoded peer message"),
            m
        );
    }
    if let Ok(m) = Ingress::decode(data) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(Ingress::decode(&out).expect("re-encoded ingress"), m);
    }
    if let Ok(m) = Egress::decode(data) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(Egress::decode(&out).expect("re-encoded egress"), m);
        // What a client acts on: a reply batch read reply by reply.
        let expected = match m {
            Egress::Replies(b) => b.len(),
            _ => 1,
        };
        let msgs = egress_messages(data).expect("decoded above");
        assert_eq!(msgs.count(), expected);
    }
    if let Ok(f) = decode_frame(data) {
        assert!(f.len_aligned <= data.len());
    }
    let mut total = 0;
    for item in FrameIter::new(data) {
        let Ok((f, raw)) = item else { break };
        assert_eq!(raw.len(), f.len_aligned);
        total += raw.len();
        assert!(total <= data.len());
    }
    let _ = NewLeadershipTermPayload::decode(data);
    let _ = SessionOpenPayload::decode(data);
    let _ = decode_session_close(data);
    let _ = decode_timer_event(data);
    let _ = OperatorActionPayload::decode(data);
    let _ = StateHashPayload::decode(data);
    if let Ok(messages) = SessionMessages::decode(data) {
        let count = messages.len();
        let bytes: usize = messages.map(<[u8]>::len).sum();
        assert!(count >= 2 && bytes + 4 * count < data.len());
    }
}

/// Reads fields off the front of the fuzz input (zero when it runs out).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

const CLUSTER_ID: u64 = 7;
const MAX_PARTIALS: usize = 4;
const MAX_MESSAGE: usize = 64 * 1024;

/// Datagrams: the first byte picks raw bytes straight into the datagram decoder, or a sequence
/// of well-checksummed datagrams with fuzzed header fields (fragments of fuzzed messages from
/// a few sources, interleaved, duplicated, inconsistent) through the decoder, the reassembler
/// and, for every whole message, the codec.
pub fn datagrams(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(f) = frame::decode(rest, CLUSTER_ID) {
            assert_eq!(HEADER_LEN + f.payload.len(), rest.len());
            codec(f.payload);
        }
        return;
    }
    let mut input = Input(rest);
    let mut r = Reassembler::new(MAX_PARTIALS, 2, MAX_MESSAGE, 1_000_000);
    let mut counters = TransportCounters::default();
    let mut buf = vec![0u8; HEADER_LEN + usize::from(u16::MAX)];
    let mut now_ns = 0u64;
    while !input.0.is_empty() {
        let fragment = input.u8() & 1 == 1;
        let message_len = if fragment {
            input.u32() % (2 * MAX_MESSAGE as u32)
        } else {
            0
        };
        let h = Header {
            flags: if fragment { FLAG_FRAGMENT } else { 0 },
            cluster_id: CLUSTER_ID,
            source_id: u32::from(input.u8() % 3),
            stream_id: 1,
            message_id: u32::from(input.u8() % 4),
            message_len,
            frag_offset: input.u32() % (2 * MAX_MESSAGE as u32),
            frag_index: input.u16() % 64,
            frag_count: input.u16() % 64,
        };
        let len = usize::from(input.u16()) % 4096;
        let payload = input.bytes(len).to_vec();
        let h = if fragment {
            h
        } else {
            Header {
                message_len: payload.len() as u32,
                frag_offset: 0,
                frag_index: 0,
                frag_count: 1,
                ..h
            }
        };
        let n = frame::encode(&h, &payload, &mut buf);
        let Ok(f) = frame::decode(&buf[..n], CLUSTER_ID) else {
            continue;
        };
        now_ns += u64::from(input.u8()) * 10_000;
        r.expire(now_ns, &mut counters);
        if !f.header.is_fragment() {
            codec(f.payload);
            continue;
        }
        let source = SocketAddr::from(([127, 0, 0, 1], 9000 + f.header.source_id as u16));
        let header = f.header;
        let payload = f.payload.to_vec();
        if let Some(msg) = r.on_fragment(source, &header, &payload, now_ns, &mut counters) {
            assert_eq!(msg.len(), header.message_len as usize);
            let msg = msg.to_vec();
            codec(&msg);
        }
        assert!(r.in_flight() <= MAX_PARTIALS);
        assert!(
            r.buffer_capacity() <= MAX_PARTIALS * (MAX_MESSAGE + 8 * 1024),
            "reassembly memory stays bounded"
        );
    }
}

/// The consensus module's snapshot (what a member loads at start and installs from a leader):
/// its envelope, then the module state in it.
pub fn consensus_snapshot(data: &[u8]) {
    let Ok(s) = Snapshot::from_bytes(data.to_vec()) else {
        return;
    };
    let parts = s.parts();
    let limits = Limits {
        max_message_bytes: 64 * 1024,
        reply_cache_entries: 64,
        reply_cache_bytes: 1 << 20,
        max_pending_service_messages: 1024,
    };
    let _ = ModuleState::decode(parts.module, &limits);
}
