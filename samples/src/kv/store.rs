//! The key-value store service.

use std::collections::BTreeMap;

use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SessionId, SnapshotImage, SnapshotWriter,
};

use crate::codec;
use crate::kv::messages::{ArchivedKvRequest, FORMAT_VERSION, KvError, KvReply, KvRequest};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Most keys the store holds.
pub const MAX_ENTRIES: usize = 1 << 20;

/// One key and its value in a snapshot.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct KvEntry {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// The store's snapshot: every entry in key order.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct KvSnapshot {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The entries, in ascending key order.
    pub entries: Vec<KvEntry>,
}

/// A key-value store service: set, get, delete and compare-and-set, each answered on the
/// requesting session.
#[derive(Debug, Default)]
pub struct KvStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    scratch: AlignedVec,
    out: AlignedVec,
}

impl KvStore {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A hash of the replicated state: CRC-32C over every (key, value) in key order, each
    /// prefixed with its length.
    pub fn state_hash(&self) -> u32 {
        let mut crc = crc32c::crc32c(&(self.map.len() as u64).to_le_bytes());
        for (k, v) in &self.map {
            crc = crc32c::crc32c_append(crc, &(k.len() as u32).to_le_bytes());
            crc = crc32c::crc32c_append(crc, k);
            crc = crc32c::crc32c_append(crc, &(v.len() as u32).to_le_bytes());
            crc = crc32c::crc32c_append(crc, v);
        }
        crc
    }

    /// Applies one encoded request and returns the reply (what `on_session_message` sends).
    pub fn execute(&mut self, message: &[u8]) -> KvReply {
        let mut scratch = std::mem::take(&mut self.scratch);
        let reply = match codec::access::<KvRequest>(message, &mut scratch) {
            Ok(request) => self.execute_archived(request),
            Err(_) => KvReply::Rejected {
                reason: KvError::Malformed,
            },
        };
        self.scratch = scratch;
        reply
    }

    fn execute_archived(&mut self, request: &ArchivedKvRequest) -> KvReply {
        let key = match request {
            ArchivedKvRequest::Set { key, .. }
            | ArchivedKvRequest::Get { key }
            | ArchivedKvRequest::Delete { key }
            | ArchivedKvRequest::CompareAndSet { key, .. } => key.as_slice(),
        };
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return reject(KvError::BadKey);
        }
        match request {
            ArchivedKvRequest::Set { value, .. } => {
                let value = value.as_slice();
                if value.len() > MAX_VALUE_BYTES {
                    return reject(KvError::ValueTooLarge);
                }
                if self.map.len() >= MAX_ENTRIES && !self.map.contains_key(key) {
                    return reject(KvError::StoreFull);
                }
                let previous = self.map.insert(key.to_vec(), value.to_vec());
                KvReply::Stored { previous }
            }
            ArchivedKvRequest::Get { .. } => KvReply::Value {
                value: self.map.get(key).cloned(),
            },
            ArchivedKvRequest::Delete { .. } => KvReply::Deleted {
                previous: self.map.remove(key),
            },
            ArchivedKvRequest::CompareAndSet { expected, new, .. } => {
                let new = new.as_ref().map(|v| v.as_slice());
                if new.is_some_and(|v| v.len() > MAX_VALUE_BYTES) {
                    return reject(KvError::ValueTooLarge);
                }
                let current = self.map.get(key).map(Vec::as_slice);
                if current != expected.as_ref().map(|v| v.as_slice()) {
                    return KvReply::Swapped {
                        success: false,
                        current: current.map(<[u8]>::to_vec),
                    };
                }
                match new {
                    Some(v) => {
                        if current.is_none() && self.map.len() >= MAX_ENTRIES {
                            return reject(KvError::StoreFull);
                        }
                        self.map.insert(key.to_vec(), v.to_vec());
                    }
                    None => {
                        self.map.remove(key);
                    }
                }
                KvReply::Swapped {
                    success: true,
                    current: new.map(<[u8]>::to_vec),
                }
            }
        }
    }

    /// The state as a snapshot value.
    pub fn to_snapshot(&self) -> KvSnapshot {
        KvSnapshot {
            version: FORMAT_VERSION,
            entries: self
                .map
                .iter()
                .map(|(k, v)| KvEntry {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        }
    }

    /// A store holding a snapshot's entries.
    ///
    /// # Panics
    /// If the snapshot's version is not [`FORMAT_VERSION`].
    pub fn from_snapshot(snapshot: KvSnapshot) -> Self {
        assert_eq!(snapshot.version, FORMAT_VERSION, "kv snapshot version");
        Self {
            map: snapshot
                .entries
                .into_iter()
                .map(|e| (e.key, e.value))
                .collect(),
            ..Self::default()
        }
    }
}

fn reject(reason: KvError) -> KvReply {
    KvReply::Rejected { reason }
}

impl ClusteredService for KvStore {
    fn on_start(&mut self, _: &mut dyn Cluster, snapshot: Option<SnapshotImage<'_>>) {
        let Some(mut image) = snapshot else { return };
        let bytes = image.read_bytes().expect("kv snapshot present");
        let snapshot = codec::decode::<KvSnapshot>(bytes).expect("valid kv snapshot");
        *self = Self::from_snapshot(snapshot);
    }

    fn on_session_open(&mut self, _: &mut dyn Cluster, _: &ClientSession<'_>, _: i64) {}

    fn on_session_close(
        &mut self,
        _: &mut dyn Cluster,
        _: &ClientSession<'_>,
        _: i64,
        _: CloseReason,
    ) {
    }

    fn on_session_message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        _: i64,
        message: &[u8],
        _: &Header,
    ) {
        let Some(session) = session else { return };
        let reply = self.execute(message);
        codec::encode_into(&reply, &mut self.out);
        let _ = cluster.offer_egress(session, &self.out);
    }

    fn on_timer_event(&mut self, _: &mut dyn Cluster, _: u64, _: i64) {}

    fn on_take_snapshot(&mut self, writer: &mut SnapshotWriter<'_>) {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&self.to_snapshot()).expect("serializes");
        writer.write_bytes(&bytes);
    }

    fn on_role_change(&mut self, _: Role) {}

    fn on_new_leadership_term_event(&mut self, _: &mut dyn Cluster, _: &LeadershipTermEvent) {}

    fn on_terminate(&mut self, _: &mut dyn Cluster) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(store: &mut KvStore, request: KvRequest) -> KvReply {
        store.execute(&request.encode())
    }

    fn v(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn set_get_delete_cas() {
        let mut s = KvStore::default();
        let k = || b"k".to_vec();
        assert_eq!(
            run(&mut s, KvRequest::Get { key: k() }),
            KvReply::Value { value: None }
        );
        assert_eq!(
            run(
                &mut s,
                KvRequest::Set {
                    key: k(),
                    value: b"1".to_vec()
                }
            ),
            KvReply::Stored { previous: None }
        );
        assert_eq!(
            run(
                &mut s,
                KvRequest::Set {
                    key: k(),
                    value: b"2".to_vec()
                }
            ),
            KvReply::Stored { previous: v("1") }
        );
        assert_eq!(
            run(&mut s, KvRequest::Get { key: k() }),
            KvReply::Value { value: v("2") }
        );
        let cas = |expected, new| KvRequest::CompareAndSet {
            key: k(),
            expected,
            new,
        };
        assert_eq!(
            run(&mut s, cas(v("1"), v("3"))),
            KvReply::Swapped {
                success: false,
                current: v("2")
            }
        );
        assert_eq!(
            run(&mut s, cas(v("2"), v("3"))),
            KvReply::Swapped {
                success: true,
                current: v("3")
            }
        );
        assert_eq!(
            run(&mut s, KvRequest::Delete { key: k() }),
            KvReply::Deleted { previous: v("3") }
        );
        assert_eq!(
            run(&mut s, cas(None, v("4"))),
            KvReply::Swapped {
                success: true,
                current: v("4")
            }
        );
        assert_eq!(
            run(&mut s, cas(v("4"), None)),
            KvReply::Swapped {
                success: true,
                current: None
            }
        );
        assert!(s.is_empty());
    }

    #[test]
    fn rejections() {
        let mut s = KvStore::default();
        assert_eq!(s.execute(b"nonsense"), reject(KvError::Malformed));
        assert_eq!(
            run(&mut s, KvRequest::Get { key: vec![] }),
            reject(KvError::BadKey)
        );
        assert_eq!(
            run(
                &mut s,
                KvRequest::Get {
                    key: vec![1; MAX_KEY_BYTES + 1]
                }
            ),
            reject(KvError::BadKey)
        );
        assert_eq!(
            run(
                &mut s,
                KvRequest::Set {
                    key: vec![1],
                    value: vec![0; MAX_VALUE_BYTES + 1]
                }
            ),
            reject(KvError::ValueTooLarge)
        );
        assert!(s.is_empty());
    }

    #[test]
    fn snapshot_round_trip() {
        let mut s = KvStore::default();
        for i in 0..100u32 {
            run(
                &mut s,
                KvRequest::Set {
                    key: i.to_be_bytes().to_vec(),
                    value: vec![i as u8; (i % 9) as usize],
                },
            );
        }
        // The archive sits after a 4-byte length in the image: misaligned, so it is copied.
        let mut bytes = Vec::new();
        s.on_take_snapshot(&mut SnapshotWriter::new(&mut bytes));
        let mut restored = KvStore::default();
        let mut c = crate::RecordingCluster::default();
        restored.on_start(&mut c, Some(SnapshotImage::new(&bytes)));
        assert_eq!(restored.state_hash(), s.state_hash());
        assert_eq!(restored.to_snapshot(), s.to_snapshot());
        assert_eq!(restored.get(&5u32.to_be_bytes()), Some(&[5u8; 5][..]));
        assert_ne!(KvStore::default().state_hash(), s.state_hash());
    }
}
