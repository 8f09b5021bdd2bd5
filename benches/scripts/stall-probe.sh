#!/usr/bin/env bash
# Where the multi-millisecond tails of the many-core runs come from (docs/PERFORMANCE.md):
# the dedicated 100 K msg/s runs again, with the default 64 MiB segments and with 1 GiB ones
# (no segment roll inside the run), and the UDP floor at a tenth of the rate, each with the
# kernel's counters before and after: steal time per CPU, NET_RX soft interrupts,
# ksoftirqd CPU time and page-fault / compaction counters.
#
# Usage: stall-probe.sh CLUSTER_BENCH OUT_DIR   (cores as in many-cores.sh; DUR default 15)
set -u
BIN=$1
OUT=$2
DUR=${DUR:-15}
mkdir -p "$OUT"
date -u +%Y-%m-%dT%H:%M:%SZ
uptime
CORES=$(lscpu -p=CPU,CORE | grep -v '^#' | awk -F, '!seen[$2]++ {print $1}' | tail -n +2 | head -10 | paste -sd,)
if [ "$(echo "$CORES" | tr ',' '\n' | grep -c .)" -lt 10 ]; then
    CORES=1,2,3,4,5,6,7,8,9,10
fi
DIRS=/dev/shm/tandem-probe
echo "cores $CORES, member directories under $DIRS"

counters() {
    # cpuN steal (USER_HZ ticks) for every CPU, then NET_RX per CPU, then vmstat.
    awk '/^cpu[0-9]/ {printf "%s:%s ", $1, $9} END {print ""}' /proc/stat
    grep NET_RX /proc/softirqs | tr -s ' '
    ps -eo comm,cputimes | awk '/ksoftirqd/ {s += $2} END {print "ksoftirqd_cpu_s " s}'
    grep -E '^(pgfault|pgmajfault|thp_fault_alloc|compact_stall|allocstall_normal|pgscan_kswapd|numa_hint_faults) ' /proc/vmstat | paste -sd' '
}

probe() {
    local name=$1
    shift
    echo
    echo "== $name: cluster-bench $*"
    echo "-- before"; counters
    timeout 150 "$BIN" "$@" --dir "$DIRS/$name" --json "$OUT/$name.json" \
        >"$OUT/$name.out" 2>"$OUT/$name.err"
    echo "rc=$?"
    echo "-- after"; counters
    cat "$OUT/$name.out"
    # Seconds whose slowest round trip exceeded 1 ms, of the floor and of the cluster.
    grep -E '^\[(floor|cluster)\]' "$OUT/$name.err" |
        awk '{for (i = 1; i <= NF; i++) if ($i == "max") m = $(i + 1); if (m + 0 > 1000) n[$1]++; t[$1]++}
             END {for (k in t) printf "%s seconds with max > 1 ms: %d of %d\n", k, n[k], t[k]}'
    rm -rf "${DIRS:?}/$name"
}

D=(--mode latency --size 64 --cluster-size 3 --threading dedicated --idle spin --cores "$CORES")
GIB=1073741824
probe ipc-dedicated-100k "${D[@]}" --transport ipc --rate 100000 --duration "$DUR" --warmup 2
probe ipc-dedicated-100k-1gib "${D[@]}" --transport ipc --rate 100000 --duration "$DUR" \
    --warmup 2 --segment-len-bytes "$GIB"
probe udp-dedicated-100k-1gib "${D[@]}" --transport udp --rate 100000 --duration "$DUR" \
    --warmup 2 --segment-len-bytes "$GIB"
probe udp-dedicated-10k-1gib "${D[@]}" --transport udp --rate 10000 --duration "$DUR" \
    --warmup 2 --segment-len-bytes "$GIB"
echo
echo "== done"
