#!/usr/bin/env bash
# The cluster-bench runs recorded in docs/PERFORMANCE.md for a machine with 16 or more
# cores: the machine's facts, the 16-core target (`--threading dedicated --idle spin`,
# pinned, 100 K msg/s over UDP and IPC), the 2-core targets' runs with the peers beside
# them, and throughput with openraft beside it.
#
# Usage: many-cores.sh CLUSTER_BENCH OUT_DIR
#   CLUSTER_BENCH  a release cluster-bench built with `--features peer-openraft,peer-aeron`
#   OUT_DIR        where the JSON, .hgrm, .svg and logs go (the summary is standard output)
# Environment: DUR (measured seconds of the main runs, default 20), SHORT (of the others,
# default 10), BUDGET (seconds after which no further run starts, default 540), ONLY (a
# bash regular expression: only the runs whose name matches, e.g. `openraft`).
#
# Cores: one logical CPU per physical core (no two spinning threads on hyperthread
# siblings), skipping the physical core of CPU 0; dedicated threading takes 10 of them
# (3 members x network + consensus + service, then the client thread), cluster threading
# the first.
set -u
BIN=$1
OUT=$2
DUR=${DUR:-20}
SHORT=${SHORT:-10}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"

T0=$(date +%s)

echo "== machine"
date -u +%Y-%m-%dT%H:%M:%SZ
nproc
uname -a
lscpu
lscpu -p=CPU,CORE,SOCKET,NODE | grep -v '^#' | paste -sd' '
echo "cmdline: $(cat /proc/cmdline)"
echo "isolated: $(cat /sys/devices/system/cpu/isolated 2>/dev/null)"
echo "governor: $(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo n/a)"
free -g
df -h /dev/shm /tmp
uptime
ldd "$BIN"

CORES=$(lscpu -p=CPU,CORE | grep -v '^#' | awk -F, '!seen[$2]++ {print $1}' | tail -n +2 | head -10 | paste -sd,)
if [ "$(echo "$CORES" | tr ',' '\n' | grep -c .)" -lt 10 ]; then
    CORES=1,2,3,4,5,6,7,8,9,10
fi
ONE=${CORES%%,*}
echo "cores for dedicated: $CORES; for cluster threading: $ONE"

# Members' directories: tmpfs when it has room (no writeback stalls), else /tmp.
if [ "$(df --output=avail -k /dev/shm | tail -1)" -gt 4000000 ]; then
    DIRS=/dev/shm/tandem-bench
else
    DIRS=/tmp/tandem-bench
fi
echo "member directories under $DIRS"

# run NAME EXPECTED_SECONDS ARGS...: one cluster-bench invocation, skipped when it would
# not finish inside BUDGET.
run() {
    local name=$1 expect=$2
    shift 2
    local now=$(( $(date +%s) - T0 ))
    if [ -n "${ONLY:-}" ] && ! [[ $name =~ $ONLY ]]; then
        return
    fi
    echo
    echo "== $name (t=${now}s): cluster-bench $*"
    if [ $(( now + expect )) -gt "$BUDGET" ]; then
        echo "skipped: would end after ${BUDGET}s"
        return
    fi
    timeout $(( expect + 60 )) "$BIN" "$@" --dir "$DIRS/$name" \
        --json "$OUT/$name.json" --hgrm "$OUT/$name.hgrm" \
        >"$OUT/$name.out" 2>"$OUT/$name.err"
    echo "rc=$?"
    cat "$OUT/$name.out"
    grep -v '^\[' "$OUT/$name.err" | tail -5
    rm -rf "${DIRS:?}/$name"
}

L=(--mode latency --size 64 --cluster-size 3)
# Three phases (floor, Tandem, peer) of warm-up + duration each, plus start-up.
run udp-dedicated-100k $(( 3 * (DUR + 2) + 10 )) "${L[@]}" --transport udp --threading dedicated \
    --idle spin --cores "$CORES" --rate 100000 --duration "$DUR" --warmup 2 \
    --peer aeron-transport --plot "$OUT/udp-dedicated-100k.svg"
run ipc-dedicated-100k $(( 2 * (DUR + 2) + 10 )) "${L[@]}" --transport ipc --threading dedicated \
    --idle spin --cores "$CORES" --rate 100000 --duration "$DUR" --warmup 2
run ipc-cluster-100k-openraft $(( 3 * (SHORT + 2) + 20 )) "${L[@]}" --transport ipc \
    --threading cluster --idle spin --cores "$ONE" --rate 100000 --duration "$SHORT" --warmup 2 \
    --peer openraft
run udp-cluster-50k-aeron $(( 3 * (SHORT + 2) + 10 )) "${L[@]}" --transport udp \
    --threading cluster --idle spin --cores "$ONE" --rate 50000 --duration "$SHORT" --warmup 2 \
    --peer aeron-transport
run tput-ipc-openraft $(( 3 * (SHORT + 2) + 20 )) --mode throughput --size 64 --transport ipc \
    --threading cluster --idle spin --cores "$ONE" --duration "$SHORT" --warmup 2 --peer openraft
run tput-udp-openraft $(( 3 * (SHORT + 2) + 20 )) --mode throughput --size 64 --transport udp \
    --threading cluster --idle spin --cores "$ONE" --duration "$SHORT" --warmup 2 --peer openraft
run udp-cluster-50k-openraft $(( 3 * (SHORT + 2) + 20 )) "${L[@]}" --transport udp \
    --threading cluster --idle spin --cores "$ONE" --rate 50000 --duration "$SHORT" --warmup 2 \
    --peer openraft
run ipc-cluster-100k-aeron $(( 3 * (SHORT + 2) + 10 )) "${L[@]}" --transport ipc \
    --threading cluster --idle spin --cores "$ONE" --rate 100000 --duration "$SHORT" --warmup 2 \
    --peer aeron-transport
run udp-dedicated-100k-uring $(( 2 * (DUR + 2) + 10 )) "${L[@]}" --transport udp --io uring \
    --threading dedicated --idle spin --cores "$CORES" --rate 100000 --duration "$DUR" --warmup 2
echo
echo "== done after $(( $(date +%s) - T0 ))s"
