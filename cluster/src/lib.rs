//! Tandem cluster.
