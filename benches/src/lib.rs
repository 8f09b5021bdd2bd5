//! Tandem benchmarks: the `cluster-bench` harness ([`cluster_bench`]) and the peers measured
//! beside it ([`peer`]); the criterion suites live under `benches/`.

pub mod cluster_bench;
pub mod peer;
