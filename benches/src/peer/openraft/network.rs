//! The in-process network between openraft members: an RPC is a direct call into the target
//! member's [`Raft`] handle, with no sockets and no serialisation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use ::openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use ::openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use ::openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use ::openraft::{EmptyNode, Raft};

use super::Echo;

/// An RPC to a member that is not (or no longer) registered with the router.
#[derive(Debug, thiserror::Error)]
#[error("member {0} is not registered with the in-process router")]
struct NotRegistered(u64);

/// The members of one in-process cluster, by id. Every member's network factory is a clone.
#[derive(Clone, Default)]
pub(crate) struct Router {
    members: Arc<Mutex<BTreeMap<u64, Raft<Echo>>>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Router")
            .field("members", &members.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Router {
    /// Makes `raft` reachable as member `id`.
    pub(crate) fn register(&self, id: u64, raft: Raft<Echo>) {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.insert(id, raft);
    }

    /// Forgets every member (breaks the cycle member → network → router → member).
    pub(crate) fn clear(&self) {
        let mut members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members.clear();
    }

    fn member(&self, id: u64) -> Result<Raft<Echo>, Unreachable> {
        let members = self.members.lock().unwrap_or_else(PoisonError::into_inner);
        members
            .get(&id)
            .cloned()
            .ok_or_else(|| Unreachable::new(&NotRegistered(id)))
    }
}

impl RaftNetworkFactory<Echo> for Router {
    type Network = Connection;

    async fn new_client(&mut self, target: u64, _node: &EmptyNode) -> Connection {
        Connection {
            router: self.clone(),
            target,
        }
    }
}

/// One member's connection to another: each call goes straight into the target's handle.
#[derive(Debug)]
pub(crate) struct Connection {
    router: Router,
    target: u64,
}

impl RaftNetwork<Echo> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Echo>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, EmptyNode, RaftError<u64>>> {
        let raft = self.router.member(self.target)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Echo>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, EmptyNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let raft = self.router.member(self.target)?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, EmptyNode, RaftError<u64>>> {
        let raft = self.router.member(self.target)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}
