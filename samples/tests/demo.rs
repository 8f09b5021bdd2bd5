//! The README's main command, short: `matching-engine demo --duration 3` must pass its own
//! checks (equal state hashes, exactly-once, failover, snapshot and purge, restart).

use std::process::Command;

#[test]
fn demo_passes_its_checks() {
    let out = Command::new(env!("CARGO_BIN_EXE_matching-engine"))
        .args(["demo", "--duration", "3", "--rate", "5000"])
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for check in [
        "state hashes equal on all 3 members",
        "every acknowledged order applied exactly once",
        "no acknowledged order lost",
        "failover: a new leader took over",
        "snapshot taken and log purged",
        "killed member restarted and caught up",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with("check: ") && l.contains(check))
            .unwrap_or_else(|| panic!("no check {check:?} in:\n{stdout}"));
        assert!(line.contains(" ok "), "{line}");
    }
    assert!(stdout.contains("KILL: leader member"), "{stdout}");
    assert!(stdout.contains("demo: PASS"), "{stdout}");
}
