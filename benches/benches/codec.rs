//! Criterion suite for the codecs on the per-message path: a log frame (header and payload;
//! the archive writes the CRC), a client's message and the reply it gets, a batch of replies,
//! and a leader's append.
//!
//! Run: `cargo bench -p tandem-benches --bench codec`. Figures are recorded in
//! `docs/PERFORMANCE.md`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tandem_cluster::codec::client::{
    Egress, Ingress, egress_messages, encode_reply, extend_replies,
};
use tandem_cluster::codec::frame::{EntryType, FrameHeader, decode_frame, encode_frame};
use tandem_cluster::codec::peer::PeerMessage;
use tandem_cluster::consensus::{LogPosition, MemberId, SessionId, Term};

/// The message size of the targets.
const PAYLOAD: usize = 64;
/// Frames in one append (a leader's batch under load).
const APPEND_FRAMES: usize = 16;
/// Replies in one `Replies` message (as many as fit a 1408-byte datagram at 64 B is 17).
const REPLY_BATCH: usize = 16;

fn header(sequence: u64) -> FrameHeader {
    FrameHeader {
        entry_type: EntryType::SessionMessage,
        flags: 0,
        term: Term(3),
        session_id: SessionId(7),
        sequence,
        timestamp: 1_700_000_000_000_000_000,
    }
}

fn frame(c: &mut Criterion) {
    let payload = [0x5au8; PAYLOAD];
    let mut group = c.benchmark_group("codec/frame_64B");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(256);
    group.bench_function("encode", |b| {
        let mut seq = 0;
        b.iter(|| {
            seq += 1;
            out.clear();
            black_box(encode_frame(&mut out, &header(seq), black_box(&payload)))
        });
    });
    out.clear();
    encode_frame(&mut out, &header(1), &payload);
    group.bench_function("decode", |b| {
        b.iter(|| black_box(decode_frame(black_box(&out)).expect("valid frame")));
    });
    group.finish();
}

fn client(c: &mut Criterion) {
    let payload = [0x5au8; PAYLOAD];
    let mut group = c.benchmark_group("codec/client_64B");
    group.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(256);
    group.bench_function("ingress_encode", |b| {
        let mut seq = 0;
        b.iter(|| {
            seq += 1;
            out.clear();
            Ingress::Message {
                session: SessionId(7),
                sequence: seq,
                payload: black_box(&payload),
            }
            .encode(&mut out);
            black_box(out.len())
        });
    });
    out.clear();
    Ingress::Message {
        session: SessionId(7),
        sequence: 1,
        payload: &payload,
    }
    .encode(&mut out);
    group.bench_function("ingress_decode", |b| {
        b.iter(|| black_box(Ingress::decode(black_box(&out)).expect("valid ingress")));
    });
    let mut reply = Vec::with_capacity(256);
    group.bench_function("reply_encode", |b| {
        let mut seq = 0;
        b.iter(|| {
            seq += 1;
            reply.clear();
            encode_reply(&mut reply, SessionId(7), seq, seq, seq, black_box(&payload));
            black_box(reply.len())
        });
    });
    reply.clear();
    encode_reply(&mut reply, SessionId(7), 1, 1, 1, &payload);
    group.bench_function("reply_decode", |b| {
        b.iter(|| black_box(Egress::decode(black_box(&reply)).expect("valid egress")));
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    let payload = [0x5au8; PAYLOAD];
    let mut frames = Vec::new();
    for i in 0..APPEND_FRAMES {
        encode_frame(&mut frames, &header(i as u64), &payload);
    }
    let msg = |frames| PeerMessage::Append {
        term: Term(3),
        leader: MemberId(0),
        prev_position: LogPosition(4096),
        prev_term: Term(3),
        commit: LogPosition(4096),
        frames,
    };
    let mut group = c.benchmark_group("codec/append_16x64B");
    group.throughput(Throughput::Elements(APPEND_FRAMES as u64));
    let mut out = Vec::with_capacity(4096);
    group.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            msg(black_box(&frames[..])).encode(&mut out);
            black_box(out.len())
        });
    });
    out.clear();
    msg(&frames[..]).encode(&mut out);
    group.bench_function("decode", |b| {
        b.iter(|| black_box(PeerMessage::decode(black_box(&out)).expect("valid append")));
    });
    group.finish();
}

/// Replies of one session joined into one `Replies` message as the leader queues them, and
/// read back reply by reply as a client does.
fn replies(c: &mut Criterion) {
    let payload = [0x5au8; PAYLOAD];
    let encode = |out: &mut Vec<u8>, first: u64| {
        out.clear();
        encode_reply(out, SessionId(7), first, first, first, &payload);
        for seq in first + 1..first + REPLY_BATCH as u64 {
            let joined = extend_replies(
                out,
                0,
                SessionId(7),
                seq,
                seq,
                seq,
                black_box(&payload),
                usize::MAX,
            );
            assert!(joined, "consecutive replies join");
        }
    };
    let mut group = c.benchmark_group("codec/replies_16x64B");
    group.throughput(Throughput::Elements(REPLY_BATCH as u64));
    let mut out = Vec::with_capacity(4096);
    group.bench_function("encode", |b| {
        let mut first = 1;
        b.iter(|| {
            encode(&mut out, first);
            first += REPLY_BATCH as u64;
            black_box(out.len())
        });
    });
    encode(&mut out, 1);
    group.bench_function("decode", |b| {
        b.iter(|| {
            let msgs = egress_messages(black_box(&out)).expect("valid egress");
            black_box(msgs.filter(|m| matches!(m, Egress::Reply { .. })).count())
        });
    });
    group.finish();
}

criterion_group!(benches, frame, client, replies, append);
criterion_main!(benches);
