//! The harness's network: one network namespace per member, joined by veth pairs to a bridge
//! in the root namespace, and nftables rules inside each member's namespace for partitions,
//! packet loss and the detour through the fault proxy.
//!
//! ```text
//!   root namespace: bridge tcb<pid> 10.R.0.254/24 (the harness's clients and fault proxy)
//!     |-- veth tcv<pid>x0 <-> eth0 in tchaos-<pid>-0  10.R.0.1  member 0 (client port 9000, peer 9001)
//!     |-- veth tcv<pid>x1 <-> eth0 in tchaos-<pid>-1  10.R.0.2  member 1
//!     `-- ...
//! ```
//!
//! Every object is named after the harness's pid, so that two runs never collide and a run
//! can remove what a dead run left behind ([`cleanup_stale`]). [`Net`] removes its objects
//! when dropped.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::error::{ChaosError, Result};

/// The members' client port (the peer port is the next one).
pub const CLIENT_PORT: u16 = 9000;
/// The members' peer port.
pub const PEER_PORT: u16 = CLIENT_PORT + 1;
/// The fault proxy listens on `PROXY_IN_BASE + from * 16 + to` (on the bridge address).
pub const PROXY_IN_BASE: u16 = 20000;
/// The fault proxy sends member `i`'s datagrams from `PROXY_OUT_BASE + i`.
pub const PROXY_OUT_BASE: u16 = 21000;

/// Runs `cmd`, returning its stdout.
///
/// # Errors
/// [`ChaosError::Command`] if it cannot run or exits non-zero.
pub fn run(cmd: &mut Command) -> Result<String> {
    run_with_input(cmd, None)
}

/// Runs `cmd` with `input` on its stdin, returning its stdout.
///
/// # Errors
/// [`ChaosError::Command`] if it cannot run or exits non-zero.
pub fn run_with_input(cmd: &mut Command, input: Option<&str>) -> Result<String> {
    let line = format!("{cmd:?}").replace('"', "");
    let fail = |status: String, stderr: String| ChaosError::Command {
        command: line.clone(),
        status,
        stderr,
    };
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string(), String::new()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| fail(e.to_string(), String::new()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(e.to_string(), String::new()))?;
    if !out.status.success() {
        return Err(fail(
            out.status.to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// Whether process `pid` exists.
pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Names of network namespaces, links and run directories of this run.
#[derive(Debug, Clone)]
pub struct Names {
    /// The harness's pid.
    pub pid: u32,
}

impl Names {
    /// Member `i`'s network namespace.
    pub fn netns(&self, i: u32) -> String {
        format!("tchaos-{}-{i}", self.pid)
    }
    /// The bridge.
    pub fn bridge(&self) -> String {
        format!("tcb{}", self.pid)
    }
    /// Member `i`'s veth, root-namespace end.
    pub fn veth(&self, i: u32) -> String {
        format!("tcv{}x{i}", self.pid)
    }
    /// The run directory (member directories, logs).
    pub fn run_dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("tandem-chaos-{}", self.pid))
    }
}

/// What member `i`'s namespace does to its traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Members whose datagrams this member does not receive.
    pub drop_from: BTreeSet<u32>,
    /// Members this member's datagrams do not reach.
    pub drop_to: BTreeSet<u32>,
    /// Percent of received datagrams dropped at random.
    pub loss_percent: u32,
    /// Send peer traffic through the fault proxy.
    pub via_proxy: bool,
}

/// The namespaces, bridge and veths of one run.
#[derive(Debug)]
pub struct Net {
    names: Names,
    size: u32,
    subnet: u8,
    created_ns: Vec<u32>,
    bridge: bool,
}

impl Net {
    /// Creates the bridge and one namespace per member.
    ///
    /// # Errors
    /// [`ChaosError::NoNamespaces`] if the first namespace cannot be created; a command error
    /// for anything after.
    pub fn create(pid: u32, size: u32) -> Result<Self> {
        let names = Names { pid };
        let subnet = free_subnet(pid)?;
        let mut net = Self {
            names,
            size,
            subnet,
            created_ns: Vec::new(),
            bridge: false,
        };
        let bridge = net.names.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])
            .map_err(|e| ChaosError::NoNamespaces(e.to_string()))?;
        net.bridge = true;
        let host = format!("{}/24", net.host_ip());
        ip(&["addr", "add", &host, "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..size {
            let ns = net.names.netns(i);
            ip(&["netns", "add", &ns]).map_err(|e| ChaosError::NoNamespaces(e.to_string()))?;
            net.created_ns.push(i);
            let veth = net.names.veth(i);
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            let addr = format!("{}/24", net.member_ip(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            net.apply(i, &Rules::default())?;
        }
        Ok(net)
    }

    /// The names of this run's objects.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Members.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Member `i`'s address.
    pub fn member_ip(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, i as u8 + 1)
    }

    /// The bridge's address in the root namespace (clients and the proxy use it).
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, 254)
    }

    /// Member `i`'s peer address.
    pub fn peer_addr(&self, i: u32) -> SocketAddr {
        SocketAddr::new(self.member_ip(i).into(), PEER_PORT)
    }

    /// The members list (client ports).
    pub fn members_list(&self) -> String {
        (0..self.size)
            .map(|i| format!("{i}={}:{CLIENT_PORT}", self.member_ip(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Path of member `i`'s namespace file (for `setns`).
    pub fn netns_path(&self, i: u32) -> PathBuf {
        PathBuf::from("/var/run/netns").join(self.names.netns(i))
    }

    /// Replaces member `i`'s nftables ruleset with `rules` (one atomic transaction).
    ///
    /// The ruleset always maps datagrams from the proxy's sending port for member `k` back to
    /// member `k`'s peer address (stateless, before routing), so a member validating that a
    /// datagram's member id matches its source address accepts what the proxy forwards.
    ///
    /// # Errors
    /// A command error if `nft` refuses the ruleset.
    pub fn apply(&self, i: u32, rules: &Rules) -> Result<()> {
        let host = self.host_ip();
        let mut pre = String::new();
        let mut input = String::new();
        let mut output = String::new();
        let mut route = String::new();
        for k in (0..self.size).filter(|&k| k != i) {
            pre += &format!(
                "    ip saddr {host} udp sport {} notrack ip saddr set {} udp sport set {PEER_PORT}\n",
                PROXY_OUT_BASE + k as u16,
                self.member_ip(k)
            );
            if rules.via_proxy {
                route += &format!(
                    "    ip daddr {} udp sport {PEER_PORT} udp dport {PEER_PORT} notrack ip daddr set {host} udp dport set {}\n",
                    self.member_ip(k),
                    PROXY_IN_BASE + (i * 16 + k) as u16
                );
            }
        }
        for k in &rules.drop_from {
            input += &format!("    ip saddr {} drop\n", self.member_ip(*k));
        }
        for k in &rules.drop_to {
            output += &format!("    ip daddr {} drop\n", self.member_ip(*k));
        }
        if rules.loss_percent > 0 {
            input += &format!(
                "    meta l4proto udp numgen random mod 100 < {} drop\n",
                rules.loss_percent.min(100)
            );
        }
        let text = format!(
            "add table ip chaos\ndelete table ip chaos\ntable ip chaos {{\n\
             \x20 chain pre {{ type filter hook prerouting priority -300; policy accept;\n{pre}  }}\n\
             \x20 chain route {{ type route hook output priority -300; policy accept;\n{route}  }}\n\
             \x20 chain in {{ type filter hook input priority 0; policy accept;\n{input}  }}\n\
             \x20 chain out {{ type filter hook output priority 0; policy accept;\n{output}  }}\n\
             }}\n"
        );
        run_with_input(
            Command::new("ip").args(["netns", "exec", &self.names.netns(i), "nft", "-f", "-"]),
            Some(&text),
        )
        .map(|_| ())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for &i in &self.created_ns {
            let _ = ip(&["netns", "del", &self.names.netns(i)]);
            let _ = ip(&["link", "del", &self.names.veth(i)]);
        }
        if self.bridge {
            let _ = ip(&["link", "del", &self.names.bridge()]);
        }
    }
}

/// A `10.R.0.0/24` subnet no address or route of the root namespace uses, R derived from the
/// pid.
fn free_subnet(pid: u32) -> Result<u8> {
    let used = ip(&["-o", "-4", "addr", "show"])? + &ip(&["-4", "route", "show"])?;
    let start = 20 + pid % 230;
    for n in 0..230 {
        let r = 20 + (start - 20 + n) % 230;
        if !used.contains(&format!("10.{r}.0.")) {
            return Ok(r as u8);
        }
    }
    Err(ChaosError::Usage(
        "no free 10.R.0.0/24 subnet for the harness's bridge".into(),
    ))
}

/// The pid in a name `<prefix><pid><rest>` (digits right after the prefix).
fn pid_in(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Removes what runs whose harness process is gone left behind: their members' processes,
/// network namespaces, links, tmpfs mounts and run directories. Returns what it removed.
pub fn cleanup_stale() -> Vec<String> {
    let mut removed = Vec::new();
    let me = std::process::id();
    let stale = |pid: u32| pid != me && !pid_alive(pid);
    if let Ok(list) = ip(&["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if pid_in(name, "tchaos-").is_some_and(stale) {
                if let Ok(pids) = ip(&["netns", "pids", name]) {
                    for p in pids
                        .split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok())
                    {
                        // SAFETY: kill(2) on a process left in a dead run's namespace.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                }
                if ip(&["netns", "del", name]).is_ok() {
                    removed.push(format!("netns {name}"));
                }
            }
        }
    }
    if let Ok(list) = ip(&["-o", "link", "show"]) {
        for l in list.lines() {
            let Some(name) = l.split(':').nth(1).map(str::trim) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            let pid = pid_in(name, "tcb").or_else(|| pid_in(name, "tcv"));
            if pid.is_some_and(stale) && ip(&["link", "del", name]).is_ok() {
                removed.push(format!("link {name}"));
            }
        }
    }
    let tmp = std::env::temp_dir();
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
        for target in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
            let Some(rest) = target.strip_prefix(&format!("{}/", tmp.display())) else {
                continue;
            };
            if pid_in(rest, "tandem-chaos-").is_some_and(stale)
                && run(Command::new("umount").args(["-l", target])).is_ok()
            {
                removed.push(format!("mount {target}"));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("tandem-chaos-")
                && !name.starts_with("tandem-chaos-logs-")
                && pid_in(&name, "tandem-chaos-").is_some_and(stale)
                && std::fs::remove_dir_all(e.path()).is_ok()
            {
                removed.push(format!("dir {}", e.path().display()));
            }
        }
    }
    removed
}

/// This run's objects that still exist (namespaces, links, mounts): empty after teardown.
pub fn leftovers(pid: u32) -> Vec<String> {
    let names = Names { pid };
    let mut left = Vec::new();
    if let Ok(list) = ip(&["netns", "list"]) {
        let prefix = format!("tchaos-{pid}-");
        left.extend(
            list.lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(&prefix))
                .map(|n| format!("netns {n}")),
        );
    }
    if let Ok(list) = ip(&["-o", "link", "show"]) {
        for l in list.lines() {
            let Some(name) = l.split(':').nth(1).map(str::trim) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if pid_in(name, "tcb") == Some(pid) || pid_in(name, "tcv") == Some(pid) {
                left.push(format!("link {name}"));
            }
        }
    }
    let dir = names.run_dir();
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
        let prefix = format!("{}/", dir.display());
        left.extend(
            mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|t| t.starts_with(&prefix))
                .map(|t| format!("mount {t}")),
        );
    }
    if dir.exists() {
        left.push(format!("dir {}", dir.display()));
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_read_from_names() {
        assert_eq!(pid_in("tchaos-123-0", "tchaos-"), Some(123));
        assert_eq!(pid_in("tcv77x1", "tcv"), Some(77));
        assert_eq!(pid_in("tcb9", "tcb"), Some(9));
        assert_eq!(pid_in("tcbx", "tcb"), None);
        assert_eq!(pid_in("eth0", "tcv"), None);
    }
}
