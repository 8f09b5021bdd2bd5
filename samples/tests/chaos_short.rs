//! `tandem-chaos` on a short schedule: every fault kind at least once against real member
//! processes in network namespaces of their own, the checks pass, and nothing of the run
//! (namespaces, links, tmpfs mounts, directories) is left afterwards. The kv run's members use
//! `dedicated` threading (the service on its own thread), the matching run's `shared`. Needs
//! root, iproute2 and nftables, as the harness does.

use std::process::{Command, Stdio};

use tandem_samples::chaos::FaultKind;
use tandem_samples::chaos::net::leftovers;
use tandem_samples::cli::TempDir;

/// One run at a time: they share the two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn short_run(
    service: &str,
    size: &str,
    threading: &str,
    seed: &str,
    duration: &str,
    checks: &[&str],
) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = TempDir::new("tandem-chaos-test").unwrap();
    let json = tmp.path().join("summary.json");
    let child = Command::new(env!("CARGO_BIN_EXE_tandem-chaos"))
        .args([
            "--seed",
            seed,
            "--duration",
            duration,
            "--cluster-size",
            size,
            "--service",
            service,
            "--threading",
            threading,
        ])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    for kind in FaultKind::ALL {
        assert!(
            stderr.contains(&format!("{}: ", kind.name())),
            "no {} fault injected:\n{stderr}",
            kind.name()
        );
    }
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let summary = std::fs::read_to_string(&json).unwrap();
    assert!(summary.contains("\"ok\":true"), "{summary}");
    let always = [
        "state hashes equal",
        "wiped members rejoined by install-snapshot",
    ];
    for check in always.iter().chain(checks) {
        assert!(
            summary.contains(&format!("{{\"name\":\"{check}\",\"ok\":true")),
            "{check}: {summary}"
        );
    }
    let left = leftovers(pid);
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn kv_three_dedicated_members_every_fault_kind() {
    short_run(
        "kv",
        "3",
        "dedicated",
        "5",
        "35",
        &[
            "linearizable",
            "no acknowledged write lost",
            "no write applied twice",
        ],
    );
}

#[test]
fn matching_five_members_every_fault_kind() {
    short_run(
        "matching",
        "5",
        "shared",
        "6",
        "30",
        &["no acknowledged order lost", "no order applied twice"],
    );
}
