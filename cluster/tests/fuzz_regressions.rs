//! The wire and snapshot fuzz entry points (`fuzz/src/wire_targets.rs`, run by cargo-fuzz; see
//! `fuzz/README.md`) in the normal test suite: every input that ever failed a target, kept in
//! `fuzz/regressions/<target>/`, and a bounded proptest byte-fuzz of the same entry points.

#[allow(dead_code)]
#[path = "../../fuzz/src/wire_targets.rs"]
mod wire_targets;

use std::path::PathBuf;

use proptest::prelude::*;
use wire_targets::*;

fn regressions(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "md"))
                .map(|p| {
                    let bytes = std::fs::read(&p).unwrap();
                    (p, bytes)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn kept_failures_of_the_wire_and_snapshot_targets_pass() {
    for (path, bytes) in regressions("wire") {
        eprintln!("wire: {}", path.display());
        datagrams(&bytes);
        codec(&bytes);
    }
    for (path, bytes) in regressions("snapshot") {
        eprintln!("snapshot: {}", path.display());
        consensus_snapshot(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn codec_decoders_survive_any_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        codec(&data);
    }

    #[test]
    fn codec_decoders_survive_plausible_headers(
        kind in 0u8..32,
        version in 0u8..4,
        rest in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        // Real messages start with a small type code and version: reach past them.
        let mut data = vec![kind, version];
        data.extend_from_slice(&rest);
        codec(&data);
        let mut shifted = vec![0u8; 2];
        shifted.extend_from_slice(&data);
        codec(&shifted);
    }

    #[test]
    fn datagram_decoder_and_reassembly_survive_any_bytes(
        data in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        datagrams(&data);
    }

    #[test]
    fn consensus_snapshot_decoder_survives_any_bytes(
        data in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        consensus_snapshot(&data);
    }
}
