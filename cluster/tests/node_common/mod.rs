//! Shared test helpers: a counting echo service, free ports, configurations, waits (see
//! `tandem_cluster::testkit::node`, which the tools' and samples' tests use too).
#![allow(unused_imports)]

pub use tandem_cluster::testkit::node::*;
