//! Tandem benchmarks.
