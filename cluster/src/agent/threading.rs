//! Threading modes (DESIGN §3).

use std::fmt;
use std::str::FromStr;

use super::error::AgentError;

/// How a node maps its agents onto threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThreadingMode {
    /// `dedicated`: the network, consensus and service agents of a member each run on their
    /// own [`AgentRunner`](super::AgentRunner) thread, each pinnable and usually busy-spinning.
    /// Lowest latency on a machine with cores to spare.
    Dedicated,
    /// `shared`: one thread runs all of a member's agents in one duty cycle
    /// (`node::NodeAgent`). The default on small machines.
    #[default]
    Shared,
    /// `cluster`: one thread drives every member of an in-process cluster (and may drive a
    /// client too), through `node::ClusterAgent`. For tests, the embedded demo and measuring
    /// the software path alone.
    Cluster,
}

impl ThreadingMode {
    /// Every mode, in declaration order.
    pub const ALL: [Self; 3] = [Self::Dedicated, Self::Shared, Self::Cluster];

    /// The mode's name as accepted by `FromStr`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Dedicated => "dedicated",
            Self::Shared => "shared",
            Self::Cluster => "cluster",
        }
    }
}

impl fmt::Display for ThreadingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ThreadingMode {
    type Err = AgentError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.name() == input.trim())
            .ok_or_else(|| AgentError::InvalidThreadingMode {
                input: input.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for mode in ThreadingMode::ALL {
            assert_eq!(mode.to_string().parse::<ThreadingMode>().unwrap(), mode);
        }
        assert_eq!(ThreadingMode::default(), ThreadingMode::Shared);
        let err = "threads".parse::<ThreadingMode>().unwrap_err();
        assert!(matches!(&err, AgentError::InvalidThreadingMode { input } if input == "threads"));
        assert!(err.to_string().contains("dedicated, shared or cluster"));
    }
}
