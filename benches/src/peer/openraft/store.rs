//! In-memory storage for the openraft peer: a log store that never syncs (the equivalent of
//! Tandem's `--fsync none`) and an echo state machine that answers each write with its own
//! payload (the equivalent of Tandem's echo service).
//!
//! Both are shared handles over a mutex; the runtime is single-threaded, so the lock is never
//! contended and never held across an `.await`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::io::{self, Cursor};
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ::openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine, Snapshot};
use ::openraft::{
    EmptyNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, LogState, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StoredMembership, Vote,
};

use super::Echo;

/// Locks `m`, taking the data of a poisoned lock as it is (a panic elsewhere already failed the
/// run; the data itself stays consistent because no method leaves it half-updated).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Purged entries freed per entry appended (see [`LogData::garbage`]).
const FREED_PER_APPENDED: usize = 2;

#[derive(Debug, Default)]
struct LogData {
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    last_purged: Option<LogId<u64>>,
    /// Entries by log index, all after `last_purged`.
    entries: BTreeMap<u64, Entry<Echo>>,
    /// Purged entries not yet freed, oldest purge first. Freeing the ~100 K entries of one
    /// purge at once takes about 10 ms, during which the one runtime thread — all three
    /// members — would stop; instead every append frees [`FREED_PER_APPENDED`] of them per
    /// entry it appends, so the same work is spread evenly and the garbage is gone long
    /// before the next purge.
    garbage: VecDeque<BTreeMap<u64, Entry<Echo>>>,
}

impl LogData {
    /// Frees up to `budget` purged entries, oldest first.
    fn free_garbage(&mut self, mut budget: usize) {
        while budget > 0 {
            let Some(oldest) = self.garbage.front_mut() else {
                return;
            };
            if oldest.pop_first().is_some() {
                budget -= 1;
            } else {
                self.garbage.pop_front();
            }
        }
    }

    /// Purged entries not yet freed.
    #[cfg(test)]
    fn garbage_len(&self) -> usize {
        self.garbage.iter().map(BTreeMap::len).sum()
    }
}

/// One member's Raft log, in memory. Clones share the same log (the log reader is a clone).
#[derive(Debug, Clone, Default)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogData>>,
}

impl RaftLogReader<Echo> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<Echo>>, StorageError<u64>> {
        let log = lock(&self.inner);
        Ok(log.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<Echo> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<Echo>, StorageError<u64>> {
        let log = lock(&self.inner);
        let last_log_id = log
            .entries
            .last_key_value()
            .map(|(_, e)| e.log_id)
            .or(log.last_purged);
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        lock(&self.inner).vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(lock(&self.inner).vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        lock(&self.inner).committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(lock(&self.inner).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Echo>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Echo>> + Send,
        I::IntoIter: Send,
    {
        {
            let mut log = lock(&self.inner);
            let mut appended = 0;
            for entry in entries {
                log.entries.insert(entry.log_id.index, entry);
                appended += 1;
            }
            log.free_garbage(appended * FREED_PER_APPENDED);
        }
        // No fsync: the entries are "durable" as soon as they are in memory.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let mut log = lock(&self.inner);
        // Drops the entries at `log_id.index` and after.
        drop(log.entries.split_off(&log_id.index));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let mut log = lock(&self.inner);
        debug_assert!(log.last_purged <= Some(log_id), "purge moves backwards");
        let kept = log.entries.split_off(&(log_id.index + 1));
        let purged = std::mem::replace(&mut log.entries, kept);
        if !purged.is_empty() {
            log.garbage.push_back(purged);
        }
        log.last_purged = Some(log_id);
        Ok(())
    }
}

/// A snapshot as the state machine keeps it: its metadata and its bytes.
#[derive(Debug, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, EmptyNode>,
    data: Vec<u8>,
}

#[derive(Debug, Default)]
struct MachineData {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, EmptyNode>,
    /// Client writes applied so far: the whole state, 8 bytes little-endian in a snapshot.
    writes_applied: u64,
    snapshots_built: u64,
    snapshot: Option<StoredSnapshot>,
}

/// One member's echo state machine. Clones share the same state (the snapshot builder is a
/// clone).
#[derive(Debug, Clone, Default)]
pub(crate) struct EchoMachine {
    inner: Arc<Mutex<MachineData>>,
}

impl EchoMachine {
    /// Client writes this member has applied.
    #[cfg(test)]
    pub(crate) fn writes_applied(&self) -> u64 {
        lock(&self.inner).writes_applied
    }
}

impl RaftSnapshotBuilder<Echo> for EchoMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Echo>, StorageError<u64>> {
        let mut sm = lock(&self.inner);
        sm.snapshots_built += 1;
        let snapshot_id = match sm.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, sm.snapshots_built),
            None => format!("none-{}", sm.snapshots_built),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: sm.last_applied,
                last_membership: sm.membership.clone(),
                snapshot_id,
            },
            data: sm.writes_applied.to_le_bytes().to_vec(),
        };
        sm.snapshot = Some(stored.clone());
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<Echo> for EchoMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, EmptyNode>), StorageError<u64>> {
        let sm = lock(&self.inner);
        Ok((sm.last_applied, sm.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<u8>>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Echo>> + Send,
        I::IntoIter: Send,
    {
        let mut sm = lock(&self.inner);
        let mut replies = Vec::new();
        for entry in entries {
            sm.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(payload) => {
                    sm.writes_applied += 1;
                    payload // the echo
                }
                EntryPayload::Membership(m) => {
                    sm.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
            };
            replies.push(reply);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, EmptyNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let data = snapshot.into_inner();
        let writes_applied = <[u8; 8]>::try_from(data.as_slice())
            .map(u64::from_le_bytes)
            .map_err(|_| {
                StorageError::from_io_error(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Read,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("echo snapshot is {} bytes, expected 8", data.len()),
                    ),
                )
            })?;
        let mut sm = lock(&self.inner);
        sm.last_applied = meta.last_log_id;
        sm.membership = meta.last_membership.clone();
        sm.writes_applied = writes_applied;
        sm.snapshot = Some(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Echo>>, StorageError<u64>> {
        let sm = lock(&self.inner);
        Ok(sm.snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use ::openraft::CommittedLeaderId;

    use super::*;

    fn entry(index: u64) -> Entry<Echo> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(index.to_le_bytes().to_vec()),
        }
    }

    /// A purge hides the entries at once; their freeing is spread over later appends.
    #[test]
    fn purged_entries_are_hidden_at_once_and_freed_bit_by_bit() {
        let mut store = LogStore::default();
        {
            let mut log = lock(&store.inner);
            for i in 1..=10 {
                log.entries.insert(i, entry(i));
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(store.purge(entry(7).log_id)).expect("purge");
        let (state, visible) = rt.block_on(async {
            let state = store.get_log_state().await.expect("log state");
            let visible = store.try_get_log_entries(0..100).await.expect("entries");
            (state, visible)
        });
        assert_eq!(state.last_purged_log_id, Some(entry(7).log_id));
        assert_eq!(state.last_log_id, Some(entry(10).log_id));
        let indexes: Vec<u64> = visible.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, [8, 9, 10]);

        let mut log = lock(&store.inner);
        assert_eq!(log.garbage_len(), 7);
        log.free_garbage(3);
        assert_eq!(log.garbage_len(), 4);
        log.free_garbage(100);
        assert_eq!(log.garbage_len(), 0);
        assert!(log.garbage.is_empty());
    }
}
