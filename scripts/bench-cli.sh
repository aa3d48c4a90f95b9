#!/usr/bin/env bash
# The `fanout` command's benchmarks (see docs/BENCHMARKS.md, "The `fanout`
# command"). Every tool runs in the same rounds, interleaved (round r runs
# each command once, in an order rotated every round), so that load from
# other processes falls on all of them alike; ratios are medians of the
# per-round ratios to the first command.
#
# 1. Job start: N jobs of `true` at -j J for the floor (forkwait: spawn and
#    wait, nothing else, from one thread; forkwait_threads: the same from as
#    many threads as fanout uses), fanout (plain, and with -k --joblog),
#    xargs -P, rust-parallel and GNU parallel (fewer rounds: it is slow).
# 2. --pipe and --pipepart throughput: a SIZE file of 41-byte lines through
#    `wc -l` jobs, fanout against GNU parallel, with each one's peak memory.
#
#   scripts/bench-cli.sh                      # both parts
#   PARTS=jobs scripts/bench-cli.sh           # or PARTS=pipe
#   ROUNDS=10 SLOW_ROUNDS=3 N=3000 J=8 SIZE=2G scripts/bench-cli.sh
#   FANOUT=/path/to/other/fanout scripts/bench-cli.sh   # compare a build
#
# Needs: python3, GNU parallel (Debian package `parallel`), rust-parallel
# 1.24 (cargo install rust-parallel --version 1.24.0 --root /tmp/rp; or set
# RUST_PARALLEL=/path/to/it), GNU time (/usr/bin/time) for peak memory.
# Missing tools are skipped, with a note. Results: $OUT (default
# /tmp/bench-cli.md).
set -euo pipefail

N=${N:-3000}
J=${J:-8}
ROUNDS=${ROUNDS:-10}
SLOW_ROUNDS=${SLOW_ROUNDS:-3}
SIZE=${SIZE:-2G}
PARTS=${PARTS:-jobs pipe}
OUT=${OUT:-/tmp/bench-cli.md}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

cargo build --release --manifest-path "$ROOT/Cargo.toml" \
    -p fanout-cli --bin fanout -p fanout-bench --bin forkwait --bin forkwait_threads >&2
BIN=$CARGO_TARGET_DIR/release
FANOUT=${FANOUT:-$BIN/fanout}
FORKWAIT=$BIN/forkwait
FORKWAIT_THREADS=$BIN/forkwait_threads
# fanout starts jobs from one thread per CPU, at most -j: so does this floor.
SPAWNERS=$(( $(nproc) < J ? $(nproc) : J ))
RUST_PARALLEL=${RUST_PARALLEL:-$(command -v rust-parallel || echo /tmp/rp/bin/rust-parallel)}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TRUE=$(command -v true)
: >"$OUT"

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT" >&2

# interleave ROUNDS NAME=ROUNDS:COMMAND...: runs the commands in rounds
# (a command with fewer rounds joins the last ones), the first round a
# warm-up, and prints a markdown table. Output goes to /dev/null.
interleave() {
    python3 - "$@" <<'PY'
import shlex, statistics, subprocess, sys, time

rounds = int(sys.argv[1])
cmds = []
for spec in sys.argv[2:]:
    name, rest = spec.split("=", 1)
    n, command = rest.split(":", 1)
    cmds.append((name, int(n), command))
times = {name: [] for name, _, _ in cmds}
ratios = {name: [] for name, _, _ in cmds}
for r in range(rounds + 1):
    order = cmds[r % len(cmds):] + cmds[:r % len(cmds)]
    this = {}
    for name, n, command in order:
        if r > 0 and r <= rounds - n:
            continue
        if r == 0 and n < rounds:
            continue
        t = time.perf_counter()
        done = subprocess.run(command, shell=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - t
        if done.returncode != 0:
            print(f"note: {name} exited {done.returncode}", file=sys.stderr)
        print(f"round {r} {name}: {elapsed:.3f} s", file=sys.stderr)
        if r > 0:
            times[name].append(elapsed)
            this[name] = elapsed
    base = cmds[0][0]
    if r > 0 and base in this:
        for name, t in this.items():
            ratios[name].append(t / this[base])
print(f"| command | median (s) | min (s) | max (s) | rounds | ratio to {cmds[0][0]} (median of per-round ratios) |")
print("|---|---:|---:|---:|---:|---:|")
for name, _, _ in cmds:
    ts = times[name]
    rs = ratios[name]
    ratio = f"{statistics.median(rs):.2f}x" if rs else "—"
    print(f"| {name} | {statistics.median(ts):.3f} | {min(ts):.3f} | {max(ts):.3f} | {len(ts)} | {ratio} |")
PY
}

if [[ " $PARTS " == *" jobs "* ]]; then
    seq "$N" >"$WORK/inputs"
    cmds=("floor (forkwait)=$ROUNDS:$FORKWAIT $N $J $TRUE"
        "floor, $SPAWNERS spawning threads=$ROUNDS:$FORKWAIT_THREADS $N $J $SPAWNERS $TRUE"
        "fanout=$ROUNDS:$FANOUT -j $J -a $WORK/inputs $TRUE"
        "fanout -k --joblog=$ROUNDS:rm -f $WORK/joblog $WORK/joblog.fanout; $FANOUT -j $J -k --joblog $WORK/joblog -a $WORK/inputs $TRUE"
        "xargs -P $J=$ROUNDS:xargs -P $J -n 1 -a $WORK/inputs $TRUE")
    if [[ -x $RUST_PARALLEL ]]; then
        cmds+=("rust-parallel=$ROUNDS:$RUST_PARALLEL -j $J -i $WORK/inputs $TRUE")
    else
        echo "note: rust-parallel not found, skipped (cargo install rust-parallel --version 1.24.0 --root /tmp/rp)" >&2
    fi
    if command -v parallel >/dev/null; then
        cmds+=("GNU parallel=$SLOW_ROUNDS:parallel -j $J -a $WORK/inputs $TRUE")
    else
        echo "note: GNU parallel not found, skipped" >&2
    fi
    table=$(interleave "$ROUNDS" "${cmds[@]}")
    { echo; echo "Job start: $N jobs of true at -j $J, $ROUNDS rounds"; echo; echo "$table"; } | tee -a "$OUT"
fi

if [[ " $PARTS " == *" pipe "* ]]; then
    big=$WORK/big
    yes "the quick brown fox jumps over 0123456789" | head -c "$SIZE" >"$big" || true
    bytes=$(stat -c %s "$big")
    cmds=("fanout --pipe=$SLOW_ROUNDS:$FANOUT --pipe wc -l < $big"
        "fanout --pipe --block 10M=$SLOW_ROUNDS:$FANOUT --pipe --block 10M wc -l < $big"
        "fanout --pipepart=$SLOW_ROUNDS:$FANOUT --pipepart -a $big wc -l")
    if command -v parallel >/dev/null; then
        cmds=("GNU parallel --pipe=$SLOW_ROUNDS:parallel --pipe wc -l < $big"
            "GNU parallel --pipe --block 10M=$SLOW_ROUNDS:parallel --pipe --block 10M wc -l < $big"
            "${cmds[@]}"
            "GNU parallel --pipepart=$SLOW_ROUNDS:parallel --pipepart -a $big wc -l")
    fi
    table=$(interleave "$SLOW_ROUNDS" "${cmds[@]}")
    {
        echo
        echo "--pipe throughput: $bytes bytes through wc -l jobs (-j $(nproc), the default), $SLOW_ROUNDS rounds"
        echo
        echo "$table"
        echo
        echo "| command | MB/s (median time) |"
        echo "|---|---:|"
        echo "$table" | python3 -c '
import sys
size = int(sys.argv[1])
for line in sys.stdin:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) > 2 and cells[1].replace(".", "").isdigit():
        print(f"| {cells[0]} | {size / float(cells[1]) / 1e6:.0f} |")
' "$bytes"
        if [[ -x /usr/bin/time ]]; then
            echo
            echo "| command | peak memory (max RSS, KiB) |"
            echo "|---|---:|"
            for block in 1M 10M; do
                rss=$(/usr/bin/time -f %M sh -c "$FANOUT --pipe --block $block wc -l < $big >/dev/null" 2>&1 >/dev/null | tail -1)
                echo "| fanout --pipe --block $block | $rss |"
                if command -v parallel >/dev/null; then
                    rss=$(/usr/bin/time -f %M sh -c "parallel --pipe --block $block wc -l < $big >/dev/null" 2>&1 >/dev/null | tail -1)
                    echo "| GNU parallel --pipe --block $block | $rss |"
                fi
            done
        fi
    } | tee -a "$OUT"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT" >&2
