//! `cluster-bench` end to end: short, gentle runs (backoff idle, low rates) of the real binary
//! in each main configuration, checking the JSON document, the `.hgrm` files and the SVG, and
//! that bad flags are usage errors. No timing is asserted: only that every message got its
//! reply and that the figures are consistent with each other.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cluster-bench");

/// Runs the binary with short-run defaults plus `args` (the idle strategy is the default,
/// backoff); returns its output.
fn bench(args: &[&str]) -> Output {
    Command::new(BIN)
        .args([
            "--duration",
            "1",
            "--warmup",
            "0.5",
            "--segment-len-bytes",
            "1048576",
        ])
        .args(args)
        .output()
        .expect("run cluster-bench")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "cluster-bench failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = cur
            .get(key)
            .unwrap_or_else(|| panic!("missing key {path} in {v:#}"));
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {cur}"))
}

/// Checks one block of percentiles and counts; returns (sent, received).
fn check_percentiles(v: &Value, block: &str) -> (u64, u64) {
    let p = |k: &str| num(v, &format!("{block}.{k}"));
    let (p50, p90, p99, p999, p9999, max) = (
        p("p50_us"),
        p("p90_us"),
        p("p99_us"),
        p("p99_9_us"),
        p("p99_99_us"),
        p("max_us"),
    );
    assert!(p50 > 0.0, "{block}.p50_us = {p50}");
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= p9999 && p9999 <= max,
        "{block}: percentiles out of order: {p50} {p90} {p99} {p999} {p9999} {max}"
    );
    let (sent, received, lost) = (p("sent"), p("received"), p("lost"));
    assert!(sent > 0.0, "{block}.sent = {sent}");
    assert_eq!(lost, 0.0, "{block}.lost");
    assert_eq!(received, sent, "{block}: received != sent");
    (sent as u64, received as u64)
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("json file written");
    serde_json::from_str(&text).expect("valid JSON")
}

/// Parses a `.hgrm` file: header line, blank line, rows with increasing percentiles, footer.
fn check_hgrm(path: &Path, expected_count: u64) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    assert_eq!(lines.next(), Some(""), "blank line after the header");
    let mut rows = Vec::new();
    let mut footer = Vec::new();
    for line in lines {
        if line.starts_with("#[") {
            footer.push(line);
            continue;
        }
        assert!(footer.is_empty(), "row after the footer: {line}");
        let cols: Vec<f64> = line
            .split_whitespace()
            .map(|c| {
                c.parse()
                    .unwrap_or_else(|_| panic!("bad number in {line:?}"))
            })
            .collect();
        assert!(cols.len() == 3 || cols.len() == 4, "{line:?}");
        rows.push(cols);
    }
    assert!(rows.len() >= 2, "{text}");
    for w in rows.windows(2) {
        assert!(w[0][1] <= w[1][1], "percentiles must increase: {w:?}");
        assert!(w[0][0] <= w[1][0], "values must not decrease: {w:?}");
        assert!(w[0][2] <= w[1][2], "counts must not decrease: {w:?}");
    }
    let last = rows.last().unwrap();
    assert_eq!(last[1], 1.0, "last row is the 100th percentile");
    assert_eq!(last[2] as u64, expected_count);
    assert_eq!(footer.len(), 3, "{footer:?}");
    assert!(footer[0].starts_with("#[Mean    = ") && footer[0].contains("StdDeviation   = "));
    assert!(footer[1].starts_with("#[Max     = "));
    assert!(footer[1].contains(&format!("Total count    = {expected_count:>12}]")));
    assert!(footer[2].starts_with("#[Buckets = ") && footer[2].contains("SubBuckets     = "));
}

fn check_svg(path: &Path) {
    let text = std::fs::read_to_string(path).expect("svg written");
    let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let lines = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "polyline" || n.tag_name().name() == "path")
        .count();
    assert!(lines >= 2, "a curve per histogram");
    assert!(text.contains("99.9%"), "log percentile axis labels");
}

#[test]
fn latency_ipc_cluster_threading_with_files_and_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (j, h, p) = (
        dir.path().join("run.json"),
        dir.path().join("run.hgrm"),
        dir.path().join("run.svg"),
    );
    let out = bench(&[
        "--mode",
        "latency",
        "--transport",
        "ipc",
        "--threading",
        "cluster",
        "--rate",
        "2000",
        "--snapshot-at",
        "0.5",
        "--json",
        j.to_str().unwrap(),
        "--hgrm",
        h.to_str().unwrap(),
        "--plot",
        p.to_str().unwrap(),
    ]);
    ok(&out);
    let v = json(&j);
    let (sent, _) = check_percentiles(&v, "cluster");
    assert_eq!(sent, 2000, "rate x duration messages measured");
    let (floor_sent, _) = check_percentiles(&v, "floor");
    assert_eq!(floor_sent, 2000);
    assert!(num(&v, "ratio.p50") > 0.0 && num(&v, "ratio.p99") > 0.0);
    assert_eq!(v["config"]["transport"], "ipc");
    assert_eq!(v["config"]["threading"], "cluster");
    assert_eq!(v["config"]["cluster_size"], 3);
    assert!(v["throughput"].is_null() && v["peer"].is_null());
    // The snapshot went through the log and split the run in two.
    let snap = &v["snapshot"];
    assert!(snap["failure"].is_null(), "{snap}");
    assert!(num(&v, "snapshot.position") > 0.0, "{snap}");
    assert_eq!(
        num(&v, "snapshot.count_without") + num(&v, "snapshot.count_with"),
        2000.0
    );
    assert!(num(&v, "snapshot.p99_9_us_with") > 0.0);
    check_hgrm(&h, 2000);
    check_hgrm(&dir.path().join("run.floor.hgrm"), 2000);
    check_svg(&p);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("tandem") && table.contains("floor"),
        "{table}"
    );
    // Every run is checked for lost messages; the 100 K msg/s targets do not apply at 2,000.
    let targets = v["targets"].as_array().expect("targets is an array");
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!(targets[0]["name"], "no-message-lost");
    assert_eq!(targets[0]["key"], "cluster.lost");
    assert_eq!(targets[0]["met"], true);
    assert!(
        table.contains("target no-message-lost: cluster.lost 0.00 <= 0.00: met"),
        "{table}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[cluster]"),
        "progress lines"
    );
}

#[test]
fn latency_udp_shared_threading() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("udp.json");
    let out = bench(&[
        "--transport",
        "udp",
        "--threading",
        "shared",
        "--rate",
        "1000",
        "--size",
        "200",
        "--json",
        j.to_str().unwrap(),
    ]);
    ok(&out);
    let v = json(&j);
    let (sent, _) = check_percentiles(&v, "cluster");
    assert_eq!(sent, 1000);
    check_percentiles(&v, "floor");
    assert!(num(&v, "ratio.p50") > 0.0 && num(&v, "ratio.p99") > 0.0);
    assert_eq!(v["config"]["transport"], "udp");
    assert_eq!(v["config"]["threading"], "shared");
    assert_eq!(v["config"]["size"], 200);
    assert_eq!(v["config"]["mtu"], 1408);
}

/// More clients than a readiness group's slots (cluster threading over UDP): the ones past
/// the group poll their own sockets, and every message still gets its reply.
#[test]
fn more_udp_clients_than_the_readiness_group_holds() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("many.json");
    let out = bench(&[
        "--transport",
        "udp",
        "--clients",
        "40",
        "--rate",
        "400",
        "--json",
        j.to_str().unwrap(),
    ]);
    ok(&out);
    let v = json(&j);
    let (sent, _) = check_percentiles(&v, "cluster");
    assert_eq!(sent, 400);
    assert_eq!(v["config"]["clients"], 40);
    assert_eq!(v["config"]["threading"], "cluster");
}

#[test]
fn throughput_ipc_counts_every_reply() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("tp.json");
    let out = bench(&[
        "--mode",
        "throughput",
        "--transport",
        "ipc",
        "--clients",
        "2",
        "--window",
        "16",
        "--size",
        "32",
        "--json",
        j.to_str().unwrap(),
    ]);
    ok(&out);
    let v = json(&j);
    check_percentiles(&v, "cluster");
    check_percentiles(&v, "floor");
    let msgs = num(&v, "throughput.msgs");
    assert!(msgs > 0.0);
    assert!(num(&v, "throughput.msgs_per_s") > 0.0);
    assert!(num(&v, "floor.msgs_per_s") > 0.0);
    let mb = num(&v, "throughput.mb_per_s");
    let expect_mb = num(&v, "throughput.msgs_per_s") * 32.0 / 1e6;
    assert!(
        (mb - expect_mb).abs() <= expect_mb * 1e-9 + 1e-12,
        "{mb} vs {expect_mb}"
    );
    assert_eq!(num(&v, "throughput.in_flight_max"), 32.0);
    // One thread drove members and clients (cluster threading, the default): its CPU time
    // is reported, bounded by the counting period, and the per-CPU-second rate follows.
    let cpu = num(&v, "throughput.driver_cpu_s");
    let elapsed = num(&v, "throughput.elapsed_s");
    // One thread uses at most one CPU-second per second (generous bound: the period may
    // end one loop turn late on a loaded machine).
    assert!(
        cpu > 0.0 && cpu <= 2.0 * elapsed + 1.0,
        "{cpu} s of CPU in {elapsed} s"
    );
    let per_cpu = num(&v, "throughput.msgs_per_cpu_s");
    assert!(
        (per_cpu - msgs / cpu).abs() <= per_cpu * 1e-9,
        "{per_cpu} vs {msgs} / {cpu}"
    );
    assert_eq!(v["config"]["mode"], "throughput");
}

#[test]
fn members_in_their_own_processes() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("proc.json");
    let out = bench(&[
        "--processes",
        "--transport",
        "udp",
        "--rate",
        "500",
        "--mtu",
        "4096",
        "--size",
        "2000",
        "--json",
        j.to_str().unwrap(),
    ]);
    ok(&out);
    let v = json(&j);
    check_percentiles(&v, "cluster");
    assert_eq!(v["config"]["processes"], true);
    // The member processes were given the datagram size too (a 2000-byte message in one).
    assert_eq!(v["config"]["mtu"], 4096);
    assert_eq!(v["config"]["threading"], "shared");
}

#[test]
fn bad_flags_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["--cluster-size", "4"], "cluster size"),
        (&["--size", "0"], "--size"),
        (&["--size", "40000"], "--size"),
        (&["--rate", "0"], "--rate"),
        (&["--mode", "fastest"], "fastest"),
        (&["--transport", "ipc", "--processes"], "--processes"),
        (&["--idle", "nap"], "nap"),
        (&["--fsync", "sometimes"], "sometimes"),
        (&["--threading", "many"], "many"),
        (&["--cores", "3-1"], "backwards"),
        (&["--snapshot-at", "5"], "--snapshot-at"),
        (&["--window", "0"], "--window"),
        (&["--mtu", "100"], "--mtu 100"),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, needle) in cases {
        let out = bench(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    #[cfg(not(feature = "peer-openraft"))]
    {
        let out = bench(&["--peer", "openraft"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("peer-openraft"), "{err}");
    }
    #[cfg(not(feature = "peer-aeron"))]
    {
        let out = bench(&["--peer", "aeron-transport"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("peer-aeron"), "{err}");
    }
}

/// Member processes that stop answering (stopped with SIGSTOP, so they are still alive) end a
/// latency run with a typed error and exit status 1 once no reply came for the drain timeout,
/// instead of the run waiting for a free window forever.
#[test]
fn a_cluster_that_stops_answering_ends_the_run_with_an_error() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(BIN)
        .args([
            "--processes",
            "--transport",
            "udp",
            "--rate",
            "1000",
            // Long enough that the stall is found before the last message is due (the floor
            // runs this long first).
            "--duration",
            "7",
            "--warmup",
            "0.5",
            "--segment-len-bytes",
            "1048576",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cluster-bench");
    let pid = child.id();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    let mut line = String::new();
    // The members answer first: wait for the cluster's first progress line.
    while stderr.read_line(&mut line).unwrap() > 0 {
        text.push_str(&line);
        let started = line.starts_with("[cluster]");
        line.clear();
        if started {
            break;
        }
    }
    let members = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_else(|e| panic!("the benchmark's children: {e}\n{text}"));
    let members: Vec<&str> = members.split_whitespace().collect();
    assert_eq!(members.len(), 3, "{members:?}\n{text}");
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .arg(sig)
            .args(&members)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {members:?}");
    };
    signal("-STOP");
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        rest
    });
    // Without the stall check the run never ends: give up on it after a minute.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            // The members are still the benchmark's (unreaped) and hold its standard error:
            // they go first. On the normal path the benchmark kills and reaps them itself.
            signal("-KILL");
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    text.push_str(&rest.join().unwrap());
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("no reply from the cluster for 5 s"), "{text}");
}
