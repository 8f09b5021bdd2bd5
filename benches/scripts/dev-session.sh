#!/usr/bin/env bash
# The 2-vCPU figures of docs/PERFORMANCE.md ("After reply batches, warm pipe buffers and the
# TSC clock"): the issue #7 target runs on a 2-core machine, each with its floor, the peers
# where the build has them, a throughput size sweep, one run without segment rolls, one on
# tmpfs, and the disk's sustained write rate (the bound of the throughput runs).
#
# Usage: dev-session.sh BIN OUT_DIR
#   BIN      cluster-bench, built with `cargo build --release -p tandem-benches --bins
#            --features peer-openraft` (the `--peer openraft` rows need the feature; page-floor
#            is expected beside it).
#   OUT_DIR  one JSON file and one log per run; the summary goes to standard output.
set -u
B=$1
OUT=$2
mkdir -p "$OUT"
COMMON="--cluster-size 3 --idle spin --threading cluster"
run() {
    local name=$1
    shift
    echo "== $name: cluster-bench $COMMON $*"
    "$B" $COMMON "$@" --json "$OUT/$name.json" > "$OUT/$name.out" 2> "$OUT/$name.err"
    grep -E '^(tandem|floor|openraft|ratio|peer ratio|throughput|driving|floor throughput|snapshot|target)' "$OUT/$name.out"
}
run ipc-100k-openraft --size 64 --mode latency --transport ipc --rate 100000 --duration 10 --warmup 2 --peer openraft
run ipc-100k-a --size 64 --mode latency --transport ipc --rate 100000 --duration 10 --warmup 2
run ipc-100k-b --size 64 --mode latency --transport ipc --rate 100000 --duration 10 --warmup 2
run udp-50k-std --size 64 --mode latency --transport udp --io std --rate 50000 --duration 8 --warmup 2
run udp-5k-std --size 64 --mode latency --transport udp --io std --rate 5000 --duration 8 --warmup 2
run udp-50k-uring --size 64 --mode latency --transport udp --io uring --rate 50000 --duration 8 --warmup 2
run tput-ipc-openraft --size 64 --mode throughput --transport ipc --duration 6 --warmup 2 --peer openraft
run tput-udp --size 64 --mode throughput --transport udp --duration 6 --warmup 2
# Datagrams that hold a full client batch (64 messages of 64 B need about 5 KB; the default
# --mtu 1408 holds 17): a jumbo-frame network's MTU, which loopback carries.
run tput-udp-mtu8192 --size 64 --mode throughput --transport udp --duration 6 --warmup 2 --mtu 8192
for s in 32 256 1024; do
    run tput-ipc-$s --mode throughput --transport ipc --size $s --duration 6 --warmup 2
done
run tput-ipc-2gib-segments --size 64 --mode throughput --transport ipc --duration 4 --warmup 1 \
    --segment-len-bytes 2147483648
# A directory given with --dir is kept after the run (its logs can be inspected): this one is
# removed, or its gigabytes of tmpfs would weigh on every run after it.
SHM=$(mktemp -d -p /dev/shm cluster-bench-XXXXXX)
run tput-ipc-tmpfs --size 64 --mode throughput --transport ipc --duration 6 --warmup 2 \
    --dir "$SHM"
rm -rf "$SHM"
# The floors of a sustained log rate: the members' directories share one disk here, so every
# message is written three times to it (about 70 B of log per 64 B message and member when
# client batches are full: one frame per batch), and every log page is a fresh page-cache page
# the segment preparers fault in first (page-floor, built beside BIN: `cargo build --release
# -p tandem-benches --bin page-floor`).
"$(dirname "$B")/page-floor" 1024
D=$(mktemp -d)
echo "== disk: dd 3 GiB into a new file in $(df --output=target "$D" | tail -1), fdatasync at the end"
dd if=/dev/zero of="$D/fresh" bs=1M count=3072 conv=fdatasync 2>&1 | tail -1
rm -rf "$D"
