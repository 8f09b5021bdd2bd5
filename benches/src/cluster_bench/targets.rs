//! The performance targets of issue 7, checked against a run's report.
//!
//! A target applies to a run whose settings are the ones it was set for (mode, transport,
//! threading, idle strategy, offered rate; always 3 members in one process, 64-byte messages
//! and `fsync none`). Each check names the report key it reads, so a script can find the
//! same figure in the JSON document. A target set for a class of machine (2 cores, or 16 and
//! more) is still checked on another machine, and says so (`machine_matches: false`): a
//! 2-core target met on 16 cores proves little.
//!
//! Every run, whatever its settings, is also checked for lost messages (there must be none;
//! a message answered with anything but its echo counts as lost too).

use serde::Serialize;

use super::report::Report;

/// The machines a target was set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MachineClass {
    /// Every machine.
    Any,
    /// A 2-core machine.
    TwoCores,
    /// A machine with 16 cores or more.
    SixteenCoresOrMore,
}

impl MachineClass {
    fn matches(self, cpus: usize) -> bool {
        match self {
            Self::Any => true,
            Self::TwoCores => cpus == 2,
            Self::SixteenCoresOrMore => cpus >= 16,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Self::Any => "any machine",
            Self::TwoCores => "a 2-core machine",
            Self::SixteenCoresOrMore => "16 cores or more",
        }
    }
}

/// How a figure must compare with its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bound {
    /// `value <= limit`.
    AtMost,
    /// `value >= limit`.
    AtLeast,
    /// `value < limit`.
    Below,
}

impl Bound {
    fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Self::AtMost => value <= limit,
            Self::AtLeast => value >= limit,
            Self::Below => value < limit,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::AtMost => "<=",
            Self::AtLeast => ">=",
            Self::Below => "<",
        }
    }
}

/// One target checked against one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetCheck {
    /// Stable name, e.g. `ipc-100k-p50`.
    pub name: &'static str,
    /// The report key the figure comes from, e.g. `cluster.p50_us`.
    pub key: &'static str,
    /// How the figure must compare with `limit`.
    pub bound: Bound,
    /// The limit (µs, a ratio, or messages per second, as `key` says); `None` where it is a
    /// figure of the run that was not measured (the target is then missed).
    pub limit: Option<f64>,
    /// The figure this run measured (`None` where it could not be computed, e.g. a ratio
    /// over a zero floor: the target is then missed).
    pub value: Option<f64>,
    /// Whether the figure meets the target.
    pub met: bool,
    /// The machines the target was set for.
    pub machine: MachineClass,
    /// Whether this machine is one of them.
    pub machine_matches: bool,
}

/// Where a target's limit comes from.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// A number set in the issue.
    Fixed(f64),
    /// Another figure of the same run (a report key), e.g. the peer's p50.
    Figure(&'static str),
}

struct Spec {
    name: &'static str,
    key: &'static str,
    bound: Bound,
    limit: Limit,
    machine: MachineClass,
}

const fn spec(
    name: &'static str,
    key: &'static str,
    bound: Bound,
    limit: f64,
    machine: MachineClass,
) -> Spec {
    Spec {
        name,
        key,
        bound,
        limit: Limit::Fixed(limit),
        machine,
    }
}

/// The figure a report key names, for the keys targets use.
fn figure(r: &Report, key: &str) -> Option<f64> {
    match key {
        "cluster.p50_us" => Some(r.cluster.p50_us),
        "cluster.p99_us" => Some(r.cluster.p99_us),
        "cluster.p99_99_us" => Some(r.cluster.p99_99_us),
        "cluster.lost" => Some(r.cluster.lost as f64),
        "ratio.p50" => r.ratio.p50,
        "ratio.p99" => r.ratio.p99,
        "throughput.msgs_per_s" => r.throughput.as_ref().map(|t| t.msgs_per_s),
        "peer_ratio.p50" => r.peer_ratio.as_ref().and_then(|p| p.p50),
        "peer_ratio.msgs_per_s" => r.peer_ratio.as_ref().and_then(|p| p.msgs_per_s),
        "peer.p50_us" => r
            .peer
            .as_ref()
            .and_then(|p| p.latency.as_ref())
            .map(|l| l.p50_us),
        _ => None,
    }
}

/// The targets that apply to this run's settings.
fn applicable(r: &Report) -> Vec<Spec> {
    use Bound::{AtLeast, AtMost};
    use MachineClass::{Any, SixteenCoresOrMore, TwoCores};
    let c = &r.config;
    let mut out = vec![spec("no-message-lost", "cluster.lost", AtMost, 0.0, Any)];
    let base = c.cluster_size == 3 && !c.processes && c.size == 64 && c.fsync == "none";
    if !base {
        return out;
    }
    let peer = c.peer.unwrap_or("");
    let latency_at = |rate: u64| c.rate == Some(rate);
    match (c.mode, c.transport, c.threading) {
        ("latency", "ipc", "cluster") if latency_at(100_000) => {
            out.push(spec(
                "ipc-100k-p50",
                "cluster.p50_us",
                AtMost,
                5.0,
                TwoCores,
            ));
            out.push(spec(
                "ipc-100k-p99",
                "cluster.p99_us",
                AtMost,
                20.0,
                TwoCores,
            ));
            if peer == "openraft" {
                out.push(spec(
                    "ipc-100k-openraft-p50",
                    "peer_ratio.p50",
                    AtLeast,
                    15.0,
                    TwoCores,
                ));
            }
        }
        ("latency", "udp", "cluster") if latency_at(50_000) && c.idle == "spin" => {
            out.push(spec(
                "udp-50k-ratio-p50",
                "ratio.p50",
                AtMost,
                1.5,
                TwoCores,
            ));
            out.push(spec(
                "udp-50k-ratio-p99",
                "ratio.p99",
                AtMost,
                2.0,
                TwoCores,
            ));
            if peer == "aeron-transport" {
                // A whole cluster round trip below Aeron's bare UDP ping-pong.
                out.push(Spec {
                    name: "udp-50k-below-aeron-p50",
                    key: "cluster.p50_us",
                    bound: Bound::Below,
                    limit: Limit::Figure("peer.p50_us"),
                    machine: TwoCores,
                });
            }
        }
        ("latency", "udp", "dedicated")
            if latency_at(100_000) && c.idle == "spin" && c.cores.is_some() =>
        {
            out.push(spec(
                "udp-dedicated-100k-p99",
                "cluster.p99_us",
                AtMost,
                25.0,
                SixteenCoresOrMore,
            ));
            out.push(spec(
                "udp-dedicated-100k-p99-99",
                "cluster.p99_99_us",
                AtMost,
                100.0,
                SixteenCoresOrMore,
            ));
        }
        ("throughput", transport, _) => {
            let (name, limit) = if transport == "ipc" {
                ("throughput-ipc", 3_000_000.0)
            } else {
                ("throughput-udp", 1_000_000.0)
            };
            out.push(spec(
                name,
                "throughput.msgs_per_s",
                AtLeast,
                limit,
                TwoCores,
            ));
            if peer == "openraft" {
                out.push(spec(
                    "throughput-openraft",
                    "peer_ratio.msgs_per_s",
                    AtLeast,
                    4.0,
                    TwoCores,
                ));
            }
        }
        _ => {}
    }
    out
}

/// Checks every target that applies to the run `r` reports.
#[must_use]
pub fn check(r: &Report) -> Vec<TargetCheck> {
    applicable(r)
        .into_iter()
        .map(|s| {
            let limit = match s.limit {
                Limit::Fixed(v) => Some(v),
                Limit::Figure(key) => figure(r, key).filter(|v| v.is_finite()),
            };
            let value = figure(r, s.key).filter(|v| v.is_finite());
            TargetCheck {
                name: s.name,
                key: s.key,
                bound: s.bound,
                limit,
                value,
                met: value.zip(limit).is_some_and(|(v, l)| s.bound.holds(v, l)),
                machine: s.machine,
                machine_matches: s.machine.matches(r.machine.cpus),
            }
        })
        .collect()
}

/// One line per check for the printed table.
#[must_use]
pub fn lines(checks: &[TargetCheck], cpus: usize) -> Vec<String> {
    checks
        .iter()
        .map(|t| {
            let f = |x: Option<f64>| match x {
                None => "n/a".to_owned(),
                Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
                Some(v) => format!("{v:.2}"),
            };
            let machine = if t.machine_matches {
                String::new()
            } else {
                format!(" (set for {}; this one has {cpus} CPUs)", t.machine.words())
            };
            format!(
                "target {}: {} {} {} {}: {}{}",
                t.name,
                t.key,
                f(t.value),
                t.bound.symbol(),
                f(t.limit),
                if t.met { "met" } else { "MISSED" },
                machine
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cluster_bench::config::{Cli, PeerKind, Settings};
    use crate::cluster_bench::floor::FloorResult;
    use crate::cluster_bench::report::PeerFigures;
    use crate::cluster_bench::run::ClusterResult;
    use crate::peer::{LatencyRun, ThroughputRun};

    fn run_of(us: &[u64], lost: u64) -> LatencyRun {
        let mut run = LatencyRun::new();
        for &u in us {
            run.sent += 1;
            run.record(u * 1000);
        }
        run.sent += lost;
        run
    }

    fn tput(msgs: u64) -> ThroughputRun {
        ThroughputRun {
            msgs,
            bytes: msgs * 64,
            elapsed: Duration::from_secs(1),
            driver_cpu: None,
        }
    }

    /// A report for the flags `args` with the cluster's and the floor's round trips (µs).
    fn report(args: &str, cluster: &[u64], floor: &[u64], peer: Option<PeerFigures>) -> Report {
        report_with(args, run_of(cluster, 0), None, floor, peer)
    }

    fn report_with(
        args: &str,
        cluster: LatencyRun,
        throughput: Option<ThroughputRun>,
        floor: &[u64],
        peer: Option<PeerFigures>,
    ) -> Report {
        // `--peer` and `--cores` are validated against this build and machine: set after.
        let mut peer_kind = None;
        let mut cores = None;
        let mut flags = vec!["cluster-bench"];
        let mut words = args.split(' ');
        while let Some(w) = words.next() {
            match w {
                "--peer" => peer_kind = words.next(),
                "--cores" => cores = words.next(),
                _ => flags.push(w),
            }
        }
        let cli = Cli::try_parse_from(flags).expect("test flags parse");
        let mut s = Settings::from_args(&cli.bench).unwrap_or_else(|e| panic!("{args}: {e}"));
        s.peer = peer_kind.map(|p| match p {
            "openraft" => PeerKind::Openraft,
            "aeron-transport" => PeerKind::AeronTransport,
            other => panic!("no peer {other}"),
        });
        s.cores = cores.map(|c| c.parse().expect("test core list parses"));
        let floor = FloorResult {
            run: run_of(floor, 0),
            throughput: None,
            kind: "test".into(),
        };
        let cluster = ClusterResult {
            run: cluster,
            throughput,
            snapshot: None,
            bad_replies: 0,
        };
        Report::build(&s, &floor, &cluster, peer.as_ref())
    }

    fn by_name<'a>(r: &'a Report, name: &str) -> Option<&'a TargetCheck> {
        r.targets.iter().find(|t| t.name == name)
    }

    fn names(r: &Report) -> Vec<&'static str> {
        r.targets.iter().map(|t| t.name).collect()
    }

    const IPC: &str = "--mode latency --transport ipc --threading cluster";
    const IPC_100K: &str = "--mode latency --transport ipc --threading cluster --rate 100000";
    const UDP_50K: &str =
        "--mode latency --transport udp --threading cluster --idle spin --rate 50000";

    #[test]
    fn the_ipc_targets_are_checked_at_their_own_settings_only() {
        let r = report(IPC_100K, &[2, 3, 4, 30], &[1], None);
        assert_eq!(
            names(&r),
            ["no-message-lost", "ipc-100k-p50", "ipc-100k-p99"]
        );
        let p50 = by_name(&r, "ipc-100k-p50").unwrap();
        assert_eq!(p50.key, "cluster.p50_us");
        assert!(p50.met, "{p50:?}");
        assert_eq!(p50.limit, Some(5.0));
        // p99 of [2, 3, 4, 30] µs is 30 µs: above 20.
        let p99 = by_name(&r, "ipc-100k-p99").unwrap();
        assert!(!p99.met && p99.value.unwrap() > 29.0, "{p99:?}");

        // openraft's p50 40 µs over Tandem's 2 µs: 20x, at least the 15x asked.
        let openraft = PeerFigures::Latency(run_of(&[40, 40, 41], 0));
        let r = report(
            &format!("{IPC_100K} --peer openraft"),
            &[2, 2, 2],
            &[1],
            Some(openraft),
        );
        let vs = by_name(&r, "ipc-100k-openraft-p50").unwrap();
        assert_eq!(vs.key, "peer_ratio.p50");
        assert!(vs.met && (vs.value.unwrap() - 20.0).abs() < 0.1, "{vs:?}");

        // Another rate, size, member count or fsync: only the loss check applies.
        for other in [
            "--rate 50000",
            "--rate 100000 --size 128",
            "--rate 100000 --cluster-size 5",
            "--rate 100000 --fsync batch",
        ] {
            let r = report(&format!("{IPC} {other}"), &[2], &[1], None);
            assert_eq!(names(&r), ["no-message-lost"], "{other}");
        }
    }

    #[test]
    fn the_udp_ratios_and_the_aeron_comparison_come_from_the_same_run() {
        // Floor p50 10 µs; cluster p50 28 µs: ratio 1.4 (met); p99 50 µs over 2 × 12: 2.08.
        let cluster: Vec<u64> = std::iter::repeat_n(28, 98).chain([50, 50]).collect();
        let floor: Vec<u64> = std::iter::repeat_n(10, 98).chain([12, 12]).collect();
        let aeron = PeerFigures::Latency(run_of(&[20, 21, 22], 0));
        let r = report(
            &format!("{UDP_50K} --peer aeron-transport"),
            &cluster,
            &floor,
            Some(aeron),
        );
        let p50 = by_name(&r, "udp-50k-ratio-p50").unwrap();
        assert!(
            p50.met && (p50.value.unwrap() - 1.4).abs() < 0.01,
            "{p50:?}"
        );
        let p99 = by_name(&r, "udp-50k-ratio-p99").unwrap();
        assert!(!p99.met && p99.value.unwrap() > 2.0, "{p99:?}");
        let below = by_name(&r, "udp-50k-below-aeron-p50").unwrap();
        assert_eq!(below.bound, Bound::Below);
        assert!((below.limit.unwrap() - 21.0).abs() < 0.1, "{below:?}");
        assert!(!below.met, "28 µs is not below Aeron's 21 µs: {below:?}");

        // Without spinning the udp target does not apply.
        let r = report(
            "--mode latency --transport udp --threading cluster --idle backoff --rate 50000",
            &cluster,
            &floor,
            None,
        );
        assert_eq!(names(&r), ["no-message-lost"]);
    }

    #[test]
    fn a_ratio_over_an_unmeasured_figure_misses_rather_than_passes() {
        // An empty floor histogram reads p50 0: no ratio can be formed.
        let r = report(UDP_50K, &[28], &[], None);
        let p50 = by_name(&r, "udp-50k-ratio-p50").unwrap();
        assert_eq!(p50.value, None);
        assert!(!p50.met);
        // A peer that measured nothing gives no limit.
        let r = report(
            &format!("{UDP_50K} --peer aeron-transport"),
            &[28],
            &[10],
            Some(PeerFigures::Throughput(tput(0))),
        );
        let below = by_name(&r, "udp-50k-below-aeron-p50").unwrap();
        assert_eq!(below.limit, None);
        assert!(!below.met);
    }

    #[test]
    fn throughput_targets_read_the_counted_rate_and_the_peer_ratio() {
        let r = report_with(
            "--mode throughput --transport ipc --peer openraft",
            run_of(&[5], 0),
            Some(tput(3_200_000)),
            &[1],
            Some(PeerFigures::Throughput(tput(1_000_000))),
        );
        let t = by_name(&r, "throughput-ipc").unwrap();
        assert!(t.met && t.value == Some(3_200_000.0), "{t:?}");
        let ratio = by_name(&r, "throughput-openraft").unwrap();
        assert!(
            !ratio.met && (ratio.value.unwrap() - 3.2).abs() < 1e-9,
            "3.2x is below 4x: {ratio:?}"
        );
        let r = report_with(
            "--mode throughput --transport udp",
            run_of(&[5], 0),
            Some(tput(900_000)),
            &[1],
            None,
        );
        let t = by_name(&r, "throughput-udp").unwrap();
        assert!(!t.met && t.value == Some(900_000.0), "{t:?}");
        assert_eq!(t.limit, Some(1_000_000.0));
        assert!(by_name(&r, "throughput-openraft").is_none());
    }

    #[test]
    fn the_16_core_targets_need_dedicated_pinned_spinning_threads() {
        let flags = "--mode latency --transport udp --threading dedicated --idle spin \
                     --rate 100000 --cores 1-7";
        let r = report(flags, &[20, 20, 20, 90], &[5], None);
        let p99 = by_name(&r, "udp-dedicated-100k-p99").unwrap();
        assert_eq!(p99.machine, MachineClass::SixteenCoresOrMore);
        assert_eq!(p99.machine_matches, r.machine.cpus >= 16);
        assert!(!p99.met && p99.value.unwrap() > 89.0, "{p99:?}");
        let p9999 = by_name(&r, "udp-dedicated-100k-p99-99").unwrap();
        assert!(p9999.met && p9999.value.unwrap() > 89.0, "{p9999:?}");
        let unpinned = flags.replace(" --cores 1-7", "");
        assert_eq!(
            names(&report(&unpinned, &[20], &[5], None)),
            ["no-message-lost"]
        );
    }

    #[test]
    fn a_lost_message_misses_on_every_run_and_the_table_says_so() {
        let r = report_with(
            "--mode latency --rate 1000",
            run_of(&[5, 6], 1),
            None,
            &[1],
            None,
        );
        let lost = by_name(&r, "no-message-lost").unwrap();
        assert_eq!(lost.value, Some(1.0));
        assert!(!lost.met);
        let table = r.table();
        assert!(
            table.contains("target no-message-lost: cluster.lost 1.00 <= 0.00: MISSED"),
            "{table}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["targets"][0]["name"], "no-message-lost");
        assert_eq!(json["targets"][0]["bound"], "at-most");
        assert_eq!(json["targets"][0]["machine"], "any");
        assert_eq!(json["targets"][0]["met"], false);
    }
}
