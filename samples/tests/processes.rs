//! The sample binaries as real processes on loopback: three `kv-store node --http` members
//! answering `GET /set|/get|/delete` on every member (forwarded through the cluster), and a
//! `matching-engine client` load against three `matching-engine node` processes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_samples::cli::{TempDir, free_members};

/// The tests here run one at a time: free ports are free only until someone binds them.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Children killed (SIGKILL) if the test panics before stopping them.
struct Procs(Vec<Child>);

impl Procs {
    /// SIGTERM every child and checks each exits successfully.
    fn stop(mut self) {
        for p in &self.0 {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(p.id() as i32, libc::SIGTERM) };
        }
        for p in &mut self.0 {
            let status = p.wait().unwrap();
            assert!(status.success(), "{status}");
        }
        self.0.clear();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

fn node(bin: &str, id: u32, members: &str, dir: &Path, extra: &[String]) -> Child {
    Command::new(bin)
        .args(["node", "--member-id", &id.to_string(), "--members", members])
        .arg("--dir")
        .arg(dir.join(format!("node-{id}")))
        .args([
            "--cluster-id",
            "9",
            "--election-timeout-ms",
            "400",
            "--heartbeat-interval-ms",
            "40",
            "--idle",
            "backoff",
            "--segment-len-bytes",
            "1048576",
            "--bootstrap",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET target` on `port`: (status, body), or `None` if the connection failed.
fn get(port: u16, target: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1)?.trim().to_string();
    Some((status, body))
}

/// `get` until it answers 200 (the cluster may still be electing), at most 60 s.
fn get_ok(port: u16, target: &str) -> String {
    let start = Instant::now();
    loop {
        match get(port, target) {
            Some((200, body)) => return body,
            other => assert!(
                start.elapsed() < Duration::from_secs(60),
                "GET {target} on {port}: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kv_store_over_http_on_every_member() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = TempDir::new("tandem-kv-http-test").unwrap();
    let members = free_members(3);
    let ports: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect();
    let procs = Procs(
        (0..3)
            .map(|i| {
                node(
                    env!("CARGO_BIN_EXE_kv-store"),
                    i,
                    &members,
                    tmp.path(),
                    &["--http".into(), format!("127.0.0.1:{}", ports[i as usize])],
                )
            })
            .collect(),
    );
    // The first request may be retried while the cluster elects a leader: use a key of its own.
    get_ok(ports[0], "/set?key=warmup&value=1");
    assert_eq!(get_ok(ports[1], "/get?key=warmup"), r#"{"value":"1"}"#);
    // A sequence across the members reads like one register.
    assert_eq!(get_ok(ports[0], "/get?key=a"), r#"{"value":null}"#);
    assert_eq!(
        get_ok(ports[1], "/set?key=a&value=1"),
        r#"{"previous":null}"#
    );
    assert_eq!(get_ok(ports[2], "/get?key=a"), r#"{"value":"1"}"#);
    assert_eq!(
        get_ok(ports[2], "/set?key=a&value=hello%20world"),
        r#"{"previous":"1"}"#
    );
    assert_eq!(get_ok(ports[0], "/get?key=a"), r#"{"value":"hello world"}"#);
    assert_eq!(
        get_ok(ports[1], "/delete?key=a"),
        r#"{"previous":"hello world"}"#
    );
    for &p in &ports {
        assert_eq!(get_ok(p, "/get?key=a"), r#"{"value":null}"#);
    }
    for (i, &p) in ports.iter().enumerate() {
        let v = format!("v{i}");
        get_ok(p, &format!("/set?key=k&value={v}"));
        for &q in &ports {
            assert_eq!(get_ok(q, "/get?key=k"), format!(r#"{{"value":"{v}"}}"#));
        }
    }
    // Bad requests are refused, not forwarded.
    assert_eq!(get(ports[0], "/set?key=a").map(|r| r.0), Some(400));
    assert_eq!(get(ports[0], "/nope?key=a").map(|r| r.0), Some(404));
    procs.stop();
}

#[test]
fn matching_engine_client_load_against_three_nodes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = TempDir::new("tandem-me-client-test").unwrap();
    let members = free_members(3);
    let bin = env!("CARGO_BIN_EXE_matching-engine");
    let procs = Procs(
        (0..3)
            .map(|i| node(bin, i, &members, tmp.path(), &[]))
            .collect(),
    );
    let out = Command::new(bin)
        .args([
            "client",
            "--members",
            &members,
            "--cluster-id",
            "9",
            "--clients",
            "2",
            "--rate",
            "1000",
            "--duration",
            "2",
            "--timeout",
            "30",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("orders: sent "))
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    assert!(summary.contains("lost 0, duplicates 0"), "{summary}");
    assert!(
        stdout.contains("latency (offer -> answer): p50"),
        "{stdout}"
    );
    // A few orders from the command line, with their replies.
    let out = Command::new(bin)
        .args([
            "client",
            "--members",
            &members,
            "--cluster-id",
            "9",
            "buy",
            "1",
            "10@1000",
            "sell",
            "1",
            "4@1000",
            "ioc",
            "cancel",
            "1",
            "999999",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("Accepted"), "{stdout}");
    assert!(stdout.contains("Filled"), "{stdout}");
    assert!(stdout.contains("UnknownOrder"), "{stdout}");
    procs.stop();
}
