//! Tandem benchmarks.

pub mod peer;
