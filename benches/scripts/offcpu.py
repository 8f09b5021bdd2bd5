#!/usr/bin/env python3
"""Off-CPU account of one thread from `perf sched:sched_switch` records (issue #7).

Record (kernel stacks of every context switch), then convert and summarise:

    perf record -e sched:sched_switch -g -o sw.data -- \\
        target/release/cluster-bench --mode latency --transport ipc --threading cluster \\
        --idle spin --rate 100000 --duration 20 --warmup 2
    perf script -i sw.data -F comm,tid,time,event,trace,ip,sym > sw.txt
    python3 benches/scripts/offcpu.py sw.txt [TID] [MIN_MS] [FROM_S TO_S]

TID defaults to the first thread that switches (cluster-bench's main thread, which drives
members and clients in `--threading cluster`). Every interval the thread spent off the CPU
(from its switch-out to its next switch-in) of at least MIN_MS (default 1) is grouped by the
state it left in (R: preempted while runnable; S: sleeping; D: uninterruptible, e.g. a lock
or I/O) and the first kernel functions of its stack, e.g. `D rwsem_down_write_slowpath <
down_write_killable` for a wait on the mmap lock. FROM_S/TO_S restrict to switch-outs in
that window of `perf` timestamps. Each interval is also listed, longest first.
"""
import collections
import re
import sys

HEADER = re.compile(
    r"\s*(.+?)\s+(\d+)\s+([\d.]+): sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) "
    r".*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)"
)
SKIP = {
    "__schedule", "schedule", "schedule_preempt_disabled", "do_syscall_64",
    "entry_SYSCALL_64_after_hwframe", "schedule_timeout", "io_schedule",
    "irqentry_exit_to_user_mode", "exit_to_user_mode_loop",
}


def main():
    path = sys.argv[1]
    records = []
    for block in open(path).read().split("\n\n"):
        lines = block.strip().split("\n")
        m = HEADER.match(lines[0]) if lines else None
        if m:
            stack = [l.strip().split(None, 1)[-1] for l in lines[1:]]
            records.append((float(m.group(3)), int(m.group(5)), m.group(6).rstrip("+"),
                            int(m.group(8)), m.group(7), stack))
    if not records:
        sys.exit(f"no sched_switch records in {path}")
    tid = int(sys.argv[2]) if len(sys.argv) > 2 else records[0][1]
    min_s = (float(sys.argv[3]) if len(sys.argv) > 3 else 1.0) / 1000
    window = (float(sys.argv[4]), float(sys.argv[5])) if len(sys.argv) > 5 else None
    out, intervals = None, []
    for t, prev, state, nxt, next_comm, stack in records:
        if prev == tid:
            why = "preempted" if state == "R" else " < ".join(
                [f for f in stack if f not in SKIP][:2])
            out = (t, state, why, next_comm)
        elif nxt == tid and out:
            t0, state0, why, first = out
            out = None
            if t - t0 >= min_s and (window is None or window[0] <= t0 <= window[1]):
                intervals.append((t - t0, t0, f"{state0} {why}", first))
    total, count, longest = collections.Counter(), collections.Counter(), collections.Counter()
    for d, _, key, _ in intervals:
        total[key] += d
        count[key] += 1
        longest[key] = max(longest[key], d)
    print(f"thread {tid}: off-CPU intervals of at least {min_s * 1000:g} ms")
    for key, d in total.most_common():
        print(f"  {d * 1000:9.1f} ms in {count[key]:5d}, longest {longest[key] * 1000:7.1f} ms  {key}")
    print("longest intervals (duration, start, reason, first to run instead):")
    for d, t0, key, first in sorted(intervals, reverse=True)[:20]:
        print(f"  {d * 1000:9.2f} ms at {t0:.6f}  {key}  -> {first}")


if __name__ == "__main__":
    main()
