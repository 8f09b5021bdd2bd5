#!/usr/bin/env bash
# The 16-core runs recorded in docs/PERFORMANCE.md ("After the stall fix and with the service
# on its own thread"): many-cores.sh's main runs, a throughput size sweep over ipc, and the
# criterion suites for the codecs and idle strategies. Results tarred into OUT/results.tgz;
# the summary goes to standard output.
#
# Usage: device-session.sh BIN_DIR OUT
#   BIN_DIR  holds cluster-bench (release, `--features peer-openraft,peer-aeron`), codec-bench
#            and idle-bench (the executables of `cargo bench -p tandem-benches --bench codec
#            --bench idle --no-run`), many-cores.sh, and the shared libraries cluster-bench
#            needs where the machine lacks them (libbsd, libmd, libuuid).
#   OUT      where results.tgz goes.
set -u
BIN_DIR=$(cd "$1" && pwd)
OUT=$2
R=/tmp/res
mkdir -p $R
export LD_LIBRARY_PATH=$BIN_DIR
B=$BIN_DIR/cluster-bench
T0=$(date +%s)
DUR=15 SHORT=8 BUDGET=420 ONLY='^(udp-dedicated-100k|ipc-dedicated-100k|ipc-cluster-100k-openraft|udp-cluster-50k-aeron|tput-ipc-openraft|tput-udp-openraft)$' \
  bash "$BIN_DIR/many-cores.sh" "$B" $R > $R/summary.txt 2>&1
ONE=$(lscpu -p=CPU,CORE | grep -v '^#' | awk -F, '!seen[$2]++ {print $1}' | sed -n 2p)
for s in 32 256 1024; do
  echo "== tput-ipc-$s (t=$(( $(date +%s) - T0 ))s)" >> $R/summary.txt
  timeout 60 "$B" --mode throughput --size $s --transport ipc --threading cluster --idle spin --cores "$ONE" \
    --duration 6 --warmup 2 --dir /dev/shm/tp$s --json $R/tput-ipc-$s.json >> $R/summary.txt 2>$R/tput-ipc-$s.err
  rm -rf /dev/shm/tp$s
done
echo "== criterion (t=$(( $(date +%s) - T0 ))s)" >> $R/summary.txt
taskset -c 2,3 "$BIN_DIR/codec-bench" --bench --warm-up-time 1 --measurement-time 2 > $R/codec.txt 2>&1
taskset -c 2,3 "$BIN_DIR/idle-bench" --bench --warm-up-time 1 --measurement-time 2 > $R/idle.txt 2>&1
echo "== done after $(( $(date +%s) - T0 ))s" >> $R/summary.txt
tar czf "$OUT/results.tgz" -C $R .
grep -v '^\[' $R/summary.txt | cut -c1-220 | tail -150
grep -E "^codec|^idle|time:" $R/codec.txt $R/idle.txt
