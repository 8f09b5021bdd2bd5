//! Cluster member addressing: parsing `ID=HOST:PORT,...` members lists.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use super::error::{Result, TransportError};
use super::frame::CLIENT_SOURCE_ID;

/// Most members a cluster may have.
pub const MAX_MEMBERS: usize = 16;

/// One member's two endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberEndpoint {
    /// Member id as listed.
    pub id: u32,
    /// Address clients talk to (the listed `HOST:PORT`).
    pub client: SocketAddr,
    /// Address members talk to each other on (`HOST:PORT+1`, a separate socket).
    pub peer: SocketAddr,
}

/// The parsed members list, ordered by member id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEndpoints {
    members: Vec<MemberEndpoint>,
}

impl MemberEndpoints {
    /// Parses `0=127.0.0.1:9010,1=127.0.0.1:9020,...`.
    ///
    /// HOST is an IPv4 literal, an IPv6 literal in brackets (`[::1]:9010`) or `localhost`
    /// (which means 127.0.0.1). Whitespace around entries is ignored.
    pub fn parse(list: &str) -> Result<Self> {
        let mut members = Vec::new();
        for raw in list.split(',') {
            let entry = raw.trim();
            if entry.is_empty() {
                if list.trim().is_empty() {
                    return Err(TransportError::EmptyMembers);
                }
                return Err(TransportError::MalformedEntry {
                    entry: raw.to_string(),
                    reason: "empty entry",
                });
            }
            members.push(parse_entry(entry)?);
        }
        Self::new(members)
    }

    /// Builds the list from already-resolved client addresses (`(id, client_addr)`).
    pub fn from_client_addrs(addrs: &[(u32, SocketAddr)]) -> Result<Self> {
        let mut members = Vec::with_capacity(addrs.len());
        for &(id, client) in addrs {
            members.push(endpoint(id, client)?);
        }
        Self::new(members)
    }

    fn new(mut members: Vec<MemberEndpoint>) -> Result<Self> {
        if members.is_empty() {
            return Err(TransportError::EmptyMembers);
        }
        if members.len() > MAX_MEMBERS {
            return Err(TransportError::TooManyMembers(members.len()));
        }
        members.sort_by_key(|m| m.id);
        for pair in members.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(TransportError::DuplicateMemberId(pair[0].id));
            }
        }
        for (i, a) in members.iter().enumerate() {
            for b in &members[i + 1..] {
                // Client and peer ports of all members must be pairwise distinct.
                for x in [a.client, a.peer] {
                    if x == b.client || x == b.peer {
                        return Err(TransportError::DuplicateAddress(x));
                    }
                }
            }
        }
        Ok(Self { members })
    }

    /// All members, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &MemberEndpoint> {
        self.members.iter()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true for a parsed list (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The endpoints of member `id`.
    pub fn get(&self, id: u32) -> Option<&MemberEndpoint> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The member whose peer address is `addr`.
    pub fn member_by_peer_addr(&self, addr: SocketAddr) -> Option<u32> {
        self.members.iter().find(|m| m.peer == addr).map(|m| m.id)
    }

    /// The member whose client address is `addr`.
    pub fn member_by_client_addr(&self, addr: SocketAddr) -> Option<u32> {
        self.members.iter().find(|m| m.client == addr).map(|m| m.id)
    }
}

impl FromStr for MemberEndpoints {
    type Err = TransportError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for MemberEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={}", m.id, m.client)?;
        }
        Ok(())
    }
}

fn endpoint(id: u32, client: SocketAddr) -> Result<MemberEndpoint> {
    if id == CLIENT_SOURCE_ID {
        return Err(TransportError::BadMemberId(id.to_string()));
    }
    match client.port() {
        0 => Err(TransportError::BadPort("0".into())),
        65535 => Err(TransportError::NoPeerPort(id)),
        p => {
            let mut peer = client;
            peer.set_port(p + 1);
            Ok(MemberEndpoint { id, client, peer })
        }
    }
}

fn parse_entry(entry: &str) -> Result<MemberEndpoint> {
    let Some((id_s, hostport)) = entry.split_once('=') else {
        return Err(TransportError::MalformedEntry {
            entry: entry.to_string(),
            reason: "expected ID=HOST:PORT",
        });
    };
    let id_s = id_s.trim();
    let id: u32 = id_s
        .parse()
        .map_err(|_| TransportError::BadMemberId(id_s.to_string()))?;
    let hostport = hostport.trim();
    let Some((host, port_s)) = hostport.rsplit_once(':') else {
        return Err(TransportError::MalformedEntry {
            entry: entry.to_string(),
            reason: "missing :PORT",
        });
    };
    let port: u16 = port_s
        .parse()
        .map_err(|_| TransportError::BadPort(port_s.to_string()))?;
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner
            .parse::<std::net::Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| TransportError::BadHost(host.to_string()))?
    } else {
        host.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| TransportError::BadHost(host.to_string()))?
    };
    endpoint(id, SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_list() {
        let m = MemberEndpoints::parse("1=127.0.0.1:9020, 0=localhost:9010,2=[::1]:9030").unwrap();
        assert_eq!(m.len(), 3);
        let m0 = m.get(0).unwrap();
        assert_eq!(m0.client, "127.0.0.1:9010".parse().unwrap());
        assert_eq!(m0.peer, "127.0.0.1:9011".parse().unwrap());
        assert_eq!(m.get(2).unwrap().peer, "[::1]:9031".parse().unwrap());
        assert_eq!(
            m.member_by_peer_addr("127.0.0.1:9021".parse().unwrap()),
            Some(1)
        );
        assert_eq!(
            m.member_by_client_addr("127.0.0.1:9021".parse().unwrap()),
            None
        );
        let again: MemberEndpoints = m.to_string().parse().unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn rejects_malformed_lists() {
        use TransportError as E;
        type Check = fn(&TransportError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, E::EmptyMembers)),
            ("   ", |e| matches!(e, E::EmptyMembers)),
            ("0=127.0.0.1:9010,", |e| {
                matches!(e, E::MalformedEntry { .. })
            }),
            ("0=127.0.0.1:9010,0=127.0.0.1:9020", |e| {
                matches!(e, E::DuplicateMemberId(0))
            }),
            ("0=127.0.0.1:99999", |e| matches!(e, E::BadPort(_))),
            ("0=127.0.0.1:abc", |e| matches!(e, E::BadPort(_))),
            ("0=127.0.0.1:0", |e| matches!(e, E::BadPort(_))),
            ("3=127.0.0.1:65535", |e| matches!(e, E::NoPeerPort(3))),
            ("0=127.0.0.1", |e| matches!(e, E::MalformedEntry { .. })),
            ("127.0.0.1:9010", |e| matches!(e, E::MalformedEntry { .. })),
            ("x=127.0.0.1:9010", |e| matches!(e, E::BadMemberId(_))),
            ("4294967295=127.0.0.1:9010", |e| {
                matches!(e, E::BadMemberId(_))
            }),
            ("0=example.com:9010", |e| matches!(e, E::BadHost(_))),
            ("0=::1:9010", |e| matches!(e, E::BadHost(_))),
            ("0=127.0.0.1:9010,1=127.0.0.1:9011", |e| {
                matches!(e, E::DuplicateAddress(_))
            }),
        ];
        for (input, check) in cases {
            let err = MemberEndpoints::parse(input).unwrap_err();
            assert!(check(&err), "{input:?} gave {err:?}");
        }
        let many: Vec<String> = (0..17)
            .map(|i| format!("{i}=127.0.0.1:{}", 9000 + 10 * i))
            .collect();
        assert!(matches!(
            MemberEndpoints::parse(&many.join(",")),
            Err(E::TooManyMembers(17))
        ));
        assert_eq!(
            MemberEndpoints::parse(&many[..16].join(",")).unwrap().len(),
            16
        );
    }
}
