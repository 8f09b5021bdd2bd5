//! The peers run beside Tandem (cargo features `peer-openraft`, `peer-aeron`).

#[cfg(feature = "peer-openraft")]
use super::config::Mode;
use super::config::{PeerKind, Settings};
use super::error::{BenchError, Result};
use super::report::PeerFigures;

/// Runs `peer` with the run's workload: the same size, offered rate (latency) or messages in
/// flight (throughput), warm-up and duration.
///
/// # Errors
/// [`BenchError::Peer`] if the peer fails; [`BenchError::PeerNotBuilt`] if this binary was
/// built without it.
pub fn run(s: &Settings, peer: PeerKind) -> Result<PeerFigures> {
    eprintln!("[peer] running {}", peer.name());
    match peer {
        PeerKind::Openraft => openraft(s),
        PeerKind::AeronTransport => aeron(s),
    }
}

#[cfg(feature = "peer-openraft")]
fn openraft(s: &Settings) -> Result<PeerFigures> {
    use crate::peer::openraft as p;
    let err = |e: p::PeerError| BenchError::Peer {
        peer: "openraft",
        what: e.to_string(),
    };
    match s.mode {
        Mode::Latency => p::latency(s.size, s.rate, s.warmup, s.duration)
            .map(PeerFigures::Latency)
            .map_err(err),
        Mode::Throughput => p::throughput(s.size, s.clients * s.window, s.warmup, s.duration)
            .map(PeerFigures::Throughput)
            .map_err(err),
    }
}

#[cfg(not(feature = "peer-openraft"))]
fn openraft(_: &Settings) -> Result<PeerFigures> {
    Err(BenchError::PeerNotBuilt {
        peer: PeerKind::Openraft.name(),
        feature: PeerKind::Openraft.feature(),
    })
}

#[cfg(feature = "peer-aeron")]
fn aeron(s: &Settings) -> Result<PeerFigures> {
    use super::config::TransportKind;
    use crate::peer::aeron as p;
    let path = match s.transport {
        TransportKind::Udp => p::AeronPath::Udp,
        TransportKind::Ipc => p::AeronPath::Ipc,
    };
    p::pingpong(path, s.size, &s.idle_text, s.warmup, s.duration)
        .map(PeerFigures::Latency)
        .map_err(|e| BenchError::Peer {
            peer: "aeron-transport",
            what: e.to_string(),
        })
}

#[cfg(not(feature = "peer-aeron"))]
fn aeron(_: &Settings) -> Result<PeerFigures> {
    Err(BenchError::PeerNotBuilt {
        peer: PeerKind::AeronTransport.name(),
        feature: PeerKind::AeronTransport.feature(),
    })
}
