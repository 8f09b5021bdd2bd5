//! The Tandem node runtime and cluster client (DESIGN §3–§7).
//!
//! * [`ArchiveLogStore`]: the consensus core's `LogStore` over the archive's mapped log.
//! * [`NodeConfig`]: a member's configuration from CLI flags and an optional TOML file.
//! * [`ClusterNode`]: launches one member (archive, recovery, control file, transport,
//!   consensus core and service container) as a [`NodeAgent`] — a [`NetworkAgent`] and a
//!   [`ConsensusAgent`] — on one agent thread (`shared`) or one each (`dedicated`);
//!   [`InProcessCluster`] drives several members on one thread (`cluster` threading mode).
//! * [`ClusterClient`]: connects to any member, follows redirects, offers messages with
//!   back-pressure, polls replies, re-attaches after failover.

mod client;
mod cluster_node;
mod config;
mod error;
mod files;
mod log_store;
mod net;
mod network_agent;
mod pipe;
mod service_agent;

pub use client::{ClientConfig, ClusterClient};
pub use cluster_node::{
    ClusterAgent, ClusterNode, ConsensusAgent, InProcessCluster, NodeAgent, NodeHooks, NodeStatus,
};
pub use config::{FileConfig, NodeArgs, NodeConfig};
pub use error::{ClientError, NodeError, Result};
pub use log_store::{ArchiveLogStore, LogStoreError};
pub use net::NodeNetwork;
pub use network_agent::NetworkAgent;
pub use service_agent::ServiceAgent;
